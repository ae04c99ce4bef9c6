//! Floods of signed values under a node's DHT keys, on the simulator: the node checks no
//! more signatures per window than its budget (`proto/src/node/budget.rs`), counts what it
//! drops, and a legitimate request or announcement still gets through.

use std::time::Duration;

use bytes::Bytes;
use ferry_proto::io::{Endpoint, Event, Input};
use ferry_proto::node::{
    ANNOUNCEMENT_CHECKS_PER_WINDOW, HELD_PER_WINDOW, Node, NodeConfig, REQUEST_CHECKS_PER_WINDOW,
    SIGNATURE_WINDOW,
};
use ferry_proto::signal::{self, PeerConnection, SeededRng};
use ferry_proto::tls::{Account, Device};
use ferry_sim::{HostId, HostSpec, LinkSpec, World, WorldBuilder};
use ferry_tests::identity::{Seeds, node_config};

const SEEDS: Seeds = Seeds::new(b"signature-budget", b"signature-budget-device");

/// How often the flood comes, and for how long.
const TICK: Duration = Duration::from_millis(50);
const FLOOD: Duration = Duration::from_secs(40);

fn host(
    b: &mut WorldBuilder,
    name: &str,
    account: &Account,
    device: &Device,
    last: u8,
    configure: impl FnOnce(&mut NodeConfig),
) -> HostId {
    let epoch = b.epoch();
    let internet = b.internet();
    let at = [198, 51, 100, last];
    let mut config = node_config(epoch, account, device, at.into(), u64::from(last));
    configure(&mut config);
    b.host(
        HostSpec::new(name, internet)
            .v4(at)
            .link(LinkSpec::latency(Duration::from_millis(10))),
        Node::new(epoch, config),
    )
}

/// Runs `flood` (values per tick, under `key`, at host `at`) for [`FLOOD`] while Alice sends
/// Bob a file; returns the signature checks `at` made during the flood, the values it
/// dropped over the budget, and whether Bob verified the file.
fn flood_while_sending(
    key_of: impl Fn(&Device, &Account) -> ferry_proto::io::DhtKey,
    flood_at_alice: bool,
    pool: impl Fn(&Device, &Device, &Account) -> Vec<Bytes>,
    per_tick: usize,
) -> (u64, u64, u64, bool) {
    let mut b = World::builder(31);
    let (alice, bob, mallory) = (
        SEEDS.account("alice"),
        SEEDS.account("bob"),
        SEEDS.account("mallory"),
    );
    let (a1, b1, m1) = (
        SEEDS.device(&alice, "a1"),
        SEEDS.device(&bob, "b1"),
        SEEDS.device(&mallory, "m1"),
    );
    let ha = host(&mut b, "a1", &alice, &a1, 10, |_| {});
    let hb = host(&mut b, "b1", &bob, &b1, 20, |c| {
        // Mallory's requests open and verify, then are refused: signature work, nothing else.
        c.only_contacts = true;
        c.contacts.insert(alice.id());
    });
    let mut world = b.build().expect("world");
    world.run_for(Duration::from_secs(1));
    let at = if flood_at_alice { ha } else { hb };
    let target = if flood_at_alice { &a1 } else { &b1 };
    let key = key_of(target, &bob);
    let pool = pool(&m1, target, &bob);
    let checks = |w: &mut World| {
        w.with_endpoint(at, |n: &mut Node, _| n.signature_checks())
            .expect("a node")
    };
    let before = checks(&mut world);
    // Alice sends once the flood is on: her announcement lookup or request is among it.
    let mut next = 0usize;
    let ticks = (FLOOD.as_millis() / TICK.as_millis()) as usize;
    for tick in 0..ticks {
        if tick == 20 {
            world
                .with_endpoint(ha, |n: &mut Node, now| {
                    n.send_file(now, bob.id(), "seed:5:20000".into(), "f.bin".into())
                })
                .expect("a node");
        }
        world
            .with_endpoint(at, |n: &mut Node, now| {
                for _ in 0..per_tick {
                    let value = pool[next % pool.len()].clone();
                    next += 1;
                    n.handle_input(now, Input::DhtValue { key, value })
                        .expect("a DHT value");
                }
            })
            .expect("a node");
        world.run_for(TICK);
        // Bob takes every file offered.
        for t in offers(&world, hb) {
            let _ = world.with_endpoint(hb, |n: &mut Node, now| n.accept(now, t));
        }
    }
    let during = checks(&mut world) - before;
    let dropped = world
        .with_endpoint(at, |n: &mut Node, _| n.dropped().over_signature_budget)
        .expect("a node");
    let verified = world
        .events::<Event>(hb)
        .iter()
        .any(|(_, e)| matches!(e, Event::Verified { .. }));
    (during, dropped, next as u64, verified)
}

fn offers(world: &World, host: HostId) -> Vec<ferry_proto::transfer::TransferId> {
    world
        .events::<Event>(host)
        .iter()
        .filter_map(|(_, e)| match e {
            Event::IncomingTransfer { transfer, .. } => Some(*transfer),
            _ => None,
        })
        .collect()
}

/// Mallory's requests, each sealed to `to` and signed by her device: every one costs a key
/// agreement and the signature checks, then is refused (not a contact).
fn sealed_requests(m1: &Device, to: &Device, _: &Account) -> Vec<Bytes> {
    // SECURITY: row 126
    (0..300u64)
        .map(|id| {
            let message = PeerConnection {
                id,
                is_answer: false,
                ice: String::new(),
                addresses: Vec::new(),
                seal: Some(m1.seal_public_key()),
                time: None,
            };
            let mut rng = SeededRng::new(id);
            signal::seal(m1, &to.recipient(), &message.encode(), &mut rng)
                .expect("sealed")
                .into()
        })
        .collect()
}

/// Most checks a node may make in `span` with a budget of `limit` per window: every window
/// that starts in it, and the values held from the window before.
fn bound(limit: u32, span: Duration) -> u64 {
    let windows = span.as_millis().div_ceil(SIGNATURE_WINDOW.as_millis()) as u64 + 1;
    windows * u64::from(limit) + HELD_PER_WINDOW as u64
}

#[test]
fn a_flood_of_sealed_requests_costs_the_budget_and_a_contacts_request_gets_through() {
    // Twice the budget, steadily: half of each window's values are never opened.
    let per_tick = 2 * REQUEST_CHECKS_PER_WINDOW as usize * TICK.as_millis() as usize
        / SIGNATURE_WINDOW.as_millis() as usize;
    let (checks, dropped, sent, verified) = flood_while_sending(
        |device, _| signal::peer_key(&device.id()),
        false,
        sealed_requests,
        per_tick,
    );
    eprintln!("{sent} sealed requests in {FLOOD:?}: {checks} opened, {dropped} dropped");
    assert!(
        checks <= bound(REQUEST_CHECKS_PER_WINDOW, FLOOD),
        "{checks} checks in {FLOOD:?}"
    );
    assert!(
        checks >= u64::from(REQUEST_CHECKS_PER_WINDOW),
        "the flood was opened"
    );
    assert!(
        dropped > 0 && dropped + checks <= sent,
        "{dropped} dropped of {sent}"
    );
    assert!(
        verified,
        "Alice's request got through the flood and the file arrived"
    );
}

/// Values shaped like Bob's announcements (his account's certificate, public), with bad
/// signatures: each costs a signature check at Alice, who looks Bob up.
fn forged_announcements(_: &Device, _: &Device, bob: &Account) -> Vec<Bytes> {
    // SECURITY: row 127
    let genuine = bob
        .announce(&SEEDS.device(bob, "forged"))
        .expect("an announcement");
    (0..300usize)
        .map(|i| {
            let mut v = genuine.clone();
            // The signature is the last field: change one of its bytes.
            let at = v.len() - 1 - i % 32;
            v[at] ^= 0x5a;
            Bytes::from(v)
        })
        .collect()
}

#[test]
fn a_flood_of_forged_announcements_costs_the_budget_and_the_real_one_gets_through() {
    let per_tick = 2 * ANNOUNCEMENT_CHECKS_PER_WINDOW as usize * TICK.as_millis() as usize
        / SIGNATURE_WINDOW.as_millis() as usize;
    let (checks, dropped, sent, verified) = flood_while_sending(
        |_, bob| signal::devices_key(&bob.id()),
        true,
        forged_announcements,
        per_tick,
    );
    eprintln!("{sent} forged announcements in {FLOOD:?}: {checks} verified, {dropped} dropped");
    // Alice listens to Bob's key only once she sends: the bound counts from the start.
    assert!(
        checks <= bound(ANNOUNCEMENT_CHECKS_PER_WINDOW, FLOOD),
        "{checks} checks in {FLOOD:?}"
    );
    assert!(
        dropped > 0 && dropped + checks <= sent,
        "{dropped} dropped of {sent}"
    );
    assert!(verified, "Bob's real announcement got through the flood");
}
