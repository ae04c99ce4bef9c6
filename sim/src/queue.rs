//! The event queue: what happens next, in order of virtual time, ties broken by the order
//! things were scheduled (never by a hash or an address), so a run is a function of its seed.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::io::{DhtKey, Input};

use crate::fault::Fault;
use crate::ids::HostId;
use crate::tcp::{ConnKey, Segment, SynWalk};

/// Something scheduled.
#[derive(Debug)]
pub(crate) enum Ev {
    /// A host's endpoint asked to be woken now.
    Wake(HostId),
    /// A SYN reaches its next router or its destination host.
    Syn(Box<SynWalk>),
    /// A segment reaches one end of a connection.
    Arrive {
        conn: ConnKey,
        to: usize,
        seg: Segment,
    },
    /// Bytes left the sender's first link: its queue has room again.
    Credit {
        conn: ConnKey,
        side: usize,
        bytes: usize,
    },
    /// A connection attempt runs out of time.
    ConnectTimeout(ConnKey),
    /// A DHT value is stored by the network.
    DhtStore {
        from: HostId,
        key: DhtKey,
        value: Bytes,
    },
    /// A DHT value reaches a listening host.
    DhtDeliver {
        to: HostId,
        key: DhtKey,
        value: Bytes,
    },
    /// An input for a host, as is.
    Input { to: HostId, input: Input },
    /// A fault takes effect.
    Fault(Fault),
}

struct Entry {
    at: Duration,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A min-heap of events by (time, scheduling order).
#[derive(Default)]
pub(crate) struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

impl Queue {
    pub(crate) fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            ev,
        }));
    }

    pub(crate) fn peek_time(&self) -> Option<Duration> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    pub(crate) fn pop(&mut self) -> Option<(Duration, Ev)> {
        self.heap.pop().map(|Reverse(e)| (e.at, e.ev))
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
