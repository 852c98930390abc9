//! [`Node`]: the handle on a running node, and the API Rust code uses: names, links and
//! monitors with remote processes, rpc both ways, proxies, sends and calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use tokio::sync::broadcast;

use crate::core::Core;
use crate::dist::control::Control;
use crate::dist::DistFlags;
use crate::error::{ConnectError, NameProblem};
use crate::etf::{Atom, Pid, Reference, Term};
use crate::events::NodeEvent;
pub use crate::handle::CallError;
use crate::handle::ProcessHandle;
use crate::message::ErlangMessage;
use crate::registry::LocalProcess;
use crate::remote::{Raw, RemoteTarget};
use crate::server::NodeServerMsg;

/// A running node: a handle on its [`crate::NodeServer`] actor. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    pub(crate) actor: ActorRef<NodeServerMsg>,
    pub(crate) shared: Arc<Core>,
    pub(crate) port: u16,
    /// Where the metrics listener is bound, if it runs.
    pub(crate) metrics_addr: Option<SocketAddr>,
}

/// What [`Node::from_core`] needs besides the core.
pub(crate) struct NodeParts {
    pub(crate) actor: ActorRef<NodeServerMsg>,
    pub(crate) port: u16,
    pub(crate) metrics_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.shared.id.name)
            .field("port", &self.port)
            .finish()
    }
}

impl Node {
    /// The full node name.
    pub fn name(&self) -> &str {
        self.shared.id.name.as_str()
    }

    /// The creation EPMD gave this incarnation.
    pub fn creation(&self) -> u32 {
        self.shared.id.creation
    }

    /// The distribution listener's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address of the Prometheus metrics listener (`GET /metrics`), when the node was
    /// started with [`crate::NodeConfig::metrics_listen`]: the port the system picked when
    /// port 0 was asked for. See [`crate::metrics`].
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub(crate) fn shared(&self) -> &Arc<Core> {
        &self.shared
    }

    /// The [`crate::NodeServer`] actor.
    pub fn actor(&self) -> &ActorRef<NodeServerMsg> {
        &self.actor
    }

    /// Node up/down events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }

    /// The connected nodes and whether each connection is hidden.
    pub fn connected(&self) -> Vec<(String, bool)> {
        self.shared.sessions.connected()
    }

    /// Closes the connection to `node`, if any.
    pub fn disconnect(&self, node: &str) {
        let _ = self.actor.cast(NodeServerMsg::Disconnect(node.to_owned()));
    }

    /// Registers actor type `A` as spawnable kind `name` (`counter`, or `counter/2` for a
    /// version): Erlang's `spawn(Node, counter, start, [5])` and
    /// [`Node::spawn_on`] from other nodes start it here; see [`crate::kinds`] for how the
    /// arguments convert and what a failed spawn gives.
    pub fn spawnable<A>(
        &self,
        name: &str,
    ) -> Result<crate::kinds::KindInfo, crate::kinds::KindError>
    where
        A: ractor::Actor + Default,
        A::Msg: ErlangMessage,
        A::Arguments: crate::etf::FromTerm,
    {
        self.spawnable_with::<A>(crate::kinds::KindSpec::new(name))
    }

    /// [`Node::spawnable`] with a spec: a version in the name and required capabilities.
    pub fn spawnable_with<A>(
        &self,
        spec: crate::kinds::KindSpec,
    ) -> Result<crate::kinds::KindInfo, crate::kinds::KindError>
    where
        A: ractor::Actor + Default,
        A::Msg: ErlangMessage,
        A::Arguments: crate::etf::FromTerm,
    {
        self.spawnable_made(spec, |_| A::default())
    }

    /// [`Node::spawnable_with`] for an actor type made by `make` (given this node) at each
    /// spawn, for actors that hold the node or other state.
    pub fn spawnable_made<A>(
        &self,
        spec: crate::kinds::KindSpec,
        make: impl Fn(&Node) -> A + Send + Sync + 'static,
    ) -> Result<crate::kinds::KindInfo, crate::kinds::KindError>
    where
        A: ractor::Actor,
        A::Msg: ErlangMessage,
        A::Arguments: crate::etf::FromTerm,
    {
        crate::kinds::Kinds::of(&self.shared)
            .register::<A>(spec, move |core| Node::from_core(core).map(|n| make(&n)))
    }

    /// The node of `core`, while it runs (the node facade's parts are kept in a service slot,
    /// so that what the core holds does not hold the core).
    pub(crate) fn from_core(core: &Arc<Core>) -> Option<Node> {
        let parts = core.services.get::<NodeParts>()?;
        Some(Node {
            actor: parts.actor.clone(),
            shared: core.clone(),
            port: parts.port,
            metrics_addr: parts.metrics_addr,
        })
    }

    /// The kinds registered here, by name and version.
    pub fn kinds(&self) -> Vec<crate::kinds::KindInfo> {
        crate::kinds::Kinds::of(&self.shared).list()
    }

    /// Stops a local actor with an Erlang exit reason, as `exit(Reason)` ends an Erlang
    /// process: its links and monitors see `reason` (a plain `stop` gives `normal` or
    /// `{shutdown, Text}`).
    pub fn exit_actor<M: ractor::Message>(&self, actor: &ActorRef<M>, reason: Term) {
        let text = match &reason {
            Term::Atom(a) => a.as_str().to_owned(),
            other => other.to_string(),
        };
        if !reason.is_atom("normal") {
            self.shared
                .signals()
                .exit_reasons
                .insert(actor.get_id(), reason);
        }
        actor.stop(Some(text));
    }

    /// The counters of the connection with `node` (queued bytes, traffic, busy waits,
    /// drops; see [`crate::send_queue`]); `None` when not connected.
    pub fn connection_stats(&self, node: &str) -> Option<crate::send_queue::ConnSnapshot> {
        Some(self.shared.sessions.queue(&Atom::new(node))?.snapshot())
    }

    /// Traffic counters and uptime (see [`crate::ops`]).
    pub fn stats(&self) -> crate::ops::NodeStats {
        self.shared.ops.stats()
    }

    /// Resolves when the node has stopped, however it stopped: `init:stop/0,1` from another
    /// node (a graceful stop, see [`crate::ops`]), [`Node::stop_gracefully`],
    /// [`Node::shutdown`]. Returns the status `init:stop/1` gave, else 0, so a program can
    /// exit with it.
    pub async fn wait_stopped(&self) -> i32 {
        let _ = self.actor.get_cell().wait(None).await;
        self.shared.ops.exit_status()
    }

    /// Stops the node as `init:stop/0` from another node does: rpc calls in flight answer
    /// and queued messages are written (each for at most [`crate::ops::GRACE`]), then every
    /// connection closes and the node unregisters from EPMD. Returns once it has stopped.
    pub async fn stop_gracefully(&self) {
        self.shared.clone().stop_gracefully(0).await;
        self.wait_stopped().await;
    }

    /// Stops the node: closes every connection and unregisters from EPMD.
    pub async fn shutdown(self) {
        let _ = self
            .actor
            .stop_and_wait(Some("shutdown".into()), Some(Duration::from_secs(5)))
            .await;
    }

    pub(crate) async fn connect(
        &self,
        node: &str,
        addr: Option<SocketAddr>,
        tls: bool,
    ) -> Result<(), ConnectError> {
        let timeout = self.shared.id.config.setup_time * 3 + Duration::from_secs(1);
        let result = self
            .actor
            .call(
                |reply| NodeServerMsg::Connect {
                    node: node.to_owned(),
                    addr,
                    tls,
                    reply,
                },
                Some(timeout),
            )
            .await
            .map_err(|_| ConnectError::Stopping)?;
        match result {
            ractor::rpc::CallResult::Success(r) => r,
            ractor::rpc::CallResult::Timeout => Err(ConnectError::Timeout(node.to_owned())),
            ractor::rpc::CallResult::SenderError => Err(ConnectError::Stopping),
        }
    }
}

/// Why an actor could not be registered under a name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// A live process already has the name.
    #[error("the name {0} is taken")]
    NameTaken(String),
}

impl Node {
    /// The pid Erlang sees for a local actor (made on first use), so it can be put in
    /// messages and sent to.
    pub fn pid_of<M: ErlangMessage>(&self, actor: &ActorRef<M>) -> Pid {
        self.shared.router.expose(actor).pid.clone()
    }

    /// Registers a local actor under `name`, so Erlang can `{Name, Node} ! Msg` and
    /// `gen_server:call({Name, Node}, Request)`. The name is released when the actor stops.
    pub fn register<M: ErlangMessage>(
        &self,
        name: &str,
        actor: &ActorRef<M>,
    ) -> Result<Pid, RegisterError> {
        let local = self.shared.router.expose(actor);
        if !self
            .shared
            .registry()
            .register(Atom::new(name), LocalProcess::Actor(local.clone()))
        {
            return Err(RegisterError::NameTaken(name.to_owned()));
        }
        Ok(local.pid.clone())
    }

    /// Releases a registered name.
    pub fn unregister(&self, name: &str) -> bool {
        self.shared.registry().unregister(&Atom::new(name))
    }

    /// The names registered on this node (built-in services included).
    pub fn registered(&self) -> Vec<String> {
        self.shared
            .registry()
            .registered()
            .into_iter()
            .map(|a| a.as_str().to_owned())
            .collect()
    }

    /// Whether a local actor traps exits: with `true`, exit signals from remote processes
    /// (a linked process dying, `exit(Pid, Reason)`) arrive as `{'EXIT', From, Reason}`
    /// messages instead of stopping it; `exit(Pid, kill)` still kills it.
    pub fn trap_exits<M: ErlangMessage>(&self, actor: &ActorRef<M>, trap: bool) {
        self.shared.router.trap_exits(actor.get_id(), trap);
    }

    /// Links a local actor with a remote process, as `link/1`: when either exits, the other
    /// gets an exit signal (the actor stops, or gets `{'EXIT', Pid, Reason}` when it traps
    /// exits). Linking to a process that does not exist gives the actor a `noproc` signal.
    pub async fn link<M: ErlangMessage>(
        &self,
        actor: &ActorRef<M>,
        remote: &Pid,
    ) -> Result<(), ConnectError> {
        if self.shared.session(&remote.node).is_none() {
            self.connect(remote.node.as_str(), None, false).await?;
        }
        let session =
            self.shared
                .session(&remote.node)
                .ok_or_else(|| ConnectError::Unreachable {
                    node: remote.node.as_str().to_owned(),
                    reason: "connection closed".into(),
                })?;
        let local = self.shared.router.expose(actor);
        let linked = remote.clone();
        self.shared
            .watch(&local, move |s, id| s.add_link(id, linked));
        session.send(
            Control::Link {
                from: local.pid.clone(),
                to: remote.clone(),
            },
            None,
        );
        Ok(())
    }

    /// Removes a link made with [`Node::link`] (or by the remote process).
    pub fn unlink<M: ErlangMessage>(&self, actor: &ActorRef<M>, remote: &Pid) {
        let local = self.shared.router.expose(actor);
        if let Some(w) = self.shared.signals().watched.get_mut(&actor.get_id()) {
            w.links.retain(|p| p != remote);
        }
        if let Some(session) = self.shared.session(&remote.node) {
            let id = self.shared.id.next_id();
            session.send(
                Control::UnlinkId {
                    id,
                    from: local.pid.clone(),
                    to: remote.clone(),
                },
                None,
            );
        }
    }

    /// Monitors a remote process (by pid or registered name): the returned
    /// [`crate::signals::RemoteMonitor`] resolves with its exit reason.
    pub async fn monitor(
        &self,
        target: &RemoteTarget,
    ) -> Result<crate::signals::RemoteMonitor, ConnectError> {
        if self.shared.session(target.node()).is_none() {
            self.connect(target.node().as_str(), None, false).await?;
        }
        let (reference, rx) =
            self.shared
                .monitor_remote(target)
                .ok_or_else(|| ConnectError::Unreachable {
                    node: target.node().as_str().to_owned(),
                    reason: "connection closed".into(),
                })?;
        Ok(crate::signals::RemoteMonitor { reference, rx })
    }

    /// Monitors a remote process on behalf of a local actor: when the process exits, the
    /// actor receives `down(reason)` in its mailbox, as an Erlang process receives
    /// `{'DOWN', Ref, process, Obj, Reason}`.
    pub async fn monitor_for<M: ractor::Message>(
        &self,
        target: &RemoteTarget,
        actor: &ActorRef<M>,
        down: impl FnOnce(Term) -> M + Send + 'static,
    ) -> Result<Reference, ConnectError> {
        let monitor = self.monitor(target).await?;
        let reference = monitor.reference().clone();
        let actor = actor.clone();
        tokio::spawn(async move {
            let reason = monitor.down().await;
            let _ = actor.cast(down(reason));
        });
        Ok(reference)
    }

    /// Removes a monitor made with [`Node::monitor`].
    pub fn demonitor(&self, target: &RemoteTarget, monitor: crate::signals::RemoteMonitor) {
        self.shared.demonitor_remote(target, monitor.reference);
    }

    /// Makes `Module:Function(Args)` callable from Erlang with `rpc:call/4` and `erpc:call/4`.
    /// The function gets the argument list; see [`crate::rpc`] for how failures show in
    /// Erlang.
    pub fn register_fn<F, Fut>(&self, module: &str, function: &str, f: F)
    where
        F: Fn(Vec<Term>) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = crate::rpc::RpcResult> + Send + 'static,
    {
        let f: crate::rpc::RpcFn = Arc::new(move |args| Box::pin(f(args)));
        self.shared
            .functions
            .insert(Atom::new(module), Atom::new(function), f);
    }

    /// Calls `Module:Function(Args)` on another node (through its `rex`, as `rpc:call/5`).
    pub async fn rpc(
        &self,
        node: &str,
        module: &str,
        function: &str,
        args: Vec<Term>,
        timeout: Duration,
    ) -> Result<Term, crate::rpc::RpcError> {
        let target = RemoteTarget::Name {
            name: Atom::new("rex"),
            node: Atom::new(node),
        };
        let request = Term::tuple(vec![
            Term::atom("call"),
            Term::atom(module),
            Term::atom(function),
            Term::list(args),
            Term::atom("user"),
        ]);
        let reply = self.call(&target, request, timeout).await?;
        match reply.as_tuple() {
            Some([tag, reason]) if tag.is_atom("badrpc") => {
                Err(crate::rpc::RpcError::BadRpc(reason.clone()))
            }
            _ => Ok(reply),
        }
    }

    /// Where messages that no actor could decode go (after being logged).
    pub fn set_fallback(&self, fallback: Option<ActorRef<Raw>>) {
        self.shared.router.set_fallback(fallback);
    }

    /// A typed handle on a remote process: casts become `SEND`, calls become `gen_server`
    /// calls. Connects to the pid's node first when needed. The proxy behind it stops when
    /// the process exits (with its exit reason) or the connection goes; ask again for a new
    /// one (see [`crate::proxy`]).
    pub async fn remote_pid<M: ractor::Message>(
        &self,
        pid: Pid,
    ) -> Result<ActorRef<M>, ConnectError> {
        self.proxy(RemoteTarget::Pid(pid)).await
    }

    /// A typed handle on the process registered as `name` on `node`: casts become
    /// `REG_SEND`, calls `gen_server:call({Name, Node}, ...)`. Connects first when needed.
    pub async fn remote_name<M: ractor::Message>(
        &self,
        name: &str,
        node: &str,
    ) -> Result<ActorRef<M>, ConnectError> {
        self.proxy(RemoteTarget::Name {
            name: Atom::new(name),
            node: Atom::new(node),
        })
        .await
    }

    async fn proxy<M: ractor::Message>(
        &self,
        target: RemoteTarget,
    ) -> Result<ActorRef<M>, ConnectError> {
        let node = target.node().clone();
        if node == self.shared.id.name {
            return Err(ConnectError::BadName {
                name: node.as_str().to_owned(),
                problem: NameProblem::ThisNode,
            });
        }
        if let Some(cell) = self.shared.proxies.cached(&target) {
            return Ok(cell.into());
        }
        if self.shared.session(&node).is_none() {
            self.connect(node.as_str(), None, false).await?;
        }
        Ok(crate::proxy::proxy_cell(&self.shared, target).await?.into())
    }

    /// Sends a term to a process or registered name, of this node (delivered by the router,
    /// as a message from another node is: converted to the actor's message type) or of
    /// another (no connection: dropped, as in Erlang). To another node it cannot wait: when
    /// the connection's queue holds its hard cap, the message is dropped, counted and logged
    /// (see [`crate::send_queue`]); [`Node::process`] gives a handle whose `send` waits while
    /// the connection is busy.
    pub fn send(&self, target: &RemoteTarget, msg: Term) {
        let id = &self.shared.id;
        if *target.node() == id.name {
            self.shared
                .router
                .send(&target.process_ref(), msg, &id.name);
        } else {
            self.shared.send_term(target, msg);
        }
    }

    /// Sends `msg` to a process alias of another node (`Alias ! Msg`), from the node's router
    /// pid. With `priority`, as `erlang:send(Alias, Msg, [priority])` (EEP 76, OTP 28+): a
    /// process that made the alias with `alias([priority])` gets it ahead of its ordinary
    /// messages. The peer must have agreed `DFLAG_ALTACT_SIG` for that (OTP 28 and later);
    /// to an older peer it goes as an ordinary `ALIAS_SEND`, as OTP does. False when the
    /// alias's node is not connected (nothing is sent) or takes no aliases.
    pub fn send_to_alias(&self, alias: &crate::etf::Reference, msg: Term, priority: bool) -> bool {
        use crate::dist::control::{AltAct, AltActTarget};
        let Some(session) = self.shared.session(&alias.node) else {
            tracing::debug!(?alias, "no connection to the alias's node; message dropped");
            return false;
        };
        let from = self.shared.id.router_pid.clone();
        let control = if session.flags.contains(DistFlags::ALTACT_SIG) {
            let flags = if priority {
                AltAct::ALIAS | AltAct::PRIORITY
            } else {
                AltAct::ALIAS
            };
            Control::AltAct {
                flags,
                from,
                to: AltActTarget::Alias(alias.clone()),
                token: None,
            }
        } else if session.flags.contains(DistFlags::ALIAS) {
            Control::AliasSend {
                from,
                alias: alias.clone(),
            }
        } else {
            return false;
        };
        session.send_capped(control, Some(msg)).is_ok()
    }

    /// Calls a remote `gen_server` with a term and waits up to `timeout` for the reply term.
    pub async fn call(
        &self,
        target: &RemoteTarget,
        request: Term,
        timeout: Duration,
    ) -> Result<Term, CallError> {
        if self.shared.session(target.node()).is_none() {
            self.connect(target.node().as_str(), None, false).await?;
        }
        ProcessHandle::new(self.shared.clone(), target.clone())
            .call_term(request, timeout)
            .await
    }

    /// A handle for a remote process or name (see [`crate::handle`]): the direct send path,
    /// whose `send` waits while the connection is busy. Connects to its node first.
    pub async fn process(&self, target: &RemoteTarget) -> Result<ProcessHandle, ConnectError> {
        if self.shared.session(target.node()).is_none() {
            self.connect(target.node().as_str(), None, false).await?;
        }
        Ok(ProcessHandle::new(self.shared.clone(), target.clone()))
    }
}

/// Connects `node` to `peer` (`name@host`), resolving it through EPMD on the peer's host, and
/// returns once the session is up (or was already).
pub async fn client_connect(node: &Node, peer: &str) -> Result<(), ConnectError> {
    node.connect(peer, None, false).await
}

/// Connects to `peer` listening at `addr`, without asking EPMD.
pub async fn client_connect_addr(
    node: &Node,
    peer: &str,
    addr: SocketAddr,
) -> Result<(), ConnectError> {
    node.connect(peer, Some(addr), false).await
}

/// Like [`client_connect`], over TLS (the node needs a [`crate::tls::TlsConfig`]).
pub async fn client_connect_enc(node: &Node, peer: &str) -> Result<(), ConnectError> {
    node.connect(peer, None, true).await
}
