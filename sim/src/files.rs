//! Files as a driver serves them: sources generated from a seed, and a receive folder with
//! partial files that get their final name only when committed.
//!
//! Nothing keeps file bytes: a source is a (size, seed) pair read through
//! [`content`], and a received file is its length and a running SHA3-512
//! of what was written, so a 1 GiB transfer costs no 1 GiB of memory. The price: the
//! simulated disk takes writes in order (a write may overlap what is there, never leave a
//! gap), which is how Ferry's receiver writes. A write that would leave a gap fails.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use ferry_proto::io::{FileError, FileId, FileOp, FileResult};
use ferry_proto::transfer::manifest::EntryKind;
use ferry_proto::transfer::{Digest, StreamDigest};

use crate::content;

/// A file a host can send: `size` bytes generated from `seed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Source {
    /// Length in bytes.
    pub size: u64,
    /// Seed of its contents ([`content::byte_at`]).
    pub seed: u64,
}

impl Source {
    /// The SHA3-512 of the whole file (hashes `size` bytes: costly for big files).
    pub fn digest(&self) -> Digest {
        let mut d = StreamDigest::new();
        let mut buf = vec![0; 64 * 1024];
        let mut at = 0;
        while at < self.size {
            let n = (self.size - at).min(buf.len() as u64) as usize;
            content::fill(self.seed, at, &mut buf[..n]);
            d.update(at, &buf[..n]);
            at += n as u64;
        }
        d.finish()
    }
}

/// A received file: its length and the digest of its bytes.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Bytes written.
    pub len: u64,
    digest: StreamDigest,
}

impl Stored {
    fn new() -> Stored {
        Stored {
            len: 0,
            digest: StreamDigest::new(),
        }
    }

    /// A partial file holding the first `len` bytes of `source` (a transfer to resume).
    pub fn prefix_of(source: Source, len: u64) -> Stored {
        let mut s = Stored::new();
        let mut buf = vec![0; 64 * 1024];
        while s.len < len.min(source.size) {
            let n = (len.min(source.size) - s.len).min(buf.len() as u64) as usize;
            content::fill(source.seed, s.len, &mut buf[..n]);
            s.write(s.len, &buf[..n]);
        }
        s
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> bool {
        if offset > self.len {
            return false;
        }
        self.digest.update(offset, data);
        self.len = self.len.max(offset + data.len() as u64);
        true
    }

    /// The SHA3-512 of the whole file.
    pub fn digest(&self) -> Digest {
        self.digest.clone().finish()
    }
}

/// The most one read may ask for: a read is answered with the bytes in memory, and an
/// endpoint asks only for what it can send (a window), so more is a bug worth reporting.
pub const MAX_READ: u32 = 16 * 1024 * 1024;

#[derive(Debug)]
enum Open {
    // The hasher is big; boxing it keeps every open file small.
    Source {
        source: Source,
        digest: Box<StreamDigest>,
    },
    Partial {
        /// Where its bytes are kept: the [`PartialKey`](ferry_proto::transfer::PartialKey)'s
        /// text, never the offered name.
        key: String,
        /// The final name it gets at the commit: a path below its manifest's tree for a
        /// file of a manifest.
        name: String,
    },
}

/// One host's files.
#[derive(Debug, Default)]
pub(crate) struct Files {
    pub(crate) sources: BTreeMap<String, Source>,
    open: BTreeMap<FileId, Open>,
    /// Partial files by [`PartialKey`](ferry_proto::transfer::PartialKey) (its text).
    pub(crate) partials: BTreeMap<String, Stored>,
    /// Committed files by the name they got (a path `top/…/name` for a file of a manifest).
    pub(crate) finals: BTreeMap<String, Stored>,
    /// Folders made for manifests, by path.
    pub(crate) folders: BTreeSet<String>,
    /// For each manifest whose tree was made (its key's text): the name each top-level entry
    /// got (the `name (1)` rule, applied once).
    pub(crate) trees: BTreeMap<String, BTreeMap<String, String>>,
}

impl Files {
    /// Carries out one operation. The second value explains a misuse by the endpoint (an
    /// unknown file, a read past the end of what it opened), which the world reports.
    pub(crate) fn handle(&mut self, op: FileOp) -> (FileResult, Option<String>) {
        let file = op.file();
        let fail = |error: FileError| FileResult::Failed { file, error };
        match op {
            FileOp::OpenSource { file, source } => match self.source(&source) {
                Some(s) => {
                    let len = s.size;
                    let open = Open::Source {
                        source: s,
                        digest: Box::default(),
                    };
                    if self.open.insert(file, open).is_some() {
                        return (
                            fail(FileError::Other("file id in use".into())),
                            Some(format!("file {file:?} opened twice")),
                        );
                    }
                    (FileResult::Opened { file, len }, None)
                }
                None => (fail(FileError::NotFound), None),
            },
            FileOp::OpenPartial {
                file,
                name,
                size,
                key,
                resume,
                place,
            } => {
                let name = match place {
                    None => name.as_str().to_owned(),
                    Some(place) => {
                        let tree = self.trees.get(&place.manifest.to_string());
                        let top = tree.and_then(|t| t.get(place.path.top()));
                        let Some(top) = top else {
                            return (
                                fail(FileError::NotFound),
                                Some(format!("{file:?} placed in a manifest with no tree")),
                            );
                        };
                        let rest = place.path.to_string();
                        let rest = rest.split_once('/').map_or("", |(_, r)| r);
                        match rest {
                            "" => top.clone(),
                            rest => format!("{top}/{rest}"),
                        }
                    }
                };
                let key = key.to_string();
                let partial = self.partials.entry(key.clone()).or_insert_with(Stored::new);
                if partial.len > size || !resume {
                    *partial = Stored::new();
                }
                let len = partial.len;
                if self
                    .open
                    .insert(file, Open::Partial { key, name })
                    .is_some()
                {
                    return (
                        fail(FileError::Other("file id in use".into())),
                        Some(format!("file {file:?} opened twice")),
                    );
                }
                (FileResult::Opened { file, len }, None)
            }
            FileOp::Read { file, offset, len } => match self.open.get_mut(&file) {
                Some(Open::Source { .. }) if len > MAX_READ => (
                    fail(FileError::Other("read too large".into())),
                    Some(format!(
                        "read of {len} bytes at once (the simulator serves at most {MAX_READ})"
                    )),
                ),
                Some(Open::Source { source, digest }) => {
                    if offset.saturating_add(u64::from(len)) > source.size {
                        return (fail(FileError::ShortRead), None);
                    }
                    let data = content::range(source.seed, offset, len as usize);
                    // As a runtime does: hash what passes, read later only what was skipped.
                    digest.update(offset, &data);
                    let data = Bytes::from(data);
                    (FileResult::Data { file, offset, data }, None)
                }
                Some(Open::Partial { .. }) => (
                    fail(FileError::Other(
                        "the simulated disk keeps no received bytes to read".into(),
                    )),
                    Some(format!("read of received file {file:?}")),
                ),
                None => unknown(file),
            },
            FileOp::Write { file, offset, data } => match self.open.get(&file) {
                Some(Open::Partial { key, .. }) => {
                    let partial = self.partials.entry(key.clone()).or_insert_with(Stored::new);
                    if !partial.write(offset, &data) {
                        return (
                            fail(FileError::Other("write leaves a gap".into())),
                            Some(format!(
                                "write at {offset} past the end ({}) of {key:?}",
                                partial.len
                            )),
                        );
                    }
                    let len = data.len() as u32;
                    (FileResult::Written { file, offset, len }, None)
                }
                Some(Open::Source { .. }) => (
                    fail(FileError::PermissionDenied),
                    Some(format!("write to source {file:?}")),
                ),
                None => unknown(file),
            },
            FileOp::Digest { file, len } => match self.open.get_mut(&file) {
                Some(Open::Source { source, digest }) => {
                    if len > source.size {
                        return (fail(FileError::ShortRead), None);
                    }
                    // Kept extended (not taken): a prefix's digest (`GO n <digest>`) is
                    // followed by reads from `n` and then the whole file's digest.
                    let d = &mut **digest;
                    let missing = d.missing(len);
                    let mut buf = vec![0; 64 * 1024];
                    let mut at = missing.start;
                    while at < missing.end {
                        let n = (missing.end - at).min(buf.len() as u64) as usize;
                        content::fill(source.seed, at, &mut buf[..n]);
                        d.update(at, &buf[..n]);
                        at += n as u64;
                    }
                    (
                        FileResult::Digest {
                            file,
                            digest: d.clone().finish(),
                        },
                        None,
                    )
                }
                Some(Open::Partial { key, .. }) => match self.partials.get(key) {
                    Some(p) if p.len == len => (
                        FileResult::Digest {
                            file,
                            digest: p.digest(),
                        },
                        None,
                    ),
                    Some(p) => (
                        fail(FileError::ShortRead),
                        (len > p.len).then(|| {
                            format!("digest of {len} bytes of {key:?} which holds {}", p.len)
                        }),
                    ),
                    None => (fail(FileError::NotFound), None),
                },
                None => unknown(file),
            },
            FileOp::Commit { file } => match self.open.remove(&file) {
                Some(Open::Partial { key, name }) => {
                    let stored = self.partials.remove(&key).unwrap_or_else(Stored::new);
                    // Never replace a file: take the first free "name (n)".
                    let mut final_name = name.clone();
                    let mut n = 1;
                    while self.finals.contains_key(&final_name)
                        || self.folders.contains(&final_name)
                    {
                        final_name = format!("{name} ({n})");
                        n += 1;
                    }
                    self.finals.insert(final_name.clone(), stored);
                    (
                        FileResult::Committed {
                            file,
                            name: final_name,
                        },
                        None,
                    )
                }
                Some(other) => {
                    self.open.insert(file, other);
                    (
                        fail(FileError::PermissionDenied),
                        Some(format!("commit of source {file:?}")),
                    )
                }
                None => unknown(file),
            },
            FileOp::MakeTree {
                file,
                key,
                manifest,
            } => {
                // A file at the top takes its free name when it is committed, as a single
                // file does; a folder at the top takes one now, for the whole tree below it.
                let top_files: BTreeSet<String> = manifest
                    .entries()
                    .iter()
                    .filter(|e| e.path.components().len() == 1)
                    .filter(|e| !matches!(e.kind, EntryKind::Folder))
                    .map(|e| e.path.to_string())
                    .collect();
                // The same manifest again (a send taken up again): the names it got then,
                // as the driver keeps them with (sender, mid).
                let known = self.trees.get(&key.to_string()).cloned();
                let mut tops = known.clone().unwrap_or_default();
                for top in manifest.top_names(usize::MAX) {
                    if let Some(got) = known.as_ref().and_then(|k| k.get(top)) {
                        if !top_files.contains(top) {
                            self.folders.insert(got.clone());
                        }
                        continue;
                    }
                    let mut got = top.to_owned();
                    if !top_files.contains(top) {
                        let mut n = 1;
                        while self.name_taken(&got) {
                            got = format!("{top} ({n})");
                            n += 1;
                        }
                        self.folders.insert(got.clone());
                    }
                    tops.insert(top.to_owned(), got);
                }
                for entry in manifest.entries() {
                    let path = entry.path.to_string();
                    let mut parts: Vec<&str> = path.split('/').collect();
                    if !matches!(entry.kind, EntryKind::Folder) {
                        parts.pop();
                    }
                    let mut folder = String::new();
                    for (i, part) in parts.iter().enumerate() {
                        folder = match i {
                            0 => tops[*part].clone(),
                            _ => format!("{folder}/{part}"),
                        };
                        self.folders.insert(folder.clone());
                    }
                }
                self.trees.insert(key.to_string(), tops);
                (FileResult::TreeMade { file }, None)
            }
            FileOp::ForgetTree { file, key } => {
                self.trees.remove(&key.to_string());
                (FileResult::Closed { file }, None)
            }
            FileOp::Discard { file } => match self.open.remove(&file) {
                Some(Open::Partial { key, .. }) => {
                    self.partials.remove(&key);
                    (FileResult::Closed { file }, None)
                }
                Some(Open::Source { .. }) => (
                    FileResult::Closed { file },
                    Some(format!("discard of source {file:?}")),
                ),
                None => unknown(file),
            },
            FileOp::Close { file } => match self.open.remove(&file) {
                Some(_) => (FileResult::Closed { file }, None),
                None => unknown(file),
            },
            FileOp::Truncate { file } => match self.open.get(&file) {
                Some(Open::Partial { key, .. }) => {
                    self.partials.insert(key.clone(), Stored::new());
                    (FileResult::Opened { file, len: 0 }, None)
                }
                Some(Open::Source { .. }) => (
                    fail(FileError::PermissionDenied),
                    Some(format!("truncate of source {file:?}")),
                ),
                None => unknown(file),
            },
            other => (
                fail(FileError::Other("unsupported".into())),
                Some(format!("unsupported {other:?}")),
            ),
        }
    }

    /// Whether a committed file or a made folder has this name, or lies below it.
    fn name_taken(&self, name: &str) -> bool {
        let below = format!("{name}/");
        self.folders.contains(name)
            || self.finals.contains_key(name)
            || self.finals.keys().any(|k| k.starts_with(&below))
    }

    /// A source by the name the host was given it, or, for a name `seed:<seed>:<len>`, the
    /// file generated from that seed (the convention every Ferry test driver shares).
    fn source(&self, name: &str) -> Option<Source> {
        if let Some(s) = self.sources.get(name) {
            return Some(*s);
        }
        let mut parts = name.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("seed"), Some(seed), Some(size), None) => Some(Source {
                size: size.parse().ok()?,
                seed: seed.parse().ok()?,
            }),
            _ => None,
        }
    }

    /// Open files (a leak check for tests).
    /// Every open file is closed, as when its process dies: data written stays where it
    /// was written (partial data under its key), nothing is committed.
    pub(crate) fn close_all(&mut self) {
        self.open.clear();
    }

    pub(crate) fn open_count(&self) -> usize {
        self.open.len()
    }
}

fn unknown(file: FileId) -> (FileResult, Option<String>) {
    (
        FileResult::Failed {
            file,
            error: FileError::NotFound,
        },
        Some(format!("operation on file {file:?}, which is not open")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::transfer::{PartialKey, SafeName, TransferId};

    /// Partial data of transfer `id` from an unknown sender.
    fn key(id: u64) -> PartialKey {
        PartialKey {
            sender: None,
            transfer: TransferId(id),
        }
    }

    #[test]
    fn a_received_file_hashes_like_its_source_and_commits_under_a_free_name() {
        let source = Source {
            size: 100_000,
            seed: 9,
        };
        let mut files = Files::default();
        files.finals.insert("a.bin".into(), Stored::new());
        let name = SafeName::from_display_name("a.bin").expect("a name");
        let (r, _) = files.handle(FileOp::OpenPartial {
            file: FileId(1),
            name,
            size: source.size,
            key: key(1),
            resume: true,
            place: None,
        });
        assert_eq!(
            r,
            FileResult::Opened {
                file: FileId(1),
                len: 0
            }
        );
        let mut at = 0;
        while at < source.size {
            let n = 30_000.min(source.size - at) as usize;
            let data = Bytes::from(content::range(source.seed, at, n));
            let (r, bad) = files.handle(FileOp::Write {
                file: FileId(1),
                offset: at,
                data,
            });
            assert!(matches!(r, FileResult::Written { .. }) && bad.is_none());
            at += n as u64;
        }
        let (r, _) = files.handle(FileOp::Digest {
            file: FileId(1),
            len: source.size,
        });
        assert_eq!(
            r,
            FileResult::Digest {
                file: FileId(1),
                digest: source.digest()
            }
        );
        let (r, _) = files.handle(FileOp::Commit { file: FileId(1) });
        assert_eq!(
            r,
            FileResult::Committed {
                file: FileId(1),
                name: "a.bin (1)".into()
            }
        );
        assert!(files.partials.is_empty());
    }

    #[test]
    fn gaps_and_unknown_files_fail_and_are_reported() {
        let mut files = Files::default();
        let name = SafeName::from_display_name("b").expect("a name");
        files.handle(FileOp::OpenPartial {
            file: FileId(1),
            name,
            size: 10,
            key: key(1),
            resume: true,
            place: None,
        });
        let (r, bad) = files.handle(FileOp::Write {
            file: FileId(1),
            offset: 5,
            data: Bytes::from_static(b"x"),
        });
        assert!(matches!(r, FileResult::Failed { .. }) && bad.is_some());
        let (r, bad) = files.handle(FileOp::Close { file: FileId(7) });
        assert!(
            matches!(
                r,
                FileResult::Failed {
                    error: FileError::NotFound,
                    ..
                }
            ) && bad.is_some()
        );
    }

    #[test]
    fn a_partial_longer_than_the_file_starts_over_and_a_prefix_resumes() {
        let source = Source {
            size: 1000,
            seed: 3,
        };
        let mut files = Files::default();
        files
            .partials
            .insert(key(1).to_string(), Stored::prefix_of(source, 400));
        let name = SafeName::from_display_name("c").expect("a name");
        let (r, _) = files.handle(FileOp::OpenPartial {
            file: FileId(2),
            name: name.clone(),
            size: 1000,
            key: key(1),
            resume: true,
            place: None,
        });
        assert_eq!(
            r,
            FileResult::Opened {
                file: FileId(2),
                len: 400
            }
        );
        files.handle(FileOp::Close { file: FileId(2) });
        let (r, _) = files.handle(FileOp::OpenPartial {
            file: FileId(3),
            name,
            size: 10,
            key: key(1),
            resume: true,
            place: None,
        });
        assert_eq!(
            r,
            FileResult::Opened {
                file: FileId(3),
                len: 0
            }
        );
    }

    #[test]
    fn partial_data_is_found_by_its_key_and_a_raw_form_open_starts_at_zero() {
        let source = Source {
            size: 1000,
            seed: 4,
        };
        let mut files = Files::default();
        files
            .partials
            .insert(key(1).to_string(), Stored::prefix_of(source, 400));
        let name = SafeName::from_display_name("same.bin").expect("a name");
        let open = |files: &mut Files, file, key, resume| {
            files.handle(FileOp::OpenPartial {
                file: FileId(file),
                name: name.clone(),
                size: 1000,
                key,
                resume,
                place: None,
            })
        };
        // Another transfer of the same name finds nothing of the first's.
        let (r, _) = open(&mut files, 2, key(2), true);
        assert_eq!(
            r,
            FileResult::Opened {
                file: FileId(2),
                len: 0
            }
        );
        files.handle(FileOp::Close { file: FileId(2) });
        assert_eq!(files.partials[&key(1).to_string()].len, 400);
        // The same key without resume (a raw-form peer) empties what is held.
        let (r, _) = open(&mut files, 3, key(1), false);
        assert_eq!(
            r,
            FileResult::Opened {
                file: FileId(3),
                len: 0
            }
        );
    }
}
