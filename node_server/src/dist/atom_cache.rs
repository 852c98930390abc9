//! The sending side of a connection's atom cache (the `131, 68` distribution header with
//! atom cache references).
//!
//! Each direction of a connection has a cache of 2048 atoms (8 segments of 256) that lives as
//! long as the connection. The sender decides what is in the receiver's cache: the first time
//! an atom goes out, the message's header carries it as a *new entry* for a slot, and the
//! receiver stores it there; later messages name the slot only (one byte in the header, and
//! `ATOM_CACHE_REF, Index` in the terms instead of the atom's text). An atom whose slot holds
//! another atom replaces it, as a new entry again.
//!
//! [`AtomCache`] is that sender's table. It assigns each atom a slot by a hash of its text and
//! writes, per message, the header that `erl_dist_protocol` describes:
//!
//! ```text
//! NumberOfAtomCacheRefs:8, Flags:(N/2+1 bytes), AtomCacheRefs...
//! Flags: one nibble per reference (NewCacheEntryFlag:1, SegmentIndex:3), first reference in
//!        the low nibble of the first byte, then one last nibble whose bit 0 is LongAtoms.
//! AtomCacheRef: InternalSegmentIndex:8 [Length:8 or 16, AtomText] (the text when new)
//! ```
//!
//! A message holds at most 255 references; atoms beyond that, atoms longer than 255
//! characters' worth of UTF-8, and a second atom of the same message whose slot the message
//! already uses are written inline instead.
//!
//! Messages are encoded with [`crate::dist::packet::encode_message_as`] and
//! [`crate::dist::packet::SendForm::AtomCache`].

use bytes::{BufMut, BytesMut};

use crate::etf::{Atom, AtomWriter};

/// Slots in a connection's atom cache: 8 segments of 256.
pub const SLOTS: usize = 8 * 256;

/// The most atom cache references one message's header can hold.
pub const MAX_REFS: usize = 255;

/// The longest atom text (in bytes) that goes through the cache: 255 characters of up to 4
/// bytes each. Longer atoms are not valid Erlang atoms anyway; they are written inline.
const MAX_CACHED_LEN: usize = Atom::MAX_CHARS * 4;

/// One reference in the header of the message being encoded.
#[derive(Debug, Clone, Copy)]
struct HeaderRef {
    slot: u16,
    new: bool,
}

/// One slot of the cache, with this message's use of it (kept together: one cache line).
#[derive(Debug, Clone, Default)]
struct Slot {
    /// What the receiver holds here, as far as the messages encoded so far tell it.
    atom: Option<Atom>,
    /// The message (by [`AtomCache::generation`]) that last put the slot in its header...
    used_in: u32,
    /// ...and the slot's reference index in that header.
    index_in_msg: u8,
}

/// The sender's atom cache of one connection; see the module docs.
///
/// Use one per connection and direction, for every message sent on it, in the order the
/// messages go on the wire: the receiver's cache follows the headers it reads.
pub struct AtomCache {
    slots: Vec<Slot>,
    /// Counts messages, to tell this message's marks in the slots from older ones.
    generation: u32,
    /// This message's references, in header order.
    refs: Vec<HeaderRef>,
    /// Whether a new entry of this message is longer than 255 bytes.
    long_atoms: bool,
    /// Scratch space for a message's terms, which follow the header but are written first.
    pub(crate) body: BytesMut,
}

impl std::fmt::Debug for AtomCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomCache")
            .field("cached", &self.len())
            .finish_non_exhaustive()
    }
}

impl Default for AtomCache {
    fn default() -> Self {
        AtomCache::new()
    }
}

impl AtomCache {
    /// An empty cache, as at the start of a connection.
    pub fn new() -> AtomCache {
        AtomCache {
            slots: vec![Slot::default(); SLOTS],
            generation: 0,
            refs: Vec::with_capacity(16),
            long_atoms: false,
            body: BytesMut::new(),
        }
    }

    /// How many slots hold an atom.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.atom.is_some()).count()
    }

    /// Whether no slot holds an atom yet.
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(|s| s.atom.is_none())
    }

    /// Starts a message: forgets the previous message's header references.
    pub(crate) fn begin_message(&mut self) {
        self.refs.clear();
        self.long_atoms = false;
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            // Wrapped: clear the marks so none of them looks current.
            self.slots.iter_mut().for_each(|s| s.used_in = 0);
            self.generation = 1;
        }
    }

    /// The header reference index for `atom` in the current message, adding it to the header
    /// (and to the cache) when needed; `None` when the atom must be written inline.
    fn reference(&mut self, atom: &Atom) -> Option<u8> {
        let text = atom.as_str();
        if text.len() > MAX_CACHED_LEN {
            return None;
        }
        let slot = slot_of(text.as_bytes());
        let generation = self.generation;
        let entry = &mut self.slots[slot];
        let cached = entry.atom.as_ref().is_some_and(|a| a == atom);
        if entry.used_in == generation {
            // The slot is in this message's header already: for this atom, or for another
            // that hashes alike (which keeps the slot for the rest of the message).
            return cached.then_some(entry.index_in_msg);
        }
        if self.refs.len() >= MAX_REFS {
            return None;
        }
        let index = self.refs.len() as u8;
        if !cached {
            entry.atom = Some(atom.clone());
            self.long_atoms |= text.len() > 255;
        }
        entry.used_in = generation;
        entry.index_in_msg = index;
        self.refs.push(HeaderRef {
            slot: slot as u16,
            new: !cached,
        });
        Some(index)
    }

    /// Writes the current message's header (after `131, 68`): the reference count, the flags
    /// and the references.
    pub(crate) fn write_header(&self, out: &mut BytesMut) {
        let n = self.refs.len();
        out.put_u8(n as u8);
        if n == 0 {
            return;
        }
        let flags_at = out.len();
        out.put_bytes(0, n / 2 + 1);
        for (i, r) in self.refs.iter().enumerate() {
            let nibble = (r.slot >> 8) as u8 | if r.new { 0x08 } else { 0 };
            out[flags_at + i / 2] |= nibble << ((i % 2) * 4);
        }
        if self.long_atoms {
            out[flags_at + n / 2] |= 0x01 << ((n % 2) * 4);
        }
        for r in &self.refs {
            out.put_u8((r.slot & 0xff) as u8);
            if !r.new {
                continue;
            }
            let text = self.slots[usize::from(r.slot)]
                .atom
                .as_ref()
                .map(|a| a.as_str().as_bytes())
                .unwrap_or_default();
            if self.long_atoms {
                out.put_u16(text.len() as u16);
            } else {
                out.put_u8(text.len() as u8);
            }
            out.put_slice(text);
        }
    }
}

impl AtomWriter for AtomCache {
    #[inline]
    fn cache_ref(&mut self, atom: &Atom) -> Option<u8> {
        self.reference(atom)
    }
}

/// The slot for an atom's text: the text folded into 64 bits (eight bytes at a time, short
/// tails as overlapping reads), one multiply per 16 bytes and a final mix, the top 11 bits.
#[inline]
pub(crate) fn slot_of(text: &[u8]) -> usize {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    fn word(b: &[u8]) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[..8]);
        u64::from_le_bytes(w)
    }
    fn half(b: &[u8]) -> u64 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&b[..4]);
        u64::from(u32::from_le_bytes(w))
    }
    let n = text.len();
    let mut h = (n as u64).wrapping_mul(K);
    let mut rest = text;
    while rest.len() > 16 {
        h = (h ^ word(rest) ^ word(&rest[8..]).rotate_left(32)).wrapping_mul(K);
        rest = &rest[16..];
    }
    let m = rest.len();
    let (a, b) = if m >= 8 {
        (word(rest), word(&rest[m - 8..]))
    } else if m >= 4 {
        (half(rest), half(&rest[m - 4..]))
    } else if m > 0 {
        let v = u64::from(rest[0]) | u64::from(rest[m / 2]) << 8 | u64::from(rest[m - 1]) << 16;
        (v, 0)
    } else {
        (0, 0)
    };
    h = (h ^ a ^ b.rotate_left(32)).wrapping_mul(K);
    h = (h ^ (h >> 32)).wrapping_mul(K);
    (h >> 53) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etf::{encode_term, Term};

    #[test]
    fn slots_are_in_range_and_spread() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..4000 {
            let s = slot_of(format!("atom_{i}").as_bytes());
            assert!(s < SLOTS);
            seen.insert(s);
        }
        // 4000 keys into 2048 slots: a fair hash fills about 86% of them.
        assert!(seen.len() > 1600, "{}", seen.len());
    }

    #[test]
    fn header_of_one_new_and_one_old_entry() {
        let mut cache = AtomCache::new();
        let ok = Atom::new("ok");
        let mut body = BytesMut::new();
        cache.begin_message();
        encode_term(&Term::Atom(ok.clone()), &mut body, &mut cache, None);
        encode_term(&Term::Atom(ok.clone()), &mut body, &mut cache, None);
        assert_eq!(&body[..], &[82, 0, 82, 0]);
        let slot = slot_of(b"ok");
        let mut header = BytesMut::new();
        cache.write_header(&mut header);
        let seg = (slot >> 8) as u8;
        assert_eq!(
            &header[..],
            &[1, 0x08 | seg, (slot & 0xff) as u8, 2, b'o', b'k']
        );
        cache.begin_message();
        let mut body = BytesMut::new();
        encode_term(&Term::Atom(ok.clone()), &mut body, &mut cache, None);
        let mut header = BytesMut::new();
        cache.write_header(&mut header);
        assert_eq!(&header[..], &[1, seg, (slot & 0xff) as u8]);
        assert_eq!(cache.len(), 1);
    }
}
