//! Builds a WAT guest of `node_server::wasm` into a `.wasm` beside it:
//!
//! ```sh
//! cargo run --example build_guest -- examples/guests/counter.wat           # writes counter.wasm
//! cargo run --example build_guest -- --check examples/guests/counter.wat   # exit 1 if it is stale
//! ```
//!
//! A line `;; @include FILE` is replaced by FILE's contents (relative to the guest's folder),
//! which is how guests take the ETF helpers of `examples/guests/etf.wat`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The source with each `;; @include FILE` line replaced by FILE (from `dir`).
fn expand(source: &str, dir: &Path) -> Result<String, String> {
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        match line.trim().strip_prefix(";; @include ") {
            Some(file) => {
                let path = dir.join(file.trim());
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                out.push_str(&text);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    Ok(out)
}

fn build(wat_path: &Path) -> Result<(PathBuf, Vec<u8>), String> {
    let source =
        std::fs::read_to_string(wat_path).map_err(|e| format!("{}: {e}", wat_path.display()))?;
    let dir = wat_path.parent().unwrap_or(Path::new("."));
    let expanded = expand(&source, dir)?;
    let bytes = wat::parse_str(&expanded).map_err(|e| format!("{}: {e}", wat_path.display()))?;
    Ok((wat_path.with_extension("wasm"), bytes))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let check = args.iter().any(|a| a == "--check");
    let files: Vec<&String> = args.iter().filter(|a| *a != "--check").collect();
    if files.is_empty() {
        eprintln!("usage: build_guest [--check] GUEST.wat...");
        return ExitCode::from(2);
    }
    let mut ok = true;
    for file in files {
        match build(Path::new(file)) {
            Ok((out, bytes)) if check => {
                if std::fs::read(&out).ok().as_deref() != Some(&bytes[..]) {
                    eprintln!(
                        "{} is not built from {file}: run build_guest",
                        out.display()
                    );
                    ok = false;
                }
            }
            Ok((out, bytes)) => match std::fs::write(&out, &bytes) {
                Ok(()) => println!("{} ({} bytes)", out.display(), bytes.len()),
                Err(e) => {
                    eprintln!("{}: {e}", out.display());
                    ok = false;
                }
            },
            Err(e) => {
                eprintln!("{e}");
                ok = false;
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
