//! TCP as the endpoints see it: a reliable, ordered byte stream with its lifecycle.
//!
//! The simulator does not model segments, retransmissions or congestion: a connection is
//! two queues joined by a route. What it does model is what a protocol above TCP can
//! observe:
//! - the handshake: a SYN walks the route hop by hop, so each NAT decides at the moment the
//!   SYN reaches it (which is what makes crossing SYNs meet — TCP simultaneous open); a SYN
//!   to a closed port is refused with a RST, or dropped so the connect times out;
//! - ordered delivery with latency, jitter and bandwidth on every link of the route;
//! - flow control: bytes leave the sender's queue (and come back to the core as
//!   [`Input::Writable`]) only while the receiver holds less than its receive window
//!   ([`RECEIVE_WINDOW`] unless the host says otherwise) in flight or unread, so a receiver
//!   that pauses reading pushes back on the sender, and the room its reads make reaches the
//!   sender one way later (a window-bound stream moves one window per round trip);
//! - FIN (half-close), close, RST, and data arriving at a closed socket (answered by RST);
//! - the faults of [`fault`](crate::fault): a route that is down or partitioned, or a stalled
//!   connection, holds its data until it heals.
//!
//! # Names and lifetimes
//!
//! A connection has two ends. End 0 opened it; end 1 accepted it (or, after a simultaneous
//! open, is the other opener). An end is *known* while its endpoint may still use its
//! [`ConnId`]: from `Connect` or `Accepted` until the endpoint closes or resets it, or the
//! simulator reports `Closed`, `Reset` or `ConnectFailed`. The simulator frees a connection
//! once neither end is known and neither has anything left to send, so memory follows the
//! connections alive, not the connections ever made.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::io::{ConnId, ListenerId};

use crate::ids::{HostId, RouterId};
use crate::link::Way;
use crate::nat::MapId;

mod handshake;
mod stream;

/// Unread bytes a receiver holds, plus bytes in flight to it, before the sender's queue
/// stops draining: the default receive window (a common default socket buffer, without
/// autotuning). A host can have another ([`HostSpec::receive_window`](crate::HostSpec::receive_window)).
pub const RECEIVE_WINDOW: usize = 256 * 1024;
/// Bytes carried by one simulated segment: the unit of delivery (and of jitter).
pub const SEGMENT: usize = 64 * 1024;

/// A connection's slot and generation: a key stays wrong for ever once its connection is
/// freed, even if the slot is reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ConnKey {
    ix: u32,
    generation: u32,
}

/// What travels on an established route.
#[derive(Debug, Clone)]
pub(crate) enum Segment {
    /// The answer to a SYN.
    SynAck,
    /// Stream bytes.
    Data(Bytes),
    /// End of stream.
    Fin,
    /// Abort.
    Rst,
}

/// Where an end is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Waiting for the SYN-ACK.
    SynSent,
    /// Established.
    Open,
    /// Reset, refused or timed out: nothing more moves.
    Dead,
}

/// Whether our FIN is asked for or gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fin {
    None,
    Queued,
    Sent,
}

/// One end of a connection.
#[derive(Debug)]
pub(crate) struct End {
    pub(crate) host: HostId,
    /// The endpoint's name for this end.
    pub(crate) id: ConnId,
    /// Whether the endpoint still uses `id` (see the module docs).
    pub(crate) known: bool,
    /// The endpoint closed it (not half-closed): it reads nothing more.
    pub(crate) closed: bool,
    /// When the endpoint closed it: a driver holds the socket from then until the peer's
    /// FIN, for at most [`CLOSE_LINGER`](ferry_proto::io::CLOSE_LINGER).
    pub(crate) closed_at: Option<Duration>,
    pub(crate) local: SocketAddr,
    pub(crate) remote: SocketAddr,
    pub(crate) state: State,
    /// Bytes the endpoint queued that have not left yet.
    pub(crate) queue: VecDeque<Bytes>,
    pub(crate) fin: Fin,
    /// The peer's FIN was delivered to the endpoint.
    pub(crate) peer_fin: bool,
    /// Bytes sent towards the peer that its endpoint has not read yet.
    pub(crate) unread: usize,
    /// Arrivals at the peer never go back in time (TCP delivers in order).
    pub(crate) last_arrival: Duration,
    /// The endpoint paused reading: what arrives waits here.
    pub(crate) paused: bool,
    pub(crate) held: VecDeque<Segment>,
    /// We already answered stray data with a RST.
    pub(crate) rst_sent: bool,
    /// The listener that accepted it, for the trace.
    pub(crate) listener: Option<ListenerId>,
}

impl End {
    pub(crate) fn new(host: HostId, id: ConnId, local: SocketAddr, remote: SocketAddr) -> End {
        End {
            host,
            id,
            known: true,
            closed: false,
            closed_at: None,
            local,
            remote,
            state: State::SynSent,
            queue: VecDeque::new(),
            fin: Fin::None,
            peer_fin: false,
            unread: 0,
            last_arrival: Duration::ZERO,
            paused: false,
            held: VecDeque::new(),
            rst_sent: false,
            listener: None,
        }
    }

    /// The unused second end of a connection nobody accepted yet.
    pub(crate) fn placeholder(host: HostId, local: SocketAddr, remote: SocketAddr) -> End {
        let mut end = End::new(host, ConnId::Accepted(0), local, remote);
        end.known = false;
        end.state = State::Dead;
        end
    }

    /// Nothing more to do for this end: the endpoint let go and nothing waits to be sent.
    pub(crate) fn finished(&self) -> bool {
        !self.known && (self.state != State::Open || self.fin == Fin::Sent)
    }
}

/// A connection.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Its number in traces (`#3`), in order of creation.
    pub(crate) serial: u64,
    pub(crate) ends: [End; 2],
    /// Whether end 1 exists (the SYN reached someone who took it).
    pub(crate) bound: bool,
    /// The links from end 0 to end 1, known once the SYN arrived.
    pub(crate) route: Vec<(usize, Way)>,
    /// The route's one-way latency (no jitter, no queueing): how long an acknowledgement
    /// takes to come back.
    pub(crate) one_way: Duration,
    /// The NAT mappings this connection holds a reference on.
    pub(crate) mappings: Vec<(RouterId, MapId)>,
    /// A NAT on its route lost its mapping ([`Fault::Rebind`](crate::Fault::Rebind)):
    /// nothing it carries arrives any more, and only timeouts can tell.
    pub(crate) blackholed: bool,
    /// When the connect gives up, while end 0 waits for its SYN-ACK.
    pub(crate) deadline: Option<Duration>,
}

/// A SYN on its way, one network at a time.
#[derive(Debug)]
pub(crate) struct SynWalk {
    pub(crate) conn: ConnKey,
    pub(crate) from: HostId,
    pub(crate) serial: u64,
    /// The network it is in now.
    pub(crate) net: crate::ids::NetworkId,
    /// Source and destination as rewritten so far.
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    /// The address the initiator dialled, when an interceptor answers in its place.
    pub(crate) intercepted_as: Option<SocketAddr>,
    /// The router it last came up through (hairpin detection).
    pub(crate) came_up_via: Option<RouterId>,
    pub(crate) links: Vec<(usize, Way)>,
    pub(crate) mappings: Vec<(RouterId, MapId)>,
    /// When it reaches `net` (or its next stop).
    pub(crate) at: Duration,
    /// The destination host, once found.
    pub(crate) to: Option<HostId>,
    /// The router deciding the current step, which the trace names when it drops the SYN.
    pub(crate) blame: Option<RouterId>,
}

/// Every connection, in slots that are reused.
#[derive(Debug, Default)]
pub(crate) struct Conns {
    slots: Vec<(u32, Option<Conn>)>,
    free: Vec<u32>,
    live: usize,
}

impl Conns {
    pub(crate) fn insert(&mut self, conn: Conn) -> ConnKey {
        self.live += 1;
        match self.free.pop() {
            Some(ix) => {
                let slot = &mut self.slots[ix as usize];
                slot.0 = slot.0.wrapping_add(1);
                slot.1 = Some(conn);
                ConnKey {
                    ix,
                    generation: slot.0,
                }
            }
            None => {
                self.slots.push((0, Some(conn)));
                ConnKey {
                    ix: self.slots.len() as u32 - 1,
                    generation: 0,
                }
            }
        }
    }

    pub(crate) fn get(&self, key: ConnKey) -> Option<&Conn> {
        match self.slots.get(key.ix as usize) {
            Some((g, Some(c))) if *g == key.generation => Some(c),
            _ => None,
        }
    }

    pub(crate) fn get_mut(&mut self, key: ConnKey) -> Option<&mut Conn> {
        match self.slots.get_mut(key.ix as usize) {
            Some((g, Some(c))) if *g == key.generation => Some(c),
            _ => None,
        }
    }

    pub(crate) fn remove(&mut self, key: ConnKey) -> Option<Conn> {
        match self.slots.get_mut(key.ix as usize) {
            Some((g, slot @ Some(_))) if *g == key.generation => {
                self.live -= 1;
                self.free.push(key.ix);
                slot.take()
            }
            _ => None,
        }
    }

    /// Live connections, in slot order (deterministic).
    pub(crate) fn keys(&self) -> Vec<ConnKey> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, (_, c))| c.is_some())
            .map(|(ix, (g, _))| ConnKey {
                ix: ix as u32,
                generation: *g,
            })
            .collect()
    }

    pub(crate) fn live(&self) -> usize {
        self.live
    }
}
