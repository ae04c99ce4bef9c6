//! RFC 4571 framing: how STUN messages and application bytes share one TCP stream.
//!
//! ```text
//! frame = length:u16 (big-endian)  payload[length]
//! ```
//!
//! Jami frames every STUN message and every run of application bytes (the TLS records) this
//! way on an ICE-TCP path, so Ferry does too. A frame holds at most 65535 bytes; an empty
//! frame is legal and carries nothing. The decoder never holds more than one largest frame
//! plus its header, whatever the peer sends, and any split of the stream decodes the same.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest payload of one frame.
pub const MAX_FRAME: usize = u16::MAX as usize;
/// Bytes before a frame's payload.
pub const LENGTH_PREFIX: usize = 2;

/// Appends one frame holding `payload` to `out`.
///
/// # Panics
/// Never: a payload longer than [`MAX_FRAME`] is a caller bug and is cut into several
/// frames instead, which a receiver reads back as the same bytes in order.
pub fn encode_into(payload: &[u8], out: &mut BytesMut) {
    if payload.is_empty() {
        out.put_u16(0);
        return;
    }
    for chunk in payload.chunks(MAX_FRAME) {
        out.reserve(LENGTH_PREFIX + chunk.len());
        // `chunks(MAX_FRAME)` keeps every length within u16.
        out.put_u16(chunk.len() as u16);
        out.put_slice(chunk);
    }
}

/// The frame (or frames, past [`MAX_FRAME`]) holding `payload`.
pub fn encode(payload: &[u8]) -> Bytes {
    // Room for every frame's length too: a buffer two bytes short would be copied whole
    // when the second frame's length comes.
    let frames = payload.len().div_ceil(MAX_FRAME).max(1);
    let mut out = BytesMut::with_capacity(LENGTH_PREFIX * frames + payload.len());
    encode_into(payload, &mut out);
    out.freeze()
}

/// Frames bytes as they are written, straight into one buffer: the frames [`encode`] would
/// make of everything written, without the copy `encode` makes. Each frame's length is kept
/// as two bytes of room and filled in when the frame is full or the writer finishes; a
/// producer that writes into a [`std::io::Write`] (rustls's `write_tls`) frames in place.
#[derive(Debug, Default)]
pub struct FrameWriter {
    buf: Vec<u8>,
    /// Where the length of the frame being filled sits.
    open: Option<usize>,
}

impl FrameWriter {
    /// An empty writer.
    pub fn new() -> FrameWriter {
        FrameWriter::default()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The frames of everything written, in one buffer.
    pub fn finish(mut self) -> Bytes {
        self.close();
        Bytes::from(self.buf)
    }

    /// Makes room for `n` more payload bytes and their frames' lengths at once: a buffer
    /// grown step by step would copy what it holds again at each step.
    fn reserve(&mut self, n: usize) {
        self.buf.reserve(n + LENGTH_PREFIX * (n / MAX_FRAME + 1));
    }

    fn put(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let at = match self.open {
                Some(at) if self.buf.len() - at - LENGTH_PREFIX < MAX_FRAME => at,
                _ => {
                    self.close();
                    let at = self.buf.len();
                    self.buf.extend_from_slice(&[0; LENGTH_PREFIX]);
                    self.open = Some(at);
                    at
                }
            };
            let room = MAX_FRAME - (self.buf.len() - at - LENGTH_PREFIX);
            let (now, rest) = data.split_at(room.min(data.len()));
            self.buf.extend_from_slice(now);
            data = rest;
        }
    }

    /// Writes the length of the frame being filled.
    fn close(&mut self) {
        if let Some(at) = self.open.take() {
            // `put` never lets a frame pass MAX_FRAME, so the length fits in u16.
            let len = (self.buf.len() - at - LENGTH_PREFIX) as u16;
            self.buf[at..at + LENGTH_PREFIX].copy_from_slice(&len.to_be_bytes());
        }
    }
}

impl std::io::Write for FrameWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.reserve(data.len());
        self.put(data);
        Ok(data.len())
    }

    fn write_vectored(&mut self, parts: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n = parts.iter().map(|p| p.len()).sum();
        self.reserve(n);
        for part in parts {
            self.put(part);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Cuts a TCP byte stream, split anywhere, into RFC 4571 frames.
#[derive(Debug, Default, Clone)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Takes the bytes that arrived and returns every frame they complete, in order.
    ///
    /// The decoder only ever buffers the incomplete tail: at most one frame header and
    /// payload ([`LENGTH_PREFIX`] + [`MAX_FRAME`] bytes), however much arrives at once.
    pub fn push(&mut self, mut data: &[u8]) -> Vec<Bytes> {
        let mut frames = Vec::new();
        while !data.is_empty() {
            let want = self.needed();
            let take = want.min(data.len());
            // Room for the rest of this frame at once: a buffer grown step by step would copy
            // the frame again at each step.
            self.buf.reserve(want);
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if let Some(frame) = self.take_frame() {
                frames.push(frame);
            }
        }
        // A zero-length frame completes as soon as its header does.
        while let Some(frame) = self.take_frame() {
            frames.push(frame);
        }
        frames
    }

    /// Bytes received that do not yet make a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// How many more bytes the frame being read needs.
    fn needed(&self) -> usize {
        if self.buf.len() < LENGTH_PREFIX {
            LENGTH_PREFIX - self.buf.len()
        } else {
            let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
            // Zero when a whole frame is buffered; `take_frame` then takes it.
            (LENGTH_PREFIX + len).saturating_sub(self.buf.len())
        }
    }

    fn take_frame(&mut self) -> Option<Bytes> {
        if self.buf.len() < LENGTH_PREFIX {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]]));
        if self.buf.len() < LENGTH_PREFIX + len {
            return None;
        }
        self.buf.advance(LENGTH_PREFIX);
        Some(self.buf.split_to(len).freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn the_writer_frames_as_encode_does() {
        let data: Vec<u8> = (0..3 * MAX_FRAME + 17).map(|i| (i % 251) as u8).collect();
        // Written whole, in odd pieces, and vectored across a frame's end.
        for cuts in [
            vec![],
            vec![1, 5, MAX_FRAME - 3],
            vec![MAX_FRAME, MAX_FRAME + 1],
        ] {
            let mut w = FrameWriter::new();
            let mut rest = &data[..];
            for cut in cuts {
                let (a, b) = rest.split_at(cut.min(rest.len()));
                let (a1, a2) = a.split_at(a.len() / 2);
                let n = w
                    .write_vectored(&[std::io::IoSlice::new(a1), std::io::IoSlice::new(a2)])
                    .expect("a Vec takes every byte");
                assert_eq!(n, a.len());
                rest = b;
            }
            w.write_all(rest).expect("a Vec takes every byte");
            assert_eq!(w.finish(), encode(&data));
        }
        assert!(FrameWriter::new().is_empty());
        assert!(FrameWriter::new().finish().is_empty());
    }

    #[test]
    fn every_split_decodes_the_same() {
        let mut stream = BytesMut::new();
        encode_into(b"hello", &mut stream);
        encode_into(b"", &mut stream);
        encode_into(&[7u8; 300], &mut stream);
        let stream = stream.freeze();
        for cut in 0..=stream.len() {
            let mut d = FrameDecoder::new();
            let mut frames = d.push(&stream[..cut]);
            frames.extend(d.push(&stream[cut..]));
            assert_eq!(frames.len(), 3, "cut at {cut}");
            assert_eq!(&frames[0][..], b"hello");
            assert!(frames[1].is_empty());
            assert_eq!(&frames[2][..], &[7u8; 300][..]);
            assert_eq!(d.buffered(), 0);
        }
    }
}
