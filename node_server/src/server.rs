//! The [`NodeServer`] actor: the listener (whatever [`crate::network`] gives), one [`NodeSession`] per connected node, connection
//! setup with simultaneous-connect resolution (the rules are [`crate::connections`]'s), and node
//! up/down events.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use crate::connections::{Action, Attempt, ConnectionTable};
use crate::core::Core;
use crate::dist::handshake::{Established, HandshakeError, Refusal, Status};
use crate::dist::DistFlags;
use crate::error::{ConnectError, NameProblem};
use crate::etf::Atom;
use crate::events::NodeEvent;
use crate::network::Listener;
use crate::ops::HandshakeFailure;
use crate::session::{self, BoxedTransport, NodeSession, SessionArgs};
use crate::sessions::SessionHandle;

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
    /// The handshake of a connection accepted with `ok` or `ok_simultaneous` failed.
    AcceptEnded {
        /// The peer it named.
        peer: String,
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
    shared: Arc<Core>,
    by_actor: HashMap<ActorId, Atom>,
    /// Connections made, being made and waited for, by the simultaneous-connect rules.
    table: ConnectionTable<ConnectWaiter>,
    /// The tasks of the outgoing attempts that run.
    attempts: HashMap<Attempt, tokio::task::JoinHandle<()>>,
    listener: tokio::task::JoinHandle<()>,
    /// What lives as long as the node: what the network keeps while the node listens (the
    /// EPMD registration, say), and the metrics listener ([`crate::metrics`]).
    _keep: Box<dyn std::any::Any + Send>,
}

impl std::fmt::Debug for NodeServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeServerState")
            .field("node", &self.shared.id.name)
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
    pub(crate) shared: Arc<Core>,
    pub(crate) listener: Box<dyn Listener>,
    pub(crate) keep: Box<dyn std::any::Any + Send>,
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
        args.shared.router.set_watcher(myself.get_cell());
        let _ = args.shared.server.set(myself.get_cell());
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
        let table = ConnectionTable::new(
            args.shared.id.name.as_str(),
            args.shared.id.config.setup_time * 2,
        );
        Ok(NodeServerState {
            shared: args.shared,
            by_actor: HashMap::new(),
            table,
            attempts: HashMap::new(),
            listener,
            _keep: args.keep,
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
        for s in state.shared.sessions.drain() {
            s.actor.stop(Some("node stopping".into()));
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
                match status {
                    crate::dist::handshake::Status::OkSimultaneous => {
                        let actions = state.table.yielded(&peer);
                        state.apply(&myself, actions);
                    }
                    crate::dist::handshake::Status::Ok => state.table.accepting(&peer),
                    _ => {}
                }
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
                    state.shared.events.send(NodeEvent::Down {
                        node: peer.as_str().to_owned(),
                        reason: "replaced".into(),
                    });
                }
                let flags = established.flags;
                let hidden = !flags.contains(DistFlags::PUBLISHED);
                let flow = state.shared.id.config.flow;
                let queue = std::sync::Arc::new(crate::send_queue::SendQueue::new(
                    flags,
                    flow.busy_limit,
                    flow.queue_cap,
                ));
                let deferred = crate::sessions::Deferred::default();
                let (actor, _) = Actor::spawn_linked(
                    None,
                    NodeSession,
                    SessionArgs {
                        shared: state.shared.clone(),
                        stream,
                        established,
                        leftover,
                        queue: queue.clone(),
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
                    queue,
                    actor: actor.get_cell(),
                    deferred,
                };
                state.by_actor.insert(actor.get_id(), peer.clone());
                state.shared.sessions.insert(handle);
                tracing::info!(node = %peer, hidden, "node up");
                state.shared.events.send(NodeEvent::Up {
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
                state.shared.ops.connect_failed(&error);
                let actions = state.table.failed(&node, attempt, error);
                state.apply(&myself, actions);
            }
            NodeServerMsg::RaceTimedOut { node, attempt } => {
                let actions = state.table.race_timed_out(&node, attempt);
                state.apply(&myself, actions);
            }
            NodeServerMsg::AcceptEnded { peer } => {
                let actions = state.table.accept_ended(&peer);
                state.apply(&myself, actions);
            }
            NodeServerMsg::Connected(reply) => {
                let _ = reply.send(state.shared.sessions.connected());
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
            if state.shared.session_ended(&peer, cell.get_id()) {
                state.table.session_down(peer.as_str());
            }
            tracing::info!(node = %peer, %reason, "node down");
            state.shared.events.send(NodeEvent::Down {
                node: peer.as_str().to_owned(),
                reason,
            });
        }
        Ok(())
    }
}

async fn accept_loop(
    mut listener: Box<dyn Listener>,
    shared: Arc<Core>,
    server: ActorRef<NodeServerMsg>,
) {
    loop {
        let (raw, peer_addr) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let server = server.clone();
        tokio::spawn(async move {
            let setup = shared.id.config.setup_time;
            let mut peer_cert_names = None;
            let mut stream: BoxedTransport = match &shared.id.config.tls {
                Some(tls) => match tokio::time::timeout(setup, tls.acceptor.accept(raw)).await {
                    Ok(Ok(s)) => {
                        peer_cert_names =
                            crate::admin::peer_cert_names(&shared.id.config, s.get_ref().1);
                        Box::new(s)
                    }
                    Ok(Err(e)) => {
                        tracing::info!(%peer_addr, error = %e, "TLS handshake refused");
                        shared.ops.handshake_failures.count(HandshakeFailure::Tls);
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%peer_addr, "TLS handshake timed out");
                        shared
                            .ops
                            .handshake_failures
                            .count(HandshakeFailure::Timeout);
                        return;
                    }
                },
                None => raw,
            };
            let result = session::accept_handshake(
                &mut stream,
                &shared,
                &server,
                shared.id.config.tls.is_some(),
            )
            .await;
            if let Err(e) = &result {
                shared.ops.accept_failed(e);
            }
            match result {
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
    shared: Arc<Core>,
    server: ActorRef<NodeServerMsg>,
    node: String,
    attempt: Attempt,
    addr: Option<SocketAddr>,
    tls: bool,
) {
    let result = tokio::time::timeout(
        shared.id.config.setup_time * 3,
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
    shared: &Core,
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
    let (_, host) = match (NameProblem::of_full_name(node), node.split_once('@')) {
        (None, Some(parts)) => parts,
        (problem, _) => {
            return Err(ConnectError::BadName {
                name: node.to_owned(),
                problem: problem.unwrap_or(NameProblem::NoHost),
            })
        }
    };
    let config = &shared.id.config;
    let raw = config
        .net
        .network()
        .connect(node, addr, config.net_context())
        .await?;
    let mut peer_cert_names = None;
    let mut stream: BoxedTransport = if tls {
        let cfg = shared
            .id
            .config
            .tls
            .as_ref()
            .ok_or_else(|| ConnectError::Tls("the node has no TLS configuration".into()))?;
        let server_name = tokio_rustls::rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        let s = cfg
            .connector
            .connect(server_name, raw)
            .await
            .map_err(|e| ConnectError::Tls(e.to_string()))?;
        peer_cert_names = crate::admin::peer_cert_names(&shared.id.config, s.get_ref().1);
        Box::new(s)
    } else {
        raw
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
