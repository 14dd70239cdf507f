//! The test servers themselves: a restart must bring back *this* server on *its* port, or fail
//! loudly. Drills once restarted redis-server on an ephemeral port and waited only until
//! "something accepts on the port": had another process been handed the port meanwhile, the new
//! redis-server would have exited on EADDRINUSE while the drill went on against the impostor, and
//! every later call of the function under test would have been an outage.

use std::net::TcpListener;
use std::panic::AssertUnwindSafe;

use testkit::{EPHEMERAL_FLOOR, RedisServer, stable_port};

#[test]
fn restart_ports_lie_below_the_ephemeral_range() {
    for _ in 0..50 {
        assert!(stable_port() < EPHEMERAL_FLOOR);
    }
    assert!(RedisServer::start().port < EPHEMERAL_FLOOR);
}

#[test]
fn a_restart_on_a_port_another_process_took_fails_loudly() {
    let mut server = RedisServer::start();
    server.kill();
    // The impostor: anything listening on the port while the server is down.
    let impostor = TcpListener::bind(("127.0.0.1", server.port)).expect("port free after the kill");
    let restart = std::panic::catch_unwind(AssertUnwindSafe(|| server.start_again()));
    let message = restart.expect_err("a restart onto a taken port must not pass for a running server");
    let text = message.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(text.contains("port taken"), "{text}");
    drop(impostor);
    server.start_again();
    assert_eq!(server.cli(&["PING"]), "PONG");
}
