//! The requests a state machine has sent and not yet seen answered, each with what it was
//! for and when it gives up.
//!
//! Over TCP nothing is retransmitted (the stream already is), so a transaction is one
//! request, one deadline, and either an answer ([`Transactions::take`]) or an expiry
//! ([`Transactions::pop_expired`]). The context `T` is whatever the owner needs to act on
//! the answer: the ICE agent keeps the pair and the role it claimed; a TURN client would
//! keep the request itself, to sign it again after a 401 or 438. Entries sit in a `BTreeMap`
//! keyed by transaction id, so expiries that fall together come out in id order, never in
//! hash order.

use std::collections::BTreeMap;
use std::time::Instant;

/// Outstanding requests, by 96-bit transaction id.
#[derive(Debug, Clone)]
pub struct Transactions<T> {
    entries: BTreeMap<u128, (T, Instant)>,
}

impl<T> Default for Transactions<T> {
    fn default() -> Self {
        Transactions {
            entries: BTreeMap::new(),
        }
    }
}

impl<T> Transactions<T> {
    /// No request outstanding.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a request just sent, which gives up at `deadline`. A reused id replaces the
    /// older entry (ids come from a seeded 96-bit source; a reuse is a caller bug).
    pub fn start(&mut self, id: u128, context: T, deadline: Instant) {
        self.entries.insert(id, (context, deadline));
    }

    /// The context of an outstanding request.
    pub fn get(&self, id: u128) -> Option<&T> {
        self.entries.get(&id).map(|(t, _)| t)
    }

    /// Ends a request because its answer arrived, returning its context.
    pub fn take(&mut self, id: u128) -> Option<T> {
        self.entries.remove(&id).map(|(t, _)| t)
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().map(|(_, at)| *at).min()
    }

    /// Ends and returns one request whose deadline is at or before `now`: the earliest, and
    /// among equals the lowest id.
    pub fn pop_expired(&mut self, now: Instant) -> Option<(u128, T)> {
        let id = self
            .entries
            .iter()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(id, (_, at))| (*at, **id))
            .map(|(id, _)| *id)?;
        self.entries.remove(&id).map(|(t, _)| (id, t))
    }

    /// Keeps only the requests for which `keep` says so (a connection closed, say).
    pub fn retain(&mut self, mut keep: impl FnMut(u128, &T) -> bool) {
        self.entries.retain(|id, (t, _)| keep(*id, t));
    }

    /// How many requests are outstanding.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no request is outstanding.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_and_expiries() {
        let t0 = Instant::now();
        let mut txs = Transactions::new();
        txs.start(7, "b", t0 + Duration::from_secs(2));
        txs.start(3, "a", t0 + Duration::from_secs(2));
        txs.start(9, "c", t0 + Duration::from_secs(1));
        assert_eq!(txs.next_deadline(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(txs.take(9), Some("c"));
        assert_eq!(txs.take(9), None, "an answer ends a transaction once");
        assert_eq!(txs.pop_expired(t0), None);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(txs.pop_expired(later), Some((3, "a")));
        assert_eq!(txs.pop_expired(later), Some((7, "b")));
        assert!(txs.is_empty());
    }
}
