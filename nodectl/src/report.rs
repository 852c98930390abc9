//! What a command prints: text for people, JSON for scripts.

use serde::Serialize;

use crate::client::{
    Connection, CookieWritten, Info, Kind, Ping, Server, SpawnResult, StopOutcome, Stopped,
};
use crate::error::CtlError;

/// The result of a command.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Report {
    /// `cookie`.
    Cookie(CookieWritten),
    /// `list-servers` and `lookup --role`.
    Servers {
        /// The host asked.
        host: String,
        /// Its EPMD port.
        epmd_port: u16,
        /// The nodes.
        nodes: Vec<Server>,
    },
    /// `lookup NAME`.
    Server(Server),
    /// `ping`.
    Ping(Ping),
    /// `list-actors`.
    Actors {
        /// The node asked.
        node: String,
        /// Its registered names.
        actors: Vec<String>,
    },
    /// `list-connections`.
    Connections {
        /// The node asked.
        node: String,
        /// Its connections.
        connections: Vec<Connection>,
    },
    /// `info`.
    Info(Info),
    /// `rpc`.
    Rpc {
        /// The node called.
        node: String,
        /// The result in Erlang syntax.
        result: String,
    },
    /// `eval`.
    Eval {
        /// The node that evaluated.
        node: String,
        /// The value as the Erlang shell prints it (after what `b()` printed, if called).
        result: String,
    },
    /// `repl`, once left.
    Repl {
        /// The node it ran on.
        node: String,
        /// How many expressions it evaluated.
        evaluated: u64,
    },
    /// `list-kinds`.
    Kinds {
        /// The node asked.
        node: String,
        /// Its spawnable kinds.
        kinds: Vec<Kind>,
    },
    /// `spawn`.
    Spawned(SpawnResult),
    /// `load`.
    Loaded {
        /// The node.
        node: String,
        /// The module's hash.
        hash: String,
    },
    /// `unload`.
    Unloaded {
        /// The node.
        node: String,
        /// The module's hash.
        hash: String,
    },
    /// `list-sources`.
    Sources {
        /// The node.
        node: String,
        /// Its modules.
        sources: Vec<crate::sources::Source>,
    },
    /// `shutdown NODE [ACTOR]`.
    Stopped(Stopped),
    /// `shutdown --all`.
    StoppedAll {
        /// The host whose EPMD listed the nodes.
        host: String,
        /// Each node's outcome.
        nodes: Vec<StopOutcome>,
    },
    /// `dashboard`, once stopped.
    Dashboard {
        /// Where it was served.
        url: String,
    },
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

fn human_duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms} ms"),
        1..=59 => format!("{}.{:03} s", s, ms % 1000),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {}m {}s", s / 3600, s % 3600 / 60, s % 60),
        _ => format!("{}d {}h {}m", s / 86400, s % 86400 / 3600, s % 3600 / 60),
    }
}

fn server_line(s: &Server) -> String {
    format!(
        "{:<20} {:<30} {:>6}  {:<7} {}",
        s.name,
        s.node,
        s.port,
        if s.hidden { "hidden" } else { "normal" },
        if s.roles.is_empty() {
            "-".to_owned()
        } else {
            s.roles.join(",")
        }
    )
}

fn counter_pair(a: Option<u64>, b: Option<u64>, bytes: bool) -> String {
    match (a, b) {
        (Some(a), Some(b)) if bytes => format!("in {}, out {}", human_bytes(a), human_bytes(b)),
        (Some(a), Some(b)) => format!("in {a}, out {b}"),
        _ => "not counted".into(),
    }
}

impl Report {
    /// The text a person reads (without a final newline).
    pub fn human(&self) -> String {
        match self {
            Report::Cookie(c) => format!(
                "{} the cookie in {} (mode 0400)",
                if c.replaced { "replaced" } else { "wrote" },
                c.path.display()
            ),
            Report::Servers {
                host,
                epmd_port,
                nodes,
            } => {
                if nodes.is_empty() {
                    return format!("no nodes registered with epmd on {host}:{epmd_port}");
                }
                let mut lines = vec![format!(
                    "{:<20} {:<30} {:>6}  {:<7} ROLES",
                    "NAME", "NODE", "PORT", "TYPE"
                )];
                lines.extend(nodes.iter().map(server_line));
                lines.join("\n")
            }
            Report::Server(s) => server_line(s),
            Report::Ping(p) => {
                let rt = &p.round_trips_ms;
                let mut line = if rt.len() == 1 {
                    format!("OK {} round trip {:.3} ms", p.node, rt[0])
                } else {
                    let min = rt.iter().copied().fold(f64::INFINITY, f64::min);
                    let max = rt.iter().copied().fold(0.0, f64::max);
                    let avg = rt.iter().sum::<f64>() / rt.len() as f64;
                    format!(
                        "OK {} round trip min/avg/max {min:.3}/{avg:.3}/{max:.3} ms over {} pings",
                        p.node,
                        rt.len()
                    )
                };
                line.push_str(&format!(" (connect {:.3} ms)", p.connect_ms));
                if let Some(a) = &p.actor {
                    line.push_str(&format!("; {} is {} and alive", a.name, a.pid));
                }
                line
            }
            Report::Actors { actors, .. } => actors.join("\n"),
            Report::Connections { node, connections } => {
                if connections.is_empty() {
                    return format!("{node} has no other connections");
                }
                connections
                    .iter()
                    .map(|c| {
                        format!(
                            "{:<40} {}",
                            c.node,
                            if c.hidden { "hidden" } else { "visible" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Report::Info(i) => {
                let runtime = if i.runtime == "node_server" {
                    format!(
                        "node_server {} (Rust; speaks the Erlang/OTP {} distribution protocol)",
                        i.version, i.otp_release
                    )
                } else {
                    format!("Erlang/OTP {} (ERTS {})", i.otp_release, i.version)
                };
                let processes = if i.runtime == "node_server" {
                    format!("{} (actors and built-in services)", i.process_count)
                } else {
                    i.process_count.to_string()
                };
                [
                    ("node", i.node.clone()),
                    ("runtime", runtime),
                    ("uptime", human_duration(i.uptime_ms)),
                    ("processes", processes),
                    ("memory", human_bytes(i.memory_bytes)),
                    ("connections", i.connections.to_string()),
                    (
                        "messages",
                        counter_pair(i.traffic.messages_in, i.traffic.messages_out, false),
                    ),
                    (
                        "bytes",
                        counter_pair(i.traffic.bytes_in, i.traffic.bytes_out, true),
                    ),
                    ("counters", i.traffic.counters.clone()),
                ]
                .iter()
                .map(|(k, v)| format!("{k:<12} {v}"))
                .collect::<Vec<_>>()
                .join("\n")
            }
            Report::Rpc { result, .. } | Report::Eval { result, .. } => result.clone(),
            Report::Kinds { node, kinds } => {
                if kinds.is_empty() {
                    return format!("{node} has no spawnable kinds");
                }
                kinds
                    .iter()
                    .map(|k| {
                        let mut line = k.full_name();
                        if !k.requires.is_empty() {
                            let requires: Vec<String> =
                                k.requires.iter().map(|(k, v)| format!("{k}={v}")).collect();
                            line.push_str(&format!(" requires {}", requires.join(",")));
                        }
                        line
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Report::Spawned(s) => match &s.registered {
                Some(name) => format!("{} on {} registered as {name}", s.pid, s.node),
                None => format!("{} on {}", s.pid, s.node),
            },
            Report::Loaded { hash, .. } => hash.clone(),
            Report::Unloaded { node, hash } => format!("unloaded {hash} from {node}"),
            Report::Sources { node, sources } => {
                if sources.is_empty() {
                    return format!("{node} has no modules loaded");
                }
                sources
                    .iter()
                    .map(|s| {
                        let kinds = if s.kinds.is_empty() {
                            "no kinds".to_owned()
                        } else {
                            format!("kinds {}", s.kinds.join(","))
                        };
                        format!("{} {} bytes, {kinds}, {} actors", s.hash, s.size, s.actors)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            Report::Dashboard { url } => format!("dashboard at {url} stopped"),
            // The repl printed all it had to say.
            Report::Repl { .. } => String::new(),
            Report::Stopped(s) => match &s.actor {
                Some(actor) => format!(
                    "stopped {actor} on {} (exit reason {}, {:.1} ms)",
                    s.node, s.reason, s.took_ms
                ),
                None => format!("stopped {} (init:stop, {:.1} ms)", s.node, s.took_ms),
            },
            Report::StoppedAll { host, nodes } => {
                if nodes.is_empty() {
                    return format!("no nodes registered with epmd on {host}");
                }
                nodes
                    .iter()
                    .map(|n| match &n.error {
                        None => format!("stopped {}", n.node),
                        Some(e) => format!("FAILED  {}: {e}", n.node),
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
    }

    /// One line of JSON: the report's fields and `"ok": true`.
    pub fn json(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(map) = &mut value {
            map.insert(
                "ok".into(),
                serde_json::Value::Bool(self.failure().is_none()),
            );
        }
        value.to_string()
    }

    /// The failure a report holds although the command ran: some nodes of
    /// `shutdown --all` did not stop.
    pub fn failure(&self) -> Option<CtlError> {
        match self {
            Report::StoppedAll { nodes, .. } => {
                let failed = nodes.iter().filter(|n| !n.ok).count();
                (failed > 0).then_some(CtlError::Partial {
                    failed,
                    total: nodes.len(),
                })
            }
            _ => None,
        }
    }
}

/// One line of JSON for a failure: `{"ok": false, "error": KIND, "message": TEXT}`.
pub fn error_json(e: &CtlError) -> String {
    serde_json::json!({ "ok": false, "error": e.kind(), "message": e.to_string() }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(11_771_904), "11.2 MiB");
        assert_eq!(human_duration(115), "115 ms");
        assert_eq!(human_duration(61_000), "1m 1s");
        assert_eq!(human_duration(90_061_000), "1d 1h 1m");
    }

    #[test]
    fn json_has_ok() {
        let r = Report::Actors {
            node: "a@b".into(),
            actors: vec!["rex".into()],
        };
        assert_eq!(r.json(), r#"{"actors":["rex"],"node":"a@b","ok":true}"#);
        let e = CtlError::NotFound("x".into());
        assert_eq!(
            error_json(&e),
            r#"{"error":"not_found","message":"not found: x","ok":false}"#
        );
    }

    #[test]
    fn eval_reads_as_the_shell() {
        let r = Report::Eval {
            node: "a@b".into(),
            result: "{ok,\"x\"}".into(),
        };
        assert_eq!(r.human(), "{ok,\"x\"}");
        assert_eq!(
            r.json(),
            r#"{"node":"a@b","ok":true,"result":"{ok,\"x\"}"}"#
        );
        let e = CtlError::Eval("** exception error: bad argument".into());
        assert_eq!(e.to_string(), "** exception error: bad argument");
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            error_json(&e),
            r#"{"error":"eval","message":"** exception error: bad argument","ok":false}"#
        );
    }

    #[test]
    fn kinds_and_spawns_read_well() {
        let kind = |name: &str, version, requires: &[(&str, &str)]| Kind {
            name: name.into(),
            version,
            requires: requires
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let r = Report::Kinds {
            node: "a@b".into(),
            kinds: vec![
                kind("counter", 1, &[]),
                kind("trainer", 2, &[("os", "linux"), ("gpu", "yes")]),
            ],
        };
        assert_eq!(r.human(), "counter/1\ntrainer/2 requires gpu=yes,os=linux");
        assert_eq!(
            r.json(),
            r#"{"kinds":[{"name":"counter","requires":{},"version":1},{"name":"trainer","requires":{"gpu":"yes","os":"linux"},"version":2}],"node":"a@b","ok":true}"#
        );
        let none = Report::Kinds {
            node: "a@b".into(),
            kinds: vec![],
        };
        assert_eq!(none.human(), "a@b has no spawnable kinds");
        let spawned = SpawnResult {
            pid: "<a@b.90.0>".into(),
            node: "a@b".into(),
            kind: "counter".into(),
            placement: "random".into(),
            decided_by: "nodectl_1@b".into(),
            registered: None,
        };
        assert_eq!(
            Report::Spawned(spawned.clone()).human(),
            "<a@b.90.0> on a@b"
        );
        let named = SpawnResult {
            registered: Some("c1".into()),
            ..spawned
        };
        assert_eq!(
            Report::Spawned(named).human(),
            "<a@b.90.0> on a@b registered as c1"
        );
    }

    #[test]
    fn info_json_is_one_flat_object() {
        let r = Report::Info(Info {
            node: "a@b".into(),
            runtime: "node_server".into(),
            otp_release: "25".into(),
            version: "0.1.0".into(),
            uptime_ms: 1,
            process_count: 2,
            memory_bytes: 3,
            connections: 4,
            traffic: crate::client::InfoTraffic {
                messages_in: Some(5),
                messages_out: None,
                bytes_in: Some(7),
                bytes_out: Some(8),
                counters: "c".into(),
            },
        });
        assert_eq!(
            r.json(),
            r#"{"bytes_in":7,"bytes_out":8,"connections":4,"counters":"c","memory_bytes":3,"messages_in":5,"messages_out":null,"node":"a@b","ok":true,"otp_release":"25","process_count":2,"runtime":"node_server","uptime_ms":1,"version":"0.1.0"}"#
        );
        let text = r.human();
        assert!(text.contains("in 7 B, out 8 B"), "{text}");
        assert!(text.contains("not counted"), "{text}");
    }
}
