//! An async EPMD client that works against real epmd and against this crate's server.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::protocol::{self, Alive2Response, Names, NodeInfo, ProtocolError, Request};
use crate::roles;

/// Why an EPMD request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No EPMD answered at any address of the host.
    #[error("cannot connect to epmd at {host}:{port}: {source}")]
    Unreachable {
        /// The host asked.
        host: String,
        /// The port asked.
        port: u16,
        /// The last connection error.
        source: io::Error,
    },
    /// The connection failed after it was made.
    #[error("epmd connection failed: {0}")]
    Io(#[from] io::Error),
    /// EPMD answered with bytes that are not a valid reply.
    #[error("invalid reply from epmd: {0}")]
    Protocol(#[from] ProtocolError),
    /// EPMD closed the connection without a (complete) reply: it refused the request.
    #[error("epmd closed the connection without a reply")]
    NoReply,
    /// EPMD refused a registration: the name is taken.
    #[error("epmd refused to register {0:?}: the name is taken")]
    NameTaken(String),
    /// EPMD did not answer in time.
    #[error("epmd did not answer within {0:?}")]
    Timeout(Duration),
}

/// The reply to a `STOP` request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The node was unregistered.
    Stopped,
    /// No node had that name.
    NoSuchNode,
}

/// Talks to the EPMD of one host. Each request uses a connection of its own, as epmd expects.
#[derive(Debug, Clone)]
pub struct Client {
    host: String,
    port: u16,
    timeout: Duration,
}

impl Default for Client {
    /// EPMD on this host, at `ERL_EPMD_PORT` or 4369.
    fn default() -> Self {
        Client::new(
            "localhost",
            crate::env_port().unwrap_or(protocol::DEFAULT_PORT),
        )
    }
}

/// A live registration. The node stays registered while this value lives; dropping it closes
/// the connection and EPMD forgets the node.
#[derive(Debug)]
pub struct Registration {
    stream: TcpStream,
    creation: u32,
}

impl Registration {
    /// The creation EPMD assigned: stamp it on every pid, port and reference the node makes.
    pub fn creation(&self) -> u32 {
        self.creation
    }

    /// Resolves when EPMD closes the connection (it stopped, or `STOP`ped this node).
    pub async fn closed(&mut self) {
        let mut scratch = [0u8; 16];
        loop {
            match self.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

impl Client {
    /// A client for the EPMD at `host` (a name or an address) and `port`.
    pub fn new(host: impl Into<String>, port: u16) -> Client {
        Client {
            host: host.into(),
            port,
            timeout: Duration::from_secs(7),
        }
    }

    /// Sets how long each request may take (default 7 s, OTP's `net_setuptime`).
    pub fn timeout(mut self, timeout: Duration) -> Client {
        self.timeout = timeout;
        self
    }

    /// The host asked.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port asked.
    pub fn port(&self) -> u16 {
        self.port
    }

    async fn connect(&self) -> Result<TcpStream, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            host: self.host.clone(),
            port: self.port,
            source,
        };
        // Like real epmd's client, try every address of the host (IPv6 and IPv4 loopback for
        // "localhost") until one answers.
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(unreachable)?
            .collect();
        let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no addresses");
        for addr in addrs {
            match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    return Ok(stream);
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = io::Error::new(io::ErrorKind::TimedOut, "connect timed out"),
            }
        }
        Err(unreachable(last))
    }

    async fn with_timeout<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout(self.timeout))?
    }

    /// Sends `request` and reads the whole reply, until EPMD closes the connection.
    async fn exchange(&self, request: Request) -> Result<Vec<u8>, ClientError> {
        self.with_timeout(async {
            let mut stream = self.connect().await?;
            let mut out = BytesMut::new();
            request.encode(&mut out);
            stream.write_all(&out).await?;
            let mut reply = Vec::new();
            stream.read_to_end(&mut reply).await?;
            Ok(reply)
        })
        .await
    }

    /// Registers a node. Keep the returned [`Registration`] for as long as the node should
    /// stay registered.
    pub async fn register(&self, info: NodeInfo) -> Result<Registration, ClientError> {
        let name = info.name.clone();
        self.with_timeout(async {
            let mut stream = self.connect().await?;
            let mut out = BytesMut::new();
            Request::Alive2(info).encode(&mut out);
            stream.write_all(&out).await?;
            let mut buf = BytesMut::with_capacity(8);
            loop {
                if let Some(reply) = Alive2Response::decode(&mut buf)? {
                    if reply.result != 0 {
                        return Err(ClientError::NameTaken(name));
                    }
                    return Ok(Registration {
                        stream,
                        creation: reply.creation,
                    });
                }
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(ClientError::NoReply);
                }
            }
        })
        .await
    }

    /// Looks a node up by name (the part before `@`); `None` when it is not registered.
    pub async fn port_please(&self, name: &str) -> Result<Option<NodeInfo>, ClientError> {
        let reply = self.exchange(Request::PortPlease2(name.to_owned())).await?;
        let mut buf = BytesMut::from(&reply[..]);
        protocol::decode_port2_response(&mut buf)?.ok_or(ClientError::NoReply)
    }

    /// The registered names and their ports.
    pub async fn names(&self) -> Result<Names, ClientError> {
        let reply = self.exchange(Request::Names).await?;
        Ok(protocol::parse_names(&reply)?)
    }

    /// Everything EPMD knows, as the text it sends (without the leading port).
    pub async fn dump(&self) -> Result<String, ClientError> {
        let reply = self.exchange(Request::Dump).await?;
        if reply.len() < 4 {
            return Err(ClientError::NoReply);
        }
        Ok(String::from_utf8_lossy(&reply[4..]).replace('\0', ""))
    }

    /// Asks EPMD to stop. `Ok(false)` when it refuses because nodes are registered.
    pub async fn kill(&self) -> Result<bool, ClientError> {
        // Like OTP's own client, decide on the first 2 bytes.
        let reply = self.exchange(Request::Kill).await?;
        match reply.get(..2) {
            Some(b"OK") => Ok(true),
            Some(b"NO") => Ok(false),
            _ if reply.is_empty() => Err(ClientError::NoReply),
            _ => Err(ProtocolError::Malformed("KILL reply").into()),
        }
    }

    /// Asks EPMD to unregister a node (needs `-relaxed_command_check` on the daemon).
    pub async fn stop(&self, name: &str) -> Result<StopOutcome, ClientError> {
        // Like OTP's own client, decide on the first 7 bytes: OTP's epmd answers a STOP of an
        // unknown name with "NOEXIST" and then "STOPPED" as well.
        let reply = self.exchange(Request::Stop(name.to_owned())).await?;
        match reply.get(..7) {
            Some(b"STOPPED") => Ok(StopOutcome::Stopped),
            Some(b"NOEXIST") => Ok(StopOutcome::NoSuchNode),
            _ if reply.is_empty() => Err(ClientError::NoReply),
            _ => Err(ProtocolError::Malformed("STOP reply").into()),
        }
    }

    /// The registered nodes, each looked up for its full registration.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        let names = self.names().await?;
        let mut nodes = Vec::with_capacity(names.nodes.len());
        for (name, _) in names.nodes {
            // A node may go between the two requests.
            if let Some(info) = self.port_please(&name).await? {
                nodes.push(info);
            }
        }
        Ok(nodes)
    }

    /// The registered nodes that declare `role` in their EXTRA (see [`crate::roles`]).
    pub async fn nodes_with_role(&self, role: &str) -> Result<Vec<NodeInfo>, ClientError> {
        let mut nodes = self.nodes().await?;
        nodes.retain(|n| roles::decode_roles(&n.extra).iter().any(|r| r == role));
        Ok(nodes)
    }
}
