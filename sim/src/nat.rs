//! NATs and firewalls for TCP, in the terms of RFC 4787 and RFC 5382.
//!
//! A [`Nat`] is two choices and two switches:
//! - **mapping** (RFC 4787 §4.1): which outbound connections share an external port. With
//!   endpoint-independent mapping every connection from one internal `ip:port` gets the
//!   same external port; address-dependent gives one per remote address; address-and-port-
//!   dependent one per remote `ip:port` (the "symmetric NAT").
//! - **filtering** (RFC 4787 §5): which unsolicited inbound SYNs a mapping lets in:
//!   any (endpoint-independent), those from an address the mapping has sent to (address-
//!   dependent), or only from an `ip:port` it has sent to (address-and-port-dependent).
//!   A filtered SYN is dropped silently, so the connecting side times out (RFC 5382 REQ-4
//!   allows holding or dropping it; the simulator drops).
//! - **port preservation**: the external port equals the internal one when it is free.
//! - **hairpinning** (RFC 4787 §6, RFC 5382 REQ-8): a host inside may reach another host
//!   inside through the NAT's external address.
//!
//! A [`RouterKind::Firewall`] translates nothing but filters like an
//! address-and-port-dependent NAT: only connections opened from inside (or SYNs from a
//! remote the inside has sent a SYN to, which is what TCP simultaneous open needs) pass.
//!
//! This module owns the mapping table and its rules, and nothing about routing or time
//! beyond the idle expiry of unused mappings.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// One of RFC 4787's three behaviours, used for both mapping and filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Behaviour {
    /// Depends on nothing about the remote.
    EndpointIndependent,
    /// Depends on the remote's address.
    AddressDependent,
    /// Depends on the remote's address and port.
    AddressAndPortDependent,
}

/// How a NAT maps and filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nat {
    /// Which outbound connections share a mapping.
    pub mapping: Behaviour,
    /// Which inbound SYNs a mapping lets in.
    pub filtering: Behaviour,
    /// Keep the internal port as the external port when it is free.
    pub port_preservation: bool,
    /// Let inside hosts reach each other through the external address.
    pub hairpinning: bool,
    /// How long a mapping no connection uses survives (RFC 5382 REQ-5 asks for at least
    /// 2 h 4 min for established connections; this is the idle time *after* the last
    /// connection ended, like the transitory timeout of §5).
    pub idle_timeout: Duration,
}

impl Nat {
    /// A NAT with these behaviours, port preservation on and hairpinning off.
    pub fn new(mapping: Behaviour, filtering: Behaviour) -> Nat {
        Nat {
            mapping,
            filtering,
            port_preservation: true,
            hairpinning: false,
            idle_timeout: Duration::from_secs(240),
        }
    }

    /// Endpoint-independent mapping and filtering ("full cone").
    pub fn full_cone() -> Nat {
        Nat::new(
            Behaviour::EndpointIndependent,
            Behaviour::EndpointIndependent,
        )
    }

    /// Endpoint-independent mapping, address-dependent filtering ("restricted cone").
    pub fn restricted_cone() -> Nat {
        Nat::new(Behaviour::EndpointIndependent, Behaviour::AddressDependent)
    }

    /// Endpoint-independent mapping, address-and-port-dependent filtering
    /// ("port-restricted cone"), the most common home NAT.
    pub fn port_restricted_cone() -> Nat {
        Nat::new(
            Behaviour::EndpointIndependent,
            Behaviour::AddressAndPortDependent,
        )
    }

    /// Address-and-port-dependent mapping and filtering ("symmetric"), without port
    /// preservation, as carrier-grade NATs often are.
    pub fn symmetric() -> Nat {
        Nat {
            port_preservation: false,
            ..Nat::new(
                Behaviour::AddressAndPortDependent,
                Behaviour::AddressAndPortDependent,
            )
        }
    }

    /// The same NAT with port preservation on or off.
    pub fn with_port_preservation(self, on: bool) -> Nat {
        Nat {
            port_preservation: on,
            ..self
        }
    }

    /// The same NAT with hairpinning on or off.
    pub fn with_hairpinning(self, on: bool) -> Nat {
        Nat {
            hairpinning: on,
            ..self
        }
    }
}

/// What a router does to the traffic between its two networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterKind {
    /// Routes both ways: the inside addresses are reachable from outside.
    Open,
    /// Routes without translating, and drops unsolicited inbound SYNs.
    Firewall,
    /// Translates inside addresses to its external address.
    Nat(Nat),
}

impl RouterKind {
    /// Whether inside addresses are rewritten (and so unreachable from outside).
    pub fn translates(&self) -> bool {
        matches!(self, RouterKind::Nat(_))
    }

    /// The mapping and filtering rules this kind applies; `None` for an open router.
    pub(crate) fn rules(&self) -> Option<Nat> {
        match self {
            RouterKind::Open => None,
            // A firewall is a NAT that keeps addresses: one "mapping" per inside ip:port,
            // address-and-port-dependent filtering, never any hairpin question.
            RouterKind::Firewall => Some(Nat {
                port_preservation: true,
                hairpinning: true,
                ..Nat::new(
                    Behaviour::EndpointIndependent,
                    Behaviour::AddressAndPortDependent,
                )
            }),
            RouterKind::Nat(nat) => Some(*nat),
        }
    }
}

/// A mapping's index in its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct MapId(u32);

/// What a mapping is keyed by, depending on the mapping behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct MapKey {
    internal: SocketAddr,
    remote_ip: Option<IpAddr>,
    remote_port: Option<u16>,
}

#[derive(Debug, Clone)]
struct Mapping {
    key: MapKey,
    external: SocketAddr,
    /// Remotes this mapping has sent a SYN to, for filtering. Bounded by [`MAX_CONTACTS`].
    contacted: BTreeSet<SocketAddr>,
    /// Connections using this mapping.
    refs: u32,
    /// When the last connection using it ended.
    idle_since: Duration,
    /// Asked for from inside (UPnP-IGD, NAT-PMP, PCP): lets in any remote and never
    /// expires until deleted.
    forwarded: bool,
}

/// Past this many remotes, a mapping forgets the oldest-sorted one (memory stays bounded;
/// a real NAT's state table is bounded too).
const MAX_CONTACTS: usize = 1024;
/// External ports a NAT allocates from when it does not preserve the port.
const FIRST_PORT: u16 = 20_000;

/// One router's mappings.
#[derive(Debug, Default)]
pub(crate) struct NatTable {
    maps: Vec<Option<Mapping>>,
    free: Vec<u32>,
    by_key: BTreeMap<MapKey, MapId>,
    by_external: BTreeMap<SocketAddr, MapId>,
    next_port: u16,
}

/// Why an inbound SYN was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Filtered {
    /// No mapping holds that external port.
    NoMapping,
    /// A mapping exists but its filtering rule refuses this remote.
    Refused,
}

impl NatTable {
    /// An outbound SYN from `internal` to `remote`: finds or creates the mapping, records
    /// the remote for filtering and takes a reference for the connection. `external_ip` is
    /// the router's address of the remote's family (or the inside address for a firewall).
    /// Returns the mapping, the external address, and whether it is new.
    pub(crate) fn outbound(
        &mut self,
        rules: &Nat,
        now: Duration,
        internal: SocketAddr,
        remote: SocketAddr,
        external_ip: IpAddr,
    ) -> Option<(MapId, SocketAddr, bool)> {
        let key = MapKey {
            internal,
            remote_ip: (rules.mapping != Behaviour::EndpointIndependent).then_some(remote.ip()),
            remote_port: (rules.mapping == Behaviour::AddressAndPortDependent)
                .then_some(remote.port()),
        };
        let (id, fresh) = match self.by_key.get(&key) {
            Some(id) => (*id, false),
            None => {
                self.expire(rules, now);
                let port = self.pick_port(rules, internal.port(), external_ip)?;
                let mapping = Mapping {
                    key,
                    external: SocketAddr::new(external_ip, port),
                    contacted: BTreeSet::new(),
                    refs: 0,
                    idle_since: now,
                    forwarded: false,
                };
                let id = match self.free.pop() {
                    Some(ix) => {
                        self.maps[ix as usize] = Some(mapping);
                        MapId(ix)
                    }
                    None => {
                        self.maps.push(Some(mapping));
                        MapId(self.maps.len() as u32 - 1)
                    }
                };
                self.by_key.insert(key, id);
                self.by_external
                    .insert(SocketAddr::new(external_ip, port), id);
                (id, true)
            }
        };
        let mapping = self.maps[id.0 as usize].as_mut()?;
        if mapping.contacted.len() >= MAX_CONTACTS && !mapping.contacted.contains(&remote) {
            mapping.contacted.pop_first();
        }
        mapping.contacted.insert(remote);
        mapping.refs += 1;
        Some((id, mapping.external, fresh))
    }

    /// An inbound SYN from `remote` to `external`: the inside address it goes to, with a
    /// reference taken for the connection, or why it is dropped.
    pub(crate) fn inbound(
        &mut self,
        rules: &Nat,
        external: SocketAddr,
        remote: SocketAddr,
    ) -> Result<(MapId, SocketAddr), Filtered> {
        let id = *self.by_external.get(&external).ok_or(Filtered::NoMapping)?;
        let mapping = self.maps[id.0 as usize]
            .as_mut()
            .ok_or(Filtered::NoMapping)?;
        let allowed = mapping.forwarded
            || match rules.filtering {
                Behaviour::EndpointIndependent => true,
                Behaviour::AddressDependent => {
                    mapping.contacted.iter().any(|c| c.ip() == remote.ip())
                }
                Behaviour::AddressAndPortDependent => mapping.contacted.contains(&remote),
            };
        if !allowed {
            return Err(Filtered::Refused);
        }
        mapping.refs += 1;
        Ok((id, mapping.key.internal))
    }

    /// A port mapping asked for from inside (what a UPnP-IGD, NAT-PMP or PCP gateway
    /// grants): `internal` is reachable from any remote at the returned external address
    /// until [`unforward`](Self::unforward). It is the endpoint-independent mapping of
    /// `internal` (the one an outbound connection from it uses behind an
    /// endpoint-independent mapping NAT, so the peer sees one address either way), made if
    /// there is none yet; `None` when the NAT is out of ports.
    pub(crate) fn forward(
        &mut self,
        rules: &Nat,
        now: Duration,
        internal: SocketAddr,
        external_ip: IpAddr,
    ) -> Option<SocketAddr> {
        let key = MapKey {
            internal,
            remote_ip: None,
            remote_port: None,
        };
        let id = match self.by_key.get(&key) {
            Some(id) => *id,
            None => {
                self.expire(rules, now);
                let port = self.pick_port(rules, internal.port(), external_ip)?;
                let external = SocketAddr::new(external_ip, port);
                let mapping = Mapping {
                    key,
                    external,
                    contacted: BTreeSet::new(),
                    refs: 0,
                    idle_since: now,
                    forwarded: false,
                };
                let id = match self.free.pop() {
                    Some(ix) => {
                        self.maps[ix as usize] = Some(mapping);
                        MapId(ix)
                    }
                    None => {
                        self.maps.push(Some(mapping));
                        MapId(self.maps.len() as u32 - 1)
                    }
                };
                self.by_key.insert(key, id);
                self.by_external.insert(external, id);
                id
            }
        };
        let mapping = self.maps[id.0 as usize].as_mut()?;
        if !mapping.forwarded {
            // The forward holds the mapping as a connection would: it never idles out.
            mapping.forwarded = true;
            mapping.refs += 1;
        }
        Some(mapping.external)
    }

    /// Deletes the port mapping of `internal`; the mapping itself lives on while
    /// connections use it, then idles out as any other. Whether there was one.
    pub(crate) fn unforward(&mut self, internal: SocketAddr, now: Duration) -> bool {
        let key = MapKey {
            internal,
            remote_ip: None,
            remote_port: None,
        };
        let Some(id) = self.by_key.get(&key).copied() else {
            return false;
        };
        match self.maps[id.0 as usize].as_mut() {
            Some(m) if m.forwarded => {
                m.forwarded = false;
                self.release(id, now);
                true
            }
            _ => false,
        }
    }

    /// A connection using `id` ended.
    pub(crate) fn release(&mut self, id: MapId, now: Duration) {
        if let Some(Some(m)) = self.maps.get_mut(id.0 as usize) {
            m.refs = m.refs.saturating_sub(1);
            if m.refs == 0 {
                m.idle_since = now;
            }
        }
    }

    /// Forgets every mapping, as a NAT that reboots or drops its state does: new
    /// connections get new mappings (a new external port unless the port is preserved), and
    /// the ids of the old ones never name anything again.
    pub(crate) fn flush(&mut self) {
        for m in &mut self.maps {
            *m = None;
        }
        self.free.clear();
        self.by_key.clear();
        self.by_external.clear();
    }

    /// How many mappings are alive.
    pub(crate) fn len(&self) -> usize {
        self.by_key.len()
    }

    /// The external address of the mapping `internal` would use towards `remote`, if any.
    pub(crate) fn lookup(&self, internal: SocketAddr, remote: SocketAddr) -> Option<SocketAddr> {
        self.by_key
            .iter()
            .filter(|(k, _)| {
                k.internal == internal
                    && k.remote_ip.is_none_or(|ip| ip == remote.ip())
                    && k.remote_port.is_none_or(|p| p == remote.port())
            })
            .find_map(|(_, id)| self.maps[id.0 as usize].as_ref().map(|m| m.external))
    }

    /// Forgets the mappings unused for longer than the idle timeout, so the table stays as
    /// small as the traffic through it.
    fn expire(&mut self, rules: &Nat, now: Duration) {
        let stale: Vec<MapId> = self
            .maps
            .iter()
            .enumerate()
            .filter_map(|(ix, m)| {
                let m = m.as_ref()?;
                (m.refs == 0 && now.saturating_sub(m.idle_since) >= rules.idle_timeout)
                    .then_some(MapId(ix as u32))
            })
            .collect();
        for id in stale {
            if let Some(m) = self.maps[id.0 as usize].take() {
                self.by_key.remove(&m.key);
                self.by_external.remove(&m.external);
                self.free.push(id.0);
            }
        }
    }

    fn pick_port(&mut self, rules: &Nat, internal_port: u16, ip: IpAddr) -> Option<u16> {
        let taken =
            |p: u16, t: &BTreeMap<SocketAddr, MapId>| t.contains_key(&SocketAddr::new(ip, p));
        if rules.port_preservation && !taken(internal_port, &self.by_external) {
            return Some(internal_port);
        }
        if self.next_port < FIRST_PORT {
            self.next_port = FIRST_PORT;
        }
        // Sequential allocation: predictable, as many real NATs are; at most one lap.
        for _ in 0..=(u16::MAX - FIRST_PORT) {
            let p = self.next_port;
            self.next_port = if p == u16::MAX { FIRST_PORT } else { p + 1 };
            if !taken(p, &self.by_external) {
                return Some(p);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    const EXT: &str = "203.0.113.1";

    fn ext_ip() -> IpAddr {
        EXT.parse().expect("test address")
    }

    #[test]
    fn mapping_behaviours_share_ports_as_rfc_4787_says() {
        let inside = sa("192.168.1.2:5000");
        let (r1, r2, r3) = (sa("1.1.1.1:80"), sa("1.1.1.1:81"), sa("2.2.2.2:80"));
        let ports = |b: Behaviour| {
            let mut t = NatTable::default();
            let rules = Nat::new(b, Behaviour::EndpointIndependent);
            [r1, r2, r3].map(|r| {
                t.outbound(&rules, Duration::ZERO, inside, r, ext_ip())
                    .expect("a port")
                    .1
                    .port()
            })
        };
        let eim = ports(Behaviour::EndpointIndependent);
        assert_eq!(eim, [5000, 5000, 5000]);
        let adm = ports(Behaviour::AddressDependent);
        assert_eq!(adm[0], adm[1]);
        assert_ne!(adm[0], adm[2]);
        let apdm = ports(Behaviour::AddressAndPortDependent);
        assert_ne!(apdm[0], apdm[1]);
        assert_ne!(apdm[1], apdm[2]);
    }

    #[test]
    fn filtering_behaviours_let_in_what_rfc_4787_says() {
        let inside = sa("192.168.1.2:5000");
        let contacted = sa("1.1.1.1:80");
        let same_ip = sa("1.1.1.1:99");
        let stranger = sa("9.9.9.9:80");
        let verdicts = |b: Behaviour| {
            let mut t = NatTable::default();
            let rules = Nat::new(Behaviour::EndpointIndependent, b);
            let (_, ext, _) = t
                .outbound(&rules, Duration::ZERO, inside, contacted, ext_ip())
                .expect("a port");
            [contacted, same_ip, stranger].map(|r| t.inbound(&rules, ext, r).is_ok())
        };
        assert_eq!(verdicts(Behaviour::EndpointIndependent), [true, true, true]);
        assert_eq!(verdicts(Behaviour::AddressDependent), [true, true, false]);
        assert_eq!(
            verdicts(Behaviour::AddressAndPortDependent),
            [true, false, false]
        );
        let mut t = NatTable::default();
        assert_eq!(
            t.inbound(&Nat::full_cone(), sa("203.0.113.1:5000"), stranger),
            Err(Filtered::NoMapping),
            "no mapping, nothing comes in"
        );
    }

    #[test]
    fn port_preservation_off_allocates_and_collisions_move_on() {
        let rules = Nat::full_cone().with_port_preservation(false);
        let mut t = NatTable::default();
        let r = sa("1.1.1.1:80");
        let (_, e, _) = t
            .outbound(&rules, Duration::ZERO, sa("192.168.1.2:5000"), r, ext_ip())
            .expect("a port");
        assert_ne!(e.port(), 5000);
        let rules = Nat::full_cone();
        let mut t = NatTable::default();
        let (_, a, _) = t
            .outbound(&rules, Duration::ZERO, sa("192.168.1.2:5000"), r, ext_ip())
            .expect("a port");
        let (_, b, _) = t
            .outbound(&rules, Duration::ZERO, sa("192.168.1.3:5000"), r, ext_ip())
            .expect("a port");
        assert_eq!(a.port(), 5000);
        assert_ne!(b.port(), 5000, "the second host cannot keep a taken port");
    }

    #[test]
    fn unused_mappings_expire_after_the_idle_timeout() {
        let rules = Nat::full_cone();
        let mut t = NatTable::default();
        let r = sa("1.1.1.1:80");
        let (id, _, _) = t
            .outbound(&rules, Duration::ZERO, sa("192.168.1.2:5000"), r, ext_ip())
            .expect("a port");
        t.release(id, Duration::from_secs(1));
        let later = Duration::from_secs(1) + rules.idle_timeout;
        t.outbound(&rules, later, sa("192.168.1.9:6000"), r, ext_ip())
            .expect("a port");
        assert_eq!(t.len(), 1, "the idle mapping is gone");
    }

    #[test]
    fn a_forwarded_port_lets_anyone_in_until_deleted() {
        let rules = Nat::symmetric().with_port_preservation(true);
        let mut t = NatTable::default();
        let inside = sa("192.168.1.2:5000");
        let stranger = sa("1.1.1.1:80");
        let external = t
            .forward(&rules, Duration::ZERO, inside, ext_ip())
            .expect("a port");
        assert_eq!(external, SocketAddr::new(ext_ip(), 5000), "port preserved");
        assert_eq!(
            t.forward(&rules, Duration::ZERO, inside, ext_ip()),
            Some(external),
            "asking again renews the same mapping"
        );
        let (id, to) = t.inbound(&rules, external, stranger).expect("let in");
        assert_eq!(to, inside);
        t.release(id, Duration::from_secs(1));
        // Long idle, still there: a forward does not expire.
        let later = Duration::from_secs(1) + 2 * rules.idle_timeout;
        t.expire(&rules, later);
        assert!(t.inbound(&rules, external, stranger).is_ok());
        assert!(t.unforward(inside, later));
        assert!(!t.unforward(inside, later), "deleted once");
        // One connection still holds it (the inbound above); once it ends, the filter is
        // the NAT's own again: a stranger is refused, then the mapping idles out.
        assert_eq!(
            t.inbound(&rules, external, stranger),
            Err(Filtered::Refused)
        );
    }
}
