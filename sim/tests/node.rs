//! Whole Ferry nodes on the simulator: DHT signalling, ICE over TCP through a NAT, TLS 1.3,
//! the transfer, and the file verified and renamed on the receiving side.

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::*;
use ferry_proto::io::Event;
use ferry_proto::node::{Node, NodeConfig};
use ferry_proto::tls::{Account, Device, UnixAnchor, Validity, derive_seed};
use ferry_proto::transfer::{Status, TransferId};
use ferry_proto::turn::TurnConfig;
use ferry_sim::turn_server::{TurnServer, TurnServerConfig};
use ferry_sim::{HostId, HostSpec, LinkSpec, Nat, RouterKind, World};

const T0: u64 = 1_795_651_200;
const SIZE: u64 = 300_000;

fn account(name: &str) -> Account {
    Account::from_seed(
        &derive_seed(b"sim", name),
        Validity::days_from(T0 - 86_400, 365),
    )
    .expect("account")
}

fn device(account: &Account, name: &str) -> Device {
    account
        .add_device(
            &derive_seed(b"sim", name),
            Validity::days_from(T0 - 86_400, 365),
        )
        .expect("device")
}

fn node(epoch: Instant, account: &Account, device: &Device, seed: u64, ip: IpAddr) -> Node {
    node_with_turn(epoch, account, device, seed, ip, Vec::new())
}

fn node_with_turn(
    epoch: Instant,
    account: &Account,
    device: &Device,
    seed: u64,
    ip: IpAddr,
    turn: Vec<TurnConfig>,
) -> Node {
    let anchor = UnixAnchor {
        instant: epoch,
        unix: Duration::from_secs(T0),
    };
    let announce = account.announce(device).expect("announce");
    let mut config = NodeConfig::new(device.clone(), announce, vec![ip], seed, anchor);
    config.turn = turn;
    Node::new(epoch, config)
}

fn incoming(world: &World, host: HostId) -> Option<TransferId> {
    world
        .events::<Event>(host)
        .iter()
        .find_map(|(_, e)| match e {
            Event::IncomingTransfer { transfer, .. } => Some(*transfer),
            _ => None,
        })
}

/// Waits up to `within` (virtual) for `host` to be offered a file, accepts it, and returns
/// its transfer id.
fn accept_the_offer(world: &mut World, host: HostId, within: Duration) -> TransferId {
    let mut t = None;
    while t.is_none() && world.now() < within {
        world.run_for(ms(100));
        t = incoming(world, host);
    }
    let t = t.unwrap_or_else(|| panic!("bob hears of the file\n{}", world.trace()));
    world
        .with_endpoint(host, |n: &mut Node, now| n.accept(now, t))
        .expect("a node")
        .expect("accept");
    t
}

#[test]
fn a_node_behind_a_nat_sends_a_file_to_a_public_node() {
    let mut b = World::builder(31);
    let epoch = b.epoch();
    let (home, _) = site(
        &mut b,
        "home",
        [203, 0, 113, 1],
        RouterKind::Nat(Nat::port_restricted_cone()),
    );
    let (alice, bob) = (account("alice"), account("bob"));
    let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
    let link = LinkSpec::latency(ms(10)).with_bandwidth(5_000_000);
    let a_ip: IpAddr = "192.168.1.2".parse().expect("ip");
    let b_ip: IpAddr = "198.51.100.7".parse().expect("ip");
    let ha = b.host(
        HostSpec::new("a1", home).v4([192, 168, 1, 2]).link(link),
        node(epoch, &alice, &a1, 1, a_ip),
    );
    let internet = b.internet();
    let hb = b.host(
        HostSpec::new("b1", internet)
            .v4([198, 51, 100, 7])
            .link(link),
        node(epoch, &bob, &b1, 2, b_ip),
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(1));
    world
        .with_endpoint(ha, |n: &mut Node, now| {
            n.send_file(now, bob.id(), format!("seed:7:{SIZE}"), "photo.jpg".into())
        })
        .expect("a node");
    let t = accept_the_offer(&mut world, hb, secs(30));
    world.run_for(secs(30));
    no_violations(&world);
    let digest = ferry_sim::files::Source {
        size: SIZE,
        seed: 7,
    }
    .digest();
    let stored = world
        .received_file(hb, "photo.jpg")
        .unwrap_or_else(|| panic!("committed\n{}", world.trace()));
    assert_eq!((stored.len, stored.digest()), (SIZE, digest));
    let finished = world.events::<Event>(hb).iter().any(|(_, e)| matches!(e, Event::Status { transfer, status: Status::Finished, .. } if *transfer == t));
    assert!(finished, "{}", world.trace());
    if std::env::var_os("FERRY_PRINT_TRACE").is_some() {
        eprintln!("{}", world.trace());
    }
}

#[test]
fn two_nodes_behind_symmetric_nats_meet_through_the_turn_server() {
    let mut b = World::builder(32);
    let epoch = b.epoch();
    let (home_a, _) = site(
        &mut b,
        "nat-a",
        [203, 0, 113, 1],
        RouterKind::Nat(Nat::symmetric()),
    );
    let (home_b, _) = site(
        &mut b,
        "nat-b",
        [203, 0, 113, 2],
        RouterKind::Nat(Nat::symmetric()),
    );
    let turn_addr = sa("198.51.100.3:3478");
    let server = TurnServer::new(TurnServerConfig::new(turn_addr, "ferry", "secret", "sim"));
    let internet = b.internet();
    b.host(
        HostSpec::new("turn", internet).v4([198, 51, 100, 3]),
        server,
    );
    let (alice, bob) = (account("alice"), account("bob"));
    let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
    let turn = || vec![TurnConfig::new(turn_addr, "ferry", "secret")];
    let ip: IpAddr = "192.168.1.2".parse().expect("ip");
    let ha = b.host(
        HostSpec::new("a1", home_a).v4([192, 168, 1, 2]),
        node_with_turn(epoch, &alice, &a1, 1, ip, turn()),
    );
    let hb = b.host(
        HostSpec::new("b1", home_b).v4([192, 168, 1, 2]),
        node_with_turn(epoch, &bob, &b1, 2, ip, turn()),
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(2));
    world
        .with_endpoint(ha, |n: &mut Node, now| {
            n.send_file(
                now,
                bob.id(),
                format!("seed:8:{SIZE}"),
                "relayed.bin".into(),
            )
        })
        .expect("a node");
    accept_the_offer(&mut world, hb, secs(60));
    world.run_for(secs(60));
    no_violations(&world);
    let digest = ferry_sim::files::Source {
        size: SIZE,
        seed: 8,
    }
    .digest();
    let stored = world
        .received_file(hb, "relayed.bin")
        .unwrap_or_else(|| panic!("committed\n{}", world.trace()));
    assert_eq!((stored.len, stored.digest()), (SIZE, digest));
    if std::env::var_os("FERRY_PRINT_TRACE").is_some() {
        eprintln!("{}", world.trace());
    }
}

/// Bob's process crashes in the middle of a file ([`World::crash_and_restart`]): Alice hears
/// a reset and her transfer ends; Bob's host keeps the partial data and no file open; the new
/// process listens and announces again, and Alice's send under the same ids (her records)
/// resumes from what Bob kept, the prefix verified, and the file arrives whole.
#[test]
fn a_receiver_that_crashes_mid_file_keeps_its_partial_data_and_the_send_again_resumes() {
    const BIG: u64 = 4_000_000;
    let mut b = World::builder(33);
    let epoch = b.epoch();
    let internet = b.internet();
    let (alice, bob) = (account("alice"), account("bob"));
    let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
    let link = LinkSpec::latency(ms(10)).with_bandwidth(1_000_000);
    let a_ip: IpAddr = "198.51.100.6".parse().expect("ip");
    let b_ip: IpAddr = "198.51.100.7".parse().expect("ip");
    let ha = b.host(
        HostSpec::new("a1", internet)
            .v4([198, 51, 100, 6])
            .link(link),
        node(epoch, &alice, &a1, 1, a_ip),
    );
    let hb = b.host(
        HostSpec::new("b1", internet)
            .v4([198, 51, 100, 7])
            .link(link),
        node(epoch, &bob, &b1, 2, b_ip),
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(1));
    let source = format!("seed:9:{BIG}");
    let group = world
        .with_endpoint(ha, |n: &mut Node, now| {
            n.send_file(now, bob.id(), source.clone(), "big.bin".into())
        })
        .expect("a node");
    let t = accept_the_offer(&mut world, hb, secs(30));
    // A second in: about a quarter of the file is on Bob's disk.
    world.run_for(secs(1));
    assert_eq!(world.partial_files(hb), 1);
    assert!(world.open_files(hb) > 0, "Bob is writing");
    let bob_again = {
        let anchor = UnixAnchor {
            instant: epoch,
            unix: Duration::from_secs(T0),
        };
        let config = NodeConfig::new(
            b1.clone(),
            bob.announce(&b1).expect("a"),
            vec![b_ip],
            3,
            anchor,
        );
        Node::new(world.instant(), config)
    };
    // SECURITY: row 136
    world.crash_and_restart(hb, bob_again);
    assert_eq!(world.open_files(hb), 0, "its files closed with it");
    assert_eq!(world.partial_files(hb), 1, "what it wrote is kept");
    world.run_for(secs(5));
    let ended = world.events::<Event>(ha).iter().find_map(|(_, e)| match e {
        Event::Aggregate {
            group: g, status, ..
        } if *g == group && status.is_final() => Some(*status),
        _ => None,
    });
    assert!(
        ended.is_some_and(|s| s != Status::Finished),
        "Alice's send ended with the crash: {ended:?}\n{}",
        world.trace()
    );

    // Alice sends again under the ids of her records, once her failed connection is
    // forgotten; Bob's new process takes it up where the old one stopped.
    world.run_for(secs(70));
    let again_from = world.now();
    let devices = [(b1.id(), t)].into_iter().collect();
    world
        .with_endpoint(ha, |n: &mut Node, now| {
            n.send_file_again(
                now,
                bob.id(),
                source.clone(),
                "big.bin".into(),
                group,
                devices,
            )
        })
        .expect("a node");
    let mut offered = None;
    while offered.is_none() && world.now() < again_from + secs(30) {
        world.run_for(ms(100));
        offered = world
            .events::<Event>(hb)
            .iter()
            .find_map(|(at, e)| match e {
                Event::IncomingTransfer { transfer, .. } if *at >= again_from => Some(*transfer),
                _ => None,
            });
    }
    assert_eq!(offered, Some(t), "the same id\n{}", world.trace());
    world
        .with_endpoint(hb, |n: &mut Node, now| n.accept(now, t))
        .expect("a node")
        .expect("accept");
    world.run_for(secs(30));
    no_violations(&world);
    let resumed = world
        .events::<Event>(hb)
        .iter()
        .find_map(|(at, e)| match e {
            Event::Resuming {
                offset, verified, ..
            } if *at >= again_from => Some((*offset, *verified)),
            _ => None,
        });
    let (offset, verified) = resumed.unwrap_or_else(|| panic!("resumed\n{}", world.trace()));
    assert!(
        offset > 0 && offset < BIG && verified,
        "{offset} {verified}"
    );
    let digest = ferry_sim::files::Source { size: BIG, seed: 9 }.digest();
    let stored = world
        .received_file(hb, "big.bin")
        .unwrap_or_else(|| panic!("committed\n{}", world.trace()));
    assert_eq!((stored.len, stored.digest()), (BIG, digest));
}
