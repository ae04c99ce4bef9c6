//! The sender's side of a manifest (`PROTOCOL.md` §14): the files and folders named on the
//! command line, walked into a [`Manifest`] with one transfer id per file and the source path
//! of each.
//!
//! A path named by the user is taken as it is, a symlink too (the user chose it). Inside a
//! folder a symlink is **not** followed, unless `follow_links` is set: it is left out and
//! listed in [`SentTree::skipped`], so the command can say so; a link to a folder that holds
//! it (a loop) is left out even then. FIFOs, sockets and devices are left out the same way:
//! only their bytes could be sent, and reading a FIFO may never end. Folders are walked in
//! name order, so one tree gives one manifest. Names are made safe as the receiver will make
//! them ([`RelPath::from_components`]); a name that is not UTF-8 is sent with `U+FFFD` in
//! place of its bad bytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use ferry_proto::transfer::TransferId;
use ferry_proto::transfer::manifest::{
    Entry, EntryKind, MAX_ENTRIES, Manifest, ManifestError, RelPath,
};

/// Why an entry of a folder was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SkipReason {
    /// A symlink, not followed (without `follow_links`).
    Symlink,
    /// A symlink to a folder that holds it: following it would never end.
    Loop,
    /// A FIFO, a socket or a device.
    Special,
}

/// An entry left out of the manifest, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its path on this disk.
    pub path: PathBuf,
    /// Why.
    pub why: SkipReason,
}

/// The files and folders to send, walked.
#[derive(Debug, Clone)]
pub struct SentTree {
    /// The manifest: every entry, each file with its id.
    pub manifest: Manifest,
    /// Each file's source path, by its id.
    pub sources: BTreeMap<TransferId, PathBuf>,
    /// What was left out, in the order met.
    pub skipped: Vec<Skipped>,
}

/// Why the paths could not be walked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TreeError {
    /// A path could not be read.
    #[error("{}: {error}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// A path named on the command line is neither a file nor a folder.
    #[error("{} is neither a file nor a folder", .0.display())]
    NotAFileOrFolder(PathBuf),
    /// The entries break a rule of the manifest (too many, two with one name, too deep…).
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Walks `paths` into a manifest; `new_id` gives each file its transfer id (non-zero, each
/// different: the caller's records may give an earlier send's ids again).
pub fn walk(
    paths: &[PathBuf],
    follow_links: bool,
    mut new_id: impl FnMut(&Path) -> TransferId,
) -> Result<SentTree, TreeError> {
    let mut walk = Walk {
        follow_links,
        entries: Vec::new(),
        sources: BTreeMap::new(),
        skipped: Vec::new(),
    };
    for path in paths {
        let meta = fs::metadata(path).map_err(|e| TreeError::Io {
            path: path.clone(),
            error: e,
        })?;
        let name = top_name(path)?;
        if meta.is_file() {
            walk.file(vec![name], path, meta.len(), &mut new_id)?;
        } else if meta.is_dir() {
            let mut ancestors = BTreeSet::new();
            walk.folder(vec![name], path, &meta, &mut ancestors, &mut new_id)?;
        } else {
            return Err(TreeError::NotAFileOrFolder(path.clone()));
        }
    }
    Ok(SentTree {
        manifest: Manifest::new(walk.entries)?,
        sources: walk.sources,
        skipped: walk.skipped,
    })
}

/// The name a path named on the command line has at the top of the manifest (`.` and `..`
/// are named after the folder they are).
fn top_name(path: &Path) -> Result<String, TreeError> {
    let named = match path.file_name() {
        Some(name) => PathBuf::from(name),
        None => fs::canonicalize(path)
            .map_err(|error| TreeError::Io {
                path: path.to_owned(),
                error,
            })?
            .file_name()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("root")),
    };
    Ok(named.to_string_lossy().into_owned())
}

struct Walk {
    follow_links: bool,
    entries: Vec<Entry>,
    sources: BTreeMap<TransferId, PathBuf>,
    skipped: Vec<Skipped>,
}

impl Walk {
    fn push(&mut self, components: &[String], kind: EntryKind) -> Result<(), TreeError> {
        if self.entries.len() == MAX_ENTRIES {
            return Err(ManifestError::TooManyEntries.into());
        }
        let path = RelPath::from_components(components.iter().map(String::as_str))?;
        self.entries.push(Entry { path, kind });
        Ok(())
    }

    fn file(
        &mut self,
        components: Vec<String>,
        source: &Path,
        size: u64,
        new_id: &mut impl FnMut(&Path) -> TransferId,
    ) -> Result<(), TreeError> {
        let id = new_id(source);
        self.push(&components, EntryKind::File { id, size })?;
        self.sources.insert(id, source.to_owned());
        Ok(())
    }

    /// Walks one folder, depth first; `ancestors` are the (device, inode) of the folders
    /// that hold it, to tell a loop when links are followed.
    fn folder(
        &mut self,
        components: Vec<String>,
        source: &Path,
        meta: &fs::Metadata,
        ancestors: &mut BTreeSet<(u64, u64)>,
        new_id: &mut impl FnMut(&Path) -> TransferId,
    ) -> Result<(), TreeError> {
        self.push(&components, EntryKind::Folder)?;
        let key = (meta.dev(), meta.ino());
        ancestors.insert(key);
        let io = |error| TreeError::Io {
            path: source.to_owned(),
            error,
        };
        let mut children: Vec<(PathBuf, String)> = fs::read_dir(source)
            .map_err(io)?
            .map(|e| e.map(|e| (e.path(), e.file_name().to_string_lossy().into_owned())))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        children.sort_by(|a, b| a.1.cmp(&b.1));
        for (path, name) in children {
            let own = fs::symlink_metadata(&path).map_err(|e| TreeError::Io {
                path: path.clone(),
                error: e,
            })?;
            let meta = if own.file_type().is_symlink() {
                if !self.follow_links {
                    self.skip(path, SkipReason::Symlink);
                    continue;
                }
                match fs::metadata(&path) {
                    Ok(meta) => meta,
                    // A link to nothing: nothing to send.
                    Err(_) => {
                        self.skip(path, SkipReason::Symlink);
                        continue;
                    }
                }
            } else {
                own
            };
            let mut child = components.clone();
            child.push(name);
            if meta.is_file() {
                self.file(child, &path, meta.len(), new_id)?;
            } else if meta.is_dir() {
                if ancestors.contains(&(meta.dev(), meta.ino())) {
                    self.skip(path, SkipReason::Loop);
                    continue;
                }
                self.folder(child, &path, &meta, ancestors, new_id)?;
            } else {
                self.skip(path, SkipReason::Special);
            }
        }
        ancestors.remove(&key);
        Ok(())
    }

    fn skip(&mut self, path: PathBuf, why: SkipReason) {
        self.skipped.push(Skipped { path, why });
    }
}

#[cfg(test)]
mod tests;
