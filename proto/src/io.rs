//! The I/O vocabulary: what a driver feeds a state machine and what it must carry out.
//!
//! Every driver — the simulator, the smol and tokio runtimes, a test harness — speaks these
//! types and nothing else. A state machine that implements [`Endpoint`] can be run by any of
//! them: a whole `Node`, a lone TURN client, or a test endpoint.
//!
//! This module owns the *shape* of I/O only: TCP lifecycle, DHT access, file access and
//! timers, and the [`Event`] type that reaches the application. It does no I/O itself.
//!
//! # Identifiers
//!
//! Both sides name things, and the names never collide:
//! - the core names its listeners ([`ListenerId`]), the connections it asks for
//!   ([`ConnId::Connect`]) and its files ([`FileId`]);
//! - the driver names the connections it accepted ([`ConnId::Accepted`]).

use core::net::SocketAddr;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;

// The transfer's values this vocabulary names come from their own files, which depend on
// nothing here; the transfer machines above speak this vocabulary.
use crate::transfer::digest::Digest;
use crate::transfer::id::TransferId;
pub use crate::transfer::status::FileError;
use crate::transfer::status::{Reason, Status};

/// How many top-level names [`Event::IncomingManifest`] shows.
pub const MANIFEST_NAMES_SHOWN: usize = 5;

/// How long a driver keeps a connection after [`Output::Close`] while the peer has not
/// closed its side: the socket (a descriptor) is held that long at most.
pub const CLOSE_LINGER: Duration = Duration::from_secs(10);

/// A listening socket, named by the core when it asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenerId(pub u32);

/// One TCP connection.
///
/// The two variants are two name spaces: the core picks the number of a connection it asks
/// the driver to open; the driver picks the number of a connection it accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnId {
    /// Opened on the core's request ([`Output::Connect`]).
    Connect(u32),
    /// Accepted by the driver on a listener ([`Input::Accepted`]).
    Accepted(u32),
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnId::Connect(n) => write!(f, "c{n}"),
            ConnId::Accepted(n) => write!(f, "a{n}"),
        }
    }
}

/// A file the core reads or writes, named by the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u64);

/// A DHT key: 20 bytes, like OpenDHT's `InfoHash`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DhtKey(pub [u8; 20]);

impl fmt::Debug for DhtKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DhtKey({})", hex::encode(self.0))
    }
}

/// Why a TCP connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The remote answered with a reset (nobody listens there).
    Refused,
    /// Nothing answered before the connect timeout.
    TimedOut,
    /// No route to the address.
    Unreachable,
    /// The local port asked for could not be bound.
    LocalPortUnavailable,
    /// Anything else, as the operating system described it.
    Other(String),
}

/// A file operation the core asks of the driver. Each has exactly one answer,
/// a [`FileResult`] with the same [`FileId`].
///
/// Files being received are always written under a *partial* name; only
/// [`FileOp::Commit`] gives them their final name, and only after the digest matched.
/// Names are [`SafeName`](crate::transfer::SafeName)s: one path component, relative to the
/// driver's receive folder, so nothing is ever written outside it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileOp {
    /// Open a file the application asked to send; answered by [`FileResult::Opened`] with
    /// its length. `source` is the application's own reference, passed back unchanged.
    OpenSource {
        /// The name the core gives this file.
        file: FileId,
        /// The application's reference to the file (a path for the runtimes).
        source: String,
    },
    /// Open (or create) the partial file for an incoming transfer; answered by
    /// [`FileResult::Opened`] with the length already held, which is where a resume starts.
    OpenPartial {
        /// The name the core gives this file.
        file: FileId,
        /// The final name, given at the commit (the partial data is not named after it).
        name: crate::transfer::name::SafeName,
        /// The size of the whole file: an existing partial file longer than this is
        /// truncated to zero (it cannot be a prefix of this file).
        size: u64,
        /// Whose partial data this is: the driver keeps and finds it by this key alone.
        key: crate::transfer::id::PartialKey,
        /// Whether a prefix held under `key` may be kept. `false` for a peer that sends no
        /// digest to check a prefix against (Jami's raw form): what is held is emptied and
        /// the file starts at 0.
        resume: bool,
        /// For a file of an accepted manifest (`PROTOCOL.md` §14): where it goes, below the
        /// tree [`FileOp::MakeTree`] made for that manifest; `None` for a file on its own,
        /// committed at the top of the receive folder under `name`.
        place: Option<crate::transfer::manifest::Place>,
    },
    /// Read `len` bytes at `offset`; answered by [`FileResult::Data`].
    Read {
        /// Which file.
        file: FileId,
        /// First byte.
        offset: u64,
        /// How many bytes; never more than the core can send.
        len: u32,
    },
    /// Write `data` at `offset`; answered by [`FileResult::Written`].
    Write {
        /// Which file.
        file: FileId,
        /// Where the first byte goes.
        offset: u64,
        /// The bytes.
        data: Bytes,
    },
    /// Compute the SHA3-512 of the first `len` bytes of the file; answered by
    /// [`FileResult::Digest`]. A driver may hash the bytes as they pass through its reads and
    /// writes and read from disk only what it has not seen (see
    /// [`StreamDigest`](crate::transfer::StreamDigest)), on a thread of its own.
    Digest {
        /// Which file.
        file: FileId,
        /// How many bytes, from the start.
        len: u64,
    },
    /// Flush the partial file to disk and give it its final name, never replacing an existing
    /// file; answered by [`FileResult::Committed`] with the name it got.
    Commit {
        /// Which file.
        file: FileId,
    },
    /// Make the folders of an accepted manifest (`PROTOCOL.md` §14) before its `GO`: each
    /// top-level entry gets a free name in the receive folder once (the `name (1)` rule),
    /// remembered under `key` (the sender's account and the manifest's id), and every folder
    /// the manifest lists, or that holds a file of it, is made below it, never following a
    /// link. Answered by [`FileResult::TreeMade`], or [`FileResult::Failed`] (the manifest is
    /// then refused). `file` names the operation only: no file is opened.
    MakeTree {
        /// Names this operation and its answer.
        file: FileId,
        /// The sender's account and the manifest's id.
        key: crate::transfer::id::PartialKey,
        /// The manifest, as accepted.
        manifest: crate::transfer::manifest::Manifest,
    },
    /// Forget the top-level names [`FileOp::MakeTree`] kept under `key`: every file of that
    /// manifest arrived, so no send taken up again will need them. Answered by
    /// [`FileResult::Closed`] (also when nothing was kept). `file` names the operation only.
    ForgetTree {
        /// Names this operation and its answer.
        file: FileId,
        /// The sender's account and the manifest's id.
        key: crate::transfer::id::PartialKey,
    },
    /// Delete the partial file; answered by [`FileResult::Closed`].
    Discard {
        /// Which file.
        file: FileId,
    },
    /// Close the file and keep it as it is (a partial file stays, for a later resume);
    /// answered by [`FileResult::Closed`].
    Close {
        /// Which file.
        file: FileId,
    },
    /// Empty an open partial file (its held prefix did not match the sender's file: the
    /// transfer starts again at 0); answered by [`FileResult::Opened`] with length 0.
    Truncate {
        /// Which file.
        file: FileId,
    },
}

impl FileOp {
    /// The file this operation is about.
    pub fn file(&self) -> FileId {
        match self {
            FileOp::OpenSource { file, .. }
            | FileOp::OpenPartial { file, .. }
            | FileOp::Read { file, .. }
            | FileOp::Write { file, .. }
            | FileOp::Digest { file, .. }
            | FileOp::Commit { file }
            | FileOp::MakeTree { file, .. }
            | FileOp::ForgetTree { file, .. }
            | FileOp::Discard { file }
            | FileOp::Close { file }
            | FileOp::Truncate { file } => *file,
        }
    }
}

/// The driver's answer to a [`FileOp`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileResult {
    /// The file is open; `len` is its current length.
    Opened {
        /// Which file.
        file: FileId,
        /// Its length in bytes.
        len: u64,
    },
    /// The bytes of a [`FileOp::Read`].
    Data {
        /// Which file.
        file: FileId,
        /// Where they start.
        offset: u64,
        /// The bytes, exactly as many as asked.
        data: Bytes,
    },
    /// A [`FileOp::Write`] is done.
    Written {
        /// Which file.
        file: FileId,
        /// Where it started.
        offset: u64,
        /// How many bytes.
        len: u32,
    },
    /// The digest asked for by [`FileOp::Digest`].
    Digest {
        /// Which file.
        file: FileId,
        /// SHA3-512 of the range.
        digest: Digest,
    },
    /// The file has its final name (which may differ from the one asked for, when that one
    /// was taken).
    Committed {
        /// Which file.
        file: FileId,
        /// The name it was given.
        name: String,
    },
    /// The folders of a manifest are made ([`FileOp::MakeTree`]).
    TreeMade {
        /// Which operation.
        file: FileId,
    },
    /// The file is closed (and deleted, after [`FileOp::Discard`]).
    Closed {
        /// Which file.
        file: FileId,
    },
    /// The operation failed.
    Failed {
        /// Which file.
        file: FileId,
        /// What went wrong.
        error: FileError,
    },
}

impl FileResult {
    /// The file this result is about.
    pub fn file(&self) -> FileId {
        match self {
            FileResult::Opened { file, .. }
            | FileResult::Data { file, .. }
            | FileResult::Written { file, .. }
            | FileResult::Digest { file, .. }
            | FileResult::Committed { file, .. }
            | FileResult::Closed { file }
            | FileResult::TreeMade { file }
            | FileResult::Failed { file, .. } => *file,
        }
    }
}

/// Something that happened, fed to an [`Endpoint`] by its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// A listener asked for with [`Output::Listen`] is bound.
    Listening {
        /// Which listener.
        listener: ListenerId,
        /// The address it is bound to (with the port the system chose).
        local: SocketAddr,
    },
    /// A listener could not be bound.
    ListenFailed {
        /// Which listener.
        listener: ListenerId,
        /// Why, as the operating system said.
        reason: String,
    },
    /// A connection asked for with [`Output::Connect`] is established.
    Connected {
        /// Which connection.
        conn: ConnId,
        /// The local address it uses.
        local: SocketAddr,
    },
    /// A connection asked for with [`Output::Connect`] could not be established.
    ConnectFailed {
        /// Which connection.
        conn: ConnId,
        /// Why.
        error: ConnectError,
    },
    /// A listener accepted a connection; the driver named it.
    Accepted {
        /// The listener that accepted it.
        listener: ListenerId,
        /// The driver's name for it, always [`ConnId::Accepted`].
        conn: ConnId,
        /// The remote address.
        remote: SocketAddr,
    },
    /// Bytes arrived on a connection.
    Received {
        /// Which connection.
        conn: ConnId,
        /// The bytes, in order; any split is possible.
        data: Bytes,
    },
    /// The driver has handed `bytes` more of this connection's queued bytes to the network,
    /// so the core may queue that much more (see [`Output::Send`]).
    Writable {
        /// Which connection.
        conn: ConnId,
        /// How many bytes left the driver's queue.
        bytes: usize,
    },
    /// The remote closed its sending side (end of stream); we may still send.
    HalfClosed {
        /// Which connection.
        conn: ConnId,
    },
    /// The connection is closed in both directions.
    Closed {
        /// Which connection.
        conn: ConnId,
    },
    /// The connection was reset (by the remote or the network).
    Reset {
        /// Which connection.
        conn: ConnId,
    },
    /// A value arrived on a DHT key the core listens to (or a value it asked for).
    DhtValue {
        /// The key.
        key: DhtKey,
        /// The value's bytes, untrusted.
        value: Bytes,
    },
    /// A DHT put completed, or failed.
    DhtPutDone {
        /// The key.
        key: DhtKey,
        /// Whether the network stored it.
        ok: bool,
    },
    /// The answer to a [`FileOp`].
    File(FileResult),

    // ----- port mapping (the driver's service, see `crate::portmap`) -----
    /// The gateway maps a TCP port to a listener asked for with [`Output::MapPort`]: a new
    /// mapping, or the renewal of one (same listener, perhaps another external address).
    /// The node offers `mapping.external` to peers as a server-reflexive passive candidate.
    PortMapped {
        /// The listener whose port is mapped.
        listener: ListenerId,
        /// What the gateway granted.
        mapping: crate::portmap::PortMapping,
    },
    /// No mapping for this listener: none could be made (no gateway answered, every
    /// protocol refused), or a renewal failed and the mapping is gone. Its candidate is
    /// withdrawn from what the node offers next.
    PortMappingLost {
        /// The listener.
        listener: ListenerId,
        /// Why, for logs.
        reason: String,
    },
    /// Every mapping asked for was deleted (or the gateway could not be reached to delete
    /// it): the answer to [`Output::UnmapPorts`].
    PortsUnmapped,
}

/// Something the driver must do, drained from an [`Endpoint`] with `poll_output`.
///
/// `E` is what the endpoint tells its owner: [`Event`] for a whole node, a narrower type for
/// a component run on its own (a lone TURN client reports its relayed address, say).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output<E = Event> {
    /// Bind a TCP listener. Port 0 lets the system choose. The listening port may later be
    /// used as the local port of outbound connections (address and port reuse).
    Listen {
        /// The core's name for it.
        listener: ListenerId,
        /// Where to bind.
        local: SocketAddr,
    },
    /// Open a TCP connection.
    Connect {
        /// The core's name for it, always [`ConnId::Connect`].
        conn: ConnId,
        /// Where to.
        remote: SocketAddr,
        /// Bind this local port first (a listening port, for ICE-TCP and simultaneous open).
        local_port: Option<u16>,
        /// Give up after this long and answer [`ConnectError::TimedOut`].
        timeout: Duration,
    },
    /// Queue bytes on a connection. The core never has more than its send window queued
    /// and not yet acknowledged by [`Input::Writable`], so the driver's buffers stay bounded.
    Send {
        /// Which connection.
        conn: ConnId,
        /// The bytes.
        data: Bytes,
    },
    /// Close our sending side once the queued bytes are sent (TCP FIN); keep reading.
    HalfClose {
        /// Which connection.
        conn: ConnId,
    },
    /// Close the connection once the queued bytes are sent: a FIN after them, then the
    /// driver keeps reading (and discarding) until the peer's FIN, for at most
    /// [`CLOSE_LINGER`], so that bytes the peer sent after our last read never turn the
    /// close into a reset that loses our last bytes. The socket is therefore held up to
    /// [`CLOSE_LINGER`] after a `Close` towards a peer that never closes: a connection we
    /// drop because its peer misbehaved, with nothing of ours to deliver, is ended by
    /// [`Output::Reset`] instead.
    Close {
        /// Which connection.
        conn: ConnId,
    },
    /// Abort the connection now (TCP RST), dropping what is queued.
    Reset {
        /// Which connection.
        conn: ConnId,
    },
    /// Stop delivering [`Input::Received`] for this connection until
    /// [`Output::ResumeReading`]: the core is behind (its disk is slow, say), and TCP's own
    /// window will push back on the peer.
    PauseReading {
        /// Which connection.
        conn: ConnId,
    },
    /// Deliver [`Input::Received`] again.
    ResumeReading {
        /// Which connection.
        conn: ConnId,
    },
    /// Close a listener.
    Unlisten {
        /// Which listener.
        listener: ListenerId,
    },
    /// Store a value on the DHT.
    DhtPut {
        /// The key.
        key: DhtKey,
        /// The value.
        value: Bytes,
    },
    /// Deliver every value stored under this key, now and later, as [`Input::DhtValue`].
    DhtListen {
        /// The key.
        key: DhtKey,
    },
    /// Stop a [`Output::DhtListen`].
    DhtCancelListen {
        /// The key.
        key: DhtKey,
    },
    /// A file operation.
    File(FileOp),
    /// Something for the owner (the application, for a node).
    Event(E),

    // ----- port mapping (the driver's service, see `crate::portmap`) -----
    /// Ask the home router to forward a TCP port to this listener (PCP, NAT-PMP, then
    /// UPnP-IGD), keep the mapping renewed, and report it with [`Input::PortMapped`] or
    /// [`Input::PortMappingLost`]. A driver without the service answers `PortMappingLost`.
    MapPort {
        /// The listener.
        listener: ListenerId,
        /// Its bound address (a LAN address: what the gateway forwards to).
        local: SocketAddr,
    },
    /// Delete every mapping made for this endpoint, then answer [`Input::PortsUnmapped`].
    UnmapPorts,
}

/// What the application hears.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A peer offers a file; the application accepts or refuses it.
    IncomingTransfer {
        /// The transfer.
        transfer: TransferId,
        /// The sanitised name the file will get.
        name: String,
        /// The whole file size.
        size: u64,
        /// Who offers it, once known (a node fills it in; a lone transfer cannot know).
        from: Option<crate::tls::PeerIdentity>,
    },
    /// A peer offers several files and folders as one (`PROTOCOL.md` §14); the application
    /// accepts or refuses the whole with [`Node::accept`](crate::node::Node::accept) or
    /// [`Node::refuse`](crate::node::Node::refuse) of `manifest`. Once accepted, each of its
    /// files is told by [`ManifestFile`](Event::ManifestFile) and taken without asking; the
    /// manifest's own [`Status`](Event::Status) says when the offer is over.
    IncomingManifest {
        /// The manifest's id: what to accept or refuse.
        manifest: TransferId,
        /// Who offers it.
        from: crate::tls::PeerIdentity,
        /// How many files it lists.
        files: usize,
        /// How many folders it lists.
        folders: usize,
        /// The sum of the files' sizes.
        size: u64,
        /// Its first top-level names (at most [`MANIFEST_NAMES_SHOWN`]), made safe.
        names: Vec<String>,
    },
    /// A file of an accepted manifest began to arrive: it is taken without asking, and its
    /// [`Status`](Event::Status), [`Progress`](Event::Progress) and
    /// [`Verified`](Event::Verified) follow under `transfer`.
    ManifestFile {
        /// The manifest it belongs to.
        manifest: TransferId,
        /// The file's transfer.
        transfer: TransferId,
        /// Its path in the manifest (relative to the top of the offer, `/`-separated).
        path: String,
        /// Its size.
        size: u64,
    },
    /// A file sent to an account reaches one more of its devices: `transfer` is that
    /// device's sub-transfer of `group`. For a send of several files
    /// ([`Node::send_files`](crate::node::Node::send_files)), each device gets one with
    /// `group` the whole send and `transfer` that device's manifest (its offer), and one per
    /// file with `group` that file's group.
    SubTransfer {
        /// What [`send_file`](crate::node::Node::send_file) returned.
        group: TransferId,
        /// The sub-transfer to one device.
        transfer: TransferId,
        /// The device.
        device: crate::tls::DeviceId,
    },
    /// A device of an account we do not know asks to connect; answer with
    /// [`Node::allow_connection`](crate::node::Node::allow_connection) or
    /// [`Node::deny_connection`](crate::node::Node::deny_connection).
    ConnectionRequest {
        /// Its account.
        account: crate::tls::AccountId,
        /// The device.
        device: crate::tls::DeviceId,
    },
    /// A device's connection request was dropped before any answer: the requester hears
    /// nothing and learns none of our addresses. Once per request (a retried request is
    /// not told again).
    RequestDropped {
        /// Its account.
        account: crate::tls::AccountId,
        /// The device.
        device: crate::tls::DeviceId,
        /// Why: `"not a contact"` (only contacts are answered, see
        /// [`NodeConfig::only_contacts`](crate::node::NodeConfig::only_contacts)) or
        /// `"no room for one more connection"` (see
        /// [`MAX_CONNECTORS`](crate::node::MAX_CONNECTORS); its retry gets another chance).
        reason: &'static str,
    },
    /// A connection to (or from) a device is up (ICE selected a pair, TLS verified the
    /// device): which path carries it. Once per connection.
    Connected {
        /// The device.
        device: crate::tls::DeviceId,
        /// The selected pair's kinds: host, server- or peer-reflexive, relayed.
        path: crate::ice::SelectedPath,
    },
    /// A connection to (or from) a device failed: the stage and why. Transfers waiting on it
    /// hear it too, as [`Status`](Event::Status) `unjoinable_peer`.
    PeerUnreachable {
        /// The device.
        device: crate::tls::DeviceId,
        /// The stage that failed and why.
        reason: String,
    },
    /// The optimistic view of a file sent to every device of an account changed (see
    /// [`aggregate`](crate::aggregate)).
    Aggregate {
        /// What [`send_file`](crate::node::Node::send_file) returned.
        group: TransferId,
        /// The most advanced state, or an error when every device failed.
        status: Status,
        /// The most bytes any device got; never decreases.
        done: u64,
        /// The file's size.
        total: u64,
    },
    /// A transfer moved to another state.
    Status {
        /// The transfer.
        transfer: TransferId,
        /// Its new state.
        status: Status,
        /// Why, when the state is a failure.
        reason: Option<Reason>,
    },
    /// A transfer starts past 0, at what the receiver kept from an earlier try: both sides
    /// say so once, before the first new byte (a [`Progress`](Event::Progress) follows).
    Resuming {
        /// The transfer.
        transfer: TransferId,
        /// Where it starts: what the receiver kept from an earlier try.
        offset: u64,
        /// The whole file size.
        total: u64,
        /// Whether both sides checked the held prefix's SHA3-512 before the first new byte
        /// (the `prefix-digest` feature); otherwise only the whole file's digest at the end
        /// checks it.
        verified: bool,
    },
    /// The receiver held `held` bytes under this transfer's key that were not a prefix of
    /// the sender's file (their digests differ): they are emptied and the transfer starts
    /// at 0. Both sides say so once, before the first byte.
    Restarted {
        /// The transfer.
        transfer: TransferId,
        /// How many bytes the receiver held.
        held: u64,
        /// The whole file size.
        total: u64,
    },
    /// Bytes moved. `done` never decreases for a transfer.
    Progress {
        /// The transfer.
        transfer: TransferId,
        /// Receiving side: bytes on disk, a resumed prefix included. Sending side: bytes
        /// that left for the network (the receiver's VERDICT, not this, says they arrived).
        done: u64,
        /// The whole file size.
        total: u64,
    },
    /// The file arrived whole and its SHA3-512 matched; on the receiving side it now has
    /// its final name.
    Verified {
        /// The transfer.
        transfer: TransferId,
        /// The digest both sides agree on.
        digest: Digest,
        /// The final name (receiving side), empty on the sending side.
        name: String,
    },
    /// A peer's device asks us to send a transfer again
    /// ([`Node::ask_again`](crate::node::Node::ask_again) there); its request matched its
    /// TLS session. Answer with [`Node::answer_ask`](crate::node::Node::answer_ask) after
    /// checking the records: was `transfer` sent to `from`'s account, and is its source
    /// file unchanged?
    AskAgain {
        /// Names the request in the answer.
        request: crate::node::AskId,
        /// The asking account and device (TLS-verified).
        from: crate::tls::PeerIdentity,
        /// The transfer id the asking device saw.
        transfer: TransferId,
    },
    /// A device of the sender's account answered our request to send `transfer` again, or
    /// could not be asked (`device` is `None` when no device announced itself).
    AskAnswered {
        /// The transfer asked for.
        transfer: TransferId,
        /// The device that answered.
        device: Option<crate::tls::DeviceId>,
        /// Its answer, or why there is none.
        answer: Result<crate::conversation::AskAnswer, String>,
        /// Whether every device asked has now answered: the request is over.
        last: bool,
    },
    /// A node's [`shutdown`](crate::node::Node::shutdown) is complete: its transfers are
    /// cancelled, its connections closed and its TURN allocations deleted. The driver may stop.
    ShutDown,
}

/// Anything a driver can run: the sans-IO contract shared by every state machine in Ferry.
///
/// A driver calls, in a loop:
/// 1. [`handle_input`](Endpoint::handle_input) for each thing that happened, and
///    [`handle_timeout`](Endpoint::handle_timeout) when the deadline from
///    [`poll_timeout`](Endpoint::poll_timeout) has passed (extra calls are harmless);
/// 2. [`poll_output`](Endpoint::poll_output) until it returns `None`, carrying out each
///    [`Output`];
/// 3. [`poll_timeout`](Endpoint::poll_timeout), then waits for input or that deadline.
///
/// `now` never goes backwards between calls. Nothing inside reads a clock, opens a socket,
/// starts a thread or draws global randomness.
pub trait Endpoint {
    /// What the endpoint tells its owner through [`Output::Event`].
    type Event;

    /// Feed one input. An `Err` is a caller mistake (an id the endpoint never issued, say);
    /// everything the network or a peer does wrong becomes an [`Event`] instead.
    fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), crate::Error>;

    /// Let time pass up to `now`.
    fn handle_timeout(&mut self, now: Instant);

    /// The next thing to do, if any.
    fn poll_output(&mut self) -> Option<Output<Self::Event>>;

    /// When [`handle_timeout`](Endpoint::handle_timeout) should next be called.
    fn poll_timeout(&self) -> Option<Instant>;
}
