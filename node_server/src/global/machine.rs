//! The `global` protocol as a state machine without I/O: [`Machine::handle`] takes an
//! [`Input`] and the time, changes the tables and returns the [`Action`]s to perform. Nothing
//! here waits: a call to another node is an [`Action::Call`] whose answer comes back later as
//! [`Input::CallReply`], a timer is an [`Action::SetTimer`] that comes back as
//! [`Input::Timer`]. The machine knows only terms ([`crate::etf`]) and std, so a test or a
//! simulator drives it directly.
//!
//! A connection to a peer goes through the [`Phase`]s: `init_connect` sent and awaited,
//! lockers at work (`set_lock` calls, `lock_set` casts), names exchanged (`exchange`),
//! clashes resolved (maybe asking the node of one of the processes, `global:resolve_it`),
//! `resolved` sent and awaited. Then the peer is *known* (in sync) and the connection record
//! goes.
//!
//! Local registrations are transactions run one at a time (OTP's registrar): lock
//! `{global, Registrar}` on the highest-named node, then on every known node, call each with
//! the operation, apply it here, release the locks.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::wire::{
    self, Call, Cast, ExtItem, From, GnsMsg, LockId, LockerInfo, NameItem, Op, VsnTag,
};
use crate::etf::{Atom, Fun, Pid, Term, ToTerm};

/// The `global` protocol version we speak (OTP 25's).
pub(crate) const VSN: i64 = 8;
/// How long our locker waits for the peer's before it starts (ms).
pub(crate) const LOCKER_DELAY_MS: u64 = 300;
/// A registration gives up after this many lock attempts...
const MAX_ATTEMPTS: u32 = 50;
/// ... or after this long (ms).
const TRANS_DEADLINE_MS: u64 = 30_000;

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

/// Who this name server is.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// This node's name.
    pub me: Atom,
    /// The pid of `global_name_server` here.
    pub gns: Pid,
    /// The locker's pid (an identity in lock ids).
    pub locker: Pid,
    /// The pid local transactions hold their locks as (and call other nodes from).
    pub registrar: Pid,
    /// The `lost_connection` incarnation of this node.
    pub incarnation: i64,
    /// Seeds the back-off jitter.
    pub seed: u64,
}

/// A local requester, to whom an [`Action::Reply`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct RequestId(pub u64);

/// A call to another node, answered by an [`Input::CallReply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct CallId(pub u64);

/// What the machine reacts to.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    /// A connection to `node` came up.
    NodeUp { node: Atom, hidden: bool },
    /// The connection to a node went.
    NodeDown(Atom),
    /// A message to `global_name_server` from a node.
    Message { from: Atom, msg: Term },
    /// A request from this node.
    Request(RequestId, Request),
    /// A timer set with [`Action::SetTimer`] fired.
    Timer(Timer),
    /// A monitored process exited.
    ProcessDown(Pid),
    /// The answer to an [`Action::Call`]; `None` when the call failed or timed out.
    CallReply(CallId, Option<Term>),
}

/// A request from this node.
#[derive(Debug, Clone)]
pub(crate) enum Request {
    /// `global:register_name(Name, Pid, Method)`.
    Register { name: Term, pid: Pid, method: Term },
    /// `global:unregister_name(Name)`.
    Unregister(Term),
    /// `global:whereis_name(Name)`.
    Whereis(Term),
    /// Every name and its pid.
    Names,
    /// The nodes in sync with us.
    Known,
    /// `global:set_lock(Id, [node() | Known], 0..)`, held by the registrar identity.
    SetLock(LockId),
    /// `global:del_lock(Id, [node() | Known])`.
    DelLock(LockId),
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Reply {
    /// Register / unregister done, or why not.
    Done(Result<(), GlobalError>),
    /// Whereis.
    Where(Option<Pid>),
    /// Names.
    Names(Vec<(Term, Pid)>),
    /// Known.
    Known(Vec<Atom>),
    /// SetLock / DelLock.
    Lock(bool),
}

/// What a timer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Our locker's turn on the connection attempt with this tag.
    Locker { node: Atom, tag: i64 },
    /// The registrar's next attempt at the transaction with this id.
    Registrar(u64),
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dest {
    /// `global_name_server` on a node (sent from ours).
    Gns(Atom),
    /// A process, here or elsewhere.
    Pid(Pid),
}

/// Whom a call asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallTo {
    /// `global_name_server` on a node.
    Gns(Atom),
    /// `rex` on a node (an `rpc:call`).
    Rex(Atom),
}

impl CallTo {
    fn node(&self) -> &Atom {
        match self {
            CallTo::Gns(n) | CallTo::Rex(n) => n,
        }
    }
}

/// What the machine asks its driver to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Action {
    /// Send a message.
    Send { to: Dest, msg: Term },
    /// Come back with [`Input::Timer`] after `after_ms`.
    SetTimer { timer: Timer, after_ms: u64 },
    /// Report the exit of this process with [`Input::ProcessDown`].
    Monitor(Pid),
    /// Stop monitoring.
    Demonitor(Pid),
    /// Link the name server to this process (a name registered through us by a C node).
    Link(Pid),
    /// Remove that link.
    Unlink(Pid),
    /// Connect to a node (an [`Input::NodeUp`] follows when it works).
    Connect(Atom),
    /// Close the connection to a node.
    Disconnect(Atom),
    /// A `gen_server` call; the answer comes back as [`Input::CallReply`].
    Call {
        id: CallId,
        to: CallTo,
        request: Term,
    },
    /// `exit(Pid, Reason)`.
    Exit { pid: Pid, reason: Term },
    /// Answer a local request.
    Reply { to: RequestId, reply: Reply },
}

/// A registered name.
#[derive(Debug, Clone)]
struct Entry {
    pid: Pid,
    method: Term,
    /// `register_ext`: the node the external process registered through.
    ext: Option<Atom>,
}

/// A lock: the requester id and the processes holding it.
#[derive(Debug, Clone)]
struct Lock {
    requester: Term,
    holders: Vec<Pid>,
}

/// The peer's identity in a connection attempt (from its `init_connect`).
#[derive(Debug, Clone)]
struct His {
    tag: Term,
    locker: Pid,
}

/// Where a connection attempt is.
#[derive(Debug, Clone)]
pub(crate) enum Phase {
    /// Our `init_connect` is out; the peer's has not come.
    AwaitInit,
    /// The lockers are at work; `lock_sent`: we sent our `lock_set true`.
    Locking { lock_sent: bool, calling: bool },
    /// Both sides hold the lock and our `exchange` is out: waiting for the peer's names.
    Exchanged,
    /// The peer's names are in; clashes are being resolved by other nodes.
    Resolving(Clashes),
    /// Our `resolved` is out: waiting for the peer's.
    AwaitResolved { ops: Vec<Op> },
}

/// The outcome of an exchange so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct Clashes {
    /// Operations for our table.
    ops: Vec<Op>,
    /// Operations for the peer's (its `resolved`).
    resolved: Vec<Op>,
    /// The `resolve_it` calls still out.
    waiting: BTreeSet<CallId>,
}

/// A connection attempt with a peer.
#[derive(Debug, Clone)]
struct Conn {
    my_tag: i64,
    his: Option<His>,
    phase: Phase,
    /// Our locker also holds the lock on the peer (release it when done).
    peer_locked: bool,
    /// The peer's `resolved` when it came before our ops: (ops, known, names_ext).
    his_resolved: Option<(Vec<Op>, Term, Vec<ExtItem>)>,
}

/// What an outstanding call is for.
#[derive(Debug, Clone)]
enum Pending {
    /// Our locker's `set_lock` of `lock` on the peer of this attempt.
    Locker { node: Atom, tag: i64, lock: LockId },
    /// A `resolve_it` for a clash in an exchange.
    Resolve(Box<ResolveCall>),
    /// A step of the registrar's transaction.
    Trans { id: u64, node: Atom },
    /// Nobody waits for the answer (a `del_lock`).
    Ignore,
}

/// A clash in the exchange with `node` that the node of our process resolves.
#[derive(Debug, Clone)]
struct ResolveCall {
    node: Atom,
    tag: i64,
    name: Term,
    his: NameItem,
    mine: Pid,
}

/// A local transaction.
#[derive(Debug, Clone)]
enum TransOp {
    Register { name: Term, pid: Pid, method: Term },
    Unregister(Term),
    SetLock,
}

#[derive(Debug, Clone)]
enum Step {
    /// Waiting for the back-off timer.
    Idle,
    /// Locking `order` one node after the other; `known` as at the start.
    Locking {
        order: Vec<Atom>,
        known: Vec<Atom>,
        granted: Vec<Atom>,
    },
    /// Locked everywhere; the operation's calls are out.
    Applying {
        granted: Vec<Atom>,
        waiting: BTreeSet<CallId>,
    },
}

#[derive(Debug, Clone)]
struct Trans {
    id: u64,
    requester: RequestId,
    op: TransOp,
    lock: LockId,
    attempt: u32,
    started: u64,
    step: Step,
}

/// The connection side of the state.
#[derive(Debug, Default)]
struct Peers {
    /// Visible connections.
    up: BTreeSet<Atom>,
    /// Nodes in sync with us, with their protocol version.
    known: BTreeMap<Atom, i64>,
    conns: BTreeMap<Atom, Conn>,
    /// Nodes we connect to and then tell `in_sync`.
    pending_in_sync: BTreeSet<Atom>,
    /// The last `lost_connection` seen per (reporter, lost node): (incarnation, op id).
    lost: BTreeMap<(Atom, Atom), (Term, Term)>,
}

/// Names, locks and the monitors they need.
#[derive(Debug, Default)]
struct Table {
    names: BTreeMap<Term, Entry>,
    /// Resource -> lock.
    locks: BTreeMap<Term, Lock>,
    /// Monitored pids and how many names and locks need each.
    watched: BTreeMap<Pid, u32>,
}

/// Counters and the clock.
#[derive(Debug)]
struct Clock {
    now: u64,
    next_tag: i64,
    next_call: u64,
    next_op: i64,
    rng: u64,
}

#[derive(Debug, Default)]
struct Registrar {
    active: Option<Trans>,
    queue: VecDeque<Trans>,
    next_id: u64,
}

/// The `global` name server's state.
#[derive(Debug)]
pub(crate) struct Machine {
    cfg: Config,
    clock: Clock,
    peers: Peers,
    table: Table,
    calls: BTreeMap<CallId, (CallTo, Pending)>,
    registrar: Registrar,
    out: Vec<Action>,
}

/// `fun global:random_exit_name/3`, the default resolve method.
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
    // `random_exit_name` (as an export or global's local fun) and anything we cannot run.
    Resolve::ExitMax
}

fn bool_atom(b: bool) -> Term {
    Term::atom(if b { "true" } else { "false" })
}

impl Machine {
    /// A name server with empty tables.
    pub(crate) fn new(cfg: Config) -> Machine {
        let rng = cfg.seed | 1;
        Machine {
            cfg,
            clock: Clock {
                now: 0,
                next_tag: -(1 << 59),
                next_call: 0,
                next_op: -(1 << 59),
                rng,
            },
            peers: Peers::default(),
            table: Table::default(),
            calls: BTreeMap::new(),
            registrar: Registrar::default(),
            out: Vec::new(),
        }
    }

    /// Reacts to one input at time `now` (ms, from any fixed origin).
    pub(crate) fn handle(&mut self, input: Input, now: u64) -> Vec<Action> {
        self.clock.now = self.clock.now.max(now);
        match input {
            Input::NodeUp { node, hidden } => self.node_up(node, hidden),
            Input::NodeDown(node) => {
                let known = self.is_potentially_known(&node);
                if known {
                    self.report_lost(&node);
                }
                self.node_down(&node);
            }
            Input::Message { from, msg } => self.message(from, &msg),
            Input::Request(id, request) => self.request(id, request),
            Input::Timer(timer) => self.timer(timer),
            Input::ProcessDown(pid) => self.process_down(&pid),
            Input::CallReply(id, reply) => self.call_reply(id, reply),
        }
        std::mem::take(&mut self.out)
    }

    /// The nodes in sync with us.
    pub(crate) fn known(&self) -> Vec<Atom> {
        self.peers.known.keys().cloned().collect()
    }

    /// The phase of the connection attempt with `node`, if one is in progress.
    #[cfg(test)]
    pub(crate) fn phase(&self, node: &Atom) -> Option<&Phase> {
        self.peers.conns.get(node).map(|c| &c.phase)
    }

    /// The pid registered as `name`.
    pub(crate) fn whereis(&self, name: &Term) -> Option<Pid> {
        self.table.names.get(name).map(|e| e.pid.clone())
    }

    // ----- helpers -------------------------------------------------------------------------

    fn send_gns(&mut self, node: &Atom, msg: Term) {
        self.out.push(Action::Send {
            to: Dest::Gns(node.clone()),
            msg,
        });
    }

    fn send_pid(&mut self, pid: &Pid, msg: Term) {
        self.out.push(Action::Send {
            to: Dest::Pid(pid.clone()),
            msg,
        });
    }

    fn call(&mut self, to: CallTo, request: Term, pending: Pending) -> CallId {
        self.clock.next_call += 1;
        let id = CallId(self.clock.next_call);
        self.calls.insert(id, (to.clone(), pending));
        self.out.push(Action::Call { id, to, request });
        id
    }

    fn random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.clock.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.clock.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn is_potentially_known(&self, node: &Atom) -> bool {
        self.peers.known.contains_key(node) || self.peers.conns.contains_key(node)
    }

    fn known_list(&self) -> Term {
        Term::list(
            self.peers
                .known
                .iter()
                .map(|(n, v)| Term::tuple(vec![Term::Atom(n.clone()), Term::Int(*v)]))
                .collect::<Vec<_>>(),
        )
    }

    fn known_atoms(&self) -> Term {
        Term::list(
            self.peers
                .known
                .keys()
                .map(|n| Term::Atom(n.clone()))
                .collect::<Vec<_>>(),
        )
    }

    fn name_items(&self) -> Vec<NameItem> {
        self.table
            .names
            .iter()
            .map(|(n, e)| NameItem(n.clone(), e.pid.clone(), e.method.clone()))
            .collect()
    }

    fn ext_items(&self) -> Vec<ExtItem> {
        self.table
            .names
            .iter()
            .filter_map(|(n, e)| {
                e.ext
                    .as_ref()
                    .map(|r| ExtItem(n.clone(), e.pid.clone(), r.clone()))
            })
            .collect()
    }

    // ----- monitors, names and locks ---------------------------------------------------------

    /// Our own processes never exit while the server runs: no monitor for them.
    fn is_own(&self, pid: &Pid) -> bool {
        *pid == self.cfg.gns || *pid == self.cfg.locker || *pid == self.cfg.registrar
    }

    fn watch(&mut self, pid: &Pid) {
        if self.is_own(pid) {
            return;
        }
        let count = self.table.watched.entry(pid.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.out.push(Action::Monitor(pid.clone()));
        }
    }

    fn unwatch(&mut self, pid: &Pid) {
        let Some(count) = self.table.watched.get_mut(pid) else {
            return;
        };
        *count -= 1;
        if *count == 0 {
            self.table.watched.remove(pid);
            self.out.push(Action::Demonitor(pid.clone()));
        }
    }

    fn insert_name(&mut self, name: Term, pid: Pid, method: Term, ext: Option<Atom>) {
        self.delete_name(&name);
        self.watch(&pid);
        if ext.as_ref() == Some(&self.cfg.me) {
            self.out.push(Action::Link(pid.clone()));
        }
        self.table.names.insert(name, Entry { pid, method, ext });
    }

    fn delete_name(&mut self, name: &Term) {
        let Some(entry) = self.table.names.remove(name) else {
            return;
        };
        self.unwatch(&entry.pid);
        if entry.ext.as_ref() == Some(&self.cfg.me) && !self.table.watched.contains_key(&entry.pid)
        {
            self.out.push(Action::Unlink(entry.pid));
        }
    }

    fn set_lock(&mut self, id: &LockId, holder: &Pid) -> bool {
        let LockId(resource, requester) = id;
        match self.table.locks.get_mut(resource) {
            Some(lock) if lock.requester == *requester => {
                if lock.holders.contains(holder) {
                    return true;
                }
                lock.holders.push(holder.clone());
            }
            Some(_) => return false,
            None => {
                self.table.locks.insert(
                    resource.clone(),
                    Lock {
                        requester: requester.clone(),
                        holders: vec![holder.clone()],
                    },
                );
            }
        }
        self.watch(holder);
        true
    }

    fn del_lock(&mut self, id: &LockId, holder: &Pid) {
        let LockId(resource, requester) = id;
        if self
            .table
            .locks
            .get(resource)
            .is_some_and(|l| l.requester == *requester)
        {
            self.release_holder(resource, holder);
        }
    }

    /// Removes `holder` from the lock on `resource` (whatever its requester).
    fn release_holder(&mut self, resource: &Term, holder: &Pid) {
        let Some(lock) = self.table.locks.get_mut(resource) else {
            return;
        };
        let before = lock.holders.len();
        lock.holders.retain(|h| h != holder);
        let removed = lock.holders.len() < before;
        if lock.holders.is_empty() {
            self.table.locks.remove(resource);
        }
        if removed {
            self.unwatch(holder);
        }
    }

    fn process_down(&mut self, pid: &Pid) {
        self.table.watched.remove(pid);
        let names: Vec<Term> = self
            .table
            .names
            .iter()
            .filter(|(_, e)| e.pid == *pid)
            .map(|(n, _)| n.clone())
            .collect();
        for name in names {
            self.table.names.remove(&name);
        }
        self.table.locks.retain(|_, lock| {
            lock.holders.retain(|h| h != pid);
            !lock.holders.is_empty()
        });
    }

    // ----- node up / down -------------------------------------------------------------------

    fn node_up(&mut self, node: Atom, hidden: bool) {
        if hidden || node == self.cfg.me {
            return;
        }
        self.peers.up.insert(node.clone());
        if self.peers.pending_in_sync.remove(&node) {
            self.send_in_sync(&node);
        }
        // The peer's init_connect may have started the attempt already.
        if !self.is_potentially_known(&node) {
            self.start_connect(&node);
        }
    }

    fn node_down(&mut self, node: &Atom) {
        self.drop_conn(node);
        self.peers.known.remove(node);
        self.peers.up.remove(node);
        self.peers.pending_in_sync.remove(node);
        let gone: Vec<Pid> = self
            .table
            .watched
            .keys()
            .filter(|p| p.node == *node)
            .cloned()
            .collect();
        for pid in gone {
            self.process_down(&pid);
            self.out.push(Action::Demonitor(pid));
        }
        // Calls to the node will not be answered.
        let failed: Vec<CallId> = self
            .calls
            .iter()
            .filter(|(_, (to, _))| to.node() == node)
            .map(|(id, _)| *id)
            .collect();
        for id in failed {
            self.call_reply(id, None);
        }
    }

    /// Tells the other nodes we are in sync with that we lost `node` (OTP's
    /// `prevent_overlapping_partitions`).
    fn report_lost(&mut self, node: &Atom) {
        self.clock.next_op += 1;
        let msg = GnsMsg::LostConnection(
            self.cfg.me.clone(),
            Term::Int(self.cfg.incarnation),
            Term::Int(self.clock.next_op),
            node.clone(),
        )
        .encode();
        for other in self.others(node) {
            self.send_gns(&other, msg.clone());
        }
    }

    /// Known and connecting nodes but `except`.
    fn others(&self, except: &Atom) -> Vec<Atom> {
        self.peers
            .known
            .keys()
            .chain(self.peers.conns.keys())
            .filter(|n| *n != except)
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    // ----- the connection protocol ----------------------------------------------------------

    fn start_connect(&mut self, node: &Atom) {
        if *node == self.cfg.me {
            return;
        }
        self.clock.next_tag += 1;
        let tag = self.clock.next_tag;
        self.peers.conns.insert(
            node.clone(),
            Conn {
                my_tag: tag,
                his: None,
                phase: Phase::AwaitInit,
                peer_locked: false,
                his_resolved: None,
            },
        );
        let init = Cast::InitConnect(
            VsnTag(VSN, Term::Int(tag)),
            self.cfg.me.clone(),
            LockerInfo(
                Term::atom("no_longer_a_pid"),
                Term::NIL,
                self.cfg.locker.clone(),
            ),
        );
        self.send_gns(node, wire::cast(init));
        self.locker_later(node, tag, LOCKER_DELAY_MS);
    }

    fn locker_later(&mut self, node: &Atom, tag: i64, after_ms: u64) {
        self.out.push(Action::SetTimer {
            timer: Timer::Locker {
                node: node.clone(),
                tag,
            },
            after_ms,
        });
    }

    fn locker_retry(&mut self, node: &Atom, tag: i64) {
        let jitter = (self.random() % 256) * 4;
        self.locker_later(node, tag, LOCKER_DELAY_MS + jitter);
    }

    /// `{global, [LockerA, LockerB]}` of an attempt, once the peer's locker is known.
    fn lock_id(&self, conn: &Conn) -> Option<LockId> {
        let his = conn.his.as_ref()?.locker.clone();
        let mut lockers = [his, self.cfg.locker.clone()];
        lockers.sort();
        Some(LockId(
            Term::atom("global"),
            Term::list(lockers.into_iter().map(Term::Pid).collect::<Vec<_>>()),
        ))
    }

    /// Drops a connection attempt and the locks its lockers hold.
    fn drop_conn(&mut self, node: &Atom) {
        let Some(conn) = self.peers.conns.remove(node) else {
            return;
        };
        if let Some(id) = self.lock_id(&conn) {
            let locker = self.cfg.locker.clone();
            self.del_lock(&id, &locker);
            if conn.peer_locked && self.peers.up.contains(node) {
                self.release_peer_lock(node, id);
            }
        }
    }

    fn release_peer_lock(&mut self, node: &Atom, id: LockId) {
        let request = Call::DelLock(id).to_term();
        self.call(CallTo::Gns(node.clone()), request, Pending::Ignore);
    }

    /// Our locker's turn: lock here and on the peer unless the peer's locker came first.
    fn locker_timer(&mut self, node: &Atom, tag: i64) {
        let Some(conn) = self.peers.conns.get(node) else {
            return;
        };
        if conn.my_tag != tag {
            return;
        }
        match conn.phase {
            Phase::AwaitInit => {
                // No init_connect from the peer yet: try again later.
                self.locker_later(node, tag, LOCKER_DELAY_MS);
                return;
            }
            Phase::Locking {
                lock_sent: false,
                calling: false,
            } => {}
            _ => return,
        }
        let Some(id) = self.lock_id(conn) else {
            return;
        };
        let locker = self.cfg.locker.clone();
        if !self.set_lock(&id, &locker) {
            self.locker_retry(node, tag);
            return;
        }
        if let Some(conn) = self.peers.conns.get_mut(node) {
            conn.phase = Phase::Locking {
                lock_sent: false,
                calling: true,
            };
        }
        let request = Call::SetLock(id.clone()).to_term();
        self.call(
            CallTo::Gns(node.clone()),
            request,
            Pending::Locker {
                node: node.clone(),
                tag,
                lock: id,
            },
        );
    }

    /// The answer to our locker's `set_lock` on the peer.
    fn locker_granted(&mut self, node: &Atom, tag: i64, lock: LockId, granted: bool) {
        let Some(conn) = self.peers.conns.get_mut(node).filter(|c| c.my_tag == tag) else {
            // The attempt is over (in sync, say, as his locker came first): give back what
            // the peer granted our locker, or its lock on `global` would stay.
            if granted && self.peers.up.contains(node) {
                self.release_peer_lock(node, lock);
            }
            return;
        };
        if granted {
            // Released when the attempt ends.
            conn.peer_locked = true;
        }
        let Phase::Locking { lock_sent, .. } = conn.phase else {
            return;
        };
        conn.phase = Phase::Locking {
            lock_sent,
            calling: false,
        };
        if lock_sent {
            // His locker came first meanwhile; his lock is the same one.
            return;
        }
        if !granted {
            let locker = self.cfg.locker.clone();
            self.del_lock(&lock, &locker);
            self.locker_retry(node, tag);
            return;
        }
        // Our names go when his `lock_set` confirms the lock on his side.
        self.send_lock_set(node, false);
    }

    /// Sends our `lock_set true` (unless sent) and, when both sides hold the lock, our names.
    fn send_lock_set(&mut self, node: &Atom, both_locked: bool) {
        let (known, names, locker) = (
            self.known_atoms(),
            self.name_items(),
            self.cfg.locker.clone(),
        );
        let me = self.cfg.me.clone();
        let Some(conn) = self.peers.conns.get_mut(node) else {
            return;
        };
        let Some(his_tag) = conn.his.as_ref().map(|h| h.tag.clone()) else {
            return;
        };
        let mut out = Vec::new();
        let Phase::Locking { lock_sent, calling } = conn.phase else {
            return;
        };
        if !lock_sent {
            out.push(Cast::LockSet(locker, true, known, his_tag.clone()));
        }
        conn.phase = Phase::Locking {
            lock_sent: true,
            calling,
        };
        if both_locked {
            conn.phase = Phase::Exchanged;
            out.push(Cast::Exchange(me, names, Term::NIL, his_tag));
        }
        for msg in out {
            self.send_gns(node, wire::cast(msg));
        }
    }

    fn message(&mut self, from: Atom, msg: &Term) {
        match GnsMsg::decode(msg) {
            GnsMsg::GenCast(cast) => self.cast(from, cast),
            GnsMsg::GenCall(From(pid, tag), request) => {
                if let Some(reply) = self.answer(&pid, request) {
                    self.send_pid(&pid, Term::tuple(vec![tag, reply]));
                }
            }
            GnsMsg::InitConnectAck(node, his_my, his_his) => {
                let matches = self.peers.conns.get(&node).is_some_and(|c| {
                    his_my == Term::Int(c.my_tag)
                        && c.his.as_ref().map(|h| &h.tag) == Some(&his_his)
                });
                if !matches {
                    tracing::debug!(%node, "global: init_connect_ack with other tags");
                }
            }
            GnsMsg::CancelConnect(node, my_tag) => {
                if self
                    .peers
                    .conns
                    .get(&node)
                    .is_some_and(|c| Term::Int(c.my_tag) == my_tag)
                {
                    self.drop_conn(&node);
                    if self.peers.up.contains(&node) {
                        self.start_connect(&node);
                    }
                }
            }
            GnsMsg::Whereis(name, From(pid, tag)) => {
                let found = self
                    .whereis(&name)
                    .map(Term::Pid)
                    .unwrap_or_else(|| Term::atom("undefined"));
                self.send_pid(&pid, Term::tuple(vec![tag, found]));
            }
            GnsMsg::LostConnection(a, xcre, op, b) => self.lost_connection(msg, a, xcre, op, b),
            GnsMsg::RemoveConnection(node) => {
                if self.is_potentially_known(&node) {
                    tracing::warn!(%node, "global: disconnecting on request to prevent overlapping partitions");
                    self.node_down(&node);
                    self.out.push(Action::Disconnect(node));
                }
            }
            GnsMsg::Other(_) => tracing::debug!(%from, %msg, "global: unexpected message"),
        }
    }

    fn lost_connection(&mut self, msg: &Term, a: Atom, xcre: Term, op: Term, b: Atom) {
        // Seen already (the same incarnation, an op id not newer)? Then nothing.
        let key = (a.clone(), b.clone());
        if let Some((seen_x, seen_op)) = self.peers.lost.get(&key) {
            if *seen_x == xcre && op <= *seen_op {
                return;
            }
        }
        self.peers.lost.insert(key, (xcre, op));
        // Pass it on, as OTP's name servers do.
        for other in self.others(&a) {
            self.send_gns(&other, msg.clone());
        }
        let rm = if b == self.cfg.me { a } else { b };
        if self.is_potentially_known(&rm) {
            let bye = GnsMsg::RemoveConnection(self.cfg.me.clone()).encode();
            self.send_gns(&rm, bye);
            tracing::warn!(node = %rm, "global: forgetting a node to prevent overlapping partitions");
            self.node_down(&rm);
        }
    }

    /// A `gen_server` call from another node; `None`: no reply.
    fn answer(&mut self, from: &Pid, request: Call) -> Option<Term> {
        Some(match request {
            Call::SetLock(id) => bool_atom(self.set_lock(&id, from)),
            Call::DelLock(id) => {
                self.del_lock(&id, from);
                bool_atom(true)
            }
            Call::Register(name, pid, method) => {
                self.insert_name(name, pid, method, None);
                Term::atom("yes")
            }
            Call::RegisterExt(name, pid, method, reg_node) => {
                self.insert_name(name, pid, method, Some(reg_node));
                Term::atom("yes")
            }
            Call::Unregister(name) => {
                self.delete_name(&name);
                Term::atom("ok")
            }
            Call::GetKnown => self.known_list(),
            Call::GetSynced => self.known_atoms(),
            Call::GetProtocolVersion => Term::Int(VSN),
            Call::GetNamesExt => self.ext_items().to_term(),
            Call::Other(request) => {
                tracing::debug!(%request, "global: unexpected call");
                return None;
            }
        })
    }

    fn cast(&mut self, from: Atom, cast: Cast) {
        match cast {
            Cast::InitConnect(VsnTag(_, his_tag), node, LockerInfo(_, _, his_locker)) => {
                // A node that knew us and starts over (it restarted, say) is new again.
                self.peers.known.remove(&node);
                self.peers.up.insert(node.clone());
                if !self.peers.conns.contains_key(&node) {
                    self.start_connect(&node);
                }
                // Our `init_connect_ack` is optional in the protocol and not sent: a peer that
                // had not yet seen our `init_connect` would take it as a mismatch and restart.
                if let Some(conn) = self.peers.conns.get_mut(&node) {
                    conn.his = Some(His {
                        tag: his_tag,
                        locker: his_locker,
                    });
                    if matches!(conn.phase, Phase::AwaitInit) {
                        conn.phase = Phase::Locking {
                            lock_sent: false,
                            calling: false,
                        };
                    }
                }
            }
            Cast::LockSet(his_locker, set, _known, my_tag) => {
                self.lock_set(&his_locker.node, set, &my_tag)
            }
            Cast::Exchange(node, names, _ext, my_tag) => self.exchange(&node, names, &my_tag),
            Cast::Resolved(node, his_ops, his_known, _, names_ext, my_tag) => {
                let Some(conn) = self.peers.conns.get_mut(&node) else {
                    return;
                };
                if Term::Int(conn.my_tag) != my_tag {
                    return;
                }
                if matches!(conn.phase, Phase::AwaitResolved { .. }) {
                    self.finish(&node, his_ops, his_known, names_ext);
                } else {
                    conn.his_resolved = Some((his_ops, his_known, names_ext));
                }
            }
            Cast::NewNodes(_node, ops, names_ext, nodes, _extra) => {
                self.do_ops(ops, &names_ext);
                for n in wire::node_names(&nodes) {
                    self.learn(n);
                }
            }
            Cast::InSync(node, _) => {
                self.drop_conn(&node);
                self.peers.known.insert(node, VSN);
            }
            Cast::AsyncDelName(name, pid) => {
                // An old node saw the process exit: the name goes if it still names it.
                if self.table.names.get(&name).is_some_and(|e| e.pid == pid) {
                    self.delete_name(&name);
                }
            }
            Cast::AsyncDelLock(resource, pid) => self.release_holder(&resource, &pid),
            Cast::Other(body) => tracing::debug!(%from, %body, "global: unexpected cast"),
        }
    }

    fn lock_set(&mut self, node: &Atom, set: bool, my_tag: &Term) {
        let Some(conn) = self.peers.conns.get(node) else {
            return;
        };
        if Term::Int(conn.my_tag) != *my_tag {
            return;
        }
        let Phase::Locking { lock_sent, .. } = conn.phase else {
            return;
        };
        if !set {
            // He could not take the lock: if ours was out, release it and try later.
            self.lock_refused(node);
            return;
        }
        let his_tag = conn.his.as_ref().map(|h| h.tag.clone());
        if !lock_sent {
            if let Some(id) = self.lock_id(conn) {
                let locker = self.cfg.locker.clone();
                if !self.set_lock(&id, &locker) {
                    // Busy with another connection: say so, he retries.
                    if let Some(his_tag) = his_tag {
                        let refuse = Cast::LockSet(locker, false, self.known_atoms(), his_tag);
                        self.send_gns(node, wire::cast(refuse));
                    }
                    return;
                }
            }
        }
        self.send_lock_set(node, true);
    }

    /// The peer refused our `lock_set`: release what our locker took and try again later.
    fn lock_refused(&mut self, node: &Atom) {
        let Some(conn) = self.peers.conns.get_mut(node) else {
            return;
        };
        let Phase::Locking {
            lock_sent: true,
            calling,
        } = conn.phase
        else {
            return;
        };
        conn.phase = Phase::Locking {
            lock_sent: false,
            calling,
        };
        let (tag, peer_locked) = (conn.my_tag, conn.peer_locked);
        conn.peer_locked = false;
        if let Some(id) = self.lock_id(&self.peers.conns[node]) {
            let locker = self.cfg.locker.clone();
            self.del_lock(&id, &locker);
            if peer_locked {
                self.release_peer_lock(node, id);
            }
        }
        self.locker_retry(node, tag);
    }

    fn exchange(&mut self, node: &Atom, names: Vec<NameItem>, my_tag: &Term) {
        let Some(conn) = self.peers.conns.get(node) else {
            return;
        };
        if Term::Int(conn.my_tag) != *my_tag {
            return;
        }
        let tag = conn.my_tag;
        match conn.phase {
            Phase::Exchanged => {}
            // He holds both locks (his lock_set came before): our names go first.
            Phase::Locking {
                lock_sent: true, ..
            } => self.send_lock_set(node, true),
            _ => {
                tracing::debug!(%node, phase = ?conn.phase, "global: exchange out of turn");
                return;
            }
        }
        let we_decide = self.cfg.me.as_str() < node.as_str();
        let mut ops = Vec::new();
        let mut resolved = Vec::new();
        let mut waiting = BTreeSet::new();
        for item in names {
            let NameItem(name, his_pid, _) = &item;
            let mine = self.table.names.get(name).cloned();
            match mine {
                None => ops.push(Op::Insert(item)),
                Some(e) if e.pid == *his_pid => {}
                // The other node resolves the clash.
                Some(_) if !we_decide => {}
                Some(e) if e.pid.node == self.cfg.me => {
                    let winner = self.resolve_here(name, his_pid, &e.pid, &e.method);
                    Self::clash_ops(&item, &e, winner, &mut ops, &mut resolved);
                }
                Some(e) => {
                    // OTP runs the method on the node of our process.
                    let request = Term::tuple(vec![
                        Term::atom("call"),
                        Term::atom("global"),
                        Term::atom("resolve_it"),
                        Term::list(vec![
                            e.method.clone(),
                            name.clone(),
                            Term::Pid(his_pid.clone()),
                            Term::Pid(e.pid.clone()),
                        ]),
                        Term::atom("user"),
                    ]);
                    let pending = Pending::Resolve(Box::new(ResolveCall {
                        node: node.clone(),
                        tag,
                        name: name.clone(),
                        his: item.clone(),
                        mine: e.pid.clone(),
                    }));
                    let id = self.call(CallTo::Rex(e.pid.node.clone()), request, pending);
                    waiting.insert(id);
                }
            }
        }
        if let Some(conn) = self.peers.conns.get_mut(node) {
            conn.phase = Phase::Resolving(Clashes {
                ops,
                resolved,
                waiting,
            });
        }
        self.resolving_done(node);
    }

    /// The ops a clash resolution gives: for us (`ops`) and for the peer (`resolved`).
    fn clash_ops(
        his: &NameItem,
        mine: &Entry,
        winner: Option<Pid>,
        ops: &mut Vec<Op>,
        resolved: &mut Vec<Op>,
    ) {
        let name = &his.0;
        match winner {
            Some(w) if w == his.1 => ops.push(Op::Insert(his.clone())),
            Some(w) if w == mine.pid => resolved.push(Op::Insert(NameItem(
                name.clone(),
                mine.pid.clone(),
                mine.method.clone(),
            ))),
            _ => {
                ops.push(Op::Delete(name.clone()));
                resolved.push(Op::Delete(name.clone()));
            }
        }
    }

    /// Runs the resolve method of our entry here; returns the pid that keeps the name.
    fn resolve_here(&mut self, name: &Term, his: &Pid, mine: &Pid, method: &Term) -> Option<Pid> {
        let (min, max) = if his.node.as_str() < mine.node.as_str() {
            (his.clone(), mine.clone())
        } else {
            (mine.clone(), his.clone())
        };
        match method_kind(method) {
            Resolve::ExitMax => {
                tracing::info!(%name, ?max, "global: name conflict, terminating the loser");
                self.out.push(Action::Exit {
                    pid: max,
                    reason: Term::atom("kill"),
                });
                Some(min)
            }
            Resolve::NotifyMax => {
                let msg = Term::tuple(vec![Term::atom("global_name_conflict"), name.clone()]);
                self.send_pid(&max, msg);
                Some(min)
            }
            Resolve::NotifyAll => {
                for (to, other) in [(his, mine), (mine, his)] {
                    let msg = Term::tuple(vec![
                        Term::atom("global_name_conflict"),
                        name.clone(),
                        Term::Pid(other.clone()),
                    ]);
                    self.send_pid(to, msg);
                }
                None
            }
        }
    }

    /// The answer of a `resolve_it` on another node.
    fn resolve_answer(&mut self, id: CallId, pending: ResolveCall, reply: Option<Term>) {
        let ResolveCall {
            node,
            tag,
            name,
            his,
            mine,
        } = pending;
        let Some(conn) = self.peers.conns.get_mut(&node) else {
            return;
        };
        if conn.my_tag != tag {
            return;
        }
        let Phase::Resolving(Clashes {
            ops,
            resolved,
            waiting,
        }) = &mut conn.phase
        else {
            return;
        };
        waiting.remove(&id);
        match reply {
            Some(Term::Pid(w)) => {
                let method = self
                    .table
                    .names
                    .get(&name)
                    .map(|e| e.method.clone())
                    .unwrap_or_else(default_method);
                let entry = Entry {
                    pid: mine,
                    method,
                    ext: None,
                };
                Self::clash_ops(&his, &entry, Some(w), ops, resolved);
            }
            // The node did not answer (badrpc): take his.
            None => ops.push(Op::Insert(his)),
            Some(t)
                if t.as_tuple()
                    .is_some_and(|p| p.first().is_some_and(|a| a.is_atom("badrpc"))) =>
            {
                ops.push(Op::Insert(his))
            }
            // `none` or anything else: the name goes.
            Some(_) => {
                ops.push(Op::Delete(name.clone()));
                resolved.push(Op::Delete(name));
            }
        }
        self.resolving_done(&node);
    }

    /// Every clash is resolved: send our `resolved` and finish if the peer's is in.
    fn resolving_done(&mut self, node: &Atom) {
        let (known, ext) = (self.known_list(), self.ext_items());
        let me = self.cfg.me.clone();
        let Some(conn) = self.peers.conns.get_mut(node) else {
            return;
        };
        let Phase::Resolving(clashes) = &mut conn.phase else {
            return;
        };
        if !clashes.waiting.is_empty() {
            return;
        }
        let Clashes { ops, resolved, .. } = std::mem::take(clashes);
        let Some(his_tag) = conn.his.as_ref().map(|h| h.tag.clone()) else {
            return;
        };
        conn.phase = Phase::AwaitResolved { ops };
        let buffered = conn.his_resolved.take();
        let msg = Cast::Resolved(me, resolved, known.clone(), known, ext, his_tag);
        self.send_gns(node, wire::cast(msg));
        if let Some((his_ops, his_known, names_ext)) = buffered {
            self.finish(node, his_ops, his_known, names_ext);
        }
    }

    /// Both sides' operations are in: the peer is known.
    fn finish(&mut self, node: &Atom, his_ops: Vec<Op>, his_known: Term, names_ext: Vec<ExtItem>) {
        let Some(conn) = self.peers.conns.remove(node) else {
            return;
        };
        let Phase::AwaitResolved { mut ops } = conn.phase.clone() else {
            return;
        };
        let lock = self.lock_id(&conn);
        if let Some(id) = &lock {
            if conn.peer_locked {
                self.release_peer_lock(node, id.clone());
            }
        }
        ops.extend(his_ops);
        self.do_ops(ops.clone(), &names_ext);
        if let Some(id) = &lock {
            let locker = self.cfg.locker.clone();
            self.del_lock(id, &locker);
        }
        let others: Vec<Atom> = self.peers.known.keys().cloned().collect();
        self.peers.known.insert(node.clone(), VSN);
        tracing::info!(%node, "global: in sync");
        let mut new_nodes = vec![Term::tuple(vec![Term::Atom(node.clone()), Term::Int(VSN)])];
        if let Term::List(items) = &his_known {
            new_nodes.extend(items.iter().cloned());
        }
        // Our partition learns of the peer's.
        let extra = Term::list(vec![
            Term::tuple(vec![Term::atom("vsn"), Term::Int(VSN)]),
            Term::tuple(vec![
                Term::atom("lock"),
                lock.map(|l| l.to_term())
                    .unwrap_or_else(|| Term::atom("undefined")),
            ]),
        ]);
        let msg = wire::cast(Cast::NewNodes(
            self.cfg.me.clone(),
            ops,
            names_ext,
            Term::list(new_nodes),
            extra,
        ));
        for other in others.iter().filter(|o| *o != node) {
            self.send_gns(other, msg.clone());
        }
        // The peer's partition: connect and say we are in sync.
        for n in wire::node_names(&his_known) {
            self.learn(n);
        }
    }

    /// A node of a partition we joined: known from now on; connect and tell it `in_sync`.
    fn learn(&mut self, node: Atom) {
        if node == self.cfg.me || self.peers.known.contains_key(&node) {
            return;
        }
        self.drop_conn(&node);
        self.peers.known.insert(node.clone(), VSN);
        if self.peers.up.contains(&node) {
            self.send_in_sync(&node);
        } else {
            self.peers.pending_in_sync.insert(node.clone());
            self.out.push(Action::Connect(node));
        }
    }

    fn send_in_sync(&mut self, node: &Atom) {
        let msg = wire::cast(Cast::InSync(self.cfg.me.clone(), bool_atom(true)));
        self.send_gns(node, msg);
    }

    fn do_ops(&mut self, ops: Vec<Op>, names_ext: &[ExtItem]) {
        for op in ops {
            match op {
                Op::Insert(NameItem(name, pid, method)) => {
                    let ext = names_ext
                        .iter()
                        .find(|e| e.0 == name && e.1 == pid)
                        .map(|e| e.2.clone());
                    self.insert_name(name, pid, method, ext);
                }
                Op::Delete(name) => self.delete_name(&name),
            }
        }
    }

    // ----- timers and call answers ----------------------------------------------------------

    fn timer(&mut self, timer: Timer) {
        match timer {
            Timer::Locker { node, tag } => self.locker_timer(&node, tag),
            Timer::Registrar(id) => {
                if self
                    .registrar
                    .active
                    .as_ref()
                    .is_some_and(|t| t.id == id && matches!(t.step, Step::Idle))
                {
                    self.trans_start();
                }
            }
        }
    }

    fn call_reply(&mut self, id: CallId, reply: Option<Term>) {
        let Some((_, pending)) = self.calls.remove(&id) else {
            return;
        };
        match pending {
            Pending::Locker { node, tag, lock } => {
                let granted = reply.is_some_and(|r| r.is_atom("true"));
                self.locker_granted(&node, tag, lock, granted);
            }
            Pending::Resolve(pending) => self.resolve_answer(id, *pending, reply),
            Pending::Trans { id: trans, node } => self.trans_reply(trans, id, &node, reply),
            Pending::Ignore => {}
        }
    }

    // ----- local requests and the registrar -------------------------------------------------

    fn request(&mut self, to: RequestId, request: Request) {
        let reply = match request {
            Request::Whereis(name) => Reply::Where(self.whereis(&name)),
            Request::Names => Reply::Names(
                self.table
                    .names
                    .iter()
                    .map(|(n, e)| (n.clone(), e.pid.clone()))
                    .collect(),
            ),
            Request::Known => Reply::Known(self.known()),
            Request::Register { name, pid, method } => {
                if let Some(err) = self.register_refused(&name, &pid) {
                    Reply::Done(Err(err))
                } else {
                    let lock = self.registrar_lock();
                    return self.enqueue(to, TransOp::Register { name, pid, method }, lock);
                }
            }
            Request::Unregister(name) => {
                if self.whereis(&name).is_none() {
                    Reply::Done(Ok(()))
                } else {
                    let lock = self.registrar_lock();
                    return self.enqueue(to, TransOp::Unregister(name), lock);
                }
            }
            Request::SetLock(id) => return self.enqueue(to, TransOp::SetLock, id),
            Request::DelLock(id) => {
                let me = self.cfg.registrar.clone();
                self.del_lock(&id, &me);
                let request = Call::DelLock(id).to_term();
                for node in self.known() {
                    self.call(CallTo::Gns(node), request.clone(), Pending::Ignore);
                }
                Reply::Lock(true)
            }
        };
        self.out.push(Action::Reply { to, reply });
    }

    /// Why `name` cannot be registered for `pid` now, if it cannot.
    fn register_refused(&self, name: &Term, pid: &Pid) -> Option<GlobalError> {
        let taken =
            self.table.names.contains_key(name) || self.table.names.values().any(|e| e.pid == *pid);
        taken.then(|| GlobalError::Taken(name.to_string()))
    }

    fn registrar_lock(&self) -> LockId {
        LockId(Term::atom("global"), Term::Pid(self.cfg.registrar.clone()))
    }

    fn enqueue(&mut self, requester: RequestId, op: TransOp, lock: LockId) {
        self.registrar.next_id += 1;
        let trans = Trans {
            id: self.registrar.next_id,
            requester,
            op,
            lock,
            attempt: 0,
            started: self.clock.now,
            step: Step::Idle,
        };
        self.registrar.queue.push_back(trans);
        if self.registrar.active.is_none() {
            self.trans_next();
        }
    }

    fn trans_next(&mut self) {
        self.registrar.active = self.registrar.queue.pop_front();
        if self.registrar.active.is_some() {
            self.trans_start();
        }
    }

    /// Starts (again) locking for the active transaction: the boss first, then the others.
    fn trans_start(&mut self) {
        let known = self.known();
        let me = self.cfg.me.clone();
        let mut order: Vec<Atom> = known.iter().cloned().chain([me]).collect();
        order.sort();
        order.dedup();
        // The boss (highest name) first.
        order.rotate_right(1);
        let Some(trans) = self.registrar.active.as_mut() else {
            return;
        };
        trans.step = Step::Locking {
            order,
            known,
            granted: Vec::new(),
        };
        self.trans_lock_next();
    }

    /// Locks the next node of the active transaction, or applies it when all are locked.
    fn trans_lock_next(&mut self) {
        loop {
            let Some(trans) = self.registrar.active.as_ref() else {
                return;
            };
            let Step::Locking {
                order,
                known,
                granted,
            } = &trans.step
            else {
                return;
            };
            let (id, lock) = (trans.id, trans.lock.clone());
            let Some(node) = order.get(granted.len()).cloned() else {
                // Locked everywhere; a node that became known meanwhile was not locked.
                if *known != self.known() {
                    return self.trans_failed();
                }
                return self.trans_apply();
            };
            if node == self.cfg.me {
                let me = self.cfg.registrar.clone();
                if !self.set_lock(&lock, &me) {
                    return self.trans_failed();
                }
                if let Some(Trans {
                    step: Step::Locking { granted, .. },
                    ..
                }) = self.registrar.active.as_mut()
                {
                    granted.push(node);
                }
                continue;
            }
            let request = Call::SetLock(lock).to_term();
            self.call(
                CallTo::Gns(node.clone()),
                request,
                Pending::Trans { id, node },
            );
            return;
        }
    }

    /// Releases the locks the active transaction holds (the boss last).
    fn trans_release(&mut self, granted: Vec<Atom>) {
        let Some(lock) = self.registrar.active.as_ref().map(|t| t.lock.clone()) else {
            return;
        };
        let mut granted = granted;
        if !granted.is_empty() {
            // The boss was locked first: release it last.
            granted.rotate_left(1);
        }
        for node in granted {
            if node == self.cfg.me {
                let me = self.cfg.registrar.clone();
                self.del_lock(&lock, &me);
            } else {
                self.release_peer_lock(&node, lock.clone());
            }
        }
    }

    fn trans_granted(&self) -> Vec<Atom> {
        match self.registrar.active.as_ref().map(|t| &t.step) {
            Some(Step::Locking { granted, .. } | Step::Applying { granted, .. }) => granted.clone(),
            _ => Vec::new(),
        }
    }

    /// A lock was refused: release, back off, try again (or give up).
    fn trans_failed(&mut self) {
        let granted = self.trans_granted();
        self.trans_release(granted);
        let now = self.clock.now;
        let Some(trans) = self.registrar.active.as_mut() else {
            return;
        };
        trans.attempt += 1;
        trans.step = Step::Idle;
        let (id, attempt) = (trans.id, trans.attempt);
        if attempt >= MAX_ATTEMPTS || now.saturating_sub(trans.started) >= TRANS_DEADLINE_MS {
            let reply = match trans.op {
                TransOp::SetLock => Reply::Lock(false),
                _ => Reply::Done(Err(GlobalError::Locked)),
            };
            let to = trans.requester;
            self.out.push(Action::Reply { to, reply });
            return self.trans_next();
        }
        let spread = (20 * u64::from(attempt)).min(250);
        let wait = 10 + self.random() % spread;
        self.out.push(Action::SetTimer {
            timer: Timer::Registrar(id),
            after_ms: wait,
        });
    }

    /// Locked everywhere: send the operation to every other known node.
    fn trans_apply(&mut self) {
        let granted = self.trans_granted();
        let Some(trans) = self.registrar.active.as_ref() else {
            return;
        };
        let id = trans.id;
        let request = match &trans.op {
            TransOp::Register { name, pid, method } => {
                if let Some(err) = self.register_refused(name, pid) {
                    let to = trans.requester;
                    self.trans_release(granted);
                    self.out.push(Action::Reply {
                        to,
                        reply: Reply::Done(Err(err)),
                    });
                    return self.trans_next();
                }
                Call::Register(name.clone(), pid.clone(), method.clone()).to_term()
            }
            TransOp::Unregister(name) => Call::Unregister(name.clone()).to_term(),
            TransOp::SetLock => {
                // The lock stays until `DelLock`.
                let to = trans.requester;
                self.out.push(Action::Reply {
                    to,
                    reply: Reply::Lock(true),
                });
                return self.trans_next();
            }
        };
        let mut waiting = BTreeSet::new();
        let others: Vec<Atom> = granted
            .iter()
            .filter(|n| **n != self.cfg.me)
            .cloned()
            .collect();
        for node in others {
            let call = self.call(
                CallTo::Gns(node.clone()),
                request.clone(),
                Pending::Trans { id, node },
            );
            waiting.insert(call);
        }
        if let Some(trans) = self.registrar.active.as_mut() {
            trans.step = Step::Applying { granted, waiting };
        }
        self.trans_applied();
    }

    /// When every node has answered: apply here, release, reply.
    fn trans_applied(&mut self) {
        let Some(trans) = self.registrar.active.as_ref() else {
            return;
        };
        let Step::Applying { granted, waiting } = &trans.step else {
            return;
        };
        if !waiting.is_empty() {
            return;
        }
        let (granted, to, op) = (granted.clone(), trans.requester, trans.op.clone());
        match op {
            TransOp::Register { name, pid, method } => self.insert_name(name, pid, method, None),
            TransOp::Unregister(name) => self.delete_name(&name),
            TransOp::SetLock => {}
        }
        self.trans_release(granted);
        self.out.push(Action::Reply {
            to,
            reply: Reply::Done(Ok(())),
        });
        self.trans_next();
    }

    fn trans_reply(&mut self, trans: u64, call: CallId, node: &Atom, reply: Option<Term>) {
        let Some(active) = self.registrar.active.as_mut() else {
            return;
        };
        if active.id != trans {
            return;
        }
        match &mut active.step {
            Step::Locking { order, granted, .. } => {
                if order.get(granted.len()) != Some(node) {
                    return;
                }
                if reply.is_some_and(|r| r.is_atom("true")) {
                    granted.push(node.clone());
                    self.trans_lock_next();
                } else {
                    self.trans_failed();
                }
            }
            Step::Applying { waiting, .. } => {
                // A node that did not answer is gone: the operation goes on without it.
                waiting.remove(&call);
                self.trans_applied();
            }
            Step::Idle => {}
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
