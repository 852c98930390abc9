//! Reading Erlang term literals.
//!
//! A hand-written scanner and parser in one. Containers are parsed with an explicit stack
//! rather than by recursion, so hostile nesting meets [`MAX_DEPTH`] and never the end of the
//! thread's stack.

use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::ToPrimitive;

use super::print::{is_atom_char, is_atom_start, RESERVED_WORDS};
use super::{ParseError, MAX_BINARY_BYTES, MAX_DEPTH, MAX_INTEGER_DIGITS};
use crate::etf::term::{Atom, BitBinary, Fun, Map, Pid, Port, Reference, Term};

type Result<T> = std::result::Result<T, ParseError>;

/// Parses `text` as one term with an optional trailing `.`.
pub(super) fn parse(text: &str) -> Result<Term> {
    let budget_bytes = MAX_BINARY_BYTES.saturating_add((text.len() as u64).saturating_mul(4));
    let mut p = Parser {
        text,
        pos: 0,
        binary_budget_bits: budget_bytes.saturating_mul(8),
    };
    let term = p.term()?;
    p.skip_ws();
    if p.eat('.') {
        p.skip_ws();
    }
    match p.peek() {
        None => Ok(term),
        Some(c) => Err(p.error(format!("unexpected {} after the term", show(c)))),
    }
}

/// The literal reading of this parser, shared with the expression parser of [`crate::eval`]:
/// it scans the text with the same rules (whitespace and comments, atoms, numbers, strings,
/// binaries, pids, ports, references and export funs) so that both read literals alike.
pub(crate) struct Literals<'a> {
    p: Parser<'a>,
}

impl<'a> Literals<'a> {
    /// A scanner over `text`, with the binary budget of one [`Term::parse`] of it.
    pub fn new(text: &'a str) -> Literals<'a> {
        let budget_bytes = MAX_BINARY_BYTES.saturating_add((text.len() as u64).saturating_mul(4));
        Literals {
            p: Parser {
                text,
                pos: 0,
                binary_budget_bits: budget_bytes.saturating_mul(8),
            },
        }
    }

    /// The offset of the first character at or after `pos` that is not whitespace or part of
    /// a `%` comment.
    pub fn skip_ws(&mut self, pos: usize) -> usize {
        self.p.pos = pos;
        self.p.skip_ws();
        self.p.pos
    }

    /// An error at `offset`.
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        self.p.error_at(offset, message)
    }

    /// Reads the literal at `pos` that starts with a digit, `$`, `"`, `'`, `<<`, `<`,
    /// `#Ref<`, `#Port<` or the word `fun`: an unsigned number, a character, a string (as a
    /// list of code points, adjacent strings joined), a quoted atom, a binary, a pid, a
    /// reference, a port or an export fun. Returns the term and the offset past it.
    pub fn literal(&mut self, pos: usize) -> Result<(Term, usize)> {
        self.p.pos = pos;
        let p = &mut self.p;
        let term = match p.peek() {
            Some('"') => p.string_term()?,
            Some('\'') => Term::Atom(p.quoted_atom()?),
            Some('<') if p.rest().starts_with("<<") => p.binary()?,
            Some('<') => p.pid()?,
            Some('#') if p.eat_str("#Ref<") => p.reference()?,
            Some('#') if p.eat_str("#Port<") => p.port()?,
            Some('f') if p.eat_str("fun") => p.export_fun()?,
            _ => p.number()?,
        };
        Ok((term, p.pos))
    }
}

/// Quotes a character for an error message.
fn show(c: char) -> String {
    format!("`{}`", c.escape_debug())
}

/// Whitespace as `erl_scan` sees it: control characters, space, and U+0080 to U+00A0.
fn is_ws(c: char) -> bool {
    c <= ' ' || ('\u{80}'..='\u{A0}').contains(&c)
}

/// Whether `c` starts an Erlang variable: `_` or an uppercase Latin-1 letter.
pub(crate) fn is_var_start(c: char) -> bool {
    c == '_' || c.is_ascii_uppercase() || (('\u{C0}'..='\u{DE}').contains(&c) && c != '\u{D7}')
}

/// A container being read.
enum Frame {
    /// `[` and the elements so far.
    List(Vec<Term>),
    /// `[E1, ... |`, waiting for the tail.
    Tail(Vec<Term>),
    /// `{` and the elements so far.
    Tuple(Vec<Term>),
    /// `#{` and the entries so far, waiting for a key.
    MapKey(Vec<(Term, Term)>),
    /// `#{ ... Key =>`, waiting for the value.
    MapValue(Vec<(Term, Term)>, Term),
}

/// How a term starts: complete already, or a container that was opened.
enum Start {
    Leaf(Term),
    Open(Frame),
}

/// The value of a binary segment.
enum SegValue {
    /// An integer (`Term::Int` or `Term::BigInt`).
    Int(Term),
    Float(f64),
    /// A string: one segment per character.
    Str(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SegType {
    Integer,
    Float,
    Utf8,
    Utf16,
    Utf32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endian {
    Big,
    Little,
}

/// The type specifiers of a binary segment (`/integer-little-unit:8`).
#[derive(Default)]
struct Spec {
    ty: Option<SegType>,
    endian: Option<Endian>,
    signed: Option<bool>,
    unit: Option<u64>,
}

/// A bit string under construction; unused low bits of the last byte stay zero.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    bits: u64,
}

impl BitWriter {
    /// Appends the low `n` bits (1 to 8) of `value`.
    fn push(&mut self, value: u8, n: u32) {
        let aligned = value << (8 - n);
        let used = (self.bits % 8) as u32;
        match self.bytes.last_mut() {
            Some(last) if used != 0 => {
                *last |= aligned >> used;
                if used + n > 8 {
                    self.bytes.push(aligned << (8 - used));
                }
            }
            _ => self.bytes.push(aligned),
        }
        self.bits += u64::from(n);
    }

    /// Appends whole bytes.
    fn push_bytes(&mut self, bytes: &[u8]) {
        if self.bits.is_multiple_of(8) {
            self.bytes.extend_from_slice(bytes);
            self.bits += 8 * bytes.len() as u64;
        } else {
            for &b in bytes {
                self.push(b, 8);
            }
        }
    }

    /// Appends the low `bits` bits of the big-endian number in `be` (which has exactly
    /// `bits.div_ceil(8)` bytes), in the given byte order. Little-endian puts the whole
    /// low bytes first and the leftover high bits last, as Erlang does.
    fn push_number(&mut self, be: &[u8], bits: u64, endian: Endian) {
        let partial = (bits % 8) as u32;
        let (head, whole) = if partial == 0 {
            (None, be)
        } else {
            match be.split_first() {
                Some((first, rest)) => (Some(*first), rest),
                None => (None, be),
            }
        };
        match endian {
            Endian::Big => {
                if let Some(h) = head {
                    self.push(h, partial);
                }
                self.push_bytes(whole);
            }
            Endian::Little => {
                for &b in whole.iter().rev() {
                    self.push(b, 8);
                }
                if let Some(h) = head {
                    self.push(h, partial);
                }
            }
        }
    }

    fn finish(self) -> Term {
        let last_bits = (self.bits % 8) as u8;
        let bytes = Bytes::from(self.bytes);
        if last_bits == 0 {
            return Term::Binary(bytes);
        }
        BitBinary::new_term(bytes, last_bits).unwrap_or(Term::Binary(Bytes::new()))
    }
}

/// The two's complement of `value` in exactly `bits.div_ceil(8)` big-endian bytes: truncated
/// or sign-extended on the left.
fn twos_complement(value: &Term, bits: u64) -> Vec<u8> {
    let len = bits.div_ceil(8) as usize;
    let (signed, negative) = match value {
        Term::BigInt(b) => (b.to_signed_bytes_be(), b.sign() == num_bigint::Sign::Minus),
        Term::Int(i) => (i.to_be_bytes().to_vec(), *i < 0),
        _ => (Vec::new(), false),
    };
    if signed.len() >= len {
        signed[signed.len() - len..].to_vec()
    } else {
        let mut out = vec![if negative { 0xFF } else { 0 }; len - signed.len()];
        out.extend_from_slice(&signed);
        out
    }
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// How many more bits binaries may take in this parse.
    binary_budget_bits: u64,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.rest().chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn eat_str(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn error_at(&self, offset: usize, message: impl Into<String>) -> ParseError {
        ParseError::at(self.text, offset, message.into())
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        self.error_at(self.pos, message)
    }

    /// "unexpected X, expected `expected`" at the current position.
    fn unexpected(&self, expected: &str) -> ParseError {
        match self.peek() {
            Some(c) => self.error(format!("unexpected {}, expected {expected}", show(c))),
            None => self.error(format!("unexpected end of input, expected {expected}")),
        }
    }

    fn expect(&mut self, c: char) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.unexpected(&format!("`{c}`")))
        }
    }

    /// Skips whitespace and `%` comments.
    fn skip_ws(&mut self) {
        loop {
            match self.peek() {
                Some(c) if is_ws(c) => self.pos += c.len_utf8(),
                Some('%') => {
                    let rest = self.rest();
                    self.pos += rest.find('\n').unwrap_or(rest.len());
                }
                _ => return,
            }
        }
    }

    /// Reads one term, containers included.
    fn term(&mut self) -> Result<Term> {
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            self.skip_ws();
            let start = self.pos;
            let mut value = match self.start()? {
                Start::Leaf(t) => t,
                Start::Open(frame) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(self.error_at(
                            start,
                            format!("terms nest deeper than {MAX_DEPTH} levels"),
                        ));
                    }
                    stack.push(frame);
                    continue;
                }
            };
            // Hand the finished value to the containers, closing those that end here.
            loop {
                let Some(frame) = stack.pop() else {
                    return Ok(value);
                };
                self.skip_ws();
                match frame {
                    Frame::List(mut elems) => {
                        elems.push(value);
                        if self.eat(',') {
                            stack.push(Frame::List(elems));
                            break;
                        } else if self.eat('|') {
                            stack.push(Frame::Tail(elems));
                            break;
                        } else if self.eat(']') {
                            value = Term::List(elems);
                        } else {
                            return Err(self.unexpected("`,`, `|` or `]`"));
                        }
                    }
                    Frame::Tail(elems) => {
                        if !self.eat(']') {
                            return Err(self.unexpected("`]`"));
                        }
                        value = Term::improper_list(elems, value);
                    }
                    Frame::Tuple(mut elems) => {
                        elems.push(value);
                        if self.eat(',') {
                            stack.push(Frame::Tuple(elems));
                            break;
                        } else if self.eat('}') {
                            value = Term::Tuple(elems);
                        } else {
                            return Err(self.unexpected("`,` or `}`"));
                        }
                    }
                    Frame::MapKey(entries) => {
                        if self.eat_str("=>") {
                            stack.push(Frame::MapValue(entries, value));
                            break;
                        } else if self.rest().starts_with(":=") {
                            return Err(self.error("`:=` updates an existing map; use `=>`"));
                        } else {
                            return Err(self.unexpected("`=>`"));
                        }
                    }
                    Frame::MapValue(mut entries, key) => {
                        entries.push((key, value));
                        if self.eat(',') {
                            stack.push(Frame::MapKey(entries));
                            break;
                        } else if self.eat('}') {
                            value = Term::Map(Map::from_entries(entries));
                        } else {
                            return Err(self.unexpected("`,` or `}`"));
                        }
                    }
                }
            }
        }
    }

    /// Reads a leaf term, or the opening of a container.
    fn start(&mut self) -> Result<Start> {
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Err(self.unexpected("a term"));
        };
        let leaf = match c {
            '[' => {
                self.bump();
                self.skip_ws();
                if !self.eat(']') {
                    return Ok(Start::Open(Frame::List(Vec::new())));
                }
                Term::NIL
            }
            '{' => {
                self.bump();
                self.skip_ws();
                if !self.eat('}') {
                    return Ok(Start::Open(Frame::Tuple(Vec::new())));
                }
                Term::Tuple(Vec::new())
            }
            '#' => {
                if self.eat_str("#{") {
                    self.skip_ws();
                    if !self.eat('}') {
                        return Ok(Start::Open(Frame::MapKey(Vec::new())));
                    }
                    Term::Map(Map::new())
                } else if self.eat_str("#Ref<") {
                    self.reference()?
                } else if self.eat_str("#Port<") {
                    self.port()?
                } else if self.rest().starts_with("#Fun<") {
                    return Err(self.error("a closure (`#Fun<...>`) cannot be read back"));
                } else {
                    return Err(self.error("unexpected `#`, expected `#{`, `#Ref<` or `#Port<`"));
                }
            }
            '<' if self.rest().starts_with("<<") => self.binary()?,
            '<' => self.pid()?,
            '"' => self.string_term()?,
            '\'' => Term::Atom(self.quoted_atom()?),
            '$' | '+' | '-' | '0'..='9' => self.number()?,
            c if is_atom_start(c) => {
                let name = self.bare_name();
                if name == "fun" {
                    self.export_fun()?
                } else {
                    Term::Atom(self.bare_atom(start, name, false)?)
                }
            }
            c if is_var_start(c) => {
                self.bump();
                while self.peek().is_some_and(is_atom_char) {
                    self.bump();
                }
                let name = &self.text[start..self.pos];
                return Err(self.error_at(start, format!("`{name}` is a variable, not a term")));
            }
            _ => return Err(self.unexpected("a term")),
        };
        Ok(Start::Leaf(leaf))
    }

    /// Reads the characters of a bare atom (the first one is known to be a lowercase letter).
    fn bare_name(&mut self) -> &'a str {
        let start = self.pos;
        self.bump();
        while self.peek().is_some_and(is_atom_char) {
            self.bump();
        }
        &self.text[start..self.pos]
    }

    /// Checks a bare atom read at `start`.
    fn bare_atom(&self, start: usize, name: &str, allow_reserved: bool) -> Result<Atom> {
        if !allow_reserved && RESERVED_WORDS.contains(&name) {
            return Err(self.error_at(
                start,
                format!("`{name}` is a reserved word; write the atom as '{name}'"),
            ));
        }
        if name.chars().count() > Atom::MAX_CHARS {
            return Err(self.error_at(start, "atom is longer than 255 characters"));
        }
        Ok(Atom::new(name))
    }

    /// Reads a bare or quoted atom.
    fn atom(&mut self, allow_reserved: bool) -> Result<Atom> {
        let start = self.pos;
        match self.peek() {
            Some('\'') => self.quoted_atom(),
            Some(c) if is_atom_start(c) => {
                let name = self.bare_name();
                self.bare_atom(start, name, allow_reserved)
            }
            _ => Err(self.unexpected("an atom")),
        }
    }

    fn quoted_atom(&mut self) -> Result<Atom> {
        let start = self.pos;
        let name = self.quoted('\'', "quoted atom")?;
        if name.chars().count() > Atom::MAX_CHARS {
            return Err(self.error_at(start, "atom is longer than 255 characters"));
        }
        Ok(Atom::from(name))
    }

    /// Reads a string literal (and any that follow it) as the list of its code points.
    fn string_term(&mut self) -> Result<Term> {
        let s = self.string()?;
        Ok(Term::List(
            s.chars()
                .map(|c| Term::Int(i64::from(u32::from(c))))
                .collect(),
        ))
    }

    /// Reads a string literal and any that follow it (they concatenate).
    fn string(&mut self) -> Result<String> {
        let mut s = self.quoted('"', "string")?;
        loop {
            let before = self.pos;
            self.skip_ws();
            if self.peek() == Some('"') {
                let more = self.quoted('"', "string")?;
                s.push_str(&more);
            } else {
                self.pos = before;
                return Ok(s);
            }
        }
    }

    /// Reads text between `quote`s, resolving escapes.
    fn quoted(&mut self, quote: char, what: &str) -> Result<String> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(self.error_at(start, format!("unterminated {what}"))),
                Some(c) if c == quote => return Ok(out),
                Some('\\') => out.push(self.escape(start, what)?),
                Some(c) => out.push(c),
            }
        }
    }

    /// Reads an escape sequence after its `\`; `start` is where the literal began.
    fn escape(&mut self, start: usize, what: &str) -> Result<char> {
        let at = self.pos - 1;
        let Some(c) = self.bump() else {
            return Err(self.error_at(start, format!("unterminated {what}")));
        };
        let code = match c {
            'b' => 8,
            'd' => 127,
            'e' => 27,
            'f' => 12,
            'n' => 10,
            'r' => 13,
            's' => 32,
            't' => 9,
            'v' => 11,
            '0'..='7' => {
                let mut v = c.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    match self.peek().and_then(|d| d.to_digit(8)) {
                        Some(d) => {
                            self.bump();
                            v = v * 8 + d;
                        }
                        None => break,
                    }
                }
                v
            }
            'x' if self.eat('{') => {
                let mut v: u32 = 0;
                let mut digits = 0;
                loop {
                    match self.bump() {
                        Some('}') if digits > 0 => break,
                        Some(h) if h.is_ascii_hexdigit() => {
                            digits += 1;
                            let d = h.to_digit(16).unwrap_or(0);
                            v = v.saturating_mul(16).saturating_add(d);
                        }
                        _ => return Err(self.error_at(at, "malformed `\\x{...}` escape")),
                    }
                }
                v
            }
            'x' => {
                let hi = self.bump().and_then(|h| h.to_digit(16));
                let lo = self.bump().and_then(|h| h.to_digit(16));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => hi * 16 + lo,
                    _ => {
                        return Err(self.error_at(
                            at,
                            "malformed `\\x` escape: expected two hex digits or `{`",
                        ))
                    }
                }
            }
            '^' => match self.bump() {
                Some(c) => u32::from(c) & 31,
                None => return Err(self.error_at(start, format!("unterminated {what}"))),
            },
            other => u32::from(other),
        };
        char::from_u32(code).ok_or_else(|| {
            self.error_at(
                at,
                format!("escape gives {code:#X}, which is not a character"),
            )
        })
    }

    /// Reads `$c` or `$\escape`.
    fn char_literal(&mut self) -> Result<u32> {
        let start = self.pos;
        self.bump();
        match self.bump() {
            None => Err(self.error_at(start, "expected a character after `$`")),
            Some('\\') => Ok(u32::from(self.escape(start, "character literal")?)),
            Some(c) => Ok(u32::from(c)),
        }
    }

    /// Reads an integer, float or character literal, with an optional sign.
    fn number(&mut self) -> Result<Term> {
        let start = self.pos;
        let negative = if self.eat('-') {
            true
        } else {
            self.eat('+');
            false
        };
        if self.pos != start {
            self.skip_ws();
        }
        match self.peek() {
            Some('$') => {
                let c = i64::from(self.char_literal()?);
                return Ok(Term::Int(if negative { -c } else { c }));
            }
            Some(c) if c.is_ascii_digit() => {}
            _ => return Err(self.unexpected("a number")),
        }
        let digits_at = self.pos;
        let int_part = self.digits(10)?;
        if self.peek() == Some('#') {
            let base = int_part
                .parse::<u32>()
                .ok()
                .filter(|b| (2..=36).contains(b))
                .ok_or_else(|| self.error_at(digits_at, "invalid base; bases run from 2 to 36"))?;
            self.bump();
            if !self.peek().is_some_and(|c| c.is_digit(base)) {
                return Err(self.unexpected(&format!("a base-{base} digit")));
            }
            let digits = self.digits(base)?;
            return self.integer(start, &digits, base, negative);
        }
        if self.peek() == Some('.') && self.peek2().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
            let frac = self.digits(10)?;
            let mut text = format!("{int_part}.{frac}");
            if let Some(e @ ('e' | 'E')) = self.peek() {
                self.bump();
                text.push(e);
                if let Some(s @ ('+' | '-')) = self.peek() {
                    self.bump();
                    text.push(s);
                }
                if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(self.unexpected("the digits of the float's exponent"));
                }
                text.push_str(&self.digits(10)?);
            }
            let x: f64 = text
                .parse()
                .map_err(|_| self.error_at(start, "malformed float"))?;
            if !x.is_finite() {
                return Err(self.error_at(start, "float out of range"));
            }
            return Ok(Term::Float(if negative { -x } else { x }));
        }
        self.integer(start, &int_part, 10, negative)
    }

    /// Reads digits of `base` with single `_` separators between them.
    fn digits(&mut self, base: u32) -> Result<String> {
        let start = self.pos;
        let mut out = String::new();
        loop {
            match self.peek() {
                Some(c) if c.is_digit(base) => {
                    self.bump();
                    out.push(c);
                    if out.len() > MAX_INTEGER_DIGITS {
                        return Err(self.error_at(
                            start,
                            format!("number has more than {MAX_INTEGER_DIGITS} digits"),
                        ));
                    }
                }
                Some('_') if !out.is_empty() && self.peek2().is_some_and(|c| c.is_digit(base)) => {
                    self.bump();
                }
                _ => return Ok(out),
            }
        }
    }

    fn integer(&self, start: usize, digits: &str, base: u32, negative: bool) -> Result<Term> {
        if let Ok(v) = i64::from_str_radix(digits, base) {
            return Ok(Term::Int(if negative { -v } else { v }));
        }
        let big = BigInt::parse_bytes(digits.as_bytes(), base)
            .ok_or_else(|| self.error_at(start, "malformed integer"))?;
        Ok(Term::big_int(if negative { -big } else { big }))
    }

    /// Reads decimal digits (no sign, no separators) as a number no bigger than `max`.
    fn unsigned(&mut self, max: u64) -> Result<u64> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if start == self.pos {
            return Err(self.unexpected("a number"));
        }
        self.text[start..self.pos]
            .parse::<u64>()
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| self.error_at(start, format!("number out of range (0 to {max})")))
    }

    /// Reads the rest of `<Node.Id.Serial>` after the `<`.
    fn pid(&mut self) -> Result<Term> {
        self.bump();
        if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return Err(self.error("a pid needs its node's name, as in `<a@host.83.0>`"));
        }
        let node = self.atom(false)?;
        self.expect('.')?;
        let id = self.unsigned(u32::MAX.into())? as u32;
        self.expect('.')?;
        let serial = self.unsigned(u32::MAX.into())? as u32;
        self.expect('>')?;
        Ok(Term::Pid(Pid {
            node,
            id,
            serial,
            creation: 0,
        }))
    }

    /// Reads the rest of `#Port<Node.Id>` after the `#Port<`.
    fn port(&mut self) -> Result<Term> {
        let node = self.atom(false)?;
        self.expect('.')?;
        let id = self.unsigned(u64::MAX)?;
        self.expect('>')?;
        Ok(Term::Port(Port {
            node,
            id,
            creation: 0,
        }))
    }

    /// Reads the rest of `#Ref<Node.W...>` after the `#Ref<`: one to five words, most
    /// significant first.
    fn reference(&mut self) -> Result<Term> {
        let node = self.atom(false)?;
        let mut words = Vec::new();
        while self.peek() == Some('.') {
            if words.len() == Reference::MAX_WORDS {
                return Err(self.error("a reference has at most 5 words"));
            }
            self.bump();
            words.push(self.unsigned(u32::MAX.into())? as u32);
        }
        if words.is_empty() {
            return Err(self.unexpected("`.`"));
        }
        self.expect('>')?;
        words.reverse();
        Reference::new(node, 0, &words)
            .map(Term::from)
            .ok_or_else(|| self.error("malformed reference"))
    }

    /// Reads the rest of `fun Module:Function/Arity` after the `fun`. Names may be reserved
    /// words, as the runtime writes them bare.
    fn export_fun(&mut self) -> Result<Term> {
        self.skip_ws();
        let module = self.atom(true)?;
        self.skip_ws();
        self.expect(':')?;
        self.skip_ws();
        let function = self.atom(true)?;
        self.skip_ws();
        self.expect('/')?;
        self.skip_ws();
        let arity = self.unsigned(255)? as u8;
        Ok(Term::from(Fun::Export {
            module,
            function,
            arity,
        }))
    }

    /// Reads a binary `<<Segment, ...>>`.
    fn binary(&mut self) -> Result<Term> {
        self.pos += 2;
        self.skip_ws();
        let mut out = BitWriter::default();
        if self.eat_str(">>") {
            return Ok(out.finish());
        }
        loop {
            self.segment(&mut out)?;
            self.skip_ws();
            if self.eat(',') {
                self.skip_ws();
            } else if self.eat_str(">>") {
                return Ok(out.finish());
            } else {
                return Err(self.unexpected("`,` or `>>`"));
            }
        }
    }

    /// Reads one segment `Value[:Size][/Types]` and appends its bits.
    fn segment(&mut self, out: &mut BitWriter) -> Result<()> {
        let start = self.pos;
        let value = match self.peek() {
            Some('"') => SegValue::Str(self.string()?),
            Some('$' | '+' | '-' | '0'..='9') => match self.number()? {
                Term::Float(x) => SegValue::Float(x),
                int => SegValue::Int(int),
            },
            _ => {
                return Err(
                    self.unexpected("a binary segment (an integer, float, character or string)")
                )
            }
        };
        self.skip_ws();
        let size = if self.eat(':') {
            self.skip_ws();
            let at = self.pos;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.unexpected("a segment size"));
            }
            match self.number()? {
                Term::Int(n) if n >= 0 => Some(n as u64),
                Term::BigInt(_) => return Err(self.error_at(at, "segment size too large")),
                _ => return Err(self.error_at(at, "a segment size is a whole number")),
            }
        } else {
            None
        };
        self.skip_ws();
        let spec = if self.eat('/') {
            self.type_spec()?
        } else {
            Spec::default()
        };
        let ty = spec.ty.unwrap_or(SegType::Integer);
        let endian = spec.endian.unwrap_or(Endian::Big);
        let bits = match ty {
            SegType::Utf8 | SegType::Utf16 | SegType::Utf32 => {
                if size.is_some() || spec.unit.is_some() {
                    return Err(self.error_at(start, "a utf segment takes no size or unit"));
                }
                0
            }
            SegType::Integer | SegType::Float => {
                if spec.unit.is_some() && size.is_none() {
                    return Err(self.error_at(start, "a unit needs a size"));
                }
                let default = if ty == SegType::Float { 64 } else { 8 };
                size.unwrap_or(default)
                    .checked_mul(spec.unit.unwrap_or(1))
                    .ok_or_else(|| self.error_at(start, "segment size too large"))?
            }
        };
        if ty == SegType::Float && bits != 32 && bits != 64 {
            return Err(self.error_at(start, "a float segment is 32 or 64 bits"));
        }
        match value {
            SegValue::Str(s) => {
                for c in s.chars() {
                    let int = Term::Int(i64::from(u32::from(c)));
                    self.put(out, start, &int, ty, bits, endian)?;
                }
                Ok(())
            }
            SegValue::Int(int) => self.put(out, start, &int, ty, bits, endian),
            SegValue::Float(x) => {
                if ty != SegType::Float {
                    return Err(self.error_at(start, "a float segment needs the `float` type"));
                }
                self.put_float(out, start, x, bits, endian)
            }
        }
    }

    /// Reads type specifiers after the `/`.
    fn type_spec(&mut self) -> Result<Spec> {
        let mut spec = Spec::default();
        loop {
            self.skip_ws();
            let at = self.pos;
            let name = match self.peek() {
                Some(c) if is_atom_start(c) => self.bare_name(),
                _ => return Err(self.unexpected("a type specifier")),
            };
            let fresh = match name {
                "integer" => set(&mut spec.ty, SegType::Integer),
                "float" => set(&mut spec.ty, SegType::Float),
                "utf8" => set(&mut spec.ty, SegType::Utf8),
                "utf16" => set(&mut spec.ty, SegType::Utf16),
                "utf32" => set(&mut spec.ty, SegType::Utf32),
                "signed" => set(&mut spec.signed, true),
                "unsigned" => set(&mut spec.signed, false),
                "big" => set(&mut spec.endian, Endian::Big),
                "little" => set(&mut spec.endian, Endian::Little),
                "native" if cfg!(target_endian = "little") => set(&mut spec.endian, Endian::Little),
                "native" => set(&mut spec.endian, Endian::Big),
                "unit" => {
                    self.skip_ws();
                    self.expect(':')?;
                    self.skip_ws();
                    let unit_at = self.pos;
                    let unit = self.unsigned(256)?;
                    if unit == 0 {
                        return Err(self.error_at(unit_at, "a unit runs from 1 to 256"));
                    }
                    set(&mut spec.unit, unit)
                }
                "binary" | "bytes" | "bitstring" | "bits" => {
                    return Err(self.error_at(
                        at,
                        format!(
                            "`{name}` segments are not supported, only integer, float and utf ones"
                        ),
                    ))
                }
                _ => return Err(self.error_at(at, format!("unknown type specifier `{name}`"))),
            };
            if !fresh {
                return Err(self.error_at(at, format!("conflicting type specifier `{name}`")));
            }
            self.skip_ws();
            if !self.eat('-') {
                return Ok(spec);
            }
        }
    }

    /// Takes `bits` from the binary budget.
    fn spend(&mut self, at: usize, bits: u64) -> Result<()> {
        self.binary_budget_bits = self.binary_budget_bits.checked_sub(bits).ok_or_else(|| {
            self.error_at(
                at,
                "binaries too large: a parse may build 16 MiB plus four bytes per input byte",
            )
        })?;
        Ok(())
    }

    /// Appends an integer value as a segment of type `ty`.
    fn put(
        &mut self,
        out: &mut BitWriter,
        at: usize,
        int: &Term,
        ty: SegType,
        bits: u64,
        endian: Endian,
    ) -> Result<()> {
        match ty {
            SegType::Integer => {
                self.spend(at, bits)?;
                out.push_number(&twos_complement(int, bits), bits, endian);
                Ok(())
            }
            SegType::Float => {
                let x = match int {
                    Term::Int(i) => *i as f64,
                    Term::BigInt(b) => b.to_f64().unwrap_or(f64::INFINITY),
                    _ => f64::NAN,
                };
                if !x.is_finite() {
                    return Err(self.error_at(at, "integer too large for a float segment"));
                }
                self.put_float(out, at, x, bits, endian)
            }
            SegType::Utf8 | SegType::Utf16 | SegType::Utf32 => {
                let c = match int {
                    Term::Int(i) => u32::try_from(*i).ok().and_then(char::from_u32),
                    _ => None,
                }
                .ok_or_else(|| self.error_at(at, "not a Unicode code point"))?;
                let mut units = Vec::with_capacity(4);
                match ty {
                    SegType::Utf8 => units.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    SegType::Utf16 => {
                        for unit in c.encode_utf16(&mut [0; 2]) {
                            units.extend_from_slice(&match endian {
                                Endian::Big => unit.to_be_bytes(),
                                Endian::Little => unit.to_le_bytes(),
                            });
                        }
                    }
                    _ => units.extend_from_slice(&match endian {
                        Endian::Big => u32::from(c).to_be_bytes(),
                        Endian::Little => u32::from(c).to_le_bytes(),
                    }),
                }
                self.spend(at, 8 * units.len() as u64)?;
                out.push_bytes(&units);
                Ok(())
            }
        }
    }

    fn put_float(
        &mut self,
        out: &mut BitWriter,
        at: usize,
        x: f64,
        bits: u64,
        endian: Endian,
    ) -> Result<()> {
        self.spend(at, bits)?;
        if bits == 32 {
            let y = x as f32;
            if !y.is_finite() {
                return Err(self.error_at(at, "float does not fit 32 bits"));
            }
            match endian {
                Endian::Big => out.push_bytes(&y.to_be_bytes()),
                Endian::Little => out.push_bytes(&y.to_le_bytes()),
            }
        } else {
            match endian {
                Endian::Big => out.push_bytes(&x.to_be_bytes()),
                Endian::Little => out.push_bytes(&x.to_le_bytes()),
            }
        }
        Ok(())
    }
}

/// Sets `slot` if it is empty; returns whether it was.
fn set<T>(slot: &mut Option<T>, value: T) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(value);
    true
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use num_bigint::BigInt;

    use super::super::{MAX_DEPTH, MAX_INTEGER_DIGITS};
    use crate::etf::{Atom, BitBinary, Fun, Map, ParseError, Pid, Port, Reference, Term};

    fn p(text: &str) -> Term {
        match Term::parse(text) {
            Ok(t) => t,
            Err(e) => panic!("{text:?}: {e}"),
        }
    }

    fn err(text: &str) -> ParseError {
        match Term::parse(text) {
            Ok(t) => panic!("{text:?} parsed as {t:?}"),
            Err(e) => e,
        }
    }

    /// Asserts that `text` fails with a message containing `needle` at 1-based line:column.
    fn err_at(text: &str, needle: &str, line: usize, column: usize) {
        let e = err(text);
        assert!(e.message.contains(needle), "{text:?}: {e}");
        assert_eq!((e.line, e.column), (line, column), "{text:?}: {e}");
    }

    fn ints(values: &[i64]) -> Term {
        Term::list(values.iter().map(|&v| Term::Int(v)).collect::<Vec<_>>())
    }

    fn bits(bytes: &'static [u8], last_bits: u8) -> Term {
        BitBinary::new_term(Bytes::from_static(bytes), last_bits).unwrap()
    }

    #[test]
    fn atoms() {
        assert_eq!(p("ok"), Term::atom("ok"));
        assert_eq!(p("a@b_C9"), Term::atom("a@b_C9"));
        assert_eq!(p("ÿé"), Term::atom("ÿé"));
        assert_eq!(p("maybe"), Term::atom("maybe"));
        assert_eq!(p("''"), Term::atom(""));
        assert_eq!(p("'Hello World'"), Term::atom("Hello World"));
        assert_eq!(p("'and'"), Term::atom("and"));
        assert_eq!(p(r"'q\'x'"), Term::atom("q'x"));
        assert_eq!(
            p(r#"'\b\d\e\f\n\r\s\t\v\'\"\\'"#),
            Term::atom("\u{8}\u{7F}\u{1B}\u{C}\n\r \t\u{B}'\"\\")
        );
        assert_eq!(p(r"'\101\08\1234\777'"), Term::atom("A\u{0}8S4\u{1FF}"));
        assert_eq!(
            p(r"'\x41\x{43F}\x{1F600}\x{00041}'"),
            Term::atom("Aп\u{1F600}A")
        );
        assert_eq!(
            p(r"'\^a\^Z\^@\^?\^1'"),
            Term::atom("\u{1}\u{1A}\u{0}\u{1F}\u{11}")
        );
        assert_eq!(p(r"'\a\z\X41'"), Term::atom("azX41"));
        assert_eq!(p("'привет'"), Term::atom("привет"));
        assert_eq!(
            p(&format!("'{}'", "\u{1F600}".repeat(255)))
                .as_atom()
                .unwrap()
                .as_str()
                .chars()
                .count(),
            255
        );
    }

    #[test]
    fn integers() {
        assert_eq!(p("0"), Term::Int(0));
        assert_eq!(p("42"), Term::Int(42));
        assert_eq!(p("-42"), Term::Int(-42));
        assert_eq!(p("+7"), Term::Int(7));
        assert_eq!(p("- 1"), Term::Int(-1));
        assert_eq!(p("007"), Term::Int(7));
        assert_eq!(p("1_000_000"), Term::Int(1_000_000));
        assert_eq!(p("-9223372036854775808"), Term::Int(i64::MIN));
        assert_eq!(p("9223372036854775807"), Term::Int(i64::MAX));
        let big: BigInt = "9223372036854775808".parse().unwrap();
        assert_eq!(p("9223372036854775808"), Term::BigInt(big.clone()));
        assert_eq!(p("-9223372036854775809"), Term::BigInt(-big - 1));
        assert_eq!(p("16#FF"), Term::Int(255));
        assert_eq!(p("16#ff"), Term::Int(255));
        assert_eq!(p("-16#F_F"), Term::Int(-255));
        assert_eq!(p("2#1010"), Term::Int(10));
        assert_eq!(p("36#zZ"), Term::Int(1295));
        assert_eq!(p("1_6#10"), Term::Int(16));
        assert_eq!(
            p("16#FFFFFFFFFFFFFFFFFFFF"),
            Term::big_int(BigInt::from(u128::MAX >> 48))
        );
        assert_eq!(p("$a"), Term::Int(97));
        assert_eq!(p("$ "), Term::Int(32));
        assert_eq!(p("$\\n"), Term::Int(10));
        assert_eq!(p("$\\s"), Term::Int(32));
        assert_eq!(p("$\\^a"), Term::Int(1));
        assert_eq!(p("$\\x{10FFFF}"), Term::Int(0x10FFFF));
        assert_eq!(p("$\\101"), Term::Int(65));
        assert_eq!(p("$п"), Term::Int(0x43F));
        assert_eq!(p("-$a"), Term::Int(-97));
        assert_eq!(p("$$"), Term::Int(36));
    }

    #[test]
    fn floats() {
        assert_eq!(p("1.0"), Term::Float(1.0));
        assert_eq!(p("1.5e-3"), Term::Float(1.5e-3));
        assert_eq!(p("2.0E10"), Term::Float(2.0e10));
        assert_eq!(p("1.0e+5"), Term::Float(1.0e5));
        assert_eq!(p("-0.0"), Term::Float(-0.0));
        assert_eq!(p("0.0"), Term::Float(0.0));
        assert_eq!(p("1_000.000_1e1_0"), Term::Float(1.0000001e13));
        assert_eq!(p("5.0e-324"), Term::Float(5.0e-324));
        assert_eq!(p("1.0e-400"), Term::Float(0.0));
        assert_eq!(p("1.7976931348623157e308"), Term::Float(f64::MAX));
    }

    #[test]
    fn strings() {
        assert_eq!(p("\"\""), Term::NIL);
        assert_eq!(p("\"hi\""), ints(&[104, 105]));
        assert_eq!(p("\"a\" \"b\"  % comment\n \"c\""), ints(&[97, 98, 99]));
        assert_eq!(p("\"\" \"\""), Term::NIL);
        assert_eq!(p(r#""\"\n\x{43F}""#), ints(&[34, 10, 0x43F]));
        assert_eq!(p("\"a\nb\""), ints(&[97, 10, 98]));
        assert_eq!(
            p("\"привет\""),
            ints(&[0x43F, 0x440, 0x438, 0x432, 0x435, 0x442])
        );
        assert_eq!(
            p("[\"a\",\"b\"]"),
            Term::list(vec![ints(&[97]), ints(&[98])])
        );
    }

    #[test]
    fn binaries() {
        assert_eq!(p("<<>>"), Term::binary(b""));
        assert_eq!(p("<< >>"), Term::binary(b""));
        assert_eq!(p("<<1,2,3>>"), Term::binary([1, 2, 3]));
        assert_eq!(p("<<\"text\">>"), Term::binary(b"text"));
        assert_eq!(p("<<\"a\" \"b\", $c>>"), Term::binary(b"abc"));
        assert_eq!(p("<<\"привет\"/utf8>>"), Term::binary("привет"));
        assert_eq!(p("<<\"π\">>"), Term::binary([0xC0]));
        assert_eq!(p("<<1:3>>"), bits(&[0b0010_0000], 3));
        assert_eq!(p("<<1,2,3:5>>"), bits(&[1, 2, 3 << 3], 5));
        assert_eq!(p("<<255,7:3>>"), bits(&[255, 0xE0], 3));
        assert_eq!(p("<<1:1,1:1,0:6>>"), Term::binary([0xC0]));
        assert_eq!(p("<<1:4,2:4,3:12>>"), bits(&[0x12, 0x00, 0x30], 4));
        assert_eq!(p("<<-1>>"), Term::binary([255]));
        assert_eq!(p("<<256>>"), Term::binary([0]));
        assert_eq!(p("<<-1:12>>"), bits(&[255, 0xF0], 4));
        assert_eq!(p("<<1:0>>"), Term::binary(b""));
        assert_eq!(p("<<1:16>>"), Term::binary([0, 1]));
        assert_eq!(p("<<1:16/little>>"), Term::binary([1, 0]));
        assert_eq!(p("<<16#ABC:12/little>>"), bits(&[0xBC, 0xA0], 4));
        assert_eq!(
            p("<<16#ABCDE:20/little-unsigned>>"),
            bits(&[0xDE, 0xBC, 0xA0], 4)
        );
        assert_eq!(p("<<-1:12/little-signed>>"), bits(&[255, 0xF0], 4));
        assert_eq!(p("<<1:4/unit:8>>"), Term::binary([0, 0, 0, 1]));
        assert_eq!(p("<<1:2/integer-unit:4-big>>"), Term::binary([1]));
        assert_eq!(p("<<\"ab\":16>>"), Term::binary([0, 97, 0, 98]));
        assert_eq!(p("<<\"ab\"/utf16-little>>"), Term::binary([97, 0, 98, 0]));
        assert_eq!(
            p("<<16#1F600/utf16>>"),
            Term::binary([0xD8, 0x3D, 0xDE, 0x00])
        );
        assert_eq!(
            p("<<\"ab\"/utf32>>"),
            Term::binary([0, 0, 0, 97, 0, 0, 0, 98])
        );
        assert_eq!(p("<<$a/utf32-little>>"), Term::binary([97, 0, 0, 0]));
        assert_eq!(
            p("<<1.5/float>>"),
            Term::binary([63, 248, 0, 0, 0, 0, 0, 0])
        );
        assert_eq!(p("<<1.5:32/float>>"), Term::binary([63, 192, 0, 0]));
        assert_eq!(p("<<1.5:32/float-little>>"), Term::binary([0, 0, 192, 63]));
        assert_eq!(p("<<1/float>>"), Term::binary([63, 240, 0, 0, 0, 0, 0, 0]));
        let native = if cfg!(target_endian = "little") {
            [1, 0]
        } else {
            [0, 1]
        };
        assert_eq!(p("<<1:16/native>>"), Term::binary(native));
        let big = p("<<16#0102030405060708090A0B0C0D0E0F10:128>>");
        assert_eq!(big, Term::binary((1..=16).collect::<Vec<u8>>()));
        assert_eq!(p("<<-1:72>>"), Term::binary([255; 9]));
    }

    #[test]
    fn containers() {
        assert_eq!(p("[]"), Term::NIL);
        assert_eq!(p("[ ]"), Term::NIL);
        assert_eq!(p("[1, 2, 3]"), ints(&[1, 2, 3]));
        assert_eq!(
            p("[1,2|3]"),
            Term::improper_list(vec![Term::Int(1), Term::Int(2)], Term::Int(3))
        );
        assert_eq!(p("[1 | [2, 3]]"), ints(&[1, 2, 3]));
        assert_eq!(p("[1|[]]"), ints(&[1]));
        assert_eq!(p("{}"), Term::tuple(vec![]));
        assert_eq!(
            p("{a, {b}, []}"),
            Term::tuple(vec![
                Term::atom("a"),
                Term::tuple(vec![Term::atom("b")]),
                Term::NIL
            ])
        );
        assert_eq!(p("#{}"), Term::Map(Map::new()));
        let m = p("#{a => 1, {b} => 2, a => 3}");
        let want = Map::from_entries(vec![
            (Term::atom("a"), Term::Int(3)),
            (Term::tuple(vec![Term::atom("b")]), Term::Int(2)),
        ]);
        assert_eq!(m, Term::Map(want));
        assert_eq!(
            p("#{#{} => #{[] => <<>>}}"),
            Term::Map(Map::from_entries(vec![(
                Term::Map(Map::new()),
                Term::Map(Map::from_entries(vec![(Term::NIL, Term::binary(b""))]))
            )]))
        );
    }

    #[test]
    fn identifiers_and_funs() {
        let pid = Pid {
            node: Atom::new("a@host"),
            id: 83,
            serial: 0,
            creation: 0,
        };
        assert_eq!(p("<a@host.83.0>"), Term::Pid(pid.clone()));
        let quoted = Pid {
            node: Atom::new("a@h.example"),
            ..pid
        };
        assert_eq!(p("<'a@h.example'.83.0>"), Term::Pid(quoted));
        assert_eq!(
            p("#Port<a@host.18446744073709551615>"),
            Term::Port(Port {
                node: Atom::new("a@host"),
                id: u64::MAX,
                creation: 0
            })
        );
        let r = Reference::new(Atom::new("a@host"), 0, &[3, 2, 1]).unwrap();
        assert_eq!(p("#Ref<a@host.1.2.3>"), Term::from(r));
        let r = Reference::new(Atom::new("n"), 0, &[9]).unwrap();
        assert_eq!(p("#Ref<n.9>"), Term::from(r));
        let export = |m: &str, f: &str, arity| {
            Term::from(Fun::Export {
                module: Atom::new(m),
                function: Atom::new(f),
                arity,
            })
        };
        assert_eq!(p("fun lists:map/2"), export("lists", "map", 2));
        assert_eq!(p("fun erlang:and/2"), export("erlang", "and", 2));
        assert_eq!(p("fun 'a-b' : 'c d' / 255"), export("a-b", "c d", 255));
        assert_eq!(p("[fun m:f/0]"), Term::list(vec![export("m", "f", 0)]));
    }

    #[test]
    fn surroundings() {
        assert_eq!(p("  ok.  "), Term::atom("ok"));
        assert_eq!(p("% leading\nok % trailing"), Term::atom("ok"));
        assert_eq!(p("ok. % after the dot"), Term::atom("ok"));
        assert_eq!(p("1."), Term::Int(1));
        assert_eq!(
            p("{1, % one\n 2}"),
            Term::tuple(vec![Term::Int(1), Term::Int(2)])
        );
        assert_eq!(p("\u{A0}1\u{80}"), Term::Int(1));
    }

    #[test]
    fn error_positions() {
        err_at("", "unexpected end of input, expected a term", 1, 1);
        err_at("   ", "unexpected end of input", 1, 4);
        err_at("{a, b}}", "unexpected `}` after the term", 1, 7);
        err_at("{a,\n b}}", "unexpected `}` after the term", 2, 4);
        err_at("{a,}", "unexpected `}`, expected a term", 1, 4);
        err_at("[1,]", "unexpected `]`", 1, 4);
        err_at("[1 2]", "unexpected `2`, expected `,`, `|` or `]`", 1, 4);
        err_at("[1|2|3]", "expected `]`", 1, 5);
        err_at("[|1]", "unexpected `|`", 1, 2);
        err_at("{a b}", "expected `,` or `}`", 1, 4);
        err_at("#{a}", "expected `=>`", 1, 4);
        err_at("#{a := 1}", "`:=` updates", 1, 5);
        err_at("#{a => 1,}", "unexpected `}`", 1, 10);
        err_at("\"abc", "unterminated string", 1, 1);
        err_at("x = \"abc", "unexpected `=`", 1, 3);
        err_at("[\n  'abc", "unterminated quoted atom", 2, 3);
        err_at("'ab\\", "unterminated quoted atom", 1, 1);
        err_at("\"\\x4\"", "malformed `\\x` escape", 1, 2);
        err_at("\"\\x{}\"", "malformed `\\x{...}` escape", 1, 2);
        err_at("\"\\x{D800}\"", "not a character", 1, 2);
        err_at("\"\\x{110000}\"", "not a character", 1, 2);
        err_at("'\\x{FFFFFFFFFFFFFFFFFFFF}'", "not a character", 1, 2);
        err_at("Foo", "`Foo` is a variable", 1, 1);
        err_at("[a, _x]", "`_x` is a variable", 1, 5);
        err_at("and", "reserved word", 1, 1);
        err_at("{ok, receive}", "reserved word", 1, 6);
        err_at("1e5", "unexpected `e` after the term", 1, 2);
        err_at("1.5e", "exponent", 1, 5);
        err_at("1.5e+x", "exponent", 1, 6);
        err_at(".5", "unexpected `.`", 1, 1);
        err_at("1.e5", "unexpected `e`", 1, 3);
        err_at("1.5..", "unexpected `.` after the term", 1, 5);
        err_at("a.b", "unexpected `b`", 1, 3);
        err_at("1.0e400", "float out of range", 1, 1);
        err_at("1__0", "unexpected `_`", 1, 2);
        err_at("1_", "unexpected `_`", 1, 2);
        err_at("37#1", "invalid base", 1, 1);
        err_at("1#0", "invalid base", 1, 1);
        err_at("- 16#_F", "base-16 digit", 1, 6);
        err_at("2#102", "unexpected `2` after the term", 1, 5);
        err_at("-a", "expected a number", 1, 2);
        err_at("$", "expected a character after `$`", 1, 1);
        err_at("<<1.5>>", "needs the `float` type", 1, 3);
        err_at("<<a>>", "expected a binary segment", 1, 3);
        err_at("<<1 2>>", "expected `,` or `>>`", 1, 5);
        err_at("<<1/unit:8>>", "a unit needs a size", 1, 3);
        err_at("<<1:8/utf8>>", "takes no size", 1, 3);
        err_at("<<-1/utf8>>", "not a Unicode code point", 1, 3);
        err_at("<<16#D800/utf8>>", "not a Unicode code point", 1, 3);
        err_at("<<1.5:16/float>>", "32 or 64 bits", 1, 3);
        err_at("<<1.0e300:32/float>>", "does not fit 32 bits", 1, 3);
        err_at(
            "<<1/integer-float>>",
            "conflicting type specifier `float`",
            1,
            13,
        );
        err_at("<<1/bork>>", "unknown type specifier `bork`", 1, 5);
        err_at("<<<<1>>/binary>>", "expected a binary segment", 1, 3);
        err_at(
            "<<\"a\"/binary>>",
            "`binary` segments are not supported",
            1,
            7,
        );
        err_at("<<1:unit>>", "expected a segment size", 1, 5);
        err_at("<<1:-1>>", "expected a segment size", 1, 5);
        err_at("<<1/unit:0>>", "unit runs from 1", 1, 10);
        err_at("<<1:8.0>>", "whole number", 1, 5);
        err_at("<<1", "expected `,` or `>>`", 1, 4);
        err_at("<0.83.0>", "needs its node's name", 1, 2);
        err_at("<a@host.83>", "expected `.`", 1, 11);
        err_at("<a@host.83.4294967296>", "out of range", 1, 12);
        err_at("#Ref<a@host>", "expected `.`", 1, 12);
        err_at("#Ref<n.1.2.3.4.5.6>", "at most 5 words", 1, 17);
        err_at("#Port<n.-1>", "expected a number", 1, 9);
        err_at("#Fun<t.0.1>", "closure", 1, 1);
        err_at("#Foo", "unexpected `#`", 1, 1);
        err_at("fun lists/2", "expected `:`", 1, 10);
        err_at("fun m:f/256", "out of range", 1, 9);
        err_at(&format!("'{}'", "a".repeat(256)), "longer than 255", 1, 1);
        err_at(&"a".repeat(256), "longer than 255", 1, 1);
        err_at("ok\n\n   }", "unexpected `}` after the term", 3, 4);
        err_at("'é\n'x", "unexpected `x`", 2, 2);
        let e = err("é }");
        assert_eq!((e.offset, e.line, e.column), (3, 1, 3));
        assert_eq!(
            e.to_string(),
            "unexpected `}` after the term at line 1, column 3"
        );
    }

    #[test]
    fn depth_is_limited() {
        // `[]` is a leaf, as in the binary format: 512 open containers around it are fine.
        let ok = format!("{}[]{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let mut t = p(&ok);
        let mut depth = 0;
        while let Term::List(mut v) = t {
            depth += 1;
            t = v.pop().unwrap_or(Term::Int(0));
        }
        assert_eq!(depth, MAX_DEPTH + 1);
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let e = err(&deep);
        assert!(e.message.contains("nest deeper than 512"), "{e}");
        assert_eq!(e.offset, MAX_DEPTH);
        for open in ["[", "{", "#{", "[1|", "{a,", "#{a => "] {
            let e = err(&open.repeat(100_000));
            assert!(e.message.contains("nest deeper"), "{open}: {e}");
        }
        // Unclosed but shallow: a plain error.
        err_at("[[[", "unexpected end of input", 1, 4);
    }

    #[test]
    fn sizes_are_limited() {
        err_at("<<1:99999999999>>", "binaries too large", 1, 3);
        err_at("<<1:99999999999999999999999>>", "size too large", 1, 5);
        err_at("<<1:9223372036854775807/unit:256>>", "size too large", 1, 3);
        err_at("<<1:18446744073709551615>>", "size too large", 1, 5);
        let many = format!("[{}]", vec!["<<0:8000000>>"; 100].join(","));
        // 16 binaries of a million bytes fit the budget, the 17th does not.
        err_at(&many, "binaries too large", 1, 1 + 16 * 14 + 2 + 1);
        // A large but allowed binary.
        let one = p("<<0:8000000>>");
        assert_eq!(one.as_binary().map(|b| b.len()), Some(1_000_000));
        let long = "9".repeat(MAX_INTEGER_DIGITS + 1);
        err_at(&long, "more than 100000 digits", 1, 1);
        let fine = "9".repeat(MAX_INTEGER_DIGITS);
        assert!(matches!(p(&fine), Term::BigInt(_)));
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let cases = [
            "\"\\",
            "'\\",
            "$\\",
            "$\\x",
            "$\\x{",
            "$\\^",
            "\"\\x{41",
            "<<",
            "<<1:",
            "<<1/",
            "<<1/unit",
            "<<1/unit:",
            "<<\"",
            "#",
            "#{",
            "#{a",
            "#{a =>",
            "#Ref<",
            "#Port<",
            "<",
            "<a",
            "<a.",
            "<a.1.",
            "fun",
            "fun m",
            "fun m:",
            "fun m:f",
            "fun m:f/",
            "16#",
            "1.",
            "1.5e-",
            "-",
            "+",
            "- ",
            "[1|",
            "{1",
            "%",
            "\u{0}",
            "\u{FEFF}1",
            "\u{10FFFF}",
            "'\u{0}'",
            "ß",
            "×",
            "÷",
            "À",
            "<<1:8/little-little>>",
            "<<$\\x{110000}>>",
            "1..2",
            "[1,,2]",
        ];
        for text in cases {
            let _ = Term::parse(text);
        }
        // Every prefix of some valid text fails or parses without panicking.
        let text = "{ok, [1, -2.5e-3, $a, 16#FF, 'q\\'x', \"s\\x{43F}\", <<1:3, \"b\"/utf8>>, \
                    #{k => <a@h.1.2>}, #Ref<n.1.2>, #Port<n.3>, fun m:f/1 | x]}.";
        for (i, _) in text.char_indices() {
            let _ = Term::parse(&text[..i]);
        }
        assert!(Term::parse(text).is_ok());
        // Pseudo-random soup of syntax characters.
        let alphabet: Vec<char> = "[]{}()<>#,.|:/-+=$'\"\\%_ \n0123456789aAzeExX#^{}Ref<Port<fun"
            .chars()
            .collect();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..20_000 {
            let len = (next(&mut state) % 24) as usize;
            let s: String = (0..len)
                .map(|_| alphabet[(next(&mut state) % alphabet.len() as u64) as usize])
                .collect();
            let _ = Term::parse(&s);
        }
    }

    /// xorshift64*, for repeatable pseudo-random tests.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state >> 12;
        *state ^= *state << 25;
        *state ^= *state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn round_trip(t: &Term) {
        let text = t.to_string();
        match Term::parse(&text) {
            Ok(back) => assert_eq!(&back, t, "{text}"),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn print_then_parse_is_identity() {
        let node = Atom::new("a@host.example");
        let terms = vec![
            Term::atom("ok"),
            Term::atom(""),
            Term::atom("and"),
            Term::atom("q'x\\\n\u{0}\u{7F}\u{80}\u{9F}\u{A0}ÿ×п\u{1F600}"),
            Term::Int(i64::MIN),
            Term::Int(i64::MAX),
            Term::big_int(BigInt::from(3u8).pow(2_000)),
            Term::big_int(-BigInt::from(3u8).pow(200)),
            Term::Float(-0.0),
            Term::Float(f64::MAX),
            Term::Float(f64::MIN_POSITIVE),
            Term::Float(5e-324),
            Term::Float(900_719_925_474_101.0 + 0.25),
            Term::binary(b""),
            Term::binary((0..=255).collect::<Vec<u8>>()),
            bits(&[1, 2, 3 << 3], 5),
            bits(&[0x80], 1),
            bits(&[0xFE], 7),
            ints(&[104, 105]),
            Term::improper_list(vec![Term::NIL], Term::binary(b"t")),
            Term::tuple(vec![Term::tuple(vec![]), Term::Map(Map::new())]),
            Term::Map(Map::from_entries(vec![
                (Term::Int(1), Term::atom("a")),
                (Term::Float(1.0), Term::atom("b")),
                (Term::list(vec![Term::Int(1)]), Term::Map(Map::new())),
            ])),
            Term::Pid(Pid {
                node: node.clone(),
                id: u32::MAX,
                serial: 7,
                creation: 0,
            }),
            Term::Port(Port {
                node: node.clone(),
                id: u64::MAX,
                creation: 0,
            }),
            Term::from(Reference::new(node.clone(), 0, &[1, 2, 3, 4, 5]).unwrap()),
            Term::from(Reference::new(Atom::new("nonode@nohost"), 0, &[u32::MAX]).unwrap()),
            Term::from(Fun::Export {
                module: Atom::new("a@b"),
                function: Atom::new("and"),
                arity: 255,
            }),
            Term::from(Fun::Export {
                module: Atom::new("'\n\u{1B}\u{7F}\u{80}π"),
                function: Atom::new("Fun"),
                arity: 0,
            }),
        ];
        for t in &terms {
            round_trip(t);
        }
        round_trip(&Term::list(terms.clone()));
        round_trip(&Term::tuple(terms));
    }

    #[test]
    fn floats_round_trip() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            let x = f64::from_bits(next(&mut state));
            if x.is_finite() {
                round_trip(&Term::Float(x));
            }
        }
        for e in -324..=308 {
            for text in [format!("1e{e}"), format!("-4.9e{e}"), format!("1.2345e{e}")] {
                let x: f64 = text.parse().unwrap();
                if x.is_finite() {
                    round_trip(&Term::Float(x));
                }
            }
        }
    }

    #[test]
    fn atoms_round_trip() {
        let mut state = 0x1234_5678_9ABC_DEF1u64;
        for _ in 0..5_000 {
            let len = next(&mut state) % 8;
            let name: String = (0..len)
                .filter_map(|_| {
                    let pick = next(&mut state);
                    let code = match pick % 4 {
                        0 => pick >> 8 & 0x7F,
                        1 => pick >> 8 & 0xFF,
                        2 => pick >> 8 & 0x7FF,
                        _ => pick >> 8 & 0x10FFFF,
                    };
                    char::from_u32(code as u32)
                })
                .collect();
            round_trip(&Term::atom(&name));
            round_trip(&Term::from(Fun::Export {
                module: Atom::new(&name),
                function: Atom::new(&name),
                arity: 1,
            }));
        }
    }
}
