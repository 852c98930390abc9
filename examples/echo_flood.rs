//! An Erlang node floods `echo` on our node and on an Erlang node, in the same run.
//!
//! ```text
//! cargo run --release --example echo_flood [-- --messages N] [--rounds R] [--only rust|erlang]
//! ```
//!
//! Starts our node (with an embedded EPMD on a free port) with an `echo` actor registered
//! (the logic of `examples/echo_node.rs`: on `{From, Msg}` sends `Msg` to `From`), an Erlang
//! node whose registered `echo` process does the same (`examples/echo_flood.erl`), and a third
//! Erlang node, the flooder. Per round the flooder sends N (default 200,000)
//! `{self(), {hello, 42, <<"payload-0123456789">>}}` to `{echo, Node}` as fast as it can and
//! counts the replies until it has all N, for both targets (alternating which goes first).
//! Prints each round's figures, then the median replies/s for each target and their ratio.
//! The goal: our `echo` replies at least as fast as Erlang's.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use node_server::NodeConfig;
use ractor::Actor;
use testkit::{free_port, ChildGuard};

const COOKIE: &str = "echo-flood-cookie";

#[path = "echo_node/services.rs"]
mod services;
use services::Echo;

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Compiles `examples/echo_flood.erl` into a temporary directory.
fn compile_erlang() -> TempDir {
    let dir = TempDir(std::env::temp_dir().join(format!("echo-flood-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/echo_flood.erl");
    let ok = Command::new("erlc")
        .arg("-o")
        .arg(&dir.0)
        .arg(src)
        .status()
        .expect("erlc runs")
        .success();
    assert!(ok, "erlc failed");
    dir
}

/// Starts `erl -run echo_flood main ARGS...` with stdin and stdout piped.
fn erl(dir: &TempDir, epmd_port: u16, name: &str, args: &[&str]) -> (ChildGuard, impl BufRead) {
    let mut child = Command::new("erl")
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .args(["-noshell", "-sname", name, "-setcookie", COOKIE, "-pa"])
        .arg(&dir.0)
        .args(["-run", "echo_flood", "main"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("erl runs");
    let out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    (ChildGuard::new(child, "child"), out)
}

/// One flood's figures, from a `result ...` line.
struct Flood {
    target: String,
    replies: u64,
    of: u64,
    rate: f64,
    /// CPU seconds it cost: our node, the Erlang echo node, the flooder.
    cpu: [f64; 3],
}

fn parse_result(line: &str) -> Option<Flood> {
    let mut words = line.strip_prefix("result ")?.split_whitespace();
    let _round = words.next()?;
    let target = words.next()?.to_owned();
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
            .and_then(|v| v.parse::<f64>().ok())
    };
    Some(Flood {
        target,
        replies: field("replies")? as u64,
        of: field("of")? as u64,
        rate: field("replies_per_s")?,
        cpu: [0.0; 3],
    })
}

/// A process's CPU time (user + system) in seconds, from `/proc/PID/stat` (clock ticks of
/// 1/100 s, Linux's `USER_HZ`); 0 when the process is gone.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    }
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let n: u64 = arg("--messages")
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let rounds: u32 = arg("--rounds").and_then(|s| s.parse().ok()).unwrap_or(3);
    // Flooding one target alone is for profiling it.
    let only = arg("--only").unwrap_or_else(|| "both".into());
    assert!(
        ["both", "rust", "erlang"].contains(&only.as_str()),
        "--only takes rust or erlang"
    );
    let epmd_port = free_port();
    let pid = std::process::id();

    // Ours first, so that its embedded EPMD serves the Erlang nodes too.
    let node = NodeConfig::new(format!("echo_flood_rs{pid}"))
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .start()
        .await
        .expect("our node starts");
    let (echo, _) = Actor::spawn(None, Echo, node.clone())
        .await
        .expect("echo actor");
    node.register("echo", &echo).expect("register echo");

    let dir = compile_erlang();
    let (erl_echo, mut out) = erl(&dir, epmd_port, &format!("echo_flood_erl{pid}"), &["serve"]);
    let mut line = String::new();
    out.read_line(&mut line).expect("ready line");
    let erl_node = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_default()
        .to_owned();
    assert!(!erl_node.is_empty(), "no ready line: {line:?}");
    println!(
        "rust echo: {}  erlang echo: {erl_node}  messages per flood: {n}  rounds: {rounds}",
        node.name()
    );

    let (n_arg, rounds_arg) = (n.to_string(), rounds.to_string());
    let (flooder, out) = erl(
        &dir,
        epmd_port,
        &format!("echo_flood_fl{pid}"),
        &["flood", node.name(), &erl_node, &n_arg, &rounds_arg, &only],
    );
    // The flooder runs without our help; read its lines on a blocking thread, and take each
    // process's CPU time at every line, so each flood gets the CPU it cost every node.
    let pids = [std::process::id(), erl_echo.id(), flooder.id()];
    let floods = tokio::task::spawn_blocking(move || {
        let mut floods = Vec::new();
        let mut last = pids.map(cpu_seconds);
        for line in out.lines() {
            let Ok(line) = line else { break };
            let now = pids.map(cpu_seconds);
            let cpu = [0, 1, 2].map(|i| now[i] - last[i]);
            last = now;
            if let Some(mut f) = parse_result(&line) {
                f.cpu = cpu;
                println!(
                    "{}  cpu_s: rust_node={:.2} erlang_echo={:.2} flooder={:.2}{}",
                    line.trim_start_matches("result "),
                    cpu[0],
                    cpu[1],
                    cpu[2],
                    if f.replies < f.of { "  INCOMPLETE" } else { "" }
                );
                floods.push(f);
            } else if line.trim() == "done" {
                break;
            } else if line.trim() != "warm" {
                println!("flooder: {line}");
            }
        }
        floods
    })
    .await
    .expect("reader");

    let rates = |target: &str| -> Vec<f64> {
        floods
            .iter()
            .filter(|f| f.target == target)
            .map(|f| f.rate)
            .collect()
    };
    let (rust, erlang) = (median(rates("rust")), median(rates("erlang")));
    // CPU microseconds per echoed message, of the echoing node and of the flooder.
    let cpu_per_msg = |target: &str, who: usize| -> f64 {
        median(
            floods
                .iter()
                .filter(|f| f.target == target)
                .map(|f| f.cpu[who] * 1e6 / f.of as f64)
                .collect(),
        )
    };
    println!(
        "median_cpu_us_per_message echo_node: rust {:.2}  erlang {:.2}",
        cpu_per_msg("rust", 0),
        cpu_per_msg("erlang", 1)
    );
    println!(
        "median_cpu_us_per_message flooder: flooding rust {:.2}  flooding erlang {:.2}",
        cpu_per_msg("rust", 2),
        cpu_per_msg("erlang", 2)
    );
    let incomplete = floods.iter().filter(|f| f.replies < f.of).count();
    if only != "both" {
        node.shutdown().await;
        return;
    }
    println!("median_replies_per_s rust: {rust:.0}");
    println!("median_replies_per_s erlang: {erlang:.0}");
    println!(
        "ratio rust/erlang: {:.2}  ({})",
        rust / erlang,
        if rust >= erlang && incomplete == 0 {
            "MET: at least as fast"
        } else {
            "NOT MET"
        }
    );
    if incomplete > 0 {
        println!("incomplete floods: {incomplete}");
    }
    node.shutdown().await;
}
