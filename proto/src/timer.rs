//! One table of deadlines per state machine, keyed by an enum of its timers.
//!
//! `poll_timeout` is the earliest entry; `handle_timeout` takes the expired ones in key
//! order, so what happens when two timers fire together never depends on hashing.

use std::collections::BTreeMap;
use std::time::Instant;

/// Deadlines keyed by `T`.
#[derive(Debug, Clone)]
pub struct Timers<T: Ord + Copy> {
    deadlines: BTreeMap<T, Instant>,
}

impl<T: Ord + Copy> Default for Timers<T> {
    fn default() -> Self {
        Timers {
            deadlines: BTreeMap::new(),
        }
    }
}

impl<T: Ord + Copy> Timers<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Arms (or re-arms) `timer` for `at`.
    pub fn set(&mut self, timer: T, at: Instant) {
        self.deadlines.insert(timer, at);
    }

    /// Disarms `timer`.
    pub fn clear(&mut self, timer: T) {
        self.deadlines.remove(&timer);
    }

    /// Disarms every timer.
    pub fn clear_all(&mut self) {
        self.deadlines.clear();
    }

    /// When `timer` fires, if armed.
    pub fn get(&self, timer: T) -> Option<Instant> {
        self.deadlines.get(&timer).copied()
    }

    /// Whether `timer` is armed.
    pub fn is_set(&self, timer: T) -> bool {
        self.deadlines.contains_key(&timer)
    }

    /// How many timers are armed.
    pub fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.deadlines.is_empty()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.values().min().copied()
    }

    /// The earliest timer with its deadline.
    pub fn next_timer(&self) -> Option<(T, Instant)> {
        self.deadlines
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(t, at)| (*t, *at))
    }

    /// Disarms and returns one timer that expired at or before `now`, in key order.
    pub fn pop_expired(&mut self, now: Instant) -> Option<T> {
        let timer = self
            .deadlines
            .iter()
            .find(|(_, at)| **at <= now)
            .map(|(t, _)| *t)?;
        self.deadlines.remove(&timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expired_timers_come_out_in_key_order() {
        let t0 = Instant::now();
        let mut timers = Timers::new();
        timers.set(2u8, t0 + Duration::from_secs(1));
        timers.set(1u8, t0 + Duration::from_secs(1));
        timers.set(3u8, t0 + Duration::from_secs(5));
        assert_eq!(timers.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(timers.pop_expired(t0), None);
        let later = t0 + Duration::from_secs(2);
        assert_eq!(timers.pop_expired(later), Some(1));
        assert_eq!(timers.pop_expired(later), Some(2));
        assert_eq!(timers.pop_expired(later), None);
        assert_eq!(timers.next_timer(), Some((3, t0 + Duration::from_secs(5))));
    }
}
