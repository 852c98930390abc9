//! `/metrics` of a node of ours connected to a real Erlang node (`NodeConfig::metrics_listen`).
//!
//! The test runs an EPMD of its own ([`Epmd`], on a port the system picked), our node with
//! its metrics listener on `127.0.0.1:0`, and an `erl` node running
//! `tests/erlang/eval_peer.erl` (an [`EvalPeer`], killed when dropped); names carry the
//! test process's id. It scrapes `/metrics` with a plain TCP `GET`, parses the text as the
//! Prometheus text format (a small strict parser below: `# HELP` / `# TYPE` lines, samples
//! with escaped labels, every sample of a declared family) and checks:
//!
//! - every series is there under its exact name, the per-connection ones with `peer` = the
//!   Erlang node's name, and `dist_connections` is 1;
//! - after N messages each way, `dist_messages_sent_total` and `dist_messages_received_total`
//!   grew by at least N, and the byte counters grew;
//! - `node_actors` is `process_count` of `node_server:info/0`, whose `queues` lists the
//!   connection;
//! - a wrong cookie counts as `dist_handshake_failures_total{reason="bad_cookie"}`;
//! - another path is a 404, another method a 405, garbage and an oversized request a 400,
//!   and the node serves the next scrape;
//! - the listener closes when the node stops.
//!
//! Needs Erlang/OTP (`erl`, `erlc`): skipped without it on a developer machine, a failure in
//! CI (`CI=true`).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use node_server::etf::{Atom, Term};
use node_server::remote::{Raw, RemoteTarget};
use node_server::{client_connect, NodeConfig};
use testkit::{within, Epmd, EvalPeer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const COOKIE: &str = "metrics_interop_cookie";
const DEADLINE: Duration = Duration::from_secs(10);
/// Messages sent each way between the two scrapes.
const N: u64 = 50;

fn unique(tag: &str) -> String {
    format!("{tag}_{}", std::process::id())
}

// ---------------------------------------------------------------------------------------------
// HTTP and the text format
// ---------------------------------------------------------------------------------------------

/// A response: status code, headers (names lower-cased), body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// Sends `request` as it is and reads the response to the end (the server closes).
async fn exchange(addr: SocketAddr, request: &[u8]) -> Response {
    let mut stream = within("connect to /metrics", DEADLINE, TcpStream::connect(addr))
        .await
        .expect("the metrics listener accepts");
    stream.write_all(request).await.expect("request sent");
    let mut raw = Vec::new();
    within("the response", DEADLINE, stream.read_to_end(&mut raw))
        .await
        .expect("response read");
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 status line: {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect::<HashMap<_, _>>();
    // A HEAD response has the length of the body it leaves out.
    if let (Some(len), false) = (headers.get("content-length"), request.starts_with(b"HEAD ")) {
        assert_eq!(
            len.parse::<usize>().ok(),
            Some(body.len()),
            "Content-Length"
        );
    }
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// `GET /metrics`, which must answer 200 with the Prometheus text format; parsed.
async fn scrape(addr: SocketAddr) -> Exposition {
    let r = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let content_type = r.headers.get("content-type").map(String::as_str);
    assert_eq!(
        content_type,
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    Exposition::parse(&r.body).unwrap_or_else(|e| panic!("{e}\n{}", r.body))
}

/// One sample: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed exposition: the declared type of each family, and the samples.
#[derive(Debug, Default)]
struct Exposition {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colons && c == ':'))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':'))
}

impl Exposition {
    /// Parses the Prometheus text format (version 0.0.4), strictly: every sample belongs to a
    /// family declared with `# TYPE` before it (as this node always declares them), label
    /// values are quoted with `\\`, `\"` and `\n` escapes, a value is a float.
    fn parse(text: &str) -> Result<Exposition, String> {
        let mut out = Exposition::default();
        for (n, line) in text.lines().enumerate() {
            let at = |what: &str| format!("line {}: {what}: {line:?}", n + 1);
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.trim_start().splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        if !is_name(name, true) {
                            return Err(at("bad metric name"));
                        }
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                        {
                            return Err(at("unknown type"));
                        }
                        if out.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                            return Err(at("a second TYPE for the family"));
                        }
                    }
                    (Some("HELP"), Some(name), _) if !is_name(name, true) => {
                        return Err(at("bad metric name"))
                    }
                    _ => {}
                }
                continue;
            }
            let sample = Self::sample(line).map_err(|e| at(&e))?;
            if !out.types.contains_key(&sample.name) {
                return Err(at("a sample of an undeclared family"));
            }
            out.samples.push(sample);
        }
        Ok(out)
    }

    fn sample(line: &str) -> Result<Sample, String> {
        let name_end = line.find(['{', ' ']).ok_or("no value after the name")?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err("bad metric name".into());
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (label, after) = rest.split_once("=\"").ok_or("a label without =\"")?;
                if !is_name(label, false) {
                    return Err(format!("bad label name {label:?}"));
                }
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next().ok_or("an unterminated label value")? {
                        (i, '"') => break i,
                        (_, '\\') => match chars.next().ok_or("a dangling escape")?.1 {
                            '\\' => value.push('\\'),
                            '"' => value.push('"'),
                            'n' => value.push('\n'),
                            c => return Err(format!("unknown escape \\{c}")),
                        },
                        (_, c) => value.push(c),
                    }
                };
                if labels.insert(label.to_owned(), value).is_some() {
                    return Err(format!("label {label} twice"));
                }
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let mut fields = rest
            .strip_prefix(' ')
            .ok_or("no space before the value")?
            .split(' ');
        let value = match fields.next().ok_or("no value")? {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
        };
        if let Some(ts) = fields.next() {
            ts.parse::<i64>()
                .map_err(|_| format!("bad timestamp {ts:?}"))?;
        }
        if fields.next().is_some() {
            return Err("text after the timestamp".into());
        }
        Ok(Sample {
            name: name.to_owned(),
            labels,
            value,
        })
    }

    /// The value of `name` with exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// [`Exposition::get`], which must be there.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in {:#?}", self.samples))
    }

    fn of_peer(&self, name: &str, peer: &str) -> f64 {
        self.value(name, &[("peer", peer)])
    }
}

/// Every per-connection series and its type.
const PER_PEER: [(&str, &str); 7] = [
    ("dist_messages_sent_total", "counter"),
    ("dist_messages_received_total", "counter"),
    ("dist_bytes_sent_total", "counter"),
    ("dist_bytes_received_total", "counter"),
    ("dist_send_queue_bytes", "gauge"),
    ("dist_busy_total", "counter"),
    ("dist_dropped_total", "counter"),
];

const REASONS: [&str; 7] = [
    "bad_cookie",
    "not_allowed",
    "timeout",
    "protocol",
    "tls",
    "closed",
    "other",
];

// ---------------------------------------------------------------------------------------------

#[test]
fn the_parser_reads_the_text_format_and_refuses_what_is_not() {
    let text = "# HELP a_total A counter.\n# TYPE a_total counter\n\
                a_total{peer=\"x@h\",q=\"say \\\"hi\\\"\\n\\\\\"} 3\na_total 4 1700000000\n\
                # TYPE g gauge\ng{} -1.5e3\n";
    let e = Exposition::parse(text).expect("parses");
    assert_eq!(
        e.value("a_total", &[("peer", "x@h"), ("q", "say \"hi\"\n\\")]),
        3.0
    );
    assert_eq!(e.value("a_total", &[]), 4.0);
    assert_eq!(e.value("g", &[]), -1500.0);
    for bad in [
        "undeclared 1\n",
        "# TYPE a counter\na{peer=\"x} 1\n",
        "# TYPE a counter\na{peer=x} 1\n",
        "# TYPE a counter\na 1 2 3\n",
        "# TYPE a counter\na one\n",
        "# TYPE a counter\n# TYPE a gauge\n",
        "# TYPE 1a counter\n",
    ] {
        assert!(Exposition::parse(bad).is_err(), "{bad:?} parsed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_a_connection_to_erlang() {
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let beams = testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer"],
    );
    let epmd = Epmd::start();
    let loopback = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    // Hidden and without pg scopes: no global or pg traffic of its own.
    let config = |name: &str, cookie: &str| {
        NodeConfig::new(unique(name))
            .hidden(true)
            .pg_scopes(Vec::<String>::new())
            .cookie(cookie)
            .epmd("localhost", epmd.port())
            .listen(loopback(0))
    };
    let node = within(
        "our node starts",
        DEADLINE,
        config("rs_metrics", COOKIE)
            .metrics_listen(loopback(0))
            .start(),
    )
    .await
    .expect("our node starts");
    let addr = node.metrics_addr().expect("metrics are on");
    assert_ne!(addr.port(), 0, "the bound port, not the one asked for");

    // Before any connection: the families are declared, without samples per peer.
    let first = scrape(addr).await;
    for (name, kind) in PER_PEER {
        assert_eq!(
            first.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
    }
    assert_eq!(first.value("dist_connections", &[]), 0.0);
    for reason in REASONS {
        assert_eq!(
            first.value("dist_handshake_failures_total", &[("reason", reason)]),
            0.0
        );
    }
    assert!(first.samples.iter().all(|s| !s.labels.contains_key("peer")));

    let mut erl = EvalPeer::start_in_place(
        &erl,
        &unique("erl_metrics"),
        COOKIE,
        epmd.port(),
        &beams,
        Duration::from_secs(30),
    );
    let peer = erl.name().to_owned();
    within("connect", DEADLINE, client_connect(&node, &peer))
        .await
        .expect("connects to erl");
    let (sink, mut got) = testkit::forwarder::<Raw>().await;
    node.register("sink", &sink).expect("sink registers");
    let rs = format!("'{}'", node.name());
    erl.ok_in_place("register(erl_sink, self())");

    let before = scrape(addr).await;
    assert_eq!(before.value("dist_connections", &[]), 1.0);
    for (name, kind) in PER_PEER {
        assert_eq!(before.types.get(name).map(String::as_str), Some(kind));
        let peers: Vec<&str> = before
            .samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.labels.get("peer").map(String::as_str).unwrap_or("-"))
            .collect();
        assert_eq!(peers, [peer.as_str()], "{name}");
    }
    assert_eq!(
        before.types.get("dist_connections").map(String::as_str),
        Some("gauge")
    );
    assert_eq!(
        before
            .types
            .get("dist_handshake_failures_total")
            .map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        before.types.get("node_actors").map(String::as_str),
        Some("gauge")
    );

    // node_actors is what node_server:info/0 reports as process_count (nothing starts or
    // stops in between).
    let info_count: f64 = erl
        .ok_in_place(&format!(
            "maps:get(process_count, rpc:call({rs}, node_server, info, []))"
        ))
        .parse()
        .expect("a count");
    let actors = scrape(addr).await.value("node_actors", &[]);
    assert!(actors >= 1.0);
    assert_eq!(actors, info_count);

    // N messages each way.
    erl.ok_in_place(&format!(
        "lists:foreach(fun(I) -> {{sink, {rs}}} ! {{n, I}} end, lists:seq(1, {N})), ok"
    ));
    for i in 1..=N {
        let msg = within("a message from Erlang", DEADLINE, got.recv())
            .await
            .expect("sink runs")
            .0;
        assert_eq!(msg.to_string(), format!("{{n,{i}}}"));
    }
    let to_erl = RemoteTarget::Name {
        name: Atom::new("erl_sink"),
        node: Atom::new(&peer),
    };
    for i in 1..=N {
        node.send(
            &to_erl,
            Term::tuple(vec![Term::atom("r"), Term::Int(i as i64)]),
        );
    }
    let received = erl.ok_in_place(&format!(
        "(fun W(T) when T > 2000 -> timeout; W(T) -> \
           case process_info(self(), message_queue_len) of \
             {{_, Q}} when Q >= {N} -> \
               length((fun F(A) -> receive M -> F([M | A]) after 0 -> A end end)([])); \
             _ -> timer:sleep(5), W(T + 1) end end)(0)"
    ));
    assert_eq!(received, N.to_string());

    let after = scrape(addr).await;
    let grew = |name: &str| after.of_peer(name, &peer) - before.of_peer(name, &peer);
    assert!(
        grew("dist_messages_sent_total") >= N as f64,
        "sent grew by {}",
        grew("dist_messages_sent_total")
    );
    assert!(
        grew("dist_messages_received_total") >= N as f64,
        "received grew by {}",
        grew("dist_messages_received_total")
    );
    // Each message is a frame of more than 8 bytes.
    assert!(grew("dist_bytes_sent_total") >= (8 * N) as f64);
    assert!(grew("dist_bytes_received_total") >= (8 * N) as f64);
    assert!(after.of_peer("dist_send_queue_bytes", &peer) >= 0.0);
    assert_eq!(after.of_peer("dist_busy_total", &peer), 0.0);
    assert_eq!(after.of_peer("dist_dropped_total", &peer), 0.0);
    assert_eq!(after.value("dist_connections", &[]), 1.0);

    // node_server:info/0 has the connection's queue too.
    let queue = erl.ok_in_place(&format!(
        "[{{atom_to_list(N), B, D}} || #{{node := N, busy := B, dropped := D}} \
            <- maps:get(queues, rpc:call({rs}, node_server, info, []))]"
    ));
    assert_eq!(queue, format!("[{{\"{peer}\",0,0}}]"));

    // A node with another cookie is refused: a bad_cookie failure on our node.
    let intruder = within(
        "the intruder starts",
        DEADLINE,
        config("rs_intruder", "not_the_cookie").start(),
    )
    .await
    .expect("the intruder starts");
    let refused = within(
        "the refused connect",
        DEADLINE,
        client_connect(&intruder, node.name()),
    )
    .await;
    assert!(refused.is_err(), "a wrong cookie connected");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let m = scrape(addr).await;
        if m.value("dist_handshake_failures_total", &[("reason", "bad_cookie")]) >= 1.0 {
            assert_eq!(m.value("dist_connections", &[]), 1.0);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no bad_cookie failure counted: {:#?}",
            m.samples
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    intruder.shutdown().await;

    // Other requests, and the node still serves the next scrape after each.
    let r = exchange(addr, b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
    assert_eq!(r.status, 404);
    let r = exchange(addr, b"GET /metricsx HTTP/1.1\r\n\r\n").await;
    assert_eq!(r.status, 404);
    let r = exchange(addr, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(r.status, 405);
    assert_eq!(
        r.headers.get("allow").map(String::as_str),
        Some("GET, HEAD")
    );
    let r = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    let length = r
        .headers
        .get("content-length")
        .and_then(|l| l.parse::<usize>().ok());
    assert!(length.is_some_and(|l| l > 0), "{:?}", r.headers);
    let r = exchange(addr, b"\x16\x03\x01garbage that is no request\r\n\r\n").await;
    assert_eq!(r.status, 400);
    let r = exchange(addr, b"hello\r\n\r\n").await;
    assert_eq!(r.status, 400);
    let mut huge = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    huge.resize(20 << 10, b'a');
    let r = exchange(addr, &huge).await;
    assert_eq!(r.status, 400);
    let still = scrape(addr).await;
    assert_eq!(still.value("dist_connections", &[]), 1.0);
    assert_eq!(
        node.connected().len(),
        1,
        "the connection to erl is untouched"
    );

    // The listener goes with the node.
    sink.stop(None);
    node.shutdown().await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the metrics listener still accepts after the node stopped"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(erl);
}
