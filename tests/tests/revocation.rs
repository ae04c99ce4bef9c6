//! An account's revocation list reaches its contacts: published beside its announcements,
//! it makes a sender leave a revoked device out (a stolen laptop that still runs and still
//! announces itself), while the account's other devices get the file.

use std::net::IpAddr;
use std::time::Duration;

use ferry_proto::io::Event;
use ferry_proto::node::Node;
use ferry_proto::tls::{Account, Device, Revocations};
use ferry_proto::transfer::{Status, TransferId};
use ferry_sim::{HostId, HostSpec, LinkSpec, World, WorldBuilder};
use ferry_tests::identity::{Seeds, T0, node_config};

const SEEDS: Seeds = Seeds::new(b"revocation", b"revocation-device");

fn host(
    b: &mut WorldBuilder,
    name: &str,
    account: &Account,
    device: &Device,
    last: u8,
    revocations: Revocations,
) -> HostId {
    let (epoch, internet) = (b.epoch(), b.internet());
    let ip = IpAddr::from([198, 51, 100, last]);
    let mut config = node_config(epoch, account, device, ip, u64::from(last));
    config.revocations = revocations;
    b.host(
        HostSpec::new(name, internet)
            .v4([198, 51, 100, last])
            .link(LinkSpec::latency(Duration::from_millis(10))),
        Node::new(epoch, config),
    )
}

fn offered(world: &World, host: HostId) -> Vec<TransferId> {
    world
        .events::<Event>(host)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::IncomingTransfer { transfer, .. } => Some(transfer),
            _ => None,
        })
        .collect()
}

#[test]
fn a_contact_leaves_out_a_device_its_account_revoked() {
    let mut b = World::builder(31);
    let (alice, bob) = (SEEDS.account("alice"), SEEDS.account("bob"));
    let (a1, b1, b2) = (
        SEEDS.device(&alice, "a1"),
        SEEDS.device(&bob, "b1"),
        SEEDS.device(&bob, "b2"),
    );
    let mut bobs = Revocations::new();
    bobs.add(bob.revoke(&[b2.id()], T0, 1).expect("revoke"));
    // SECURITY: row 112
    // The stolen b2 announces itself first, and knows nothing of its revocation.
    let ha = host(&mut b, "a1", &alice, &a1, 10, Revocations::new());
    let h2 = host(&mut b, "b2", &bob, &b2, 22, Revocations::new());
    let h1 = host(&mut b, "b1", &bob, &b1, 21, bobs);
    let mut world = b.build().expect("world");
    world.run_for(Duration::from_secs(2));
    let group = world
        .with_endpoint(ha, |n: &mut Node, now| {
            n.send_file(now, bob.id(), "seed:5:100000".into(), "report.bin".into())
        })
        .expect("alice");
    let mut accepted = false;
    let mut end = None;
    for _ in 0..600 {
        world.run_for(Duration::from_millis(100));
        if let (false, Some(t)) = (accepted, offered(&world, h1).first().copied()) {
            world
                .with_endpoint(h1, |n: &mut Node, now| n.accept(now, t))
                .expect("b1")
                .expect("accept");
            accepted = true;
        }
        end = world
            .events::<Event>(ha)
            .into_iter()
            .find_map(|(_, e)| match e {
                Event::Aggregate {
                    group: g, status, ..
                } if g == group && status.is_final() => Some(status),
                _ => None,
            });
        if end.is_some() {
            break;
        }
    }
    assert_eq!(end, Some(Status::Finished), "b1 got the file");
    assert!(
        offered(&world, h2).is_empty(),
        "the revoked b2 is never offered it"
    );
    let unreachable: Vec<String> = world
        .events::<Event>(ha)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::PeerUnreachable { device, reason } if device == b2.id() => Some(reason),
            _ => None,
        })
        .collect();
    let b2_connections = world.endpoint::<Node>(h2).expect("b2").ready_connections();
    assert_eq!(b2_connections, 0, "no connection to the revoked device");
    eprintln!(
        "revoked b2: reached by alice {} time(s) ({unreachable:?})",
        unreachable.len()
    );
}
