//! The event queue: what happens next, in order of virtual time, ties broken by the order
//! things were scheduled (never by a hash or an address), so a run is a function of its seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::io::DhtKey;

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
    /// The receiver's acknowledgement of read bytes reaches the sender.
    Window {
        conn: ConnKey,
        side: usize,
        bytes: usize,
    },
    /// Bytes left the sender's first link: its queue has room again.
    Credit {
        conn: ConnKey,
        side: usize,
        bytes: usize,
    },
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
    /// The answer to a DHT put reaches its host.
    DhtPutDone { to: HostId, key: DhtKey, ok: bool },
    /// A fault takes effect.
    Fault(Fault),
}

/// A min-heap of events by (time, scheduling order).
///
/// The heap holds only small keys (nanoseconds, sequence number, slot); the events sit in a
/// slab beside it, so the heap's sifting moves 24 bytes per entry rather than a whole event.
#[derive(Default)]
pub(crate) struct Queue {
    heap: BinaryHeap<Reverse<(u64, u64, u32)>>,
    slots: Vec<Option<Ev>>,
    free: Vec<u32>,
    seq: u64,
}

fn nanos(at: Duration) -> u64 {
    // 584 years of virtual time fit; beyond that, events pile up at the end of time.
    u64::try_from(at.as_nanos()).unwrap_or(u64::MAX)
}

impl Queue {
    pub(crate) fn push(&mut self, at: Duration, ev: Ev) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(ev);
                i
            }
            None => {
                self.slots.push(Some(ev));
                self.slots.len() as u32 - 1
            }
        };
        self.heap.push(Reverse((nanos(at), self.seq, slot)));
    }

    pub(crate) fn peek_time(&self) -> Option<Duration> {
        self.heap
            .peek()
            .map(|Reverse((t, _, _))| Duration::from_nanos(*t))
    }

    pub(crate) fn pop(&mut self) -> Option<(Duration, Ev)> {
        let Reverse((t, _, slot)) = self.heap.pop()?;
        self.free.push(slot);
        let ev = self.slots[slot as usize].take()?;
        Some((Duration::from_nanos(t), ev))
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}
