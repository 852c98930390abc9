//! `nodectl repl NODE`: an interactive Erlang shell on a node of ours.
//!
//! Each expression is evaluated by the node's `node_server_eval:eval/2` (see
//! `node_server::eval`), with the bindings the previous evaluation returned, so variables
//! hold from one expression to the next as in the erl shell (`b()` lists them, `f()` and
//! `f(X)` forget them). The prompt is the erl shell's, `(node@host)N> `, N counting the
//! evaluated expressions from 1 (a syntax error, as in erl, does not count); an expression
//! goes on over lines until a `.` that ends it (outside strings, quoted atoms, character
//! literals and comments), and the same prompt asks for the next line, as erl asks. Several
//! expressions on one line are evaluated one after another.
//!
//! On a terminal, lines are read with [`rustyline`] (line editing, history of the session);
//! otherwise (a pipe, a file) plain lines are read and the prompts are still written, as erl
//! writes them. Values and errors are printed on stdout as the node's evaluator prints them,
//! and the repl goes on. `q().` or end of input (Ctrl-D) leaves the repl, and only the repl:
//! unlike erl's `q()`, the node keeps running. Ctrl-C drops the expression being typed. A
//! node that cannot be reached any more ends the repl with [`CtlError::Lost`] (exit 1); a
//! call that times out is reported and the repl goes on.

use std::io::{BufRead, IsTerminal, Write};

use node_server::etf::Term;
use node_server::eval::Lines;

use crate::client::Ctl;
use crate::error::CtlError;

/// Whether `expr` (one complete expression) is `q().`, which leaves the repl.
fn is_quit(expr: &str) -> bool {
    let compact: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
    compact == "q()."
}

/// Where the lines come from.
enum Input {
    /// A terminal: line editing and history.
    Editor(Box<rustyline::DefaultEditor>),
    /// Anything else: plain lines, no editing.
    Plain(std::io::Stdin),
}

/// What [`Input::read`] got.
enum Line {
    Text(String),
    /// Ctrl-C: drop what was typed so far.
    Interrupted,
    /// End of input (Ctrl-D on an empty line, or the end of a pipe).
    Eof,
}

impl Input {
    fn new() -> Input {
        let stdin = std::io::stdin();
        if stdin.is_terminal() && std::io::stdout().is_terminal() {
            if let Ok(editor) = rustyline::DefaultEditor::new() {
                return Input::Editor(Box::new(editor));
            }
        }
        Input::Plain(stdin)
    }

    /// Reads one line (without its newline) after writing `prompt`.
    fn read(&mut self, prompt: &str) -> Result<Line, CtlError> {
        let failed = |e: String| CtlError::Usage(format!("repl: cannot read input: {e}"));
        match self {
            Input::Editor(editor) => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    Ok(Line::Text(line))
                }
                Err(rustyline::error::ReadlineError::Interrupted) => Ok(Line::Interrupted),
                Err(rustyline::error::ReadlineError::Eof) => Ok(Line::Eof),
                Err(e) => Err(failed(e.to_string())),
            },
            Input::Plain(stdin) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(prompt.as_bytes());
                let _ = out.flush();
                drop(out);
                let mut line = String::new();
                match stdin.lock().read_line(&mut line) {
                    Ok(0) => Ok(Line::Eof),
                    Ok(_) => {
                        let line = line.strip_suffix('\n').unwrap_or(&line);
                        Ok(Line::Text(
                            line.strip_suffix('\r').unwrap_or(line).to_owned(),
                        ))
                    }
                    Err(e) => Err(failed(e.to_string())),
                }
            }
        }
    }
}

/// Runs the repl on `node` (a full node name) until `q().`, the end of input or a lost
/// node; returns how many expressions were evaluated.
pub async fn run(ctl: &Ctl, node: &str) -> Result<u64, CtlError> {
    // The node must be reachable and ours before the first prompt.
    ctl.eval_with(node, "ok.", Term::NIL).await?;
    let mut input = Input::new();
    eprintln!("nodectl repl on {node}: q(). or Ctrl-D leaves the repl (the node keeps running)");
    let mut bindings = Term::NIL;
    let mut lines = Lines::new();
    loop {
        let prompt = lines.prompt(node);
        let line = match tokio::task::block_in_place(|| input.read(&prompt))? {
            Line::Text(line) => line,
            Line::Interrupted => {
                lines.clear();
                continue;
            }
            Line::Eof => break,
        };
        for expr in lines.push_line(&line) {
            if is_quit(&expr) {
                return Ok(lines.number() - 1);
            }
            match ctl.eval_with(node, &expr, bindings.clone()).await {
                Ok((ok, printed, new_bindings)) => {
                    println!("{printed}");
                    bindings = new_bindings;
                    lines.evaluated(ok, &printed);
                }
                Err(e @ CtlError::Timeout { .. }) => println!("nodectl: {e}"),
                Err(e) => {
                    return Err(CtlError::Lost {
                        node: node.to_owned(),
                        reason: e.to_string(),
                    })
                }
            }
        }
    }
    // Ctrl-D: leave the prompt's line.
    if matches!(input, Input::Editor(_)) {
        println!();
    }
    Ok(lines.number() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quit() {
        assert!(is_quit("q()."));
        assert!(is_quit("q ( ) ."));
        assert!(!is_quit("q(1)."));
    }
}
