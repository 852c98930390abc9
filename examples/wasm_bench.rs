//! WebAssembly actors beside native ones, in the same run: a guest counter
//! (`examples/guests/counter.wasm`) and a native counter of the same behaviour (`echo_node`'s
//! `counter`), each sent `{add, 1}` messages, and the time to spawn an actor from a loaded
//! module.
//!
//! ```text
//! cargo run --release --example wasm_bench [-- MESSAGES]
//! ```
//!
//! Prints, for each counter, messages/s two ways: `typed` (ractor casts of the actor's own
//! message type, a `{add, 1}` term for the guest) and `as_from_erlang` (the term `{add, 1}`
//! delivered by the node's router to the pid, as a message from another node is after
//! decoding: the native counter converts it with `FromTerm`, the guest gets its ETF). The
//! messages go in batches of 10,000, each ended by a `get` call that checks the count. Then
//! `spawn_us` (mean over 1,000 spawns of `Node::spawn_wasm`, and through the spawnable kind
//! as Erlang's `spawn/4` starts it) and `load_us` (validating and compiling the module).
//! Last `fetch_1mib_ms`: a node of ours that lacks a 1 MiB module fetches it from another
//! over loopback TCP (an EPMD of its own in the process), checks its hash and HMAC-SHA256
//! with its source authority, and compiles it (`Node::wasm_kind` with a source node): min and
//! median of 10, the module unloaded again between runs.

use std::time::{Duration, Instant};

use node_server::etf::Term;
use node_server::kinds::KindSpec;
use node_server::placement::{Placement, SpawnOpts};
use node_server::wasm::WasmMsg;
use node_server::NodeConfig;
use ractor::Actor;

/// The native counter: `echo_node`'s `counter`.
#[path = "echo_node/services.rs"]
mod services;

use services::{Counter, CounterMsg};

const BATCH: u64 = 10_000;

/// Messages/s of `n` sends by `send`, each batch checked by `get` (which returns the count).
async fn rate<F, G, Fut>(n: u64, mut send: F, get: G) -> f64
where
    F: FnMut(),
    G: Fn() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let start_count = get().await;
    let started = Instant::now();
    let mut sent = 0;
    while sent < n {
        for _ in 0..BATCH {
            send();
        }
        sent += BATCH;
        let count = get().await;
        assert_eq!(count, start_count + sent as i64, "every message counted");
    }
    sent as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let node = NodeConfig::new(format!("wasm_bench{}@localhost", std::process::id()))
        .cookie("wasm_bench")
        .register_with_epmd(false)
        .listen("127.0.0.1:0".parse()?)
        .start()
        .await?;
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/guests/counter.wasm"
    ))?;

    let timeout = Duration::from_secs(10);
    let add = Term::tuple(vec![Term::atom("add"), Term::Int(1)]);
    let core_send = |pid: &node_server::etf::Pid, msg: Term| {
        // The router's delivery, as for a message from another node.
        node.send(&node_server::remote::RemoteTarget::Pid(pid.clone()), msg)
    };

    // Native.
    let (native, _) = Actor::spawn(None, Counter::new(&node), 0).await?;
    let native_pid = node.pid_of(&native);
    let get_native = || async { ractor::call_t!(native, CounterMsg::Get, 10_000).expect("get") };
    let native_typed = rate(
        n,
        || native.cast(CounterMsg::Add(1)).expect("cast"),
        get_native,
    )
    .await;
    let native_erl = rate(n, || core_send(&native_pid, add.clone()), get_native).await;

    // Guest.
    let t = Instant::now();
    let hash = node.load_wasm(&bytes)?;
    let load_us = t.elapsed().as_secs_f64() * 1e6;
    let (guest, guest_pid) = node.spawn_wasm(&hash, vec![Term::Int(0)]).await?;
    let get_guest = || async {
        let reply = ractor::call_t!(guest, WasmMsg::Call, 10_000, Term::atom("get")).expect("get");
        match reply {
            Term::Int(v) => v,
            other => panic!("get gave {other}"),
        }
    };
    let guest_typed = rate(
        n,
        || guest.cast(WasmMsg::Message(add.clone())).expect("cast"),
        get_guest,
    )
    .await;
    let guest_erl = rate(n, || core_send(&guest_pid, add.clone()), get_guest).await;

    println!("messages: {n} per run, {BATCH} per batch");
    println!("native_counter_msgs_per_s: typed {native_typed:.0}, as_from_erlang {native_erl:.0}");
    println!("wasm_counter_msgs_per_s:   typed {guest_typed:.0}, as_from_erlang {guest_erl:.0}");

    // Spawns.
    let spawns = 1000;
    let t = Instant::now();
    let mut actors = Vec::with_capacity(spawns);
    for i in 0..spawns {
        actors.push(node.spawn_wasm(&hash, vec![Term::Int(i as i64)]).await?.0);
    }
    let spawn_us = t.elapsed().as_secs_f64() * 1e6 / spawns as f64;
    node.spawnable_wasm(KindSpec::new("counter_wasm"), &hash)?;
    let here = Placement::Node(node.name().to_owned());
    let t = Instant::now();
    for i in 0..spawns {
        node.spawn_on(
            &here,
            "counter_wasm",
            vec![Term::Int(i as i64)],
            SpawnOpts::default(),
        )
        .await?;
    }
    let kind_us = t.elapsed().as_secs_f64() * 1e6 / spawns as f64;
    println!("wasm_spawn_us: spawn_wasm {spawn_us:.1}, as_kind {kind_us:.1} (mean of {spawns})");
    println!("wasm_load_us: {load_us:.0} ({} bytes)", bytes.len());
    let _ = timeout;
    for a in actors {
        a.stop(None);
    }
    node.shutdown().await;
    fetch_phase(&bytes).await?;
    Ok(())
}

/// `fetch_1mib_ms` (see the module docs).
async fn fetch_phase(counter: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    let epmd = epmd::server::ServerConfig::new()
        .port(0)
        .addresses(vec!["127.0.0.1".parse()?])
        .start()
        .await?;
    let authority = node_server::sources::SourceAuthority::hmac_key("the key of wasm_bench")?;
    let start = |name: &str| {
        NodeConfig::new(format!("{name}{}@localhost", std::process::id()))
            .cookie("wasm_bench")
            .epmd("127.0.0.1", epmd.port())
            .source_authority(authority.clone())
            .start()
    };
    let (a, b) = (start("fetch_a").await?, start("fetch_b").await?);
    let big = node_server::wasm::padded(counter, 1 << 20);
    let hash = a.load_wasm(&big)?;
    // Connected, and the small module fetched once, before the clock runs.
    let small = a.load_wasm(counter)?;
    b.wasm_kind(&small, "small", Some(a.name())).await?;
    let mut ms = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        b.wasm_kind(&hash, "big", Some(a.name())).await?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        b.unload_wasm(&hash)?;
    }
    ms.sort_by(f64::total_cmp);
    println!(
        "fetch_1mib_ms: min {:.1}, median {:.1} ({} bytes, fetched, verified and compiled)",
        ms[0],
        ms[ms.len() / 2],
        big.len()
    );
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
