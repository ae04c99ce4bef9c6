//! Our messages, encoded as `dhtnode` 2.4.12 writes them: the same keys in the same order
//! and `msgpack-c`'s shortest forms, so our bytes match its own (PROTOCOL.md §13 holds
//! vectors of both). Values over the packet limit go as value parts after their message
//! (`packValueHeader`, `sendValueParts`).

use core::net::{IpAddr, SocketAddr};

use super::InfoHash;
use super::constants::{AF_INET, AF_INET6, MAX_PACKET_VALUE_SIZE, MAX_VALUES_INLINE, MTU, MY_V};
use super::message::{NodeInfo, Tid, Want};
use super::msgpack::Writer;
use super::value::Value;

/// Encodes our messages in `dhtnode`'s key order, with our id and network.
#[derive(Debug, Clone, Copy)]
pub struct Encoder {
    /// Our node id.
    pub id: InfoHash,
    /// Our network id (`n`; 0 is OpenDHT's public network and is not sent).
    pub network: u32,
}

/// A message, and the value-part messages that follow it (values too large to go inline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packets {
    /// The message itself.
    pub message: Vec<u8>,
    /// Value parts, sent after it to the same address.
    pub parts: Vec<Vec<u8>>,
}

fn addr_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Packs nodes as `n4` / `n6` want them.
pub fn pack_nodes(nodes: &[NodeInfo]) -> Vec<u8> {
    let mut raw = Vec::new();
    for n in nodes {
        raw.extend_from_slice(&n.id.0);
        raw.extend(addr_bytes(n.addr.ip()));
        raw.extend(n.addr.port().to_be_bytes());
    }
    raw
}

impl Encoder {
    fn trailer(&self, w: &mut Writer, tid: Tid, y: &str) {
        w.str("t")
            .uint(u64::from(tid))
            .str("y")
            .str(y)
            .str("v")
            .str(MY_V);
        if self.network != 0 {
            w.str("n").uint(u64::from(self.network));
        }
    }

    fn request(&self, tid: Tid, q: &str, args: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        w.map(5 + usize::from(self.network != 0)).str("a");
        args(&mut w);
        w.str("q").str(q);
        self.trailer(&mut w, tid, "q");
        w.buf
    }

    fn reply(&self, tid: Tid, fields: usize, body: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        w.map(4 + usize::from(self.network != 0))
            .str("r")
            .map(fields);
        w.str("id").bin(&self.id.0);
        body(&mut w);
        self.trailer(&mut w, tid, "r");
        w.buf
    }

    /// `values` inline when small (`packValueHeader`), else their sizes, the values
    /// following as parts.
    fn values(&self, w: &mut Writer, tid: Tid, values: &[&[u8]]) -> Vec<Vec<u8>> {
        let total: usize = values.iter().map(|v| v.len()).sum();
        w.str("values").array(values.len());
        if values.len() < MAX_VALUES_INLINE && total < MAX_PACKET_VALUE_SIZE {
            for v in values {
                w.raw(v);
            }
            return Vec::new();
        }
        for v in values {
            w.uint(v.len() as u64);
        }
        self.value_parts(tid, values)
    }

    /// The value-part messages carrying `values` (`sendValueParts`): `MTU`-byte chunks.
    pub fn value_parts(&self, tid: Tid, values: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut parts = Vec::new();
        for (index, v) in values.iter().enumerate() {
            let mut start = 0;
            loop {
                let end = (start + MTU).min(v.len());
                let mut w = Writer::new();
                w.map(3 + usize::from(self.network != 0));
                if self.network != 0 {
                    w.str("n").uint(u64::from(self.network));
                }
                w.str("y").str("v").str("t").uint(u64::from(tid));
                w.str("p").map(1).uint(index as u64).map(2);
                w.str("o").uint(start as u64).str("d").bin(&v[start..end]);
                parts.push(w.buf);
                start = end;
                if start >= v.len() {
                    break;
                }
            }
        }
        parts
    }

    /// `ping`.
    pub fn ping(&self, tid: Tid) -> Vec<u8> {
        self.request(tid, "ping", |w| {
            w.map(1).str("id").bin(&self.id.0);
        })
    }

    /// `w`, left out when no family is named (the requester's own, to OpenDHT).
    fn want(w: &mut Writer, want: Want) {
        if want == Want::default() {
            return;
        }
        let n = usize::from(want.v4) + usize::from(want.v6);
        w.str("w").array(n);
        if want.v4 {
            w.uint(AF_INET);
        }
        if want.v6 {
            w.uint(AF_INET6);
        }
    }

    /// `find` of the nodes closest to `target`.
    pub fn find(&self, tid: Tid, target: InfoHash, want: Want) -> Vec<u8> {
        self.request(tid, "find", |w| {
            w.map(3)
                .str("id")
                .bin(&self.id.0)
                .str("target")
                .bin(&target.0);
            Self::want(w, want);
        })
    }

    /// `get` of the values under `key`.
    pub fn get(&self, tid: Tid, key: InfoHash, want: Want) -> Vec<u8> {
        self.request(tid, "get", |w| {
            w.map(2 + usize::from(want != Want::default()));
            w.str("id").bin(&self.id.0).str("h").bin(&key.0);
            Self::want(w, want);
        })
    }

    /// `put` of `value` under `key`, with the token the node gave us.
    pub fn put(&self, tid: Tid, key: InfoHash, value: &Value, token: &[u8]) -> Packets {
        let mut parts = Vec::new();
        let message = self.request(tid, "put", |w| {
            w.map(4).str("id").bin(&self.id.0).str("h").bin(&key.0);
            parts = self.values(w, tid, &[&value.packed]);
            w.str("token").bin(token);
        });
        Packets { message, parts }
    }

    /// `listen` for values under `key`, pushed to us under `socket_id`.
    pub fn listen(&self, tid: Tid, key: InfoHash, token: &[u8], socket_id: Tid) -> Vec<u8> {
        self.request(tid, "listen", |w| {
            w.map(4).str("id").bin(&self.id.0).str("h").bin(&key.0);
            w.str("token")
                .bin(token)
                .str("sid")
                .uint(u64::from(socket_id));
        })
    }

    /// `refresh` of our value `vid` under `key`.
    pub fn refresh(&self, tid: Tid, key: InfoHash, vid: u64, token: &[u8]) -> Vec<u8> {
        self.request(tid, "refresh", |w| {
            w.map(4).str("id").bin(&self.id.0).str("h").bin(&key.0);
            w.str("vid").uint(vid).str("token").bin(token);
        })
    }

    /// The answer to a ping or a listen (`sendPong`, `sendListenConfirmation`).
    pub fn pong(&self, tid: Tid, to: SocketAddr) -> Vec<u8> {
        self.reply(tid, 2, |w| {
            w.str("sa").bin(&addr_bytes(to.ip()));
        })
    }

    /// The answer to a find or a get, and values pushed to a listener
    /// (`sendNodesValues`).
    pub fn nodes_values(&self, reply: NodesValues<'_>) -> Packets {
        let NodesValues {
            tid,
            to,
            nodes4,
            nodes6,
            token,
            values,
        } = reply;
        let fields = 2
            + usize::from(!nodes4.is_empty())
            + usize::from(!nodes6.is_empty())
            + usize::from(!token.is_empty())
            + usize::from(!values.is_empty());
        let mut parts = Vec::new();
        let message = self.reply(tid, fields, |w| {
            w.str("sa").bin(&addr_bytes(to.ip()));
            if !nodes4.is_empty() {
                w.str("n4").bin(&pack_nodes(nodes4));
            }
            if !nodes6.is_empty() {
                w.str("n6").bin(&pack_nodes(nodes6));
            }
            if !token.is_empty() {
                w.str("token").bin(token);
            }
            if !values.is_empty() {
                parts = self.values(w, tid, values);
            }
        });
        Packets { message, parts }
    }

    /// The answer to a put or a refresh (`sendValueAnnounced`).
    pub fn value_announced(&self, tid: Tid, vid: u64, to: SocketAddr) -> Vec<u8> {
        self.reply(tid, 3, |w| {
            w.str("vid").uint(vid).str("sa").bin(&addr_bytes(to.ip()));
        })
    }

    /// A listen's update (`tellListenerRefreshed`, `tellListenerExpired`): the ids of
    /// values refreshed (`field` "re") or expired ("exp"), to the listen's socket id.
    pub fn update(&self, sid: Tid, token: &[u8], field: &str, ids: &[u64]) -> Vec<u8> {
        let mut w = Writer::new();
        w.map(4 + usize::from(self.network != 0)).str("u");
        w.map(1 + usize::from(!ids.is_empty()) + usize::from(!token.is_empty()));
        w.str("id").bin(&self.id.0);
        if !token.is_empty() {
            w.str("token").bin(token);
        }
        if !ids.is_empty() {
            w.str(field).array(ids.len());
            for id in ids {
                w.uint(*id);
            }
        }
        self.trailer(&mut w, sid, "r");
        w.buf
    }

    /// An error answering the request `tid` (`sendError`, with our id).
    pub fn error(&self, tid: Tid, code: u16, text: &str) -> Vec<u8> {
        let mut w = Writer::new();
        w.map(5 + usize::from(self.network != 0)).str("e").array(2);
        w.uint(u64::from(code)).str(text);
        w.str("r").map(1).str("id").bin(&self.id.0);
        self.trailer(&mut w, tid, "e");
        w.buf
    }
}

/// What a find or get reply carries (see [`Encoder::nodes_values`]).
#[derive(Debug, Clone, Copy)]
pub struct NodesValues<'a> {
    /// The request's transaction id (or a listen's socket id).
    pub tid: Tid,
    /// The requester, whose address we report back (`sa`).
    pub to: SocketAddr,
    /// Closest IPv4 nodes.
    pub nodes4: &'a [NodeInfo],
    /// Closest IPv6 nodes.
    pub nodes6: &'a [NodeInfo],
    /// A write token for the requester.
    pub token: &'a [u8],
    /// Packed values.
    pub values: &'a [&'a [u8]],
}
