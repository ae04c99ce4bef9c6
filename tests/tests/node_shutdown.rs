//! `Node::shutdown` on the simulator, where every allocation and connection can be counted:
//! the running transfer is cancelled (the peer hears CANCEL), the TURN allocation is deleted,
//! every connection of the node closes, and the node takes no new work.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use ferry_proto::io::Event;
use ferry_proto::node::{Node, NodeConfig};
use ferry_proto::tls::{Account, Device, UnixAnchor, Validity, derive_seed};
use ferry_proto::transfer::{Reason, Status, TransferId};
use ferry_proto::turn::TurnConfig;
use ferry_sim::turn_server::{TurnServer, TurnServerConfig};
use ferry_sim::{HostId, HostSpec, LinkSpec, World};

const T0: u64 = 1_795_651_200;

fn identity(name: &str) -> (Account, Device) {
    let validity = Validity::days_from(T0 - 86_400, 365);
    let account = Account::from_seed(&derive_seed(b"shutdown", name), validity).expect("account");
    let device = account
        .add_device(&derive_seed(b"shutdown-device", name), validity)
        .expect("device");
    (account, device)
}

fn node(epoch: Instant, account: &Account, device: &Device, ip: IpAddr, turn: SocketAddr) -> Node {
    let anchor = UnixAnchor {
        instant: epoch,
        unix: Duration::from_secs(T0),
    };
    let announcement = account.announce(device).expect("announce");
    let mut config = NodeConfig::new(device.clone(), announcement, vec![ip], 7, anchor);
    config.turn = vec![TurnConfig::new(turn, "ferry", "secret")];
    Node::new(epoch, config)
}

fn events(world: &World, host: HostId) -> Vec<Event> {
    world
        .events::<Event>(host)
        .into_iter()
        .map(|(_, e)| e)
        .collect()
}

fn ended(world: &World, host: HostId, transfer: TransferId) -> Option<(Status, Option<Reason>)> {
    events(world, host).into_iter().find_map(|e| match e {
        Event::Status {
            transfer: t,
            status,
            reason,
        } if t == transfer && status.is_final() => Some((status, reason)),
        _ => None,
    })
}

fn allocations(world: &World, server: HostId) -> usize {
    world
        .endpoint::<TurnServer>(server)
        .expect("the TURN server")
        .allocations()
}

#[test]
fn shutdown_cancels_closes_and_deletes_the_allocation() {
    let mut b = World::builder(41);
    let epoch = b.epoch();
    let internet = b.internet();
    let turn: SocketAddr = "198.51.100.3:3478".parse().expect("addr");
    let server = b.host(
        HostSpec::new("turn", internet).v4([198, 51, 100, 3]),
        TurnServer::new(TurnServerConfig::new(turn, "ferry", "secret", "sim")),
    );
    let (alice, a1) = identity("alice");
    let (bob, b1) = identity("bob");
    let link = LinkSpec::latency(Duration::from_millis(5)).with_bandwidth(2_000_000);
    let ha = b.host(
        HostSpec::new("a1", internet)
            .v4([198, 51, 100, 10])
            .link(link),
        node(
            epoch,
            &alice,
            &a1,
            "198.51.100.10".parse().expect("ip"),
            turn,
        ),
    );
    let hb = b.host(
        HostSpec::new("b1", internet)
            .v4([198, 51, 100, 11])
            .link(link),
        node(epoch, &bob, &b1, "198.51.100.11".parse().expect("ip"), turn),
    );
    let mut world = b.build().expect("world");
    world.run_for(Duration::from_secs(2));
    assert_eq!(allocations(&world, server), 2, "both nodes allocated");

    let group = world
        .with_endpoint(ha, |n: &mut Node, now| {
            n.send_file(now, bob.id(), "seed:3:50000000".into(), "big.bin".into())
        })
        .expect("a node");
    let mut offer = None;
    while offer.is_none() && world.now() < Duration::from_secs(30) {
        world.run_for(Duration::from_millis(50));
        offer = events(&world, hb).into_iter().find_map(|e| match e {
            Event::IncomingTransfer { transfer, .. } => Some(transfer),
            _ => None,
        });
    }
    let offer = offer.expect("bob is offered the file");
    world
        .with_endpoint(hb, |n: &mut Node, now| n.accept(now, offer))
        .expect("a node")
        .expect("accept");
    world.run_for(Duration::from_secs(1));
    let sub = events(&world, ha)
        .into_iter()
        .find_map(|e| match e {
            Event::SubTransfer { transfer, .. } => Some(transfer),
            _ => None,
        })
        .expect("a sub-transfer");
    assert_eq!(ended(&world, hb, offer), None, "still in flight");
    assert_eq!(
        world.live_connections(),
        3,
        "two TURN control connections and alice's to bob"
    );

    world
        .with_endpoint(ha, |n: &mut Node, now| n.shutdown(now))
        .expect("a node");
    world.run_for(Duration::from_secs(5));

    assert!(
        events(&world, ha).contains(&Event::ShutDown),
        "the shutdown completes"
    );
    assert_eq!(
        ended(&world, ha, sub),
        Some((Status::ClosedByHost, Some(Reason::Cancelled)))
    );
    let (status, reason) = ended(&world, hb, offer).expect("bob's side ends");
    assert_eq!(status, Status::ClosedByPeer);
    assert!(
        matches!(reason, Some(Reason::PeerCancelled(_))),
        "bob hears a cancel, not a lost connection: {reason:?}"
    );
    assert_eq!(
        allocations(&world, server),
        1,
        "only bob's allocation is left"
    );
    // Alice closed both of hers (to bob, and her TURN control connection, which the server
    // closes in turn); what is left is bob's control connection.
    assert_eq!(world.live_connections(), 1, "alice's connections are gone");
    assert!(world.violations().is_empty(), "{:?}", world.violations());

    // No new work after a shutdown.
    let late = world
        .with_endpoint(ha, |n: &mut Node, now| {
            n.send_file(now, bob.id(), "seed:3:10".into(), "late.bin".into())
        })
        .expect("a node");
    assert!(events(&world, ha).contains(&Event::Aggregate {
        group: late,
        status: Status::ClosedByHost,
        done: 0,
        total: 0,
    }));
    let _ = group;
}
