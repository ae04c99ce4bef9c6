//! The world: every host, network, router and link, one virtual clock, one event queue.
//!
//! # The loop
//!
//! The clock stands on the earliest scheduled event. Everything due at that instant runs in
//! the order it was scheduled; each event may give hosts inputs, and a host with inputs is
//! driven (inputs fed, outputs drained and carried out) until it has nothing left to say.
//! Only when nothing is due at the current instant does the clock jump to the next event:
//! it never sleeps and never moves while work is pending. Endpoint timers are events too
//! (one pending wake-up per host), so a thousand idle hosts cost nothing. Connect timeouts
//! due at an instant run after that instant's other events, so a SYN-ACK that arrives
//! exactly at the deadline still connects.
//!
//! # Determinism
//!
//! A world is a function of how it was built and of its seed: ties in the queue go by
//! scheduling order, all randomness comes from the world's [`SimRng`], and every map is
//! ordered. [`World::trace`] of two runs of one seed are equal byte for byte.
//!
//! # Misbehaving endpoints
//!
//! An endpoint can output anything; nothing it outputs makes the world panic. A bad id, a
//! `Send` after `Close`, an unknown file, or an `Err` from `handle_input` is recorded as a
//! [`Violation`] (and a trace line) and the run goes on; tests and the sweep fail on them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{DhtKey, Input, Output};
use ferry_proto::trace::{Direction, Line, Summary};

use crate::dht::Dht;
use crate::dht::DhtSpec;
use crate::fault::{Fault, Rules};
use crate::files::Stored;
use crate::host::{BoxedEvent, Host, SimEndpoint};
use crate::ids::{HostId, RouterId};
use crate::link::Link;
use crate::net::{Network, Router};
use crate::queue::{Ev, Queue};
use crate::record::Tracer;
use crate::rng::SimRng;
use crate::tcp::{ConnKey, Conns};

mod crash;
mod dht;
mod fault;
mod net;
mod portmap;

/// Events kept per host for [`World::events`]; past this the oldest are dropped.
const EVENTS_KEPT: usize = 10_000;
/// Wake-ups of one host at one instant before it counts as spinning.
const SPIN_LIMIT: u32 = 1_000;
/// Violations kept; past this only the count grows.
const VIOLATIONS_KEPT: usize = 1_000;

/// Something an endpoint did that it must not do, or an input it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// When.
    pub at: Duration,
    /// Which host.
    pub host: String,
    /// What happened.
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.6}s {}: {}",
            self.at.as_secs_f64(),
            self.host,
            self.what
        )
    }
}

/// Counters of a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Events taken from the queue.
    pub events: u64,
    /// Inputs fed to endpoints.
    pub inputs: u64,
    /// Outputs carried out.
    pub outputs: u64,
    /// Connections attempted.
    pub connections: u64,
    /// Most connections alive at once.
    pub peak_connections: usize,
    /// Longest the event queue has been.
    pub peak_queue: usize,
}

/// A simulated network with its hosts, run on a virtual clock.
///
/// Its methods fall into three groups. **Running**: [`step`](World::step),
/// [`run_until`](World::run_until), [`run_for`](World::run_for),
/// [`run_until_idle`](World::run_until_idle). **Acting between runs**:
/// [`with_endpoint`](World::with_endpoint) (an application command on one endpoint, carried
/// out at the current instant), [`schedule`](World::schedule) (a fault) and
/// [`crash_and_restart`](World::crash_and_restart) (a process dies and starts again). **Looking**:
/// everything else (the clock, hosts and addresses, NAT mappings, endpoints, files, the DHT,
/// counters, violations, the trace); looking never changes the run.
pub struct World {
    pub(crate) seed: u64,
    pub(crate) epoch: Instant,
    pub(crate) now: Duration,
    pub(crate) rng: SimRng,
    pub(crate) queue: Queue,
    pub(crate) hosts: Vec<Host>,
    pub(crate) networks: Vec<Network>,
    pub(crate) routers: Vec<Router>,
    pub(crate) links: Vec<Link>,
    pub(crate) conns: Conns,
    pub(crate) dht: Dht,
    pub(crate) rules: Rules,
    pub(crate) tracer: Option<Tracer>,
    pub(crate) stats: Stats,
    pub(crate) violations: Vec<Violation>,
    pub(crate) violation_count: usize,
    pub(crate) events: BTreeMap<HostId, VecDeque<(Duration, BoxedEvent)>>,
    pub(crate) next_serial: u64,
    /// Hosts with inputs waiting, in the order they got them.
    pub(crate) dirty: VecDeque<HostId>,
    /// Connect timeouts, kept apart from the queue so that a connection that opens takes
    /// its timeout away instead of leaving a dead event behind (a thousand connects a
    /// second with 10 s timeouts would otherwise keep ten thousand of them queued).
    pub(crate) deadlines: BTreeSet<(Duration, ConnKey)>,
}

impl World {
    /// The seed this world runs on.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The instant virtual time zero stands for; endpoints see `epoch() + now()`.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Virtual time since the start.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Virtual time as the endpoints see it.
    pub fn instant(&self) -> Instant {
        self.epoch + self.now
    }

    /// Runs everything due at the next instant. `false` when nothing is scheduled at all.
    pub fn step(&mut self) -> bool {
        let Some(at) = self.next_time() else {
            return false;
        };
        self.now = self.now.max(at);
        self.stats.peak_queue = self.stats.peak_queue.max(self.queue.len());
        loop {
            if self.queue.peek_time().is_some_and(|t| t <= self.now) {
                let Some((_, ev)) = self.queue.pop() else {
                    break;
                };
                self.stats.events += 1;
                self.dispatch(ev);
            } else if self.deadlines.first().is_some_and(|(t, _)| *t <= self.now) {
                let Some((_, key)) = self.deadlines.pop_first() else {
                    break;
                };
                self.stats.events += 1;
                self.connect_timeout(key);
            } else {
                break;
            }
            self.flush();
        }
        true
    }

    /// When the next thing is due (virtual time), if anything is scheduled: a test that
    /// waits for a condition steps up to a deadline without passing it.
    pub fn next_time(&self) -> Option<Duration> {
        let deadline = self.deadlines.first().map(|(t, _)| *t);
        match (self.queue.peek_time(), deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs every event up to and including `t`, then stands the clock on `t`.
    pub fn run_until(&mut self, t: Duration) {
        while self.next_time().is_some_and(|at| at <= t) {
            self.step();
        }
        self.now = self.now.max(t);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        self.run_until(self.now + d);
    }

    /// Runs until nothing is scheduled, or until `limit`; `true` when it went idle.
    pub fn run_until_idle(&mut self, limit: Duration) -> bool {
        while let Some(at) = self.next_time() {
            if at > limit {
                self.now = self.now.max(limit);
                return false;
            }
            self.step();
        }
        true
    }

    /// Makes `fault` happen at `at` (now, if `at` is past).
    pub fn schedule(&mut self, at: Duration, fault: Fault) {
        self.queue.push(at.max(self.now), Ev::Fault(fault));
    }

    /// The host named `name`.
    pub fn host(&self, name: &str) -> Option<HostId> {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .map(|i| HostId(i as u32))
    }

    /// A host's name.
    pub fn host_name(&self, host: HostId) -> &str {
        self.hosts.get(host.ix()).map_or("?", |h| h.name.as_str())
    }

    /// A host's IPv6 address when `v6`, else its IPv4 address.
    pub fn addr(&self, host: HostId, v6: bool) -> Option<IpAddr> {
        let h = self.hosts.get(host.ix())?;
        if v6 {
            h.v6.map(IpAddr::V6)
        } else {
            h.v4.map(IpAddr::V4)
        }
    }

    /// A router's external address of one family.
    pub fn router_addr(&self, router: RouterId, v6: bool) -> Option<IpAddr> {
        let r = self.routers.get(router.ix())?;
        if v6 {
            r.v6.map(IpAddr::V6)
        } else {
            r.v4.map(IpAddr::V4)
        }
    }

    /// The external address `router` maps `internal` to when it talks to `remote`, if a
    /// mapping exists (what a STUN server would tell the host).
    pub fn mapped(
        &self,
        router: RouterId,
        internal: SocketAddr,
        remote: SocketAddr,
    ) -> Option<SocketAddr> {
        crate::net::mapped(self.routers.get(router.ix())?, internal, remote)
    }

    /// How many mappings a router holds.
    pub fn mappings(&self, router: RouterId) -> usize {
        self.routers.get(router.ix()).map_or(0, |r| r.table.len())
    }

    /// The endpoint of `host`, as its concrete type.
    pub fn endpoint<T: SimEndpoint>(&self, host: HostId) -> Option<&T> {
        self.hosts.get(host.ix())?.endpoint.as_any().downcast_ref()
    }

    /// Lets a test act on an endpoint (an application command, say) at the current instant,
    /// then carries out what it outputs. `None` when the host's endpoint is not a `T`.
    pub fn with_endpoint<T: SimEndpoint, R>(
        &mut self,
        host: HostId,
        f: impl FnOnce(&mut T, Instant) -> R,
    ) -> Option<R> {
        let now = self.instant();
        let ep = self
            .hosts
            .get_mut(host.ix())?
            .endpoint
            .as_any_mut()
            .downcast_mut()?;
        let r = f(ep, now);
        self.mark(host);
        self.flush();
        Some(r)
    }

    /// The events of type `E` a host's endpoint told its owner (the latest ones, bounded),
    /// with their virtual time. `E` is the endpoint's `Endpoint::Event`:
    /// [`Event`](ferry_proto::io::Event) for a node.
    pub fn events<E: Clone + 'static>(&self, host: HostId) -> Vec<(Duration, E)> {
        self.events
            .get(&host)
            .map(|e| {
                e.iter()
                    .filter_map(|(at, ev)| {
                        Some((*at, (**ev).as_any().downcast_ref::<E>()?.clone()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A file `host` received and committed under `name`.
    pub fn received_file(&self, host: HostId, name: &str) -> Option<&Stored> {
        self.hosts.get(host.ix())?.files.finals.get(name)
    }

    /// Whether `host` made a folder `path` for a manifest (`a/b`, below the top-level name
    /// its tree got).
    pub fn made_folder(&self, host: HostId, path: &str) -> bool {
        self.hosts
            .get(host.ix())
            .is_some_and(|h| h.files.folders.contains(path))
    }

    /// The partial data `host` holds under `key`.
    pub fn partial_file(
        &self,
        host: HostId,
        key: ferry_proto::transfer::PartialKey,
    ) -> Option<&Stored> {
        self.hosts
            .get(host.ix())?
            .files
            .partials
            .get(&key.to_string())
    }

    /// How many manifests' top-level names `host` keeps (for a send taken up again; forgotten
    /// once every file of the manifest arrived).
    pub fn kept_trees(&self, host: HostId) -> usize {
        self.hosts.get(host.ix()).map_or(0, |h| h.files.trees.len())
    }

    /// How many partial files `host` holds.
    pub fn partial_files(&self, host: HostId) -> usize {
        self.hosts
            .get(host.ix())
            .map_or(0, |h| h.files.partials.len())
    }

    /// Files a host has open.
    pub fn open_files(&self, host: HostId) -> usize {
        self.hosts
            .get(host.ix())
            .map_or(0, |h| h.files.open_count())
    }

    /// Changes how a link behaves from now on (its latency, jitter, bandwidth, loss): a
    /// network that gets better or worse during a run. What is already on its way keeps its
    /// timing.
    pub fn set_link(&mut self, of: crate::ids::LinkOf, spec: crate::link::LinkSpec) {
        let link = match of {
            crate::ids::LinkOf::Host(h) => self.hosts.get(h.ix()).map(|h| h.link),
            crate::ids::LinkOf::Router(r) => self.routers.get(r.ix()).map(|r| r.link),
        };
        if let Some(l) = link {
            self.links[l].spec = spec;
        }
    }

    /// Changes how the DHT behaves from now on (its latency, loss, duplication; what it
    /// stores stays): a DHT that gets better or worse during a run.
    pub fn set_dht(&mut self, spec: DhtSpec) {
        self.dht.spec = spec;
    }

    /// Values the DHT holds under `key` now, oldest first.
    pub fn dht_values(&self, key: DhtKey) -> Vec<Bytes> {
        self.dht.values(key, self.now)
    }

    /// Connections alive (not yet freed).
    pub fn live_connections(&self) -> usize {
        self.conns.live()
    }

    /// The connections that the peer has ended (its FIN was delivered) and that their host
    /// neither closed nor half-closed: what a kernel shows as CLOSE-WAIT, named as
    /// `host: conn`. An endpoint that forgets a connection without closing it leaves one here
    /// for ever, so a run that settles with any is leaking descriptors.
    pub fn close_wait(&self) -> Vec<String> {
        let mut found = Vec::new();
        for key in self.conns.keys() {
            let Some(c) = self.conns.get(key) else {
                continue;
            };
            let sides = if c.bound { 2 } else { 1 };
            for e in c.ends.iter().take(sides) {
                if e.known
                    && e.peer_fin
                    && e.fin == crate::tcp::Fin::None
                    && e.state == crate::tcp::State::Open
                {
                    found.push(format!("{}: {}", self.hosts[e.host.ix()].name, e.id));
                }
            }
        }
        found
    }

    /// The sockets a real driver of `host` would hold now: every connection its endpoint
    /// uses, and every one it closed with [`Output::Close`] whose peer has not closed its
    /// side yet, for [`CLOSE_LINGER`](ferry_proto::io::CLOSE_LINGER) after the close (the
    /// shell keeps reading until the peer's FIN, so that a close never becomes a reset). A
    /// reset socket is let go at once. The endpoint's own count of its connections can be
    /// far below this: a node that closes a stranger's connections as fast as they come
    /// still holds each for the linger.
    pub fn held_sockets(&self, host: HostId) -> usize {
        let linger = ferry_proto::io::CLOSE_LINGER;
        self.conns
            .keys()
            .into_iter()
            .filter_map(|key| self.conns.get(key))
            .flat_map(|c| c.ends.iter().take(if c.bound { 2 } else { 1 }))
            .filter(|e| e.host == host && e.state != crate::tcp::State::Dead)
            .filter(|e| {
                e.known
                    || e.closed_at
                        .is_some_and(|at| !e.peer_fin && self.now < at + linger)
            })
            .count()
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What endpoints did wrong (the first ones, bounded).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// How many violations happened in all.
    pub fn violation_count(&self) -> usize {
        self.violation_count
    }

    /// The trace so far, one line each (empty unless the builder turned tracing on).
    pub fn trace(&self) -> String {
        self.tracer
            .as_ref()
            .map(|t| t.recorder.render())
            .unwrap_or_default()
    }

    /// The trace lines so far.
    pub fn trace_lines(&self) -> &[Line] {
        self.tracer.as_ref().map_or(&[], |t| t.recorder.lines())
    }

    // ---- the engine, for the other modules ----

    /// Gives `host` an input at the current instant.
    pub(crate) fn input(&mut self, host: HostId, input: Input) {
        self.hosts[host.ix()].inbox.push_back(input);
        self.mark(host);
    }

    pub(crate) fn mark(&mut self, host: HostId) {
        if !self.dirty.contains(&host) {
            self.dirty.push_back(host);
        }
    }

    /// Drives every host that has inputs until none has.
    pub(crate) fn flush(&mut self) {
        while let Some(h) = self.dirty.pop_front() {
            self.drive(h);
        }
    }

    /// Feeds a host its inputs and carries out its outputs, until it is quiet.
    fn drive(&mut self, h: HostId) {
        let now = self.instant();
        loop {
            while let Some(out) = self.hosts[h.ix()].endpoint.poll_output() {
                self.stats.outputs += 1;
                match out {
                    Ok(out) => self.output(h, out),
                    Err(unknown) => {
                        self.violation(h, format!("output the simulator does not know: {unknown}"));
                    }
                }
            }
            let Some(input) = self.hosts[h.ix()].inbox.pop_front() else {
                break;
            };
            self.stats.inputs += 1;
            if let Err(e) = self.hosts[h.ix()].endpoint.handle_input(now, input) {
                self.violation(h, format!("endpoint refused an input: {e}"));
            }
        }
        self.rearm(h);
    }

    /// Schedules the host's next wake-up from its `poll_timeout`.
    fn rearm(&mut self, h: HostId) {
        let host = &mut self.hosts[h.ix()];
        let Some(deadline) = host.endpoint.poll_timeout() else {
            host.wake_at = None;
            return;
        };
        let mut at = deadline.saturating_duration_since(self.epoch).max(self.now);
        if at == self.now && host.woke_at == Some(self.now) && host.wakes_now >= SPIN_LIMIT {
            // Woken again and again at this instant and still asking for now: the clock
            // could never move. Give it a millisecond and say so once. (A few wake-ups at
            // one instant are fine: a zero-delay timer set in answer to an input, say.)
            at = self.now + Duration::from_millis(1);
            if !host.spin_reported {
                host.spin_reported = true;
                self.violation(h, "asks to be woken at a time already handled".to_owned());
            }
        }
        let host = &mut self.hosts[h.ix()];
        if host.wake_at != Some(at) {
            host.wake_at = Some(at);
            self.queue.push(at, Ev::Wake(h));
        }
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Wake(h) => {
                let now = self.instant();
                let host = &mut self.hosts[h.ix()];
                if host.wake_at != Some(self.now) {
                    return; // superseded by a later poll_timeout
                }
                host.wake_at = None;
                if host.woke_at == Some(self.now) {
                    host.wakes_now += 1;
                } else {
                    host.woke_at = Some(self.now);
                    host.wakes_now = 1;
                }
                host.endpoint.handle_timeout(now);
                self.mark(h);
            }
            Ev::Syn(walk) => self.syn_walk(walk),
            Ev::Arrive { conn, to, seg } => self.arrive(conn, to, seg),
            Ev::Credit { conn, side, bytes } => self.credit(conn, side, bytes),
            Ev::Window { conn, side, bytes } => self.window(conn, side, bytes),
            Ev::DhtStore { from, key, value } => self.dht_store(from, key, value),
            Ev::DhtDeliver { to, key, value } => self.dht_deliver(to, key, value),
            Ev::DhtPutDone { to, key, ok } => self.dht_put_done(to, key, ok),
            Ev::Fault(f) => self.apply(f),
        }
    }

    /// An endpoint that closed a connection hears nothing more of it, as from a real driver,
    /// which drops the socket: inputs queued for it before the close (credit for bytes sent
    /// just before, say) are dropped too.
    fn drop_inbox(&mut self, h: HostId, conn: ferry_proto::io::ConnId) {
        self.hosts[h.ix()].inbox.retain(|input| {
            !matches!(input,
                Input::Connected { conn: c, .. }
                | Input::ConnectFailed { conn: c, .. }
                | Input::Received { conn: c, .. }
                | Input::Writable { conn: c, .. }
                | Input::HalfClosed { conn: c }
                | Input::Closed { conn: c }
                | Input::Reset { conn: c } if *c == conn)
        });
    }

    pub(crate) fn output(&mut self, h: HostId, out: Output<BoxedEvent>) {
        match out {
            Output::Listen { listener, local } => self.listen(h, listener, local),
            Output::Unlisten { listener } => self.unlisten(h, listener),
            Output::Connect {
                conn,
                remote,
                local_port,
                timeout,
            } => self.connect(h, conn, remote, local_port, timeout),
            Output::Send { conn, data } => self.send(h, conn, data),
            Output::HalfClose { conn } => self.shutdown(h, conn, false),
            Output::Close { conn } => {
                self.drop_inbox(h, conn);
                self.shutdown(h, conn, true)
            }
            Output::Reset { conn } => {
                self.drop_inbox(h, conn);
                self.reset(h, conn)
            }
            Output::PauseReading { conn } => self.pause(h, conn, true),
            Output::ResumeReading { conn } => self.pause(h, conn, false),
            Output::DhtPut { key, value } => self.dht_put(h, key, value),
            Output::DhtListen { key } => self.dht_listen(h, key),
            Output::DhtCancelListen { key } => self.dht_cancel(h, key),
            Output::File(op) => {
                if self.tracer.is_some() {
                    self.note(h, Direction::Local, ferry_proto::trace::file_op(&op));
                }
                let (result, misuse) = self.hosts[h.ix()].files.handle(op);
                if let Some(m) = misuse {
                    self.violation(h, m);
                }
                self.input(h, Input::File(result));
            }
            Output::MapPort { listener, local } => self.map_port(h, listener, local),
            Output::UnmapPorts => self.unmap_ports(h),
            Output::Event(event) => {
                if let Some(t) = &mut self.tracer {
                    let s = crate::record::event(&*event, &mut t.names);
                    self.note(h, Direction::Local, s);
                }
                let kept = self.events.entry(h).or_default();
                if kept.len() == EVENTS_KEPT {
                    kept.pop_front();
                }
                kept.push_back((self.now, event));
            }
            other => {
                let what = format!("output the simulator does not know: {other:?}");
                self.violation(h, what);
            }
        }
    }

    /// Records a violation and its trace line.
    pub(crate) fn violation(&mut self, h: HostId, what: String) {
        self.violation_count += 1;
        if self.tracer.is_some() {
            self.note(
                h,
                Direction::Local,
                Summary::plain(format!("VIOLATION {what}")),
            );
        }
        if self.violations.len() < VIOLATIONS_KEPT {
            let host = self.hosts[h.ix()].name.clone();
            self.violations.push(Violation {
                at: self.now,
                host,
                what,
            });
        }
    }

    /// Records a trace line for a host (no-op when tracing is off).
    pub(crate) fn note(&mut self, h: HostId, direction: Direction, summary: Summary) {
        if let Some(t) = &mut self.tracer {
            t.recorder
                .record(self.now, &self.hosts[h.ix()].name, direction, summary);
        }
    }

    /// Records a plain trace line for a router.
    pub(crate) fn note_router(&mut self, r: RouterId, text: String) {
        if let Some(t) = &mut self.tracer {
            t.recorder.record(
                self.now,
                &self.routers[r.ix()].name,
                Direction::Local,
                Summary::plain(text),
            );
        }
    }

    /// Records a plain trace line for the world itself (faults).
    pub(crate) fn note_world(&mut self, text: String) {
        if let Some(t) = &mut self.tracer {
            t.recorder
                .record(self.now, "world", Direction::Local, Summary::plain(text));
        }
    }

    /// The replay command for this world's seed, for a failing run to print.
    pub fn replay_hint(&self, example: &str) -> String {
        format!(
            "seed {seed}; replay with: cargo run -p ferry-sim --release --example {example} -- --seed {seed} --trace",
            seed = self.seed
        )
    }
}
