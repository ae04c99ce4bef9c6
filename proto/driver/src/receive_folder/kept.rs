//! Small files Ferry keeps beside the partial data in the private folder: what a later
//! process needs to go on where this one stopped (the names a manifest's top-level folders
//! got, `PROTOCOL.md` §14). Written whole and crash-safe, read back with a size bound; only
//! regular files of this user are read, never through a symlink.

use std::io::{Read as _, Write as _};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::{FolderError, ReceiveFolder, check_regular};

impl ReceiveFolder {
    /// Writes `bytes` as the kept file `name` in the private folder: to a temporary name,
    /// fsynced, then renamed over `name` and the folder fsynced, so a crash leaves the old
    /// content or the new, never part of one.
    pub fn keep(&self, name: &str, bytes: &[u8]) -> Result<(), FolderError> {
        let tmp = format!("{name}.tmp");
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::TRUNC
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        let fd = rustix::fs::openat(&self.private, &tmp, flags, Mode::RUSR | Mode::WUSR).map_err(
            |e| match e {
                Errno::LOOP => FolderError::NotAPartialFile(tmp.clone(), "a symlink"),
                e => FolderError::Io(e.into()),
            },
        )?;
        check_regular(&fd, &tmp)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)?;
        file.sync_all()?;
        rustix::fs::renameat(&self.private, &tmp, &self.private, name)?;
        rustix::fs::fsync(&self.private)?;
        Ok(())
    }

    /// The kept file `name`, if there is one of at most `max` bytes; `None` when there is
    /// none. Anything else at that name (a folder, a symlink, a FIFO, a larger file) is an
    /// error.
    pub fn kept(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, FolderError> {
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(&self.private, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(FolderError::NotAPartialFile(name.to_owned(), "a symlink"));
            }
            Err(e) => return Err(e.into()),
        };
        check_regular(&fd, name)?;
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(max + 1)
            .read_to_end(&mut bytes)?;
        if bytes.len() as u64 > max {
            return Err(FolderError::NotAPartialFile(name.to_owned(), "too large"));
        }
        Ok(Some(bytes))
    }

    /// Removes the kept file `name`, if it is there.
    pub fn forget(&self, name: &str) -> Result<(), FolderError> {
        match rustix::fs::unlinkat(&self.private, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
