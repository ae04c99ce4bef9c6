//! [`Transfer`]: one transfer, whichever way it goes, for an owner that runs both kinds side by
//! side (the node, a test driver) and wants the house verbs without matching on the direction.

use std::time::Instant;

use super::{Incoming, Input, Outgoing, Output, Status, TransferId};
use crate::Error;

/// An [`Outgoing`] or an [`Incoming`] transfer, with the verbs both share.
#[derive(Debug)]
pub enum Transfer {
    /// We send the file.
    Outgoing(Outgoing),
    /// We receive the file.
    Incoming(Incoming),
}

impl Transfer {
    /// The transfer's id.
    pub fn id(&self) -> TransferId {
        match self {
            Transfer::Outgoing(m) => m.id(),
            Transfer::Incoming(m) => m.id(),
        }
    }

    /// Where the transfer stands.
    pub fn status(&self) -> Status {
        match self {
            Transfer::Outgoing(m) => m.status(),
            Transfer::Incoming(m) => m.status(),
        }
    }

    /// Takes an input from the stream or the file system.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), Error> {
        match self {
            Transfer::Outgoing(m) => m.handle_input(now, input),
            Transfer::Incoming(m) => m.handle_input(now, input),
        }
    }

    /// Runs the transfer's timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self {
            Transfer::Outgoing(m) => m.handle_timeout(now),
            Transfer::Incoming(m) => m.handle_timeout(now),
        }
    }

    /// Cancels the transfer (the local user's decision).
    pub fn cancel(&mut self, now: Instant) {
        match self {
            Transfer::Outgoing(m) => m.cancel(now),
            Transfer::Incoming(m) => m.cancel(now),
        }
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        match self {
            Transfer::Outgoing(m) => m.poll_output(),
            Transfer::Incoming(m) => m.poll_output(),
        }
    }

    /// The transfer's next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Transfer::Outgoing(m) => m.poll_timeout(),
            Transfer::Incoming(m) => m.poll_timeout(),
        }
    }

    /// Whether the transfer is final and has nothing more to say.
    pub fn is_drained(&self) -> bool {
        match self {
            Transfer::Outgoing(m) => m.is_drained(),
            Transfer::Incoming(m) => m.is_drained(),
        }
    }
}
