//! Who this node is: its name, creation, cookie, the flags it offers, its configuration, the
//! pids of its built-in processes, and the counters its references and ids come from.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::NodeConfig;
use crate::dist::handshake::HandshakeConfig;
use crate::dist::DistFlags;
use crate::etf::{Atom, Pid, Reference};

/// This node's identity and configuration, fixed for its life.
pub(crate) struct Identity {
    pub name: Atom,
    pub config: NodeConfig,
    pub cookie: Vec<u8>,
    pub flags: DistFlags,
    /// The creation EPMD gave this incarnation.
    pub creation: u32,
    /// Our `net_kernel`.
    pub net_kernel_pid: Pid,
    /// The pid Rust code sends from and receives call replies at.
    pub router_pid: Pid,
    /// Our `rex`.
    pub rex_pid: Pid,
    next_ref: AtomicU64,
    next_id: AtomicU64,
}

/// The well-known pids, in the order [`Identity::new`] takes them.
pub(crate) struct WellKnown {
    pub net_kernel: Pid,
    pub router: Pid,
    pub rex: Pid,
}

impl Identity {
    pub fn new(
        name: Atom,
        config: NodeConfig,
        cookie: Vec<u8>,
        flags: DistFlags,
        creation: u32,
        pids: WellKnown,
    ) -> Identity {
        Identity {
            name,
            config,
            cookie,
            flags,
            creation,
            net_kernel_pid: pids.net_kernel,
            router_pid: pids.router,
            rex_pid: pids.rex,
            next_ref: AtomicU64::new(1),
            next_id: AtomicU64::new(1),
        }
    }

    /// What the handshake needs to know of us.
    pub fn handshake_config(&self) -> HandshakeConfig {
        HandshakeConfig {
            node_name: self.name.as_str().to_owned(),
            cookie: self.cookie.clone(),
            flags: self.flags,
            required: DistFlags::REQUIRED,
            creation: self.creation,
        }
    }

    /// A new reference of this node.
    pub fn make_ref(&self) -> Reference {
        let n = self.next_ref.fetch_add(1, Ordering::Relaxed);
        let words = [
            n as u32 & 0x3ffff,
            (n >> 18) as u32,
            (n >> 50) as u32 ^ 0x5eed,
        ];
        Reference::new(self.name.clone(), self.creation, &words)
            .unwrap_or_else(|| unreachable!("three words make a reference"))
    }

    /// A number unique on this node (unlink ids, proxy ids).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether `pid` is a process of this node (of any incarnation).
    pub fn is_local(&self, pid: &Pid) -> bool {
        pid.node == self.name
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("creation", &self.creation)
            .finish_non_exhaustive()
    }
}
