//! Values we store for others, with OpenDHT's limits, and who listens to them.
//!
//! A value lives `VALUE_EXPIRATION` (10 minutes, `USER_DATA`) from its last put or
//! refresh. A value is at most `MAX_VALUE_SIZE` (64 KiB); a key holds at most
//! `MAX_VALUES_PER_KEY` values, the store `MAX_HASHES` keys and `MAX_STORE_SIZE` bytes,
//! and one address at most `MAX_STORE_PER_ADDRESS` bytes (OpenDHT's `store_quota`). A put
//! of an id already stored with the same content refreshes it; with other content it is an
//! edit, allowed only from the address that stored the value (its owner, as far as an
//! unsigned value has one: OpenDHT 2.4.12 refuses every edit of an unsigned value, and
//! allows a signed one only from its owner with a higher `seq`, which we cannot check
//! without its signatures).
//! Listeners (address and socket id) last `LISTEN_EXPIRE_TIME` unless renewed.

use core::net::{IpAddr, SocketAddr};
use std::collections::BTreeMap;
use std::time::Instant;

use super::InfoHash;
use super::constants::{
    LISTEN_EXPIRE_TIME, MAX_HASHES, MAX_STORE_PER_ADDRESS, MAX_STORE_SIZE, MAX_VALUE_SIZE,
    MAX_VALUES_PER_KEY, VALUE_EXPIRATION,
};
use super::message::Tid;
use super::value::Value;

/// Listeners one key keeps (Ferry's bound: OpenDHT bounds them by its rate limits only).
// SECURITY: row 139
pub const MAX_LISTENERS_PER_KEY: usize = 256;

#[derive(Debug, Clone)]
struct Stored {
    value: Value,
    from: IpAddr,
    expires: Instant,
}

#[derive(Debug, Clone, Default)]
struct Key {
    values: BTreeMap<u64, Stored>,
    listeners: BTreeMap<(SocketAddr, Tid), Instant>,
}

/// Why a value was not stored (each one counted by the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over 64 KiB.
    TooLarge,
    /// The key holds `MAX_VALUES_PER_KEY` values.
    KeyFull,
    /// The store holds `MAX_HASHES` keys.
    TooManyKeys,
    /// The store holds `MAX_STORE_SIZE` bytes.
    StoreFull,
    /// The putter's address holds `MAX_STORE_PER_ADDRESS` bytes.
    AddressQuota,
    /// Other content under the id of a value another address stored.
    NotOwner,
}

/// The store.
#[derive(Debug, Clone, Default)]
pub struct Storage {
    keys: BTreeMap<InfoHash, Key>,
    per_address: BTreeMap<IpAddr, usize>,
    total: usize,
}

impl Storage {
    /// An empty store.
    pub fn new() -> Storage {
        Storage::default()
    }

    /// Values stored, in all.
    pub fn values(&self) -> usize {
        self.keys.values().map(|k| k.values.len()).sum()
    }

    /// Others' listens we hold, in all.
    pub fn listeners_total(&self) -> usize {
        self.keys.values().map(|k| k.listeners.len()).sum()
    }

    /// Bytes stored, in all.
    pub fn bytes(&self) -> usize {
        self.total
    }

    /// Keys with values or listeners.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// The values under `key`.
    pub fn get(&self, key: &InfoHash) -> Vec<&Value> {
        self.keys
            .get(key)
            .map(|k| k.values.values().map(|s| &s.value).collect())
            .unwrap_or_default()
    }

    fn uncharge(&mut self, from: IpAddr, size: usize) {
        self.total -= size;
        if let Some(used) = self.per_address.get_mut(&from) {
            *used -= size;
            if *used == 0 {
                self.per_address.remove(&from);
            }
        }
    }

    /// Stores `value` put by `from` under `key`. `Ok(true)` when it is new or changed (the
    /// listeners are to be told), `Ok(false)` when only its expiry moved.
    pub fn store(
        &mut self,
        now: Instant,
        key: InfoHash,
        value: Value,
        from: IpAddr,
    ) -> Result<bool, Refusal> {
        let size = value.packed.len();
        if size > MAX_VALUE_SIZE {
            return Err(Refusal::TooLarge);
        }
        if !self.keys.contains_key(&key) && self.keys.len() >= MAX_HASHES {
            return Err(Refusal::TooManyKeys);
        }
        let old = self
            .keys
            .get(&key)
            .and_then(|k| k.values.get(&value.id))
            .map(|s| (s.from, s.value.packed.len(), s.value == value));
        if let Some((_, _, true)) = old {
            if let Some(s) = self
                .keys
                .get_mut(&key)
                .and_then(|k| k.values.get_mut(&value.id))
            {
                s.expires = now + VALUE_EXPIRATION;
            }
            return Ok(false);
        }
        // SECURITY: row 157
        if old.is_some_and(|(owner, _, _)| owner != from) {
            return Err(Refusal::NotOwner);
        }
        let freed = old.map_or(0, |(_, len, _)| len);
        let freed_here = old
            .filter(|(f, _, _)| *f == from)
            .map_or(0, |(_, len, _)| len);
        if self.total - freed + size > MAX_STORE_SIZE {
            return Err(Refusal::StoreFull);
        }
        let used = self.per_address.get(&from).copied().unwrap_or(0);
        if used - freed_here + size > MAX_STORE_PER_ADDRESS {
            return Err(Refusal::AddressQuota);
        }
        let entry = self.keys.entry(key).or_default();
        if old.is_none() && entry.values.len() >= MAX_VALUES_PER_KEY {
            return Err(Refusal::KeyFull);
        }
        if let Some((old_from, len, _)) = old {
            self.uncharge(old_from, len);
        }
        let entry = self.keys.entry(key).or_default();
        entry.values.insert(
            value.id,
            Stored {
                value,
                from,
                expires: now + VALUE_EXPIRATION,
            },
        );
        self.total += size;
        *self.per_address.entry(from).or_default() += size;
        Ok(true)
    }

    /// Keeps `vid` under `key` for another expiry (`refresh`); false if we hold no such value.
    pub fn refresh(&mut self, now: Instant, key: &InfoHash, vid: u64) -> bool {
        match self.keys.get_mut(key).and_then(|k| k.values.get_mut(&vid)) {
            Some(s) => {
                s.expires = now + VALUE_EXPIRATION;
                true
            }
            None => false,
        }
    }

    /// Adds (or renews) a listener; false when the key has no room for another.
    pub fn listen(&mut self, now: Instant, key: InfoHash, who: SocketAddr, sid: Tid) -> bool {
        if !self.keys.contains_key(&key) && self.keys.len() >= MAX_HASHES {
            return false;
        }
        let entry = self.keys.entry(key).or_default();
        if !entry.listeners.contains_key(&(who, sid))
            && entry.listeners.len() >= MAX_LISTENERS_PER_KEY
        {
            return false;
        }
        entry.listeners.insert((who, sid), now + LISTEN_EXPIRE_TIME);
        true
    }

    /// Who listens to `key`.
    pub fn listeners(&self, key: &InfoHash) -> Vec<(SocketAddr, Tid)> {
        self.keys
            .get(key)
            .map(|k| k.listeners.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Forgets expired values and listeners; returns the values that expired (key, id),
    /// for their listeners to be told.
    pub fn expire(&mut self, now: Instant) -> Vec<(InfoHash, u64)> {
        let mut gone = Vec::new();
        let mut ids = Vec::new();
        for (key, k) in &mut self.keys {
            k.listeners.retain(|_, until| now < *until);
            let expired: Vec<u64> = k
                .values
                .iter()
                .filter(|(_, s)| now >= s.expires)
                .map(|(id, _)| *id)
                .collect();
            for id in expired {
                if let Some(s) = k.values.remove(&id) {
                    gone.push((s.from, s.value.packed.len()));
                    ids.push((*key, id));
                }
            }
        }
        self.keys
            .retain(|_, k| !k.values.is_empty() || !k.listeners.is_empty());
        for (from, len) in &gone {
            self.uncharge(*from, *len);
        }
        ids
    }

    /// When the next value or listener expires.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.keys
            .values()
            .flat_map(|k| {
                k.values
                    .values()
                    .map(|s| s.expires)
                    .chain(k.listeners.values().copied())
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(10, 0, 0, 1));
    const BOB: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_value_expires_ten_minutes_after_its_last_put() {
        let now = Instant::now();
        let mut s = Storage::new();
        let key = InfoHash([1; 20]);
        let v = Value::new(1, 0, b"x".to_vec());
        assert_eq!(s.store(now, key, v.clone(), ALICE), Ok(true));
        let later = now + VALUE_EXPIRATION / 2;
        assert_eq!(s.store(later, key, v, ALICE), Ok(false));
        assert_eq!(s.expire(now + VALUE_EXPIRATION), vec![]);
        assert_eq!(s.expire(later + VALUE_EXPIRATION), vec![(key, 1)]);
        assert_eq!((s.values(), s.bytes(), s.keys()), (0, 0, 0));
    }

    #[test]
    fn one_address_cannot_take_more_than_its_quota() {
        let now = Instant::now();
        let mut s = Storage::new();
        let big = MAX_VALUE_SIZE - 64;
        let mut stored = 0;
        for i in 0..100u64 {
            let v = Value::new(i, 0, vec![0; big]);
            match s.store(now, InfoHash::get(&i.to_be_bytes()), v, ALICE) {
                Ok(_) => stored += 1,
                Err(e) => {
                    assert_eq!(e, Refusal::AddressQuota);
                    break;
                }
            }
        }
        let packed = Value::new(0, 0, vec![0; big]).packed.len();
        assert_eq!(stored, MAX_STORE_PER_ADDRESS / packed);
        // Another address still can.
        assert_eq!(
            s.store(now, InfoHash([9; 20]), Value::new(1, 0, vec![1; 10]), BOB),
            Ok(true)
        );
    }

    #[test]
    fn a_key_holds_a_bounded_number_of_values_and_listeners() {
        let now = Instant::now();
        let mut s = Storage::new();
        let key = InfoHash([2; 20]);
        for i in 0..MAX_VALUES_PER_KEY as u64 {
            assert_eq!(s.store(now, key, Value::new(i, 0, vec![]), ALICE), Ok(true));
        }
        let extra = Value::new(u64::MAX, 0, vec![]);
        assert_eq!(s.store(now, key, extra, BOB), Err(Refusal::KeyFull));
        for sid in 0..MAX_LISTENERS_PER_KEY as u32 {
            assert!(s.listen(now, key, "10.0.0.3:1".parse().expect("addr"), sid));
        }
        assert!(!s.listen(now, key, "10.0.0.3:1".parse().expect("addr"), 9999));
    }

    // SECURITY: row 157
    #[test]
    fn only_the_address_that_stored_a_value_changes_it() {
        let now = Instant::now();
        let mut s = Storage::new();
        let key = InfoHash([3; 20]);
        let v = |data: &[u8]| Value::new(7, 0, data.to_vec());
        assert_eq!(s.store(now, key, v(b"mine"), ALICE), Ok(true));
        assert_eq!(s.store(now, key, v(b"theirs"), BOB), Err(Refusal::NotOwner));
        assert_eq!(s.get(&key)[0].data, b"mine");
        // The same content from anyone only refreshes it.
        assert_eq!(s.store(now, key, v(b"mine"), BOB), Ok(false));
        // Its owner's new content replaces it.
        assert_eq!(s.store(now, key, v(b"mine, again"), ALICE), Ok(true));
        assert_eq!(s.get(&key)[0].data, b"mine, again");
        assert_eq!(s.bytes(), v(b"mine, again").packed.len());
    }
}
