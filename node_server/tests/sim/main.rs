//! Deterministic simulation tests: nodes of ours in one process over an in-memory network, in
//! simulated time, each property over many seeds. See `harness.rs` for the design. Run
//! `cargo test -p node_server sim`; `SIM_SEEDS=N` sets the seeds per property, `SIM_SEED=s`
//! replays one seed.

mod harness;

use std::collections::BTreeSet;
use std::time::Duration;

use harness::{check, full, run_seed, Probe, Sim};
use node_server::etf::{Atom, Pid, Term};
use node_server::remote::{Raw, RemoteTarget};
use node_server::NodeEvent;
use tokio::sync::mpsc;

/// Seeds per property when `SIM_SEEDS` is not set.
const SEEDS: u64 = 200;

/// A property over [`SEEDS`] seeds: a `#[test] fn NAME()` that runs the body with `sim`, a
/// fresh [`Sim`] for each seed, under the property name `NAME`.
macro_rules! sim_test {
    ($(#[$meta:meta])* fn $name:ident($sim:ident) $body:block) => {
        $(#[$meta])*
        #[test]
        fn $name() {
            check(stringify!($name), SEEDS, async |$sim: &mut Sim| $body);
        }
    };
}

/// A generous bound, in simulated time, for anything that should settle.
const SETTLE: Duration = Duration::from_secs(30);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// `{'EXIT', From, Reason}`'s reason when `msg` is that from `from`.
fn exit_from(msg: &Term, from: &Pid) -> Option<Term> {
    match msg.as_tuple()? {
        [tag, Term::Pid(p), reason] if tag.is_atom("EXIT") && p == from => Some(reason.clone()),
        _ => None,
    }
}

/// The next message of `probe`, within `limit` of simulated time.
async fn next(sim: &Sim, probe: &mut Probe, what: &str, limit: Duration) -> Term {
    sim.within(what, limit, probe.next())
        .await
        .unwrap_or_else(|| panic!("{what}: the probe stopped"))
}

/// Expects `{'EXIT', from, reason}` at `probe` next.
async fn expect_exit(sim: &Sim, probe: &mut Probe, from: &Pid, reason: &Term, what: &str) {
    let msg = next(sim, probe, what, SETTLE).await;
    assert_eq!(
        exit_from(&msg, from).as_ref(),
        Some(reason),
        "{what}: got {msg}"
    );
    sim.note(format_args!("{what}: {msg}"));
}

/// Starts `names` and connects every pair.
async fn mesh(sim: &mut Sim, names: &[&str]) {
    for n in names {
        sim.start(n).await;
    }
    for (i, a) in names.iter().enumerate() {
        for b in &names[i + 1..] {
            sim.must_connect(a, b).await;
        }
    }
}

/// Links `pa` (on `a`) with `pb` (on `b`), both trapping exits, and waits until `b` has
/// seen the link (a message sent after it arrived).
async fn linked_pair(sim: &mut Sim, a: &str, b: &str) -> (Probe, Probe) {
    let mut pa = sim.probe(a).await;
    let mut pb = sim.probe(b).await;
    let (na, nb) = (sim.node(a), sim.node(b));
    na.trap_exits(&pa.actor, true);
    nb.trap_exits(&pb.actor, true);
    na.link(&pa.actor, &pb.pid).await.expect("link");
    na.send(&RemoteTarget::Pid(pb.pid.clone()), Term::atom("linked"));
    let got = next(sim, &mut pb, "the message after the link", SETTLE).await;
    assert!(got.is_atom("linked"), "got {got}");
    assert!(pa.try_next().is_none());
    (pa, pb)
}

/// Node `node`'s monitor of `target` (made now) and the reason its `DOWN` brings.
async fn monitor(
    sim: &Sim,
    node: &str,
    target: RemoteTarget,
) -> node_server::signals::RemoteMonitor {
    sim.node(node)
        .monitor(&target)
        .await
        .unwrap_or_else(|e| panic!("{node} monitors {target:?}: {e}"))
}

/// The reason `monitor`'s `DOWN` brings, within [`SETTLE`].
async fn down_reason(sim: &Sim, monitor: node_server::signals::RemoteMonitor) -> Term {
    let reason = sim.within("DOWN", SETTLE, monitor.down()).await;
    sim.note(format_args!("DOWN {reason}"));
    reason
}

/// The pid of a probe of node `node` that has stopped.
async fn dead_pid(sim: &mut Sim, node: &str) -> Pid {
    let mut p = sim.probe(node).await;
    p.stop("normal").await;
    p.pid.clone()
}

// ---------------------------------------------------------------------------------------------
// Links and monitors across nodes
// ---------------------------------------------------------------------------------------------

sim_test! {
    fn sim_link_partition_gives_noconnection_on_both_sides(sim) {
        mesh(sim, &["a", "b"]).await;
        let (mut pa, mut pb) = linked_pair(sim, "a", "b").await;
        sim.sleep(sim.below(500)).await;
        sim.partition(&["a"]);
        let noconn = Term::atom("noconnection");
        expect_exit(sim, &mut pa, &pb.pid, &noconn, "a's end").await;
        expect_exit(sim, &mut pb, &pa.pid, &noconn, "b's end").await;
        assert!(
            !pa.is_stopped() && !pb.is_stopped(),
            "trapping probes live on"
        );
    }
}

sim_test! {
    fn sim_link_partition_kills_a_non_trapping_actor(sim) {
        mesh(sim, &["a", "b"]).await;
        let (pa, mut pb) = linked_pair(sim, "a", "b").await;
        sim.node("a").trap_exits(&pa.actor, false);
        sim.sleep(sim.below(300)).await;
        sim.cut("a", "b");
        let mut pa = pa;
        sim.within("a's probe dies of noconnection", SETTLE, pa.stopped())
            .await;
        let noconn = Term::atom("noconnection");
        expect_exit(sim, &mut pb, &pa.pid, &noconn, "b's end").await;
    }
}

sim_test! {
    fn sim_monitor_partition_gives_noconnection_down(sim) {
        mesh(sim, &["a", "b"]).await;
        let pb = sim.probe("b").await;
        sim.node("b").register("target", &pb.actor).expect("register");
        let by_pid = monitor(sim, "a", RemoteTarget::Pid(pb.pid.clone())).await;
        let name = RemoteTarget::Name {
            name: Atom::new("target"),
            node: Atom::new(full("b")),
        };
        let by_name = monitor(sim, "a", name).await;
        sim.sleep(sim.below(400)).await;
        sim.partition(&["b"]);
        for (what, m) in [("by pid", by_pid), ("by name", by_name)] {
            let reason = down_reason(sim, m).await;
            assert!(reason.is_atom("noconnection"), "{what}: {reason}");
        }
        assert!(!pb.is_stopped());
    }
}

sim_test! {
    fn sim_monitor_dead_pid_gives_noproc(sim) {
        mesh(sim, &["a", "b"]).await;
        let dead = dead_pid(sim, "b").await;
        sim.sleep(sim.below(100)).await;
        let m = monitor(sim, "a", RemoteTarget::Pid(dead)).await;
        let reason = down_reason(sim, m).await;
        assert!(reason.is_atom("noproc"), "{reason}");
    }
}

sim_test! {
    fn sim_monitor_unregistered_name_gives_noproc(sim) {
        sim.start("a").await;
        sim.start("b").await;
        // Not connected yet half of the time: the monitor connects first.
        if sim.chance(50) {
            sim.must_connect("a", "b").await;
        }
        let nobody = RemoteTarget::Name {
            name: Atom::new("nobody_here"),
            node: Atom::new(full("b")),
        };
        let m = monitor(sim, "a", nobody).await;
        let reason = down_reason(sim, m).await;
        assert!(reason.is_atom("noproc"), "{reason}");
    }
}

sim_test! {
    fn sim_link_to_dead_pid_gives_noproc_exit(sim) {
        mesh(sim, &["a", "b"]).await;
        let dead = dead_pid(sim, "b").await;
        let mut pa = sim.probe("a").await;
        let na = sim.node("a");
        na.trap_exits(&pa.actor, true);
        na.link(&pa.actor, &dead).await.expect("link");
        expect_exit(sim, &mut pa, &dead, &Term::atom("noproc"), "link").await;
    }
}

/// The exit reason a probe stopped with `reason` gives its links.
fn stop_reason(reason: &str) -> Term {
    node_server::signals::exit_reason_for_stop(Some(reason))
}

/// A linked pair across nodes `a` and `b`; the end on `dies_on` stops with a reason, and the
/// other end (trapping) gets `{'EXIT', Pid, Reason}` with that reason.
async fn exit_crosses(sim: &mut Sim, dies_on: &str) {
    mesh(sim, &["a", "b"]).await;
    let (pa, pb) = linked_pair(sim, "a", "b").await;
    let (mut dying, mut other) = if dies_on == "a" { (pa, pb) } else { (pb, pa) };
    sim.sleep(sim.below(200)).await;
    dying.stop("boom").await;
    let reason = stop_reason("boom");
    expect_exit(
        sim,
        &mut other,
        &dying.pid,
        &reason,
        "the other end hears the exit",
    )
    .await;
}

sim_test! {
    fn sim_exit_propagates_from_remote_to_local(sim) {
        exit_crosses(sim, "b").await;
    }
}

sim_test! {
    fn sim_exit_propagates_from_local_to_remote(sim) {
        exit_crosses(sim, "a").await;
    }
}

sim_test! {
    fn sim_exit_kills_the_non_trapping_end_either_way(sim) {
        mesh(sim, &["a", "b"]).await;
        let (pa, pb) = linked_pair(sim, "a", "b").await;
        // Which end dies first is the seed's; the other end does not trap.
        let (mut dying, mut other, other_node) = if sim.chance(50) {
            (pa, pb, "b")
        } else {
            (pb, pa, "a")
        };
        sim.node(other_node).trap_exits(&other.actor, false);
        sim.sleep(sim.below(200)).await;
        dying.stop("boom").await;
        sim.within("the linked end dies too", SETTLE, other.stopped())
            .await;
        assert!(dying.is_stopped() && other.is_stopped());
    }
}

sim_test! {
    fn sim_monitor_down_carries_the_exit_reason(sim) {
        mesh(sim, &["a", "b"]).await;
        let mut pb = sim.probe("b").await;
        let m = monitor(sim, "a", RemoteTarget::Pid(pb.pid.clone())).await;
        // The monitor is set at b once a message sent after it arrived (one connection
        // keeps order); before that, b may see the process gone first: `noproc`.
        sim.node("a")
            .send(&RemoteTarget::Pid(pb.pid.clone()), Term::atom("after"));
        next(sim, &mut pb, "the message after the monitor", SETTLE).await;
        sim.sleep(sim.below(300)).await;
        pb.stop("bye").await;
        assert_eq!(down_reason(sim, m).await, stop_reason("bye"));
    }
}

// ---------------------------------------------------------------------------------------------
// pg
// ---------------------------------------------------------------------------------------------

/// Waits until every node in `names` sees exactly `expected` in group `g`, dialling again
/// any pair that is not connected, as an application that needs the mesh would (`global`'s
/// prevent-overlapping-partitions may drop a node that just came back, when another node's
/// report that it lost its previous incarnation comes late).
async fn pg_converged(sim: &Sim, names: &[&str], g: &str, expected: &BTreeSet<Pid>) {
    sim.eventually("pg membership converges", SETTLE, || async {
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                if !sim.connected(a, b) {
                    let _ = sim.connect(a, b).await;
                }
            }
        }
        for n in names {
            let got: BTreeSet<Pid> = sim.members(n, g).await.into_iter().collect();
            if got != *expected {
                return Err(format!("{n} sees {got:?}, expected {expected:?}"));
            }
        }
        Ok(())
    })
    .await;
    sim.note(format_args!(
        "pg {g}: {} members everywhere",
        expected.len()
    ));
}

/// A new probe of node `n` in group `g` of scope `pg`.
async fn member(sim: &mut Sim, n: &str) -> Probe {
    let p = sim.probe(n).await;
    sim.node(n).groups().join("g", &p.actor);
    p
}

/// One new member of group `g` on each node of `names`, with its node.
async fn one_member_each<'n>(sim: &mut Sim, names: &[&'n str]) -> Vec<(&'n str, Probe)> {
    let mut members = Vec::new();
    for n in names {
        members.push((*n, member(sim, n).await));
    }
    members
}

sim_test! {
    fn sim_pg_converges_after_partition_heals(sim) {
        let names = ["a", "b", "c"];
        mesh(sim, &names).await;
        let mut live = one_member_each(sim, &names).await;
        sim.sleep(sim.below(300)).await;
        sim.partition(&["a"]);
        // Changes on both sides while apart: joins, a leave and a stop.
        for n in names {
            if sim.chance(70) {
                live.push((n, member(sim, n).await));
            }
            sim.sleep(sim.below(200)).await;
        }
        let i = sim.below(live.len() as u64) as usize;
        let (n, mut p) = live.remove(i);
        if sim.chance(50) {
            sim.node(n).groups().leave("g", &p.actor);
        } else {
            p.stop("normal").await;
        }
        sim.sleep(sim.below(1000)).await;
        sim.heal();
        sim.must_connect("a", "b").await;
        sim.must_connect("c", "a").await;
        let expected = live.iter().map(|(_, p)| p.pid.clone()).collect();
        pg_converged(sim, &names, "g", &expected).await;
    }
}

sim_test! {
    fn sim_pg_restart_drops_old_pids_and_adds_new_ones(sim) {
        let names = ["a", "b", "c"];
        mesh(sim, &names).await;
        let mut live = one_member_each(sim, &names).await;
        let expected = live.iter().map(|(_, p)| p.pid.clone()).collect();
        pg_converged(sim, &names, "g", &expected).await;
        let old_creation = sim.node("b").creation();
        sim.sleep(sim.below(300)).await;
        sim.restart("b").await;
        assert_ne!(sim.node("b").creation(), old_creation);
        live.retain(|(n, _)| *n != "b");
        live.push(("b", member(sim, "b").await));
        sim.must_connect("b", "a").await;
        sim.must_connect("c", "b").await;
        let expected: BTreeSet<Pid> = live.iter().map(|(_, p)| p.pid.clone()).collect();
        assert!(expected
            .iter()
            .all(|p| p.node.as_str() != full("b") || p.creation != old_creation));
        pg_converged(sim, &names, "g", &expected).await;
    }
}

sim_test! {
    fn sim_pg_converges_across_random_cuts(sim) {
        let names = ["a", "b", "c"];
        mesh(sim, &names).await;
        let mut live = Vec::new();
        for round in 0..4 {
            let n = names[sim.below(3) as usize];
            live.push(member(sim, n).await);
            if sim.chance(50) {
                let a = names[round % 3];
                let b = names[(round + 1) % 3];
                sim.cut(a, b);
            }
            sim.sleep(sim.below(400)).await;
        }
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                sim.must_connect(a, b).await;
            }
        }
        let expected = live.iter().map(|p| p.pid.clone()).collect();
        pg_converged(sim, &names, "g", &expected).await;
    }
}

// ---------------------------------------------------------------------------------------------
// global
// ---------------------------------------------------------------------------------------------

/// Waits until every node of `names` is in sync with every other.
async fn global_synced(sim: &Sim, names: &[&str]) {
    sim.eventually("global in sync", SETTLE, || async {
        for n in names {
            let known = sim.node(n).global().known_nodes().await;
            for m in names.iter().filter(|m| *m != n) {
                if !known.contains(&full(m)) {
                    return Err(format!("{n} knows {known:?}, not {m}"));
                }
            }
        }
        Ok(())
    })
    .await;
}

/// Waits until every node of `names` sees `name` registered as `pid` (`None`: unregistered).
async fn global_agrees(sim: &Sim, names: &[&str], name: &str, pid: Option<&Pid>) {
    sim.eventually("global names agree", SETTLE, || async {
        for n in names {
            let got = sim.node(n).global().whereis_name(name).await;
            if got.as_ref() != pid {
                return Err(format!("{n} has {name} as {got:?}, expected {pid:?}"));
            }
        }
        Ok(())
    })
    .await;
}

sim_test! {
    fn sim_global_concurrent_registers_leave_one_owner(sim) {
        let names = ["a", "b", "c"];
        mesh(sim, &names).await;
        global_synced(sim, &names).await;
        let mut probes = Vec::new();
        for n in names {
            probes.push(sim.probe(n).await);
        }
        let delays: Vec<u64> = names.iter().map(|_| sim.below(30)).collect();
        let attempts = names.iter().zip(&probes).zip(&delays).map(|((n, p), d)| {
            let node = sim.node(n);
            let pid = p.pid.clone();
            let d = *d;
            async move {
                tokio::time::sleep(Duration::from_millis(d)).await;
                node.global().register(Term::atom("leader"), pid).await
            }
        });
        let results = futures_join_all(attempts.collect()).await;
        let winners: Vec<&Pid> = results
            .iter()
            .zip(&probes)
            .filter(|(r, _)| r.is_ok())
            .map(|(_, p)| &p.pid)
            .collect();
        assert_eq!(winners.len(), 1, "registrations: {results:?}");
        sim.note(format_args!("winner {:?}", winners[0]));
        global_agrees(sim, &names, "leader", Some(winners[0])).await;
    }
}

/// Runs every future to completion, concurrently, keeping the order of their outputs.
async fn futures_join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let mut futs: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("done")).collect()
}

sim_test! {
    fn sim_global_clash_after_partition_heals_leaves_one(sim) {
        let names = ["a", "b", "c"];
        mesh(sim, &names).await;
        global_synced(sim, &names).await;
        sim.partition(&["a"]);
        sim.sleep(sim.below(200)).await;
        let pa = sim.probe("a").await;
        let pb = sim.probe("b").await;
        let (ga, gb) = (sim.node("a").global(), sim.node("b").global());
        let ra = ga.register(Term::atom("x"), pa.pid.clone());
        let rb = gb.register(Term::atom("x"), pb.pid.clone());
        let (ra, rb) = tokio::join!(ra, rb);
        let both = [ra, rb];
        assert!(
            both.iter().all(Result::is_ok),
            "each side registers: {both:?}"
        );
        sim.sleep(sim.below(500)).await;
        sim.heal();
        sim.must_connect("a", "b").await;
        sim.must_connect("a", "c").await;
        global_synced(sim, &names).await;
        sim.eventually("one owner everywhere", SETTLE, || async {
            let mut seen = BTreeSet::new();
            for n in names {
                match sim.node(n).global().whereis_name("x").await {
                    Some(p) => {
                        seen.insert(p);
                    }
                    None => return Err(format!("{n} lost the name")),
                }
            }
            if seen.len() == 1 {
                Ok(())
            } else {
                Err(format!("owners {seen:?}"))
            }
        })
        .await;
        let owner = sim
            .node("c")
            .global()
            .whereis_name("x")
            .await
            .expect("owner");
        // OTP's default method keeps one and kills the other.
        let loser = if owner == pa.pid { &pb } else { &pa };
        assert!(owner == pa.pid || owner == pb.pid);
        sim.eventually("the loser is killed", SETTLE, || async {
            if loser.is_stopped() {
                Ok(())
            } else {
                Err("alive".into())
            }
        })
        .await;
        sim.note(format_args!("owner {owner:?}"));
    }
}

sim_test! {
    fn sim_global_unregister_propagates(sim) {
        let names = ["a", "b", "c"];
        mesh(sim, &names).await;
        global_synced(sim, &names).await;
        let owner = names[sim.below(3) as usize];
        let p = sim.probe(owner).await;
        sim.node(owner)
            .global()
            .register(Term::atom("svc"), p.pid.clone())
            .await
            .expect("register");
        global_agrees(sim, &names, "svc", Some(&p.pid)).await;
        let by = names[sim.below(3) as usize];
        sim.node(by)
            .global()
            .unregister(Term::atom("svc"))
            .await
            .expect("unregister");
        global_agrees(sim, &names, "svc", None).await;
        assert!(!p.is_stopped());
    }
}

sim_test! {
    fn sim_global_name_goes_with_its_process_or_node(sim) {
        let names = ["a", "b", "c"];
        mesh(sim, &names).await;
        global_synced(sim, &names).await;
        let mut p = sim.probe("b").await;
        sim.node("b")
            .global()
            .register(Term::atom("svc"), p.pid.clone())
            .await
            .expect("register");
        global_agrees(sim, &names, "svc", Some(&p.pid)).await;
        sim.sleep(sim.below(300)).await;
        if sim.chance(50) {
            p.stop("normal").await;
            global_agrees(sim, &names, "svc", None).await;
        } else {
            sim.restart("b").await;
            global_agrees(sim, &["a", "c"], "svc", None).await;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

/// Waits until each pair of `names` has exactly one connection, seen from both sides.
async fn one_connection_per_pair(sim: &Sim, names: &[&str]) {
    let pairs = names.len() * (names.len() - 1) / 2;
    sim.eventually("one connection per pair", SETTLE, || async {
        for a in names {
            for b in names.iter().filter(|b| *b != a) {
                if !sim.connected(a, b) {
                    return Err(format!("{a} is not connected to {b}"));
                }
            }
        }
        let open = sim.net().open_connections();
        if open == pairs {
            Ok(())
        } else {
            Err(format!("{open} connections open for {pairs} pairs"))
        }
    })
    .await;
}

sim_test! {
    fn sim_simultaneous_connect_ends_with_one_connection(sim) {
        sim.start("a").await;
        sim.start("b").await;
        let skew = sim.below(5);
        let (na, nb) = (sim.node("a"), sim.node("b"));
        let ab = async { node_server::client_connect(&na, &full("b")).await };
        let ba = async {
            tokio::time::sleep(Duration::from_millis(skew)).await;
            node_server::client_connect(&nb, &full("a")).await
        };
        let (r1, r2) = tokio::join!(ab, ba);
        assert!(r1.is_ok() && r2.is_ok(), "{r1:?} {r2:?}");
        one_connection_per_pair(sim, &["a", "b"]).await;
        // Both sides agree for good: no more connections come and go.
        let mut ea = na.subscribe();
        sim.sleep(2000).await;
        assert!(ea.try_recv().is_err(), "no up/down after settling");
        assert_eq!(sim.net().open_connections(), 1);
    }
}

sim_test! {
    fn sim_simultaneous_connects_in_a_mesh_end_with_one_per_pair(sim) {
        let names = ["a", "b", "c", "d"];
        for n in names {
            sim.start(n).await;
        }
        let mut attempts = Vec::new();
        for a in names {
            for b in names.iter().filter(|b| **b != a) {
                if sim.chance(60) {
                    let node = sim.node(a);
                    let d = sim.below(10);
                    let to = full(b);
                    attempts.push(Box::pin(async move {
                        tokio::time::sleep(Duration::from_millis(d)).await;
                        node_server::client_connect(&node, &to).await
                    }));
                }
            }
        }
        futures_join_all(attempts).await;
        // Any pair nobody dialled gets connected now (global may have done some).
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                sim.must_connect(a, b).await;
            }
        }
        one_connection_per_pair(sim, &names).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Ordering
// ---------------------------------------------------------------------------------------------

sim_test! {
    fn sim_messages_between_a_pair_arrive_in_send_order(sim) {
        mesh(sim, &["a", "b"]).await;
        let mut pb = sim.probe("b").await;
        let to = RemoteTarget::Pid(pb.pid.clone());
        let na = sim.node("a");
        let n = 50 + sim.below(50) as i64;
        for i in 0..n {
            na.send(&to, Term::Int(i));
            if sim.chance(20) {
                sim.sleep(sim.below(20)).await;
            }
        }
        for i in 0..n {
            let got = next(sim, &mut pb, "the next message", SETTLE).await;
            assert_eq!(got, Term::Int(i), "message {i} of {n}");
        }
    }
}

sim_test! {
    fn sim_messages_keep_order_across_cuts_and_reconnects(sim) {
        mesh(sim, &["a", "b"]).await;
        let mut pb = sim.probe("b").await;
        let to = RemoteTarget::Pid(pb.pid.clone());
        let na = sim.node("a");
        let n = 60i64;
        for i in 0..n {
            if !sim.connected("a", "b") {
                let _ = sim.connect("a", "b").await;
            }
            na.send(&to, Term::Int(i));
            if sim.chance(5) {
                sim.cut("a", "b");
            }
            if sim.chance(20) {
                sim.sleep(sim.below(20)).await;
            }
        }
        sim.sleep(2000).await;
        let mut got = Vec::new();
        while let Some(t) = pb.try_next() {
            got.push(t.as_i64().expect("an integer"));
        }
        // What arrives is in order without duplicates: some may be lost with a cut.
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
        assert!(
            got.last() == Some(&(n - 1)) || !sim.connected("a", "b"),
            "{got:?}"
        );
        sim.note(format_args!("{} of {n} arrived", got.len()));
    }
}

sim_test! {
    fn sim_two_senders_each_keep_their_order(sim) {
        mesh(sim, &["a", "b", "c"]).await;
        let mut pc = sim.probe("c").await;
        let to = RemoteTarget::Pid(pc.pid.clone());
        let (na, nb) = (sim.node("a"), sim.node("b"));
        let n = 40i64;
        for i in 0..n {
            if sim.chance(50) {
                na.send(&to, Term::tuple(vec![Term::atom("a"), Term::Int(i)]));
                nb.send(&to, Term::tuple(vec![Term::atom("b"), Term::Int(i)]));
            } else {
                nb.send(&to, Term::tuple(vec![Term::atom("b"), Term::Int(i)]));
                na.send(&to, Term::tuple(vec![Term::atom("a"), Term::Int(i)]));
            }
            if sim.chance(20) {
                sim.sleep(sim.below(10)).await;
            }
        }
        let (mut from_a, mut from_b) = (0, 0);
        for _ in 0..2 * n {
            let got = next(sim, &mut pc, "the next message", SETTLE).await;
            let [who, i] = got.as_tuple().expect("a pair") else {
                panic!("{got}")
            };
            let counter = if who.is_atom("a") {
                &mut from_a
            } else {
                &mut from_b
            };
            assert_eq!(i.as_i64(), Some(*counter), "from {who}");
            *counter += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Ticks and restarts
// ---------------------------------------------------------------------------------------------

/// The reason of the next `Down` of `node` in `events`.
async fn next_down(
    sim: &Sim,
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    node: &str,
    limit: Duration,
) -> String {
    sim.within("a node down", limit, async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { node: n, reason }) if n == node => return reason,
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
}

sim_test! {
    fn sim_tick_timeout_takes_the_link_down_on_both_sides(sim) {
        sim.set_ticktime(secs(1 + sim.below(4)));
        mesh(sim, &["a", "b"]).await;
        let (mut ea, mut eb) = (sim.node("a").subscribe(), sim.node("b").subscribe());
        sim.sleep(sim.below(2000)).await;
        sim.stall("a", "b", true);
        let stalled_at = sim.now();
        let tick = sim.ticktime();
        // Down after between 3/4 and 5/4 of net_ticktime of silence, as OTP.
        let ra = next_down(sim, &mut ea, &full("b"), tick * 2).await;
        let rb = next_down(sim, &mut eb, &full("a"), tick * 2).await;
        assert_eq!(ra, "net_tick_timeout");
        assert_eq!(rb, "net_tick_timeout");
        let took = sim.now() - stalled_at;
        assert!(
            took >= tick * 3 / 4 && took <= tick * 3 / 2,
            "{took:?} for {tick:?}"
        );
        assert!(!sim.connected("a", "b") && !sim.connected("b", "a"));
    }
}

sim_test! {
    fn sim_idle_link_stays_up_on_ticks(sim) {
        sim.set_ticktime(secs(1 + sim.below(3)));
        mesh(sim, &["a", "b"]).await;
        let mut ea = sim.node("a").subscribe();
        let tick = sim.ticktime();
        sim.sleep((tick * 5).as_millis() as u64).await;
        assert!(ea.try_recv().is_err(), "no node down while idle");
        assert!(sim.connected("a", "b") && sim.connected("b", "a"));
    }
}

sim_test! {
    fn sim_restart_gives_a_new_creation_and_old_pids_are_noproc(sim) {
        mesh(sim, &["a", "b"]).await;
        let pb = sim.probe("b").await;
        let old = pb.pid.clone();
        let mut ea = sim.node("a").subscribe();
        sim.sleep(sim.below(300)).await;
        sim.restart("b").await;
        let reason = next_down(sim, &mut ea, &full("b"), SETTLE).await;
        sim.note(format_args!("down: {reason}"));
        assert_ne!(sim.node("b").creation(), old.creation);
        // The monitor connects to the new incarnation, which has no such process.
        let m = monitor(sim, "a", RemoteTarget::Pid(old.clone())).await;
        let reason = down_reason(sim, m).await;
        assert!(reason.is_atom("noproc"), "{reason}");
        assert!(sim.connected("a", "b"));
    }
}

// ---------------------------------------------------------------------------------------------
// Proxies
// ---------------------------------------------------------------------------------------------

/// Node `a`'s proxy of `pb`, linked to a stop watcher whose reports come on the receiver,
/// after a message through it reached `pb` (so `b` holds the proxy's monitor).
async fn watched_proxy(
    sim: &Sim,
    pb: &mut Probe,
) -> (
    ractor::ActorRef<Raw>,
    ractor::ActorRef<()>,
    mpsc::UnboundedReceiver<Option<String>>,
) {
    let proxy = sim
        .node("a")
        .remote_pid::<Raw>(pb.pid.clone())
        .await
        .expect("a proxy");
    let (watcher, stops) = testkit::stop_watcher().await;
    proxy.get_cell().link(watcher.get_cell());
    proxy.cast(Raw(Term::atom("hello"))).expect("cast");
    let got = next(sim, pb, "a message through the proxy", SETTLE).await;
    assert!(got.is_atom("hello"), "got {got}");
    (proxy, watcher, stops)
}

sim_test! {
    fn sim_proxy_stops_with_its_process_and_keeps_the_connection(sim) {
        mesh(sim, &["a", "b"]).await;
        let mut pb = sim.probe("b").await;
        let (proxy, watcher, mut stops) = watched_proxy(sim, &mut pb).await;
        sim.sleep(sim.below(300)).await;
        pb.stop("bye").await;
        let reason = sim.within("the proxy stops", SETTLE, stops.recv()).await;
        assert_eq!(reason, Some(Some(stop_reason("bye").to_string())));
        sim.note(format_args!("proxy stopped: {reason:?}"));
        assert!(
            proxy.cast(Raw(Term::atom("late"))).is_err(),
            "a stopped proxy refuses messages"
        );
        // Asked again: a new proxy, which finds the process gone.
        let again = sim
            .node("a")
            .remote_pid::<Raw>(pb.pid.clone())
            .await
            .expect("a new proxy");
        assert_ne!(again.get_id(), proxy.get_id());
        sim.within("the new proxy stops", SETTLE, again.get_cell().wait(None))
            .await
            .expect("wait");
        assert!(sim.connected("a", "b"), "the connection stays up");
        watcher.stop(None);
    }
}

sim_test! {
    fn sim_proxy_goes_with_its_connection(sim) {
        mesh(sim, &["a", "b"]).await;
        let mut pb = sim.probe("b").await;
        let (proxy, watcher, _stops) = watched_proxy(sim, &mut pb).await;
        sim.sleep(sim.below(300)).await;
        sim.partition(&["a"]);
        sim.within("the proxy stops", SETTLE, proxy.get_cell().wait(None))
            .await
            .expect("wait");
        sim.heal();
        sim.must_connect("a", "b").await;
        // The process lives on: a new proxy reaches it.
        let again = sim
            .node("a")
            .remote_pid::<Raw>(pb.pid.clone())
            .await
            .expect("a new proxy");
        again.cast(Raw(Term::atom("again"))).expect("cast");
        let got = next(sim, &mut pb, "a message through the new proxy", SETTLE).await;
        assert!(got.is_atom("again"), "got {got}");
        watcher.stop(None);
    }
}

// ---------------------------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------------------------

/// A run that touches most of the node: links, pg, global, a partition and its healing.
async fn busy_scenario(sim: &mut Sim) {
    let names = ["a", "b", "c"];
    mesh(sim, &names).await;
    let (mut pa, _pb) = linked_pair(sim, "a", "b").await;
    let _members = one_member_each(sim, &names).await;
    global_synced(sim, &names).await;
    let pc = sim.probe("c").await;
    let r = sim
        .node("c")
        .global()
        .register(Term::atom("r"), pc.pid.clone())
        .await;
    sim.note(format_args!("register: {r:?}"));
    sim.sleep(sim.below(300)).await;
    sim.partition(&["b"]);
    let msg = next(sim, &mut pa, "noconnection", SETTLE).await;
    sim.note(format_args!("a got {msg}"));
    sim.sleep(sim.below(1000)).await;
    sim.heal();
    sim.must_connect("b", "a").await;
    sim.must_connect("b", "c").await;
    sim.sleep(3000).await;
    for n in names {
        let members = sim.members(n, "g").await.len();
        let known = sim.node(n).global().known_nodes().await;
        sim.note(format_args!("{n}: {members} members, knows {known:?}"));
    }
}

#[test]
fn sim_replay_a_seed_gives_the_same_trace() {
    for seed in harness::seeds(SEEDS / 2) {
        let first = run_seed("sim_replay", seed, &busy_scenario);
        let second = run_seed("sim_replay", seed, &busy_scenario);
        assert!(first.len() > 100, "a real run: {} steps", first.len());
        if first != second {
            let at = first
                .iter()
                .zip(&second)
                .position(|(x, y)| x != y)
                .unwrap_or(first.len().min(second.len()));
            panic!(
                "seed {seed} replayed differently from step {at}: {:?} vs {:?}\n\
                 replay: SIM_SEED={seed} cargo test -p node_server sim_replay",
                first.get(at),
                second.get(at)
            );
        }
    }
    // And different seeds make different runs.
    let a = run_seed("sim_replay", 1, &busy_scenario);
    let b = run_seed("sim_replay", 2, &busy_scenario);
    assert_ne!(a, b);
}

// ---------------------------------------------------------------------------------------------
// Flow control (node_server::send_queue)
// ---------------------------------------------------------------------------------------------

/// Bytes of each flood message's binary: with the sim's 256 KiB window and the 1 MiB busy
/// limit, about 160 of them fill everything on the way.
const FLOOD_BYTES: usize = 8 << 10;

/// `{I, <<FLOOD_BYTES bytes>>}`.
fn flood_msg(i: i64) -> Term {
    Term::tuple(vec![Term::Int(i), Term::binary(vec![0u8; FLOOD_BYTES])])
}

/// Starts a task sending `n` flood messages through `handle`; the count sent so far is in
/// the returned counter, and the task's result is the first error, if any.
fn producer(
    handle: node_server::ProcessHandle,
    n: i64,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicI64>,
    tokio::task::JoinHandle<Result<(), node_server::SendError>>,
) {
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let counter = sent.clone();
    let task = tokio::spawn(async move {
        for i in 0..n {
            handle.send_term(flood_msg(i)).await?;
            counter.store(i + 1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    });
    (sent, task)
}

/// Nodes `a` and `b` connected, a probe on `b`, `a`'s handle for it, and the link between
/// them stalled.
async fn stalled_pair(sim: &mut Sim) -> (Probe, node_server::Node, node_server::ProcessHandle) {
    mesh(sim, &["a", "b"]).await;
    let pb = sim.probe("b").await;
    let na = sim.node("a");
    let handle = na
        .process(&RemoteTarget::Pid(pb.pid.clone()))
        .await
        .expect("a handle");
    sim.stall("a", "b", true);
    (pb, na, handle)
}

sim_test! {
    fn sim_flow_a_stalled_link_makes_senders_wait_then_all_arrive(sim) {
        use std::sync::atomic::Ordering;
        let (mut pb, na, handle) = stalled_pair(sim).await;
        let n = 400;
        let (sent, task) = producer(handle.clone(), n);
        sim.sleep(200 + sim.below(300)).await;
        let stuck_at = sent.load(Ordering::SeqCst);
        sim.note(format_args!("the producer waits after {stuck_at} of {n}"));
        assert!(stuck_at < n, "the producer waits while the link is stalled");
        assert!(handle.is_busy());
        let stats = na.connection_stats(&full("b")).expect("connected");
        assert!(stats.busy >= 1, "{stats:?}");
        assert!(
            stats.queued_bytes <= (1 << 20) + 2 * FLOOD_BYTES as u64,
            "the queue stays at the busy limit: {stats:?}"
        );
        assert!(
            matches!(handle.try_send_term(Term::atom("x")), Err(node_server::SendError::Busy { .. })),
            "try_send is refused while busy"
        );
        sim.sleep(sim.below(200)).await;
        assert_eq!(sent.load(Ordering::SeqCst), stuck_at, "still waiting");
        sim.stall("a", "b", false);
        for i in 0..n {
            let got = next(sim, &mut pb, "the next flood message", SETTLE).await;
            let [Term::Int(seq), _] = got.as_tuple().expect("a pair") else {
                panic!("{got}")
            };
            assert_eq!(*seq, i, "in order, none missing");
        }
        let done = sim.within("the producer ends", SETTLE, task).await;
        assert!(matches!(done, Ok(Ok(()))), "{done:?}");
        assert!(!handle.is_busy());
    }
}

sim_test! {
    fn sim_flow_a_partition_while_busy_ends_the_wait_with_an_error(sim) {
        use std::sync::atomic::Ordering;
        let (mut pb, na, handle) = stalled_pair(sim).await;
        let (sent, task) = producer(handle.clone(), 1000);
        sim.sleep(100 + sim.below(300)).await;
        assert!(handle.is_busy(), "busy after {}", sent.load(Ordering::SeqCst));
        sim.partition(&["a"]);
        let done = sim.within("the waiting sender learns", SETTLE, task).await;
        assert!(
            matches!(done, Ok(Err(node_server::SendError::NotConnected { .. }))),
            "{done:?}"
        );
        sim.note(format_args!("{} sent before the partition", sent.load(Ordering::SeqCst)));
        assert!(na.connection_stats(&full("b")).is_none(), "the connection is gone");
        sim.stall("a", "b", false);
        sim.heal();
        // What arrived before the partition, then the same handle works again on a new
        // connection.
        while pb.try_next().is_some() {}
        sim.must_connect("a", "b").await;
        handle.send_term(Term::atom("after")).await.expect("sent");
        loop {
            let got = next(sim, &mut pb, "the message after healing", SETTLE).await;
            if got.is_atom("after") {
                break;
            }
        }
    }
}
