//! Remembering which requests were already seen, so a replayed or duplicated DHT value is
//! ignored, in bounded memory.

use std::collections::{BTreeSet, VecDeque};

use crate::tls::DeviceId;

/// Most (device, id) pairs remembered; the oldest are forgotten first.
pub const REMEMBERED: usize = 4096;

/// The (sender device, message id) pairs seen.
#[derive(Debug, Clone, Default)]
pub struct SeenIds {
    set: BTreeSet<(DeviceId, u64, bool)>,
    order: VecDeque<(DeviceId, u64, bool)>,
}

impl SeenIds {
    /// Nothing seen.
    pub fn new() -> SeenIds {
        SeenIds::default()
    }

    /// How many (device, id) pairs are remembered (at most [`REMEMBERED`]).
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Records a request (`is_answer` false) or answer; `false` if it was seen before.
    pub fn first_time(&mut self, from: DeviceId, id: u64, is_answer: bool) -> bool {
        let key = (from, id, is_answer);
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > REMEMBERED {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Forgets that a request or answer was seen, so that it counts as new when it comes
    /// again (one that could not be taken up then, for lack of room, gets another chance
    /// with the sender's next retry).
    pub fn forget(&mut self, from: DeviceId, id: u64, is_answer: bool) {
        let key = (from, id, is_answer);
        if self.set.remove(&key) {
            self.order.retain(|k| *k != key);
        }
    }
}
