//! A TURN server (RFC 8656 with RFC 6062 TCP relaying) as a sans-IO [`Endpoint`], for the
//! paths no NAT lets through directly. It behaves like coturn where clients can tell:
//! - long-term credentials: 401 with REALM and NONCE, 438 once the nonce is stale, 401 for a
//!   wrong password; every other answer to an authenticated request, success or error, is
//!   signed (the client believes no other);
//! - allocations with a lifetime (capped), refreshed or deleted (lifetime 0), gone with their
//!   control connection; one that expires closes its control connection, as coturn does;
//! - permissions by IP address, for 5 minutes; a peer connection from an address without
//!   permission is reset, and a Connect to one is answered 403 (here this server is
//!   stricter than coturn, which connects anyway);
//! - Connect (CONNECTION-ID once the peer answered, 447 when it did not, 446 when that peer
//!   is already connected), ConnectionAttempt, ConnectionBind on a new connection, then a
//!   raw pipe; a close on one side is a reset on the other, and a half-close is answered
//!   with a close; a peer's early bytes are kept up to 64 KiB, the rest dropped (coturn
//!   keeps 16 reads, which on loopback is 64 KiB too);
//! - IPv4 and IPv6 relays (REQUESTED-ADDRESS-FAMILY);
//! - a Binding request on any new or control connection is answered, unauthenticated, with
//!   the client's address (it is a STUN server too, as coturn is).
//!
//! Faults for tests: [`restart`](TurnServer::restart) (every allocation lost),
//! [`drop_data_connection`](TurnServer::drop_data_connection),
//! [`set_silent`](TurnServer::set_silent) (stops answering).
//!
//! `turn-server-proto` was considered: it is sans-IO, but it does not relay TCP (RFC 6062),
//! which is all Ferry uses, so this server is written here.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{ConnId, Endpoint, Input, ListenerId, Output};
use ferry_proto::rng::SeededRng;
use ferry_proto::turn::StunStream;
use stun_types::attribute::{
    Attribute as _, AttributeStaticType as _, ErrorCode, MessageIntegrity, Nonce, Realm, Software,
    Username, XorMappedAddress,
};
use stun_types::message::{
    IntegrityAlgorithm, LongTermCredentials, Message, MessageClass, MessageIntegrityCredentials,
    MessageType, MessageWrite, MessageWriteExt, MessageWriteVec, Method, TransactionId,
};
use turn_types::attribute::{
    ConnectionId, Lifetime, RequestedAddressFamily, RequestedTransport, XorPeerAddress,
    XorRelayedAddress,
};
use turn_types::message::{
    ALLOCATE, CONNECT, CONNECTION_ATTEMPT, CONNECTION_BIND, CREATE_PERMISSION, REFRESH,
};

/// How long a permission lasts (RFC 8656).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// How long a connection waits for its ConnectionBind (RFC 6062).
pub const BIND_WAIT: Duration = Duration::from_secs(30);
/// How much a peer may send before the client binds; the rest is dropped, as coturn does.
pub const EARLY_DATA: usize = 64 * 1024;

const CONTROL_LISTENER: ListenerId = ListenerId(0);
const TCP: u8 = 6;

/// What the server is told to be.
#[derive(Debug, Clone)]
pub struct TurnServerConfig {
    /// Where clients reach it.
    pub listen: SocketAddr,
    /// Where IPv4 relays are opened.
    pub relay_v4: Option<IpAddr>,
    /// Where IPv6 relays are opened.
    pub relay_v6: Option<IpAddr>,
    /// The realm.
    pub realm: String,
    /// Users and their passwords.
    pub users: BTreeMap<String, String>,
    /// How long a nonce stays fresh.
    pub nonce_lifetime: Duration,
    /// The longest allocation lifetime granted.
    pub max_lifetime: Duration,
    /// Seed for nonces.
    pub seed: u64,
    /// Whether peers on loopback may be permitted. Off by default, as in coturn: a
    /// CreatePermission naming a loopback address is refused whole (403 Forbidden IP),
    /// the other addresses in it too.
    pub allow_loopback_peers: bool,
}

impl TurnServerConfig {
    /// A server at `listen` with one user, relaying on the listening address's family.
    pub fn new(listen: SocketAddr, user: &str, password: &str, realm: &str) -> TurnServerConfig {
        let (relay_v4, relay_v6) = match listen.ip() {
            ip @ IpAddr::V4(_) => (Some(ip), None),
            ip @ IpAddr::V6(_) => (None, Some(ip)),
        };
        TurnServerConfig {
            listen,
            relay_v4,
            relay_v6,
            realm: realm.to_owned(),
            users: BTreeMap::from([(user.to_owned(), password.to_owned())]),
            nonce_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            seed: 1,
            allow_loopback_peers: false,
        }
    }
}

/// What the server tells whoever runs it (for traces).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TurnServerEvent {
    /// An allocation was made.
    Allocated {
        /// The client's address.
        client: SocketAddr,
        /// The relayed address.
        relayed: SocketAddr,
    },
    /// An allocation ended (expired, deleted, or its control connection closed).
    AllocationGone {
        /// The relayed address.
        relayed: SocketAddr,
    },
    /// A peer connection was refused for want of a permission.
    Refused {
        /// The peer.
        peer: SocketAddr,
    },
    /// A client bound a data connection: bytes now flow.
    Bound {
        /// The peer.
        peer: SocketAddr,
    },
}

/// One trace line each: `allocated 198.51.100.3:49152 for 203.0.113.1:20000`.
impl std::fmt::Display for TurnServerEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TurnServerEvent::Allocated { client, relayed } => {
                write!(f, "allocated {relayed} for {client}")
            }
            TurnServerEvent::AllocationGone { relayed } => write!(f, "allocation {relayed} gone"),
            TurnServerEvent::Refused { peer } => {
                write!(f, "refused peer {peer}: no permission")
            }
            TurnServerEvent::Bound { peer } => write!(f, "bound to peer {peer}"),
        }
    }
}

#[derive(Debug)]
enum ClientConn {
    /// Not known yet: control or data.
    Fresh {
        stream: StunStream,
        remote: SocketAddr,
    },
    /// Carries an allocation's requests.
    Control {
        stream: StunStream,
        remote: SocketAddr,
        alloc: Option<u32>,
    },
    /// Bound to a peer connection: a raw pipe.
    Data { peer_conn: ConnId },
}

#[derive(Debug)]
struct Allocation {
    control: ConnId,
    client: SocketAddr,
    username: String,
    relay_listener: ListenerId,
    relayed: Option<SocketAddr>,
    /// The Allocate waiting for the relay listener.
    pending: Option<(TransactionId, Duration)>,
    expires: Instant,
    permissions: BTreeMap<IpAddr, Instant>,
}

#[derive(Debug)]
enum PeerState {
    /// We are connecting to the peer for a Connect request.
    Connecting { tid: TransactionId },
    /// Waiting for the client's ConnectionBind.
    Waiting {
        expires: Instant,
        early: Vec<Bytes>,
        early_bytes: usize,
    },
    /// Piped to the client's data connection.
    Bound { data: ConnId },
}

#[derive(Debug)]
struct PeerConn {
    alloc: u32,
    conn: ConnId,
    peer: SocketAddr,
    state: PeerState,
}

/// The server.
pub struct TurnServer {
    config: TurnServerConfig,
    rng: SeededRng,
    nonce: String,
    nonce_expires: Option<Instant>,
    clients: BTreeMap<ConnId, ClientConn>,
    allocations: BTreeMap<u32, Allocation>,
    next_alloc: u32,
    relay_listeners: BTreeMap<ListenerId, u32>,
    next_listener: u32,
    peers: BTreeMap<u32, PeerConn>,
    by_peer_conn: BTreeMap<ConnId, u32>,
    next_cid: u32,
    next_conn: u32,
    silent: bool,
    /// Bytes piped between peers and clients' data connections (both ways).
    relayed_bytes: u64,
    out: VecDeque<Output<TurnServerEvent>>,
}

impl std::fmt::Debug for TurnServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TurnServer")
            .field("listen", &self.config.listen)
            .field("allocations", &self.allocations.len())
            .finish_non_exhaustive()
    }
}

impl TurnServer {
    /// A server; its first output binds its listening address.
    pub fn new(config: TurnServerConfig) -> TurnServer {
        let mut rng = SeededRng::new(config.seed);
        let nonce = rng.hex(16);
        let mut out = VecDeque::new();
        out.push_back(Output::Listen {
            listener: CONTROL_LISTENER,
            local: config.listen,
        });
        TurnServer {
            config,
            rng,
            nonce,
            nonce_expires: None,
            clients: BTreeMap::new(),
            allocations: BTreeMap::new(),
            next_alloc: 1,
            relay_listeners: BTreeMap::new(),
            next_listener: 1,
            peers: BTreeMap::new(),
            by_peer_conn: BTreeMap::new(),
            next_cid: 0x1000,
            next_conn: 1,
            silent: false,
            relayed_bytes: 0,
            out,
        }
    }

    /// Bytes the relay piped between peers and clients so far, both ways together: what a
    /// test checks to know that the relay, not a direct path, carried a transfer.
    pub fn relayed_bytes(&self) -> u64 {
        self.relayed_bytes
    }

    /// How many allocations exist.
    pub fn allocations(&self) -> usize {
        self.allocations.len()
    }

    /// Fault: the server restarts. Every allocation, permission and connection is lost; every
    /// client and peer connection is reset.
    pub fn restart(&mut self) {
        let conns: Vec<ConnId> = self
            .clients
            .keys()
            .copied()
            .chain(self.by_peer_conn.keys().copied())
            .collect();
        for conn in conns {
            self.out.push_back(Output::Reset { conn });
        }
        for listener in self.relay_listeners.keys().copied().collect::<Vec<_>>() {
            self.out.push_back(Output::Unlisten { listener });
        }
        self.clients.clear();
        self.allocations.clear();
        self.relay_listeners.clear();
        self.peers.clear();
        self.by_peer_conn.clear();
        self.nonce = self.rng.hex(16);
        self.nonce_expires = None;
    }

    /// Fault: drops the connection with this CONNECTION-ID (both sides are reset).
    pub fn drop_data_connection(&mut self, connection_id: u32) {
        self.close_peer(connection_id, true);
    }

    /// Fault: stops (or resumes) answering requests; connections stay up.
    pub fn set_silent(&mut self, silent: bool) {
        self.silent = silent;
    }

    fn conn(&mut self) -> ConnId {
        let c = ConnId::Connect(self.next_conn);
        self.next_conn += 1;
        c
    }

    fn current_nonce(&mut self, now: Instant) -> String {
        match self.nonce_expires {
            Some(at) if at <= now => {
                self.nonce = self.rng.hex(16);
                self.nonce_expires = Some(now + self.config.nonce_lifetime);
            }
            None => self.nonce_expires = Some(now + self.config.nonce_lifetime),
            _ => {}
        }
        self.nonce.clone()
    }

    fn key(&self, username: &str) -> Option<MessageIntegrityCredentials> {
        let password = self.config.users.get(username)?;
        Some(
            LongTermCredentials::new(username.to_owned(), password.clone())
                .to_key(self.config.realm.clone())
                .into(),
        )
    }

    fn send(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.out.push_back(Output::Send {
            conn,
            data: Bytes::from(bytes),
        });
    }

    fn error(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: &Message<'_>,
        code: u16,
        with_nonce: bool,
    ) {
        let mtype = MessageType::from_class_method(MessageClass::Error, req.method());
        let mut w = Message::builder(mtype, req.transaction_id(), MessageWriteVec::new());
        if let Ok(e) = ErrorCode::builder(code).build() {
            let _ = w.add_attribute(&e);
        }
        if with_nonce {
            let nonce = self.current_nonce(now);
            if let (Ok(r), Ok(n)) = (Realm::new(&self.config.realm), Nonce::new(&nonce)) {
                let _ = w.add_attribute(&r);
                let _ = w.add_attribute(&n);
            }
        }
        let _ = w.add_fingerprint();
        self.send(conn, w.finish());
    }

    fn success(
        &mut self,
        conn: ConnId,
        method: Method,
        tid: TransactionId,
        username: &str,
        add: impl FnOnce(&mut MessageWriteVec),
    ) {
        let mtype = MessageType::from_class_method(MessageClass::Success, method);
        let mut w = Message::builder(mtype, tid, MessageWriteVec::new());
        add(&mut w);
        if let Ok(s) = Software::new("ferry-sim-turn") {
            let _ = w.add_attribute(&s);
        }
        if let Some(key) = self.key(username) {
            let _ = w.add_message_integrity(&key, IntegrityAlgorithm::Sha1);
        }
        let _ = w.add_fingerprint();
        self.send(conn, w.finish());
    }

    /// An error answer to an authenticated request: signed, as coturn signs them, so the
    /// client can tell it from an on-path forgery.
    fn refuse(
        &mut self,
        conn: ConnId,
        method: Method,
        tid: TransactionId,
        code: u16,
        username: &str,
    ) {
        let mtype = MessageType::from_class_method(MessageClass::Error, method);
        let mut w = Message::builder(mtype, tid, MessageWriteVec::new());
        if let Ok(e) = ErrorCode::builder(code).build() {
            let _ = w.add_attribute(&e);
        }
        if let Some(key) = self.key(username) {
            let _ = w.add_message_integrity(&key, IntegrityAlgorithm::Sha1);
        }
        let _ = w.add_fingerprint();
        self.send(conn, w.finish());
    }

    /// Checks a request's long-term credentials; answers 401 / 438 itself when they fail.
    fn authenticate(&mut self, now: Instant, conn: ConnId, req: &Message<'_>) -> Option<String> {
        let (Ok(user), Ok(_realm), Ok(nonce)) = (
            req.attribute::<Username>(),
            req.attribute::<Realm>(),
            req.attribute::<Nonce>(),
        ) else {
            self.error(now, conn, req, 401, true);
            return None;
        };
        if !req.has_attribute(MessageIntegrity::TYPE) {
            self.error(now, conn, req, 401, true);
            return None;
        }
        let current = self.current_nonce(now);
        if nonce.nonce() != current {
            self.error(now, conn, req, 438, true);
            return None;
        }
        let username = user.username().to_owned();
        match self.key(&username) {
            Some(key) if req.validate_integrity(&key).is_ok() => Some(username),
            _ => {
                self.error(now, conn, req, 401, true);
                None
            }
        }
    }

    fn on_client_bytes(&mut self, now: Instant, conn: ConnId, data: Bytes) {
        let messages = {
            let Some(client) = self.clients.get_mut(&conn) else {
                return;
            };
            let stream = match client {
                ClientConn::Fresh { stream, .. } | ClientConn::Control { stream, .. } => stream,
                ClientConn::Data { peer_conn } => {
                    let peer_conn = *peer_conn;
                    self.relayed_bytes += data.len() as u64;
                    self.out.push_back(Output::Send {
                        conn: peer_conn,
                        data,
                    });
                    return;
                }
            };
            stream.push(&data);
            let mut messages = Vec::new();
            loop {
                match stream.next_message() {
                    Ok(Some(m)) => messages.push(m),
                    Ok(None) => break,
                    Err(_) => {
                        messages.clear();
                        self.out.push_back(Output::Reset { conn });
                        self.clients.remove(&conn);
                        return;
                    }
                }
            }
            messages
        };
        for m in messages {
            if !self.clients.contains_key(&conn)
                || matches!(self.clients.get(&conn), Some(ClientConn::Data { .. }))
            {
                break;
            }
            self.on_request(now, conn, &m);
        }
    }

    fn on_request(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Ok(req) = Message::from_bytes(bytes) else {
            return;
        };
        if self.silent || !req.has_class(MessageClass::Request) {
            return;
        }
        if req.method() == stun_types::message::BINDING {
            return self.on_binding(conn, &req);
        }
        let Some(username) = self.authenticate(now, conn, &req) else {
            return;
        };
        let method = req.method();
        if method == ALLOCATE {
            self.on_allocate(now, conn, &req, username);
        } else if method == CONNECTION_BIND {
            self.on_connection_bind(conn, &req, &username);
        } else {
            let alloc = match self.clients.get(&conn) {
                Some(ClientConn::Control { alloc: Some(a), .. }) => *a,
                _ => return self.refuse(conn, method, req.transaction_id(), 437, &username),
            };
            if method == REFRESH {
                self.on_refresh(now, conn, &req, alloc, &username);
            } else if method == CREATE_PERMISSION {
                self.on_create_permission(now, conn, &req, alloc, &username);
            } else if method == CONNECT {
                self.on_connect(now, conn, &req, alloc, &username);
            } else {
                self.refuse(conn, method, req.transaction_id(), 400, &username);
            }
        }
    }

    /// A Binding request, unauthenticated, as coturn answers it (RFC 8656 §4: a TURN server
    /// is a STUN server too): the address the request came from, in XOR-MAPPED-ADDRESS. The
    /// nodes' own STUN (`--stun`) learns its server-reflexive candidates from it.
    fn on_binding(&mut self, conn: ConnId, req: &Message<'_>) {
        let remote = match self.clients.get(&conn) {
            Some(ClientConn::Fresh { remote, .. } | ClientConn::Control { remote, .. }) => *remote,
            _ => return,
        };
        let tid = req.transaction_id();
        let mtype = MessageType::from_class_method(MessageClass::Success, req.method());
        let mut w = Message::builder(mtype, tid, MessageWriteVec::new());
        let _ = w.add_attribute(&XorMappedAddress::new(remote, tid));
        let _ = w.add_fingerprint();
        self.send(conn, w.finish());
    }

    fn on_allocate(&mut self, now: Instant, conn: ConnId, req: &Message<'_>, username: String) {
        let remote = match self.clients.get(&conn) {
            Some(ClientConn::Fresh { remote, .. }) => *remote,
            Some(ClientConn::Control { alloc: Some(_), .. }) => {
                return self.refuse(conn, ALLOCATE, req.transaction_id(), 437, &username);
            }
            Some(ClientConn::Control { remote, .. }) => *remote,
            _ => return,
        };
        match req.attribute::<RequestedTransport>() {
            Ok(t) if t.protocol() == TCP => {}
            Ok(_) => return self.refuse(conn, ALLOCATE, req.transaction_id(), 442, &username),
            Err(_) => return self.refuse(conn, ALLOCATE, req.transaction_id(), 400, &username),
        }
        let v6 = req
            .attribute::<RequestedAddressFamily>()
            .is_ok_and(|f| f.family() == stun_types::AddressFamily::IPV6);
        let relay_ip = if v6 {
            self.config.relay_v6
        } else {
            self.config.relay_v4
        };
        let Some(relay_ip) = relay_ip else {
            return self.refuse(conn, ALLOCATE, req.transaction_id(), 440, &username);
        };
        let requested = req
            .attribute::<Lifetime>()
            .map(|l| Duration::from_secs(l.seconds().into()))
            .unwrap_or(Duration::from_secs(600));
        let lifetime = requested
            .min(self.config.max_lifetime)
            .max(Duration::from_secs(1));
        let stream = match self.clients.remove(&conn) {
            Some(ClientConn::Fresh { stream, .. } | ClientConn::Control { stream, .. }) => stream,
            _ => StunStream::new(),
        };
        let id = self.next_alloc;
        self.next_alloc += 1;
        let relay_listener = ListenerId(self.next_listener);
        self.next_listener += 1;
        self.clients.insert(
            conn,
            ClientConn::Control {
                stream,
                remote,
                alloc: Some(id),
            },
        );
        self.relay_listeners.insert(relay_listener, id);
        self.allocations.insert(
            id,
            Allocation {
                control: conn,
                client: remote,
                username,
                relay_listener,
                relayed: None,
                pending: Some((req.transaction_id(), lifetime)),
                expires: now + lifetime,
                permissions: BTreeMap::new(),
            },
        );
        self.out.push_back(Output::Listen {
            listener: relay_listener,
            local: SocketAddr::new(relay_ip, 0),
        });
    }

    fn on_refresh(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: &Message<'_>,
        alloc: u32,
        username: &str,
    ) {
        let requested = req
            .attribute::<Lifetime>()
            .map(|l| Duration::from_secs(l.seconds().into()))
            .unwrap_or(Duration::from_secs(600));
        let tid = req.transaction_id();
        if requested.is_zero() {
            self.success(conn, REFRESH, tid, username, |w| {
                let _ = w.add_attribute(&Lifetime::new(0));
            });
            return self.delete_allocation(alloc);
        }
        let lifetime = requested.min(self.config.max_lifetime);
        if let Some(a) = self.allocations.get_mut(&alloc) {
            a.expires = now + lifetime;
        }
        self.success(conn, REFRESH, tid, username, |w| {
            let _ = w.add_attribute(&Lifetime::new(lifetime.as_secs() as u32));
        });
    }

    fn on_create_permission(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: &Message<'_>,
        alloc: u32,
        username: &str,
    ) {
        let tid = req.transaction_id();
        let ips: Vec<IpAddr> = req
            .iter_attributes()
            .filter(|(_, raw)| raw.get_type() == XorPeerAddress::TYPE)
            .filter_map(|(_, raw)| {
                use stun_types::attribute::AttributeFromRaw as _;
                XorPeerAddress::from_raw_ref(&raw).ok()
            })
            .map(|p| p.addr(tid).ip())
            .collect();
        if ips.is_empty() {
            return self.refuse(conn, CREATE_PERMISSION, tid, 400, username);
        }
        if !self.config.allow_loopback_peers && ips.iter().any(|ip| ip.is_loopback()) {
            return self.refuse(conn, CREATE_PERMISSION, tid, 403, username);
        }
        let Some(a) = self.allocations.get_mut(&alloc) else {
            return;
        };
        let relay_v6 = a.relayed.is_some_and(|r| r.is_ipv6());
        if ips.iter().any(|ip| ip.is_ipv6() != relay_v6) {
            return self.refuse(conn, CREATE_PERMISSION, tid, 443, username);
        }
        for ip in ips {
            a.permissions.insert(ip, now + PERMISSION_LIFETIME);
        }
        self.success(conn, CREATE_PERMISSION, tid, username, |_| {});
    }

    fn permitted(&self, alloc: u32, ip: IpAddr, now: Instant) -> bool {
        self.allocations
            .get(&alloc)
            .is_some_and(|a| a.permissions.get(&ip).is_some_and(|until| *until > now))
    }

    fn on_connect(
        &mut self,
        now: Instant,
        conn: ConnId,
        req: &Message<'_>,
        alloc: u32,
        username: &str,
    ) {
        let tid = req.transaction_id();
        let Ok(peer) = req.attribute::<XorPeerAddress>().map(|p| p.addr(tid)) else {
            return self.refuse(conn, CONNECT, tid, 400, username);
        };
        if !self.permitted(alloc, peer.ip(), now) {
            return self.refuse(conn, CONNECT, tid, 403, username);
        }
        if self
            .peers
            .values()
            .any(|p| p.alloc == alloc && p.peer == peer)
        {
            return self.refuse(conn, CONNECT, tid, 446, username);
        }
        let cid = self.next_cid;
        self.next_cid += 1;
        let peer_conn = self.conn();
        let local_port = self
            .allocations
            .get(&alloc)
            .and_then(|a| a.relayed)
            .map(|r| r.port());
        self.peers.insert(
            cid,
            PeerConn {
                alloc,
                conn: peer_conn,
                peer,
                state: PeerState::Connecting { tid },
            },
        );
        self.by_peer_conn.insert(peer_conn, cid);
        self.out.push_back(Output::Connect {
            conn: peer_conn,
            remote: peer,
            local_port,
            timeout: Duration::from_secs(10),
        });
    }

    fn on_connection_bind(&mut self, conn: ConnId, req: &Message<'_>, username: &str) {
        let tid = req.transaction_id();
        let Ok(cid) = req.attribute::<ConnectionId>().map(|c| c.id()) else {
            return;
        };
        // A connection that carries an allocation cannot become another's data connection.
        if matches!(
            self.clients.get(&conn),
            Some(ClientConn::Control { alloc: Some(_), .. })
        ) {
            return self.refuse(conn, CONNECTION_BIND, tid, 400, username);
        }
        let owner = self
            .peers
            .get(&cid)
            .and_then(|p| self.allocations.get(&p.alloc))
            .map(|a| a.username.clone());
        let Some(p) = self.peers.get_mut(&cid) else {
            // No such connection (expired, or never): coturn answers 400 and closes.
            return self.refuse(conn, CONNECTION_BIND, tid, 400, username);
        };
        // Only a peer connection waiting for its bind can be bound, and only by the user
        // whose allocation it belongs to: one still connecting, or bound already, is left as
        // it is (replacing its state first let a premature or second bind, even another
        // user's, take the peer's bytes).
        if !matches!(p.state, PeerState::Waiting { .. }) {
            return self.refuse(conn, CONNECTION_BIND, tid, 400, username);
        }
        if owner.as_deref() != Some(username) {
            return self.refuse(conn, CONNECTION_BIND, tid, 441, username);
        }
        let PeerState::Waiting { early, .. } =
            std::mem::replace(&mut p.state, PeerState::Bound { data: conn })
        else {
            return;
        };
        let (peer_conn, peer) = (p.conn, p.peer);
        self.clients.insert(conn, ClientConn::Data { peer_conn });
        self.success(conn, CONNECTION_BIND, tid, username, |_| {});
        for bytes in early {
            self.out.push_back(Output::Send { conn, data: bytes });
        }
        self.out
            .push_back(Output::Event(TurnServerEvent::Bound { peer }));
    }

    fn on_relay_accept(&mut self, now: Instant, alloc: u32, conn: ConnId, remote: SocketAddr) {
        if !self.permitted(alloc, remote.ip(), now) {
            self.out.push_back(Output::Reset { conn });
            self.out
                .push_back(Output::Event(TurnServerEvent::Refused { peer: remote }));
            return;
        }
        let cid = self.next_cid;
        self.next_cid += 1;
        self.peers.insert(
            cid,
            PeerConn {
                alloc,
                conn,
                peer: remote,
                state: PeerState::Waiting {
                    expires: now + BIND_WAIT,
                    early: Vec::new(),
                    early_bytes: 0,
                },
            },
        );
        self.by_peer_conn.insert(conn, cid);
        let Some(control) = self.allocations.get(&alloc).map(|a| a.control) else {
            return;
        };
        let tid = TransactionId::from(u128::from(self.rng.next_u64()) << 32);
        let mtype = MessageType::from_class_method(MessageClass::Indication, CONNECTION_ATTEMPT);
        let mut w = Message::builder(mtype, tid, MessageWriteVec::new());
        let _ = w.add_attribute(&ConnectionId::new(cid));
        let _ = w.add_attribute(&XorPeerAddress::new(remote, tid));
        let _ = w.add_fingerprint();
        self.send(control, w.finish());
    }

    fn on_peer_bytes(&mut self, cid: u32, data: Bytes) {
        let Some(p) = self.peers.get_mut(&cid) else {
            return;
        };
        match &mut p.state {
            PeerState::Bound { data: client } => {
                let client = *client;
                self.relayed_bytes += data.len() as u64;
                self.out.push_back(Output::Send { conn: client, data });
            }
            PeerState::Waiting {
                early, early_bytes, ..
            } => {
                // coturn keeps some early data and silently drops the rest.
                let room = EARLY_DATA.saturating_sub(*early_bytes);
                let keep = data.slice(..data.len().min(room));
                *early_bytes += keep.len();
                if !keep.is_empty() {
                    early.push(keep);
                }
            }
            PeerState::Connecting { .. } => {}
        }
    }

    fn close_peer(&mut self, cid: u32, reset_peer: bool) {
        let Some(p) = self.peers.remove(&cid) else {
            return;
        };
        self.by_peer_conn.remove(&p.conn);
        if reset_peer {
            self.out.push_back(Output::Reset { conn: p.conn });
        }
        if let PeerState::Bound { data } = p.state {
            self.clients.remove(&data);
            // A close on one side is a reset on the other.
            self.out.push_back(Output::Reset { conn: data });
        }
    }

    fn delete_allocation(&mut self, alloc: u32) {
        let Some(a) = self.allocations.remove(&alloc) else {
            return;
        };
        self.relay_listeners.remove(&a.relay_listener);
        self.out.push_back(Output::Unlisten {
            listener: a.relay_listener,
        });
        let cids: Vec<u32> = self
            .peers
            .iter()
            .filter(|(_, p)| p.alloc == alloc)
            .map(|(c, _)| *c)
            .collect();
        for cid in cids {
            self.close_peer(cid, true);
        }
        if let Some(ClientConn::Control { alloc: slot, .. }) = self.clients.get_mut(&a.control) {
            *slot = None;
        }
        if let Some(relayed) = a.relayed {
            self.out
                .push_back(Output::Event(TurnServerEvent::AllocationGone { relayed }));
        }
    }
}

impl Endpoint for TurnServer {
    type Event = TurnServerEvent;

    fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), ferry_proto::Error> {
        match input {
            Input::Listening { listener, local } => {
                let Some(alloc) = self.relay_listeners.get(&listener).copied() else {
                    return Ok(());
                };
                let Some(a) = self.allocations.get_mut(&alloc) else {
                    return Ok(());
                };
                a.relayed = Some(local);
                let (control, client, username) = (a.control, a.client, a.username.clone());
                if let Some((tid, lifetime)) = a.pending.take() {
                    self.success(control, ALLOCATE, tid, &username, |w| {
                        let _ = w.add_attribute(&XorRelayedAddress::new(local, tid));
                        let _ = w.add_attribute(&XorMappedAddress::new(client, tid));
                        let _ = w.add_attribute(&Lifetime::new(lifetime.as_secs() as u32));
                    });
                }
                self.out
                    .push_back(Output::Event(TurnServerEvent::Allocated {
                        client,
                        relayed: local,
                    }));
            }
            Input::ListenFailed { listener, .. } => {
                if let Some(alloc) = self.relay_listeners.remove(&listener) {
                    if let Some(a) = self.allocations.remove(&alloc) {
                        if let Some((tid, _)) = a.pending {
                            let mtype =
                                MessageType::from_class_method(MessageClass::Error, ALLOCATE);
                            let mut w = Message::builder(mtype, tid, MessageWriteVec::new());
                            if let Ok(e) = ErrorCode::builder(508).build() {
                                let _ = w.add_attribute(&e);
                            }
                            self.send(a.control, w.finish());
                        }
                    }
                }
            }
            Input::Accepted {
                listener,
                conn,
                remote,
            } => {
                if listener == CONTROL_LISTENER {
                    self.clients.insert(
                        conn,
                        ClientConn::Fresh {
                            stream: StunStream::new(),
                            remote,
                        },
                    );
                } else if let Some(alloc) = self.relay_listeners.get(&listener).copied() {
                    self.on_relay_accept(now, alloc, conn, remote);
                } else {
                    self.out.push_back(Output::Reset { conn });
                }
            }
            Input::Connected { conn, .. } => {
                let Some(cid) = self.by_peer_conn.get(&conn).copied() else {
                    return Ok(());
                };
                let Some(p) = self.peers.get_mut(&cid) else {
                    return Ok(());
                };
                let PeerState::Connecting { tid } = p.state else {
                    return Ok(());
                };
                p.state = PeerState::Waiting {
                    expires: now + BIND_WAIT,
                    early: Vec::new(),
                    early_bytes: 0,
                };
                let alloc = p.alloc;
                let Some((control, username)) = self
                    .allocations
                    .get(&alloc)
                    .map(|a| (a.control, a.username.clone()))
                else {
                    return Ok(());
                };
                self.success(control, CONNECT, tid, &username, |w| {
                    let _ = w.add_attribute(&ConnectionId::new(cid));
                });
            }
            Input::ConnectFailed { conn, .. } => {
                let Some(cid) = self.by_peer_conn.remove(&conn) else {
                    return Ok(());
                };
                let Some(p) = self.peers.remove(&cid) else {
                    return Ok(());
                };
                if let PeerState::Connecting { tid } = p.state {
                    if let Some((control, username)) = self
                        .allocations
                        .get(&p.alloc)
                        .map(|a| (a.control, a.username.clone()))
                    {
                        self.refuse(control, CONNECT, tid, 447, &username);
                    }
                }
            }
            Input::Received { conn, data } => {
                if let Some(cid) = self.by_peer_conn.get(&conn).copied() {
                    self.on_peer_bytes(cid, data);
                } else {
                    self.on_client_bytes(now, conn, data);
                }
            }
            Input::HalfClosed { conn } | Input::Closed { conn } | Input::Reset { conn } => {
                if matches!(input, Input::HalfClosed { .. }) {
                    // The other side is done: so is ours (coturn closes the socket).
                    self.out.push_back(Output::Close { conn });
                }
                if let Some(cid) = self.by_peer_conn.get(&conn).copied() {
                    self.close_peer(cid, false);
                } else {
                    match self.clients.remove(&conn) {
                        Some(ClientConn::Control {
                            alloc: Some(alloc), ..
                        }) => self.delete_allocation(alloc),
                        Some(ClientConn::Data { peer_conn }) => {
                            if let Some(cid) = self.by_peer_conn.get(&peer_conn).copied() {
                                if let Some(p) = self.peers.get_mut(&cid) {
                                    // The client side is gone already: only the peer is reset.
                                    p.state = PeerState::Waiting {
                                        expires: now,
                                        early: Vec::new(),
                                        early_bytes: 0,
                                    };
                                }
                                self.close_peer(cid, true);
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<u32> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for alloc in expired {
            let control = self.allocations.get(&alloc).map(|a| a.control);
            self.delete_allocation(alloc);
            // An allocation that expires ends its session, as coturn does: the control
            // connection is closed (the client hears it lost, rather than a 437 later).
            if let Some(control) = control {
                self.clients.remove(&control);
                self.out.push_back(Output::Close { conn: control });
            }
        }
        let unbound: Vec<u32> = self
            .peers
            .iter()
            .filter(
                |(_, p)| matches!(p.state, PeerState::Waiting { expires, .. } if expires <= now),
            )
            .map(|(c, _)| *c)
            .collect();
        for cid in unbound {
            self.close_peer(cid, true);
        }
    }

    fn poll_output(&mut self) -> Option<Output<TurnServerEvent>> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let allocs = self.allocations.values().map(|a| a.expires);
        let waits = self.peers.values().filter_map(|p| match p.state {
            PeerState::Waiting { expires, .. } => Some(expires),
            _ => None,
        });
        allocs.chain(waits).min()
    }
}
