//! A whole node against strangers, through its public API only: connections that never say
//! who they are, and DHT values that do not open. Nothing a stranger sends may cost more than
//! the node's pre-authentication budget (16 KiB and 10 seconds per connection), and nothing
//! that fails a check may start ICE.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{ConnId, Input, Output};
use ferry_proto::node::{UNROUTED_MAX, UNROUTED_PER_SOURCE};
use ferry_proto::signal::{PeerConnection, SeededRng, devices_key, peer_key, seal};
use ferry_proto::stun::framing;
use ferry_proto::tls::{Device, Revocations, Validity, derive_seed};
use ferry_tests::hand::HandNode;
use ferry_tests::identity::{Seeds, T0, node_config};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

const SEEDS: Seeds = Seeds::new(b"hostile", b"hostile");

/// Bob's node, listening on one address, with whatever revocations are given.
struct Bob(HandNode);

impl std::ops::Deref for Bob {
    type Target = HandNode;
    fn deref(&self) -> &HandNode {
        &self.0
    }
}

impl std::ops::DerefMut for Bob {
    fn deref_mut(&mut self) -> &mut HandNode {
        &mut self.0
    }
}

impl Bob {
    fn new(revocations: Revocations) -> Bob {
        let bob = SEEDS.account("bob");
        let b1 = SEEDS.device(&bob, "b1");
        let now = Instant::now();
        let mut config = node_config(now, &bob, &b1, IP, 7);
        config.revocations = revocations;
        Bob(HandNode::listening(now, config, SocketAddr::new(IP, 4000)))
    }

    fn accept(&mut self, n: u32) -> ConnId {
        let conn = ConnId::Accepted(n);
        let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 40_000 + n as u16);
        let listener = self.listener;
        self.input(Input::Accepted {
            listener,
            conn,
            remote,
        });
        conn
    }

    fn send(&mut self, conn: ConnId, data: &[u8]) {
        self.input(Input::Received {
            conn,
            data: Bytes::copy_from_slice(data),
        });
    }

    fn closed(&self, conn: ConnId) -> bool {
        self.outputs.iter().any(
            |o| matches!(o, Output::Close { conn: c } | Output::Reset { conn: c } if *c == conn),
        )
    }

    /// Whether the node started any ICE work: a connection out, or an answer on the DHT.
    fn started_ice(&self) -> bool {
        self.outputs
            .iter()
            .any(|o| matches!(o, Output::Connect { .. } | Output::DhtPut { .. }))
    }
}

#[test]
fn a_connection_that_sends_a_byte_and_waits_is_closed_after_ten_seconds() {
    let mut bob = Bob::new(Revocations::new());
    let conn = bob.accept(1);
    // SECURITY: row 39
    bob.send(conn, &[0]);
    bob.wait(Duration::from_secs(9));
    assert!(!bob.closed(conn), "not before its time");
    bob.wait(Duration::from_secs(2));
    assert!(bob.closed(conn), "slow-loris: closed at the deadline");
    assert_eq!(bob.node.dropped().unrouted, 1);
}

#[test]
fn a_huge_rfc_4571_prefix_is_closed_past_sixteen_kib() {
    let mut bob = Bob::new(Revocations::new());
    let conn = bob.accept(1);
    // SECURITY: row 40
    bob.send(conn, &[0xff, 0xff]);
    for _ in 0..15 {
        bob.send(conn, &[0x55; 1024]);
    }
    bob.send(conn, &[0x55; 1022]);
    assert!(!bob.closed(conn), "16 KiB are allowed");
    bob.send(conn, &[0x55]);
    assert!(
        bob.closed(conn),
        "a frame that would need 64 KiB is not waited for"
    );
}

#[test]
fn a_stun_message_with_an_oversized_attribute_is_closed_unread() {
    let mut bob = Bob::new(Revocations::new());
    let conn = bob.accept(1);
    // A Binding request whose one attribute (comprehension-optional) is 20 000 bytes long.
    let mut stun = vec![0x00, 0x01];
    stun.extend_from_slice(&20_004u16.to_be_bytes());
    stun.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    stun.extend_from_slice(&[7; 12]);
    stun.extend_from_slice(&[0x80, 0x99]);
    stun.extend_from_slice(&20_000u16.to_be_bytes());
    stun.extend(std::iter::repeat_n(b'u', 20_000));
    // SECURITY: row 41
    bob.send(conn, &framing::encode(&stun));
    assert!(bob.closed(conn));
}

#[test]
fn a_first_frame_that_is_no_stun_check_is_closed_at_once() {
    let mut bob = Bob::new(Revocations::new());
    let conn = bob.accept(1);
    // SECURITY: row 42
    bob.send(conn, &framing::encode(b"GET / HTTP/1.1\r\n\r\n"));
    assert!(bob.closed(conn));
}

/// How many of `conns` the node holds open now.
fn open_now(bob: &Bob, conns: &[ConnId]) -> usize {
    conns.iter().filter(|&&c| !bob.closed(c)).count()
}

#[test]
fn a_flood_of_silent_connections_is_closed_within_the_budget() {
    // From one address: never more than its share held at once.
    let mut bob = Bob::new(Revocations::new());
    let mut conns = Vec::new();
    // SECURITY: row 43
    for n in 1..=500 {
        let conn = bob.accept(n);
        bob.send(conn, &[0, 20, 0]);
        conns.push(conn);
        assert!(open_now(&bob, &conns) <= UNROUTED_PER_SOURCE, "after {n}");
    }
    bob.wait(Duration::from_secs(11));
    assert_eq!(open_now(&bob, &conns), 0, "every one is closed");
    let dropped = bob.node.dropped();
    assert_eq!(dropped.unrouted + dropped.evicted, 500);
    assert!(!bob.started_ice());

    // From as many addresses: never more than the node's whole budget.
    let mut bob = Bob::new(Revocations::new());
    let mut conns = Vec::new();
    for n in 1..=500u32 {
        let conn = ConnId::Accepted(n);
        let [_, _, hi, lo] = n.to_be_bytes();
        let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, hi, lo)), 40_000);
        let listener = bob.listener;
        bob.input(Input::Accepted {
            listener,
            conn,
            remote,
        });
        bob.send(conn, &[0, 20, 0]);
        conns.push(conn);
        assert!(open_now(&bob, &conns) <= UNROUTED_MAX, "after {n}");
    }
    bob.wait(Duration::from_secs(11));
    assert_eq!(open_now(&bob, &conns), 0, "every one is closed");
    assert!(!bob.started_ice());
}

/// A value sealed to Bob's device by `from`, holding a connection request.
fn request_from(from: &Device, to: &Device) -> Bytes {
    let request = PeerConnection {
        id: 42,
        is_answer: false,
        ice: "0d04b932\n7c33834e7cf944bf0e367b47\nH1 1 TCP 2130706431 203.0.113.9 5000 typ host tcptype passive\n".into(),
        addresses: vec!["203.0.113.9:5000".parse().expect("an address")],
        seal: Some(from.seal_public_key()),
        time: None,
    };
    let mut rng = SeededRng::new(3);
    Bytes::from(seal(from, &to.recipient(), &request.encode(), &mut rng).expect("sealed"))
}

#[test]
fn dht_values_that_do_not_open_are_counted_and_start_nothing() {
    let bob = SEEDS.account("bob");
    let b1 = SEEDS.device(&bob, "b1");
    let mallory = SEEDS.account("mallory");
    let m1 = SEEDS.device(&mallory, "m1");
    let mut revocations = Revocations::new();
    revocations.add(mallory.revoke(&[m1.id()], T0 - 3600, 1).expect("a list"));
    let mut node = Bob::new(revocations);
    let key = peer_key(&b1.id());
    // Garbage, a value far too large, a value sealed to another device, a revoked sender,
    // a "device" that is its own account (self-signed), and devices outside their validity.
    let eve = SEEDS.account("eve");
    let pem = eve.to_pem();
    let cert_end = pem
        .find("-----END CERTIFICATE-----")
        .expect("a certificate")
        + 26;
    let self_signed =
        Device::from_pem(&format!("{}{pem}", &pem[..cert_end])).expect("a self-issued device");
    let b2 = SEEDS.device(&bob, "b2");
    // A device of a valid account whose certificate ended before the node's now, and one
    // whose certificate starts after it.
    let expired = mallory
        .add_device(
            &derive_seed(b"hostile", "old"),
            Validity::days_from(T0 - 100 * 86_400, 30),
        )
        .expect("a device");
    let early = mallory
        .add_device(
            &derive_seed(b"hostile", "early"),
            Validity::days_from(T0 + 100 * 86_400, 30),
        )
        .expect("a device");
    let values = [
        // SECURITY: row 74
        Bytes::from_static(b"\x93\x01\x02\x03 not a sealed value"),
        // SECURITY: row 75
        Bytes::from(vec![0x82; 200_000]),
        // SECURITY: row 76
        request_from(&m1, &b2),
        // SECURITY: row 77
        request_from(&m1, &b1),
        // SECURITY: row 78
        request_from(&self_signed, &b1),
        // SECURITY: row 71
        request_from(&expired, &b1),
        request_from(&early, &b1),
    ];
    for (i, value) in values.into_iter().enumerate() {
        node.input(Input::DhtValue { key, value });
        assert_eq!(node.node.dropped().unopened, i as u64 + 1, "value {i}");
    }
    assert!(!node.started_ice(), "{:?}", node.outputs);
}

#[test]
fn announcements_of_devices_outside_their_validity_are_counted_and_start_nothing() {
    let mut bob = Bob::new(Revocations::new());
    let mallory = SEEDS.account("mallory");
    let now = bob.now;
    bob.node
        .send_file(now, mallory.id(), "/nowhere".into(), "x".into());
    bob.drain();
    bob.outputs.clear();
    let key = devices_key(&mallory.id());
    let announced = |name: &str, validity: Validity| {
        let d = mallory
            .add_device(&derive_seed(b"hostile", name), validity)
            .expect("a device");
        Bytes::from(mallory.announce(&d).expect("an announcement"))
    };
    // SECURITY: row 71
    for (name, validity) in [
        ("old", Validity::days_from(T0 - 100 * 86_400, 30)),
        ("early", Validity::days_from(T0 + 100 * 86_400, 30)),
    ] {
        let value = announced(name, validity);
        bob.input(Input::DhtValue { key, value });
    }
    assert_eq!(bob.node.dropped().bad_announcements, 2);
    assert!(!bob.started_ice(), "{:?}", bob.outputs);
    // The same account's valid device is reached: the two above were refused for their
    // validity alone.
    let value = announced("m1", Validity::days_from(T0 - 86_400, 365));
    bob.input(Input::DhtValue { key, value });
    assert_eq!(bob.node.dropped().bad_announcements, 2);
    assert!(bob.started_ice(), "{:?}", bob.outputs);
}
