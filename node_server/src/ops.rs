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
//! Failed handshakes are counted by [`HandshakeFailure`], a small fixed set of reasons, where
//! the node server gives up on an incoming or outgoing connection (`dist_handshake_failures_total`
//! in [`crate::metrics`]). A lost simultaneous-connect race is not a failure: the other
//! connection goes on.
//!
//! A graceful stop lets the rpc calls in flight answer (for up to [`GRACE`]), makes every
//! connection write what is queued for it (for up to [`GRACE`] more), then stops the node:
//! connections close and the EPMD registration goes. [`crate::Node::wait_stopped`] resolves
//! then.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::dist::handshake::{HandshakeError, Refusal, Status};
use crate::error::ConnectError;

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

/// Why a connection's setup failed, as counted (`dist_handshake_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// The cookies differ (our digest check failed, or the peer closed after our digest).
    BadCookie,
    /// Refused for the node's name or flags: `not_allowed`, missing distribution flags, a
    /// name that is not `name@host` or not the node dialled.
    NotAllowed,
    /// A step took longer than `net_setuptime` (or the whole setup longer than three).
    Timeout,
    /// The peer broke the protocol: a malformed or unexpected message, an unknown status.
    Protocol,
    /// The TLS handshake failed.
    Tls,
    /// The peer closed the connection during the handshake (not after our digest).
    Closed,
    /// Anything else.
    Other,
}

impl HandshakeFailure {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [HandshakeFailure; 7] = [
        HandshakeFailure::BadCookie,
        HandshakeFailure::NotAllowed,
        HandshakeFailure::Timeout,
        HandshakeFailure::Protocol,
        HandshakeFailure::Tls,
        HandshakeFailure::Closed,
        HandshakeFailure::Other,
    ];

    /// The `reason` label: `bad_cookie`, `not_allowed`, `timeout`, `protocol`, `tls`,
    /// `closed`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::BadCookie => "bad_cookie",
            HandshakeFailure::NotAllowed => "not_allowed",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Tls => "tls",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::Other => "other",
        }
    }

    /// Why a handshake failed; `None` for a lost simultaneous-connect race (`nok`, an
    /// `alive` answered with false, already connected), which is no failure.
    pub fn of_handshake(error: &HandshakeError) -> Option<HandshakeFailure> {
        Some(match error {
            HandshakeError::BadDigest | HandshakeError::CookieRejected => {
                HandshakeFailure::BadCookie
            }
            HandshakeError::MissingFlags { .. }
            | HandshakeError::BadName(_)
            | HandshakeError::WrongPeer { .. }
            | HandshakeError::Refused(Refusal::Status(Status::NotAllowed)) => {
                HandshakeFailure::NotAllowed
            }
            HandshakeError::Refused(
                Refusal::Status(_) | Refusal::AliveDeclined | Refusal::AlreadyConnected,
            ) => return None,
            HandshakeError::Refused(Refusal::UnknownStatus(_))
            | HandshakeError::Malformed(_)
            | HandshakeError::Unexpected { .. } => HandshakeFailure::Protocol,
            HandshakeError::TimedOut => HandshakeFailure::Timeout,
            HandshakeError::Closed => HandshakeFailure::Closed,
            HandshakeError::Misuse(_) => HandshakeFailure::Other,
        })
    }

    /// Why an outgoing connection failed in its setup; `None` when it failed before any
    /// handshake (the name, EPMD, an unreachable host, the node stopping) or lost a race.
    pub fn of_connect(error: &ConnectError) -> Option<HandshakeFailure> {
        match error {
            ConnectError::CookieRejected(_) => Some(HandshakeFailure::BadCookie),
            ConnectError::NotAllowed { .. } => Some(HandshakeFailure::NotAllowed),
            ConnectError::Handshake { error, .. } => HandshakeFailure::of_handshake(error),
            ConnectError::Tls(_) => Some(HandshakeFailure::Tls),
            ConnectError::Timeout(_) => Some(HandshakeFailure::Timeout),
            ConnectError::BadName { .. }
            | ConnectError::Unreachable { .. }
            | ConnectError::UnknownToEpmd(_)
            | ConnectError::Stopping => None,
        }
    }
}

/// Failed handshakes by [`HandshakeFailure`], since the node started.
#[derive(Debug, Default)]
pub(crate) struct HandshakeFailures {
    by_reason: [AtomicU64; HandshakeFailure::ALL.len()],
}

impl HandshakeFailures {
    /// Counts one failure.
    pub fn count(&self, reason: HandshakeFailure) {
        self.by_reason[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Each reason with its count, in [`HandshakeFailure::ALL`]'s order.
    pub fn snapshot(&self) -> [(HandshakeFailure, u64); HandshakeFailure::ALL.len()] {
        HandshakeFailure::ALL.map(|r| (r, self.by_reason[r as usize].load(Ordering::Relaxed)))
    }
}

/// The node's operations state.
#[derive(Debug)]
pub(crate) struct Ops {
    pub started: Instant,
    pub counters: Arc<Counters>,
    /// Failed handshakes by reason.
    pub handshake_failures: HandshakeFailures,
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
            handshake_failures: HandshakeFailures::default(),
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
    /// Whether the node is stopping.
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

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

    /// Counts a failed handshake of an incoming connection (`error`), unless it was a lost
    /// race (see [`HandshakeFailure::of_handshake`]).
    pub fn accept_failed(&self, error: &HandshakeError) {
        if let Some(reason) = HandshakeFailure::of_handshake(error) {
            self.handshake_failures.count(reason);
        }
    }

    /// Counts a failed outgoing connection whose setup failed (see
    /// [`HandshakeFailure::of_connect`]).
    pub fn connect_failed(&self, error: &ConnectError) {
        if let Some(reason) = HandshakeFailure::of_connect(error) {
            self.handshake_failures.count(reason);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::DistFlags;

    fn count_of(ops: &Ops, reason: HandshakeFailure) -> u64 {
        ops.handshake_failures
            .snapshot()
            .iter()
            .find(|(r, _)| *r == reason)
            .map(|(_, n)| *n)
            .unwrap()
    }

    #[test]
    fn handshake_failures_are_counted_by_reason_and_lost_races_are_not() {
        let ops = Ops::default();
        ops.accept_failed(&HandshakeError::BadDigest);
        ops.connect_failed(&ConnectError::CookieRejected("a@h".into()));
        ops.accept_failed(&HandshakeError::MissingFlags {
            peer: "a@h".into(),
            missing: DistFlags(4),
        });
        ops.accept_failed(&HandshakeError::TimedOut);
        ops.connect_failed(&ConnectError::Timeout("a@h".into()));
        ops.accept_failed(&HandshakeError::Malformed("short"));
        ops.connect_failed(&ConnectError::Tls("bad certificate".into()));
        ops.accept_failed(&HandshakeError::Closed);
        // Lost races and failures before any handshake are not counted.
        ops.accept_failed(&HandshakeError::Refused(Refusal::Status(Status::Nok)));
        ops.accept_failed(&HandshakeError::Refused(Refusal::AliveDeclined));
        ops.connect_failed(&ConnectError::Handshake {
            node: "a@h".into(),
            error: HandshakeError::Refused(Refusal::AlreadyConnected),
        });
        ops.connect_failed(&ConnectError::UnknownToEpmd("a@h".into()));
        ops.connect_failed(&ConnectError::Unreachable {
            node: "a@h".into(),
            reason: "refused".into(),
        });

        assert_eq!(count_of(&ops, HandshakeFailure::BadCookie), 2);
        assert_eq!(count_of(&ops, HandshakeFailure::NotAllowed), 1);
        assert_eq!(count_of(&ops, HandshakeFailure::Timeout), 2);
        assert_eq!(count_of(&ops, HandshakeFailure::Protocol), 1);
        assert_eq!(count_of(&ops, HandshakeFailure::Tls), 1);
        assert_eq!(count_of(&ops, HandshakeFailure::Closed), 1);
        assert_eq!(count_of(&ops, HandshakeFailure::Other), 0);
        let total: u64 = ops
            .handshake_failures
            .snapshot()
            .iter()
            .map(|(_, n)| n)
            .sum();
        assert_eq!(total, 8);
        let labels: Vec<&str> = HandshakeFailure::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "bad_cookie",
                "not_allowed",
                "timeout",
                "protocol",
                "tls",
                "closed",
                "other"
            ]
        );
    }
}
