//! STUN as ICE speaks it (RFC 8445 checks, RFC 5389 messages), and ICE-TCP's RFC 4571
//! framing.

use std::fmt::Write as _;

use crate::stun::framing::FrameDecoder as Rfc4571Decoder;
use crate::stun::{Class, RoleAttribute, StunMessage};

use super::{Ordinals, Summary};

/// Summarises one STUN message: `Binding request tx1 USERNAME=… PRIORITY=… ICE-CONTROLLING
/// USE-CANDIDATE`. Transaction ids become ordinals (`tx1`, `tx2`, …), so a response reads as
/// the answer to its request; tie-breakers and integrity bytes are left out (they are random
/// or opaque); an error response shows its code and reason. Bytes that are not a valid STUN
/// message summarise as `STUN? (why)`.
pub fn summarize(bytes: &[u8], transactions: &mut Ordinals<u128>) -> Summary {
    let message = match StunMessage::decode(bytes) {
        Ok(m) => m,
        Err(e) => return Summary::plain(format!("STUN? {} bytes ({e})", bytes.len())),
    };
    let method = match message.method {
        crate::stun::BINDING => "Binding".to_owned(),
        other => format!("method 0x{other:03x}"),
    };
    let class = match message.class {
        Class::Request => "request",
        Class::Indication => "indication",
        Class::Success => "success response",
        Class::Error => "error response",
    };
    let mut text = format!("{method} {class} {}", transactions.of(message.transaction));
    if let Some((code, reason)) = &message.error {
        let _ = write!(text, " ERROR-CODE={code} {reason:?}");
    }
    if let Some(user) = &message.username {
        let _ = write!(text, " USERNAME={user}");
    }
    if let Some(p) = message.priority {
        let _ = write!(text, " PRIORITY={p}");
    }
    match message.role {
        Some(RoleAttribute::Controlling(_)) => text.push_str(" ICE-CONTROLLING"),
        Some(RoleAttribute::Controlled(_)) => text.push_str(" ICE-CONTROLLED"),
        None => {}
    }
    if message.use_candidate {
        text.push_str(" USE-CANDIDATE");
    }
    if let Some(addr) = message.xor_mapped {
        let _ = write!(text, " XOR-MAPPED-ADDRESS={addr}");
    }
    Summary::plain(text)
}

/// One direction of an ICE-TCP connection: RFC 4571 frames, each a STUN message or a run of
/// application bytes (which collapse into `APP ×n bytes`).
#[derive(Debug, Default)]
pub struct FramedWire {
    frames: Rfc4571Decoder,
}

impl FramedWire {
    /// A direction on which nothing was sent yet.
    pub fn new() -> FramedWire {
        FramedWire::default()
    }

    /// Decodes the next bytes sent in this direction.
    pub fn decode(&mut self, data: &[u8], transactions: &mut Ordinals<u128>) -> Vec<Summary> {
        self.frames
            .push(data)
            .iter()
            .map(|frame| {
                if crate::stun::looks_like_stun(frame) {
                    summarize(frame, transactions)
                } else {
                    Summary::sum("APP", frame.len() as u64)
                }
            })
            .collect()
    }
}
