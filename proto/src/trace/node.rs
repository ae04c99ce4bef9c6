//! What a node puts on its connections, as a protocol engineer expects to read it.
//!
//! Each direction of a connection is either raw STUN (a TURN control or data connection before
//! ConnectionBind), or RFC 4571 frames carrying STUN (ICE checks) or TLS records. TLS records
//! show their type and length only (their bytes differ from run to run); application data
//! collapses into a byte count.

use std::collections::BTreeMap;

use super::tls::RecordStream;
use super::{Ordinals, Summary, WireDecoder};

/// STUN's magic cookie (RFC 5389), which tells a STUN message from anything else.
const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];

/// Decodes node connections (see the module docs).
#[derive(Debug)]
pub struct NodeWire {
    buffers: BTreeMap<(u64, bool), Vec<u8>>,
    records: BTreeMap<(u64, bool), RecordStream>,
    transactions: Ordinals<u128>,
}

impl NodeWire {
    /// A decoder with nothing seen.
    pub fn new() -> NodeWire {
        NodeWire {
            buffers: BTreeMap::new(),
            records: BTreeMap::new(),
            transactions: Ordinals::new("tx"),
        }
    }
}

impl Default for NodeWire {
    fn default() -> Self {
        NodeWire::new()
    }
}

impl WireDecoder for NodeWire {
    fn decode(&mut self, conn: u64, from_opener: bool, data: &[u8]) -> Vec<Summary> {
        let buf = self.buffers.entry((conn, from_opener)).or_default();
        buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if buf.len() >= 20 && buf[4..8] == MAGIC && buf[0] & 0xc0 == 0 {
                // A raw STUN message (TURN, before ConnectionBind).
                let len = 20 + usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                if buf.len() < len {
                    break;
                }
                let msg: Vec<u8> = buf.drain(..len).collect();
                out.push(Summary::plain(super::turn::summarize(
                    &msg,
                    &mut self.transactions,
                )));
            } else if buf.len() >= 2 {
                // An RFC 4571 frame: a STUN check or TLS records.
                let len = 2 + usize::from(u16::from_be_bytes([buf[0], buf[1]]));
                if buf.len() < len {
                    break;
                }
                let frame: Vec<u8> = buf.drain(..len).skip(2).collect();
                let records = self.records.entry((conn, from_opener)).or_default();
                if !records.is_mid_record() && frame.len() >= 8 && frame[4..8] == MAGIC {
                    out.push(super::stun::summarize(&frame, &mut self.transactions));
                } else {
                    out.extend(records.decode(&frame));
                }
            } else {
                break;
            }
            if buf.is_empty() {
                break;
            }
        }
        if buf.len() > 1 << 20 {
            // Not a stream this decoder understands: count it and stop buffering.
            let n = buf.len();
            buf.clear();
            out.push(Summary::sum("BYTES", n as u64));
        }
        out
    }

    fn forget(&mut self, conn: u64) {
        for side in [true, false] {
            self.buffers.remove(&(conn, side));
            self.records.remove(&(conn, side));
        }
    }
}
