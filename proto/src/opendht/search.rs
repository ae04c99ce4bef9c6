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

use std::collections::BTreeSet;
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
    /// Value ids already given to the application.
    pub seen: BTreeSet<u64>,
    /// When the current round (a lookup, and what follows) is to start again: a put's
    /// re-announce, a listen's renewal.
    pub next_round: Option<Instant>,
    /// The application was told the lookup is done (once per search).
    pub reported: bool,
}

impl Search {
    /// A search for `key`, starting from the nodes we know closest to it.
    pub fn new(id: SearchId, key: InfoHash, op: Op, known: Vec<NodeInfo>) -> Search {
        let mut s = Search {
            id,
            key,
            op,
            nodes: Vec::new(),
            seen: BTreeSet::new(),
            next_round: None,
            reported: false,
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

    /// Once synced: the nodes to send our put or listen to now (with their tokens),
    /// marked sent.
    pub fn next_stores(&mut self) -> Vec<(NodeInfo, Vec<u8>)> {
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
                out.push((n.info, n.token.clone()));
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

    /// Starts a new round: every node is asked again (a re-announce or renewal).
    pub fn restart(&mut self, known: Vec<NodeInfo>) {
        for n in &mut self.nodes {
            n.state = NodeState::Candidate;
            n.sent = false;
            n.acked = false;
        }
        for n in known {
            self.insert(n);
        }
        self.next_round = None;
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
}
