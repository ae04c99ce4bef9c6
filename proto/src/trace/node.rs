//! What a node puts on its connections, as a protocol engineer expects to read it.
//!
//! Each direction of a connection is either raw STUN (a TURN control or data connection before
//! ConnectionBind), or RFC 4571 frames carrying STUN (ICE checks) or TLS records. TLS records
//! read as [`tls`](super::tls) shows them; with the sessions' [`TlsSecrets`], what travels
//! inside TLS reads as [`channel`](super::channel) shows it: channel requests and transfer
//! frames. Without them, application data collapses into a byte count.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::stun::looks_like_stun;

use super::channel::ChannelWire;
use super::tls::{Decoded, TlsSecrets, TlsWire};
use super::{Names, Ordinals, Summary, WireDecoder};

/// One connection, both directions.
#[derive(Debug)]
struct Conn {
    /// Bytes not yet cut into STUN messages or RFC 4571 frames, by `from_opener`.
    framing: [Vec<u8>; 2],
    tls: TlsWire,
    channels: ChannelWire,
}

/// Decodes node connections (see the module docs).
#[derive(Debug)]
pub struct NodeWire {
    secrets: Option<Arc<TlsSecrets>>,
    conns: BTreeMap<u64, Conn>,
    transactions: Ordinals<u128>,
}

impl NodeWire {
    /// A decoder with nothing seen, which counts what travels inside TLS.
    pub fn new() -> NodeWire {
        NodeWire {
            secrets: None,
            conns: BTreeMap::new(),
            transactions: Ordinals::new("tx"),
        }
    }

    /// A decoder that opens TLS records with the secrets the nodes log into `secrets`, and
    /// shows what travels inside.
    pub fn decrypting(secrets: Arc<TlsSecrets>) -> NodeWire {
        NodeWire {
            secrets: Some(secrets),
            ..NodeWire::new()
        }
    }
}

impl Default for NodeWire {
    fn default() -> Self {
        NodeWire::new()
    }
}

impl WireDecoder for NodeWire {
    fn decode(
        &mut self,
        conn: u64,
        from_opener: bool,
        data: &[u8],
        names: &mut Names,
    ) -> Vec<Summary> {
        let secrets = &self.secrets;
        let c = self.conns.entry(conn).or_insert_with(|| Conn {
            framing: Default::default(),
            tls: TlsWire::new(secrets.clone()),
            channels: ChannelWire::new(),
        });
        let buf = &mut c.framing[usize::from(from_opener)];
        buf.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            if looks_like_stun(buf) {
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
                if !c.tls.is_mid_record(from_opener) && looks_like_stun(&frame) {
                    out.push(super::stun::summarize(&frame, &mut self.transactions));
                } else {
                    for piece in c.tls.decode(from_opener, &frame) {
                        match piece {
                            Decoded::Line(s) => out.push(s),
                            Decoded::Plaintext(p) => {
                                out.extend(c.channels.decode(from_opener, &p, names));
                            }
                        }
                    }
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
        self.conns.remove(&conn);
    }
}
