//! What an agent and its owner say to each other: the inputs it takes, the outputs it asks
//! for, and the events that tell how the session goes, with a reason for every failure.

use core::net::{IpAddr, SocketAddr};
use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use super::candidate::{Candidate, CandidateType};
use super::check_list::PairState;
use super::config::Role;
use crate::io::{ConnId, ConnectError};

/// What the owner feeds an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A connection asked for with [`Output::Connect`] is open.
    Connected {
        /// Which connection.
        conn: ConnId,
        /// The local address it uses.
        local: SocketAddr,
    },
    /// A connection asked for with [`Output::Connect`] could not be opened.
    ConnectFailed {
        /// Which connection.
        conn: ConnId,
        /// Why.
        error: ConnectError,
    },
    /// The peer opened a connection to one of our passive candidates (directly, or through
    /// our TURN relay).
    Accepted {
        /// The driver's name for it, always [`ConnId::Accepted`].
        conn: ConnId,
        /// The address it arrived on: a passive candidate's address.
        local: SocketAddr,
        /// The peer's address as we see it.
        remote: SocketAddr,
    },
    /// Bytes arrived on a connection; any split is possible.
    Received {
        /// Which connection.
        conn: ConnId,
        /// The bytes.
        data: Bytes,
    },
    /// The peer closed the connection (half or whole: ICE has no use for a half).
    Closed {
        /// Which connection.
        conn: ConnId,
    },
    /// The connection was reset.
    Reset {
        /// Which connection.
        conn: ConnId,
    },
}

/// What an agent asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Open a TCP connection from `local_ip` to `remote`, giving up after `timeout`.
    Connect {
        /// The agent's name for it, always [`ConnId::Connect`].
        conn: ConnId,
        /// The remote passive candidate.
        remote: SocketAddr,
        /// The IP of the local active candidate to connect from.
        local_ip: IpAddr,
        /// The local active candidate is a relayed one (`typ relay tcptype active`): the
        /// owner opens the connection through its TURN allocation at `local_ip` (RFC 6062
        /// Connect) instead of from a local address, and reports it like any other.
        relayed: bool,
        /// Answer [`ConnectError::TimedOut`] after this long.
        timeout: Duration,
    },
    /// Queue bytes (whole RFC 4571 frames) on a connection.
    Send {
        /// Which connection.
        conn: ConnId,
        /// The bytes.
        data: Bytes,
    },
    /// Close a connection the agent no longer needs.
    Close {
        /// Which connection.
        conn: ConnId,
    },
    /// Stop delivering [`Input::Received`] for this connection until
    /// [`Output::ResumeReading`]: the peer's application bytes came before the remote
    /// description, and TCP's window should push back on the peer meanwhile.
    PauseReading {
        /// Which connection.
        conn: ConnId,
    },
    /// Deliver [`Input::Received`] for this connection again.
    ResumeReading {
        /// Which connection.
        conn: ConnId,
    },
    /// Application bytes the peer sent on the selected pair, unframed.
    Data {
        /// The selected connection.
        conn: ConnId,
        /// The bytes of one frame.
        data: Bytes,
    },
    /// Something for the owner.
    Event(Event),
}

/// What happened, for the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The peer's check came from an address that is none of its candidates: a new remote
    /// peer-reflexive candidate.
    PeerReflexive {
        /// The learned candidate.
        candidate: Candidate,
    },
    /// A role conflict made this agent change role.
    RoleChanged {
        /// The new role.
        role: Role,
    },
    /// A pair is nominated: its connection now carries the application's bytes.
    Selected {
        /// The connection.
        conn: ConnId,
        /// Our candidate.
        local: Candidate,
        /// The peer's candidate.
        remote: Candidate,
    },
    /// ICE is over without a path, or the selected path was lost.
    Failed {
        /// Why.
        reason: FailReason,
        /// Every pair and how it ended.
        pairs: Vec<PairReport>,
    },
}

/// Why an ICE session failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailReason {
    /// No pair was selected within [`Config::ice_timeout`](super::Config::ice_timeout).
    Timeout,
    /// The selected pair's connection closed or was reset.
    SelectedConnectionLost,
    /// The peer stopped answering consent checks on the selected pair.
    ConsentExpired,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailReason::Timeout => "ICE timeout",
            FailReason::SelectedConnectionLost => "selected connection lost",
            FailReason::ConsentExpired => "consent expired",
        })
    }
}

/// Why one pair failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PairFailure {
    /// The TCP connection could not be opened.
    ConnectFailed(ConnectError),
    /// The connection was reset.
    Reset,
    /// The peer closed the connection.
    Closed,
    /// The connection opened but no response (or no check) came in time.
    Silent,
    /// The peer answered with this STUN error code.
    ErrorResponse(u16),
    /// The peer sent more application bytes before selection than the agent keeps
    /// ([`Config::early_data_cap`](super::Config::early_data_cap)).
    EarlyDataOverflow,
}

impl fmt::Display for PairFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PairFailure::ConnectFailed(e) => write!(f, "connect failed ({e:?})"),
            PairFailure::Reset => f.write_str("reset"),
            PairFailure::Closed => f.write_str("closed by peer"),
            PairFailure::Silent => f.write_str("no answer"),
            PairFailure::ErrorResponse(code) => write!(f, "error response {code}"),
            PairFailure::EarlyDataOverflow => f.write_str("too much early data"),
        }
    }
}

/// One pair in a [`Event::Failed`] report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairReport {
    /// Our candidate's address.
    pub local: SocketAddr,
    /// The peer's candidate's address.
    pub remote: SocketAddr,
    /// The peer's candidate's type.
    pub remote_kind: CandidateType,
    /// How the pair ended.
    pub state: PairState,
}
