//! Which connections a node has, is making, or waits for: the simultaneous-connect rules as a
//! pure state machine.
//!
//! [`ConnectionTable`] takes events (a local request to connect, an accepted connection's
//! peer naming itself, a handshake finished, an attempt failed, a timer fired, a session
//! ended) and answers with the [`Action`]s its driver must take: start or abort an attempt,
//! set a timer, answer waiters. It does no I/O and keeps no clock, so it is tested with plain
//! values; [`crate::NodeServer`] drives it with tasks, timers and reply ports.
//!
//! The rules are Erlang's (`net_kernel` and `dist_util`). When a peer connects to us and names
//! itself, the acceptor answers:
//! - `alive` when we are connected to it already (the peer then says whether to replace that
//!   connection);
//! - `nok` when we are connecting to it too and our name is the greater: our attempt wins, and
//!   the peer's attempt ends;
//! - `ok_simultaneous` when we are connecting to it too and its name is the greater: its
//!   connection will do for our waiters, and our attempt ends at once
//!   ([`ConnectionTable::yielded`]; left running it could meet the peer's `alive` and answer
//!   it `true`, which drops the winning connection);
//! - `ok` otherwise; while that handshake runs, a connect request waits for it rather than
//!   starting a racing attempt ([`ConnectionTable::accepting`]), and if it fails the waiters
//!   get an attempt of ours ([`ConnectionTable::accept_ended`]).
//!
//! An attempt refused with `nok` lost such a race: the peer's own connection to us is on its
//! way, so the waiters wait for it, for as long as the table's race wait, and then get
//! [`ConnectError::Timeout`].
//!
//! ```
//! use std::time::Duration;
//! use node_server::connections::{Action, Attempt, ConnectionTable};
//!
//! let mut table = ConnectionTable::new("a@h", Duration::from_secs(14));
//! let actions = table.connect("b@h", "first caller");
//! assert_eq!(actions, vec![Action::Start { node: "b@h".into(), attempt: Attempt(1) }]);
//! // A second caller waits for the same attempt.
//! assert!(table.connect("b@h", "second caller").is_empty());
//! // The session is up (by our attempt, or by the peer's): the attempt is done with.
//! let actions = table.established("b@h");
//! assert_eq!(
//!     actions,
//!     vec![
//!         Action::Abort { node: "b@h".into(), attempt: Attempt(1) },
//!         Action::Answer { waiters: vec!["first caller", "second caller"], result: Ok(()) },
//!     ]
//! );
//! ```

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::dist::handshake::{HandshakeError, Refusal, Status};
use crate::error::ConnectError;

/// The number of an outgoing connection attempt, unique within a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attempt(pub u64);

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "attempt {}", self.0)
    }
}

/// What the driver of a [`ConnectionTable`] must do.
#[derive(Debug, PartialEq, Eq)]
pub enum Action<W> {
    /// Start outgoing attempt `attempt` to `node`; report its end with
    /// [`ConnectionTable::established`] or [`ConnectionTable::failed`].
    Start {
        /// The node to connect to.
        node: String,
        /// The attempt's number.
        attempt: Attempt,
    },
    /// Stop attempt `attempt` to `node` if it still runs: a connection with the node is up
    /// (when the attempt itself made it, it has ended already and there is nothing to stop).
    Abort {
        /// The node.
        node: String,
        /// The attempt.
        attempt: Attempt,
    },
    /// Call [`ConnectionTable::race_timed_out`] with `node` and `attempt` after `after`.
    SetTimer {
        /// The node.
        node: String,
        /// The attempt that lost a race.
        attempt: Attempt,
        /// How long from now.
        after: Duration,
    },
    /// Answer `waiters` with `result`.
    Answer {
        /// Who asked for the connection.
        waiters: Vec<W>,
        /// `Ok` once connected, else why not.
        result: Result<(), ConnectError>,
    },
}

/// Where the table stands with one node.
#[derive(Debug)]
enum Link<W> {
    /// Our attempt runs.
    Connecting { attempt: Attempt, waiters: Vec<W> },
    /// Our attempt lost a simultaneous connect; the peer's connection is awaited.
    LostRace { attempt: Attempt, waiters: Vec<W> },
    /// We accepted the peer's connection (answered `ok`) and its handshake runs: a connect
    /// request waits for it rather than racing it, as `net_kernel` waits on a pending entry.
    Accepting { waiters: Vec<W> },
    /// A session is up.
    Connected,
}

/// The connections of a node by peer name, and who waits for them. See the module docs.
#[derive(Debug)]
pub struct ConnectionTable<W> {
    me: String,
    race_wait: Duration,
    links: HashMap<String, Link<W>>,
    last_attempt: u64,
}

impl<W> ConnectionTable<W> {
    /// The table of node `me` (its full name, which decides races). An attempt that lost a
    /// race waits `race_wait` for the peer's connection.
    pub fn new(me: impl Into<String>, race_wait: Duration) -> ConnectionTable<W> {
        ConnectionTable {
            me: me.into(),
            race_wait,
            links: HashMap::new(),
            last_attempt: 0,
        }
    }

    /// Whether a session with `node` is up, as far as the table was told.
    pub fn is_connected(&self, node: &str) -> bool {
        matches!(self.links.get(node), Some(Link::Connected))
    }

    /// The attempt to `node` that runs, if any.
    pub fn attempt(&self, node: &str) -> Option<Attempt> {
        match self.links.get(node) {
            Some(Link::Connecting { attempt, .. }) => Some(*attempt),
            _ => None,
        }
    }

    /// `waiter` wants a connection with `node`. It is answered at once when the node is this
    /// one or connected; it waits for the attempt that runs; otherwise a new attempt starts
    /// (also after a lost race, whose wait it ends).
    pub fn connect(&mut self, node: &str, waiter: W) -> Vec<Action<W>> {
        if node == self.me {
            return vec![answer(vec![waiter], Ok(()))];
        }
        let waiters = match self.links.remove(node) {
            Some(Link::Connected) => {
                self.links.insert(node.to_owned(), Link::Connected);
                return vec![answer(vec![waiter], Ok(()))];
            }
            Some(Link::Connecting {
                attempt,
                mut waiters,
            }) => {
                waiters.push(waiter);
                self.links
                    .insert(node.to_owned(), Link::Connecting { attempt, waiters });
                return Vec::new();
            }
            Some(Link::Accepting { mut waiters }) => {
                waiters.push(waiter);
                self.links
                    .insert(node.to_owned(), Link::Accepting { waiters });
                return Vec::new();
            }
            Some(Link::LostRace { mut waiters, .. }) => {
                waiters.push(waiter);
                waiters
            }
            None => vec![waiter],
        };
        self.start(node, waiters)
    }

    /// Starts a new attempt to `node` for `waiters`.
    fn start(&mut self, node: &str, waiters: Vec<W>) -> Vec<Action<W>> {
        self.last_attempt += 1;
        let attempt = Attempt(self.last_attempt);
        self.links
            .insert(node.to_owned(), Link::Connecting { attempt, waiters });
        vec![Action::Start {
            node: node.to_owned(),
            attempt,
        }]
    }

    /// An accepted connection's peer named itself: the status to answer it with (see the
    /// module docs). The table does not change: an accepted connection counts once it is
    /// [`ConnectionTable::established`].
    pub fn peer_named(&self, peer: &str) -> Status {
        match self.links.get(peer) {
            Some(Link::Connected) => Status::Alive,
            // Both sides are connecting: the greater name keeps its own attempt.
            Some(Link::Connecting { .. }) if self.me.as_str() > peer => Status::Nok,
            Some(Link::Connecting { .. }) => Status::OkSimultaneous,
            Some(Link::LostRace { .. } | Link::Accepting { .. }) | None => Status::Ok,
        }
    }

    /// We answered `peer`'s connection `ok`: its handshake runs, and connect requests wait
    /// for it ([`ConnectionTable::accept_ended`] if it fails).
    pub fn accepting(&mut self, peer: &str) {
        self.links
            .entry(peer.to_owned())
            .or_insert_with(|| Link::Accepting {
                waiters: Vec::new(),
            });
    }

    /// The handshake of a connection we accepted from `peer` (answered `ok` or
    /// `ok_simultaneous`) failed: whoever waited for it gets a new attempt of ours.
    pub fn accept_ended(&mut self, peer: &str) -> Vec<Action<W>> {
        match self.links.remove(peer) {
            Some(Link::Accepting { waiters } | Link::LostRace { waiters, .. }) => {
                if waiters.is_empty() {
                    Vec::new()
                } else {
                    self.start(peer, waiters)
                }
            }
            Some(other) => {
                self.links.insert(peer.to_owned(), other);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// We answered `peer`'s connection `ok_simultaneous` ([`ConnectionTable::peer_named`]):
    /// its attempt wins, so ours ends now, as `net_kernel` kills its pending handshake when it
    /// yields. Left running, our attempt could meet the peer's `alive` (its connection up on
    /// its side, not yet on ours) and answer it `true`, which makes the peer drop the winning
    /// connection. The waiters wait for the peer's connection, as after a lost race.
    pub fn yielded(&mut self, peer: &str) -> Vec<Action<W>> {
        match self.links.remove(peer) {
            Some(Link::Connecting { attempt, waiters }) => {
                self.links
                    .insert(peer.to_owned(), Link::LostRace { attempt, waiters });
                vec![
                    Action::Abort {
                        node: peer.to_owned(),
                        attempt,
                    },
                    Action::SetTimer {
                        node: peer.to_owned(),
                        attempt,
                        after: self.race_wait,
                    },
                ]
            }
            Some(other) => {
                self.links.insert(peer.to_owned(), other);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// A handshake with `peer` finished, ours or an accepted one: the session is up. Every
    /// waiter gets `Ok`, and our attempt, if it still runs, is aborted.
    pub fn established(&mut self, peer: &str) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        match self.links.insert(peer.to_owned(), Link::Connected) {
            Some(Link::Connecting { attempt, waiters }) => {
                actions.push(Action::Abort {
                    node: peer.to_owned(),
                    attempt,
                });
                actions.push(answer(waiters, Ok(())));
            }
            Some(Link::LostRace { waiters, .. } | Link::Accepting { waiters }) => {
                actions.push(answer(waiters, Ok(())))
            }
            Some(Link::Connected) | None => {}
        }
        actions
    }

    /// Attempt `attempt` to `node` failed with `why`. A superseded attempt's failure is
    /// ignored. A refusal with `nok` lost a race: the waiters wait for the peer's connection
    /// (a timer is set). Any other failure answers the waiters with `why`.
    pub fn failed(&mut self, node: &str, attempt: Attempt, why: ConnectError) -> Vec<Action<W>> {
        let waiters = match self.links.remove(node) {
            Some(Link::Connecting {
                attempt: current,
                waiters,
            }) if current == attempt => waiters,
            Some(other) => {
                self.links.insert(node.to_owned(), other);
                return Vec::new();
            }
            None => return Vec::new(),
        };
        if lost_race(&why) {
            self.links
                .insert(node.to_owned(), Link::LostRace { attempt, waiters });
            return vec![Action::SetTimer {
                node: node.to_owned(),
                attempt,
                after: self.race_wait,
            }];
        }
        vec![answer(waiters, Err(why))]
    }

    /// The wait of attempt `attempt` for the peer's connection after a lost race is over. If
    /// it still waits (no connection came, no new attempt started), its waiters get
    /// [`ConnectError::Timeout`].
    pub fn race_timed_out(&mut self, node: &str, attempt: Attempt) -> Vec<Action<W>> {
        match self.links.remove(node) {
            Some(Link::LostRace {
                attempt: lost,
                waiters,
            }) if lost == attempt => {
                vec![answer(waiters, Err(ConnectError::Timeout(node.to_owned())))]
            }
            Some(other) => {
                self.links.insert(node.to_owned(), other);
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// The session with `node` ended (or is ending). An attempt or a wait in progress is not
    /// affected.
    pub fn session_down(&mut self, node: &str) {
        if self.is_connected(node) {
            self.links.remove(node);
        }
    }

    /// The node stops: every running attempt is aborted and every waiter gets
    /// [`ConnectError::Stopping`]. The table is empty afterwards.
    pub fn shutdown(&mut self) -> Vec<Action<W>> {
        let mut actions = Vec::new();
        for (node, link) in self.links.drain() {
            let waiters = match link {
                Link::Connecting { attempt, waiters } => {
                    actions.push(Action::Abort {
                        node: node.clone(),
                        attempt,
                    });
                    waiters
                }
                Link::LostRace { waiters, .. } | Link::Accepting { waiters } => waiters,
                Link::Connected => continue,
            };
            actions.push(answer(waiters, Err(ConnectError::Stopping)));
        }
        actions
    }
}

fn answer<W>(waiters: Vec<W>, result: Result<(), ConnectError>) -> Action<W> {
    Action::Answer { waiters, result }
}

/// Whether an attempt failed because the peer answered `nok`: it is connecting to us too, and
/// its attempt wins.
fn lost_race(why: &ConnectError) -> bool {
    matches!(
        why,
        ConnectError::Handshake {
            error: HandshakeError::Refused(Refusal::Status(Status::Nok)),
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(14);

    fn start(node: &str, attempt: u64) -> Action<u32> {
        Action::Start {
            node: node.into(),
            attempt: Attempt(attempt),
        }
    }

    fn abort(node: &str, attempt: u64) -> Action<u32> {
        Action::Abort {
            node: node.into(),
            attempt: Attempt(attempt),
        }
    }

    fn fail(waiters: Vec<u32>, why: ConnectError) -> Action<u32> {
        Action::Answer {
            waiters,
            result: Err(why),
        }
    }

    fn ok(waiters: Vec<u32>) -> Action<u32> {
        Action::Answer {
            waiters,
            result: Ok(()),
        }
    }

    fn nok(node: &str) -> ConnectError {
        ConnectError::Handshake {
            node: node.into(),
            error: HandshakeError::Refused(Refusal::Status(Status::Nok)),
        }
    }

    fn unreachable(node: &str) -> ConnectError {
        ConnectError::Unreachable {
            node: node.into(),
            reason: "connection refused".into(),
        }
    }

    /// A table of `me` with one attempt to `peer` running (attempt 1, waiter 1).
    fn connecting(me: &str, peer: &str) -> ConnectionTable<u32> {
        let mut table = ConnectionTable::new(me, WAIT);
        assert_eq!(table.connect(peer, 1), vec![start(peer, 1)]);
        table
    }

    #[test]
    fn the_first_connect_starts_one_attempt_and_a_second_waits_for_it() {
        let mut table = connecting("a@h", "b@h");
        assert_eq!(table.attempt("b@h"), Some(Attempt(1)));
        assert!(table.connect("b@h", 2).is_empty());
        // Another node gets an attempt of its own.
        assert_eq!(table.connect("c@h", 3), vec![start("c@h", 2)]);
        assert_eq!(table.attempt("b@h"), Some(Attempt(1)));
    }

    #[test]
    fn connecting_to_this_node_or_a_connected_one_answers_at_once() {
        let mut table: ConnectionTable<u32> = ConnectionTable::new("a@h", WAIT);
        assert_eq!(table.connect("a@h", 1), vec![ok(vec![1])]);
        table.established("b@h");
        assert_eq!(table.connect("b@h", 2), vec![ok(vec![2])]);
        assert_eq!(table.attempt("b@h"), None);
    }

    #[test]
    fn an_established_connection_answers_every_waiter_and_aborts_the_attempt() {
        let mut table = connecting("a@h", "b@h");
        table.connect("b@h", 2);
        assert_eq!(
            table.established("b@h"),
            vec![abort("b@h", 1), ok(vec![1, 2])]
        );
        assert!(table.is_connected("b@h"));
        // The attempt's own report comes after: it no longer matters.
        assert!(table
            .failed("b@h", Attempt(1), unreachable("b@h"))
            .is_empty());
        assert!(table.is_connected("b@h"));
    }

    #[test]
    fn a_failure_answers_every_waiter_with_the_error() {
        let mut table = connecting("a@h", "b@h");
        table.connect("b@h", 2);
        assert_eq!(
            table.failed("b@h", Attempt(1), unreachable("b@h")),
            vec![fail(vec![1, 2], unreachable("b@h"))]
        );
        // Nothing is left: the next connect starts afresh.
        assert_eq!(table.connect("b@h", 3), vec![start("b@h", 2)]);
    }

    #[test]
    fn the_greater_name_wins_a_simultaneous_connect() {
        // We are the greater: our attempt goes on, the peer's gets nok.
        let table = connecting("b@h", "a@h");
        assert_eq!(table.peer_named("a@h"), Status::Nok);
        // We are the lesser: the peer's connection goes on, and will do for our waiters.
        let mut table = connecting("a@h", "b@h");
        assert_eq!(table.peer_named("b@h"), Status::OkSimultaneous);
        assert_eq!(table.established("b@h"), vec![abort("b@h", 1), ok(vec![1])]);
    }

    #[test]
    fn yielding_to_the_peer_ends_our_attempt_and_waits_for_its_connection() {
        let mut table = ConnectionTable::new("a@h", Duration::from_secs(14));
        let start = table.connect("b@h", 1);
        assert_eq!(start.len(), 1);
        assert_eq!(table.peer_named("b@h"), Status::OkSimultaneous);
        let actions = table.yielded("b@h");
        assert_eq!(
            actions,
            vec![
                Action::Abort {
                    node: "b@h".into(),
                    attempt: Attempt(1)
                },
                Action::SetTimer {
                    node: "b@h".into(),
                    attempt: Attempt(1),
                    after: Duration::from_secs(14)
                },
            ]
        );
        // The aborted attempt's failure changes nothing; the peer's connection answers.
        assert!(table
            .failed("b@h", Attempt(1), ConnectError::Timeout("b@h".into()))
            .is_empty());
        assert_eq!(
            table.established("b@h"),
            vec![Action::Answer {
                waiters: vec![1],
                result: Ok(())
            }]
        );
    }

    #[test]
    fn a_connect_waits_for_a_connection_being_accepted_and_retries_if_it_fails() {
        let mut table = ConnectionTable::new("a@h", Duration::from_secs(14));
        assert_eq!(table.peer_named("b@h"), Status::Ok);
        table.accepting("b@h");
        assert!(table.connect("b@h", 1).is_empty(), "no racing attempt");
        assert_eq!(
            table.established("b@h"),
            vec![Action::Answer {
                waiters: vec![1],
                result: Ok(())
            }]
        );
        table.session_down("b@h");
        // The accepted handshake fails: the waiter gets an attempt of ours.
        table.accepting("b@h");
        assert!(table.connect("b@h", 2).is_empty());
        assert_eq!(
            table.accept_ended("b@h"),
            vec![Action::Start {
                node: "b@h".into(),
                attempt: Attempt(1)
            }]
        );
        // Nobody waited: nothing to do.
        table.links.clear();
        table.accepting("c@h");
        assert!(table.accept_ended("c@h").is_empty());
        assert_eq!(table.attempt("c@h"), None);
    }

    #[test]
    fn a_peer_gets_ok_when_we_are_not_connecting_and_alive_when_connected() {
        let mut table: ConnectionTable<u32> = ConnectionTable::new("a@h", WAIT);
        assert_eq!(table.peer_named("b@h"), Status::Ok);
        table.established("b@h");
        assert_eq!(table.peer_named("b@h"), Status::Alive);
        table.session_down("b@h");
        assert_eq!(table.peer_named("b@h"), Status::Ok);
        assert!(!table.is_connected("b@h"));
    }

    #[test]
    fn a_lost_race_waits_for_the_peers_connection() {
        let mut table = connecting("a@h", "b@h");
        assert_eq!(
            table.failed("b@h", Attempt(1), nok("b@h")),
            vec![Action::SetTimer {
                node: "b@h".into(),
                attempt: Attempt(1),
                after: WAIT
            }]
        );
        // While waiting we have no attempt of our own: the peer gets ok.
        assert_eq!(table.peer_named("b@h"), Status::Ok);
        assert_eq!(table.established("b@h"), vec![ok(vec![1])]);
        // The timer fires after all: nothing to do.
        assert!(table.race_timed_out("b@h", Attempt(1)).is_empty());
        assert!(table.is_connected("b@h"));
    }

    #[test]
    fn a_lost_race_without_the_peers_connection_times_out_into_an_error() {
        let mut table = connecting("a@h", "b@h");
        table.connect("b@h", 2);
        table.failed("b@h", Attempt(1), nok("b@h"));
        assert_eq!(
            table.race_timed_out("b@h", Attempt(1)),
            vec![fail(vec![1, 2], ConnectError::Timeout("b@h".into()))]
        );
        assert!(table.race_timed_out("b@h", Attempt(1)).is_empty());
    }

    #[test]
    fn a_connect_during_a_lost_race_starts_a_new_attempt_for_all_waiters() {
        let mut table = connecting("a@h", "b@h");
        table.failed("b@h", Attempt(1), nok("b@h"));
        assert_eq!(table.connect("b@h", 2), vec![start("b@h", 2)]);
        // The old wait's timer no longer matters.
        assert!(table.race_timed_out("b@h", Attempt(1)).is_empty());
        assert_eq!(
            table.failed("b@h", Attempt(2), unreachable("b@h")),
            vec![fail(vec![1, 2], unreachable("b@h"))]
        );
    }

    #[test]
    fn a_superseded_attempts_failure_is_ignored() {
        let mut table = connecting("a@h", "b@h");
        table.failed("b@h", Attempt(1), nok("b@h"));
        table.connect("b@h", 2);
        // A late report of attempt 1 does not touch attempt 2 or its waiters.
        assert!(table
            .failed("b@h", Attempt(1), unreachable("b@h"))
            .is_empty());
        assert_eq!(table.attempt("b@h"), Some(Attempt(2)));
        assert_eq!(
            table.established("b@h"),
            vec![abort("b@h", 2), ok(vec![1, 2])]
        );
        // Reports for nodes the table does not know are ignored too.
        assert!(table
            .failed("c@h", Attempt(9), unreachable("c@h"))
            .is_empty());
    }

    #[test]
    fn a_session_going_down_does_not_touch_a_running_attempt() {
        let mut table = connecting("a@h", "b@h");
        table.session_down("b@h");
        assert_eq!(table.attempt("b@h"), Some(Attempt(1)));
    }

    #[test]
    fn shutdown_aborts_attempts_and_answers_every_waiter() {
        let mut table = connecting("a@h", "b@h");
        table.connect("c@h", 2);
        table.failed("c@h", Attempt(2), nok("c@h"));
        table.established("d@h");
        let mut actions = table.shutdown();
        actions.sort_by_key(|a| format!("{a:?}"));
        assert_eq!(
            actions,
            vec![
                abort("b@h", 1),
                fail(vec![1], ConnectError::Stopping),
                fail(vec![2], ConnectError::Stopping),
            ]
        );
        assert!(!table.is_connected("d@h"));
        assert_eq!(table.connect("b@h", 3), vec![start("b@h", 3)]);
    }
}
