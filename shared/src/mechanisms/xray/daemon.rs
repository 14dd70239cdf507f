//! The X-Ray daemon's receiving end: one UDP datagram per document, as Lambda's daemon expects.
//!
//! With active tracing on, Lambda runs the daemon beside the function and sets
//! `AWS_XRAY_DAEMON_ADDRESS` (`169.254.79.129:2000`); the daemon batches what it receives and
//! uploads it (`PutTraceSegments`). A datagram is the header `{"format":"json","version":1}`, a
//! newline and one segment document. Sending never blocks and never fails the caller: the socket
//! is non-blocking, and a datagram that cannot be sent is dropped (one warning per process).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// The variable Lambda sets when active tracing is on.
pub const DAEMON_ADDRESS_VAR: &str = "AWS_XRAY_DAEMON_ADDRESS";

/// What precedes every document in a datagram.
pub const DATAGRAM_HEADER: &[u8] = b"{\"format\":\"json\",\"version\":1}\n";

/// The daemon this process sends to, from `AWS_XRAY_DAEMON_ADDRESS` read once (`None`: unset or
/// unusable, and nothing is ever sent).
pub fn daemon() -> Option<&'static Daemon> {
    static DAEMON: OnceLock<Option<Daemon>> = OnceLock::new();
    DAEMON
        .get_or_init(|| {
            let value = std::env::var(DAEMON_ADDRESS_VAR).ok()?;
            let address = parse_address(&value);
            if address.is_none() {
                tracing::warn!(value, "{DAEMON_ADDRESS_VAR} is not host:port; no X-Ray subsegments are sent");
            }
            address.map(Daemon::new)
        })
        .as_ref()
}

/// The UDP address in `AWS_XRAY_DAEMON_ADDRESS`: `host:port`, or the daemon's two-address form
/// `tcp:host:port udp:host:port` (the `udp:` one). A host name is resolved here, once.
pub fn parse_address(value: &str) -> Option<SocketAddr> {
    let mut words = value.split_whitespace();
    let udp = if value.contains("udp:") {
        words.find_map(|w| w.strip_prefix("udp:"))
    } else {
        words.next().filter(|w| !w.starts_with("tcp:"))
    }?;
    udp.parse().ok().or_else(|| udp.to_socket_addrs().ok()?.next())
}

/// A daemon address and the socket that sends to it, bound on first use.
#[derive(Debug)]
pub struct Daemon {
    address: SocketAddr,
    socket: OnceLock<Option<UdpSocket>>,
    warned: AtomicBool,
}

impl Daemon {
    /// Sends to `address`; no socket is opened before the first [`send`](Self::send).
    pub fn new(address: SocketAddr) -> Self {
        Self { address, socket: OnceLock::new(), warned: AtomicBool::new(false) }
    }

    /// Where the documents go.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Sends `document` (one segment or subsegment, JSON) in one datagram, without waiting. A
    /// failure is dropped, with a warning the first time.
    pub fn send(&self, document: &[u8]) {
        let Some(socket) = self.socket.get_or_init(|| self.bind()) else { return };
        let mut datagram = Vec::with_capacity(DATAGRAM_HEADER.len() + document.len());
        datagram.extend_from_slice(DATAGRAM_HEADER);
        datagram.extend_from_slice(document);
        if let Err(error) = socket.send_to(&datagram, self.address) {
            self.warn_once(&error);
        }
    }

    fn bind(&self) -> Option<UdpSocket> {
        // A daemon on loopback (a local one, the tests') gets a socket bound to loopback only;
        // Lambda's (169.254.79.129) needs the interface that reaches it.
        let local: SocketAddr = match self.address {
            SocketAddr::V4(a) if a.ip().is_loopback() => (Ipv4Addr::LOCALHOST, 0).into(),
            SocketAddr::V6(a) if a.ip().is_loopback() => (Ipv6Addr::LOCALHOST, 0).into(),
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).and_then(|s| s.set_nonblocking(true).map(|()| s));
        socket.map_err(|error| self.warn_once(&error)).ok()
    }

    fn warn_once(&self, error: &std::io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(address = %self.address, %error, "cannot send to the X-Ray daemon; subsegments are dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_lambdas_or_the_daemons_two_address_form() {
        let lambda: SocketAddr = "169.254.79.129:2000".parse().unwrap();
        assert_eq!(parse_address("169.254.79.129:2000"), Some(lambda));
        assert_eq!(parse_address(" 169.254.79.129:2000 "), Some(lambda));
        assert_eq!(parse_address("tcp:127.0.0.1:2000 udp:169.254.79.129:2000"), Some(lambda));
        assert_eq!(parse_address("udp:169.254.79.129:2000 tcp:127.0.0.1:2000"), Some(lambda));
        assert_eq!(parse_address("localhost:2000").map(|a| a.port()), Some(2000));
        for unusable in ["", "169.254.79.129", "tcp:127.0.0.1:2000", "not an address"] {
            assert_eq!(parse_address(unusable), None, "{unusable}");
        }
    }

    #[test]
    fn a_document_arrives_as_one_datagram_after_the_header() {
        let receiver = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        receiver.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        let daemon = Daemon::new(receiver.local_addr().unwrap());
        daemon.send(br#"{"name":"a"}"#);
        daemon.send(br#"{"name":"b"}"#);
        let mut buffer = [0; 1024];
        for name in ["a", "b"] {
            let n = receiver.recv(&mut buffer).unwrap();
            let expected = format!("{{\"format\":\"json\",\"version\":1}}\n{{\"name\":\"{name}\"}}");
            assert_eq!(std::str::from_utf8(&buffer[..n]).unwrap(), expected);
        }
    }

    #[test]
    fn a_daemon_that_is_not_there_costs_the_caller_nothing() {
        // Nobody listens on the port of a socket that was just closed: the send still returns.
        let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap();
        let daemon = Daemon::new(port);
        for _ in 0..3 {
            daemon.send(b"{}");
        }
    }
}
