//! [`TurnFixture`] on real loopback sockets: the client runs on the blocking driver
//! ([`RealNet`]), peers are non-blocking std sockets polled between the driver's runs, time
//! is the real clock. Any server reachable on loopback plugs in through [`LoopbackServer`]:
//! coturn, or Ferry's own server on threads.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use ferry_proto::turn::{Family, TurnClient, TurnEvent};

use crate::realnet::RealNet;
use crate::turn_suite::{
    EARLY_DATA_KEPT, Peer, PeerHost, PeerLog, PeerState, ServerFault, TurnFixture,
};

/// A TURN server listening on both loopbacks.
pub trait LoopbackServer {
    /// Its address for a family.
    fn addr(&self, family: Family) -> SocketAddr;
    /// Makes it fail; `false` (the default) when it cannot.
    fn fault(&self, _fault: ServerFault) -> bool {
        false
    }
    /// How many of a peer's bytes it keeps before the client binds the connection: exactly
    /// [`EARLY_DATA_KEPT`] unless the server says otherwise.
    fn early_data_kept(&self) -> RangeInclusive<usize> {
        EARLY_DATA_KEPT..=EARLY_DATA_KEPT
    }
}

fn loopback(family: Family) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

struct RealPeer {
    listener: Option<TcpListener>,
    stream: Option<TcpStream>,
    out: Vec<u8>,
    log: PeerLog,
}

impl RealPeer {
    fn new(stream: Option<TcpStream>, listener: Option<TcpListener>, state: PeerState) -> Self {
        RealPeer {
            listener,
            stream,
            out: Vec::new(),
            log: PeerLog {
                state,
                received: Vec::new(),
                error: None,
            },
        }
    }

    /// One pass: accept, write what is queued, read what came.
    fn pump(&mut self) {
        if self.stream.is_none() {
            if let Some(Ok((s, _))) = self.listener.as_ref().map(TcpListener::accept) {
                let _ = s.set_nonblocking(true);
                let _ = s.set_nodelay(true);
                self.stream = Some(s);
                self.log.state = PeerState::Open;
            }
        }
        let Some(s) = self.stream.as_mut() else {
            return;
        };
        if self.log.state != PeerState::Open {
            return;
        }
        while !self.out.is_empty() {
            match s.write(&self.out) {
                Ok(n) if n > 0 => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() != ErrorKind::WouldBlock => {
                    self.log.state = PeerState::Reset;
                    return;
                }
                _ => break,
            }
        }
        let mut buf = [0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => {
                    self.log.state = PeerState::Closed;
                    return;
                }
                Ok(n) => self.log.received.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    self.log.state = PeerState::Reset;
                    self.log.error = Some(e.to_string());
                    return;
                }
            }
        }
    }
}

/// A TURN client and its peers on loopback, against `S`.
pub struct Loopback<S: LoopbackServer> {
    /// The server.
    pub server: S,
    net: Option<RealNet<TurnClient>>,
    peers: Vec<RealPeer>,
    held: bool,
}

impl<S: LoopbackServer> Loopback<S> {
    /// A fixture around a running server; the client starts when a scenario says.
    pub fn new(server: S) -> Self {
        Loopback {
            server,
            net: None,
            peers: Vec::new(),
            held: false,
        }
    }

    fn pump_peers(&mut self) {
        for p in &mut self.peers {
            p.pump();
        }
    }
}

impl<S: LoopbackServer> TurnFixture for Loopback<S> {
    fn server(&self, family: Family) -> SocketAddr {
        self.server.addr(family)
    }

    fn client_ip(&self, family: Family) -> IpAddr {
        loopback(family)
    }

    fn relay_ip(&self, family: Family) -> IpAddr {
        loopback(family)
    }

    fn peer_ip(&self, family: Family) -> IpAddr {
        loopback(family)
    }

    fn start(&mut self, client: TurnClient) {
        assert!(self.net.is_none(), "one client per fixture");
        self.net = Some(RealNet::new(client));
    }

    fn command<R>(&mut self, f: impl FnOnce(&mut TurnClient, Instant) -> R) -> R {
        let net = self.net.as_mut().expect("the client was started");
        let mut r = None;
        net.command(|c, now| r = Some(f(c, now)));
        r.expect("the command ran")
    }

    fn client(&self) -> &TurnClient {
        &self.net.as_ref().expect("the client was started").endpoint
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn advance(&mut self, deadline: Instant) {
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(1));
        let held = self.held;
        match self.net.as_mut().filter(|_| !held) {
            Some(net) => {
                net.run_until(slice, |_| false);
            }
            None => std::thread::sleep(slice),
        }
        self.pump_peers();
    }

    fn take_event(&mut self, until: &mut dyn FnMut(&TurnEvent) -> bool) -> Option<TurnEvent> {
        if self.held {
            return None;
        }
        self.net.as_mut()?.run_until(Duration::ZERO, until)
    }

    fn listen_peer(&mut self, family: Family) -> (Peer, SocketAddr) {
        let listener = TcpListener::bind((loopback(family), 0)).expect("bind a peer");
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("addr");
        self.peers
            .push(RealPeer::new(None, Some(listener), PeerState::Listening));
        (Peer(self.peers.len() - 1), addr)
    }

    fn connect_peer(&mut self, to: SocketAddr, from: PeerHost) -> Peer {
        let local = match (from, to.is_ipv4()) {
            (PeerHost::Peer, true) => loopback(Family::V4),
            (PeerHost::Peer, false) => loopback(Family::V6),
            // Loopback is a /8: 127.0.0.2 is another address.
            (PeerHost::Stranger, true) => IpAddr::from([127, 0, 0, 2]),
            (PeerHost::Stranger, false) => panic!("IPv6 loopback has one address only"),
        };
        let peer = match connect_from(local, to) {
            Ok(s) => {
                s.set_nonblocking(true).expect("non-blocking");
                let _ = s.set_nodelay(true);
                RealPeer::new(Some(s), None, PeerState::Open)
            }
            // A RST that comes before the connect's poll sees the socket writable surfaces
            // as the connect's error: the connection was made, then reset.
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                RealPeer::new(None, None, PeerState::Reset)
            }
            Err(e) => {
                let mut peer = RealPeer::new(None, None, PeerState::Failed);
                peer.log.error = Some(e.to_string());
                peer
            }
        };
        self.peers.push(peer);
        Peer(self.peers.len() - 1)
    }

    fn peer_send(&mut self, peer: Peer, data: &[u8]) {
        self.peers[peer.0].out.extend_from_slice(data);
        self.peers[peer.0].pump();
    }

    fn hold_client(&mut self, held: bool) {
        self.held = held;
    }

    fn peer_close(&mut self, peer: Peer) {
        let p = &mut self.peers[peer.0];
        p.pump();
        if let Some(s) = p.stream.take() {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        if p.log.state == PeerState::Open {
            p.log.state = PeerState::Closed;
        }
    }

    fn peer(&self, peer: Peer) -> PeerLog {
        self.peers[peer.0].log.clone()
    }

    fn fault(&mut self, fault: ServerFault) -> bool {
        self.server.fault(fault)
    }

    fn early_data_kept(&self) -> RangeInclusive<usize> {
        self.server.early_data_kept()
    }
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
