//! Process groups shared with real Erlang/OTP 25 nodes and between nodes of ours: OTP `pg`
//! scopes kept in sync with `ractor::pg` (see `node_server::pg`).
//!
//! `ractor::pg` is one registry per OS process, so each test that runs a pg-synced node in this
//! process uses a scope of its own (`pg` over hidden connections, `pg_vis` over visible ones),
//! and the cluster of three nodes of ours runs each node in its own `echo_node` process.
//! Every test has its own EPMD ([`Epmd`], in this process, on a port of its own) and node
//! names. Erlang-side waits are driven by `pg:monitor` events (`tests/erlang/pg_peer.erl`);
//! Rust-side waits poll the group every 10 ms up to a deadline.
//!
//! Propagation (a join, leave, stop, kill or disconnect seen on the other side) must take
//! under [`PROPAGATION`]; the measured times are printed.
//!
//! Needs Erlang/OTP (`erl`, `erlc`): skipped on a developer machine without it, fails in CI
//! (`CI=true`), see [`testkit::require_erl`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use node_server::etf::Term;
use node_server::groups::Pick;
use node_server::remote::Raw;
use node_server::{client_connect, Node, NodeConfig};
use ractor::ActorRef;
use testkit::{ChildGuard, Epmd, EvalPeer};
use tokio::sync::mpsc;

const COOKIE: &str = "pg_interop_cookie";
/// How long any awaited step may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);
/// How soon a membership change must be seen on the other side.
const PROPAGATION: Duration = Duration::from_secs(1);
const ERL_REPLY: Duration = Duration::from_secs(20);

/// An actor that hands every term it receives to the test.
async fn probe() -> (ActorRef<Raw>, mpsc::UnboundedReceiver<Raw>) {
    testkit::forwarder().await
}

fn unique(tag: &str) -> String {
    format!("{tag}_{}", std::process::id())
}

/// Polls `check` every 10 ms until it holds; returns how long that took. Fails after
/// [`PROPAGATION`].
async fn propagated<F, Fut>(what: &str, check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    propagated_within(what, PROPAGATION, check).await
}

/// [`propagated`] with another limit.
async fn propagated_within<F, Fut>(what: &str, limit: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            let took = start.elapsed();
            println!("pg propagation: {what}: {took:?}");
            return took;
        }
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// This file's Erlang helpers, compiled once per test process.
fn beam_dirs() -> Vec<PathBuf> {
    testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer", "pg_peer"],
    )
}

struct Erl {
    peer: EvalPeer,
    name: String,
}

impl Erl {
    async fn start(erl: &Path, sname: &str, epmd_port: u16) -> Erl {
        let peer = EvalPeer::start_in_place(erl, sname, COOKIE, epmd_port, &beam_dirs(), ERL_REPLY);
        let name = peer.name().to_owned();
        let mut erl = Erl { peer, name };
        assert_eq!(erl.ok("pg_peer:start()").await, "ok");
        erl
    }

    async fn ok(&mut self, expr: &str) -> String {
        self.peer.ok_in_place(expr)
    }

    /// Runs a `pg_peer` wait that must answer `{ok, Millis}` within [`PROPAGATION`].
    async fn wait(&mut self, what: &str, expr: &str) {
        let ms = PROPAGATION.as_millis();
        let got = self.ok(&format!("{expr}, {ms})")).await;
        assert!(got.starts_with("{ok,"), "{what}: {expr} gave {got}");
        println!("pg propagation: {what}: {got}");
    }

    /// Stores the value of `expr` (a pid) under `key` in the tester's dictionary.
    async fn keep(&mut self, key: &str, expr: &str) -> String {
        self.ok(&format!("begin V = {expr}, put({key}, V), V end"))
            .await
    }
}

/// Our node; with `mirror`, remote members also join `ractor::pg` groups as proxies
/// ([`NodeConfig::pg_mirror_remote`]).
async fn start_node(
    name: &str,
    epmd_port: u16,
    (hidden, mirror): (bool, bool),
    scopes: &[&str],
) -> Node {
    NodeConfig::new(name)
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .hidden(hidden)
        .pg_mirror_remote(mirror)
        .pg_scopes(scopes.iter().copied())
        .start()
        .await
        .expect("node starts")
}

/// The ractor members of `group` in ractor scope `scope` that are proxies of remote processes.
fn remote_members(scope: &str, group: &str) -> usize {
    ractor::pg::get_scoped_members(&scope.to_owned(), &group.to_owned())
        .iter()
        .filter(|c| !c.get_id().is_local())
        .count()
}

/// Over hidden connections (our node hidden, so we send discover ourselves), scope `pg`:
/// membership both ways, group send and call, and join, leave, stop, kill and disconnect
/// propagation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_membership_over_hidden_connections() {
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let node = start_node(&unique("pgr"), epmd_port, (true, true), &["pg"]).await;
    let mut a = Erl::start(&erl, &unique("pga"), epmd_port).await;
    let mut b = Erl::start(&erl, &unique("pgb"), epmd_port).await;
    let b_name = b.name.clone();
    assert_eq!(a.ok(&format!("net_adm:ping('{b_name}')")).await, "pong");
    for e in [&mut a, &mut b] {
        assert_eq!(
            e.ok(&format!("net_adm:ping('{}')", node.name())).await,
            "pong"
        );
    }
    let scope = ractor::pg::DEFAULT_SCOPE;
    let groups = node.groups();

    // A Rust actor joins: both Erlang nodes see it.
    let (x, mut x_rx) = probe().await;
    let x_pid = groups.join("echo", &x);
    for e in [&mut a, &mut b] {
        e.wait("Rust join seen in Erlang", "pg_peer:wait_count(pg, echo, 1")
            .await;
        assert_eq!(
            e.ok("[{node(P), element(2, pg_peer:pid_parts(P))} || P <- pg:get_members(echo)]")
                .await,
            format!("[{{{},{}}}]", node.name(), x_pid.id)
        );
    }

    // Erlang processes join: they show up in ractor::pg as proxies, and in our view.
    a.keep("p1", "pg_peer:member(echo)").await;
    b.keep("p2", "pg_peer:member(echo)").await;
    propagated("Erlang joins seen in ractor::pg", || async {
        remote_members(scope, "echo") == 2
    })
    .await;
    assert_eq!(groups.members("echo").await.len(), 3);
    assert_eq!(groups.local_members("echo").await, vec![x_pid.clone()]);
    assert_eq!(groups.which_groups().await, vec!["echo".to_owned()]);
    // Erlang's own view agrees: three members on each node.
    for e in [&mut a, &mut b] {
        e.wait("all three seen in Erlang", "pg_peer:wait_count(pg, echo, 3")
            .await;
    }

    // Send to the whole group: the Rust actor and both Erlang members get it.
    assert_eq!(groups.send("echo", &Term::atom("hello")).await, 3);
    let got = testkit::within("the Rust member receives", DEADLINE, x_rx.recv()).await;
    assert_eq!(got.map(|Raw(t)| t), Some(Term::atom("hello")));
    for e in [&mut a, &mut b] {
        let got = e.ok("pg_peer:next(5000)").await;
        assert!(
            got.starts_with("{got,") && got.ends_with(",hello}"),
            "{got}"
        );
    }

    // A cast to a proxy taken from ractor::pg reaches the Erlang process.
    for cell in ractor::pg::get_scoped_members(&scope.to_owned(), &"echo".to_owned()) {
        if !cell.get_id().is_local() {
            let proxy: ActorRef<Raw> = cell.into();
            proxy
                .cast(Raw(Term::atom("via_proxy")))
                .expect("proxy cast");
        }
    }
    for e in [&mut a, &mut b] {
        let got = e.ok("pg_peer:next(5000)").await;
        assert!(got.ends_with(",via_proxy}"), "{got}");
    }

    // A call to one member: the Rust probe takes no calls, so a call that picks it first is
    // retried on an Erlang member; every pick order ends with an Erlang reply.
    for pick in [Pick::Any, Pick::RoundRobin, Pick::Key(7), Pick::Key(8)] {
        let reply = testkit::within(
            "group call",
            DEADLINE,
            groups.call("echo", Term::atom("ping"), pick, Duration::from_secs(2)),
        )
        .await
        .expect("a member answers");
        let text = reply.to_string();
        assert!(
            text.starts_with("{reply,") && text.ends_with(",ping}"),
            "{text}"
        );
    }
    // Groups by category: an Erlang member in cache/v1, a Rust one in cache/v2.
    let (c, _c_rx) = probe().await;
    groups.join("cache/v2", &c);
    a.keep("p4", "pg_peer:member('cache/v1')").await;
    propagated("Erlang member in cache/v1", || async {
        remote_members(scope, "cache/v1") == 1
    })
    .await;
    assert_eq!(
        groups.with_prefix("cache/").await,
        vec!["cache/v1".to_owned(), "cache/v2".to_owned()]
    );
    groups.leave("cache/v2", &c);
    a.ok("exit(get(p4), kill)").await;

    // The same key picks the same member every time.
    let first = groups.pick("echo", Pick::Key(99)).await;
    for _ in 0..5 {
        assert_eq!(groups.pick("echo", Pick::Key(99)).await, first);
    }

    // Erlang leave and kill propagate to ractor::pg.
    a.ok("pg:leave(echo, get(p1))").await;
    propagated("Erlang leave seen in ractor::pg", || async {
        remote_members(scope, "echo") == 1
    })
    .await;
    b.ok("exit(get(p2), kill)").await;
    propagated("Erlang kill seen in ractor::pg", || async {
        remote_members(scope, "echo") == 0
    })
    .await;
    // The member's proxy stops on its own monitor's `DOWN`, which can come before `pg`'s leave
    // from the member's node: the scope may still list it for a moment.
    propagated("Erlang kill seen in the pg scope", || async {
        groups.members("echo").await == vec![x_pid.clone()]
    })
    .await;

    // Rust leave, stop and kill propagate to Erlang.
    groups.leave("echo", &x);
    a.wait(
        "Rust leave seen in Erlang",
        "pg_peer:wait_count(pg, echo, 0",
    )
    .await;
    let x_pid = groups.join("echo", &x);
    a.wait(
        "Rust rejoin seen in Erlang",
        "pg_peer:wait_count(pg, echo, 1",
    )
    .await;
    x.stop(None);
    a.wait("Rust stop seen in Erlang", "pg_peer:wait_count(pg, echo, 0")
        .await;
    b.wait("Rust stop seen in Erlang", "pg_peer:wait_count(pg, echo, 0")
        .await;
    let _ = x_pid;
    let (y, _y_rx) = probe().await;
    // Joined through ractor::pg directly (untyped): still announced.
    ractor::pg::join("echo".to_owned(), vec![y.get_cell()]);
    a.wait(
        "ractor::pg join seen in Erlang",
        "pg_peer:wait_count(pg, echo, 1",
    )
    .await;
    y.kill();
    a.wait("Rust kill seen in Erlang", "pg_peer:wait_count(pg, echo, 0")
        .await;

    // A disconnect clears both sides.
    let (z, _z_rx) = probe().await;
    let z_pid = groups.join("jobs", &z);
    a.keep("p3", "pg_peer:member(jobs)").await;
    a.wait("Rust member in jobs", "pg_peer:wait_count(pg, jobs, 2")
        .await;
    propagated("Erlang member in jobs", || async {
        remote_members(scope, "jobs") == 1
    })
    .await;
    node.disconnect(&a.name);
    propagated("disconnect clears ractor::pg", || async {
        remote_members(scope, "jobs") == 0
    })
    .await;
    a.wait(
        "disconnect clears Erlang's view",
        "pg_peer:wait_count(pg, jobs, 1",
    )
    .await;
    assert_eq!(a.ok("pg:get_members(jobs) =:= [get(p3)]").await, "true");
    let _ = z_pid;
    z.stop(None);
    node.shutdown().await;
}

/// Over visible connections (Erlang's scope discovers us on nodeup), in a scope other than
/// `pg`: membership both ways and disconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_membership_over_visible_connections_in_another_scope() {
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let node = start_node(&unique("pgvr"), epmd_port, (false, false), &["pg_vis"]).await;
    let mut a = Erl::start(&erl, &unique("pgva"), epmd_port).await;
    a.ok("pg:start(pg_vis)").await;
    a.keep("p1", "pg_peer:member(pg_vis, workers)").await;
    assert_eq!(
        a.ok(&format!("net_adm:ping('{}')", node.name())).await,
        "pong"
    );
    assert_eq!(
        a.ok(&format!("lists:member('{}', nodes())", node.name()))
            .await,
        "true",
        "the connection is visible"
    );
    let groups = node.groups().scope("pg_vis");
    let remote = || async {
        groups.members("workers").await.len() - groups.local_members("workers").await.len()
    };
    propagated("Erlang member seen over a visible connection", || async {
        remote().await == 1
    })
    .await;
    let (w, _w_rx) = probe().await;
    groups.join("workers", &w);
    a.wait(
        "Rust member seen over a visible connection",
        "pg_peer:wait_count(pg_vis, workers, 2",
    )
    .await;
    assert_eq!(groups.members("workers").await.len(), 2);
    // Remote members are pids, not proxies (no pg_mirror_remote): ractor::pg has none, and
    // an ActorRef is made when asked for, and works.
    assert_eq!(remote_members("pg_vis", "workers"), 0, "no proxy made");
    let refs = groups.actor_refs::<Raw>("workers").await;
    assert_eq!(refs.len(), 2, "the local actor and a proxy");
    for r in refs.iter().filter(|r| !r.get_id().is_local()) {
        r.cast(Raw(Term::atom("via_ref"))).expect("proxy cast");
    }
    let got = a.ok("pg_peer:next(5000)").await;
    assert!(got.ends_with(",via_ref}"), "{got}");
    assert_eq!(
        remote_members("pg_vis", "workers"),
        0,
        "still not in ractor::pg"
    );
    node.disconnect(&a.name);
    propagated("disconnect clears the visible scope", || async {
        remote().await == 0
    })
    .await;
    a.wait(
        "disconnect clears Erlang's view",
        "pg_peer:wait_count(pg_vis, workers, 1",
    )
    .await;
    // Reconnected, the scopes sync again; when Erlang's scope stops (the node stays
    // connected), its members leave our view.
    assert_eq!(
        a.ok(&format!("net_adm:ping('{}')", node.name())).await,
        "pong"
    );
    propagated("members again after reconnecting", || async {
        remote().await == 1
    })
    .await;
    a.ok("gen_server:stop(pg_vis)").await;
    propagated("a stopped Erlang scope's members leave", || async {
        remote().await == 0
    })
    .await;
    w.stop(None);
    node.shutdown().await;
}

/// The `echo_node` example binary, built by `cargo test` beside the test executables.
fn echo_node_exe() -> PathBuf {
    testkit::example_exe("echo_node")
}

/// Starts `echo_node` and waits for its `ready NAME` line.
fn start_echo_node(
    name: &str,
    epmd_port: u16,
    connect: &[String],
    extra: &[&str],
) -> (ChildGuard, String) {
    let mut cmd = Command::new(echo_node_exe());
    cmd.args(["--name", name, "--cookie", COOKIE])
        .args(extra)
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    for peer in connect {
        cmd.args(["--connect", peer]);
    }
    testkit::spawn_ready(&mut cmd, name, DEADLINE)
}

/// A cluster of three nodes of ours, each in its own process (`echo_node`, whose `echo` is in
/// group `echo`): each sees all three members and the `global` name one of them registered,
/// and when one node dies the others drop its member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_between_three_nodes_of_ours() {
    testkit::init_logging();
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    // The observer: no pg scope of its own, so this process's ractor::pg is left alone.
    let observer = start_node(&unique("pgobs"), epmd_port, (true, false), &[]).await;
    let (_n1, n1) = tokio::task::block_in_place(|| {
        start_echo_node(&unique("pgn1"), epmd_port, &[], &["--global", "echo_main"])
    });
    let (_n2, n2) = tokio::task::block_in_place(|| {
        start_echo_node(&unique("pgn2"), epmd_port, std::slice::from_ref(&n1), &[])
    });
    let (mut n3_child, n3) = tokio::task::block_in_place(|| {
        start_echo_node(&unique("pgn3"), epmd_port, &[n1.clone(), n2.clone()], &[])
    });
    let members = |node: String| {
        let observer = observer.clone();
        async move {
            let reply = observer
                .rpc(
                    &node,
                    "echo_node",
                    "members",
                    vec![Term::atom("pg"), Term::atom("echo")],
                    Duration::from_secs(5),
                )
                .await
                .expect("members rpc");
            let Term::List(pids) = reply else {
                panic!("members gave {reply}");
            };
            let mut nodes: Vec<String> = pids
                .iter()
                .map(|p| match p {
                    Term::Pid(p) => p.node.as_str().to_owned(),
                    other => panic!("not a pid: {other}"),
                })
                .collect();
            nodes.sort();
            nodes
        }
    };
    let mut all = vec![n1.clone(), n2.clone(), n3.clone()];
    all.sort();
    for n in [&n1, &n2, &n3] {
        client_connect(&observer, n)
            .await
            .expect("observer connects");
    }
    for n in [&n1, &n2, &n3] {
        let n = n.clone();
        let all = all.clone();
        propagated(&format!("{n} sees all three members"), || {
            let (n, all) = (n.clone(), all.clone());
            let members = &members;
            async move { members(n).await == all }
        })
        .await;
    }
    // The three (visible) nodes sync `global`: n1's name is seen from the other two.
    for n in [&n2, &n3] {
        let (observer, n, n1) = (observer.clone(), n.clone(), n1.clone());
        // Our locker starts 300 ms into a connection: allow for the sync.
        propagated_within(&format!("{n} sees n1's global name"), DEADLINE, || {
            let (observer, n, n1) = (observer.clone(), n.clone(), n1.clone());
            async move {
                let reply = observer
                    .rpc(
                        &n,
                        "echo_node",
                        "whereis_global",
                        vec![Term::atom("echo_main")],
                        Duration::from_secs(5),
                    )
                    .await
                    .expect("whereis_global rpc");
                matches!(&reply, Term::Pid(p) if p.node.as_str() == n1)
            }
        })
        .await;
    }
    n3_child.kill().expect("kill n3");
    let two = {
        let mut v = vec![n1.clone(), n2.clone()];
        v.sort();
        v
    };
    for n in [&n1, &n2] {
        let n = n.clone();
        let two = two.clone();
        propagated(&format!("{n} drops the dead node's member"), || {
            let (n, two) = (n.clone(), two.clone());
            let members = &members;
            async move { members(n).await == two }
        })
        .await;
    }
    observer.shutdown().await;
}
