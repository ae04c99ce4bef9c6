//! Driving our searches round by round: the lookups, then the puts, refreshes and listens
//! they lead to, and when each round starts again.
//!
//! A put's round starts again `REANNOUNCE_MARGIN` before its value would expire
//! (`VALUE_EXPIRATION`): a new lookup (fresh tokens, nodes that joined closer), then a
//! `refresh` to the nodes that hold the value and a `put` to the others, as 2.4.12's
//! `searchSendAnnounceValue` chooses. A listen is sent again to the nodes that confirmed it
//! `REANNOUNCE_MARGIN` before it would expire on them (`LISTEN_EXPIRE_TIME`), with the same
//! socket id and without a lookup (`searchSynchedNodeListen`); its lookup runs again every
//! `NODE_EXPIRE_TIME`, when OpenDHT's search nodes stop counting as synced.

use std::time::Instant;

use super::InfoHash;
use super::constants::{
    LISTEN_EXPIRE_TIME, MAX_SEARCHES, NODE_EXPIRE_TIME, REANNOUNCE_MARGIN, SEARCH_NODES,
    VALUE_EXPIRATION,
};
use super::message::Tid;
use super::node::{Event, Node, Purpose};
use super::search::{NodeState, Op, Search, SearchId};

impl Node {
    pub(super) fn start_search(&mut self, now: Instant, key: InfoHash, op: Op) -> Option<SearchId> {
        if self.searches.len() >= MAX_SEARCHES {
            self.dropped.searches_refused += 1;
            return None;
        }
        self.next_search += 1;
        let id = SearchId(self.next_search);
        let known = self.closest(now, &key, SEARCH_NODES);
        self.searches.insert(id, Search::new(id, key, op, known));
        self.step(now, id);
        Some(id)
    }

    /// Starts the rounds and renewals that are due.
    pub(super) fn due_rounds(&mut self, now: Instant) {
        let rounds: Vec<SearchId> = self
            .searches
            .values()
            .filter(|s| s.next_round.is_some_and(|t| now >= t))
            .map(|s| s.id)
            .collect();
        for id in rounds {
            let Some(key) = self.searches.get(&id).map(|s| s.key) else {
                continue;
            };
            let known = self.closest(now, &key, SEARCH_NODES);
            if let Some(s) = self.searches.get_mut(&id) {
                s.restart(known);
            }
            self.step(now, id);
        }
        let renewals: Vec<SearchId> = self
            .searches
            .values()
            .filter(|s| s.next_renew.is_some_and(|t| now >= t))
            .map(|s| s.id)
            .collect();
        for id in renewals {
            if let Some(s) = self.searches.get_mut(&id) {
                s.renew();
            }
            self.step(now, id);
        }
    }

    /// When the next round or renewal is due.
    pub(super) fn next_round(&self) -> Option<Instant> {
        self.searches
            .values()
            .flat_map(|s| [s.next_round, s.next_renew])
            .flatten()
            .min()
    }

    /// Sends what a search needs next: lookups, then its put, refresh or listen.
    pub(super) fn step(&mut self, now: Instant, id: SearchId) {
        let Some(search) = self.searches.get_mut(&id) else {
            return;
        };
        let key = search.key;
        let asks = search.next_requests();
        let stores = search.next_stores();
        let op = search.op.clone();
        for n in asks {
            self.counters.gets_sent += 1;
            let tid = self.new_tid();
            let data = self.enc.get(tid, key, self.want);
            self.send_request(
                now,
                tid,
                n.addr,
                Some(n.id),
                Purpose::Lookup(id),
                vec![data],
            );
        }
        for store in stores {
            let tid = self.new_tid();
            let (purpose, packets) = match &op {
                Op::Put(value) if store.refresh => {
                    self.counters.refreshes_sent += 1;
                    let r = self.enc.refresh(tid, key, value.id, &store.token);
                    (Purpose::Refresh(id), vec![r])
                }
                Op::Put(value) => {
                    self.counters.puts_sent += 1;
                    let p = self.enc.put(tid, key, value, &store.token);
                    let packets = std::iter::once(p.message).chain(p.parts).collect();
                    (Purpose::Store(id), packets)
                }
                Op::Listen => {
                    self.counters.listens_sent += 1;
                    let sid = self.socket_for(id);
                    let l = self.enc.listen(tid, key, &store.token, sid);
                    (Purpose::Store(id), vec![l])
                }
                Op::Get => continue,
            };
            let to = store.info;
            self.send_request(now, tid, to.addr, Some(to.id), purpose, packets);
        }
        self.settle(now, id);
    }

    fn socket_for(&mut self, search: SearchId) -> Tid {
        if let Some((sid, _)) = self.sockets.iter().find(|(_, s)| **s == search) {
            return *sid;
        }
        let sid = self.new_tid();
        self.sockets.insert(sid, search);
        sid
    }

    /// Reports a search's round once it is over, and schedules what comes next.
    pub(super) fn settle(&mut self, now: Instant, id: SearchId) {
        let in_flight = self.requests.values().any(|p| {
            matches!(p.purpose, Purpose::Store(s) | Purpose::Lookup(s) | Purpose::Refresh(s) if s == id)
        });
        let Some(s) = self.searches.get_mut(&id) else {
            return;
        };
        if !s.synced() || s.settled {
            return;
        }
        match &s.op {
            Op::Get => {
                if in_flight && !s.nodes.iter().all(|n| n.state != NodeState::Asked) {
                    return;
                }
                let answered = s
                    .nodes
                    .iter()
                    .filter(|n| n.state == NodeState::Replied)
                    .count();
                self.searches.remove(&id);
                self.events.push_back(Event::GetDone {
                    search: id,
                    answered,
                });
            }
            Op::Put(_) => {
                if !s.stores_settled() {
                    return;
                }
                s.settled = true;
                self.events.push_back(Event::Stored {
                    search: id,
                    nodes: s.acks(),
                });
                s.next_round = Some(now + VALUE_EXPIRATION - REANNOUNCE_MARGIN);
            }
            Op::Listen => {
                if !s.stores_settled() {
                    return;
                }
                s.settled = true;
                let renew = now + LISTEN_EXPIRE_TIME - REANNOUNCE_MARGIN;
                if s.acks() == 0 {
                    // Nobody holds the listen: look again at the renewal time.
                    s.next_round = Some(renew);
                } else {
                    s.next_renew = Some(renew);
                    if s.next_round.is_none() {
                        s.next_round = Some(now + NODE_EXPIRE_TIME);
                    }
                }
            }
        }
    }
}
