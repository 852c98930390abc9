//! Packets after the handshake: 4-byte length frames (a zero length is a tick) holding one
//! distribution message in one of three forms:
//!
//! - pass-through: `112, 131 Control, 131 Payload?`;
//! - distribution header: `131, 68, AtomCacheRefs..., Control, Payload?` (terms without 131),
//!   whose atom cache (8 segments of 256 atoms) lives as long as the connection;
//! - fragments: `131, 69, SeqId, FragId, header...` then `131, 70, SeqId, FragId, data`, with
//!   FragId counting down to 1, reassembled here before decoding.
//!
//! [`PacketDecoder`] turns frames into [`DistMessage`]s; [`encode_message`] writes them, and
//! [`encode_message_as`] writes them in a chosen [`SendForm`], the atom cache included.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::atom_cache::AtomCache;
use super::control::{Control, ControlError};
use super::flags::DistFlags;
use crate::etf::{
    encode_term, tag, Atom, AtomWriter, DecodeError, DecodeOptions, Fields, InlineAtoms, Share,
    Term,
};

const PASS_THROUGH: u8 = 112;
const ATOM_CACHE_SIZE: usize = 8 * 256;
/// The largest scratch buffer an atom cache keeps between messages.
const SCRATCH_KEEP: usize = 1 << 20;

/// Why a packet could not be read. The session treats each as fatal for the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// A frame larger than the configured maximum.
    #[error("frame of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The packet is not in any known form.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A term in it did not decode.
    #[error("bad term in packet: {0}")]
    Term(#[from] DecodeError),
    /// The control message is not one this node understands.
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// One frame off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A zero-length keep-alive.
    Tick,
    /// A packet.
    Data(Bytes),
}

/// Takes one 4-byte-length frame off the front of `input`; `Ok(None)` when incomplete.
pub fn next_frame(input: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, PacketError> {
    if input.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize;
    if len > max_len {
        return Err(PacketError::TooLarge {
            len,
            limit: max_len,
        });
    }
    if input.len() < 4 + len {
        input.reserve(4 + len - input.len());
        return Ok(None);
    }
    input.advance(4);
    if len == 0 {
        return Ok(Some(Frame::Tick));
    }
    Ok(Some(Frame::Data(input.split_to(len).freeze())))
}

/// The length of the frame at the front of `input` when its header is there but not all of
/// its bytes (and it is no longer than `max_len`): a frame still being read.
pub(crate) fn incomplete_frame_len(input: &[u8], max_len: usize) -> Option<usize> {
    let len = u32::from_be_bytes(input.get(..4)?.try_into().ok()?) as usize;
    (len <= max_len && input.len() < 4 + len).then_some(len)
}

/// A decoded distribution message.
#[derive(Debug, Clone, PartialEq)]
pub struct DistMessage {
    /// What to do.
    pub control: Control,
    /// The message or reason, for control messages that carry one.
    pub payload: Option<Term>,
}

/// The most room reserved for a fragmented message before its fragments arrive.
const PREALLOCATE_FRAGMENTS: usize = 4 << 20;

struct Partial {
    atoms: Vec<Atom>,
    data: BytesMut,
    next_frag: u64,
}

/// Decodes packets of one connection, keeping its atom cache and unfinished fragments.
pub struct PacketDecoder {
    cache: Vec<Option<Atom>>,
    /// The current message's atom references, kept to reuse its memory.
    refs: Vec<Atom>,
    partial: HashMap<u64, Partial>,
    options: DecodeOptions,
    max_message: usize,
}

impl std::fmt::Debug for PacketDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketDecoder")
            .field("partial", &self.partial.len())
            .finish_non_exhaustive()
    }
}

impl PacketDecoder {
    /// A decoder that refuses reassembled messages over `max_message` bytes.
    pub fn new(options: DecodeOptions, max_message: usize) -> Self {
        PacketDecoder {
            cache: vec![None; ATOM_CACHE_SIZE],
            refs: Vec::new(),
            partial: HashMap::new(),
            options,
            max_message,
        }
    }

    /// Decodes one packet; `Ok(None)` when it is a fragment of an unfinished message.
    pub fn decode(&mut self, packet: Bytes) -> Result<Option<DistMessage>, PacketError> {
        match (packet.first(), packet.get(1)) {
            (Some(&PASS_THROUGH), Some(&tag::VERSION))
                if packet.get(2) != Some(&tag::COMPRESSED) =>
            {
                let (control, end) = self.control_at(&packet, 2, &[])?;
                self.finish(&packet, control, end, &[], true).map(Some)
            }
            (Some(&PASS_THROUGH), _) => {
                let (control, end) = self.options.decode_versioned_at(&packet, 1, &[])?;
                let control = Control::from_term(&control)?;
                self.finish(&packet, control, end, &[], true).map(Some)
            }
            (Some(&tag::VERSION), Some(&tag::DIST_HEADER)) => {
                let mut pos = 2;
                // The atom references go in a buffer kept from one message to the next.
                let mut atoms = std::mem::take(&mut self.refs);
                let result = self
                    .read_header(&packet, &mut pos, &mut atoms)
                    .and_then(|()| {
                        let (control, end) = self.control_at(&packet, pos, &atoms)?;
                        self.finish(&packet, control, end, &atoms, false)
                    });
                atoms.clear();
                self.refs = atoms;
                result.map(Some)
            }
            (Some(&tag::VERSION), Some(&tag::DIST_FRAG_HEADER)) => {
                let mut pos = 2;
                let seq = read_u64(&packet, &mut pos)?;
                let frag = read_u64(&packet, &mut pos)?;
                let mut atoms = Vec::new();
                self.read_header(&packet, &mut pos, &mut atoms)?;
                let data = &packet[pos..];
                if frag <= 1 {
                    return self.decode_body(packet.slice(pos..), &atoms).map(Some);
                }
                if self.partial.len() >= 64 {
                    return Err(PacketError::Malformed(
                        "too many unfinished fragmented messages",
                    ));
                }
                self.check_size(data.len())?;
                // Room for all the fragments if they are as long as the first (OTP cuts
                // them to one size), so that reassembly copies each once; but no more than
                // 4 MiB before they arrive (the count comes from the peer).
                let expected = usize::try_from(frag)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(data.len())
                    .min(self.max_message)
                    .min(PREALLOCATE_FRAGMENTS);
                let mut whole = BytesMut::with_capacity(expected);
                whole.extend_from_slice(data);
                self.partial.insert(
                    seq,
                    Partial {
                        atoms,
                        data: whole,
                        next_frag: frag - 1,
                    },
                );
                Ok(None)
            }
            (Some(&tag::VERSION), Some(&tag::DIST_FRAG_CONT)) => {
                let mut pos = 2;
                let seq = read_u64(&packet, &mut pos)?;
                let frag = read_u64(&packet, &mut pos)?;
                let max = self.max_message;
                let partial = self
                    .partial
                    .get_mut(&seq)
                    .ok_or(PacketError::Malformed("fragment of an unknown message"))?;
                if frag != partial.next_frag {
                    return Err(PacketError::Malformed("fragment out of order"));
                }
                if partial.data.len() + packet.len() - pos > max {
                    return Err(PacketError::TooLarge {
                        len: partial.data.len() + packet.len() - pos,
                        limit: max,
                    });
                }
                partial.data.extend_from_slice(&packet[pos..]);
                partial.next_frag -= 1;
                if frag > 1 {
                    return Ok(None);
                }
                let Some(done) = self.partial.remove(&seq) else {
                    return Ok(None);
                };
                self.decode_body(done.data.freeze(), &done.atoms).map(Some)
            }
            _ => Err(PacketError::Malformed("unknown packet form")),
        }
    }

    fn check_size(&self, len: usize) -> Result<(), PacketError> {
        if len > self.max_message {
            return Err(PacketError::TooLarge {
                len,
                limit: self.max_message,
            });
        }
        Ok(())
    }

    fn decode_body(&self, body: Bytes, atoms: &[Atom]) -> Result<DistMessage, PacketError> {
        let (control, end) = self.control_at(&body, 0, atoms)?;
        self.finish(&body, control, end, atoms, false)
    }

    /// Decodes the control message (no version byte) at `pos`: the common ones straight from
    /// the bytes, any other as a term first.
    fn control_at(
        &self,
        buf: &Bytes,
        pos: usize,
        atoms: &[Atom],
    ) -> Result<(Control, usize), PacketError> {
        let mut fields = Fields::new(&self.options, buf, pos, atoms);
        if let Some(control) = Control::read_common(&mut fields) {
            return Ok((control, fields.pos()));
        }
        let (control, end) = self.options.decode_body_at(buf, pos, atoms)?;
        Ok((Control::from_term(&control)?, end))
    }

    fn finish(
        &self,
        buf: &Bytes,
        control: Control,
        end: usize,
        atoms: &[Atom],
        versioned: bool,
    ) -> Result<DistMessage, PacketError> {
        let payload = if control.has_payload() {
            let (term, pend) = if versioned {
                self.options.decode_versioned_at(buf, end, atoms)?
            } else {
                self.options.decode_body_at(buf, end, atoms)?
            };
            if pend != buf.len() {
                return Err(PacketError::Malformed("bytes after the payload"));
            }
            Some(term)
        } else {
            if end != buf.len() {
                return Err(PacketError::Malformed("bytes after the control message"));
            }
            None
        };
        Ok(DistMessage { control, payload })
    }

    /// Reads `NumberOfAtomCacheRefs, Flags, AtomCacheRefs` at `pos`, updating the cache, and
    /// returns this message's atom references in order.
    fn read_header(
        &mut self,
        buf: &[u8],
        pos: &mut usize,
        atoms: &mut Vec<Atom>,
    ) -> Result<(), PacketError> {
        let short = PacketError::Malformed("truncated distribution header");
        let n = usize::from(*buf.get(*pos).ok_or(short.clone())?);
        *pos += 1;
        if n == 0 {
            return Ok(());
        }
        let flag_bytes = n / 2 + 1;
        let flags = buf.get(*pos..*pos + flag_bytes).ok_or(short.clone())?;
        *pos += flag_bytes;
        let nibble = |i: usize| (flags[i / 2] >> ((i % 2) * 4)) & 0x0f;
        let long_atoms = nibble(n) & 0x01 != 0;
        atoms.reserve(n);
        for i in 0..n {
            let f = nibble(i);
            let segment = usize::from(f & 0x07);
            let internal = usize::from(*buf.get(*pos).ok_or(short.clone())?);
            *pos += 1;
            let index = segment * 256 + internal;
            if f & 0x08 != 0 {
                let len = if long_atoms {
                    let b = buf.get(*pos..*pos + 2).ok_or(short.clone())?;
                    *pos += 2;
                    usize::from(u16::from_be_bytes([b[0], b[1]]))
                } else {
                    let b = *buf.get(*pos).ok_or(short.clone())?;
                    *pos += 1;
                    usize::from(b)
                };
                let text = buf.get(*pos..*pos + len).ok_or(short.clone())?;
                *pos += len;
                let text = std::str::from_utf8(text)
                    .map_err(|_| PacketError::Malformed("atom in header is not UTF-8"))?;
                self.cache[index] = Some(Atom::new(text));
            }
            let atom = self.cache[index].clone().ok_or(PacketError::Malformed(
                "reference to an empty atom cache entry",
            ))?;
            atoms.push(atom);
        }
        Ok(())
    }
}

fn read_u64(buf: &[u8], pos: &mut usize) -> Result<u64, PacketError> {
    let b = buf
        .get(*pos..*pos + 8)
        .ok_or(PacketError::Malformed("truncated fragment header"))?;
    *pos += 8;
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    Ok(u64::from_be_bytes(a))
}

/// Appends one framed message to `out`, in the form the connection's `flags` call for: a
/// distribution header without atom cache references when the peer takes headers (OTP
/// decodes it without a cache lookup), pass-through otherwise.
pub fn encode_message(
    out: &mut BytesMut,
    flags: DistFlags,
    control: &Control,
    payload: Option<&Term>,
) {
    encode_plain(out, flags, control, payload);
}

/// What follows a control message: something that writes itself as one term.
pub(crate) trait Payload {
    /// Appends the term without the version byte, atoms through `atoms`, big binaries by
    /// reference when `share` says where.
    fn write_body<A: AtomWriter>(
        &self,
        out: &mut BytesMut,
        atoms: &mut A,
        share: Option<Share<'_>>,
    );
}

impl Payload for Term {
    fn write_body<A: AtomWriter>(
        &self,
        out: &mut BytesMut,
        atoms: &mut A,
        share: Option<Share<'_>>,
    ) {
        encode_term(self, out, atoms, share);
    }
}

/// [`encode_message`] for any payload.
fn encode_plain<P: Payload>(
    out: &mut BytesMut,
    flags: DistFlags,
    control: &Control,
    payload: Option<&P>,
) {
    let start = out.len();
    out.put_u32(0);
    if flags.contains(DistFlags::DIST_HDR_ATOM_CACHE) {
        out.put_slice(&[tag::VERSION, tag::DIST_HEADER, 0]);
        write_control(control, out, &mut InlineAtoms);
        if let Some(p) = payload {
            p.write_body(out, &mut InlineAtoms, None);
        }
    } else {
        out.put_u8(PASS_THROUGH);
        out.put_u8(tag::VERSION);
        write_control(control, out, &mut InlineAtoms);
        if let Some(p) = payload {
            out.put_u8(tag::VERSION);
            p.write_body(out, &mut InlineAtoms, None);
        }
    }
    end_frame(out, start, 0);
}

/// How a connection writes its messages; see [`encode_message_as`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SendForm {
    /// `112, 131 Control, 131 Payload`: for peers without `DIST_HDR_ATOM_CACHE`.
    PassThrough,
    /// `131, 68, 0, Control, Payload`: the distribution header with no atom cache references;
    /// every atom inline. What [`encode_message`] writes when the peer takes headers.
    Header,
    /// `131, 68, Refs..., Control, Payload`: atoms through the connection's sender atom cache
    /// (new entries the first time, one-byte references after). Needs `DIST_HDR_ATOM_CACHE`.
    AtomCache(Box<AtomCache>),
}

impl SendForm {
    /// What [`encode_message`] uses for a connection with these flags: [`SendForm::Header`]
    /// when the peer takes the distribution header, else [`SendForm::PassThrough`].
    pub fn for_flags(flags: DistFlags) -> SendForm {
        if flags.contains(DistFlags::DIST_HDR_ATOM_CACHE) {
            SendForm::Header
        } else {
            SendForm::PassThrough
        }
    }

    /// The atom cache form with an empty cache when the peer takes the distribution header,
    /// else [`SendForm::PassThrough`]. One per connection: the cache is the connection's.
    pub fn with_atom_cache(flags: DistFlags) -> SendForm {
        if flags.contains(DistFlags::DIST_HDR_ATOM_CACHE) {
            SendForm::AtomCache(Box::default())
        } else {
            SendForm::PassThrough
        }
    }
}

/// Appends one framed message to `out` in `form`. With [`SendForm::AtomCache`], messages must
/// go on the wire in the order they are encoded, all of them through the same `form`.
pub fn encode_message_as(
    out: &mut BytesMut,
    form: &mut SendForm,
    control: &Control,
    payload: Option<&Term>,
) {
    encode_frame_as(out, form, control, payload);
}

/// [`encode_message_as`] for any payload.
pub(crate) fn encode_frame_as<P: Payload>(
    out: &mut BytesMut,
    form: &mut SendForm,
    control: &Control,
    payload: Option<&P>,
) {
    encode_frame_shared(out, form, control, payload, None);
}

/// Big binaries a frame encoder left out of its output, to be written from where they are
/// (see [`encode_frame_shared`]): a writer writes the output up to each one's position, then
/// the binary, and so on. Only binaries of at least [`Shares::FROM`] bytes go this way.
#[derive(Debug, Default)]
pub(crate) struct Shares {
    /// Each binary with the position in the output it goes before, in order.
    pub(crate) at: Vec<(usize, Bytes)>,
    /// How many bytes `at` holds.
    pub(crate) bytes: usize,
    /// The encoder's segments, kept for the next frame.
    segments: Vec<Bytes>,
}

impl Shares {
    /// Binaries of at least this many bytes are shared, not copied: an extra write costs
    /// less than copying that much, and smaller ones batch better.
    pub(crate) const FROM: usize = 64 << 10;

    /// Shares `bytes` at the end of `out` when big enough, else copies it there; returns how
    /// many bytes it shared.
    fn put(&mut self, out: &mut BytesMut, bytes: Bytes) -> usize {
        if bytes.len() < Self::FROM {
            out.extend_from_slice(&bytes);
            return 0;
        }
        let n = bytes.len();
        self.at.push((out.len(), bytes));
        self.bytes += n;
        n
    }

    /// Forgets what was shared (once it is written).
    pub(crate) fn clear(&mut self) {
        self.at.clear();
        self.bytes = 0;
    }
}

/// [`encode_frame_as`], with binaries of at least [`Shares::FROM`] bytes left in place and
/// noted in `shares` rather than copied into `out`, in the atom cache form (the others copy).
pub(crate) fn encode_frame_shared<P: Payload>(
    out: &mut BytesMut,
    form: &mut SendForm,
    control: &Control,
    payload: Option<&P>,
    mut shares: Option<&mut Shares>,
) {
    let cache = match form {
        SendForm::PassThrough => return encode_plain(out, DistFlags(0), control, payload),
        SendForm::Header => {
            return encode_plain(out, DistFlags::DIST_HDR_ATOM_CACHE, control, payload)
        }
        SendForm::AtomCache(cache) => cache,
    };
    let start = out.len();
    out.put_u32(0);
    // The terms come after the header, but decide what goes into it: write them aside first.
    // With shares, the encoder splits what it wrote before each big binary off `body` into
    // `segments`, followed by the binary.
    let mut body = std::mem::take(&mut cache.body);
    body.clear();
    cache.begin_message();
    write_control(control, &mut body, &mut **cache);
    let mut segments = shares
        .as_deref_mut()
        .map(|s| std::mem::take(&mut s.segments))
        .unwrap_or_default();
    if let Some(p) = payload {
        let share = shares.is_some().then_some(Share {
            segments: &mut segments,
            from: Shares::FROM,
        });
        p.write_body(&mut body, &mut **cache, share);
    }
    out.put_slice(&[tag::VERSION, tag::DIST_HEADER]);
    cache.write_header(out);
    let mut shared = 0;
    // Pieces split off `body` still hold its allocation, of which `body` then reports only
    // the tail as its capacity: such a buffer is not kept.
    let split = !segments.is_empty();
    if let Some(shares) = shares {
        for segment in segments.drain(..) {
            shared += shares.put(out, segment);
        }
        shares.segments = segments;
    }
    out.extend_from_slice(&body);
    // Keep the scratch buffer for the next message, unless one big message grew it.
    if !split && body.capacity() <= SCRATCH_KEEP {
        cache.body = body;
    }
    end_frame(out, start, shared);
}

/// Fills in the length of the frame begun at `start` (where 4 bytes were reserved for it):
/// what `out` holds after them, plus `shared` bytes written from elsewhere.
fn end_frame(out: &mut BytesMut, start: usize, shared: usize) {
    let len = (out.len() - start - 4 + shared) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends `control` (no version byte), atoms through `atoms`: the common ones without
/// building their term.
fn write_control<A: AtomWriter>(control: &Control, out: &mut BytesMut, atoms: &mut A) {
    if !control.write_common(out, atoms) {
        encode_term(&control.to_term(), out, atoms, None);
    }
}

/// Like [`encode_message_as`], with the payload already encoded: ETF with its version byte
/// 131 and not compressed, as [`Term::encode`] gives it. In the [`SendForm::AtomCache`] form only
/// the control message's atoms go through the cache; the payload's stay inline (a header
/// message may mix both).
pub fn encode_message_as_raw(
    out: &mut BytesMut,
    form: &mut SendForm,
    control: &Control,
    payload: Option<&[u8]>,
) {
    raw_frame(out, form, control, payload, |out, tail| {
        out.put_slice(tail);
        0
    });
}

/// [`encode_message_as_raw`] with the payload left in place and noted in `shares` when it is
/// big enough (see [`Shares`]).
pub(crate) fn encode_raw_shared(
    out: &mut BytesMut,
    form: &mut SendForm,
    control: &Control,
    payload: &Bytes,
    shares: &mut Shares,
) {
    raw_frame(out, form, control, Some(payload), |out, tail| {
        shares.put(out, payload.slice_ref(tail))
    });
}

/// Frames `control` and an encoded `payload`; `tail` appends the payload's part that goes
/// out (with or without its 131) and returns how many bytes of it it left out of `out`.
fn raw_frame(
    out: &mut BytesMut,
    form: &mut SendForm,
    control: &Control,
    payload: Option<&[u8]>,
    mut tail: impl FnMut(&mut BytesMut, &[u8]) -> usize,
) {
    // Callers pass `Term::encode` output; tolerate a missing 131 rather than fail the writer.
    let body = payload.map(|p| p.strip_prefix(&[tag::VERSION]).unwrap_or(p));
    let start = out.len();
    out.put_u32(0);
    let shared = match form {
        SendForm::PassThrough => {
            out.put_slice(&[PASS_THROUGH, tag::VERSION]);
            write_control(control, out, &mut InlineAtoms);
            tail(out, payload.unwrap_or_default())
        }
        SendForm::Header => {
            out.put_slice(&[tag::VERSION, tag::DIST_HEADER, 0]);
            write_control(control, out, &mut InlineAtoms);
            tail(out, body.unwrap_or_default())
        }
        SendForm::AtomCache(cache) => {
            let mut scratch = std::mem::take(&mut cache.body);
            scratch.clear();
            cache.begin_message();
            write_control(control, &mut scratch, &mut **cache);
            out.put_slice(&[tag::VERSION, tag::DIST_HEADER]);
            cache.write_header(out);
            out.extend_from_slice(&scratch);
            cache.body = scratch;
            tail(out, body.unwrap_or_default())
        }
    };
    end_frame(out, start, shared);
}

/// Appends a framed message whose control body (without 131) and payload (with 131) are
/// already encoded: what a proxy sends, its control encoded once.
pub fn encode_prepared(out: &mut BytesMut, flags: DistFlags, control: &[u8], payload: &[u8]) {
    prepared_frame(out, flags, control, payload, |out, tail| {
        out.put_slice(tail);
        0
    });
}

/// [`encode_prepared`] taking the payload's buffer, which is left in place and noted in
/// `shares` when it is big enough (see [`Shares`]).
pub(crate) fn encode_prepared_shared(
    out: &mut BytesMut,
    flags: DistFlags,
    control: &[u8],
    payload: Vec<u8>,
    shares: &mut Shares,
) {
    if payload.len() < Shares::FROM {
        return encode_prepared(out, flags, control, &payload);
    }
    let payload = Bytes::from(payload);
    prepared_frame(out, flags, control, &payload, |out, tail| {
        shares.put(out, payload.slice_ref(tail))
    });
}

/// Frames an encoded control and payload; `tail` appends the payload's part that goes out
/// and returns how many bytes of it it left out of `out`.
fn prepared_frame(
    out: &mut BytesMut,
    flags: DistFlags,
    control: &[u8],
    payload: &[u8],
    tail: impl FnOnce(&mut BytesMut, &[u8]) -> usize,
) {
    let (head, payload): (&[u8], &[u8]) = if flags.contains(DistFlags::DIST_HDR_ATOM_CACHE) {
        (
            &[tag::VERSION, tag::DIST_HEADER, 0],
            payload.get(1..).unwrap_or_default(),
        )
    } else {
        (&[PASS_THROUGH, tag::VERSION], payload)
    };
    let len = head.len() + control.len() + payload.len();
    out.reserve(4 + len - payload.len());
    out.put_u32(len as u32);
    out.put_slice(head);
    out.put_slice(control);
    tail(out, payload);
}

/// Appends a tick (an empty frame) to `out`.
pub fn encode_tick(out: &mut BytesMut) {
    out.put_u32(0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::control::ProcessRef;
    use crate::etf::Pid;

    fn pid() -> Pid {
        Pid {
            node: Atom::new("a@h"),
            id: 5,
            serial: 0,
            creation: 2,
        }
    }

    fn frame_body(out: &mut BytesMut) -> Bytes {
        match next_frame(out, 1 << 24).unwrap().unwrap() {
            Frame::Data(b) => b,
            Frame::Tick => panic!("tick"),
        }
    }

    #[test]
    fn both_forms_roundtrip() {
        let control = Control::Send { to: pid() };
        let msg = Term::tuple(vec![Term::atom("hello"), Term::Int(42)]);
        for flags in [DistFlags(0), DistFlags::DIST_HDR_ATOM_CACHE] {
            let mut out = BytesMut::new();
            encode_message(&mut out, flags, &control, Some(&msg));
            let body = frame_body(&mut out);
            let mut dec = PacketDecoder::new(DecodeOptions::new(), 1 << 20);
            let m = dec.decode(body).unwrap().unwrap();
            assert_eq!(m.control, control);
            assert_eq!(m.payload, Some(msg.clone()));
        }
    }

    #[test]
    fn prepared_messages_decode_in_both_forms() {
        let control = Control::Send { to: pid() };
        let mut body = BytesMut::new();
        control.to_term().encode_body_into(&mut body);
        let msg = Term::tuple(vec![Term::atom("hello"), Term::Int(42)]);
        for flags in [DistFlags(0), DistFlags::DIST_HDR_ATOM_CACHE] {
            let mut out = BytesMut::new();
            encode_prepared(&mut out, flags, &body, &msg.encode());
            let packet = frame_body(&mut out);
            let mut dec = PacketDecoder::new(DecodeOptions::new(), 1 << 20);
            let m = dec.decode(packet).unwrap().unwrap();
            assert_eq!(m.control, control);
            assert_eq!(m.payload, Some(msg.clone()));
        }
    }

    #[test]
    fn ticks_and_limits() {
        let mut out = BytesMut::new();
        encode_tick(&mut out);
        assert_eq!(next_frame(&mut out, 10).unwrap(), Some(Frame::Tick));
        let mut big = BytesMut::from(&[0u8, 1, 0, 0][..]);
        assert!(matches!(
            next_frame(&mut big, 100),
            Err(PacketError::TooLarge { .. })
        ));
        let mut partial = BytesMut::from(&[0u8, 0, 0, 5, 1][..]);
        assert_eq!(incomplete_frame_len(&partial, 100), Some(5));
        assert_eq!(incomplete_frame_len(&partial, 4), None);
        assert_eq!(incomplete_frame_len(&partial[..3], 100), None);
        assert_eq!(next_frame(&mut partial, 100).unwrap(), None);
        partial.extend_from_slice(&[2, 3, 4, 5]);
        assert_eq!(incomplete_frame_len(&partial, 100), None);
    }

    /// A header with one new cache entry, then a message that refers to it twice.
    #[test]
    fn atom_cache_header() {
        let mut dec = PacketDecoder::new(DecodeOptions::new(), 1 << 20);
        let mut pkt = vec![131, 68, 1];
        // Flags: ref 0 is new in segment 2 (0b1010); next nibble: short atoms.
        pkt.push(0x0a);
        pkt.extend([7, 10]);
        pkt.extend(b"net_kernel");
        // Control {6, Pid, '', net_kernel} with the name as cache ref 0.
        let mut ctl = BytesMut::new();
        ctl.put_slice(&[104, 4, 97, 6]);
        Term::Pid(pid()).encode_body_into(&mut ctl);
        Term::atom("").encode_body_into(&mut ctl);
        ctl.put_slice(&[82, 0]);
        pkt.extend_from_slice(&ctl);
        pkt.extend([82, 0]); // payload: the cached atom itself
        let m = dec.decode(Bytes::from(pkt)).unwrap().unwrap();
        assert_eq!(
            m.control,
            Control::RegSend {
                from: pid(),
                to_name: Atom::new("net_kernel")
            }
        );
        assert_eq!(m.payload, Some(Term::atom("net_kernel")));
        // The entry stays cached for later packets: segment 2, index 7, not new.
        let mut pkt = vec![131, 68, 1, 0x02, 7];
        let mut control = BytesMut::new();
        Term::tuple(vec![Term::Int(2), Term::atom(""), Term::Pid(pid())])
            .encode_body_into(&mut control);
        pkt.extend_from_slice(&control);
        pkt.extend([82, 0]);
        let m = dec.decode(Bytes::from(pkt)).unwrap().unwrap();
        assert_eq!(m.payload, Some(Term::atom("net_kernel")));
    }

    #[test]
    fn fragments_reassemble() {
        let control = Control::Send { to: pid() };
        let msg = Term::binary(vec![9u8; 1000]);
        let mut body = BytesMut::new();
        control.to_term().encode_body_into(&mut body);
        msg.encode_body_into(&mut body);
        let (first, rest) = body.split_at(300);
        let mut dec = PacketDecoder::new(DecodeOptions::new(), 1 << 20);
        let mut p1 = vec![131, 69];
        p1.extend(7u64.to_be_bytes());
        p1.extend(2u64.to_be_bytes());
        p1.push(0);
        p1.extend_from_slice(first);
        assert_eq!(dec.decode(Bytes::from(p1)).unwrap(), None);
        let mut p2 = vec![131, 70];
        p2.extend(7u64.to_be_bytes());
        p2.extend(1u64.to_be_bytes());
        p2.extend_from_slice(rest);
        let m = dec.decode(Bytes::from(p2)).unwrap().unwrap();
        assert_eq!(m.payload, Some(msg.clone()));

        // A message in one fragment: its binary is read in place from the packet.
        let mut p = vec![131, 69];
        p.extend(8u64.to_be_bytes());
        p.extend(1u64.to_be_bytes());
        p.push(0);
        p.extend_from_slice(&body);
        let packet = Bytes::from(p);
        let m = dec.decode(packet.clone()).unwrap().unwrap();
        let Some(Term::Binary(b)) = &m.payload else {
            panic!("{m:?}")
        };
        assert_eq!(b[..], [9u8; 1000][..]);
        assert!(packet.as_ptr_range().contains(&b.as_ptr()));

        // A huge fragment count reserves at most PREALLOCATE_FRAGMENTS up front.
        let mut p = vec![131, 69];
        p.extend(9u64.to_be_bytes());
        p.extend(u64::MAX.to_be_bytes());
        p.push(0);
        p.extend_from_slice(first);
        let mut dec = PacketDecoder::new(DecodeOptions::new(), 1 << 30);
        assert_eq!(dec.decode(Bytes::from(p)).unwrap(), None);
        assert!(dec.partial[&9].data.capacity() <= PREALLOCATE_FRAGMENTS);
    }

    fn ref_to(node: &str) -> crate::etf::Reference {
        crate::etf::Reference::new(Atom::new(node), 3, &[1, 2, 3]).unwrap()
    }

    /// Encodes `msgs` through one atom cache form and decodes them in order with one decoder,
    /// as the two ends of a connection do; returns the packets.
    fn through_cache(form: &mut SendForm, msgs: &[(Control, Option<Term>)]) -> Vec<Bytes> {
        let mut out = BytesMut::new();
        for (control, payload) in msgs {
            encode_message_as(&mut out, form, control, payload.as_ref());
        }
        let mut dec = PacketDecoder::new(DecodeOptions::new(), 1 << 24);
        let mut packets = Vec::new();
        for (control, payload) in msgs {
            let body = frame_body(&mut out);
            packets.push(body.clone());
            let m = dec.decode(body).unwrap().unwrap();
            assert_eq!(&m.control, control);
            assert_eq!(&m.payload, payload);
        }
        assert!(out.is_empty());
        packets
    }

    /// The number of atom cache references in a `131, 68` packet, and how many are new.
    fn header_refs(packet: &[u8]) -> (usize, usize) {
        assert_eq!(&packet[..2], &[131, 68]);
        let n = usize::from(packet[2]);
        let new = (0..n)
            .filter(|i| (packet[3 + i / 2] >> ((i % 2) * 4)) & 0x08 != 0)
            .count();
        (n, new)
    }

    fn gen_call() -> (Control, Option<Term>) {
        let from = Term::tuple(vec![
            Term::Pid(pid()),
            Term::improper_list(vec![Term::atom("alias")], Term::from(ref_to("a@h"))),
        ]);
        let msg = Term::tuple(vec![
            Term::atom("$gen_call"),
            from,
            Term::tuple(vec![
                Term::atom("put"),
                Term::atom("key"),
                Term::atom("value"),
            ]),
        ]);
        let control = Control::RegSend {
            from: pid(),
            to_name: Atom::new("kv_store"),
        };
        (control, Some(msg))
    }

    #[test]
    fn atom_cache_form_roundtrips_and_reuses_entries() {
        let mut form = SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE);
        assert!(matches!(form, SendForm::AtomCache(_)));
        let hello = (
            Control::Send { to: pid() },
            Some(Term::tuple(vec![
                Term::atom("hello"),
                Term::Int(42),
                Term::binary(&b"payload-0123456789"[..]),
            ])),
        );
        let link = (
            Control::Link {
                from: pid(),
                to: pid(),
            },
            None,
        );
        let msgs = vec![
            hello.clone(),
            hello.clone(),
            gen_call(),
            gen_call(),
            link,
            hello,
        ];
        let packets = through_cache(&mut form, &msgs);
        // First message: '' and 'a@h' (control), hello (payload) are new.
        assert_eq!(header_refs(&packets[0]), (3, 3));
        // Second: the same three, all cached.
        assert_eq!(header_refs(&packets[1]), (3, 0));
        // The call adds '$gen_call', alias, put, key, value, kv_store; 'a@h' and '' are cached
        // ('a@h' appears three times but once in the header).
        assert_eq!(header_refs(&packets[2]), (8, 6));
        assert_eq!(header_refs(&packets[3]), (8, 0));
        assert_eq!(header_refs(&packets[4]), (1, 0));
        assert_eq!(header_refs(&packets[5]), (3, 0));
        // A warm cached message is smaller than the same message with inline atoms.
        let mut plain = BytesMut::new();
        let (c, p) = &msgs[3];
        encode_message(&mut plain, DistFlags::DIST_HDR_ATOM_CACHE, c, p.as_ref());
        assert!(
            packets[3].len() + 4 < plain.len(),
            "{} vs {}",
            packets[3].len(),
            plain.len()
        );
    }

    /// One of each control message read and written without a term, monitors by pid and by name.
    fn common_controls() -> Vec<Control> {
        let reference = crate::etf::Reference::new(Atom::new("a@h"), 3, &[1, 2, 3]).unwrap();
        vec![
            Control::Send { to: pid() },
            Control::RegSend {
                from: pid(),
                to_name: Atom::new("counter"),
            },
            Control::SendSender {
                from: pid(),
                to: pid(),
            },
            Control::AliasSend {
                from: pid(),
                alias: reference.clone(),
            },
            Control::MonitorP {
                from: pid(),
                to: ProcessRef::Pid(pid()),
                reference: reference.clone(),
            },
            Control::MonitorP {
                from: pid(),
                to: ProcessRef::Name(Atom::new("kv")),
                reference: reference.clone(),
            },
            Control::DemonitorP {
                from: pid(),
                to: ProcessRef::Name(Atom::new("kv")),
                reference,
            },
        ]
    }

    /// The common controls are written without building their term: the same bytes, and the
    /// same atom cache entries, as encoding the term.
    #[test]
    fn common_controls_encode_as_their_terms() {
        let controls = common_controls();
        let cache = || match SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE) {
            SendForm::AtomCache(cache) => cache,
            _ => panic!("no atom cache"),
        };
        let (mut direct_cache, mut term_cache) = (cache(), cache());
        for control in &controls {
            let (mut direct, mut via_term) = (BytesMut::new(), BytesMut::new());
            assert!(control.write_common(&mut direct, &mut InlineAtoms));
            encode_term(&control.to_term(), &mut via_term, &mut InlineAtoms, None);
            assert_eq!(direct, via_term, "{control:?}");
            direct_cache.begin_message();
            term_cache.begin_message();
            let (mut direct, mut via_term) = (BytesMut::new(), BytesMut::new());
            assert!(control.write_common(&mut direct, &mut *direct_cache));
            encode_term(&control.to_term(), &mut via_term, &mut *term_cache, None);
            assert_eq!(direct, via_term, "{control:?} through the cache");
            let (mut direct_header, mut term_header) = (BytesMut::new(), BytesMut::new());
            direct_cache.write_header(&mut direct_header);
            term_cache.write_header(&mut term_header);
            assert_eq!(direct_header, term_header, "{control:?} header");
        }
        // The others are left to their term.
        let link = Control::Link {
            from: pid(),
            to: pid(),
        };
        let mut out = BytesMut::new();
        assert!(!link.write_common(&mut out, &mut InlineAtoms));
        assert!(out.is_empty());
    }

    /// Sends and monitors are read without building a term; they decode the same in every
    /// form, and a send in a shape the direct reader does not take still decodes.
    #[test]
    fn common_controls_decode_directly_in_every_form() {
        let hello = Some(Term::tuple(vec![Term::atom("hello"), Term::Int(42)]));
        // Twice, so that the second round uses cache references.
        let round = common_controls().into_iter().map(|c| {
            let payload = c.has_payload().then(|| hello.clone()).flatten();
            (c, payload)
        });
        let msgs: Vec<_> = round.clone().chain(round).collect();
        for flags in [DistFlags(0), DistFlags::DIST_HDR_ATOM_CACHE] {
            through_cache(&mut SendForm::with_atom_cache(flags), &msgs);
        }
        // {2, Pid, To}: the unused field as a pid (old nodes), read by the general path.
        let control = Term::tuple(vec![Term::Int(2), Term::Pid(pid()), Term::Pid(pid())]);
        let mut body = BytesMut::from(&[PASS_THROUGH][..]);
        body.extend_from_slice(&control.encode());
        body.extend_from_slice(&hello.clone().unwrap().encode());
        let mut dec = PacketDecoder::new(DecodeOptions::new(), 1 << 20);
        let m = dec.decode(body.freeze()).unwrap().unwrap();
        assert_eq!(m.control, Control::Send { to: pid() });
        assert_eq!(m.payload, hello);
        // A truncated pid in a direct read is an error, not a panic.
        let mut short = BytesMut::from(&[PASS_THROUGH][..]);
        short.extend_from_slice(&control.encode()[..12]);
        assert!(dec.decode(short.freeze()).is_err());
    }

    /// Atoms that hash to the same slot: within one message the second is written inline;
    /// across messages each replaces the other as a new entry, and the receiver follows.
    #[test]
    fn atom_cache_collisions_replace_entries() {
        let mut by_slot = HashMap::new();
        let (a, b) = (0..)
            .find_map(|i| {
                let name = format!("atom_{i}");
                let slot = super::super::atom_cache::slot_of(name.as_bytes());
                by_slot.insert(slot, name.clone()).map(|prev| (prev, name))
            })
            .unwrap();
        let send = |atoms: &[&str]| {
            (
                Control::Send { to: pid() },
                Some(Term::list(
                    atoms.iter().map(|a| Term::atom(*a)).collect::<Vec<_>>(),
                )),
            )
        };
        let mut form = SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE);
        let msgs = vec![
            send(&[&a]),
            send(&[&b]),
            send(&[&a, &b, &a, &b]),
            send(&[&b, &a]),
            send(&[&b]),
            send(&[&a]),
        ];
        let packets = through_cache(&mut form, &msgs);
        // Header refs: '' , 'a@h' and the listed atoms that own their slot in the message.
        assert_eq!(header_refs(&packets[0]), (3, 3)); // '', a@h, a
        assert_eq!(header_refs(&packets[1]), (3, 1)); // b replaces a
        assert_eq!(header_refs(&packets[2]), (3, 1)); // a replaces b; b inline
        assert_eq!(header_refs(&packets[3]), (3, 1)); // b replaces a; a inline
        assert_eq!(header_refs(&packets[4]), (3, 0)); // b cached
        assert_eq!(header_refs(&packets[5]), (3, 1)); // a replaces b
    }

    /// More than 255 distinct atoms in one message: the first 255 go through the cache, the
    /// rest inline; long UTF-8 atoms set the LongAtoms flag.
    #[test]
    fn atom_cache_limits_and_long_atoms() {
        let many: Vec<Term> = (0..400).map(|i| Term::atom(format!("many_{i}"))).collect();
        let long = Term::atom("ж".repeat(200)); // 400 bytes, 200 characters
        let msgs = vec![
            (Control::Send { to: pid() }, Some(Term::list(many.clone()))),
            (Control::Send { to: pid() }, Some(Term::list(many))),
            (
                Control::Send { to: pid() },
                Some(Term::tuple(vec![long.clone(), Term::atom("short")])),
            ),
            (Control::Send { to: pid() }, Some(long)),
            // A big message (its scratch buffer is not kept), then a small one.
            (
                Control::Send { to: pid() },
                Some(Term::tuple(vec![
                    Term::atom("big"),
                    Term::binary(vec![7u8; 2 << 20]),
                ])),
            ),
            (Control::Send { to: pid() }, Some(Term::atom("big"))),
        ];
        let mut form = SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE);
        let packets = through_cache(&mut form, &msgs);
        let (n, _) = header_refs(&packets[0]);
        assert_eq!(n, 255);
        assert_eq!(header_refs(&packets[1]).0, 255);
        // LongAtoms: bit 0 of the nibble after the last reference.
        let p = &packets[2];
        let n = usize::from(p[2]);
        assert_eq!(n, 4);
        assert_eq!((p[3 + n / 2] >> ((n % 2) * 4)) & 1, 1);
        let p = &packets[3];
        let n = usize::from(p[2]);
        assert_eq!(header_refs(p), (3, 0));
        assert_eq!((p[3 + n / 2] >> ((n % 2) * 4)) & 1, 0);
    }

    /// Pre-encoded payloads: the control goes through the cache, the payload stays inline,
    /// and the receiver reads both; every form gives what the term form gives.
    #[test]
    fn raw_payloads_in_every_form() {
        let (control, payload) = gen_call();
        let payload = payload.unwrap();
        let bytes = payload.encode();
        let forms: [fn() -> SendForm; 3] = [
            || SendForm::PassThrough,
            || SendForm::for_flags(DistFlags::DIST_HDR_ATOM_CACHE),
            || SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE),
        ];
        for make in forms {
            let mut form = make();
            let mut out = BytesMut::new();
            for _ in 0..3 {
                encode_message_as_raw(&mut out, &mut form, &control, Some(&bytes));
            }
            encode_message_as_raw(&mut out, &mut form, &Control::Send { to: pid() }, None);
            let mut dec = PacketDecoder::new(DecodeOptions::new(), 1 << 20);
            for _ in 0..3 {
                let m = dec.decode(frame_body(&mut out)).unwrap().unwrap();
                assert_eq!(m.control, control);
                assert_eq!(m.payload.as_ref(), Some(&payload));
            }
            let err = dec.decode(frame_body(&mut out));
            // SEND needs a payload: the decoder says so, in every form alike.
            assert!(err.is_err());
            // The plain forms write what the term-based encoder writes.
            if !matches!(form, SendForm::AtomCache(_)) {
                let mut a = BytesMut::new();
                encode_message_as_raw(&mut a, &mut form, &control, Some(&bytes));
                let mut b = BytesMut::new();
                encode_message_as(&mut b, &mut form, &control, Some(&payload));
                assert_eq!(a, b);
            }
        }
    }

    /// `out` with the binaries `shares` left out of it spliced back in.
    fn spliced(out: &[u8], shares: &Shares) -> Vec<u8> {
        let (mut v, mut from) = (Vec::new(), 0);
        for (at, bytes) in &shares.at {
            v.extend_from_slice(&out[from..*at]);
            v.extend_from_slice(bytes);
            from = *at;
        }
        v.extend_from_slice(&out[from..]);
        v
    }

    #[test]
    fn shared_frames_are_the_copied_ones_without_copying_big_binaries() {
        let big = Bytes::from(vec![7u8; Shares::FROM]);
        let bigger = Bytes::from((0..3 * Shares::FROM).map(|i| i as u8).collect::<Vec<_>>());
        let small = Term::binary(vec![1u8; Shares::FROM - 1]);
        let msg = Term::tuple(vec![
            Term::atom("data"),
            Term::Binary(big.clone()),
            small,
            Term::list(vec![Term::Binary(bigger.clone()), Term::Int(1)]),
        ]);
        let control = Control::Send { to: pid() };
        let mut copied = (
            BytesMut::new(),
            SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE),
        );
        let mut shared = (
            BytesMut::new(),
            SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE),
        );
        let mut shares = Shares::default();
        // Twice, so that the second frame goes through the warm atom cache; then a frame
        // without big binaries after them.
        let small_msg = Term::tuple(vec![Term::atom("data"), Term::Int(2)]);
        for m in [&msg, &msg, &small_msg] {
            encode_frame_as(&mut copied.0, &mut copied.1, &control, Some(m));
            encode_frame_shared(
                &mut shared.0,
                &mut shared.1,
                &control,
                Some(m),
                Some(&mut shares),
            );
        }
        // Each big binary of both frames, in place (and the encoder's own pieces when they
        // are as big, as the one holding the smaller binary).
        let ptrs: Vec<_> = shares.at.iter().map(|(_, b)| b.as_ptr()).collect();
        for b in [&big, &bigger] {
            assert_eq!(ptrs.iter().filter(|p| **p == b.as_ptr()).count(), 2);
        }
        assert_eq!(
            shares.bytes,
            shares.at.iter().map(|(_, b)| b.len()).sum::<usize>()
        );
        assert!(shared.0.len() < Shares::FROM, "no big binary in the buffer");
        assert_eq!(spliced(&shared.0, &shares), &copied.0[..]);
        let mut whole = BytesMut::from(&spliced(&shared.0, &shares)[..]);
        let mut dec = PacketDecoder::new(DecodeOptions::new(), 1 << 24);
        for m in [&msg, &msg, &small_msg] {
            let got = dec.decode(frame_body(&mut whole)).unwrap().unwrap();
            assert_eq!(got.payload.as_ref(), Some(m));
        }

        // Encoded payloads: raw (`Bytes`) and prepared (a proxy's `Vec`), big and small.
        let encoded = msg.encode();
        let small_encoded = small_msg.encode();
        let mut control_body = BytesMut::new();
        control.to_term().encode_body_into(&mut control_body);
        for flags in [DistFlags(0), DistFlags::DIST_HDR_ATOM_CACHE] {
            let (mut copied, mut shared, mut shares) =
                (BytesMut::new(), BytesMut::new(), Shares::default());
            let mut form_a = SendForm::with_atom_cache(flags);
            let mut form_b = SendForm::with_atom_cache(flags);
            for p in [&encoded, &small_encoded] {
                encode_message_as_raw(&mut copied, &mut form_a, &control, Some(p));
                encode_raw_shared(&mut shared, &mut form_b, &control, p, &mut shares);
                encode_prepared(&mut copied, flags, &control_body, p);
                encode_prepared_shared(&mut shared, flags, &control_body, p.to_vec(), &mut shares);
            }
            assert_eq!(shares.at.len(), 2, "the big payload, raw and prepared");
            assert_eq!(
                shares.at[0].1.as_ptr(),
                encoded[encoded.len() - shares.at[0].1.len()..].as_ptr()
            );
            assert_eq!(spliced(&shared, &shares), &copied[..]);
        }
    }

    #[test]
    fn send_forms_for_flags() {
        assert!(matches!(
            SendForm::for_flags(DistFlags(0)),
            SendForm::PassThrough
        ));
        assert!(matches!(
            SendForm::with_atom_cache(DistFlags(0)),
            SendForm::PassThrough
        ));
        let control = Control::Send { to: pid() };
        let msg = Term::atom("x");
        for mut form in [
            SendForm::PassThrough,
            SendForm::for_flags(DistFlags::DIST_HDR_ATOM_CACHE),
        ] {
            let mut a = BytesMut::new();
            encode_message_as(&mut a, &mut form, &control, Some(&msg));
            let flags = match form {
                SendForm::Header => DistFlags::DIST_HDR_ATOM_CACHE,
                _ => DistFlags(0),
            };
            let mut b = BytesMut::new();
            encode_message(&mut b, flags, &control, Some(&msg));
            assert_eq!(a, b);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let mut dec = PacketDecoder::new(DecodeOptions::new(), 1 << 20);
        for junk in [
            &[1u8, 2, 3][..],
            &[131, 68, 5, 0],
            &[112, 131, 97],
            &[131, 70, 0],
        ] {
            assert!(
                dec.decode(Bytes::copy_from_slice(junk)).is_err(),
                "{junk:?}"
            );
        }
    }
}
