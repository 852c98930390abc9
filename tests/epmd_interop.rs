//! Interop tests for the `epmd` crate: our daemon with real Erlang nodes and the real `epmd`
//! client, our client against the real daemon, our `epmd` command line against both daemons,
//! and hostile input against our server.
//!
//! Every test has an EPMD of its own on a port of its own (never 4369) and node names of its
//! own, so the tests run in parallel next to whatever epmd the machine already runs. Every
//! spawned process (erl, real epmd, our `epmd` binary) is held by a [`ChildGuard`] that kills
//! it on drop. Waiting is polling with a deadline, never a bare sleep.
//!
//! Needs Erlang/OTP (`erl`, `erlc` and `epmd` on `PATH`): without it the tests are skipped on a
//! developer machine and fail in CI (`CI=true`), see [`testkit::require_erl`].
//!
//! Our `epmd` binary is built once per test run with `cargo build -p epmd --bin epmd` into the
//! target directory this test runs from (a no-op when it is up to date).

use std::fmt::Debug;
use std::future::Future;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use epmd::protocol::Request;
use epmd::roles::encode_roles;
use epmd::{Client, ClientError, NodeInfo, NodeType, ServerConfig, ServerHandle, StopOutcome};
use testkit::{free_port, require_erl, ChildGuard, ErlPeer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long any awaited event may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);
/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(20);
/// How long a command-line client may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A node name no other test (or test process) uses.
fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` every [`POLL`] until it returns `Ok`, for at most [`DEADLINE`]. `Err` carries
/// the last observation, quoted in the panic message on timeout.
async fn wait_until<T, E: Debug, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!("timed out after {DEADLINE:?} waiting for {what}; last observation: {last:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Awaits `fut` for at most [`DEADLINE`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    testkit::within(what, DEADLINE, fut).await
}

/// Our server on loopback, on a port the OS picks (port 0: free by construction).
async fn start_ours(config: ServerConfig) -> (ServerHandle, Client) {
    let server = config
        .port(0)
        .addresses(vec![LOCALHOST])
        .start()
        .await
        .expect("our epmd starts");
    let client = Client::new("127.0.0.1", server.port()).timeout(DEADLINE);
    (server, client)
}

/// The names a daemon lists now.
async fn listed(client: &Client) -> Result<Vec<(String, u16)>, String> {
    client
        .names()
        .await
        .map(|n| n.nodes)
        .map_err(|e| e.to_string())
}

/// Waits until `name` is no longer listed nor found by `client`'s daemon.
async fn wait_unregistered(client: &Client, name: &str) {
    wait_until(&format!("{name} to be unregistered"), || async {
        let names = listed(client).await?;
        let found = client.port_please(name).await.map_err(|e| e.to_string())?;
        if names.iter().any(|(n, _)| n == name) || found.is_some() {
            Err(format!(
                "still there: names {names:?}, port_please {found:?}"
            ))
        } else {
            Ok(())
        }
    })
    .await
}

/// Waits until a freshly started daemon process answers NAMES, or returns `false` when it
/// exits first (its port was taken between [`free_port`] and its bind: a daemon program takes
/// a port number, not a bound socket, so this race stays and [`Daemon::start`] retries).
async fn daemon_came_up(guard: &mut ChildGuard, port: u16) -> bool {
    let client = Client::new("127.0.0.1", port).timeout(Duration::from_secs(2));
    let deadline = Instant::now() + DEADLINE;
    loop {
        let answered = client.names().await.is_ok();
        // An answer from a port whose daemon has exited came from whoever took the port.
        if let Some(status) = guard.try_wait().expect("try_wait") {
            eprintln!("{} exited before answering ({status})", guard.label());
            return false;
        }
        if answered {
            return true;
        }
        if Instant::now() >= deadline {
            panic!(
                "{} did not answer NAMES on port {port} within {DEADLINE:?}",
                guard.label()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Which daemon program to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Daemon {
    /// OTP's `epmd`.
    Real,
    /// This workspace's `epmd` binary.
    Ours,
}

/// The real `epmd` program (skips or fails, as [`require_erl`] decides, without Erlang/OTP).
fn real_epmd() -> Option<PathBuf> {
    require_erl()?;
    Some(testkit::find_executable("epmd").unwrap_or_else(|| {
        panic!("`erl` is on PATH but OTP's `epmd` is not; interop tests need it")
    }))
}

impl Daemon {
    fn program(self) -> PathBuf {
        match self {
            Daemon::Real => real_epmd().expect("checked by the caller"),
            Daemon::Ours => our_epmd_binary().to_path_buf(),
        }
    }

    /// Runs the daemon in the foreground on a free port (`epmd -port P [ARGS]`), guarded,
    /// and waits until it answers; with a new port when another process took the port first
    /// (at most 5 tries).
    async fn start(self, args: &[&str]) -> (ChildGuard, u16) {
        for _attempt in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(self.program());
            cmd.arg("-port")
                .arg(port.to_string())
                .args(args)
                .env("ERL_EPMD_PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let label = format!("{self:?} epmd daemon on port {port}");
            let mut guard = ChildGuard::spawn(&mut cmd, label).expect("daemon starts");
            if daemon_came_up(&mut guard, port).await {
                return (guard, port);
            }
        }
        panic!("{self:?} epmd did not come up on any of 5 free ports");
    }
}

/// What a command-line client printed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CliOutput {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `PROGRAM -port P ARGS` (with `ERL_EPMD_PORT=P`) to completion, guarded.
fn run_cli(program: &Path, port: u16, args: &[&str]) -> CliOutput {
    let mut cmd = Command::new(program);
    cmd.arg("-port")
        .arg(port.to_string())
        .args(args)
        .env("ERL_EPMD_PORT", port.to_string())
        .env_remove("EPMD_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let label = format!("{} -port {port} {}", program.display(), args.join(" "));
    let mut guard = ChildGuard::spawn(&mut cmd, label.clone()).expect("client starts");
    // The outputs are a few lines: they fit the pipes, so waiting first cannot deadlock.
    let status = guard
        .wait_timeout(CLI_TIMEOUT)
        .expect("wait for the client")
        .unwrap_or_else(|| panic!("`{label}` did not finish within {CLI_TIMEOUT:?}"));
    let mut stdout = String::new();
    let mut stderr = String::new();
    let child = guard.child_mut();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut stdout).expect("read stdout");
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).expect("read stderr");
    }
    CliOutput {
        code: status.code(),
        stdout,
        stderr,
    }
}

/// Runs the real and our command-line client with the same arguments (the real one first)
/// against the daemon on `port` and checks that they print and exit alike, and as `expected`.
async fn both_clients(port: u16, args: &[&str], expected: &CliOutput) {
    for program in [
        real_epmd().expect("checked"),
        our_epmd_binary().to_path_buf(),
    ] {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let shown = format!("{} {}", program.display(), args.join(" "));
        let out = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_cli(&program, port, &args)
        })
        .await
        .expect("client thread");
        assert_eq!(&out, expected, "`{shown}` on port {port}");
    }
}

/// One client's run (see [`both_clients`]) for requests that change the daemon.
async fn one_client(program: PathBuf, port: u16, args: &[&str]) -> CliOutput {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_cli(&program, port, &args)
    })
    .await
    .expect("client thread")
}

fn out(code: i32, stdout: &str) -> CliOutput {
    CliOutput {
        code: Some(code),
        stdout: stdout.to_owned(),
        stderr: String::new(),
    }
}

fn names_output(port: u16, nodes: &[(&str, u16)]) -> CliOutput {
    let mut text = format!("epmd: up and running on port {port} with data:\n");
    for (name, node_port) in nodes {
        text.push_str(&format!("name {name} at port {node_port}\n"));
    }
    out(0, &text)
}

/// Our `epmd` binary, built (once per test process) into the target directory of this test.
fn our_epmd_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // .../target/<profile>/deps/epmd_interop-HASH
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps");
        let target_dir = profile_dir.parent().expect("target dir");
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .expect("profile dir name")
            .to_owned();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "epmd", "--bin", "epmd"])
            .arg("--target-dir")
            .arg(target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit());
        match profile.as_str() {
            "debug" => {}
            "release" => {
                cmd.arg("--release");
            }
            other => {
                cmd.args(["--profile", other]);
            }
        }
        let mut guard = ChildGuard::spawn(&mut cmd, "cargo build -p epmd").expect("cargo starts");
        let status = guard
            .wait_timeout(Duration::from_secs(600))
            .expect("wait for cargo")
            .expect("cargo build -p epmd finished within 10 minutes");
        assert!(status.success(), "cargo build -p epmd failed: {status}");
        let bin = profile_dir.join(format!("epmd{}", std::env::consts::EXE_SUFFIX));
        assert!(bin.is_file(), "{} was not built", bin.display());
        bin
    })
}

/// The line-protocol Erlang peer of test 1, compiled once per test process.
const PEER_SRC: &str = r#"
%% Started by tests/epmd_interop.rs as `erl -sname NAME -noshell -run epmd_interop_peer main`.
%% Prints `ready NODE`, then answers one line per request line:
%%   ping NODE -> pong | pang
%%   names     -> names N1,N2,...   (net_adm:names(), sorted) | error REASON
%%   halt      -> (halts; so does end of input)
-module(epmd_interop_peer).
-export([main/0]).

main() ->
    io:format("ready ~s~n", [node()]),
    loop().

loop() ->
    case io:get_line(standard_io, "") of
        eof -> erlang:halt(0);
        {error, _} -> erlang:halt(1);
        Line ->
            handle(string:lexemes(string:trim(Line), " ")),
            loop()
    end.

handle(["ping", Node]) ->
    io:format("~s~n", [net_adm:ping(list_to_atom(Node))]);
handle(["names"]) ->
    case net_adm:names() of
        {ok, Names} ->
            io:format("names ~s~n", [lists:join(",", lists:sort([N || {N, _} <- Names]))]);
        {error, Reason} ->
            io:format("error ~0p~n", [Reason])
    end;
handle(["halt"]) ->
    erlang:halt(0);
handle(Other) ->
    io:format("error unknown_request ~0p~n", [Other]).
"#;

fn peer_beam_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let src_dir = testkit::unique_temp_dir("epmd_interop_peer_src");
        let src = src_dir.join("epmd_interop_peer.erl");
        std::fs::write(&src, PEER_SRC).expect("write the peer's source");
        testkit::compile_erlang(&src)
    })
}

/// Starts `erl -sname NAME` registering with the EPMD on `epmd_port` (not waiting for it).
fn start_peer(erl: &Path, name: &str, epmd_port: u16) -> ErlPeer {
    ErlPeer::builder(erl, "epmd_interop_peer")
        .code_path(peer_beam_dir())
        .args(["-sname", name, "-setcookie", "epmd_interop_cookie"])
        // Never let erl start an epmd of its own on our port.
        .args(["-start_epmd", "false"])
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .reply_timeout(Duration::from_secs(30))
        .start()
        .expect("erl starts")
}

/// A hostile connection: connects, sends `bytes`, optionally closes its sending side, and
/// returns how long the server took to close the connection (read gives 0 or an error).
async fn send_hostile(port: u16, bytes: &[u8], close_write: bool) -> Duration {
    let mut stream = TcpStream::connect((LOCALHOST, port))
        .await
        .expect("connect");
    let start = Instant::now();
    stream.write_all(bytes).await.expect("write");
    if close_write {
        stream.shutdown().await.expect("shutdown");
    }
    let mut buf = [0u8; 64];
    let n = within(
        &format!("the server to close the connection after {bytes:02x?}"),
        // An error (a reset) closes it as well as an end of file does.
        async { stream.read(&mut buf).await.unwrap_or(0) },
    )
    .await;
    assert_eq!(
        n,
        0,
        "the server answered {:02x?} to hostile input {bytes:02x?}",
        &buf[..n]
    );
    start.elapsed()
}

/// Checks the daemon still serves lookups and NAMES, and still has `victim`.
async fn assert_healthy(client: &Client, server_port: u16, victim: &NodeInfo, after: &str) {
    let found = client
        .port_please(&victim.name)
        .await
        .unwrap_or_else(|e| panic!("PORT_PLEASE2 after {after}: {e}"));
    assert_eq!(found.as_ref(), Some(victim), "lookup after {after}");
    let names = client
        .names()
        .await
        .unwrap_or_else(|e| panic!("NAMES after {after}: {e}"));
    assert_eq!(names.epmd_port, u32::from(server_port), "after {after}");
    assert!(
        names.nodes.contains(&(victim.name.clone(), victim.port)),
        "NAMES after {after}: {names:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Real Erlang nodes with our daemon
// ---------------------------------------------------------------------------------------------

/// Two `erl -sname` nodes register with our (in-process) daemon, find each other through it,
/// and both `net_adm:names()` and OTP's `epmd -names` list them; a node that halts
/// disappears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_nodes_register_and_meet_through_our_daemon() {
    let Some(erl) = require_erl() else { return };
    let epmd_program = real_epmd().expect("checked");
    // All addresses, as erl looks its host name up for net_adm:names().
    let server = ServerConfig::new()
        .port(0)
        .start()
        .await
        .expect("our epmd starts");
    let port = server.port();
    let client = Client::new("127.0.0.1", port).timeout(DEADLINE);

    let (name_a, name_b) = (unique_name("epmd_a"), unique_name("epmd_b"));
    // The blocking peer calls below run on the test's own thread; the server's tasks run on
    // the runtime's worker threads.
    let mut peer_a = start_peer(&erl, &name_a, port);
    let mut peer_b = start_peer(&erl, &name_b, port);
    let node_a = peer_a
        .recv_line()
        .strip_prefix("ready ")
        .map(str::to_owned)
        .expect("peer a says ready");
    let node_b = peer_b
        .recv_line()
        .strip_prefix("ready ")
        .map(str::to_owned)
        .expect("peer b says ready");
    assert!(node_a.starts_with(&format!("{name_a}@")), "{node_a}");
    assert!(node_b.starts_with(&format!("{name_b}@")), "{node_b}");

    // Both registered (distribution started before `ready`), with their real ports.
    let registered = server.registered();
    let port_of = |name: &str| {
        registered
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("{name} is not registered: {registered:?}"))
            .port
    };
    let (port_a, port_b) = (port_of(&name_a), port_of(&name_b));
    for (name, p) in [(&name_a, port_a), (&name_b, port_b)] {
        let info = client.port_please(name).await.expect("lookup").expect(name);
        assert_eq!((info.port, info.node_type), (p, NodeType::Normal));
        assert_eq!((info.high_version, info.low_version), (6, 5));
    }

    assert_eq!(peer_b.request(&format!("ping {node_a}")), "pong");
    assert_eq!(peer_a.request(&format!("ping {node_b}")), "pong");

    let mut both = [name_a.clone(), name_b.clone()];
    both.sort();
    assert_eq!(peer_a.request("names"), format!("names {}", both.join(",")));

    let real_names = run_cli(&epmd_program, port, &["-names"]);
    assert_eq!((real_names.code, real_names.stderr.as_str()), (Some(0), ""));
    let mut lines: Vec<&str> = real_names.stdout.lines().collect();
    lines.sort();
    let mut expected = vec![
        format!("epmd: up and running on port {port} with data:"),
        format!("name {name_a} at port {port_a}"),
        format!("name {name_b} at port {port_b}"),
    ];
    expected.sort();
    assert_eq!(lines, expected, "OTP's epmd -names: {real_names:?}");

    // Node a halts: its name goes, b stays.
    peer_a.send_line("halt");
    let status = peer_a.shutdown(DEADLINE).expect("peer a ends");
    assert!(status.success(), "peer a: {status}");
    wait_unregistered(&client, &name_a).await;
    assert_eq!(
        listed(&client).await.expect("names"),
        vec![(name_b.clone(), port_b)]
    );
    assert_eq!(peer_b.request("names"), format!("names {name_b}"));
    assert_eq!(
        run_cli(&epmd_program, port, &["-names"]),
        names_output(port, &[(&name_b, port_b)])
    );
    assert_eq!(peer_b.request(&format!("ping {node_a}")), "pang");

    // Killed rather than halted: its name goes too.
    drop(peer_b);
    wait_unregistered(&client, &name_b).await;
}

// ---------------------------------------------------------------------------------------------
// 2. Our client against the real daemon
// ---------------------------------------------------------------------------------------------

/// `epmd::Client` against OTP's epmd: register, look up, list, roles, refusal of a taken
/// name, unregistering on drop, a new creation on re-registering, and KILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_against_real_epmd() {
    if real_epmd().is_none() {
        return;
    }
    let (mut daemon, port) = Daemon::Real.start(&[]).await;
    let client = Client::new("127.0.0.1", port).timeout(DEADLINE);

    let name = unique_name("rs_client");
    let mut info = NodeInfo::new(name.as_str(), 4711);
    info.extra = encode_roles(&["httpd", "cache"]).expect("roles");
    let registration = client.register(info.clone()).await.expect("register");
    let first_creation = registration.creation();
    assert_ne!(first_creation, 0);

    assert_eq!(
        client.port_please(&name).await.expect("lookup"),
        Some(info.clone())
    );
    assert_eq!(
        client.port_please("no_such_node").await.expect("lookup"),
        None
    );
    let names = client.names().await.expect("names");
    assert_eq!(names.epmd_port, u32::from(port));
    assert_eq!(names.nodes, vec![(name.clone(), 4711)]);

    // Real epmd returns EXTRA unchanged, so roles work against it.
    assert_eq!(
        client.nodes_with_role("httpd").await.expect("roles"),
        vec![info.clone()]
    );
    assert_eq!(
        client.nodes_with_role("cache").await.expect("roles"),
        vec![info.clone()]
    );
    assert!(client
        .nodes_with_role("db")
        .await
        .expect("roles")
        .is_empty());

    match client.register(NodeInfo::new(name.as_str(), 4712)).await {
        Err(ClientError::NameTaken(n)) => assert_eq!(n, name),
        other => panic!("registering a taken name: {other:?}"),
    }
    assert!(!client.kill().await.expect("kill"), "kill with a live node");

    drop(registration);
    wait_unregistered(&client, &name).await;

    let again = client.register(info.clone()).await.expect("register again");
    assert_ne!(again.creation(), 0);
    assert_ne!(
        again.creation(),
        first_creation,
        "a new incarnation, a new creation"
    );
    drop(again);
    wait_unregistered(&client, &name).await;

    assert!(client.kill().await.expect("kill"), "kill with no nodes");
    let status = daemon
        .wait_timeout(DEADLINE)
        .expect("wait")
        .expect("real epmd exits after KILL");
    assert!(status.success(), "real epmd after KILL: {status}");
}

// ---------------------------------------------------------------------------------------------
// 3. Our command line against both daemons, compared with OTP's
// ---------------------------------------------------------------------------------------------

/// `epmd -names`, `-kill` and `-stop` from OTP's client and ours print and exit alike against
/// a strict and a relaxed daemon of `kind`.
async fn cli_modes_against(kind: Daemon) {
    let client_real = real_epmd().expect("checked");
    let client_ours = our_epmd_binary().to_path_buf();

    // A strict daemon.
    let (mut strict, port) = kind.start(&[]).await;
    let client = Client::new("127.0.0.1", port).timeout(DEADLINE);
    both_clients(port, &["-names"], &names_output(port, &[])).await;

    let name = unique_name("cli");
    let registration = client
        .register(NodeInfo::new(name.as_str(), 4321))
        .await
        .expect("register");
    both_clients(port, &["-names"], &names_output(port, &[(&name, 4321)])).await;
    both_clients(
        port,
        &["-kill"],
        &out(1, "Killing not allowed - living nodes in database.\n"),
    )
    .await;
    // A strict daemon closes the connection without an answer.
    both_clients(
        port,
        &["-stop", &name],
        &out(1, "epmd: local epmd responded with <>\n"),
    )
    .await;
    assert!(client.port_please(&name).await.expect("lookup").is_some());

    drop(registration);
    wait_unregistered(&client, &name).await;
    assert_eq!(
        one_client(client_real.clone(), port, &["-kill"]).await,
        out(0, "Killed\n")
    );
    let status = strict
        .wait_timeout(DEADLINE)
        .expect("wait")
        .unwrap_or_else(|| panic!("{kind:?} epmd still runs after -kill"));
    assert!(status.success(), "{kind:?} epmd after -kill: {status}");

    // A relaxed daemon.
    let (mut relaxed, port) = kind.start(&["-relaxed_command_check"]).await;
    let client = Client::new("127.0.0.1", port).timeout(DEADLINE);
    both_clients(port, &["-stop", "no_such_node"], &out(0, "NOEXIST\n")).await;
    for program in [&client_real, &client_ours] {
        let name = unique_name("cli_stop");
        let mut registration = client
            .register(NodeInfo::new(name.as_str(), 4322))
            .await
            .expect("register");
        assert_eq!(
            one_client(program.clone(), port, &["-stop", &name]).await,
            out(0, "STOPPED\n"),
            "{} -stop",
            program.display()
        );
        within(
            "the stopped node's connection to close",
            registration.closed(),
        )
        .await;
        wait_unregistered(&client, &name).await;
    }
    // Relaxed: KILL is allowed with living nodes.
    let _living = client
        .register(NodeInfo::new(unique_name("cli_live").as_str(), 4323))
        .await
        .expect("register");
    assert_eq!(
        one_client(client_ours.clone(), port, &["-kill"]).await,
        out(0, "Killed\n")
    );
    let status = relaxed
        .wait_timeout(DEADLINE)
        .expect("wait")
        .unwrap_or_else(|| panic!("relaxed {kind:?} epmd still runs after -kill"));
    assert!(
        status.success(),
        "relaxed {kind:?} epmd after -kill: {status}"
    );

    // Nothing listens there any more.
    let gone = CliOutput {
        code: Some(1),
        stdout: String::new(),
        stderr: "epmd: Cannot connect to local epmd\n".into(),
    };
    for args in [&["-names"][..], &["-kill"], &["-stop", "x"]] {
        both_clients(port, args, &gone).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_modes_against_real_daemon() {
    if real_epmd().is_none() {
        return;
    }
    cli_modes_against(Daemon::Real).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_modes_against_our_daemon_binary() {
    if real_epmd().is_none() {
        return;
    }
    cli_modes_against(Daemon::Ours).await;
}

// ---------------------------------------------------------------------------------------------
// 4. Our server: registrations and hostile input
// ---------------------------------------------------------------------------------------------

/// Creations are non-zero and change per incarnation, taken names are refused, NAMES echoes
/// the real port, the roles in EXTRA come back unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_registrations() {
    let (server, client) = start_ours(ServerConfig::new()).await;
    let name = unique_name("reg");
    let mut info = NodeInfo::new(name.as_str(), 6000);
    info.extra = encode_roles(&["db"]).expect("roles");

    let first = client.register(info.clone()).await.expect("register");
    assert_ne!(first.creation(), 0);
    match client.register(NodeInfo::new(name.as_str(), 6001)).await {
        Err(ClientError::NameTaken(n)) => assert_eq!(n, name),
        other => panic!("registering a taken name: {other:?}"),
    }
    // The refused attempt changed nothing.
    assert_eq!(
        client.port_please(&name).await.expect("lookup"),
        Some(info.clone())
    );
    let names = client.names().await.expect("names");
    assert_eq!(names.epmd_port, u32::from(server.port()));
    assert_eq!(names.nodes, vec![(name.clone(), 6000)]);
    assert_eq!(
        client.nodes_with_role("db").await.expect("roles"),
        vec![info.clone()]
    );

    let mut creations = vec![first.creation()];
    drop(first);
    for _ in 0..3 {
        wait_unregistered(&client, &name).await;
        let next = client.register(info.clone()).await.expect("register again");
        assert_ne!(next.creation(), 0);
        assert!(
            !creations.contains(&next.creation()),
            "creation {} repeats {creations:?}",
            next.creation()
        );
        creations.push(next.creation());
    }
}

/// Malformed, oversize, truncated and stalled requests cost nothing but their own connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_survives_hostile_input() {
    let packet_timeout = Duration::from_millis(200);
    let (server, client) = start_ours(ServerConfig::new().packet_timeout(packet_timeout)).await;
    let port = server.port();
    let mut victim = NodeInfo::new(unique_name("victim").as_str(), 5555);
    victim.extra = Bytes::from_static(b"opaque\x00\xffextra");
    let _registration = client.register(victim.clone()).await.expect("register");
    assert_healthy(&client, port, &victim, "registering").await;

    // ALIVE2_REQ of a 13-byte body whose name length (200) runs past it.
    let alive2_past_body = vec![0, 13, 120, 0, 1, 77, 0, 0, 6, 0, 6, 0, 200, b'a', 0];
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("length 0xFFFF", vec![0xff, 0xff, 122, b'x'], false),
        ("length 1022", vec![0x03, 0xfe, 122], false),
        ("length 0", vec![0, 0], false),
        (
            "a truncated request, then close",
            vec![0, 10, 122, b'a'],
            true,
        ),
        ("only half a length, then close", vec![0], true),
        ("an unknown tag", vec![0, 1, 0xee], false),
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        ("binary garbage", (0..=255u8).rev().collect(), false),
        ("ALIVE2 with a name past its body", alive2_past_body, false),
        ("ALIVE2 too short", vec![0, 3, 120, 0, 1], false),
        ("PORT_PLEASE2 with no name", vec![0, 1, 122], false),
        (
            "PORT_PLEASE2 with invalid UTF-8",
            vec![0, 3, 122, 0xff, 0xfe],
            false,
        ),
    ];
    for (what, bytes, close_write) in &cases {
        send_hostile(port, bytes, *close_write).await;
        assert_healthy(&client, port, &victim, what).await;
    }

    // A client that sends one byte and never finishes is closed after the packet timeout.
    let took = send_hostile(port, &[0], false).await;
    assert!(
        took >= packet_timeout.mul_f32(0.75),
        "closed after {took:?}, before the packet timeout {packet_timeout:?}"
    );
    assert_healthy(&client, port, &victim, "a stalled request").await;

    // The same, mid-request, while well-behaved clients are served meanwhile.
    let mut stalled = TcpStream::connect((LOCALHOST, port))
        .await
        .expect("connect");
    let mut partial = BytesMut::new();
    Request::PortPlease2(victim.name.clone()).encode(&mut partial);
    stalled.write_all(&partial[..4]).await.expect("write");
    for _ in 0..5 {
        assert_healthy(&client, port, &victim, "a stalled request, meanwhile").await;
    }
    let mut buf = [0u8; 16];
    let n = within("the stalled connection to close", stalled.read(&mut buf))
        .await
        .unwrap_or(0);
    assert_eq!(n, 0, "a stalled request got an answer");
    assert_healthy(&client, port, &victim, "a stalled request").await;
}

/// Idle connections beyond `max_connections` push out the oldest idle ones; lookups and
/// registered nodes are not affected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_limits_idle_connections() {
    const MAX: usize = 8;
    const IDLE: usize = 12;
    let (server, client) = start_ours(
        ServerConfig::new()
            .max_connections(MAX)
            .packet_timeout(Duration::from_secs(60)),
    )
    .await;
    let port = server.port();
    let victim = NodeInfo::new(unique_name("limited").as_str(), 5556);
    let _registration = client.register(victim.clone()).await.expect("register");

    let mut idle = Vec::new();
    for _ in 0..IDLE {
        idle.push(
            TcpStream::connect((LOCALHOST, port))
                .await
                .expect("connect"),
        );
    }
    // The server accepts in connection order: the first IDLE - MAX are pushed out.
    for (i, stream) in idle.iter_mut().take(IDLE - MAX).enumerate() {
        let mut buf = [0u8; 8];
        let n = within(
            &format!("idle connection {i} to be closed"),
            stream.read(&mut buf),
        )
        .await
        .unwrap_or(0);
        assert_eq!(n, 0, "idle connection {i} got data");
    }
    // Requests are served next to the idle connections. Each new connection pushes out the
    // oldest idle one only while the table is full, so the first request pushes out one more
    // and the MAX - 1 newest idle connections stay.
    for i in 0..2 * MAX {
        assert_healthy(&client, port, &victim, &format!("request {i} at the limit")).await;
    }
    let pushed_out = IDLE - MAX + 1;
    for (i, stream) in idle.iter_mut().enumerate().take(pushed_out) {
        let mut buf = [0u8; 8];
        let n = within(
            &format!("idle connection {i} to be closed"),
            stream.read(&mut buf),
        )
        .await
        .unwrap_or(0);
        assert_eq!(n, 0, "idle connection {i} got data");
    }
    for (i, stream) in idle.iter().enumerate().skip(pushed_out) {
        let mut buf = [0u8; 8];
        match stream.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("idle connection {i} should still be open: {other:?}"),
        }
    }
    // The registered node is not an idle connection: never pushed out.
    assert_eq!(server.registered(), vec![victim]);
}

// ---------------------------------------------------------------------------------------------
// 5. STOP on our daemon
// ---------------------------------------------------------------------------------------------

/// With `-relaxed_command_check`, STOP unregisters a node and closes its connection; without
/// it, STOP is refused and the node stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_server_stop_request() {
    let (_strict, strict_client) = start_ours(ServerConfig::new()).await;
    let name = unique_name("stop_strict");
    let _kept = strict_client
        .register(NodeInfo::new(name.as_str(), 7000))
        .await
        .expect("register");
    assert!(matches!(
        strict_client.stop(&name).await,
        Err(ClientError::NoReply)
    ));
    assert!(strict_client
        .port_please(&name)
        .await
        .expect("lookup")
        .is_some());

    let (_relaxed, client) = start_ours(ServerConfig::new().relaxed_command_check(true)).await;
    let name = unique_name("stop_relaxed");
    let mut registration = client
        .register(NodeInfo::new(name.as_str(), 7001))
        .await
        .expect("register");
    let first_creation = registration.creation();
    assert_eq!(
        client.stop(&name).await.expect("stop"),
        StopOutcome::Stopped
    );
    within("the stopped registration to close", registration.closed()).await;
    assert_eq!(client.port_please(&name).await.expect("lookup"), None);
    assert_eq!(
        client.stop(&name).await.expect("stop"),
        StopOutcome::NoSuchNode
    );

    // The name is free again, for a new incarnation.
    let again = client
        .register(NodeInfo::new(name.as_str(), 7002))
        .await
        .expect("register after STOP");
    assert_ne!(again.creation(), first_creation);
    assert_eq!(
        client
            .port_please(&name)
            .await
            .expect("lookup")
            .map(|n| n.port),
        Some(7002)
    );
}
