//! Real files for the [`FileOp`]s a core asks for: sources anywhere the application points,
//! partial and final files inside one receive folder.
//!
//! [`FileService`] answers each operation synchronously with std::fs; [`FileThread`] runs it
//! on a thread of its own, so that reading, writing and above all hashing never wait behind
//! (or hold up) the event loop that runs TLS.
//!
//! - A partial file is `<name>.ferry-part` in the receive folder; only [`FileOp::Commit`] gives
//!   it its final name, after an fsync, by a hard link that fails rather than replace an
//!   existing file (then `name (1).ext`, `name (2).ext`, …), so a crash never leaves a
//!   half-written file under a final name and nothing is ever overwritten.
//! - Each open file carries a [`StreamDigest`] fed by its reads and writes. A partial file
//!   opened with a prefix already on disk has that prefix hashed once, when it opens; the
//!   writes that follow extend it, so [`FileOp::Digest`] reads from disk only bytes it never
//!   saw.
//! - Two open operations on the same partial file are refused: two transfers writing one file
//!   would only corrupt it.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::Bytes;

use crate::io::{FileError, FileId, FileOp, FileResult};
use crate::transfer::{Digest, MAX_NAME_BYTES, SafeName, StreamDigest};

/// What the name of a partial file ends with.
pub const PARTIAL_SUFFIX: &str = ".ferry-part";

/// How much a [`FileOp::Digest`] reads from disk at a time.
const HASH_CHUNK: usize = 1024 * 1024;

/// Most " (n)" variants tried before a commit gives up.
const MAX_VARIANTS: u32 = 10_000;

struct OpenFile {
    file: File,
    /// For a partial file: its path and the final name it is meant to get.
    partial: Option<(PathBuf, SafeName)>,
    digest: StreamDigest,
}

/// Performs [`FileOp`]s on real files. One answer per operation, in order.
pub struct FileService {
    folder: PathBuf,
    open: BTreeMap<FileId, OpenFile>,
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
        }
    }

    /// The receive folder.
    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// The path of the partial file for a file that will be called `name`.
    pub fn partial_path(&self, name: &SafeName) -> PathBuf {
        self.folder.join(partial_name(name.as_str()))
    }

    /// Carries out one operation.
    pub fn perform(&mut self, op: FileOp) -> FileResult {
        let file = op.file();
        let result = match op {
            FileOp::OpenSource { source, .. } => self.open_source(file, Path::new(&source)),
            FileOp::OpenPartial { name, size, .. } => self.open_partial(file, name, size),
            FileOp::Read { offset, len, .. } => self.read(file, offset, len),
            FileOp::Write { offset, data, .. } => self.write(file, offset, data),
            FileOp::Digest { len, .. } => self.digest(file, len),
            FileOp::Commit { .. } => self.commit(file),
            FileOp::Discard { .. } => self.close(file, true),
            FileOp::Close { .. } => self.close(file, false),
        };
        result.unwrap_or_else(|failure| FileResult::Failed {
            file,
            error: failure.into(),
        })
    }

    fn open_source(&mut self, file: FileId, path: &Path) -> Result<FileResult, Failure> {
        let handle = File::open(path)?;
        let meta = handle.metadata()?;
        if !meta.is_file() {
            return Err(Failure::NotAFile);
        }
        self.insert(file, handle, None, StreamDigest::new())?;
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
    ) -> Result<FileResult, Failure> {
        let path = self.partial_path(&name);
        if self
            .open
            .values()
            .any(|o| o.partial.as_ref().is_some_and(|(p, _)| *p == path))
        {
            return Err(Failure::Busy);
        }
        let handle = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut len = handle.metadata()?.len();
        if len > size {
            handle.set_len(0)?;
            len = 0;
        }
        // Hash the prefix now, once: the writes that follow start where it ends.
        let mut digest = StreamDigest::new();
        hash_from_disk(&handle, &mut digest, len)?;
        self.insert(file, handle, Some((path, name)), digest)?;
        Ok(FileResult::Opened { file, len })
    }

    fn insert(
        &mut self,
        file: FileId,
        handle: File,
        partial: Option<(PathBuf, SafeName)>,
        digest: StreamDigest,
    ) -> Result<(), Failure> {
        if self.open.contains_key(&file) {
            return Err(Failure::AlreadyOpen);
        }
        self.open.insert(
            file,
            OpenFile {
                file: handle,
                partial,
                digest,
            },
        );
        Ok(())
    }

    fn get(&mut self, file: FileId) -> Result<&mut OpenFile, Failure> {
        self.open.get_mut(&file).ok_or(Failure::NotOpen)
    }

    fn read(&mut self, file: FileId, offset: u64, len: u32) -> Result<FileResult, Failure> {
        let open = self.get(file)?;
        let mut buf = vec![0; len as usize];
        let got = read_at(&open.file, &mut buf, offset)?;
        if got < buf.len() {
            return Err(Failure::Short);
        }
        open.digest.update(offset, &buf);
        Ok(FileResult::Data {
            file,
            offset,
            data: Bytes::from(buf),
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
        let digest = if open.digest.hashed() <= len {
            hash_from_disk(&open.file, &mut open.digest, len)?;
            open.digest.clone().finish()
        } else {
            // A digest of less than what passed through: only a fresh pass can give it.
            let mut fresh = StreamDigest::new();
            hash_from_disk(&open.file, &mut fresh, len)?;
            fresh.finish()
        };
        Ok(FileResult::Digest { file, digest })
    }

    fn commit(&mut self, file: FileId) -> Result<FileResult, Failure> {
        let open = self.get(file)?;
        let Some((partial, name)) = open.partial.clone() else {
            return Err(Failure::ReadOnly);
        };
        open.file.sync_all()?;
        let name = commit_no_replace(&self.folder, &partial, name.as_str())?;
        self.open.remove(&file);
        Ok(FileResult::Committed { file, name })
    }

    fn close(&mut self, file: FileId, discard: bool) -> Result<FileResult, Failure> {
        let open = self.open.remove(&file).ok_or(Failure::NotOpen)?;
        // Only a partial file is ever deleted: a source belongs to the user.
        if let (true, Some((path, _))) = (discard, open.partial) {
            drop(open.file);
            match fs::remove_file(&path) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        Ok(FileResult::Closed { file })
    }
}

/// The partial file's name for `name`: `name.ferry-part`, shortened (with a hash of the whole
/// name, so two long names stay apart) when that would pass the file-name limit.
fn partial_name(name: &str) -> String {
    if name.len() + PARTIAL_SUFFIX.len() <= MAX_NAME_BYTES {
        return format!("{name}{PARTIAL_SUFFIX}");
    }
    let tag = &Digest::of(name.as_bytes()).short();
    let mut end = MAX_NAME_BYTES - PARTIAL_SUFFIX.len() - tag.len() - 1;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{tag}{PARTIAL_SUFFIX}", &name[..end])
}

/// The names tried for a file called `name`: itself, then `stem (n).ext`. A name that looks
/// like a partial file gets `_` appended, so no final file is ever taken for a partial one.
fn variant(name: &str, n: u32) -> String {
    let name = if name.ends_with(PARTIAL_SUFFIX) {
        format!("{name}_")
    } else {
        name.to_owned()
    };
    if n == 0 {
        return name;
    }
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({n}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({n})"),
    }
}

/// Gives `partial` the first free variant of `name` in `folder`, never replacing a file.
fn commit_no_replace(folder: &Path, partial: &Path, name: &str) -> Result<String, Failure> {
    for n in 0..MAX_VARIANTS {
        let candidate = variant(name, n);
        let target = folder.join(&candidate);
        // A hard link is created only if the target does not exist: atomic, never replacing.
        match fs::hard_link(partial, &target) {
            Ok(()) => {
                fs::remove_file(partial)?;
                sync_folder(folder);
                return Ok(candidate);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            // File systems without hard links: check, then rename (a race is possible there).
            Err(_) if !target.exists() => {
                fs::rename(partial, &target)?;
                sync_folder(folder);
                return Ok(candidate);
            }
            Err(_) => continue,
        }
    }
    Err(Failure::NoFreeName)
}

/// Makes the renaming durable (a folder fsync, where the system has one).
fn sync_folder(folder: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = folder;
}

/// Extends `digest` from disk up to `len` bytes.
fn hash_from_disk(file: &File, digest: &mut StreamDigest, len: u64) -> Result<(), Failure> {
    let range = digest.missing(len);
    let mut buf = vec![0; HASH_CHUNK.min(usize::try_from(range.end - range.start).unwrap_or(HASH_CHUNK))];
    let mut at = range.start;
    while at < range.end {
        let want = usize::try_from(range.end - at).map_or(buf.len(), |left| left.min(buf.len()));
        let got = read_at(file, &mut buf[..want], at)?;
        if got < want {
            return Err(Failure::Short);
        }
        digest.update(at, &buf[..want]);
        at += want as u64;
    }
    Ok(())
}

/// Reads at `offset` until `buf` is full or the file ends; how many bytes were read.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match positioned::read(file, &mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn write_all_at(file: &File, mut data: &[u8], mut offset: u64) -> io::Result<()> {
    while !data.is_empty() {
        match positioned::write(file, data, offset) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => {
                data = &data[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads and writes at an offset, without a shared cursor.
mod positioned {
    use std::fs::File;
    use std::io;

    #[cfg(unix)]
    pub(super) fn read(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(file, buf, offset)
    }

    #[cfg(unix)]
    pub(super) fn write(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::write_at(file, buf, offset)
    }

    #[cfg(windows)]
    pub(super) fn read(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::windows::fs::FileExt::seek_read(file, buf, offset)
    }

    #[cfg(windows)]
    pub(super) fn write(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
        std::os::windows::fs::FileExt::seek_write(file, buf, offset)
    }
}

/// Why an operation failed, before it becomes a [`FileError`].
#[derive(Debug)]
enum Failure {
    Io(io::Error),
    Short,
    NotAFile,
    Busy,
    AlreadyOpen,
    NotOpen,
    ReadOnly,
    NoFreeName,
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl From<Failure> for FileError {
    fn from(failure: Failure) -> FileError {
        let other = |s: &str| FileError::Other(s.to_owned());
        match failure {
            Failure::Io(e) => match e.kind() {
                ErrorKind::NotFound => FileError::NotFound,
                ErrorKind::PermissionDenied => FileError::PermissionDenied,
                ErrorKind::StorageFull | ErrorKind::QuotaExceeded => FileError::DiskFull,
                ErrorKind::UnexpectedEof => FileError::ShortRead,
                _ => FileError::Other(e.to_string()),
            },
            Failure::Short => FileError::ShortRead,
            Failure::NotAFile => other("not a regular file"),
            Failure::Busy => other("the partial file is in use by another transfer"),
            Failure::AlreadyOpen => other("this file id is already open"),
            Failure::NotOpen => other("this file id is not open"),
            Failure::ReadOnly => other("not a partial file"),
            Failure::NoFreeName => other("no free name left for this file"),
        }
    }
}

/// A [`FileService`] on its own thread: operations go in with [`submit`](Self::submit),
/// results come out through the `deliver` callback, in order.
///
/// The queue is not bounded here: the core bounds it, since it never has more than its read
/// and write windows of file data asked for and not answered. Dropping the handle lets the
/// thread finish what it was given and end.
#[derive(Debug)]
pub struct FileThread {
    ops: mpsc::Sender<FileOp>,
}

impl FileThread {
    /// Starts the thread. `deliver` runs on it, once per result: a channel send, typically,
    /// that wakes the driver's event loop.
    pub fn spawn(
        mut service: FileService,
        mut deliver: impl FnMut(FileResult) + Send + 'static,
    ) -> io::Result<FileThread> {
        let (ops, rx) = mpsc::channel::<FileOp>();
        std::thread::Builder::new()
            .name("ferry-files".into())
            .spawn(move || {
                for op in rx {
                    deliver(service.perform(op));
                }
            })?;
        Ok(FileThread { ops })
    }

    /// Queues an operation.
    pub fn submit(&self, op: FileOp) {
        // The thread ends only when this handle is gone; a send cannot fail before.
        let _ = self.ops.send(op);
    }
}
