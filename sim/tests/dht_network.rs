//! A world of Ferry's native OpenDHT nodes on simulated UDP: a share of them public, the rest
//! behind NATs of every RFC 4787 kind (full cone, address-restricted, port-restricted,
//! symmetric), UDP mappings that expire after two minutes of silence, a lossy wire that
//! duplicates and reorders, and churn. Random pairs put then get a 1,300-byte value (a
//! Ferry signalling value's size: it travels in value parts); at least 99 % must be found.
//!
//! `cargo test -p ferry-sim --test dht_network` runs a world of 200 nodes; the full one, 1,000
//! nodes with 10 % churn per virtual hour, is a named command:
//! `cargo test --release -p ferry-sim --test dht_network -- --ignored thousand_nodes --nocapture`.

use std::time::Duration;

use ferry_sim::dht_world::{DhtWorld, DhtWorldSpec, Trial};
use ferry_sim::udp::UdpFaults;

/// Signalling values are about this large.
const VALUE_SIZE: usize = 1300;

struct Outcome {
    found: usize,
    trials: usize,
    trace: String,
}

fn run(nodes: usize, trials: usize, churn_per_hour: f64, seed: u64) -> Outcome {
    let mut world = DhtWorld::new(DhtWorldSpec {
        nodes,
        public: 0.25,
        churn_per_hour,
        faults: UdpFaults::default(),
        seed,
    });
    // Everyone joins (starts over 30 s, then their lookups and the tables' first pings).
    let settle = world.now() + Duration::from_secs(120);
    world.run_until(settle, None, |_| false);
    world.note(&format!("settled: {} nodes up", world.alive()));
    let mut found = 0;
    for _ in 0..trials {
        let from = world.random_alive();
        let to = world.random_alive();
        if world.put_then_get(from, to, VALUE_SIZE) == Trial::Found {
            found += 1;
        }
        // Time passes between trials: mappings expire, nodes churn.
        let later = world.now() + Duration::from_secs(20);
        world.run_until(later, None, |_| false);
    }
    let (malformed, dropped) = world.dropped_total();
    let udp = world.udp();
    world.note(&format!(
        "done: {found}/{trials} found, {} churned, malformed {malformed}, dropped {dropped}, {udp:?}",
        world.churned()
    ));
    eprintln!(
        "dht_network: {nodes} nodes, {:.0} virtual s, churn {} nodes: put-then-get {found}/{trials} = {:.1} %; \
         UDP sent {} delivered {} lost {} duplicated {} reordered {} filtered {} unreachable {}; \
         dropped by nodes: malformed {malformed}, other {dropped}",
        world.elapsed().as_secs_f64(),
        world.churned(),
        100.0 * found as f64 / trials as f64,
        udp.sent,
        udp.delivered,
        udp.lost,
        udp.duplicated,
        udp.reordered,
        udp.filtered,
        udp.unreachable,
    );
    assert_eq!(malformed, 0, "a node sent what another could not read");
    assert!(
        udp.filtered > 0,
        "no NAT filtered anything: the NATs are not in the path"
    );
    assert!(
        udp.lost > 0 && udp.duplicated > 0 && udp.reordered > 0,
        "{udp:?}"
    );
    Outcome {
        found,
        trials,
        trace: world.trace().to_owned(),
    }
}

fn assert_success(o: &Outcome) {
    assert!(
        o.found * 100 >= o.trials * 99,
        "put-then-get succeeded {}/{}:\n{}",
        o.found,
        o.trials,
        o.trace
    );
}

#[test]
fn two_hundred_nodes_behind_nats_put_then_get() {
    let o = run(200, 100, 0.1, 1);
    assert_success(&o);
}

#[test]
fn same_seed_same_trace() {
    let a = run(60, 10, 0.5, 9);
    let b = run(60, 10, 0.5, 9);
    assert_eq!(a.trace, b.trace);
    let c = run(60, 10, 0.5, 10);
    assert_ne!(a.trace, c.trace, "the seed changes nothing");
}

/// The world: 1,000 nodes, a quarter public, 10 % churn per virtual hour over
/// more than an hour of trials.
#[test]
#[ignore = "the full world: run it by name, in release mode (see the module's doc)"]
fn thousand_nodes() {
    let o = run(1000, 200, 0.1, 1000);
    assert_success(&o);
}
