//! The receive folder, opened so that someone else who can write in it cannot turn Ferry's
//! writes against the user.
//!
//! Whoever can write in the receive folder (a shared folder, a group-writable Downloads, a
//! careless `chmod`) could otherwise plant a symlink or a hard link where Ferry is about to
//! write and have a transfer overwrite a file outside the folder. So:
//! - the folder itself must belong to this user and not be writable by every user;
//! - partial data lives in a private folder inside it, [`PRIVATE_FOLDER`] (mode 0700, created
//!   by us, its owner checked, opened without following a symlink), so nobody else can plant,
//!   read or truncate it;
//! - every file is opened relative to a verified folder descriptor (`openat` with
//!   `O_NOFOLLOW`, never a path from the root), created with mode 0600, and refused unless it
//!   is a regular file of this user with exactly one link (a planted FIFO, device or hard link
//!   to a file elsewhere is never written);
//! - a verified file gets its final name from its open descriptor, by
//!   `linkat(AT_FDCWD, "/proc/self/fd/N", folder, name, AT_SYMLINK_FOLLOW)`: the file that was
//!   checked is the file that is committed, and `linkat` never replaces an existing name nor
//!   follows a symlink planted at it. A file system without hard links (or a system without
//!   `/proc`) is refused with a clear error rather than committed by a racy check-then-rename;
//! - free space is checked (`fstatvfs`) before a transfer is accepted.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

mod kept;
mod tree;

pub(crate) use tree::single;

pub use tree::SubFolder;

/// The private folder inside the receive folder that holds partial data.
pub const PRIVATE_FOLDER: &str = ".ferry-partial";

/// Why the receive folder or a file in it was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FolderError {
    /// The receive folder cannot be opened as a folder.
    #[error("the receive folder {0} cannot be opened: {1}")]
    Open(PathBuf, io::Error),
    /// The receive folder belongs to another user.
    #[error(
        "the receive folder {path} belongs to another user (uid {owner}): Ferry receives only into a folder of its own user"
    )]
    OtherOwner {
        /// The folder.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// Every user can write in the receive folder.
    #[error(
        "the receive folder {0} is writable by every user: remove that (chmod o-w) to receive into it"
    )]
    WorldWritable(PathBuf),
    /// The private folder is not a folder of this user (a symlink, a file, another user's).
    #[error("{}/{PRIVATE_FOLDER} is not a private folder of this user ({why}): remove it", .folder.display())]
    NotPrivate {
        /// The receive folder.
        folder: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// What is at a partial file's place is not a regular file of this user with one link.
    #[error("the partial data {0} is not a regular file of this user with one link ({1}): refused")]
    NotAPartialFile(String, &'static str),
    /// The file cannot fit in the free space of the receive folder's file system.
    #[error(
        "disk full: not enough free space in the receive folder: {needed} bytes needed, {free} free"
    )]
    NoSpace {
        /// Bytes still to be written.
        needed: u64,
        /// Bytes free for this user.
        free: u64,
    },
    /// The file system (or the system) cannot give a file its name atomically from its
    /// descriptor.
    #[error(
        "this file system cannot commit a received file atomically (a hard link from /proc/self/fd failed: {0}); choose a receive folder on another file system"
    )]
    NoAtomicCommit(io::Error),
    /// What is at a folder's place on a manifest entry's path is not a folder Ferry made or
    /// may receive into (a symlink, a file, another user's, open to every user).
    #[error("{0} is not a folder Ferry can receive into ({1}): refused")]
    NotAFolder(String, &'static str),
    /// Every variant of the name is taken.
    #[error("no free name left for this file")]
    NoFreeName,
    /// Any other error of the system.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl From<Errno> for FolderError {
    fn from(e: Errno) -> FolderError {
        FolderError::Io(e.into())
    }
}

/// How a commit makes its new name durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// An fsync of its folder, before the commit returns.
    Now,
    /// Later, by the caller, for a batch of commits at once
    /// ([`ReceiveFolder::sync_all`]).
    Batch,
}

/// The receive folder and its private folder, both opened and verified.
#[derive(Debug)]
pub struct ReceiveFolder {
    path: PathBuf,
    dir: OwnedFd,
    private: OwnedFd,
}

/// The user this process acts as.
fn our_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

impl ReceiveFolder {
    /// Opens the receive folder at `path` (a symlink to it is the user's choice and is
    /// followed), checks it, and creates or opens its private folder. A folder that does not
    /// exist yet is made, with its missing parents, mode 0700: it is made when the first file
    /// is taken, so a process that only sends makes none.
    pub fn open(path: &Path) -> Result<ReceiveFolder, FolderError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let dir = match rustix::fs::openat(CWD, path, flags, Mode::empty()) {
            Err(Errno::NOENT) => {
                use std::os::unix::fs::DirBuilderExt as _;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(path)
                    .map_err(|e| FolderError::Open(path.to_owned(), e))?;
                rustix::fs::openat(CWD, path, flags, Mode::empty())
            }
            other => other,
        }
        .map_err(|e| FolderError::Open(path.to_owned(), e.into()))?;
        let stat = rustix::fs::fstat(&dir)?;
        if stat.st_uid != our_uid() {
            return Err(FolderError::OtherOwner {
                path: path.to_owned(),
                owner: stat.st_uid,
            });
        }
        if Mode::from_raw_mode(stat.st_mode).contains(Mode::WOTH) {
            return Err(FolderError::WorldWritable(path.to_owned()));
        }
        let not_private = |why: String| FolderError::NotPrivate {
            folder: path.to_owned(),
            why,
        };
        // Opened first, made only when missing (a `mkdirat` of an existing folder still
        // locks the receive folder, and this runs for every file taken).
        let open_private = || {
            rustix::fs::openat(
                &dir,
                PRIVATE_FOLDER,
                flags | OFlags::NOFOLLOW,
                Mode::empty(),
            )
        };
        let private = match open_private() {
            Err(Errno::NOENT) => {
                match rustix::fs::mkdirat(&dir, PRIVATE_FOLDER, Mode::RWXU) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(not_private(io::Error::from(e).to_string())),
                }
                open_private()
            }
            other => other,
        }
        .map_err(|e| match e {
            Errno::LOOP | Errno::NOTDIR => not_private("a symlink or not a folder".into()),
            e => not_private(io::Error::from(e).to_string()),
        })?;
        let stat = rustix::fs::fstat(&private)?;
        if stat.st_uid != our_uid() {
            return Err(not_private(format!("it belongs to uid {}", stat.st_uid)));
        }
        // Ours, but open to others (made by hand, or by an older Ferry): private again. Each
        // file in it is still checked on its own.
        if Mode::from_raw_mode(stat.st_mode).intersects(Mode::RWXG | Mode::RWXO) {
            rustix::fs::fchmod(&private, Mode::RWXU)?;
        }
        Ok(ReceiveFolder {
            path: path.to_owned(),
            dir,
            private,
        })
    }

    /// The receive folder's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the partial file called `key` (for messages and tests; Ferry itself opens
    /// it only through the private folder's descriptor).
    pub fn partial_path(folder: &Path, key: &str) -> PathBuf {
        folder.join(PRIVATE_FOLDER).join(key)
    }

    /// Opens (or creates, mode 0600) the partial file `key` for a file of `size` bytes, and
    /// checks that the rest fits in the free space. Returns the file and the length of the
    /// prefix it holds: zero when what was there is longer than `size` (it cannot be a
    /// prefix) or when `resume` is false (a peer whose bytes no digest will check).
    pub fn open_partial(
        &self,
        key: &str,
        size: u64,
        resume: bool,
    ) -> Result<(File, u64), FolderError> {
        let flags = OFlags::RDWR
            | OFlags::CREATE
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NONBLOCK
            | OFlags::NOCTTY;
        let fd = rustix::fs::openat(&self.private, key, flags, Mode::RUSR | Mode::WUSR).map_err(
            |e| match e {
                Errno::LOOP => FolderError::NotAPartialFile(key.to_owned(), "a symlink"),
                Errno::ISDIR => FolderError::NotAPartialFile(key.to_owned(), "a folder"),
                e => FolderError::Io(e.into()),
            },
        )?;
        check_regular(&fd, key)?;
        let file = File::from(fd);
        let mut held = file.metadata()?.len();
        if held > size || (held > 0 && !resume) {
            file.set_len(0)?;
            held = 0;
        }
        let vfs = rustix::fs::fstatvfs(&self.private)?;
        let free = vfs.f_bavail.saturating_mul(vfs.f_frsize);
        let needed = size - held;
        if needed > free {
            if held == 0 {
                // Nothing worth keeping: leave no empty file behind.
                self.remove_partial(key, &file)?;
            }
            return Err(FolderError::NoSpace { needed, free });
        }
        Ok((file, held))
    }

    /// Gives the verified partial `file` (called `key`) the first free variant of `name` in
    /// the receive folder, through its descriptor, and removes its partial name. Returns the
    /// name it got. With [`Durable::Now`] the folder is fsynced after; with
    /// [`Durable::Batch`] the caller makes the names durable ([`sync_all`](Self::sync_all)).
    pub fn commit(
        &self,
        file: &File,
        key: &str,
        variants: impl Iterator<Item = String>,
        durable: Durable,
    ) -> Result<String, FolderError> {
        self.commit_into(&self.dir, file, key, variants, durable)
    }

    /// Flushes everything written on the receive folder's file system (`syncfs`): the data
    /// of a batch of partial files before their commits, and their new names after.
    pub fn sync_all(&self) -> Result<(), FolderError> {
        rustix::fs::syncfs(&self.private)?;
        Ok(())
    }

    /// [`commit`](Self::commit) into the folder `dir` (the receive folder or one below it).
    fn commit_into(
        &self,
        dir: &OwnedFd,
        file: &File,
        key: &str,
        variants: impl Iterator<Item = String>,
        durable: Durable,
    ) -> Result<String, FolderError> {
        let source = format!("/proc/self/fd/{}", file.as_raw_fd());
        for candidate in variants {
            match rustix::fs::linkat(CWD, &source, dir, &candidate, AtFlags::SYMLINK_FOLLOW) {
                Ok(()) => {
                    self.remove_partial(key, file)?;
                    if durable == Durable::Now {
                        // Make the new name durable (a folder fsync).
                        rustix::fs::fsync(dir)?;
                    }
                    return Ok(candidate);
                }
                // Taken (by a file, a folder, a symlink that is never followed): the next one.
                Err(Errno::EXIST) => continue,
                Err(
                    e
                    @ (Errno::PERM | Errno::OPNOTSUPP | Errno::NOENT | Errno::XDEV | Errno::MLINK),
                ) => {
                    return Err(FolderError::NoAtomicCommit(e.into()));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(FolderError::NoFreeName)
    }

    /// Removes the partial name `key`, if it still names `file` (in the private folder only we
    /// can change it; the check costs one `stat`).
    pub fn remove_partial(&self, key: &str, file: &File) -> Result<(), FolderError> {
        let named = match rustix::fs::statat(&self.private, key, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let open = rustix::fs::fstat(file)?;
        if (named.st_dev, named.st_ino) == (open.st_dev, open.st_ino) {
            rustix::fs::unlinkat(&self.private, key, AtFlags::empty())?;
        }
        Ok(())
    }
}

impl ReceiveFolder {
    /// Removes the partial data nobody wrote for `age` or longer: each regular file in the
    /// private folder whose modification time is that old (partial files of today's form,
    /// and `<name>.ferry-part` files an older Ferry keyed by name, which nothing reads any
    /// more). Nothing is followed: a name that is not a regular file is left alone. Returns
    /// how many files went. Run when nothing receives (a listener at start).
    pub fn prune_partials(&self, age: std::time::Duration) -> Result<usize, FolderError> {
        let now = std::time::SystemTime::now();
        let fd = rustix::fs::openat(
            &self.private,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut removed = 0;
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_bytes() == b"." || name.to_bytes() == b".." {
                continue;
            }
            let Ok(stat) = rustix::fs::statat(&self.private, name, AtFlags::SYMLINK_NOFOLLOW)
            else {
                continue;
            };
            if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
                continue;
            }
            let modified = u64::try_from(stat.st_mtime)
                .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                .unwrap_or(std::time::UNIX_EPOCH);
            let idle = now.duration_since(modified).unwrap_or_default();
            if idle >= age && rustix::fs::unlinkat(&self.private, name, AtFlags::empty()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Refuses anything but a regular file of this user with exactly one link.
fn check_regular(fd: &OwnedFd, key: &str) -> Result<(), FolderError> {
    let stat = rustix::fs::fstat(fd)?;
    let refuse = |why| Err(FolderError::NotAPartialFile(key.to_owned(), why));
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return refuse("not a regular file");
    }
    if stat.st_nlink != 1 {
        return refuse("it has other links");
    }
    if stat.st_uid != our_uid() {
        return refuse("it belongs to another user");
    }
    Ok(())
}
