//! The dashboard's HTTP side and its view of nodes of ours, with no browser and no Erlang:
//! `/events` read as a plain server-sent event stream, `/state.json`, `/`, and errors.
//!
//! The dashboard's node and two nodes of ours use the test's EPMD ([`testkit::Epmd`], on a
//! port the system picked); one of the two runs scope `pg` with a Rust actor in group
//! `workers`. The stream must show both as `node_server` nodes with the group, their
//! connection with each end's send queue (queued bytes, busy and drop counts), and a node that
//! shuts down as gone within [`LIVE`].

use std::time::{Duration, Instant};

use node_server::{Node, NodeConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const COOKIE: &str = "dashboard_stream_cookie";
const LIVE: Duration = Duration::from_secs(2);
const SETUP: Duration = Duration::from_secs(20);

struct Idle;

impl Actor for Idle {
    type Msg = ();
    type State = ();
    type Arguments = ();

    async fn pre_start(&self, _me: ActorRef<()>, _: ()) -> Result<(), ActorProcessingErr> {
        Ok(())
    }
}

/// An open `/events` stream.
struct Events {
    reader: BufReader<TcpStream>,
}

impl Events {
    async fn open(port: u16) -> Events {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream
            .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            .await
            .expect("send");
        let mut reader = BufReader::new(stream);
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.expect("head");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            head.push(line);
        }
        assert!(head[0].starts_with("HTTP/1.1 200"), "{head:?}");
        assert!(
            head.iter()
                .any(|l| l.eq_ignore_ascii_case("content-type: text/event-stream\r\n")),
            "{head:?}"
        );
        Events { reader }
    }

    /// The next event's data as JSON.
    async fn next(&mut self) -> Value {
        let mut data = String::new();
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).await.expect("event");
            assert!(n > 0, "the stream ended");
            let line = line.trim_end_matches('\n');
            if line.is_empty() {
                if !data.is_empty() {
                    return serde_json::from_str(&data).expect("event data is JSON");
                }
                continue;
            }
            if let Some(d) = line.strip_prefix("data: ") {
                data.push_str(d);
            }
        }
    }

    /// Reads events until one satisfies `check`; returns it and how long that took.
    async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> (Value, Duration) {
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < limit {
            match tokio::time::timeout(limit.saturating_sub(start.elapsed()), self.next()).await {
                Ok(event) if check(&event) => {
                    let took = start.elapsed();
                    println!("dashboard stream: {what}: after {} ms", took.as_millis());
                    return (event, took);
                }
                Ok(event) => last = event,
                Err(_) => break,
            }
        }
        panic!("not within {limit:?}: {what}; last event: {last:#}");
    }
}

fn node<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    state["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["name"] == name)
}

async fn get(port: u16, request: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut reply = String::new();
    tokio::time::timeout(SETUP, stream.read_to_string(&mut reply))
        .await
        .expect("reply in time")
        .expect("reply");
    reply
}

async fn start_node(name: String, epmd_port: u16, scopes: &[&str], hidden: bool) -> Node {
    NodeConfig::new(name)
        .hidden(hidden)
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .pg_scopes(scopes.iter().copied())
        .start()
        .await
        .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_follows_nodes_of_ours() {
    let tag = std::process::id();
    let epmd = testkit::Epmd::start();
    let epmd_port = epmd.port();
    let dashboard = node_dashboard::serve(
        node_dashboard::DashboardConfig::new()
            .listen("127.0.0.1:0".parse().unwrap())
            .cookie(COOKIE)
            .epmd("localhost", epmd_port),
    )
    .await
    .expect("dashboard starts");
    let port = dashboard.local_addr().port();

    let page = get(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(page.contains("new EventSource(\"events\")"));
    let head = get(port, "HEAD /state.json HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
    let missing = get(port, "GET /nope HTTP/1.1\r\n\r\n").await;
    assert!(missing.starts_with("HTTP/1.1 404"));
    let post = get(port, "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert!(post.starts_with("HTTP/1.1 405") && post.contains("Allow: GET, HEAD\r\n"));
    let junk = get(port, "hello\r\n\r\n").await;
    assert!(junk.starts_with("HTTP/1.1 400"));

    let mut events = Events::open(port).await;
    let a = start_node(format!("dsa_{tag}"), epmd_port, &["pg"], false).await;
    let b = start_node(format!("dsb_{tag}"), epmd_port, &[], true).await;
    let (a_name, b_name) = (a.name().to_owned(), b.name().to_owned());
    let (worker, _) = Actor::spawn(None, Idle, ()).await.expect("actor");
    ractor::pg::join("workers".to_owned(), vec![worker.get_cell()]);

    let (state, _) = events
        .until("both nodes of ours up, with the group", SETUP, |s| {
            [&a_name, &b_name].iter().all(|n| {
                node(s, n).is_some_and(|v| v["status"] == "up" && v["kind"] == "node_server")
            }) && s["groups"].as_array().is_some_and(|gs| {
                gs.iter().any(|g| {
                    g["name"] == "workers"
                        && g["members"]
                            .as_array()
                            .is_some_and(|ms| ms.len() == 1 && ms[0]["node"] == a_name.as_str())
                })
            })
        })
        .await;
    assert!(node(&state, dashboard.node_name()).is_none());
    assert_eq!(node(&state, &b_name).unwrap()["hidden"], true);
    assert_eq!(node(&state, &b_name).unwrap()["epmd_hidden"], true);

    // Connected, both ends report their send queue on the connection.
    node_server::client_connect(&a, &b_name)
        .await
        .expect("a connects to b");
    let edge_of = |s: &Value| -> Option<Value> {
        s["edges"]
            .as_array()?
            .iter()
            .find(|e| {
                let ends = [e["a"].as_str(), e["b"].as_str()];
                ends.contains(&Some(a_name.as_str())) && ends.contains(&Some(b_name.as_str()))
            })
            .cloned()
    };
    let (state, _) = events
        .until("the connection a-b with both send queues", SETUP, |s| {
            edge_of(s).is_some_and(|e| e["queues"].as_array().is_some_and(|q| q.len() == 2))
        })
        .await;
    let edge = edge_of(&state).unwrap();
    for q in edge["queues"].as_array().unwrap() {
        let (from, to) = (q["from"].as_str().unwrap(), q["to"].as_str().unwrap());
        assert!(
            (from, to) == (a_name.as_str(), b_name.as_str())
                || (from, to) == (b_name.as_str(), a_name.as_str()),
            "{q}"
        );
        for key in ["queue_bytes", "busy", "dropped"] {
            assert!(q[key].is_u64(), "{key} in {q}");
        }
        assert_eq!(q["dropped"], 0);
    }

    // The JSON snapshot says the same.
    let json = get(port, "GET /state.json HTTP/1.1\r\n\r\n").await;
    let body = json.split_once("\r\n\r\n").expect("body").1;
    let snapshot: Value = serde_json::from_str(body).expect("JSON");
    assert!(node(&snapshot, &a_name).is_some());

    b.shutdown().await;
    let (_, gone) = events
        .until("a node of ours shut down", LIVE, |s| {
            node(s, &b_name).is_none_or(|v| v["status"] == "gone")
        })
        .await;
    assert!(gone < LIVE);

    worker.stop(None);
    a.shutdown().await;
    dashboard.shutdown().await;
}
