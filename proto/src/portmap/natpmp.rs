//! NAT-PMP (RFC 6886): the external address request and a TCP mapping request, and their
//! responses. Only IPv4: NAT-PMP knows no other family.

use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::{MapError, MappingProtocol, PortMapping, checked_lease};

/// NAT-PMP's version number.
pub const VERSION: u8 = 0;
/// Opcode of the external address request (§3.2).
pub const OP_EXTERNAL_ADDRESS: u8 = 0;
/// Opcode of a TCP mapping request (§3.3).
pub const OP_MAP_TCP: u8 = 2;
/// Largest NAT-PMP reply we read (the largest is 16 bytes; more is garbage, bounded).
pub const MAX_REPLY: usize = 1100;

/// The external address request: two bytes.
pub fn external_address_request() -> [u8; 2] {
    [VERSION, OP_EXTERNAL_ADDRESS]
}

/// A TCP mapping request for `internal_port`; `lifetime` 0 and `suggested` 0 delete it (§3.4).
pub fn map_request(internal_port: u16, suggested: u16, lifetime: Duration) -> [u8; 12] {
    let mut out = [0u8; 12];
    out[0] = VERSION;
    out[1] = OP_MAP_TCP;
    out[4..6].copy_from_slice(&internal_port.to_be_bytes());
    out[6..8].copy_from_slice(&suggested.to_be_bytes());
    let secs = u32::try_from(lifetime.as_secs()).unwrap_or(u32::MAX);
    out[8..12].copy_from_slice(&secs.to_be_bytes());
    out
}

/// The external address from the answer to [`external_address_request`].
pub fn parse_external_address(reply: &[u8]) -> Result<Ipv4Addr, MapError> {
    let body = header(reply, OP_EXTERNAL_ADDRESS, 12)?;
    let ip = Ipv4Addr::new(body[8], body[9], body[10], body[11]);
    if ip.is_unspecified() {
        return Err(MapError::Address(ip.to_string()));
    }
    Ok(ip)
}

/// The mapping from the answer to [`map_request`] for `internal` (an IPv4 listening
/// address), whose external address `external_ip` came from [`parse_external_address`].
pub fn parse_map_response(
    reply: &[u8],
    internal: SocketAddrV4,
    external_ip: Ipv4Addr,
) -> Result<PortMapping, MapError> {
    let body = header(reply, OP_MAP_TCP, 16)?;
    if u16::from_be_bytes([body[8], body[9]]) != internal.port() {
        return Err(MapError::NotOurs("another internal port"));
    }
    let external = u16::from_be_bytes([body[10], body[11]]);
    let lifetime = u32::from_be_bytes([body[12], body[13], body[14], body[15]]);
    let lease = checked_lease(Duration::from_secs(u64::from(lifetime)))?;
    if external == 0 || external_ip.is_unspecified() {
        return Err(MapError::Address(format!("{external_ip}:{external}")));
    }
    Ok(PortMapping {
        internal: SocketAddr::V4(internal),
        external: SocketAddr::V4(SocketAddrV4::new(external_ip, external)),
        lease,
        protocol: MappingProtocol::NatPmp,
    })
}

/// Checks version, opcode, result and length; the reply when they are right.
fn header(reply: &[u8], op: u8, len: usize) -> Result<&[u8], MapError> {
    if reply.len() > MAX_REPLY {
        return Err(MapError::TooLarge(MAX_REPLY));
    }
    if reply.len() < 4 {
        return Err(MapError::Malformed("shorter than a NAT-PMP header"));
    }
    if reply[0] != VERSION {
        return Err(MapError::Malformed("not NAT-PMP version 0"));
    }
    if reply[1] != 0x80 | op {
        return Err(MapError::NotOurs("another opcode"));
    }
    let result = u16::from_be_bytes([reply[2], reply[3]]);
    if result != 0 {
        return Err(MapError::Refused {
            code: u32::from(result),
            meaning: result_meaning(result).to_owned(),
        });
    }
    if reply.len() < len {
        return Err(MapError::Malformed("shorter than its opcode's reply"));
    }
    Ok(reply)
}

/// What a NAT-PMP result code means (§3.5).
pub fn result_meaning(code: u16) -> &'static str {
    match code {
        0 => "Success",
        1 => "Unsupported Version",
        2 => "Not Authorized/Refused",
        3 => "Network Failure",
        4 => "Out of resources",
        5 => "Unsupported opcode",
        _ => "unknown result code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn internal() -> SocketAddrV4 {
        "10.2.0.2:4000".parse().expect("a test value")
    }

    fn answer(internal: u16, external: u16, lifetime: u32) -> Vec<u8> {
        let mut r = vec![0, 130, 0, 0, 0, 0, 0, 9];
        r.extend(internal.to_be_bytes());
        r.extend(external.to_be_bytes());
        r.extend(lifetime.to_be_bytes());
        r
    }

    #[test]
    fn requests_are_rfc_6886() {
        assert_eq!(external_address_request(), [0, 0]);
        let r = map_request(4000, 4000, Duration::from_secs(3600));
        assert_eq!(r, [0, 2, 0, 0, 0x0f, 0xa0, 0x0f, 0xa0, 0, 0, 0x0e, 0x10]);
    }

    #[test]
    fn replies_give_the_address_and_the_mapping() {
        let ip = parse_external_address(&[0, 128, 0, 0, 0, 0, 0, 1, 198, 18, 2, 2])
            .expect("a test value");
        assert_eq!(ip, Ipv4Addr::new(198, 18, 2, 2));
        let m =
            parse_map_response(&answer(4000, 4001, 3600), internal(), ip).expect("a test value");
        assert_eq!(m.external, "198.18.2.2:4001".parse().expect("a test value"));
        assert_eq!(m.lease, Duration::from_secs(3600));
        assert_eq!(m.protocol, MappingProtocol::NatPmp);
    }

    #[test]
    fn hostile_replies_are_errors() {
        // SECURITY: row 144
        // SECURITY: row 142
        let ip = Ipv4Addr::new(198, 18, 2, 2);
        assert_eq!(
            parse_map_response(&answer(5000, 4001, 3600), internal(), ip),
            Err(MapError::NotOurs("another internal port"))
        );
        assert_eq!(
            parse_map_response(&answer(4000, 4001, 0), internal(), ip),
            Err(MapError::Lease(0))
        );
        let long = parse_map_response(&answer(4000, 4001, u32::MAX), internal(), ip)
            .expect("a test value");
        assert_eq!(long.lease, super::super::REQUESTED_LEASE);
        assert!(matches!(
            parse_map_response(&[0, 130, 0, 3], internal(), ip),
            Err(MapError::Refused { code: 3, .. })
        ));
        let good = answer(4000, 4001, 3600);
        for len in 0..good.len() {
            assert!(parse_map_response(&good[..len], internal(), ip).is_err());
        }
        assert!(parse_external_address(&[0, 128, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]).is_err());
        assert_eq!(
            parse_external_address(&[0; 4000]),
            Err(MapError::TooLarge(MAX_REPLY))
        );
    }
}
