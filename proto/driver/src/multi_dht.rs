//! Several DHTs at once: each put goes to all of them, each listen listens on all of them.
//!
//! So that processes of one machine meet at once through a folder while remote ones meet
//! through OpenDHT, a driver may use several backends. The endpoint must not see the
//! difference: a value that two backends deliver is given to it once (the core verifies
//! what it reads, and a second copy would spend its verification budget), and each put is
//! answered once — done as soon as one backend stored it, failed only when every backend
//! failed.
//!
//! Answers come back on the shell's thread through [`SeveralDhts::admit`], so the merge needs
//! no lock. Values are remembered by their SHA-256 (so a peer cannot make two values collide),
//! at most [`SEEN_PER_KEY`] per key and [`SEEN_KEYS`] keys, the oldest forgotten first.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};

use ferry_proto::io::{DhtKey, Input};

use crate::DhtConnection;
use crate::native_dht::NativeStatus;

/// Values remembered per key against repeats.
pub const SEEN_PER_KEY: usize = 256;
/// Keys whose values are remembered.
pub const SEEN_KEYS: usize = 1024;
/// Puts awaiting answers, per key; older ones are answered as failed.
const PENDING_PER_KEY: usize = 64;

/// The digests of a key's values seen, as a set and oldest first.
type Seen = (BTreeSet<[u8; 32]>, VecDeque<[u8; 32]>);

/// A put awaiting its backends' answers.
#[derive(Debug)]
struct PendingPut {
    /// Answers still to come.
    left: usize,
    /// Whether the endpoint was answered already (one backend stored it).
    answered: bool,
}

/// Several DHT connections used as one.
#[derive(Debug)]
pub struct SeveralDhts {
    all: Vec<DhtConnection>,
    seen: BTreeMap<DhtKey, Seen>,
    seen_order: VecDeque<DhtKey>,
    pending: BTreeMap<DhtKey, VecDeque<PendingPut>>,
}

impl SeveralDhts {
    /// Uses all of `all`.
    pub fn new(all: Vec<DhtConnection>) -> SeveralDhts {
        SeveralDhts {
            all,
            seen: BTreeMap::new(),
            seen_order: VecDeque::new(),
            pending: BTreeMap::new(),
        }
    }

    /// Puts `value` under `key` on every backend.
    pub fn put(&mut self, key: DhtKey, value: Bytes) {
        if self.all.is_empty() {
            return;
        }
        let queue = self.pending.entry(key).or_default();
        if queue.len() == PENDING_PER_KEY {
            queue.pop_front();
        }
        queue.push_back(PendingPut {
            left: self.all.len(),
            answered: false,
        });
        for c in &mut self.all {
            c.put(key, value.clone());
        }
    }

    /// Listens to `key` on every backend.
    pub fn listen(&mut self, key: DhtKey) {
        for c in &mut self.all {
            c.listen(key);
        }
    }

    /// Stops listening to `key` on every backend.
    pub fn cancel_listen(&mut self, key: DhtKey) {
        for c in &mut self.all {
            c.cancel_listen(key);
        }
        // A listen started again later hears every value again, as from one backend.
        self.seen.remove(&key);
        self.seen_order.retain(|k| *k != key);
    }

    /// The native backend's status, if there is one.
    pub fn native_status(&self) -> Option<NativeStatus> {
        self.all.iter().find_map(DhtConnection::native_status)
    }

    /// Whether `input` is news for the endpoint (see the module's documentation).
    pub fn admit(&mut self, input: &Input) -> bool {
        match input {
            Input::DhtValue { key, value } => self.first_sight(*key, value),
            Input::DhtPutDone { key, ok } => self.put_answer(*key, *ok),
            _ => true,
        }
    }

    fn first_sight(&mut self, key: DhtKey, value: &Bytes) -> bool {
        let digest: [u8; 32] = Sha256::digest(value).into();
        if !self.seen.contains_key(&key) {
            if self.seen_order.len() == SEEN_KEYS {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
            self.seen_order.push_back(key);
        }
        let (set, order) = self.seen.entry(key).or_default();
        if !set.insert(digest) {
            return false;
        }
        order.push_back(digest);
        if order.len() > SEEN_PER_KEY {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }

    /// Matches an answer with the oldest put of its key still awaiting answers (backends
    /// answer their own puts in order; across backends the match is the best there is).
    fn put_answer(&mut self, key: DhtKey, ok: bool) -> bool {
        let Some(queue) = self.pending.get_mut(&key) else {
            return false;
        };
        let Some(put) = queue.front_mut() else {
            return false;
        };
        put.left = put.left.saturating_sub(1);
        let tell = if ok {
            !std::mem::replace(&mut put.answered, true)
        } else {
            put.left == 0 && !put.answered
        };
        if put.left == 0 {
            queue.pop_front();
        }
        if queue.is_empty() {
            self.pending.remove(&key);
        }
        tell
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dht::DhtStore;
    use std::sync::mpsc;

    fn two_stores() -> (SeveralDhts, mpsc::Receiver<Input>, DhtStore, DhtStore) {
        let (tx, rx) = mpsc::channel();
        let (a, b) = (DhtStore::new(), DhtStore::new());
        let (ta, tb) = (tx.clone(), tx);
        let several = SeveralDhts::new(vec![
            DhtConnection::Embedded(a.client(move |i| {
                let _ = ta.send(i);
            })),
            DhtConnection::Embedded(b.client(move |i| {
                let _ = tb.send(i);
            })),
        ]);
        (several, rx, a, b)
    }

    // SECURITY: row 151
    #[test]
    fn a_value_from_two_backends_is_news_once_and_a_put_is_answered_once() {
        let (mut several, rx, a, b) = two_stores();
        let key = DhtKey([3; 20]);
        several.listen(key);
        several.put(key, Bytes::from_static(b"hello"));
        assert_eq!((a.count(&key), b.count(&key)), (1, 1), "put to both");
        let admitted: Vec<Input> = rx.try_iter().filter(|i| several.admit(i)).collect();
        assert_eq!(
            admitted,
            [
                Input::DhtValue {
                    key,
                    value: Bytes::from_static(b"hello")
                },
                Input::DhtPutDone { key, ok: true },
            ]
        );
        // A value only one backend has is news too.
        let other = b.client(|_| {});
        other.put(key, Bytes::from_static(b"only in b"));
        assert_eq!(rx.try_iter().filter(|i| several.admit(i)).count(), 1);
    }

    #[test]
    fn a_put_fails_only_when_every_backend_failed() {
        let (mut several, _rx, _a, _b) = two_stores();
        let key = DhtKey([4; 20]);
        several.pending.insert(
            key,
            VecDeque::from([PendingPut {
                left: 2,
                answered: false,
            }]),
        );
        assert!(!several.admit(&Input::DhtPutDone { key, ok: false }));
        assert!(several.admit(&Input::DhtPutDone { key, ok: false }));
        assert!(
            !several.pending.contains_key(&key),
            "answered and forgotten"
        );
        // An answer to no put is no news.
        let lone = DhtKey([5; 20]);
        assert!(!several.admit(&Input::DhtPutDone {
            key: lone,
            ok: true
        }));
    }

    // SECURITY: row 151
    #[test]
    fn remembered_values_stay_bounded() {
        let (mut several, _rx, _a, _b) = two_stores();
        let key = DhtKey([6; 20]);
        for i in 0..(SEEN_PER_KEY as u32 + 10) {
            let v = Bytes::copy_from_slice(&i.to_be_bytes());
            assert!(several.first_sight(key, &v));
        }
        assert_eq!(several.seen[&key].0.len(), SEEN_PER_KEY);
        for i in 0..(SEEN_KEYS as u32 + 5) {
            let mut k = [0u8; 20];
            k[..4].copy_from_slice(&i.to_be_bytes());
            several.first_sight(DhtKey(k), &Bytes::from_static(b"v"));
        }
        assert_eq!(several.seen.len(), SEEN_KEYS);
    }
}
