//! Real files for the [`FileOp`]s a core asks for: sources anywhere the application points,
//! partial and final files inside one receive folder.
//!
//! [`FileService`] answers each operation synchronously with std::fs; [`FileThread`] runs it
//! on a small pool of threads of its own (each file pinned to one), so that reading, writing
//! and above all hashing never wait behind (or hold up) the event loop that runs TLS, and
//! several transfers use several cores.
//!
//! - A partial file is `<sender account>-<transfer id>.ferry-part` ([`PartialKey`]) in the
//!   private folder inside the receive folder, never named after the offered name,
//!   opened and checked as [`ReceiveFolder`] says (no symlink followed, a regular file of this
//!   user with one link, mode 0600, free space checked); only [`FileOp::Commit`] gives it its
//!   final name, after an fsync, by a hard link from its open descriptor that fails rather than
//!   replace an existing file (then `name (1).ext`, `name (2).ext`, …), so a crash never leaves
//!   a half-written file under a final name and nothing is ever overwritten.
//! - Each open file carries a [`StreamDigest`] fed by its reads and writes. A partial file
//!   opened with a prefix already on disk has that prefix hashed once, when it opens; a source
//!   is hashed from its start as soon as it opens, between operations (module `prehash`), so that
//!   a resumed send has its prefix's digest (nearly) ready when the peer's `GO n` comes, while
//!   the peer hashed its own part at the same time. The reads and writes that follow extend
//!   the digest, so each byte is hashed once, and [`FileOp::Digest`] reads only bytes it
//!   never saw (or, for a prefix the pass went past, from the nearest state it kept).
//! - Two open operations on the same partial file are refused, on whichever workers they
//!   run: two transfers writing one file would only corrupt it.

mod failure;
mod io;
mod names;
mod prehash;
#[cfg(test)]
mod tests;
mod thread;
mod trees;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use ferry_proto::io::{FileError, FileId, FileOp, FileResult};
use ferry_proto::transfer::{PartialKey, SafeName, StreamDigest};

use crate::buffers::BufferPool;
use crate::receive_folder::{Durable, ReceiveFolder};
use failure::Failure;
use io::{hash_from_disk, read_at, write_all_at};
use names::{partial_name, variant};
use prehash::{CHECKPOINT_EVERY, Prehash, digest_of_prefix};
use trees::Trees;

pub use names::PARTIAL_SUFFIX;
pub use thread::{COMMIT_BATCH, COMMIT_WAIT, FileThread, MAX_WORKERS};
pub use trees::{MAX_TREES, keeps_tree};

/// Most " (n)" variants tried before a commit gives up.
const MAX_VARIANTS: u32 = 10_000;

struct OpenFile {
    file: File,
    /// For a partial file: where it is and the final name it is meant to get.
    partial: Option<Partial>,
    digest: StreamDigest,
    /// For a source: its digest computed ahead of the reads.
    prehash: Option<Prehash>,
}

/// An open partial file's place: the verified folders, its name in the private one, and the
/// final name it is meant to get.
struct Partial {
    folder: ReceiveFolder,
    key: String,
    name: SafeName,
    /// For a file of a manifest: the folders it goes in, below the receive folder.
    within: Vec<String>,
}

/// Performs [`FileOp`]s on real files. One answer per operation, in order.
pub struct FileService {
    folder: PathBuf,
    open: BTreeMap<FileId, OpenFile>,
    /// Buffers for [`FileOp::Read`]: the data goes on in them, and they come back (their
    /// bytes still initialised, so nothing is zeroed again) once the core has sent it.
    buffers: Arc<BufferPool>,
    /// The partial files open in this service and its [`sibling`](Self::sibling)s, by name:
    /// one partial file is never open twice, whichever worker holds it.
    partials: Arc<Mutex<BTreeSet<String>>>,
    /// How far apart a source's kept digest states are ([`prehash`]).
    checkpoint_every: u64,
    /// The folders made for manifests, shared with the siblings.
    trees: Trees,
}

impl std::fmt::Debug for FileService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileService")
            .field("folder", &self.folder)
            .field("open", &self.open.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FileService {
    /// Files received go to `receive_folder`, which must exist.
    pub fn new(receive_folder: impl Into<PathBuf>) -> FileService {
        FileService {
            folder: receive_folder.into(),
            open: BTreeMap::new(),
            buffers: BufferPool::new(ferry_proto::transfer::frame::MAX_DATA),
            partials: Arc::default(),
            checkpoint_every: CHECKPOINT_EVERY,
            trees: Trees::default(),
        }
    }

    /// A service for another worker: the same receive folder, buffers and partial files,
    /// none of this one's open files.
    pub fn sibling(&self) -> FileService {
        FileService {
            folder: self.folder.clone(),
            open: BTreeMap::new(),
            buffers: self.buffers.clone(),
            partials: self.partials.clone(),
            checkpoint_every: self.checkpoint_every,
            trees: self.trees.clone(),
        }
    }

    /// The same service keeping a source's digest states `every` bytes apart (tests use small
    /// files).
    #[cfg(test)]
    fn with_checkpoint_every(mut self, every: u64) -> FileService {
        self.checkpoint_every = every;
        self
    }

    /// Whether a source is being hashed ahead of its reads: [`prehash_step`](Self::prehash_step)
    /// has work to do.
    pub fn prehashing(&self) -> bool {
        self.open
            .values()
            .any(|o| o.prehash.as_ref().is_some_and(Prehash::is_active))
    }

    /// Hashes one more chunk of a source ahead of its reads (one megabyte at most, so that
    /// the next operation waits for little): the file thread calls it while no operation
    /// waits.
    pub fn prehash_step(&mut self) {
        let Some(open) = self
            .open
            .values_mut()
            .find(|o| o.prehash.as_ref().is_some_and(Prehash::is_active))
        else {
            return;
        };
        if let Some(pass) = open.prehash.as_mut() {
            pass.step(&open.file, &mut open.digest);
        }
    }

    fn partials(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.partials.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The receive folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The path of the partial file kept under `key` (inside the private folder
    /// [`PRIVATE_FOLDER`](crate::receive_folder::PRIVATE_FOLDER), mode 0700).
    pub fn partial_path(&self, key: &PartialKey) -> PathBuf {
        ReceiveFolder::partial_path(&self.folder, &partial_name(key))
    }

    /// Carries out one operation.
    pub fn perform(&mut self, op: FileOp) -> FileResult {
        let file = op.file();
        let result = match op {
            FileOp::OpenSource { source, .. } => self.open_source(file, Path::new(&source)),
            FileOp::OpenPartial {
                name,
                size,
                key,
                resume,
                place,
                ..
            } => match place.map(|p| self.trees.place(&p.manifest, &p.path)) {
                Some(Err(e)) => Err(e),
                within => {
                    let within = within.and_then(Result::ok).unwrap_or_default();
                    self.open_partial(file, name, size, &key, resume, within)
                }
            },
            FileOp::MakeTree { key, manifest, .. } => self.make_tree(file, &key, &manifest),
            FileOp::Read { offset, len, .. } => self.read(file, offset, len),
            FileOp::Write { offset, data, .. } => self.write(file, offset, data),
            FileOp::Digest { len, .. } => self.digest(file, len),
            FileOp::Commit { .. } => self.commit(file),
            FileOp::ForgetTree { key, .. } => self.forget_tree(file, &key),
            FileOp::Discard { .. } => self.close(file, true),
            FileOp::Close { .. } => self.close(file, false),
            FileOp::Truncate { .. } => self.truncate(file),
            // A newer core's operation: answered, so the core never waits for it.
            _ => Err(Failure::Unknown),
        };
        result.unwrap_or_else(|failure| FileResult::Failed {
            file,
            error: failure.into(),
        })
    }

    fn open_source(&mut self, file: FileId, path: &Path) -> Result<FileResult, Failure> {
        self.check_free(file)?;
        let handle = File::open(path)?;
        let meta = handle.metadata()?;
        if !meta.is_file() {
            return Err(Failure::NotAFile);
        }
        self.insert(file, handle, None, StreamDigest::new())?;
        let every = self.checkpoint_every;
        if let Ok(open) = self.get(file) {
            open.prehash = Some(Prehash::new(meta.len(), every));
        }
        Ok(FileResult::Opened {
            file,
            len: meta.len(),
        })
    }

    fn open_partial(
        &mut self,
        file: FileId,
        name: SafeName,
        size: u64,
        key: &PartialKey,
        resume: bool,
        within: Vec<String>,
    ) -> Result<FileResult, Failure> {
        self.check_free(file)?;
        let key = partial_name(key);
        // Claimed before it opens, so that no other worker opens it meanwhile.
        if !self.partials().insert(key.clone()) {
            return Err(Failure::Busy);
        }
        let opened = self.open_claimed(file, name, size, key.clone(), resume, within);
        if opened.is_err() {
            self.partials().remove(&key);
        }
        opened
    }

    fn open_claimed(
        &mut self,
        file: FileId,
        name: SafeName,
        size: u64,
        key: String,
        resume: bool,
        within: Vec<String>,
    ) -> Result<FileResult, Failure> {
        let folder = ReceiveFolder::open(&self.folder)?;
        let (handle, len) = folder.open_partial(&key, size, resume)?;
        // Hash the prefix now, once: the writes that follow start where it ends.
        let mut digest = StreamDigest::new();
        hash_from_disk(&handle, &mut digest, len)?;
        let partial = Partial {
            folder,
            key,
            name,
            within,
        };
        self.insert(file, handle, Some(partial), digest)?;
        Ok(FileResult::Opened { file, len })
    }

    fn check_free(&self, file: FileId) -> Result<(), Failure> {
        match self.open.contains_key(&file) {
            true => Err(Failure::AlreadyOpen),
            false => Ok(()),
        }
    }

    fn insert(
        &mut self,
        file: FileId,
        handle: File,
        partial: Option<Partial>,
        digest: StreamDigest,
    ) -> Result<(), Failure> {
        self.check_free(file)?;
        self.open.insert(
            file,
            OpenFile {
                file: handle,
                partial,
                digest,
                prehash: None,
            },
        );
        Ok(())
    }

    fn get(&mut self, file: FileId) -> Result<&mut OpenFile, Failure> {
        self.open.get_mut(&file).ok_or(Failure::NotOpen)
    }

    fn read(&mut self, file: FileId, offset: u64, len: u32) -> Result<FileResult, Failure> {
        let buffers = self.buffers.clone();
        let open = self.get(file)?;
        if let Some(pass) = open.prehash.as_mut() {
            pass.stop();
        }
        if offset > open.digest.hashed() {
            // A resumed send starts past the start: hash the part the peer already holds now,
            // so the reads that follow extend the digest and no byte is read twice.
            hash_from_disk(&open.file, &mut open.digest, offset)?;
        }
        let mut buf = buffers.take_filled(len as usize);
        let got = read_at(&open.file, &mut buf, offset)?;
        if got < buf.len() {
            return Err(Failure::Short);
        }
        open.digest.update(offset, &buf);
        Ok(FileResult::Data {
            file,
            offset,
            data: buffers.freeze(buf),
        })
    }

    fn write(&mut self, file: FileId, offset: u64, data: Bytes) -> Result<FileResult, Failure> {
        let open = self.get(file)?;
        if open.partial.is_none() {
            return Err(Failure::ReadOnly);
        }
        write_all_at(&open.file, &data, offset)?;
        open.digest.update(offset, &data);
        Ok(FileResult::Written {
            file,
            offset,
            len: u32::try_from(data.len()).unwrap_or(u32::MAX),
        })
    }

    fn digest(&mut self, file: FileId, len: u64) -> Result<FileResult, Failure> {
        let open = self.get(file)?;
        if let Some(pass) = open.prehash.as_mut() {
            pass.stop();
        }
        let digest = if open.digest.hashed() <= len {
            hash_from_disk(&open.file, &mut open.digest, len)?;
            open.digest.clone().finish()
        } else {
            // A digest of less than what passed through: from the nearest state kept below
            // `len` (a source hashed ahead of its reads), else from the start.
            digest_of_prefix(&open.file, open.prehash.as_ref(), len)?.finish()
        };
        Ok(FileResult::Digest { file, digest })
    }

    fn truncate(&mut self, file: FileId) -> Result<FileResult, Failure> {
        let open = self.get(file)?;
        if open.partial.is_none() {
            return Err(Failure::ReadOnly);
        }
        open.file.set_len(0)?;
        // What was hashed is gone: the writes from 0 hash the new bytes.
        open.digest = StreamDigest::new();
        Ok(FileResult::Opened { file, len: 0 })
    }

    fn commit(&mut self, file: FileId) -> Result<FileResult, Failure> {
        self.commit_as(file, Durable::Now)
    }

    /// Commits several verified files at once (`PROTOCOL.md` §14, *Durability*): one
    /// `syncfs` makes every one's bytes durable before any gets its name, and one more makes
    /// the names durable, instead of two fsyncs per file. One file alone is committed as
    /// [`FileOp::Commit`] always is (a `syncfs` would flush what others wrote, too). The
    /// results, in the order of `files`.
    pub fn commit_batch(&mut self, files: &[FileId]) -> Vec<FileResult> {
        let fail = |file: FileId, error: &FileError| FileResult::Failed {
            file,
            error: error.clone(),
        };
        if let [file] = files {
            let result = self.commit(*file).map_err(FileError::from);
            return vec![result.unwrap_or_else(|e| fail(*file, &e))];
        }
        let synced = ReceiveFolder::open(&self.folder).and_then(|f| f.sync_all().map(|()| f));
        let folder = match synced {
            Ok(folder) => folder,
            Err(e) => {
                let error = FileError::from(Failure::from(e));
                return files.iter().map(|f| fail(*f, &error)).collect();
            }
        };
        let results: Vec<FileResult> = files
            .iter()
            .map(|f| {
                let result = self.commit_as(*f, Durable::Batch).map_err(FileError::from);
                result.unwrap_or_else(|e| fail(*f, &e))
            })
            .collect();
        if let Err(e) = folder.sync_all() {
            // The names may not survive a crash: say so rather than claim they are durable.
            let error = FileError::from(Failure::from(e));
            return results
                .into_iter()
                .map(|r| match r {
                    FileResult::Committed { file, .. } => fail(file, &error),
                    other => other,
                })
                .collect();
        }
        results
    }

    fn commit_as(&mut self, file: FileId, durable: Durable) -> Result<FileResult, Failure> {
        let open = self.get(file)?;
        let Some(partial) = &open.partial else {
            return Err(Failure::ReadOnly);
        };
        if durable == Durable::Now {
            open.file.sync_all()?;
        }
        let base = partial.name.as_str();
        let variants = (0..MAX_VARIANTS).map(|n| variant(base, n));
        let name = match partial.within.as_slice() {
            [] => partial
                .folder
                .commit(&open.file, &partial.key, variants, durable)?,
            within => {
                // Opened again from the receive folder's descriptor, each component
                // checked: what was made at MakeTree may have been replaced since.
                let components: Vec<&str> = within.iter().map(String::as_str).collect();
                let sub = partial.folder.folder_at(&components)?;
                let name =
                    partial
                        .folder
                        .commit_in(&sub, &open.file, &partial.key, variants, durable)?;
                format!("{}/{name}", sub.path())
            }
        };
        let key = partial.key.clone();
        self.open.remove(&file);
        self.partials().remove(&key);
        Ok(FileResult::Committed { file, name })
    }

    fn make_tree(
        &mut self,
        file: FileId,
        key: &PartialKey,
        manifest: &ferry_proto::transfer::manifest::Manifest,
    ) -> Result<FileResult, Failure> {
        let folder = ReceiveFolder::open(&self.folder)?;
        self.trees.make(&folder, key, manifest)?;
        Ok(FileResult::TreeMade { file })
    }

    fn forget_tree(&mut self, file: FileId, key: &PartialKey) -> Result<FileResult, Failure> {
        let folder = ReceiveFolder::open(&self.folder)?;
        self.trees.forget(&folder, key)?;
        Ok(FileResult::Closed { file })
    }

    fn close(&mut self, file: FileId, discard: bool) -> Result<FileResult, Failure> {
        let open = self.open.remove(&file).ok_or(Failure::NotOpen)?;
        if let Some(partial) = &open.partial {
            self.partials().remove(&partial.key);
        }
        // Only a partial file is ever deleted: a source belongs to the user.
        if let (true, Some(partial)) = (discard, &open.partial) {
            partial.folder.remove_partial(&partial.key, &open.file)?;
        }
        Ok(FileResult::Closed { file })
    }
}
