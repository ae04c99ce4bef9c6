//! The holder's side of a request to send a file again (`data-transfer-request`): the checks
//! that need the application's records and the file system, which the core leaves to the
//! application ([`Event::AskAgain`](ferry_proto::io::Event::AskAgain)).
//!
//! A [`SentFile`] is what a sender records of its source file when it sends it (path,
//! size, modification time, inode). [`decide`] answers a request from what the records hold:
//! no record of the id is `unknown_transfer`, a record for another account `not_a_recipient`,
//! a file that is gone or is not the one recorded `file_changed`; else the file is sent again.

use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use ferry_proto::conversation::AskAnswer;
use ferry_proto::tls::AccountId;
use ferry_proto::transfer::{Digest, StreamDigest};

/// What a sender knows of its source file, to tell later that it is still the same file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentFile {
    /// Its canonical path.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its modification time, seconds since the Unix epoch.
    pub mtime_secs: i64,
    /// The nanoseconds of the modification time.
    pub mtime_nanos: u32,
    /// Its inode number (0 where there is none).
    pub inode: u64,
}

impl SentFile {
    /// The file at `path` as it is now (the path made canonical).
    pub fn of(path: &Path) -> io::Result<SentFile> {
        let path = fs::canonicalize(path)?;
        let meta = fs::metadata(&path)?;
        Ok(SentFile::from_metadata(path, &meta))
    }

    /// The file at `path` (canonical already) with its metadata.
    pub fn from_metadata(path: PathBuf, meta: &fs::Metadata) -> SentFile {
        #[cfg(unix)]
        let (mtime_secs, mtime_nanos, inode) = {
            use std::os::unix::fs::MetadataExt as _;
            (
                meta.mtime(),
                u32::try_from(meta.mtime_nsec()).unwrap_or(0),
                meta.ino(),
            )
        };
        #[cfg(not(unix))]
        let (mtime_secs, mtime_nanos, inode) = {
            let since = meta
                .modified()
                .ok()
                .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                .unwrap_or_default();
            (
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
                since.subsec_nanos(),
                0,
            )
        };
        SentFile {
            path,
            size: meta.len(),
            mtime_secs,
            mtime_nanos,
            inode,
        }
    }

    /// Whether the file at the recorded path is still this one: a regular file with the
    /// same size, modification time and inode, and, when a device verified it, the same
    /// SHA3-512 (read whole: call it off the runtime's threads for large files).
    pub fn unchanged(&self, digest: Option<&Digest>) -> bool {
        let Ok(meta) = fs::metadata(&self.path) else {
            return false;
        };
        if !meta.is_file() || SentFile::from_metadata(self.path.clone(), &meta) != *self {
            return false;
        }
        match digest {
            None => true,
            Some(expected) => sha3_of(&self.path).is_ok_and(|d| d == *expected),
        }
    }
}

/// The SHA3-512 of the file at `path`.
fn sha3_of(path: &Path) -> io::Result<Digest> {
    let mut file = fs::File::open(path)?;
    let mut digest = StreamDigest::new();
    let mut buf = vec![0; 1 << 20];
    let mut at = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(digest.finish());
        }
        digest.update(at, &buf[..n]);
        at += n as u64;
    }
}

/// What a sender's records hold of the transfer a request names.
#[derive(Debug, Clone, Copy)]
pub struct Recorded<'a> {
    /// The account it was sent to.
    pub to: AccountId,
    /// The source file as sent.
    pub file: &'a SentFile,
    /// The SHA3-512 a device verified, if any did.
    pub digest: Option<&'a Digest>,
}

/// The answer to a request from a device of `from`, given what the records hold of the id
/// it names (`None`: nothing): `Ok` to send the file again, or the refusal.
pub fn decide(from: AccountId, recorded: Option<Recorded<'_>>) -> Result<(), AskAnswer> {
    let Some(r) = recorded else {
        return Err(AskAnswer::UnknownTransfer);
    };
    if r.to != from {
        return Err(AskAnswer::NotARecipient);
    }
    if !r.file.unchanged(r.digest) {
        return Err(AskAnswer::FileChanged);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_answered_from_the_records_and_the_file() {
        // SECURITY: row 130
        // SECURITY: row 131
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("f");
        fs::write(&path, b"hello").expect("write");
        let sent = SentFile::of(&path).expect("stat");
        let (bob, carol) = (AccountId([1; 20]), AccountId([2; 20]));
        let digest = Digest::of(b"hello");
        let recorded = |digest| Recorded {
            to: bob,
            file: &sent,
            digest,
        };
        assert_eq!(decide(bob, None), Err(AskAnswer::UnknownTransfer));
        assert_eq!(
            decide(carol, Some(recorded(None))),
            Err(AskAnswer::NotARecipient)
        );
        assert_eq!(decide(bob, Some(recorded(Some(&digest)))), Ok(()));
        let other = Digest::of(b"other");
        assert_eq!(
            decide(bob, Some(recorded(Some(&other)))),
            Err(AskAnswer::FileChanged)
        );
        fs::write(&path, b"hellO").expect("rewrite");
        let now = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(now))
            .expect("touch");
        assert_eq!(
            decide(bob, Some(recorded(None))),
            Err(AskAnswer::FileChanged)
        );
        fs::remove_file(&path).expect("rm");
        assert_eq!(
            decide(bob, Some(recorded(None))),
            Err(AskAnswer::FileChanged)
        );
    }
}
