//! PORT_PLEASE2 throughput and latency: our epmd against OTP's.
//!
//! ```text
//! cargo run --release --example epmd_bench [-- OPTIONS]
//!   --secs S            measured seconds per daemon, in total (5)
//!   --slices N          split the measurement in N slices, alternating the daemons (10)
//!   --warmup S          unmeasured seconds per daemon before the first slice (1)
//!   --concurrency N     concurrent lookup loops (64)
//!   --client-threads N  load-generator threads, each a current_thread runtime (2)
//!   --server-threads N  worker threads of our in-process server's runtime (1, as the daemon)
//!   --only ours|real    measure one daemon only
//! ```
//!
//! Starts our server in-process, on a multi-thread tokio runtime of its own, and OTP's
//! `epmd -port P` as a child process (killed at the end), both on free loopback ports, and
//! registers one node in each (the registrations stay alive). The same load generator then
//! runs `--concurrency` loops against each daemon that each do what `erl` does for a lookup: a
//! new TCP connection, the PORT_PLEASE2 request, the reply read until the daemon closes the
//! connection. It prints lookups per second, p50/p99/max latency (connect to close) and the
//! CPU time per lookup of the daemon and of the load generator, and the throughput ratio.
//!
//! The load generator runs on threads of its own (`--client-threads`, each a current_thread
//! runtime driving its share of the loops), apart from our server's runtime. On a small machine
//! both still share the cores, with each other and with anything else running, and the
//! kernel's TCP work for both ends of every connection is done on them too. Alternating the
//! daemons in short slices exposes both to the same background load; the CPU time per lookup
//! (from /proc, Linux only) is the figure least disturbed by it.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use epmd::protocol::{self, Request};
use epmd::{Client, NodeInfo, Registration, ServerConfig};
use testkit::{free_port, ChildGuard};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The distribution port the bench node registers (it is looked up, never connected to).
const NODE_PORT: u16 = 24_680;
/// Unmeasured time at the start of each slice, while the load threads start.
const LEAD_IN: Duration = Duration::from_millis(50);

#[derive(Debug, Clone)]
struct Options {
    secs: f64,
    slices: u32,
    warmup: f64,
    concurrency: usize,
    client_threads: usize,
    server_threads: usize,
    only: Option<String>,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        secs: 5.0,
        slices: 10,
        warmup: 1.0,
        concurrency: 64,
        client_threads: 2,
        server_threads: 1,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let bad = |e: &dyn std::fmt::Display| format!("{flag}: {e}");
        match flag.as_str() {
            "--secs" => o.secs = value()?.parse().map_err(|e| bad(&e))?,
            "--slices" => o.slices = value()?.parse().map_err(|e| bad(&e))?,
            "--warmup" => o.warmup = value()?.parse().map_err(|e| bad(&e))?,
            "--concurrency" => o.concurrency = value()?.parse().map_err(|e| bad(&e))?,
            "--client-threads" => o.client_threads = value()?.parse().map_err(|e| bad(&e))?,
            "--server-threads" => o.server_threads = value()?.parse().map_err(|e| bad(&e))?,
            "--only" => match value()?.as_str() {
                v @ ("ours" | "real") => o.only = Some(v.to_owned()),
                v => return Err(format!("--only takes ours or real, not {v}")),
            },
            "-h" | "--help" => return Err("see the options at the top of the source".into()),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.concurrency == 0 || o.client_threads == 0 || o.server_threads == 0 || o.slices == 0 {
        return Err("counts must be at least 1".into());
    }
    if !(o.secs > 0.0 && o.warmup >= 0.0) {
        return Err("--secs must be positive and --warmup not negative".into());
    }
    Ok(o)
}

/// One daemon's results, over one slice or all of them.
#[derive(Debug, Default)]
struct Stats {
    lookups: u64,
    errors: u64,
    elapsed: Duration,
    /// Latencies in µs (sorted once all slices are in).
    latencies: Vec<u32>,
    /// CPU time the daemon used while measured, when known.
    daemon_cpu: Option<Duration>,
    /// CPU time the load generator's threads used while measured, when known.
    load_cpu: Option<Duration>,
    /// Lookups per second of each slice.
    slice_rates: Vec<f64>,
}

impl Stats {
    fn rate(&self) -> f64 {
        self.lookups as f64 / self.elapsed.as_secs_f64()
    }

    fn add(&mut self, slice: Stats) {
        let first = self.slice_rates.is_empty();
        let sum = |a: Option<Duration>, b: Option<Duration>| {
            if first {
                b
            } else {
                a.zip(b).map(|(a, b)| a + b)
            }
        };
        self.daemon_cpu = sum(self.daemon_cpu, slice.daemon_cpu);
        self.load_cpu = sum(self.load_cpu, slice.load_cpu);
        self.slice_rates.push(slice.rate());
        self.lookups += slice.lookups;
        self.errors += slice.errors;
        self.elapsed += slice.elapsed;
        self.latencies.extend(slice.latencies);
    }

    fn percentile(&self, p: f64) -> u32 {
        if self.latencies.is_empty() {
            return 0;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        self.latencies[i]
    }

    /// CPU µs per lookup.
    fn per_lookup(&self, cpu: Option<Duration>) -> String {
        cpu.map_or_else(
            || "?".to_owned(),
            |cpu| {
                format!(
                    "{:.1}",
                    cpu.as_secs_f64() * 1e6 / self.lookups.max(1) as f64
                )
            },
        )
    }

    fn report(&mut self, label: &str) {
        self.latencies.sort_unstable();
        println!(
            "{label:<5} {:>8.0} lookups/s   p50 {:>5} µs   p99 {:>5} µs   max {:>6} µs   \
             CPU per lookup: daemon {} µs, load generator {} µs   ({} lookups, {} errors)",
            self.rate(),
            self.percentile(0.50),
            self.percentile(0.99),
            self.latencies.last().copied().unwrap_or(0),
            self.per_lookup(self.daemon_cpu),
            self.per_lookup(self.load_cpu),
            self.lookups,
            self.errors,
        );
        let slices: Vec<String> = self
            .slice_rates
            .iter()
            .map(|r| format!("{:.1}k", r / 1000.0))
            .collect();
        println!("      lookups/s per slice: {}", slices.join(" "));
    }
}

/// One lookup as `erl` does it: connect, PORT_PLEASE2, read the reply until the daemon closes.
async fn lookup(addr: SocketAddr, request: &[u8], reply: &mut Vec<u8>) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    reply.clear();
    stream.read_to_end(reply).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::from(&reply[..]);
    match protocol::decode_port2_response(&mut buf) {
        Ok(Some(Some(info))) => Ok(info.port),
        other => Err(format!("unexpected reply {other:?}")),
    }
}

/// The daemon to load and how.
struct Target<'a> {
    addr: SocketAddr,
    name: &'a str,
    /// Reads the daemon's CPU time.
    daemon_cpu: &'a dyn Fn() -> Option<Duration>,
}

/// Runs `concurrency` lookup loops against `target` on `client_threads` load threads for
/// [`LEAD_IN`] unmeasured, then `measured`.
fn load(target: &Target<'_>, measured: Duration, o: &Options) -> Stats {
    let mut request = BytesMut::new();
    Request::PortPlease2(target.name.to_owned()).encode(&mut request);
    let request: Arc<[u8]> = request.to_vec().into();
    let addr = target.addr;
    let measure_from = Instant::now() + LEAD_IN;
    let end = measure_from + measured;

    let threads: Vec<_> = (0..o.client_threads)
        .map(|t| {
            // Spread the loops over the threads as evenly as possible.
            let loops = o.concurrency / o.client_threads
                + usize::from(t < o.concurrency % o.client_threads);
            let request = request.clone();
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("load runtime");
                    rt.block_on(async move {
                        // This thread's own CPU time over the measured window.
                        let own_cpu = tokio::spawn(async move {
                            tokio::time::sleep_until(measure_from.into()).await;
                            let before = thread_cpu_time();
                            tokio::time::sleep_until(end.into()).await;
                            thread_cpu_time()
                                .zip(before)
                                .map(|(a, b)| a.saturating_sub(b))
                        });
                        let tasks: Vec<_> = (0..loops)
                            .map(|_| {
                                let request = request.clone();
                                tokio::spawn(async move {
                                    let mut latencies = Vec::with_capacity(1 << 14);
                                    let mut errors = 0u64;
                                    let mut reply = Vec::with_capacity(64);
                                    loop {
                                        let t0 = Instant::now();
                                        if t0 >= end {
                                            break;
                                        }
                                        let result = lookup(addr, &request, &mut reply).await;
                                        let took = t0.elapsed();
                                        if t0 < measure_from {
                                            continue;
                                        }
                                        match result {
                                            Ok(p) if p == NODE_PORT => latencies.push(
                                                u32::try_from(took.as_micros()).unwrap_or(u32::MAX),
                                            ),
                                            Ok(_) | Err(_) => errors += 1,
                                        }
                                    }
                                    (latencies, errors)
                                })
                            })
                            .collect();
                        let mut all = Vec::new();
                        let mut errors = 0;
                        for task in tasks {
                            let (latencies, e) = task.await.expect("lookup task");
                            all.extend(latencies);
                            errors += e;
                        }
                        let cpu = own_cpu.await.expect("cpu task");
                        (all, errors, cpu)
                    })
                })
                .expect("spawn a load thread")
        })
        .collect();

    let mut stats = Stats::default();
    // Meanwhile this thread reads the daemon's CPU time at the edges of the measured window.
    std::thread::sleep(measure_from.saturating_duration_since(Instant::now()));
    let before = (target.daemon_cpu)();
    std::thread::sleep(end.saturating_duration_since(Instant::now()));
    stats.daemon_cpu = (target.daemon_cpu)()
        .zip(before)
        .map(|(a, b)| a.saturating_sub(b));
    stats.load_cpu = Some(Duration::ZERO);
    for thread in threads {
        let (latencies, errors, cpu) = thread.join().expect("load thread");
        stats.load_cpu = stats.load_cpu.zip(cpu).map(|(a, b)| a + b);
        stats.latencies.extend(latencies);
        stats.errors += errors;
    }
    // Lookups that started in the window count, even those that ended just after it.
    stats.lookups = stats.latencies.len() as u64;
    stats.elapsed = measured;
    stats
}

/// USER_HZ, 100 on every Linux this runs on.
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU ticks in a `/proc/.../stat` line.
fn stat_ticks(stat: &str) -> Option<u64> {
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0; utime 11, stime 12.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs_f64(ticks as f64 / TICKS_PER_SEC)
}

/// The calling thread's CPU time (Linux).
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    stat_ticks(&stat).map(ticks_to_duration)
}

/// A process's CPU time (Linux).
fn process_cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat_ticks(&stat).map(ticks_to_duration)
}

/// The CPU time of this process's threads whose name starts with `prefix` (Linux).
fn own_threads_cpu_time(prefix: &str) -> Option<Duration> {
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = entry.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end().starts_with(prefix) {
            total += stat_ticks(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
        }
    }
    Some(ticks_to_duration(total))
}

/// Starts OTP's epmd in the foreground on a free port and waits until it answers.
async fn start_real_epmd() -> (ChildGuard, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut guard = ChildGuard::spawn(
            Command::new("epmd")
                .arg("-port")
                .arg(port.to_string())
                .env("ERL_EPMD_PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            format!("OTP epmd on port {port}"),
        )
        .expect("OTP's epmd (from Erlang/OTP) must be on PATH");
        let client = Client::new("127.0.0.1", port).timeout(Duration::from_secs(1));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if client.names().await.is_ok() {
                return (guard, port);
            }
            if guard.try_wait().ok().flatten().is_some() {
                break; // The port was taken meanwhile: try another.
            }
            assert!(Instant::now() < deadline, "OTP epmd did not answer in 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("OTP epmd did not start on any of 5 free ports");
}

async fn register(port: u16, name: &str) -> Registration {
    Client::new("127.0.0.1", port)
        .register(NodeInfo::new(name, NODE_PORT))
        .await
        .expect("register the bench node")
}

fn main() {
    let o = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("epmd_bench: {e}");
            std::process::exit(2);
        }
    };

    // Our server on a runtime of its own; its worker threads are named to count their CPU.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.server_threads)
        .thread_name("epmd-server")
        .enable_all()
        .build()
        .expect("server runtime");
    let server = server_rt
        .block_on(
            ServerConfig::new()
                .port(0)
                .addresses(vec![Ipv4Addr::LOCALHOST.into()])
                .start(),
        )
        .expect("our epmd starts");
    let (real_guard, real_port) = server_rt.block_on(start_real_epmd());
    let real_pid = real_guard.id();
    let real_name = format!("bench_real_{}", std::process::id());
    let ours_name = format!("bench_ours_{}", std::process::id());
    let registrations = server_rt.block_on(async {
        vec![
            register(real_port, &real_name).await,
            register(server.port(), &ours_name).await,
        ]
    });

    let real_cpu = || process_cpu_time(real_pid);
    // Our daemon's CPU: the server runtime's worker threads.
    let ours_cpu = || own_threads_cpu_time("epmd-server");
    let mut targets: Vec<(&str, Target<'_>)> = Vec::new();
    if o.only.as_deref() != Some("ours") {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, real_port));
        let (name, daemon_cpu) = (real_name.as_str(), &real_cpu as &dyn Fn() -> _);
        targets.push((
            "real",
            Target {
                addr,
                name,
                daemon_cpu,
            },
        ));
    }
    if o.only.as_deref() != Some("real") {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, server.port()));
        let (name, daemon_cpu) = (ours_name.as_str(), &ours_cpu as &dyn Fn() -> _);
        targets.push((
            "ours",
            Target {
                addr,
                name,
                daemon_cpu,
            },
        ));
    }

    println!(
        "epmd_bench: {} concurrent lookup loops (new connection per lookup) on {} load \
         thread(s); {:.1} s warm-up, then {:.1} s measured per daemon in {} alternating slices; \
         our server in-process on {} worker thread(s), OTP epmd as process {real_pid}; {} CPU(s)",
        o.concurrency,
        o.client_threads,
        o.warmup,
        o.secs,
        o.slices,
        o.server_threads,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );

    if o.warmup > 0.0 {
        for (_, target) in &targets {
            load(target, Duration::from_secs_f64(o.warmup), &o);
        }
    }
    let slice = Duration::from_secs_f64(o.secs / f64::from(o.slices));
    let mut results: Vec<Stats> = targets.iter().map(|_| Stats::default()).collect();
    for i in 0..o.slices {
        // Alternate which daemon goes first, too.
        let mut order: Vec<usize> = (0..targets.len()).collect();
        if i % 2 == 1 {
            order.reverse();
        }
        for t in order {
            let stats = load(&targets[t].1, slice, &o);
            results[t].add(stats);
        }
    }
    for ((label, _), stats) in targets.iter().zip(results.iter_mut()) {
        stats.report(label);
    }
    if let [real, ours] = &results[..] {
        println!(
            "ours/real: throughput {:.2}x, daemon CPU per lookup {:.2}x",
            ours.rate() / real.rate(),
            ours.daemon_cpu
                .zip(real.daemon_cpu)
                .map_or(f64::NAN, |(o_cpu, r_cpu)| {
                    (o_cpu.as_secs_f64() / ours.lookups.max(1) as f64)
                        / (r_cpu.as_secs_f64() / real.lookups.max(1) as f64)
                }),
        );
    }

    drop(registrations);
    drop(real_guard);
    drop(server);
    server_rt.shutdown_timeout(Duration::from_secs(1));
}
