//! What a node's outputs may be, given what it was told: the whole-node target checks each
//! output as it comes out, and the node's tables against their documented bounds after
//! every step.

use std::collections::{BTreeMap, BTreeSet};

use ferry_proto::io::{ConnId, Event, FileId, FileOp, FileResult, Input, ListenerId, Output};
use ferry_proto::node::{
    Bugs, MAX_CONNECTORS, MAX_CONNECTORS_PER_ACCOUNT, MAX_TRANSFERS_PER_PEER, Node, UNROUTED_MAX,
};
use ferry_proto::signal::{MAX_SEALED, REMEMBERED};

/// Where one of the node's connections stands, as the driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// Asked for with `Connect`, not answered yet.
    Connecting,
    /// Connected or accepted.
    Open,
    /// The remote reset it, or it failed: the node may still close it, not send on it.
    Dead,
    /// The node closed or reset it: nothing more from the node.
    Ended,
}

/// Most bytes a node may have queued on one connection and not acknowledged by
/// `Writable`: its send window with TLS and framing around it, and room to spare.
const MAX_UNACKED: usize = 4 * 1024 * 1024;

/// One side's view of what its node was told and asked for.
#[derive(Debug, Default)]
pub(super) struct Checker {
    listeners: BTreeSet<ListenerId>,
    conns: BTreeMap<ConnId, Conn>,
    unacked: BTreeMap<ConnId, usize>,
    /// Files asked to open (any op may follow), and files ended (none may follow).
    files: BTreeMap<FileId, bool>,
    /// Files asked to open, not answered yet.
    opening: BTreeSet<FileId>,
    /// Transfers the node named in its events.
    pub(super) named: BTreeSet<u64>,
    /// Files sent to this node's application, through `send_file`.
    pub(super) groups: usize,
}

impl Checker {
    /// Notes what `input` tells the node.
    pub(super) fn input(&mut self, input: &Input) {
        match input {
            Input::Connected { conn, .. } => {
                self.conns.entry(*conn).and_modify(|c| {
                    if *c == Conn::Connecting {
                        *c = Conn::Open;
                    }
                });
            }
            Input::Accepted { conn, .. } => {
                self.conns.insert(*conn, Conn::Open);
            }
            Input::ConnectFailed { conn, .. } | Input::Reset { conn } | Input::Closed { conn } => {
                self.conns.entry(*conn).and_modify(|c| {
                    if *c != Conn::Ended {
                        *c = Conn::Dead;
                    }
                });
            }
            Input::File(result) => self.file_result(result),
            Input::Writable { conn, bytes } => {
                if let Some(n) = self.unacked.get_mut(conn) {
                    *n = n.saturating_sub(*bytes);
                }
            }
            _ => {}
        }
    }

    /// Checks one output against what the node was told: panics if it is not well-formed.
    pub(super) fn output(&mut self, out: &Output) {
        match out {
            Output::Listen { listener, .. } => {
                assert!(self.listeners.insert(*listener), "{listener:?} bound twice");
            }
            Output::Connect { conn, remote, .. } => {
                assert!(matches!(conn, ConnId::Connect(_)), "Connect names {conn:?}");
                assert!(remote.port() != 0, "Connect to port 0");
                let fresh = self.conns.insert(*conn, Conn::Connecting).is_none();
                assert!(fresh, "{conn:?} asked for twice");
            }
            Output::Send { conn, data } => {
                let state = self.conns.get(conn).copied();
                assert!(
                    matches!(state, Some(Conn::Open | Conn::Dead)),
                    "Send on {conn:?}, which is {state:?}"
                );
                assert!(!data.is_empty(), "an empty Send on {conn:?}");
                let n = self.unacked.entry(*conn).or_default();
                *n += data.len();
                assert!(
                    *n <= MAX_UNACKED,
                    "{conn:?}: {n} bytes queued, unacknowledged"
                );
            }
            Output::HalfClose { conn } => {
                let state = self.conns.get(conn).copied();
                assert!(
                    matches!(state, Some(Conn::Open | Conn::Dead | Conn::Connecting)),
                    "HalfClose on {conn:?}, which is {state:?}"
                );
            }
            Output::Close { conn } | Output::Reset { conn } => {
                let state = self.conns.insert(*conn, Conn::Ended);
                assert!(
                    state.is_some() && state != Some(Conn::Ended),
                    "{out:?} on {conn:?}, which is {state:?}"
                );
            }
            Output::PauseReading { conn } | Output::ResumeReading { conn } => {
                assert!(
                    self.conns.contains_key(conn),
                    "{out:?} on an unknown connection"
                );
            }
            Output::Unlisten { listener } => {
                assert!(
                    self.listeners.contains(listener),
                    "Unlisten of {listener:?}"
                );
            }
            Output::DhtPut { value, .. } => {
                assert!(!value.is_empty(), "an empty DHT value");
                assert!(
                    value.len() <= MAX_SEALED,
                    "a DHT value of {} bytes",
                    value.len()
                );
            }
            Output::File(op) => self.file(op),
            Output::Event(event) => self.event(event),
            _ => {}
        }
    }

    fn file(&mut self, op: &FileOp) {
        let file = op.file();
        match op {
            FileOp::OpenSource { .. } | FileOp::OpenPartial { .. } => {
                assert!(
                    self.files.insert(file, false).is_none(),
                    "{file:?} opened twice"
                );
                self.opening.insert(file);
            }
            FileOp::Commit { .. } | FileOp::Discard { .. } | FileOp::Close { .. } => {
                let state = self.files.insert(file, true);
                assert_eq!(state, Some(false), "{op:?} on a file that is not open");
            }
            _ => {
                let state = self.files.get(&file);
                assert_eq!(state, Some(&false), "{op:?} on a file that is not open");
            }
        }
    }

    /// A failed open ends the file: nothing more may be asked of it. (Another operation
    /// that fails leaves it open: the node closes or discards it.)
    pub(super) fn file_result(&mut self, result: &FileResult) {
        let file = result.file();
        let opening = self.opening.remove(&file);
        if opening && matches!(result, FileResult::Failed { .. }) {
            self.files.insert(file, true);
        }
    }

    fn event(&mut self, event: &Event) {
        match event {
            Event::IncomingTransfer { transfer, name, .. } => {
                self.named.insert(transfer.0);
                assert!(
                    !name.is_empty()
                        && !name.contains(['/', '\\', '\0'])
                        && name != ".."
                        && name != ".",
                    "an offer named {name:?}"
                );
            }
            Event::Progress { done, total, .. } => {
                assert!(done <= total, "progress {done} of {total}");
            }
            Event::SubTransfer { transfer, .. } | Event::Status { transfer, .. } => {
                self.named.insert(transfer.0);
            }
            _ => {}
        }
    }
}

/// Checks `node`'s tables against their documented bounds, and that none of its children
/// answered `Err` where none can come.
pub(super) fn bounds(side: usize, node: &Node, groups: usize) {
    assert_eq!(
        node.bugs(),
        Bugs::default(),
        "side {side}: a child refused a call"
    );
    let f = node.footprint();
    assert!(f.connectors <= MAX_CONNECTORS, "side {side}: {f:?}");
    assert!(f.unrouted <= UNROUTED_MAX, "side {side}: {f:?}");
    assert!(f.seen <= REMEMBERED, "side {side}: {f:?}");
    assert!(
        f.devices <= MAX_CONNECTORS_PER_ACCOUNT * f.lookups,
        "side {side}: {f:?}"
    );
    assert!(f.lookups <= groups, "side {side}: {f:?}");
    // Every pair of every connector, each tried at most 1 + its retries.
    let ice = ferry_proto::ice::Config::default();
    let relay_connects = f.connectors * ice.max_pairs * (1 + ice.max_connect_retries as usize);
    assert!(f.relay_connects <= relay_connects, "side {side}: {f:?}");
    // Two accounts can reach it (the peer's, and ours through the peer's own devices);
    // every file sent reaches at most every device of its account.
    let transfers = 2 * MAX_TRANSFERS_PER_PEER + groups * (1 + MAX_CONNECTORS_PER_ACCOUNT);
    assert!(f.transfers <= transfers, "side {side}: {f:?}");
    let timers = 16 + 8 * f.connectors + f.unrouted + 2 * f.lookups + 2 * groups;
    assert!(f.timers <= timers, "side {side}: {f:?}");
    assert_eq!(
        f.queued_outputs, 0,
        "side {side}: outputs left after a drain"
    );
}
