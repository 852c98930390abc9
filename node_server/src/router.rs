//! The router: this node's processes by pid, name and alias ([`crate::registry`]), the
//! fallback for messages no actor takes, and the rules of local delivery that every path
//! uses (a session's reader, `pg` groups, `global`, the built-in rpc functions): a message to
//! an actor (a `gen_server` call when it has that shape and the actor takes it, else a cast,
//! else the fallback), and exit signals (`kill`, `normal`, trapped exits).
//!
//! It also keeps the links and monitors that other nodes' processes hold on local actors
//! ([`crate::signals`]), and which actors trap exits.

use std::sync::{Mutex, OnceLock, RwLock};

use ractor::{ActorCell, ActorId, ActorRef};

use crate::dist::control::ProcessRef;
use crate::etf::{Atom, Pid, Term};
use crate::lock;
use crate::message::{ErlangMessage, ReplyTo};
use crate::registry::{LocalActor, LocalProcess, Registry};
use crate::remote::Raw;
use crate::signals::{Signals, Watched};

/// Where the replies of local actors to a remote caller's `gen_server` calls go: the
/// session the call came in on.
pub(crate) trait ReplyPath {
    /// A port that answers `caller` (tag `tag`) from local process `from`.
    fn reply_to(&self, from: &Pid, caller: &Pid, tag: &Term) -> ReplyTo;
    /// Runs `wait` where the replies are written (a reply that comes back as bytes).
    fn wait(&self, wait: crate::waiter::Wait);
}

/// Why an exit signal reached a local actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExitKind {
    /// Over a link: the linked process exited.
    Link,
    /// `exit(Pid, Reason)`.
    Exit2,
}

/// The node's processes and the rules of delivering to them.
pub(crate) struct Router {
    registry: Mutex<Registry>,
    fallback: RwLock<Option<ActorRef<Raw>>>,
    signals: Mutex<Signals>,
    /// The node server, which monitors the local actors remote processes watch.
    watcher: OnceLock<ActorCell>,
}

impl Router {
    pub fn new(registry: Registry) -> Router {
        Router {
            registry: Mutex::new(registry),
            fallback: RwLock::new(None),
            signals: Mutex::new(Signals::default()),
            watcher: OnceLock::new(),
        }
    }

    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    pub fn signals(&self) -> std::sync::MutexGuard<'_, Signals> {
        lock(&self.signals)
    }

    /// The live local process a pid or name refers to, if any.
    pub fn resolve(&self, target: &ProcessRef) -> Option<LocalProcess> {
        self.registry().resolve(target)
    }

    /// Sets the actor that hears when watched local actors stop (the node server).
    pub fn set_watcher(&self, cell: ActorCell) {
        let _ = self.watcher.set(cell);
    }

    /// Where messages that no actor could decode go.
    pub fn set_fallback(&self, fallback: Option<ActorRef<Raw>>) {
        *crate::write(&self.fallback) = fallback;
    }

    /// Hands a message no local process could take to the fallback actor, if one is set.
    pub fn undeliverable(&self, to: &ProcessRef, msg: Term) {
        tracing::warn!(?to, %msg, "message does not decode into the receiving actor's type");
        let fallback = crate::read(&self.fallback).clone();
        if let Some(fallback) = fallback {
            let _ = fallback.cast(Raw(msg));
        }
    }

    /// Exposes a typed actor to Erlang (once; later calls give the same pid).
    pub fn expose<M: ErlangMessage>(&self, actor: &ActorRef<M>) -> std::sync::Arc<LocalActor> {
        self.registry()
            .expose(&actor.get_cell(), || typed_delivery(actor), M::accepts_call)
    }

    /// Sends `msg` to a local actor or service, as `!` does: a cast for an actor (the
    /// fallback when it does not take the term), the service's handler for a service.
    /// `from_node` is the node the message came from. False when no such process exists.
    pub fn send(&self, to: &ProcessRef, msg: Term, from_node: &Atom) -> bool {
        match self.resolve(to) {
            Some(LocalProcess::Actor(actor)) => {
                self.deliver_to_actor(&actor, to, msg, None);
                true
            }
            Some(LocalProcess::Service(service)) => {
                (service.deliver)(from_node, msg);
                true
            }
            _ => {
                tracing::debug!(
                    ?to,
                    "message to a local process that does not exist dropped"
                );
                false
            }
        }
    }

    /// A `gen_server` call from this node to a local actor: `None` when no actor has that
    /// pid or name, `Some(false)` when it takes no such request.
    pub fn call(&self, to: &ProcessRef, request: &Term, on_reply: ReplyTo) -> Option<bool> {
        match self.resolve(to) {
            Some(LocalProcess::Actor(actor)) => Some((actor.call)(request, on_reply)),
            _ => None,
        }
    }

    /// A message for a Rust actor: with a reply path, a `gen_server` call when it has the
    /// `'$gen_call'` shape and the actor takes the request; else a cast when the actor takes
    /// the term; else the fallback.
    pub fn deliver_to_actor(
        &self,
        actor: &LocalActor,
        to: &ProcessRef,
        msg: Term,
        path: Option<&dyn ReplyPath>,
    ) {
        actor
            .delivered
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let (Some(path), Some((caller, tag, request))) = (path, gen_call_parts(&msg)) {
            if (actor.call)(request, path.reply_to(&actor.pid, caller, tag)) {
                return;
            }
            if (actor.accepts_call)(request) {
                use ractor::message::SerializedMessage;
                let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
                let call = SerializedMessage::Call {
                    variant: String::new(),
                    args: request.encode().to_vec(),
                    reply: tx.into(),
                    metadata: None,
                };
                if actor.cell.send_serialized(call).is_ok() {
                    let reply = path.reply_to(&actor.pid, caller, tag);
                    path.wait(Box::pin(async move {
                        if let Ok(bytes) = rx.await {
                            match Term::decode_slice(&bytes) {
                                Ok(term) => reply.reply(term),
                                Err(e) => tracing::warn!(error = %e, "actor reply did not decode"),
                            }
                        }
                    }));
                }
                return;
            }
        }
        if (actor.cast)(&msg) {
            return;
        }
        self.undeliverable(to, msg);
    }

    /// An exit signal from `from` to a local actor, as Erlang: `kill` by `exit/2` kills it
    /// (reason `killed`); an actor that traps exits gets `{'EXIT', From, Reason}`; `normal`
    /// is ignored; any other reason stops the actor with that reason.
    pub fn exit_signal(&self, from: Pid, actor: &LocalActor, reason: Term, kind: ExitKind) {
        let id = actor.cell.get_id();
        let trapping = {
            let mut signals = self.signals();
            if kind == ExitKind::Link {
                if let Some(w) = signals.watched.get_mut(&id) {
                    w.links.retain(|p| *p != from);
                }
            }
            signals.trapping.contains(&id)
        };
        if reason.is_atom("kill") && kind == ExitKind::Exit2 {
            self.signals().exit_reasons.insert(id, Term::atom("killed"));
            actor.cell.kill();
        } else if trapping {
            let msg = Term::tuple(vec![Term::atom("EXIT"), Term::Pid(from), reason]);
            if !(actor.cast)(&msg) {
                self.undeliverable(&ProcessRef::Pid(actor.pid.clone()), msg);
            }
        } else if !reason.is_atom("normal") {
            let text = crate::signals::stop_reason_for_exit(&reason);
            self.signals().exit_reasons.insert(id, reason);
            actor.cell.stop(Some(text));
        }
    }

    /// Whether a local actor traps exits.
    pub fn trap_exits(&self, id: ActorId, trap: bool) {
        let mut signals = self.signals();
        if trap {
            signals.trapping.insert(id);
        } else {
            signals.trapping.remove(&id);
        }
    }

    /// Records a remote monitor or link on a local actor and makes sure the node server
    /// hears when the actor stops. When the actor is already gone, gives back what it was
    /// watched for, to be answered `noproc`.
    pub fn watch(
        &self,
        actor: &LocalActor,
        add: impl FnOnce(&mut Signals, ActorId),
    ) -> Result<(), Watched> {
        let id = actor.cell.get_id();
        let first = {
            let mut signals = self.signals();
            let w = signals.watched.entry(id).or_default();
            let first = w.pid.is_none();
            w.pid = Some(actor.pid.clone());
            add(&mut signals, id);
            first
        };
        if first {
            if let Some(watcher) = self.watcher.get() {
                watcher.monitor(actor.cell.clone());
            }
        }
        if actor.cell.get_status() >= ractor::ActorStatus::Stopping {
            // It stopped before the watch took: no event will come.
            if let Some(w) = self.signals().forget_watched(&id) {
                return Err(w);
            }
        }
        Ok(())
    }

    /// Removes the link between remote `remote` and local `local`.
    pub fn unlink(&self, remote: &Pid, local: &Pid) {
        if let Some(LocalProcess::Actor(actor)) = self.resolve(&ProcessRef::Pid(local.clone())) {
            if let Some(w) = self.signals().watched.get_mut(&actor.cell.get_id()) {
                w.links.retain(|p| p != remote);
            }
        }
    }
}

/// `{'$gen_call', {From, Tag}, Request}` taken apart.
pub(crate) fn gen_call_parts(msg: &Term) -> Option<(&Pid, &Term, &Term)> {
    let [label, from, request] = msg.as_tuple()? else {
        return None;
    };
    if !label.is_atom("$gen_call") {
        return None;
    }
    match from.as_tuple()? {
        [Term::Pid(caller), tag] => Some((caller, tag, request)),
        _ => None,
    }
}

/// Delivery to a typed local actor, in-process: a cast's term converts straight into `M`, and
/// a call's request into its `#[rpc]` variant with a reply port that answers the caller, with
/// no second encode and decode either way.
fn typed_delivery<M: ErlangMessage>(
    actor: &ActorRef<M>,
) -> (crate::registry::CastFn, crate::registry::CallFn) {
    let for_casts = actor.clone();
    let cast: crate::registry::CastFn = Box::new(move |term: &Term| match M::from_term(term) {
        Ok(msg) => {
            if for_casts.cast(msg).is_err() {
                tracing::debug!("actor stopped; message dropped");
            }
            true
        }
        Err(_) => false,
    });
    let for_calls = actor.clone();
    let call: crate::registry::CallFn =
        Box::new(
            move |request: &Term, on_reply| match M::call_from_term(request, on_reply) {
                Some(msg) => {
                    if for_calls.cast(msg).is_err() {
                        tracing::debug!("actor stopped; call dropped");
                    }
                    true
                }
                None => false,
            },
        );
    (cast, call)
}
