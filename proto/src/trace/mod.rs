//! One readable line per protocol event, for logs and snapshots.
//!
//! A [`Recorder`] collects [`Line`]s: virtual time, the host, where the message goes (or `·`
//! for something local), and a decoded [`Summary`]. Bulk data collapses: consecutive DATA
//! frames (or raw bytes, reads, writes, progress) become one line with a count and a byte
//! total, as long as no other line comes between them. Ids render as ordinals (`t1`, `t2`, …
//! in order of first appearance) and identities by the names a harness gave them (`bob:b1`),
//! through the run's [`Names`], so a rendering depends only on what happened, never on
//! random values. Nothing here prints bytes that vary from run to run, and nothing prints a
//! `Debug` dump.
//!
//! Bytes on a connection reach a trace through one entry point, a [`WireDecoder`]: it is
//! told which connection and which end sent them, in the order they were sent, and answers
//! with summaries. One decoder per protocol, each in its own file:
//!
//! - [`stun`]: one STUN message the way RFC figures draw them (method, class, the attributes
//!   that matter, the transaction as an ordinal), and [`FramedWire`], one direction of an
//!   ICE-TCP connection cut into its RFC 4571 frames.
//! - [`turn`]: TURN messages (RFC 8656, RFC 6062), [`TurnDecoder`] for TURN over TCP, and a
//!   TURN client's events.
//! - [`tls`]: TLS records by type and length, and [`TlsWire`], which opens them with the
//!   [`TlsSecrets`] the sessions logged and names the handshake messages inside.
//! - [`channel`]: [`ChannelWire`], the channels multiplexed inside TLS and the transfer
//!   stream on each.
//! - [`transfer`]: [`TransferWire`], the bytes of one transfer stream (header, reply,
//!   frames, raw data), so traces show what is on the wire rather than what a state machine
//!   believes it sent; [`TransferDecoder`] decodes every connection as one.
//! - [`signal`]: DHT keys and values by what they are ([`Labels`]): `announce bob:b1`,
//!   `request id1 alice:a1 → bob:b1`.
//! - [`node`]: [`NodeWire`], everything a node puts on a connection: STUN, TURN, TLS and,
//!   given the secrets, the channels and transfer frames inside.
//! - [`local`]: what is local to a host: a node's events, an ICE agent's events, file
//!   operations.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::transfer::TransferId;

pub mod channel;
pub mod local;
pub mod node;
pub mod signal;
pub mod stun;
pub mod tls;
pub mod transfer;
pub mod turn;

pub use channel::ChannelWire;
pub use local::{event, file_op, ice_event};
pub use node::NodeWire;
pub use signal::Labels;
pub use stun::FramedWire;
pub use tls::{TlsSecrets, TlsWire};
pub use transfer::{Side, TransferDecoder, TransferWire};
pub use turn::TurnDecoder;

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
    /// What to print; for a [`Bulk::Sum`], what comes before its count (`ch1` in
    /// `ch1 DATA ×4 262144 bytes`), often nothing.
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

    /// A line that counts: lines alike that follow it add up into `kind ×n bytes`.
    pub fn sum(kind: &'static str, bytes: u64) -> Summary {
        Summary {
            text: String::new(),
            bulk: Some(Bulk::Sum { kind, bytes }),
        }
    }

    /// The same line, said of `what` (a channel, say): `ch1 GO 0`, `ch1 DATA ×4 …`.
    pub fn of(mut self, what: &str) -> Summary {
        self.text = if self.text.is_empty() {
            what.to_owned()
        } else {
            format!("{what} {}", self.text)
        };
        self
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
                if !self.summary.text.is_empty() {
                    write!(f, "{} ", self.summary.text)?;
                }
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
                l.host == host && l.direction == direction && same_kind(&l.summary, &summary)
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

/// Whether two bulk lines merge: sums of one kind said of one thing, or latest values of one
/// key (whose texts differ by design).
fn same_kind(a: &Summary, b: &Summary) -> bool {
    match (&a.bulk, &b.bulk) {
        (Some(Bulk::Sum { kind: x, .. }), Some(Bulk::Sum { kind: y, .. })) => {
            x == y && a.text == b.text
        }
        (Some(Bulk::Latest { key: x }), Some(Bulk::Latest { key: y })) => x == y,
        _ => false,
    }
}

/// How one run's trace names things. Every decoder of the run shares it, so one thing reads
/// the same on every line: a transfer is `t2` in a node's events and in the name of the
/// channel that carries it, an exchange of signalling is `id1` in the request and in its
/// answer, a device is `bob:b1` wherever it appears.
#[derive(Debug)]
pub struct Names {
    /// Transfers: `t1`, `t2`, … in order of first appearance.
    pub transfers: Ordinals<TransferId>,
    /// Signalling exchanges (a request and its answer): `id1`, `id2`, …
    pub exchanges: Ordinals<u64>,
    /// Accounts and devices by the names a harness gave them, and the DHT keys they make.
    pub labels: Labels,
}

impl Names {
    /// Names for a run whose identities are `labels`.
    pub fn new(labels: Labels) -> Names {
        Names {
            transfers: Ordinals::new("t"),
            exchanges: Ordinals::new("id"),
            labels,
        }
    }
}

impl Default for Names {
    fn default() -> Self {
        Names::new(Labels::default())
    }
}

/// Turns the bytes one end of a connection sent into trace summaries: the one way bytes on
/// a connection reach a trace.
pub trait WireDecoder {
    /// Bytes sent on connection `conn`, by its opener when `from_opener`, in order; ids in
    /// them are rendered through `names`.
    fn decode(
        &mut self,
        conn: u64,
        from_opener: bool,
        data: &[u8],
        names: &mut Names,
    ) -> Vec<Summary>;
    /// The connection is gone; forget its state.
    fn forget(&mut self, _conn: u64) {}
}

/// Counts bytes: `BYTES ×n total bytes` per connection and direction.
#[derive(Debug, Default)]
pub struct CountBytes;

impl WireDecoder for CountBytes {
    fn decode(&mut self, _: u64, _: bool, data: &[u8], _: &mut Names) -> Vec<Summary> {
        vec![Summary::sum("BYTES", data.len() as u64)]
    }
}
