//! Candidate and pair priorities.
//!
//! Candidates use the formula of Jami's pjnath, which is RFC 8445 §5.1.2.1's with its type
//! preferences: `(type_pref << 24) + (local_pref << 8) + (256 - component)`, type preference
//! host 126, peer-reflexive 110, server-reflexive 100, relayed 0. Relayed candidates thus
//! always rank below every direct one, which is what makes a relay the last resort without
//! a second mechanism. Pairs use RFC 8445 §6.1.2.3.

/// A candidate's priority from its type preference (pjnath's table is
/// [`CandidateType::type_preference`](super::CandidateType::type_preference)). `component` is 1
/// for every Ferry candidate (one TCP stream).
pub fn candidate_priority(type_preference: u8, local_preference: u16, component: u16) -> u32 {
    let component = u32::from(component.clamp(1, 256));
    (u32::from(type_preference) << 24) + (u32::from(local_preference) << 8) + (256 - component)
}

/// The local preference of a TCP candidate (RFC 6544 §4.2): `2^13 · direction-pref +
/// other-pref`, where the other preference is the low 13 bits of the owner's own
/// `local_preference` (its order among its addresses). libnice computes it the same way;
/// Jami's pjnath gives every candidate 65535, and the peer's values only ever enter a pair's
/// priority, which both sides compute from the same two numbers.
pub fn tcp_local_preference(
    kind: super::CandidateType,
    tcp_type: super::TcpType,
    local_preference: u16,
) -> u16 {
    (tcp_type.direction_preference(kind) << 13) | (local_preference & 0x1fff)
}

/// How local candidates get their local preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalPreference {
    /// Every candidate gets the same value. The seed's description shows Jami giving every
    /// host candidate 65535 (priority 2130706431).
    Flat(u16),
    /// The first candidate gets `start`, each next one one less (pjnath's running index).
    Running {
        /// The first candidate's local preference.
        start: u16,
    },
}

impl LocalPreference {
    /// The local preference of the `index`-th local candidate (from 0).
    pub fn of(self, index: usize) -> u16 {
        match self {
            LocalPreference::Flat(v) => v,
            LocalPreference::Running { start } => {
                start.saturating_sub(u16::try_from(index).unwrap_or(u16::MAX))
            }
        }
    }
}

impl Default for LocalPreference {
    /// Jami's: a flat 65535.
    fn default() -> Self {
        LocalPreference::Flat(u16::MAX)
    }
}

/// A pair's priority from the controlling agent's candidate priority `g` and the controlled
/// agent's `d` (RFC 8445 §6.1.2.3): `2^32·min(G,D) + 2·max(G,D) + (G>D ? 1 : 0)`. Both
/// agents compute the same value for the same pair.
pub fn pair_priority(g: u32, d: u32) -> u64 {
    let (g, d) = (u64::from(g), u64::from(d));
    (g.min(d) << 32) + 2 * g.max(d) + u64::from(g > d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ice::CandidateType;

    #[test]
    fn jami_values() {
        assert_eq!(
            candidate_priority(CandidateType::Host.type_preference(), 65535, 1),
            2_130_706_431
        );
        // The seed's srflx line: 1694498815 = 100 << 24 | 65535 << 8 | 255.
        assert_eq!(
            candidate_priority(CandidateType::ServerReflexive.type_preference(), 65535, 1),
            1_694_498_815
        );
        assert_eq!(
            candidate_priority(CandidateType::Relayed.type_preference(), 65535, 1),
            16_777_215
        );
    }

    #[test]
    fn pair_priority_is_symmetric_in_meaning() {
        assert_eq!(pair_priority(5, 3), (3u64 << 32) + 10 + 1);
        assert_eq!(pair_priority(3, 5), (3u64 << 32) + 10);
    }
}
