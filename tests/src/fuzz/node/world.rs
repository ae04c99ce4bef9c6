//! The whole-node target's world: two sides, each a [`Node`], joined by in-memory TCP
//! streams, an in-memory DHT and an in-memory disk. It carries out every [`Output`] the way
//! a driver would and queues the [`Input`]s that follow; *when* each is delivered, and what
//! goes wrong on the way, is the fuzz script's choice (`super::Action`).
//!
//! TCP is modelled as ordered byte streams: the script can cut, corrupt, inject into or
//! reset a stream, never reorder it (TCP does not). Inputs that the driver would give a
//! node in order (`Accepted` before the connection's bytes, its bytes before `Reset`) stay
//! in order: a stream delivers only once its end was announced to its node.

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use ferry_proto::io::{
    ConnId, ConnectError, DhtKey, Endpoint, Event, FileError, FileId, FileOp, FileResult, Input,
    ListenerId, Output,
};
use ferry_proto::node::Node;
use ferry_proto::transfer::StreamDigest;

use super::check::Checker;

/// Which node: 0 or 1.
pub(super) type Side = usize;

/// One chunk of a stream: bytes, or the end of the stream (FIN).
#[derive(Debug, Clone)]
pub(super) enum Chunk {
    /// Bytes, in order.
    Data(Bytes),
    /// The sender closed its side.
    Fin,
}

/// One end of a connection: which side holds it under which name.
#[derive(Debug, Clone, Copy)]
pub(super) struct End {
    /// The side.
    pub(super) side: Side,
    /// Its name for the connection.
    pub(super) conn: ConnId,
    /// Whether that side heard of the connection (`Connected` or `Accepted` delivered).
    pub(super) announced: bool,
    /// Whether that side closed or reset it (it reads nothing more).
    pub(super) gone: bool,
}

/// A TCP connection: `ends[i]` receives `toward[i]`. A stranger's connection has one real
/// end (`ends[0]`); what the stranger sends comes from the script.
#[derive(Debug, Clone)]
pub(super) struct Link {
    /// The two ends (the second is the stranger for a hostile connection).
    pub(super) ends: [End; 2],
    /// What travels toward each end.
    pub(super) toward: [VecDeque<Chunk>; 2],
    /// Whether a stranger holds `ends[1]`.
    pub(super) stranger: bool,
}

/// A file as the in-memory disk holds it.
#[derive(Debug, Clone)]
enum Open {
    Source,
    Partial(String),
}

/// One side's disk: the file it sends (generated) and the files it receives.
#[derive(Debug, Default)]
pub(super) struct Disk {
    /// Files received whole, by final name.
    pub(super) committed: BTreeMap<String, Vec<u8>>,
    /// Partial files by final name.
    partials: BTreeMap<String, Vec<u8>>,
    open: BTreeMap<FileId, Open>,
    /// Answer the next file operation with a failure.
    pub(super) fail_next: bool,
}

/// Everything between the two nodes.
pub(super) struct World {
    /// The clock of both nodes.
    pub(super) now: Instant,
    /// The nodes.
    pub(super) nodes: [Node; 2],
    /// What each output of each node may be, checked as it comes out.
    pub(super) checkers: [Checker; 2],
    /// Inputs waiting for delivery, in order, for each side.
    pub(super) pending: VecDeque<(Side, Input)>,
    /// Every connection ever made (closed ones stay, with nothing left to deliver).
    pub(super) links: Vec<Link>,
    /// Every value put on the DHT, in order, with its key.
    pub(super) dht: Vec<(DhtKey, Bytes)>,
    /// Keys each side listens to.
    pub(super) listens: [Vec<DhtKey>; 2],
    /// Each side's disk.
    pub(super) disks: [Disk; 2],
    /// The file each side sends: its bytes.
    pub(super) source: Bytes,
    /// Fail the next `Connect` of each side.
    pub(super) refuse_next_connect: [bool; 2],
    /// Incoming transfers offered to each side and not decided yet.
    pub(super) offers: [Vec<ferry_proto::transfer::TransferId>; 2],
    /// Transfers each side runs or ran (groups, subs, incoming), for cancels.
    pub(super) transfers: [Vec<ferry_proto::transfer::TransferId>; 2],
    /// Accept every offer as it comes.
    pub(super) auto_accept: bool,
    /// Files each side received whole and verified.
    pub(super) verified: [usize; 2],
}

/// The address of side `side`'s interface.
pub(super) fn ip_of(side: Side) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1 + side as u8))
}

impl World {
    /// Carries out every output of `side` until it has none.
    pub(super) fn drain(&mut self, side: Side) {
        let mut n = 0usize;
        while let Some(out) = self.nodes[side].poll_output() {
            n += 1;
            assert!(n < 100_000, "side {side}: endless outputs");
            self.checkers[side].output(&out);
            self.carry_out(side, out);
        }
    }

    fn carry_out(&mut self, side: Side, out: Output) {
        match out {
            Output::Listen { listener, .. } => self.pending.push_back((
                side,
                Input::Listening {
                    listener,
                    local: listen_addr(side, listener),
                },
            )),
            Output::Connect { conn, remote, .. } => self.connect(side, conn, remote),
            Output::Send { conn, data } => {
                if let Some((l, e)) = self.find(side, conn) {
                    let n = data.len();
                    self.links[l].toward[1 - e].push_back(Chunk::Data(data));
                    // The driver's queue empties as the bytes leave.
                    self.pending
                        .push_back((side, Input::Writable { conn, bytes: n }));
                }
            }
            Output::HalfClose { conn } => {
                if let Some((l, e)) = self.find(side, conn) {
                    self.links[l].toward[1 - e].push_back(Chunk::Fin);
                }
            }
            Output::Close { conn } => {
                if let Some((l, e)) = self.find(side, conn) {
                    self.links[l].toward[1 - e].push_back(Chunk::Fin);
                    self.links[l].ends[e].gone = true;
                    self.links[l].toward[e].clear();
                }
            }
            Output::Reset { conn } => {
                if let Some((l, e)) = self.find(side, conn) {
                    self.reset_link(l, Some(e));
                }
            }
            Output::PauseReading { .. }
            | Output::ResumeReading { .. }
            | Output::Unlisten { .. } => {}
            Output::Event(event) => self.event(side, event),
            Output::DhtPut { key, value } => {
                self.dht.push((key, value.clone()));
                for s in 0..2 {
                    if self.listens[s].contains(&key) {
                        let value = value.clone();
                        self.pending.push_back((s, Input::DhtValue { key, value }));
                    }
                }
                self.pending
                    .push_back((side, Input::DhtPutDone { key, ok: true }));
            }
            Output::DhtListen { key } => {
                if !self.listens[side].contains(&key) {
                    self.listens[side].push(key);
                }
                for (k, value) in &self.dht {
                    if *k == key {
                        let value = value.clone();
                        self.pending
                            .push_back((side, Input::DhtValue { key, value }));
                    }
                }
            }
            Output::DhtCancelListen { key } => self.listens[side].retain(|k| *k != key),
            Output::File(op) => {
                let result = self.file(side, op);
                self.pending.push_back((side, Input::File(result)));
            }
            _ => {}
        }
    }

    fn event(&mut self, side: Side, event: Event) {
        match event {
            Event::IncomingTransfer { transfer, .. } if self.auto_accept => {
                let now = self.now;
                // It may be taken already (a picture under the automatic limit).
                let _ = self.nodes[side].accept(now, transfer);
                self.transfers[side].push(transfer);
            }
            Event::IncomingTransfer { transfer, .. } => {
                self.offers[side].push(transfer);
                self.transfers[side].push(transfer);
            }
            Event::SubTransfer { transfer, .. } => self.transfers[side].push(transfer),
            Event::Verified { name, .. } if !name.is_empty() => self.verified[side] += 1,
            _ => {}
        }
    }

    fn connect(&mut self, side: Side, conn: ConnId, remote: SocketAddr) {
        let peer = 1 - side;
        let listener = (1..=4)
            .map(ListenerId)
            .find(|l| listen_addr(peer, *l) == remote);
        let refused = std::mem::take(&mut self.refuse_next_connect[side]);
        let Some(listener) = listener.filter(|_| !refused) else {
            let error = if refused {
                ConnectError::TimedOut
            } else {
                ConnectError::Unreachable
            };
            self.pending
                .push_back((side, Input::ConnectFailed { conn, error }));
            return;
        };
        let accepted = ConnId::Accepted(self.links.len() as u32 + 1);
        let local = SocketAddr::new(ip_of(side), 40_000 + self.links.len() as u16);
        self.links.push(Link {
            ends: [end(side, conn), end(peer, accepted)],
            toward: [VecDeque::new(), VecDeque::new()],
            stranger: false,
        });
        self.pending
            .push_back((side, Input::Connected { conn, local }));
        self.pending.push_back((
            peer,
            Input::Accepted {
                listener,
                conn: accepted,
                remote: local,
            },
        ));
    }

    /// A stranger connects to `side`'s first listener from `remote`.
    pub(super) fn stranger_connects(&mut self, side: Side, remote: SocketAddr) -> usize {
        let accepted = ConnId::Accepted(self.links.len() as u32 + 1);
        let mut stranger = end(1 - side, ConnId::Accepted(0));
        stranger.announced = true;
        self.links.push(Link {
            ends: [end(side, accepted), stranger],
            toward: [VecDeque::new(), VecDeque::new()],
            stranger: true,
        });
        self.pending.push_back((
            side,
            Input::Accepted {
                listener: ListenerId(1),
                conn: accepted,
                remote,
            },
        ));
        self.links.len() - 1
    }

    /// Which link and end `side` calls `conn`, while that end is open.
    fn find(&self, side: Side, conn: ConnId) -> Option<(usize, usize)> {
        self.links.iter().enumerate().find_map(|(l, link)| {
            let real = if link.stranger { 1 } else { 2 };
            link.ends[..real]
                .iter()
                .position(|e| e.side == side && e.conn == conn && !e.gone)
                .map(|e| (l, e))
        })
    }

    /// Resets link `l`: both ends hear `Reset`, except `by` (the end that asked for it).
    pub(super) fn reset_link(&mut self, l: usize, by: Option<usize>) {
        self.links[l].toward = [VecDeque::new(), VecDeque::new()];
        for e in 0..2 {
            let end = self.links[l].ends[e];
            let real = !(self.links[l].stranger && e == 1);
            if !end.gone && Some(e) != by && real {
                self.pending
                    .push_back((end.side, Input::Reset { conn: end.conn }));
            }
            self.links[l].ends[e].gone = true;
        }
    }

    /// The streams that can deliver now: (link, end) pairs.
    pub(super) fn deliverable(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (l, link) in self.links.iter().enumerate() {
            for e in 0..2 {
                let end = link.ends[e];
                let real = !(link.stranger && e == 1);
                if real && end.announced && !end.gone && !link.toward[e].is_empty() {
                    out.push((l, e));
                }
            }
        }
        out
    }

    /// Delivers the first `cut` bytes (all of the chunk when `None`) of the head of stream
    /// (`l`, `e`), with byte `flip` (index, mask) changed on the way.
    pub(super) fn deliver(
        &mut self,
        l: usize,
        e: usize,
        cut: Option<usize>,
        flip: Option<(usize, u8)>,
    ) {
        let end = self.links[l].ends[e];
        let Some(chunk) = self.links[l].toward[e].pop_front() else {
            return;
        };
        let input = match chunk {
            Chunk::Fin => Input::HalfClosed { conn: end.conn },
            Chunk::Data(data) => {
                let mut data = data.to_vec();
                if let Some(cut) = cut.filter(|c| *c > 0 && *c < data.len()) {
                    let rest = data.split_off(cut);
                    self.links[l].toward[e].push_front(Chunk::Data(rest.into()));
                }
                if let Some((at, mask)) = flip.filter(|_| !data.is_empty()) {
                    let at = at % data.len();
                    data[at] ^= mask.max(1);
                }
                Input::Received {
                    conn: end.conn,
                    data: data.into(),
                }
            }
        };
        self.input(end.side, input);
    }

    /// Delivers the first pending input.
    pub(super) fn deliver_pending(&mut self) -> bool {
        let Some((side, input)) = self.pending.pop_front() else {
            return false;
        };
        match &input {
            Input::Connected { conn, .. } | Input::Accepted { conn, .. } => {
                for link in &mut self.links {
                    for e in &mut link.ends {
                        if e.side == side && e.conn == *conn {
                            e.announced = true;
                        }
                    }
                }
            }
            Input::File(FileResult::Opened { .. }) => {}
            _ => {}
        }
        self.input(side, input);
        true
    }

    /// Feeds `input` to `side`, then carries out what follows.
    pub(super) fn input(&mut self, side: Side, input: Input) {
        self.checkers[side].input(&input);
        let now = self.now;
        if let Err(e) = self.nodes[side].handle_input(now, input.clone()) {
            panic!("side {side}: {input:?} refused: {e}");
        }
        self.drain(side);
    }

    /// Lets time pass to `now` on both sides.
    pub(super) fn advance(&mut self, now: Instant) {
        self.now = self.now.max(now);
        for side in 0..2 {
            let now = self.now;
            self.nodes[side].handle_timeout(now);
            self.drain(side);
        }
    }

    fn file(&mut self, side: Side, op: FileOp) -> FileResult {
        let disk = &mut self.disks[side];
        let file = op.file();
        if std::mem::take(&mut disk.fail_next)
            && !matches!(op, FileOp::Close { .. } | FileOp::Discard { .. })
        {
            if matches!(op, FileOp::OpenSource { .. } | FileOp::OpenPartial { .. }) {
                return FileResult::Failed {
                    file,
                    error: FileError::PermissionDenied,
                };
            }
            return FileResult::Failed {
                file,
                error: FileError::Other("the fuzz script's disk failed".into()),
            };
        }
        match op {
            FileOp::OpenSource { .. } => {
                disk.open.insert(file, Open::Source);
                FileResult::Opened {
                    file,
                    len: self.source.len() as u64,
                }
            }
            FileOp::OpenPartial { name, size, .. } => {
                let name = name.as_str().to_owned();
                let partial = disk.partials.entry(name.clone()).or_default();
                if partial.len() as u64 > size {
                    partial.clear();
                }
                let len = partial.len() as u64;
                disk.open.insert(file, Open::Partial(name));
                FileResult::Opened { file, len }
            }
            FileOp::Read { offset, len, .. } => {
                let start = (offset as usize).min(self.source.len());
                let end = (start + len as usize).min(self.source.len());
                if end - start != len as usize {
                    return FileResult::Failed {
                        file,
                        error: FileError::ShortRead,
                    };
                }
                FileResult::Data {
                    file,
                    offset,
                    data: self.source.slice(start..end),
                }
            }
            FileOp::Write { offset, data, .. } => {
                let Some(Open::Partial(name)) = disk.open.get(&file) else {
                    panic!("side {side}: write to {file:?}, not a partial file");
                };
                let partial = disk.partials.entry(name.clone()).or_default();
                let offset_usize = offset as usize;
                assert!(
                    offset_usize <= partial.len(),
                    "side {side}: a write at {offset} leaves a gap after {}",
                    partial.len()
                );
                partial.truncate(offset_usize);
                partial.extend_from_slice(&data);
                FileResult::Written {
                    file,
                    offset,
                    len: data.len() as u32,
                }
            }
            FileOp::Digest { len, .. } => {
                let bytes: &[u8] = match disk.open.get(&file) {
                    Some(Open::Partial(name)) => disk.partials.get(name).map_or(&[], |p| p),
                    _ => &self.source,
                };
                let mut d = StreamDigest::new();
                d.update(0, &bytes[..(len as usize).min(bytes.len())]);
                FileResult::Digest {
                    file,
                    digest: d.finish(),
                }
            }
            FileOp::Commit { .. } => {
                let Some(Open::Partial(name)) = disk.open.remove(&file) else {
                    panic!("side {side}: commit of {file:?}, not a partial file");
                };
                let bytes = disk.partials.remove(&name).unwrap_or_default();
                let mut name = name;
                while disk.committed.contains_key(&name) {
                    name.insert(0, '_');
                }
                // No corrupt final file, ever: what is committed is what was sent.
                assert_eq!(
                    bytes[..],
                    self.source[..],
                    "side {side}: {name} committed with other bytes than the source"
                );
                disk.committed.insert(name.clone(), bytes);
                FileResult::Committed { file, name }
            }
            FileOp::Discard { .. } => {
                if let Some(Open::Partial(name)) = disk.open.remove(&file) {
                    disk.partials.remove(&name);
                }
                FileResult::Closed { file }
            }
            FileOp::Close { .. } => {
                disk.open.remove(&file);
                FileResult::Closed { file }
            }
            _ => FileResult::Failed {
                file,
                error: FileError::Other("unknown operation".into()),
            },
        }
    }
}

fn end(side: Side, conn: ConnId) -> End {
    End {
        side,
        conn,
        announced: false,
        gone: false,
    }
}

/// Where `side`'s listener `listener` is bound.
pub(super) fn listen_addr(side: Side, listener: ListenerId) -> SocketAddr {
    SocketAddr::new(ip_of(side), 4_000 + listener.0 as u16)
}
