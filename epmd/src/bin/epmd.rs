//! `epmd`: the port mapper daemon, with real epmd's command line.
//!
//! ```text
//! epmd [-d|-debug] [-address LIST] [-port N] [-daemon] [-relaxed_command_check]
//!      [-packet_timeout SECONDS]
//! epmd [-d|-debug] [-port N] -names | -kill | -stop NAME
//! ```
//!
//! `ERL_EPMD_PORT` and `ERL_EPMD_ADDRESS` are read as real epmd reads them; flags win.

use std::process::ExitCode;
use std::time::Duration;

use epmd::{Client, ClientError, ServerConfig, StopOutcome};

#[derive(Debug, Default)]
struct Args {
    debug: u8,
    port: Option<u16>,
    addresses: Option<String>,
    daemon: bool,
    relaxed: bool,
    packet_timeout: Option<u64>,
    command: Option<Command>,
}

#[derive(Debug)]
enum Command {
    Names,
    Kill,
    Stop(String),
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: epmd [-d|-debug] [-address LIST] [-port No] [-daemon] [-relaxed_command_check] \
         [-packet_timeout Seconds]\n       epmd [-d|-debug] [-port No] [-names|-kill|-stop name]"
    );
    ExitCode::FAILURE
}

fn parse_args() -> Option<Args> {
    let mut args = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-d" | "-debug" => args.debug += 1,
            "-port" => args.port = Some(it.next()?.parse().ok()?),
            "-address" => args.addresses = Some(it.next()?),
            "-daemon" | "-detached" => args.daemon = true,
            "-relaxed_command_check" => args.relaxed = true,
            "-packet_timeout" => args.packet_timeout = Some(it.next()?.parse().ok()?),
            "-names" => args.command = Some(Command::Names),
            "-kill" => args.command = Some(Command::Kill),
            "-stop" => args.command = Some(Command::Stop(it.next()?)),
            // Accepted for compatibility; this daemon has no use for them.
            "-delay_accept" | "-delay_write" => {
                it.next()?;
            }
            "-systemd" => {}
            _ => return None,
        }
    }
    Some(args)
}

fn main() -> ExitCode {
    let Some(mut args) = parse_args() else {
        return usage();
    };
    let level = if args.debug > 0 { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EPMD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if args.daemon && std::env::var_os("EPMD_RS_DETACHED").is_none() {
        return detach();
    }

    // One thread, as OTP's epmd: a request is a few microseconds of work, and on a small
    // machine handing connections between worker threads costs more CPU than it saves
    // (`epmd_bench`: 1.15-1.21x OTP's CPU per lookup on two worker threads, 1.01-1.03x on one).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("epmd: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        match args.command.take() {
            Some(command) => client_mode(&args, command).await,
            None => daemon_mode(&args).await,
        }
    })
}

/// Starts this program again in its own process group with no terminal, as `-daemon` asks.
fn detach() -> ExitCode {
    use std::os::unix::process::CommandExt;
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("epmd: cannot find own executable to detach");
        return ExitCode::FAILURE;
    };
    let spawned = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("EPMD_RS_DETACHED", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn();
    match spawned {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("epmd: cannot detach: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn daemon_mode(args: &Args) -> ExitCode {
    let mut config = ServerConfig::from_env().relaxed_command_check(args.relaxed);
    if let Some(port) = args.port {
        config = config.port(port);
    }
    if let Some(list) = &args.addresses {
        match epmd::server::parse_address_list(list) {
            Ok(addrs) => config = config.addresses(addrs),
            Err(e) => {
                eprintln!("epmd: invalid address list {list:?}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(secs) = args.packet_timeout {
        config = config.packet_timeout(Duration::from_secs(secs));
    }
    let server = match config.start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("epmd: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    tokio::select! {
        _ = server.stopped() => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: stopping"),
    }
    server.stop().await;
    ExitCode::SUCCESS
}

async fn client_mode(args: &Args, command: Command) -> ExitCode {
    let port = args
        .port
        .or_else(epmd::env_port)
        .unwrap_or(epmd::DEFAULT_PORT);
    let client = Client::new("localhost", port);
    let cannot_connect = |e: ClientError| {
        tracing::debug!(error = %e, "request failed");
        // Real epmd writes this one to stderr.
        eprintln!("epmd: Cannot connect to local epmd");
        ExitCode::FAILURE
    };
    match command {
        Command::Names => match client.names().await {
            Ok(names) => {
                println!(
                    "epmd: up and running on port {} with data:",
                    names.epmd_port
                );
                print!("{}", names.text);
                ExitCode::SUCCESS
            }
            Err(e) => cannot_connect(e),
        },
        Command::Kill => match client.kill().await {
            Ok(true) => {
                println!("Killed");
                ExitCode::SUCCESS
            }
            Ok(false) => {
                println!("Killing not allowed - living nodes in database.");
                ExitCode::FAILURE
            }
            Err(ClientError::NoReply) => {
                println!("epmd: local epmd responded with <>");
                ExitCode::FAILURE
            }
            Err(e) => cannot_connect(e),
        },
        Command::Stop(name) => match client.stop(&name).await {
            Ok(StopOutcome::Stopped) => {
                println!("STOPPED");
                ExitCode::SUCCESS
            }
            Ok(StopOutcome::NoSuchNode) => {
                // Real epmd exits 0 on any 7-byte answer, NOEXIST included.
                println!("NOEXIST");
                ExitCode::SUCCESS
            }
            Err(ClientError::NoReply) => {
                println!("epmd: local epmd responded with <>");
                ExitCode::FAILURE
            }
            Err(e) => cannot_connect(e),
        },
    }
}
