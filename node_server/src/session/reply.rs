//! Replies to the peer's calls: [`Replier`] writes `{Tag, Reply}` to a caller, and the
//! [`ReplyOutbox`] hands replies produced inside the writer's poll to the writer unwoken.

use std::sync::Arc;

use crate::dist::control::Control;
use crate::dist::DistFlags;
use crate::etf::{Pid, Term};
use crate::outgoing::{GenReply, Outgoing, ReplyTag};
use crate::send_queue::SendQueue;
use crate::waiter::ReplyWaiter;

/// Sends `gen_server` replies on one session.
#[derive(Debug, Clone)]
pub(crate) struct Replier {
    pub queue: Arc<SendQueue>,
    pub flags: DistFlags,
    pub from: Pid,
    /// Set for replies the writer waits for (see [`ReplyOutbox`]).
    pub outbox: Option<Arc<ReplyOutbox>>,
}

/// Replies of local actors to the peer's calls, on their way to the writer.
///
/// The writer waits for these replies itself ([`crate::waiter`]), so a reply is usually
/// produced while the writer is being polled. Sent on the writer's own channel, it would wake
/// the writer from inside its poll, and tokio reschedules a task woken that way as a yield,
/// which in the multi-thread scheduler wakes another worker thread: a futex and two context
/// switches per call. The outbox takes the reply without waking the writer when the writer is
/// the one polling, and wakes it otherwise.
#[derive(Default)]
pub(crate) struct ReplyOutbox {
    items: std::sync::Mutex<Vec<Outgoing>>,
    owner: crate::waiter::WakerCell,
    polling: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ReplyOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyOutbox").finish_non_exhaustive()
    }
}

impl ReplyOutbox {
    pub(super) fn push(&self, item: Outgoing) {
        use std::sync::atomic::Ordering::SeqCst;
        crate::lock(&self.items).push(item);
        // The writer drains after its poll (`polling` false again), so an item pushed while
        // it polls is seen without a wake-up.
        if !self.polling.load(SeqCst) {
            self.owner.wake();
        }
    }

    /// Polls `waiter` on the writer's behalf; replies it completes land here unwoken.
    pub(super) fn poll_waits(&self, waiter: &ReplyWaiter, cx: &mut std::task::Context<'_>) {
        use std::sync::atomic::Ordering::SeqCst;
        self.owner.register(cx.waker());
        self.polling.store(true, SeqCst);
        waiter.poll(cx);
        self.polling.store(false, SeqCst);
    }

    pub(super) fn has_items(&self) -> bool {
        !crate::lock(&self.items).is_empty()
    }

    /// Moves the queued replies into `into` (empty), which lends its buffer to the queue.
    pub(super) fn take_into(&self, into: &mut Vec<Outgoing>) {
        std::mem::swap(&mut *crate::lock(&self.items), into);
    }
}

impl Replier {
    /// Sends `{Tag, Reply}` to a caller: to its alias when the tag is `[alias | Ref]` and the
    /// peer takes aliases, else to its pid.
    pub fn reply(&self, caller: &Pid, tag: &ReplyTag, reply: Term) {
        let control = match tag {
            ReplyTag::Alias(alias) if self.flags.contains(DistFlags::ALIAS) => Control::AliasSend {
                from: self.from.clone(),
                alias: alias.clone(),
            },
            _ => Control::Send { to: caller.clone() },
        };
        let item = Outgoing::Reply(
            control,
            GenReply {
                tag: tag.clone(),
                reply,
            },
        );
        match &self.outbox {
            Some(outbox) => outbox.push(item),
            None => {
                let _ = self.queue.push(item);
            }
        }
    }

    /// Sends a plain message to a pid.
    pub fn send(&self, to: &Pid, msg: Term) {
        let control = Control::Send { to: to.clone() };
        let _ = self.queue.push(Outgoing::Message(control, Some(msg)));
    }
}

/// The way back to the callers of one session: what the router needs to answer a remote
/// caller's `gen_server` call to a local actor.
pub(crate) struct SessionReplies {
    pub queue: Arc<SendQueue>,
    pub flags: DistFlags,
    /// Waits for local actors' replies to the peer's calls, in the writer task.
    pub waiter: ReplyWaiter,
    /// Where those replies go.
    pub outbox: Arc<ReplyOutbox>,
}

impl crate::router::ReplyPath for SessionReplies {
    fn reply_to(
        &self,
        from: &Pid,
        caller: &Pid,
        tag: &crate::etf::Term,
    ) -> crate::message::ReplyTo {
        let replier = Replier {
            queue: self.queue.clone(),
            flags: self.flags,
            from: from.clone(),
            outbox: Some(self.outbox.clone()),
        };
        let (caller, tag) = (caller.clone(), ReplyTag::new(tag));
        crate::message::ReplyTo::new(move |reply| replier.reply(&caller, &tag, reply))
            .waited_by(self.waiter.clone())
    }

    fn wait(&self, wait: crate::waiter::Wait) {
        ReplyWaiter::add_or_spawn(Some(&self.waiter), wait);
    }
}
