//! Faults: rules over traffic that a test schedules at a virtual time.
//!
//! A fault is data ([`Fault`]); scheduling one ([`World::schedule`](crate::World::schedule) or
//! [`WorldBuilder::fault`](crate::WorldBuilder::fault)) makes it take effect at that time,
//! and its inverse (`LinkUp`, `Heal`, `Unstall`, `StopIntercept`) undoes it. While a route
//! is cut (a link down, a partition, a stall) established connections hold their data, as
//! TCP would keep retransmitting, and new SYNs across it are lost, so connects time out.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use crate::ids::{HostId, LinkOf};

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
    /// The TURN server on `host` (a [`TurnServer`](crate::turn_server::TurnServer)) restarts,
    /// as coturn does when its process is restarted: every allocation, permission and
    /// connection is lost (clients and peers see their connections reset, relayed ports
    /// close), and it answers again at once with a new nonce.
    RestartTurn(HostId),
}

/// The faults in force.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    pub(crate) partitions: Vec<(BTreeSet<HostId>, BTreeSet<HostId>)>,
    pub(crate) stalls: BTreeSet<(HostId, Option<u16>)>,
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
