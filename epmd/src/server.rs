//! The EPMD daemon: a tokio server that behaves like OTP's `epmd`.
//!
//! One task per listening address accepts connections; one task per connection reads a single
//! request (within the packet timeout), answers it and closes, except after a successful
//! `ALIVE2_REQ`, when the connection is kept and the registration lives exactly as long as it.
//! Registering, `KILL`, `STOP` and `DUMP` are refused to peers that are not on this host.
//!
//! Hostile clients cost at most their own connection: a malformed or oversize request closes
//! it, a client that never finishes a request is closed after the packet timeout, and when more
//! than [`ServerConfig::max_connections`] connections are waiting for a request the oldest is
//! closed (with a log line) to make room, so idle sockets cannot lock out real nodes.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::protocol::{self, Alive2Response, NodeInfo, Request};

/// How the daemon runs. Defaults match real epmd: port 4369 (or `ERL_EPMD_PORT` when read with
/// [`ServerConfig::from_env`]), all addresses, strict command checks, 60 s packet timeout.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    port: u16,
    addresses: Vec<IpAddr>,
    relaxed_command_check: bool,
    packet_timeout: Duration,
    max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            port: protocol::DEFAULT_PORT,
            addresses: Vec::new(),
            relaxed_command_check: false,
            packet_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

impl ServerConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// The defaults, with the port from `ERL_EPMD_PORT` and addresses from `ERL_EPMD_ADDRESS`
    /// (comma-separated) when they are set and valid.
    pub fn from_env() -> Self {
        let mut config = Self::default();
        if let Some(port) = crate::env_port() {
            config.port = port;
        }
        if let Ok(list) = std::env::var("ERL_EPMD_ADDRESS") {
            if let Ok(addrs) = parse_address_list(&list) {
                config.addresses = addrs;
            }
        }
        config
    }

    /// The port to listen on; 0 picks a free one (see [`ServerHandle::port`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// The addresses to listen on. Empty (the default) means all addresses, IPv4 and IPv6;
    /// otherwise the loopback addresses are added, as real epmd does.
    pub fn addresses(mut self, addresses: Vec<IpAddr>) -> Self {
        self.addresses = addresses;
        self
    }

    /// Allow `STOP_REQ`, and `KILL_REQ` while nodes are registered (`-relaxed_command_check`).
    pub fn relaxed_command_check(mut self, relaxed: bool) -> Self {
        self.relaxed_command_check = relaxed;
        self
    }

    /// How long a client may take to send its request (`-packet_timeout`).
    pub fn packet_timeout(mut self, timeout: Duration) -> Self {
        self.packet_timeout = timeout;
        self
    }

    /// How many connections may wait for their request at once; past that the oldest is closed.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }

    /// Binds the listeners and starts serving in the background of the current tokio runtime.
    pub async fn start(self) -> io::Result<ServerHandle> {
        let listeners = bind_all(&self).await?;
        let port = listeners[0].local_addr()?.port();
        let local_addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        let (shutdown, _) = watch::channel(false);
        let state = Arc::new(State {
            port,
            relaxed: self.relaxed_command_check,
            packet_timeout: self.packet_timeout,
            max_connections: self.max_connections,
            shutdown: shutdown.clone(),
            inner: Mutex::new(Inner::default()),
        });
        let mut tasks = JoinSet::new();
        for listener in listeners {
            tasks.spawn(accept_loop(state.clone(), listener));
        }
        tracing::info!(port, addresses = ?local_addrs, "epmd listening");
        Ok(ServerHandle {
            port,
            local_addrs,
            state,
            tasks,
        })
    }
}

/// Parses a comma-separated address list, as `-address` and `ERL_EPMD_ADDRESS` take it.
pub fn parse_address_list(list: &str) -> Result<Vec<IpAddr>, std::net::AddrParseError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect()
}

async fn bind_all(config: &ServerConfig) -> io::Result<Vec<TcpListener>> {
    // (address, required): the implicit loopbacks are best effort.
    let mut wanted: Vec<(IpAddr, bool)> = Vec::new();
    if config.addresses.is_empty() {
        // A dual-stack wildcard covers IPv4 and IPv6; fall back to IPv4 without IPv6.
        wanted.push((IpAddr::V6(Ipv6Addr::UNSPECIFIED), false));
        wanted.push((IpAddr::V4(Ipv4Addr::UNSPECIFIED), false));
    } else {
        wanted.extend(config.addresses.iter().map(|a| (*a, true)));
        for lo in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            if !config.addresses.contains(&lo) {
                wanted.push((lo, false));
            }
        }
    }
    let mut port = config.port;
    let mut listeners = Vec::new();
    let mut first_error = None;
    for (addr, required) in wanted {
        match TcpListener::bind(SocketAddr::new(addr, port)).await {
            Ok(l) => {
                port = l.local_addr()?.port();
                listeners.push(l);
                if config.addresses.is_empty() {
                    break;
                }
            }
            Err(e) if required => return Err(e),
            Err(e) => {
                tracing::debug!(%addr, port, error = %e, "not listening on this address");
                first_error.get_or_insert(e);
            }
        }
    }
    if listeners.is_empty() {
        return Err(first_error.unwrap_or_else(|| io::Error::other("no address to listen on")));
    }
    Ok(listeners)
}

/// A running daemon. Dropping the handle stops it.
#[derive(Debug)]
pub struct ServerHandle {
    port: u16,
    local_addrs: Vec<SocketAddr>,
    state: Arc<State>,
    tasks: JoinSet<()>,
}

impl ServerHandle {
    /// The port it listens on (the real one when configured with 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The addresses it listens on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The names registered now, most recent first.
    pub fn registered(&self) -> Vec<NodeInfo> {
        self.state.lock().registered_newest_first()
    }

    /// Waits until the daemon stops: after a `KILL_REQ` it accepted, or [`ServerHandle::stop`].
    pub async fn stopped(&self) {
        let mut rx = self.state.shutdown.subscribe();
        let _ = rx.wait_for(|stopped| *stopped).await;
    }

    /// Stops accepting, closes every connection (unregistering every node) and waits for the
    /// listeners to close.
    pub async fn stop(mut self) {
        self.state.shutdown.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.state.shutdown.send_replace(true);
    }
}

#[derive(Debug)]
struct State {
    port: u16,
    relaxed: bool,
    packet_timeout: Duration,
    max_connections: usize,
    shutdown: watch::Sender<bool>,
    inner: Mutex<Inner>,
}

impl State {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Default)]
struct Inner {
    nodes: HashMap<String, Registered>,
    /// The last creation given to each name that is no longer registered.
    past_creations: HashMap<String, u32>,
    /// Connections waiting for their request, oldest first, with a way to close them.
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
    next_conn: u64,
    next_seq: u64,
}

#[derive(Debug)]
struct Registered {
    info: NodeInfo,
    creation: u32,
    conn: u64,
    seq: u64,
    kick: Option<oneshot::Sender<()>>,
}

impl Inner {
    /// Registrations, most recent first, as real epmd lists them.
    fn newest_first(&self) -> Vec<&Registered> {
        let mut nodes: Vec<&Registered> = self.nodes.values().collect();
        nodes.sort_by_key(|r| std::cmp::Reverse(r.seq));
        nodes
    }

    fn registered_newest_first(&self) -> Vec<NodeInfo> {
        self.newest_first()
            .into_iter()
            .map(|r| r.info.clone())
            .collect()
    }

    fn next_creation(&mut self, name: &str) -> u32 {
        let c = match self.past_creations.remove(name) {
            Some(last) => last.wrapping_add(1),
            None => {
                // A fresh name starts somewhere unpredictable so that a restarted epmd does not
                // hand a new incarnation the creation an old one had.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
                    .unwrap_or(1);
                nanos ^ (self.next_seq as u32).wrapping_mul(0x9e37_79b9)
            }
        };
        if c == 0 {
            1
        } else {
            c
        }
    }

    fn unregister_conn(&mut self, name: &str, conn: u64) -> bool {
        if self.nodes.get(name).is_some_and(|r| r.conn == conn) {
            if let Some(r) = self.nodes.remove(name) {
                self.remember_creation(name, r.creation);
            }
            return true;
        }
        false
    }

    fn remember_creation(&mut self, name: &str, creation: u32) {
        const MAX_REMEMBERED: usize = 10_000;
        if self.past_creations.len() >= MAX_REMEMBERED {
            self.past_creations.clear();
        }
        self.past_creations.insert(name.to_owned(), creation);
    }

    fn stop_waiting(&mut self, conn: u64) {
        if let Some(i) = self.waiting.iter().position(|(id, _)| *id == conn) {
            self.waiting.remove(i);
        }
    }
}

async fn accept_loop(state: Arc<State>, listener: TcpListener) {
    let mut shutdown = state.shutdown.subscribe();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (conn, closed) = {
            let mut inner = state.lock();
            inner.next_conn += 1;
            let conn = inner.next_conn;
            if inner.waiting.len() >= state.max_connections {
                if let Some((_, kick)) = inner.waiting.pop_front() {
                    tracing::warn!(
                        limit = state.max_connections,
                        %peer,
                        "connection limit reached: closing the oldest connection that has not sent a request"
                    );
                    let _ = kick.send(());
                }
            }
            let (tx, rx) = oneshot::channel();
            inner.waiting.push_back((conn, tx));
            (conn, rx)
        };
        let state = state.clone();
        tokio::spawn(async move {
            let local = is_local_peer(&stream, peer);
            serve_connection(&state, stream, peer, local, conn, closed).await;
        });
    }
}

fn is_local_peer(stream: &TcpStream, peer: SocketAddr) -> bool {
    let ip = peer.ip().to_canonical();
    ip.is_loopback()
        || stream
            .local_addr()
            .is_ok_and(|local| local.ip().to_canonical() == ip)
}

async fn serve_connection(
    state: &State,
    mut stream: TcpStream,
    peer: SocketAddr,
    local: bool,
    conn: u64,
    mut closed: oneshot::Receiver<()>,
) {
    let mut buf = BytesMut::with_capacity(64);
    // A client sends its request as soon as it is connected, so it has usually arrived by
    // now: read it without arming the packet timer or subscribing to shutdown.
    let request = match try_read_request(&stream, &mut buf) {
        Some(r) => Some(r),
        None => {
            let mut shutdown = state.shutdown.subscribe();
            tokio::select! {
                _ = shutdown.wait_for(|s| *s) => None,
                _ = &mut closed => None,
                _ = tokio::time::sleep(state.packet_timeout) => {
                    tracing::debug!(%peer, "closing connection: no complete request within the packet timeout");
                    None
                }
                r = read_request(&mut stream, &mut buf) => Some(r),
            }
        }
    };
    // Whatever happened, this connection no longer waits for its request: stop counting it
    // before answering, so that a client that gets its answer and connects again at once never
    // finds its finished connection still holding a place.
    state.lock().stop_waiting(conn);
    let Some(request) = request else {
        return;
    };
    let request = match request {
        Ok(Some(r)) => r,
        Ok(None) => {
            tracing::debug!(%peer, "connection closed before a complete request");
            return;
        }
        Err(e) => {
            tracing::info!(%peer, error = %e, "closing connection after a bad request");
            return;
        }
    };
    tracing::debug!(%peer, ?request, "request");
    let mut out = BytesMut::with_capacity(128);
    match request {
        Request::Alive2(info) => {
            if !local {
                tracing::warn!(%peer, name = %info.name, "refused ALIVE2_REQ from a non-local address");
                return;
            }
            register(state, stream, peer, conn, info).await;
            return;
        }
        Request::PortPlease2(name) => {
            let inner = state.lock();
            protocol::encode_port2_response(inner.nodes.get(&name).map(|r| &r.info), &mut out);
        }
        Request::Names => {
            out.put_u32(u32::from(state.port));
            for info in state.lock().registered_newest_first() {
                protocol::encode_names_line(&info.name, info.port, &mut out);
            }
        }
        Request::Dump => {
            if !local {
                tracing::warn!(%peer, "refused DUMP_REQ from a non-local address");
                return;
            }
            out.put_u32(u32::from(state.port));
            let inner = state.lock();
            for r in inner.newest_first() {
                out.put_slice(
                    format!(
                        "active name     <{}> at port {}, fd = {}\n\0",
                        r.info.name, r.info.port, r.conn
                    )
                    .as_bytes(),
                );
            }
            for (name, creation) in &inner.past_creations {
                out.put_slice(
                    format!("old/unused name <{name}>, creation = {creation} \n\0").as_bytes(),
                );
            }
        }
        Request::Kill => {
            if !local {
                tracing::warn!(%peer, "refused KILL_REQ from a non-local address");
                return;
            }
            if !state.relaxed && !state.lock().nodes.is_empty() {
                tracing::info!(%peer, "refused KILL_REQ: nodes are registered");
                let _ = stream.write_all(b"NO").await;
                return;
            }
            let _ = stream.write_all(b"OK").await;
            let _ = stream.shutdown().await;
            tracing::info!(%peer, "KILL_REQ: stopping");
            state.shutdown.send_replace(true);
            return;
        }
        Request::Stop(name) => {
            if !local {
                tracing::warn!(%peer, "refused STOP_REQ from a non-local address");
                return;
            }
            if !state.relaxed {
                tracing::info!(%peer, %name, "refused STOP_REQ: needs -relaxed_command_check");
                return;
            }
            let kicked = {
                let mut inner = state.lock();
                match inner.nodes.remove(&name) {
                    Some(mut r) => {
                        inner.remember_creation(&name, r.creation);
                        if let Some(kick) = r.kick.take() {
                            let _ = kick.send(());
                        }
                        true
                    }
                    None => false,
                }
            };
            tracing::info!(%peer, %name, stopped = kicked, "STOP_REQ");
            out.put_slice(if kicked { b"STOPPED" } else { b"NOEXIST" });
        }
    }
    let _ = stream.write_all(&out).await;
    // Dropping the stream closes it (as OTP's epmd does: no separate shutdown call); the
    // request was read whole, so the close is a FIN after the reply.
}

/// What [`read_request`] gives, from the bytes already received, without waiting: `None`
/// when the request is not complete yet (what arrived stays in `buf`).
fn try_read_request(
    stream: &TcpStream,
    buf: &mut BytesMut,
) -> Option<Result<Option<Request>, Box<dyn std::error::Error + Send + Sync>>> {
    loop {
        match Request::decode(buf) {
            Ok(Some(request)) if buf.is_empty() => return Some(Ok(Some(request))),
            Ok(Some(_)) => return Some(Err("bytes after the request".into())),
            Err(e) => return Some(Err(e.into())),
            Ok(None) => {}
        }
        match stream.try_read_buf(buf) {
            Ok(0) => return Some(Ok(None)),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return None,
            Err(e) => return Some(Err(e.into())),
        }
    }
}

/// Reads until one request is complete; `Ok(None)` when the peer closes first.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
) -> Result<Option<Request>, Box<dyn std::error::Error + Send + Sync>> {
    loop {
        if let Some(request) = Request::decode(buf)? {
            if !buf.is_empty() {
                return Err("bytes after the request".into());
            }
            return Ok(Some(request));
        }
        if stream.read_buf(buf).await? == 0 {
            return Ok(None);
        }
    }
}

async fn register(
    state: &State,
    mut stream: TcpStream,
    peer: SocketAddr,
    conn: u64,
    info: NodeInfo,
) {
    let extended = info.high_version >= 6;
    let name = info.name.clone();
    let (kick_tx, mut kicked) = oneshot::channel();
    let reply = {
        let mut inner = state.lock();
        if inner.nodes.contains_key(&name) {
            None
        } else {
            let creation = inner.next_creation(&name);
            inner.next_seq += 1;
            let seq = inner.next_seq;
            inner.nodes.insert(
                name.clone(),
                Registered {
                    info: info.clone(),
                    creation,
                    conn,
                    seq,
                    kick: Some(kick_tx),
                },
            );
            Some(creation)
        }
    };
    let mut out = BytesMut::with_capacity(8);
    let Some(creation) = reply else {
        tracing::info!(%peer, %name, "refused ALIVE2_REQ: name already registered");
        Alive2Response {
            result: 1,
            creation: 99,
            extended,
        }
        .encode(&mut out);
        let _ = stream.write_all(&out).await;
        return;
    };
    let sent_creation = if extended {
        creation
    } else {
        (creation - 1) % 3 + 1
    };
    Alive2Response {
        result: 0,
        creation: sent_creation,
        extended,
    }
    .encode(&mut out);
    if stream.write_all(&out).await.is_err() {
        state.lock().unregister_conn(&name, conn);
        return;
    }
    tracing::info!(%name, port = info.port, creation = sent_creation, "registered");
    // The registration lives until the node closes the socket or sends anything more.
    let mut shutdown = state.shutdown.subscribe();
    let mut scratch = [0u8; 64];
    tokio::select! {
        _ = shutdown.wait_for(|s| *s) => {}
        _ = &mut kicked => {}
        _ = stream.read(&mut scratch) => {}
    }
    if state.lock().unregister_conn(&name, conn) {
        tracing::info!(%name, "unregistered");
    }
}
