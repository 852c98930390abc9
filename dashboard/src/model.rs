//! The snapshot of the cluster that the page renders: plain data, serialised as JSON.
//!
//! Every field name here is part of the `/state.json` and `/events` interface (the page reads
//! them, and so may scripts). Lists are sorted (nodes and groups by name, members by pid text)
//! so that two snapshots of an unchanged cluster differ only in their `seq` and time stamps.

use serde::Serialize;

/// Everything the dashboard knows at one moment.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Counts the snapshots published since the dashboard started (the first is 1).
    pub seq: u64,
    /// When the snapshot was made, in milliseconds since the Unix epoch.
    pub generated_at_ms: u64,
    /// The name of the dashboard's own hidden node (left out of `nodes` and `edges`).
    pub dashboard_node: String,
    /// How often EPMD is polled, in milliseconds.
    pub refresh_ms: u64,
    /// The EPMD the nodes come from.
    pub epmd: EpmdView,
    /// Every node EPMD lists, and nodes that left it a short while ago (`status: gone`).
    pub nodes: Vec<NodeView>,
    /// Connections between nodes, each pair once.
    pub edges: Vec<EdgeView>,
    /// Groups of the `pg` scope with their members, merged over every node that answered.
    pub groups: Vec<GroupView>,
}

/// The EPMD the dashboard polls.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EpmdView {
    /// Host asked.
    pub host: String,
    /// Port asked.
    pub port: u16,
    /// Whether the last `NAMES` request was answered.
    pub reachable: bool,
    /// Why the last `NAMES` request failed, when it did.
    pub error: Option<String>,
}

/// What kind of node answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Not known yet (no probe has answered).
    Unknown,
    /// An Erlang/OTP (or Elixir) node: it answers `erlang:nodes/1`.
    Erlang,
    /// A node of this workspace (`node_server`): it does not run Erlang's BIFs.
    NodeServer,
}

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    /// Listed by EPMD; the first probe has not answered yet.
    Connecting,
    /// Listed by EPMD and answered the last probe.
    Up,
    /// Listed by EPMD but the last probe failed (no connection, no answer in time).
    Unreachable,
    /// No longer listed by EPMD. Kept for a while so the page can show it left.
    Gone,
}

/// One node. Its parts' fields sit beside its own in the JSON (one flat object a node).
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// The full name, `name@host`.
    pub name: String,
    /// What EPMD says of it: `port`, `roles`, `epmd_hidden`.
    #[serde(flatten)]
    pub registration: Registration,
    /// Whether the node is hidden: registered so, or seen only over hidden connections.
    pub hidden: bool,
    /// Erlang or ours.
    pub kind: NodeKind,
    /// Where it stands: `status`, `alive`, `status_since_ms`, `last_seen_ms`, `error`.
    #[serde(flatten)]
    pub standing: Standing,
    /// Its connections as it reports them: `connected`, `hidden_connected`,
    /// `reports_connections`.
    #[serde(flatten)]
    pub connections: ReportedConnections,
    /// Its registered process names, when it reports them.
    pub registered: Option<Vec<String>>,
    /// Traffic rates.
    pub rates: Rates,
}

/// A node's EPMD registration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Registration {
    /// The distribution port EPMD gives.
    pub port: u16,
    /// Roles from the EPMD registration's EXTRA field (see `epmd::roles`).
    pub roles: Vec<String>,
    /// Whether the node registered with EPMD as hidden.
    pub epmd_hidden: bool,
}

/// Where a node stands and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Standing {
    /// Where it stands.
    pub status: NodeStatus,
    /// `status` is `up`.
    pub alive: bool,
    /// When `status` last changed, in milliseconds since the Unix epoch.
    pub status_since_ms: u64,
    /// When the node last answered a probe, in milliseconds since the Unix epoch.
    pub last_seen_ms: Option<u64>,
    /// Why the last probe failed.
    pub error: Option<String>,
}

/// A node's connections, as the node itself reports them (the dashboard left out).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReportedConnections {
    /// Nodes it is connected to; empty when it cannot say (see `reports_connections`).
    pub connected: Vec<String>,
    /// Those of `connected` whose connection is hidden.
    pub hidden_connected: Vec<String>,
    /// Whether the node reported its connections (ours may not).
    pub reports_connections: bool,
}

/// Traffic of a node, per second, over the last two probes. `None` where unknown.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Distribution messages (packets, ticks included) received per second, over every
    /// connection but the dashboard's.
    pub msgs_in: Option<f64>,
    /// Distribution messages sent per second, likewise.
    pub msgs_out: Option<f64>,
    /// Distribution bytes received per second, likewise.
    pub bytes_in: Option<f64>,
    /// Distribution bytes sent per second, likewise.
    pub bytes_out: Option<f64>,
    /// All port input (`erlang:statistics(io)`) per second, the dashboard's traffic included.
    pub io_in: Option<f64>,
    /// All port output per second, likewise.
    pub io_out: Option<f64>,
    /// Where the message and byte rates come from: `dist` (the connections' socket
    /// statistics), `node_server` (`node_server:info()`), or none.
    pub source: Option<String>,
}

/// A connection between two nodes.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeView {
    /// One end (the smaller name).
    pub a: String,
    /// The other end.
    pub b: String,
    /// Whether the connection is hidden.
    pub hidden: bool,
    /// Messages per second both ways, when an end reports its socket statistics.
    pub msgs_per_s: Option<f64>,
    /// Bytes per second both ways, likewise.
    pub bytes_per_s: Option<f64>,
    /// The send queue of each end that reports it (nodes of ours), ordered by end.
    pub queues: Vec<QueueView>,
}

/// One end's send queue on a connection, as `node_server:info()` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueView {
    /// The end that queues (and sends).
    pub from: String,
    /// The end it sends to.
    pub to: String,
    /// Bytes queued and not yet written.
    pub queue_bytes: u64,
    /// Times a sender found the connection busy (it waited, or was told so).
    pub busy: u64,
    /// Messages dropped at the queue's hard cap.
    pub dropped: u64,
}

/// A process group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupView {
    /// The scope (`pg`).
    pub scope: String,
    /// The group's name in Erlang syntax (`echo`, `{chat,1}`, `<<"room">>`).
    pub name: String,
    /// Its members.
    pub members: Vec<MemberView>,
    /// The nodes that reported the group.
    pub seen_on: Vec<String>,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct MemberView {
    /// The pid in Erlang syntax with its node name (`<a@host.83.0>`).
    pub pid: String,
    /// The node it lives on.
    pub node: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts of a node are flattened: `/state.json` has one flat object a node, its keys
    /// in this order.
    #[test]
    fn a_node_is_one_flat_object() {
        let node = NodeView {
            name: "a@h".into(),
            registration: Registration {
                port: 4370,
                roles: vec!["web".into()],
                epmd_hidden: false,
            },
            hidden: true,
            kind: NodeKind::Erlang,
            standing: Standing {
                status: NodeStatus::Up,
                alive: true,
                status_since_ms: 5,
                last_seen_ms: Some(6),
                error: None,
            },
            connections: ReportedConnections {
                connected: vec!["b@h".into()],
                hidden_connected: vec![],
                reports_connections: true,
            },
            registered: None,
            rates: Rates::default(),
        };
        assert_eq!(
            serde_json::to_string(&node).unwrap(),
            r#"{"name":"a@h","port":4370,"roles":["web"],"epmd_hidden":false,"hidden":true,"#
                .to_owned()
                + r#""kind":"erlang","status":"up","alive":true,"status_since_ms":5,"#
                + r#""last_seen_ms":6,"error":null,"connected":["b@h"],"hidden_connected":[],"#
                + r#""reports_connections":true,"registered":null,"rates":{"msgs_in":null,"#
                + r#""msgs_out":null,"bytes_in":null,"bytes_out":null,"io_in":null,"#
                + r#""io_out":null,"source":null}}"#
        );
    }
}
