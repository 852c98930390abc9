//! Prometheus metrics: `GET /metrics` on the address of [`crate::NodeConfig::metrics_listen`]
//! (off by default), in the Prometheus text format (version 0.0.4).
//!
//! # Series
//!
//! | series | type | what |
//! |---|---|---|
//! | `dist_messages_sent_total{peer}` | counter | messages written to the connection (ticks not counted) |
//! | `dist_messages_received_total{peer}` | counter | messages read from it |
//! | `dist_bytes_sent_total{peer}` | counter | bytes written (frames and ticks) |
//! | `dist_bytes_received_total{peer}` | counter | bytes read |
//! | `dist_send_queue_bytes{peer}` | gauge | bytes queued and not yet written ([`crate::send_queue`]) |
//! | `dist_busy_total{peer}` | counter | times a sender found the connection busy (it waited, or was told so) |
//! | `dist_dropped_total{peer}` | counter | messages dropped at the queue's hard cap ([`crate::NodeConfig::dist_queue_cap`]) |
//! | `dist_connections` | gauge | live connections |
//! | `dist_handshake_failures_total{reason}` | counter | failed connection setups by [`crate::ops::HandshakeFailure`]: `bad_cookie`, `not_allowed`, `timeout`, `protocol`, `tls`, `closed`, `other` |
//! | `node_actors` | gauge | processes Erlang sees on this node: what `node_server:info/0` reports as `process_count` |
//!
//! `peer` is the peer's node name (`name@host`). The per-connection series are those of the
//! connection that is live now: a connection that goes away takes its series with it, and a
//! new connection to the same node counts from 0 (Prometheus' `rate()` and `increase()` take
//! such resets in their stride). Every `reason` is always listed, 0 included.
//!
//! Nothing is mirrored: a custom [`Collector`] reads the figures from the node's state at each
//! scrape (the connections' [`crate::send_queue::ConnStats`] and queued bytes, the failure
//! counters of [`crate::ops`], the process registry), so a scrape costs nothing between
//! scrapes and never disagrees with `node_server:info/0`.
//!
//! # Why `prometheus-client`
//!
//! The exposition is written by the `prometheus-client` crate (the Prometheus project's Rust
//! client), not by hand. Each node has a registry of its own, and nothing is global: tests and
//! the deterministic simulator run several nodes in one process, and a process-wide recorder
//! (the `metrics` facade's, or `prometheus`' default registry) would mix their series or let
//! only one node install it. Only the small HTTP/1.1 exchange around it is written here.
//!
//! # HTTP
//!
//! One request per connection (`Connection: close`). `GET` and `HEAD` of `/metrics` (a query
//! string is ignored) answer 200; another path 404; another method on `/metrics` 405; a
//! request that is not HTTP/1.x, whose head exceeds [`MAX_REQUEST`] bytes, or that does not
//! arrive within [`READ_TIMEOUT`], 400 (408 for the time-out). At most
//! [`MAX_CONNECTIONS`] requests are served at once; more connections are closed at once. None
//! of this touches the node: the listener runs in a task of its own, which ends when the node
//! stops.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use crate::core::Core;
use crate::error::NodeError;
use crate::send_queue::SendQueue;

/// The most bytes of a request read (its request line and headers).
pub const MAX_REQUEST: usize = 8 << 10;
/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long writing the response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// The content type of the Prometheus text format.
const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The metrics listener of a running node; dropping it stops the listener.
#[derive(Debug)]
pub(crate) struct MetricsServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MetricsServer {
    /// The address the listener is bound to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds the metrics listener (before the node starts, so a taken address fails the start);
/// returns it with the address it is bound to.
pub(crate) async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), NodeError> {
    let listener = TcpListener::bind(addr).await.map_err(NodeError::Metrics)?;
    let bound = listener.local_addr().map_err(NodeError::Metrics)?;
    Ok((listener, bound))
}

/// Serves `/metrics` of `core` on `listener` (bound to `addr`) until the returned server is
/// dropped.
pub(crate) fn serve(
    (listener, addr): (TcpListener, SocketAddr),
    core: &Arc<Core>,
) -> MetricsServer {
    let registry = Arc::new(registry(Arc::downgrade(core)));
    let node = core.id.name.clone();
    tracing::info!(node = %node, %addr, "serving metrics at /metrics");
    let task = tokio::spawn(accept_loop(listener, registry));
    MetricsServer { addr, task }
}

/// A registry of the node's series.
fn registry(core: Weak<Core>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(NodeCollector { core }));
    registry
}

/// The exposition text of `registry`.
fn render(registry: &Registry) -> Result<String, fmt::Error> {
    let mut text = String::with_capacity(4096);
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)?;
    Ok(text)
}

/// Reads the node's figures at each scrape (see the module docs).
struct NodeCollector {
    core: Weak<Core>,
}

impl fmt::Debug for NodeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCollector").finish_non_exhaustive()
    }
}

/// A series per connection: its name without `_total` (the encoder adds it to counters),
/// help, type, and the value read from the connection's queue.
type PerPeer = (
    &'static str,
    &'static str,
    MetricType,
    fn(&SendQueue) -> u64,
);

fn load(counter: &std::sync::atomic::AtomicU64) -> u64 {
    counter.load(std::sync::atomic::Ordering::Relaxed)
}

const PER_PEER: [PerPeer; 7] = [
    (
        "dist_messages_sent",
        "Distribution messages written to the connection (ticks not counted).",
        MetricType::Counter,
        |q| load(&q.stats.messages_out),
    ),
    (
        "dist_messages_received",
        "Distribution messages read from the connection (ticks not counted).",
        MetricType::Counter,
        |q| load(&q.stats.messages_in),
    ),
    (
        "dist_bytes_sent",
        "Bytes written to the connection after its handshake.",
        MetricType::Counter,
        |q| load(&q.stats.bytes_out),
    ),
    (
        "dist_bytes_received",
        "Bytes read from the connection after its handshake.",
        MetricType::Counter,
        |q| load(&q.stats.bytes_in),
    ),
    (
        "dist_send_queue_bytes",
        "Bytes queued for the connection and not yet written.",
        MetricType::Gauge,
        |q| q.queued_bytes() as u64,
    ),
    (
        "dist_busy",
        "Times a sender found the connection busy (over dist_buf_busy_limit) and waited or was refused.",
        MetricType::Counter,
        |q| load(&q.stats.busy),
    ),
    (
        "dist_dropped",
        "Messages dropped because the connection's queue held its hard cap.",
        MetricType::Counter,
        |q| load(&q.stats.dropped),
    ),
];

/// Encodes one sample of `kind` with `value`.
fn sample(
    kind: MetricType,
    value: u64,
    encoder: prometheus_client::encoding::MetricEncoder<'_>,
) -> fmt::Result {
    match kind {
        MetricType::Counter => ConstCounter::new(value).encode(encoder),
        _ => ConstGauge::new(value).encode(encoder),
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        // The node is gone: nothing to report (the listener stops with it).
        let Some(core) = self.core.upgrade() else {
            return Ok(());
        };
        let mut sessions = core.sessions.all();
        sessions.sort_by(|a, b| a.peer.cmp(&b.peer));
        for (name, help, kind, value) in PER_PEER {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for s in &sessions {
                let labels = [("peer", s.peer.as_str())];
                sample(kind, value(&s.queue), family.encode_family(&labels)?)?;
            }
        }
        let connections = encoder.encode_descriptor(
            "dist_connections",
            "Live distribution connections.",
            None,
            MetricType::Gauge,
        )?;
        sample(MetricType::Gauge, sessions.len() as u64, connections)?;
        let mut failures = encoder.encode_descriptor(
            "dist_handshake_failures",
            "Failed connection setups (incoming and outgoing) by reason.",
            None,
            MetricType::Counter,
        )?;
        for (reason, n) in core.ops.handshake_failures.snapshot() {
            let labels = [("reason", reason.as_str())];
            sample(MetricType::Counter, n, failures.encode_family(&labels)?)?;
        }
        let actors = core.registry().process_count() as u64;
        let node_actors = encoder.encode_descriptor(
            "node_actors",
            "Processes Erlang sees on this node: live actors exposed to Erlang plus the built-in services (process_count of node_server:info/0).",
            None,
            MetricType::Gauge,
        )?;
        sample(MetricType::Gauge, actors, node_actors)
    }
}

/// Accepts connections until aborted; the requests in progress end with it.
async fn accept_loop(listener: TcpListener, registry: Arc<Registry>) {
    let mut requests = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = requests.join_next(), if !requests.is_empty() => continue,
        };
        let (stream, from) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // Out of file descriptors, say: try again shortly.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if requests.len() >= MAX_CONNECTIONS {
            tracing::debug!(%from, "metrics: too many requests at once; connection closed");
            continue;
        }
        let registry = registry.clone();
        requests.spawn(async move {
            if let Err(e) = respond(stream, &registry).await {
                tracing::debug!(%from, error = %e, "metrics: request failed");
            }
        });
    }
}

/// How a request's head ended.
enum Head {
    /// The head is complete: its length (up to the blank line).
    Complete(usize),
    /// [`MAX_REQUEST`] bytes without the end of the head.
    TooLarge,
    /// The client closed after this many bytes, before the head ended.
    Eof(usize),
}

/// Reads a request's head into `buf`.
async fn read_head(stream: &mut TcpStream, buf: &mut [u8; MAX_REQUEST]) -> std::io::Result<Head> {
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(Head::Eof(len));
        }
        // Look for the blank line from a little before the new bytes.
        let from = len.saturating_sub(3);
        len += n;
        if let Some(end) = head_end(&buf[from..len]) {
            return Ok(Head::Complete(from + end));
        }
    }
}

/// Where the blank line that ends a head starts (`\r\n\r\n`, or `\n\n` from lenient clients).
fn head_end(bytes: &[u8]) -> Option<usize> {
    (0..bytes.len())
        .find(|&i| bytes[i..].starts_with(b"\r\n\r\n") || bytes[i..].starts_with(b"\n\n"))
}

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    /// The metrics; `head`: without the body.
    Metrics { head: bool },
    /// Another path.
    NotFound,
    /// Another method on `/metrics`.
    MethodNotAllowed,
    /// Not an HTTP/1.x request.
    BadRequest,
}

/// Routes a request by its head (request line and headers, without the blank line).
fn route(head: &[u8]) -> Route {
    let Ok(head) = std::str::from_utf8(head) else {
        return Route::BadRequest;
    };
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let Some(request_line) = lines.next() else {
        return Route::BadRequest;
    };
    let parts: Vec<&str> = request_line.split(' ').collect();
    let [method, target, version] = parts[..] else {
        return Route::BadRequest;
    };
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    let version_ok = matches!(version, "HTTP/1.0" | "HTTP/1.1");
    if !method_ok || !version_ok || !target.starts_with('/') {
        return Route::BadRequest;
    }
    // Every header line is `Name: value`.
    let headers_ok = lines.all(|l| {
        l.split_once(':')
            .is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()))
    });
    if !headers_ok {
        return Route::BadRequest;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match (path, method) {
        ("/metrics", "GET") => Route::Metrics { head: false },
        ("/metrics", "HEAD") => Route::Metrics { head: true },
        ("/metrics", _) => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// Answers one request on `stream`, then closes it.
async fn respond(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut buf = Box::new([0u8; MAX_REQUEST]);
    let head = tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream, &mut buf)).await;
    let route = match head {
        Err(_) => {
            let body = "request timed out\n";
            write(&mut stream, "408 Request Timeout", body, false).await?;
            linger(&mut stream).await;
            return Ok(());
        }
        Ok(Err(e)) => return Err(e),
        // A connection opened and closed (a port check): nothing to answer.
        Ok(Ok(Head::Eof(0))) => return Ok(()),
        Ok(Ok(Head::Eof(_) | Head::TooLarge)) => Route::BadRequest,
        Ok(Ok(Head::Complete(len))) => route(&buf[..len]),
    };
    let (status, body) = match route {
        Route::Metrics { head } => {
            return match render(registry) {
                Ok(text) => write(&mut stream, "200 OK", &text, head).await,
                Err(_) => {
                    let body = "metrics could not be encoded\n";
                    write(&mut stream, "500 Internal Server Error", body, false).await
                }
            }
        }
        Route::NotFound => ("404 Not Found", "not found\n"),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "only GET and HEAD\n"),
        Route::BadRequest => ("400 Bad Request", "bad request\n"),
    };
    write(&mut stream, status, body, false).await?;
    linger(&mut stream).await;
    Ok(())
}

/// Reads and drops what the client still sends (at most 64 KiB, for at most a second) until
/// it closes: closing a socket with unread input resets the connection, and the client could
/// lose the response (to a request too large or not read to its end, say).
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 << 10;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// Writes a response with `body` (only its length when `head_only`) and closes the stream.
async fn write(
    stream: &mut TcpStream,
    status: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let content_type = if status.starts_with("200") {
        CONTENT_TYPE
    } else {
        "text/plain; charset=utf-8"
    };
    let allow = if status.starts_with("405") {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{allow}\
         Connection: close\r\n\r\n",
        body.len()
    );
    if !head_only {
        response.push_str(body);
    }
    let sent = tokio::time::timeout(WRITE_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    sent.unwrap_or_else(|_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "writing the response timed out",
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            r("GET /metrics?x=1 HTTP/1.0"),
            Route::Metrics { head: false }
        );
        assert_eq!(r("HEAD /metrics HTTP/1.1"), Route::Metrics { head: true });
        assert_eq!(r("GET / HTTP/1.1\r\nHost: x"), Route::NotFound);
        assert_eq!(r("GET /metrics/x HTTP/1.1"), Route::NotFound);
        assert_eq!(r("POST /metrics HTTP/1.1"), Route::MethodNotAllowed);
        for bad in [
            "",
            "hello",
            "GET /metrics",
            "GET /metrics HTTP/2.0",
            "GET  /metrics HTTP/1.1",
            "get /metrics HTTP/1.1",
            "GET metrics HTTP/1.1",
            "GET /metrics HTTP/1.1\r\nno colon here",
            "GET /metrics HTTP/1.1\r\n: empty name",
        ] {
            assert_eq!(r(bad), Route::BadRequest, "{bad:?}");
        }
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nX: \xff"),
            Route::BadRequest
        );
    }

    #[test]
    fn the_end_of_a_head() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(14));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}
