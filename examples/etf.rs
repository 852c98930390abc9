//! Converts between the External Term Format and Erlang term syntax.
//!
//! ```text
//! cargo run --release --example etf -- fmt   < term.bin   # ETF (with 131) -> Erlang text
//! cargo run --release --example etf -- parse < term.txt   # Erlang text -> ETF (with 131)
//! ```
//!
//! Errors go to stderr and the exit code is non-zero.

use std::io::{Read, Write};
use std::process::ExitCode;

use node_server::etf::Term;

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("etf: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let result = match mode.as_str() {
        "fmt" => Term::decode_slice(&input)
            .map(|t| format!("{t}\n").into_bytes())
            .map_err(|e| e.to_string()),
        "parse" => match std::str::from_utf8(&input) {
            Ok(text) => Term::parse(text)
                .map(|t| t.encode().to_vec())
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("input is not UTF-8: {e}")),
        },
        _ => {
            eprintln!("usage: etf fmt|parse  (reads stdin, writes stdout)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if let Err(e) = stdout.write_all(&out).and_then(|()| stdout.flush()) {
                eprintln!("etf: cannot write stdout: {e}");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("etf: {e}");
            ExitCode::FAILURE
        }
    }
}
