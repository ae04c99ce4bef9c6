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

/// Cuts a byte stream split anywhere into frames.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Takes more bytes.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame, if one has arrived. An error is final: the stream cannot be
    /// re-synchronised.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.buf.len() < FRAME_HEADER {
            return Ok(None);
        }
        let kind = self.buf[0];
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
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
        if self.buf.len() < FRAME_HEADER + len {
            return Ok(None);
        }
        self.buf.advance(FRAME_HEADER);
        let payload = self.buf.split_to(len).freeze();
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
