//! Proxies: the ractor actor that stands for one remote process ([`RemoteActor`]), made on
//! first use for a target and cached while it runs.
//!
//! A proxy is a ractor actor with a remote [`ractor::ActorId`], so local code holds an
//! `ActorRef<M>` of its own message type; see [`crate::remote`] for how casts and calls on it
//! reach the remote process.
//!
//! A proxy lives as long as what it stands for, as a ractor actor lives until it stops (ractor
//! has no reference counting of actors to end one when its last `ActorRef` goes): the proxy of
//! a pid monitors that process and stops when it exits, with its exit reason as the stop
//! reason (an atom's name, or the term's text: `"normal"`, `"noproc"`, `"{shutdown,db}"`), so
//! ractor code that links to it or waits on it learns of the exit; every proxy of a node stops
//! when that node's connection goes (`"noconnection"`); a name's proxy stays while the
//! connection does (the name may be registered again). After it stops, a cast or call on it
//! fails as on any stopped actor, and asking the node again gives a new proxy.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use ractor::message::SerializedMessage;
use ractor::{Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef};

use crate::core::Core;
use crate::error::ConnectError;
use crate::etf::{Atom, Term};
use crate::outgoing::CallRequest;
use crate::remote::{send_control, RemoteTarget};
use crate::signals::DownTo;

/// The message type a proxy is spawned with; nothing sends it (senders use their own types,
/// which arrive serialized).
#[derive(Debug)]
pub struct ProxyMsg;

impl ractor::Message for ProxyMsg {}

/// The proxy actor for one remote process.
#[derive(Debug)]
pub struct RemoteActor;

/// A proxy's state.
pub struct ProxyState {
    shared: Arc<Core>,
    target: RemoteTarget,
    /// The session it sends on (a proxy lives no longer than its node's session).
    session: Option<crate::sessions::SessionHandle>,
    /// Its `SEND` / `REG_SEND` control message, encoded once.
    control: Bytes,
    /// The monitor on the process of a pid's proxy, while it has not fired.
    monitor: Option<crate::etf::Reference>,
}

impl std::fmt::Debug for ProxyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyState")
            .field("target", &self.target)
            .finish()
    }
}

/// What a proxy starts with.
pub struct ProxyArgs {
    pub(crate) shared: Arc<Core>,
    pub(crate) target: RemoteTarget,
}

impl Actor for RemoteActor {
    type Msg = ProxyMsg;
    type State = ProxyState;
    type Arguments = ProxyArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ProxyMsg>,
        args: ProxyArgs,
    ) -> Result<ProxyState, ActorProcessingErr> {
        let session = args.shared.sessions.get(args.target.node());
        let mut control = bytes::BytesMut::new();
        send_control(&args.target, &args.shared.id.router_pid)
            .to_term()
            .encode_body_into(&mut control);
        let monitor = match &args.target {
            RemoteTarget::Pid(_) => args
                .shared
                .monitor_remote_for(&args.target, DownTo::Proxy(myself.get_cell())),
            RemoteTarget::Name { .. } => None,
        };
        Ok(ProxyState {
            session,
            control: control.freeze(),
            shared: args.shared,
            target: args.target,
            monitor,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<ProxyMsg>,
        state: &mut ProxyState,
    ) -> Result<(), ActorProcessingErr> {
        state.shared.proxies.forget(&state.target, myself.get_id());
        if let Some(reference) = state.monitor.take() {
            state.shared.demonitor_remote(&state.target, reference);
        }
        Ok(())
    }

    // Not an `async fn`: the work is synchronous, and a ready future keeps the state ractor
    // moves around for every message small (an `async fn`'s future holds its arguments).
    fn handle_serialized(
        &self,
        _myself: ActorRef<ProxyMsg>,
        message: SerializedMessage,
        state: &mut ProxyState,
    ) -> impl std::future::Future<Output = Result<(), ActorProcessingErr>> + Send {
        forward(message, state);
        std::future::ready(Ok(()))
    }
}

/// Sends what was cast or called on a proxy.
fn forward(message: SerializedMessage, state: &mut ProxyState) {
    match message {
        SerializedMessage::Cast { args, .. } => match &state.session {
            Some(session) => {
                // At the hard cap the message is dropped, counted and logged (see
                // `crate::send_queue`): a cast cannot wait.
                let _ = session.send_prepared(state.control.clone(), args);
            }
            None => state.shared.send_raw(&state.target, Bytes::from(args)),
        },
        SerializedMessage::Call {
            args,
            reply,
            metadata,
            ..
        } => {
            // A call of a derived message type goes out as the derive encoded it (its reply
            // port is bridged to the caller's typed port). Anything else is decoded first, so
            // that bytes which are not ETF never reach the peer.
            let args = Bytes::from(args);
            let request = if crate::message::typed_calls::is_derived(metadata.as_deref()) {
                CallRequest::Encoded(args.slice(1.min(args.len())..))
            } else {
                match Term::decode(&args) {
                    Ok(request) => CallRequest::Term(request),
                    Err(e) => {
                        tracing::warn!(target = ?state.target, error = %e, "call request did not decode; dropped");
                        return;
                    }
                }
            };
            let reply = crate::calls::CallReply::from(reply);
            match &state.session {
                Some(session) => state.shared.call_on(session, &state.target, request, reply),
                None => {
                    tracing::debug!(target = ?state.target, "call on a proxy without a connection fails")
                }
            }
        }
        SerializedMessage::CallReply(..) => {}
    }
}

/// The proxy for a remote process on a connected node: the cached one, or a new one linked
/// to the node's session (so it goes when the connection goes).
pub(crate) async fn proxy_cell(
    shared: &Arc<Core>,
    target: RemoteTarget,
) -> Result<ActorCell, ConnectError> {
    if let Some(cell) = shared.proxies.cached(&target) {
        return Ok(cell);
    }
    let node = target.node().clone();
    let session = shared
        .sessions
        .get(&node)
        .ok_or_else(|| ConnectError::Unreachable {
            node: node.as_str().to_owned(),
            reason: "connection closed".into(),
        })?;
    let id = ActorId::Remote {
        node_id: node_id(&node),
        pid: shared.proxies.next.fetch_add(1, Ordering::Relaxed),
    };
    let (proxy, _) = ractor::ActorRuntime::<RemoteActor>::spawn_linked_remote(
        None,
        RemoteActor,
        id,
        ProxyArgs {
            shared: shared.clone(),
            target: target.clone(),
        },
        session.actor.clone(),
    )
    .await
    .map_err(|e| ConnectError::Unreachable {
        node: node.as_str().to_owned(),
        reason: format!("proxy: {e}"),
    })?;
    shared
        .proxies
        .keep(target, proxy.get_cell())
        .or_else(|existing| {
            // Another task made one meanwhile: keep that one.
            proxy.stop(None);
            Ok(existing)
        })
}

/// A stable number for a node name, for the ractor ids of its proxies.
fn node_id(node: &Atom) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.hash(&mut h);
    h.finish()
}
