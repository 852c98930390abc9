//! Dispatch: what each control message from the peer does. The dispatcher sees the node
//! only through [`Inbound`], so it is tested here with a fake node; [`Core`] is the real one.

use std::sync::Arc;

use ractor::ActorId;
use tokio::sync::mpsc;

use super::reply::SessionReplies;
use crate::core::Core;
use crate::dist::control::{AltAct, AltActTarget, Control, ProcessRef};
use crate::dist::packet::DistMessage;
use crate::dist::DistFlags;
use crate::etf::{Atom, Pid, Reference, Term};
use crate::identity::Identity;
use crate::outgoing::Outgoing;
use crate::registry::{AliasFn, LocalActor, LocalProcess};
use crate::router::{ExitKind, ReplyPath};
use crate::rpc::Invocation;
use crate::signals::Signals;

/// What a remote process asks to hold on a local actor.
#[derive(Debug, Clone)]
pub(crate) enum WatchFor {
    /// A monitor `reference` by `from` on `to` (as the peer named it).
    Monitor {
        reference: Reference,
        from: Pid,
        to: ProcessRef,
    },
    /// A link with `from`.
    Link(Pid),
}

impl WatchFor {
    /// Records it in the signals table for actor `id`.
    pub fn add(self, signals: &mut Signals, id: ActorId) {
        match self {
            WatchFor::Monitor {
                reference,
                from,
                to,
            } => signals.add_monitor(id, reference, from, to),
            WatchFor::Link(from) => signals.add_link(id, from),
        }
    }
}

/// What the dispatcher needs of the node: the router's rules, calls in flight and rpc.
pub(crate) trait Inbound: Send + Sync + 'static {
    /// Who this node is.
    fn identity(&self) -> &Identity;
    /// The live local process a pid or name refers to.
    fn resolve(&self, to: &ProcessRef) -> Option<LocalProcess>;
    /// Records a monitor or link on a local actor; false (and `noproc` answered) when the
    /// actor is gone.
    fn watch(&self, actor: &LocalActor, what: WatchFor) -> bool;
    /// Removes a monitor a remote process held on a local actor.
    fn demonitor(&self, reference: &Reference);
    /// Removes the link between remote `remote` and local `local`.
    fn unlink(&self, remote: &Pid, local: &Pid);
    /// An exit signal to a local actor.
    fn exit_signal(&self, from: Pid, to: &LocalActor, reason: Term, kind: ExitKind);
    /// A message to a local actor (a `gen_server` call answered through `path`).
    fn deliver_to_actor(
        &self,
        actor: &LocalActor,
        to: &ProcessRef,
        msg: Term,
        path: &dyn ReplyPath,
    );
    /// Completes the call `mref` with `reply`; false when no such call is in flight.
    fn finish_call(&self, mref: &Reference, reply: &Term) -> bool;
    /// A monitor held by the router fired.
    fn router_down(&self, reference: &Reference, reason: Term);
    /// Where messages to a local alias go.
    fn alias(&self, alias: &Reference) -> Option<AliasFn>;
    /// An rpc from `peer` (`admin`: whether it passes the admin guard).
    fn invocation(&self, peer: (&Atom, bool), m: Atom, f: Atom, args: Vec<Term>) -> Invocation;
    /// A fresh pid of this node.
    fn fresh_pid(&self) -> Pid;
    /// Counts an rpc in flight until the guard drops (a graceful stop waits for them).
    fn rpc_started(&self) -> Option<crate::ops::InFlight>;
    /// The traffic counters.
    fn counters(&self) -> Arc<crate::ops::Counters>;
}

impl Inbound for Core {
    fn identity(&self) -> &Identity {
        &self.id
    }

    fn resolve(&self, to: &ProcessRef) -> Option<LocalProcess> {
        self.router.resolve(to)
    }

    fn watch(&self, actor: &LocalActor, what: WatchFor) -> bool {
        Core::watch(self, actor, |s, id| what.add(s, id))
    }

    fn demonitor(&self, reference: &Reference) {
        self.signals().remove_monitor(reference);
    }

    fn unlink(&self, remote: &Pid, local: &Pid) {
        self.router.unlink(remote, local);
    }

    fn exit_signal(&self, from: Pid, to: &LocalActor, reason: Term, kind: ExitKind) {
        self.router.exit_signal(from, to, reason, kind);
    }

    fn deliver_to_actor(
        &self,
        actor: &LocalActor,
        to: &ProcessRef,
        msg: Term,
        path: &dyn ReplyPath,
    ) {
        self.router.deliver_to_actor(actor, to, msg, Some(path));
    }

    fn finish_call(&self, mref: &Reference, reply: &Term) -> bool {
        Core::finish_call(self, mref, Some(reply))
    }

    fn router_down(&self, reference: &Reference, reason: Term) {
        Core::router_down(self, reference, reason);
    }

    fn alias(&self, alias: &Reference) -> Option<AliasFn> {
        self.registry().alias(alias)
    }

    fn invocation(&self, peer: (&Atom, bool), m: Atom, f: Atom, args: Vec<Term>) -> Invocation {
        Invocation::new(&self.functions, peer, m, f, args)
    }

    fn fresh_pid(&self) -> Pid {
        self.registry().fresh_pid()
    }

    fn rpc_started(&self) -> Option<crate::ops::InFlight> {
        Some(self.ops.rpc_started())
    }

    fn counters(&self) -> Arc<crate::ops::Counters> {
        self.ops.counters.clone()
    }
}

/// Handles the peer's control messages. It runs inside the reader task, so an incoming
/// message reaches its actor without another hop.
pub(crate) struct Dispatcher<N: Inbound = Core> {
    pub(super) node: Arc<N>,
    pub(super) peer: Atom,
    /// Monitors the peer holds on our services (not actors): reference -> (monitoring pid,
    /// target).
    monitors: crate::hash::FastMap<Reference, (Pid, ProcessRef)>,
    /// Whether the peer passes the admin guard ([`crate::admin`]).
    pub(super) admin: bool,
    /// The way back to the peer: its queue, and the replies of local actors to its calls.
    pub(super) replies: SessionReplies,
}

impl<N: Inbound> Dispatcher<N> {
    pub fn new(node: Arc<N>, peer: Atom, admin: bool, replies: SessionReplies) -> Self {
        Dispatcher {
            node,
            peer,
            monitors: Default::default(),
            admin,
            replies,
        }
    }

    pub(super) fn counters(&self) -> Arc<crate::ops::Counters> {
        self.node.counters()
    }

    pub(super) fn flags(&self) -> DistFlags {
        self.replies.flags
    }

    pub(super) fn tx(&self) -> &mpsc::UnboundedSender<Outgoing> {
        &self.replies.tx
    }

    pub(super) fn send(&self, control: Control, payload: Option<Term>) {
        let _ = self.replies.tx.send(Outgoing::Message(control, payload));
    }

    pub fn dispatch(&mut self, msg: DistMessage) {
        let DistMessage { control, payload } = msg;
        let (control, payload) = match control {
            Control::AltAct {
                flags, from, to, ..
            } => match self.alt_act(flags, from, to, payload) {
                Some(classic) => classic,
                None => return,
            },
            other => (other, payload),
        };
        let router = &self.node.identity().router_pid;
        match control {
            Control::MonitorP {
                from,
                to,
                reference,
            } => match self.node.resolve(&to) {
                Some(LocalProcess::Actor(actor)) => {
                    // When the actor is already gone, watch() answers noproc itself.
                    let what = WatchFor::Monitor {
                        reference,
                        from,
                        to,
                    };
                    self.node.watch(&actor, what);
                }
                Some(_) => {
                    self.monitors.insert(reference, (from, to));
                }
                None => self.send(
                    Control::MonitorPExit {
                        from: to,
                        to: from,
                        reference,
                        reason: Term::atom("noproc"),
                    },
                    None,
                ),
            },
            Control::DemonitorP { reference, .. } => {
                if self.monitors.remove(&reference).is_none() {
                    self.node.demonitor(&reference);
                }
            }
            Control::Link { from, to } => match self.node.resolve(&ProcessRef::Pid(to.clone())) {
                Some(LocalProcess::Actor(actor)) => {
                    self.node.watch(&actor, WatchFor::Link(from));
                }
                Some(_) => {}
                None => self.send(
                    Control::Exit {
                        from: to,
                        to: from,
                        reason: Term::atom("noproc"),
                    },
                    None,
                ),
            },
            Control::Unlink { from, to }
            | Control::UnlinkIdAck {
                from: to, to: from, ..
            } => {
                self.node.unlink(&from, &to);
            }
            Control::UnlinkId { id, from, to } => {
                self.node.unlink(&from, &to);
                self.send(
                    Control::UnlinkIdAck {
                        id,
                        from: to,
                        to: from,
                    },
                    None,
                );
            }
            Control::Exit { from, to, reason } => {
                self.exit_signal(from, to, reason, ExitKind::Link)
            }
            Control::PayloadExit { from, to } => {
                self.exit_signal(from, to, payload.unwrap_or_default(), ExitKind::Link)
            }
            Control::Exit2 { .. } | Control::PayloadExit2 { .. } if !self.admin => {
                tracing::warn!(peer = %self.peer, control = ?control, "exit signal from a node outside the admin allow-list dropped");
            }
            Control::Exit2 { from, to, reason } => {
                self.exit_signal(from, to, reason, ExitKind::Exit2)
            }
            Control::PayloadExit2 { from, to } => {
                self.exit_signal(from, to, payload.unwrap_or_default(), ExitKind::Exit2)
            }
            Control::RegSend { to_name, .. } => {
                self.deliver(&ProcessRef::Name(to_name), payload.unwrap_or_default());
            }
            Control::Send { to } | Control::SendSender { to, .. } => {
                self.deliver(&ProcessRef::Pid(to), payload.unwrap_or_default());
            }
            Control::AliasSend { alias, .. } => {
                self.alias_message(&alias, payload.unwrap_or_default(), false);
            }
            Control::MonitorPExit {
                to,
                reference,
                reason,
                ..
            } if to == *router => self.node.router_down(&reference, reason),
            Control::PayloadMonitorPExit { to, reference, .. } if to == *router => self
                .node
                .router_down(&reference, payload.unwrap_or_default()),
            Control::SpawnRequest {
                req_id,
                from,
                module,
                function,
                arity,
                opts,
                ..
            } => self.spawn_request(req_id, from, (module, function, arity), &opts, payload),
            other => {
                tracing::debug!(peer = %self.peer, control = ?other, "ignored control message");
            }
        }
    }

    /// An `ALTACT_SIG_SEND`: a message to an alias is handed on here (with its priority);
    /// any other signal becomes the classic control message it stands for, with the same
    /// payload (the message, or the exit reason). `None` when nothing is left to do.
    ///
    /// Priority matters only for aliases (EEP 76: the receiver enables it on an alias); to a
    /// pid or name a priority signal is an ordinary one, as OTP treats it. Aliases of this node
    /// are the tags of its calls and the aliases of priority inboxes, so an exit signal to one
    /// is dropped.
    fn alt_act(
        &mut self,
        flags: AltAct,
        from: Pid,
        to: AltActTarget,
        payload: Option<Term>,
    ) -> Option<(Control, Option<Term>)> {
        let exit = flags.contains(AltAct::EXIT);
        let classic = match to {
            AltActTarget::Alias(alias) if !exit => {
                let priority = flags.contains(AltAct::PRIORITY);
                self.alias_message(&alias, payload.unwrap_or_default(), priority);
                return None;
            }
            AltActTarget::Alias(alias) => {
                tracing::debug!(peer = %self.peer, ?alias, "exit signal to an alias of this node dropped");
                return None;
            }
            AltActTarget::Pid(to) if exit => Control::PayloadExit2 { from, to },
            AltActTarget::Pid(to) => Control::SendSender { from, to },
            AltActTarget::Name(to_name) if !exit => Control::RegSend { from, to_name },
            AltActTarget::Name(name) => match self.node.resolve(&ProcessRef::Name(name.clone())) {
                Some(LocalProcess::Actor(actor)) => Control::PayloadExit2 {
                    from,
                    to: actor.pid.clone(),
                },
                _ => {
                    tracing::debug!(peer = %self.peer, %name, "exit signal to a name with no actor dropped");
                    return None;
                }
            },
        };
        Some((classic, payload))
    }

    /// An exit signal to local pid `to`; nothing when no actor has that pid.
    fn exit_signal(&mut self, from: Pid, to: Pid, reason: Term, kind: ExitKind) {
        if let Some(LocalProcess::Actor(actor)) = self.node.resolve(&ProcessRef::Pid(to)) {
            self.node.exit_signal(from, &actor, reason, kind);
        }
    }

    /// Delivers a message to a local process or service.
    fn deliver(&mut self, to: &ProcessRef, msg: Term) {
        match self.node.resolve(to) {
            Some(LocalProcess::NetKernel) => self.net_kernel(msg),
            Some(LocalProcess::Router) => self.call_reply(msg),
            Some(LocalProcess::Rex) => self.rex(msg),
            Some(LocalProcess::Actor(actor)) => {
                self.node.deliver_to_actor(&actor, to, msg, &self.replies)
            }
            Some(LocalProcess::Service(service)) => (service.deliver)(&self.peer, msg),
            None => {
                tracing::debug!(peer = %self.peer, ?to, %msg, "message to a process that does not exist dropped");
            }
        }
    }

    /// A reply `{Tag, Reply}` to a call this node made.
    fn call_reply(&mut self, msg: Term) {
        if !self.finish_call(&msg) {
            tracing::debug!(peer = %self.peer, %msg, "stray message to the router dropped");
        }
    }

    /// A message to an alias of this node: the reply to one of its calls (the call's tag is
    /// the alias, active while the call is in flight), or a message for an actor's
    /// [`crate::priority::PriorityInbox`]. A message to an inactive alias is dropped, as OTP
    /// drops it.
    fn alias_message(&mut self, alias: &Reference, msg: Term, priority: bool) {
        // A reply `{Tag, Reply}` to one of this node's calls: the call's monitor reference
        // is its alias.
        if let Some([_tag, reply]) = msg.as_tuple() {
            if self.node.finish_call(alias, reply) {
                return;
            }
        }
        match self.node.alias(alias) {
            Some(deliver) => deliver(msg, priority),
            None => {
                tracing::debug!(peer = %self.peer, ?alias, %msg, "message to an inactive alias dropped")
            }
        }
    }

    /// Completes the call whose reply `msg` is; false when it is none.
    fn finish_call(&mut self, msg: &Term) -> bool {
        if let Some([tag, reply]) = msg.as_tuple() {
            let mref = match tag {
                Term::ImproperList(head, tail) if head.len() == 1 => match &**tail {
                    Term::Reference(r) => Some(&**r),
                    _ => None,
                },
                Term::Reference(r) => Some(&**r),
                _ => None,
            };
            if let Some(mref) = mref {
                return self.node.finish_call(mref, reply);
            }
        }
        false
    }
}
