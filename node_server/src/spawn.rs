//! Spawning on other nodes: [`crate::Node::spawn_on`] sends a `SPAWN_REQUEST` (what
//! `erlang:spawn_request/5` sends) to the node [`crate::placement`] picks, and waits for its
//! `SPAWN_REPLY`. On a node of ours the module is a spawnable kind ([`crate::kinds`]); on an
//! Erlang node it is an MFA (`Module:start(Args...)`, or the function given in
//! [`crate::placement::SpawnOpts`]).
//!
//! The requester is the node's router pid, or, with [`crate::placement::SpawnOpts::link`], the
//! local actor to link: the link holds from the first moment, as `spawn_link` gives it (the
//! spawned process and that actor take each other down, unless trapping exits). With
//! [`crate::placement::SpawnOpts::monitor`], the result carries a
//! [`crate::signals::RemoteMonitor`] that resolves with the new process's exit reason.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::core::Core;
use crate::dist::control::Control;
use crate::etf::{Atom, Pid, Reference, Term};
use crate::hash::FastMap;
use crate::signals::DownTo;

/// What a `SPAWN_REPLY` said.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    /// The request's reference (also the monitor's, when one was asked for).
    pub req_id: Reference,
    pub flags: u32,
    pub result: Term,
}

/// Spawn requests this node made, waiting for their replies (a service slot of the core).
#[derive(Default)]
pub(crate) struct Spawns {
    pending: Mutex<FastMap<Reference, (Pid, oneshot::Sender<Reply>)>>,
}

impl Spawns {
    /// The spawns of `core`, made on first use.
    pub fn of(core: &Core) -> Arc<Spawns> {
        core.services.get_or_insert(Spawns::default)
    }

    /// A spawn request `req_id` from `from` was sent; the receiver gets its reply.
    pub fn expect(&self, req_id: Reference, from: Pid) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        crate::lock(&self.pending).insert(req_id, (from, tx));
        rx
    }

    /// Forgets a request whose caller gave up.
    pub fn forget(&self, req_id: &Reference) {
        crate::lock(&self.pending).remove(req_id);
    }

    /// A `SPAWN_REPLY` arrived for `to`.
    pub fn replied(&self, to: &Pid, req_id: &Reference, flags: u32, result: Term) {
        let mut pending = crate::lock(&self.pending);
        match pending.get(req_id) {
            Some((from, _)) if from == to => {
                if let Some((_, tx)) = pending.remove(req_id) {
                    let _ = tx.send(Reply {
                        req_id: req_id.clone(),
                        flags,
                        result,
                    });
                }
            }
            _ => tracing::debug!(?to, ?req_id, "spawn reply for no request of ours"),
        }
    }
}

/// Sends a spawn request for `module:function(args)` to `node` from `from` with `opts`
/// (`link`, `monitor`) and waits up to `timeout` for the reply.
///
/// With `down`, the request also asks for a monitor held by the router (the request's
/// reference is the monitor's, as in `erlang:spawn_request/5`), set up before the request
/// goes so that a spawn that fails at once (its `DOWN` right behind the reply) is seen:
/// `down` gets the exit reason (see [`crate::core::Core::router_down`]); the reply carries
/// the reference.
pub(crate) async fn request(
    core: &Arc<Core>,
    node: &Atom,
    from: &Pid,
    (module, function, args): (Atom, Atom, Vec<Term>),
    mut opts: Vec<Term>,
    timeout: Duration,
    down: Option<oneshot::Sender<Term>>,
) -> Result<Reply, SpawnFailure> {
    let session = core.session(node).ok_or(SpawnFailure::NotConnected)?;
    let req_id = core.make_ref();
    let spawns = Spawns::of(core);
    let rx = spawns.expect(req_id.clone(), from.clone());
    let monitored = down.is_some();
    if let Some(tx) = down {
        core.signals()
            .outgoing
            .insert(req_id.clone(), (node.clone(), DownTo::Waiter(tx)));
        opts.push(Term::atom("monitor"));
    }
    let forget = |req_id: &Reference| {
        spawns.forget(req_id);
        if monitored {
            core.signals().outgoing.remove(req_id);
        }
    };
    let arity = u32::try_from(args.len()).unwrap_or(u32::MAX);
    let sent = session.send(
        Control::SpawnRequest {
            req_id: req_id.clone(),
            from: from.clone(),
            group_leader: core.id.router_pid.clone(),
            module,
            function,
            arity,
            opts: Term::list(opts),
        },
        Some(Term::list(args)),
    );
    if !sent {
        forget(&req_id);
        return Err(SpawnFailure::NotConnected);
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(reply)) => {
            // A refusal made no process and no monitor.
            if monitored && !matches!(reply.result, Term::Pid(_)) {
                core.signals().outgoing.remove(&req_id);
            }
            Ok(reply)
        }
        Ok(Err(_)) => {
            forget(&req_id);
            Err(SpawnFailure::NotConnected)
        }
        Err(_) => {
            forget(&req_id);
            Err(SpawnFailure::Timeout)
        }
    }
}

/// Why a spawn request got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SpawnFailure {
    NotConnected,
    Timeout,
}
