//! What can go wrong with a TURN server, each with its own name.

use std::fmt;

use crate::io::ConnectError;

/// Why a TURN operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TurnError {
    /// The server could not be reached.
    Unreachable(ConnectError),
    /// The control connection closed or reset: the allocation is gone.
    ControlLost,
    /// No answer within the request timeout.
    Timeout,
    /// 401 after we authenticated: the username or password is wrong.
    WrongCredentials,
    /// 403 Forbidden (for a peer: the address is not allowed, for example not permitted).
    Forbidden,
    /// 437 Allocation Mismatch: the server has no (or another) allocation for us.
    AllocationMismatch,
    /// 440 Address Family not Supported.
    AddressFamilyNotSupported,
    /// 441 Wrong Credentials: the credentials differ from the allocation's.
    CredentialsMismatch,
    /// 442 Unsupported Transport Protocol (the server does not relay TCP).
    UnsupportedTransport,
    /// 443 Peer Address Family Mismatch.
    PeerAddressFamilyMismatch,
    /// 446 Connection Already Exists (to that peer).
    ConnectionAlreadyExists,
    /// 447 Connection Timeout or Failure (the server could not reach the peer).
    ConnectionFailed,
    /// 486 Allocation Quota Reached.
    QuotaReached,
    /// 508 Insufficient Capacity.
    InsufficientCapacity,
    /// 438 Stale Nonce kept coming back after we re-signed with the new nonce.
    StaleNonceLoop,
    /// Another error code.
    Server {
        /// The code.
        code: u16,
        /// The server's reason phrase.
        reason: String,
    },
    /// The server's answer did not make sense (missing attribute, bad integrity…).
    BadResponse(&'static str),
}

impl TurnError {
    /// The error for a STUN error code the server sent (401 here means "after we signed").
    pub fn from_code(code: u16, reason: &str) -> TurnError {
        match code {
            401 => TurnError::WrongCredentials,
            403 => TurnError::Forbidden,
            437 => TurnError::AllocationMismatch,
            440 => TurnError::AddressFamilyNotSupported,
            441 => TurnError::CredentialsMismatch,
            442 => TurnError::UnsupportedTransport,
            443 => TurnError::PeerAddressFamilyMismatch,
            446 => TurnError::ConnectionAlreadyExists,
            447 => TurnError::ConnectionFailed,
            486 => TurnError::QuotaReached,
            508 => TurnError::InsufficientCapacity,
            code => TurnError::Server {
                code,
                reason: reason.to_owned(),
            },
        }
    }
}

impl fmt::Display for TurnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TurnError::Unreachable(e) => write!(f, "TURN server unreachable: {e:?}"),
            TurnError::ControlLost => f.write_str("the TURN control connection was lost"),
            TurnError::Timeout => f.write_str("the TURN server did not answer in time"),
            TurnError::WrongCredentials => f.write_str("401: wrong TURN username or password"),
            TurnError::Forbidden => f.write_str("403: forbidden"),
            TurnError::AllocationMismatch => f.write_str("437: allocation mismatch"),
            TurnError::AddressFamilyNotSupported => {
                f.write_str("440: address family not supported")
            }
            TurnError::CredentialsMismatch => {
                f.write_str("441: wrong credentials for this allocation")
            }
            TurnError::UnsupportedTransport => f.write_str("442: the server does not relay TCP"),
            TurnError::PeerAddressFamilyMismatch => {
                f.write_str("443: peer address family mismatch")
            }
            TurnError::ConnectionAlreadyExists => {
                f.write_str("446: a connection to that peer exists")
            }
            TurnError::ConnectionFailed => {
                f.write_str("447: the server could not connect to the peer")
            }
            TurnError::QuotaReached => f.write_str("486: allocation quota reached"),
            TurnError::InsufficientCapacity => f.write_str("508: insufficient capacity"),
            TurnError::StaleNonceLoop => f.write_str("438: the nonce stayed stale"),
            TurnError::Server { code, reason } => write!(f, "{code}: {reason}"),
            TurnError::BadResponse(what) => write!(f, "bad TURN response: {what}"),
        }
    }
}

impl std::error::Error for TurnError {}
