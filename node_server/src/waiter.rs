//! Waiting for many reply ports without a task each.
//!
//! A call delivered to a local actor carries a oneshot reply port; something must wait on
//! its receiver and pass the value on. Spawning a task per call costs a spawn and an extra
//! wake-up (actor -> bridge task -> writer) on every call. A [`ReplyWaiter`] instead keeps the
//! waits in one set owned by a long-lived task (the session writer): whoever adds a wait polls
//! it once with the owner's waker, so the actor's reply wakes the owner directly and nobody is
//! woken when the wait is added.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

use crate::lock;

/// A wait for one reply; it does its own work (sending the reply on) when it completes.
pub(crate) type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A task's waker, registered and woken from other threads.
#[derive(Default)]
pub(crate) struct WakerCell(Mutex<Option<Waker>>);

impl WakerCell {
    /// Makes [`WakerCell::wake`] wake `waker`'s task.
    pub fn register(&self, waker: &Waker) {
        let mut slot = lock(&self.0);
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Wakes the registered task (until it registers again).
    pub fn wake(&self) {
        if let Some(waker) = lock(&self.0).take() {
            waker.wake();
        }
    }
}

/// A set of waits polled by one owner task. Cheap to clone.
///
/// Each wait has a waker of its own that notes it as ready and wakes the owner, so the owner
/// polls only the waits whose replies came. (`futures`' `FuturesUnordered` would do the same
/// but wakes its owner itself after polling every member once, as a fairness yield; here that
/// would be a spurious wake-up of the writer on every call.)
#[derive(Clone, Default)]
pub(crate) struct ReplyWaiter(Arc<Shared>);

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Ids of waits whose waker fired since the owner last polled.
    ready: Mutex<Vec<u64>>,
    owner: WakerCell,
}

#[derive(Default)]
struct State {
    waits: crate::hash::FastMap<u64, (Wait, Waker)>,
    next: u64,
    /// The ready list's other buffer: swapped with it on each poll, so neither reallocates.
    spare: Vec<u64>,
    /// Whether the owner has polled (so it will poll again when woken).
    owned: bool,
    closed: bool,
}

/// The waker of one wait.
struct Slot {
    id: u64,
    shared: std::sync::Weak<Shared>,
}

impl Wake for Slot {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(shared) = self.shared.upgrade() {
            lock(&shared.ready).push(self.id);
            shared.owner.wake();
        }
    }
}

impl std::fmt::Debug for ReplyWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyWaiter").finish_non_exhaustive()
    }
}

impl ReplyWaiter {
    /// Adds a wait, polling it once here, or gives it back when no owner polls the set (not
    /// yet started, or gone): the caller then runs it elsewhere.
    pub fn add(&self, mut wait: Wait) -> Result<(), Wait> {
        let mut state = lock(&self.0.state);
        if state.closed || !state.owned {
            return Err(wait);
        }
        let id = state.next;
        state.next += 1;
        let waker = Waker::from(Arc::new(Slot {
            id,
            shared: Arc::downgrade(&self.0),
        }));
        if wait
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending()
        {
            state.waits.insert(id, (wait, waker));
        }
        Ok(())
    }

    /// Adds a wait, or spawns it on the current tokio runtime when no owner polls the set.
    pub fn add_or_spawn(waiter: Option<&ReplyWaiter>, wait: Wait) {
        let wait = match waiter {
            Some(w) => match w.add(wait) {
                Ok(()) => return,
                Err(wait) => wait,
            },
            None => wait,
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(wait);
            }
            Err(_) => tracing::warn!("no tokio runtime to wait for a call's reply; dropped"),
        }
    }

    /// Called by the owner whenever it is polled: runs the waits whose replies came and
    /// makes the next reply wake `cx`'s task.
    pub fn poll(&self, cx: &mut Context<'_>) {
        self.0.owner.register(cx.waker());
        let mut state = lock(&self.0.state);
        if state.closed {
            return;
        }
        state.owned = true;
        // One pass over what was ready when the poll began: a wait that becomes ready again
        // meanwhile (another reply, or tokio's budget making it yield) has woken this task,
        // which comes back for it.
        let mut ready = std::mem::take(&mut state.spare);
        std::mem::swap(&mut *lock(&self.0.ready), &mut ready);
        for id in ready.drain(..) {
            let Some((wait, waker)) = state.waits.get_mut(&id) else {
                continue;
            };
            if wait
                .as_mut()
                .poll(&mut Context::from_waker(waker))
                .is_ready()
            {
                state.waits.remove(&id);
            }
        }
        state.spare = ready;
    }

    /// How many waits are pending.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.0.state).waits.len()
    }

    /// The owner is ending: drops every wait (their reply ports close) and refuses new ones.
    pub fn close(&self) {
        let waits = {
            let mut state = lock(&self.0.state);
            state.closed = true;
            std::mem::take(&mut state.waits)
        };
        drop(waits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A wait added after the owner polled completes when its port is answered, with the
    /// owner woken by the reply alone.
    #[tokio::test]
    async fn a_reply_wakes_the_owner_and_runs_its_wait() {
        let waiter = ReplyWaiter::default();
        let done = Arc::new(AtomicUsize::new(0));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let owner = {
            let waiter = waiter.clone();
            tokio::spawn(async move {
                // The owner: polls the set until three replies have been passed on.
                let mut got = 0;
                while got < 3 {
                    got += std::future::poll_fn(|cx| {
                        waiter.poll(cx);
                        ready_rx.poll_recv(cx)
                    })
                    .await
                    .unwrap_or(0);
                }
                waiter.close();
                got
            })
        };
        // Give the owner a chance to poll once (an event we can observe: its waker is set).
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while !lock(&waiter.0.state).owned {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("owner polled");
        let mut ports = Vec::new();
        for _ in 0..3 {
            let (tx, rx) = tokio::sync::oneshot::channel::<usize>();
            let (ready_tx, done) = (ready_tx.clone(), done.clone());
            let wait: Wait = Box::pin(async move {
                if let Ok(v) = rx.await {
                    done.fetch_add(1, Ordering::SeqCst);
                    let _ = ready_tx.send(v);
                }
            });
            assert!(waiter.add(wait).is_ok());
            ports.push(tx);
        }
        for tx in ports {
            tx.send(1).unwrap();
        }
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), owner)
            .await
            .expect("owner finished")
            .unwrap();
        assert_eq!(got, 3);
        assert_eq!(done.load(Ordering::SeqCst), 3);
        assert_eq!(waiter.len(), 0, "completed waits are dropped");
        // Closed: new waits come back to the caller.
        let wait: Wait = Box::pin(async {});
        assert!(waiter.add(wait).is_err());
    }

    /// Without an owner, a wait is handed back.
    #[test]
    fn no_owner_gives_the_wait_back() {
        let waiter = ReplyWaiter::default();
        assert!(waiter.add(Box::pin(async {})).is_err());
    }
}
