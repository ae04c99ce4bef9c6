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

use ferry_proto::trace::{Labels, Names, Recorder, Summary, WireDecoder};

use crate::host::SimEvent;
use crate::turn_server::TurnServerEvent;

/// Summarises what an endpoint told its owner: a node's [`Event`](ferry_proto::io::Event),
/// an ICE agent's or a TURN client's events as `proto::trace` renders them, the simulated
/// TURN server's as it says them, a plain `String` as itself; any other type as its `Debug`
/// (a test's own endpoint, say), which no snapshot should show.
pub(crate) fn event(event: &dyn SimEvent, names: &mut Names) -> Summary {
    let any = event.as_any();
    if let Some(e) = any.downcast_ref::<ferry_proto::io::Event>() {
        ferry_proto::trace::event(e, names)
    } else if let Some(e) = any.downcast_ref::<ferry_proto::ice::Event>() {
        ferry_proto::trace::ice_event(e)
    } else if let Some(e) = any.downcast_ref::<ferry_proto::turn::TurnEvent>() {
        ferry_proto::trace::turn::event(e)
    } else if let Some(e) = any.downcast_ref::<TurnServerEvent>() {
        Summary::plain(e.to_string())
    } else if let Some(e) = any.downcast_ref::<String>() {
        Summary::plain(e.clone())
    } else {
        Summary::plain(format!("{event:?}"))
    }
}

/// The world's recorder and the state its summaries need.
pub(crate) struct Tracer {
    pub(crate) recorder: Recorder,
    pub(crate) names: Names,
    pub(crate) decoder: Box<dyn WireDecoder>,
}

impl Tracer {
    pub(crate) fn new(decoder: Box<dyn WireDecoder>, labels: Labels) -> Tracer {
        Tracer {
            recorder: Recorder::new(),
            names: Names::new(labels),
            decoder,
        }
    }
}
