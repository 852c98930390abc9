//! Messaging throughput and call latency between nodes, beside Erlang in the same run.
//!
//! ```text
//! cargo run --release --example bench                 # Rust to Rust; with erl also Erlang to Erlang, Erlang to Rust, Rust to Erlang
//! cargo run --release --example bench -- --peer NODE  # Rust to another node running bench_peer:serve()
//! ```
//!
//! Rust to Rust also runs the same through a `ProcessHandle` (`process_handle:`, the direct
//! send path whose sends wait while the connection is busy).
//!
//! Prints `oneway_msgs_per_s: N` (a one-way flood of `{hello, 42, <<"payload-0123456789">>}`
//! to a counting actor, counted at the receiver), `rtt_us: X` (sequential `ping` calls) and
//! `oneway_1mib_mib_per_s: Y` (a flood of `--big K`, default 200, hellos whose binary is
//! 1 MiB, counted at the receiver).
//! Rust to Rust runs the receiving node in a second process. `examples/bench_peer.erl` is the
//! Erlang side, with the same shapes: an Erlang flooder measures Erlang to Erlang and then
//! Erlang to Rust (against the same receiving node of ours) in the same run.
//!
//! The Rust side measures from a spawned task, where an actor would run. Its flood loop spends
//! tokio's cooperative budget per cast (`tokio::task::coop::consume_budget`), so it yields
//! every 128 casts as async code doing I/O would: ractor's `cast` is synchronous and spends
//! none, and a loop that never yields keeps the proxy it wakes in tokio's LIFO slot, which
//! other workers cannot steal from, until the loop ends; then the flood and its sending run
//! one after the other (`without_yielding`, same run). For Rust to Rust it also measures from
//! `main`'s future (`from_main`), which tokio polls on the main thread, outside the worker
//! threads: a flood from there gets a third thread, and every wake-up of a call crosses
//! threads. Beside it, the same run measures the floor: a 40-byte frame echoed over loopback
//! TCP between the same two processes, once with tokio on both ends
//! (`raw_tcp_40_byte_ping_pong: tokio_rtt_us`) and once with blocking sockets
//! (`blocking_rtt_us`); then typed calls and raw tokio ping-pongs in alternating rounds of a
//! tenth of the calls each (`rtt_interleaved`: medians of the rounds and of their ratios), as
//! this VM's wake-up cost moves between runs more than either figure does.
//! The Rust nodes busy-poll for 50 µs after each write (`NodeConfig::busy_wait`, the
//! default; see `node_server::busy`); `--busy-wait-us 0` turns that off in both processes
//! (any other value sets it). `TOKIO_WORKER_THREADS=1` runs both Rust nodes on one worker thread
//! each. `BENCH_PHASES=1` also prints (on stderr) how long each flood loop itself took and when
//! the receiver had counted everything.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use node_server::etf::Atom;
use node_server::{ErlangMessage, Node, NodeConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use testkit::ChildGuard;

const COOKIE: &str = "bench-cookie";

/// The counting actor's messages: the same shapes as `bench_peer.erl`.
#[derive(Debug, ErlangMessage)]
enum CounterMsg {
    /// `{hello, 42, <<"payload-...">>}`
    Hello(i64, Bytes),
    /// `count` -> the number of hellos
    #[rpc]
    Count(RpcReplyPort<u64>),
    /// `reset` -> ok
    #[rpc]
    Reset(RpcReplyPort<()>),
    /// `ping` -> pong
    #[rpc]
    Ping(RpcReplyPort<Atom>),
}

struct Counter;

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = u64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<CounterMsg>, _: ()) -> Result<u64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<CounterMsg>,
        msg: CounterMsg,
        n: &mut u64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Hello(..) => *n += 1,
            CounterMsg::Count(r) => {
                let _ = r.send(*n);
            }
            CounterMsg::Reset(r) => {
                *n = 0;
                let _ = r.send(());
            }
            CounterMsg::Ping(r) => {
                let _ = r.send(Atom::new("pong"));
            }
        }
        Ok(())
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// `--busy-wait-us N`: the nodes' [`NodeConfig::busy_wait`] (default: the node's default).
fn busy_wait() -> Option<Duration> {
    arg("--busy-wait-us")
        .and_then(|s| s.parse().ok())
        .map(Duration::from_micros)
}

async fn start_node(name: &str, epmd_port: u16) -> Node {
    // A flood of ractor casts cannot wait for its connection: beyond the send queue's hard
    // cap (32 MiB by default) its messages are dropped and counted. The floods without
    // yielding queue all of theirs at once, so the cap is lifted here to measure throughput
    // as before; the process-handle flood waits instead and needs no cap.
    let config = NodeConfig::new(name)
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .dist_queue_cap(usize::MAX);
    match busy_wait() {
        Some(window) => config.busy_wait(window),
        None => config,
    }
    .start()
    .await
    .unwrap_or_else(|e| panic!("node {name}: {e}"))
}

/// How the flood loop treats tokio's scheduler.
#[derive(Clone, Copy)]
enum Flood {
    /// Spends a unit of tokio's cooperative budget per cast (`consume_budget`), so that the
    /// loop yields when the budget runs out (every 128 casts), as async code that does I/O
    /// would. ractor's `cast` is synchronous and spends none.
    Cooperative,
    /// Never yields until the last cast.
    NoYield,
}

/// The hellos' payload, `<<"payload-0123456789">>`.
const PAYLOAD: &[u8] = b"payload-0123456789";

/// The payload of the big messages: 1 MiB.
const BIG: usize = 1 << 20;

/// Floods `n` hellos with the small payload, waits until the receiver counted them, then
/// times `m` pings.
async fn measure(node: &Node, peer: &str, n: u64, m: u32, flood: Flood) -> (f64, f64) {
    measure_with(node, peer, n, m, flood, Bytes::from_static(PAYLOAD)).await
}

/// [`measure`] with any payload.
async fn measure_with(
    node: &Node,
    peer: &str,
    n: u64,
    m: u32,
    flood: Flood,
    payload: Bytes,
) -> (f64, f64) {
    let counter = node
        .remote_name::<CounterMsg>("counter", peer)
        .await
        .expect("proxy to the counter");
    let timeout = Some(Duration::from_secs(60));
    ractor::call_t!(counter, CounterMsg::Reset, 60_000).expect("reset");
    let start = Instant::now();
    for _ in 0..n {
        counter
            .cast(CounterMsg::Hello(42, payload.clone()))
            .expect("cast");
        if let Flood::Cooperative = flood {
            tokio::task::coop::consume_budget().await;
        }
    }
    if std::env::var_os("BENCH_PHASES").is_some() {
        eprintln!("flood loop: {:?} at {:?}", start.elapsed(), Instant::now());
    }
    loop {
        let counted = counter
            .call(CounterMsg::Count, timeout)
            .await
            .expect("count");
        if matches!(counted, ractor::rpc::CallResult::Success(c) if c >= n) {
            break;
        }
        let dropped = node.connection_stats(peer).map_or(0, |s| s.dropped);
        assert_eq!(dropped, 0, "messages were dropped at the send queue's cap");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    if std::env::var_os("BENCH_PHASES").is_some() {
        eprintln!(
            "flood counted: {:?} at {:?}",
            start.elapsed(),
            Instant::now()
        );
    }
    let rtt = typed_pings(&counter, m).await;
    if std::env::args().any(|a| a == "--raw-calls") {
        // The same call without the typed proxy: Node::call with a term.
        let target = node_server::remote::RemoteTarget::Name {
            name: Atom::new("counter"),
            node: Atom::new(peer),
        };
        let start = Instant::now();
        for _ in 0..m {
            node.call(
                &target,
                node_server::etf::Term::atom("ping"),
                Duration::from_secs(10),
            )
            .await
            .expect("raw ping");
        }
        let raw = start.elapsed().as_secs_f64() * 1e6 / f64::from(m);
        println!("raw_call_rtt_us: {raw:.1}");
    }
    (rate, rtt)
}

/// [`measure`] from a spawned task, where an actor runs.
async fn measure_in_task(node: &Node, peer: &str, n: u64, m: u32, flood: Flood) -> (f64, f64) {
    measure_in_task_with(node, peer, n, m, flood, Bytes::from_static(PAYLOAD)).await
}

/// [`measure_with`] from a spawned task.
async fn measure_in_task_with(
    node: &Node,
    peer: &str,
    n: u64,
    m: u32,
    flood: Flood,
    payload: Bytes,
) -> (f64, f64) {
    let (node, peer) = (node.clone(), peer.to_owned());
    tokio::spawn(async move { measure_with(&node, &peer, n, m, flood, payload).await })
        .await
        .expect("measuring task")
}

/// [`measure_with`] through a [`node_server::ProcessHandle`] (the direct send path: encoded
/// by the sending task into the connection's queue, waiting while it is busy) from a spawned
/// task: the flood's rate and the mean round trip of `m` `ping` calls.
async fn measure_handle(node: &Node, peer: &str, n: u64, m: u32, payload: Bytes) -> (f64, f64) {
    use node_server::etf::Term;
    let target = node_server::remote::RemoteTarget::Name {
        name: Atom::new("counter"),
        node: Atom::new(peer),
    };
    let handle = node.process(&target).await.expect("a handle");
    tokio::spawn(async move {
        let timeout = Duration::from_secs(60);
        let _: Term = handle
            .call(&Term::atom("reset"), timeout)
            .await
            .expect("reset");
        let start = Instant::now();
        for _ in 0..n {
            handle
                .send(&CounterMsg::Hello(42, payload.clone()))
                .await
                .expect("send");
        }
        loop {
            let counted: u64 = handle
                .call(&Term::atom("count"), timeout)
                .await
                .expect("count");
            if counted >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        for _ in 0..m {
            let _: Term = handle
                .call(&Term::atom("ping"), Duration::from_secs(10))
                .await
                .expect("ping");
        }
        let rtt = start.elapsed().as_secs_f64() * 1e6 / f64::from(m.max(1));
        (rate, rtt)
    })
    .await
    .expect("measuring task")
}

/// MiB/s of a flood of `k` hellos with a 1 MiB payload from a spawned task, counted at the
/// receiver.
async fn big_flood(node: &Node, peer: &str, k: u64) -> f64 {
    let payload = Bytes::from(vec![7u8; BIG]);
    let (rate, _) = measure_in_task_with(node, peer, k, 1, Flood::Cooperative, payload).await;
    rate * BIG as f64 / f64::from(1 << 20)
}

fn erlang_dir() -> Option<PathBuf> {
    let dir = std::env::temp_dir().join(format!("bench-erl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/bench_peer.erl");
    let ok = Command::new("erlc")
        .arg("-o")
        .arg(&dir)
        .arg(src)
        .status()
        .ok()?
        .success();
    ok.then_some(dir)
}

/// Starts a process and waits for its `ready NODE [PORTS...]` line.
fn spawn_ready(cmd: &mut Command) -> (ChildGuard, String) {
    let (guard, name, _) = spawn_ready_ports(cmd);
    (guard, name)
}

/// Starts a process and waits for its `ready NODE [PORTS...]` line; returns the ports too.
fn spawn_ready_ports(cmd: &mut Command) -> (ChildGuard, String, Vec<u16>) {
    use std::io::BufRead;
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("ready line");
    let mut words = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_default()
        .split(' ');
    let name = words.next().unwrap_or_default().to_owned();
    assert!(!name.is_empty(), "no ready line: {line:?}");
    let ports = words.filter_map(|w| w.parse().ok()).collect();
    (ChildGuard::new(child, "child"), name, ports)
}

/// The raw floor: a 40-byte frame echoed over loopback TCP, with nothing else on the path.
/// One echo server runs on tokio (the I/O stack the node uses), one on blocking std sockets.
const FRAME: usize = 40;

async fn raw_echo_tokio() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = [0u8; FRAME];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn raw_echo_blocking() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || {
                let mut buf = [0u8; FRAME];
                while s.read_exact(&mut buf).is_ok() {
                    if s.write_all(&buf).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

/// Mean round trip in microseconds of `m` 40-byte ping-pongs with the tokio echo server.
async fn raw_rtt_tokio(port: u16, m: u32) -> f64 {
    raw_pings(&mut raw_connect(port).await, m).await
}

/// A connection to the tokio echo server.
async fn raw_connect(port: u16) -> tokio::net::TcpStream {
    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// Mean round trip in microseconds of `m` 40-byte ping-pongs on `s`.
async fn raw_pings(s: &mut tokio::net::TcpStream, m: u32) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [7u8; FRAME];
    let start = Instant::now();
    for _ in 0..m {
        s.write_all(&buf).await.expect("write");
        s.read_exact(&mut buf).await.expect("read");
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(m)
}

/// Mean round trip in microseconds of `m` sequential `ping` calls.
async fn typed_pings(counter: &ActorRef<CounterMsg>, m: u32) -> f64 {
    let start = Instant::now();
    for _ in 0..m {
        ractor::call_t!(counter, CounterMsg::Ping, 10_000).expect("ping");
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(m)
}

/// Typed calls and raw tokio ping-pongs in alternating rounds from one spawned task, so that
/// both see the same state of the machine. Returns the medians of the typed rounds, of the
/// raw rounds and of each round's ratio.
async fn interleaved_rtt(node: &Node, peer: &str, port: u16, rounds: u32, m: u32) -> [f64; 3] {
    let (node, peer) = (node.clone(), peer.to_owned());
    tokio::spawn(async move {
        let counter = node
            .remote_name::<CounterMsg>("counter", &peer)
            .await
            .expect("proxy to the counter");
        let mut s = raw_connect(port).await;
        let (mut typed, mut raw, mut ratio) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = typed_pings(&counter, m).await;
            let r = raw_pings(&mut s, m).await;
            typed.push(t);
            raw.push(r);
            ratio.push(t / r);
        }
        [median(typed), median(raw), median(ratio)]
    })
    .await
    .expect("interleaved rounds")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The same with blocking sockets on both ends.
fn raw_rtt_blocking(port: u16, m: u32) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let mut buf = [7u8; FRAME];
    let start = Instant::now();
    for _ in 0..m {
        s.write_all(&buf).expect("write");
        s.read_exact(&mut buf).expect("read");
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(m)
}

#[tokio::main]
async fn main() {
    let n: u64 = arg("--messages")
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let m: u32 = arg("--calls").and_then(|s| s.parse().ok()).unwrap_or(5_000);
    let k: u64 = arg("--big").and_then(|s| s.parse().ok()).unwrap_or(200);
    let epmd_port: u16 = arg("--epmd-port")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(testkit::free_port);

    if std::env::args().any(|a| a == "--serve") {
        // The receiving process: a node with the counter, until stdin closes.
        let node = start_node(&format!("bench_rx{}", std::process::id()), epmd_port).await;
        let (counter, _) = Actor::spawn(None, Counter, ()).await.expect("counter");
        node.register("counter", &counter).expect("register");
        let (tokio_port, std_port) = (raw_echo_tokio().await, raw_echo_blocking());
        println!("ready {} {tokio_port} {std_port}", node.name());
        let _ =
            tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await;
        return;
    }

    let node = start_node(&format!("bench_tx{}", std::process::id()), epmd_port).await;
    if let Some(peer) = arg("--peer") {
        let (rate, rtt) = measure_in_task(&node, &peer, n, m, Flood::Cooperative).await;
        println!("peer: {peer}\noneway_msgs_per_s: {rate:.0}\nrtt_us: {rtt:.1}");
        let big = big_flood(&node, &peer, k).await;
        println!("oneway_1mib_mib_per_s: {big:.0}");
        return;
    }

    let exe = std::env::current_exe().expect("own path");
    let (_rx, rx_name, raw_ports) = spawn_ready_ports(
        Command::new(exe)
            .args(["--serve", "--epmd-port", &epmd_port.to_string()])
            .args(
                busy_wait()
                    .map(|w| vec!["--busy-wait-us".to_owned(), w.as_micros().to_string()])
                    .unwrap_or_default(),
            )
            .stdin(Stdio::piped()),
    );
    let (rate, rtt) = measure_in_task(&node, &rx_name, n, m, Flood::Cooperative).await;
    println!("rust_to_rust:\n  oneway_msgs_per_s: {rate:.0}\n  rtt_us: {rtt:.1}");
    let big = big_flood(&node, &rx_name, k).await;
    println!("  oneway_1mib_mib_per_s: {big:.0}");
    let (rate, rtt) = measure_handle(&node, &rx_name, n, m, Bytes::from_static(PAYLOAD)).await;
    let (big_rate, _) = measure_handle(&node, &rx_name, k, 1, Bytes::from(vec![7u8; BIG])).await;
    let big = big_rate * BIG as f64 / f64::from(1 << 20);
    println!(
        "  process_handle:\n    oneway_msgs_per_s: {rate:.0}\n    rtt_us: {rtt:.1}\n    oneway_1mib_mib_per_s: {big:.0}"
    );
    let (rate, _) = measure_in_task(&node, &rx_name, n, 1, Flood::NoYield).await;
    println!("  without_yielding:\n    oneway_msgs_per_s: {rate:.0}");
    let (rate, rtt) = measure(&node, &rx_name, n, m, Flood::NoYield).await;
    println!("  from_main:\n    oneway_msgs_per_s: {rate:.0}\n    rtt_us: {rtt:.1}");
    if let [tokio_port, std_port] = raw_ports[..] {
        let raw_tokio = tokio::spawn(raw_rtt_tokio(tokio_port, m))
            .await
            .expect("raw");
        let raw_std = tokio::task::spawn_blocking(move || raw_rtt_blocking(std_port, m))
            .await
            .expect("raw");
        println!("raw_tcp_40_byte_ping_pong:\n  tokio_rtt_us: {raw_tokio:.1}\n  blocking_rtt_us: {raw_std:.1}");
        let [typed, raw, ratio] = interleaved_rtt(&node, &rx_name, tokio_port, 10, m / 10).await;
        println!(
            "rtt_interleaved:\n  typed_rtt_us: {typed:.1}\n  raw_tokio_rtt_us: {raw:.1}\n  typed_over_raw: {ratio:.2}"
        );
    }

    let Some(dir) = erlang_dir() else {
        println!("erlang_to_erlang: skipped (erl/erlc not found)");
        return;
    };
    let erl = |name: &str| {
        let mut c = Command::new("erl");
        c.env("ERL_EPMD_PORT", epmd_port.to_string())
            .args(["-noshell", "-sname", name, "-setcookie", COOKIE, "-pa"])
            .arg(&dir);
        c
    };
    let pid = std::process::id();
    let (_erx, erx_name) = spawn_ready(
        erl(&format!("bench_erx{pid}"))
            .args(["-run", "bench_peer", "main", "serve"])
            .stdin(Stdio::piped()),
    );
    // The Erlang flooder, against the Erlang counter and then against ours.
    for (label, target) in [
        ("erlang_to_erlang", &erx_name),
        ("erlang_to_rust", &rx_name),
    ] {
        let out = erl(&format!("bench_etx{pid}"))
            .args([
                "-run",
                "bench_peer",
                "main",
                "run",
                target,
                &n.to_string(),
                &m.to_string(),
                &k.to_string(),
            ])
            .output()
            .expect("erl runs");
        println!("{label}:");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("  {line}");
        }
    }
    let (rate_re, rtt_re) = measure_in_task(&node, &erx_name, n, m, Flood::Cooperative).await;
    println!("rust_to_erlang:\n  oneway_msgs_per_s: {rate_re:.0}\n  rtt_us: {rtt_re:.1}");
    let big = big_flood(&node, &erx_name, k).await;
    println!("  oneway_1mib_mib_per_s: {big:.0}");
}
