//! Flow control against a real Erlang node stopped with SIGSTOP (see
//! `node_server::send_queue`): `echo_node:flood/3` sends 100,000 messages of 10 KB through
//! the flow-controlled path ([`node_server::ProcessHandle::send`]); while the peer is stopped
//! the Rust node's memory stays bounded (its RSS grows by at most 96 MiB), and after SIGCONT
//! all 100,000 arrive, in order, none missing. The same flood as ractor casts on an
//! `ActorRef` (`echo_node:flood_cast/3`), which cannot wait, follows the documented policy:
//! memory bounded the same way, and every message either arrives (in order) or is counted as
//! dropped on the connection.
//!
//! The Rust node is the `echo_node` example in a process of its own, so its RSS is its own.
//! One Erlang peer and one `echo_node` serve both scenarios, in turn.
//!
//! Needs Erlang/OTP (`erl`, `erlc`): skipped on a developer machine without it, fails in CI
//! (`CI=true`), see [`testkit::require_erl`].

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testkit::{ChildGuard, Epmd, EvalPeer};

const COOKIE: &str = "flow_interop_cookie";
const COUNT: u32 = 100_000;
const BYTES: u32 = 10_000;
/// How much the Rust node's RSS may grow while the peer is stopped.
const RSS_BUDGET: u64 = 96 << 20;
/// How long the peer stays stopped: long enough for the flood to fill every buffer on the way
/// (unchecked, 1 GB would be queued in about a second).
const STOPPED: Duration = Duration::from_secs(3);

fn beam_dirs() -> Vec<PathBuf> {
    testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer", "flow_peer"],
    )
}

/// The RSS of process `pid` in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill {sig} {pid}");
}

/// Starts `echo_node` named `name`; returns it and its full node name.
fn start_echo_node(name: &str, epmd_port: u16) -> (ChildGuard, String) {
    let mut cmd = Command::new(testkit::example_exe("echo_node"));
    cmd.args(["--name", name, "--cookie", COOKIE])
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    testkit::spawn_ready(&mut cmd, "echo_node", Duration::from_secs(30))
}

/// Starts the flood `function` to a new collector, stops the peer for [`STOPPED`] while
/// sampling the Rust node's RSS, resumes it; returns the collector and the RSS growth.
fn flood_while_stopped(
    erl: &mut EvalPeer,
    erl_pid: u32,
    rust: &str,
    rust_pid: u32,
    function: &str,
) -> (String, u64) {
    erl.ok("put(c, flow_peer:collector())");
    let before = rss(rust_pid);
    assert_eq!(
        erl.ok(&format!(
            "rpc:call('{rust}', echo_node, {function}, [get(c), {COUNT}, {BYTES}])"
        )),
        "ok"
    );
    signal(erl_pid, "-STOP");
    let start = Instant::now();
    let mut peak = before;
    while start.elapsed() < STOPPED {
        peak = peak.max(rss(rust_pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(erl_pid, "-CONT");
    let collector = erl.ok("get(c)");
    (collector, peak.saturating_sub(before))
}

#[test]
fn a_stopped_peer_bounds_memory_and_loses_nothing() {
    let Some(erl_exe) = testkit::require_erl() else {
        return;
    };
    let epmd = Epmd::start();
    let id = std::process::id();
    let (rust_node, rust) = start_echo_node(&format!("flow_r_{id}"), epmd.port());
    let mut erl = EvalPeer::start(
        &erl_exe,
        &format!("flow_e_{id}"),
        COOKIE,
        epmd.port(),
        &beam_dirs(),
        Duration::from_secs(180),
    )
    .expect("erl starts");
    let erl_pid = erl.peer_mut().os_pid();
    assert_eq!(erl.ok(&format!("net_adm:ping('{rust}')")), "pong");

    // The flow-controlled path: everything arrives, in order, nothing missing.
    let (_, grew) = flood_while_stopped(&mut erl, erl_pid, &rust, rust_node.id(), "flood");
    println!(
        "flood: RSS grew {} KiB while the peer was stopped",
        grew >> 10
    );
    assert!(
        grew <= RSS_BUDGET,
        "RSS grew {} MiB while the peer was stopped",
        grew >> 20
    );
    let report = erl.ok(&format!("flow_peer:wait_count(get(c), {COUNT}, 120000)"));
    let size = u64::from(COUNT) * u64::from(BYTES);
    assert_eq!(
        report,
        format!("{{ok,{{{COUNT},{COUNT},true,true,{size}}}}}"),
        "all {COUNT} messages, in order, none missing"
    );
    // Read in Erlang: releases print map keys in different orders.
    let stats = erl.ok(&format!(
        "begin S = rpc:call('{rust}', echo_node, connection_stats, [node()]), \
         {{maps:get(dropped, S), maps:get(busy, S) > 0}} end"
    ));
    println!("connection after flood: (dropped, waited) = {stats}");
    assert_eq!(stats, "{0,true}", "nothing dropped, and the flood waited");

    // Ractor casts cannot wait: bounded the same way, each message arrives or is counted.
    let (_, grew) = flood_while_stopped(&mut erl, erl_pid, &rust, rust_node.id(), "flood_cast");
    println!(
        "flood_cast: RSS grew {} KiB while the peer was stopped",
        grew >> 10
    );
    assert!(
        grew <= RSS_BUDGET,
        "RSS grew {} MiB while the peer was stopped",
        grew >> 20
    );
    let total = erl.ok(&format!(
        "flow_peer:wait_total(get(c), '{rust}', {COUNT}, 120000)"
    ));
    println!("flood_cast: {total}");
    let fields: Vec<&str> = total
        .trim_start_matches("{ok,{")
        .trim_end_matches('}')
        .split([',', '}'])
        .filter(|s| !s.is_empty())
        .collect();
    assert!(total.starts_with("{ok,"), "{total}");
    let (count, in_order, dropped): (u64, &str, u64) = (
        fields[0].parse().expect("count"),
        fields[2],
        fields[5].parse().expect("dropped"),
    );
    assert_eq!(in_order, "true", "what arrives comes in order: {total}");
    assert_eq!(count + dropped, u64::from(COUNT), "{total}");
    assert!(count > 0, "some arrive: {total}");
}
