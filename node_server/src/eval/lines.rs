//! How a shell reads its input: lines gather until a `.` ends an expression, and the prompt
//! counts the expressions evaluated. One rule for every shell of ours: `nodectl repl` and the
//! shell `erl -remsh` runs ([`crate::remote_shell`]).

/// The input of a shell: the text typed so far that ends no expression yet, and the number
/// its prompt shows.
#[derive(Debug, Clone)]
pub struct Lines {
    pending: String,
    number: u64,
}

impl Default for Lines {
    fn default() -> Lines {
        Lines::new()
    }
}

impl Lines {
    /// Nothing typed; the prompt shows 1.
    pub fn new() -> Lines {
        Lines {
            pending: String::new(),
            number: 1,
        }
    }

    /// The number the next prompt shows, `(node@host)N> `: the expressions evaluated so
    /// far, plus one.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The erl shell's prompt on `node`: `(node@host)N> `.
    pub fn prompt(&self, node: &str) -> String {
        format!("({node}){}> ", self.number)
    }

    /// Takes one line (without its newline): the expressions it completes, each with its
    /// terminating `.` and trimmed, in order. What follows the last one waits for more.
    pub fn push_line(&mut self, line: &str) -> Vec<String> {
        self.pending.push_str(line);
        self.pending.push('\n');
        let mut start = 0;
        let mut out = Vec::new();
        for end in expression_ends(&self.pending) {
            out.push(self.pending[start..end].trim().to_owned());
            start = end;
        }
        self.pending.drain(..start);
        if self.pending.trim().is_empty() {
            self.pending.clear();
        } else if self.pending.len() > super::MAX_INPUT {
            // Longer than any expression may be: handed over as it is, so the evaluator
            // says so (and the text held stays bounded).
            out.push(std::mem::take(&mut self.pending));
        }
        out
    }

    /// Drops what was typed of the expression in progress (Ctrl-C in a repl).
    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// Counts an evaluation that gave `ok` (a value) or printed `printed` (an error): the erl
    /// shell counts every evaluation except input that does not parse.
    pub fn evaluated(&mut self, ok: bool, printed: &str) {
        if ok || !(printed.starts_with("* ") && printed.contains(": syntax error")) {
            self.number += 1;
        }
    }
}

/// The end of each complete expression in `text`: the byte offset just past its
/// terminating `.`. A `.` terminates when it is followed by whitespace, a `%` or the end
/// of the text, and is not inside a string, a quoted atom, a character literal (`$.`) or a
/// comment (so `1.5`, `<0.1.2>` and `"a. b"` do not end anything).
pub fn expression_ends(text: &str) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '%' => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '"' | '\'' => {
                while let Some((_, d)) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            '$' => {
                if let Some((_, '\\')) = chars.next() {
                    chars.next();
                }
            }
            '.' if chars
                .peek()
                .is_none_or(|&(_, n)| n.is_whitespace() || n == '%') =>
            {
                ends.push(i + 1);
            }
            _ => {}
        }
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exprs(text: &str) -> Vec<&str> {
        let mut start = 0;
        expression_ends(text)
            .into_iter()
            .map(|end| {
                let e = text[start..end].trim();
                start = end;
                e
            })
            .collect()
    }

    #[test]
    fn expressions_end_at_a_terminating_dot() {
        assert_eq!(exprs("X = 20.\n"), ["X = 20."]);
        assert_eq!(exprs("X = 20"), Vec::<&str>::new());
        assert_eq!(exprs("{1,\n 2}.\n"), ["{1,\n 2}."]);
        assert_eq!(exprs("1. 2.\n"), ["1.", "2."]);
        assert_eq!(exprs("1.5 + 2.\n"), ["1.5 + 2."]);
        assert_eq!(exprs("\"a. b\" ++ \"c\".\n"), ["\"a. b\" ++ \"c\"."]);
        assert_eq!(exprs("'a. \\' b'.\n"), ["'a. \\' b'."]);
        assert_eq!(exprs("\"a\\\". \n"), Vec::<&str>::new());
        assert_eq!(exprs("[$., $\\\", $%].\n"), ["[$., $\\\", $%]."]);
        assert_eq!(
            exprs("1 % a comment. \n + 2.\n"),
            ["1 % a comment. \n + 2."]
        );
        assert_eq!(exprs("<0.1.2>.%c\n"), ["<0.1.2>."]);
        assert_eq!(exprs("X.\n"), ["X."]);
    }

    #[test]
    fn lines_gather_until_a_dot_and_the_prompt_counts() {
        let mut lines = Lines::new();
        assert_eq!(lines.prompt("a@h"), "(a@h)1> ");
        assert!(lines.push_line("X = 20,").is_empty());
        assert_eq!(
            lines.push_line("X + 22. Y = 1."),
            ["X = 20,\nX + 22.", "Y = 1."]
        );
        lines.evaluated(true, "42");
        lines.evaluated(false, "** exception error: bad argument");
        lines.evaluated(false, "* 1:1: variable 'X' is unbound");
        assert_eq!(lines.number(), 4);
        lines.evaluated(false, "* 1:5: syntax error before: ')'");
        assert_eq!(
            lines.number(),
            4,
            "input that does not parse does not count"
        );
        assert!(lines.push_line("{1,").is_empty());
        lines.clear();
        assert_eq!(lines.push_line("2."), ["2."]);
        let long = "x".repeat(crate::eval::MAX_INPUT + 1);
        assert_eq!(
            lines.push_line(&long).len(),
            1,
            "too long: handed to the evaluator"
        );
        assert_eq!(lines.push_line("3."), ["3."]);
    }
}
