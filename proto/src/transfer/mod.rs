//! File transfer over one byte stream: Jami's header and `GO` / `NGO`, and Ferry's framed
//! extension with an explicit end, cancel and verdict. `PROTOCOL.md` at the repository root
//! gives the exact bytes.
//!
//! This module owns the codecs ([`header`], [`reply`], [`frame`]), the name check
//! ([`SafeName`]), the digest ([`Digest`], [`StreamDigest`]) and the two state machines,
//! [`Outgoing`] and [`Incoming`]. It does not own the stream: a transfer runs over whatever
//! authenticated byte stream its owner gives it and speaks to it through [`Input`] and
//! [`Output`].
//!
//! # Who closes
//! The side that sends the last message of a transfer does not close the stream: a TURN
//! relay turns a close into a reset and may drop the bytes just before it. It waits for the
//! other side to close, or for [`LINGER`]. The side that receives the last message closes.
//! A close or a reset is never taken for "finished": only END and VERDICT say that.

pub(crate) mod digest;
mod either;
pub mod frame;
pub mod header;
pub(crate) mod id;
mod incoming;
pub mod manifest;
pub(crate) mod name;
mod outgoing;
mod picture;
pub mod reply;
pub(crate) mod status;

use std::time::Duration;

use bytes::Bytes;

pub use digest::{Digest, StreamDigest};
pub use either::Transfer;
pub use id::{PartialKey, TransferId};
pub use incoming::Incoming;
pub use name::{MAX_NAME_BYTES, NameError, SafeName};
pub use outgoing::Outgoing;
pub use status::{FileError, Reason, Status};

use crate::io::{Event, FileOp, FileResult};

/// How long a sender waits for `GO` / `NGO` (Jami's `timeout_expired`).
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// How long an offer waits for the local user's answer before the receiver answers `NGO`
/// itself and the offer ends `timeout_expired`: as long as a sender waits for that answer.
/// A Ferry sender's wait started earlier (it sent the header) and normally ends first; this
/// one ends an offer whose sender never gives up, so an unanswered prompt is not kept for ever.
pub const DECISION_TIMEOUT: Duration = ACCEPT_TIMEOUT;
/// How long a receiver that was given a stream waits for the header (see
/// [`Incoming::with_header_deadline`]). A sender writes it as soon as the stream is open and
/// its file is: a round trip and a file open, seconds on a loaded host. A peer that opens
/// streams and withholds their headers holds each for no longer than this.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the side that sent a transfer's last message waits for the other side to close.
pub const LINGER: Duration = Duration::from_secs(30);
/// Most bytes a sender has handed to the stream and not yet seen leave (`Writable`).
pub const SEND_WINDOW: usize = 256 * 1024;
/// Most bytes a receiver has asked to write and not yet seen written; past it, it pauses
/// reading until the disk catches up.
pub const WRITE_WINDOW: usize = 512 * 1024;

/// Which form of the protocol a side offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Announce (sender) or accept (receiver) Ferry's framed extension, and fall back to
    /// Jami's raw form with a peer that does not.
    Framed,
    /// Speak only Jami's raw form, as Jami 2017–2021 did.
    Raw,
}

/// What a transfer's owner feeds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// Bytes from the peer.
    Received(Bytes),
    /// `n` more of our bytes left the stream's queue.
    Writable(usize),
    /// The peer closed the stream.
    StreamEnded,
    /// The stream was reset.
    StreamReset,
    /// The answer to a [`FileOp`] this transfer asked for.
    File(FileResult),
}

/// What a transfer asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Queue bytes on the stream.
    Send(Bytes),
    /// Queue a DATA frame on the stream: its header, then the file's bytes, the same bytes as
    /// a [`Send`](Output::Send) of both. Apart, so that the owner seals them into TLS records
    /// as they are instead of copying the file's bytes behind the header first.
    SendData {
        /// The frame's header ([`frame::data_header`]).
        header: [u8; frame::FRAME_HEADER],
        /// The payload, as the file read gave it.
        data: Bytes,
    },
    /// The transfer is done with the stream: close it once the queue is sent.
    Close,
    /// Abort the stream (Jami's raw form has no other way to cancel).
    Reset,
    /// Stop delivering received bytes for now (the disk is behind).
    PauseReading,
    /// Deliver received bytes again.
    ResumeReading,
    /// A file operation.
    File(FileOp),
    /// Something for the application.
    Event(Event),
}

/// Timers of both state machines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The sender's wait for `GO` / `NGO`.
    Accept,
    /// The receiver's wait for the header.
    Header,
    /// The receiver's wait for the local user's answer.
    Decision,
    /// The wait for the peer to close after our last message.
    Linger,
}
