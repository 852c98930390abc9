//! Links, monitors and exit signals between Rust actors and remote processes, with Erlang's
//! semantics mapped onto ractor.
//!
//! | Erlang | here |
//! |---|---|
//! | a remote `monitor(process, RustPid or {Name, Node})` | the node watches the actor (ractor's monitors); when it stops, the monitor gets `{'DOWN', Ref, process, Obj, Reason}` |
//! | a remote `link(RustPid)` | the same watch; when the actor stops, the linked process gets an exit signal with the reason |
//! | an exit signal to a Rust actor (linked process died, or `exit(RustPid, Reason)`) | `normal` is ignored; `kill` kills the actor; any other reason stops it with that reason as text; an actor that traps exits ([`crate::Node::trap_exits`]) gets `{'EXIT', From, Reason}` as a message instead (except for `exit(Pid, kill)`) |
//! | a Rust actor monitoring a remote process ([`crate::Node::monitor_for`], or [`crate::Node::monitor`] for a future) | a `MONITOR_P` from the node's router pid; the actor gets `down(reason)` in its mailbox (the [`RemoteMonitor`] resolves with it): the exit reason, `noproc` at once when there is no such process, `noconnection` when the node goes |
//!
//! Reasons: an actor that stops without a reason (or with `"normal"`) exits `normal`;
//! `"shutdown"` and `"killed"` map to those atoms; any other stop reason to
//! `{shutdown, <<Reason>>}`; a panic or handler error to `{panic, <<Text>>}`.

use crate::hash::FastMap;

use ractor::{ActorCell, ActorId};
use tokio::sync::oneshot;

use crate::dist::control::{Control, ProcessRef};
use crate::etf::{Atom, Pid, Reference, Term};

/// What watches one local actor from other nodes.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    /// The actor's pid as Erlang knows it.
    pub pid: Option<Pid>,
    /// Remote monitors: (reference, monitoring pid, the target as the monitor named it).
    pub monitors: Vec<(Reference, Pid, ProcessRef)>,
    /// Remote processes linked to it.
    pub links: Vec<Pid>,
}

/// Watches of local actors, and monitors this node holds on remote processes.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    pub watched: FastMap<ActorId, Watched>,
    pub trapping: std::collections::HashSet<ActorId>,
    /// Actors stopped by an exit signal, with the Erlang reason they exit with.
    pub exit_reasons: FastMap<ActorId, Term>,
    /// Monitors this node holds on remote processes for Rust code or proxies:
    /// reference -> (node, who learns of the `DOWN`).
    pub outgoing: FastMap<Reference, (Atom, DownTo)>,
    /// Which actor each remote monitor in `watched` is on, so that a `DEMONITOR_P` (one per
    /// `gen_server:call` from Erlang) finds it without looking through every watched actor.
    monitor_owner: FastMap<Reference, ActorId>,
}

/// Who learns that a remote process this node monitors went down.
#[derive(Debug)]
pub(crate) enum DownTo {
    /// Rust code waiting on the receiver, which gets the exit reason.
    Waiter(oneshot::Sender<Term>),
    /// A proxy ([`crate::proxy`]), which stops with the exit reason as its stop reason.
    Proxy(ActorCell),
}

impl DownTo {
    /// Tells of the exit with `reason`.
    pub fn fire(self, reason: Term) {
        match self {
            DownTo::Waiter(tx) => {
                let _ = tx.send(reason);
            }
            DownTo::Proxy(cell) => cell.stop(Some(stop_reason_for_exit(&reason))),
        }
    }
}

impl Signals {
    /// Records a remote monitor on actor `id`.
    pub fn add_monitor(&mut self, id: ActorId, reference: Reference, from: Pid, to: ProcessRef) {
        self.monitor_owner.insert(reference.clone(), id);
        self.watched
            .entry(id)
            .or_default()
            .monitors
            .push((reference, from, to));
    }

    /// Records a link from remote process `from` to actor `id`.
    pub fn add_link(&mut self, id: ActorId, from: Pid) {
        self.watched.entry(id).or_default().links.push(from);
    }

    /// Removes the remote monitor `reference`; false when no actor has it.
    pub fn remove_monitor(&mut self, reference: &Reference) -> bool {
        let Some(id) = self.monitor_owner.remove(reference) else {
            return false;
        };
        if let Some(w) = self.watched.get_mut(&id) {
            w.monitors.retain(|(r, _, _)| r != reference);
        }
        true
    }

    /// Takes what watches actor `id` (it stopped).
    pub fn forget_watched(&mut self, id: &ActorId) -> Option<Watched> {
        let w = self.watched.remove(id)?;
        for (reference, _, _) in &w.monitors {
            self.monitor_owner.remove(reference);
        }
        Some(w)
    }

    /// Drops everything that involves processes of `node` (its connection went down), and
    /// answers Rust monitors of its processes with `noconnection`. Returns the links that
    /// broke, `(local pid, remote pid)` in order: each local end gets a `noconnection` exit
    /// signal, as in Erlang.
    pub fn node_down(&mut self, node: &Atom) -> Vec<(Pid, Pid)> {
        let Signals {
            watched,
            monitor_owner,
            ..
        } = self;
        let mut broken = Vec::new();
        for w in watched.values_mut() {
            w.monitors.retain(|(reference, p, _)| {
                let keep = p.node != *node;
                if !keep {
                    monitor_owner.remove(reference);
                }
                keep
            });
            w.links.retain(|p| {
                let keep = p.node != *node;
                if let (false, Some(local)) = (keep, &w.pid) {
                    broken.push((local.clone(), p.clone()));
                }
                keep
            });
        }
        // The map's order is the actors' ids': signal in an order that does not depend on it.
        broken.sort();
        let gone: Vec<Reference> = self
            .outgoing
            .iter()
            .filter(|(_, (n, _))| n == node)
            .map(|(r, _)| r.clone())
            .collect();
        for r in gone {
            if let Some((_, to)) = self.outgoing.remove(&r) {
                to.fire(Term::atom("noconnection"));
            }
        }
        broken
    }
}

/// The Erlang exit reason for a ractor stop reason.
pub fn exit_reason_for_stop(reason: Option<&str>) -> Term {
    match reason {
        None | Some("normal") => Term::atom("normal"),
        Some("shutdown") => Term::atom("shutdown"),
        Some("killed") => Term::atom("killed"),
        Some(other) => Term::tuple(vec![Term::atom("shutdown"), Term::binary(other)]),
    }
}

/// The ractor stop reason for an Erlang exit reason: an atom's name, any other term's text.
pub(crate) fn stop_reason_for_exit(reason: &Term) -> String {
    match reason {
        Term::Atom(a) => a.as_str().to_owned(),
        other => other.to_string(),
    }
}

/// The Erlang exit reason for an actor that panicked or whose handler failed.
pub fn exit_reason_for_failure(text: &str) -> Term {
    Term::tuple(vec![Term::atom("panic"), Term::binary(text)])
}

/// The signals to send when a watched actor exits with `reason`.
pub(crate) fn exit_signals(w: Watched, reason: &Term) -> Vec<(Atom, Control)> {
    let mut out = Vec::new();
    for (reference, watcher, target) in w.monitors {
        out.push((
            watcher.node.clone(),
            Control::MonitorPExit {
                from: target,
                to: watcher,
                reference,
                reason: reason.clone(),
            },
        ));
    }
    if let Some(pid) = w.pid {
        for linked in w.links {
            out.push((
                linked.node.clone(),
                Control::Exit {
                    from: pid.clone(),
                    to: linked,
                    reason: reason.clone(),
                },
            ));
        }
    }
    out
}

/// A monitor on a remote process. Await [`RemoteMonitor::down`] for the exit reason.
#[derive(Debug)]
pub struct RemoteMonitor {
    pub(crate) reference: Reference,
    pub(crate) rx: oneshot::Receiver<Term>,
}

impl RemoteMonitor {
    /// The monitor's reference.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Waits for the process to exit and returns the reason (`noproc` when it did not exist,
    /// `noconnection` when its node went down).
    pub async fn down(self) -> Term {
        self.rx.await.unwrap_or_else(|_| Term::atom("noconnection"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(node: &str, id: u32) -> Pid {
        Pid {
            node: Atom::new(node),
            id,
            serial: 0,
            creation: 1,
        }
    }

    fn reference(node: &str, n: u32) -> Reference {
        Reference::new(Atom::new(node), 1, &[n, 0, 0]).unwrap()
    }

    /// Demonitoring finds the monitor's actor by its reference, and the index follows the
    /// monitors when an actor stops or a node goes.
    #[test]
    fn monitors_are_indexed_by_reference() {
        let mut s = Signals::default();
        let (a, b) = (ActorId::Local(1), ActorId::Local(2));
        let target = ProcessRef::Pid(pid("rust@h", 1));
        s.add_monitor(a, reference("erl@h", 1), pid("erl@h", 10), target.clone());
        s.add_monitor(a, reference("erl@h", 2), pid("erl@h", 11), target.clone());
        s.add_monitor(
            b,
            reference("other@h", 3),
            pid("other@h", 12),
            target.clone(),
        );

        assert!(s.remove_monitor(&reference("erl@h", 1)));
        assert!(!s.remove_monitor(&reference("erl@h", 1)), "removed once");
        assert_eq!(s.watched[&a].monitors.len(), 1);

        // Node `other` goes: its monitor and its index entry go with it.
        s.node_down(&Atom::new("other"));
        s.node_down(&Atom::new("other@h"));
        assert!(s.watched[&b].monitors.is_empty());
        assert!(!s.remove_monitor(&reference("other@h", 3)));

        // Actor `a` stops: what watched it is handed over, and nothing is left indexed.
        let w = s.forget_watched(&a).expect("watched");
        assert_eq!(w.monitors.len(), 1);
        assert!(s.monitor_owner.is_empty());
    }

    /// A node going breaks the links to its processes, and says which, in order.
    #[test]
    fn node_down_returns_the_broken_links() {
        let mut s = Signals::default();
        let (a, b) = (ActorId::Local(1), ActorId::Local(2));
        for (id, local) in [(a, 5), (b, 4)] {
            s.watched.entry(id).or_default().pid = Some(pid("rust@h", local));
            s.add_link(id, pid("other@h", 20));
            s.add_link(id, pid("erl@h", 21));
        }
        let broken = s.node_down(&Atom::new("other@h"));
        assert_eq!(
            broken,
            vec![
                (pid("rust@h", 4), pid("other@h", 20)),
                (pid("rust@h", 5), pid("other@h", 20)),
            ]
        );
        assert_eq!(s.watched[&a].links, vec![pid("erl@h", 21)]);
        assert!(s.node_down(&Atom::new("other@h")).is_empty());
    }
}
