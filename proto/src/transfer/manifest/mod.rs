//! The manifest (the `manifest` feature, `PROTOCOL.md` §14): several files and folders sent
//! as one offer that the receiver accepts or refuses as a whole.
//!
//! A manifest lists every entry of a send: its path relative to the receive folder, and for
//! a file its size and the transfer id under which it will come (its own channel, record,
//! digest and resume offset, exactly as a single file's). It travels first, on a channel of
//! its own; each file then goes as an ordinary transfer (§1–§4) whose header names the
//! manifest, and the receiver takes it without asking because the manifest was accepted.
//!
//! Every path is checked here, before anything touches a disk: no absolute path, no `.` or
//! `..`, no empty component, each component made safe as a `Display-Name` is
//! ([`SafeName`](super::SafeName)), bounded length and depth, no two entries at one path (after
//! sanitising), no entry below a file, no transfer id used twice. A manifest that breaks any
//! rule is refused whole, so a hostile one leaves nothing behind.
//!
//! [`wire`] is the codec; [`ManifestOffer`] and [`ManifestIntake`] run its channel on either
//! side; [`Claims`] checks the files that come under an accepted manifest.

mod claims;
mod offer;
mod path;
pub mod wire;

use std::collections::{BTreeMap, BTreeSet};

pub use claims::{ClaimError, Claims};
pub use offer::{
    CANCELLED, ChannelOutput, DECLINED, IntakeState, ManifestIntake, ManifestOffer, OfferState,
    Refusal,
};
pub use path::RelPath;

use super::TransferId;

/// The feature name, in a device's announcement (`PROTOCOL.md` §9.1) and in a manifest
/// file's `Ferry-Features`.
pub const MANIFEST: &str = "manifest";
/// The channel name of a manifest: this prefix and the manifest's id in decimal.
pub const CHANNEL_PREFIX: &str = "file-manifest://";
/// The header key by which a file names the manifest it belongs to (its id, decimal).
pub const MANIFEST_KEY: &str = "Ferry-Manifest";
/// Most entries in one manifest (files and folders).
pub const MAX_ENTRIES: usize = 65_536;
/// Most bytes of one manifest's JSON.
pub const MAX_MANIFEST: usize = 8 * 1024 * 1024;
/// Longest path of one entry as sent, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;
/// Most components in one entry's path.
pub const MAX_DEPTH: usize = 64;

/// Where a file of an accepted manifest goes on the receiving side
/// ([`FileOp::OpenPartial`](crate::io::FileOp::OpenPartial)'s `place`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The manifest: the sender's account and the manifest's id (what
    /// [`FileOp::MakeTree`](crate::io::FileOp::MakeTree) made its tree under).
    pub manifest: super::PartialKey,
    /// The file's path in the manifest.
    pub path: RelPath,
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file, sent as its own transfer.
    File {
        /// The transfer id it comes under (its channel `file-transfer://<id>`).
        id: TransferId,
        /// Its size in bytes.
        size: u64,
    },
    /// A folder, created even if nothing is sent into it (an empty folder is kept).
    Folder,
}

/// One entry of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where it goes, relative to the receive folder.
    pub path: RelPath,
    /// A file or a folder.
    pub kind: EntryKind,
}

/// Why a manifest was refused. Each names the rule it broke; the receiver answers `NGO` and
/// creates nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The first line is not `FERRY-MANIFEST 1 <length>`.
    #[error("the manifest does not start with its FERRY-MANIFEST line")]
    BadStart,
    /// The announced or sent length is over [`MAX_MANIFEST`].
    #[error("the manifest is longer than {MAX_MANIFEST} bytes")]
    TooLong,
    /// The JSON is not a manifest.
    #[error("the manifest is not the JSON expected: {0}")]
    Malformed(String),
    /// Bytes came after the manifest before the answer.
    #[error("bytes after the manifest")]
    TrailingBytes,
    /// The manifest lists nothing.
    #[error("the manifest lists nothing")]
    Empty,
    /// More than [`MAX_ENTRIES`] entries.
    #[error("the manifest lists more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// A path starts with `/` (or `\`).
    #[error("entry {0:?} is an absolute path")]
    Absolute(String),
    /// A path has a `.` or `..` component.
    #[error("entry {0:?} has a '.' or '..' component")]
    DotComponent(String),
    /// A path has an empty component (`a//b`, a trailing `/`, or nothing at all).
    #[error("entry {0:?} has an empty component")]
    EmptyComponent(String),
    /// A component is empty or reserved once made safe.
    #[error("entry {0:?} has a component that is not a usable name")]
    BadComponent(String),
    /// A path is longer than [`MAX_PATH_BYTES`].
    #[error("an entry's path is longer than {MAX_PATH_BYTES} bytes")]
    PathTooLong,
    /// A path has more than [`MAX_DEPTH`] components.
    #[error("entry {0:?} is more than {MAX_DEPTH} folders deep")]
    TooDeep(String),
    /// Two entries at one path (as sent, or once made safe).
    #[error("two entries at {0:?}")]
    DuplicatePath(String),
    /// An entry lies below a file.
    #[error("entry {0:?} lies below a file")]
    BelowFile(String),
    /// Two files under one transfer id, or an id that is not a decimal non-zero `u64`.
    #[error("transfer id {0} is used twice or is not a valid id")]
    BadId(String),
    /// The sizes add up to more than a `u64`.
    #[error("the sizes add up to more than 2^64 bytes")]
    TooLarge,
}

/// A checked manifest: every path safe, every id unique, every bound kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<Entry>,
    by_id: BTreeMap<TransferId, usize>,
    total: u64,
}

impl Manifest {
    /// Checks entries (from the sender's tree or from the wire) against every rule.
    pub fn new(entries: Vec<Entry>) -> Result<Manifest, ManifestError> {
        if entries.is_empty() {
            return Err(ManifestError::Empty);
        }
        if entries.len() > MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries);
        }
        let mut by_id = BTreeMap::new();
        let mut total = 0u64;
        let mut paths = BTreeSet::new();
        let mut files = BTreeSet::new();
        for (i, entry) in entries.iter().enumerate() {
            let key = entry.path.to_string();
            if !paths.insert(key.clone()) {
                return Err(ManifestError::DuplicatePath(key));
            }
            if let EntryKind::File { id, size } = entry.kind {
                if id.0 == 0 || by_id.insert(id, i).is_some() {
                    return Err(ManifestError::BadId(id.to_string()));
                }
                total = total.checked_add(size).ok_or(ManifestError::TooLarge)?;
                files.insert(key);
            }
        }
        // No entry may lie below a file: its folder could not be made.
        for entry in &entries {
            if entry.path.ancestors().any(|a| files.contains(&a)) {
                return Err(ManifestError::BelowFile(entry.path.to_string()));
            }
        }
        Ok(Manifest {
            entries,
            by_id,
            total,
        })
    }

    /// Every entry, in the sender's order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The number of files (folders not counted).
    pub fn file_count(&self) -> usize {
        self.by_id.len()
    }

    /// The sum of the files' sizes.
    pub fn total_size(&self) -> u64 {
        self.total
    }

    /// The file sent under `id`, if the manifest lists one.
    pub fn file(&self, id: TransferId) -> Option<&Entry> {
        self.by_id.get(&id).map(|&i| &self.entries[i])
    }

    /// The distinct top-level names, in order, at most `n` of them: what an offer shows
    /// before it is accepted, and what the receiver's `name (1)` rule applies to.
    pub fn top_names(&self, n: usize) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.entries
            .iter()
            .map(|e| e.path.top())
            .filter(|t| seen.insert(*t))
            .take(n)
            .collect()
    }
}

#[cfg(test)]
mod tests;
