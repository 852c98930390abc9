//! Dispatch: what each control message from the peer does. The dispatcher sees the node
//! only through [`Inbound`], so it is tested here with a fake node; [`Core`] is the real one.

use std::sync::Arc;

use ractor::ActorId;

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
    /// A process for a spawned function: its pid, which takes messages into the mailbox,
    /// until [`Inbound::end_process`].
    fn function_process(&self) -> (Pid, Arc<crate::rpc::Mailbox>);
    /// The process of [`Inbound::function_process`] is gone.
    fn end_process(&self, pid: &Pid);
    /// Counts an rpc in flight until the guard drops (a graceful stop waits for them).
    fn rpc_started(&self) -> Option<crate::ops::InFlight>;
    /// The traffic counters.
    fn counters(&self) -> Arc<crate::ops::Counters>;
    /// Whether `kind` names a spawnable kind of this node ([`crate::kinds`]).
    fn has_kind(&self, kind: &str) -> bool;
    /// The answer to a spawn request this node made ([`crate::spawn`]).
    fn spawn_replied(&self, to: &Pid, req_id: &Reference, flags: u32, result: Term);
    /// Starts the spawnable kind `kind` with `args` ([`crate::kinds`]).
    fn start_kind(
        self: &Arc<Self>,
        kind: &str,
        args: &[Term],
    ) -> crate::network::BoxFuture<'static, Result<Arc<LocalActor>, crate::kinds::KindError>>;
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

    fn function_process(&self) -> (Pid, Arc<crate::rpc::Mailbox>) {
        let (mailbox, put) = crate::rpc::Mailbox::new();
        let pid = self.registry().add_service(
            None,
            Box::new(move |from, msg| {
                if !put(msg) {
                    tracing::warn!(%from, "a spawned function's mailbox is full: message dropped");
                }
            }),
        );
        (pid, mailbox)
    }

    fn end_process(&self, pid: &Pid) {
        self.registry().remove_service(pid);
    }

    fn rpc_started(&self) -> Option<crate::ops::InFlight> {
        Some(self.ops.rpc_started())
    }

    fn counters(&self) -> Arc<crate::ops::Counters> {
        self.ops.counters.clone()
    }

    fn start_kind(
        self: &Arc<Self>,
        kind: &str,
        args: &[Term],
    ) -> crate::network::BoxFuture<'static, Result<Arc<LocalActor>, crate::kinds::KindError>> {
        crate::kinds::Kinds::of(self).start(self, kind, args)
    }

    fn spawn_replied(&self, to: &Pid, req_id: &Reference, flags: u32, result: Term) {
        crate::spawn::Spawns::of(self).replied(to, req_id, flags, result);
    }

    fn has_kind(&self, kind: &str) -> bool {
        crate::kinds::Kinds::of(self).contains(kind)
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

    pub(super) fn queue(&self) -> &Arc<crate::send_queue::SendQueue> {
        &self.replies.queue
    }

    pub(super) fn send(&self, control: Control, payload: Option<Term>) {
        let _ = self.replies.queue.push(Outgoing::Message(control, payload));
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
                group_leader,
                module,
                function,
                arity,
                opts,
            } => self.spawn_request(
                req_id,
                (from, group_leader),
                (module, function, arity),
                &opts,
                payload,
            ),
            Control::SpawnReply {
                req_id,
                to,
                flags,
                result,
            } => self.node.spawn_replied(&to, &req_id, flags, result),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Registry, NET_KERNEL_ID, REX_ID, ROUTER_ID};
    use crate::rpc::Functions;
    use std::sync::Mutex;

    /// What the fake node was asked to do.
    #[derive(Debug, Clone, PartialEq)]
    enum Seen {
        Watch(Pid, &'static str),
        Demonitor(Reference),
        Unlink(Pid, Pid),
        Exit(Pid, Pid, Term, ExitKind),
        Deliver(Pid, Term),
        RouterDown(Reference, Term),
        Service(Atom, Term),
        Alias(Term, bool),
    }

    /// A node with a real registry and nothing else: it records what dispatch asks of it.
    struct FakeNode {
        id: Identity,
        registry: Mutex<Registry>,
        functions: Functions,
        calls: Mutex<Vec<(Reference, Term)>>,
        aliases: Mutex<Vec<Reference>>,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl FakeNode {
        fn new() -> Arc<FakeNode> {
            let name = Atom::new("fake@host");
            let registry = Registry::new(name.clone(), 7);
            let pids = crate::identity::WellKnown {
                net_kernel: registry.pid(NET_KERNEL_ID),
                router: registry.pid(ROUTER_ID),
                rex: registry.pid(REX_ID),
            };
            let config = crate::NodeConfig::new("fake");
            Arc::new(FakeNode {
                id: Identity::new(name, config, b"c".to_vec(), DistFlags::OFFERED, 7, pids),
                registry: Mutex::new(registry),
                functions: Functions::default(),
                calls: Mutex::default(),
                aliases: Mutex::default(),
                seen: Arc::default(),
            })
        }

        fn saw(&self, what: Seen) {
            crate::lock(&self.seen).push(what);
        }

        fn seen(&self) -> Vec<Seen> {
            crate::lock(&self.seen).clone()
        }

        /// A service named `name` that records what it is sent.
        fn service(&self, name: &str) -> Pid {
            let seen = self.seen.clone();
            crate::lock(&self.registry).add_service(
                Some(Atom::new(name)),
                Box::new(move |from, msg| {
                    crate::lock(&seen).push(Seen::Service(from.clone(), msg))
                }),
            )
        }
    }

    impl Inbound for FakeNode {
        fn identity(&self) -> &Identity {
            &self.id
        }
        fn resolve(&self, to: &ProcessRef) -> Option<LocalProcess> {
            crate::lock(&self.registry).resolve(to)
        }
        fn watch(&self, actor: &LocalActor, what: WatchFor) -> bool {
            let kind = match what {
                WatchFor::Monitor { .. } => "monitor",
                WatchFor::Link(_) => "link",
            };
            self.saw(Seen::Watch(actor.pid.clone(), kind));
            true
        }
        fn demonitor(&self, reference: &Reference) {
            self.saw(Seen::Demonitor(reference.clone()));
        }
        fn unlink(&self, remote: &Pid, local: &Pid) {
            self.saw(Seen::Unlink(remote.clone(), local.clone()));
        }
        fn exit_signal(&self, from: Pid, to: &LocalActor, reason: Term, kind: ExitKind) {
            self.saw(Seen::Exit(from, to.pid.clone(), reason, kind));
        }
        fn deliver_to_actor(
            &self,
            actor: &LocalActor,
            _: &ProcessRef,
            msg: Term,
            _: &dyn ReplyPath,
        ) {
            self.saw(Seen::Deliver(actor.pid.clone(), msg));
        }
        fn finish_call(&self, mref: &Reference, reply: &Term) -> bool {
            let mut calls = crate::lock(&self.calls);
            let found = calls.iter().position(|(r, _)| r == mref);
            found.map(|i| calls[i].1 = reply.clone()).is_some()
        }
        fn router_down(&self, reference: &Reference, reason: Term) {
            self.saw(Seen::RouterDown(reference.clone(), reason));
        }
        fn alias(&self, alias: &Reference) -> Option<AliasFn> {
            if !crate::lock(&self.aliases).contains(alias) {
                return None;
            }
            let seen = self.seen.clone();
            Some(Arc::new(move |msg, priority| {
                crate::lock(&seen).push(Seen::Alias(msg, priority))
            }))
        }
        fn invocation(&self, peer: (&Atom, bool), m: Atom, f: Atom, args: Vec<Term>) -> Invocation {
            Invocation::new(&self.functions, peer, m, f, args)
        }
        fn fresh_pid(&self) -> Pid {
            crate::lock(&self.registry).fresh_pid()
        }
        fn function_process(&self) -> (Pid, Arc<crate::rpc::Mailbox>) {
            (self.fresh_pid(), crate::rpc::Mailbox::new().0)
        }
        fn end_process(&self, _: &Pid) {}
        fn rpc_started(&self) -> Option<crate::ops::InFlight> {
            None
        }
        fn counters(&self) -> Arc<crate::ops::Counters> {
            Arc::default()
        }
        fn start_kind(
            self: &Arc<Self>,
            kind: &str,
            _args: &[Term],
        ) -> crate::network::BoxFuture<'static, Result<Arc<LocalActor>, crate::kinds::KindError>>
        {
            let kind = kind.to_owned();
            Box::pin(async move { Err(crate::kinds::KindError::Unknown(kind)) })
        }
        fn spawn_replied(&self, _: &Pid, _: &Reference, _: u32, _: Term) {}
        fn has_kind(&self, _: &str) -> bool {
            false
        }
    }

    /// What a dispatcher queued for its peer, decoded.
    struct Probe {
        queue: Arc<crate::send_queue::SendQueue>,
        seen: std::collections::VecDeque<DistMessage>,
        /// One decoder for everything queued: the atom cache spans the frames.
        decoder: crate::dist::packet::PacketDecoder,
    }

    impl Probe {
        fn try_recv(&mut self) -> Option<DistMessage> {
            if self.seen.is_empty() {
                let got = self.queue.drain_decoded_with(&mut self.decoder);
                self.seen.extend(got);
            }
            self.seen.pop_front()
        }

        async fn recv(&mut self) -> DistMessage {
            loop {
                if let Some(m) = self.try_recv() {
                    return m;
                }
                self.queue.queued().await;
            }
        }
    }

    /// A dispatcher for peer `peer@host` and what it queues for the peer.
    fn dispatcher(node: &Arc<FakeNode>, admin: bool) -> (Dispatcher<FakeNode>, Probe) {
        let queue = Arc::new(crate::send_queue::SendQueue::new(
            DistFlags::OFFERED,
            1 << 20,
            1 << 25,
        ));
        let replies = SessionReplies {
            queue: queue.clone(),
            flags: DistFlags::OFFERED,
            waiter: Default::default(),
            outbox: Default::default(),
        };
        let d = Dispatcher::new(node.clone(), Atom::new("peer@host"), admin, replies);
        let probe = Probe {
            queue,
            seen: Default::default(),
            decoder: crate::dist::packet::PacketDecoder::new(
                crate::etf::DecodeOptions::new(),
                usize::MAX,
            ),
        };
        (d, probe)
    }

    fn peer_pid(id: u32) -> Pid {
        Pid {
            node: Atom::new("peer@host"),
            id,
            serial: 0,
            creation: 3,
        }
    }

    fn peer_ref(n: u32) -> Reference {
        Reference::new(Atom::new("peer@host"), 3, &[n, 0, 0]).unwrap()
    }

    fn msg(control: Control, payload: Option<Term>) -> DistMessage {
        DistMessage { control, payload }
    }

    /// The next control message queued for the peer, and its payload.
    fn sent(rx: &mut Probe) -> Option<(Control, Option<Term>)> {
        rx.try_recv().map(|m| (m.control, m.payload))
    }

    /// An idle actor exposed as a local process of `node`.
    async fn actor(node: &FakeNode) -> (Arc<LocalActor>, ractor::ActorRef<()>) {
        struct Idle;
        impl ractor::Actor for Idle {
            type Msg = ();
            type State = ();
            type Arguments = ();
            async fn pre_start(
                &self,
                _: ractor::ActorRef<()>,
                _: (),
            ) -> Result<(), ractor::ActorProcessingErr> {
                Ok(())
            }
        }
        let (actor, _) = ractor::Actor::spawn(None, Idle, ()).await.unwrap();
        let local = crate::lock(&node.registry).expose(
            &actor.get_cell(),
            || (Box::new(|_: &Term| true), Box::new(|_: &Term, _| false)),
            |_| false,
        );
        (local, actor)
    }

    #[test]
    fn a_monitor_of_a_missing_process_is_answered_noproc() {
        let node = FakeNode::new();
        let (mut d, mut rx) = dispatcher(&node, true);
        let to = ProcessRef::Name(Atom::new("nobody"));
        d.dispatch(msg(
            Control::MonitorP {
                from: peer_pid(1),
                to: to.clone(),
                reference: peer_ref(1),
            },
            None,
        ));
        let (control, _) = sent(&mut rx).expect("an answer");
        assert_eq!(
            control,
            Control::MonitorPExit {
                from: to,
                to: peer_pid(1),
                reference: peer_ref(1),
                reason: Term::atom("noproc"),
            }
        );
    }

    #[test]
    fn a_link_to_a_missing_pid_is_answered_with_a_noproc_exit() {
        let node = FakeNode::new();
        let (mut d, mut rx) = dispatcher(&node, true);
        let gone = node.fresh_pid();
        d.dispatch(msg(
            Control::Link {
                from: peer_pid(1),
                to: gone.clone(),
            },
            None,
        ));
        let (control, _) = sent(&mut rx).expect("an answer");
        assert_eq!(
            control,
            Control::Exit {
                from: gone,
                to: peer_pid(1),
                reason: Term::atom("noproc"),
            }
        );
    }

    #[test]
    fn an_unlink_id_is_acknowledged() {
        let node = FakeNode::new();
        let (mut d, mut rx) = dispatcher(&node, true);
        let local = node.fresh_pid();
        d.dispatch(msg(
            Control::UnlinkId {
                id: 42,
                from: peer_pid(1),
                to: local.clone(),
            },
            None,
        ));
        assert_eq!(node.seen(), vec![Seen::Unlink(peer_pid(1), local.clone())]);
        let (control, _) = sent(&mut rx).expect("an ack");
        assert_eq!(
            control,
            Control::UnlinkIdAck {
                id: 42,
                from: local,
                to: peer_pid(1),
            }
        );
    }

    #[test]
    fn a_monitor_on_a_service_is_kept_by_the_session_and_removed_by_demonitor() {
        let node = FakeNode::new();
        node.service("svc");
        let (mut d, mut rx) = dispatcher(&node, true);
        d.dispatch(msg(
            Control::MonitorP {
                from: peer_pid(1),
                to: ProcessRef::Name(Atom::new("svc")),
                reference: peer_ref(9),
            },
            None,
        ));
        assert!(sent(&mut rx).is_none(), "no noproc for a live service");
        d.dispatch(msg(
            Control::DemonitorP {
                from: peer_pid(1),
                to: ProcessRef::Name(Atom::new("svc")),
                reference: peer_ref(9),
            },
            None,
        ));
        // The session held it, so the node's signals table is not asked.
        assert!(node.seen().is_empty());
        // A demonitor the session does not know goes to the node.
        d.dispatch(msg(
            Control::DemonitorP {
                from: peer_pid(1),
                to: ProcessRef::Name(Atom::new("svc")),
                reference: peer_ref(10),
            },
            None,
        ));
        assert_eq!(node.seen(), vec![Seen::Demonitor(peer_ref(10))]);
    }

    #[test]
    fn a_message_to_a_service_reaches_it_with_the_peers_name() {
        let node = FakeNode::new();
        node.service("svc");
        let (mut d, _rx) = dispatcher(&node, true);
        d.dispatch(msg(
            Control::RegSend {
                from: peer_pid(1),
                to_name: Atom::new("svc"),
            },
            Some(Term::atom("hello")),
        ));
        assert_eq!(
            node.seen(),
            vec![Seen::Service(Atom::new("peer@host"), Term::atom("hello"))]
        );
    }

    #[test]
    fn a_message_to_a_missing_name_is_dropped() {
        let node = FakeNode::new();
        let (mut d, mut rx) = dispatcher(&node, true);
        d.dispatch(msg(
            Control::RegSend {
                from: peer_pid(1),
                to_name: Atom::new("nobody"),
            },
            Some(Term::atom("hello")),
        ));
        assert!(node.seen().is_empty());
        assert!(sent(&mut rx).is_none());
    }

    #[tokio::test]
    async fn messages_and_exit_signals_to_an_actor_go_to_the_router_rules() {
        let node = FakeNode::new();
        let (local, _actor) = actor(&node).await;
        let (mut d, _rx) = dispatcher(&node, true);
        d.dispatch(msg(
            Control::Send {
                to: local.pid.clone(),
            },
            Some(Term::Int(1)),
        ));
        d.dispatch(msg(
            Control::Exit {
                from: peer_pid(1),
                to: local.pid.clone(),
                reason: Term::atom("boom"),
            },
            None,
        ));
        d.dispatch(msg(
            Control::PayloadExit2 {
                from: peer_pid(1),
                to: local.pid.clone(),
            },
            Some(Term::atom("kill")),
        ));
        assert_eq!(
            node.seen(),
            vec![
                Seen::Deliver(local.pid.clone(), Term::Int(1)),
                Seen::Exit(
                    peer_pid(1),
                    local.pid.clone(),
                    Term::atom("boom"),
                    ExitKind::Link
                ),
                Seen::Exit(
                    peer_pid(1),
                    local.pid.clone(),
                    Term::atom("kill"),
                    ExitKind::Exit2
                ),
            ]
        );
    }

    #[tokio::test]
    async fn exit2_from_a_node_outside_the_admin_guard_is_dropped() {
        let node = FakeNode::new();
        let (local, _actor) = actor(&node).await;
        let (mut d, _rx) = dispatcher(&node, false);
        d.dispatch(msg(
            Control::Exit2 {
                from: peer_pid(1),
                to: local.pid.clone(),
                reason: Term::atom("kill"),
            },
            None,
        ));
        // A link's exit still goes through: the guard is on exit/2 only.
        d.dispatch(msg(
            Control::Exit {
                from: peer_pid(1),
                to: local.pid.clone(),
                reason: Term::atom("boom"),
            },
            None,
        ));
        assert_eq!(
            node.seen(),
            vec![Seen::Exit(
                peer_pid(1),
                local.pid.clone(),
                Term::atom("boom"),
                ExitKind::Link
            )]
        );
    }

    #[tokio::test]
    async fn monitors_and_links_on_an_actor_are_watched() {
        let node = FakeNode::new();
        let (local, _actor) = actor(&node).await;
        let (mut d, mut rx) = dispatcher(&node, true);
        d.dispatch(msg(
            Control::MonitorP {
                from: peer_pid(1),
                to: ProcessRef::Pid(local.pid.clone()),
                reference: peer_ref(1),
            },
            None,
        ));
        d.dispatch(msg(
            Control::Link {
                from: peer_pid(1),
                to: local.pid.clone(),
            },
            None,
        ));
        assert_eq!(
            node.seen(),
            vec![
                Seen::Watch(local.pid.clone(), "monitor"),
                Seen::Watch(local.pid.clone(), "link")
            ]
        );
        assert!(sent(&mut rx).is_none());
    }

    #[test]
    fn a_reply_to_the_router_completes_its_call_and_a_down_goes_to_the_router() {
        let node = FakeNode::new();
        let mref = node.id.make_ref();
        crate::lock(&node.calls).push((mref.clone(), Term::NIL));
        let (mut d, _rx) = dispatcher(&node, true);
        let router = node.id.router_pid.clone();
        let tag = Term::improper_list(vec![Term::atom("alias")], Term::from(mref.clone()));
        d.dispatch(msg(
            Control::Send { to: router.clone() },
            Some(Term::tuple(vec![tag, Term::atom("pong")])),
        ));
        assert_eq!(crate::lock(&node.calls)[0].1, Term::atom("pong"));
        d.dispatch(msg(
            Control::MonitorPExit {
                from: ProcessRef::Pid(peer_pid(1)),
                to: router,
                reference: mref.clone(),
                reason: Term::atom("noproc"),
            },
            None,
        ));
        assert_eq!(
            node.seen(),
            vec![Seen::RouterDown(mref, Term::atom("noproc"))]
        );
    }

    #[test]
    fn an_alias_message_reaches_only_an_active_alias() {
        let node = FakeNode::new();
        let call = node.id.make_ref();
        let inbox = node.id.make_ref();
        let inactive = node.id.make_ref();
        crate::lock(&node.calls).push((call.clone(), Term::NIL));
        crate::lock(&node.aliases).push(inbox.clone());
        let (mut d, _rx) = dispatcher(&node, true);
        let reply = |tag: &Reference| {
            Term::tuple(vec![
                Term::improper_list(vec![Term::atom("alias")], Term::from(tag.clone())),
                Term::atom("r"),
            ])
        };
        // A reply shaped for the call, sent to another (inactive) alias: dropped.
        d.dispatch(msg(
            Control::AliasSend {
                from: peer_pid(1),
                alias: inactive.clone(),
            },
            Some(reply(&call)),
        ));
        assert_eq!(crate::lock(&node.calls)[0].1, Term::NIL);
        // The call's own alias completes it.
        d.dispatch(msg(
            Control::AliasSend {
                from: peer_pid(1),
                alias: call.clone(),
            },
            Some(reply(&call)),
        ));
        assert_eq!(crate::lock(&node.calls)[0].1, Term::atom("r"));
        // A priority inbox's alias gets the message, with its priority.
        d.dispatch(msg(
            Control::AltAct {
                flags: AltAct::ALIAS | AltAct::PRIORITY,
                from: peer_pid(1),
                to: AltActTarget::Alias(inbox),
                token: None,
            },
            Some(Term::atom("urgent")),
        ));
        assert_eq!(node.seen(), vec![Seen::Alias(Term::atom("urgent"), true)]);
    }

    #[tokio::test]
    async fn alternative_signals_become_their_classic_forms() {
        let node = FakeNode::new();
        let (local, _actor) = actor(&node).await;
        crate::lock(&node.registry)
            .register(Atom::new("named"), LocalProcess::Actor(local.clone()));
        let (mut d, _rx) = dispatcher(&node, true);
        d.dispatch(msg(
            Control::AltAct {
                flags: AltAct::NAME,
                from: peer_pid(1),
                to: AltActTarget::Name(Atom::new("named")),
                token: None,
            },
            Some(Term::Int(5)),
        ));
        d.dispatch(msg(
            Control::AltAct {
                flags: AltAct::NAME | AltAct::EXIT,
                from: peer_pid(1),
                to: AltActTarget::Name(Atom::new("named")),
                token: None,
            },
            Some(Term::atom("bye")),
        ));
        // An exit signal to one of our aliases is dropped.
        d.dispatch(msg(
            Control::AltAct {
                flags: AltAct::ALIAS | AltAct::EXIT,
                from: peer_pid(1),
                to: AltActTarget::Alias(node.id.make_ref()),
                token: None,
            },
            Some(Term::atom("bye")),
        ));
        assert_eq!(
            node.seen(),
            vec![
                Seen::Deliver(local.pid.clone(), Term::Int(5)),
                Seen::Exit(
                    peer_pid(1),
                    local.pid.clone(),
                    Term::atom("bye"),
                    ExitKind::Exit2
                ),
            ]
        );
    }

    /// A spawn of an unknown kind gives a pid whose monitor fires at once with `undef`, as
    /// OTP's spawn of an undefined function; outside the admin guard it is refused.
    #[tokio::test]
    async fn a_spawn_of_an_unknown_kind_fails_as_undef_and_the_guard_refuses() {
        let node = FakeNode::new();
        let request = |opts: Term| {
            msg(
                Control::SpawnRequest {
                    req_id: peer_ref(1),
                    from: peer_pid(1),
                    group_leader: peer_pid(2),
                    module: Atom::new("lists"),
                    function: Atom::new("seq"),
                    arity: 2,
                    opts,
                },
                Some(Term::list(vec![Term::Int(1), Term::Int(2)])),
            )
        };
        let (mut d, mut rx) = dispatcher(&node, true);
        d.dispatch(request(Term::list(vec![Term::atom("monitor")])));
        let wait = std::time::Duration::from_secs(5);
        let reply = tokio::time::timeout(wait, rx.recv())
            .await
            .expect("a reply");
        let Control::SpawnReply {
            flags,
            result: Term::Pid(pid),
            ..
        } = reply.control
        else {
            panic!("{:?}", reply.control)
        };
        assert_eq!(flags, 2, "the monitor is made");
        let down = tokio::time::timeout(wait, rx.recv()).await.expect("a DOWN");
        assert_eq!(
            down.control,
            Control::MonitorPExit {
                from: ProcessRef::Pid(pid),
                to: peer_pid(1),
                reference: peer_ref(1),
                reason: Term::parse("{undef,[{lists,seq,[1,2],[]}]}").unwrap(),
            }
        );

        let (mut d, mut rx) = dispatcher(&node, false);
        d.dispatch(request(Term::NIL));
        let (control, _) = sent(&mut rx).expect("a reply");
        assert_eq!(
            control,
            Control::SpawnReply {
                req_id: peer_ref(1),
                to: peer_pid(1),
                flags: 0,
                result: Term::atom("not_allowed"),
            }
        );
    }

    #[tokio::test]
    async fn rex_runs_a_registered_function_and_refuses_outside_the_admin_guard() {
        let node = FakeNode::new();
        node.functions.insert(
            Atom::new("m"),
            Atom::new("double"),
            Arc::new(|args: Vec<Term>| {
                Box::pin(async move {
                    match args.as_slice() {
                        [Term::Int(n)] => Ok(Term::Int(n * 2)),
                        _ => Err(crate::rpc::RpcFailure::badarg()),
                    }
                })
            }),
        );
        let call = Term::tuple(vec![
            Term::atom("call"),
            Term::atom("m"),
            Term::atom("double"),
            Term::list(vec![Term::Int(21)]),
            Term::atom("user"),
        ]);
        let rex_msg = Term::tuple(vec![Term::Pid(peer_pid(1)), call]);
        for (admin, expected) in [
            (true, Term::Int(42)),
            (
                false,
                Term::tuple(vec![
                    Term::atom("badrpc"),
                    Term::tuple(vec![
                        Term::atom("EXIT"),
                        crate::admin::refusal(&Atom::new("peer@host")),
                    ]),
                ]),
            ),
        ] {
            let (mut d, mut rx) = dispatcher(&node, admin);
            d.dispatch(msg(
                Control::RegSend {
                    from: peer_pid(1),
                    to_name: Atom::new("rex"),
                },
                Some(rex_msg.clone()),
            ));
            let item = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
                .await
                .expect("rex answers");
            let (Control::Send { to }, Some(reply)) = (item.control, item.payload) else {
                panic!("unexpected message");
            };
            assert_eq!(to, peer_pid(1));
            assert_eq!(reply, Term::tuple(vec![Term::atom("rex"), expected]));
        }
    }

    #[test]
    fn net_kernel_answers_is_auth_yes() {
        let node = FakeNode::new();
        let (mut d, mut rx) = dispatcher(&node, true);
        let call = Term::tuple(vec![
            Term::atom("$gen_call"),
            Term::tuple(vec![Term::Pid(peer_pid(1)), Term::from(peer_ref(4))]),
            Term::tuple(vec![Term::atom("is_auth"), Term::atom("peer@host")]),
        ]);
        d.dispatch(msg(
            Control::RegSend {
                from: peer_pid(1),
                to_name: Atom::new("net_kernel"),
            },
            Some(call),
        ));
        let (Control::Send { to }, Some(reply)) = sent(&mut rx).expect("a reply") else {
            panic!("unexpected message");
        };
        assert_eq!(to, peer_pid(1));
        assert_eq!(
            reply,
            Term::tuple(vec![Term::from(peer_ref(4)), Term::atom("yes")])
        );
    }
}
