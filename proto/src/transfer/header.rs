//! The transfer header: Jami's text lines, with Ferry's extension key.
//!
//! ```text
//! Content-Length: <whole file size, decimal>\n
//! Display-Name: <name>\n
//! Offset: <first byte the sender will send>\n
//! Ferry-Frames: 1\n            (Ferry only; Jami ignores unknown keys)
//! Ferry-Features: prefix-digest\n   (Ferry only, with Ferry-Frames; see FEATURES_KEY)
//! Ferry-Manifest: <id>\n       (Ferry only, a file of a manifest, to a device that announced it)
//! \n
//! ```
//!
//! The sender writes it in one piece; [`HeaderParser`] accepts it split at any byte.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::TransferId;
use super::manifest::MANIFEST_KEY;

/// Longest header line in bytes, without its `\n` (Jami's limit).
pub const MAX_LINE: usize = 1023;
/// Largest whole header, blank line included.
pub const MAX_HEADER: usize = 8 * 1024;
/// The key by which a sender announces Ferry's framed form (see `PROTOCOL.md`).
pub const EXTENSION_KEY: &str = "Ferry-Frames";
/// The version of the framed form this code speaks.
pub const EXTENSION_VERSION: u32 = 1;
/// The key by which a framed-form sender lists the features it speaks, comma-separated
/// (see `PROTOCOL.md`, the feature table). New wire elements go only to a peer that named
/// them here; a peer that did not gets today's bytes.
pub const FEATURES_KEY: &str = "Ferry-Features";
/// The feature by which a sender asks for the acceptance with a prefix digest
/// (`GO <n> <sha3-512 of the first n bytes>`, see [`Reply::GoVerify`](super::reply::Reply)).
pub const PREFIX_DIGEST: &str = "prefix-digest";

/// A parsed transfer header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The size of the whole file.
    pub content_length: u64,
    /// The name the sender suggests, as sent (untrusted; see [`SafeName`](super::SafeName)).
    pub display_name: String,
    /// The first byte the sender will send in Jami's raw form.
    pub offset: u64,
    /// The framed-form version the sender speaks, if it announced one.
    pub extension: Option<u32>,
    /// Whether the sender announced [`PREFIX_DIGEST`] in [`FEATURES_KEY`] (sent only with
    /// the framed form).
    pub prefix_digest: bool,
    /// The manifest this file belongs to ([`MANIFEST_KEY`]),
    /// written only with the framed form, to a device that announced the `manifest` feature.
    pub manifest: Option<TransferId>,
}

/// Why a header was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A line is longer than [`MAX_LINE`].
    #[error("a header line is longer than {MAX_LINE} bytes")]
    LineTooLong,
    /// The header did not end within [`MAX_HEADER`] bytes.
    #[error("the header is longer than {MAX_HEADER} bytes")]
    TooLong,
    /// A line has no `:`.
    #[error("header line {0} has no ':'")]
    MissingColon(usize),
    /// The header is not UTF-8.
    #[error("the header is not UTF-8")]
    NotUtf8,
    /// No `Content-Length`.
    #[error("no Content-Length")]
    MissingContentLength,
    /// A number field is not a plain decimal `u64`.
    #[error("{0} is not a decimal number")]
    NotANumber(&'static str),
    /// A field appears twice.
    #[error("{0} appears twice")]
    Duplicate(&'static str),
    /// `Offset` is beyond `Content-Length`.
    #[error("Offset {offset} is beyond Content-Length {content_length}")]
    OffsetBeyondSize {
        /// The offset sent.
        offset: u64,
        /// The size sent.
        content_length: u64,
    },
}

impl Header {
    /// The header's exact bytes, to be written in one piece.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(96 + self.display_name.len());
        out.put_slice(format!("Content-Length: {}\n", self.content_length).as_bytes());
        out.put_slice(format!("Display-Name: {}\n", self.display_name).as_bytes());
        out.put_slice(format!("Offset: {}\n", self.offset).as_bytes());
        if let Some(v) = self.extension {
            out.put_slice(format!("{EXTENSION_KEY}: {v}\n").as_bytes());
        }
        if self.prefix_digest {
            out.put_slice(format!("{FEATURES_KEY}: {PREFIX_DIGEST}\n").as_bytes());
        }
        if let (Some(_), Some(m)) = (self.extension, self.manifest) {
            out.put_slice(format!("{MANIFEST_KEY}: {m}\n").as_bytes());
        }
        out.put_u8(b'\n');
        out.freeze()
    }
}

/// Parses a header from a byte stream split anywhere.
///
/// Feed bytes with [`push`](Self::push); once it returns a header, the bytes that followed it
/// in the stream are in [`take_rest`](Self::take_rest). Memory is bounded by [`MAX_HEADER`].
#[derive(Debug, Default)]
pub struct HeaderParser {
    buf: BytesMut,
    /// Where the next unparsed line starts in `buf`.
    line_start: usize,
    lines: usize,
    content_length: Option<u64>,
    display_name: Option<String>,
    offset: Option<u64>,
    extension: Option<u32>,
    /// The features line, once seen (a second one is a duplicate).
    features: Option<bool>,
    manifest: Option<TransferId>,
}

impl HeaderParser {
    /// A parser waiting for the first byte.
    pub fn new() -> HeaderParser {
        HeaderParser::default()
    }

    /// Takes more bytes. `Ok(Some(header))` once the blank line arrived; `Ok(None)` while more
    /// is needed. After an error or a header, the parser must not be fed again.
    pub fn push(&mut self, data: &[u8]) -> Result<Option<Header>, HeaderError> {
        self.buf.extend_from_slice(data);
        loop {
            let Some(nl) = self.buf[self.line_start..].iter().position(|&b| b == b'\n') else {
                let pending = self.buf.len() - self.line_start;
                if pending > MAX_LINE {
                    return Err(HeaderError::LineTooLong);
                }
                if self.buf.len() > MAX_HEADER {
                    return Err(HeaderError::TooLong);
                }
                return Ok(None);
            };
            let line_end = self.line_start + nl;
            if line_end + 1 > MAX_HEADER {
                return Err(HeaderError::TooLong);
            }
            // Checked before anything else about the line, blank ones included: a parser fed
            // byte by byte refuses a long line before it sees its end, so one fed the whole
            // header at once must too.
            if nl > MAX_LINE {
                return Err(HeaderError::LineTooLong);
            }
            let line = std::str::from_utf8(&self.buf[self.line_start..line_end])
                .map_err(|_| HeaderError::NotUtf8)?
                .to_owned();
            self.line_start = line_end + 1;
            self.lines += 1;
            // A trailing '\r' is whitespace and trimmed with the value.
            if line.trim().is_empty() {
                return self.finish().map(Some);
            }
            self.field(&line)?;
        }
    }

    /// The bytes that followed the header (valid once [`push`](Self::push) returned it).
    pub fn take_rest(&mut self) -> Bytes {
        let mut buf = std::mem::take(&mut self.buf);
        buf.advance(self.line_start.min(buf.len()));
        self.line_start = 0;
        buf.freeze()
    }

    fn field(&mut self, line: &str) -> Result<(), HeaderError> {
        let (key, value) = line
            .split_once(':')
            .ok_or(HeaderError::MissingColon(self.lines))?;
        let (key, value) = (key.trim(), value.trim());
        match key {
            "Content-Length" => set_once(
                &mut self.content_length,
                parse_u64(value, "Content-Length")?,
                "Content-Length",
            ),
            "Display-Name" => set_once(&mut self.display_name, value.to_owned(), "Display-Name"),
            "Offset" => set_once(&mut self.offset, parse_u64(value, "Offset")?, "Offset"),
            EXTENSION_KEY => {
                let v = parse_u64(value, EXTENSION_KEY)?;
                // A version too large to name is simply one we do not speak.
                let v = u32::try_from(v).unwrap_or(u32::MAX);
                set_once(&mut self.extension, v, EXTENSION_KEY)
            }
            FEATURES_KEY => {
                // Features this code does not know are ignored: a newer peer lists more.
                let prefix = value.split(',').any(|f| f.trim() == PREFIX_DIGEST);
                set_once(&mut self.features, prefix, FEATURES_KEY)
            }
            MANIFEST_KEY => set_once(
                &mut self.manifest,
                TransferId(parse_u64(value, MANIFEST_KEY)?),
                MANIFEST_KEY,
            ),
            _ => Ok(()), // Unknown keys are ignored, as Jami does.
        }
    }

    fn finish(&mut self) -> Result<Header, HeaderError> {
        let content_length = self
            .content_length
            .ok_or(HeaderError::MissingContentLength)?;
        let offset = self.offset.unwrap_or(0);
        if offset > content_length {
            return Err(HeaderError::OffsetBeyondSize {
                offset,
                content_length,
            });
        }
        Ok(Header {
            content_length,
            display_name: self.display_name.take().unwrap_or_default(),
            offset,
            extension: self.extension,
            prefix_digest: self.features.unwrap_or(false),
            // Meaningful only in the framed form, which is the only form that writes it.
            manifest: self.extension.and(self.manifest),
        })
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), HeaderError> {
    if slot.is_some() {
        return Err(HeaderError::Duplicate(name));
    }
    *slot = Some(value);
    Ok(())
}

/// A plain decimal: digits only (no sign, no spaces inside), fitting a `u64`.
fn parse_u64(value: &str, name: &'static str) -> Result<u64, HeaderError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HeaderError::NotANumber(name));
    }
    value.parse().map_err(|_| HeaderError::NotANumber(name))
}
