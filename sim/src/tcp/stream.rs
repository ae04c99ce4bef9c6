//! The established stream: sending with flow control, FIN, RST, pausing, and freeing.

use bytes::Bytes;
use ferry_proto::io::{ConnId, Input};
use ferry_proto::trace::{Direction, Summary};

use super::{ConnKey, Fin, SEGMENT, Segment, State};
use crate::ids::HostId;
use crate::link::DATA_RTO;
use crate::queue::Ev;
use crate::world::World;

impl World {
    fn lookup(&self, h: HostId, id: ConnId) -> Option<(ConnKey, usize)> {
        self.hosts[h.ix()].conns.get(&id).copied()
    }

    pub(crate) fn send(&mut self, h: HostId, id: ConnId, data: Bytes) {
        let Some((key, side)) = self.lookup(h, id) else {
            self.violation(h, format!("send on {id}, which is not open"));
            return;
        };
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let e = &mut c.ends[side];
        if e.fin != Fin::None {
            self.violation(h, format!("send on {id} after closing it"));
            return;
        }
        if data.is_empty() {
            return;
        }
        if self.tracer.is_some() {
            let serial = c.serial;
            let peer = if c.bound {
                self.hosts[c.ends[1 - side].host.ix()].name.clone()
            } else {
                c.ends[side].remote.to_string()
            };
            if let Some(t) = &mut self.tracer {
                let summaries = t.decoder.decode(serial, side == 0, &data, &mut t.names);
                for s in summaries {
                    t.recorder.record(
                        self.now,
                        &self.hosts[h.ix()].name,
                        Direction::To(format!("{peer}#{serial}")),
                        s,
                    );
                }
            }
        }
        if let Some(c) = self.conns.get_mut(key) {
            c.ends[side].queue.push_back(data);
        }
        self.pump(key, side);
    }

    /// `HalfClose` (`close == false`) or `Close`.
    pub(crate) fn shutdown(&mut self, h: HostId, id: ConnId, close: bool) {
        let Some((key, side)) = self.lookup(h, id) else {
            if !close {
                self.violation(h, format!("half-close of {id}, which is not open"));
            }
            // A close of a connection already reported closed or reset is harmless.
            return;
        };
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let serial = c.serial;
        let e = &mut c.ends[side];
        if e.fin == Fin::None {
            e.fin = Fin::Queued;
        }
        if close {
            e.closed = true;
            e.closed_at = Some(self.now);
            self.forget(key, side);
        }
        if self.tracer.is_some() {
            let what = if close { "close" } else { "half-close" };
            self.note(
                h,
                Direction::Local,
                Summary::plain(format!("#{serial} {id} {what}")),
            );
        }
        self.pump(key, side);
        self.maybe_free(key);
    }

    pub(crate) fn reset(&mut self, h: HostId, id: ConnId) {
        let Some((key, side)) = self.lookup(h, id) else {
            return; // already gone: a reset of it is harmless
        };
        let Some(c) = self.conns.get(key) else { return };
        let serial = c.serial;
        let open = c.ends[side].state == State::Open;
        if self.tracer.is_some() {
            self.note(
                h,
                Direction::Local,
                Summary::plain(format!("#{serial} {id} RST")),
            );
        }
        if open {
            self.send_rst(key, side);
        }
        if let Some(c) = self.conns.get_mut(key) {
            let e = &mut c.ends[side];
            e.state = State::Dead;
            e.queue.clear();
            e.held.clear();
        }
        self.forget(key, side);
        self.maybe_free(key);
    }

    pub(crate) fn pause(&mut self, h: HostId, id: ConnId, paused: bool) {
        let Some((key, side)) = self.lookup(h, id) else {
            self.violation(h, format!("pause or resume of {id}, which is not open"));
            return;
        };
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        c.ends[side].paused = paused;
        if !paused {
            while let Some(c) = self.conns.get_mut(key) {
                let e = &mut c.ends[side];
                if e.paused {
                    break;
                }
                let Some(seg) = e.held.pop_front() else { break };
                self.take(key, side, seg);
            }
        }
    }

    /// Sends what the window and the route allow from one end's queue, then its FIN.
    pub(crate) fn pump(&mut self, key: ConnKey, side: usize) {
        let blocked = self.blocked(key);
        let now = self.now;
        loop {
            let World {
                conns,
                links,
                rng,
                hosts,
                ..
            } = self;
            let Some(c) = conns.get_mut(key) else { return };
            if !c.bound || blocked || c.ends[side].state != State::Open {
                return;
            }
            let window = hosts[c.ends[1 - side].host.ix()].receive_window;
            let e = &mut c.ends[side];
            let chunk = match e.queue.front_mut() {
                Some(front) => {
                    if e.unread >= window {
                        return;
                    }
                    let n = front.len().min(SEGMENT).min(window - e.unread);
                    let chunk = front.split_to(n);
                    if front.is_empty() {
                        e.queue.pop_front();
                    }
                    e.unread += n;
                    Some(chunk)
                }
                None if e.fin == Fin::Queued => None,
                None => return,
            };
            let len = chunk.as_ref().map_or(0, Bytes::len);
            // Along the route (reversed for end 1): wait for the link, cross it.
            let n = c.route.len();
            let mut t = now;
            let mut left = None;
            for i in 0..n {
                let (ix, way) = if side == 0 {
                    c.route[i]
                } else {
                    let (ix, way) = c.route[n - 1 - i];
                    (ix, way.reverse())
                };
                let link = &mut links[ix];
                let w = way as usize;
                let start = t.max(link.busy_until[w]);
                let done = start + link.spec.serialisation(len);
                link.busy_until[w] = done;
                left.get_or_insert(done);
                t = done + link.spec.delay(rng, DATA_RTO);
            }
            let e = &mut c.ends[side];
            let arrive = t.max(e.last_arrival);
            e.last_arrival = arrive;
            let (h, id, known) = (e.host, e.id, e.known);
            match chunk {
                Some(data) => {
                    self.queue.push(
                        arrive,
                        Ev::Arrive {
                            conn: key,
                            to: 1 - side,
                            seg: Segment::Data(data),
                        },
                    );
                    let left = left.unwrap_or(now);
                    if left <= now {
                        if known {
                            self.input(
                                h,
                                Input::Writable {
                                    conn: id,
                                    bytes: len,
                                },
                            );
                        }
                    } else {
                        self.queue.push(
                            left,
                            Ev::Credit {
                                conn: key,
                                side,
                                bytes: len,
                            },
                        );
                    }
                }
                None => {
                    e.fin = Fin::Sent;
                    let closed_both = e.peer_fin && known;
                    self.queue.push(
                        arrive,
                        Ev::Arrive {
                            conn: key,
                            to: 1 - side,
                            seg: Segment::Fin,
                        },
                    );
                    if closed_both {
                        self.closed(key, side);
                    }
                    self.maybe_free(key);
                    return;
                }
            }
        }
    }

    /// The receiver read `bytes` of what end `side` sent: its window opens again.
    pub(crate) fn window(&mut self, key: ConnKey, side: usize, bytes: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let e = &mut c.ends[side];
        e.unread = e.unread.saturating_sub(bytes);
        self.pump(key, side);
    }

    pub(crate) fn credit(&mut self, key: ConnKey, side: usize, bytes: usize) {
        let Some(c) = self.conns.get(key) else { return };
        let e = &c.ends[side];
        if e.known {
            let (h, id) = (e.host, e.id);
            self.input(h, Input::Writable { conn: id, bytes });
        }
    }

    /// A segment reaches end `to`.
    pub(crate) fn arrive(&mut self, key: ConnKey, to: usize, seg: Segment) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        match seg {
            Segment::SynAck => {
                if to == 0 {
                    self.established(key);
                }
            }
            Segment::Rst => self.rst_arrive(key, to),
            seg => {
                let e = &mut c.ends[to];
                if e.state == State::Dead {
                    return;
                }
                if e.closed || !e.known {
                    if matches!(seg, Segment::Fin) {
                        // The FIN a lingering driver waits for: it lets the socket go.
                        e.peer_fin = true;
                    }
                    if matches!(seg, Segment::Data(_)) && !e.rst_sent {
                        // Data for a socket that was closed: the kernel answers with a RST.
                        e.rst_sent = true;
                        e.state = State::Dead;
                        e.queue.clear();
                        self.send_rst(key, to);
                        self.maybe_free(key);
                    }
                    return;
                }
                if e.paused {
                    e.held.push_back(seg);
                    return;
                }
                self.take(key, to, seg);
            }
        }
    }

    /// Hands a data or FIN segment to the endpoint of end `to`.
    fn take(&mut self, key: ConnKey, to: usize, seg: Segment) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let serial = c.serial;
        match seg {
            Segment::Data(data) => {
                let len = data.len();
                let waiting = !c.ends[1 - to].queue.is_empty();
                let back = c.one_way;
                let e = &c.ends[to];
                let (h, id) = (e.host, e.id);
                self.input(h, Input::Received { conn: id, data });
                if waiting {
                    // The sender is held by the window: the room made by this read reaches
                    // it with the acknowledgement, one way back, so a window-bound stream
                    // moves one window per round trip, as TCP does.
                    let ev = Ev::Window {
                        conn: key,
                        side: 1 - to,
                        bytes: len,
                    };
                    self.queue.push(self.now + back, ev);
                } else {
                    // Nobody waits for the room: returning it now changes no timing.
                    self.window(key, 1 - to, len);
                }
            }
            Segment::Fin => {
                let e = &mut c.ends[to];
                e.peer_fin = true;
                let (h, id) = (e.host, e.id);
                if e.fin == Fin::None {
                    if self.tracer.is_some() {
                        self.note(
                            h,
                            Direction::Local,
                            Summary::plain(format!("#{serial} {id} half-closed by peer")),
                        );
                    }
                    self.input(h, Input::HalfClosed { conn: id });
                } else if e.fin == Fin::Sent {
                    self.closed(key, to);
                }
                // With our FIN still queued, `Closed` comes when it leaves (see `pump`).
                self.maybe_free(key);
            }
            Segment::SynAck | Segment::Rst => {}
        }
    }

    /// Both directions are finished: tell the endpoint and let go of the id.
    fn closed(&mut self, key: ConnKey, side: usize) {
        let Some(c) = self.conns.get(key) else { return };
        let e = &c.ends[side];
        if !e.known {
            return;
        }
        let (h, id, serial) = (e.host, e.id, c.serial);
        if self.tracer.is_some() {
            self.note(
                h,
                Direction::Local,
                Summary::plain(format!("#{serial} {id} closed")),
            );
        }
        self.forget(key, side);
        self.input(h, Input::Closed { conn: id });
    }

    fn rst_arrive(&mut self, key: ConnKey, to: usize) {
        if to == 0 {
            self.disarm(key);
        }
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let serial = c.serial;
        let e = &mut c.ends[to];
        let before = e.state;
        e.state = State::Dead;
        e.queue.clear();
        e.held.clear();
        let (h, id, known) = (e.host, e.id, e.known);
        if known {
            let (input, what) = match before {
                State::SynSent => (
                    Input::ConnectFailed {
                        conn: id,
                        error: ferry_proto::io::ConnectError::Refused,
                    },
                    "refused",
                ),
                State::Open => (Input::Reset { conn: id }, "reset by peer"),
                State::Dead => return,
            };
            if self.tracer.is_some() {
                self.note(
                    h,
                    Direction::Local,
                    Summary::plain(format!("#{serial} {id} {what}")),
                );
            }
            self.forget(key, to);
            self.input(h, input);
        }
        self.maybe_free(key);
    }

    /// Sends a RST from end `side` to the other end, after what is already in flight.
    pub(crate) fn send_rst(&mut self, key: ConnKey, side: usize) {
        if self.blocked(key) {
            return; // a RST is not retransmitted: on a dead route it is simply lost
        }
        let Some(c) = self.conns.get(key) else { return };
        if !c.bound {
            return;
        }
        let route = c.route.clone();
        let back = self.latency_back(&route);
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let e = &mut c.ends[side];
        let at = (self.now + back).max(e.last_arrival);
        e.last_arrival = at;
        self.queue.push(
            at,
            Ev::Arrive {
                conn: key,
                to: 1 - side,
                seg: Segment::Rst,
            },
        );
    }

    /// The endpoint no longer uses this end's id.
    pub(crate) fn forget(&mut self, key: ConnKey, side: usize) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        let e = &mut c.ends[side];
        if !e.known {
            return;
        }
        e.known = false;
        let (h, id) = (e.host, e.id);
        let conns = &mut self.hosts[h.ix()].conns;
        if conns.get(&id) == Some(&(key, side)) {
            conns.remove(&id);
        }
    }

    /// Frees the connection once neither end has anything left to do.
    pub(crate) fn maybe_free(&mut self, key: ConnKey) {
        let Some(c) = self.conns.get(key) else { return };
        let done = if c.bound {
            c.ends[0].finished() && c.ends[1].finished()
        } else {
            !c.ends[0].known
        };
        if !done {
            return;
        }
        self.disarm(key);
        let Some(c) = self.conns.remove(key) else {
            return;
        };
        let sides = if c.bound { 2 } else { 1 };
        for (side, e) in c.ends.iter().enumerate().take(sides) {
            let host = &mut self.hosts[e.host.ix()];
            if host.tuples.get(&(e.local, e.remote)) == Some(&(key, side)) {
                host.tuples.remove(&(e.local, e.remote));
            }
            if host.conns.get(&e.id) == Some(&(key, side)) {
                host.conns.remove(&e.id);
            }
            host.drop_port(e.local.port());
        }
        self.release_mappings(&c.mappings);
        if let Some(t) = &mut self.tracer {
            t.decoder.forget(c.serial);
        }
    }

    /// Whether the connection's route is cut (a link down, a partition, a stall, a NAT that
    /// lost its mapping).
    pub(crate) fn blocked(&self, key: ConnKey) -> bool {
        let Some(c) = self.conns.get(key) else {
            return true;
        };
        if !c.bound {
            return false;
        }
        c.blackholed
            || c.route.iter().any(|(l, _)| !self.links[*l].up)
            || self.rules.partitioned(c.ends[0].host, c.ends[1].host)
            || self.rules.stalled(c.ends[0].host, c.ends[0].local.port())
            || self.rules.stalled(c.ends[1].host, c.ends[1].local.port())
    }

    /// Every live connection tries to send again (after a fault healed).
    pub(crate) fn pump_all(&mut self) {
        for key in self.conns.keys() {
            self.pump(key, 0);
            self.pump(key, 1);
        }
    }
}
