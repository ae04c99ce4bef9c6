//! One ICE candidate and Jami's text line for it.
//!
//! ```text
//! <foundation> <component> <UDP|TCP> <priority> <ip> <port> typ <host|srflx|prflx|relay>[ tcptype <active|passive|so>]
//! H6e6ca682 1 TCP 2130706431 2607:fad8:4:6:9eb6:d0ff:dead:c0de 50693 typ host tcptype passive
//! ```
//!
//! This is the line Jami puts in its ICE description: no `a=candidate:` prefix, IPv6 without
//! brackets, no `raddr` / `rport`. Active TCP candidates advertise port 9 (RFC 6544 §4.5):
//! the real source port is chosen when the connection opens. Printing a parsed line gives
//! back the same bytes. Name–value extensions after the type (`raddr …`, `generation …`)
//! are accepted and ignored, as RFC 8839 asks, so such a line does not print back whole.

use core::net::{IpAddr, SocketAddr};
use std::fmt;
use std::str::FromStr;

use super::priority::{candidate_priority, tcp_local_preference};

/// The port an active TCP candidate advertises (RFC 6544 §4.5).
pub const ACTIVE_PORT: u16 = 9;

/// UDP or TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Transport {
    /// UDP: parsed and printed, never paired by Ferry's TCP-only agent.
    Udp,
    /// TCP (RFC 6544).
    Tcp,
}

/// How the address was found (RFC 8445 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CandidateType {
    /// An address of a local interface (`host`).
    Host,
    /// The public address a STUN or TURN server saw, or a UPnP mapping (`srflx`).
    ServerReflexive,
    /// An address learned from an incoming check (`prflx`).
    PeerReflexive,
    /// An address on a TURN relay (`relay`).
    Relayed,
}

impl CandidateType {
    /// The token after `typ`.
    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::ServerReflexive => "srflx",
            CandidateType::PeerReflexive => "prflx",
            CandidateType::Relayed => "relay",
        }
    }

    /// The type preference of this kind of candidate (pjnath's table, RFC 8445 §5.1.2.2):
    /// host 126, peer-reflexive 110, server-reflexive 100, relayed 0.
    pub fn type_preference(self) -> u8 {
        match self {
            CandidateType::Host => 126,
            CandidateType::PeerReflexive => 110,
            CandidateType::ServerReflexive => 100,
            CandidateType::Relayed => 0,
        }
    }

    /// The first letter of the foundations Ferry makes (pjnath's habit: `H…`, `S…`).
    fn foundation_prefix(self) -> char {
        match self {
            CandidateType::Host => 'H',
            CandidateType::ServerReflexive => 'S',
            CandidateType::PeerReflexive => 'P',
            CandidateType::Relayed => 'R',
        }
    }
}

/// The TCP role of a candidate (RFC 6544 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TcpType {
    /// Opens connections, never accepts them.
    Active,
    /// Accepts connections, never opens them.
    Passive,
    /// Simultaneous open (`so`, RFC 6544 §4.5): both sides open a connection to each other
    /// from this address at once. Paired only with the peer's `so` candidates.
    SimultaneousOpen,
}

impl TcpType {
    /// The token after `tcptype`.
    pub fn as_str(self) -> &'static str {
        match self {
            TcpType::Active => "active",
            TcpType::Passive => "passive",
            TcpType::SimultaneousOpen => "so",
        }
    }

    /// RFC 6544 §4.2's direction preference (0–7) of a candidate of this TCP type and `kind`,
    /// with libnice's table: a host or relayed address prefers active (6), then passive (4),
    /// then simultaneous open (2), since a host can always open a connection; behind a NAT
    /// (server- and peer-reflexive) simultaneous open comes first (6), then active (4), then
    /// passive (2), since an inbound SYN needs a mapping the NAT may not keep open.
    pub fn direction_preference(self, kind: CandidateType) -> u16 {
        let natted = matches!(
            kind,
            CandidateType::ServerReflexive | CandidateType::PeerReflexive
        );
        match (self, natted) {
            (TcpType::Active, false) | (TcpType::SimultaneousOpen, true) => 6,
            (TcpType::Passive, false) | (TcpType::Active, true) => 4,
            (TcpType::SimultaneousOpen, false) | (TcpType::Passive, true) => 2,
        }
    }
}

/// One candidate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Candidate {
    /// Opaque; candidates with the same foundation share a base and a way of being found.
    pub foundation: String,
    /// Always 1 in Ferry and Jami (one stream).
    pub component: u16,
    /// UDP or TCP.
    pub transport: Transport,
    /// RFC 8445 priority.
    pub priority: u32,
    /// Address and port (port 9 for an active TCP candidate).
    pub addr: SocketAddr,
    /// How the address was found.
    pub kind: CandidateType,
    /// For TCP: active, passive or simultaneous open.
    pub tcp_type: Option<TcpType>,
}

impl Candidate {
    /// A local TCP candidate of component 1, with a foundation made the way pjnath does
    /// (type letter, then eight hex digits: the IPv4 address, or a hash of the IPv6 one) and
    /// the priority of [`candidate_priority`], its local preference folded with RFC 6544's
    /// direction preference ([`tcp_local_preference`]). An active candidate gets port 9
    /// whatever `addr` says.
    pub fn tcp(
        kind: CandidateType,
        tcp_type: TcpType,
        addr: SocketAddr,
        local_preference: u16,
    ) -> Candidate {
        let addr = match tcp_type {
            TcpType::Active => SocketAddr::new(addr.ip(), ACTIVE_PORT),
            _ => addr,
        };
        Candidate {
            foundation: foundation(kind, addr.ip()),
            component: 1,
            transport: Transport::Tcp,
            priority: candidate_priority(
                kind.type_preference(),
                tcp_local_preference(kind, tcp_type, local_preference),
                1,
            ),
            addr,
            kind,
            tcp_type: Some(tcp_type),
        }
    }

    /// Whether this is a TCP candidate that opens connections.
    pub fn is_active(&self) -> bool {
        self.transport == Transport::Tcp && self.tcp_type == Some(TcpType::Active)
    }

    /// Whether this is a TCP candidate that accepts connections.
    pub fn is_passive(&self) -> bool {
        self.transport == Transport::Tcp && self.tcp_type == Some(TcpType::Passive)
    }

    /// Whether this is a TCP simultaneous-open candidate.
    pub fn is_so(&self) -> bool {
        self.transport == Transport::Tcp && self.tcp_type == Some(TcpType::SimultaneousOpen)
    }
}

/// A foundation the way pjnath makes them: one letter for the type, then the base address
/// folded into 32 bits. Foundations are opaque to the peer; equal ones only say "same base,
/// same type".
fn foundation(kind: CandidateType, ip: IpAddr) -> String {
    let folded = match ip {
        IpAddr::V4(v4) => u32::from(v4),
        // FNV-1a over the 16 bytes: stable, and spreads addresses that differ in one byte.
        IpAddr::V6(v6) => v6.octets().iter().fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        }),
    };
    format!("{}{folded:08x}", kind.foundation_prefix())
}

impl fmt::Display for Candidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let transport = match self.transport {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        };
        write!(
            f,
            "{} {} {transport} {} {} {} typ {}",
            self.foundation,
            self.component,
            self.priority,
            self.addr.ip(),
            self.addr.port(),
            self.kind.as_str()
        )?;
        if let Some(t) = self.tcp_type {
            write!(f, " tcptype {}", t.as_str())?;
        }
        Ok(())
    }
}

/// Why a candidate line was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CandidateError {
    /// Fewer fields than a candidate needs.
    #[error("too few fields")]
    TooShort,
    /// The foundation is empty, longer than 32, or not made of ICE characters.
    #[error("bad foundation")]
    Foundation,
    /// The component is not a number from 1 to 256.
    #[error("bad component")]
    Component,
    /// Neither UDP nor TCP.
    #[error("bad transport")]
    Transport,
    /// The priority is not a number from 1 to 2^32 − 1.
    #[error("bad priority")]
    Priority,
    /// Not an IPv4 or IPv6 address (a placeholder like `X.X.X.X`, a bracketed IPv6, a name).
    #[error("bad address")]
    Address,
    /// Not a port number.
    #[error("bad port")]
    Port,
    /// `typ` missing, or an unknown type.
    #[error("bad type")]
    Type,
    /// A TCP candidate without a known `tcptype`.
    #[error("bad tcptype")]
    TcpType,
    /// An extension without a value.
    #[error("extension without a value")]
    Extension,
}

fn is_ice_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '+' || c == '/'
}

impl FromStr for Candidate {
    type Err = CandidateError;

    fn from_str(line: &str) -> Result<Candidate, CandidateError> {
        let mut fields = line.split_ascii_whitespace();
        let mut next = || fields.next().ok_or(CandidateError::TooShort);
        let foundation = next()?;
        if foundation.is_empty() || foundation.len() > 32 || !foundation.chars().all(is_ice_char) {
            return Err(CandidateError::Foundation);
        }
        let component: u16 = next()?.parse().map_err(|_| CandidateError::Component)?;
        if !(1..=256).contains(&component) {
            return Err(CandidateError::Component);
        }
        let transport = match next()? {
            t if t.eq_ignore_ascii_case("TCP") => Transport::Tcp,
            t if t.eq_ignore_ascii_case("UDP") => Transport::Udp,
            _ => return Err(CandidateError::Transport),
        };
        let priority: u32 = next()?.parse().map_err(|_| CandidateError::Priority)?;
        if priority == 0 {
            return Err(CandidateError::Priority);
        }
        let ip: IpAddr = next()?.parse().map_err(|_| CandidateError::Address)?;
        let port: u16 = next()?.parse().map_err(|_| CandidateError::Port)?;
        if next()? != "typ" {
            return Err(CandidateError::Type);
        }
        let kind = match next()? {
            "host" => CandidateType::Host,
            "srflx" => CandidateType::ServerReflexive,
            "prflx" => CandidateType::PeerReflexive,
            "relay" => CandidateType::Relayed,
            _ => return Err(CandidateError::Type),
        };
        let mut tcp_type = None;
        while let Some(name) = fields.next() {
            let value = fields.next().ok_or(CandidateError::Extension)?;
            if name == "tcptype" {
                tcp_type = Some(match value {
                    "active" => TcpType::Active,
                    "passive" => TcpType::Passive,
                    "so" => TcpType::SimultaneousOpen,
                    _ => return Err(CandidateError::TcpType),
                });
            }
        }
        match (transport, tcp_type) {
            (Transport::Tcp, None) => return Err(CandidateError::TcpType),
            (Transport::Udp, Some(_)) => return Err(CandidateError::TcpType),
            _ => {}
        }
        Ok(Candidate {
            foundation: foundation.to_owned(),
            component,
            transport,
            priority,
            addr: SocketAddr::new(ip, port),
            kind,
            tcp_type,
        })
    }
}
