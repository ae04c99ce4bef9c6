//! The manifest's channel, `file-manifest://<mid>` (`PROTOCOL.md` §14), as two sans-IO
//! machines: [`ManifestOffer`] on the sender's side (the manifest goes, `GO` or `NGO` comes
//! back) and [`ManifestIntake`] on the receiver's (the manifest comes, is shown to the local
//! user, and is answered as a whole).
//!
//! Neither touches a file: the files of an accepted manifest go as ordinary transfers on
//! channels of their own, and the receiver checks them with the [`Claims`] that
//! [`ManifestIntake::accept`] hands over. Both sides keep the channel until the sender ends
//! it after its last file ([`ManifestOffer::finish`]), so the channel's end says "the offer
//! is over" without a message of its own.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use super::wire::ManifestParser;
use super::{Claims, Manifest, ManifestError};
use crate::transfer::reply::{Reply, ReplyParser};
use crate::transfer::{DECISION_TIMEOUT, HEADER_TIMEOUT, TransferId};

/// What a manifest machine asks of its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelOutput {
    /// Bytes to write on the channel.
    Send(Bytes),
    /// Our side of the channel ends.
    Close,
}

/// The reason of [`OfferState::Failed`] after [`ManifestOffer::cancel`].
pub const CANCELLED: &str = "cancelled";
/// The reason of [`OfferState::Failed`] after [`ManifestOffer::declined`].
pub const DECLINED: &str = "the device declined the offer's channel (it has too many offers open)";

/// Where a sent manifest stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OfferState {
    /// Waiting for the channel to open.
    Opening,
    /// The manifest went; waiting for `GO` or `NGO`.
    WaitReply,
    /// `GO`: the files may go, each under the manifest's id.
    Accepted,
    /// `NGO`: nothing is to be sent.
    Refused,
    /// No answer before the deadline, the channel ended first, or the answer was garbage:
    /// nothing is to be sent (the reason says which).
    Failed(&'static str),
    /// The sender ended the channel after its files.
    Finished,
}

impl OfferState {
    /// Whether the offer will change no more (its channel may still need ending).
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            OfferState::Refused | OfferState::Failed(_) | OfferState::Finished
        )
    }
}

/// The sender's side of a manifest's channel.
#[derive(Debug)]
pub struct ManifestOffer {
    id: TransferId,
    bytes: Bytes,
    state: OfferState,
    reply: ReplyParser,
    deadline: Option<Instant>,
    out: VecDeque<ChannelOutput>,
}

impl ManifestOffer {
    /// An offer of `manifest` under id `id`, waiting for its channel.
    pub fn new(id: TransferId, manifest: &Manifest) -> ManifestOffer {
        ManifestOffer {
            id,
            bytes: manifest.encode(),
            state: OfferState::Opening,
            reply: ReplyParser::new(),
            deadline: None,
            out: VecDeque::new(),
        }
    }

    /// The manifest's id (`mid`).
    pub fn id(&self) -> TransferId {
        self.id
    }

    /// Where it stands.
    pub fn state(&self) -> &OfferState {
        &self.state
    }

    /// The channel is open: the manifest goes, and the receiver has as long as a single
    /// file's offer to answer ([`DECISION_TIMEOUT`]: a person decides).
    pub fn opened(&mut self, now: Instant) {
        if self.state == OfferState::Opening {
            self.out.push_back(ChannelOutput::Send(self.bytes.clone()));
            self.state = OfferState::WaitReply;
            self.deadline = Some(now + DECISION_TIMEOUT);
        }
    }

    /// Bytes came on the channel. Only the answer may come, once: anything else is a
    /// protocol violation and ends the offer.
    pub fn received(&mut self, data: &[u8]) {
        if self.state != OfferState::WaitReply {
            if !data.is_empty() && !self.state.is_final() {
                self.fail("bytes on the manifest's channel after its answer");
            }
            return;
        }
        match self.reply.push(data) {
            Ok(None) => {}
            Ok(Some((_, rest))) if !rest.is_empty() => {
                self.fail("bytes after the answer to the manifest")
            }
            Ok(Some((Reply::Go, _))) => {
                self.state = OfferState::Accepted;
                self.deadline = None;
            }
            Ok(Some((Reply::Ngo, _))) => {
                self.state = OfferState::Refused;
                self.deadline = None;
                self.out.push_back(ChannelOutput::Close);
            }
            Ok(Some(_)) => self.fail("the manifest was answered with an offset"),
            Err(_) => self.fail("the answer to the manifest is neither GO nor NGO"),
        }
    }

    /// The receiver ended the channel. Before its answer that is a refusal we cannot read
    /// as one; after `GO` it changes nothing (the files have channels of their own).
    pub fn ended(&mut self) {
        if matches!(self.state, OfferState::Opening | OfferState::WaitReply) {
            self.fail("the manifest's channel ended before its answer");
        }
    }

    /// The device declined the manifest's channel (it holds as many offers of ours as it
    /// takes): nothing is to be sent.
    pub fn declined(&mut self) {
        if matches!(self.state, OfferState::Opening | OfferState::WaitReply) {
            self.fail(DECLINED);
        }
    }

    /// The local user cancelled the send before the answer: the channel ends, and nothing
    /// is to be sent.
    pub fn cancel(&mut self) {
        if matches!(self.state, OfferState::Opening | OfferState::WaitReply) {
            self.fail(CANCELLED);
        }
    }

    /// The sender's last file is over: the channel ends.
    pub fn finish(&mut self) {
        if self.state == OfferState::Accepted {
            self.state = OfferState::Finished;
            self.out.push_back(ChannelOutput::Close);
        }
    }

    /// Runs the answer's deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) {
            self.fail("no answer to the manifest in time");
        }
    }

    /// The answer's deadline, while it runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// What the channel is to do next.
    pub fn poll_output(&mut self) -> Option<ChannelOutput> {
        self.out.pop_front()
    }

    fn fail(&mut self, why: &'static str) {
        self.state = OfferState::Failed(why);
        self.deadline = None;
        self.out.push_back(ChannelOutput::Close);
    }
}

/// Where a received manifest stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeState {
    /// Reading the manifest.
    Reading,
    /// Read and checked: the local user decides (see [`ManifestIntake::manifest`]).
    WaitDecision,
    /// `GO` went: its files are taken under the [`Claims`] handed over.
    Accepted,
    /// `NGO` went, for the reason given. Nothing is created.
    Refused(Refusal),
    /// The sender ended the channel (after its files, or before the answer).
    Ended,
}

/// Why a received manifest was answered `NGO`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The local user refused it.
    ByUser,
    /// It broke a rule of §14 (or bytes followed it before the answer).
    Invalid(ManifestError),
    /// The manifest did not come within [`HEADER_TIMEOUT`], or no decision within
    /// [`DECISION_TIMEOUT`].
    TimedOut,
}

/// The receiver's side of a manifest's channel.
#[derive(Debug)]
pub struct ManifestIntake {
    id: TransferId,
    parser: ManifestParser,
    manifest: Option<Manifest>,
    state: IntakeState,
    deadline: Option<Instant>,
    out: VecDeque<ChannelOutput>,
}

impl ManifestIntake {
    /// A manifest channel `id` just accepted: its manifest must come within
    /// [`HEADER_TIMEOUT`], as a file's header must.
    pub fn new(now: Instant, id: TransferId) -> ManifestIntake {
        ManifestIntake {
            id,
            parser: ManifestParser::new(),
            manifest: None,
            state: IntakeState::Reading,
            deadline: Some(now + HEADER_TIMEOUT),
            out: VecDeque::new(),
        }
    }

    /// The manifest's id (`mid`).
    pub fn id(&self) -> TransferId {
        self.id
    }

    /// Where it stands.
    pub fn state(&self) -> &IntakeState {
        &self.state
    }

    /// The manifest, once read and checked (what the offer shows: [`Manifest::file_count`],
    /// [`Manifest::total_size`], [`Manifest::top_names`]).
    pub fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref()
    }

    /// Bytes came on the channel: `true` when they completed the manifest (the offer is to be
    /// shown). A manifest that breaks a rule, or bytes after it, are answered `NGO`.
    pub fn received(&mut self, now: Instant, data: &[u8]) -> bool {
        match self.state {
            IntakeState::Reading | IntakeState::WaitDecision => {}
            // After the answer the sender only ends the channel; bytes are ignored, as bytes
            // on a channel that crossed its end are (§8).
            _ => return false,
        }
        match self.parser.feed(data) {
            Ok(Some(manifest)) => {
                self.manifest = Some(manifest);
                self.state = IntakeState::WaitDecision;
                self.deadline = Some(now + DECISION_TIMEOUT);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.answer_ngo(Refusal::Invalid(e));
                false
            }
        }
    }

    /// The local user accepts the whole offer: `GO` goes, and the files are to be checked
    /// with the claims returned (`None` if there is nothing to accept now).
    pub fn accept(&mut self) -> Option<Claims> {
        if self.state != IntakeState::WaitDecision {
            return None;
        }
        let manifest = self.manifest.clone()?;
        self.state = IntakeState::Accepted;
        self.deadline = None;
        self.out.push_back(ChannelOutput::Send(Reply::Go.encode()));
        Some(Claims::new(manifest))
    }

    /// The local user refuses the whole offer: `NGO` goes. `false` if it was answered already.
    pub fn refuse(&mut self) -> bool {
        if matches!(self.state, IntakeState::Reading | IntakeState::WaitDecision) {
            self.answer_ngo(Refusal::ByUser);
            true
        } else {
            false
        }
    }

    /// The sender ended the channel: the offer is over.
    pub fn ended(&mut self) {
        // After NGO our side is closed already, and the reason is kept.
        if matches!(self.state, IntakeState::Refused(_) | IntakeState::Ended) {
            return;
        }
        self.out.push_back(ChannelOutput::Close);
        self.state = IntakeState::Ended;
        self.deadline = None;
    }

    /// Runs the deadlines: the manifest's, then the decision's.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.deadline.is_some_and(|d| now >= d) {
            self.answer_ngo(Refusal::TimedOut);
        }
    }

    /// The running deadline, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline
    }

    /// What the channel is to do next.
    pub fn poll_output(&mut self) -> Option<ChannelOutput> {
        self.out.pop_front()
    }

    fn answer_ngo(&mut self, why: Refusal) {
        self.state = IntakeState::Refused(why);
        self.deadline = None;
        self.out.push_back(ChannelOutput::Send(Reply::Ngo.encode()));
        self.out.push_back(ChannelOutput::Close);
    }
}

#[cfg(test)]
mod tests;
