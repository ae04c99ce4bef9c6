//! The seeded random source of a state machine: transaction ids, tie-breakers, credentials.
//!
//! `proto` never draws global randomness; each machine owns one [`SeededRng`] built from a
//! seed its owner chose. The simulator derives seeds from the run's seed; the runtimes seed
//! from the operating system. ChaCha12 keeps the values unpredictable to a peer (STUN
//! transaction ids should be) while the same seed still replays the same run.

use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore, SeedableRng};
use stun_types::message::TransactionId;

/// A deterministic, seeded random source.
#[derive(Debug, Clone)]
pub struct SeededRng(ChaCha12Rng);

impl SeededRng {
    /// The source for `seed`: the same seed gives the same values.
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(ChaCha12Rng::seed_from_u64(seed))
    }

    /// A random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A fresh 96-bit STUN transaction id.
    pub fn transaction_id(&mut self) -> TransactionId {
        let hi = u128::from(self.0.next_u32());
        let lo = u128::from(self.0.next_u64());
        TransactionId::from((hi << 64) | lo)
    }

    /// `len` characters from the ICE alphabet (`ice-char`: letters, digits, `+`, `/`).
    pub fn ice_chars(&mut self, len: usize) -> String {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
        (0..len)
            .map(|_| char::from(ALPHABET[(self.0.next_u32() % 64) as usize]))
            .collect()
    }

    /// `len` lowercase hexadecimal digits, the shape of Jami's ufrag and pwd.
    pub fn hex(&mut self, len: usize) -> String {
        const DIGITS: &[u8] = b"0123456789abcdef";
        (0..len)
            .map(|_| char::from(DIGITS[(self.0.next_u32() % 16) as usize]))
            .collect()
    }
}
