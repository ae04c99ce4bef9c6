//! PCP (RFC 6887): a MAP request for one TCP port, and its response.
//!
//! Both are 60 bytes: a 24-byte common header (§7.1, §7.2) and the 36-byte MAP opcode
//! (§11.1). Addresses travel as 16 bytes, IPv4 as IPv4-mapped IPv6 (§5). The client checks
//! the nonce, protocol and internal port of a response before taking it (§11.3): anything
//! else is another client's answer.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use super::{MapError, MappingProtocol, PortMapping, checked_lease};

/// The PCP server's port on the gateway (§19.1); NAT-PMP's too.
pub const SERVER_PORT: u16 = 5351;
/// PCP's version number.
pub const VERSION: u8 = 2;
/// The MAP opcode.
pub const OPCODE_MAP: u8 = 1;
/// Size of a MAP request or response without options.
pub const MAP_LEN: usize = 60;
/// Largest PCP message (§7): what a driver reads.
pub const MAX_MESSAGE: usize = 1100;
/// IANA protocol number of TCP.
const TCP: u8 = 6;

/// A MAP request: `nonce` names it (and its renewals), `client` is our LAN address (the
/// gateway checks it against the packet's source), `internal_port` our listening port.
/// `lifetime` 0 deletes the mapping (§15). `suggested` is the external address we had.
pub fn map_request(
    nonce: [u8; 12],
    client: IpAddr,
    internal_port: u16,
    lifetime: Duration,
    suggested: Option<SocketAddr>,
) -> [u8; MAP_LEN] {
    let mut out = [0u8; MAP_LEN];
    out[0] = VERSION;
    out[1] = OPCODE_MAP;
    let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
    out[4..8].copy_from_slice(&secs.to_be_bytes());
    out[8..24].copy_from_slice(&mapped(client).octets());
    out[24..36].copy_from_slice(&nonce);
    out[36] = TCP;
    out[40..42].copy_from_slice(&internal_port.to_be_bytes());
    let (port, ip) = match suggested {
        Some(s) => (s.port(), s.ip()),
        // All zeros: "no preference" (§11.1 asks for the unspecified address of the family).
        None => (0, unspecified_like(client)),
    };
    out[42..44].copy_from_slice(&port.to_be_bytes());
    out[44..60].copy_from_slice(&mapped(ip).octets());
    out
}

/// A MAP response to our request named by `nonce` for `internal`: the mapping, or why not.
/// `internal` is our listening address (reported back unchanged in the mapping).
pub fn parse_map_response(
    reply: &[u8],
    nonce: [u8; 12],
    internal: SocketAddr,
) -> Result<PortMapping, MapError> {
    if reply.len() > MAX_MESSAGE {
        return Err(MapError::TooLarge(MAX_MESSAGE));
    }
    if reply.len() < 4 {
        return Err(MapError::Malformed("shorter than a PCP header"));
    }
    // A NAT-PMP-only gateway answers a version it does not speak with its own version 0
    // header and result 1 (RFC 6887 §9, RFC 6886 §3.5): the caller falls back to NAT-PMP.
    if reply[0] != VERSION {
        return Err(MapError::Refused {
            code: 1,
            meaning: format!("UNSUPP_VERSION (the gateway speaks version {})", reply[0]),
        });
    }
    if reply[1] != 0x80 | OPCODE_MAP {
        return Err(MapError::Malformed("not a MAP response"));
    }
    let result = reply[3];
    if result != 0 {
        return Err(MapError::Refused {
            code: u32::from(result),
            meaning: result_meaning(result).to_owned(),
        });
    }
    if reply.len() < MAP_LEN {
        return Err(MapError::Malformed("shorter than a MAP response"));
    }
    if reply[24..36] != nonce {
        return Err(MapError::NotOurs("another nonce"));
    }
    if reply[36] != TCP {
        return Err(MapError::NotOurs("another protocol"));
    }
    if u16::from_be_bytes([reply[40], reply[41]]) != internal.port() {
        return Err(MapError::NotOurs("another internal port"));
    }
    let lifetime = u32::from_be_bytes([reply[4], reply[5], reply[6], reply[7]]);
    let lease = checked_lease(Duration::from_secs(u64::from(lifetime)))?;
    let port = u16::from_be_bytes([reply[42], reply[43]]);
    let mut ip16 = [0u8; 16];
    ip16.copy_from_slice(&reply[44..60]);
    let ip = unmapped(Ipv6Addr::from(ip16));
    if port == 0 || ip.is_unspecified() || ip.is_ipv4() != internal.is_ipv4() {
        return Err(MapError::Address(SocketAddr::new(ip, port).to_string()));
    }
    Ok(PortMapping {
        internal,
        external: SocketAddr::new(ip, port),
        lease,
        protocol: MappingProtocol::Pcp,
    })
}

/// What a PCP result code means (§7.4).
pub fn result_meaning(code: u8) -> &'static str {
    match code {
        0 => "SUCCESS",
        1 => "UNSUPP_VERSION",
        2 => "NOT_AUTHORIZED",
        3 => "MALFORMED_REQUEST",
        4 => "UNSUPP_OPCODE",
        5 => "UNSUPP_OPTION",
        6 => "MALFORMED_OPTION",
        7 => "NETWORK_FAILURE",
        8 => "NO_RESOURCES",
        9 => "UNSUPP_PROTOCOL",
        10 => "USER_EX_QUOTA",
        11 => "CANNOT_PROVIDE_EXTERNAL",
        12 => "ADDRESS_MISMATCH",
        13 => "EXCESSIVE_REMOTE_PEERS",
        _ => "unknown result code",
    }
}

fn mapped(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

fn unmapped(ip: Ipv6Addr) -> IpAddr {
    match ip.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(ip),
    }
}

fn unspecified_like(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: [u8; 12] = [7; 12];

    fn internal() -> SocketAddr {
        "10.2.0.2:4000".parse().expect("a test value")
    }

    /// What a gateway answers to `request`: success, `lifetime`, external 198.18.2.2:`port`.
    fn answer(request: &[u8; MAP_LEN], lifetime: u32, port: u16) -> Vec<u8> {
        let mut r = request.to_vec();
        r[1] = 0x81;
        r[3] = 0;
        r[4..8].copy_from_slice(&lifetime.to_be_bytes());
        r[8..24].fill(0);
        r[42..44].copy_from_slice(&port.to_be_bytes());
        let ext = Ipv4Addr::new(198, 18, 2, 2).to_ipv6_mapped().octets();
        r[44..60].copy_from_slice(&ext);
        r
    }

    #[test]
    fn a_request_is_rfc_6887_map_for_tcp() {
        let ip = internal().ip();
        let r = map_request(NONCE, ip, 4000, Duration::from_secs(3600), None);
        assert_eq!(&r[..4], &[2, 1, 0, 0]);
        assert_eq!(&r[4..8], &3600u32.to_be_bytes());
        assert_eq!(
            &r[8..24],
            &Ipv4Addr::new(10, 2, 0, 2).to_ipv6_mapped().octets()
        );
        assert_eq!(r[36], 6);
        assert_eq!(&r[40..42], &4000u16.to_be_bytes());
        assert_eq!(&r[44..60], &Ipv4Addr::UNSPECIFIED.to_ipv6_mapped().octets());
    }

    /// Our MAP request for TCP port 4000 for an hour, with [`NONCE`].
    fn our_request() -> [u8; MAP_LEN] {
        map_request(
            NONCE,
            internal().ip(),
            4000,
            Duration::from_secs(3600),
            None,
        )
    }

    #[test]
    fn a_success_gives_the_mapping_with_a_checked_lease() {
        // SECURITY: row 144
        let req = our_request();
        let m =
            parse_map_response(&answer(&req, 7200, 4000), NONCE, internal()).expect("a test value");
        assert_eq!(m.external, "198.18.2.2:4000".parse().expect("a test value"));
        assert_eq!(
            m.lease,
            Duration::from_secs(3600),
            "an enormous lease is clamped"
        );
        assert_eq!(m.protocol, MappingProtocol::Pcp);
        let zero = parse_map_response(&answer(&req, 0, 4000), NONCE, internal());
        assert_eq!(zero, Err(MapError::Lease(0)));
    }

    #[test]
    fn someone_elses_answer_is_not_taken() {
        // SECURITY: row 143
        let req = our_request();
        let ok = answer(&req, 3600, 4000);
        let other = parse_map_response(&ok, [8; 12], internal());
        assert_eq!(other, Err(MapError::NotOurs("another nonce")));
        let mut port = ok.clone();
        port[40..42].copy_from_slice(&5000u16.to_be_bytes());
        assert_eq!(
            parse_map_response(&port, NONCE, internal()),
            Err(MapError::NotOurs("another internal port"))
        );
    }

    #[test]
    fn refusals_and_garbage_are_errors_not_panics() {
        // SECURITY: row 142
        let req = our_request();
        let mut refused = answer(&req, 3600, 4000);
        refused[3] = 8;
        assert!(matches!(
            parse_map_response(&refused, NONCE, internal()),
            Err(MapError::Refused { code: 8, .. })
        ));
        // NAT-PMP's answer to a version it does not know.
        let natpmp = [0u8, 0x81, 0, 1, 0, 0, 0, 0];
        assert!(matches!(
            parse_map_response(&natpmp, NONCE, internal()),
            Err(MapError::Refused { code: 1, .. })
        ));
        for len in 0..MAP_LEN {
            assert!(
                parse_map_response(&answer(&req, 3600, 4000)[..len], NONCE, internal()).is_err()
            );
        }
        let huge = vec![2u8; 5000];
        assert_eq!(
            parse_map_response(&huge, NONCE, internal()),
            Err(MapError::TooLarge(MAX_MESSAGE))
        );
        assert!(matches!(
            parse_map_response(&answer(&req, 3600, 0), NONCE, internal()),
            Err(MapError::Address(_))
        ));
    }
}
