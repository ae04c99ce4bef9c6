//! Real files for the [`FileOp`]s a core asks for: sources anywhere the application points,
//! partial and final files inside one receive folder.
//!
//! [`FileService`] answers each operation synchronously with std::fs; [`FileThread`] runs it
//! on a thread of its own, so that reading, writing and above all hashing never wait behind
//! (or hold up) the event loop that runs TLS.
//!
//! - A partial file is `<name>.ferry-part` in the private folder inside the receive folder,
//!   opened and checked as [`ReceiveFolder`] says (no symlink followed, a regular file of this
//!   user with one link, mode 0600, free space checked); only [`FileOp::Commit`] gives it its
//!   final name, after an fsync, by a hard link from its open descriptor that fails rather than
//!   replace an existing file (then `name (1).ext`, `name (2).ext`, …), so a crash never leaves
//!   a half-written file under a final name and nothing is ever overwritten.
//! - Each open file carries a [`StreamDigest`] fed by its reads and writes. A partial file
//!   opened with a prefix already on disk has that prefix hashed once, when it opens; a source
//!   first read past its start (a resumed send) has the skipped part hashed then. The reads
//!   and writes that follow extend the digest, so each byte is read from disk and hashed
//!   once, and [`FileOp::Digest`] reads only bytes it never saw.
//! - Two open operations on the same partial file are refused: two transfers writing one file
//!   would only corrupt it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use bytes::Bytes;

use ferry_proto::io::{FileError, FileId, FileOp, FileResult};
use ferry_proto::transfer::{Digest, MAX_NAME_BYTES, SafeName, StreamDigest};

use crate::receive_folder::{FolderError, ReceiveFolder};

/// What the name of a partial file ends with.
pub const PARTIAL_SUFFIX: &str = ".ferry-part";

/// How much a [`FileOp::Digest`] reads from disk at a time.
const HASH_CHUNK: usize = 1024 * 1024;

/// Most " (n)" variants tried before a commit gives up.
const MAX_VARIANTS: u32 = 10_000;

struct OpenFile {
    file: File,
    /// For a partial file: where it is and the final name it is meant to get.
    partial: Option<Partial>,
    digest: StreamDigest,
}

/// An open partial file's place: the verified folders, its name in the private one, and the
/// final name it is meant to get.
struct Partial {
    folder: ReceiveFolder,
    key: String,
    name: SafeName,
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

    /// The path of the partial file for a file that will be called `name` (inside the
    /// private folder [`PRIVATE_FOLDER`](crate::receive_folder::PRIVATE_FOLDER), mode 0700).
    pub fn partial_path(&self, name: &SafeName) -> PathBuf {
        ReceiveFolder::partial_path(&self.folder, &partial_name(name.as_str()))
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
        self.check_free(file)?;
        let key = partial_name(name.as_str());
        if self
            .open
            .values()
            .any(|o| o.partial.as_ref().is_some_and(|p| p.key == key))
        {
            return Err(Failure::Busy);
        }
        let folder = ReceiveFolder::open(&self.folder)?;
        let (handle, len) = folder.open_partial(&key, size)?;
        // Hash the prefix now, once: the writes that follow start where it ends.
        let mut digest = StreamDigest::new();
        hash_from_disk(&handle, &mut digest, len)?;
        let partial = Partial { folder, key, name };
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
            },
        );
        Ok(())
    }

    fn get(&mut self, file: FileId) -> Result<&mut OpenFile, Failure> {
        self.open.get_mut(&file).ok_or(Failure::NotOpen)
    }

    fn read(&mut self, file: FileId, offset: u64, len: u32) -> Result<FileResult, Failure> {
        let open = self.get(file)?;
        if offset > open.digest.hashed() {
            // A resumed send starts past the start: hash the part the peer already holds now,
            // so the reads that follow extend the digest and no byte is read twice.
            hash_from_disk(&open.file, &mut open.digest, offset)?;
        }
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
        let Some(partial) = &open.partial else {
            return Err(Failure::ReadOnly);
        };
        open.file.sync_all()?;
        let base = partial.name.as_str();
        let variants = (0..MAX_VARIANTS).map(|n| variant(base, n));
        let name = partial.folder.commit(&open.file, &partial.key, variants)?;
        self.open.remove(&file);
        Ok(FileResult::Committed { file, name })
    }

    fn close(&mut self, file: FileId, discard: bool) -> Result<FileResult, Failure> {
        let open = self.open.remove(&file).ok_or(Failure::NotOpen)?;
        // Only a partial file is ever deleted: a source belongs to the user.
        if let (true, Some(partial)) = (discard, &open.partial) {
            partial.folder.remove_partial(&partial.key, &open.file)?;
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

/// Extends `digest` from disk up to `len` bytes.
fn hash_from_disk(file: &File, digest: &mut StreamDigest, len: u64) -> Result<(), Failure> {
    let range = digest.missing(len);
    let mut buf =
        vec![0; HASH_CHUNK.min(usize::try_from(range.end - range.start).unwrap_or(HASH_CHUNK))];
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
        match positioned::read(file, &mut buf[done..], offset.saturating_add(done as u64)) {
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
                offset = offset.saturating_add(n as u64);
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
    Folder(FolderError),
    Short,
    NotAFile,
    Busy,
    AlreadyOpen,
    NotOpen,
    ReadOnly,
    Unknown,
}

impl From<FolderError> for Failure {
    fn from(e: FolderError) -> Failure {
        match e {
            FolderError::Io(e) => Failure::Io(e),
            e => Failure::Folder(e),
        }
    }
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
            Failure::Folder(e) => FileError::Other(e.to_string()),
            Failure::Short => FileError::ShortRead,
            Failure::NotAFile => other("not a regular file"),
            Failure::Busy => other("the partial file is in use by another transfer"),
            Failure::AlreadyOpen => other("this file id is already open"),
            Failure::NotOpen => other("this file id is not open"),
            Failure::ReadOnly => other("not a partial file"),
            Failure::Unknown => other("a file operation this driver does not know"),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Puts `bytes` where the partial file for `file_name` goes, as an earlier transfer would
    /// have left them (the private folder made as Ferry makes it).
    fn plant(service: &FileService, file_name: &str, bytes: &[u8]) {
        let path = service.partial_path(&name(file_name));
        let private = path.parent().expect("private folder");
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            let _ = fs::DirBuilder::new().mode(0o700).create(private);
        }
        fs::write(path, bytes).expect("partial");
    }

    fn name(s: &str) -> SafeName {
        SafeName::from_display_name(s).expect("a safe name")
    }

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// Receives `content` as `file_name` in `service`, starting at what is already there.
    fn receive(service: &mut FileService, id: u64, file_name: &str, content: &[u8]) -> FileResult {
        let file = FileId(id);
        let size = content.len() as u64;
        let opened = service.perform(FileOp::OpenPartial {
            file,
            name: name(file_name),
            size,
        });
        let FileResult::Opened { len: start, .. } = opened else {
            panic!("{opened:?}");
        };
        for (i, chunk) in content[start as usize..].chunks(1000).enumerate() {
            let offset = start + (i * 1000) as u64;
            let data = Bytes::copy_from_slice(chunk);
            let written = service.perform(FileOp::Write { file, offset, data });
            assert!(matches!(written, FileResult::Written { .. }), "{written:?}");
        }
        let digest = service.perform(FileOp::Digest { file, len: size });
        assert_eq!(
            digest,
            FileResult::Digest {
                file,
                digest: Digest::of(content)
            }
        );
        service.perform(FileOp::Commit { file })
    }

    #[test]
    fn a_commit_never_replaces_a_file_and_leaves_no_partial() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut service = FileService::new(dir.path());
        // SECURITY: row 102
        fs::write(dir.path().join("photo.jpg"), b"mine").expect("write");
        let got = receive(&mut service, 1, "photo.jpg", &data(5000, 1));
        assert_eq!(
            got,
            FileResult::Committed {
                file: FileId(1),
                name: "photo (1).jpg".into()
            }
        );
        let got = receive(&mut service, 2, "photo.jpg", &data(10, 2));
        assert_eq!(
            got,
            FileResult::Committed {
                file: FileId(2),
                name: "photo (2).jpg".into()
            }
        );
        assert_eq!(
            fs::read(dir.path().join("photo.jpg")).expect("read"),
            b"mine"
        );
        assert_eq!(
            fs::read(dir.path().join("photo (1).jpg")).expect("read"),
            data(5000, 1)
        );
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".ferry-partial",
                "photo (1).jpg",
                "photo (2).jpg",
                "photo.jpg"
            ]
        );
        let private = fs::read_dir(dir.path().join(".ferry-partial")).expect("private");
        assert_eq!(private.count(), 0, "no partial data is left");
    }

    #[test]
    fn a_resume_hashes_the_prefix_once_and_the_digest_matches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut service = FileService::new(dir.path());
        let content = data(100_000, 3);
        plant(&service, "big.bin", &content[..40_000]);
        let file = FileId(9);
        let opened = service.perform(FileOp::OpenPartial {
            file,
            name: name("big.bin"),
            size: content.len() as u64,
        });
        assert_eq!(opened, FileResult::Opened { file, len: 40_000 });
        // The prefix is hashed already: the writes that follow extend it.
        assert_eq!(service.open[&file].digest.hashed(), 40_000);
        let data = Bytes::copy_from_slice(&content[40_000..]);
        service.perform(FileOp::Write {
            file,
            offset: 40_000,
            data,
        });
        assert_eq!(service.open[&file].digest.hashed(), 100_000);
        let len = content.len() as u64;
        let digest = Digest::of(&content);
        assert_eq!(
            service.perform(FileOp::Digest { file, len }),
            FileResult::Digest { file, digest }
        );
        // A digest of a shorter range is computed afresh from disk.
        let short = Digest::of(&content[..123]);
        assert_eq!(
            service.perform(FileOp::Digest { file, len: 123 }),
            FileResult::Digest {
                file,
                digest: short
            }
        );
    }

    #[test]
    fn a_partial_longer_than_the_file_starts_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut service = FileService::new(dir.path());
        plant(&service, "a.txt", &data(500, 4));
        let content = data(100, 5);
        let got = receive(&mut service, 1, "a.txt", &content);
        assert!(matches!(got, FileResult::Committed { .. }), "{got:?}");
        assert_eq!(fs::read(dir.path().join("a.txt")).expect("read"), content);
    }

    #[test]
    fn discard_deletes_the_partial_and_close_keeps_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut service = FileService::new(dir.path());
        let partial = service.partial_path(&name("x.bin"));
        for (id, op_keeps) in [(1, true), (2, false)] {
            let file = FileId(id);
            service.perform(FileOp::OpenPartial {
                file,
                name: name("x.bin"),
                size: 10,
            });
            let data = Bytes::from_static(b"abc");
            service.perform(FileOp::Write {
                file,
                offset: 0,
                data,
            });
            let op = if op_keeps {
                FileOp::Close { file }
            } else {
                FileOp::Discard { file }
            };
            assert_eq!(service.perform(op), FileResult::Closed { file });
            assert_eq!(partial.exists(), op_keeps);
        }
    }

    #[test]
    fn a_source_is_read_and_hashed_and_never_deleted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut service = FileService::new(dir.path());
        let content = data(3000, 6);
        let path = dir.path().join("source.bin");
        fs::write(&path, &content).expect("source");
        let file = FileId(1);
        let source = path.to_string_lossy().into_owned();
        assert_eq!(
            service.perform(FileOp::OpenSource { file, source }),
            FileResult::Opened { file, len: 3000 }
        );
        for offset in (0..3000).step_by(1000) {
            let got = service.perform(FileOp::Read {
                file,
                offset,
                len: 1000,
            });
            let want = Bytes::copy_from_slice(&content[offset as usize..offset as usize + 1000]);
            assert_eq!(
                got,
                FileResult::Data {
                    file,
                    offset,
                    data: want
                }
            );
        }
        let past_end = service.perform(FileOp::Read {
            file,
            offset: 2500,
            len: 1000,
        });
        assert_eq!(
            past_end,
            FileResult::Failed {
                file,
                error: FileError::ShortRead
            }
        );
        let digest = Digest::of(&content);
        assert_eq!(
            service.perform(FileOp::Digest { file, len: 3000 }),
            FileResult::Digest { file, digest }
        );
        let not_a_partial = service.perform(FileOp::Write {
            file,
            offset: 0,
            data: Bytes::new(),
        });
        assert!(matches!(not_a_partial, FileResult::Failed { .. }));
        assert_eq!(
            service.perform(FileOp::Discard { file }),
            FileResult::Closed { file }
        );
        assert!(
            path.exists(),
            "a source is the user's: discard only closes it"
        );
    }

    #[test]
    fn a_resumed_send_hashes_the_skipped_part_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut service = FileService::new(dir.path());
        let content = data(5000, 8);
        let path = dir.path().join("s.bin");
        fs::write(&path, &content).expect("source");
        let file = FileId(1);
        let source = path.to_string_lossy().into_owned();
        service.perform(FileOp::OpenSource { file, source });
        let got = service.perform(FileOp::Read {
            file,
            offset: 3000,
            len: 2000,
        });
        assert!(matches!(got, FileResult::Data { .. }), "{got:?}");
        assert_eq!(service.open[&file].digest.hashed(), 5000);
        let digest = Digest::of(&content);
        assert_eq!(
            service.perform(FileOp::Digest { file, len: 5000 }),
            FileResult::Digest { file, digest }
        );
    }

    #[test]
    fn missing_sources_busy_partials_and_unknown_ids_are_failures() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut service = FileService::new(dir.path());
        let file = FileId(1);
        let source = dir.path().join("nope").to_string_lossy().into_owned();
        assert_eq!(
            service.perform(FileOp::OpenSource { file, source }),
            FileResult::Failed {
                file,
                error: FileError::NotFound
            }
        );
        service.perform(FileOp::OpenPartial {
            file,
            name: name("same"),
            size: 1,
        });
        let second = FileId(2);
        let busy = service.perform(FileOp::OpenPartial {
            file: second,
            name: name("same"),
            size: 1,
        });
        assert!(
            matches!(
                busy,
                FileResult::Failed {
                    error: FileError::Other(_),
                    ..
                }
            ),
            "{busy:?}"
        );
        let unknown = service.perform(FileOp::Read {
            file: FileId(7),
            offset: 0,
            len: 1,
        });
        assert!(matches!(unknown, FileResult::Failed { .. }), "{unknown:?}");
    }

    #[test]
    fn a_symlink_at_the_partial_path_is_refused_not_followed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut service = FileService::new(dir.path());
        // SECURITY: row 114
        let outside = tempfile::tempdir().expect("temp dir");
        let target = outside.path().join("victim");
        fs::write(&target, b"keep").expect("victim");
        plant(&service, "f.bin", b"");
        let partial = service.partial_path(&name("f.bin"));
        fs::remove_file(&partial).expect("remove");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&target, &partial).expect("symlink");
        let file = FileId(1);
        let got = service.perform(FileOp::OpenPartial {
            file,
            name: name("f.bin"),
            size: 10,
        });
        let FileResult::Failed {
            error: FileError::Other(why),
            ..
        } = got
        else {
            panic!("{got:?}");
        };
        assert!(why.contains("a symlink"), "{why}");
        assert_eq!(fs::read(&target).expect("victim"), b"keep");
    }

    #[test]
    fn names_of_partial_and_committed_files() {
        assert_eq!(partial_name("a.txt"), "a.txt.ferry-part");
        let long = "x".repeat(MAX_NAME_BYTES);
        let partial = partial_name(&long);
        assert!(partial.len() <= MAX_NAME_BYTES && partial.ends_with(PARTIAL_SUFFIX));
        assert_ne!(partial, partial_name(&"x".repeat(MAX_NAME_BYTES - 1)));
        assert_eq!(variant("archive.tar.gz", 2), "archive.tar (2).gz");
        assert_eq!(variant("README", 1), "README (1)");
        // SECURITY: row 103
        assert_eq!(variant("evil.ferry-part", 0), "evil.ferry-part_");
    }

    #[test]
    fn the_thread_answers_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (tx, rx) = mpsc::channel();
        let thread = FileThread::spawn(FileService::new(dir.path()), move |r| {
            let _ = tx.send(r);
        })
        .expect("thread");
        let file = FileId(1);
        thread.submit(FileOp::OpenPartial {
            file,
            name: name("t"),
            size: 3,
        });
        thread.submit(FileOp::Write {
            file,
            offset: 0,
            data: Bytes::from_static(b"abc"),
        });
        thread.submit(FileOp::Commit { file });
        let got: Vec<FileResult> = rx.iter().take(3).collect();
        assert_eq!(
            got,
            [
                FileResult::Opened { file, len: 0 },
                FileResult::Written {
                    file,
                    offset: 0,
                    len: 3
                },
                FileResult::Committed {
                    file,
                    name: "t".into()
                },
            ]
        );
    }
}
