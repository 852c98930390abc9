//! The External Term Format: the [`Term`] model, its binary codec and its text syntax.
//!
//! - [`Term`] covers everything OTP 25 puts on the wire. Binaries are [`bytes::Bytes`] that share
//!   the decoded buffer, atoms are inline small strings, integers have an `i64` fast path.
//! - [`Term::decode`] / [`DecodeOptions`] read the binary format (with or without the version
//!   byte 131, compressed terms included) and treat the input as hostile: malformed input is a
//!   [`DecodeError`], never a panic, and nesting depth and inflated size are limited.
//! - [`Term::encode`] writes it back; every term re-encodes to bytes OTP's `binary_to_term`
//!   reads as the same term.
//! - `Display` prints a term as Erlang's `io:format("~w", [T])` does, and [`Term::parse`] reads
//!   Erlang term literals (`{ok, [1, 2.5, <<"bin">>, #{a => 'B'}]}`).
//! - [`ToTerm`] and [`FromTerm`] convert Rust values to and from terms.
//!
//! ```
//! use node_server::etf::{Term, ToTerm, FromTerm};
//!
//! let term = Term::parse("{hello, 42, <<\"payload\">>}").unwrap();
//! let bytes = term.encode();
//! assert_eq!(Term::decode(&bytes).unwrap(), term);
//! assert_eq!(term.to_string(), "{hello,42,<<112,97,121,108,111,97,100>>}");
//!
//! let pair: (String, i64) = (String::from("x"), 7);
//! let back = <(String, i64)>::from_term(&pair.to_term()).unwrap();
//! assert_eq!(back, pair);
//! ```

mod convert;
mod decode;
mod encode;
pub mod tag;
mod term;
pub(crate) mod text;

pub use convert::{ConversionError, FromTerm, ToMapEntries, ToTerm};
// The derive macros of the same names (macro namespace), so `#[derive(etf::ToTerm)]` works.
pub(crate) use decode::Fields;
pub use decode::{DecodeError, DecodeOptions};
pub(crate) use encode::{encode_pieces, encode_term, AtomWriter, InlineAtoms, Pieces, Share};
pub use node_server_derive::{FromTerm, ToTerm};
pub use term::{Atom, BitBinary, Fun, Map, Pid, Port, Reference, Term};
pub use text::ParseError;
