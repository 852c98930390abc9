//! Signal interop: links, monitors and exit signals between typed Rust actors and real
//! Erlang/OTP 25 processes (see `node_server::signals` for how Erlang's semantics map onto
//! ractor).
//!
//! Each test starts its own EPMD (this workspace's, in this process, on a port of its own, see
//! [`Epmd`]), its own node and one `erl -sname` node against that EPMD, with
//! `-start_epmd false`. The `erl` node runs `tests/erlang/eval_peer.erl` (one Erlang expression
//! per stdin line, all evaluated by one process, "the tester") with `tests/erlang/sig_peer.erl`
//! (monitors kept by key, DOWN and EXIT waits, victim and linker processes) on the code path.
//!
//! The Rust side uses [`Probe`] actors: they take any term ([`Raw`]) and hand it to a channel
//! the test reads; `panic` makes one panic and `fail` makes its handler return an error. Every
//! wait is bounded, and nothing sleeps to synchronise: a monitor, link or exit signal that
//! Erlang sends is followed by a message from the same process to the same probe, and the test
//! waits for that message (a connection delivers in order, and the node handles control
//! messages in order), so the signal has been handled when it arrives. Where nothing must
//! happen, the Erlang side waits with `receive ... after 500` and the Rust side with a 500 ms
//! timeout on the actor's join handle.
//!
//! Needs Erlang/OTP (`erl`, `erlc`): without it the tests are skipped on a developer machine
//! and fail in CI (`CI=true`), see [`testkit::require_erl`]. Set `RUST_LOG` to see the node's
//! logs.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use node_server::etf::{Atom, Pid, Term};
use node_server::remote::{Raw, RemoteTarget};
use node_server::{client_connect, Node, NodeConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus};
use testkit::{Epmd, EvalPeer};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The cookie every node of these tests shares.
const COOKIE: &str = "sig_interop_cookie";
/// How long any awaited event may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);
/// How soon a DOWN or EXIT must arrive, in milliseconds (Erlang-side waits).
const PROMPT_MS: u64 = 2000;
/// How long a check that nothing happens waits.
const QUIET: Duration = Duration::from_millis(500);
/// How long the Erlang peer may take to answer one line.
const ERL_REPLY: Duration = Duration::from_secs(20);
/// What a probe panics with on `panic`.
const PANIC_TEXT: &str = "probe panics on request";
/// What a probe's handler fails with on `fail`.
const FAIL_TEXT: &str = "probe fails on request";

// ---------------------------------------------------------------------------------------------
// The Rust actors
// ---------------------------------------------------------------------------------------------

/// Takes any term and hands it to a channel; panics on `panic`, fails on `fail`.
struct Probe;

impl Actor for Probe {
    type Msg = Raw;
    type State = mpsc::UnboundedSender<Term>;
    type Arguments = mpsc::UnboundedSender<Term>;

    async fn pre_start(
        &self,
        _me: ActorRef<Raw>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _me: ActorRef<Raw>,
        Raw(msg): Raw,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if msg.is_atom("panic") {
            panic!("{PANIC_TEXT}");
        }
        if msg.is_atom("fail") {
            return Err(FAIL_TEXT.into());
        }
        let _ = tx.send(msg);
        Ok(())
    }
}

/// A running [`Probe`]: its ref, its join handle and what it received.
struct Probed {
    actor: ActorRef<Raw>,
    handle: Option<JoinHandle<()>>,
    rx: mpsc::UnboundedReceiver<Term>,
    label: &'static str,
}

async fn probe(label: &'static str) -> Probed {
    let (tx, rx) = mpsc::unbounded_channel();
    let (actor, handle) = Actor::spawn(None, Probe, tx).await.expect("probe starts");
    Probed {
        actor,
        handle: Some(handle),
        rx,
        label,
    }
}

impl Probed {
    /// The next term the probe received, within [`DEADLINE`].
    async fn next(&mut self, what: &str) -> Term {
        within(&format!("{} receives {what}", self.label), self.rx.recv())
            .await
            .unwrap_or_else(|| panic!("{} stopped while waiting for {what}", self.label))
    }

    /// The next term must be `expected` (Erlang syntax).
    async fn expect(&mut self, expected: &str) {
        let got = self.next(expected).await;
        assert_eq!(got, t(expected), "{} received {got}", self.label);
    }

    /// Waits until the actor has stopped.
    async fn stopped(&mut self, why: &str) -> Duration {
        let started = Instant::now();
        let handle = self
            .handle
            .take()
            .unwrap_or_else(|| panic!("{} was already awaited", self.label));
        within(&format!("{} stops ({why})", self.label), handle)
            .await
            .expect("the probe's task ends cleanly");
        assert_eq!(self.actor.get_status(), ActorStatus::Stopped);
        started.elapsed()
    }

    /// The actor runs, and does not stop within [`QUIET`].
    async fn still_running(&mut self, why: &str) {
        let handle = self
            .handle
            .as_mut()
            .unwrap_or_else(|| panic!("{} was already awaited", self.label));
        assert!(
            tokio::time::timeout(QUIET, handle).await.is_err(),
            "{} stopped ({why})",
            self.label
        );
        assert_eq!(
            self.actor.get_status(),
            ActorStatus::Running,
            "{} ({why})",
            self.label
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A node name (the part before `@`) unique to this test and this test process.
fn unique(tag: &str) -> String {
    format!("{tag}_{}", std::process::id())
}

/// Awaits `fut` for at most [`DEADLINE`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    testkit::within(what, DEADLINE, fut).await
}

/// `eval_peer` and `sig_peer`, compiled once per test process.
fn beam_dirs() -> Vec<PathBuf> {
    testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer", "sig_peer"],
    )
}

/// An `erl -sname` node running `eval_peer` (see [`testkit::EvalPeer`]), driven from async
/// tests.
struct Erl {
    peer: EvalPeer,
    /// Its full node name.
    name: String,
}

impl Erl {
    async fn start(erl: &Path, sname: &str, epmd_port: u16) -> Erl {
        let peer = EvalPeer::start_in_place(erl, sname, COOKIE, epmd_port, &beam_dirs(), ERL_REPLY);
        let name = peer.name().to_owned();
        let mut erl = Erl { peer, name };
        assert_eq!(erl.ok("sig_peer:start()").await, "ok");
        erl
    }

    /// Evaluates `expr` (ASCII, see [`EvalPeer::eval`]), which must succeed; returns the `~0p`
    /// text of its value.
    async fn ok(&mut self, expr: &str) -> String {
        self.peer.ok_in_place(expr)
    }

    /// Evaluates `expr` and parses its value as a term (it must hold no pid, ref, port, fun).
    async fn term(&mut self, expr: &str) -> Term {
        let text = self.ok(expr).await;
        Term::parse(&text).unwrap_or_else(|e| panic!("{expr} gave {text}, not a term: {e}"))
    }

    /// Evaluates `expr`, whose value must be `expected`.
    async fn expect(&mut self, expr: &str, expected: Term) {
        let got = self.term(expr).await;
        assert_eq!(got, expected, "{expr}");
    }

    /// The tester process, registered as `tester`.
    fn tester(&self) -> RemoteTarget {
        RemoteTarget::Name {
            name: Atom::new("tester"),
            node: Atom::new(&self.name),
        }
    }

    /// Hands `pid` to the tester, which keeps it as `key`.
    async fn give_pid(&mut self, node: &Node, key: &str, pid: Pid) {
        node.send(
            &self.tester(),
            Term::tuple(vec![Term::atom("pid"), Term::atom(key), Term::Pid(pid)]),
        );
        assert_eq!(
            self.ok(&format!("sig_peer:await_pid({key}, 5000)")).await,
            "ok",
            "the tester got the pid {key}"
        );
    }
}

/// An atom literal for an Erlang expression.
fn quoted(name: &str) -> String {
    format!("'{name}'")
}

/// `Term::parse`, for expected values.
fn t(text: &str) -> Term {
    Term::parse(text).unwrap_or_else(|e| panic!("bad test term {text}: {e}"))
}

/// What `sig_peer:down/2` and `sig_peer:linker_exit/2` give: `{Obj, Reason}`.
fn down(obj: Term, reason: Term) -> Term {
    Term::tuple(vec![obj, reason])
}

/// A pid the tester keeps as `key`, as `sig_peer` writes it.
fn kept(key: &str) -> Term {
    Term::tuple(vec![Term::atom("pid"), Term::atom(key)])
}

/// `{Name, Node}`.
fn named(name: &str, node: &str) -> Term {
    Term::tuple(vec![Term::atom(name), Term::atom(node)])
}

/// `{panic, <<Text>>}`.
fn panic_reason(text: &str) -> Term {
    Term::tuple(vec![Term::atom("panic"), Term::binary(text)])
}

/// Our node and one `erl` node (with `sig_peer` started), both fresh for the test `tag` and
/// connected, and the EPMD both use (keep it alive as long as they run); `None` when `erl` is
/// missing (outside CI).
async fn setup(tag: &str) -> Option<(Node, Erl, Epmd)> {
    testkit::init_logging();
    let erl = testkit::require_erl()?;
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let node = within(
        "our node starts",
        NodeConfig::new(unique(&format!("rs_sig_{tag}")))
            .cookie(COOKIE)
            .epmd("localhost", epmd_port)
            .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .start(),
    )
    .await
    .expect("our node starts");
    let erl = Erl::start(&erl, &unique(&format!("erl_sig_{tag}")), epmd_port).await;
    within("connecting to erl", client_connect(&node, &erl.name))
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", erl.name));
    Some((node, erl, epmd))
}

/// A probe registered as `name`, whose pid the tester keeps as `key`.
async fn exposed_probe(
    node: &Node,
    erl: &mut Erl,
    label: &'static str,
    name: Option<&str>,
    key: &str,
) -> Probed {
    let p = probe(label).await;
    let pid = match name {
        Some(name) => node.register(name, &p.actor).expect("the probe registers"),
        None => node.pid_of(&p.actor),
    };
    erl.give_pid(node, key, pid).await;
    p
}

// ---------------------------------------------------------------------------------------------
// 1. Erlang monitors Rust actors: DOWN with natural reasons
// ---------------------------------------------------------------------------------------------

/// How a probe ends in [`erlang_monitors_get_down_with_the_actors_reason`].
#[derive(Debug, Clone, Copy)]
enum Ending {
    Stop,
    StopShutdown,
    StopOther,
    Kill,
    Panic,
    HandlerError,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erlang_monitors_get_down_with_the_actors_reason() {
    let Some((node, mut erl, _epmd)) = setup("down").await else {
        return;
    };
    let me = node.name().to_owned();
    let cases = [
        (Ending::Stop, t("normal")),
        (Ending::StopShutdown, t("shutdown")),
        (Ending::StopOther, t("{shutdown, <<\"maintenance\">>}")),
        (Ending::Kill, t("killed")),
        (Ending::Panic, panic_reason(PANIC_TEXT)),
        (Ending::HandlerError, panic_reason(FAIL_TEXT)),
    ];
    for (i, (ending, reason)) in cases.into_iter().enumerate() {
        let name = format!("probe_{i}");
        let (pkey, nkey) = (format!("p{i}"), format!("n{i}"));
        let mut p = exposed_probe(&node, &mut erl, "probe", Some(&name), &pkey).await;
        // Monitors by name and by pid, each followed by a message to the probe.
        assert_eq!(
            erl.ok(&format!(
                "begin sig_peer:monitor({nkey}, {{{name}, {q}}}), \
                 sig_peer:monitor({pkey}, sig_peer:pid({pkey})), \
                 {{{name}, {q}}} ! {{sync, {nkey}}}, sig_peer:pid({pkey}) ! {{sync, {pkey}}}, ok end",
                q = quoted(&me)
            ))
            .await,
            "ok"
        );
        p.expect(&format!("{{sync, {nkey}}}")).await;
        p.expect(&format!("{{sync, {pkey}}}")).await;

        match ending {
            Ending::Stop => p.actor.stop(None),
            Ending::StopShutdown => p.actor.stop(Some("shutdown".into())),
            Ending::StopOther => p.actor.stop(Some("maintenance".into())),
            Ending::Kill => p.actor.kill(),
            Ending::Panic => p.actor.cast(Raw(Term::atom("panic"))).expect("cast"),
            Ending::HandlerError => p.actor.cast(Raw(Term::atom("fail"))).expect("cast"),
        }
        let started = Instant::now();
        erl.expect(
            &format!("sig_peer:down({nkey}, {PROMPT_MS})"),
            down(named(&name, &me), reason.clone()),
        )
        .await;
        erl.expect(
            &format!("sig_peer:down({pkey}, {PROMPT_MS})"),
            down(kept(&pkey), reason),
        )
        .await;
        eprintln!("{ending:?}: both DOWNs in {:?}", started.elapsed());
        p.stopped(&format!("{ending:?}")).await;
    }
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. noproc at once, and demonitor from Erlang
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erlang_monitors_of_missing_processes_and_demonitor() {
    let Some((node, mut erl, _epmd)) = setup("noproc").await else {
        return;
    };
    let me = node.name().to_owned();
    let q = quoted(&me);

    // A name nobody has.
    assert_eq!(
        erl.ok(&format!("sig_peer:monitor(nobody, {{nobody_here, {q}}})"))
            .await,
        "ok"
    );
    erl.expect(
        &format!("sig_peer:down(nobody, {PROMPT_MS})"),
        down(named("nobody_here", &me), t("noproc")),
    )
    .await;

    // A pid whose actor has stopped, and the name it had.
    let mut gone = exposed_probe(&node, &mut erl, "gone", Some("gone"), "gone").await;
    gone.actor.stop(None);
    gone.stopped("stop").await;
    assert_eq!(
        erl.ok(&format!(
            "begin sig_peer:monitor(gone_pid, sig_peer:pid(gone)), \
             sig_peer:monitor(gone_name, {{gone, {q}}}), ok end"
        ))
        .await,
        "ok"
    );
    erl.expect(
        &format!("sig_peer:down(gone_pid, {PROMPT_MS})"),
        down(kept("gone"), t("noproc")),
    )
    .await;
    erl.expect(
        &format!("sig_peer:down(gone_name, {PROMPT_MS})"),
        down(named("gone", &me), t("noproc")),
    )
    .await;

    // Demonitor: two monitors (by pid, by name) removed, one kept as a control.
    let mut p = exposed_probe(&node, &mut erl, "demon", Some("demon"), "d").await;
    assert_eq!(
        erl.ok(&format!(
            "begin sig_peer:monitor(by_pid, sig_peer:pid(d)), \
             sig_peer:monitor(by_name, {{demon, {q}}}), \
             sig_peer:monitor(control, sig_peer:pid(d)), \
             sig_peer:pid(d) ! {{sync, monitored}}, ok end"
        ))
        .await,
        "ok"
    );
    p.expect("{sync, monitored}").await;
    assert_eq!(
        erl.ok(
            "begin true = sig_peer:demonitor(by_pid), true = sig_peer:demonitor(by_name), \
             sig_peer:pid(d) ! {sync, demonitored}, ok end"
        )
        .await,
        "ok"
    );
    p.expect("{sync, demonitored}").await;
    p.actor.stop(Some("shutdown".into()));
    erl.expect(
        &format!("sig_peer:down(control, {PROMPT_MS})"),
        down(kept("d"), t("shutdown")),
    )
    .await;
    erl.expect("sig_peer:no_down(by_pid, 500)", t("none")).await;
    erl.expect("sig_peer:no_down(by_name, 0)", t("none")).await;
    p.stopped("stop").await;
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Rust monitors Erlang processes
// ---------------------------------------------------------------------------------------------

/// The pid that `sig_peer:victim(Key, {sink, RustNode}, _)` sent to the sink.
async fn victim_pid(sink: &mut Probed, key: &str) -> Pid {
    let msg = sink.next(&format!("victim {key}")).await;
    match msg.as_tuple() {
        Some([tag, k, Term::Pid(pid)]) if tag.is_atom("victim") && k.is_atom(key) => pid.clone(),
        _ => panic!("expected {{victim, {key}, Pid}}, got {msg}"),
    }
}

/// A monitor's reason, within [`DEADLINE`], and how long it took.
async fn reason_of(monitor: node_server::signals::RemoteMonitor, what: &str) -> (Term, Duration) {
    let started = Instant::now();
    let reason = within(what, monitor.down()).await;
    (reason, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_monitors_erlang_processes() {
    let Some((node, mut erl, _epmd)) = setup("rsmon").await else {
        return;
    };
    let me = node.name().to_owned();
    let q = quoted(&me);
    let erl_node = Atom::new(&erl.name);
    let mut sink = probe("sink").await;
    node.register("sink", &sink.actor).expect("sink registers");
    let die = |reason: &str| Term::tuple(vec![Term::atom("die"), t(reason)]);

    // By pid: the process exits with boom.
    assert_eq!(
        erl.ok(&format!("sig_peer:victim(v1, {{sink, {q}}}, none)"))
            .await,
        "ok"
    );
    let v1 = RemoteTarget::Pid(victim_pid(&mut sink, "v1").await);
    let m = node.monitor(&v1).await.expect("monitor v1");
    // Sent after the MONITOR_P, from the same pid to the same process: handled after it.
    node.send(&v1, die("boom"));
    let (reason, took) = reason_of(m, "DOWN of v1").await;
    assert_eq!(reason, t("boom"), "v1");
    eprintln!("pid monitor: DOWN boom in {took:?}");

    // By name, with a reason that needs a payload.
    assert_eq!(
        erl.ok(&format!("sig_peer:victim(v2, {{sink, {q}}}, victim_two)"))
            .await,
        "ok"
    );
    let _ = victim_pid(&mut sink, "v2").await;
    let v2 = RemoteTarget::Name {
        name: Atom::new("victim_two"),
        node: erl_node.clone(),
    };
    let m = node.monitor(&v2).await.expect("monitor victim_two");
    let complex = "{boom, [1, 2.5, <<\"bin\">>], #{k => v}}";
    node.send(&v2, die(complex));
    let (reason, took) = reason_of(m, "DOWN of victim_two").await;
    assert_eq!(reason, t(complex), "victim_two");
    eprintln!("name monitor: DOWN in {took:?}");

    // A name nobody has and a pid that has exited: noproc at once.
    let nobody = RemoteTarget::Name {
        name: Atom::new("nobody_here"),
        node: erl_node.clone(),
    };
    for (target, what) in [(&nobody, "a missing name"), (&v1, "a dead pid")] {
        let m = node.monitor(target).await.expect("monitor");
        let (reason, took) = reason_of(m, what).await;
        assert_eq!(reason, t("noproc"), "{what}");
        assert!(took < Duration::from_millis(PROMPT_MS), "{what}: {took:?}");
    }

    // Demonitor: Erlang sees the monitor go.
    assert_eq!(
        erl.ok(&format!("sig_peer:victim(v3, {{sink, {q}}}, none)"))
            .await,
        "ok"
    );
    let v3 = RemoteTarget::Pid(victim_pid(&mut sink, "v3").await);
    let m = node.monitor(&v3).await.expect("monitor v3");
    assert_eq!(
        erl.ok("sig_peer:monitored_by(sig_peer:pid(v3), 1, 5000)")
            .await,
        "ok",
        "our monitor shows in monitored_by"
    );
    node.demonitor(&v3, m);
    assert_eq!(
        erl.ok("sig_peer:monitored_by(sig_peer:pid(v3), 0, 5000)")
            .await,
        "ok",
        "our monitor is gone from monitored_by after demonitor"
    );
    assert_eq!(erl.ok("sig_peer:die(v3, boom, 5000)").await, "ok");

    // Erlang drops the connection: noconnection, for pid and name monitors.
    assert_eq!(
        erl.ok(&format!("sig_peer:victim(v4, {{sink, {q}}}, victim_four)"))
            .await,
        "ok"
    );
    let v4 = RemoteTarget::Pid(victim_pid(&mut sink, "v4").await);
    let v4_name = RemoteTarget::Name {
        name: Atom::new("victim_four"),
        node: erl_node.clone(),
    };
    let by_pid = node.monitor(&v4).await.expect("monitor v4");
    let by_name = node.monitor(&v4_name).await.expect("monitor victim_four");
    assert_eq!(
        erl.ok("sig_peer:monitored_by(sig_peer:pid(v4), 2, 5000)")
            .await,
        "ok"
    );
    assert_eq!(
        erl.ok(&format!("erlang:disconnect_node({q})")).await,
        "true"
    );
    assert_eq!(
        reason_of(by_pid, "v4 after disconnect_node").await.0,
        t("noconnection")
    );
    assert_eq!(
        reason_of(by_name, "victim_four after disconnect_node")
            .await
            .0,
        t("noconnection")
    );

    // We drop the connection: noconnection. (monitor() connects again first.)
    let mut events = node.subscribe();
    let m = node.monitor(&v4).await.expect("monitor v4 again");
    assert_eq!(
        erl.ok("sig_peer:monitored_by(sig_peer:pid(v4), 1, 5000)")
            .await,
        "ok"
    );
    node.disconnect(&erl.name);
    assert_eq!(
        reason_of(m, "v4 after node.disconnect").await.0,
        t("noconnection")
    );
    // The old session is gone before the next monitor connects again.
    within("the Down event", async {
        while !matches!(events.recv().await, Ok(node_server::NodeEvent::Down { .. })) {}
    })
    .await;

    // The Erlang node halts: noconnection.
    let m = node.monitor(&v4).await.expect("monitor v4 again");
    assert_eq!(
        erl.ok("sig_peer:monitored_by(sig_peer:pid(v4), 1, 5000)")
            .await,
        "ok"
    );
    erl.peer.peer_mut().send_line("erlang:halt()");
    assert_eq!(reason_of(m, "v4 after halt").await.0, t("noconnection"));
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Links
// ---------------------------------------------------------------------------------------------

/// The `{linked, Key, Pid}` a `sig_peer:linker` sends to the actor it linked to.
async fn linked(p: &mut Probed, key: &str) -> Pid {
    let msg = p.next(&format!("{{linked, {key}, _}}")).await;
    match msg.as_tuple() {
        Some([tag, k, Term::Pid(pid)]) if tag.is_atom("linked") && k.is_atom(key) => pid.clone(),
        _ => panic!("expected {{linked, {key}, Pid}}, got {msg}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_carry_exit_signals_both_ways() {
    let Some((node, mut erl, _epmd)) = setup("link").await else {
        return;
    };

    // An Erlang process linked to a Rust actor exits with boom: the actor stops with boom.
    let mut a = exposed_probe(&node, &mut erl, "a", None, "a").await;
    assert_eq!(
        erl.ok(
            "begin sig_peer:monitor(ma, sig_peer:pid(a)), sig_peer:pid(a) ! {sync, ma}, \
             sig_peer:linker(l1, sig_peer:pid(a), false) end"
        )
        .await,
        "ok"
    );
    a.expect("{sync, ma}").await;
    let _ = linked(&mut a, "l1").await;
    assert_eq!(erl.ok("sig_peer:die(l1, boom, 5000)").await, "ok");
    let took = a.stopped("linked process exited with boom").await;
    eprintln!("linked actor stopped {took:?} after the Erlang process exited");
    erl.expect(
        &format!("sig_peer:down(ma, {PROMPT_MS})"),
        down(kept("a"), t("boom")),
    )
    .await;

    // The reason passes on to the actor's other links; `kill` over a link is no kill.
    let mut a2 = exposed_probe(&node, &mut erl, "a2", None, "a2").await;
    assert_eq!(
        erl.ok(
            "begin sig_peer:monitor(ma2, sig_peer:pid(a2)), sig_peer:pid(a2) ! {sync, ma2}, \
             sig_peer:linker(l1a, sig_peer:pid(a2), false), \
             sig_peer:linker(l1b, sig_peer:pid(a2), true) end"
        )
        .await,
        "ok"
    );
    a2.expect("{sync, ma2}").await;
    let mut seen = [
        a2.next("{linked, _, _}").await,
        a2.next("{linked, _, _}").await,
    ]
    .map(|m| m.as_tuple().map(|e| e[1].clone()));
    seen.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(seen, [Some(t("l1a")), Some(t("l1b"))]);
    assert_eq!(erl.ok("sig_peer:die(l1a, kill, 5000)").await, "ok");
    a2.stopped("linked process exited with kill").await;
    erl.expect(
        &format!("sig_peer:down(ma2, {PROMPT_MS})"),
        down(kept("a2"), t("kill")),
    )
    .await;
    erl.expect(
        &format!("sig_peer:linker_exit(l1b, {PROMPT_MS})"),
        down(kept("a2"), t("kill")),
    )
    .await;

    // The same with a trapping actor: {'EXIT', ErlPid, boom} arrives, the actor runs on.
    let mut b = exposed_probe(&node, &mut erl, "b", None, "b").await;
    node.trap_exits(&b.actor, true);
    assert_eq!(
        erl.ok("sig_peer:linker(l2, sig_peer:pid(b), false)").await,
        "ok"
    );
    let l2 = linked(&mut b, "l2").await;
    assert_eq!(erl.ok("sig_peer:die(l2, boom, 5000)").await, "ok");
    let exit = b.next("{'EXIT', L2, boom}").await;
    assert_eq!(
        exit,
        Term::tuple(vec![Term::atom("EXIT"), Term::Pid(l2), t("boom")])
    );
    assert_eq!(
        erl.ok("sig_peer:pid(b) ! {sync, trapped}").await,
        "{sync,trapped}"
    );
    b.expect("{sync, trapped}").await;
    b.still_running("it traps exits").await;

    // A Rust actor panics: a linked trapping process gets {'EXIT', RustPid, {panic, _}}, a
    // linked process that does not trap dies with that reason.
    let mut c = exposed_probe(&node, &mut erl, "c", None, "c").await;
    assert_eq!(
        erl.ok("begin sig_peer:linker(l3, sig_peer:pid(c), true), \
             sig_peer:linker(l4, sig_peer:pid(c), false), \
             sig_peer:monitor(ml4, sig_peer:pid(l4)) end")
            .await,
        "ok"
    );
    let mut seen = vec![];
    for _ in 0..2 {
        let msg = c.next("{linked, _, _}").await;
        match msg.as_tuple() {
            Some([tag, Term::Atom(k), Term::Pid(_)]) if tag.is_atom("linked") => {
                seen.push(k.as_str().to_owned())
            }
            _ => panic!("expected {{linked, Key, Pid}}, got {msg}"),
        }
    }
    seen.sort();
    assert_eq!(seen, ["l3", "l4"]);
    c.actor.cast(Raw(Term::atom("panic"))).expect("cast panic");
    erl.expect(
        &format!("sig_peer:linker_exit(l3, {PROMPT_MS})"),
        down(kept("c"), panic_reason(PANIC_TEXT)),
    )
    .await;
    erl.expect(
        &format!("sig_peer:down(ml4, {PROMPT_MS})"),
        down(kept("l4"), panic_reason(PANIC_TEXT)),
    )
    .await;
    c.stopped("panic").await;

    // A normal stop: the trapping process gets {'EXIT', RustPid, normal}, the other lives.
    let mut d = exposed_probe(&node, &mut erl, "d", None, "d").await;
    assert_eq!(
        erl.ok("begin sig_peer:linker(l5, sig_peer:pid(d), true), \
             sig_peer:linker(l6, sig_peer:pid(d), false), \
             sig_peer:monitor(ml6, sig_peer:pid(l6)) end")
            .await,
        "ok"
    );
    let _ = d.next("{linked, _, _}").await;
    let _ = d.next("{linked, _, _}").await;
    d.actor.stop(None);
    erl.expect(
        &format!("sig_peer:linker_exit(l5, {PROMPT_MS})"),
        down(kept("d"), t("normal")),
    )
    .await;
    erl.expect("sig_peer:no_down(ml6, 500)", t("none")).await;
    d.stopped("stop").await;

    // unlink (UNLINK_ID): the Erlang process exits afterwards, the actor runs on.
    let mut e = exposed_probe(&node, &mut erl, "e", None, "e").await;
    assert_eq!(
        erl.ok("sig_peer:linker(l7, sig_peer:pid(e), false)").await,
        "ok"
    );
    let _ = linked(&mut e, "l7").await;
    assert_eq!(erl.ok("sig_peer:pid(l7) ! unlink").await, "unlink");
    e.expect("{unlinked, l7}").await;
    assert_eq!(erl.ok("sig_peer:die(l7, boom, 5000)").await, "ok");
    assert_eq!(
        erl.ok("sig_peer:pid(e) ! {sync, unlinked}").await,
        "{sync,unlinked}"
    );
    e.expect("{sync, unlinked}").await;
    e.still_running("the link was removed before the exit")
        .await;
    // Linked again (a fresh LINK after the UNLINK_ID), an exit stops it.
    assert_eq!(
        erl.ok("sig_peer:linker(l8, sig_peer:pid(e), false)").await,
        "ok"
    );
    let _ = linked(&mut e, "l8").await;
    assert_eq!(erl.ok("sig_peer:die(l8, boom, 5000)").await, "ok");
    e.stopped("relinked process exited with boom").await;

    // Linking to a Rust pid whose actor is gone: noproc over the link.
    let mut f = exposed_probe(&node, &mut erl, "f", None, "f").await;
    f.actor.stop(None);
    f.stopped("stop").await;
    assert_eq!(
        erl.ok("sig_peer:linker(l9, sig_peer:pid(f), true)").await,
        "ok"
    );
    erl.expect(
        &format!("sig_peer:linker_exit(l9, {PROMPT_MS})"),
        down(kept("f"), t("noproc")),
    )
    .await;

    b.actor.stop(None);
    b.stopped("stop").await;
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. exit/2 from Erlang (EXIT2)
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exit2_from_erlang() {
    let Some((node, mut erl, _epmd)) = setup("exit2").await else {
        return;
    };

    // Not trapping: normal is ignored, shutdown stops it.
    let mut f = exposed_probe(&node, &mut erl, "f", None, "f").await;
    assert_eq!(
        erl.ok(
            "begin sig_peer:monitor(mf, sig_peer:pid(f)), exit(sig_peer:pid(f), normal), \
             sig_peer:pid(f) ! {sync, after_normal}, ok end"
        )
        .await,
        "ok"
    );
    f.expect("{sync, after_normal}").await;
    f.still_running("exit(Pid, normal)").await;
    assert_eq!(erl.ok("exit(sig_peer:pid(f), shutdown)").await, "true");
    f.stopped("exit(Pid, shutdown)").await;
    erl.expect(
        &format!("sig_peer:down(mf, {PROMPT_MS})"),
        down(kept("f"), t("shutdown")),
    )
    .await;

    // Not trapping, any other reason: stops with it.
    let mut h = exposed_probe(&node, &mut erl, "h", None, "h").await;
    assert_eq!(
        erl.ok("begin sig_peer:monitor(mh, sig_peer:pid(h)), \
             exit(sig_peer:pid(h), {custom, [1, <<\"two\">>]}), ok end")
            .await,
        "ok"
    );
    h.stopped("exit(Pid, {custom, _})").await;
    erl.expect(
        &format!("sig_peer:down(mh, {PROMPT_MS})"),
        down(kept("h"), t("{custom, [1, <<\"two\">>]}")),
    )
    .await;

    // Not trapping, kill: killed.
    let mut k = exposed_probe(&node, &mut erl, "k", None, "k").await;
    assert_eq!(
        erl.ok("begin sig_peer:monitor(mk, sig_peer:pid(k)), exit(sig_peer:pid(k), kill), ok end")
            .await,
        "ok"
    );
    k.stopped("exit(Pid, kill)").await;
    erl.expect(
        &format!("sig_peer:down(mk, {PROMPT_MS})"),
        down(kept("k"), t("killed")),
    )
    .await;

    // Trapping: shutdown and normal arrive as messages; kill still kills.
    let mut g = exposed_probe(&node, &mut erl, "g", None, "g").await;
    node.trap_exits(&g.actor, true);
    assert_eq!(
        erl.ok(
            "begin G = sig_peer:pid(g), sig_peer:monitor(mg, G), G ! {me, self()}, \
             exit(G, shutdown), exit(G, normal), G ! {sync, trapped}, ok end"
        )
        .await,
        "ok"
    );
    let me = g.next("{me, Tester}").await;
    let tester = match me.as_tuple() {
        Some([tag, Term::Pid(p)]) if tag.is_atom("me") => p.clone(),
        _ => panic!("expected {{me, Pid}}, got {me}"),
    };
    let exit = |reason: &str| {
        Term::tuple(vec![
            Term::atom("EXIT"),
            Term::Pid(tester.clone()),
            Term::atom(reason),
        ])
    };
    assert_eq!(g.next("{'EXIT', _, shutdown}").await, exit("shutdown"));
    assert_eq!(g.next("{'EXIT', _, normal}").await, exit("normal"));
    g.expect("{sync, trapped}").await;
    g.still_running("it traps exits").await;
    assert_eq!(erl.ok("exit(sig_peer:pid(g), kill)").await, "true");
    g.stopped("exit(Pid, kill) while trapping").await;
    erl.expect(
        &format!("sig_peer:down(mg, {PROMPT_MS})"),
        down(kept("g"), t("killed")),
    )
    .await;
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Our node goes: noconnection
// ---------------------------------------------------------------------------------------------

/// The text that monitors `by_pid` and `by_name` of the probe `p` (registered as `steady`),
/// followed by a message to it.
fn monitor_steady(node: &Node) -> String {
    format!(
        "begin sig_peer:monitor(by_pid, sig_peer:pid(p)), \
         sig_peer:monitor(by_name, {{steady, {q}}}), sig_peer:pid(p) ! {{sync, monitored}}, ok end",
        q = quoted(node.name())
    )
}

/// Both monitors of [`monitor_steady`] must go `noconnection`.
async fn expect_noconnection(erl: &mut Erl, me: &str, after: &str) {
    for (key, obj) in [("by_pid", kept("p")), ("by_name", named("steady", me))] {
        let got = erl
            .term(&format!("sig_peer:down({key}, {PROMPT_MS})"))
            .await;
        let connected = erl.ok("nodes(connected)").await;
        assert_eq!(
            got,
            down(obj, t("noconnection")),
            "monitor {key} after {after}; Erlang's connected nodes now: {connected}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erlang_monitors_get_noconnection_when_we_disconnect() {
    let Some((node, mut erl, _epmd)) = setup("noconn").await else {
        return;
    };
    let me = node.name().to_owned();
    let mut p = exposed_probe(&node, &mut erl, "p", Some("steady"), "p").await;

    assert_eq!(erl.ok(&monitor_steady(&node)).await, "ok");
    p.expect("{sync, monitored}").await;
    node.disconnect(&erl.name);
    expect_noconnection(&mut erl, &me, "node.disconnect").await;
    p.still_running("only the connection went").await;

    // Erlang monitors again, which connects again; it works as before.
    assert_eq!(erl.ok(&monitor_steady(&node)).await, "ok");
    p.expect("{sync, monitored}").await;
    p.actor.stop(Some("shutdown".into()));
    erl.expect(
        &format!("sig_peer:down(by_pid, {PROMPT_MS})"),
        down(kept("p"), t("shutdown")),
    )
    .await;
    erl.expect(
        &format!("sig_peer:down(by_name, {PROMPT_MS})"),
        down(named("steady", &me), t("shutdown")),
    )
    .await;
    p.stopped("stop").await;
    node.shutdown().await;
}

/// `Node::shutdown` must close the connections: Erlang's monitors get `noconnection`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erlang_monitors_get_noconnection_when_our_node_shuts_down() {
    let Some((node, mut erl, _epmd)) = setup("shutdown").await else {
        return;
    };
    let me = node.name().to_owned();
    let mut p = exposed_probe(&node, &mut erl, "p", Some("steady"), "p").await;
    assert_eq!(erl.ok(&monitor_steady(&node)).await, "ok");
    p.expect("{sync, monitored}").await;
    node.shutdown().await;
    expect_noconnection(&mut erl, &me, "node.shutdown()").await;
    p.actor.stop(None);
    p.stopped("stop").await;
}

// ---------------------------------------------------------------------------------------------
// 7. Rust actors link to Erlang processes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_actors_link_to_erlang_processes() {
    let Some((node, mut erl, _epmd)) = setup("rslink").await else {
        return;
    };
    let q = quoted(node.name());
    let mut sink = probe("sink").await;
    node.register("sink", &sink.actor).expect("sink registers");
    let die = |reason: &str| Term::tuple(vec![Term::atom("die"), t(reason)]);
    let victim = |key: &str| format!("sig_peer:victim({key}, {{sink, {q}}}, none)");

    // An Erlang process the actor linked to exits with boom: the actor stops.
    let expr = victim("v1");
    assert_eq!(erl.ok(&expr).await, "ok");
    let v1 = victim_pid(&mut sink, "v1").await;
    let mut a = probe("a").await;
    node.link(&a.actor, &v1).await.expect("link a to v1");
    // Sent after the LINK on the same connection: Erlang handles the link first.
    node.send(&RemoteTarget::Pid(v1.clone()), die("boom"));
    a.stopped("its linked Erlang process exited with boom")
        .await;

    // A trapping actor gets the exit signal as a message and keeps running.
    let expr = victim("v2");
    assert_eq!(erl.ok(&expr).await, "ok");
    let v2 = victim_pid(&mut sink, "v2").await;
    let mut b = probe("b").await;
    node.trap_exits(&b.actor, true);
    node.link(&b.actor, &v2).await.expect("link b to v2");
    node.send(&RemoteTarget::Pid(v2.clone()), die("boom"));
    let got = b.next("the trapped exit").await;
    assert_eq!(
        got,
        Term::tuple(vec![Term::atom("EXIT"), Term::Pid(v2), Term::atom("boom")])
    );
    b.still_running("it traps exits").await;

    // The actor stops: the linked Erlang process (not trapping) dies with the actor's reason.
    let expr = victim("v3");
    assert_eq!(erl.ok(&expr).await, "ok");
    let v3 = victim_pid(&mut sink, "v3").await;
    let mut c = probe("c").await;
    node.link(&c.actor, &v3).await.expect("link c to v3");
    let watch = node
        .monitor(&RemoteTarget::Pid(v3.clone()))
        .await
        .expect("monitor v3");
    c.actor.stop(Some("maintenance".into()));
    c.stopped("stopped by the test").await;
    let (reason, _) = reason_of(watch, "v3 dies with the actor").await;
    assert_eq!(reason, t("{shutdown, <<\"maintenance\">>}"));

    // After unlink, the Erlang process's exit leaves the actor running.
    let expr = victim("v4");
    assert_eq!(erl.ok(&expr).await, "ok");
    let v4 = victim_pid(&mut sink, "v4").await;
    let mut d = probe("d").await;
    node.link(&d.actor, &v4).await.expect("link d to v4");
    node.unlink(&d.actor, &v4);
    node.send(&RemoteTarget::Pid(v4), die("boom"));
    d.still_running("it unlinked first").await;

    // Linking to a process that is gone gives the actor a noproc exit signal.
    let mut e = probe("e").await;
    node.link(&e.actor, &v1)
        .await
        .expect("link e to the dead v1");
    e.stopped("noproc from a dead pid").await;
}

// ---------------------------------------------------------------------------------------------
// 8. The Rust node's OS process is killed
// ---------------------------------------------------------------------------------------------

/// A monitor on an actor of a Rust node that runs in its own process (the `echo_node`
/// example, built by `cargo test`) fires `noconnection` when that process is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erlang_monitors_get_noconnection_when_the_rust_process_is_killed() {
    let Some(erl_path) = testkit::require_erl() else {
        return;
    };
    testkit::init_logging();
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let mut exe = std::env::current_exe().expect("test executable path");
    exe.pop();
    if exe.ends_with("deps") {
        exe.pop();
    }
    let exe = exe.join("examples").join("echo_node");
    let sname = unique("rs_sig_proc");
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["--name", &sname, "--cookie", COOKIE])
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .stdout(std::process::Stdio::piped());
    let mut child = testkit::ChildGuard::spawn(&mut cmd, "echo_node")
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
    let stdout = child.child_mut().stdout.take().expect("stdout");
    let ready = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .map(|_| line)
    });
    let line = within("echo_node prints ready", ready)
        .await
        .expect("reader")
        .expect("ready line");
    let rust_node = line
        .trim()
        .strip_prefix("ready ")
        .expect("ready NODE")
        .to_owned();

    let mut erl = Erl::start(&erl_path, &unique("erl_sig_proc"), epmd_port).await;
    assert_eq!(
        erl.ok(&format!(
            "sig_peer:monitor(e, {{echo, {}}})",
            quoted(&rust_node)
        ))
        .await,
        "ok"
    );
    // The monitor is in place once a call through the same connection has come back.
    assert_eq!(
        erl.ok(&format!(
            "gen_server:call({{kv, {}}}, {{get, x}})",
            quoted(&rust_node)
        ))
        .await,
        "not_found"
    );
    child.kill().expect("kill echo_node");
    erl.expect(
        &format!("sig_peer:down(e, {PROMPT_MS})"),
        down(named("echo", &rust_node), t("noconnection")),
    )
    .await;
}

/// `Node::monitor_for` delivers the DOWN into the monitoring actor's mailbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rust_actor_receives_down_in_its_mailbox() {
    let Some((node, mut erl, _epmd)) = setup("rsdown").await else {
        return;
    };
    let q = quoted(node.name());
    let mut sink = probe("sink").await;
    node.register("sink", &sink.actor).expect("sink registers");
    assert_eq!(
        erl.ok(&format!("sig_peer:victim(v1, {{sink, {q}}}, none)"))
            .await,
        "ok"
    );
    let v1 = victim_pid(&mut sink, "v1").await;
    let mut watcher = probe("watcher").await;
    node.monitor_for(&RemoteTarget::Pid(v1.clone()), &watcher.actor, |reason| {
        Raw(Term::tuple(vec![Term::atom("DOWN"), reason]))
    })
    .await
    .expect("monitor v1");
    node.send(
        &RemoteTarget::Pid(v1),
        Term::tuple(vec![Term::atom("die"), t("boom")]),
    );
    watcher.expect("{'DOWN', boom}").await;
}
