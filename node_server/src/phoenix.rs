//! Phoenix.PubSub from Rust: subscribe Rust actors to the topics of an Elixir app's PubSub,
//! broadcast to its subscribers, as one more node of its cluster.
//!
//! An Elixir app's `Phoenix.PubSub` (phoenix_pubsub 2.x, the default `Phoenix.PubSub.PG2`
//! adapter) finds its peers through OTP `pg`, so the node speaks that adapter's wire format
//! and nothing else needs to run on the Elixir side:
//!
//! - the `pg` scope is `Phoenix.PubSub` (the atom `'Elixir.Phoenix.PubSub'`): put
//!   [`SCOPE`] in [`crate::NodeConfig::pg_scopes`] (or call
//!   [`crate::NodeConfig::phoenix_pubsub`]);
//! - a PubSub named `MyApp.PubSub` has one worker per pool member on every node, in the
//!   groups `'Elixir.MyApp.PubSub.Adapter'`, `'Elixir.MyApp.PubSub.Adapter_2'`, ...
//!   `'..._N'` (N = the node's `pool_size`) and registered locally under the same names;
//! - a broadcast sends `{forward_to_local, Topic, Message, Dispatcher}` to the members of one
//!   of those groups on every other node; a direct broadcast sends it to the registered name
//!   on one node; the worker that gets it hands `Message` to its node's subscribers of
//!   `Topic`.
//!
//! Here one worker actor stands for the whole pool: it joins the first group and every
//! `Adapter_N` group it sees a peer use (pool sizes differ between nodes, and a node picks
//! the group it sends to among its own), and is registered under each of those names, so
//! broadcasts and direct broadcasts from any Elixir node reach it. What it receives goes to
//! the Rust actors subscribed to the topic, in the order it arrived, converted to each
//! subscriber's message type ([`crate::FromTerm`]): a subscriber gets the message alone, as an
//! Elixir subscriber does. A message that does not convert is logged at warn level and
//! dropped for that subscriber. A custom `Dispatcher` (Elixir code) cannot run here: such
//! messages are delivered as the default dispatcher would.
//!
//! Broadcasts from Rust go to the members of the first group (`'...Adapter'`, which every
//! node has whatever its pool size): one worker per node, so the messages of one Rust sender
//! reach each node in the order they were sent, as they do from one Elixir process.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use node_server::{etf::Term, remote::Raw, NodeConfig};
//!
//! let node = NodeConfig::new("rust_service").phoenix_pubsub().start().await?;
//! node_server::client_connect(&node, "my_app@host").await?;
//! let pubsub = node.phoenix_pubsub("MyApp.PubSub").await?;
//! # let actor: ractor::ActorRef<Raw> = todo!();
//! pubsub.subscribe("room:lobby", &actor); // `actor` gets what Elixir broadcasts there
//! pubsub
//!     .broadcast("room:lobby", &Term::tuple(vec![Term::atom("new_msg"), Term::binary("hi")]))
//!     .await;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, ActorStatus};

use crate::etf::{Atom, Pid, Term};
use crate::hash::FastMap;
use crate::message::{ErlangMessage, ToTerm};
use crate::node::{Node, RegisterError};
use crate::remote::{Raw, RemoteTarget};

/// The `pg` scope of Phoenix.PubSub's PG2 adapter, as an Erlang atom's text.
pub const SCOPE: &str = crate::config::PHOENIX_PUBSUB_SCOPE;

/// The default dispatcher, which Elixir passes unless a caller names another.
const DEFAULT_DISPATCHER: &str = "Elixir.Phoenix.PubSub";

/// Why a PubSub could not be joined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PubSubError {
    /// The node runs no `pg` scope [`SCOPE`].
    #[error("the pg scope {SCOPE} does not run on this node: add it with NodeConfig::phoenix_pubsub() or NodeConfig::pg_scopes")]
    NoScope,
    /// The name is not an Elixir module name.
    #[error("invalid PubSub name {0:?}: expected an Elixir module name such as MyApp.PubSub")]
    BadName(String),
    /// One of the adapter's names is registered on this node already (by another handle for
    /// the same PubSub, or by another actor).
    #[error("PubSub {0}: the name {1} is registered on this node already")]
    NameTaken(String, String),
    /// The worker actor did not start.
    #[error("PubSub {0}: the worker did not start: {1}")]
    Spawn(String, String),
}

/// A handle on one Elixir PubSub (by name) from this node: get one with
/// [`Node::phoenix_pubsub`]. Cheap to clone; the worker stops when [`PubSub::stop`] is
/// called or the node stops.
#[derive(Clone)]
pub struct PubSub {
    inner: Arc<Inner>,
}

struct Inner {
    node: Node,
    /// The Elixir name, `MyApp.PubSub`.
    name: String,
    /// `Elixir.MyApp.PubSub.Adapter`: the first group and registered name.
    adapter: Atom,
    worker: ActorRef<Raw>,
    topics: Arc<Topics>,
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("name", &self.inner.name)
            .field("worker", &self.inner.worker.get_id())
            .finish_non_exhaustive()
    }
}

/// The text of the atom an Elixir module name is: `MyApp.PubSub` -> `Elixir.MyApp.PubSub`.
fn elixir_atom(name: &str) -> Result<String, PubSubError> {
    let bare = name.strip_prefix("Elixir.").unwrap_or(name);
    let valid = !bare.is_empty()
        && bare.split('.').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if !valid || bare.len() + "Elixir..Adapter_1000".len() > Atom::MAX_CHARS {
        return Err(PubSubError::BadName(name.to_owned()));
    }
    Ok(format!("Elixir.{bare}"))
}

/// Whether `group` is one of the adapter's pool groups: `ADAPTER` or `ADAPTER_N`.
fn is_pool_group(adapter: &str, group: &str) -> bool {
    match group.strip_prefix(adapter) {
        Some("") => true,
        Some(rest) => rest.strip_prefix('_').is_some_and(|n| {
            !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit())
        }),
        None => false,
    }
}

/// `{forward_to_local, Topic, Message, Dispatcher}`.
fn forward_term(topic: &str, message: Term, dispatcher: &str) -> Term {
    Term::tuple(vec![
        Term::atom("forward_to_local"),
        Term::binary(topic),
        message,
        Term::atom(dispatcher),
    ])
}

impl Node {
    /// Joins the Elixir PubSub named `name` (`MyApp.PubSub`, as the app passes it to
    /// `{Phoenix.PubSub, name: MyApp.PubSub}`): starts its worker on this node, in the
    /// adapter's `pg` groups and under its registered names. Needs the `pg` scope [`SCOPE`]
    /// (see [`crate::NodeConfig::phoenix_pubsub`]). One handle per name and node: a second
    /// call for the same name fails with [`PubSubError::NameTaken`] while the first runs.
    pub async fn phoenix_pubsub(&self, name: &str) -> Result<PubSub, PubSubError> {
        let module = elixir_atom(name)?;
        if !self.groups().scope(SCOPE).is_running() {
            return Err(PubSubError::NoScope);
        }
        let adapter = Atom::new(format!("{module}.Adapter"));
        let topics = Arc::new(Topics::default());
        let (worker, _) = Actor::spawn(
            None,
            Worker,
            WorkerArgs {
                node: self.clone(),
                adapter: adapter.clone(),
                topics: topics.clone(),
            },
        )
        .await
        .map_err(|e| PubSubError::Spawn(name.to_owned(), e.to_string()))?;
        if let Err(e) = join_pool_group(self, &worker, adapter.as_str()) {
            worker.stop(None);
            let RegisterError::NameTaken(taken) = e;
            return Err(PubSubError::NameTaken(name.to_owned(), taken));
        }
        // Pool groups that peers already use.
        worker.cast(Raw(Term::atom(RESCAN))).ok();
        Ok(PubSub {
            inner: Arc::new(Inner {
                node: self.clone(),
                name: name.strip_prefix("Elixir.").unwrap_or(name).to_owned(),
                adapter,
                worker,
                topics,
            }),
        })
    }
}

/// Registers the worker under `group` and adds it to the group.
fn join_pool_group(node: &Node, worker: &ActorRef<Raw>, group: &str) -> Result<(), RegisterError> {
    node.register(group, worker)?;
    node.groups().scope(SCOPE).join(group, worker);
    Ok(())
}

impl PubSub {
    /// The PubSub's name, without `Elixir.`: `MyApp.PubSub`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The pid of this node's worker, as Elixir nodes see it in the adapter's groups.
    pub fn worker_pid(&self) -> Pid {
        self.inner.node.pid_of(&self.inner.worker)
    }

    /// The adapter's pool groups in use in the cluster (`Elixir.MyApp.PubSub.Adapter`, and
    /// each `..._N` some node has), sorted; this node's worker joins each as it sees it.
    pub async fn pool_groups(&self) -> Vec<String> {
        let mut groups = self
            .inner
            .node
            .groups()
            .scope(SCOPE)
            .with_prefix(self.inner.adapter.as_str())
            .await;
        groups.retain(|g| is_pool_group(self.inner.adapter.as_str(), g));
        groups
    }

    /// Subscribes a local actor to `topic`: every message broadcast there, by Elixir or by
    /// Rust, reaches it converted to `M` (as `Phoenix.PubSub.subscribe/2` for an Elixir
    /// process). Subscribing twice delivers twice, as in Elixir. A stopped actor's
    /// subscriptions go by themselves.
    pub fn subscribe<M: ErlangMessage>(&self, topic: &str, actor: &ActorRef<M>) {
        let target = actor.clone();
        let topic_name = topic.to_owned();
        let deliver: DeliverFn = Box::new(move |message: &Term| match M::from_term(message) {
            Ok(m) => {
                let _ = target.cast(m);
            }
            Err(e) => tracing::warn!(
                topic = %topic_name,
                actor = %target.get_id(),
                error = %e,
                %message,
                "PubSub message does not convert to the subscriber's type; dropped for it"
            ),
        });
        self.inner.topics.add(
            topic,
            Subscriber {
                id: actor.get_id(),
                cell: actor.get_cell(),
                deliver,
            },
        );
    }

    /// Ends every subscription of `actor` to `topic`.
    pub fn unsubscribe(&self, topic: &str, actor: &ActorCell) {
        self.inner.topics.remove(topic, actor.get_id());
    }

    /// Broadcasts `message` on `topic` to every subscriber, on every node of the PubSub
    /// (`Phoenix.PubSub.broadcast/3`). Returns how many other nodes it was sent to.
    pub async fn broadcast(&self, topic: &str, message: &impl ToTerm) -> usize {
        self.broadcast_excluding(topic, message.to_term(), None)
            .await
    }

    /// As [`PubSub::broadcast`], but this node's subscription of `from` does not get it
    /// (`Phoenix.PubSub.broadcast_from/4`; on other nodes, as in Elixir, every subscriber
    /// does).
    pub async fn broadcast_from(
        &self,
        from: &ActorCell,
        topic: &str,
        message: &impl ToTerm,
    ) -> usize {
        self.broadcast_excluding(topic, message.to_term(), Some(from.get_id()))
            .await
    }

    async fn broadcast_excluding(
        &self,
        topic: &str,
        message: Term,
        except: Option<ActorId>,
    ) -> usize {
        let inner = &self.inner;
        let me = inner.node.name();
        let members = inner
            .node
            .groups()
            .scope(SCOPE)
            .members(inner.adapter.as_str())
            .await;
        // Encoded once for every node it goes to.
        let forward = forward_term(topic, message.clone(), DEFAULT_DISPATCHER).encode();
        let shared = inner.node.shared();
        let mut sent = 0;
        for pid in members.into_iter().filter(|p| p.node.as_str() != me) {
            shared.send_raw(&RemoteTarget::Pid(pid), forward.clone());
            sent += 1;
        }
        inner.topics.dispatch(topic, &message, except);
        sent
    }

    /// Broadcasts `message` on `topic` to this node's subscribers only
    /// (`Phoenix.PubSub.local_broadcast/3`).
    pub fn local_broadcast(&self, topic: &str, message: &impl ToTerm) {
        self.inner.topics.dispatch(topic, &message.to_term(), None);
    }

    /// Broadcasts `message` on `topic` to the subscribers on `node` only
    /// (`Phoenix.PubSub.direct_broadcast/4`): sent to the adapter's registered name there,
    /// or dispatched here when `node` is this node.
    pub fn direct_broadcast(&self, node: &str, topic: &str, message: &impl ToTerm) {
        let inner = &self.inner;
        let message = message.to_term();
        if node == inner.node.name() {
            inner.topics.dispatch(topic, &message, None);
            return;
        }
        inner.node.send(
            &RemoteTarget::Name {
                name: inner.adapter.clone(),
                node: Atom::new(node),
            },
            forward_term(topic, message, DEFAULT_DISPATCHER),
        );
    }

    /// How many subscriptions `topic` has on this node.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.inner.topics.count(topic)
    }

    /// Stops this node's worker: it leaves the groups and releases its names.
    pub fn stop(&self) {
        self.inner.worker.stop(None);
    }
}

type DeliverFn = Box<dyn Fn(&Term) + Send + Sync>;

struct Subscriber {
    id: ActorId,
    cell: ActorCell,
    deliver: DeliverFn,
}

/// The subscriptions of one PubSub on this node, by topic.
#[derive(Default)]
struct Topics {
    by_topic: Mutex<FastMap<String, Vec<Subscriber>>>,
}

impl Topics {
    fn add(&self, topic: &str, subscriber: Subscriber) {
        crate::lock(&self.by_topic)
            .entry(topic.to_owned())
            .or_default()
            .push(subscriber);
    }

    fn remove(&self, topic: &str, id: ActorId) {
        let mut map = crate::lock(&self.by_topic);
        if let Some(subs) = map.get_mut(topic) {
            subs.retain(|s| s.id != id);
            if subs.is_empty() {
                map.remove(topic);
            }
        }
    }

    fn count(&self, topic: &str) -> usize {
        crate::lock(&self.by_topic).get(topic).map_or(0, Vec::len)
    }

    /// Hands `message` to every live subscriber of `topic` but `except`; forgets the stopped.
    fn dispatch(&self, topic: &str, message: &Term, except: Option<ActorId>) {
        let mut map = crate::lock(&self.by_topic);
        let Some(subs) = map.get_mut(topic) else {
            return;
        };
        subs.retain(|s| s.cell.get_status() < ActorStatus::Draining);
        for s in subs.iter().filter(|s| Some(s.id) != except) {
            (s.deliver)(message);
        }
        if subs.is_empty() {
            map.remove(topic);
        }
    }
}

/// Asks the worker to look for pool groups it is not in yet.
const RESCAN: &str = "$node_server_pubsub_rescan";

/// The PubSub worker: one actor for the whole pool.
struct Worker;

struct WorkerArgs {
    node: Node,
    adapter: Atom,
    topics: Arc<Topics>,
}

struct WorkerState {
    node: Node,
    adapter: Atom,
    topics: Arc<Topics>,
    /// The pool groups joined (and names registered).
    joined: HashSet<String>,
}

impl WorkerState {
    /// The `ractor::pg` scope of [`SCOPE`] on this node.
    fn ractor_scope(&self) -> String {
        crate::pg::ractor_scope_of(&self.node.shared().id.config, SCOPE)
    }

    /// Joins `group` if it is a pool group not joined yet.
    fn consider(&mut self, myself: &ActorRef<Raw>, group: &str) {
        if !is_pool_group(self.adapter.as_str(), group) || self.joined.contains(group) {
            return;
        }
        self.joined.insert(group.to_owned());
        if group == self.adapter.as_str() {
            return; // joined by `Node::phoenix_pubsub`
        }
        match join_pool_group(&self.node, myself, group) {
            Ok(()) => tracing::debug!(%group, "PubSub worker joined a pool group a peer uses"),
            Err(e) => {
                tracing::warn!(%group, error = %e, "PubSub worker cannot take a pool group's name")
            }
        }
    }

    /// `{forward_to_local, Topic, Message, Dispatcher}` from a peer's broadcast.
    fn forwarded(&self, term: &Term) {
        let Some([tag, topic, message, dispatcher]) = term.as_tuple() else {
            tracing::debug!(%term, "PubSub worker ignores a message");
            return;
        };
        let (true, Some(topic), Some(dispatcher)) = (
            tag.is_atom("forward_to_local"),
            topic.as_binary().and_then(|t| std::str::from_utf8(t).ok()),
            dispatcher.as_atom(),
        ) else {
            tracing::debug!(%term, "PubSub worker ignores a message");
            return;
        };
        if dispatcher.as_str() != DEFAULT_DISPATCHER {
            tracing::debug!(%dispatcher, "custom PubSub dispatcher: delivering as the default one");
        }
        self.topics.dispatch(topic, message, None);
    }
}

impl Actor for Worker {
    type Msg = Raw;
    type State = WorkerState;
    type Arguments = WorkerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Raw>,
        args: WorkerArgs,
    ) -> Result<WorkerState, ActorProcessingErr> {
        let scope = crate::pg::ractor_scope_of(&args.node.shared().id.config, SCOPE);
        ractor::pg::monitor_scope(scope, myself.get_cell());
        let mut joined = HashSet::new();
        joined.insert(args.adapter.as_str().to_owned());
        Ok(WorkerState {
            node: args.node,
            adapter: args.adapter,
            topics: args.topics,
            joined,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Raw>,
        Raw(term): Raw,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        if term.is_atom(RESCAN) {
            for group in ractor::pg::which_scoped_groups(&state.ractor_scope()) {
                state.consider(&myself, &group);
            }
        } else {
            state.forwarded(&term);
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Raw>,
        event: ractor::SupervisionEvent,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        if let ractor::SupervisionEvent::ProcessGroupChanged(
            ractor::pg::GroupChangeMessage::Join(_, group, _),
        ) = event
        {
            state.consider(&myself, &group);
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        myself: ActorRef<Raw>,
        state: &mut WorkerState,
    ) -> Result<(), ActorProcessingErr> {
        ractor::pg::demonitor_scope(state.ractor_scope(), myself.get_id());
        for group in &state.joined {
            state.node.unregister(group);
            state.node.groups().scope(SCOPE).leave(group, &myself);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elixir_names() {
        assert_eq!(elixir_atom("MyApp.PubSub").unwrap(), "Elixir.MyApp.PubSub");
        assert_eq!(
            elixir_atom("Elixir.MyApp.PubSub").unwrap(),
            "Elixir.MyApp.PubSub"
        );
        assert_eq!(elixir_atom("PS").unwrap(), "Elixir.PS");
        for bad in [
            "",
            "myapp",
            "MyApp..PubSub",
            "MyApp.pubSub",
            "My App",
            "Elixir.",
        ] {
            assert!(
                matches!(elixir_atom(bad), Err(PubSubError::BadName(_))),
                "{bad:?}"
            );
        }
        assert!(elixir_atom(&"A".repeat(300)).is_err());
    }

    #[test]
    fn pool_groups() {
        let a = "Elixir.MyApp.PubSub.Adapter";
        assert!(is_pool_group(a, a));
        assert!(is_pool_group(a, "Elixir.MyApp.PubSub.Adapter_2"));
        assert!(is_pool_group(a, "Elixir.MyApp.PubSub.Adapter_16"));
        for not in [
            "Elixir.MyApp.PubSub.Adapter_",
            "Elixir.MyApp.PubSub.Adapter_x",
            "Elixir.MyApp.PubSub.Adapter2",
            "Elixir.MyApp.PubSub.Adapter_2_3",
            "Elixir.Other.PubSub.Adapter",
            "Elixir.MyApp.PubSub.Adapter_99999",
        ] {
            assert!(!is_pool_group(a, not), "{not}");
        }
    }

    #[test]
    fn forward_shape() {
        let t = forward_term("t", Term::Int(1), DEFAULT_DISPATCHER);
        assert_eq!(
            t.to_string(),
            "{forward_to_local,<<116>>,1,'Elixir.Phoenix.PubSub'}"
        );
    }
}
