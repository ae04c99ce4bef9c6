//! File contents that are a pure function of a seed and an offset.
//!
//! The generator lives in the simulator (`ferry_sim::content`), which serves simulated
//! files from it; this module re-exports it so the harnesses here and the simulator agree
//! on every byte.

pub use ferry_sim::content::{byte_at, fill, range};

/// Writes the first `bytes` of the content of `seed` to a new file at `path`, in pieces:
/// never the whole file in memory (the benchmarks' files of a gigabyte).
pub fn write_file(path: &std::path::Path, bytes: u64, seed: u64) {
    use std::io::Write as _;
    let mut out = std::fs::File::create(path).expect("create the file");
    let mut buf = vec![0; 1 << 20];
    let mut at = 0;
    while at < bytes {
        let n = (bytes - at).min(buf.len() as u64) as usize;
        fill(seed, at, &mut buf[..n]);
        out.write_all(&buf[..n]).expect("write");
        at += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_agree_with_bytes_and_differ_by_seed() {
        let r = range(7, 1000, 64);
        assert_eq!(r[5], byte_at(7, 1005));
        assert_ne!(range(7, 0, 64), range(8, 0, 64));
        assert_ne!(range(7, 0, 64), range(7, 64, 64));
    }
}
