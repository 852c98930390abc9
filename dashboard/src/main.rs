//! `node_dashboard`: serves the cluster dashboard until Ctrl-C.
//!
//! ```text
//! node_dashboard [--listen ADDR:PORT] [--cookie COOKIE] [--epmd-host HOST] [--epmd-port PORT]
//!                [--refresh-ms MS] [--name NODE_NAME] [--node-host HOST]
//! ```
#![forbid(unsafe_code)]

use std::process::ExitCode;
use std::time::Duration;

use node_dashboard::DashboardConfig;

const USAGE: &str = "\
usage: node_dashboard [options]

Serves a live web page of every node in EPMD: connections, registered names, pg groups,
message rates.

options:
  --listen ADDR:PORT   where to serve the page (default 127.0.0.1:8080)
  --cookie COOKIE      the cluster's cookie (default: ~/.erlang.cookie)
  --epmd-host HOST     EPMD's host (default localhost)
  --epmd-port PORT     EPMD's port (default $ERL_EPMD_PORT or 4369)
  --refresh-ms MS      polling interval (default 500)
  --name NAME          the dashboard's own hidden node name (default dashboard_PID_0)
  --node-host HOST     host part of the watched nodes' names (default: this host's short name)
  -h, --help           this text
";

fn parse(args: &[String]) -> Result<DashboardConfig, String> {
    let mut config = DashboardConfig::new();
    let mut epmd_host = None;
    let mut epmd_port = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let v = value()?;
                config = config.listen(v.parse().map_err(|e| format!("--listen {v}: {e}"))?);
            }
            "--cookie" => config = config.cookie(value()?),
            "--epmd-host" => epmd_host = Some(value()?),
            "--epmd-port" => {
                let v = value()?;
                epmd_port = Some(
                    v.parse::<u16>()
                        .map_err(|e| format!("--epmd-port {v}: {e}"))?,
                );
            }
            "--refresh-ms" => {
                let v = value()?;
                let ms: u64 = v.parse().map_err(|e| format!("--refresh-ms {v}: {e}"))?;
                config = config.refresh(Duration::from_millis(ms));
            }
            "--name" => config = config.node_name(value()?),
            "--node-host" => config = config.node_host(value()?),
            other => return Err(format!("unknown option {other}")),
        }
    }
    if epmd_host.is_some() || epmd_port.is_some() {
        config = config.epmd(
            epmd_host.unwrap_or_else(|| "localhost".into()),
            epmd_port.unwrap_or_else(|| epmd::env_port().unwrap_or(epmd::DEFAULT_PORT)),
        );
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs sent to a file stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("node_dashboard: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let dashboard = match node_dashboard::serve(config).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("node_dashboard: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "dashboard at {} (node {}); Ctrl-C stops it",
        dashboard.url(),
        dashboard.node_name()
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("node_dashboard: cannot wait for Ctrl-C: {e}");
    }
    dashboard.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_options() {
        let ok = parse(&args(&[
            "--listen",
            "127.0.0.1:9000",
            "--cookie",
            "c",
            "--epmd-port",
            "4400",
            "--refresh-ms",
            "250",
        ]));
        assert!(ok.is_ok());
        assert!(parse(&args(&["--listen", "nowhere"])).is_err());
        assert!(parse(&args(&["--cookie"])).is_err());
        assert!(parse(&args(&["--bogus"])).is_err());
        assert!(parse(&args(&["--epmd-port", "70000"])).is_err());
    }
}
