//! Each NAT kind's mapping and filtering, for TCP, observed the way peers observe it:
//! which external address a server sees, and which inbound connections get through.

mod common;

use common::*;
use ferry_proto::io::{ConnId, ConnectError};
use ferry_sim::probe::ConnState;
use ferry_sim::{Behaviour, HostSpec, Nat, Probe, RouterKind, Step, World};

/// Alice (behind `nat`) connects from port 5000 to s1:443, s1:444 and s2:443; returns the
/// external ports the servers saw, in that order.
fn ports_seen(nat: Nat) -> [u16; 3] {
    let mut b = World::builder(1);
    let epoch = b.epoch();
    let (home, _) = site(&mut b, "home", [203, 0, 113, 1], RouterKind::Nat(nat));
    let s1 = public(
        &mut b,
        "s1",
        [198, 51, 100, 7],
        Probe::new(epoch)
            .at(ms(0), listen(443))
            .at(ms(0), listen(444)),
    );
    let s2 = public(
        &mut b,
        "s2",
        [198, 51, 100, 8],
        Probe::new(epoch).at(ms(0), listen(443)),
    );
    let alice = Probe::new(epoch)
        .at(ms(10), Step::connect_from(1, 5000, sa("198.51.100.7:443")))
        .at(ms(10), Step::connect_from(2, 5000, sa("198.51.100.7:444")))
        .at(ms(10), Step::connect_from(3, 5000, sa("198.51.100.8:443")));
    b.host(HostSpec::new("alice", home).v4([192, 168, 1, 2]), alice);
    let mut world = b.build().expect("world");
    world.run_for(secs(1));
    no_violations(&world);
    let seen = |h, n: usize| {
        let p = probe(&world, h);
        let accepted = p.accepted();
        let id = accepted.get(n).copied().expect("an accepted connection");
        p.conn(id).and_then(|c| c.addr).expect("its remote").port()
    };
    [seen(s1, 0), seen(s1, 1), seen(s2, 0)]
}

#[test]
fn endpoint_independent_mapping_keeps_one_port_for_every_remote() {
    let [a, b, c] = ports_seen(Nat::new(
        Behaviour::EndpointIndependent,
        Behaviour::EndpointIndependent,
    ));
    assert_eq!([a, b, c], [5000, 5000, 5000], "port preserved and shared");
}

#[test]
fn address_dependent_mapping_changes_port_per_remote_address() {
    let [a, b, c] = ports_seen(Nat::new(
        Behaviour::AddressDependent,
        Behaviour::EndpointIndependent,
    ));
    assert_eq!(a, b, "same remote address, same mapping");
    assert_ne!(a, c, "another remote address, another mapping");
}

#[test]
fn address_and_port_dependent_mapping_changes_port_per_remote_port() {
    let [a, b, c] = ports_seen(Nat::symmetric());
    assert_ne!(a, b);
    assert_ne!(b, c);
    assert_ne!(a, 5000, "no port preservation in this symmetric NAT");
}

#[test]
fn port_preservation_off_never_shows_the_inside_port() {
    let [a, b, c] = ports_seen(Nat::full_cone().with_port_preservation(false));
    assert_ne!(a, 5000);
    assert_eq!([a, a], [b, c], "still endpoint-independent");
}

/// Alice behind `kind` contacts s1:443 from port 5000 (and listens on 5000); then s1 from
/// port 443, s1 from port 6000 and s2 from port 443 each try to connect to her external
/// 203.0.113.1:5000. Returns which of the three got through.
fn inbound(kind: RouterKind, alice_ip: [u8; 4]) -> [bool; 3] {
    let mut b = World::builder(2);
    let epoch = b.epoch();
    let (home, _) = site(&mut b, "home", [203, 0, 113, 1], kind);
    let target = if kind.translates() {
        sa("203.0.113.1:5000")
    } else {
        std::net::SocketAddr::from((alice_ip, 5000))
    };
    let s1 = public(
        &mut b,
        "s1",
        [198, 51, 100, 7],
        Probe::new(epoch)
            .at(ms(0), listen(443))
            .echo()
            .at(secs(1), Step::connect_from(1, 443, target))
            .at(secs(1), Step::connect_from(2, 6000, target)),
    );
    let s2 = public(
        &mut b,
        "s2",
        [198, 51, 100, 8],
        Probe::new(epoch).at(secs(1), Step::connect_from(1, 443, target)),
    );
    let alice = Probe::new(epoch)
        .at(ms(0), listen(5000))
        .at(ms(10), Step::connect_from(1, 5000, sa("198.51.100.7:443")))
        .at(ms(300), Step::Close(ConnId::Connect(1)));
    b.host(HostSpec::new("alice", home).v4(alice_ip), alice);
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(20));
    no_violations(&world);
    let ok = |h, n| match probe(&world, h).state(ConnId::Connect(n)) {
        Some(ConnState::Open) => true,
        Some(ConnState::Failed(ConnectError::TimedOut)) => false,
        other => panic!("unexpected {other:?}\n{}", world.trace()),
    };
    [ok(s1, 1), ok(s1, 2), ok(s2, 1)]
}

#[test]
fn endpoint_independent_filtering_lets_anyone_in_once_mapped() {
    assert_eq!(
        inbound(RouterKind::Nat(Nat::full_cone()), [192, 168, 1, 2]),
        [true, true, true]
    );
}

#[test]
fn address_dependent_filtering_lets_in_the_contacted_address_only() {
    assert_eq!(
        inbound(RouterKind::Nat(Nat::restricted_cone()), [192, 168, 1, 2]),
        [true, true, false]
    );
}

#[test]
fn address_and_port_dependent_filtering_lets_in_the_contacted_address_and_port_only() {
    assert_eq!(
        inbound(
            RouterKind::Nat(Nat::port_restricted_cone()),
            [192, 168, 1, 2]
        ),
        [true, false, false]
    );
}

#[test]
fn a_firewall_drops_unsolicited_syns_and_an_open_router_does_not() {
    assert_eq!(
        inbound(RouterKind::Firewall, [100, 64, 0, 2]),
        [true, false, false]
    );
    assert_eq!(
        inbound(RouterKind::Open, [100, 64, 0, 2]),
        [true, true, true]
    );
}

#[test]
fn without_a_mapping_nothing_gets_in() {
    let mut b = World::builder(3);
    let epoch = b.epoch();
    let (home, _) = site(
        &mut b,
        "home",
        [203, 0, 113, 1],
        RouterKind::Nat(Nat::full_cone()),
    );
    b.host(
        HostSpec::new("alice", home).v4([192, 168, 1, 2]),
        Probe::new(epoch).at(ms(0), listen(5000)),
    );
    let s = public(
        &mut b,
        "s",
        [198, 51, 100, 7],
        Probe::new(epoch).at(ms(10), Step::connect(1, sa("203.0.113.1:5000"))),
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(11));
    assert_eq!(
        probe(&world, s).state(ConnId::Connect(1)),
        Some(ConnState::Failed(ConnectError::TimedOut))
    );
    // Nor can anyone reach a private address from outside.
    no_violations(&world);
}

/// Two hosts behind one NAT; bob listens on 6000 and has a mapping for it; alice dials the
/// NAT's external address.
fn hairpin(on: bool) -> (Option<ConnState>, Vec<std::net::SocketAddr>) {
    let mut b = World::builder(4);
    let epoch = b.epoch();
    let (home, _) = site(
        &mut b,
        "home",
        [203, 0, 113, 1],
        RouterKind::Nat(Nat::full_cone().with_hairpinning(on)),
    );
    public(
        &mut b,
        "s",
        [198, 51, 100, 7],
        Probe::new(epoch).at(ms(0), listen(443)),
    );
    let bob = b.host(
        HostSpec::new("bob", home).v4([192, 168, 1, 3]),
        Probe::new(epoch)
            .at(ms(0), listen(6000))
            .at(ms(1), Step::connect_from(1, 6000, sa("198.51.100.7:443"))),
    );
    let alice = b.host(
        HostSpec::new("alice", home).v4([192, 168, 1, 2]),
        Probe::new(epoch).at(ms(500), Step::connect(1, sa("203.0.113.1:6000"))),
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(12));
    no_violations(&world);
    let p = probe(&world, bob);
    let remotes = p
        .accepted()
        .iter()
        .filter_map(|c| p.conn(*c).and_then(|c| c.addr))
        .collect();
    (probe(&world, alice).state(ConnId::Connect(1)), remotes)
}

#[test]
fn hairpinning_on_reaches_a_neighbour_through_the_external_address() {
    let (state, remotes) = hairpin(true);
    assert_eq!(state, Some(ConnState::Open));
    assert_eq!(remotes.len(), 1);
    assert_eq!(
        remotes[0].ip(),
        "203.0.113.1".parse::<std::net::IpAddr>().expect("ip"),
        "the neighbour sees the external address"
    );
}

#[test]
fn hairpinning_off_loses_the_syn() {
    let (state, remotes) = hairpin(false);
    assert_eq!(state, Some(ConnState::Failed(ConnectError::TimedOut)));
    assert!(remotes.is_empty());
}

#[test]
fn nested_nats_translate_twice() {
    let mut b = World::builder(5);
    let epoch = b.epoch();
    let internet = b.internet();
    let carrier = b.network("carrier");
    let home = b.network("home");
    b.router(
        ferry_sim::RouterSpec::new("cgnat", internet, carrier)
            .v4([203, 0, 113, 9])
            .nat(Nat::symmetric()),
    );
    b.router(
        ferry_sim::RouterSpec::new("home-nat", carrier, home)
            .v4([100, 64, 0, 5])
            .nat(Nat::full_cone()),
    );
    let s = public(
        &mut b,
        "s",
        [198, 51, 100, 7],
        Probe::new(epoch).at(ms(0), listen(443)),
    );
    b.host(
        HostSpec::new("alice", home).v4([192, 168, 1, 2]),
        Probe::new(epoch).at(ms(1), Step::connect(1, sa("198.51.100.7:443"))),
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(1));
    let p = probe(&world, s);
    let remote = p
        .accepted()
        .first()
        .and_then(|c| p.conn(*c))
        .and_then(|c| c.addr)
        .expect("accepted");
    assert_eq!(
        remote.ip(),
        "203.0.113.9".parse::<std::net::IpAddr>().expect("ip")
    );
    no_violations(&world);
}

/// A home router that NATs IPv4 and firewalls (or routes) IPv6: alice's IPv6 address is
/// seen as it is, and reachable unsolicited only through an open router.
fn v6_home(kind_v6: RouterKind) -> (Option<std::net::SocketAddr>, Option<ConnState>) {
    let mut b = World::builder(6);
    let epoch = b.epoch();
    let internet = b.internet();
    let home = b.network("home");
    b.router(
        ferry_sim::RouterSpec::new("home", internet, home)
            .v4([203, 0, 113, 1])
            .v6("2001:db8:ffff::1"
                .parse::<std::net::Ipv6Addr>()
                .expect("v6"))
            .nat(Nat::port_restricted_cone())
            .kind_v6(kind_v6),
    );
    let s = b.host(
        HostSpec::new("s", internet)
            .v4([198, 51, 100, 7])
            .v6("2001:db8:ffff::7"
                .parse::<std::net::Ipv6Addr>()
                .expect("v6")),
        Probe::new(epoch)
            .at(
                ms(0),
                Step::Listen {
                    listener: ferry_proto::io::ListenerId(6),
                    local: sa("[::]:443"),
                },
            )
            .at(ms(500), Step::connect(1, sa("[2001:db8:1::2]:5000"))),
    );
    b.host(
        HostSpec::new("alice", home)
            .v4([192, 168, 1, 2])
            .v6("2001:db8:1::2".parse::<std::net::Ipv6Addr>().expect("v6")),
        Probe::new(epoch)
            .at(
                ms(0),
                Step::Listen {
                    listener: ferry_proto::io::ListenerId(5),
                    local: sa("[::]:5000"),
                },
            )
            .at(ms(10), Step::connect(1, sa("[2001:db8:ffff::7]:443"))),
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(11));
    no_violations(&world);
    let p = probe(&world, s);
    let seen = p
        .accepted()
        .first()
        .and_then(|c| p.conn(*c))
        .and_then(|c| c.addr);
    (seen, p.state(ConnId::Connect(1)))
}

#[test]
fn ipv6_passes_untranslated_and_a_v6_firewall_still_drops_unsolicited_syns() {
    let (seen, inbound) = v6_home(RouterKind::Firewall);
    assert_eq!(
        seen.map(|a| a.ip()),
        Some("2001:db8:1::2".parse().expect("v6")),
        "no NAT on IPv6"
    );
    assert_eq!(inbound, Some(ConnState::Failed(ConnectError::TimedOut)));
    let (_, inbound) = v6_home(RouterKind::Open);
    assert_eq!(inbound, Some(ConnState::Open), "an open router lets it in");
}
