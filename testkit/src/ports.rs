//! Ports for tests: [`closed_port`] reserves one nobody listens on; [`free_port`] (racy) only
//! names one.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

use tokio::net::TcpSocket;

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The port is found by binding port 0 and reading which port the system gave; the listener is
/// closed again before this returns, so **another process can take the port before the caller
/// binds it**: under parallel tests that happens (seen as `AddrInUse`). Tests should not use
/// it: bind port 0 and keep the listener, run an [`crate::Epmd`] for an EPMD port, reserve a
/// port nobody may answer on with [`closed_port`], and let a child process bind port 0 (or
/// retry with a new port when it cannot bind). It is kept for the benchmarks in `examples/`,
/// where one run at a time is the rule.
///
/// # Panics
/// When no port can be bound on the loopback interface.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap_or_else(|e| panic!("testkit: cannot bind a port on 127.0.0.1: {e}"));
    listener
        .local_addr()
        .unwrap_or_else(|e| panic!("testkit: bound socket has no address: {e}"))
        .port()
}

/// A port of 127.0.0.1 that is bound but not listening, for as long as the guard lives (see
/// [`closed_port`]).
#[derive(Debug)]
pub struct ClosedPort {
    port: u16,
    // Held only to keep the port bound.
    _v4: TcpSocket,
    _v6: Option<TcpSocket>,
}

impl ClosedPort {
    /// The reserved port (never 0).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Reserves a port nobody listens on: connecting to it on 127.0.0.1 is refused, and no other
/// process can bind it while the guard lives.
///
/// For a test that needs a port where nothing answers (an EPMD that is not running, a node that
/// is gone). The port is bound on 127.0.0.1 with a socket that never listens (without
/// `SO_REUSEADDR`, so even a listener that sets it cannot share the port), and on `::1` too
/// when the host has IPv6, so a client that resolves `localhost` to either address is refused.
/// Needs no tokio runtime.
///
/// ```
/// let closed = testkit::closed_port();
/// let refused = std::net::TcpStream::connect(("127.0.0.1", closed.port())).unwrap_err();
/// assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
/// ```
///
/// # Panics
/// When no port can be bound on 127.0.0.1.
pub fn closed_port() -> ClosedPort {
    let v4 = bound(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        TcpSocket::new_v4,
    )
    .unwrap_or_else(|e| panic!("testkit: cannot bind a port on 127.0.0.1: {e}"));
    let port = v4
        .local_addr()
        .unwrap_or_else(|e| panic!("testkit: bound socket has no address: {e}"))
        .port();
    // Best effort: without IPv6 (or with ::1 of this port taken) the IPv4 reservation stands.
    let v6 = bound(
        SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
        TcpSocket::new_v6,
    )
    .ok();
    ClosedPort {
        port,
        _v4: v4,
        _v6: v6,
    }
}

fn bound(addr: SocketAddr, new: fn() -> io::Result<TcpSocket>) -> io::Result<TcpSocket> {
    let socket = new()?;
    socket.bind(addr)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::ErrorKind;
    use std::net::TcpStream;

    #[test]
    fn free_port_names_a_port() {
        // Binding it again here would be the very race `free_port` has.
        assert_ne!(free_port(), 0);
    }

    #[test]
    fn a_closed_port_refuses_connections_and_cannot_be_taken() {
        let closed = closed_port();
        assert_ne!(closed.port(), 0);
        let refused = TcpStream::connect((Ipv4Addr::LOCALHOST, closed.port()))
            .expect_err("nobody listens on a closed port");
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
        // std's listener sets SO_REUSEADDR; the reservation still holds.
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, closed.port()))
            .expect_err("a closed port cannot be bound by others");
        assert_eq!(taken.kind(), ErrorKind::AddrInUse, "{taken}");
        let other = closed_port();
        assert_ne!(other.port(), closed.port());
    }
}
