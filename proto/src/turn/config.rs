//! How to reach and use a TURN server: its address, credentials and the family of the
//! relayed address asked for.

use core::net::SocketAddr;
use std::time::Duration;

/// Which address family the relay is in (RFC 6156: one allocation per family).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// An IPv4 relayed address.
    V4,
    /// An IPv6 relayed address.
    V6,
}

/// How to reach and use a TURN server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnConfig {
    /// The server's TCP address.
    pub server: SocketAddr,
    /// Long-term credential username.
    pub username: String,
    /// Long-term credential password.
    pub password: String,
    /// The relayed address's family.
    pub family: Family,
    /// The allocation lifetime to ask for.
    pub lifetime: Duration,
    /// How long a request may wait for its answer (Jami: 10 s).
    pub request_timeout: Duration,
    /// How long a TCP connection to the server may take.
    pub connect_timeout: Duration,
    /// The longest the allocation goes without a Refresh, whatever its lifetime: a control
    /// connection that died without a word (the server restarted while its reset could not
    /// reach us, a path that went dark) is noticed within this and `request_timeout`, not at
    /// half the lifetime (300 s).
    pub keepalive: Duration,
}

impl TurnConfig {
    /// A configuration with Ferry's defaults: IPv4, 600 s lifetime, 10 s timeouts, a
    /// Refresh at least every 60 s.
    pub fn new(
        server: SocketAddr,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> TurnConfig {
        TurnConfig {
            server,
            username: username.into(),
            password: password.into(),
            family: Family::V4,
            lifetime: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(60),
        }
    }
}
