//! What a [`node_server::proxy::RemoteActor`] proxy costs, against 100,000 real Erlang
//! processes.
//!
//! ```text
//! cargo run --release --example proxy_bench [-- --proxies N] [--no-parts]
//! cargo run --release --example proxy_bench -- --pg-members N
//! ```
//!
//! With `--pg-members N`: N idle Erlang processes join the `pg` group `bench`, and the bench
//! measures what our node (default settings: remote members kept as pids, no proxies; see
//! `NodeConfig::pg_mirror_remote`) spends per member until it sees all N:
//! `bytes_per_pg_member`, and the size of a `ProcessHandle`.
//!
//! Starts our node (with an embedded EPMD on a free port) and an `erl` peer that spawns N idle
//! processes and hands their pids over in batches. Then:
//! - creates a proxy per pid with `Node::remote_pid::<Raw>`, timing it and measuring the
//!   process RSS (`VmRSS`) before and after: `bytes_per_proxy`;
//! - casts `{ping, I}` through every proxy and waits until the Erlang side counted a `pong`
//!   from each distinct process;
//! - disconnects the peer and checks that every proxy stops, that the session's supervision
//!   tree and the tokio task count shrink back, and how much RSS comes back;
//! - creates the proxies again (reconnecting) to show the cache was emptied (fresh ids), and
//!   that they work again;
//! - measures, each in a fresh child process, what the parts of a ractor actor cost on their
//!   own (an empty actor, a remote-id actor linked to a supervisor, the mailbox channels, a
//!   tokio task), what a ref to a stopped actor keeps alive, and what a proxy that is not an
//!   actor (a shared handle holding target, encoded control and queue sender) would cost, to
//!   tell where a proxy's memory goes.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use node_server::etf::{Atom, Pid, Term};
use node_server::remote::{Raw, RemoteTarget};
use node_server::{Node, NodeConfig, NodeEvent};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, ActorStatus};
use testkit::{free_port, ChildGuard};

const COOKIE: &str = "proxy-bench-cookie";

/// The Erlang peer: `spawner` hands out idle processes (`{spawn, K}` -> K pids) and tells a
/// process's memory (`{memory, Pid}`); each idle process answers `{ping, Tag}` with
/// `{pong, self(), Tag}` to `counter`, which counts pongs and distinct senders (`count` ->
/// `{Pongs, Distinct}`, `reset` -> `ok`). The node halts when its stdin closes.
const PEER_ERL: &str = r#"
-module(proxy_peer).
-export([main/0]).

main() ->
    {ok, _} = pg:start(pg),
    register(counter, spawn(fun() -> counter(0, #{}) end)),
    register(spawner, spawn(fun spawner/0)),
    spawn(fun() -> _ = io:get_line(""), halt() end),
    io:format("ready ~s~n", [node()]).

spawner() ->
    receive
        {'$gen_call', From, {spawn, K}} ->
            gen_server:reply(From, [spawn(fun idle/0) || _ <- lists:seq(1, K)]);
        {'$gen_call', From, {join, Group, K}} ->
            ok = pg:join(Group, [spawn(fun idle/0) || _ <- lists:seq(1, K)]),
            gen_server:reply(From, ok);
        {'$gen_call', From, {memory, Pid}} ->
            gen_server:reply(From, erlang:process_info(Pid, memory));
        _ ->
            ok
    end,
    spawner().

idle() ->
    receive
        {ping, Tag} -> counter ! {pong, self(), Tag};
        _ -> ok
    end,
    idle().

counter(N, Seen) ->
    receive
        {pong, P, _} -> counter(N + 1, Seen#{P => true});
        {'$gen_call', From, count} -> gen_server:reply(From, {N, map_size(Seen)}), counter(N, Seen);
        {'$gen_call', From, reset} -> gen_server:reply(From, ok), counter(0, #{});
        _ -> counter(N, Seen)
    end.
"#;

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

/// This process's resident set, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// RSS once the runtime has run every spawned task's first poll.
async fn settled_rss() -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    rss()
}

fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// The proxies under the node's sessions (each session supervises its proxies).
fn proxies_in_tree(node: &Node) -> usize {
    node.actor()
        .get_children()
        .iter()
        .map(|s| s.get_children().len())
        .sum()
}

fn proxy_number(id: ActorId) -> u64 {
    match id {
        ActorId::Remote { pid, .. } | ActorId::Local(pid) => pid,
    }
}

/// Compiles the peer module into a temporary directory.
fn compile_peer() -> TempDir {
    let dir = std::env::temp_dir().join(format!("proxy-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let dir = TempDir(dir);
    let src = dir.0.join("proxy_peer.erl");
    std::fs::write(&src, PEER_ERL).expect("write proxy_peer.erl");
    let ok = Command::new("erlc")
        .arg("-o")
        .arg(&dir.0)
        .arg(&src)
        .status()
        .expect("erlc runs")
        .success();
    assert!(ok, "erlc failed");
    dir
}

/// Starts the Erlang peer and waits for its `ready NODE` line.
fn start_peer(dir: &TempDir, epmd_port: u16) -> (ChildGuard, String) {
    let mut child = Command::new("erl")
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .args(["-noshell", "-sname"])
        .arg(format!("proxy_peer{}", std::process::id()))
        .args(["-setcookie", COOKIE, "-pa"])
        .arg(&dir.0)
        .args(["-run", "proxy_peer", "main"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("erl runs");
    let out = child.stdout.take().expect("stdout");
    let child = ChildGuard::new(child, "erl");
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("ready line");
    let name = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_default()
        .to_owned();
    assert!(!name.is_empty(), "no ready line: {line:?}");
    (child, name)
}

/// An actor that does nothing, for comparison.
struct Empty;

/// The message type of [`Empty`]; nothing sends it.
#[derive(Debug)]
struct Nothing;

impl ractor::Message for Nothing {}

impl Actor for Empty {
    type Msg = Nothing;
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<Nothing>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// Measures, in this (fresh) process, the RSS that `n` of one component take, less the
/// vector that holds them. Prints `bytes_per_item X`.
async fn measure_component(name: &str, n: usize) {
    use tokio::sync::{mpsc, oneshot};
    let (sup, _) = Actor::spawn(None, Empty, ()).await.expect("supervisor");
    // For "handle_sketch": what a proxy that is not an actor would hold.
    let (sketch_tx, _sketch_rx) = mpsc::unbounded_channel::<()>();
    let shared = std::sync::Arc::new(());
    let mut sketches = std::collections::HashMap::new();
    let mut held: Vec<Box<dyn std::any::Any + Send>> = Vec::with_capacity(n);
    let holder = std::mem::size_of::<Box<dyn std::any::Any + Send>>();
    let before = settled_rss().await;
    let mut boxed = 0;
    for i in 0..n {
        let item: Box<dyn std::any::Any + Send> = match name {
            "actor" => Box::new(Actor::spawn(None, Empty, ()).await.expect("spawn").0),
            "actor_linked" => Box::new(
                Actor::spawn_linked(None, Empty, (), sup.get_cell())
                    .await
                    .expect("spawn")
                    .0,
            ),
            "remote_actor_linked" => Box::new(
                ractor::ActorRuntime::<Empty>::spawn_linked_remote(
                    None,
                    Empty,
                    ActorId::Remote {
                        node_id: 1,
                        pid: i as u64,
                    },
                    (),
                    sup.get_cell(),
                )
                .await
                .expect("spawn")
                .0,
            ),
            "mailbox_channel" => {
                boxed = std::mem::size_of::<(
                    mpsc::UnboundedSender<ractor::message::BoxedMessage>,
                    mpsc::UnboundedReceiver<ractor::message::BoxedMessage>,
                )>();
                Box::new(mpsc::unbounded_channel::<ractor::message::BoxedMessage>())
            }
            "supervision_channel" => {
                boxed = std::mem::size_of::<(
                    mpsc::UnboundedSender<ractor::SupervisionEvent>,
                    mpsc::UnboundedReceiver<ractor::SupervisionEvent>,
                )>();
                Box::new(mpsc::unbounded_channel::<ractor::SupervisionEvent>())
            }
            "oneshot" => {
                boxed = std::mem::size_of::<(oneshot::Sender<()>, oneshot::Receiver<()>)>();
                Box::new(oneshot::channel::<()>())
            }
            "handle_sketch" => {
                let target = RemoteTarget::Pid(Pid {
                    node: Atom::new("proxy_peer12345@vm"),
                    id: i as u32,
                    serial: 0,
                    creation: 1,
                });
                // An encoded SEND control ({2, '', Pid}) is about 40 bytes.
                let sketch = std::sync::Arc::new((
                    target.clone(),
                    bytes::Bytes::from(vec![0u8; 40]),
                    sketch_tx.clone(),
                    shared.clone(),
                ));
                sketches.insert(target, sketch.clone());
                boxed = std::mem::size_of_val(&sketch);
                Box::new(sketch)
            }
            "task" => {
                boxed = std::mem::size_of::<tokio::task::JoinHandle<()>>();
                Box::new(tokio::spawn(std::future::pending::<()>()))
            }
            other => panic!("unknown component {other}"),
        };
        held.push(item);
    }
    if boxed == 0 {
        boxed = std::mem::size_of::<ActorRef<Nothing>>();
    }
    let after = settled_rss().await;
    let per = (after.saturating_sub(before)) as f64 / n as f64 - (holder + boxed) as f64;
    println!("bytes_per_item {per:.0}");
    let _ = std::io::stdout().flush();
    drop(held);
}

/// Spawns `n` empty actors, stops them, keeps (or drops) their refs, spawns `n` more, and
/// prints the RSS per item of the whole: the difference between keeping and dropping is what
/// a ref to a stopped actor pins.
async fn measure_stopped_refs(keep: bool, n: usize) {
    let mut first = Vec::with_capacity(n);
    let mut second = Vec::with_capacity(n);
    let before = settled_rss().await;
    for _ in 0..n {
        first.push(Actor::spawn(None, Empty, ()).await.expect("spawn").0);
    }
    for a in &first {
        a.stop(None);
    }
    while first.iter().any(|a| a.get_status() != ActorStatus::Stopped) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !keep {
        first.clear();
    }
    for _ in 0..n {
        second.push(Actor::spawn(None, Empty, ()).await.expect("spawn").0);
    }
    let after = settled_rss().await;
    let holders = 2 * std::mem::size_of::<ActorRef<Nothing>>();
    let per = (after.saturating_sub(before)) as f64 / n as f64 - holders as f64;
    println!("bytes_per_item {per:.0}");
}

/// Runs [`measure_component`] in a fresh child process, so no freed memory is reused.
fn component_cost(name: &str, n: usize) -> f64 {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .args(["--component", name, "--proxies", &n.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .expect("child runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("bytes_per_item "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

/// `--pg-members N`: what N remote members of a `pg` group cost our node.
async fn pg_members(n: usize) {
    let epmd_port = free_port();
    let node = NodeConfig::new(format!("pg_bench{}", std::process::id()))
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .start()
        .await
        .expect("our node starts");
    let dir = compile_peer();
    let (peer_child, peer) = start_peer(&dir, epmd_port);
    let spawner = RemoteTarget::Name {
        name: Atom::new("spawner"),
        node: Atom::new(&peer),
    };
    node_server::client_connect(&node, &peer)
        .await
        .expect("connects");
    let groups = node.groups();
    println!("node: {}  peer: {peer}  pg members: {n}", node.name());
    let rss0 = settled_rss().await;
    let t = Instant::now();
    let mut joined = 0;
    while joined < n {
        let k = (n - joined).min(1000);
        node.call(
            &spawner,
            Term::tuple(vec![
                Term::atom("join"),
                Term::atom("bench"),
                Term::Int(k as i64),
            ]),
            Duration::from_secs(30),
        )
        .await
        .expect("join call");
        joined += k;
    }
    while groups.members("bench").await.len() < n {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "members never arrived"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let rss1 = settled_rss().await;
    let per_member = (rss1.saturating_sub(rss0)) as f64 / n as f64;
    println!("  members_seen_after_s: {secs:.3}");
    println!("  rss_before_mib: {:.1}", mib(rss0));
    println!("  rss_after_mib: {:.1}", mib(rss1));
    println!(
        "  bytes_per_pg_member: {per_member:.0}  (target < 2048: {})",
        if per_member < 2048.0 {
            "MET"
        } else {
            "NOT MET"
        }
    );
    println!(
        "  proxies_in_supervision_tree: {}  process_handle_bytes: {}",
        proxies_in_tree(&node),
        std::mem::size_of::<node_server::ProcessHandle>()
    );
    node.shutdown().await;
    drop(peer_child);
}

/// Asks the peer's `spawner` for `n` idle processes, in batches of 1000.
async fn spawn_remote(node: &Node, peer: &str, n: usize) -> Vec<Pid> {
    let spawner = RemoteTarget::Name {
        name: Atom::new("spawner"),
        node: Atom::new(peer),
    };
    let mut pids = Vec::with_capacity(n);
    while pids.len() < n {
        let k = (n - pids.len()).min(1000);
        let reply = node
            .call(
                &spawner,
                Term::tuple(vec![Term::atom("spawn"), Term::Int(k as i64)]),
                Duration::from_secs(30),
            )
            .await
            .expect("spawn call");
        match reply {
            Term::List(items) => pids.extend(items.into_iter().filter_map(|t| match t {
                Term::Pid(p) => Some(p),
                _ => None,
            })),
            other => panic!("unexpected spawn reply {other}"),
        }
    }
    pids
}

/// The Erlang process memory of `pid`, as `process_info(Pid, memory)` tells.
async fn erlang_process_memory(node: &Node, peer: &str, pid: &Pid) -> Option<i64> {
    let spawner = RemoteTarget::Name {
        name: Atom::new("spawner"),
        node: Atom::new(peer),
    };
    let reply = node
        .call(
            &spawner,
            Term::tuple(vec![Term::atom("memory"), Term::Pid(pid.clone())]),
            Duration::from_secs(5),
        )
        .await
        .ok()?;
    reply.as_tuple()?.get(1)?.as_i64()
}

/// `(pongs, distinct processes)` the peer's counter has seen.
async fn pongs(node: &Node, counter: &RemoteTarget) -> (i64, i64) {
    let reply = node
        .call(counter, Term::atom("count"), Duration::from_secs(10))
        .await
        .expect("count call");
    match reply.as_tuple() {
        Some([a, b]) => (a.as_i64().unwrap_or(-1), b.as_i64().unwrap_or(-1)),
        _ => (-1, -1),
    }
}

/// Casts `{ping, I}` through every proxy and waits until the peer counted a pong from each
/// distinct process. Returns (cast errors, casts/s, pongs, distinct, seconds to all pongs).
async fn ping_all(
    node: &Node,
    counter: &RemoteTarget,
    proxies: &[ActorRef<Raw>],
) -> (usize, f64, i64, i64, f64) {
    let reset = node
        .call(counter, Term::atom("reset"), Duration::from_secs(10))
        .await
        .expect("reset call");
    assert!(reset.is_atom("ok"));
    let start = Instant::now();
    let mut errors = 0;
    for (i, p) in proxies.iter().enumerate() {
        let msg = Raw(Term::tuple(vec![Term::atom("ping"), Term::Int(i as i64)]));
        if p.cast(msg).is_err() {
            errors += 1;
        }
    }
    let cast_rate = proxies.len() as f64 / start.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (n, distinct) = pongs(node, counter).await;
        if n as usize >= proxies.len() || Instant::now() > deadline {
            return (
                errors,
                cast_rate,
                n,
                distinct,
                start.elapsed().as_secs_f64(),
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Creates a proxy per pid, returning them and the seconds it took.
async fn create_proxies(node: &Node, pids: &[Pid]) -> (Vec<ActorRef<Raw>>, f64) {
    let mut proxies = Vec::with_capacity(pids.len());
    let start = Instant::now();
    for pid in pids {
        proxies.push(
            node.remote_pid::<Raw>(pid.clone())
                .await
                .expect("remote_pid"),
        );
    }
    (proxies, start.elapsed().as_secs_f64())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::main]
async fn main() {
    let n: usize = arg("--proxies")
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    if let Some(component) = arg("--component") {
        match component.as_str() {
            "stopped_kept" => measure_stopped_refs(true, n).await,
            "stopped_dropped" => measure_stopped_refs(false, n).await,
            other => measure_component(other, n).await,
        }
        return;
    }

    if let Some(members) = arg("--pg-members").and_then(|s| s.parse().ok()) {
        return pg_members(members).await;
    }
    let epmd_port = free_port();
    let node = NodeConfig::new(format!("proxy_bench{}", std::process::id()))
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .start()
        .await
        .expect("our node starts");
    let dir = compile_peer();
    let (peer_child, peer) = start_peer(&dir, epmd_port);
    let counter = RemoteTarget::Name {
        name: Atom::new("counter"),
        node: Atom::new(&peer),
    };
    println!("node: {}  peer: {peer}  proxies: {n}", node.name());

    let t = Instant::now();
    let pids = spawn_remote(&node, &peer, n).await;
    assert_eq!(pids.len(), n);
    println!(
        "erlang spawned {n} idle processes and sent their pids in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    if let Some(bytes) = erlang_process_memory(&node, &peer, &pids[0]).await {
        println!("  (an idle Erlang process: {bytes} bytes by process_info(P, memory))");
    }

    // 1. Create.
    let tasks0 = alive_tasks();
    let rss0 = settled_rss().await;
    let (proxies, secs) = create_proxies(&node, &pids).await;
    let rss1 = settled_rss().await;
    let holder = std::mem::size_of::<ActorRef<Raw>>() as f64;
    let per_proxy = (rss1 - rss0) as f64 / n as f64 - holder;
    println!("\ncreate:");
    println!("  rss_before_mib: {:.1}", mib(rss0));
    println!("  rss_after_mib: {:.1}", mib(rss1));
    println!(
        "  bytes_per_proxy: {per_proxy:.0}  (target < 2048: {})",
        if per_proxy < 2048.0 { "MET" } else { "NOT MET" }
    );
    println!(
        "  create_time_s: {secs:.3}  ({:.2} us per proxy)",
        secs * 1e6 / n as f64
    );
    println!("  proxies_in_supervision_tree: {}", proxies_in_tree(&node));
    println!("  tokio_tasks_added: {}", alive_tasks() - tasks0);
    let t = Instant::now();
    let again = node
        .remote_pid::<Raw>(pids[n / 2].clone())
        .await
        .expect("remote_pid");
    println!(
        "  cache_hit_same_actor: {}  ({:.1} us)",
        again.get_id() == proxies[n / 2].get_id(),
        t.elapsed().as_secs_f64() * 1e6
    );
    drop(again);

    // 2. They work.
    let (errors, cast_rate, got, distinct, secs) = ping_all(&node, &counter, &proxies).await;
    println!("\ncast {{ping, I}} through every proxy:");
    println!("  cast_errors: {errors}");
    println!("  casts_per_s: {cast_rate:.0}");
    println!("  pongs_counted_by_erlang: {got}  distinct_processes: {distinct}  (of {n})");
    println!("  all_delivered_after_s: {secs:.3}");
    assert_eq!(distinct as usize, n, "every remote process got its ping");

    // 3. Disconnect: the proxies stop and are forgotten.
    let mut events = node.subscribe();
    let t = Instant::now();
    node.disconnect(&peer);
    let down = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { node: d, reason }) if d == peer => break reason,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break "events closed".into(),
            }
        }
    })
    .await
    .unwrap_or_else(|_| "no down event".into());
    let deadline = Instant::now() + Duration::from_secs(20);
    let stopped = loop {
        let stopped = proxies
            .iter()
            .filter(|p| p.get_status() == ActorStatus::Stopped)
            .count();
        if stopped == n || Instant::now() > deadline {
            break stopped;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let stop_secs = t.elapsed().as_secs_f64();
    let cast_after = proxies
        .iter()
        .take(1000)
        .filter(|p| p.cast(Raw(Term::atom("late"))).is_err())
        .count();
    let max_old = proxies
        .iter()
        .map(|p| proxy_number(p.get_id()))
        .max()
        .unwrap_or(0);
    let rss_stopped = settled_rss().await;
    drop(proxies);
    let rss2 = settled_rss().await;
    println!("\ndisconnect:");
    println!("  down_reason: {down}");
    println!("  proxies_stopped: {stopped} of {n}  (in {stop_secs:.3} s)");
    println!("  casts_refused_after_stop: {cast_after} of 1000");
    println!("  proxies_in_supervision_tree: {}", proxies_in_tree(&node));
    println!(
        "  tokio_tasks_left_over: {}",
        alive_tasks().saturating_sub(tasks0)
    );
    println!(
        "  rss_after_stop_mib: {:.1}  rss_after_dropping_refs_mib: {:.1}  (released to the OS: {:.1} of {:.1} MiB)",
        mib(rss_stopped),
        mib(rss2),
        mib(rss1.saturating_sub(rss2)),
        mib(rss1 - rss0)
    );

    // 4. Again: the cache was emptied, so every proxy is new; freed memory is reused.
    let (proxies, secs) = create_proxies(&node, &pids).await;
    let rss3 = settled_rss().await;
    let min_new = proxies
        .iter()
        .map(|p| proxy_number(p.get_id()))
        .min()
        .unwrap_or(0);
    println!("\ncreate again (reconnects):");
    println!(
        "  all_new_proxies: {}  (lowest new id {min_new} > highest old id {max_old})",
        min_new > max_old
    );
    println!("  proxies_in_supervision_tree: {}", proxies_in_tree(&node));
    println!("  create_time_s: {secs:.3}");
    println!(
        "  rss_mib: {:.1}  (growth over the first peak: {:.1} MiB)",
        mib(rss3),
        mib(rss3) - mib(rss1)
    );
    let (errors, cast_rate, got, distinct, secs) = ping_all(&node, &counter, &proxies).await;
    println!(
        "  cast_errors: {errors}  casts_per_s: {cast_rate:.0}  pongs: {got}  distinct: {distinct}  all_delivered_after_s: {secs:.3}"
    );
    drop(proxies);
    node.shutdown().await;
    drop(peer_child);

    if std::env::args().any(|a| a == "--no-parts") {
        return;
    }
    // 5. Where a proxy's memory goes: each part alone, in a fresh process.
    println!("\nparts, each measured alone ({n} of them in a fresh process, bytes each):");
    let parts = [
        ("actor", "empty ractor actor (Actor::spawn, state ())"),
        ("actor_linked", "empty ractor actor linked to a supervisor"),
        (
            "remote_actor_linked",
            "empty actor, remote id, linked (a proxy without our state)",
        ),
        (
            "mailbox_channel",
            "tokio unbounded mpsc of BoxedMessage (the mailbox)",
        ),
        (
            "supervision_channel",
            "tokio unbounded mpsc of SupervisionEvent",
        ),
        ("oneshot", "tokio oneshot (signal, stop: two per actor)"),
        ("task", "tokio task with a pending() future"),
        (
            "handle_sketch",
            "not an actor: Arc<(target, control Bytes, queue sender, node)> + cache entry",
        ),
    ];
    for (name, what) in parts {
        println!("  {:>6.0}  {what}", component_cost(name, n));
    }
    let kept = component_cost("stopped_kept", n);
    let dropped = component_cost("stopped_dropped", n);
    println!(
        "  {:>6.0}  pinned by a ref to a stopped actor (spawn {n}, stop, keep refs, spawn {n} more: {kept:.0}/item; dropping the refs first: {dropped:.0}/item)",
        kept - dropped
    );
    println!("\nsizes (bytes):");
    println!(
        "  BoxedMessage: {}  SupervisionEvent: {}  tokio mpsc block: 32 slots of these",
        std::mem::size_of::<ractor::message::BoxedMessage>(),
        std::mem::size_of::<ractor::SupervisionEvent>()
    );
    println!(
        "  ProxyState: {}  RemoteTarget: {}  Pid: {}",
        std::mem::size_of::<node_server::proxy::ProxyState>(),
        std::mem::size_of::<RemoteTarget>(),
        std::mem::size_of::<Pid>()
    );
}
