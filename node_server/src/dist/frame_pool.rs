//! Buffers for big incoming frames, reused once nothing refers to them any more.
//!
//! A frame is decoded without copying: the binaries in its terms are slices of the frame's
//! buffer, so the buffer lives as long as the receiving actor keeps any of them. A connection
//! reading big frames into fresh memory pays for it in page faults (the allocator hands back
//! freshly mapped pages for every megabyte), which cost more than the copy out of the socket.
//! A session's reader therefore reads each frame of at least [`FramePool::FROM`] bytes into a
//! buffer of its own and keeps a handle to it; when the handle is the last one (the actor has
//! dropped the message), the buffer is filled again with a later frame.
//!
//! Bounds: at most 4 buffers and 32 MiB per connection are kept (bigger frames always get
//! fresh memory), a frame only goes into a released buffer at most twice its size, and a
//! connection that reads no big frame for a quarter of the tick time keeps none.

use bytes::{Bytes, BytesMut};

/// Recently read big frames, whose buffers are reused for later frames once released.
#[derive(Debug, Default)]
pub(crate) struct FramePool {
    /// Handles to the buffers of recent frames with their capacities, oldest first.
    kept: Vec<(Bytes, usize)>,
    /// Whether a buffer was taken since the last [`idle_check`](Self::idle_check).
    used: bool,
}

impl FramePool {
    /// Frames of at least this many bytes are read into buffers of their own.
    pub(crate) const FROM: usize = 64 << 10;

    /// How many buffers a connection keeps: one being read, the ones in the actors' hands,
    /// and one to spare.
    const KEEP: usize = 4;

    /// How many bytes the kept buffers may hold in all: bigger frames are read into fresh
    /// memory each time.
    const KEEP_BYTES: usize = 32 << 20;

    /// An empty buffer with room for `len` bytes: the smallest released one that fits and is
    /// at most twice that (a small frame must not pin a much bigger buffer: the binaries
    /// decoded from it keep all of it alive), else a new one. Released buffers too small
    /// for it are let go.
    pub(crate) fn take(&mut self, len: usize) -> BytesMut {
        self.used = true;
        let mut best: Option<usize> = None;
        let mut i = 0;
        while i < self.kept.len() {
            let (frame, capacity) = &self.kept[i];
            if !frame.is_unique() {
                i += 1;
            } else if *capacity < len {
                self.kept.remove(i);
            } else {
                if *capacity <= len.saturating_mul(2)
                    && best.is_none_or(|b| *capacity < self.kept[b].1)
                {
                    best = Some(i);
                }
                i += 1;
            }
        }
        if let Some(i) = best {
            if let Ok(mut buf) = self.kept.remove(i).0.try_into_mut() {
                buf.clear();
                return buf;
            }
        }
        BytesMut::with_capacity(len)
    }

    /// Freezes a buffer from [`take`](Self::take), filled with a frame, and keeps a handle to
    /// it to reuse it once the frame is released. The oldest handles go when too many are
    /// kept.
    pub(crate) fn freeze(&mut self, buf: BytesMut) -> Bytes {
        let capacity = buf.capacity();
        let frame = buf.freeze();
        if capacity <= Self::KEEP_BYTES {
            while self.kept.len() >= Self::KEEP
                || self.kept.iter().map(|(_, c)| c).sum::<usize>() + capacity > Self::KEEP_BYTES
            {
                self.kept.remove(0);
            }
            self.kept.push((frame.clone(), capacity));
        }
        frame
    }

    /// Called every quarter tick time: lets go of every kept buffer when none was taken
    /// since the last call, so a connection that stopped sending big frames holds none.
    pub(crate) fn idle_check(&mut self) {
        if !std::mem::take(&mut self.used) {
            self.kept.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pool: &mut FramePool, len: usize) -> Bytes {
        let mut buf = pool.take(len);
        buf.resize(len, 7);
        pool.freeze(buf)
    }

    #[test]
    fn a_released_buffer_is_reused_and_a_held_one_is_not() {
        let mut pool = FramePool::default();
        let first = frame(&mut pool, 100_000);
        let at = first.as_ptr();
        // A slice of it still held, as a decoded binary would be: not reused.
        let binary = first.slice(10..20);
        drop(first);
        let second = frame(&mut pool, 100_000);
        assert_ne!(second.as_ptr(), at);
        drop(binary);
        // Now nothing refers to the first buffer: the next frame goes into it.
        let third = pool.take(90_000);
        assert_eq!(third.as_ptr(), at);
        assert!(third.is_empty() && third.capacity() >= 100_000);
        drop(second);
    }

    #[test]
    fn the_smallest_fit_is_taken_and_a_much_bigger_one_is_not() {
        let mut pool = FramePool::default();
        let (big, mid) = (frame(&mut pool, 1 << 20), frame(&mut pool, 200_000));
        let (big_at, mid_at) = (big.as_ptr(), mid.as_ptr());
        drop((big, mid));
        // 150 KB fits both; the smaller one is taken.
        assert_eq!(pool.take(150_000).as_ptr(), mid_at);
        // 100 KB would fit the 1 MiB buffer, but it is more than twice as big: fresh memory,
        // and the big buffer stays for a frame of its size.
        assert_ne!(pool.take(100_000).as_ptr(), big_at);
        assert_eq!(pool.take(900_000).as_ptr(), big_at);
    }

    #[test]
    fn a_released_buffer_too_small_is_let_go() {
        let mut pool = FramePool::default();
        drop(frame(&mut pool, 70_000));
        let bigger = pool.take(200_000);
        assert!(bigger.capacity() >= 200_000);
        assert!(pool.kept.is_empty());
    }

    #[test]
    fn at_most_keep_buffers_and_keep_bytes_are_kept() {
        let mut pool = FramePool::default();
        let held: Vec<Bytes> = (0..10).map(|_| frame(&mut pool, 1000)).collect();
        assert_eq!(pool.kept.len(), FramePool::KEEP);
        // The newest are the ones kept.
        assert_eq!(pool.kept[FramePool::KEEP - 1].0.as_ptr(), held[9].as_ptr());
        // Too big to keep at all, and big ones evict the oldest to stay under the limit.
        let huge = frame(&mut pool, FramePool::KEEP_BYTES + 1);
        assert!(pool.kept.iter().all(|(f, _)| f.as_ptr() != huge.as_ptr()));
        let _a = frame(&mut pool, 20 << 20);
        let _b = frame(&mut pool, 20 << 20);
        assert_eq!(pool.kept.len(), 1);
        // The frames themselves are untouched.
        assert!(held.iter().all(|f| f.iter().all(|&b| b == 7)));
    }

    #[test]
    fn an_idle_quarter_lets_all_buffers_go() {
        let mut pool = FramePool::default();
        let _held = frame(&mut pool, 100_000);
        // A quarter in which a frame was read keeps them.
        pool.idle_check();
        assert_eq!(pool.kept.len(), 1);
        // The next one, without a big frame, does not.
        pool.idle_check();
        assert!(pool.kept.is_empty());
    }
}
