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
use crate::nat::{NatTable, RouterKind};

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
    /// Forwards ports on request (UPnP-IGD, NAT-PMP, PCP).
    pub(crate) maps_ports: bool,
}

impl Router {
    pub(crate) fn kind(&self, ip: IpAddr) -> RouterKind {
        if ip.is_ipv4() {
            self.kind_v4
        } else {
            self.kind_v6
        }
    }

    pub(crate) fn external(&self, ip: IpAddr) -> Option<IpAddr> {
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

/// The external address a router's NAT currently maps `internal` to towards `remote`.
pub(crate) fn mapped(
    router: &Router,
    internal: SocketAddr,
    remote: SocketAddr,
) -> Option<SocketAddr> {
    router.table.lookup(internal, remote)
}
