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
    /// Interval between consent checks on the selected pair.
    pub keepalive_interval: Duration,
    /// Consent is lost when no consent check was answered for this long (RFC 7675: 30 s).
    pub consent_timeout: Duration,
    /// At most this many pairs are formed (RFC 8445 §6.1.2.5: 100), and at most as many
    /// again are learned from the peer's connections.
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
