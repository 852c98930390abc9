//! Buffers for big incoming frames, reused once nothing refers to them any more.
//!
//! A frame is decoded without copying: the binaries in its terms are slices of the frame's
//! buffer, so the buffer lives as long as the receiving actor keeps any of them. A connection
//! reading big frames into fresh memory pays for it in page faults (the allocator hands back
//! freshly mapped pages for every megabyte), which cost more than the copy out of the socket.
//! A session's reader therefore reads each frame of at least [`FramePool::FROM`] bytes into a
//! buffer of its own and keeps a handle to it; when the handle is the last one (the actor has
//! dropped the message), the buffer is filled again with a later frame.

use bytes::{Bytes, BytesMut};

/// Recently read big frames, whose buffers are reused for later frames once released.
#[derive(Debug, Default)]
pub(crate) struct FramePool {
    kept: Vec<Bytes>,
}

impl FramePool {
    /// Frames of at least this many bytes are read into buffers of their own.
    pub(crate) const FROM: usize = 64 << 10;

    /// How many buffers a connection keeps: one being read, the ones in the actors' hands,
    /// and one to spare.
    const KEEP: usize = 4;

    /// An empty buffer with room for `len` bytes: a released one when there is one big
    /// enough, else a new one.
    pub(crate) fn take(&mut self, len: usize) -> BytesMut {
        let mut i = 0;
        while i < self.kept.len() {
            if !self.kept[i].is_unique() {
                i += 1;
                continue;
            }
            // Released: reuse it when big enough, else let it go.
            if let Ok(mut buf) = self.kept.swap_remove(i).try_into_mut() {
                if buf.capacity() >= len {
                    buf.clear();
                    return buf;
                }
            }
        }
        BytesMut::with_capacity(len)
    }

    /// Keeps a handle to a frame read into a buffer from [`take`](Self::take), to reuse the
    /// buffer once the frame is released. The oldest handle goes when too many are kept.
    pub(crate) fn keep(&mut self, frame: &Bytes) {
        if self.kept.len() == Self::KEEP {
            self.kept.remove(0);
        }
        self.kept.push(frame.clone());
    }

    /// Lets go of every kept buffer (on a quiet connection), so idle sessions hold no big
    /// buffers.
    pub(crate) fn release(&mut self) {
        self.kept.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pool: &mut FramePool, len: usize) -> Bytes {
        let mut buf = pool.take(len);
        buf.resize(len, 7);
        let frame = buf.freeze();
        pool.keep(&frame);
        frame
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
    fn a_released_buffer_too_small_is_let_go() {
        let mut pool = FramePool::default();
        drop(frame(&mut pool, 70_000));
        let bigger = pool.take(200_000);
        assert!(bigger.capacity() >= 200_000);
        assert!(pool.kept.is_empty());
    }

    #[test]
    fn at_most_keep_buffers_are_kept_and_release_lets_all_go() {
        let mut pool = FramePool::default();
        let held: Vec<Bytes> = (0..10).map(|_| frame(&mut pool, 1000)).collect();
        assert_eq!(pool.kept.len(), FramePool::KEEP);
        // The newest are the ones kept.
        assert_eq!(pool.kept[FramePool::KEEP - 1].as_ptr(), held[9].as_ptr());
        pool.release();
        assert!(pool.kept.is_empty());
        // The frames themselves are untouched.
        assert!(held.iter().all(|f| f.iter().all(|&b| b == 7)));
    }
}
