//! 160-bit ids: node ids and the keys values are stored under (OpenDHT's `InfoHash`).

use std::fmt;

/// A 160-bit id: a node's id, or the key a value is stored under (`InfoHash` in
/// OpenDHT; `InfoHash::get(s)` is the SHA-1 of `s`, as `dhtnode`'s `p`/`g` commands use).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// The key of `data`: its SHA-1, as OpenDHT's `InfoHash::get`.
    pub fn get(data: &[u8]) -> InfoHash {
        use sha1::Digest;
        InfoHash(sha1::Sha1::digest(data).into())
    }

    /// An id from exactly 20 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<InfoHash> {
        bytes.try_into().ok().map(InfoHash)
    }

    /// Whether every bit is zero (OpenDHT's `zeroes`, refused as a sender id).
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 20]
    }

    /// The XOR distance to `other`, comparable as a big-endian number.
    pub fn xor(&self, other: &InfoHash) -> [u8; 20] {
        let mut d = [0u8; 20];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        d
    }

    /// The number of leading bits `self` and `other` share (160 when equal).
    pub fn common_bits(&self, other: &InfoHash) -> usize {
        let d = self.xor(other);
        let mut bits = 0;
        for byte in d {
            if byte == 0 {
                bits += 8;
            } else {
                return bits + byte.leading_zeros() as usize;
            }
        }
        bits
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_is_dhtnode_s_hash_of_a_key() {
        // `dhtnode`'s `p foo hello` printed "Using h(foo) = 0beec7b5…".
        assert_eq!(
            InfoHash::get(b"foo").to_string(),
            "0beec7b5ea3f0fdbc95d0dd47f3c5bc275da8a33"
        );
    }

    #[test]
    fn common_bits_counts_the_shared_prefix() {
        let a = InfoHash([0; 20]);
        let mut b = a;
        b.0[1] = 0x20;
        assert_eq!(a.common_bits(&b), 10);
        assert_eq!(a.common_bits(&a), 160);
    }
}
