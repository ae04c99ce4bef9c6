//! OpenDHT's messages: decoding every one `dhtnode` 2.4.12 sends, encoding ours.
//!
//! A message is one msgpack map per UDP datagram. Requests are `{"a": args, "q": name,
//! "t": tid, "y": "q", "v": "RNG1"}`, replies `{"r": …, "t", "y": "r", "v"}`, errors
//! `{"e": [code, text], "t", "y": "e", "v"}`, listen updates `{"u": …}` and value parts
//! `{"y": "v", "t", "p": {index: {"o": offset, "d": bytes}}}`; `"n"` (the network id)
//! follows when it is not 0. The decoder follows `ParsedMessage::msgpack_unpack`
//! (`parsed_message.h`): the same precedence of `e`, `r`, `p`, `u`, `q`, the same fields,
//! each type-checked; a message of an unknown kind is [`MessageError::Unknown`], which
//! callers count and ignore, as OpenDHT does. Encoding is [`Encoder`]'s. The byte layouts
//! are in PROTOCOL.md §13.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::InfoHash;
use super::constants::{
    AF_INET, AF_INET6, MAX_VALUE_HEADER_SIZE, NODE4_INFO_BUF_LEN, NODE6_INFO_BUF_LEN,
};
use super::msgpack::{self, DecodeError, Object};
use super::value::Value;

/// A transaction id (`Tid`): a request's, echoed in its reply; a listen's socket id.
pub type Tid = u32;

/// The kind of a message (`MessageType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `"e"`: an error answering one of our requests.
    Error,
    /// `"r"`: a reply to one of our requests (or values pushed to a listen's socket id).
    Reply,
    /// `"p"`: one part of values announced by a reply or a put.
    ValueData,
    /// `"u"`: a listen's values refreshed or expired.
    ValueUpdate,
    /// `"ping"`.
    Ping,
    /// `"find"`: the nodes closest to `target`.
    FindNode,
    /// `"get"`: values under `h`, and the closest nodes.
    GetValues,
    /// `"listen"`: push new values under `h` to the socket id `sid`.
    Listen,
    /// `"put"`: store values under `h` (needs a token from a `get` or `find`).
    AnnounceValue,
    /// `"refresh"`: keep the value `vid` under `h` for another expiry.
    Refresh,
}

/// Which address families a request wants nodes of (`w`; absent: the requester's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Want {
    /// IPv4 nodes (`AF_INET`).
    pub v4: bool,
    /// IPv6 nodes (`AF_INET6`).
    pub v6: bool,
}

/// A node as replies list it in `n4` / `n6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeInfo {
    /// Its id.
    pub id: InfoHash,
    /// Its UDP address.
    pub addr: SocketAddr,
}

/// One decoded message; fields a kind does not carry stay empty (`ParsedMessage`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    /// What it is (`None` only inside [`Message::default`]).
    pub kind: Option<Kind>,
    /// `t`.
    pub tid: Tid,
    /// `n`: 0 when absent.
    pub network: u32,
    /// `v`: the sender's user agent.
    pub ua: Option<String>,
    /// `s`: the sender says it is a client (stores nothing).
    pub is_client: bool,
    /// `id`: the sender's node id.
    pub id: Option<InfoHash>,
    /// `h`: the key of a get, put, listen or refresh.
    pub info_hash: Option<InfoHash>,
    /// `target`: the id a find looks for.
    pub target: Option<InfoHash>,
    /// `sid`: a listen's socket id.
    pub socket_id: Option<Tid>,
    /// `token`: a write token.
    pub token: Vec<u8>,
    /// `vid`: the value a put reply confirms or a refresh names.
    pub value_id: Option<u64>,
    /// `c`: when a put's value was created (seconds since 1970).
    pub created: Option<i64>,
    /// `n4`.
    pub nodes4: Vec<NodeInfo>,
    /// `n6`.
    pub nodes6: Vec<NodeInfo>,
    /// `values` carried whole.
    pub values: Vec<Value>,
    /// Values of `values` sent as parts: (index, packed size).
    pub value_headers: Vec<(u32, usize)>,
    /// `p` of a value-part message: (index, offset, bytes).
    pub parts: Vec<(u32, usize, Vec<u8>)>,
    /// Elements of `values` that were not values (counted, skipped as OpenDHT does).
    pub bad_values: usize,
    /// `re`: value ids a listened node refreshed.
    pub refreshed: Vec<u64>,
    /// `exp`: value ids a listened node expired.
    pub expired: Vec<u64>,
    /// `w`.
    pub want: Option<Want>,
    /// `e[0]`.
    pub error_code: Option<u16>,
    /// `sa`: our address as the sender sees it (no port).
    pub reported_addr: Option<IpAddr>,
}

/// Why a datagram is not a message we act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Not one msgpack object.
    #[error("{0}")]
    Msgpack(#[from] DecodeError),
    /// A field of the wrong type or length.
    #[error("bad field {0}")]
    Field(&'static str),
    /// A message of a kind OpenDHT 2.4.12 does not send (ignored).
    #[error("unknown message kind")]
    Unknown,
}

fn tid(o: &Object<'_>, field: &'static str) -> Result<Tid, MessageError> {
    // `unpackTid`: an integer, or (before 2.0) four bytes in network order.
    match o {
        Object::UInt(v) => u32::try_from(*v).map_err(|_| MessageError::Field(field)),
        Object::Bin(b) | Object::Str(b) if b.len() == 4 => {
            Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }
        _ => Err(MessageError::Field(field)),
    }
}

fn hash(o: &Object<'_>, field: &'static str) -> Result<InfoHash, MessageError> {
    match o {
        Object::Bin(b) => InfoHash::from_slice(b).ok_or(MessageError::Field(field)),
        _ => Err(MessageError::Field(field)),
    }
}

fn ids(o: &Object<'_>, field: &'static str) -> Result<Vec<u64>, MessageError> {
    match o {
        Object::Array(items) => items
            .iter()
            .map(|i| i.as_u64().ok_or(MessageError::Field(field)))
            .collect(),
        _ => Err(MessageError::Field(field)),
    }
}

fn nodes(raw: &[u8], len: usize) -> Result<Vec<NodeInfo>, MessageError> {
    if raw.len() % len != 0 {
        return Err(MessageError::Field("n4/n6"));
    }
    Ok(raw
        .chunks_exact(len)
        .map(|c| {
            let (id, rest) = c.split_at(20);
            let (ip, port) = rest.split_at(rest.len() - 2);
            let ip = match <[u8; 4]>::try_from(ip) {
                Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
                Err(_) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).unwrap_or([0; 16]))),
            };
            NodeInfo {
                id: InfoHash::from_slice(id).unwrap_or_default(),
                addr: SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]])),
            }
        })
        .collect())
}

impl Message {
    /// Decodes one datagram.
    pub fn decode(buf: &[u8]) -> Result<Message, MessageError> {
        let o = msgpack::decode(buf)?;
        if !matches!(o, Object::Map(_)) {
            return Err(MessageError::Field("message"));
        }
        let mut m = Message::default();
        if let Some(t) = o.get("t") {
            m.tid = tid(t, "t")?;
        }
        if let Some(v) = o.get("v") {
            m.ua = Some(v.as_str().ok_or(MessageError::Field("v"))?.to_owned());
        }
        if let Some(n) = o.get("n") {
            let n = n.as_u64().and_then(|n| u32::try_from(n).ok());
            m.network = n.ok_or(MessageError::Field("n"))?;
        }
        if let Some(s) = o.get("s") {
            m.is_client = matches!(s, Object::Bool(true));
        }
        let (e, r, p, u) = (o.get("e"), o.get("r"), o.get("p"), o.get("u"));
        let kind = if e.is_some() {
            Kind::Error
        } else if r.is_some() {
            Kind::Reply
        } else if p.is_some() {
            Kind::ValueData
        } else if u.is_some() {
            Kind::ValueUpdate
        } else {
            if o.get("y").is_some_and(|y| y.as_str() != Some("q")) {
                return Err(MessageError::Unknown);
            }
            match o
                .get("q")
                .map(|q| q.as_str().ok_or(MessageError::Field("q")))
            {
                Some(Ok("ping")) => Kind::Ping,
                Some(Ok("find")) => Kind::FindNode,
                Some(Ok("get")) => Kind::GetValues,
                Some(Ok("listen")) => Kind::Listen,
                Some(Ok("put")) => Kind::AnnounceValue,
                Some(Ok("refresh")) => Kind::Refresh,
                Some(Err(e)) => return Err(e),
                _ => return Err(MessageError::Unknown),
            }
        };
        m.kind = Some(kind);
        if let Some(p) = p.filter(|_| kind == Kind::ValueData) {
            let Object::Map(entries) = p else {
                return Err(MessageError::Field("p"));
            };
            for (index, part) in entries {
                let index = index.as_u64().and_then(|i| u32::try_from(i).ok());
                let offset = part.get("o").and_then(Object::as_u64);
                let data = part.get("d").and_then(Object::as_blob);
                // `msgpack_unpack` skips a part without `o` or `d`.
                if let (Some(index), Some(offset), Some(data)) = (index, offset, data) {
                    let offset = usize::try_from(offset).map_err(|_| MessageError::Field("o"))?;
                    m.parts.push((index, offset, data.to_vec()));
                }
            }
            return Ok(m);
        }
        let body = o
            .get("a")
            .or(r)
            .or(u)
            .or(e)
            .ok_or(MessageError::Field("a"))?;
        if let Some(e) = e {
            let code = match e {
                Object::Array(items) => items.first().and_then(Object::as_u64),
                _ => None,
            };
            let code = code.and_then(|c| u16::try_from(c).ok());
            m.error_code = Some(code.ok_or(MessageError::Field("e"))?);
        }
        m.read_body(body)?;
        Ok(m)
    }

    fn read_body(&mut self, req: &Object<'_>) -> Result<(), MessageError> {
        if let Some(t) = req.get("sid") {
            self.socket_id = Some(tid(t, "sid")?);
        }
        if let Some(id) = req.get("id") {
            self.id = Some(hash(id, "id")?);
        }
        if let Some(h) = req.get("h") {
            self.info_hash = Some(hash(h, "h")?);
        }
        if let Some(t) = req.get("target") {
            self.target = Some(hash(t, "target")?);
        }
        if let Some(token) = req.get("token") {
            self.token = token
                .as_blob()
                .ok_or(MessageError::Field("token"))?
                .to_vec();
        }
        if let Some(vid) = req.get("vid") {
            self.value_id = Some(vid.as_u64().ok_or(MessageError::Field("vid"))?);
        }
        for (key, len) in [("n4", NODE4_INFO_BUF_LEN), ("n6", NODE6_INFO_BUF_LEN)] {
            if let Some(raw) = req.get(key) {
                let raw = raw.as_blob().ok_or(MessageError::Field("n4/n6"))?;
                let list = nodes(raw, len)?;
                if key == "n4" {
                    self.nodes4 = list;
                } else {
                    self.nodes6 = list;
                }
            }
        }
        if let Some(sa) = req.get("sa") {
            let Object::Bin(b) = sa else {
                return Err(MessageError::Field("sa"));
            };
            self.reported_addr = match b.len() {
                4 => <[u8; 4]>::try_from(*b).ok().map(|a| IpAddr::V4(a.into())),
                16 => <[u8; 16]>::try_from(*b).ok().map(|a| IpAddr::V6(a.into())),
                _ => None,
            };
        }
        if let Some(c) = req.get("c") {
            self.created = Some(match c {
                Object::UInt(v) => i64::try_from(*v).map_err(|_| MessageError::Field("c"))?,
                Object::Int(v) => *v,
                _ => return Err(MessageError::Field("c")),
            });
        }
        if let Some(values) = req.get("values") {
            let Object::Array(items) = values else {
                return Err(MessageError::Field("values"));
            };
            for (i, item) in items.iter().enumerate() {
                match item {
                    Object::UInt(size) => {
                        // Skip oversize values, as `msgpack_unpack` does.
                        if let Ok(size) = usize::try_from(*size) {
                            if size <= MAX_VALUE_HEADER_SIZE {
                                self.value_headers.push((i as u32, size));
                            }
                        }
                    }
                    _ => match Value::from_object(item) {
                        Ok(v) => self.values.push(v),
                        Err(_) => self.bad_values += 1,
                    },
                }
            }
        } else if let Some(exp) = req.get("exp") {
            self.expired = ids(exp, "exp")?;
        } else if let Some(re) = req.get("re") {
            self.refreshed = ids(re, "re")?;
        }
        if let Some(w) = req.get("w") {
            let Object::Array(families) = w else {
                return Err(MessageError::Field("w"));
            };
            let mut want = Want::default();
            for f in families {
                match f.as_u64() {
                    Some(AF_INET) => want.v4 = true,
                    Some(AF_INET6) => want.v6 = true,
                    _ => {}
                }
            }
            self.want = Some(want);
        }
        Ok(())
    }
}

pub use super::encoder::{Encoder, NodesValues, Packets, pack_nodes};
