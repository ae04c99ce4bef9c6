//! One blocking exchange per call with the gateway, for each protocol: the I/O around
//! `ferry_proto::portmap`'s builders and parsers. Every wait is bounded (PCP and NAT-PMP
//! retransmit at 250, 500 and 1000 ms, as RFC 6887 §8.1.1 starts; SSDP waits
//! [`SSDP_WAIT`]; HTTP connects, reads and writes within [`HTTP_TIMEOUT`]) and every read is
//! bounded in size, so a gateway that answers garbage or nothing costs a few seconds.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_proto::portmap::{MapError, PortMapping, natpmp, pcp, upnp};

/// How long SSDP waits for gateways to answer an M-SEARCH (`MX: 1`, plus the way back).
pub const SSDP_WAIT: Duration = Duration::from_millis(1500);
/// Bound on each HTTP step (connect, write, read) to the gateway.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// How often a wait looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(100);
/// A stop flag nobody sets: deletions always run to their end.
pub static NEVER: AtomicBool = AtomicBool::new(false);

/// The waits between PCP or NAT-PMP retransmissions.
const RETRANSMIT: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Nobody answered.
    #[error("no answer from {0}")]
    NoAnswer(String),
    /// The answer was refused or not usable.
    #[error("{0}")]
    Map(#[from] MapError),
    /// A socket operation failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The IPv4 default gateway, from the kernel's routing table (Linux); `None` elsewhere or
/// when there is none.
pub fn default_gateway() -> Option<Ipv4Addr> {
    // This thread's network namespace (`/proc/net` is the process's main thread's): the
    // service's thread is in the namespace of the thread that started it.
    let table = std::fs::read_to_string("/proc/thread-self/net/route")
        .or_else(|_| std::fs::read_to_string("/proc/net/route"))
        .ok()?;
    gateway_in(&table)
}

/// The default route's gateway in the text of `/proc/net/route`.
fn gateway_in(table: &str) -> Option<Ipv4Addr> {
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dest, gw, flags) = (f.get(1)?, f.get(2)?, f.get(3)?);
        let flags = u16::from_str_radix(flags, 16).ok()?;
        // RTF_UP and RTF_GATEWAY, destination 0.0.0.0.
        if *dest != "00000000" || flags & 0x3 != 0x3 {
            return None;
        }
        let gw = u32::from_str_radix(gw, 16).ok()?;
        Some(Ipv4Addr::from(gw.to_le_bytes()))
    })
}

/// Sends `request` to `gateway`'s port 5351 from `local`'s address, retransmitting, and
/// returns the first reply `accept` takes; replies it answers `NotOurs` for are skipped.
/// Once `stop` is set it waits no more (the driver is gone: nobody wants the answer).
fn udp_exchange<T>(
    stop: &AtomicBool,
    local: Ipv4Addr,
    gateway: Ipv4Addr,
    request: &[u8],
    mut accept: impl FnMut(&[u8]) -> Result<T, MapError>,
) -> Result<T, Failure> {
    let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(local), 0))?;
    socket.connect(SocketAddr::new(IpAddr::V4(gateway), pcp::SERVER_PORT))?;
    let mut buf = vec![0u8; pcp::MAX_MESSAGE];
    let mut last: Option<MapError> = None;
    for wait in RETRANSMIT {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        socket.send(request)?;
        let until = Instant::now() + wait;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            if left.is_zero() || stop.load(Ordering::Relaxed) {
                break;
            }
            socket.set_read_timeout(Some(left.min(STOP_CHECK)))?;
            let n = match socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    continue;
                }
                // An ICMP port unreachable: nothing listens there.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(Failure::NoAnswer(format!("{gateway} (port closed)")));
                }
                Err(e) => return Err(e.into()),
            };
            match accept(&buf[..n]) {
                Ok(t) => return Ok(t),
                Err(MapError::NotOurs(why)) => last = Some(MapError::NotOurs(why)),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Err(match last {
        Some(e) => e.into(),
        None => Failure::NoAnswer(gateway.to_string()),
    })
}

/// PCP MAP of `local`'s port (lifetime 0 deletes it); its waits end once `stop` is set.
pub fn pcp_map(
    stop: &AtomicBool,
    gateway: Ipv4Addr,
    local: SocketAddrV4,
    nonce: [u8; 12],
    lifetime: Duration,
    suggested: Option<SocketAddr>,
) -> Result<Option<PortMapping>, Failure> {
    let ip = IpAddr::V4(*local.ip());
    let request = pcp::map_request(nonce, ip, local.port(), lifetime, suggested);
    let internal = SocketAddr::V4(local);
    if lifetime.is_zero() {
        // A deletion's answer has lifetime 0, which the mapping parser refuses: a success
        // result for our nonce is all we need.
        return udp_exchange(stop, *local.ip(), gateway, &request, |reply| {
            match pcp::parse_map_response(reply, nonce, internal) {
                Ok(_) | Err(MapError::Lease(0)) => Ok(None),
                Err(e) => Err(e),
            }
        });
    }
    udp_exchange(stop, *local.ip(), gateway, &request, |reply| {
        pcp::parse_map_response(reply, nonce, internal).map(Some)
    })
}

/// NAT-PMP: the external address, then a TCP mapping of `local`'s port (lifetime 0 and
/// `suggested` 0 delete it); its waits end once `stop` is set.
pub fn natpmp_map(
    stop: &AtomicBool,
    gateway: Ipv4Addr,
    local: SocketAddrV4,
    suggested: u16,
    lifetime: Duration,
) -> Result<Option<PortMapping>, Failure> {
    let request = natpmp::map_request(local.port(), suggested, lifetime);
    if lifetime.is_zero() {
        return udp_exchange(stop, *local.ip(), gateway, &request, |reply| {
            match natpmp::parse_map_response(reply, local, Ipv4Addr::BROADCAST) {
                Ok(_) | Err(MapError::Lease(0)) => Ok(None),
                Err(e) => Err(e),
            }
        });
    }
    let external = udp_exchange(
        stop,
        *local.ip(),
        gateway,
        &natpmp::external_address_request(),
        natpmp::parse_external_address,
    )?;
    udp_exchange(stop, *local.ip(), gateway, &request, |reply| {
        natpmp::parse_map_response(reply, local, external).map(Some)
    })
}

/// SSDP search from `local`'s address, then the gateway's description: where its
/// port-mapping service takes SOAP actions. The wait for answers ends once `stop` is set.
pub fn upnp_discover(stop: &AtomicBool, local: Ipv4Addr) -> Result<upnp::Control, Failure> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    socket.bind(&SocketAddr::new(IpAddr::V4(local), 0).into())?;
    socket.set_multicast_if_v4(&local)?;
    socket.set_multicast_ttl_v4(2)?;
    let socket: UdpSocket = socket.into();
    socket.send_to(upnp::m_search().as_bytes(), upnp::SSDP_ADDR)?;
    let until = Instant::now() + SSDP_WAIT;
    let mut buf = vec![0u8; upnp::MAX_SSDP + 1];
    let mut last: Option<Failure> = None;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        if left.is_zero() || stop.load(Ordering::Relaxed) {
            break;
        }
        socket.set_read_timeout(Some(left.min(STOP_CHECK)))?;
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // Every answer that leads to a usable description is as good; the first wins.
        let found = upnp::parse_ssdp_answer(&buf[..n], from.ip())
            .map_err(Failure::from)
            .and_then(|(addr, path)| {
                let body = http(
                    addr,
                    &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
                )?;
                Ok(upnp::parse_description(&body, addr)?)
            });
        match found {
            Ok(control) => return Ok(control),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| Failure::NoAnswer("SSDP (no Internet Gateway Device)".into())))
}

/// `AddPortMapping` of `local`'s port (to the same external port), then
/// `GetExternalIPAddress`.
pub fn upnp_map(
    control: &upnp::Control,
    local: SocketAddrV4,
    lease: Duration,
) -> Result<PortMapping, Failure> {
    let internal = SocketAddr::V4(local);
    http(
        control.addr,
        &control.add_port_mapping(internal, local.port(), lease),
    )?;
    let body = http(control.addr, &control.get_external_ip_address())?;
    // UPnP does not say what lease it granted: it is the one asked for (IGD:1 §2.4.16).
    Ok(upnp::mapping(internal, local.port(), lease, &body)?)
}

/// `DeletePortMapping` of `external_port`.
pub fn upnp_unmap(control: &upnp::Control, external_port: u16) -> Result<(), Failure> {
    http(control.addr, &control.delete_port_mapping(external_port)).map(|_| ())
}

/// One HTTP exchange with the gateway: `request` out, the whole response in (at most
/// [`upnp::MAX_HTTP`] bytes), its body when the status is 200.
fn http(addr: SocketAddr, request: &str) -> Result<String, Failure> {
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
    stream.write_all(request.as_bytes())?;
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if Instant::now() > deadline {
            return Err(Failure::NoAnswer(format!(
                "{addr} (a reply slower than {HTTP_TIMEOUT:?})"
            )));
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
        if reply.len() > upnp::MAX_HTTP {
            return Err(MapError::TooLarge(upnp::MAX_HTTP).into());
        }
    }
    Ok(upnp::parse_http_response(&reply)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A "gateway" on loopback that answers every HTTP request with `reply`.
    fn serve(reply: Vec<u8>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut req = [0u8; 2048];
                let _ = s.read(&mut req);
                let _ = s.write_all(&reply);
            }
        });
        addr
    }

    #[test]
    fn a_huge_soap_body_is_refused_after_a_bounded_read() {
        // SECURITY: row 145
        let mut reply = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        reply.resize(upnp::MAX_HTTP * 4, b'x');
        let addr = serve(reply);
        let got = http(addr, "GET / HTTP/1.1\r\n\r\n");
        assert!(
            matches!(got, Err(Failure::Map(MapError::TooLarge(_)))),
            "{got:?}"
        );
    }

    #[test]
    fn garbage_from_a_gateway_is_a_clear_error() {
        let addr = serve(b"\x00\x01garbage without any header end".to_vec());
        let got = http(addr, "GET / HTTP/1.1\r\n\r\n");
        assert!(
            matches!(got, Err(Failure::Map(MapError::Malformed(_)))),
            "{got:?}"
        );
    }

    #[test]
    fn a_gateway_without_a_pcp_server_is_no_answer() {
        // Nothing listens on loopback's port 5351 here: the ICMP error ends the exchange.
        let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4000);
        let got = pcp_map(
            &NEVER,
            Ipv4Addr::LOCALHOST,
            local,
            [1; 12],
            Duration::from_secs(60),
            None,
        );
        assert!(matches!(got, Err(Failure::NoAnswer(_))), "{got:?}");
    }

    #[test]
    fn the_default_gateway_is_read_from_the_routing_table() {
        let table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n\
            eth0\t0000020A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n\
            eth0\t00000000\t0100020A\t0003\t0\t0\t0\t00000000\n";
        assert_eq!(gateway_in(table), Some(Ipv4Addr::new(10, 2, 0, 1)));
        assert_eq!(gateway_in("Iface\n"), None);
        assert_eq!(gateway_in("garbage\n\u{0}\tzz\tyy\t00\n"), None);
    }
}
