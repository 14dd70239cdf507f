//! A moto server that serves one request at a time, for tests of concurrent conditional writes.
//!
//! DynamoDB applies a conditional write atomically per item. moto's server runs each request on
//! its own thread and does not lock items, so two identical conditional PutItems that arrive
//! together can both pass the condition: measured with boto3 alone (no Rust involved), 20 threads
//! racing `attribute_not_exists(#id) OR ...` on one key let two writers through in about 1 round in
//! 300, and the 20-process webhook test saw it about once in 15 runs. Serving requests one at a time
//! restores the per-item atomicity DynamoDB guarantees; the clients still race each other freely.
//!
//! The server is moto's own WSGI app under werkzeug with `threaded=False` (HTTP/1.0, one request
//! per connection). It is stopped through its `Child` handle (by PID) on drop, and exits by itself
//! when the test process's end closes its stdin.

use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use shared::clients::AwsClients;

use crate::Provisioned;

/// moto's app on one thread; it exits when its stdin closes (the test process is gone, however it
/// ended), so no server outlives the test.
const SERVE: &str = "import os, sys, threading\n\
from werkzeug.serving import run_simple\n\
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app\n\
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()\n\
run_simple('127.0.0.1', int(sys.argv[1]), DomainDispatcherApplication(create_backend_app), threaded=False)\n";

pub struct SerialMoto {
    child: Child,
    _lifeline: ChildStdin,
    pub endpoint: String,
}

impl Drop for SerialMoto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SerialMoto {
    pub fn start() -> Self {
        let port = crate::free_port();
        let mut child = Command::new(crate::workspace_root().join(".venv/bin/python"))
            .args(["-c", SERVE, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python with moto (run scripts/bootstrap.sh first)");
        let lifeline = child.stdin.take().expect("piped stdin");
        let moto = SerialMoto { child, _lifeline: lifeline, endpoint: format!("http://127.0.0.1:{port}") };
        crate::wait_for_port(port, Duration::from_secs(60));
        moto
    }

    /// `testkit::provision`, against this server.
    pub fn provision(&self, overrides: &[(&str, &str)]) -> Provisioned {
        crate::provision_at(&self.endpoint, overrides)
    }

    pub async fn clients(&self) -> AwsClients {
        crate::aws_clients_at(&self.endpoint).await
    }
}
