//! [`Probe`]: an actor for simulated tests that hands every term it receives to the test.

use ractor::{Actor, ActorProcessingErr, ActorRef, ActorStatus};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use node_server::etf::{Pid, Term};
use node_server::remote::Raw;

/// The actor behind a [`Probe`]: takes any term; stops on the atom `stop`, fails on `fail`.
struct ProbeActor;

impl Actor for ProbeActor {
    type Msg = Raw;
    type State = mpsc::UnboundedSender<Term>;
    type Arguments = mpsc::UnboundedSender<Term>;

    async fn pre_start(
        &self,
        _me: ActorRef<Raw>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        me: ActorRef<Raw>,
        Raw(msg): Raw,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        if msg.is_atom("stop") {
            me.stop(Some("normal".into()));
        } else if msg.is_atom("fail") {
            return Err("probe told to fail".into());
        } else {
            let _ = tx.send(msg);
        }
        Ok(())
    }
}

/// A local actor of a simulated node and what it received.
pub struct Probe {
    /// The actor.
    pub actor: ActorRef<Raw>,
    /// Its pid on its node.
    pub pid: Pid,
    rx: mpsc::UnboundedReceiver<Term>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe").field("pid", &self.pid).finish()
    }
}

impl Probe {
    /// Spawns a probe and gives it a pid on `node`.
    pub(crate) async fn spawn(node: &node_server::Node) -> Probe {
        let (tx, rx) = mpsc::unbounded_channel();
        let (actor, handle) = Actor::spawn(None, ProbeActor, tx)
            .await
            .expect("a probe starts");
        let pid = node.pid_of(&actor);
        Probe {
            actor,
            pid,
            rx,
            handle: Some(handle),
        }
    }

    /// The next term received, if one came (no waiting).
    pub fn try_next(&mut self) -> Option<Term> {
        self.rx.try_recv().ok()
    }

    /// The next term received, waiting for it; `None` once the probe stopped with nothing
    /// left.
    pub async fn next(&mut self) -> Option<Term> {
        self.rx.recv().await
    }

    /// Whether the actor has stopped.
    pub fn is_stopped(&self) -> bool {
        self.actor.get_status() == ActorStatus::Stopped
            || self.handle.as_ref().is_some_and(|h| h.is_finished())
    }

    /// Waits until the actor has stopped.
    pub async fn stopped(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }

    /// Stops the actor (as its process exiting with `reason`) and waits until it has.
    pub async fn stop(&mut self, reason: &str) {
        self.actor.stop(Some(reason.into()));
        self.stopped().await;
    }
}
