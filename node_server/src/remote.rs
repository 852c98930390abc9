//! Remote processes as typed actors: [`RemoteActor`] proxies, and [`Raw`], the message type
//! that carries any term.
//!
//! A proxy is a ractor actor with a remote [`ractor::ActorId`], so local code holds an
//! `ActorRef<M>` of its own message type. ractor serializes what is cast or called on it
//! (`Message::serialize`, which the derive implements as the term's ETF bytes) and hands the
//! result to the proxy's `handle_serialized`, which turns a cast into `SEND` / `REG_SEND` and a
//! call into a `gen_server:call` (`{'$gen_call', {From, [alias|Ref]}, Request}`), the reply
//! coming back through the alias. Proxies are cached per target, supervised by their node's
//! session, and stop with it.
//!
//! Sending many casts from one task: a cast only queues the message for the proxy and wakes
//! it, and tokio runs a task woken from a worker in that worker's LIFO slot, which other
//! workers cannot steal from, once the current task yields. A loop of casts that never
//! awaits anything therefore buffers the whole flood before the proxy sends any of it. Spend
//! tokio's cooperative budget in such a loop and the proxy sends while it runs:
//!
//! ```no_run
//! # async fn flood(peer: ractor::ActorRef<node_server::remote::Raw>) {
//! use node_server::etf::Term;
//! for i in 0..1_000_000 {
//!     let _ = peer.cast(node_server::remote::Raw(Term::Int(i)));
//!     // Yields once every 128 calls (tokio's budget); free otherwise.
//!     tokio::task::coop::consume_budget().await;
//! }
//! # }
//! ```

use std::sync::Arc;

use bytes::Bytes;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::dist::control::{Control, ProcessRef};
use crate::etf::{Atom, ConversionError, FromTerm, Pid, Term, ToTerm};
use crate::server::NodeShared;

/// Who a proxy stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RemoteTarget {
    /// A process by pid.
    Pid(Pid),
    /// A registered name on a node.
    Name {
        /// The name.
        name: Atom,
        /// The node.
        node: Atom,
    },
}

impl RemoteTarget {
    /// The node the target lives on.
    pub fn node(&self) -> &Atom {
        match self {
            RemoteTarget::Pid(p) => &p.node,
            RemoteTarget::Name { node, .. } => node,
        }
    }

    pub(crate) fn process_ref(&self) -> ProcessRef {
        match self {
            RemoteTarget::Pid(p) => ProcessRef::Pid(p.clone()),
            RemoteTarget::Name { name, .. } => ProcessRef::Name(name.clone()),
        }
    }
}

/// Any term as a message: for actors that take whatever arrives, and for sending terms that
/// no Rust type describes.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw(pub Term);

impl ToTerm for Raw {
    fn to_term(&self) -> Term {
        self.0.clone()
    }
}

impl FromTerm for Raw {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        Ok(Raw(term.clone()))
    }
}

impl ractor::Message for Raw {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        Ok(SerializedMessage::Cast {
            variant: String::new(),
            args: self.0.encode().to_vec(),
            metadata: None,
        })
    }

    fn deserialize(msg: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        match msg {
            SerializedMessage::Cast { args, .. } => Term::decode(&Bytes::from(args))
                .map(Raw)
                .map_err(|_| BoxedDowncastErr),
            _ => Err(BoxedDowncastErr),
        }
    }
}

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
    shared: Arc<NodeShared>,
    target: RemoteTarget,
    /// The session it sends on (a proxy lives no longer than its node's session).
    session: Option<crate::session::SessionHandle>,
    /// Its `SEND` / `REG_SEND` control message, encoded once.
    control: Bytes,
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
    pub(crate) shared: Arc<NodeShared>,
    pub(crate) target: RemoteTarget,
}

impl Actor for RemoteActor {
    type Msg = ProxyMsg;
    type State = ProxyState;
    type Arguments = ProxyArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ProxyMsg>,
        args: ProxyArgs,
    ) -> Result<ProxyState, ActorProcessingErr> {
        let session = args.shared.session(args.target.node());
        let mut control = bytes::BytesMut::new();
        send_control(&args.target, &args.shared.router_pid)
            .to_term()
            .encode_body_into(&mut control);
        Ok(ProxyState {
            session,
            control: control.freeze(),
            shared: args.shared,
            target: args.target,
        })
    }

    async fn post_stop(
        &self,
        myself: ActorRef<ProxyMsg>,
        state: &mut ProxyState,
    ) -> Result<(), ActorProcessingErr> {
        state.shared.forget_proxy(&state.target, myself.get_id());
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
                session.send_prepared(state.control.clone(), args);
            }
            None => state.shared.send_raw(&state.target, Bytes::from(args)),
        },
        SerializedMessage::Call {
            args,
            reply,
            metadata,
            ..
        } => match Term::decode(&Bytes::from(args)) {
            Ok(request) => {
                // A call of a derived message type: its typed port, parked at
                // serialization, gets the reply term directly.
                let typed = metadata
                    .as_deref()
                    .and_then(crate::message::typed_calls::take);
                match typed {
                    Some(port) => state.shared.call(
                        &state.target,
                        request,
                        crate::server::CallReply::Typed(port),
                    ),
                    None => state.shared.call(&state.target, request, reply),
                }
            }
            Err(e) => {
                tracing::warn!(target = ?state.target, error = %e, "call request did not decode; dropped")
            }
        },
        SerializedMessage::CallReply(..) => {}
    }
}

/// Control for a cast to `target` from `from`.
pub(crate) fn send_control(target: &RemoteTarget, from: &Pid) -> Control {
    match target {
        RemoteTarget::Pid(pid) => Control::Send { to: pid.clone() },
        RemoteTarget::Name { name, .. } => Control::RegSend {
            from: from.clone(),
            to_name: name.clone(),
        },
    }
}

impl crate::message::ErlangMessage for Raw {
    fn accepts_cast(_term: &Term) -> bool {
        true
    }

    fn accepts_call(_request: &Term) -> bool {
        false
    }
}
