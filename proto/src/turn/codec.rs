//! STUN messages on a TCP stream to a TURN server, and the few helpers the client needs.
//!
//! On the control connection (and on a data connection until ConnectionBind succeeds) STUN
//! messages follow each other with no framing: each is self-delimiting, a 20-byte header
//! whose length field gives the rest (RFC 8656 §3.3; RFC 4571 framing is not used here).

use bytes::{Buf, Bytes, BytesMut};

/// Length of a STUN header.
const HEADER: usize = 20;
/// The magic cookie every STUN message carries at bytes 4..8.
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// A stream of bytes that is not STUN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stream does not carry STUN messages")]
pub struct NotStun;

/// Cuts a byte stream into whole STUN messages. Holds at most one message.
#[derive(Debug, Default)]
pub struct StunStream {
    buf: BytesMut,
}

impl StunStream {
    /// An empty stream.
    pub fn new() -> StunStream {
        StunStream::default()
    }

    /// Takes more bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message, if one has arrived. An error is final.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, NotStun> {
        if self.buf.len() < HEADER {
            // Check what we can early, so garbage is refused before it piles up.
            if !self.buf.is_empty() && self.buf[0] & 0xc0 != 0 {
                return Err(NotStun);
            }
            return Ok(None);
        }
        if self.buf[0] & 0xc0 != 0 || self.buf[4..8] != MAGIC_COOKIE {
            return Err(NotStun);
        }
        let len = u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize;
        if len % 4 != 0 {
            return Err(NotStun);
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        Ok(Some(self.buf.split_to(HEADER + len).freeze()))
    }

    /// What is left after the messages taken (raw peer bytes, once a data connection is bound).
    pub fn take_rest(&mut self) -> Bytes {
        let rest = std::mem::take(&mut self.buf);
        rest.freeze()
    }

    /// Bytes held.
    pub fn buffered(&self) -> usize {
        self.buf.remaining()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(len: u16, extra: &[u8]) -> Vec<u8> {
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(&MAGIC_COOKIE);
        m.extend_from_slice(&[7u8; 12]);
        m.extend(std::iter::repeat_n(0u8, len as usize));
        m.extend_from_slice(extra);
        m
    }

    #[test]
    fn messages_are_cut_at_their_length_whatever_the_split() {
        let mut wire = message(8, b"");
        wire.extend(message(0, b"raw peer bytes"));
        for split in 0..wire.len() {
            let mut s = StunStream::new();
            s.push(&wire[..split]);
            let mut got = Vec::new();
            // Exactly two messages, as a data connection reads exactly one before its raw bytes.
            while got.len() < 2 {
                match s.next_message().expect("stun") {
                    Some(m) => got.push(m.len()),
                    None => break,
                }
            }
            s.push(&wire[split..]);
            while got.len() < 2 {
                let m = s.next_message().expect("stun").expect("complete");
                got.push(m.len());
            }
            assert_eq!(got, [28, 20], "split at {split}");
            assert_eq!(&s.take_rest()[..], b"raw peer bytes");
        }
    }

    #[test]
    fn garbage_is_refused_early() {
        let mut s = StunStream::new();
        s.push(b"GET / HTTP/1.1\r\n");
        assert_eq!(s.next_message(), Err(NotStun));
        let mut s = StunStream::new();
        let mut bad = message(4, b"");
        bad[4] = 0; // no magic cookie
        s.push(&bad);
        assert_eq!(s.next_message(), Err(NotStun));
        let mut s = StunStream::new();
        s.push(&message(3, b"")[..20]);
        assert_eq!(
            s.next_message(),
            Err(NotStun),
            "a length that is not a multiple of 4"
        );
    }
}
