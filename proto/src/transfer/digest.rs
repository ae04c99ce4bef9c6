//! SHA3-512, the digest a file is checked against, and the incremental hasher drivers run
//! beside their file I/O.

use std::fmt;

use sha3::{Digest as _, Sha3_512};

/// A SHA3-512 digest. Displays as 128 lowercase hex characters, as Jami's `sha3sum`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 64]);

impl Digest {
    /// The digest of `data` in one go.
    pub fn of(data: &[u8]) -> Digest {
        let mut d = StreamDigest::new();
        d.update(0, data);
        d.finish()
    }

    /// Parses 128 hex characters.
    pub fn from_hex(s: &str) -> Option<Digest> {
        let mut out = [0u8; 64];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Digest(out))
    }

    /// A short form for traces: the first 8 hex characters.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({}…)", self.short())
    }
}

/// An incremental SHA3-512 over a file's bytes in order, fed with whatever passes through
/// reads and writes.
///
/// Bytes that start exactly where the hashed prefix ends extend it; bytes that overlap it
/// extend it by their new part; bytes that leave a gap are ignored (they will be read from
/// disk). When a digest of the first `len` bytes is needed, [`missing`](Self::missing) says
/// which range still has to be read, so each byte is hashed once.
#[derive(Clone, Default)]
pub struct StreamDigest {
    hasher: Sha3_512,
    hashed: u64,
}

impl fmt::Debug for StreamDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamDigest")
            .field("hashed", &self.hashed)
            .finish()
    }
}

impl StreamDigest {
    /// An empty digest.
    pub fn new() -> StreamDigest {
        StreamDigest::default()
    }

    /// How many bytes from the start are hashed.
    pub fn hashed(&self) -> u64 {
        self.hashed
    }

    /// Offers the bytes found at `offset`. Returns whether any of them extended the prefix.
    pub fn update(&mut self, offset: u64, data: &[u8]) -> bool {
        let end = offset.saturating_add(data.len() as u64);
        if offset > self.hashed || end <= self.hashed {
            return false;
        }
        // `offset <= hashed < end`, so the skip fits in `data`.
        let skip = (self.hashed - offset) as usize;
        self.hasher.update(&data[skip..]);
        self.hashed = end;
        true
    }

    /// The range `hashed..len` that must still be read before the first `len` bytes can be
    /// digested; empty when they all are.
    pub fn missing(&self, len: u64) -> std::ops::Range<u64> {
        self.hashed.min(len)..len
    }

    /// The digest of everything hashed so far.
    pub fn finish(self) -> Digest {
        Digest(self.hasher.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector_empty() {
        // SHA3-512("") from FIPS 202.
        assert_eq!(
            Digest::of(b"").to_string(),
            "a69f73cca23a9ac5c8b567dc185a756e97c982164fe25859e0d1dcc1475c80a6\
             15b2123af1f5f94c11e3e9402c3ac558f500199d95b6d3e301758586281dcd26"
        );
    }

    #[test]
    fn overlapping_and_gapped_updates_hash_each_byte_once() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut d = StreamDigest::new();
        assert!(!d.update(10, &data[10..20]), "a gap is ignored");
        assert!(d.update(0, &data[0..100]));
        assert!(
            d.update(50, &data[50..300]),
            "an overlap extends by its new part"
        );
        assert!(!d.update(100, &data[100..200]), "already hashed");
        assert_eq!(d.missing(1000), 300..1000);
        assert!(d.update(300, &data[300..]));
        assert_eq!(d.missing(1000), 1000..1000);
        assert_eq!(d.finish(), Digest::of(&data));
    }

    #[test]
    fn hex_round_trip() {
        let d = Digest::of(b"ferry");
        assert_eq!(Digest::from_hex(&d.to_string()), Some(d));
        assert_eq!(Digest::from_hex("abc"), None);
    }
}
