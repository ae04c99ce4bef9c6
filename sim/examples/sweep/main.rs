//! Runs many seeds of a randomised world and checks invariants on each; stops at the first
//! seed that breaks one, prints it and how to replay it, and exits non-zero.
//!
//! ```text
//! cargo run -p ferry-sim --release --example sweep -- --seeds 1000
//! cargo run -p ferry-sim --release --example sweep -- --from 5000 --seeds 1000
//! cargo run -p ferry-sim --release --example sweep -- --seed 17 --trace
//! cargo run -p ferry-sim --release --example sweep -- --seeds 10000 --faults
//! ```
//!
//! With `--faults`, each seed runs only the third world ([`faults`]): a whole transfer
//! through faults drawn from the seed, then sent again once they heal.
//!
//! Each seed builds its own world: an echo server (IPv4 and IPv6), two to four clients, each
//! public or behind an open router, a firewall, or a NAT of random mapping, filtering, port
//! preservation and hairpinning; links of random latency, jitter, bandwidth and sometimes
//! loss; random faults (a link flap, a stall, a partition, a reset); and, half the time, a
//! DHT of random latency, loss and duplication. Every client sends streams of random length
//! to the server and reads the echo; two clients also try a TCP simultaneous open, and a
//! neighbour may reach the first client through its NAT (hairpinning). Until
//! Ferry's `Node` exists, the endpoints are [`Probe`]s; then whole transfers.
//!
//! Every fourth seed also runs whole Ferry nodes ([`nodes`]): a file sent from behind a
//! random NAT must arrive verified.
//!
//! Invariants:
//! - the I/O contract holds: no violation in the world, no breach seen by a probe;
//! - every byte read is the byte sent at that offset, and a stream that closed cleanly
//!   carried everything;
//! - a stream completes unless a fault or loss on its way explains why not (a timeout
//!   needs a cut link or loss, a reset needs a reset fault);
//! - a simultaneous open succeeds when both sides have a predictable external port behind a
//!   NAT or firewall, fails when either port is unpredictable, and never connects one side
//!   alone;
//! - a hairpinned connection succeeds exactly when the NAT hairpins, preserves the port and
//!   filters independently of the endpoint;
//! - with the DHT: no value arrives that nobody put; each put gets one answer; a lossless
//!   DHT delivers every value to every listener, and without duplication never twice;
//! - nothing leaks: no connection is alive once every endpoint let go;
//! - the same seed run twice gives the same trace, byte for byte.
#![allow(clippy::print_stdout)]

mod crash;
mod faults;
mod nodes;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::io::{ConnId, ConnectError, DhtKey, ListenerId};
use ferry_sim::probe::ConnState;
use ferry_sim::rng::SimRng;
use ferry_sim::{
    Behaviour, DhtSpec, Fault, HostId, HostSpec, LinkOf, LinkSpec, Nat, Probe, RouterKind,
    RouterSpec, Step, World, content,
};

const SERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 7);
const P2P_BASE: u16 = 7000;
const HAIRPIN_PORT: u16 = 7100;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// One client, as the checks need to know it.
struct Client {
    name: String,
    host: Option<HostId>,
    net: ferry_sim::NetworkId,
    v4: Ipv4Addr,
    v6: Option<Ipv6Addr>,
    plan: Probe,
    /// Whether its external port is predictable (port preservation, or no translation).
    predictable: bool,
    /// Whether a NAT or firewall drops SYNs that arrive before its own went out. Without
    /// one, a SYN that arrives early meets a closed port and is refused, and the
    /// simultaneous open succeeds only if the SYNs cross in flight.
    stateful: bool,
    /// The address others reach it at.
    ext_v4: Ipv4Addr,
    /// (connection number, bytes sent, the stream's content seed)
    streams: Vec<(u32, usize, u64)>,
    /// A fault may cut this client's traffic (link flap, partition).
    cut: bool,
    /// A fault resets this client's connections.
    reset: bool,
    /// Its NAT, when it has one.
    nat: Option<Nat>,
}

struct Scenario {
    world: World,
    clients: Vec<Client>,
    p2p: bool,
    /// The DHT's behaviour, when clients use it; each client puts one value.
    dht: Option<DhtSpec>,
    /// A link went down at some point (DHT operations of that host may fail).
    flap: bool,
    /// Some link loses packets.
    lossy: bool,
    /// The neighbour that tries a hairpin, and whether it must succeed.
    hairpin: Option<(HostId, bool)>,
}

const KEY: DhtKey = DhtKey([0x5e; 20]);

fn dht_value(seed: u64, client: usize) -> Bytes {
    Bytes::from(format!("seed {seed} client {client}"))
}

pub(crate) fn pick_nat(rng: &mut SimRng) -> Nat {
    let b = |rng: &mut SimRng| match rng.below(3) {
        0 => Behaviour::EndpointIndependent,
        1 => Behaviour::AddressDependent,
        _ => Behaviour::AddressAndPortDependent,
    };
    let mapping = b(rng);
    let filtering = b(rng);
    Nat::new(mapping, filtering)
        .with_port_preservation(rng.chance(0.6))
        .with_hairpinning(rng.chance(0.5))
}

/// A random link; `lossy` is set when it loses packets (a connect may then time out: the
/// handshake's retransmissions can outlast the connect timeout).
fn link(rng: &mut SimRng, lossy: &mut bool) -> LinkSpec {
    let mut l = LinkSpec::latency(ms(1 + rng.below(40))).with_jitter(ms(rng.below(10)));
    if rng.chance(0.5) {
        l = l.with_bandwidth(200_000 + rng.below(5_000_000));
    }
    if rng.chance(0.2) {
        l = l.with_loss(rng.below(5) as f64 / 100.0);
        *lossy |= l.loss > 0.0;
    }
    l
}

fn build(seed: u64) -> Result<Scenario, String> {
    let mut rng = SimRng::new(seed);
    let mut b = World::builder(seed);
    let epoch = b.epoch();
    let internet = b.internet();
    let any4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 443);
    let any6 = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 443);
    let server = Probe::new(epoch)
        .at(
            ms(0),
            Step::Listen {
                listener: ListenerId(4),
                local: any4,
            },
        )
        .at(
            ms(0),
            Step::Listen {
                listener: ListenerId(6),
                local: any6,
            },
        )
        .echo();
    let mut lossy = false;
    let server_link = link(&mut rng, &mut lossy);
    let server = b.host(
        HostSpec::new("server", internet)
            .v4(SERVER_V4)
            .v6(SERVER_V6)
            .link(server_link),
        server,
    );

    let dht = rng.chance(0.5).then(|| DhtSpec {
        latency: ms(10 + rng.below(200)),
        jitter: ms(rng.below(300)),
        loss: if rng.chance(0.5) {
            0.0
        } else {
            rng.below(30) as f64 / 100.0
        },
        duplicate: if rng.chance(0.5) {
            0.0
        } else {
            rng.below(30) as f64 / 100.0
        },
        ttl: Duration::from_secs(600),
        max_values: 64,
    });
    if let Some(spec) = dht {
        b.dht(spec);
    }
    let n = 2 + rng.below(3) as usize;
    let mut clients = Vec::new();
    for i in 0..n {
        let idx = i as u8 + 1;
        let ext_v4 = Ipv4Addr::new(203, 0, 113, idx);
        let name = format!("c{idx}");
        let mut nat_of = None;
        let (net, predictable, stateful, v4, v6) = match rng.below(4) {
            0 => (internet, true, false, ext_v4, None),
            kind => {
                let net = b.network(&format!("site{idx}"));
                let (k4, predictable, v4) = match kind {
                    1 => (RouterKind::Open, true, Ipv4Addr::new(100, 64, idx, 2)),
                    2 => (RouterKind::Firewall, true, Ipv4Addr::new(100, 64, idx, 2)),
                    _ => {
                        let nat = pick_nat(&mut rng);
                        nat_of = Some(nat);
                        (
                            RouterKind::Nat(nat),
                            nat.port_preservation,
                            Ipv4Addr::new(192, 168, 1, 2),
                        )
                    }
                };
                let k6 = if rng.chance(0.5) {
                    RouterKind::Firewall
                } else {
                    RouterKind::Open
                };
                let uplink = link(&mut rng, &mut lossy);
                b.router(
                    RouterSpec::new(&format!("r{idx}"), internet, net)
                        .v4(ext_v4)
                        .v6(Ipv6Addr::new(
                            0x2001,
                            0xdb8,
                            0xfffe,
                            0,
                            0,
                            0,
                            0,
                            u16::from(idx),
                        ))
                        .kind(k4)
                        .kind_v6(k6)
                        .link(uplink),
                );
                let v6 = Ipv6Addr::new(0x2001, 0xdb8, u16::from(idx), 0, 0, 0, 0, 2);
                (net, predictable, k4 != RouterKind::Open, v4, Some(v6))
            }
        };
        let mut plan = Probe::new(epoch);
        if dht.is_some() {
            let put = Step::DhtPut {
                key: KEY,
                value: dht_value(seed, i),
            };
            plan = plan
                .at(ms(0), Step::DhtListen(KEY))
                .at(ms(rng.below(3000)), put);
        }
        let mut streams = Vec::new();
        for k in 1..=(1 + rng.below(3) as u32) {
            let at = ms(rng.below(2000));
            let len = rng.below(200_000) as usize;
            let cseed = rng.next_u64();
            let remote = if v6.is_some() && rng.chance(0.3) {
                SocketAddr::new(SERVER_V6.into(), 443)
            } else {
                SocketAddr::new(SERVER_V4.into(), 443)
            };
            let conn = ConnId::Connect(k);
            plan = plan
                .at(at, Step::connect(k, remote))
                .at(
                    at + ms(1000),
                    Step::Send {
                        conn,
                        data: Bytes::from(content::range(cseed, 0, len)),
                    },
                )
                .at(at + ms(1000), Step::HalfClose(conn));
            streams.push((k, len, cseed));
        }
        // Where others reach it: its NAT's address, or its own when nothing translates.
        let ext_v4 = if v4.is_private() { ext_v4 } else { v4 };
        clients.push(Client {
            name,
            host: None,
            net,
            v4,
            v6,
            plan,
            predictable,
            stateful,
            ext_v4,
            streams,
            cut: false,
            reset: false,
            nat: nat_of,
        });
    }

    // Simultaneous open between c1 and c2: each dials the other's external address from
    // its own port, at nearly the same time; later both say hello and close.
    let p2p = rng.chance(0.7);
    if p2p {
        let at = ms(3000 + rng.below(500));
        for (me, peer) in [(0usize, 1usize), (1, 0)] {
            let skew = ms(rng.below(40));
            let remote = SocketAddr::new(clients[peer].ext_v4.into(), P2P_BASE + peer as u16);
            let conn = ConnId::Connect(100);
            let plan = std::mem::replace(&mut clients[me].plan, Probe::new(epoch));
            clients[me].plan = plan
                .at(
                    at + skew,
                    Step::connect_from(100, P2P_BASE + me as u16, remote),
                )
                .at(
                    at + ms(12_000),
                    Step::Send {
                        conn,
                        data: Bytes::from(format!("hello from {me}")),
                    },
                )
                .at(at + ms(14_000), Step::Close(conn));
        }
    }
    // Hairpinning: a neighbour on c1's network dials c1's external address, on a port c1
    // listens on and mapped by connecting out from it.
    let hairpin = match clients[0].nat {
        Some(nat) if rng.chance(0.5) => {
            let ext = SocketAddr::new(clients[0].ext_v4.into(), HAIRPIN_PORT);
            let server = SocketAddr::new(SERVER_V4.into(), 443);
            let plan = std::mem::replace(&mut clients[0].plan, Probe::new(epoch));
            clients[0].plan = plan
                .at(
                    ms(0),
                    Step::Listen {
                        listener: ListenerId(7),
                        local: SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), HAIRPIN_PORT),
                    },
                )
                .at(ms(100), Step::connect_from(200, HAIRPIN_PORT, server))
                .at(ms(300), Step::HalfClose(ConnId::Connect(200)))
                .close_on_eof();
            let neighbour = Probe::new(epoch)
                .at(ms(1000), Step::connect(1, ext))
                .at(ms(15_000), Step::Close(ConnId::Connect(1)));
            let spec = HostSpec::new("n1", clients[0].net).v4(Ipv4Addr::new(192, 168, 1, 77));
            let h = b.host(spec, neighbour);
            Some((
                h,
                nat.hairpinning
                    && nat.port_preservation
                    && nat.filtering == Behaviour::EndpointIndependent,
            ))
        }
        _ => None,
    };
    for c in &mut clients {
        let plan = std::mem::replace(&mut c.plan, Probe::new(epoch));
        let mut spec = HostSpec::new(&c.name, c.net)
            .v4(c.v4)
            .link(link(&mut rng, &mut lossy));
        if let Some(v6) = c.v6 {
            spec = spec.v6(v6);
        }
        c.host = Some(b.host(spec, plan));
    }
    let host = |c: &Client| c.host.ok_or_else(|| "a client has no host".to_owned());

    let flap = rng.chance(0.3);
    if flap {
        let c = rng.below(n as u64) as usize;
        let down = ms(rng.below(3000));
        let h = host(&clients[c])?;
        b.fault(down, Fault::LinkDown(LinkOf::Host(h))).fault(
            down + ms(200 + rng.below(3000)),
            Fault::LinkUp(LinkOf::Host(h)),
        );
        clients[c].cut = true;
    }
    if rng.chance(0.3) {
        let c = rng.below(n as u64) as usize;
        let from = ms(rng.below(3000));
        let h = host(&clients[c])?;
        b.fault(
            from,
            Fault::Partition {
                a: vec![h],
                b: vec![server],
            },
        )
        .fault(from + ms(100 + rng.below(3000)), Fault::Heal);
        clients[c].cut = true;
    }
    if rng.chance(0.3) {
        let from = ms(rng.below(3000));
        b.fault(
            from,
            Fault::Stall {
                host: server,
                port: Some(443),
            },
        )
        .fault(
            from + ms(100 + rng.below(5000)),
            Fault::Unstall {
                host: server,
                port: Some(443),
            },
        );
    }
    if rng.chance(0.2) {
        let c = rng.below(n as u64) as usize;
        b.fault(
            ms(rng.below(4000)),
            Fault::ResetConnections {
                host: host(&clients[c])?,
                port: None,
            },
        );
        clients[c].reset = true;
    }
    // The determinism check compares traces, so every run records one.
    let world = b
        .trace()
        .build()
        .map_err(|e| format!("cannot build: {e}"))?;
    Ok(Scenario {
        world,
        clients,
        p2p,
        dht,
        flap,
        lossy,
        hairpin,
    })
}

/// Runs one seed and checks it; the error says which invariant broke.
fn check(seed: u64) -> Result<World, (String, Option<Box<World>>)> {
    let mut s = build(seed).map_err(|e| (e, None))?;
    s.world.run_for(Duration::from_secs(60));
    match invariants(&s) {
        Ok(()) => Ok(s.world),
        Err(e) => Err((e, Some(Box::new(s.world)))),
    }
}

fn invariants(s: &Scenario) -> Result<(), String> {
    let world = &s.world;
    // A probe's own account of a contract breach says more than the world's record of
    // the refused input, so probes speak first.
    for c in &s.clients {
        let p: &Probe = world
            .endpoint(c.host.ok_or("no host")?)
            .ok_or("not a probe")?;
        if let Some(problem) = p.problems().first() {
            return Err(format!("{}: contract breach: {problem}", c.name));
        }
    }
    if let Some(v) = world.violations().first() {
        return Err(format!("violation: {v}"));
    }
    for c in &s.clients {
        let host = c.host.ok_or("no host")?;
        let p: &Probe = world.endpoint(host).ok_or("not a probe")?;
        if let Some(problem) = p.problems().first() {
            return Err(format!("{}: contract breach: {problem}", c.name));
        }
        for (k, len, cseed) in &c.streams {
            let conn = ConnId::Connect(*k);
            let log = p
                .conn(conn)
                .ok_or_else(|| format!("{} {conn}: never opened", c.name))?;
            let expect = content::range(*cseed, 0, log.received.len().min(*len));
            if log.received.len() > *len || log.received != expect {
                return Err(format!(
                    "{} {conn}: echo is not a prefix of what was sent",
                    c.name
                ));
            }
            match &log.state {
                ConnState::Closed if log.received.len() == *len => {}
                ConnState::Closed => {
                    return Err(format!(
                        "{} {conn}: closed cleanly with {} of {len} bytes",
                        c.name,
                        log.received.len()
                    ));
                }
                ConnState::Failed(ConnectError::TimedOut) if c.cut || s.lossy => {}
                ConnState::Reset | ConnState::Failed(ConnectError::Refused) if c.reset => {}
                other => {
                    return Err(format!(
                        "{} {conn}: ended {other:?} (faults: cut {}, reset {})",
                        c.name, c.cut, c.reset
                    ));
                }
            }
        }
    }
    if s.p2p {
        let (a, b) = (&s.clients[0], &s.clients[1]);
        let conn = ConnId::Connect(100);
        let state = |c: &Client| -> Result<ConnState, String> {
            let p: &Probe = world
                .endpoint(c.host.ok_or("no host")?)
                .ok_or("not a probe")?;
            p.state(conn)
                .ok_or_else(|| format!("{}: no p2p connection", c.name))
        };
        let (sa, sb) = (state(a)?, state(b)?);
        let faulted = a.cut || b.cut || a.reset || b.reset || s.lossy;
        let must = a.predictable && b.predictable && a.stateful && b.stateful;
        let cannot = !(a.predictable && b.predictable);
        let ok = |s: &ConnState| {
            matches!(
                s,
                ConnState::Dropped | ConnState::Closed | ConnState::HalfClosed
            )
        };
        let failed = |s: &ConnState| matches!(s, ConnState::Failed(_));
        if !faulted && must && !(ok(&sa) && ok(&sb)) {
            return Err(format!(
                "simultaneous open between predictable NATs failed: {sa:?} / {sb:?}"
            ));
        }
        if !faulted && cannot && !(failed(&sa) && failed(&sb)) {
            return Err(format!(
                "simultaneous open succeeded through an unpredictable NAT: {sa:?} / {sb:?}"
            ));
        }
        if ok(&sa) != ok(&sb) && !faulted {
            return Err(format!(
                "one side of a simultaneous open connected alone: {sa:?} / {sb:?}"
            ));
        }
    }
    if let Some((n1, must)) = s.hairpin {
        let c1 = &s.clients[0];
        let p: &Probe = world.endpoint(n1).ok_or("not a probe")?;
        if let Some(problem) = p.problems().first() {
            return Err(format!("n1: contract breach: {problem}"));
        }
        let state = p.state(ConnId::Connect(1)).ok_or("n1 never connected")?;
        let ok = matches!(
            state,
            ConnState::Dropped | ConnState::Closed | ConnState::HalfClosed
        );
        if !(c1.cut || c1.reset || s.lossy) && ok != must {
            return Err(format!(
                "hairpin through {:?}: expected success {must}, got {state:?}",
                c1.nat
            ));
        }
    }
    if let Some(spec) = s.dht {
        let put: Vec<Bytes> = (0..s.clients.len())
            .map(|i| dht_value(world.seed(), i))
            .collect();
        for c in &s.clients {
            let p: &Probe = world
                .endpoint(c.host.ok_or("no host")?)
                .ok_or("not a probe")?;
            let got: Vec<&Bytes> = p.dht_values().iter().map(|(_, _, v)| v).collect();
            if let Some(v) = got.iter().find(|v| !put.contains(v)) {
                return Err(format!("{}: DHT value nobody put: {v:?}", c.name));
            }
            if p.puts().len() != 1 {
                return Err(format!("{}: {} answers to one put", c.name, p.puts().len()));
            }
            let reliable = spec.loss == 0.0 && !s.flap;
            if reliable && !p.puts().iter().all(|(_, ok)| *ok) {
                return Err(format!("{}: a put failed on a lossless DHT", c.name));
            }
            for v in &put {
                let n = got.iter().filter(|g| **g == v).count();
                if reliable && n == 0 {
                    return Err(format!("{}: lossless DHT never delivered {v:?}", c.name));
                }
                if spec.duplicate == 0.0 && n > 1 {
                    return Err(format!(
                        "{}: {v:?} delivered {n} times without duplication",
                        c.name
                    ));
                }
            }
        }
    }
    if world.live_connections() != 0 {
        return Err(format!(
            "{} connections still alive after every endpoint let go",
            world.live_connections()
        ));
    }
    Ok(())
}

fn main() -> ExitCode {
    let mut seeds = 0..100u64;
    let mut trace = false;
    let mut with_faults = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|v| v.parse::<u64>().ok());
        match a.as_str() {
            "--seeds" => seeds = seeds.start..seeds.start + num().unwrap_or(100),
            "--from" => {
                let from = num().unwrap_or(0);
                seeds = from..from + (seeds.end - seeds.start);
            }
            "--seed" => {
                let s = num().unwrap_or(0);
                seeds = s..s + 1;
            }
            "--trace" => trace = true,
            "--faults" => with_faults = true,
            _ => {
                println!("usage: sweep [--from FIRST] [--seeds N | --seed S] [--faults] [--trace]");
                return ExitCode::from(2);
            }
        }
    }
    if with_faults {
        return fault_sweep(seeds, trace);
    }
    let count = seeds.end - seeds.start;
    let mut events = 0;
    let (mut simultaneous, mut hairpins, mut nat_drops, mut transfers) = (0, 0, 0, 0);
    for seed in seeds {
        let replay =
            format!("cargo run -p ferry-sim --release --example sweep -- --seed {seed} --trace");
        let first = match check(seed) {
            Ok(world) => world,
            Err((why, world)) => {
                if let (true, Some(world)) = (trace, world) {
                    print!("{}", world.trace());
                }
                println!("seed {seed} broke an invariant: {why}");
                println!("replay: {replay}");
                return ExitCode::FAILURE;
            }
        };
        // Determinism: the same seed again gives the same trace, byte for byte.
        let again = match check(seed) {
            Ok(world) => world,
            Err((why, _)) => {
                println!(
                    "seed {seed} broke an invariant on its second run (nondeterminism): {why}"
                );
                println!("replay: {replay}");
                return ExitCode::FAILURE;
            }
        };
        if first.trace() != again.trace() {
            println!("seed {seed}: two runs gave different traces");
            println!("replay: {replay}");
            return ExitCode::FAILURE;
        }
        events += first.stats().events;
        if seed % 4 == 0 {
            let runs = (nodes::check(seed), nodes::check(seed));
            match runs {
                (Ok(a), Ok(b)) if a.trace() == b.trace() => {
                    transfers += 1;
                    events += a.stats().events;
                }
                (Ok(_), Ok(_)) => {
                    println!("seed {seed}: two runs of the node world gave different traces");
                    println!("replay: {replay}");
                    return ExitCode::FAILURE;
                }
                (Err((why, world)), _) | (_, Err((why, world))) => {
                    if let (true, Some(world)) = (trace, world) {
                        print!("{}", world.trace());
                    }
                    println!("seed {seed} broke an invariant of the node world: {why}");
                    println!("replay: {replay}");
                    return ExitCode::FAILURE;
                }
            }
        }
        // What the seeds exercised, so a green sweep is not a vacuous one.
        let lines = first.trace();
        simultaneous += u64::from(lines.contains("simultaneous open"));
        let hairpinned = lines
            .lines()
            .any(|l| l.contains(" n1 ") && l.ends_with(" connected"));
        hairpins += u64::from(hairpinned);
        let dropped = lines.contains("dropped: filtered") || lines.contains("dropped: no mapping");
        nat_drops += u64::from(dropped);
        if trace {
            print!("{}", first.trace());
        }
    }
    println!("{count} seeds passed ({events} events), every one twice with identical traces");
    println!(
        "seeds with a simultaneous open: {simultaneous}, a hairpinned connection: {hairpins}, a SYN dropped by a NAT: {nat_drops}, a whole node transfer: {transfers}"
    );
    ExitCode::SUCCESS
}

/// The `--faults` sweep: the fault world of every seed, twice, with one trace.
fn fault_sweep(seeds: std::ops::Range<u64>, trace: bool) -> ExitCode {
    let count = seeds.end - seeds.start;
    let mut tally = faults::Tally::default();
    let mut events = 0;
    for seed in seeds {
        let replay = format!(
            "cargo run -p ferry-sim --release --example sweep -- --faults --seed {seed} --trace"
        );
        let outcome = std::panic::catch_unwind(|| (faults::check(seed), faults::check(seed)));
        match outcome {
            Err(_) => {
                println!("seed {seed} panicked");
                println!("replay: {replay}");
                return ExitCode::FAILURE;
            }
            Ok((Ok((a, t)), Ok((b, _)))) if a.trace() == b.trace() => {
                if trace {
                    print!("{}", a.trace());
                }
                events += a.stats().events;
                tally.add(&t);
            }
            Ok((Ok(_), Ok(_))) => {
                println!("seed {seed}: two runs of the fault world gave different traces");
                println!("replay: {replay}");
                return ExitCode::FAILURE;
            }
            Ok((Err((why, world)), _) | (_, Err((why, world)))) => {
                if let (true, Some(world)) = (trace, world) {
                    print!("{}", world.trace());
                }
                println!("seed {seed} broke an invariant of the fault world: {why}");
                println!("replay: {replay}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!(
        "{count} seeds of whole transfers through faults passed ({events} events), every one twice with identical traces"
    );
    let list = |m: &std::collections::BTreeMap<&str, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("faults injected: {}", list(&tally.faults));
    println!("invariants checked: {}", list(&tally.checks));
    ExitCode::SUCCESS
}
