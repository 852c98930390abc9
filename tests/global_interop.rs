//! `global` names shared with real Erlang/OTP 25 nodes (see `node_server::global`): with our
//! node visible, `global:sync()` on Erlang nodes returns, names registered on either side are
//! found and called from the other, unregistering and exits clear them, and a clash when two
//! partitions meet resolves as OTP resolves it (the process on the node with the smaller name
//! survives, the other is killed), whichever side decides.
//!
//! Each test has its own EPMD ([`Epmd`], in this process, on a port of its own) and node
//! names; Erlang-side waits on names poll `global:whereis_name` every 10 ms up to a deadline
//! (`tests/erlang/global_peer.erl`; `global` has no event to wait on), Rust-side ones likewise.
//!
//! Needs Erlang/OTP (`erl`, `erlc`): skipped on a developer machine without it, fails in CI
//! (`CI=true`), see [`testkit::require_erl`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use node_server::etf::{Pid, Term};
use node_server::remote::RemoteTarget;
use node_server::{Node, NodeConfig};
use ractor::{Actor, ActorStatus};
use testkit::{Epmd, EvalPeer};

#[path = "../examples/echo_node/services.rs"]
mod services;
use services::Kv;

const COOKIE: &str = "global_interop_cookie";
const ERL_REPLY: Duration = Duration::from_secs(20);
/// How long a name change may take to be seen on the other side.
const PROPAGATION: Duration = Duration::from_secs(2);

/// This file's Erlang helpers, compiled once per test process.
fn beam_dirs() -> Vec<PathBuf> {
    testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer", "global_peer"],
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
        Erl { peer, name }
    }

    async fn ok(&mut self, expr: &str) -> String {
        self.peer.ok_in_place(expr)
    }

    /// `global:sync()` must return within 5 s; returns how long it took.
    async fn sync(&mut self) -> u64 {
        let got = self.ok("global_peer:sync_ms()").await;
        let ms: u64 = got
            .trim_start_matches("{ok,")
            .trim_end_matches('}')
            .parse()
            .unwrap_or_else(|_| panic!("sync gave {got}"));
        assert!(ms < 5000, "global:sync() took {ms} ms");
        println!("global:sync() on {}: {ms} ms", self.name);
        ms
    }

    /// Waits until `global:whereis_name(Name)` satisfies the Erlang predicate `pred`.
    async fn wait_where(&mut self, name: &str, pred: &str) -> String {
        let ms = PROPAGATION.as_millis();
        let got = self
            .ok(&format!("global_peer:wait_where({name}, {pred}, {ms})"))
            .await;
        assert!(
            got.starts_with("{ok,"),
            "whereis({name}) on {}: {got}",
            self.name
        );
        got
    }
}

async fn start_node(name: &str, epmd_port: u16) -> Node {
    NodeConfig::new(name)
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .pg_scopes(Vec::<String>::new())
        .start()
        .await
        .expect("node starts")
}

/// Polls our node's view of a global name until `pred` holds (fails after [`PROPAGATION`]).
async fn rust_where(node: &Node, name: &str, pred: impl Fn(&Option<Pid>) -> bool) -> Option<Pid> {
    let start = Instant::now();
    loop {
        let found = node.global().whereis_name(name).await;
        if pred(&found) {
            return found;
        }
        assert!(
            start.elapsed() < PROPAGATION,
            "whereis({name}) on our node stayed {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two Erlang nodes and ours (visible by default): `global:sync()` returns on both, names go
/// both ways and are called through `{global, Name}`, unregistering and exits clear them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_sync_and_names_both_ways() {
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let node = start_node(&format!("glr_{}", std::process::id()), epmd_port).await;
    let mut a = Erl::start(&erl, &format!("gla_{}", std::process::id()), epmd_port).await;
    let mut b = Erl::start(&erl, &format!("glb_{}", std::process::id()), epmd_port).await;
    let rust = node.name().to_owned();
    assert_eq!(a.ok(&format!("net_adm:ping('{}')", b.name)).await, "pong");
    a.sync().await;
    assert_eq!(a.ok(&format!("net_adm:ping('{rust}')")).await, "pong");
    assert_eq!(
        a.ok(&format!("lists:member('{rust}', nodes())")).await,
        "true",
        "our node is visible by default"
    );
    a.sync().await;
    // B learns of us through A (new_nodes) and connects; its sync waits for us too.
    b.sync().await;
    let known = node.global().known_nodes().await;
    assert!(
        known.contains(&a.name) && known.contains(&b.name),
        "{known:?}"
    );

    // A Rust actor registered globally: found and called from both Erlang nodes.
    let (kv, _) = Actor::spawn(None, Kv, ()).await.expect("kv starts");
    let kv_pid = node
        .register_global("rust_kv", &kv)
        .await
        .expect("register");
    for e in [&mut a, &mut b] {
        e.wait_where(
            "rust_kv",
            &format!("fun(P) -> is_pid(P) andalso node(P) =:= '{rust}' end"),
        )
        .await;
    }
    assert_eq!(
        a.ok("gen_server:call({global, rust_kv}, {put, k, <<\"v\">>})")
            .await,
        "ok"
    );
    assert_eq!(
        b.ok("gen_server:call({global, rust_kv}, {get, k})").await,
        "{ok,<<\"v\">>}"
    );
    // The name is taken now, on every node.
    assert_eq!(a.ok("global:register_name(rust_kv, self())").await, "no");
    assert!(node
        .global()
        .register(Term::atom("rust_kv"), kv_pid.clone())
        .await
        .is_err());

    // An Erlang process registered globally: Rust finds and calls it.
    a.ok("put(srv, global_peer:server())").await;
    assert_eq!(a.ok("global:register_name(erl_srv, get(srv))").await, "yes");
    let srv = rust_where(&node, "erl_srv", |p| p.is_some())
        .await
        .expect("found");
    assert_eq!(srv.node.as_str(), a.name);
    let reply = node
        .call(
            &RemoteTarget::Pid(srv.clone()),
            Term::atom("hello"),
            Duration::from_secs(5),
        )
        .await
        .expect("call the Erlang server");
    assert_eq!(reply.to_string(), "{echo,hello}");
    // Other nodes can ask ours by rpc, as they would ask an Erlang node.
    assert_eq!(
        b.ok(&format!(
            "rpc:call('{rust}', global, whereis_name, [erl_srv]) =:= global:whereis_name(erl_srv)"
        ))
        .await,
        "true"
    );

    // Unregistering on Erlang and an exit clear our view.
    a.ok("global:unregister_name(erl_srv)").await;
    rust_where(&node, "erl_srv", |p| p.is_none()).await;
    assert_eq!(a.ok("global:register_name(erl_srv, get(srv))").await, "yes");
    rust_where(&node, "erl_srv", |p| p.is_some()).await;
    a.ok("exit(get(srv), kill)").await;
    rust_where(&node, "erl_srv", |p| p.is_none()).await;

    // Unregistering in Rust and the actor's exit clear the Erlang view.
    node.global()
        .unregister(Term::atom("rust_kv"))
        .await
        .expect("unregister");
    a.wait_where("rust_kv", "fun(P) -> P =:= undefined end")
        .await;
    node.global()
        .register(Term::atom("rust_kv"), kv_pid)
        .await
        .expect("register again");
    b.wait_where("rust_kv", "fun(P) -> is_pid(P) end").await;
    kv.stop(None);
    for e in [&mut a, &mut b] {
        e.wait_where("rust_kv", "fun(P) -> P =:= undefined end")
            .await;
    }

    // OTP 25's prevent_overlapping_partitions: when our node drops A, no node may stay
    // connected to both of us. Two reports race to B: ours ("we lost A", B then drops A) and
    // A's ("A lost us", relayed by B to us, B then drops us). Which B handles first decides the
    // partitions, as among Erlang nodes (OTP 29 made the relay fast enough to win sometimes):
    // {A}, {B}, {us} or {A, B}, {us} or {A}, {B, us}. Every outcome keeps the invariant.
    node.disconnect(&a.name);
    let apart = b
        .ok(&format!(
            "global_peer:wait_true(fun() -> not (lists:member('{}', nodes()) andalso \
             lists:member('{rust}', nodes())) end, 5000)",
            a.name
        ))
        .await;
    assert!(
        apart.starts_with("{ok,"),
        "B still connected to A and us: {apart}"
    );
    let b_nodes = b.ok("lists:sort(nodes())").await;
    println!("partition: B dropped A or us: {apart}, B sees {b_nodes}");
    // Our side agrees with B's: we are not connected to B while B is connected to A.
    let b_has_a = b_nodes.contains(&a.name);
    let start = Instant::now();
    while b_has_a && node.connected().iter().any(|(n, _)| *n == b.name) {
        assert!(
            start.elapsed() < PROPAGATION,
            "we did not drop B, which kept A"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        !node.connected().iter().any(|(n, _)| *n == a.name),
        "we reconnected to A"
    );
    node.shutdown().await;
}

/// Runs a clash between a Rust actor and an Erlang process registered under the same name
/// while apart, with our node named `ours` and the Erlang node `theirs`; returns whether the
/// Rust actor survived. Names registered on one side only are shared either way.
async fn clash(ours: &str, theirs: &str) -> bool {
    testkit::init_logging();
    let erl = testkit::require_erl().expect("checked by the caller");
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let node = start_node(ours, epmd_port).await;
    let mut e = Erl::start(&erl, theirs, epmd_port).await;
    let rust = node.name().to_owned();
    let (clash, clash_handle) = Actor::spawn(None, Kv, ()).await.expect("kv starts");
    let (only_rust, _) = Actor::spawn(None, Kv, ()).await.expect("kv starts");
    node.register_global("clash", &clash)
        .await
        .expect("register");
    node.register_global("only_rust", &only_rust)
        .await
        .expect("register");
    e.ok("put(srv, global_peer:server())").await;
    assert_eq!(e.ok("global:register_name(clash, get(srv))").await, "yes");
    assert_eq!(
        e.ok("global:register_name(only_erl, global_peer:server())")
            .await,
        "yes"
    );
    // The partitions meet.
    assert_eq!(e.ok(&format!("net_adm:ping('{rust}')")).await, "pong");
    e.sync().await;
    let rust_wins = ours < theirs;
    let survivor = if rust_wins {
        format!("fun(P) -> is_pid(P) andalso node(P) =:= '{rust}' end")
    } else {
        "fun(P) -> P =:= get(srv) end".to_owned()
    };
    e.wait_where("clash", &survivor).await;
    e.wait_where(
        "only_rust",
        &format!("fun(P) -> is_pid(P) andalso node(P) =:= '{rust}' end"),
    )
    .await;
    rust_where(&node, "only_erl", |p| p.is_some()).await;
    let seen = rust_where(&node, "clash", |p| {
        p.as_ref()
            .is_some_and(|p| (p.node.as_str() == rust) == rust_wins)
    })
    .await;
    println!("clash: {ours} vs {theirs}: survivor {seen:?}");
    if rust_wins {
        assert_eq!(
            e.ok("erlang:is_process_alive(get(srv))").await,
            "false",
            "the Erlang loser is killed"
        );
        assert_eq!(clash.get_status(), ActorStatus::Running);
    } else {
        tokio::time::timeout(Duration::from_secs(5), clash_handle)
            .await
            .expect("the Rust loser is killed")
            .ok();
    }
    node.shutdown().await;
    rust_wins
}

/// The Erlang node has the smaller name: it decides, and its process survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_clash_decided_by_erlang() {
    if testkit::require_erl().is_none() {
        return;
    }
    let id = std::process::id();
    assert!(!clash(&format!("gz_{id}"), &format!("ga_{id}")).await);
}

/// Our node has the smaller name: it decides (OTP's default method), and our actor survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_clash_decided_by_our_node() {
    if testkit::require_erl().is_none() {
        return;
    }
    let id = std::process::id();
    assert!(clash(&format!("gb_{id}"), &format!("gy_{id}")).await);
}
