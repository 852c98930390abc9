//! Spawning Rust actors from Erlang (see `node_server::kinds`): kind `counter` of `echo_node`
//! on a node of ours, started by `spawn/4`, `spawn_link/4`, `spawn_monitor/4`, `spawn_opt/5`
//! and `erlang:spawn_request/5` from a real Erlang node; links and monitors from the first
//! moment (a linked Erlang process that dies takes the Rust actor with it); failures as OTP
//! gives them (unknown kind: `undef`; arguments that do not fit: `function_clause`), with
//! nothing left running; a node the admin guard refuses gets `not_allowed`; 2,000 spawns in
//! a row, timed beside the same against an Erlang node.
//!
//! Needs Erlang/OTP (`erl`, `erlc`): skipped on a developer machine without it, fails in CI
//! (`CI=true`), see [`testkit::require_erl`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use node_server::{Node, NodeConfig};
use testkit::{Epmd, EvalPeer};

#[path = "../examples/echo_node/services.rs"]
mod services;

const COOKIE: &str = "spawn_interop_cookie";

fn beam_dirs() -> Vec<PathBuf> {
    testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer", "spawn_peer"],
    )
}

async fn start_node(name: &str, epmd_port: u16, admin: Option<&str>) -> Node {
    let config = NodeConfig::new(name)
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .pg_scopes(Vec::<String>::new());
    let config = match admin {
        Some(allowed) => config.admin_allow([allowed]),
        None => config,
    };
    let node = config.start().await.expect("node starts");
    services::register_kinds(&node);
    node
}

/// The node's `process_count` as `node_server:info/0` gives it.
fn process_count(erl: &mut EvalPeer, node: &str) -> String {
    erl.ok_in_place(&format!(
        "maps:get(process_count, rpc:call('{node}', node_server, info, []))"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_spawns_rust_actors_in_every_form() {
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let epmd = Epmd::start();
    let id = std::process::id();
    let node = start_node(&format!("spr_{id}"), epmd.port(), None).await;
    let rust = node.name().to_owned();
    let mut a = EvalPeer::start_in_place(
        &erl,
        &format!("spa_{id}"),
        COOKIE,
        epmd.port(),
        &beam_dirs(),
        Duration::from_secs(120),
    );
    assert_eq!(a.ok_in_place(&format!("net_adm:ping('{rust}')")), "pong");
    // Compared in Erlang: releases print map keys in different orders.
    assert_eq!(
        a.ok_in_place(&format!(
            "rpc:call('{rust}', node_server, kinds, []) =:= \
             [#{{name => <<\"counter\">>, version => 1, requires => []}}]"
        )),
        "true"
    );
    let baseline = process_count(&mut a, &rust);

    let forms = a.ok_in_place(&format!("spawn_peer:forms('{rust}')"));
    assert_eq!(
        forms,
        "[{spawn,{8,8}},{spawn_link,boom},{spawn_monitor,crashed},\
         {spawn_opt,{crashed,crashed}},{spawn_request,{7,crashed}},{versioned,9}]"
    );

    // Failures: a pid whose monitor and link fire at once with the reason.
    let unknown = a.ok_in_place(&format!("spawn_peer:failure('{rust}', nosuch, [1])"));
    assert_eq!(
        unknown,
        "{down,{undef,[{nosuch,start,[1],[]}]},exit,{undef,[{nosuch,start,[1],[]}]}}"
    );
    for (args, shown) in [("[x]", "[x]"), ("[1,2]", "[1,2]"), ("[]", "[]")] {
        let got = a.ok_in_place(&format!("spawn_peer:failure('{rust}', counter, {args})"));
        assert!(
            got.starts_with(&format!(
                "{{down,{{function_clause,[{{counter,start,{shown},[{{reason,<<\""
            )),
            "{args}: {got}"
        );
    }
    let bad_version = a.ok_in_place(&format!("spawn_peer:failure('{rust}', 'counter/7', [1])"));
    assert!(bad_version.starts_with("{down,{undef,"), "{bad_version}");
    assert_eq!(
        process_count(&mut a, &rust),
        baseline,
        "nothing left running after the forms and the failures"
    );

    // 2,000 spawns in a row (`SPAWN_COUNT` to change it, e.g. 10000 for the figures in the
    // README with `--release`), each called once, all taken down by their linked helper.
    let count: u32 = std::env::var("SPAWN_COUNT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let b = EvalPeer::start_in_place(
        &erl,
        &format!("spb_{id}"),
        COOKIE,
        epmd.port(),
        &beam_dirs(),
        Duration::from_secs(120),
    );
    // Both targets warmed up first (the spawning node loads and warms its own code on the
    // first round, whichever node that round goes to), then measured one after the other.
    let onto = |a: &mut EvalPeer, node: &str, module: &str, n: u32| {
        a.ok_in_place(&format!("spawn_peer:many('{node}', {module}, {n})"))
    };
    let warm = (count / 10).clamp(1, 200);
    for (node, module) in [(rust.as_str(), "counter"), (b.name(), "spawn_peer")] {
        let w = onto(&mut a, node, module, warm);
        assert!(w.ends_with(&format!(",{warm}}}")), "{w}");
    }
    let many = onto(&mut a, &rust, "counter", count);
    println!("{count} spawns + calls onto our node: {many} (ms, answers)");
    assert!(many.ends_with(&format!(",{count}}}")), "{many}");
    let erlang = onto(&mut a, b.name(), "spawn_peer", count);
    println!("{count} spawns + calls onto an Erlang node: {erlang} (ms, answers)");
    assert!(erlang.ends_with(&format!(",{count}}}")), "{erlang}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while process_count(&mut a, &rust) != baseline {
        assert!(
            std::time::Instant::now() < deadline,
            "the linked spawns did not all go"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_the_admin_guard_refuses_cannot_spawn() {
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let epmd = Epmd::start();
    let id = std::process::id();
    let node = start_node(&format!("spg_{id}"), epmd.port(), Some("nobody@nowhere")).await;
    let rust = node.name().to_owned();
    let mut a = EvalPeer::start_in_place(
        &erl,
        &format!("spga_{id}"),
        COOKIE,
        epmd.port(),
        &beam_dirs(),
        Duration::from_secs(30),
    );
    assert_eq!(a.ok_in_place(&format!("net_adm:ping('{rust}')")), "pong");
    let reply = a.ok_in_place(&format!("spawn_peer:refused('{rust}')"));
    assert!(
        reply.starts_with("{spawn_reply,") && reply.ends_with(",error,not_allowed}"),
        "{reply}"
    );
    // The node goes on: its own actors still answer.
    assert_eq!(a.ok_in_place(&format!("net_adm:ping('{rust}')")), "pong");
    node.shutdown().await;
}

/// A node of ours named `name` for the placement test: `pg` scopes only when `pg` (one per
/// process), roles and capabilities as given, kind `counter`, and kind `trainer` (a counter
/// that requires `gpu = yes`).
async fn placement_node(
    name: &str,
    epmd_port: u16,
    pg: bool,
    roles: &[&str],
    capabilities: &[(&str, &str)],
) -> Node {
    let config = NodeConfig::new(name)
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .roles(roles.iter().copied())
        .capabilities(capabilities.iter().copied())
        .pg_scopes(if pg { vec!["pg"] } else { vec![] });
    let node = config.start().await.expect("node starts");
    services::register_kinds(&node);
    node.spawnable_made(
        node_server::kinds::KindSpec::new("trainer").requires("gpu", "yes"),
        services::Counter::new,
    )
    .expect("kind");
    node
}

/// The value of the counter `pid` (a `gen_server` call from `node`).
async fn counter_value(node: &Node, pid: &node_server::etf::Pid) -> i64 {
    let handle = node
        .process(&node_server::remote::RemoteTarget::Pid(pid.clone()))
        .await
        .expect("a handle");
    handle
        .call(&node_server::etf::Term::atom("get"), Duration::from_secs(5))
        .await
        .expect("the counter answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_places_and_spawns_across_nodes() {
    use node_server::etf::Term;
    use node_server::placement::{Placement, SpawnError, SpawnOpts};
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let epmd = Epmd::start();
    let id = std::process::id();
    let a = placement_node(&format!("pla_{id}"), epmd.port(), true, &["web"], &[]).await;
    let b = placement_node(
        &format!("plb_{id}"),
        epmd.port(),
        false,
        &["db"],
        &[("gpu", "yes")],
    )
    .await;
    let c = placement_node(&format!("plc_{id}"), epmd.port(), false, &[], &[]).await;
    node_server::client_connect(&a, b.name())
        .await
        .expect("a-b");
    let (an, bn, cn) = (
        a.name().to_owned(),
        b.name().to_owned(),
        c.name().to_owned(),
    );
    let opts = SpawnOpts::default;
    let spawn = |p: Placement, kind: &'static str, initial: i64| {
        let a = a.clone();
        async move {
            a.spawn_on(&p, kind, vec![Term::Int(initial)], SpawnOpts::default())
                .await
        }
    };

    // Explicit node (c is not connected yet: EPMD finds it, spawn_on connects).
    let s = spawn(Placement::Node(cn.clone()), "counter", 5)
        .await
        .expect("spawned on c");
    assert_eq!(s.node, cn);
    assert_eq!(counter_value(&a, &s.pid).await, 5);
    // Role, capability requirement, host.
    assert_eq!(
        spawn(Placement::Role("db".into()), "counter", 0)
            .await
            .unwrap()
            .node,
        bn
    );
    assert_eq!(
        spawn(Placement::Random, "trainer", 0).await.unwrap().node,
        bn
    );
    let host = an.split_once('@').unwrap().1.to_owned();
    assert!(spawn(Placement::Host(host), "counter", 0).await.is_ok());
    // Round-robin: each node once, in name order.
    let mut rr = Vec::new();
    for _ in 0..3 {
        rr.push(
            spawn(Placement::RoundRobin, "counter", 0)
                .await
                .unwrap()
                .node,
        );
    }
    assert_eq!(rr, vec![an.clone(), bn.clone(), cn.clone()]);
    // Least loaded: load a and b, c has the fewest actors.
    for n in [&an, &an, &bn, &bn] {
        spawn(Placement::Node(n.clone()), "counter", 0)
            .await
            .unwrap();
    }
    assert_eq!(
        spawn(Placement::LeastLoaded, "counter", 0)
            .await
            .unwrap()
            .node,
        cn
    );
    // Affinity and repulsion: a member of group `cache` on a.
    let (member, _) = ractor::Actor::spawn(None, services::Kv, ()).await.unwrap();
    a.groups().join("cache", &member);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while a.groups().members("cache").await.is_empty() {
        assert!(std::time::Instant::now() < deadline, "join seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        spawn(Placement::Affinity("cache".into()), "counter", 0)
            .await
            .unwrap()
            .node,
        an
    );
    assert_eq!(
        spawn(Placement::Repulsion("cache".into()), "counter", 0)
            .await
            .unwrap()
            .node,
        bn
    );
    // No candidate: each names what failed.
    for (p, kind, names) in [
        (Placement::Role("nosuch".into()), "counter", "role:nosuch"),
        (Placement::Host("nohost".into()), "counter", "host:nohost"),
        (
            Placement::Affinity("empty".into()),
            "counter",
            "affinity:empty",
        ),
        (Placement::Random, "nosuch", "nosuch"),
    ] {
        match spawn(p, kind, 0).await {
            Err(e @ SpawnError::NoCandidate { .. }) => {
                assert!(e.to_string().contains(names), "{e}")
            }
            other => panic!("{names}: {other:?}"),
        }
    }

    // Link from the first moment: the counter's crash takes the linked probe down.
    let (probe, _) = ractor::Actor::spawn(None, services::Kv, ()).await.unwrap();
    let probe_pid = a.pid_of(&probe);
    let linked = a
        .spawn_on(
            &Placement::Node(bn.clone()),
            "counter",
            vec![Term::Int(1)],
            opts().link(probe_pid),
        )
        .await
        .expect("linked spawn");
    // And a monitor: it resolves with the exit reason.
    let monitored = a
        .spawn_on(
            &Placement::Node(cn.clone()),
            "counter",
            vec![Term::Int(1)],
            opts().monitor().register("the_counter"),
        )
        .await
        .expect("monitored spawn");
    assert_eq!(
        a.rpc(
            &cn,
            "erlang",
            "whereis",
            vec![Term::atom("the_counter")],
            Duration::from_secs(5)
        )
        .await
        .expect("whereis"),
        Term::Pid(monitored.pid.clone()),
        "registered on its node"
    );
    for pid in [&linked.pid, &monitored.pid] {
        a.send(
            &node_server::remote::RemoteTarget::Pid(pid.clone()),
            Term::atom("crash"),
        );
    }
    let reason = tokio::time::timeout(
        Duration::from_secs(5),
        monitored.monitor.expect("a monitor").down(),
    )
    .await
    .expect("down in time");
    assert_eq!(reason, Term::atom("crashed"));
    tokio::time::timeout(Duration::from_secs(5), probe.get_cell().wait(None))
        .await
        .expect("the linked probe went down")
        .ok();

    // An Erlang node: the MFA Module:start(Args).
    let mut e = EvalPeer::start_in_place(
        &erl,
        &format!("ple_{id}"),
        COOKIE,
        epmd.port(),
        &beam_dirs(),
        Duration::from_secs(30),
    );
    assert_eq!(e.ok_in_place(&format!("net_adm:ping('{an}')")), "pong");
    let on_erlang = spawn(Placement::Node(e.name().to_owned()), "spawn_peer", 42)
        .await
        .expect("spawned on Erlang");
    assert_eq!(on_erlang.node, e.name());
    assert_eq!(counter_value(&a, &on_erlang.pid).await, 42);
    for n in [a, b, c] {
        n.shutdown().await;
    }
}
