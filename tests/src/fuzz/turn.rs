//! TURN: the client's handling of server answers (on-path forgeries included), and the
//! simulator's TURN server's handling of client requests.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{ConnId, ConnectError, Endpoint, Input, ListenerId, Output};
use ferry_proto::turn::{Family, TurnClient, TurnConfig, TurnEvent};
use ferry_sim::turn_server::{TurnServer, TurnServerConfig};
use stun_types::attribute::{
    AttributeStaticType as _, ErrorCode, MessageIntegrity, Nonce, Realm, Username, XorMappedAddress,
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

use super::Script;

/// The long-term credentials of both harnesses.
pub(crate) const USER: &str = "u";
/// The password.
pub(crate) const PASSWORD: &str = "p";
/// The realm.
pub(crate) const REALM: &str = "ferry.test";

const CONTROL: ConnId = ConnId::Connect(1);

fn server() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 3478)
}
/// The relayed address the real server gives.
fn genuine_relayed() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 50_000)
}
/// The relayed address an on-path attacker would like us to publish.
fn forged_relayed() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 66)), 666)
}

/// The long-term key for `realm`, with `password`.
pub(crate) fn key(realm: &str, password: &str) -> MessageIntegrityCredentials {
    LongTermCredentials::new(USER.to_owned(), password.to_owned())
        .to_key(realm.to_owned())
        .into()
}

/// An answer to `req` of `class`, with attributes from `add`, signed with `key` if given.
fn answer(
    req: &Message<'_>,
    class: MessageClass,
    key: Option<&MessageIntegrityCredentials>,
    add: impl FnOnce(&mut MessageWriteVec, TransactionId),
) -> Vec<u8> {
    let tid = req.transaction_id();
    let mut w = Message::builder(
        MessageType::from_class_method(class, req.method()),
        tid,
        MessageWriteVec::new(),
    );
    add(&mut w, tid);
    if let Some(key) = key {
        w.add_message_integrity(key, IntegrityAlgorithm::Sha1)
            .expect("integrity");
    }
    w.add_fingerprint().expect("fingerprint");
    w.finish()
}

/// Success attributes the way a server writes them for `method`.
fn success_attributes(
    w: &mut MessageWriteVec,
    tid: TransactionId,
    method: Method,
    relayed: SocketAddr,
    s: &mut Script<'_>,
) {
    if method == ALLOCATE {
        w.add_attribute(&XorRelayedAddress::new(relayed, tid))
            .expect("attr");
        w.add_attribute(&XorMappedAddress::new(relayed, tid))
            .expect("attr");
        w.add_attribute(&Lifetime::new(u32::from(s.u16())))
            .expect("attr");
    } else if method == REFRESH {
        w.add_attribute(&Lifetime::new(u32::from(s.u16())))
            .expect("attr");
    } else if method == CONNECT {
        w.add_attribute(&ConnectionId::new(s.u32())).expect("attr");
    }
}

/// The TURN client against a server and an on-path attacker, both scripted: raw bytes,
/// challenges, genuine (signed) answers, forged answers (unsigned, or signed with another
/// key), errors, time, data connections and the client's own verbs.
///
/// What must hold: the relayed address is only ever the genuine one; a forged success changes
/// nothing; an error without a valid integrity to a signed request, other than 401 and 438,
/// changes nothing; every request the client writes is STUN.
pub fn turn_client(data: &[u8]) {
    let mut s = Script::new(data);
    let mut config = TurnConfig::new(server(), USER, PASSWORD);
    if s.byte() & 1 == 1 {
        config.family = Family::V6;
    }
    let mut now = Instant::now();
    let mut client = TurnClient::new(config, u64::from(s.byte()));
    let mut h = ClientHarness::default();
    h.drain(&mut client);
    client
        .handle_input(
            now,
            Input::Connected {
                conn: CONTROL,
                local: genuine_relayed(),
            },
        )
        .expect("the control connection");
    h.drain(&mut client);
    while !s.is_empty() {
        let op = s.byte();
        let before = h.events.len();
        match op % 9 {
            0 => {
                let data = Bytes::copy_from_slice(s.piece());
                let conn = h.pick_conn(&mut s);
                h.raw.insert(conn);
                let _ = client.handle_input(now, Input::Received { conn, data });
            }
            1..=4 => {
                let Some((conn, req)) = h.pick_request(&mut s) else {
                    continue;
                };
                let Ok(msg) = Message::from_bytes(&req) else {
                    continue;
                };
                let signed = msg.has_attribute(MessageIntegrity::TYPE);
                let realm = msg
                    .attribute::<Realm>()
                    .map(|r| r.realm().to_owned())
                    .unwrap_or_else(|_| REALM.to_owned());
                let method = msg.method();
                let (bytes, forged) = match op % 9 {
                    1 => {
                        // The challenge; the nonce changes now and then, as coturn's do.
                        let nonce = format!("nonce-{}", s.byte() % 3);
                        let code = if s.byte() & 1 == 0 { 401 } else { 438 };
                        let b = answer(&msg, MessageClass::Error, None, |w, _| {
                            w.add_attribute(&ErrorCode::builder(code).build().expect("code"))
                                .expect("attr");
                            w.add_attribute(&Realm::new(&realm).expect("realm"))
                                .expect("attr");
                            w.add_attribute(&Nonce::new(&nonce).expect("nonce"))
                                .expect("attr");
                        });
                        (b, None)
                    }
                    2 => {
                        if !signed {
                            // A real server authenticates every request before it succeeds.
                            continue;
                        }
                        let key = key(&realm, PASSWORD);
                        let b = answer(&msg, MessageClass::Success, Some(&key), |w, tid| {
                            success_attributes(w, tid, method, genuine_relayed(), &mut s)
                        });
                        if method == CONNECTION_BIND {
                            h.bound.insert(conn);
                        }
                        (b, None)
                    }
                    3 => {
                        // On-path: the right transaction, the attacker's addresses, and no
                        // integrity or integrity with a key that is not ours.
                        let wrong = key(&realm, "not the password");
                        let sign = s.byte() & 1 == 1;
                        let b = answer(
                            &msg,
                            MessageClass::Success,
                            sign.then_some(&wrong),
                            |w, tid| success_attributes(w, tid, method, forged_relayed(), &mut s),
                        );
                        (b, Some(Forgery::Success))
                    }
                    _ => {
                        const CODES: [u16; 14] = [
                            400, 401, 403, 437, 438, 440, 441, 442, 443, 446, 447, 486, 508, 499,
                        ];
                        let code = CODES[usize::from(s.byte()) % CODES.len()];
                        let genuine = s.byte() & 1 == 0;
                        let key = key(&realm, PASSWORD);
                        let b = answer(
                            &msg,
                            MessageClass::Error,
                            (genuine && signed).then_some(&key),
                            |w, _| {
                                w.add_attribute(&ErrorCode::builder(code).build().expect("code"))
                                    .expect("attr");
                            },
                        );
                        let forged = (signed && !genuine && code != 401 && code != 438)
                            .then_some(Forgery::Error);
                        (b, forged)
                    }
                };
                // On a data connection already bound, STUN-looking bytes are the peer's; after
                // raw bytes, a stream may be out of step, and anything on it is garbage.
                let forged = forged.filter(|_| !h.bound.contains(&conn) && !h.raw.contains(&conn));
                let _ = client.handle_input(
                    now,
                    Input::Received {
                        conn,
                        data: Bytes::from(bytes),
                    },
                );
                h.drain(&mut client);
                match forged {
                    Some(Forgery::Success) => assert_eq!(
                        &h.events[before..],
                        [],
                        "a forged success changed something"
                    ),
                    Some(Forgery::Error) => assert!(
                        h.last_outputs.is_empty(),
                        "an unsigned error to a signed request did something: {:?}",
                        h.last_outputs
                    ),
                    None => {}
                }
            }
            5 => {
                now += Duration::from_secs(u64::from(s.byte()) * 4);
                client.handle_timeout(now);
            }
            6 => {
                let ip = IpAddr::V4(Ipv4Addr::new(198, 51, 100, s.byte() % 4));
                match s.byte() % 4 {
                    0 => client.permit(now, [ip]),
                    1 => client.connect_peer(now, SocketAddr::new(ip, 4000)),
                    2 => client.deallocate(now),
                    _ => {
                        if let Some(conn) = h.opening.iter().next().copied() {
                            client.close_peer(conn);
                        }
                    }
                }
            }
            7 => {
                let Some(conn) = h.opening.iter().nth(usize::from(s.byte())).copied() else {
                    continue;
                };
                h.opening.remove(&conn);
                let input = if s.byte() & 1 == 0 {
                    Input::Connected {
                        conn,
                        local: genuine_relayed(),
                    }
                } else {
                    Input::ConnectFailed {
                        conn,
                        error: ConnectError::Refused,
                    }
                };
                let _ = client.handle_input(now, input);
            }
            _ => {
                let conn = h.pick_conn(&mut s);
                let input = match s.byte() % 3 {
                    0 => Input::HalfClosed { conn },
                    1 => Input::Closed { conn },
                    _ => Input::Writable { conn, bytes: 100 },
                };
                let _ = client.handle_input(now, input);
            }
        }
        h.drain(&mut client);
        assert_ne!(
            client.relayed(),
            Some(forged_relayed()),
            "a forged relayed address"
        );
        for event in &h.events[before..] {
            if let TurnEvent::Allocated { relayed, .. } = event {
                assert_eq!(*relayed, genuine_relayed(), "a forged allocation");
            }
        }
    }
}

enum Forgery {
    Success,
    Error,
}

#[derive(Default)]
struct ClientHarness {
    /// Requests the client wrote, with the connection each went on.
    requests: Vec<(ConnId, Vec<u8>)>,
    /// Data connections asked for and not yet answered.
    opening: BTreeSet<ConnId>,
    /// Data connections whose ConnectionBind got a genuine success.
    bound: BTreeSet<ConnId>,
    /// Connections that were sent raw bytes.
    raw: BTreeSet<ConnId>,
    events: Vec<TurnEvent>,
    last_outputs: Vec<String>,
}

impl ClientHarness {
    fn drain(&mut self, client: &mut TurnClient) {
        self.last_outputs.clear();
        while let Some(output) = client.poll_output() {
            self.last_outputs.push(format!("{output:?}"));
            match output {
                Output::Event(e) => self.events.push(e),
                Output::Connect { conn, remote, .. } => {
                    assert_eq!(
                        remote,
                        server(),
                        "the client only ever connects to its server"
                    );
                    if conn != CONTROL {
                        self.opening.insert(conn);
                    }
                }
                Output::Send { conn, data } if !self.bound.contains(&conn) => {
                    let msg = Message::from_bytes(&data).expect("the client writes STUN");
                    assert!(msg.has_class(MessageClass::Request), "the client only asks");
                    self.requests.push((conn, data.to_vec()));
                    if self.requests.len() > 64 {
                        self.requests.remove(0);
                    }
                }
                _ => {}
            }
        }
    }

    /// One of the latest requests, chosen by the script.
    fn pick_request(&self, s: &mut Script<'_>) -> Option<(ConnId, Vec<u8>)> {
        let back = usize::from(s.byte() % 4);
        let n = self.requests.len();
        (back < n).then(|| self.requests[n - 1 - back].clone())
    }

    fn pick_conn(&self, s: &mut Script<'_>) -> ConnId {
        match s.byte() % 3 {
            0 => CONTROL,
            1 => self.bound.iter().next().copied().unwrap_or(CONTROL),
            _ => ConnId::Connect(2 + u32::from(s.byte() % 4)),
        }
    }
}

/// The simulator's TURN server against scripted clients: raw bytes, well-signed requests of
/// every method (and badly signed ones), relay-side connections, time and closes. What it
/// writes to a client before a data connection is bound is STUN, and every success is signed
/// with the client's key.
pub fn turn_server(data: &[u8]) {
    let mut s = Script::new(data);
    let mut now = Instant::now();
    let mut server_ = TurnServer::new(TurnServerConfig::new(server(), USER, PASSWORD, REALM));
    let mut h = ServerHarness::default();
    h.drain(&mut server_);
    let mut next_client = 1u32;
    while !s.is_empty() {
        match s.byte() % 7 {
            0 => {
                let conn = ConnId::Accepted(next_client);
                next_client += 1;
                let remote =
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, s.byte())), 40_000);
                h.clients.push(conn);
                let _ = server_.handle_input(
                    now,
                    Input::Accepted {
                        listener: ListenerId(0),
                        conn,
                        remote,
                    },
                );
            }
            1 => {
                let Some(conn) = h.pick_client(&mut s) else {
                    continue;
                };
                let data = Bytes::copy_from_slice(s.piece());
                let _ = server_.handle_input(now, Input::Received { conn, data });
            }
            2 | 3 => {
                let Some(conn) = h.pick_client(&mut s) else {
                    continue;
                };
                let request = h.request(&mut s);
                let _ = server_.handle_input(
                    now,
                    Input::Received {
                        conn,
                        data: Bytes::from(request),
                    },
                );
            }
            4 => {
                now += Duration::from_secs(u64::from(s.byte()) * 8);
                server_.handle_timeout(now);
            }
            5 => {
                // The relay side: a listener bound, a peer connecting to it, a connection
                // the server opened answering, bytes from a peer.
                match s.byte() % 4 {
                    0 => {
                        if let Some(listener) = h.listens.pop() {
                            let local =
                                SocketAddr::new(server().ip(), 50_000 + h.listens.len() as u16);
                            let _ = server_.handle_input(now, Input::Listening { listener, local });
                            h.relays.push(listener);
                        }
                    }
                    1 => {
                        if let Some(&listener) =
                            h.relays.get(usize::from(s.byte()) % h.relays.len().max(1))
                        {
                            let conn = ConnId::Accepted(next_client);
                            next_client += 1;
                            let remote = SocketAddr::new(
                                IpAddr::V4(Ipv4Addr::new(198, 51, 100, s.byte() % 4)),
                                5000,
                            );
                            h.peers.push(conn);
                            let _ = server_.handle_input(
                                now,
                                Input::Accepted {
                                    listener,
                                    conn,
                                    remote,
                                },
                            );
                        }
                    }
                    2 => {
                        if let Some(conn) = h.connects.pop() {
                            h.peers.push(conn);
                            let input = if s.byte() & 1 == 0 {
                                Input::Connected {
                                    conn,
                                    local: genuine_relayed(),
                                }
                            } else {
                                Input::ConnectFailed {
                                    conn,
                                    error: ConnectError::Refused,
                                }
                            };
                            let _ = server_.handle_input(now, input);
                        }
                    }
                    _ => {
                        if let Some(&conn) =
                            h.peers.get(usize::from(s.byte()) % h.peers.len().max(1))
                        {
                            let data = Bytes::copy_from_slice(s.piece());
                            let _ = server_.handle_input(now, Input::Received { conn, data });
                        }
                    }
                }
            }
            _ => {
                let Some(conn) = h.pick_client(&mut s) else {
                    continue;
                };
                let input = match s.byte() % 3 {
                    0 => Input::HalfClosed { conn },
                    1 => Input::Closed { conn },
                    _ => Input::Reset { conn },
                };
                let _ = server_.handle_input(now, input);
            }
        }
        h.drain(&mut server_);
    }
}

#[derive(Default)]
struct ServerHarness {
    clients: Vec<ConnId>,
    /// Relay listeners asked for and not yet bound.
    listens: Vec<ListenerId>,
    relays: Vec<ListenerId>,
    /// Peer connections the server opened.
    connects: Vec<ConnId>,
    peers: Vec<ConnId>,
    /// Client connections that became raw pipes to a peer.
    bound: BTreeSet<ConnId>,
    /// The latest nonce the server gave.
    nonce: Option<String>,
    /// The last ConnectionAttempt's CONNECTION-ID, for a ConnectionBind.
    ids: BTreeSet<u32>,
}

impl ServerHarness {
    fn pick_client(&self, s: &mut Script<'_>) -> Option<ConnId> {
        let i = usize::from(s.byte());
        (!self.clients.is_empty()).then(|| self.clients[i % self.clients.len()])
    }

    fn drain(&mut self, server: &mut TurnServer) {
        while let Some(output) = server.poll_output() {
            match output {
                Output::Listen { listener, .. } if listener != ListenerId(0) => {
                    self.listens.push(listener)
                }
                Output::Connect { conn, .. } => self.connects.push(conn),
                Output::Send { conn, data }
                    if self.clients.contains(&conn) && !self.bound.contains(&conn) =>
                {
                    let msg =
                        Message::from_bytes(&data).expect("the server writes STUN to clients");
                    assert!(
                        !msg.has_class(MessageClass::Request),
                        "the server only answers"
                    );
                    if let Ok(n) = msg.attribute::<Nonce>() {
                        self.nonce = Some(n.nonce().to_owned());
                    }
                    if msg.has_class(MessageClass::Success) {
                        assert!(
                            msg.validate_integrity(&key(REALM, PASSWORD)).is_ok(),
                            "a success the client cannot authenticate"
                        );
                        if msg.has_method(CONNECTION_BIND) {
                            self.bound.insert(conn);
                        }
                    }
                    if msg.has_method(CONNECTION_ATTEMPT) || msg.has_method(CONNECT) {
                        if let Ok(id) = msg.attribute::<ConnectionId>() {
                            self.ids.insert(id.id());
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// A request of a method the script picks, signed with the server's latest nonce (or
    /// badly: another password, another user, no integrity).
    fn request(&mut self, s: &mut Script<'_>) -> Vec<u8> {
        let method = match s.byte() % 6 {
            0 => ALLOCATE,
            1 => REFRESH,
            2 => CREATE_PERMISSION,
            3 => CONNECT,
            4 => CONNECTION_BIND,
            _ => Method::new(0x0fff),
        };
        let tid = TransactionId::from(u128::from(s.u32()) << 32 | 1);
        let mut w = Message::builder(
            MessageType::from_class_method(MessageClass::Request, method),
            tid,
            MessageWriteVec::new(),
        );
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, s.byte() % 4)), 5000);
        let flags = s.byte();
        if method == ALLOCATE {
            let transport = if flags & 1 == 0 { 6 } else { 17 };
            let _ = w.add_attribute(&RequestedTransport::new(transport));
            if flags & 2 != 0 {
                let _ = w.add_attribute(&RequestedAddressFamily::new(
                    stun_types::AddressFamily::IPV6,
                ));
            }
            let _ = w.add_attribute(&Lifetime::new(u32::from(s.u16())));
        } else if method == REFRESH {
            let _ = w.add_attribute(&Lifetime::new(u32::from(s.u16()) % 4));
        } else if method == CREATE_PERMISSION || method == CONNECT {
            if flags & 1 == 0 {
                let _ = w.add_attribute(&XorPeerAddress::new(peer, tid));
            }
        } else if method == CONNECTION_BIND {
            let id = self
                .ids
                .iter()
                .nth(usize::from(s.byte()) % self.ids.len().max(1))
                .copied();
            let _ = w.add_attribute(&ConnectionId::new(id.unwrap_or_else(|| s.u32())));
        }
        let nonce = self.nonce.clone().unwrap_or_else(|| "none".to_owned());
        if flags & 4 == 0 {
            let user = if flags & 8 == 0 { USER } else { "mallory" };
            let _ = w.add_attribute(&Username::new(user).expect("user"));
            let _ = w.add_attribute(&Realm::new(REALM).expect("realm"));
            let _ = w.add_attribute(&Nonce::new(&nonce).expect("nonce"));
            let password = if flags & 16 == 0 { PASSWORD } else { "wrong" };
            let _ = w.add_message_integrity(&key(REALM, password), IntegrityAlgorithm::Sha1);
        }
        if flags & 32 == 0 {
            let _ = w.add_fingerprint();
        }
        w.finish()
    }
}
