//! `nodectl` end to end: the built binary against nodes of ours and real Erlang/OTP nodes.
//!
//! Each test runs its own EPMD (this workspace's, in-process, on a port the system picked),
//! nodes of ours in-process (on the test's tokio runtime), `erl -sname` nodes running
//! `tests/erlang/eval_peer.erl` (one Erlang expression per stdin line), and the `nodectl`
//! binary as a child process with `ERL_EPMD_PORT` and a private `HOME`, so no test touches
//! the user's `~/.erlang.cookie` or the machine's EPMD. Node names carry the test's pid and
//! a counter. Every child is killed by a guard, every wait is bounded, and no test sleeps to
//! synchronise: each waits for the event it needs (a line from `erl`, a node's stop, a
//! message in an actor's mailbox).
//!
//! `repl` runs through a pipe, and through a pseudo-terminal driven by `rexpect`.
//!
//! Needs Erlang/OTP (`erl`, `erlc`) for most tests and `openssl` for the mutual TLS one:
//! without `erl` those tests are skipped on a developer machine and fail in CI (`CI=true`),
//! see [`testkit::require_erl`].

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use node_server::remote::Raw;
use node_server::{Node, NodeConfig, TlsConfig};
use ractor::ActorRef;
use testkit::EvalPeer;
use tokio::sync::mpsc;

/// The cookie of every test cluster.
const COOKIE: &str = "nodectl_test_cookie";
/// How long any awaited event may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long `nodectl` may run.
const CTL_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// A unique node name for this test process.
fn unique(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{label}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn short_host() -> String {
    let host = node_server::config::hostname();
    host.split('.').next().unwrap_or("localhost").to_owned()
}

/// What `nodectl` printed and how it exited.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "nodectl failed: stdout {:?} stderr {:?}",
            self.stdout, self.stderr
        );
        self.stdout.trim_end().to_owned()
    }

    /// Asserts a failure with `code` whose one stderr line contains `text`.
    fn fails(self, code: i32, text: &str) -> String {
        assert_eq!(
            self.code, code,
            "expected exit {code}: stdout {:?} stderr {:?}",
            self.stdout, self.stderr
        );
        let err = self.stderr.trim_end();
        assert!(
            err.contains(text),
            "stderr {err:?} does not say {text:?} (stdout {:?})",
            self.stdout
        );
        if code == 1 {
            assert_eq!(err.lines().count(), 1, "one clear line: {err:?}");
        }
        err.to_owned()
    }

    fn json(self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {:?} (stderr {:?})",
                self.stdout, self.stderr
            )
        })
    }
}

/// One test's world: a runtime for our nodes, an EPMD, a private HOME.
struct Cluster {
    rt: tokio::runtime::Runtime,
    epmd: Option<epmd::ServerHandle>,
    epmd_port: u16,
    home: PathBuf,
}

impl Cluster {
    fn new() -> Cluster {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        // Port 0: the daemon keeps the listener the system gave it, so no other test can
        // take its port.
        let epmd = rt
            .block_on(
                epmd::ServerConfig::new()
                    .port(0)
                    .addresses(vec![Ipv4Addr::LOCALHOST.into()])
                    .start(),
            )
            .expect("epmd starts");
        Cluster {
            rt,
            epmd_port: epmd.port(),
            epmd: Some(epmd),
            home: testkit::unique_temp_dir("nodectl_home"),
        }
    }

    fn config(&self, name: &str) -> NodeConfig {
        NodeConfig::new(name)
            .cookie(COOKIE)
            .epmd("localhost", self.epmd_port)
            .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Starts a node of ours.
    fn start(&self, config: NodeConfig) -> Node {
        self.rt
            .block_on(async { tokio::time::timeout(DEADLINE, config.start()).await })
            .expect("our node starts in time")
            .expect("our node starts")
    }

    /// A node of ours with a registered collector actor named `inbox`.
    fn node_with_inbox(&self, config: NodeConfig) -> (Node, Inbox) {
        let node = self.start(config);
        let inbox = self.inbox(&node, "inbox");
        (node, inbox)
    }

    /// Spawns a collector actor registered as `name` on `node`.
    fn inbox(&self, node: &Node, name: &str) -> Inbox {
        let (actor, rx) = self.rt.block_on(testkit::forwarder());
        node.register(name, &actor).expect("name is free");
        Inbox { actor, _rx: rx }
    }

    /// An `erl -sname` node in this cluster.
    fn erl(&self, erl: &Path, label: &str) -> EvalPeer {
        EvalPeer::start(
            erl,
            &unique(label),
            COOKIE,
            self.epmd_port,
            &[beam_dir()],
            DEADLINE,
        )
        .unwrap_or_else(|e| panic!("cannot start erl: {e}"))
    }

    /// Runs `nodectl ARGS` in this cluster (its EPMD port, the private HOME, no cookie in
    /// the environment).
    fn nodectl(&self, args: &[&str]) -> Out {
        self.nodectl_env(args, &[])
    }

    fn nodectl_env(&self, args: &[&str], env: &[(&str, &str)]) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodectl"));
        cmd.args(args)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("HOME", &self.home)
            .env_remove("ERLANG_COOKIE")
            .env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let Output {
            status,
            stdout,
            stderr,
        } = testkit::output_within(&mut cmd, CTL_LIMIT)
            .unwrap_or_else(|e| panic!("nodectl {args:?}: {e}"));
        Out {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    /// `nodectl --cookie COOKIE ARGS`.
    fn ctl(&self, args: &[&str]) -> Out {
        let mut all = vec!["--cookie", COOKIE];
        all.extend_from_slice(args);
        self.nodectl(&all)
    }

    /// Waits (bounded) until `node` has stopped; returns its exit status.
    fn wait_stopped(&self, node: &Node) -> i32 {
        self.rt
            .block_on(async { tokio::time::timeout(DEADLINE, node.wait_stopped()).await })
            .expect("the node stops in time")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(epmd) = self.epmd.take() {
            self.rt.block_on(epmd.stop());
        }
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// `eval_peer`, compiled once per test process.
fn beam_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        testkit::compile_erlang(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/erlang/eval_peer.erl"),
        )
    })
    .clone()
}

/// A collector and what it received.
struct Inbox {
    actor: ActorRef<Raw>,
    _rx: mpsc::UnboundedReceiver<Raw>,
}

impl Inbox {
    /// Waits (bounded) until the actor has stopped.
    fn wait_stopped(&self, rt: &tokio::runtime::Runtime) {
        rt.block_on(self.actor.get_cell().wait(Some(DEADLINE)))
            .expect("the actor stops in time");
    }
}

/// The node name in an Erlang expression.
fn atom(name: &str) -> String {
    format!("'{name}'")
}

// ---------------------------------------------------------------------------------------------
// cookie
// ---------------------------------------------------------------------------------------------

/// `cookie` writes 20 capital letters to `~/.erlang.cookie` with mode 0400, refuses to
/// overwrite without `--force`, and replaces it with `--force`; the cookie then serves
/// other commands (read from the file, or `ERLANG_COOKIE`).
#[test]
fn cookie_is_written_privately_and_only_replaced_with_force() {
    use std::os::unix::fs::PermissionsExt;
    let cluster = Cluster::new();
    let path = cluster.home.join(".erlang.cookie");

    let out = cluster.nodectl(&["cookie"]).ok();
    assert!(out.contains("wrote the cookie"), "{out}");
    let first = std::fs::read_to_string(&path).unwrap();
    assert_eq!(first.len(), 20);
    assert!(first.bytes().all(|b| b.is_ascii_uppercase()), "{first}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o400);

    cluster
        .nodectl(&["cookie"])
        .fails(1, "exists; pass --force to replace it");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first);

    let json = cluster.nodectl(&["--json", "cookie", "--force"]).json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["replaced"], true);
    let second = std::fs::read_to_string(&path).unwrap();
    assert_ne!(second, first);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o400);

    // The file's cookie is used when no --cookie is given; a node with another cookie refuses.
    let node = cluster.start(cluster.config(&unique("ck")).cookie(second.as_bytes()));
    let name = node.name().to_owned();
    let out = cluster.nodectl(&["ping", &name]).ok();
    assert!(out.starts_with(&format!("OK {name}")), "{out}");
    // ERLANG_COOKIE wins over the file.
    cluster
        .nodectl_env(&["ping", &name], &[("ERLANG_COOKIE", "WRONG")])
        .fails(1, "refused cookie");
    // No cookie anywhere: a clear error, not a new file.
    std::fs::remove_file(&path).unwrap();
    cluster.nodectl(&["ping", &name]).fails(1, "cookie:");
    assert!(!path.exists());
}

// ---------------------------------------------------------------------------------------------
// EPMD: list-servers, lookup
// ---------------------------------------------------------------------------------------------

/// `list-servers` shows our node (hidden), an Erlang node (normal) and a node with roles;
/// `lookup` finds each by name and by role, and says when nothing matches.
#[test]
fn list_servers_and_lookup_show_ports_types_and_roles() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let cluster = Cluster::new();
    let ours = cluster.start(
        cluster
            .config(&unique("ls_rs"))
            .hidden(true)
            .roles(["batch", "cache"]),
    );
    let peer = cluster.erl(&erl, "ls_erl");
    // A node with roles, registered directly (roles live in EPMD's EXTRA field).
    let web = unique("ls_web");
    let mut info = epmd::NodeInfo::new(&web, 45_999);
    info.extra = epmd::roles::encode_roles(&["web", "cache"]).unwrap();
    let _registration = cluster
        .rt
        .block_on(epmd::Client::new("127.0.0.1", cluster.epmd_port).register(info))
        .expect("registers");

    let ours_short = ours.name().split('@').next().unwrap().to_owned();
    let erl_short = peer.name().split('@').next().unwrap().to_owned();
    let text = cluster.nodectl(&["list-servers"]).ok();
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} not listed:\n{text}"))
            .to_owned()
    };
    let ours_line = line(&ours_short);
    assert!(ours_line.contains(&ours.port().to_string()) && ours_line.contains("hidden"));
    assert!(ours_line.contains(ours.name()), "{ours_line}");
    assert!(line(&erl_short).contains("normal"));
    assert!(line(&web).contains("web,cache") && line(&web).contains("45999"));

    let json = cluster.nodectl(&["--json", "list-servers"]).json();
    let nodes = json["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{json}");
    let ours_json = nodes.iter().find(|n| n["name"] == ours_short).unwrap();
    assert_eq!(ours_json["port"], ours.port());
    assert_eq!(ours_json["hidden"], true);
    assert_eq!(ours_json["node"], ours.name());
    let erl_json = nodes.iter().find(|n| n["name"] == erl_short).unwrap();
    assert_eq!(erl_json["hidden"], false);
    assert_eq!(erl_json["node"], peer.name());

    assert!(cluster
        .nodectl(&["lookup", &ours_short])
        .ok()
        .contains(&ours.port().to_string()));
    assert!(cluster
        .nodectl(&["lookup", peer.name()])
        .ok()
        .contains("normal"));
    cluster
        .nodectl(&["lookup", "nosuch_node"])
        .fails(1, "unknown: nosuch_node is not registered");
    let by_role = cluster
        .nodectl(&["--json", "lookup", "--role", "cache"])
        .json();
    let mut found: Vec<&str> = by_role["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    found.sort();
    let mut expected = vec![web.as_str(), ours_short.as_str()];
    expected.sort();
    assert_eq!(found, expected, "our node announces its roles too");
    assert!(line(&ours_short).contains("batch,cache"));
    cluster
        .nodectl(&["lookup", "--role", "nosuch_role"])
        .fails(1, "not found");
    // No EPMD at all: a port held bound without listening, so connecting is refused.
    let closed = testkit::closed_port();
    cluster
        .nodectl(&["--epmd-port", &closed.port().to_string(), "list-servers"])
        .fails(1, "epmd on localhost");
}

// ---------------------------------------------------------------------------------------------
// ping, list-actors, list-connections, info, rpc
// ---------------------------------------------------------------------------------------------

/// Every read-only command against a node of ours and an Erlang node.
#[test]
fn ping_list_info_and_rpc_work_on_ours_and_erlang() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let cluster = Cluster::new();
    let (ours, _inbox) = cluster.node_with_inbox(cluster.config(&unique("rd_rs")));
    let mut peer = cluster.erl(&erl, "rd_erl");
    let (rs, en) = (ours.name().to_owned(), peer.name().to_owned());
    // The Erlang node connects to ours, so each has a connection to list.
    assert_eq!(peer.ok(&format!("net_adm:ping({})", atom(&rs))), "pong");

    // ping
    for node in [&rs, &en] {
        let out = cluster.ctl(&["ping", node]).ok();
        assert!(out.starts_with(&format!("OK {node} round trip ")), "{out}");
        let json = cluster.ctl(&["--json", "ping", node, "-c", "3"]).json();
        assert_eq!(json["ok"], true);
        assert_eq!(json["round_trips_ms"].as_array().unwrap().len(), 3);
        assert!(json["round_trips_ms"][0].as_f64().unwrap() > 0.0);
    }
    let out = cluster.ctl(&["ping", &rs, "inbox"]).ok();
    assert!(
        out.contains(&format!("inbox is <{rs}.")) && out.contains("and alive"),
        "{out}"
    );
    let out = cluster.ctl(&["ping", &en, "code_server"]).ok();
    assert!(
        out.contains("code_server is <") && out.contains("and alive"),
        "{out}"
    );
    for node in [&rs, &en] {
        cluster
            .ctl(&["ping", node, "nosuch_actor"])
            .fails(1, "no actor: nothing is registered as nosuch_actor");
        cluster
            .nodectl(&["--cookie", "WRONG", "ping", node])
            .fails(1, &format!("refused cookie: {node} rejected the cookie"));
    }
    let missing = format!("{}@{}", unique("absent"), short_host());
    cluster.ctl(&["ping", &missing]).fails(
        1,
        &format!("unknown: {missing} is not registered with epmd"),
    );
    let json = cluster.ctl(&["--json", "ping", &missing]);
    assert_eq!(json.code, 1);
    let json = json.json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["error"], "unknown");
    // A bare name gets this host's short name.
    let bare = rs.split('@').next().unwrap();
    assert!(cluster
        .ctl(&["ping", bare])
        .ok()
        .starts_with(&format!("OK {rs}")));

    // list-actors
    let actors = cluster.ctl(&["list-actors", &rs]).ok();
    assert_eq!(
        actors.lines().collect::<Vec<_>>(),
        vec!["global_name_server", "inbox", "net_kernel", "pg", "rex"]
    );
    let actors = cluster.ctl(&["--json", "list-actors", &en]).json();
    let names: Vec<&str> = actors["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for expected in [
        "code_server",
        "net_kernel",
        "rex",
        "init",
        "global_name_server",
    ] {
        assert!(names.contains(&expected), "{expected} missing: {names:?}");
    }

    // list-connections: each sees the other, visible (nodes are visible by default), and
    // not nodectl's own hidden connection.
    let out = cluster.ctl(&["list-connections", &rs]).ok();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with(&en) && out.ends_with("visible"), "{out}");
    let json = cluster.ctl(&["--json", "list-connections", &en]).json();
    assert_eq!(
        json["connections"],
        serde_json::json!([{"node": rs, "hidden": false}])
    );
    // A hidden node of ours connected to Erlang shows as hidden on both sides.
    let hidden = cluster.start(cluster.config(&unique("rd_hidden")).hidden(true));
    assert_eq!(
        peer.ok(&format!("net_adm:ping({})", atom(hidden.name()))),
        "pong"
    );
    let out = cluster.ctl(&["list-connections", hidden.name()]).ok();
    assert_eq!(out, format!("{en:<40} hidden"));
    let json = cluster.ctl(&["--json", "list-connections", &en]).json();
    assert!(
        json["connections"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!({"node": hidden.name(), "hidden": true})),
        "{json}"
    );

    // info
    let info = cluster.ctl(&["--json", "info", &rs]).json();
    assert_eq!(info["runtime"], "node_server");
    assert_eq!(info["otp_release"], "25");
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(info["connections"], 1);
    assert!(info["process_count"].as_u64().unwrap() >= 6, "{info}");
    assert!(info["memory_bytes"].as_u64().unwrap() > 0);
    assert!(info["messages_in"].as_u64().unwrap() > 0);
    assert!(info["bytes_out"].as_u64().unwrap() > 0);
    let info = cluster.ctl(&["--json", "info", &en]).json();
    assert_eq!(info["runtime"], "erlang");
    assert_eq!(
        info["otp_release"],
        peer.ok("erlang:system_info(otp_release)").trim_matches('"')
    );
    assert_eq!(info["connections"], 2);
    assert!(info["process_count"].as_u64().unwrap() > 20, "{info}");
    assert!(info["uptime_ms"].as_u64().unwrap() > 0);
    assert!(info["bytes_in"].as_u64().unwrap() > 0, "{info}");
    let text = cluster.ctl(&["info", &rs]).ok();
    assert!(
        text.contains("node_server") && text.contains("messages"),
        "{text}"
    );
    let text = cluster.ctl(&["info", &en]).ok();
    let release = info["otp_release"].as_str().unwrap().to_owned();
    assert!(
        text.contains(&format!("Erlang/OTP {release} (ERTS ")),
        "{text}"
    );

    // rpc: arguments and results in Erlang syntax, both ways.
    assert_eq!(cluster.ctl(&["rpc", &rs, "erlang", "node"]).ok(), rs);
    assert_eq!(
        cluster.ctl(&["rpc", &en, "lists", "seq", "1", "5"]).ok(),
        "[1,2,3,4,5]"
    );
    assert_eq!(
        cluster
            .ctl(&["rpc", &en, "erlang", "system_info", "otp_release"])
            .ok(),
        peer.ok("erlang:system_info(otp_release)")
    );
    assert_eq!(
        cluster
            .ctl(&["rpc", &rs, "erlang", "system_info", "otp_release"])
            .ok(),
        format!("\"{}\"", node_server::builtins::OTP_RELEASE)
    );
    assert_eq!(
        cluster
            .ctl(&["rpc", &en, "lists", "reverse", "[{a,<<\"b\">>},-7]"])
            .ok(),
        "[-7,{a,<<\"b\">>}]"
    );
    let json = cluster
        .ctl(&["--json", "rpc", &rs, "erlang", "whereis", "inbox"])
        .json();
    assert!(json["result"]
        .as_str()
        .unwrap()
        .starts_with(&format!("<{rs}.")));
    for node in [&rs, &en] {
        cluster
            .ctl(&["rpc", node, "nosuch_module", "f"])
            .fails(1, "badrpc from");
    }
    cluster
        .ctl(&["rpc", &en, "lists", "seq", "{1"])
        .fails(2, "argument 1 ({1)");
    cluster.ctl(&["rpc", &en]).fails(2, "required");
}

/// A node that EPMD lists but that never answers: `ping` times out within `--timeout`.
#[test]
fn ping_of_a_silent_node_times_out() {
    let cluster = Cluster::new();
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let name = unique("silent");
    let _registration = cluster
        .rt
        .block_on(
            epmd::Client::new("127.0.0.1", cluster.epmd_port)
                .register(epmd::NodeInfo::new(&name, port)),
        )
        .expect("registers");
    let started = std::time::Instant::now();
    let err = cluster
        .ctl(&["--timeout", "1", "ping", &name])
        .fails(1, "timeout after 1s");
    assert!(err.contains(&name), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(listener);
}

// ---------------------------------------------------------------------------------------------
// shutdown
// ---------------------------------------------------------------------------------------------

/// `shutdown NODE ACTOR` stops a registered actor of ours and an Erlang process; one that
/// traps exits survives `shutdown` (a timeout that says so) and not `--kill`.
#[test]
fn shutdown_of_actors_on_ours_and_erlang() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let cluster = Cluster::new();
    let (ours, inbox) = cluster.node_with_inbox(cluster.config(&unique("sa_rs")));
    let mut peer = cluster.erl(&erl, "sa_erl");
    let (rs, en) = (ours.name().to_owned(), peer.name().to_owned());

    let out = cluster.ctl(&["shutdown", &rs, "inbox"]).ok();
    assert!(
        out.starts_with(&format!("stopped inbox on {rs} (exit reason shutdown")),
        "{out}"
    );
    inbox.wait_stopped(&cluster.rt);
    cluster.ctl(&["ping", &rs, "inbox"]).fails(1, "no actor");

    peer.ok("register(victim, spawn(fun() -> receive never -> ok end end))");
    let json = cluster.ctl(&["--json", "shutdown", &en, "victim"]).json();
    assert_eq!(json["reason"], "shutdown");
    assert_eq!(json["actor"], "victim");
    assert_eq!(peer.ok("whereis(victim)"), "undefined");

    // A process that traps exits takes `shutdown` as a message and runs on.
    peer.ok(
        "register(trapper, spawn(fun() -> process_flag(trap_exit, true), \
         receive never -> ok end end))",
    );
    cluster
        .ctl(&["--timeout", "1", "shutdown", &en, "trapper"])
        .fails(1, "trapper on");
    assert_ne!(peer.ok("whereis(trapper)"), "undefined");
    let out = cluster.ctl(&["shutdown", &en, "trapper", "--kill"]).ok();
    assert!(out.contains("exit reason killed"), "{out}");
    cluster
        .ctl(&["shutdown", &en, "nosuch_actor"])
        .fails(1, "no actor");
}

/// `shutdown NODE` stops our node gracefully (its program sees `wait_stopped` return 0) and
/// an Erlang node (`init:stop/0`: the `erl` process exits with status 0).
#[test]
fn shutdown_of_nodes_ours_and_erlang() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let cluster = Cluster::new();
    let ours = cluster.start(cluster.config(&unique("sn_rs")));
    let rs = ours.name().to_owned();
    let out = cluster.ctl(&["shutdown", &rs]).ok();
    assert!(
        out.starts_with(&format!("stopped {rs} (init:stop")),
        "{out}"
    );
    assert_eq!(cluster.wait_stopped(&ours), 0);
    cluster.ctl(&["ping", &rs]).fails(1, "unknown");

    let mut peer = cluster.erl(&erl, "sn_erl");
    let en = peer.name().to_owned();
    let json = cluster.ctl(&["--json", "shutdown", &en]).json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["node"], en.as_str());
    // The node closes its stdout as it exits.
    match peer.peer_mut().try_recv_line(DEADLINE) {
        Err(testkit::PeerError::Closed) => {}
        other => panic!("erl still talks after init:stop: {other:?}"),
    }
    let status = peer.into_peer().shutdown(DEADLINE).expect("erl is reaped");
    assert!(status.success(), "erl exited with {status}");
}

/// `shutdown --all` needs `--force`; with it, every node in EPMD stops, ours and Erlang's,
/// although our first node runs nothing that the others need.
#[test]
fn shutdown_all_needs_force_and_stops_every_node() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let cluster = Cluster::new();
    let a = cluster.start(cluster.config(&unique("all_rs")));
    let b = cluster.start(cluster.config(&unique("all_rs")).hidden(false));
    let mut peer = cluster.erl(&erl, "all_erl");

    cluster
        .ctl(&["shutdown", "--all"])
        .fails(2, "add --force to confirm");
    assert_eq!(peer.ok("1 + 1"), "2");

    let json = cluster
        .ctl(&["--json", "shutdown", "--all", "--force"])
        .json();
    assert_eq!(json["ok"], true, "{json}");
    let stopped: Vec<&str> = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap())
        .collect();
    assert_eq!(stopped.len(), 3, "{json}");
    for name in [a.name(), b.name(), peer.name()] {
        assert!(stopped.contains(&name), "{name} not in {stopped:?}");
    }
    assert_eq!(cluster.wait_stopped(&a), 0);
    assert_eq!(cluster.wait_stopped(&b), 0);
    match peer.peer_mut().try_recv_line(DEADLINE) {
        Err(testkit::PeerError::Closed) => {}
        other => panic!("erl still talks after shutdown --all: {other:?}"),
    }
    let out = cluster.ctl(&["list-servers"]).ok();
    assert!(out.starts_with("no nodes registered"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// The admin guard
// ---------------------------------------------------------------------------------------------

/// A node with an admin allow-list refuses rpc, `shutdown` and actor stops from a `nodectl`
/// outside it (one clear line, the node keeps running, the actor too) and allows them from
/// one on it. `ping` (no rpc) works for both.
#[test]
fn admin_guard_refuses_and_allows_nodectl() {
    let cluster = Cluster::new();
    let admin = unique("admin");
    let admin_full = format!("{admin}@{}", short_host());
    let (ours, inbox) = cluster.node_with_inbox(
        cluster
            .config(&unique("guarded"))
            .admin_allow([admin_full.clone()]),
    );
    let rs = ours.name().to_owned();

    assert!(cluster.ctl(&["ping", &rs]).ok().starts_with("OK"));
    for args in [
        vec!["rpc", &rs, "erlang", "node"],
        vec!["list-actors", &rs],
        vec!["info", &rs],
        vec!["shutdown", &rs, "inbox"],
        vec!["shutdown", &rs],
    ] {
        let err = cluster.ctl(&args).fails(1, "refused:");
        assert!(err.contains("is not one of them"), "{err}");
    }
    let json = cluster.ctl(&["--json", "shutdown", &rs]).json();
    assert_eq!(json["error"], "not_allowed");
    // Still running, the actor too.
    let out = cluster.ctl(&["--name", &admin, "ping", &rs, "inbox"]).ok();
    assert!(out.contains("inbox is <"), "{out}");

    // On the list: everything works.
    assert_eq!(
        cluster
            .ctl(&["--name", &admin, "rpc", &rs, "erlang", "node"])
            .ok(),
        rs
    );
    let out = cluster
        .ctl(&["--name", &admin, "shutdown", &rs, "inbox"])
        .ok();
    assert!(out.starts_with("stopped inbox"), "{out}");
    inbox.wait_stopped(&cluster.rt);
    cluster.ctl(&["--name", &admin, "shutdown", &rs]).ok();
    assert_eq!(cluster.wait_stopped(&ours), 0);
}

/// Under mutual TLS the admin guard also checks the peer's certificate: `nodectl` named as
/// the admin is allowed only with a certificate that names it (here as an email
/// subjectAltName), and refused with a valid certificate for another name.
#[test]
fn admin_guard_checks_the_certificate_name_under_mutual_tls() {
    if testkit::find_executable("openssl").is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "openssl is needed for the mutual TLS test in CI"
        );
        eprintln!("SKIPPED: no openssl");
        return;
    }
    let cluster = Cluster::new();
    let host = short_host();
    let admin = unique("tlsadmin");
    let admin_full = format!("{admin}@{host}");
    let node_name = unique("tlsnode");
    let certs = Certs::make(&[
        ("node", format!("{node_name}@{host}")),
        ("admin", admin_full.clone()),
        ("other", format!("someone_else@{host}")),
    ]);
    let tls = TlsConfig::from_pem_files(
        &certs.path("node.pem"),
        &certs.path("node.key"),
        Some(&certs.path("ca.pem")),
    )
    .expect("TLS config");
    let ours = cluster.start(
        cluster
            .config(&node_name)
            .tls(tls)
            .admin_allow([admin_full.clone()]),
    );
    let rs = ours.name().to_owned();
    let with_cert = |who: &str, name: &str, args: &[&str]| {
        let (cert, key, ca) = (
            certs.path(&format!("{who}.pem")),
            certs.path(&format!("{who}.key")),
            certs.path("ca.pem"),
        );
        let mut all = vec![
            "--name".to_owned(),
            name.to_owned(),
            "--tls-cert".to_owned(),
            cert.display().to_string(),
            "--tls-key".to_owned(),
            key.display().to_string(),
            "--tls-ca".to_owned(),
            ca.display().to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        cluster.ctl(&refs)
    };
    // The admin's name with the admin's certificate: allowed.
    assert_eq!(
        with_cert("admin", &admin, &["rpc", &rs, "erlang", "node"]).ok(),
        rs
    );
    // The admin's name with another valid certificate: refused.
    with_cert("other", &admin, &["rpc", &rs, "erlang", "node"]).fails(1, "refused:");
    // Plain TCP does not even connect to a TLS node.
    assert_ne!(
        cluster
            .ctl(&["--name", &admin, "rpc", &rs, "erlang", "node"])
            .code,
        0
    );
    with_cert("admin", &admin, &["shutdown", &rs]).ok();
    assert_eq!(cluster.wait_stopped(&ours), 0);
}

/// A CA and certificates (for client and server use, valid for this host) whose names are
/// node names: CN and an email subjectAltName.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make(entries: &[(&str, String)]) -> Certs {
        let dir = testkit::unique_temp_dir("nodectl_tls");
        let host = node_server::config::hostname();
        let short = short_host();
        let run = |args: &[&str]| testkit::openssl(&dir, args);
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=nodectl-test-ca",
        ]);
        for (file, node) in entries {
            let (key, csr, pem, ext) = (
                format!("{file}.key"),
                format!("{file}.csr"),
                format!("{file}.pem"),
                format!("{file}.cnf"),
            );
            run(&[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={node}"),
            ]);
            std::fs::write(
                dir.join(&ext),
                format!(
                    "subjectAltName=email:{node},DNS:{short},DNS:{host},DNS:localhost\n\
                     basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
                     extendedKeyUsage=serverAuth,clientAuth\n"
                ),
            )
            .unwrap();
            run(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &ext,
            ]);
        }
        Certs { dir }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `nodectl dashboard` serves the page and its state for the nodes in EPMD (here a node of
/// ours), and stops cleanly on SIGTERM. The page itself is tested in a browser by the
/// `node_dashboard` crate.
#[test]
fn dashboard_serves_the_cluster_until_terminated() {
    use std::io::{BufRead, Read, Write};
    let cluster = Cluster::new();
    let node = cluster.start(cluster.config(&unique("dash")));
    // Port 0: the dashboard binds a port of its own and prints its real address.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodectl"));
    cmd.args(["--cookie", COOKIE, "dashboard", "--listen", "127.0.0.1:0"])
        .env("ERL_EPMD_PORT", cluster.epmd_port.to_string())
        .env("HOME", &cluster.home)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit());
    let mut child = testkit::ChildGuard::spawn(&mut cmd, "nodectl dashboard").expect("spawn");
    let stdout = child.child_mut().stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(DEADLINE).expect("a first line");
    let listen = first
        .strip_prefix("dashboard at http://")
        .and_then(|rest| rest.strip_suffix("/ (Ctrl-C stops it)"))
        .unwrap_or_else(|| panic!("not the dashboard's first line: {first}"))
        .to_owned();
    let bound: SocketAddr = listen
        .parse()
        .unwrap_or_else(|e| panic!("{first}: not an address: {e}"));
    assert_eq!(bound.ip(), Ipv4Addr::LOCALHOST, "{first}");
    assert_ne!(bound.port(), 0, "the real port is printed: {first}");
    // The state names our node once a poll has seen it.
    let start = std::time::Instant::now();
    loop {
        let mut s = std::net::TcpStream::connect(&listen).expect("connect");
        s.write_all(b"GET /state.json HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut reply = String::new();
        s.read_to_string(&mut reply).expect("reply");
        if reply.starts_with("HTTP/1.1 200") && reply.contains(node.name()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "state never named {}: {reply}",
            node.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = child
        .wait_timeout(DEADLINE)
        .expect("wait")
        .expect("nodectl stops on SIGTERM");
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        rx.recv_timeout(DEADLINE).expect("a last line"),
        format!("dashboard at http://{listen}/ stopped")
    );
}

/// A dashboard whose address is taken fails with one `dashboard:` line and exit status 1 (2
/// is kept for a wrong command line).
#[test]
fn dashboard_on_a_taken_port_fails_with_status_1() {
    let cluster = Cluster::new();
    let taken = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a listener");
    let listen = taken.local_addr().expect("its address").to_string();
    let err = cluster
        .ctl(&["dashboard", "--listen", &listen])
        .fails(1, "dashboard: cannot listen on");
    assert!(err.contains("in use"), "{err}");
    drop(taken);
}

// ---------------------------------------------------------------------------------------------
// list-kinds, spawn
// ---------------------------------------------------------------------------------------------

/// The `echo_node` example (it registers kind `counter`), built once per test process by
/// cargo into this test's target directory and profile (a no-op when it is up to date).
fn echo_node_exe() -> PathBuf {
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    EXE.get_or_init(|| {
        // target/<profile>/deps/nodectl-HASH -> target/<profile>
        let exe = std::env::current_exe().expect("the test's path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test lives in target/<profile>/deps");
        let target_dir = profile_dir.parent().expect("the target directory");
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .expect("the profile's directory name");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "erlang-node-suite"])
            .args(["--example", "echo_node"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
        match profile {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let out = testkit::output_within(&mut cmd, Duration::from_secs(900))
            .expect("cargo builds echo_node in time");
        assert!(
            out.status.success(),
            "cargo build --example echo_node: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        profile_dir.join("examples").join("echo_node")
    })
    .clone()
}

/// An `echo_node` process of a test cluster, killed when dropped.
struct EchoNode {
    /// Its full name.
    name: String,
    _child: testkit::ChildGuard,
}

impl Cluster {
    /// Starts `echo_node --roles ROLES` under a unique name in this cluster and waits
    /// (bounded) for its `ready` line.
    fn echo_node(&self, label: &str, roles: &[&str]) -> EchoNode {
        self.echo_node_with(label, roles, &[])
    }

    /// [`Cluster::echo_node`] with more arguments.
    fn echo_node_with(&self, label: &str, roles: &[&str], extra: &[&str]) -> EchoNode {
        use std::io::BufRead;
        use std::process::Stdio;
        let name = unique(label);
        let mut cmd = Command::new(echo_node_exe());
        cmd.args(["--name", &name, "--cookie", COOKIE])
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("HOME", &self.home)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !roles.is_empty() {
            cmd.args(["--roles", &roles.join(",")]);
        }
        cmd.args(extra);
        let mut child = testkit::ChildGuard::spawn(&mut cmd, format!("echo_node {name}"))
            .expect("echo_node starts");
        let stdout = child.child_mut().stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end, so that the node never blocks on a full pipe.
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let full = format!("{name}@{}", short_host());
        let ready = rx.recv_timeout(DEADLINE).expect("echo_node says ready");
        assert_eq!(ready, format!("ready {full}"));
        EchoNode {
            name: full,
            _child: child,
        }
    }

    /// `process_count` of a node of ours, as `nodectl info` reports it.
    fn process_count(&self, node: &str) -> u64 {
        let info = self.ctl(&["--json", "info", node]).json();
        info["process_count"].as_u64().expect("a process count")
    }
}

/// `nodectl spawn ... --json`: the JSON of a successful spawn.
fn spawned(cluster: &Cluster, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json", "spawn"];
    all.extend_from_slice(args);
    let json = cluster.ctl(&all).json();
    assert_eq!(json["ok"], true, "{args:?}: {json}");
    json
}

/// `list-kinds` and `spawn` over three `echo_node` processes (roles `web`, `db`, none): each
/// lists `counter/1`; `--on` is obeyed and the counter works there (`--register` makes its
/// name resolve on that node); `role:db` picks the one node with that role, whoever decides;
/// round-robin through one node touches each node once; an unknown kind, no candidate,
/// arguments that do not parse or do not fit, and a name that is taken are clear errors that
/// leave nothing running.
#[test]
fn list_kinds_and_spawn_place_counters_on_echo_nodes() {
    use node_server::etf::{Atom, Term};
    use node_server::remote::RemoteTarget;

    let cluster = Cluster::new();
    let web = cluster.echo_node("sp_web", &["web"]);
    let db = cluster.echo_node("sp_db", &["db"]);
    let plain = cluster.echo_node("sp_plain", &[]);
    let (w, d, p) = (web.name.as_str(), db.name.as_str(), plain.name.as_str());

    // list-kinds
    for node in [w, d, p] {
        assert_eq!(cluster.ctl(&["list-kinds", node]).ok(), "counter/1");
    }
    let json = cluster.ctl(&["--json", "list-kinds", d]).json();
    assert_eq!(
        json["kinds"],
        serde_json::json!([{"name": "counter", "version": 1, "requires": {}}])
    );
    assert_eq!(json["node"], d);
    let missing = format!("{}@{}", unique("absent"), short_host());
    cluster.ctl(&["list-kinds", &missing]).fails(
        1,
        &format!("unknown: {missing} is not registered with epmd"),
    );

    // --on: that node, and --register names the actor there.
    let out = cluster
        .ctl(&["spawn", "--on", d, "--register", "c5", "counter", "5"])
        .ok();
    let pid = out
        .strip_suffix(&format!(" on {d} registered as c5"))
        .unwrap_or_else(|| panic!("not a spawn of c5 on {d}: {out}"))
        .to_owned();
    assert!(pid.starts_with(&format!("<{d}.")), "{out}");
    assert_eq!(
        cluster.ctl(&["rpc", d, "erlang", "whereis", "c5"]).ok(),
        pid
    );
    // The counter works: a node of ours calls it (gen_server:call(c5, get)) and casts to it.
    let probe = cluster.start(cluster.config(&unique("sp_probe")).hidden(true));
    let c5 = RemoteTarget::Name {
        name: Atom::new("c5"),
        node: Atom::new(d),
    };
    let (first, after_add) = cluster.rt.block_on(async {
        let first = probe.call(&c5, Term::atom("get"), DEADLINE).await;
        probe.send(&c5, Term::tuple(vec![Term::atom("add"), Term::Int(3)]));
        let after = probe.call(&c5, Term::atom("get"), DEADLINE).await;
        (first, after)
    });
    assert_eq!(first.expect("c5 answers get"), Term::Int(5));
    assert_eq!(after_add.expect("c5 answers get"), Term::Int(8));
    for node in [w, p] {
        let json = spawned(&cluster, &["--on", node, "counter", "-1"]);
        assert_eq!(json["node"], node);
        assert!(
            json["pid"]
                .as_str()
                .unwrap()
                .starts_with(&format!("<{node}.")),
            "{json}"
        );
        assert_eq!(json["placement"], format!("node:{node}"));
        assert!(json["decided_by"].as_str().unwrap().starts_with("nodectl_"));
        assert_eq!(json["registered"], serde_json::Value::Null);
    }

    // role:db: the one node with that role, decided by nodectl or by another node.
    for _ in 0..2 {
        let out = cluster
            .ctl(&["spawn", "--strategy", "role:db", "counter", "0"])
            .ok();
        assert!(out.ends_with(&format!(" on {d}")), "{out}");
    }
    let json = spawned(
        &cluster,
        &["--via", w, "--strategy", "role:db", "counter", "0"],
    );
    assert_eq!(json["node"], d);
    assert_eq!(json["decided_by"], w);

    // round-robin through `web`: its turn for `counter` goes over the three nodes in turn.
    let mut touched: Vec<String> = (0..3)
        .map(|_| {
            let json = spawned(
                &cluster,
                &["--via", w, "--strategy", "round-robin", "counter", "0"],
            );
            json["node"].as_str().unwrap().to_owned()
        })
        .collect();
    touched.sort();
    let mut all = vec![w.to_owned(), d.to_owned(), p.to_owned()];
    all.sort();
    assert_eq!(touched, all, "each node exactly once");
    // The other strategies and the default place it somewhere.
    for args in [
        &["counter", "1"][..],
        &["--strategy", "least-loaded", "counter", "1"],
        &["--strategy", "repulsion:nosuch_group", "counter", "1"],
        &["--strategy", "host:nosuch_host", "counter", "1"],
    ] {
        let out = cluster.ctl(&[&["spawn"][..], args].concat());
        if args.contains(&"host:nosuch_host") {
            out.fails(1, "host:nosuch_host");
        } else {
            let node = out.ok();
            assert!(
                all.iter().any(|n| node.ends_with(&format!(" on {n}"))),
                "{node}"
            );
        }
    }

    // Errors: one clear line each, and nothing is left running.
    let before: Vec<u64> = [w, d, p].map(|n| cluster.process_count(n)).to_vec();
    cluster
        .ctl(&["spawn", "nosuch_kind", "1"])
        .fails(1, "no candidate node for kind nosuch_kind");
    cluster
        .ctl(&["spawn", "--via", w, "nosuch_kind", "1"])
        .fails(1, "no candidate node for kind nosuch_kind");
    cluster
        .ctl(&["spawn", "--on", d, "nosuch_kind", "1"])
        .fails(
            1,
            &format!("unknown kind: {d} has no kind nosuch_kind (it has: counter/1)"),
        );
    cluster
        .ctl(&["spawn", "counter/2", "1"])
        .fails(1, "no candidate node for kind counter/2");
    for via in [&[][..], &["--via", w]] {
        let args = [
            &["spawn"][..],
            via,
            &["--strategy", "role:nosuch", "counter", "1"],
        ]
        .concat();
        let err = cluster
            .ctl(&args)
            .fails(1, "no candidate node for kind counter");
        assert!(
            err.contains("role:nosuch") && err.contains("no candidate has role nosuch"),
            "{err}"
        );
        let args = [&["spawn"][..], via, &["--on", d, "counter", "abc"]].concat();
        let err = cluster
            .ctl(&args)
            .fails(1, "spawn failed: spawned process exited at once");
        assert!(
            err.contains("function_clause") && err.contains("expected an integer"),
            "{err}"
        );
        let args = [
            &["spawn"][..],
            via,
            &["--on", d, "--register", "c5", "counter", "1"],
        ]
        .concat();
        cluster.ctl(&args).fails(1, "cannot register c5");
    }
    let json = cluster
        .ctl(&[
            "--json",
            "spawn",
            "--strategy",
            "role:nosuch",
            "counter",
            "1",
        ])
        .json();
    assert_eq!(json["ok"], false);
    assert_eq!(json["error"], "no_candidate");
    cluster
        .ctl(&["spawn", "--on", d, "counter", "{1"])
        .fails(2, "argument 1 ({1)");
    cluster
        .ctl(&["spawn", "--strategy", "fastest", "counter", "1"])
        .fails(2, "bad placement \"fastest\"");
    cluster
        .ctl(&["spawn", "--on", d, "--strategy", "random", "counter", "1"])
        .fails(2, "cannot be used with");
    let after: Vec<u64> = [w, d, p].map(|n| cluster.process_count(n)).to_vec();
    assert_eq!(after, before, "no process was left behind");
    assert_eq!(
        cluster.ctl(&["rpc", d, "erlang", "whereis", "c5"]).ok(),
        pid
    );

    // An Erlang node has no kinds and does not place.
    if let Some(erl) = testkit::require_erl() {
        let peer = cluster.erl(&erl, "sp_erl");
        let en = peer.name().to_owned();
        cluster
            .ctl(&["list-kinds", &en])
            .fails(1, &format!("not ours: {en} is not a node_server node"));
        cluster
            .ctl(&["spawn", "--on", &en, "counter", "1"])
            .fails(1, "not ours");
        cluster
            .ctl(&["spawn", "--via", &en, "counter", "1"])
            .fails(1, "not ours");
    }
}

// ---------------------------------------------------------------------------------------------
// eval
// ---------------------------------------------------------------------------------------------

/// `nodectl eval` against an `echo_node`: values print as the Erlang shell prints them (exit
/// 0), errors as the shell's text on stderr (exit 1); `gen_server` calls reach `kv`, rpc
/// functions and BIFs work; bindings hold within one evaluation.
#[test]
fn eval_runs_erlang_expressions_on_an_echo_node() {
    let cluster = Cluster::new();
    let echo = cluster.echo_node("ev_echo", &[]);
    let n = echo.name.as_str();
    let eval = |expr: &str| cluster.ctl(&["eval", n, expr]);
    assert_eq!(eval("node().").ok(), n);
    assert_eq!(eval("gen_server:call(kv, {put, a, 1})").ok(), "ok");
    assert_eq!(eval("gen_server:call(kv, {get, a}).").ok(), "{ok,1}");
    assert_eq!(eval("X = 20, X + 22.").ok(), "42");
    assert_eq!(eval("echo_node:add(40, 2).").ok(), "42");
    assert_eq!(eval("lists:member(kv, registered()).").ok(), "true");
    assert_eq!(
        eval("{ok, \"text\", <<\"bin\">>, lists:seq(1, 3)}").ok(),
        "{ok,\"text\",<<\"bin\">>,[1,2,3]}"
    );
    assert_eq!(
        eval("is_pid(whereis(kv)) andalso node(whereis(kv)) == node()").ok(),
        "true"
    );
    // Several arguments are one text.
    assert_eq!(cluster.ctl(&["eval", n, "-1", "+", "3."]).ok(), "2");
    let err = eval("X = 1, X + Y.").fails(1, "* 1:12: variable 'Y' is unbound");
    assert_eq!(err, "* 1:12: variable 'Y' is unbound");
    eval("foo:bar().").fails(1, "** exception error: undefined function foo:bar/0");
    eval("1 = 2.").fails(1, "** exception error: no match of right hand side value 2");
    eval("1 + ).").fails(1, "* 1:5: syntax error before: ')'");
    eval("gen_server:call(nosuch, x).").fails(
        1,
        "** exception exit: {noproc,{gen_server,call,[nosuch,x]}}",
    );
    let json = cluster.ctl(&["--json", "eval", n, "1 + 1."]).json();
    assert_eq!(json["ok"], true);
    assert_eq!(json["result"], "2");
    let json = cluster.ctl(&["--json", "eval", n, "1 / 0."]);
    assert_eq!(json.code, 1);
    let json = json.json();
    assert_eq!(json["error"], "eval");
    assert_eq!(
        json["message"],
        "** exception error: an error occurred when evaluating an arithmetic expression"
    );
}

/// The admin guard covers `eval` as every rpc: a `nodectl` outside the list is refused with
/// the same text, one on it evaluates.
#[test]
fn admin_guard_applies_to_eval() {
    let cluster = Cluster::new();
    let admin = unique("evadmin");
    let admin_full = format!("{admin}@{}", short_host());
    let (ours, _inbox) = cluster.node_with_inbox(
        cluster
            .config(&unique("evguarded"))
            .admin_allow([admin_full.clone()]),
    );
    let rs = ours.name().to_owned();
    let err = cluster.ctl(&["eval", &rs, "node()."]).fails(1, "refused:");
    assert!(err.contains("is not one of them"), "{err}");
    assert_eq!(
        cluster
            .ctl(&["--name", &admin, "eval", &rs, "node()."])
            .ok(),
        rs
    );
}

// ---------------------------------------------------------------------------------------------
// repl
// ---------------------------------------------------------------------------------------------

impl Cluster {
    /// Runs `nodectl --cookie COOKIE repl NODE` with `input` on its stdin (a pipe, closed
    /// after `input`), for at most [`CTL_LIMIT`].
    fn repl(&self, node: &str, input: &str) -> Out {
        use std::io::{Read, Write};
        use std::process::Stdio;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodectl"));
        cmd.args(["--cookie", COOKIE, "repl", node])
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("HOME", &self.home)
            .env_remove("ERLANG_COOKIE")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = testkit::ChildGuard::spawn(&mut cmd, "nodectl repl").expect("starts");
        let mut stdin = child.child_mut().stdin.take().expect("stdin");
        let input = input.to_owned();
        // Written on a thread of its own, so that a full pipe cannot block the test.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let stdout = drain(Box::new(child.child_mut().stdout.take().expect("stdout")));
        let stderr = drain(Box::new(child.child_mut().stderr.take().expect("stderr")));
        let status = child
            .wait_timeout(CTL_LIMIT)
            .expect("wait")
            .expect("nodectl repl ends in time");
        let _ = writer.join();
        Out {
            code: status.code().unwrap_or(-1),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        }
    }
}

/// `nodectl repl` driven through a pipe against an `echo_node`: the erl shell's prompts,
/// bindings kept from one expression to the next, an expression over two lines, an error
/// and then a working expression, `b()`, `f()`, then `q().` (exit 0, the node still
/// running); the end of input leaves too; a node that is gone is a clear error.
#[test]
fn repl_keeps_bindings_across_expressions_through_a_pipe() {
    let cluster = Cluster::new();
    let echo = cluster.echo_node("repl_echo", &[]);
    let n = echo.name.as_str();
    let input =
        "X = 20.\nX + 22.\n{X,\n X * 2}.\n1 = 2.\nX - 1.\nb().\n1 + ).\nf().\nX.\nq().\nnode().\n";
    let out = cluster.repl(n, input);
    assert_eq!(
        out.code, 0,
        "stdout {:?} stderr {:?}",
        out.stdout, out.stderr
    );
    let p = |i: u32| format!("({n}){i}> ");
    let expected = [
        format!("{}20\n", p(1)),
        format!("{}42\n", p(2)),
        // The second line of an expression is asked for with the same prompt, as erl does.
        format!("{}{}{{20,40}}\n", p(3), p(3)),
        format!(
            "{}** exception error: no match of right hand side value 2\n",
            p(4)
        ),
        format!("{}19\n", p(5)),
        format!("{}X = 20\nok\n", p(6)),
        // A syntax error does not count, as in erl.
        format!("{}* 1:5: syntax error before: ')'\n", p(7)),
        format!("{}ok\n", p(7)),
        format!("{}* 1:1: variable 'X' is unbound\n", p(8)),
        // q(). leaves: what follows it is not read.
        p(9),
    ]
    .concat();
    assert_eq!(out.stdout, expected, "stderr {:?}", out.stderr);
    assert!(
        out.stderr.contains("the node keeps running"),
        "{}",
        out.stderr
    );
    // The node is still there; the end of input leaves as q(). does.
    let out = cluster.repl(n, "node().\n");
    assert_eq!(out.code, 0, "{:?}", out.stderr);
    assert_eq!(out.stdout, format!("{}{n}\n{}", p(1), p(2)));
    // A node that is not there.
    let missing = format!("{}@{}", unique("absent"), short_host());
    let out = cluster.repl(&missing, "node().\n");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("is not registered with epmd"),
        "{}",
        out.stderr
    );
}

/// `nodectl repl NODE` in a pseudo-terminal (so with line editing), as [`rexpect`] drives it.
fn repl_in_pty(cluster: &Cluster, node: &str) -> rexpect::session::PtySession {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nodectl"));
    cmd.args(["--cookie", COOKIE, "repl", node])
        .env("ERL_EPMD_PORT", cluster.epmd_port.to_string())
        .env("HOME", &cluster.home)
        .env("TERM", "xterm")
        .env_remove("ERLANG_COOKIE")
        .env_remove("RUST_LOG");
    // Every expectation waits at most DEADLINE; the session kills nodectl when dropped.
    let mut session =
        rexpect::session::spawn_command(cmd, Some(DEADLINE.as_millis() as u64)).expect("a pty");
    session.process.set_kill_timeout(Some(5_000));
    session
}

/// How a process in a pty exited, as `Exited(Pid(N), CODE)`.
fn pty_exit(session: &mut rexpect::session::PtySession) -> String {
    session.exp_eof().expect("nodectl ends");
    format!("{:?}", session.process.wait().expect("its status"))
}

/// `nodectl repl` through a pseudo-terminal: the prompt appears, bindings hold, the up arrow
/// recalls the last line from the history, `q().` leaves with exit 0; a node that goes away
/// meanwhile ends the repl with a clear message and exit 1.
#[test]
fn repl_in_a_terminal_prompts_edits_and_notices_a_lost_node() {
    let cluster = Cluster::new();
    let echo = cluster.echo_node("repl_pty", &[]);
    let n = echo.name.clone();
    let prompt = |i: u32| format!("({n}){i}> ");
    let mut s = repl_in_pty(&cluster, &n);
    s.exp_string(&prompt(1)).expect("the first prompt");
    s.send_line("X = 20.").unwrap();
    s.exp_string("20").unwrap();
    s.exp_string(&prompt(2)).expect("the second prompt");
    s.send_line("X + 22.").unwrap();
    s.exp_string("42").unwrap();
    s.exp_string(&prompt(3)).unwrap();
    // The up arrow brings `X + 22.` back; Enter evaluates it again.
    s.send("\x1b[A").unwrap();
    s.send_line("").unwrap();
    s.exp_string("42").unwrap();
    s.exp_string(&prompt(4)).unwrap();
    s.send_line("q().").unwrap();
    let status = pty_exit(&mut s);
    assert!(status.ends_with(", 0)"), "{status}");

    // The node goes away while the repl waits for a line.
    let mut s = repl_in_pty(&cluster, &n);
    s.exp_string(&prompt(1)).unwrap();
    drop(echo);
    s.send_line("node().").unwrap();
    s.exp_string(&format!("connection to {n} lost: "))
        .expect("a clear message");
    let status = pty_exit(&mut s);
    assert!(status.ends_with(", 1)"), "{status}");
}

/// `load`, `list-sources`, `spawn --source` and `unload` against `echo_node --sources-key`:
/// a load needs the node's key (none, a wrong one and a node without a source authority are
/// clear errors), the hash printed is the module's, a spawn from it decided on one node runs
/// on another (which fetches the module), and an unload leaves the running actor alone.
#[test]
fn load_spawn_from_a_source_and_unload_webassembly_modules() {
    let cluster = Cluster::new();
    let key = cluster.home.join("sources.key");
    std::fs::write(&key, "the sources key of this test\n").unwrap();
    let wrong = cluster.home.join("wrong.key");
    std::fs::write(&wrong, "not the key of this test").unwrap();
    let key_arg = key.display().to_string();
    let a = cluster.echo_node_with("ws_a", &[], &["--sources-key", &key_arg]);
    let b = cluster.echo_node_with("ws_b", &[], &["--sources-key", &key_arg]);
    let plain = cluster.echo_node("ws_plain", &[]);
    let (a, b, plain) = (a.name.as_str(), b.name.as_str(), plain.name.as_str());
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/guests/counter.wasm");
    let wasm = wasm.display().to_string();
    let hash = node_server::sources::ModuleHash::of(&std::fs::read(&wasm).unwrap()).to_string();
    let (k, w) = (key.display().to_string(), wrong.display().to_string());

    cluster
        .ctl(&["load", a, &wasm])
        .fails(1, "came without an HMAC-SHA256 code");
    cluster
        .ctl(&["load", a, &wasm, "--key", &w])
        .fails(1, "does not match");
    cluster
        .ctl(&["load", plain, &wasm, "--key", &k])
        .fails(1, "no source authority");
    cluster
        .ctl(&["load", a, "/no/such/file.wasm"])
        .fails(2, "cannot read /no/such/file.wasm");
    assert_eq!(
        cluster.ctl(&["list-sources", a]).ok(),
        format!("{a} has no modules loaded")
    );
    assert_eq!(cluster.ctl(&["load", a, &wasm, "--key", &k]).ok(), hash);
    assert_eq!(
        cluster.ctl(&["list-sources", a]).ok(),
        format!("{hash} 2873 bytes, no kinds, 0 actors")
    );

    // Decided on a, run on b, which fetches the module from a.
    let out = cluster
        .ctl(&[
            "spawn",
            "--source",
            &hash,
            "--via",
            a,
            "--on",
            b,
            "--register",
            "w1",
            "counter_wasm",
            "5",
        ])
        .ok();
    assert!(out.ends_with(&format!(" on {b} registered as w1")), "{out}");
    assert_eq!(
        cluster.ctl(&["list-sources", b]).ok(),
        format!("{hash} 2873 bytes, kinds counter_wasm/1, 1 actors")
    );
    assert_eq!(
        cluster.ctl(&["eval", b, "gen_server:call(w1, get)."]).ok(),
        "5"
    );
    cluster
        .ctl(&["spawn", "--source", &hash, "counter_wasm"])
        .fails(2, "spawn --source needs --via NODE");
    cluster
        .ctl(&["spawn", "--source", "sha256:12", "--on", b, "counter_wasm"])
        .fails(2, "bad module hash");
    // A hash that matches no module: b asks a for it, and a has none.
    let unknown = node_server::sources::ModuleHash::of(b"nothing").to_string();
    cluster
        .ctl(&[
            "spawn",
            "--source",
            &unknown,
            "--via",
            a,
            "--on",
            b,
            "counter_wasm",
        ])
        .fails(1, &format!("no module {unknown} is loaded"));

    // Unloaded: gone from the list, the running counter goes on; a second unload says so.
    assert_eq!(
        cluster.ctl(&["unload", b, &hash]).ok(),
        format!("unloaded {hash} from {b}")
    );
    assert_eq!(
        cluster.ctl(&["list-sources", b]).ok(),
        format!("{b} has no modules loaded")
    );
    assert_eq!(
        cluster.ctl(&["eval", b, "gen_server:call(w1, get)."]).ok(),
        "5"
    );
    cluster
        .ctl(&["unload", b, &hash])
        .fails(1, &format!("no module {hash} is loaded"));
}
