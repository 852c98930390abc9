//! OTP 28's alternative activation signals (`DFLAG_ALTACT_SIG`, `ALTACT_SIG_SEND`) and EEP 76
//! priority messages against a real Erlang node:
//! - on OTP 28 and later, a priority message Rust sends to an alias made with
//!   `alias([priority])` is received ahead of ordinary messages queued before it; priority
//!   messages and exit signals from Erlang (`erlang:send/3`, `exit/3` with `[priority]`) to a
//!   pid, a name, reach Rust actors; calls whose replies come back through aliases work;
//! - a Rust actor's `PriorityInbox` hands out a priority message sent to its alias ahead of
//!   the ordinary messages queued before it;
//! - on older releases the same Rust calls fall back to ordinary alias sends, as OTP does,
//!   and the inbox's alias is one more ordinary address.
//!
//! Skipped without Erlang on a developer machine, a failure in CI (`CI=true`).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use node_server::etf::Term;
use node_server::priority::{PriorityInbox, Wake};
use node_server::remote::{Raw, RemoteTarget};
use node_server::{client_connect, NodeConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use testkit::{within, Epmd, EvalPeer};

const COOKIE: &str = "altact_interop_cookie";
const DEADLINE: Duration = Duration::from_secs(10);

fn unique(tag: &str) -> String {
    format!("{tag}_{}", std::process::id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_messages_and_alternative_activation_signals() {
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let release = testkit::otp_release().expect("erl answers");
    let altact = release >= 28;
    println!("peer is Erlang/OTP {release}; ALTACT_SIG expected: {altact}");
    let beams = testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer"],
    );
    let epmd = Epmd::start();
    let node = NodeConfig::new(unique("rs_alt"))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .pg_scopes(Vec::<String>::new())
        .start()
        .await
        .expect("our node starts");
    let mut erl = EvalPeer::start_in_place(
        &erl,
        &unique("erl_alt"),
        COOKIE,
        epmd.port(),
        &beams,
        Duration::from_secs(30),
    );
    within("connect", DEADLINE, client_connect(&node, erl.name()))
        .await
        .expect("connects");
    let (sink, mut got) = testkit::forwarder::<Raw>().await;
    node.register("sink", &sink).expect("sink registers");
    let rs = format!("'{}'", node.name());
    let mut next = async || {
        within("a message for sink", DEADLINE, got.recv())
            .await
            .expect("sink runs")
            .0
    };

    // Erlang -> Rust: a call whose reply comes back to an alias (op 37 once ALTACT_SIG is
    // agreed), plain and priority sends to a name and a pid, a priority exit signal.
    let reply = node
        .call(
            &RemoteTarget::Name {
                name: node_server::etf::Atom::new("net_kernel"),
                node: node_server::etf::Atom::new(erl.name()),
            },
            Term::tuple(vec![Term::atom("is_auth"), Term::atom(node.name())]),
            DEADLINE,
        )
        .await
        .expect("a call to an Erlang gen_server is answered");
    assert_eq!(reply, Term::atom("yes"));
    if altact {
        erl.ok_in_place(&format!("erlang:send({{sink, {rs}}}, by_name, [priority])"));
        assert_eq!(next().await, Term::atom("by_name"));
        erl.ok_in_place(&format!(
            "erlang:send(rpc:call({rs}, erlang, whereis, [sink]), by_pid, [priority])"
        ));
        assert_eq!(next().await, Term::atom("by_pid"));
        node.trap_exits(&sink, true);
        erl.ok_in_place(&format!(
            "exit(rpc:call({rs}, erlang, whereis, [sink]), prio_reason, [priority])"
        ));
        let exit = next().await;
        let parts = exit.as_tuple().expect("an 'EXIT' tuple");
        assert_eq!(parts[0], Term::atom("EXIT"));
        assert_eq!(parts[2], Term::atom("prio_reason"));
    }

    // Rust -> Erlang: 100 ordinary messages to the eval process, then one to its alias.
    for priority in [false, true] {
        let make_alias = if altact {
            "alias([priority])"
        } else {
            "alias()"
        };
        erl.ok_in_place(&format!("{{sink, {rs}}} ! {{alias, {make_alias}, self()}}"));
        let msg = next().await;
        let Some([_, Term::Reference(alias), Term::Pid(pid)]) = msg.as_tuple() else {
            panic!("no alias in {msg}");
        };
        let (alias, pid) = ((**alias).clone(), pid.clone());
        for i in 0..100 {
            node.send(&RemoteTarget::Pid(pid.clone()), Term::Int(i));
        }
        assert!(node.send_to_alias(&alias, Term::atom("urgent"), priority));
        let first = erl.ok_in_place(
            "(fun W(T) when T > 2000 -> timeout; W(T) -> \
               case process_info(self(), message_queue_len) of \
                 {_, N} when N >= 101 -> receive First -> First end; \
                 _ -> timer:sleep(5), W(T + 1) end end)(0)",
        );
        let expected = if priority && altact { "urgent" } else { "0" };
        assert_eq!(first, expected, "priority {priority} on OTP {release}");
        let rest = erl.ok_in_place(
            "length((fun F(Acc) -> receive M -> F([M | Acc]) after 0 -> Acc end end)([]))",
        );
        assert_eq!(rest, "100");
    }

    // Erlang -> Rust: priority messages to a PriorityInbox's alias overtake queued ordinary
    // messages (OTP 28+); without priority the alias is one more ordinary address.
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    let (gate_tx, gate) = tokio::sync::oneshot::channel();
    let slot = Arc::new(OnceLock::new());
    let (gated, _) = Actor::spawn(None, Gated, (slot.clone(), Some(gate), done_tx))
        .await
        .expect("gated actor starts");
    let inbox = node.priority_inbox::<Raw>(&gated);
    slot.set(inbox.clone()).expect("set once");
    inbox.register("prio_sink").expect("prio_sink registers");
    erl.ok_in_place("register(tester, self())");
    node.send(
        &RemoteTarget::Name {
            name: node_server::etf::Atom::new("tester"),
            node: node_server::etf::Atom::new(erl.name()),
        },
        Term::tuple(vec![Term::atom("inbox"), Term::from(inbox.alias().clone())]),
    );
    erl.ok_in_place("receive {inbox, A} -> put(alias, A) after 5000 -> exit(no_alias) end");
    let to_alias = if altact {
        "erlang:send(get(alias), urgent, [priority])"
    } else {
        "get(alias) ! urgent"
    };
    erl.ok_in_place(&format!(
        "[{{prio_sink, {rs}}} ! I || I <- lists:seq(1, 50)], {to_alias}, {{prio_sink, {rs}}} ! last"
    ));
    within("all 52 messages queued in the inbox", DEADLINE, async {
        while inbox.len().0 + inbox.len().1 < 52 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(inbox.len(), if altact { (1, 51) } else { (0, 52) });
    gate_tx.send(()).expect("the actor waits at the gate");
    let mut order = Vec::new();
    for _ in 0..52 {
        order.push(
            within("a handled message", DEADLINE, done.recv())
                .await
                .expect("gated runs")
                .to_string(),
        );
    }
    let ordinary: Vec<String> = (1..=50).map(|i| i.to_string()).collect();
    let expected: Vec<String> = if altact {
        std::iter::once("urgent".to_owned())
            .chain(ordinary)
            .chain(["last".to_owned()])
            .collect()
    } else {
        ordinary
            .into_iter()
            .chain(["urgent".to_owned(), "last".to_owned()])
            .collect()
    };
    assert_eq!(order, expected);
    inbox.unalias();
    node.shutdown().await;
}

type Slot = Arc<OnceLock<PriorityInbox<Raw>>>;

/// Waits at a gate before its first message, then reports each message it pops, in order.
struct Gated;

impl Actor for Gated {
    type Msg = Wake;
    type State = (
        Slot,
        Option<tokio::sync::oneshot::Receiver<()>>,
        tokio::sync::mpsc::UnboundedSender<Term>,
    );
    type Arguments = Self::State;

    async fn pre_start(
        &self,
        _: ActorRef<Wake>,
        args: Self::State,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<Wake>,
        _: Wake,
        (slot, gate, done): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(gate) = gate.take() {
            let _ = gate.await;
        }
        if let Some(Raw(term)) = slot.get().and_then(PriorityInbox::pop) {
            let _ = done.send(term);
        }
        Ok(())
    }
}
