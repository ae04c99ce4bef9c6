//! A connection's bytes on their way to the socket, handed to it in batches (one vectored
//! write for whatever is queued), and the FIN that follows them.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf as _, Bytes};

/// Most chunks given to one vectored write.
pub const MAX_BATCH: usize = 32;

/// What a connection's writer task is asked to do.
#[derive(Debug)]
pub enum Write {
    /// Send these bytes after those already queued.
    Data(Bytes),
    /// Send our FIN once every queued byte is out.
    Fin,
}

/// The writer task's queue.
#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Bytes>,
    fin: bool,
}

impl WriteQueue {
    /// Queues a [`Write`]. Nothing is queued after the FIN.
    pub fn push(&mut self, write: Write) {
        match write {
            Write::Data(data) if !data.is_empty() && !self.fin => self.chunks.push_back(data),
            Write::Data(_) => {}
            Write::Fin => self.fin = true,
        }
    }

    /// Nothing to do: the writer waits for more.
    pub fn is_idle(&self) -> bool {
        self.chunks.is_empty() && !self.fin
    }

    /// No more to gather before writing.
    pub fn is_full(&self) -> bool {
        self.fin || self.chunks.len() >= MAX_BATCH
    }

    /// Every byte is out and the FIN is due.
    pub fn fin_due(&self) -> bool {
        self.chunks.is_empty() && self.fin
    }

    /// The queued bytes, for one vectored write.
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        self.chunks
            .iter()
            .take(MAX_BATCH)
            .map(|c| IoSlice::new(c))
            .collect()
    }

    /// `n` bytes were written.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_advance_across_chunks_and_the_fin_comes_last() {
        let mut q = WriteQueue::default();
        assert!(q.is_idle());
        q.push(Write::Data(Bytes::from_static(b"abc")));
        q.push(Write::Data(Bytes::new()));
        q.push(Write::Data(Bytes::from_static(b"defg")));
        q.push(Write::Fin);
        q.push(Write::Data(Bytes::from_static(b"late")));
        assert!(q.is_full() && !q.fin_due());
        q.advance(4);
        let left: Vec<u8> = q.slices().iter().flat_map(|s| s.to_vec()).collect();
        assert_eq!(left, b"efg");
        q.advance(3);
        assert!(q.fin_due());
    }
}
