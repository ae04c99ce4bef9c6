//! STUN for ICE over TCP: RFC 4571 framing, the messages ICE sends, and a seeded random
//! source for transaction ids.
//!
//! This module owns the bytes: [`framing`] cuts a TCP stream into frames and back;
//! [`Builder`] and [`StunMessage`] write and read STUN messages on the `stun-types` crate
//! (which does the encoding, integrity and fingerprint arithmetic); [`ice_attributes`] adds
//! PRIORITY, USE-CANDIDATE, ICE-CONTROLLING and ICE-CONTROLLED, which `stun-types` leaves to
//! its users; [`StunRng`] draws transaction ids from a seed, never from global randomness;
//! [`Transactions`] keeps the requests sent and not yet answered, with their deadlines.
//!
//! It does not own any state machine: the ICE agent ([`crate::ice`]) uses it to speak and
//! decides for itself what an answer or an expiry means, and the node's demultiplexer reads
//! the first check of an unrouted connection with it. The TURN client ([`crate::turn`])
//! does not: its methods and attributes (RFC 8656, RFC 6062) are written on `stun-types`
//! directly, in `turn/`.
//! Nothing here knows about candidates or ICE roles beyond the attributes themselves.

pub mod framing;
pub mod ice_attributes;
mod message;
mod rng;
mod transactions;

pub use message::{
    BINDING, BuildError, Builder, Class, IntegrityError, RoleAttribute, StunError, StunMessage,
    looks_like_stun, may_be_stun, verify_integrity,
};
pub use rng::StunRng;
pub use transactions::Transactions;
