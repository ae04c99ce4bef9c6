//! File contents that are a pure function of a seed and an offset.

/// The byte at `offset` of the file generated from `seed`.
pub fn byte_at(seed: u64, offset: u64) -> u8 {
    let word = splitmix64(seed ^ (offset / 8).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    word.to_le_bytes()[(offset % 8) as usize]
}

/// `len` bytes of the file generated from `seed`, starting at `offset`.
pub fn range(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|o| byte_at(seed, o))
        .collect()
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
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
