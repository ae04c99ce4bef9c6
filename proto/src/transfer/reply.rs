//! The receiver's answer to a header: `GO` or `NGO`.
//!
//! | bytes          | meaning |
//! |----------------|---------|
//! | `GO\n`         | accepted, Jami's raw form: exactly `Content-Length − Offset` bytes follow |
//! | `GO <n>\n`     | accepted, Ferry's framed form, starting at byte `n` (what the receiver already holds) |
//! | `GO <n> <hex>\n` | accepted, framed form from byte `n > 0`; `<hex>` is the SHA3-512 of the receiver's first `n` bytes (128 lowercase hex digits) |
//! | `NGO\n`        | refused |
//!
//! A Ferry receiver answers `GO <n>` (even `GO 0`) only to a sender that announced the
//! extension, so a plain `GO` always means the raw form; and `GO <n> <hex>` only to a sender
//! that announced the `prefix-digest` feature, which then checks the prefix before it sends
//! from `n` (or sends RESTART and starts at 0).

use bytes::{Bytes, BytesMut};

use super::Digest;

/// Longest reply line we wait for before calling it garbage: `GO`, a `u64` and a digest in
/// hex fit (3 + 20 + 1 + 128 bytes).
const MAX_REPLY: usize = 160;

/// A receiver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `GO\n`: accepted, raw form.
    Go,
    /// `GO <offset>\n`: accepted, framed form from `offset`.
    GoAt(u64),
    /// `GO <offset> <hex>\n`: accepted, framed form from `offset`, which the receiver holds
    /// with this SHA3-512 (the `prefix-digest` feature).
    GoVerify(u64, Digest),
    /// `NGO\n`: refused.
    Ngo,
}

impl Reply {
    /// The reply's exact bytes.
    pub fn encode(&self) -> Bytes {
        match self {
            Reply::Go => Bytes::from_static(b"GO\n"),
            Reply::GoAt(n) => Bytes::from(format!("GO {n}\n")),
            Reply::GoVerify(n, digest) => Bytes::from(format!("GO {n} {digest}\n")),
            Reply::Ngo => Bytes::from_static(b"NGO\n"),
        }
    }
}

/// The reply was neither `GO`, `GO <n>` nor `NGO`. Jami takes any such reply as a refusal;
/// Ferry reports it as a protocol violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the reply is neither GO nor NGO")]
pub struct BadReply;

/// Parses a reply from a byte stream split anywhere.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: BytesMut,
}

impl ReplyParser {
    /// A parser waiting for the first byte.
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Takes more bytes; returns the reply and the bytes that followed it, once complete.
    pub fn push(&mut self, data: &[u8]) -> Result<Option<(Reply, Bytes)>, BadReply> {
        self.buf.extend_from_slice(data);
        let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
            return if self.buf.len() > MAX_REPLY {
                Err(BadReply)
            } else {
                Ok(None)
            };
        };
        // However it arrived: a reply is a short line, or garbage.
        if nl > MAX_REPLY {
            return Err(BadReply);
        }
        let line = self.buf.split_to(nl + 1);
        let reply = parse(&line[..nl])?;
        Ok(Some((reply, std::mem::take(&mut self.buf).freeze())))
    }
}

fn parse(line: &[u8]) -> Result<Reply, BadReply> {
    match line {
        b"GO" => Ok(Reply::Go),
        b"NGO" => Ok(Reply::Ngo),
        _ => {
            let rest = line.strip_prefix(b"GO ").ok_or(BadReply)?;
            let (n, hex) = match rest.iter().position(|&b| b == b' ') {
                Some(sp) => (&rest[..sp], Some(&rest[sp + 1..])),
                None => (rest, None),
            };
            let n = decimal(n)?;
            match hex {
                None => Ok(Reply::GoAt(n)),
                Some(hex) => Ok(Reply::GoVerify(n, digest_hex(hex)?)),
            }
        }
    }
}

/// A plain decimal `u64`: digits only.
fn decimal(n: &[u8]) -> Result<u64, BadReply> {
    if n.is_empty() || !n.iter().all(u8::is_ascii_digit) {
        return Err(BadReply);
    }
    let n = std::str::from_utf8(n).map_err(|_| BadReply)?;
    n.parse().map_err(|_| BadReply)
}

/// Exactly 128 lowercase hex digits, as [`Digest`]'s `Display` writes them.
fn digest_hex(hex: &[u8]) -> Result<Digest, BadReply> {
    if hex.len() != 128 {
        return Err(BadReply);
    }
    let mut out = [0u8; 64];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Ok(Digest(out))
}

fn nibble(b: u8) -> Result<u8, BadReply> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        _ => Err(BadReply),
    }
}
