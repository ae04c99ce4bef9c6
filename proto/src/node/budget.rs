//! A budget of signature work per DHT key and time window.
//!
//! Anyone on the DHT can put any number of values under any key: under our own key (where
//! requests for us arrive, each opened with HPKE and its certificates and signature
//! checked) and under the keys of the accounts we look up (their announcements, each
//! verified). Without a bound, a flood of values, valid or not, buys the flooder as much of
//! our CPU as it likes. So each key has a budget: at most [`REQUEST_CHECKS_PER_WINDOW`] (our
//! key) or [`ANNOUNCEMENT_CHECKS_PER_WINDOW`] (an account's) values checked per
//! [`SIGNATURE_WINDOW`]. Only values shaped like signed values count (the envelope, the
//! version, the account's certificate: see `signal::worth_opening` and
//! `Announcement::worth_verifying`); anything else is dropped before, at the cost of a parse,
//! so garbage cannot use up the budget. A legitimate sender's values are not starved by a steady flood:
//! past the budget, [`HELD_PER_WINDOW`] of the window's extra values, drawn at random
//! (reservoir sampling, so the flooder cannot push a value out by sending after it), are
//! held and checked first in the next window; the others are dropped and counted
//! ([`DroppedValues::over_signature_budget`](super::DroppedValues::over_signature_budget)).
//! A request the sampling dropped comes again with its sender's retry. A flood far above the
//! budget still delays legitimate values (each is checked with the chance the sampling
//! gives it): bounded CPU is what the budget buys, not immunity to a flooder.
//!
//! Under the budget nothing changes: a value is checked as it arrives, with no delay.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::rng::SeededRng;

/// The time window of the signature budgets.
pub const SIGNATURE_WINDOW: Duration = Duration::from_secs(1);
/// Most values under our own key (sealed requests and answers) opened and checked per
/// [`SIGNATURE_WINDOW`]: five times what a node answering
/// [`MAX_CONNECTORS`](super::MAX_CONNECTORS) requesters, each putting its request again
/// every [`REQUEST_RETRY`](super::REQUEST_RETRY), needs (about 51), and a few percent of
/// one core at most (a key agreement and three signature checks each).
pub const REQUEST_CHECKS_PER_WINDOW: u32 = 256;
/// Most values under one looked-up account's key (announcements, revocation lists)
/// verified per [`SIGNATURE_WINDOW`]: more than three times what that account's
/// [`MAX_CONNECTORS_PER_ACCOUNT`](super::MAX_CONNECTORS_PER_ACCOUNT) devices and its
/// revocation list put at once.
pub const ANNOUNCEMENT_CHECKS_PER_WINDOW: u32 = 64;
/// Values held past a key's budget in one window, checked first in the next.
pub const HELD_PER_WINDOW: usize = 8;

/// What to do with a value that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    /// Check it now.
    Now,
    /// Held for the next window (when the window ends: [`SignatureBudget::window_end`]).
    Held,
    /// Over the budget, and not drawn to be held (or pushed out of the held ones).
    Dropped,
}

/// One key's budget: see the module docs.
#[derive(Debug, Clone)]
pub(super) struct SignatureBudget {
    limit: u32,
    /// When the current window started (`None`: no value since the last one ended).
    start: Option<Instant>,
    /// Values checked in the current window.
    used: u32,
    /// Values past the budget in the current window.
    over: u32,
    /// Values held for the next window (at most [`HELD_PER_WINDOW`]).
    held: Vec<Bytes>,
}

impl SignatureBudget {
    /// A budget of `limit` checks per window.
    pub(super) fn new(limit: u32) -> SignatureBudget {
        SignatureBudget {
            limit,
            start: None,
            used: 0,
            over: 0,
            held: Vec::new(),
        }
    }

    /// Whether `value`, arriving at `now`, is checked now, held, or dropped. Call
    /// [`roll`](Self::roll) first, so a window that ended hands its held values on.
    pub(super) fn admit(&mut self, now: Instant, value: &Bytes, rng: &mut SeededRng) -> Admit {
        if self.start.is_none() {
            self.start = Some(now);
        }
        if self.used < self.limit {
            self.used += 1;
            return Admit::Now;
        }
        self.over = self.over.saturating_add(1);
        if self.held.len() < HELD_PER_WINDOW {
            self.held.push(value.clone());
            return Admit::Held;
        }
        // Reservoir sampling: each of the window's `over` extra values has the same chance
        // to be among those held, whenever it came.
        let j = (u64::from(rng.next_u32()) % u64::from(self.over)) as usize;
        match self.held.get_mut(j) {
            Some(slot) => {
                *slot = value.clone();
                Admit::Held
            }
            None => Admit::Dropped,
        }
    }

    /// When the current window ends, if it holds values (the node's timer to
    /// [`roll`](Self::roll)).
    pub(super) fn window_end(&self) -> Option<Instant> {
        self.start
            .filter(|_| !self.held.is_empty())
            .map(|s| s + SIGNATURE_WINDOW)
    }

    /// Ends the window if it is over at `now`: a new one starts, and the values held are
    /// returned, to be checked now on the new window's budget.
    pub(super) fn roll(&mut self, now: Instant) -> Vec<Bytes> {
        let Some(start) = self.start else {
            return Vec::new();
        };
        if now < start + SIGNATURE_WINDOW {
            return Vec::new();
        }
        let held = std::mem::take(&mut self.held);
        self.over = 0;
        self.used = held.len() as u32;
        self.start = (!held.is_empty()).then_some(now);
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gets_the_budget_then_a_fair_sample_and_the_next_window_starts_with_it() {
        let t0 = Instant::now();
        let mut rng = SeededRng::new(7);
        let mut b = SignatureBudget::new(4);
        // SECURITY: row 126
        let values: Vec<Bytes> = (0..100u8).map(|i| Bytes::from(vec![i])).collect();
        let verdicts: Vec<Admit> = values.iter().map(|v| b.admit(t0, v, &mut rng)).collect();
        assert!(verdicts[..4].iter().all(|a| *a == Admit::Now));
        assert!(verdicts[4..12].iter().all(|a| *a == Admit::Held));
        assert_eq!(verdicts.iter().filter(|a| **a == Admit::Now).count(), 4);
        // Not only the first extra values are held: later ones pushed some out.
        assert!(verdicts[12..].contains(&Admit::Held));
        assert_eq!(b.window_end(), Some(t0 + SIGNATURE_WINDOW));
        assert!(b.roll(t0 + SIGNATURE_WINDOW / 2).is_empty());
        let held = b.roll(t0 + SIGNATURE_WINDOW);
        assert_eq!(held.len(), HELD_PER_WINDOW);
        assert!(held.iter().any(|v| v[0] >= 12), "{held:?}");
        // The held values are checked on the new window's budget (8 of its 4 here), so the
        // next value waits again.
        assert_eq!(
            b.admit(t0 + SIGNATURE_WINDOW, &values[0], &mut rng),
            Admit::Held
        );
        // Quiet windows hold nothing and need no timer.
        let mut quiet = SignatureBudget::new(4);
        assert_eq!(quiet.admit(t0, &values[0], &mut rng), Admit::Now);
        assert_eq!(quiet.window_end(), None);
        assert!(quiet.roll(t0 + SIGNATURE_WINDOW).is_empty());
        assert_eq!(
            quiet.admit(t0 + SIGNATURE_WINDOW, &values[0], &mut rng),
            Admit::Now
        );
    }
}
