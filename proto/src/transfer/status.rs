//! Jami's transfer states (`DataTransferEventCode`), the reasons Ferry attaches to failures, and
//! [`FileError`], the driver's word on a failed file operation (a reason of its own, and part of
//! [`crate::io`]'s file vocabulary, which re-exports it).

use std::fmt;

use crate::transfer::frame::CancelCode;
use crate::transfer::header::HeaderError;

/// The state of one transfer, as Jami names it (`DataTransferEventCode`, in Jami's order),
/// plus Ferry's `digest_mismatch` at the end.
///
/// From the sender's side "host" is us and "peer" the receiver; from the receiver's side,
/// "host" is us and "peer" the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Status {
    /// Not a valid transfer.
    Invalid,
    /// Created; the file is being opened.
    Created,
    /// The peer's form of the protocol is not supported.
    Unsupported,
    /// Sender: the header is sent, waiting for `GO` / `NGO`.
    WaitPeerAcceptance,
    /// Receiver: the header arrived, waiting for the local user to accept or refuse.
    WaitHostAcceptance,
    /// Data is flowing.
    Ongoing,
    /// The file arrived whole (and, with Ferry's extension, its digest matched).
    Finished,
    /// Ended on this side: the local user refused or cancelled, or a local error.
    ClosedByHost,
    /// Ended by the other side: it refused, cancelled, broke the protocol or went away.
    ClosedByPeer,
    /// The name the peer offered cannot be used as a file name.
    InvalidPathname,
    /// No connection to the device could be established.
    UnjoinablePeer,
    /// An answer did not come in time: the receiver's to the header, within
    /// [`ACCEPT_TIMEOUT`](crate::transfer::ACCEPT_TIMEOUT) (sender); the local user's to an
    /// offer, within [`DECISION_TIMEOUT`](crate::transfer::DECISION_TIMEOUT), or the
    /// sender's header on a stream it opened, within
    /// [`HEADER_TIMEOUT`](crate::transfer::HEADER_TIMEOUT) (receiver).
    TimeoutExpired,
    /// Ferry: every byte arrived but the SHA3-512 did not match; nothing was kept.
    DigestMismatch,
}

impl Status {
    /// Jami's snake_case name of the state, as used in traces.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Invalid => "invalid",
            Status::Created => "created",
            Status::Unsupported => "unsupported",
            Status::WaitPeerAcceptance => "wait_peer_acceptance",
            Status::WaitHostAcceptance => "wait_host_acceptance",
            Status::Ongoing => "ongoing",
            Status::Finished => "finished",
            Status::ClosedByHost => "closed_by_host",
            Status::ClosedByPeer => "closed_by_peer",
            Status::InvalidPathname => "invalid_pathname",
            Status::UnjoinablePeer => "unjoinable_peer",
            Status::TimeoutExpired => "timeout_expired",
            Status::DigestMismatch => "digest_mismatch",
        }
    }

    /// Whether the transfer is over (successfully or not).
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Status::Created
                | Status::WaitPeerAcceptance
                | Status::WaitHostAcceptance
                | Status::Ongoing
        )
    }

    /// Whether this is a failure.
    pub fn is_error(self) -> bool {
        self.is_final() && self != Status::Finished
    }

    /// How far along the happy path this state is, for the optimistic view: `None` for errors.
    pub fn progress_rank(self) -> Option<u8> {
        match self {
            Status::Created => Some(0),
            Status::WaitPeerAcceptance | Status::WaitHostAcceptance => Some(1),
            Status::Ongoing => Some(2),
            Status::Finished => Some(3),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a transfer failed: the detail behind an error [`Status`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The receiver answered `NGO` (seen by the sender), or the local user refused (seen
    /// by the receiver).
    Refused,
    /// The local user cancelled.
    Cancelled,
    /// The peer sent CANCEL, with its code.
    PeerCancelled(CancelCode),
    /// The stream closed or reset before the transfer ended. A partial file is kept.
    ConnectionLost,
    /// The peer did not answer in time.
    Timeout,
    /// The peer's header could not be parsed.
    BadHeader(HeaderError),
    /// The peer broke the protocol (the detail says how).
    Protocol(&'static str),
    /// A local file operation failed.
    File(FileError),
    /// The received bytes do not have the announced SHA3-512.
    DigestMismatch,
    /// The device could not be reached: the stage that failed and why.
    Unreachable(String),
    /// A file taken as a picture without asking does not start as a JPEG, PNG, GIF or WebP
    /// does.
    NotAPicture,
    /// A file inside a folder, for a device that did not announce the `manifest` feature
    /// (Jami, an older Ferry): a folder cannot be sent to it (`PROTOCOL.md` §14).
    NoFolders,
    /// A manifest's offer ended with only `done` of its `files` files verified.
    Incomplete {
        /// Files verified.
        done: usize,
        /// Files the manifest lists.
        files: usize,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Refused => f.write_str("refused"),
            Reason::Cancelled => f.write_str("cancelled"),
            Reason::PeerCancelled(code) => write!(f, "cancelled by the peer ({code})"),
            Reason::ConnectionLost => f.write_str("connection lost"),
            Reason::Timeout => f.write_str("no answer in time"),
            Reason::BadHeader(e) => write!(f, "bad header: {e}"),
            Reason::Protocol(what) => write!(f, "protocol violation: {what}"),
            Reason::File(e) => write!(f, "file error: {e}"),
            Reason::DigestMismatch => f.write_str("SHA3-512 mismatch"),
            Reason::Unreachable(why) => write!(f, "unreachable: {why}"),
            Reason::NotAPicture => f.write_str(
                "not a picture: its first bytes are no JPEG, PNG, GIF or WebP (only pictures \
                 are taken without asking)",
            ),
            Reason::NoFolders => f.write_str(
                "the device does not read folders (an older Ferry, or Jami): send its files \
                 one by one",
            ),
            Reason::Incomplete { done, files } => {
                write!(f, "{done} of {files} files arrived and were verified")
            }
        }
    }
}

/// Why a file operation failed, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileError {
    /// The file or folder does not exist.
    NotFound,
    /// The operating system refused access.
    PermissionDenied,
    /// No space left on the device.
    DiskFull,
    /// The file is shorter than the range asked for (it changed under us).
    ShortRead,
    /// Anything else, as the operating system described it.
    Other(String),
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileError::NotFound => f.write_str("not found"),
            FileError::PermissionDenied => f.write_str("permission denied"),
            FileError::DiskFull => f.write_str("disk full"),
            FileError::ShortRead => f.write_str("file shorter than expected"),
            FileError::Other(s) => f.write_str(s),
        }
    }
}
