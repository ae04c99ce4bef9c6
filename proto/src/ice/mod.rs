//! ICE over TCP (RFC 8445 with RFC 6544's TCP candidates and RFC 4571 framing), speaking
//! Jami's ICE description.
//!
//! This module owns candidates and their Jami text lines ([`Candidate`]), the description
//! blob ([`Description`]), priorities ([`priority`]), the check list ([`CheckList`]) and the
//! [`Agent`] that runs the checks between two devices, nominates a pair and then carries the
//! application's bytes on it in RFC 4571 frames, as Jami does.
//!
//! It does **not** gather candidates: address discovery is external (as in str0m). The
//! owner lists local interface addresses, binds the listeners of the passive candidates,
//! asks a TURN client for relayed ones, and gives the agent the resulting [`Candidate`]s.
//! A relayed candidate is just a passive candidate of type `relay` at the lowest priority;
//! a connection that reaches us through the relay is handed to the agent as an accepted
//! connection like any other. The agent knows nothing of TURN.
//!
//! # Why the agent has its own `Input` / `Output`
//!
//! The agent speaks a narrower vocabulary than [`crate::io`] rather than implementing
//! [`crate::io::Endpoint`], for three reasons:
//! - it is always a child (of a connector, which also runs a TURN client, TLS and the DHT
//!   exchange), and a parent translates its children's outputs (DESIGN.md);
//! - an accepted connection must say which *local address* it arrived on, to find the
//!   local passive candidate, and `io::Input::Accepted` only names the listener, which the
//!   agent never sees (the owner binds listeners);
//! - an active candidate says which local IP to connect from ([`Output::Connect`]'s
//!   `local_ip`), which `io::Output::Connect` has no field for.
//!
//! Connection ids are [`crate::io::ConnId`]s: the agent numbers the connections it asks for
//! (`ConnId::Connect(0)`, `(1)`, …) in its own space, which a parent with several agents maps
//! to its own; accepted connections keep the driver's name.
//!
//! # What an agent does, in order
//!
//! 1. [`Agent::new`] with the local candidates; [`Agent::local_description`] goes to the
//!    peer. The overall ICE timeout starts now.
//! 2. [`Agent::set_remote_description`] forms the check list. Checks start, one per pacing
//!    interval (Ta): for each active pair, [`Output::Connect`], then on
//!    [`Input::Connected`] a Binding request on that connection.
//! 3. The peer's connections arrive as [`Input::Accepted`]; the first valid check on one
//!    makes a pair (learning a peer-reflexive candidate when its source matches no remote
//!    candidate); the response and a triggered check go back on the same connection.
//!    Checks that arrive before the remote description are answered, and their triggered
//!    check waits for it.
//! 4. The controlling agent nominates (regular nomination) the best valid pair once every
//!    higher-priority pair has finished, or after [`Config::nomination_wait`]. Both agents
//!    report [`Event::Selected`] with the connection; every other connection is closed.
//! 5. From then on [`Agent::send`] frames application bytes and [`Output::Data`] delivers
//!    the peer's; Binding requests every [`Config::keepalive_interval`] keep consent.
//!
//! Every failure has a reason: a pair fails with a [`PairFailure`]; the session fails with
//! [`Event::Failed`], which lists every pair and how it ended.
//!
//! # Deviations from the RFCs, and why
//!
//! - No retransmission of checks over TCP (RFC 6544 keeps STUN's 39.5 s transaction
//!   timeout); a check that gets no answer within [`Config::check_timeout`] fails its pair,
//!   since TCP already retransmits and Jami's whole negotiation lasts 10 s.
//! - A check arriving on an accepted connection is matched to a remote *active* candidate by
//!   IP address alone: active candidates advertise port 9 (RFC 6544 §4.5), so the source port
//!   cannot be compared. Only when no active candidate has that IP is a peer-reflexive one
//!   learned.
//! - A response's XOR-MAPPED-ADDRESS never makes a local peer-reflexive candidate: on TCP the
//!   valid pair is the pair whose connection carried the check (RFC 6544 §7.2).
//! - Consent freshness (RFC 7675) is a Binding request every keepalive interval on the
//!   selected pair, whatever the traffic; consent is lost when no authenticated response
//!   arrived for [`Config::consent_timeout`].
//! - Checks carry FINGERPRINT always; a message without one is dropped. On the selected
//!   connection the FINGERPRINT is also the demultiplexer (RFC 8489 §14.7): a frame that
//!   starts like STUN but does not decode with a valid one is the application's.
//! - An accepted connection must bring a valid check within [`Config::check_timeout`] or it
//!   is closed; a relayed or NATed peer that connects and then says nothing costs nothing.

mod agent;
mod candidate;
mod check_list;
mod description;
pub mod priority;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;

pub use agent::{Agent, Dropped};
pub use candidate::{ACTIVE_PORT, Candidate, CandidateError, CandidateType, TcpType, Transport};
pub use check_list::{CheckList, Origin, Pair, PairState};
pub use description::{BadLine, Description, DescriptionError, Parsed};
pub use priority::LocalPreference;

use crate::io::{ConnId, ConnectError};

/// Which agent decides (RFC 8445 §6.1.1). The answerer of a connection request is
/// controlling, the requester controlled, as in Jami.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Nominates the pair.
    Controlling,
    /// Accepts the nomination.
    Controlled,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Controlling => "controlling",
            Role::Controlled => "controlled",
        })
    }
}

/// Every timeout and limit of an agent. The defaults follow Jami where it has a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Ta: the pacing between two checks started (RFC 8445 §14.2: 50 ms).
    pub pacing: Duration,
    /// How long the driver may take to open a TCP connection.
    pub connect_timeout: Duration,
    /// How long a check may wait for its response on an open connection, and an accepted
    /// connection for its first valid check. There is no retransmission over TCP.
    pub check_timeout: Duration,
    /// The whole negotiation (Jami: 10 s), from [`Agent::new`] to a selected pair.
    pub ice_timeout: Duration,
    /// How long the controlling agent waits, after the first valid pair, for better pairs
    /// still in progress before it nominates the best valid one.
    pub nomination_wait: Duration,
    /// Interval between consent checks on the selected pair.
    pub keepalive_interval: Duration,
    /// Consent is lost when no consent check was answered for this long (RFC 7675: 30 s).
    pub consent_timeout: Duration,
    /// At most this many pairs are formed (RFC 8445 §6.1.2.5: 100).
    pub max_pairs: usize,
    /// At most this many connections at once, accepted ones included; more are closed.
    pub max_connections: usize,
    /// Application bytes that may arrive on a connection before it is selected (the peer
    /// selected first and started TLS); more and the connection is dropped.
    pub early_data_limit: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pacing: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(3),
            check_timeout: Duration::from_secs(2),
            ice_timeout: Duration::from_secs(10),
            nomination_wait: Duration::from_millis(500),
            keepalive_interval: Duration::from_secs(15),
            consent_timeout: Duration::from_secs(30),
            max_pairs: 100,
            max_connections: 200,
            early_data_limit: 64 * 1024,
        }
    }
}

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
    /// No pair was selected within [`Config::ice_timeout`].
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
    /// The peer sent more application bytes before selection than allowed.
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
