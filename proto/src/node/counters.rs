//! What the node counts: values it dropped because they failed a check
//! ([`DroppedValues`]), and errors of its children that cannot come ([`Bugs`]).
//!
//! The children answer `Err` only to caller mistakes, and the node is their only caller:
//! every such `Err` is a bug of the node or of that child. It is never dropped silently.
//! [`Bugs`] counts each by where it came from; a debug build (the tests, the simulator's
//! sweep) stops at the first one, and a release build counts it and goes on as if the call
//! had done nothing, which is what the node did before it counted.

use std::fmt::Display;

/// Values dropped because they failed a check, by kind: for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedValues {
    /// DHT values under our key that did not open or verify.
    pub unopened: u64,
    /// Requests or answers seen before (replays, duplicates, retries).
    pub replayed: u64,
    /// Answers to no request of ours, or from another device than asked.
    pub unexpected: u64,
    /// Announcements that did not verify.
    pub bad_announcements: u64,
    /// Connections closed before any check named their session: silent for
    /// [`UNROUTED_TIMEOUT`](super::UNROUTED_TIMEOUT), past
    /// [`UNROUTED_LIMIT`](super::UNROUTED_LIMIT) bytes, or whose first frame was no check.
    pub unrouted: u64,
    /// Requests from accounts that are neither ours nor contacts, with
    /// [`NodeConfig::only_contacts`](super::NodeConfig::only_contacts) on.
    pub not_a_contact: u64,
    /// Unrouted connections closed to make room for newer ones
    /// ([`UNROUTED_PER_SOURCE`](super::UNROUTED_PER_SOURCE),
    /// [`UNROUTED_MAX`](super::UNROUTED_MAX)).
    pub evicted: u64,
    /// Requests left unanswered because their account already had
    /// [`MAX_CONNECTORS_PER_ACCOUNT`](super::MAX_CONNECTORS_PER_ACCOUNT) connectors, or the
    /// node [`MAX_CONNECTORS`](super::MAX_CONNECTORS), none of which could go.
    pub requests_over_budget: u64,
    /// Device announcements not kept because their account already had
    /// [`MAX_CONNECTORS_PER_ACCOUNT`](super::MAX_CONNECTORS_PER_ACCOUNT) devices known.
    pub devices_over_budget: u64,
    /// Channels a peer asked for and we declined: its account already had
    /// [`MAX_TRANSFERS_PER_PEER`](super::MAX_TRANSFERS_PER_PEER) incoming transfers, or
    /// [`MAX_OFFERS_PER_PEER`](super::MAX_OFFERS_PER_PEER) offers not accepted yet; or it sent
    /// more on a channel before our answer than
    /// [`EARLY_PER_CHANNEL`](crate::channel::EARLY_PER_CHANNEL) allows (or the connection's
    /// [`EARLY_PER_CONNECTION`](crate::channel::EARLY_PER_CONNECTION)).
    pub channels_over_budget: u64,
    /// Channels a peer asked for under transfer id 0 (reserved) or one we already use (for a transfer of ours,
    /// sent or received, or a file group): declined, so a peer-chosen id never takes the
    /// place of ours.
    pub transfer_id_in_use: u64,
    /// DHT values never opened or verified: they came past their key's signature budget
    /// ([`REQUEST_CHECKS_PER_WINDOW`](super::REQUEST_CHECKS_PER_WINDOW),
    /// [`ANNOUNCEMENT_CHECKS_PER_WINDOW`](super::ANNOUNCEMENT_CHECKS_PER_WINDOW) per
    /// [`SIGNATURE_WINDOW`](super::SIGNATURE_WINDOW)) and were not drawn to be held for the
    /// next window.
    pub over_signature_budget: u64,
    /// Requests whose time is outside [`REQUEST_WINDOW`](crate::signal::REQUEST_WINDOW)
    /// of ours, or without a time from a device that announced
    /// [`REQUEST_TIME`](crate::signal::REQUEST_TIME): old requests replayed.
    pub stale_requests: u64,
    /// Files that named a manifest (`PROTOCOL.md` §14) and were refused `invalid`: not in
    /// an accepted manifest of that connection, not listed, listed with another size, or
    /// come twice.
    pub manifest_files_refused: u64,
}

/// A child's `Err` where none can come, counted by where it came from (see
/// [`Node::bugs`](super::Node::bugs)). None of these was reached by the test suite, the
/// conformance suite on every driver or the simulator's sweep when they were counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bugs {
    /// A TURN client refused an input about one of its connections (it refuses only inputs
    /// that are about no connection, which the node never routes to it).
    pub turn_input: u64,
    /// An ICE agent refused an input (it refuses only an accepted connection named in the
    /// core's space, or named twice; the node names them apart).
    pub agent_input: u64,
    /// A TURN client refused bytes for a relayed stream it no longer has (the agents hear
    /// of every stream a client drops before they can write to it again).
    pub relay_send: u64,
    /// An ICE agent refused TLS bytes: it had no selected pair (a connector drops its TLS
    /// session as soon as its agent fails).
    pub agent_send: u64,
    /// A TLS session refused channel bytes: it was not established (channels exist only
    /// while it is).
    pub tls_send: u64,
    /// A multiplexer refused a transfer's bytes: the channel was not open (a transfer
    /// sends only until it closes its stream).
    pub channel_send: u64,
    /// A multiplexer refused to accept or decline a channel it had just offered.
    pub channel_answer: u64,
    /// A multiplexer refused to end a transfer's channel (a transfer ends its stream once).
    pub channel_end: u64,
    /// A transfer refused what its channel brought (it refuses only file results).
    pub transfer_input: u64,
    /// An incoming picture that was still waiting for a decision could not be accepted.
    pub auto_accept: u64,
    /// Our multiplexer refused to open a channel: [`MAX_CHANNELS`](crate::channel::MAX_CHANNELS)
    /// are in use on that connection (by the peer's offers or by our own transfers). This
    /// one can happen, so it is counted but not asserted: the sub-transfer keeps waiting,
    /// and is opened when that connection next becomes ready.
    pub channel_open: u64,
    /// A device's manifest broke a rule of §14 although the send's entries were checked
    /// against them (a device's manifest differs only in its ids): its files fail instead.
    pub manifest: u64,
}

impl Bugs {
    /// How many in all.
    pub fn total(&self) -> u64 {
        let Bugs {
            turn_input,
            agent_input,
            relay_send,
            agent_send,
            tls_send,
            channel_send,
            channel_answer,
            channel_end,
            transfer_input,
            auto_accept,
            channel_open,
            manifest,
        } = *self;
        turn_input
            + agent_input
            + relay_send
            + agent_send
            + tls_send
            + channel_send
            + channel_answer
            + channel_end
            + transfer_input
            + auto_accept
            + channel_open
            + manifest
    }
}

/// Counts one `Err` a child cannot return, and stops a debug build there.
pub(super) fn bug(counter: &mut u64, what: &str, error: &dyn Display) {
    *counter += 1;
    if cfg!(debug_assertions) {
        panic!("node bug: {what}: {error}");
    }
}
