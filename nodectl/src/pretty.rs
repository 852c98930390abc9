//! Terms as a person reads them: Erlang syntax, with printable lists shown as strings and
//! printable binaries as text, much as the Erlang shell's `~p` shows them.

use node_server::etf::Term;

/// `term` in Erlang syntax: `"25"` for a printable list, `<<"text"/utf8>>` for a printable
/// binary, everything else as [`Term`]'s `Display` writes it. The text reads back with
/// [`Term::parse`] (pids, ports and references with creation 0).
pub fn pretty(term: &Term) -> String {
    let mut out = String::new();
    write(term, &mut out);
    out
}

/// A list Erlang's shell would print as a string: characters that print (or are common
/// whitespace), at least one.
fn printable(items: &[Term]) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    items
        .iter()
        .map(|t| match t {
            Term::Int(c) => u32::try_from(*c)
                .ok()
                .and_then(char::from_u32)
                .filter(|c| (' '..='~').contains(c) || matches!(c, '\n' | '\t' | '\r')),
            _ => None,
        })
        .collect()
}

fn write(term: &Term, out: &mut String) {
    match term {
        Term::List(items) => match printable(items) {
            Some(text) => {
                out.push('"');
                for c in text.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            None => {
                out.push('[');
                join(items, out);
                out.push(']');
            }
        },
        Term::ImproperList(items, tail) => {
            out.push('[');
            join(items, out);
            out.push('|');
            write(tail, out);
            out.push(']');
        }
        Term::Tuple(items) => {
            out.push('{');
            join(items, out);
            out.push('}');
        }
        Term::Map(map) => {
            out.push_str("#{");
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(k, out);
                out.push_str(" => ");
                write(v, out);
            }
            out.push('}');
        }
        leaf => out.push_str(&format!("{leaf:#}")),
    }
}

fn join(items: &[Term], out: &mut String) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(item, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_lists_and_binaries() {
        let t = Term::parse(r#"{ok, "25", [1,2], [], <<"hi">>, #{a => "x\n"}, [a|b]}"#).unwrap();
        assert_eq!(
            pretty(&t),
            r#"{ok,"25",[1,2],[],<<"hi">>,#{a => "x\n"},[a|b]}"#
        );
        // What it prints reads back as the same term.
        assert_eq!(Term::parse(&pretty(&t)).unwrap(), t);
    }
}
