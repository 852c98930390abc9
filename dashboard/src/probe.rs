//! Asking one node about itself, by rpc from the dashboard's hidden node.
//!
//! An Erlang node answers:
//! - `erlang:nodes(connected)` and `erlang:nodes(hidden)`: its connections;
//! - `erlang:registered()`: its registered names;
//! - `pg:which_groups()`, then `pg:get_members(G)` for each group (scope `pg`; a node where
//!   `pg` does not run answers `{badrpc, _}`, which means no groups);
//! - `erlang:statistics(io)`: all bytes in and out of its ports;
//! - `erlang:system_info(dist_ctrl)` and `inet:getstat(Port, [...])` for each connection's
//!   socket: packets and bytes per connection, the source of message rates.
//!
//! A node of ours (`node_server`) answers `pg:which_groups/0` and `pg:get_members/1`, and
//! `node_server:info()` where it has it ([`NodeInfo`]: its counters, names, connections and
//! each connection's send queue are used). It does not run Erlang's BIFs, so
//! `erlang:nodes/1` fails there with `undef`: that is how the two kinds are told apart.

use std::time::Duration;

use node_server::etf::{FromTerm, Pid, Term};
use node_server::info::{ConnectedNode, ConnectionQueue, NodeInfo, Visibility};
use node_server::rpc::RpcError;
use node_server::Node;

use crate::model::{MemberView, NodeKind};

/// Byte and packet counters of one connection's socket, from `inet:getstat/2`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LinkCounters {
    pub recv_cnt: u64,
    pub send_cnt: u64,
    pub recv_oct: u64,
    pub send_oct: u64,
}

/// What one probe learnt.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProbeData {
    pub kind: NodeKind,
    /// Connected nodes and the hidden ones among them; `None` when the node cannot say.
    pub connections: Option<(Vec<String>, Vec<String>)>,
    pub registered: Option<Vec<String>>,
    /// Groups of scope `pg`: name in Erlang syntax and members.
    pub groups: Vec<(String, Vec<MemberView>)>,
    /// Node-wide monotonic counters by name (`io_in`, `io_out`, `msgs_in`, `msgs_out`,
    /// `bytes_in`, `bytes_out`).
    pub counters: Vec<(&'static str, u64)>,
    /// Counters of each connection, by peer node.
    pub links: Vec<(String, LinkCounters)>,
    /// The send queue of each connection (nodes of ours), by peer node.
    pub queues: Vec<ConnectionQueue>,
}

/// Why a probe failed: the node could not be reached or did not answer in time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProbeError(pub String);

impl From<node_server::CallError> for ProbeError {
    fn from(e: node_server::CallError) -> Self {
        ProbeError(e.to_string())
    }
}

/// One rpc: `Ok(Ok(value))`, `Ok(Err(reason))` for `{badrpc, Reason}` (the node answered, the
/// call failed there), `Err` when the node did not answer.
async fn call(
    node: &Node,
    target: &str,
    module: &str,
    function: &str,
    args: Vec<Term>,
    timeout: Duration,
) -> Result<Result<Term, Term>, ProbeError> {
    match node.rpc(target, module, function, args, timeout).await {
        Ok(v) => Ok(Ok(v)),
        Err(RpcError::BadRpc(reason)) => Ok(Err(reason)),
        Err(RpcError::Call(e)) => Err(e.into()),
        Err(e) => Err(ProbeError(e.to_string())),
    }
}

/// Asks `target` everything the dashboard shows. `known` is the kind an earlier probe found
/// (it saves the `node_server:info()` attempt on Erlang nodes); `me` is the dashboard's node,
/// left out of connections.
pub(crate) async fn probe(
    node: &Node,
    target: &str,
    known: NodeKind,
    me: &str,
    timeout: Duration,
) -> Result<ProbeData, ProbeError> {
    let rpc =
        |m: &'static str, f: &'static str, args: Vec<Term>| call(node, target, m, f, args, timeout);
    let mut data = ProbeData {
        kind: known,
        connections: None,
        registered: None,
        groups: Vec::new(),
        counters: Vec::new(),
        links: Vec::new(),
        queues: Vec::new(),
    };

    if known != NodeKind::Erlang {
        if let Ok(info) = rpc("node_server", "info", vec![]).await? {
            data.kind = NodeKind::NodeServer;
            if let Ok(info) = NodeInfo::from_term(&info) {
                read_info(&info, me, &mut data);
            }
            data.groups = groups(&rpc).await?;
            return Ok(data);
        }
    }

    let (connected, hidden, registered, io, dist_ctrl) = tokio::join!(
        rpc("erlang", "nodes", vec![Term::atom("connected")]),
        rpc("erlang", "nodes", vec![Term::atom("hidden")]),
        rpc("erlang", "registered", vec![]),
        rpc("erlang", "statistics", vec![Term::atom("io")]),
        rpc("erlang", "system_info", vec![Term::atom("dist_ctrl")]),
    );
    let Ok(connected) = connected? else {
        // Answers rpc but has no erlang:nodes/1: a node of ours without node_server:info().
        data.kind = NodeKind::NodeServer;
        data.groups = groups(&rpc).await?;
        return Ok(data);
    };
    data.kind = NodeKind::Erlang;
    let without_me = |t: &Term| {
        let mut names = atoms(t);
        names.retain(|n| n != me);
        names
    };
    let hidden = hidden?.map(|t| without_me(&t)).unwrap_or_default();
    data.connections = Some((without_me(&connected), hidden));
    data.registered = registered?.ok().map(|t| atoms(&t));
    if let Some((input, output)) = io?.ok().as_ref().and_then(parse_io) {
        data.counters.push(("io_in", input));
        data.counters.push(("io_out", output));
    }
    if let Ok(ctrl) = dist_ctrl? {
        for (peer, port) in parse_dist_ctrl(&ctrl) {
            if peer == me {
                continue;
            }
            let opts = ["recv_cnt", "send_cnt", "recv_oct", "send_oct"].map(Term::atom);
            // The connection may close between the two calls: then there is nothing to count.
            if let Ok(stat) = rpc("inet", "getstat", vec![port, Term::list(opts)]).await? {
                if let Some(counters) = parse_getstat(&stat) {
                    data.links.push((peer, counters));
                }
            }
        }
    }
    data.groups = groups(&rpc).await?;
    Ok(data)
}

/// The groups of scope `pg` and their members; none where `pg` does not run.
async fn groups<F, Fut>(rpc: &F) -> Result<Vec<(String, Vec<MemberView>)>, ProbeError>
where
    F: Fn(&'static str, &'static str, Vec<Term>) -> Fut,
    Fut: std::future::Future<Output = Result<Result<Term, Term>, ProbeError>>,
{
    let Ok(Term::List(names)) = rpc("pg", "which_groups", vec![]).await? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(names.len());
    for group in names {
        let members = match rpc("pg", "get_members", vec![group.clone()]).await? {
            Ok(Term::List(pids)) => pids
                .iter()
                .filter_map(|p| match p {
                    Term::Pid(pid) => Some(member(pid)),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        out.push((group.to_string(), members));
    }
    Ok(out)
}

fn member(pid: &Pid) -> MemberView {
    MemberView {
        pid: Term::Pid(pid.clone()).to_string(),
        node: pid.node.as_str().to_owned(),
    }
}

/// The atoms of a list (other elements skipped).
pub(crate) fn atoms(t: &Term) -> Vec<String> {
    match t {
        Term::List(items) => items
            .iter()
            .filter_map(|i| i.as_atom().map(|a| a.as_str().to_owned()))
            .collect(),
        _ => Vec::new(),
    }
}

fn as_u64(t: &Term) -> Option<u64> {
    t.as_i64().and_then(|i| u64::try_from(i).ok())
}

/// `{{input, In}, {output, Out}}`.
pub(crate) fn parse_io(t: &Term) -> Option<(u64, u64)> {
    let [input, output] = t.as_tuple()? else {
        return None;
    };
    let tagged = |t: &Term, tag: &str| match t.as_tuple() {
        Some([k, v]) if k.is_atom(tag) => as_u64(v),
        _ => None,
    };
    Some((tagged(input, "input")?, tagged(output, "output")?))
}

/// `[{Node, PortOrPid}]`: the connections whose controller is a port (plain TCP).
pub(crate) fn parse_dist_ctrl(t: &Term) -> Vec<(String, Term)> {
    let Term::List(items) = t else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| match i.as_tuple() {
            Some([node, port @ Term::Port(_)]) => {
                Some((node.as_atom()?.as_str().to_owned(), port.clone()))
            }
            _ => None,
        })
        .collect()
}

/// `{ok, [{recv_cnt, N}, ...]}`.
pub(crate) fn parse_getstat(t: &Term) -> Option<LinkCounters> {
    let [ok, Term::List(stats)] = t.as_tuple()? else {
        return None;
    };
    if !ok.is_atom("ok") {
        return None;
    }
    let mut c = LinkCounters::default();
    for s in stats {
        if let Some([k, v]) = s.as_tuple() {
            let v = as_u64(v)?;
            match k.as_atom().map(|a| a.as_str()) {
                Some("recv_cnt") => c.recv_cnt = v,
                Some("send_cnt") => c.send_cnt = v,
                Some("recv_oct") => c.recv_oct = v,
                Some("send_oct") => c.send_oct = v,
                _ => {}
            }
        }
    }
    Some(c)
}

/// Reads a node's `node_server:info()` into `data`: its traffic counters, registered names,
/// connections and their send queues (`me` left out).
pub(crate) fn read_info(info: &NodeInfo, me: &str, data: &mut ProbeData) {
    let traffic = &info.traffic;
    data.counters.extend([
        ("msgs_in", traffic.messages_in),
        ("msgs_out", traffic.messages_out),
        ("bytes_in", traffic.bytes_in),
        ("bytes_out", traffic.bytes_out),
    ]);
    data.registered = Some(
        info.registered
            .iter()
            .map(|a| a.as_str().to_owned())
            .collect(),
    );
    let peers: Vec<&ConnectedNode> = info
        .connected
        .iter()
        .filter(|c| c.node.as_str() != me)
        .collect();
    let name = |c: &&ConnectedNode| c.node.as_str().to_owned();
    let all = peers.iter().map(name).collect();
    let hidden = peers
        .iter()
        .filter(|c| c.visibility == Visibility::Hidden)
        .map(name)
        .collect();
    data.connections = Some((all, hidden));
    data.queues = info
        .queues
        .iter()
        .filter(|q| q.node.as_str() != me)
        .cloned()
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Term {
        Term::parse(text).unwrap()
    }

    fn empty() -> ProbeData {
        ProbeData {
            kind: NodeKind::NodeServer,
            connections: None,
            registered: None,
            groups: Vec::new(),
            counters: Vec::new(),
            links: Vec::new(),
            queues: Vec::new(),
        }
    }

    #[test]
    fn io_statistics() {
        assert_eq!(
            parse_io(&parse("{{input,123},{output,456}}")),
            Some((123, 456))
        );
        assert_eq!(parse_io(&parse("{input,1}")), None);
    }

    #[test]
    fn dist_ctrl_and_getstat() {
        let ctrl = parse("[{'a@h',#Port<a@h.5>},{'b@h',<b@h.1.0>}]");
        let conns = parse_dist_ctrl(&ctrl);
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].0, "a@h");
        let stat = parse("{ok,[{recv_cnt,3},{send_cnt,4},{recv_oct,100},{send_oct,200}]}");
        assert_eq!(
            parse_getstat(&stat),
            Some(LinkCounters {
                recv_cnt: 3,
                send_cnt: 4,
                recv_oct: 100,
                send_oct: 200
            })
        );
        assert_eq!(parse_getstat(&parse("{error,einval}")), None);
    }

    #[test]
    fn info_of_our_nodes() {
        let info = NodeInfo::from_term(&parse(
            "#{node => 'a@h', version => <<\"0.1.0\">>, otp_release => <<\"25\">>, \
               uptime_ms => 5, process_count => 3, registered => [echo, kv], connections => 4, \
               connected => [{'a@h', visible}, {'c@h', visible}, {'b@h', hidden}, \
               {'dash@h', hidden}], messages_in => 10, messages_out => 11, bytes_in => 98, \
               bytes_out => 99, memory_total => 1, creation => 2, hidden => false, \
               admin_guard => false, other => x, \
               queues => [#{node => 'b@h', queue_bytes => 10, busy => 2, dropped => 1}, \
                          #{node => 'dash@h', queue_bytes => 0, busy => 0, dropped => 0}]}",
        ))
        .unwrap();
        let mut data = empty();
        read_info(&info, "dash@h", &mut data);
        data.counters.sort();
        assert_eq!(
            data.counters,
            vec![
                ("bytes_in", 98),
                ("bytes_out", 99),
                ("msgs_in", 10),
                ("msgs_out", 11)
            ]
        );
        assert_eq!(data.registered, Some(vec!["echo".into(), "kv".into()]));
        assert_eq!(
            data.connections,
            Some((
                vec!["a@h".into(), "c@h".into(), "b@h".into()],
                vec!["b@h".into()]
            ))
        );
        assert_eq!(
            data.queues,
            vec![ConnectionQueue {
                node: node_server::etf::Atom::new("b@h"),
                queue_bytes: 10,
                busy: 2,
                dropped: 1
            }],
            "the dashboard's own connection left out"
        );
    }

    #[test]
    fn atom_lists() {
        assert_eq!(atoms(&parse("[a, 1, b]")), vec!["a", "b"]);
        assert!(atoms(&parse("x")).is_empty());
    }
}
