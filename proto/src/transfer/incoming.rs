//! The receiving side of one transfer (Jami's `IncomingFileTransfer`).
//!
//! ```text
//! header ──▶ WaitHostAcceptance ──accept──▶ open partial ──GO / GO n──▶ Ongoing
//!              │ refuse: NGO                                  │ all bytes written (and END)
//!              ▼                                              ▼
//!        closed_by_host                    digest ──match──▶ commit ──▶ VERDICT OK, Finished
//!                                                  └─mismatch──▶ discard, VERDICT BAD, digest_mismatch
//! ```
//!
//! A header that does not come by the deadline given with
//! [`with_header_deadline`](Incoming::with_header_deadline), and an offer the local user
//! leaves unanswered for [`DECISION_TIMEOUT`](super::DECISION_TIMEOUT), end the transfer
//! `timeout_expired` (the second with `NGO`, so the sender hears it).
//!
//! The partial file is keyed by the sender's account and the transfer's id ([`PartialKey`]),
//! never by the offered name. It keeps what arrived when the peer cancels or the stream
//! breaks, so the same sender re-sending under the same id resumes from it (the framed form
//! only: a raw-form peer sends no digest, so it never resumes into kept data); it is deleted when the local user cancels, when
//! the digest does not match, or when the peer sends more than it announced.
//!
//! A sender that announced the `prefix-digest` feature gets `GO n <sha3-512 of the first n
//! bytes>` instead of `GO n` when `n > 0`: it compares, and either sends from `n` (its first
//! frame is DATA or END) or sends RESTART first, on which the partial file is emptied and the
//! data starts at 0.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::frame::{CancelCode, Frame, FrameDecoder};
use super::header::{EXTENSION_VERSION, Header, HeaderParser};
use super::manifest::Place;
use super::picture::MagicCheck;
use super::reply::Reply;
use super::{
    DECISION_TIMEOUT, Digest, Form, Input, LINGER, Output, PartialKey, Reason, SafeName, Status,
    Timer, TransferId, WRITE_WINDOW,
};
use crate::Error;
use crate::io::{Event, FileId, FileOp, FileResult};
use crate::timer::Timers;
use crate::tls::AccountId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the header.
    WaitHeader,
    /// Header read; the local user decides.
    WaitHost,
    /// Accepted; the partial file is opening.
    Opening,
    /// The partial file holds a prefix whose digest is being taken for `GO n <digest>`.
    Proving,
    /// `GO` sent; data arriving.
    Receiving,
    /// Every byte written; the digest is being computed.
    Checking,
    /// The digest matched; the file is getting its final name.
    Committing,
    /// Over, with this status.
    Done(Status),
}

/// What to do with the partial file when the transfer ends badly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Partial {
    /// Keep it for a later resume.
    Keep,
    /// Delete it.
    Discard,
}

/// What the owner of a transfer told it about it.
#[derive(Debug, Default)]
struct Owner {
    /// The sender's account, when the owner knows it (see [`PartialKey`]).
    sender: Option<AccountId>,
    /// For a file taken as a picture without asking: its first bytes, until they tell.
    picture: Option<MagicCheck>,
    /// For a file of an accepted manifest: where it goes (`PROTOCOL.md` §14).
    place: Option<Place>,
}

/// Receives one file from one stream.
#[derive(Debug)]
pub struct Incoming {
    id: TransferId,
    file: FileId,
    form: Form,
    /// What the owner said of this transfer (boxed: the machine is large enough already).
    owner: Box<Owner>,
    state: State,
    parser: HeaderParser,
    header: Option<Header>,
    name: Option<SafeName>,
    framed: bool,
    frames: FrameDecoder,
    /// The next byte the stream will carry.
    cursor: u64,
    /// Bytes asked to be written and not yet written.
    pending: usize,
    /// Bytes held on disk from offset 0 (progress).
    written: u64,
    paused: bool,
    /// The digest END announced (framed form).
    end_digest: Option<Digest>,
    /// A digest known from elsewhere (a conversation's file record), checked in the raw form.
    expected: Option<Digest>,
    /// The digest the file was checked against, once it matched.
    checked: Option<Digest>,
    /// After `GO n <digest>`: the sender's first frame tells whether the prefix matched, and
    /// nothing is said about the resume before it.
    prefix_sent: bool,
    /// A [`FileOp::Truncate`] is out (RESTART came).
    truncating: bool,
    file_open: bool,
    stream_open: bool,
    timers: Timers<Timer>,
    out: VecDeque<Output>,
}

impl Incoming {
    /// Waits for a header on a new stream. `file` is the name the partial file will get.
    pub fn new(id: TransferId, file: FileId, form: Form) -> Incoming {
        Incoming {
            id,
            file,
            form,
            owner: Box::default(),
            state: State::WaitHeader,
            parser: HeaderParser::new(),
            header: None,
            name: None,
            framed: false,
            frames: FrameDecoder::new(),
            cursor: 0,
            pending: 0,
            written: 0,
            paused: false,
            end_digest: None,
            expected: None,
            checked: None,
            prefix_sent: false,
            truncating: false,
            file_open: false,
            stream_open: true,
            timers: Timers::new(),
            out: VecDeque::new(),
        }
    }

    /// Ends the transfer `timeout_expired` if no header has come by `at` (a node gives
    /// [`HEADER_TIMEOUT`](super::HEADER_TIMEOUT) to a stream a peer opened): a peer that
    /// opens streams and says nothing holds them for no longer.
    pub fn with_header_deadline(mut self, at: Instant) -> Incoming {
        self.timers.set(Timer::Header, at);
        self
    }

    /// The sender is `account` (the owner took it from the pinned TLS session): its partial
    /// data is kept apart from every other peer's, under ([`PartialKey`]) its account and the
    /// transfer's id.
    pub fn with_sender(mut self, account: AccountId) -> Incoming {
        self.owner.sender = Some(account);
        self
    }

    /// The file is being taken as a picture without the user's say: unless its first bytes
    /// are a JPEG's, PNG's, GIF's or WebP's, the transfer is cancelled (`closed_by_host`,
    /// [`Reason::NotAPicture`]) and what arrived deleted. Such a file always starts at 0, so
    /// its first bytes are seen. Call it before [`accept`](Self::accept).
    pub fn require_picture(&mut self) {
        self.owner.picture = Some(MagicCheck::default());
    }

    /// The file belongs to an accepted manifest: it goes at `place`, below the manifest's
    /// tree, instead of at the top of the receive folder. Call it before
    /// [`accept`](Self::accept).
    pub fn place_at(&mut self, place: Place) {
        self.owner.place = Some(place);
    }

    /// The transfer's id.
    pub fn id(&self) -> TransferId {
        self.id
    }

    /// The header, once it arrived.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// The name the file will get, once the header arrived and the name was safe.
    pub fn name(&self) -> Option<&SafeName> {
        self.name.as_ref()
    }

    /// Where the transfer stands.
    pub fn status(&self) -> Status {
        match self.state {
            State::WaitHeader => Status::Created,
            State::WaitHost | State::Opening | State::Proving => Status::WaitHostAcceptance,
            State::Receiving | State::Checking | State::Committing => Status::Ongoing,
            State::Done(s) => s,
        }
    }

    /// Whether nothing more will come out of this transfer.
    pub fn is_drained(&self) -> bool {
        matches!(self.state, State::Done(_)) && !self.stream_open && self.out.is_empty()
    }

    /// Checks the file against `digest` even without Ferry's END (a peer speaking Jami's raw
    /// form, whose conversation record carries the `sha3sum`).
    pub fn expect_digest(&mut self, digest: Digest) {
        self.expected = Some(digest);
    }

    /// The local user accepts. Only while waiting for that answer.
    pub fn accept(&mut self, now: Instant) -> Result<(), Error> {
        if self.state != State::WaitHost {
            return Err(Error::NotNow(
                "accept: the transfer is not waiting for acceptance",
            ));
        }
        let (Some(name), Some(header)) = (self.name.clone(), self.header.as_ref()) else {
            return Err(Error::NotNow("accept: no header yet"));
        };
        if self.owner.picture.is_some() && header.content_length < MagicCheck::SHORTEST {
            // Too short for any picture's magic bytes: nothing to open.
            self.refuse_with(now, Status::ClosedByHost, Reason::NotAPicture);
            return Ok(());
        }
        self.state = State::Opening;
        self.timers.clear(Timer::Decision);
        self.out.push_back(Output::File(FileOp::OpenPartial {
            file: self.file,
            name,
            size: header.content_length,
            key: PartialKey {
                sender: self.owner.sender,
                transfer: self.id,
            },
            // Only the framed form ends with a digest, so only there can a kept prefix be
            // checked: a raw-form peer starts at 0, whatever is held under its key. A file
            // that must prove to be a picture starts at 0 too: its first bytes are checked.
            resume: self.framed && self.owner.picture.is_none(),
            place: self.owner.place.clone(),
        }));
        Ok(())
    }

    /// The local user refuses. Only while waiting for that answer.
    pub fn refuse(&mut self, now: Instant) -> Result<(), Error> {
        if self.state != State::WaitHost {
            return Err(Error::NotNow(
                "refuse: the transfer is not waiting for acceptance",
            ));
        }
        self.refuse_with(now, Status::ClosedByHost, Reason::Refused);
        Ok(())
    }

    /// The owner refuses the file as breaking the protocol (`invalid`, with `why`): a file
    /// that names a manifest that does not list it, say. Only while waiting for a decision.
    pub fn refuse_invalid(&mut self, now: Instant, why: &'static str) {
        if self.state == State::WaitHost {
            self.refuse_with(now, Status::Invalid, Reason::Protocol(why));
        }
    }

    /// The local user cancels. Harmless once the transfer is over, and once the file is
    /// verified and being renamed (it is too late to lose it then).
    pub fn cancel(&mut self, now: Instant) {
        match self.state {
            State::Done(_) | State::Committing => {}
            State::WaitHeader => {
                self.finish(Status::ClosedByHost, Some(Reason::Cancelled), Partial::Keep);
                self.close_stream();
            }
            State::WaitHost | State::Opening | State::Proving => {
                self.refuse_with(now, Status::ClosedByHost, Reason::Cancelled)
            }
            State::Receiving | State::Checking => self.abort(
                now,
                Status::ClosedByHost,
                Reason::Cancelled,
                CancelCode::User,
                Partial::Discard,
            ),
        }
    }

    /// Feeds one input.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), Error> {
        match input {
            Input::Received(data) => self.on_received(now, data),
            // The receiver sends little (a reply, a verdict); it needs no send window.
            Input::Writable(_) => {}
            Input::StreamEnded | Input::StreamReset => self.on_stream_gone(),
            Input::File(result) => self.on_file(now, result)?,
        }
        Ok(())
    }

    /// Lets time pass.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::Linger => self.close_stream(),
                Timer::Header if self.state == State::WaitHeader => {
                    self.finish(Status::TimeoutExpired, Some(Reason::Timeout), Partial::Keep);
                    self.close_stream();
                }
                Timer::Decision if self.state == State::WaitHost => {
                    self.refuse_with(now, Status::TimeoutExpired, Reason::Timeout)
                }
                _ => {}
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

    fn on_received(&mut self, now: Instant, data: Bytes) {
        match self.state {
            State::WaitHeader => match self.parser.push(&data) {
                Ok(None) => {}
                Ok(Some(header)) => {
                    let rest = self.parser.take_rest();
                    self.on_header(now, header);
                    if !rest.is_empty() {
                        self.on_received(now, rest);
                    }
                }
                Err(e) => self.refuse_with(now, Status::Invalid, Reason::BadHeader(e)),
            },
            // Committing: the file is verified and being renamed. As for the local user's
            // cancel, it is too late, and the VERDICT the peer gets says so; taking a CANCEL
            // (or a violation) now would report a failure for a file that gets its name.
            State::Done(_) | State::Committing => {}
            _ if self.framed => {
                self.frames.push_bytes(data);
                while !matches!(self.state, State::Done(_)) {
                    match self.frames.next_frame() {
                        Ok(Some(frame)) => self.on_frame(now, frame),
                        Ok(None) => break,
                        Err(_) => {
                            self.violation(now, "undecodable frame from the sender", Partial::Keep)
                        }
                    }
                }
            }
            State::Receiving => self.on_raw(now, data),
            _ => self.violation(now, "bytes before GO or after the last one", Partial::Keep),
        }
    }

    fn on_header(&mut self, now: Instant, header: Header) {
        self.framed = self.form == Form::Framed && header.extension == Some(EXTENSION_VERSION);
        let size = header.content_length;
        let name = SafeName::from_display_name(&header.display_name);
        self.header = Some(header);
        self.timers.clear(Timer::Header);
        match name {
            Ok(name) => {
                self.state = State::WaitHost;
                self.timers.set(Timer::Decision, now + DECISION_TIMEOUT);
                self.out.push_back(Output::Event(Event::IncomingTransfer {
                    transfer: self.id,
                    name: name.to_string(),
                    size,
                    from: None,
                }));
                self.name = Some(name);
                self.event_status(Status::WaitHostAcceptance, None);
            }
            Err(_) => self.refuse_with(
                now,
                Status::InvalidPathname,
                Reason::Protocol("unusable Display-Name"),
            ),
        }
    }

    fn on_frame(&mut self, now: Instant, frame: Frame) {
        let size = self.size();
        if self.prefix_sent && !matches!(frame, Frame::Cancel(_)) {
            // The sender's first frame after `GO n <digest>`: RESTART, or its data from `n`.
            self.prefix_sent = false;
            if frame == Frame::Restart {
                return self.restart();
            }
            self.resumed(true);
        }
        match (self.state, frame) {
            (_, Frame::Cancel(code)) => {
                self.finish(
                    Status::ClosedByPeer,
                    Some(Reason::PeerCancelled(code)),
                    Partial::Keep,
                );
                self.close_stream();
            }
            (State::Receiving, Frame::Data(_)) if self.end_digest.is_some() => {
                self.violation(now, "DATA after END", Partial::Discard)
            }
            (State::Receiving, Frame::Data(data)) => {
                if self.cursor + data.len() as u64 > size {
                    // Never keep more than was announced.
                    return self.violation(now, "more data than Content-Length", Partial::Discard);
                }
                self.write(now, data);
            }
            (State::Receiving, Frame::End(digest)) if self.end_digest.is_none() => {
                if self.cursor != size {
                    return self.violation(now, "END before all the data", Partial::Keep);
                }
                self.end_digest = Some(digest);
                self.check_complete();
            }
            _ => self.violation(now, "unexpected frame from the sender", Partial::Keep),
        }
    }

    /// RESTART: what we hold is not the sender's file; empty it and take the data from 0.
    fn restart(&mut self) {
        let held = self.cursor;
        self.cursor = 0;
        self.written = 0;
        self.truncating = true;
        self.out
            .push_back(Output::File(FileOp::Truncate { file: self.file }));
        self.out.push_back(Output::Event(Event::Restarted {
            transfer: self.id,
            held,
            total: self.size(),
        }));
    }

    /// The transfer goes on from what is held: says so.
    fn resumed(&mut self, verified: bool) {
        if self.cursor == 0 {
            return;
        }
        self.out.push_back(Output::Event(Event::Resuming {
            transfer: self.id,
            offset: self.cursor,
            total: self.size(),
            verified,
        }));
        self.out.push_back(Output::Event(Event::Progress {
            transfer: self.id,
            done: self.cursor,
            total: self.size(),
        }));
    }

    fn on_raw(&mut self, now: Instant, data: Bytes) {
        if self.cursor + data.len() as u64 > self.size() {
            return self.violation(now, "more data than Content-Length", Partial::Discard);
        }
        self.write(now, data);
    }

    fn write(&mut self, now: Instant, data: Bytes) {
        // Nothing to write is no write: an empty read of the raw form would otherwise ask for
        // an empty write whose answer could come after the last real one, in Checking.
        if data.is_empty() {
            return;
        }
        let len = data.len();
        let ends = self.cursor + len as u64 >= self.size();
        if let Some(check) = self.owner.picture.as_mut() {
            match check.push(&data, ends) {
                Some(true) => self.owner.picture = None,
                Some(false) => {
                    self.owner.picture = None;
                    return self.abort(
                        now,
                        Status::ClosedByHost,
                        Reason::NotAPicture,
                        CancelCode::User,
                        Partial::Discard,
                    );
                }
                None => {}
            }
        }
        self.out.push_back(Output::File(FileOp::Write {
            file: self.file,
            offset: self.cursor,
            data,
        }));
        self.cursor += len as u64;
        self.pending += len;
        if self.pending >= WRITE_WINDOW && !self.paused {
            self.paused = true;
            self.out.push_back(Output::PauseReading);
        }
    }

    fn on_file(&mut self, now: Instant, result: FileResult) -> Result<(), Error> {
        if result.file() != self.file {
            return Err(Error::UnknownFile(result.file()));
        }
        match (self.state, result) {
            (_, FileResult::Closed { .. }) => {}
            (State::Opening, FileResult::Opened { len, .. }) => self.on_opened(now, len)?,
            (State::Receiving | State::Checking, FileResult::Opened { len: 0, .. })
                if self.truncating =>
            {
                self.truncating = false;
            }
            (State::Proving, FileResult::Digest { digest, .. }) => {
                self.send(Reply::GoVerify(self.cursor, digest).encode());
                self.prefix_sent = true;
                self.state = State::Receiving;
                self.event_status(Status::Ongoing, None);
            }
            (State::Receiving, FileResult::Written { offset, len, .. }) => {
                if offset != self.written || len as usize > self.pending {
                    return Err(Error::UnexpectedInput(
                        "a write this transfer did not ask for",
                    ));
                }
                self.pending -= len as usize;
                self.written += u64::from(len);
                self.out.push_back(Output::Event(Event::Progress {
                    transfer: self.id,
                    done: self.written,
                    total: self.size(),
                }));
                if self.paused && self.pending <= WRITE_WINDOW / 2 {
                    self.paused = false;
                    self.out.push_back(Output::ResumeReading);
                }
                self.check_complete();
            }
            (State::Checking, FileResult::Digest { digest, .. }) => {
                let against = if self.framed {
                    self.end_digest
                } else {
                    self.expected
                };
                match against {
                    Some(want) if want != digest => {
                        if self.framed {
                            self.send(Frame::Verdict(false).encode());
                            self.timers.set(Timer::Linger, now + LINGER);
                        }
                        self.finish(
                            Status::DigestMismatch,
                            Some(Reason::DigestMismatch),
                            Partial::Discard,
                        );
                    }
                    _ => {
                        self.checked = against;
                        self.state = State::Committing;
                        self.out
                            .push_back(Output::File(FileOp::Commit { file: self.file }));
                    }
                }
            }
            (State::Committing, FileResult::Committed { name, .. }) => {
                self.file_open = false;
                if self.framed {
                    // Only now, with the file safe under its final name, does the sender hear OK.
                    self.send(Frame::Verdict(true).encode());
                    self.timers.set(Timer::Linger, now + LINGER);
                }
                self.finish(Status::Finished, None, Partial::Keep);
                if let Some(digest) = self.checked {
                    self.out.push_back(Output::Event(Event::Verified {
                        transfer: self.id,
                        digest,
                        name,
                    }));
                }
            }
            (
                State::Opening
                | State::Proving
                | State::Receiving
                | State::Checking
                | State::Committing,
                FileResult::Failed { error, .. },
            ) => {
                if matches!(self.state, State::Opening | State::Proving) {
                    // Proving: the file is open and stays (closed, kept) for a later try.
                    self.file_open = self.state == State::Proving;
                    if self.framed {
                        // NGO carries no reason: `GO 0` then CANCEL 0x01 is how the framed
                        // form tells the sender that the file cannot be written here (a full
                        // disk, a hostile receive folder), in bytes every Ferry understands.
                        self.send(Reply::GoAt(0).encode());
                        self.abort(
                            now,
                            Status::ClosedByHost,
                            Reason::File(error),
                            CancelCode::FileError,
                            Partial::Keep,
                        );
                    } else {
                        self.refuse_with(now, Status::ClosedByHost, Reason::File(error));
                    }
                } else {
                    self.abort(
                        now,
                        Status::ClosedByHost,
                        Reason::File(error),
                        CancelCode::FileError,
                        Partial::Keep,
                    );
                }
            }
            (State::Done(_), _) => {}
            _ => {
                return Err(Error::UnexpectedInput(
                    "a file answer this transfer did not ask for",
                ));
            }
        }
        Ok(())
    }

    fn on_opened(&mut self, now: Instant, held: u64) -> Result<(), Error> {
        let size = self.size();
        if held > size {
            return Err(Error::UnexpectedInput(
                "OpenPartial answered with a file longer than the transfer",
            ));
        }
        self.file_open = true;
        let prefix = self.header.as_ref().is_some_and(|h| h.prefix_digest);
        if self.framed && prefix && held > 0 {
            // The sender checks what we hold against its file before it sends a byte.
            self.state = State::Proving;
            self.cursor = held;
            self.written = held;
            self.out.push_back(Output::File(FileOp::Digest {
                file: self.file,
                len: held,
            }));
            return Ok(());
        }
        let start = if self.framed {
            self.send(Reply::GoAt(held).encode());
            held
        } else {
            let offset = self.header.as_ref().map_or(0, |h| h.offset);
            if offset > held {
                // Jami's raw form starts where the sender says; a gap cannot be filled.
                self.refuse_with(
                    now,
                    Status::Unsupported,
                    Reason::Protocol("raw-form Offset beyond the bytes held"),
                );
                return Ok(());
            }
            self.send(Reply::Go.encode());
            offset
        };
        self.state = State::Receiving;
        self.cursor = start;
        self.written = start;
        self.event_status(Status::Ongoing, None);
        self.resumed(false);
        self.check_complete();
        Ok(())
    }

    /// Once every byte is on disk (and, framed, END has come), asks for the digest.
    fn check_complete(&mut self) {
        let all_in =
            self.state == State::Receiving && self.cursor == self.size() && self.pending == 0;
        if all_in && (!self.framed || self.end_digest.is_some()) {
            self.state = State::Checking;
            self.out.push_back(Output::File(FileOp::Digest {
                file: self.file,
                len: self.size(),
            }));
        }
    }

    fn on_stream_gone(&mut self) {
        let all_in = self.cursor == self.size()
            && matches!(
                self.state,
                State::Receiving | State::Checking | State::Committing
            );
        let raw_done = !self.framed && all_in;
        let framed_checked =
            self.framed && matches!(self.state, State::Checking | State::Committing);
        if !matches!(self.state, State::Done(_)) && !raw_done && !framed_checked {
            self.finish(
                Status::ClosedByPeer,
                Some(Reason::ConnectionLost),
                Partial::Keep,
            );
        }
        // Otherwise every byte is in: finish writing, checking and committing without the stream.
        self.close_stream();
    }

    /// Answers NGO and ends.
    fn refuse_with(&mut self, now: Instant, status: Status, reason: Reason) {
        self.send(Reply::Ngo.encode());
        self.timers.set(Timer::Linger, now + LINGER);
        self.finish(status, Some(reason), Partial::Keep);
    }

    /// Ends after GO, telling the sender why when the form allows.
    fn abort(
        &mut self,
        now: Instant,
        status: Status,
        reason: Reason,
        code: CancelCode,
        partial: Partial,
    ) {
        if self.framed {
            self.send(Frame::Cancel(code).encode());
            self.timers.set(Timer::Linger, now + LINGER);
        } else if self.stream_open {
            self.stream_open = false;
            self.out.push_back(Output::Reset);
        }
        self.finish(status, Some(reason), partial);
    }

    fn violation(&mut self, now: Instant, what: &'static str, partial: Partial) {
        self.abort(
            now,
            Status::ClosedByPeer,
            Reason::Protocol(what),
            CancelCode::Protocol,
            partial,
        );
    }

    fn finish(&mut self, status: Status, reason: Option<Reason>, partial: Partial) {
        if matches!(self.state, State::Done(_)) {
            return;
        }
        self.state = State::Done(status);
        self.timers.clear(Timer::Header);
        self.timers.clear(Timer::Decision);
        if self.paused {
            self.paused = false;
            self.out.push_back(Output::ResumeReading);
        }
        self.event_status(status, reason);
        if self.file_open {
            self.file_open = false;
            let op = match partial {
                Partial::Keep => FileOp::Close { file: self.file },
                Partial::Discard => FileOp::Discard { file: self.file },
            };
            self.out.push_back(Output::File(op));
        }
    }

    fn size(&self) -> u64 {
        self.header.as_ref().map_or(0, |h| h.content_length)
    }

    fn send(&mut self, data: Bytes) {
        if self.stream_open {
            self.out.push_back(Output::Send(data));
        }
    }

    fn close_stream(&mut self) {
        self.timers.clear(Timer::Linger);
        if self.stream_open {
            self.stream_open = false;
            self.out.push_back(Output::Close);
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
