//! File contents that are a pure function of a seed and an offset.
//!
//! A simulated sender serves its files from here, so a 1 GiB transfer costs no 1 GiB of
//! memory, and anyone can check a byte without keeping a copy.

use crate::rng::splitmix64;

fn word(seed: u64, index: u64) -> [u8; 8] {
    splitmix64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes()
}

/// The byte at `offset` of the file generated from `seed`.
pub fn byte_at(seed: u64, offset: u64) -> u8 {
    word(seed, offset / 8)[(offset % 8) as usize]
}

/// Fills `buf` with the bytes of the file generated from `seed`, starting at `offset`.
pub fn fill(seed: u64, offset: u64, buf: &mut [u8]) {
    let mut pos = 0;
    let mut at = offset;
    while pos < buf.len() {
        let w = word(seed, at / 8);
        let skip = (at % 8) as usize;
        let n = (8 - skip).min(buf.len() - pos);
        buf[pos..pos + n].copy_from_slice(&w[skip..skip + n]);
        pos += n;
        at += n as u64;
    }
}

/// `len` bytes of the file generated from `seed`, starting at `offset`.
pub fn range(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    fill(seed, offset, &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_agree_with_bytes_and_differ_by_seed() {
        let r = range(7, 1000, 64);
        assert_eq!(r[5], byte_at(7, 1005));
        for (i, b) in range(7, 3, 21).into_iter().enumerate() {
            assert_eq!(b, byte_at(7, 3 + i as u64));
        }
        assert_ne!(range(7, 0, 64), range(8, 0, 64));
        assert_ne!(range(7, 0, 64), range(7, 64, 64));
    }
}
