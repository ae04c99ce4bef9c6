//! The sweep's third world (`--faults`): whole transfers through faults drawn from the seed.
//!
//! Alice, behind a random NAT, firewall or none, sends a file of random size to Bob on the
//! internet, over links of random latency, jitter, bandwidth and loss, and a DHT of random
//! latency, loss and duplication. At random times, up to three of: a link flap (short, or
//! longer than every consent timeout), a reset of every connection of either side, the NAT
//! losing its mappings (rebinding), a stall of either side, a cancel from the sender or from
//! the receiver. On three seeds in ten both nodes also have a TURN server (and on half of
//! those Bob offers only relayed candidates, so the transfer runs through it), and the server
//! restarts once or twice at random times, losing every allocation, permission and
//! connection, as coturn does when restarted. Then, if the file did not arrive, every fault
//! is healed and, once the first attempt's negotiations are over, Alice sends it again.
//!
//! Invariants, each counted when checked:
//! - `terminal`: every transfer of the first attempt, on both sides, reaches a final state
//!   within [`BOUND`] of virtual time, whatever the faults;
//! - `no_corrupt_file`: a file under its final name always has the sent bytes (the digest of
//!   the generated content), after each attempt;
//! - `again_verified`: once the faults are healed, sending again finishes and the file is
//!   verified (resuming from what Bob holds, or from the start);
//! - `no_leak`: once both sides are idle, neither holds a socket (lingering closes included)
//!   but its TURN allocation's, and nothing is left half-closed;
//! - `relay_reallocated`: with a relay, each node holds its allocation again once idle (a
//!   relayed address, and its connection to the TURN server),
//!   whatever restarts the server went through;
//! - determinism is checked by the caller (two runs, one trace).
//!
//!
//! On a quarter of the seeds one process also crashes, Alice's or Bob's, at a random time
//! while the first attempt runs ([`World::crash_and_restart`]): its sockets are reset, its
//! open files closed, its memory lost; the partial data it wrote and its records (here, the
//! ids of the send) are kept, and it starts again at once. The invariants then cover the
//! survivor: its transfers end in bounded time; and once the faults heal, Alice sends again
//! under the ids her records kept, as `ferry send` does, and the file arrives verified,
//! resumed with its prefix checked or started from zero (`resumed_verified`, `restarted`),
//! never ending in a digest mismatch.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_proto::io::{CLOSE_LINGER, Event};
use ferry_proto::node::{IDLE_TIMEOUT, Node};
use ferry_proto::tls::DeviceId;
use ferry_proto::transfer::{LINGER, Status, TransferId};
use ferry_proto::turn::TurnConfig;
use ferry_sim::rng::SimRng;
use ferry_sim::turn_server::{TurnServer, TurnServerConfig};
use ferry_sim::{DhtSpec, Fault, HostId, HostSpec, LinkOf, LinkSpec, World};

use crate::crash::{Crash, Sent, how_it_started, records_of};
use crate::nodes::Pair;

/// The most virtual time an attempt may take to reach final states on both sides.
pub(crate) const BOUND: Duration = Duration::from_secs(15 * 60);

/// How long after the last fault (and the first attempt's end) Alice sends again: every
/// negotiation the first attempt started has ended by then (an answer's wait, then ICE).
const SETTLE: Duration = Duration::from_secs(45);

/// How long after the last fault Alice sends again when there is a relay: a TURN client
/// whose server restarted while the reset could not reach it (its link down or stalled)
/// learns that its allocation is gone when its next Refresh fails, at most the keepalive
/// ([`TurnConfig::keepalive`], 60 s) and a request's timeout (10 s) later, and allocates again
/// [`RELAY_RETRY`](ferry_proto::node::RELAY_RETRY) after that; until then it still offers the
/// dead relayed address. (Before the keepalive it was half the lifetime, 300 s: 420 s here.)
const RELAY_SETTLE: Duration = Duration::from_secs(150);

/// What a seed did: faults injected and invariants checked, by name.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) faults: BTreeMap<&'static str, u64>,
    pub(crate) checks: BTreeMap<&'static str, u64>,
}

impl Tally {
    fn fault(&mut self, name: &'static str) {
        *self.faults.entry(name).or_default() += 1;
    }

    fn check(&mut self, name: &'static str) {
        *self.checks.entry(name).or_default() += 1;
    }

    pub(crate) fn add(&mut self, other: &Tally) {
        for (k, v) in &other.faults {
            *self.faults.entry(k).or_default() += v;
        }
        for (k, v) in &other.checks {
            *self.checks.entry(k).or_default() += v;
        }
    }
}

/// A user's action at a time.
#[derive(Debug, Clone, Copy)]
enum Cancel {
    BySender(Duration),
    ByReceiver(Duration),
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

type Broke = (String, Option<Box<World>>);

/// Runs the fault world of `seed` and checks it.
pub(crate) fn check(seed: u64) -> Result<(World, Tally), Broke> {
    let mut rng = SimRng::new(seed ^ 0x6661_756c_7473);
    let mut tally = Tally::default();
    let mut b = World::builder(seed);
    let dht = DhtSpec {
        latency: ms(10 + rng.below(300)),
        jitter: ms(rng.below(200)),
        loss: if rng.chance(0.3) { 0.2 } else { 0.0 },
        duplicate: if rng.chance(0.3) { 0.2 } else { 0.0 },
        ..DhtSpec::default()
    };
    if dht.loss > 0.0 {
        tally.fault("dht_loss");
    }
    if dht.duplicate > 0.0 {
        tally.fault("dht_duplication");
    }
    let healed_dht = DhtSpec {
        loss: 0.0,
        duplicate: 0.0,
        ..dht
    };
    b.dht(dht);
    // The relay is drawn from a generator of its own: a seed without one builds the world it
    // built before relays were drawn.
    let mut relay_rng = SimRng::new(seed ^ 0x7475_726e);
    let turn_addr = std::net::SocketAddr::from(([198, 51, 100, 3], 3478));
    let relay = relay_rng.chance(0.3).then(|| {
        (
            TurnConfig::new(turn_addr, "ferry", "secret"),
            relay_rng.chance(0.5),
        )
    });
    let (mut lossy, mut clean_uplink) = (false, None);
    let pair = Pair::build(
        &mut b,
        &mut rng,
        seed,
        2_000_000,
        |rng, uplink| {
            clean_uplink = Some(uplink);
            lossy = rng.chance(0.2);
            if lossy {
                uplink.with_loss(0.02)
            } else {
                uplink
            }
        },
        relay.clone(),
    )
    .map_err(|e| (e, None))?;
    let (bob, kind, router, ha, hb, size) = (
        &pair.bob,
        pair.kind,
        pair.router,
        pair.ha,
        pair.hb,
        pair.size,
    );
    let turn_host = relay.as_ref().map(|(_, only)| {
        tally.fault(if *only {
            "relay_only_path"
        } else {
            "relay_offered"
        });
        let internet = b.internet();
        b.host(
            HostSpec::new("turn", internet)
                .v4([198, 51, 100, 3])
                .link(LinkSpec::latency(ms(5))),
            TurnServer::new(TurnServerConfig::new(turn_addr, "ferry", "secret", "sim")),
        )
    });
    if lossy {
        tally.fault("link_loss");
    }
    let mut world = b
        .trace()
        .build()
        .map_err(|e| (format!("cannot build: {e}"), None))?;

    // The faults of this seed, at times around the transfer (it starts at 1 s).
    let mut cancel = None;
    let mut heal = Vec::new();
    let mut last_fault = Duration::ZERO;
    for _ in 0..rng.below(4) {
        let at = ms(1_000 + rng.below(15_000));
        let long = rng.chance(0.3);
        let lasting = if long {
            ms(20_000 + rng.below(40_000))
        } else {
            ms(100 + rng.below(5_000))
        };
        last_fault = last_fault.max(at + lasting);
        match rng.below(6) {
            0 => {
                let of = match rng.below(3) {
                    0 => LinkOf::Host(ha),
                    1 => LinkOf::Router(router),
                    _ => LinkOf::Host(hb),
                };
                world.schedule(at, Fault::LinkDown(of));
                world.schedule(at + lasting, Fault::LinkUp(of));
                heal.push(Fault::LinkUp(of));
                tally.fault(if long { "link_down_long" } else { "link_flap" });
            }
            1 => {
                let host = if rng.chance(0.5) { ha } else { hb };
                world.schedule(at, Fault::ResetConnections { host, port: None });
                tally.fault("reset");
            }
            2 if kind.translates() => {
                world.schedule(at, Fault::Rebind(router));
                tally.fault("nat_rebinding");
            }
            3 => {
                let host = if rng.chance(0.5) { ha } else { hb };
                world.schedule(at, Fault::Stall { host, port: None });
                world.schedule(at + lasting, Fault::Unstall { host, port: None });
                heal.push(Fault::Unstall { host, port: None });
                tally.fault("stall");
            }
            4 if cancel.is_none() => {
                cancel = Some(Cancel::BySender(at));
                tally.fault("cancel_by_sender");
            }
            5 if cancel.is_none() => {
                cancel = Some(Cancel::ByReceiver(at));
                tally.fault("cancel_by_receiver");
            }
            _ => {}
        }
    }

    if let Some(turn) = turn_host {
        for _ in 0..1 + relay_rng.below(2) {
            let at = ms(1_000 + relay_rng.below(15_000));
            world.schedule(at, Fault::RestartTurn(turn));
            last_fault = last_fault.max(at);
            tally.fault("turn_restart");
        }
    }

    // A process crash, drawn from a generator of its own: a seed without one builds and runs
    // the world it did before crashes were drawn.
    let mut crash_rng = SimRng::new(seed ^ 0x0063_7261_7368);
    let mut crash = crash_rng.chance(0.25).then(|| Crash {
        bob: crash_rng.chance(0.5),
        at: ms(1_000 + crash_rng.below(15_000)),
        seed: crash_rng.next_u64(),
    });
    if let Some(c) = &crash {
        last_fault = last_fault.max(c.at);
    }

    world.run_for(Duration::from_secs(1));
    let source = format!("seed:{seed}:{size}");
    let first = attempt(
        &mut world,
        (ha, hb),
        &bob.id(),
        &source,
        cancel,
        (&pair, &mut crash),
    );
    let (group, first) = match first {
        Ok(ended) => ended,
        Err(why) => return Err((why, Some(Box::new(world)))),
    };
    // The crash came, or the attempt ended before it was due (then it never comes).
    let crashed = group.crashed;
    if crashed {
        tally.fault(if group.crashed_bob {
            "crash_receiver"
        } else {
            "crash_sender"
        });
    }
    tally.check("terminal");
    if let Err(why) = no_corrupt_file(&world, hb, seed, size) {
        return Err((why, Some(Box::new(world))));
    }
    tally.check("no_corrupt_file");

    if first != Some(Status::Finished) {
        // The path returns: every fault that ends is over, the DHT and the uplink lose
        // nothing any more; the NAT keeps its new mappings. (On a lossy path a connect's
        // handshake can outlast ICE's connect timeout, and a failed pair is not retried:
        // [reach] is to retry connects.)
        // And the first attempt's negotiations are over: a send that joins a connector
        // whose only pair died with the path waits for that ICE session's timeout and
        // fails (ICE-TCP does not retry a failed pair; [reach] is to retry connects), so
        // the send again comes once they are settled.
        let settle = if turn_host.is_some() {
            RELAY_SETTLE
        } else {
            SETTLE
        };
        let settled = last_fault.max(world.now()) + settle;
        world.run_until(settled);
        world.set_dht(healed_dht);
        if let Some(clean) = clean_uplink {
            world.set_link(LinkOf::Router(router), clean);
        }
        for f in heal {
            let now = world.now();
            world.schedule(now, f);
        }
        world.run_for(Duration::from_secs(1));
        // After a crash Alice sends again under the ids her records kept (as `ferry send`
        // does), so that what Bob kept is taken up; otherwise as a new send.
        let records = crashed.then(|| records_of(&world, ha, group.id));
        let again_from = world.now();
        let again = attempt_again(&mut world, (ha, hb), &bob.id(), &source, records);
        match again {
            Ok(Some(Status::Finished)) => {}
            Ok(other) => {
                let why = format!("sent again after {first:?} and the faults healed: {other:?}");
                return Err((why, Some(Box::new(world))));
            }
            Err(why) => return Err((format!("sent again: {why}"), Some(Box::new(world)))),
        }
        if crashed {
            match how_it_started(&world, hb, again_from) {
                Ok(name) => tally.check(name),
                Err(why) => return Err((why, Some(Box::new(world)))),
            }
        }
        match no_corrupt_file(&world, hb, seed, size) {
            Ok(true) => tally.check("again_verified"),
            Ok(false) => {
                let why = "sent again and finished, but no file under its name".to_owned();
                return Err((why, Some(Box::new(world))));
            }
            Err(why) => return Err((why, Some(Box::new(world)))),
        }
    }

    // Idle: each channel ends (at most its linger), then the connection closes from both
    // sides after the idle timeout, then lingering closes end.
    world.run_for(LINGER + IDLE_TIMEOUT + CLOSE_LINGER + Duration::from_secs(5));
    // A node with a relay keeps one connection: its allocation's, to the TURN server.
    let kept = usize::from(turn_host.is_some());
    let held = (world.held_sockets(ha), world.held_sockets(hb));
    // A held socket is not proof of an allocation (a control connection that died silently
    // is held too, as the TURN keepalive's first run showed): each node must also have its
    // relayed address.
    let mut allocations = |h: HostId| {
        world
            .with_endpoint(h, |n: &mut Node, _| n.relayed().len())
            .unwrap_or(0)
    };
    let allocated = (allocations(ha), allocations(hb));
    if kept > 0 && (held.0 < kept || held.1 < kept || allocated.0 < kept || allocated.1 < kept) {
        let why = format!(
            "idle, and a node holds no relay allocation (sockets held, alice and bob: {held:?}; \
             relayed addresses: {allocated:?}): it never allocated again after the TURN \
             server restarted"
        );
        return Err((why, Some(Box::new(world))));
    }
    if kept > 0 {
        tally.check("relay_reallocated");
    }
    if held != (kept, kept) || !world.close_wait().is_empty() {
        let why = format!(
            "idle, and still holding sockets (alice, bob) {held:?}; half-closed: {:?}",
            world.close_wait()
        );
        return Err((why, Some(Box::new(world))));
    }
    tally.check("no_leak");
    if let Some(v) = world.violations().first() {
        return Err((format!("violation: {v}"), Some(Box::new(world))));
    }
    Ok((world, tally))
}

/// Alice sends the file again (under `records`' ids when given); Bob accepts.
fn attempt_again(
    world: &mut World,
    (ha, hb): (HostId, HostId),
    to: &ferry_proto::tls::AccountId,
    source: &str,
    records: Option<(TransferId, BTreeMap<DeviceId, TransferId>)>,
) -> Result<Option<Status>, String> {
    let send = Send {
        to,
        source,
        records,
    };
    attempt_with(world, (ha, hb), send, None, None).map(|(_, status)| status)
}

/// What Alice sends.
struct Send<'a> {
    to: &'a ferry_proto::tls::AccountId,
    source: &'a str,
    records: Option<(TransferId, BTreeMap<DeviceId, TransferId>)>,
}

/// Alice sends the file; Bob accepts each offer; `cancel` and the crash happen when due.
/// Returns the group and its final status (`None` if Alice's process crashed: her new process
/// knows nothing of it) once it and every transfer Bob's live process was offered are final,
/// or why not.
fn attempt(
    world: &mut World,
    (ha, hb): (HostId, HostId),
    to: &ferry_proto::tls::AccountId,
    source: &str,
    cancel: Option<Cancel>,
    (pair, crash): (&Pair, &mut Option<Crash>),
) -> Result<(Sent, Option<Status>), String> {
    let send = Send {
        to,
        source,
        records: None,
    };
    attempt_with(world, (ha, hb), send, cancel, Some((pair, crash)))
}

fn attempt_with(
    world: &mut World,
    (ha, hb): (HostId, HostId),
    send: Send<'_>,
    cancel: Option<Cancel>,
    mut crash: Option<(&Pair, &mut Option<Crash>)>,
) -> Result<(Sent, Option<Status>), String> {
    let start = world.now();
    // Offers since then are this attempt's (after Bob's crash, his new process's).
    let mut since = start;
    let Send {
        to,
        source,
        records,
    } = send;
    let group = world
        .with_endpoint(ha, |n: &mut Node, now| match records {
            Some((group, devices)) => n.send_file_again(
                now,
                *to,
                source.to_owned(),
                "sweep.bin".into(),
                group,
                devices,
            ),
            None => n.send_file(now, *to, source.to_owned(), "sweep.bin".into()),
        })
        .ok_or("a1 is not a node")?;
    let mut sent = Sent {
        id: group,
        crashed: false,
        crashed_bob: false,
    };
    let mut answered: Vec<TransferId> = Vec::new();
    let mut cancelled = false;
    loop {
        let offered = offers(world, hb, since);
        // The group of a process that crashed has no end to report: its new process never
        // heard of it.
        let group_end = match sent.crashed && !sent.crashed_bob {
            true => Some(None),
            false => final_of(world, ha, group, true, start).map(Some),
        };
        let all_final = offered
            .iter()
            .all(|t| final_of(world, hb, *t, false, start).is_some());
        if let (Some(status), true) = (group_end, all_final) {
            return Ok((sent, status));
        }
        if let Some((pair, slot)) = crash.as_mut()
            && slot.is_some_and(|c| world.now() >= c.at)
            && let Some(c) = slot.take()
        {
            let host = if c.bob { hb } else { ha };
            let node = pair.restarted(c.bob, world.instant(), c.seed)?;
            world.crash_and_restart(host, node);
            sent.crashed = true;
            sent.crashed_bob = c.bob;
            if c.bob {
                // What the crashed process was offered ended with it.
                since = world.now();
                answered.clear();
            }
        }
        if world.now() - start > BOUND {
            return Err(format!(
                "not final after {BOUND:?}: sender {group_end:?}, receiver {:?}",
                offered
                    .iter()
                    .map(|t| final_of(world, hb, *t, false, start))
                    .collect::<Vec<_>>()
            ));
        }
        for t in offered
            .iter()
            .filter(|t| !answered.contains(t))
            .copied()
            .collect::<Vec<_>>()
        {
            answered.push(t);
            // An offer may be withdrawn before the answer: then accept is an error, fine.
            let _ = world.with_endpoint(hb, |n: &mut Node, now| n.accept(now, t));
        }
        match cancel {
            Some(Cancel::BySender(at)) if !cancelled && world.now() >= at => {
                cancelled = true;
                world.with_endpoint(ha, |n: &mut Node, now| n.cancel(now, group));
            }
            Some(Cancel::ByReceiver(at)) if !cancelled && world.now() >= at => {
                if let Some(t) = offered.last().copied() {
                    cancelled = true;
                    world.with_endpoint(hb, |n: &mut Node, now| n.cancel(now, t));
                }
            }
            _ => {}
        }
        world.run_for(ms(50));
    }
}

/// The transfers `host` was offered since `since` (ids, since a send again under its records'
/// ids offers one id twice).
pub(crate) fn offers(world: &World, host: HostId, since: Duration) -> Vec<TransferId> {
    world
        .events::<Event>(host)
        .iter()
        .filter(|(at, _)| *at >= since)
        .filter_map(|(_, e)| match e {
            Event::IncomingTransfer { transfer, .. } => Some(*transfer),
            _ => None,
        })
        .collect()
}

/// The final status of `t` on `host` since `since`: a group's aggregate (`group`), else a
/// transfer's. (A send again under its records' ids reuses the ids of an earlier one.)
fn final_of(
    world: &World,
    host: HostId,
    t: TransferId,
    group: bool,
    since: Duration,
) -> Option<Status> {
    world
        .events::<Event>(host)
        .iter()
        .rev()
        .take_while(|(at, _)| *at >= since)
        .find_map(|(_, e)| match e {
            Event::Aggregate {
                group: g, status, ..
            } if group && *g == t && status.is_final() => Some(*status),
            Event::Status {
                transfer, status, ..
            } if !group && *transfer == t && status.is_final() => Some(*status),
            _ => None,
        })
}

/// Whether a file is under its final name; an error if it does not hold the sent bytes.
fn no_corrupt_file(world: &World, hb: HostId, seed: u64, size: u64) -> Result<bool, String> {
    let Some(f) = world.received_file(hb, "sweep.bin") else {
        return Ok(false);
    };
    let digest = ferry_sim::files::Source { size, seed }.digest();
    if (f.len, f.digest()) == (size, digest) {
        Ok(true)
    } else {
        Err(format!(
            "a corrupt file under its final name: {} bytes, digest differs",
            f.len
        ))
    }
}
