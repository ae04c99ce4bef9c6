//! Faults: links down and up, partitions and healing, resets, stalls, interception.

mod common;

use bytes::Bytes;
use common::*;
use ferry_proto::io::{ConnId, ConnectError};
use ferry_sim::probe::ConnState;
use ferry_sim::{Fault, LinkOf, Probe, Step, World, content};

const C1: ConnId = ConnId::Connect(1);
const A1: ConnId = ConnId::Accepted(1);

/// A server and alice, both public; alice connects at 1 ms and sends `len` bytes at 100 ms.
fn pair(
    seed: u64,
    len: usize,
) -> (
    ferry_sim::WorldBuilder,
    ferry_sim::HostId,
    ferry_sim::HostId,
) {
    let mut b = World::builder(seed);
    let epoch = b.epoch();
    let s = public(
        &mut b,
        "s",
        [198, 51, 100, 7],
        Probe::new(epoch).at(ms(0), listen(443)),
    );
    let alice = Probe::new(epoch)
        .at(ms(1), Step::connect(1, sa("198.51.100.7:443")))
        .at(
            ms(100),
            Step::Send {
                conn: C1,
                data: Bytes::from(content::range(3, 0, len)),
            },
        );
    let a = public(&mut b, "alice", [198, 51, 100, 8], alice);
    (b, s, a)
}

#[test]
fn a_link_down_holds_the_stream_and_up_lets_it_finish() {
    let (mut b, s, a) = pair(1, 100_000);
    b.fault(ms(50), Fault::LinkDown(LinkOf::Host(a)))
        .fault(secs(3), Fault::LinkUp(LinkOf::Host(a)));
    let mut world = b.trace().build().expect("world");
    world.run_until(secs(2));
    assert!(
        probe(&world, s).received(A1).is_empty(),
        "nothing crosses a dead link"
    );
    assert_eq!(
        probe(&world, a).conn(C1).expect("c1").writable,
        0,
        "so no credit comes back"
    );
    world.run_until(secs(4));
    assert_eq!(
        probe(&world, s).received(A1).len(),
        100_000,
        "{}",
        world.trace()
    );
    assert_eq!(
        probe(&world, a).state(C1),
        Some(ConnState::Open),
        "the connection survived"
    );
    assert!(world.trace().contains("link alice down"));
    no_violations(&world);
}

#[test]
fn a_link_down_makes_new_connects_time_out() {
    let (mut b, _, a) = pair(2, 10);
    b.fault(ms(0), Fault::LinkDown(LinkOf::Host(a)));
    let mut world = b.build().expect("world");
    world.run_for(secs(11));
    assert_eq!(
        probe(&world, a).state(C1),
        Some(ConnState::Failed(ConnectError::TimedOut))
    );
}

#[test]
fn a_partition_holds_traffic_and_healing_releases_it() {
    let (mut b, s, a) = pair(3, 50_000);
    b.fault(
        ms(50),
        Fault::Partition {
            a: vec![a],
            b: vec![s],
        },
    )
    .fault(secs(2), Fault::Heal);
    let mut world = b.trace().build().expect("world");
    world.run_until(secs(1));
    assert!(probe(&world, s).received(A1).is_empty());
    world.run_until(secs(3));
    assert_eq!(probe(&world, s).received(A1).len(), 50_000);
    no_violations(&world);
}

#[test]
fn a_partition_before_the_handshake_loses_the_syn() {
    let (mut b, s, a) = pair(4, 10);
    b.fault(
        ms(0),
        Fault::Partition {
            a: vec![s],
            b: vec![a],
        },
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(11));
    assert_eq!(
        probe(&world, a).state(C1),
        Some(ConnState::Failed(ConnectError::TimedOut))
    );
    assert!(probe(&world, s).accepted().is_empty());
}

#[test]
fn a_connection_reset_fault_tells_both_ends_at_once() {
    let (mut b, s, a) = pair(5, 10);
    b.fault(
        ms(500),
        Fault::ResetConnections {
            host: s,
            port: Some(443),
        },
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(1));
    assert_eq!(probe(&world, a).state(C1), Some(ConnState::Reset));
    assert_eq!(probe(&world, s).state(A1), Some(ConnState::Reset));
    assert_eq!(
        probe(&world, a).conn(C1).and_then(|c| c.ended_at),
        Some(ms(500))
    );
    assert_eq!(world.live_connections(), 0);
    no_violations(&world);
}

#[test]
fn a_stall_moves_nothing_and_raises_no_error_until_it_ends() {
    let (mut b, s, a) = pair(6, 30_000);
    b.fault(
        ms(50),
        Fault::Stall {
            host: a,
            port: None,
        },
    )
    .fault(
        secs(30),
        Fault::Unstall {
            host: a,
            port: None,
        },
    );
    let mut world = b.build().expect("world");
    world.run_until(secs(29));
    assert!(probe(&world, s).received(A1).is_empty());
    assert_eq!(
        probe(&world, a).state(C1),
        Some(ConnState::Open),
        "a stall is silent"
    );
    world.run_until(secs(31));
    assert_eq!(probe(&world, s).received(A1).len(), 30_000);
    no_violations(&world);
}

#[test]
fn an_interceptor_answers_in_the_targets_place_and_can_relay_to_it() {
    let mut b = World::builder(7);
    let epoch = b.epoch();
    let s = public(
        &mut b,
        "s",
        [198, 51, 100, 7],
        Probe::new(epoch).at(ms(0), listen(443)),
    );
    // Mallory listens on the target's port and opens her own connection to the target.
    let m = public(
        &mut b,
        "mallory",
        [198, 51, 100, 66],
        Probe::new(epoch)
            .at(ms(0), listen(443))
            .at(ms(200), Step::connect(1, sa("198.51.100.7:443"))),
    );
    let alice = Probe::new(epoch)
        .at(ms(100), Step::connect(1, sa("198.51.100.7:443")))
        .at(
            ms(300),
            Step::Send {
                conn: C1,
                data: Bytes::from_static(b"secret"),
            },
        );
    let a = public(&mut b, "alice", [198, 51, 100, 8], alice);
    b.fault(
        ms(0),
        Fault::Intercept {
            target: sa("198.51.100.7:443"),
            by: m,
        },
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(1));
    no_violations(&world);
    let (pm, ps, pa) = (probe(&world, m), probe(&world, s), probe(&world, a));
    assert_eq!(pa.state(C1), Some(ConnState::Open));
    assert_eq!(pm.received(A1), b"secret", "{}", world.trace());
    assert_eq!(
        pm.state(C1),
        Some(ConnState::Open),
        "her own connection is not intercepted"
    );
    assert_eq!(ps.accepted().len(), 1, "the target only sees mallory");
    assert_eq!(
        ps.conn(A1).and_then(|c| c.addr).map(|a| a.ip().to_string()),
        Some("198.51.100.66".to_owned())
    );
}

#[test]
fn a_nat_that_loses_its_mappings_blackholes_old_connections_and_maps_new_ones_anew() {
    use ferry_sim::{HostSpec, LinkSpec, Nat, RouterKind};
    let mut b = World::builder(9);
    let epoch = b.epoch();
    let s = public(
        &mut b,
        "s",
        [198, 51, 100, 7],
        Probe::new(epoch)
            .at(ms(0), listen(443))
            .at(ms(0), listen(444)),
    );
    let (home, nat) = site(
        &mut b,
        "nat",
        [203, 0, 113, 1],
        RouterKind::Nat(Nat::port_restricted_cone().with_port_preservation(false)),
    );
    let (server, other) = (sa("198.51.100.7:443"), sa("198.51.100.7:444"));
    let data = |n: usize| Bytes::from(content::range(3, 0, n));
    let alice = Probe::new(epoch)
        // Both from one local port, as ICE-TCP does: an endpoint-independent mapping would
        // give them one external port, were it not lost in between.
        .at(ms(1), Step::connect_from(1, 5000, server))
        .at(
            ms(500),
            Step::Send {
                conn: C1,
                data: data(1000),
            },
        )
        .at(secs(2), Step::connect_from(2, 5000, other));
    let a = b.host(
        HostSpec::new("alice", home)
            .v4([192, 168, 1, 2])
            .link(LinkSpec::latency(ms(10))),
        alice,
    );
    b.fault(ms(300), Fault::Rebind(nat));
    let mut world = b.trace().build().expect("world");
    world.run_until(secs(5));
    let server_side = probe(&world, s);
    let accepted: Vec<_> = [A1, ConnId::Accepted(2)]
        .iter()
        .map(|c| server_side.conn(*c).and_then(|l| l.addr))
        .collect();
    let (first, second) = (
        accepted[0].expect("a first"),
        accepted[1].expect("a second"),
    );
    assert_eq!(first.ip(), second.ip(), "both come from the NAT's address");
    assert_ne!(
        first.port(),
        second.port(),
        "the second through a new mapping"
    );
    assert!(
        server_side.received(A1).is_empty(),
        "nothing crosses a mapping that is gone"
    );
    assert_eq!(
        probe(&world, a).state(C1),
        Some(ConnState::Open),
        "and nobody is told"
    );
    assert!(world.trace().contains("nat loses its NAT mappings"));
    no_violations(&world);
}
