//! A run is a function of its seed: the same seed gives the same trace, byte for byte.

mod common;

use bytes::Bytes;
use common::*;
use ferry_proto::io::{ConnId, DhtKey};
use ferry_sim::{
    DhtSpec, Fault, HostSpec, LinkOf, LinkSpec, Nat, Probe, RouterKind, Step, World, content,
};

/// A busy world: NATs, jitter, bandwidth, a lossy duplicating DHT, and a link flap.
fn run(seed: u64) -> (String, ferry_sim::Stats) {
    let mut b = World::builder(seed);
    let epoch = b.epoch();
    b.dht(DhtSpec {
        loss: 0.2,
        duplicate: 0.3,
        jitter: ms(300),
        ..DhtSpec::default()
    });
    let (home, _) = site(
        &mut b,
        "home",
        [203, 0, 113, 1],
        RouterKind::Nat(Nat::port_restricted_cone()),
    );
    let internet = b.internet();
    let jittery = LinkSpec::latency(ms(8))
        .with_jitter(ms(20))
        .with_bandwidth(500_000);
    b.host(
        HostSpec::new("s", internet)
            .v4([198, 51, 100, 7])
            .link(jittery),
        Probe::new(epoch).at(ms(0), listen(443)).echo(),
    );
    let key = DhtKey([3; 20]);
    let mut hosts = Vec::new();
    for i in 0..4u8 {
        let mut p = Probe::new(epoch).at(ms(0), Step::DhtListen(key));
        for n in 1..=3u32 {
            let at = ms(u64::from(i) * 37 + u64::from(n) * 400);
            p = p
                .at(at, Step::connect(n, sa("198.51.100.7:443")))
                .at(
                    at + ms(150),
                    Step::Send {
                        conn: ConnId::Connect(n),
                        data: Bytes::from(content::range(u64::from(n), 0, 40_000)),
                    },
                )
                .at(at + ms(150), Step::HalfClose(ConnId::Connect(n)))
                .at(
                    at + ms(10),
                    Step::DhtPut {
                        key,
                        value: Bytes::from(vec![i, n as u8]),
                    },
                );
        }
        hosts.push(
            b.host(
                HostSpec::new(&format!("h{i}"), home)
                    .v4([192, 168, 1, 10 + i])
                    .link(jittery),
                p,
            ),
        );
    }
    b.fault(ms(900), Fault::LinkDown(LinkOf::Host(hosts[1])))
        .fault(ms(1700), Fault::LinkUp(LinkOf::Host(hosts[1])));
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(30));
    no_violations(&world);
    (world.trace(), world.stats())
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let (t1, s1) = run(42);
    let (t2, s2) = run(42);
    assert_eq!(s1, s2);
    assert!(t1 == t2, "traces differ:\n{t1}\n----\n{t2}");
    assert!(t1.lines().count() > 50, "a busy trace:\n{t1}");
}

#[test]
fn another_seed_gives_another_trace() {
    assert_ne!(run(1).0, run(2).0);
}
