//! The check list: candidate pairs, their states and their order (RFC 8445 §6.1.2, with
//! RFC 6544's rules for TCP).
//!
//! Forming pairs for TCP keeps *active → passive* and *so ↔ so* (RFC 6544 §6.2): a local
//! active host candidate opens a connection to a remote passive one, and a local
//! simultaneous-open candidate opens one to a remote simultaneous-open one while the peer
//! opens the same connection the other way. A local passive candidate never starts a check
//! (it waits for the peer's connection), a remote active one cannot be connected to, and UDP
//! candidates are not paired at all. Pairs whose addresses are of different IP families are
//! dropped, and of pairs with the same local base and remote address only the
//! highest-priority one stays (RFC 8445 §6.1.2.4). Ferry's active and `so` connections both
//! leave from the listening port of their IP, so an active and an `so` candidate on one IP
//! share a base: toward a peer address offered both ways, one connection is tried, under the
//! better pair. Pairs a passive side learns from an incoming check are added later with
//! [`CheckList::add_passive`].
//!
//! Pairs are kept in insertion order, so indices stay stable for timers and transactions;
//! every choice ("which pair next", "which valid pair is best") scans them by priority,
//! breaking ties by index, so the order never depends on hashing.

use std::fmt;

use super::candidate::{Candidate, CandidateType, Transport};
use super::priority::pair_priority;
use super::{PairFailure, Role};
use crate::io::ConnId;

/// Which side opened the pair's TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// We connect: from a local active candidate to a remote passive one, or from a local
    /// simultaneous-open candidate to a remote one.
    Active,
    /// The peer connected to one of our passive candidates; we learned the pair from its
    /// first check.
    Passive,
}

/// Where a pair stands (RFC 8445 §6.1.2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairState {
    /// Waits for a pair of the same foundation to succeed, or for nothing else to do.
    Frozen,
    /// Ready to be checked at the next pacing tick.
    Waiting,
    /// Connecting, or a check is in flight.
    InProgress,
    /// A check succeeded: the pair is valid.
    Succeeded,
    /// Nothing more will be tried on it.
    Failed(PairFailure),
}

impl PairState {
    /// Whether nothing more will happen to the pair before nomination.
    pub fn is_finished(&self) -> bool {
        matches!(self, PairState::Succeeded | PairState::Failed(_))
    }
}

/// One candidate pair.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Our candidate.
    pub local: Candidate,
    /// The peer's candidate.
    pub remote: Candidate,
    /// RFC 8445 pair priority for the current roles.
    pub priority: u64,
    /// Where it stands.
    pub state: PairState,
    /// Who opens its connection.
    pub origin: Origin,
    /// Its connection, once asked for or accepted.
    pub conn: Option<ConnId>,
    /// Nominated: the controlling side's USE-CANDIDATE check succeeded, or the controlled
    /// side received one on this valid pair.
    pub nominated: bool,
    /// Controlled side: a USE-CANDIDATE check arrived before the pair was valid; it is
    /// nominated as soon as our own check on it succeeds (RFC 8445 §7.3.1.5).
    pub nominate_on_success: bool,
}

impl Pair {
    /// The pair's foundation: the two candidates' foundations together.
    pub fn foundation(&self) -> (&str, &str) {
        (&self.local.foundation, &self.remote.foundation)
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} → {} {}",
            self.local.kind.as_str(),
            self.local.addr,
            self.remote.kind.as_str(),
            self.remote.addr
        )
    }
}

/// The pairs of one ICE session.
#[derive(Debug, Clone, Default)]
pub struct CheckList {
    pairs: Vec<Pair>,
}

fn prioritise(role: Role, local: &Candidate, remote: &Candidate) -> u64 {
    match role {
        Role::Controlling => pair_priority(local.priority, remote.priority),
        Role::Controlled => pair_priority(remote.priority, local.priority),
    }
}

impl CheckList {
    /// Forms, prunes and orders the active pairs of `local` × `remote`, keeping at most
    /// `max_pairs` (the highest-priority ones), and sets the initial states: per foundation,
    /// the highest-priority pair is Waiting and the others Frozen (RFC 8445 §6.1.2.6).
    pub fn form(
        role: Role,
        local: &[Candidate],
        remote: &[Candidate],
        max_pairs: usize,
    ) -> CheckList {
        let mut pairs: Vec<Pair> = Vec::new();
        // An active connection leaves from a local interface: a server-reflexive local
        // candidate would be replaced by its base (§6.1.2.4), a host candidate the list
        // already holds, so only host candidates are paired — and relayed ones, whose
        // connections leave from the relay (RFC 6062 Connect).
        let opens = |c: &&Candidate| matches!(c.kind, CandidateType::Host | CandidateType::Relayed);
        // Relayed connections leave through a TURN Connect, which has no simultaneous open.
        let so = |c: &&Candidate| c.is_so() && c.kind == CandidateType::Host;
        for l in local
            .iter()
            .filter(|c| (c.is_active() || so(c)) && c.component == 1)
            .filter(opens)
        {
            // Active to passive, so to so (RFC 6544 §6.2).
            let partner = |r: &&Candidate| {
                if l.is_so() { r.is_so() } else { r.is_passive() }
            };
            for r in remote.iter().filter(|c| c.component == 1).filter(partner) {
                if l.addr.is_ipv4() != r.addr.is_ipv4() || r.transport != Transport::Tcp {
                    continue;
                }
                // Through our relay we connect only to the peer's relay: toward any other
                // passive candidate of the peer, its own active candidates connecting to
                // our relayed one make the same path without a Connect. Relay to relay has
                // no other way (two devices whose firewalls let out only the relay's port).
                if l.kind == CandidateType::Relayed && r.kind != CandidateType::Relayed {
                    continue;
                }
                let priority = prioritise(role, l, r);
                // Same local base and remote address: keep the best (§6.1.2.4). A relayed
                // base is not a host base even on one IP (a relay on this machine); active
                // (port 9) and so candidates of one IP connect from the same listening port.
                if let Some(twin) = pairs.iter_mut().find(|p| {
                    p.local.addr.ip() == l.addr.ip()
                        && p.local.kind == l.kind
                        && p.remote.addr == r.addr
                }) {
                    if priority > twin.priority {
                        twin.local = l.clone();
                        twin.remote = r.clone();
                        twin.priority = priority;
                    }
                    continue;
                }
                pairs.push(Pair {
                    local: l.clone(),
                    remote: r.clone(),
                    priority,
                    state: PairState::Frozen,
                    origin: Origin::Active,
                    conn: None,
                    nominated: false,
                    nominate_on_success: false,
                });
            }
        }
        // Highest priority first; the sort is stable, so equal priorities keep the order in
        // which the candidates were given.
        pairs.sort_by_key(|p| std::cmp::Reverse(p.priority));
        pairs.truncate(max_pairs);
        let mut list = CheckList { pairs };
        let mut seen: Vec<(String, String)> = Vec::new();
        for pair in &mut list.pairs {
            let f = (
                pair.local.foundation.clone(),
                pair.remote.foundation.clone(),
            );
            if !seen.contains(&f) {
                pair.state = PairState::Waiting;
                seen.push(f);
            }
        }
        list
    }

    /// Every pair, in insertion order (the order of [`CheckList::form`], then passive
    /// pairs as they were learned).
    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    /// One pair.
    pub fn get(&self, index: usize) -> Option<&Pair> {
        self.pairs.get(index)
    }

    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut Pair> {
        self.pairs.get_mut(index)
    }

    /// Adds the pair a passive side learned from the first check on an accepted connection,
    /// and returns its index. It starts In-Progress: its triggered check goes out next.
    pub fn add_passive(
        &mut self,
        role: Role,
        local: Candidate,
        remote: Candidate,
        conn: ConnId,
    ) -> usize {
        let priority = prioritise(role, &local, &remote);
        self.pairs.push(Pair {
            local,
            remote,
            priority,
            state: PairState::InProgress,
            origin: Origin::Passive,
            conn: Some(conn),
            nominated: false,
            nominate_on_success: false,
        });
        self.pairs.len() - 1
    }

    /// Recomputes every pair priority after a role change (G and D swap).
    pub fn set_role(&mut self, role: Role) {
        for p in &mut self.pairs {
            p.priority = prioritise(role, &p.local, &p.remote);
        }
    }

    /// The next ordinary check (RFC 8445 §6.1.4.2): the highest-priority Waiting pair, else
    /// the highest-priority Frozen one.
    pub fn next_to_check(&self) -> Option<usize> {
        self.next_to_check_unless(|_| false)
    }

    /// [`next_to_check`](Self::next_to_check), leaving the pairs for which `unlikely` holds
    /// (not expected to succeed) for when no other pair waits: a pacing interval spent on
    /// them first would delay the pair that works.
    pub fn next_to_check_unless(&self, unlikely: impl Fn(usize) -> bool) -> Option<usize> {
        let best = |state: &PairState, want_unlikely: bool| {
            self.pairs
                .iter()
                .enumerate()
                .filter(|(i, p)| {
                    p.origin == Origin::Active && &p.state == state && unlikely(*i) == want_unlikely
                })
                .max_by(|(i, a), (j, b)| a.priority.cmp(&b.priority).then(j.cmp(i)))
                .map(|(i, _)| i)
        };
        best(&PairState::Waiting, false)
            .or_else(|| best(&PairState::Frozen, false))
            .or_else(|| best(&PairState::Waiting, true))
            .or_else(|| best(&PairState::Frozen, true))
    }

    /// Unfreezes every Frozen pair with this foundation (a pair of it succeeded).
    pub fn unfreeze(&mut self, local: &str, remote: &str) {
        for p in &mut self.pairs {
            if p.state == PairState::Frozen && p.foundation() == (local, remote) {
                p.state = PairState::Waiting;
            }
        }
    }

    /// The valid pair the controlling agent should nominate, if it may now: the
    /// highest-priority Succeeded pair, once every pair above it has finished — or at
    /// once when `impatient` (the nomination wait is over).
    pub fn nomination_candidate(&self, impatient: bool) -> Option<usize> {
        self.nomination_candidate_unless(impatient, |_| false)
    }

    /// Whether pair `idx` is the best that can still win: no pair above it has succeeded,
    /// and none above it is still in progress or waiting unless `unlikely` holds for it (a
    /// pair that failed and waits to be tried again does not count, as for nomination).
    /// Regular nomination would nominate such a pair as soon as its check succeeds.
    pub fn best_possible_unless(&self, idx: usize, unlikely: impl Fn(usize) -> bool) -> bool {
        let Some(pair) = self.pairs.get(idx) else {
            return false;
        };
        !self.pairs.iter().enumerate().any(|(i, p)| {
            p.priority > pair.priority
                && match p.state {
                    PairState::Succeeded => true,
                    PairState::Failed(_) => false,
                    _ => !unlikely(i),
                }
        })
    }

    /// [`nomination_candidate`](Self::nomination_candidate), letting no pair for which
    /// `unlikely` holds (a pair not expected to succeed) hold nomination back.
    pub fn nomination_candidate_unless(
        &self,
        impatient: bool,
        unlikely: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let (best, _) = self
            .pairs
            .iter()
            .enumerate()
            .filter(|(_, p)| p.state == PairState::Succeeded)
            .max_by(|(i, a), (j, b)| a.priority.cmp(&b.priority).then(j.cmp(i)))?;
        // No Succeeded pair is above the best one: what may block it is a pair above still
        // in progress or waiting, as for a check that nominates at once.
        (impatient || self.best_possible_unless(best, unlikely)).then_some(best)
    }
}

/// Whether `pair` (formed from our `local` and the peer's `remote` candidates) cannot be
/// expected to succeed: its remote end is a private host address (RFC 1918, RFC 6598 shared,
/// link-local, IPv6 unique-local) of the peer's network and the two of us are not on one
/// network, as our public addresses tell: both know theirs (server-reflexive candidates of
/// that family) and they differ, or all our host addresses of that family are public (the
/// peer's private network cannot be ours). Such a pair is still checked (a VPN may route
/// it), but waiting for it would hold nomination back for its whole connect timeout.
pub(super) fn unlikely(local: &[Candidate], remote: &[Candidate], pair: &Pair) -> bool {
    if pair.remote.kind != CandidateType::Host || !is_private(pair.remote.addr.ip()) {
        return false;
    }
    let v4 = pair.remote.addr.is_ipv4();
    let public = |cands: &[Candidate]| -> Vec<core::net::IpAddr> {
        cands
            .iter()
            .filter(|c| c.kind == CandidateType::ServerReflexive && c.addr.is_ipv4() == v4)
            .map(|c| c.addr.ip())
            .collect()
    };
    let (ours, theirs) = (public(local), public(remote));
    let apart =
        !ours.is_empty() && !theirs.is_empty() && !ours.iter().any(|ip| theirs.contains(ip));
    let hosts: Vec<&Candidate> = local
        .iter()
        .filter(|c| c.kind == CandidateType::Host && c.addr.is_ipv4() == v4)
        .collect();
    let all_public = !hosts.is_empty()
        && hosts
            .iter()
            .all(|c| !is_private(c.addr.ip()) && !c.addr.ip().is_loopback());
    apart || all_public
}

/// A private, shared or link-local address: reachable only inside its own network.
fn is_private(ip: core::net::IpAddr) -> bool {
    match ip {
        core::net::IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || v4.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        core::net::IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ice::TcpType;

    fn cand(kind: CandidateType, tcp: TcpType, addr: &str) -> Candidate {
        Candidate::tcp(kind, tcp, addr.parse().expect("an address"), 65535)
    }

    /// Whether the pair from our first active host candidate to `remote_host` is unlikely.
    fn judge(local: &[Candidate], remote: &[Candidate], remote_host: &str) -> bool {
        let list = CheckList::form(Role::Controlling, local, remote, 100);
        let pair = list
            .pairs()
            .iter()
            .find(|p| p.remote.addr == remote_host.parse().expect("an address"))
            .expect("the pair");
        unlikely(local, remote, pair)
    }

    #[test]
    fn a_private_address_of_another_network_is_unlikely_and_nothing_else_is() {
        use CandidateType::{Host, ServerReflexive};
        use TcpType::{Active, Passive};
        let behind = |host: &str, public: &str| {
            vec![
                cand(Host, Active, &format!("{host}:5000")),
                cand(Host, Passive, &format!("{host}:5000")),
                cand(ServerReflexive, Passive, &format!("{public}:5000")),
            ]
        };
        let peer = behind("192.168.2.2", "203.0.113.2");
        // Two NATs, two public addresses: the peer's private address is not ours to reach.
        assert!(judge(
            &behind("192.168.1.2", "203.0.113.1"),
            &peer,
            "192.168.2.2:5000"
        ));
        // One NAT (the same public address): the same network, worth waiting for.
        assert!(!judge(
            &behind("192.168.2.3", "203.0.113.2"),
            &peer,
            "192.168.2.2:5000"
        ));
        // Its public address is always worth it.
        assert!(!judge(
            &behind("192.168.1.2", "203.0.113.1"),
            &peer,
            "203.0.113.2:5000"
        ));
        // We know no public address of ours, and have a private one: we may share a network.
        let unknown = vec![
            cand(Host, Active, "192.168.1.2:5000"),
            cand(Host, Passive, "192.168.1.2:5000"),
        ];
        assert!(!judge(&unknown, &peer, "192.168.2.2:5000"));
        // Every address of ours is public: no private network of the peer's is ours.
        let public = vec![
            cand(Host, Active, "198.51.100.7:5000"),
            cand(Host, Passive, "198.51.100.7:5000"),
        ];
        assert!(judge(&public, &peer, "192.168.2.2:5000"));
        // Shared (RFC 6598), link-local and unique-local addresses are private too.
        assert!(is_private("100.64.0.1".parse().expect("ip")));
        assert!(is_private("169.254.1.1".parse().expect("ip")));
        assert!(is_private("fd00::1".parse().expect("ip")));
        assert!(is_private("fe80::1".parse().expect("ip")));
        assert!(!is_private("2001:db8::1".parse().expect("ip")));
        assert!(!is_private("100.128.0.1".parse().expect("ip")));
    }
}
