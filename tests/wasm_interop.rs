//! WebAssembly modules across a mixed cluster (see `node_server::wasm` and
//! `node_server::sources`): an Erlang node loads a module into a node of ours with an
//! HMAC-SHA256 code made by OTP's `crypto`, our node refuses wrong codes, bad bytes and loads
//! without a source authority; a spawn by hash on another node of ours makes it fetch the
//! module from the node that asked; Erlang calls and spawns the loaded kind by its bare name;
//! unloading stops new spawns while running actors go on.
//!
//! Needs Erlang/OTP (`erl`): skipped on a developer machine without it, fails in CI
//! (`CI=true`).

use std::path::Path;
use std::time::Duration;

use node_server::placement::{Placement, SpawnOpts};
use node_server::sources::{ModuleHash, SourceAuthority};
use node_server::{Node, NodeConfig};
use testkit::{Epmd, EvalPeer};

const COOKIE: &str = "wasm_interop_cookie";
const KEY: &str = "the key of the sources";

async fn start(name: &str, epmd_port: u16, key: Option<&str>) -> Node {
    let mut config = NodeConfig::new(format!("{name}_{}", std::process::id()))
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .pg_scopes(Vec::<String>::new());
    if let Some(key) = key {
        config = config.source_authority(SourceAuthority::hmac_key(key).expect("a key"));
    }
    config.start().await.expect("node starts")
}

fn counter_wasm() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/guests/counter.wasm")
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_load_from_erlang_fetch_on_demand_and_unload() {
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let epmd = Epmd::start();
    let a = start("wsa", epmd.port(), Some(KEY)).await;
    let b = start("wsb", epmd.port(), Some(KEY)).await;
    let other_key = start("wsk", epmd.port(), Some("another key, as long")).await;
    let none = start("wsn", epmd.port(), None).await;
    let dirs = testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer"],
    );
    let mut e = EvalPeer::start_in_place(
        &erl,
        &format!("wse_{}", std::process::id()),
        COOKIE,
        epmd.port(),
        &dirs,
        Duration::from_secs(30),
    );
    let bytes = std::fs::read(counter_wasm()).unwrap();
    let hash = ModuleHash::of(&bytes);
    e.ok_in_place(&format!(
        "begin {{ok, B}} = file:read_file(\"{}\"), put(bytes, B), \
         put(mac, crypto:mac(hmac, sha256, <<\"{KEY}\">>, B)), ok end",
        counter_wasm()
    ));
    let load = |node: &Node, mac: &str| {
        format!(
            "rpc:call('{}', node_server_wasm, load, [get(bytes), {mac}])",
            node.name()
        )
    };

    // Loads from Erlang: refused without a code, with a wrong one, and on a node without a
    // source authority; accepted with OTP crypto's HMAC-SHA256.
    let refused = e.ok_in_place(&load(&a, "undefined"));
    assert!(
        refused.contains("came without an HMAC-SHA256 code"),
        "{refused}"
    );
    let refused = e.ok_in_place(&load(
        &a,
        "crypto:mac(hmac, sha256, <<\"wrong\">>, get(bytes))",
    ));
    assert!(refused.contains("does not match"), "{refused}");
    let refused = e.ok_in_place(&load(&none, "get(mac)"));
    assert!(refused.contains("no source authority"), "{refused}");
    let refused = e.ok_in_place(&format!(
        "rpc:call('{}', node_server_wasm, load, [<<\"junk\">>, crypto:mac(hmac, sha256, <<\"{KEY}\">>, <<\"junk\">>)])",
        a.name()
    ));
    assert!(
        refused.contains("not a valid WebAssembly module"),
        "{refused}"
    );
    assert!(
        a.wasm_modules().list().is_empty(),
        "nothing refused was kept"
    );
    assert_eq!(
        e.ok_in_place(&load(&a, "get(mac)")),
        format!("{{ok,<<\"{hash}\">>}}")
    );

    // A spawn by hash on B, decided on A: B fetches the module from A.
    assert!(b.wasm_modules().list().is_empty());
    let spawned = a
        .spawn_on(
            &Placement::Node(b.name().to_owned()),
            "counter_wasm",
            vec![node_server::etf::Term::Int(5)],
            SpawnOpts::default().source(hash).register("wcounter"),
        )
        .await
        .expect("spawn from a module B lacks");
    assert_eq!(spawned.node, b.name());
    assert_eq!(b.wasm_modules().list(), vec![hash], "B fetched it");
    assert_eq!(
        e.ok_in_place(&format!(
            "gen_server:call({{wcounter, '{}'}}, get)",
            b.name()
        )),
        "5"
    );

    // Erlang spawns the loaded kind by its bare name on B: the module most recently named
    // counter_wasm there.
    assert_eq!(
        e.ok_in_place(&format!(
            "begin P = spawn('{}', counter_wasm, start, [7]), put(p7, P), gen_server:call(P, get) end",
            b.name()
        )),
        "7"
    );
    let listed = e.ok_in_place(&format!(
        "[{{maps:get(kinds, M), maps:get(actors, M)}} || M <- rpc:call('{}', node_server_wasm, list, [])]",
        b.name()
    ));
    assert_eq!(listed, "[{[<<\"counter_wasm/1\">>],2}]");

    // A node whose authority has another key refuses the fetched module.
    let err = a
        .spawn_on(
            &Placement::Node(other_key.name().to_owned()),
            "counter_wasm",
            vec![node_server::etf::Term::Int(1)],
            SpawnOpts::default().source(hash),
        )
        .await
        .expect_err("another key: refused");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert!(other_key.wasm_modules().list().is_empty());

    // Unload on B: new spawns fail, the running counters go on.
    assert_eq!(
        e.ok_in_place(&format!(
            "rpc:call('{}', node_server_wasm, unload, [<<\"{hash}\">>])",
            b.name()
        )),
        "ok"
    );
    let down = e.ok_in_place(&format!(
        "begin {{P, R}} = spawn_monitor('{}', counter_wasm, start, [1]), \
         receive {{'DOWN', R, process, P, W}} -> W after 5000 -> timeout end end",
        b.name()
    ));
    assert!(
        down.contains("counter_wasm"),
        "the spawn fails naming the kind: {down}"
    );
    assert_eq!(e.ok_in_place("gen_server:call(get(p7), get)"), "7");
    assert_eq!(
        e.ok_in_place(&format!(
            "gen_server:call({{wcounter, '{}'}}, get)",
            b.name()
        )),
        "5"
    );
    let again = e.ok_in_place(&format!(
        "rpc:call('{}', node_server_wasm, unload, [<<\"{hash}\">>])",
        b.name()
    ));
    assert!(again.contains(&hash.to_string()), "{again}");

    for node in [a, b, other_key, none] {
        node.shutdown().await;
    }
}
