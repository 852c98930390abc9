//! One connection to another node: the [`NodeSession`] actor that runs the distribution
//! protocol once the handshake is done, with its parts in `session/`:
//!
//! - `handshake`: the handshake drivers (accepting and connecting);
//! - `reader`: frames in, ticks noticed, packets decoded and dispatched in place (a message
//!   reaches its actor without another hop);
//! - `dispatch`: what each control message does, against the node seen through a small trait;
//! - `services`: the built-in `net_kernel`, `rex` and `erpc` spawn requests;
//! - `reply`: replies to the peer's calls;
//! - `writer`: drains the send queue and the replies of local actors to the peer's calls into
//!   one buffer, writes it with one syscall, and ticks when idle.
//!
//! The reader and writer tasks run in a `tracing` span `connection` with the field `peer` (the
//! peer's node name), so what they log says which connection it is about.
//!
//! A call from the peer to a typed actor costs no task of its own: the writer waits for the
//! actor's reply. The session actor owns the two tasks and stops when the connection ends.
//!
//! Big messages are not copied more than they must be: the writer writes binaries of 64 KiB
//! and more from where they are, around its buffer, and the reader reads a frame of 64 KiB or
//! more into a buffer of its own, reused once the binaries decoded from it are dropped
//! (`dist::frame_pool`).

mod dispatch;
mod handshake;
mod reader;
mod reply;
mod services;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::core::Core;
use crate::dist::handshake::Established;
use crate::dist::packet::PacketDecoder;
use crate::dist::DistFlags;
use crate::etf::{Atom, DecodeOptions};
use crate::send_queue::SendQueue;
use crate::sessions::{Deferred, SessionHandle};
use crate::waiter::ReplyWaiter;
use dispatch::Dispatcher;
use reader::reader_task;
use reply::{ReplyOutbox, SessionReplies};
use writer::writer_task;

pub(crate) use handshake::{accept_handshake, connect_handshake};

pub use crate::network::{BoxedTransport, Transport};

/// Messages of a [`NodeSession`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionMsg {
    /// The connection ended.
    Closed(String),
}

impl ractor::Message for SessionMsg {}

/// The actor that runs one established connection.
#[derive(Debug)]
pub struct NodeSession;

/// What a [`NodeSession`] starts with (made by the [`crate::NodeServer`]).
pub struct SessionArgs {
    pub(crate) shared: Arc<Core>,
    pub(crate) stream: BoxedTransport,
    pub(crate) established: Established,
    pub(crate) leftover: BytesMut,
    pub(crate) queue: Arc<SendQueue>,
    pub(crate) deferred: Deferred,
    /// The names of the peer's verified certificate (mutual TLS), for the admin guard.
    pub(crate) peer_cert_names: Option<Vec<String>>,
}

/// The session's state.
pub struct SessionState {
    peer: Atom,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    /// Closed when the session ends, so senders waiting on it learn.
    queue: Arc<SendQueue>,
}

/// A session killed rather than stopped (its supervisor going down kills it) skips
/// `post_stop`: end its tasks here so the connection closes either way.
impl Drop for SessionState {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.queue.close();
    }
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Actor for NodeSession {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let SessionArgs {
            shared,
            stream,
            established,
            leftover,
            queue,
            deferred,
            peer_cert_names,
        } = args;
        let (read_half, write_half) = tokio::io::split(stream);
        let tick = shared.id.config.net_ticktime;
        let flags = established.flags;
        let peer = Atom::new(&established.peer.name);
        // What the reader and writer log carries the peer's name.
        let span = tracing::info_span!("connection", peer = %peer);
        let waiter = ReplyWaiter::default();
        let outbox = Arc::new(ReplyOutbox::default());
        let writer = tokio::spawn(
            writer_task(
                write_half,
                queue.clone(),
                (waiter.clone(), outbox.clone()),
                deferred.clone(),
                tick / 4,
                (shared.ops.counters.clone(), shared.busy.clone()),
            )
            .instrument(span.clone()),
        );
        let decoder = PacketDecoder::new(DecodeOptions::new(), shared.id.config.max_frame);
        let max_frame = shared.id.config.max_frame;
        // Reachable by name before the reader delivers anything: an actor answering the
        // peer's first message must find this session.
        shared.sessions.insert(SessionHandle {
            peer: peer.clone(),
            hidden: !flags.contains(DistFlags::PUBLISHED),
            flags,
            queue: queue.clone(),
            actor: myself.get_cell(),
            deferred,
        });
        let admin =
            crate::admin::allows(&shared.id.config, peer.as_str(), peer_cert_names.as_deref());
        let replies = SessionReplies {
            queue: queue.clone(),
            flags,
            waiter,
            outbox,
        };
        let dispatcher = Dispatcher::new(shared, peer.clone(), admin, replies);
        let reader = tokio::spawn(
            reader_task(
                read_half,
                leftover,
                decoder,
                dispatcher,
                myself.clone(),
                tick,
                max_frame,
            )
            .instrument(span),
        );
        Ok(SessionState {
            peer,
            reader,
            writer,
            queue,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        state.reader.abort();
        state.writer.abort();
        state.queue.close();
        // As in Erlang, everything read from a connection is delivered before its node-down:
        // the node server announces the node down only after this returns, so wait until
        // the reader has stopped (at its next await).
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut state.reader).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        message: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        let SessionMsg::Closed(reason) = message;
        tracing::debug!(peer = %state.peer, %reason, "session closing");
        myself.stop(Some(reason));
        Ok(())
    }

    /// The session's children are the proxies of its peer's processes ([`crate::proxy`]),
    /// linked to it so that they go with the connection. One stopping (its process exited, or
    /// code stopped it) leaves the connection up, unlike ractor's default of stopping the
    /// supervisor with its child.
    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<SessionMsg>,
        event: ractor::SupervisionEvent,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        if let ractor::SupervisionEvent::ActorFailed(cell, error) = &event {
            tracing::warn!(peer = %state.peer, proxy = ?cell.get_id(), %error, "a proxy failed");
        }
        Ok(())
    }
}
