//! Ferry's TURN server driven by hand, as a hostile client would drive it: requests written
//! with stun-types, answers read back.

use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use ferry_proto::io::{ConnId, Endpoint, Input, ListenerId, Output};
use ferry_sim::turn_server::{TurnServer, TurnServerConfig, TurnServerEvent};
use stun_types::attribute::{ErrorCode, Nonce, Realm, Username};
use stun_types::message::{
    IntegrityAlgorithm, LongTermCredentials, Message, MessageClass, MessageType, MessageWrite,
    MessageWriteExt, MessageWriteVec, Method,
};
use turn_types::attribute::{ConnectionId, Lifetime, RequestedTransport, XorPeerAddress};
use turn_types::message::{ALLOCATE, CONNECT, CONNECTION_BIND, CREATE_PERMISSION};

const REALM: &str = "ferry.test";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("an address")
}

struct Harness {
    server: TurnServer,
    now: Instant,
    out: Vec<Output<TurnServerEvent>>,
    nonce: String,
    next_tid: u128,
}

impl Harness {
    fn new() -> Harness {
        let mut config = TurnServerConfig::new(addr("192.0.2.1:3478"), "alice", "pa", REALM);
        config.users.insert("mallory".into(), "pm".into());
        let mut h = Harness {
            server: TurnServer::new(config),
            now: Instant::now(),
            out: Vec::new(),
            nonce: String::new(),
            next_tid: 1,
        };
        h.drain();
        h
    }

    fn input(&mut self, input: Input) {
        self.server.handle_input(self.now, input).expect("an input");
        self.drain();
    }

    fn drain(&mut self) {
        self.out
            .extend(std::iter::from_fn(|| self.server.poll_output()));
    }

    fn accept(&mut self, n: u32) -> ConnId {
        let conn = ConnId::Accepted(n);
        self.input(Input::Accepted {
            listener: ListenerId(0),
            conn,
            remote: addr(&format!("198.51.100.{n}:40000")),
        });
        conn
    }

    /// Sends a request of `method` signed by `user`, and returns the answer on `conn`.
    fn request(
        &mut self,
        conn: ConnId,
        method: Method,
        user: (&str, &str),
        add: impl Fn(&mut MessageWriteVec, stun_types::message::TransactionId),
    ) -> Vec<u8> {
        self.next_tid += 1;
        let tid = self.next_tid.into();
        let mut w = Message::builder(
            MessageType::from_class_method(MessageClass::Request, method),
            tid,
            MessageWriteVec::new(),
        );
        add(&mut w, tid);
        w.add_attribute(&Username::new(user.0).expect("user"))
            .expect("attr");
        w.add_attribute(&Realm::new(REALM).expect("realm"))
            .expect("attr");
        w.add_attribute(&Nonce::new(&self.nonce).expect("nonce"))
            .expect("attr");
        let key = LongTermCredentials::new(user.0.to_owned(), user.1.to_owned())
            .to_key(REALM.to_owned())
            .into();
        w.add_message_integrity(&key, IntegrityAlgorithm::Sha1)
            .expect("integrity");
        self.out.clear();
        self.input(Input::Received {
            conn,
            data: Bytes::from(w.finish()),
        });
        self.sent_to(conn).into_iter().next().unwrap_or_default()
    }

    fn sent_to(&self, conn: ConnId) -> Vec<Vec<u8>> {
        self.out
            .iter()
            .filter_map(|o| match o {
                Output::Send { conn: c, data } if *c == conn => Some(data.to_vec()),
                _ => None,
            })
            .collect()
    }

    /// The answer's class and error code.
    fn verdict(bytes: &[u8]) -> (MessageClass, Option<u16>) {
        let m = Message::from_bytes(bytes).expect("the server answers in STUN");
        (m.class(), m.attribute::<ErrorCode>().map(|e| e.code()).ok())
    }

    /// Alice's allocation on `conn`, with a permission for `peer`.
    fn allocated(&mut self, conn: ConnId, peer: SocketAddr) {
        let challenge = self.request(conn, ALLOCATE, ("alice", "pa"), |_, _| {});
        let m = Message::from_bytes(&challenge).expect("stun");
        self.nonce = m.attribute::<Nonce>().expect("a nonce").nonce().to_owned();
        let _ = self.request(conn, ALLOCATE, ("alice", "pa"), |w, _| {
            w.add_attribute(&RequestedTransport::new(6)).expect("attr");
            w.add_attribute(&Lifetime::new(600)).expect("attr");
        });
        let listener = self
            .out
            .iter()
            .find_map(|o| match o {
                Output::Listen { listener, .. } => Some(*listener),
                _ => None,
            })
            .expect("a relay listener");
        self.out.clear();
        self.input(Input::Listening {
            listener,
            local: addr("192.0.2.1:50000"),
        });
        assert_eq!(
            Harness::verdict(&self.sent_to(conn)[0]),
            (MessageClass::Success, None)
        );
        let ok = self.request(conn, CREATE_PERMISSION, ("alice", "pa"), |w, tid| {
            w.add_attribute(&XorPeerAddress::new(peer, tid))
                .expect("attr");
        });
        assert_eq!(Harness::verdict(&ok), (MessageClass::Success, None));
    }
}

/// Found by the `turn_server` fuzz target: a ConnectionBind for a peer connection that was
/// still connecting replaced its state before checking it, so a premature bind (from any
/// user) silently took the peer's bytes, raw, on a connection that was no data connection.
#[test]
fn a_connection_bind_takes_only_a_waiting_connection_of_its_own_user() {
    let mut h = Harness::new();
    let control = h.accept(1);
    let peer = addr("203.0.113.7:5000");
    h.allocated(control, peer);
    let _ = h.request(control, CONNECT, ("alice", "pa"), |w, tid| {
        w.add_attribute(&XorPeerAddress::new(peer, tid))
            .expect("attr");
    });
    let peer_conn = h
        .out
        .iter()
        .find_map(|o| match o {
            Output::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("the server connects to the peer");
    // The CONNECTION-IDs are counted from 0x1000: guessable before the Connect's answer.
    let cid = 0x1000;
    let bind = |w: &mut MessageWriteVec, _| {
        w.add_attribute(&ConnectionId::new(cid)).expect("attr");
    };
    let early = h.accept(2);
    // SECURITY: row 104
    let answer = h.request(early, CONNECTION_BIND, ("alice", "pa"), bind);
    assert_eq!(
        Harness::verdict(&answer),
        (MessageClass::Error, Some(400)),
        "not while the peer connection is still connecting"
    );
    h.input(Input::Connected {
        conn: peer_conn,
        local: addr("192.0.2.1:50000"),
    });
    h.out.clear();
    h.input(Input::Received {
        conn: peer_conn,
        data: Bytes::from_static(b"early bytes from the peer"),
    });
    assert!(
        h.sent_to(early).is_empty(),
        "the peer's bytes are kept, not sent"
    );
    // Another user knows (or guesses) the id: not hers to bind.
    let stranger = h.accept(3);
    let answer = h.request(stranger, CONNECTION_BIND, ("mallory", "pm"), bind);
    assert_eq!(Harness::verdict(&answer), (MessageClass::Error, Some(441)));
    // Nor can the allocation's own control connection become a data connection.
    let answer = h.request(control, CONNECTION_BIND, ("alice", "pa"), bind);
    assert_eq!(Harness::verdict(&answer), (MessageClass::Error, Some(400)));
    // Alice's own data connection binds, and gets the peer's early bytes after the answer.
    let data = h.accept(4);
    let answer = h.request(data, CONNECTION_BIND, ("alice", "pa"), bind);
    assert_eq!(Harness::verdict(&answer), (MessageClass::Success, None));
    assert_eq!(h.sent_to(data)[1], b"early bytes from the peer");
}

/// Where this server is stricter than coturn (which connects anyway): a Connect to a peer
/// without a permission is 403, and the server opens nothing toward it. (Ferry's client
/// permits a Connect's peer first, so only a raw request reaches this rule.)
#[test]
fn a_connect_without_permission_is_forbidden() {
    let mut h = Harness::new();
    let control = h.accept(1);
    h.allocated(control, addr("203.0.113.7:5000"));
    let elsewhere = addr("203.0.113.8:5000");
    let answer = h.request(control, CONNECT, ("alice", "pa"), |w, tid| {
        w.add_attribute(&XorPeerAddress::new(elsewhere, tid))
            .expect("attr");
    });
    assert_eq!(Harness::verdict(&answer), (MessageClass::Error, Some(403)));
    assert!(
        !h.out.iter().any(|o| matches!(o, Output::Connect { .. })),
        "no connection toward the peer: {:?}",
        h.out
    );
}
