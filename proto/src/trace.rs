//! One readable line per protocol event, for logs and snapshots.
//!
//! A [`Recorder`] collects [`Line`]s: virtual time, the host, where the message goes (or `·`
//! for something local), and a decoded [`Summary`]. Bulk data collapses: consecutive DATA
//! frames (or raw bytes, reads, writes, progress) become one line with a count and a byte
//! total, as long as no other line comes between them. Ids render as ordinals (`t1`, `t2`, …
//! in order of first appearance), so a rendering depends only on what happened, never on
//! random values. Nothing here prints bytes that vary from run to run.
//!
//! [`TransferWire`] decodes the bytes of one transfer stream (header, reply, frames, raw
//! data) into summaries, so traces show what is on the wire rather than what a state machine
//! believes it sent. [`stun`] summarises one STUN message the way RFC figures draw them
//! (method, class, the attributes that matter, the transaction as an ordinal), and
//! [`FramedWire`] cuts one direction of an ICE-TCP connection into its RFC 4571 frames;
//! [`ice_event`] gives an ICE agent's events their line.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::io::{Event, FileOp};
use crate::stun::framing::FrameDecoder as Rfc4571Decoder;
use crate::stun::{Class, RoleAttribute, StunMessage};
use crate::transfer::TransferId;
use crate::transfer::frame::{Frame, FrameDecoder};
use crate::transfer::header::{Header, HeaderParser};
use crate::transfer::reply::{Reply, ReplyParser};

/// Renders ids as `prefix` + their order of first appearance.
#[derive(Debug, Clone)]
pub struct Ordinals<K: Ord> {
    prefix: &'static str,
    seen: BTreeMap<K, usize>,
}

impl<K: Ord> Ordinals<K> {
    /// An empty table whose ordinals read `prefix1`, `prefix2`, …
    pub fn new(prefix: &'static str) -> Self {
        Ordinals {
            prefix,
            seen: BTreeMap::new(),
        }
    }

    /// The ordinal of `key`, given one if it is new.
    pub fn of(&mut self, key: K) -> String {
        let next = self.seen.len() + 1;
        let n = *self.seen.entry(key).or_insert(next);
        format!("{}{n}", self.prefix)
    }
}

/// How a line may merge with the lines like it that come just before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bulk {
    /// Count the lines and add up their bytes: `DATA ×16 1048576 bytes`.
    Sum {
        /// What is counted (`DATA`, `RAW`, `read`, `write`).
        kind: &'static str,
        /// Bytes in this line.
        bytes: u64,
    },
    /// Keep only the latest text (progress, say); `key` tells which lines are alike.
    Latest {
        /// Lines with the same key replace each other.
        key: String,
    },
}

/// The decoded part of a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// What to print.
    pub text: String,
    /// Whether, and how, it merges with its neighbours.
    pub bulk: Option<Bulk>,
}

impl Summary {
    /// A line that never merges.
    pub fn plain(text: impl Into<String>) -> Summary {
        Summary {
            text: text.into(),
            bulk: None,
        }
    }

    fn sum(kind: &'static str, bytes: u64) -> Summary {
        Summary {
            text: String::new(),
            bulk: Some(Bulk::Sum { kind, bytes }),
        }
    }
}

/// Where a line's message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Sent to this host.
    To(String),
    /// Something local to the host (an event, a file operation).
    Local,
}

/// One line of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Virtual time since the start of the run.
    pub at: Duration,
    /// The host that sent or did it.
    pub host: String,
    /// Where it went.
    pub direction: Direction,
    /// What it was.
    pub summary: Summary,
    /// For merged lines: how many, bytes in all, and the time of the last.
    merged: Option<(u64, u64, Duration)>,
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.at.as_secs_f64();
        let arrow = match &self.direction {
            Direction::To(peer) => format!("→ {peer}"),
            Direction::Local => "·".to_owned(),
        };
        write!(f, "{secs:>9.3}s  {:<6} {:<8} ", self.host, arrow)?;
        match (&self.summary.bulk, self.merged) {
            (Some(Bulk::Sum { kind, .. }), Some((count, bytes, last))) => {
                write!(f, "{kind} ×{count} {bytes} bytes")?;
                if last != self.at {
                    write!(f, " (until {:.3}s)", last.as_secs_f64())?;
                }
                Ok(())
            }
            (Some(Bulk::Latest { .. }), Some((_, _, last))) if last != self.at => {
                write!(f, "{} (at {:.3}s)", self.summary.text, last.as_secs_f64())
            }
            _ => f.write_str(&self.summary.text),
        }
    }
}

/// Collects lines, merging bulk ones.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    lines: Vec<Line>,
    /// Lines before this index never merge again: a plain line came after them.
    floor: usize,
}

impl Recorder {
    /// An empty trace.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Records one line.
    pub fn record(&mut self, at: Duration, host: &str, direction: Direction, summary: Summary) {
        if let Some(bulk) = &summary.bulk {
            let alike = self.lines[self.floor..].iter_mut().rev().find(|l| {
                l.host == host
                    && l.direction == direction
                    && same_kind(l.summary.bulk.as_ref(), bulk)
            });
            if let Some(line) = alike {
                let (count, bytes, _) = line.merged.unwrap_or((0, 0, at));
                let add = if let Bulk::Sum { bytes, .. } = bulk {
                    *bytes
                } else {
                    0
                };
                line.merged = Some((count + 1, bytes + add, at));
                if let Bulk::Latest { .. } = bulk {
                    line.summary.text = summary.text;
                }
                return;
            }
            let first = if let Bulk::Sum { bytes, .. } = bulk {
                *bytes
            } else {
                0
            };
            self.lines.push(Line {
                at,
                host: host.to_owned(),
                direction,
                summary,
                merged: Some((1, first, at)),
            });
        } else {
            self.lines.push(Line {
                at,
                host: host.to_owned(),
                direction,
                summary,
                merged: None,
            });
            self.floor = self.lines.len();
        }
    }

    /// The lines so far.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// The whole trace, one line each.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let _ = writeln!(out, "{line}");
        }
        out
    }
}

fn same_kind(a: Option<&Bulk>, b: &Bulk) -> bool {
    match (a, b) {
        (Some(Bulk::Sum { kind: x, .. }), Bulk::Sum { kind: y, .. }) => x == y,
        (Some(Bulk::Latest { key: x }), Bulk::Latest { key: y }) => x == y,
        _ => false,
    }
}

/// Summarises an application event; transfer ids become ordinals.
pub fn event(event: &Event, ids: &mut Ordinals<TransferId>) -> Summary {
    match event {
        Event::IncomingTransfer {
            transfer,
            name,
            size,
            ..
        } => Summary::plain(format!(
            "{} incoming {name:?} {size} bytes",
            ids.of(*transfer)
        )),
        Event::SubTransfer {
            group, transfer, ..
        } => {
            let (g, t) = (ids.of(*group), ids.of(*transfer));
            Summary::plain(format!("{g} reaches a device as {t}"))
        }
        Event::ConnectionRequest { account, device } => Summary::plain(format!(
            "account {}… device {}… asks to connect",
            &account.to_string()[..8],
            &device.to_string()[..8]
        )),
        Event::PeerUnreachable { device, reason } => Summary::plain(format!(
            "device {}… unreachable: {reason}",
            &device.to_string()[..8]
        )),
        Event::Aggregate {
            group,
            status,
            done,
            total,
        } => {
            let g = ids.of(*group);
            Summary {
                text: format!("{g} aggregate {status} {done}/{total}"),
                bulk: Some(Bulk::Latest {
                    key: format!("agg {g}"),
                }),
            }
        }
        Event::Status {
            transfer,
            status,
            reason,
        } => {
            let t = ids.of(*transfer);
            match reason {
                Some(r) => Summary::plain(format!("{t} {status} ({r})")),
                None => Summary::plain(format!("{t} {status}")),
            }
        }
        Event::Progress {
            transfer,
            done,
            total,
        } => {
            let t = ids.of(*transfer);
            Summary {
                text: format!("{t} progress {done}/{total}"),
                bulk: Some(Bulk::Latest { key: t }),
            }
        }
        Event::Verified {
            transfer,
            digest,
            name,
        } => {
            let t = ids.of(*transfer);
            if name.is_empty() {
                Summary::plain(format!("{t} verified sha3={}…", digest.short()))
            } else {
                Summary::plain(format!(
                    "{t} verified sha3={}… saved as {name:?}",
                    digest.short()
                ))
            }
        }
    }
}

/// Summarises a file operation. Reads and writes collapse into byte counts.
pub fn file_op(op: &FileOp) -> Summary {
    match op {
        FileOp::OpenSource { source, .. } => Summary::plain(format!("file open {source:?}")),
        FileOp::OpenPartial { name, size, .. } => Summary::plain(format!(
            "file open partial for {:?} ({size} bytes)",
            name.as_str()
        )),
        FileOp::Read { len, .. } => Summary::sum("read", u64::from(*len)),
        FileOp::Write { data, .. } => Summary::sum("write", data.len() as u64),
        FileOp::Digest { len, .. } => Summary::plain(format!("file sha3-512 of {len} bytes")),
        FileOp::Commit { .. } => Summary::plain("file commit to final name"),
        FileOp::Discard { .. } => Summary::plain("file discard partial"),
        FileOp::Close { .. } => Summary::plain("file close"),
    }
}

/// Which side of a transfer stream bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The side that sent the header.
    Sender,
    /// The side that answers it.
    Receiver,
}

#[derive(Debug, Default)]
enum Decode {
    #[default]
    Start,
    Frames(FrameDecoder),
    Raw,
    /// The stream cannot be decoded any further.
    Lost,
}

/// Decodes both directions of one transfer stream into summaries.
#[derive(Debug, Default)]
pub struct TransferWire {
    header: HeaderParser,
    parsed: Option<Header>,
    reply: ReplyParser,
    forward: Decode,
    backward: Decode,
}

impl TransferWire {
    /// A stream on which nothing was sent yet.
    pub fn new() -> TransferWire {
        TransferWire::default()
    }

    /// Decodes the bytes `from` one side, in the order they were sent.
    pub fn decode(&mut self, from: Side, data: &[u8]) -> Vec<Summary> {
        let mut out = Vec::new();
        match from {
            Side::Sender => self.forward_bytes(data, &mut out),
            Side::Receiver => self.backward_bytes(data, &mut out),
        }
        out
    }

    fn forward_bytes(&mut self, data: &[u8], out: &mut Vec<Summary>) {
        match &mut self.forward {
            Decode::Start => match self.header.push(data) {
                Ok(None) => {}
                Ok(Some(header)) => {
                    let mut text = format!(
                        "HEADER Content-Length={} Display-Name={:?} Offset={}",
                        header.content_length, header.display_name, header.offset
                    );
                    if let Some(v) = header.extension {
                        let _ = write!(text, " Ferry-Frames={v}");
                    }
                    out.push(Summary::plain(text));
                    // Until the reply says otherwise, a sender that offered frames speaks them.
                    self.forward = if header.extension.is_some() {
                        Decode::Frames(FrameDecoder::new())
                    } else {
                        Decode::Raw
                    };
                    self.parsed = Some(header);
                    let rest = self.header.take_rest();
                    if !rest.is_empty() {
                        self.forward_bytes(&rest, out);
                    }
                }
                Err(e) => {
                    out.push(Summary::plain(format!(
                        "GARBAGE {} bytes ({e})",
                        data.len()
                    )));
                    self.forward = Decode::Lost;
                }
            },
            Decode::Frames(frames) => {
                frames.push(data);
                if !frames_out(frames, out) {
                    self.forward = Decode::Lost;
                }
            }
            Decode::Raw => out.push(Summary::sum("RAW", data.len() as u64)),
            Decode::Lost => out.push(Summary::sum("GARBAGE", data.len() as u64)),
        }
    }

    fn backward_bytes(&mut self, data: &[u8], out: &mut Vec<Summary>) {
        match &mut self.backward {
            Decode::Start => match self.reply.push(data) {
                Ok(None) => {}
                Ok(Some((reply, rest))) => {
                    out.push(Summary::plain(match reply {
                        Reply::Go => "GO".to_owned(),
                        Reply::GoAt(n) => format!("GO {n}"),
                        Reply::Ngo => "NGO".to_owned(),
                    }));
                    match reply {
                        Reply::GoAt(_) => self.backward = Decode::Frames(FrameDecoder::new()),
                        Reply::Go => {
                            self.backward = Decode::Lost;
                            // The raw form: the sender's bytes after GO are the file.
                            if matches!(self.forward, Decode::Frames(_)) {
                                self.forward = Decode::Raw;
                            }
                        }
                        Reply::Ngo => self.backward = Decode::Lost,
                    }
                    if !rest.is_empty() {
                        self.backward_bytes(&rest, out);
                    }
                }
                Err(e) => {
                    out.push(Summary::plain(format!(
                        "GARBAGE {} bytes ({e})",
                        data.len()
                    )));
                    self.backward = Decode::Lost;
                }
            },
            Decode::Frames(frames) => {
                frames.push(data);
                if !frames_out(frames, out) {
                    self.backward = Decode::Lost;
                }
            }
            Decode::Raw | Decode::Lost => out.push(Summary::sum("GARBAGE", data.len() as u64)),
        }
    }
}

/// Summarises every whole frame; `false` once the stream cannot be decoded any further.
fn frames_out(frames: &mut FrameDecoder, out: &mut Vec<Summary>) -> bool {
    loop {
        match frames.next_frame() {
            Ok(None) => return true,
            Ok(Some(Frame::Data(d))) => out.push(Summary::sum("DATA", d.len() as u64)),
            Ok(Some(Frame::End(digest))) => {
                out.push(Summary::plain(format!("END sha3={}…", digest.short())))
            }
            Ok(Some(Frame::Cancel(code))) => out.push(Summary::plain(format!("CANCEL {code}"))),
            Ok(Some(Frame::Verdict(ok))) => out.push(Summary::plain(if ok {
                "VERDICT ok"
            } else {
                "VERDICT bad"
            })),
            Err(e) => {
                out.push(Summary::plain(format!("GARBAGE ({e})")));
                return false;
            }
        }
    }
}

/// Summarises one STUN message: `Binding request tx1 USERNAME=… PRIORITY=… ICE-CONTROLLING
/// USE-CANDIDATE`. Transaction ids become ordinals (`tx1`, `tx2`, …), so a response reads as
/// the answer to its request; tie-breakers and integrity bytes are left out (they are random
/// or opaque); an error response shows its code and reason. Bytes that are not a valid STUN
/// message summarise as `STUN? (why)`.
pub fn stun(bytes: &[u8], transactions: &mut Ordinals<u128>) -> Summary {
    let message = match StunMessage::decode(bytes) {
        Ok(m) => m,
        Err(e) => return Summary::plain(format!("STUN? {} bytes ({e})", bytes.len())),
    };
    let method = match message.method {
        crate::stun::BINDING => "Binding".to_owned(),
        other => format!("method 0x{other:03x}"),
    };
    let class = match message.class {
        Class::Request => "request",
        Class::Indication => "indication",
        Class::Success => "success response",
        Class::Error => "error response",
    };
    let mut text = format!("{method} {class} {}", transactions.of(message.transaction));
    if let Some((code, reason)) = &message.error {
        let _ = write!(text, " ERROR-CODE={code} {reason:?}");
    }
    if let Some(user) = &message.username {
        let _ = write!(text, " USERNAME={user}");
    }
    if let Some(p) = message.priority {
        let _ = write!(text, " PRIORITY={p}");
    }
    match message.role {
        Some(RoleAttribute::Controlling(_)) => text.push_str(" ICE-CONTROLLING"),
        Some(RoleAttribute::Controlled(_)) => text.push_str(" ICE-CONTROLLED"),
        None => {}
    }
    if message.use_candidate {
        text.push_str(" USE-CANDIDATE");
    }
    if let Some(addr) = message.xor_mapped {
        let _ = write!(text, " XOR-MAPPED-ADDRESS={addr}");
    }
    Summary::plain(text)
}

/// Summarises an event of an ICE agent: `selected c0: host 10.0.0.2:9 → host
/// 10.0.0.1:5000`, `failed: ICE timeout (2 pairs)`, `role changed to controlled`, `learned
/// peer-reflexive 203.0.113.7:40001`.
pub fn ice_event(event: &crate::ice::Event) -> Summary {
    use crate::ice::Event as E;
    Summary::plain(match event {
        E::Selected {
            conn,
            local,
            remote,
        } => format!(
            "selected {conn}: {} {} → {} {}",
            local.kind.as_str(),
            local.addr,
            remote.kind.as_str(),
            remote.addr
        ),
        E::Failed { reason, pairs } => format!("failed: {reason} ({} pairs)", pairs.len()),
        E::RoleChanged { role } => format!("role changed to {role}"),
        E::PeerReflexive { candidate } => format!("learned peer-reflexive {}", candidate.addr),
    })
}

/// One direction of an ICE-TCP connection: RFC 4571 frames, each a STUN message or a run of
/// application bytes (which collapse into `APP ×n bytes`).
#[derive(Debug, Default)]
pub struct FramedWire {
    frames: Rfc4571Decoder,
}

impl FramedWire {
    /// A direction on which nothing was sent yet.
    pub fn new() -> FramedWire {
        FramedWire::default()
    }

    /// Decodes the next bytes sent in this direction.
    pub fn decode(&mut self, data: &[u8], transactions: &mut Ordinals<u128>) -> Vec<Summary> {
        self.frames
            .push(data)
            .iter()
            .map(|frame| {
                if crate::stun::looks_like_stun(frame) {
                    stun(frame, transactions)
                } else {
                    Summary::sum("APP", frame.len() as u64)
                }
            })
            .collect()
    }
}
