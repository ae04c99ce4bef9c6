//! [`TurnFixture`] in the simulator: Ferry's TURN server on public hosts of a
//! [`World`], the client on a host behind a NAT, peers as scripted
//! [`Probe`]s acted on between runs, time virtual.
//!
//! ```text
//!   alice 192.168.1.2 / 2001:db8:1::2 ── home NAT 203.0.113.1 (IPv6 routed, 2001:db8:1::1)
//!                                            │
//!   internet ── turn 198.51.100.3:3478 (relays on 198.51.100.3)
//!            ── turn6 [2001:db8::3]:3478 (relays on 2001:db8::3)
//!            ── peer 198.51.100.20 / 2001:db8::20
//!            ── stranger 198.51.100.21 / 2001:db8::21 (never given a permission)
//! ```
//!
//! Every link has 10 ms of latency unless [`SimTurn::with_links`] says otherwise. A run is
//! a function of its seed.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{ConnId, Endpoint, Input, ListenerId, Output};
use ferry_proto::trace::TurnDecoder;
use ferry_proto::turn::{Family, TurnClient, TurnEvent};
use ferry_sim::probe::ConnState;
use ferry_sim::turn_server::{TurnServer, TurnServerConfig};
use ferry_sim::{Fault, HostId, HostSpec, LinkOf, LinkSpec, Nat, Probe, RouterSpec, Step, World};

use crate::coturn::{PASSWORD, REALM, USER};
use crate::turn_suite::{Peer, PeerHost, PeerLog, PeerState, ServerFault, TurnFixture};

/// The port the listening peer listens on.
pub const PEER_PORT: u16 = 7000;

/// An endpoint that is nothing until a test puts one in (the world's hosts are all there
/// from the start; a scenario starts its client when it says).
#[derive(Debug)]
pub struct Later<E>(pub Option<E>);

impl<E: Endpoint> Endpoint for Later<E> {
    type Event = E::Event;

    fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), ferry_proto::Error> {
        match &mut self.0 {
            Some(e) => e.handle_input(now, input),
            None => Err(ferry_proto::Error::UnexpectedInput(
                "no endpoint started yet",
            )),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(e) = &mut self.0 {
            e.handle_timeout(now);
        }
    }

    fn poll_output(&mut self) -> Option<Output<E::Event>> {
        self.0.as_mut()?.poll_output()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.0.as_ref()?.poll_timeout()
    }
}

#[derive(Debug, Clone, Copy)]
enum SimPeer {
    /// The peer host's first accepted connection.
    Listening,
    /// A connection the host opened.
    Connecting { host: HostId, conn: ConnId },
}

/// The simulator fixture.
pub struct SimTurn {
    world: World,
    /// The client's host.
    pub alice: HostId,
    /// The IPv4 TURN server's host (the one faults go to).
    pub turn: HostId,
    /// The IPv6 TURN server's host.
    pub turn6: HostId,
    /// The peers' host.
    pub peer: HostId,
    /// The host without permission.
    pub stranger: HostId,
    seen: usize,
    unclaimed: VecDeque<TurnEvent>,
    peers: Vec<SimPeer>,
    next_conn: u32,
}

const TURN_V4: [u8; 4] = [198, 51, 100, 3];
const TURN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 3);
const NAT_V4: [u8; 4] = [203, 0, 113, 1];
const ALICE_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 2);
const PEER_V4: [u8; 4] = [198, 51, 100, 20];
const PEER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20);
const TURN_PORT: u16 = 3478;

impl SimTurn {
    /// A world on `seed` whose servers are configured by `configure` (after
    /// [`TurnServerConfig::new`] with [`USER`], [`PASSWORD`], [`REALM`]); no trace.
    pub fn new(seed: u64, configure: impl Fn(&mut TurnServerConfig)) -> SimTurn {
        SimTurn::build(
            seed,
            configure,
            LinkSpec::latency(Duration::from_millis(10)),
            false,
        )
    }

    /// The same world, tracing TURN on the wire with [`TurnDecoder`].
    pub fn traced(seed: u64, configure: impl Fn(&mut TurnServerConfig)) -> SimTurn {
        SimTurn::build(
            seed,
            configure,
            LinkSpec::latency(Duration::from_millis(10)),
            true,
        )
    }

    /// The same world with `link` for every link (jitter, loss, bandwidth), no trace.
    pub fn with_links(
        seed: u64,
        link: LinkSpec,
        configure: impl Fn(&mut TurnServerConfig),
    ) -> SimTurn {
        SimTurn::build(seed, configure, link, false)
    }

    fn build(
        seed: u64,
        configure: impl Fn(&mut TurnServerConfig),
        latency: LinkSpec,
        trace: bool,
    ) -> SimTurn {
        let mut b = World::builder(seed);
        let epoch = b.epoch();
        let internet = b.internet();
        let home = b.network("home");
        b.router(
            RouterSpec::new("nat", internet, home)
                .v4(NAT_V4)
                .v6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1))
                .nat(Nat::port_restricted_cone())
                .link(latency),
        );
        let alice = b.host(
            HostSpec::new("alice", home)
                .v4([192, 168, 1, 2])
                .v6(ALICE_V6)
                .link(latency),
            Later::<TurnClient>(None),
        );
        let server = |listen: SocketAddr| {
            let mut config = TurnServerConfig::new(listen, USER, PASSWORD, REALM);
            configure(&mut config);
            TurnServer::new(config)
        };
        let turn = b.host(
            HostSpec::new("turn", internet).v4(TURN_V4).link(latency),
            server(SocketAddr::from((TURN_V4, TURN_PORT))),
        );
        let turn6 = b.host(
            HostSpec::new("turn6", internet).v6(TURN_V6).link(latency),
            server(SocketAddr::from((TURN_V6, TURN_PORT))),
        );
        let peer = b.host(
            HostSpec::new("peer", internet)
                .v4(PEER_V4)
                .v6(PEER_V6)
                .link(latency),
            Probe::new(epoch),
        );
        let stranger = b.host(
            HostSpec::new("strngr", internet)
                .v4([198, 51, 100, 21])
                .v6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x21))
                .link(latency),
            Probe::new(epoch),
        );
        if trace {
            b.trace_with(TurnDecoder::default());
        }
        let world = b.build().expect("a valid world");
        SimTurn {
            world,
            alice,
            turn,
            turn6,
            peer,
            stranger,
            seen: 0,
            unclaimed: VecDeque::new(),
            peers: Vec::new(),
            next_conn: 1,
        }
    }

    /// The world, to look at.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The world, to act on.
    pub fn world_mut(&mut self) -> &mut World {
        &mut self.world
    }

    /// The IPv4 server.
    pub fn server_v4(&self) -> &TurnServer {
        self.world.endpoint(self.turn).expect("a TURN server")
    }

    fn probe(&self, host: HostId) -> &Probe {
        self.world.endpoint(host).expect("a probe")
    }

    fn act(&mut self, host: HostId, step: Step) {
        self.world
            .with_endpoint(host, |p: &mut Probe, _| p.act(step))
            .expect("a probe");
    }

    /// Where a peer's connection is: its host and id, once it has one.
    fn locate(&self, peer: Peer) -> Option<(HostId, ConnId)> {
        match self.peers[peer.0] {
            SimPeer::Listening => {
                let first = *self.probe(self.peer).accepted().first()?;
                Some((self.peer, first))
            }
            SimPeer::Connecting { host, conn } => Some((host, conn)),
        }
    }
}

impl TurnFixture for SimTurn {
    fn server(&self, family: Family) -> SocketAddr {
        match family {
            Family::V4 => SocketAddr::from((TURN_V4, TURN_PORT)),
            Family::V6 => SocketAddr::from((TURN_V6, TURN_PORT)),
        }
    }

    fn client_ip(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::from(NAT_V4),
            Family::V6 => IpAddr::V6(ALICE_V6),
        }
    }

    fn relay_ip(&self, family: Family) -> IpAddr {
        self.server(family).ip()
    }

    fn peer_ip(&self, family: Family) -> IpAddr {
        match family {
            Family::V4 => IpAddr::from(PEER_V4),
            Family::V6 => IpAddr::V6(PEER_V6),
        }
    }

    fn start(&mut self, client: TurnClient) {
        self.world
            .with_endpoint(self.alice, |slot: &mut Later<TurnClient>, _| {
                assert!(slot.0.is_none(), "one client per fixture");
                slot.0 = Some(client);
            })
            .expect("alice's slot");
    }

    fn command<R>(&mut self, f: impl FnOnce(&mut TurnClient, Instant) -> R) -> R {
        self.world
            .with_endpoint(self.alice, |slot: &mut Later<TurnClient>, now| {
                f(slot.0.as_mut().expect("the client was started"), now)
            })
            .expect("alice's slot")
    }

    fn client(&self) -> &TurnClient {
        let slot: &Later<TurnClient> = self.world.endpoint(self.alice).expect("alice's slot");
        slot.0.as_ref().expect("the client was started")
    }

    fn now(&self) -> Instant {
        self.world.instant()
    }

    fn advance(&mut self, deadline: Instant) {
        let until = deadline.saturating_duration_since(self.world.epoch());
        match self.world.next_time() {
            Some(t) if t <= until => {
                self.world.step();
            }
            _ => self.world.run_until(until),
        }
    }

    fn take_event(&mut self, until: &mut dyn FnMut(&TurnEvent) -> bool) -> Option<TurnEvent> {
        // The world keeps the latest 10 000 events per host; no scenario comes near that.
        let events = self.world.events::<TurnEvent>(self.alice);
        let total = events.len();
        self.unclaimed
            .extend(events.into_iter().skip(self.seen).map(|(_, e)| e));
        self.seen = total;
        let i = self.unclaimed.iter().position(until)?;
        self.unclaimed.remove(i)
    }

    fn listen_peer(&mut self, family: Family) -> (Peer, SocketAddr) {
        assert!(
            !self.peers.iter().any(|p| matches!(p, SimPeer::Listening)),
            "one listening peer per fixture"
        );
        let local = SocketAddr::new(self.peer_ip(family), PEER_PORT);
        self.act(
            self.peer,
            Step::Listen {
                listener: ListenerId(u32::from(PEER_PORT)),
                local,
            },
        );
        self.peers.push(SimPeer::Listening);
        (Peer(self.peers.len() - 1), local)
    }

    fn connect_peer(&mut self, to: SocketAddr, from: PeerHost) -> Peer {
        let host = match from {
            PeerHost::Peer => self.peer,
            PeerHost::Stranger => self.stranger,
        };
        let n = self.next_conn;
        self.next_conn += 1;
        self.act(host, Step::connect(n, to));
        self.peers.push(SimPeer::Connecting {
            host,
            conn: ConnId::Connect(n),
        });
        Peer(self.peers.len() - 1)
    }

    fn peer_send(&mut self, peer: Peer, data: &[u8]) {
        let (host, conn) = self.locate(peer).expect("the peer has a connection");
        self.act(
            host,
            Step::Send {
                conn,
                data: Bytes::copy_from_slice(data),
            },
        );
    }

    fn hold_client(&mut self, held: bool) {
        let link = LinkOf::Host(self.alice);
        let fault = if held {
            Fault::LinkDown(link)
        } else {
            Fault::LinkUp(link)
        };
        let now = self.world.now();
        self.world.schedule(now, fault);
        // Carry it out now, before anything else moves.
        self.world.step();
    }

    fn peer_close(&mut self, peer: Peer) {
        let (host, conn) = self.locate(peer).expect("the peer has a connection");
        self.act(host, Step::Close(conn));
    }

    fn peer(&self, peer: Peer) -> PeerLog {
        let Some((host, conn)) = self.locate(peer) else {
            return PeerLog {
                state: PeerState::Listening,
                received: Vec::new(),
                error: None,
            };
        };
        let log = self
            .probe(host)
            .conn(conn)
            .expect("a connection the probe knows");
        let state = match log.state {
            ConnState::Opening => PeerState::Connecting,
            ConnState::Open => PeerState::Open,
            ConnState::HalfClosed | ConnState::Closed | ConnState::Dropped => PeerState::Closed,
            ConnState::Reset => PeerState::Reset,
            ConnState::Failed(_) => PeerState::Failed,
        };
        let error = match &log.state {
            ConnState::Failed(e) => Some(format!("{e:?}")),
            _ => None,
        };
        PeerLog {
            state,
            received: log.received.clone(),
            error,
        }
    }

    fn fault(&mut self, fault: ServerFault) -> bool {
        self.world
            .with_endpoint(self.turn, |s: &mut TurnServer, _| match fault {
                ServerFault::Restart => s.restart(),
                ServerFault::Silent => s.set_silent(true),
                ServerFault::DropDataConnection(id) => s.drop_data_connection(id),
            })
            .is_some()
    }
}
