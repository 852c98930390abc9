//! Tests of wasm actors: the counter guest against the native counter's behaviour, and each
//! bad input (a module that does not load, a guest that traps, loops, grows its memory without
//! end or answers garbage) ending only its own actor. No sockets: the node runs on a network
//! that never connects.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, SupervisionEvent};
use tokio::sync::mpsc;

use super::host::Host;
use super::sandbox::Sandbox;
use super::*;
use crate::dist::control::ProcessRef;
use crate::error::{ConnectError, NodeError};
use crate::message::ReplyTo;
use crate::network::{BoxFuture, BoxedTransport, Listener, Listening, NetContext, Network};
use crate::placement::{Placement, SpawnOpts};
use crate::remote::Raw;
use crate::NodeConfig;

const COUNTER_WAT: &str = include_str!("../../../examples/guests/counter.wat");
const ETF_WAT: &str = include_str!("../../../examples/guests/etf.wat");
const COUNTER_WASM: &[u8] = include_bytes!("../../../examples/guests/counter.wasm");

fn t(s: &str) -> Term {
    Term::parse(s).unwrap()
}

/// `examples/build_guest.rs`'s expansion of `;; @include etf.wat`.
fn build_counter() -> Vec<u8> {
    let mut source = String::new();
    for line in COUNTER_WAT.lines() {
        if line.trim() == ";; @include etf.wat" {
            source.push_str(ETF_WAT);
        } else {
            source.push_str(line);
        }
        source.push('\n');
    }
    wat::parse_str(&source).unwrap()
}

#[test]
fn the_committed_counter_wasm_is_built_from_its_source() {
    assert!(
        build_counter() == COUNTER_WASM,
        "examples/guests/counter.wasm is stale: cargo run --example build_guest -- \
         examples/guests/counter.wat"
    );
}

// ---- the sandbox alone, with a world that records what the guest does ----

#[derive(Default, Clone)]
struct Recorder {
    sent: Arc<Mutex<Vec<(Term, Term)>>>,
    timers: Arc<Mutex<Vec<(u64, Term)>>>,
    logs: Arc<Mutex<Vec<(i32, String)>>>,
}

impl Host for Recorder {
    fn self_pid(&self) -> Term {
        t("'me@host'")
    }
    fn node_name(&self) -> &str {
        "me@host"
    }
    fn send(&self, dest: &Term, msg: Term) -> Result<(), String> {
        self.sent.lock().unwrap().push((dest.clone(), msg));
        Ok(())
    }
    fn send_after(&self, ms: u64, msg: Term) -> Result<(), String> {
        self.timers.lock().unwrap().push((ms, msg));
        Ok(())
    }
    fn log(&self, level: i32, text: &str) {
        self.logs.lock().unwrap().push((level, text.to_owned()));
    }
}

/// The text of a `{wasm_badarg, Function, Text}` reason for `function`.
fn badarg_text(reason: &Term, function: &str) -> String {
    match reason.as_tuple() {
        Some([tag, f, Term::Binary(text)]) if tag.is_atom("wasm_badarg") && f.is_atom(function) => {
            String::from_utf8_lossy(text).into_owned()
        }
        _ => panic!("not a badarg of {function}: {reason}"),
    }
}

fn load(bytes: &[u8], limits: WasmLimits) -> Result<Arc<WasmModule>, WasmError> {
    WasmModules::default().load(bytes, limits)
}

fn sandbox(bytes: &[u8], limits: WasmLimits) -> (Sandbox, Recorder) {
    let rec = Recorder::default();
    let module = load(bytes, limits).unwrap();
    (Sandbox::new(&module, Box::new(rec.clone())).unwrap(), rec)
}

fn a_pid() -> Term {
    Term::Pid(crate::etf::Pid {
        node: crate::etf::Atom::new("other@host"),
        id: 42,
        serial: 0,
        creation: 7,
    })
}

#[test]
fn the_counter_guest_counts_as_the_native_counter() {
    let (mut sb, rec) = sandbox(COUNTER_WASM, WasmLimits::default());
    sb.init(&t("[5]")).unwrap();
    assert_eq!(sb.handle_call(&t("get")).unwrap(), Some(Term::Int(5)));
    sb.handle(&t("{add, 2}")).unwrap();
    sb.handle(&t("{add, -10}")).unwrap();
    sb.handle(&t("{add, 300}")).unwrap();
    assert_eq!(sb.handle_call(&t("get")).unwrap(), Some(Term::Int(297)));
    let from = a_pid();
    sb.handle(&Term::tuple(vec![Term::atom("get"), from.clone()]))
        .unwrap();
    assert_eq!(
        rec.sent.lock().unwrap().as_slice(),
        &[(from, t("{count, 297}"))]
    );
    // Large integers both ways, and saturation at the i64 bounds as the native saturating_add.
    sb.handle(&t("{add, 100000000000}")).unwrap();
    assert_eq!(
        sb.handle_call(&t("get")).unwrap(),
        Some(Term::Int(100_000_000_297))
    );
    sb.handle(&Term::tuple(vec![Term::atom("add"), Term::Int(i64::MAX)]))
        .unwrap();
    assert_eq!(
        sb.handle_call(&t("get")).unwrap(),
        Some(Term::Int(i64::MAX))
    );
    sb.handle(&Term::tuple(vec![Term::atom("add"), Term::Int(i64::MIN)]))
        .unwrap();
    sb.handle(&Term::tuple(vec![Term::atom("add"), Term::Int(i64::MIN)]))
        .unwrap();
    assert_eq!(
        sb.handle_call(&t("get")).unwrap(),
        Some(Term::Int(i64::MIN))
    );
    // What it does not understand changes nothing and gets no reply.
    for other in [
        "{add, x}",
        "{add, 1, 2}",
        "{get, notapid}",
        "hello",
        "[1,2]",
        "{add, 100000000000000000000}",
        "<<1,2,3>>",
    ] {
        sb.handle(&t(other)).unwrap();
    }
    assert_eq!(sb.handle_call(&t("put")).unwrap(), None);
    assert_eq!(sb.handle_call(&t("{get, 1}")).unwrap(), None);
    assert_eq!(
        sb.handle_call(&t("get")).unwrap(),
        Some(Term::Int(i64::MIN))
    );
    assert_eq!(rec.sent.lock().unwrap().len(), 1);
    // crash: exits with reason crashed.
    assert_eq!(sb.handle(&t("crash")), Err(t("crashed")));
}

#[test]
fn the_counter_guest_refuses_arguments_that_are_not_one_integer() {
    for args in ["[]", "[x]", "[<<1>>]"] {
        let (mut sb, _) = sandbox(COUNTER_WASM, WasmLimits::default());
        assert_eq!(sb.init(&t(args)), Err(t("badarg")), "{args}");
    }
    let (mut sb, _) = sandbox(COUNTER_WASM, WasmLimits::default());
    sb.init(&t("[-70000]")).unwrap();
    assert_eq!(sb.handle_call(&t("get")).unwrap(), Some(Term::Int(-70000)));
}

/// A guest with `handle` of `body`, other fields `extra`, and every host import.
fn guest(handle: &str, extra: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (import "erl" "send" (func $send (param i32 i32 i32 i32) (result i32)))
  (import "erl" "reply" (func $reply (param i32 i32)))
  (import "erl" "self_pid" (func $self_pid (param i32 i32) (result i32)))
  (import "erl" "node_name" (func $node_name (param i32 i32) (result i32)))
  (import "erl" "log" (func $log (param i32 i32 i32)))
  (import "erl" "send_after" (func $send_after (param i64 i32 i32) (result i32)))
  (import "erl" "exit" (func $exit (param i32 i32)))
  (memory (export "memory") 1)
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "handle") (param $p i32) (param $n i32) {handle})
  {extra})"#
    ))
    .unwrap()
}

#[test]
fn host_functions_give_identity_send_timers_and_logs() {
    let echo = guest(
        // self_pid to 100, node_name to 200, then: send the message to self_pid, log the
        // node name, send the message to self after 25 ms.
        r#"(local $pl i32) (local $nl i32)
           (local.set $pl (call $self_pid (i32.const 100) (i32.const 100)))
           (local.set $nl (call $node_name (i32.const 200) (i32.const 100)))
           (drop (call $send (i32.const 100) (local.get $pl) (local.get $p) (local.get $n)))
           (call $log (i32.const 2) (i32.const 200) (local.get $nl))
           (drop (call $send_after (i64.const 25) (local.get $p) (local.get $n)))
           ;; a buffer too small: only the length comes back
           (if (i32.ne (call $self_pid (i32.const 0) (i32.const 1)) (local.get $pl))
             (then unreachable))"#,
        "",
    );
    let (mut sb, rec) = sandbox(&echo, WasmLimits::default());
    sb.handle(&t("{hello, [1, 2]}")).unwrap();
    assert_eq!(
        rec.sent.lock().unwrap().as_slice(),
        &[(t("'me@host'"), t("{hello, [1, 2]}"))]
    );
    assert_eq!(
        rec.timers.lock().unwrap().as_slice(),
        &[(25, t("{hello, [1, 2]}"))]
    );
    assert_eq!(
        rec.logs.lock().unwrap().as_slice(),
        &[(2, "me@host".to_owned())]
    );
}

// ---- modules that do not load ----

#[test]
fn bad_modules_are_clear_errors() {
    let limits = WasmLimits::default();
    let truncated = load(&COUNTER_WASM[..COUNTER_WASM.len() / 2], limits).unwrap_err();
    assert!(matches!(truncated, WasmError::Invalid(_)), "{truncated}");
    let garbage = load(b"\0asm but not really", limits).unwrap_err();
    assert!(matches!(garbage, WasmError::Invalid(_)), "{garbage}");
    assert!(matches!(load(b"", limits), Err(WasmError::Invalid(_))));

    let small = limits.with_max_module_bytes(1000);
    assert_eq!(
        load(COUNTER_WASM, small).unwrap_err(),
        WasmError::TooLarge {
            size: COUNTER_WASM.len(),
            limit: 1000
        }
    );

    let no_alloc = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "handle") (param i32 i32)))"#,
    )
    .unwrap();
    let e = load(&no_alloc, limits).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the module does not export alloc (a function (i32) -> i32)"
    );

    let no_memory = wat::parse_str(
        r#"(module (func (export "alloc") (param i32) (result i32) (i32.const 0))
                   (func (export "handle") (param i32 i32)))"#,
    )
    .unwrap();
    assert!(matches!(
        load(&no_memory, limits),
        Err(WasmError::MissingExport { name: "memory", .. })
    ));

    let wrong_type = guest("", "(func (export \"init\") (param i64))");
    let e = load(&wrong_type, limits).unwrap_err();
    assert!(
        matches!(e, WasmError::BadExport { name: "init", .. }),
        "{e}"
    );

    let foreign = wat::parse_str(
        r#"(module (import "env" "abort" (func))
           (memory (export "memory") 1)
           (func (export "alloc") (param i32) (result i32) (i32.const 0))
           (func (export "handle") (param i32 i32)))"#,
    )
    .unwrap();
    let e = load(&foreign, limits).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the module imports env.abort (a function [] -> []): imports come from module erl only"
    );
    let wrong_sig = wat::parse_str(
        r#"(module (import "erl" "send" (func (param i32)))
           (memory (export "memory") 1)
           (func (export "alloc") (param i32) (result i32) (i32.const 0))
           (func (export "handle") (param i32 i32)))"#,
    )
    .unwrap();
    assert!(matches!(
        load(&wrong_sig, limits),
        Err(WasmError::BadImport { .. })
    ));

    let big_memory = wat::parse_str(
        r#"(module (memory (export "memory") 300)
           (func (export "alloc") (param i32) (result i32) (i32.const 0))
           (func (export "handle") (param i32 i32)))"#,
    )
    .unwrap();
    assert_eq!(
        load(&big_memory, limits).unwrap_err(),
        WasmError::MemoryTooLarge {
            pages: 300,
            limit: 256
        }
    );
}

#[test]
fn loading_the_same_bytes_again_changes_nothing() {
    let modules = WasmModules::default();
    let a = modules.load(COUNTER_WASM, WasmLimits::default()).unwrap();
    let b = modules
        .load(COUNTER_WASM, WasmLimits::default().with_fuel_per_message(5))
        .unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(a.hash(), ModuleHash::of(COUNTER_WASM));
    assert_eq!(modules.list(), vec![a.hash()]);
    let other = ModuleHash::of(b"nothing");
    assert_eq!(
        modules.get(&other).unwrap_err().to_string(),
        format!("no module {other} is loaded")
    );
}

// ---- guests that misbehave end with a reason ----

#[test]
fn misbehaving_guests_end_with_a_reason() {
    let limits = WasmLimits::default()
        .with_fuel_per_message(100_000)
        .with_max_memory_pages(4);
    let run = |handle: &str| {
        let (mut sb, _) = sandbox(&guest(handle, ""), limits);
        sb.handle(&t("go"))
    };
    assert_eq!(
        run("(unreachable)"),
        Err(Term::tuple(vec![
            Term::atom("wasm_trap"),
            Term::binary("wasm `unreachable` instruction executed")
        ]))
    );
    assert_eq!(
        run("(loop $l (br $l))"),
        Err(t("{wasm_out_of_fuel, 100000}"))
    );
    assert_eq!(
        run("(loop $l (drop (memory.grow (i32.const 1))) (br $l))"),
        Err(t("{wasm_memory_limit, 4}"))
    );
    // A reply that is not ETF, outside a call, or twice.
    let garbage = "(i32.store (i32.const 0) (i32.const 0x61626364)) (call $reply (i32.const 0) (i32.const 4))";
    let (mut sb, _) = sandbox(
        &guest(
            "",
            &format!("(func (export \"handle_call\") (param i32 i32) {garbage})"),
        ),
        limits,
    );
    let reason = sb.handle_call(&t("get")).unwrap_err();
    assert!(
        badarg_text(&reason, "reply").starts_with("not ETF"),
        "{reason}"
    );
    assert_eq!(
        badarg_text(&run(garbage).unwrap_err(), "reply"),
        "not handling a call"
    );
    // Regions outside memory, and bytes that are no destination.
    let reason =
        run("(drop (call $send (i32.const 65530) (i32.const 10) (local.get $p) (local.get $n)))")
            .unwrap_err();
    assert_eq!(
        badarg_text(&reason, "send"),
        "bytes 65530..65540 are outside the memory of 65536 bytes"
    );
    let reason = run("(call $log (i32.const 0) (i32.const -1) (i32.const 2))").unwrap_err();
    badarg_text(&reason, "log");
    let reason =
        run("(drop (call $send_after (i64.const -1) (local.get $p) (local.get $n)))").unwrap_err();
    badarg_text(&reason, "send_after");
    // exit(normal) and exit(Reason)
    let exit = |reason: &str| {
        let bytes = Term::parse(reason).unwrap().encode();
        let data: String = bytes.iter().map(|b| format!("\\{b:02x}")).collect();
        let g = guest(
            &format!("(call $exit (i32.const 0) (i32.const {}))", bytes.len()),
            &format!("(data (i32.const 0) \"{data}\")"),
        );
        let (mut sb, _) = sandbox(&g, limits);
        sb.handle(&t("go"))
    };
    assert_eq!(exit("normal"), Err(t("normal")));
    assert_eq!(exit("{shutdown, 1}"), Err(t("{shutdown, 1}")));
    // alloc handing back a region outside memory
    let bad_alloc = wat::parse_str(
        r#"(module (memory (export "memory") 1)
           (func (export "alloc") (param i32) (result i32) (i32.const 65535))
           (func (export "handle") (param i32 i32)))"#,
    )
    .unwrap();
    let (mut sb, _) = sandbox(&bad_alloc, limits);
    let reason = sb.handle(&t("{a, long, message}")).unwrap_err();
    badarg_text(&reason, "alloc");
}

#[test]
fn host_calls_cost_fuel() {
    // 1000 logs of 10 bytes cost more than 100,000 units though the loop itself is cheap.
    let logs = guest(
        r#"(local $i i32)
           (loop $l
             (call $log (i32.const 4) (i32.const 0) (i32.const 10))
             (local.set $i (i32.add (local.get $i) (i32.const 1)))
             (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))"#,
        "",
    );
    let (mut sb, _) = sandbox(&logs, WasmLimits::default().with_fuel_per_message(100_000));
    assert_eq!(sb.handle(&t("go")), Err(t("{wasm_out_of_fuel, 100000}")));
    let (mut sb, _) = sandbox(&logs, WasmLimits::default());
    assert_eq!(sb.handle(&t("go")), Ok(()));
    assert_eq!(sb.memory_pages(), 1);
}

// ---- on a node: kinds, spawns, calls, exits ----

struct NoNet;

struct Never;

impl Listener for Never {
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxedTransport, String)>> {
        Box::pin(std::future::pending())
    }
}

impl Network for NoNet {
    fn listen<'a>(
        &'a self,
        _node: &'a str,
        _ctx: NetContext<'a>,
    ) -> BoxFuture<'a, Result<Listening, NodeError>> {
        Box::pin(async {
            Ok(Listening {
                listener: Box::new(Never),
                port: 0,
                creation: 1,
                keep: Box::new(()),
            })
        })
    }

    fn connect<'a>(
        &'a self,
        node: &'a str,
        _addr: Option<std::net::SocketAddr>,
        _ctx: NetContext<'a>,
    ) -> BoxFuture<'a, Result<BoxedTransport, ConnectError>> {
        Box::pin(async move {
            Err(ConnectError::Unreachable {
                node: node.to_owned(),
                reason: "no network in this test".into(),
            })
        })
    }
}

async fn node(name: &str) -> Node {
    NodeConfig::new(format!("{name}@localhost"))
        .cookie("wasm-test")
        .network(Arc::new(NoNet))
        .pg_namespace(format!("wasm-test-{name}"))
        .start()
        .await
        .unwrap()
}

/// Receives what is sent to its pid.
struct Probe(mpsc::UnboundedSender<Term>);

impl Actor for Probe {
    type Msg = Raw;
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<Raw>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle(
        &self,
        _: ActorRef<Raw>,
        msg: Raw,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let _ = self.0.send(msg.0);
        Ok(())
    }
}

/// Reports how the actors it monitors end: ractor's stop reason (the Erlang reason's text).
struct Watcher(mpsc::UnboundedSender<String>);

impl Actor for Watcher {
    type Msg = ();
    type State = ();
    type Arguments = ();
    async fn pre_start(&self, _: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        event: SupervisionEvent,
        _: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(_, _, reason) => {
                let _ = self.0.send(reason.unwrap_or_else(|| "normal".into()));
            }
            SupervisionEvent::ActorFailed(_, e) => {
                let _ = self.0.send(format!("failed: {e}"));
            }
            _ => {}
        }
        Ok(())
    }
}

async fn call(node: &Node, pid: &Pid, request: Term) -> Option<Term> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let accepted = node.shared().router.call(
        &ProcessRef::Pid(pid.clone()),
        &request,
        ReplyTo::new(move |reply| {
            let _ = tx.send(reply);
        }),
    );
    assert_eq!(accepted, Some(true));
    tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .ok()
        .flatten()
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("in time")
        .expect("open")
}

#[tokio::test]
async fn a_wasm_kind_spawns_and_behaves_as_the_native_counter() {
    let node = node("wasm_kind").await;
    let hash = node.load_wasm(COUNTER_WASM).unwrap();
    assert_eq!(hash.to_string().len(), 7 + 64);
    let info = node
        .spawnable_wasm(crate::kinds::KindSpec::new("counter_wasm"), &hash)
        .unwrap();
    assert_eq!(info.full_name(), "counter_wasm/1");
    assert!(node.kinds().iter().any(|k| k.name == "counter_wasm"));

    // As Erlang's spawn/4 and Node::spawn_on start kinds.
    let placement = Placement::Node(node.name().to_owned());
    let spawned = node
        .spawn_on(
            &placement,
            "counter_wasm",
            vec![Term::Int(5)],
            SpawnOpts::default(),
        )
        .await
        .unwrap();
    let pid = spawned.pid;
    assert_eq!(call(&node, &pid, t("get")).await, Some(Term::Int(5)));
    let core = node.shared();
    core.send_pid(&pid, t("{add, 37}"));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (probe, _) = Actor::spawn(None, Probe(tx), ()).await.unwrap();
    let from = node.pid_of(&probe);
    core.send_pid(&pid, Term::tuple(vec![Term::atom("get"), Term::Pid(from)]));
    assert_eq!(next(&mut rx).await, t("{count, 42}"));
    assert_eq!(call(&node, &pid, t("get")).await, Some(Term::Int(42)));

    // Arguments the guest refuses: the spawn fails and nothing runs.
    let bad = node
        .spawn_on(
            &placement,
            "counter_wasm",
            vec![Term::atom("x")],
            SpawnOpts::default(),
        )
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("start_failed"), "{bad}");

    // crash: that actor ends with reason crashed; the other counter goes on.
    let (other, other_pid) = node.spawn_wasm(&hash, vec![Term::Int(1)]).await.unwrap();
    let (wtx, mut wrx) = mpsc::unbounded_channel();
    let (watcher, _) = Actor::spawn(None, Watcher(wtx), ()).await.unwrap();
    let crashing = node.shared().resolve(&ProcessRef::Pid(pid.clone()));
    let Some(crate::registry::LocalProcess::Actor(crashing)) = crashing else {
        panic!("the spawned counter is a local actor");
    };
    watcher.get_cell().monitor(crashing.cell.clone());
    core.send_pid(&pid, t("crash"));
    assert_eq!(next(&mut wrx).await, "crashed");
    assert_eq!(call(&node, &other_pid, t("get")).await, Some(Term::Int(1)));
    drop(other);
    node.shutdown().await;
}

#[tokio::test]
async fn a_misbehaving_actor_ends_alone_with_its_reason() {
    let node = node("wasm_bad").await;
    let limits = WasmLimits::default()
        .with_fuel_per_message(200_000)
        .with_max_memory_pages(8);
    let counter = node.load_wasm(COUNTER_WASM).unwrap();
    let (_, counter_pid) = node.spawn_wasm(&counter, vec![Term::Int(7)]).await.unwrap();
    let (wtx, mut wrx) = mpsc::unbounded_channel();
    let (watcher, _) = Actor::spawn(None, Watcher(wtx), ()).await.unwrap();
    let garbage_reply = "(func (export \"handle_call\") (param i32 i32) \
        (i32.store (i32.const 0) (i32.const -1)) (call $reply (i32.const 0) (i32.const 4)))";
    for (handle, extra, request, reason) in [
        ("(unreachable)", "", None, "{wasm_trap,<<"),
        ("(loop $l (br $l))", "", None, "{wasm_out_of_fuel,200000}"),
        (
            "(loop $l (drop (memory.grow (i32.const 1))) (br $l))",
            "",
            None,
            "{wasm_memory_limit,8}",
        ),
        ("", garbage_reply, Some(t("get")), "{wasm_badarg,reply,"),
        // 1 is no destination
        (
            "(drop (call $send (i32.const 0) (i32.const 3) (local.get $p) (local.get $n)))",
            r#"(data (i32.const 0) "\83\61\01")"#,
            None,
            "{wasm_badarg,send,",
        ),
    ] {
        let hash = node.load_wasm_with(&guest(handle, extra), limits).unwrap();
        let (actor, pid) = node.spawn_wasm(&hash, vec![]).await.unwrap();
        watcher.get_cell().monitor(actor.get_cell());
        match request {
            Some(r) => assert_eq!(call(&node, &pid, r).await, None, "no reply"),
            None => node.shared().send_pid(&pid, t("go")),
        }
        let ended = next(&mut wrx).await;
        assert!(ended.starts_with(reason), "{ended} for {handle} {extra}");
        // The node and the other actor go on.
        assert_eq!(
            call(&node, &counter_pid, t("get")).await,
            Some(Term::Int(7))
        );
    }
    // A trap in init: the spawn fails with the reason.
    let hash = node
        .load_wasm_with(
            &guest("", "(func (export \"init\") (param i32 i32) unreachable)"),
            limits,
        )
        .unwrap();
    let e = node.spawn_wasm(&hash, vec![]).await.unwrap_err();
    assert!(
        matches!(&e, WasmError::StartFailed { reason, .. } if reason.contains("init failed: {wasm_trap,")),
        "{e}"
    );
    // An unknown hash.
    let missing = ModuleHash::of(b"none");
    assert_eq!(
        node.spawn_wasm(&missing, vec![]).await.unwrap_err(),
        WasmError::UnknownModule(missing)
    );
    node.shutdown().await;
}

#[tokio::test]
async fn timers_come_back_to_the_actor() {
    let node = node("wasm_timer").await;
    // `{go, Pid}` starts a timer of 20 ms with `{tick, Pid}`; `{tick, Pid}` goes on to Pid.
    let g = guest(
        r#"(if (i32.eq (i32.load8_u (i32.add (local.get $p) (i32.const 5))) (i32.const 103))
             (then
               (memory.copy (i32.const 2057) (i32.add (local.get $p) (i32.const 7))
                            (i32.sub (local.get $n) (i32.const 7)))
               (drop (call $send_after (i64.const 20) (i32.const 2048)
                                       (i32.add (local.get $n) (i32.const 2))))
               (return)))
           (i32.store8 (i32.const 3072) (i32.const 131))
           (memory.copy (i32.const 3073) (i32.add (local.get $p) (i32.const 9))
                        (i32.sub (local.get $n) (i32.const 9)))
           (drop (call $send (i32.const 3072) (i32.sub (local.get $n) (i32.const 8))
                             (local.get $p) (local.get $n)))"#,
        r#"(data (i32.const 2048) "\83\68\02\77\04tick")"#,
    );
    let hash = node.load_wasm(&g).unwrap();
    let (_actor, pid) = node.spawn_wasm(&hash, vec![]).await.unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (probe, _) = Actor::spawn(None, Probe(tx), ()).await.unwrap();
    let from = Term::Pid(node.pid_of(&probe));
    let started = std::time::Instant::now();
    node.shared()
        .send_pid(&pid, Term::tuple(vec![Term::atom("go"), from.clone()]));
    assert_eq!(
        next(&mut rx).await,
        Term::tuple(vec![Term::atom("tick"), from])
    );
    assert!(started.elapsed() >= Duration::from_millis(20));
    node.shutdown().await;
}

// ---- modules across nodes: the source authority, kinds and versions, unloading ----

async fn node_with(name: &str, authority: Option<crate::sources::SourceAuthority>) -> Node {
    let mut config = NodeConfig::new(format!("{name}@localhost"))
        .cookie("wasm-test")
        .network(Arc::new(NoNet))
        .pg_namespace(format!("wasm-test-{name}"));
    if let Some(a) = authority {
        config = config.source_authority(a);
    }
    config.start().await.unwrap()
}

#[tokio::test]
async fn loads_from_other_nodes_pass_the_source_authority() {
    use crate::sources::{SourceAuthority, SourceError};
    const KEY: &str = "a key of sixteen bytes or more";
    let bytes = bytes::Bytes::from_static(COUNTER_WASM);
    let hash = ModuleHash::of(COUNTER_WASM);

    let plain = node_with("src_none", None).await;
    assert_eq!(
        plain.load_wasm_from(bytes.clone(), None, "x@h").await,
        Err(WasmError::Source(SourceError::NoAuthority))
    );
    assert!(plain.wasm_modules().list().is_empty());
    // The node's own Rust code is not checked.
    assert_eq!(plain.load_wasm(COUNTER_WASM), Ok(hash));
    plain.shutdown().await;

    let keyed = node_with("src_key", Some(SourceAuthority::hmac_key(KEY).unwrap())).await;
    let good = crate::sources::mac(KEY.as_bytes(), COUNTER_WASM).to_vec();
    let mut bad = good.clone();
    bad[31] ^= 0x80;
    assert_eq!(
        keyed.load_wasm_from(bytes.clone(), None, "x@h").await,
        Err(WasmError::Source(SourceError::MissingMac(hash)))
    );
    assert_eq!(
        keyed.load_wasm_from(bytes.clone(), Some(bad), "x@h").await,
        Err(WasmError::Source(SourceError::BadMac(hash)))
    );
    let wrong_key = crate::sources::mac(b"other", COUNTER_WASM).to_vec();
    assert_eq!(
        keyed
            .load_wasm_from(bytes.clone(), Some(wrong_key), "x@h")
            .await,
        Err(WasmError::Source(SourceError::BadMac(hash)))
    );
    assert!(
        keyed.wasm_modules().list().is_empty(),
        "nothing refused is kept"
    );
    assert_eq!(
        keyed
            .load_wasm_from(bytes.clone(), Some(good.clone()), "x@h")
            .await,
        Ok(hash)
    );
    // Bad bytes with a good code for them: the module's own error.
    let junk = b"\0asm\x01\0\0\0\x05junk".to_vec();
    let junk_mac = crate::sources::mac(KEY.as_bytes(), &junk).to_vec();
    let e = keyed
        .load_wasm_from(junk.into(), Some(junk_mac), "x@h")
        .await
        .unwrap_err();
    assert!(matches!(e, WasmError::Invalid(_)), "{e}");
    // Over the size limit: refused before anything else.
    let big = vec![0u8; WasmLimits::default().max_module_bytes() + 1];
    let e = keyed
        .load_wasm_from(big.into(), Some(good), "x@h")
        .await
        .unwrap_err();
    assert!(matches!(e, WasmError::TooLarge { .. }), "{e}");
    keyed.shutdown().await;

    let judged = node_with(
        "src_judge",
        Some(SourceAuthority::validator(|load| async move {
            if load.from.starts_with("trusted@") {
                Ok(())
            } else {
                Err(format!("{} is not trusted", load.from))
            }
        })),
    )
    .await;
    assert_eq!(
        judged.load_wasm_from(bytes.clone(), None, "evil@h").await,
        Err(WasmError::Source(SourceError::Refused {
            hash,
            reason: "evil@h is not trusted".into()
        }))
    );
    assert_eq!(
        judged.load_wasm_from(bytes, None, "trusted@h").await,
        Ok(hash)
    );
    judged.shutdown().await;
}

#[tokio::test]
async fn kinds_name_modules_in_versions_and_unload_frees_them() {
    let node = node("versions").await;
    let placement = Placement::Node(node.name().to_owned());
    let v1 = node.load_wasm(COUNTER_WASM).unwrap();
    let v2 = node.load_wasm(&super::padded(COUNTER_WASM, 64)).unwrap();
    assert_ne!(v1, v2);
    assert_eq!(node.wasm_kind(&v1, "ctr", None).await.unwrap(), "ctr/1");
    assert_eq!(node.wasm_kind(&v1, "ctr", None).await.unwrap(), "ctr/1");
    assert_eq!(node.wasm_kind(&v2, "ctr", None).await.unwrap(), "ctr/2");
    let actors = |h: ModuleHash| {
        node.wasm_modules()
            .info()
            .into_iter()
            .find(|m| m.hash == h)
            .map(|m| m.actors)
    };
    let spawn = |kind: &'static str, n: i64| {
        let (node, placement) = (node.clone(), placement.clone());
        async move {
            node.spawn_on(&placement, kind, vec![Term::Int(n)], SpawnOpts::default())
                .await
        }
    };

    // A bare name starts the newest; both run side by side.
    let new = spawn("ctr", 3).await.unwrap().pid;
    let old = spawn("ctr/1", 4).await.unwrap().pid;
    assert_eq!((actors(v1), actors(v2)), (Some(1), Some(1)));
    let held = Arc::downgrade(&node.wasm_modules().get(&v2).unwrap());

    // Unload v2: its kind version goes, a bare name starts v1, spawns of v2 fail naming it,
    // its actor runs on.
    node.unload_wasm(&v2).unwrap();
    assert_eq!(node.wasm_modules().list(), vec![v1]);
    let kinds: Vec<String> = node.kinds().iter().map(|k| k.full_name()).collect();
    assert!(
        kinds.contains(&"ctr/1".to_owned()) && !kinds.contains(&"ctr/2".to_owned()),
        "{kinds:?}"
    );
    spawn("ctr", 5).await.unwrap();
    assert_eq!(actors(v1), Some(2));
    let e = node.spawn_wasm(&v2, vec![Term::Int(1)]).await.unwrap_err();
    assert!(e.to_string().contains(&v2.to_string()), "{e}");
    let e = node.wasm_kind(&v2, "ctr", None).await.unwrap_err();
    assert_eq!(e, WasmError::UnknownModule(v2));
    assert_eq!(node.unload_wasm(&v2), Err(WasmError::UnknownModule(v2)));
    assert_eq!(call(&node, &new, t("get")).await, Some(Term::Int(3)));
    assert_eq!(call(&node, &old, t("get")).await, Some(Term::Int(4)));

    // A name with a native version cannot take a module; spawnable_wasm kinds go with an
    // unload too.
    let (tx, _rx) = mpsc::unbounded_channel();
    node.spawnable_made(crate::kinds::KindSpec::new("native"), move |_| {
        Probe(tx.clone())
    })
    .unwrap();
    assert_eq!(
        node.wasm_kind(&v1, "native", None).await,
        Err(WasmError::NativeKind {
            name: "native".into(),
            version: 1
        })
    );
    let v3 = node.load_wasm(&super::padded(COUNTER_WASM, 1)).unwrap();
    node.spawnable_wasm(crate::kinds::KindSpec::new("named/4"), &v3)
        .unwrap();
    node.unload_wasm(&v3).unwrap();
    assert!(!node.kinds().iter().any(|k| k.name == "named"));

    // The module's memory goes with its last actor.
    assert!(held.upgrade().is_some(), "its actor still runs it");
    node.shared().send_pid(&new, t("crash"));
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while held.upgrade().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "module v2 never freed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    node.shutdown().await;
}
