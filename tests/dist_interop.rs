//! Distribution interop: our node against real Erlang/OTP nodes (and hand-made raw peers) on
//! loopback.
//!
//! Every test has an EPMD of its own ([`Epmd`]: this workspace's daemon, in this process, on a
//! port the system picked) and node names of its own (the test's tag and this process's id),
//! so the tests run in parallel next to whatever EPMD the machine runs. Our nodes and the `erl`
//! nodes register with the test's EPMD (`erl` runs with `-start_epmd false`, so it can never
//! leave a real EPMD daemon behind). Every `erl` is an [`ErlPeer`], killed when dropped.
//!
//! The Erlang side is `tests/erlang/dist_peer.erl`, driven over a line protocol on stdin and
//! stdout (see that file). Waiting is on events ([`Node::subscribe`]) or polling with a
//! deadline. The only fixed waits are observation windows that assert that nothing happens
//! (e.g. an idle connection staying up for three tick times), and, in the last test, a schedule
//! that places a handshake around a protocol timer on purpose.
//!
//! Needs Erlang/OTP (`erl`, `erlc`): without it the tests are skipped on a developer machine
//! and fail in CI (`CI=true`), see [`testkit::require_erl`]. The raw-socket tests need no
//! `erl` at all except for the final `ping` of the hostile-peer test.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use node_server::dist::handshake::{Established, Handshake, HandshakeConfig, Status, Step};
use node_server::dist::DistFlags;
use node_server::{client_connect, client_connect_addr, ConnectError, Node, NodeConfig, NodeEvent};
use testkit::{require_erl, Epmd, ErlPeer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;

/// How long any awaited event may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);
/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);
/// How long the Erlang peer may take to answer one request.
const ERL_REPLY: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A node name (the part before `@`) unique to this test and this test process.
fn unique(tag: &str) -> String {
    format!("{tag}_{}", std::process::id())
}

/// Awaits `fut` for at most [`DEADLINE`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    testkit::within(what, DEADLINE, fut).await
}

/// The next event about `peer`, waiting at most `limit`; `None` when none came.
async fn next_event_for(
    events: &mut broadcast::Receiver<NodeEvent>,
    peer: &str,
    limit: Duration,
) -> Option<NodeEvent> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let ev = match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return None,
            Ok(Ok(ev)) => ev,
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => panic!("lost {n} node events"),
            Ok(Err(broadcast::error::RecvError::Closed)) => panic!("the node's events ended"),
        };
        match &ev {
            NodeEvent::Up { node, .. } | NodeEvent::Down { node, .. } if node == peer => {
                return Some(ev)
            }
            _ => {}
        }
    }
}

/// Awaits the next `Up` event for `peer` (within [`DEADLINE`]); returns its `hidden` field.
async fn expect_up(events: &mut broadcast::Receiver<NodeEvent>, peer: &str) -> bool {
    match next_event_for(events, peer, DEADLINE).await {
        Some(NodeEvent::Up { hidden, .. }) => hidden,
        other => panic!("expected Up for {peer} within {DEADLINE:?}, got {other:?}"),
    }
}

/// Awaits the next `Down` event for `peer` within `limit`; returns its reason.
async fn expect_down(
    events: &mut broadcast::Receiver<NodeEvent>,
    peer: &str,
    limit: Duration,
) -> String {
    match next_event_for(events, peer, limit).await {
        Some(NodeEvent::Down { reason, .. }) => reason,
        other => panic!("expected Down for {peer} within {limit:?}, got {other:?}"),
    }
}

/// Every event already queued: (ups, downs) about `peer`.
fn drain_counts(events: &mut broadcast::Receiver<NodeEvent>, peer: &str) -> (usize, usize) {
    let (mut ups, mut downs) = (0, 0);
    loop {
        match events.try_recv() {
            Ok(NodeEvent::Up { node, .. }) if node == peer => ups += 1,
            Ok(NodeEvent::Down { node, .. }) if node == peer => downs += 1,
            Ok(_) => {}
            Err(broadcast::error::TryRecvError::Lagged(n)) => panic!("lost {n} node events"),
            Err(_) => return (ups, downs),
        }
    }
}

/// A configuration for one of our nodes: `name` on this host, the cookie, the test's EPMD
/// port, a listener on loopback. Hidden and without `pg` scopes, unlike the default: these
/// tests look at connection setup and at every frame, which a visible node's `global` traffic
/// and `pg` discovery would join (a test that wants a visible node says so).
fn config(name: &str, cookie: &str, epmd_port: u16) -> NodeConfig {
    NodeConfig::new(name)
        .hidden(true)
        .pg_scopes(Vec::<String>::new())
        .cookie(cookie)
        .epmd("localhost", epmd_port)
        .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
}

async fn start(config: NodeConfig) -> Node {
    let what = format!("starting {config:?}");
    within(&what, config.start())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Whether `node` is among our node's connections (exactly once), with its hidden flag.
fn connection_to(node: &Node, peer: &str) -> Option<bool> {
    let matching: Vec<_> = node
        .connected()
        .into_iter()
        .filter(|(n, _)| n == peer)
        .collect();
    assert!(matching.len() <= 1, "{peer} listed twice: {matching:?}");
    matching.first().map(|(_, hidden)| *hidden)
}

/// `tests/erlang/dist_peer.erl`, compiled once per test process.
fn beam_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        testkit::compile_erlang(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang/dist_peer.erl"),
        )
    })
}

/// A running `erl -sname NAME` node driven by `dist_peer`.
struct Erl {
    peer: ErlPeer,
    /// Its full node name, as `node()` gives it.
    name: String,
}

impl Erl {
    /// Boots `erl -sname sname -setcookie cookie` against EPMD on `epmd_port` (which must be
    /// running: `erl` is told not to start one), with `extra` arguments for `erl`.
    async fn start(erl: &Path, sname: &str, cookie: &str, epmd_port: u16, extra: &[&str]) -> Erl {
        let builder = ErlPeer::builder(erl, "dist_peer")
            .code_path(beam_dir())
            .args([
                "-sname",
                sname,
                "-setcookie",
                cookie,
                "-start_epmd",
                "false",
            ])
            .args(extra.iter().copied())
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .reply_timeout(ERL_REPLY);
        let peer = tokio::task::block_in_place(|| builder.start())
            .unwrap_or_else(|e| panic!("cannot start erl: {e}"));
        let mut erl = Erl {
            peer,
            name: String::new(),
        };
        let reply = erl.request("node").await;
        erl.name = reply
            .strip_prefix("ok ")
            .unwrap_or_else(|| panic!("bad reply to node: {reply}"))
            .to_owned();
        erl
    }

    /// The host part of its name.
    fn host(&self) -> &str {
        self.name.split_once('@').map(|(_, h)| h).unwrap_or("")
    }

    /// Queues a request line; never blocks.
    fn send(&mut self, line: &str) {
        self.peer.send_line(line);
    }

    /// The next reply line (within [`ERL_REPLY`], else a panic with the node's stderr).
    async fn recv(&mut self) -> String {
        tokio::task::block_in_place(|| self.peer.recv_line())
    }

    async fn request(&mut self, line: &str) -> String {
        self.send(line);
        self.recv().await
    }

    /// The nodes a `nodes`, `nodes_hidden` or `nodes_connected` request lists.
    async fn nodes(&mut self, which: &str) -> Vec<String> {
        Self::node_list(which, &self.request(which).await)
    }

    /// The `which` list once it holds `node` (the peer awaits net_kernel's nodeup: a connect
    /// that finished on our side may not be marked up on Erlang's yet), or as it is after 5 s.
    async fn nodes_once_listed(&mut self, which: &str, node: &str) -> Vec<String> {
        let reply = self
            .request(&format!("wait_listed {which} {node} 5000"))
            .await;
        Self::node_list(which, &reply)
    }

    fn node_list(which: &str, reply: &str) -> Vec<String> {
        let mut words = reply.split_whitespace();
        assert_eq!(words.next(), Some("ok"), "bad reply to {which}: {reply}");
        words.map(str::to_owned).collect()
    }

    async fn ping(&mut self, node: &str) -> String {
        self.request(&format!("ping {node}")).await
    }

    fn diagnostics(&mut self) -> String {
        self.peer.diagnostics()
    }
}

/// Panics unless the Erlang node lists `node` among `which` (`nodes`, `nodes_hidden`) within 5 s.
async fn assert_listed(erl: &mut Erl, which: &str, node: &str) {
    let listed = erl.nodes_once_listed(which, node).await;
    assert_eq!(
        listed.iter().filter(|n| *n == node).count(),
        1,
        "{} lists {listed:?} for {which}, expected {node} once",
        erl.name
    );
}

/// A raw peer's handshake configuration.
fn raw_config(name: &str, cookie: &str) -> HandshakeConfig {
    HandshakeConfig {
        node_name: name.to_owned(),
        cookie: cookie.as_bytes().to_vec(),
        flags: DistFlags::OFFERED,
        required: DistFlags::REQUIRED,
        creation: 0x5eed,
    }
}

/// Completes a handshake as the initiator over a raw socket to our node, with the public
/// sans-IO state machine. Returns the socket, the bytes read past the handshake and the
/// result.
async fn raw_handshake(
    node: &Node,
    name: &str,
    cookie: &str,
) -> (TcpStream, BytesMut, Established) {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, node.port()))
        .await
        .expect("connect to our node");
    let mut hs = Handshake::initiator(raw_config(name, cookie), Some(node.name().into()), 4242);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    hs.start(&mut out).expect("start");
    let est = within("a raw handshake", async {
        loop {
            let step = hs.advance(&mut input, &mut out);
            if !out.is_empty() {
                stream.write_all(&out).await.expect("write");
                out.clear();
            }
            match step.unwrap_or_else(|e| panic!("raw handshake as {name} failed: {e}")) {
                Step::NeedMore => {}
                Step::PeerAlive => {
                    hs.answer_alive(true, &mut out).expect("answer_alive");
                    continue;
                }
                Step::Established(est) => return est,
                Step::PeerNamed(_) => unreachable!("the initiator is never asked for a status"),
            }
            let n = stream.read_buf(&mut input).await.expect("read");
            assert_ne!(n, 0, "our node closed the raw handshake as {name}");
        }
    })
    .await;
    (stream, input, est)
}

/// A well-behaved raw peer named `name` connects; our node reports it up; then it leaves.
async fn raw_peer_is_served(node: &Node, name: &str, cookie: &str) {
    let mut events = node.subscribe();
    let (stream, _, est) = raw_handshake(node, name, cookie).await;
    assert_eq!(est.peer.name, node.name());
    expect_up(&mut events, name).await;
    assert!(connection_to(node, name).is_some());
    drop(stream);
    let reason = expect_down(&mut events, name, DEADLINE).await;
    assert_eq!(reason, "connection_closed");
}

/// Reads until the peer closes (end of file or an error such as a reset), discarding data, for
/// at most `limit`. Returns how long it took, or `None` if the socket was still open.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return t0.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .ok()
}

/// Sends a signal (`-STOP`, `-CONT`) to a process with `kill`.
fn signal(sig: &str, pid: &str) {
    let out = testkit::output_within(
        std::process::Command::new("kill").args([sig, pid]),
        Duration::from_secs(10),
    )
    .expect("run kill");
    assert!(out.status.success(), "kill {sig} {pid}: {out:?}");
}

/// A handshake frame (2-byte length) holding `body`.
fn frame16(body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(2 + body.len());
    f.put_u16(body.len() as u16);
    f.put_slice(body);
    f
}

// ---------------------------------------------------------------------------------------------
// 1. Erlang pings us
// ---------------------------------------------------------------------------------------------

/// `net_adm:ping` from a real node gets `pong`; our node reports the peer up; the Erlang node
/// lists ours as a hidden node (these tests run ours hidden), not a visible one. Both nodes
/// register with the test's EPMD.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_pings_our_node() {
    let Some(erl) = require_erl() else { return };
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let cookie = "dist_t1_cookie";
    let node = start(config(&unique("t1_rust"), cookie, epmd_port)).await;
    let mut events = node.subscribe();
    let mut peer = Erl::start(&erl, &unique("t1_erl"), cookie, epmd_port, &[]).await;
    assert_eq!(
        node.name().split_once('@').map(|(_, h)| h),
        Some(peer.host()),
        "our node and erl disagree on the short host name"
    );

    assert_eq!(
        peer.ping(node.name()).await,
        "pong",
        "{}",
        peer.diagnostics()
    );
    let hidden = expect_up(&mut events, &peer.name).await;
    assert!(hidden, "a connection with our hidden node must be hidden");
    assert_eq!(connection_to(&node, &peer.name), Some(true));
    assert_listed(&mut peer, "nodes_hidden", node.name()).await;
    let visible = peer.nodes("nodes").await;
    assert!(
        !visible.iter().any(|n| n == node.name()),
        "our hidden node is listed in nodes(): {visible:?}"
    );
    // A second ping goes over the same connection.
    assert_eq!(peer.ping(node.name()).await, "pong");
    assert_eq!(drain_counts(&mut events, &peer.name), (0, 0));
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. We connect to Erlang, hidden and visible
// ---------------------------------------------------------------------------------------------

/// `client_connect` to `name@host` (resolved through EPMD) succeeds; Erlang lists a hidden
/// node of ours in `nodes(hidden)` and a visible one in `nodes()`; our `connected()` lists the
/// Erlang node with the right hidden flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_node_connects_to_erlang_hidden_and_visible() {
    let Some(erl) = require_erl() else { return };
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let cookie = "dist_t2_cookie";
    let hidden_node = start(config(&unique("t2_hidden"), cookie, epmd_port)).await;
    let visible_node = start(config(&unique("t2_visible"), cookie, epmd_port).hidden(false)).await;
    let mut peer = Erl::start(&erl, &unique("t2_erl"), cookie, epmd_port, &[]).await;
    // The name as a user writes it: short name @ the short host name erl itself reports.
    let target = format!("{}@{}", unique("t2_erl"), peer.host());
    assert_eq!(target, peer.name);

    let mut events = hidden_node.subscribe();
    within(
        "client_connect (hidden)",
        client_connect(&hidden_node, &target),
    )
    .await
    .unwrap_or_else(|e| panic!("hidden connect failed: {e}"));
    assert!(expect_up(&mut events, &target).await);
    assert_eq!(connection_to(&hidden_node, &target), Some(true));
    assert_listed(&mut peer, "nodes_hidden", hidden_node.name()).await;
    assert!(!peer
        .nodes("nodes")
        .await
        .contains(&hidden_node.name().to_owned()));
    // Connecting again is a no-op success over the same session.
    within(
        "client_connect again",
        client_connect(&hidden_node, &target),
    )
    .await
    .expect("second connect");
    assert_eq!(drain_counts(&mut events, &target), (0, 0));

    let mut events = visible_node.subscribe();
    within(
        "client_connect (visible)",
        client_connect(&visible_node, &target),
    )
    .await
    .unwrap_or_else(|e| panic!("visible connect failed: {e}"));
    assert!(
        !expect_up(&mut events, &target).await,
        "a connection between two visible nodes must not be hidden"
    );
    assert_eq!(connection_to(&visible_node, &target), Some(false));
    assert_listed(&mut peer, "nodes", visible_node.name()).await;
    assert!(!peer
        .nodes("nodes_hidden")
        .await
        .contains(&visible_node.name().to_owned()));
    // Both connections answer pings from the Erlang side.
    assert_eq!(peer.ping(hidden_node.name()).await, "pong");
    assert_eq!(peer.ping(visible_node.name()).await, "pong");

    visible_node.shutdown().await;
    hidden_node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Wrong cookies
// ---------------------------------------------------------------------------------------------

/// A wrong cookie fails the connection in each direction (`pang` for Erlang's ping,
/// `CookieRejected` for our `client_connect`), both sides keep running, and the right cookie
/// works at once afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_cookie_in_each_direction() {
    let Some(erl) = require_erl() else { return };
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let ours = "dist_t3_ours";
    let theirs = "dist_t3_theirs";
    let node =
        start(config(&unique("t3_rust"), ours, epmd_port).setup_time(Duration::from_secs(3))).await;
    let mut events = node.subscribe();
    let mut peer = Erl::start(&erl, &unique("t3_erl"), theirs, epmd_port, &[]).await;

    // Us to them, with our cookie (wrong for them).
    let t0 = Instant::now();
    let result = within(
        "client_connect with a wrong cookie",
        client_connect(&node, &peer.name),
    )
    .await;
    assert!(
        matches!(&result, Err(ConnectError::CookieRejected(n)) if *n == peer.name),
        "expected CookieRejected, got {result:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "the rejection took {:?}",
        t0.elapsed()
    );
    assert_eq!(connection_to(&node, &peer.name), None);

    // Them to us, with their cookie (wrong for us).
    assert_eq!(
        peer.ping(node.name()).await,
        "pang",
        "{}",
        peer.diagnostics()
    );
    assert_eq!(connection_to(&node, &peer.name), None);
    assert!(!peer
        .nodes("nodes_connected")
        .await
        .contains(&node.name().to_owned()));
    assert_eq!(drain_counts(&mut events, &peer.name), (0, 0));

    // Both still run: Erlang answers, and with our cookie set for our node, its ping works.
    assert_eq!(
        peer.request(&format!("set_cookie {} {ours}", node.name()))
            .await,
        "ok"
    );
    assert_eq!(
        peer.ping(node.name()).await,
        "pong",
        "{}",
        peer.diagnostics()
    );
    assert!(expect_up(&mut events, &peer.name).await);
    assert_listed(&mut peer, "nodes_hidden", node.name()).await;

    // A second node of ours with their cookie connects to them straight away.
    let right = start(config(&unique("t3_right"), theirs, epmd_port)).await;
    within(
        "client_connect with the right cookie",
        client_connect(&right, &peer.name),
    )
    .await
    .unwrap_or_else(|e| panic!("connect with the right cookie failed: {e}"));
    assert_eq!(connection_to(&right, &peer.name), Some(true));
    assert_listed(&mut peer, "nodes_hidden", right.name()).await;

    right.shutdown().await;
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Simultaneous connect
// ---------------------------------------------------------------------------------------------

/// One round: Erlang pings our node and our node connects to Erlang at the same moment (the
/// ping command sent first, or, when `ours_first`, our connect started first). Both succeed
/// and exactly one connection results, on both sides; then it is closed again (by us or, when
/// `erlang_disconnects`, by Erlang).
async fn simultaneous_round(
    node: &Node,
    peer: &mut Erl,
    round: usize,
    ours_first: bool,
    erlang_disconnects: bool,
) {
    let mut events = node.subscribe();
    let erl_name = peer.name.clone();
    assert_eq!(
        connection_to(node, &erl_name),
        None,
        "round {round}: not clean"
    );

    let ping = format!("ping {}", node.name());
    let connecting = {
        let node = node.clone();
        let erl_name = erl_name.clone();
        if !ours_first {
            peer.send(&ping);
        }
        tokio::spawn(async move { client_connect(&node, &erl_name).await })
    };
    if ours_first {
        peer.send(&ping);
    }
    let ours = within("client_connect racing a ping", connecting)
        .await
        .expect("the connect task");
    let theirs = peer.recv().await;
    assert!(ours.is_ok(), "round {round} ({}): {ours:?}", node.name());
    assert_eq!(theirs, "pong", "round {round} ({})", node.name());

    // Exactly one session on each side, and it works.
    expect_up(&mut events, &erl_name).await;
    assert!(connection_to(node, &erl_name).is_some());
    assert_listed(peer, "nodes_hidden", node.name()).await;
    assert_eq!(peer.ping(node.name()).await, "pong");
    assert_eq!(
        drain_counts(&mut events, &erl_name),
        (0, 0),
        "round {round} ({}): more than one Up, or a Down, for one connection",
        node.name()
    );
    assert_eq!(
        node.connected()
            .iter()
            .filter(|(n, _)| *n == erl_name)
            .count(),
        1
    );

    // Close it and wait until both sides agree it is gone.
    if erlang_disconnects {
        assert_eq!(
            peer.request(&format!("disconnect {}", node.name())).await,
            "true"
        );
    } else {
        node.disconnect(&erl_name);
    }
    expect_down(&mut events, &erl_name, DEADLINE).await;
    assert_eq!(connection_to(node, &erl_name), None);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let nodes = peer.nodes("nodes_connected").await;
        if !nodes.iter().any(|n| n == node.name()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "round {round}: Erlang still lists {} after {DEADLINE:?}: {nodes:?}",
            node.name()
        );
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(drain_counts(&mut events, &erl_name), (0, 0));
}

/// Our node calls `client_connect` while the Erlang node runs `net_adm:ping` towards it, a few
/// times over, with one node of ours whose name sorts before the Erlang node's (the Erlang
/// side wins the race) and one whose name sorts after (ours wins).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_connect_gives_one_session() {
    testkit::init_logging();
    let Some(erl) = require_erl() else { return };
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let cookie = "dist_t4_cookie";
    let low = start(config(&unique("a_t4_low"), cookie, epmd_port)).await;
    let high = start(config(&unique("z_t4_high"), cookie, epmd_port)).await;
    let mut peer = Erl::start(&erl, &unique("m_t4_erl"), cookie, epmd_port, &[]).await;
    assert!(low.name() < peer.name.as_str() && peer.name.as_str() < high.name());

    const ROUNDS: usize = 40;
    for round in 0..ROUNDS {
        let ours_first = round % 2 == 0;
        let erlang_disconnects = round % 4 >= 2;
        simultaneous_round(&low, &mut peer, round, ours_first, erlang_disconnects).await;
        simultaneous_round(&high, &mut peer, round, ours_first, !erlang_disconnects).await;
    }
    high.shutdown().await;
    low.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Ticks keep an idle connection up; a killed node goes down
// ---------------------------------------------------------------------------------------------

/// With a short `net_ticktime` on both sides, an idle connection stays up for three tick
/// times. Then the Erlang node is frozen (SIGSTOP, the socket stays open): our node reports it
/// down with reason `net_tick_timeout` within two tick times. Thawed, it connects again; then
/// it is killed (SIGKILL) and our node reports it down, with reason `connection_closed`, within
/// two tick times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connection_stays_up_and_killed_node_goes_down() {
    let Some(erl) = require_erl() else { return };
    let tick = Duration::from_secs(2);
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let cookie = "dist_t5_cookie";
    let node = start(config(&unique("t5_rust"), cookie, epmd_port).net_ticktime(tick)).await;
    let mut events = node.subscribe();
    let mut peer = Erl::start(
        &erl,
        &unique("t5_erl"),
        cookie,
        epmd_port,
        &["-kernel", "net_ticktime", "2"],
    )
    .await;
    assert_eq!(peer.request("ticktime").await, "ok 2");
    let erl_name = peer.name.clone();
    assert_eq!(peer.ping(node.name()).await, "pong");
    expect_up(&mut events, &erl_name).await;

    // Idle for three tick times: no Down on our side, none on theirs.
    assert_eq!(
        peer.request(&format!("monitor_node {}", node.name())).await,
        "ok"
    );
    let idle = tick * 3;
    if let Some(ev) = next_event_for(&mut events, &erl_name, idle).await {
        panic!("the idle connection did not stay up for {idle:?}: {ev:?}");
    }
    assert_eq!(
        peer.request(&format!("wait_nodedown {} 0", node.name()))
            .await,
        "timeout",
        "Erlang saw our node go down while idle"
    );
    assert_listed(&mut peer, "nodes_hidden", node.name()).await;
    assert!(connection_to(&node, &erl_name).is_some());

    // Freeze the Erlang node (SIGSTOP): its socket stays open but it stops ticking, so only
    // our tick timer can notice.
    let pid = peer.peer.os_pid().to_string();
    signal("-STOP", &pid);
    let t0 = Instant::now();
    let reason = expect_down(&mut events, &erl_name, tick * 2).await;
    let took = t0.elapsed();
    signal("-CONT", &pid);
    assert_eq!(reason, "net_tick_timeout", "after {took:?}");
    assert!(
        took >= tick / 2,
        "a frozen peer was declared down after only {took:?}"
    );
    assert_eq!(connection_to(&node, &erl_name), None);
    // Thawed, it connects again.
    assert_eq!(
        peer.ping(node.name()).await,
        "pong",
        "{}",
        peer.diagnostics()
    );
    expect_up(&mut events, &erl_name).await;

    // Kill -9 the Erlang node.
    let t0 = Instant::now();
    // Dropping the peer kills the OS process (SIGKILL) and reaps it.
    tokio::task::block_in_place(|| drop(peer));
    let reason = expect_down(&mut events, &erl_name, tick * 2).await;
    assert_eq!(reason, "connection_closed", "after {:?}", t0.elapsed());
    assert_eq!(connection_to(&node, &erl_name), None);
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. noproc for names that do not exist
// ---------------------------------------------------------------------------------------------

/// A `gen_server:call` to, and a monitor of, a registered name that does not exist on our node
/// fail with `noproc` at once rather than after the call's timeout; a monitor of one that does
/// exist (`net_kernel`) stays quiet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_names_get_noproc_at_once() {
    let Some(erl) = require_erl() else { return };
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let cookie = "dist_t6_cookie";
    let node = start(config(&unique("t6_rust"), cookie, epmd_port)).await;
    let mut peer = Erl::start(&erl, &unique("t6_erl"), cookie, epmd_port, &[]).await;
    assert_eq!(peer.ping(node.name()).await, "pong");

    for attempt in 0..2 {
        let t0 = Instant::now();
        let reply = peer
            .request(&format!("call_missing {} nosuch", node.name()))
            .await;
        let wall = t0.elapsed();
        let mut words = reply.split_whitespace();
        assert_eq!(
            (words.next(), words.next()),
            (Some("exit"), Some("noproc")),
            "attempt {attempt}: gen_server:call to a missing name: {reply}"
        );
        let ms: u64 = words
            .next()
            .and_then(|m| m.parse().ok())
            .expect("elapsed ms");
        assert!(
            ms < 2000 && wall < Duration::from_secs(2),
            "noproc after {ms} ms ({wall:?})"
        );
    }

    let reply = peer
        .request(&format!("monitor_missing {} nosuch 5000", node.name()))
        .await;
    let mut words = reply.split_whitespace();
    assert_eq!(
        (words.next(), words.next()),
        (Some("down"), Some("noproc")),
        "monitor of a missing name: {reply}"
    );
    let ms: u64 = words
        .next()
        .and_then(|m| m.parse().ok())
        .expect("elapsed ms");
    assert!(ms < 2000, "the noproc 'DOWN' came after {ms} ms");

    // A name that exists is not reported down.
    assert_eq!(
        peer.request(&format!("monitor_missing {} net_kernel 300", node.name()))
            .await,
        "timeout"
    );
    // The connection survived all of it.
    assert_eq!(peer.ping(node.name()).await, "pong");
    assert_listed(&mut peer, "nodes_hidden", node.name()).await;
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Hostile peers
// ---------------------------------------------------------------------------------------------

/// Garbage, a malformed challenge reply, an absurd handshake frame length, an oversized frame
/// after a completed handshake, a peer that stops mid-handshake and one that never speaks: our
/// node closes each connection promptly and keeps serving the next peer (a well-behaved raw
/// peer after each, a real Erlang node at the end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_dropped_and_the_node_keeps_serving() {
    let setup = Duration::from_secs(1);
    let close_limit = Duration::from_secs(3);
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let cookie = "dist_t7_cookie";
    let node = start(
        config(&unique("t7_rust"), cookie, epmd_port)
            .setup_time(setup)
            .max_frame(1 << 20),
    )
    .await;
    let host = node.name().split_once('@').expect("full name").1.to_owned();
    let raw_name = |tag: &str| format!("{}@{host}", unique(tag));
    let connect = || TcpStream::connect((Ipv4Addr::LOCALHOST, node.port()));

    // (a) Not the distribution protocol at all.
    let mut s = connect().await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert!(
        closed_within(&mut s, close_limit).await.is_some(),
        "(a) garbage: the socket stayed open"
    );
    raw_peer_is_served(&node, &raw_name("t7_ok_a"), cookie).await;

    // (b) A valid send_name, then a challenge_reply whose digest is 15 bytes long.
    let mut s = connect().await.expect("connect");
    let name_b = raw_name("t7_bad_digest");
    let mut hs = Handshake::initiator(raw_config(&name_b, cookie), None, 1);
    let mut out = BytesMut::new();
    hs.start(&mut out).expect("start");
    s.write_all(&out).await.expect("write send_name");
    let mut input = BytesMut::new();
    within("status and challenge", async {
        loop {
            out.clear();
            match hs
                .advance(&mut input, &mut out)
                .expect("status and challenge")
            {
                Step::NeedMore => {}
                other => panic!("unexpected {other:?}"),
            }
            // The machine wrote its (correct) challenge_reply: the challenge has arrived.
            if !out.is_empty() {
                return;
            }
            let n = s.read_buf(&mut input).await.expect("read");
            assert_ne!(n, 0, "(b) closed before the challenge");
        }
    })
    .await;
    let mut bad_reply = vec![b'r'];
    bad_reply.put_u32(7);
    bad_reply.extend_from_slice(&[0xAB; 15]);
    s.write_all(&frame16(&bad_reply)).await.expect("write");
    assert!(
        closed_within(&mut s, close_limit).await.is_some(),
        "(b) short digest: the socket stayed open"
    );
    assert_eq!(connection_to(&node, &name_b), None);
    raw_peer_is_served(&node, &raw_name("t7_ok_b"), cookie).await;

    // (c1) A handshake frame announcing 0xFFFF bytes.
    let mut s = connect().await.expect("connect");
    s.write_all(&[0xFF, 0xFF, b'N', 0, 0, 0])
        .await
        .expect("write");
    assert!(
        closed_within(&mut s, close_limit).await.is_some(),
        "(c1) huge handshake frame: the socket stayed open"
    );
    raw_peer_is_served(&node, &raw_name("t7_ok_c1"), cookie).await;

    // (c2) After a completed handshake, a frame of 1 GiB with max_frame at 1 MiB.
    let mut events = node.subscribe();
    let name_c2 = raw_name("t7_oversize");
    let (mut s, _, _) = raw_handshake(&node, &name_c2, cookie).await;
    expect_up(&mut events, &name_c2).await;
    s.write_all(&(1u32 << 30).to_be_bytes())
        .await
        .expect("write");
    s.write_all(&[0; 64]).await.expect("write");
    let reason = expect_down(&mut events, &name_c2, close_limit).await;
    assert!(
        reason.contains("exceeds") || reason.contains("frame"),
        "(c2) oversize frame: Down reason {reason:?}"
    );
    assert!(
        closed_within(&mut s, close_limit).await.is_some(),
        "(c2) oversize frame: the socket stayed open"
    );
    raw_peer_is_served(&node, &raw_name("t7_ok_c2"), cookie).await;

    // (d) send_name, then silence: dropped after about setup_time.
    let mut s = connect().await.expect("connect");
    let mut hs = Handshake::initiator(raw_config(&raw_name("t7_silent"), cookie), None, 1);
    let mut out = BytesMut::new();
    hs.start(&mut out).expect("start");
    s.write_all(&out).await.expect("write send_name");
    let took = closed_within(&mut s, close_limit).await;
    let took = took.unwrap_or_else(|| panic!("(d) silent peer: still open after {close_limit:?}"));
    assert!(
        took >= setup / 2,
        "(d) silent peer dropped after {took:?}, before setup_time {setup:?}"
    );
    raw_peer_is_served(&node, &raw_name("t7_ok_d"), cookie).await;

    // (e) A peer that connects and never says a word.
    let mut s = connect().await.expect("connect");
    let took = closed_within(&mut s, close_limit).await;
    let took = took.unwrap_or_else(|| panic!("(e) mute peer: still open after {close_limit:?}"));
    assert!(took >= setup / 2, "(e) mute peer dropped after {took:?}");
    raw_peer_is_served(&node, &raw_name("t7_ok_e"), cookie).await;

    // A real Erlang node still connects.
    if let Some(erl) = require_erl() {
        let mut peer = Erl::start(&erl, &unique("t7_erl"), cookie, epmd_port, &[]).await;
        assert_eq!(
            peer.ping(node.name()).await,
            "pong",
            "{}",
            peer.diagnostics()
        );
    }
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 8. Ticks
// ---------------------------------------------------------------------------------------------

/// A raw peer that completes the handshake and then only reads receives tick frames (4 zero
/// bytes) about every quarter `net_ticktime`, and, since it never sends anything, is dropped
/// after about `net_ticktime` with reason `net_tick_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_node_ticks_and_drops_a_silent_peer() {
    let tick = Duration::from_millis(1200);
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let cookie = "dist_t8_cookie";
    let node = start(config(&unique("t8_rust"), cookie, epmd_port).net_ticktime(tick)).await;
    let host = node.name().split_once('@').expect("full name").1.to_owned();
    let name = format!("{}@{host}", unique("t8_silent"));
    let mut events = node.subscribe();
    let (mut s, mut input, _) = raw_handshake(&node, &name, cookie).await;
    let t0 = Instant::now();
    expect_up(&mut events, &name).await;

    // Read frames until our node closes the connection.
    let mut ticks: Vec<Duration> = Vec::new();
    let limit = tick * 3;
    within("the silent peer to be dropped", async {
        loop {
            while input.len() >= 4 {
                let len = u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize;
                if input.len() < 4 + len {
                    break;
                }
                assert_eq!(len, 0, "our node sent a non-tick frame to an idle peer");
                let _ = input.split_to(4);
                ticks.push(t0.elapsed());
            }
            match tokio::time::timeout(limit, s.read_buf(&mut input)).await {
                Err(_) => panic!("neither a tick nor a close within {limit:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
            }
        }
    })
    .await;
    let closed_after = t0.elapsed();
    let reason = expect_down(&mut events, &name, DEADLINE).await;
    assert_eq!(reason, "net_tick_timeout");

    // Ticks every quarter tick time: at least three before the drop, none late.
    assert!(
        ticks.len() >= 3,
        "ticks at {ticks:?}, closed after {closed_after:?}"
    );
    let slack = Duration::from_millis(250);
    let mut previous = Duration::ZERO;
    for t in &ticks {
        assert!(
            *t - previous <= tick / 4 + slack,
            "a gap of {:?} between ticks (at {ticks:?})",
            *t - previous
        );
        previous = *t;
    }
    assert!(
        closed_after >= tick * 3 / 4 && closed_after <= tick * 2 + slack,
        "the silent peer was dropped after {closed_after:?}, net_ticktime {tick:?}"
    );
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 9. A lost simultaneous-connect race must not fail a later connect
// ---------------------------------------------------------------------------------------------

/// Runs the acceptor side of a fake node on `sock` until the dialler names itself.
async fn fake_accept_until_named(sock: &mut TcpStream, hs: &mut Handshake, input: &mut BytesMut) {
    let mut out = BytesMut::new();
    within("the dialler's send_name", async {
        loop {
            match hs.advance(input, &mut out).expect("send_name") {
                Step::PeerNamed(_) => return,
                Step::NeedMore => {}
                other => panic!("unexpected {other:?}"),
            }
            let n = sock.read_buf(input).await.expect("read");
            assert_ne!(n, 0, "the dialler closed before naming itself");
        }
    })
    .await;
    assert!(out.is_empty());
}

/// When our outgoing attempt loses a simultaneous-connect race (the peer answers `nok`), the
/// node arms a timer (2 x setup_time) that later reports the attempt as timed out unless the
/// peer's own connection came. That timer must concern that attempt only: a later, unrelated
/// `client_connect` to the same node that is still in its handshake when the timer runs out
/// must not be failed by it.
///
/// A fake node (a raw listener driving the public handshake machine as the acceptor, with a
/// name greater than ours) answers our first attempt with `nok`, then connects to us itself
/// (so the first `client_connect` succeeds), then leaves. A second `client_connect` follows;
/// the fake answers it slowly, but within setup_time per step, straddling the old timer.
/// The fixed waits here place events around that timer on purpose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_race_does_not_fail_a_later_connect() {
    let setup = Duration::from_secs(3);
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let cookie = "dist_t9_cookie";
    let node = start(config(&unique("b_t9_rust"), cookie, epmd_port).setup_time(setup)).await;
    let host = node.name().split_once('@').expect("full name").1.to_owned();
    let fake = format!("{}@{host}", unique("y_t9_fake"));
    assert!(node.name() < fake.as_str(), "the fake must win the race");
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut events = node.subscribe();
    let dial = |node: &Node, fake: &str| {
        let (node, fake) = (node.clone(), fake.to_owned());
        tokio::spawn(async move { client_connect_addr(&node, &fake, addr).await })
    };

    // 1. Our attempt loses the race: the fake answers `nok`.
    let first = dial(&node, &fake);
    let (mut sock, _) = within("our first dial", listener.accept())
        .await
        .expect("accept");
    let mut hs = Handshake::acceptor(raw_config(&fake, cookie), 11);
    let mut input = BytesMut::new();
    fake_accept_until_named(&mut sock, &mut hs, &mut input).await;
    let mut out = BytesMut::new();
    hs.set_status(Status::Nok, &mut out).expect("nok");
    sock.write_all(&out).await.expect("write nok");
    let lost_at = Instant::now();
    drop(sock);

    // 2. The fake's own connection wins; our first connect succeeds with it; then it leaves.
    let (raw, _, _) = raw_handshake(&node, &fake, cookie).await;
    expect_up(&mut events, &fake).await;
    let result = within("the first client_connect", first)
        .await
        .expect("task");
    assert!(result.is_ok(), "first client_connect: {result:?}");
    drop(raw);
    expect_down(&mut events, &fake, DEADLINE).await;

    // 3. A new connect, whose handshake is in progress when the old race's timer runs out.
    tokio::time::sleep_until((lost_at + setup * 4 / 3).into()).await;
    let second = dial(&node, &fake);
    let (mut sock, _) = within("our second dial", listener.accept())
        .await
        .expect("accept");
    let named_at = Instant::now();
    let mut hs = Handshake::acceptor(raw_config(&fake, cookie), 22);
    let mut input = BytesMut::new();
    fake_accept_until_named(&mut sock, &mut hs, &mut input).await;
    let resume_at = lost_at + setup * 2 + setup / 8;
    assert!(
        resume_at + setup / 8 < named_at + setup,
        "the test's schedule slipped: named at {:?}",
        named_at - lost_at
    );
    tokio::time::sleep_until(resume_at.into()).await;
    let finished_early = second.is_finished();

    // 4. The fake completes the handshake within our setup_time.
    let mut out = BytesMut::new();
    hs.set_status(Status::Ok, &mut out).expect("ok");
    let completed = within("the fake's side of the second handshake", async {
        loop {
            if !out.is_empty() {
                if sock.write_all(&out).await.is_err() {
                    return false;
                }
                out.clear();
            }
            match sock.read_buf(&mut input).await {
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
            match hs.advance(&mut input, &mut out) {
                Ok(Step::Established(_)) => {
                    return sock.write_all(&out).await.is_ok();
                }
                Ok(Step::NeedMore) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    })
    .await;
    let result = within("the second client_connect", second)
        .await
        .expect("task");
    let up = next_event_for(&mut events, &fake, Duration::from_secs(2)).await;
    assert!(
        !finished_early && result.is_ok(),
        "the second client_connect returned {result:?}, {} {:?} after the first attempt lost \
         its race (that attempt's lost-race timer ran out at {:?}, while the second handshake \
         was in progress, and within setup_time per step); the fake {} the handshake, and our \
         node then reported {up:?}",
        if finished_early { "before" } else { "after" },
        resume_at - lost_at,
        setup * 2,
        if completed {
            "completed"
        } else {
            "could not complete"
        },
    );
    assert!(matches!(up, Some(NodeEvent::Up { .. })), "{up:?}");
    node.shutdown().await;
}
