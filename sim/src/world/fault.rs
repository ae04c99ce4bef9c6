//! The world's side of faults ([`crate::fault`]): applying a [`Fault`] when its time comes,
//! and what it does to links, hosts and connections.

use ferry_proto::io::Input;

use super::World;
use crate::fault::Fault;
use crate::ids::{HostId, LinkOf};
use crate::tcp::State;
use crate::turn_server::TurnServer;

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
            Fault::RestartTurn(host) => {
                // The server resets its connections itself and closes its relay listeners;
                // a host that runs no TURN server is left alone.
                let _ = self.with_endpoint(host, |s: &mut TurnServer, _| s.restart());
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
            Fault::RestartTurn(h) => format!("the TURN server on {} restarts", self.host_name(*h)),
            Fault::Rebind(r) => format!(
                "{} loses its NAT mappings (rebinding)",
                self.routers.get(r.ix()).map_or("?", |r| r.name.as_str())
            ),
        }
    }
}
