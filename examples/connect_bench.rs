//! Connection setup latency: our node against OTP 25's, in the same run.
//!
//! ```text
//! cargo run --release --example connect_bench [-- OPTIONS]
//!   --iters N         timed connections per scenario (200)
//!   --warmup N        untimed connections first (20)
//!   --visible         visible nodes (default: hidden, Erlang nodes get -hidden; visible
//!                     Erlang nodes get -connect_all false and dist_auto_connect never, so
//!                     that global neither meshes nor reconnects behind the bench)
//!   --two-processes   Rust -> Rust with the accepting node in a child process
//!   --only LIST       comma-separated scenarios among rr, ee, re, er
//! ```
//!
//! One EPMD serves everything: ours, started in this process on a free port; the Erlang nodes
//! get `ERL_EPMD_PORT`. A connection setup is what happens before a node's first message to
//! another: the EPMD lookup (PORT_PLEASE2), the TCP connect, the handshake, and the session
//! being up on the connecting side.
//!
//! - **rust -> rust**: two nodes of ours, by default in this process (one tokio runtime with two
//!   worker threads), `client_connect(&b, a.name())` timed; with `--two-processes` the accepting
//!   node runs in a child process (this binary again), as two Erlang nodes are two processes.
//! - **erlang -> erlang**: two `erl -sname` nodes; the first runs `timer:tc(net_kernel,
//!   connect_node, [Other])` (examples/connect_bench.erl, compiled with erlc into a temp dir).
//! - **rust -> erlang**: `client_connect` to the second Erlang node.
//! - **erlang -> rust**: the first Erlang node's `connect_node` to our accepting node.
//!
//! After each connection the connecting side disconnects, and the next iteration starts only
//! when both sides have seen the connection go down (our `Down` events; for an Erlang node, its
//! `nodedown` on the connecting side and an empty `nodes(connected)` on the other). Teardown
//! is not timed. Times are in microseconds; the Erlang ones are measured inside Erlang.
//!
//! `erl` and `erlc` must be on `PATH`; without them this exits with status 1.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use node_server::{client_connect, Node, NodeConfig, NodeEvent};
use testkit::{ChildGuard, ErlPeer};
use tokio::sync::broadcast;

const COOKIE: &str = "connectbench";
const WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
struct Options {
    iters: usize,
    warmup: usize,
    visible: bool,
    two_processes: bool,
    only: Vec<String>,
}

fn parse_options(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut o = Options {
        iters: 200,
        warmup: 20,
        visible: false,
        two_processes: false,
        only: ["rr", "ee", "re", "er"].map(String::from).to_vec(),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--iters" => o.iters = value()?.parse().map_err(|e| format!("--iters: {e}"))?,
            "--warmup" => o.warmup = value()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--visible" => o.visible = true,
            "--two-processes" => o.two_processes = true,
            "--only" => {
                o.only = value()?.split(',').map(|s| s.trim().to_owned()).collect();
                if let Some(bad) = o
                    .only
                    .iter()
                    .find(|s| !["rr", "ee", "re", "er"].contains(&s.as_str()))
                {
                    return Err(format!("--only: unknown scenario {bad} (rr, ee, re, er)"));
                }
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.iters == 0 {
        return Err("--iters must be at least 1".into());
    }
    Ok(o)
}

/// Latency figures of one scenario, in microseconds.
struct Summary {
    n: usize,
    mean: f64,
    p50: f64,
    p99: f64,
    min: f64,
}

fn summarize(mut micros: Vec<f64>) -> Summary {
    micros.sort_by(f64::total_cmp);
    let n = micros.len();
    let rank = |q: f64| micros[((q * n as f64).ceil() as usize).clamp(1, n) - 1];
    Summary {
        n,
        mean: micros.iter().sum::<f64>() / n as f64,
        p50: rank(0.50),
        p99: rank(0.99),
        min: micros[0],
    }
}

/// Our node started with the bench's EPMD and cookie.
async fn start_node(name: &str, epmd_port: u16, visible: bool) -> Result<Node, String> {
    NodeConfig::new(name)
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .hidden(!visible)
        .start()
        .await
        .map_err(|e| format!("starting node {name}: {e}"))
}

/// Waits for `Down` of `peer` on `events`.
async fn await_down(events: &mut broadcast::Receiver<NodeEvent>, peer: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => return Err(format!("no Down event for {peer} within {WAIT:?}")),
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => return Err(format!("event channel: {e}")),
            Ok(Ok(NodeEvent::Down { node, .. })) if node == peer => return Ok(()),
            Ok(Ok(_)) => {}
        }
    }
}

/// The accepting node of the Rust -> Rust scenario: in this process, or in a child process.
enum Acceptor {
    InProcess {
        node: Node,
        events: broadcast::Receiver<NodeEvent>,
    },
    Child {
        name: String,
        lines: mpsc::Receiver<String>,
        _guard: ChildGuard,
    },
}

impl Acceptor {
    fn name(&self) -> &str {
        match self {
            Acceptor::InProcess { node, .. } => node.name(),
            Acceptor::Child { name, .. } => name,
        }
    }

    async fn await_down(&mut self, peer: &str) -> Result<(), String> {
        match self {
            Acceptor::InProcess { events, .. } => await_down(events, peer).await,
            Acceptor::Child { lines, .. } => {
                let deadline = Instant::now() + WAIT;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match lines.recv_timeout(left) {
                        Ok(line) if line == format!("down {peer}") => return Ok(()),
                        Ok(_) => {}
                        Err(e) => return Err(format!("child node: no down line for {peer}: {e}")),
                    }
                }
            }
        }
    }

    /// Runs this binary as `--serve NAME EPMD_PORT [visible]` and waits for its `ready` line.
    fn spawn_child(name: &str, epmd_port: u16, visible: bool) -> Result<Acceptor, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.arg("--serve")
            .arg(name)
            .arg(epmd_port.to_string())
            .arg(if visible { "visible" } else { "hidden" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut guard =
            ChildGuard::spawn(&mut cmd, "connect_bench child node").map_err(|e| e.to_string())?;
        let stdout = guard
            .child_mut()
            .stdout
            .take()
            .ok_or("child without stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let ready = lines
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| format!("child node did not start: {e}"))?;
        let name = ready
            .strip_prefix("ready ")
            .ok_or_else(|| format!("child node said {ready:?}"))?
            .to_owned();
        Ok(Acceptor::Child {
            name,
            lines,
            _guard: guard,
        })
    }
}

/// The child process of `--two-processes`: a node that prints `ready NAME`, then `up NODE` and
/// `down NODE` lines, until its stdin closes.
fn serve(args: &[String]) -> ExitCode {
    let [name, port, mode] = args else {
        eprintln!("connect_bench --serve NAME EPMD_PORT hidden|visible");
        return ExitCode::from(2);
    };
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("connect_bench --serve: bad port {port}");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("connect_bench child: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let node = match start_node(name, port, mode == "visible").await {
            Ok(n) => n,
            Err(e) => {
                eprintln!("connect_bench child: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut events = node.subscribe();
        println!("ready {}", node.name());
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        tokio::pin!(stdin_closed);
        loop {
            tokio::select! {
                _ = &mut stdin_closed => break,
                ev = events.recv() => {
                    let line = match ev {
                        Ok(NodeEvent::Up { node, .. }) => format!("up {node}"),
                        Ok(NodeEvent::Down { node, .. }) => format!("down {node}"),
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    };
                    let mut out = std::io::stdout().lock();
                    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                        break;
                    }
                }
            }
        }
        node.shutdown().await;
        ExitCode::SUCCESS
    })
}

fn erl_eval(peer: &mut ErlPeer, expr: &str) -> Result<String, String> {
    let reply = peer.request(expr);
    reply
        .strip_prefix("ok ")
        .map(str::to_owned)
        .ok_or_else(|| format!("{expr} -> {reply}\n{}", peer.diagnostics()))
}

fn start_erl(
    erl: &Path,
    beams: &[PathBuf],
    name: &str,
    epmd_port: u16,
    visible: bool,
) -> Result<ErlPeer, String> {
    let mut b = ErlPeer::builder(erl, "eval_peer")
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .args(["-sname", name, "-setcookie", COOKIE])
        .reply_timeout(Duration::from_secs(30));
    if visible {
        // No transitive mesh and no implicit reconnects (global's messages to a node that
        // just went down would connect it again): only connect_node connects.
        b = b.args([
            "-connect_all",
            "false",
            "-kernel",
            "dist_auto_connect",
            "never",
        ]);
    } else {
        b = b.arg("-hidden");
    }
    for dir in beams {
        b = b.code_path(dir);
    }
    b.start().map_err(|e| format!("starting erl {name}: {e}"))
}

/// `ok 1234` from `connect_bench:once/1` -> 1234.0.
fn erl_micros(peer: &mut ErlPeer, target: &str) -> Result<f64, String> {
    let v = erl_eval(peer, &format!("connect_bench:once('{target}')"))?;
    v.parse()
        .map_err(|_| format!("connect_bench:once('{target}') returned {v}"))
}

fn erl_await_gone(peer: &mut ErlPeer, node: &str) -> Result<(), String> {
    erl_eval(peer, &format!("connect_bench:await_gone('{node}', 10000)")).map(drop)
}

async fn run(options: Options, erl: PathBuf) -> Result<(), String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let beams = vec![
        testkit::compile_erlang(&manifest.join("tests/erlang/eval_peer.erl")),
        testkit::compile_erlang(&manifest.join("examples/connect_bench.erl")),
    ];
    let epmd = epmd::ServerConfig::new()
        .port(testkit::free_port())
        .start()
        .await
        .map_err(|e| format!("starting epmd: {e}"))?;
    let epmd_port = epmd.port();
    let pid = std::process::id();
    let visible = options.visible;
    let total = options.warmup + options.iters;
    let wants = |s: &str| options.only.iter().any(|o| o == s);

    // Our connecting node b, our accepting node a (always in this process, for erlang -> rust)
    // and the Rust -> Rust acceptor (a itself, or a child process).
    let b = start_node(&format!("cbrb{pid}"), epmd_port, visible).await?;
    let a = start_node(&format!("cbra{pid}"), epmd_port, visible).await?;
    let mut results: Vec<(&str, Summary)> = Vec::new();

    if wants("rr") {
        let mut acceptor = if options.two_processes {
            Acceptor::spawn_child(&format!("cbrc{pid}"), epmd_port, visible)?
        } else {
            Acceptor::InProcess {
                node: a.clone(),
                events: a.subscribe(),
            }
        };
        let target = acceptor.name().to_owned();
        let mut b_events = b.subscribe();
        let mut micros = Vec::with_capacity(options.iters);
        for i in 0..total {
            let start = Instant::now();
            client_connect(&b, &target)
                .await
                .map_err(|e| format!("rust -> rust connect: {e}"))?;
            let took = start.elapsed();
            b.disconnect(&target);
            await_down(&mut b_events, &target).await?;
            acceptor.await_down(b.name()).await?;
            if i >= options.warmup {
                micros.push(took.as_secs_f64() * 1e6);
            }
        }
        let label = if options.two_processes {
            "rust -> rust (2 processes)"
        } else {
            "rust -> rust (1 process)"
        };
        results.push((label, summarize(micros)));
    }

    let needs_erl = ["ee", "re", "er"].iter().any(|s| wants(s));
    if needs_erl {
        let mut e1 = start_erl(&erl, &beams, &format!("cbe1_{pid}"), epmd_port, visible)?;
        let mut e2 = start_erl(&erl, &beams, &format!("cbe2_{pid}"), epmd_port, visible)?;
        let e1_name = erl_eval(&mut e1, "node()")?;
        let e2_name = erl_eval(&mut e2, "node()")?;

        if wants("ee") {
            let mut micros = Vec::with_capacity(options.iters);
            for i in 0..total {
                let t = erl_micros(&mut e1, &e2_name)?;
                erl_await_gone(&mut e2, &e1_name)?;
                if i >= options.warmup {
                    micros.push(t);
                }
            }
            results.push(("erlang -> erlang", summarize(micros)));
        }
        if wants("re") {
            let mut b_events = b.subscribe();
            let mut micros = Vec::with_capacity(options.iters);
            for i in 0..total {
                let start = Instant::now();
                client_connect(&b, &e2_name)
                    .await
                    .map_err(|e| format!("rust -> erlang connect: {e}"))?;
                let took = start.elapsed();
                b.disconnect(&e2_name);
                await_down(&mut b_events, &e2_name).await?;
                erl_await_gone(&mut e2, b.name())?;
                if i >= options.warmup {
                    micros.push(took.as_secs_f64() * 1e6);
                }
            }
            results.push(("rust -> erlang", summarize(micros)));
        }
        if wants("er") {
            let mut a_events = a.subscribe();
            let mut micros = Vec::with_capacity(options.iters);
            for i in 0..total {
                let t = erl_micros(&mut e1, a.name())?;
                await_down(&mut a_events, &e1_name).await?;
                if i >= options.warmup {
                    micros.push(t);
                }
            }
            results.push(("erlang -> rust", summarize(micros)));
        }
        let _ = e1.shutdown(Duration::from_secs(5));
        let _ = e2.shutdown(Duration::from_secs(5));
    }

    println!(
        "connection setup (EPMD lookup + TCP connect + handshake + session up), {} timed after {} warm-up, {} nodes:",
        options.iters,
        options.warmup,
        if visible { "visible" } else { "hidden" }
    );
    println!(
        "{:<28} {:>5} {:>9} {:>9} {:>9} {:>9}",
        "scenario", "n", "mean us", "p50 us", "p99 us", "min us"
    );
    for (label, s) in &results {
        println!(
            "{label:<28} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            s.n, s.mean, s.p50, s.p99, s.min
        );
    }
    let find = |prefix: &str| {
        results
            .iter()
            .find(|(l, _)| l.starts_with(prefix))
            .map(|(_, s)| s)
    };
    if let (Some(r), Some(e)) = (find("rust -> rust"), find("erlang -> erlang")) {
        println!(
            "ratio erlang->erlang / rust->rust: mean {:.2}x, p50 {:.2}x, p99 {:.2}x, min {:.2}x",
            e.mean / r.mean,
            e.p50 / r.p50,
            e.p99 / r.p99,
            e.min / r.min
        );
    }
    b.shutdown().await;
    a.shutdown().await;
    epmd.stop().await;
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        return serve(&args[1..]);
    }
    let options = match parse_options(args.into_iter()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("connect_bench: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(erl) = testkit::find_executable("erl") else {
        eprintln!(
            "connect_bench: `erl` (Erlang/OTP) is not on PATH; this bench compares against real \
             Erlang nodes and cannot run without it. Install Erlang/OTP (e.g. `apt-get install \
             erlang-nox`)."
        );
        return ExitCode::FAILURE;
    };
    if testkit::find_erlc().is_none() {
        eprintln!(
            "connect_bench: `erlc` (Erlang/OTP compiler) is not on PATH; install Erlang/OTP."
        );
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("connect_bench: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(options, erl)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("connect_bench: {e}");
            ExitCode::FAILURE
        }
    }
}
