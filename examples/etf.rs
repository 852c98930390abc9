//! Converts between the External Term Format and Erlang term syntax.
//!
//! ```text
//! cargo run --release --example etf -- fmt   < term.bin   # ETF (with 131) -> Erlang text
//! cargo run --release --example etf -- parse < term.txt   # Erlang text -> ETF (with 131)
//! ```
//!
//! Errors go to stderr and the exit code is non-zero.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;

use node_server::etf::Term;

const USAGE: &str = "\
usage: etf fmt|parse
  etf fmt     reads a term in the External Term Format (with its 131) on stdin,
              writes it in Erlang syntax on stdout
  etf parse   reads an Erlang term (a trailing `.` is optional) on stdin,
              writes its External Term Format (with 131) on stdout
  etf --help  this text
example: echo '{a, <<\"b\">>}.' | etf parse | etf fmt
";

fn main() -> ExitCode {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let to_text = match mode.as_str() {
        "fmt" => true,
        "parse" => false,
        "-h" | "--help" | "help" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        "" => {
            eprint!("etf: say fmt or parse\n{USAGE}");
            return ExitCode::from(2);
        }
        other => {
            eprint!("etf: unknown mode {other:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if std::io::stdin().is_terminal() {
        eprintln!("etf: reading the input from the terminal; end it with Ctrl-D");
    }
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("etf: cannot read stdin: {e}");
        return ExitCode::FAILURE;
    }
    let result = if to_text {
        Term::decode_slice(&input)
            .map(|t| format!("{t}\n").into_bytes())
            .map_err(|e| e.to_string())
    } else {
        match std::str::from_utf8(&input) {
            Ok(text) => Term::parse(text)
                .map(|t| t.encode().to_vec())
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("input is not UTF-8: {e}")),
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
