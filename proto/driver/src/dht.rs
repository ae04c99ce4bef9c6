//! The embedded DHT: an in-process store that stands in for OpenDHT, so that several nodes in
//! one process (tests, a demo) find each other with no server.
//!
//! It keeps OpenDHT's shape where a core can see it: values are bytes under 20-byte keys, a
//! key holds several values, a value larger than [`MAX_VALUE_SIZE`] is refused, storing the
//! same bytes twice stores them once, and a listener gets every value stored under its key,
//! first those already there, then each new one, in the order they were stored. It keeps no
//! expiry: the oldest values of a key make room once it holds [`MAX_VALUES_PER_KEY`], which
//! bounds its memory.
//!
//! Each driver takes a [`DhtClient`] from a shared [`DhtStore`] and carries out
//! [`Output::DhtPut`](ferry_proto::io::Output::DhtPut) and its siblings with it; answers come back
//! as [`Input`]s through the callback the client was made with.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use ferry_proto::io::{DhtKey, Input};

/// Largest value stored, in bytes (OpenDHT's limit).
pub const MAX_VALUE_SIZE: usize = 64 * 1024;
/// Most values kept under one key; the oldest goes first.
pub const MAX_VALUES_PER_KEY: usize = 64;

type Deliver = Box<dyn FnMut(Input) + Send>;

#[derive(Default)]
struct Store {
    values: BTreeMap<DhtKey, VecDeque<Bytes>>,
    /// Who listens to each key, by client number.
    listeners: BTreeMap<DhtKey, BTreeSet<u64>>,
    clients: BTreeMap<u64, Deliver>,
    next_client: u64,
}

impl Store {
    fn deliver(&mut self, client: u64, input: Input) {
        if let Some(deliver) = self.clients.get_mut(&client) {
            deliver(input);
        }
    }
}

/// One in-process DHT. Clones share it.
#[derive(Clone, Default)]
pub struct DhtStore {
    inner: Arc<Mutex<Store>>,
}

impl std::fmt::Debug for DhtStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = self.lock();
        f.debug_struct("DhtStore")
            .field("keys", &store.values.len())
            .field("clients", &store.clients.len())
            .finish()
    }
}

impl DhtStore {
    /// An empty store.
    pub fn new() -> DhtStore {
        DhtStore::default()
    }

    /// A client whose answers ([`Input::DhtValue`], [`Input::DhtPutDone`]) go to `deliver`.
    ///
    /// `deliver` runs while the store is locked, on the thread of whichever client caused the
    /// answer: it must be quick and must not use the store (a channel send is right).
    pub fn client(&self, deliver: impl FnMut(Input) + Send + 'static) -> DhtClient {
        let mut store = self.lock();
        let id = store.next_client;
        store.next_client += 1;
        store.clients.insert(id, Box::new(deliver));
        DhtClient {
            store: self.clone(),
            id,
        }
    }

    /// How many values are stored under `key`.
    pub fn count(&self, key: &DhtKey) -> usize {
        self.lock().values.get(key).map_or(0, VecDeque::len)
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic in a callback leaves the store consistent: every change is made before
        // anything is delivered.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One driver's access to a [`DhtStore`]. Dropping it ends its listens.
pub struct DhtClient {
    store: DhtStore,
    id: u64,
}

impl std::fmt::Debug for DhtClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DhtClient").field("id", &self.id).finish()
    }
}

impl DhtClient {
    /// Stores `value` under `key`; answers [`Input::DhtPutDone`] after every listener of the
    /// key got the value.
    pub fn put(&self, key: DhtKey, value: Bytes) {
        let mut store = self.store.lock();
        let ok = value.len() <= MAX_VALUE_SIZE;
        let values = store.values.entry(key).or_default();
        if ok && !values.contains(&value) {
            if values.len() == MAX_VALUES_PER_KEY {
                values.pop_front();
            }
            values.push_back(value.clone());
            let listeners: Vec<u64> = store
                .listeners
                .get(&key)
                .map(|l| l.iter().copied().collect())
                .unwrap_or_default();
            for client in listeners {
                let value = value.clone();
                store.deliver(client, Input::DhtValue { key, value });
            }
        }
        store.deliver(self.id, Input::DhtPutDone { key, ok });
    }

    /// Delivers every value under `key`, those stored now and those to come. Listening to a
    /// key already listened to changes nothing.
    pub fn listen(&self, key: DhtKey) {
        let mut store = self.store.lock();
        if !store.listeners.entry(key).or_default().insert(self.id) {
            return;
        }
        let values: Vec<Bytes> = store
            .values
            .get(&key)
            .map(|v| v.iter().cloned().collect())
            .unwrap_or_default();
        for value in values {
            store.deliver(self.id, Input::DhtValue { key, value });
        }
    }

    /// Stops delivering values under `key`.
    pub fn cancel_listen(&self, key: DhtKey) {
        let mut store = self.store.lock();
        if let Some(listeners) = store.listeners.get_mut(&key) {
            listeners.remove(&self.id);
            if listeners.is_empty() {
                store.listeners.remove(&key);
            }
        }
    }
}

impl Drop for DhtClient {
    fn drop(&mut self) {
        let mut store = self.store.lock();
        store.clients.remove(&self.id);
        store.listeners.retain(|_, l| {
            l.remove(&self.id);
            !l.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn client(store: &DhtStore) -> (DhtClient, mpsc::Receiver<Input>) {
        let (tx, rx) = mpsc::channel();
        let client = store.client(move |input| {
            let _ = tx.send(input);
        });
        (client, rx)
    }

    fn value(key: DhtKey, v: &'static str) -> Input {
        Input::DhtValue {
            key,
            value: Bytes::from_static(v.as_bytes()),
        }
    }

    #[test]
    fn listeners_get_old_values_then_new_ones_in_order() {
        let store = DhtStore::new();
        let key = DhtKey([7; 20]);
        let (alice, alice_rx) = client(&store);
        let (bob, bob_rx) = client(&store);
        alice.put(key, Bytes::from_static(b"one"));
        bob.listen(key);
        alice.put(key, Bytes::from_static(b"two"));
        alice.put(key, Bytes::from_static(b"two")); // the same bytes: stored once
        let got: Vec<Input> = bob_rx.try_iter().collect();
        assert_eq!(got, [value(key, "one"), value(key, "two")]);
        let done = Input::DhtPutDone { key, ok: true };
        assert_eq!(
            alice_rx.try_iter().collect::<Vec<_>>(),
            [done.clone(), done.clone(), done]
        );
        bob.cancel_listen(key);
        alice.put(key, Bytes::from_static(b"three"));
        assert_eq!(bob_rx.try_iter().count(), 0);
        assert_eq!(store.count(&key), 3);
    }

    #[test]
    fn oversized_values_are_refused_and_keys_stay_bounded() {
        let store = DhtStore::new();
        let key = DhtKey([1; 20]);
        let (c, rx) = client(&store);
        c.put(key, Bytes::from(vec![0; MAX_VALUE_SIZE + 1]));
        assert_eq!(
            rx.try_iter().last(),
            Some(Input::DhtPutDone { key, ok: false })
        );
        for i in 0..(MAX_VALUES_PER_KEY as u32 + 10) {
            c.put(key, Bytes::copy_from_slice(&i.to_be_bytes()));
        }
        assert_eq!(store.count(&key), MAX_VALUES_PER_KEY);
    }

    #[test]
    fn a_dropped_client_hears_nothing_more() {
        let store = DhtStore::new();
        let key = DhtKey([2; 20]);
        let (a, _a_rx) = client(&store);
        let (b, b_rx) = client(&store);
        b.listen(key);
        drop(b);
        a.put(key, Bytes::from_static(b"x"));
        assert_eq!(b_rx.try_iter().count(), 0);
    }
}
