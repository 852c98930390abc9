//! The writer task: drains the session's queue and the replies of local actors to the peer's
//! calls into one buffer, writes it with one syscall (big binaries from where they are), and
//! ticks when idle.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::reply::ReplyOutbox;
use super::BoxedTransport;
use crate::dist::control::Control;
use crate::dist::packet::{self, SendForm, Shares};
use crate::dist::DistFlags;
use crate::outgoing::Outgoing;
use crate::sessions::{Deferred, DEFERRED_FLUSH};
use crate::waiter::ReplyWaiter;

/// Encodes one queued message. Terms go through the connection's atom cache when the peer
/// takes it (OTP receives cached atoms more cheaply, and it cuts bytes by 17-39%); a proxy's
/// pre-encoded control and payload go out as they are, which is cheapest for the sender.
fn encode_outgoing(
    out: &mut BytesMut,
    form: &mut SendForm,
    flags: DistFlags,
    msg: Outgoing,
    shares: &mut Shares,
) {
    match msg {
        Outgoing::Prepared(control, payload) => {
            packet::encode_prepared_shared(out, flags, &control, payload, shares)
        }
        Outgoing::Message(control, payload) => {
            packet::encode_frame_shared(out, form, &control, payload.as_ref(), Some(shares))
        }
        Outgoing::Call(control, call) => {
            packet::encode_frame_shared(out, form, &control, Some(&call), Some(shares))
        }
        Outgoing::Reply(control, reply) => {
            packet::encode_frame_shared(out, form, &control, Some(&reply), Some(shares))
        }
        Outgoing::Raw(control, payload) => {
            packet::encode_raw_shared(out, form, &control, &payload, shares)
        }
        // The writer answers these itself.
        Outgoing::Flush(_) => {}
    }
}

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

/// Ends the reply waits when the writer ends (returns, or is aborted with its session).
struct CloseOnDrop(ReplyWaiter);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

pub(super) async fn writer_task(
    mut w: tokio::io::WriteHalf<BoxedTransport>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    (waiter, outbox): (ReplyWaiter, Arc<ReplyOutbox>),
    deferred: Deferred,
    flags: DistFlags,
    tick_every: Duration,
    // The node's counters and busy poller.
    (counters, busy): (Arc<crate::ops::Counters>, Arc<crate::busy::BusyPoll>),
) {
    const BATCH: usize = 256 << 10;
    // The most bytes one frame can take, its 4-byte length included.
    const FRAME_MAX: usize = 4 + u32::MAX as usize;
    let mut oversized = false;
    let mut buf = BytesMut::with_capacity(64 << 10);
    // Big binaries of this batch, written from where they are rather than copied into `buf`.
    let mut shares = Shares::default();
    let mut form = SendForm::with_atom_cache(flags);
    let mut flushed = Vec::new();
    let mut messages = 0u64;
    let _close = CloseOnDrop(waiter.clone());
    // The buffers the deferred controls and the replies are swapped into, kept across writes.
    let (mut controls, mut replies) = (Vec::new(), Vec::new());
    let take_deferred = |buf: &mut BytesMut,
                         form: &mut SendForm,
                         messages: &mut u64,
                         controls: &mut Vec<Control>| {
        std::mem::swap(&mut *crate::lock(&deferred), controls);
        for control in controls.drain(..) {
            *messages += 1;
            packet::encode_message_as(buf, form, &control, None);
        }
    };
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
    loop {
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
            match rx.poll_recv(cx) {
                std::task::Poll::Pending if outbox.has_items() => {
                    std::task::Poll::Ready(Some(None))
                }
                other => other.map(|m| m.map(Some)),
            }
        });
        let first = tokio::select! {
            biased;
            m = next => match m {
                Some(m) => m,
                None => return,
            },
            () = &mut flush, if flush_armed => {
                flush_armed = false;
                take_deferred(&mut buf, &mut form, &mut messages, &mut controls);
                None
            }
            () = &mut tick => {
                tick.as_mut().reset(tokio::time::Instant::now() + tick_every);
                if std::mem::take(&mut wrote) {
                    continue;
                }
                // Idle for a tick interval: keep the peer's view of us alive.
                take_deferred(&mut buf, &mut form, &mut messages, &mut controls);
                if buf.is_empty() {
                    packet::encode_tick(&mut buf);
                }
                None
            }
        };
        outbox.take_into(&mut replies);
        if first.is_some() || !replies.is_empty() {
            let mut take = |buf: &mut BytesMut, shares: &mut Shares, msg: Outgoing| match msg {
                Outgoing::Flush(ack) => flushed.push(ack),
                msg => {
                    messages += 1;
                    let before = buf.len() + shares.bytes;
                    encode_outgoing(buf, &mut form, flags, msg, shares);
                    // A frame's length is 32 bits; this node does not fragment what it
                    // sends, so a message of 4 GiB or more cannot go.
                    oversized |= buf.len() + shares.bytes - before > FRAME_MAX;
                }
            };
            for reply in replies.drain(..) {
                take(&mut buf, &mut shares, reply);
            }
            if let Some(msg) = first {
                take(&mut buf, &mut shares, msg);
            }
            // Batch whatever else is queued into the same write.
            while buf.len() + shares.bytes < BATCH {
                match rx.try_recv() {
                    Ok(msg) => take(&mut buf, &mut shares, msg),
                    Err(_) => break,
                }
            }
            take_deferred(&mut buf, &mut form, &mut messages, &mut controls);
        }
        if buf.is_empty() && flushed.is_empty() {
            continue;
        }
        if oversized {
            // Its length would wrap and the peer would read garbage; the atom cache already
            // counts it as sent, so the connection cannot go on without it either.
            tracing::error!(
                "a message of 4 GiB or more does not fit in one distribution frame; \
                 closing the connection"
            );
            let _ = w.shutdown().await;
            return;
        }
        let written = if shares.at.is_empty() {
            w.write_all(&buf).await
        } else {
            write_shared(&mut w, &buf, &shares).await
        };
        if written.is_err() {
            return;
        }
        busy.kick();
        // A tick written does not count: the next interval needs its own.
        wrote = messages > 0;
        crate::ops::Counters::add(&counters.bytes_out, (buf.len() + shares.bytes) as u64);
        shares.clear();
        crate::ops::Counters::add(&counters.messages_out, std::mem::take(&mut messages));
        for ack in flushed.drain(..) {
            let _ = ack.send(());
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::control::Control;
    use crate::etf::{Atom, Pid, Reference, Term};
    use crate::outgoing::{GenCall, GenReply, ReplyTag};
    use bytes::Bytes;
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
                request: Term::tuple(vec![Term::atom("get"), Term::Int(i64::from(i))]),
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
            for call in &calls {
                let (mut parts, mut term) = (BytesMut::new(), BytesMut::new());
                packet::encode_frame_as(&mut parts, &mut parts_form, &control, Some(call));
                let t = call.to_term();
                packet::encode_message_as(&mut term, &mut term_form, &control, Some(&t));
                assert_eq!(parts, term, "form {i}");
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
