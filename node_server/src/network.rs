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

use tokio::net::TcpListener;

use crate::config::NodeConfig;
use crate::error::{ConnectError, NodeError};
use crate::session::BoxedTransport;

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
    /// Starts listening for the node `node` (its full name) configured by `config`.
    fn listen<'a>(
        &'a self,
        node: &'a str,
        config: &'a NodeConfig,
    ) -> BoxFuture<'a, Result<Listening, NodeError>>;

    /// Opens a byte stream to the node `node` (a full name), at `addr` when given (TCP: no
    /// EPMD lookup then).
    fn connect<'a>(
        &'a self,
        node: &'a str,
        addr: Option<SocketAddr>,
        config: &'a NodeConfig,
    ) -> BoxFuture<'a, Result<BoxedTransport, ConnectError>>;
}

/// TCP with EPMD, as Erlang's `inet_tcp_dist`: the default network.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpNetwork;

impl Network for TcpNetwork {
    fn listen<'a>(
        &'a self,
        node: &'a str,
        config: &'a NodeConfig,
    ) -> BoxFuture<'a, Result<Listening, NodeError>> {
        Box::pin(async move {
            let listener = TcpListener::bind(config.net.listen)
                .await
                .map_err(NodeError::Listen)?;
            let port = listener.local_addr().map_err(NodeError::Listen)?.port();
            let (registration, embedded) = if config.net.register_with_epmd {
                let (reg, emb) = register(config, node, port).await?;
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
        config: &'a NodeConfig,
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
                        epmd::Client::new(host, config.net.epmd_port).timeout(config.setup_time);
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
    config: &NodeConfig,
    full: &str,
    port: u16,
) -> Result<(epmd::Registration, Option<epmd::ServerHandle>), NodeError> {
    let name = full.split('@').next().unwrap_or(full);
    let mut info = epmd::NodeInfo::new(name, port);
    if config.hidden {
        info.node_type = epmd::NodeType::Hidden;
    }
    info.extra = epmd::roles::encode_roles(&config.net.roles)
        .map_err(|e| NodeError::Roles(e.to_string()))?;
    let net = &config.net;
    let client = epmd::Client::new(net.epmd_host.clone(), net.epmd_port).timeout(config.setup_time);
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
