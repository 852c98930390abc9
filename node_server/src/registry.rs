//! The node's local processes as Erlang sees them: pids and registered names for ractor actors
//! and for the node's built-in services.
//!
//! ractor's own registry cannot hold remote actors and knows nothing of Erlang pids, so the
//! node keeps this table: an exposed actor gets a pid `<node.N.0>` stamped with the node's
//! creation, optionally a registered name, and type-erased checks that tell whether a term
//! would decode into the actor's message type (so a mismatch is caught, logged and sent to
//! the fallback before it could be dropped).

use crate::hash::FastMap;
use std::sync::Arc;

use ractor::{ActorCell, ActorId, ActorStatus};

use crate::dist::control::ProcessRef;
use crate::etf::{Atom, Pid, Term};

/// A process of this node that remote nodes can address.
#[derive(Clone, Debug)]
pub(crate) enum LocalProcess {
    /// The built-in `net_kernel`.
    NetKernel,
    /// The pid that sends for Rust code and receives replies to calls it makes.
    Router,
    /// `rex`, the rpc server.
    Rex,
    /// A ractor actor.
    Actor(Arc<LocalActor>),
    /// A built-in process run by one of the node's actors (a `pg` scope,
    /// `global_name_server`): messages to it are handed over as terms.
    Service(Arc<ServiceProcess>),
}

/// Hands a message to a service: the sending node and the term.
pub(crate) type DeliverFn = Box<dyn Fn(&Atom, Term) + Send + Sync>;

/// A built-in process of the node that is not a user actor.
pub(crate) struct ServiceProcess {
    pub pid: Pid,
    pub deliver: DeliverFn,
}

impl std::fmt::Debug for ServiceProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceProcess")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// Converts a term into the actor's message type and casts it; false when it does not
/// convert. In-process delivery: the message is never serialized again.
pub(crate) type CastFn = Box<dyn Fn(&Term) -> bool + Send + Sync>;

/// Converts a `gen_server` call request into the actor's message type, with a reply port
/// that hands the reply to the given function, and casts it; false when no `#[rpc]` variant
/// takes the request.
pub(crate) type CallFn = Box<dyn Fn(&Term, crate::message::ReplyTo) -> bool + Send + Sync>;

/// An actor exposed to remote nodes.
pub(crate) struct LocalActor {
    pub cell: ActorCell,
    pub pid: Pid,
    pub cast: CastFn,
    pub call: CallFn,
    pub accepts_call: fn(&Term) -> bool,
    /// Messages and calls the router handed it (its "reductions" for Erlang's tools).
    pub delivered: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for LocalActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalActor")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl LocalActor {
    fn alive(&self) -> bool {
        self.cell.get_status() < ActorStatus::Draining
    }
}

/// Hands a message sent to an alias to its process: the term and whether it came as a
/// priority message.
pub(crate) type AliasFn = Arc<dyn Fn(Term, bool) + Send + Sync>;

/// An alias of a local actor (see [`crate::priority`]).
pub(crate) struct AliasEntry {
    pub cell: ActorCell,
    pub deliver: AliasFn,
}

impl std::fmt::Debug for AliasEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AliasEntry")
            .field("actor", &self.cell.get_id())
            .finish_non_exhaustive()
    }
}

/// Pids and names of local processes.
#[derive(Debug)]
pub(crate) struct Registry {
    node: Atom,
    creation: u32,
    names: FastMap<Atom, LocalProcess>,
    aliases: FastMap<crate::etf::Reference, AliasEntry>,
    by_pid: FastMap<u32, LocalProcess>,
    by_actor: FastMap<ActorId, Arc<LocalActor>>,
    next_id: u32,
}

/// The pid numbers of the built-in processes.
pub(crate) const NET_KERNEL_ID: u32 = 1;
pub(crate) const ROUTER_ID: u32 = 2;
pub(crate) const REX_ID: u32 = 3;

impl Registry {
    pub fn new(node: Atom, creation: u32) -> Registry {
        let mut r = Registry {
            node,
            creation,
            names: FastMap::default(),
            aliases: FastMap::default(),
            by_pid: FastMap::default(),
            by_actor: FastMap::default(),
            next_id: 100,
        };
        r.names
            .insert(Atom::new("net_kernel"), LocalProcess::NetKernel);
        r.by_pid.insert(NET_KERNEL_ID, LocalProcess::NetKernel);
        r.by_pid.insert(ROUTER_ID, LocalProcess::Router);
        r.names.insert(Atom::new("rex"), LocalProcess::Rex);
        r.by_pid.insert(REX_ID, LocalProcess::Rex);
        r
    }

    pub fn pid(&self, id: u32) -> Pid {
        Pid {
            node: self.node.clone(),
            id,
            serial: 0,
            creation: self.creation,
        }
    }

    /// A pid for a short-lived task (an rpc call) that nothing can send to.
    pub fn fresh_pid(&mut self) -> Pid {
        self.next_id = if self.next_id >= (1 << 28) - 1 {
            100
        } else {
            self.next_id + 1
        };
        self.pid(self.next_id)
    }

    /// Adds a built-in service with a fresh pid, registered under `name` when given
    /// (replacing any previous holder of the name).
    pub fn add_service(&mut self, name: Option<Atom>, deliver: DeliverFn) -> Pid {
        let pid = self.fresh_pid();
        let service = LocalProcess::Service(Arc::new(ServiceProcess {
            pid: pid.clone(),
            deliver,
        }));
        self.by_pid.insert(pid.id, service.clone());
        if let Some(name) = name {
            self.names.insert(name, service);
        }
        pid
    }

    /// Removes the service `pid` (and its name, if it has one).
    pub fn remove_service(&mut self, pid: &Pid) {
        if let Some(LocalProcess::Service(gone)) = self.by_pid.remove(&pid.id) {
            self.names
                .retain(|_, p| !matches!(p, LocalProcess::Service(s) if Arc::ptr_eq(s, &gone)));
        }
    }

    /// The entry for an actor, made on first use.
    pub fn expose(
        &mut self,
        cell: &ActorCell,
        typed: impl FnOnce() -> (CastFn, CallFn),
        accepts_call: fn(&Term) -> bool,
    ) -> Arc<LocalActor> {
        if let Some(a) = self.by_actor.get(&cell.get_id()) {
            if a.alive() {
                return a.clone();
            }
        }
        // Pid numbers stay below 2^28, as OTP's do on the wire today.
        self.next_id = if self.next_id >= (1 << 28) - 1 {
            100
        } else {
            self.next_id + 1
        };
        let (cast, call) = typed();
        let actor = Arc::new(LocalActor {
            cell: cell.clone(),
            pid: self.pid(self.next_id),
            cast,
            call,
            accepts_call,
            delivered: std::sync::atomic::AtomicU64::new(0),
        });
        self.by_pid
            .insert(self.next_id, LocalProcess::Actor(actor.clone()));
        self.by_actor.insert(cell.get_id(), actor.clone());
        actor
    }

    /// Makes `alias` an alias of the actor `cell`: messages to it go to `deliver` while the
    /// actor lives.
    pub fn add_alias(&mut self, alias: crate::etf::Reference, cell: ActorCell, deliver: AliasFn) {
        self.aliases
            .retain(|_, e| e.cell.get_status() < ActorStatus::Draining);
        self.aliases.insert(alias, AliasEntry { cell, deliver });
    }

    /// Where messages to `alias` go, if it is an active alias of a live actor.
    pub fn alias(&self, alias: &crate::etf::Reference) -> Option<AliasFn> {
        self.aliases
            .get(alias)
            .filter(|e| e.cell.get_status() < ActorStatus::Draining)
            .map(|e| e.deliver.clone())
    }

    /// Deactivates `alias`.
    pub fn remove_alias(&mut self, alias: &crate::etf::Reference) {
        self.aliases.remove(alias);
    }

    /// Registers `name`; false when a live process already has it.
    /// Every local process with its pid and registered name (if any): the node's services
    /// and the live exposed actors, by pid.
    pub fn processes(&self) -> Vec<(Pid, Option<Atom>, LocalProcess)> {
        let mut names: FastMap<u32, Atom> = FastMap::default();
        for (name, p) in &self.names {
            if let Some(id) = self.id_of(p) {
                names.insert(id, name.clone());
            }
        }
        let mut out: Vec<(Pid, Option<Atom>, LocalProcess)> = self
            .by_pid
            .iter()
            .filter(|(_, p)| !matches!(p, LocalProcess::Actor(a) if !a.alive()))
            .map(|(id, p)| (self.pid(*id), names.get(id).cloned(), p.clone()))
            .collect();
        out.sort_by_key(|(pid, ..)| pid.id);
        out
    }

    /// The pid number of a process in `by_pid`.
    fn id_of(&self, p: &LocalProcess) -> Option<u32> {
        Some(match p {
            LocalProcess::Actor(a) => a.pid.id,
            LocalProcess::Service(s) => s.pid.id,
            LocalProcess::NetKernel => NET_KERNEL_ID,
            LocalProcess::Router => ROUTER_ID,
            LocalProcess::Rex => REX_ID,
        })
    }

    pub fn register(&mut self, name: Atom, process: LocalProcess) -> bool {
        if let Some(existing) = self.names.get(&name) {
            let live = match existing {
                LocalProcess::Actor(a) => a.alive(),
                _ => true,
            };
            if live {
                return false;
            }
        }
        self.names.insert(name, process);
        true
    }

    pub fn unregister(&mut self, name: &Atom) -> bool {
        self.names.remove(name).is_some()
    }

    /// The registered names of live processes.
    pub fn registered(&self) -> Vec<Atom> {
        self.names
            .iter()
            .filter(|(_, p)| match p {
                LocalProcess::Actor(a) => a.alive(),
                _ => true,
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The pid of the process registered as `name`, if it is alive.
    pub fn whereis(&self, name: &Atom) -> Option<Pid> {
        match self.names.get(name)? {
            LocalProcess::NetKernel => Some(self.pid(NET_KERNEL_ID)),
            LocalProcess::Router => Some(self.pid(ROUTER_ID)),
            LocalProcess::Rex => Some(self.pid(REX_ID)),
            LocalProcess::Actor(a) => a.alive().then(|| a.pid.clone()),
            LocalProcess::Service(s) => Some(s.pid.clone()),
        }
    }

    /// How many processes remote nodes can address: live exposed actors and the built-in
    /// services (`net_kernel`, `rex`, the router).
    pub fn process_count(&self) -> usize {
        let actors = self.by_actor.values().filter(|a| a.alive()).count();
        let builtin = self
            .by_pid
            .values()
            .filter(|p| !matches!(p, LocalProcess::Actor(_)))
            .count();
        actors + builtin
    }

    /// The live local process `target` names, if any. Entries of stopped actors are dropped.
    pub fn resolve(&mut self, target: &ProcessRef) -> Option<LocalProcess> {
        let found = match target {
            ProcessRef::Name(name) => self.names.get(name).cloned(),
            ProcessRef::Pid(pid) => {
                if pid.node != self.node || pid.creation != self.creation {
                    return None;
                }
                self.by_pid.get(&pid.id).cloned()
            }
        };
        match found {
            Some(LocalProcess::Actor(a)) if !a.alive() => {
                self.forget(&a);
                None
            }
            other => other,
        }
    }

    fn forget(&mut self, actor: &Arc<LocalActor>) {
        self.by_pid.remove(&actor.pid.id);
        self.by_actor.remove(&actor.cell.get_id());
        self.names
            .retain(|_, p| !matches!(p, LocalProcess::Actor(a) if Arc::ptr_eq(a, actor)));
    }
}
