//! The random values STUN and ICE need — transaction ids, and an agent's ufrag, password and
//! tie-breaker — drawn from the crate's seeded generator, never from global randomness.
//!
//! [`StunRng`] wraps [`SeededRng`](crate::signal::SeededRng) (SHA3-512 in counter mode, the
//! one generator of `proto`) and adds the shapes STUN needs. The simulator derives seeds
//! from the run's seed; the runtimes seed from the operating system. Transaction ids stay
//! unpredictable to a peer, as RFC 8489 asks, while the same seed still replays a run.

use stun_types::message::TransactionId;

use crate::signal::SeededRng;

/// Keeps the streams of STUN users apart from other users of the same `u64` seed.
const DOMAIN: &[u8; 24] = b"ferry stun transactions\0";

/// A deterministic, seeded source of STUN's random values.
#[derive(Debug, Clone)]
pub struct StunRng(SeededRng);

impl StunRng {
    /// The source for `seed`: the same seed gives the same values.
    pub fn new(seed: u64) -> StunRng {
        let mut full = [0u8; 32];
        full[..24].copy_from_slice(DOMAIN);
        full[24..].copy_from_slice(&seed.to_le_bytes());
        StunRng(SeededRng::new(full))
    }

    /// A random `u64`.
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A fresh 96-bit STUN transaction id.
    pub fn transaction_id(&mut self) -> TransactionId {
        let mut bytes = [0u8; 16];
        self.0.fill(&mut bytes[4..]);
        TransactionId::from(u128::from_be_bytes(bytes))
    }

    /// `len` lowercase hexadecimal digits, the shape of Jami's ufrag and pwd.
    pub fn hex(&mut self, len: usize) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = vec![0u8; len];
        self.0.fill(&mut bytes);
        bytes
            .iter()
            .map(|b| char::from(DIGITS[usize::from(b & 0x0f)]))
            .collect()
    }
}
