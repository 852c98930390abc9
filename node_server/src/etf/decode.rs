//! Decoding the External Term Format.
//!
//! The decoder reads from a [`Bytes`] buffer so that binaries in the result share it instead of
//! copying. The network is hostile: every malformed input is a [`DecodeError`], no length field
//! makes it reserve more than the rest of the input could fill, and nesting is limited by
//! [`DecodeOptions::max_depth`].

use std::io::Read;

use bytes::Bytes;
use num_bigint::{BigInt, Sign};

use super::tag;
use super::term::{Atom, BitBinary, Fun, Map, Pid, Port, Reference, Term};

/// Why a term could not be decoded. Offsets count bytes from the start of the buffer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a term.
    #[error("truncated term: {needed} more bytes needed at offset {offset}")]
    Truncated {
        /// Where the missing bytes should have started.
        offset: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// The input does not start with the version byte 131.
    #[error("bad version byte {found} (expected 131)")]
    BadVersion {
        /// The byte found instead.
        found: u8,
    },
    /// A tag byte this decoder does not know.
    #[error("unknown term tag {tag} at offset {offset}")]
    UnknownTag {
        /// The tag.
        tag: u8,
        /// Where it was.
        offset: usize,
    },
    /// Terms nest deeper than [`DecodeOptions::max_depth`].
    #[error("terms nest deeper than {limit} at offset {offset}")]
    TooDeep {
        /// The configured limit.
        limit: usize,
        /// Where the limit was crossed.
        offset: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid {what} at offset {offset}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Where it was.
        offset: usize,
    },
    /// A map repeats a key.
    #[error("map repeats key {key} at offset {offset}")]
    DuplicateMapKey {
        /// The repeated key, in Erlang syntax.
        key: String,
        /// Where the map started.
        offset: usize,
    },
    /// An `ATOM_CACHE_REF` names an entry the distribution header did not provide.
    #[error("atom cache reference {index} at offset {offset} has no entry")]
    UnknownAtomCacheRef {
        /// The index.
        index: u8,
        /// Where it was.
        offset: usize,
    },
    /// A compressed term failed to inflate or inflated to another size than it declared.
    #[error("compressed term: {0}")]
    Compressed(String),
    /// A compressed term declares more bytes than [`DecodeOptions::max_decompressed_size`].
    #[error("compressed term declares {size} bytes, more than the limit of {limit}")]
    DecompressedTooLarge {
        /// The declared size.
        size: u64,
        /// The configured limit.
        limit: usize,
    },
    /// Bytes follow the term.
    #[error("{count} bytes follow the term at offset {offset}")]
    TrailingBytes {
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
    },
}

/// Limits for decoding untrusted input, with defaults that suit a distribution connection.
#[derive(Debug, Clone)]
pub struct DecodeOptions {
    max_depth: usize,
    max_decompressed_size: usize,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_depth: Self::DEFAULT_MAX_DEPTH,
            max_decompressed_size: Self::DEFAULT_MAX_DECOMPRESSED_SIZE,
        }
    }
}

impl DecodeOptions {
    /// The default nesting limit: deep enough for real data, shallow enough for a 2 MiB stack.
    pub const DEFAULT_MAX_DEPTH: usize = 512;
    /// The default limit on the inflated size of a compressed term (256 MiB).
    pub const DEFAULT_MAX_DECOMPRESSED_SIZE: usize = 256 << 20;

    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how deeply containers (tuples, lists, maps, funs) may nest.
    pub fn max_depth(mut self, depth: usize) -> Self {
        self.max_depth = depth;
        self
    }

    /// Sets the most bytes a compressed term may inflate to.
    pub fn max_decompressed_size(mut self, size: usize) -> Self {
        self.max_decompressed_size = size;
        self
    }

    /// Decodes one whole term that starts with the version byte 131 and fills `input`.
    #[inline]
    pub fn decode(&self, input: &Bytes) -> Result<Term, DecodeError> {
        if input.first() == Some(&tag::VERSION) && input.get(1) != Some(&tag::COMPRESSED) {
            // The common case, without the detour through `decode_versioned_at`'s tuple.
            self.decode_whole(input, 1)
        } else {
            let (term, end) = self.decode_versioned_at(input, 0, &[])?;
            ensure_consumed(input, end)?;
            Ok(term)
        }
    }

    /// Decodes one whole term without the version byte that fills `input`.
    pub fn decode_body(&self, input: &Bytes) -> Result<Term, DecodeError> {
        self.decode_whole(input, 0)
    }

    /// Decodes the term at `pos`, which must end where `input` does.
    #[inline]
    fn decode_whole(&self, input: &Bytes, pos: usize) -> Result<Term, DecodeError> {
        let mut reader = Reader::new(self, input, pos, &[]);
        // One result variable, returned as it came, so that the term is built where the caller
        // wants it instead of being copied on its way out.
        let mut result = reader.term();
        if result.is_ok() {
            if let Err(e) = ensure_consumed(input, reader.pos) {
                result = Err(e);
            }
        }
        result
    }

    /// Decodes a term that starts with 131 at `pos` in `input`; returns it and where it ended.
    /// `atom_refs` resolves `ATOM_CACHE_REF`s (a distribution header's atoms, in order).
    pub fn decode_versioned_at(
        &self,
        input: &Bytes,
        pos: usize,
        atom_refs: &[Atom],
    ) -> Result<(Term, usize), DecodeError> {
        match input.get(pos) {
            None => Err(DecodeError::Truncated {
                offset: pos,
                needed: 1,
            }),
            Some(&tag::VERSION) => {
                if input.get(pos + 1) == Some(&tag::COMPRESSED) {
                    let inflated = self.inflate(input, pos + 2)?;
                    let (term, end) = self.decode_body_at(&inflated, 0, atom_refs)?;
                    ensure_consumed(&inflated, end)?;
                    Ok((term, input.len()))
                } else {
                    self.decode_body_at(input, pos + 1, atom_refs)
                }
            }
            Some(&found) => Err(DecodeError::BadVersion { found }),
        }
    }

    /// Decodes a term without the version byte at `pos` in `input`; returns it and where it
    /// ended. `atom_refs` resolves `ATOM_CACHE_REF`s.
    pub fn decode_body_at(
        &self,
        input: &Bytes,
        pos: usize,
        atom_refs: &[Atom],
    ) -> Result<(Term, usize), DecodeError> {
        let mut reader = Reader::new(self, input, pos, atom_refs);
        let term = reader.term()?;
        Ok((term, reader.pos))
    }

    /// Inflates a `COMPRESSED` term whose size field starts at `pos` and whose zlib stream runs
    /// to the end of `input`.
    fn inflate(&self, input: &Bytes, pos: usize) -> Result<Bytes, DecodeError> {
        let size_bytes = input.get(pos..pos + 4).ok_or(DecodeError::Truncated {
            offset: pos,
            needed: pos + 4 - input.len().min(pos + 4),
        })?;
        let size = u32::from_be_bytes([size_bytes[0], size_bytes[1], size_bytes[2], size_bytes[3]]);
        if size as usize > self.max_decompressed_size {
            return Err(DecodeError::DecompressedTooLarge {
                size: u64::from(size),
                limit: self.max_decompressed_size,
            });
        }
        // Grow as the stream inflates rather than trusting the declared size up front; read one
        // byte past it to notice a stream that inflates to more than it declared.
        let stream = &input[pos + 4..];
        let initial = (size as usize).min(stream.len().saturating_mul(8));
        let mut out = Vec::with_capacity(initial);
        flate2::read::ZlibDecoder::new(stream)
            .take(u64::from(size) + 1)
            .read_to_end(&mut out)
            .map_err(|e| DecodeError::Compressed(e.to_string()))?;
        if out.len() != size as usize {
            return Err(DecodeError::Compressed(format!(
                "inflated to {} bytes, declared {size}",
                out.len()
            )));
        }
        Ok(Bytes::from(out))
    }
}

#[inline]
fn ensure_consumed(input: &Bytes, end: usize) -> Result<(), DecodeError> {
    if end < input.len() {
        Err(DecodeError::TrailingBytes {
            offset: end,
            count: input.len() - end,
        })
    } else {
        Ok(())
    }
}

impl Term {
    /// Decodes a whole term that starts with the version byte 131, with default limits.
    /// Binaries in the result share `input`.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use node_server::etf::Term;
    /// let term = Term::decode(&Bytes::from_static(&[131, 100, 0, 2, b'o', b'k'])).unwrap();
    /// assert_eq!(term, Term::atom("ok"));
    /// ```
    #[inline]
    pub fn decode(input: &Bytes) -> Result<Term, DecodeError> {
        DecodeOptions::default().decode(input)
    }

    /// Decodes a whole term from a byte slice (copying it once), with default limits.
    pub fn decode_slice(input: &[u8]) -> Result<Term, DecodeError> {
        Term::decode(&Bytes::copy_from_slice(input))
    }
}

/// A cursor for decoders of fixed shapes (the common control messages) that read the fields
/// they expect straight from ETF bytes, without building terms. Each read returns `None` when
/// the bytes hold something else or end; the caller then decodes a term as usual, which
/// reports the error if there is one.
pub(crate) struct Fields<'a>(Reader<'a>);

impl<'a> Fields<'a> {
    /// A cursor at `pos` in `input`; `atom_refs` resolves `ATOM_CACHE_REF`s.
    pub(crate) fn new(
        options: &DecodeOptions,
        input: &'a Bytes,
        pos: usize,
        atom_refs: &'a [Atom],
    ) -> Self {
        Fields(Reader::new(options, input, pos, atom_refs))
    }

    /// Where the next field starts.
    pub(crate) fn pos(&self) -> usize {
        self.0.pos
    }

    /// The arity of a `SMALL_TUPLE_EXT`.
    pub(crate) fn small_tuple(&mut self) -> Option<u8> {
        self.tagged_byte(tag::SMALL_TUPLE)
    }

    /// A `SMALL_INTEGER_EXT`.
    pub(crate) fn small_int(&mut self) -> Option<u8> {
        self.tagged_byte(tag::SMALL_INTEGER)
    }

    /// The byte after `tag`, when the next field starts with it.
    fn tagged_byte(&mut self, tag: u8) -> Option<u8> {
        match self.0.rest() {
            [t, b, ..] if *t == tag => {
                let b = *b;
                self.0.pos += 2;
                Some(b)
            }
            _ => None,
        }
    }

    /// A pid.
    pub(crate) fn pid(&mut self) -> Option<Pid> {
        match self.0.rest().first() {
            Some(&(tag::NEW_PID | tag::PID)) => self.0.pid().ok(),
            _ => None,
        }
    }

    /// An atom, in any of its forms.
    pub(crate) fn atom(&mut self) -> Option<Atom> {
        self.0.atom().ok()
    }

    /// A reference.
    pub(crate) fn reference(&mut self) -> Option<Reference> {
        let start = self.0.pos;
        match self.0.rest().first() {
            Some(&(t @ tag::NEWER_REFERENCE | t @ tag::NEW_REFERENCE | t @ tag::REFERENCE)) => {
                self.0.pos += 1;
                self.0.reference(t, start).ok()
            }
            _ => None,
        }
    }

    /// Whether the next field is a pid (else, in the fields this reads, an atom).
    pub(crate) fn at_pid(&self) -> bool {
        matches!(self.0.rest().first(), Some(&(tag::NEW_PID | tag::PID)))
    }
}

struct Reader<'a> {
    /// The input, for slicing binaries out of it without copying.
    input: &'a Bytes,
    /// The same bytes as a plain slice, so that reading does not go through `Bytes` each time.
    data: &'a [u8],
    pos: usize,
    depth_left: usize,
    max_depth: usize,
    atom_refs: &'a [Atom],
}

impl<'a> Reader<'a> {
    #[inline]
    fn new(options: &DecodeOptions, input: &'a Bytes, pos: usize, atom_refs: &'a [Atom]) -> Self {
        Reader {
            input,
            data: input,
            pos,
            depth_left: options.max_depth,
            max_depth: options.max_depth,
            atom_refs,
        }
    }

    /// The bytes not read yet (empty when `pos` is at or past the end).
    #[inline(always)]
    fn rest(&self) -> &'a [u8] {
        self.data.get(self.pos..).unwrap_or_default()
    }

    fn remaining(&self) -> usize {
        self.data.len().saturating_sub(self.pos)
    }

    #[cold]
    fn truncated(&self, needed: usize) -> DecodeError {
        DecodeError::Truncated {
            offset: self.pos,
            needed: needed - self.remaining(),
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        match self.rest().get(..n) {
            Some(bytes) => {
                self.pos += n;
                Ok(bytes)
            }
            None => Err(self.truncated(n)),
        }
    }

    #[inline]
    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        match self.rest().first_chunk::<N>() {
            Some(bytes) => {
                self.pos += N;
                Ok(*bytes)
            }
            None => Err(self.truncated(N)),
        }
    }

    #[inline]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        match self.rest().first() {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.truncated(1)),
        }
    }

    #[inline]
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    #[inline]
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take_array()?))
    }

    #[cold]
    fn invalid(&self, what: &'static str, offset: usize) -> DecodeError {
        let _ = self;
        DecodeError::Invalid { what, offset }
    }

    /// A length that will be followed by at least `min_each` bytes per item: refuses a length
    /// the rest of the input cannot hold, so no capacity is reserved for bytes that are not there.
    #[inline]
    fn count(&mut self, n: usize, min_each: usize) -> Result<usize, DecodeError> {
        let needed = n.saturating_mul(min_each);
        if needed > self.remaining() {
            return Err(self.truncated(needed));
        }
        Ok(n)
    }

    #[inline]
    fn enter(&mut self) -> Result<(), DecodeError> {
        if self.depth_left == 0 {
            return Err(self.too_deep());
        }
        self.depth_left -= 1;
        Ok(())
    }

    #[cold]
    fn too_deep(&self) -> DecodeError {
        DecodeError::TooDeep {
            limit: self.max_depth,
            offset: self.pos,
        }
    }

    #[inline]
    fn leave(&mut self) {
        self.depth_left += 1;
    }

    /// Decodes one term. Kept small: it recurses once per nesting level, so every arm with
    /// locals of its own lives in a separate function and the stack frame stays small (the
    /// default depth limit must fit a 2 MiB thread stack even in debug builds).
    fn term(&mut self) -> Result<Term, DecodeError> {
        let start = self.pos;
        let tag = self.u8()?;
        match tag {
            tag::SMALL_INTEGER => Ok(Term::Int(i64::from(self.u8()?))),
            tag::INTEGER => self.integer(),
            tag::ATOM_UTF8
            | tag::SMALL_ATOM_UTF8
            | tag::ATOM
            | tag::SMALL_ATOM
            | tag::ATOM_CACHE_REF => self.atom_at(start),
            tag::NIL => Ok(Term::NIL),
            tag::LIST => self.list(),
            tag::SMALL_TUPLE | tag::LARGE_TUPLE => self.tuple(tag),
            tag::MAP => self.map(start),
            tag::NEW_FUN => self.new_fun(),
            tag::EXPORT => self.export(),
            _ => self.leaf(tag, start),
        }
    }

    fn integer(&mut self) -> Result<Term, DecodeError> {
        Ok(Term::Int(i64::from(i32::from_be_bytes(self.take_array()?))))
    }

    fn atom_at(&mut self, start: usize) -> Result<Term, DecodeError> {
        self.pos = start;
        Ok(Term::Atom(self.atom()?))
    }

    fn list(&mut self) -> Result<Term, DecodeError> {
        let n = self.u32()? as usize;
        // Each element takes at least one byte, and so does the tail.
        let n = self.count(n.saturating_add(1), 1)? - 1;
        self.enter()?;
        let mut elems = Vec::with_capacity(n);
        self.elements(&mut elems, n)?;
        if self.rest().first() == Some(&tag::NIL) {
            self.pos += 1;
            self.leave();
            return Ok(Term::List(elems));
        }
        let tail = self.term()?;
        self.leave();
        Ok(Term::improper_list(elems, tail))
    }

    /// Decodes `n` terms into `out`, which has room for them.
    fn elements(&mut self, out: &mut Vec<Term>, n: usize) -> Result<(), DecodeError> {
        let end = out.len() + n;
        while out.len() < end {
            self.integers(out, end);
            if out.len() < end {
                self.push_term(out)?;
            }
        }
        Ok(())
    }

    /// Decodes a run of `SMALL_INTEGER_EXT` and `INTEGER_EXT` terms straight into `out`, until
    /// it holds `end` terms or another term comes. Lists of integers are common, and building
    /// each one in place matters: going through `term()`'s `Result` (or an `Option`) costs a
    /// copy of the 48-byte value through the stack per element, which the processor stalls on.
    /// So the run is measured first, then built by a closure that returns the `Term` itself.
    #[inline]
    fn integers(&mut self, out: &mut Vec<Term>, end: usize) {
        let data = self.data;
        let room = end.saturating_sub(out.len());
        let mut count = 0;
        let mut scan = self.pos;
        while count < room {
            match data.get(scan..) {
                Some([tag::SMALL_INTEGER, _, ..]) => scan += 2,
                Some([tag::INTEGER, _, _, _, _, ..]) => scan += 5,
                _ => break,
            }
            count += 1;
        }
        if count == 0 {
            return;
        }
        let mut pos = self.pos;
        out.extend(
            (0..count).map(|_| match *data.get(pos..).unwrap_or_default() {
                [tag::SMALL_INTEGER, b, ..] => {
                    pos += 2;
                    Term::Int(i64::from(b))
                }
                [_, a, b, c, d, ..] => {
                    pos += 5;
                    Term::Int(i64::from(i32::from_be_bytes([a, b, c, d])))
                }
                // Not reached: the scan above saw an integer here.
                _ => Term::NIL,
            }),
        );
        self.pos = scan;
    }

    /// Decodes one term into `out`. Atoms and binaries, the other common elements, are built
    /// here rather than returned by `term()`, for the same reason as in `integers`; an atom
    /// through `extend` with a closure, which lets the compiler write it into the vector
    /// directly (`push` copies it there from the stack).
    #[inline]
    fn push_term(&mut self, out: &mut Vec<Term>) -> Result<(), DecodeError> {
        match *self.rest() {
            [tag::SMALL_ATOM_UTF8, n, ref text @ ..] if text.len() >= usize::from(n) => {
                let n = usize::from(n);
                let raw = &text[..n];
                // Copied straight from the cache into `out`: returning the atom first would
                // copy it through the stack piecewise.
                if atom_cache::with(raw, |atom| {
                    out.extend(std::iter::once_with(|| Term::Atom(atom.clone())))
                })
                .is_none()
                {
                    let Some(atom) = new_atom(raw) else {
                        return Err(self.invalid("UTF-8 in atom", self.pos));
                    };
                    out.push(Term::Atom(atom));
                }
                self.pos += 2 + n;
            }
            [tag::BINARY, a, b, c, d, ref data @ ..]
                if data.len() >= u32::from_be_bytes([a, b, c, d]) as usize =>
            {
                let start = self.pos + 5;
                let end = start + u32::from_be_bytes([a, b, c, d]) as usize;
                self.pos = end;
                out.push(Term::Binary(self.input.slice(start..end)));
            }
            _ => {
                let t = self.term()?;
                out.push(t);
            }
        }
        Ok(())
    }

    fn map(&mut self, start: usize) -> Result<Term, DecodeError> {
        let n = self.u32()? as usize;
        let n = self.count(n, 2)?;
        self.enter()?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let k = self.term()?;
            let v = self.term()?;
            entries.push((k, v));
        }
        self.leave();
        Map::from_unique_entries(entries)
            .map(Term::Map)
            .map_err(|key| DecodeError::DuplicateMapKey {
                key: key.to_string(),
                offset: start,
            })
    }

    fn export(&mut self) -> Result<Term, DecodeError> {
        let module = self.atom()?;
        let function = self.atom()?;
        let arity_at = self.pos;
        let arity = match (self.u8()?, self.u8()?) {
            (tag::SMALL_INTEGER, a) => a,
            _ => return Err(self.invalid("fun arity", arity_at)),
        };
        Ok(Term::from(Fun::Export {
            module,
            function,
            arity,
        }))
    }

    /// Terms that do not nest.
    #[inline(never)]
    fn leaf(&mut self, tag: u8, start: usize) -> Result<Term, DecodeError> {
        Ok(match tag {
            tag::SMALL_BIG => {
                let n = usize::from(self.u8()?);
                self.big(n)?
            }
            tag::LARGE_BIG => {
                let n = self.u32()? as usize;
                self.big(n)?
            }
            tag::NEW_FLOAT => {
                let f = f64::from_bits(self.u64()?);
                if !f.is_finite() {
                    return Err(self.invalid("float (not finite)", start));
                }
                Term::Float(f)
            }
            tag::FLOAT => {
                let raw = self.take(31)?;
                let text = std::str::from_utf8(raw)
                    .ok()
                    .map(|s| s.trim_end_matches('\0').trim());
                match text.and_then(|s| s.parse::<f64>().ok()) {
                    Some(f) if f.is_finite() => Term::Float(f),
                    _ => return Err(self.invalid("float text", start)),
                }
            }
            tag::BINARY => {
                let n = self.u32()? as usize;
                if self.remaining() < n {
                    return Err(self.truncated(n));
                }
                let b = self.input.slice(self.pos..self.pos + n);
                self.pos += n;
                Term::Binary(b)
            }
            tag::BIT_BINARY => {
                let n = self.u32()? as usize;
                let bits = self.u8()?;
                if self.remaining() < n {
                    return Err(self.truncated(n));
                }
                let b = self.input.slice(self.pos..self.pos + n);
                self.pos += n;
                if n == 0 {
                    // Only an empty bit string has no bytes; treat it as the empty binary.
                    Term::Binary(b)
                } else {
                    BitBinary::new_term(b, bits)
                        .ok_or_else(|| self.invalid("bit count of bit binary", start))?
                }
            }
            tag::STRING => {
                let n = usize::from(self.u16()?);
                let bytes = self.take(n)?;
                Term::List(bytes.iter().map(|&b| Term::Int(i64::from(b))).collect())
            }
            tag::NEW_PID | tag::PID => {
                self.pos = start;
                Term::Pid(self.pid()?)
            }
            tag::NEW_PORT => {
                let node = self.atom()?;
                let id = u64::from(self.u32()?);
                let creation = self.u32()?;
                Term::Port(Port { node, id, creation })
            }
            tag::V4_PORT => {
                let node = self.atom()?;
                let id = self.u64()?;
                let creation = self.u32()?;
                Term::Port(Port { node, id, creation })
            }
            tag::PORT => {
                let node = self.atom()?;
                let id = u64::from(self.u32()?);
                let creation = u32::from(self.u8()?);
                Term::Port(Port { node, id, creation })
            }
            tag::NEWER_REFERENCE | tag::NEW_REFERENCE | tag::REFERENCE => {
                Term::from(self.reference(tag, start)?)
            }
            _ => return Err(DecodeError::UnknownTag { tag, offset: start }),
        })
    }

    fn tuple(&mut self, tag: u8) -> Result<Term, DecodeError> {
        let n = if tag == tag::SMALL_TUPLE {
            usize::from(self.u8()?)
        } else {
            self.u32()? as usize
        };
        let n = self.count(n, 1)?;
        self.enter()?;
        let mut elems = Vec::with_capacity(n);
        self.elements(&mut elems, n)?;
        self.leave();
        Ok(Term::Tuple(elems))
    }

    fn big(&mut self, n: usize) -> Result<Term, DecodeError> {
        let sign = self.u8()?;
        let digits = self.take(n)?;
        let negative = sign != 0;
        if n <= 8 {
            let mut le = [0u8; 8];
            le[..n].copy_from_slice(digits);
            let magnitude = u64::from_le_bytes(le);
            if !negative {
                if let Ok(v) = i64::try_from(magnitude) {
                    return Ok(Term::Int(v));
                }
            } else if magnitude <= 1u64 << 63 {
                return Ok(Term::Int((magnitude as i64).wrapping_neg()));
            }
        }
        let sign = if negative { Sign::Minus } else { Sign::Plus };
        Ok(Term::big_int(BigInt::from_bytes_le(sign, digits)))
    }

    fn atom(&mut self) -> Result<Atom, DecodeError> {
        let start = self.pos;
        let tag = self.u8()?;
        match tag {
            tag::ATOM_UTF8 | tag::SMALL_ATOM_UTF8 => {
                let n = if tag == tag::ATOM_UTF8 {
                    usize::from(self.u16()?)
                } else {
                    usize::from(self.u8()?)
                };
                let raw = self.take(n)?;
                if n <= atom_cache::LONGEST {
                    return utf8_atom(raw).ok_or_else(|| self.invalid("UTF-8 in atom", start));
                }
                let text = std::str::from_utf8(raw).map_err(|_| DecodeError::Invalid {
                    what: "UTF-8 in atom",
                    offset: start,
                })?;
                if n > Atom::MAX_CHARS && text.chars().count() > Atom::MAX_CHARS {
                    return Err(self.invalid("atom length (over 255 characters)", start));
                }
                Ok(Atom::new(text))
            }
            tag::ATOM | tag::SMALL_ATOM => {
                let n = if tag == tag::ATOM {
                    usize::from(self.u16()?)
                } else {
                    usize::from(self.u8()?)
                };
                if n > Atom::MAX_CHARS {
                    return Err(self.invalid("atom length (over 255 characters)", start));
                }
                let raw = self.take(n)?;
                // Latin-1: every byte is the code point of the same value.
                if raw.is_ascii() {
                    Ok(Atom::new(std::str::from_utf8(raw).unwrap_or_default()))
                } else {
                    Ok(Atom::from(
                        raw.iter().map(|&b| char::from(b)).collect::<String>(),
                    ))
                }
            }
            tag::ATOM_CACHE_REF => {
                let index = self.u8()?;
                self.atom_refs.get(usize::from(index)).cloned().ok_or(
                    DecodeError::UnknownAtomCacheRef {
                        index,
                        offset: start,
                    },
                )
            }
            _ => Err(self.invalid("atom (another term found)", start)),
        }
    }

    /// The rest of a reference whose `tag` (at `start`) was read.
    fn reference(&mut self, tag: u8, start: usize) -> Result<Reference, DecodeError> {
        if tag == tag::REFERENCE {
            let node = self.atom()?;
            let id = self.u32()?;
            let creation = u32::from(self.u8()?);
            return Reference::new(node, creation, &[id])
                .ok_or_else(|| self.invalid("reference", start));
        }
        let n = usize::from(self.u16()?);
        let node = self.atom()?;
        let creation = if tag == tag::NEWER_REFERENCE {
            self.u32()?
        } else {
            u32::from(self.u8()?)
        };
        if n == 0 || n > Reference::MAX_WORDS {
            return Err(self.invalid("reference length", start));
        }
        let mut words = [0u32; Reference::MAX_WORDS];
        for w in words.iter_mut().take(n) {
            *w = self.u32()?;
        }
        Reference::new(node, creation, &words[..n]).ok_or_else(|| self.invalid("reference", start))
    }

    fn pid(&mut self) -> Result<Pid, DecodeError> {
        let tag = self.u8()?;
        let node = self.atom()?;
        let id = self.u32()?;
        let serial = self.u32()?;
        let creation = if tag == tag::NEW_PID {
            self.u32()?
        } else {
            u32::from(self.u8()?)
        };
        Ok(Pid {
            node,
            id,
            serial,
            creation,
        })
    }

    fn small_u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let at = self.pos;
        match self.term()? {
            Term::Int(i) => u32::try_from(i).map_err(|_| self.invalid(what, at)),
            _ => Err(self.invalid(what, at)),
        }
    }

    fn new_fun(&mut self) -> Result<Term, DecodeError> {
        self.enter()?;
        let _size = self.u32()?;
        let arity = self.u8()?;
        let uniq = self.take_array::<16>()?;
        let index = self.u32()?;
        let num_free = self.u32()? as usize;
        let module = self.atom()?;
        let old_index = self.small_u32("fun old index")?;
        let old_uniq = self.small_u32("fun old uniq")?;
        let pid_at = self.pos;
        let pid = match self.u8()? {
            tag::NEW_PID | tag::PID => {
                self.pos = pid_at;
                self.pid()?
            }
            _ => return Err(self.invalid("fun creator pid", pid_at)),
        };
        let num_free = self.count(num_free, 1)?;
        let mut free_vars = Vec::with_capacity(num_free);
        for _ in 0..num_free {
            free_vars.push(self.term()?);
        }
        self.leave();
        Ok(Term::from(Fun::Closure {
            arity,
            uniq,
            index,
            module,
            old_index,
            old_uniq,
            pid,
            free_vars,
        }))
    }
}

/// The atom whose UTF-8 text is `raw` (at most 255 bytes, so at most 255 characters), or
/// `None` when `raw` is not UTF-8. Short atoms come from [`atom_cache`] when it has them.
#[inline]
fn utf8_atom(raw: &[u8]) -> Option<Atom> {
    if raw.len() <= atom_cache::LONGEST {
        if let Some(atom) = atom_cache::with(raw, Atom::clone) {
            return Some(atom);
        }
    }
    new_atom(raw)
}

/// [`utf8_atom`] for text the cache did not have: makes the atom and caches it when short.
fn new_atom(raw: &[u8]) -> Option<Atom> {
    let atom = Atom::new_short(std::str::from_utf8(raw).ok()?);
    if raw.len() <= atom_cache::LONGEST {
        atom_cache::put(&atom);
    }
    Some(atom)
}

/// A per-thread cache of short atoms decoded recently, one atom per slot, picked by a hash of
/// the text.
///
/// Messages repeat the same few atoms (record tags, `ok`, node names, map keys) over and
/// over. For an atom in the cache, decoding compares its bytes with the cached text and copies
/// the cached atom (a plain 24-byte copy), instead of validating the UTF-8 and building the
/// inline string, which goes through `memset` and `memcpy` calls and stalls the processor on
/// reading back what they wrote piecewise. An atom the cache lacks costs a hash and a compare
/// more, and replaces the slot's atom: hostile input can only make it miss. Only inline atoms
/// are cached, so the cache holds no memory beyond its 64 slots of 24 bytes.
mod atom_cache {
    use std::cell::RefCell;

    use super::Atom;

    /// The longest text cached: what fits an atom inline.
    pub(super) const LONGEST: usize = 23;
    const SLOTS: usize = 64;

    thread_local! {
        static CACHE: RefCell<[Atom; SLOTS]> = const { RefCell::new([Atom::EMPTY; SLOTS]) };
    }

    /// The slot for `raw`, from its length and first, middle and last bytes.
    #[inline(always)]
    fn slot(raw: &[u8]) -> usize {
        let n = raw.len();
        let (first, mid, last) = match raw {
            [] => (0, 0, 0),
            _ => (raw[0], raw[n / 2], raw[n - 1]),
        };
        let key = n as u32 ^ u32::from(first) << 5 ^ u32::from(mid) << 13 ^ u32::from(last) << 21;
        (key.wrapping_mul(0x9e37_79b9) >> 26) as usize % SLOTS
    }

    /// Calls `f` with the cached atom whose text is `raw` (at most [`LONGEST`] bytes), if the
    /// cache has it.
    #[inline(always)]
    pub(super) fn with<R>(raw: &[u8], f: impl FnOnce(&Atom) -> R) -> Option<R> {
        let i = slot(raw);
        CACHE
            .try_with(|cache| {
                let cache = cache.try_borrow().ok()?;
                let atom = &cache[i];
                eq_short(atom.as_str().as_bytes(), raw).then(|| f(atom))
            })
            .ok()
            .flatten()
    }

    /// Caches `atom` (of at most [`LONGEST`] bytes), replacing what its slot held.
    #[inline(never)]
    pub(super) fn put(atom: &Atom) {
        let i = slot(atom.as_str().as_bytes());
        let _ = CACHE.try_with(|cache| {
            if let Ok(mut cache) = cache.try_borrow_mut() {
                cache[i] = atom.clone();
            }
        });
    }

    /// Whether `a` and `b` are equal, with a few fixed-size compares instead of a call to
    /// `memcmp` when they are at most 23 bytes long.
    #[inline(always)]
    fn eq_short(a: &[u8], b: &[u8]) -> bool {
        #[inline(always)]
        fn pair<const N: usize>(a: &[u8], b: &[u8]) -> bool {
            a.first_chunk::<N>() == b.first_chunk::<N>()
                && a.last_chunk::<N>() == b.last_chunk::<N>()
        }
        let n = a.len();
        if n != b.len() {
            return false;
        }
        match n {
            0 => true,
            // The first, middle and last bytes are all of them.
            1..=3 => a[0] == b[0] && a[n / 2] == b[n / 2] && a[n - 1] == b[n - 1],
            4..=7 => pair::<4>(a, b),
            8..=15 => pair::<8>(a, b),
            16..=31 => pair::<16>(a, b),
            _ => a == b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(bytes: &[u8]) -> Result<Term, DecodeError> {
        Term::decode_slice(bytes)
    }

    #[test]
    fn small_values() {
        assert_eq!(dec(&[131, 97, 5]).unwrap(), Term::Int(5));
        assert_eq!(dec(&[131, 98, 255, 255, 255, 255]).unwrap(), Term::Int(-1));
        assert_eq!(dec(&[131, 106]).unwrap(), Term::NIL);
        assert_eq!(
            dec(&[131, 107, 0, 2, b'h', b'i']).unwrap(),
            Term::list(vec![Term::Int(104), Term::Int(105)])
        );
        assert_eq!(
            dec(&[131, 110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 128]).unwrap(),
            Term::BigInt(BigInt::from(1u64 << 63))
        );
        assert_eq!(
            dec(&[131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128]).unwrap(),
            Term::Int(i64::MIN)
        );
    }

    #[test]
    fn binaries_share_the_input() {
        let mut input = vec![131, 109, 0, 0, 4, 0];
        input.extend(std::iter::repeat_n(7u8, 1024));
        let input = Bytes::from(input);
        let Term::Binary(b) = Term::decode(&input).unwrap() else {
            panic!("not a binary")
        };
        assert_eq!(b.len(), 1024);
        assert_eq!(b.as_ptr(), input[6..].as_ptr());
    }

    #[test]
    fn hostile_lengths_are_errors_without_allocation() {
        // A list claiming 4 billion elements in a 10-byte input.
        assert!(matches!(
            dec(&[131, 108, 255, 255, 255, 255, 106]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            dec(&[131, 116, 255, 255, 255, 255]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            dec(&[131, 111, 255, 255, 255, 255, 0]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            dec(&[131, 200]),
            Err(DecodeError::UnknownTag { tag: 200, .. })
        ));
        assert!(matches!(
            dec(&[130, 97, 1]),
            Err(DecodeError::BadVersion { found: 130 })
        ));
        assert!(matches!(
            dec(&[131, 97, 1, 0]),
            Err(DecodeError::TrailingBytes { .. })
        ));
        assert!(matches!(dec(&[]), Err(DecodeError::Truncated { .. })));
    }

    #[test]
    fn element_fast_paths_check_like_the_rest() {
        // Integer runs broken by other terms, in lists and tuples, with improper tails.
        let t = Term::improper_list(
            vec![
                Term::Int(1),
                Term::Int(-70_000),
                Term::atom("a"),
                Term::Int(300),
                Term::binary(b"xy"),
                Term::Int(7),
            ],
            Term::Int(9),
        );
        assert_eq!(Term::decode(&t.encode()).unwrap(), t);
        let t = Term::tuple(vec![Term::Int(5), Term::atom("é"), Term::binary(b"")]);
        assert_eq!(Term::decode(&t.encode()).unwrap(), t);
        // A tuple whose atom is not UTF-8, whose atom or binary is cut short.
        assert!(matches!(
            dec(&[131, 104, 1, 119, 1, 0xff]),
            Err(DecodeError::Invalid { offset: 3, .. })
        ));
        assert!(matches!(
            dec(&[131, 104, 1, 119, 3, b'a']),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            dec(&[131, 104, 1, 109, 0, 0, 0, 3, 1]),
            Err(DecodeError::Truncated { .. })
        ));
        // A list that claims more integers than it holds.
        assert!(matches!(
            dec(&[131, 108, 0, 0, 0, 3, 97, 1, 97, 2]),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            dec(&[131, 108, 0, 0, 0, 2, 97, 1, 98, 0, 0]),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn cached_atoms_decode_like_uncached_ones() {
        // Texts of every cached length, some sharing a slot (same length and first, middle and
        // last bytes), decoded twice so that the second time comes from the cache.
        let mut texts: Vec<String> = (0..=24).map(|n| "x".repeat(n)).collect();
        texts.extend(
            [
                "hello", "hallo", "hxllo", "héllo", "ok", "oK", "field_01", "field_11",
            ]
            .map(String::from),
        );
        for _ in 0..2 {
            for text in &texts {
                let t = Term::tuple(vec![Term::atom(text), Term::Int(1)]);
                assert_eq!(Term::decode(&t.encode()).unwrap(), t, "{text}");
                assert_eq!(
                    Term::decode(&Term::atom(text).encode()).unwrap(),
                    Term::atom(text)
                );
            }
        }
        // Bytes that share a cached atom's slot but are not UTF-8 are still refused.
        assert!(matches!(
            dec(&[131, 104, 1, 119, 5, b'h', 0xff, b'l', b'l', b'o']),
            Err(DecodeError::Invalid { offset: 3, .. })
        ));
        assert!(matches!(
            dec(&[131, 119, 5, b'h', 0xff, b'l', b'l', b'o']),
            Err(DecodeError::Invalid { offset: 1, .. })
        ));
    }

    #[test]
    fn depth_is_limited() {
        let depth = 10_000;
        let mut input = vec![131];
        for _ in 0..depth {
            input.extend([104, 1]);
        }
        input.push(106);
        assert!(matches!(
            dec(&input),
            Err(DecodeError::TooDeep { limit: 512, .. })
        ));
        // Deeper limits need a bigger stack, which the caller provides.
        let deep = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || {
                let ok = DecodeOptions::new()
                    .max_depth(depth)
                    .decode(&Bytes::from(input));
                ok.is_ok()
            })
            .unwrap();
        assert!(deep.join().unwrap());
    }

    #[test]
    fn max_default_depth_fits_the_stack() {
        let depth = DecodeOptions::DEFAULT_MAX_DEPTH;
        let mut input = vec![131];
        for _ in 0..depth {
            input.extend([108, 0, 0, 0, 1]);
        }
        input.extend(std::iter::repeat_n(106, depth + 1));
        assert!(dec(&input).is_ok());
    }

    #[test]
    fn duplicate_map_keys_are_refused() {
        let input = [131, 116, 0, 0, 0, 2, 97, 1, 97, 2, 97, 1, 97, 3];
        assert!(matches!(
            dec(&input),
            Err(DecodeError::DuplicateMapKey { .. })
        ));
    }

    #[test]
    fn compressed_size_is_checked() {
        // Declares 2^32-1 bytes.
        let input = [131, 80, 255, 255, 255, 255, 120, 156];
        assert!(matches!(
            dec(&input),
            Err(DecodeError::DecompressedTooLarge { .. })
        ));
        let input = [131, 80, 0, 0, 0, 10, 120, 156, 1, 2, 3];
        assert!(matches!(dec(&input), Err(DecodeError::Compressed(_))));
    }

    #[test]
    fn atom_cache_refs_resolve() {
        let refs = [Atom::new("hello")];
        let input = Bytes::from_static(&[82, 0]);
        let (t, end) = DecodeOptions::new()
            .decode_body_at(&input, 0, &refs)
            .unwrap();
        assert_eq!((t, end), (Term::atom("hello"), 2));
        assert!(matches!(
            DecodeOptions::new().decode_body_at(&Bytes::from_static(&[82, 1]), 0, &refs),
            Err(DecodeError::UnknownAtomCacheRef { index: 1, .. })
        ));
    }
}
