//! The manifest on its channel: one line naming its length, then that many bytes of JSON.
//!
//! ```text
//! FERRY-MANIFEST 1 <length of what follows>\n
//! {"entries":[{"path":"trip/a.txt","kind":"file","id":"42","size":5},{"path":"trip/empty","kind":"folder"}]}\n
//! ```
//!
//! The receiver answers with a transfer reply: `GO\n` (accepted as a whole) or `NGO\n`.
//! The length comes first so that a receiver refuses an oversized manifest before buffering
//! it, and knows where it ends without parsing JSON as it arrives.

use std::fmt;

use bytes::{Bytes, BytesMut};
use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::{Entry, EntryKind, MAX_ENTRIES, MAX_MANIFEST, Manifest, ManifestError, RelPath};
use crate::transfer::TransferId;

/// The first line's fixed start; the version and the length follow.
const START: &str = "FERRY-MANIFEST";
/// The version of the manifest's form this code writes and reads.
pub const VERSION: u32 = 1;
/// Longest first line we wait for, its LF included.
const MAX_START: usize = 48;

#[derive(Serialize, Deserialize)]
struct WireManifest {
    #[serde(deserialize_with = "bounded_entries")]
    entries: Vec<WireEntry>,
}

/// One entry as sent. Unknown fields are ignored, so that a later form (a queue for devices
/// that were offline, say) can add some that this one passes over.
#[derive(Serialize, Deserialize)]
struct WireEntry {
    path: String,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
}

/// Reads the entries' array, refusing it past [`MAX_ENTRIES`] before it holds more.
fn bounded_entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<WireEntry>, D::Error> {
    struct Bounded;
    impl<'de> Visitor<'de> for Bounded {
        type Value = Vec<WireEntry>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "at most {MAX_ENTRIES} entries")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(entry) = seq.next_element()? {
                if out.len() == MAX_ENTRIES {
                    return Err(serde::de::Error::custom(TOO_MANY));
                }
                out.push(entry);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded)
}

/// The marker by which the bounded reader's error is told from other JSON errors.
const TOO_MANY: &str = "too many entries";

impl Manifest {
    /// The manifest's exact bytes on its channel.
    pub fn encode(&self) -> Bytes {
        let wire = WireManifest {
            entries: self
                .entries
                .iter()
                .map(|e| match e.kind {
                    EntryKind::File { id, size } => WireEntry {
                        path: e.path.to_string(),
                        kind: "file".into(),
                        id: Some(id.to_string()),
                        size: Some(size),
                    },
                    EntryKind::Folder => WireEntry {
                        path: e.path.to_string(),
                        kind: "folder".into(),
                        id: None,
                        size: None,
                    },
                })
                .collect(),
        };
        let mut json = serde_json::to_vec(&wire).unwrap_or_default();
        json.push(b'\n');
        let mut out = format!("{START} {VERSION} {}\n", json.len()).into_bytes();
        out.extend_from_slice(&json);
        Bytes::from(out)
    }

    /// Reads a manifest's JSON (without its first line) and checks it.
    pub fn from_json(json: &[u8]) -> Result<Manifest, ManifestError> {
        if json.len() > MAX_MANIFEST {
            return Err(ManifestError::TooLong);
        }
        let wire: WireManifest = serde_json::from_slice(json).map_err(|e| {
            if e.to_string().starts_with(TOO_MANY) {
                ManifestError::TooManyEntries
            } else {
                ManifestError::Malformed(e.to_string())
            }
        })?;
        let entries = wire
            .entries
            .into_iter()
            .map(entry)
            .collect::<Result<Vec<_>, _>>()?;
        Manifest::new(entries)
    }
}

fn entry(w: WireEntry) -> Result<Entry, ManifestError> {
    let path = RelPath::parse(&w.path)?;
    let kind = match (w.kind.as_str(), w.id, w.size) {
        ("file", Some(id), Some(size)) => EntryKind::File {
            id: parse_id(&id).ok_or(ManifestError::BadId(id))?,
            size,
        },
        ("folder", None, None) => EntryKind::Folder,
        (kind, ..) => {
            return Err(ManifestError::Malformed(format!(
                "entry {:?}: kind {kind:?} with the wrong fields",
                w.path
            )));
        }
    };
    Ok(Entry { path, kind })
}

/// A transfer id as written: decimal digits only, non-zero, a `u64`.
fn parse_id(s: &str) -> Option<TransferId> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
        return None;
    }
    s.parse().ok().map(TransferId)
}

/// Reads a manifest from its channel, split at any byte.
#[derive(Debug, Default)]
pub struct ManifestParser {
    buf: BytesMut,
    length: Option<usize>,
    done: bool,
}

impl ManifestParser {
    /// A parser waiting for the first line.
    pub fn new() -> ManifestParser {
        ManifestParser::default()
    }

    /// Feeds bytes; gives the manifest once whole. Refused: a bad first line, a length over
    /// [`MAX_MANIFEST`] (before buffering it), JSON that is not a valid manifest, and any byte
    /// after it (the sender waits for the answer).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Manifest>, ManifestError> {
        if self.done {
            return if bytes.is_empty() {
                Ok(None)
            } else {
                Err(ManifestError::TrailingBytes)
            };
        }
        self.buf.extend_from_slice(bytes);
        let length = match self.length {
            Some(n) => n,
            None => {
                let Some(lf) = self.buf.iter().position(|&b| b == b'\n') else {
                    return if self.buf.len() >= MAX_START {
                        Err(ManifestError::BadStart)
                    } else {
                        Ok(None)
                    };
                };
                if lf >= MAX_START {
                    return Err(ManifestError::BadStart);
                }
                let line = self.buf.split_to(lf + 1);
                let n = start_line(&line[..lf])?;
                self.length = Some(n);
                n
            }
        };
        if self.buf.len() < length {
            return Ok(None);
        }
        if self.buf.len() > length {
            return Err(ManifestError::TrailingBytes);
        }
        self.done = true;
        let json = std::mem::take(&mut self.buf);
        Manifest::from_json(&json).map(Some)
    }
}

/// `FERRY-MANIFEST 1 <length>`: the length, if the line is that and the length is in bounds.
fn start_line(line: &[u8]) -> Result<usize, ManifestError> {
    let line = std::str::from_utf8(line).map_err(|_| ManifestError::BadStart)?;
    let mut words = line.split(' ');
    let (Some(START), Some(version), Some(length), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(ManifestError::BadStart);
    };
    if version != VERSION.to_string()
        || length.is_empty()
        || !length.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ManifestError::BadStart);
    }
    let n: usize = length.parse().map_err(|_| ManifestError::TooLong)?;
    if n > MAX_MANIFEST {
        return Err(ManifestError::TooLong);
    }
    Ok(n)
}
