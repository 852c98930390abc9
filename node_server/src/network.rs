//! The network a node runs over: how it listens for connections from other nodes and how it
//! opens a connection to a node by name.
//!
//! A node does not bind sockets or ask EPMD itself: it asks its [`Network`]. The default,
//! [`TcpNetwork`], is what Erlang does: a TCP listener, the port registered with EPMD
//! (starting an embedded EPMD when none answers), and `name@host` resolved through the EPMD
//! on `host` before a TCP connect. Another network is chosen with
//! [`crate::NodeConfig::network`]; the deterministic simulator (`node_server/tests/sim`) runs several
//! nodes in one process over in-memory links this way.
//!
//! A network hands out plain byte streams ([`BoxedTransport`]); TLS, when configured, is laid
//! on top of them by the node, and the distribution handshake after that.

use std::any::Any;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use crate::error::{ConnectError, NodeError};

/// A byte stream a session can run over: TCP, TLS, or whatever a network gives.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A boxed transport.
pub type BoxedTransport = Box<dyn Transport>;

/// Where and how a node listens and connects: the part of [`crate::NodeConfig`] that
/// [`crate::NodeConfig::listen`], [`crate::NodeConfig::epmd`],
/// [`crate::NodeConfig::register_with_epmd`], [`crate::NodeConfig::roles`] and
/// [`crate::NodeConfig::network`] set.
#[derive(Clone)]
pub struct NetSettings {
    pub(crate) listen: SocketAddr,
    pub(crate) epmd_host: String,
    pub(crate) epmd_port: u16,
    pub(crate) register_with_epmd: bool,
    /// Announced in the EPMD registration.
    pub(crate) roles: Vec<String>,
    /// The network, when not [`TcpNetwork`].
    pub(crate) network: Option<Arc<dyn Network>>,
}

impl NetSettings {
    /// The network the node runs over.
    pub(crate) fn network(&self) -> Arc<dyn Network> {
        self.network.clone().unwrap_or_else(|| Arc::new(TcpNetwork))
    }
}

impl std::fmt::Debug for NetSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetSettings")
            .field("listen", &self.listen)
            .field("epmd", &(&self.epmd_host, self.epmd_port))
            .field("register_with_epmd", &self.register_with_epmd)
            .field("network", &self.network.is_some())
            .finish_non_exhaustive()
    }
}

/// What a node tells its network when it listens or connects.
#[derive(Debug, Clone, Copy)]
pub struct NetContext<'a> {
    /// The node's network settings.
    pub settings: &'a NetSettings,
    /// Whether the node is hidden.
    pub hidden: bool,
    /// `net_setuptime`: the limit on each step of connection setup.
    pub setup_time: Duration,
}

/// A boxed future that can move between threads.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where a node's connections come from: what [`Network::listen`] gives.
pub trait Listener: Send + 'static {
    /// The next incoming connection and a description of its peer (for logs).
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxedTransport, String)>>;
}

/// A node's listener and what came with it.
pub struct Listening {
    /// Incoming connections.
    pub listener: Box<dyn Listener>,
    /// The port other nodes reach it at (0 where there is none).
    pub port: u16,
    /// The creation of this incarnation of the node (non-zero; EPMD gives it on TCP).
    pub creation: u32,
    /// Whatever must live as long as the node listens (an EPMD registration, an embedded
    /// EPMD); dropped when the node stops.
    pub keep: Box<dyn Any + Send>,
}

impl std::fmt::Debug for Listening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("port", &self.port)
            .field("creation", &self.creation)
            .finish_non_exhaustive()
    }
}

/// How a node listens and connects; see the module docs.
pub trait Network: Send + Sync + 'static {
    /// Starts listening for the node `node` (its full name).
    fn listen<'a>(
        &'a self,
        node: &'a str,
        ctx: NetContext<'a>,
    ) -> BoxFuture<'a, Result<Listening, NodeError>>;

    /// Opens a byte stream to the node `node` (a full name), at `addr` when given (TCP: no
    /// EPMD lookup then).
    fn connect<'a>(
        &'a self,
        node: &'a str,
        addr: Option<SocketAddr>,
        ctx: NetContext<'a>,
    ) -> BoxFuture<'a, Result<BoxedTransport, ConnectError>>;
}

/// TCP with EPMD, as Erlang's `inet_tcp_dist`: the default network.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpNetwork;

impl Network for TcpNetwork {
    fn listen<'a>(
        &'a self,
        node: &'a str,
        ctx: NetContext<'a>,
    ) -> BoxFuture<'a, Result<Listening, NodeError>> {
        Box::pin(async move {
            let listener = TcpListener::bind(ctx.settings.listen)
                .await
                .map_err(NodeError::Listen)?;
            let port = listener.local_addr().map_err(NodeError::Listen)?.port();
            let (registration, embedded) = if ctx.settings.register_with_epmd {
                let (reg, emb) = register(ctx, node, port).await?;
                (Some(reg), emb)
            } else {
                (None, None)
            };
            let creation = registration
                .as_ref()
                .map(|r| r.creation())
                .unwrap_or_else(|| {
                    // No EPMD: any non-zero creation that changes between runs.
                    (std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs() as u32)
                        .unwrap_or(1))
                    .max(1)
                });
            Ok(Listening {
                listener: Box::new(TcpIncoming(listener)),
                port,
                creation,
                keep: Box::new((registration, embedded)),
            })
        })
    }

    fn connect<'a>(
        &'a self,
        node: &'a str,
        addr: Option<SocketAddr>,
        ctx: NetContext<'a>,
    ) -> BoxFuture<'a, Result<BoxedTransport, ConnectError>> {
        Box::pin(async move {
            let unreachable = |reason: String| ConnectError::Unreachable {
                node: node.to_owned(),
                reason,
            };
            let addr = match addr {
                Some(a) => a,
                None => {
                    let (name, host) = node.split_once('@').unwrap_or((node, "localhost"));
                    let epmd =
                        epmd::Client::new(host, ctx.settings.epmd_port).timeout(ctx.setup_time);
                    let info = epmd
                        .port_please(name)
                        .await
                        .map_err(|e| unreachable(e.to_string()))?
                        .ok_or_else(|| ConnectError::UnknownToEpmd(node.to_owned()))?;
                    tokio::net::lookup_host((host, info.port))
                        .await
                        .map_err(|e| unreachable(e.to_string()))?
                        .next()
                        .ok_or_else(|| unreachable("host has no address".into()))?
                }
            };
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| unreachable(format!("{addr}: {e}")))?;
            let _ = tcp.set_nodelay(true);
            Ok(Box::new(tcp) as BoxedTransport)
        })
    }
}

/// A TCP listener's accepted connections.
struct TcpIncoming(TcpListener);

impl Listener for TcpIncoming {
    fn accept(&mut self) -> BoxFuture<'_, std::io::Result<(BoxedTransport, String)>> {
        Box::pin(async move {
            let (tcp, peer) = self.0.accept().await?;
            let _ = tcp.set_nodelay(true);
            Ok((Box::new(tcp) as BoxedTransport, peer.to_string()))
        })
    }
}

/// Registers with EPMD, starting an embedded one when none answers on the configured port.
async fn register(
    ctx: NetContext<'_>,
    full: &str,
    port: u16,
) -> Result<(epmd::Registration, Option<epmd::ServerHandle>), NodeError> {
    let name = full.split('@').next().unwrap_or(full);
    let mut info = epmd::NodeInfo::new(name, port);
    if ctx.hidden {
        info.node_type = epmd::NodeType::Hidden;
    }
    let net = ctx.settings;
    info.extra =
        epmd::roles::encode_roles(&net.roles).map_err(|e| NodeError::Roles(e.to_string()))?;
    let client = epmd::Client::new(net.epmd_host.clone(), net.epmd_port).timeout(ctx.setup_time);
    match client.register(info.clone()).await {
        Ok(reg) => Ok((reg, None)),
        Err(epmd::ClientError::Unreachable { .. }) => {
            let server = match epmd::ServerConfig::new().port(net.epmd_port).start().await {
                Ok(s) => {
                    tracing::info!(
                        port = net.epmd_port,
                        "no epmd answered: started an embedded epmd in this process"
                    );
                    Some(s)
                }
                // Someone else started one meanwhile: use it.
                Err(e) => {
                    tracing::debug!(error = %e, "could not start an embedded epmd");
                    None
                }
            };
            let reg = client.register(info).await?;
            Ok((reg, server))
        }
        Err(e) => Err(e.into()),
    }
}
