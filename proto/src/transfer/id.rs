//! [`TransferId`], a transfer's name on the wire and in every event, and [`PartialKey`],
//! whose partial data a received file is.

use std::fmt;

use crate::tls::AccountId;

/// Names one transfer (Jami's `tid`: a random non-zero `u64`, chosen by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransferId(pub u64);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whose partial data a received file is: the account of the sender, when the stream's peer
/// is known (a node's pinned TLS session), and the id the sender gave the transfer. Partial
/// data is kept and found by this key and never by the offered name, so two peers (or two
/// sends) offering one name never touch each other's data, and only the sender that left a
/// prefix, re-sending under the same id, can resume into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartialKey {
    /// The sender's account; `None` on a bare stream whose peer the core does not know.
    pub sender: Option<AccountId>,
    /// The id the sender gave the transfer.
    pub transfer: TransferId,
}

impl fmt::Display for PartialKey {
    /// `<account, 40 hex>-<transfer id, 16 hex>`, `anonymous-<id>` without an account: a
    /// file name of fixed form that no offered name decides.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sender {
            Some(account) => write!(f, "{account}-{:016x}", self.transfer.0),
            None => write!(f, "anonymous-{:016x}", self.transfer.0),
        }
    }
}
