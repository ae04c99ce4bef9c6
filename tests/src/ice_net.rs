//! A virtual TCP network for ICE agents, on a clock the test advances: every connect,
//! byte and close takes `latency`; what a connect to an address does is a [`Route`].
//! Used by the trace snapshots in `tests/tests/ice_pair.rs`, the `ice_pair` example, and
//! the ICE agent's own tests in `proto/tests/ice.rs`, which include this file by path: a
//! dev-dependency of `ferry-proto` on this crate would build the simulator, the driver and
//! both runtimes for every `cargo test -p ferry-proto`.
// Included by path into proto's tests, which use only part of it.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::ice::{Agent, Event, Input, Output};
use ferry_proto::io::{ConnId, ConnectError};
use ferry_proto::trace::{Direction, FramedWire, Ordinals, Recorder, Summary};

/// What a connection attempt to an address meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The host listens there (directly, or behind a relay that forwards to it).
    To(usize),
    /// Nothing listens: the connection is refused.
    Refuse,
    /// Packets vanish: the driver's connect timeout fires.
    Blackhole,
    /// A box accepts the connection and never says a word.
    Silent,
    /// The connection opens, then is reset as soon as something is sent on it.
    ResetOnData,
}

/// One ICE agent on the network, and what it reported.
pub struct Host {
    /// Its name in the trace.
    pub name: String,
    /// The agent.
    pub agent: Agent,
    /// Every event the agent emitted, in order.
    pub events: Vec<Event>,
    /// The application bytes the agent handed up, per connection.
    pub data: Vec<(ConnId, Bytes)>,
    /// The connections the agent closed.
    pub closed: Vec<ConnId>,
    /// The address the peer sees for this host's outgoing connections (a NAT), if not its own.
    pub public_ip: Option<IpAddr>,
    /// Everything this host sends vanishes (a peer that stopped answering).
    pub mute: bool,
}

enum Delivery {
    Input(usize, Input),
    /// Reset both ends of a link (Route::ResetOnData).
    ResetFrom(usize, ConnId),
}

/// The network: its hosts, its routes, the deliveries in flight, and the virtual clock.
pub struct Net {
    /// When the run began.
    pub start: Instant,
    /// The virtual time now.
    pub now: Instant,
    /// The one-way delay of every connect, byte and close.
    pub latency: Duration,
    /// The agents.
    pub hosts: Vec<Host>,
    /// What a connect to an address meets; an address not listed is refused.
    pub routes: BTreeMap<SocketAddr, Route>,
    links: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    silent: BTreeMap<(usize, ConnId), Route>,
    queue: BTreeMap<(Instant, u64), Delivery>,
    seq: u64,
    next_port: u16,
    next_accept: u32,
    /// The trace of every message on the wire.
    pub trace: Recorder,
    wires: BTreeMap<(usize, ConnId), FramedWire>,
    txs: Ordinals<u128>,
    /// Connections whose host asked not to be read, and what arrived for them meanwhile
    /// (bytes and the peer's close, in order), as a driver holds them.
    paused: BTreeSet<(usize, ConnId)>,
    held: BTreeMap<(usize, ConnId), VecDeque<Input>>,
    /// Every pause and resume asked, in order: (host, connection, paused).
    pub pauses: Vec<(usize, ConnId, bool)>,
}

impl Net {
    /// An empty network whose clock starts at `start`.
    pub fn new(start: Instant) -> Net {
        Net {
            start,
            now: start,
            latency: Duration::from_millis(10),
            hosts: Vec::new(),
            routes: BTreeMap::new(),
            links: BTreeMap::new(),
            silent: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            next_port: 40000,
            next_accept: 1,
            trace: Recorder::new(),
            wires: BTreeMap::new(),
            txs: Ordinals::new("tx"),
            paused: BTreeSet::new(),
            held: BTreeMap::new(),
            pauses: Vec::new(),
        }
    }

    /// Adds a host; every passive candidate of its agent becomes reachable, and so does every
    /// simultaneous-open one (a connection to it stands for the peer's half of a
    /// simultaneous open, which Ferry's listener on the same port accepts).
    pub fn add(&mut self, name: &str, agent: Agent) -> usize {
        let idx = self.hosts.len();
        for c in agent.local_description().candidates {
            if c.is_passive() || c.is_so() {
                self.routes.insert(c.addr, Route::To(idx));
            }
        }
        self.hosts.push(Host {
            name: name.to_owned(),
            agent,
            events: Vec::new(),
            data: Vec::new(),
            closed: Vec::new(),
            public_ip: None,
            mute: false,
        });
        idx
    }

    fn at(&self) -> Duration {
        self.now - self.start
    }

    fn push(&mut self, delay: Duration, d: Delivery) {
        self.seq += 1;
        self.queue.insert((self.now + delay, self.seq), d);
    }

    fn note(&mut self, host: usize, text: String) {
        let name = self.hosts[host].name.clone();
        self.trace
            .record(self.at(), &name, Direction::Local, Summary::plain(text));
    }

    /// Exchanges the descriptions (printed and parsed, as over the DHT): `a` learns `b`'s
    /// and `b` learns `a`'s.
    pub fn exchange(&mut self, a: usize, b: usize) {
        self.tell(a, b);
        self.tell(b, a);
    }

    /// `to` receives `from`'s description.
    pub fn tell(&mut self, from: usize, to: usize) {
        let text = self.hosts[from].agent.local_description().to_string();
        let parsed = ferry_proto::ice::Description::parse(&text).expect("own description parses");
        assert!(parsed.bad_lines.is_empty());
        let now = self.now;
        self.hosts[to]
            .agent
            .set_remote_description(now, parsed.description)
            .expect("remote description");
        self.note(
            to,
            format!("remote description of {}", self.hosts[from].name),
        );
    }

    fn drain(&mut self) {
        loop {
            let mut any = false;
            for h in 0..self.hosts.len() {
                while let Some(out) = self.hosts[h].agent.poll_output() {
                    any = true;
                    self.carry(h, out);
                }
            }
            if !any {
                break;
            }
        }
    }

    fn carry(&mut self, h: usize, out: Output) {
        let latency = self.latency;
        match out {
            Output::Connect {
                conn,
                remote,
                local_ip,
                timeout,
                ..
            } => {
                self.note(h, format!("connect {conn} {local_ip} → {remote}"));
                self.next_port += 1;
                let local = SocketAddr::new(local_ip, self.next_port);
                match self
                    .routes
                    .get(&remote)
                    .copied()
                    .unwrap_or(Route::Blackhole)
                {
                    Route::To(peer) => {
                        let accepted = ConnId::Accepted(self.next_accept);
                        self.next_accept += 1;
                        self.links.insert((h, conn), (peer, accepted));
                        self.links.insert((peer, accepted), (h, conn));
                        let seen = SocketAddr::new(
                            self.hosts[h].public_ip.unwrap_or(local_ip),
                            self.next_port,
                        );
                        self.push(
                            latency,
                            Delivery::Input(
                                peer,
                                Input::Accepted {
                                    conn: accepted,
                                    local: remote,
                                    remote: seen,
                                },
                            ),
                        );
                        self.push(
                            latency * 2,
                            Delivery::Input(h, Input::Connected { conn, local }),
                        );
                    }
                    Route::Refuse => self.push(
                        latency * 2,
                        Delivery::Input(
                            h,
                            Input::ConnectFailed {
                                conn,
                                error: ConnectError::Refused,
                            },
                        ),
                    ),
                    Route::Blackhole => self.push(
                        timeout,
                        Delivery::Input(
                            h,
                            Input::ConnectFailed {
                                conn,
                                error: ConnectError::TimedOut,
                            },
                        ),
                    ),
                    route @ (Route::Silent | Route::ResetOnData) => {
                        self.silent.insert((h, conn), route);
                        self.push(
                            latency * 2,
                            Delivery::Input(h, Input::Connected { conn, local }),
                        );
                    }
                }
            }
            Output::Send { .. } if self.hosts[h].mute => {}
            Output::Send { conn, data } => {
                let name = self.hosts[h].name.clone();
                if let Some(&(peer, pconn)) = self.links.get(&(h, conn)) {
                    let peer_name = self.hosts[peer].name.clone();
                    let summaries = self
                        .wires
                        .entry((h, conn))
                        .or_default()
                        .decode(&data, &mut self.txs);
                    for mut s in summaries {
                        // Say which connection carries it, as RFC 6544 figures do.
                        if s.bulk.is_none() {
                            s.text = format!("{conn}  {}", s.text);
                        }
                        self.trace
                            .record(self.at(), &name, Direction::To(peer_name.clone()), s);
                    }
                    self.push(
                        latency,
                        Delivery::Input(peer, Input::Received { conn: pconn, data }),
                    );
                } else if self.silent.get(&(h, conn)) == Some(&Route::ResetOnData) {
                    self.push(latency, Delivery::ResetFrom(h, conn));
                }
            }
            Output::Close { conn } => {
                self.note(h, format!("close {conn}"));
                self.hosts[h].closed.push(conn);
                self.silent.remove(&(h, conn));
                if let Some((peer, pconn)) = self.links.remove(&(h, conn)) {
                    self.links.remove(&(peer, pconn));
                    self.push(
                        latency,
                        Delivery::Input(peer, Input::Closed { conn: pconn }),
                    );
                }
            }
            Output::PauseReading { conn } => {
                self.note(h, format!("pause reading {conn}"));
                self.pauses.push((h, conn, true));
                self.paused.insert((h, conn));
            }
            Output::ResumeReading { conn } => {
                self.note(h, format!("resume reading {conn}"));
                self.pauses.push((h, conn, false));
                self.paused.remove(&(h, conn));
                // What was held arrives now, in order, ahead of anything still on the way.
                for input in self.held.remove(&(h, conn)).unwrap_or_default() {
                    self.deliver(Delivery::Input(h, input));
                }
            }
            Output::Data { conn, data } => self.hosts[h].data.push((conn, data)),
            Output::Event(event) => {
                let summary = ferry_proto::trace::ice_event(&event);
                self.note(h, summary.text);
                self.hosts[h].events.push(event);
            }
            other => panic!("unexpected output {other:?}"),
        }
    }

    fn deliver(&mut self, d: Delivery) {
        let now = self.now;
        match d {
            Delivery::Input(h, input) => {
                // A driver cancels what is pending on a connection the agent closed.
                let conn = match &input {
                    Input::Connected { conn, .. }
                    | Input::ConnectFailed { conn, .. }
                    | Input::Received { conn, .. }
                    | Input::Closed { conn }
                    | Input::Reset { conn } => Some(*conn),
                    _ => None,
                };
                if conn.is_some_and(|c| self.hosts[h].closed.contains(&c)) {
                    return;
                }
                if let Input::Received { conn, .. } | Input::Closed { conn } = &input {
                    let key = (h, *conn);
                    if self.paused.contains(&key) || self.held.contains_key(&key) {
                        self.held.entry(key).or_default().push_back(input);
                        return;
                    }
                }
                let text = match &input {
                    Input::Accepted {
                        conn,
                        local,
                        remote,
                    } => Some(format!("accepted {conn} on {local} from {remote}")),
                    Input::Connected { conn, .. } => Some(format!("connected {conn}")),
                    Input::ConnectFailed { conn, error } => {
                        Some(format!("connect {conn} failed: {error:?}"))
                    }
                    Input::Closed { conn } => Some(format!("{conn} closed by peer")),
                    Input::Reset { conn } => Some(format!("{conn} reset")),
                    _ => None,
                };
                if let Some(text) = text {
                    self.note(h, text);
                }
                self.hosts[h]
                    .agent
                    .handle_input(now, input)
                    .expect("driver input");
            }
            Delivery::ResetFrom(h, conn) => {
                if self.silent.remove(&(h, conn)).is_some() {
                    self.note(h, format!("{conn} reset"));
                    self.hosts[h]
                        .agent
                        .handle_input(now, Input::Reset { conn })
                        .expect("driver input");
                }
            }
        }
    }

    /// Runs until nothing is left to do before `start + until`, then sets the clock there.
    pub fn run_for(&mut self, until: Duration) {
        let deadline = self.start + until;
        loop {
            self.drain();
            let next_delivery = self.queue.keys().next().map(|(t, _)| *t);
            let next_timer = self
                .hosts
                .iter()
                .filter_map(|h| h.agent.poll_timeout())
                .min();
            let Some(next) = [next_delivery, next_timer].into_iter().flatten().min() else {
                break;
            };
            if next > deadline {
                break;
            }
            self.now = self.now.max(next);
            while let Some(entry) = self.queue.first_entry() {
                if entry.key().0 > self.now {
                    break;
                }
                let d = entry.remove();
                self.deliver(d);
            }
            let now = self.now;
            for h in &mut self.hosts {
                if h.agent.poll_timeout().is_some_and(|t| t <= now) {
                    h.agent.handle_timeout(now);
                }
            }
        }
        self.now = self.now.max(deadline);
    }

    /// The pair host `h` selected: its connection, local and remote candidates.
    pub fn selected(
        &self,
        h: usize,
    ) -> Option<(
        ConnId,
        &ferry_proto::ice::Candidate,
        &ferry_proto::ice::Candidate,
    )> {
        self.hosts[h].events.iter().find_map(|e| match e {
            Event::Selected {
                conn,
                local,
                remote,
            } => Some((*conn, local, remote)),
            _ => None,
        })
    }

    /// Host `h`'s failure, if it failed.
    pub fn failed(&self, h: usize) -> Option<&Event> {
        self.hosts[h]
            .events
            .iter()
            .find(|e| matches!(e, Event::Failed { .. }))
    }

    /// Writes raw bytes (already framed, or garbage) from host `h` on its connection `conn`.
    pub fn inject(&mut self, h: usize, conn: ConnId, data: Bytes) {
        if let Some(&(peer, pconn)) = self.links.get(&(h, conn)) {
            self.push(
                self.latency,
                Delivery::Input(peer, Input::Received { conn: pconn, data }),
            );
        }
    }

    /// The peer end of host `h`'s connection `conn`.
    pub fn peer_of(&self, h: usize, conn: ConnId) -> Option<(usize, ConnId)> {
        self.links.get(&(h, conn)).copied()
    }
}
