//! TURN messages as one trace line each, in the names of RFC 8656 and RFC 6062.

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

use crate::trace::Ordinals;

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
