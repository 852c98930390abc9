//! Priority messages (EEP 76, OTP 28+) for Rust actors: a mailbox with a priority lane.
//!
//! ractor's mailbox has one first-in-first-out port for an actor's messages, so a message
//! cannot overtake the ones already queued there. An actor that wants Erlang's priority
//! messages therefore gets its messages through a [`PriorityInbox`] that the node fills: its
//! ractor message type is [`Wake`], one per message that arrived, and on each `Wake` it takes
//! one message with [`PriorityInbox::pop`], which gives the priority lane first.
//!
//! As in Erlang, priority is the receiver's choice: messages are prioritized only when sent
//! with `erlang:send(Alias, Msg, [priority])` to the inbox's alias
//! ([`PriorityInbox::alias`], the counterpart of `alias([priority])`). Everything else (to its
//! pid, its registered name, or to the alias without `priority`) takes the ordinary lane, in
//! order. A peer older than OTP 28 cannot send priority messages; its messages to the alias
//! are ordinary ones.
//!
//! ```no_run
//! # async fn example(node: node_server::Node) -> Result<(), Box<dyn std::error::Error>> {
//! use node_server::priority::{PriorityInbox, Wake};
//! use node_server::remote::Raw;
//! use ractor::{Actor, ActorProcessingErr, ActorRef};
//!
//! struct Worker;
//! impl Actor for Worker {
//!     type Msg = Wake;
//!     type State = Option<PriorityInbox<Raw>>;
//!     type Arguments = ();
//!     async fn pre_start(&self, _: ActorRef<Wake>, _: ()) -> Result<Self::State, ActorProcessingErr> {
//!         Ok(None) // the inbox is handed over in a first message, or made by the spawner
//!     }
//!     async fn handle(&self, _: ActorRef<Wake>, _: Wake, inbox: &mut Self::State) -> Result<(), ActorProcessingErr> {
//!         if let Some(Raw(term)) = inbox.as_ref().and_then(PriorityInbox::pop) {
//!             println!("next: {term}");
//!         }
//!         Ok(())
//!     }
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ractor::{ActorRef, Message};

use crate::dist::control::ProcessRef;
use crate::etf::{Atom, FromTerm, Pid, Reference, Term};
use crate::node::{Node, RegisterError};
use crate::registry::AliasFn;

/// The message an inbox's actor gets for each message that arrived: take one with
/// [`PriorityInbox::pop`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake;

impl Message for Wake {}

struct Lanes<M> {
    priority: VecDeque<M>,
    ordinary: VecDeque<M>,
}

/// The messages of one actor, priority ones first (see the [module docs](self)).
pub struct PriorityInbox<M> {
    lanes: Arc<Mutex<Lanes<M>>>,
    node: Node,
    pid: Pid,
    alias: Reference,
}

impl<M> Clone for PriorityInbox<M> {
    fn clone(&self) -> Self {
        PriorityInbox {
            lanes: self.lanes.clone(),
            node: self.node.clone(),
            pid: self.pid.clone(),
            alias: self.alias.clone(),
        }
    }
}

impl<M> std::fmt::Debug for PriorityInbox<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PriorityInbox")
            .field("pid", &self.pid)
            .field("alias", &self.alias)
            .finish_non_exhaustive()
    }
}

impl<M> PriorityInbox<M> {
    /// The next message: the oldest priority message, else the oldest ordinary one.
    pub fn pop(&self) -> Option<M> {
        let mut lanes = crate::lock(&self.lanes);
        lanes
            .priority
            .pop_front()
            .or_else(|| lanes.ordinary.pop_front())
    }

    /// How many messages wait: (priority, ordinary).
    pub fn len(&self) -> (usize, usize) {
        let lanes = crate::lock(&self.lanes);
        (lanes.priority.len(), lanes.ordinary.len())
    }

    /// Whether no message waits.
    pub fn is_empty(&self) -> bool {
        self.len() == (0, 0)
    }

    /// The actor's pid, as Erlang sees it.
    pub fn pid(&self) -> &Pid {
        &self.pid
    }

    /// The alias Erlang sends priority messages to (`erlang:send(Alias, Msg, [priority])`).
    pub fn alias(&self) -> &Reference {
        &self.alias
    }

    /// Registers the actor under `name`, so `{Name, Node} ! Msg` reaches the ordinary lane.
    pub fn register(&self, name: &str) -> Result<(), RegisterError> {
        let shared = self.node.shared();
        let mut registry = shared.registry();
        let Some(process) = registry.resolve(&ProcessRef::Pid(self.pid.clone())) else {
            return Err(RegisterError::NameTaken(name.to_owned()));
        };
        if registry.register(Atom::new(name), process) {
            Ok(())
        } else {
            Err(RegisterError::NameTaken(name.to_owned()))
        }
    }

    /// Deactivates the alias (`unalias/1`): later messages to it are dropped.
    pub fn unalias(&self) {
        self.node.shared().registry().remove_alias(&self.alias);
    }
}

impl Node {
    /// Gives the actor `actor` a [`PriorityInbox`] of messages converted to `M`: a pid for
    /// ordinary messages and an alias for priority ones. A message that does not convert to
    /// `M` is logged and dropped. The actor should be new: one already exposed to Erlang
    /// keeps the delivery it had.
    pub fn priority_inbox<M>(&self, actor: &ActorRef<Wake>) -> PriorityInbox<M>
    where
        M: FromTerm + Send + 'static,
    {
        let lanes = Arc::new(Mutex::new(Lanes {
            priority: VecDeque::new(),
            ordinary: VecDeque::new(),
        }));
        let push = {
            let lanes = lanes.clone();
            let actor = actor.clone();
            move |term: &Term, priority: bool| match M::from_term(term) {
                Ok(m) => {
                    {
                        let mut lanes = crate::lock(&lanes);
                        if priority {
                            lanes.priority.push_back(m);
                        } else {
                            lanes.ordinary.push_back(m);
                        }
                    }
                    if actor.cast(Wake).is_err() {
                        tracing::debug!("priority inbox's actor stopped; message dropped");
                    }
                    true
                }
                Err(e) => {
                    tracing::warn!(error = %e, %term, "message does not convert to the inbox's type; dropped");
                    false
                }
            }
        };
        let push = Arc::new(push);
        let shared = self.shared();
        let alias = shared.make_ref();
        let mut registry = shared.registry();
        let ordinary = push.clone();
        let local = registry.expose(
            &actor.get_cell(),
            || {
                (
                    Box::new(move |term: &Term| ordinary(term, false)),
                    Box::new(|_: &Term, _| false),
                )
            },
            |_| false,
        );
        let deliver: AliasFn = Arc::new(move |term: Term, priority| {
            push(&term, priority);
        });
        registry.add_alias(alias.clone(), actor.get_cell(), deliver);
        PriorityInbox {
            lanes,
            node: self.clone(),
            pid: local.pid.clone(),
            alias,
        }
    }
}
