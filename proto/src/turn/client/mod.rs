//! The TURN client: one TCP allocation on one server, for one address family.
//!
//! ```text
//!  control connection ── Allocate ──401──▶ Allocate (signed) ──▶ Allocated { relayed, mapped }
//!        │                      438: re-sign with the new nonce, same request
//!        ├── CreatePermission(ip…) every 4 min while wanted
//!        ├── Refresh at half the lifetime, or every keepalive (60 s) if sooner; Refresh(0) to deallocate
//!        ├── Connect(peer) ──▶ CONNECTION-ID ──▶ data connection ── ConnectionBind ──▶ PeerStream
//!        └── ConnectionAttempt(peer, CONNECTION-ID) ──▶ data connection ── ConnectionBind ──▶ PeerStream
//! ```
//!
//! Every request sits in one table, keyed by transaction id, with what it asks for: the
//! message is rebuilt from that and the current realm and nonce, so a 401 or 438 answer
//! re-signs and resends the same request uniformly. Each request has a deadline; a timeout is
//! an event, never a hang. Transaction ids come from a seeded generator.
//!
//! # Which answers are believed
//! The control connection crosses networks an attacker may sit on; what the server says
//! decides the relayed address we publish to peers. So (RFC 8489 §9.2.5):
//! - a success, or an error other than 401 and 438, to a signed request counts only with a
//!   valid MESSAGE-INTEGRITY; a success to the first, unsigned Allocate never counts (a server
//!   that asks for no credentials is not one this client, which holds some, will use);
//! - a 401 or 438 cannot be signed (the server could not check our key, or our nonce is
//!   stale), so one without integrity is used only to re-sign the same request with the
//!   nonce (and, for a 401, the realm) it brings, at most three times; a 401
//!   that brings back our own realm and nonce says our password is wrong, which ends the
//!   client before any answer was authenticated and is ignored after (a server that has
//!   proved it knows our key does not forget it);
//! - everything else is dropped as if never received, and counted
//!   ([`TurnClient::unauthenticated`]); the request keeps waiting for the real answer until
//!   its deadline. This deviates from RFC 8489, which ends a transaction at once on an
//!   unauthenticated answer over TCP: here a forgery racing the real answer cannot win.
//!
//! `permissions.rs` holds the CreatePermission side and `data.rs` the data connections;
//! this file the allocation, the request table and the `Endpoint` face.
//!
//! Once a data connection is bound it is a raw byte pipe to the peer: the client hands it to
//! its owner as [`TurnEvent::PeerStream`] and then only relays bytes ([`TurnEvent::PeerData`],
//! [`TurnClient::send`]).

use core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use stun_types::attribute::{ErrorCode, Nonce, Realm, Software, Username, XorMappedAddress};
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

use super::codec::StunStream;
use super::error::TurnError;
use crate::io::{ConnId, Endpoint, Input, Output};
use crate::rng::SeededRng;
use crate::timer::Timers;
use crate::turn::{Family, TurnConfig, TurnEvent};

mod data;
mod permissions;

use data::DataConn;
use permissions::Permission;

/// IANA protocol number of TCP, for REQUESTED-TRANSPORT (RFC 6062).
const TCP: u8 = 6;
/// Permissions last 5 minutes on the server; refresh a minute before.
pub const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// How many times a request is re-signed after 438 before giving up.
const MAX_STALE_NONCE: u8 = 3;
/// The SOFTWARE attribute we send.
const SOFTWARE: &str = "ferry";

/// What a request asks for: the request table's entries, from which the message is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Request {
    Allocate,
    Refresh {
        lifetime: Duration,
    },
    CreatePermission {
        ips: Vec<IpAddr>,
    },
    Connect {
        peer: SocketAddr,
    },
    ConnectionBind {
        conn: ConnId,
        id: u32,
        peer: SocketAddr,
        incoming: bool,
    },
}

impl Request {
    fn method(&self) -> Method {
        match self {
            Request::Allocate => ALLOCATE,
            Request::Refresh { .. } => REFRESH,
            Request::CreatePermission { .. } => CREATE_PERMISSION,
            Request::Connect { .. } => CONNECT,
            Request::ConnectionBind { .. } => CONNECTION_BIND,
        }
    }

    /// The connection it travels on.
    fn conn(&self, control: ConnId) -> ConnId {
        match self {
            Request::ConnectionBind { conn, .. } => *conn,
            _ => control,
        }
    }
}

#[derive(Debug, Clone)]
struct Pending {
    request: Request,
    deadline: Instant,
    /// Times this request was re-signed after a 438, or a 401 bringing a new realm or nonce.
    stale_nonces: u8,
    /// Whether it carried MESSAGE-INTEGRITY: its answers must too.
    signed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the control connection.
    Connecting,
    /// Allocate sent.
    Allocating,
    /// The allocation exists.
    Allocated,
    /// Refresh(0) sent.
    Deallocating,
    /// Over (failed or deallocated).
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Refresh,
    Permissions,
}

/// A TURN-over-TCP client for one allocation.
#[derive(Debug)]
pub struct TurnClient {
    config: TurnConfig,
    rng: SeededRng,
    state: State,
    control: ConnId,
    next_conn: u32,
    stream: StunStream,
    realm: Option<String>,
    nonce: Option<String>,
    /// Whether the server has sent an answer signed with our key: it knows our password.
    authenticated: bool,
    /// Answers dropped for want of a valid MESSAGE-INTEGRITY.
    unauthenticated: u64,
    /// 438 Stale Nonce answers taken (each re-signs its request, or ends it past
    /// `MAX_STALE_NONCE`).
    stale_nonces: u64,
    pending: BTreeMap<u128, Pending>,
    permissions: BTreeMap<IpAddr, Permission>,
    /// Peers to Connect to once allocated and once their address is permitted.
    queued_connects: Vec<SocketAddr>,
    data: BTreeMap<ConnId, DataConn>,
    relayed: Option<SocketAddr>,
    timers: Timers<Timer>,
    out: VecDeque<Output<TurnEvent>>,
}

impl TurnClient {
    /// Starts: the first output opens the control connection. `seed` feeds transaction ids.
    pub fn new(config: TurnConfig, seed: u64) -> TurnClient {
        let control = ConnId::Connect(1);
        let mut out = VecDeque::new();
        out.push_back(Output::Connect {
            conn: control,
            remote: config.server,
            local_port: None,
            timeout: config.connect_timeout,
        });
        TurnClient {
            config,
            rng: SeededRng::new(seed),
            state: State::Connecting,
            control,
            next_conn: 2,
            stream: StunStream::new(),
            realm: None,
            nonce: None,
            authenticated: false,
            unauthenticated: 0,
            stale_nonces: 0,
            pending: BTreeMap::new(),
            permissions: BTreeMap::new(),
            queued_connects: Vec::new(),
            data: BTreeMap::new(),
            relayed: None,
            timers: Timers::new(),
            out,
        }
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// Whether the client is over (failed or deallocated).
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// How many answers were dropped because they lacked a valid MESSAGE-INTEGRITY (forged,
    /// damaged, or from a server that does not sign): for logs and tests.
    pub fn unauthenticated(&self) -> u64 {
        self.unauthenticated
    }

    /// How many 438 Stale Nonce answers were taken (RFC 8489 §9.2.5): each re-signed its
    /// request with the new nonce, or ended it after `MAX_STALE_NONCE` in a row. For logs, and
    /// for tests that must know a server's nonce really went stale.
    pub fn stale_nonces(&self) -> u64 {
        self.stale_nonces
    }

    /// Opens a relayed connection to `peer` (RFC 6062 Connect). A server may refuse a Connect
    /// to an address without a permission (RFC 6062 §5.2; the simulator's server does), so
    /// the client permits the peer's address first when it is not permitted yet, and sends
    /// the Connect once the permission is installed. The result is a
    /// [`TurnEvent::PeerStream`] or [`TurnEvent::PeerConnectFailed`].
    pub fn connect_peer(&mut self, now: Instant, peer: SocketAddr) {
        if !self.same_family(&peer.ip()) {
            return self.event(TurnEvent::PeerConnectFailed {
                peer,
                error: TurnError::PeerAddressFamilyMismatch,
            });
        }
        match self.state {
            State::Allocated if self.is_permitted(peer.ip()) => {
                self.request(now, Request::Connect { peer })
            }
            State::Allocated | State::Connecting | State::Allocating => {
                self.queued_connects.push(peer);
                self.permit(now, [peer.ip()]);
            }
            State::Deallocating | State::Done => self.event(TurnEvent::PeerConnectFailed {
                peer,
                error: TurnError::AllocationMismatch,
            }),
        }
    }

    /// Sends bytes to the peer of a bound data connection.
    pub fn send(&mut self, conn: ConnId, data: Bytes) -> Result<(), crate::Error> {
        match self.data.get(&conn) {
            Some(DataConn::Bound) => {
                self.out.push_back(Output::Send { conn, data });
                Ok(())
            }
            _ => Err(crate::Error::NotNow(
                "send: not a bound TURN data connection",
            )),
        }
    }

    /// Stops (`pause`) or starts again reading the data connection of a relayed stream: the
    /// owner holds what the peer sent and wants TCP to push back (through the server, which
    /// stops reading the peer when its own buffers fill).
    pub fn pause_peer(&mut self, conn: ConnId, pause: bool) {
        if let Some(DataConn::Bound) = self.data.get(&conn) {
            self.out.push_back(if pause {
                Output::PauseReading { conn }
            } else {
                Output::ResumeReading { conn }
            });
        }
    }

    /// Closes a data connection.
    pub fn close_peer(&mut self, conn: ConnId) {
        if self.data.remove(&conn).is_some() {
            self.out.push_back(Output::Close { conn });
        }
    }

    /// Deletes the allocation (Refresh with lifetime 0), then closes every connection.
    pub fn deallocate(&mut self, now: Instant) {
        match self.state {
            State::Allocated => {
                self.state = State::Deallocating;
                self.timers.clear_all();
                self.request(
                    now,
                    Request::Refresh {
                        lifetime: Duration::ZERO,
                    },
                );
            }
            State::Connecting | State::Allocating => self.finish(TurnEvent::Deallocated),
            State::Deallocating | State::Done => {}
        }
    }

    fn next_transaction(&mut self) -> TransactionId {
        self.rng.transaction_id()
    }

    fn credentials(&self) -> Option<MessageIntegrityCredentials> {
        let realm = self.realm.clone()?;
        Some(
            LongTermCredentials::new(self.config.username.clone(), self.config.password.clone())
                .to_key(realm)
                .into(),
        )
    }

    /// Builds and sends `request` as a new transaction, signed when a realm is known.
    fn request(&mut self, now: Instant, request: Request) {
        self.request_with(now, request, 0);
    }

    fn request_with(&mut self, now: Instant, request: Request, stale_nonces: u8) {
        let tid = self.next_transaction();
        let bytes = match self.encode(&request, tid) {
            Ok(b) => b,
            Err(what) => {
                // Only our own inputs (a name too long for STUN, say) can get here.
                return self.fail_request(&request, TurnError::BadResponse(what));
            }
        };
        let conn = request.conn(self.control);
        self.pending.insert(
            u128::from(tid),
            Pending {
                request,
                deadline: now + self.config.request_timeout,
                stale_nonces,
                signed: self.realm.is_some() && self.nonce.is_some(),
            },
        );
        self.out.push_back(Output::Send { conn, data: bytes });
    }

    fn encode(&self, request: &Request, tid: TransactionId) -> Result<Bytes, &'static str> {
        let mtype = MessageType::from_class_method(MessageClass::Request, request.method());
        let mut msg = Message::builder(mtype, tid, MessageWriteVec::new());
        let bad = |_| "cannot encode the request";
        match request {
            Request::Allocate => {
                msg.add_attribute(&RequestedTransport::new(TCP))
                    .map_err(bad)?;
                msg.add_attribute(&Lifetime::new(self.config.lifetime.as_secs() as u32))
                    .map_err(bad)?;
                if self.config.family == Family::V6 {
                    msg.add_attribute(&RequestedAddressFamily::new(
                        stun_types::AddressFamily::IPV6,
                    ))
                    .map_err(bad)?;
                }
            }
            Request::Refresh { lifetime } => {
                msg.add_attribute(&Lifetime::new(lifetime.as_secs() as u32))
                    .map_err(bad)?;
            }
            Request::CreatePermission { ips } => {
                for ip in ips {
                    msg.add_attribute(&XorPeerAddress::new(SocketAddr::new(*ip, 0), tid))
                        .map_err(bad)?;
                }
            }
            Request::Connect { peer } => {
                msg.add_attribute(&XorPeerAddress::new(*peer, tid))
                    .map_err(bad)?;
            }
            Request::ConnectionBind { id, .. } => {
                msg.add_attribute(&ConnectionId::new(*id)).map_err(bad)?;
            }
        }
        msg.add_attribute(&Software::new(SOFTWARE).map_err(bad)?)
            .map_err(bad)?;
        if let (Some(realm), Some(nonce), Some(creds)) =
            (&self.realm, &self.nonce, self.credentials())
        {
            msg.add_attribute(&Username::new(&self.config.username).map_err(bad)?)
                .map_err(bad)?;
            msg.add_attribute(&Realm::new(realm).map_err(bad)?)
                .map_err(bad)?;
            msg.add_attribute(&Nonce::new(nonce).map_err(bad)?)
                .map_err(bad)?;
            msg.add_message_integrity(&creds, IntegrityAlgorithm::Sha1)
                .map_err(bad)?;
        }
        msg.add_fingerprint().map_err(bad)?;
        Ok(Bytes::from(msg.finish()))
    }

    fn on_control_bytes(&mut self, now: Instant, data: &[u8]) {
        self.stream.push(data);
        loop {
            match self.stream.next_message() {
                Ok(Some(msg)) => self.on_message(now, &msg),
                Ok(None) => return,
                Err(_) => {
                    return self.finish(TurnEvent::Failed {
                        error: TurnError::BadResponse("not STUN on the control connection"),
                    });
                }
            }
            if self.state == State::Done {
                return;
            }
        }
    }

    fn on_message(&mut self, now: Instant, bytes: &[u8]) {
        let Ok(msg) = Message::from_bytes(bytes) else {
            // A damaged message is dropped; its transaction will time out.
            return;
        };
        if msg.has_class(MessageClass::Indication) {
            if msg.has_method(CONNECTION_ATTEMPT) {
                self.on_connection_attempt(now, &msg);
            }
            return;
        }
        if !msg.is_response() {
            return;
        }
        let tid = msg.transaction_id();
        let Some(pending) = self.pending.remove(&u128::from(tid)) else {
            return;
        };
        if pending.request.method() != msg.method() {
            self.pending.insert(u128::from(tid), pending);
            return;
        }
        let authentic = self
            .credentials()
            .is_some_and(|key| msg.validate_integrity(&key).is_ok());
        let code = msg.attribute::<ErrorCode>().map(|e| e.code()).ok();
        let is_error = msg.has_class(MessageClass::Error);
        let challenge = is_error && matches!(code, Some(401 | 438));
        // See the module docs: what may count without a valid integrity.
        let believed = authentic
            || challenge
            || (!pending.signed && (is_error || self.config.username.is_empty()));
        if !believed {
            self.unauthenticated += 1;
            self.pending.insert(u128::from(tid), pending);
            return;
        }
        if authentic {
            self.authenticated = true;
        }
        if is_error {
            self.on_error(now, pending, &msg, authentic);
        } else {
            self.on_success(now, pending.request, &msg);
        }
    }

    fn on_success(&mut self, now: Instant, request: Request, msg: &Message<'_>) {
        let tid = msg.transaction_id();
        match request {
            Request::Allocate => {
                let relayed = msg.attribute::<XorRelayedAddress>().map(|a| a.addr(tid));
                let mapped = msg.attribute::<XorMappedAddress>().map(|a| a.addr(tid));
                let lifetime = msg
                    .attribute::<Lifetime>()
                    .map(|l| Duration::from_secs(l.seconds().into()));
                let (Ok(relayed), Ok(mapped), Ok(lifetime)) = (relayed, mapped, lifetime) else {
                    return self.finish(TurnEvent::Failed {
                        error: TurnError::BadResponse("Allocate success without its addresses"),
                    });
                };
                self.state = State::Allocated;
                self.relayed = Some(relayed);
                self.timers
                    .set(Timer::Refresh, now + self.refresh_in(lifetime));
                self.event(TurnEvent::Allocated {
                    relayed,
                    mapped,
                    lifetime,
                });
                self.flush_permissions(now);
                self.release_connects(now);
            }
            Request::Refresh { lifetime } if lifetime.is_zero() => self.deallocated(),
            Request::Refresh { .. } => {
                let lifetime = msg
                    .attribute::<Lifetime>()
                    .map(|l| Duration::from_secs(l.seconds().into()))
                    .unwrap_or(self.config.lifetime);
                self.timers
                    .set(Timer::Refresh, now + self.refresh_in(lifetime));
                self.event(TurnEvent::Refreshed { lifetime });
            }
            Request::CreatePermission { ips } => {
                for ip in &ips {
                    self.permissions.insert(
                        *ip,
                        Permission::Active {
                            refresh_at: now + PERMISSION_REFRESH,
                        },
                    );
                }
                self.arm_permission_timer();
                self.event(TurnEvent::Permitted { ips });
                self.release_connects(now);
            }
            Request::Connect { peer } => {
                let Ok(id) = msg.attribute::<ConnectionId>().map(|c| c.id()) else {
                    return self.event(TurnEvent::PeerConnectFailed {
                        peer,
                        error: TurnError::BadResponse("Connect success without CONNECTION-ID"),
                    });
                };
                self.open_data(id, peer, false);
            }
            Request::ConnectionBind {
                conn,
                peer,
                incoming,
                ..
            } => {
                let rest = match self.data.insert(conn, DataConn::Bound) {
                    Some(DataConn::Binding { mut stream, .. }) => stream.take_rest(),
                    _ => Bytes::new(),
                };
                self.event(TurnEvent::PeerStream {
                    conn,
                    peer,
                    incoming,
                });
                if !rest.is_empty() {
                    self.event(TurnEvent::PeerData { conn, data: rest });
                }
            }
        }
    }

    fn on_error(&mut self, now: Instant, pending: Pending, msg: &Message<'_>, authentic: bool) {
        let (code, reason) = match msg.attribute::<ErrorCode>() {
            Ok(e) => (e.code(), e.reason().to_owned()),
            Err(_) => (0, "error response without ERROR-CODE".to_owned()),
        };
        let realm = msg.attribute::<Realm>().ok().map(|r| r.realm().to_owned());
        let nonce = msg.attribute::<Nonce>().ok().map(|n| n.nonce().to_owned());
        match (code, realm, nonce) {
            // The challenge to an unsigned request: sign and resend.
            (401, Some(realm), Some(nonce)) if !pending.signed => {
                self.realm = Some(realm);
                self.nonce = Some(nonce);
                self.request_with(now, pending.request, pending.stale_nonces)
            }
            (401, _, _) if !pending.signed => self.fail_request(
                &pending.request,
                TurnError::BadResponse("401 without REALM and NONCE"),
            ),
            // A signed request challenged with a realm or nonce other than ours: re-sign, a
            // bounded number of times (a forger could keep changing them).
            (401, Some(realm), Some(nonce))
                if self.realm.as_ref() != Some(&realm) || self.nonce.as_ref() != Some(&nonce) =>
            {
                if pending.stale_nonces >= MAX_STALE_NONCE {
                    return self.fail_request(&pending.request, TurnError::WrongCredentials);
                }
                self.realm = Some(realm);
                self.nonce = Some(nonce);
                self.request_with(now, pending.request, pending.stale_nonces + 1)
            }
            // Our own realm and nonce back: the server refused our signature. Only a server
            // that never proved it knows our key can mean it.
            (401, _, _) if authentic || !self.authenticated => {
                self.fail_request(&pending.request, TurnError::WrongCredentials)
            }
            (438, _, Some(nonce)) => {
                self.stale_nonces += 1;
                if pending.stale_nonces >= MAX_STALE_NONCE {
                    return self.fail_request(&pending.request, TurnError::StaleNonceLoop);
                }
                self.nonce = Some(nonce);
                self.request_with(now, pending.request, pending.stale_nonces + 1)
            }
            // A 401 or 438 that cannot be used to re-sign is not believed.
            (401 | 438, _, _) if !authentic => {
                self.unauthenticated += 1;
                let tid = msg.transaction_id();
                self.pending.insert(u128::from(tid), pending);
            }
            // One refused address refuses a CreatePermission whole (coturn: 403 Forbidden
            // IP); ask for each address alone, so that it does not sink the others.
            (403, _, _) if matches!(&pending.request, Request::CreatePermission { ips } if ips.len() > 1) => {
                if let Request::CreatePermission { ips } = pending.request {
                    for ip in ips {
                        self.request(now, Request::CreatePermission { ips: vec![ip] });
                    }
                }
            }
            (code, _, _) => {
                self.fail_request(&pending.request, TurnError::from_code(code, &reason))
            }
        }
    }

    /// When the next Refresh goes: at half the lifetime the server gave, or after
    /// [`TurnConfig::keepalive`] if that is sooner, so that a dead control connection is
    /// noticed by the Refresh's timeout rather than at the lifetime's half.
    fn refresh_in(&self, lifetime: Duration) -> Duration {
        (lifetime / 2).min(self.config.keepalive)
    }

    /// Reports a request's failure in the terms of what it was for.
    fn fail_request(&mut self, request: &Request, error: TurnError) {
        match request {
            Request::Allocate => self.finish(TurnEvent::Failed { error }),
            Request::Refresh { lifetime } if lifetime.is_zero() => self.deallocated(),
            Request::Refresh { .. } => self.finish(TurnEvent::Failed { error }),
            Request::CreatePermission { ips } => {
                for ip in ips {
                    self.permissions.remove(ip);
                }
                self.event(TurnEvent::PermissionFailed {
                    ips: ips.clone(),
                    error: error.clone(),
                });
                // A Connect waiting for one of these permissions will not get it.
                let (failed, held): (Vec<SocketAddr>, Vec<SocketAddr>) =
                    std::mem::take(&mut self.queued_connects)
                        .into_iter()
                        .partition(|peer| ips.contains(&peer.ip()));
                self.queued_connects = held;
                for peer in failed {
                    self.event(TurnEvent::PeerConnectFailed {
                        peer,
                        error: error.clone(),
                    });
                }
            }
            Request::Connect { peer } => {
                self.event(TurnEvent::PeerConnectFailed { peer: *peer, error })
            }
            Request::ConnectionBind { conn, peer, .. } => {
                if self.data.remove(conn).is_some() {
                    self.out.push_back(Output::Close { conn: *conn });
                }
                self.event(TurnEvent::PeerConnectFailed { peer: *peer, error });
            }
        }
    }

    fn deallocated(&mut self) {
        self.finish(TurnEvent::Deallocated);
    }

    /// Ends the client: closes every connection and reports `event`.
    fn finish(&mut self, event: TurnEvent) {
        if self.state == State::Done {
            return;
        }
        self.state = State::Done;
        self.timers.clear_all();
        self.pending.clear();
        for (conn, _) in std::mem::take(&mut self.data) {
            self.out.push_back(Output::Close { conn });
        }
        self.out.push_back(Output::Close { conn: self.control });
        self.relayed = None;
        for peer in std::mem::take(&mut self.queued_connects) {
            self.event(TurnEvent::PeerConnectFailed {
                peer,
                error: TurnError::ControlLost,
            });
        }
        self.event(event);
    }

    fn event(&mut self, event: TurnEvent) {
        self.out.push_back(Output::Event(event));
    }

    fn expire_requests(&mut self, now: Instant) {
        let expired: Vec<u128> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for tid in expired {
            if let Some(p) = self.pending.remove(&tid) {
                self.fail_request(&p.request, TurnError::Timeout);
            }
        }
    }
}

impl Endpoint for TurnClient {
    type Event = TurnEvent;

    fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), crate::Error> {
        let conn = match &input {
            Input::Connected { conn, .. }
            | Input::ConnectFailed { conn, .. }
            | Input::Received { conn, .. }
            | Input::Writable { conn, .. }
            | Input::HalfClosed { conn }
            | Input::Closed { conn }
            | Input::Reset { conn } => *conn,
            _ => {
                return Err(crate::Error::UnexpectedInput(
                    "a TURN client has no listener, DHT or files",
                ));
            }
        };
        if conn != self.control {
            self.on_data_input(now, conn, input);
            return Ok(());
        }
        if self.state == State::Done {
            return Ok(());
        }
        match input {
            Input::Connected { .. } if self.state == State::Connecting => {
                self.state = State::Allocating;
                self.request(now, Request::Allocate);
            }
            Input::ConnectFailed { error, .. } => self.finish(TurnEvent::Failed {
                error: TurnError::Unreachable(error),
            }),
            Input::Received { data, .. } => self.on_control_bytes(now, &data),
            Input::HalfClosed { .. } | Input::Closed { .. } | Input::Reset { .. } => {
                if self.state == State::Deallocating {
                    self.deallocated();
                } else {
                    self.finish(TurnEvent::Failed {
                        error: TurnError::ControlLost,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.expire_requests(now);
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::Refresh if self.state == State::Allocated => {
                    self.request(
                        now,
                        Request::Refresh {
                            lifetime: self.config.lifetime,
                        },
                    );
                }
                Timer::Permissions => self.flush_permissions(now),
                Timer::Refresh => {}
            }
        }
    }

    fn poll_output(&mut self) -> Option<Output<TurnEvent>> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let request = self.pending.values().map(|p| p.deadline).min();
        [self.timers.next(), request].into_iter().flatten().min()
    }
}

/// Addresses of permissions currently installed or asked for, in order (for tests and traces).
impl TurnClient {}
