//! The Kademlia routing table: who we know, by distance, for IPv4 and IPv6 apart.
//!
//! One table per address family, as OpenDHT keeps `buckets4` and `buckets6`. A node goes
//! into the bucket of the bits its id shares with ours (bucket `i` holds ids sharing
//! exactly `i` leading bits), each bucket at most `BUCKET_SIZE` nodes. A node is *good*
//! when it answered within `NODE_GOOD_TIME` and was heard from within `NODE_EXPIRE_TIME`,
//! *bad* (expired) after `MAX_AUTH_ERRORS` requests it left unanswered, *dubious* between
//! (`Node::isGood`, `Node::isExpired` in `node.cpp`). A full bucket takes a newcomer only
//! in place of a bad node; otherwise its most dubious node is pinged and the newcomer is
//! dropped (counted), which keeps long-lived nodes as Kademlia prefers them.

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::time::Instant;

use super::InfoHash;
use super::constants::{BUCKET_SIZE, MAX_AUTH_ERRORS, NODE_EXPIRE_TIME, NODE_GOOD_TIME};
use super::message::NodeInfo;

/// One known node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its id.
    pub id: InfoHash,
    /// Its address.
    pub addr: SocketAddr,
    /// When we last heard anything from it.
    pub time: Instant,
    /// When it last answered one of our requests.
    pub reply_time: Option<Instant>,
    /// Our requests it left unanswered since its last answer.
    pub auth_errors: u32,
}

/// How much we trust a node now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Answered lately.
    Good,
    /// Neither good nor bad: worth a ping.
    Dubious,
    /// Left `MAX_AUTH_ERRORS` requests unanswered.
    Bad,
}

impl Entry {
    /// Its health at `now`.
    pub fn health(&self, now: Instant) -> Health {
        if self.auth_errors >= MAX_AUTH_ERRORS {
            return Health::Bad;
        }
        let answered = self.reply_time.is_some_and(|t| now < t + NODE_GOOD_TIME);
        if answered && now < self.time + NODE_EXPIRE_TIME {
            Health::Good
        } else {
            Health::Dubious
        }
    }
}

/// What inserting a node did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insert {
    /// Known already: its times were updated.
    Updated,
    /// Added to a bucket with room, or in place of a bad node.
    Added,
    /// Its bucket is full of good and dubious nodes: dropped; the node to ping, if any
    /// (the one of the bucket heard from least lately that is not good).
    Full(Option<SocketAddr>),
    /// Our own id, or an id of the other address family's table.
    Refused,
}

/// The routing table of one address family.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    own: InfoHash,
    /// Bucket index (shared leading bits) → its nodes, most recently heard last.
    buckets: BTreeMap<usize, Vec<Entry>>,
}

impl RoutingTable {
    /// An empty table around our id.
    pub fn new(own: InfoHash) -> RoutingTable {
        RoutingTable {
            own,
            buckets: BTreeMap::new(),
        }
    }

    /// Nodes known.
    pub fn len(&self) -> usize {
        self.buckets.values().map(Vec::len).sum()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Good nodes at `now`.
    pub fn good(&self, now: Instant) -> usize {
        self.entries()
            .filter(|e| e.health(now) == Health::Good)
            .count()
    }

    /// Every node, bucket by bucket.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.values().flatten()
    }

    /// We heard from `id` at `addr` (`replied`: it answered one of our requests).
    pub fn heard(&mut self, now: Instant, id: InfoHash, addr: SocketAddr, replied: bool) -> Insert {
        if id == self.own || id.is_zero() {
            return Insert::Refused;
        }
        let bucket = self.buckets.entry(self.own.common_bits(&id)).or_default();
        if let Some(e) = bucket.iter_mut().find(|e| e.id == id) {
            e.time = now;
            e.addr = addr;
            if replied {
                e.reply_time = Some(now);
                e.auth_errors = 0;
            }
            return Insert::Updated;
        }
        let fresh = Entry {
            id,
            addr,
            time: now,
            reply_time: replied.then_some(now),
            auth_errors: 0,
        };
        if bucket.len() < BUCKET_SIZE {
            bucket.push(fresh);
            return Insert::Added;
        }
        if let Some(bad) = bucket.iter().position(|e| e.health(now) == Health::Bad) {
            bucket[bad] = fresh;
            return Insert::Added;
        }
        let ping = bucket
            .iter()
            .filter(|e| e.health(now) == Health::Dubious)
            .min_by_key(|e| e.time)
            .map(|e| e.addr);
        Insert::Full(ping)
    }

    /// A request to `id` went unanswered.
    pub fn unanswered(&mut self, id: InfoHash) {
        if let Some(e) = self
            .buckets
            .get_mut(&self.own.common_bits(&id))
            .and_then(|b| b.iter_mut().find(|e| e.id == id))
        {
            e.auth_errors += 1;
        }
    }

    /// The `count` nodes closest to `target` that are not bad, closest first.
    pub fn closest(&self, now: Instant, target: &InfoHash, count: usize) -> Vec<NodeInfo> {
        let mut all: Vec<&Entry> = self
            .entries()
            .filter(|e| e.health(now) != Health::Bad)
            .collect();
        all.sort_by_key(|e| e.id.xor(target));
        all.into_iter()
            .take(count)
            .map(|e| NodeInfo {
                id: e.id,
                addr: e.addr,
            })
            .collect()
    }

    /// Dubious nodes to ping now (not heard from for `NODE_EXPIRE_TIME`), and bad ones
    /// forgotten.
    pub fn maintain(&mut self, now: Instant) -> Vec<NodeInfo> {
        for bucket in self.buckets.values_mut() {
            bucket.retain(|e| e.health(now) != Health::Bad);
        }
        self.buckets.retain(|_, b| !b.is_empty());
        self.entries()
            .filter(|e| now >= e.time + NODE_EXPIRE_TIME)
            .map(|e| NodeInfo {
                id: e.id,
                addr: e.addr,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(first: u8, last: u8) -> InfoHash {
        let mut h = [0u8; 20];
        h[0] = first;
        h[19] = last;
        InfoHash(h)
    }

    fn addr(n: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, n], 4222))
    }

    #[test]
    fn a_full_bucket_takes_a_newcomer_only_in_place_of_a_bad_node() {
        let now = Instant::now();
        let mut t = RoutingTable::new(id(0, 0));
        for n in 0..BUCKET_SIZE as u8 {
            assert_eq!(t.heard(now, id(0x80, n), addr(n), true), Insert::Added);
        }
        assert_eq!(
            t.heard(now, id(0x80, 99), addr(99), true),
            Insert::Full(None)
        );
        for _ in 0..MAX_AUTH_ERRORS {
            t.unanswered(id(0x80, 3));
        }
        assert_eq!(t.heard(now, id(0x80, 99), addr(99), true), Insert::Added);
        assert_eq!(t.len(), BUCKET_SIZE);
        assert_eq!(t.heard(now, id(0, 0), addr(1), true), Insert::Refused);
    }

    #[test]
    fn nodes_age_from_good_to_dubious_and_get_pinged() {
        let now = Instant::now();
        let mut t = RoutingTable::new(id(0, 0));
        t.heard(now, id(0x40, 1), addr(1), true);
        t.heard(now, id(0x40, 2), addr(2), false);
        assert_eq!(t.good(now), 1);
        let later = now + NODE_EXPIRE_TIME + Duration::from_secs(1);
        assert_eq!(t.good(later), 0);
        assert_eq!(t.maintain(later).len(), 2);
    }

    #[test]
    fn closest_orders_by_xor_distance() {
        let now = Instant::now();
        let mut t = RoutingTable::new(id(0, 0));
        for n in 1..=20u8 {
            t.heard(now, id(n, n), addr(n), true);
        }
        let near = t.closest(now, &id(7, 7), 3);
        assert_eq!(near[0].id, id(7, 7));
        assert_eq!(near.len(), 3);
        assert!(near[1].id.xor(&id(7, 7)) <= near[2].id.xor(&id(7, 7)));
    }
}
