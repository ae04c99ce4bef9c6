//! A source hashed ahead of its reads, so that a resume's two prefix hashes run at the same
//! time instead of one after the other.
//!
//! To resume, the receiver hashes the partial file it holds when it opens it and sends
//! `GO n` with that digest (`PROTOCOL.md` §4.1); the sender must hash its own first `n` bytes
//! before it can compare. Done only when `GO` arrives, the sender's hash followed the
//! receiver's: two passes over the prefix end to end, longer than sending it again for a
//! fast link (8 s for a 300 MB prefix here). So a source is hashed from byte 0 as soon as it
//! opens — while the offer travels, the receiver opens its partial and hashes it — and the
//! state of the digest is kept every [`CHECKPOINT_EVERY`] bytes: whatever `n` turns out to
//! be, the sender's answer costs at most one interval more once `GO n` comes.
//!
//! The pass runs on the file's worker between operations, one chunk at a time, so that an
//! operation waits for one chunk at most; it stops at the first read or digest asked for
//! (from then on the reads extend the digest, as they always did) and at the file's end. The
//! bytes it hashed are not hashed again by the reads that follow.

use std::fs::File;

use ferry_proto::transfer::StreamDigest;

use super::failure::Failure;
use super::io::HASH_CHUNK;

/// How far apart the kept states of a source's digest are: at most this many bytes are
/// hashed again to answer a `GO n` whose `n` the pass has gone past. A state is a few hundred
/// bytes; a 1 TB file keeps about 15,000 of them (4 MiB).
pub(super) const CHECKPOINT_EVERY: u64 = 64 * 1024 * 1024;

/// The pass over one source.
#[derive(Debug)]
pub(super) struct Prehash {
    /// The source's length when it opened: the pass ends there.
    len: u64,
    every: u64,
    /// The digest's state at `every`, `2 × every`, … as far as the pass went.
    checkpoints: Vec<StreamDigest>,
    active: bool,
}

impl Prehash {
    /// A pass over a source of `len` bytes keeping a state every `every` bytes.
    pub(super) fn new(len: u64, every: u64) -> Prehash {
        Prehash {
            len,
            every: every.max(1),
            checkpoints: Vec::new(),
            active: len > 0,
        }
    }

    /// Whether there is more to hash.
    pub(super) fn is_active(&self) -> bool {
        self.active
    }

    /// Ends the pass (the transfer reads or asked for a digest: it goes on from there).
    pub(super) fn stop(&mut self) {
        self.active = false;
    }

    /// Extends `digest` by one chunk at most, never past the next checkpoint, and keeps the
    /// state when it reaches one. A short read (the file shrank) ends the pass: the reads will
    /// say what happened.
    pub(super) fn step(&mut self, file: &File, digest: &mut StreamDigest) {
        if !self.active {
            return;
        }
        let at = digest.hashed();
        let next_checkpoint = (at / self.every + 1) * self.every;
        let end = self
            .len
            .min(next_checkpoint)
            .min(at.saturating_add(HASH_CHUNK as u64));
        if at >= end || super::io::hash_from_disk(file, digest, end).is_err() {
            self.active = false;
            return;
        }
        if end % self.every == 0 {
            self.checkpoints.push(digest.clone());
        }
        if end >= self.len {
            self.active = false;
        }
    }

    /// The kept state nearest at or below `len` (a fresh digest if none): hash from there to
    /// `len` to get the digest of the first `len` bytes.
    pub(super) fn nearest(&self, len: u64) -> StreamDigest {
        let below = usize::try_from(len / self.every).unwrap_or(usize::MAX);
        match below.min(self.checkpoints.len()) {
            0 => StreamDigest::new(),
            n => self.checkpoints[n - 1].clone(),
        }
    }
}

/// Hashes the first `len` bytes of `file` from the nearest kept state of `prehash`.
pub(super) fn digest_of_prefix(
    file: &File,
    prehash: Option<&Prehash>,
    len: u64,
) -> Result<StreamDigest, Failure> {
    let mut digest = prehash.map_or_else(StreamDigest::new, |p| p.nearest(len));
    super::io::hash_from_disk(file, &mut digest, len)?;
    Ok(digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::transfer::Digest;
    use std::io::Write as _;

    fn file_of(data: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(data).expect("write");
        let handle = File::open(f.path()).expect("open");
        (f, handle)
    }

    #[test]
    fn the_pass_keeps_a_state_at_each_interval_and_answers_any_prefix_from_the_nearest() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (_keep, file) = file_of(&data);
        let mut pass = Prehash::new(data.len() as u64, 1_000);
        let mut digest = StreamDigest::new();
        let mut steps = 0;
        while pass.is_active() {
            pass.step(&file, &mut digest);
            steps += 1;
        }
        assert_eq!(
            digest.hashed(),
            data.len() as u64,
            "the pass reaches the end"
        );
        assert_eq!(steps, 10, "one step per interval here (each under a chunk)");
        assert_eq!(pass.checkpoints.len(), 10);
        assert_eq!(digest.finish(), Digest::of(&data));
        for n in [0u64, 1, 999, 1_000, 1_001, 4_567, 9_999, 10_000] {
            let from = pass.nearest(n);
            assert!(from.hashed() <= n && n - from.hashed() < 1_000, "n = {n}");
            let got = digest_of_prefix(&file, Some(&pass), n).expect("digest");
            assert_eq!(got.finish(), Digest::of(&data[..n as usize]), "n = {n}");
        }
    }

    #[test]
    fn a_stopped_pass_answers_from_what_it_kept() {
        let data = vec![9u8; 5_000];
        let (_keep, file) = file_of(&data);
        let mut pass = Prehash::new(data.len() as u64, 1_000);
        let mut digest = StreamDigest::new();
        pass.step(&file, &mut digest);
        pass.step(&file, &mut digest);
        pass.stop();
        pass.step(&file, &mut digest);
        assert_eq!(digest.hashed(), 2_000, "nothing after the stop");
        let got = digest_of_prefix(&file, Some(&pass), 4_321).expect("digest");
        assert_eq!(got.finish(), Digest::of(&data[..4_321]));
    }

    #[test]
    fn a_file_that_shrank_ends_the_pass() {
        let data = vec![1u8; 3_000];
        let (_keep, file) = file_of(&data);
        // Opened as 5,000 bytes long; only 3,000 are there.
        let mut pass = Prehash::new(5_000, 1_000);
        let mut digest = StreamDigest::new();
        for _ in 0..10 {
            pass.step(&file, &mut digest);
        }
        assert!(!pass.is_active());
        assert_eq!(digest.hashed(), 3_000);
    }
}
