//! Identities and TLS 1.3: who is on the other end, and a private channel to them.
//!
//! - [`id`](AccountId): account and device ids, as Jami computes them.
//! - [`Account`], [`Device`]: keys from seeds, the account's CA certificate, device
//!   certificates signed by it, their PEM form (`ferry-driver` saves them to files).
//! - [`RevocationList`], [`Revocations`]: an account's signed list of revoked devices.
//! - [`check_peer`], [`Pin`]: the checks both sides run on the peer's chain.
//! - [`TlsSession`]: rustls over byte buffers, with the house verbs.
//!
//! This module does not own the transport: the session takes and gives bytes, and the path
//! it runs over (an ICE pair, a TURN relay) is the connector's.

mod der;
mod id;
mod identity;
mod revocation;
mod session;
mod verify;

pub use id::{AccountId, BadId, DeviceId};
/// Whether `issuer`'s key signed `cert` (for the signalling checks).
pub(crate) use identity::signed_by as identity_signed_by;
pub use identity::{Account, Device, IdentityError, Validity, derive_seed};
pub use revocation::{RevocationError, RevocationList, Revocations};
pub use session::{
    Input, Output, Role, SERVER_NAME, TlsFailure, TlsSession, TlsSetupError, UnixAnchor, provider,
};
/// Whether a device certificate is self-issued (for the signalling checks).
pub(crate) use verify::self_issued;
pub use verify::{PeerCheckError, PeerIdentity, PeerRole, Pin, check_peer, peer_check_failure};
