//! Links: the latency, jitter and bandwidth between a host or router and its network.
//!
//! Every host has one access link to its network and every router one uplink to its
//! parent network. A byte crossing a link waits for the bytes queued before it in the same
//! direction (bandwidth), then travels (latency plus a random jitter). A link that is down
//! carries nothing: connection attempts across it are lost and established connections hold
//! their data until it comes back, as TCP's retransmissions would.
//!
//! A link may also lose packets. TCP hides loss behind retransmission, so a loss shows as
//! delay: each crossing is lost with the link's probability, and each loss costs one
//! retransmission timeout, doubling from [`DATA_RTO`] (data) or [`SYN_RTO`] (handshake
//! segments, as Linux's initial RTO), for at most [`MAX_RETRIES`] losses in a row (then the
//! segment goes through: the simulator never gives up on a connection by itself). Order
//! within a connection is kept, so one loss delays everything behind it.

use std::time::Duration;

/// How a link behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkSpec {
    /// One-way delay.
    pub latency: Duration,
    /// Extra delay drawn uniformly in `0..=jitter` for each crossing. Within one connection
    /// bytes still arrive in order (TCP reorders for us), so jitter only spreads arrivals.
    pub jitter: Duration,
    /// Bytes per second in each direction; `None` is unlimited.
    pub bandwidth: Option<u64>,
    /// Probability that a crossing is lost (and retransmitted later).
    pub loss: f64,
}

/// First retransmission timeout of a data segment (Linux's minimum RTO).
pub const DATA_RTO: Duration = Duration::from_millis(200);
/// First retransmission timeout of a SYN or SYN-ACK (Linux's initial RTO).
pub const SYN_RTO: Duration = Duration::from_secs(1);
/// Losses in a row after which a crossing goes through anyway.
pub const MAX_RETRIES: u32 = 8;

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            latency: Duration::from_millis(5),
            jitter: Duration::ZERO,
            bandwidth: None,
            loss: 0.0,
        }
    }
}

impl LinkSpec {
    /// A link with this latency, no jitter and unlimited bandwidth.
    pub fn latency(latency: Duration) -> LinkSpec {
        LinkSpec {
            latency,
            ..LinkSpec::default()
        }
    }

    /// The same link with this jitter.
    pub fn with_jitter(self, jitter: Duration) -> LinkSpec {
        LinkSpec { jitter, ..self }
    }

    /// The same link with this bandwidth, in bytes per second.
    pub fn with_bandwidth(self, bytes_per_second: u64) -> LinkSpec {
        LinkSpec {
            bandwidth: Some(bytes_per_second.max(1)),
            ..self
        }
    }

    /// The same link losing each crossing with probability `loss`.
    pub fn with_loss(self, loss: f64) -> LinkSpec {
        LinkSpec { loss, ..self }
    }

    /// The delay of one crossing: latency, jitter, and retransmissions of what is lost
    /// (`rto` is the first retransmission timeout).
    pub(crate) fn delay(&self, rng: &mut crate::rng::SimRng, rto: Duration) -> Duration {
        let mut d = self.latency + rng.up_to(self.jitter);
        if self.loss > 0.0 {
            let mut rto = rto;
            for _ in 0..MAX_RETRIES {
                if !rng.chance(self.loss) {
                    break;
                }
                d += rto;
                rto *= 2;
            }
        }
        d
    }

    /// How long `bytes` take to be put on the wire.
    pub(crate) fn serialisation(&self, bytes: usize) -> Duration {
        match self.bandwidth {
            None => Duration::ZERO,
            Some(bw) => {
                Duration::from_nanos((bytes as u128 * 1_000_000_000 / u128::from(bw)) as u64)
            }
        }
    }
}

/// Which way a crossing goes: `Up` leaves a host towards its network, or a network towards
/// its parent; `Down` the other way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Way {
    Up = 0,
    Down = 1,
}

impl Way {
    pub(crate) fn reverse(self) -> Way {
        match self {
            Way::Up => Way::Down,
            Way::Down => Way::Up,
        }
    }
}

/// A link's state during a run.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    pub(crate) spec: LinkSpec,
    pub(crate) up: bool,
    /// When the bytes queued so far in each direction ([`Way`]) will have left.
    pub(crate) busy_until: [Duration; 2],
}

impl Link {
    pub(crate) fn new(spec: LinkSpec) -> Link {
        Link {
            spec,
            up: true,
            busy_until: [Duration::ZERO; 2],
        }
    }
}
