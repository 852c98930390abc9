//! The `nodectl` binary: see the crate docs of [`nodectl`].

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use nodectl::cli::{run, Cli};
use nodectl::report::error_json;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The node's own logs only when asked for (RUST_LOG), on stderr.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            // Colour codes only on a terminal: logs sent to a file stay plain text.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nodectl: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(&cli));
    // Connections are closed; don't wait for stray tasks.
    runtime.shutdown_background();
    let mut out = std::io::stdout().lock();
    let error = match result {
        Ok(report) => {
            let text = if cli.json {
                report.json()
            } else {
                report.human()
            };
            if !text.is_empty() {
                let _ = writeln!(out, "{text}");
            }
            report.failure()
        }
        Err(e) => Some(e),
    };
    match error {
        None => ExitCode::SUCCESS,
        Some(e) => {
            if cli.json {
                // A report with failures inside was printed already.
                if !matches!(e, nodectl::CtlError::Partial { .. }) {
                    let _ = writeln!(out, "{}", error_json(&e));
                }
            } else if let nodectl::CtlError::Eval(text) = &e {
                // As the Erlang shell prints it, without nodectl's prefix.
                eprintln!("{text}");
            } else {
                eprintln!("nodectl: {e}");
            }
            ExitCode::from(e.exit_code())
        }
    }
}
