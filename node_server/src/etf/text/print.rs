//! Writing terms as `io_lib:format("~w", [T])` does.
//!
//! The writer keeps its own stack of pending work instead of recursing, so a term of any depth
//! prints without exhausting the thread's stack.

use std::fmt::{self, Write};

use num_bigint::BigUint;

use crate::etf::term::{Fun, Term};

/// Erlang's reserved words in every release from OTP 25 on: `erl_parse` rejects them as bare
/// atoms, so the printer quotes them and the parser asks for quotes.
pub(crate) const RESERVED_WORDS: [&str; 27] = [
    "after", "and", "andalso", "band", "begin", "bnot", "bor", "bsl", "bsr", "bxor", "case",
    "catch", "cond", "div", "end", "fun", "if", "let", "not", "of", "or", "orelse", "receive",
    "rem", "try", "when", "xor",
];

/// Words reserved since OTP 27 made the `maybe_expr` feature the default (OTP 25 and 26 reserve
/// them only with `-feature(maybe_expr, enable)`). The printer quotes them, since text we write
/// may be read by any release (`'maybe'` is the same atom everywhere); the parser still takes
/// them bare, as OTP 25 and 26 do.
pub(super) const RESERVED_SINCE_OTP_27: [&str; 2] = ["else", "maybe"];

/// Whether `~w` of the newest release quotes the atom `name` because it is a reserved word.
fn is_reserved(name: &str) -> bool {
    RESERVED_WORDS.contains(&name) || RESERVED_SINCE_OTP_27.contains(&name)
}

/// Whether `c` is a lowercase letter that may start a bare atom: `a`-`z`, or `ß`-`ÿ` but `÷`.
pub(crate) fn is_atom_start(c: char) -> bool {
    c.is_ascii_lowercase() || (('\u{DF}'..='\u{FF}').contains(&c) && c != '\u{F7}')
}

/// Whether `c` may follow the first character of a bare atom in `~w` output: a Latin-1 letter,
/// a digit, `_` or `@`.
pub(crate) fn is_atom_char(c: char) -> bool {
    is_latin1_alnum(c) || c == '_' || c == '@'
}

/// A Latin-1 letter (`×` and `÷` are not) or an ASCII digit.
fn is_latin1_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || is_atom_start(c)
        || (('\u{C0}'..='\u{DE}').contains(&c) && c != '\u{D7}')
}

/// How an atom is written.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AtomStyle {
    /// `io_lib:write_atom_as_latin1`, what `~w` uses.
    Io,
    /// The runtime's own printer, what `erlang:fun_to_list/1` uses for fun names.
    Runtime,
}

/// Writes an atom as `~w` does.
pub(super) fn write_atom(out: &mut impl Write, name: &str) -> fmt::Result {
    write_atom_styled(out, name, AtomStyle::Io)
}

fn needs_quotes(name: &str, style: AtomStyle) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return true;
    };
    if !is_atom_start(first) {
        return true;
    }
    match style {
        AtomStyle::Io => !chars.all(is_atom_char) || is_reserved(name),
        AtomStyle::Runtime => !chars.all(|c| is_latin1_alnum(c) || c == '_'),
    }
}

fn write_atom_styled(out: &mut impl Write, name: &str, style: AtomStyle) -> fmt::Result {
    if !needs_quotes(name, style) {
        return out.write_str(name);
    }
    out.write_char('\'')?;
    for c in name.chars() {
        match style {
            AtomStyle::Io => write_io_char(out, c)?,
            AtomStyle::Runtime => write_runtime_char(out, c)?,
        }
    }
    out.write_char('\'')
}

/// One character of a quoted atom as `io_lib` writes it for `~w`: printable Latin-1 as is,
/// named escapes, other control characters in octal, anything above 255 as `\x{HEX}`.
fn write_io_char(out: &mut impl Write, c: char) -> fmt::Result {
    let code = u32::from(c);
    match c {
        '\'' => out.write_str("\\'"),
        '\\' => out.write_str("\\\\"),
        ' '..='~' | '\u{A0}'..='\u{FF}' => out.write_char(c),
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        '\u{B}' => out.write_str("\\v"),
        '\u{8}' => out.write_str("\\b"),
        '\u{C}' => out.write_str("\\f"),
        '\u{1B}' => out.write_str("\\e"),
        '\u{7F}' => out.write_str("\\d"),
        _ if code < 0xA0 => write!(out, "\\{code:03o}"),
        _ => write!(out, "\\x{{{code:X}}}"),
    }
}

/// One character of a quoted atom as the runtime writes it: fewer named escapes, octal for
/// the other C0 and C1 control characters, everything else (DEL included) as is.
fn write_runtime_char(out: &mut impl Write, c: char) -> fmt::Result {
    let code = u32::from(c);
    match c {
        '\'' => out.write_str("\\'"),
        '\\' => out.write_str("\\\\"),
        '\n' => out.write_str("\\n"),
        '\u{C}' => out.write_str("\\f"),
        '\t' => out.write_str("\\t"),
        '\r' => out.write_str("\\r"),
        '\u{8}' => out.write_str("\\b"),
        '\u{B}' => out.write_str("\\v"),
        _ if code < 0x20 || (0x80..0xA0).contains(&code) => write!(out, "\\{code:03o}"),
        _ => out.write_char(c),
    }
}

/// A small fixed buffer that `write!` can fill without allocating.
struct StackBuf {
    bytes: [u8; 40],
    len: usize,
}

impl StackBuf {
    fn new() -> StackBuf {
        StackBuf {
            bytes: [0; 40],
            len: 0,
        }
    }

    fn as_str(&self) -> Result<&str, fmt::Error> {
        std::str::from_utf8(&self.bytes[..self.len]).map_err(|_| fmt::Error)
    }
}

impl Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes a float as OTP 25's `float_to_list(F, [short])` does, which is what `~w` uses.
///
/// The digits are the shortest that read back as the same float, and of those the closest,
/// with an exact tie going to the even one (the runtime uses Ryu). With `n` digits `D` and the
/// value `D * 10^e`, the plain layout is used when it is not longer than the scientific one,
/// except that magnitudes of 2^53 and up are always scientific.
pub(super) fn write_float(out: &mut impl Write, x: f64) -> fmt::Result {
    if !x.is_finite() {
        // Erlang has no such floats; write something rather than nothing.
        return write!(out, "{x}");
    }
    if x == 0.0 {
        return out.write_str(if x.is_sign_negative() { "-0.0" } else { "0.0" });
    }
    let (mantissa, e) = shortest_digits(x.abs())?;
    let mut buf = StackBuf::new();
    write!(buf, "{mantissa}")?;
    let digits = buf.as_str()?;
    let n = digits.len() as i32;
    let sci_exp = e + n - 1;
    let (lower, upper) = if n == 1 {
        (-4, 2)
    } else if sci_exp >= 10 {
        (-(n + 2), 2)
    } else {
        (-(n + 2), 1)
    };
    let at_least_2_pow_53 = match e {
        0 => mantissa >= 1 << 53,
        1 => mantissa > (1 << 52) / 5,
        2 => mantissa > (1 << 51) / 25,
        _ => false,
    };
    let plain = (lower..=upper).contains(&e) && !at_least_2_pow_53;
    if x.is_sign_negative() {
        out.write_char('-')?;
    }
    if !plain {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        return write!(out, "{first}.{rest}e{sci_exp}");
    }
    if e >= 0 {
        out.write_str(digits)?;
        for _ in 0..e {
            out.write_char('0')?;
        }
        return out.write_str(".0");
    }
    let whole = n + e;
    if whole > 0 {
        let (int_part, frac_part) = digits.split_at(whole as usize);
        write!(out, "{int_part}.{frac_part}")
    } else {
        out.write_str("0.")?;
        for _ in whole..0 {
            out.write_char('0')?;
        }
        out.write_str(digits)
    }
}

/// The shortest digits `D` (without trailing zeros) and exponent `e` with `D * 10^e` reading
/// back as `x` (finite and positive), nearest to `x`, ties to even.
fn shortest_digits(x: f64) -> Result<(u64, i32), fmt::Error> {
    // Rust's `{:e}` gives the shortest, nearest digits, but settles an exact tie upwards.
    let mut buf = StackBuf::new();
    write!(buf, "{x:e}")?;
    let text = buf.as_str()?;
    let (mantissa_text, exp_text) = text.split_once('e').ok_or(fmt::Error)?;
    let sci_exp: i32 = exp_text.parse().map_err(|_| fmt::Error)?;
    let mut mantissa: u64 = 0;
    let mut n = 0;
    for b in mantissa_text.bytes().filter(u8::is_ascii_digit) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u64::from(b - b'0')))
            .ok_or(fmt::Error)?;
        n += 1;
    }
    let mut e = sci_exp - (n - 1);
    if mantissa % 2 == 1 && mantissa > 1 && is_tie_below(x, mantissa, e) {
        mantissa -= 1;
        while mantissa.is_multiple_of(10) {
            mantissa /= 10;
            e += 1;
        }
    }
    Ok((mantissa, e))
}

/// Whether `x` lies exactly halfway between `(d - 1) * 10^e` and `d * 10^e`, that is whether
/// `2x == (2d - 1) * 10^e`, computed exactly.
fn is_tie_below(x: f64, d: u64, e: i32) -> bool {
    let bits = x.to_bits();
    let raw_exp = ((bits >> 52) & 0x7FF) as i32;
    let fraction = bits & ((1 << 52) - 1);
    // x == m * 2^k exactly.
    let (m, k) = if raw_exp == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1 << 52), raw_exp - 1075)
    };
    let ten = BigUint::from(10u8);
    let mut lhs = BigUint::from(m) << 1u32;
    let mut rhs = BigUint::from(2 * d - 1);
    if k >= 0 {
        lhs <<= k.unsigned_abs();
    } else {
        rhs <<= k.unsigned_abs();
    }
    if e >= 0 {
        rhs *= ten.pow(e.unsigned_abs());
    } else {
        lhs *= ten.pow(e.unsigned_abs());
    }
    lhs == rhs
}

/// Writes bytes as `~w` writes a binary's body: decimal values separated by commas.
fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> fmt::Result {
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.write_char(',')?;
        }
        write!(out, "{b}")?;
    }
    Ok(())
}

/// Pending work for [`write_term`].
enum Item<'a> {
    /// A term to write.
    Term(&'a Term),
    /// The rest of a list after an element: nothing for `[]`, `,E...` for more elements,
    /// `|Tail` for anything else.
    Tail(&'a Term),
    /// Literal text.
    Text(&'static str),
}

/// Writes a term as `~w` does; with `readable`, binaries that are printable UTF-8 text are
/// written as strings (`<<"text">>`), as `~p` would.
pub(super) fn write_term(out: &mut impl Write, term: &Term, readable: bool) -> fmt::Result {
    let mut stack = vec![Item::Term(term)];
    while let Some(item) = stack.pop() {
        match item {
            Item::Text(text) => out.write_str(text)?,
            Item::Tail(tail) => match tail {
                Term::List(elems) if elems.is_empty() => {}
                Term::List(elems) => {
                    out.write_char(',')?;
                    push_elements(&mut stack, elems, ",");
                }
                Term::ImproperList(elems, tail) if !elems.is_empty() => {
                    out.write_char(',')?;
                    stack.push(Item::Tail(tail));
                    push_elements(&mut stack, elems, ",");
                }
                other => {
                    out.write_char('|')?;
                    stack.push(Item::Term(other));
                }
            },
            Item::Term(term) => write_one(out, term, &mut stack, readable)?,
        }
    }
    Ok(())
}

/// Whether bytes are UTF-8 text without control characters other than newline and tab.
fn printable_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .is_ok_and(|t| t.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'))
}

/// Pushes `elems` so that they pop in order, separated by `sep`.
fn push_elements<'a>(stack: &mut Vec<Item<'a>>, elems: &'a [Term], sep: &'static str) {
    for (i, e) in elems.iter().enumerate().rev() {
        stack.push(Item::Term(e));
        if i > 0 {
            stack.push(Item::Text(sep));
        }
    }
}

/// Writes a leaf, or the opening of a container whose rest goes on the stack.
fn write_one<'a>(
    out: &mut impl Write,
    term: &'a Term,
    stack: &mut Vec<Item<'a>>,
    readable: bool,
) -> fmt::Result {
    match term {
        Term::Binary(bytes) if readable && !bytes.is_empty() && printable_text(bytes) => {
            out.write_str("<<\"")?;
            for c in std::str::from_utf8(bytes).unwrap_or_default().chars() {
                match c {
                    '"' => out.write_str("\\\"")?,
                    '\\' => out.write_str("\\\\")?,
                    '\n' => out.write_str("\\n")?,
                    '\t' => out.write_str("\\t")?,
                    c => out.write_char(c)?,
                }
            }
            out.write_str(if bytes.is_ascii() {
                "\">>"
            } else {
                "\"/utf8>>"
            })
        }
        Term::Atom(a) => write_atom(out, a.as_str()),
        Term::Int(i) => write!(out, "{i}"),
        Term::BigInt(b) => write!(out, "{b}"),
        Term::Float(x) => write_float(out, *x),
        Term::Binary(bytes) => {
            out.write_str("<<")?;
            write_bytes(out, bytes)?;
            out.write_str(">>")
        }
        Term::BitBinary(bits) => {
            let bytes = bits.bytes();
            let (last, whole) = bytes.split_last().map_or((0, &[][..]), |(l, w)| (*l, w));
            let n = bits.last_bits();
            out.write_str("<<")?;
            write_bytes(out, whole)?;
            if !whole.is_empty() {
                out.write_char(',')?;
            }
            let value = if (1..8).contains(&n) {
                last >> (8 - n)
            } else {
                last
            };
            write!(out, "{value}:{n}>>")
        }
        Term::List(elems) => {
            out.write_char('[')?;
            stack.push(Item::Text("]"));
            push_elements(stack, elems, ",");
            Ok(())
        }
        Term::ImproperList(elems, tail) => {
            if elems.is_empty() {
                // Not a valid term; write the tail alone, as the list it stands for.
                stack.push(Item::Term(tail));
                return Ok(());
            }
            out.write_char('[')?;
            stack.push(Item::Text("]"));
            stack.push(Item::Tail(tail));
            push_elements(stack, elems, ",");
            Ok(())
        }
        Term::Tuple(elems) => {
            out.write_char('{')?;
            stack.push(Item::Text("}"));
            push_elements(stack, elems, ",");
            Ok(())
        }
        Term::Map(map) => {
            out.write_str("#{")?;
            stack.push(Item::Text("}"));
            for (i, (k, v)) in map.entries().iter().enumerate().rev() {
                stack.push(Item::Term(v));
                stack.push(Item::Text(" => "));
                stack.push(Item::Term(k));
                if i > 0 {
                    stack.push(Item::Text(","));
                }
            }
            Ok(())
        }
        Term::Pid(pid) => {
            out.write_char('<')?;
            write_atom(out, pid.node.as_str())?;
            write!(out, ".{}.{}>", pid.id, pid.serial)
        }
        Term::Port(port) => {
            out.write_str("#Port<")?;
            write_atom(out, port.node.as_str())?;
            write!(out, ".{}>", port.id)
        }
        Term::Reference(r) => {
            out.write_str("#Ref<")?;
            write_atom(out, r.node.as_str())?;
            for w in r.words().iter().rev() {
                write!(out, ".{w}")?;
            }
            out.write_char('>')
        }
        Term::Fun(fun) => match &**fun {
            Fun::Export {
                module,
                function,
                arity,
            } => {
                out.write_str("fun ")?;
                write_atom_styled(out, module.as_str(), AtomStyle::Runtime)?;
                out.write_char(':')?;
                write_atom_styled(out, function.as_str(), AtomStyle::Runtime)?;
                write!(out, "/{arity}")
            }
            Fun::Closure {
                module,
                old_index,
                old_uniq,
                ..
            } => {
                out.write_str("#Fun<")?;
                write_atom_styled(out, module.as_str(), AtomStyle::Runtime)?;
                write!(out, ".{old_index}.{old_uniq}>")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use num_bigint::BigInt;

    use crate::etf::{Atom, BitBinary, Fun, Map, Pid, Port, Reference, Term};

    fn show(t: &Term) -> String {
        t.to_string()
    }

    fn atom(name: &str) -> String {
        Atom::new(name).to_string()
    }

    #[test]
    fn bare_atoms() {
        for name in ["a", "ok", "a@b", "a1_@Z", "true", "ßé", "ÿé", "aÀÞ"] {
            assert_eq!(atom(name), name);
        }
    }

    #[test]
    fn quoted_atoms() {
        let cases = [
            ("", "''"),
            ("a b", "'a b'"),
            ("A", "'A'"),
            ("_a", "'_a'"),
            ("1a", "'1a'"),
            ("a.b", "'a.b'"),
            ("a-b", "'a-b'"),
            ("q'x", "'q\\'x'"),
            ("a\\b", "'a\\\\b'"),
            ("a\"b", "'a\"b'"),
            ("\n", "'\\n'"),
            ("\u{0}", "'\\000'"),
            ("\u{7F}", "'\\d'"),
            ("\u{80}", "'\\200'"),
            ("\u{9F}", "'\\237'"),
            ("\u{A0}", "'\u{A0}'"),
            ("\u{C0}", "'\u{C0}'"),
            ("÷", "'÷'"),
            ("a÷", "'a÷'"),
            ("a×", "'a×'"),
            (
                "\u{7}\u{8}\t\n\u{B}\u{C}\r\u{1B}\u{1F}",
                "'\\007\\b\\t\\n\\v\\f\\r\\e\\037'",
            ),
            ("a\u{100}", "'a\\x{100}'"),
            (
                "привет",
                "'\\x{43F}\\x{440}\\x{438}\\x{432}\\x{435}\\x{442}'",
            ),
            ("\u{1F600}", "'\\x{1F600}'"),
        ];
        for (name, printed) in cases {
            assert_eq!(atom(name), printed, "{name:?}");
        }
    }

    #[test]
    fn reserved_words_are_quoted() {
        for w in super::RESERVED_WORDS
            .into_iter()
            .chain(super::RESERVED_SINCE_OTP_27)
        {
            assert_eq!(atom(w), format!("'{w}'"));
        }
        // Words that only look reserved stay bare.
        assert_eq!(atom("maybe_not"), "maybe_not");
        assert_eq!(atom("elsewhere"), "elsewhere");
    }

    #[test]
    fn integers() {
        assert_eq!(show(&Term::Int(0)), "0");
        assert_eq!(show(&Term::Int(-42)), "-42");
        assert_eq!(show(&Term::Int(i64::MIN)), "-9223372036854775808");
        let big = Term::big_int("-12345678901234567890123".parse::<BigInt>().unwrap());
        assert_eq!(show(&big), "-12345678901234567890123");
    }

    #[test]
    fn floats_match_otp_25() {
        // Each printed by OTP 25's io_lib:format("~w", [F]).
        let cases: [(f64, &str); 37] = [
            // Exact ties between two shortest candidates go to the even one.
            (900_719_925_474_101.0 + 0.25, "900719925474101.2"),
            (900_719_925_474_099.0 + 0.25, "900719925474099.2"),
            (90_071_992_547_409.0 + 0.125, "90071992547409.12"),
            (1.0e10, "1.0e10"),
            (0.1, "0.1"),
            (123456.0, "123456.0"),
            (1.0e21, "1.0e21"),
            (1.0e-5, "1.0e-5"),
            (0.0001, "0.0001"),
            (1.0e20, "1.0e20"),
            (1.2345678901234567e19, "1.2345678901234567e19"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (5.0e-324, "5.0e-324"),
            (1.0e15, "1.0e15"),
            (1.0e16, "1.0e16"),
            (1.2345678901234568e17, "1.2345678901234568e17"),
            (0.001, "0.001"),
            (0.01, "0.01"),
            (1000.0, "1.0e3"),
            (100.0, "100.0"),
            (0.00012, "1.2e-4"),
            (0.000123, "1.23e-4"),
            (1.5e-4, "1.5e-4"),
            (9007199254740992.0, "9.007199254740992e15"),
            (9007199254740990.0, "9007199254740990.0"),
            (123456789012345.0, "123456789012345.0"),
            (1234567890123456.0, "1234567890123456.0"),
            (0.0002, "0.0002"),
            (2.5, "2.5"),
            (-1.5, "-1.5"),
            (1.0, "1.0"),
            (10.0, "10.0"),
            (f64::MAX, "1.7976931348623157e308"),
            (f64::MIN_POSITIVE, "2.2250738585072014e-308"),
            (123.456, "123.456"),
            (0.3, "0.3"),
        ];
        for (x, printed) in cases {
            assert_eq!(show(&Term::Float(x)), printed, "{x:e}");
        }
    }

    #[test]
    fn binaries() {
        assert_eq!(show(&Term::binary([1, 2, 3])), "<<1,2,3>>");
        assert_eq!(show(&Term::binary(b"")), "<<>>");
        assert_eq!(show(&Term::binary(b"hi")), "<<104,105>>");
        let bits = BitBinary::new_term(Bytes::from_static(&[1, 2, 3 << 3]), 5).unwrap();
        assert_eq!(show(&bits), "<<1,2,3:5>>");
        let bits = BitBinary::new_term(Bytes::from_static(&[0x80]), 1).unwrap();
        assert_eq!(show(&bits), "<<1:1>>");
        let bits = BitBinary::new_term(Bytes::from_static(&[255, 0xE0]), 3).unwrap();
        assert_eq!(show(&bits), "<<255,7:3>>");
    }

    #[test]
    fn containers() {
        let list = Term::list(vec![Term::Int(1), Term::Int(2), Term::Int(3)]);
        assert_eq!(show(&list), "[1,2,3]");
        assert_eq!(show(&Term::NIL), "[]");
        let improper = Term::improper_list(vec![Term::Int(1)], Term::Int(2));
        assert_eq!(show(&improper), "[1|2]");
        let improper = Term::improper_list(vec![Term::NIL, Term::atom("a")], Term::atom("b"));
        assert_eq!(show(&improper), "[[],a|b]");
        let string = Term::list(vec![Term::Int(104), Term::Int(105)]);
        assert_eq!(show(&string), "[104,105]");
        assert_eq!(show(&Term::tuple(vec![])), "{}");
        let tuple = Term::tuple(vec![Term::atom("a"), Term::atom("b")]);
        assert_eq!(show(&tuple), "{a,b}");
        assert_eq!(show(&Term::Map(Map::new())), "#{}");
        let map = Map::from_entries(vec![
            (Term::tuple(vec![Term::atom("b")]), Term::Int(2)),
            (Term::atom("a"), Term::Int(1)),
            (Term::Int(1), Term::atom("x")),
            (Term::list(vec![Term::Int(115)]), Term::binary(b"b")),
        ]);
        // As OTP 25 prints #{a => 1, {b} => 2, 1 => x, "s" => <<"b">>}.
        assert_eq!(
            show(&Term::Map(map)),
            "#{1 => x,a => 1,{b} => 2,[115] => <<98>>}"
        );
    }

    #[test]
    fn non_normal_lists_print_as_erlang_sees_them() {
        // A list tail inside an improper list breaks the invariant, but still prints flat.
        let odd = Term::ImproperList(vec![Term::Int(1)], Box::new(Term::list(vec![Term::Int(2)])));
        assert_eq!(show(&odd), "[1,2]");
        let odd = Term::ImproperList(
            vec![Term::Int(1)],
            Box::new(Term::ImproperList(
                vec![Term::Int(2)],
                Box::new(Term::Int(3)),
            )),
        );
        assert_eq!(show(&odd), "[1,2|3]");
        let odd = Term::ImproperList(vec![], Box::new(Term::Int(3)));
        assert_eq!(show(&odd), "3");
    }

    #[test]
    fn identifiers() {
        let node = Atom::new("a@host");
        let pid = Term::Pid(Pid {
            node: node.clone(),
            id: 83,
            serial: 0,
            creation: 7,
        });
        assert_eq!(show(&pid), "<a@host.83.0>");
        let port = Term::Port(Port {
            node: Atom::new("b@h.example"),
            id: 5,
            creation: 1,
        });
        assert_eq!(show(&port), "#Port<'b@h.example'.5>");
        let r = Reference::new(node, 3, &[163209, 2589458434, 4050861591]).unwrap();
        assert_eq!(
            show(&Term::from(r)),
            "#Ref<a@host.4050861591.2589458434.163209>"
        );
    }

    #[test]
    fn funs() {
        let export = |m: &str, f: &str, arity| {
            show(&Term::from(Fun::Export {
                module: Atom::new(m),
                function: Atom::new(f),
                arity,
            }))
        };
        assert_eq!(export("lists", "map", 2), "fun lists:map/2");
        // What erlang:fun_to_list/1 writes (as UTF-8).
        assert_eq!(export("erlang", "and", 2), "fun erlang:and/2");
        assert_eq!(export("a-b", "c d", 0), "fun 'a-b':'c d'/0");
        assert_eq!(export("a@b", "q'x", 1), "fun 'a@b':'q\\'x'/1");
        assert_eq!(export("привет", "é", 0), "fun 'привет':é/0");
        assert_eq!(
            export("\u{0}\u{7F}\u{80}\u{9F}\u{A0}", "\u{1B}\n", 1),
            "fun '\\000\u{7F}\\200\\237\u{A0}':'\\033\\n'/1"
        );
        let closure = Term::from(Fun::Closure {
            arity: 1,
            uniq: [0; 16],
            index: 0,
            module: Atom::new("t"),
            old_index: 0,
            old_uniq: 98186715,
            pid: Pid {
                node: Atom::new("a@h"),
                id: 1,
                serial: 0,
                creation: 0,
            },
            free_vars: vec![Term::Int(1)],
        });
        assert_eq!(show(&closure), "#Fun<t.0.98186715>");
    }

    #[test]
    fn deep_terms_print_without_recursion() {
        let depth = 100_000;
        let mut t = Term::NIL;
        for _ in 0..depth {
            t = Term::list(vec![t]);
        }
        let text = show(&t);
        assert_eq!(text.len(), 2 * depth + 2);
        assert!(text.starts_with("[[[") && text.ends_with("]]]"));
        // Dropping a term this deep recurses; take it apart by hand.
        let mut t = t;
        while let Term::List(mut v) = t {
            t = v.pop().unwrap_or(Term::Int(0));
        }
    }

    #[test]
    fn alternate_form_writes_text_binaries_as_strings() {
        for (term, text) in [
            (Term::binary("hi \"x\"\n"), "<<\"hi \\\"x\\\"\\n\">>"),
            (
                Term::binary("d\u{e9}j\u{e0}"),
                "<<\"d\u{e9}j\u{e0}\"/utf8>>",
            ),
            (Term::binary([0u8, 1]), "<<0,1>>"),
            (Term::binary(""), "<<>>"),
        ] {
            let written = format!("{term:#}");
            assert_eq!(written, text);
            assert_eq!(Term::parse(&written).unwrap(), term, "{written}");
        }
    }
}
