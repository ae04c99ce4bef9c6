//! The whole-node target: two [`Node`]s (Alice's device sends a file to Bob's account, and
//! either may send more) in an in-memory world ([`world`]) where the fuzz script decides what
//! is delivered when, and what goes wrong: streams cut anywhere, corrupted, reset or fed a
//! hostile peer's bytes; strangers' connections with bytes of the script's choosing (the
//! unrouted side); DHT values replayed, forged, duplicated, lost, or sealed by strangers
//! with candidates of the script's choosing; timers fired early or late; put, connect and
//! disk failures; the application accepting, refusing, cancelling, sending again or
//! shutting down at any moment.
//!
//! After every step it checks ([`check`]): no panic anywhere; every output well-formed for
//! what the node was told (no send on a connection it ended or never had, no file operation
//! on a file that is not open, no DHT value over the limit, sane events); the node's tables
//! under their documented bounds (connectors, unrouted connections, transfers, replay
//! memory, devices, timers) and no child error counted in [`Bugs`](ferry_proto::node::Bugs);
//! and no final file with other bytes than were sent. An all-zero script delivers everything
//! in order: the file arrives and is verified on both sides, which the target asserts.

mod check;
mod world;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{DhtKey, Input};
use ferry_proto::node::Node;
use ferry_proto::signal::{self, PeerConnection, SeededRng};
use ferry_proto::tls::{Account, Device};

use self::check::{Checker, bounds};
use self::world::{Disk, World, ip_of};
use super::Script;
use crate::identity::{Seeds, node_config};

/// Most steps of one run: a script ends there even if it has bytes left.
const MAX_STEPS: usize = 2_000;
/// Most steps once the script is used up.
const MAX_TAIL: usize = 400;

/// The target's accounts and devices, made once (keys from fixed seeds).
struct Cast {
    alice: Account,
    a1: Device,
    bob: Account,
    b1: Device,
    /// Devices of two stranger accounts, for requests and announcements the script forges.
    strangers: Vec<Device>,
}

fn cast() -> &'static Cast {
    static CAST: OnceLock<Cast> = OnceLock::new();
    CAST.get_or_init(|| {
        let seeds = Seeds::new(b"fuzz-node-accounts", b"fuzz-node-devices");
        let (alice, bob) = (seeds.account("alice"), seeds.account("bob"));
        let (a1, b1) = (seeds.device(&alice, "a1"), seeds.device(&bob, "b1"));
        let mut strangers = Vec::new();
        for account in ["mallory", "trudy"] {
            let account = seeds.account(account);
            for n in 0..4 {
                strangers.push(seeds.device(&account, &format!("{n}")));
            }
        }
        Cast {
            alice,
            a1,
            bob,
            b1,
            strangers,
        }
    })
}

/// The whole-node target's body: see the module docs.
pub fn node(data: &[u8]) {
    let mut s = Script::new(data);
    let flags = s.byte();
    let seed = u64::from(s.u16());
    // An all-zero script sends 4,660 bytes.
    let size = usize::from(s.u16() ^ 0x1234) % 24_000;
    let cast = cast();
    let epoch = Instant::now();
    let mut configs = [
        node_config(epoch, &cast.alice, &cast.a1, ip_of(0), seed),
        node_config(epoch, &cast.bob, &cast.b1, ip_of(1), seed ^ 0x5a5a),
    ];
    configs[1].ask_before_connecting = flags & 2 != 0;
    configs[1].only_contacts = flags & 4 != 0;
    if flags & 8 != 0 {
        configs[1].contacts.insert(cast.alice.id());
    }
    configs[1].auto_accept_images_under = (flags & 16 != 0).then_some(1 << 20);
    let [c0, c1] = configs;
    let source: Bytes = (0..size).map(|i| (i * 7 + i / 251) as u8).collect();
    let mut w = World {
        now: epoch,
        nodes: [Node::new(epoch, c0), Node::new(epoch, c1)],
        checkers: [Checker::default(), Checker::default()],
        pending: Default::default(),
        links: Vec::new(),
        dht: Vec::new(),
        listens: [Vec::new(), Vec::new()],
        disks: [Disk::default(), Disk::default()],
        source,
        refuse_next_connect: [false; 2],
        offers: [Vec::new(), Vec::new()],
        transfers: [Vec::new(), Vec::new()],
        auto_accept: flags & 1 == 0,
        verified: [0; 2],
    };
    w.drain(0);
    w.drain(1);
    send(&mut w, 0, cast.bob.id());
    let mut tail = 0;
    for _ in 0..MAX_STEPS {
        // Once the script is used up, everything goes in order for a while, long enough
        // for a transfer under way to end.
        if s.is_empty() {
            tail += 1;
            if tail > MAX_TAIL || (tail > 8 && quiet(&w)) {
                break;
            }
        }
        step(&mut w, &mut s);
        for side in 0..2 {
            bounds(side, &w.nodes[side], w.checkers[side].groups);
        }
    }
    if data.iter().all(|b| *b == 0) {
        // Nothing went wrong: the file went through, verified on both sides.
        assert_eq!(w.verified[1], 1, "the file was not received and verified");
        assert_eq!(w.disks[1].committed.len(), 1);
    }
}

/// The application of `side` sends the file to `account`.
fn send(w: &mut World, side: usize, account: ferry_proto::tls::AccountId) {
    let now = w.now;
    let group = w.nodes[side].send_file(now, account, "source".into(), "file.bin".into());
    w.transfers[side].push(group);
    w.checkers[side].groups += 1;
    w.drain(side);
}

/// One step of the script; whether anything happened.
fn step(w: &mut World, s: &mut Script<'_>) -> bool {
    let op = s.byte();
    let side = usize::from(s.byte() & 1);
    match op % 16 {
        1 => {
            let streams = w.deliverable();
            let Some(&(l, e)) = pick(&streams, s.byte()) else {
                return progress(w);
            };
            w.deliver(l, e, None, None);
        }
        2 => {
            let streams = w.deliverable();
            let Some(&(l, e)) = pick(&streams, s.byte()) else {
                return progress(w);
            };
            let cut = usize::from(s.u16());
            w.deliver(l, e, Some(cut), None);
        }
        3 => {
            let streams = w.deliverable();
            let Some(&(l, e)) = pick(&streams, s.byte()) else {
                return progress(w);
            };
            let flip = (usize::from(s.u16()), s.byte());
            w.deliver(l, e, None, Some(flip));
        }
        4 => {
            let n = w.links.len();
            if n == 0 {
                return progress(w);
            }
            let l = usize::from(s.byte()) % n;
            w.reset_link(l, None);
        }
        5 => {
            let later = w.now + Duration::from_millis(u64::from(s.u16()) * 10);
            w.advance(later);
        }
        6 => return fire(w),
        7 => {
            // A value stored on the DHT comes again (a replay, or a duplicate).
            let Some((key, value)) = pick(&w.dht, s.byte()).cloned() else {
                return progress(w);
            };
            w.input(side, Input::DhtValue { key, value });
        }
        8 => {
            let key = hostile_key(side, s.byte());
            let value = Bytes::copy_from_slice(s.piece());
            w.input(side, Input::DhtValue { key, value });
        }
        9 => {
            // A stored value with one byte changed: a forged signature or seal.
            let Some((key, value)) = pick(&w.dht, s.byte()).cloned() else {
                return progress(w);
            };
            let mut value = value.to_vec();
            let at = usize::from(s.u16()) % value.len().max(1);
            if let Some(b) = value.get_mut(at) {
                *b ^= s.byte().max(1);
            }
            w.input(
                side,
                Input::DhtValue {
                    key,
                    value: value.into(),
                },
            );
        }
        10 => {
            let remote = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 9, s.byte() & 3, s.byte() & 7)),
                1024 + u16::from(s.byte()),
            );
            let l = w.stranger_connects(side, remote);
            let data = s.piece();
            if !data.is_empty() {
                w.links[l].toward[0].push_back(world::Chunk::Data(Bytes::copy_from_slice(data)));
            }
        }
        11 => {
            // A hostile peer or an on-path attacker writes into a stream.
            let n = w.links.len();
            if n == 0 {
                return progress(w);
            }
            let l = usize::from(s.byte()) % n;
            let e = usize::from(s.byte() & 1);
            let data = s.piece();
            if !data.is_empty() {
                w.links[l].toward[e].push_back(world::Chunk::Data(Bytes::copy_from_slice(data)));
            }
        }
        12 => application(w, side, s),
        13 => {
            let Some((key, _)) = w.dht.last().cloned() else {
                return progress(w);
            };
            w.input(side, Input::DhtPutDone { key, ok: false });
        }
        14 => w.disks[side].fail_next = true,
        15 => w.refuse_next_connect[side] = true,
        _ => {
            let forged = op >= 0xf0;
            if forged {
                stranger_request(w, side, s);
            } else {
                return progress(w);
            }
        }
    }
    true
}

/// Whether nothing is left to deliver and neither node has a deadline within two minutes
/// (only their periodic announcements and the like).
fn quiet(w: &World) -> bool {
    use ferry_proto::io::Endpoint as _;
    w.pending.is_empty()
        && w.deliverable().is_empty()
        && w.nodes
            .iter()
            .filter_map(|n| n.poll_timeout())
            .all(|at| at > w.now + Duration::from_secs(120))
}

/// Everything in order: the first pending input, else the first stream that can deliver,
/// else the next timer. Whether anything happened.
fn progress(w: &mut World) -> bool {
    if w.deliver_pending() {
        return true;
    }
    if let Some(&(l, e)) = w.deliverable().first() {
        w.deliver(l, e, None, None);
        return true;
    }
    fire(w)
}

/// Lets time pass to the earliest deadline of either node.
fn fire(w: &mut World) -> bool {
    let next = w.nodes.iter().filter_map(|n| {
        use ferry_proto::io::Endpoint as _;
        n.poll_timeout()
    });
    match next.min() {
        Some(at) => {
            w.advance(at.max(w.now));
            true
        }
        None => false,
    }
}

fn pick<T>(items: &[T], byte: u8) -> Option<&T> {
    (!items.is_empty()).then(|| &items[usize::from(byte) % items.len()])
}

/// A key the script writes a value under: one a node listens to (its own key, for sealed
/// requests and answers; the peer's account, for announcements), or its own account's.
fn hostile_key(side: usize, byte: u8) -> DhtKey {
    let cast = cast();
    let (me, peer) = if side == 0 {
        (&cast.a1, &cast.bob)
    } else {
        (&cast.b1, &cast.alice)
    };
    match byte % 3 {
        0 => signal::peer_key(&me.id()),
        1 => signal::devices_key(&peer.id()),
        _ => signal::devices_key(&me.account()),
    }
}

/// A stranger's device seals a real request (or answer) to `side`, with candidates of the
/// script's choosing: it opens and verifies, so it reaches the connectors.
fn stranger_request(w: &mut World, side: usize, s: &mut Script<'_>) {
    let cast = cast();
    let from = &cast.strangers[usize::from(s.byte()) % cast.strangers.len()];
    let to = if side == 0 { &cast.a1 } else { &cast.b1 };
    let target = match s.byte() % 3 {
        0 => world::listen_addr(side, ferry_proto::io::ListenerId(1)),
        1 => world::listen_addr(1 - side, ferry_proto::io::ListenerId(1)),
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1)), 9),
    };
    let message = PeerConnection {
        id: u64::from(s.u16()),
        is_answer: s.byte() & 1 == 1,
        ice: format!(
            "fuzzufrag\nfuzzpasswordfuzzpassword\nH1 1 TCP 2130706431 {} {} typ host tcptype passive\n",
            target.ip(),
            target.port()
        ),
        addresses: Vec::new(),
        seal: Some(from.seal_public_key()),
        time: None,
    };
    let mut rng = SeededRng::new(u64::from(s.u16()));
    let Ok(value) = signal::seal(from, &to.recipient(), &message.encode(), &mut rng) else {
        return;
    };
    let key = signal::peer_key(&to.id());
    w.input(
        side,
        Input::DhtValue {
            key,
            value: value.into(),
        },
    );
}

/// What `side`'s application does: accept, refuse or cancel, send again, or shut down.
fn application(w: &mut World, side: usize, s: &mut Script<'_>) {
    let now = w.now;
    let choice = s.byte();
    match choice % 6 {
        0 | 1 => {
            let Some(&t) = pick(&w.offers[side], s.byte()) else {
                return;
            };
            w.offers[side].retain(|o| *o != t);
            // An offer taken already (cancelled by its sender, say) answers Err: fine.
            let _ = if choice % 6 == 0 {
                w.nodes[side].accept(now, t)
            } else {
                w.nodes[side].refuse(now, t)
            };
        }
        2 => {
            let Some(&t) = pick(&w.transfers[side], s.byte()) else {
                return;
            };
            w.nodes[side].cancel(now, t);
        }
        3 | 4 if w.checkers[side].groups < 8 => {
            let cast = cast();
            let account = match s.byte() % 3 {
                0 => cast.bob.id(),
                1 => cast.alice.id(),
                _ => cast.strangers[0].account(),
            };
            return send(w, side, account);
        }
        5 if s.byte() == 0x5d => w.nodes[side].shutdown(now),
        _ => return,
    }
    w.drain(side);
}
