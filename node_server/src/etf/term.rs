//! The [`Term`] model: every value OTP 25 puts on the wire.
//!
//! Invariants that keep equality structural (so `==` on two [`Term`]s is Erlang's `=:=`):
//! - integers that fit an `i64` are always [`Term::Int`]; [`Term::BigInt`] holds only values
//!   outside that range (use [`Term::from`] with a `BigInt` to normalise);
//! - a proper list is [`Term::List`] (the empty list is `List(vec![])`); [`Term::ImproperList`]
//!   has at least one element and a tail that is not a list;
//! - a [`Map`] keeps its entries sorted by key in Erlang term order, keys unique;
//! - a [`BitBinary`] has 1 to 7 bits in its last byte (8 would make it a [`Term::Binary`]) and
//!   its unused low bits are zero.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::{FromPrimitive, ToPrimitive};
use smol_str::SmolStr;

/// An Erlang atom: UTF-8 text of at most 255 characters.
///
/// Atoms of up to 23 bytes are stored inline, longer ones behind a shared pointer, so cloning
/// never allocates and comparing is a short byte comparison.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Atom(SmolStr);

impl Atom {
    /// The most characters an atom may have (Erlang's own limit).
    pub const MAX_CHARS: usize = 255;

    /// The atom `true`.
    pub const TRUE: Atom = Atom(SmolStr::new_inline("true"));
    /// The atom `false`.
    pub const FALSE: Atom = Atom(SmolStr::new_inline("false"));
    /// The atom `undefined`, used for `Option::None`.
    pub const UNDEFINED: Atom = Atom(SmolStr::new_inline("undefined"));
    /// The atom `ok`.
    pub const OK: Atom = Atom(SmolStr::new_inline("ok"));
    /// The atom `error`.
    pub const ERROR: Atom = Atom(SmolStr::new_inline("error"));
    /// The empty atom `''`, used by control messages for unused fields.
    pub const EMPTY: Atom = Atom(SmolStr::new_inline(""));

    /// Makes an atom from text. Text longer than [`Atom::MAX_CHARS`] characters makes an atom
    /// that Erlang will refuse; use [`Atom::try_new`] to check.
    pub fn new(text: impl AsRef<str>) -> Atom {
        Atom(SmolStr::new(text.as_ref()))
    }

    /// Makes an atom like [`Atom::new`], inlined and faster for text of at most 23 bytes (most
    /// atoms): it is built in place instead of in a buffer that is then copied.
    #[inline]
    pub(crate) fn new_short(text: &str) -> Atom {
        if text.len() <= SmolStr::INLINE_CAP {
            Atom(SmolStr::new_inline(text))
        } else {
            Atom::new(text)
        }
    }

    /// Makes an atom at compile time from text of at most 23 bytes.
    ///
    /// # Panics
    /// At compile time (or run time outside const context) when `text` is longer than 23 bytes.
    pub const fn from_static(text: &'static str) -> Atom {
        Atom(SmolStr::new_inline(text))
    }

    /// Makes an atom, or `None` when `text` has more than [`Atom::MAX_CHARS`] characters.
    pub fn try_new(text: impl AsRef<str>) -> Option<Atom> {
        let text = text.as_ref();
        (text.len() <= Self::MAX_CHARS || text.chars().count() <= Self::MAX_CHARS)
            .then(|| Atom::new(text))
    }

    /// The atom's text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<&str> for Atom {
    fn from(text: &str) -> Atom {
        Atom::new(text)
    }
}

impl From<String> for Atom {
    fn from(text: String) -> Atom {
        Atom(SmolStr::from(text))
    }
}

impl AsRef<str> for Atom {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Atom {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Atom {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// An Erlang process identifier. [`Ord`] is Erlang's order for pids: serial, number, node,
/// creation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pid {
    /// The node the process lives on.
    pub node: Atom,
    /// The process number (OTP uses 28 bits of it on the wire today).
    pub id: u32,
    /// The serial number.
    pub serial: u32,
    /// The creation of the node incarnation that made the pid.
    pub creation: u32,
}

impl Ord for Pid {
    fn cmp(&self, other: &Pid) -> Ordering {
        (self.serial, self.id, &self.node, self.creation).cmp(&(
            other.serial,
            other.id,
            &other.node,
            other.creation,
        ))
    }
}

impl PartialOrd for Pid {
    fn partial_cmp(&self, other: &Pid) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An Erlang port identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Port {
    /// The node the port lives on.
    pub node: Atom,
    /// The port number (up to 64 bits with `V4_PORT_EXT`).
    pub id: u64,
    /// The creation of the node incarnation that made the port.
    pub creation: u32,
}

/// An Erlang reference: a node, a creation and one to five 32-bit words.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The node that made the reference.
    pub node: Atom,
    /// The creation of the node incarnation that made the reference.
    pub creation: u32,
    len: u8,
    words: [u32; Reference::MAX_WORDS],
}

impl Reference {
    /// The most ID words a reference carries (`NEWER_REFERENCE_EXT` in OTP 25).
    pub const MAX_WORDS: usize = 5;

    /// Makes a reference, or `None` when `words` is empty or longer than [`Reference::MAX_WORDS`].
    pub fn new(node: Atom, creation: u32, words: &[u32]) -> Option<Reference> {
        if words.is_empty() || words.len() > Self::MAX_WORDS {
            return None;
        }
        let mut all = [0; Self::MAX_WORDS];
        all[..words.len()].copy_from_slice(words);
        Some(Reference {
            node,
            creation,
            len: words.len() as u8,
            words: all,
        })
    }

    /// The ID words, least significant first as on the wire.
    pub fn words(&self) -> &[u32] {
        &self.words[..usize::from(self.len)]
    }
}

/// A bit string whose length is not a whole number of bytes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BitBinary {
    bytes: Bytes,
    last_bits: u8,
}

impl BitBinary {
    /// Makes a bit string of `bytes` whose last byte holds `last_bits` bits (its high bits).
    ///
    /// Returns a plain [`Term::Binary`] when `last_bits` is 8, `None` when `bytes` is empty or
    /// `last_bits` is 0 or above 8. Unused low bits of the last byte are cleared.
    pub fn new_term(bytes: Bytes, last_bits: u8) -> Option<Term> {
        if bytes.is_empty() || last_bits == 0 || last_bits > 8 {
            return None;
        }
        if last_bits == 8 {
            return Some(Term::Binary(bytes));
        }
        let mask = 0xffu8 << (8 - last_bits);
        let last = bytes[bytes.len() - 1];
        let bytes = if last & !mask == 0 {
            bytes
        } else {
            let mut owned = bytes.to_vec();
            let end = owned.len() - 1;
            owned[end] &= mask;
            Bytes::from(owned)
        };
        Some(Term::BitBinary(BitBinary { bytes, last_bits }))
    }

    /// The bytes; the last one holds [`BitBinary::last_bits`] bits in its high end.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// How many bits of the last byte belong to the bit string (1 to 7).
    pub fn last_bits(&self) -> u8 {
        self.last_bits
    }

    /// The length in bits.
    pub fn bit_len(&self) -> u64 {
        (self.bytes.len() as u64 - 1) * 8 + u64::from(self.last_bits)
    }
}

/// An Erlang fun. Closures are opaque: they are kept field by field so that they re-encode
/// unchanged, but only the node that made them can call them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Fun {
    /// `fun Module:Function/Arity` (`EXPORT_EXT`).
    Export {
        /// The module.
        module: Atom,
        /// The function name.
        function: Atom,
        /// The arity.
        arity: u8,
    },
    /// A closure (`NEW_FUN_EXT`).
    Closure {
        /// The arity.
        arity: u8,
        /// The MD5 of the module's code.
        uniq: [u8; 16],
        /// The fun's index in the module's fun table.
        index: u32,
        /// The module that defines the fun.
        module: Atom,
        /// The old-style index.
        old_index: u32,
        /// The old-style uniq value.
        old_uniq: u32,
        /// The process that made the fun.
        pid: Pid,
        /// The captured free variables.
        free_vars: Vec<Term>,
    },
}

/// An Erlang map: entries sorted by key in map-key order ([`Term::map_key_cmp`]: term order
/// with integers before floats, as OTP sorts and prints them), keys unique.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Map {
    entries: Vec<(Term, Term)>,
}

impl Map {
    /// An empty map.
    pub fn new() -> Map {
        Map::default()
    }

    /// Builds a map from entries in any order; a later entry with an equal key wins.
    pub fn from_entries(mut entries: Vec<(Term, Term)>) -> Map {
        if !is_sorted_unique(&entries) {
            // A stable sort keeps equal keys in input order, so the last one is the later entry.
            entries.sort_by(|a, b| a.0.map_key_cmp(&b.0));
            let mut deduped: Vec<(Term, Term)> = Vec::with_capacity(entries.len());
            for entry in entries {
                match deduped.last_mut() {
                    Some(last) if last.0 == entry.0 => *last = entry,
                    _ => deduped.push(entry),
                }
            }
            entries = deduped;
        }
        Map { entries }
    }

    /// Builds a map from entries that must not repeat a key; returns the repeated key otherwise.
    pub(crate) fn from_unique_entries(mut entries: Vec<(Term, Term)>) -> Result<Map, Term> {
        if !is_sorted_unique(&entries) {
            entries.sort_by(|a, b| a.0.map_key_cmp(&b.0));
            if let Some(pair) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(pair[0].0.clone());
            }
        }
        Ok(Map { entries })
    }

    /// The value under `key`.
    pub fn get(&self, key: &Term) -> Option<&Term> {
        self.entries
            .binary_search_by(|(k, _)| k.map_key_cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// Inserts or replaces the value under `key`, returning the old value.
    pub fn insert(&mut self, key: Term, value: Term) -> Option<Term> {
        match self.entries.binary_search_by(|(k, _)| k.map_key_cmp(&key)) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Removes the entry under `key`, returning its value.
    pub fn remove(&mut self, key: &Term) -> Option<Term> {
        self.entries
            .binary_search_by(|(k, _)| k.map_key_cmp(key))
            .ok()
            .map(|i| self.entries.remove(i).1)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Term, &Term)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The entries in key order, as a slice.
    pub fn entries(&self) -> &[(Term, Term)] {
        &self.entries
    }

    /// Takes the entries out, in key order.
    pub fn into_entries(self) -> Vec<(Term, Term)> {
        self.entries
    }
}

fn is_sorted_unique(entries: &[(Term, Term)]) -> bool {
    entries
        .windows(2)
        .all(|w| w[0].0.map_key_cmp(&w[1].0) == Ordering::Less)
}

impl FromIterator<(Term, Term)> for Map {
    fn from_iter<I: IntoIterator<Item = (Term, Term)>>(iter: I) -> Map {
        Map::from_entries(iter.into_iter().collect())
    }
}

/// An Erlang term.
///
/// `==` is Erlang's exact equality (`=:=`): `1` and `1.0` differ, and so do `0.0` and `-0.0`.
/// [`Ord`] is Erlang's term order (number < atom < reference < fun < port < pid < tuple < map <
/// list < bit string), with an integer sorting before a float of equal value, as map keys do.
#[derive(Clone, Debug)]
pub enum Term {
    /// An atom.
    Atom(Atom),
    /// An integer that fits an `i64`.
    Int(i64),
    /// An integer outside the `i64` range.
    BigInt(BigInt),
    /// A float (Erlang has no NaN or infinities).
    Float(f64),
    /// A binary. Decoding shares the input buffer instead of copying.
    Binary(Bytes),
    /// A bit string that is not a whole number of bytes.
    BitBinary(BitBinary),
    /// A proper list; `List(vec![])` is `[]`.
    List(Vec<Term>),
    /// `[E1, ..., En | Tail]` with at least one element and a tail that is not a list.
    ImproperList(Vec<Term>, Box<Term>),
    /// A tuple.
    Tuple(Vec<Term>),
    /// A map.
    Map(Map),
    /// A process identifier.
    Pid(Pid),
    /// A port identifier.
    Port(Port),
    /// A reference.
    Reference(Box<Reference>),
    /// A fun.
    Fun(Box<Fun>),
}

impl Term {
    /// The empty list `[]`.
    pub const NIL: Term = Term::List(Vec::new());

    /// An atom term.
    pub fn atom(text: impl AsRef<str>) -> Term {
        Term::Atom(Atom::new(text))
    }

    /// A tuple term.
    pub fn tuple(elems: impl Into<Vec<Term>>) -> Term {
        Term::Tuple(elems.into())
    }

    /// A proper list term.
    pub fn list(elems: impl Into<Vec<Term>>) -> Term {
        Term::List(elems.into())
    }

    /// `[elems | tail]`, normalised: a list tail is merged, no elements gives the tail itself.
    pub fn improper_list(mut elems: Vec<Term>, tail: Term) -> Term {
        match tail {
            Term::List(rest) => {
                elems.extend(rest);
                Term::List(elems)
            }
            Term::ImproperList(rest, tail) => {
                elems.extend(rest);
                Term::ImproperList(elems, tail)
            }
            tail if elems.is_empty() => tail,
            tail => Term::ImproperList(elems, Box::new(tail)),
        }
    }

    /// A binary term that copies `data`.
    pub fn binary(data: impl AsRef<[u8]>) -> Term {
        Term::Binary(Bytes::copy_from_slice(data.as_ref()))
    }

    /// An integer term from a big integer, normalised to [`Term::Int`] when it fits.
    pub fn big_int(value: BigInt) -> Term {
        match value.to_i64() {
            Some(small) => Term::Int(small),
            None => Term::BigInt(value),
        }
    }

    /// The atom, if this is one.
    pub fn as_atom(&self) -> Option<&Atom> {
        match self {
            Term::Atom(a) => Some(a),
            _ => None,
        }
    }

    /// Whether this is the atom with the given text.
    pub fn is_atom(&self, text: &str) -> bool {
        matches!(self, Term::Atom(a) if a.as_str() == text)
    }

    /// The tuple's elements, if this is a tuple.
    pub fn as_tuple(&self) -> Option<&[Term]> {
        match self {
            Term::Tuple(t) => Some(t),
            _ => None,
        }
    }

    /// The integer, if this is one that fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Term::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The binary's bytes, if this is a binary.
    pub fn as_binary(&self) -> Option<&Bytes> {
        match self {
            Term::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// Whether this is the empty list.
    pub fn is_nil(&self) -> bool {
        matches!(self, Term::List(l) if l.is_empty())
    }

    /// The rank of the term's type in Erlang term order.
    fn type_rank(&self) -> u8 {
        match self {
            Term::Int(_) | Term::BigInt(_) | Term::Float(_) => 0,
            Term::Atom(_) => 1,
            Term::Reference(_) => 2,
            Term::Fun(_) => 3,
            Term::Port(_) => 4,
            Term::Pid(_) => 5,
            Term::Tuple(_) => 6,
            Term::Map(_) => 7,
            Term::List(_) | Term::ImproperList(..) => 8,
            Term::Binary(_) | Term::BitBinary(_) => 9,
        }
    }
}

impl Default for Term {
    fn default() -> Term {
        Term::NIL
    }
}

impl From<Atom> for Term {
    fn from(a: Atom) -> Term {
        Term::Atom(a)
    }
}

impl From<Pid> for Term {
    fn from(p: Pid) -> Term {
        Term::Pid(p)
    }
}

impl From<Port> for Term {
    fn from(p: Port) -> Term {
        Term::Port(p)
    }
}

impl From<Reference> for Term {
    fn from(r: Reference) -> Term {
        Term::Reference(Box::new(r))
    }
}

impl From<Map> for Term {
    fn from(m: Map) -> Term {
        Term::Map(m)
    }
}

impl From<Fun> for Term {
    fn from(f: Fun) -> Term {
        Term::Fun(Box::new(f))
    }
}

impl From<BigInt> for Term {
    fn from(b: BigInt) -> Term {
        Term::big_int(b)
    }
}

impl PartialEq for Term {
    fn eq(&self, other: &Term) -> bool {
        use Term::*;
        match (self, other) {
            (Atom(a), Atom(b)) => a == b,
            (Int(a), Int(b)) => a == b,
            (BigInt(a), BigInt(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Binary(a), Binary(b)) => a == b,
            (BitBinary(a), BitBinary(b)) => a == b,
            (List(a), List(b)) => a == b,
            (ImproperList(a, at), ImproperList(b, bt)) => a == b && at == bt,
            (Tuple(a), Tuple(b)) => a == b,
            (Map(a), Map(b)) => a == b,
            (Pid(a), Pid(b)) => a == b,
            (Port(a), Port(b)) => a == b,
            (Reference(a), Reference(b)) => a == b,
            (Fun(a), Fun(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Term {}

impl Hash for Term {
    fn hash<H: Hasher>(&self, state: &mut H) {
        std::mem::discriminant(self).hash(state);
        match self {
            Term::Atom(a) => a.hash(state),
            Term::Int(i) => i.hash(state),
            Term::BigInt(b) => b.hash(state),
            Term::Float(f) => f.to_bits().hash(state),
            Term::Binary(b) => b.hash(state),
            Term::BitBinary(b) => b.hash(state),
            Term::List(l) | Term::Tuple(l) => l.hash(state),
            Term::ImproperList(l, t) => {
                l.hash(state);
                t.hash(state);
            }
            Term::Map(m) => m.hash(state),
            Term::Pid(p) => p.hash(state),
            Term::Port(p) => p.hash(state),
            Term::Reference(r) => r.hash(state),
            Term::Fun(f) => f.hash(state),
        }
    }
}

impl PartialOrd for Term {
    fn partial_cmp(&self, other: &Term) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Term {
    fn cmp(&self, other: &Term) -> Ordering {
        compare(self, other, false)
    }
}

impl Term {
    /// The order of map keys: term order, except that every integer sorts before every float,
    /// at any depth (OTP's order for map keys, and how it prints maps).
    pub fn map_key_cmp(&self, other: &Term) -> Ordering {
        compare(self, other, true)
    }
}

fn compare_seq(a: &[Term], b: &[Term], keys: bool) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let o = compare(x, y, keys);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

/// Term order; with `keys`, integers sort before floats whatever their values.
fn compare(a: &Term, b: &Term, keys: bool) -> Ordering {
    use Term::*;
    let (this, other) = (a, b);
    {
        let by_rank = this.type_rank().cmp(&other.type_rank());
        if by_rank != Ordering::Equal {
            return by_rank;
        }
        match (this, other) {
            (Float(_), Int(_) | BigInt(_)) if keys => Ordering::Greater,
            (Int(_) | BigInt(_), Float(_)) if keys => Ordering::Less,
            (Int(_) | BigInt(_) | Float(_), _) => cmp_numbers(this, other),
            (Atom(a), Atom(b)) => a.cmp(b),
            (Reference(a), Reference(b)) => cmp_refs(a, b),
            (Fun(a), Fun(b)) => cmp_funs(a, b),
            // Erlang orders ports by node, then number and creation, and pids by serial,
            // number, node and creation (checked against OTP 25).
            (Port(a), Port(b)) => (&a.node, a.id, a.creation).cmp(&(&b.node, b.id, b.creation)),
            (Pid(a), Pid(b)) => a.cmp(b),
            (Tuple(a), Tuple(b)) => a.len().cmp(&b.len()).then_with(|| compare_seq(a, b, keys)),
            (Map(a), Map(b)) => cmp_maps(a, b, keys),
            (List(_) | ImproperList(..), _) => cmp_lists(this, other, keys),
            (Binary(_) | BitBinary(_), _) => cmp_bits(this, other),
            _ => Ordering::Equal,
        }
    }
}

fn cmp_numbers(a: &Term, b: &Term) -> Ordering {
    use Term::*;
    match (a, b) {
        (Int(x), Int(y)) => x.cmp(y),
        (BigInt(x), BigInt(y)) => x.cmp(y),
        // A normalised BigInt lies outside the i64 range, so its sign decides.
        (Int(_), BigInt(y)) => {
            if y.sign() == num_bigint::Sign::Minus {
                Ordering::Greater
            } else {
                Ordering::Less
            }
        }
        (BigInt(_), Int(_)) => cmp_numbers(b, a).reverse(),
        (Float(x), Float(y)) => x.total_cmp(y),
        (Int(_) | BigInt(_), Float(f)) => cmp_int_float(a, *f).then(Ordering::Less),
        (Float(f), Int(_) | BigInt(_)) => cmp_int_float(b, *f).reverse().then(Ordering::Greater),
        _ => Ordering::Equal,
    }
}

/// Compares an integer term with a float by exact value.
fn cmp_int_float(int: &Term, f: f64) -> Ordering {
    if f.is_nan() {
        return Ordering::Less;
    }
    let truncated = f.trunc();
    let whole = match num_bigint::BigInt::from_f64(truncated) {
        Some(w) => w,
        None => {
            return if f > 0.0 {
                Ordering::Less
            } else {
                Ordering::Greater
            }
        }
    };
    let by_whole = match int {
        Term::Int(i) => num_bigint::BigInt::from(*i).cmp(&whole),
        Term::BigInt(b) => b.cmp(&whole),
        _ => Ordering::Equal,
    };
    by_whole.then_with(|| {
        let frac = f - truncated;
        0.0f64.partial_cmp(&frac).unwrap_or(Ordering::Equal)
    })
}

fn cmp_refs(a: &Reference, b: &Reference) -> Ordering {
    // Erlang compares node, then the words from most significant down.
    a.node
        .cmp(&b.node)
        .then_with(|| a.words().len().cmp(&b.words().len()))
        .then_with(|| a.words().iter().rev().cmp(b.words().iter().rev()))
        .then_with(|| a.creation.cmp(&b.creation))
}

fn cmp_funs(a: &Fun, b: &Fun) -> Ordering {
    match (a, b) {
        (Fun::Export { .. }, Fun::Closure { .. }) => Ordering::Greater,
        (Fun::Closure { .. }, Fun::Export { .. }) => Ordering::Less,
        (
            Fun::Export {
                module: m1,
                function: f1,
                arity: a1,
            },
            Fun::Export {
                module: m2,
                function: f2,
                arity: a2,
            },
        ) => (m1, f1, a1).cmp(&(m2, f2, a2)),
        (
            Fun::Closure {
                module: m1,
                index: i1,
                uniq: u1,
                pid: p1,
                free_vars: v1,
                ..
            },
            Fun::Closure {
                module: m2,
                index: i2,
                uniq: u2,
                pid: p2,
                free_vars: v2,
                ..
            },
        ) => (m1, i1, u1, p1, v1).cmp(&(m2, i2, u2, p2, v2)),
    }
}

fn cmp_maps(a: &Map, b: &Map, keys: bool) -> Ordering {
    // Smaller maps first, then keys in order, then values in key order.
    let cmp_each = |pick: fn(&(Term, Term)) -> &Term| {
        for (x, y) in a.entries.iter().zip(&b.entries) {
            let o = compare(pick(x), pick(y), keys);
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    };
    a.len()
        .cmp(&b.len())
        .then_with(|| cmp_each(|e| &e.0))
        .then_with(|| cmp_each(|e| &e.1))
}

fn cmp_lists(a: &Term, b: &Term, keys: bool) -> Ordering {
    let (ae, at) = list_parts(a);
    let (be, bt) = list_parts(b);
    for (x, y) in ae.iter().zip(be.iter()) {
        let o = compare(x, y, keys);
        if o != Ordering::Equal {
            return o;
        }
    }
    let n = ae.len().min(be.len());
    // Past the common prefix, compare what remains of each as a term: the rest of a list, or
    // its tail.
    match (ae.len() > n, be.len() > n) {
        (false, false) => cmp_tails(at, bt, keys),
        (true, false) => cmp_rest_vs_tail(bt),
        (false, true) => cmp_rest_vs_tail(at).reverse(),
        (true, true) => Ordering::Equal,
    }
}

fn list_parts(t: &Term) -> (&[Term], Option<&Term>) {
    match t {
        Term::List(l) => (l, None),
        Term::ImproperList(l, tail) => (l, Some(tail)),
        _ => (&[], None),
    }
}

fn cmp_tails(a: Option<&Term>, b: Option<&Term>, keys: bool) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(t)) => compare(&Term::NIL, t, keys),
        (Some(t), None) => compare(t, &Term::NIL, keys),
        (Some(x), Some(y)) => compare(x, y, keys),
    }
}

/// Compares a non-empty rest of one list with where the other list ended: `[]` (`None`) or a
/// non-list tail.
fn cmp_rest_vs_tail(other_tail: Option<&Term>) -> Ordering {
    match other_tail {
        None => Ordering::Greater,
        Some(t) => 8u8.cmp(&t.type_rank()),
    }
}

fn cmp_bits(a: &Term, b: &Term) -> Ordering {
    let (ab, al) = bits_parts(a);
    let (bb, bl) = bits_parts(b);
    ab.cmp(bb).then(al.cmp(&bl))
}

fn bits_parts(t: &Term) -> (&[u8], u64) {
    match t {
        Term::Binary(b) => (b, b.len() as u64 * 8),
        Term::BitBinary(b) => (b.bytes(), b.bit_len()),
        _ => (&[], 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_is_small() {
        assert!(
            std::mem::size_of::<Term>() <= 48,
            "{}",
            std::mem::size_of::<Term>()
        );
    }

    #[test]
    fn numbers_order_exactly() {
        assert!(Term::Int(1) < Term::Float(1.0));
        assert!(Term::Float(0.5) < Term::Int(1));
        assert!(Term::Int(2) > Term::Float(1.5));
        let big = Term::big_int(BigInt::from(u64::MAX));
        assert!(Term::Int(i64::MAX) < big);
        assert!(Term::Float(1e30) > big);
        assert!(Term::Float(-1e30) < Term::Int(i64::MIN));
    }

    #[test]
    fn type_order() {
        let ordered = [
            Term::Int(5),
            Term::atom("a"),
            Term::from(Reference::new(Atom::new("n@h"), 1, &[1, 2, 3]).unwrap()),
            Term::Pid(Pid {
                node: Atom::new("n@h"),
                id: 1,
                serial: 0,
                creation: 1,
            }),
            Term::tuple(vec![]),
            Term::Map(Map::new()),
            Term::NIL,
            Term::list(vec![Term::Int(1)]),
            Term::binary(b""),
        ];
        for w in ordered.windows(2) {
            assert!(w[0] < w[1], "{:?} < {:?}", w[0], w[1]);
        }
    }

    #[test]
    fn map_keys_put_integers_before_floats() {
        let m = Map::from_entries(vec![
            (Term::Float(-0.0), Term::atom("d")),
            (Term::Int(1), Term::atom("a")),
            (Term::Float(1.0), Term::atom("b")),
        ]);
        let keys: Vec<_> = m.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            keys,
            vec![Term::Int(1), Term::Float(-0.0), Term::Float(1.0)]
        );
        assert!(Term::list(vec![Term::Int(227)])
            .map_key_cmp(&Term::list(vec![Term::Float(3.5)]))
            .is_lt());
        assert!(Term::Int(227) > Term::Float(3.5));
    }

    #[test]
    fn map_sorts_and_dedups() {
        let m = Map::from_entries(vec![
            (Term::atom("b"), Term::Int(1)),
            (Term::Int(1), Term::Int(2)),
            (Term::atom("b"), Term::Int(3)),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&Term::atom("b")), Some(&Term::Int(3)));
        assert_eq!(m.entries()[0].0, Term::Int(1));
    }

    #[test]
    fn improper_list_normalises() {
        let t = Term::improper_list(vec![Term::Int(1)], Term::list(vec![Term::Int(2)]));
        assert_eq!(t, Term::list(vec![Term::Int(1), Term::Int(2)]));
        assert_eq!(Term::improper_list(vec![], Term::Int(3)), Term::Int(3));
    }

    #[test]
    fn bit_binary_masks_unused_bits() {
        let t = BitBinary::new_term(Bytes::from_static(&[0xff]), 3).unwrap();
        match t {
            Term::BitBinary(b) => assert_eq!(b.bytes()[0], 0b1110_0000),
            other => panic!("{other:?}"),
        }
        assert!(BitBinary::new_term(Bytes::new(), 3).is_none());
    }
}
