//! The direct send path: [`ProcessHandle`], a cheap handle for a process of another node (a
//! pid, or a registered name at a node).
//!
//! A handle sends without an actor in between: the message is encoded by the sending task
//! straight into the connection's send queue ([`crate::send_queue`]), the session looked up
//! once per send. [`ProcessHandle::send`] waits while the connection is busy (its queue holds
//! [`crate::NodeConfig::dist_buf_busy_limit`] bytes or more), as the BEAM suspends a process
//! that sends on a busy connection, so a producer never outruns its connection and memory
//! stays bounded; [`ProcessHandle::try_send`] returns [`SendError::Busy`] at once instead.
//! [`ProcessHandle::call`] is a `gen_server:call`, its request encoded once and its reply
//! converted from the term the session read.
//!
//! A handle is 56 bytes, `Clone` and `Send`; it holds no actor and costs nothing while
//! unused. It does not connect: make one with [`crate::Node::process`], which connects
//! first, and a send after the connection went fails with [`SendError::NotConnected`]. For
//! location transparency (an `ActorRef<M>`, `ractor::pg`), see [`crate::Node::remote_pid`].

use std::sync::Arc;
use std::time::Duration;

use crate::calls::CallReply;
use crate::core::Core;
use crate::error::ConnectError;
use crate::etf::{Atom, FromTerm, Pid, Term, ToTerm};
use crate::outgoing::Outgoing;
use crate::remote::{send_control, RemoteTarget};
use crate::send_queue::{Refused, SendQueue};

/// Why a message was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// There is no connection to the target's node (any more).
    #[error("not connected to {node}")]
    NotConnected {
        /// The target's node.
        node: String,
    },
    /// The connection is busy (only from [`ProcessHandle::try_send`]).
    #[error("connection to {node} busy")]
    Busy {
        /// The target's node.
        node: String,
    },
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

/// A handle for a process of another node; see the module docs.
#[derive(Clone)]
pub struct ProcessHandle {
    core: Arc<Core>,
    target: RemoteTarget,
}

impl std::fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ProcessHandle").field(&self.target).finish()
    }
}

impl PartialEq for ProcessHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.core, &other.core) && self.target == other.target
    }
}

impl ProcessHandle {
    pub(crate) fn new(core: Arc<Core>, target: RemoteTarget) -> ProcessHandle {
        ProcessHandle { core, target }
    }

    /// The process it stands for.
    pub fn target(&self) -> &RemoteTarget {
        &self.target
    }

    /// Its pid, when it stands for a pid.
    pub fn pid(&self) -> Option<&Pid> {
        match &self.target {
            RemoteTarget::Pid(pid) => Some(pid),
            RemoteTarget::Name { .. } => None,
        }
    }

    /// The node it lives on.
    pub fn node(&self) -> &Atom {
        self.target.node()
    }

    /// Whether the connection to its node is busy now (a [`ProcessHandle::send`] would wait).
    pub fn is_busy(&self) -> bool {
        self.queue().is_ok_and(|q| q.is_busy())
    }

    /// Sends `msg`, waiting first while the connection is busy.
    pub async fn send<M: ToTerm + ?Sized>(&self, msg: &M) -> Result<(), SendError> {
        self.send_term(msg.to_term()).await
    }

    /// Sends a term, waiting first while the connection is busy.
    pub async fn send_term(&self, msg: Term) -> Result<(), SendError> {
        let queue = self.queue()?;
        queue
            .push_waiting(self.message(msg))
            .await
            .map_err(|e| self.error(e))
    }

    /// Sends `msg` unless the connection is busy ([`SendError::Busy`], nothing sent).
    pub fn try_send<M: ToTerm + ?Sized>(&self, msg: &M) -> Result<(), SendError> {
        self.try_send_term(msg.to_term())
    }

    /// Sends a term unless the connection is busy ([`SendError::Busy`], nothing sent).
    pub fn try_send_term(&self, msg: Term) -> Result<(), SendError> {
        self.queue()?
            .try_push(self.message(msg))
            .map_err(|e| self.error(e))
    }

    /// Resolves once the connection is not busy (at once when it is not).
    pub async fn ready(&self) -> Result<(), SendError> {
        self.queue()?.ready().await.map_err(|e| self.error(e))
    }

    /// `gen_server:call(Target, Request, Timeout)`: waits while the connection is busy,
    /// sends the request and waits for the reply, converted to `R`.
    pub async fn call<Q: ToTerm + ?Sized, R: FromTerm>(
        &self,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let reply = self.call_term(request.to_term(), timeout).await?;
        R::from_term(&reply).map_err(|e| CallError::BadReply(e.to_string()))
    }

    /// `gen_server:call` with a term; the reply term.
    pub async fn call_term(&self, request: Term, timeout: Duration) -> Result<Term, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let session = self
            .core
            .session(self.target.node())
            .ok_or(CallError::NoProcess)?;
        match tokio::time::timeout_at(deadline, session.queue.ready()).await {
            Err(_) => return Err(CallError::Timeout),
            Ok(Err(_)) => return Err(CallError::NoProcess),
            Ok(Ok(())) => {}
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.core.call_on(
            &session,
            &self.target,
            request.into(),
            CallReply::Term(tx, timeout),
        );
        drop(session);
        match tokio::time::timeout_at(deadline, rx).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Err(_)) => Err(CallError::NoProcess),
            Ok(Ok(reply)) => Ok(reply),
        }
    }

    fn queue(&self) -> Result<Arc<SendQueue>, SendError> {
        self.core
            .sessions
            .queue(self.target.node())
            .ok_or_else(|| SendError::NotConnected {
                node: self.target.node().as_str().to_owned(),
            })
    }

    fn message(&self, msg: Term) -> Outgoing {
        Outgoing::Message(
            send_control(&self.target, &self.core.id.router_pid),
            Some(msg),
        )
    }

    fn error(&self, refused: Refused) -> SendError {
        let node = self.target.node().as_str().to_owned();
        match refused {
            Refused::Busy | Refused::Full => SendError::Busy { node },
            _ => SendError::NotConnected { node },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handle_is_at_most_64_bytes() {
        assert!(
            std::mem::size_of::<ProcessHandle>() <= 64,
            "{}",
            std::mem::size_of::<ProcessHandle>()
        );
    }
}
