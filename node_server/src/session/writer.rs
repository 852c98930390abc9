//! The writer task: takes what senders encoded into the session's send queue, adds the
//! replies of local actors to the peer's calls and the deferred control messages, writes it
//! all with one syscall (big binaries from where they are), and ticks when idle.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::reply::ReplyOutbox;
use super::BoxedTransport;
use crate::dist::control::Control;
use crate::dist::packet::Shares;
use crate::outgoing::Outgoing;
use crate::send_queue::{Batch, ConnStats, SendQueue};
use crate::sessions::{Deferred, DEFERRED_FLUSH};
use crate::waiter::ReplyWaiter;

/// Writes `buf` with the binaries `shares` left out of it in their places: the write path
/// of a batch with big binaries, which are not copied.
async fn write_shared<W: AsyncWrite + Unpin>(
    w: &mut W,
    buf: &[u8],
    shares: &Shares,
) -> std::io::Result<()> {
    use std::io::IoSlice;
    let mut slices = Vec::with_capacity(2 * shares.at.len() + 1);
    let mut from = 0;
    for (at, bytes) in &shares.at {
        slices.push(IoSlice::new(&buf[from..*at]));
        slices.push(IoSlice::new(bytes));
        from = *at;
    }
    slices.push(IoSlice::new(&buf[from..]));
    slices.retain(|s| !s.is_empty());
    let mut slices = &mut slices[..];
    // One vectored write for all of it when the transport takes it, else as many as needed.
    while !slices.is_empty() {
        match w.write_vectored(slices).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => IoSlice::advance_slices(&mut slices, n),
        }
    }
    Ok(())
}

/// Ends the reply waits and closes the queue when the writer ends (returns, or is aborted
/// with its session).
struct CloseOnDrop(ReplyWaiter, Arc<SendQueue>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
        self.1.close();
    }
}

/// Why the writer woke.
enum Wake {
    /// Senders queued something, or replies are waiting.
    Work,
    /// Deferred control messages waited long enough.
    Flush,
    /// A tick interval passed.
    Tick,
}

pub(super) async fn writer_task(
    mut w: tokio::io::WriteHalf<BoxedTransport>,
    queue: Arc<SendQueue>,
    (waiter, outbox): (ReplyWaiter, Arc<ReplyOutbox>),
    deferred: Deferred,
    tick_every: Duration,
    // The node's counters and busy poller.
    (counters, busy): (Arc<crate::ops::Counters>, Arc<crate::busy::BusyPoll>),
) {
    let mut batch = Batch::default();
    let _close = CloseOnDrop(waiter.clone(), queue.clone());
    // The buffers the deferred controls and the replies are swapped into, kept across writes.
    let (mut controls, mut replies): (Vec<Control>, Vec<Outgoing>) = (Vec::new(), Vec::new());
    // Timers are armed rarely, not per message: registering a timer earlier than the one the
    // runtime sleeps on wakes the thread parked in the I/O driver. The tick timer fires every
    // `tick_every` and sends a tick only when nothing was written since it last fired; the
    // flush timer runs only while deferred control messages wait.
    let mut wrote = false;
    let tick = tokio::time::sleep(tick_every);
    tokio::pin!(tick);
    let flush = tokio::time::sleep(DEFERRED_FLUSH);
    tokio::pin!(flush);
    let mut flush_armed = false;
    let queued = queue.queued();
    tokio::pin!(queued);
    loop {
        if queue.is_closed() {
            return;
        }
        if !flush_armed && !crate::lock(&deferred).is_empty() {
            flush
                .as_mut()
                .reset(tokio::time::Instant::now() + DEFERRED_FLUSH);
            flush_armed = true;
        }
        // Replies of local actors to the peer's calls wake this task directly (see
        // `crate::waiter`); running their waits puts the replies in the outbox.
        let next = std::future::poll_fn(|cx| {
            outbox.poll_waits(&waiter, cx);
            if queued.as_mut().poll(cx).is_ready() {
                queued.set(queue.queued());
                return std::task::Poll::Ready(());
            }
            if outbox.has_items() {
                return std::task::Poll::Ready(());
            }
            std::task::Poll::Pending
        });
        let wake = tokio::select! {
            biased;
            () = next => Wake::Work,
            () = &mut flush, if flush_armed => {
                flush_armed = false;
                Wake::Flush
            }
            () = &mut tick => {
                tick.as_mut().reset(tokio::time::Instant::now() + tick_every);
                if std::mem::take(&mut wrote) {
                    continue;
                }
                Wake::Tick
            }
        };
        outbox.take_into(&mut replies);
        std::mem::swap(&mut *crate::lock(&deferred), &mut controls);
        queue.take(&mut batch, |enc| {
            for reply in replies.drain(..) {
                enc.push(reply);
            }
            for control in controls.drain(..) {
                enc.control(&control);
            }
            // Idle for a tick interval: keep the peer's view of us alive.
            if matches!(wake, Wake::Tick) && enc.is_empty() {
                enc.tick();
            }
        });
        if batch.is_empty() {
            continue;
        }
        if batch.oversized {
            // Its length would wrap and the peer would read garbage; the atom cache already
            // counts it as sent, so the connection cannot go on without it either.
            tracing::error!(
                "a message of 4 GiB or more does not fit in one distribution frame; \
                 closing the connection"
            );
            let _ = w.shutdown().await;
            return;
        }
        let written = if batch.shares.at.is_empty() {
            w.write_all(&batch.buf).await
        } else {
            write_shared(&mut w, &batch.buf, &batch.shares).await
        };
        if written.is_err() {
            return;
        }
        busy.kick();
        // A tick written does not count: the next interval needs its own.
        wrote = batch.messages > 0;
        let bytes = batch.len();
        queue.written(bytes);
        crate::ops::Counters::add(&counters.bytes_out, bytes as u64);
        crate::ops::Counters::add(&counters.messages_out, batch.messages);
        ConnStats::add(&queue.stats.bytes_out, bytes as u64);
        ConnStats::add(&queue.stats.messages_out, batch.messages);
        for ack in batch.flushes.drain(..) {
            let _ = ack.send(());
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::control::Control;
    use crate::dist::packet::{self, SendForm};
    use crate::dist::DistFlags;
    use crate::etf::{Atom, Pid, Reference, Term};
    use crate::outgoing::{CallRequest, GenCall, GenReply, ReplyTag};
    use bytes::Bytes;
    use bytes::BytesMut;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake, Waker};

    /// A writer that takes at most 7 bytes a call and has no vectored writes.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn shared_binaries_are_written_in_their_places() {
        let buf = b"0123456789abcdef";
        let mut shares = Shares::default();
        // Two at one place, one at the very start, one at the end.
        for (at, bytes) in [(0, "<a>"), (5, "<b>"), (5, "<c>"), (16, "<d>")] {
            shares.at.push((at, Bytes::from_static(bytes.as_bytes())));
        }
        let expected = b"<a>01234<b><c>56789abcdef<d>";
        let mut vectored = Vec::new();
        write_shared(&mut vectored, buf, &shares).await.unwrap();
        assert_eq!(&vectored[..], expected);
        let mut trickle = Trickle(Vec::new());
        write_shared(&mut trickle, buf, &shares).await.unwrap();
        assert_eq!(&trickle.0[..], expected);
    }

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn tick() -> Outgoing {
        Outgoing::Prepared(Bytes::new(), Vec::new())
    }

    /// A reply written from its parts is the same frame as `{Tag, Reply}`, for an alias tag
    /// and another, in every form.
    #[test]
    fn a_gen_reply_is_written_as_its_term() {
        let reference = Reference::new(Atom::new("caller@host"), 7, &[1, 2, 3]).unwrap();
        let tags = [
            Term::improper_list(vec![Term::atom("alias")], Term::from(reference.clone())),
            Term::from(reference),
        ];
        let control = Control::Send {
            to: Pid {
                node: Atom::new("caller@host"),
                id: 1,
                serial: 0,
                creation: 7,
            },
        };
        let reply = Term::tuple(vec![Term::atom("ok"), Term::binary(&b"value"[..])]);
        let forms = || {
            [
                SendForm::PassThrough,
                SendForm::Header,
                SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE),
            ]
        };
        for (mut parts_form, mut term_form) in forms().into_iter().zip(forms()) {
            for tag in &tags {
                let gen_reply = GenReply {
                    tag: ReplyTag::new(tag),
                    reply: reply.clone(),
                };
                let t = Term::tuple(vec![tag.clone(), reply.clone()]);
                let (mut parts, mut term) = (BytesMut::new(), BytesMut::new());
                packet::encode_frame_as(&mut parts, &mut parts_form, &control, Some(&gen_reply));
                packet::encode_message_as(&mut term, &mut term_form, &control, Some(&t));
                assert_eq!(parts, term, "{tag}");
            }
        }
    }

    /// A call's request written from its parts is the same frame as its term, in every form
    /// (the atom cache's included, message after message).
    #[test]
    fn a_gen_call_is_written_as_its_term() {
        let pid = |id| Pid {
            node: Atom::new("caller@host"),
            id,
            serial: 0,
            creation: 7,
        };
        let calls: Vec<GenCall> = (0..3)
            .map(|i| GenCall {
                from: pid(i),
                mref: Reference::new(Atom::new("caller@host"), 7, &[i, 2, 3]).unwrap(),
                request: {
                    // Both forms of a request: a term, and one a proxy passes on encoded.
                    let t = Term::tuple(vec![Term::atom("get"), Term::Int(i64::from(i))]);
                    if i % 2 == 0 {
                        CallRequest::Term(t)
                    } else {
                        CallRequest::Encoded(t.encode().slice(1..))
                    }
                },
            })
            .collect();
        let control = Control::RegSend {
            from: pid(0),
            to_name: Atom::new("kv"),
        };
        let form = |i| match i {
            0 => SendForm::PassThrough,
            1 => SendForm::Header,
            _ => SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE),
        };
        for i in 0..3 {
            let (mut parts_form, mut term_form) = (form(i), form(i));
            let mut decoders = [(); 2]
                .map(|()| packet::PacketDecoder::new(crate::etf::DecodeOptions::new(), usize::MAX));
            for call in &calls {
                let (mut parts, mut term) = (BytesMut::new(), BytesMut::new());
                packet::encode_frame_as(&mut parts, &mut parts_form, &control, Some(call));
                let t = call.to_term();
                packet::encode_message_as(&mut term, &mut term_form, &control, Some(&t));
                // An encoded request keeps its atoms inline where the term's go through the
                // atom cache: the same message, other bytes.
                if matches!(call.request, CallRequest::Term(_)) || i < 2 {
                    assert_eq!(parts, term, "form {i}");
                }
                let [a, b] = &mut decoders;
                let decode = |d: &mut packet::PacketDecoder, mut frame: BytesMut| {
                    let Ok(Some(packet::Frame::Data(data))) =
                        packet::next_frame(&mut frame, usize::MAX)
                    else {
                        panic!("a frame")
                    };
                    d.decode(data).expect("decodes").expect("whole")
                };
                assert_eq!(decode(a, parts), decode(b, term), "form {i}");
            }
        }
    }

    /// A reply produced while the writer polls its waits is queued without waking the writer
    /// (tokio would reschedule it as a yield and wake another worker); one produced elsewhere
    /// wakes it.
    #[test]
    fn the_outbox_wakes_its_writer_only_from_outside_its_poll() {
        let outbox = Arc::new(ReplyOutbox::default());
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let waiter = ReplyWaiter::default();

        // A wait that pushes a reply when its port is answered; the sender answers it.
        let wait_for_reply = || {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let pushing = outbox.clone();
            let wait: crate::waiter::Wait = Box::pin(async move {
                let _ = rx.await;
                pushing.push(tick());
            });
            (tx, wait)
        };

        // The writer polls once; then a wait whose reply is already there is added.
        outbox.poll_waits(&waiter, &mut cx);
        let (tx, wait) = wait_for_reply();
        tx.send(()).unwrap();
        assert!(waiter.add(wait).is_ok());
        // `add` ran the wait on this thread, outside the writer's poll: that wakes it.
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            {
                let mut v = Vec::new();
                outbox.take_into(&mut v);
                v.len()
            },
            1
        );

        // A wait completed by the writer's own poll: queued, no wake-up.
        let (tx, wait) = wait_for_reply();
        assert!(waiter.add(wait).is_ok());
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "adding a pending wait wakes nobody"
        );
        tx.send(()).unwrap();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            2,
            "the reply wakes the writer"
        );
        outbox.poll_waits(&waiter, &mut cx);
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            2,
            "no wake from inside the poll"
        );
        assert!(outbox.has_items());
        assert_eq!(
            {
                let mut v = Vec::new();
                outbox.take_into(&mut v);
                v.len()
            },
            1
        );
        assert!(!outbox.has_items());
    }
}
