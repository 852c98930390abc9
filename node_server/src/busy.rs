//! Busy polling after writes, as the BEAM's schedulers busy-wait before they sleep.
//!
//! A round trip between two nodes on one machine costs mostly wake-ups: when a worker thread
//! finds nothing to do it parks, its CPU goes idle, and the answer it waits for then has to wake
//! that CPU again. How much that costs depends on how long the CPU has been idle: on this
//! project's 2-core VM a loopback TCP ping-pong takes 14-18 µs when the CPUs are kept busy and
//! 40-57 µs when they are quiet, and a call between two nodes, whose answer comes back a few
//! microseconds later than a bare echo's, paid the full price each way.
//!
//! So after a session writes to its connection, one task of the node (the spinner) keeps
//! yielding to the runtime for a short window ([`crate::NodeConfig::busy_wait`], 50 µs by
//! default). A worker with a yielded task does not park: it polls the I/O driver without
//! blocking (when no other worker is parked on it) and runs the spinner again, so its CPU
//! stays awake and an answer arriving within the window is handled straight away.
//! Every write restarts the window; when it runs out, the spinner waits for the next write
//! without using any CPU. This is the trade the BEAM makes by default (`+sbwt`): some CPU
//! after each burst of traffic, for round trips about three times shorter on this project's
//! benchmark machine. `Duration::ZERO` turns it off.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

/// A node's busy poller: [`BusyPoll::kick`] after every write; see the module docs.
pub(crate) struct BusyPoll {
    /// `None` when busy polling is off.
    state: Option<Arc<State>>,
    /// Wakes the spinner when a kick finds it waiting.
    wake: mpsc::Sender<()>,
    /// The spinner's end of `wake`, until the first kick starts it.
    waiting: Mutex<Option<mpsc::Receiver<()>>>,
}

/// What the writers and the spinner share.
struct State {
    base: Instant,
    /// The window, in nanoseconds.
    window: u64,
    /// When the last write happened, in nanoseconds since `base`.
    last: AtomicU64,
    /// Whether the spinner is spinning (or about to).
    spinning: AtomicBool,
}

impl State {
    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether the last write was within the window.
    fn recent(&self) -> bool {
        self.now().saturating_sub(self.last.load(Ordering::SeqCst)) <= self.window
    }
}

impl BusyPoll {
    /// A poller with the given window; `Duration::ZERO` makes kicks do nothing.
    pub(crate) fn new(window: Duration) -> BusyPoll {
        let (wake, waiting) = mpsc::channel(1);
        let state = (!window.is_zero()).then(|| {
            Arc::new(State {
                base: Instant::now(),
                window: u64::try_from(window.as_nanos()).unwrap_or(u64::MAX),
                last: AtomicU64::new(0),
                spinning: AtomicBool::new(false),
            })
        });
        BusyPoll {
            state,
            wake,
            waiting: Mutex::new(Some(waiting)),
        }
    }

    /// Notes a write: the spinner spins until a window after it. Must be called inside a
    /// tokio runtime (the first kick spawns the spinner there).
    pub(crate) fn kick(&self) {
        let Some(state) = &self.state else { return };
        state.last.store(state.now(), Ordering::SeqCst);
        if state.spinning.load(Ordering::SeqCst) || state.spinning.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(waiting) = crate::lock(&self.waiting).take() {
            tokio::spawn(spin(state.clone(), waiting));
        } else {
            // Full means a wake-up is pending already.
            let _ = self.wake.try_send(());
        }
    }
}

/// The spinner: spins while writes are recent, then waits for a kick. Ends with the node
/// (when the [`BusyPoll`] and with it the sending end of `wake` is dropped).
async fn spin(state: Arc<State>, mut wake: mpsc::Receiver<()>) {
    loop {
        while state.recent() {
            tokio::task::yield_now().await;
        }
        state.spinning.store(false, Ordering::SeqCst);
        // A kick between the last check and the store above saw `spinning` set and did not
        // send a wake-up: look again.
        if state.recent() && !state.spinning.swap(true, Ordering::SeqCst) {
            continue;
        }
        if wake.recv().await.is_none() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (bounded) until the spinner's flag reads `spinning`.
    async fn until(poll: &BusyPoll, spinning: bool) {
        let state = poll.state.as_ref().unwrap();
        tokio::time::timeout(Duration::from_secs(5), async {
            while state.spinning.load(Ordering::SeqCst) != spinning {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("spinner state");
    }

    #[tokio::test]
    async fn spins_after_a_kick_then_stops_and_restarts() {
        let poll = BusyPoll::new(Duration::from_millis(20));
        assert!(
            crate::lock(&poll.waiting).is_some(),
            "no spinner before a kick"
        );
        poll.kick();
        assert!(
            crate::lock(&poll.waiting).is_none(),
            "the first kick starts it"
        );
        until(&poll, true).await;
        until(&poll, false).await;
        // Idle now; a kick wakes it again.
        poll.kick();
        until(&poll, true).await;
        until(&poll, false).await;
    }

    #[tokio::test]
    async fn kicks_keep_it_spinning() {
        let poll = BusyPoll::new(Duration::from_millis(30));
        let state = poll.state.clone().unwrap();
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(100) {
            poll.kick();
            tokio::time::sleep(Duration::from_millis(5)).await;
            assert!(state.spinning.load(Ordering::SeqCst));
        }
        until(&poll, false).await;
    }

    #[tokio::test]
    async fn zero_window_is_off() {
        let poll = BusyPoll::new(Duration::ZERO);
        poll.kick();
        assert!(poll.state.is_none());
        assert!(crate::lock(&poll.waiting).is_some(), "no spinner started");
    }

    #[tokio::test]
    async fn spinner_ends_with_the_poller() {
        let poll = BusyPoll::new(Duration::from_millis(1));
        poll.kick();
        until(&poll, false).await;
        let state = poll.state.clone().unwrap();
        drop(poll);
        // The spinner held the only other reference.
        tokio::time::timeout(Duration::from_secs(5), async {
            while Arc::strong_count(&state) > 1 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("spinner ended");
    }
}
