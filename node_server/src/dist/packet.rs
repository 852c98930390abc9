//! Packets after the handshake: 4-byte length frames (a zero length is a tick) holding one
//! distribution message in one of three forms:
//!
//! - pass-through: `112, 131 Control, 131 Payload?`;
//! - distribution header: `131, 68, AtomCacheRefs..., Control, Payload?` (terms without 131),
//!   whose atom cache (8 segments of 256 atoms) lives as long as the connection;
//! - fragments: `131, 69, SeqId, FragId, header...` then `131, 70, SeqId, FragId, data`, with
//!   FragId counting down to 1, reassembled here before decoding.
//!
//! [`PacketDecoder`] turns frames into [`DistMessage`]s; [`encode_message`] writes them.

use std::collections::HashMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::control::{Control, ControlError};
use super::flags::DistFlags;
use crate::etf::{tag, Atom, DecodeError, DecodeOptions, Term};

const PASS_THROUGH: u8 = 112;
const ATOM_CACHE_SIZE: usize = 8 * 256;

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

/// A decoded distribution message.
#[derive(Debug, Clone, PartialEq)]
pub struct DistMessage {
    /// What to do.
    pub control: Control,
    /// The message or reason, for control messages that carry one.
    pub payload: Option<Term>,
}

struct Partial {
    atoms: Vec<Atom>,
    data: BytesMut,
    next_frag: u64,
}

/// Decodes packets of one connection, keeping its atom cache and unfinished fragments.
pub struct PacketDecoder {
    cache: Vec<Option<Atom>>,
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
            partial: HashMap::new(),
            options,
            max_message,
        }
    }

    /// Decodes one packet; `Ok(None)` when it is a fragment of an unfinished message.
    pub fn decode(&mut self, packet: Bytes) -> Result<Option<DistMessage>, PacketError> {
        match (packet.first(), packet.get(1)) {
            (Some(&PASS_THROUGH), _) => {
                let (control, end) = self.options.decode_versioned_at(&packet, 1, &[])?;
                self.finish(&packet, control, end, &[], true).map(Some)
            }
            (Some(&tag::VERSION), Some(&tag::DIST_HEADER)) => {
                let mut pos = 2;
                let atoms = self.read_header(&packet, &mut pos)?;
                let (control, end) = self.options.decode_body_at(&packet, pos, &atoms)?;
                self.finish(&packet, control, end, &atoms, false).map(Some)
            }
            (Some(&tag::VERSION), Some(&tag::DIST_FRAG_HEADER)) => {
                let mut pos = 2;
                let seq = read_u64(&packet, &mut pos)?;
                let frag = read_u64(&packet, &mut pos)?;
                let atoms = self.read_header(&packet, &mut pos)?;
                let data = &packet[pos..];
                if frag <= 1 {
                    return self
                        .decode_body(Bytes::copy_from_slice(data), &atoms)
                        .map(Some);
                }
                if self.partial.len() >= 64 {
                    return Err(PacketError::Malformed(
                        "too many unfinished fragmented messages",
                    ));
                }
                self.check_size(data.len())?;
                self.partial.insert(
                    seq,
                    Partial {
                        atoms,
                        data: BytesMut::from(data),
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
        let (control, end) = self.options.decode_body_at(&body, 0, atoms)?;
        self.finish(&body, control, end, atoms, false)
    }

    fn finish(
        &self,
        buf: &Bytes,
        control: Term,
        end: usize,
        atoms: &[Atom],
        versioned: bool,
    ) -> Result<DistMessage, PacketError> {
        let control = Control::from_term(&control)?;
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
    fn read_header(&mut self, buf: &[u8], pos: &mut usize) -> Result<Vec<Atom>, PacketError> {
        let short = PacketError::Malformed("truncated distribution header");
        let n = usize::from(*buf.get(*pos).ok_or(short.clone())?);
        *pos += 1;
        if n == 0 {
            return Ok(Vec::new());
        }
        let flag_bytes = n / 2 + 1;
        let flags = buf
            .get(*pos..*pos + flag_bytes)
            .ok_or(short.clone())?
            .to_vec();
        *pos += flag_bytes;
        let nibble = |i: usize| (flags[i / 2] >> ((i % 2) * 4)) & 0x0f;
        let long_atoms = nibble(n) & 0x01 != 0;
        let mut atoms = Vec::with_capacity(n);
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
        Ok(atoms)
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
    let start = out.len();
    out.put_u32(0);
    if flags.contains(DistFlags::DIST_HDR_ATOM_CACHE) {
        out.put_slice(&[tag::VERSION, tag::DIST_HEADER, 0]);
        control.to_term().encode_body_into(out);
        if let Some(p) = payload {
            p.encode_body_into(out);
        }
    } else {
        out.put_u8(PASS_THROUGH);
        control.to_term().encode_into(out);
        if let Some(p) = payload {
            p.encode_into(out);
        }
    }
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a tick (an empty frame) to `out`.
pub fn encode_tick(out: &mut BytesMut) {
    out.put_u32(0);
}

#[cfg(test)]
mod tests {
    use super::*;
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
        match next_frame(out, 1 << 20).unwrap().unwrap() {
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
        assert_eq!(next_frame(&mut partial, 100).unwrap(), None);
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
        assert_eq!(m.payload, Some(msg));
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
