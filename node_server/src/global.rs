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
//! Registration ([`Global::register`], [`crate::Node::register_global`]) follows
//! `global:register_name/2`: lock `{global, Registrar}` on the highest-named node, then on every
//! known node, call `{register, Name, Pid, Method}` on each, release the locks; registrations
//! run one at a time. Every node monitors the registered processes itself, so a name goes
//! everywhere when its process exits. [`Global::set_lock`] and [`Global::del_lock`] take and
//! release other locks the same way. A lock is released when the process holding it exits
//! (the name server monitors lock holders) or its node goes.
//!
//! Name clashes when two partitions meet resolve as in OTP: the node with the smaller name
//! decides with the registering method, run on the node of its process (`global:resolve_it`
//! by rpc when that is a third node); the default (`global:random_exit_name/3`) keeps the
//! process on the node with the smaller name and kills the other. Names are any terms; the
//! Rust API takes atoms' text.
//!
//! Names registered by C nodes (`{register_ext, Name, Pid, Method, RegNode}`) are kept with
//! their registering node: the name server of that node links to the process, and the
//! `resolved` and `new_nodes` messages carry them as OTP's `names_ext`. `async_del_name` and
//! `async_del_lock` (sent by R13B and older nodes; OTP 14 and later ignore them since their
//! monitors do the work) delete the name or lock holder they name.
//!
//! As OTP 25 (`prevent_overlapping_partitions`, on by default there), a node that loses a
//! connection tells the others in sync with it (`lost_connection`), which drop the lost node
//! too and ask it to disconnect (`remove_connection`); we send, relay and honour these.
//!
//! The protocol is a state machine without I/O (`global/machine.rs`, typed messages in
//! `global/wire.rs`); the actor here performs its actions (sends, timers, monitors, calls to
//! other nodes) and feeds the results back.

mod machine;
mod wire;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};
use tokio::time::Instant;

use crate::core::Core;
use crate::dist::control::{Control, ProcessRef};
use crate::etf::{Atom, Pid, Reference, Term};
use crate::events::NodeEvent;
// A fixed hasher, so runs repeat (the deterministic simulator replays a seed).
use crate::hash::FastMap as HashMap;
use crate::registry::LocalProcess;
use crate::remote::RemoteTarget;
pub use machine::GlobalError;
use machine::{Action, CallId, CallTo, Config, Dest, Input, Machine, Reply, Request, RequestId};

/// Timeout of one call to another node's name server.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a local request may take (a registration retries for up to 30 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Messages of the global name server.
#[derive(Debug)]
pub(crate) enum GlobalMsg {
    /// An input for the state machine.
    Input(Input),
    /// A local request and where its answer goes.
    Request(Request, RpcReplyPort<Reply>),
    /// A connection attempt we made ended (`true`: connected).
    Connected(Atom, bool),
}

impl ractor::Message for GlobalMsg {}

pub(crate) struct GlobalServer;

/// The actor's side: the machine and what its actions started.
pub(crate) struct GlobalState {
    shared: Arc<Core>,
    me: ActorRef<GlobalMsg>,
    gns: Pid,
    machine: Machine,
    epoch: Instant,
    requests: HashMap<RequestId, RpcReplyPort<Reply>>,
    next_request: u64,
    timers: Vec<tokio::task::JoinHandle<Result<(), ractor::MessagingErr<GlobalMsg>>>>,
    /// Monitored local actors.
    local: HashMap<ActorId, (Pid, ActorCell)>,
    /// Monitored remote processes: the monitor and the task waiting for its DOWN.
    remote: HashMap<Pid, (Reference, tokio::task::JoinHandle<()>)>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Remote processes to monitor once their node is connected (we are connecting).
    deferred: HashMap<Atom, Vec<Pid>>,
}

impl Drop for GlobalState {
    fn drop(&mut self) {
        for t in &self.timers {
            t.abort();
        }
        for (_, t) in self.remote.values() {
            t.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::fmt::Debug for GlobalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalState")
            .field("machine", &self.machine)
            .finish_non_exhaustive()
    }
}

pub(crate) struct GlobalArgs {
    pub shared: Arc<Core>,
    pub gns: Pid,
    pub locker: Pid,
}

fn random_u64() -> u64 {
    // Seeded in the simulator; the machine only spreads its retries with it.
    crate::random::u64().unwrap_or(0x5eed)
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
                Some(GlobalMsg::Input(match event {
                    NodeEvent::Up { node, hidden, .. } => Input::NodeUp {
                        node: Atom::new(node),
                        hidden,
                    },
                    NodeEvent::Down { node, .. } => Input::NodeDown(Atom::new(node)),
                }))
            });
        let creation = args.shared.id.creation;
        let machine = Machine::new(Config {
            me: args.shared.id.name.clone(),
            gns: args.gns.clone(),
            locker: args.locker,
            registrar: args.shared.id.router_pid.clone(),
            incarnation: i64::from(creation) + (1 << 59),
            seed: random_u64(),
        });
        Ok(GlobalState {
            shared: args.shared,
            me: myself,
            gns: args.gns,
            machine,
            epoch: Instant::now(),
            requests: HashMap::default(),
            next_request: 0,
            timers: Vec::new(),
            local: HashMap::default(),
            remote: HashMap::default(),
            tasks: vec![events],
            deferred: HashMap::default(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<GlobalMsg>,
        message: GlobalMsg,
        state: &mut GlobalState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            GlobalMsg::Input(input) => {
                if let Input::NodeUp { node, .. } = &input {
                    state.resume_monitors(node);
                }
                state.feed(input)
            }
            GlobalMsg::Connected(node, connected) => {
                if state.shared.session(&node).is_some() {
                    state.resume_monitors(&node);
                } else if !connected {
                    // As a monitor on a node that cannot be reached: the process is down.
                    for pid in state.deferred.remove(&node).unwrap_or_default() {
                        state.feed(Input::ProcessDown(pid));
                    }
                }
            }
            GlobalMsg::Request(request, reply) => {
                state.next_request += 1;
                let id = RequestId(state.next_request);
                state.requests.insert(id, reply);
                state.feed(Input::Request(id, request));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<GlobalMsg>,
        event: SupervisionEvent,
        state: &mut GlobalState,
    ) -> Result<(), ActorProcessingErr> {
        // Events of the local actors we monitor (registered names, lock holders).
        if let SupervisionEvent::ActorTerminated(cell, ..)
        | SupervisionEvent::ActorFailed(cell, _) = event
        {
            if let Some((pid, _)) = state.local.remove(&cell.get_id()) {
                state.feed(Input::ProcessDown(pid));
            }
        }
        Ok(())
    }
}

impl GlobalState {
    /// Runs an input through the machine and performs the actions, and any input they give
    /// at once (a monitor on a process that is already gone).
    fn feed(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            tracing::trace!(me = %self.shared.id.name, ?input, "global: input");
            let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            for action in self.machine.handle(input, now) {
                if let Some(next) = self.perform(action) {
                    inputs.push_back(next);
                }
            }
        }
    }

    fn perform(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::Send { to, msg } => self.send(to, msg),
            Action::SetTimer { timer, after_ms } => {
                self.timers.retain(|t| !t.is_finished());
                let handle = self
                    .me
                    .send_after(Duration::from_millis(after_ms), move || {
                        GlobalMsg::Input(Input::Timer(timer))
                    });
                self.timers.push(handle);
            }
            Action::Monitor(pid) => return self.monitor(pid),
            Action::Demonitor(pid) => self.demonitor(&pid),
            Action::Link(pid) => self.link(pid, true),
            Action::Unlink(pid) => self.link(pid, false),
            Action::Connect(node) => self.connect(node),
            Action::Disconnect(node) => {
                if let Some(s) = self.shared.session(&node) {
                    s.actor.stop(Some("remove_connection".into()));
                }
            }
            Action::Call { id, to, request } => self.call(id, to, request),
            Action::Exit { pid, reason } => self.exit(pid, reason),
            Action::Reply { to, reply } => {
                if let Some(port) = self.requests.remove(&to) {
                    let _ = port.send(self.alive_only(reply));
                }
            }
        }
        None
    }

    /// Is a local pid's process alive? (A remote one is believed alive.)
    fn alive(&self, pid: &Pid) -> bool {
        pid.node != self.shared.id.name
            || matches!(
                self.shared.resolve(&ProcessRef::Pid(pid.clone())),
                Some(LocalProcess::Actor(_)) | Some(LocalProcess::Service(_))
            )
    }

    /// Leaves out local processes that stopped and whose monitor event is still on its way.
    fn alive_only(&self, reply: Reply) -> Reply {
        match reply {
            Reply::Where(Some(p)) if !self.alive(&p) => Reply::Where(None),
            Reply::Names(names) => {
                Reply::Names(names.into_iter().filter(|(_, p)| self.alive(p)).collect())
            }
            other => other,
        }
    }

    fn send(&self, to: Dest, msg: Term) {
        match to {
            Dest::Gns(node) => {
                if let Some(session) = self.shared.session(&node) {
                    session.send(
                        Control::RegSend {
                            from: self.gns.clone(),
                            to_name: Atom::new("global_name_server"),
                        },
                        Some(msg),
                    );
                }
            }
            // Local or remote, the router's one rule of delivery.
            Dest::Pid(pid) => self.shared.send_pid(&pid, msg),
        }
    }

    fn monitor(&mut self, pid: Pid) -> Option<Input> {
        if self.shared.id.is_local(&pid) {
            return match self.shared.resolve(&ProcessRef::Pid(pid.clone())) {
                Some(LocalProcess::Actor(actor)) => {
                    self.me.get_cell().monitor(actor.cell.clone());
                    if actor.cell.get_status() >= ractor::ActorStatus::Stopping {
                        // It stopped before the monitor took: no event will come.
                        self.me.get_cell().unmonitor(actor.cell.clone());
                        return Some(Input::ProcessDown(pid));
                    }
                    self.local
                        .insert(actor.cell.get_id(), (pid, actor.cell.clone()));
                    None
                }
                // The node's own services run as long as the node.
                Some(_) => None,
                None => Some(Input::ProcessDown(pid)),
            };
        }
        if self.shared.session(&pid.node).is_none() {
            // As Erlang's monitor, connect first (a name learned from a peer may live on a
            // node we are about to connect to).
            let node = pid.node.clone();
            let first = !self.deferred.contains_key(&node);
            self.deferred.entry(node.clone()).or_default().push(pid);
            if first {
                self.connect(node);
            }
            return None;
        }
        let Some((reference, down)) = self.shared.monitor_remote(&RemoteTarget::Pid(pid.clone()))
        else {
            return Some(Input::ProcessDown(pid));
        };
        let me = self.me.clone();
        let watched = pid.clone();
        let task = tokio::spawn(async move {
            if down.await.is_ok() {
                let _ = me.cast(GlobalMsg::Input(Input::ProcessDown(watched)));
            }
        });
        if let Some((old, task)) = self.remote.insert(pid.clone(), (reference, task)) {
            task.abort();
            self.remove_remote_monitor(&pid, old);
        }
        None
    }

    fn demonitor(&mut self, pid: &Pid) {
        if self.shared.id.is_local(pid) {
            let id = self
                .local
                .iter()
                .find(|(_, (p, _))| p == pid)
                .map(|(id, _)| *id);
            if let Some((_, cell)) = id.and_then(|id| self.local.remove(&id)) {
                self.me.get_cell().unmonitor(cell);
            }
        } else if let Some((reference, task)) = self.remote.remove(pid) {
            task.abort();
            self.remove_remote_monitor(pid, reference);
        } else if let Some(waiting) = self.deferred.get_mut(&pid.node) {
            waiting.retain(|p| p != pid);
        }
    }

    /// Monitors the processes that waited for their node's connection.
    fn resume_monitors(&mut self, node: &Atom) {
        if self.shared.session(node).is_none() {
            return;
        }
        for pid in self.deferred.remove(node).unwrap_or_default() {
            if let Some(down) = self.monitor(pid) {
                self.feed(down);
            }
        }
    }

    fn remove_remote_monitor(&self, pid: &Pid, reference: Reference) {
        self.shared
            .demonitor_remote(&RemoteTarget::Pid(pid.clone()), reference);
    }

    /// Links or unlinks `global_name_server` and a remote process (`register_ext`).
    fn link(&self, pid: Pid, link: bool) {
        let Some(session) = self.shared.session(&pid.node) else {
            return;
        };
        let from = self.gns.clone();
        let control = if link {
            Control::Link { from, to: pid }
        } else {
            Control::Unlink { from, to: pid }
        };
        session.send(control, None);
    }

    /// Connects to `node`; [`GlobalMsg::Connected`] tells how it went.
    fn connect(&mut self, node: Atom) {
        let shared = self.shared.clone();
        let me = self.me.clone();
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(tokio::spawn(async move {
            let mut connected = shared.session(&node).is_some();
            if let (false, Some(cell)) = (connected, shared.server.get()) {
                let server: ActorRef<crate::server::NodeServerMsg> = cell.clone().into();
                connected = matches!(
                    server
                        .call(
                            |reply| crate::server::NodeServerMsg::Connect {
                                node: node.as_str().to_owned(),
                                addr: None,
                                tls: shared.id.config.tls.is_some(),
                                reply,
                            },
                            Some(CALL_TIMEOUT),
                        )
                        .await,
                    Ok(ractor::rpc::CallResult::Success(Ok(())))
                );
            }
            let _ = me.cast(GlobalMsg::Connected(node, connected));
        }));
    }

    /// A call to another node; the answer (or `None`) comes back as an input.
    fn call(&mut self, id: CallId, to: CallTo, request: Term) {
        let target = match to {
            CallTo::Gns(node) => RemoteTarget::Name {
                name: Atom::new("global_name_server"),
                node,
            },
            CallTo::Rex(node) => RemoteTarget::Name {
                name: Atom::new("rex"),
                node,
            },
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared
            .call(&target, request, RpcReplyPort::from((tx, CALL_TIMEOUT)));
        let me = self.me.clone();
        self.tasks.retain(|t| !t.is_finished());
        self.tasks.push(tokio::spawn(async move {
            let reply = match tokio::time::timeout(CALL_TIMEOUT, rx).await {
                Ok(Ok(bytes)) => Term::decode_slice(&bytes).ok(),
                _ => None,
            };
            let _ = me.cast(GlobalMsg::Input(Input::CallReply(id, reply)));
        }));
    }

    /// `exit(Pid, Reason)`, as Erlang's `exit/2` from the name server.
    fn exit(&self, pid: Pid, reason: Term) {
        self.shared.exit(&self.gns, &pid, reason);
    }
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
                let _ = server.cast(GlobalMsg::Input(Input::Message {
                    from: from.clone(),
                    msg,
                }));
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
        let _ = actor.cast(GlobalMsg::Input(Input::NodeUp {
            node: Atom::new(node),
            hidden,
        }));
    }
    Ok(actor)
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

    async fn ask(&self, request: Request, timeout: Duration) -> Result<Reply, GlobalError> {
        match self
            .server()?
            .call(|r| GlobalMsg::Request(request, r), Some(timeout))
            .await
        {
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
        match self.ask(Request::Whereis(name), CALL_TIMEOUT).await {
            Ok(Reply::Where(p)) => p,
            _ => None,
        }
    }

    /// Every global name and its pid.
    pub async fn registered_names(&self) -> Vec<(Term, Pid)> {
        match self.ask(Request::Names, CALL_TIMEOUT).await {
            Ok(Reply::Names(names)) => names,
            _ => Vec::new(),
        }
    }

    /// The nodes this node is in sync with.
    pub async fn known_nodes(&self) -> Vec<String> {
        match self.ask(Request::Known, CALL_TIMEOUT).await {
            Ok(Reply::Known(nodes)) => nodes.iter().map(|a| a.as_str().to_owned()).collect(),
            _ => Vec::new(),
        }
    }

    async fn done(&self, request: Request) -> Result<(), GlobalError> {
        match self.ask(request, REQUEST_TIMEOUT).await? {
            Reply::Done(result) => result,
            _ => Err(GlobalError::Stopping),
        }
    }

    /// Registers a pid under a name term on every known node, as `global:register_name/2`:
    /// fails when the name is taken or the pid has a name already.
    pub async fn register(&self, name: Term, pid: Pid) -> Result<(), GlobalError> {
        let method = machine::default_method();
        self.done(Request::Register { name, pid, method }).await
    }

    /// Removes a name everywhere, as `global:unregister_name/1`.
    pub async fn unregister(&self, name: Term) -> Result<(), GlobalError> {
        self.done(Request::Unregister(name)).await
    }

    /// Sets the lock `{resource, requester}` on this node and every known node, as
    /// `global:set_lock/3` with a bounded number of retries; the node's Rust side holds it
    /// until [`Global::del_lock`]. False when another requester held it throughout.
    pub async fn set_lock(&self, resource: Term, requester: Term) -> bool {
        let id = wire::LockId(resource, requester);
        matches!(
            self.ask(Request::SetLock(id), REQUEST_TIMEOUT).await,
            Ok(Reply::Lock(true))
        )
    }

    /// Releases a lock set with [`Global::set_lock`] here and on every known node, as
    /// `global:del_lock/1`.
    pub async fn del_lock(&self, resource: Term, requester: Term) {
        let id = wire::LockId(resource, requester);
        let _ = self.ask(Request::DelLock(id), CALL_TIMEOUT).await;
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
