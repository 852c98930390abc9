//! Calls in flight: the `gen_server` calls this node made to other nodes' processes, by the
//! monitor reference that is also their reply alias, until the reply, the target's `DOWN`, the
//! caller giving up, the deadline, or the connection going ends each.

use std::sync::Mutex;
use std::time::Duration;

use ractor::{ActorId, RpcReplyPort};
use tokio::time::Instant;

use crate::dist::control::ProcessRef;
use crate::etf::{Atom, Reference, Term};
use crate::hash::FastMap;
use crate::lock;

/// A call this node made that waits for its reply.
pub(crate) struct PendingCall {
    pub reply: CallReply,
    pub target: ProcessRef,
    pub node: Atom,
    /// The session the call went out on.
    pub session: ActorId,
    /// When to give up on it.
    pub deadline: Option<Instant>,
}

/// Where a call's reply goes.
pub(crate) enum CallReply {
    /// The reply's ETF bytes (with 131).
    Bytes(RpcReplyPort<Vec<u8>>),
    /// The reply term, for a caller that waits up to the timeout given.
    Term(tokio::sync::oneshot::Sender<Term>, Duration),
}

impl CallReply {
    pub fn timeout(&self) -> Option<Duration> {
        match self {
            CallReply::Bytes(port) => port.get_timeout(),
            CallReply::Term(_, timeout) => Some(*timeout),
        }
    }

    pub fn is_closed(&self) -> bool {
        match self {
            CallReply::Bytes(port) => port.is_closed(),
            CallReply::Term(tx, _) => tx.is_closed(),
        }
    }

    pub fn complete(self, reply: &Term) {
        match self {
            CallReply::Bytes(port) => {
                let _ = port.send(crate::message::encode_to_vec(reply));
            }
            CallReply::Term(tx, _) => {
                let _ = tx.send(reply.clone());
            }
        }
    }
}

impl From<RpcReplyPort<Vec<u8>>> for CallReply {
    fn from(port: RpcReplyPort<Vec<u8>>) -> Self {
        CallReply::Bytes(port)
    }
}

/// The calls in flight.
#[derive(Default)]
pub(crate) struct Calls {
    pending: Mutex<FastMap<Reference, PendingCall>>,
}

impl Calls {
    /// Records a call made with monitor reference `mref`.
    pub fn insert(&self, mref: Reference, call: PendingCall) {
        lock(&self.pending).insert(mref, call);
    }

    /// Takes the call `mref` out, if it is still in flight.
    pub fn take(&self, mref: &Reference) -> Option<PendingCall> {
        lock(&self.pending).remove(mref)
    }

    /// The calls past their deadline at `now` or whose caller gave up.
    pub fn expired(&self, now: Instant) -> Vec<Reference> {
        lock(&self.pending)
            .iter()
            .filter(|(_, c)| c.reply.is_closed() || c.deadline.is_some_and(|d| d <= now))
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Drops every call made on session `session` (its connection went down): their
    /// callers see their ports closed.
    pub fn fail_on(&self, session: ActorId) {
        lock(&self.pending).retain(|_, c| c.session != session);
    }
}
