//! The sending side of one transfer (Jami's `SubOutgoingFileTransfer`).
//!
//! ```text
//! Created ──Opened──▶ WaitPeerAcceptance ──GO / GO n──▶ Ongoing ──(framed) END──▶ verdict ──▶ Finished
//!                         │  NGO, timeout                  │  CANCEL, lost stream, file error
//!                         ▼                                ▼
//!                   closed_by_peer / timeout_expired   closed_by_peer / closed_by_host
//! ```
//!
//! `GO n <digest>` (the `prefix-digest` feature, which a framed-form sender announces) first
//! hashes the file's first `n` bytes: on a match the data starts at `n`, else a RESTART frame
//! tells the receiver to empty what it holds and the data starts at 0.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::frame::{CancelCode, FRAME_HEADER, Frame, FrameDecoder, MAX_DATA};
use super::header::{EXTENSION_VERSION, Header};
use super::reply::{Reply, ReplyParser};
use super::{
    ACCEPT_TIMEOUT, Digest, Form, Input, LINGER, Output, Reason, SEND_WINDOW, Status, Timer,
    TransferId,
};
use crate::Error;
use crate::io::{Event, FileError, FileId, FileOp, FileResult};
use crate::timer::Timers;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the source file to open.
    Opening,
    /// Header sent; waiting for `GO` / `NGO`.
    WaitReply,
    /// `GO n <digest>` came: hashing the first `n` bytes to compare.
    Proving,
    /// Streaming data (and, framed, then the digest and END).
    Sending,
    /// Framed: END sent, waiting for the receiver's VERDICT.
    WaitVerdict,
    /// Over, with this status.
    Done(Status),
}

/// Sends one file over one stream.
///
/// Create it with [`Outgoing::new`] once the stream is ready; drive it with
/// [`handle_input`](Self::handle_input), [`handle_timeout`](Self::handle_timeout),
/// [`poll_output`](Self::poll_output) and [`poll_timeout`](Self::poll_timeout).
#[derive(Debug)]
pub struct Outgoing {
    id: TransferId,
    file: FileId,
    display_name: String,
    form: Form,
    state: State,
    /// The whole file size, once open.
    size: u64,
    /// Whether the receiver chose the framed form.
    framed: bool,
    reply: ReplyParser,
    frames: FrameDecoder,
    /// Next byte to ask the driver for.
    next_read: u64,
    /// Next byte expected from the driver (reads are answered in order).
    next_data: u64,
    /// Stream bytes (framing included) asked for and not yet arrived.
    reading: usize,
    /// Stream bytes handed to the stream and not yet `Writable`.
    in_flight: usize,
    /// Stream bytes sent in all, and `Writable` in all.
    wire_sent: u64,
    wire_acked: u64,
    /// For DATA in flight: (stream bytes sent when it ends, file offset where it ends).
    unacked: VecDeque<(u64, u64)>,
    /// File bytes whose stream bytes have left the queue, from offset 0 (reported progress).
    progress: u64,
    digest_asked: bool,
    /// While proving: the offset and digest the receiver named.
    claimed: Option<(u64, Digest)>,
    /// The digest sent in END.
    end_digest: Option<Digest>,
    /// The manifest this file belongs to, named in the framed header (`PROTOCOL.md` §14).
    manifest: Option<TransferId>,
    file_open: bool,
    stream_open: bool,
    timers: Timers<Timer>,
    out: VecDeque<Output>,
}

impl Outgoing {
    /// Starts sending the file the application knows as `source` under the name
    /// `display_name`. The first output asks the driver to open it.
    pub fn new(
        id: TransferId,
        file: FileId,
        source: String,
        display_name: String,
        form: Form,
    ) -> Outgoing {
        let mut this = Outgoing {
            id,
            file,
            display_name,
            form,
            state: State::Opening,
            size: 0,
            framed: false,
            reply: ReplyParser::new(),
            frames: FrameDecoder::new(),
            next_read: 0,
            next_data: 0,
            reading: 0,
            in_flight: 0,
            wire_sent: 0,
            wire_acked: 0,
            unacked: VecDeque::new(),
            progress: 0,
            digest_asked: false,
            claimed: None,
            end_digest: None,
            manifest: None,
            file_open: false,
            stream_open: true,
            timers: Timers::new(),
            out: VecDeque::new(),
        };
        this.event_status(Status::Created, None);
        this.out
            .push_back(Output::File(FileOp::OpenSource { file, source }));
        this
    }

    /// Makes this file one of the manifest `manifest` (`PROTOCOL.md` §14): its header names it
    /// (`Ferry-Manifest`), in the framed form only (a raw-form header never carries it). Only
    /// for a device that announced the `manifest` feature; set before the file is opened.
    pub fn with_manifest(mut self, manifest: TransferId) -> Outgoing {
        self.manifest = Some(manifest);
        self
    }

    /// The manifest this file goes under, if any ([`with_manifest`](Self::with_manifest)).
    pub fn manifest(&self) -> Option<TransferId> {
        self.manifest
    }

    /// The transfer's id.
    pub fn id(&self) -> TransferId {
        self.id
    }

    /// The file this transfer reads.
    pub fn file(&self) -> FileId {
        self.file
    }

    /// Where the transfer stands.
    pub fn status(&self) -> Status {
        match self.state {
            State::Opening => Status::Created,
            State::WaitReply | State::Proving => Status::WaitPeerAcceptance,
            State::Sending | State::WaitVerdict => Status::Ongoing,
            State::Done(s) => s,
        }
    }

    /// Whether nothing more will come out of this transfer: it is over, its file is closed
    /// and it no longer needs the stream.
    pub fn is_drained(&self) -> bool {
        matches!(self.state, State::Done(_)) && !self.stream_open && self.out.is_empty()
    }

    /// The local user cancels. Harmless once the transfer is over.
    pub fn cancel(&mut self, now: Instant) {
        match self.state {
            State::Done(_) => {}
            State::Opening => {
                // Nothing was said on the stream yet.
                self.finish(Status::ClosedByHost, Some(Reason::Cancelled));
                self.close_stream();
            }
            _ => self.abort(
                now,
                Status::ClosedByHost,
                Reason::Cancelled,
                CancelCode::User,
            ),
        }
    }

    /// The peer declined the channel this transfer started on before its answer (early
    /// channel data): it ends `closed_by_peer`, refused, as one declined before it started
    /// does, and closes its file.
    pub fn declined(&mut self) {
        self.finish(Status::ClosedByPeer, Some(Reason::Refused));
        self.close_stream();
    }

    /// The connection this transfer started on before the peer's answer (early channel data)
    /// ended without a failure (it went idle at the peer as our request crossed its close):
    /// the transfer stops without a word to the application and closes its file, its stream
    /// gone with its connection; the node starts the file again on a new channel.
    pub fn withdraw(&mut self) {
        if matches!(self.state, State::Done(_)) {
            return;
        }
        self.state = State::Done(Status::Created);
        self.timers.clear(Timer::Accept);
        self.timers.clear(Timer::Linger);
        self.stream_open = false;
        if self.file_open {
            self.file_open = false;
            self.out
                .push_back(Output::File(FileOp::Close { file: self.file }));
        }
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), Error> {
        match input {
            Input::Received(data) => self.on_received(now, data),
            Input::Writable(n) => {
                self.on_writable(n);
                self.pump();
            }
            Input::StreamEnded | Input::StreamReset => {
                if !matches!(self.state, State::Done(_)) {
                    self.finish(Status::ClosedByPeer, Some(Reason::ConnectionLost));
                }
                self.close_stream();
            }
            Input::File(result) => self.on_file(now, result)?,
        }
        Ok(())
    }

    /// Lets time pass.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::Accept => {
                    if self.state == State::WaitReply {
                        self.abort(
                            now,
                            Status::TimeoutExpired,
                            Reason::Timeout,
                            CancelCode::Timeout,
                        );
                    }
                }
                Timer::Linger => self.close_stream(),
                // The receiver's timers.
                Timer::Header | Timer::Decision => {}
            }
        }
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`handle_timeout`](Self::handle_timeout) next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    fn on_file(&mut self, now: Instant, result: FileResult) -> Result<(), Error> {
        if result.file() != self.file {
            return Err(Error::UnknownFile(result.file()));
        }
        match (self.state, result) {
            (_, FileResult::Closed { .. }) => {}
            (State::Opening, FileResult::Opened { len, .. }) => {
                self.file_open = true;
                self.size = len;
                let header = Header {
                    content_length: len,
                    display_name: self.display_name.clone(),
                    offset: 0,
                    extension: (self.form == Form::Framed).then_some(EXTENSION_VERSION),
                    prefix_digest: self.form == Form::Framed,
                    manifest: self.manifest,
                };
                self.send(header.encode());
                self.state = State::WaitReply;
                self.timers.set(Timer::Accept, now + ACCEPT_TIMEOUT);
                self.event_status(Status::WaitPeerAcceptance, None);
            }
            (State::Opening, FileResult::Failed { error, .. }) => {
                let status = match error {
                    FileError::NotFound | FileError::PermissionDenied => Status::InvalidPathname,
                    _ => Status::ClosedByHost,
                };
                self.finish(status, Some(Reason::File(error)));
                self.close_stream();
            }
            (State::Sending, FileResult::Data { offset, data, .. }) => {
                if offset != self.next_data
                    || data.is_empty()
                    || offset + data.len() as u64 > self.next_read
                {
                    return Err(Error::UnexpectedInput("file data that was not asked for"));
                }
                self.next_data += data.len() as u64;
                let cost = self.wire_len(data.len());
                self.reading = self.reading.saturating_sub(cost);
                if self.framed {
                    // The header beside the file's bytes, not in front of a copy of them.
                    self.send_data(data);
                } else {
                    self.send(data);
                }
                self.unacked.push_back((self.wire_sent, self.next_data));
                self.pump();
            }
            (State::Proving, FileResult::Digest { digest, .. }) => self.on_prefix(digest),
            (State::Sending, FileResult::Digest { digest, .. }) if self.digest_asked => {
                self.end_digest = Some(digest);
                self.send(Frame::End(digest).encode());
                self.state = State::WaitVerdict;
            }
            (
                State::Sending | State::WaitReply | State::Proving,
                FileResult::Failed { error, .. },
            ) => {
                self.abort(
                    now,
                    Status::ClosedByHost,
                    Reason::File(error),
                    CancelCode::FileError,
                );
            }
            // Answers that arrive after the transfer ended are of no use any more.
            (State::Done(_), _) => {}
            _ => {
                return Err(Error::UnexpectedInput(
                    "a file answer this transfer did not ask for",
                ));
            }
        }
        Ok(())
    }

    fn on_received(&mut self, now: Instant, data: Bytes) {
        match self.state {
            State::WaitReply => {
                let (reply, rest) = match self.reply.push(&data) {
                    Ok(Some(r)) => r,
                    Ok(None) => return,
                    Err(_) => {
                        self.finish(
                            Status::ClosedByPeer,
                            Some(Reason::Protocol("reply is neither GO nor NGO")),
                        );
                        self.close_stream();
                        return;
                    }
                };
                self.timers.clear(Timer::Accept);
                match reply {
                    Reply::Ngo => {
                        self.finish(Status::ClosedByPeer, Some(Reason::Refused));
                        self.close_stream();
                        return;
                    }
                    Reply::GoAt(_) | Reply::GoVerify(..) if self.form == Form::Raw => {
                        return self.violation(
                            now,
                            "GO with an offset to a sender that did not offer frames",
                        );
                    }
                    Reply::GoAt(offset) if offset > self.size => {
                        return self.violation(now, "GO offset beyond the file size");
                    }
                    Reply::GoVerify(offset, _) if offset > self.size || offset == 0 => {
                        return self.violation(now, "GO with a prefix digest of no prefix");
                    }
                    Reply::GoVerify(offset, digest) => {
                        // Hash our first `offset` bytes (the driver keeps that hash going for
                        // the whole file's digest) before a single byte leaves.
                        self.framed = true;
                        self.state = State::Proving;
                        self.claimed = Some((offset, digest));
                        self.out.push_back(Output::File(FileOp::Digest {
                            file: self.file,
                            len: offset,
                        }));
                    }
                    Reply::GoAt(offset) => {
                        self.framed = true;
                        self.start_at(offset);
                    }
                    Reply::Go => self.start_at(0),
                }
                if self.state == State::Sending {
                    self.started(false);
                }
                if !rest.is_empty() {
                    self.on_received(now, rest);
                }
            }
            State::Sending | State::WaitVerdict | State::Proving if self.framed => {
                self.frames.push(&data);
                // Every frame a receiver may send ends the transfer, so one is all we read.
                match self.frames.next_frame() {
                    Ok(None) => {}
                    Ok(Some(Frame::Cancel(code))) => {
                        self.finish(Status::ClosedByPeer, Some(Reason::PeerCancelled(code)));
                        self.close_stream();
                    }
                    Ok(Some(Frame::Verdict(ok))) if self.state == State::WaitVerdict => {
                        if ok {
                            self.finish(Status::Finished, None);
                        } else {
                            self.finish(Status::DigestMismatch, Some(Reason::DigestMismatch));
                        }
                        self.close_stream();
                    }
                    Ok(Some(_)) => self.violation(now, "unexpected frame from the receiver"),
                    Err(_) => self.violation(now, "undecodable frame from the receiver"),
                }
            }
            // Jami's raw form has nothing to say after GO; once over, nothing matters.
            State::Sending | State::WaitVerdict | State::Proving | State::Done(_) => {}
            State::Opening => self.violation(now, "the receiver spoke before the header"),
        }
    }

    /// The digest of our first `n` bytes, to compare with the receiver's.
    fn on_prefix(&mut self, ours: Digest) {
        let Some((held, theirs)) = self.claimed.take() else {
            return;
        };
        if ours == theirs {
            self.start_at(held);
            self.started(true);
        } else {
            // What the receiver holds under this id is not our file's start: never send the
            // rest onto it (a full transfer would end in a digest mismatch).
            self.send(Frame::Restart.encode());
            self.start_at(0);
            self.event_status(Status::Ongoing, None);
            self.out.push_back(Output::Event(Event::Restarted {
                transfer: self.id,
                held,
                total: self.size,
            }));
            self.pump();
        }
    }

    /// Data is about to flow from `self.progress`: says so, and sends.
    fn started(&mut self, verified: bool) {
        self.event_status(Status::Ongoing, None);
        if self.progress > 0 {
            // The receiver kept this much: the application can say so (as the
            // receiver does) before the first new byte leaves.
            self.out.push_back(Output::Event(Event::Resuming {
                transfer: self.id,
                offset: self.progress,
                total: self.size,
                verified,
            }));
        }
        self.pump();
    }

    fn start_at(&mut self, offset: u64) {
        self.state = State::Sending;
        self.next_read = offset;
        self.next_data = offset;
        self.progress = offset;
    }

    /// Asks for as much file data as the send window allows; when all is sent, ends.
    fn pump(&mut self) {
        if self.state != State::Sending {
            return;
        }
        while self.next_read < self.size {
            let len = (self.size - self.next_read).min(MAX_DATA as u64) as usize;
            let cost = self.wire_len(len);
            if self.in_flight + self.reading + cost > SEND_WINDOW {
                break;
            }
            self.out.push_back(Output::File(FileOp::Read {
                file: self.file,
                offset: self.next_read,
                len: len as u32,
            }));
            self.reading += cost;
            self.next_read += len as u64;
        }
        if self.next_data < self.size {
            return;
        }
        if self.framed {
            if !self.digest_asked {
                self.digest_asked = true;
                self.out.push_back(Output::File(FileOp::Digest {
                    file: self.file,
                    len: self.size,
                }));
            }
        } else if self.in_flight == 0 {
            // Jami's raw form: the end of the bytes is the end of the transfer.
            self.finish(Status::Finished, None);
            self.close_stream();
        }
    }

    fn on_writable(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(n);
        self.wire_acked = (self.wire_acked + n as u64).min(self.wire_sent);
        let mut moved = false;
        while let Some(&(wire_end, file_end)) = self.unacked.front() {
            if wire_end > self.wire_acked {
                break;
            }
            self.unacked.pop_front();
            self.progress = file_end;
            moved = true;
        }
        if moved && !matches!(self.state, State::Done(_)) {
            self.out.push_back(Output::Event(Event::Progress {
                transfer: self.id,
                done: self.progress,
                total: self.size,
            }));
        }
    }

    /// Ends the transfer from this side, telling the peer why when the form allows.
    fn abort(&mut self, now: Instant, status: Status, reason: Reason, code: CancelCode) {
        let framed_possible = match self.state {
            State::WaitReply => self.form == Form::Framed,
            _ => self.framed,
        };
        self.finish(status, Some(reason));
        if framed_possible {
            self.send(Frame::Cancel(code).encode());
            self.timers.set(Timer::Linger, now + LINGER);
        } else if self.stream_open {
            // Jami's raw form: a reset is the only way to say "stop".
            self.stream_open = false;
            self.out.push_back(Output::Reset);
        }
    }

    fn violation(&mut self, now: Instant, what: &'static str) {
        self.abort(
            now,
            Status::ClosedByPeer,
            Reason::Protocol(what),
            CancelCode::Protocol,
        );
    }

    fn finish(&mut self, status: Status, reason: Option<Reason>) {
        if matches!(self.state, State::Done(_)) {
            return;
        }
        let verified = status == Status::Finished && self.framed;
        self.state = State::Done(status);
        self.timers.clear(Timer::Accept);
        self.event_status(status, reason);
        if verified {
            // The receiver's VERDICT confirmed the digest we sent; it is the file's.
            if let Some(digest) = self.end_digest {
                self.out.push_back(Output::Event(Event::Verified {
                    transfer: self.id,
                    digest,
                    name: String::new(),
                }));
            }
        }
        if self.file_open {
            self.file_open = false;
            self.out
                .push_back(Output::File(FileOp::Close { file: self.file }));
        }
    }

    fn send(&mut self, data: Bytes) {
        if !self.stream_open {
            return;
        }
        self.in_flight += data.len();
        self.wire_sent += data.len() as u64;
        self.out.push_back(Output::Send(data));
    }

    /// [`send`](Self::send) of `Frame::Data(data)`, as [`Output::SendData`].
    fn send_data(&mut self, data: Bytes) {
        if !self.stream_open {
            return;
        }
        let len = FRAME_HEADER + data.len();
        self.in_flight += len;
        self.wire_sent += len as u64;
        let header = super::frame::data_header(data.len());
        self.out.push_back(Output::SendData { header, data });
    }

    fn close_stream(&mut self) {
        self.timers.clear(Timer::Linger);
        if self.stream_open {
            self.stream_open = false;
            self.out.push_back(Output::Close);
        }
    }

    fn wire_len(&self, data_len: usize) -> usize {
        if self.framed {
            data_len + FRAME_HEADER
        } else {
            data_len
        }
    }

    fn event_status(&mut self, status: Status, reason: Option<Reason>) {
        self.out.push_back(Output::Event(Event::Status {
            transfer: self.id,
            status,
            reason,
        }));
    }
}
