//! The poller: keeps the list of nodes in step with EPMD, probes each node, turns successive
//! probes into rates and publishes a [`Snapshot`] after every round.
//!
//! A round asks EPMD for its names, then starts a probe (a task of its own) for every listed
//! node that has none running, and waits for the answers until a settle time (80% of the
//! refresh interval). A slow or hung node thus delays nobody: its answer is applied in a later
//! round when it comes, and its probe is cut off after [`crate::DashboardConfig::rpc_timeout`]
//! times four. Rounds start every refresh interval, and at once when the dashboard's node sees
//! a connection go down.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use node_server::Node;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::MissedTickBehavior;

use crate::model::{
    EdgeView, EpmdView, GroupView, MemberView, NodeKind, NodeStatus, NodeView, QueueView, Rates,
    Registration, ReportedConnections, Snapshot, Standing,
};
use crate::probe::{probe, LinkCounters, ProbeData, ProbeError};

/// A published snapshot, with its JSON made once for every reader.
#[derive(Debug)]
pub(crate) struct Published {
    pub snapshot: Arc<Snapshot>,
    pub json: Arc<str>,
}

impl Published {
    pub(crate) fn new(snapshot: Snapshot) -> Published {
        let json = serde_json::to_string(&snapshot).unwrap_or_else(|e| {
            // Plain data with string keys always serialises; keep the stream alive regardless.
            tracing::error!(error = %e, "snapshot did not serialise");
            "{}".to_owned()
        });
        Published {
            snapshot: Arc::new(snapshot),
            json: json.into(),
        }
    }
}

/// What the poller needs from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub epmd_host: String,
    pub epmd_port: u16,
    /// The host part given to EPMD's short names.
    pub node_host: String,
    pub refresh: Duration,
    pub rpc_timeout: Duration,
    pub gone_retention: Duration,
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `(now - before) / seconds`, or `None` when the counter went back (a restart).
fn rate(before: u64, now: u64, seconds: f64) -> Option<f64> {
    (now >= before && seconds > 0.0).then(|| (now - before) as f64 / seconds)
}

/// A node the poller follows.
#[derive(Debug)]
struct Tracked {
    registration: Registration,
    /// Bumped when the node leaves EPMD or comes back: answers of older probes are dropped.
    generation: u64,
    status: NodeStatus,
    status_since_ms: u64,
    gone_at: Option<Instant>,
    last_seen_ms: Option<u64>,
    error: Option<String>,
    kind: NodeKind,
    sample: Sample,
    in_flight: bool,
}

/// The last good probe of a node and the rates against the one before it.
#[derive(Debug, Default)]
struct Sample {
    data: Option<ProbeData>,
    /// When the last good probe answered.
    sampled_at: Option<Instant>,
    rates: Rates,
    /// Per peer: messages and bytes per second both ways.
    link_rates: HashMap<String, (f64, f64)>,
}

impl Tracked {
    fn new(registration: Registration, generation: u64) -> Tracked {
        Tracked {
            registration,
            generation,
            status: NodeStatus::Connecting,
            status_since_ms: now_ms(),
            gone_at: None,
            last_seen_ms: None,
            error: None,
            kind: NodeKind::Unknown,
            sample: Sample::default(),
            in_flight: false,
        }
    }

    fn set_status(&mut self, status: NodeStatus) {
        if self.status != status {
            self.status = status;
            self.status_since_ms = now_ms();
        }
    }

    /// Takes a good probe: status, kind and rates against the previous sample.
    fn apply(&mut self, data: ProbeData, at: Instant) {
        self.set_status(NodeStatus::Up);
        self.last_seen_ms = Some(now_ms());
        self.error = None;
        self.kind = data.kind;
        let sample = &mut self.sample;
        if let (Some(prev), Some(before)) = (&sample.data, sample.sampled_at) {
            let secs = at.duration_since(before).as_secs_f64();
            (sample.rates, sample.link_rates) = rates(prev, &data, secs);
        }
        sample.data = Some(data);
        sample.sampled_at = Some(at);
    }

    fn fail(&mut self, error: ProbeError) {
        self.set_status(NodeStatus::Unreachable);
        self.error = Some(error.0);
        let sample = &mut self.sample;
        sample.sampled_at = None;
        sample.rates = Rates::default();
        sample.link_rates.clear();
    }

    fn view(&self, name: &str, hidden_seen: bool) -> NodeView {
        let up = self.status == NodeStatus::Up;
        let data = self.sample.data.as_ref().filter(|_| up);
        let (connected, hidden_connected) =
            data.and_then(|d| d.connections.clone()).unwrap_or_default();
        NodeView {
            name: name.to_owned(),
            registration: self.registration.clone(),
            hidden: self.registration.epmd_hidden || hidden_seen,
            kind: self.kind,
            standing: Standing {
                status: self.status,
                alive: up,
                status_since_ms: self.status_since_ms,
                last_seen_ms: self.last_seen_ms,
                error: self.error.clone(),
            },
            connections: ReportedConnections {
                connected,
                hidden_connected,
                reports_connections: data.is_some_and(|d| d.connections.is_some()),
            },
            registered: data.and_then(|d| d.registered.clone()),
            rates: if up {
                self.sample.rates.clone()
            } else {
                Rates::default()
            },
        }
    }
}

/// Node rates and per-peer link rates between two probes `secs` apart.
fn rates(prev: &ProbeData, now: &ProbeData, secs: f64) -> (Rates, HashMap<String, (f64, f64)>) {
    let counter = |d: &ProbeData, k: &str| d.counters.iter().find(|(n, _)| *n == k).map(|c| c.1);
    let counter_rate = |k: &str| rate(counter(prev, k)?, counter(now, k)?, secs);
    let mut r = Rates {
        io_in: counter_rate("io_in"),
        io_out: counter_rate("io_out"),
        ..Rates::default()
    };
    let mut links = HashMap::new();
    if now.kind == NodeKind::Erlang {
        let before: HashMap<&str, &LinkCounters> =
            prev.links.iter().map(|(p, c)| (p.as_str(), c)).collect();
        let (mut mi, mut mo, mut bi, mut bo) = (0.0, 0.0, 0.0, 0.0);
        for (peer, c) in &now.links {
            // A connection new since the last probe counts from the next one.
            let Some(b) = before.get(peer.as_str()) else {
                continue;
            };
            let (Some(ri), Some(ro), Some(rbi), Some(rbo)) = (
                rate(b.recv_cnt, c.recv_cnt, secs),
                rate(b.send_cnt, c.send_cnt, secs),
                rate(b.recv_oct, c.recv_oct, secs),
                rate(b.send_oct, c.send_oct, secs),
            ) else {
                continue;
            };
            mi += ri;
            mo += ro;
            bi += rbi;
            bo += rbo;
            links.insert(peer.clone(), (ri + ro, rbi + rbo));
        }
        r.msgs_in = Some(mi);
        r.msgs_out = Some(mo);
        r.bytes_in = Some(bi);
        r.bytes_out = Some(bo);
        r.source = Some("dist".into());
    } else {
        r.msgs_in = counter_rate("msgs_in");
        r.msgs_out = counter_rate("msgs_out");
        r.bytes_in = counter_rate("bytes_in");
        r.bytes_out = counter_rate("bytes_out");
        if r.msgs_in.is_some() || r.msgs_out.is_some() || r.bytes_in.is_some() {
            r.source = Some("node_server".into());
        }
    }
    (r, links)
}

/// A probe's answer, sent back to the poller.
struct ProbeResult {
    name: String,
    generation: u64,
    at: Instant,
    result: Result<ProbeData, ProbeError>,
}

/// The poller's state.
pub(crate) struct Collector {
    node: Node,
    me: String,
    settings: Settings,
    epmd: epmd::Client,
    epmd_view: EpmdView,
    nodes: BTreeMap<String, Tracked>,
    next_generation: u64,
    results_tx: mpsc::UnboundedSender<ProbeResult>,
    results_rx: mpsc::UnboundedReceiver<ProbeResult>,
    publish: watch::Sender<Arc<Published>>,
    seq: u64,
}

impl Collector {
    pub(crate) fn new(
        node: Node,
        settings: Settings,
        publish: watch::Sender<Arc<Published>>,
    ) -> Collector {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let epmd = epmd::Client::new(settings.epmd_host.clone(), settings.epmd_port)
            .timeout(settings.rpc_timeout);
        Collector {
            me: node.name().to_owned(),
            node,
            epmd_view: EpmdView {
                host: settings.epmd_host.clone(),
                port: settings.epmd_port,
                reachable: false,
                error: None,
            },
            settings,
            epmd,
            nodes: BTreeMap::new(),
            next_generation: 1,
            results_tx,
            results_rx,
            publish,
            seq: 0,
        }
    }

    /// Polls until `stop` turns true (or its sender goes). `wake` starts a round at once.
    pub(crate) async fn run(mut self, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.settings.refresh);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = wake.notified() => ticks.reset(),
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return;
                    }
                }
            }
            self.round().await;
        }
    }

    /// One round: EPMD, probes, publish.
    async fn round(&mut self) {
        self.sync_with_epmd().await;
        let mut waiting = self.start_probes();
        let settle = Instant::now() + self.settings.refresh.mul_f32(0.8);
        while !waiting.is_empty() {
            let got = tokio::select! {
                got = self.results_rx.recv() => got,
                _ = tokio::time::sleep_until(settle.into()) => None,
            };
            let Some(result) = got else { break };
            waiting.remove(&(result.name.clone(), result.generation));
            self.apply(result);
        }
        while let Ok(result) = self.results_rx.try_recv() {
            self.apply(result);
        }
        let retention = self.settings.gone_retention;
        self.nodes
            .retain(|_, t| t.gone_at.is_none_or(|at| at.elapsed() < retention));
        self.publish();
    }

    /// Reads EPMD's names: new nodes are added (with roles and type from a lookup), nodes no
    /// longer listed are gone, a node listed on a new port is a new incarnation.
    async fn sync_with_epmd(&mut self) {
        let names = match self.epmd.names().await {
            Ok(names) => names,
            Err(e) => {
                // Without EPMD nothing is known about membership: keep the nodes as they are.
                self.epmd_view.reachable = false;
                self.epmd_view.error = Some(e.to_string());
                return;
            }
        };
        self.epmd_view.reachable = true;
        self.epmd_view.error = None;
        let mut listed = BTreeSet::new();
        for (short, port) in names.nodes {
            let full = format!("{short}@{}", self.settings.node_host);
            if full == self.me {
                continue;
            }
            listed.insert(full.clone());
            let known = self
                .nodes
                .get(&full)
                .is_some_and(|t| t.registration.port == port && t.status != NodeStatus::Gone);
            if known {
                continue;
            }
            let (roles, epmd_hidden) = match self.epmd.port_please(&short).await {
                Ok(Some(info)) => (
                    epmd::roles::decode_roles(&info.extra),
                    info.node_type == epmd::NodeType::Hidden,
                ),
                _ => (Vec::new(), false),
            };
            let registration = Registration {
                port,
                roles,
                epmd_hidden,
            };
            let generation = self.next_generation;
            self.next_generation += 1;
            tracing::debug!(node = %full, port, "node registered");
            self.nodes
                .insert(full, Tracked::new(registration, generation));
        }
        for (name, t) in &mut self.nodes {
            if t.status != NodeStatus::Gone && !listed.contains(name) {
                tracing::debug!(node = %name, "node left epmd");
                t.set_status(NodeStatus::Gone);
                t.gone_at = Some(Instant::now());
                t.generation = self.next_generation;
                self.next_generation += 1;
                t.in_flight = false;
                t.error = None;
            }
        }
    }

    /// Starts a probe for each listed node without one running; returns which (name and
    /// generation).
    fn start_probes(&mut self) -> HashSet<(String, u64)> {
        let mut started = HashSet::new();
        let limit = self.settings.rpc_timeout * 4;
        for (name, t) in &mut self.nodes {
            if t.status == NodeStatus::Gone || t.in_flight {
                continue;
            }
            t.in_flight = true;
            started.insert((name.clone(), t.generation));
            let node = self.node.clone();
            let name = name.clone();
            let me = self.me.clone();
            let (kind, generation) = (t.kind, t.generation);
            let rpc_timeout = self.settings.rpc_timeout;
            let tx = self.results_tx.clone();
            tokio::spawn(async move {
                let result =
                    tokio::time::timeout(limit, probe(&node, &name, kind, &me, rpc_timeout))
                        .await
                        .unwrap_or_else(|_| Err(ProbeError(format!("no answer within {limit:?}"))));
                let _ = tx.send(ProbeResult {
                    name,
                    generation,
                    at: Instant::now(),
                    result,
                });
            });
        }
        started
    }

    /// Applies a probe's answer, unless it is for a node since gone or back anew.
    fn apply(&mut self, r: ProbeResult) {
        let Some(t) = self.nodes.get_mut(&r.name) else {
            return;
        };
        if t.generation != r.generation {
            return;
        }
        t.in_flight = false;
        match r.result {
            Ok(data) => t.apply(data, r.at),
            Err(e) => {
                tracing::debug!(node = %r.name, error = %e.0, "probe failed");
                t.fail(e)
            }
        }
    }

    fn publish(&mut self) {
        self.seq += 1;
        let snapshot = build_snapshot(
            self.seq,
            &self.me,
            &self.settings,
            &self.epmd_view,
            &self.nodes,
        );
        self.publish
            .send_replace(Arc::new(Published::new(snapshot)));
    }
}

/// The snapshot of the tracked nodes: edges and groups from the nodes that are up.
fn build_snapshot(
    seq: u64,
    me: &str,
    settings: &Settings,
    epmd: &EpmdView,
    nodes: &BTreeMap<String, Tracked>,
) -> Snapshot {
    let up = || {
        nodes.iter().filter_map(|(n, t)| {
            let d = t.sample.data.as_ref()?;
            (t.status == NodeStatus::Up).then_some((n, t, d))
        })
    };

    // Edges, each pair once; hidden when either end says so.
    let mut edges: BTreeMap<(String, String), EdgeView> = BTreeMap::new();
    let mut seen_hidden = BTreeSet::new();
    let mut seen_visible = BTreeSet::new();
    for (name, t, d) in up() {
        let Some((connected, hidden)) = &d.connections else {
            continue;
        };
        for peer in connected {
            if peer == name || peer == me {
                continue;
            }
            let is_hidden = hidden.contains(peer);
            if is_hidden {
                seen_hidden.insert(peer.clone());
            } else {
                seen_visible.insert(peer.clone());
            }
            let key = if name < peer {
                (name.clone(), peer.clone())
            } else {
                (peer.clone(), name.clone())
            };
            let edge = edges.entry(key.clone()).or_insert_with(|| EdgeView {
                a: key.0,
                b: key.1,
                hidden: false,
                msgs_per_s: None,
                bytes_per_s: None,
                queues: Vec::new(),
            });
            edge.hidden |= is_hidden;
            if let Some(q) = d.queues.iter().find(|q| q.node.as_str() == peer) {
                edge.queues.push(QueueView {
                    from: name.clone(),
                    to: peer.clone(),
                    queue_bytes: q.queue_bytes,
                    busy: q.busy,
                    dropped: q.dropped,
                });
            }
            if let Some(&(msgs, bytes)) = t.sample.link_rates.get(peer) {
                edge.msgs_per_s = Some(edge.msgs_per_s.map_or(msgs, |m| m.max(msgs)));
                edge.bytes_per_s = Some(edge.bytes_per_s.map_or(bytes, |b| b.max(bytes)));
            }
        }
    }

    // Groups merged over every node that reports them.
    let mut groups: BTreeMap<String, (BTreeSet<MemberView>, BTreeSet<String>)> = BTreeMap::new();
    for (name, _, d) in up() {
        for (group, members) in &d.groups {
            let entry = groups.entry(group.clone()).or_default();
            entry.0.extend(members.iter().cloned());
            entry.1.insert(name.clone());
        }
    }

    Snapshot {
        seq,
        generated_at_ms: now_ms(),
        dashboard_node: me.to_owned(),
        refresh_ms: settings.refresh.as_millis() as u64,
        epmd: epmd.clone(),
        nodes: nodes
            .iter()
            .map(|(n, t)| t.view(n, seen_hidden.contains(n) && !seen_visible.contains(n)))
            .collect(),
        edges: edges.into_values().collect(),
        groups: groups
            .into_iter()
            .map(|(name, (members, seen_on))| GroupView {
                scope: "pg".into(),
                name,
                members: members.into_iter().collect(),
                seen_on: seen_on.into_iter().collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(kind: NodeKind, links: Vec<(&str, LinkCounters)>) -> ProbeData {
        ProbeData {
            kind,
            connections: None,
            registered: None,
            groups: Vec::new(),
            counters: vec![("io_in", 1000), ("io_out", 2000)],
            links: links.into_iter().map(|(p, c)| (p.to_owned(), c)).collect(),
            queues: Vec::new(),
        }
    }

    fn link(cnt: u64, oct: u64) -> LinkCounters {
        LinkCounters {
            recv_cnt: cnt,
            send_cnt: cnt * 2,
            recv_oct: oct,
            send_oct: oct * 2,
        }
    }

    #[test]
    fn rates_from_two_samples() {
        let a = data(
            NodeKind::Erlang,
            vec![("x@h", link(10, 100)), ("y@h", link(0, 0))],
        );
        let mut b = data(
            NodeKind::Erlang,
            vec![("x@h", link(20, 300)), ("z@h", link(5, 5))],
        );
        b.counters = vec![("io_in", 1500), ("io_out", 1000)];
        let (r, links) = rates(&a, &b, 0.5);
        assert_eq!(r.msgs_in, Some(20.0));
        assert_eq!(r.msgs_out, Some(40.0));
        assert_eq!(r.bytes_in, Some(400.0));
        assert_eq!(r.bytes_out, Some(800.0));
        assert_eq!(r.io_in, Some(1000.0));
        // A counter that went back (a restart) gives no rate.
        assert_eq!(r.io_out, None);
        assert_eq!(r.source.as_deref(), Some("dist"));
        assert_eq!(links.get("x@h"), Some(&(60.0, 1200.0)));
        assert!(!links.contains_key("z@h"));
    }

    #[test]
    fn node_server_counters() {
        let mut a = data(NodeKind::NodeServer, vec![]);
        a.counters = vec![("msgs_in", 5)];
        let mut b = a.clone();
        b.counters = vec![("msgs_in", 25)];
        let (r, _) = rates(&a, &b, 2.0);
        assert_eq!(r.msgs_in, Some(10.0));
        assert_eq!(r.msgs_out, None);
        assert_eq!(r.source.as_deref(), Some("node_server"));
    }

    fn up(connected: &[&str], hidden: &[&str], groups: Vec<(&str, Vec<&str>)>) -> Tracked {
        let mut t = Tracked::new(
            Registration {
                port: 1,
                ..Registration::default()
            },
            1,
        );
        let mut d = data(NodeKind::Erlang, vec![]);
        d.connections = Some((
            connected.iter().map(|s| s.to_string()).collect(),
            hidden.iter().map(|s| s.to_string()).collect(),
        ));
        d.groups = groups
            .into_iter()
            .map(|(g, pids)| {
                let members = pids
                    .into_iter()
                    .map(|p| MemberView {
                        pid: p.to_owned(),
                        node: p
                            .split('.')
                            .next()
                            .unwrap_or("")
                            .trim_start_matches('<')
                            .into(),
                    })
                    .collect();
                (g.to_owned(), members)
            })
            .collect();
        t.apply(d, Instant::now());
        t
    }

    #[test]
    fn snapshot_merges_edges_and_groups() {
        let settings = Settings {
            epmd_host: "localhost".into(),
            epmd_port: 4369,
            node_host: "h".into(),
            refresh: Duration::from_millis(500),
            rpc_timeout: Duration::from_secs(1),
            gone_retention: Duration::from_secs(30),
        };
        let mut nodes = BTreeMap::new();
        nodes.insert(
            "a@h".to_owned(),
            up(&["b@h", "c@h"], &["c@h"], vec![("echo", vec!["<a@h.1.0>"])]),
        );
        nodes.insert(
            "b@h".to_owned(),
            up(
                &["a@h"],
                &[],
                vec![("echo", vec!["<a@h.1.0>", "<b@h.2.0>"])],
            ),
        );
        // b is a node of ours: it reports its queue to a.
        let b = nodes.get_mut("b@h").unwrap();
        b.kind = NodeKind::NodeServer;
        if let Some(d) = b.sample.data.as_mut() {
            d.queues = vec![node_server::info::ConnectionQueue {
                node: node_server::etf::Atom::new("a@h"),
                queue_bytes: 2048,
                busy: 5,
                dropped: 1,
            }];
        }
        let mut gone = up(&["a@h"], &[], vec![("old", vec!["<d@h.1.0>"])]);
        gone.set_status(NodeStatus::Gone);
        nodes.insert("d@h".to_owned(), gone);
        let epmd = EpmdView::default();
        let s = build_snapshot(7, "dash@h", &settings, &epmd, &nodes);
        assert_eq!(s.seq, 7);
        let edges: Vec<_> = s
            .edges
            .iter()
            .map(|e| (e.a.as_str(), e.b.as_str(), e.hidden))
            .collect();
        assert_eq!(edges, vec![("a@h", "b@h", false), ("a@h", "c@h", true)]);
        assert_eq!(
            s.edges[0].queues,
            vec![QueueView {
                from: "b@h".into(),
                to: "a@h".into(),
                queue_bytes: 2048,
                busy: 5,
                dropped: 1
            }]
        );
        assert!(
            s.edges[1].queues.is_empty(),
            "Erlang nodes report no queues"
        );
        assert_eq!(s.groups.len(), 1, "a gone node's groups are dropped");
        assert_eq!(s.groups[0].name, "echo");
        assert_eq!(s.groups[0].members.len(), 2);
        assert_eq!(s.groups[0].seen_on, vec!["a@h", "b@h"]);
        let d = s.nodes.iter().find(|n| n.name == "d@h").unwrap();
        assert_eq!(d.standing.status, NodeStatus::Gone);
        assert!(!d.standing.alive && d.connections.connected.is_empty());
    }
}
