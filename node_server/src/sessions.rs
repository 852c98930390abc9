//! The sessions table: the live connection to each node, by name, and the handle that queues
//! messages on one.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use ractor::{ActorCell, ActorId};

use crate::dist::control::Control;
use crate::dist::DistFlags;
use crate::etf::{Atom, Term};
use crate::hash::FastMap;
use crate::outgoing::{GenCall, Outgoing};
use crate::send_queue::{Refused, SendQueue};

/// The way to reach a live session.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    pub peer: Atom,
    pub hidden: bool,
    /// The distribution flags both nodes agreed on.
    pub flags: DistFlags,
    /// The connection's send queue (see [`crate::send_queue`]).
    pub queue: Arc<SendQueue>,
    /// The session actor (stopping it closes the connection).
    pub actor: ActorCell,
    /// Control messages that need not go at once (see [`SessionHandle::send_deferred`]).
    pub deferred: Deferred,
}

/// Control messages the writer sends with its next write: a message, a tick, or
/// [`DEFERRED_FLUSH`] after it noticed them while idle.
pub(crate) type Deferred = Arc<std::sync::Mutex<Vec<Control>>>;

/// How long a deferred control message may wait when nothing else is written.
pub(crate) const DEFERRED_FLUSH: Duration = Duration::from_millis(50);

impl SessionHandle {
    /// Queues a message of the protocol (a control message, a reply): it always goes;
    /// false when the session is gone.
    pub fn send(&self, control: Control, payload: Option<Term>) -> bool {
        self.queue.push(Outgoing::Message(control, payload))
    }

    /// Queues a message from a sender that cannot wait: dropped (counted and logged) when
    /// the queue holds its hard cap (see [`crate::send_queue`]).
    pub fn send_capped(&self, control: Control, payload: Option<Term>) -> Result<(), Refused> {
        self.queue
            .push_capped(Outgoing::Message(control, payload), &self.peer)
    }

    /// Queues a `gen_server` call's request.
    pub(crate) fn send_call(&self, control: Control, call: GenCall) -> bool {
        self.queue.push(Outgoing::Call(control, call))
    }

    /// Queues a message whose payload is ETF bytes with the leading 131, from a sender that
    /// cannot wait (see [`SessionHandle::send_capped`]).
    pub fn send_raw(&self, control: Control, payload: Bytes) -> Result<(), Refused> {
        self.queue
            .push_capped(Outgoing::Raw(control, payload), &self.peer)
    }

    /// Queues a message whose control body (without 131) and payload (with 131) are encoded,
    /// from a sender that cannot wait (a proxy; see [`SessionHandle::send_capped`]).
    pub fn send_prepared(&self, control: Bytes, payload: Vec<u8>) -> Result<(), Refused> {
        self.queue
            .push_capped(Outgoing::Prepared(control, payload), &self.peer)
    }

    /// Queues a control message without waking the writer: it goes with the next write (at the
    /// latest the next tick, a quarter of `net_ticktime`). For housekeeping whose timing does
    /// not matter (a finished call's `DEMONITOR_P`: until it arrives, a stale monitor's DOWN is
    /// ignored), so a call costs one write, not two.
    pub fn send_deferred(&self, control: Control) {
        crate::lock(&self.deferred).push(control);
    }
}

impl SessionHandle {
    /// Whether the session still runs (one that is stopping does not count).
    pub fn is_live(&self) -> bool {
        self.actor.get_status() < ractor::ActorStatus::Draining
    }
}

/// The live connection to each node.
#[derive(Default)]
pub(crate) struct Sessions {
    by_node: RwLock<FastMap<Atom, SessionHandle>>,
}

impl Sessions {
    /// The live session with `node`; one that is stopping does not count.
    pub fn get(&self, node: &Atom) -> Option<SessionHandle> {
        let s = crate::read(&self.by_node).get(node).cloned()?;
        s.is_live().then_some(s)
    }

    /// The send queue of the live session with `node`.
    pub fn queue(&self, node: &Atom) -> Option<Arc<SendQueue>> {
        let by_node = crate::read(&self.by_node);
        let s = by_node.get(node)?;
        s.is_live().then(|| s.queue.clone())
    }

    /// The connected nodes and whether each connection is hidden.
    pub fn connected(&self) -> Vec<(String, bool)> {
        crate::read(&self.by_node)
            .values()
            .filter(|h| h.is_live())
            .map(|h| (h.peer.as_str().to_owned(), h.hidden))
            .collect()
    }

    /// Makes `handle` the session with its peer (replacing any other).
    pub fn insert(&self, handle: SessionHandle) {
        crate::write(&self.by_node).insert(handle.peer.clone(), handle);
    }

    /// Removes the session with `node` if it is the session actor `id` (not a newer one);
    /// true when it was.
    pub fn remove_if(&self, node: &Atom, id: ActorId) -> bool {
        let mut by_node = crate::write(&self.by_node);
        let current = by_node.get(node).is_some_and(|s| s.actor.get_id() == id);
        if current {
            by_node.remove(node);
        }
        current
    }

    /// Takes every session out (the node is stopping).
    pub fn drain(&self) -> Vec<SessionHandle> {
        crate::write(&self.by_node)
            .drain()
            .map(|(_, s)| s)
            .collect()
    }

    /// Every live session.
    pub fn all(&self) -> Vec<SessionHandle> {
        crate::read(&self.by_node)
            .values()
            .filter(|h| h.is_live())
            .cloned()
            .collect()
    }
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}
