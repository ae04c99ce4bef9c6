//! What the network tells us about ourselves: our public address, and whether nodes reach
//! us without our asking.
//!
//! Every reply of OpenDHT carries `sa`, the address the replier saw us at. As 2.4.12's
//! `Dht::reportedAddr` does, we count the addresses reported in answers to our own
//! requests (a reply whose transaction id, address and node id we checked, so a stranger
//! cannot vote) and take the most reported one, per family, as our public address.
//!
//! Reachability is Ferry's own: OpenDHT does not measure it (its `public_stable` is a
//! setting its user gives). A node behind a NAT that filters by address hears only from
//! the nodes it sent to; so a *request* from an address (IP and port) we never sent to
//! shows that others reach us from outside. Its absence proves nothing by itself: the
//! verdict says "no" only once we have been in a network of at least `BUSY_NETWORK` good
//! nodes for `NO_STRANGER_WINDOW` without any stranger asking, and "unknown" before.

use core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

/// Addresses we remember sending requests to (oldest forgotten first).
// SECURITY: row 155
pub const MAX_CONTACTED: usize = 1024;
/// Distinct strangers remembered (enough to count a few; more tells nothing new).
pub const MAX_STRANGERS: usize = 64;
/// Distinct reported addresses counted, per family (a stranger cannot vote, but a node we
/// asked could report anything: the least reported is forgotten first).
pub const MAX_REPORTED: usize = 16;
/// How long without a stranger, in a busy network, before we say "not reachable".
pub const NO_STRANGER_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Good nodes our tables must hold for the silence of strangers to mean something.
pub const BUSY_NETWORK: usize = 8;

/// Whether nodes reach us without our asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A node we never sent to sent us a request.
    Yes,
    /// In a busy network for a while, and no stranger ever asked.
    No,
    /// Not enough seen to tell.
    Unknown,
}

impl Verdict {
    /// "yes", "no" or "unknown".
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Yes => "yes",
            Verdict::No => "no",
            Verdict::Unknown => "unknown",
        }
    }
}

/// What we learnt about ourselves.
#[derive(Debug, Clone, Default)]
pub struct Reach {
    contacted: BTreeSet<SocketAddr>,
    contacted_order: VecDeque<SocketAddr>,
    strangers: BTreeSet<SocketAddr>,
    /// Requests from strangers, in all.
    pub stranger_requests: u64,
    reported4: BTreeMap<IpAddr, u64>,
    reported6: BTreeMap<IpAddr, u64>,
    /// `sa` fields counted, in all.
    pub reports: u64,
}

impl Reach {
    /// We sent a request to `to`.
    pub(super) fn contacted(&mut self, to: SocketAddr) {
        if self.contacted.insert(to) {
            self.contacted_order.push_back(to);
            if self.contacted_order.len() > MAX_CONTACTED {
                if let Some(old) = self.contacted_order.pop_front() {
                    self.contacted.remove(&old);
                }
            }
        }
    }

    /// A request came from `from`.
    pub(super) fn request_from(&mut self, from: SocketAddr) {
        if self.contacted.contains(&from) {
            return;
        }
        self.stranger_requests += 1;
        if self.strangers.len() < MAX_STRANGERS {
            self.strangers.insert(from);
        }
    }

    /// A checked reply said it saw us at `ip`.
    pub(super) fn reported(&mut self, ip: IpAddr) {
        if ip.is_unspecified() {
            return;
        }
        self.reports += 1;
        let table = if ip.is_ipv6() {
            &mut self.reported6
        } else {
            &mut self.reported4
        };
        if !table.contains_key(&ip) && table.len() >= MAX_REPORTED {
            let least = table.iter().min_by_key(|(_, n)| **n).map(|(a, _)| *a);
            if let Some(least) = least {
                table.remove(&least);
            }
        }
        *table.entry(ip).or_default() += 1;
    }

    /// Our public address of one family: the one most reported (`getPublicAddress`).
    pub fn public_address(&self, ipv6: bool) -> Option<IpAddr> {
        let table = if ipv6 {
            &self.reported6
        } else {
            &self.reported4
        };
        table.iter().max_by_key(|(_, n)| **n).map(|(a, _)| *a)
    }

    /// Distinct strangers that sent us requests (at most [`MAX_STRANGERS`]).
    pub fn strangers(&self) -> usize {
        self.strangers.len()
    }

    /// The verdict, having been joined for `joined_for` with `good` good nodes now.
    pub fn verdict(&self, joined_for: Option<Duration>, good: usize) -> Verdict {
        if !self.strangers.is_empty() {
            Verdict::Yes
        } else if joined_for.is_some_and(|d| d >= NO_STRANGER_WINDOW) && good >= BUSY_NETWORK {
            Verdict::No
        } else {
            Verdict::Unknown
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    #[test]
    fn a_request_from_an_address_never_asked_is_a_stranger() {
        let mut r = Reach::default();
        r.contacted(a("192.0.2.1:4222"));
        r.request_from(a("192.0.2.1:4222"));
        assert_eq!(r.verdict(None, 0), Verdict::Unknown);
        r.request_from(a("192.0.2.9:4222"));
        assert_eq!((r.strangers(), r.verdict(None, 0)), (1, Verdict::Yes));
    }

    #[test]
    fn silence_means_no_only_in_a_busy_network_after_a_while() {
        let r = Reach::default();
        let long = Some(NO_STRANGER_WINDOW);
        assert_eq!(r.verdict(long, BUSY_NETWORK - 1), Verdict::Unknown);
        assert_eq!(
            r.verdict(Some(Duration::from_secs(60)), 50),
            Verdict::Unknown
        );
        assert_eq!(r.verdict(long, BUSY_NETWORK), Verdict::No);
    }

    // SECURITY: row 155
    #[test]
    fn the_most_reported_address_wins_and_the_table_stays_bounded() {
        let mut r = Reach::default();
        let ours: IpAddr = "198.51.100.7".parse().expect("ip");
        for _ in 0..3 {
            r.reported(ours);
        }
        for i in 0..100u8 {
            r.reported(IpAddr::from([203, 0, 113, i]));
        }
        assert_eq!(r.public_address(false), Some(ours));
        assert!(r.reported4.len() <= MAX_REPORTED);
        assert_eq!(r.public_address(true), None);
        for i in 0..(MAX_CONTACTED as u16 + 10) {
            r.contacted(SocketAddr::from(([10, 0, 0, 1], i)));
        }
        assert_eq!(r.contacted.len(), MAX_CONTACTED);
    }
}
