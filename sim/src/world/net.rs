//! The world's side of the topology ([`crate::net`]): how a SYN walks its networks and
//! routers, one decision at a time.

use super::World;
use crate::link::{SYN_RTO, Way};
use crate::nat::Filtered;
use crate::net::{Attach, Step};
use crate::tcp::SynWalk;

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
