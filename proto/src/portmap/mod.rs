//! Port mapping on the home router: the wire formats of PCP (RFC 6887), NAT-PMP (RFC 6886)
//! and UPnP-IGD (SSDP, then SOAP over HTTP), as pure functions.
//!
//! The driver does the I/O (a service like interface discovery, see `ferry-driver`'s
//! `portmap`): it finds the gateway, sends what [`pcp`], [`natpmp`] and [`upnp`] build and
//! hands their replies to the parsers here. What it obtains reaches the node as
//! [`Input::PortMapped`](crate::io::Input::PortMapped) and, when a renewal fails,
//! [`Input::PortMappingLost`](crate::io::Input::PortMappingLost); the node offers the
//! external address as a `typ srflx tcptype passive` candidate, as Jami does (its lines
//! have no "mapped" type).
//!
//! Every parser takes untrusted bytes: it never panics, reads at most the bytes it was
//! given (the driver bounds those), and answers a [`MapError`] that says what was wrong.

pub mod natpmp;
pub mod pcp;
pub mod upnp;

use core::net::SocketAddr;
use std::fmt;
use std::time::Duration;

/// Which protocol obtained a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MappingProtocol {
    /// Port Control Protocol, RFC 6887 (MAP opcode).
    Pcp,
    /// NAT Port Mapping Protocol, RFC 6886.
    NatPmp,
    /// UPnP Internet Gateway Device (WANIPConnection / WANPPPConnection).
    UpnpIgd,
}

impl MappingProtocol {
    /// The name used in logs, events and tests: `pcp`, `nat-pmp`, `upnp-igd`.
    pub fn as_str(self) -> &'static str {
        match self {
            MappingProtocol::Pcp => "pcp",
            MappingProtocol::NatPmp => "nat-pmp",
            MappingProtocol::UpnpIgd => "upnp-igd",
        }
    }
}

impl fmt::Display for MappingProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TCP port the gateway forwards to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// Our listening address on the LAN (what the gateway forwards to).
    pub internal: SocketAddr,
    /// Where peers reach it from outside.
    pub external: SocketAddr,
    /// How long the gateway keeps it unless renewed (already clamped by [`checked_lease`]).
    pub lease: Duration,
    /// Which protocol obtained it.
    pub protocol: MappingProtocol,
}

/// The lease we ask for. Short enough that a mapping left behind by a crash goes away the
/// same day; long enough that renewals (at half of it) cost nothing.
pub const REQUESTED_LEASE: Duration = Duration::from_secs(3600);

/// The shortest lease we accept: a gateway that grants less would have us renew in a busy
/// loop (RFC 6887 §11.2.1 lets a server shorten a lifetime, not to nothing).
pub const MIN_LEASE: Duration = Duration::from_secs(30);

/// Checks a granted lease: 0 (which PCP and NAT-PMP use for "deleted") and anything under
/// [`MIN_LEASE`] is refused; anything longer than we asked for is taken as what we asked for,
/// so an enormous lease never puts a renewal out of reach (we renew at half of it).
pub fn checked_lease(granted: Duration) -> Result<Duration, MapError> {
    if granted < MIN_LEASE {
        return Err(MapError::Lease(granted.as_secs()));
    }
    Ok(granted.min(REQUESTED_LEASE))
}

/// When to renew a mapping granted for `lease`: at half of it (as TURN refreshes do).
pub fn renew_after(lease: Duration) -> Duration {
    lease / 2
}

/// What went wrong asking a gateway for a mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The reply is not what the protocol allows here (too short, wrong version or opcode,
    /// unparsable text).
    #[error("malformed reply: {0}")]
    Malformed(&'static str),
    /// The reply answers someone else's request (another nonce, port or protocol): it is
    /// ignored, never taken as our mapping.
    #[error("a reply for another request: {0}")]
    NotOurs(&'static str),
    /// The gateway refused, with the protocol's result code and its meaning.
    #[error("the gateway refused: {code} ({meaning})")]
    Refused {
        /// The result code (PCP, NAT-PMP) or UPnP error code.
        code: u32,
        /// What the protocol says it means.
        meaning: String,
    },
    /// A granted lease of 0 or under [`MIN_LEASE`], in seconds.
    #[error("the gateway granted a lease of {0} s (at least 30 s needed)")]
    Lease(u64),
    /// A reply larger than we read.
    #[error("a reply over {0} bytes")]
    TooLarge(usize),
    /// The gateway named an external address we cannot use (unspecified, or of the other
    /// family).
    #[error("an unusable external address: {0}")]
    Address(String),
}
