//! Buffers that come back: the bytes read from a socket or a file go on as [`Bytes`] whose
//! storage returns to a [`BufferPool`] once the last of them is dropped, so a transfer reuses
//! a few warm buffers instead of asking the allocator for 64 KiB (and the kernel for fresh,
//! zeroed pages once glibc has trimmed its heap) on every read.
//!
//! A pool keeps at most [`KEEP`] idle buffers; more than that are freed, so a burst of reads
//! never stays allocated. A buffer keeps its initialised length when it comes back, so a file
//! read into it zeroes nothing the next time (see [`BufferPool::take_filled`]).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

/// Most idle buffers a pool keeps.
pub const KEEP: usize = 16;

/// Idle buffers of one capacity, shared by the tasks and threads of one driver.
#[derive(Debug)]
pub struct BufferPool {
    capacity: usize,
    idle: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// A pool of buffers of `capacity` bytes.
    pub fn new(capacity: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            capacity,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The capacity of this pool's buffers.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// An empty buffer with room for [`capacity`](Self::capacity) bytes.
    pub fn take(&self) -> Vec<u8> {
        let mut buf = self.take_any();
        buf.clear();
        buf
    }

    /// A buffer of `len` initialised bytes (their values are whatever the buffer last held):
    /// only the part never used before is zeroed.
    pub fn take_filled(&self, len: usize) -> Vec<u8> {
        let mut buf = self.take_any();
        buf.resize(len, 0);
        buf
    }

    fn take_any(&self) -> Vec<u8> {
        let reused = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        reused.unwrap_or_else(|| Vec::with_capacity(self.capacity))
    }

    /// Takes `buf` back for a later [`take`](Self::take): kept if it is of this pool's size
    /// (not grown past twice it) and the pool has room, else freed.
    pub fn give(&self, buf: Vec<u8>) {
        if buf.capacity() < self.capacity || buf.capacity() > 2 * self.capacity {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < KEEP {
            idle.push(buf);
        }
    }

    /// `buf` as [`Bytes`] without a copy; its storage comes back here when the last slice of
    /// it is dropped.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            pool: self.clone(),
        })
    }

    /// How many idle buffers the pool holds now.
    pub fn idle(&self) -> usize {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The owner of a frozen buffer: gives it back to its pool on drop.
struct Pooled {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

/// A reader's buffer: taken from a pool when a read needs it, given back while the
/// connection is idle, so an idle connection holds no read buffer at all.
#[derive(Debug)]
pub struct ReadBuffer {
    pool: Arc<BufferPool>,
    buf: Vec<u8>,
}

impl ReadBuffer {
    /// A reader's buffer from `pool`, holding nothing yet.
    pub fn new(pool: Arc<BufferPool>) -> ReadBuffer {
        ReadBuffer {
            pool,
            buf: Vec::new(),
        }
    }

    /// The bytes to read into: read bytes are appended (into the spare capacity, of at least
    /// the pool's capacity once nothing is held).
    pub fn vec(&mut self) -> &mut Vec<u8> {
        if self.buf.capacity() == 0 {
            self.buf = self.pool.take();
        }
        if self.buf.len() == self.buf.capacity() {
            // Never a read into no room: it would look like the end of the stream.
            self.buf.reserve(self.pool.capacity().max(1));
        }
        &mut self.buf
    }

    /// Gives the buffer back if it holds no bytes (a read found nothing to read).
    pub fn release_if_empty(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 0 {
            self.pool.give(std::mem::take(&mut self.buf));
        }
    }

    /// The bytes read so far, handed on; the buffer is empty after. A large read hands on the
    /// buffer itself (no copy); a small one is copied into an allocation of its own, so that a
    /// peer that trickles bytes cannot make the core hold a whole buffer per byte.
    pub fn split(&mut self) -> Bytes {
        if self.buf.len() >= self.pool.capacity() / 2 {
            self.pool.freeze(std::mem::take(&mut self.buf))
        } else {
            let data = Bytes::copy_from_slice(&self.buf);
            self.buf.clear();
            data
        }
    }
}

/// Most reads a connection's reader may have reported that the driver has not yet handed to
/// the core (in the runtime's socket queue, or held back while the connection is paused).
/// Without it, one connection's reads could fill the whole socket queue before the core's
/// pause reached its reader, and each paused connection then held a queue's worth (64 reads
/// of up to 64 KiB): 54 MB held in 30 paused connections in the memory benchmark.
pub const READS_IN_FLIGHT: usize = 4;

/// A reader's allowance of reports not yet handed to the core: [`take`](Self::take) waits
/// while [`READS_IN_FLIGHT`] of its [`ReadCredit`]s are alive.
#[derive(Debug)]
pub struct ReadCredits {
    taken: async_channel::Sender<()>,
    returned: async_channel::Receiver<()>,
}

impl Default for ReadCredits {
    fn default() -> Self {
        let (taken, returned) = async_channel::bounded(READS_IN_FLIGHT);
        ReadCredits { taken, returned }
    }
}

impl ReadCredits {
    /// A place for one more report, once fewer than [`READS_IN_FLIGHT`] are out.
    pub async fn take(&self) -> ReadCredit {
        // Never closed: `self` holds a receiver.
        let _ = self.taken.send(()).await;
        ReadCredit(Some(self.returned.clone()))
    }
}

/// One report's place among its reader's [`ReadCredits`]; dropping it (once the read is handed
/// to the core, or discarded) lets the reader report another.
#[derive(Debug, Default)]
pub struct ReadCredit(Option<async_channel::Receiver<()>>);

impl Drop for ReadCredit {
    fn drop(&mut self) {
        if let Some(returned) = &self.0 {
            let _ = returned.try_recv();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frozen_buffers_come_back_once_every_slice_is_dropped() {
        let pool = BufferPool::new(64);
        let mut buf = pool.take();
        buf.extend_from_slice(&[7; 40]);
        let ptr = buf.as_ptr();
        let bytes = pool.freeze(buf);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.idle(), 0, "a slice still holds it");
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert_eq!(pool.idle(), 1);
        let again = pool.take_filled(50);
        assert_eq!(again.as_ptr(), ptr, "the same storage, reused");
        assert_eq!(
            &again[..40],
            &[7; 40],
            "nothing zeroed that was used before"
        );
        assert_eq!(&again[40..], &[0; 10]);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_of_its_own_buffers() {
        let pool = BufferPool::new(8);
        pool.give(Vec::with_capacity(7));
        pool.give(Vec::with_capacity(17));
        assert_eq!(pool.idle(), 0, "not of this pool's size");
        let taken: Vec<Vec<u8>> = (0..KEEP + 5).map(|_| pool.take()).collect();
        for buf in taken {
            pool.give(buf);
        }
        assert_eq!(pool.idle(), KEEP);
    }

    #[test]
    fn a_reader_waits_while_its_reads_in_flight_are_not_handed_on() {
        let credits = ReadCredits::default();
        let mut out: Vec<ReadCredit> = (0..READS_IN_FLIGHT)
            .map(|_| futures_lite::future::block_on(credits.take()))
            .collect();
        let mut next = std::pin::pin!(credits.take());
        assert!(
            futures_lite::future::block_on(futures_lite::future::poll_once(next.as_mut()))
                .is_none(),
            "every place is taken"
        );
        drop(out.pop());
        assert!(
            futures_lite::future::block_on(futures_lite::future::poll_once(next.as_mut()))
                .is_some(),
            "a read handed on makes room"
        );
        drop(ReadCredit::default());
    }

    #[test]
    fn a_reader_holds_nothing_while_idle_and_copies_small_reads() {
        let pool = BufferPool::new(64);
        let mut reader = ReadBuffer::new(pool.clone());
        reader.vec();
        reader.release_if_empty();
        assert_eq!(pool.idle(), 1, "an idle reader gives its buffer back");
        reader.vec().extend_from_slice(&[1; 8]);
        let small = reader.split();
        assert_eq!(&small[..], &[1; 8]);
        reader.release_if_empty();
        assert_eq!(pool.idle(), 1, "a small read is copied; the buffer is back");
        reader.vec().extend_from_slice(&[2; 40]);
        let large = reader.split();
        assert_eq!(pool.idle(), 0, "a large read goes on in the buffer itself");
        drop(large);
        assert_eq!(pool.idle(), 1);
    }
}
