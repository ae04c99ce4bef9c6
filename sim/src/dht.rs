//! A model of the DHT as an endpoint sees it: put, listen (which also gets what is there),
//! cancel; with latency, loss, duplication, reordering, and values that expire.
//!
//! The DHT stands for the whole internet outside the simulated topology: NATs and
//! partitions do not affect it, but a host whose access link is down cannot reach it.
//! Each delivery to a listener draws its own delay, loss and duplication, so two values
//! put in one order may arrive in the other — as with OpenDHT, where nothing orders them.
//! A put that is lost is answered `ok: false` (OpenDHT reports a failed put).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::io::DhtKey;

use crate::ids::HostId;

/// How the DHT behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DhtSpec {
    /// Least one-way delay of a put or a delivery.
    pub latency: Duration,
    /// Extra delay drawn uniformly in `0..=jitter` for each put and each delivery.
    pub jitter: Duration,
    /// Probability that a put, or one delivery, is lost.
    pub loss: f64,
    /// Probability that a delivery arrives twice.
    pub duplicate: f64,
    /// How long a stored value lives (OpenDHT's default is 10 minutes).
    pub ttl: Duration,
    /// Values kept per key; past this the oldest go (bounded memory).
    pub max_values: usize,
}

impl Default for DhtSpec {
    fn default() -> Self {
        DhtSpec {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(100),
            loss: 0.0,
            duplicate: 0.0,
            ttl: Duration::from_secs(600),
            max_values: 64,
        }
    }
}

/// One value in the store, and when it expires.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) value: Bytes,
    pub(crate) expires: Duration,
}

/// The DHT's state.
#[derive(Debug, Default)]
pub(crate) struct Dht {
    pub(crate) spec: DhtSpec,
    pub(crate) store: BTreeMap<DhtKey, VecDeque<Stored>>,
    pub(crate) listeners: BTreeMap<DhtKey, BTreeSet<HostId>>,
    stores: u64,
}

/// Stores between two sweeps of expired values.
const SWEEP_EVERY: u64 = 1024;

impl Dht {
    pub(crate) fn new(spec: DhtSpec) -> Dht {
        Dht {
            spec,
            ..Dht::default()
        }
    }

    pub(crate) fn values(&self, key: DhtKey, now: Duration) -> Vec<Bytes> {
        self.store.get(&key).map_or_else(Vec::new, |vs| {
            vs.iter()
                .filter(|s| s.expires > now)
                .map(|s| s.value.clone())
                .collect()
        })
    }

    /// Every so many stores, forgets every expired value, so keys nobody touches again do
    /// not pile up: memory follows the values alive, not the values ever put.
    pub(crate) fn sweep(&mut self, now: Duration) {
        self.stores += 1;
        if self.stores % SWEEP_EVERY != 0 {
            return;
        }
        self.store.retain(|_, vs| {
            vs.retain(|s| s.expires > now);
            !vs.is_empty()
        });
    }

    pub(crate) fn expire(&mut self, key: DhtKey, now: Duration) {
        if let Some(vs) = self.store.get_mut(&key) {
            vs.retain(|s| s.expires > now);
            if vs.is_empty() {
                self.store.remove(&key);
            }
        }
    }
}
