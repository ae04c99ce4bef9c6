//! Trace recording: one line per protocol event, through [`ferry_proto::trace`].
//!
//! Each line carries the virtual time, the host (or router), a direction, and a summary.
//! Bytes on a connection go `→ peer#n`, `#n` being the connection's number in order of
//! creation, so bulk bytes collapse per connection. What the bytes *mean* is up to a
//! [`WireDecoder`]: by default they are counted; [`TransferDecoder`] decodes Ferry's
//! transfer stream (header, `GO`, frames). Byte lines are recorded when the endpoint hands
//! the bytes over, in the order it wrote them (so a decoder sees the stream as sent), not
//! when they arrive: a held or stalled stream shows as a gap before the peer's reaction.
//! Lifecycle lines (SYN, accept, connected, refused, half-close, close, reset, closed), NAT
//! mappings and lost SYNs, DHT operations, file operations, faults and application events
//! are plain lines.
//!
//! Nothing random reaches a line: times are virtual, ids are ordinals or serials, and
//! nothing is iterated out of a hash map.

use std::collections::BTreeMap;

use ferry_proto::trace::{Bulk, Ordinals, Recorder, Side, Summary, TransferWire};
use ferry_proto::transfer::TransferId;

use crate::host::SimEvent;

/// Turns the bytes one end of a connection sent into trace summaries.
pub trait WireDecoder {
    /// Bytes sent on connection `conn`, by its opener when `from_opener`, in order.
    fn decode(&mut self, conn: u64, from_opener: bool, data: &[u8]) -> Vec<Summary>;
    /// The connection is gone; forget its state.
    fn forget(&mut self, _conn: u64) {}
}

/// Counts bytes: `BYTES ×n total bytes` per connection and direction.
#[derive(Debug, Default)]
pub struct CountBytes;

impl WireDecoder for CountBytes {
    fn decode(&mut self, _conn: u64, _from_opener: bool, data: &[u8]) -> Vec<Summary> {
        vec![Summary {
            text: String::new(),
            bulk: Some(Bulk::Sum {
                kind: "BYTES",
                bytes: data.len() as u64,
            }),
        }]
    }
}

/// Decodes each connection as one Ferry transfer stream, the opener being the sender.
#[derive(Debug, Default)]
pub struct TransferDecoder {
    wires: BTreeMap<u64, TransferWire>,
}

impl WireDecoder for TransferDecoder {
    fn decode(&mut self, conn: u64, from_opener: bool, data: &[u8]) -> Vec<Summary> {
        let side = if from_opener {
            Side::Sender
        } else {
            Side::Receiver
        };
        self.wires.entry(conn).or_default().decode(side, data)
    }

    fn forget(&mut self, conn: u64) {
        self.wires.remove(&conn);
    }
}

/// Summarises what an endpoint told its owner: a node's [`Event`](ferry_proto::io::Event)
/// and an ICE agent's events as `proto::trace` renders them; any other type as its `Debug`.
pub(crate) fn event(event: &dyn SimEvent, transfers: &mut Ordinals<TransferId>) -> Summary {
    let any = event.as_any();
    if let Some(e) = any.downcast_ref::<ferry_proto::io::Event>() {
        ferry_proto::trace::event(e, transfers)
    } else if let Some(e) = any.downcast_ref::<ferry_proto::ice::Event>() {
        ferry_proto::trace::ice_event(e)
    } else {
        Summary::plain(format!("{event:?}"))
    }
}

/// The world's recorder and the state its summaries need.
pub(crate) struct Tracer {
    pub(crate) recorder: Recorder,
    pub(crate) transfers: Ordinals<TransferId>,
    pub(crate) decoder: Box<dyn WireDecoder>,
}

impl Tracer {
    pub(crate) fn new(decoder: Box<dyn WireDecoder>) -> Tracer {
        Tracer {
            recorder: Recorder::new(),
            transfers: Ordinals::new("t"),
            decoder,
        }
    }
}
