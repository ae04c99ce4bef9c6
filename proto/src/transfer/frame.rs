//! Ferry's frames, which follow `GO <n>` when both sides speak the extension.
//!
//! ```text
//! frame = type:u8  length:u32 (big-endian)  payload[length]
//! ```
//!
//! | type | name    | direction            | payload |
//! |------|---------|----------------------|---------|
//! | 0x01 | DATA    | sender → receiver    | 1..=65536 file bytes, in order |
//! | 0x02 | END     | sender → receiver    | the 64-byte SHA3-512 of the whole file |
//! | 0x03 | CANCEL  | either, at any time  | 1 byte: [`CancelCode`] |
//! | 0x04 | VERDICT | receiver → sender    | 1 byte: 0x00 digest OK, 0x01 digest BAD |
//! | 0x05 | RESTART | sender → receiver    | empty: the prefix named by `GO <n> <hex>` did not match; empty what you hold, DATA starts at byte 0 |
//!
//! RESTART is sent only after a `GO <n> <hex>` (the `prefix-digest` feature), and only as the
//! first frame.
//!
//! A frame of an unknown type, or whose length does not fit its type, is a protocol
//! violation: the decoder never buffers more than one largest frame.

use std::collections::VecDeque;
use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::Digest;

/// Largest DATA payload.
pub const MAX_DATA: usize = 64 * 1024;
/// Bytes before a frame's payload.
pub const FRAME_HEADER: usize = 5;

const DATA: u8 = 0x01;
const END: u8 = 0x02;
const CANCEL: u8 = 0x03;
const VERDICT: u8 = 0x04;
const RESTART: u8 = 0x05;

/// Why a side cancelled, as carried by a CANCEL frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelCode {
    /// 0x00: the user cancelled.
    User,
    /// 0x01: a file could not be read or written.
    FileError,
    /// 0x02: the other side broke the protocol.
    Protocol,
    /// 0x03: the other side did not answer in time.
    Timeout,
    /// Any other code, kept as received.
    Other(u8),
}

impl CancelCode {
    fn to_byte(self) -> u8 {
        match self {
            CancelCode::User => 0,
            CancelCode::FileError => 1,
            CancelCode::Protocol => 2,
            CancelCode::Timeout => 3,
            CancelCode::Other(b) => b,
        }
    }

    fn from_byte(b: u8) -> CancelCode {
        match b {
            0 => CancelCode::User,
            1 => CancelCode::FileError,
            2 => CancelCode::Protocol,
            3 => CancelCode::Timeout,
            b => CancelCode::Other(b),
        }
    }
}

impl fmt::Display for CancelCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CancelCode::User => f.write_str("user"),
            CancelCode::FileError => f.write_str("file-error"),
            CancelCode::Protocol => f.write_str("protocol"),
            CancelCode::Timeout => f.write_str("timeout"),
            CancelCode::Other(b) => write!(f, "code-{b}"),
        }
    }
}

/// The header of a DATA frame of `len` payload bytes (at most [`MAX_DATA`]): what
/// [`Frame::encode_into`] writes before them.
pub fn data_header(len: usize) -> [u8; FRAME_HEADER] {
    let [l0, l1, l2, l3] = (len as u32).to_be_bytes();
    [DATA, l0, l1, l2, l3]
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// File bytes, continuing where the previous DATA ended.
    Data(Bytes),
    /// No more data; the SHA3-512 of the whole file.
    End(Digest),
    /// Stop now.
    Cancel(CancelCode),
    /// The receiver's check of END: `true` when the digest matched.
    Verdict(bool),
    /// The receiver's prefix did not match the sender's file: it empties what it holds, and
    /// the DATA that follows starts at byte 0.
    Restart,
}

impl Frame {
    /// Appends the frame's bytes to `out`.
    pub fn encode_into(&self, out: &mut BytesMut) {
        let (kind, payload): (u8, &[u8]) = match self {
            Frame::Data(data) => (DATA, data),
            Frame::End(digest) => (END, &digest.0),
            Frame::Cancel(code) => (CANCEL, &[code.to_byte()]),
            Frame::Verdict(ok) => (VERDICT, if *ok { &[0] } else { &[1] }),
            Frame::Restart => (RESTART, &[]),
        };
        out.reserve(FRAME_HEADER + payload.len());
        out.put_u8(kind);
        out.put_u32(payload.len() as u32);
        out.put_slice(payload);
    }

    /// The frame's bytes.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_into(&mut out);
        out.freeze()
    }
}

/// A frame that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The type byte is not one of Ferry's.
    #[error("unknown frame type 0x{0:02x}")]
    UnknownType(u8),
    /// The length does not fit the type.
    #[error("frame type 0x{kind:02x} cannot be {len} bytes long")]
    BadLength {
        /// The type byte.
        kind: u8,
        /// The length announced.
        len: u32,
    },
    /// A VERDICT byte other than 0 or 1.
    #[error("verdict byte 0x{0:02x} is neither 0 nor 1")]
    BadVerdict(u8),
}

/// Most pieces a [`FrameDecoder`] keeps apart before it joins them: a sender that trickles
/// bytes must not make it hold more pieces than bytes are worth.
const MAX_PIECES: usize = 16;

/// Cuts a byte stream split anywhere into frames.
///
/// It keeps the pieces it was given as they came: a frame inside one piece comes out as a
/// slice of it, without a copy, and only a frame split across pieces is joined, once, into
/// a buffer of its exact size.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    pieces: VecDeque<Bytes>,
    len: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Takes more bytes (a copy of them; see [`push_bytes`](Self::push_bytes)).
    pub fn push(&mut self, data: &[u8]) {
        self.push_bytes(Bytes::copy_from_slice(data));
    }

    /// Takes more bytes, keeping them as they are: the frames inside them come out as
    /// slices of `data`.
    pub fn push_bytes(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        self.pieces.push_back(data);
        if self.pieces.len() > MAX_PIECES {
            let all = self.take(self.len);
            self.len = all.len();
            self.pieces.push_back(all);
        }
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// The first `N` bytes held, across pieces; zeros past the end.
    fn peek<const N: usize>(&self) -> [u8; N] {
        let mut out = [0u8; N];
        let mut at = 0;
        for piece in &self.pieces {
            let n = (N - at).min(piece.len());
            out[at..at + n].copy_from_slice(&piece[..n]);
            at += n;
            if at == N {
                break;
            }
        }
        out
    }

    /// The first `n` bytes held (at most [`buffered`](Self::buffered)): a slice of the first
    /// piece when it holds them all, else a copy of exactly `n` bytes.
    fn take(&mut self, n: usize) -> Bytes {
        let n = n.min(self.len);
        self.len -= n;
        if let Some(front) = self.pieces.front_mut()
            && front.len() >= n
        {
            let out = front.split_to(n);
            if front.is_empty() {
                self.pieces.pop_front();
            }
            return out;
        }
        let mut out = BytesMut::with_capacity(n);
        while out.len() < n {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            let k = (n - out.len()).min(front.len());
            out.extend_from_slice(&front[..k]);
            front.advance(k);
            if front.is_empty() {
                self.pieces.pop_front();
            }
        }
        out.freeze()
    }

    /// The next whole frame, if one has arrived. An error is final: the stream cannot be
    /// re-synchronised.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.len < FRAME_HEADER {
            return Ok(None);
        }
        let [kind, l0, l1, l2, l3] = self.peek::<FRAME_HEADER>();
        let len = u32::from_be_bytes([l0, l1, l2, l3]);
        let fits = match kind {
            DATA => (1..=MAX_DATA as u32).contains(&len),
            END => len == 64,
            CANCEL | VERDICT => len == 1,
            RESTART => len == 0,
            other => return Err(FrameError::UnknownType(other)),
        };
        if !fits {
            return Err(FrameError::BadLength { kind, len });
        }
        let len = len as usize;
        if self.len < FRAME_HEADER + len {
            return Ok(None);
        }
        self.take(FRAME_HEADER);
        let payload = self.take(len);
        Ok(Some(match kind {
            DATA => Frame::Data(payload),
            END => {
                let mut d = [0u8; 64];
                d.copy_from_slice(&payload);
                Frame::End(Digest(d))
            }
            CANCEL => Frame::Cancel(CancelCode::from_byte(payload[0])),
            RESTART => Frame::Restart,
            _ => match payload[0] {
                0 => Frame::Verdict(true),
                1 => Frame::Verdict(false),
                b => return Err(FrameError::BadVerdict(b)),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Bytes {
        let mut out = BytesMut::new();
        Frame::Data(Bytes::from(vec![3u8; 1000])).encode_into(&mut out);
        Frame::Verdict(true).encode_into(&mut out);
        Frame::Data(Bytes::from(vec![4u8; 70])).encode_into(&mut out);
        out.freeze()
    }

    fn drain(d: &mut FrameDecoder) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = d.next_frame().expect("valid frames") {
            frames.push(frame);
        }
        frames
    }

    #[test]
    fn pieces_split_anywhere_decode_the_same_and_a_whole_frame_is_not_copied() {
        let stream = stream();
        let whole = drain(&mut {
            let mut d = FrameDecoder::new();
            d.push(&stream);
            d
        });
        assert_eq!(whole.len(), 3);
        for cut in (0..stream.len()).step_by(7) {
            let mut d = FrameDecoder::new();
            d.push_bytes(stream.slice(..cut));
            let mut frames = drain(&mut d);
            d.push_bytes(stream.slice(cut..));
            frames.extend(drain(&mut d));
            assert_eq!(frames, whole, "cut at {cut}");
            assert_eq!(d.buffered(), 0);
        }
        let mut d = FrameDecoder::new();
        d.push_bytes(stream.clone());
        let Some(Frame::Data(first)) = d.next_frame().expect("valid") else {
            panic!("a DATA frame first");
        };
        assert_eq!(
            first.as_ptr(),
            stream[FRAME_HEADER..].as_ptr(),
            "a slice of the piece it came in"
        );
    }

    #[test]
    fn a_trickle_of_bytes_keeps_few_pieces() {
        let stream = stream();
        let mut d = FrameDecoder::new();
        let mut frames = Vec::new();
        for b in stream.iter() {
            d.push(&[*b]);
            assert!(d.pieces.len() <= MAX_PIECES);
            frames.extend(drain(&mut d));
        }
        assert_eq!(frames.len(), 3);
    }
}
