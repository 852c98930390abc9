//! Conversions between Rust values and terms: [`ToTerm`] and [`FromTerm`].
//!
//! The mapping is the one an Erlang programmer would write by hand:
//!
//! | Rust | Erlang |
//! |---|---|
//! | integers of every width, [`BigInt`] | integer |
//! | `f32`, `f64` | float (reading also takes an integer) |
//! | `bool` | `true` / `false` |
//! | `String`, `str` | UTF-8 binary (reading also takes a list of code points) |
//! | [`Bytes`] | binary |
//! | `Vec<T>`, `[T]`, `[T; N]` | proper list |
//! | tuples `(A,)` to 8 elements | tuple |
//! | `()` | `ok` |
//! | `HashMap`, `BTreeMap` | map |
//! | `Option<T>` | `undefined` for `None`, the value itself for `Some` |
//! | `Result<T, E>` | `{ok, T}` / `{error, E}` |
//! | [`Atom`], [`Pid`], [`Port`], [`Reference`], [`Map`], [`Term`] | themselves |
//!
//! A `Vec<u8>` is a list of integers, as `[T]` is for every `T`; use [`Bytes`] for a binary.
//! The traits are deliberately not serde: the term shape is the contract with Erlang code, so it
//! is spelled out here (and by the derive macros) rather than left to a generic data model.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::ToPrimitive;

use super::term::{Atom, Map, Pid, Port, Reference, Term};

/// Converts a Rust value into a term.
pub trait ToTerm {
    /// The term.
    fn to_term(&self) -> Term;
}

/// A value whose term is always a map, given as that map's entries: what
/// `#[term(flatten)]` merges into the map of the struct or variant holding the field.
///
/// `#[derive(ToTerm)]` implements it for structs with named fields (not `#[term(record)]`);
/// [`Map`], `HashMap` and `BTreeMap` have it too. A flattened field of any other type is a
/// compile error (the trait bound is not met), so a flattened value never has to be a map at
/// run time.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a map, so it cannot be `#[term(flatten)]`",
    label = "not a map",
    note = "a flattened field needs `ToMapEntries`: a struct with named fields deriving `ToTerm`, a `Map`, a `HashMap` or a `BTreeMap`"
)]
pub trait ToMapEntries: ToTerm {
    /// Appends the entries of the value's map term to `entries`, in any order.
    fn to_map_entries(&self, entries: &mut Vec<(Term, Term)>);
}

/// Converts a term into a Rust value.
pub trait FromTerm: Sized {
    /// The value, or why the term does not fit.
    fn from_term(term: &Term) -> Result<Self, ConversionError>;
}

/// A term did not have the shape a Rust type needs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
#[non_exhaustive]
pub struct ConversionError {
    /// What the type needed.
    pub expected: &'static str,
    /// The term found, in Erlang syntax (shortened to about 120 characters).
    pub found: String,
}

impl ConversionError {
    /// The error for `found` not being `expected`.
    pub fn new(expected: &'static str, found: &Term) -> ConversionError {
        const MAX: usize = 120;
        let mut text = found.to_string();
        if text.len() > MAX {
            let mut cut = MAX;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("...");
        }
        ConversionError {
            expected,
            found: text,
        }
    }
}

impl ToTerm for Term {
    fn to_term(&self) -> Term {
        self.clone()
    }
}

impl FromTerm for Term {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        Ok(term.clone())
    }
}

impl<T: ToTerm + ?Sized> ToTerm for &T {
    fn to_term(&self) -> Term {
        (**self).to_term()
    }
}

impl<T: ToTerm + ?Sized> ToTerm for Box<T> {
    fn to_term(&self) -> Term {
        (**self).to_term()
    }
}

impl<T: FromTerm> FromTerm for Box<T> {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        T::from_term(term).map(Box::new)
    }
}

impl<T: ToTerm + ?Sized> ToTerm for Arc<T> {
    fn to_term(&self) -> Term {
        (**self).to_term()
    }
}

impl<T: FromTerm> FromTerm for Arc<T> {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        T::from_term(term).map(Arc::new)
    }
}

macro_rules! small_ints {
    ($($t:ty),*) => {$(
        impl ToTerm for $t {
            fn to_term(&self) -> Term {
                Term::Int(i64::from(*self))
            }
        }

        impl FromTerm for $t {
            fn from_term(term: &Term) -> Result<Self, ConversionError> {
                match term {
                    Term::Int(i) => <$t>::try_from(*i)
                        .map_err(|_| ConversionError::new(concat!("an integer in ", stringify!($t), " range"), term)),
                    _ => Err(ConversionError::new(concat!("an integer in ", stringify!($t), " range"), term)),
                }
            }
        }
    )*};
}

small_ints!(i8, i16, i32, i64, u8, u16, u32);

macro_rules! wide_ints {
    ($($t:ty),*) => {$(
        impl ToTerm for $t {
            fn to_term(&self) -> Term {
                match i64::try_from(*self) {
                    Ok(i) => Term::Int(i),
                    Err(_) => Term::BigInt(BigInt::from(*self)),
                }
            }
        }

        impl FromTerm for $t {
            fn from_term(term: &Term) -> Result<Self, ConversionError> {
                let expected = concat!("an integer in ", stringify!($t), " range");
                match term {
                    Term::Int(i) => <$t>::try_from(*i).map_err(|_| ConversionError::new(expected, term)),
                    Term::BigInt(b) => <$t>::try_from(b).map_err(|_| ConversionError::new(expected, term)),
                    _ => Err(ConversionError::new(expected, term)),
                }
            }
        }
    )*};
}

wide_ints!(u64, i128, u128, isize, usize);

impl ToTerm for BigInt {
    fn to_term(&self) -> Term {
        Term::big_int(self.clone())
    }
}

impl FromTerm for BigInt {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        match term {
            Term::Int(i) => Ok(BigInt::from(*i)),
            Term::BigInt(b) => Ok(b.clone()),
            _ => Err(ConversionError::new("an integer", term)),
        }
    }
}

impl ToTerm for f64 {
    fn to_term(&self) -> Term {
        Term::Float(*self)
    }
}

impl FromTerm for f64 {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        match term {
            Term::Float(f) => Ok(*f),
            Term::Int(i) => Ok(*i as f64),
            Term::BigInt(b) => b
                .to_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| ConversionError::new("a number", term)),
            _ => Err(ConversionError::new("a number", term)),
        }
    }
}

impl ToTerm for f32 {
    fn to_term(&self) -> Term {
        Term::Float(f64::from(*self))
    }
}

impl FromTerm for f32 {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        f64::from_term(term).map(|f| f as f32)
    }
}

impl ToTerm for bool {
    fn to_term(&self) -> Term {
        Term::Atom(if *self { Atom::TRUE } else { Atom::FALSE })
    }
}

impl FromTerm for bool {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        match term {
            Term::Atom(a) if a.as_str() == "true" => Ok(true),
            Term::Atom(a) if a.as_str() == "false" => Ok(false),
            _ => Err(ConversionError::new("true or false", term)),
        }
    }
}

impl ToTerm for () {
    fn to_term(&self) -> Term {
        Term::Atom(Atom::OK)
    }
}

impl FromTerm for () {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        if term.is_atom("ok") {
            Ok(())
        } else {
            Err(ConversionError::new("ok", term))
        }
    }
}

impl ToTerm for str {
    fn to_term(&self) -> Term {
        Term::binary(self.as_bytes())
    }
}

impl ToTerm for String {
    fn to_term(&self) -> Term {
        self.as_str().to_term()
    }
}

impl FromTerm for String {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        let expected = "a UTF-8 binary or a list of code points";
        match term {
            Term::Binary(b) => {
                String::from_utf8(b.to_vec()).map_err(|_| ConversionError::new(expected, term))
            }
            Term::List(chars) => chars
                .iter()
                .map(|c| match c {
                    Term::Int(i) => u32::try_from(*i).ok().and_then(char::from_u32),
                    _ => None,
                })
                .collect::<Option<String>>()
                .ok_or_else(|| ConversionError::new(expected, term)),
            _ => Err(ConversionError::new(expected, term)),
        }
    }
}

impl ToTerm for Bytes {
    fn to_term(&self) -> Term {
        Term::Binary(self.clone())
    }
}

impl FromTerm for Bytes {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        match term {
            Term::Binary(b) => Ok(b.clone()),
            _ => Err(ConversionError::new("a binary", term)),
        }
    }
}

macro_rules! identity {
    ($($t:ty => $variant:ident, $what:literal);* $(;)?) => {$(
        impl ToTerm for $t {
            fn to_term(&self) -> Term {
                Term::from(self.clone())
            }
        }

        impl FromTerm for $t {
            fn from_term(term: &Term) -> Result<Self, ConversionError> {
                match term {
                    Term::$variant(v) => Ok((*v).clone().into()),
                    _ => Err(ConversionError::new($what, term)),
                }
            }
        }
    )*};
}

identity! {
    Atom => Atom, "an atom";
    Pid => Pid, "a pid";
    Port => Port, "a port";
    Map => Map, "a map";
}

impl ToTerm for Reference {
    fn to_term(&self) -> Term {
        Term::from(self.clone())
    }
}

impl FromTerm for Reference {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        match term {
            Term::Reference(r) => Ok((**r).clone()),
            _ => Err(ConversionError::new("a reference", term)),
        }
    }
}

impl<T: ToTerm> ToTerm for [T] {
    fn to_term(&self) -> Term {
        Term::List(self.iter().map(ToTerm::to_term).collect())
    }
}

impl<T: ToTerm, const N: usize> ToTerm for [T; N] {
    fn to_term(&self) -> Term {
        self.as_slice().to_term()
    }
}

impl<T: ToTerm> ToTerm for Vec<T> {
    fn to_term(&self) -> Term {
        self.as_slice().to_term()
    }
}

impl<T: FromTerm> FromTerm for Vec<T> {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        match term {
            Term::List(items) => items.iter().map(T::from_term).collect(),
            _ => Err(ConversionError::new("a proper list", term)),
        }
    }
}

impl<T: ToTerm> ToTerm for Option<T> {
    fn to_term(&self) -> Term {
        match self {
            Some(v) => v.to_term(),
            None => Term::Atom(Atom::UNDEFINED),
        }
    }
}

impl<T: FromTerm> FromTerm for Option<T> {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        if term.is_atom("undefined") {
            Ok(None)
        } else {
            T::from_term(term).map(Some)
        }
    }
}

impl<T: ToTerm, E: ToTerm> ToTerm for Result<T, E> {
    fn to_term(&self) -> Term {
        match self {
            Ok(v) => Term::Tuple(vec![Term::Atom(Atom::OK), v.to_term()]),
            Err(e) => Term::Tuple(vec![Term::Atom(Atom::ERROR), e.to_term()]),
        }
    }
}

impl<T: FromTerm, E: FromTerm> FromTerm for Result<T, E> {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        match term.as_tuple() {
            Some([tag, v]) if tag.is_atom("ok") => T::from_term(v).map(Ok),
            Some([tag, e]) if tag.is_atom("error") => E::from_term(e).map(Err),
            _ => Err(ConversionError::new("{ok, _} or {error, _}", term)),
        }
    }
}

fn map_entries(term: &Term) -> Result<&Map, ConversionError> {
    match term {
        Term::Map(m) => Ok(m),
        _ => Err(ConversionError::new("a map", term)),
    }
}

impl<K: ToTerm, V: ToTerm, S> ToTerm for HashMap<K, V, S> {
    fn to_term(&self) -> Term {
        Term::Map(
            self.iter()
                .map(|(k, v)| (k.to_term(), v.to_term()))
                .collect(),
        )
    }
}

impl<K: FromTerm + Eq + Hash, V: FromTerm, S: BuildHasher + Default> FromTerm for HashMap<K, V, S> {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        map_entries(term)?
            .iter()
            .map(|(k, v)| Ok((K::from_term(k)?, V::from_term(v)?)))
            .collect()
    }
}

impl<K: ToTerm, V: ToTerm> ToTerm for BTreeMap<K, V> {
    fn to_term(&self) -> Term {
        Term::Map(
            self.iter()
                .map(|(k, v)| (k.to_term(), v.to_term()))
                .collect(),
        )
    }
}

// Listed by the note of `ToMapEntries`, not as candidates of every error.
#[diagnostic::do_not_recommend]
impl<K: ToTerm, V: ToTerm, S> ToMapEntries for HashMap<K, V, S> {
    fn to_map_entries(&self, entries: &mut Vec<(Term, Term)>) {
        entries.extend(self.iter().map(|(k, v)| (k.to_term(), v.to_term())));
    }
}

// Listed by the note of `ToMapEntries`, not as candidates of every error.
#[diagnostic::do_not_recommend]
impl<K: ToTerm, V: ToTerm> ToMapEntries for BTreeMap<K, V> {
    fn to_map_entries(&self, entries: &mut Vec<(Term, Term)>) {
        entries.extend(self.iter().map(|(k, v)| (k.to_term(), v.to_term())));
    }
}

// Listed by the note of `ToMapEntries`, not as candidates of every error.
#[diagnostic::do_not_recommend]
impl ToMapEntries for Map {
    fn to_map_entries(&self, entries: &mut Vec<(Term, Term)>) {
        entries.extend(self.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}

impl<K: FromTerm + Ord, V: FromTerm> FromTerm for BTreeMap<K, V> {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        map_entries(term)?
            .iter()
            .map(|(k, v)| Ok((K::from_term(k)?, V::from_term(v)?)))
            .collect()
    }
}

macro_rules! tuples {
    ($( ($($name:ident $idx:tt),+) = $len:literal ;)*) => {$(
        impl<$($name: ToTerm),+> ToTerm for ($($name,)+) {
            fn to_term(&self) -> Term {
                Term::Tuple(vec![$(self.$idx.to_term()),+])
            }
        }

        impl<$($name: FromTerm),+> FromTerm for ($($name,)+) {
            fn from_term(term: &Term) -> Result<Self, ConversionError> {
                match term.as_tuple() {
                    Some(elems) if elems.len() == $len => Ok(($($name::from_term(&elems[$idx])?,)+)),
                    _ => Err(ConversionError::new(concat!("a tuple of ", $len), term)),
                }
            }
        }
    )*};
}

tuples! {
    (A 0) = 1;
    (A 0, B 1) = 2;
    (A 0, B 1, C 2) = 3;
    (A 0, B 1, C 2, D 3) = 4;
    (A 0, B 1, C 2, D 3, E 4) = 5;
    (A 0, B 1, C 2, D 3, E 4, F 5) = 6;
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6) = 7;
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7) = 8;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip<T: ToTerm + FromTerm + PartialEq + std::fmt::Debug>(v: T) {
        let t = v.to_term();
        assert_eq!(T::from_term(&t).unwrap(), v, "{t:?}");
        let wire = Term::decode(&t.encode()).unwrap();
        assert_eq!(T::from_term(&wire).unwrap(), v, "{wire:?}");
    }

    #[test]
    fn scalars() {
        roundtrip(-5i8);
        roundtrip(u64::MAX);
        roundtrip(i128::MIN);
        roundtrip(u128::MAX);
        roundtrip(usize::MAX);
        roundtrip(1.5f64);
        roundtrip(true);
        roundtrip(());
        roundtrip(String::from("héllo"));
        roundtrip(Bytes::from_static(b"\x00\x01"));
        roundtrip(BigInt::from(7) << 200usize);
        assert!(u8::from_term(&Term::Int(256)).is_err());
        assert!(u64::from_term(&Term::Int(-1)).is_err());
        assert_eq!(f64::from_term(&Term::Int(2)).unwrap(), 2.0);
    }

    #[test]
    fn containers() {
        roundtrip(vec![1u32, 2, 3]);
        roundtrip(Vec::<String>::new());
        roundtrip((1i32, String::from("a"), true));
        roundtrip(Some(3u8));
        roundtrip(None::<u8>);
        roundtrip(Ok::<u8, String>(1));
        roundtrip(Err::<u8, String>("bad".into()));
        let mut m = HashMap::new();
        m.insert(String::from("k"), vec![1i64, -2]);
        roundtrip(m);
        let mut b = BTreeMap::new();
        b.insert(1u8, Atom::new("x"));
        roundtrip(b);
        assert_eq!(None::<u8>.to_term(), Term::atom("undefined"));
        assert_eq!(
            Ok::<u8, ()>(1).to_term(),
            Term::tuple(vec![Term::atom("ok"), Term::Int(1)])
        );
    }

    #[test]
    fn strings_read_charlists() {
        let t = Term::list(vec![Term::Int(104), Term::Int(0x43F)]);
        assert_eq!(String::from_term(&t).unwrap(), "h\u{43F}");
    }

    #[test]
    fn errors_name_what_was_expected() {
        let e = bool::from_term(&Term::Int(1)).unwrap_err();
        assert_eq!(e.expected, "true or false");
        let e = <(u8, u8)>::from_term(&Term::tuple(vec![Term::Int(1)])).unwrap_err();
        assert_eq!(e.expected, "a tuple of 2");
    }
}
