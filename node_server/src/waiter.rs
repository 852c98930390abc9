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
use std::task::{Context, Poll, Waker};

use futures_util::stream::{FuturesUnordered, StreamExt};

/// A wait for one reply; it does its own work (sending the reply on) when it completes.
pub(crate) type Wait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A set of waits polled by one owner task. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct ReplyWaiter(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// The owner's waker, once it has polled; `None` also after [`ReplyWaiter::close`].
    waker: Option<Waker>,
    waits: FuturesUnordered<Wait>,
    closed: bool,
}

impl std::fmt::Debug for ReplyWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyWaiter").finish_non_exhaustive()
    }
}

impl State {
    /// Runs every wait that can make progress, registering `waker` for the rest.
    fn drive(&mut self, waker: &Waker) {
        let mut cx = Context::from_waker(waker);
        while let Poll::Ready(Some(())) = self.waits.poll_next_unpin(&mut cx) {}
    }
}

impl ReplyWaiter {
    /// Adds a wait, or gives it back when no owner polls the set (not yet started, or gone):
    /// the caller then runs it elsewhere.
    pub fn add(&self, wait: Wait) -> Result<(), Wait> {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let Some(waker) = state.waker.clone().filter(|_| !state.closed) else {
            return Err(wait);
        };
        state.waits.push(wait);
        state.drive(&waker);
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
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if state.closed {
            return;
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        state.drive(cx.waker());
    }

    /// The owner is ending: drops every wait (their reply ports close) and refuses new ones.
    pub fn close(&self) {
        let waits = {
            let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
            state.closed = true;
            state.waker = None;
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
            while waiter.0.lock().unwrap().waker.is_none() {
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
