//! Random numbers for the node's own choices (handshake challenges, back-off jitter, a group
//! member picked at random): from the operating system, or, on a thread where the simulator
//! (`node_server/tests/sim`) seeded it, from a seeded generator, so that a simulated run replays
//! exactly.

use std::cell::RefCell;

/// SplitMix64: a small, fast generator whose whole state is one `u64` (Steele, Lea and
/// Flood, 2014). Not for secrets; for reproducible choices.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator that starts from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            // Multiply-shift: unbiased enough for scheduling, and no division.
            ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
        }
    }

    /// True with probability `percent` in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

thread_local! {
    static SEEDED: RefCell<Option<SplitMix64>> = const { RefCell::new(None) };
}

/// Makes this thread's node randomness come from a generator seeded with `seed` (`None`: from
/// the operating system again). The simulator calls it on the thread that runs its nodes.
pub fn seed_thread(seed: Option<u64>) {
    SEEDED.with(|s| *s.borrow_mut() = seed.map(SplitMix64::new));
}

/// Fills `buf` with random bytes: seeded on a seeded thread, else from the operating system
/// (false when it has none).
pub(crate) fn fill(buf: &mut [u8]) -> bool {
    let seeded = SEEDED.with(|s| {
        let mut s = s.borrow_mut();
        let rng = s.as_mut()?;
        for chunk in buf.chunks_mut(8) {
            let bytes = rng.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        Some(())
    });
    seeded.is_some() || getrandom::fill(buf).is_ok()
}

/// A random `u64`, or `None` without a source.
pub(crate) fn u64() -> Option<u64> {
    let mut b = [0u8; 8];
    fill(&mut b).then(|| u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_threads_repeat_and_unseeded_differ() {
        seed_thread(Some(7));
        let a: Vec<_> = (0..4).map(|_| u64().unwrap()).collect();
        seed_thread(Some(7));
        let b: Vec<_> = (0..4).map(|_| u64().unwrap()).collect();
        seed_thread(None);
        let c: Vec<_> = (0..4).map(|_| u64().unwrap()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = SplitMix64::new(1);
        assert!((0..1000).all(|_| r.below(10) < 10));
        assert_eq!(r.below(0), 0);
    }
}
