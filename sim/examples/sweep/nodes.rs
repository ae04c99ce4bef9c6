//! The sweep's second world: whole Ferry nodes. Alice, behind a random NAT, firewall or
//! none, sends a file of random size to Bob on the internet, over links of random latency,
//! jitter and bandwidth and a DHT of random latency. Bob is always reachable (Alice opens
//! the connection), so every seed must end with the file verified under its name on Bob's
//! side and both nodes reporting the transfer finished.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ferry_proto::io::Event;
use ferry_proto::node::{Node, NodeConfig};
use ferry_proto::tls::{Account, Device, UnixAnchor, Validity, derive_seed};
use ferry_proto::transfer::{Status, TransferId};
use ferry_proto::turn::TurnConfig;
use ferry_sim::rng::SimRng;
use ferry_sim::{
    DhtSpec, HostId, HostSpec, LinkSpec, RouterId, RouterKind, RouterSpec, World, WorldBuilder,
};

/// Unix time at virtual time zero: certificates are valid around it.
const T0: u64 = 1_795_651_200;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn account(seed: u64, name: &str) -> Result<Account, String> {
    let validity = Validity::days_from(T0 - 86_400, 365);
    Account::from_seed(
        &derive_seed(format!("sweep {seed}").as_bytes(), name),
        validity,
    )
    .map_err(|e| format!("account: {e}"))
}

pub(crate) fn device(seed: u64, account: &Account, name: &str) -> Result<Device, String> {
    let validity = Validity::days_from(T0 - 86_400, 365);
    account
        .add_device(
            &derive_seed(format!("sweep {seed}").as_bytes(), name),
            validity,
        )
        .map_err(|e| format!("device: {e}"))
}

pub(crate) fn node(
    epoch: Instant,
    account: &Account,
    device: &Device,
    seed: u64,
    ip: IpAddr,
    configure: impl FnOnce(&mut NodeConfig),
) -> Result<Node, String> {
    node_at(epoch, epoch, account, device, seed, ip, configure)
}

/// [`node`], started at `now` (a process started again after a crash) with its clock
/// anchored at `epoch` as every node's is.
fn node_at(
    epoch: Instant,
    now: Instant,
    account: &Account,
    device: &Device,
    seed: u64,
    ip: IpAddr,
    configure: impl FnOnce(&mut NodeConfig),
) -> Result<Node, String> {
    let anchor = UnixAnchor {
        instant: epoch,
        unix: Duration::from_secs(T0),
    };
    let announce = account
        .announce(device)
        .map_err(|e| format!("announce: {e}"))?;
    let mut config = NodeConfig::new(device.clone(), announce, vec![ip], seed, anchor);
    configure(&mut config);
    Ok(Node::new(now, config))
}

pub(crate) fn link(rng: &mut SimRng) -> LinkSpec {
    let l = LinkSpec::latency(ms(1 + rng.below(60))).with_jitter(ms(rng.below(10)));
    if rng.chance(0.5) {
        l.with_bandwidth(500_000 + rng.below(10_000_000))
    } else {
        l
    }
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

fn finished(world: &World, host: HostId, t: TransferId) -> bool {
    world.events::<Event>(host).iter().any(|(_, e)| {
        matches!(e, Event::Status { transfer, status: Status::Finished, .. } if *transfer == t)
    })
}

/// Alice behind a home router of a random kind (open, firewall, or a NAT of random
/// behaviour), Bob public on the internet, each running a node, over random links; and the
/// size of the file Alice is to send, below `max_size`. `uplink` may change the home
/// router's uplink before it is built (a world with faults makes it lossy), drawing from
/// `rng` in its turn; `relay`, when given, is each node's TURN server, and whether Bob
/// offers only relayed candidates (so that the transfer runs through the relay).
pub(crate) struct Pair {
    pub(crate) bob: Account,
    pub(crate) kind: RouterKind,
    pub(crate) router: RouterId,
    pub(crate) ha: HostId,
    pub(crate) hb: HostId,
    pub(crate) size: u64,
    /// What each node is made of, to start it again after a crash.
    remake: Remake,
}

/// What the two nodes are made of: their identities (on disk, so a crash keeps them), their
/// addresses and their relay.
struct Remake {
    epoch: Instant,
    /// The seed the identities are derived from.
    seed: u64,
    a_ip: IpAddr,
    b_ip: IpAddr,
    relay: Option<(TurnConfig, bool)>,
}

impl Pair {
    pub(crate) fn build(
        b: &mut WorldBuilder,
        rng: &mut SimRng,
        seed: u64,
        max_size: u64,
        uplink: impl FnOnce(&mut SimRng, LinkSpec) -> LinkSpec,
        relay: Option<(TurnConfig, bool)>,
    ) -> Result<Pair, String> {
        let (epoch, internet) = (b.epoch(), b.internet());
        let (alice, bob) = (account(seed, "alice")?, account(seed, "bob")?);
        let (a1, b1) = (device(seed, &alice, "a1")?, device(seed, &bob, "b1")?);
        let home = b.network("home");
        let kind = match rng.below(4) {
            0 => RouterKind::Open,
            1 => RouterKind::Firewall,
            _ => RouterKind::Nat(crate::pick_nat(rng)),
        };
        let first = link(rng);
        let uplink = uplink(rng, first);
        let router = b.router(
            RouterSpec::new("home", internet, home)
                .v4([203, 0, 113, 1])
                .kind(kind)
                .link(uplink),
        );
        let a_ip = if kind.translates() {
            Ipv4Addr::new(192, 168, 1, 2)
        } else {
            Ipv4Addr::new(100, 64, 1, 2)
        };
        let b_ip = Ipv4Addr::new(198, 51, 100, 7);
        let size = 1 + rng.below(max_size);
        let turn = |c: &mut NodeConfig, relay_only: bool| {
            if let Some((turn, only)) = &relay {
                c.turn = vec![turn.clone()];
                c.relay_only = relay_only && *only;
            }
        };
        let na = node(epoch, &alice, &a1, rng.next_u64(), a_ip.into(), |c| {
            turn(c, false)
        })?;
        let nb = node(epoch, &bob, &b1, rng.next_u64(), b_ip.into(), |c| {
            turn(c, true)
        })?;
        let ha = b.host(HostSpec::new("a1", home).v4(a_ip).link(link(rng)), na);
        let hb = b.host(HostSpec::new("b1", internet).v4(b_ip).link(link(rng)), nb);
        Ok(Pair {
            bob,
            kind,
            router,
            ha,
            hb,
            size,
            remake: Remake {
                epoch,
                seed,
                a_ip: a_ip.into(),
                b_ip: b_ip.into(),
                relay,
            },
        })
    }

    /// Alice's node (`bob` false) or Bob's, as its process starts again at `now` after a
    /// crash: the same identity, address and relay, a new random seed, nothing in memory.
    pub(crate) fn restarted(&self, bob: bool, now: Instant, seed: u64) -> Result<Node, String> {
        let r = &self.remake;
        let (name, device_name, ip) = match bob {
            false => ("alice", "a1", r.a_ip),
            true => ("bob", "b1", r.b_ip),
        };
        let account = account(r.seed, name)?;
        let device = device(r.seed, &account, device_name)?;
        node_at(r.epoch, now, &account, &device, seed, ip, |c| {
            if let Some((turn, only)) = &r.relay {
                c.turn = vec![turn.clone()];
                c.relay_only = bob && *only;
            }
        })
    }
}

/// Runs the node world of `seed` and checks it.
pub(crate) fn check(seed: u64) -> Result<World, (String, Option<Box<World>>)> {
    let mut rng = SimRng::new(seed ^ 0x6e6f_6465);
    let mut b = World::builder(seed);
    b.dht(DhtSpec {
        latency: ms(10 + rng.below(300)),
        jitter: ms(rng.below(200)),
        ..DhtSpec::default()
    });
    let Pair {
        bob,
        kind,
        ha,
        hb,
        size,
        ..
    } = Pair::build(&mut b, &mut rng, seed, 3_000_000, |_, uplink| uplink, None)
        .map_err(|e| (e, None))?;
    let mut world = b
        .trace()
        .build()
        .map_err(|e| (format!("cannot build: {e}"), None))?;
    let broke = |why: String, world: World| Err((why, Some(Box::new(world))));

    world.run_for(Duration::from_secs(1));
    let sent = world.with_endpoint(ha, |n: &mut Node, now| {
        n.send_file(
            now,
            bob.id(),
            format!("seed:{seed}:{size}"),
            "sweep.bin".into(),
        )
    });
    if sent.is_none() {
        return broke("a1 is not a node".into(), world);
    }
    let mut offer = None;
    while offer.is_none() && world.now() < Duration::from_secs(60) {
        world.run_for(ms(50));
        offer = incoming(&world, hb);
    }
    let Some(t) = offer else {
        return broke("b1 never heard of the file".into(), world);
    };
    match world.with_endpoint(hb, |n: &mut Node, now| n.accept(now, t)) {
        Some(Ok(())) => {}
        other => return broke(format!("b1 could not accept: {other:?}"), world),
    }
    world.run_for(Duration::from_secs(120));
    if let Some(v) = world.violations().first() {
        return broke(format!("violation: {v}"), world);
    }
    let digest = ferry_sim::files::Source { size, seed }.digest();
    match world.received_file(hb, "sweep.bin") {
        Some(f) if (f.len, f.digest()) == (size, digest) => {}
        Some(f) => {
            return broke(
                format!("b1 committed {} bytes that do not match", f.len),
                world,
            );
        }
        None => return broke(format!("b1 has no file through {kind:?}"), world),
    }
    if !finished(&world, hb, t) || !finished(&world, ha, t) {
        return broke("a side never reported the transfer finished".into(), world);
    }
    Ok(world)
}
