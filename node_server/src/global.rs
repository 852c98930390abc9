//! Global names shared with Erlang: the node's `global_name_server`, speaking OTP 25's `global`
//! protocol (version 8) with every node it has a visible connection to.
//!
//! On a visible connection both name servers send `init_connect` with a tag; the lockers agree
//! on a lock `{global, [LockerA, LockerB]}` (`set_lock` calls, then `lock_set` casts carrying
//! the receiver's tag), exchange their name tables (`exchange`), resolve clashes and send each
//! other the resulting operations (`resolved`). After that the nodes are *known* to each other:
//! `global:sync()` on the Erlang side returns, and registrations on either side reach the other.
//! Nodes learned through a peer (its known list, `new_nodes`) are connected to and told
//! `in_sync`, as OTP's `global` does.
//!
//! Our locker waits for the peer's first: an Erlang node's locker starts within 200 ms to 3 s;
//! when none has come after 300 ms, ours starts (so two nodes of ours sync too).
//!
//! Registration ([`Global::register`], [`crate::Node::register_global`]) follows `global:register_name/2`: lock
//! `{global, Requester}` on the highest-named node, then on every known node, call
//! `{register, Name, Pid, Method}` on each, release the locks. Every node monitors the
//! registered processes itself, so a name goes everywhere when its process exits.
//!
//! Name clashes when two partitions meet resolve as in OTP: the node with the smaller name
//! decides with the registering method; the default (`global:random_exit_name/3`) keeps the
//! process on the node with the smaller name and kills the other. Names are any terms; the
//! Rust API takes atoms' text.
//!
//! As OTP 25 (`prevent_overlapping_partitions`, on by default there), a node that loses a
//! connection tells the others in sync with it (`lost_connection`), which drop the lost node
//! too and ask it to disconnect (`remove_connection`); we send, relay and honour these.
//!
//! Not done: locks are not released when their holder process dies (only when its node goes),
//! and `register_ext` names (C nodes) are stored as plain names.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::core::Core;
use crate::dist::control::{Control, ProcessRef};
use crate::etf::{Atom, Fun, Pid, Term};
use crate::events::NodeEvent;
// A fixed hasher: what is sent to peers in map order must not differ between runs.
use crate::hash::FastMap as HashMap;
use crate::registry::LocalProcess;
use crate::remote::RemoteTarget;

/// The `global` protocol version OTP 25 speaks.
const VSN: i64 = 8;
/// How long our locker waits for the peer's before starting itself.
const LOCKER_DELAY: Duration = Duration::from_millis(300);
/// Timeout of one call to another node's name server.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages of the global name server.
#[derive(Debug)]
pub(crate) enum GlobalMsg {
    /// A message to `global_name_server` from another node.
    Remote(Atom, Term),
    NodeUp(Atom, bool),
    NodeDown(Atom),
    /// Our locker's turn for a connection attempt.
    LockerTimer(Atom, i64),
    /// The answer to our `set_lock` on a peer.
    /// (The lock id asked for rides along, to release it when no longer wanted.)
    LockerGranted(Atom, i64, bool, Term),
    /// A registered remote process exited.
    NameDown(Term, Pid),
    /// Sets (`true`) or releases a lock on this node for `holder`.
    LocalLock(Term, Pid, bool, RpcReplyPort<bool>),
    /// Inserts (`Some`) or deletes a name here.
    LocalName(Term, Option<(Pid, Term)>),
    Whereis(Term, RpcReplyPort<Option<Pid>>),
    Names(RpcReplyPort<Vec<(Term, Pid)>>),
    Known(RpcReplyPort<Vec<Atom>>),
}

impl ractor::Message for GlobalMsg {}

/// A connection attempt in progress.
#[derive(Debug)]
struct Conn {
    my_tag: i64,
    his_tag: Option<Term>,
    his_locker: Option<Pid>,
    /// We sent our `lock_set` (our locker started, or we answered his).
    lock_sent: bool,
    /// Our locker holds the lock on the peer too (release it when done).
    peer_locked: bool,
    exchange_sent: bool,
    our_ops: Option<Vec<Term>>,
    /// His `resolved`, when it came before our ops: (his resolved ops, his known list).
    his_resolved: Option<(Vec<Term>, Vec<Term>)>,
}

#[derive(Debug, Clone)]
struct Entry {
    pid: Pid,
    method: Term,
}

pub(crate) struct GlobalServer;

pub(crate) struct GlobalState {
    shared: Arc<Core>,
    me: ActorRef<GlobalMsg>,
    gns: Pid,
    locker: Pid,
    known: BTreeMap<Atom, i64>,
    conns: HashMap<Atom, Conn>,
    names: BTreeMap<Term, Entry>,
    /// Resource -> (requester id, holders).
    locks: HashMap<Term, (Term, Vec<Pid>)>,
    events: tokio::task::JoinHandle<()>,
    /// The last `lost_connection` report seen per (reporter, lost node): (incarnation, op id).
    lost_reports: HashMap<(Atom, Atom), (Term, Term)>,
    next_op: i64,
}

impl Drop for GlobalState {
    fn drop(&mut self) {
        self.events.abort();
    }
}

impl std::fmt::Debug for GlobalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalState")
            .field("known", &self.known)
            .finish_non_exhaustive()
    }
}

pub(crate) struct GlobalArgs {
    pub shared: Arc<Core>,
    pub gns: Pid,
    pub locker: Pid,
}

static NEXT_TAG: AtomicI64 = AtomicI64::new(-(1 << 59));

fn cast_msg(body: Term) -> Term {
    Term::tuple(vec![Term::atom("$gen_cast"), body])
}

/// The default method: `fun global:random_exit_name/3`.
pub(crate) fn default_method() -> Term {
    Term::Fun(Box::new(Fun::Export {
        module: Atom::new("global"),
        function: Atom::new("random_exit_name"),
        arity: 3,
    }))
}

/// What a resolve method does with a clash.
enum Resolve {
    ExitMax,
    NotifyMax,
    NotifyAll,
}

fn method_kind(method: &Term) -> Resolve {
    if let Term::Fun(f) = method {
        if let Fun::Export {
            module, function, ..
        } = &**f
        {
            if module.as_str() == "global" {
                match function.as_str() {
                    "random_notify_name" => return Resolve::NotifyMax,
                    "notify_all_name" => return Resolve::NotifyAll,
                    _ => {}
                }
            }
        }
    }
    // `random_exit_name` (as an export or global's local fun 0) and anything we cannot run.
    Resolve::ExitMax
}

fn node_list(list: &Term) -> Vec<Atom> {
    match list {
        Term::List(items) => items
            .iter()
            .filter_map(|t| match t {
                Term::Atom(a) => Some(a.clone()),
                other => match other.as_tuple() {
                    Some([Term::Atom(a), _]) => Some(a.clone()),
                    _ => None,
                },
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl Actor for GlobalServer {
    type Msg = GlobalMsg;
    type State = GlobalState;
    type Arguments = GlobalArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GlobalMsg>,
        args: GlobalArgs,
    ) -> Result<GlobalState, ActorProcessingErr> {
        let events =
            crate::events::forward_node_events(&args.shared.events, myself.clone(), |event| {
                Some(match event {
                    NodeEvent::Up { node, hidden, .. } => {
                        GlobalMsg::NodeUp(Atom::new(node), hidden)
                    }
                    NodeEvent::Down { node, .. } => GlobalMsg::NodeDown(Atom::new(node)),
                })
            });
        Ok(GlobalState {
            shared: args.shared,
            me: myself,
            gns: args.gns,
            locker: args.locker,
            known: BTreeMap::new(),
            conns: HashMap::default(),
            names: BTreeMap::new(),
            locks: HashMap::default(),
            events,
            lost_reports: HashMap::default(),
            next_op: -(1 << 59),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<GlobalMsg>,
        message: GlobalMsg,
        state: &mut GlobalState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GlobalMsg::Remote(from, msg) => {
                tracing::trace!(me = %state.shared.id.name, %from, %msg, "global: received");
                state.remote(from, msg).await
            }
            GlobalMsg::NodeUp(node, hidden) => {
                // The peer's init_connect may have started the attempt already.
                if !hidden && !state.known.contains_key(&node) && !state.conns.contains_key(&node) {
                    state.start_connect(&node);
                }
            }
            GlobalMsg::NodeDown(node) => {
                let known = state.known.contains_key(&node) || state.conns.contains_key(&node);
                state.node_down(&node);
                if known {
                    state.report_lost(&node);
                }
            }
            GlobalMsg::LockerTimer(node, tag) => state.locker_timer(&node, tag),
            GlobalMsg::LockerGranted(node, tag, granted, id) => {
                state.locker_granted(&node, tag, granted, id)
            }
            GlobalMsg::NameDown(name, pid) => {
                if state.names.get(&name).is_some_and(|e| e.pid == pid) {
                    state.names.remove(&name);
                }
            }
            GlobalMsg::LocalLock(id, holder, set, reply) => {
                tracing::debug!(%id, set, locks = ?state.locks, "global: local lock");
                let ok = if set {
                    state.set_lock(&id, &holder)
                } else {
                    state.del_lock(&id, &holder);
                    true
                };
                let _ = reply.send(ok);
            }
            GlobalMsg::LocalName(name, entry) => match entry {
                Some((pid, method)) => state.insert_name(name, pid, method),
                None => {
                    state.names.remove(&name);
                }
            },
            GlobalMsg::Whereis(name, reply) => {
                let _ = reply.send(state.where_(&name));
            }
            GlobalMsg::Names(reply) => {
                let names = state
                    .names
                    .keys()
                    .filter_map(|n| state.where_(n).map(|p| (n.clone(), p)))
                    .collect();
                let _ = reply.send(names);
            }
            GlobalMsg::Known(reply) => {
                let _ = reply.send(state.known.keys().cloned().collect());
            }
        }
        Ok(())
    }
}

impl GlobalState {
    fn me_node(&self) -> Term {
        Term::Atom(self.shared.id.name.clone())
    }

    /// Sends a message to `global_name_server` on `node`.
    fn send_gns(&self, node: &Atom, msg: Term) {
        if let Some(session) = self.shared.session(node) {
            session.send(
                Control::RegSend {
                    from: self.gns.clone(),
                    to_name: Atom::new("global_name_server"),
                },
                Some(msg),
            );
        }
    }

    fn send_pid(&self, to: &Pid, msg: Term) {
        if let Some(session) = self.shared.session(&to.node) {
            session.send(Control::Send { to: to.clone() }, Some(msg));
        }
    }

    fn known_list(&self) -> Term {
        Term::list(
            self.known
                .iter()
                .map(|(n, v)| Term::tuple(vec![Term::Atom(n.clone()), Term::Int(*v)]))
                .collect::<Vec<_>>(),
        )
    }

    fn known_atoms(&self) -> Term {
        Term::list(
            self.known
                .keys()
                .map(|n| Term::Atom(n.clone()))
                .collect::<Vec<_>>(),
        )
    }

    /// `[{Name, Pid, Method}]` of the live names.
    fn name_list(&self) -> Term {
        Term::list(
            self.names
                .iter()
                .filter(|(n, _)| self.where_(n).is_some())
                .map(|(n, e)| {
                    Term::tuple(vec![n.clone(), Term::Pid(e.pid.clone()), e.method.clone()])
                })
                .collect::<Vec<_>>(),
        )
    }

    /// The pid registered as `name`, if its process is alive (local) or believed alive (remote).
    fn where_(&self, name: &Term) -> Option<Pid> {
        let entry = self.names.get(name)?;
        if entry.pid.node == self.shared.id.name {
            match self.shared.resolve(&ProcessRef::Pid(entry.pid.clone())) {
                Some(LocalProcess::Actor(_)) | Some(LocalProcess::Service(_)) => {}
                _ => return None,
            }
        }
        Some(entry.pid.clone())
    }

    fn insert_name(&mut self, name: Term, pid: Pid, method: Term) {
        if pid.node != self.shared.id.name {
            self.monitor_remote(name.clone(), pid.clone());
        }
        self.names.insert(name, Entry { pid, method });
    }

    /// Monitors a remote registered process: its exit removes the name.
    fn monitor_remote(&self, name: Term, pid: Pid) {
        let Some((_, down)) = self.shared.monitor_remote(&RemoteTarget::Pid(pid.clone())) else {
            return;
        };
        let me = self.me.clone();
        tokio::spawn(async move {
            let _ = down.await;
            let _ = me.cast(GlobalMsg::NameDown(name, pid));
        });
    }

    fn set_lock(&mut self, id: &Term, holder: &Pid) -> bool {
        let Some([resource, requester]) = id.as_tuple() else {
            return false;
        };
        match self.locks.get_mut(resource) {
            Some((req, holders)) if req == requester => {
                if !holders.contains(holder) {
                    holders.push(holder.clone());
                }
                true
            }
            Some(_) => false,
            None => {
                self.locks
                    .insert(resource.clone(), (requester.clone(), vec![holder.clone()]));
                true
            }
        }
    }

    fn del_lock(&mut self, id: &Term, holder: &Pid) {
        let Some([resource, requester]) = id.as_tuple() else {
            return;
        };
        if let Some((req, holders)) = self.locks.get_mut(resource) {
            if req == requester {
                holders.retain(|h| h != holder);
                if holders.is_empty() {
                    self.locks.remove(resource);
                }
            }
        }
    }

    fn start_connect(&mut self, node: &Atom) {
        if *node == self.shared.id.name {
            return;
        }
        let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
        self.conns.insert(
            node.clone(),
            Conn {
                my_tag: tag,
                his_tag: None,
                his_locker: None,
                lock_sent: false,
                peer_locked: false,
                exchange_sent: false,
                our_ops: None,
                his_resolved: None,
            },
        );
        let init = Term::tuple(vec![
            Term::atom("init_connect"),
            Term::tuple(vec![Term::Int(VSN), Term::Int(tag)]),
            self.me_node(),
            Term::tuple(vec![
                Term::atom("locker"),
                Term::atom("no_longer_a_pid"),
                Term::NIL,
                Term::Pid(self.locker.clone()),
            ]),
        ]);
        self.send_gns(node, cast_msg(init));
        let me = self.me.clone();
        let node = node.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LOCKER_DELAY).await;
            let _ = me.cast(GlobalMsg::LockerTimer(node, tag));
        });
    }

    fn node_down(&mut self, node: &Atom) {
        if let Some(conn) = self.conns.remove(node) {
            if let Some(id) = self.lock_id(&conn) {
                let locker = self.locker.clone();
                self.del_lock(&id, &locker);
            }
        }
        self.known.remove(node);
        self.names.retain(|_, e| e.pid.node != *node);
        for (_, holders) in self.locks.values_mut() {
            holders.retain(|h| h.node != *node);
        }
        self.locks.retain(|_, (_, holders)| !holders.is_empty());
    }

    /// Tells the other nodes in sync with us that we lost `node` (OTP's
    /// `prevent_overlapping_partitions`): each of them then drops `node` too, so no node is
    /// in two partitions at once.
    fn report_lost(&mut self, node: &Atom) {
        self.next_op += 1;
        let incarnation = i64::from(self.shared.id.creation) + (1 << 59);
        let msg = Term::tuple(vec![
            Term::atom("lost_connection"),
            self.me_node(),
            Term::Int(incarnation),
            Term::Int(self.next_op),
            Term::Atom(node.clone()),
        ]);
        let others: Vec<Atom> = self
            .known
            .keys()
            .chain(self.conns.keys())
            .filter(|n| *n != node)
            .cloned()
            .collect();
        for other in others {
            self.send_gns(&other, msg.clone());
        }
    }

    fn lock_id(&self, conn: &Conn) -> Option<Term> {
        let his = conn.his_locker.clone()?;
        let mut lockers = [his, self.locker.clone()];
        lockers.sort();
        Some(Term::tuple(vec![
            Term::atom("global"),
            Term::list(lockers.into_iter().map(Term::Pid).collect::<Vec<_>>()),
        ]))
    }

    /// Our locker's turn: lock ourselves and the peer unless the peer's locker came first.
    fn locker_timer(&mut self, node: &Atom, tag: i64) {
        let Some(conn) = self.conns.get(node) else {
            return;
        };
        if conn.my_tag != tag || conn.lock_sent {
            return;
        }
        let Some(id) = self.lock_id(conn) else {
            // No init_connect from the peer yet: try again later.
            let me = self.me.clone();
            let node = node.clone();
            tokio::spawn(async move {
                tokio::time::sleep(LOCKER_DELAY).await;
                let _ = me.cast(GlobalMsg::LockerTimer(node, tag));
            });
            return;
        };
        let locker = self.locker.clone();
        if !self.set_lock(&id, &locker) {
            self.retry_locker(node, tag);
            return;
        }
        let shared = self.shared.clone();
        let me = self.me.clone();
        let node = node.clone();
        tokio::spawn(async move {
            let granted = gen_call(
                &shared,
                &node,
                Term::tuple(vec![Term::atom("set_lock"), id.clone()]),
            )
            .await
            .is_some_and(|r| r.is_atom("true"));
            let _ = me.cast(GlobalMsg::LockerGranted(node, tag, granted, id));
        });
    }

    fn retry_locker(&self, node: &Atom, tag: i64) {
        let me = self.me.clone();
        let node = node.clone();
        let wait = LOCKER_DELAY + Duration::from_millis(u64::from(random_u8()) * 4);
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = me.cast(GlobalMsg::LockerTimer(node, tag));
        });
    }

    fn locker_granted(&mut self, node: &Atom, tag: i64, granted: bool, asked: Term) {
        let current = self
            .conns
            .get(node)
            .filter(|c| c.my_tag == tag && !c.lock_sent)
            .and_then(|c| self.lock_id(c))
            .filter(|id| *id == asked);
        let Some(id) = current else {
            // The attempt is over (synced through another node, the node went), or his
            // locker came first meanwhile (his lock is the same one): a lock our locker got
            // on his node is not needed. Release it, or it blocks every later lock there
            // (registrations).
            if granted {
                self.release_peer_lock(node, asked);
            }
            return;
        };
        if !granted {
            let locker = self.locker.clone();
            self.del_lock(&id, &locker);
            self.retry_locker(node, tag);
            return;
        }
        if let Some(conn) = self.conns.get_mut(node) {
            conn.peer_locked = true;
        }
        // Our names go when his `lock_set` confirms the lock on his side.
        self.send_lock_set(node, false);
    }

    /// Tells a peer whose `lock_set` came while our lock is taken that we could not lock.
    fn refuse_lock(&self, node: &Atom) {
        let Some(his_tag) = self.conns.get(node).and_then(|c| c.his_tag.clone()) else {
            return;
        };
        let msg = cast_msg(Term::tuple(vec![
            Term::atom("lock_set"),
            Term::Pid(self.locker.clone()),
            Term::atom("false"),
            self.known_atoms(),
            his_tag,
        ]));
        self.send_gns(node, msg);
    }

    /// The peer refused our `lock_set`: release what our locker took and try again later.
    fn lock_refused(&mut self, node: &Atom) {
        let Some(conn) = self.conns.get(node) else {
            return;
        };
        if !conn.lock_sent || conn.exchange_sent {
            return;
        }
        let (tag, id, peer_locked) = (conn.my_tag, self.lock_id(conn), conn.peer_locked);
        if let Some(id) = id {
            let locker = self.locker.clone();
            self.del_lock(&id, &locker);
            if peer_locked {
                self.release_peer_lock(node, id);
            }
        }
        if let Some(conn) = self.conns.get_mut(node) {
            conn.lock_sent = false;
            conn.peer_locked = false;
        }
        self.retry_locker(node, tag);
    }

    /// Sends our `lock_set` (unless sent) and, when both sides hold the lock, our names.
    fn send_lock_set(&mut self, node: &Atom, both_locked: bool) {
        let (known, names, locker) = (self.known_atoms(), self.name_list(), self.locker.clone());
        let me_node = self.me_node();
        let Some(conn) = self.conns.get_mut(node) else {
            return;
        };
        let Some(his_tag) = conn.his_tag.clone() else {
            return;
        };
        let mut out = Vec::new();
        if !conn.lock_sent {
            conn.lock_sent = true;
            out.push(cast_msg(Term::tuple(vec![
                Term::atom("lock_set"),
                Term::Pid(locker),
                Term::atom("true"),
                known,
                his_tag.clone(),
            ])));
        }
        if both_locked && !conn.exchange_sent {
            conn.exchange_sent = true;
            out.push(cast_msg(Term::tuple(vec![
                Term::atom("exchange"),
                me_node,
                names,
                Term::NIL,
                his_tag,
            ])));
        }
        for msg in out {
            self.send_gns(node, msg);
        }
    }

    async fn remote(&mut self, from: Atom, msg: Term) {
        let Some(parts) = msg.as_tuple() else {
            return;
        };
        match parts {
            [tag, body] if tag.is_atom("$gen_cast") => self.cast(from, body.clone()).await,
            [tag, Term::Tuple(caller), request] if tag.is_atom("$gen_call") => {
                if let [Term::Pid(pid), reply_tag] = &caller[..] {
                    if let Some(reply) = self.call(pid, request) {
                        self.send_pid(pid, Term::tuple(vec![reply_tag.clone(), reply]));
                    }
                }
            }
            [tag, Term::Atom(node), his_my, his_his] if tag.is_atom("init_connect_ack") => {
                let ok = self.conns.get(node).is_some_and(|c| {
                    *his_my == Term::Int(c.my_tag) && c.his_tag.as_ref() == Some(his_his)
                });
                if !ok {
                    tracing::debug!(%node, "global: init_connect_ack with other tags");
                }
            }
            [tag, Term::Atom(node), my_tag] if tag.is_atom("cancel_connect") => {
                if self
                    .conns
                    .get(node)
                    .is_some_and(|c| Term::Int(c.my_tag) == *my_tag)
                {
                    let node = node.clone();
                    self.node_down(&node);
                    if self.shared.session(&node).is_some_and(|s| !s.hidden) {
                        self.start_connect(&node);
                    }
                }
            }
            [tag, name, Term::Tuple(from)] if tag.is_atom("whereis") => {
                if let [Term::Pid(pid), reply_tag] = &from[..] {
                    let found = self
                        .where_(name)
                        .map(Term::Pid)
                        .unwrap_or_else(|| Term::atom("undefined"));
                    self.send_pid(pid, Term::tuple(vec![reply_tag.clone(), found]));
                }
            }
            [tag, Term::Atom(a), xcre, op, Term::Atom(b)] if tag.is_atom("lost_connection") => {
                // Seen already (the same incarnation, an op id not newer)? Then nothing.
                let key = (a.clone(), b.clone());
                if let Some((seen_x, seen_op)) = self.lost_reports.get(&key) {
                    if seen_x == xcre && op <= seen_op {
                        return;
                    }
                }
                self.lost_reports.insert(key, (xcre.clone(), op.clone()));
                // Pass it on, as OTP's name servers do.
                let others: Vec<Atom> = self
                    .known
                    .keys()
                    .chain(self.conns.keys())
                    .filter(|n| *n != a)
                    .cloned()
                    .collect();
                for other in others {
                    self.send_gns(&other, msg.clone());
                }
                let rm = if *b == self.shared.id.name { a } else { b };
                if self.known.contains_key(rm) || self.conns.contains_key(rm) {
                    let rm = rm.clone();
                    let bye = Term::tuple(vec![Term::atom("remove_connection"), self.me_node()]);
                    self.send_gns(&rm, bye);
                    tracing::warn!(node = %rm, "global: forgetting a node to prevent overlapping partitions");
                    self.node_down(&rm);
                }
            }
            [tag, Term::Atom(node)] if tag.is_atom("remove_connection") => {
                if self.known.contains_key(node) || self.conns.contains_key(node) {
                    tracing::warn!(%node, "global: disconnecting on request to prevent overlapping partitions");
                    let node = node.clone();
                    self.node_down(&node);
                    if let Some(s) = self.shared.session(&node) {
                        s.actor.stop(Some("remove_connection".into()));
                    }
                }
            }
            _ => tracing::debug!(%from, %msg, "global: unexpected message"),
        }
    }

    /// A `gen_server` call to the name server; `None` when it gets no reply.
    fn call(&mut self, from: &Pid, request: &Term) -> Option<Term> {
        let parts = match request {
            Term::Tuple(items) => &items[..],
            Term::Atom(a) => {
                return match a.as_str() {
                    "get_known" => Some(self.known_list()),
                    "get_synced" => Some(self.known_atoms()),
                    "get_protocol_version" => Some(Term::Int(VSN)),
                    _ => None,
                }
            }
            _ => return None,
        };
        match parts {
            [op, id] if op.is_atom("set_lock") => {
                let granted = self.set_lock(id, from);
                tracing::debug!(%id, ?from, granted, "global: set_lock");
                Some(Term::atom(if granted { "true" } else { "false" }))
            }
            [op, id] if op.is_atom("del_lock") => {
                tracing::debug!(%id, ?from, "global: del_lock");
                self.del_lock(id, from);
                Some(Term::atom("true"))
            }
            [op, name, Term::Pid(pid), method] if op.is_atom("register") => {
                self.insert_name(name.clone(), pid.clone(), method.clone());
                Some(Term::atom("yes"))
            }
            [op, name, Term::Pid(pid), method, _reg_node] if op.is_atom("register_ext") => {
                self.insert_name(name.clone(), pid.clone(), method.clone());
                Some(Term::atom("yes"))
            }
            [op, name] if op.is_atom("unregister") => {
                self.names.remove(name);
                Some(Term::atom("ok"))
            }
            _ => {
                tracing::debug!(%request, "global: unexpected call");
                None
            }
        }
    }

    async fn cast(&mut self, from: Atom, body: Term) {
        let Some(parts) = body.as_tuple() else {
            return;
        };
        match parts {
            [op, Term::Tuple(vsn), Term::Atom(node), Term::Tuple(locker)]
                if op.is_atom("init_connect") =>
            {
                let (Some(his_tag), Some(Term::Pid(his_locker))) = (vsn.get(1), locker.get(3))
                else {
                    return;
                };
                // A node that knew us and starts over (it restarted, say) is new again.
                self.known.remove(node);
                if !self.conns.contains_key(node) {
                    self.start_connect(node);
                }
                // Our `init_connect_ack` is optional in the protocol and not sent: a peer that
                // had not yet seen our `init_connect` would take it as a mismatch and restart.
                if let Some(conn) = self.conns.get_mut(node) {
                    conn.his_tag = Some(his_tag.clone());
                    conn.his_locker = Some(his_locker.clone());
                }
            }
            [op, Term::Pid(his_locker), set, _known, my_tag] if op.is_atom("lock_set") => {
                let node = his_locker.node.clone();
                let Some(conn) = self.conns.get(&node) else {
                    return;
                };
                if Term::Int(conn.my_tag) != *my_tag {
                    return;
                }
                if !set.is_atom("true") {
                    // He could not take the lock: if ours was out, release it and try later.
                    self.lock_refused(&node);
                    return;
                }
                if !conn.lock_sent {
                    if let Some(id) = self.lock_id(conn) {
                        let locker = self.locker.clone();
                        if !self.set_lock(&id, &locker) {
                            // Busy with another connection: say so, he retries.
                            self.refuse_lock(&node);
                            return;
                        }
                    }
                }
                self.send_lock_set(&node, true);
            }
            [op, Term::Atom(node), Term::List(his_names), _, my_tag] if op.is_atom("exchange") => {
                let Some(conn) = self.conns.get(node) else {
                    return;
                };
                if Term::Int(conn.my_tag) != *my_tag {
                    return;
                }
                let Some(his_tag) = conn.his_tag.clone() else {
                    return;
                };
                let node = node.clone();
                let (ops, resolved) = self.resolve(&node, his_names).await;
                let resolved_msg = cast_msg(Term::tuple(vec![
                    Term::atom("resolved"),
                    self.me_node(),
                    Term::list(resolved),
                    self.known_list(),
                    Term::atom("unused"),
                    Term::NIL,
                    his_tag,
                ]));
                self.send_gns(&node, resolved_msg);
                let buffered = match self.conns.get_mut(&node) {
                    Some(conn) => {
                        conn.our_ops = Some(ops);
                        conn.his_resolved.take()
                    }
                    None => return,
                };
                if let Some((his_resolved, his_known)) = buffered {
                    self.finish(&node, his_resolved, his_known);
                }
            }
            [op, Term::Atom(node), Term::List(his_resolved), his_known, _, _, my_tag]
                if op.is_atom("resolved") =>
            {
                let Some(conn) = self.conns.get_mut(node) else {
                    return;
                };
                if Term::Int(conn.my_tag) != *my_tag {
                    return;
                }
                let his_known = match his_known {
                    Term::List(k) => k.clone(),
                    _ => Vec::new(),
                };
                if conn.our_ops.is_some() {
                    let node = node.clone();
                    self.finish(&node, his_resolved.clone(), his_known);
                } else {
                    conn.his_resolved = Some((his_resolved.clone(), his_known));
                }
            }
            [op, Term::Atom(_node), Term::List(ops), _ext, nodes, _extra]
                if op.is_atom("new_nodes") =>
            {
                self.do_ops(ops);
                for n in node_list(nodes) {
                    self.learn(n);
                }
            }
            [op, Term::Atom(node), _] if op.is_atom("in_sync") => {
                let node = node.clone();
                self.node_down_conn_only(&node);
                self.known.insert(node, VSN);
            }
            [op, ..] if op.is_atom("async_del_name") || op.is_atom("async_del_lock") => {}
            _ => tracing::debug!(%from, %body, "global: unexpected cast"),
        }
    }

    /// Drops a connection attempt (and its lock) without forgetting anything else.
    fn node_down_conn_only(&mut self, node: &Atom) {
        if let Some(conn) = self.conns.remove(node) {
            if let Some(id) = self.lock_id(&conn) {
                let locker = self.locker.clone();
                self.del_lock(&id, &locker);
                if conn.peer_locked {
                    self.release_peer_lock(node, id);
                }
            }
        }
    }

    /// Releases the lock our locker set on a peer.
    fn release_peer_lock(&self, node: &Atom, id: Term) {
        let shared = self.shared.clone();
        let node = node.clone();
        tokio::spawn(async move {
            gen_call(
                &shared,
                &node,
                Term::tuple(vec![Term::atom("del_lock"), id]),
            )
            .await;
        });
    }

    /// Both sides' operations are in: the peer is known.
    fn finish(&mut self, node: &Atom, his_resolved: Vec<Term>, his_known: Vec<Term>) {
        let Some(conn) = self.conns.remove(node) else {
            return;
        };
        let lock = self.lock_id(&conn);
        if conn.peer_locked {
            if let Some(id) = lock.clone() {
                self.release_peer_lock(node, id);
            }
        }
        let mut ops = conn.our_ops.unwrap_or_default();
        ops.extend(his_resolved);
        self.do_ops(&ops);
        if let Some(id) = &lock {
            let locker = self.locker.clone();
            self.del_lock(id, &locker);
        }
        let others: Vec<Atom> = self.known.keys().cloned().collect();
        self.known.insert(node.clone(), VSN);
        tracing::info!(%node, "global: in sync");
        let mut new_nodes = vec![Term::tuple(vec![Term::Atom(node.clone()), Term::Int(VSN)])];
        new_nodes.extend(his_known.iter().cloned());
        // Our partition learns of the peer's.
        let extra = Term::list(vec![
            Term::tuple(vec![Term::atom("vsn"), Term::Int(VSN)]),
            Term::tuple(vec![
                Term::atom("lock"),
                lock.unwrap_or_else(|| Term::atom("undefined")),
            ]),
        ]);
        let msg = cast_msg(Term::tuple(vec![
            Term::atom("new_nodes"),
            self.me_node(),
            Term::list(ops),
            Term::NIL,
            Term::list(new_nodes),
            extra,
        ]));
        for other in others.iter().filter(|o| *o != node) {
            self.send_gns(other, msg.clone());
        }
        // The peer's partition: connect and say we are in sync.
        for n in node_list(&Term::list(his_known)) {
            self.learn(n);
        }
    }

    /// A node of a partition we joined: known from now on; connect and tell it `in_sync`.
    fn learn(&mut self, node: Atom) {
        if node == self.shared.id.name || self.known.contains_key(&node) {
            return;
        }
        self.node_down_conn_only(&node);
        self.known.insert(node.clone(), VSN);
        let shared = self.shared.clone();
        let msg = cast_msg(Term::tuple(vec![
            Term::atom("in_sync"),
            self.me_node(),
            Term::atom("true"),
        ]));
        let gns = self.gns.clone();
        tokio::spawn(async move {
            if shared.session(&node).is_none() {
                if let Some(cell) = shared.server.get() {
                    let server: ActorRef<crate::server::NodeServerMsg> = cell.clone().into();
                    let _ = server
                        .call(
                            |reply| crate::server::NodeServerMsg::Connect {
                                node: node.as_str().to_owned(),
                                addr: None,
                                tls: shared.id.config.tls.is_some(),
                                reply,
                            },
                            Some(CALL_TIMEOUT),
                        )
                        .await;
                }
            }
            if let Some(session) = shared.session(&node) {
                session.send(
                    Control::RegSend {
                        from: gns,
                        to_name: Atom::new("global_name_server"),
                    },
                    Some(msg),
                );
            }
        });
    }

    fn do_ops(&mut self, ops: &[Term]) {
        for op in ops {
            match op.as_tuple() {
                Some([kind, entry]) if kind.is_atom("insert") => {
                    if let Some([name, Term::Pid(pid), method]) = entry.as_tuple() {
                        self.insert_name(name.clone(), pid.clone(), method.clone());
                    }
                }
                Some([kind, name]) if kind.is_atom("delete") => {
                    self.names.remove(name);
                }
                _ => {}
            }
        }
    }

    /// Our resolver: his names against ours. Returns (ops for us, ops for him).
    async fn resolve(&mut self, his_node: &Atom, his_names: &[Term]) -> (Vec<Term>, Vec<Term>) {
        let mut ops = Vec::new();
        let mut resolved = Vec::new();
        let we_decide = self.shared.id.name.as_str() < his_node.as_str();
        for item in his_names {
            let Some([name, Term::Pid(his_pid), his_method]) = item.as_tuple() else {
                continue;
            };
            let insert_his = Term::tuple(vec![
                Term::atom("insert"),
                Term::tuple(vec![
                    name.clone(),
                    Term::Pid(his_pid.clone()),
                    his_method.clone(),
                ]),
            ]);
            let mine = self
                .where_(name)
                .and_then(|p| self.names.get(name).map(|e| (p, e.method.clone())));
            match mine {
                None => ops.push(insert_his),
                Some((my_pid, _)) if my_pid == *his_pid => {}
                Some(_) if !we_decide => {}
                Some((my_pid, my_method)) => {
                    let winner = self.resolve_clash(name, his_pid, &my_pid, &my_method).await;
                    match winner {
                        Some(w) if w == *his_pid => ops.push(insert_his),
                        Some(w) if w == my_pid => resolved.push(Term::tuple(vec![
                            Term::atom("insert"),
                            Term::tuple(vec![name.clone(), Term::Pid(my_pid), my_method]),
                        ])),
                        _ => {
                            let del = Term::tuple(vec![Term::atom("delete"), name.clone()]);
                            ops.push(del.clone());
                            resolved.push(del);
                        }
                    }
                }
            }
        }
        (ops, resolved)
    }

    /// Runs the method of our entry for a clash (OTP runs it on the node of our pid).
    async fn resolve_clash(
        &self,
        name: &Term,
        his_pid: &Pid,
        my_pid: &Pid,
        my_method: &Term,
    ) -> Option<Pid> {
        if my_pid.node != self.shared.id.name {
            let args = vec![
                my_method.clone(),
                name.clone(),
                Term::Pid(his_pid.clone()),
                Term::Pid(my_pid.clone()),
            ];
            let request = Term::tuple(vec![
                Term::atom("call"),
                Term::atom("global"),
                Term::atom("resolve_it"),
                Term::list(args),
                Term::atom("user"),
            ]);
            let target = RemoteTarget::Name {
                name: Atom::new("rex"),
                node: my_pid.node.clone(),
            };
            return match call_target(&self.shared, &target, request).await {
                Some(Term::Pid(p)) => Some(p),
                _ => Some(his_pid.clone()),
            };
        }
        let (min, max) = if his_pid.node.as_str() < my_pid.node.as_str() {
            (his_pid.clone(), my_pid.clone())
        } else {
            (my_pid.clone(), his_pid.clone())
        };
        match method_kind(my_method) {
            Resolve::ExitMax => {
                tracing::info!(%name, ?max, "global: name conflict, terminating the loser");
                self.exit_kill(&max);
                Some(min)
            }
            Resolve::NotifyMax => {
                self.send_any(
                    &max,
                    Term::tuple(vec![Term::atom("global_name_conflict"), name.clone()]),
                );
                Some(min)
            }
            Resolve::NotifyAll => {
                for (to, other) in [(his_pid, my_pid), (my_pid, his_pid)] {
                    self.send_any(
                        to,
                        Term::tuple(vec![
                            Term::atom("global_name_conflict"),
                            name.clone(),
                            Term::Pid(other.clone()),
                        ]),
                    );
                }
                None
            }
        }
    }

    fn send_any(&self, to: &Pid, msg: Term) {
        self.shared.send_pid(to, msg);
    }

    /// `exit(Pid, kill)`.
    fn exit_kill(&self, pid: &Pid) {
        self.shared.exit(&self.gns, pid, Term::atom("kill"));
    }
}

fn random_u8() -> u8 {
    let mut b = [0u8; 1];
    let _ = crate::random::fill(&mut b);
    b[0]
}

/// A `gen_server` call to `global_name_server` on `node`.
async fn gen_call(shared: &Arc<Core>, node: &Atom, request: Term) -> Option<Term> {
    let target = RemoteTarget::Name {
        name: Atom::new("global_name_server"),
        node: node.clone(),
    };
    call_target(shared, &target, request).await
}

async fn call_target(shared: &Arc<Core>, target: &RemoteTarget, request: Term) -> Option<Term> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    shared.call(target, request, RpcReplyPort::from((tx, CALL_TIMEOUT)));
    let bytes = tokio::time::timeout(CALL_TIMEOUT, rx).await.ok()?.ok()?;
    Term::decode_slice(&bytes).ok()
}

/// Starts the global name server and its locker identity.
pub(crate) async fn start(
    shared: &Arc<Core>,
    supervisor: ractor::ActorCell,
) -> Result<ActorRef<GlobalMsg>, ActorProcessingErr> {
    let slot: Arc<std::sync::OnceLock<ActorRef<GlobalMsg>>> = Arc::default();
    let for_deliver = slot.clone();
    let gns = shared.registry().add_service(
        Some(Atom::new("global_name_server")),
        Box::new(move |from, msg| {
            if let Some(server) = for_deliver.get() {
                let _ = server.cast(GlobalMsg::Remote(from.clone(), msg));
            }
        }),
    );
    // The locker is an identity only: peers put it in lock ids and check its node.
    let locker = shared.registry().add_service(None, Box::new(|_, _| {}));
    let (actor, _) = Actor::spawn_linked(
        None,
        GlobalServer,
        GlobalArgs {
            shared: shared.clone(),
            gns,
            locker,
        },
        supervisor,
    )
    .await?;
    let _ = slot.set(actor.clone());
    let handle = actor.clone();
    shared.services.get_or_insert(|| GlobalHandle(handle));
    for (node, hidden) in shared.sessions.connected() {
        let _ = actor.cast(GlobalMsg::NodeUp(Atom::new(node), hidden));
    }
    Ok(actor)
}

/// Why a global registration failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GlobalError {
    /// The name is taken (or the process already has a global name).
    #[error("the global name {0} is taken")]
    Taken(String),
    /// The locks could not be taken on every known node.
    #[error("could not lock the cluster for the registration")]
    Locked,
    /// The node is stopping.
    #[error("the node is stopping")]
    Stopping,
}

/// The running name server, kept in the core's services.
struct GlobalHandle(ActorRef<GlobalMsg>);

impl crate::Node {
    /// The cluster's `global` names, as this node sees them.
    pub fn global(&self) -> Global {
        Global {
            shared: self.shared.clone(),
        }
    }

    /// Registers a local actor under a global name (an atom) on every node this node is in
    /// sync with, as `global:register_name/2`; Erlang can then `gen_server:call({global,
    /// Name}, ...)` it and `global:whereis_name(Name)` finds it.
    pub async fn register_global<M: crate::ErlangMessage>(
        &self,
        name: &str,
        actor: &ActorRef<M>,
    ) -> Result<Pid, GlobalError> {
        let pid = self.pid_of(actor);
        self.global()
            .register(Term::atom(name), pid.clone())
            .await?;
        Ok(pid)
    }
}

/// The node's view of `global` names: get it with [`crate::Node::global`].
#[derive(Debug, Clone)]
pub struct Global {
    pub(crate) shared: Arc<Core>,
}

impl Global {
    fn server(&self) -> Result<ActorRef<GlobalMsg>, GlobalError> {
        self.shared
            .services
            .get::<GlobalHandle>()
            .map(|h| h.0.clone())
            .ok_or(GlobalError::Stopping)
    }

    async fn ask<T: Send + 'static>(
        &self,
        msg: impl FnOnce(RpcReplyPort<T>) -> GlobalMsg,
    ) -> Result<T, GlobalError> {
        match self.server()?.call(msg, Some(CALL_TIMEOUT)).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            _ => Err(GlobalError::Stopping),
        }
    }

    /// The pid registered under the atom `name` in the cluster, if any.
    pub async fn whereis_name(&self, name: &str) -> Option<Pid> {
        self.whereis(Term::atom(name)).await
    }

    /// The pid registered under any name term.
    pub async fn whereis(&self, name: Term) -> Option<Pid> {
        self.ask(|r| GlobalMsg::Whereis(name, r))
            .await
            .ok()
            .flatten()
    }

    /// Every global name and its pid.
    pub async fn registered_names(&self) -> Vec<(Term, Pid)> {
        self.ask(GlobalMsg::Names).await.unwrap_or_default()
    }

    /// The nodes this node is in sync with.
    pub async fn known_nodes(&self) -> Vec<String> {
        self.ask(GlobalMsg::Known)
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.as_str().to_owned())
            .collect()
    }

    /// Registers a pid under a name term on every known node, as `global:register_name/2`:
    /// fails when the name is taken.
    pub async fn register(&self, name: Term, pid: Pid) -> Result<(), GlobalError> {
        if self.whereis(name.clone()).await.is_some() {
            return Err(GlobalError::Taken(name.to_string()));
        }
        if self.registered_names().await.iter().any(|(_, p)| *p == pid) {
            return Err(GlobalError::Taken(name.to_string()));
        }
        let op = Term::tuple(vec![
            Term::atom("register"),
            name.clone(),
            Term::Pid(pid.clone()),
            default_method(),
        ]);
        self.transaction(move |this, nodes| {
            let (name, pid, op) = (name.clone(), pid.clone(), op.clone());
            async move {
                if this.whereis(name.clone()).await.is_some() {
                    return Err(GlobalError::Taken(name.to_string()));
                }
                for node in &nodes {
                    gen_call(&this.shared, node, op.clone()).await;
                }
                if let Ok(server) = this.server() {
                    let _ = server.cast(GlobalMsg::LocalName(name, Some((pid, default_method()))));
                }
                Ok(())
            }
        })
        .await
    }

    /// Removes a name everywhere, as `global:unregister_name/1`.
    pub async fn unregister(&self, name: Term) -> Result<(), GlobalError> {
        let op = Term::tuple(vec![Term::atom("unregister"), name.clone()]);
        self.transaction(move |this, nodes| {
            let (name, op) = (name.clone(), op.clone());
            async move {
                for node in &nodes {
                    gen_call(&this.shared, node, op.clone()).await;
                }
                if let Ok(server) = this.server() {
                    let _ = server.cast(GlobalMsg::LocalName(name, None));
                }
                Ok(())
            }
        })
        .await
    }

    /// Runs `f` with the lock `{global, Router}` held on this node and every known node (the
    /// highest-named node first), as OTP's registrar does; retries with back-off while
    /// another node holds it.
    async fn transaction<F, Fut>(&self, f: F) -> Result<(), GlobalError>
    where
        F: Fn(Global, Vec<Atom>) -> Fut,
        Fut: std::future::Future<Output = Result<(), GlobalError>>,
    {
        let server = self.server()?;
        let holder = self.shared.id.router_pid.clone();
        let id = Term::tuple(vec![Term::atom("global"), Term::Pid(holder.clone())]);
        let set_lock = Term::tuple(vec![Term::atom("set_lock"), id.clone()]);
        let del_lock = Term::tuple(vec![Term::atom("del_lock"), id.clone()]);
        for attempt in 0..50u32 {
            let nodes: Vec<Atom> = self.ask(GlobalMsg::Known).await?;
            let me = self.shared.id.name.clone();
            let boss = nodes
                .iter()
                .chain(std::iter::once(&me))
                .max_by(|a, b| a.as_str().cmp(b.as_str()))
                .cloned()
                .unwrap_or_else(|| me.clone());
            let order: Vec<Atom> = std::iter::once(boss.clone())
                .chain(
                    nodes
                        .iter()
                        .chain(std::iter::once(&me))
                        .filter(|n| **n != boss)
                        .cloned(),
                )
                .collect();
            let mut granted = Vec::new();
            let mut all = true;
            for node in &order {
                let ok = if *node == me {
                    let id = id.clone();
                    let holder = holder.clone();
                    matches!(
                        server
                            .call(
                                |r| GlobalMsg::LocalLock(id, holder, true, r),
                                Some(CALL_TIMEOUT)
                            )
                            .await,
                        Ok(ractor::rpc::CallResult::Success(true))
                    )
                } else {
                    gen_call(&self.shared, node, set_lock.clone())
                        .await
                        .is_some_and(|r| r.is_atom("true"))
                };
                if !ok {
                    all = false;
                    break;
                }
                granted.push(node.clone());
            }
            let outcome = if all {
                Some(f(self.clone(), nodes.clone()).await)
            } else {
                None
            };
            // Release: everyone but the boss first, then the boss.
            granted.sort_by_key(|n| *n == boss);
            for node in &granted {
                if *node == me {
                    let _ = server.cast(GlobalMsg::LocalLock(
                        id.clone(),
                        holder.clone(),
                        false,
                        RpcReplyPort::from(tokio::sync::oneshot::channel().0),
                    ));
                } else {
                    gen_call(&self.shared, node, del_lock.clone()).await;
                }
            }
            if let Some(outcome) = outcome {
                return outcome;
            }
            let wait = 10 + u64::from(random_u8()) % (20 * (attempt as u64 + 1)).min(250);
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        Err(GlobalError::Locked)
    }
}

/// Registers `global:whereis_name/1` and `global:registered_names/0` as rpc functions
/// answered from this node's table.
pub(crate) fn register_functions(node: &crate::Node) {
    let n = node.clone();
    node.register_fn("global", "whereis_name", move |args| {
        let global = n.global();
        async move {
            let [name] = &args[..] else {
                return Err(crate::rpc::RpcFailure::Error(Term::atom("badarg")));
            };
            Ok(global
                .whereis(name.clone())
                .await
                .map(Term::Pid)
                .unwrap_or_else(|| Term::atom("undefined")))
        }
    });
    let n = node.clone();
    node.register_fn("global", "registered_names", move |_args| {
        let global = n.global();
        async move {
            let names = global.registered_names().await;
            Ok(Term::list(
                names.into_iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ))
        }
    });
}
