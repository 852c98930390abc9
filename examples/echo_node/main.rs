//! A node that Erlang nodes can connect to, ping, send to (`echo`), call (`kv`) and rpc
//! (`echo_node:add/2`, `echo_node:call_back/4`); the services are in `services.rs`.
//! `cargo run --release --example echo_node -- --help` lists the options (see [`USAGE`]).
//!
//! The node is visible unless `--hidden`. Its `echo` actor is in group `echo` of `pg` scope
//! `pg`; `--connect` connects to other nodes once the node runs (a bare name gets this host's
//! short name; a node that cannot be reached is reported and the node runs on), and
//! `--global NAME` then registers `echo` under the `global` name `NAME`. `--roles` announces
//! roles in EPMD. `--metrics ADDR` serves Prometheus metrics at `http://ADDR/metrics`. `--phoenix-pubsub NAME` joins the Elixir app's Phoenix.PubSub `NAME`,
//! subscribes to topic `"echo"` and, for each message `M` published there, broadcasts
//! `{echoed, M}` on topic `"echo:reply"`.
//!
//! Prints `ready NAME@HOST` once it accepts connections, then `up NODE` / `down NODE REASON`
//! lines as nodes come and go. `init:stop()` from another node (`rpc:call`, `erl_call`,
//! `nodectl shutdown`) stops it gracefully: it prints `stopped STATUS` and exits with that
//! status (0 for `init:stop/0`). EPMD is found at `ERL_EPMD_PORT` (or 4369); when none answers,
//! the node runs one inside its own process.

use std::path::PathBuf;
use std::process::ExitCode;

use node_server::{NodeConfig, NodeEvent, TlsConfig};
use ractor::Actor;

mod services;
use services::{register_functions, Echo, Kv, PubSubEcho};

/// Prints a status line; a closed stdout (nobody listening any more) is not an error.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

/// What `--help` prints.
const USAGE: &str = "\
usage: echo_node [OPTIONS]

A node of ours that Erlang and Elixir nodes can talk to: `echo` ({From, Msg} -> From ! Msg),
`kv` (gen_server: {put,K,V} | {get,K} | {delete,K}), rpc echo_node:add/2 and friends.

options (defaults in brackets):
  --name NAME            node name, bare (this host's short name is added) or NAME@HOST [echo]
  --cookie COOKIE        the cookie [ERLANG_COOKIE, else ~/.erlang.cookie, created if missing]
  --hidden | --visible   a hidden node, or a visible one as `erl -sname` starts [--visible]
  --connect NODE         connect to NODE once running; repeatable; a bare name gets this
                         host's short name; a failure is printed and the node runs on [none]
  --global NAME          register `echo` as the global name NAME after connecting [none]
  --roles A,B            roles announced in EPMD's extra field [none]
  --phoenix-pubsub NAME  join the Elixir PubSub NAME (e.g. MyApp.PubSub): subscribe to topic
                         \"echo\" and broadcast {echoed, M} on \"echo:reply\" for each M [off]
  --metrics ADDR         serve Prometheus metrics at http://ADDR/metrics, ADDR as IP:PORT
                         (port 0: a free port; the address is printed) [off]
  --sources-key FILE     accept WebAssembly modules from other nodes (nodectl load --key) that
                         carry HMAC-SHA256 with this key: the file's contents, a trailing
                         newline trimmed, 16 bytes at least [modules from other nodes refused]
  --tls-cert F --tls-key F [--tls-ca F]
                         distribution over TLS with this certificate and key (PEM); with
                         --tls-ca, peers must present a certificate signed by it [plain TCP]
  -h, --help             this text

environment: ERL_EPMD_PORT (EPMD's port) [4369]; RUST_LOG (log filter) [warn]

prints `ready NODE` once it accepts connections (then `metrics http://ADDR/metrics` with
--metrics), then `up NODE` / `down NODE REASON`;
stops on Ctrl-C or init:stop() from another node (prints `stopped STATUS`).
";

struct Args {
    name: String,
    cookie: Option<String>,
    hidden: bool,
    global: Option<String>,
    roles: Vec<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    connect: Vec<String>,
    phoenix_pubsub: Option<String>,
    metrics: Option<std::net::SocketAddr>,
    sources_key: Option<PathBuf>,
}

/// What the command line asks for: a node to run, or the help text.
enum Command {
    Run(Box<Args>),
    Help,
}

fn parse_args(argv: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = Args {
        name: "echo".into(),
        cookie: None,
        hidden: false,
        global: None,
        roles: Vec::new(),
        tls_cert: None,
        tls_key: None,
        tls_ca: None,
        connect: Vec::new(),
        phoenix_pubsub: None,
        metrics: None,
        sources_key: None,
    };
    let mut it = argv.into_iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--name" => args.name = value()?,
            "--cookie" => args.cookie = Some(value()?),
            "--hidden" => args.hidden = true,
            "--visible" => args.hidden = false,
            "--tls-cert" => args.tls_cert = Some(value()?.into()),
            "--tls-key" => args.tls_key = Some(value()?.into()),
            "--tls-ca" => args.tls_ca = Some(value()?.into()),
            "--connect" => args.connect.push(value()?),
            "--global" => args.global = Some(value()?),
            "--roles" => args.roles = value()?.split(',').map(str::to_owned).collect(),
            "--phoenix-pubsub" => args.phoenix_pubsub = Some(value()?),
            "--sources-key" => args.sources_key = Some(value()?.into()),
            "--metrics" => {
                let addr = value()?;
                args.metrics = Some(addr.parse().map_err(|_| {
                    format!(
                        "--metrics {addr:?} is not an address: give IP:PORT, as \
                         127.0.0.1:9100 or [::1]:0"
                    )
                })?);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        return Err("--tls-cert and --tls-key go together".into());
    }
    Ok(Command::Run(Box::new(args)))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs sent to a file stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(a)) => a,
        Ok(Command::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("echo_node: {e}\n(echo_node --help lists the options)");
            return ExitCode::from(2);
        }
    };
    let mut config = NodeConfig::new(&args.name)
        .hidden(args.hidden)
        .roles(args.roles.clone());
    if args.phoenix_pubsub.is_some() {
        config = config.phoenix_pubsub();
    }
    if let Some(cookie) = &args.cookie {
        config = config.cookie(cookie);
    }
    if let Some(addr) = args.metrics {
        config = config.metrics_listen(addr);
    }
    if let Some(path) = &args.sources_key {
        let authority = node_server::sources::read_key(path)
            .map_err(|e| e.to_string())
            .and_then(|key| {
                node_server::sources::SourceAuthority::hmac_key(key).map_err(|e| e.to_string())
            });
        match authority {
            Ok(authority) => config = config.source_authority(authority),
            Err(e) => {
                eprintln!("echo_node: --sources-key {}: {e}", path.display());
                return ExitCode::from(2);
            }
        }
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        match TlsConfig::from_pem_files(cert, key, args.tls_ca.as_deref()) {
            Ok(tls) => config = config.tls(tls),
            Err(e) => {
                eprintln!("echo_node: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let node = match config.start().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("echo_node: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut events = node.subscribe();
    let (echo, _) = match Actor::spawn(None, Echo, node.clone()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_node: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = node.register("echo", &echo) {
        eprintln!("echo_node: {e}");
        return ExitCode::FAILURE;
    }
    let (kv, _) = match Actor::spawn(None, Kv, ()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_node: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = node.register("kv", &kv) {
        eprintln!("echo_node: {e}");
        return ExitCode::FAILURE;
    }
    register_functions(&node);
    // `echo` is in group `echo` of scope `pg` on every node it is connected to.
    node.groups().join("echo", &echo);
    for peer in &args.connect {
        let peer = node_server::config::full_node_name(peer);
        if let Err(e) = node_server::client_connect(&node, &peer).await {
            // The node runs on: the peer may come later and connect to us.
            eprintln!("echo_node: cannot connect to {peer}: {e}");
        }
    }
    if let Some(name) = &args.phoenix_pubsub {
        let started = match node.phoenix_pubsub(name).await {
            Ok(pubsub) => Actor::spawn(None, PubSubEcho, pubsub)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = started {
            eprintln!("echo_node: cannot join Phoenix.PubSub {name}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Some(name) = &args.global {
        if let Err(e) = node.register_global(name, &echo).await {
            eprintln!("echo_node: cannot register {name} globally: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!("ready {}", node.name());
    if let Some(addr) = node.metrics_addr() {
        say(format_args!("metrics http://{addr}/metrics"));
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            // init:stop() from another node (erl_call, rpc:call, `nodectl shutdown`).
            status = node.wait_stopped() => {
                say(format_args!("stopped {status}"));
                return ExitCode::from(u8::try_from(status).unwrap_or(1));
            }
            ev = events.recv() => match ev {
                Ok(NodeEvent::Up { node, .. }) => say(format_args!("up {node}")),
                Ok(NodeEvent::Down { node, reason }) => say(format_args!("down {node} {reason}")),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
        }
    }
    node.shutdown().await;
    ExitCode::SUCCESS
}
