//! Describing a world: networks, routers, hosts, the DHT, tracing and scheduled faults.
//!
//! ```
//! use std::time::Duration;
//! use ferry_sim::{HostSpec, LinkSpec, Nat, Probe, RouterSpec, World};
//!
//! let mut b = World::builder(7);
//! let internet = b.internet();
//! let home = b.network("home");
//! b.router(RouterSpec::new("nat", internet, home).v4([203, 0, 113, 1]).nat(Nat::port_restricted_cone()));
//! let epoch = b.epoch();
//! let alice = b.host(HostSpec::new("alice", home).v4([192, 168, 1, 2]), Probe::new(epoch));
//! let server = b.host(
//!     HostSpec::new("server", internet).v4([198, 51, 100, 7]).link(LinkSpec::latency(Duration::from_millis(20))),
//!     Probe::new(epoch),
//! );
//! let mut world = b.trace().build().expect("a valid world");
//! world.run_for(Duration::from_secs(1));
//! assert_eq!(world.host_name(alice), "alice");
//! # let _ = server;
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use ferry_proto::trace::{CountBytes, Labels, WireDecoder};

use crate::dht::{Dht, DhtSpec};
use crate::fault::{Fault, Rules};
use crate::files::{Source, Stored};
use crate::host::{ClosedPorts, Host, SimEndpoint};
use crate::ids::{HostId, NetworkId, RouterId};
use crate::link::{Link, LinkSpec};
use crate::nat::{Nat, NatTable, RouterKind};
use crate::net::{Attach, Network, Router};
use crate::queue::{Ev, Queue};
use crate::record::Tracer;
use crate::rng::SimRng;
use crate::tcp::Conns;
use crate::world::{Stats, World};

/// A router joining `child` to its `parent` network.
#[derive(Debug, Clone)]
pub struct RouterSpec {
    name: String,
    parent: NetworkId,
    child: NetworkId,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    kind_v4: RouterKind,
    kind_v6: RouterKind,
    link: LinkSpec,
    maps_ports: bool,
}

impl RouterSpec {
    /// An open router (no NAT, no firewall) with a 5 ms uplink; set its addresses and kind.
    pub fn new(name: &str, parent: NetworkId, child: NetworkId) -> RouterSpec {
        RouterSpec {
            name: name.to_owned(),
            parent,
            child,
            v4: None,
            v6: None,
            kind_v4: RouterKind::Open,
            kind_v6: RouterKind::Open,
            link: LinkSpec::default(),
            maps_ports: false,
        }
    }

    /// Its IPv4 address on the parent network.
    pub fn v4(mut self, ip: impl Into<Ipv4Addr>) -> RouterSpec {
        self.v4 = Some(ip.into());
        self
    }

    /// Its IPv6 address on the parent network.
    pub fn v6(mut self, ip: impl Into<Ipv6Addr>) -> RouterSpec {
        self.v6 = Some(ip.into());
        self
    }

    /// What it does to IPv4 and IPv6 traffic alike.
    pub fn kind(mut self, kind: RouterKind) -> RouterSpec {
        self.kind_v4 = kind;
        self.kind_v6 = kind;
        self
    }

    /// A NAT for IPv4 only; IPv6 keeps its kind (open unless set with [`kind_v6`](Self::kind_v6)).
    pub fn nat(mut self, nat: Nat) -> RouterSpec {
        self.kind_v4 = RouterKind::Nat(nat);
        self
    }

    /// What it does to IPv6 traffic (a home router: NAT for IPv4, a firewall for IPv6).
    pub fn kind_v6(mut self, kind: RouterKind) -> RouterSpec {
        self.kind_v6 = kind;
        self
    }

    /// Its uplink.
    pub fn link(mut self, link: LinkSpec) -> RouterSpec {
        self.link = link;
        self
    }

    /// A home router that forwards ports on request (UPnP-IGD, NAT-PMP, PCP): a node's
    /// `MapPort` for a listener behind it gets the port forwarded from the router's external
    /// address, open to any remote, until `UnmapPorts` (see `World`'s port mapping). Hosts
    /// behind a router without it are told no gateway maps ports.
    pub fn port_mapping(mut self, on: bool) -> RouterSpec {
        self.maps_ports = on;
        self
    }
}

/// A host on a network.
#[derive(Debug, Clone)]
pub struct HostSpec {
    name: String,
    net: NetworkId,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    link: LinkSpec,
    closed_ports: ClosedPorts,
    receive_window: usize,
    sources: Vec<(String, Source)>,
    partials: Vec<(String, Stored)>,
}

impl HostSpec {
    /// A host with a 5 ms access link and no address yet.
    pub fn new(name: &str, net: NetworkId) -> HostSpec {
        HostSpec {
            name: name.to_owned(),
            net,
            v4: None,
            v6: None,
            link: LinkSpec::default(),
            closed_ports: ClosedPorts::Refuse,
            receive_window: crate::tcp::RECEIVE_WINDOW,
            sources: Vec::new(),
            partials: Vec::new(),
        }
    }

    /// Its IPv4 address.
    pub fn v4(mut self, ip: impl Into<Ipv4Addr>) -> HostSpec {
        self.v4 = Some(ip.into());
        self
    }

    /// Its IPv6 address.
    pub fn v6(mut self, ip: impl Into<Ipv6Addr>) -> HostSpec {
        self.v6 = Some(ip.into());
        self
    }

    /// Its access link.
    pub fn link(mut self, link: LinkSpec) -> HostSpec {
        self.link = link;
        self
    }

    /// What it does with SYNs to closed ports.
    pub fn closed_ports(mut self, policy: ClosedPorts) -> HostSpec {
        self.closed_ports = policy;
        self
    }

    /// Its receive window in bytes (at least one byte): how much of a peer's data may be
    /// in flight or unread before the peer's queue stops draining. A large window stands
    /// for an operating system that autotunes its buffers.
    pub fn receive_window(mut self, bytes: usize) -> HostSpec {
        self.receive_window = bytes.max(1);
        self
    }

    /// A file it can send, opened by `FileOp::OpenSource` with `source` = `name`.
    pub fn source(mut self, name: &str, size: u64, seed: u64) -> HostSpec {
        self.sources.push((name.to_owned(), Source { size, seed }));
        self
    }

    /// Partial data it already holds under `key`: the first `len` bytes of the file `size`
    /// bytes long generated from `seed` (to test resuming).
    pub fn partial(
        mut self,
        key: ferry_proto::transfer::PartialKey,
        size: u64,
        seed: u64,
        len: u64,
    ) -> HostSpec {
        self.partials.push((
            key.to_string(),
            Stored::prefix_of(Source { size, seed }, len),
        ));
        self
    }
}

/// What is wrong with a world description.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// Two hosts or routers share a name.
    DuplicateName(String),
    /// Two things share an address in one network.
    DuplicateAddress {
        /// The network.
        network: String,
        /// The address.
        addr: IpAddr,
    },
    /// A network has two routers up, or a router joins a network to itself or to a
    /// network below it.
    BadTopology(String),
    /// A host has no address at all.
    NoAddress(String),
    /// An id from another builder.
    UnknownId(String),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::DuplicateName(n) => write!(f, "two things are named {n:?}"),
            BuildError::DuplicateAddress { network, addr } => {
                write!(f, "{addr} is used twice in network {network:?}")
            }
            BuildError::BadTopology(s) => write!(f, "bad topology: {s}"),
            BuildError::NoAddress(n) => write!(f, "host {n:?} has no address"),
            BuildError::UnknownId(s) => write!(f, "unknown id: {s}"),
        }
    }
}

impl std::error::Error for BuildError {}

/// Describes a world, then [`build`](WorldBuilder::build)s it.
pub struct WorldBuilder {
    seed: u64,
    epoch: Instant,
    networks: Vec<String>,
    routers: Vec<RouterSpec>,
    hosts: Vec<(HostSpec, Box<dyn SimEndpoint>)>,
    dht: DhtSpec,
    decoder: Option<Box<dyn WireDecoder>>,
    labels: Labels,
    faults: Vec<(Duration, Fault)>,
}

impl World {
    /// Starts describing a world whose randomness comes from `seed`.
    pub fn builder(seed: u64) -> WorldBuilder {
        WorldBuilder::new(seed)
    }
}

impl WorldBuilder {
    /// An empty world with only the internet, for `seed`. The epoch (virtual time zero)
    /// is taken now, so endpoints can be built against it.
    pub fn new(seed: u64) -> WorldBuilder {
        WorldBuilder {
            seed,
            epoch: Instant::now(),
            networks: vec!["internet".to_owned()],
            routers: Vec::new(),
            hosts: Vec::new(),
            dht: DhtSpec::default(),
            decoder: None,
            labels: Labels::new(),
            faults: Vec::new(),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The instant virtual time zero stands for.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The root network.
    pub fn internet(&self) -> NetworkId {
        NetworkId(0)
    }

    /// A new network; join it to another with a [`router`](Self::router).
    pub fn network(&mut self, name: &str) -> NetworkId {
        self.networks.push(name.to_owned());
        NetworkId(self.networks.len() as u32 - 1)
    }

    /// A router.
    pub fn router(&mut self, spec: RouterSpec) -> RouterId {
        self.routers.push(spec);
        RouterId(self.routers.len() as u32 - 1)
    }

    /// A host running `endpoint`.
    pub fn host(&mut self, spec: HostSpec, endpoint: impl SimEndpoint) -> HostId {
        self.hosts.push((spec, Box::new(endpoint)));
        HostId(self.hosts.len() as u32 - 1)
    }

    /// The DHT's behaviour.
    pub fn dht(&mut self, spec: DhtSpec) -> &mut Self {
        self.dht = spec;
        self
    }

    /// Records a trace, counting connection bytes. A trace keeps every line it records
    /// (bulk lines merge), so its memory grows with the run: leave it off for long runs, as
    /// the benchmark does. Everything else the world keeps is bounded by what is alive.
    pub fn trace(&mut self) -> &mut Self {
        self.decoder = Some(Box::new(CountBytes));
        self
    }

    /// Records a trace, decoding connection bytes with `decoder`.
    pub fn trace_with(&mut self, decoder: impl WireDecoder + 'static) -> &mut Self {
        self.decoder = Some(Box::new(decoder));
        self
    }

    /// Names the run's accounts and devices in the trace (DHT keys and values, events);
    /// without labels they read as the start of their hashes.
    pub fn trace_labels(&mut self, labels: Labels) -> &mut Self {
        self.labels = labels;
        self
    }

    /// Makes `fault` happen at `at`.
    pub fn fault(&mut self, at: Duration, fault: Fault) -> &mut Self {
        self.faults.push((at, fault));
        self
    }

    /// The world, or what is wrong with the description.
    pub fn build(&mut self) -> Result<World, BuildError> {
        let mut names = std::collections::BTreeSet::new();
        for n in self
            .hosts
            .iter()
            .map(|(s, _)| &s.name)
            .chain(self.routers.iter().map(|r| &r.name))
        {
            if !names.insert(n.clone()) || n == "world" {
                return Err(BuildError::DuplicateName(n.clone()));
            }
        }
        let mut networks: Vec<Network> = self
            .networks
            .iter()
            .map(|name| Network {
                name: name.clone(),
                uplink: None,
                addrs: BTreeMap::new(),
            })
            .collect();
        let mut links = Vec::new();
        let mut routers = Vec::new();
        let net_ok = |n: NetworkId| n.ix() < self.networks.len();
        for (i, spec) in self.routers.iter().enumerate() {
            if !net_ok(spec.parent) || !net_ok(spec.child) {
                return Err(BuildError::UnknownId(format!(
                    "network of router {}",
                    spec.name
                )));
            }
            if spec.child == spec.parent || spec.child == NetworkId(0) {
                return Err(BuildError::BadTopology(format!(
                    "router {} joins {} to itself or puts the internet below",
                    spec.name,
                    self.networks[spec.child.ix()]
                )));
            }
            if networks[spec.child.ix()].uplink.is_some() {
                return Err(BuildError::BadTopology(format!(
                    "network {} has two routers up",
                    self.networks[spec.child.ix()]
                )));
            }
            networks[spec.child.ix()].uplink = Some(RouterId(i as u32));
            links.push(Link::new(spec.link));
            routers.push(Router {
                name: spec.name.clone(),
                parent: spec.parent,
                child: spec.child,
                v4: spec.v4,
                v6: spec.v6,
                kind_v4: spec.kind_v4,
                kind_v6: spec.kind_v6,
                link: links.len() - 1,
                table: NatTable::default(),
                maps_ports: spec.maps_ports,
            });
        }
        // Every network must reach the internet without a loop.
        for start in 0..networks.len() {
            let mut n = NetworkId(start as u32);
            let mut hops = 0;
            while let Some(r) = networks[n.ix()].uplink {
                n = routers[r.ix()].parent;
                hops += 1;
                if hops > networks.len() {
                    return Err(BuildError::BadTopology(format!(
                        "network {} is in a loop",
                        networks[start].name
                    )));
                }
            }
        }
        let register = |networks: &mut Vec<Network>,
                        net: NetworkId,
                        ip: IpAddr,
                        what: Attach|
         -> Result<(), BuildError> {
            let mut net = net;
            let mut what = what;
            loop {
                let network = &mut networks[net.ix()];
                if network.addrs.insert(ip, what).is_some() {
                    return Err(BuildError::DuplicateAddress {
                        network: network.name.clone(),
                        addr: ip,
                    });
                }
                // Addresses behind a router that does not translate are reachable above it.
                let Some(r) = network.uplink else {
                    return Ok(());
                };
                let router = &routers[r.ix()];
                if router.kind(ip).translates() {
                    return Ok(());
                }
                net = router.parent;
                what = Attach::Via(r);
            }
        };
        for (i, r) in self.routers.iter().enumerate() {
            let id = RouterId(i as u32);
            for ip in [r.v4.map(IpAddr::V4), r.v6.map(IpAddr::V6)]
                .into_iter()
                .flatten()
            {
                register(&mut networks, r.parent, ip, Attach::Router(id))?;
            }
        }
        let mut hosts = Vec::new();
        for (i, (spec, endpoint)) in std::mem::take(&mut self.hosts).into_iter().enumerate() {
            if !net_ok(spec.net) {
                return Err(BuildError::UnknownId(format!(
                    "network of host {}",
                    spec.name
                )));
            }
            if spec.v4.is_none() && spec.v6.is_none() {
                return Err(BuildError::NoAddress(spec.name));
            }
            let id = HostId(i as u32);
            for ip in [spec.v4.map(IpAddr::V4), spec.v6.map(IpAddr::V6)]
                .into_iter()
                .flatten()
            {
                register(&mut networks, spec.net, ip, Attach::Host(id))?;
            }
            links.push(Link::new(spec.link));
            let mut host = Host::new(spec.name, endpoint, spec.net, links.len() - 1);
            host.v4 = spec.v4;
            host.v6 = spec.v6;
            host.closed_ports = spec.closed_ports;
            host.receive_window = spec.receive_window;
            host.files.sources = spec.sources.into_iter().collect();
            host.files.partials = spec.partials.into_iter().collect();
            hosts.push(host);
        }
        let mut queue = Queue::default();
        for (at, fault) in self.faults.drain(..) {
            queue.push(at, Ev::Fault(fault));
        }
        let mut world = World {
            seed: self.seed,
            epoch: self.epoch,
            now: Duration::ZERO,
            rng: SimRng::new(self.seed),
            queue,
            hosts,
            networks,
            routers,
            links,
            conns: Conns::default(),
            dht: Dht::new(self.dht),
            rules: Rules::default(),
            tracer: self
                .decoder
                .take()
                .map(|d| Tracer::new(d, std::mem::take(&mut self.labels))),
            stats: Stats::default(),
            violations: Vec::new(),
            violation_count: 0,
            events: BTreeMap::new(),
            next_serial: 0,
            dirty: VecDeque::new(),
            deadlines: std::collections::BTreeSet::new(),
        };
        // Every endpoint gets its first chance to speak at time zero.
        for i in 0..world.hosts.len() {
            world.queue.push(Duration::ZERO, Ev::Wake(HostId(i as u32)));
            world.hosts[i].wake_at = Some(Duration::ZERO);
        }
        Ok(world)
    }
}
