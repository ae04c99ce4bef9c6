//! Trace recording: one line per protocol event, through [`ferry_proto::trace`].
//!
//! Each line carries the virtual time, the host (or router), a direction, and a summary.
//! Bytes on a connection go `→ peer#n`, `#n` being the connection's number in order of
//! creation, so bulk bytes collapse per connection. What the bytes *mean* is up to a
//! [`WireDecoder`]: by default they are counted; [`TransferDecoder`] decodes Ferry's
//! transfer stream (header, `GO`, frames); [`TurnDecoder`] decodes TURN over TCP. Byte
//! lines are recorded when the endpoint hands the bytes over, in the order it wrote them
//! (so a decoder sees the stream as sent), not when they arrive: a held or stalled stream shows as a gap before the peer's reaction.
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

/// How one direction of a connection is decoded by [`TurnDecoder`].
#[derive(Debug)]
enum TurnWire {
    /// STUN messages, one after the other.
    Stun(ferry_proto::turn::StunStream),
    /// Raw bytes: a bound data connection, or a peer connection.
    Raw,
}

/// Decodes TURN over TCP (RFC 8656, RFC 6062): every STUN message on a control or data
/// connection becomes one line from [`ferry_proto::turn::trace::summarize`] (transaction ids
/// as ordinals `tx1`, `tx2`, … shared by all connections, so an answer reads as the answer
/// to its request); after a ConnectionBind (the request one way, its success response the
/// other) and on any stream that does not start as STUN (a relay's connection to a peer),
/// bytes are counted as `RAW`.
#[derive(Debug)]
pub struct TurnDecoder {
    wires: BTreeMap<(u64, bool), TurnWire>,
    transactions: Ordinals<u128>,
}

impl Default for TurnDecoder {
    fn default() -> Self {
        TurnDecoder {
            wires: BTreeMap::new(),
            transactions: Ordinals::new("tx"),
        }
    }
}

impl WireDecoder for TurnDecoder {
    fn decode(&mut self, conn: u64, from_opener: bool, data: &[u8]) -> Vec<Summary> {
        use stun_types::message::{Message, MessageClass};
        let wire = self
            .wires
            .entry((conn, from_opener))
            .or_insert_with(|| TurnWire::Stun(ferry_proto::turn::StunStream::new()));
        let TurnWire::Stun(stream) = wire else {
            return vec![raw(data.len() as u64)];
        };
        stream.push(data);
        let mut out = Vec::new();
        loop {
            match stream.next_message() {
                Ok(Some(m)) => {
                    out.push(Summary::plain(ferry_proto::turn::trace::summarize(
                        &m,
                        &mut self.transactions,
                    )));
                    // After a ConnectionBind request (from the client) or its success
                    // response (from the server), the connection is a raw pipe.
                    let bound = Message::from_bytes(&m).is_ok_and(|msg| {
                        msg.method() == turn_types::message::CONNECTION_BIND
                            && (msg.has_class(MessageClass::Request)
                                || msg.has_class(MessageClass::Success))
                    });
                    if bound {
                        let rest = stream.take_rest();
                        *wire = TurnWire::Raw;
                        if !rest.is_empty() {
                            out.push(raw(rest.len() as u64));
                        }
                        break;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    let rest = stream.take_rest();
                    *wire = TurnWire::Raw;
                    out.push(raw(rest.len() as u64));
                    break;
                }
            }
        }
        out
    }

    fn forget(&mut self, conn: u64) {
        self.wires.remove(&(conn, true));
        self.wires.remove(&(conn, false));
    }
}

/// Raw bytes, counted.
fn raw(bytes: u64) -> Summary {
    Summary {
        text: String::new(),
        bulk: Some(Bulk::Sum { kind: "RAW", bytes }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun_types::message::{
        Message, MessageClass, MessageType, MessageWrite as _, MessageWriteExt as _,
        MessageWriteVec, TransactionId,
    };

    fn connection_bind() -> Vec<u8> {
        let mtype = MessageType::from_class_method(
            MessageClass::Request,
            turn_types::message::CONNECTION_BIND,
        );
        let mut w = Message::builder(mtype, TransactionId::from(7u128), MessageWriteVec::new());
        w.add_attribute(&turn_types::attribute::ConnectionId::new(4096))
            .expect("an attribute");
        w.finish()
    }

    #[test]
    fn a_message_split_across_writes_is_one_line_and_bytes_after_a_bind_are_raw() {
        let mut d = TurnDecoder::default();
        let mut wire = connection_bind();
        wire.extend_from_slice(b"early");
        assert!(d.decode(1, true, &wire[..10]).is_empty(), "half a header");
        let out = d.decode(1, true, &wire[10..]);
        assert_eq!(
            out,
            vec![
                Summary::plain("ConnectionBind request tx1 connection-id=4096"),
                raw(5)
            ]
        );
        assert_eq!(d.decode(1, true, b"more"), vec![raw(4)]);
        // The other direction of the same connection is still STUN.
        assert_eq!(
            d.decode(1, false, &connection_bind()),
            vec![Summary::plain(
                "ConnectionBind request tx1 connection-id=4096"
            )]
        );
        // A relay's connection to a peer is raw from its first byte.
        assert_eq!(d.decode(2, true, b"hello"), vec![raw(5)]);
    }
}
