//! Answers to our requests: the nodes and tokens a lookup brings, confirmations of our
//! puts and listens, values pushed to our listens, and requests nobody answered.
//!
//! A reply counts only from the address we asked and under the id we expected (a
//! bootstrap ping expects none); anything else is counted as `unexpected_reply`. The
//! address a checked reply says it saw us at (`sa`) is counted towards our public address
//! ([`super::reach`]).
//!
//! Values pushed to a listen, and those a `get` brings, reach the application when their
//! id is new or their content changed (an owner's update: same id, new content, as
//! `Dht::get` compares them); a `u` message naming expired ids makes us forget them, so
//! that a value put again under one of them is given again.

use core::net::SocketAddr;
use std::time::Instant;

use super::message::{Kind, Message};
use super::node::{Event, Node, Pending, Purpose};
use super::search::{Op, SearchId};
use super::value::Value;

impl Node {
    pub(super) fn on_reply(&mut self, now: Instant, from: SocketAddr, m: Message) {
        // Values pushed to one of our listens come as replies to its socket id.
        if let Some(search) = self.sockets.get(&m.tid).copied() {
            if !self.requests.contains_key(&m.tid) {
                self.deliver(search, m.values);
                return;
            }
        }
        let Some(pending) = self.requests.get(&m.tid) else {
            self.dropped.unexpected_reply += 1;
            return;
        };
        if pending.to != from || pending.id.is_some_and(|id| Some(id) != m.id) {
            self.dropped.unexpected_reply += 1;
            return;
        }
        let Some(p) = self.requests.remove(&m.tid) else {
            return;
        };
        if let Some(ip) = m.reported_addr {
            self.reach.reported(ip);
        }
        let Some(sender) = m.id else {
            // An error without the sender's id: the request failed.
            self.expired(now, p);
            return;
        };
        self.heard(now, sender, from, true);
        match p.purpose {
            Purpose::Ping => {
                if p.id.is_none() {
                    // A bootstrap node answered: look ourselves up to fill the table.
                    let own = self.enc.id;
                    self.start_search(now, own, Op::Get);
                }
            }
            Purpose::Lookup(id) => {
                for n in m.nodes4.iter().chain(&m.nodes6) {
                    if n.id != self.enc.id {
                        self.heard(now, n.id, n.addr, false);
                    }
                }
                let Some(s) = self.searches.get_mut(&id) else {
                    return;
                };
                if m.kind == Some(Kind::Error) {
                    s.failed(&sender);
                } else {
                    s.replied(&sender, &m.token);
                    if s.carries_ours(&m.values) {
                        s.holds(&sender);
                    }
                    for n in m.nodes4.iter().chain(&m.nodes6) {
                        if n.id != self.enc.id {
                            s.insert(*n);
                        }
                    }
                }
                if !matches!(s.op, Op::Put(_)) {
                    self.deliver(id, m.values);
                }
                self.step(now, id);
            }
            Purpose::Store(id) => {
                if let Some(s) = self.searches.get_mut(&id) {
                    if m.kind == Some(Kind::Error) {
                        s.failed(&sender);
                    } else {
                        s.acked(&sender);
                        if matches!(s.op, Op::Listen) {
                            let values = m.values;
                            self.deliver(id, values);
                        }
                    }
                }
                self.settle(now, id);
            }
            Purpose::Refresh(id) => {
                if let Some(s) = self.searches.get_mut(&id) {
                    if m.kind == Some(Kind::Error) {
                        // "Storage not found": it lost the value; the value goes again.
                        self.counters.refreshes_refused += 1;
                        s.lost(&sender);
                    } else {
                        s.acked(&sender);
                    }
                }
                self.step(now, id);
            }
        }
    }

    /// A `u` message: values of a listen refreshed (`re`) or expired (`exp`) on the node.
    pub(super) fn on_update(&mut self, m: Message) {
        let Some(search) = self.sockets.get(&m.tid).copied() else {
            self.dropped.unexpected_reply += 1;
            return;
        };
        self.counters.value_updates_heard += 1;
        if let Some(s) = self.searches.get_mut(&search) {
            s.expired_values(&m.expired);
        }
    }

    fn deliver(&mut self, id: SearchId, values: Vec<Value>) {
        let Some(s) = self.searches.get_mut(&id) else {
            return;
        };
        let mut fresh = Vec::new();
        for v in values {
            let known = s.seen.contains_key(&v.id);
            if s.fresh(v.id, &v.packed) {
                if known {
                    self.counters.updates_heard += 1;
                }
                fresh.push(v);
            }
        }
        if !fresh.is_empty() {
            self.events.push_back(Event::Values {
                search: id,
                key: s.key,
                values: fresh,
            });
        }
    }

    pub(super) fn expired(&mut self, now: Instant, p: Pending) {
        self.dropped.requests_expired += 1;
        if let Some(id) = p.id {
            self.table_mut(&p.to).unanswered(id);
        }
        if let Purpose::Lookup(search) | Purpose::Store(search) | Purpose::Refresh(search) =
            p.purpose
        {
            if let (Some(s), Some(id)) = (self.searches.get_mut(&search), p.id) {
                s.failed(&id);
            }
            self.step(now, search);
        }
    }
}
