//! The proxies of one node: the proxy actor ([`crate::proxy`]) of each remote target, made on
//! first use and forgotten when it stops (its process exited, or code stopped it) or its
//! node's session goes.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use ractor::{ActorCell, ActorId};

use crate::etf::Atom;
use crate::hash::FastMap;
use crate::lock;
use crate::remote::RemoteTarget;

/// The proxies of one node, by target.
#[derive(Default)]
pub(crate) struct Proxies {
    cells: Mutex<FastMap<RemoteTarget, ActorCell>>,
    /// Numbers the proxies' ractor ids.
    pub next: AtomicU64,
}

impl Proxies {
    /// The live proxy for `target`, if one exists.
    pub fn cached(&self, target: &RemoteTarget) -> Option<ActorCell> {
        let mut cells = lock(&self.cells);
        let cell = cells.get(target)?;
        // A proxy killed with its session skips `post_stop` (ractor), so it may linger.
        if cell.get_status() < ractor::ActorStatus::Draining {
            return Some(cell.clone());
        }
        cells.remove(target);
        None
    }

    /// Forgets the proxy `id` of `target` (not a newer one).
    pub fn forget(&self, target: &RemoteTarget, id: ActorId) {
        let mut cells = lock(&self.cells);
        if cells.get(target).is_some_and(|c| c.get_id() == id) {
            cells.remove(target);
        }
    }

    /// Forgets every proxy of `node` (its session stopped them without their `post_stop`).
    pub fn forget_node(&self, node: &Atom) {
        lock(&self.cells).retain(|t, _| t.node() != node);
    }

    /// Keeps `cell` as the proxy of `target`, or gives back the one another task made first.
    pub fn keep(&self, target: RemoteTarget, cell: ActorCell) -> Result<ActorCell, ActorCell> {
        let mut cells = lock(&self.cells);
        if let Some(existing) = cells.get(&target) {
            return Err(existing.clone());
        }
        cells.insert(target, cell.clone());
        Ok(cell)
    }
}
