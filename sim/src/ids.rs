//! Names of the things in a world. Each is an index, handed out by the builder in order,
//! so a world built the same way names everything the same way.

use std::fmt;

/// A host: one endpoint with its interfaces, ports, files and access link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(pub(crate) u32);

/// A network: an address space (the internet, a home LAN, a carrier's network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetworkId(pub(crate) u32);

/// A router joining a network to its parent network, with its NAT or firewall.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RouterId(pub(crate) u32);

/// Something with a link a fault can take down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LinkOf {
    /// A host's access link.
    Host(HostId),
    /// A router's uplink to its parent network.
    Router(RouterId),
}

impl HostId {
    pub(crate) fn ix(self) -> usize {
        self.0 as usize
    }
}

impl RouterId {
    pub(crate) fn ix(self) -> usize {
        self.0 as usize
    }
}

impl NetworkId {
    pub(crate) fn ix(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "host{}", self.0)
    }
}
