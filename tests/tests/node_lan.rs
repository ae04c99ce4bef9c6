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
