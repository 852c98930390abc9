//! A node that Erlang nodes can connect to, ping, send to (`echo`), call (`kv`) and rpc
//! (`echo_node:add/2`, `echo_node:call_back/4`); the services are in `services.rs`.
//!
//! ```text
//! cargo run --release --example echo_node -- --name NAME --cookie COOKIE [--hidden|--visible]
//!     [--tls-cert F --tls-key F [--tls-ca F]] [--connect NODE]... [--global NAME] [--roles A,B]
//! ```
//!
//! The node is visible unless `--hidden`. Its `echo` actor is in group `echo` of `pg` scope
//! `pg`; `--connect` connects to other nodes once the node runs, and `--global NAME` then
//! registers `echo` under the `global` name `NAME`. `--roles` announces roles in EPMD.
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
use services::{register_functions, Echo, Kv};

/// Prints a status line; a closed stdout (nobody listening any more) is not an error.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

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
}

fn parse_args() -> Result<Args, String> {
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
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
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
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_node: {e}\nusage: echo_node --name NAME --cookie COOKIE [--hidden|--visible] [--tls-cert F --tls-key F [--tls-ca F]] [--connect NODE]... [--global NAME] [--roles A,B]");
            return ExitCode::from(2);
        }
    };
    let mut config = NodeConfig::new(&args.name)
        .hidden(args.hidden)
        .roles(args.roles.clone());
    if let Some(cookie) = &args.cookie {
        config = config.cookie(cookie);
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
        if let Err(e) = node_server::client_connect(&node, peer).await {
            eprintln!("echo_node: cannot connect to {peer}: {e}");
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
