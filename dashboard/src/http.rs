//! A minimal HTTP/1.1 server for the three resources the dashboard has.
//!
//! - `GET /` (or `/index.html`): the page, one HTML document with its script and styles inline;
//! - `GET /events`: a `text/event-stream` (server-sent events) that sends the current snapshot
//!   at once and then every new one, as `data:` lines of JSON;
//! - `GET /state.json`: the current snapshot.
//!
//! Each connection carries one request (`Connection: close`). Only `GET` and `HEAD` are
//! served; the request head must arrive within [`HEAD_TIMEOUT`] and fit [`MAX_HEAD`] bytes.
//! At most [`MAX_STREAMS`] event streams run at once; more get `503`.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

use crate::collect::Published;

/// The page.
const PAGE: &str = include_str!("page.html");
/// The longest request head accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// How long a client may take to send its request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How many event streams may run at once.
pub(crate) const MAX_STREAMS: usize = 64;
/// How often an idle event stream sends a comment, so proxies and clients keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

/// A parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    /// The path, without the query.
    pub path: String,
}

/// Why a request head is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BadRequest {
    #[error("the request line is malformed")]
    Malformed,
    #[error("not HTTP/1.x")]
    Version,
}

/// Parses the request line of a complete head (the bytes up to the blank line).
pub(crate) fn parse_head(head: &[u8]) -> Result<Request, BadRequest> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| BadRequest::Malformed)?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest::Malformed);
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(BadRequest::Malformed);
    }
    if !target.starts_with('/') {
        return Err(BadRequest::Malformed);
    }
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(BadRequest::Version);
    }
    let path = target.split(['?', '#']).next().unwrap_or("/");
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
    })
}

/// Reads a request head: the bytes up to and including the first blank line.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(end + 4);
            return Ok(Some(buf));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

/// A whole response with a body (or without, for `HEAD`).
fn response(status: &str, content_type: &str, body: &[u8], head_only: bool) -> Vec<u8> {
    response_with(status, content_type, "", body, head_only)
}

/// Like [`response`], with `extra` header lines (each ending in CRLF).
fn response_with(
    status: &str,
    content_type: &str,
    extra: &str,
    body: &[u8],
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\n\
         Content-Type: {content_type}\r\n{extra}\
         Content-Length: {}\r\n\
         Cache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; \
         style-src 'unsafe-inline'; connect-src 'self'; img-src 'self' data:\r\n\
         Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// Serves connections on `listener` until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    snapshots: watch::Receiver<Arc<Published>>,
    mut stop: watch::Receiver<bool>,
) {
    let streams = Arc::new(Semaphore::new(MAX_STREAMS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let snapshots = snapshots.clone();
        let stop = stop.clone();
        let streams = streams.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(stream, snapshots, stop, streams).await {
                tracing::debug!(%peer, error = %e, "http connection ended");
            }
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    snapshots: watch::Receiver<Arc<Published>>,
    stop: watch::Receiver<bool>,
    streams: Arc<Semaphore>,
) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(Some(head))) => head,
        Ok(Ok(None)) | Err(_) => return Ok(()),
        Ok(Err(e)) => return Err(e),
    };
    let request = match parse_head(&head) {
        Ok(r) => r,
        Err(e) => {
            let body = format!("{e}\n");
            let status = match e {
                BadRequest::Version => "505 HTTP Version Not Supported",
                BadRequest::Malformed => "400 Bad Request",
            };
            return stream
                .write_all(&response(status, "text/plain", body.as_bytes(), false))
                .await;
        }
    };
    let head_only = request.method == "HEAD";
    if request.method != "GET" && !head_only {
        let out = response_with(
            "405 Method Not Allowed",
            "text/plain",
            "Allow: GET, HEAD\r\n",
            b"only GET and HEAD\n",
            false,
        );
        return stream.write_all(&out).await;
    }
    let out = match request.path.as_str() {
        "/" | "/index.html" => response(
            "200 OK",
            "text/html; charset=utf-8",
            PAGE.as_bytes(),
            head_only,
        ),
        "/state.json" => {
            let json = snapshots.borrow().json.clone();
            response("200 OK", "application/json", json.as_bytes(), head_only)
        }
        "/events" if !head_only => {
            let Ok(_permit) = streams.try_acquire() else {
                let out = response(
                    "503 Service Unavailable",
                    "text/plain",
                    b"too many event streams\n",
                    false,
                );
                return stream.write_all(&out).await;
            };
            return events(stream, snapshots, stop).await;
        }
        "/favicon.ico" => response("204 No Content", "image/x-icon", b"", true),
        _ => response("404 Not Found", "text/plain", b"not found\n", head_only),
    };
    stream.write_all(&out).await?;
    stream.shutdown().await
}

/// One server-sent event carrying `json`.
pub(crate) fn event(seq: u64, json: &str) -> String {
    // JSON from serde_json has no raw newlines, so it fits one `data:` line.
    format!("id: {seq}\ndata: {json}\n\n")
}

/// Streams snapshots until the client goes or the dashboard stops.
async fn events(
    mut stream: TcpStream,
    mut snapshots: watch::Receiver<Arc<Published>>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    stream
        .write_all(
            b"HTTP/1.1 200 OK\r\n\
              Content-Type: text/event-stream\r\n\
              Cache-Control: no-store\r\n\
              X-Accel-Buffering: no\r\n\
              Connection: close\r\n\r\n\
              retry: 1000\n\n",
        )
        .await?;
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    keepalive.reset();
    loop {
        let current = snapshots.borrow_and_update().clone();
        if current.snapshot.seq > 0 {
            stream
                .write_all(event(current.snapshot.seq, &current.json).as_bytes())
                .await?;
        }
        loop {
            tokio::select! {
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    break;
                }
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() {
                        return Ok(());
                    }
                }
                _ = keepalive.tick() => stream.write_all(b": keepalive\n\n").await?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(
            parse_head(b"GET /state.json?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Ok(Request {
                method: "GET".into(),
                path: "/state.json".into()
            })
        );
        assert_eq!(
            parse_head(b"GET / HTTP/2\r\n\r\n"),
            Err(BadRequest::Version)
        );
        assert_eq!(parse_head(b"GET /\r\n\r\n"), Err(BadRequest::Malformed));
        assert_eq!(
            parse_head(b"GET http://x/ HTTP/1.1\r\n\r\n"),
            Err(BadRequest::Malformed)
        );
        assert_eq!(
            parse_head(b"get / HTTP/1.1\r\n\r\n"),
            Err(BadRequest::Malformed)
        );
        assert_eq!(
            parse_head(b"GET  / HTTP/1.1\r\n\r\n"),
            Err(BadRequest::Malformed)
        );
    }

    #[test]
    fn events_are_single_data_lines() {
        assert_eq!(event(3, "{\"a\":1}"), "id: 3\ndata: {\"a\":1}\n\n");
    }

    #[test]
    fn responses_have_length_and_no_body_for_head() {
        let full = String::from_utf8(response("200 OK", "text/plain", b"hi", false)).unwrap();
        assert!(full.contains("Content-Length: 2\r\n"));
        assert!(full.ends_with("\r\n\r\nhi"));
        let head = String::from_utf8(response("200 OK", "text/plain", b"hi", true)).unwrap();
        assert!(head.ends_with("\r\n\r\n"));
    }
}
