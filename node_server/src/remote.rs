//! Remote processes as typed actors: [`RemoteTarget`], what a proxy
//! ([`crate::proxy::RemoteActor`]) stands for, and [`Raw`], the message type that carries any
//! term.
//!
//! A proxy is a ractor actor with a remote [`ractor::ActorId`], so local code holds an
//! `ActorRef<M>` of its own message type. ractor serializes what is cast or called on it
//! (`Message::serialize`, which the derive implements as the term's ETF bytes) and hands the
//! result to the proxy's `handle_serialized`, which turns a cast into `SEND` / `REG_SEND` and a
//! call into a `gen_server:call` (`{'$gen_call', {From, [alias|Ref]}, Request}`), the reply
//! coming back through the alias. Proxies are cached per target, supervised by their node's
//! session, and stop with it, or, for a pid, when its process exits (see [`crate::proxy`]).
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

use ractor::message::{BoxedDowncastErr, SerializedMessage};

use crate::dist::control::{Control, ProcessRef};
use crate::etf::{Atom, ConversionError, FromTerm, Pid, Term, ToTerm};

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
            SerializedMessage::Cast { args, .. } => Term::decode(&bytes::Bytes::from(args))
                .map(Raw)
                .map_err(|_| BoxedDowncastErr),
            _ => Err(BoxedDowncastErr),
        }
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
