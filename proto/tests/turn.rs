//! The TURN client against synthesized server answers: the 401 dance, stale nonces, every
//! error code, timeouts, permissions, RFC 6062 Connect and ConnectionAttempt, deallocation.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{ConnId, ConnectError, Endpoint, Input, Output};
use ferry_proto::turn::{Family, TurnClient, TurnConfig, TurnError, TurnEvent};
use stun_types::attribute::{
    AttributeStaticType as _, ErrorCode, MessageIntegrity, Nonce, Realm, Username, XorMappedAddress,
};
use stun_types::message::{
    IntegrityAlgorithm, LongTermCredentials, Message, MessageClass, MessageIntegrityCredentials,
    MessageType, MessageWrite, MessageWriteExt, MessageWriteVec, Method,
};
use turn_types::attribute::{ConnectionId, Lifetime, XorPeerAddress, XorRelayedAddress};
use turn_types::message::{
    ALLOCATE, CONNECT, CONNECTION_ATTEMPT, CONNECTION_BIND, CREATE_PERMISSION, REFRESH,
};

const CONTROL: ConnId = ConnId::Connect(1);
const REALM: &str = "ferry.test";

fn server() -> SocketAddr {
    "127.0.0.1:3478".parse().expect("addr")
}
fn relayed() -> SocketAddr {
    "127.0.0.1:50000".parse().expect("addr")
}
fn mapped() -> SocketAddr {
    "127.0.0.1:40000".parse().expect("addr")
}

fn key(password: &str) -> MessageIntegrityCredentials {
    LongTermCredentials::new("u".to_owned(), password.to_owned())
        .to_key(REALM.to_owned())
        .into()
}

/// A scripted server: reads the client's requests, answers as told.
struct Harness {
    now: Instant,
    client: TurnClient,
    events: Vec<TurnEvent>,
    /// Requests the client sent, with the connection each went on.
    sent: Vec<(ConnId, Vec<u8>)>,
    other: Vec<Output<TurnEvent>>,
}

impl Harness {
    fn new(password: &str, family: Family) -> Harness {
        let mut config = TurnConfig::new(server(), "u", password);
        config.family = family;
        let mut h = Harness {
            now: Instant::now(),
            client: TurnClient::new(config, 7),
            events: Vec::new(),
            sent: Vec::new(),
            other: Vec::new(),
        };
        h.drain();
        assert!(matches!(
            h.other.remove(0),
            Output::Connect { conn: CONTROL, .. }
        ));
        h.input(Input::Connected {
            conn: CONTROL,
            local: mapped(),
        });
        h
    }

    fn input(&mut self, input: Input) {
        self.client
            .handle_input(self.now, input)
            .expect("a TURN input");
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(o) = self.client.poll_output() {
            match o {
                Output::Event(e) => self.events.push(e),
                Output::Send { conn, data } => self.sent.push((conn, data.to_vec())),
                other => self.other.push(other),
            }
        }
    }

    /// The last request sent, parsed.
    fn last(&self) -> (ConnId, Vec<u8>) {
        self.sent.last().cloned().expect("a request")
    }

    fn answer(&mut self, conn: ConnId, bytes: Vec<u8>) {
        self.input(Input::Received {
            conn,
            data: Bytes::from(bytes),
        });
    }

    /// Answers the last request on its connection.
    fn reply(&mut self, build: impl FnOnce(&Message<'_>) -> Vec<u8>) {
        let (conn, req) = self.last();
        let msg = Message::from_bytes(&req).expect("the client sends STUN");
        let bytes = build(&msg);
        self.answer(conn, bytes);
    }

    /// Runs the 401 dance and answers the Allocate with success.
    fn allocated(password: &str) -> Harness {
        let mut h = Harness::new(password, Family::V4);
        h.reply(|m| error(m, 401, Some("nonce-1")));
        h.reply(|m| {
            success(m, &|w, m| {
                w.add_attribute(&XorRelayedAddress::new(relayed(), m.transaction_id()))
                    .expect("attr");
                w.add_attribute(&XorMappedAddress::new(mapped(), m.transaction_id()))
                    .expect("attr");
                w.add_attribute(&Lifetime::new(600)).expect("attr");
            })
        });
        assert!(
            h.events.contains(&TurnEvent::Allocated {
                relayed: relayed(),
                mapped: mapped(),
                lifetime: Duration::from_secs(600)
            }),
            "{:?}",
            h.events
        );
        h
    }
}

fn method_of(m: &Message<'_>) -> Method {
    m.method()
}

/// An error answer; `nonce` adds REALM and NONCE (as a 401 or 438 carries). Signed, as a
/// server signs it, when the request was signed and the code is not 401 or 438.
fn error(req: &Message<'_>, code: u16, nonce: Option<&str>) -> Vec<u8> {
    let sign = req.has_attribute(MessageIntegrity::TYPE) && code != 401 && code != 438;
    unsigned_error(req, code, nonce, sign.then(|| key("p")))
}

/// An error answer signed with `key`, or not at all.
fn unsigned_error(
    req: &Message<'_>,
    code: u16,
    nonce: Option<&str>,
    key: Option<MessageIntegrityCredentials>,
) -> Vec<u8> {
    let mtype = MessageType::from_class_method(MessageClass::Error, method_of(req));
    let mut w = Message::builder(mtype, req.transaction_id(), MessageWriteVec::new());
    w.add_attribute(&ErrorCode::builder(code).build().expect("code"))
        .expect("attr");
    if let Some(nonce) = nonce {
        w.add_attribute(&Realm::new(REALM).expect("realm"))
            .expect("attr");
        w.add_attribute(&Nonce::new(nonce).expect("nonce"))
            .expect("attr");
    }
    if let Some(key) = key {
        w.add_message_integrity(&key, IntegrityAlgorithm::Sha1)
            .expect("integrity");
    }
    w.finish()
}

/// The Allocate success with the relayed address `relayed`, signed with `key` or not at all:
/// what the server sends, or what an on-path attacker would like us to believe.
fn allocate_success(
    req: &Message<'_>,
    relayed: SocketAddr,
    key: Option<MessageIntegrityCredentials>,
) -> Vec<u8> {
    let tid = req.transaction_id();
    let mtype = MessageType::from_class_method(MessageClass::Success, ALLOCATE);
    let mut w = Message::builder(mtype, tid, MessageWriteVec::new());
    w.add_attribute(&XorRelayedAddress::new(relayed, tid))
        .expect("attr");
    w.add_attribute(&XorMappedAddress::new(mapped(), tid))
        .expect("attr");
    w.add_attribute(&Lifetime::new(600)).expect("attr");
    if let Some(key) = key {
        w.add_message_integrity(&key, IntegrityAlgorithm::Sha1)
            .expect("integrity");
    }
    w.finish()
}

/// A success answer signed with the right password, with attributes from `add`.
fn success(req: &Message<'_>, add: &dyn Fn(&mut MessageWriteVec, &Message<'_>)) -> Vec<u8> {
    let mtype = MessageType::from_class_method(MessageClass::Success, method_of(req));
    let mut w = Message::builder(mtype, req.transaction_id(), MessageWriteVec::new());
    add(&mut w, req);
    w.add_message_integrity(&key("p"), IntegrityAlgorithm::Sha1)
        .expect("integrity");
    w.finish()
}

fn method(bytes: &[u8]) -> Method {
    Message::from_bytes(bytes).expect("stun").method()
}

#[test]
fn allocation_with_the_401_dance_then_refresh_at_half_life() {
    let mut h = Harness::new("p", Family::V4);
    let (_, first) = h.last();
    let first = Message::from_bytes(&first).expect("stun");
    assert!(first.has_method(ALLOCATE));
    assert!(
        first.attribute::<Username>().is_err(),
        "the first Allocate is not signed"
    );
    h.reply(|m| error(m, 401, Some("nonce-1")));
    let (_, second) = h.last();
    let second = Message::from_bytes(&second).expect("stun");
    assert!(second.has_method(ALLOCATE));
    assert_eq!(
        second
            .attribute::<Nonce>()
            .map(|n| n.nonce().to_owned())
            .ok()
            .as_deref(),
        Some("nonce-1")
    );
    assert!(
        second.validate_integrity(&key("p")).is_ok(),
        "signed with the long-term key"
    );
    assert_ne!(
        first.transaction_id(),
        second.transaction_id(),
        "a retry is a new transaction"
    );
    h.reply(|m| {
        success(m, &|w, m| {
            w.add_attribute(&XorRelayedAddress::new(relayed(), m.transaction_id()))
                .expect("attr");
            w.add_attribute(&XorMappedAddress::new(mapped(), m.transaction_id()))
                .expect("attr");
            w.add_attribute(&Lifetime::new(600)).expect("attr");
        })
    });
    assert_eq!(
        h.events,
        [TurnEvent::Allocated {
            relayed: relayed(),
            mapped: mapped(),
            lifetime: Duration::from_secs(600)
        }]
    );
    assert_eq!(h.client.relayed(), Some(relayed()));
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.now + Duration::from_secs(60)),
        "a Refresh at the keepalive (60 s), sooner than half the lifetime (300 s)"
    );
    h.now += Duration::from_secs(60);
    h.client.handle_timeout(h.now);
    h.drain();
    let (_, refresh) = h.last();
    assert_eq!(method(&refresh), REFRESH);
    h.reply(|m| {
        success(m, &|w, _| {
            w.add_attribute(&Lifetime::new(60)).expect("attr")
        })
    });
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::Refreshed {
            lifetime: Duration::from_secs(60)
        })
    );
    assert_eq!(
        h.client.poll_timeout(),
        Some(h.now + Duration::from_secs(30)),
        "refresh at half the lifetime, sooner than the keepalive"
    );
}

/// A control connection that died without a word (the server restarted while its reset could
/// not reach us): the keepalive's Refresh gets no answer, and the allocation fails within
/// the keepalive and the request timeout (70 s), not at the lifetime's half (300 s).
#[test]
fn a_silent_control_connection_fails_the_allocation_at_the_keepalive() {
    let mut h = Harness::new("p", Family::V4);
    h.reply(|m| error(m, 401, Some("nonce-1")));
    h.reply(|m| {
        success(m, &|w, m| {
            w.add_attribute(&XorRelayedAddress::new(relayed(), m.transaction_id()))
                .expect("attr");
            w.add_attribute(&XorMappedAddress::new(mapped(), m.transaction_id()))
                .expect("attr");
            w.add_attribute(&Lifetime::new(600)).expect("attr");
        })
    });
    let allocated_at = h.now;
    // Nothing more comes from the server.
    while let Some(at) = h.client.poll_timeout() {
        if at > allocated_at + Duration::from_secs(300) || h.client.is_done() {
            break;
        }
        h.now = at;
        h.client.handle_timeout(h.now);
        h.drain();
    }
    assert!(
        matches!(h.events.last(), Some(TurnEvent::Failed { .. })),
        "{:?}",
        h.events
    );
    assert_eq!(h.now - allocated_at, Duration::from_secs(70));
}

#[test]
fn a_wrong_password_is_a_clear_error() {
    let mut h = Harness::new("wrong", Family::V4);
    h.reply(|m| error(m, 401, Some("nonce-1")));
    // The server cannot verify the signature and challenges again.
    h.reply(|m| {
        assert!(m.validate_integrity(&key("p")).is_err());
        error(m, 401, Some("nonce-1"))
    });
    assert_eq!(
        h.events,
        [TurnEvent::Failed {
            error: TurnError::WrongCredentials
        }]
    );
    assert!(h.other.contains(&Output::Close { conn: CONTROL }));
    assert!(h.client.is_done());
}

#[test]
fn a_stale_nonce_re_signs_the_same_request_and_a_loop_of_them_ends() {
    let mut h = Harness::new("p", Family::V4);
    h.reply(|m| error(m, 401, Some("nonce-1")));
    h.reply(|m| error(m, 438, Some("nonce-2")));
    let (_, again) = h.last();
    let again = Message::from_bytes(&again).expect("stun");
    assert!(again.has_method(ALLOCATE), "the same request");
    assert_eq!(h.client.stale_nonces(), 1, "one 438 counted");
    assert_eq!(
        again
            .attribute::<Nonce>()
            .map(|n| n.nonce().to_owned())
            .ok()
            .as_deref(),
        Some("nonce-2")
    );
    for n in 3..6 {
        h.reply(|m| error(m, 438, Some(&format!("nonce-{n}"))));
    }
    assert_eq!(
        h.client.stale_nonces(),
        4,
        "each 438 counted, the last one too"
    );
    assert_eq!(
        h.events,
        [TurnEvent::Failed {
            error: TurnError::StaleNonceLoop
        }]
    );
}

#[test]
fn every_allocate_error_code_gets_its_own_event() {
    let cases = [
        (403, TurnError::Forbidden),
        (437, TurnError::AllocationMismatch),
        (440, TurnError::AddressFamilyNotSupported),
        (441, TurnError::CredentialsMismatch),
        (442, TurnError::UnsupportedTransport),
        (443, TurnError::PeerAddressFamilyMismatch),
        (446, TurnError::ConnectionAlreadyExists),
        (447, TurnError::ConnectionFailed),
        (486, TurnError::QuotaReached),
        (508, TurnError::InsufficientCapacity),
    ];
    for (code, want) in cases {
        let mut h = Harness::new("p", Family::V4);
        h.reply(|m| error(m, 401, Some("nonce-1")));
        h.reply(|m| error(m, code, None));
        assert_eq!(
            h.events,
            [TurnEvent::Failed {
                error: want.clone()
            }],
            "code {code}"
        );
        assert!(!want.to_string().is_empty());
    }
    let mut h = Harness::new("p", Family::V4);
    h.reply(|m| error(m, 499, None));
    assert!(matches!(
        &h.events[..],
        [TurnEvent::Failed {
            error: TurnError::Server { code: 499, .. }
        }]
    ));
}

#[test]
fn silence_is_a_timeout_not_a_hang() {
    let mut h = Harness::new("p", Family::V4);
    let deadline = h.client.poll_timeout().expect("a request deadline");
    // SECURITY: row 63
    h.now = deadline;
    h.client.handle_timeout(h.now);
    h.drain();
    assert_eq!(
        h.events,
        [TurnEvent::Failed {
            error: TurnError::Timeout
        }]
    );
}

#[test]
fn an_unreachable_server_and_a_lost_control_connection_are_events() {
    let mut config = TurnConfig::new(server(), "u", "p");
    config.family = Family::V4;
    let mut c = TurnClient::new(config, 1);
    let now = Instant::now();
    while c.poll_output().is_some() {}
    c.handle_input(
        now,
        Input::ConnectFailed {
            conn: CONTROL,
            error: ConnectError::Refused,
        },
    )
    .expect("ok");
    let outs: Vec<_> = std::iter::from_fn(|| c.poll_output()).collect();
    assert!(outs.contains(&Output::Event(TurnEvent::Failed {
        error: TurnError::Unreachable(ConnectError::Refused)
    })));

    let mut h = Harness::allocated("p");
    h.input(Input::Reset { conn: CONTROL });
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::Failed {
            error: TurnError::ControlLost
        })
    );
}

#[test]
fn answers_with_a_bad_signature_or_from_nowhere_are_ignored() {
    let mut h = Harness::new("p", Family::V4);
    h.reply(|m| error(m, 401, Some("nonce-1")));
    // SECURITY: row 61
    // Signed with another key: not the server's answer.
    h.reply(|m| {
        let mtype = MessageType::from_class_method(MessageClass::Success, ALLOCATE);
        let mut w = Message::builder(mtype, m.transaction_id(), MessageWriteVec::new());
        w.add_message_integrity(&key("forged"), IntegrityAlgorithm::Sha1)
            .expect("integrity");
        w.finish()
    });
    assert!(h.events.is_empty(), "{:?}", h.events);
    // An answer to a transaction nobody sent.
    let mtype = MessageType::from_class_method(MessageClass::Success, ALLOCATE);
    let stray = Message::builder(mtype, 42u128.into(), MessageWriteVec::new()).finish();
    h.answer(CONTROL, stray);
    assert!(h.events.is_empty());
    assert!(!h.client.is_done());
}

#[test]
fn garbage_on_the_control_connection_ends_the_client() {
    let mut h = Harness::new("p", Family::V4);
    // SECURITY: row 62
    h.answer(CONTROL, b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec());
    assert_eq!(
        h.events,
        [TurnEvent::Failed {
            error: TurnError::BadResponse("not STUN on the control connection")
        }]
    );
}

/// The peer addresses a CreatePermission request names, in order.
fn permitted_peers(req: &[u8]) -> Vec<IpAddr> {
    use stun_types::attribute::{Attribute as _, AttributeFromRaw as _, AttributeStaticType as _};
    let msg = Message::from_bytes(req).expect("stun");
    assert!(msg.has_method(CREATE_PERMISSION));
    msg.iter_attributes()
        .filter_map(|(_, raw)| {
            (raw.get_type() == XorPeerAddress::TYPE)
                .then(|| XorPeerAddress::from_raw_ref(&raw).ok())
                .flatten()
        })
        .map(|p| p.addr(msg.transaction_id()).ip())
        .collect()
}

#[test]
fn permissions_wait_for_the_allocation_are_batched_filtered_by_family_and_refreshed() {
    let mut h = Harness::new("p", Family::V4);
    let a: IpAddr = "127.0.0.1".parse().expect("ip");
    let b: IpAddr = "10.0.0.1".parse().expect("ip");
    let v6: IpAddr = "::1".parse().expect("ip");
    h.client.permit(h.now, [a, b, v6]);
    h.drain();
    assert!(
        h.sent.iter().all(|(_, m)| method(m) == ALLOCATE),
        "nothing before the allocation"
    );
    h.reply(|m| error(m, 401, Some("nonce-1")));
    h.reply(|m| {
        success(m, &|w, m| {
            w.add_attribute(&XorRelayedAddress::new(relayed(), m.transaction_id()))
                .expect("attr");
            w.add_attribute(&XorMappedAddress::new(mapped(), m.transaction_id()))
                .expect("attr");
            w.add_attribute(&Lifetime::new(3600)).expect("attr");
        })
    });
    let (_, req) = h.last();
    let peers = permitted_peers(&req);
    assert_eq!(
        peers,
        [b, a],
        "both IPv4 addresses in one request, in order; not the IPv6 one"
    );
    h.reply(|m| success(m, &|_, _| {}));
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::Permitted { ips: vec![b, a] })
    );
    assert_eq!(h.client.permitted().len(), 2);
    // Four minutes later, before the server's five-minute expiry, they are asked for again.
    h.now += Duration::from_secs(240);
    h.client.handle_timeout(h.now);
    h.drain();
    assert_eq!(method(&h.last().1), CREATE_PERMISSION);
    // One forbidden address refuses the request whole (coturn, for a loopback peer): it is
    // asked again address by address, and only the forbidden one fails.
    let sent = h.sent.len();
    h.reply(|m| error(m, 403, None));
    assert_eq!(h.sent.len(), sent + 2, "one request per address");
    assert_eq!(permitted_peers(&h.sent[sent].1), [b]);
    assert_eq!(permitted_peers(&h.sent[sent + 1].1), [a]);
    h.reply(|m| error(m, 403, None));
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::PermissionFailed {
            ips: vec![a],
            error: TurnError::Forbidden
        })
    );
    let (conn, first) = h.sent[sent].clone();
    let msg = Message::from_bytes(&first).expect("STUN");
    let ok = success(&msg, &|_, _| {});
    h.answer(conn, ok);
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::Permitted { ips: vec![b] })
    );
}

#[test]
fn an_address_already_permitted_is_reported_at_once_without_a_request() {
    let mut h = Harness::allocated("p");
    let a: IpAddr = "10.0.0.1".parse().expect("ip");
    let b: IpAddr = "10.0.0.2".parse().expect("ip");
    h.client.permit(h.now, [a]);
    h.drain();
    h.reply(|m| success(m, &|_, _| {}));
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::Permitted { ips: vec![a] })
    );
    // A second connection from the same peer: the caller waits for `Permitted`, which must
    // come now, not after its own deadline (it cost every repeat connection 2 s).
    let requests = h.sent.len();
    h.events.clear();
    h.client.permit(h.now, [a]);
    h.drain();
    assert_eq!(h.events, [TurnEvent::Permitted { ips: vec![a] }]);
    assert_eq!(h.sent.len(), requests, "no request for a permitted address");
    // A mix: the permitted one at once, the new one after its CreatePermission succeeds.
    h.events.clear();
    h.client.permit(h.now, [a, b]);
    h.drain();
    assert_eq!(h.events, [TurnEvent::Permitted { ips: vec![a] }]);
    assert_eq!(method(&h.last().1), CREATE_PERMISSION);
    h.reply(|m| success(m, &|_, _| {}));
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::Permitted { ips: vec![b] })
    );
}

fn connection_bind_flow(h: &mut Harness, id: u32, peer: SocketAddr, incoming: bool) -> ConnId {
    let data_conn = match h.other.pop() {
        Some(Output::Connect { conn, remote, .. }) => {
            assert_eq!(remote, server(), "data connections go to the server");
            conn
        }
        other => panic!("expected a data connection, got {other:?}"),
    };
    h.input(Input::Connected {
        conn: data_conn,
        local: mapped(),
    });
    let (conn, bind) = h.last();
    assert_eq!(
        conn, data_conn,
        "ConnectionBind goes on the data connection"
    );
    let bind = Message::from_bytes(&bind).expect("stun");
    assert!(bind.has_method(CONNECTION_BIND));
    assert_eq!(
        bind.attribute::<ConnectionId>().map(|c| c.id()).ok(),
        Some(id)
    );
    assert!(bind.validate_integrity(&key("p")).is_ok());
    // The answer and the peer's first bytes in one segment.
    let mut answer = success(&bind, &|_, _| {});
    answer.extend_from_slice(b"hello from the peer");
    h.answer(data_conn, answer);
    assert_eq!(
        h.events[h.events.len() - 2..],
        [
            TurnEvent::PeerStream {
                conn: data_conn,
                peer,
                incoming
            },
            TurnEvent::PeerData {
                conn: data_conn,
                data: Bytes::from_static(b"hello from the peer")
            },
        ]
    );
    h.client
        .send(data_conn, Bytes::from_static(b"hi"))
        .expect("bound");
    h.drain();
    assert_eq!(h.last(), (data_conn, b"hi".to_vec()));
    // The owner holding the peer's bytes stops reading the data connection, so TCP pushes
    // back through the server; and starts again.
    for pause in [true, false] {
        h.client.pause_peer(data_conn, pause);
        h.drain();
        let want = if pause {
            Output::PauseReading { conn: data_conn }
        } else {
            Output::ResumeReading { conn: data_conn }
        };
        assert_eq!(h.other.pop(), Some(want));
    }
    h.input(Input::Reset { conn: data_conn });
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::PeerClosed { conn: data_conn })
    );
    // A stream that is gone is not paused.
    h.client.pause_peer(data_conn, true);
    h.drain();
    assert!(
        !h.other
            .iter()
            .any(|o| matches!(o, Output::PauseReading { .. }))
    );
    data_conn
}

/// Asks for a Connect to `peer` on an allocation without a permission for it: the client
/// permits the peer first (the server's success is given here), then sends the Connect.
fn connect_after_permission(h: &mut Harness, peer: SocketAddr) {
    h.client.connect_peer(h.now, peer);
    h.drain();
    assert_eq!(
        method(&h.last().1),
        CREATE_PERMISSION,
        "the permission goes first"
    );
    h.reply(|m| success(m, &|_, _| {}));
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::Permitted {
            ips: vec![peer.ip()]
        })
    );
}

#[test]
fn connect_to_a_peer_then_bind_the_data_connection() {
    let mut h = Harness::allocated("p");
    let peer: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
    connect_after_permission(&mut h, peer);
    let (_, req) = h.last();
    let msg = Message::from_bytes(&req).expect("stun");
    assert!(msg.has_method(CONNECT));
    assert_eq!(
        msg.attribute::<XorPeerAddress>()
            .map(|p| p.addr(msg.transaction_id()))
            .ok(),
        Some(peer)
    );
    h.reply(|m| {
        success(m, &|w, _| {
            w.add_attribute(&ConnectionId::new(0x1234)).expect("attr")
        })
    });
    connection_bind_flow(&mut h, 0x1234, peer, false);
}

#[test]
fn connect_errors_are_per_peer() {
    for (code, want) in [
        (403, TurnError::Forbidden),
        (446, TurnError::ConnectionAlreadyExists),
        (447, TurnError::ConnectionFailed),
    ] {
        let mut h = Harness::allocated("p");
        let peer: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
        connect_after_permission(&mut h, peer);
        assert_eq!(method(&h.last().1), CONNECT);
        h.reply(|m| error(m, code, None));
        assert_eq!(
            h.events.last(),
            Some(&TurnEvent::PeerConnectFailed { peer, error: want })
        );
        assert!(!h.client.is_done(), "the allocation lives on");
    }
}

/// A server may refuse a Connect to an address without a permission (RFC 6062 §5.2): the
/// Connect waits for the permission, goes at once when it is installed already, and fails
/// with the permission's error when the server refuses that.
#[test]
fn a_connect_waits_for_its_permission_and_fails_with_it() {
    let mut h = Harness::allocated("p");
    let peer: SocketAddr = "127.0.0.1:7000".parse().expect("addr");
    connect_after_permission(&mut h, peer);
    assert_eq!(method(&h.last().1), CONNECT, "then the Connect");
    // A second Connect to that address needs no new permission.
    let again: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
    let sent = h.sent.len();
    h.client.connect_peer(h.now, again);
    h.drain();
    assert_eq!(h.sent.len(), sent + 1, "one request: {:?}", &h.sent[sent..]);
    assert_eq!(method(&h.last().1), CONNECT);

    let mut h = Harness::allocated("p");
    let forbidden: SocketAddr = "127.0.0.2:7000".parse().expect("addr");
    h.client.connect_peer(h.now, forbidden);
    h.drain();
    assert_eq!(method(&h.last().1), CREATE_PERMISSION);
    h.reply(|m| error(m, 403, None));
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::PeerConnectFailed {
            peer: forbidden,
            error: TurnError::Forbidden
        })
    );
    assert_ne!(method(&h.last().1), CONNECT, "no Connect was sent");

    // A peer of the other family is refused at once, without asking the server.
    let mut h = Harness::allocated("p");
    let v6: SocketAddr = "[2001:db8::1]:7000".parse().expect("addr");
    let sent = h.sent.len();
    h.client.connect_peer(h.now, v6);
    h.drain();
    assert_eq!(h.sent.len(), sent);
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::PeerConnectFailed {
            peer: v6,
            error: TurnError::PeerAddressFamilyMismatch
        })
    );
}

#[test]
fn a_connection_attempt_is_accepted_and_bound() {
    let mut h = Harness::allocated("p");
    let peer: SocketAddr = "127.0.0.1:7001".parse().expect("addr");
    let mtype = MessageType::from_class_method(MessageClass::Indication, CONNECTION_ATTEMPT);
    let tid = 99u128.into();
    let mut w = Message::builder(mtype, tid, MessageWriteVec::new());
    w.add_attribute(&ConnectionId::new(77)).expect("attr");
    w.add_attribute(&XorPeerAddress::new(peer, tid))
        .expect("attr");
    h.answer(CONTROL, w.finish());
    connection_bind_flow(&mut h, 77, peer, true);
}

#[test]
fn deallocation_sends_a_zero_lifetime_and_closes() {
    let mut h = Harness::allocated("p");
    h.client.deallocate(h.now);
    h.drain();
    let (_, req) = h.last();
    let msg = Message::from_bytes(&req).expect("stun");
    assert!(msg.has_method(REFRESH));
    assert_eq!(
        msg.attribute::<Lifetime>().map(|l| l.seconds()).ok(),
        Some(0)
    );
    h.reply(|m| success(m, &|w, _| w.add_attribute(&Lifetime::new(0)).expect("attr")));
    assert_eq!(h.events.last(), Some(&TurnEvent::Deallocated));
    assert!(h.other.contains(&Output::Close { conn: CONTROL }));
    assert_eq!(h.client.poll_timeout(), None, "nothing left to wait for");
}

#[test]
fn an_ipv6_allocation_asks_for_the_ipv6_family() {
    let h = Harness::new("p", Family::V6);
    let (_, req) = h.last();
    let msg = Message::from_bytes(&req).expect("stun");
    let family = msg
        .attribute::<turn_types::attribute::RequestedAddressFamily>()
        .map(|f| f.family())
        .ok();
    assert_eq!(family, Some(stun_types::AddressFamily::IPV6));
}

// ----- answers an on-path attacker could forge (RFC 8489 §9.2.5) -----

fn attacker() -> SocketAddr {
    "203.0.113.66:666".parse().expect("addr")
}

#[test]
fn a_success_without_integrity_to_a_signed_request_is_ignored_and_counted() {
    let mut h = Harness::new("p", Family::V4);
    h.reply(|m| error(m, 401, Some("nonce-1")));
    // SECURITY: row 56
    h.reply(|m| allocate_success(m, attacker(), None));
    assert!(h.events.is_empty(), "{:?}", h.events);
    assert_eq!(h.client.relayed(), None);
    assert_eq!(h.client.unauthenticated(), 1);
    // The real answer still counts: the forgery did not end the transaction.
    h.reply(|m| allocate_success(m, relayed(), Some(key("p"))));
    assert_eq!(h.client.relayed(), Some(relayed()));
    assert!(matches!(h.events[..], [TurnEvent::Allocated { .. }]));
}

#[test]
fn a_success_to_the_first_unsigned_allocate_is_not_believed() {
    let mut h = Harness::new("p", Family::V4);
    // An on-path attacker answers before the server's challenge arrives.
    // SECURITY: row 57
    h.reply(|m| allocate_success(m, attacker(), None));
    assert!(h.events.is_empty(), "{:?}", h.events);
    assert_eq!(h.client.unauthenticated(), 1);
    h.reply(|m| error(m, 401, Some("nonce-1")));
    h.reply(|m| allocate_success(m, relayed(), Some(key("p"))));
    assert_eq!(h.client.relayed(), Some(relayed()));
}

#[test]
fn an_unsigned_error_to_a_signed_request_changes_nothing() {
    for code in [400, 403, 437, 486, 508, 499] {
        let mut h = Harness::new("p", Family::V4);
        h.reply(|m| error(m, 401, Some("nonce-1")));
        // SECURITY: row 58
        h.reply(|m| unsigned_error(m, code, None, None));
        assert!(h.events.is_empty(), "code {code}: {:?}", h.events);
        assert!(!h.client.is_done());
        assert_eq!(h.client.unauthenticated(), 1);
        // Signed with a key that is not ours: the same.
        h.reply(|m| unsigned_error(m, code, None, Some(key("forged"))));
        assert!(h.events.is_empty(), "code {code}: {:?}", h.events);
        h.reply(|m| allocate_success(m, relayed(), Some(key("p"))));
        assert_eq!(h.client.relayed(), Some(relayed()), "code {code}");
    }
}

#[test]
fn unsigned_challenges_only_re_sign_and_cannot_end_an_allocation() {
    let mut h = Harness::allocated("p");
    h.client.permit(h.now, ["10.0.0.1".parse().expect("ip")]);
    h.drain();
    // A 401 bringing back our own realm and nonce, once the server has proved it knows our
    // key: a forgery (a wrong password would have failed the Allocate).
    // SECURITY: row 59
    h.reply(|m| error(m, 401, Some("nonce-1")));
    assert!(
        matches!(h.events[..], [TurnEvent::Allocated { .. }]),
        "{:?}",
        h.events
    );
    assert_eq!(h.client.unauthenticated(), 1);
    // Challenges with new realms or nonces re-sign, a bounded number of times.
    let sent = h.sent.len();
    for n in 0..3 {
        h.reply(|m| error(m, 438, Some(&format!("forged-{n}"))));
    }
    assert_eq!(h.sent.len(), sent + 3, "each re-signs the same request");
    h.reply(|m| error(m, 438, Some("forged-3")));
    assert_eq!(
        h.events.last(),
        Some(&TurnEvent::PermissionFailed {
            ips: vec!["10.0.0.1".parse().expect("ip")],
            error: TurnError::StaleNonceLoop
        }),
        "a loop of challenges ends the request, not the allocation"
    );
    assert!(!h.client.is_done());
    assert_eq!(h.client.relayed(), Some(relayed()));
}

#[test]
fn a_realm_changing_401_loop_to_a_signed_request_ends() {
    let mut h = Harness::new("p", Family::V4);
    h.reply(|m| error(m, 401, Some("nonce-1")));
    for n in 2..6 {
        // SECURITY: row 60
        // Another realm each time: re-signed with it, until the bound.
        h.reply(|m| {
            let mtype = MessageType::from_class_method(MessageClass::Error, ALLOCATE);
            let mut w = Message::builder(mtype, m.transaction_id(), MessageWriteVec::new());
            w.add_attribute(&ErrorCode::builder(401).build().expect("code"))
                .expect("attr");
            w.add_attribute(&Realm::new(&format!("realm-{n}")).expect("realm"))
                .expect("attr");
            w.add_attribute(&Nonce::new(&format!("nonce-{n}")).expect("nonce"))
                .expect("attr");
            w.finish()
        });
    }
    assert_eq!(
        h.events,
        [TurnEvent::Failed {
            error: TurnError::WrongCredentials
        }]
    );
}
