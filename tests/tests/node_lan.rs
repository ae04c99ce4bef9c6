//! Whole nodes on a flat in-memory network: the path from `send_file` to a verified file on
//! each device, without NATs (the simulator scenarios add those).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferry_proto::io::Event;
use ferry_proto::node::{Node, NodeConfig};
use ferry_proto::tls::{Account, Device, UnixAnchor, Validity, derive_seed};
use ferry_proto::transfer::{Digest, Status, TransferId};
use ferry_tests::content;
use ferry_tests::lan::Lan;

const T0: u64 = 1_795_651_200;
const SIZE: u64 = 300_000;

fn account(name: &str) -> Account {
    Account::from_seed(
        &derive_seed(b"lan", name),
        Validity::days_from(T0 - 86_400, 365),
    )
    .expect("account")
}

fn node(lan: &Lan, account: &Account, device: &Device, seed: u64, ip: IpAddr) -> Node {
    let anchor = UnixAnchor {
        instant: lan.start,
        unix: Duration::from_secs(T0),
    };
    let config = NodeConfig::new(
        device.clone(),
        account.announce(device).expect("announce"),
        vec![ip],
        seed,
        anchor,
    );
    Node::new(lan.now, config)
}

fn incoming(lan: &Lan, host: usize) -> Option<TransferId> {
    lan.events(host).iter().find_map(|e| match e {
        Event::IncomingTransfer { transfer, .. } => Some(*transfer),
        _ => None,
    })
}

fn status_of(lan: &Lan, host: usize, t: TransferId) -> Option<Status> {
    lan.events(host).iter().rev().find_map(|e| match e {
        Event::Status {
            transfer, status, ..
        } if *transfer == t => Some(*status),
        _ => None,
    })
}

#[test]
fn one_file_to_two_devices_one_accepts_one_refuses() {
    let mut lan = Lan::new(Instant::now());
    let (alice, bob) = (account("alice"), account("bob"));
    let a1 = alice
        .add_device(
            &derive_seed(b"lan", "a1"),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device");
    let b1 = bob
        .add_device(
            &derive_seed(b"lan", "b1"),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device");
    let b2 = bob
        .add_device(
            &derive_seed(b"lan", "b2"),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device");
    let n = node(&lan, &alice, &a1, 1, "10.0.0.1".parse().expect("ip"));
    let ha = lan.add("a1", "10.0.0.1".parse().expect("ip"), n);
    let n = node(&lan, &bob, &b1, 2, "10.0.0.2".parse().expect("ip"));
    let hb1 = lan.add("b1", "10.0.0.2".parse().expect("ip"), n);
    let n = node(&lan, &bob, &b2, 3, "10.0.0.3".parse().expect("ip"));
    let hb2 = lan.add("b2", "10.0.0.3".parse().expect("ip"), n);
    lan.run_until(Duration::from_secs(1), |_| false);

    let group = lan.with(ha, |n, now| {
        n.send_file(now, bob.id(), format!("seed:7:{SIZE}"), "photo.jpg".into())
    });
    assert!(
        lan.run_until(Duration::from_secs(30), |l| incoming(l, hb1).is_some()
            && incoming(l, hb2).is_some()),
        "both devices hear of the file: {:?} {:?}",
        lan.events(ha),
        lan.events(hb1)
    );
    let t1 = incoming(&lan, hb1).expect("b1");
    let t2 = incoming(&lan, hb2).expect("b2");
    lan.with(hb1, |n, now| n.accept(now, t1)).expect("accept");
    lan.with(hb2, |n, now| n.refuse(now, t2)).expect("refuse");
    let done = lan.run_until(Duration::from_secs(60), |l| {
        l.events(ha).iter().any(|e| matches!(e, Event::Aggregate { group: g, status: Status::Finished, .. } if *g == group))
    });
    assert!(done, "the aggregate finishes: {:#?}", lan.events(ha));
    let expected = content::range(7, 0, SIZE as usize);
    assert_eq!(
        lan.hosts[hb1]
            .finals
            .get("photo.jpg")
            .map(|d| Digest::of(d)),
        Some(Digest::of(&expected))
    );
    assert!(lan.hosts[hb2].finals.is_empty() && lan.hosts[hb2].partials.is_empty());
    assert_eq!(status_of(&lan, hb1, t1), Some(Status::Finished));
    assert_eq!(
        status_of(&lan, ha, t2),
        Some(Status::ClosedByPeer),
        "the refused sub-transfer's own state"
    );
    assert_eq!(status_of(&lan, ha, t1), Some(Status::Finished));
}

#[test]
fn the_header_arrives_after_three_dht_hops_and_a_few_round_trips() {
    let mut lan = Lan::new(Instant::now());
    let (alice, bob) = (account("alice"), account("bob"));
    let a1 = alice
        .add_device(
            &derive_seed(b"lan", "a1"),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device");
    let b1 = bob
        .add_device(
            &derive_seed(b"lan", "b1"),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device");
    let n = node(&lan, &alice, &a1, 1, "10.0.0.1".parse().expect("ip"));
    let ha = lan.add("a1", "10.0.0.1".parse().expect("ip"), n);
    let n = node(&lan, &bob, &b1, 2, "10.0.0.2".parse().expect("ip"));
    let hb1 = lan.add("b1", "10.0.0.2".parse().expect("ip"), n);
    lan.run_until(Duration::from_secs(1), |_| false);
    let sent_at = lan.now - lan.start;
    let _ = lan.with(ha, |n, now| {
        n.send_file(now, bob.id(), format!("seed:7:{SIZE}"), "photo.jpg".into())
    });
    lan.run_until(Duration::from_secs(30), |l| incoming(l, hb1).is_some());
    let (offered_at, _) = lan.hosts[hb1]
        .events
        .iter()
        .find(|(_, e)| matches!(e, Event::IncomingTransfer { .. }))
        .cloned()
        .expect("offered");
    // Announcement lookup, request, answer: three DHT hops; then ICE check and nomination,
    // the TLS 1.3 handshake and the header: round trips.
    let (dht, rtt) = (lan.dht_latency, lan.latency * 2);
    let took = offered_at - sent_at;
    eprintln!(
        "send_file → header at the receiver: {took:?} = 3 × {dht:?} DHT + {:.1} RTT of {rtt:?}",
        (took - dht * 3).as_secs_f64() / rtt.as_secs_f64()
    );
    assert!(took <= dht * 3 + rtt * 4, "{took:?}");
    assert_eq!(
        lan.connections_opened, 1,
        "one TCP connection carries it all"
    );
}

/// Alice (one device) and Bob (the given devices) on the LAN, settled.
fn world(bob_devices: &[&str]) -> (Lan, Account, Vec<usize>, usize) {
    let mut lan = Lan::new(Instant::now());
    let (alice, bob) = (account("alice"), account("bob"));
    let a1 = alice
        .add_device(
            &derive_seed(b"lan", "a1"),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device");
    let n = node(&lan, &alice, &a1, 1, "10.0.0.1".parse().expect("ip"));
    let ha = lan.add("a1", "10.0.0.1".parse().expect("ip"), n);
    let mut hosts = Vec::new();
    for (i, name) in bob_devices.iter().enumerate() {
        let d = bob
            .add_device(
                &derive_seed(b"lan", name),
                Validity::days_from(T0 - 86_400, 365),
            )
            .expect("device");
        let ip: IpAddr = format!("10.0.0.{}", i + 2).parse().expect("ip");
        let n = node(&lan, &bob, &d, 10 + i as u64, ip);
        hosts.push(lan.add(name, ip, n));
    }
    lan.run_until(Duration::from_secs(1), |_| false);
    (lan, bob, hosts, ha)
}

fn send(lan: &mut Lan, from: usize, to: &Account, size: u64) -> TransferId {
    let account = to.id();
    lan.with(from, |n, now| {
        n.send_file(now, account, format!("seed:7:{size}"), "photo.jpg".into())
    })
}

fn reason_of(lan: &Lan, host: usize, t: TransferId) -> Option<String> {
    lan.events(host).iter().rev().find_map(|e| match e {
        Event::Status {
            transfer,
            reason: Some(r),
            ..
        } if *transfer == t => Some(r.to_string()),
        _ => None,
    })
}

#[test]
fn cancel_from_either_side_mid_file_is_heard_on_the_other() {
    for sender_cancels in [true, false] {
        let (mut lan, bob, hosts, ha) = world(&["b1"]);
        let hb = hosts[0];
        let group = send(&mut lan, ha, &bob, 20_000_000);
        lan.run_until(Duration::from_secs(30), |l| incoming(l, hb).is_some());
        let t = incoming(&lan, hb).expect("offered");
        lan.with(hb, |n, now| n.accept(now, t)).expect("accept");
        // Until a few megabytes are across.
        lan.run_until(Duration::from_secs(60), |l| {
            l.events(hb)
                .iter()
                .any(|e| matches!(e, Event::Progress { done, .. } if *done > 2_000_000))
        });
        if sender_cancels {
            lan.with(ha, |n, now| n.cancel(now, group));
        } else {
            lan.with(hb, |n, now| n.cancel(now, t));
        }
        lan.run_until(Duration::from_secs(60), |_| false);
        let (canceller, other) = if sender_cancels { (ha, hb) } else { (hb, ha) };
        assert_eq!(status_of(&lan, canceller, t), Some(Status::ClosedByHost));
        assert_eq!(status_of(&lan, other, t), Some(Status::ClosedByPeer));
        assert_eq!(
            reason_of(&lan, other, t).as_deref(),
            Some("cancelled by the peer (user)")
        );
        assert!(
            lan.hosts[hb].finals.is_empty(),
            "nothing under the final name"
        );
    }
}

#[test]
fn a_dropped_request_is_retried_with_the_same_id_and_a_duplicated_answer_is_ignored() {
    let (mut lan, bob, hosts, ha) = world(&["b1"]);
    let hb = hosts[0];
    // SECURITY: row 80
    lan.drop_puts = 1; // the first put under Bob's peer key is lost
    lan.dht_copies = 2; // every value that does arrive, arrives twice
    let group = send(&mut lan, ha, &bob, 100_000);
    assert!(
        lan.run_until(Duration::from_secs(30), |l| incoming(l, hb).is_some()),
        "the retry got through"
    );
    let t = incoming(&lan, hb).expect("offered");
    lan.with(hb, |n, now| n.accept(now, t)).expect("accept");
    assert!(lan.run_until(Duration::from_secs(30), |l| {
        l.events(ha).iter().any(|e| matches!(e, Event::Aggregate { group: g, status: Status::Finished, .. } if *g == group))
    }));
    assert_eq!(
        lan.hosts[ha].node.ready_connections(),
        1,
        "one connection, not two"
    );
    assert!(
        lan.hosts[ha].node.dropped().replayed >= 1,
        "the duplicate answer was seen and ignored"
    );
    assert!(
        lan.hosts[hb].node.dropped().replayed >= 1,
        "the duplicate request was seen and ignored"
    );
}

#[test]
fn a_device_that_never_answers_ends_unjoinable_after_the_timeouts() {
    let (mut lan, bob, hosts, ha) = world(&["b1", "b2"]);
    lan.power_off(hosts[1]);
    let group = send(&mut lan, ha, &bob, 100_000);
    lan.run_until(Duration::from_secs(30), |l| incoming(l, hosts[0]).is_some());
    let t1 = incoming(&lan, hosts[0]).expect("b1 answers");
    lan.with(hosts[0], |n, now| n.accept(now, t1))
        .expect("accept");
    assert!(lan.run_until(Duration::from_secs(120), |l| {
        l.events(ha).iter().any(|e| {
            matches!(
                e,
                Event::Status {
                    status: Status::UnjoinablePeer,
                    ..
                }
            )
        })
    }));
    let unjoinable = lan.events(ha).into_iter().find_map(|e| match e {
        Event::Status {
            transfer,
            status: Status::UnjoinablePeer,
            reason,
        } => Some((transfer, reason)),
        _ => None,
    });
    let (t2, reason) = unjoinable.expect("b2 is unjoinable");
    assert_ne!(t2, t1);
    assert_eq!(
        reason.map(|r| r.to_string()).as_deref(),
        Some("unreachable: signalling: no answer on the DHT")
    );
    assert!(lan.run_until(Duration::from_secs(10), |l| {
        l.events(ha).iter().any(|e| matches!(e, Event::Aggregate { group: g, status: Status::Finished, .. } if *g == group))
    }), "the optimistic view shows the device that got it");
    assert_eq!(
        lan.hosts[ha].node.known_connections(),
        2,
        "the failed one is kept a while"
    );
    lan.run_until(
        ferry_proto::node::FORGET_FAILED + Duration::from_secs(1),
        |_| false,
    );
    assert_eq!(
        lan.hosts[ha].node.known_connections(),
        1,
        "then forgotten: only the live one stays"
    );
}

#[test]
fn a_second_file_reuses_the_connection() {
    let (mut lan, bob, hosts, ha) = world(&["b1"]);
    let hb = hosts[0];
    for round in 0..2 {
        let group = send(&mut lan, ha, &bob, 50_000);
        assert!(lan.run_until(Duration::from_secs(30), |l| {
            l.events(hb)
                .iter()
                .filter(|e| matches!(e, Event::IncomingTransfer { .. }))
                .count()
                > round
        }));
        let t = lan
            .events(hb)
            .iter()
            .filter_map(|e| match e {
                Event::IncomingTransfer { transfer, .. } => Some(*transfer),
                _ => None,
            })
            .nth(round)
            .expect("offered");
        lan.with(hb, |n, now| n.accept(now, t)).expect("accept");
        assert!(lan.run_until(Duration::from_secs(30), |l| {
            l.events(ha).iter().any(|e| matches!(e, Event::Aggregate { group: g, status: Status::Finished, .. } if *g == group))
        }));
    }
    assert_eq!(
        lan.connections_opened, 1,
        "the second file paid no new connection"
    );
    assert_eq!(lan.hosts[hb].finals.len(), 2, "photo.jpg and photo.jpg (1)");
}

#[test]
fn two_devices_sending_to_each_other_at_once_end_with_one_connection() {
    let mut lan = Lan::new(Instant::now());
    let (alice, bob) = (account("alice"), account("bob"));
    let a1 = alice
        .add_device(
            &derive_seed(b"lan", "a1"),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device");
    let b1 = bob
        .add_device(
            &derive_seed(b"lan", "b1"),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device");
    let n = node(&lan, &alice, &a1, 1, "10.0.0.1".parse().expect("ip"));
    let ha = lan.add("a1", "10.0.0.1".parse().expect("ip"), n);
    let n = node(&lan, &bob, &b1, 2, "10.0.0.2".parse().expect("ip"));
    let hb = lan.add("b1", "10.0.0.2".parse().expect("ip"), n);
    lan.run_until(Duration::from_secs(1), |_| false);
    let (ai, bi) = (alice.id(), bob.id());
    let ga = lan.with(ha, |n, now| {
        n.send_file(now, bi, "seed:1:10000".into(), "a.bin".into())
    });
    let gb = lan.with(hb, |n, now| {
        n.send_file(now, ai, "seed:2:10000".into(), "b.bin".into())
    });
    assert!(
        lan.run_until(Duration::from_secs(30), |l| incoming(l, ha).is_some()
            && incoming(l, hb).is_some())
    );
    let (ta, tb) = (
        incoming(&lan, ha).expect("a"),
        incoming(&lan, hb).expect("b"),
    );
    lan.with(ha, |n, now| n.accept(now, ta)).expect("accept");
    lan.with(hb, |n, now| n.accept(now, tb)).expect("accept");
    let finished = |l: &Lan, h: usize, g: TransferId| {
        l.events(h).iter().any(|e| matches!(e, Event::Aggregate { group, status: Status::Finished, .. } if *group == g))
    };
    assert!(
        lan.run_until(Duration::from_secs(30), |l| finished(l, ha, ga)
            && finished(l, hb, gb))
    );
    assert_eq!(
        (
            lan.hosts[ha].node.ready_connections(),
            lan.hosts[hb].node.ready_connections()
        ),
        (1, 1)
    );
    assert_eq!(lan.connections_opened, 1, "one TCP connection between them");
}

#[test]
fn a_forged_answer_from_another_account_is_dropped() {
    // Mallory, who can see Alice's request key on the DHT, answers in Bob's place.
    let (mut lan, bob, hosts, ha) = world(&["b1"]);
    let mallory = account("mallory");
    let m1 = mallory
        .add_device(
            &derive_seed(b"lan", "m1"),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device");
    lan.power_off(hosts[0]);
    let _ = send(&mut lan, ha, &bob, 1000);
    lan.run_until(Duration::from_secs(1), |_| false);
    let alice_device = lan.hosts[ha].node.device();
    // SECURITY: row 81
    // Mallory cannot read the request (it is sealed to Bob's device), so she guesses the id;
    // even with the right id her answer is refused: it is not Bob's device that signed it.
    let forged = ferry_proto::signal::PeerConnection {
        id: 1,
        is_answer: true,
        ice: String::new(),
        addresses: vec![],
        seal: None,
    };
    let alice_recipient = {
        let a = account("alice");
        a.add_device(
            &derive_seed(b"lan", "a1"),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device")
        .recipient()
    };
    assert_eq!(alice_recipient.device, alice_device);
    let sealed = ferry_proto::signal::seal(
        &m1,
        &alice_recipient,
        &forged.encode(),
        &mut ferry_proto::rng::SeededRng::new(5),
    )
    .expect("seal");
    let key = ferry_proto::signal::peer_key(&alice_device);
    lan.with(ha, |n, now| {
        use ferry_proto::io::Endpoint as _;
        n.handle_input(
            now,
            ferry_proto::io::Input::DhtValue {
                key,
                value: bytes::Bytes::from(sealed),
            },
        )
    })
    .expect("input");
    assert_eq!(
        lan.hosts[ha].node.dropped().unexpected,
        1,
        "an answer to nothing we asked Mallory is dropped"
    );
    assert_eq!(lan.hosts[ha].node.ready_connections(), 0);
}
