//! Trace recording: one line per protocol event, through [`ferry_proto::trace`].
//!
//! Each line carries the virtual time, the host (or router), a direction, and a summary.
//! Bytes on a connection go `→ peer#n`, `#n` being the connection's number in order of
//! creation, so bulk bytes collapse per connection. What the bytes *mean* is up to a
//! [`WireDecoder`] of `ferry_proto::trace`: by default they are counted
//! ([`CountBytes`](ferry_proto::trace::CountBytes)). Byte lines are recorded when the
//! endpoint hands the bytes over, in the order it wrote them (so a decoder sees the stream as
//! sent), not when they arrive: a held or stalled stream shows as a gap before the peer's
//! reaction. Lifecycle lines (SYN, accept, connected, refused, half-close, close, reset,
//! closed), NAT mappings and lost SYNs, DHT operations, file operations, faults and
//! application events are plain lines.
//!
//! Nothing random reaches a line: times are virtual, ids are ordinals or serials, and
//! nothing is iterated out of a hash map.

use ferry_proto::trace::{Ordinals, Recorder, Summary, WireDecoder};
use ferry_proto::transfer::TransferId;

use crate::host::SimEvent;

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
