//! A world of Ferry's native OpenDHT nodes (`ferry_proto::opendht::node::Node`) on the
//! simulator's UDP ([`crate::udp`]): some public, the rest behind NATs of every RFC 4787
//! kind, with churn, on a virtual clock.
//!
//! [`DhtWorld::run_until`] advances the clock from one event (a datagram arriving, a node's
//! deadline, a churn step) to the next. A node's deadline is indexed, so a step costs a
//! logarithm of the world's size, not its size. The experiment of `tests/dht_network.rs`
//! puts a value from one node and gets it from another ([`DhtWorld::put_then_get`]).
//!
//! The trace is the list of what the world did at each churn step and trial, with the UDP
//! counters: the same seed gives the same trace.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ferry_proto::opendht::InfoHash;
use ferry_proto::opendht::message::Want;
use ferry_proto::opendht::node::{Config, Event, Node};
use ferry_proto::opendht::value::Value;

use crate::nat::Behaviour;
use crate::rng::SimRng;
use crate::udp::{UdpFaults, UdpHost, UdpNat, UdpNet};

/// The port every simulated node binds (OpenDHT's).
const PORT: u16 = 4222;
/// How often a node whose table is empty tries its bootstrap nodes again, as the driver's
/// native backend does (`ferry_driver::native_dht::REBOOTSTRAP`; OpenDHT's `DhtRunner` too).
const REBOOTSTRAP: Duration = Duration::from_secs(20);
/// How long a trial waits for its put's first round, then for its get.
const TRIAL_PATIENCE: Duration = Duration::from_secs(120);

/// How a world is made.
#[derive(Debug, Clone, Copy)]
pub struct DhtWorldSpec {
    /// Nodes in all.
    pub nodes: usize,
    /// The share of them that is public (the rest is behind NATs).
    pub public: f64,
    /// The share of nodes replaced per virtual hour (a node leaves; a fresh one, with a new
    /// id, joins in its place).
    pub churn_per_hour: f64,
    /// The wire.
    pub faults: UdpFaults,
    /// The seed of everything.
    pub seed: u64,
}

struct Member {
    host: UdpHost,
    node: Option<Node>,
    /// Its deadline as indexed in `timers`.
    due: Option<Instant>,
    events: Vec<Event>,
    generation: u64,
    /// When a node not started yet starts.
    start_at: Option<Instant>,
}

/// The outcome of [`DhtWorld::put_then_get`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trial {
    /// The getter read the value.
    Found,
    /// The put was stored on no node.
    NotStored,
    /// The put was stored but the get did not find it.
    NotFound,
}

/// The world.
pub struct DhtWorld {
    net: UdpNet,
    members: Vec<Member>,
    timers: BTreeSet<(Instant, usize)>,
    rng: SimRng,
    now: Instant,
    epoch: Instant,
    churn_every: Option<Duration>,
    next_churn: Option<Instant>,
    next_rebootstrap: Instant,
    bootstrap: Vec<SocketAddr>,
    trace: String,
    churned: u64,
}

impl DhtWorld {
    /// Makes the world and starts every node, each bootstrapping from the first public ones,
    /// their starts spread over the first 30 virtual seconds.
    pub fn new(spec: DhtWorldSpec) -> DhtWorld {
        let epoch = Instant::now();
        let mut rng = SimRng::new(spec.seed);
        let mut net = UdpNet::new(rng.next_u64(), spec.faults);
        let public = ((spec.nodes as f64 * spec.public).ceil() as usize).max(1);
        let nats = [
            (
                Behaviour::EndpointIndependent,
                Behaviour::EndpointIndependent,
            ),
            (Behaviour::EndpointIndependent, Behaviour::AddressDependent),
            (
                Behaviour::EndpointIndependent,
                Behaviour::AddressAndPortDependent,
            ),
            (
                Behaviour::AddressAndPortDependent,
                Behaviour::AddressAndPortDependent,
            ),
        ];
        let mut members = Vec::new();
        for i in 0..spec.nodes {
            let n = i as u32;
            let host = if i < public {
                let ip = Ipv4Addr::from(0x0a00_0000 + n + 1);
                net.public_host(SocketAddr::from((ip, PORT)))
            } else {
                let (mapping, filtering) = nats[i % nats.len()];
                let external = Ipv4Addr::from(0x6440_0000 + n + 1);
                net.host_behind(
                    SocketAddr::from(([192, 168, 1, 2], PORT)),
                    UdpNat::new(mapping, filtering),
                    external,
                )
            };
            members.push(Member {
                host,
                node: None,
                due: None,
                events: Vec::new(),
                generation: 0,
                start_at: None,
            });
        }
        let bootstrap = (0..public.min(3))
            .map(|i| net.local(members[i].host))
            .collect();
        let churn_every = (spec.churn_per_hour > 0.0)
            .then(|| Duration::from_secs_f64(3600.0 / (spec.churn_per_hour * spec.nodes as f64)));
        let mut world = DhtWorld {
            net,
            members,
            timers: BTreeSet::new(),
            rng,
            now: epoch,
            epoch,
            churn_every,
            next_churn: churn_every.map(|d| epoch + Duration::from_secs(60) + d),
            next_rebootstrap: epoch + REBOOTSTRAP,
            bootstrap,
            trace: String::new(),
            churned: 0,
        };
        // The bootstrap nodes run first (as a network's entry points do); the others join
        // over half a minute.
        for i in 0..spec.nodes {
            let at = if i < world.bootstrap.len() {
                epoch
            } else {
                epoch + Duration::from_millis(1 + world.rng.below(30_000))
            };
            world.start(i, at);
        }
        world
    }

    /// Node `i` starts at `at`.
    fn start(&mut self, i: usize, at: Instant) {
        self.members[i].start_at = Some(at);
        self.reindex(i, Some(at));
    }

    fn create(&mut self, i: usize) {
        let at = self.now;
        self.members[i].start_at = None;
        let id = {
            let mut id = [0u8; 20];
            for chunk in id.chunks_mut(8) {
                let r = self.rng.next_u64().to_be_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
            InfoHash(id)
        };
        let mut node = Node::new(Config {
            id,
            network: 0,
            want: Want {
                v4: true,
                v6: false,
            },
            seed: self.rng.next_u64(),
        });
        let own = self.net.local(self.members[i].host);
        for b in self.bootstrap.clone() {
            if b != own {
                node.bootstrap(at, b);
            }
        }
        let m = &mut self.members[i];
        m.generation += 1;
        m.node = Some(node);
        m.events.clear();
        self.net.up(m.host);
        self.flush(i);
        self.reindex(i, None);
    }

    /// The node `i`, if it is up.
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.members[i].node.as_ref()
    }

    /// The virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.epoch
    }

    /// What the world did so far.
    pub fn trace(&self) -> &str {
        &self.trace
    }

    /// The UDP counters.
    pub fn udp(&self) -> crate::udp::UdpCounters {
        self.net.counters()
    }

    /// Nodes replaced so far.
    pub fn churned(&self) -> u64 {
        self.churned
    }

    /// Every node's message counters, summed: (requests in flight, malformed, dropped for
    /// other reasons).
    pub fn dropped_total(&self) -> (u64, u64) {
        let mut malformed = 0;
        let mut other = 0;
        for n in self.members.iter().filter_map(|m| m.node.as_ref()) {
            let d = n.dropped();
            malformed += d.malformed + d.unknown_kind;
            other += d.bad_token + d.rate_limited + d.store_refused + d.parts + d.parts_expired;
        }
        (malformed, other)
    }

    /// Nodes up.
    pub fn alive(&self) -> usize {
        self.members.iter().filter(|m| m.node.is_some()).count()
    }

    fn reindex(&mut self, i: usize, extra: Option<Instant>) {
        let m = &mut self.members[i];
        if let Some(old) = m.due.take() {
            self.timers.remove(&(old, i));
        }
        let extra = extra.or(m.start_at);
        let due = match (m.node.as_ref().and_then(Node::poll_timeout), extra) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(due) = due {
            self.timers.insert((due, i));
            m.due = Some(due);
        }
    }

    fn flush(&mut self, i: usize) {
        let m = &mut self.members[i];
        let Some(node) = m.node.as_mut() else {
            return;
        };
        while let Some(d) = node.poll_output() {
            self.net.send(self.now, m.host, d.addr, d.data);
        }
        while let Some(e) = node.poll_event() {
            m.events.push(e);
        }
    }

    /// Runs until `until`, or until `stop` holds of the events of node `watch`.
    pub fn run_until(
        &mut self,
        until: Instant,
        watch: Option<usize>,
        stop: impl Fn(&[Event]) -> bool,
    ) -> bool {
        loop {
            if let Some(w) = watch {
                if stop(&self.members[w].events) {
                    return true;
                }
            }
            let next = [
                self.net.next_arrival(),
                self.timers.iter().next().map(|(t, _)| *t),
                self.next_churn,
                Some(self.next_rebootstrap),
            ]
            .into_iter()
            .flatten()
            .min();
            let Some(next) = next.filter(|t| *t <= until) else {
                self.now = until.max(self.now);
                return false;
            };
            self.now = self.now.max(next);
            if self.next_churn.is_some_and(|t| t <= self.now) {
                self.churn();
                continue;
            }
            if self.next_rebootstrap <= self.now {
                self.rebootstrap();
                continue;
            }
            if let Some(a) = self.net.arrival(self.now) {
                let i = a.to.0;
                if let Some(node) = self.members[i].node.as_mut() {
                    node.handle_input(self.now, a.from, &a.data);
                    self.flush(i);
                    self.reindex(i, None);
                }
                continue;
            }
            if let Some(&(t, i)) = self.timers.iter().next() {
                if t <= self.now {
                    self.timers.remove(&(t, i));
                    self.members[i].due = None;
                    if self.members[i].start_at.is_some_and(|s| s <= self.now) {
                        self.create(i);
                    }
                    if let Some(node) = self.members[i].node.as_mut() {
                        node.handle_timeout(self.now);
                    }
                    self.flush(i);
                    self.reindex(i, None);
                }
            }
        }
    }

    /// Nodes with an empty table try their bootstrap nodes again.
    fn rebootstrap(&mut self) {
        self.next_rebootstrap = self.now + REBOOTSTRAP;
        for i in 0..self.members.len() {
            let own = self.net.local(self.members[i].host);
            let Some(node) = self.members[i].node.as_mut() else {
                continue;
            };
            if !node.table(false).is_empty() {
                continue;
            }
            for b in &self.bootstrap {
                if *b != own {
                    node.bootstrap(self.now, *b);
                }
            }
            self.flush(i);
            self.reindex(i, None);
        }
    }

    /// One node leaves and a fresh one takes its place (never one of the bootstrap nodes:
    /// a network whose every entry point churned would need new ones written in the
    /// configuration, which is outside the protocol).
    fn churn(&mut self) {
        let Some(every) = self.churn_every else {
            return;
        };
        self.next_churn = Some(self.now + every);
        let first = self.bootstrap.len();
        if self.members.len() <= first {
            return;
        }
        let i = first + self.rng.below((self.members.len() - first) as u64) as usize;
        let host = self.members[i].host;
        self.net.down(host);
        if let Some(old) = self.members[i].due.take() {
            self.timers.remove(&(old, i));
        }
        self.members[i].node = None;
        self.churned += 1;
        self.create(i);
    }

    /// Node `from` puts a `size`-byte value under a fresh key; once a round stored it, node
    /// `to` gets the key. Both are chosen by the caller among nodes up.
    pub fn put_then_get(&mut self, from: usize, to: usize, size: usize) -> Trial {
        let mut key = [0u8; 20];
        key[..8].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        key[8..16].copy_from_slice(&self.rng.next_u64().to_be_bytes());
        let key = InfoHash(key);
        let now = self.now;
        let generation = self.members[from].generation;
        self.members[from].events.clear();
        let Some(node) = self.members[from].node.as_mut() else {
            return Trial::NotStored;
        };
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let value = Value::new(node.value_id(), 0, data.clone());
        let Some(put) = node.put(now, key, value) else {
            return Trial::NotStored;
        };
        self.flush(from);
        self.reindex(from, None);
        self.run_until(now + TRIAL_PATIENCE, Some(from), |e| {
            e.iter()
                .any(|e| matches!(e, Event::Stored { search, .. } if *search == put))
        });
        let stored = self.members[from].events.iter().find_map(|e| match e {
            Event::Stored { search, nodes } if *search == put => Some(*nodes),
            _ => None,
        });
        if self.members[from].generation == generation {
            if let Some(node) = self.members[from].node.as_mut() {
                node.cancel(put);
            }
        }
        let result = if stored.unwrap_or(0) == 0 {
            Trial::NotStored
        } else {
            self.get(to, key, &data)
        };
        let table = self.members[from].node.as_ref().map(|n| {
            let t = n.table(false);
            (t.len(), t.good(self.now))
        });
        let _ = writeln!(
            self.trace,
            "{:>8.1}s put {from}->{to} stored {stored:?}: {result:?} (putter's table {table:?}) {:?}",
            self.elapsed().as_secs_f64(),
            self.net.counters()
        );
        result
    }

    fn get(&mut self, to: usize, key: InfoHash, data: &[u8]) -> Trial {
        let now = self.now;
        self.members[to].events.clear();
        let Some(node) = self.members[to].node.as_mut() else {
            return Trial::NotFound;
        };
        let Some(get) = node.get(now, key) else {
            return Trial::NotFound;
        };
        self.flush(to);
        self.reindex(to, None);
        let found = |e: &[Event]| {
            e.iter().any(|e| {
                matches!(e, Event::Values { search, values, .. }
                    if *search == get && values.iter().any(|v| v.data == data))
            })
        };
        let done = |e: &[Event]| {
            found(e)
                || e.iter()
                    .any(|e| matches!(e, Event::GetDone { search, .. } if *search == get))
        };
        self.run_until(now + TRIAL_PATIENCE, Some(to), done);
        if found(&self.members[to].events) {
            Trial::Found
        } else {
            Trial::NotFound
        }
    }

    /// A node up, at random.
    pub fn random_alive(&mut self) -> usize {
        loop {
            let i = self.rng.below(self.members.len() as u64) as usize;
            if self.members[i].node.is_some() {
                return i;
            }
        }
    }

    /// Records a line in the trace.
    pub fn note(&mut self, line: &str) {
        let _ = writeln!(self.trace, "{:>8.1}s {line}", self.elapsed().as_secs_f64());
    }

    /// The clock now.
    pub fn now(&self) -> Instant {
        self.now
    }
}
