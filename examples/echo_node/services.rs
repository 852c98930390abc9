//! The services `echo_node` runs, shared with the tests and benches that run them in-process:
//! `echo` (on `{From, Msg}` sends `Msg` back to `From`), `kv` (a typed gen_server over any
//! terms) and the rpc functions `echo_node:add/2`, `echo_node:call_back/4` and
//! `echo_node:members/2` (the pids this node sees in a `pg` group) and
//! `echo_node:whereis_global/1` (the pid of a `global` name, or `undefined`), and the flow
//! control ones: `echo_node:flood/3`, `echo_node:flood_cast/3` and
//! `echo_node:connection_stats/1`.
// Each includer uses a subset.
#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use node_server::etf::Term;
use node_server::remote::{Raw, RemoteTarget};
use node_server::rpc::{RpcError, RpcFailure};
use node_server::{ErlangMessage, FromTerm, Node, ToTerm};
use num_bigint::BigInt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

/// Registered as `kv`: a typed gen_server over any terms.
#[derive(Debug, ErlangMessage)]
pub enum KvMsg {
    /// `{put, Key, Value}` -> `ok`
    #[rpc]
    Put(Term, Term, RpcReplyPort<()>),
    /// `{get, Key}` -> `{ok, Value}` or `not_found`
    #[rpc]
    Get(Term, RpcReplyPort<Lookup>),
    /// `{delete, Key}` -> `ok`
    #[rpc]
    Delete(Term, RpcReplyPort<()>),
}

/// The answer to `get`.
#[derive(Debug, ToTerm, FromTerm)]
pub enum Lookup {
    Ok(Term),
    NotFound,
}

pub struct Kv;

impl Actor for Kv {
    type Msg = KvMsg;
    type State = HashMap<Term, Term>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _me: ActorRef<KvMsg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(HashMap::new())
    }

    async fn handle(
        &self,
        _me: ActorRef<KvMsg>,
        msg: KvMsg,
        store: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            KvMsg::Put(k, v, reply) => {
                store.insert(k, v);
                let _ = reply.send(());
            }
            KvMsg::Get(k, reply) => {
                let _ = reply.send(store.get(&k).cloned().map_or(Lookup::NotFound, Lookup::Ok));
            }
            KvMsg::Delete(k, reply) => {
                store.remove(&k);
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

/// The messages of kind `counter`.
#[derive(Debug, ErlangMessage)]
pub enum CounterMsg {
    /// `{add, N}`: adds N.
    Add(i64),
    /// `{get, From}`: sends `{count, Value}` to From.
    #[term(rename = "get")]
    GetTo(node_server::etf::Pid),
    /// `gen_server:call(Pid, get)` -> Value
    #[rpc]
    Get(RpcReplyPort<i64>),
    /// `crash`: exits with reason `crashed`.
    Crash,
}

/// Kind `counter` (see [`register_kinds`]): a counter that starts at its one argument.
pub struct Counter {
    node: Node,
}

impl Counter {
    /// A counter on `node`.
    pub fn new(node: &Node) -> Counter {
        Counter { node: node.clone() }
    }
}

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = i64;
    type Arguments = i64;

    async fn pre_start(
        &self,
        _me: ActorRef<CounterMsg>,
        initial: i64,
    ) -> Result<i64, ActorProcessingErr> {
        Ok(initial)
    }

    async fn handle(
        &self,
        me: ActorRef<CounterMsg>,
        msg: CounterMsg,
        count: &mut i64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Add(n) => *count = count.saturating_add(n),
            CounterMsg::GetTo(from) => self.node.send(
                &RemoteTarget::Pid(from),
                Term::tuple(vec![Term::atom("count"), Term::Int(*count)]),
            ),
            CounterMsg::Get(reply) => {
                let _ = reply.send(*count);
            }
            CounterMsg::Crash => self.node.exit_actor(&me, Term::atom("crashed")),
        }
        Ok(())
    }
}

/// Registers the spawnable kinds of `echo_node`: `counter` (args `[Initial]`, an integer).
pub fn register_kinds(node: &Node) {
    node.spawnable_made(node_server::kinds::KindSpec::new("counter"), |node| {
        Counter { node: node.clone() }
    })
    .expect("a valid kind name");
}

/// Registered as `echo`: on `{From, Msg}` sends `Msg` back to `From`, whatever the term.
pub struct Echo;

impl Actor for Echo {
    type Msg = Raw;
    type State = Node;
    type Arguments = Node;

    async fn pre_start(&self, _me: ActorRef<Raw>, node: Node) -> Result<Node, ActorProcessingErr> {
        Ok(node)
    }

    async fn handle(
        &self,
        _me: ActorRef<Raw>,
        Raw(msg): Raw,
        node: &mut Node,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Term::Tuple(mut parts) if parts.len() == 2 && matches!(parts[0], Term::Pid(_)) => {
                let reply = parts.pop().unwrap_or_default();
                if let Some(Term::Pid(from)) = parts.pop() {
                    node.send(&RemoteTarget::Pid(from), reply);
                }
            }
            other => tracing::warn!(%other, "echo expects {{From, Msg}}"),
        }
        Ok(())
    }
}

/// The most bytes `echo_node:flood/3` puts in one message.
const FLOOD_MAX_BYTES: i64 = 16 << 20;

/// The arguments of `flood/3` and `flood_cast/3`: (pid, count, the payload).
fn flood_args(args: &[Term]) -> Result<(node_server::etf::Pid, i64, Term), RpcFailure> {
    match args {
        [Term::Pid(pid), Term::Int(count), Term::Int(bytes)]
            if *count >= 0 && (0..=FLOOD_MAX_BYTES).contains(bytes) =>
        {
            let payload = Term::Binary(bytes::Bytes::from(vec![b'x'; *bytes as usize]));
            Ok((pid.clone(), *count, payload))
        }
        _ => Err(RpcFailure::badarg()),
    }
}

fn flood_message(seq: i64, payload: &Term) -> Term {
    Term::tuple(vec![Term::atom("flood"), Term::Int(seq), payload.clone()])
}

/// `echo_node:flood(Pid, Count, Bytes)`, `echo_node:flood_cast(Pid, Count, Bytes)` and
/// `echo_node:connection_stats(Node)`.
///
/// `flood` returns `ok` at once and sends `{flood, Seq, <<Bytes bytes>>}` with `Seq` =
/// 1..Count to `Pid` through the flow-controlled path ([`node_server::ProcessHandle::send`],
/// which waits while the connection is busy). `flood_cast` sends the same as ractor casts on
/// an `ActorRef` (which cannot wait: at the connection queue's hard cap they are dropped and
/// counted). `connection_stats` returns the counters of the connection with `Node` as a map
/// (`queued_bytes`, `messages_out`, `bytes_out`, `messages_in`, `bytes_in`, `busy`,
/// `dropped`), or `undefined`.
pub fn register_flood(node: &Node) {
    let flooder = node.clone();
    node.register_fn("echo_node", "flood", move |args| {
        let node = flooder.clone();
        async move {
            let (pid, count, payload) = flood_args(&args)?;
            let target = RemoteTarget::Pid(pid);
            let handle = node
                .process(&target)
                .await
                .map_err(|e| RpcFailure::Error(Term::binary(e.to_string())))?;
            tokio::spawn(async move {
                for seq in 1..=count {
                    if let Err(e) = handle.send_term(flood_message(seq, &payload)).await {
                        tracing::warn!(error = %e, seq, "flood stopped");
                        return;
                    }
                }
            });
            Ok(Term::atom("ok"))
        }
    });
    let caster = node.clone();
    node.register_fn("echo_node", "flood_cast", move |args| {
        let node = caster.clone();
        async move {
            let (pid, count, payload) = flood_args(&args)?;
            let actor: ActorRef<Raw> = node
                .remote_pid(pid)
                .await
                .map_err(|e| RpcFailure::Error(Term::binary(e.to_string())))?;
            tokio::spawn(async move {
                for seq in 1..=count {
                    if actor.cast(Raw(flood_message(seq, &payload))).is_err() {
                        return;
                    }
                    // Let the proxy run while the loop goes (see `node_server::remote`).
                    tokio::task::coop::consume_budget().await;
                }
            });
            Ok(Term::atom("ok"))
        }
    });
    let stats = node.clone();
    node.register_fn("echo_node", "connection_stats", move |args| {
        let node = stats.clone();
        async move {
            let [Term::Atom(peer)] = &args[..] else {
                return Err(RpcFailure::badarg());
            };
            Ok(match node.connection_stats(peer.as_str()) {
                None => Term::atom("undefined"),
                Some(s) => {
                    let int = |v: u64| Term::Int(i64::try_from(v).unwrap_or(i64::MAX));
                    Term::from(node_server::etf::Map::from_iter([
                        (Term::atom("queued_bytes"), int(s.queued_bytes)),
                        (Term::atom("messages_out"), int(s.messages_out)),
                        (Term::atom("bytes_out"), int(s.bytes_out)),
                        (Term::atom("messages_in"), int(s.messages_in)),
                        (Term::atom("bytes_in"), int(s.bytes_in)),
                        (Term::atom("busy"), int(s.busy)),
                        (Term::atom("dropped"), int(s.dropped)),
                    ]))
                }
            })
        }
    });
}

/// `echo_node:add(A, B)` and `echo_node:call_back(Node, M, F, Args)` for `rpc:call`.
pub fn register_functions(node: &Node) {
    register_flood(node);
    register_kinds(node);
    let global = node.clone();
    node.register_fn("echo_node", "whereis_global", move |args| {
        let node = global.clone();
        async move {
            let [name] = &args[..] else {
                return Err(RpcFailure::badarg());
            };
            Ok(node
                .global()
                .whereis(name.clone())
                .await
                .map(Term::Pid)
                .unwrap_or_else(|| Term::atom("undefined")))
        }
    });
    let groups = node.clone();
    node.register_fn("echo_node", "members", move |args| {
        let node = groups.clone();
        async move {
            let [Term::Atom(scope), group] = &args[..] else {
                return Err(RpcFailure::badarg());
            };
            let pids = node
                .groups()
                .scope(scope.as_str())
                .members(&node_server::pg::group_name(group))
                .await;
            Ok(Term::list(
                pids.into_iter().map(Term::from).collect::<Vec<_>>(),
            ))
        }
    });
    node.register_fn("echo_node", "add", |args| async move {
        match &args[..] {
            [a, b] => match (BigInt::from_term(a), BigInt::from_term(b)) {
                (Ok(a), Ok(b)) => Ok((a + b).to_term()),
                _ => Err(RpcFailure::badarith()),
            },
            _ => Err(RpcFailure::Error(Term::atom("undef"))),
        }
    });
    let caller = node.clone();
    node.register_fn("echo_node", "call_back", move |args| {
        let node = caller.clone();
        async move {
            let [Term::Atom(target), Term::Atom(m), Term::Atom(f), Term::List(a)] = &args[..]
            else {
                return Err(RpcFailure::badarg());
            };
            match node
                .rpc(
                    target.as_str(),
                    m.as_str(),
                    f.as_str(),
                    a.clone(),
                    Duration::from_secs(10),
                )
                .await
            {
                Ok(value) => Ok(value),
                Err(RpcError::BadRpc(reason)) => {
                    Ok(Term::tuple(vec![Term::atom("badrpc"), reason]))
                }
                Err(e) => Err(RpcFailure::Error(Term::tuple(vec![
                    Term::atom("call_back"),
                    Term::binary(e.to_string()),
                ]))),
            }
        }
    });
}

/// With `--phoenix-pubsub NAME`: subscribed to topic `"echo"` of the Elixir PubSub `NAME`;
/// for each message `M` published there, broadcasts `{echoed, M}` on topic `"echo:reply"`.
pub struct PubSubEcho;

impl Actor for PubSubEcho {
    type Msg = Raw;
    type State = node_server::phoenix::PubSub;
    type Arguments = node_server::phoenix::PubSub;

    async fn pre_start(
        &self,
        myself: ActorRef<Raw>,
        pubsub: node_server::phoenix::PubSub,
    ) -> Result<Self::State, ActorProcessingErr> {
        pubsub.subscribe("echo", &myself);
        Ok(pubsub)
    }

    async fn handle(
        &self,
        _me: ActorRef<Raw>,
        Raw(msg): Raw,
        pubsub: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let reply = Term::tuple(vec![Term::atom("echoed"), msg]);
        pubsub.broadcast("echo:reply", &reply).await;
        Ok(())
    }
}
