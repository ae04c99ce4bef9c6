//! The connection request and its answer: Jami's `PeerConnectionMsg`, msgpack-encoded.
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `id` | u64 | random, chosen by the requester; the answer repeats it; a retry reuses it |
//! | `protocol` | u32 | `0x01000002`, with bit 0 set in the answer |
//! | `ice` | string | the ICE description blob (ufrag, pwd, one line per candidate) |
//! | `addresses` | [string] | request: the requester's public addresses; answer: the answerer's relay addresses (`1.2.3.4:5`, `[v6]:5`) |
//! | `seal` | bin(32), request only | Ferry: the requester's sealing key, for the answer |
//! | `time` | u64, request only | Ferry: Unix seconds when it was sealed; only to a device that announced `request-time` |

use core::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::SignalError;

/// Jami's protocol value; bit 0 marks an answer.
pub const PROTOCOL: u32 = 0x0100_0002;

/// A connection request or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConnection {
    /// The exchange's id.
    pub id: u64,
    /// Whether this is the answer.
    pub is_answer: bool,
    /// The ICE description.
    pub ice: String,
    /// Public addresses (request) or relay addresses (answer).
    pub addresses: Vec<SocketAddr>,
    /// Ferry: in a request, the requester's sealing key, so the answer needs no lookup of
    /// its announcement (the request is signed by the requester's device, so it is its key).
    pub seal: Option<[u8; 32]>,
    /// Ferry: in a request to a device that announced
    /// [`REQUEST_TIME`](super::REQUEST_TIME), the Unix time (seconds) it was sealed at; the
    /// receiver refuses it outside [`REQUEST_WINDOW`](super::REQUEST_WINDOW).
    pub time: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    id: u64,
    protocol: u32,
    ice: String,
    addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    seal: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<u64>,
}

/// Most addresses a message may carry (a host has few; a flood is refused).
const MAX_ADDRESSES: usize = 64;
/// Largest ICE description accepted.
const MAX_ICE: usize = 16 * 1024;

impl PeerConnection {
    /// Its msgpack bytes.
    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            id: self.id,
            protocol: PROTOCOL | u32::from(self.is_answer),
            ice: self.ice.clone(),
            addresses: self.addresses.iter().map(SocketAddr::to_string).collect(),
            seal: self.seal.map(|k| k.to_vec()),
            time: self.time,
        };
        // Encoding a plain struct into a Vec cannot fail.
        rmp_serde::to_vec_named(&wire).unwrap_or_default()
    }

    /// Reads msgpack bytes. Unparseable addresses are skipped, like bad candidate lines.
    pub fn decode(bytes: &[u8]) -> Result<PeerConnection, SignalError> {
        let wire: Wire = rmp_serde::from_slice(bytes)
            .map_err(|_| SignalError::Malformed("connection message"))?;
        if wire.protocol & !1 != PROTOCOL {
            return Err(SignalError::Malformed("unknown protocol value"));
        }
        if wire.addresses.len() > MAX_ADDRESSES || wire.ice.len() > MAX_ICE {
            return Err(SignalError::Malformed("connection message too large"));
        }
        Ok(PeerConnection {
            id: wire.id,
            is_answer: wire.protocol & 1 == 1,
            ice: wire.ice,
            addresses: wire
                .addresses
                .iter()
                .filter_map(|a| a.parse().ok())
                .collect(),
            seal: match wire.seal {
                None => None,
                Some(k) => Some(
                    k.as_slice()
                        .try_into()
                        .map_err(|_| SignalError::Malformed("sealing key"))?,
                ),
            },
            time: wire.time,
        })
    }
}
