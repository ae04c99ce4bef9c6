//! [reach] in the simulator: the rows of the table that the `scenarios` do not
//! hold, and paths that need more than one try.
//! `cargo test -p ferry-tests --test reach_sim -- --nocapture` prints set-up in RTTs.
//!
//! - Port-restricted cone NATs on two networks, STUN only, meet directly; so does a device
//!   behind a router that forwards its port (UPnP-IGD / NAT-PMP / PCP, simulated by the
//!   router itself) and a device behind a cone NAT, either way round.
//! - Two nodes behind port-restricted cone NATs with a STUN server only (no relay to fall
//!   back on) meet on their server-reflexive candidates by TCP simultaneous open, even when
//!   the DHT takes longer one way than ICE's connect timeout (the requester starts its checks
//!   one DHT one-way after the answerer).
//! - On a lossy path a SYN retransmitted twice takes longer than ICE's 3-s connect timeout,
//!   and a check can go unanswered for its 2 s: a failed pair tried again still connects,
//!   where one attempt per pair lost the whole session (seen in the fault sweep); and a
//!   check whose answer TCP resends late is waited for on a connection the peer checked on
//!   (at 40 % loss seeds 19 and 39 failed: the controlled side gave up on the connection
//!   the controlling side had selected).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ferry_proto::ice::SelectedPath;
use ferry_proto::io::Event;
use ferry_proto::node::Node;
use ferry_proto::transfer::{Status, TransferId};
use ferry_sim::turn_server::{TurnServer, TurnServerConfig};
use ferry_sim::{
    DhtSpec, HostId, HostSpec, LinkSpec, Nat, NetworkId, RouterKind, RouterSpec, World,
    WorldBuilder,
};
use ferry_tests::identity::{Seeds, node_config};

const SEEDS: Seeds = Seeds::new(b"reach", b"reach");
const SIZE: u64 = 200_000;
const HOP: Duration = Duration::from_millis(10);
const LOSS: f64 = 0.40;

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The home routers of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Home {
    /// A port-restricted cone NAT (endpoint-independent mapping, address-and-port-dependent
    /// filtering): the common home router.
    Cone,
    /// A router that forwards a port on request (UPnP-IGD, NAT-PMP, PCP) and is otherwise
    /// symmetric, so that the forwarded port is the only way in: its STUN-seen mapping
    /// changes with the destination, and its filter lets nobody in unasked.
    Upnp,
}

/// A home network behind a router of kind `home` at `ext`.
fn home(b: &mut WorldBuilder, name: &str, ext: [u8; 4], home: Home) -> NetworkId {
    let internet = b.internet();
    let net = b.network(name);
    let nat = match home {
        Home::Cone => Nat::port_restricted_cone(),
        Home::Upnp => Nat::symmetric(),
    };
    b.router(
        RouterSpec::new(name, internet, net)
            .v4(ext)
            .kind(RouterKind::Nat(nat))
            .port_mapping(home == Home::Upnp)
            .link(LinkSpec::latency(HOP)),
    );
    net
}

/// A STUN server on the internet (the simulated TURN server answers Binding, as coturn
/// does; nobody here allocates on it).
fn stun_server(b: &mut WorldBuilder) -> SocketAddr {
    let addr: SocketAddr = "198.51.100.3:3478".parse().expect("addr");
    let internet = b.internet();
    b.host(
        HostSpec::new("stun", internet)
            .v4([198, 51, 100, 3])
            .link(LinkSpec::latency(HOP)),
        TurnServer::new(TurnServerConfig::new(addr, "ferry", "secret", "sim")),
    );
    addr
}

fn events(world: &World, host: HostId) -> Vec<(Duration, Event)> {
    world.events::<Event>(host)
}

fn offered(world: &World, host: HostId) -> Option<TransferId> {
    events(world, host).into_iter().find_map(|(_, e)| match e {
        Event::IncomingTransfer { transfer, .. } => Some(transfer),
        _ => None,
    })
}

fn finished(world: &World, host: HostId, group: TransferId) -> bool {
    events(world, host).into_iter().any(|(_, e)| {
        matches!(e, Event::Aggregate { group: g, status: Status::Finished, .. } if g == group)
    })
}

fn connected(world: &World, host: HostId) -> Vec<(Duration, SelectedPath)> {
    events(world, host)
        .into_iter()
        .filter_map(|(at, e)| match e {
            Event::Connected { path, .. } => Some((at, path)),
            _ => None,
        })
        .collect()
}

fn unreachable(world: &World, host: HostId) -> Vec<String> {
    events(world, host)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::PeerUnreachable { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// Runs in steps until `done` holds or `limit` of virtual time passes.
fn run_until(world: &mut World, limit: Duration, mut done: impl FnMut(&World) -> bool) -> bool {
    let end = world.now() + limit;
    while world.now() < end {
        if done(world) {
            return true;
        }
        world.run_for(Duration::from_millis(50));
    }
    done(world)
}

/// Alice (requester) sends Bob (answerer) a file; both behind port-restricted cone NATs,
/// STUN only, the DHT `dht_latency` each way of a put and a delivery.
/// `retries` caps each agent's retries of a failed pair.
fn across_cones(
    seed: u64,
    dht_latency: Duration,
    retries: u32,
) -> (World, [HostId; 2], TransferId) {
    let (world, hosts, group, _) = across(seed, dht_latency, retries, [Home::Cone, Home::Cone]);
    (world, hosts, group)
}

/// [`across_cones`] with Alice and Bob behind the routers `homes`; both ask their gateway
/// for port mappings (only a [`Home::Upnp`] one grants them).
fn across(
    seed: u64,
    dht_latency: Duration,
    retries: u32,
    homes: [Home; 2],
) -> (World, [HostId; 2], TransferId, Duration) {
    let mut b = World::builder(seed);
    b.dht(DhtSpec {
        latency: dht_latency,
        jitter: Duration::ZERO,
        ..DhtSpec::default()
    });
    let stun = stun_server(&mut b);
    let na = home(&mut b, "nat-a", [203, 0, 113, 1], homes[0]);
    let nb = home(&mut b, "nat-b", [203, 0, 113, 2], homes[1]);
    let epoch = b.epoch();
    let (alice, bob) = (SEEDS.account("alice"), SEEDS.account("bob"));
    let (a1, b1) = (SEEDS.device(&alice, "a1"), SEEDS.device(&bob, "b1"));
    let mut host = |name: &str, net: NetworkId, ip: [u8; 4], account, device, seed: u64| {
        let mut config = node_config(epoch, account, device, IpAddr::from(ip), seed);
        config.stun = vec![stun];
        config.ice.max_connect_retries = retries;
        config.port_mapping = true;
        b.host(
            HostSpec::new(name, net).v4(ip).link(LinkSpec::latency(HOP)),
            Node::new(epoch, config),
        )
    };
    let ha = host("a1", na, [192, 168, 1, 2], &alice, &a1, 1);
    let hb = host("b1", nb, [192, 168, 2, 2], &bob, &b1, 2);
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(2));
    let to = bob.id();
    let sent_at = world.now();
    let group = world
        .with_endpoint(ha, move |n: &mut Node, now| {
            n.send_file(now, to, format!("seed:7:{SIZE}"), "skewed.bin".to_owned())
        })
        .expect("a node");
    (world, [ha, hb], group, sent_at)
}

/// The DHT latency of the table's rows (a put or a delivery), as in `scenarios`.
const DHT_LATENCY: Duration = Duration::from_millis(100);

/// One row of the table in the simulator: Alice behind `homes[0]` sends Bob behind
/// `homes[1]` a file, STUN only; both connect directly, on the paths named `names` (each
/// side names its own: `mapped` where it holds the mapping, `srflx` where it sees the
/// other's). Returns the set-up after the DHT hops in round trips between the two hosts
/// (`send_file` → the header at Bob, less the lookup and two DHT one-ways), and prints it.
fn table_row(row: &str, homes: [Home; 2], names: [&str; 2]) -> f64 {
    let retries = ferry_proto::ice::Config::default().max_connect_retries;
    let (mut world, [ha, hb], group, sent_at) = across(5, DHT_LATENCY, retries, homes);
    let in_time = run_until(&mut world, secs(60), |w| offered(w, hb).is_some());
    if !in_time && std::env::var_os("REACH_DEBUG").is_some() {
        eprintln!("{}", world.trace());
    }
    assert!(
        in_time,
        "{row}: bob is offered the file; alice: {:?}, bob: {:?}",
        unreachable(&world, ha),
        unreachable(&world, hb)
    );
    let offered_at = events(&world, hb)
        .into_iter()
        .find_map(|(at, e)| matches!(e, Event::IncomingTransfer { .. }).then_some(at))
        .expect("an offer");
    let t = offered(&world, hb).expect("an offer");
    world
        .with_endpoint(hb, |n: &mut Node, now| n.accept(now, t))
        .expect("a node")
        .expect("offered");
    assert!(
        run_until(&mut world, secs(60), |w| finished(w, ha, group)),
        "{row}: alice's view finishes"
    );
    for ((who, h), name) in [("alice", ha), ("bob", hb)].into_iter().zip(names) {
        let paths = connected(&world, h);
        assert_eq!(paths.len(), 1, "{row}, {who}: one connection: {paths:?}");
        assert!(
            !paths[0].1.is_relayed() && paths[0].1.name() == name,
            "{row}, {who}: directly on {name}: {paths:?}"
        );
    }
    // Host link and router uplink each way: 4 hops one way.
    let rtt = HOP * 8;
    let took = offered_at - sent_at;
    let rtts = took.saturating_sub(DHT_LATENCY * 5).as_secs_f64() / rtt.as_secs_f64();
    eprintln!(
        "reach_sim {row}: send_file → header {took:?} = lookup {DHT_LATENCY:?} + 2 DHT one-way \
         of {:?} + {rtts:.2} RTT of {rtt:?}",
        DHT_LATENCY * 2
    );
    rtts
}

/// The "cone / cone, STUN only, both sides" row across two networks (s1 has both
/// hosts on one LAN): port-restricted cone NATs, which let the peer's SYN in only once their
/// own went out to it, meet on their server-reflexive candidates by TCP simultaneous open.
#[test]
fn port_restricted_cones_on_two_networks_meet_directly_with_stun_only() {
    let rtts = table_row(
        "cone / cone (STUN only)",
        [Home::Cone, Home::Cone],
        ["srflx", "srflx"],
    );
    // As the full-cone scenario: 3.5.
    assert!(rtts < 3.55, "set-up took {rtts:.2} RTT after the DHT hops");
}

/// The "behind a UPnP router / cone, STUN only" row, both ways round: the router
/// forwards the listening port (and is otherwise symmetric, so nothing else gets in); the
/// device behind it names its path `mapped`, the peer sees a server-reflexive candidate.
#[test]
fn a_device_behind_a_upnp_router_is_reached_through_the_mapped_port() {
    for (row, homes, names) in [
        (
            "upnp / cone (STUN only)",
            [Home::Upnp, Home::Cone],
            ["mapped", "srflx"],
        ),
        (
            "cone / upnp (STUN only)",
            [Home::Cone, Home::Upnp],
            ["srflx", "mapped"],
        ),
    ] {
        // 5.1 and 4.1 (see the report): the device behind the router also offers the
        // address a STUN server saw, which its symmetric mapping makes useless.
        let rtts = table_row(row, homes, names);
        assert!(
            rtts < 5.2,
            "{row}: set-up took {rtts:.2} RTT after the DHT hops"
        );
    }
}

/// One DHT one-way (put + delivery) of 3.2 s, past ICE's 3-s connect timeout: the
/// answerer's SYN to the requester's NAT is dropped, and its connect has failed before the
/// requester starts; the requester's SYN still passes the answerer's NAT, whose filter
/// remembers the answerer's SYN (as conntrack keeps a SYN_SENT entry for 2 minutes), and
/// reaches the answerer's listener, the port it connected from.
#[test]
fn cones_with_stun_only_meet_across_a_slow_dht() {
    let retries = ferry_proto::ice::Config::default().max_connect_retries;
    let (mut world, [ha, hb], group) = across_cones(19, Duration::from_millis(1600), retries);
    let offered_in_time = run_until(&mut world, secs(60), |w| offered(w, hb).is_some());
    assert!(
        offered_in_time,
        "bob is offered the file; alice: {:?}, bob: {:?}",
        unreachable(&world, ha),
        unreachable(&world, hb)
    );
    let t = offered(&world, hb).expect("an offer");
    world
        .with_endpoint(hb, |n: &mut Node, now| n.accept(now, t))
        .expect("a node")
        .expect("offered");
    assert!(
        run_until(&mut world, secs(60), |w| finished(w, ha, group)),
        "alice's view finishes"
    );
    for (who, h) in [("alice", ha), ("bob", hb)] {
        let paths = connected(&world, h);
        assert_eq!(paths.len(), 1, "{who}: one connection: {paths:?}");
        assert!(
            !paths[0].1.is_relayed() && paths[0].1.name() == "srflx",
            "{who}: the server-reflexive pair, directly: {paths:?}"
        );
    }
    let trace = world.trace();
    let retried = trace
        .lines()
        .filter(|l| l.contains(" SYN 192.168.2.2"))
        .count();
    eprintln!(
        "reach_sim skew: bob's SYNs {retried}, connected at {:?} (alice) {:?} (bob)",
        connected(&world, ha)[0].0,
        connected(&world, hb)[0].0
    );
}

/// Alice and Bob on the internet, Alice's link losing `loss` of its crossings; Alice sends
/// Bob a file. Whether it finished, and how many pairs' connects were started in all.
fn lossy(seed: u64, loss: f64, retries: u32) -> (bool, usize) {
    let mut b = World::builder(seed);
    b.dht(DhtSpec {
        latency: Duration::from_millis(100),
        jitter: Duration::ZERO,
        ..DhtSpec::default()
    });
    let internet = b.internet();
    let epoch = b.epoch();
    let (alice, bob) = (SEEDS.account("alice"), SEEDS.account("bob"));
    let (a1, b1) = (SEEDS.device(&alice, "a1"), SEEDS.device(&bob, "b1"));
    let mut host = |name: &str, ip: [u8; 4], link: LinkSpec, account, device, seed: u64| {
        let mut config = node_config(epoch, account, device, IpAddr::from(ip), seed);
        config.ice.max_connect_retries = retries;
        b.host(
            HostSpec::new(name, internet).v4(ip).link(link),
            Node::new(epoch, config),
        )
    };
    let ha = host(
        "a1",
        [198, 51, 100, 10],
        LinkSpec::latency(HOP).with_loss(loss),
        &alice,
        &a1,
        1,
    );
    let hb = host(
        "b1",
        [198, 51, 100, 20],
        LinkSpec::latency(HOP),
        &bob,
        &b1,
        2,
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(2));
    let to = bob.id();
    let group = world
        .with_endpoint(ha, move |n: &mut Node, now| {
            n.send_file(now, to, format!("seed:7:{SIZE}"), "lossy.bin".to_owned())
        })
        .expect("a node");
    if run_until(&mut world, secs(60), |w| offered(w, hb).is_some()) {
        let t = offered(&world, hb).expect("an offer");
        let _ = world.with_endpoint(hb, |n: &mut Node, now| n.accept(now, t));
    }
    let done = run_until(&mut world, secs(120), |w| finished(w, ha, group));
    if !done && std::env::var_os("REACH_DEBUG").is_some() {
        eprintln!(
            "seed {seed} retries {retries}: alice {:?} bob {:?}",
            unreachable(&world, ha),
            unreachable(&world, hb)
        );
        if std::env::var("REACH_DEBUG").ok() == Some(format!("{seed}/{retries}")) {
            eprintln!("{}", world.trace());
        }
    }
    let trace = world.trace();
    let connects = trace
        .lines()
        .filter(|l| l.contains(" SYN 198.51.100.") && l.contains(":49152 → 198.51.100."))
        .count();
    (done, connects)
}

/// 40 % of Alice's crossings lost, over 40 seeds: with retries every transfer connects and
/// finishes; with one attempt per pair, some sessions fail (the scenario needs the retries).
#[test]
fn a_lossy_handshake_is_retried_within_the_ice_deadline() {
    let seeds = 1..=40;
    let default = ferry_proto::ice::Config::default().max_connect_retries;
    let (mut with_failed, mut without_failed) = (Vec::new(), Vec::new());
    let (mut with_connects, mut without_connects) = (0, 0);
    for seed in seeds.clone() {
        let (done, connects) = lossy(seed, LOSS, default);
        with_connects += connects;
        if !done {
            with_failed.push(seed);
        }
        let (done, connects) = lossy(seed, LOSS, 0);
        without_connects += connects;
        if !done {
            without_failed.push(seed);
        }
    }
    eprintln!(
        "reach_sim lossy: {} seeds; failed with retries {with_failed:?} ({with_connects} \
         connects), without {without_failed:?} ({without_connects} connects)",
        seeds.count()
    );
    assert!(
        with_failed.is_empty(),
        "with retries every seed finishes: {with_failed:?}"
    );
    assert!(
        !without_failed.is_empty(),
        "one attempt per pair fails some seeds (else this scenario tests nothing)"
    );
}
