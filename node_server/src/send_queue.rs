//! A connection's send queue: messages are encoded by their senders straight into one buffer,
//! which the connection's writer takes whole and writes with one syscall; the bytes between
//! the two are counted, so a connection can be *busy* as in the BEAM.
//!
//! # Flow control
//!
//! The BEAM suspends a process that sends on a connection whose queue holds more than
//! `dist_buf_busy_limit` bytes (1 MiB by default) until the writer brings it under again, so a
//! producer never outruns its connection. This queue counts the bytes encoded and not yet
//! written (in the buffer, and in the writer's batch while it writes) and offers the same:
//!
//! - waiting: while the queue is busy, the sender waits, then queues (the BEAM's suspend);
//!   [`crate::ProcessHandle::send`] and calls do this ([`SendQueue::ready`]);
//! - trying: [`Refused::Busy`] at once when busy ([`crate::ProcessHandle::try_send`]);
//! - capped: for senders that cannot wait (a ractor `cast` through a proxy,
//!   [`crate::Node::send`]): queues while the queue holds less than the hard cap
//!   ([`crate::NodeConfig::dist_queue_cap`], 32 MiB by default), else drops the message,
//!   counts it (`dist_dropped_total`) and logs it: memory stays bounded and no message is lost
//!   silently;
//! - always: for what the protocol itself sends (links, monitors,
//!   exit signals, replies to the peer's calls, rpc results): bounded by the work that causes
//!   it, and never dropped, as in Erlang.
//!
//! A message is queued whole once the queue was under the limit, so the queue can exceed the
//! limit by one message, as the BEAM's can.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use bytes::BytesMut;
use tokio::sync::{oneshot, Notify};

use crate::dist::control::Control;
use crate::dist::packet::{self, SendForm, Shares};
use crate::dist::DistFlags;
use crate::outgoing::Outgoing;

/// The BEAM's default `dist_buf_busy_limit`: 1 MiB.
pub const DEFAULT_BUSY_LIMIT: usize = 1 << 20;
/// The default hard cap of a connection's queue for senders that cannot wait: 32 MiB.
pub const DEFAULT_QUEUE_CAP: usize = 32 << 20;

/// The most bytes one frame can take, its 4-byte length included: this node does not
/// fragment what it sends.
const FRAME_MAX: usize = 4 + u32::MAX as usize;

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refused {
    /// The connection is gone (or going).
    #[error("no connection")]
    Closed,
    /// The queue holds `dist_buf_busy_limit` bytes or more (only for senders that asked not
    /// to wait).
    #[error("connection busy")]
    Busy,
    /// The queue holds the hard cap or more; the message was dropped and counted.
    #[error("connection queue full; message dropped")]
    Full,
}

/// Counters of one connection, read by [`crate::metrics`] and `node_server:info/0`.
#[derive(Debug, Default)]
pub struct ConnStats {
    /// Messages written.
    pub messages_out: AtomicU64,
    /// Bytes written (frames and ticks).
    pub bytes_out: AtomicU64,
    /// Messages read.
    pub messages_in: AtomicU64,
    /// Bytes read.
    pub bytes_in: AtomicU64,
    /// Times a sender found the connection busy (it waited, or was told [`Refused::Busy`]).
    pub busy: AtomicU64,
    /// Messages dropped at the hard cap.
    pub dropped: AtomicU64,
}

impl ConnStats {
    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// A connection's counters at one moment ([`crate::Node::connection_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnSnapshot {
    /// Bytes queued and not yet written.
    pub queued_bytes: u64,
    /// Messages written.
    pub messages_out: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Messages read.
    pub messages_in: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Times a sender found the connection busy.
    pub busy: u64,
    /// Messages dropped at the hard cap.
    pub dropped: u64,
}

/// What senders have queued and the writer has not taken yet.
struct Pending {
    buf: BytesMut,
    shares: Shares,
    /// The connection's send form; its atom cache needs frames written in encoding order,
    /// which taking the buffer whole keeps.
    form: SendForm,
    messages: u64,
    flushes: Vec<oneshot::Sender<()>>,
    /// A message did not fit in a frame: the connection cannot go on.
    oversized: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.flushes.is_empty() && !self.oversized
    }

    fn len(&self) -> usize {
        self.buf.len() + self.shares.bytes
    }
}

/// What the writer takes from the queue and writes; kept by the writer and swapped with the
/// queue's buffers, so neither side allocates per batch.
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) buf: BytesMut,
    pub(crate) shares: Shares,
    pub(crate) messages: u64,
    pub(crate) flushes: Vec<oneshot::Sender<()>>,
    pub(crate) oversized: bool,
}

impl Batch {
    /// Its bytes, those shared included.
    pub(crate) fn len(&self) -> usize {
        self.buf.len() + self.shares.bytes
    }

    /// Whether there is nothing to write or answer.
    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.flushes.is_empty() && !self.oversized
    }

    /// Ready for the next batch (after it was written).
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.shares.clear();
        self.messages = 0;
        self.oversized = false;
    }
}

/// The writer's view of the buffer while it takes a batch: it adds replies, deferred
/// control messages and ticks in order with what senders queued.
pub(crate) struct Encoder<'a> {
    pending: &'a mut Pending,
    flags: DistFlags,
}

impl Encoder<'_> {
    /// Encodes one item.
    pub(crate) fn push(&mut self, item: Outgoing) {
        encode(self.pending, self.flags, item);
    }

    /// Encodes a control message without payload.
    pub(crate) fn control(&mut self, control: &Control) {
        self.pending.messages += 1;
        packet::encode_message_as(&mut self.pending.buf, &mut self.pending.form, control, None);
    }

    /// Whether nothing is there to write.
    pub(crate) fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Appends a tick.
    pub(crate) fn tick(&mut self) {
        packet::encode_tick(&mut self.pending.buf);
    }
}

/// Encodes `item` at the end of `pending`. Terms go through the connection's atom cache when
/// the peer takes it (OTP receives cached atoms more cheaply, and it cuts bytes by 17-39%); a
/// proxy's pre-encoded control and payload go out as they are, cheapest for the sender.
/// Returns the bytes it added.
fn encode(pending: &mut Pending, flags: DistFlags, item: Outgoing) -> usize {
    let before = pending.len();
    let Pending {
        buf,
        shares,
        form,
        flushes,
        ..
    } = pending;
    match item {
        Outgoing::Flush(ack) => {
            flushes.push(ack);
            return 0;
        }
        Outgoing::Prepared(control, payload) => {
            packet::encode_prepared_shared(buf, flags, &control, payload, shares)
        }
        Outgoing::Message(control, payload) => {
            packet::encode_frame_shared(buf, form, &control, payload.as_ref(), Some(shares))
        }
        Outgoing::Call(control, call) => {
            packet::encode_frame_shared(buf, form, &control, Some(&call), Some(shares))
        }
        Outgoing::Reply(control, reply) => {
            packet::encode_frame_shared(buf, form, &control, Some(&reply), Some(shares))
        }
        Outgoing::Raw(control, payload) => {
            packet::encode_raw_shared(buf, form, &control, &payload, shares)
        }
    }
    pending.messages += 1;
    let added = pending.len() - before;
    // A frame's length is 32 bits: a message of 4 GiB or more cannot go, and the atom cache
    // already counts it as sent, so the connection cannot go on without it either.
    pending.oversized |= added > FRAME_MAX;
    added
}

/// One connection's send queue; see the module docs.
pub struct SendQueue {
    pending: Mutex<Pending>,
    flags: DistFlags,
    /// Bytes encoded and not yet written.
    queued: AtomicUsize,
    limit: usize,
    cap: usize,
    closed: AtomicBool,
    /// Wakes the writer: notified by the push that finds the buffer empty.
    wake: Notify,
    /// Wakes senders waiting for the queue to drop under the limit.
    unbusy: Notify,
    /// When the last drop was logged (one line a second at most).
    last_drop_log: Mutex<Option<Instant>>,
    /// The connection's counters.
    pub(crate) stats: ConnStats,
}

impl std::fmt::Debug for SendQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendQueue")
            .field("queued", &self.queued_bytes())
            .field("limit", &self.limit)
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

impl SendQueue {
    /// A queue for a connection with `flags`, busy from `limit` bytes, dropping what senders
    /// that cannot wait send from `cap` bytes.
    pub(crate) fn new(flags: DistFlags, limit: usize, cap: usize) -> SendQueue {
        SendQueue {
            pending: Mutex::new(Pending {
                buf: BytesMut::with_capacity(64 << 10),
                shares: Shares::default(),
                form: SendForm::with_atom_cache(flags),
                messages: 0,
                flushes: Vec::new(),
                oversized: false,
            }),
            flags,
            queued: AtomicUsize::new(0),
            limit: limit.max(1),
            cap: cap.max(limit),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
            unbusy: Notify::new(),
            last_drop_log: Mutex::new(None),
            stats: ConnStats::default(),
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// The connection's counters now.
    pub fn snapshot(&self) -> ConnSnapshot {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ConnSnapshot {
            queued_bytes: self.queued_bytes() as u64,
            messages_out: read(&self.stats.messages_out),
            bytes_out: read(&self.stats.bytes_out),
            messages_in: read(&self.stats.messages_in),
            bytes_in: read(&self.stats.bytes_in),
            busy: read(&self.stats.busy),
            dropped: read(&self.stats.dropped),
        }
    }

    /// Whether the queue holds `dist_buf_busy_limit` bytes or more.
    pub fn is_busy(&self) -> bool {
        self.queued_bytes() >= self.limit
    }

    /// Whether the connection is gone.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues `item` whatever the queue holds; false when the connection is gone.
    pub(crate) fn push(&self, item: Outgoing) -> bool {
        if self.is_closed() {
            return false;
        }
        self.enqueue(item);
        true
    }

    /// Queues `item` unless the queue is busy.
    pub(crate) fn try_push(&self, item: Outgoing) -> Result<(), Refused> {
        if self.is_closed() {
            return Err(Refused::Closed);
        }
        if self.is_busy() {
            ConnStats::add(&self.stats.busy, 1);
            return Err(Refused::Busy);
        }
        self.enqueue(item);
        Ok(())
    }

    /// Queues `item` unless the queue holds the hard cap or more, in which case it is
    /// dropped, counted and logged.
    pub(crate) fn push_capped(
        &self,
        item: Outgoing,
        peer: &crate::etf::Atom,
    ) -> Result<(), Refused> {
        if self.is_closed() {
            return Err(Refused::Closed);
        }
        if self.queued_bytes() >= self.cap {
            ConnStats::add(&self.stats.dropped, 1);
            let mut last = crate::lock(&self.last_drop_log);
            if last.is_none_or(|t| t.elapsed().as_secs() >= 1) {
                *last = Some(Instant::now());
                tracing::warn!(
                    %peer,
                    queued = self.queued_bytes(),
                    cap = self.cap,
                    dropped_total = self.stats.dropped.load(Ordering::Relaxed),
                    "connection queue full: dropping messages from senders that cannot wait"
                );
            }
            return Err(Refused::Full);
        }
        self.enqueue(item);
        Ok(())
    }

    /// Waits while the queue is busy, then queues `item`: the BEAM's suspend of a sender.
    pub(crate) async fn push_waiting(&self, item: Outgoing) -> Result<(), Refused> {
        self.ready().await?;
        self.enqueue(item);
        Ok(())
    }

    /// Resolves once the queue is under the busy limit (at once when it is), counting a wait;
    /// [`Refused::Closed`] when the connection goes meanwhile.
    pub async fn ready(&self) -> Result<(), Refused> {
        let mut counted = false;
        loop {
            if self.is_closed() {
                return Err(Refused::Closed);
            }
            if !self.is_busy() {
                return Ok(());
            }
            let unbusy = self.unbusy.notified();
            tokio::pin!(unbusy);
            unbusy.as_mut().enable();
            if self.is_closed() {
                return Err(Refused::Closed);
            }
            if !self.is_busy() {
                return Ok(());
            }
            if !std::mem::replace(&mut counted, true) {
                ConnStats::add(&self.stats.busy, 1);
            }
            unbusy.await;
        }
    }

    fn enqueue(&self, item: Outgoing) {
        let mut pending = crate::lock(&self.pending);
        let was_empty = pending.is_empty();
        let added = encode(&mut pending, self.flags, item);
        self.queued.fetch_add(added, Ordering::Relaxed);
        drop(pending);
        if was_empty {
            self.wake.notify_one();
        }
    }

    /// Resolves when senders queued something since the writer last took the buffer (or the
    /// queue closed).
    pub(crate) async fn queued(&self) {
        self.wake.notified().await;
    }

    /// The writer takes what is queued into `batch` (which must be empty), after `extra`
    /// added its own items in order.
    pub(crate) fn take(&self, batch: &mut Batch, extra: impl FnOnce(&mut Encoder<'_>)) {
        let mut pending = crate::lock(&self.pending);
        let before = pending.len();
        extra(&mut Encoder {
            pending: &mut pending,
            flags: self.flags,
        });
        // What the writer added counts as queued too until written.
        self.queued
            .fetch_add(pending.len() - before, Ordering::Relaxed);
        let p = &mut *pending;
        std::mem::swap(&mut p.buf, &mut batch.buf);
        std::mem::swap(&mut p.shares, &mut batch.shares);
        std::mem::swap(&mut p.flushes, &mut batch.flushes);
        batch.messages = std::mem::take(&mut p.messages);
        batch.oversized = std::mem::take(&mut p.oversized);
    }

    /// The writer wrote `n` bytes: senders waiting for the queue to drop under the limit go
    /// on when it does.
    pub(crate) fn written(&self, n: usize) {
        let before = self.queued.fetch_sub(n, Ordering::Relaxed);
        if before >= self.limit && before - n < self.limit {
            self.unbusy.notify_waiters();
        }
    }

    /// The connection is gone: senders stop waiting, and the writer stops.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.unbusy.notify_waiters();
        self.wake.notify_one();
    }

    /// Takes what is queued (tests: what a session queued for its peer): its frames, to be
    /// decoded in order by one decoder (the atom cache spans them).
    #[cfg(test)]
    pub(crate) fn drain_frames(&self) -> BytesMut {
        let mut batch = Batch::default();
        self.take(&mut batch, |_| {});
        let n = batch.len();
        self.written(n);
        assert!(batch.shares.at.is_empty(), "tests queue small messages");
        batch.buf
    }

    /// [`SendQueue::drain_frames`], decoded by `decoder`.
    #[cfg(test)]
    pub(crate) fn drain_decoded_with(
        &self,
        decoder: &mut crate::dist::packet::PacketDecoder,
    ) -> Vec<crate::dist::packet::DistMessage> {
        let mut input = self.drain_frames();
        let mut out = Vec::new();
        while let Some(frame) = packet::next_frame(&mut input, usize::MAX).expect("frames") {
            if let packet::Frame::Data(data) = frame {
                out.extend(decoder.decode(data).expect("a message"));
            }
        }
        out
    }

    /// [`SendQueue::drain_decoded_with`] a fresh decoder.
    #[cfg(test)]
    pub(crate) fn drain_decoded(&self) -> Vec<crate::dist::packet::DistMessage> {
        let mut decoder =
            crate::dist::packet::PacketDecoder::new(crate::etf::DecodeOptions::new(), usize::MAX);
        self.drain_decoded_with(&mut decoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etf::{Atom, Pid, Term};
    use std::sync::Arc;
    use std::time::Duration;

    fn pid() -> Pid {
        Pid {
            node: Atom::new("peer@host"),
            id: 1,
            serial: 0,
            creation: 3,
        }
    }

    fn message(bytes: usize) -> Outgoing {
        Outgoing::Message(
            Control::Send { to: pid() },
            Some(Term::binary(vec![7u8; bytes])),
        )
    }

    /// Writes everything queued, as the writer does; returns the bytes.
    fn write_all(q: &SendQueue) -> usize {
        let mut batch = Batch::default();
        q.take(&mut batch, |_| {});
        let n = batch.len();
        q.written(n);
        n
    }

    #[test]
    fn queued_bytes_count_until_written() {
        let q = SendQueue::new(DistFlags::OFFERED, 1000, 5000);
        assert_eq!(q.queued_bytes(), 0);
        assert!(q.push(message(100)));
        let queued = q.queued_bytes();
        assert!(queued > 100, "{queued}");
        assert_eq!(write_all(&q), queued);
        assert_eq!(q.queued_bytes(), 0);
    }

    #[test]
    fn try_push_is_refused_while_busy_and_counted() {
        let q = SendQueue::new(DistFlags::OFFERED, 1000, 5000);
        assert_eq!(q.try_push(message(600)), Ok(()));
        assert_eq!(
            q.try_push(message(600)),
            Ok(()),
            "under the limit: one more goes"
        );
        assert!(q.is_busy());
        assert_eq!(q.try_push(message(10)), Err(Refused::Busy));
        assert_eq!(q.stats.busy.load(Ordering::Relaxed), 1);
        write_all(&q);
        assert_eq!(q.try_push(message(10)), Ok(()));
    }

    #[test]
    fn capped_pushes_drop_at_the_cap_and_count() {
        let q = SendQueue::new(DistFlags::OFFERED, 1000, 3000);
        let peer = Atom::new("peer@host");
        let mut sent = 0;
        while q.push_capped(message(500), &peer).is_ok() {
            sent += 1;
        }
        assert_eq!(sent, 6, "queued until the cap");
        assert_eq!(q.push_capped(message(500), &peer), Err(Refused::Full));
        assert_eq!(q.stats.dropped.load(Ordering::Relaxed), 2);
        assert!(q.push(message(500)), "protocol messages still go");
    }

    #[tokio::test]
    async fn a_waiting_sender_goes_on_when_the_queue_drains() {
        let q = Arc::new(SendQueue::new(DistFlags::OFFERED, 1000, 5000));
        q.push(message(2000));
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.push_waiting(message(10)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "waits while busy");
        assert_eq!(q.stats.busy.load(Ordering::Relaxed), 1);
        write_all(&q);
        let r = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(r.expect("woken").unwrap(), Ok(()));
        assert!(q.queued_bytes() > 0, "and queued");
    }

    #[tokio::test]
    async fn a_waiting_sender_learns_the_connection_went() {
        let q = Arc::new(SendQueue::new(DistFlags::OFFERED, 1000, 5000));
        q.push(message(2000));
        let waiting = tokio::spawn({
            let q = q.clone();
            async move { q.push_waiting(message(10)).await }
        });
        tokio::task::yield_now().await;
        q.close();
        let r = tokio::time::timeout(Duration::from_secs(5), waiting).await;
        assert_eq!(r.expect("woken").unwrap(), Err(Refused::Closed));
        assert!(!q.push(message(1)));
    }

    #[tokio::test]
    async fn the_writer_is_woken_once_per_batch() {
        let q = SendQueue::new(DistFlags::OFFERED, 1 << 20, 2 << 20);
        q.push(message(1));
        q.push(message(1));
        // One permit for both.
        tokio::time::timeout(Duration::from_secs(1), q.queued())
            .await
            .expect("woken");
        let msgs = q.drain_decoded();
        assert_eq!(msgs.len(), 2);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), q.queued())
                .await
                .is_err(),
            "no second wake for the same batch"
        );
    }
}
