//! The hasher of the node's own maps (processes, monitors, calls, sessions, proxies).
//!
//! std's default SipHash resists collision attacks at about 20 ns per short key; these maps
//! are looked up several times for every message and call, and their keys come either from
//! this node (pids, actor ids, call ids) or from peers that passed the cookie handshake,
//! which Erlang trusts with far more than a slow map (any `rpc`). So they use a plain
//! multiply-and-add hash over 8-byte words, as compilers use for their symbol tables.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A map with [`FastHasher`].
pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Multiply-and-add hashing of 8-byte words; see the module docs for where it is used.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

/// An odd constant with well-mixed bits (from the fractional part of a golden-ratio power).
const SEED: u64 = 0x9e37_79b9_7f4a_7c15;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0 ^ word).wrapping_mul(SEED).rotate_left(23);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            let mut b = [0; 8];
            b.copy_from_slice(w);
            self.add(u64::from_le_bytes(b));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut b = [0; 8];
            b[..rest.len()].copy_from_slice(rest);
            // The length goes in too, so that trailing zero bytes change the hash.
            self.add(u64::from_le_bytes(b) ^ ((rest.len() as u64) << 61));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown takes its control byte from the top bits: fold the low ones up.
        let h = self.0;
        h ^ (h >> 29) ^ (h << 32)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::*;

    fn hash<T: std::hash::Hash + ?Sized>(t: &T) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(t)
    }

    #[test]
    fn distinct_keys_spread_over_buckets() {
        // Sequential ids (as pids and call ids are) fill the low and the high bits alike.
        let n = 1 << 16;
        let low: HashSet<u64> = (0..n).map(|i: u64| hash(&i) & 0xffff).collect();
        let high: HashSet<u64> = (0..n).map(|i: u64| hash(&i) >> 57).collect();
        assert!(low.len() > n as usize * 6 / 10, "{} low buckets", low.len());
        assert_eq!(high.len(), 128);
        // Strings that differ only in trailing zero bytes or length differ.
        assert_ne!(hash(&"a"), hash(&"a\0"));
        assert_ne!(hash(&[0u8; 3][..]), hash(&[0u8; 4][..]));
    }

    #[test]
    fn maps_work() {
        let mut m: FastMap<String, usize> = FastMap::default();
        for i in 0..1000 {
            m.insert(format!("name{i}"), i);
        }
        assert!((0..1000).all(|i| m[&format!("name{i}")] == i));
    }
}
