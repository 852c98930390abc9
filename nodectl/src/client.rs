//! What `nodectl` asks of EPMD and of nodes, as typed results: the part a dashboard reuses.
//!
//! [`Ctl`] joins the cluster as a hidden node (started on first use, not registered with
//! EPMD, listening on loopback only, running no `pg` scope) and asks each node through standard interfaces only:
//! `net_kernel`'s `is_auth` for a ping, and `rpc` (the node's `rex`) of functions every
//! Erlang node has (`erlang:registered/0`, `erlang:nodes/1`, `erlang:system_info/1`,
//! `init:stop/0`, ...), which nodes of this workspace answer too ([`node_server::builtins`]).
//! For the figures of [`Ctl::info`], nodes of ours answer `node_server:info/0`; Erlang nodes
//! are asked with several standard calls.
//!
//! ```no_run
//! # async fn demo() -> Result<(), nodectl::CtlError> {
//! use nodectl::client::{Ctl, Options};
//!
//! let ctl = Ctl::new(Options::default())?;
//! let ping = ctl.ping("echo@myhost", 3).await?;
//! println!("{:?}", ping.round_trips_ms);
//! let info = ctl.info("echo@myhost").await?;
//! println!("{} up for {} ms", info.node, info.uptime_ms);
//! ctl.close().await;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use node_server::dist::handshake::HandshakeError;
use node_server::etf::{Atom, FromTerm, Pid, Term};
use node_server::info::NodeInfo;
use node_server::kinds::KindInfo;
use node_server::placement::{Placement, SpawnError, SpawnOpts};
use node_server::remote::RemoteTarget;
use node_server::rpc::RpcError;
use node_server::{CallError, Node, NodeConfig, NodeEvent, TlsConfig};
use serde::Serialize;

use crate::error::CtlError;
use crate::pretty::pretty;

/// TLS files for connecting to nodes that run distribution over TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Our certificate chain (PEM).
    pub cert: PathBuf,
    /// Our private key (PEM).
    pub key: PathBuf,
    /// The CA bundle that peers' certificates must chain to (mutual TLS).
    pub ca: Option<PathBuf>,
}

/// How [`Ctl`] connects.
#[derive(Debug, Clone)]
pub struct Options {
    /// The cookie; `None` reads `ERLANG_COOKIE`, then `~/.erlang.cookie` ([`resolve_cookie`]).
    pub cookie: Option<String>,
    /// The EPMD port on every host (default `ERL_EPMD_PORT` or 4369).
    pub epmd_port: u16,
    /// The limit for each connection, call and wait.
    pub timeout: Duration,
    /// Our node's name; default `nodectl_PID` on this host, in the target's naming mode.
    pub name: Option<String>,
    /// Connect over TLS with these files.
    pub tls: Option<TlsFiles>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cookie: None,
            epmd_port: epmd::env_port().unwrap_or(epmd::DEFAULT_PORT),
            timeout: Duration::from_secs(10),
            name: None,
            tls: None,
        }
    }
}

/// Where a cookie came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CookieSource {
    /// The `--cookie` option.
    Option,
    /// The `ERLANG_COOKIE` environment variable.
    Env,
    /// A cookie file.
    File(PathBuf),
}

/// The environment variable a cookie is read from when no `--cookie` is given.
pub const COOKIE_ENV: &str = "ERLANG_COOKIE";

/// The cookie to use: `given`, else `ERLANG_COOKIE`, else `~/.erlang.cookie` (which must
/// exist: unlike `erl`, `nodectl` never creates one by accident).
pub fn resolve_cookie(given: Option<&str>) -> Result<(String, CookieSource), CtlError> {
    if let Some(c) = given {
        return Ok((c.to_owned(), CookieSource::Option));
    }
    if let Ok(c) = std::env::var(COOKIE_ENV) {
        if !c.trim().is_empty() {
            return Ok((c.trim().to_owned(), CookieSource::Env));
        }
    }
    let path = node_server::config::default_cookie_path();
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            Ok((text.trim().to_owned(), CookieSource::File(path)))
        }
        Ok(_) => Err(CtlError::Cookie(format!("{} is empty", path.display()))),
        Err(e) => Err(CtlError::Cookie(format!(
            "no --cookie, no {COOKIE_ENV}, and {}: {e} (`nodectl cookie` makes one)",
            path.display()
        ))),
    }
}

/// What `nodectl cookie` did.
#[derive(Debug, Clone, Serialize)]
pub struct CookieWritten {
    /// The file written.
    pub path: PathBuf,
    /// Whether it replaced an existing cookie.
    pub replaced: bool,
}

/// Writes a new random cookie to `~/.erlang.cookie` (mode 0400). An existing file is
/// replaced only with `force`.
pub fn write_new_cookie(force: bool) -> Result<CookieWritten, CtlError> {
    let path = node_server::config::default_cookie_path();
    let exists = path.exists();
    if exists && !force {
        return Err(CtlError::Cookie(format!(
            "{} exists; pass --force to replace it",
            path.display()
        )));
    }
    if exists {
        // The file is read-only (0400): remove it rather than open it for writing.
        std::fs::remove_file(&path)
            .map_err(|e| CtlError::Cookie(format!("{}: {e}", path.display())))?;
    }
    let cookie = node_server::config::random_cookie();
    node_server::config::write_cookie(&path, &cookie)
        .map_err(|e| CtlError::Cookie(e.to_string()))?;
    Ok(CookieWritten {
        path,
        replaced: exists,
    })
}

/// This host's short name, as `erl -sname` uses it.
pub fn short_hostname() -> String {
    node_server::config::short_hostname()
}

/// A full node name: `name@host` as given, or a bare `name` completed with this host's
/// short name, as `erl -sname name` names itself.
pub fn full_node_name(node: &str) -> String {
    node_server::config::full_node_name(node)
}

/// The host part of a node name.
fn host_of(node: &str) -> &str {
    node.split_once('@').map_or("localhost", |(_, h)| h)
}

/// The full name of a node that EPMD on `host` lists as `name`: `name@HOST` where HOST is
/// this host's short name when `host` is this machine (`localhost`, a loopback address, or
/// its own name), as `erl -sname` nodes name themselves, else `host` as given.
pub fn node_on_host(name: &str, host: &str) -> String {
    let local = matches!(host, "localhost" | "127.0.0.1" | "::1")
        || host == node_server::config::hostname()
        || host == short_hostname();
    if local {
        format!("{name}@{}", short_hostname())
    } else {
        format!("{name}@{host}")
    }
}

/// Whether a node's host part makes it a long name (`erl -name`): it has a dot or is an
/// address.
fn long_host(host: &str) -> bool {
    host.contains('.') || host.contains(':')
}

/// A node registered with EPMD.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// Its name in EPMD (the part before `@`).
    pub name: String,
    /// Its full name (see [`node_on_host`]).
    pub node: String,
    /// Its distribution port.
    pub port: u16,
    /// Whether it registered as a hidden node.
    pub hidden: bool,
    /// Its roles ([`epmd::roles`]); Erlang nodes have none.
    pub roles: Vec<String>,
}

fn server(info: epmd::NodeInfo, host: &str) -> Server {
    Server {
        node: node_on_host(&info.name, host),
        roles: epmd::roles::decode_roles(&info.extra),
        hidden: info.node_type == epmd::NodeType::Hidden,
        port: info.port,
        name: info.name,
    }
}

fn epmd_client(host: &str, port: u16, timeout: Duration) -> epmd::Client {
    epmd::Client::new(host, port).timeout(timeout)
}

fn epmd_error(host: &str, source: epmd::ClientError) -> CtlError {
    CtlError::Epmd {
        host: host.to_owned(),
        source,
    }
}

/// The error for a failed connection to `node`.
fn connect_error(node: &str, e: node_server::ConnectError, timeout: Duration) -> CtlError {
    use node_server::ConnectError as E;
    match e {
        E::UnknownToEpmd(_) => CtlError::UnknownNode {
            node: node.to_owned(),
            host: host_of(node).to_owned(),
        },
        E::CookieRejected(_) => CtlError::CookieRejected(node.to_owned()),
        // A handshake that ran out of net_setuptime (nodectl sets it to --timeout) is the
        // same timeout as a connection attempt that did.
        E::Timeout(_)
        | E::Handshake {
            error: HandshakeError::TimedOut,
            ..
        } => CtlError::Timeout {
            what: format!("no answer from {node} while connecting"),
            after: timeout,
        },
        E::Unreachable { reason, .. } => CtlError::Unreachable {
            node: node.to_owned(),
            reason,
        },
        other => CtlError::Connect {
            node: node.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// The nodes EPMD on `host` knows, sorted by name.
pub async fn list_servers(
    host: &str,
    port: u16,
    timeout: Duration,
) -> Result<Vec<Server>, CtlError> {
    let nodes = epmd_client(host, port, timeout)
        .nodes()
        .await
        .map_err(|e| epmd_error(host, e))?;
    let mut servers: Vec<Server> = nodes.into_iter().map(|n| server(n, host)).collect();
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(servers)
}

/// The node registered as `name` with EPMD on `host`.
pub async fn lookup_name(
    host: &str,
    port: u16,
    timeout: Duration,
    name: &str,
) -> Result<Server, CtlError> {
    let bare = name.split('@').next().unwrap_or(name);
    epmd_client(host, port, timeout)
        .port_please(bare)
        .await
        .map_err(|e| epmd_error(host, e))?
        .map(|n| server(n, host))
        .ok_or_else(|| CtlError::UnknownNode {
            node: bare.to_owned(),
            host: host.to_owned(),
        })
}

/// The nodes on `host` that declare `role`; none is an error ([`CtlError::NotFound`]).
pub async fn lookup_role(
    host: &str,
    port: u16,
    timeout: Duration,
    role: &str,
) -> Result<Vec<Server>, CtlError> {
    let nodes = epmd_client(host, port, timeout)
        .nodes_with_role(role)
        .await
        .map_err(|e| epmd_error(host, e))?;
    if nodes.is_empty() {
        return Err(CtlError::NotFound(format!(
            "no node on {host} has the role {role}"
        )));
    }
    let mut servers: Vec<Server> = nodes.into_iter().map(|n| server(n, host)).collect();
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(servers)
}

/// The answer to a ping.
#[derive(Debug, Clone, Serialize)]
pub struct Ping {
    /// The node pinged.
    pub node: String,
    /// How long the connection took to set up (0 when it was up already).
    pub connect_ms: f64,
    /// Each `net_kernel` round trip (`is_auth`, as `net_adm:ping/1` sends).
    pub round_trips_ms: Vec<f64>,
    /// The actor checked, when one was named.
    pub actor: Option<ActorStatus>,
}

/// A registered actor (process) and whether it is alive.
#[derive(Debug, Clone, Serialize)]
pub struct ActorStatus {
    /// Its registered name.
    pub name: String,
    /// Its pid, in Erlang syntax (with the node name: `<node@host.85.0>`).
    pub pid: String,
    /// Whether `erlang:is_process_alive/1` says so.
    pub alive: bool,
}

/// One connection of a node.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    /// The node at the other end.
    pub node: String,
    /// Whether the connection is hidden.
    pub hidden: bool,
}

/// What `nodectl info` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The node.
    pub node: String,
    /// `node_server` for a node of this workspace, `erlang` for an Erlang/OTP node.
    pub runtime: String,
    /// The Erlang/OTP release (for our nodes: the one whose distribution they speak).
    pub otp_release: String,
    /// The crate version (ours) or the ERTS version (Erlang).
    pub version: String,
    /// Time since the node started.
    pub uptime_ms: u64,
    /// Processes (Erlang) or actors and built-in services (ours).
    pub process_count: u64,
    /// Memory in bytes: `erlang:memory(total)`, or the resident set size for ours.
    pub memory_bytes: u64,
    /// Connected nodes, this `nodectl` excluded.
    pub connections: usize,
    /// Traffic counters (their fields sit beside the others in the JSON).
    #[serde(flatten)]
    pub traffic: InfoTraffic,
}

/// The traffic counters of [`Info`], where the node counts them, and what they count.
#[derive(Debug, Clone, Serialize)]
pub struct InfoTraffic {
    /// Messages received, where the node counts them (see `counters`).
    pub messages_in: Option<u64>,
    /// Messages sent, where the node counts them.
    pub messages_out: Option<u64>,
    /// Bytes received, where the node counts them.
    pub bytes_in: Option<u64>,
    /// Bytes sent, where the node counts them.
    pub bytes_out: Option<u64>,
    /// What the counters count.
    pub counters: String,
}

/// What a stop did.
#[derive(Debug, Clone, Serialize)]
pub struct Stopped {
    /// The node.
    pub node: String,
    /// The actor stopped, or `None` for the whole node.
    pub actor: Option<String>,
    /// The actor's exit reason (Erlang syntax), or `init:stop` for a node.
    pub reason: String,
    /// From the request to the stop being seen (the connection closing, the monitor firing).
    pub took_ms: f64,
}

/// The result of stopping one of several nodes.
#[derive(Debug, Clone, Serialize)]
pub struct StopOutcome {
    /// The node.
    pub node: String,
    /// Whether it stopped.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
    /// The error's kind ([`CtlError::kind`]).
    pub error_kind: Option<String>,
}

/// A spawnable kind of a node of ours ([`node_server::kinds`]), as `list-kinds` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kind {
    /// Its name, without version.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// The capabilities it requires of the node it runs on, key to value.
    pub requires: BTreeMap<String, String>,
}

impl Kind {
    /// `name/version`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.name, self.version)
    }

    /// Whether `kind` (`name`, or `name/N`) names this kind.
    fn is(&self, kind: &str) -> bool {
        match node_server::kinds::parse_kind(kind) {
            Ok((name, version)) => name == self.name && version.is_none_or(|v| v == self.version),
            Err(_) => false,
        }
    }
}

impl From<KindInfo> for Kind {
    fn from(k: KindInfo) -> Kind {
        Kind {
            name: k.name,
            version: k.version,
            requires: k.requires.into_iter().collect(),
        }
    }
}

/// What `nodectl spawn` asks for.
#[derive(Debug, Clone)]
pub struct SpawnRequest {
    /// The kind (`counter`, or `counter/2` for a version).
    pub kind: String,
    /// Its arguments.
    pub args: Vec<Term>,
    /// Where ([`Placement::Node`] for `--on`).
    pub placement: Placement,
    /// The node that decides and spawns (`node_server:spawn/3` there); `None`: this
    /// `nodectl`'s own node decides ([`Node::spawn_on`]).
    pub via: Option<String>,
    /// A name to register the new actor under on its node.
    pub register: Option<String>,
    /// Start it from this WebAssembly module (`--source`): the kind is the module's name on
    /// the node that runs it ([`node_server::placement::SpawnOpts::source`]).
    pub source: Option<node_server::sources::ModuleHash>,
}

/// What `nodectl spawn` started.
#[derive(Debug, Clone, Serialize)]
pub struct SpawnResult {
    /// The new actor's pid, in Erlang syntax (with the node name: `<node@host.85.0>`).
    pub pid: String,
    /// Its node.
    pub node: String,
    /// The kind asked for.
    pub kind: String,
    /// The placement used (`random`, `role:db`, `node:a@host`, ...).
    pub placement: String,
    /// The node that chose where to spawn: `--via`'s, or this `nodectl`'s own.
    pub decided_by: String,
    /// The name it is registered under on its node, if any.
    pub registered: Option<String>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// A hidden node that asks other nodes. See the module docs.
pub struct Ctl {
    opts: Options,
    cookie: String,
    node: tokio::sync::OnceCell<Node>,
}

impl std::fmt::Debug for Ctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctl")
            .field("node", &self.node.get().map(Node::name))
            .finish_non_exhaustive()
    }
}

impl Ctl {
    /// A client with `opts`; resolves the cookie now. Its node starts on first use.
    pub fn new(opts: Options) -> Result<Ctl, CtlError> {
        let (cookie, _) = resolve_cookie(opts.cookie.as_deref())?;
        Ok(Ctl {
            opts,
            cookie,
            node: tokio::sync::OnceCell::new(),
        })
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Our node's name, once it has started.
    pub fn name(&self) -> Option<&str> {
        self.node.get().map(Node::name)
    }

    /// Our node, started on first use in the naming mode (short or long) of `target`.
    pub async fn node(&self, target: &str) -> Result<&Node, CtlError> {
        self.node
            .get_or_try_init(|| async {
                let long = long_host(host_of(target));
                let name = match &self.opts.name {
                    Some(n) => n.clone(),
                    None => {
                        let base = format!("nodectl_{}", std::process::id());
                        let host = node_server::config::hostname();
                        if long && !host.contains('.') {
                            // No domain to take a long name from: loopback is one.
                            format!("{base}@127.0.0.1")
                        } else {
                            base
                        }
                    }
                };
                let mut config = NodeConfig::new(name)
                    .long_names(long)
                    .cookie(&self.cookie)
                    .hidden(true)
                    // A tool, not a member: it joins no process groups.
                    .pg_scopes(Vec::<String>::new())
                    .register_with_epmd(false)
                    .epmd("localhost", self.opts.epmd_port)
                    .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
                    .setup_time(self.opts.timeout.min(Duration::from_secs(7)));
                if let Some(tls) = &self.opts.tls {
                    config = config.tls(TlsConfig::from_pem_files(
                        &tls.cert,
                        &tls.key,
                        tls.ca.as_deref(),
                    )?);
                }
                Ok::<Node, CtlError>(config.start().await?)
            })
            .await
    }

    pub(crate) fn us(&self) -> String {
        self.name().unwrap_or("nodectl").to_owned()
    }

    fn timeout_error(&self, what: String) -> CtlError {
        CtlError::Timeout {
            what,
            after: self.opts.timeout,
        }
    }

    /// Connects to `target` (unless connected); returns how long it took.
    pub async fn connect(&self, target: &str) -> Result<Duration, CtlError> {
        self.connect_to(target, None).await
    }

    /// Connects to `target`, at `addr` when given (without asking EPMD).
    async fn connect_to(
        &self,
        target: &str,
        addr: Option<SocketAddr>,
    ) -> Result<Duration, CtlError> {
        if !target.contains('@') {
            return Err(CtlError::Usage(format!(
                "{target} is not a full node name (name@host)"
            )));
        }
        let node = self.node(target).await?;
        let started = Instant::now();
        let connecting = async {
            match addr {
                _ if self.opts.tls.is_some() => node_server::client_connect_enc(node, target).await,
                Some(addr) => node_server::client_connect_addr(node, target, addr).await,
                None => node_server::client_connect(node, target).await,
            }
        };
        match tokio::time::timeout(self.opts.timeout, connecting).await {
            Err(_) => Err(self.timeout_error(format!("no answer from {target} while connecting"))),
            Ok(Err(e)) => Err(connect_error(target, e, self.opts.timeout)),
            Ok(Ok(())) => Ok(started.elapsed()),
        }
    }

    fn call_error(&self, target: &str, what: &str, e: CallError) -> CtlError {
        match e {
            CallError::Timeout => self.timeout_error(format!("{target} did not answer {what}")),
            CallError::NoProcess => CtlError::Unexpected {
                node: target.to_owned(),
                answer: format!("no process answered {what} (or the connection went down)"),
            },
            CallError::Connect(e) => connect_error(target, e, self.opts.timeout),
            other => CtlError::Unexpected {
                node: target.to_owned(),
                answer: other.to_string(),
            },
        }
    }

    /// `rpc:call(Target, M, F, Args)`; `Ok(Err(Reason))` when the answer is
    /// `{badrpc, Reason}`.
    pub(crate) async fn rpc_raw(
        &self,
        target: &str,
        module: &str,
        function: &str,
        args: Vec<Term>,
    ) -> Result<Result<Term, Term>, CtlError> {
        self.connect(target).await?;
        let node = self.node(target).await?;
        match node
            .rpc(target, module, function, args, self.opts.timeout)
            .await
        {
            Ok(t) => Ok(Ok(t)),
            Err(RpcError::BadRpc(reason)) => Ok(Err(reason)),
            Err(RpcError::Call(e)) => {
                Err(self.call_error(target, &format!("rpc {module}:{function}"), e))
            }
            Err(e) => Err(CtlError::Unexpected {
                node: target.to_owned(),
                answer: e.to_string(),
            }),
        }
    }

    /// Calls `module:function(args)` on `target` (as `rpc:call/5`, through its `rex`).
    pub async fn rpc(
        &self,
        target: &str,
        module: &str,
        function: &str,
        args: Vec<Term>,
    ) -> Result<Term, CtlError> {
        self.rpc_raw(target, module, function, args)
            .await?
            .map_err(|reason| CtlError::from_badrpc(target, &self.us(), &reason))
    }

    pub(crate) fn unexpected(target: &str, answer: &Term) -> CtlError {
        CtlError::Unexpected {
            node: target.to_owned(),
            answer: pretty(answer),
        }
    }

    /// Pings `target` `count` times (at least once) through its `net_kernel`, and checks
    /// `actor` when given.
    pub async fn ping(&self, target: &str, count: usize) -> Result<Ping, CtlError> {
        let connect = self.connect(target).await?;
        let node = self.node(target).await?;
        let net_kernel = RemoteTarget::Name {
            name: Atom::new("net_kernel"),
            node: Atom::new(target),
        };
        let mut round_trips_ms = Vec::new();
        for _ in 0..count.max(1) {
            let request = Term::tuple(vec![Term::atom("is_auth"), Term::atom(node.name())]);
            let started = Instant::now();
            let reply = node
                .call(&net_kernel, request, self.opts.timeout)
                .await
                .map_err(|e| self.call_error(target, "a ping", e))?;
            let took = started.elapsed();
            if !reply.is_atom("yes") {
                return Err(Self::unexpected(target, &reply));
            }
            round_trips_ms.push(ms(took));
        }
        Ok(Ping {
            node: target.to_owned(),
            connect_ms: ms(connect),
            round_trips_ms,
            actor: None,
        })
    }

    /// The pid registered as `name` on `target`.
    async fn whereis(&self, target: &str, name: &str) -> Result<Pid, CtlError> {
        match self
            .rpc(target, "erlang", "whereis", vec![Term::atom(name)])
            .await?
        {
            Term::Pid(p) => Ok(p),
            t if t.is_atom("undefined") => Err(CtlError::NoActor(format!(
                "nothing is registered as {name} on {target}"
            ))),
            other => Err(Self::unexpected(target, &other)),
        }
    }

    /// Whether `name` is registered on `target` and alive. Not registered is an error
    /// ([`CtlError::NoActor`]); registered but dead gives `alive: false`.
    pub async fn actor_status(&self, target: &str, name: &str) -> Result<ActorStatus, CtlError> {
        let pid = self.whereis(target, name).await?;
        let alive = self
            .rpc(
                target,
                "erlang",
                "is_process_alive",
                vec![Term::Pid(pid.clone())],
            )
            .await?;
        Ok(ActorStatus {
            name: name.to_owned(),
            pid: Term::Pid(pid).to_string(),
            alive: alive.is_atom("true"),
        })
    }

    /// The names registered on `target`, sorted.
    pub async fn list_actors(&self, target: &str) -> Result<Vec<String>, CtlError> {
        let reply = self.rpc(target, "erlang", "registered", vec![]).await?;
        let Term::List(names) = &reply else {
            return Err(Self::unexpected(target, &reply));
        };
        let mut names: Vec<String> = names
            .iter()
            .map(|n| match n {
                Term::Atom(a) => a.as_str().to_owned(),
                other => other.to_string(),
            })
            .collect();
        names.sort();
        Ok(names)
    }

    async fn nodes(&self, target: &str, kind: &str) -> Result<Vec<String>, CtlError> {
        let reply = self
            .rpc(
                target,
                "erlang",
                "nodes",
                vec![Term::list(vec![Term::atom(kind)])],
            )
            .await?;
        let Term::List(nodes) = &reply else {
            return Err(Self::unexpected(target, &reply));
        };
        let us = self.us();
        Ok(nodes
            .iter()
            .filter_map(Term::as_atom)
            .map(|a| a.as_str().to_owned())
            .filter(|n| *n != us)
            .collect())
    }

    /// The nodes `target` is connected to and whether each connection is hidden, this
    /// `nodectl` left out.
    pub async fn list_connections(&self, target: &str) -> Result<Vec<Connection>, CtlError> {
        let mut out: Vec<Connection> = self
            .nodes(target, "visible")
            .await?
            .into_iter()
            .map(|node| Connection {
                node,
                hidden: false,
            })
            .collect();
        out.extend(
            self.nodes(target, "hidden")
                .await?
                .into_iter()
                .map(|node| Connection { node, hidden: true }),
        );
        out.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(out)
    }

    /// Version, uptime, process count, memory and traffic counters of `target`.
    pub async fn info(&self, target: &str) -> Result<Info, CtlError> {
        match self.rpc_raw(target, "node_server", "info", vec![]).await? {
            Ok(reply) => {
                let info =
                    NodeInfo::from_term(&reply).map_err(|_| Self::unexpected(target, &reply))?;
                let us = self.us();
                Ok(Info {
                    node: target.to_owned(),
                    runtime: "node_server".into(),
                    otp_release: info.identity.otp_release,
                    version: info.identity.version,
                    uptime_ms: info.uptime_ms,
                    process_count: info.process_count,
                    memory_bytes: info.memory_total,
                    connections: info
                        .connected
                        .iter()
                        .filter(|c| c.node.as_str() != us)
                        .count(),
                    traffic: InfoTraffic {
                        messages_in: Some(info.traffic.messages_in),
                        messages_out: Some(info.traffic.messages_out),
                        bytes_in: Some(info.traffic.bytes_in),
                        bytes_out: Some(info.traffic.bytes_out),
                        counters: "distribution messages and bytes since the node started".into(),
                    },
                })
            }
            Err(reason) if is_undef(&reason) => self.erlang_info(target).await,
            Err(reason) => Err(CtlError::from_badrpc(target, &self.us(), &reason)),
        }
    }

    /// [`Ctl::info`] for an Erlang node, from standard calls that change nothing there.
    async fn erlang_info(&self, target: &str) -> Result<Info, CtlError> {
        let info = |item: &str| self.rpc(target, "erlang", "system_info", vec![Term::atom(item)]);
        let otp_release = term_text(&info("otp_release").await?);
        let version = term_text(&info("version").await?);
        let process_count = term_u64(&info("process_count").await?).unwrap_or(0);
        // Uptime without touching statistics(wall_clock)'s "since last call" state.
        let start = info("start_time").await?;
        let now = self.rpc(target, "erlang", "monotonic_time", vec![]).await?;
        let uptime_ms = match (&start, &now) {
            (Term::Int(s), Term::Int(n)) => {
                let ms = self
                    .rpc(
                        target,
                        "erlang",
                        "convert_time_unit",
                        vec![
                            Term::Int(n - s),
                            Term::atom("native"),
                            Term::atom("millisecond"),
                        ],
                    )
                    .await?;
                term_u64(&ms).unwrap_or(0)
            }
            _ => 0,
        };
        let memory_bytes = term_u64(
            &self
                .rpc(target, "erlang", "memory", vec![Term::atom("total")])
                .await?,
        )
        .unwrap_or(0);
        let connections = self.list_connections(target).await?.len();
        let counters = self.erlang_dist_counters(target).await?;
        let (messages_in, messages_out, bytes_in, bytes_out) = match counters {
            Some([a, b, c, d]) => (Some(a), Some(b), Some(c), Some(d)),
            None => (None, None, None, None),
        };
        Ok(Info {
            node: target.to_owned(),
            runtime: "erlang".into(),
            otp_release,
            version,
            uptime_ms,
            process_count,
            memory_bytes,
            connections,
            traffic: InfoTraffic {
                messages_in,
                messages_out,
                bytes_in,
                bytes_out,
                counters: if messages_in.is_some() {
                    "distribution packets and bytes over its current connections (this one included)"
                        .into()
                } else {
                    "none: its distribution connections are not ports (TLS?)".into()
                },
            },
        })
    }

    /// `[packets in, packets out, bytes in, bytes out]` summed over an Erlang node's current
    /// distribution connections (`inet:getstat/2` of each `system_info(dist_ctrl)` port), or
    /// `None` when a connection is not a port.
    async fn erlang_dist_counters(&self, target: &str) -> Result<Option<[u64; 4]>, CtlError> {
        let ctrl = self
            .rpc(
                target,
                "erlang",
                "system_info",
                vec![Term::atom("dist_ctrl")],
            )
            .await?;
        let Term::List(entries) = &ctrl else {
            return Ok(None);
        };
        let keys = ["recv_cnt", "send_cnt", "recv_oct", "send_oct"];
        let mut sums = [0u64; 4];
        for entry in entries {
            let Some([_, port @ Term::Port(_)]) = entry.as_tuple() else {
                return Ok(None);
            };
            let stats = self
                .rpc(
                    target,
                    "inet",
                    "getstat",
                    vec![
                        port.clone(),
                        Term::list(keys.iter().map(Term::atom).collect::<Vec<_>>()),
                    ],
                )
                .await?;
            let Some([ok, Term::List(pairs)]) = stats.as_tuple() else {
                // The connection went meanwhile.
                continue;
            };
            if !ok.is_atom("ok") {
                continue;
            }
            for pair in pairs {
                if let Some([Term::Atom(k), v]) = pair.as_tuple() {
                    if let Some(i) = keys.iter().position(|key| *key == k.as_str()) {
                        sums[i] += term_u64(v).unwrap_or(0);
                    }
                }
            }
        }
        Ok(Some(sums))
    }

    /// Evaluates Erlang expressions on `target`, a node of ours (`node_server_eval:eval/2`,
    /// see `node_server::eval`), with no bindings: the value as the Erlang shell prints it,
    /// or [`CtlError::Eval`] with the shell's error text.
    pub async fn eval(&self, target: &str, text: &str) -> Result<String, CtlError> {
        let (ok, printed, _) = self.eval_with(target, text, Term::NIL).await?;
        if ok {
            Ok(printed)
        } else {
            Err(CtlError::Eval(printed))
        }
    }

    /// Evaluates Erlang expressions on `target` with `bindings` (`[{'X', Value}, ...]`, as
    /// an earlier call returned them, or `[]`): whether it gave a value, what the Erlang
    /// shell prints (the value or the error text) and the bindings after it. An error of
    /// the evaluation is `Ok((false, ...))`; `Err` is a failure to ask (the node is gone,
    /// not ours, refused, ...).
    pub async fn eval_with(
        &self,
        target: &str,
        text: &str,
        bindings: Term,
    ) -> Result<(bool, String, Term), CtlError> {
        let args = vec![Term::binary(text), bindings];
        match self
            .rpc_raw(target, "node_server_eval", "eval", args)
            .await?
        {
            Ok(reply) => match reply.as_tuple() {
                Some([tag, Term::Binary(printed), bindings])
                    if tag.is_atom("ok") || tag.is_atom("error") =>
                {
                    let printed = String::from_utf8_lossy(printed).into_owned();
                    Ok((tag.is_atom("ok"), printed, bindings.clone()))
                }
                _ => Err(Self::unexpected(target, &reply)),
            },
            Err(reason) if is_undef(&reason) => Err(CtlError::Eval(format!(
                "nodectl: not ours: {target} is not a node_server node (it has no \
                 node_server_eval:eval/2)"
            ))),
            Err(reason) => Err(CtlError::from_badrpc(target, &self.us(), &reason)),
        }
    }

    /// The spawnable kinds of `target` (`node_server:kinds/0`), by name then version. A node
    /// that does not have that function (an Erlang node) is [`CtlError::NotOurs`].
    pub async fn list_kinds(&self, target: &str) -> Result<Vec<Kind>, CtlError> {
        match self.rpc_raw(target, "node_server", "kinds", vec![]).await? {
            Ok(reply) => {
                let kinds = Vec::<KindInfo>::from_term(&reply)
                    .map_err(|_| Self::unexpected(target, &reply))?;
                let mut kinds: Vec<Kind> = kinds.into_iter().map(Kind::from).collect();
                kinds.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
                Ok(kinds)
            }
            Err(reason) if is_undef(&reason) => Err(CtlError::NotOurs {
                node: target.to_owned(),
                function: "kinds/0".into(),
            }),
            Err(reason) => Err(CtlError::from_badrpc(target, &self.us(), &reason)),
        }
    }

    /// Starts an actor of a spawnable kind where `request` says; see [`SpawnRequest`].
    ///
    /// With [`Placement::Node`] the node's kinds are checked first, so an unknown kind (or a
    /// node that is not ours) is an error before anything starts. Whoever decides,
    /// [`Node::spawn_on`] does the spawn: a process that exits at once (arguments that do not
    /// fit) is an error, and a name that cannot be registered stops the new process again.
    pub async fn spawn(&self, request: &SpawnRequest) -> Result<SpawnResult, CtlError> {
        // From a module, the node that decides must have it: --via, or else the --on node.
        let via = match (&request.source, &request.via, &request.placement) {
            (Some(_), None, Placement::Node(on)) => Some(on.clone()),
            (Some(_), None, _) => {
                return Err(CtlError::Usage(
                    "spawn --source needs --via NODE (a node that has the module decides, and \
                     the node it picks fetches the module from it) or --on NODE"
                        .into(),
                ))
            }
            (_, via, _) => via.clone(),
        };
        if let (Placement::Node(target), None) = (&request.placement, &request.source) {
            let kinds = self.list_kinds(target).await?;
            if !kinds.iter().any(|k| k.is(&request.kind)) {
                let known: Vec<String> = kinds.iter().map(Kind::full_name).collect();
                return Err(CtlError::UnknownKind {
                    kind: request.kind.clone(),
                    node: target.clone(),
                    known: if known.is_empty() {
                        "none".into()
                    } else {
                        known.join(",")
                    },
                });
            }
        }
        let (pid, decided_by) = match &via {
            Some(via) => (self.spawn_via(via, request).await?, via.clone()),
            None => self.spawn_here(request).await?,
        };
        Ok(SpawnResult {
            node: pid.node.as_str().to_owned(),
            pid: Term::Pid(pid).to_string(),
            kind: request.kind.clone(),
            placement: request.placement.to_string(),
            decided_by,
            registered: request.register.clone(),
        })
    }

    /// Our own node decides ([`Node::spawn_on`]): the new pid and our node's name.
    async fn spawn_here(&self, request: &SpawnRequest) -> Result<(Pid, String), CtlError> {
        // Our node takes the naming mode (short or long) of the nodes it will talk to.
        let naming = match &request.placement {
            Placement::Node(n) => n.clone(),
            Placement::Host(h) => format!("nodectl@{h}"),
            _ => full_node_name("nodectl"),
        };
        if let Placement::Node(n) = &request.placement {
            // Through our own connect (TLS when asked for), with our errors.
            self.connect(n).await?;
        }
        let node = self.node(&naming).await?;
        let mut opts = SpawnOpts::default().timeout(self.opts.timeout);
        if let Some(name) = &request.register {
            opts = opts.register(name);
        }
        let spawned = node
            .spawn_on(
                &request.placement,
                &request.kind,
                request.args.clone(),
                opts,
            )
            .await
            .map_err(|e| self.spawn_error(e))?;
        Ok((spawned.pid, node.name().to_owned()))
    }

    /// The [`CtlError`] for a failed [`Node::spawn_on`].
    fn spawn_error(&self, e: SpawnError) -> CtlError {
        match e {
            SpawnError::BadPlacement(_) => CtlError::Usage(e.to_string()),
            SpawnError::NoCandidate { .. } => CtlError::NoCandidate(e.to_string()),
            SpawnError::Unreachable { node, reason } => CtlError::Unreachable { node, reason },
            SpawnError::Refused { node, reason } if reason == "not_allowed" => {
                CtlError::AdminRefused {
                    node,
                    us: self.us(),
                }
            }
            SpawnError::Timeout { node } => {
                self.timeout_error(format!("{node} did not answer the spawn"))
            }
            other => CtlError::Spawn(other.to_string()),
        }
    }

    /// `node_server:spawn(Kind, Args, #{placement => P, register => Name})` on `via`: the
    /// new pid.
    async fn spawn_via(&self, via: &str, request: &SpawnRequest) -> Result<Pid, CtlError> {
        let mut opts = vec![(
            Term::atom("placement"),
            Term::binary(request.placement.to_string()),
        )];
        if let Some(name) = &request.register {
            opts.push((Term::atom("register"), Term::atom(name)));
        }
        if let Some(hash) = &request.source {
            opts.push((Term::atom("source"), Term::binary(hash.to_string())));
        }
        let args = vec![
            Term::binary(request.kind.as_str()),
            Term::list(request.args.clone()),
            Term::Map(opts.into_iter().collect()),
        ];
        let reply = match self.rpc_raw(via, "node_server", "spawn", args).await? {
            Ok(reply) => reply,
            Err(reason) if is_undef(&reason) => {
                return Err(CtlError::NotOurs {
                    node: via.to_owned(),
                    function: "spawn/3".into(),
                })
            }
            Err(reason) => return Err(CtlError::from_badrpc(via, &self.us(), &reason)),
        };
        match reply.as_tuple() {
            Some([ok, Term::Pid(pid)]) if ok.is_atom("ok") => Ok(pid.clone()),
            Some([error, Term::Binary(text)]) if error.is_atom("error") => {
                let text = String::from_utf8_lossy(text).into_owned();
                // The text of node_server's SpawnError, told on `via`.
                Err(if text.starts_with("no candidate node") {
                    CtlError::NoCandidate(text)
                } else {
                    CtlError::Spawn(format!("{text} (decided on {via})"))
                })
            }
            _ => Err(Self::unexpected(via, &reply)),
        }
    }

    /// Stops `target` with `init:stop()` and waits until its connection closes.
    pub async fn stop_node(&self, target: &str) -> Result<Stopped, CtlError> {
        self.connect(target).await?;
        let node = self.node(target).await?;
        let mut events = node.subscribe();
        let started = Instant::now();
        let reply = self.rpc(target, "init", "stop", vec![]).await?;
        if !reply.is_atom("ok") {
            return Err(Self::unexpected(target, &reply));
        }
        let went_down = async {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::Down { node, .. }) if node == target => return true,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return false,
                }
            }
        };
        // The event may have come before we listened only if the connection was already
        // gone; check that too.
        let down = node.connected().iter().all(|(n, _)| n != target)
            || tokio::time::timeout(self.opts.timeout, went_down)
                .await
                .unwrap_or(false);
        if !down {
            return Err(self.timeout_error(format!(
                "{target} accepted init:stop but its connection did not close"
            )));
        }
        Ok(Stopped {
            node: target.to_owned(),
            actor: None,
            reason: "init:stop".into(),
            took_ms: ms(started.elapsed()),
        })
    }

    /// Stops the actor registered as `name` on `target` with `exit(Pid, shutdown)` (or
    /// `kill`) and waits until it is gone (a monitor fires).
    pub async fn stop_actor(
        &self,
        target: &str,
        name: &str,
        kill: bool,
    ) -> Result<Stopped, CtlError> {
        let pid = self.whereis(target, name).await?;
        let node = self.node(target).await?;
        let monitor = node
            .monitor(&RemoteTarget::Pid(pid.clone()))
            .await
            .map_err(|e| connect_error(target, e, self.opts.timeout))?;
        let started = Instant::now();
        let reason = Term::atom(if kill { "kill" } else { "shutdown" });
        let reply = self
            .rpc(target, "erlang", "exit", vec![Term::Pid(pid), reason])
            .await?;
        if !reply.is_atom("true") {
            return Err(Self::unexpected(target, &reply));
        }
        match tokio::time::timeout(self.opts.timeout, monitor.down()).await {
            Ok(reason) => Ok(Stopped {
                node: target.to_owned(),
                actor: Some(name.to_owned()),
                reason: pretty(&reason),
                took_ms: ms(started.elapsed()),
            }),
            Err(_) => Err(self.timeout_error(format!(
                "{name} on {target} still runs after exit(Pid, shutdown) (it may trap exits: try --kill)"
            ))),
        }
    }

    /// Stops every node registered with EPMD on `host` with `init:stop()`, one after the
    /// other; each node's outcome is reported. The nodes are reached at the ports EPMD gave
    /// at the start, so stopping a node that runs the EPMD (an embedded one) does not cut
    /// the others off.
    pub async fn stop_all(&self, host: &str) -> Result<Vec<StopOutcome>, CtlError> {
        let servers = list_servers(host, self.opts.epmd_port, self.opts.timeout).await?;
        let mut outcomes = Vec::new();
        for s in servers {
            // Erlang and our nodes listen on IPv4 by default.
            let addr = tokio::net::lookup_host((host, s.port))
                .await
                .ok()
                .and_then(|addrs| {
                    let addrs: Vec<SocketAddr> = addrs.collect();
                    addrs
                        .iter()
                        .find(|a| a.is_ipv4())
                        .or(addrs.first())
                        .copied()
                });
            let stopped = match self.connect_to(&s.node, addr).await {
                Ok(_) => self.stop_node(&s.node).await,
                Err(e) => Err(e),
            };
            let outcome = match stopped {
                Ok(_) => StopOutcome {
                    node: s.node,
                    ok: true,
                    error: None,
                    error_kind: None,
                },
                Err(e) => StopOutcome {
                    node: s.node,
                    ok: false,
                    error: Some(e.to_string()),
                    error_kind: Some(e.kind().to_owned()),
                },
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// Closes our connections (peers see `nodedown` at once rather than after a tick
    /// timeout).
    pub async fn close(self) {
        if let Some(node) = self.node.into_inner() {
            node.shutdown().await;
        }
    }
}

/// Whether a badrpc reason is `{'EXIT', {undef, _}}`: the function does not exist.
pub(crate) use node_server::rpc::is_undef;

fn term_u64(t: &Term) -> Option<u64> {
    match t {
        Term::Int(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

/// A string (list of codes), binary or atom as text; anything else in Erlang syntax.
fn term_text(t: &Term) -> String {
    match t {
        Term::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        Term::Atom(a) => a.as_str().to_owned(),
        Term::List(codes) => codes
            .iter()
            .map(|c| match c {
                Term::Int(n) => u32::try_from(*n).ok().and_then(char::from_u32),
                _ => None,
            })
            .collect::<Option<String>>()
            .unwrap_or_else(|| t.to_string()),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(full_node_name("a@b"), "a@b");
        assert_eq!(full_node_name("a"), format!("a@{}", short_hostname()));
        assert_eq!(
            node_on_host("x", "localhost"),
            format!("x@{}", short_hostname())
        );
        assert_eq!(node_on_host("x", "db.example"), "x@db.example");
        assert!(long_host("h.example") && long_host("127.0.0.1") && !long_host("vm"));
    }

    #[test]
    fn undef_is_recognised() {
        let r = Term::parse("{'EXIT', {undef, [{node_server, info, [], []}]}}").unwrap();
        assert!(is_undef(&r));
        assert!(!is_undef(&Term::parse("{'EXIT', {badarg, []}}").unwrap()));
    }
}
