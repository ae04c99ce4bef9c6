//! The path a selected pair takes, named as users (and Jami's logs) name it: which kinds of
//! candidate the two ends are, and whether a relay carries the bytes.

use std::fmt;

use super::candidate::CandidateType;

/// The kinds of the two candidates of the selected pair, as this side sees them.
///
/// On TCP the side that connected always sees its own end as `host` (the connection leaves
/// from an interface) and the other end as whatever it connected to; the side that accepted
/// sees its passive candidate and, behind a NAT, a peer-reflexive peer. Either side names
/// the same path the same way: [`name`](Self::name) takes the most telling of the two kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectedPath {
    /// Our candidate's kind.
    pub local: CandidateType,
    /// The peer's candidate's kind.
    pub remote: CandidateType,
    /// Whether the peer reached our listening port through a mapping the home router made
    /// for it (PCP, NAT-PMP, UPnP-IGD): on the wire such a candidate is `srflx`, so only
    /// the side that holds the mapping knows it (the node sets it; ICE leaves it false).
    pub mapped: bool,
}

impl SelectedPath {
    /// Whether a TURN relay carries the bytes (either end is a relayed candidate).
    pub fn is_relayed(&self) -> bool {
        self.local == CandidateType::Relayed || self.remote == CandidateType::Relayed
    }

    /// `relay-relay` when both ends are relayed, `relay` when one is, else `mapped` when
    /// [`mapped`](Self::mapped), `srflx` or `prflx` when an end is reflexive (through a
    /// NAT), else `host`.
    pub fn name(&self) -> &'static str {
        let either = |kind| self.local == kind || self.remote == kind;
        if self.local == CandidateType::Relayed && self.remote == CandidateType::Relayed {
            "relay-relay"
        } else if self.is_relayed() {
            "relay"
        } else if self.mapped {
            "mapped"
        } else if either(CandidateType::ServerReflexive) {
            "srflx"
        } else if either(CandidateType::PeerReflexive) {
            "prflx"
        } else {
            "host"
        }
    }

    /// `relayed` or `direct`.
    pub fn class(&self) -> &'static str {
        if self.is_relayed() {
            "relayed"
        } else {
            "direct"
        }
    }
}

impl fmt::Display for SelectedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.class())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CandidateType::*;

    #[test]
    fn a_path_is_named_by_its_most_telling_end() {
        let name = |local, remote| {
            SelectedPath {
                local,
                remote,
                mapped: false,
            }
            .to_string()
        };
        assert_eq!(name(Host, Host), "host (direct)");
        assert_eq!(name(Host, ServerReflexive), "srflx (direct)");
        assert_eq!(name(Host, PeerReflexive), "prflx (direct)");
        assert_eq!(name(Host, Relayed), "relay (relayed)");
        assert_eq!(name(Relayed, PeerReflexive), "relay (relayed)");
        assert_eq!(name(Relayed, Relayed), "relay-relay (relayed)");
        let mapped = SelectedPath {
            local: Host,
            remote: PeerReflexive,
            mapped: true,
        };
        assert_eq!(mapped.to_string(), "mapped (direct)");
    }
}
