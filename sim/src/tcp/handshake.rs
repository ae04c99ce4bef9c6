//! Listening, connecting, and the SYN's way to a listener — or to a crossing SYN.

use std::net::SocketAddr;
use std::time::Duration;

use ferry_proto::io::{ConnId, ConnectError, Input, ListenerId};
use ferry_proto::trace::{Direction, Summary};

use super::{Conn, ConnKey, End, Segment, State, SynWalk};
use crate::host::ClosedPorts;
use crate::ids::HostId;
use crate::link::{SYN_RTO, Way};
use crate::net::Step;
use crate::queue::Ev;
use crate::world::World;

impl World {
    pub(crate) fn listen(&mut self, h: HostId, listener: ListenerId, local: SocketAddr) {
        let host = &mut self.hosts[h.ix()];
        let v6 = local.is_ipv6();
        let fail = |reason: &str| Input::ListenFailed {
            listener,
            reason: reason.to_owned(),
        };
        if host.listeners.contains_key(&listener) {
            self.violation(h, format!("listener {} used twice", listener.0));
            return;
        }
        let input = if !host.owns(local.ip()) {
            fail("address not available")
        } else {
            let port = match local.port() {
                0 => host.ephemeral(v6),
                p if host.listening.contains_key(&(p, v6)) => None,
                p => Some(p),
            };
            match port {
                None => fail("address in use"),
                Some(port) => {
                    let bound = SocketAddr::new(local.ip(), port);
                    host.listening.insert((port, v6), listener);
                    host.listeners.insert(listener, bound);
                    Input::Listening {
                        listener,
                        local: bound,
                    }
                }
            }
        };
        if self.tracer.is_some() {
            let text = match &input {
                Input::Listening { local, .. } => format!("listen l{} on {local}", listener.0),
                _ => format!("listen l{} on {local} failed", listener.0),
            };
            self.note(h, Direction::Local, Summary::plain(text));
        }
        self.input(h, input);
    }

    pub(crate) fn unlisten(&mut self, h: HostId, listener: ListenerId) {
        let host = &mut self.hosts[h.ix()];
        match host.listeners.remove(&listener) {
            Some(bound) => {
                host.listening.remove(&(bound.port(), bound.is_ipv6()));
                if self.tracer.is_some() {
                    let text = format!("unlisten l{}", listener.0);
                    self.note(h, Direction::Local, Summary::plain(text));
                }
            }
            None => self.violation(h, format!("unlisten of unknown listener {}", listener.0)),
        }
    }

    pub(crate) fn connect(
        &mut self,
        h: HostId,
        id: ConnId,
        remote: SocketAddr,
        local_port: Option<u16>,
        timeout: Duration,
    ) {
        if !matches!(id, ConnId::Connect(_)) {
            self.violation(h, format!("connect names its connection {id}, not c<n>"));
            return;
        }
        if self.hosts[h.ix()].conns.contains_key(&id) {
            self.violation(h, format!("connect reuses {id}, which is still open"));
            return;
        }
        let host = &mut self.hosts[h.ix()];
        let fail = |error| Input::ConnectFailed { conn: id, error };
        if remote.ip().is_loopback() {
            // Loopback reaches only this host, which runs one endpoint: a peer's loopback
            // candidate is refused at once, as the kernel refuses a port nobody listens on.
            self.input(h, fail(ConnectError::Refused));
            return;
        }
        let Some(ip) = host.addr_like(remote.ip()) else {
            self.input(h, fail(ConnectError::Unreachable));
            return;
        };
        let port = match local_port {
            Some(p) if p != 0 => {
                if host.tuples.contains_key(&(SocketAddr::new(ip, p), remote)) {
                    self.input(h, fail(ConnectError::LocalPortUnavailable));
                    return;
                }
                Some(p)
            }
            _ => host.ephemeral(remote.is_ipv6()),
        };
        let Some(port) = port else {
            self.input(h, fail(ConnectError::LocalPortUnavailable));
            return;
        };
        let local = SocketAddr::new(ip, port);
        host.take_port(port);
        self.next_serial += 1;
        let serial = self.next_serial;
        let conn = Conn {
            serial,
            ends: [
                End::new(h, id, local, remote),
                End::placeholder(h, local, remote),
            ],
            bound: false,
            route: Vec::new(),
            one_way: Duration::ZERO,
            mappings: Vec::new(),
            blackholed: false,
            deadline: Some(self.now.saturating_add(timeout)),
        };
        let key = self.conns.insert(conn);
        self.stats.connections += 1;
        self.stats.peak_connections = self.stats.peak_connections.max(self.conns.live());
        let host = &mut self.hosts[h.ix()];
        host.conns.insert(id, (key, 0));
        host.tuples.insert((local, remote), (key, 0));
        // An endpoint may ask for any timeout, `Duration::MAX` included.
        self.deadlines
            .insert((self.now.saturating_add(timeout), key));

        // An on-path interceptor answers in the target's place.
        let intercepted = self
            .rules
            .intercepts
            .get(&remote)
            .copied()
            .filter(|by| *by != h);
        let dst = match intercepted.and_then(|by| self.hosts.get(by.ix())?.addr_like(remote.ip())) {
            Some(ip) => SocketAddr::new(ip, remote.port()),
            None => remote,
        };
        if self.tracer.is_some() {
            let mut text = format!("#{serial} {id} SYN {local} → {remote}");
            if dst != remote {
                text.push_str(" (intercepted)");
            }
            self.note(h, Direction::Local, Summary::plain(text));
        }
        let link = self.hosts[h.ix()].link;
        if !self.links[link].up {
            // Lost on a dead link: the connect times out.
            if self.tracer.is_some() {
                self.note_world(format!("#{serial} SYN {local} → {remote} lost: link down"));
            }
            return;
        }
        let l = &self.links[link];
        let at = self.now + l.spec.delay(&mut self.rng, SYN_RTO);
        let walk = SynWalk {
            conn: key,
            from: h,
            serial,
            net: self.hosts[h.ix()].net,
            src: local,
            dst,
            intercepted_as: (dst != remote).then_some(remote),
            came_up_via: None,
            links: vec![(link, Way::Up)],
            mappings: Vec::new(),
            at,
            to: None,
            blame: None,
        };
        self.syn_walk(Box::new(walk));
    }

    /// Moves a SYN on: routing decisions that need no NAT state are taken at once; the
    /// others wait until the SYN reaches that router.
    pub(crate) fn syn_walk(&mut self, mut walk: Box<SynWalk>) {
        if walk.to.is_some() {
            self.syn_arrive(*walk);
            return;
        }
        loop {
            if walk.at > self.now && self.step_is_stateful(&walk) {
                let at = walk.at;
                self.queue.push(at, Ev::Syn(walk));
                return;
            }
            match self.syn_step(&mut walk) {
                Step::Next => {}
                Step::Arrived => {
                    let at = walk.at;
                    self.queue.push(at, Ev::Syn(walk));
                    return;
                }
                Step::Lost(why) => {
                    if self.tracer.is_some() {
                        let text = format!(
                            "#{} SYN {} → {} dropped: {why}",
                            walk.serial, walk.src, walk.dst
                        );
                        match walk.blame {
                            Some(r) => self.note_router(r, text),
                            None => self.note_world(text),
                        }
                    }
                    self.release_mappings(&walk.mappings);
                    return;
                }
            }
        }
    }

    /// A SYN reached its host.
    fn syn_arrive(&mut self, walk: SynWalk) {
        let Some(g) = walk.to else { return };
        if self.rules.partitioned(walk.from, g) {
            if self.tracer.is_some() {
                self.note_world(format!("#{} SYN lost: partition", walk.serial));
            }
            self.release_mappings(&walk.mappings);
            return;
        }
        let local = walk.intercepted_as.unwrap_or(walk.dst);
        let remote = walk.src;
        // A SYN for a connection this host is opening itself: TCP simultaneous open.
        if let Some(&(mine, side)) = self.hosts[g.ix()].tuples.get(&(local, remote)) {
            self.crossing_syn(walk, mine, side);
            return;
        }
        let alive = self.conns.get(walk.conn).is_some_and(|c| !c.bound);
        let listener = self.hosts[g.ix()]
            .listening
            .get(&(local.port(), local.is_ipv6()))
            .copied()
            .filter(|l| {
                self.hosts[g.ix()].listeners.get(l).is_some_and(|a| {
                    a.ip().is_unspecified() || a.ip() == local.ip() || walk.intercepted_as.is_some()
                })
            });
        match (alive, listener) {
            (false, _) => self.release_mappings(&walk.mappings),
            (true, Some(listener)) => self.accept(walk, g, listener, local, remote),
            (true, None) => {
                let policy = self.hosts[g.ix()].closed_ports;
                if self.tracer.is_some() {
                    let what = match policy {
                        ClosedPorts::Refuse => "RST",
                        ClosedPorts::Drop => "dropped",
                    };
                    let text = format!("#{} SYN to closed port {local}: {what}", walk.serial);
                    self.note(g, Direction::Local, Summary::plain(text));
                }
                if policy == ClosedPorts::Refuse {
                    let back = self.latency_back(&walk.links);
                    self.queue.push(
                        self.now + back,
                        Ev::Arrive {
                            conn: walk.conn,
                            to: 0,
                            seg: Segment::Rst,
                        },
                    );
                }
                self.release_mappings(&walk.mappings);
            }
        }
    }

    fn accept(
        &mut self,
        walk: SynWalk,
        g: HostId,
        listener: ListenerId,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        let host = &mut self.hosts[g.ix()];
        host.next_accepted = host.next_accepted.wrapping_add(1);
        let id = ConnId::Accepted(host.next_accepted);
        host.conns.insert(id, (walk.conn, 1));
        host.tuples.insert((local, remote), (walk.conn, 1));
        host.take_port(local.port());
        let back = self.latency_back(&walk.links);
        let Some(conn) = self.conns.get_mut(walk.conn) else {
            return;
        };
        let mut end = End::new(g, id, local, remote);
        end.state = State::Open;
        end.listener = Some(listener);
        // Whatever this end sends next (data, a FIN, a RST) arrives after its SYN-ACK.
        end.last_arrival = self.now + back;
        conn.ends[1] = end;
        conn.bound = true;
        conn.one_way = walk
            .links
            .iter()
            .map(|(l, _)| self.links[*l].spec.latency)
            .sum();
        conn.route = walk.links;
        conn.mappings.extend(walk.mappings);
        let serial = conn.serial;
        self.queue.push(
            self.now + back,
            Ev::Arrive {
                conn: walk.conn,
                to: 0,
                seg: Segment::SynAck,
            },
        );
        if self.tracer.is_some() {
            let text = format!("#{serial} {id} accepted on l{} from {remote}", listener.0);
            self.note(g, Direction::Local, Summary::plain(text));
        }
        self.input(
            g,
            Input::Accepted {
                listener,
                conn: id,
                remote,
            },
        );
    }

    /// A SYN met a connection with the same addresses on its host.
    fn crossing_syn(&mut self, walk: SynWalk, mine: ConnKey, side: usize) {
        let g = walk.to.unwrap_or(walk.from);
        let Some(c) = self.conns.get(mine) else {
            self.release_mappings(&walk.mappings);
            return;
        };
        let state = c.ends[side].state;
        let mine_bound = c.bound;
        let theirs_open = walk.conn != mine && self.conns.get(walk.conn).is_some_and(|t| !t.bound);
        if state != State::SynSent || side != 0 {
            // A stray or repeated SYN for an established connection: TCP ignores it.
            self.release_mappings(&walk.mappings);
            return;
        }
        if theirs_open && !mine_bound {
            // Both SYNs were sent and this one arrived first: the two attempts are one
            // connection. Ours joins theirs as its second end, and answers with a SYN-ACK.
            self.disarm(mine);
            let Some(mut old) = self.conns.remove(mine) else {
                return;
            };
            let placeholder = End::placeholder(g, old.ends[0].local, old.ends[0].remote);
            let mut end = std::mem::replace(&mut old.ends[0], placeholder);
            end.state = State::Open;
            let id = end.id;
            let local = end.local;
            self.release_mappings(&old.mappings);
            let back = self.latency_back(&walk.links);
            let Some(theirs) = self.conns.get_mut(walk.conn) else {
                return;
            };
            theirs.ends[1] = end;
            theirs.bound = true;
            theirs.one_way = walk
                .links
                .iter()
                .map(|(l, _)| self.links[*l].spec.latency)
                .sum();
            theirs.route = walk.links;
            theirs.mappings.extend(walk.mappings);
            let serial = theirs.serial;
            let host = &mut self.hosts[g.ix()];
            host.conns.insert(id, (walk.conn, 1));
            if let Some(t) = host.tuples.get_mut(&(local, walk.src)) {
                *t = (walk.conn, 1);
            }
            self.queue.push(
                self.now + back,
                Ev::Arrive {
                    conn: walk.conn,
                    to: 0,
                    seg: Segment::SynAck,
                },
            );
            if self.tracer.is_some() {
                let text = format!("#{serial} {id} simultaneous open (was #{})", old.serial);
                self.note(g, Direction::Local, Summary::plain(text));
            }
            self.input(g, Input::Connected { conn: id, local });
            self.pump(walk.conn, 1);
        } else if mine_bound {
            // The other side already took our SYN; its SYN-ACK is on the way, and this SYN
            // completes our handshake just as well.
            self.release_mappings(&walk.mappings);
            self.established(mine);
        } else {
            self.release_mappings(&walk.mappings);
        }
    }

    /// End 0 of `key` learns its connection is up (a SYN-ACK, or a crossing SYN).
    pub(crate) fn established(&mut self, key: ConnKey) {
        self.disarm(key);
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let serial = c.serial;
        let end = &mut c.ends[0];
        let (h, id, local, known) = (end.host, end.id, end.local, end.known);
        match end.state {
            State::SynSent if known => {
                end.state = State::Open;
                if self.tracer.is_some() {
                    let text = format!("#{serial} {id} connected");
                    self.note(h, Direction::Local, Summary::plain(text));
                }
                self.input(h, Input::Connected { conn: id, local });
                self.pump(key, 0);
            }
            State::SynSent | State::Dead if !end.rst_sent => {
                // The opener gave up already (timed out, or closed): like a kernel that
                // no longer knows the connection, it answers the SYN-ACK with a RST.
                end.state = State::Dead;
                end.rst_sent = true;
                self.send_rst(key, 0);
                self.maybe_free(key);
            }
            _ => {}
        }
    }

    pub(crate) fn connect_timeout(&mut self, key: ConnKey) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        c.deadline = None; // already taken out of the world's deadlines
        let end = &mut c.ends[0];
        if end.state != State::SynSent || !end.known {
            return;
        }
        end.state = State::Dead;
        let (h, id, serial) = (end.host, end.id, c.serial);
        if self.tracer.is_some() {
            self.note(
                h,
                Direction::Local,
                Summary::plain(format!("#{serial} {id} connect timed out")),
            );
        }
        self.forget(key, 0);
        self.input(
            h,
            Input::ConnectFailed {
                conn: id,
                error: ConnectError::TimedOut,
            },
        );
        self.maybe_free(key);
    }

    /// Takes a connection's connect timeout away.
    pub(crate) fn disarm(&mut self, key: ConnKey) {
        if let Some(at) = self.conns.get_mut(key).and_then(|c| c.deadline.take()) {
            self.deadlines.remove(&(at, key));
        }
    }

    /// One-way delay of a control segment (SYN-ACK, RST) back along a route: no bandwidth
    /// (they are tiny), and handshake timeouts for what the links lose.
    pub(crate) fn latency_back(&mut self, links: &[(usize, Way)]) -> Duration {
        let mut d = Duration::ZERO;
        for (l, _) in links {
            let spec = self.links[*l].spec;
            d += spec.delay(&mut self.rng, SYN_RTO);
        }
        d
    }

    pub(crate) fn release_mappings(
        &mut self,
        mappings: &[(crate::ids::RouterId, crate::nat::MapId)],
    ) {
        for (r, m) in mappings {
            self.routers[r.ix()].table.release(*m, self.now);
        }
    }
}
