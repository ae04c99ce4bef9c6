//! The port-mapping parsers (`ferry_proto::portmap`): what a home router, or anyone on the
//! LAN, answers to PCP, NAT-PMP, SSDP and UPnP-IGD's HTTP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use ferry_proto::portmap::{MIN_LEASE, PortMapping, REQUESTED_LEASE, natpmp, pcp, upnp};

/// The first byte picks the parser, the rest is the reply. Beyond "no panic": a mapping
/// taken is ours (our internal address), with a usable external address and a lease within
/// what we accept; a UPnP control URL is on the host that described it.
pub fn portmap_replies(data: &[u8]) {
    let Some((&which, reply)) = data.split_first() else {
        return;
    };
    let internal = SocketAddrV4::new(Ipv4Addr::new(10, 2, 0, 2), 4000);
    let gateway = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 2, 0, 1)), 5000);
    let check = |m: PortMapping| {
        assert_eq!(m.internal, SocketAddr::V4(internal));
        assert!(m.external.port() != 0 && !m.external.ip().is_unspecified());
        assert!(m.lease >= MIN_LEASE && m.lease <= REQUESTED_LEASE);
    };
    match which % 6 {
        0 => {
            if let Ok(m) = pcp::parse_map_response(reply, [7; 12], SocketAddr::V4(internal)) {
                check(m);
            }
        }
        1 => {
            if let Ok(m) = natpmp::parse_map_response(reply, internal, Ipv4Addr::new(11, 250, 2, 2))
            {
                check(m);
            }
        }
        2 => {
            if let Ok(ip) = natpmp::parse_external_address(reply) {
                assert!(!ip.is_unspecified());
            }
        }
        3 => {
            if let Ok((addr, _)) = upnp::parse_ssdp_answer(reply, gateway.ip()) {
                assert_eq!(addr.ip(), gateway.ip());
            }
        }
        4 => {
            let text = String::from_utf8_lossy(reply);
            if let Ok(control) = upnp::parse_description(&text, gateway) {
                assert_eq!(control.addr.ip(), gateway.ip());
            }
        }
        _ => {
            if let Ok(body) = upnp::parse_http_response(reply) {
                assert!(body.len() <= reply.len());
                if let Ok(m) = upnp::mapping(
                    SocketAddr::V4(internal),
                    4000,
                    Duration::from_secs(3600),
                    &body,
                ) {
                    check(m);
                }
            }
        }
    }
}
