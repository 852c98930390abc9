//! Values and exceptions as the Erlang shell prints them.
//!
//! [`pretty`] writes a value as the shell's `~p` does, on one line: a list of printable
//! Latin-1 characters as a string (`"abc"`), a binary of them as `<<"abc">>`, a binary of
//! printable UTF-8 text as `<<"text"/utf8>>`, everything else as the term syntax writes it
//! ([`crate::etf::Term`]'s `Display`: pids as `<node.N.S>`). Unlike the shell it does not
//! break a long value over several lines.
//!
//! [`exception`] writes the first line of the shell's report of an exception
//! (`** exception error: no match of right hand side value 3`), with the explanations of
//! `erl_error` for the standard error reasons.

use std::fmt::Write;

use crate::etf::{Atom, Term};

use super::{Class, Exception};

/// Whether `c` is printable in the shell's default (Latin-1) printable range.
fn printable_char(c: i64) -> bool {
    (32..=126).contains(&c) || (160..=255).contains(&c) || matches!(c, 8..=13 | 27)
}

/// The characters of a list that the shell prints as a string.
fn printable_list(items: &[Term]) -> Option<Vec<char>> {
    if items.is_empty() {
        return None;
    }
    items
        .iter()
        .map(|t| match t {
            Term::Int(c) if printable_char(*c) => char::from_u32(*c as u32),
            _ => None,
        })
        .collect()
}

/// Writes `chars` between `"` with the shell's escapes.
fn write_string(out: &mut String, chars: impl Iterator<Item = char>) {
    out.push('"');
    for c in chars {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{B}' => out.push_str("\\v"),
            '\u{8}' => out.push_str("\\b"),
            '\u{C}' => out.push_str("\\f"),
            '\u{1B}' => out.push_str("\\e"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The value as the shell prints it (on one line).
pub(crate) fn pretty(term: &Term) -> String {
    let mut out = String::new();
    write(&mut out, term, 0);
    out
}

/// How deep [`pretty`] recurses; deeper parts are written by the term syntax's printer,
/// which keeps its own stack (so strings there show as lists of integers).
const MAX_PRETTY_DEPTH: usize = 200;

fn write(out: &mut String, term: &Term, depth: usize) {
    if depth > MAX_PRETTY_DEPTH {
        let _ = write!(out, "{term}");
        return;
    }
    let depth = depth + 1;
    match term {
        Term::List(items) => match printable_list(items) {
            Some(chars) => write_string(out, chars.into_iter()),
            None => {
                out.push('[');
                join(out, items, depth);
                out.push(']');
            }
        },
        Term::ImproperList(items, tail) => {
            out.push('[');
            join(out, items, depth);
            out.push('|');
            write(out, tail, depth);
            out.push(']');
        }
        Term::Tuple(items) => {
            out.push('{');
            join(out, items, depth);
            out.push('}');
        }
        Term::Map(map) => {
            out.push_str("#{");
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, k, depth);
                out.push_str(" => ");
                write(out, v, depth);
            }
            out.push('}');
        }
        Term::Binary(bytes) if !bytes.is_empty() => {
            if bytes.iter().all(|b| printable_char(i64::from(*b))) {
                out.push_str("<<");
                write_string(out, bytes.iter().map(|b| char::from(*b)));
                out.push_str(">>");
            } else {
                match std::str::from_utf8(bytes) {
                    Ok(text)
                        if text.chars().all(|c| {
                            printable_char(i64::from(u32::from(c))) || u32::from(c) > 255
                        }) =>
                    {
                        out.push_str("<<");
                        write_string(out, text.chars());
                        out.push_str("/utf8>>");
                    }
                    _ => {
                        let _ = write!(out, "{term}");
                    }
                }
            }
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn join(out: &mut String, items: &[Term], depth: usize) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item, depth);
    }
}

/// `M:F(A1,A2)` with the arguments as the shell prints them.
fn call_text(module: &Atom, function: &Atom, args: &[Term]) -> String {
    let args: Vec<String> = args.iter().map(pretty).collect();
    format!("{module}:{function}({})", args.join(","))
}

/// The shell's first line for an exception: `** exception CLASS: EXPLANATION`.
pub(crate) fn exception(e: &Exception) -> String {
    let class = match e.class {
        Class::Error => "error",
        Class::Exit => "exit",
        Class::Throw => "throw",
    };
    let text = match e.class {
        Class::Error => explain(&e.reason, e.call.as_deref()),
        _ => pretty(&e.reason),
    };
    format!("** exception {class}: {text}")
}

/// `erl_error`'s explanation of an error reason.
fn explain(reason: &Term, call: Option<&(Atom, Atom, Vec<Term>)>) -> String {
    if let Term::Atom(a) = reason {
        let fixed = match a.as_str() {
            "badarg" => Some("bad argument"),
            "badarith" => Some("an error occurred when evaluating an arithmetic expression"),
            "if_clause" => Some("no true branch found when evaluating an if expression"),
            "noproc" => Some("no such process or port"),
            "notalive" => Some("the node cannot be part of a distributed system"),
            "system_limit" => Some("a system limit has been reached"),
            "timeout_value" => Some("bad receive timeout value"),
            _ => None,
        };
        if let Some(text) = fixed {
            return text.to_owned();
        }
        match (a.as_str(), call) {
            ("undef", Some((m, f, args))) => {
                return format!("undefined function {m}:{f}/{}", args.len())
            }
            ("function_clause", Some((m, f, args))) => {
                return format!("no function clause matching {}", call_text(m, f, args))
            }
            _ => {}
        }
    }
    if let Some([tag, value]) = reason.as_tuple() {
        let prefix = match tag.as_atom().map(Atom::as_str) {
            Some("badmatch") => Some("no match of right hand side value "),
            Some("case_clause") => Some("no case clause matching "),
            Some("try_clause") => Some("no try clause matching "),
            Some("badarg") => Some("bad argument: "),
            Some("badkey") => Some("bad key: "),
            Some("badmap") => Some("bad map: "),
            Some("badfun") => Some("bad function "),
            _ => None,
        };
        if let Some(p) = prefix {
            return format!("{p}{}", pretty(value));
        }
    }
    if let Some([tag, f, arity]) = reason.as_tuple() {
        if tag.is_atom("shell_undef") {
            return format!("undefined shell command {}/{}", pretty(f), pretty(arity));
        }
        if tag.is_atom("shell_function_clause") {
            return format!(
                "no function clause matching call to {}/{}",
                pretty(f),
                pretty(arity)
            );
        }
    }
    pretty(reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_print_as_the_shell_prints_them() {
        for (text, printed) in [
            ("\"abc\"", "\"abc\""),
            ("[]", "[]"),
            ("[1,2,3]", "[1,2,3]"),
            ("\"a\\nb\\\"c\"", "\"a\\nb\\\"c\""),
            ("<<\"abc\">>", "<<\"abc\">>"),
            ("<<1,2>>", "<<1,2>>"),
            ("<<>>", "<<>>"),
            ("{a,\"b\",[1|2]}", "{a,\"b\",[1|2]}"),
            ("#{b => 1, a => \"x\"}", "#{a => \"x\",b => 1}"),
            ("[1087]", "[1087]"),
            ("{1.0,-0.0,1.0e10}", "{1.0,-0.0,1.0e10}"),
        ] {
            assert_eq!(pretty(&Term::parse(text).unwrap()), printed, "{text}");
        }
    }

    #[test]
    fn deep_values_print_without_deep_recursion() {
        let mut t = Term::list(vec![Term::Int(97)]);
        for _ in 0..20_000 {
            t = Term::list(vec![t]);
        }
        let text = std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let text = pretty(&t);
                // Dropping a term this deep recurses; take it apart by hand.
                let mut t = t;
                while let Term::List(mut v) = t {
                    t = v.pop().unwrap_or(Term::Int(0));
                }
                text
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(
            text.starts_with("[[[") && text.contains("[[97]]]"),
            "{}",
            &text[..20]
        );
        assert_eq!(text.len(), 2 * 20_001 + 2);
    }
}
