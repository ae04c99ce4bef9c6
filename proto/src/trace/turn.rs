//! TURN messages as one trace line each, in the names of RFC 8656 and RFC 6062;
//! [`TurnDecoder`] for TURN over TCP; and what a TURN client tells its owner ([`event`]).

use core::net::IpAddr;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use stun_types::attribute::{
    Attribute as _, AttributeFromRaw as _, AttributeStaticType as _, ErrorCode, MessageIntegrity,
    XorMappedAddress,
};
use stun_types::message::{Message, MessageClass};
use turn_types::attribute::{ConnectionId, Lifetime, XorPeerAddress, XorRelayedAddress};
use turn_types::message::{
    ALLOCATE, CONNECT, CONNECTION_ATTEMPT, CONNECTION_BIND, CREATE_PERMISSION, REFRESH,
};

use crate::turn::{StunStream, TurnEvent};

use super::{Names, Ordinals, Summary, WireDecoder};

/// Summarises one STUN/TURN message; transaction ids become ordinals (`tx1`, `tx2`…).
pub fn summarize(bytes: &[u8], transactions: &mut Ordinals<u128>) -> String {
    let Ok(msg) = Message::from_bytes(bytes) else {
        return format!("STUN? {} bytes", bytes.len());
    };
    let method = msg.method();
    let name = if method == ALLOCATE {
        "Allocate"
    } else if method == REFRESH {
        "Refresh"
    } else if method == CREATE_PERMISSION {
        "CreatePermission"
    } else if method == CONNECT {
        "Connect"
    } else if method == CONNECTION_BIND {
        "ConnectionBind"
    } else if method == CONNECTION_ATTEMPT {
        "ConnectionAttempt"
    } else {
        "Binding"
    };
    let class = match msg.class() {
        MessageClass::Request => "request",
        MessageClass::Indication => "indication",
        MessageClass::Success => "success",
        MessageClass::Error => "error",
    };
    let tid = msg.transaction_id();
    let mut out = format!("{name} {class} {}", transactions.of(u128::from(tid)));
    if let Ok(e) = msg.attribute::<ErrorCode>() {
        let _ = write!(out, " {} {}", e.code(), e.reason());
    }
    if let Ok(a) = msg.attribute::<XorRelayedAddress>() {
        let _ = write!(out, " relayed={}", a.addr(tid));
    }
    if let Ok(a) = msg.attribute::<XorMappedAddress>() {
        let _ = write!(out, " mapped={}", a.addr(tid));
    }
    for (_, raw) in msg.iter_attributes() {
        if raw.get_type() == XorPeerAddress::TYPE {
            if let Ok(a) = XorPeerAddress::from_raw_ref(&raw) {
                let _ = write!(out, " peer={}", a.addr(tid));
            }
        }
    }
    if let Ok(l) = msg.attribute::<Lifetime>() {
        let _ = write!(out, " lifetime={}", l.seconds());
    }
    if let Ok(c) = msg.attribute::<ConnectionId>() {
        let _ = write!(out, " connection-id={}", c.id());
    }
    if msg.has_attribute(MessageIntegrity::TYPE) {
        out.push_str(" (signed)");
    }
    out
}

/// Summarises what a TURN client tells its owner: `allocated relayed=… mapped=…
/// lifetime=600s`, `permitted 198.51.100.20`, `c2 bound to peer 198.51.100.20:7000`; bytes
/// from and to peers are counted, never printed.
pub fn event(event: &TurnEvent) -> Summary {
    let list = |ips: &[IpAddr]| {
        ips.iter()
            .map(IpAddr::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    };
    Summary::plain(match event {
        TurnEvent::Allocated {
            relayed,
            mapped,
            lifetime,
        } => format!(
            "allocated relayed={relayed} mapped={mapped} lifetime={}s",
            lifetime.as_secs()
        ),
        TurnEvent::Refreshed { lifetime } => format!("refreshed lifetime={}s", lifetime.as_secs()),
        TurnEvent::Permitted { ips } => format!("permitted {}", list(ips)),
        TurnEvent::PermissionFailed { ips, error } => {
            format!("permission refused for {}: {error}", list(ips))
        }
        TurnEvent::PeerStream {
            conn,
            peer,
            incoming,
        } => format!(
            "{conn} bound to peer {peer} ({})",
            if *incoming {
                "it connected to us"
            } else {
                "we connected to it"
            }
        ),
        TurnEvent::PeerData { conn, data } => {
            return Summary::sum("from peer", data.len() as u64).of(&conn.to_string());
        }
        TurnEvent::PeerWritable { conn, bytes } => {
            return Summary::sum("sent to peer", *bytes as u64).of(&conn.to_string());
        }
        TurnEvent::PeerClosed { conn } => format!("{conn} closed by peer"),
        TurnEvent::PeerConnectFailed { peer, error } => {
            format!("connection with peer {peer} failed: {error}")
        }
        TurnEvent::Failed { error } => format!("failed: {error}"),
        TurnEvent::Deallocated => "deallocated".to_owned(),
    })
}

/// How one direction of a connection is decoded by [`TurnDecoder`].
#[derive(Debug)]
enum TurnWire {
    /// STUN messages, one after the other.
    Stun(StunStream),
    /// Raw bytes: a bound data connection, or a peer connection.
    Raw,
}

/// Decodes TURN over TCP (RFC 8656, RFC 6062): every STUN message on a control or data
/// connection becomes one line from [`summarize`] (transaction ids
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
    fn decode(&mut self, conn: u64, from_opener: bool, data: &[u8], _: &mut Names) -> Vec<Summary> {
        let wire = self
            .wires
            .entry((conn, from_opener))
            .or_insert_with(|| TurnWire::Stun(StunStream::new()));
        let TurnWire::Stun(stream) = wire else {
            return vec![raw(data.len() as u64)];
        };
        stream.push(data);
        let mut out = Vec::new();
        loop {
            match stream.next_message() {
                Ok(Some(m)) => {
                    out.push(Summary::plain(summarize(&m, &mut self.transactions)));
                    // After a ConnectionBind request (from the client) or its success
                    // response (from the server), the connection is a raw pipe.
                    let bound = Message::from_bytes(&m).is_ok_and(|msg| {
                        msg.method() == CONNECTION_BIND
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
    Summary::sum("RAW", bytes)
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
        let n = &mut Names::default();
        let mut wire = connection_bind();
        wire.extend_from_slice(b"early");
        assert!(
            d.decode(1, true, &wire[..10], n).is_empty(),
            "half a header"
        );
        let out = d.decode(1, true, &wire[10..], n);
        assert_eq!(
            out,
            vec![
                Summary::plain("ConnectionBind request tx1 connection-id=4096"),
                raw(5)
            ]
        );
        assert_eq!(d.decode(1, true, b"more", n), vec![raw(4)]);
        // The other direction of the same connection is still STUN.
        assert_eq!(
            d.decode(1, false, &connection_bind(), n),
            vec![Summary::plain(
                "ConnectionBind request tx1 connection-id=4096"
            )]
        );
        // A relay's connection to a peer is raw from its first byte.
        assert_eq!(d.decode(2, true, b"hello", n), vec![raw(5)]);
    }
}
