//! Many channels over one TLS connection, in the way of dhtnet's multiplexed socket, so a
//! second file to the same device does not pay for ICE and TLS again.
//!
//! ```text
//! unit    = msgpack [channel: uint16, data: bin]     data ≤ 65535 bytes; empty data ends the channel
//! channel 0 carries requests: msgpack {name: str, channel: uint16, state: uint8}
//!           state 0 REQUEST, 1 ACCEPT, 2 DECLINE
//! ```
//!
//! Early data (Ferry, PROTOCOL.md §9.1's `early-channel-data`): a device that announced the
//! feature keeps the bytes that follow a REQUEST for that channel, at most
//! [`EARLY_PER_CHANNEL`] per channel and [`EARLY_PER_CONNECTION`] in all, until its owner
//! answers: an ACCEPT hands them on, a DECLINE drops them (counted in
//! [`Mux::early_dropped`]). So a sender may put a channel's first bytes right behind its
//! request ([`Mux::open_early`]) and save the round trip to the ACCEPT; to a device that did
//! not announce it, nothing is sent before the ACCEPT, as dhtnet does.
//!
//! The TLS client numbers the channels it opens with odd numbers, the server with even ones,
//! so two requests crossing never collide. A channel is over when both sides have ended it.
//! A request the peer answers neither way within [`OPEN_TIMEOUT`] is given up
//! ([`MuxEvent::Unanswered`]): a peer that never answers must not hold a send for ever.
//!
//! Like every machine here, the multiplexer takes `now` on each call that changes it, and
//! has [`handle_timeout`](Mux::handle_timeout) / [`poll_timeout`](Mux::poll_timeout) for its
//! one deadline; no call reads a clock.
//! The stream cannot be re-synchronised after a unit that does not parse: that is a
//! [`MuxError`], and the connection must close.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

/// Largest data in one unit.
pub const MAX_UNIT: usize = 65_535;
/// Most channels open at once on one connection.
pub const MAX_CHANNELS: usize = 1024;
/// Most channels the peer may have asked for and not yet seen gone at once on one
/// connection (offered, open, or half-ended); past it, its requests are declined. Each costs
/// its owner a transfer; a peer that opens channels and never ends them must not take the
/// whole [`MAX_CHANNELS`], which our own channels share.
pub const MAX_PEER_CHANNELS: usize = 128;
/// How long a channel we asked for waits for the peer's ACCEPT or DECLINE. A peer answers
/// a request as soon as it reads it (dhtnet's sockets answer from their read loop), one round
/// trip; a minute covers a loaded host and a slow link many times over.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest control request accepted.
const MAX_CONTROL: usize = 1024;
/// Most bytes kept for one channel the peer asked for before we answer it: a transfer
/// header (at most [`MAX_HEADER`](crate::transfer::header::MAX_HEADER), 8 KiB) with its unit
/// framing, twice over. Past it the channel is spoiled: its bytes are dropped and it is
/// declined whatever the owner answers.
pub const EARLY_PER_CHANNEL: usize = 16 * 1024;
/// Most early bytes kept on one connection, over all the channels offered and not answered
/// yet; past it, the channel whose bytes overflow is spoiled as above.
pub const EARLY_PER_CONNECTION: usize = 256 * 1024;

pub(crate) const REQUEST: u8 = 0;
pub(crate) const ACCEPT: u8 = 1;
pub(crate) const DECLINE: u8 = 2;

/// A channel's number on its connection.
pub type ChannelId = u16;

/// Which side of the TLS connection this is (decides the channel numbers it picks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The TLS client: odd channel numbers.
    Client,
    /// The TLS server: even channel numbers.
    Server,
}

/// What the multiplexer tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MuxEvent {
    /// The peer asks to open a channel; answer with [`Mux::accept`] or [`Mux::decline`].
    OpenRequest {
        /// The channel.
        channel: ChannelId,
        /// What it is for.
        name: String,
    },
    /// The peer accepted a channel we opened.
    Opened {
        /// The channel.
        channel: ChannelId,
    },
    /// The peer declined a channel we opened.
    Declined {
        /// The channel.
        channel: ChannelId,
    },
    /// The peer answered a channel we opened neither way within [`OPEN_TIMEOUT`]: the
    /// channel is forgotten, and a late answer is ignored.
    Unanswered {
        /// The channel.
        channel: ChannelId,
    },
    /// Bytes on an open channel. A channel is a byte stream: a unit cut by the transport
    /// comes out in pieces, as they arrive, never joined to its neighbours.
    Data {
        /// The channel.
        channel: ChannelId,
        /// The bytes.
        data: Bytes,
    },
    /// The peer ended the channel (it sends nothing more on it).
    Ended {
        /// The channel.
        channel: ChannelId,
    },
}

/// The stream does not carry channel units.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MuxError {
    /// A unit does not parse.
    #[error("malformed channel unit: {0}")]
    Malformed(&'static str),
    /// A unit is larger than [`MAX_UNIT`].
    #[error("channel unit of {0} bytes")]
    TooLarge(usize),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChannelError {
    /// [`MAX_CHANNELS`] are open.
    #[error("too many channels open")]
    TooMany,
    /// The channel is not open (or not waiting for an answer, for accept and decline).
    #[error("channel {0} is not in a state for that")]
    NotOpen(ChannelId),
    /// The peer sent more early bytes on the channel than [`EARLY_PER_CHANNEL`] (or the
    /// connection's [`EARLY_PER_CONNECTION`]): it was declined instead of accepted.
    #[error("channel {0} sent too many bytes before its answer; declined")]
    EarlyOverflow(ChannelId),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// We asked; waiting for ACCEPT or DECLINE until the deadline. With `early`, the owner
    /// may send before the ACCEPT (the peer announced it keeps early bytes), and end its
    /// side (`local_ended`) too.
    Requested {
        deadline: Instant,
        early: bool,
        local_ended: bool,
    },
    /// The peer asked; waiting for our answer.
    Offered,
    /// Open; each flag says whether that side ended it.
    Open {
        local_ended: bool,
        remote_ended: bool,
    },
}

/// A request on channel 0.
#[derive(Serialize, Deserialize)]
pub(crate) struct Control {
    pub(crate) name: String,
    pub(crate) channel: u16,
    pub(crate) state: u8,
}

impl Control {
    /// Reads a request; `None` for one too large or that does not parse (it is ignored).
    pub(crate) fn read(data: &[u8]) -> Option<Control> {
        if data.len() > MAX_CONTROL {
            return None;
        }
        rmp_serde::from_slice(data).ok()
    }
}

/// The bytes the peer sent on a channel it asked for, before we answered.
#[derive(Debug, Default)]
struct Early {
    data: Vec<Bytes>,
    len: usize,
    /// An empty unit came: the peer ended the channel already.
    ended: bool,
    /// Past a bound: everything was dropped and the channel will be declined.
    spoiled: bool,
}

/// The multiplexer of one connection.
#[derive(Debug)]
pub struct Mux {
    side: Side,
    next: u16,
    channels: BTreeMap<ChannelId, State>,
    /// A unit header cut by the transport.
    buf: BytesMut,
    /// The unit being read: its channel and the data bytes still to come.
    reading: Option<(ChannelId, usize)>,
    /// Channel 0's request being read (handed on whole).
    control: BytesMut,
    broken: bool,
    transmit: VecDeque<Bytes>,
    events: VecDeque<MuxEvent>,
    /// The peer's requests declined for want of room.
    refused: u64,
    /// Early bytes of offered channels, until answered.
    early: BTreeMap<ChannelId, Early>,
    /// Their total.
    early_total: usize,
    /// Early bytes dropped: their channel declined, or past a bound.
    early_dropped: u64,
}

impl Mux {
    /// A multiplexer for one side of a connection.
    pub fn new(side: Side) -> Mux {
        let next = match side {
            Side::Client => 1,
            Side::Server => 2,
        };
        Mux {
            side,
            next,
            channels: BTreeMap::new(),
            buf: BytesMut::new(),
            reading: None,
            control: BytesMut::new(),
            broken: false,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            refused: 0,
            early: BTreeMap::new(),
            early_total: 0,
            early_dropped: 0,
        }
    }

    /// Asks the peer to open a channel for `name`.
    pub fn open(&mut self, now: Instant, name: &str) -> Result<ChannelId, ChannelError> {
        self.request(now, name, false)
    }

    /// Like [`open`](Self::open), and the channel may carry bytes at once, behind its
    /// request, before the peer's ACCEPT: only for a peer that announced it keeps them
    /// (`early-channel-data`), and no more than [`EARLY_PER_CHANNEL`] before the ACCEPT (the
    /// caller's to keep; the peer declines the channel past it).
    pub fn open_early(&mut self, now: Instant, name: &str) -> Result<ChannelId, ChannelError> {
        self.request(now, name, true)
    }

    fn request(
        &mut self,
        now: Instant,
        name: &str,
        early: bool,
    ) -> Result<ChannelId, ChannelError> {
        self.handle_timeout(now);
        if self.channels.len() >= MAX_CHANNELS {
            return Err(ChannelError::TooMany);
        }
        let mut id = self.next;
        while self.channels.contains_key(&id) || id == 0 {
            id = id.wrapping_add(2);
        }
        self.next = id.wrapping_add(2);
        self.channels.insert(
            id,
            State::Requested {
                deadline: now + OPEN_TIMEOUT,
                early,
                local_ended: false,
            },
        );
        self.control(name, id, REQUEST);
        Ok(id)
    }

    /// Accepts a channel the peer asked for.
    pub fn accept(&mut self, now: Instant, channel: ChannelId) -> Result<(), ChannelError> {
        self.handle_timeout(now);
        self.answer(channel, true)
    }

    /// Declines a channel the peer asked for.
    pub fn decline(&mut self, now: Instant, channel: ChannelId) -> Result<(), ChannelError> {
        self.handle_timeout(now);
        self.answer(channel, false)
    }

    fn answer(&mut self, channel: ChannelId, yes: bool) -> Result<(), ChannelError> {
        if self.channels.get(&channel) != Some(&State::Offered) {
            return Err(ChannelError::NotOpen(channel));
        }
        let early = self.early.remove(&channel).unwrap_or_default();
        self.early_total -= early.len;
        if early.spoiled {
            self.channels.remove(&channel);
            self.control("", channel, DECLINE);
            return if yes {
                Err(ChannelError::EarlyOverflow(channel))
            } else {
                Ok(())
            };
        }
        if !yes {
            self.early_dropped += early.len as u64;
        }
        if yes {
            self.channels.insert(
                channel,
                State::Open {
                    local_ended: false,
                    remote_ended: false,
                },
            );
        } else {
            self.channels.remove(&channel);
        }
        self.control("", channel, if yes { ACCEPT } else { DECLINE });
        if yes {
            // What came before the answer, in order, as if it came now.
            for data in early.data {
                self.events.push_back(MuxEvent::Data { channel, data });
            }
            if early.ended {
                self.on_unit(channel, Bytes::new());
            }
        }
        Ok(())
    }

    /// Sends bytes on an open channel, cut into units.
    pub fn send(
        &mut self,
        now: Instant,
        channel: ChannelId,
        data: &[u8],
    ) -> Result<(), ChannelError> {
        self.handle_timeout(now);
        if !self.sendable(channel) {
            return Err(ChannelError::NotOpen(channel));
        }
        for piece in data.chunks(MAX_UNIT) {
            self.unit(channel, piece);
        }
        Ok(())
    }

    /// Like [`send`](Self::send) of the bytes of `parts` one after the other, without copying:
    /// the units that carry them on an open channel, each as its header and its pieces of
    /// `parts` (cut at [`MAX_UNIT`] as `send` cuts the joined bytes), for the caller to write
    /// in order (after whatever [`poll_transmit`](Self::poll_transmit) still holds).
    pub fn units<'a>(
        &self,
        channel: ChannelId,
        parts: &[&'a [u8]],
    ) -> Result<Vec<Unit<'a>>, ChannelError> {
        if !self.sendable(channel) {
            return Err(ChannelError::NotOpen(channel));
        }
        let mut units = Vec::new();
        let (mut pieces, mut len) = (Vec::new(), 0);
        for part in parts {
            let mut rest: &'a [u8] = part;
            while !rest.is_empty() {
                let (piece, after) = rest.split_at(rest.len().min(MAX_UNIT - len));
                pieces.push(piece);
                len += piece.len();
                rest = after;
                if len == MAX_UNIT {
                    units.push((UnitHeader::new(channel, len), std::mem::take(&mut pieces)));
                    len = 0;
                }
            }
        }
        if len > 0 {
            units.push((UnitHeader::new(channel, len), pieces));
        }
        Ok(units)
    }

    /// Whether bytes may go on `channel`: open and not ended by us, or asked for with
    /// [`open_early`](Self::open_early) and not answered yet.
    fn sendable(&self, channel: ChannelId) -> bool {
        matches!(
            self.channels.get(&channel),
            Some(
                State::Open {
                    local_ended: false,
                    ..
                } | State::Requested {
                    early: true,
                    local_ended: false,
                    ..
                }
            )
        )
    }

    /// Early bytes dropped so far: those of channels declined (by the owner, or for
    /// sending more than [`EARLY_PER_CHANNEL`] or [`EARLY_PER_CONNECTION`] before the answer).
    pub fn early_dropped(&self) -> u64 {
        self.early_dropped
    }

    /// Ends our side of a channel.
    pub fn end(&mut self, now: Instant, channel: ChannelId) -> Result<(), ChannelError> {
        self.handle_timeout(now);
        // An early channel may end before its answer, like any open one.
        if let Some(State::Requested {
            deadline,
            early: true,
            local_ended: false,
        }) = self.channels.get(&channel).copied()
        {
            self.unit(channel, &[]);
            self.channels.insert(
                channel,
                State::Requested {
                    deadline,
                    early: true,
                    local_ended: true,
                },
            );
            return Ok(());
        }
        let Some(State::Open {
            local_ended: false,
            remote_ended,
        }) = self.channels.get(&channel).copied()
        else {
            return Err(ChannelError::NotOpen(channel));
        };
        self.unit(channel, &[]);
        if remote_ended {
            self.channels.remove(&channel);
        } else {
            self.channels.insert(
                channel,
                State::Open {
                    local_ended: true,
                    remote_ended: false,
                },
            );
        }
        Ok(())
    }

    /// Channels currently known (requested, offered or open).
    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    /// Whether a channel is offered or open (a channel we asked for and the peer has not
    /// answered yet does not count: the peer may not have seen it).
    pub fn in_use(&self) -> bool {
        self.channels
            .values()
            .any(|s| !matches!(s, State::Requested { .. }))
    }

    /// Whether we ended our side of `channel` (an early channel may be ended before its
    /// answer, and still be accepted after: its owner has nothing more to do with it).
    pub fn ended_here(&self, channel: ChannelId) -> bool {
        matches!(
            self.channels.get(&channel),
            Some(
                State::Requested {
                    local_ended: true,
                    ..
                } | State::Open {
                    local_ended: true,
                    ..
                }
            )
        )
    }

    /// How many of the peer's requests were declined because [`MAX_CHANNELS`] were in use,
    /// or [`MAX_PEER_CHANNELS`] of the peer's own.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Whether `channel` is a number the peer picks.
    fn is_theirs(&self, channel: ChannelId) -> bool {
        match self.side {
            Side::Client => channel % 2 == 0,
            Side::Server => channel % 2 == 1,
        }
    }

    /// Takes bytes from the connection. An error is final: close the connection.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) -> Result<(), MuxError> {
        self.receive(now, Bytes::copy_from_slice(data))
    }

    /// Like [`handle_bytes`](Self::handle_bytes), without copying: a channel's data comes
    /// out as slices of `data`, as it arrives (a unit cut by the transport comes out in
    /// pieces). Only a cut header and channel 0's requests are buffered.
    pub fn receive(&mut self, now: Instant, mut data: Bytes) -> Result<(), MuxError> {
        // An answer that arrives after its request's deadline is late, whether or not the
        // owner called `handle_timeout` in between.
        self.handle_timeout(now);
        if self.broken {
            return Err(MuxError::Malformed("the stream broke earlier"));
        }
        while !data.is_empty() {
            if let Some((channel, left)) = self.reading {
                let piece = data.split_to(left.min(data.len()));
                let left = left - piece.len();
                self.reading = (left > 0).then_some((channel, left));
                if channel != 0 {
                    self.on_unit(channel, piece);
                } else {
                    self.control.extend_from_slice(&piece);
                    if left == 0 {
                        let body = self.control.split().freeze();
                        self.on_unit(0, body);
                    }
                }
                continue;
            }
            let header = if self.buf.is_empty() {
                match parse_header(&data) {
                    Ok(Some((channel, at, len))) => {
                        data.advance(at);
                        Ok(Some((channel, len)))
                    }
                    Ok(None) => {
                        self.buf.extend_from_slice(&data);
                        return Ok(());
                    }
                    Err(e) => Err(e),
                }
            } else {
                // A header cut by the transport: completed a byte at a time, so that what
                // follows it stays in `data`.
                self.buf.extend_from_slice(&data.split_to(1));
                match parse_header(&self.buf) {
                    Ok(Some((channel, _, len))) => {
                        self.buf.clear();
                        Ok(Some((channel, len)))
                    }
                    Ok(None) => Ok(None),
                    Err(e) => Err(e),
                }
            };
            match header {
                Ok(Some((channel, 0))) => self.on_unit(channel, Bytes::new()),
                Ok(Some((channel, len))) => self.reading = Some((channel, len)),
                Ok(None) => {}
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Gives up the channels we asked for whose answer is overdue
    /// ([`MuxEvent::Unanswered`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        let overdue: Vec<ChannelId> = self
            .channels
            .iter()
            .filter(|(_, s)| matches!(s, State::Requested { deadline, .. } if *deadline <= now))
            .map(|(id, _)| *id)
            .collect();
        for channel in overdue {
            self.gone_unopened(channel);
            self.events.push_back(MuxEvent::Unanswered { channel });
        }
    }

    /// A channel we asked for will never open (declined, or unanswered). An early one the
    /// owner may have written on stays, as ended by the peer, until the owner ends its side
    /// too, so that its owner's end is not a mistake; any other is forgotten.
    fn gone_unopened(&mut self, channel: ChannelId) {
        match self.channels.get(&channel).copied() {
            Some(State::Requested {
                early: true,
                local_ended: false,
                ..
            }) => {
                self.channels.insert(
                    channel,
                    State::Open {
                        local_ended: false,
                        remote_ended: true,
                    },
                );
            }
            _ => {
                self.channels.remove(&channel);
            }
        }
    }

    /// The next deadline: the earliest unanswered request's.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.channels
            .values()
            .filter_map(|s| match s {
                State::Requested { deadline, .. } => Some(*deadline),
                _ => None,
            })
            .min()
    }

    /// Bytes to write to the connection.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.transmit.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<MuxEvent> {
        self.events.pop_front()
    }

    fn on_unit(&mut self, channel: ChannelId, data: Bytes) {
        if channel == 0 {
            return self.on_control(&data);
        }
        if self.channels.get(&channel) == Some(&State::Offered) {
            return self.on_early(channel, data);
        }
        // Bytes for a channel that is not open (ended, declined, never opened) are dropped:
        // they may have crossed our own end on the way.
        let Some(State::Open {
            remote_ended: false,
            local_ended,
        }) = self.channels.get(&channel).copied()
        else {
            return;
        };
        if !data.is_empty() {
            self.events.push_back(MuxEvent::Data { channel, data });
            return;
        }
        if local_ended {
            self.channels.remove(&channel);
        } else {
            self.channels.insert(
                channel,
                State::Open {
                    local_ended,
                    remote_ended: true,
                },
            );
        }
        self.events.push_back(MuxEvent::Ended { channel });
    }

    /// Bytes on a channel the peer asked for and we have not answered: kept, within bounds,
    /// for the answer.
    fn on_early(&mut self, channel: ChannelId, data: Bytes) {
        let total = self.early_total;
        let early = self.early.entry(channel).or_default();
        if early.spoiled || early.ended {
            // Spoiled: dropped with the rest. After its end: nothing may follow.
            self.early_dropped += data.len() as u64;
            return;
        }
        if data.is_empty() {
            early.ended = true;
            return;
        }
        if early.len + data.len() > EARLY_PER_CHANNEL || total + data.len() > EARLY_PER_CONNECTION {
            self.early_dropped += (early.len + data.len()) as u64;
            self.early_total -= early.len;
            early.data.clear();
            early.len = 0;
            early.spoiled = true;
            return;
        }
        let len = data.len();
        early.len += len;
        early.data.push(data);
        self.early_total += len;
    }

    fn on_control(&mut self, data: &[u8]) {
        let Some(c) = Control::read(data) else {
            return;
        };
        let theirs = self.is_theirs(c.channel);
        match (c.state, self.channels.get(&c.channel).copied()) {
            (REQUEST, None) if theirs && c.channel != 0 => {
                let of_peer = self
                    .channels
                    .keys()
                    .filter(|id| self.is_theirs(**id))
                    .count();
                if self.channels.len() >= MAX_CHANNELS || of_peer >= MAX_PEER_CHANNELS {
                    self.refused += 1;
                    return self.control("", c.channel, DECLINE);
                }
                self.channels.insert(c.channel, State::Offered);
                self.events.push_back(MuxEvent::OpenRequest {
                    channel: c.channel,
                    name: c.name,
                });
            }
            // A request on a number that is ours or in use breaks the rule: decline it.
            (REQUEST, _) => self.control("", c.channel, DECLINE),
            (ACCEPT, Some(State::Requested { local_ended, .. })) => {
                self.channels.insert(
                    c.channel,
                    State::Open {
                        local_ended,
                        remote_ended: false,
                    },
                );
                self.events
                    .push_back(MuxEvent::Opened { channel: c.channel });
            }
            (DECLINE, Some(State::Requested { .. })) => {
                self.gone_unopened(c.channel);
                self.events
                    .push_back(MuxEvent::Declined { channel: c.channel });
            }
            _ => {}
        }
    }

    fn control(&mut self, name: &str, channel: ChannelId, state: u8) {
        let body = rmp_serde::to_vec_named(&Control {
            name: name.to_owned(),
            channel,
            state,
        })
        .unwrap_or_default();
        self.unit(0, &body);
    }

    fn unit(&mut self, channel: ChannelId, data: &[u8]) {
        let mut out = BytesMut::with_capacity(data.len() + 8);
        encode_unit(channel, data, &mut out);
        self.transmit.push_back(out.freeze());
    }
}

/// Appends the unit `[channel, data]` to `out`, in msgpack's shortest forms.
pub fn encode_unit(channel: ChannelId, data: &[u8], out: &mut BytesMut) {
    out.put_slice(UnitHeader::new(channel, data.len()).as_bytes());
    out.put_slice(data);
}

/// Longest unit header: fixarray, `0xcd` + u16 channel, `0xc6` + u32 length.
const MAX_HEADER: usize = 9;

/// A unit to write: its header, and the pieces of the caller's bytes it carries, in order.
pub type Unit<'a> = (UnitHeader, Vec<&'a [u8]>);

/// The bytes before a unit's data, in msgpack's shortest forms, so that the data itself can
/// be handed on without being copied next to them.
#[derive(Debug, Clone, Copy)]
pub struct UnitHeader {
    bytes: [u8; MAX_HEADER],
    len: usize,
}

impl UnitHeader {
    /// The header of a unit of `len` data bytes (at most [`MAX_UNIT`]) on `channel`.
    pub fn new(channel: ChannelId, len: usize) -> UnitHeader {
        let mut out = BytesMut::with_capacity(MAX_HEADER);
        out.put_u8(0x92);
        match channel {
            0..=0x7f => out.put_u8(channel as u8),
            0x80..=0xff => {
                out.put_u8(0xcc);
                out.put_u8(channel as u8);
            }
            _ => {
                out.put_u8(0xcd);
                out.put_u16(channel);
            }
        }
        if len <= 0xff {
            out.put_u8(0xc4);
            out.put_u8(len as u8);
        } else {
            out.put_u8(0xc5);
            out.put_u16(len.min(MAX_UNIT) as u16);
        }
        let mut bytes = [0; MAX_HEADER];
        bytes[..out.len()].copy_from_slice(&out);
        UnitHeader {
            bytes,
            len: out.len(),
        }
    }

    /// The header's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Finds the next whole unit: (channel, where its data starts, data length).
pub(crate) fn parse_unit(buf: &[u8]) -> Result<Option<(ChannelId, usize, usize)>, MuxError> {
    match parse_header(buf)? {
        Some((channel, at, len)) if buf.len() >= at + len => Ok(Some((channel, at, len))),
        _ => Ok(None),
    }
}

/// Reads the header of the next unit, whatever of its data is there: (channel, where its
/// data starts, data length); `None` until the whole header ([`MAX_HEADER`] bytes at most)
/// is in `buf`.
fn parse_header(buf: &[u8]) -> Result<Option<(ChannelId, usize, usize)>, MuxError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    if first != 0x92 {
        return Err(MuxError::Malformed("a unit is a two-element array"));
    }
    let mut at = 1;
    let need = |n: usize| if buf.len() < n { Err(()) } else { Ok(()) };
    if need(at + 1).is_err() {
        return Ok(None);
    }
    let channel = match buf[at] {
        b @ 0x00..=0x7f => {
            at += 1;
            u16::from(b)
        }
        0xcc => {
            if need(at + 2).is_err() {
                return Ok(None);
            }
            at += 2;
            u16::from(buf[at - 1])
        }
        0xcd => {
            if need(at + 3).is_err() {
                return Ok(None);
            }
            at += 3;
            u16::from_be_bytes([buf[at - 2], buf[at - 1]])
        }
        _ => {
            return Err(MuxError::Malformed(
                "a channel is an unsigned 16-bit integer",
            ));
        }
    };
    if need(at + 1).is_err() {
        return Ok(None);
    }
    let len = match buf[at] {
        0xc4 => {
            if need(at + 2).is_err() {
                return Ok(None);
            }
            at += 2;
            usize::from(buf[at - 1])
        }
        0xc5 => {
            if need(at + 3).is_err() {
                return Ok(None);
            }
            at += 3;
            usize::from(u16::from_be_bytes([buf[at - 2], buf[at - 1]]))
        }
        0xc6 => {
            if need(at + 5).is_err() {
                return Ok(None);
            }
            let len =
                u32::from_be_bytes([buf[at + 1], buf[at + 2], buf[at + 3], buf[at + 4]]) as usize;
            if len > MAX_UNIT {
                return Err(MuxError::TooLarge(len));
            }
            at += 5;
            len
        }
        _ => return Err(MuxError::Malformed("data is a msgpack bin")),
    };
    Ok(Some((channel, at, len)))
}
