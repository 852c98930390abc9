//! Node up/down events: what subscribers ([`crate::Node::subscribe`]) and the services
//! (`pg`, `global`) hear of connections.

use ractor::ActorRef;
use tokio::sync::broadcast;

use crate::dist::DistFlags;

/// Something that happened to a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NodeEvent {
    /// A node connected.
    Up {
        /// Its name.
        node: String,
        /// The negotiated flags.
        flags: DistFlags,
        /// Whether the connection is hidden (either side hidden).
        hidden: bool,
    },
    /// A node disconnected.
    Down {
        /// Its name.
        node: String,
        /// Why (`connection_closed`, `net_tick_timeout`, ...).
        reason: String,
    },
}

/// The node's event channel.
pub(crate) struct Events {
    tx: broadcast::Sender<NodeEvent>,
}

impl Default for Events {
    fn default() -> Self {
        Events {
            tx: broadcast::channel(256).0,
        }
    }
}

impl Events {
    /// Tells every subscriber.
    pub fn send(&self, event: NodeEvent) {
        let _ = self.tx.send(event);
    }

    /// Events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.tx.subscribe()
    }
}

/// Casts node up/down events to `actor`, as `translate` turns them into its messages
/// (`None`: skip), until the actor or the node is gone. Lagging events are skipped.
pub(crate) fn forward_node_events<M: ractor::Message>(
    events: &Events,
    actor: ActorRef<M>,
    translate: fn(NodeEvent) -> Option<M>,
) -> tokio::task::JoinHandle<()> {
    let mut events = events.subscribe();
    tokio::spawn(async move {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            if let Some(msg) = translate(event) {
                if actor.cast(msg).is_err() {
                    return;
                }
            }
        }
    })
}
