//! The receiver's answer to a header: `GO` or `NGO`.
//!
//! | bytes          | meaning |
//! |----------------|---------|
//! | `GO\n`         | accepted, Jami's raw form: exactly `Content-Length − Offset` bytes follow |
//! | `GO <n>\n`     | accepted, Ferry's framed form, starting at byte `n` (what the receiver already holds) |
//! | `NGO\n`        | refused |
//!
//! A Ferry receiver answers `GO <n>` (even `GO 0`) only to a sender that announced the
//! extension, so a plain `GO` always means the raw form.

use bytes::{Bytes, BytesMut};

/// Longest reply line we wait for before calling it garbage.
const MAX_REPLY: usize = 32;

/// A receiver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `GO\n`: accepted, raw form.
    Go,
    /// `GO <offset>\n`: accepted, framed form from `offset`.
    GoAt(u64),
    /// `NGO\n`: refused.
    Ngo,
}

impl Reply {
    /// The reply's exact bytes.
    pub fn encode(&self) -> Bytes {
        match self {
            Reply::Go => Bytes::from_static(b"GO\n"),
            Reply::GoAt(n) => Bytes::from(format!("GO {n}\n")),
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
            let n = line.strip_prefix(b"GO ").ok_or(BadReply)?;
            if n.is_empty() || !n.iter().all(u8::is_ascii_digit) {
                return Err(BadReply);
            }
            let n = std::str::from_utf8(n).map_err(|_| BadReply)?;
            n.parse().map(Reply::GoAt).map_err(|_| BadReply)
        }
    }
}
