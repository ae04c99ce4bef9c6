//! Positioned reads and writes of whole buffers, and a digest extended from disk: the
//! file service's I/O, without a shared cursor (one file may be read and hashed at once).

use std::fs::File;
use std::io::{self, ErrorKind};

use ferry_proto::transfer::StreamDigest;

use super::failure::Failure;

/// How much a [`FileOp::Digest`](ferry_proto::io::FileOp::Digest) reads from disk at a time.
pub(super) const HASH_CHUNK: usize = 1024 * 1024;

/// Extends `digest` from disk up to `len` bytes.
pub(super) fn hash_from_disk(
    file: &File,
    digest: &mut StreamDigest,
    len: u64,
) -> Result<(), Failure> {
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
pub(super) fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
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

/// Writes all of `data` at `offset`.
pub(super) fn write_all_at(file: &File, mut data: &[u8], mut offset: u64) -> io::Result<()> {
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
