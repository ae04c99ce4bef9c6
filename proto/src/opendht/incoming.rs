//! What others ask of our node: pings, finds and gets answered to anyone; puts, listens
//! and refreshes only with a write token we gave the same address.
//!
//! A token is the first `TOKEN_SIZE` bytes of SHA-256 over a secret and the requester's
//! address (OpenDHT's `makeToken` hashes a secret and the address too); the secret rotates
//! every `TOKEN_ROTATION` and a token of the previous one still counts (`tokenMatch`).
//! Requests are rate-limited per address and in all before any work; a put that fails
//! our storage limits is confirmed anyway, as OpenDHT does ("we lie to the requestor …
//! to prevent them from backtracking, and hence polluting the DHT"), and counted.

use core::net::{IpAddr, SocketAddr};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sha2::Digest;

use super::InfoHash;
use super::constants::{
    ERROR_NOT_FOUND, ERROR_UNAUTHORIZED, MAX_PEER_REQUESTS_PER_SEC, MAX_REQUESTS_PER_SEC,
    TARGET_NODES, TOKEN_SIZE,
};
use super::message::{Kind, Message, NodeInfo, NodesValues, Want};
use super::node::{Datagram, Node};

/// Requests answered per one-second window, per address and in all.
// SECURITY: row 140
#[derive(Debug, Clone, Default)]
pub(super) struct RateLimiter {
    window: Option<Instant>,
    total: usize,
    per_address: BTreeMap<IpAddr, usize>,
}

impl RateLimiter {
    /// Whether a request from `ip` at `now` may be answered (and counts it).
    pub(super) fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self
            .window
            .is_none_or(|w| now >= w + Duration::from_secs(1))
        {
            self.window = Some(now);
            self.total = 0;
            self.per_address.clear();
        }
        if self.total >= MAX_REQUESTS_PER_SEC {
            return false;
        }
        let used = self.per_address.entry(ip).or_default();
        if *used >= MAX_PEER_REQUESTS_PER_SEC {
            return false;
        }
        *used += 1;
        self.total += 1;
        true
    }
}

impl Node {
    fn token(secret: &[u8; 8], addr: &SocketAddr) -> Vec<u8> {
        let mut h = sha2::Sha256::new();
        h.update(secret);
        h.update(Node::ip_bytes(addr));
        h.update(addr.port().to_be_bytes());
        h.finalize()[..TOKEN_SIZE].to_vec()
    }

    // SECURITY: row 141
    fn token_matches(&self, token: &[u8], addr: &SocketAddr) -> bool {
        token == Node::token(&self.secret, addr) || token == Node::token(&self.old_secret, addr)
    }

    fn reply(&mut self, to: SocketAddr, data: Vec<u8>) {
        self.out.push_back(Datagram { addr: to, data });
    }

    /// The nodes a find or get answer lists: of the families asked (absent: the
    /// requester's own, as `bufferNodes` does).
    fn answer_nodes(
        &self,
        now: Instant,
        target: &InfoHash,
        want: Option<Want>,
        from: &SocketAddr,
    ) -> (Vec<NodeInfo>, Vec<NodeInfo>) {
        let want = want.unwrap_or(Want {
            v4: from.is_ipv4(),
            v6: from.is_ipv6(),
        });
        let pick = |on: bool, ipv6: bool| {
            if on {
                self.table(ipv6).closest(now, target, TARGET_NODES)
            } else {
                Vec::new()
            }
        };
        (pick(want.v4, false), pick(want.v6, true))
    }

    pub(super) fn on_request(&mut self, now: Instant, from: SocketAddr, m: Message) {
        if !self.limiter.allow(now, from.ip()) {
            self.dropped.rate_limited += 1;
            return;
        }
        let Some(sender) = m.id else { return };
        self.reach.request_from(from);
        self.heard(now, sender, from, false);
        let tid = m.tid;
        match m.kind {
            Some(Kind::Ping) => {
                let pong = self.enc.pong(tid, from);
                self.reply(from, pong);
            }
            Some(Kind::FindNode | Kind::GetValues) => {
                let find = m.kind == Some(Kind::FindNode);
                let Some(target) = (if find { m.target } else { m.info_hash }) else {
                    let e = self.enc.error(
                        tid,
                        super::constants::ERROR_NON_AUTHORITATIVE,
                        "Get_values with no info_hash",
                    );
                    self.reply(from, e);
                    return;
                };
                let (n4, n6) = self.answer_nodes(now, &target, m.want, &from);
                let token = Node::token(&self.secret, &from);
                let stored: Vec<Vec<u8>> = if find {
                    Vec::new()
                } else {
                    self.storage
                        .get(&target)
                        .into_iter()
                        .map(|v| v.packed.clone())
                        .collect()
                };
                let values: Vec<&[u8]> = stored.iter().map(Vec::as_slice).collect();
                let packets = self.enc.nodes_values(NodesValues {
                    tid,
                    to: from,
                    nodes4: &n4,
                    nodes6: &n6,
                    token: &token,
                    values: &values,
                });
                self.reply(from, packets.message);
                for p in packets.parts {
                    self.reply(from, p);
                }
            }
            Some(Kind::AnnounceValue) => {
                let Some(key) = m.info_hash else { return };
                if !self.token_matches(&m.token, &from) {
                    self.dropped.bad_token += 1;
                    let e = self
                        .enc
                        .error(tid, ERROR_UNAUTHORIZED, "Put with wrong token");
                    self.reply(from, e);
                    return;
                }
                for v in m.values {
                    let vid = v.id;
                    match self.storage.store(now, key, v.clone(), from.ip()) {
                        Ok(true) => self.tell_listeners(key, &v),
                        Ok(false) => {}
                        Err(_) => self.dropped.store_refused += 1,
                    }
                    let ok = self.enc.value_announced(tid, vid, from);
                    self.reply(from, ok);
                }
            }
            Some(Kind::Listen) => {
                let (Some(key), Some(sid)) = (m.info_hash, m.socket_id) else {
                    return;
                };
                if !self.token_matches(&m.token, &from) {
                    self.dropped.bad_token += 1;
                    let e = self
                        .enc
                        .error(tid, ERROR_UNAUTHORIZED, "Listen with wrong token");
                    self.reply(from, e);
                    return;
                }
                if !self.storage.listen(now, key, from, sid) {
                    self.dropped.store_refused += 1;
                    return;
                }
                // What is there already goes to the new listener first, as `dhtnode` does.
                let stored: Vec<Vec<u8>> = self
                    .storage
                    .get(&key)
                    .into_iter()
                    .map(|v| v.packed.clone())
                    .collect();
                if !stored.is_empty() {
                    self.push(from, sid, &stored);
                }
                let ok = self.enc.pong(tid, from);
                self.reply(from, ok);
            }
            Some(Kind::Refresh) => {
                let (Some(key), Some(vid)) = (m.info_hash, m.value_id) else {
                    return;
                };
                if !self.token_matches(&m.token, &from) {
                    self.dropped.bad_token += 1;
                    let e = self
                        .enc
                        .error(tid, ERROR_UNAUTHORIZED, "Refresh with wrong token");
                    self.reply(from, e);
                    return;
                }
                let answer = if self.storage.refresh(now, &key, vid) {
                    self.tell_listeners_update(key, "re", vid);
                    self.enc.value_announced(tid, vid, from)
                } else {
                    self.enc.error(tid, ERROR_NOT_FOUND, "Storage not found")
                };
                self.reply(from, answer);
            }
            _ => {}
        }
    }

    fn push(&mut self, to: SocketAddr, sid: u32, packed: &[Vec<u8>]) {
        let values: Vec<&[u8]> = packed.iter().map(Vec::as_slice).collect();
        let token = Node::token(&self.secret, &to);
        let packets = self.enc.nodes_values(NodesValues {
            tid: sid,
            to,
            nodes4: &[],
            nodes6: &[],
            token: &token,
            values: &values,
        });
        self.reply(to, packets.message);
        for p in packets.parts {
            self.reply(to, p);
        }
    }

    /// Tells `key`'s listeners that a value was refreshed (`re`) or expired (`exp`), as
    /// `tellListenerRefreshed` / `tellListenerExpired` do.
    pub(super) fn tell_listeners_update(&mut self, key: InfoHash, field: &str, vid: u64) {
        for (who, sid) in self.storage.listeners(&key) {
            let token = Node::token(&self.secret, &who);
            let u = self.enc.update(sid, &token, field, &[vid]);
            self.reply(who, u);
        }
    }

    fn tell_listeners(&mut self, key: InfoHash, value: &super::value::Value) {
        for (who, sid) in self.storage.listeners(&key) {
            self.push(who, sid, std::slice::from_ref(&value.packed));
        }
    }
}
