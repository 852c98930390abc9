//! What operators ask of a running node: traffic counters, uptime, and a graceful stop
//! (`init:stop/0,1` from another node, or [`crate::Node::stop_gracefully`]).
//!
//! The counters are node-wide totals since the node started, kept with relaxed atomic adds
//! in each connection's reader and writer task: distribution messages (control messages, with
//! or without a payload; ticks are not counted) and bytes (everything read from and written
//! to the connections, ticks, framing and TLS records' plaintext included; the handshake
//! excluded). [`crate::Node::stats`] reads them in-process; other nodes get them from
//! `node_server:info/0` (see [`crate::builtins`]).
//!
//! A graceful stop lets the rpc calls in flight answer (for up to [`GRACE`]), makes every
//! connection write what is queued for it (for up to [`GRACE`] more), then stops the node:
//! connections close and the EPMD registration goes. [`crate::Node::wait_stopped`] resolves
//! then.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How long each phase of a graceful stop may take.
pub const GRACE: Duration = Duration::from_secs(2);

/// Traffic counters of all connections, shared with the reader and writer tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub messages_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// The node's operations state.
#[derive(Debug)]
pub(crate) struct Ops {
    pub started: Instant,
    pub counters: Arc<Counters>,
    /// rpc calls running now.
    in_flight: watch::Sender<usize>,
    stopping: AtomicBool,
    exit_status: AtomicI32,
    /// `statistics(wall_clock)` and `statistics(runtime)` answer "since the last call" too.
    pub last_wall_ms: Mutex<u64>,
    pub last_runtime_ms: Mutex<u64>,
}

impl Default for Ops {
    fn default() -> Self {
        Ops {
            started: Instant::now(),
            counters: Arc::default(),
            in_flight: watch::Sender::new(0),
            stopping: AtomicBool::new(false),
            exit_status: AtomicI32::new(0),
            last_wall_ms: Mutex::new(0),
            last_runtime_ms: Mutex::new(0),
        }
    }
}

/// Marks one rpc call as running until dropped (after its reply is queued).
#[derive(Debug)]
pub(crate) struct InFlight(watch::Sender<usize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Ops {
    /// Starts a stop with exit status `status`; false when one already started.
    pub fn begin_stop(&self, status: i32) -> bool {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return false;
        }
        self.exit_status.store(status, Ordering::Relaxed);
        true
    }

    /// Resolves when no rpc call is running.
    pub async fn rpcs_done(&self) {
        let mut in_flight = self.in_flight.subscribe();
        let _ = in_flight.wait_for(|n| *n == 0).await;
    }

    /// Counts an rpc call as running until the returned guard drops.
    pub fn rpc_started(&self) -> InFlight {
        self.in_flight.send_modify(|n| *n += 1);
        InFlight(self.in_flight.clone())
    }

    /// The status the node was asked to stop with (`init:stop/1`), 0 otherwise.
    pub fn exit_status(&self) -> i32 {
        self.exit_status.load(Ordering::Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> NodeStats {
        let c = &self.counters;
        NodeStats {
            uptime: self.started.elapsed(),
            messages_in: c.messages_in.load(Ordering::Relaxed),
            messages_out: c.messages_out.load(Ordering::Relaxed),
            bytes_in: c.bytes_in.load(Ordering::Relaxed),
            bytes_out: c.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// A node's traffic since it started (see [`crate::ops`] for what is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeStats {
    /// Time since the node started.
    pub uptime: Duration,
    /// Distribution messages received (ticks not counted).
    pub messages_in: u64,
    /// Distribution messages sent (ticks not counted).
    pub messages_out: u64,
    /// Bytes received on distribution connections after their handshakes.
    pub bytes_in: u64,
    /// Bytes sent on distribution connections after their handshakes.
    pub bytes_out: u64,
}
