//! How an agent is set up: its role and every timeout and limit it keeps.

use std::fmt;
use std::time::Duration;

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
    /// The whole negotiation (Jami: 10 s), from [`Agent::new`](super::Agent::new) to a
    /// selected pair.
    pub ice_timeout: Duration,
    /// How long the controlling agent waits, after the first valid pair, for better pairs
    /// still in progress before it nominates the best valid one.
    pub nomination_wait: Duration,
    /// A failed active pair is tried again after this long, then after twice as long each
    /// time, up to 8 times as long (200 ms, 400 ms, 800 ms, then every 1.6 s), as long as
    /// the negotiation lasts: a SYN lost on a lossy path, or dropped by the peer's NAT
    /// because the peer started its checks later (the DHT carries the answer one way
    /// before the requester starts), must not end a pair for good (RFC 8445 §7.2.5.2
    /// leaves a failed pair failed, but over TCP a connect is the check's transport, and
    /// RFC 6544 §7.1's simultaneous open needs both SYNs in flight at once).
    pub connect_retry: Duration,
    /// At most this many retries per pair.
    pub max_connect_retries: u32,
    /// Interval between consent checks on the selected pair.
    pub keepalive_interval: Duration,
    /// Consent is lost when no consent check was answered for this long (RFC 7675: 30 s).
    pub consent_timeout: Duration,
    /// At most this many pairs are formed (RFC 8445 §6.1.2.5: 100), and at most as many
    /// again are learned from the peer's connections.
    pub max_pairs: usize,
    /// At most this many connections at once, accepted ones included; more are closed.
    pub max_connections: usize,
    /// Application bytes that may arrive on a connection before the remote description
    /// (the peer selected first and its application already speaks): past this many, the
    /// agent asks the driver to stop reading that connection
    /// ([`Output::PauseReading`](super::Output::PauseReading)), so TCP pushes back on the
    /// peer instead of the agent closing the connection the peer has selected. Reading
    /// resumes with the description.
    pub early_data_limit: usize,
    /// Application bytes the agent keeps, over all its connections, before it selects a
    /// pair: past this, the connection that brought them is closed, its pair failed with
    /// [`PairFailure::EarlyDataOverflow`](super::PairFailure::EarlyDataOverflow) (or, without
    /// a pair yet, counted in [`Dropped::early_data_overflow`](super::Dropped)). See
    /// [`EARLY_DATA_CAP`].
    pub early_data_cap: usize,
}

/// The default [`Config::early_data_cap`]: 4 MiB. Once the remote description has come,
/// reading must resume, because the answer to our triggered check sits behind the peer's
/// bytes on the same stream; until that answer arrives, the peer streams at the speed of the
/// path for about one round trip (our check out, its answer back, behind its data). 4 MiB
/// holds a round trip of 300 ms at 100 Mbit/s, and bounds what one session can make us keep
/// for a peer that never answers.
pub const EARLY_DATA_CAP: usize = 4 * 1024 * 1024;

impl Default for Config {
    fn default() -> Self {
        Config {
            pacing: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(3),
            check_timeout: Duration::from_secs(2),
            ice_timeout: Duration::from_secs(10),
            nomination_wait: Duration::from_millis(500),
            connect_retry: Duration::from_millis(200),
            max_connect_retries: 8,
            keepalive_interval: Duration::from_secs(15),
            consent_timeout: Duration::from_secs(30),
            max_pairs: 100,
            max_connections: 200,
            early_data_limit: 64 * 1024,
            early_data_cap: EARLY_DATA_CAP,
        }
    }
}
