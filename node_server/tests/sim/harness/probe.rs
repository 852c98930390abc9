//! [`Probe`]: an actor for simulated tests that hands every term it receives to the test
//! (testkit's forwarder, given a pid on its node).

use ractor::{ActorRef, ActorStatus};
use tokio::sync::mpsc;

use node_server::etf::{Pid, Term};
use node_server::remote::Raw;

/// A local actor of a simulated node and what it received.
pub struct Probe {
    /// The actor.
    pub actor: ActorRef<Raw>,
    /// Its pid on its node.
    pub pid: Pid,
    rx: mpsc::UnboundedReceiver<Raw>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("pid", &self.pid).finish()
    }
}

impl Probe {
    /// Spawns a probe and gives it a pid on `node`.
    pub(crate) async fn spawn(node: &node_server::Node) -> Probe {
        let (actor, rx) = testkit::forwarder::<Raw>().await;
        let pid = node.pid_of(&actor);
        Probe { actor, pid, rx }
    }

    /// The next term received, if one came (no waiting).
    pub fn try_next(&mut self) -> Option<Term> {
        self.rx.try_recv().ok().map(|Raw(t)| t)
    }

    /// The next term received, waiting for it; `None` once the probe stopped with nothing
    /// left.
    pub async fn next(&mut self) -> Option<Term> {
        self.rx.recv().await.map(|Raw(t)| t)
    }

    /// Whether the actor has stopped.
    pub fn is_stopped(&self) -> bool {
        self.actor.get_status() == ActorStatus::Stopped
    }

    /// Waits until the actor has stopped.
    pub async fn stopped(&mut self) {
        let _ = self.actor.get_cell().wait(None).await;
    }

    /// Stops the actor (as its process exiting with `reason`) and waits until it has.
    pub async fn stop(&mut self, reason: &str) {
        self.actor.stop(Some(reason.into()));
        self.stopped().await;
    }
}
