//! Erlang text syntax for terms: `Display` writes what `io_lib:format("~w", [T])` writes,
//! [`Term::parse`] reads term literals back.
//!
//! # Printing
//! `format!("{term}")` gives the text Erlang/OTP 25 gives for `io_lib:format("~w", [Term])`,
//! as UTF-8:
//! - atoms are bare when Erlang allows it (a lowercase Latin-1 letter, then Latin-1 letters,
//!   digits, `_` and `@`, and not a reserved word such as `and` or `receive`), otherwise quoted
//!   with Erlang's escapes: `'q\'x'`, `'\n'`, `'\000'`, and `\x{43F}` for characters above 255
//!   (`~w` writes atoms as Latin-1);
//! - integers in decimal, big ones too;
//! - floats in the shortest form that reads back exactly (the nearest such digits, an exact
//!   tie going to the even one, as Ryu in the runtime does), laid out as OTP 25's
//!   `float_to_list(F, [short])` does: `0.1`, `100.0`, `1.0e3`, `0.0001`, `1.2e-4`,
//!   `1.0e10`. Of the plain (`123.45`) and scientific (`1.2345e2`) layouts the shorter one
//!   wins, a tie goes to the plain one, and floats of magnitude 2^53 or more are always
//!   scientific;
//! - binaries as byte values, never as text: `<<104,105>>`, `<<>>`; a bit string ends with
//!   `Value:Bits`, as in `<<1,2,3:5>>`;
//! - lists, improper lists, tuples and maps as `[1,2]`, `[1|2]`, `{a,b}`, `#{a => 1,b => 2}`
//!   (strings are lists of integers, `[104,105]`); map entries come in the map's key order
//!   (Erlang writes maps of more than 32 keys in hash order, which is not reproduced).
//!
//! Erlang writes pids, ports and references with a node *index* that only means something
//! inside one runtime (`<0.83.0>`). This module writes the node name in its place, as an atom
//! quoted when `~w` would quote it, and leaves the creation out:
//!
//! - pid: Erlang `<0.83.0>`, here `<a@host.83.0>` (`<Node.Id.Serial>`);
//! - port: Erlang `#Port<0.5>`, here `#Port<a@host.5>` (`#Port<Node.Id>`);
//! - reference: Erlang `#Ref<0.4050861591.2589458434.163209>`, here
//!   `#Ref<a@host.4050861591.2589458434.163209>`: the node, then the one to five words most
//!   significant first, as Erlang writes them;
//! - export fun: `fun lists:map/2`, as Erlang;
//! - closure: `#Fun<t.0.31162762>` (module, old index, old uniq), as Erlang.
//!
//! Fun names follow the runtime's own atom rules (`erlang:fun_to_list/1`), which differ from
//! `~w`'s: reserved words stay bare (`fun erlang:and/2`), `@` needs quotes, and characters
//! above 255 are written as themselves.
//!
//! # Parsing
//! [`Term::parse`] reads one term literal in Erlang syntax, with an optional trailing `.`;
//! whitespace and `%` comments may surround it. It reads:
//! - bare and quoted atoms with every Erlang escape (`\n`, `\'`, `\101`, `\x41`, `\x{43F}`,
//!   `\^a`, ...); a reserved word must be quoted;
//! - integers of any size, with a sign, digit separators (`1_000`) and bases 2 to 36
//!   (`16#FF`), and character literals (`$a`, `$\n`);
//! - floats, which need digits on both sides of the point (`1.5`, `2.0e-3`);
//! - strings (`"hi"` is the list `[104,105]`; adjacent strings concatenate);
//! - binaries made of segments `Value:Size/Types`, where a value is an integer, a float, a
//!   character or a string and the types are `integer`, `float`, `utf8`, `utf16`, `utf32`,
//!   `signed`, `unsigned`, `big`, `little`, `native` and `unit:N` (`<<"text"/utf8>>`,
//!   `<<1:3>>`, `<<1.5/float>>`); like Erlang, an integer too wide for its segment is
//!   truncated;
//! - lists (proper and improper), tuples, maps (a later duplicate key wins), and the pid, port,
//!   reference and export-fun forms above, so that everything printed here except a closure
//!   reads back (pids, ports and references come back with creation 0).
//!
//! Input is treated as hostile: every failure is a [`ParseError`] that points at the offending
//! place, containers nest at most [`MAX_DEPTH`] deep, integer literals have at most
//! [`MAX_INTEGER_DIGITS`] digits, and the binaries of one parse hold at most
//! [`MAX_BINARY_BYTES`] bytes plus four per byte of input, so `<<0:99999999999>>` is an error
//! rather than an allocation.

use std::fmt;

use super::term::{Atom, Term};

mod parse;
mod print;

pub(crate) use parse::{is_var_start, Literals};
pub(crate) use print::{is_atom_char, is_atom_start, RESERVED_WORDS};

/// The deepest containers may nest in [`Term::parse`] input (the decoder's default too).
pub(crate) const MAX_DEPTH: usize = 512;

/// The most digits an integer literal may have in [`Term::parse`] input.
pub(crate) const MAX_INTEGER_DIGITS: usize = 100_000;

/// The bytes the binaries of one [`Term::parse`] may hold beyond four per byte of input.
pub(crate) const MAX_BINARY_BYTES: u64 = 16 << 20;

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

impl ParseError {
    /// An error at byte `offset` of `text`, with its line and column worked out.
    pub(crate) fn at(text: &str, offset: usize, message: String) -> ParseError {
        let offset = offset.min(text.len());
        // Offsets always fall on character boundaries, but stay safe if one did not.
        let before = text.get(..offset).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        ParseError {
            message,
            offset,
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl Term {
    /// Parses one Erlang term literal; a trailing `.` is optional.
    ///
    /// Whitespace and `%` comments may surround the term. Atoms, integers (any size, `16#FF`,
    /// `1_000`, `$a`), floats, strings (lists of code points), binaries (`<<"text"/utf8>>`,
    /// `<<1:3>>`), lists, tuples, maps, export funs and the pid, port and reference forms that
    /// `Display` writes (`<a@host.83.0>`, `#Port<a@host.5>`, `#Ref<a@host.1.2.3>`, all with
    /// creation 0) are read. Input may be hostile: nesting is limited to 512 levels, integer
    /// literals to 100 000 digits, and the binaries of one parse to 16 MiB plus four bytes per
    /// input byte; anything wrong is an error that points at the place, never a panic.
    ///
    /// ```
    /// use node_server::etf::Term;
    ///
    /// let t = Term::parse("{ok, [1, 2.5, <<\"hi\">>, #{a => 'B'}]}.").unwrap();
    /// assert_eq!(t.to_string(), "{ok,[1,2.5,<<104,105>>,#{a => 'B'}]}");
    ///
    /// let e = Term::parse("{a,\n b}}").unwrap_err();
    /// assert_eq!((e.line, e.column, e.offset), (2, 4, 7));
    /// assert_eq!(e.to_string(), "unexpected `}` after the term at line 2, column 4");
    /// ```
    pub fn parse(text: &str) -> Result<Term, ParseError> {
        parse::parse(text)
    }
}

impl fmt::Display for Term {
    /// Writes the term as `io_lib:format("~w", [Term])` does; pids, ports and references show
    /// the node name where Erlang shows a node index (`<a@host.83.0>`). The alternate form
    /// (`{:#}`) writes binaries that are printable text as `<<"text"/utf8>>`, which reads back
    /// as the same binary.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        print::write_term(f, self, f.alternate())
    }
}

impl fmt::Display for Atom {
    /// Writes the atom as `io_lib:format("~w", [Atom])` does, quoted when Erlang needs quotes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        print::write_atom(f, self.as_str())
    }
}
