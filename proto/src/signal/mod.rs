//! Signalling over the DHT: device announcements, and connection requests and answers sealed
//! to one device and signed by another.
//!
//! This module owns the formats and their checks, not the DHT: values go out as
//! [`Output::DhtPut`](crate::io::Output::DhtPut) and come in as
//! [`Input::DhtValue`](crate::io::Input::DhtValue) through whoever owns this (the node). A
//! value that fails a check is an [`SignalError`] its owner counts and drops.

mod announce;
mod features;
mod keys;
mod message;
mod replay;
mod revoked;
mod seal;
mod sender;

pub use crate::rng::SeededRng;
pub use announce::Announcement;
pub use features::{EARLY_CHANNEL_DATA, Features, REQUEST_TIME, REQUEST_WINDOW, request_in_time};
pub use keys::{devices_key, peer_key};
pub use message::{PROTOCOL, PeerConnection};
pub use replay::{REMEMBERED, SeenIds};
pub use revoked::{
    publish as publish_revocations, verify_published as verify_revocations,
    worth_verifying as revocations_worth_verifying,
};
pub use seal::{MAX_SEALED, Opened, Recipient, open, open_at, seal, worth_opening};

use crate::tls::{AccountId, DeviceId, PeerCheckError};

/// Why a DHT value was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// It does not parse.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// It was not sealed to this device (or was altered).
    #[error("not sealed to this device, or altered")]
    NotForUs,
    /// A signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// The device certificate is not signed by the account certificate beside it.
    #[error("the device certificate is not signed by its account")]
    NotSignedByAccount,
    /// The announcement is not of the account looked up.
    #[error("announcement of account {presented} under account {expected}")]
    WrongAccount {
        /// The account whose key it was under.
        expected: AccountId,
        /// The account it names.
        presented: AccountId,
    },
    /// The sender's device is revoked.
    #[error("device {0} is revoked")]
    Revoked(DeviceId),
    /// The sender's certificates would not pass TLS: self-signed, outside their validity, not
    /// chaining to the account.
    #[error("the sender's identity is refused: {0}")]
    Identity(PeerCheckError),
}
