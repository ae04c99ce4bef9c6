//! Faults: rules over traffic that a test schedules at a virtual time.
//!
//! A fault is data ([`Fault`]); scheduling one ([`World::schedule`] or
//! [`WorldBuilder::fault`](crate::WorldBuilder::fault)) makes it take effect at that time,
//! and its inverse (`LinkUp`, `Heal`, `Unstall`, `StopIntercept`) undoes it. While a route
//! is cut (a link down, a partition, a stall) established connections hold their data, as
//! TCP would keep retransmitting, and new SYNs across it are lost, so connects time out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use ferry_proto::io::Input;

use crate::ids::{HostId, LinkOf};
use crate::tcp::State;
use crate::world::World;

/// Something that goes wrong (or gets better) at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A link stops carrying anything.
    LinkDown(LinkOf),
    /// A link carries again; held data moves on.
    LinkUp(LinkOf),
    /// Nothing passes between any host of `a` and any host of `b` (the DHT is unaffected:
    /// it stands for the rest of the internet).
    Partition {
        /// One side.
        a: Vec<HostId>,
        /// The other side.
        b: Vec<HostId>,
    },
    /// Every partition ends.
    Heal,
    /// Every connection of `host` (on local port `port`, when given) is reset, both ends
    /// told at once, as when a middlebox drops its state and answers with RSTs.
    ResetConnections {
        /// Whose connections.
        host: HostId,
        /// Only those on this local port.
        port: Option<u16>,
    },
    /// The connections of `host` (on local port `port`, when given) stop moving bytes in
    /// either direction, without any error: a black hole that only timeouts can notice.
    Stall {
        /// Whose connections.
        host: HostId,
        /// Only those on this local port.
        port: Option<u16>,
    },
    /// The stall on `host` and `port` ends.
    Unstall {
        /// Whose connections.
        host: HostId,
        /// The same port as the stall.
        port: Option<u16>,
    },
    /// Connections to `target` reach `by` instead (which must listen on the target's port):
    /// an on-path attacker or a transparent proxy. `by`'s own connections pass untouched,
    /// so it can relay to the real target.
    Intercept {
        /// The address dialled.
        target: SocketAddr,
        /// The host that answers in its place.
        by: HostId,
    },
    /// Connections to `target` go to it again.
    StopIntercept {
        /// The address dialled.
        target: SocketAddr,
    },
    /// The router (a NAT) loses every mapping, as when it reboots or its state times out
    /// under a sender that went quiet: connections through it stop carrying anything, with no
    /// error on either side (only timeouts notice), and new connections from inside get new
    /// mappings, seen outside as a new source port (NAT rebinding).
    Rebind(crate::ids::RouterId),
}

/// The faults in force.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    partitions: Vec<(BTreeSet<HostId>, BTreeSet<HostId>)>,
    stalls: BTreeSet<(HostId, Option<u16>)>,
    pub(crate) intercepts: BTreeMap<SocketAddr, HostId>,
}

impl Rules {
    pub(crate) fn partitioned(&self, x: HostId, y: HostId) -> bool {
        self.partitions
            .iter()
            .any(|(a, b)| (a.contains(&x) && b.contains(&y)) || (a.contains(&y) && b.contains(&x)))
    }

    pub(crate) fn stalled(&self, host: HostId, port: u16) -> bool {
        !self.stalls.is_empty()
            && (self.stalls.contains(&(host, None)) || self.stalls.contains(&(host, Some(port))))
    }
}

impl World {
    pub(crate) fn apply(&mut self, fault: Fault) {
        if self.tracer.is_some() {
            let text = self.describe(&fault);
            self.note_world(text);
        }
        match fault {
            Fault::LinkDown(of) | Fault::LinkUp(of) => {
                let up = matches!(fault, Fault::LinkUp(_));
                let link = match of {
                    LinkOf::Host(h) => self.hosts.get(h.ix()).map(|h| h.link),
                    LinkOf::Router(r) => self.routers.get(r.ix()).map(|r| r.link),
                };
                if let Some(l) = link {
                    self.links[l].up = up;
                    if up {
                        self.pump_all();
                    }
                }
            }
            Fault::Partition { a, b } => {
                self.rules
                    .partitions
                    .push((a.into_iter().collect(), b.into_iter().collect()));
            }
            Fault::Heal => {
                self.rules.partitions.clear();
                self.pump_all();
            }
            Fault::Rebind(router) => {
                if let Some(r) = self.routers.get_mut(router.ix()) {
                    r.table.flush();
                }
                for key in self.conns.keys() {
                    if let Some(c) = self.conns.get_mut(key)
                        && c.mappings.iter().any(|(r, _)| *r == router)
                    {
                        c.mappings.retain(|(r, _)| *r != router);
                        c.blackholed = true;
                    }
                }
            }
            Fault::ResetConnections { host, port } => {
                for key in self.conns.keys() {
                    let Some(c) = self.conns.get(key) else {
                        continue;
                    };
                    let sides = if c.bound { 2 } else { 1 };
                    let hit = (0..sides).any(|s| {
                        c.ends[s].host == host && port.is_none_or(|p| c.ends[s].local.port() == p)
                    });
                    if !hit || !c.bound {
                        continue;
                    }
                    self.disarm(key);
                    for side in 0..2 {
                        let Some(c) = self.conns.get_mut(key) else {
                            break;
                        };
                        let e = &mut c.ends[side];
                        let before = e.state;
                        e.state = State::Dead;
                        e.queue.clear();
                        e.held.clear();
                        let (h, id, known) = (e.host, e.id, e.known);
                        let input = match before {
                            State::Open => Input::Reset { conn: id },
                            // A RST in the middle of the handshake: the connect is refused.
                            State::SynSent => Input::ConnectFailed {
                                conn: id,
                                error: ferry_proto::io::ConnectError::Refused,
                            },
                            State::Dead => continue,
                        };
                        if known {
                            self.forget(key, side);
                            self.input(h, input);
                        }
                    }
                    self.maybe_free(key);
                }
            }
            Fault::Stall { host, port } => {
                self.rules.stalls.insert((host, port));
            }
            Fault::Unstall { host, port } => {
                self.rules.stalls.remove(&(host, port));
                self.pump_all();
            }
            Fault::Intercept { target, by } => {
                self.rules.intercepts.insert(target, by);
            }
            Fault::StopIntercept { target } => {
                self.rules.intercepts.remove(&target);
            }
        }
    }

    fn describe(&self, fault: &Fault) -> String {
        let link = |of: &LinkOf| match of {
            LinkOf::Host(h) => self.host_name(*h).to_owned(),
            LinkOf::Router(r) => self
                .routers
                .get(r.ix())
                .map_or("?".to_owned(), |r| format!("{} uplink", r.name)),
        };
        let names = |hs: &[HostId]| {
            hs.iter()
                .map(|h| self.host_name(*h))
                .collect::<Vec<_>>()
                .join(",")
        };
        let port = |p: &Option<u16>| p.map_or(String::new(), |p| format!(" port {p}"));
        match fault {
            Fault::LinkDown(of) => format!("link {} down", link(of)),
            Fault::LinkUp(of) => format!("link {} up", link(of)),
            Fault::Partition { a, b } => format!("partition {} | {}", names(a), names(b)),
            Fault::Heal => "heal partitions".to_owned(),
            Fault::ResetConnections { host, port: p } => {
                format!("reset connections of {}{}", self.host_name(*host), port(p))
            }
            Fault::Stall { host, port: p } => format!("stall {}{}", self.host_name(*host), port(p)),
            Fault::Unstall { host, port: p } => {
                format!("unstall {}{}", self.host_name(*host), port(p))
            }
            Fault::Intercept { target, by } => {
                format!("{} intercepts {target}", self.host_name(*by))
            }
            Fault::StopIntercept { target } => format!("stop intercepting {target}"),
            Fault::Rebind(r) => format!(
                "{} loses its NAT mappings (rebinding)",
                self.routers.get(r.ix()).map_or("?", |r| r.name.as_str())
            ),
        }
    }
}
