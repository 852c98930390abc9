//! Node configuration: a builder with the defaults an Erlang user expects.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::error::{NameProblem, NodeError};
use crate::network::{NetContext, NetSettings, Network};
use crate::tls::TlsConfig;

/// How a node runs. Defaults follow `erl`: a short name on this host, the cookie from
/// `~/.erlang.cookie` (created when missing), EPMD on localhost at `ERL_EPMD_PORT` or 4369,
/// `net_ticktime` 60 s, `net_setuptime` 7 s, a listener on a free port of every address.
/// Nodes are visible by default, as `erl`'s: Erlang nodes list them in `nodes()`, and they
/// answer `global` (see [`crate::global`]); a hidden node connects without joining the mesh.
#[derive(Clone)]
pub struct NodeConfig {
    pub(crate) name: String,
    pub(crate) long_names: bool,
    pub(crate) cookie: Option<Vec<u8>>,
    pub(crate) hidden: bool,
    /// Where and how it listens and connects.
    pub(crate) net: NetSettings,
    pub(crate) net_ticktime: Duration,
    pub(crate) setup_time: Duration,
    pub(crate) max_frame: usize,
    pub(crate) tls: Option<Arc<TlsConfig>>,
    /// Nodes allowed to make rpc calls, stop the node and send exit signals (`None`: all).
    pub(crate) admin_allow: Option<Arc<Vec<String>>>,
    pub(crate) source_authority: Option<crate::sources::SourceAuthority>,
    pub(crate) pg: PgSettings,
    pub(crate) busy_wait: Duration,
    /// Connections' send queues (see [`crate::send_queue`]).
    pub(crate) flow: FlowSettings,
    /// Where Prometheus metrics are served, if anywhere (see [`crate::metrics`]).
    pub(crate) metrics: Option<SocketAddr>,
    /// What this node offers spawnable kinds (see [`crate::placement`]).
    pub(crate) capabilities: Vec<(String, String)>,
}

/// Limits of the connections' send queues (a part of [`NodeConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlowSettings {
    /// `dist_buf_busy_limit`: a connection is busy from this many queued bytes.
    pub(crate) busy_limit: usize,
    /// Senders that cannot wait drop from this many queued bytes.
    pub(crate) queue_cap: usize,
}

/// The node's `pg` scopes (a part of [`NodeConfig`]).
#[derive(Clone)]
pub(crate) struct PgSettings {
    pub(crate) scopes: Vec<String>,
    /// Prefix of the `ractor::pg` scope names, for several nodes in one process.
    pub(crate) namespace: Option<String>,
    /// Whether remote members also join the `ractor::pg` groups, as proxies.
    pub(crate) mirror_remote: bool,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("name", &self.name)
            .field("long_names", &self.long_names)
            .field("cookie", &self.cookie.as_ref().map(|_| "<hidden>"))
            .field("hidden", &self.hidden)
            .field("net", &self.net)
            .field("net_ticktime", &self.net_ticktime)
            .field("tls", &self.tls.is_some())
            .field("admin_allow", &self.admin_allow)
            .field("source_authority", &self.source_authority)
            .field("busy_wait", &self.busy_wait)
            .field("flow", &self.flow)
            .field("metrics", &self.metrics)
            .finish()
    }
}

impl NodeConfig {
    /// A node called `name`: `name@host` as given, or a bare `name` that gets this host's short
    /// name, as `erl -sname name` does.
    pub fn new(name: impl Into<String>) -> NodeConfig {
        NodeConfig {
            name: name.into(),
            long_names: false,
            cookie: None,
            hidden: false,
            net: NetSettings {
                listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
                epmd_host: "localhost".into(),
                epmd_port: epmd::env_port().unwrap_or(epmd::DEFAULT_PORT),
                register_with_epmd: true,
                roles: Vec::new(),
                network: None,
            },
            net_ticktime: Duration::from_secs(60),
            setup_time: Duration::from_secs(7),
            max_frame: 128 << 20,
            tls: None,
            admin_allow: None,
            source_authority: None,
            pg: PgSettings {
                scopes: vec!["pg".into()],
                namespace: None,
                mirror_remote: false,
            },
            busy_wait: Duration::from_micros(50),
            flow: FlowSettings {
                busy_limit: crate::send_queue::DEFAULT_BUSY_LIMIT,
                queue_cap: crate::send_queue::DEFAULT_QUEUE_CAP,
            },
            metrics: None,
            capabilities: Vec::new(),
        }
    }

    /// Capabilities this node offers (`("gpu", "yes")`): a spawnable kind that requires them
    /// ([`crate::kinds::KindSpec::requires`]) is placed only on nodes that have them (see
    /// [`crate::placement`]). Told to other nodes by `node_server:placement/0`.
    pub fn capabilities<K: Into<String>, V: Into<String>>(
        mut self,
        capabilities: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        self.capabilities = capabilities
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// Roles announced in the node's EPMD registration (EXTRA as `roles=a,b`, see
    /// [`epmd::roles`]), so `nodectl lookup --role` and [`epmd::Client`] users find it by
    /// role. Erlang tools ignore them. Invalid role names make [`NodeConfig::start`] fail.
    pub fn roles<S: Into<String>>(mut self, roles: impl IntoIterator<Item = S>) -> Self {
        self.net.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// The OTP `pg` scopes this node runs and mirrors into `ractor::pg` (default: `pg`, the
    /// scope `pg:join/2` and `pg:get_members/1` use). Scope `pg` is ractor's default scope;
    /// any other scope keeps its name. `ractor::pg` is one registry per OS process, so when a
    /// process runs several nodes, give all but one of them an empty list.
    pub fn pg_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.pg.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Whether remote processes that join a `pg` group also appear in the `ractor::pg` group,
    /// each as a proxy actor (`ActorRef`; location transparency for code that reads
    /// `ractor::pg` directly). Off by default: a proxy is a ractor actor of about 11.5 KiB, so
    /// remote members are kept as pids (about 0.3 KiB each) and an `ActorRef` is made only
    /// when asked for ([`crate::groups::Groups::actor_refs`], [`crate::Node::remote_pid`]).
    /// Local members are in `ractor::pg` either way, and Phoenix.PubSub's scope always
    /// mirrors (its pool groups have a few members per node).
    pub fn pg_mirror_remote(mut self, mirror: bool) -> Self {
        self.pg.mirror_remote = mirror;
        self
    }

    /// Adds the `pg` scope of Phoenix.PubSub's PG2 adapter ([`PHOENIX_PUBSUB_SCOPE`]) to
    /// [`NodeConfig::pg_scopes`], so that [`crate::Node::phoenix_pubsub`] can join an Elixir
    /// app's PubSub.
    pub fn phoenix_pubsub(mut self) -> Self {
        if !self.pg.scopes.iter().any(|s| s == PHOENIX_PUBSUB_SCOPE) {
            self.pg.scopes.push(PHOENIX_PUBSUB_SCOPE.to_owned());
        }
        self
    }

    /// The network the node listens and connects over (default: [`crate::network::TcpNetwork`], TCP with
    /// EPMD). [`NodeConfig::listen`], [`NodeConfig::epmd`], [`NodeConfig::register_with_epmd`]
    /// and [`NodeConfig::roles`] configure the TCP network; another network may read them
    /// or not. TLS ([`NodeConfig::tls`]) is laid over whatever streams the network gives.
    /// The deterministic simulator (`node_server/tests/sim`) uses this to run nodes in memory.
    pub fn network(mut self, network: Arc<dyn Network>) -> Self {
        self.net.network = Some(network);
        self
    }

    /// Keeps this node's `pg` scopes apart from other nodes' in the same process: the
    /// process-wide `ractor::pg` scope of each of its scopes is named `namespace` followed by
    /// the scope's usual ractor name (see [`crate::pg::ractor_scope`]). For running several
    /// nodes with `pg` in one process, as the simulator does; actors must then join through
    /// [`crate::groups::Groups`], which knows the namespace.
    #[doc(hidden)]
    pub fn pg_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.pg.namespace = Some(namespace.into());
        self
    }

    /// Use long names (`erl -name`): a bare name gets this host's full name.
    pub fn long_names(mut self, long: bool) -> Self {
        self.long_names = long;
        self
    }

    /// The cookie; without it the node reads `~/.erlang.cookie`.
    pub fn cookie(mut self, cookie: impl AsRef<[u8]>) -> Self {
        self.cookie = Some(cookie.as_ref().to_vec());
        self
    }

    /// Hidden, or visible (the default).
    pub fn hidden(mut self, hidden: bool) -> Self {
        self.hidden = hidden;
        self
    }

    /// Where the distribution listener binds (default: every IPv4 address, a free port).
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.net.listen = addr;
        self
    }

    /// Where EPMD is (default localhost at `ERL_EPMD_PORT` or 4369).
    pub fn epmd(mut self, host: impl Into<String>, port: u16) -> Self {
        self.net.epmd_host = host.into();
        self.net.epmd_port = port;
        self
    }

    /// Whether to register with EPMD (default yes). Without it, peers must be given the
    /// listener's address.
    pub fn register_with_epmd(mut self, register: bool) -> Self {
        self.net.register_with_epmd = register;
        self
    }

    /// `net_ticktime`: a peer silent for about this long is down; ticks go out every quarter.
    pub fn net_ticktime(mut self, ticktime: Duration) -> Self {
        self.net_ticktime = ticktime.max(Duration::from_millis(40));
        self
    }

    /// `net_setuptime`: the limit on each step of connection setup.
    pub fn setup_time(mut self, t: Duration) -> Self {
        self.setup_time = t;
        self
    }

    /// How long the node keeps polling for an answer after it writes to a connection before
    /// it lets the runtime's workers sleep (default 50 µs; `Duration::ZERO` turns it off).
    /// As the BEAM's scheduler busy wait (`+sbwt`), this spends some CPU after each burst of
    /// traffic to answer round trips without waking a sleeping CPU: about three times shorter
    /// round trips between nodes on one machine; see [`crate::busy`].
    pub fn busy_wait(mut self, window: Duration) -> Self {
        self.busy_wait = window;
        self
    }

    /// `dist_buf_busy_limit` (default 1 MiB, as OTP's `+zdbbl`): a connection whose send queue
    /// holds this many bytes is busy, and senders that can wait
    /// ([`crate::ProcessHandle::send`], calls) wait until its writer brings it under again,
    /// as the BEAM suspends a process sending on a busy connection. See [`crate::send_queue`].
    pub fn dist_buf_busy_limit(mut self, bytes: usize) -> Self {
        self.flow.busy_limit = bytes;
        self
    }

    /// The hard cap of a connection's send queue for senders that cannot wait (a ractor
    /// `cast` through a proxy, [`crate::Node::send`]; default 32 MiB, never under the busy
    /// limit): from this many queued bytes their messages are dropped, counted
    /// (`dist_dropped_total` in [`crate::metrics`]) and logged, so a stopped peer cannot make
    /// the node grow without bound. Protocol messages (links, monitors, replies) are never
    /// dropped. See [`crate::send_queue`].
    pub fn dist_queue_cap(mut self, bytes: usize) -> Self {
        self.flow.queue_cap = bytes;
        self
    }

    /// Serves Prometheus metrics at `GET /metrics` on `addr` (off by default): traffic, send
    /// queue, busy and drop counts per connection, connections, failed handshakes by reason
    /// and the actor count, read from the node at each scrape. Port 0 takes a free port;
    /// [`crate::Node::metrics_addr`] tells which. The listener is bound when the node starts
    /// (a failure to bind makes [`NodeConfig::start`] fail with [`NodeError::Metrics`]) and
    /// closes when the node stops. Anyone who reaches the address can read the figures (and
    /// the peers' node names): bind a loopback or private address. See [`crate::metrics`]
    /// for the series.
    pub fn metrics_listen(mut self, addr: SocketAddr) -> Self {
        self.metrics = Some(addr);
        self
    }

    /// The largest distribution frame (and reassembled message) accepted (default 128 MiB).
    pub fn max_frame(mut self, bytes: usize) -> Self {
        self.max_frame = bytes;
        self
    }

    /// Speak TLS on the distribution listener and on connections made with
    /// [`crate::client_connect_enc`].
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(Arc::new(tls));
        self
    }

    /// Turns on the admin guard: only the nodes named here (full names, `name@host`, compared
    /// exactly) may make rpc calls to this node (`rpc:call`, `erpc:call`, `erl_call`, so also
    /// `init:stop` and `nodectl`), and only they may send exit signals with `exit/2`. Calls
    /// from other nodes fail with `exit` reason `{not_allowed, CallerNode}` (`rpc:call` gives
    /// `{badrpc, {'EXIT', {not_allowed, CallerNode}}}`); their exit signals are dropped and
    /// logged. Off by default: every connected node (one that knows the cookie) may do all of
    /// this, as with Erlang.
    ///
    /// What is checked is the name the peer gave in the distribution handshake, which the
    /// cookie authenticates. Under mutual TLS (a [`TlsConfig`] with a CA), the peer's
    /// certificate, verified against that CA, must also carry the node's full name as its
    /// subject CN or as a subjectAltName (email/rfc822Name, DNS name or URI); a session
    /// without such a certificate is never an admin session. Messages, `gen_server` calls,
    /// links, monitors and `net_adm:ping` are not affected; an exit signal that reaches an
    /// actor through a link (the linked process died) is delivered as usual. See
    /// [`crate::admin`].
    pub fn admin_allow<I, S>(mut self, nodes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.admin_allow = Some(Arc::new(nodes.into_iter().map(Into::into).collect()));
        self
    }

    /// Who approves WebAssembly modules from other nodes (loads by rpc, fetches for a
    /// spawn; see [`crate::sources`]): without one (the default) such loads are refused.
    pub fn source_authority(mut self, authority: crate::sources::SourceAuthority) -> Self {
        self.source_authority = Some(authority);
        self
    }

    /// What the node tells its network.
    pub(crate) fn net_context(&self) -> NetContext<'_> {
        NetContext {
            settings: &self.net,
            hidden: self.hidden,
            setup_time: self.setup_time,
        }
    }

    /// The full node name this configuration gives.
    pub fn full_name(&self) -> Result<String, NodeError> {
        let bad = |problem| NodeError::BadName {
            name: self.name.clone(),
            problem,
        };
        if self.name.contains('@') {
            return match NameProblem::of_full_name(&self.name) {
                Some(problem) => Err(bad(problem)),
                None => Ok(self.name.clone()),
            };
        }
        if self.name.is_empty() {
            return Err(bad(NameProblem::EmptyName));
        }
        let host = if self.long_names {
            hostname()
        } else {
            short_hostname()
        };
        Ok(format!("{}@{}", self.name, host))
    }

    pub(crate) fn resolve_cookie(&self) -> Result<Vec<u8>, NodeError> {
        match &self.cookie {
            Some(c) => Ok(c.clone()),
            None => read_or_create_cookie(&default_cookie_path()),
        }
    }
}

/// This host's name, as `gethostname` gives it.
pub fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The `pg` scope of Phoenix.PubSub's PG2 adapter, as an Erlang atom's text (also
/// `node_server::phoenix::SCOPE`).
pub const PHOENIX_PUBSUB_SCOPE: &str = "Elixir.Phoenix.PubSub";

/// A full node name: `name@host` as given, or a bare `name` completed with this host's short
/// name, as `erl -sname name` names itself (what `nodectl` and `echo_node --connect` accept).
pub fn full_node_name(node: &str) -> String {
    if node.contains('@') {
        node.to_owned()
    } else {
        format!("{node}@{}", short_hostname())
    }
}

/// This host's short name (up to the first `.`), as `erl -sname` uses it.
pub fn short_hostname() -> String {
    let host = hostname();
    host.split('.').next().unwrap_or("localhost").to_owned()
}

/// `~/.erlang.cookie`.
pub fn default_cookie_path() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".erlang.cookie")
}

/// Reads a cookie file, or creates it as `erl` does (20 random capital letters, mode 0400).
pub fn read_or_create_cookie(path: &Path) -> Result<Vec<u8>, NodeError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            Ok(text.trim().as_bytes().to_vec())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let cookie = random_cookie();
            write_cookie(path, &cookie)?;
            tracing::info!(path = %path.display(), "created a new cookie file");
            Ok(cookie.into_bytes())
        }
        Err(e) => Err(NodeError::Cookie(format!("{}: {e}", path.display()))),
    }
}

/// 20 random capital letters, as `erl` makes.
pub fn random_cookie() -> String {
    let mut bytes = [0u8; 20];
    // Without an entropy source the process cannot do anything secure anyway.
    if getrandom::fill(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (t >> (i % 16 * 8)) as u8 ^ i as u8;
        }
    }
    bytes.iter().map(|b| char::from(b'A' + b % 26)).collect()
}

/// Writes a cookie file readable only by its owner (mode 0400).
pub fn write_cookie(path: &Path, cookie: &str) -> Result<(), NodeError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |e: std::io::Error| NodeError::Cookie(format!("{}: {e}", path.display()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(path)
        .map_err(err)?;
    f.write_all(cookie.as_bytes()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(NodeConfig::new("a@b").full_name().unwrap(), "a@b");
        let short = NodeConfig::new("a").full_name().unwrap();
        assert!(short.starts_with("a@") && !short[2..].contains('.'));
        assert!(NodeConfig::new("@b").full_name().is_err());
        assert!(NodeConfig::new("a@b@c").full_name().is_err());
    }

    #[test]
    fn cookie_file_is_created_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ns-cookie-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".erlang.cookie");
        let _ = std::fs::remove_file(&path);
        let c = read_or_create_cookie(&path).unwrap();
        assert_eq!(c.len(), 20);
        assert!(c.iter().all(u8::is_ascii_uppercase));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);
        assert_eq!(read_or_create_cookie(&path).unwrap(), c);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
