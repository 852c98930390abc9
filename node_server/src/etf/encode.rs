//! Encoding terms to the External Term Format.
//!
//! Encoding picks the forms OTP's `term_to_binary` picks (smallest integer form, `STRING_EXT`
//! for short byte lists, `NEW_PORT_EXT` while an ID fits 32 bits), except that atoms are always
//! UTF-8 (`SMALL_ATOM_UTF8_EXT`), as distribution requires. It never fails: every [`Term`] has
//! an encoding.

use bytes::{BufMut, Bytes, BytesMut};
use num_bigint::Sign;

use super::tag;
use super::term::{Atom, Fun, Pid, Term};

/// How atoms are written. The plain form writes them inline; a distribution connection's atom
/// cache writes `ATOM_CACHE_REF`s instead.
pub(crate) trait AtomWriter {
    /// Writes `atom` at the end of `out`.
    fn write_atom(&mut self, atom: &Atom, out: &mut BytesMut);
}

/// Writes atoms inline as UTF-8.
pub(crate) struct InlineAtoms;

impl AtomWriter for InlineAtoms {
    #[inline]
    fn write_atom(&mut self, atom: &Atom, out: &mut BytesMut) {
        write_atom_inline(atom, out);
    }
}

/// Writes `atom` as `SMALL_ATOM_UTF8_EXT`, or `ATOM_UTF8_EXT` when longer than 255 bytes.
#[inline]
pub(crate) fn write_atom_inline(atom: &Atom, out: &mut BytesMut) {
    let text = atom.as_str().as_bytes();
    if text.len() <= 255 {
        out.put_u8(tag::SMALL_ATOM_UTF8);
        out.put_u8(text.len() as u8);
    } else {
        out.put_u8(tag::ATOM_UTF8);
        out.put_u16(text.len().min(usize::from(u16::MAX)) as u16);
    }
    out.put_slice(&text[..text.len().min(usize::from(u16::MAX))]);
}

impl Term {
    /// Encodes the term with the leading version byte 131.
    ///
    /// ```
    /// use node_server::etf::Term;
    /// let bytes = Term::tuple(vec![Term::atom("ok"), Term::Int(1)]).encode();
    /// assert_eq!(&bytes[..], &[131, 104, 2, 119, 2, b'o', b'k', 97, 1]);
    /// ```
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Appends the term with the leading version byte 131 to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        out.reserve(1 + self.size_hint());
        out.put_u8(tag::VERSION);
        encode_term(self, out, &mut InlineAtoms);
    }

    /// Appends the term without the version byte to `out`.
    pub fn encode_body_into(&self, out: &mut BytesMut) {
        out.reserve(self.size_hint());
        encode_term(self, out, &mut InlineAtoms);
    }

    /// A cheap guess at the encoded size, exact for flat terms, used to reserve once.
    fn size_hint(&self) -> usize {
        match self {
            Term::Binary(b) => 5 + b.len(),
            Term::BitBinary(b) => 6 + b.bytes().len(),
            Term::List(l) | Term::Tuple(l) => 6 + l.len() * 4,
            Term::Map(m) => 5 + m.len() * 16,
            _ => 16,
        }
    }
}

/// Appends `term` (no version byte) to `out`, writing atoms with `atoms`.
pub(crate) fn encode_term<A: AtomWriter>(term: &Term, out: &mut BytesMut, atoms: &mut A) {
    match term {
        Term::Atom(a) => atoms.write_atom(a, out),
        Term::Int(i) => write_int(*i, out),
        Term::BigInt(b) => {
            let (sign, digits) = b.to_bytes_le();
            write_big(sign == Sign::Minus, &digits, out);
        }
        Term::Float(f) => {
            out.put_u8(tag::NEW_FLOAT);
            out.put_f64(*f);
        }
        Term::Binary(b) => {
            out.put_u8(tag::BINARY);
            out.put_u32(b.len() as u32);
            out.put_slice(b);
        }
        Term::BitBinary(b) => {
            out.put_u8(tag::BIT_BINARY);
            out.put_u32(b.bytes().len() as u32);
            out.put_u8(b.last_bits());
            out.put_slice(b.bytes());
        }
        Term::List(l) => {
            if l.is_empty() {
                out.put_u8(tag::NIL);
            } else if l.len() <= usize::from(u16::MAX) && l.iter().all(is_byte) {
                out.put_u8(tag::STRING);
                out.put_u16(l.len() as u16);
                out.extend(l.iter().map(|t| match t {
                    Term::Int(i) => *i as u8,
                    _ => 0,
                }));
            } else {
                out.put_u8(tag::LIST);
                out.put_u32(l.len() as u32);
                // Room for small elements up front: growing by doubling copies the list twice.
                out.reserve(l.len().saturating_mul(2).min(1 << 20));
                for t in l {
                    match t {
                        Term::Int(i) => write_int(*i, out),
                        t => encode_term(t, out, atoms),
                    }
                }
                out.put_u8(tag::NIL);
            }
        }
        Term::ImproperList(l, tail) => {
            out.put_u8(tag::LIST);
            out.put_u32(l.len() as u32);
            for t in l {
                encode_term(t, out, atoms);
            }
            encode_term(tail, out, atoms);
        }
        Term::Tuple(t) => {
            if t.len() <= 255 {
                out.put_u8(tag::SMALL_TUPLE);
                out.put_u8(t.len() as u8);
            } else {
                out.put_u8(tag::LARGE_TUPLE);
                out.put_u32(t.len() as u32);
            }
            for e in t {
                encode_term(e, out, atoms);
            }
        }
        Term::Map(m) => {
            out.put_u8(tag::MAP);
            out.put_u32(m.len() as u32);
            for (k, v) in m.iter() {
                encode_term(k, out, atoms);
                encode_term(v, out, atoms);
            }
        }
        Term::Pid(p) => write_pid(p, out, atoms),
        Term::Port(p) => {
            if let Ok(id) = u32::try_from(p.id) {
                out.put_u8(tag::NEW_PORT);
                atoms.write_atom(&p.node, out);
                out.put_u32(id);
            } else {
                out.put_u8(tag::V4_PORT);
                atoms.write_atom(&p.node, out);
                out.put_u64(p.id);
            }
            out.put_u32(p.creation);
        }
        Term::Reference(r) => {
            out.put_u8(tag::NEWER_REFERENCE);
            out.put_u16(r.words().len() as u16);
            atoms.write_atom(&r.node, out);
            out.put_u32(r.creation);
            for w in r.words() {
                out.put_u32(*w);
            }
        }
        Term::Fun(f) => match &**f {
            Fun::Export {
                module,
                function,
                arity,
            } => {
                out.put_u8(tag::EXPORT);
                atoms.write_atom(module, out);
                atoms.write_atom(function, out);
                out.put_u8(tag::SMALL_INTEGER);
                out.put_u8(*arity);
            }
            Fun::Closure {
                arity,
                uniq,
                index,
                module,
                old_index,
                old_uniq,
                pid,
                free_vars,
            } => {
                out.put_u8(tag::NEW_FUN);
                let size_at = out.len();
                out.put_u32(0);
                out.put_u8(*arity);
                out.put_slice(uniq);
                out.put_u32(*index);
                out.put_u32(free_vars.len() as u32);
                atoms.write_atom(module, out);
                write_int(i64::from(*old_index), out);
                write_int(i64::from(*old_uniq), out);
                write_pid(pid, out, atoms);
                for v in free_vars {
                    encode_term(v, out, atoms);
                }
                let size = (out.len() - size_at) as u32;
                out[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
            }
        },
    }
}

#[inline]
fn is_byte(t: &Term) -> bool {
    matches!(t, Term::Int(0..=255))
}

#[inline]
fn write_int(i: i64, out: &mut BytesMut) {
    if (0..=255).contains(&i) {
        out.put_u8(tag::SMALL_INTEGER);
        out.put_u8(i as u8);
    } else if let Ok(small) = i32::try_from(i) {
        out.put_u8(tag::INTEGER);
        out.put_i32(small);
    } else {
        let magnitude = i.unsigned_abs().to_le_bytes();
        let n = 8 - magnitude.iter().rev().take_while(|&&b| b == 0).count();
        write_big(i < 0, &magnitude[..n], out);
    }
}

fn write_big(negative: bool, digits: &[u8], out: &mut BytesMut) {
    if digits.len() <= 255 {
        out.put_u8(tag::SMALL_BIG);
        out.put_u8(digits.len() as u8);
    } else {
        out.put_u8(tag::LARGE_BIG);
        out.put_u32(digits.len() as u32);
    }
    out.put_u8(u8::from(negative));
    out.put_slice(digits);
}

fn write_pid<A: AtomWriter>(p: &Pid, out: &mut BytesMut, atoms: &mut A) {
    out.put_u8(tag::NEW_PID);
    atoms.write_atom(&p.node, out);
    out.put_u32(p.id);
    out.put_u32(p.serial);
    out.put_u32(p.creation);
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_bigint::BigInt;

    fn roundtrip(t: Term) {
        let bytes = t.encode();
        assert_eq!(Term::decode(&bytes).unwrap(), t, "{bytes:?}");
    }

    #[test]
    fn integers_pick_the_smallest_form() {
        assert_eq!(&Term::Int(255).encode()[..], &[131, 97, 255]);
        assert_eq!(&Term::Int(-1).encode()[..], &[131, 98, 255, 255, 255, 255]);
        assert_eq!(
            &Term::Int(1 << 31).encode()[..],
            &[131, 110, 4, 0, 0, 0, 0, 128]
        );
        for i in [
            0,
            255,
            256,
            -1,
            i32::MIN as i64,
            i32::MAX as i64 + 1,
            i64::MIN,
            i64::MAX,
        ] {
            roundtrip(Term::Int(i));
        }
        roundtrip(Term::big_int(BigInt::from(u64::MAX) * 7));
        roundtrip(Term::big_int(-(BigInt::from(1u8) << 3000usize)));
    }

    #[test]
    fn byte_lists_are_strings() {
        let t = Term::list(vec![Term::Int(104), Term::Int(105)]);
        assert_eq!(&t.encode()[..], &[131, 107, 0, 2, 104, 105]);
        roundtrip(Term::list(vec![Term::Int(1), Term::Int(256)]));
    }

    #[test]
    fn closures_roundtrip_with_their_size() {
        let pid = Pid {
            node: Atom::new("a@b"),
            id: 1,
            serial: 2,
            creation: 3,
        };
        let f = Term::from(Fun::Closure {
            arity: 1,
            uniq: [9; 16],
            index: 4,
            module: Atom::new("m"),
            old_index: 4,
            old_uniq: 123456789,
            pid,
            free_vars: vec![Term::Int(1), Term::atom("x")],
        });
        let bytes = f.encode();
        let size = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]) as usize;
        assert_eq!(size, bytes.len() - 2);
        roundtrip(f);
    }
}
