//! Where [`crate::Node::spawn_on`] starts an actor: a [`Placement`] chosen among the nodes
//! this node knows.
//!
//! # Candidates
//! This node, the nodes it is connected to, and the nodes registered with EPMD on the hosts
//! of those (found with `names`, then connected to when asked). Each answers
//! `node_server:placement/0` ([`Profile`]: its kinds, roles, capabilities and load); a node
//! that does not (an Erlang node) is no candidate, except for [`Placement::Node`], which
//! names the node and is obeyed as it is. A candidate must have the kind and satisfy the
//! kind's requirements as declared on that node ([`crate::kinds::KindSpec::requires`] against
//! its [`crate::NodeConfig::capabilities`]).
//!
//! # Strategies
//! - [`Placement::Node`]: that node.
//! - [`Placement::Random`]: any candidate, uniformly (the node's seeded randomness).
//! - [`Placement::RoundRobin`]: the candidates in name order, in turn. The turn is kept on
//!   the node that decides, per kind, in memory (it starts over when that node restarts):
//!   with `nodectl spawn --via NODE` that is NODE, without `--via` it is `nodectl`'s own
//!   short-lived node, so there round-robin starts at the first candidate each run.
//! - [`Placement::LeastLoaded`]: the fewest actors (`process_count`), then the least memory,
//!   then the fewest messages handled, as `node_server:info/0` reports them.
//! - [`Placement::Affinity`]: the candidate with the most members of the `pg` group (scope
//!   `pg`), as this node sees the group; none has any: no candidate.
//! - [`Placement::Repulsion`]: the candidate with the fewest members of the group.
//! - [`Placement::Host`]: the candidates on that host (the part of the name after `@`).
//! - [`Placement::Role`]: the candidates that declare the role
//!   ([`crate::NodeConfig::roles`]).
//!
//! Ties go to the smallest node name. No candidate is a [`SpawnError::NoCandidate`] that
//! names the requirement that failed.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::etf::{Atom, FromTerm, Term, ToTerm};
use crate::kinds::KindInfo;
use crate::node::Node;

/// Where to start an actor; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Placement {
    /// This node (full name `name@host`).
    Node(String),
    /// Any candidate.
    Random,
    /// The candidates in turn.
    RoundRobin,
    /// The least loaded candidate.
    LeastLoaded,
    /// Where members of this `pg` group are.
    Affinity(String),
    /// Where the fewest members of this `pg` group are.
    Repulsion(String),
    /// A candidate on this host.
    Host(String),
    /// A candidate with this role.
    Role(String),
}

impl std::str::FromStr for Placement {
    type Err = SpawnError;

    /// `random`, `round-robin`, `least-loaded`, `role:R`, `affinity:G`, `repulsion:G`,
    /// `host:H` or `node:N` (as `nodectl spawn --strategy` takes them).
    fn from_str(s: &str) -> Result<Placement, SpawnError> {
        let bad = || SpawnError::BadPlacement(s.to_owned());
        Ok(match s {
            "random" => Placement::Random,
            "round-robin" => Placement::RoundRobin,
            "least-loaded" => Placement::LeastLoaded,
            _ => {
                let (kind, arg) = s.split_once(':').ok_or_else(bad)?;
                if arg.is_empty() {
                    return Err(bad());
                }
                let arg = arg.to_owned();
                match kind {
                    "role" => Placement::Role(arg),
                    "affinity" => Placement::Affinity(arg),
                    "repulsion" => Placement::Repulsion(arg),
                    "host" => Placement::Host(arg),
                    "node" => Placement::Node(arg),
                    _ => return Err(bad()),
                }
            }
        })
    }
}

impl std::fmt::Display for Placement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Placement::Node(n) => write!(f, "node:{n}"),
            Placement::Random => f.write_str("random"),
            Placement::RoundRobin => f.write_str("round-robin"),
            Placement::LeastLoaded => f.write_str("least-loaded"),
            Placement::Affinity(g) => write!(f, "affinity:{g}"),
            Placement::Repulsion(g) => write!(f, "repulsion:{g}"),
            Placement::Host(h) => write!(f, "host:{h}"),
            Placement::Role(r) => write!(f, "role:{r}"),
        }
    }
}

/// Why a spawn did not happen.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SpawnError {
    /// A placement string that does not parse.
    #[error(
        "bad placement {0:?}: expected random, round-robin, least-loaded, role:R, affinity:G, \
         repulsion:G, host:H or node:N"
    )]
    BadPlacement(String),
    /// No node satisfies the placement and the kind's requirements.
    #[error("no candidate node for kind {kind}: {requirement}")]
    NoCandidate {
        /// The kind.
        kind: String,
        /// What no node satisfied.
        requirement: String,
    },
    /// The chosen node could not be reached.
    #[error("cannot reach {node}: {reason}")]
    Unreachable {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// The node refused the spawn (`not_allowed`, `badarg`, `notsup`, ...).
    #[error("{node} refused the spawn: {reason}")]
    Refused {
        /// The node.
        node: String,
        /// Its error.
        reason: String,
    },
    /// The process started and exited at once (an unknown kind, arguments that do not fit):
    /// the reason, as Erlang would see it.
    #[error("spawned process exited at once: {reason:#}")]
    Exited {
        /// The node.
        node: String,
        /// The exit reason.
        reason: Term,
    },
    /// No reply in time.
    #[error("{node} did not answer the spawn in time")]
    Timeout {
        /// The node.
        node: String,
    },
}

/// What a node of ours tells placement, `node_server:placement/0`: the map `#{kinds => [...],
/// roles => [...], capabilities => [{K, V}], process_count => N, memory_total => M,
/// messages => M, sources => Bool}`.
#[derive(Debug, Clone, PartialEq, Eq, ToTerm, FromTerm)]
pub struct Profile {
    /// Its spawnable kinds.
    pub kinds: Vec<KindInfo>,
    /// Its roles.
    pub roles: Vec<String>,
    /// Its capabilities, as (key, value).
    pub capabilities: Vec<(String, String)>,
    /// Actors it runs (as `node_server:info/0` counts them).
    pub process_count: u64,
    /// Its resident memory in bytes.
    pub memory_total: u64,
    /// Distribution messages it has sent and received.
    pub messages: u64,
    /// Whether it runs WebAssembly modules from other nodes (built with the `wasm` feature,
    /// with a source authority): a candidate for a spawn with [`SpawnOpts::source`]. Missing
    /// (an older node): false.
    #[term(default)]
    pub sources: bool,
}

impl Profile {
    /// The kind `kind` names here (a bare name: the highest version), if it is here.
    pub fn kind(&self, kind: &str) -> Option<&KindInfo> {
        let (name, version) = crate::kinds::parse_kind(kind).ok()?;
        self.kinds
            .iter()
            .filter(|k| k.name == name && version.is_none_or(|v| k.version == v))
            .max_by_key(|k| k.version)
    }

    /// Whether the node has every capability `requires` names.
    pub fn satisfies(&self, requires: &[(String, String)]) -> bool {
        requires.iter().all(|r| self.capabilities.contains(r))
    }
}

/// A candidate node and what it said.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// Its name.
    pub node: String,
    /// Its profile.
    pub profile: Profile,
}

/// Round-robin turns of the deciding node, per kind.
#[derive(Default)]
struct Turns(Mutex<std::collections::HashMap<String, Arc<AtomicUsize>>>);

/// How long a candidate has to answer `node_server:placement/0`.
const PROFILE_TIMEOUT: Duration = Duration::from_secs(3);

/// This node's profile.
pub(crate) fn profile(node: &Node) -> Profile {
    let info = crate::builtins::node_info(node.shared());
    Profile {
        kinds: node.kinds(),
        roles: node.shared().id.config.net.roles.clone(),
        capabilities: node.shared().id.config.capabilities.clone(),
        process_count: info.process_count,
        memory_total: info.memory_total,
        messages: info.traffic.messages_in + info.traffic.messages_out,
        sources: cfg!(feature = "wasm") && node.shared().id.config.source_authority.is_some(),
    }
}

/// The nodes placement considers, by name: this node, the connected ones, and those EPMD
/// lists on their hosts.
pub(crate) async fn known_nodes(node: &Node) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = node.connected().into_iter().map(|(n, _)| n).collect();
    names.insert(node.name().to_owned());
    let hosts: BTreeSet<String> = names
        .iter()
        .filter_map(|n| n.split_once('@').map(|(_, h)| h.to_owned()))
        .collect();
    let port = node.shared().id.config.net.epmd_port;
    for host in hosts {
        let client = epmd::Client::new(host.clone(), port).timeout(Duration::from_secs(2));
        if let Ok(listed) = client.names().await {
            for (name, _) in listed.nodes {
                names.insert(format!("{name}@{host}"));
            }
        }
    }
    names
}

/// The candidates for `kind`: the known nodes that answer with a profile that has the kind
/// and whose capabilities satisfy its requirements there.
pub(crate) async fn candidates(node: &Node, kind: &str, has_kind: bool) -> Vec<Candidate> {
    let names = known_nodes(node).await;
    // Asked all at once.
    let asks: Vec<_> = names
        .into_iter()
        .map(|name| {
            let node = node.clone();
            tokio::spawn(async move {
                let profile = if name == node.name() {
                    Some(profile(&node))
                } else {
                    node.rpc(&name, "node_server", "placement", vec![], PROFILE_TIMEOUT)
                        .await
                        .ok()
                        .and_then(|t| Profile::from_term(&t).ok())
                };
                profile.map(|profile| Candidate {
                    node: name,
                    profile,
                })
            })
        })
        .collect();
    let mut out = Vec::new();
    for ask in asks {
        if let Ok(Some(candidate)) = ask.await {
            out.push(candidate);
        }
    }
    out.retain(|c| {
        if has_kind {
            c.profile
                .kind(kind)
                .is_some_and(|k| c.profile.satisfies(&k.requires))
        } else {
            // From a module: nodes that take modules from other nodes, and this node (which
            // has the module, or the spawn fails naming it).
            c.profile.sources || c.node == node.name()
        }
    });
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// Picks the node for `kind` by `placement`.
pub(crate) async fn choose(
    node: &Node,
    placement: &Placement,
    kind: &str,
    has_kind: bool,
) -> Result<String, SpawnError> {
    if let Placement::Node(n) = placement {
        return Ok(n.clone());
    }
    let none = |requirement: String| SpawnError::NoCandidate {
        kind: kind.to_owned(),
        requirement,
    };
    let mut candidates = candidates(node, kind, has_kind).await;
    if candidates.is_empty() {
        return Err(none(format!(
            "no known node has kind {kind} with its requirements met"
        )));
    }
    match placement {
        Placement::Node(n) => Ok(n.clone()),
        Placement::Random => {
            // Without randomness, the first.
            let i = (crate::random::u64().unwrap_or(0) % candidates.len() as u64) as usize;
            Ok(candidates.swap_remove(i).node)
        }
        Placement::RoundRobin => {
            let turns = node.shared().services.get_or_insert(Turns::default);
            let turn = crate::lock(&turns.0)
                .entry(kind.to_owned())
                .or_default()
                .clone();
            let i = turn.fetch_add(1, Ordering::Relaxed) % candidates.len();
            Ok(candidates.swap_remove(i).node)
        }
        Placement::LeastLoaded => Ok(candidates
            .into_iter()
            .min_by_key(|c| {
                (
                    c.profile.process_count,
                    c.profile.memory_total,
                    c.profile.messages,
                )
            })
            .map(|c| c.node)
            .unwrap_or_default()),
        Placement::Affinity(group) | Placement::Repulsion(group) => {
            let members = node.groups().members(group).await;
            let count =
                |c: &Candidate| members.iter().filter(|p| p.node.as_str() == c.node).count();
            if let Placement::Affinity(_) = placement {
                let best = candidates
                    .iter()
                    .map(|c| (count(c), std::cmp::Reverse(c.node.clone())))
                    .max()
                    .filter(|(n, _)| *n > 0);
                best.map(|(_, std::cmp::Reverse(n))| n).ok_or_else(|| {
                    none(format!(
                        "affinity:{group}: no candidate has a member of {group}"
                    ))
                })
            } else {
                Ok(candidates
                    .iter()
                    .min_by_key(|c| (count(c), c.node.clone()))
                    .map(|c| c.node.clone())
                    .unwrap_or_default())
            }
        }
        Placement::Host(host) => candidates
            .into_iter()
            .find(|c| c.node.split_once('@').is_some_and(|(_, h)| h == host))
            .map(|c| c.node)
            .ok_or_else(|| none(format!("host:{host}: no candidate on host {host}"))),
        Placement::Role(role) => candidates
            .into_iter()
            .find(|c| c.profile.roles.iter().any(|r| r == role))
            .map(|c| c.node)
            .ok_or_else(|| none(format!("role:{role}: no candidate has role {role}"))),
    }
}

/// Options of [`Node::spawn_on`].
#[derive(Debug, Clone)]
pub struct SpawnOpts {
    source: Option<crate::sources::ModuleHash>,
    link: Option<crate::etf::Pid>,
    monitor: bool,
    register: Option<String>,
    function: String,
    timeout: Duration,
}

impl Default for SpawnOpts {
    fn default() -> SpawnOpts {
        SpawnOpts {
            source: None,
            link: None,
            monitor: false,
            register: None,
            function: "start".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl SpawnOpts {
    /// Links the new process with the local actor of pid `pid` (see [`Node::pid_of`]) from
    /// the first moment, as `spawn_link`: each takes the other down (unless trapping exits).
    /// For a spawn on another node.
    pub fn link(mut self, pid: crate::etf::Pid) -> SpawnOpts {
        self.link = Some(pid);
        self
    }

    /// Monitors the new process: [`Spawned::monitor`] resolves with its exit reason. For a
    /// spawn on another node.
    pub fn monitor(mut self) -> SpawnOpts {
        self.monitor = true;
        self
    }

    /// Registers the new process under `name` on its node.
    pub fn register(mut self, name: impl Into<String>) -> SpawnOpts {
        self.register = Some(name.into());
        self
    }

    /// The function of the MFA on an Erlang node (default `start`; a node of ours ignores it).
    pub fn function(mut self, function: impl Into<String>) -> SpawnOpts {
        self.function = function.into();
        self
    }

    /// Starts the kind from the WebAssembly module `hash` (see `node_server::wasm`, feature
    /// `wasm`): the candidates are this node and the nodes of ours that take modules from
    /// other nodes (a source authority; [`Profile::sources`]), whether they have the module
    /// or not; the chosen node fetches the module from this one when it lacks it, and runs
    /// it as a version of the kind (the same version for the same module). This node must
    /// have the module.
    pub fn source(mut self, hash: crate::sources::ModuleHash) -> SpawnOpts {
        self.source = Some(hash);
        self
    }

    /// How long the chosen node has to answer (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> SpawnOpts {
        self.timeout = timeout;
        self
    }
}

/// How long a node may take to fetch a module for a spawn (`wasm::FETCH_TIMEOUT` where the
/// feature is on).
const FETCH_WAIT: Duration = Duration::from_secs(30);

/// A process [`Node::spawn_on`] started.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid.
    pub pid: crate::etf::Pid,
    /// Its node.
    pub node: String,
    /// With [`SpawnOpts::monitor`]: resolves with its exit reason.
    pub monitor: Option<crate::signals::RemoteMonitor>,
}

impl Node {
    /// Starts `kind` with `args` on the node `placement` picks (see [`crate::placement`]):
    /// on a node of ours a spawnable kind ([`crate::kinds`]), on an Erlang node named by
    /// [`Placement::Node`] the MFA `kind:start(Args...)` ([`SpawnOpts::function`]).
    ///
    /// A process that exits at once (an unknown kind, arguments that do not fit) is
    /// [`SpawnError::Exited`], not a dead pid (unless linked with [`SpawnOpts::link`], whose
    /// actor gets the exit signal instead); a name of [`SpawnOpts::register`] that cannot be
    /// registered stops the new process again and is [`SpawnError::Refused`].
    pub async fn spawn_on(
        &self,
        placement: &Placement,
        kind: &str,
        args: Vec<Term>,
        opts: SpawnOpts,
    ) -> Result<Spawned, SpawnError> {
        let target = choose(self, placement, kind, opts.source.is_none()).await?;
        // From a module: the version of the kind that runs it on the chosen node.
        let kind = match &opts.source {
            None => kind.to_owned(),
            Some(hash) => self.source_kind(&target, hash, kind, opts.timeout).await?,
        };
        let kind = kind.as_str();
        let spawned = if target == self.name() {
            self.spawn_here(kind, &args).await?
        } else {
            self.spawn_there(&target, kind, args, &opts).await?
        };
        if let Some(name) = &opts.register {
            let args = vec![Term::atom(name), Term::Pid(spawned.pid.clone())];
            // This node's own actor is registered here: an rpc does not go to oneself.
            let registered = if spawned.node == self.name() {
                crate::builtins::register(self.shared(), args).map_err(|e| match e {
                    crate::rpc::RpcFailure::Error(t)
                    | crate::rpc::RpcFailure::Exit(t)
                    | crate::rpc::RpcFailure::Throw(t) => t.to_string(),
                })
            } else {
                self.rpc(&spawned.node, "erlang", "register", args, opts.timeout)
                    .await
                    .map_err(|e| match e {
                        // `{'EXIT', {badarg, Stack}}`: the reason without the stack.
                        crate::rpc::RpcError::BadRpc(reason) => crate::rpc::badrpc_reason(&reason),
                        other => other.to_string(),
                    })
            };
            if !matches!(&registered, Ok(t) if t.is_atom("true")) {
                // Nothing is left half-started: the new process goes again.
                self.kill_spawned(&spawned, opts.timeout).await;
                let why = match registered {
                    Ok(other) => other.to_string(),
                    Err(e) => e,
                };
                return Err(SpawnError::Refused {
                    node: spawned.node,
                    reason: format!(
                        "cannot register {name}: {why} (the name is taken, or not a valid name)"
                    ),
                });
            }
        }
        Ok(spawned)
    }

    /// The kind that runs module `hash` as `kind` on `target` (`node_server_wasm:prepare/3`
    /// there, which fetches the module from this node when it lacks it).
    async fn source_kind(
        &self,
        target: &str,
        hash: &crate::sources::ModuleHash,
        kind: &str,
        timeout: Duration,
    ) -> Result<String, SpawnError> {
        let refused = |reason: String| SpawnError::Refused {
            node: target.to_owned(),
            reason,
        };
        if target == self.name() {
            #[cfg(feature = "wasm")]
            return self
                .wasm_kind(hash, kind, None)
                .await
                .map_err(|e| refused(e.to_string()));
            #[cfg(not(feature = "wasm"))]
            return Err(refused(format!(
                "cannot run module {hash} as {kind}: built without the wasm feature"
            )));
        }
        let args = vec![Term::binary(hash.to_string()), Term::binary(kind)];
        // The target fetches the module from this node when it lacks it: the rpc waits as
        // long as a fetch may, and then the spawn's own time.
        let wait = FETCH_WAIT + timeout;
        let reply = self
            .rpc(target, "node_server_wasm", "prepare", args, wait)
            .await
            .map_err(|e| match e {
                crate::rpc::RpcError::BadRpc(reason) if crate::rpc::is_undef(&reason) => {
                    refused(format!(
                        "{target} runs no WebAssembly modules (built without the wasm feature)"
                    ))
                }
                crate::rpc::RpcError::BadRpc(reason) => refused(crate::rpc::badrpc_reason(&reason)),
                crate::rpc::RpcError::Call(e) => SpawnError::Unreachable {
                    node: target.to_owned(),
                    reason: e.to_string(),
                },
            })?;
        match reply.as_tuple() {
            Some([ok, Term::Binary(full)]) if ok.is_atom("ok") => {
                Ok(String::from_utf8_lossy(full).into_owned())
            }
            Some([_, Term::Binary(why)]) => Err(refused(String::from_utf8_lossy(why).into_owned())),
            _ => Err(refused(format!("unexpected answer {reply}"))),
        }
    }

    /// Stops a process [`Node::spawn_on`] started (`exit(Pid, kill)`) and waits (up to
    /// `timeout`) until it is gone; best effort.
    async fn kill_spawned(&self, spawned: &Spawned, timeout: Duration) {
        let pid = spawned.pid.clone();
        let args = vec![Term::Pid(pid.clone()), Term::atom("kill")];
        if spawned.node == self.name() {
            let actor = match self
                .shared()
                .resolve(&crate::dist::control::ProcessRef::Pid(pid))
            {
                Some(crate::registry::LocalProcess::Actor(actor)) => Some(actor),
                _ => None,
            };
            let _ = crate::builtins::exit(self.shared(), args);
            if let Some(actor) = actor {
                let _ = actor.cell.wait(Some(timeout)).await;
            }
        } else {
            let monitor = self
                .shared()
                .monitor_remote(&crate::remote::RemoteTarget::Pid(pid));
            let _ = self
                .rpc(&spawned.node, "erlang", "exit", args, timeout)
                .await;
            if let Some((_, down)) = monitor {
                let _ = tokio::time::timeout(timeout, down).await;
            }
        }
    }

    async fn spawn_here(&self, kind: &str, args: &[Term]) -> Result<Spawned, SpawnError> {
        let actor = crate::kinds::Kinds::of(self.shared())
            .start(self.shared(), kind, args)
            .await
            .map_err(|e| SpawnError::Exited {
                node: self.name().to_owned(),
                reason: e.exit_reason(&Atom::new(kind), &Atom::new("start"), args),
            })?;
        Ok(Spawned {
            pid: actor.pid.clone(),
            node: self.name().to_owned(),
            monitor: None,
        })
    }

    async fn spawn_there(
        &self,
        target: &str,
        kind: &str,
        args: Vec<Term>,
        opts: &SpawnOpts,
    ) -> Result<Spawned, SpawnError> {
        let unreachable = |reason: String| SpawnError::Unreachable {
            node: target.to_owned(),
            reason,
        };
        if self.shared().session(&Atom::new(target)).is_none() {
            self.connect(target, None, false)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        }
        let core = self.shared();
        // The requester: the actor to link, or the router.
        let (from, linked) = match &opts.link {
            Some(pid) => match core.resolve(&crate::dist::control::ProcessRef::Pid(pid.clone())) {
                Some(crate::registry::LocalProcess::Actor(actor)) => (pid.clone(), Some(actor)),
                _ => return Err(unreachable(format!("no local actor {pid:?} to link"))),
            },
            None => (core.id.router_pid.clone(), None),
        };
        let mut spawn_opts = Vec::new();
        if linked.is_some() {
            spawn_opts.push(Term::atom("link"));
        }
        // Without a link, the router monitors the new process from the first moment, so a
        // spawn that fails at once (an unknown kind, arguments that do not fit: the node
        // answers with a pid whose DOWN follows the reply) is an error here, not a dead pid.
        let (down, down_rx) = match linked {
            Some(_) => (None, None),
            None => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                (Some(tx), Some(rx))
            }
        };
        let reply = crate::spawn::request(
            core,
            &Atom::new(target),
            &from,
            (Atom::new(kind), Atom::new(&opts.function), args),
            spawn_opts,
            opts.timeout,
            down,
        )
        .await
        .map_err(|e| match e {
            crate::spawn::SpawnFailure::Timeout => SpawnError::Timeout {
                node: target.to_owned(),
            },
            crate::spawn::SpawnFailure::NotConnected => unreachable("connection closed".into()),
        })?;
        let pid = match reply.result {
            Term::Pid(pid) => pid,
            other => {
                return Err(SpawnError::Refused {
                    node: target.to_owned(),
                    reason: other.to_string(),
                })
            }
        };
        if let Some(actor) = linked.filter(|_| reply.flags & 1 != 0) {
            let remote = pid.clone();
            core.watch(&actor, move |s, id| s.add_link(id, remote));
        }
        let remote = crate::remote::RemoteTarget::Pid(pid.clone());
        let monitor = match down_rx {
            Some(mut rx) => {
                // A round trip behind the reply: a DOWN sent at once has arrived by its end.
                let _ = self
                    .rpc(
                        target,
                        "erlang",
                        "is_process_alive",
                        vec![Term::Pid(pid.clone())],
                        opts.timeout,
                    )
                    .await;
                let rx = match rx.try_recv() {
                    Ok(reason) if !reason.is_atom("normal") => {
                        return Err(SpawnError::Exited {
                            node: target.to_owned(),
                            reason,
                        })
                    }
                    // It ran and finished (an MFA on an Erlang node): its monitor has fired.
                    Ok(normal) => {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        let _ = tx.send(normal);
                        rx
                    }
                    Err(_) => rx,
                };
                let monitor = crate::signals::RemoteMonitor {
                    reference: reply.req_id,
                    rx,
                };
                if opts.monitor {
                    Some(monitor)
                } else {
                    self.demonitor(&remote, monitor);
                    None
                }
            }
            None if opts.monitor => core
                .monitor_remote(&remote)
                .map(|(reference, rx)| crate::signals::RemoteMonitor { reference, rx }),
            None => None,
        };
        Ok(Spawned {
            pid,
            node: target.to_owned(),
            monitor,
        })
    }
}

/// `node_server:placement/0` (this node's [`Profile`]) and `node_server:spawn/3` (`spawn(Kind,
/// Args, Opts)`, placement decided on this node; Opts a map with `placement` (a binary such
/// as `<<"round-robin">>`, default `<<"random">>`), `register` (an atom) and `source` (a
/// module hash, `<<"sha256:...">>`: [`SpawnOpts::source`]); answers `{ok, Pid}` or `{error,
/// Text}`), for `nodectl spawn --via`.
pub(crate) fn register_functions(node: &Node) {
    let weak = std::sync::Arc::downgrade(node.shared());
    node.register_fn("node_server", "placement", move |_args| {
        let node = weak.upgrade().and_then(|core| Node::from_core(&core));
        async move {
            match node {
                Some(node) => Ok(profile(&node).to_term()),
                None => Err(crate::rpc::RpcFailure::Exit(Term::atom("shutdown"))),
            }
        }
    });
    let weak = std::sync::Arc::downgrade(node.shared());
    node.register_fn("node_server", "spawn", move |args| {
        let node = weak.upgrade().and_then(|core| Node::from_core(&core));
        async move {
            let Some(node) = node else {
                return Err(crate::rpc::RpcFailure::Exit(Term::atom("shutdown")));
            };
            let [kind, Term::List(spawn_args), opts] = &args[..] else {
                return Err(crate::rpc::RpcFailure::badarg());
            };
            let kind = match kind {
                Term::Atom(a) => a.as_str().to_owned(),
                Term::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                _ => return Err(crate::rpc::RpcFailure::badarg()),
            };
            let text = |key: &str| -> Option<String> {
                match opts {
                    Term::Map(m) => m.get(&Term::atom(key)).and_then(|v| match v {
                        Term::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
                        Term::Atom(a) => Some(a.as_str().to_owned()),
                        _ => None,
                    }),
                    _ => None,
                }
            };
            let outcome = async {
                let placement: Placement = text("placement")
                    .unwrap_or_else(|| "random".into())
                    .parse()?;
                let mut spawn_opts = SpawnOpts::default();
                if let Some(name) = text("register") {
                    spawn_opts = spawn_opts.register(name);
                }
                if let Some(hash) = text("source") {
                    let hash = hash.parse().map_err(|e: crate::sources::SourceError| {
                        SpawnError::Refused {
                            node: node.name().to_owned(),
                            reason: e.to_string(),
                        }
                    })?;
                    spawn_opts = spawn_opts.source(hash);
                }
                node.spawn_on(&placement, &kind, spawn_args.clone(), spawn_opts)
                    .await
            }
            .await;
            Ok(match outcome {
                Ok(s) => Term::tuple(vec![Term::atom("ok"), Term::Pid(s.pid)]),
                Err(e) => Term::tuple(vec![Term::atom("error"), Term::binary(e.to_string())]),
            })
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placements_parse_and_print_back() {
        for s in [
            "random",
            "round-robin",
            "least-loaded",
            "role:web",
            "affinity:cache",
            "repulsion:cache",
            "host:box1",
            "node:a@h",
        ] {
            let p: Placement = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        for bad in ["", "rand", "role:", "color:red", ":x"] {
            assert!(bad.parse::<Placement>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_profile_picks_the_highest_version_and_checks_requirements() {
        let kind = |version, requires: &[(&str, &str)]| KindInfo {
            name: "counter".into(),
            version,
            requires: requires
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let p = Profile {
            kinds: vec![kind(1, &[]), kind(2, &[("gpu", "yes")])],
            roles: vec![],
            capabilities: vec![("gpu".into(), "no".into())],
            process_count: 0,
            memory_total: 0,
            messages: 0,
            sources: false,
        };
        assert_eq!(p.kind("counter").map(|k| k.version), Some(2));
        assert_eq!(p.kind("counter/1").map(|k| k.version), Some(1));
        assert!(p.kind("counter/3").is_none());
        assert!(p.kind("other").is_none());
        let k2 = p.kind("counter").unwrap();
        assert!(!p.satisfies(&k2.requires), "gpu=no does not meet gpu=yes");
        assert!(p.satisfies(&[]));
        let term = p.to_term();
        assert_eq!(Profile::from_term(&term).unwrap(), p);
    }
}
