//! Erlang text syntax for terms (placeholder, being written).
use std::fmt;

use super::term::Term;

/// Why text did not parse as an Erlang term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line}, column {column}")]
#[non_exhaustive]
pub struct ParseError {
    /// What went wrong.
    pub message: String,
    /// Byte offset into the input.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Term {
    /// Parses one Erlang term literal; a trailing `.` is optional.
    pub fn parse(text: &str) -> Result<Term, ParseError> {
        let _ = text;
        Err(ParseError {
            message: "unimplemented".into(),
            offset: 0,
            line: 1,
            column: 1,
        })
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl fmt::Display for super::term::Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
