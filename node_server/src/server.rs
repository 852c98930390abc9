//! The [`NodeServer`] actor and the [`Node`] handle: the listener, EPMD registration (with an
//! embedded EPMD when none answers), one [`NodeSession`] per connected node, connection setup
//! with simultaneous-connect resolution (the rules are [`crate::connections`]'s), and node up/down
//! events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

use crate::config::NodeConfig;
use crate::connections::{Action, Attempt, ConnectionTable};
use crate::dist::control::Control;
use crate::dist::control::ProcessRef;
use crate::dist::handshake::{Established, HandshakeConfig, HandshakeError, Refusal, Status};
use crate::dist::DistFlags;
use crate::error::{ConnectError, NameProblem, NodeError};
use crate::etf::{Atom, Pid, Reference, Term};
use crate::lock;
use crate::message::ErlangMessage;
use crate::registry::{LocalProcess, Registry, NET_KERNEL_ID, ROUTER_ID};
use crate::remote::{ProxyArgs, Raw, RemoteActor, RemoteTarget};
use crate::session::{self, BoxedTransport, NodeSession, SessionArgs, SessionHandle};
use bytes::Bytes;

/// Something that happened to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A node connected.
    Up {
        /// Its name.
        node: String,
        /// The negotiated flags.
        flags: DistFlags,
        /// Whether the connection is hidden (either side hidden).
        hidden: bool,
    },
    /// A node disconnected.
    Down {
        /// Its name.
        node: String,
        /// Why (`connection_closed`, `net_tick_timeout`, ...).
        reason: String,
    },
}

/// A call this node made that waits for its reply.
pub(crate) struct PendingCall {
    reply: CallReply,
    target: ProcessRef,
    node: Atom,
    /// The session the call went out on.
    session: ActorId,
    /// When to give up on it.
    deadline: Option<std::time::Instant>,
}

/// Where a call's reply goes.
pub(crate) enum CallReply {
    /// The reply's ETF bytes (with 131).
    Bytes(RpcReplyPort<Vec<u8>>),
    /// A typed port of a call made on a proxy (see [`crate::message::typed_calls`]).
    Typed(Box<dyn crate::message::typed_calls::TypedReply>),
}

impl CallReply {
    fn timeout(&self) -> Option<Duration> {
        match self {
            CallReply::Bytes(port) => port.get_timeout(),
            CallReply::Typed(port) => port.timeout(),
        }
    }

    fn is_closed(&self) -> bool {
        match self {
            CallReply::Bytes(port) => port.is_closed(),
            CallReply::Typed(port) => port.is_closed(),
        }
    }

    fn complete(self, reply: &Term) {
        match self {
            CallReply::Bytes(port) => {
                let _ = port.send(reply.encode().to_vec());
            }
            CallReply::Typed(port) => port.complete(reply),
        }
    }
}

impl From<RpcReplyPort<Vec<u8>>> for CallReply {
    fn from(port: RpcReplyPort<Vec<u8>>) -> Self {
        CallReply::Bytes(port)
    }
}

/// State shared by the node's tasks, sessions and proxies.
pub(crate) struct NodeShared {
    pub name: Atom,
    pub config: NodeConfig,
    pub cookie: Vec<u8>,
    pub flags: DistFlags,
    pub creation: AtomicU32,
    pub net_kernel_pid: Pid,
    /// The pid Rust code sends from and receives call replies at.
    pub router_pid: Pid,
    pub sessions: RwLock<crate::hash::FastMap<Atom, SessionHandle>>,
    pub registry: Mutex<Registry>,
    pub proxies: Mutex<crate::hash::FastMap<RemoteTarget, ActorCell>>,
    pub pending: Mutex<crate::hash::FastMap<Reference, PendingCall>>,
    pub fallback: RwLock<Option<ActorRef<Raw>>>,
    /// Links and monitors across nodes.
    pub signals: Mutex<crate::signals::Signals>,
    /// The node server actor, which watches local actors for remote monitors and links.
    pub server_cell: std::sync::OnceLock<ActorCell>,
    /// Functions callable by rpc, by `{Module, Function}`.
    pub functions: RwLock<HashMap<crate::rpc::FnKey, crate::rpc::RpcFn>>,
    pub rex_pid: Pid,
    /// The global name server.
    pub global: std::sync::OnceLock<ActorRef<crate::global::GlobalMsg>>,
    /// The `pg` scope processes, by scope name.
    pub pg: RwLock<HashMap<Atom, ActorRef<crate::pg::ScopeMsg>>>,
    pub events: broadcast::Sender<NodeEvent>,
    /// Counters, uptime and graceful stop ([`crate::ops`]).
    pub ops: crate::ops::Ops,
    /// Busy polling after writes ([`crate::busy`]).
    pub busy: Arc<crate::busy::BusyPoll>,
    next_ref: AtomicU64,
    next_proxy: AtomicU64,
}

impl std::fmt::Debug for NodeShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeShared")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NodeShared {
    pub fn handshake_config(&self) -> HandshakeConfig {
        HandshakeConfig {
            node_name: self.name.as_str().to_owned(),
            cookie: self.cookie.clone(),
            flags: self.flags,
            required: DistFlags::REQUIRED,
            creation: self.creation.load(Ordering::Relaxed),
        }
    }

    /// The connected nodes and whether each connection is hidden.
    pub fn connected(&self) -> Vec<(String, bool)> {
        self.sessions
            .read()
            .map(|s| {
                s.values()
                    .filter(|h| h.actor.get_status() < ractor::ActorStatus::Draining)
                    .map(|h| (h.peer.as_str().to_owned(), h.hidden))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The live session with `node`; one that is stopping does not count.
    pub fn session(&self, node: &Atom) -> Option<SessionHandle> {
        let s = self.sessions.read().ok()?.get(node).cloned()?;
        (s.actor.get_status() < ractor::ActorStatus::Draining).then_some(s)
    }

    /// The live local process a pid or name refers to, if any.
    pub fn resolve(&self, target: &ProcessRef) -> Option<LocalProcess> {
        lock(&self.registry).resolve(target)
    }

    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// A new reference of this node.
    pub fn make_ref(&self) -> Reference {
        let n = self.next_ref.fetch_add(1, Ordering::Relaxed);
        let words = [
            n as u32 & 0x3ffff,
            (n >> 18) as u32,
            (n >> 50) as u32 ^ 0x5eed,
        ];
        Reference::new(
            self.name.clone(),
            self.creation.load(Ordering::Relaxed),
            &words,
        )
        .unwrap_or_else(|| unreachable!("three words make a reference"))
    }

    /// Sends ETF bytes (with 131) to a remote target from the router pid.
    pub fn send_raw(&self, target: &RemoteTarget, payload: Bytes) {
        match self.session(target.node()) {
            Some(s) => {
                let control = crate::remote::send_control(target, &self.router_pid);
                s.send_raw(control, payload);
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
                s.send(
                    crate::remote::send_control(target, &self.router_pid),
                    Some(msg),
                );
            }
            None => tracing::debug!(
                ?target,
                "no connection to the target's node; message dropped"
            ),
        }
    }

    /// Makes a `gen_server:call` to a remote target; the reply's ETF bytes go to `reply`.
    /// The target is monitored for the call's duration, so a call to a process that does not
    /// exist or dies fails at once (the reply port is dropped).
    pub fn call(
        self: &Arc<Self>,
        target: &RemoteTarget,
        request: Term,
        reply: impl Into<CallReply>,
    ) {
        let reply = reply.into();
        let Some(session) = self.session(target.node()) else {
            tracing::debug!(?target, "call to a node without a connection fails");
            return;
        };
        let mref = self.make_ref();
        let timeout = reply.timeout();
        lock(&self.pending).insert(
            mref.clone(),
            PendingCall {
                reply,
                target: target.process_ref(),
                node: target.node().clone(),
                session: session.actor.get_id(),
                deadline: timeout.map(|t| std::time::Instant::now() + t),
            },
        );
        session.send(
            Control::MonitorP {
                from: self.router_pid.clone(),
                to: target.process_ref(),
                reference: mref.clone(),
            },
            None,
        );
        session.send_call(
            crate::remote::send_control(target, &self.router_pid),
            crate::session::GenCall {
                from: self.router_pid.clone(),
                mref,
                request,
            },
        );
    }

    /// Completes (with `reply`) or abandons (with `None`) a pending call.
    pub fn finish_call(&self, mref: &Reference, reply: Option<&Term>) -> bool {
        let Some(call) = lock(&self.pending).remove(mref) else {
            return false;
        };
        if let Some(session) = self.session(&call.node) {
            // Not urgent: it goes with the next write rather than costing a write of its own.
            session.send_deferred(Control::DemonitorP {
                from: self.router_pid.clone(),
                to: call.target,
                reference: mref.clone(),
            });
        }
        if let Some(reply) = reply {
            call.reply.complete(reply);
        }
        true
    }

    /// Fails every pending call to `node` (its connection went down).
    /// Abandons calls past their deadline or whose caller gave up (the sweeper runs this
    /// every second, rather than a timer task per call).
    pub fn expire_calls(&self) {
        crate::message::typed_calls::sweep();
        let now = std::time::Instant::now();
        let expired: Vec<Reference> = lock(&self.pending)
            .iter()
            .filter(|(_, c)| c.reply.is_closed() || c.deadline.is_some_and(|d| d <= now))
            .map(|(r, _)| r.clone())
            .collect();
        for r in expired {
            self.finish_call(&r, None);
        }
    }

    /// Fails every pending call made on a session that went down.
    pub fn fail_calls_on(&self, session: ActorId) {
        lock(&self.pending).retain(|_, c| c.session != session);
    }

    /// The live proxy for `target`, if one exists.
    pub fn cached_proxy(&self, target: &RemoteTarget) -> Option<ActorCell> {
        let mut proxies = lock(&self.proxies);
        let cell = proxies.get(target)?;
        // A proxy killed with its session skips `post_stop` (ractor), so it may linger.
        if cell.get_status() < ractor::ActorStatus::Draining {
            return Some(cell.clone());
        }
        proxies.remove(target);
        None
    }

    pub fn forget_proxy(&self, target: &RemoteTarget, id: ActorId) {
        let mut proxies = lock(&self.proxies);
        if proxies.get(target).is_some_and(|c| c.get_id() == id) {
            proxies.remove(target);
        }
    }

    /// Monitors a remote process from the router pid over its node's live connection; the
    /// receiver gets the exit reason (`noconnection` when the connection goes). `None` without
    /// a connection.
    pub fn monitor_remote(
        &self,
        target: &RemoteTarget,
    ) -> Option<(Reference, tokio::sync::oneshot::Receiver<Term>)> {
        let session = self.session(target.node())?;
        let reference = self.make_ref();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.signals()
            .outgoing
            .insert(reference.clone(), (target.node().clone(), tx));
        session.send(
            Control::MonitorP {
                from: self.router_pid.clone(),
                to: target.process_ref(),
                reference: reference.clone(),
            },
            None,
        );
        Some((reference, rx))
    }

    pub fn signals(&self) -> std::sync::MutexGuard<'_, crate::signals::Signals> {
        lock(&self.signals)
    }

    /// Records a remote monitor or link on a local actor and makes sure the node server
    /// hears when the actor stops. Returns false when the actor is already gone.
    pub fn watch(
        &self,
        actor: &crate::registry::LocalActor,
        add: impl FnOnce(&mut crate::signals::Signals, ActorId),
    ) -> bool {
        let id = actor.cell.get_id();
        let first = {
            let mut signals = lock(&self.signals);
            let w = signals.watched.entry(id).or_default();
            let first = w.pid.is_none();
            w.pid = Some(actor.pid.clone());
            add(&mut signals, id);
            first
        };
        if first {
            if let Some(server) = self.server_cell.get() {
                server.monitor(actor.cell.clone());
            }
        }
        if actor.cell.get_status() >= ractor::ActorStatus::Stopping {
            // It stopped before the watch took: no event will come.
            let gone = lock(&self.signals).forget_watched(&id);
            if let Some(w) = gone {
                self.send_signals(w, &Term::atom("noproc"));
            }
            return false;
        }
        true
    }

    /// Sends the DOWN and EXIT signals for a watched actor that exited with `reason`.
    pub fn send_signals(&self, w: crate::signals::Watched, reason: &Term) {
        for (node, control) in crate::signals::exit_signals(w, reason) {
            if let Some(s) = self.session(&node) {
                s.send(control, None);
            }
        }
    }

    /// The registered function `module:function`, if any.
    pub fn function(&self, module: &Atom, function: &Atom) -> Option<crate::rpc::RpcFn> {
        self.functions
            .read()
            .ok()?
            .get(&(module.clone(), function.clone()))
            .cloned()
    }

    /// Hands a message no local process could take to the fallback actor, if one is set.
    pub fn undeliverable(&self, to: &ProcessRef, msg: Term) {
        tracing::warn!(?to, %msg, "message does not decode into the receiving actor's type");
        let fallback = self.fallback.read().ok().and_then(|f| f.clone());
        if let Some(fallback) = fallback {
            let _ = fallback.cast(Raw(msg));
        }
    }
}

/// Messages of the [`NodeServer`] actor.
#[derive(Debug)]
pub enum NodeServerMsg {
    /// Connect to a node (unless connected) and answer when the session is up.
    Connect {
        /// The node, `name@host`.
        node: String,
        /// Its address, to skip EPMD.
        addr: Option<SocketAddr>,
        /// Over TLS.
        tls: bool,
        /// The answer.
        reply: RpcReplyPort<Result<(), ConnectError>>,
    },
    /// An accepted connection's peer named itself: what status should it get?
    PeerNamed {
        /// The peer.
        peer: String,
        /// The status.
        reply: RpcReplyPort<Status>,
    },
    /// A handshake finished.
    Established(Box<PendingSession>),
    /// An outgoing connection attempt failed.
    ConnectFailed {
        /// The node.
        node: String,
        /// Which attempt.
        attempt: Attempt,
        /// Why.
        error: ConnectError,
    },
    /// An attempt that lost a simultaneous-connect race waited long enough for the peer's
    /// own connection to arrive.
    RaceTimedOut {
        /// The node.
        node: String,
        /// The attempt that lost.
        attempt: Attempt,
    },
    /// The connected nodes and whether each is hidden.
    Connected(RpcReplyPort<Vec<(String, bool)>>),
    /// Disconnect from a node.
    Disconnect(String),
}

impl ractor::Message for NodeServerMsg {}

/// A connection whose handshake finished, on its way to becoming a session.
pub struct PendingSession {
    stream: BoxedTransport,
    established: Established,
    leftover: bytes::BytesMut,
    /// The names of the peer's verified certificate (mutual TLS), for the admin guard.
    peer_cert_names: Option<Vec<String>>,
}

impl std::fmt::Debug for PendingSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSession")
            .field("peer", &self.established.peer.name)
            .finish()
    }
}

/// The actor that owns the node: listener, EPMD registration, sessions.
#[derive(Debug)]
pub struct NodeServer;

/// The [`NodeServer`]'s state.
pub struct NodeServerState {
    shared: Arc<NodeShared>,
    by_actor: HashMap<ActorId, Atom>,
    /// Connections made, being made and waited for, by the simultaneous-connect rules.
    table: ConnectionTable<ConnectWaiter>,
    /// The tasks of the outgoing attempts that run.
    attempts: HashMap<Attempt, tokio::task::JoinHandle<()>>,
    listener: tokio::task::JoinHandle<()>,
    _registration: Option<epmd::Registration>,
    _embedded_epmd: Option<epmd::ServerHandle>,
}

impl std::fmt::Debug for NodeServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeServerState")
            .field("node", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// Who waits for a connection: the reply port of a [`NodeServerMsg::Connect`].
type ConnectWaiter = RpcReplyPort<Result<(), ConnectError>>;

impl NodeServerState {
    /// Does what the connection table asks, but start attempts: only a connect request starts
    /// one, and knows how to dial.
    fn apply(&mut self, myself: &ActorRef<NodeServerMsg>, actions: Vec<Action<ConnectWaiter>>) {
        for action in actions {
            match action {
                Action::Start { node, attempt } => {
                    tracing::error!(%node, %attempt, "an attempt outside a connect request");
                }
                Action::Abort { attempt, .. } => {
                    if let Some(task) = self.attempts.remove(&attempt) {
                        task.abort();
                    }
                }
                Action::SetTimer {
                    node,
                    attempt,
                    after,
                } => {
                    let me = myself.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = me.cast(NodeServerMsg::RaceTimedOut { node, attempt });
                    });
                }
                Action::Answer { waiters, result } => {
                    for w in waiters {
                        let _ = w.send(result.clone());
                    }
                }
            }
        }
    }

    /// Tells the table that a session with `node` is gone once it is stopping: the table hears
    /// of its end only when the session actor has stopped.
    fn forget_stale(&mut self, node: &str) {
        if self.shared.session(&Atom::new(node)).is_none() {
            self.table.session_down(node);
        }
    }
}

/// What the [`NodeServer`] starts with.
pub struct NodeServerArgs {
    shared: Arc<NodeShared>,
    listener: TcpListener,
    registration: Option<epmd::Registration>,
    embedded_epmd: Option<epmd::ServerHandle>,
}

impl Actor for NodeServer {
    type Msg = NodeServerMsg;
    type State = NodeServerState;
    type Arguments = NodeServerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeServerMsg>,
        args: NodeServerArgs,
    ) -> Result<NodeServerState, ActorProcessingErr> {
        let _ = args.shared.server_cell.set(myself.get_cell());
        let listener = tokio::spawn(accept_loop(args.listener, args.shared.clone(), myself));
        let weak = Arc::downgrade(&args.shared);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                match weak.upgrade() {
                    Some(shared) => shared.expire_calls(),
                    None => return,
                }
            }
        });
        // A lost race waits twice the setup time for the peer's connection.
        let table =
            ConnectionTable::new(args.shared.name.as_str(), args.shared.config.setup_time * 2);
        Ok(NodeServerState {
            shared: args.shared,
            by_actor: HashMap::new(),
            table,
            attempts: HashMap::new(),
            listener,
            _registration: args.registration,
            _embedded_epmd: args.embedded_epmd,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<NodeServerMsg>,
        state: &mut NodeServerState,
    ) -> Result<(), ActorProcessingErr> {
        state.listener.abort();
        let actions = state.table.shutdown();
        state.apply(&myself, actions);
        for (_, task) in state.attempts.drain() {
            task.abort();
        }
        if let Ok(mut sessions) = state.shared.sessions.write() {
            for (_, s) in sessions.drain() {
                s.actor.stop(Some("node stopping".into()));
            }
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeServerMsg>,
        message: NodeServerMsg,
        state: &mut NodeServerState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            NodeServerMsg::Connect {
                node,
                addr,
                tls,
                reply,
            } => {
                state.forget_stale(&node);
                for action in state.table.connect(&node, reply) {
                    match action {
                        Action::Start { node, attempt } => {
                            let task = tokio::spawn(connect_task(
                                state.shared.clone(),
                                myself.clone(),
                                node,
                                attempt,
                                addr,
                                tls,
                            ));
                            state.attempts.insert(attempt, task);
                        }
                        other => state.apply(&myself, vec![other]),
                    }
                }
            }
            NodeServerMsg::PeerNamed { peer, reply } => {
                state.forget_stale(&peer);
                let status = state.table.peer_named(&peer);
                tracing::debug!(%peer, ?status, "peer named itself");
                let _ = reply.send(status);
            }
            NodeServerMsg::Established(pending) => {
                let PendingSession {
                    stream,
                    established,
                    leftover,
                    peer_cert_names,
                } = *pending;
                let peer = Atom::new(&established.peer.name);
                if let Some(old) = state.shared.session(&peer) {
                    tracing::info!(node = %peer, "replacing the previous connection");
                    state.by_actor.remove(&old.actor.get_id());
                    old.actor.stop(Some("replaced".into()));
                    // Subscribers see the old connection go before the new one comes, as
                    // OTP's nodedown/nodeup.
                    let _ = state.shared.events.send(NodeEvent::Down {
                        node: peer.as_str().to_owned(),
                        reason: "replaced".into(),
                    });
                }
                let flags = established.flags;
                let hidden = !flags.contains(DistFlags::PUBLISHED);
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                let deferred = crate::session::Deferred::default();
                let (actor, _) = Actor::spawn_linked(
                    None,
                    NodeSession,
                    SessionArgs {
                        shared: state.shared.clone(),
                        stream,
                        established,
                        leftover,
                        tx: tx.clone(),
                        rx,
                        deferred: deferred.clone(),
                        peer_cert_names,
                    },
                    myself.get_cell(),
                )
                .await?;
                let handle = SessionHandle {
                    peer: peer.clone(),
                    hidden,
                    flags,
                    tx,
                    actor: actor.clone(),
                    deferred,
                };
                state.by_actor.insert(actor.get_id(), peer.clone());
                if let Ok(mut sessions) = state.shared.sessions.write() {
                    sessions.insert(peer.clone(), handle);
                }
                tracing::info!(node = %peer, hidden, "node up");
                let _ = state.shared.events.send(NodeEvent::Up {
                    node: peer.as_str().to_owned(),
                    flags,
                    hidden,
                });
                let actions = state.table.established(peer.as_str());
                state.apply(&myself, actions);
            }
            NodeServerMsg::ConnectFailed {
                node,
                attempt,
                error,
            } => {
                state.attempts.remove(&attempt);
                tracing::info!(%node, %attempt, %error, "connection attempt failed");
                let actions = state.table.failed(&node, attempt, error);
                state.apply(&myself, actions);
            }
            NodeServerMsg::RaceTimedOut { node, attempt } => {
                let actions = state.table.race_timed_out(&node, attempt);
                state.apply(&myself, actions);
            }
            NodeServerMsg::Connected(reply) => {
                let _ = reply.send(state.shared.connected());
            }
            NodeServerMsg::Disconnect(node) => {
                if let Some(s) = state.shared.session(&Atom::new(&node)) {
                    s.actor.stop(Some("disconnect".into()));
                }
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<NodeServerMsg>,
        event: SupervisionEvent,
        state: &mut NodeServerState,
    ) -> Result<(), ActorProcessingErr> {
        // A local actor that remote processes monitor or link to has exited.
        let watched_exit = match &event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => Some((
                cell.get_id(),
                crate::signals::exit_reason_for_stop(reason.as_deref()),
            )),
            SupervisionEvent::ActorFailed(cell, err) => Some((
                cell.get_id(),
                crate::signals::exit_reason_for_failure(&err.to_string()),
            )),
            _ => None,
        };
        if let Some((id, reason)) = watched_exit {
            let (watched, signalled) = {
                let mut signals = state.shared.signals();
                signals.trapping.remove(&id);
                (
                    signals.forget_watched(&id),
                    signals.exit_reasons.remove(&id),
                )
            };
            if let Some(w) = watched {
                // An actor stopped by an exit signal exits with that signal's reason.
                state
                    .shared
                    .send_signals(w, signalled.as_ref().unwrap_or(&reason));
                return Ok(());
            }
        }
        let (cell, reason): (ActorCell, String) = match event {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, reason.unwrap_or_else(|| "normal".into()))
            }
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("session failed: {err}")),
            _ => return Ok(()),
        };
        if let Some(peer) = state.by_actor.remove(&cell.get_id()) {
            if let Ok(mut sessions) = state.shared.sessions.write() {
                if sessions
                    .get(&peer)
                    .is_some_and(|s| s.actor.get_id() == cell.get_id())
                {
                    sessions.remove(&peer);
                    state.table.session_down(peer.as_str());
                }
            }
            state.shared.fail_calls_on(cell.get_id());
            state.shared.signals().node_down(&peer);
            // Its proxies were stopped with it (without their post_stop): forget them.
            lock(&state.shared.proxies).retain(|t, _| *t.node() != peer);
            tracing::info!(node = %peer, %reason, "node down");
            let _ = state.shared.events.send(NodeEvent::Down {
                node: peer.as_str().to_owned(),
                reason,
            });
        }
        Ok(())
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<NodeShared>,
    server: ActorRef<NodeServerMsg>,
) {
    loop {
        let (tcp, peer_addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let setup = shared.config.setup_time;
            let mut peer_cert_names = None;
            let mut stream: BoxedTransport = match &shared.config.tls {
                Some(tls) => match tokio::time::timeout(setup, tls.acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => {
                        peer_cert_names =
                            crate::admin::peer_cert_names(&shared.config, s.get_ref().1);
                        Box::new(s)
                    }
                    Ok(Err(e)) => {
                        tracing::info!(%peer_addr, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%peer_addr, "TLS handshake timed out");
                        return;
                    }
                },
                None => Box::new(tcp),
            };
            match session::accept_handshake(
                &mut stream,
                &shared,
                &server,
                shared.config.tls.is_some(),
            )
            .await
            {
                Ok((established, leftover)) => {
                    let _ = server.cast(NodeServerMsg::Established(Box::new(PendingSession {
                        stream,
                        established,
                        leftover,
                        peer_cert_names,
                    })));
                }
                // As Erlang's `dist_util`, a wrong cookie is an error report on the
                // accepting node; other refusals (a name clash, a lost race) are routine.
                Err(e @ HandshakeError::BadDigest) => tracing::error!(
                    %peer_addr,
                    error = %e,
                    "connection attempt refused: the peer's cookie is not ours (invalid challenge reply)"
                ),
                Err(e @ HandshakeError::MissingFlags { .. }) => {
                    tracing::warn!(%peer_addr, error = %e, "incoming connection refused")
                }
                Err(e) => tracing::info!(%peer_addr, error = %e, "incoming connection refused"),
            }
        });
    }
}

async fn connect_task(
    shared: Arc<NodeShared>,
    server: ActorRef<NodeServerMsg>,
    node: String,
    attempt: Attempt,
    addr: Option<SocketAddr>,
    tls: bool,
) {
    let result = tokio::time::timeout(
        shared.config.setup_time * 3,
        connect(&shared, &node, addr, tls),
    )
    .await
    .unwrap_or_else(|_| Err(ConnectError::Timeout(node.clone())));
    let msg = match result {
        Ok((stream, established, leftover, peer_cert_names)) => {
            NodeServerMsg::Established(Box::new(PendingSession {
                stream,
                established,
                leftover,
                peer_cert_names,
            }))
        }
        Err(error) => NodeServerMsg::ConnectFailed {
            node,
            attempt,
            error,
        },
    };
    let _ = server.cast(msg);
}

async fn connect(
    shared: &NodeShared,
    node: &str,
    addr: Option<SocketAddr>,
    tls: bool,
) -> Result<
    (
        BoxedTransport,
        Established,
        bytes::BytesMut,
        Option<Vec<String>>,
    ),
    ConnectError,
> {
    let (name, host) = match (NameProblem::of_full_name(node), node.split_once('@')) {
        (None, Some(parts)) => parts,
        (problem, _) => {
            return Err(ConnectError::BadName {
                name: node.to_owned(),
                problem: problem.unwrap_or(NameProblem::NoHost),
            })
        }
    };
    let unreachable = |reason: String| ConnectError::Unreachable {
        node: node.to_owned(),
        reason,
    };
    let addr = match addr {
        Some(a) => a,
        None => {
            let epmd =
                epmd::Client::new(host, shared.config.epmd_port).timeout(shared.config.setup_time);
            let info = epmd
                .port_please(name)
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .ok_or_else(|| ConnectError::UnknownToEpmd(node.to_owned()))?;
            let ip = tokio::net::lookup_host((host, info.port))
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .next()
                .ok_or_else(|| unreachable("host has no address".into()))?;
            ip
        }
    };
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| unreachable(format!("{addr}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let mut peer_cert_names = None;
    let mut stream: BoxedTransport = if tls {
        let cfg = shared
            .config
            .tls
            .as_ref()
            .ok_or_else(|| ConnectError::Tls("the node has no TLS configuration".into()))?;
        let server_name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        let s = cfg
            .connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        peer_cert_names = crate::admin::peer_cert_names(&shared.config, s.get_ref().1);
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    match session::connect_handshake(&mut stream, shared, node, tls).await {
        Ok((est, leftover)) => Ok((stream, est, leftover, peer_cert_names)),
        Err(error) => Err(match error {
            HandshakeError::CookieRejected | HandshakeError::BadDigest => {
                ConnectError::CookieRejected(node.to_owned())
            }
            HandshakeError::Refused(Refusal::Status(Status::NotAllowed)) => {
                ConnectError::NotAllowed {
                    node: node.to_owned(),
                    missing: DistFlags(0),
                }
            }
            HandshakeError::MissingFlags { missing, .. } => ConnectError::NotAllowed {
                node: node.to_owned(),
                missing,
            },
            error => ConnectError::Handshake {
                node: node.to_owned(),
                error,
            },
        }),
    }
}

/// A running node: a handle on its [`NodeServer`] actor. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    actor: ActorRef<NodeServerMsg>,
    shared: Arc<NodeShared>,
    port: u16,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.shared.name)
            .field("port", &self.port)
            .finish()
    }
}

impl NodeConfig {
    /// Starts the node: binds the listener, registers with EPMD (starting an embedded EPMD
    /// when none answers), and spawns the [`NodeServer`].
    pub async fn start(self) -> Result<Node, NodeError> {
        let full = self.full_name()?;
        let cookie = self.resolve_cookie()?;
        let listener = TcpListener::bind(self.listen)
            .await
            .map_err(NodeError::Listen)?;
        let port = listener.local_addr().map_err(NodeError::Listen)?.port();
        let mut flags = DistFlags::OFFERED;
        if !self.hidden {
            flags = flags | DistFlags::PUBLISHED;
        }
        let (registration, embedded) = if self.register_with_epmd {
            let (reg, emb) = register(&self, &full, port).await?;
            (Some(reg), emb)
        } else {
            (None, None)
        };
        let creation = registration
            .as_ref()
            .map(|r| r.creation())
            .unwrap_or_else(|| {
                // No EPMD: any non-zero creation that changes between runs.
                (std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs() as u32)
                    .unwrap_or(1))
                .max(1)
            });
        let name = Atom::new(&full);
        let registry = Registry::new(name.clone(), creation);
        let (events, _) = broadcast::channel(256);
        let busy_wait = self.busy_wait;
        let shared = Arc::new(NodeShared {
            net_kernel_pid: registry.pid(NET_KERNEL_ID),
            router_pid: registry.pid(ROUTER_ID),
            rex_pid: registry.pid(crate::registry::REX_ID),
            name,
            config: self,
            cookie,
            flags,
            creation: AtomicU32::new(creation),
            sessions: RwLock::default(),
            registry: Mutex::new(registry),
            proxies: Mutex::default(),
            pending: Mutex::default(),
            fallback: RwLock::new(None),
            functions: RwLock::new(HashMap::new()),
            signals: Mutex::new(crate::signals::Signals::default()),
            server_cell: std::sync::OnceLock::new(),
            pg: RwLock::new(HashMap::new()),
            global: std::sync::OnceLock::new(),
            events,
            ops: crate::ops::Ops::default(),
            busy: Arc::new(crate::busy::BusyPoll::new(busy_wait)),
            next_ref: AtomicU64::new(1),
            next_proxy: AtomicU64::new(1),
        });
        let (actor, _) = Actor::spawn(
            None,
            NodeServer,
            NodeServerArgs {
                shared: shared.clone(),
                listener,
                registration,
                embedded_epmd: embedded,
            },
        )
        .await
        .map_err(|e| NodeError::Actor(e.to_string()))?;
        let global = crate::global::start(&shared, actor.get_cell())
            .await
            .map_err(|e| NodeError::Actor(e.to_string()))?;
        let _ = shared.global.set(global);
        for scope in &shared.config.pg_scopes {
            let scope_actor = crate::pg::start_scope(&shared, scope, actor.get_cell())
                .await
                .map_err(|e| NodeError::Actor(e.to_string()))?;
            if let Ok(mut scopes) = shared.pg.write() {
                scopes.insert(Atom::new(scope), scope_actor);
            }
        }
        tracing::info!(node = %shared.name, port, creation, "node started");
        let node = Node {
            actor,
            shared,
            port,
        };
        crate::builtins::install(&node);
        crate::groups::register_functions(&node);
        crate::global::register_functions(&node);
        Ok(node)
    }
}

/// Registers with EPMD, starting an embedded one when none answers on the configured port.
async fn register(
    config: &NodeConfig,
    full: &str,
    port: u16,
) -> Result<(epmd::Registration, Option<epmd::ServerHandle>), NodeError> {
    let name = full.split('@').next().unwrap_or(full);
    let mut info = epmd::NodeInfo::new(name, port);
    if config.hidden {
        info.node_type = epmd::NodeType::Hidden;
    }
    info.extra =
        epmd::roles::encode_roles(&config.roles).map_err(|e| NodeError::Roles(e.to_string()))?;
    let client =
        epmd::Client::new(config.epmd_host.clone(), config.epmd_port).timeout(config.setup_time);
    match client.register(info.clone()).await {
        Ok(reg) => Ok((reg, None)),
        Err(epmd::ClientError::Unreachable { .. }) => {
            let server = match epmd::ServerConfig::new()
                .port(config.epmd_port)
                .start()
                .await
            {
                Ok(s) => {
                    tracing::info!(
                        port = config.epmd_port,
                        "no epmd answered: started an embedded epmd in this process"
                    );
                    Some(s)
                }
                // Someone else started one meanwhile: use it.
                Err(e) => {
                    tracing::debug!(error = %e, "could not start an embedded epmd");
                    None
                }
            };
            let reg = client.register(info).await?;
            Ok((reg, server))
        }
        Err(e) => Err(e.into()),
    }
}

impl Node {
    /// The full node name.
    pub fn name(&self) -> &str {
        self.shared.name.as_str()
    }

    /// The creation EPMD gave this incarnation.
    pub fn creation(&self) -> u32 {
        self.shared.creation.load(Ordering::Relaxed)
    }

    /// The distribution listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's `global` names, as this node sees them.
    pub fn global(&self) -> crate::global::Global {
        crate::global::Global {
            shared: self.shared.clone(),
        }
    }

    /// Registers a local actor under a global name (an atom) on every node this node is in
    /// sync with, as `global:register_name/2`; Erlang can then `gen_server:call({global,
    /// Name}, ...)` it and `global:whereis_name(Name)` finds it.
    pub async fn register_global<M: ErlangMessage>(
        &self,
        name: &str,
        actor: &ActorRef<M>,
    ) -> Result<Pid, crate::global::GlobalError> {
        let pid = self.pid_of(actor);
        self.global()
            .register(Term::atom(name), pid.clone())
            .await?;
        Ok(pid)
    }

    pub(crate) fn shared(&self) -> &Arc<NodeShared> {
        &self.shared
    }

    /// The [`NodeServer`] actor.
    pub fn actor(&self) -> &ActorRef<NodeServerMsg> {
        &self.actor
    }

    /// Node up/down events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }

    /// The connected nodes and whether each connection is hidden.
    pub fn connected(&self) -> Vec<(String, bool)> {
        self.shared.connected()
    }

    /// Closes the connection to `node`, if any.
    pub fn disconnect(&self, node: &str) {
        let _ = self.actor.cast(NodeServerMsg::Disconnect(node.to_owned()));
    }

    /// Traffic counters and uptime (see [`crate::ops`]).
    pub fn stats(&self) -> crate::ops::NodeStats {
        self.shared.ops.stats()
    }

    /// Resolves when the node has stopped, however it stopped: `init:stop/0,1` from another
    /// node (a graceful stop, see [`crate::ops`]), [`Node::stop_gracefully`],
    /// [`Node::shutdown`]. Returns the status `init:stop/1` gave, else 0, so a program can
    /// exit with it.
    pub async fn wait_stopped(&self) -> i32 {
        let _ = self.actor.get_cell().wait(None).await;
        self.shared.ops.exit_status()
    }

    /// Stops the node as `init:stop/0` from another node does: rpc calls in flight answer
    /// and queued messages are written (each for at most [`crate::ops::GRACE`]), then every
    /// connection closes and the node unregisters from EPMD. Returns once it has stopped.
    pub async fn stop_gracefully(&self) {
        crate::ops::stop_gracefully(self.shared.clone(), 0).await;
        self.wait_stopped().await;
    }

    /// Stops the node: closes every connection and unregisters from EPMD.
    pub async fn shutdown(self) {
        let _ = self
            .actor
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
            .await;
    }

    async fn connect(
        &self,
        node: &str,
        addr: Option<SocketAddr>,
        tls: bool,
    ) -> Result<(), ConnectError> {
        let timeout = self.shared.config.setup_time * 3 + Duration::from_secs(1);
        let result = self
            .actor
            .call(
                |reply| NodeServerMsg::Connect {
                    node: node.to_owned(),
                    addr,
                    tls,
                    reply,
                },
                Some(timeout),
            )
            .await
            .map_err(|_| ConnectError::Stopping)?;
        match result {
            ractor::rpc::CallResult::Success(r) => r,
            ractor::rpc::CallResult::Timeout => Err(ConnectError::Timeout(node.to_owned())),
            ractor::rpc::CallResult::SenderError => Err(ConnectError::Stopping),
        }
    }
}

/// Why an actor could not be registered under a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// A live process already has the name.
    #[error("the name {0} is taken")]
    NameTaken(String),
}

impl Node {
    /// The pid Erlang sees for a local actor (made on first use), so it can be put in
    /// messages and sent to.
    pub fn pid_of<M: ErlangMessage>(&self, actor: &ActorRef<M>) -> Pid {
        self.shared
            .registry()
            .expose(&actor.get_cell(), || typed_delivery(actor), M::accepts_call)
            .pid
            .clone()
    }

    /// Registers a local actor under `name`, so Erlang can `{Name, Node} ! Msg` and
    /// `gen_server:call({Name, Node}, Request)`. The name is released when the actor stops.
    pub fn register<M: ErlangMessage>(
        &self,
        name: &str,
        actor: &ActorRef<M>,
    ) -> Result<Pid, RegisterError> {
        let mut registry = self.shared.registry();
        let local = registry.expose(&actor.get_cell(), || typed_delivery(actor), M::accepts_call);
        if !registry.register(Atom::new(name), LocalProcess::Actor(local.clone())) {
            return Err(RegisterError::NameTaken(name.to_owned()));
        }
        Ok(local.pid.clone())
    }

    /// Releases a registered name.
    pub fn unregister(&self, name: &str) -> bool {
        self.shared.registry().unregister(&Atom::new(name))
    }

    /// The names registered on this node (built-in services included).
    pub fn registered(&self) -> Vec<String> {
        self.shared
            .registry()
            .registered()
            .into_iter()
            .map(|a| a.as_str().to_owned())
            .collect()
    }

    /// Whether a local actor traps exits: with `true`, exit signals from remote processes
    /// (a linked process dying, `exit(Pid, Reason)`) arrive as `{'EXIT', From, Reason}`
    /// messages instead of stopping it; `exit(Pid, kill)` still kills it.
    pub fn trap_exits<M: ErlangMessage>(&self, actor: &ActorRef<M>, trap: bool) {
        let id = actor.get_id();
        let mut signals = self.shared.signals();
        if trap {
            signals.trapping.insert(id);
        } else {
            signals.trapping.remove(&id);
        }
    }

    /// Links a local actor with a remote process, as `link/1`: when either exits, the other
    /// gets an exit signal (the actor stops, or gets `{'EXIT', Pid, Reason}` when it traps
    /// exits). Linking to a process that does not exist gives the actor a `noproc` signal.
    pub async fn link<M: ErlangMessage>(
        &self,
        actor: &ActorRef<M>,
        remote: &Pid,
    ) -> Result<(), ConnectError> {
        if self.shared.session(&remote.node).is_none() {
            self.connect(remote.node.as_str(), None, false).await?;
        }
        let session =
            self.shared
                .session(&remote.node)
                .ok_or_else(|| ConnectError::Unreachable {
                    node: remote.node.as_str().to_owned(),
                    reason: "connection closed".into(),
                })?;
        let local = self.shared.registry().expose(
            &actor.get_cell(),
            || typed_delivery(actor),
            M::accepts_call,
        );
        let linked = remote.clone();
        self.shared
            .watch(&local, move |s, id| s.add_link(id, linked));
        session.send(
            Control::Link {
                from: local.pid.clone(),
                to: remote.clone(),
            },
            None,
        );
        Ok(())
    }

    /// Removes a link made with [`Node::link`] (or by the remote process).
    pub fn unlink<M: ErlangMessage>(&self, actor: &ActorRef<M>, remote: &Pid) {
        let local = self.shared.registry().expose(
            &actor.get_cell(),
            || typed_delivery(actor),
            M::accepts_call,
        );
        if let Some(w) = self.shared.signals().watched.get_mut(&actor.get_id()) {
            w.links.retain(|p| p != remote);
        }
        if let Some(session) = self.shared.session(&remote.node) {
            let id = self.shared.next_ref.fetch_add(1, Ordering::Relaxed);
            session.send(
                Control::UnlinkId {
                    id,
                    from: local.pid.clone(),
                    to: remote.clone(),
                },
                None,
            );
        }
    }

    /// Monitors a remote process (by pid or registered name): the returned
    /// [`crate::signals::RemoteMonitor`] resolves with its exit reason.
    pub async fn monitor(
        &self,
        target: &RemoteTarget,
    ) -> Result<crate::signals::RemoteMonitor, ConnectError> {
        if self.shared.session(target.node()).is_none() {
            self.connect(target.node().as_str(), None, false).await?;
        }
        let (reference, rx) =
            self.shared
                .monitor_remote(target)
                .ok_or_else(|| ConnectError::Unreachable {
                    node: target.node().as_str().to_owned(),
                    reason: "connection closed".into(),
                })?;
        Ok(crate::signals::RemoteMonitor { reference, rx })
    }

    /// Monitors a remote process on behalf of a local actor: when the process exits, the
    /// actor receives `down(reason)` in its mailbox, as an Erlang process receives
    /// `{'DOWN', Ref, process, Obj, Reason}`.
    pub async fn monitor_for<M: ractor::Message>(
        &self,
        target: &RemoteTarget,
        actor: &ActorRef<M>,
        down: impl FnOnce(Term) -> M + Send + 'static,
    ) -> Result<Reference, ConnectError> {
        let monitor = self.monitor(target).await?;
        let reference = monitor.reference().clone();
        let actor = actor.clone();
        tokio::spawn(async move {
            let reason = monitor.down().await;
            let _ = actor.cast(down(reason));
        });
        Ok(reference)
    }

    /// Removes a monitor made with [`Node::monitor`].
    pub fn demonitor(&self, target: &RemoteTarget, monitor: crate::signals::RemoteMonitor) {
        self.shared.signals().outgoing.remove(&monitor.reference);
        if let Some(session) = self.shared.session(target.node()) {
            session.send(
                Control::DemonitorP {
                    from: self.shared.router_pid.clone(),
                    to: target.process_ref(),
                    reference: monitor.reference,
                },
                None,
            );
        }
    }

    /// Makes `Module:Function(Args)` callable from Erlang with `rpc:call/4` and `erpc:call/4`.
    /// The function gets the argument list; see [`crate::rpc`] for how failures show in
    /// Erlang.
    pub fn register_fn<F, Fut>(&self, module: &str, function: &str, f: F)
    where
        F: Fn(Vec<Term>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = crate::rpc::RpcResult> + Send + 'static,
    {
        let f: crate::rpc::RpcFn = Arc::new(move |args| Box::pin(f(args)));
        if let Ok(mut fns) = self.shared.functions.write() {
            fns.insert((Atom::new(module), Atom::new(function)), f);
        }
    }

    /// Calls `Module:Function(Args)` on another node (through its `rex`, as `rpc:call/5`).
    pub async fn rpc(
        &self,
        node: &str,
        module: &str,
        function: &str,
        args: Vec<Term>,
        timeout: Duration,
    ) -> Result<Term, crate::rpc::RpcError> {
        let target = RemoteTarget::Name {
            name: Atom::new("rex"),
            node: Atom::new(node),
        };
        let request = Term::tuple(vec![
            Term::atom("call"),
            Term::atom(module),
            Term::atom(function),
            Term::list(args),
            Term::atom("user"),
        ]);
        let reply = self.call(&target, request, timeout).await?;
        match reply.as_tuple() {
            Some([tag, reason]) if tag.is_atom("badrpc") => {
                Err(crate::rpc::RpcError::BadRpc(reason.clone()))
            }
            _ => Ok(reply),
        }
    }

    /// Where messages that no actor could decode go (after being logged).
    pub fn set_fallback(&self, fallback: Option<ActorRef<Raw>>) {
        if let Ok(mut f) = self.shared.fallback.write() {
            *f = fallback;
        }
    }

    /// A typed handle on a remote process: casts become `SEND`, calls become `gen_server`
    /// calls. Connects to the pid's node first when needed.
    pub async fn remote_pid<M: ractor::Message>(
        &self,
        pid: Pid,
    ) -> Result<ActorRef<M>, ConnectError> {
        self.proxy(RemoteTarget::Pid(pid)).await
    }

    /// A typed handle on the process registered as `name` on `node`: casts become
    /// `REG_SEND`, calls `gen_server:call({Name, Node}, ...)`. Connects first when needed.
    pub async fn remote_name<M: ractor::Message>(
        &self,
        name: &str,
        node: &str,
    ) -> Result<ActorRef<M>, ConnectError> {
        self.proxy(RemoteTarget::Name {
            name: Atom::new(name),
            node: Atom::new(node),
        })
        .await
    }

    async fn proxy<M: ractor::Message>(
        &self,
        target: RemoteTarget,
    ) -> Result<ActorRef<M>, ConnectError> {
        let node = target.node().clone();
        if node == self.shared.name {
            return Err(ConnectError::BadName {
                name: node.as_str().to_owned(),
                problem: NameProblem::ThisNode,
            });
        }
        if let Some(cell) = self.shared.cached_proxy(&target) {
            return Ok(cell.into());
        }
        if self.shared.session(&node).is_none() {
            self.connect(node.as_str(), None, false).await?;
        }
        Ok(proxy_cell(&self.shared, target).await?.into())
    }

    /// Sends a term to a remote process or name (no connection: dropped, as in Erlang).
    pub fn send(&self, target: &RemoteTarget, msg: Term) {
        self.shared.send_term(target, msg);
    }

    /// Sends `msg` to a process alias of another node (`Alias ! Msg`), from the node's router
    /// pid. With `priority`, as `erlang:send(Alias, Msg, [priority])` (EEP 76, OTP 28+): a
    /// process that made the alias with `alias([priority])` gets it ahead of its ordinary
    /// messages. The peer must have agreed `DFLAG_ALTACT_SIG` for that (OTP 28 and later);
    /// to an older peer it goes as an ordinary `ALIAS_SEND`, as OTP does. False when the
    /// alias's node is not connected (nothing is sent) or takes no aliases.
    pub fn send_to_alias(&self, alias: &crate::etf::Reference, msg: Term, priority: bool) -> bool {
        use crate::dist::control::{AltAct, AltActTarget};
        let Some(session) = self.shared.session(&alias.node) else {
            tracing::debug!(?alias, "no connection to the alias's node; message dropped");
            return false;
        };
        let from = self.shared.router_pid.clone();
        let control = if session.flags.contains(DistFlags::ALTACT_SIG) {
            let flags = if priority {
                AltAct::ALIAS | AltAct::PRIORITY
            } else {
                AltAct::ALIAS
            };
            Control::AltAct {
                flags,
                from,
                to: AltActTarget::Alias(alias.clone()),
                token: None,
            }
        } else if session.flags.contains(DistFlags::ALIAS) {
            Control::AliasSend {
                from,
                alias: alias.clone(),
            }
        } else {
            return false;
        };
        session.send(control, Some(msg))
    }

    /// Calls a remote `gen_server` with a term and waits up to `timeout` for the reply term.
    pub async fn call(
        &self,
        target: &RemoteTarget,
        request: Term,
        timeout: Duration,
    ) -> Result<Term, CallError> {
        if self.shared.session(target.node()).is_none() {
            self.connect(target.node().as_str(), None, false).await?;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared
            .call(target, request, RpcReplyPort::from((tx, timeout)));
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Err(_)) => Err(CallError::NoProcess),
            Ok(Ok(bytes)) => {
                Term::decode_slice(&bytes).map_err(|e| CallError::BadReply(e.to_string()))
            }
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// No reply within the timeout.
    #[error("no reply within the timeout")]
    Timeout,
    /// The target does not exist, died, or its node went down.
    #[error("the target process does not exist or went down")]
    NoProcess,
    /// The reply did not decode.
    #[error("reply did not decode: {0}")]
    BadReply(String),
    /// The target's node could not be reached.
    #[error(transparent)]
    Connect(#[from] ConnectError),
}

/// Casts node up/down events to `actor`, as `translate` turns them into its messages
/// (`None`: skip), until the actor or the node is gone. Lagging events are skipped.
pub(crate) fn forward_node_events<M: ractor::Message>(
    shared: &NodeShared,
    actor: ActorRef<M>,
    translate: fn(NodeEvent) -> Option<M>,
) -> tokio::task::JoinHandle<()> {
    let mut events = shared.events.subscribe();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            if let Some(msg) = translate(event) {
                if actor.cast(msg).is_err() {
                    return;
                }
            }
        }
    })
}

/// The proxy for a remote process on a connected node: the cached one, or a new one linked
/// to the node's session (so it goes when the connection goes).
pub(crate) async fn proxy_cell(
    shared: &Arc<NodeShared>,
    target: RemoteTarget,
) -> Result<ActorCell, ConnectError> {
    if let Some(cell) = shared.cached_proxy(&target) {
        return Ok(cell);
    }
    let node = target.node().clone();
    let session = shared
        .session(&node)
        .ok_or_else(|| ConnectError::Unreachable {
            node: node.as_str().to_owned(),
            reason: "connection closed".into(),
        })?;
    let id = ActorId::Remote {
        node_id: node_id(&node),
        pid: shared.next_proxy.fetch_add(1, Ordering::Relaxed),
    };
    let (proxy, _) = ractor::ActorRuntime::<RemoteActor>::spawn_linked_remote(
        None,
        RemoteActor,
        id,
        ProxyArgs {
            shared: shared.clone(),
            target: target.clone(),
        },
        session.actor.get_cell(),
    )
    .await
    .map_err(|e| ConnectError::Unreachable {
        node: node.as_str().to_owned(),
        reason: format!("proxy: {e}"),
    })?;
    let mut proxies = lock(&shared.proxies);
    if let Some(existing) = proxies.get(&target) {
        // Another task made one meanwhile: keep that one.
        proxy.stop(None);
        return Ok(existing.clone());
    }
    proxies.insert(target, proxy.get_cell());
    Ok(proxy.get_cell())
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

/// A stable number for a node name, for the ractor ids of its proxies.
fn node_id(node: &Atom) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.hash(&mut h);
    h.finish()
}

/// Connects `node` to `peer` (`name@host`), resolving it through EPMD on the peer's host, and
/// returns once the session is up (or was already).
pub async fn client_connect(node: &Node, peer: &str) -> Result<(), ConnectError> {
    node.connect(peer, None, false).await
}

/// Connects to `peer` listening at `addr`, without asking EPMD.
pub async fn client_connect_addr(
    node: &Node,
    peer: &str,
    addr: SocketAddr,
) -> Result<(), ConnectError> {
    node.connect(peer, Some(addr), false).await
}

/// Like [`client_connect`], over TLS (the node needs a [`crate::tls::TlsConfig`]).
pub async fn client_connect_enc(node: &Node, peer: &str) -> Result<(), ConnectError> {
    node.connect(peer, None, true).await
}
