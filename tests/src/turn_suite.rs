//! The TURN client scenarios, written once and run against any TURN server: Debian's real
//! coturn (`turn_coturn`) and Ferry's own simulator server on real sockets (`turn_sim`).

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::io::ConnId;
use ferry_proto::turn::{Family, TurnClient, TurnConfig, TurnError, TurnEvent};

use crate::coturn::{PASSWORD, USER};
use crate::realnet::RealNet;

/// A TURN server under test, listening on both loopbacks, accepting [`USER`] / [`PASSWORD`].
pub trait TurnFixture {
    /// Its IPv4 address.
    fn v4(&self) -> SocketAddr;
    /// Its IPv6 address.
    fn v6(&self) -> SocketAddr;
}

/// How long any step may take.
pub const WAIT: Duration = Duration::from_secs(5);

fn client(server: SocketAddr, password: &str, family: Family) -> RealNet<TurnClient> {
    let mut config = TurnConfig::new(server, USER, password);
    config.family = family;
    RealNet::new(TurnClient::new(config, 0x5eed))
}

/// Allocates and returns the relayed and mapped addresses.
fn allocate(net: &mut RealNet<TurnClient>) -> (SocketAddr, SocketAddr) {
    match net.run_until(WAIT, |e| {
        matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
    }) {
        Some(TurnEvent::Allocated {
            relayed, mapped, ..
        }) => (relayed, mapped),
        other => panic!("no allocation: {other:?}"),
    }
}

fn permit(net: &mut RealNet<TurnClient>, ip: IpAddr) {
    net.command(|c, now| c.permit(now, [ip]));
    let got = net.run_until(WAIT, |e| {
        matches!(
            e,
            TurnEvent::Permitted { .. } | TurnEvent::PermissionFailed { .. }
        )
    });
    assert_eq!(got, Some(TurnEvent::Permitted { ips: vec![ip] }));
}

fn peer_stream(net: &mut RealNet<TurnClient>) -> (ConnId, SocketAddr, bool) {
    match net.run_until(WAIT, |e| {
        matches!(
            e,
            TurnEvent::PeerStream { .. } | TurnEvent::PeerConnectFailed { .. }
        )
    }) {
        Some(TurnEvent::PeerStream {
            conn,
            peer,
            incoming,
        }) => (conn, peer, incoming),
        other => panic!("no peer stream: {other:?}"),
    }
}

/// Collects PeerData on `conn` until `want` bytes came.
fn read_from_peer(net: &mut RealNet<TurnClient>, conn: ConnId, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < want {
        match net.run_until(
            WAIT,
            |e| matches!(e, TurnEvent::PeerData { conn: c, .. } if *c == conn),
        ) {
            Some(TurnEvent::PeerData { data, .. }) => got.extend_from_slice(&data),
            other => panic!("no data from the peer after {} bytes: {other:?}", got.len()),
        }
    }
    got
}

/// Scenario `allocation_with_the_401_dance_and_clean_deallocation`.
pub fn allocation_with_the_401_dance_and_clean_deallocation(server: &dyn TurnFixture) {
    let mut net = client(server.v4(), PASSWORD, Family::V4);
    let (relayed, mapped) = allocate(&mut net);
    assert_eq!(relayed.ip(), IpAddr::from([127, 0, 0, 1]));
    assert_ne!(relayed.port(), 0);
    assert_eq!(
        mapped.ip(),
        IpAddr::from([127, 0, 0, 1]),
        "the server saw us on loopback"
    );
    net.command(|c, now| c.deallocate(now));
    assert_eq!(
        net.run_until(WAIT, |e| matches!(
            e,
            TurnEvent::Deallocated | TurnEvent::Failed { .. }
        )),
        Some(TurnEvent::Deallocated)
    );
    assert!(net.endpoint.is_done());
}

/// Scenario `a_wrong_password_is_a_clear_error`.
pub fn a_wrong_password_is_a_clear_error(server: &dyn TurnFixture) {
    let mut net = client(server.v4(), "not-the-password", Family::V4);
    let got = net.run_until(WAIT, |e| {
        matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
    });
    assert_eq!(
        got,
        Some(TurnEvent::Failed {
            error: TurnError::WrongCredentials
        })
    );
}

/// Scenario `permission_then_connect_to_a_peer_with_bytes_both_ways`.
pub fn permission_then_connect_to_a_peer_with_bytes_both_ways(server: &dyn TurnFixture) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let peer_addr = listener.local_addr().expect("addr");
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("the relay connects to the peer");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).expect("ping");
        assert_eq!(&buf, b"ping");
        s.write_all(b"pong").expect("pong");
        // Hold the connection until the client has read.
        let _ = s.read(&mut buf);
    });
    let mut net = client(server.v4(), PASSWORD, Family::V4);
    allocate(&mut net);
    permit(&mut net, peer_addr.ip());
    net.command(|c, now| c.connect_peer(now, peer_addr));
    let (conn, from, incoming) = peer_stream(&mut net);
    assert_eq!((from, incoming), (peer_addr, false));
    net.command(|c, _| c.send(conn, Bytes::from_static(b"ping")).expect("bound"));
    assert_eq!(read_from_peer(&mut net, conn, 4), b"pong");
    net.command(|c, _| c.close_peer(conn));
    net.run_until(Duration::from_millis(100), |_| false);
    peer.join().expect("peer thread");
}

/// Scenario `a_peer_connecting_to_the_relay_is_accepted_with_bytes_both_ways`.
pub fn a_peer_connecting_to_the_relay_is_accepted_with_bytes_both_ways(server: &dyn TurnFixture) {
    let mut net = client(server.v4(), PASSWORD, Family::V4);
    let (relayed, _) = allocate(&mut net);
    permit(&mut net, IpAddr::from([127, 0, 0, 1]));
    let peer = std::thread::spawn(move || {
        let mut s = TcpStream::connect(relayed).expect("connect to the relayed address");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.write_all(b"hello relay").expect("write");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("answer");
        buf
    });
    let (conn, peer_addr, incoming) = peer_stream(&mut net);
    assert!(incoming);
    assert_eq!(peer_addr.ip(), IpAddr::from([127, 0, 0, 1]));
    assert_eq!(read_from_peer(&mut net, conn, 11), b"hello relay");
    net.command(|c, _| c.send(conn, Bytes::from_static(b"howdy")).expect("bound"));
    net.run_until(Duration::from_millis(200), |_| false);
    assert_eq!(&peer.join().expect("peer thread"), b"howdy");
}

/// Scenario `a_connection_from_an_address_without_permission_is_refused`.
pub fn a_connection_from_an_address_without_permission_is_refused(server: &dyn TurnFixture) {
    let mut net = client(server.v4(), PASSWORD, Family::V4);
    let (relayed, _) = allocate(&mut net);
    permit(&mut net, IpAddr::from([127, 0, 0, 1]));
    // Loopback is a /8: 127.0.0.2 is another address, and it has no permission.
    let peer = std::thread::spawn(move || {
        let Ok(mut s) = connect_from(IpAddr::from([127, 0, 0, 2]), relayed) else {
            return true; // refused outright
        };
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let _ = s.write_all(b"let me in");
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(0) | Err(_))
    });
    let got = net.run_until(Duration::from_secs(2), |e| {
        matches!(e, TurnEvent::PeerStream { .. })
    });
    assert_eq!(got, None, "no stream from an address without permission");
    assert!(
        peer.join().expect("peer thread"),
        "the relay closed the unpermitted connection"
    );
}

/// A TCP connection from a chosen local address (std cannot bind before connecting).
fn connect_from(local: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let domain = if to.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.bind(&SocketAddr::new(local, 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(3))?;
    Ok(s.into())
}

/// Scenario `a_short_lifetime_is_refreshed`: the server must cap lifetimes at 4 s, so the
/// refresh comes after 2 s.
pub fn a_short_lifetime_is_refreshed(server: &dyn TurnFixture) {
    let mut net = client(server.v4(), PASSWORD, Family::V4);
    let lifetime = match net.run_until(WAIT, |e| {
        matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
    }) {
        Some(TurnEvent::Allocated { lifetime, .. }) => lifetime,
        other => panic!("{other:?}"),
    };
    assert!(lifetime <= Duration::from_secs(4), "{lifetime:?}");
    for _ in 0..2 {
        let got = net.run_until(WAIT, |e| {
            matches!(e, TurnEvent::Refreshed { .. } | TurnEvent::Failed { .. })
        });
        assert!(matches!(got, Some(TurnEvent::Refreshed { .. })), "{got:?}");
    }
    // Past the first lifetime, the allocation is still alive.
    assert!(!net.endpoint.is_done());
}

/// Scenario `ipv6_allocation_and_connect`.
pub fn ipv6_allocation_and_connect(server: &dyn TurnFixture) {
    let listener = TcpListener::bind("[::1]:0").expect("bind");
    let peer_addr = listener.local_addr().expect("addr");
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = [0u8; 3];
        s.read_exact(&mut buf).expect("read");
        s.write_all(&buf).expect("echo");
        let _ = s.read(&mut buf);
    });
    let mut net = client(server.v6(), PASSWORD, Family::V6);
    let (relayed, mapped) = allocate(&mut net);
    assert!(relayed.is_ipv6() && mapped.is_ipv6(), "{relayed} {mapped}");
    permit(&mut net, peer_addr.ip());
    net.command(|c, now| c.connect_peer(now, peer_addr));
    let (conn, _, _) = peer_stream(&mut net);
    net.command(|c, _| c.send(conn, Bytes::from_static(b"v6!")).expect("bound"));
    assert_eq!(read_from_peer(&mut net, conn, 3), b"v6!");
    net.command(|c, _| c.close_peer(conn));
    net.run_until(Duration::from_millis(100), |_| false);
    peer.join().expect("peer thread");
}
