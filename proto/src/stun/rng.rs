//! The seeded random source STUN draws transaction ids from: the crate's [`SeededRng`].

pub use crate::rng::SeededRng;
