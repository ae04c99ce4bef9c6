//! The seeded random source of every state machine: transaction ids, tie-breakers, ICE
//! credentials, request ids, HPKE ephemeral keys.
//!
//! `proto` never draws global randomness; each machine owns one [`SeededRng`] built from a
//! seed its owner chose, so the same seed replays the same run, byte for byte, while the
//! values stay unpredictable to a peer (STUN transaction ids should be).
//!
//! SHA3-512 in counter mode over a 32-byte seed: each block is `SHA3-512(seed ‖ counter)`.
//! A runtime seeds it from the operating system; the simulator from the run's seed.

use std::convert::Infallible;

use sha3::Digest as _;
use stun_types::message::TransactionId;

/// A deterministic CSPRNG.
#[derive(Clone)]
pub struct SeededRng {
    seed: [u8; 32],
    counter: u64,
    block: [u8; 64],
    used: usize,
}

impl std::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededRng")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl SeededRng {
    /// A generator from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> SeededRng {
        SeededRng {
            seed,
            counter: 0,
            block: [0; 64],
            used: 64,
        }
    }

    /// A generator from a 64-bit seed (spread over 32 bytes by SHA3).
    pub fn new(seed: u64) -> SeededRng {
        let mut h = sha3::Sha3_256::new();
        h.update(b"ferry rng");
        h.update(seed.to_le_bytes());
        SeededRng::from_seed(h.finalize().into())
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill(&mut b);
        u32::from_le_bytes(b)
    }

    /// A fresh 96-bit STUN transaction id.
    pub fn transaction_id(&mut self) -> TransactionId {
        let hi = u128::from(self.next_u32());
        let lo = u128::from(self.next_u64());
        TransactionId::from((hi << 64) | lo)
    }

    /// `len` characters from the ICE alphabet (`ice-char`: letters, digits, `+`, `/`).
    pub fn ice_chars(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
        (0..len)
            .map(|_| char::from(ALPHABET[(self.next_u32() % 64) as usize]))
            .collect()
    }

    /// `len` lowercase hexadecimal digits, the shape of Jami's ufrag and pwd.
    pub fn hex(&mut self, len: usize) -> String {
        const DIGITS: &[u8] = b"0123456789abcdef";
        (0..len)
            .map(|_| char::from(DIGITS[(self.next_u32() % 16) as usize]))
            .collect()
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill(&mut b);
        u64::from_le_bytes(b)
    }

    /// Fills `dst` with random bytes.
    pub fn fill(&mut self, dst: &mut [u8]) {
        for byte in dst {
            if self.used == 64 {
                let mut h = sha3::Sha3_512::new();
                h.update(self.seed);
                h.update(self.counter.to_le_bytes());
                self.block.copy_from_slice(&h.finalize());
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
}

impl rand_core::TryRng for SeededRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        Ok(self.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        Ok(self.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.fill(dst);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for SeededRng {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_blocks_do_not_repeat() {
        let (mut a, mut b) = (SeededRng::from_seed([1; 32]), SeededRng::from_seed([1; 32]));
        let xs: Vec<u64> = (0..20).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..20).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], xs[8], "a new block after 64 bytes");
        assert_ne!(SeededRng::from_seed([2; 32]).next_u64(), xs[0]);
        assert_eq!(SeededRng::new(5).hex(8), SeededRng::new(5).hex(8));
        assert_ne!(SeededRng::new(5).hex(8), SeededRng::new(6).hex(8));
    }
}
