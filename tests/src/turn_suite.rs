//! The TURN client scenarios, written once against a [`TurnFixture`] and run unchanged by
//! every driver: Debian's real coturn on loopback (`turn_coturn`), Ferry's own server on
//! loopback (`turn_ferry_loopback`) and Ferry's own server in the simulator (`turn_sim`).
//!
//! A fixture owns the server, one TURN client and the peers. Peers are operations on the
//! fixture (listen, connect, send, look), not threads, so a scenario reads the same whether
//! time is real (sockets polled in a loop) or virtual (the simulator's clock).
//!
//! Who runs what:
//! - every driver: the allocation and its 401, a wrong password, Connect and
//!   ConnectionAttempt with bytes both ways, an unpermitted peer reset, a 4 s lifetime
//!   refreshed and one left to expire, IPv6, the whole RFC 6062 tour, early data cut at 64 KiB, Connect's 446 and
//!   447, a stale nonce (438) signed again, and a Connect without permission (whose answer
//!   differs: each driver asserts its server's);
//! - Ferry's server only (loopback and simulator), as coturn cannot be told to fail: a
//!   restart, silence, a dropped data connection;
//! - the simulator only, as it takes six minutes: permissions kept past five minutes.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::ConnId;
use ferry_proto::turn::{Family, TurnClient, TurnConfig, TurnError, TurnEvent};

use crate::coturn::{PASSWORD, USER};

/// How long any step may take. Every wait ends as soon as its event comes, so this bounds
/// only a failure; it is long because on real sockets a loaded 2-core CI machine can starve
/// coturn or the test thread for seconds, and a step that is merely late is not a bug.
pub const WAIT: Duration = Duration::from_secs(30);

/// A peer of the relay, by its number in the fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub usize);

/// Where a connecting peer connects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerHost {
    /// The peers' address, [`TurnFixture::peer_ip`].
    Peer,
    /// Another address, which the scenarios never give a permission.
    Stranger,
}

/// Where a peer's connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Listening, nothing accepted yet.
    Listening,
    /// Connecting, no answer yet.
    Connecting,
    /// Connected or accepted.
    Open,
    /// The other side closed (end of stream).
    Closed,
    /// The other side reset it.
    Reset,
    /// The connect failed.
    Failed,
}

/// What a peer saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerLog {
    /// Its state.
    pub state: PeerState,
    /// Every byte it received, in order.
    pub received: Vec<u8>,
    /// What the driver said went wrong (a failed connect, a read error), for messages.
    pub error: Option<String>,
}

/// A fault a server can be told to have (Ferry's can; coturn cannot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerFault {
    /// Restart: every allocation lost.
    Restart,
    /// Stop answering requests.
    Silent,
    /// Drop the connection with this CONNECTION-ID, both sides.
    DropDataConnection(u32),
}

/// A TURN server under test with one client and its peers, accepting [`USER`] /
/// [`PASSWORD`], its lifetimes capped as the test that made it asked.
pub trait TurnFixture {
    /// The server's address for a family.
    fn server(&self, family: Family) -> SocketAddr;
    /// The address the server sees the client at (what MAPPED-ADDRESS must say).
    fn client_ip(&self, family: Family) -> IpAddr;
    /// The address the server relays from.
    fn relay_ip(&self, family: Family) -> IpAddr;
    /// The address peers live at.
    fn peer_ip(&self, family: Family) -> IpAddr;
    /// Starts the client (once per fixture).
    fn start(&mut self, client: TurnClient);
    /// Calls `f` on the client (a command) at the current time and carries out what it asked.
    fn command<R>(&mut self, f: impl FnOnce(&mut TurnClient, Instant) -> R) -> R;
    /// The client.
    fn client(&self) -> &TurnClient;
    /// The current time (real or virtual).
    fn now(&self) -> Instant;
    /// Lets time run a little (one instant of the simulator; one poll of every socket),
    /// never past `deadline`.
    fn advance(&mut self, deadline: Instant);
    /// Takes the first client event not taken yet that satisfies `until`.
    fn take_event(&mut self, until: &mut dyn FnMut(&TurnEvent) -> bool) -> Option<TurnEvent>;
    /// A peer listening at [`peer_ip`](Self::peer_ip) on a port of its own; it accepts one
    /// connection. One listening peer per fixture.
    fn listen_peer(&mut self, family: Family) -> (Peer, SocketAddr);
    /// A peer connecting to `to` from `from`.
    fn connect_peer(&mut self, to: SocketAddr, from: PeerHost) -> Peer;
    /// A peer sends bytes.
    fn peer_send(&mut self, peer: Peer, data: &[u8]);
    /// A peer closes its connection (a FIN, once what it sent is out).
    fn peer_close(&mut self, peer: Peer);
    /// What a peer saw so far.
    fn peer(&self, peer: Peer) -> PeerLog;
    /// Makes the server fail; `false` when this server cannot.
    fn fault(&mut self, fault: ServerFault) -> bool;
    /// Holds the client back (`true`) or lets it go: while held, nothing the server sends
    /// reaches it (its access link is down in the simulator; on sockets it is not run).
    fn hold_client(&mut self, held: bool);
    /// How many of a peer's bytes the server keeps before the client binds the connection
    /// (RFC 6062 §5.3 leaves the amount to the server): [`EARLY_DATA_KEPT`] exactly, unless
    /// the server counts something else.
    fn early_data_kept(&self) -> std::ops::RangeInclusive<usize> {
        EARLY_DATA_KEPT..=EARLY_DATA_KEPT
    }

    /// Runs until a client event satisfies `until` (returned, and taken) or `timeout`
    /// passes (`None`). Events that do not satisfy it stay for later calls.
    fn run_until(
        &mut self,
        timeout: Duration,
        mut until: impl FnMut(&TurnEvent) -> bool,
    ) -> Option<TurnEvent>
    where
        Self: Sized,
    {
        let deadline = self.now() + timeout;
        loop {
            if let Some(e) = self.take_event(&mut until) {
                return Some(e);
            }
            if self.now() >= deadline {
                return None;
            }
            self.advance(deadline);
        }
    }

    /// Runs for `d`.
    fn run_for(&mut self, d: Duration)
    where
        Self: Sized,
    {
        let deadline = self.now() + d;
        while self.now() < deadline {
            self.advance(deadline);
        }
    }

    /// Runs until what `peer` saw satisfies `until`, or `timeout` passes; what it saw.
    fn run_until_peer(
        &mut self,
        timeout: Duration,
        peer: Peer,
        until: impl Fn(&PeerLog) -> bool,
    ) -> PeerLog
    where
        Self: Sized,
    {
        let deadline = self.now() + timeout;
        loop {
            let log = self.peer(peer);
            if until(&log) || self.now() >= deadline {
                return log;
            }
            self.advance(deadline);
        }
    }
}

fn config(f: &impl TurnFixture, password: &str, family: Family) -> TurnConfig {
    let mut config = TurnConfig::new(f.server(family), USER, password);
    config.family = family;
    config
}

fn start(f: &mut impl TurnFixture, password: &str, family: Family) {
    let config = config(f, password, family);
    f.start(TurnClient::new(config, 0x5eed));
}

/// Allocates and returns the relayed and mapped addresses.
fn allocate(f: &mut impl TurnFixture) -> (SocketAddr, SocketAddr) {
    match f.run_until(WAIT, |e| {
        matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
    }) {
        Some(TurnEvent::Allocated {
            relayed, mapped, ..
        }) => (relayed, mapped),
        other => panic!("no allocation: {other:?}"),
    }
}

fn permit(f: &mut impl TurnFixture, ip: IpAddr) {
    f.command(|c, now| c.permit(now, [ip]));
    let got = f.run_until(WAIT, |e| {
        matches!(
            e,
            TurnEvent::Permitted { .. } | TurnEvent::PermissionFailed { .. }
        )
    });
    assert_eq!(got, Some(TurnEvent::Permitted { ips: vec![ip] }));
}

fn peer_stream(f: &mut impl TurnFixture) -> (ConnId, SocketAddr, bool) {
    match f.run_until(WAIT, |e| {
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
fn read_from_peer(f: &mut impl TurnFixture, conn: ConnId, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < want {
        match f.run_until(
            WAIT,
            |e| matches!(e, TurnEvent::PeerData { conn: c, .. } if *c == conn),
        ) {
            Some(TurnEvent::PeerData { data, .. }) => got.extend_from_slice(&data),
            other => panic!("no data from the peer after {} bytes: {other:?}", got.len()),
        }
    }
    got
}

/// Runs until `peer` received `want` bytes; they.
fn peer_reads(f: &mut impl TurnFixture, peer: Peer, want: usize) -> Vec<u8> {
    let log = f.run_until_peer(WAIT, peer, |l| l.received.len() >= want);
    assert!(log.received.len() >= want, "the peer got {log:?}");
    log.received
}

fn ended(log: &PeerLog) -> bool {
    matches!(
        log.state,
        PeerState::Closed | PeerState::Reset | PeerState::Failed
    )
}

/// Scenario `allocation_with_the_401_dance_and_clean_deallocation`.
pub fn allocation_with_the_401_dance_and_clean_deallocation(f: &mut impl TurnFixture) {
    start(f, PASSWORD, Family::V4);
    let (relayed, mapped) = allocate(f);
    assert_eq!(relayed.ip(), f.relay_ip(Family::V4));
    assert_ne!(relayed.port(), 0);
    assert_eq!(
        mapped.ip(),
        f.client_ip(Family::V4),
        "the server saw us where we are"
    );
    f.command(|c, now| c.deallocate(now));
    assert_eq!(
        f.run_until(WAIT, |e| matches!(
            e,
            TurnEvent::Deallocated | TurnEvent::Failed { .. }
        )),
        Some(TurnEvent::Deallocated)
    );
    assert!(f.client().is_done());
}

/// Scenario `a_wrong_password_is_a_clear_error`.
pub fn a_wrong_password_is_a_clear_error(f: &mut impl TurnFixture) {
    start(f, "not-the-password", Family::V4);
    let got = f.run_until(WAIT, |e| {
        matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
    });
    assert_eq!(
        got,
        Some(TurnEvent::Failed {
            error: TurnError::WrongCredentials
        })
    );
}

/// Scenario `permission_then_connect_to_a_peer_with_bytes_both_ways`: the client's close of
/// its data connection reaches the peer as a reset.
pub fn permission_then_connect_to_a_peer_with_bytes_both_ways(f: &mut impl TurnFixture) {
    let (peer, peer_addr) = f.listen_peer(Family::V4);
    start(f, PASSWORD, Family::V4);
    allocate(f);
    permit(f, peer_addr.ip());
    f.command(|c, now| c.connect_peer(now, peer_addr));
    let (conn, from, incoming) = peer_stream(f);
    assert_eq!((from, incoming), (peer_addr, false));
    f.command(|c, _| c.send(conn, Bytes::from_static(b"ping")).expect("bound"));
    assert_eq!(peer_reads(f, peer, 4), b"ping");
    f.peer_send(peer, b"pong");
    assert_eq!(read_from_peer(f, conn, 4), b"pong");
    f.command(|c, _| c.close_peer(conn));
    let log = f.run_until_peer(WAIT, peer, ended);
    assert_eq!(
        log.state,
        PeerState::Reset,
        "a close on one side is a reset on the other"
    );
}

/// Scenario `a_peer_connecting_to_the_relay_is_accepted_with_bytes_both_ways`: the peer
/// speaks first, before the client bound its data connection (early data the server keeps).
pub fn a_peer_connecting_to_the_relay_is_accepted_with_bytes_both_ways(f: &mut impl TurnFixture) {
    start(f, PASSWORD, Family::V4);
    let (relayed, _) = allocate(f);
    let peer_ip = f.peer_ip(Family::V4);
    permit(f, peer_ip);
    let peer = f.connect_peer(relayed, PeerHost::Peer);
    f.peer_send(peer, b"hello relay");
    let (conn, peer_addr, incoming) = peer_stream(f);
    assert!(incoming);
    assert_eq!(peer_addr.ip(), peer_ip);
    assert_eq!(read_from_peer(f, conn, 11), b"hello relay");
    f.command(|c, _| c.send(conn, Bytes::from_static(b"howdy")).expect("bound"));
    assert_eq!(peer_reads(f, peer, 5), b"howdy");
}

/// Scenario `a_connection_from_an_address_without_permission_is_refused`.
pub fn a_connection_from_an_address_without_permission_is_refused(f: &mut impl TurnFixture) {
    start(f, PASSWORD, Family::V4);
    let (relayed, _) = allocate(f);
    let peer_ip = f.peer_ip(Family::V4);
    permit(f, peer_ip);
    let stranger = f.connect_peer(relayed, PeerHost::Stranger);
    f.peer_send(stranger, b"let me in");
    let got = f.run_until(Duration::from_secs(2), |e| {
        matches!(e, TurnEvent::PeerStream { .. })
    });
    assert_eq!(got, None, "no stream from an address without permission");
    let log = f.run_until_peer(WAIT, stranger, ended);
    assert_eq!(
        log.state,
        PeerState::Reset,
        "the relay reset the unpermitted connection: {log:?}"
    );
    assert!(log.received.is_empty(), "{log:?}");
}

/// Scenario `a_short_lifetime_is_refreshed`: the server must cap lifetimes at 4 s, so the
/// refresh comes after 2 s.
pub fn a_short_lifetime_is_refreshed(f: &mut impl TurnFixture) {
    start(f, PASSWORD, Family::V4);
    let lifetime = match f.run_until(WAIT, |e| {
        matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
    }) {
        Some(TurnEvent::Allocated { lifetime, .. }) => lifetime,
        other => panic!("{other:?}"),
    };
    assert!(lifetime <= Duration::from_secs(4), "{lifetime:?}");
    for _ in 0..2 {
        let got = f.run_until(WAIT, |e| {
            matches!(e, TurnEvent::Refreshed { .. } | TurnEvent::Failed { .. })
        });
        assert!(matches!(got, Some(TurnEvent::Refreshed { .. })), "{got:?}");
    }
    // Past the first lifetime, the allocation is still alive.
    assert!(!f.client().is_done());
}

/// Scenario `ipv6_allocation_and_connect`.
pub fn ipv6_allocation_and_connect(f: &mut impl TurnFixture) {
    let (peer, peer_addr) = f.listen_peer(Family::V6);
    start(f, PASSWORD, Family::V6);
    let (relayed, mapped) = allocate(f);
    assert!(relayed.is_ipv6() && mapped.is_ipv6(), "{relayed} {mapped}");
    assert_eq!(relayed.ip(), f.relay_ip(Family::V6));
    assert_eq!(mapped.ip(), f.client_ip(Family::V6));
    permit(f, peer_addr.ip());
    f.command(|c, now| c.connect_peer(now, peer_addr));
    let (conn, from, _) = peer_stream(f);
    assert_eq!(from, peer_addr);
    f.command(|c, _| c.send(conn, Bytes::from_static(b"v6!")).expect("bound"));
    let got = peer_reads(f, peer, 3);
    f.peer_send(peer, &got);
    assert_eq!(read_from_peer(f, conn, 3), b"v6!");
}

/// A client allocated with a 1 s request timeout, for the fault scenarios.
fn allocated_for_faults(f: &mut impl TurnFixture) -> SocketAddr {
    let mut config = config(f, PASSWORD, Family::V4);
    config.request_timeout = Duration::from_secs(1);
    f.start(TurnClient::new(config, 9));
    allocate(f).0
}

/// Scenario `a_restart_loses_the_allocation_and_the_client_hears_it` (Ferry's server only).
pub fn a_restart_loses_the_allocation_and_the_client_hears_it(f: &mut impl TurnFixture) {
    allocated_for_faults(f);
    assert!(f.fault(ServerFault::Restart), "this server cannot restart");
    let got = f.run_until(WAIT, |e| matches!(e, TurnEvent::Failed { .. }));
    assert_eq!(
        got,
        Some(TurnEvent::Failed {
            error: TurnError::ControlLost
        })
    );
    assert!(f.client().is_done());
}

/// Scenario `a_server_that_stops_answering_is_a_timeout` (Ferry's server only).
pub fn a_server_that_stops_answering_is_a_timeout(f: &mut impl TurnFixture) {
    allocated_for_faults(f);
    assert!(
        f.fault(ServerFault::Silent),
        "this server cannot fall silent"
    );
    let peer_ip = f.peer_ip(Family::V4);
    f.command(|c, now| c.permit(now, [peer_ip]));
    let got = f.run_until(WAIT, |e| {
        matches!(
            e,
            TurnEvent::PermissionFailed { .. } | TurnEvent::Permitted { .. }
        )
    });
    assert_eq!(
        got,
        Some(TurnEvent::PermissionFailed {
            ips: vec![peer_ip],
            error: TurnError::Timeout
        })
    );
}

/// Scenario `a_dropped_data_connection_closes_the_peer_stream` (Ferry's server only): the
/// client hears PeerClosed and the peer is reset.
pub fn a_dropped_data_connection_closes_the_peer_stream(f: &mut impl TurnFixture) {
    let relayed = allocated_for_faults(f);
    let peer_ip = f.peer_ip(Family::V4);
    permit(f, peer_ip);
    let peer = f.connect_peer(relayed, PeerHost::Peer);
    let (conn, _, incoming) = peer_stream(f);
    assert!(incoming);
    // The server numbers connections from 0x1000; this is the first.
    assert!(f.fault(ServerFault::DropDataConnection(0x1000)));
    let got = f.run_until(WAIT, |e| matches!(e, TurnEvent::PeerClosed { .. }));
    assert_eq!(got, Some(TurnEvent::PeerClosed { conn }));
    let log = f.run_until_peer(WAIT, peer, ended);
    assert_eq!(log.state, PeerState::Reset, "the peer's side was reset too");
}

/// Scenario `connect_and_accept_on_one_allocation`, the whole of RFC 6062 on one allocation
/// (the simulator's trace snapshot is of this one): the 401 dance, a permission for the
/// peer, a Connect to the peer with bytes both ways, then the same peer connecting to the
/// relayed address (ConnectionAttempt) with bytes both ways; the peer closes that second
/// connection and the client hears PeerClosed; the client closes the first and the peer is
/// reset; then a clean deallocation.
pub fn connect_and_accept_on_one_allocation(f: &mut impl TurnFixture) {
    let (listening, peer_addr) = f.listen_peer(Family::V4);
    start(f, PASSWORD, Family::V4);
    let (relayed, _) = allocate(f);
    permit(f, peer_addr.ip());

    f.command(|c, now| c.connect_peer(now, peer_addr));
    let (active, from, incoming) = peer_stream(f);
    assert_eq!((from, incoming), (peer_addr, false));
    f.command(|c, _| c.send(active, Bytes::from_static(b"ping")).expect("bound"));
    assert_eq!(peer_reads(f, listening, 4), b"ping");
    f.peer_send(listening, b"pong");
    assert_eq!(read_from_peer(f, active, 4), b"pong");

    let connecting = f.connect_peer(relayed, PeerHost::Peer);
    f.peer_send(connecting, b"knock knock");
    let (passive, from, incoming) = peer_stream(f);
    assert!(incoming);
    assert_eq!(from.ip(), peer_addr.ip());
    assert_ne!(passive, active);
    assert_eq!(read_from_peer(f, passive, 11), b"knock knock");
    f.command(|c, _| {
        c.send(passive, Bytes::from_static(b"who's there"))
            .expect("bound")
    });
    assert_eq!(peer_reads(f, connecting, 11), b"who's there");

    f.peer_close(connecting);
    let got = f.run_until(WAIT, |e| matches!(e, TurnEvent::PeerClosed { .. }));
    assert_eq!(got, Some(TurnEvent::PeerClosed { conn: passive }));
    f.command(|c, _| c.close_peer(active));
    let log = f.run_until_peer(WAIT, listening, ended);
    assert_eq!(
        log.state,
        PeerState::Reset,
        "the client's close reaches the peer as a reset"
    );

    f.command(|c, now| c.deallocate(now));
    assert_eq!(
        f.run_until(WAIT, |e| matches!(
            e,
            TurnEvent::Deallocated | TurnEvent::Failed { .. }
        )),
        Some(TurnEvent::Deallocated)
    );
}

/// What a server keeps of a peer's bytes before the client binds: 64 KiB. (Ferry's server
/// keeps [`EARLY_DATA`](ferry_sim::turn_server::EARLY_DATA); coturn keeps 16 reads,
/// `MAX_UNSENT_BUFFER_SIZE`, at most this much, and drops the rest.)
pub const EARLY_DATA_KEPT: usize = 64 * 1024;

/// Scenario `early_data_beyond_the_limit_is_dropped`: a permitted peer connects and sends
/// 200 000 bytes while the client is held back, so all of it reaches the server before the
/// client can bind; the client then gets a prefix of what was sent, as long as the server
/// keeps ([`TurnFixture::early_data_kept`]), and nothing more: the rest was dropped, not
/// delayed.
pub fn early_data_beyond_the_limit_is_dropped(f: &mut impl TurnFixture) {
    start(f, PASSWORD, Family::V4);
    let (relayed, _) = allocate(f);
    let peer_ip = f.peer_ip(Family::V4);
    permit(f, peer_ip);
    f.hold_client(true);
    let peer = f.connect_peer(relayed, PeerHost::Peer);
    let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    f.peer_send(peer, &sent);
    // The peer's connection is open (the server accepted it), then its bytes have time to
    // arrive, retransmissions and all.
    let log = f.run_until_peer(WAIT, peer, |l| l.state != PeerState::Connecting);
    assert_eq!(log.state, PeerState::Open);
    f.run_for(Duration::from_secs(2));
    f.hold_client(false);
    let (conn, _, incoming) = peer_stream(f);
    assert!(incoming);
    let mut got = Vec::new();
    // Until a second passes with nothing new.
    while let Some(TurnEvent::PeerData { data, .. }) = f.run_until(
        Duration::from_secs(1),
        |e| matches!(e, TurnEvent::PeerData { conn: c, .. } if *c == conn),
    ) {
        got.extend_from_slice(&data);
    }
    let kept = f.early_data_kept();
    assert!(
        kept.contains(&got.len()),
        "what the server kept before the bind: {} bytes, not in {kept:?}",
        got.len()
    );
    assert!(
        got == sent[..got.len()],
        "the client got a prefix of what the peer sent"
    );
}

fn connect_outcome(f: &mut impl TurnFixture, peer: SocketAddr) -> TurnEvent {
    f.command(|c, now| c.connect_peer(now, peer));
    f.run_until(WAIT, |e| {
        matches!(
            e,
            TurnEvent::PeerStream { .. } | TurnEvent::PeerConnectFailed { .. }
        )
    })
    .expect("the Connect was answered")
}

/// Scenario `connect_errors_are_named_as_coturn_names_them`: with a permission, a Connect to
/// a port where nothing listens is 447 (Connection Timeout or Failure), a second Connect to
/// a peer already connected is 446 (Connection Already Exists).
pub fn connect_errors_are_named_as_coturn_names_them(f: &mut impl TurnFixture) {
    let (_listening, peer_addr) = f.listen_peer(Family::V4);
    start(f, PASSWORD, Family::V4);
    allocate(f);
    permit(f, peer_addr.ip());
    let closed = SocketAddr::new(peer_addr.ip(), 1);
    assert_eq!(
        connect_outcome(f, closed),
        TurnEvent::PeerConnectFailed {
            peer: closed,
            error: TurnError::ConnectionFailed
        }
    );
    assert!(matches!(
        connect_outcome(f, peer_addr),
        TurnEvent::PeerStream {
            incoming: false,
            ..
        }
    ));
    assert_eq!(
        connect_outcome(f, peer_addr),
        TurnEvent::PeerConnectFailed {
            peer: peer_addr,
            error: TurnError::ConnectionAlreadyExists
        }
    );
}

/// Scenario `a_connect_before_any_permission`: a Connect to a listening peer for which the
/// owner asked no permission. Servers differ on such a Connect (coturn connects anyway;
/// Ferry's simulated server answers 403, as RFC 8656 permissions suggest), so the client
/// permits the peer first and then connects: on both, the stream opens.
pub fn a_connect_before_any_permission(f: &mut impl TurnFixture) -> TurnEvent {
    let (_listening, peer_addr) = f.listen_peer(Family::V4);
    start(f, PASSWORD, Family::V4);
    allocate(f);
    connect_outcome(f, peer_addr)
}

/// Scenario `a_forbidden_address_does_not_sink_the_others`, for a server that refuses
/// loopback peers (coturn without `--allow-loopback-peers`, the simulator's by default): a
/// permission asked for the peer and for a loopback address at once. The server refuses
/// the request whole (403); what the client then reports about each address, in order.
pub fn a_forbidden_address_does_not_sink_the_others(f: &mut impl TurnFixture) -> Vec<TurnEvent> {
    start(f, PASSWORD, Family::V4);
    allocate(f);
    let peer_ip = f.peer_ip(Family::V4);
    let loopback: IpAddr = "127.0.0.1".parse().expect("an address");
    f.command(|c, now| c.permit(now, [peer_ip, loopback]));
    let mut got = Vec::new();
    while got.len() < 2 {
        match f.run_until(WAIT, |e| {
            matches!(
                e,
                TurnEvent::Permitted { .. } | TurnEvent::PermissionFailed { .. }
            )
        }) {
            Some(e) => got.push(e),
            None => break,
        }
    }
    got
}

/// Scenario `a_stale_nonce_is_renewed`: the server's nonces last 2 s; 4 s after the
/// allocation a CreatePermission still succeeds (the server answers 438 Stale Nonce with a
/// new nonce, the client signs the request again). The client's count of 438s proves the
/// nonce did go stale: without it the test would pass against a server that ignored the
/// option.
pub fn a_stale_nonce_is_renewed(f: &mut impl TurnFixture) {
    start(f, PASSWORD, Family::V4);
    allocate(f);
    assert_eq!(f.client().stale_nonces(), 0, "the nonce is fresh at first");
    f.run_for(Duration::from_secs(4));
    let peer_ip = f.peer_ip(Family::V4);
    permit(f, peer_ip);
    assert!(!f.client().is_done());
    assert!(
        f.client().stale_nonces() > 0,
        "the permission was granted, but no 438 came: the nonce never went stale"
    );
}

/// Scenario `a_permission_is_kept_past_five_minutes`: permissions last 5 minutes on the
/// server; the client refreshes them while it wants them, so a peer connecting 6 minutes
/// later is still let in. (Six minutes of real time: the simulator runs it, the socket
/// drivers do not.)
pub fn a_permission_is_kept_past_five_minutes(f: &mut impl TurnFixture) {
    start(f, PASSWORD, Family::V4);
    let (relayed, _) = allocate(f);
    let peer_ip = f.peer_ip(Family::V4);
    permit(f, peer_ip);
    let refreshed = f.run_until(Duration::from_secs(6 * 60), |e| {
        matches!(
            e,
            TurnEvent::Failed { .. } | TurnEvent::PermissionFailed { .. }
        )
    });
    assert_eq!(refreshed, None, "the allocation and the permission held");
    let peer = f.connect_peer(relayed, PeerHost::Peer);
    f.peer_send(peer, b"still here");
    let (conn, _, incoming) = peer_stream(f);
    assert!(incoming);
    assert_eq!(read_from_peer(f, conn, 10), b"still here");
}

/// Scenario `an_allocation_not_refreshed_in_time_is_gone`: lifetimes capped at 4 s; the
/// client is held back for 6 s, so its refresh comes too late: the server ended the session
/// and closed the control connection (coturn does; a 437 to the late refresh would say the
/// same less directly), and the client says the allocation is lost.
pub fn an_allocation_not_refreshed_in_time_is_gone(f: &mut impl TurnFixture) {
    start(f, PASSWORD, Family::V4);
    allocate(f);
    f.hold_client(true);
    f.run_for(Duration::from_secs(6));
    f.hold_client(false);
    let got = f.run_until(WAIT, |e| {
        matches!(e, TurnEvent::Refreshed { .. } | TurnEvent::Failed { .. })
    });
    assert_eq!(
        got,
        Some(TurnEvent::Failed {
            error: TurnError::ControlLost
        })
    );
    assert!(f.client().is_done());
}
