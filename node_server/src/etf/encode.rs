//! Encoding terms to the External Term Format.
//!
//! Encoding picks the forms OTP's `term_to_binary` picks (smallest integer form, `STRING_EXT`
//! for short byte lists, `NEW_PORT_EXT` while an ID fits 32 bits), except that atoms are always
//! UTF-8 (`SMALL_ATOM_UTF8_EXT`), as distribution requires. It never fails: every [`Term`] has
//! an encoding.
//!
//! The encoder writes into a window of zeroed bytes at the end of the output, grown as needed
//! and cut back to what was written at the end. The write position is passed along in a
//! register, where appending to a `BytesMut` byte by byte reloads and stores its length in
//! memory for every header byte; short atoms and binaries are copied with a few fixed-size
//! moves rather than a call to `memcpy`. Long binaries are appended directly, and
//! [`Term::encode_segments_into`] does not copy them at all.

use bytes::{Bytes, BytesMut};
use num_bigint::Sign;

use super::tag;
use super::term::{Atom, Fun, Pid, Reference, Term};

/// How atoms are written. The plain form writes them inline; a distribution connection's atom
/// cache writes `ATOM_CACHE_REF`s instead.
pub(crate) trait AtomWriter {
    /// The `ATOM_CACHE_REF` index to write for `atom`, or `None` to write it inline.
    fn cache_ref(&mut self, atom: &Atom) -> Option<u8>;
}

/// Writes atoms inline as UTF-8.
pub(crate) struct InlineAtoms;

impl AtomWriter for InlineAtoms {
    #[inline(always)]
    fn cache_ref(&mut self, _: &Atom) -> Option<u8> {
        None
    }
}

/// The first window of zeroed bytes the encoder writes into, and the most it grows at a time
/// (it grows by what was written so far, between the two).
const MIN_WINDOW: usize = 64;
const MAX_WINDOW: usize = 16 << 10;

/// Binaries and byte slices up to this length are copied into the window; longer ones are
/// appended directly (or, for segments, shared from [`Term::SHARE_BINARIES_FROM`] bytes).
const SHORT: usize = 64;

impl Term {
    /// Binaries of at least this many bytes are shared, not copied, by
    /// [`Term::encode_segments_into`].
    pub const SHARE_BINARIES_FROM: usize = 2048;

    /// Encodes the term with the leading version byte 131.
    ///
    /// ```
    /// use node_server::etf::Term;
    /// let bytes = Term::tuple(vec![Term::atom("ok"), Term::Int(1)]).encode();
    /// assert_eq!(&bytes[..], &[131, 104, 2, 119, 2, b'o', b'k', 97, 1]);
    /// ```
    pub fn encode(&self) -> Bytes {
        // Room for the first window too, so that it does not reallocate.
        let mut out = BytesMut::with_capacity((1 + self.size_hint()).max(1 + MIN_WINDOW));
        self.encode_into(&mut out);
        out.freeze()
    }

    /// Appends the term with the leading version byte 131 to `out`. Reusing `out` (cleared)
    /// for the next term saves allocating and growing a buffer each time.
    #[inline]
    pub fn encode_into(&self, out: &mut BytesMut) {
        let mut atoms = InlineAtoms;
        Writer::new(&mut atoms, None).write(out, true, self);
    }

    /// Appends the term without the version byte to `out`.
    pub fn encode_body_into(&self, out: &mut BytesMut) {
        encode_term(self, out, &mut InlineAtoms, None);
    }

    /// Encodes the term with the leading version byte 131 as segments to write one after the
    /// other (with a vectored write, say): the bytes the encoder wrote, and binaries of at
    /// least [`Term::SHARE_BINARIES_FROM`] bytes by reference instead of copied. Concatenated,
    /// the segments are exactly [`Term::encode`]'s bytes. Sending a big binary then costs no
    /// copy of it at all, however big it is.
    ///
    /// The segments are appended to `segments`. The encoder writes its own bytes into
    /// `scratch`, which is cleared first and handed out in pieces; when those pieces have been
    /// dropped, the next call reuses its memory.
    ///
    /// ```
    /// use bytes::{Bytes, BytesMut};
    /// use node_server::etf::Term;
    /// let big = Bytes::from(vec![7u8; 1 << 20]);
    /// let term = Term::tuple(vec![Term::atom("data"), Term::Binary(big.clone())]);
    /// let (mut scratch, mut segments) = (BytesMut::new(), Vec::new());
    /// term.encode_segments_into(&mut scratch, &mut segments);
    /// // The header, then the binary itself, shared.
    /// assert_eq!(segments.len(), 2);
    /// assert_eq!(segments[1].as_ptr(), big.as_ptr());
    /// assert_eq!(segments.concat(), term.encode());
    /// ```
    pub fn encode_segments_into(&self, scratch: &mut BytesMut, segments: &mut Vec<Bytes>) {
        scratch.clear();
        let mut atoms = InlineAtoms;
        let mut w = Writer::new(
            &mut atoms,
            Some(Share {
                segments,
                from: Term::SHARE_BINARIES_FROM,
            }),
        );
        w.write(scratch, true, self);
        w.end_segment(scratch);
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

/// Appends `term` (no version byte) to `out`, writing atoms with `atoms`, and big binaries
/// by reference when `share` says where.
pub(crate) fn encode_term<A: AtomWriter>(
    term: &Term,
    out: &mut BytesMut,
    atoms: &mut A,
    share: Option<Share<'_>>,
) {
    Writer::new(atoms, share).write(out, false, term);
}

/// Appends a term given piece by piece by `f` (no version byte), writing atoms with `atoms`:
/// for fixed shapes such as control messages, which then need not be built as a [`Term`].
/// The pieces must make one whole term; nothing checks that they do.
pub(crate) fn encode_pieces<A: AtomWriter>(
    out: &mut BytesMut,
    atoms: &mut A,
    share: Option<Share<'_>>,
    f: impl FnOnce(&mut Pieces<'_, '_, A>),
) {
    // The same first window as `Writer::write` (which sets it up itself: taking a closure
    // there cost the small-tuple encode 25%).
    let p = out.len();
    out.extend_from_slice(&[0; MIN_WINDOW]);
    let mut pieces = Pieces {
        w: Writer::new(atoms, share),
        out,
        p,
    };
    f(&mut pieces);
    let p = pieces.p;
    pieces.out.truncate(p);
}

/// The writer [`encode_pieces`] hands out.
pub(crate) struct Pieces<'o, 'a, A> {
    w: Writer<'a, A>,
    out: &'o mut BytesMut,
    p: usize,
}

impl<A: AtomWriter> Pieces<'_, '_, A> {
    /// A tuple header; its `n` elements follow.
    pub(crate) fn tuple(&mut self, n: u8) {
        self.p = self.w.put(self.out, self.p, [tag::SMALL_TUPLE, n]);
    }

    /// An integer in `0..=255`.
    pub(crate) fn small_int(&mut self, i: u8) {
        self.p = self.w.put(self.out, self.p, [tag::SMALL_INTEGER, i]);
    }

    /// A list header (`LIST_EXT`) of `n` elements; the elements and the tail follow.
    pub(crate) fn list(&mut self, n: u32) {
        let [a, b, c, d] = n.to_be_bytes();
        self.p = self.w.put(self.out, self.p, [tag::LIST, a, b, c, d]);
    }

    /// A whole term.
    pub(crate) fn term(&mut self, term: &Term) {
        self.p = self.w.term(self.out, term, self.p);
    }

    /// An atom, through the atom writer.
    pub(crate) fn atom(&mut self, atom: &Atom) {
        self.p = self.w.atom(self.out, atom, self.p);
    }

    /// A pid, as `NEW_PID_EXT`.
    pub(crate) fn pid(&mut self, pid: &Pid) {
        self.p = self.w.pid(self.out, pid, self.p);
    }

    /// A reference, as `NEWER_REFERENCE_EXT`.
    pub(crate) fn reference(&mut self, r: &Reference) {
        self.p = self.w.reference(self.out, r, self.p);
    }

    /// A term already encoded (without its version byte), copied as it is: its atoms stay
    /// inline, which a message with atom cache references may mix in.
    pub(crate) fn encoded(&mut self, body: &[u8]) {
        self.p = self.w.put_slice(self.out, self.p, body);
    }
}

/// The encoder. Its methods take the output and the position in it to write at, and return
/// the position after what they wrote, so that it stays in a register. While writing, the
/// output is longer than what was written: the rest is the window, zeroed bytes to write into
/// (safe code cannot write into uninitialised capacity), cut off at the end. The output is a
/// parameter of every method rather than a field so that the compiler knows the bytes written
/// cannot change its length and pointer, and keeps those in registers too.
struct Writer<'a, A> {
    atoms: &'a mut A,
    /// Where large binaries go by reference, for [`Term::encode_segments_into`] and the
    /// session writer.
    share: Option<Share<'a>>,
}

/// Where an encoder puts binaries of at least `from` bytes by reference instead of copying
/// them: `segments` gets what was written before each such binary (split off the output),
/// then the binary itself. What is written after the last one stays in the output.
pub(crate) struct Share<'a> {
    pub(crate) segments: &'a mut Vec<Bytes>,
    pub(crate) from: usize,
}

impl<'a, A: AtomWriter> Writer<'a, A> {
    #[inline(always)]
    fn new(atoms: &'a mut A, share: Option<Share<'a>>) -> Self {
        Writer { atoms, share }
    }

    /// Writes `term` at the end of `out`, after the version byte when `version`.
    #[inline(always)]
    fn write(&mut self, out: &mut BytesMut, version: bool, term: &Term) {
        let p = out.len();
        // The first window: a copy of a constant block, which compiles to a few moves where
        // `resize` calls `memset`.
        out.extend_from_slice(&[0; MIN_WINDOW]);
        let p = match term {
            // A tuple at the top, as messages are, is written here: its elements then go
            // into the window without a call to `term` and one to `elements` first, and its
            // header together with the version byte.
            Term::Tuple(t) if t.len() <= usize::from(u8::MAX) => {
                let n = t.len() as u8;
                let mut p = match version {
                    true => self.put(out, p, [tag::VERSION, tag::SMALL_TUPLE, n]),
                    false => self.put(out, p, [tag::SMALL_TUPLE, n]),
                };
                for e in t {
                    p = self.element(out, e, p);
                }
                p
            }
            _ => {
                let p = match version {
                    true => self.put(out, p, [tag::VERSION]),
                    false => p,
                };
                self.term(out, term, p)
            }
        };
        out.truncate(p);
    }

    /// Makes sure the window holds `n` bytes at `p`, and returns `p`.
    #[inline(always)]
    fn room(&mut self, out: &mut BytesMut, p: usize, n: usize) -> usize {
        if out.len() - p < n {
            self.grow(out, p, n);
        }
        p
    }

    #[inline(never)]
    fn grow(&mut self, out: &mut BytesMut, p: usize, n: usize) {
        let window = p.clamp(MIN_WINDOW, MAX_WINDOW).max(n);
        out.resize(p + window, 0);
    }

    /// Writes a few bytes known at compile time.
    #[inline(always)]
    fn put<const N: usize>(&mut self, out: &mut BytesMut, p: usize, bytes: [u8; N]) -> usize {
        let p = self.room(out, p, N);
        out[p..p + N].copy_from_slice(&bytes);
        p + N
    }

    /// Writes a tag and a 32-bit length.
    #[inline(always)]
    fn put_tag_u32(&mut self, out: &mut BytesMut, p: usize, tag: u8, n: usize) -> usize {
        let [a, b, c, d] = (n as u32).to_be_bytes();
        self.put(out, p, [tag, a, b, c, d])
    }

    /// Writes `bytes`: into the window when short, else appended to what was written.
    #[inline]
    fn put_slice(&mut self, out: &mut BytesMut, p: usize, bytes: &[u8]) -> usize {
        if bytes.len() <= SHORT {
            let p = self.room(out, p, bytes.len());
            copy_short(&mut out[p..p + bytes.len()], bytes);
            p + bytes.len()
        } else {
            self.append(out, p, bytes)
        }
    }

    /// Appends `bytes` after the `p` bytes written, without zeroing room for them first.
    #[inline(never)]
    fn append(&mut self, out: &mut BytesMut, p: usize, bytes: &[u8]) -> usize {
        out.truncate(p);
        out.extend_from_slice(bytes);
        out.len()
    }

    /// Writes one term.
    fn term(&mut self, out: &mut BytesMut, term: &Term, p: usize) -> usize {
        match term {
            Term::Atom(a) => self.atom(out, a, p),
            Term::Int(i) => self.int(out, *i, p),
            Term::Binary(b) => self.binary(out, b, p),
            Term::List(l) => self.list(out, l, p),
            Term::Tuple(t) => {
                let p = match u8::try_from(t.len()) {
                    Ok(n) => self.put(out, p, [tag::SMALL_TUPLE, n]),
                    Err(_) => self.put_tag_u32(out, p, tag::LARGE_TUPLE, t.len()),
                };
                self.elements(out, t, p)
            }
            Term::Map(m) => {
                let mut p = self.put_tag_u32(out, p, tag::MAP, m.len());
                for (k, v) in m.iter() {
                    p = self.element(out, k, p);
                    p = self.element(out, v, p);
                }
                p
            }
            _ => self.other(out, term, p),
        }
    }

    /// Writes the elements of a list or tuple.
    #[inline]
    fn elements(&mut self, out: &mut BytesMut, elems: &[Term], mut p: usize) -> usize {
        for e in elems {
            p = self.element(out, e, p);
        }
        p
    }

    /// Writes an element of a container. The common leaves go straight into the window when
    /// it has room, with one bounds check each, the rest (and leaves that need the window to
    /// grow) through `term`.
    #[inline(always)]
    fn element(&mut self, out: &mut BytesMut, term: &Term, p: usize) -> usize {
        match leaf_into(&mut *self.atoms, out, p, term) {
            Some(p) => p,
            None => self.term(out, term, p),
        }
    }

    #[inline(always)]
    fn int(&mut self, out: &mut BytesMut, i: i64, p: usize) -> usize {
        if let Ok(byte) = u8::try_from(i) {
            self.put(out, p, [tag::SMALL_INTEGER, byte])
        } else if let Ok(small) = i32::try_from(i) {
            let [a, b, c, d] = small.to_be_bytes();
            self.put(out, p, [tag::INTEGER, a, b, c, d])
        } else {
            self.big_i64(out, i, p)
        }
    }

    /// An `i64` beyond 32 bits, as `SMALL_BIG_EXT`.
    fn big_i64(&mut self, out: &mut BytesMut, i: i64, p: usize) -> usize {
        let [a, b, c, d, e, f, g, h] = i.unsigned_abs().to_le_bytes();
        let n = 8 - (i.unsigned_abs().leading_zeros() / 8) as usize;
        let p = self.put(out, p, [tag::SMALL_BIG, n as u8, u8::from(i < 0)]);
        self.put_slice(out, p, &[a, b, c, d, e, f, g, h][..n])
    }

    fn big(&mut self, out: &mut BytesMut, negative: bool, digits: &[u8], p: usize) -> usize {
        let p = match u8::try_from(digits.len()) {
            Ok(n) => self.put(out, p, [tag::SMALL_BIG, n]),
            Err(_) => self.put_tag_u32(out, p, tag::LARGE_BIG, digits.len()),
        };
        let p = self.put(out, p, [u8::from(negative)]);
        self.put_slice(out, p, digits)
    }

    /// Writes `atom` as an `ATOM_CACHE_REF` when the atom writer says so, else inline as
    /// `SMALL_ATOM_UTF8_EXT` (`ATOM_UTF8_EXT` when longer than 255 bytes).
    #[inline(always)]
    fn atom(&mut self, out: &mut BytesMut, atom: &Atom, p: usize) -> usize {
        if let Some(index) = self.atoms.cache_ref(atom) {
            return self.put(out, p, [tag::ATOM_CACHE_REF, index]);
        }
        let text = atom.as_str().as_bytes();
        let Ok(n) = u8::try_from(text.len()) else {
            return self.long_atom(out, text, p);
        };
        // Header and text in one go.
        let p = self.room(out, p, 2 + text.len());
        out[p..p + 2].copy_from_slice(&[tag::SMALL_ATOM_UTF8, n]);
        copy_short(&mut out[p + 2..p + 2 + text.len()], text);
        p + 2 + text.len()
    }

    #[cold]
    fn long_atom(&mut self, out: &mut BytesMut, text: &[u8], p: usize) -> usize {
        let text = &text[..text.len().min(usize::from(u16::MAX))];
        let [a, b] = (text.len() as u16).to_be_bytes();
        let p = self.put(out, p, [tag::ATOM_UTF8, a, b]);
        self.put_slice(out, p, text)
    }

    #[inline(always)]
    fn binary(&mut self, out: &mut BytesMut, b: &Bytes, p: usize) -> usize {
        if b.len() <= SHORT {
            let p = self.room(out, p, 5 + b.len());
            let [x, y, z, w] = (b.len() as u32).to_be_bytes();
            out[p..p + 5].copy_from_slice(&[tag::BINARY, x, y, z, w]);
            copy_short(&mut out[p + 5..p + 5 + b.len()], b);
            p + 5 + b.len()
        } else {
            let p = self.put_tag_u32(out, p, tag::BINARY, b.len());
            self.long_binary(out, b, p)
        }
    }

    /// The bytes of a binary longer than `SHORT`: appended to the output, or for segments
    /// shared when at least [`Term::SHARE_BINARIES_FROM`] long.
    fn long_binary(&mut self, out: &mut BytesMut, b: &Bytes, p: usize) -> usize {
        if self.share.as_ref().is_none_or(|s| b.len() < s.from) {
            return self.append(out, p, b);
        }
        out.truncate(p);
        self.end_segment(out);
        if let Some(share) = self.share.as_mut() {
            share.segments.push(b.clone());
        }
        0
    }

    /// For segments: hands out what the output holds (all written) as the next segment.
    fn end_segment(&mut self, out: &mut BytesMut) {
        if let Some(share) = self.share.as_mut() {
            if !out.is_empty() {
                share.segments.push(out.split().freeze());
            }
        }
    }

    fn list(&mut self, out: &mut BytesMut, l: &[Term], p: usize) -> usize {
        if l.is_empty() {
            self.put(out, p, [tag::NIL])
        } else if l.len() <= usize::from(u16::MAX) && l.iter().all(is_byte) {
            // OTP writes lists of bytes as `STRING_EXT`.
            let [a, b] = (l.len() as u16).to_be_bytes();
            let mut p = self.put(out, p, [tag::STRING, a, b]);
            for t in l {
                p = self.put(out, p, [int_byte(t)]);
            }
            p
        } else {
            let p = self.put_tag_u32(out, p, tag::LIST, l.len());
            // Capacity for small elements up front: growing by doubling copies the list twice.
            out.reserve(l.len().saturating_mul(2).min(1 << 20));
            let p = self.elements(out, l, p);
            self.put(out, p, [tag::NIL])
        }
    }

    /// The terms other than the common ones `term` writes itself.
    #[inline(never)]
    fn other(&mut self, out: &mut BytesMut, term: &Term, p: usize) -> usize {
        match term {
            // Written by `term` before it gets here; listed for a complete match.
            Term::Atom(_)
            | Term::Int(_)
            | Term::Binary(_)
            | Term::List(_)
            | Term::Tuple(_)
            | Term::Map(_) => self.term(out, term, p),
            Term::BigInt(b) => {
                let (sign, digits) = b.to_bytes_le();
                self.big(out, sign == Sign::Minus, &digits, p)
            }
            Term::Float(f) => {
                let [a, b, c, d, e, f, g, h] = f.to_be_bytes();
                self.put(out, p, [tag::NEW_FLOAT, a, b, c, d, e, f, g, h])
            }
            Term::BitBinary(b) => {
                let p = self.put_tag_u32(out, p, tag::BIT_BINARY, b.bytes().len());
                let p = self.put(out, p, [b.last_bits()]);
                self.put_slice(out, p, b.bytes())
            }
            Term::ImproperList(l, tail) => {
                let mut p = self.put_tag_u32(out, p, tag::LIST, l.len());
                for t in l {
                    p = self.term(out, t, p);
                }
                self.term(out, tail, p)
            }
            Term::Pid(pid) => self.pid(out, pid, p),
            Term::Port(port) => {
                let p = match u32::try_from(port.id) {
                    Ok(id) => {
                        let p = self.put(out, p, [tag::NEW_PORT]);
                        let p = self.atom(out, &port.node, p);
                        self.put(out, p, id.to_be_bytes())
                    }
                    Err(_) => {
                        let p = self.put(out, p, [tag::V4_PORT]);
                        let p = self.atom(out, &port.node, p);
                        self.put(out, p, port.id.to_be_bytes())
                    }
                };
                self.put(out, p, port.creation.to_be_bytes())
            }
            Term::Reference(r) => self.reference(out, r, p),
            Term::Fun(f) => self.fun(out, f, p),
        }
    }

    fn reference(&mut self, out: &mut BytesMut, r: &Reference, p: usize) -> usize {
        let [a, b] = (r.words().len() as u16).to_be_bytes();
        let p = self.put(out, p, [tag::NEWER_REFERENCE, a, b]);
        let mut p = self.atom(out, &r.node, p);
        p = self.put(out, p, r.creation.to_be_bytes());
        for w in r.words() {
            p = self.put(out, p, w.to_be_bytes());
        }
        p
    }

    fn pid(&mut self, out: &mut BytesMut, pid: &Pid, p: usize) -> usize {
        let p = self.put(out, p, [tag::NEW_PID]);
        let p = self.atom(out, &pid.node, p);
        let p = self.put(out, p, pid.id.to_be_bytes());
        let p = self.put(out, p, pid.serial.to_be_bytes());
        self.put(out, p, pid.creation.to_be_bytes())
    }

    fn fun(&mut self, out: &mut BytesMut, f: &Fun, p: usize) -> usize {
        match f {
            Fun::Export {
                module,
                function,
                arity,
            } => {
                let p = self.put(out, p, [tag::EXPORT]);
                let p = self.atom(out, module, p);
                let p = self.atom(out, function, p);
                self.put(out, p, [tag::SMALL_INTEGER, *arity])
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
                // The size field comes first and counts itself and what follows.
                let p = self.put(out, p, [tag::NEW_FUN]);
                let size_at = p;
                let p = self.put(out, p, [0, 0, 0, 0, *arity]);
                let p = self.put(out, p, *uniq);
                let p = self.put(out, p, index.to_be_bytes());
                let p = self.put(out, p, (free_vars.len() as u32).to_be_bytes());
                let p = self.atom(out, module, p);
                let p = self.int(out, i64::from(*old_index), p);
                let p = self.int(out, i64::from(*old_uniq), p);
                let mut p = self.pid(out, pid, p);
                // No binary goes by reference in here, so that everything since `size_at` is
                // still in the output at the end.
                let share = self.share.take();
                for v in free_vars {
                    p = self.term(out, v, p);
                }
                self.share = share;
                let size = (p - size_at) as u32;
                out[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
                p
            }
        }
    }
}

/// Writes `term` at `p` in the window `buf` when it is an integer of up to 32 bits, a float,
/// an atom or a binary of up to `SHORT` bytes, and fits; returns the position after it, or `None`
/// (nothing written) otherwise. The bounds check of the slice it writes to is the only check.
#[inline(always)]
fn leaf_into<A: AtomWriter>(atoms: &mut A, buf: &mut [u8], p: usize, term: &Term) -> Option<usize> {
    match term {
        Term::Int(i) => {
            if let Ok(byte) = u8::try_from(*i) {
                buf.get_mut(p..p + 2)?
                    .copy_from_slice(&[tag::SMALL_INTEGER, byte]);
                Some(p + 2)
            } else {
                let [a, b, c, d] = i32::try_from(*i).ok()?.to_be_bytes();
                buf.get_mut(p..p + 5)?
                    .copy_from_slice(&[tag::INTEGER, a, b, c, d]);
                Some(p + 5)
            }
        }
        Term::Atom(atom) => {
            let text = atom.as_str().as_bytes();
            let n = u8::try_from(text.len()).ok()?;
            // Room for the inline form before asking the cache, so that a reference it hands
            // out is always written.
            let dst = buf.get_mut(p..p + 2 + text.len())?;
            if let Some(index) = atoms.cache_ref(atom) {
                dst[..2].copy_from_slice(&[tag::ATOM_CACHE_REF, index]);
                return Some(p + 2);
            }
            dst[..2].copy_from_slice(&[tag::SMALL_ATOM_UTF8, n]);
            copy_short(&mut dst[2..], text);
            Some(p + 2 + text.len())
        }
        Term::Float(f) => {
            let [a, b, c, d, e, f, g, h] = f.to_be_bytes();
            buf.get_mut(p..p + 9)?
                .copy_from_slice(&[tag::NEW_FLOAT, a, b, c, d, e, f, g, h]);
            Some(p + 9)
        }
        Term::Binary(b) if b.len() <= SHORT => {
            let dst = buf.get_mut(p..p + 5 + b.len())?;
            let [x, y, z, w] = (b.len() as u32).to_be_bytes();
            dst[..5].copy_from_slice(&[tag::BINARY, x, y, z, w]);
            copy_short(&mut dst[5..], b);
            Some(p + 5 + b.len())
        }
        _ => None,
    }
}

/// Copies `src` into `dst` (of the same length) with a few fixed-size moves instead of a call
/// to `memcpy`, which costs more than the copy itself for the short atoms and binaries terms
/// are full of: two overlapping moves cover any length between one size and twice it.
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    #[inline(always)]
    fn pair<const N: usize>(dst: &mut [u8], src: &[u8]) {
        let n = src.len();
        if let (Some(head), Some(tail)) = (src.first_chunk::<N>(), src.last_chunk::<N>()) {
            dst[..N].copy_from_slice(head);
            dst[n - N..n].copy_from_slice(tail);
        }
    }
    match src.len() {
        0 => {}
        1..=3 => {
            let n = src.len();
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => pair::<4>(dst, src),
        8..=15 => pair::<8>(dst, src),
        16..=31 => pair::<16>(dst, src),
        32..=64 => pair::<32>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

#[inline]
fn is_byte(t: &Term) -> bool {
    matches!(t, Term::Int(0..=255))
}

/// The byte of a term [`is_byte`] accepted.
#[inline]
fn int_byte(t: &Term) -> u8 {
    match t {
        Term::Int(i) => *i as u8,
        _ => 0,
    }
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

    /// The creator pid of the closures below.
    fn closure_pid() -> Pid {
        Pid {
            node: Atom::new("a@b"),
            id: 1,
            serial: 2,
            creation: 3,
        }
    }

    #[test]
    fn closures_roundtrip_with_their_size() {
        let pid = closure_pid();
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

    /// Terms whose encodings cross the window's growth points and the short/long limits.
    fn edge_terms() -> Vec<Term> {
        // Over 255 bytes (so `ATOM_UTF8_EXT`) but not over 255 characters.
        let long_atom = Atom::new("é".repeat(200));
        let widest_atom = Atom::new("\u{1F600}".repeat(63));
        vec![
            Term::atom(""),
            Term::Atom(long_atom.clone()),
            Term::Atom(widest_atom),
            Term::binary(vec![1u8; SHORT]),
            Term::binary(vec![2u8; SHORT + 1]),
            Term::binary(vec![3u8; Term::SHARE_BINARIES_FROM]),
            Term::list(
                (0..5000)
                    .map(|i| Term::atom(format!("atom_{i}")))
                    .collect::<Vec<_>>(),
            ),
            Term::list(
                (0..3000i64)
                    .map(|i| Term::Int(i * 7_000_003))
                    .collect::<Vec<_>>(),
            ),
            Term::tuple(
                (0..300)
                    .map(|i| Term::binary(vec![i as u8; i % 80]))
                    .collect::<Vec<_>>(),
            ),
            Term::Map(crate::etf::Map::from_entries(
                (0..200)
                    .map(|i| (Term::Int(i), Term::Float(i as f64 / 3.0)))
                    .collect(),
            )),
            Term::list(vec![
                Term::binary(vec![4u8; 5000]),
                Term::Atom(long_atom),
                Term::binary(vec![5u8; 3000]),
            ]),
        ]
    }

    #[test]
    fn edges_roundtrip() {
        for t in edge_terms() {
            roundtrip(t);
        }
    }

    #[test]
    fn encode_into_appends() {
        let t = Term::tuple(vec![Term::atom("ok"), Term::binary(vec![9u8; 100])]);
        let mut out = BytesMut::from(&b"head"[..]);
        t.encode_into(&mut out);
        assert_eq!(&out[..4], b"head");
        assert_eq!(&out[4..], &t.encode()[..]);
        let mut body = BytesMut::from(&b"x"[..]);
        t.encode_body_into(&mut body);
        assert_eq!(&body[1..], &t.encode()[1..]);
    }

    #[test]
    fn segments_make_up_the_encoding_and_share_big_binaries() {
        let (mut scratch, mut segments) = (BytesMut::new(), Vec::new());
        for t in edge_terms() {
            segments.clear();
            t.encode_segments_into(&mut scratch, &mut segments);
            assert_eq!(segments.concat(), t.encode());
            assert!(segments.iter().all(|s| !s.is_empty()));
        }
        let big = Bytes::from(vec![6u8; 10_000]);
        let small = Bytes::from(vec![7u8; 100]);
        let t = Term::list(vec![
            Term::Binary(big.clone()),
            Term::Binary(small.clone()),
            Term::Binary(big.clone()),
        ]);
        segments.clear();
        t.encode_segments_into(&mut scratch, &mut segments);
        assert_eq!(segments.concat(), t.encode());
        let shared = segments
            .iter()
            .filter(|s| s.as_ptr() == big.as_ptr())
            .count();
        assert_eq!(shared, 2);
        assert!(segments.iter().all(|s| s.as_ptr() != small.as_ptr()));
        // A binary just below the limit is copied.
        let t = Term::Binary(Bytes::from(vec![8u8; Term::SHARE_BINARIES_FROM - 1]));
        segments.clear();
        t.encode_segments_into(&mut scratch, &mut segments);
        assert_eq!(segments.len(), 1);
    }

    #[test]
    fn closures_with_big_free_variables_in_segments() {
        let pid = closure_pid();
        let f = Term::from(Fun::Closure {
            arity: 0,
            uniq: [1; 16],
            index: 0,
            module: Atom::new("m"),
            old_index: 0,
            old_uniq: 1,
            pid,
            free_vars: vec![Term::binary(vec![1u8; 10_000])],
        });
        let t = Term::tuple(vec![f, Term::binary(vec![2u8; 10_000])]);
        let (mut scratch, mut segments) = (BytesMut::new(), Vec::new());
        t.encode_segments_into(&mut scratch, &mut segments);
        assert_eq!(segments.concat(), t.encode());
        // The closure's binary is copied (its size field counts it); the other is shared.
        assert_eq!(segments.len(), 2);
        roundtrip(t);
    }
}
