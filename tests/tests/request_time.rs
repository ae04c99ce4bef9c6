//! Request timestamps (PROTOCOL.md §9.1): a node announces `request-time`, a requester puts
//! its time into a request only to a device that announced it, and a receiver refuses a
//! request outside ± 10 minutes of its clock, whatever its replay memory holds. A device that
//! announced nothing still gets, and is still served with, the first form.
//!
//! One whole node on a virtual clock anchored at [`T0`]: every time here is exact.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{Input, Output};
use ferry_proto::signal::{
    self, Announcement, Features, PeerConnection, REQUEST_WINDOW, Recipient, SeededRng,
    devices_key, peer_key,
};
use ferry_proto::tls::{Device, Revocations};
use ferry_tests::hand::HandNode;
use ferry_tests::identity::{Seeds, T0, node_config};

const IP: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));

const SEEDS: Seeds = Seeds::new(b"request-time", b"request-time");

/// Bob's node at `T0`, listening, its gathering done.
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
    fn new() -> Bob {
        let bob = SEEDS.account("bob");
        let b1 = SEEDS.device(&bob, "b1");
        let now = Instant::now();
        let config = node_config(now, &bob, &b1, IP, 7);
        let mut b = HandNode::listening(now, config, SocketAddr::new(IP, 4000));
        b.wait(Duration::from_secs(1));
        b.outputs.clear();
        Bob(b)
    }

    /// Bob's clock, in Unix seconds.
    fn unix_now(&self) -> u64 {
        T0 + (self.now - self.start).as_secs()
    }

    /// A value under Bob's device key, as the DHT delivers it.
    fn deliver(&mut self, value: Bytes) {
        let key = peer_key(&SEEDS.device(&SEEDS.account("bob"), "b1").id());
        self.input(Input::DhtValue { key, value });
        self.wait(Duration::from_secs(3));
    }

    /// The values Bob put under `device`'s key (answers, requests), opened by `device`.
    fn put_to(&self, device: &Device) -> Vec<PeerConnection> {
        let key = peer_key(&device.id());
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::DhtPut { key: k, value } if *k == key => Some(value),
                _ => None,
            })
            .map(|v| {
                let opened = signal::open(device, v, &Revocations::new()).expect("opens");
                PeerConnection::decode(&opened.body).expect("decodes")
            })
            .collect()
    }
}

/// A request from `from` to Bob's device, sealed with `time` (`None`: the first form).
fn request(from: &Device, id: u64, time: Option<u64>) -> Bytes {
    let b1 = SEEDS.device(&SEEDS.account("bob"), "b1");
    let msg = PeerConnection {
        id,
        is_answer: false,
        ice: "0d04b932\n7c33834e7cf944bf0e367b47\nH1 1 TCP 2130706431 203.0.113.9 5000 typ host tcptype passive\n".into(),
        addresses: Vec::new(),
        seal: Some(from.seal_public_key()),
        time,
    };
    let to = Recipient {
        features: Features::ours(),
        ..b1.recipient()
    };
    let mut rng = SeededRng::new(id);
    Bytes::from(signal::seal(from, &to, &msg.encode(), &mut rng).expect("sealed"))
}

#[test]
fn a_request_outside_the_window_is_refused_and_one_inside_it_answered() {
    let alice = SEEDS.account("alice");
    let a1 = SEEDS.device(&alice, "a1");
    let window = REQUEST_WINDOW.as_secs();
    let mut bob = Bob::new();
    // SECURITY: row 134
    let late = bob.unix_now() - window - 1;
    bob.deliver(request(&a1, 1, Some(late)));
    let early = bob.unix_now() + window + 1;
    bob.deliver(request(&a1, 2, Some(early)));
    assert_eq!(bob.node.dropped().stale_requests, 2);
    assert!(bob.put_to(&a1).is_empty(), "no answer to a stale request");
    assert_eq!(bob.node.connections_of(&alice.id()), 0);

    // Ten minutes late or early (clocks apart by that much) is still answered.
    let just_in = bob.unix_now() - window;
    bob.deliver(request(&a1, 3, Some(just_in)));
    let answers = bob.put_to(&a1);
    assert_eq!(answers.len(), 1, "{:?}", bob.outputs);
    assert!(answers[0].is_answer && answers[0].id == 3);
    assert_eq!(answers[0].time, None, "an answer carries no time");
    assert_eq!(bob.node.dropped().stale_requests, 2);
}

#[test]
fn a_request_replayed_after_the_window_is_refused_with_nothing_remembered() {
    let alice = SEEDS.account("alice");
    let a1 = SEEDS.device(&alice, "a1");
    let value = request(&a1, 9, Some(T0));
    // Taken when it is new.
    let mut bob = Bob::new();
    bob.deliver(value.clone());
    assert_eq!(bob.put_to(&a1).len(), 1);
    // The same value, eleven minutes later, to a node that remembers no id at all (a restarted
    // node, or one whose replay memory forgot it past 4096 others): refused by its time.
    let mut fresh = Bob::new();
    fresh.wait(REQUEST_WINDOW + Duration::from_secs(60));
    assert_eq!(fresh.node.footprint().seen, 0, "nothing remembered");
    fresh.outputs.clear();
    // SECURITY: row 134
    fresh.deliver(value);
    assert_eq!(fresh.node.dropped().stale_requests, 1);
    assert!(fresh.put_to(&a1).is_empty());
}

#[test]
fn a_device_that_announced_nothing_gets_and_is_served_with_the_first_form() {
    let alice = SEEDS.account("alice");
    let a1 = SEEDS.device(&alice, "a1");
    let a2 = SEEDS.device(&alice, "a2");
    let a3 = SEEDS.device(&alice, "a3");
    let mut bob = Bob::new();
    // An older peer: its request has no time, and Bob knows nothing it announced.
    bob.deliver(request(&a3, 5, None));
    assert_eq!(bob.put_to(&a3).len(), 1, "the older peer is answered");
    assert_eq!(bob.node.dropped().stale_requests, 0);

    // Bob sends to Alice: a1 announces `request-time` (as every node now does), a2 the
    // announcement its account signed and nothing more.
    let now = bob.now;
    bob.node
        .send_file(now, alice.id(), "/nowhere".into(), "x".into());
    let key = devices_key(&alice.id());
    let old = alice.announce(&a2).expect("an announcement");
    let new = Announcement::with_our_features(&alice.announce(&a1).expect("a"), &a1)
        .expect("with features");
    assert_eq!(
        Announcement::verify(&new, &alice.id(), &Revocations::new())
            .expect("verifies")
            .features,
        Features::ours()
    );
    // A feature list added by someone else than the device (here: the list's last signature
    // byte changed) makes the announcement refused, not read without its list.
    let mut forged = new.clone();
    let last = forged.len() - 1;
    // SECURITY: row 135
    forged[last] ^= 1;
    assert_eq!(
        Announcement::verify(&forged, &alice.id(), &Revocations::new()),
        Err(signal::SignalError::BadSignature)
    );
    for value in [old, new] {
        bob.input(Input::DhtValue {
            key,
            value: Bytes::from(value),
        });
    }
    bob.wait(Duration::from_secs(3));
    // Bob keeps what each device announced (what a sender reads to choose a manifest or
    // separate offers, PROTOCOL.md §14); of a3 he read no announcement.
    let announced = |d: &Device| bob.node.announced_features(&alice.id(), &d.id());
    assert_eq!(announced(&a1), Some(Features::ours()));
    assert_eq!(announced(&a2), Some(Features::default()));
    assert_eq!(announced(&a3), None);
    let to_a1 = bob.put_to(&a1);
    let to_a2 = bob.put_to(&a2);
    let request_to = |sent: &[PeerConnection]| {
        sent.iter()
            .find(|m| !m.is_answer)
            .cloned()
            .expect("a request")
    };
    let unix_now = bob.unix_now();
    // To the device that announced it, the time; to the other, the first form byte for byte.
    assert!(
        request_to(&to_a1)
            .time
            .is_some_and(|t| t.abs_diff(unix_now) <= 3)
    );
    assert_eq!(request_to(&to_a2).time, None);

    // Now Bob knows a1 announced `request-time`: a request from a1 without one is an old
    // one replayed, refused.
    // SECURITY: row 134
    bob.deliver(request(&a1, 6, None));
    assert_eq!(bob.node.dropped().stale_requests, 1);
}
