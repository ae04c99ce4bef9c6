//! [`TransferId`], a transfer's name on the wire and in every event.

use std::fmt;

/// Names one transfer (Jami's `tid`: a random non-zero `u64`, chosen by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferId(pub u64);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
