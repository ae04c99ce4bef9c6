//! Networks joined by routers, and how a SYN crosses them.
//!
//! The topology is a tree: the internet at the root, and under it networks (a home, an
//! office, a carrier), each joined to its parent by one router. Addresses are scoped to a
//! network, so two homes can both use `192.168.1.2`. A router that translates ([`RouterKind::Nat`])
//! hides its inside addresses; one that does not (open or firewall) makes them reachable
//! from its parent, and the builder registers them there.
//!
//! Only SYNs are routed hop by hop: each NAT or firewall decides when the SYN reaches it,
//! by the state it has then. Once a SYN arrived, its connection keeps the route it took
//! (TCP's later segments follow the mappings the SYN made).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::ids::{HostId, NetworkId, RouterId};
use crate::link::{SYN_RTO, Way};
use crate::nat::{Filtered, NatTable, RouterKind};
use crate::tcp::SynWalk;
use crate::world::World;

/// What an address in a network is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attach {
    /// A host's interface.
    Host(HostId),
    /// A router's external address.
    Router(RouterId),
    /// An address inside a router that does not translate.
    Via(RouterId),
}

pub(crate) struct Network {
    pub(crate) name: String,
    pub(crate) uplink: Option<RouterId>,
    pub(crate) addrs: BTreeMap<IpAddr, Attach>,
}

pub(crate) struct Router {
    pub(crate) name: String,
    pub(crate) parent: NetworkId,
    pub(crate) child: NetworkId,
    pub(crate) v4: Option<Ipv4Addr>,
    pub(crate) v6: Option<Ipv6Addr>,
    pub(crate) kind_v4: RouterKind,
    pub(crate) kind_v6: RouterKind,
    pub(crate) link: usize,
    pub(crate) table: NatTable,
}

impl Router {
    pub(crate) fn kind(&self, ip: IpAddr) -> RouterKind {
        if ip.is_ipv4() {
            self.kind_v4
        } else {
            self.kind_v6
        }
    }

    fn external(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }
}

/// Where a SYN's walk goes next.
pub(crate) enum Step {
    /// Keep walking (the walk was updated).
    Next,
    /// It reached its host at `walk.at`.
    Arrived,
    /// It is lost; the reason is for the trace.
    Lost(&'static str),
}

impl World {
    /// Takes one routing decision for a SYN in `walk.net`, at `walk.at`.
    pub(crate) fn syn_step(&mut self, walk: &mut SynWalk) -> Step {
        if walk.links.len() > 64 {
            return Step::Lost("routing loop");
        }
        let net = &self.networks[walk.net.ix()];
        match net.addrs.get(&walk.dst.ip()).copied() {
            Some(Attach::Host(h)) => {
                walk.blame = None;
                let link = self.hosts[h.ix()].link;
                if !self.cross(walk, link, Way::Down) {
                    return Step::Lost("host link down");
                }
                walk.to = Some(h);
                Step::Arrived
            }
            Some(Attach::Router(r)) => {
                walk.blame = Some(r);
                let router = &mut self.routers[r.ix()];
                let kind = router.kind(walk.dst.ip());
                let Some(rules) = kind.rules() else {
                    return Step::Lost("no such address behind an open router");
                };
                if walk.came_up_via == Some(r) && !rules.hairpinning {
                    return Step::Lost("no hairpinning");
                }
                match router.table.inbound(&rules, walk.dst, walk.src) {
                    Ok((map, internal)) => {
                        walk.mappings.push((r, map));
                        walk.dst = internal;
                        walk.net = router.child;
                        walk.came_up_via = None;
                        let link = router.link;
                        if !self.cross(walk, link, Way::Down) {
                            return Step::Lost("router link down");
                        }
                        Step::Next
                    }
                    Err(Filtered::NoMapping) => Step::Lost("no mapping"),
                    Err(Filtered::Refused) => Step::Lost("filtered"),
                }
            }
            Some(Attach::Via(r)) => {
                walk.blame = Some(r);
                let router = &mut self.routers[r.ix()];
                if let Some(rules) = router.kind(walk.dst.ip()).rules() {
                    match router.table.inbound(&rules, walk.dst, walk.src) {
                        Ok((map, _)) => walk.mappings.push((r, map)),
                        Err(_) => return Step::Lost("firewall"),
                    }
                }
                walk.net = router.child;
                walk.came_up_via = None;
                let link = router.link;
                if !self.cross(walk, link, Way::Down) {
                    return Step::Lost("router link down");
                }
                Step::Next
            }
            None => {
                let Some(r) = net.uplink else {
                    walk.blame = None;
                    return Step::Lost("no route");
                };
                walk.blame = Some(r);
                let now = walk.at;
                let router = &mut self.routers[r.ix()];
                let kind = router.kind(walk.dst.ip());
                if let Some(rules) = kind.rules() {
                    let external = if kind.translates() {
                        match router.external(walk.dst.ip()) {
                            Some(ip) => ip,
                            None => return Step::Lost("router has no address of that family"),
                        }
                    } else {
                        walk.src.ip()
                    };
                    let Some((map, ext, fresh)) = router
                        .table
                        .outbound(&rules, now, walk.src, walk.dst, external)
                    else {
                        return Step::Lost("NAT out of ports");
                    };
                    walk.mappings.push((r, map));
                    if fresh && kind.translates() && self.tracer.is_some() {
                        let text = format!("#{} map {} → {}", walk.serial, walk.src, ext);
                        self.note_router(r, text);
                    }
                    walk.src = ext;
                }
                let router = &self.routers[r.ix()];
                walk.net = router.parent;
                walk.came_up_via = Some(r);
                let link = router.link;
                if !self.cross(walk, link, Way::Up) {
                    return Step::Lost("router link down");
                }
                Step::Next
            }
        }
    }

    /// Crosses one link: adds it to the route and its delay to the walk's clock.
    fn cross(&mut self, walk: &mut SynWalk, link: usize, way: Way) -> bool {
        let l = &self.links[link];
        if !l.up {
            return false;
        }
        walk.at += l.spec.delay(&mut self.rng, SYN_RTO);
        walk.links.push((link, way));
        true
    }

    /// Whether the next step of this walk needs a NAT's or firewall's state, so it must be
    /// taken at the time the SYN gets there rather than now.
    pub(crate) fn step_is_stateful(&self, walk: &SynWalk) -> bool {
        let net = &self.networks[walk.net.ix()];
        let router = match net.addrs.get(&walk.dst.ip()) {
            Some(Attach::Host(_)) => return false,
            Some(Attach::Router(r) | Attach::Via(r)) => *r,
            None => match net.uplink {
                Some(r) => r,
                None => return false,
            },
        };
        self.routers[router.ix()]
            .kind(walk.dst.ip())
            .rules()
            .is_some()
    }
}

/// The external address a router's NAT currently maps `internal` to towards `remote`.
pub(crate) fn mapped(
    router: &Router,
    internal: SocketAddr,
    remote: SocketAddr,
) -> Option<SocketAddr> {
    router.table.lookup(internal, remote)
}
