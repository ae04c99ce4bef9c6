//! The DHT model: latency, loss, duplication, reordering, expiry.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use ferry_proto::io::DhtKey;
use ferry_sim::{DhtSpec, Probe, Step, World};

const KEY: DhtKey = DhtKey([7; 20]);

/// Alice puts `values` (one every 10 ms from 1 s); bob listens from the start.
fn run(
    seed: u64,
    spec: DhtSpec,
    values: &[&'static [u8]],
) -> (World, ferry_sim::HostId, ferry_sim::HostId) {
    let mut b = World::builder(seed);
    let epoch = b.epoch();
    b.dht(spec);
    let mut alice = Probe::new(epoch);
    for (i, v) in values.iter().enumerate() {
        alice = alice.at(
            secs(1) + ms(10 * i as u64),
            Step::DhtPut {
                key: KEY,
                value: Bytes::from_static(v),
            },
        );
    }
    let a = public(&mut b, "alice", [198, 51, 100, 8], alice);
    let bob = public(
        &mut b,
        "bob",
        [198, 51, 100, 9],
        Probe::new(epoch).at(ms(0), Step::DhtListen(KEY)),
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(5));
    (world, a, bob)
}

fn got(world: &World, h: ferry_sim::HostId) -> Vec<Bytes> {
    probe(world, h)
        .dht_values()
        .iter()
        .map(|(_, _, v)| v.clone())
        .collect()
}

#[test]
fn values_arrive_after_the_latency_and_puts_are_confirmed() {
    let spec = DhtSpec {
        latency: ms(100),
        jitter: Duration::ZERO,
        ..DhtSpec::default()
    };
    let (world, a, bob) = run(1, spec, &[b"hello"]);
    let values = probe(&world, bob).dht_values();
    assert_eq!(values.len(), 1);
    assert_eq!(
        values[0].0,
        secs(1) + ms(200),
        "put to store, store to listener"
    );
    assert_eq!(probe(&world, a).puts(), &[(KEY, true)]);
    assert_eq!(world.dht_values(KEY), vec![Bytes::from_static(b"hello")]);
    no_violations(&world);
}

#[test]
fn loss_fails_puts_and_drops_deliveries() {
    let spec = DhtSpec {
        loss: 1.0,
        ..DhtSpec::default()
    };
    let (world, a, bob) = run(2, spec, &[b"x", b"y"]);
    assert!(got(&world, bob).is_empty());
    assert_eq!(probe(&world, a).puts(), &[(KEY, false), (KEY, false)]);
    // Partial loss: over many values some get through, some do not.
    let spec = DhtSpec {
        loss: 0.5,
        ..DhtSpec::default()
    };
    let values: Vec<&'static [u8]> =
        vec![b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"];
    let (world, _, bob) = run(3, spec, &values);
    let n = got(&world, bob).len();
    assert!(n > 0 && n < 10, "{n} of 10 arrived");
}

#[test]
fn duplication_delivers_twice() {
    let spec = DhtSpec {
        duplicate: 1.0,
        ..DhtSpec::default()
    };
    let (world, _, bob) = run(4, spec, &[b"a", b"b"]);
    let mut values = got(&world, bob);
    values.sort();
    assert_eq!(
        values,
        [&b"a"[..], b"a", b"b", b"b"].map(Bytes::from_static)
    );
}

#[test]
fn jitter_reorders_values_for_some_seeds() {
    let spec = DhtSpec {
        latency: ms(50),
        jitter: ms(500),
        ..DhtSpec::default()
    };
    let reordered = (0..40).filter(|seed| {
        let (world, _, bob) = run(*seed, spec, &[b"first", b"second"]);
        got(&world, bob) == [Bytes::from_static(b"second"), Bytes::from_static(b"first")]
    });
    assert!(reordered.count() > 0);
}

#[test]
fn values_expire_and_late_listeners_get_what_is_stored() {
    let mut b = World::builder(5);
    let epoch = b.epoch();
    b.dht(DhtSpec {
        ttl: secs(10),
        ..DhtSpec::default()
    });
    public(
        &mut b,
        "alice",
        [198, 51, 100, 8],
        Probe::new(epoch).at(
            ms(0),
            Step::DhtPut {
                key: KEY,
                value: Bytes::from_static(b"v"),
            },
        ),
    );
    let early = public(
        &mut b,
        "early",
        [198, 51, 100, 9],
        Probe::new(epoch).at(secs(5), Step::DhtListen(KEY)),
    );
    let late = public(
        &mut b,
        "late",
        [198, 51, 100, 10],
        Probe::new(epoch).at(secs(20), Step::DhtListen(KEY)),
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(30));
    assert_eq!(
        got(&world, early),
        [Bytes::from_static(b"v")],
        "listening gets what is there"
    );
    assert!(got(&world, late).is_empty(), "expired");
    assert!(world.dht_values(KEY).is_empty());
}

#[test]
fn a_cancelled_listen_hears_nothing_more() {
    let mut b = World::builder(6);
    let epoch = b.epoch();
    public(
        &mut b,
        "alice",
        [198, 51, 100, 8],
        Probe::new(epoch).at(
            secs(2),
            Step::DhtPut {
                key: KEY,
                value: Bytes::from_static(b"v"),
            },
        ),
    );
    let bob = public(
        &mut b,
        "bob",
        [198, 51, 100, 9],
        Probe::new(epoch)
            .at(ms(0), Step::DhtListen(KEY))
            .at(secs(1), Step::DhtCancel(KEY)),
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(5));
    assert!(got(&world, bob).is_empty());
}
