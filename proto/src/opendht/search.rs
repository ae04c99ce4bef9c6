//! One of our own searches: the nodes closest to a key, found iteratively, then what we
//! came for (values, a put, a listen).
//!
//! As OpenDHT's `Dht::Search`, a search keeps the `SEARCH_NODES` closest nodes heard of,
//! closest first, asks `get` of up to `MAX_REQUESTED_SEARCH_NODES` of them at once (each
//! reply brings closer nodes, a token and values), and is *synced* when the
//! `TARGET_NODES` closest that did not fail have all answered. A get is then done; a put
//! sends the value with each node's token to those nodes; a listen registers with the
//! `LISTEN_NODES` closest. This module keeps the state and decides the next requests;
//! the node ([`super::node`]) sends them and feeds the answers back.
//!
//! Keeping things alive is done as 2.4.12's `searchSendAnnounceValue` and
//! `searchSynchedNodeListen` do: a node whose `get` reply of this round carried our value
//! unchanged gets a `refresh` of the value's id, not the whole value again (OpenDHT asks a
//! probe query for the id and `seq`; we read the whole reply). A confirmation of an earlier
//! round is not enough: `dhtnode` 2.4.12 confirms a refresh of any id under a key it
//! stores, even one it lost; a listen is renewed by sending `listen` again, with the same
//! socket id, to the nodes that confirmed it, without a new lookup (a full lookup runs
//! only every `NODE_EXPIRE_TIME`, when OpenDHT's search nodes stop being synced).

use std::collections::BTreeMap;
use std::time::Instant;

use super::InfoHash;
use super::constants::{LISTEN_NODES, MAX_REQUESTED_SEARCH_NODES, SEARCH_NODES, TARGET_NODES};
use super::message::NodeInfo;
use super::value::Value;

/// Names one of our searches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SearchId(pub u64);

/// What a search is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The values under the key.
    Get,
    /// Storing a value under the key (re-announced before it expires).
    Put(Value),
    /// New values under the key, pushed to us (the listen renewed before it expires).
    Listen,
}

/// Where one node of a search stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Heard of; not asked yet.
    Candidate,
    /// A `get` is in flight.
    Asked,
    /// Answered the `get` (its token is kept).
    Replied,
    /// Did not answer.
    Failed,
}

/// A node of a search.
#[derive(Debug, Clone)]
pub struct SearchNode {
    /// Who.
    pub info: NodeInfo,
    /// How far we got with it.
    pub state: NodeState,
    /// The write token its reply carried.
    pub token: Vec<u8>,
    /// Whether our put or listen went to it in this round, and whether it confirmed.
    pub sent: bool,
    /// It confirmed our put or listen.
    pub acked: bool,
    /// Its `get` reply of this round carried our value unchanged: a `refresh` keeps it, the
    /// value need not travel again.
    pub holds: bool,
}

/// What goes to one node once a search is synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The node.
    pub info: NodeInfo,
    /// The write token its `get` reply gave.
    pub token: Vec<u8>,
    /// A `refresh` of our value's id rather than a `put` of the value.
    pub refresh: bool,
}

/// One search.
#[derive(Debug, Clone)]
pub struct Search {
    /// Its name.
    pub id: SearchId,
    /// The key.
    pub key: InfoHash,
    /// What for.
    pub op: Op,
    /// Closest first, at most `SEARCH_NODES`.
    pub nodes: Vec<SearchNode>,
    /// Values already given to the application: id → SHA-256 of the packed value, so a
    /// value its owner changed (same id, new content) is given again, as `Dht::get` does.
    pub seen: BTreeMap<u64, [u8; 32]>,
    /// When the whole round (a lookup, and what follows) is to start again: a put's
    /// re-announce, a listen's new lookup.
    pub next_round: Option<Instant>,
    /// When a listen is sent again to the nodes that confirmed it (no lookup).
    pub next_renew: Option<Instant>,
    /// This round's put or listen is over and was reported.
    pub settled: bool,
}

/// Values one search remembers having given (a hostile node could push values without
/// end under new ids): past this, the oldest id is forgotten.
// SECURITY: row 154
pub const MAX_SEEN: usize = 4096;

impl Search {
    /// A search for `key`, starting from the nodes we know closest to it.
    pub fn new(id: SearchId, key: InfoHash, op: Op, known: Vec<NodeInfo>) -> Search {
        let mut s = Search {
            id,
            key,
            op,
            nodes: Vec::new(),
            seen: BTreeMap::new(),
            next_round: None,
            next_renew: None,
            settled: false,
        };
        for n in known {
            s.insert(n);
        }
        s
    }

    /// Adds a node heard of (from a reply's `n4`/`n6`), keeping the closest
    /// `SEARCH_NODES`. Returns whether it was added.
    pub fn insert(&mut self, info: NodeInfo) -> bool {
        if self.nodes.iter().any(|n| n.info.id == info.id) {
            return false;
        }
        let d = info.id.xor(&self.key);
        let at = self.nodes.partition_point(|n| n.info.id.xor(&self.key) < d);
        if at >= SEARCH_NODES {
            return false;
        }
        self.nodes.insert(
            at,
            SearchNode {
                info,
                state: NodeState::Candidate,
                token: Vec::new(),
                sent: false,
                acked: false,
                holds: false,
            },
        );
        self.nodes.truncate(SEARCH_NODES);
        true
    }

    fn node(&mut self, id: &InfoHash) -> Option<&mut SearchNode> {
        self.nodes.iter_mut().find(|n| n.info.id == *id)
    }

    /// The nodes to ask `get` now (marked asked): the closest candidates, up to the
    /// parallelism left.
    pub fn next_requests(&mut self) -> Vec<NodeInfo> {
        let in_flight = self
            .nodes
            .iter()
            .filter(|n| n.state == NodeState::Asked)
            .count();
        let mut out = Vec::new();
        for n in &mut self.nodes {
            if in_flight + out.len() >= MAX_REQUESTED_SEARCH_NODES {
                break;
            }
            if n.state == NodeState::Candidate {
                n.state = NodeState::Asked;
                out.push(n.info);
            }
        }
        out
    }

    /// `id` answered our `get` with `token`.
    pub fn replied(&mut self, id: &InfoHash, token: &[u8]) {
        if let Some(n) = self.node(id) {
            n.state = NodeState::Replied;
            n.token = token.to_vec();
        }
    }

    /// `id` did not answer (a `get`, or a put or listen).
    pub fn failed(&mut self, id: &InfoHash) {
        if let Some(n) = self.node(id) {
            n.state = NodeState::Failed;
        }
    }

    /// `id` confirmed our put or listen.
    pub fn acked(&mut self, id: &InfoHash) {
        if let Some(n) = self.node(id) {
            n.acked = true;
        }
    }

    /// `id`'s `get` reply carried our value as it is: a `refresh` will do.
    pub fn holds(&mut self, id: &InfoHash) {
        if let Some(n) = self.node(id) {
            n.holds = true;
        }
    }

    /// `id` answered our `refresh` with an error (it lost the value): the value goes to it
    /// again whole, in this round.
    pub fn lost(&mut self, id: &InfoHash) {
        if let Some(n) = self.node(id) {
            n.holds = false;
            n.sent = false;
        }
    }

    /// Whether `values` (a `get` reply's) holds what we put, unchanged.
    pub fn carries_ours(&self, values: &[Value]) -> bool {
        match &self.op {
            Op::Put(ours) => values
                .iter()
                .any(|v| v.id == ours.id && v.data == ours.data),
            _ => false,
        }
    }

    /// Whether `packed` is new to the application (an id not given yet, or given with
    /// other content); remembers it.
    pub fn fresh(&mut self, id: u64, packed: &[u8]) -> bool {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(packed).into();
        if self.seen.get(&id) == Some(&digest) {
            return false;
        }
        if !self.seen.contains_key(&id) && self.seen.len() >= MAX_SEEN {
            self.seen.pop_first();
        }
        self.seen.insert(id, digest);
        true
    }

    /// The listened node says these values expired: forgotten, so that a value put again
    /// under the same id is given again.
    pub fn expired_values(&mut self, ids: &[u64]) {
        for id in ids {
            self.seen.remove(id);
        }
    }

    /// The closest `count` nodes that did not fail.
    fn target(&self, count: usize) -> impl Iterator<Item = &SearchNode> {
        self.nodes
            .iter()
            .filter(|n| n.state != NodeState::Failed)
            .take(count)
    }

    /// Whether the closest nodes have all answered (nothing more to learn).
    pub fn synced(&self) -> bool {
        let mut any = false;
        for n in self.target(TARGET_NODES) {
            any = true;
            if n.state != NodeState::Replied {
                return false;
            }
        }
        any || self.nodes.iter().all(|n| n.state == NodeState::Failed)
    }

    /// How many nodes the put or listen goes to: `TARGET_NODES` or `LISTEN_NODES`.
    fn width(&self) -> usize {
        match self.op {
            Op::Listen => LISTEN_NODES,
            _ => TARGET_NODES,
        }
    }

    /// Once synced: the nodes to send our put (or refresh) or listen to now, marked sent.
    pub fn next_stores(&mut self) -> Vec<Store> {
        if matches!(self.op, Op::Get) || !self.synced() {
            return Vec::new();
        }
        let width = self.width();
        let mut out = Vec::new();
        for n in self
            .nodes
            .iter_mut()
            .filter(|n| n.state != NodeState::Failed)
            .take(width)
        {
            if !n.sent {
                n.sent = true;
                out.push(Store {
                    info: n.info,
                    token: n.token.clone(),
                    refresh: n.holds && matches!(self.op, Op::Put(_)),
                });
            }
        }
        out
    }

    /// Nodes that confirmed our put or listen in this round.
    pub fn acks(&self) -> usize {
        self.target(self.width()).filter(|n| n.acked).count()
    }

    /// Whether every node our put or listen went to has confirmed or failed.
    pub fn stores_settled(&self) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.sent)
            .all(|n| n.acked || n.state == NodeState::Failed)
    }

    /// Starts a new round: every node is asked again (a re-announce, a listen's new
    /// lookup); whether it holds our value, its reply will tell.
    pub fn restart(&mut self, known: Vec<NodeInfo>) {
        for n in &mut self.nodes {
            n.state = NodeState::Candidate;
            n.holds = false;
            n.sent = false;
            n.acked = false;
        }
        for n in known {
            self.insert(n);
        }
        self.next_round = None;
        self.next_renew = None;
        self.settled = false;
    }

    /// Renews a listen without a lookup: `listen` goes again to the nodes it went to.
    pub fn renew(&mut self) {
        for n in &mut self.nodes {
            if n.sent {
                n.sent = false;
                n.acked = false;
            }
        }
        self.next_renew = None;
        self.settled = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::SocketAddr;

    fn node(b: u8) -> NodeInfo {
        NodeInfo {
            id: InfoHash([b; 20]),
            addr: SocketAddr::from(([10, 0, 0, b], 4222)),
        }
    }

    #[test]
    fn asks_the_closest_with_bounded_parallelism_and_syncs_when_they_answered() {
        let key = InfoHash([0; 20]);
        let known = (1..=20).map(node).collect();
        let mut s = Search::new(SearchId(1), key, Op::Put(Value::new(1, 0, vec![])), known);
        assert_eq!(s.nodes.len(), SEARCH_NODES);
        let first = s.next_requests();
        assert_eq!(first.len(), MAX_REQUESTED_SEARCH_NODES);
        assert_eq!(first[0].id, InfoHash([1; 20]));
        assert!(
            s.next_requests().is_empty(),
            "no more than the parallelism in flight"
        );
        assert!(s.next_stores().is_empty(), "not synced yet");
        let mut asked = first;
        while !asked.is_empty() {
            for n in &asked {
                s.replied(&n.id, b"t");
            }
            asked = s.next_requests();
            if s.synced() {
                break;
            }
        }
        assert!(s.synced());
        let stores = s.next_stores();
        assert_eq!(stores.len(), TARGET_NODES);
        assert!(
            s.next_stores().is_empty(),
            "each node gets the put once per round"
        );
    }

    #[test]
    fn a_closer_node_heard_of_goes_first_and_failures_are_skipped() {
        let key = InfoHash([0; 20]);
        let mut s = Search::new(SearchId(1), key, Op::Get, vec![node(9), node(8)]);
        assert!(s.insert(node(2)));
        assert_eq!(s.nodes[0].info.id, InfoHash([2; 20]));
        for n in s.next_requests() {
            s.failed(&n.id);
        }
        assert!(s.synced(), "every node failed: nothing more to learn");
    }

    // SECURITY: row 154
    #[test]
    fn what_a_search_remembers_is_bounded_and_a_change_is_given_again() {
        let mut s = Search::new(SearchId(1), InfoHash([0; 20]), Op::Listen, vec![]);
        assert!(s.fresh(1, b"a"));
        assert!(!s.fresh(1, b"a"), "the same value is given once");
        assert!(s.fresh(1, b"b"), "its owner changed it: given again");
        s.expired_values(&[1]);
        assert!(s.fresh(1, b"b"), "expired, then put again: given again");
        for id in 2..(MAX_SEEN as u64 * 3) {
            s.fresh(id, b"flood");
        }
        assert_eq!(s.seen.len(), MAX_SEEN);
    }
}
