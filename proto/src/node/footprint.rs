//! How much state the node holds, counted where each table lives: what the whole-node fuzz
//! target (`ferry_tests::fuzz::node`) and the flood tests check against the documented
//! bounds, since no input from the network may grow any of them without limit.

use super::Node;

/// The sizes of the node's tables at one moment (see [`Node::footprint`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Footprint {
    /// Connectors: remote devices connecting, connected or failed recently (at most
    /// [`MAX_CONNECTORS`](super::MAX_CONNECTORS)).
    pub connectors: usize,
    /// Accepted connections that wait for a first check (at most
    /// [`UNROUTED_MAX`](super::UNROUTED_MAX)).
    pub unrouted: usize,
    /// Transfers running, incoming and outgoing.
    pub transfers: usize,
    /// Requests and answers remembered as seen (at most
    /// [`REMEMBERED`](crate::signal::REMEMBERED)).
    pub seen: usize,
    /// Device announcements kept, all accounts together (at most
    /// [`MAX_CONNECTORS_PER_ACCOUNT`](super::MAX_CONNECTORS_PER_ACCOUNT) per account looked
    /// up).
    pub devices: usize,
    /// Accounts looked up (one per account the application sent to).
    pub lookups: usize,
    /// Connects through our relays waiting for their stream (RFC 6062): at most one per
    /// agent connection opening through a relay, each gone with the relay's answer or with
    /// its connector.
    pub relay_connects: usize,
    /// The node's own timers armed (its children's are counted with them).
    pub timers: usize,
    /// Outputs queued for the driver and not polled yet.
    pub queued_outputs: usize,
    /// Peers' requests to send again, read or waiting for the application (at most
    /// [`MAX_ASKS_PER_PEER`](super::MAX_ASKS_PER_PEER) per account).
    pub their_asks: usize,
    /// Our own requests to send again (at most [`MAX_OWN_ASKS`](super::MAX_OWN_ASKS)).
    pub own_asks: usize,
}

impl Node {
    /// The sizes of the node's tables now: see [`Footprint`].
    pub fn footprint(&self) -> Footprint {
        Footprint {
            connectors: self.connectors.len(),
            unrouted: self.demux.waiting_count(),
            transfers: self.transfers.running().len(),
            seen: self.signalling.seen_count(),
            devices: self.signalling.device_count(),
            lookups: self.signalling.lookup_count(),
            relay_connects: self.relays.connects_waiting(),
            timers: self.timers.len(),
            queued_outputs: self.out.len(),
            their_asks: self.asks.len().1,
            own_asks: self.asks.len().0,
        }
    }
}
