//! What a node says about itself: the answer to the rpc `node_server:info/0`.
//!
//! [`NodeInfo`] is the one definition of that answer. The node builds it
//! ([`crate::builtins`]), and tools read it back with [`FromTerm`]:
//!
//! ```
//! use node_server::etf::Term;
//! use node_server::info::{NodeInfo, Visibility};
//! use node_server::FromTerm;
//!
//! // What `rpc:call(Node, node_server, info, [])` gives (shortened here).
//! let reply = Term::parse(
//!     "#{node => 'a@h', version => <<\"0.1.0\">>, otp_release => <<\"25\">>, \
//!        uptime_ms => 1500, process_count => 4, registered => [echo, rex], \
//!        connections => 1, connected => [{'b@h', hidden}], messages_in => 3, \
//!        messages_out => 2, bytes_in => 300, bytes_out => 200, memory_total => 4096, \
//!        creation => 7, hidden => false, admin_guard => false, \
//!        queues => [#{node => 'b@h', queue_bytes => 0, busy => 2, dropped => 0}]}",
//! )
//! .unwrap();
//! let info = NodeInfo::from_term(&reply).unwrap();
//! assert_eq!(info.connected[0].node.as_str(), "b@h");
//! assert_eq!(info.connected[0].visibility, Visibility::Hidden);
//! assert_eq!(info.queues[0].busy, 2);
//! ```
//!
//! The term is a map whose keys are the field names (an Erlang caller matches on them); a
//! reader ignores keys it does not know, so the map may grow. `queues` came later than the
//! other keys: a reader takes a map without it as an empty list.

use crate::etf::{Atom, ConversionError, FromTerm, Term, ToTerm};

/// Figures of a running node, as `node_server:info/0` returns them: a map with one key a
/// field, the fields of [`NodeIdentity`] and [`Traffic`] included (they are flattened into the
/// same map, so the wire has the 17 keys `node`, `version`, `otp_release`, `uptime_ms`,
/// `process_count`, `registered`, `connections`, `connected`, `messages_in`, `messages_out`,
/// `bytes_in`, `bytes_out`, `memory_total`, `creation`, `hidden`, `admin_guard` and
/// `queues`).
#[derive(Debug, Clone, PartialEq, Eq, ToTerm, FromTerm)]
pub struct NodeInfo {
    /// Which node this is and what it runs: `node`, `version`, `otp_release`, `creation`,
    /// `hidden`.
    #[term(flatten)]
    pub identity: NodeIdentity,
    /// Milliseconds since the node started.
    pub uptime_ms: u64,
    /// Live actors exposed to Erlang plus the built-in services.
    pub process_count: u64,
    /// The registered names, sorted.
    pub registered: Vec<Atom>,
    /// How many nodes are connected.
    pub connections: u64,
    /// The connected nodes: the visible ones, then the hidden ones, each sorted.
    pub connected: Vec<ConnectedNode>,
    /// Distribution traffic since the node started: `messages_in`, `messages_out`,
    /// `bytes_in`, `bytes_out`.
    #[term(flatten)]
    pub traffic: Traffic,
    /// The process's resident set size in bytes (0 where it cannot be read).
    pub memory_total: u64,
    /// Whether the admin guard ([`crate::NodeConfig::admin_allow`]) is on.
    pub admin_guard: bool,
    /// The send queue of each connection, sorted by node (empty when the node did not say).
    #[term(default)]
    pub queues: Vec<ConnectionQueue>,
}

/// One connection's send queue ([`crate::send_queue`]): the map `#{node => Node,
/// queue_bytes => N, busy => N, dropped => N}`, the same figures as the `/metrics` series
/// `dist_send_queue_bytes`, `dist_busy_total` and `dist_dropped_total` ([`crate::metrics`]).
#[derive(Debug, Clone, PartialEq, Eq, ToTerm, FromTerm)]
pub struct ConnectionQueue {
    /// The node at the other end.
    pub node: Atom,
    /// Bytes queued and not yet written.
    pub queue_bytes: u64,
    /// Times a sender found the connection busy (it waited, or was told so).
    pub busy: u64,
    /// Messages dropped at the queue's hard cap.
    pub dropped: u64,
}

/// Which node answered [`NodeInfo`] and what it runs (keys of the same map).
#[derive(Debug, Clone, PartialEq, Eq, ToTerm, FromTerm)]
pub struct NodeIdentity {
    /// The node's name.
    pub node: Atom,
    /// This crate's version (a binary).
    pub version: String,
    /// The Erlang/OTP release whose distribution protocol the node speaks (a binary).
    pub otp_release: String,
    /// The node's creation (incarnation) number.
    pub creation: u32,
    /// Whether the node is hidden.
    pub hidden: bool,
}

/// A node's distribution traffic since it started ([`crate::ops`] says what is counted);
/// keys of the [`NodeInfo`] map.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ToTerm, FromTerm)]
pub struct Traffic {
    /// Distribution messages received.
    pub messages_in: u64,
    /// Distribution messages sent.
    pub messages_out: u64,
    /// Distribution bytes received.
    pub bytes_in: u64,
    /// Distribution bytes sent.
    pub bytes_out: u64,
}

impl From<crate::ops::NodeStats> for Traffic {
    fn from(stats: crate::ops::NodeStats) -> Traffic {
        Traffic {
            messages_in: stats.messages_in,
            messages_out: stats.messages_out,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
        }
    }
}

/// One connection of a node: the term `{Node, visible | hidden}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectedNode {
    /// The node at the other end.
    pub node: Atom,
    /// Whether the connection is visible or hidden.
    pub visibility: Visibility,
}

// By hand rather than derived: a derived tuple struct has positional fields, and these are
// read by name everywhere.
impl ToTerm for ConnectedNode {
    fn to_term(&self) -> Term {
        (self.node.clone(), self.visibility).to_term()
    }
}

impl FromTerm for ConnectedNode {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        let (node, visibility) = <(Atom, Visibility)>::from_term(term)?;
        Ok(ConnectedNode { node, visibility })
    }
}

/// Whether a connection is visible (the peer is in `nodes()`) or hidden: the atom `visible`
/// or `hidden`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToTerm, FromTerm)]
pub enum Visibility {
    /// `visible`.
    Visible,
    /// `hidden`.
    Hidden,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NodeInfo {
        NodeInfo {
            identity: NodeIdentity {
                node: Atom::new("a@h"),
                version: "0.1.0".into(),
                otp_release: "25".into(),
                creation: 7,
                hidden: false,
            },
            uptime_ms: 1500,
            process_count: 4,
            registered: vec![Atom::new("echo"), Atom::new("rex")],
            connections: 2,
            connected: vec![
                ConnectedNode {
                    node: Atom::new("b@h"),
                    visibility: Visibility::Visible,
                },
                ConnectedNode {
                    node: Atom::new("c@h"),
                    visibility: Visibility::Hidden,
                },
            ],
            traffic: Traffic {
                messages_in: 3,
                messages_out: 2,
                bytes_in: 300,
                bytes_out: u64::MAX,
            },
            memory_total: 4096,
            admin_guard: true,
            queues: vec![ConnectionQueue {
                node: Atom::new("b@h"),
                queue_bytes: 1024,
                busy: 3,
                dropped: 1,
            }],
        }
    }

    /// The wire shape is the contract with Erlang callers: keys, and value types.
    #[test]
    fn the_term_is_the_documented_map() {
        let expected = Term::parse(
            "#{node => 'a@h', version => <<\"0.1.0\">>, otp_release => <<\"25\">>, \
               uptime_ms => 1500, process_count => 4, registered => [echo, rex], \
               connections => 2, connected => [{'b@h', visible}, {'c@h', hidden}], \
               messages_in => 3, messages_out => 2, bytes_in => 300, \
               bytes_out => 18446744073709551615, memory_total => 4096, creation => 7, \
               hidden => false, admin_guard => true, \
               queues => [#{node => 'b@h', queue_bytes => 1024, busy => 3, dropped => 1}]}",
        )
        .unwrap();
        assert_eq!(sample().to_term(), expected);
    }

    #[test]
    fn reads_back_what_it_writes_and_ignores_unknown_keys() {
        let info = sample();
        assert_eq!(NodeInfo::from_term(&info.to_term()).unwrap(), info);
        let Term::Map(mut map) = info.to_term() else {
            panic!("not a map")
        };
        map.insert(Term::atom("later_addition"), Term::atom("x"));
        assert_eq!(NodeInfo::from_term(&Term::Map(map.clone())).unwrap(), info);
        // An older node's map, without `queues`.
        map.remove(&Term::atom("queues"));
        let older = NodeInfo::from_term(&Term::Map(map)).unwrap();
        assert!(older.queues.is_empty());
    }

    #[test]
    fn a_missing_key_or_unknown_visibility_is_an_error() {
        let Term::Map(mut map) = sample().to_term() else {
            panic!("not a map")
        };
        map.remove(&Term::atom("uptime_ms"));
        assert!(NodeInfo::from_term(&Term::Map(map)).is_err());
        assert!(ConnectedNode::from_term(&Term::parse("{'a@h', sideways}").unwrap()).is_err());
        assert!(ConnectedNode::from_term(&Term::parse("{'a@h'}").unwrap()).is_err());
    }
}
