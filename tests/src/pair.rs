//! Two transfer state machines over an in-memory pipe, on a virtual clock.
//!
//! Alice runs an [`Outgoing`], Bob an [`Incoming`]. Between them, one byte stream with a
//! latency and a bandwidth in each direction; beside each, files served from memory the way
//! a runtime serves them from disk (Alice's from [`content`](mod@crate::content), Bob's in a
//! receive folder with partial and final names). The clock jumps from one event to the next,
//! so a ten-minute timeout costs nothing. Every byte on the pipe is decoded into the trace
//! with [`TransferWire`], every event and file operation too.
//!
//! A [`Script`] says what the users do: whether Bob accepts, and when either side cancels.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{Event, FileError, FileId, FileOp, FileResult};
use ferry_proto::trace::{Direction, Names, Recorder, Side, Summary, TransferWire};
use ferry_proto::transfer::{
    Digest, Form, Incoming, Input, Outgoing, Output, PartialKey, Status, StreamDigest, TransferId,
};

use crate::content;

/// The key of Bob's partial data for the pair's one transfer (a bare stream: no sender
/// account), where [`Setup::receiver_holds`] puts its bytes.
pub fn partial_key() -> PartialKey {
    PartialKey {
        sender: None,
        transfer: TransferId(0x5eed_0000_0000_0001),
    }
}

/// What Bob's user does when the header arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Accept at once.
    Accept,
    /// Refuse at once.
    Refuse,
    /// Never answer.
    Ignore,
}

/// The users' behaviour and the faults of one run.
#[derive(Debug, Clone)]
pub struct Script {
    /// What Bob does with the offer.
    pub decision: Decision,
    /// Alice cancels once this many bytes have left her side.
    pub sender_cancels_at: Option<u64>,
    /// Bob cancels once he holds this many bytes.
    pub receiver_cancels_at: Option<u64>,
    /// One byte of the Alice → Bob stream, at this stream offset, is flipped in transit.
    pub corrupt_stream_byte: Option<u64>,
    /// Bob's write fails with this error once he holds at least this many bytes.
    pub receiver_disk_fails_at: Option<(u64, FileError)>,
}

impl Default for Script {
    fn default() -> Self {
        Script {
            decision: Decision::Accept,
            sender_cancels_at: None,
            receiver_cancels_at: None,
            corrupt_stream_byte: None,
            receiver_disk_fails_at: None,
        }
    }
}

/// The two sides' settings.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The file Alice sends: its size and the seed of its contents.
    pub size: u64,
    /// Seed of the file's contents.
    pub seed: u64,
    /// The name Alice announces.
    pub display_name: String,
    /// Alice's form.
    pub sender_form: Form,
    /// Bob's form.
    pub receiver_form: Form,
    /// Bob already holds this many bytes of the file in a partial file (a resume).
    pub receiver_holds: u64,
    /// The bytes Bob holds are another file's (another seed): a stale partial under the same
    /// key, which must give a fresh start, never a digest mismatch at the end.
    pub receiver_holds_stale: bool,
    /// One-way latency.
    pub latency: Duration,
    /// Bytes per second in each direction.
    pub bandwidth: u64,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            size: 256 * 1024,
            seed: 1,
            display_name: "photo.jpg".to_owned(),
            sender_form: Form::Framed,
            receiver_form: Form::Framed,
            receiver_holds: 0,
            receiver_holds_stale: false,
            latency: Duration::from_millis(5),
            bandwidth: 10_000_000,
        }
    }
}

/// What a run ended with.
#[derive(Debug)]
pub struct Outcome {
    /// Alice's final status.
    pub sender: Status,
    /// Bob's final status.
    pub receiver: Status,
    /// Every event Alice's transfer emitted.
    pub sender_events: Vec<Event>,
    /// Every event Bob's transfer emitted.
    pub receiver_events: Vec<Event>,
    /// Bob's files under their final names.
    pub finals: BTreeMap<String, Vec<u8>>,
    /// Bob's partial files, by [`PartialKey`] (its text; see [`partial_key`]).
    pub partials: BTreeMap<String, Vec<u8>>,
    /// The trace.
    pub trace: String,
    /// Virtual time the run took.
    pub elapsed: Duration,
    /// The most bytes ever waiting in Bob's write queue.
    pub max_pending_writes: usize,
}

impl Outcome {
    /// The digest Bob reported as verified, if any.
    pub fn receiver_verified(&self) -> Option<Digest> {
        self.receiver_events.iter().find_map(|e| match e {
            Event::Verified { digest, .. } => Some(*digest),
            _ => None,
        })
    }

    /// The digest Alice reported as verified, if any.
    pub fn sender_verified(&self) -> Option<Digest> {
        self.sender_events.iter().find_map(|e| match e {
            Event::Verified { digest, .. } => Some(*digest),
            _ => None,
        })
    }

    /// The last progress Bob reported.
    pub fn receiver_progress(&self) -> u64 {
        self.receiver_events
            .iter()
            .rev()
            .filter_map(|e| match e {
                Event::Progress { done, .. } => Some(*done),
                _ => None,
            })
            .next()
            .unwrap_or(0)
    }

    /// The reason attached to a side's final status.
    pub fn reason(events: &[Event]) -> Option<String> {
        events.iter().rev().find_map(|e| match e {
            Event::Status {
                reason: Some(r), ..
            } => Some(r.to_string()),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Alice,
    Bob,
}

impl Who {
    fn name(self) -> &'static str {
        match self {
            Who::Alice => "alice",
            Who::Bob => "bob",
        }
    }

    fn other(self) -> Who {
        match self {
            Who::Alice => Who::Bob,
            Who::Bob => Who::Alice,
        }
    }
}

/// Something scheduled: an input for one side.
#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    to: Who,
    input: Input,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One direction of the pipe.
#[derive(Debug, Default)]
struct Link {
    /// When the link finishes sending what it was given.
    busy_until: Option<Instant>,
    /// Bytes carried so far (stream offset of the next byte).
    carried: u64,
    /// The sender of this direction closed or reset it.
    closed: bool,
}

/// Alice's and Bob's in-memory files.
#[derive(Debug, Default)]
struct Disk {
    source_digest: StreamDigest,
    partials: BTreeMap<String, Vec<u8>>,
    finals: BTreeMap<String, Vec<u8>>,
    /// The open partial file's key (text) and final name.
    open_partial: Option<(String, String)>,
}

/// The harness.
pub struct Pair {
    start: Instant,
    now: Instant,
    setup: Setup,
    script: Script,
    alice: Outgoing,
    bob: Incoming,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    links: BTreeMap<Who, Link>,
    disk: Disk,
    wire: TransferWire,
    trace: Recorder,
    names: Names,
    sender_events: Vec<Event>,
    receiver_events: Vec<Event>,
    pending_writes: usize,
    max_pending_writes: usize,
    decided: bool,
    sender_cancelled: bool,
    receiver_cancelled: bool,
}

const ALICE_FILE: FileId = FileId(1);
const BOB_FILE: FileId = FileId(2);
/// A run that goes on longer than this in virtual time is a hang.
const HANG: Duration = Duration::from_secs(3600);

impl Pair {
    /// Sets up Alice's transfer to Bob.
    pub fn new(setup: Setup, script: Script) -> Pair {
        let start = Instant::now();
        let id = partial_key().transfer;
        let alice = Outgoing::new(
            id,
            ALICE_FILE,
            "photo.jpg".to_owned(),
            setup.display_name.clone(),
            setup.sender_form,
        );
        let bob = Incoming::new(id, BOB_FILE, setup.receiver_form);
        let mut disk = Disk::default();
        if setup.receiver_holds > 0 {
            disk.partials.insert(
                partial_key().to_string(),
                content::range(
                    setup.seed + u64::from(setup.receiver_holds_stale),
                    0,
                    setup.receiver_holds as usize,
                ),
            );
        }
        let mut links = BTreeMap::new();
        links.insert(Who::Alice, Link::default());
        links.insert(Who::Bob, Link::default());
        Pair {
            start,
            now: start,
            setup,
            script,
            alice,
            bob,
            queue: BinaryHeap::new(),
            seq: 0,
            links,
            disk,
            wire: TransferWire::new(),
            trace: Recorder::new(),
            names: Names::default(),
            sender_events: Vec::new(),
            receiver_events: Vec::new(),
            pending_writes: 0,
            max_pending_writes: 0,
            decided: false,
            sender_cancelled: false,
            receiver_cancelled: false,
        }
    }

    /// Runs until nothing is left to happen, and reports.
    pub fn run(mut self) -> Outcome {
        loop {
            self.drain();
            let next_input = self.queue.peek().map(|Reverse(s)| s.at);
            let next_timer = [self.alice.poll_timeout(), self.bob.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            let Some(next) = [next_input, next_timer].into_iter().flatten().min() else {
                break;
            };
            assert!(
                next - self.start < HANG,
                "the run hangs: still busy after {HANG:?}"
            );
            self.now = self.now.max(next);
            while let Some(Reverse(s)) = self.queue.peek() {
                if s.at > self.now {
                    break;
                }
                let Some(Reverse(s)) = self.queue.pop() else {
                    break;
                };
                self.deliver(s.to, s.input);
                self.drain();
            }
            self.alice.handle_timeout(self.now);
            self.bob.handle_timeout(self.now);
        }
        assert!(
            self.alice.is_drained(),
            "Alice's transfer did not finish cleanly: {:?}",
            self.alice.status()
        );
        assert!(
            self.bob.is_drained(),
            "Bob's transfer did not finish cleanly: {:?}",
            self.bob.status()
        );
        Outcome {
            sender: self.alice.status(),
            receiver: self.bob.status(),
            sender_events: self.sender_events,
            receiver_events: self.receiver_events,
            finals: self.disk.finals,
            partials: self.disk.partials,
            trace: self.trace.render(),
            elapsed: self.now - self.start,
            max_pending_writes: self.max_pending_writes,
        }
    }

    fn deliver(&mut self, to: Who, input: Input) {
        if let Input::File(FileResult::Written { len, .. }) = &input {
            self.pending_writes -= *len as usize;
        }
        let result = match to {
            Who::Alice => self.alice.handle_input(self.now, input),
            Who::Bob => self.bob.handle_input(self.now, input),
        };
        if let Err(e) = result {
            panic!("{} rejected an input the harness gave it: {e}", to.name());
        }
    }

    /// Drains both sides until neither has anything to say.
    fn drain(&mut self) {
        loop {
            let mut any = false;
            while let Some(out) = self.alice.poll_output() {
                any = true;
                self.on_output(Who::Alice, out);
            }
            while let Some(out) = self.bob.poll_output() {
                any = true;
                self.on_output(Who::Bob, out);
            }
            if !any {
                break;
            }
        }
    }

    fn on_output(&mut self, from: Who, out: Output) {
        match out {
            Output::Send(data) => self.send(from, data),
            Output::SendData { header, data } => {
                self.send(from, [&header[..], &data].concat().into());
            }
            Output::Close => self.close(from, "FIN", Input::StreamEnded),
            Output::Reset => self.close(from, "RST", Input::StreamReset),
            Output::PauseReading | Output::ResumeReading => {
                // Disk answers come at once here, so Bob never falls a window behind;
                // the proto unit tests cover pausing.
                let what = if matches!(out, Output::PauseReading) {
                    "pause reading"
                } else {
                    "resume reading"
                };
                self.local(from, Summary::plain(what));
            }
            Output::File(op) => {
                self.local(from, ferry_proto::trace::file_op(&op));
                let result = match from {
                    Who::Alice => self.alice_file(op),
                    Who::Bob => self.bob_file(op),
                };
                self.schedule(self.now, from, Input::File(result));
            }
            Output::Event(event) => {
                let summary = ferry_proto::trace::event(&event, &mut self.names);
                self.local(from, summary);
                self.on_event(from, &event);
                match from {
                    Who::Alice => self.sender_events.push(event),
                    Who::Bob => self.receiver_events.push(event),
                }
            }
            other => panic!("unexpected output {other:?}"),
        }
    }

    /// The users' script reacts to events.
    fn on_event(&mut self, from: Who, event: &Event) {
        match (from, event) {
            (Who::Bob, Event::IncomingTransfer { .. }) if !self.decided => {
                self.decided = true;
                let res = match self.script.decision {
                    Decision::Accept => self.bob.accept(self.now),
                    Decision::Refuse => self.bob.refuse(self.now),
                    Decision::Ignore => Ok(()),
                };
                res.expect("Bob's decision is allowed while the offer waits");
            }
            (Who::Alice, Event::Progress { done, .. })
                if !self.sender_cancelled
                    && self.script.sender_cancels_at.is_some_and(|at| *done >= at) =>
            {
                self.sender_cancelled = true;
                self.alice.cancel(self.now);
            }
            (Who::Bob, Event::Progress { done, .. })
                if !self.receiver_cancelled
                    && self
                        .script
                        .receiver_cancels_at
                        .is_some_and(|at| *done >= at) =>
            {
                self.receiver_cancelled = true;
                self.bob.cancel(self.now);
            }
            _ => {}
        }
    }

    fn send(&mut self, from: Who, mut data: Bytes) {
        let side = match from {
            Who::Alice => Side::Sender,
            Who::Bob => Side::Receiver,
        };
        for summary in self.wire.decode(side, &data) {
            self.trace.record(
                self.now - self.start,
                from.name(),
                Direction::To(from.other().name().to_owned()),
                summary,
            );
        }
        let link = self.links.get_mut(&from).expect("both links exist");
        assert!(!link.closed, "{} sent after closing", from.name());
        if from == Who::Alice {
            if let Some(at) = self.script.corrupt_stream_byte {
                let range = link.carried..link.carried + data.len() as u64;
                if range.contains(&at) {
                    let mut bytes = data.to_vec();
                    bytes[(at - link.carried) as usize] ^= 0x01;
                    data = Bytes::from(bytes);
                }
            }
        }
        let len = data.len();
        link.carried += len as u64;
        let tx = Duration::from_secs_f64(len as f64 / self.setup.bandwidth as f64);
        let done = link.busy_until.unwrap_or(self.now).max(self.now) + tx;
        link.busy_until = Some(done);
        self.schedule(done, from, Input::Writable(len));
        self.schedule(
            done + self.setup.latency,
            from.other(),
            Input::Received(data),
        );
    }

    fn close(&mut self, from: Who, what: &str, input: Input) {
        self.trace.record(
            self.now - self.start,
            from.name(),
            Direction::To(from.other().name().to_owned()),
            Summary::plain(what),
        );
        let link = self.links.get_mut(&from).expect("both links exist");
        link.closed = true;
        let at = link.busy_until.unwrap_or(self.now).max(self.now) + self.setup.latency;
        self.schedule(at, from.other(), input);
    }

    fn local(&mut self, host: Who, summary: Summary) {
        self.trace.record(
            self.now - self.start,
            host.name(),
            Direction::Local,
            summary,
        );
    }

    fn schedule(&mut self, at: Instant, to: Who, input: Input) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            to,
            input,
        }));
    }

    /// Alice's side: the source file, generated from the seed.
    fn alice_file(&mut self, op: FileOp) -> FileResult {
        let (seed, size) = (self.setup.seed, self.setup.size);
        match op {
            FileOp::OpenSource { file, .. } => FileResult::Opened { file, len: size },
            FileOp::Read { file, offset, len } => {
                let data = content::range(seed, offset, len as usize);
                // As a runtime does: hash the bytes as they pass, read later what was skipped.
                self.disk.source_digest.update(offset, &data);
                FileResult::Data {
                    file,
                    offset,
                    data: Bytes::from(data),
                }
            }
            FileOp::Digest { file, len } => {
                // Kept extended, as a runtime does: a prefix's digest (`GO n <digest>`) is
                // followed by reads from `n` and then the whole file's digest.
                let digest = &mut self.disk.source_digest;
                let missing = digest.missing(len);
                digest.update(
                    missing.start,
                    &content::range(seed, missing.start, (missing.end - missing.start) as usize),
                );
                FileResult::Digest {
                    file,
                    digest: digest.clone().finish(),
                }
            }
            FileOp::Close { file } => FileResult::Closed { file },
            other => panic!("Alice's transfer asked for {other:?}"),
        }
    }

    /// Bob's side: a receive folder with partial and final names.
    fn bob_file(&mut self, op: FileOp) -> FileResult {
        match op {
            FileOp::OpenPartial {
                file,
                name,
                size,
                key,
                resume,
                ..
            } => {
                let key = key.to_string();
                let partial = self.disk.partials.entry(key.clone()).or_default();
                if partial.len() as u64 > size || !resume {
                    partial.clear();
                }
                let len = partial.len() as u64;
                self.disk.open_partial = Some((key, name.to_string()));
                FileResult::Opened { file, len }
            }
            FileOp::Write { file, offset, data } => {
                if let Some((at, error)) = &self.script.receiver_disk_fails_at {
                    if offset + data.len() as u64 >= *at {
                        return FileResult::Failed {
                            file,
                            error: error.clone(),
                        };
                    }
                }
                let partial = self.partial();
                let end = offset as usize + data.len();
                if partial.len() < end {
                    partial.resize(end, 0);
                }
                partial[offset as usize..end].copy_from_slice(&data);
                self.pending_writes += data.len();
                self.max_pending_writes = self.max_pending_writes.max(self.pending_writes);
                FileResult::Written {
                    file,
                    offset,
                    len: data.len() as u32,
                }
            }
            FileOp::Digest { file, len } => {
                let partial = self.partial();
                FileResult::Digest {
                    file,
                    digest: Digest::of(&partial[..len as usize]),
                }
            }
            FileOp::Commit { file } => {
                let (key, name) = self.disk.open_partial.take().expect("a partial is open");
                let data = self.disk.partials.remove(&key).unwrap_or_default();
                // Never replace a file: take the first free "name (n)".
                let mut final_name = name.clone();
                let mut n = 1;
                while self.disk.finals.contains_key(&final_name) {
                    final_name = format!("{name} ({n})");
                    n += 1;
                }
                self.disk.finals.insert(final_name.clone(), data);
                FileResult::Committed {
                    file,
                    name: final_name,
                }
            }
            FileOp::Discard { file } => {
                if let Some((key, _)) = self.disk.open_partial.take() {
                    self.disk.partials.remove(&key);
                }
                FileResult::Closed { file }
            }
            FileOp::Close { file } => {
                self.disk.open_partial = None;
                FileResult::Closed { file }
            }
            FileOp::Truncate { file } => {
                self.partial().clear();
                FileResult::Opened { file, len: 0 }
            }
            other => panic!("Bob's transfer asked for {other:?}"),
        }
    }

    fn partial(&mut self) -> &mut Vec<u8> {
        let (key, _) = self.disk.open_partial.clone().expect("a partial is open");
        self.disk.partials.entry(key).or_default()
    }
}
