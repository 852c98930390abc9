//! [`Epmd`]: this workspace's EPMD daemon on a port of its own, for as long as a test needs it.

use std::net::Ipv4Addr;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};

use tokio::sync::oneshot;

/// This workspace's EPMD daemon (`epmd::ServerConfig`), listening on 127.0.0.1 (and `::1` when
/// it can) on a port the system picked, until the guard is dropped.
///
/// The daemon binds port 0 and keeps its listener, so no other process can take its port
/// between the moment a test learns the port and the moment nodes use it (a port found with
/// [`crate::free_port`] can be taken in between). It runs on a thread of its own with its own
/// current-thread tokio runtime, so [`Epmd::start`] works the same from sync tests and from
/// async tests of either runtime flavor, and it keeps serving while the test blocks.
///
/// Keep the guard alive as long as the nodes use the daemon: dropping it stops the daemon
/// (every registration with it ends) and waits for its thread.
///
/// ```
/// let epmd = testkit::Epmd::start();
/// // Nodes then use it: NodeConfig::epmd("localhost", epmd.port()), or
/// // ERL_EPMD_PORT=<port> with `erl -start_epmd false`.
/// std::net::TcpStream::connect(("127.0.0.1", epmd.port())).expect("EPMD answers");
/// ```
#[derive(Debug)]
pub struct Epmd {
    port: u16,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Epmd {
    /// Starts the daemon on a free port of 127.0.0.1 and returns once it listens.
    ///
    /// # Panics
    /// When the thread, its runtime or the daemon's listener cannot be started.
    pub fn start() -> Epmd {
        let (ready_tx, ready_rx) = mpsc::channel::<Result<u16, String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name("testkit-epmd".into())
            .spawn(move || serve(ready_tx, stop_rx))
            .unwrap_or_else(|e| panic!("testkit: cannot start a thread for EPMD: {e}"));
        match ready_rx.recv() {
            Ok(Ok(port)) => Epmd {
                port,
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            Ok(Err(why)) => {
                let _ = thread.join();
                panic!("testkit: cannot start EPMD: {why}")
            }
            Err(_) => {
                let _ = thread.join();
                panic!("testkit: the EPMD thread ended before the daemon listened")
            }
        }
    }

    /// The port the daemon listens on (never 0).
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// The daemon's thread: starts it, reports its port (or why it could not start), serves until
/// told to stop (or until the guard is gone), then stops it.
fn serve(ready: mpsc::Sender<Result<u16, String>>, stop: oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(format!("no tokio runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let started = ::epmd::ServerConfig::new()
            .port(0)
            .addresses(vec![Ipv4Addr::LOCALHOST.into()])
            .start()
            .await;
        let server = match started {
            Ok(server) => server,
            Err(e) => {
                let _ = ready.send(Err(format!("binding 127.0.0.1:0: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(server.port()));
        // A stop signal, or the sender dropped with the guard: stop either way.
        let _ = stop.await;
        server.stop().await;
    });
}

impl Drop for Epmd {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                eprintln!("testkit: the EPMD thread on port {} panicked", self.port);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn two_daemons_get_ports_of_their_own_and_accept_while_alive() {
        let a = Epmd::start();
        let b = Epmd::start();
        assert_ne!(a.port(), 0);
        assert_ne!(b.port(), 0);
        assert_ne!(a.port(), b.port());
        for epmd in [&a, &b] {
            TcpStream::connect((Ipv4Addr::LOCALHOST, epmd.port()))
                .unwrap_or_else(|e| panic!("connecting to EPMD on {}: {e}", epmd.port()));
        }
    }

    #[test]
    fn it_answers_as_epmd_from_an_async_test() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            // Started (and dropped) on a runtime thread: the daemon has a runtime of its own.
            let epmd = Epmd::start();
            let client = ::epmd::Client::new("127.0.0.1", epmd.port());
            let registration = client
                .register(::epmd::NodeInfo::new("testkit_epmd", 5555))
                .await
                .expect("registers");
            let found = client.port_please("testkit_epmd").await.expect("looks up");
            assert_eq!(found.map(|n| n.port), Some(5555));
            drop(registration);
            drop(epmd);
        });
    }
}
