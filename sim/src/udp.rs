//! UDP in the simulator: datagrams between hosts, through NATs with UDP's own rules, with
//! loss, duplication and reordering.
//!
//! TCP in the rest of the simulator is routed SYN by SYN through a tree of networks; UDP
//! here is flatter, on purpose: each host is either public (its address is reachable from
//! every other host) or alone behind a NAT of its own (a home router), which is what a DHT
//! of many homes looks like from the internet. What a NAT does with UDP follows RFC 4787:
//! - **mapping** (§4.1): endpoint-independent (one external port per internal `ip:port`),
//!   address-dependent, or address-and-port-dependent (the "symmetric NAT");
//! - **filtering** (§5): which inbound datagrams a mapping lets in, with the same three
//!   choices, judged against the remotes the mapping has sent to;
//! - **mapping expiry** (§4.3, REQ-5): a mapping nothing was sent on for
//!   [`UDP_MAPPING_TIMEOUT`] (2 minutes, the least REQ-5 allows, far below TCP's 2 h 4 min)
//!   is gone: a datagram to it is dropped, and the next one out gets a new port. Only
//!   outbound traffic refreshes a mapping (REQ-6 makes inbound refresh optional).
//!
//! Every datagram is counted in [`UdpCounters`]: sent, delivered, lost, duplicated,
//! reordered, filtered, or dropped for an expired or unknown mapping. Randomness comes from
//! the seed only, and the queue orders deliveries by time then by a sequence number, so a
//! run is a function of its seed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use crate::nat::Behaviour;
use crate::rng::SimRng;

/// How long a UDP mapping lives without outbound traffic (RFC 4787 REQ-5's minimum).
pub const UDP_MAPPING_TIMEOUT: Duration = Duration::from_secs(120);

/// A host's index in a [`UdpNet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UdpHost(pub usize);

/// How one NAT maps and filters UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpNat {
    /// Which outbound datagrams share an external port.
    pub mapping: Behaviour,
    /// Which inbound datagrams a mapping lets in.
    pub filtering: Behaviour,
    /// How long a mapping lives without outbound traffic.
    pub timeout: Duration,
}

impl UdpNat {
    /// A NAT with these behaviours and [`UDP_MAPPING_TIMEOUT`].
    pub fn new(mapping: Behaviour, filtering: Behaviour) -> UdpNat {
        UdpNat {
            mapping,
            filtering,
            timeout: UDP_MAPPING_TIMEOUT,
        }
    }
}

/// What the wire does to datagrams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UdpFaults {
    /// One-way delay.
    pub latency: Duration,
    /// Up to this much more, at random.
    pub jitter: Duration,
    /// The chance a datagram is lost.
    pub loss: f64,
    /// The chance a datagram arrives twice.
    pub duplication: f64,
    /// The chance a datagram is held back by a few latencies (so later ones pass it).
    pub reorder: f64,
}

impl Default for UdpFaults {
    fn default() -> UdpFaults {
        UdpFaults {
            latency: Duration::from_millis(40),
            jitter: Duration::from_millis(20),
            loss: 0.01,
            duplication: 0.005,
            reorder: 0.01,
        }
    }
}

/// What happened to the datagrams, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpCounters {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams handed to a host (duplicates included).
    pub delivered: u64,
    /// Lost on the wire.
    pub lost: u64,
    /// Sent twice by the wire.
    pub duplicated: u64,
    /// Held back.
    pub reordered: u64,
    /// Refused by a NAT's filtering.
    pub filtered: u64,
    /// To an address nobody has (a host gone, a mapping expired).
    pub unreachable: u64,
}

struct Mapping {
    /// The remote it is for (`None`: endpoint-independent; an address with port 0:
    /// address-dependent).
    key: Option<SocketAddr>,
    port: u16,
    last_out: Instant,
    /// Remotes it has sent to.
    sent_to: BTreeSet<SocketAddr>,
}

struct NatState {
    nat: UdpNat,
    external: Ipv4Addr,
    mappings: Vec<Mapping>,
    next_port: u16,
}

struct Host {
    /// The address the host itself binds.
    local: SocketAddr,
    nat: Option<NatState>,
    up: bool,
}

/// A datagram reaching a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrival {
    /// The host.
    pub to: UdpHost,
    /// Its source, as the host sees it (a NAT's external address for a host behind one).
    pub from: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A datagram on the wire: its destination host, source, destination address, bytes.
type InFlight = (UdpHost, SocketAddr, SocketAddr, Vec<u8>);

/// Hosts exchanging datagrams.
pub struct UdpNet {
    hosts: Vec<Host>,
    /// Public addresses: hosts' own, and NATs' external IPs.
    public: BTreeMap<IpAddr, UdpHost>,
    queue: BTreeMap<(Instant, u64), InFlight>,
    seq: u64,
    faults: UdpFaults,
    rng: SimRng,
    counters: UdpCounters,
}

impl UdpNet {
    /// An empty network whose randomness comes from `seed`.
    pub fn new(seed: u64, faults: UdpFaults) -> UdpNet {
        UdpNet {
            hosts: Vec::new(),
            public: BTreeMap::new(),
            queue: BTreeMap::new(),
            seq: 0,
            faults,
            rng: SimRng::new(seed),
            counters: UdpCounters::default(),
        }
    }

    /// A public host at `addr`.
    pub fn public_host(&mut self, addr: SocketAddr) -> UdpHost {
        let id = UdpHost(self.hosts.len());
        self.hosts.push(Host {
            local: addr,
            nat: None,
            up: true,
        });
        self.public.insert(addr.ip(), id);
        id
    }

    /// A host at `local` alone behind `nat`, whose external address is `external`.
    pub fn host_behind(&mut self, local: SocketAddr, nat: UdpNat, external: Ipv4Addr) -> UdpHost {
        let id = UdpHost(self.hosts.len());
        self.hosts.push(Host {
            local,
            nat: Some(NatState {
                nat,
                external,
                mappings: Vec::new(),
                next_port: 40_000,
            }),
            up: true,
        });
        self.public.insert(IpAddr::V4(external), id);
        id
    }

    /// The address `host` binds.
    pub fn local(&self, host: UdpHost) -> SocketAddr {
        self.hosts[host.0].local
    }

    /// Takes `host` off the network (churn): what is sent to it is lost, its NAT forgets
    /// its mappings; [`UdpNet::up`] brings it back.
    pub fn down(&mut self, host: UdpHost) {
        let h = &mut self.hosts[host.0];
        h.up = false;
        if let Some(nat) = &mut h.nat {
            nat.mappings.clear();
        }
    }

    /// Brings `host` back.
    pub fn up(&mut self, host: UdpHost) {
        self.hosts[host.0].up = true;
    }

    /// The counters so far.
    pub fn counters(&self) -> UdpCounters {
        self.counters
    }

    /// When the next datagram arrives.
    pub fn next_arrival(&self) -> Option<Instant> {
        self.queue.keys().next().map(|(t, _)| *t)
    }

    /// `from` sends `data` to `to` at `now`.
    pub fn send(&mut self, now: Instant, from: UdpHost, to: SocketAddr, data: Vec<u8>) {
        self.counters.sent += 1;
        let Some(source) = self.outbound(now, from, to) else {
            return;
        };
        if self.rng.chance(self.faults.loss) {
            self.counters.lost += 1;
            return;
        }
        let Some(&dest) = self.public.get(&to.ip()) else {
            self.counters.unreachable += 1;
            return;
        };
        let copies = if self.rng.chance(self.faults.duplication) {
            self.counters.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut delay = self.faults.latency + self.rng.up_to(self.faults.jitter);
            if self.rng.chance(self.faults.reorder) {
                self.counters.reordered += 1;
                delay += self.faults.latency * 3;
            }
            self.seq += 1;
            self.queue
                .insert((now + delay, self.seq), (dest, source, to, data.clone()));
        }
    }

    /// The next datagram due by `now`, through the receiving side's NAT.
    pub fn arrival(&mut self, now: Instant) -> Option<Arrival> {
        loop {
            let (&(at, seq), _) = self.queue.iter().next()?;
            if at > now {
                return None;
            }
            let (dest, source, to, data) = self.queue.remove(&(at, seq))?;
            if self.inbound(at, dest, source, to) {
                self.counters.delivered += 1;
                return Some(Arrival {
                    to: dest,
                    from: source,
                    data,
                });
            }
        }
    }

    /// The source address of a datagram from `from` to `to`, making or refreshing the NAT's
    /// mapping.
    fn outbound(&mut self, now: Instant, from: UdpHost, to: SocketAddr) -> Option<SocketAddr> {
        let host = &mut self.hosts[from.0];
        if !host.up {
            return None;
        }
        let Some(nat) = &mut host.nat else {
            return Some(host.local);
        };
        let key = match nat.nat.mapping {
            Behaviour::EndpointIndependent => None,
            Behaviour::AddressDependent => Some(SocketAddr::new(to.ip(), 0)),
            Behaviour::AddressAndPortDependent => Some(to),
        };
        let timeout = nat.nat.timeout;
        nat.mappings.retain(|m| now < m.last_out + timeout);
        let index = match nat.mappings.iter().position(|m| m.key == key) {
            Some(i) => i,
            None => {
                let port = nat.next_port;
                nat.next_port = nat.next_port.checked_add(1).unwrap_or(40_000);
                nat.mappings.push(Mapping {
                    key,
                    port,
                    last_out: now,
                    sent_to: BTreeSet::new(),
                });
                nat.mappings.len() - 1
            }
        };
        let m = &mut nat.mappings[index];
        m.last_out = now;
        m.sent_to.insert(to);
        Some(SocketAddr::new(IpAddr::V4(nat.external), m.port))
    }

    /// Whether a datagram from `source` to `to` reaches `dest`.
    fn inbound(&mut self, now: Instant, dest: UdpHost, source: SocketAddr, to: SocketAddr) -> bool {
        let host = &self.hosts[dest.0];
        if !host.up {
            self.counters.unreachable += 1;
            return false;
        }
        let Some(nat) = &host.nat else {
            let ok = host.local == to;
            if !ok {
                self.counters.unreachable += 1;
            }
            return ok;
        };
        let timeout = nat.nat.timeout;
        let Some(m) = nat
            .mappings
            .iter()
            .find(|m| m.port == to.port() && now < m.last_out + timeout)
        else {
            self.counters.unreachable += 1;
            return false;
        };
        let allowed = match nat.nat.filtering {
            Behaviour::EndpointIndependent => true,
            Behaviour::AddressDependent => m.sent_to.iter().any(|r| r.ip() == source.ip()),
            Behaviour::AddressAndPortDependent => m.sent_to.contains(&source),
        };
        if !allowed {
            self.counters.filtered += 1;
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> UdpFaults {
        UdpFaults {
            latency: Duration::from_millis(10),
            jitter: Duration::ZERO,
            loss: 0.0,
            duplication: 0.0,
            reorder: 0.0,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    fn drain(net: &mut UdpNet, now: Instant) -> Vec<Arrival> {
        std::iter::from_fn(|| net.arrival(now)).collect()
    }

    #[test]
    fn a_port_restricted_nat_lets_in_only_who_it_sent_to_until_the_mapping_expires() {
        let t0 = Instant::now();
        let mut net = UdpNet::new(1, quiet());
        let server = net.public_host(addr("198.51.100.1:4222"));
        let other = net.public_host(addr("198.51.100.2:4222"));
        let nat = UdpNat::new(
            Behaviour::EndpointIndependent,
            Behaviour::AddressAndPortDependent,
        );
        let home = net.host_behind(addr("192.168.1.2:4222"), nat, Ipv4Addr::new(203, 0, 113, 9));
        net.send(t0, home, addr("198.51.100.1:4222"), b"ping".to_vec());
        let got = drain(&mut net, t0 + Duration::from_secs(1));
        assert_eq!(got.len(), 1);
        let mapped = got[0].from;
        assert_eq!(mapped.ip(), IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)));
        // The server's answer passes; a stranger's is filtered.
        net.send(t0, server, mapped, b"pong".to_vec());
        net.send(t0, other, mapped, b"hi".to_vec());
        let got = drain(&mut net, t0 + Duration::from_secs(1));
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].to, &got[0].data[..]), (home, &b"pong"[..]));
        assert_eq!(net.counters().filtered, 1);
        // Two minutes of silence later, the mapping is gone.
        let later = t0 + UDP_MAPPING_TIMEOUT + Duration::from_secs(1);
        net.send(later, server, mapped, b"late".to_vec());
        assert!(drain(&mut net, later + Duration::from_secs(1)).is_empty());
        assert_eq!(net.counters().unreachable, 1);
    }

    #[test]
    fn a_symmetric_nat_maps_each_remote_to_its_own_port() {
        let t0 = Instant::now();
        let mut net = UdpNet::new(2, quiet());
        net.public_host(addr("198.51.100.1:4222"));
        net.public_host(addr("198.51.100.2:4222"));
        let nat = UdpNat::new(
            Behaviour::AddressAndPortDependent,
            Behaviour::AddressAndPortDependent,
        );
        let home = net.host_behind(addr("10.0.0.2:4222"), nat, Ipv4Addr::new(203, 0, 113, 8));
        net.send(t0, home, addr("198.51.100.1:4222"), vec![1]);
        net.send(t0, home, addr("198.51.100.2:4222"), vec![2]);
        let got = drain(&mut net, t0 + Duration::from_secs(1));
        assert_eq!(got.len(), 2);
        assert_ne!(got[0].from.port(), got[1].from.port());
    }

    #[test]
    fn the_wire_loses_duplicates_and_reorders_by_its_seed() {
        let run = |seed| {
            let t0 = Instant::now();
            let faults = UdpFaults {
                loss: 0.1,
                duplication: 0.1,
                reorder: 0.1,
                ..quiet()
            };
            let mut net = UdpNet::new(seed, faults);
            let a = net.public_host(addr("198.51.100.1:1"));
            net.public_host(addr("198.51.100.2:1"));
            for i in 0..1000u16 {
                net.send(t0, a, addr("198.51.100.2:1"), i.to_be_bytes().to_vec());
            }
            let got: Vec<Vec<u8>> = drain(&mut net, t0 + Duration::from_secs(1))
                .into_iter()
                .map(|a| a.data)
                .collect();
            (net.counters(), got)
        };
        let (c, got) = run(7);
        assert!(
            c.lost > 50 && c.duplicated > 50 && c.reordered > 50,
            "{c:?}"
        );
        assert_eq!(got.len() as u64, 1000 - c.lost + c.duplicated);
        assert!(got.windows(2).any(|w| w[0] > w[1]), "nothing reordered");
        assert_eq!(run(7), (c, got), "same seed, same run");
    }
}
