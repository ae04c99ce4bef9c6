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
    /// Bytes left of a frame handed out as it arrives ([`push_stream`](Self::push_stream)).
    streaming: usize,
}

/// What [`FrameDecoder::push_stream`] hands out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A whole frame's payload.
    Frame(Bytes),
    /// The next bytes of the payload of a frame being streamed.
    Part(Bytes),
}

/// How many bytes of a frame's payload [`FrameDecoder::push_stream`] shows its caller to
/// decide whether to stream it: enough to tell a STUN message
/// ([`may_be_stun`](crate::stun::may_be_stun)).
pub const PROBE: usize = 8;

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Takes the bytes that arrived and returns every frame they complete, in order.
    ///
    /// The decoder only ever buffers the incomplete tail: at most one frame header and
    /// payload ([`LENGTH_PREFIX`] + [`MAX_FRAME`] bytes), however much arrives at once.
    pub fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        // Nothing streamed: every frame comes out whole.
        self.push_stream(Bytes::copy_from_slice(data), |_, _| false)
            .into_iter()
            .filter_map(|piece| match piece {
                Piece::Frame(frame) => Some(frame),
                Piece::Part(_) => None,
            })
            .collect()
    }

    /// [`push`](Self::push) for bytes the caller owns, handing out each frame's payload
    /// without gathering it when it can: a frame that lies whole inside `data` comes out as
    /// a slice of it ([`Piece::Frame`]); a longer one whose first [`PROBE`] bytes `stream`
    /// accepts (given them and the frame's length) comes out as it arrives, in slices
    /// ([`Piece::Part`]), the bytes gathered before the decision first. Only the frames
    /// `stream` declines (a STUN message to decode whole) are gathered, as `push` gathers
    /// every frame: an ICE-TCP receiver's application bytes are copied once less.
    pub fn push_stream(
        &mut self,
        mut data: Bytes,
        stream: impl Fn(&[u8], usize) -> bool,
    ) -> Vec<Piece> {
        let mut pieces = Vec::new();
        loop {
            if self.streaming > 0 {
                if data.is_empty() {
                    return pieces;
                }
                let n = self.streaming.min(data.len());
                pieces.push(Piece::Part(data.split_to(n)));
                self.streaming -= n;
                continue;
            }
            if self.buf.is_empty() && data.len() >= LENGTH_PREFIX {
                let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
                if data.len() >= LENGTH_PREFIX + len {
                    data.advance(LENGTH_PREFIX);
                    pieces.push(Piece::Frame(data.split_to(len)));
                    continue;
                }
                let probe = LENGTH_PREFIX..LENGTH_PREFIX + PROBE;
                if len > PROBE && data.len() >= probe.end && stream(&data[probe], len) {
                    data.advance(LENGTH_PREFIX);
                    self.streaming = len;
                    continue;
                }
            }
            if data.is_empty() {
                return pieces;
            }
            // Gathered up to the next point of decision: the header, the probe, the end.
            let target = match self.frame_len() {
                None => LENGTH_PREFIX,
                Some(len) if len > PROBE && self.buf.len() < LENGTH_PREFIX + PROBE => {
                    LENGTH_PREFIX + PROBE
                }
                Some(len) => LENGTH_PREFIX + len,
            };
            let take = (target - self.buf.len()).min(data.len());
            self.buf.reserve(target - self.buf.len());
            self.buf.extend_from_slice(&data[..take]);
            data.advance(take);
            if let Some(frame) = self.take_frame() {
                pieces.push(Piece::Frame(frame));
                continue;
            }
            if let Some(len) = self.frame_len()
                && len > PROBE
                && self.buf.len() == LENGTH_PREFIX + PROBE
                && stream(&self.buf[LENGTH_PREFIX..], len)
            {
                self.buf.advance(LENGTH_PREFIX);
                self.streaming = len - PROBE;
                pieces.push(Piece::Part(self.buf.split().freeze()));
            }
        }
    }

    /// The length of the frame whose header is buffered.
    fn frame_len(&self) -> Option<usize> {
        (self.buf.len() >= LENGTH_PREFIX)
            .then(|| usize::from(u16::from_be_bytes([self.buf[0], self.buf[1]])))
    }

    /// Bytes received that do not yet make a whole frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
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

    #[test]
    fn streamed_frames_come_out_as_gathered_ones_and_stun_whole() {
        // A STUN-like start (top bits 0, the magic cookie at 4..8), then application bytes.
        let mut stun = vec![0u8, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        stun.resize(28, 9);
        let payloads: Vec<Vec<u8>> = vec![
            b"hello".to_vec(),
            Vec::new(),
            vec![0x17; 300],
            stun.clone(),
            (0..1000).map(|i| (i % 253) as u8).collect(),
            vec![0x17; 9],
        ];
        let mut stream = BytesMut::new();
        for p in &payloads {
            encode_into(p, &mut stream);
        }
        let stream = stream.freeze();
        let decide = |start: &[u8], len: usize| !crate::stun::may_be_stun(start, len);
        for a in 0..=stream.len() {
            for step in [0, 1, 3, 9, 17, 300, 1100] {
                let b = (a + step).min(stream.len());
                let mut d = FrameDecoder::new();
                let mut pieces = Vec::new();
                for (from, to) in [(0, a), (a, b), (b, stream.len())] {
                    pieces.extend(d.push_stream(stream.slice(from..to), decide));
                    assert!(d.buffered() <= LENGTH_PREFIX + MAX_FRAME);
                }
                // In order, every byte once (the fuzz property `rfc4571_deframer` puts the
                // frames back together one by one).
                let bytes: Vec<u8> = pieces
                    .iter()
                    .flat_map(|p| match p {
                        Piece::Frame(b) | Piece::Part(b) => b.to_vec(),
                    })
                    .collect();
                assert_eq!(bytes, payloads.concat(), "cuts at {a}, {b}");
                assert_eq!(d.buffered(), 0);
                // The STUN-like frame is never streamed: it comes whole, to be decoded.
                assert!(pieces.contains(&Piece::Frame(Bytes::from(stun.clone()))));
            }
        }
        // Cut inside the long frame, past its probe: the rest of it is handed on as slices
        // of what arrived, not gathered.
        let long_at = stream.len() - (2 + 9) - (2 + 1000);
        let cut = long_at + 2 + PROBE + 100;
        let mut d = FrameDecoder::new();
        let first = d.push_stream(stream.slice(..cut), decide);
        let rest = stream.slice(cut..);
        let second = d.push_stream(rest.clone(), decide);
        assert!(matches!(first.last(), Some(Piece::Part(p)) if p.len() == PROBE + 100));
        let Some(Piece::Part(tail)) = second.first() else {
            panic!("{second:?}");
        };
        assert_eq!(tail.len(), 1000 - PROBE - 100);
        assert_eq!(tail.as_ptr(), rest.as_ptr(), "a slice of what arrived");
    }
}
