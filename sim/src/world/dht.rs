//! The world's side of the DHT ([`crate::dht`]): puts, listens and deliveries as events on
//! the world's queue, with the delays, losses and duplicates its [`DhtSpec`](crate::DhtSpec) draws.

use std::time::Duration;

use bytes::Bytes;
use ferry_proto::io::{DhtKey, Input};
use ferry_proto::trace::{Direction, Summary};

use super::World;
use crate::dht::Stored;
use crate::ids::HostId;
use crate::queue::Ev;

impl World {
    fn dht_delay(&mut self) -> Duration {
        self.dht.spec.latency + self.rng.up_to(self.dht.spec.jitter)
    }

    fn dht_reachable(&self, h: HostId) -> bool {
        self.links[self.hosts[h.ix()].link].up
    }

    /// Records a trace line about `key` (`dht listen devices:bob`), when tracing.
    fn note_key(&mut self, h: HostId, what: &str, key: &DhtKey, after: &str) {
        if let Some(t) = &self.tracer {
            let text = format!("dht {what} {}{after}", t.names.labels.key(key));
            self.note(h, Direction::Local, Summary::plain(text));
        }
    }

    /// Records a trace line about a value (`dht put request id1 alice:a1 → bob:b1`), when
    /// tracing.
    fn note_value(&mut self, h: HostId, what: &str, key: &DhtKey, value: &[u8]) {
        if let Some(t) = &mut self.tracer {
            let names = &mut t.names;
            let text = format!(
                "dht {what} {}",
                names.labels.value(key, value, &mut names.exchanges)
            );
            self.note(h, Direction::Local, Summary::plain(text));
        }
    }

    /// The answer to a put reaches its host.
    pub(crate) fn dht_put_done(&mut self, to: HostId, key: DhtKey, ok: bool) {
        self.note_key(to, "put", &key, if ok { " stored" } else { " failed" });
        self.input(to, Input::DhtPutDone { key, ok });
    }

    pub(crate) fn dht_put(&mut self, h: HostId, key: DhtKey, value: Bytes) {
        self.note_value(h, "put", &key, &value);
        let delay = self.dht_delay();
        if !self.dht_reachable(h) || self.rng.chance(self.dht.spec.loss) {
            let back = delay + self.dht_delay();
            self.queue.push(
                self.now + back,
                Ev::DhtPutDone {
                    to: h,
                    key,
                    ok: false,
                },
            );
            return;
        }
        self.queue.push(
            self.now + delay,
            Ev::DhtStore {
                from: h,
                key,
                value,
            },
        );
    }

    pub(crate) fn dht_store(&mut self, from: HostId, key: DhtKey, value: Bytes) {
        let now = self.now;
        self.dht.expire(key, now);
        self.dht.sweep(now);
        let spec = self.dht.spec;
        let values = self.dht.store.entry(key).or_default();
        // The same bytes put again refresh the stored value instead of adding one.
        if let Some(pos) = values.iter().position(|s| s.value == value) {
            values.remove(pos);
        }
        if values.len() >= spec.max_values {
            values.pop_front();
        }
        values.push_back(Stored {
            value: value.clone(),
            expires: now + spec.ttl,
        });
        let back = self.dht_delay();
        self.queue.push(
            now + back,
            Ev::DhtPutDone {
                to: from,
                key,
                ok: true,
            },
        );
        let listeners: Vec<HostId> = self
            .dht
            .listeners
            .get(&key)
            .map(|l| l.iter().copied().collect())
            .unwrap_or_default();
        for to in listeners {
            self.dht_send(to, key, value.clone());
        }
    }

    /// One delivery, with its own loss, delay and maybe a duplicate.
    fn dht_send(&mut self, to: HostId, key: DhtKey, value: Bytes) {
        if self.rng.chance(self.dht.spec.loss) {
            return;
        }
        let copies = if self.rng.chance(self.dht.spec.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + self.dht_delay();
            let value = value.clone();
            self.queue.push(at, Ev::DhtDeliver { to, key, value });
        }
    }

    pub(crate) fn dht_deliver(&mut self, to: HostId, key: DhtKey, value: Bytes) {
        if !self.hosts[to.ix()].dht_listens.contains(&key) {
            return;
        }
        if !self.dht_reachable(to) {
            self.note_key(to, "value", &key, " lost: link down");
            return;
        }
        self.note_value(to, "value", &key, &value);
        self.input(to, Input::DhtValue { key, value });
    }

    pub(crate) fn dht_listen(&mut self, h: HostId, key: DhtKey) {
        self.note_key(h, "listen", &key, "");
        self.hosts[h.ix()].dht_listens.insert(key);
        self.dht.listeners.entry(key).or_default().insert(h);
        self.dht.expire(key, self.now);
        if !self.dht_reachable(h) {
            return;
        }
        for value in self.dht.values(key, self.now) {
            self.dht_send(h, key, value);
        }
    }

    pub(crate) fn dht_cancel(&mut self, h: HostId, key: DhtKey) {
        self.note_key(h, "cancel listen", &key, "");
        self.hosts[h.ix()].dht_listens.remove(&key);
        if let Some(l) = self.dht.listeners.get_mut(&key) {
            l.remove(&h);
            if l.is_empty() {
                self.dht.listeners.remove(&key);
            }
        }
    }
}
