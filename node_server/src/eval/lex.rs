//! The tokens of an Erlang expression, read with the term syntax's own literal scanner
//! ([`crate::etf::text::Literals`]), so literals read exactly as [`crate::etf::Term::parse`]
//! reads them.

use crate::etf::text::{is_atom_char, is_atom_start, is_var_start, Literals, RESERVED_WORDS};
use crate::etf::{Atom, Term};

use super::EvalError;

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// A literal: number, character, string, quoted atom, binary, pid, port, reference,
    /// export fun.
    Lit(Term),
    /// A bare atom.
    Atom(Atom),
    /// A variable.
    Var(String),
    /// A reserved word (`case`, `of`, `and`, ...).
    Kw(&'static str),
    /// Punctuation or an operator.
    Op(&'static str),
    /// The `.` that ends the input.
    Dot,
}

impl Tok {
    /// The token as `erl_parse` shows it in `syntax error before: ...`.
    pub fn show(&self) -> String {
        match self {
            Tok::Lit(Term::Atom(a)) => a.to_string(),
            Tok::Lit(t) => super::show::pretty(t),
            Tok::Atom(a) => a.to_string(),
            Tok::Var(v) => v.clone(),
            Tok::Kw(k) | Tok::Op(k) => format!("'{k}'"),
            Tok::Dot => "'.'".to_owned(),
        }
    }
}

/// A token and the byte offset where it starts.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub tok: Tok,
    pub pos: usize,
}

/// Operators and punctuation, longest first.
const OPS: [&str; 33] = [
    "=:=", "=/=", "==", "/=", "=<", ">=", "=>", ":=", "->", "++", "--", "||", "<-", "<=", "!", "=",
    "<", ">", "+", "-", "*", "/", "(", ")", "{", "}", "[", "]", ",", ";", "|", ":", "#",
];

/// Reads the tokens of `text`; the last one is [`Tok::Dot`] (added when the text has none).
pub(super) fn tokens(text: &str) -> Result<Vec<Token>, EvalError> {
    let mut lits = Literals::new(text);
    let mut out: Vec<Token> = Vec::new();
    let mut pos = 0;
    let syntax = |_: &Literals, e: crate::etf::ParseError| EvalError::Syntax {
        line: e.line,
        column: e.column,
        message: e.message,
    };
    loop {
        pos = lits.skip_ws(pos);
        let rest = &text[pos..];
        let Some(c) = rest.chars().next() else {
            break;
        };
        let start = pos;
        let tok = if c == '.'
            && rest[1..]
                .chars()
                .next()
                .is_none_or(|n| n.is_whitespace() || n == '%')
        {
            pos += 1;
            out.push(Token {
                tok: Tok::Dot,
                pos: start,
            });
            pos = lits.skip_ws(pos);
            if pos < text.len() {
                let e = lits.error_at(pos, "more than one expression: text after the `.`");
                return Err(syntax(&lits, e));
            }
            return Ok(out);
        } else if c.is_ascii_digit()
            || matches!(c, '$' | '"' | '\'')
            || rest.starts_with("<<")
            || rest.starts_with("#Ref<")
            || rest.starts_with("#Port<")
            || (c == '<'
                && rest[1..].starts_with(|n: char| is_atom_start(n) || n == '\'')
                && pid_ahead(rest))
            || (rest.starts_with("fun") && fun_ahead(&rest[3..]))
        {
            let (term, end) = lits.literal(pos).map_err(|e| syntax(&lits, e))?;
            pos = end;
            Tok::Lit(term)
        } else if is_atom_start(c) || is_var_start(c) {
            let len = rest
                .char_indices()
                .skip(1)
                .find(|(_, ch)| !is_atom_char(*ch))
                .map_or(rest.len(), |(i, _)| i);
            let name = &rest[..len];
            pos += len;
            if is_var_start(c) {
                Tok::Var(name.to_owned())
            } else if let Some(kw) = RESERVED_WORDS.iter().find(|w| **w == name) {
                Tok::Kw(kw)
            } else {
                if name.chars().count() > Atom::MAX_CHARS {
                    let e = lits.error_at(start, "atom is longer than 255 characters");
                    return Err(syntax(&lits, e));
                }
                Tok::Atom(Atom::new(name))
            }
        } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            pos += op.len();
            Tok::Op(op)
        } else {
            let e = lits.error_at(start, format!("illegal character {c:?}"));
            return Err(syntax(&lits, e));
        };
        out.push(Token { tok, pos: start });
    }
    out.push(Token {
        tok: Tok::Dot,
        pos: text.len(),
    });
    Ok(out)
}

/// Whether `<...` at the start of `rest` reads as a pid literal `<node.N.N>`.
fn pid_ahead(rest: &str) -> bool {
    let mut lits = Literals::new(rest);
    lits.literal(0).is_ok()
}

/// Whether the text after `fun` makes an export fun `fun M:F/A`.
fn fun_ahead(after: &str) -> bool {
    after.starts_with(|c: char| c.is_whitespace())
        && Literals::new(&format!("fun{after}")).literal(0).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok> {
        tokens(text).unwrap().into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn tokens_of_an_expression() {
        assert_eq!(
            toks("X = {ok, \"a\"} ++ 'B', 1.5 =:= $a."),
            vec![
                Tok::Var("X".into()),
                Tok::Op("="),
                Tok::Op("{"),
                Tok::Atom(Atom::new("ok")),
                Tok::Op(","),
                Tok::Lit(Term::list(vec![Term::Int(97)])),
                Tok::Op("}"),
                Tok::Op("++"),
                Tok::Lit(Term::atom("B")),
                Tok::Op(","),
                Tok::Lit(Term::Float(1.5)),
                Tok::Op("=:="),
                Tok::Lit(Term::Int(97)),
                Tok::Dot,
            ]
        );
        assert_eq!(toks("a<b")[1], Tok::Op("<"));
        assert!(matches!(toks("<a@h.1.2>")[0], Tok::Lit(Term::Pid(_))));
        assert_eq!(toks("case")[0], Tok::Kw("case"));
        assert_eq!(toks("1")[1], Tok::Dot);
    }
}
