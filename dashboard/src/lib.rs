//! # node_dashboard
//!
//! A live web page of a cluster: every node EPMD lists, the connections between them, their
//! registered names, the `pg` groups and their members, and message and byte rates. A node
//! joining, a group changing and a node dying show within a second or so, without a reload.
//!
//! ## Design
//! - **Joining.** The dashboard runs a node of this workspace ([`node_server`]), *hidden* so it
//!   does not join the Erlang mesh, and without `pg` scopes so it neither takes part in groups
//!   nor touches `ractor::pg`. It registers with the EPMD it watches and is left out of what
//!   it shows. When no EPMD answers, its node runs one in-process, like every node of ours;
//!   that EPMD then lives as long as the dashboard.
//! - **Polling.** Every refresh interval (500 ms
//!   by default) it asks EPMD for its names (with a lookup of each new node for its roles, from
//!   the registration's EXTRA field, and whether it registered as hidden), then probes each
//!   node by rpc, all nodes at once, each rpc bounded by a short timeout (1 s):
//!   `erlang:nodes(connected)`, `erlang:nodes(hidden)`, `erlang:registered()`,
//!   `pg:which_groups()` and `pg:get_members(G)` per group, `erlang:statistics(io)`, and
//!   `inet:getstat/2` on each distribution socket (`erlang:system_info(dist_ctrl)`) for
//!   packet and byte counters per connection. Nodes of ours are asked `node_server:info()`
//!   first (which also gives each connection's send queue: queued bytes, busy and drop
//!   counts, shown per connection), and answer the `pg` calls; where a call fails with `{badrpc, _}` (no `pg` running,
//!   no such function) that part is simply empty. Rates come from two successive probes.
//!   A slow node is answered for in a later round and delays nobody else.
//! - **Liveness.** A node that leaves EPMD is marked `gone` in the next round (and dropped
//!   after a retention time); one still listed but not answering is `unreachable`. When the
//!   dashboard's node sees a connection go down, a round starts at once.
//! - **Publishing.** Each round makes a [`Snapshot`] (plain data, serialised once to JSON)
//!   and puts it in a `tokio::sync::watch` channel.
//! - **Serving.** A small hand-written HTTP/1.1 server (no web framework: three resources
//!   need none) answers `GET /` with the page (one HTML file, script and styles inline, no
//!   build step), `GET /events` with a server-sent event stream that pushes every snapshot,
//!   and `GET /state.json` with the latest one. The page renders with DOM calls and
//!   `textContent` only, so names from the cluster cannot inject markup. Its elements carry
//!   stable attributes for scripts and tests: `data-node`, `data-status`, `data-edge`,
//!   `data-queue-from` (with `data-queue-to`, `data-queue-bytes`, `data-busy`,
//!   `data-dropped`), `data-group`, `data-member`, `data-member-node`, `data-registered`.
//!
//! ## Example
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), node_dashboard::Error> {
//! use node_dashboard::DashboardConfig;
//!
//! let dashboard = node_dashboard::serve(
//!     DashboardConfig::new()
//!         .listen("127.0.0.1:8080".parse().unwrap())
//!         .cookie("secret"),
//! )
//! .await?;
//! println!("open {}", dashboard.url());
//! tokio::signal::ctrl_c().await.ok();
//! dashboard.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod collect;
mod http;
pub mod model;
mod probe;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use node_server::{Node, NodeConfig, NodeEvent};
use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

pub use model::Snapshot;

use crate::collect::{Collector, Published, Settings};

/// Why the dashboard could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The HTTP listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The dashboard's own node did not start (bad name, no EPMD could be had, ...).
    #[error("the dashboard's node did not start: {0}")]
    Node(#[from] node_server::NodeError),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// How the dashboard runs. Defaults: HTTP on `127.0.0.1:8080`, the cookie from
/// `~/.erlang.cookie`, EPMD on localhost at `ERL_EPMD_PORT` or 4369, a refresh every 500 ms,
/// rpc timeouts of 1 s, gone nodes shown for 30 s.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    listen: SocketAddr,
    cookie: Option<String>,
    epmd_host: String,
    epmd_port: u16,
    refresh: Duration,
    rpc_timeout: Duration,
    gone_retention: Duration,
    node_name: Option<String>,
    node_host: Option<String>,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig::new()
    }
}

impl DashboardConfig {
    /// The defaults.
    pub fn new() -> DashboardConfig {
        DashboardConfig {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            cookie: None,
            epmd_host: "localhost".into(),
            epmd_port: epmd::env_port().unwrap_or(epmd::DEFAULT_PORT),
            refresh: Duration::from_millis(500),
            rpc_timeout: Duration::from_secs(1),
            gone_retention: Duration::from_secs(30),
            node_name: None,
            node_host: None,
        }
    }

    /// Where the page is served (port 0 picks a free one; see [`ServerHandle::local_addr`]).
    /// The page shows the cluster to whoever reaches it: keep it on loopback unless that is
    /// meant.
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// The cluster's cookie; without it, `~/.erlang.cookie`.
    pub fn cookie(mut self, cookie: impl Into<String>) -> Self {
        self.cookie = Some(cookie.into());
        self
    }

    /// The EPMD whose nodes are shown (default localhost at `ERL_EPMD_PORT` or 4369).
    pub fn epmd(mut self, host: impl Into<String>, port: u16) -> Self {
        self.epmd_host = host.into();
        self.epmd_port = port;
        self
    }

    /// How often EPMD and the nodes are polled (default 500 ms; at least 50 ms).
    pub fn refresh(mut self, every: Duration) -> Self {
        self.refresh = every;
        self
    }

    /// The limit on each rpc to a node (default 1 s); a probe as a whole gets four times it.
    pub fn rpc_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_timeout = timeout;
        self
    }

    /// How long a node that left EPMD stays on the page as `gone` (default 30 s).
    pub fn gone_retention(mut self, keep: Duration) -> Self {
        self.gone_retention = keep;
        self
    }

    /// The dashboard node's name (default `dashboard_PID_N`, on this host).
    pub fn node_name(mut self, name: impl Into<String>) -> Self {
        self.node_name = Some(name.into());
        self
    }

    /// The host part of the watched nodes' names (EPMD lists only the part before `@`).
    /// Default: this host's short name when EPMD is on loopback (as `erl -sname` names
    /// nodes), else the first label of the EPMD host.
    pub fn node_host(mut self, host: impl Into<String>) -> Self {
        self.node_host = Some(host.into());
        self
    }

    fn validate(&self) -> Result<(), Error> {
        if self.refresh < Duration::from_millis(50) {
            return Err(Error::Config(format!(
                "refresh interval {:?} is below 50 ms",
                self.refresh
            )));
        }
        if self.rpc_timeout.is_zero() {
            return Err(Error::Config("rpc timeout is zero".into()));
        }
        Ok(())
    }

    /// The host part given to the names EPMD lists.
    fn resolved_node_host(&self) -> String {
        if let Some(h) = &self.node_host {
            return h.clone();
        }
        let host = self.epmd_host.trim_start_matches('[').trim_end_matches(']');
        let loopback = host == "localhost"
            || host
                .parse::<IpAddr>()
                .is_ok_and(|a| a.is_loopback() || a.is_unspecified());
        let full = if loopback {
            node_server::config::hostname()
        } else {
            host.to_owned()
        };
        full.split('.').next().unwrap_or("localhost").to_owned()
    }
}

/// A running dashboard. Dropping it stops the dashboard too, without waiting;
/// [`ServerHandle::shutdown`] also waits for its node to close its connections.
pub struct ServerHandle {
    local_addr: SocketAddr,
    node: Node,
    snapshots: watch::Receiver<Arc<Published>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("node", &self.node.name())
            .finish()
    }
}

impl ServerHandle {
    /// Where the page is served.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The page's URL, `http://ADDR/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr)
    }

    /// The dashboard's own (hidden) node.
    pub fn node_name(&self) -> &str {
        self.node.name()
    }

    /// The latest snapshot (before the first round: an empty one with `seq` 0).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().snapshot.clone()
    }

    /// Waits for a snapshot newer than `seq` and returns it; `None` once the dashboard stops.
    pub async fn next_snapshot(&self, seq: u64) -> Option<Arc<Snapshot>> {
        let mut rx = self.snapshots.clone();
        let published = rx
            .wait_for(|p| p.snapshot.seq > seq)
            .await
            .ok()?
            .snapshot
            .clone();
        Some(published)
    }

    /// Stops serving and polling, and shuts the dashboard's node down.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for task in self.tasks.drain(..) {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                tracing::warn!("a dashboard task did not stop in time");
            }
        }
        self.node.clone().shutdown().await;
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        for task in &self.tasks {
            task.abort();
        }
        self.node.actor().stop(Some("dashboard stopped".into()));
    }
}

/// Starts the dashboard: its node, the poller and the HTTP server.
pub async fn serve(config: DashboardConfig) -> Result<ServerHandle, Error> {
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen,
        source,
    })?;

    static INSTANCE: AtomicU32 = AtomicU32::new(0);
    let name = config.node_name.clone().unwrap_or_else(|| {
        format!(
            "dashboard_{}_{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        )
    });
    let mut node_config = NodeConfig::new(name)
        .hidden(true)
        .pg_scopes(Vec::<String>::new())
        .epmd(config.epmd_host.clone(), config.epmd_port)
        // Connection setup to a node that does not answer must fail well within a probe.
        .setup_time(config.rpc_timeout);
    if let Some(cookie) = &config.cookie {
        node_config = node_config.cookie(cookie);
    }
    let node = node_config.start().await?;

    let settings = Settings {
        epmd_host: config.epmd_host.clone(),
        epmd_port: config.epmd_port,
        node_host: config.resolved_node_host(),
        refresh: config.refresh,
        rpc_timeout: config.rpc_timeout,
        gone_retention: config.gone_retention,
    };
    let (publish, snapshots) = watch::channel(Arc::new(Published::new(Snapshot::default())));
    let (stop, stop_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());

    let tasks = vec![
        tokio::spawn(wake_on_node_down(
            node.subscribe(),
            wake.clone(),
            stop_rx.clone(),
        )),
        tokio::spawn(Collector::new(node.clone(), settings, publish).run(wake, stop_rx.clone())),
        tokio::spawn(http::serve(listener, snapshots.clone(), stop_rx)),
    ];
    tracing::info!(url = %format!("http://{local_addr}/"), node = node.name(), "dashboard serving");
    Ok(ServerHandle {
        local_addr,
        node,
        snapshots,
        stop,
        tasks,
    })
}

/// Starts a polling round whenever a connection of the dashboard's node goes down.
async fn wake_on_node_down(
    mut events: broadcast::Receiver<NodeEvent>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(NodeEvent::Down { .. }) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    wake.notify_one();
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_host_follows_epmd_host() {
        let short = node_server::config::hostname()
            .split('.')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(DashboardConfig::new().resolved_node_host(), short);
        assert_eq!(
            DashboardConfig::new()
                .epmd("127.0.0.1", 1)
                .resolved_node_host(),
            short
        );
        assert_eq!(
            DashboardConfig::new()
                .epmd("db1.example.org", 1)
                .resolved_node_host(),
            "db1"
        );
        assert_eq!(
            DashboardConfig::new().node_host("x").resolved_node_host(),
            "x"
        );
    }

    #[test]
    fn refresh_has_a_floor() {
        assert!(matches!(
            DashboardConfig::new()
                .refresh(Duration::from_millis(1))
                .validate(),
            Err(Error::Config(_))
        ));
    }
}
