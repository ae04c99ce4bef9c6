//! The random values STUN and ICE need — transaction ids, and an agent's ufrag, password and
//! tie-breaker — drawn from the crate's one seeded generator, never from global randomness.

/// STUN's name for the crate's generator, [`crate::rng::SeededRng`].
pub type StunRng = crate::rng::SeededRng;
