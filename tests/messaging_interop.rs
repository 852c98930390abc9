//! Messaging interop: typed Rust actors and real Erlang/OTP 25 processes sending, calling and
//! echoing to each other across a distribution connection.
//!
//! Each test starts its own EPMD (this workspace's, in this process, on a port of its own, see
//! [`Epmd`]), its own node and then one `erl -sname` node against that EPMD, with
//! `-start_epmd false` so no EPMD daemon is left behind. The `erl` node runs
//! `tests/erlang/eval_peer.erl` (one Erlang expression per stdin line, `ok ~0p` back) with
//! `tests/erlang/msg_peer.erl` (the Erlang-side helpers: the echo loop over the corpus, the
//! `counter` gen_server, collectors, an MD5 responder, an inbox) and `tests/erlang/etf_peer.erl`
//! (for its term corpus) on the code path. Every `erl` is an [`EvalPeer`], killed when dropped,
//! panics included.
//!
//! The Rust actors (`echo`, `kv`, ...) are defined here, with the shapes of
//! `examples/echo_node.rs`. Every wait is bounded: Erlang-side waits return what they saw
//! when they give up, Rust-side waits are `tokio::time::timeout`s or polls with a deadline.
//!
//! Each test connects to its `erl` node before it starts. The last two tests are about the
//! connection itself: the first message on a connection that Erlang opens by sending, and a
//! proxy asked for right after Erlang drops the connection, each over many rounds.
//!
//! Needs Erlang/OTP (`erl`, `erlc`): without it the tests are skipped on a developer machine
//! and fail in CI (`CI=true`), see [`testkit::require_erl`]. Set `RUST_LOG` to see the node's
//! logs.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use node_server::etf::{Atom, Pid, Term};
use node_server::remote::{Raw, RemoteTarget};
use node_server::{client_connect, CallError, ErlangMessage, Node, NodeConfig, NodeEvent};
use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus, RpcReplyPort};
use testkit::{Epmd, EvalPeer};
use tokio::sync::mpsc;

/// The cookie every node of these tests shares.
const COOKIE: &str = "msg_interop_cookie";
/// How long any awaited event may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);
/// How long the Erlang peer may take to answer one line.
const ERL_REPLY: Duration = Duration::from_secs(40);
/// How many messages a burst has.
const BURST: u32 = 20_000;
/// The size of the large messages.
const BIG: usize = 10 << 20;

// ---------------------------------------------------------------------------------------------
// The Rust actors
// ---------------------------------------------------------------------------------------------

// `echo` and `kv`, exactly as the `echo_node` example runs them.
#[path = "../examples/echo_node/services.rs"]
mod services;
use services::{Echo, Kv};

use testkit::forwarder;

/// `{seq, I}`.
#[derive(Debug, PartialEq, ErlangMessage)]
enum SeqMsg {
    Seq(u32),
}

/// What a [`SeqSink`] saw: the count and the first out-of-order number, if any.
#[derive(Debug, PartialEq)]
struct SeqReport {
    count: u32,
    /// `(expected, got)`.
    first_disorder: Option<(u32, u32)>,
}

/// Checks that `{seq, 1}`, ..., `{seq, N}` arrive in order, and reports once N have arrived.
struct SeqSink;

struct SeqState {
    expected_total: u32,
    next: u32,
    count: u32,
    first_disorder: Option<(u32, u32)>,
    report: Option<tokio::sync::oneshot::Sender<SeqReport>>,
}

impl Actor for SeqSink {
    type Msg = SeqMsg;
    type State = SeqState;
    type Arguments = (u32, tokio::sync::oneshot::Sender<SeqReport>);

    async fn pre_start(
        &self,
        _me: ActorRef<SeqMsg>,
        (expected_total, report): Self::Arguments,
    ) -> Result<SeqState, ActorProcessingErr> {
        Ok(SeqState {
            expected_total,
            next: 1,
            count: 0,
            first_disorder: None,
            report: Some(report),
        })
    }

    async fn handle(
        &self,
        _me: ActorRef<SeqMsg>,
        SeqMsg::Seq(i): SeqMsg,
        s: &mut SeqState,
    ) -> Result<(), ActorProcessingErr> {
        if i != s.next && s.first_disorder.is_none() {
            s.first_disorder = Some((s.next, i));
        }
        s.next += 1;
        s.count += 1;
        if s.count >= s.expected_total {
            if let Some(report) = s.report.take() {
                let _ = report.send(SeqReport {
                    count: s.count,
                    first_disorder: s.first_disorder,
                });
            }
        }
        Ok(())
    }
}

/// A typed actor without a catch-all variant: `{hello, Binary}` or `{count, U32}`.
#[derive(Debug, PartialEq, ErlangMessage)]
enum StrictMsg {
    Hello(String),
    Count(u32),
}

/// The Erlang `counter` gen_server (`msg_peer.erl`) as Rust sees it.
#[derive(Debug, ErlangMessage)]
enum CounterMsg {
    /// `gen_server:call(counter, {add, N})` -> the new total.
    #[rpc]
    Add(i64, RpcReplyPort<i64>),
    /// `gen_server:call(counter, notes)` -> the notes so far.
    #[rpc]
    Notes(RpcReplyPort<Vec<Term>>),
    /// `counter ! {note, X}`.
    Note(String),
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

/// The next message of a channel, within [`DEADLINE`].
async fn next<M>(rx: &mut mpsc::UnboundedReceiver<M>, what: &str) -> M {
    within(what, rx.recv())
        .await
        .unwrap_or_else(|| panic!("channel closed while waiting for {what}"))
}

/// Polls `cond` every few milliseconds until it holds; panics after [`DEADLINE`].
async fn poll_until(what: &str, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        if cond() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < DEADLINE,
            "not true after {DEADLINE:?}: {what}"
        );
        tick.tick().await;
    }
}

/// `eval_peer`, `msg_peer` and `etf_peer`, compiled once per test process.
fn beam_dirs() -> Vec<PathBuf> {
    testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer", "msg_peer", "etf_peer"],
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
        Erl { peer, name }
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
}

/// An atom literal for an Erlang expression.
fn quoted(name: &str) -> String {
    format!("'{name}'")
}

/// `Term::parse`, for expected values.
fn t(text: &str) -> Term {
    Term::parse(text).unwrap_or_else(|e| panic!("bad test term {text}: {e}"))
}

/// Our node and one `erl` node, both fresh for the test `tag`, and the EPMD both use (keep it
/// alive as long as they run); `None` when `erl` is missing (outside CI).
async fn setup(tag: &str) -> Option<(Node, Erl, Epmd)> {
    testkit::init_logging();
    let erl = testkit::require_erl()?;
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let node = within(
        "our node starts",
        NodeConfig::new(unique(&format!("rs_{tag}")))
            .cookie(COOKIE)
            .epmd("localhost", epmd_port)
            .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .start(),
    )
    .await
    .expect("our node starts");
    let erl = Erl::start(&erl, &unique(&format!("erl_{tag}")), epmd_port).await;
    // Connected before the test starts: a connection that Erlang opens by sending can lose
    // our first replies (see `the_first_message_on_a_connection_erlang_opens_is_answered`).
    within("connecting to erl", client_connect(&node, &erl.name))
        .await
        .unwrap_or_else(|e| panic!("connecting to {}: {e}", erl.name));
    Some((node, erl, epmd))
}

/// Starts an inbox process on the Erlang node (registered there as `inbox`) and returns its
/// pid, which Erlang sends to a Rust actor.
async fn erlang_inbox(node: &Node, erl: &mut Erl) -> Pid {
    let (sink, mut pids) = forwarder::<Raw>().await;
    node.register("pid_sink", &sink)
        .expect("pid_sink registers");
    assert_eq!(
        erl.ok(&format!(
            "begin P = msg_peer:start_inbox(inbox), {{pid_sink, {}}} ! {{inbox, P}}, ok end",
            quoted(node.name())
        ))
        .await,
        "ok"
    );
    let Raw(msg) = next(&mut pids, "the inbox pid").await;
    sink.stop(None);
    match msg.as_tuple() {
        Some([tag, Term::Pid(pid)]) if tag.is_atom("inbox") => pid.clone(),
        _ => panic!("expected {{inbox, Pid}}, got {msg}"),
    }
}

/// Waits for the `Down` event of `peer`.
async fn expect_down(events: &mut tokio::sync::broadcast::Receiver<NodeEvent>, peer: &str) {
    within(&format!("the Down event of {peer}"), async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { node, .. }) if node == peer => return,
                Ok(_) => {}
                Err(e) => panic!("node events: {e}"),
            }
        }
    })
    .await
}

async fn spawn_echo(node: &Node) -> ActorRef<Raw> {
    let (echo, _) = Actor::spawn(None, Echo, node.clone())
        .await
        .expect("echo starts");
    node.register("echo", &echo).expect("echo registers");
    echo
}

/// MD5, to check what Erlang's `erlang:md5/1` says about our data.
fn md5(data: &[u8]) -> [u8; 16] {
    use md5::Digest;
    md5::Md5::digest(data).into()
}

// ---------------------------------------------------------------------------------------------
// 1. Erlang -> Rust echo of a corpus
// ---------------------------------------------------------------------------------------------

/// Every term of `etf_peer`'s corpus (big integers, floats, unicode atoms and binaries, nested
/// lists, tuples and maps, improper lists, pids, references, ports, funs, a 100 KiB binary,
/// pseudo-random nested terms) goes `{echo, RustNode} ! {self(), T}` and comes back exactly.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erlang_echo_of_a_varied_corpus_comes_back_exactly() {
    let Some((node, mut erl, _epmd)) = setup("echo").await else {
        return;
    };
    let _echo = spawn_echo(&node).await;

    let started = Instant::now();
    let result = erl
        .ok(&format!("msg_peer:echo_corpus({})", quoted(node.name())))
        .await;
    let elapsed = started.elapsed();
    let (count, bad) = result
        .strip_prefix('{')
        .and_then(|r| r.split_once(','))
        .unwrap_or_else(|| panic!("bad echo_corpus result: {result}"));
    let count: usize = count.parse().expect("a count");
    assert!(count >= 100, "the corpus has only {count} terms");
    assert!(
        bad == "[]}",
        "terms that did not come back exactly ({count} sent): {}",
        testkit::truncate(bad, 4000)
    );
    eprintln!("echoed {count} terms in {elapsed:?}");
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. gen_server:call from Erlang to the typed Rust kv
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn erlang_gen_server_calls_reach_the_typed_kv() {
    let Some((node, mut erl, _epmd)) = setup("kv").await else {
        return;
    };
    let (kv, _) = Actor::spawn(None, Kv, ()).await.expect("kv starts");
    node.register("kv", &kv).expect("kv registers");
    let kv_ref = format!("{{kv, {}}}", quoted(node.name()));
    let call = |req: &str| format!("gen_server:call({kv_ref}, {req}, 10000)");

    // The four answers, one by one, with terms for keys and values.
    let key = "{user, <<\"\\x{fc}n\\x{ef}code \\x{65e5}\"/utf8>>, [1 | 2], #{k => 1.5}}";
    let value = "#{<<\"bin\">> => <<1, 2, 3>>, list => [a, {b}, \"str\"], big => 1 bsl 100}";
    assert_eq!(
        erl.ok(&call(&format!("{{put, {key}, {value}}}"))).await,
        "ok"
    );
    assert_eq!(
        erl.term(&format!(
            "{{ok, {value}}} =:= {}",
            call(&format!("{{get, {key}}}"))
        ))
        .await,
        t("true")
    );
    assert_eq!(
        erl.term(&call(&format!("{{get, {key}}}"))).await,
        t("{ok, #{<<\"bin\">> => <<1,2,3>>, list => [a, {b}, \"str\"], big => 1267650600228229401496703205376}}")
    );
    assert_eq!(erl.ok(&call(&format!("{{delete, {key}}}"))).await, "ok");
    assert_eq!(erl.ok(&call(&format!("{{get, {key}}}"))).await, "not_found");
    assert_eq!(
        erl.ok(&call("{get, {never, put, <<>>}}")).await,
        "not_found"
    );

    // Many kinds of keys and values: put, get, overwrite, delete, get deleted and missing.
    let result = erl
        .ok(&format!("msg_peer:kv_check({})", quoted(node.name())))
        .await;
    assert!(
        result.ends_with(",[]}"),
        "kv mismatches: {}",
        testkit::truncate(&result, 4000)
    );
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. Rust calls an Erlang gen_server and sends to a registered Erlang name
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rust_calls_an_erlang_gen_server_and_sends_to_its_name() {
    let Some((node, mut erl, _epmd)) = setup("call").await else {
        return;
    };
    assert_eq!(erl.ok("msg_peer:start_counter()").await, "ok");
    let counter = RemoteTarget::Name {
        name: Atom::new("counter"),
        node: Atom::new(&erl.name),
    };

    // Untyped: a term request, a term reply.
    let reply = node
        .call(&counter, t("{add, 10}"), DEADLINE)
        .await
        .expect("call {add, 10}");
    assert_eq!(reply, Term::Int(10));

    // Typed: #[rpc] variants become gen_server calls, others plain messages.
    let proxy = node
        .remote_name::<CounterMsg>("counter", &erl.name)
        .await
        .expect("a proxy for counter");
    let total = ractor::call_t!(proxy, CounterMsg::Add, 10_000, 5).expect("call Add");
    assert_eq!(total, 15);
    proxy
        .cast(CounterMsg::Note("from rust ✓".into()))
        .expect("cast Note");
    // Same proxy, so the call is queued behind the note.
    let notes = ractor::call_t!(proxy, CounterMsg::Notes, 10_000).expect("call Notes");
    assert_eq!(notes, vec![Term::binary("from rust ✓".as_bytes())]);
    // What Erlang itself sees.
    assert_eq!(
        erl.term("gen_server:call(counter, notes)").await,
        t("[<<\"from rust ✓\"/utf8>>]")
    );
    assert_eq!(
        erl.term("gen_server:call(counter, {add, 0})").await,
        t("15")
    );

    // A name nobody has: the call fails as soon as the monitor says so, not at the timeout.
    let nobody = RemoteTarget::Name {
        name: Atom::new("nobody_here"),
        node: Atom::new(&erl.name),
    };
    let timeout = Duration::from_secs(15);
    let started = Instant::now();
    let result = node.call(&nobody, t("{add, 1}"), timeout).await;
    let took = started.elapsed();
    assert!(
        matches!(result, Err(CallError::NoProcess)),
        "call to a missing name: {result:?}"
    );
    assert!(
        took < Duration::from_secs(3),
        "the call to a missing name took {took:?} (timeout {timeout:?})"
    );
    eprintln!("call to a missing name failed in {took:?}");
    // The same through a typed proxy.
    let missing = node
        .remote_name::<CounterMsg>("nobody_here", &erl.name)
        .await
        .expect("a proxy for a missing name");
    let started = Instant::now();
    let result = ractor::call_t!(missing, CounterMsg::Add, 15_000, 1);
    let took = started.elapsed();
    assert!(result.is_err(), "typed call to a missing name: {result:?}");
    assert!(
        took < Duration::from_secs(3),
        "the typed call to a missing name took {took:?} (timeout 15 s)"
    );
    eprintln!("typed call to a missing name failed in {took:?}");
    // The counter is untouched by all that and still answers.
    let total = ractor::call_t!(proxy, CounterMsg::Add, 10_000, 1).expect("call Add");
    assert_eq!(total, 16);
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Send order under a burst, both ways
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bursts_of_20000_messages_keep_their_order_both_ways() {
    let Some((node, mut erl, _epmd)) = setup("burst").await else {
        return;
    };
    let erl_node = Atom::new(&erl.name);

    // Rust -> Erlang, with Node::send (untyped terms) and with a typed proxy.
    assert_eq!(
        erl.ok(&format!(
            "begin msg_peer:start_collector(seq_plain, {BURST}), msg_peer:start_collector(seq_typed, {BURST}) end"
        ))
        .await,
        "ok"
    );
    let plain = RemoteTarget::Name {
        name: Atom::new("seq_plain"),
        node: erl_node.clone(),
    };
    let typed = node
        .remote_name::<SeqMsg>("seq_typed", &erl.name)
        .await
        .expect("a proxy for seq_typed");
    let started = Instant::now();
    for i in 1..=BURST {
        node.send(
            &plain,
            Term::tuple(vec![Term::atom("seq"), Term::Int(i.into())]),
        );
        typed.cast(SeqMsg::Seq(i)).expect("cast to the proxy");
    }
    let report = erl.term("msg_peer:await_collector(seq_plain, 20000)").await;
    assert_eq!(report, t(&format!("{{{BURST}, none}}")), "Node::send burst");
    let report = erl.term("msg_peer:await_collector(seq_typed, 20000)").await;
    assert_eq!(report, t(&format!("{{{BURST}, none}}")), "proxy burst");
    eprintln!(
        "2 x {BURST} messages Rust -> Erlang in {:?}",
        started.elapsed()
    );

    // Erlang -> Rust, into a typed registered actor.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (sink, _) = Actor::spawn(None, SeqSink, (BURST, tx))
        .await
        .expect("sink starts");
    node.register("seq_sink", &sink).expect("sink registers");
    let started = Instant::now();
    assert_eq!(
        erl.ok(&format!(
            "msg_peer:send_seq({{seq_sink, {}}}, {BURST})",
            quoted(node.name())
        ))
        .await,
        "ok"
    );
    let report = within("the sink's report", rx)
        .await
        .expect("the sink reports");
    assert_eq!(
        report,
        SeqReport {
            count: BURST,
            first_disorder: None
        }
    );
    eprintln!("{BURST} messages Erlang -> Rust in {:?}", started.elapsed());
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. 10 MiB messages both ways
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_mib_messages_cross_both_ways() {
    let Some((node, mut erl, _epmd)) = setup("big").await else {
        return;
    };
    let _echo = spawn_echo(&node).await;

    // Erlang -> Rust echo -> Erlang.
    let started = Instant::now();
    assert_eq!(
        erl.ok(&format!(
            "msg_peer:big_echo({}, {BIG})",
            quoted(node.name())
        ))
        .await,
        format!("{{ok,{BIG}}}")
    );
    eprintln!("10 MiB echoed in {:?}", started.elapsed());

    // Rust -> Erlang, which answers with the MD5 of what it got.
    assert_eq!(erl.ok("msg_peer:start_md5(md5er)").await, "ok");
    let (inbox, mut answers) = forwarder::<Raw>().await;
    let me = node.pid_of(&inbox);
    let data = testkit::pseudo_random(BIG, 0x0123_4567_89ab_cdef);
    let expected = md5(&data);
    let started = Instant::now();
    node.send(
        &RemoteTarget::Name {
            name: Atom::new("md5er"),
            node: Atom::new(&erl.name),
        },
        Term::tuple(vec![Term::Pid(me), Term::Binary(Bytes::from(data))]),
    );
    let Raw(answer) = next(&mut answers, "the md5 answer").await;
    eprintln!("10 MiB sent and hashed in {:?}", started.elapsed());
    assert_eq!(
        answer,
        Term::tuple(vec![
            Term::atom("md5"),
            Term::binary(expected),
            Term::Int(BIG as i64)
        ])
    );
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. A message of the wrong shape reaches the fallback
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_message_of_the_wrong_shape_reaches_the_fallback() {
    let Some((node, mut erl, _epmd)) = setup("fallback").await else {
        return;
    };
    let (strict, mut typed) = forwarder::<StrictMsg>().await;
    node.register("strict", &strict).expect("strict registers");
    let (fallback, mut stray) = forwarder::<Raw>().await;
    node.set_fallback(Some(fallback));

    let wrong = [
        "{nope, the, wrong, shape}",
        "{hello, 42}",               // the right tag, a field of the wrong type
        "{count, -1}",               // out of u32 range
        "[{count, 7}]",              // a list of the right thing
        "#{hello => <<\"map\">>}",   // a map
        "{hello, <<\"x\">>, extra}", // one field too many
        "{'$gen_call', {self(), make_ref()}, {count, 1}}", // a call no #[rpc] variant takes
    ];
    let right = ["{hello, <<\"w\\x{f6}rld\"/utf8>>}", "{count, 7}"];
    // Interleaved, then a sentinel: each stray must come out of the fallback exactly, in
    // order, and nothing else (no well-shaped message) may come before the sentinel.
    let mut sends: Vec<String> = Vec::new();
    for (i, w) in wrong.iter().enumerate() {
        sends.push(format!("D ! {w}"));
        if let Some(r) = right.get(i) {
            sends.push(format!("D ! {r}"));
        }
    }
    sends.push("D ! {sentinel, done}".into());
    assert_eq!(
        erl.ok(&format!(
            "begin D = {{strict, {}}}, {}, ok end",
            quoted(node.name()),
            sends.join(", ")
        ))
        .await,
        "ok"
    );

    assert_eq!(
        next(&mut typed, "hello").await,
        StrictMsg::Hello("wörld".into())
    );
    assert_eq!(next(&mut typed, "count").await, StrictMsg::Count(7));
    for w in wrong.iter().take(6) {
        let Raw(got) = next(&mut stray, w).await;
        assert_eq!(got, t(w), "the fallback got {got} for {w}");
    }
    // The '$gen_call': compare its shape (pid and ref are Erlang's).
    let Raw(got) = next(&mut stray, "the $gen_call").await;
    match got.as_tuple() {
        Some([label, Term::Tuple(from), request])
            if label.is_atom("$gen_call")
                && matches!(from.as_slice(), [Term::Pid(_), Term::Reference(_)]) =>
        {
            assert_eq!(*request, t("{count, 1}"))
        }
        _ => panic!("the fallback got {got} for the $gen_call"),
    }
    let Raw(got) = next(&mut stray, "the sentinel").await;
    assert_eq!(got, t("{sentinel, done}"));
    assert!(
        typed.try_recv().is_err(),
        "the typed actor got more than the two well-shaped messages"
    );
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. Proxies: casts arrive, one proxy per pid, cleaned up when their node goes
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pid_proxies_deliver_are_shared_and_stop_with_their_node() {
    let Some((node, mut erl, _epmd)) = setup("proxy").await else {
        return;
    };
    let pid = erlang_inbox(&node, &mut erl).await;

    // One proxy per pid.
    let a = node.remote_pid::<Raw>(pid.clone()).await.expect("proxy");
    let b = node.remote_pid::<Raw>(pid.clone()).await.expect("proxy");
    assert_eq!(a.get_id(), b.get_id(), "two proxies for one pid");
    a.cast(Raw(t("{hello, 1}"))).expect("cast through a");
    b.cast(Raw(t("<<\"two\">>"))).expect("cast through b");
    assert_eq!(
        erl.term("msg_peer:inbox_wait(inbox, 2, 10000)").await,
        t("[{hello, 1}, <<\"two\">>]")
    );

    // Erlang drops the connection: the proxy stops.
    let mut events = node.subscribe();
    assert_eq!(
        erl.ok(&format!("erlang:disconnect_node({})", quoted(node.name())))
            .await,
        "true"
    );
    let took = poll_until("the proxy stops after disconnect_node", || {
        a.get_status() == ActorStatus::Stopped
    })
    .await;
    eprintln!("proxy stopped {took:?} after disconnect_node");
    assert!(
        a.cast(Raw(t("lost"))).is_err(),
        "a stopped proxy accepts casts"
    );

    // Once the node is down, a new proxy for the same pid reconnects, is a new actor, and
    // delivers. (Asking before the `Down` event can fail, see
    // `a_proxy_asked_for_right_after_a_disconnect_reconnects`.)
    expect_down(&mut events, &erl.name).await;
    let c = node.remote_pid::<Raw>(pid.clone()).await.expect("proxy");
    assert_ne!(
        c.get_id(),
        a.get_id(),
        "the stopped proxy was handed out again (status {:?})",
        c.get_status()
    );
    c.cast(Raw(t("again"))).expect("cast through c");
    assert_eq!(
        erl.term("msg_peer:inbox_wait(inbox, 3, 10000)").await,
        t("[{hello, 1}, <<\"two\">>, again]")
    );

    // The Erlang node halts: the proxy stops.
    erl.peer.peer_mut().send_line("erlang:halt()");
    let took = poll_until("the proxy stops after the Erlang node halts", || {
        c.get_status() == ActorStatus::Stopped
    })
    .await;
    eprintln!("proxy stopped {took:?} after halt");
    node.shutdown().await;
}

/// A pid's proxy monitors its process: Erlang sees the monitor, stopping the proxy takes it
/// away, and the process exiting stops the proxy (with the exit reason) while the connection
/// stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pid_proxy_monitors_its_process_and_stops_when_it_exits() {
    let Some((node, mut erl, _epmd)) = setup("proxymon").await else {
        return;
    };
    let pid = erlang_inbox(&node, &mut erl).await;
    let ours = format!("[{}]", quoted(node.name()));
    let proxy = node.remote_pid::<Raw>(pid.clone()).await.expect("proxy");
    proxy.cast(Raw(t("hello"))).expect("cast");
    assert_eq!(
        erl.term("msg_peer:inbox_wait(inbox, 1, 10000)").await,
        t("[hello]")
    );
    assert_eq!(
        erl.term(&format!("msg_peer:monitoring_nodes(inbox, {ours}, 5000)"))
            .await,
        t(&ours),
        "the proxy monitors its process"
    );

    // Stopped by code: its monitor goes, the process lives on.
    proxy.stop(None);
    within("the proxy stops", proxy.get_cell().wait(None))
        .await
        .expect("wait");
    assert_eq!(
        erl.term("msg_peer:monitoring_nodes(inbox, [], 5000)").await,
        t("[]"),
        "the stopped proxy's monitor is gone"
    );

    // The process exits: its new proxy stops, with the exit reason, and the connection stays.
    let proxy = node.remote_pid::<Raw>(pid.clone()).await.expect("proxy");
    let (watcher, mut stops) = testkit::stop_watcher().await;
    proxy.get_cell().link(watcher.get_cell());
    proxy.cast(Raw(t("again"))).expect("cast");
    assert_eq!(
        erl.term("msg_peer:inbox_wait(inbox, 2, 10000)").await,
        t("[hello, again]")
    );
    assert_eq!(
        erl.ok("begin exit(whereis(inbox), {shutdown, done}), ok end")
            .await,
        "ok"
    );
    let reason = next(&mut stops, "the proxy's stop").await;
    assert_eq!(reason.as_deref(), Some("{shutdown,done}"));
    assert!(
        proxy.cast(Raw(t("late"))).is_err(),
        "a stopped proxy refuses casts"
    );
    assert!(
        node.connected().iter().any(|(n, _)| *n == erl.name),
        "the connection stays up"
    );
    watcher.stop(None);
    node.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// Connection setup and teardown races
// ---------------------------------------------------------------------------------------------

/// How many connections Erlang opens in the first-message test.
const ROUNDS: u32 = 60;
/// How many times the reconnecting-proxy test drops the connection.
const REPROXY_ROUNDS: u32 = 200;

/// Erlang opens the connection by sending to our `echo`: the echo's reply, our first message
/// on that connection, must arrive. Each round drops the connection first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_first_message_on_a_connection_erlang_opens_is_answered() {
    let Some((node, mut erl, _epmd)) = setup("first").await else {
        return;
    };
    let _echo = spawn_echo(&node).await;
    let result = erl
        .term(&format!(
            "msg_peer:first_contact({}, {ROUNDS}, 2000)",
            quoted(node.name())
        ))
        .await;
    assert_eq!(
        result,
        t(&format!("{{{ROUNDS}, []}}")),
        "{{Rounds, rounds whose echo never came}}"
    );
    node.shutdown().await;
}

/// Right after Erlang drops the connection (the old proxy has stopped), asking for a proxy of
/// the same pid must reconnect and give one that delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proxy_asked_for_right_after_a_disconnect_reconnects() {
    let Some((node, mut erl, _epmd)) = setup("reproxy").await else {
        return;
    };
    let pid = erlang_inbox(&node, &mut erl).await;
    for round in 1..=REPROXY_ROUNDS {
        let proxy = node
            .remote_pid::<Raw>(pid.clone())
            .await
            .unwrap_or_else(|e| panic!("round {round}: no proxy: {e}"));
        proxy
            .cast(Raw(t(&format!("{{round, {round}}}"))))
            .unwrap_or_else(|e| panic!("round {round}: cast: {e}"));
        let last = erl
            .term(&format!(
                "case msg_peer:inbox_wait(inbox, {round}, 5000) of \
                 {{timeout, M}} -> {{timeout, length(M)}}; M -> lists:last(M) end"
            ))
            .await;
        assert_eq!(last, t(&format!("{{round, {round}}}")), "round {round}");
        assert_eq!(
            erl.ok(&format!("erlang:disconnect_node({})", quoted(node.name())))
                .await,
            "true"
        );
        // Ask again the moment the old proxy has stopped: spin (yielding) rather than tick.
        let deadline = Instant::now() + DEADLINE;
        while proxy.get_status() != ActorStatus::Stopped {
            assert!(
                Instant::now() < deadline,
                "round {round}: the proxy still runs"
            );
            tokio::task::yield_now().await;
        }
    }
    node.shutdown().await;
}
