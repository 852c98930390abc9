//! The node's core: its state split by concept, each part owned by the module of its concept,
//! and the few rules that need more than one part (a call out needs the session and the calls
//! in flight; a watched actor's exit goes out on sessions).
//!
//! | part | module | what it holds |
//! |---|---|---|
//! | `id` | [`crate::identity`] | name, creation, cookie, flags, configuration, well-known pids |
//! | `sessions` | [`crate::sessions`] | the live connection to each node |
//! | `calls` | [`crate::calls`] | this node's calls in flight |
//! | `proxies` | [`crate::proxies`] | proxy actors by remote target |
//! | `router` | [`crate::router`] | local processes, delivery and exit rules, links and monitors |
//! | `functions` | [`crate::rpc`] | the functions callable by rpc |
//! | `events` | [`crate::events`] | node up/down |
//! | `ops` | [`crate::ops`] | counters, uptime, graceful stop |
//! | `services` | here | handles of the services built on the core (`pg`, `global`, ...) |
//! | `server` | [`crate::server`] | the node server actor (connects, stops the node) |
//!
//! The services (`pg`, `global`, `groups`, `builtins`, `phoenix`) sit above: they use the core;
//! the core never names them. A service keeps its handle in [`Services`], keyed by its type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::time::Instant;

use ractor::{ActorCell, ActorId};

use crate::calls::{CallReply, Calls, PendingCall};
use crate::dist::control::{Control, ProcessRef};
use crate::etf::{Atom, Pid, Reference, Term};
use crate::events::Events;
use crate::identity::Identity;
use crate::lock;
use crate::outgoing::{CallRequest, Outgoing};
use crate::proxies::Proxies;
use crate::registry::{LocalActor, LocalProcess, Registry};
use crate::remote::{send_control, RemoteTarget};
use crate::router::{ExitKind, Router};
use crate::rpc::Functions;
use crate::sessions::{SessionHandle, Sessions};
use crate::signals::{DownTo, Signals, Watched};

/// The state of one node, by concept.
pub(crate) struct Core {
    pub id: Identity,
    pub sessions: Sessions,
    pub calls: Calls,
    pub proxies: Proxies,
    pub router: Router,
    pub functions: Functions,
    pub events: Events,
    pub ops: crate::ops::Ops,
    pub busy: Arc<crate::busy::BusyPoll>,
    pub services: Services,
    /// The node server actor, set when it starts.
    pub server: OnceLock<ActorCell>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("node", &self.id.name)
            .finish_non_exhaustive()
    }
}

/// The handles of the services built on the core, one per type.
#[derive(Default)]
pub(crate) struct Services {
    by_type: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Services {
    /// The service of type `T`, if it was set.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let any = lock(&self.by_type).get(&TypeId::of::<T>())?.clone();
        any.downcast::<T>().ok()
    }

    /// The service of type `T`, made with `make` the first time.
    pub fn get_or_insert<T: Any + Send + Sync>(&self, make: impl FnOnce() -> T) -> Arc<T> {
        let mut by_type = lock(&self.by_type);
        let any = by_type
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Arc::new(make()))
            .clone();
        any.downcast::<T>()
            .unwrap_or_else(|_| unreachable!("entries are keyed by their type"))
    }
}

impl Core {
    /// A node's core, with no connection yet.
    pub fn new(id: Identity, registry: Registry, busy_wait: std::time::Duration) -> Core {
        Core {
            id,
            sessions: Sessions::default(),
            calls: Calls::default(),
            proxies: Proxies::default(),
            router: Router::new(registry),
            functions: Functions::default(),
            events: Events::default(),
            ops: crate::ops::Ops::default(),
            busy: Arc::new(crate::busy::BusyPoll::new(busy_wait)),
            services: Services::default(),
            server: OnceLock::new(),
        }
    }

    /// The live session with `node`.
    pub fn session(&self, node: &Atom) -> Option<SessionHandle> {
        self.sessions.get(node)
    }

    /// The live local process a pid or name refers to, if any.
    pub fn resolve(&self, target: &ProcessRef) -> Option<LocalProcess> {
        self.router.resolve(target)
    }

    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.router.registry()
    }

    pub fn signals(&self) -> std::sync::MutexGuard<'_, Signals> {
        self.router.signals()
    }

    /// A new reference of this node.
    pub fn make_ref(&self) -> Reference {
        self.id.make_ref()
    }

    /// Sends ETF bytes (with 131) to a remote target from the router pid.
    pub fn send_raw(&self, target: &RemoteTarget, payload: bytes::Bytes) {
        match self.session(target.node()) {
            Some(s) => {
                let _ = s.send_raw(send_control(target, &self.id.router_pid), payload);
            }
            None => tracing::debug!(
                ?target,
                "no connection to the target's node; message dropped"
            ),
        }
    }

    /// Sends a term to a remote target from the router pid.
    pub fn send_term(&self, target: &RemoteTarget, msg: Term) {
        match self.session(target.node()) {
            Some(s) => {
                let _ = s.send_capped(send_control(target, &self.id.router_pid), Some(msg));
            }
            None => tracing::debug!(
                ?target,
                "no connection to the target's node; message dropped"
            ),
        }
    }

    /// Sends a term to a pid of this node or another, as `Pid ! Msg`.
    pub fn send_pid(&self, pid: &Pid, msg: Term) {
        if self.id.is_local(pid) {
            self.router
                .send(&ProcessRef::Pid(pid.clone()), msg, &self.id.name);
        } else {
            self.send_term(&RemoteTarget::Pid(pid.clone()), msg);
        }
    }

    /// `exit(Pid, Reason)` from `from` to a process of this node or another.
    pub fn exit(&self, from: &Pid, to: &Pid, reason: Term) {
        if self.id.is_local(to) {
            if let Some(LocalProcess::Actor(actor)) = self.resolve(&ProcessRef::Pid(to.clone())) {
                self.router
                    .exit_signal(from.clone(), &actor, reason, ExitKind::Exit2);
            }
        } else if let Some(session) = self.session(&to.node) {
            session.send(
                Control::Exit2 {
                    from: from.clone(),
                    to: to.clone(),
                    reason,
                },
                None,
            );
        }
    }

    /// Makes a `gen_server` call to a remote target; the reply goes to `reply`. The target
    /// is monitored for the call's duration, so a call to a process that does not exist or
    /// dies fails at once (the reply port is dropped).
    pub fn call(&self, target: &RemoteTarget, request: Term, reply: impl Into<CallReply>) {
        let Some(session) = self.session(target.node()) else {
            tracing::debug!(?target, "call to a node without a connection fails");
            return;
        };
        self.call_on(&session, target, request.into(), reply.into());
    }

    /// [`Core::call`] on the session with the target's node, already looked up, with the
    /// request as a term or already encoded.
    pub(crate) fn call_on(
        &self,
        session: &SessionHandle,
        target: &RemoteTarget,
        request: CallRequest,
        reply: CallReply,
    ) {
        let mref = self.make_ref();
        let timeout = reply.timeout();
        self.calls.insert(
            mref.clone(),
            PendingCall {
                reply,
                target: target.process_ref(),
                node: target.node().clone(),
                session: session.actor.get_id(),
                deadline: timeout.map(|t| Instant::now() + t),
            },
        );
        let router = &self.id.router_pid;
        session.send(
            Control::MonitorP {
                from: router.clone(),
                to: target.process_ref(),
                reference: mref.clone(),
            },
            None,
        );
        session.send_call(
            send_control(target, router),
            crate::outgoing::GenCall {
                from: router.clone(),
                mref,
                request,
            },
        );
    }

    /// Completes (with `reply`) or abandons (with `None`) a pending call; false when no call
    /// has that reference.
    pub fn finish_call(&self, mref: &Reference, reply: Option<&Term>) -> bool {
        let Some(call) = self.calls.take(mref) else {
            return false;
        };
        if let Some(session) = self.session(&call.node) {
            // Not urgent: it goes with the next write rather than costing a write of its own.
            session.send_deferred(Control::DemonitorP {
                from: self.id.router_pid.clone(),
                to: call.target,
                reference: mref.clone(),
            });
        }
        if let Some(reply) = reply {
            call.reply.complete(reply);
        }
        true
    }

    /// Abandons calls past their deadline or whose caller gave up (the node server runs this
    /// every second, rather than a timer task per call).
    pub fn expire_calls(&self) {
        for r in self.calls.expired(Instant::now()) {
            self.finish_call(&r, None);
        }
    }

    /// Monitors a remote process from the router pid over its node's live connection; the
    /// receiver gets the exit reason (`noconnection` when the connection goes). `None` without
    /// a connection.
    pub fn monitor_remote(
        &self,
        target: &RemoteTarget,
    ) -> Option<(Reference, tokio::sync::oneshot::Receiver<Term>)> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let reference = self.monitor_remote_for(target, DownTo::Waiter(tx))?;
        Some((reference, rx))
    }

    /// Monitors a remote process from the router pid for `to`; `None` without a connection.
    pub fn monitor_remote_for(&self, target: &RemoteTarget, to: DownTo) -> Option<Reference> {
        let session = self.session(target.node())?;
        let reference = self.make_ref();
        self.signals()
            .outgoing
            .insert(reference.clone(), (target.node().clone(), to));
        session.send(
            Control::MonitorP {
                from: self.id.router_pid.clone(),
                to: target.process_ref(),
                reference: reference.clone(),
            },
            None,
        );
        Some(reference)
    }

    /// Removes a monitor made with [`Core::monitor_remote`] that has not fired (its receiver
    /// then sees the sender dropped) and tells `target`'s node, when connected.
    pub fn demonitor_remote(&self, target: &RemoteTarget, reference: Reference) {
        if self.signals().outgoing.remove(&reference).is_none() {
            // It fired (or its connection went): nothing to undo on the other side.
            return;
        }
        if let Some(session) = self.session(target.node()) {
            session.send(
                Control::DemonitorP {
                    from: self.id.router_pid.clone(),
                    to: target.process_ref(),
                    reference,
                },
                None,
            );
        }
    }

    /// A monitor held by the router fired: a call's target, or a Rust monitor's process.
    pub fn router_down(&self, reference: &Reference, reason: Term) {
        if self.finish_call(reference, None) {
            tracing::debug!(%reason, "call target down");
            return;
        }
        let to = self.signals().outgoing.remove(reference);
        if let Some((_, to)) = to {
            to.fire(reason);
        }
    }

    /// Records a remote monitor or link on a local actor (see [`Router::watch`]); when the
    /// actor is already gone, answers `noproc` and returns false.
    pub fn watch(&self, actor: &LocalActor, add: impl FnOnce(&mut Signals, ActorId)) -> bool {
        match self.router.watch(actor, add) {
            Ok(()) => true,
            Err(gone) => {
                self.send_signals(gone, &Term::atom("noproc"));
                false
            }
        }
    }

    /// Sends the DOWN and EXIT signals for a watched actor that exited with `reason`.
    pub fn send_signals(&self, w: Watched, reason: &Term) {
        for (node, control) in crate::signals::exit_signals(w, reason) {
            if let Some(s) = self.session(&node) {
                s.send(control, None);
            }
        }
    }

    /// A session ended: its calls fail, its links and monitors fire `noconnection`, its
    /// proxies are forgotten. True when it was the node's current session.
    pub fn session_ended(&self, node: &Atom, session: ActorId) -> bool {
        let current = self.sessions.remove_if(node, session);
        self.calls.fail_on(session);
        let broken = self.signals().node_down(node);
        for (local, remote) in broken {
            if let Some(LocalProcess::Actor(actor)) = self.resolve(&ProcessRef::Pid(local)) {
                let reason = Term::atom("noconnection");
                self.router
                    .exit_signal(remote, &actor, reason, ExitKind::Link);
            }
        }
        // Its proxies were stopped with it (without their post_stop): forget them.
        self.proxies.forget_node(node);
        current
    }

    /// Stops the node gracefully (see the module docs); `status` is what
    /// [`crate::Node::wait_stopped`] reports. A second request while one runs does nothing.
    pub async fn stop_gracefully(self: Arc<Self>, status: i32) {
        let shared = self;
        if !shared.ops.begin_stop(status) {
            return;
        }
        tracing::info!(node = %shared.id.name, status, "stopping gracefully");
        // The calls in flight (the init:stop call itself among them) answer first.
        if tokio::time::timeout(crate::ops::GRACE, shared.ops.rpcs_done())
            .await
            .is_err()
        {
            tracing::warn!(node = %shared.id.name, "rpc calls still running at stop");
        }
        // Then every connection writes what is queued for it.
        let flushes: Vec<tokio::sync::oneshot::Receiver<()>> = shared
            .sessions
            .all()
            .iter()
            .filter_map(|s| {
                let (tx, rx) = tokio::sync::oneshot::channel();
                s.queue.push(Outgoing::Flush(tx)).then_some(rx)
            })
            .collect();
        let flushed = tokio::time::timeout(crate::ops::GRACE, async {
            for rx in flushes {
                let _ = rx.await;
            }
        })
        .await;
        if flushed.is_err() {
            tracing::warn!(node = %shared.id.name, "connections still writing at stop");
        }
        if let Some(server) = shared.server.get() {
            server.stop(Some("init:stop".into()));
        }
    }
}
