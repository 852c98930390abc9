//! Phoenix.PubSub shared with real Elixir nodes (see `node_server::phoenix`): the real
//! phoenix_pubsub 2.2.0 from `../shared/phoenix_pubsub-2.2.0` (or `PHOENIX_PUBSUB_SRC`),
//! compiled with the `elixirc` of the release under test, runs on an Elixir node (`erl` with
//! Elixir's applications on its code path, driven by `tests/erlang/pubsub_peer.erl`) with two
//! PubSubs: `PS1` (pool size 1) and `PS4` (pool size 4). Our node joins both and:
//! - a Rust actor subscribed to a topic gets what Elixir broadcasts there, from every pool
//!   group, and what Elixir direct-broadcasts to our node;
//! - Elixir subscribers get what Rust broadcasts, broadcasts from and direct-broadcasts;
//! - `echo_node`'s PubSub echo answers a thousand Elixir maps and binaries, in order.
//!
//! Needs Erlang/OTP and Elixir (`elixir`, `elixirc`; see `testkit::require_elixir`): skipped
//! without them on a developer machine, a failure in CI. `ractor::pg` is one registry per
//! process, so this file runs one test with one node of ours and one Elixir node.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use node_server::etf::Term;
use node_server::phoenix::PubSub;
use node_server::remote::Raw;
use node_server::{client_connect, NodeConfig};
use ractor::Actor;
use testkit::{within, Epmd, EvalPeer};
use tokio::sync::mpsc::UnboundedReceiver;

#[path = "../examples/echo_node/services.rs"]
mod services;

const COOKIE: &str = "phoenix_interop_cookie";
const DEADLINE: Duration = Duration::from_secs(20);
const ERL_REPLY: Duration = Duration::from_secs(60);

fn unique(tag: &str) -> String {
    format!("{tag}_{}", std::process::id())
}

/// The phoenix_pubsub sources: `PHOENIX_PUBSUB_SRC`, else the team's copy beside the repo.
fn pubsub_src() -> PathBuf {
    std::env::var_os("PHOENIX_PUBSUB_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/phoenix_pubsub-2.2.0")
        })
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("phoenix_pubsub sources at {}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "ex") {
            out.push(path);
        }
    }
}

/// Compiles phoenix_pubsub with `elixirc`; returns its ebin and Elixir's own (elixir, logger).
fn elixir_code_paths(elixir: &Path) -> Vec<PathBuf> {
    let elixirc = elixir.with_file_name("elixirc");
    let out = testkit::unique_temp_dir("phoenix_pubsub_ebin");
    let mut files = Vec::new();
    sources(&pubsub_src().join("lib"), &mut files);
    assert!(
        !files.is_empty(),
        "no .ex files under {}",
        pubsub_src().display()
    );
    let compiled = testkit::output_within(
        Command::new(&elixirc).arg("-o").arg(&out).args(&files),
        Duration::from_secs(300),
    )
    .expect("elixirc runs");
    assert!(
        compiled.status.success(),
        "elixirc failed: {}{}",
        String::from_utf8_lossy(&compiled.stdout),
        String::from_utf8_lossy(&compiled.stderr)
    );
    let libs = testkit::output_within(
        Command::new(elixir).args([
            "-e",
            "IO.puts(:code.lib_dir(:elixir)); IO.puts(:code.lib_dir(:logger))",
        ]),
        Duration::from_secs(120),
    )
    .expect("elixir runs");
    let mut paths = vec![out];
    for lib in String::from_utf8_lossy(&libs.stdout).lines() {
        paths.push(Path::new(lib.trim()).join("ebin"));
    }
    assert_eq!(paths.len(), 3, "elixir printed {libs:?}");
    paths
}

struct Elixir {
    peer: EvalPeer,
}

impl Elixir {
    fn ok(&mut self, expr: &str) -> String {
        self.peer.ok_in_place(expr)
    }
}

async fn next(rx: &mut UnboundedReceiver<Raw>, what: &str) -> Term {
    within(what, DEADLINE, rx.recv())
        .await
        .unwrap_or_else(|| panic!("{what}: channel closed"))
        .0
}

/// Nothing more arrives within a short while (after a marker that did arrive, so this is
/// not a wait for something slow).
fn assert_empty(rx: &mut UnboundedReceiver<Raw>, what: &str) {
    if let Ok(Raw(t)) = rx.try_recv() {
        panic!("{what}: unexpected {t}");
    }
}

/// Broadcasts until the PubSub sees at least one other node in its first group, so the
/// Elixir members are known before the test counts on them.
async fn wait_for_peers(pubsub: &PubSub) {
    within("Elixir's PubSub members seen", DEADLINE, async {
        while pubsub.broadcast("warmup", &Term::atom("warmup")).await == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phoenix_pubsub_with_elixir_nodes() {
    testkit::init_logging();
    let Some(elixir) = testkit::require_elixir() else {
        return;
    };
    let erl = testkit::require_erl().expect("checked with elixir");
    println!("Elixir nodes on Erlang/OTP {:?}", testkit::otp_release());
    let mut code_paths = testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer", "pubsub_peer"],
    );
    code_paths.extend(tokio::task::block_in_place(|| elixir_code_paths(&elixir)));

    let epmd = Epmd::start();
    let node = NodeConfig::new(unique("rs_phx"))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .pg_scopes(Vec::<String>::new())
        .phoenix_pubsub()
        .start()
        .await
        .expect("our node starts");
    let peer = EvalPeer::start_in_place(
        &erl,
        &unique("ex_phx"),
        COOKIE,
        epmd.port(),
        &code_paths,
        ERL_REPLY,
    );
    let mut ex = Elixir { peer };
    let ex_name = ex.peer.name().to_owned();
    let rs = format!("'{}'", node.name());
    assert_eq!(ex.ok("pubsub_peer:start('Elixir.PS1', 1)"), "ok");
    assert_eq!(ex.ok("pubsub_peer:start('Elixir.PS4', 4)"), "ok");
    within("connect", DEADLINE, client_connect(&node, &ex_name))
        .await
        .expect("connects to the Elixir node");

    let ps1 = node.phoenix_pubsub("PS1").await.expect("joins PS1");
    let ps4 = node.phoenix_pubsub("Elixir.PS4").await.expect("joins PS4");
    assert_eq!(ps4.name(), "PS4");
    assert!(matches!(
        node.phoenix_pubsub("PS1").await,
        Err(node_server::phoenix::PubSubError::NameTaken(..))
    ));
    assert!(matches!(
        node.phoenix_pubsub("not a module").await,
        Err(node_server::phoenix::PubSubError::BadName(_))
    ));
    // Our worker is in every pool group, as Elixir's pg sees it.
    assert_eq!(
        ex.ok(&format!(
            "pubsub_peer:wait_joined('Elixir.PS1', 1, {rs}, 10000)"
        )),
        "ok"
    );
    assert_eq!(
        ex.ok(&format!(
            "pubsub_peer:wait_joined('Elixir.PS4', 4, {rs}, 10000)"
        )),
        "ok"
    );
    assert_eq!(
        ps4.pool_groups().await.len(),
        4,
        "{:?}",
        ps4.pool_groups().await
    );
    wait_for_peers(&ps1).await;
    wait_for_peers(&ps4).await;

    // Elixir -> Rust: broadcast (every pool group of PS4), direct broadcast.
    let (a, mut a_rx) = testkit::forwarder::<Raw>().await;
    let (b, mut b_rx) = testkit::forwarder::<Raw>().await;
    ps1.subscribe("news", &a);
    ps4.subscribe("news", &b);
    assert_eq!(ps1.subscribers("news"), 1);
    ex.ok(
        "'Elixir.Phoenix.PubSub':broadcast('Elixir.PS1', <<\"news\">>, #{hello => <<\"rust\">>})",
    );
    assert_eq!(
        next(&mut a_rx, "PS1 broadcast").await,
        Term::parse("#{hello => <<\"rust\">>}").unwrap()
    );
    assert_eq!(
        ex.ok("pubsub_peer:broadcast_from_every_group('Elixir.PS4', <<\"news\">>, 4)"),
        "[0,1,2,3]"
    );
    let mut groups = Vec::new();
    for _ in 0..4 {
        groups.push(
            next(&mut b_rx, "PS4 broadcast from each pool group")
                .await
                .to_string(),
        );
    }
    groups.sort();
    assert_eq!(
        groups,
        [
            "{from_group,0}",
            "{from_group,1}",
            "{from_group,2}",
            "{from_group,3}"
        ]
    );
    ex.ok(&format!(
        "pubsub_peer:direct_broadcast({rs}, 'Elixir.PS4', <<\"news\">>, direct)"
    ));
    assert_eq!(
        next(&mut b_rx, "direct broadcast").await,
        Term::atom("direct")
    );
    assert_empty(&mut a_rx, "PS1 subscriber after PS4 traffic");

    // Rust -> Elixir: broadcast, broadcast_from, direct_broadcast.
    assert_eq!(
        ex.ok("pubsub_peer:collector('Elixir.PS1', <<\"from_rust\">>, c1)"),
        "ok"
    );
    assert_eq!(
        ex.ok("pubsub_peer:collector('Elixir.PS4', <<\"from_rust\">>, c4)"),
        "ok"
    );
    ps1.subscribe("from_rust", &a);
    ps1.subscribe("from_rust", &b);
    let msg = Term::parse("{update, #{id => 7, name => <<\"x\">>}}").unwrap();
    assert_eq!(ps1.broadcast("from_rust", &msg).await, 1);
    assert_eq!(
        next(&mut a_rx, "local subscriber of a Rust broadcast").await,
        msg
    );
    assert_eq!(
        next(&mut b_rx, "local subscriber of a Rust broadcast").await,
        msg
    );
    ps1.broadcast_from(&a.get_cell(), "from_rust", &Term::atom("not_for_a"))
        .await;
    assert_eq!(
        next(&mut b_rx, "broadcast_from").await,
        Term::atom("not_for_a")
    );
    ps1.local_broadcast("from_rust", &Term::atom("marker"));
    assert_eq!(
        next(&mut a_rx, "a skips its own broadcast_from").await,
        Term::atom("marker")
    );
    assert_eq!(next(&mut b_rx, "marker").await, Term::atom("marker"));
    ps1.direct_broadcast(&ex_name, "from_rust", &Term::atom("direct_from_rust"));
    assert_eq!(
        ex.ok("pubsub_peer:take(c1, 3, 10000)"),
        "[{update,#{id => 7,name => <<\"x\">>}},not_for_a,direct_from_rust]"
    );
    ps4.broadcast("from_rust", &Term::atom("via_ps4")).await;
    assert_eq!(ex.ok("pubsub_peer:take(c4, 1, 10000)"), "[via_ps4]");
    assert_eq!(ex.ok("pubsub_peer:take(c1, 1, 200)"), "{timeout,[]}");
    ps1.unsubscribe("from_rust", &a.get_cell());
    ps1.local_broadcast("from_rust", &Term::atom("after_unsubscribe"));
    assert_eq!(
        next(&mut b_rx, "b still subscribed").await,
        Term::atom("after_unsubscribe")
    );
    assert_empty(&mut a_rx, "a unsubscribed");

    // echo_node's PubSub echo: a thousand Elixir terms, in order, on both pool sizes.
    for (name, pubsub) in [("PS1", &ps1), ("PS4", &ps4)] {
        let (_echo, _) = Actor::spawn(None, services::PubSubEcho, pubsub.clone())
            .await
            .expect("echo starts");
        let collector = format!("reply_{}", name.to_lowercase());
        assert_eq!(
            ex.ok(&format!(
                "pubsub_peer:collector('Elixir.{name}', <<\"echo:reply\">>, {collector})"
            )),
            "ok"
        );
        assert_eq!(
            ex.ok(&format!(
                "pubsub_peer:broadcast_many('Elixir.{name}', <<\"echo\">>, 1000)"
            )),
            "ok"
        );
        assert_eq!(
            ex.ok(&format!(
                "pubsub_peer:take({collector}, 1000, 30000) =:= \
                 [{{echoed, M}} || M <- pubsub_peer:msgs(1000)]"
            )),
            "true",
            "{name}: the echoes differ or are out of order"
        );
    }

    // A stopped subscriber is forgotten; a stopped worker leaves its groups.
    a.stop(None);
    b.stop(None);
    ps1.stop();
    assert_eq!(
        ex.ok(&format!("pubsub_peer:wait_left('Elixir.PS1', {rs}, 10000)")),
        "ok"
    );
    assert_eq!(ps4.subscribers("news"), 1);
    ps4.local_broadcast("news", &Term::atom("to_nobody"));
    assert_eq!(ps4.subscribers("news"), 0);
    node.shutdown().await;
}
