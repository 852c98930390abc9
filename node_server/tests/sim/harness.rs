//! Deterministic simulation: several nodes of ours in one process, over an in-memory network,
//! in simulated time, with one seeded scheduler deciding what every link delivers and when.
//!
//! ## Design
//! - **The network is pluggable** (`node_server::network`): a node listens and connects through a
//!   [`node_server::network::Network`]; TCP with EPMD is the default, and [`SimNet`] (in `sim/net`)
//!   is an in-memory one where each direction of a connection is a byte pipe whose bytes stay
//!   *in flight* until the scheduler delivers them. Faults are operations on it: cut a
//!   connection (both ends fail, bytes in flight are lost), partition (cut across, refuse
//!   connects across until healed), stall a pair (connections stay, nothing is delivered: a
//!   tick timeout), and node restarts, which listen again with the next creation.
//! - **Time is tokio's paused clock**: each seed runs on its own current-thread runtime
//!   started paused, so time only moves when every task waits, straight to the next timer.
//!   `net_ticktime`, setup timeouts and `global`'s lockers all run in simulated time, and a
//!   run of many simulated seconds takes milliseconds.
//! - **One scheduler**, the *pump*, a task of the run: at each step it looks at the pipes with
//!   bytes in flight (in a fixed order) and, from the seeded generator, delivers all of one,
//!   a chunk of one, or lets time pass; with nothing in flight it waits for the next write or
//!   a few milliseconds. After each decision it sleeps at least one millisecond of simulated
//!   time, which with a paused clock means "run every task until all wait". Delivery order
//!   across links, delays and chunking are so the seed's; order within a pipe is kept, as TCP
//!   keeps it. Each decision is written to the run's *trace*, with what the test notes.
//! - **The test body** drives the nodes through their public API ([`Node`],
//!   [`node_server::global::Global`], [`node_server::groups::Groups`]) and injects faults through
//!   [`Sim`], drawing its own choices (which node registers first, how long a partition
//!   lasts) from the same generator.
//!
//! ## Determinism
//! A current-thread runtime with a paused clock runs tasks in a fixed order; what else could
//! vary between two runs of a seed is kept out or seeded:
//! - randomness the node draws (handshake challenges, `global`'s back-off, picking a group
//!   member) comes from `node_server::random`, which the simulator seeds for the thread of the run;
//! - the maps whose iteration order decides what is sent (`pg`'s groups, `global`'s
//!   connections and locks) use the crate's fixed hasher rather than std's random one;
//! - the node's `select!`s are `biased;` (as are ractor's), and deadlines of calls in flight
//!   are read from tokio's clock rather than the wall clock;
//! - `ractor::pg` is one registry per process: each simulated node keeps its `pg` scopes
//!   under a namespace of its own (`NodeConfig::pg_namespace`);
//! - nodes run with busy polling off (it reads the wall clock).
//!
//! The trace of a seed is the same on every run: `sim_replay_*` in the tests runs seeds twice
//! and compares the traces.
//!
//! ## Running
//! [`check`] runs a property over seeds `0..n` (`n` is `SIM_SEEDS` when set, else the
//! test's default); `SIM_SEED=s` runs seed `s` alone. A failing seed panics with its seed and
//! the `SIM_SEED=...` that replays it.

mod net;
mod probe;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::ActorCell;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use net::{Pending, SimNet};
use node_server::error::ConnectError;
use node_server::etf::Pid;
use node_server::random::SplitMix64;
use node_server::{Node, NodeConfig};
pub use probe::Probe;

/// Locks `m`, also after a panic in another holder.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The host part of every simulated node's name.
pub const HOST: &str = "sim";

/// The full name of the simulated node `name`: `name@sim`.
pub fn full(name: &str) -> String {
    format!("{name}@{HOST}")
}

/// Distinct `pg` namespaces for the runs of this process.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// The run's record: scheduler decisions and test notes, with the simulated time.
type Trace = Arc<Mutex<Vec<String>>>;

/// One simulated run: its network, nodes, generator and trace. Tests get it from [`check`].
pub struct Sim {
    seed: u64,
    run: u64,
    net: SimNet,
    rng: Arc<Mutex<SplitMix64>>,
    trace: Trace,
    start: Instant,
    nodes: BTreeMap<String, Node>,
    /// Probes by node, stopped when their node stops.
    actors: BTreeMap<String, Vec<ActorCell>>,
    ticktime: Duration,
    pump: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Sim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sim")
            .field("seed", &self.seed)
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// What the pump does next.
enum Decision {
    Deliver(u64, usize, usize),
    Wait(u64),
    Idle,
}

fn decide(rng: &mut SplitMix64, pending: &[Pending]) -> Decision {
    if pending.is_empty() {
        return Decision::Idle;
    }
    let (id, end, len) = pending[rng.below(pending.len() as u64) as usize];
    match rng.below(100) {
        0..60 => Decision::Deliver(id, end, len),
        60..80 => Decision::Deliver(id, end, 1 + rng.below(len as u64) as usize),
        _ => Decision::Wait(1 + rng.below(4)),
    }
}

fn record(trace: &Trace, start: Instant, what: impl std::fmt::Display) {
    let ms = start.elapsed().as_millis();
    lock(trace).push(format!("{ms} {what}"));
}

/// The scheduler: see the module docs.
async fn pump(net: SimNet, rng: Arc<Mutex<SplitMix64>>, trace: Trace, start: Instant) {
    loop {
        let pending = net.pending();
        let decision = decide(&mut lock(&rng), &pending);
        match decision {
            Decision::Deliver(id, end, n) => {
                net.deliver(id, end, n);
                record(&trace, start, format_args!("deliver {id}.{end} {n}"));
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Decision::Wait(ms) => {
                record(&trace, start, format_args!("wait {ms}"));
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            Decision::Idle => {
                let mut registered = false;
                let activity = std::future::poll_fn(|cx| {
                    if registered {
                        std::task::Poll::Ready(())
                    } else {
                        registered = true;
                        net.on_activity(cx.waker());
                        std::task::Poll::Pending
                    }
                });
                tokio::select! {
                    biased;
                    () = activity => {}
                    () = tokio::time::sleep(Duration::from_millis(25)) => {}
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
}

impl Sim {
    fn new(seed: u64, name: &str, trace: Trace) -> Sim {
        // Each property explores its own sequences from the same seed numbers.
        let mixed = name.bytes().fold(seed ^ 0x5eed_5eed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Sim {
            seed,
            run: RUNS.fetch_add(1, Ordering::Relaxed),
            net: SimNet::default(),
            rng: Arc::new(Mutex::new(SplitMix64::new(mixed))),
            trace,
            start: Instant::now(),
            nodes: BTreeMap::new(),
            actors: BTreeMap::new(),
            ticktime: Duration::from_secs(4),
            pump: None,
        }
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The network, for faults this API does not name.
    pub fn net(&self) -> &SimNet {
        &self.net
    }

    /// The `net_ticktime` of nodes started from now on (default 4 s).
    pub fn set_ticktime(&mut self, ticktime: Duration) {
        self.ticktime = ticktime;
    }

    /// The `net_ticktime` nodes start with.
    pub fn ticktime(&self) -> Duration {
        self.ticktime
    }

    /// Simulated time since the run started.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// A number in `0..n` from the run's generator.
    pub fn below(&self, n: u64) -> u64 {
        lock(&self.rng).below(n)
    }

    /// True with probability `percent` in 100, from the run's generator.
    pub fn chance(&self, percent: u64) -> bool {
        lock(&self.rng).chance(percent)
    }

    /// Writes an observation to the trace.
    pub fn note(&self, what: impl std::fmt::Display) {
        record(&self.trace, self.start, format_args!("note {what}"));
    }

    /// Starts (or restarts, after [`Sim::stop`]) the node `name` (`name@sim`).
    pub async fn start(&mut self, name: &str) -> Node {
        let full = full(name);
        let config = NodeConfig::new(full.clone())
            .cookie("sim")
            .network(self.net.endpoint(&full))
            .net_ticktime(self.ticktime)
            .setup_time(Duration::from_secs(2))
            .busy_wait(Duration::ZERO)
            .pg_namespace(format!("sim{}/{full}/", self.run));
        let node = config.start().await.expect("a simulated node starts");
        // Each incarnation has its own pg namespace: old members are gone with it.
        self.note(format_args!("start {name} creation {}", node.creation()));
        self.nodes.insert(name.to_owned(), node.clone());
        node
    }

    /// The running node `name`.
    pub fn node(&self, name: &str) -> Node {
        self.nodes
            .get(name)
            .unwrap_or_else(|| panic!("no running node {name}"))
            .clone()
    }

    /// Stops the node `name` as a crash would: its connections close, then its probes die.
    pub async fn stop(&mut self, name: &str) {
        if let Some(node) = self.nodes.remove(name) {
            self.note(format_args!("stop {name}"));
            node.shutdown().await;
        }
        for cell in self.actors.remove(name).unwrap_or_default() {
            cell.stop(Some("killed".into()));
        }
    }

    /// Restarts the node `name`: a new incarnation with the next creation.
    pub async fn restart(&mut self, name: &str) -> Node {
        self.stop(name).await;
        self.start(name).await
    }

    /// A new [`Probe`] actor on node `name`.
    pub async fn probe(&mut self, name: &str) -> Probe {
        let node = self.node(name);
        let probe = Probe::spawn(&node).await;
        self.actors
            .entry(name.to_owned())
            .or_default()
            .push(probe.actor.get_cell());
        probe
    }

    /// Connects node `a` to node `b` (as a send to `b` would).
    pub async fn connect(&self, a: &str, b: &str) -> Result<(), ConnectError> {
        node_server::client_connect(&self.node(a), &full(b)).await
    }

    /// Connects node `a` to node `b`, which must work.
    pub async fn must_connect(&self, a: &str, b: &str) {
        if let Err(e) = self.connect(a, b).await {
            panic!("{a} could not connect to {b}: {e}");
        }
    }

    /// Whether `a` has a connection to `b`.
    pub fn connected(&self, a: &str, b: &str) -> bool {
        let b = full(b);
        self.nodes
            .get(a)
            .is_some_and(|n| n.connected().iter().any(|(p, _)| *p == b))
    }

    /// Separates `island` from the other nodes until [`Sim::heal`].
    pub fn partition(&self, island: &[&str]) {
        self.note(format_args!("partition {island:?}"));
        let full: Vec<String> = island.iter().map(|n| full(n)).collect();
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        self.net.partition(&refs);
    }

    /// Ends every partition (nodes reconnect when something needs a connection).
    pub fn heal(&self) {
        self.note("heal");
        self.net.heal();
    }

    /// Cuts the connections between `a` and `b`.
    pub fn cut(&self, a: &str, b: &str) {
        let n = self.net.cut_between(&full(a), &full(b));
        self.note(format_args!("cut {a} {b} ({n})"));
    }

    /// Stops (`true`) or restarts delivery between `a` and `b`.
    pub fn stall(&self, a: &str, b: &str, stalled: bool) {
        self.note(format_args!("stall {a} {b} {stalled}"));
        self.net.stall(&full(a), &full(b), stalled);
    }

    /// Lets `ms` milliseconds of simulated time pass.
    pub async fn sleep(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    /// `fut`'s output, which must come within `limit` of simulated time.
    pub async fn within<T>(&self, what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
        match tokio::time::timeout(limit, fut).await {
            Ok(v) => v,
            Err(_) => panic!("{what}: nothing within {limit:?} (simulated)"),
        }
    }

    /// Waits until `check` passes, trying every 20 ms of simulated time for up to `limit`;
    /// panics with its last complaint otherwise.
    pub async fn eventually<F, Fut>(&self, what: &str, limit: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let deadline = Instant::now() + limit;
        loop {
            let outcome = check().await;
            match outcome {
                Ok(()) => return,
                Err(why) if Instant::now() >= deadline => {
                    panic!("{what}: not within {limit:?} (simulated): {why}")
                }
                Err(_) => self.sleep(20).await,
            }
        }
    }

    /// The pids in group `group` of scope `pg` as node `name` sees them, sorted.
    pub async fn members(&self, name: &str, group: &str) -> Vec<Pid> {
        self.node(name).groups().members(group).await
    }
}

/// How many seeds a property runs: `SIM_SEEDS`, else `default`.
pub fn seed_count(default: u64) -> u64 {
    std::env::var("SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The seeds to run: `SIM_SEED` alone when set, else `0..seed_count(default)`.
pub fn seeds(default: u64) -> Vec<u64> {
    match std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(seed) => vec![seed],
        None => (0..seed_count(default)).collect(),
    }
}

/// Runs `body` for seed `seed` of the property `name` and returns the run's trace.
pub fn run_seed<F>(name: &str, seed: u64, body: &F) -> Vec<String>
where
    F: AsyncFn(&mut Sim),
{
    let trace = Trace::default();
    run_traced(name, seed, body, trace.clone());
    let mut steps = Vec::new();
    std::mem::swap(&mut steps, &mut lock(&trace));
    steps
}

/// Runs `body` for seed `seed`, recording into `trace` (kept when the run panics).
fn run_traced<F>(name: &str, seed: u64, body: &F, trace: Trace)
where
    F: AsyncFn(&mut Sim),
{
    // `SIM_LOG=debug` (any `EnvFilter` text) prints the nodes' logs.
    if let Ok(filter) = std::env::var("SIM_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    // One seed at a time in the whole process: the tests of this binary run on parallel
    // threads, and state that is process-wide by nature (ractor's actor ids and its `pg`
    // registry) would let one test's run change another's schedule, so a seed would not
    // replay exactly.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    node_server::random::seed_thread(Some(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let mut sim = Sim::new(seed, name, trace);
        sim.note(format_args!("{name} seed {}", sim.seed()));
        sim.pump = Some(tokio::spawn(pump(
            sim.net.clone(),
            sim.rng.clone(),
            sim.trace.clone(),
            sim.start,
        )));
        body(&mut sim).await;
        if let Some(p) = sim.pump.take() {
            p.abort();
        }
    });
    // Tasks still running (nodes, actors) are dropped with the runtime.
    drop(runtime);
    node_server::random::seed_thread(None);
}

/// Runs the property `name` over [`seeds`]`(default)`; a failing seed panics with its seed
/// and how to replay it.
pub fn check<F>(name: &str, default: u64, body: F)
where
    F: AsyncFn(&mut Sim),
{
    for seed in seeds(default) {
        let trace = Trace::default();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_traced(name, seed, &body, trace.clone())
        }));
        if let Err(panic) = outcome {
            let steps = lock(&trace);
            eprintln!("the last steps of {name} with seed {seed} (ms, decision or note):");
            for step in &steps[steps.len().saturating_sub(40)..] {
                eprintln!("  {step}");
            }
            drop(steps);
            node_server::random::seed_thread(None);
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            panic!(
                "{name} failed with seed {seed}: {why}\n\
                 replay: SIM_SEED={seed} cargo test -p node_server {name}"
            );
        }
    }
}
