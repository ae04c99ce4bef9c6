//! ICE candidate lines and Jami's ICE description.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ferry_proto::ice::{Candidate, CandidateType, Description, TcpType};

use super::Script;

/// A candidate line: any text parses or is refused without panicking, and a parsed candidate
/// prints to a line that parses to it again. Then a candidate made from the input prints and
/// parses back to itself.
pub fn ice_candidate(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    if let Ok(c) = line.parse::<Candidate>() {
        assert_eq!(c.to_string().parse::<Candidate>(), Ok(c.clone()), "{c}");
    }
    let mut s = Script::new(data);
    let kind = match s.byte() % 4 {
        0 => CandidateType::Host,
        1 => CandidateType::ServerReflexive,
        2 => CandidateType::PeerReflexive,
        _ => CandidateType::Relayed,
    };
    let tcp_type = match s.byte() % 3 {
        0 => TcpType::Active,
        1 => TcpType::Passive,
        _ => TcpType::SimultaneousOpen,
    };
    let ip = if s.byte() & 1 == 0 {
        IpAddr::V4(Ipv4Addr::from(s.u32()))
    } else {
        let mut octets = [0u8; 16];
        octets.iter_mut().for_each(|o| *o = s.byte());
        IpAddr::V6(Ipv6Addr::from(octets))
    };
    let c = Candidate::tcp(kind, tcp_type, SocketAddr::new(ip, s.u16()), s.u16());
    assert_eq!(c.to_string().parse::<Candidate>(), Ok(c.clone()), "{c}");
}

/// A description: any text parses or is refused without panicking; a parsed one prints to
/// text that parses to the same description with no bad line.
pub fn ice_description(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(parsed) = Description::parse(&text) else {
        return;
    };
    for bad in &parsed.bad_lines {
        assert!(bad.number >= 3, "the first two lines are the credentials");
    }
    let printed = parsed.description.to_string();
    let again = Description::parse(&printed).expect("a printed description parses");
    assert_eq!(again.description, parsed.description);
    assert!(again.bad_lines.is_empty());
}
