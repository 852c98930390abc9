//! `io:format/1,2` for the evaluator: the control sequences of `io_lib:format/2` that shell
//! users type. What is written goes where the shell's own output goes (before the value).
//!
//! Done: `~p` (as the shell prints a value, on one line), `~w` (the term syntax), `~s`
//! (a string, binary, atom or iolist), `~c`, `~B` (precision: the base), `~i` (skip), `~f`,
//! `~e`, `~g` (precision: digits, 6 by default), `~n`, `~~`; the modifiers `t` and `l`
//! (`~lp` prints lists of character codes as lists); a field width (negative: left-
//! justified; for `~p` the line length, which one-line output ignores) and precision as
//! digits or `*`. Anything else, or arguments that do not fit
//! their sequence, is `badarg` as in Erlang.

use crate::etf::Term;

/// The widest field a sequence may ask for (a larger one is `badarg`, not an allocation).
const MAX_WIDTH: usize = 1 << 16;

/// The text `fmt` (chardata) with `args` (a proper list) gives; `None`: `badarg`.
pub(super) fn format(fmt: &Term, args: &Term) -> Option<String> {
    let fmt = chars(fmt)?;
    let Term::List(args) = args else {
        return None;
    };
    let mut args = args.iter();
    let mut out = String::new();
    let mut it = fmt.chars().peekable();
    while let Some(c) = it.next() {
        if c != '~' {
            out.push(c);
            continue;
        }
        // ~F.P.PadModC
        let number = |it: &mut std::iter::Peekable<std::str::Chars<'_>>,
                      args: &mut std::slice::Iter<'_, Term>|
         -> Option<Option<i64>> {
            if it.peek() == Some(&'*') {
                it.next();
                return match args.next()? {
                    Term::Int(n) => Some(Some(*n)),
                    _ => None,
                };
            }
            let negative = it.peek() == Some(&'-');
            if negative {
                it.next();
            }
            let mut n: Option<i64> = None;
            while let Some(d) = it.peek().and_then(|c| c.to_digit(10)) {
                it.next();
                n = Some(n.unwrap_or(0).checked_mul(10)?.checked_add(i64::from(d))?);
            }
            Some(n.map(|n| if negative { -n } else { n }))
        };
        let width = number(&mut it, &mut args)?;
        let mut precision = None;
        if it.peek() == Some(&'.') {
            it.next();
            precision = number(&mut it, &mut args)?;
            if it.peek() == Some(&'.') {
                it.next();
                // The pad character: taken, not used (spaces pad).
                it.next()?;
            }
        }
        let mut lists = false;
        while let Some(m) = it.peek().copied().filter(|m| *m == 't' || *m == 'l') {
            it.next();
            lists |= m == 'l';
        }
        let control = it.next()?;
        let text = match control {
            '~' => "~".to_owned(),
            'n' => "\n".to_owned(),
            'i' => {
                args.next()?;
                String::new()
            }
            'p' | 'P' => {
                let term = args.next()?;
                if lists {
                    term.to_string()
                } else {
                    super::show::pretty(term)
                }
            }
            'w' | 'W' => args.next()?.to_string(),
            's' => {
                let text = chars(args.next()?)?;
                match precision {
                    Some(p) => text.chars().take(usize::try_from(p).ok()?).collect(),
                    None => text,
                }
            }
            'c' => {
                let Term::Int(c) = args.next()? else {
                    return None;
                };
                let c = char::from_u32(u32::try_from(*c).ok()?)?;
                // Repeated `precision` times, else as wide as the field.
                let n = match precision {
                    Some(p) => usize::try_from(p).ok()?,
                    None => usize::try_from(width.map_or(1, i64::unsigned_abs)).ok()?,
                };
                if n > MAX_WIDTH {
                    return None;
                }
                std::iter::repeat_n(c, n).collect()
            }
            'B' => {
                let Term::Int(n) = args.next()? else {
                    return None;
                };
                let base = u32::try_from(precision.unwrap_or(10)).ok()?;
                if !(2..=36).contains(&base) {
                    return None;
                }
                radix(*n, base)
            }
            f @ ('f' | 'e' | 'g') => {
                let x = match args.next()? {
                    Term::Float(x) => *x,
                    _ => return None,
                };
                let p = usize::try_from(precision.unwrap_or(6)).ok()?;
                if p > 300 {
                    return None;
                }
                match f {
                    'f' if p >= 1 => format!("{x:.p$}"),
                    'e' if p >= 2 => exponent(x, p - 1),
                    'g' => general(x, p)?,
                    _ => return None,
                }
            }
            _ => return None,
        };
        // For `~p` the width is the line length the layout may use: one line here.
        let width = match (control, width) {
            ('p' | 'P', Some(w)) if w < 0 => return None,
            ('p' | 'P', _) => None,
            _ => width,
        };
        match width {
            None => out.push_str(&text),
            Some(w) => {
                let w = usize::try_from(w.unsigned_abs()).ok()?;
                if w > MAX_WIDTH {
                    return None;
                }
                let len = text.chars().count();
                if len > w {
                    // Erlang fills a field too narrow for its value with `*`.
                    out.extend(std::iter::repeat_n('*', w));
                } else if width.is_some_and(|w| w < 0) {
                    out.push_str(&text);
                    out.extend(std::iter::repeat_n(' ', w - len));
                } else {
                    out.extend(std::iter::repeat_n(' ', w - len));
                    out.push_str(&text);
                }
            }
        }
        if out.len() > super::MAX_LIST_LEN {
            return None;
        }
    }
    // Arguments left over are badarg too.
    args.next().is_none().then_some(out)
}

/// Chardata as text: a string, a binary (UTF-8), an atom, or a list of these.
pub(super) fn chars(t: &Term) -> Option<String> {
    if matches!(t, Term::Int(_)) {
        return None;
    }
    let mut out = String::new();
    let mut stack = vec![t];
    // Depth-first without recursion; the list is walked in order by pushing in reverse.
    while let Some(t) = stack.pop() {
        match t {
            Term::Atom(a) => out.push_str(a.as_str()),
            Term::Binary(b) => out.push_str(std::str::from_utf8(b).ok()?),
            Term::Int(c) => out.push(char::from_u32(u32::try_from(*c).ok()?)?),
            Term::List(items) => stack.extend(items.iter().rev()),
            _ => return None,
        }
        if out.len() > super::MAX_LIST_LEN {
            return None;
        }
    }
    Some(out)
}

/// `n` in `base`, digits above 9 as capital letters, as `~B` writes it.
fn radix(n: i64, base: u32) -> String {
    let mut digits = Vec::new();
    let mut m = n.unsigned_abs();
    let b = u64::from(base);
    loop {
        let d = (m % b) as u32;
        digits.push(
            char::from_digit(d, base)
                .unwrap_or('?')
                .to_ascii_uppercase(),
        );
        m /= b;
        if m == 0 {
            break;
        }
    }
    if n < 0 {
        digits.push('-');
    }
    digits.iter().rev().collect()
}

/// `x` as `~e` writes it: one digit, `decimals` decimals, `e+X` (the exponent unpadded).
fn exponent(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$e}");
    match s.split_once('e') {
        Some((mantissa, exp)) if exp.starts_with('-') => format!("{mantissa}e{exp}"),
        Some((mantissa, exp)) => format!("{mantissa}e+{exp}"),
        None => s,
    }
}

/// `x` as `~g` writes it with `p` significant digits: as `~f` from 0.1 to 10000, as `~e`
/// outside.
fn general(x: f64, p: usize) -> Option<String> {
    let a = x.abs();
    let e: i64 = match a {
        a if a < 0.1 => -2,
        a if a < 1.0 => -1,
        a if a < 10.0 => 0,
        a if a < 100.0 => 1,
        a if a < 1000.0 => 2,
        a if a < 10000.0 => 3,
        _ => 4,
    };
    let p = i64::try_from(p).ok()?;
    if e <= 3 && ((p <= 1 && e == -1) || (p - 1 > e && e >= -1)) {
        let decimals = usize::try_from(p - 1 - e).ok()?;
        Some(format!("{x:.decimals$}"))
    } else if p <= 1 {
        Some(exponent(x, 1))
    } else {
        Some(exponent(x, usize::try_from(p - 1).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn string(s: &str) -> Term {
        Term::List(s.chars().map(|c| Term::Int(c as i64)).collect())
    }

    fn f(fmt: &str, args: Vec<Term>) -> Option<String> {
        format(&string(fmt), &Term::List(args))
    }

    #[test]
    fn sequences_as_io_lib_writes_them() {
        assert_eq!(f("hi~n", vec![]).unwrap(), "hi\n");
        assert_eq!(
            f(
                "~p ~w ~s~n",
                vec![string("ab"), string("ab"), Term::binary("c")]
            )
            .unwrap(),
            "\"ab\" [97,98] c\n"
        );
        assert_eq!(
            f("~5B|~-5B|", vec![Term::Int(42), Term::Int(-7)]).unwrap(),
            "   42|-7   |"
        );
        assert_eq!(f("~.16B", vec![Term::Int(255)]).unwrap(), "FF");
        assert_eq!(f("~.2f", vec![Term::Float(1.23456)]).unwrap(), "1.23");
        assert_eq!(f("~e", vec![Term::Float(1234.5)]).unwrap(), "1.23450e+3");
        assert_eq!(
            f("~g ~g", vec![Term::Float(1.5), Term::Float(1.0e-5)]).unwrap(),
            "1.50000 1.00000e-5"
        );
        assert_eq!(f("~3B", vec![Term::Int(12345)]).unwrap(), "***");
        assert_eq!(
            f("~c~3c", vec![Term::Int(97), Term::Int(98)]).unwrap(),
            "abbb"
        );
        assert_eq!(f("~.3c", vec![Term::Int(120)]).unwrap(), "xxx");
        assert_eq!(f("~i~~", vec![Term::atom("x")]).unwrap(), "~");
        assert_eq!(f("~*B", vec![Term::Int(3), Term::Int(7)]).unwrap(), "  7");
        assert_eq!(f("~ts", vec![Term::binary("é")]).unwrap(), "é");
        assert_eq!(f("~lp", vec![string("ab")]).unwrap(), "[97,98]");
    }

    #[test]
    fn misfits_are_badarg() {
        assert_eq!(f("~d", vec![Term::Int(1)]), None);
        assert_eq!(f("~p", vec![]), None);
        assert_eq!(f("x", vec![Term::Int(1)]), None, "an argument left over");
        assert_eq!(f("~B", vec![Term::atom("a")]), None);
        assert_eq!(f("~99999999B", vec![Term::Int(1)]), None);
        assert_eq!(f("~", vec![]), None);
        assert_eq!(format(&Term::Int(1), &Term::NIL), None);
    }
}
