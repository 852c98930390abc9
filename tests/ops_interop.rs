//! What our node answers so that Erlang's own tools work on it: `erl_call` (a hidden C node
//! speaking rex's classic `{Pid, {call, M, F, A, GL}}` form), `rpc:call` of the
//! introspection functions tools use (`erlang:node/0`, `nodes/1`, `registered/0`,
//! `system_info/1`, `memory/0`, `statistics/1`, `init:stop/0`), the `echo_node` example
//! exiting 0 when stopped with `init:stop`, and the admin guard seen from a real Erlang node.
//!
//! Each test runs its own EPMD (this workspace's, in-process, on a port the system picked) and
//! gives its nodes names with the test's pid and a counter. `erl` nodes run
//! `tests/erlang/eval_peer.erl`; `erl_call` and the example run as guarded child processes.
//! Every wait is bounded and waits for an event (a line, a message, a node's stop), never a
//! sleep.
//!
//! Needs Erlang/OTP (`erl`, `erlc`, `erl_call`): skipped without them on a developer machine,
//! failing in CI (`CI=true`).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use node_server::etf::Term;
use node_server::remote::{Raw, RemoteTarget};
use node_server::{Node, NodeConfig};
use ractor::ActorRef;
use testkit::{ChildGuard, EvalPeer};
use tokio::sync::mpsc;

#[path = "../examples/echo_node/services.rs"]
mod services;

const COOKIE: &str = "ops_interop_cookie";
/// How long any awaited event may take.
const DEADLINE: Duration = Duration::from_secs(30);

fn unique(label: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{label}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One test's world: a runtime for our nodes and an EPMD.
struct World {
    rt: tokio::runtime::Runtime,
    epmd: Option<epmd::ServerHandle>,
    epmd_port: u16,
}

impl World {
    fn new() -> World {
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
        World {
            rt,
            epmd_port: epmd.port(),
            epmd: Some(epmd),
        }
    }

    fn config(&self, label: &str) -> NodeConfig {
        NodeConfig::new(unique(label))
            .cookie(COOKIE)
            .epmd("localhost", self.epmd_port)
            .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    fn start(&self, config: NodeConfig) -> Node {
        self.rt
            .block_on(async { tokio::time::timeout(DEADLINE, config.start()).await })
            .expect("our node starts in time")
            .expect("our node starts")
    }

    /// A collector actor registered as `name` on `node`, trapping exits.
    fn inbox(&self, node: &Node, name: &str) -> Inbox {
        let (actor, rx) = self.rt.block_on(testkit::forwarder());
        node.register(name, &actor).expect("name is free");
        node.trap_exits(&actor, true);
        Inbox { actor, rx }
    }

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

    /// `erl_call -sname NAME -c COOKIE -a APPLY`: its stdout and whether it succeeded.
    fn erl_call(&self, erl_call: &Path, node: &Node, apply: &str) -> (bool, String) {
        let short = node.name().split('@').next().unwrap();
        let out = testkit::output_within(
            Command::new(erl_call)
                .args(["-sname", short, "-c", COOKIE, "-a", apply])
                .env("ERL_EPMD_PORT", self.epmd_port.to_string()),
            DEADLINE,
        )
        .expect("erl_call runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn wait_stopped(&self, node: &Node) -> i32 {
        self.rt
            .block_on(async { tokio::time::timeout(DEADLINE, node.wait_stopped()).await })
            .expect("the node stops in time")
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(epmd) = self.epmd.take() {
            self.rt.block_on(epmd.stop());
        }
    }
}

fn beam_dir() -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        testkit::compile_erlang(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang/eval_peer.erl"),
        )
    })
    .clone()
}

/// `erl_call`, next to `erl`; required in CI.
fn require_erl_call() -> Option<PathBuf> {
    testkit::require_erl()?;
    let found = testkit::find_executable("erl_call");
    if found.is_none() {
        assert!(
            std::env::var("CI").is_err(),
            "erl_call (erlang-base) is needed in CI"
        );
        eprintln!("SKIPPED: no erl_call on PATH");
    }
    found
}

struct Inbox {
    actor: ActorRef<Raw>,
    rx: mpsc::UnboundedReceiver<Raw>,
}

impl Inbox {
    fn next(&mut self, rt: &tokio::runtime::Runtime) -> Term {
        rt.block_on(async { tokio::time::timeout(DEADLINE, self.rx.recv()).await })
            .expect("a message in time")
            .expect("the collector runs")
            .0
    }
}

fn atom(name: &str) -> String {
    format!("'{name}'")
}

// ---------------------------------------------------------------------------------------------

/// `erl_call -a` against our node: `erlang node`, `system_info`, a registered function, an
/// unknown one, and `init stop`, which stops the node gracefully (its program sees 0). A
/// node with an admin guard answers `erl_call` (not on its list) with `not_allowed`.
#[test]
fn erl_call_works_against_our_node() {
    let Some(erl_call) = require_erl_call() else {
        return;
    };
    let world = World::new();
    let node = world.start(world.config("ec"));
    services::register_functions(&node);

    let (ok, out) = world.erl_call(&erl_call, &node, "erlang node");
    assert!(ok, "{out}");
    assert_eq!(out, node.name());
    let (ok, out) = world.erl_call(&erl_call, &node, "erlang system_info [otp_release]");
    assert!(ok && out == "\"25\"", "{out}");
    let (ok, out) = world.erl_call(&erl_call, &node, "echo_node add [40,2]");
    assert!(ok && out == "42", "{out}");
    let (_, out) = world.erl_call(&erl_call, &node, "nosuch_module f [1]");
    assert!(
        out.starts_with("{badrpc,") && out.contains("undef"),
        "{out}"
    );
    let (ok, out) = world.erl_call(&erl_call, &node, "erlang registered");
    assert!(
        ok && out.contains("rex") && out.contains("net_kernel"),
        "{out}"
    );

    let (ok, out) = world.erl_call(&erl_call, &node, "init stop");
    assert!(ok && out == "ok", "{out}");
    assert_eq!(world.wait_stopped(&node), 0);

    let guarded = world.start(world.config("ecg").admin_allow(["ops@nowhere"]));
    let (_, out) = world.erl_call(&erl_call, &guarded, "erlang node");
    assert!(
        out.starts_with("{badrpc,") && out.contains("not_allowed"),
        "erl_call got {out}"
    );
    let (_, out) = world.erl_call(&erl_call, &guarded, "init stop");
    assert!(out.contains("not_allowed"), "{out}");
    // Still running: it answers (and refuses) the next call.
    let (_, out) = world.erl_call(&erl_call, &guarded, "erlang node");
    assert!(out.contains("not_allowed"), "{out}");
}

/// The `echo_node` example answers `erl_call` and exits with status 0 after `init:stop`.
#[test]
fn echo_node_example_exits_0_on_init_stop() {
    let Some(erl_call) = require_erl_call() else {
        return;
    };
    let example = build_example("echo_node");
    let world = World::new();
    let name = unique("echo_ex");
    let mut child = ChildGuard::spawn(
        Command::new(&example)
            .args(["--name", &name, "--cookie", COOKIE])
            .env("ERL_EPMD_PORT", world.epmd_port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
        "echo_node",
    )
    .expect("echo_node starts");
    let stdout = child.child_mut().stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let ready = lines.recv_timeout(DEADLINE).expect("echo_node says ready");
    assert!(ready.starts_with("ready "), "{ready}");
    let short = name.as_str();
    let call = |apply: &str| {
        let out = testkit::output_within(
            Command::new(&erl_call)
                .args(["-sname", short, "-c", COOKIE, "-a", apply])
                .env("ERL_EPMD_PORT", world.epmd_port.to_string()),
            DEADLINE,
        )
        .expect("erl_call runs");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(call("echo_node add [1,2]"), "3");
    assert_eq!(call("init stop"), "ok");
    let status = child
        .wait_timeout(DEADLINE)
        .expect("wait")
        .expect("echo_node exits after init:stop");
    assert!(status.success(), "echo_node exited with {status}");
    let rest: Vec<String> = lines.try_iter().collect();
    assert!(
        rest.iter().any(|l| l == "stopped 0"),
        "no `stopped 0` line in {rest:?}"
    );
}

/// Builds an example of this package with the profile the tests run under; returns its path.
fn build_example(name: &str) -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>
    let exe = std::env::current_exe().expect("the test's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_path_buf();
    let release = profile_dir.file_name().is_some_and(|p| p == "release");
    let mut cargo = Command::new(env!("CARGO"));
    cargo
        .args(["build", "--quiet", "--example", name])
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if release {
        cargo.arg("--release");
    }
    let out = testkit::output_within(&mut cargo, Duration::from_secs(600)).expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo build --example {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    profile_dir.join("examples").join(name)
}

/// `rpc:call` of the introspection functions from a real Erlang node: the answers have the
/// shapes Erlang's own have, and describe our node; `erpc:call(Node, erlang, exit, ...)`
/// stops an actor; `init:stop()` stops the node gracefully and Erlang sees it go.
#[test]
fn introspection_by_rpc_from_erlang() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let world = World::new();
    let node = world.start(world.config("intro"));
    let mut inbox = world.inbox(&node, "inbox");
    let mut peer = world.erl(&erl, "intro_erl");
    let (rs, en) = (atom(node.name()), atom(peer.name()));
    let rpc = |peer: &mut EvalPeer, call: &str| peer.ok(&format!("rpc:call({rs}, {call})"));

    assert_eq!(rpc(&mut peer, "erlang, node, []"), rs.trim_matches('\''));
    // Our node is visible (the default): Erlang is a visible connection for it.
    assert_eq!(
        rpc(&mut peer, "erlang, nodes, []"),
        format!("[{}]", en.trim_matches('\''))
    );
    assert_eq!(rpc(&mut peer, "erlang, nodes, [hidden]"), "[]");
    assert_eq!(
        rpc(&mut peer, "erlang, nodes, [[this, connected]]"),
        format!("[{},{}]", rs.trim_matches('\''), en.trim_matches('\''))
    );
    assert_eq!(
        rpc(&mut peer, "erlang, registered, []"),
        "[global_name_server,inbox,net_kernel,pg,rex]"
    );
    assert_eq!(
        peer.ok(&format!(
            "is_pid(rpc:call({rs}, erlang, whereis, [rex])) andalso \
             rpc:call({rs}, erlang, whereis, [nosuch]) =:= undefined"
        )),
        "true"
    );
    assert_eq!(
        peer.ok(&format!(
            "rpc:call({rs}, erlang, is_process_alive, [rpc:call({rs}, erlang, whereis, [inbox])])"
        )),
        "true"
    );
    // Our node names the release whose distribution it speaks, whatever release the peer is.
    assert_eq!(
        rpc(&mut peer, "erlang, system_info, [otp_release]"),
        format!("\"{}\"", node_server::builtins::OTP_RELEASE)
    );
    let version = rpc(&mut peer, "erlang, system_info, [system_version]");
    assert!(version.starts_with("\"node_server "), "{version}");
    let count: u64 = rpc(&mut peer, "erlang, system_info, [process_count]")
        .parse()
        .unwrap();
    assert!(count >= 4, "{count}");
    // memory/0 has Erlang's keys, in Erlang's order.
    assert_eq!(
        peer.ok(&format!(
            "[K || {{K, _}} <- rpc:call({rs}, erlang, memory, [])] =:= \
             [K || {{K, _}} <- erlang:memory()]"
        )),
        "true"
    );
    assert_eq!(
        peer.ok(&format!("rpc:call({rs}, erlang, memory, [total]) > 0")),
        "true"
    );
    assert_eq!(
        peer.ok(&format!(
            "{{T, _}} = rpc:call({rs}, erlang, statistics, [wall_clock]), is_integer(T)"
        )),
        "true"
    );
    assert!(rpc(&mut peer, "erlang, system_info, [bogus]").starts_with("{badrpc,{'EXIT',{badarg,"));

    // exit/2 by erpc: the actor traps exits, so it gets the signal as a message.
    assert_eq!(
        peer.ok(&format!(
            "erpc:call({rs}, erlang, exit, [rpc:call({rs}, erlang, whereis, [inbox]), bye])"
        )),
        "true"
    );
    let msg = inbox.next(&world.rt);
    let Some([tag, _, reason]) = msg.as_tuple() else {
        panic!("{msg}")
    };
    assert!(tag.is_atom("EXIT") && reason.is_atom("bye"), "{msg}");
    // kill is not trappable.
    peer.ok(&format!(
        "erpc:call({rs}, erlang, exit, [rpc:call({rs}, erlang, whereis, [inbox]), kill])"
    ));
    world
        .rt
        .block_on(inbox.actor.get_cell().wait(Some(DEADLINE)))
        .expect("killed");

    // init:stop/0: Erlang sees the node go, our program sees 0.
    peer.ok(&format!("erlang:monitor_node({rs}, true)"));
    assert_eq!(rpc(&mut peer, "init, stop, []"), "ok");
    assert_eq!(
        peer.ok(&format!(
            "receive {{nodedown, {rs}}} -> down after 20000 -> still_up end"
        )),
        "down"
    );
    assert_eq!(world.wait_stopped(&node), 0);
}

/// The admin guard seen from Erlang: a node that allows the `erl` node answers its rpc and
/// takes its exit signals; one that does not refuses rpc and `init:stop` with
/// `{badrpc, {'EXIT', {not_allowed, ErlNode}}}` (and `erpc` raises it), and drops its exit
/// signals. Message ordering on the connection proves the drop: the actor traps exits, so a
/// delivered signal would arrive as a message before the marker sent after it.
#[test]
fn admin_guard_against_erlang() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let world = World::new();
    let mut peer = world.erl(&erl, "guard_erl");
    let en = peer.name().to_owned();
    let open = world.start(world.config("open").admin_allow([en.clone()]));
    let closed = world.start(world.config("closed").admin_allow(["ops@nowhere"]));
    let mut open_inbox = world.inbox(&open, "inbox");
    let mut closed_inbox = world.inbox(&closed, "inbox");
    let (o, c) = (atom(open.name()), atom(closed.name()));
    peer.ok("register(tester, self())");

    assert_eq!(
        peer.ok(&format!("rpc:call({o}, erlang, node, [])")),
        open.name()
    );
    let refused = format!("{{badrpc,{{'EXIT',{{not_allowed,{en}}}}}}}");
    assert_eq!(
        peer.ok(&format!("rpc:call({c}, erlang, node, [])")),
        refused
    );
    assert_eq!(peer.ok(&format!("rpc:call({c}, init, stop, [])")), refused);
    assert_eq!(
        peer.ok(&format!(
            "try erpc:call({c}, erlang, node, []) catch C:R -> {{C, R}} end"
        )),
        format!("{{exit,{{exception,{{not_allowed,{en}}}}}}}")
    );
    // Messages and pings are not guarded.
    assert_eq!(peer.ok(&format!("net_adm:ping({c})")), "pong");

    // Exit signals: hand the erl node each inbox's pid.
    for (node, inbox_pid) in [
        (&open, open.pid_of(&open_inbox.actor)),
        (&closed, closed.pid_of(&closed_inbox.actor)),
    ] {
        node.send(
            &RemoteTarget::Name {
                name: "tester".into(),
                node: en.as_str().into(),
            },
            Term::tuple(vec![Term::atom(node.name()), Term::Pid(inbox_pid)]),
        );
    }
    for (node, inbox, delivered) in [
        (&open, &mut open_inbox, true),
        (&closed, &mut closed_inbox, false),
    ] {
        let n = atom(node.name());
        peer.ok(&format!(
            "receive {{{n}, P}} -> exit(P, bye), P ! marker, ok after 20000 -> timeout end"
        ));
        let first = inbox.next(&world.rt);
        if delivered {
            assert!(
                matches!(first.as_tuple(), Some([t, _, r]) if t.is_atom("EXIT") && r.is_atom("bye")),
                "{first}"
            );
            assert!(inbox.next(&world.rt).is_atom("marker"));
        } else {
            assert!(
                first.is_atom("marker"),
                "the exit signal got through: {first}"
            );
        }
    }
    // The refused init:stop left the node running: it still answers over a new connection.
    let probe = world.start(world.config("probe"));
    world
        .rt
        .block_on(async {
            tokio::time::timeout(DEADLINE, node_server::client_connect(&probe, closed.name())).await
        })
        .expect("in time")
        .expect("the guarded node still accepts connections");
}
