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
    assert_eq!(
        a.ok_in_place(&format!("rpc:call('{rust}', node_server, kinds, [])")),
        "[#{name => <<\"counter\">>,requires => [],version => 1}]"
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

    // 2,000 spawns in a row, each called once, all taken down by their linked helper.
    let many = a.ok_in_place(&format!("spawn_peer:many('{rust}', counter, 2000)"));
    println!("2000 spawns + calls onto our node: {many} (ms, answers)");
    assert!(many.ends_with(",2000}"), "{many}");
    let b = EvalPeer::start_in_place(
        &erl,
        &format!("spb_{id}"),
        COOKIE,
        epmd.port(),
        &beam_dirs(),
        Duration::from_secs(120),
    );
    let erlang = a.ok_in_place(&format!(
        "spawn_peer:many('{}', spawn_peer, 2000)",
        b.name()
    ));
    println!("2000 spawns + calls onto an Erlang node: {erlang} (ms, answers)");
    assert!(erlang.ends_with(",2000}"), "{erlang}");
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
