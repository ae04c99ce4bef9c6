//! Where each driver connection belongs, and the connections that belong to nobody yet.
//!
//! Every connection the node hears of is a TURN client's, an ICE agent's, or *unrouted*: a
//! connection accepted on a listener, or a stream relayed in through our allocation, whose
//! first ICE check has not named its session yet. [`Demux`] keeps the routes and buffers
//! what unrouted connections bring, up to a bound and for a while. It reads the USERNAME of
//! a connection's first check once, and knows the ufrag of every agent: a connection goes
//! to its agent as soon as both are known, whichever comes first, without a scan of the
//! others. The connectors themselves, the TURN clients and the closing of connections are
//! the node's.
//!
//! What a stranger can make the node hold here is bounded: each unrouted connection for
//! [`UNROUTED_TIMEOUT`] and [`UNROUTED_LIMIT`] bytes, and at most [`UNROUTED_PER_SOURCE`] of
//! them per source address and [`UNROUTED_MAX`] in all, the oldest closed to make room.

use core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

use crate::io::ConnId;
use crate::stun::StunMessage;
use crate::stun::framing::FrameDecoder;

/// How long an accepted connection may stay unrouted: a peer's first check follows its
/// connect by one round trip, or waits for our answer to reach it (a check can beat the
/// answer), which the DHT delivers within seconds.
pub const UNROUTED_TIMEOUT: Duration = Duration::from_secs(10);
/// How many bytes an unrouted connection may bring before its first frame is whole: a
/// check is a few hundred bytes, and its agent may be late, so its first TLS records may
/// wait here too.
pub const UNROUTED_LIMIT: usize = 16 * 1024;
/// How many unrouted connections the node holds at once, from everyone: past it, the
/// oldest is closed to make room. A peer's connection is unrouted for about one round trip,
/// so the oldest is the likeliest to be a stranger's; 256 × [`UNROUTED_LIMIT`] bounds what
/// they can make us buffer to 4 MiB.
pub const UNROUTED_MAX: usize = 256;
/// How many unrouted connections the node holds at once from one IP address: past it, that
/// address's oldest is closed. A peer checks our few passive candidates from its few active
/// ones; one address that opens more is flooding, and it must not take the room of others.
pub const UNROUTED_PER_SOURCE: usize = 16;

/// Where a driver connection belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// A TURN client's own connection.
    Turn { slot: usize, turn_conn: ConnId },
    /// A STUN probe's connection ([`reflexive`](super::reflexive)).
    Stun,
    /// An ICE agent's connection.
    Agent { connector: u32, agent_conn: ConnId },
    /// Not known yet (accepted, waiting for its first check).
    Unrouted,
}

/// A connection that came to us: accepted by the driver, or relayed in by a TURN client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Inbound {
    Driver(ConnId),
    Relay(usize, ConnId),
}

/// An accepted or relayed-in stream waiting to be routed.
pub(super) struct Unrouted {
    pub(super) local: SocketAddr,
    pub(super) remote: SocketAddr,
    first: First,
    /// Everything it brought, to give its agent once routed.
    pub(super) buffered: Vec<Bytes>,
    bytes: usize,
    /// When it came, in arrival order: the oldest goes first when room is needed.
    arrival: u64,
}

/// What an unrouted connection's first frame says.
enum First {
    /// Not whole yet: what came so far, cut into frames.
    Reading(FrameDecoder),
    /// It is a check for the agent with this ufrag (nothing after it is read: the agent
    /// will).
    Named(String),
}

/// What bytes on an unrouted connection tell.
pub(super) enum Pushed {
    /// The connection is not waiting (routed, or gone).
    NotWaiting,
    /// Kept, waiting: no whole frame yet, or no agent with the ufrag it named.
    Buffered,
    /// Its first check named the agent of this connector: route it there.
    Route(u32),
    /// Over the bound, or its first frame is no check: close it.
    Refused,
}

/// The routes of driver connections and the unrouted ones: see the module docs.
#[derive(Default)]
pub(super) struct Demux {
    routes: BTreeMap<ConnId, Route>,
    unrouted: BTreeMap<Inbound, Unrouted>,
    /// The waiting connections whose first check named a ufrag no agent has yet.
    by_ufrag: BTreeMap<String, BTreeSet<Inbound>>,
    /// Every agent's ufrag, and its connector.
    agents: BTreeMap<String, u32>,
    /// The waiting connections by arrival, oldest first, in total and per source address.
    arrivals: BTreeMap<u64, Inbound>,
    by_source: BTreeMap<IpAddr, BTreeSet<u64>>,
    next_arrival: u64,
    /// Connections asked for from a listening port (to where, and how long to try), until
    /// they connect or fail: one that fails because that port is taken towards that remote
    /// is asked again from any port.
    from_port: BTreeMap<ConnId, (SocketAddr, Duration)>,
}

impl Demux {
    // ----- getters -----

    /// Where a driver connection belongs.
    pub(super) fn route(&self, conn: ConnId) -> Option<Route> {
        self.routes.get(&conn).copied()
    }

    /// Whether `inbound` waits to be routed.
    pub(super) fn is_waiting(&self, inbound: Inbound) -> bool {
        self.unrouted.contains_key(&inbound)
    }

    /// Every connection waiting, in order.
    pub(super) fn waiting(&self) -> Vec<Inbound> {
        self.unrouted.keys().copied().collect()
    }

    /// How many connections wait.
    pub(super) fn waiting_count(&self) -> usize {
        self.unrouted.len()
    }

    /// The connections to close so that one more from `source` fits the budgets
    /// ([`UNROUTED_PER_SOURCE`], [`UNROUTED_MAX`]): the oldest from that address while it has
    /// too many, then the oldest of all. They are still waiting; the caller closes them.
    pub(super) fn make_room(&self, source: IpAddr) -> Vec<Inbound> {
        let mut evict = Vec::new();
        let from_source = self.by_source.get(&source);
        let excess = from_source.map_or(0, |a| (a.len() + 1).saturating_sub(UNROUTED_PER_SOURCE));
        for arrival in from_source.into_iter().flatten().take(excess) {
            evict.push(*arrival);
        }
        let over = (self.unrouted.len() - evict.len() + 1).saturating_sub(UNROUTED_MAX);
        let oldest: Vec<u64> = self
            .arrivals
            .keys()
            .filter(|a| !evict.contains(a))
            .take(over)
            .copied()
            .collect();
        evict.extend(oldest);
        evict
            .iter()
            .filter_map(|a| self.arrivals.get(a).copied())
            .collect()
    }

    // ----- the node's calls -----

    /// Routes a driver connection.
    pub(super) fn set_route(&mut self, conn: ConnId, route: Route) {
        self.routes.insert(conn, route);
    }

    /// Forgets a driver connection's route.
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.routes.remove(&conn);
        self.from_port.remove(&conn);
    }

    /// `conn` was asked for from a listening port, to `remote`, for `timeout`.
    pub(super) fn connecting_from_port(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        timeout: Duration,
    ) {
        self.from_port.insert(conn, (remote, timeout));
    }

    /// `conn`'s connect ended (connected or failed): where it was going and for how long, if
    /// it was asked for from a listening port.
    pub(super) fn connected_from_port(&mut self, conn: ConnId) -> Option<(SocketAddr, Duration)> {
        self.from_port.remove(&conn)
    }

    /// Forgets every route to one connector's agent.
    pub(super) fn forget_connector(&mut self, id: u32) {
        self.routes
            .retain(|_, r| !matches!(r, Route::Agent { connector, .. } if *connector == id));
    }

    /// A connection came in: it waits for its first check (for a while: the node keeps
    /// that timer, see [`Node::wait_inbound`](super::Node::wait_inbound)).
    pub(super) fn wait(&mut self, inbound: Inbound, local: SocketAddr, remote: SocketAddr) {
        if let Inbound::Driver(conn) = inbound {
            self.routes.insert(conn, Route::Unrouted);
        }
        let arrival = self.next_arrival;
        self.next_arrival += 1;
        self.arrivals.insert(arrival, inbound);
        self.by_source
            .entry(remote.ip())
            .or_default()
            .insert(arrival);
        self.unrouted.insert(
            inbound,
            Unrouted {
                local,
                remote,
                first: First::Reading(FrameDecoder::new()),
                buffered: Vec::new(),
                bytes: 0,
                arrival,
            },
        );
    }

    /// Bytes on a waiting connection.
    pub(super) fn push(&mut self, inbound: Inbound, data: Bytes) -> Pushed {
        let Some(u) = self.unrouted.get_mut(&inbound) else {
            return Pushed::NotWaiting;
        };
        u.bytes += data.len();
        if u.bytes > UNROUTED_LIMIT {
            return Pushed::Refused;
        }
        u.buffered.push(data.clone());
        let First::Reading(decoder) = &mut u.first else {
            return Pushed::Buffered; // Named already: it waits for its agent.
        };
        let frames = decoder.push(&data);
        let Some(first) = frames.first() else {
            return Pushed::Buffered;
        };
        let Some(ufrag) = ufrag_of(first) else {
            return Pushed::Refused;
        };
        u.first = First::Named(ufrag.clone());
        if let Some(id) = self.agents.get(&ufrag) {
            return Pushed::Route(*id);
        }
        // The agent may not exist yet (a check can beat the answer).
        self.by_ufrag.entry(ufrag).or_default().insert(inbound);
        Pushed::Buffered
    }

    /// Connector `id` has an agent that goes by `ufrag`: the connections that named it, in
    /// order, to route there.
    pub(super) fn agent_ready(&mut self, ufrag: String, id: u32) -> Vec<Inbound> {
        let waiting = self.by_ufrag.remove(&ufrag).unwrap_or_default();
        self.agents.insert(ufrag, id);
        waiting.into_iter().collect()
    }

    /// Connector `id` is gone, and its agent with it.
    pub(super) fn forget_agent(&mut self, id: u32) {
        self.agents.retain(|_, c| *c != id);
    }

    /// Takes a waiting connection out, to route it (its route is the caller's to set).
    pub(super) fn take(&mut self, inbound: Inbound) -> Option<Unrouted> {
        self.unwait(inbound);
        self.unrouted.remove(&inbound)
    }

    /// Forgets that `inbound` waits (for an agent, and in the arrival order); it stays in
    /// `unrouted` for the caller to take out.
    fn unwait(&mut self, inbound: Inbound) {
        let Some(u) = self.unrouted.get(&inbound) else {
            return;
        };
        self.arrivals.remove(&u.arrival);
        let source = u.remote.ip();
        if let Some(arrivals) = self.by_source.get_mut(&source) {
            arrivals.remove(&u.arrival);
            if arrivals.is_empty() {
                self.by_source.remove(&source);
            }
        }
        let First::Named(ufrag) = &u.first else {
            return;
        };
        if let Some(waiting) = self.by_ufrag.get_mut(ufrag) {
            waiting.remove(&inbound);
            if waiting.is_empty() {
                self.by_ufrag.remove(ufrag);
            }
        }
    }

    /// Forgets a connection that is being closed, waiting or not.
    pub(super) fn remove(&mut self, inbound: Inbound) {
        self.unwait(inbound);
        self.unrouted.remove(&inbound);
        if let Inbound::Driver(conn) = inbound {
            self.routes.remove(&conn);
        }
    }
}

/// The local ufrag a STUN check's USERNAME names (`ours:theirs`).
fn ufrag_of(frame: &[u8]) -> Option<String> {
    let name = StunMessage::decode(frame).ok()?.username?;
    name.split(':').next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use core::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::stun::framing;
    use crate::stun::{BINDING, Builder, Class};

    fn check(username: &str) -> Bytes {
        let msg = Builder::new(Class::Request, BINDING, 7)
            .username(username)
            .finish(Some("password"))
            .expect("a check");
        framing::encode(&msg)
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), port)
    }

    fn inbound(n: u32) -> Inbound {
        Inbound::Driver(ConnId::Accepted(n))
    }

    #[test]
    fn a_check_waits_for_its_agent_or_goes_to_it_at_once() {
        let mut d = Demux::default();
        d.wait(inbound(1), addr(1), addr(2));
        d.wait(inbound(2), addr(1), addr(3));
        let first = check("aaaa:bbbb");
        // Half a frame names nothing; the whole frame names an agent that is not there.
        assert!(matches!(
            d.push(inbound(1), first.slice(..5)),
            Pushed::Buffered
        ));
        assert!(matches!(
            d.push(inbound(1), first.slice(5..)),
            Pushed::Buffered
        ));
        // Read once: what follows the first check is kept, not read.
        assert!(matches!(
            d.push(inbound(1), framing::encode(b"not a check")),
            Pushed::Buffered
        ));
        assert_eq!(d.agent_ready("aaaa".to_owned(), 3), vec![inbound(1)]);
        let routed = d.take(inbound(1)).expect("waiting");
        assert_eq!(routed.buffered.len(), 3);
        assert!(matches!(
            d.push(inbound(1), check("aaaa:bbbb")),
            Pushed::NotWaiting
        ));
        // Once the agent is known, a check for it is routed as it arrives.
        assert!(matches!(
            d.push(inbound(2), check("aaaa:cccc")),
            Pushed::Route(3)
        ));
    }

    #[test]
    fn room_is_made_by_the_oldest_of_the_source_then_of_all() {
        let mut d = Demux::default();
        let from = |ip: u8, port: u16| SocketAddr::from(([192, 0, 2, ip], port));
        for n in 0..UNROUTED_PER_SOURCE as u32 {
            assert!(d.make_room(from(1, 1000).ip()).is_empty());
            d.wait(inbound(n), addr(1), from(1, 1000 + n as u16));
        }
        // One more from that address: its oldest goes; another address takes no room of it.
        assert_eq!(d.make_room(from(1, 9).ip()), vec![inbound(0)]);
        assert!(d.make_room(from(2, 9).ip()).is_empty());
        // A routed connection is out of the count.
        let _ = d.take(inbound(0));
        assert!(d.make_room(from(1, 9).ip()).is_empty());
        // Past the total, the oldest of all goes, whoever sent it.
        let mut n = 100;
        while d.waiting_count() < UNROUTED_MAX {
            d.wait(inbound(n), addr(1), from((n % 200) as u8 + 10, 1));
            n += 1;
        }
        assert_eq!(d.make_room(from(250, 9).ip()), vec![inbound(1)]);
        d.remove(inbound(1));
        assert!(d.make_room(from(250, 9).ip()).is_empty());
    }

    #[test]
    fn a_first_frame_that_is_no_check_is_refused() {
        let mut d = Demux::default();
        d.wait(inbound(1), addr(1), addr(2));
        assert!(matches!(
            d.push(inbound(1), framing::encode(b"GET / HTTP/1.1")),
            Pushed::Refused
        ));
    }

    #[test]
    fn a_connection_closed_while_it_waits_is_not_routed_later() {
        let mut d = Demux::default();
        d.wait(inbound(1), addr(1), addr(2));
        assert!(matches!(
            d.push(inbound(1), check("aaaa:bbbb")),
            Pushed::Buffered
        ));
        d.remove(inbound(1));
        assert!(d.agent_ready("aaaa".to_owned(), 3).is_empty());
        // A connector that goes takes its agent's ufrag with it.
        d.forget_agent(3);
        d.wait(inbound(2), addr(1), addr(3));
        assert!(matches!(
            d.push(inbound(2), check("aaaa:bbbb")),
            Pushed::Buffered
        ));
    }
}
