//! What a TURN client tells its owner.

use core::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;

use super::TurnError;
use crate::io::ConnId;

/// What the TURN client tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TurnEvent {
    /// The allocation exists.
    Allocated {
        /// The relayed transport address: give it to peers as a relayed candidate.
        relayed: SocketAddr,
        /// Our address as the server sees it (server-reflexive).
        mapped: SocketAddr,
        /// How long the server keeps it without a refresh.
        lifetime: Duration,
    },
    /// A refresh succeeded.
    Refreshed {
        /// The new lifetime.
        lifetime: Duration,
    },
    /// The server installed (or refreshed) permissions for these addresses.
    Permitted {
        /// The addresses.
        ips: Vec<IpAddr>,
    },
    /// The server refused permissions for these addresses.
    PermissionFailed {
        /// The addresses.
        ips: Vec<IpAddr>,
        /// Why.
        error: TurnError,
    },
    /// A data connection to a peer is bound: from now on it carries the peer's raw bytes.
    PeerStream {
        /// The data connection.
        conn: ConnId,
        /// The peer.
        peer: SocketAddr,
        /// Whether the peer connected to our relay (ConnectionAttempt) rather than we to it.
        incoming: bool,
    },
    /// Bytes from a peer on a bound data connection.
    PeerData {
        /// The data connection.
        conn: ConnId,
        /// The bytes.
        data: Bytes,
    },
    /// Bytes queued on a data connection left the driver's queue.
    PeerWritable {
        /// The data connection.
        conn: ConnId,
        /// How many bytes.
        bytes: usize,
    },
    /// A data connection ended (the relay turns a peer's close into a reset).
    PeerClosed {
        /// The data connection.
        conn: ConnId,
    },
    /// A connection to or from a peer could not be set up.
    PeerConnectFailed {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        error: TurnError,
    },
    /// The allocation failed or was lost; the client is done.
    Failed {
        /// Why.
        error: TurnError,
    },
    /// The allocation was deleted on request; the client is done.
    Deallocated,
}
