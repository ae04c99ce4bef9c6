//! Manifests peers send us (`PROTOCOL.md` §14): an offer of several files and folders the
//! local user accepts or refuses as a whole, then its files taken without asking.
//!
//! A `file-manifest://<mid>` channel from a peer gets a [`ManifestIntake`]. Once the
//! manifest is read and checked the application hears [`Event::IncomingManifest`] and
//! answers with [`Node::accept`] or [`Node::refuse`] of `mid`. Accepting first asks the
//! driver to make the manifest's folders ([`FileOp::MakeTree`]); `GO` goes only once they
//! exist, so a sender never sends into a tree that could not be made. Each file that then
//! comes names the manifest in its header: it is taken when the manifest lists it, with
//! that size, once ([`Claims`]), and placed below the tree ([`Incoming::place_at`]); any
//! other is refused `invalid`. The manifest's own [`Event::Status`] says how the offer went:
//! `ongoing` after `GO`, and when the sender ends the channel after its last file,
//! `finished` if every file was verified, else [`Reason::Incomplete`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::Node;
use super::counters::bug;
use crate::channel::{ChannelId, MuxEvent};
use crate::io::{Event, FileId, FileOp, FileResult, MANIFEST_NAMES_SHOWN, Output};
use crate::tls::PeerIdentity;
use crate::transfer::frame::CancelCode;
use crate::transfer::manifest::{
    CHANNEL_PREFIX, ClaimError, Claims, EntryKind, IntakeState, ManifestIntake, Place, Refusal,
};
use crate::transfer::{PartialKey, Reason, Status, TransferId};

/// Most manifests of one account open at once (read, waiting for a decision, or with
/// files coming): past it, its new manifest channels are declined.
pub const MAX_MANIFESTS_PER_PEER: usize = 4;

/// One manifest a peer offered.
struct Intake {
    machine: ManifestIntake,
    connector: u32,
    channel: ChannelId,
    peer: PeerIdentity,
    /// After `GO`: the files it lists, and which came.
    claims: Option<Claims>,
    /// Its files verified so far.
    verified: usize,
    /// How the sender cancelled one of its files, if it did: the offer's end says so.
    cancelled: Option<CancelCode>,
    /// Its files taken, to count their ends.
    files: BTreeSet<TransferId>,
    /// What its [`Event::Status`] last said.
    told: Status,
}

/// The manifests peers offered us.
#[derive(Default)]
pub(super) struct Intakes {
    by_id: BTreeMap<TransferId, Intake>,
    /// [`FileOp::MakeTree`]s out, by the id that names them.
    making: BTreeMap<FileId, TransferId>,
    /// [`FileOp::ForgetTree`]s out.
    forgetting: BTreeSet<FileId>,
}

impl Intakes {
    /// Whether `id` names a manifest a peer offered.
    pub(super) fn uses(&self, id: TransferId) -> bool {
        self.by_id.contains_key(&id)
    }

    /// How many manifests `peer`'s account has open.
    pub(super) fn of(&self, peer: &PeerIdentity) -> usize {
        self.by_id
            .values()
            .filter(|i| i.peer.account == peer.account)
            .count()
    }

    /// The earliest deadline of a manifest's reading or decision.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.by_id
            .values()
            .filter_map(|i| i.machine.poll_timeout())
            .min()
    }

    /// Runs the manifests' clocks.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for i in self.by_id.values_mut() {
            i.machine.handle_timeout(now);
        }
    }

    fn on(&self, id: u32, channel: ChannelId) -> Option<TransferId> {
        self.by_id
            .iter()
            .find(|(_, i)| i.connector == id && i.channel == channel)
            .map(|(m, _)| *m)
    }
}

impl Node {
    /// Whether `id` names a send, an offered manifest or one a peer offered us.
    pub(super) fn manifest_uses(&self, id: TransferId) -> bool {
        self.sends.uses(id) || self.intakes.uses(id)
    }

    /// A channel event that belongs to a manifest a peer offers: handled, and `None`; else
    /// the event back.
    pub(super) fn on_intake_mux_event(
        &mut self,
        now: Instant,
        id: u32,
        event: MuxEvent,
    ) -> Option<MuxEvent> {
        match event {
            MuxEvent::OpenRequest { channel, name } if name.starts_with(CHANNEL_PREFIX) => {
                self.their_manifest(now, id, channel, &name);
                None
            }
            MuxEvent::Data { channel, data } => match self.intakes.on(id, channel) {
                Some(mid) => {
                    let intake = self.intakes.by_id.get_mut(&mid)?;
                    if intake.machine.received(now, &data) {
                        self.show_manifest(mid);
                    }
                    None
                }
                None => Some(MuxEvent::Data { channel, data }),
            },
            MuxEvent::Ended { channel } => match self.intakes.on(id, channel) {
                Some(mid) => {
                    if let Some(i) = self.intakes.by_id.get_mut(&mid) {
                        i.machine.ended();
                    }
                    None
                }
                None => Some(MuxEvent::Ended { channel }),
            },
            other => Some(other),
        }
    }

    /// A peer opens a manifest channel: taken if its id is free and its account has room.
    fn their_manifest(&mut self, now: Instant, id: u32, channel: ChannelId, name: &str) {
        let mid = name[CHANNEL_PREFIX.len()..]
            .parse::<u64>()
            .ok()
            .map(TransferId)
            .filter(|m| m.0 != 0);
        let Some(peer) = self.connectors.get(&id).map(|c| c.peer()) else {
            return;
        };
        let open = self.intakes.of(&peer);
        let free = mid.is_some_and(|m| self.transfers.is_free(m) && !self.manifest_uses(m));
        let room = open < MAX_MANIFESTS_PER_PEER
            && self.transfers.offers(Some(peer.account)) < super::MAX_OFFERS_PER_PEER;
        let take = free && room && self.stopping == super::Stopping::No;
        if mid.is_some() && !free {
            self.dropped.transfer_id_in_use += 1;
        } else if !take {
            self.dropped.channels_over_budget += 1;
        }
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        let (Some(mid), true) = (mid, take) else {
            if let Some(Err(e)) = c.decline_channel(now, channel) {
                bug(
                    &mut self.bugs.channel_answer,
                    "manifest channel refusal",
                    &e,
                );
            }
            return;
        };
        match c.accept_channel(now, channel) {
            Some(Err(e)) => bug(&mut self.bugs.channel_answer, "manifest channel", &e),
            None => return,
            Some(Ok(())) => {}
        }
        self.intakes.by_id.insert(
            mid,
            Intake {
                machine: ManifestIntake::new(now, mid),
                connector: id,
                channel,
                peer,
                claims: None,
                verified: 0,
                cancelled: None,
                files: BTreeSet::new(),
                told: Status::Created,
            },
        );
    }

    /// A manifest was read and checked: the application decides.
    fn show_manifest(&mut self, mid: TransferId) {
        let Some(i) = self.intakes.by_id.get(&mid) else {
            return;
        };
        let Some(m) = i.machine.manifest() else {
            return;
        };
        let folders = m
            .entries()
            .iter()
            .filter(|e| e.kind == EntryKind::Folder)
            .count();
        let event = Event::IncomingManifest {
            manifest: mid,
            from: i.peer,
            files: m.file_count(),
            folders,
            size: m.total_size(),
            names: m
                .top_names(MANIFEST_NAMES_SHOWN)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
        self.out.push_back(Output::Event(event));
        self.tell_intake(mid, Status::WaitHostAcceptance, None);
    }

    /// Accepts a manifest: its folders are made first, then `GO` goes. `false` if `mid`
    /// names no manifest waiting for a decision.
    pub(super) fn accept_manifest(&mut self, mid: TransferId) -> bool {
        let Some(i) = self.intakes.by_id.get(&mid) else {
            return false;
        };
        let Some(manifest) = i.machine.manifest().cloned() else {
            return false;
        };
        if *i.machine.state() != IntakeState::WaitDecision
            || self.intakes.making.values().any(|m| *m == mid)
        {
            return false;
        }
        let key = tree_key(&i.peer, mid);
        let file = self.transfers.new_file();
        self.intakes.making.insert(file, mid);
        self.out.push_back(Output::File(FileOp::MakeTree {
            file,
            key,
            manifest,
        }));
        true
    }

    /// Refuses a manifest: `NGO`. `false` if `mid` names no manifest waiting for one.
    pub(super) fn refuse_manifest(&mut self, mid: TransferId) -> bool {
        let refused = self
            .intakes
            .by_id
            .get_mut(&mid)
            .is_some_and(|i| i.machine.refuse());
        if refused {
            self.intakes.making.retain(|_, m| *m != mid);
        }
        refused
    }

    /// The driver's answer to a [`FileOp::MakeTree`]; `false` if it was not one.
    pub(super) fn on_tree(&mut self, result: &FileResult) -> bool {
        if self.intakes.forgetting.remove(&result.file()) {
            return true;
        }
        let Some(mid) = self.intakes.making.remove(&result.file()) else {
            return false;
        };
        let Some(i) = self.intakes.by_id.get_mut(&mid) else {
            return true;
        };
        match result {
            FileResult::TreeMade { .. } => {
                i.claims = i.machine.accept();
            }
            // Nothing can be received where the folders could not be made.
            FileResult::Failed { error, .. } if i.machine.refuse() => {
                let reason = Reason::File(error.clone());
                self.tell_intake(mid, Status::ClosedByHost, Some(reason));
            }
            _ => {}
        }
        true
    }

    /// A file that names a manifest in its header came: taken when an accepted manifest of
    /// this connection lists it, else refused `invalid`. `false` if it names none (a file
    /// on its own, offered to the user as ever).
    pub(super) fn take_manifest_file(&mut self, now: Instant, tid: TransferId) -> bool {
        let Some((mid, connector, peer, size)) = self.transfers.manifest_claim(tid) else {
            return false;
        };
        let taken = match self.intakes.by_id.get_mut(&mid) {
            Some(i) if i.connector == connector && i.peer.account == peer.account => {
                match i.claims.as_mut().map(|c| c.claim(tid, size)) {
                    Some(Ok(entry)) => {
                        i.files.insert(tid);
                        Ok(entry.path.clone())
                    }
                    Some(Err(ClaimError::NotInManifest(_))) => Err("not in the manifest"),
                    Some(Err(ClaimError::AlreadyClaimed(_))) => Err("came twice"),
                    Some(Err(_)) => Err("another size than the manifest"),
                    None => Err("its manifest is not accepted"),
                }
            }
            _ => Err("names no manifest offered on this connection"),
        };
        let Some(m) = self.transfers.incoming_mut(tid) else {
            return true;
        };
        match taken {
            Ok(path) => {
                let shown = path.to_string();
                m.place_at(Place {
                    manifest: tree_key(&peer, mid),
                    path,
                });
                if let Err(e) = m.accept(now) {
                    bug(&mut self.bugs.auto_accept, "a file of a manifest", &e);
                }
                self.out.push_back(Output::Event(Event::ManifestFile {
                    manifest: mid,
                    transfer: tid,
                    path: shown,
                    size,
                }));
            }
            Err(why) => {
                self.dropped.manifest_files_refused += 1;
                m.refuse_invalid(now, why);
            }
        }
        true
    }

    /// An incoming transfer's event: a manifest whose file was verified counts it.
    pub(super) fn intake_file_event(&mut self, event: &Event) {
        let (transfer, cancel) = match event {
            Event::Verified { transfer, .. } => (transfer, None),
            Event::Status {
                transfer,
                reason: Some(Reason::PeerCancelled(code)),
                ..
            } => (transfer, Some(*code)),
            _ => return,
        };
        if let Some(i) = self
            .intakes
            .by_id
            .values_mut()
            .find(|i| i.files.contains(transfer))
        {
            match cancel {
                None => i.verified += 1,
                Some(code) => {
                    i.cancelled.get_or_insert(code);
                }
            }
        }
    }

    /// Manifests whose connection failed end: their files hear it on their own channels.
    pub(super) fn intakes_lost(&mut self, id: u32) {
        let lost: Vec<TransferId> = self
            .intakes
            .by_id
            .iter()
            .filter(|(_, i)| i.connector == id)
            .map(|(m, _)| *m)
            .collect();
        for mid in lost {
            if !self.intakes.by_id[&mid].told.is_final() {
                self.tell_intake(mid, Status::ClosedByPeer, Some(Reason::ConnectionLost));
            }
            self.intakes.by_id.remove(&mid);
            self.intakes.making.retain(|_, m| *m != mid);
        }
    }

    /// Moves every manifest on: its answers to its channel, its end. `true` if anything
    /// moved.
    pub(super) fn drain_intakes(&mut self, now: Instant) -> bool {
        let mut moved = false;
        let ids: Vec<TransferId> = self.intakes.by_id.keys().copied().collect();
        for mid in ids {
            let Some(i) = self.intakes.by_id.get_mut(&mid) else {
                continue;
            };
            let (id, channel) = (i.connector, i.channel);
            let mut outputs = Vec::new();
            while let Some(out) = i.machine.poll_output() {
                outputs.push(out);
            }
            let state = i.machine.state().clone();
            let told = i.told;
            let files = i.machine.manifest().map_or(0, |m| m.file_count());
            let verified = i.verified;
            let cancelled = i.cancelled;
            for out in outputs {
                moved = true;
                self.carry(now, id, channel, out);
            }
            let (status, reason) = match state {
                IntakeState::Reading | IntakeState::WaitDecision => continue,
                IntakeState::Accepted => (Status::Ongoing, None),
                IntakeState::Refused(Refusal::ByUser) => {
                    (Status::ClosedByHost, Some(Reason::Refused))
                }
                IntakeState::Refused(Refusal::TimedOut) => {
                    (Status::TimeoutExpired, Some(Reason::Timeout))
                }
                IntakeState::Refused(Refusal::Invalid(_)) => (
                    Status::Invalid,
                    Some(Reason::Protocol("the manifest breaks a rule of §14")),
                ),
                IntakeState::Ended if told == Status::Ongoing && verified == files => {
                    (Status::Finished, None)
                }
                IntakeState::Ended if told == Status::Ongoing => match cancelled {
                    Some(code) => (Status::ClosedByPeer, Some(Reason::PeerCancelled(code))),
                    None => (
                        Status::ClosedByPeer,
                        Some(Reason::Incomplete {
                            done: verified,
                            files,
                        }),
                    ),
                },
                IntakeState::Ended => (Status::ClosedByPeer, Some(Reason::Cancelled)),
            };
            if !told.is_final() && told != status {
                if status == Status::Finished {
                    self.forget_tree(mid);
                }
                self.tell_intake(mid, status, reason);
                moved = true;
            }
            let over = status.is_final()
                && self.intakes.by_id.get(&mid).is_some_and(|i| {
                    matches!(
                        i.machine.state(),
                        IntakeState::Ended | IntakeState::Refused(_)
                    )
                });
            if over {
                self.intakes.by_id.remove(&mid);
                self.intakes.making.retain(|_, m| *m != mid);
            }
        }
        moved
    }

    /// Every file of `mid` arrived: the names its tree got need not be kept for a send
    /// taken up again (one that did not finish keeps them, so its files land there then).
    fn forget_tree(&mut self, mid: TransferId) {
        let Some(i) = self.intakes.by_id.get(&mid) else {
            return;
        };
        let key = tree_key(&i.peer, mid);
        let file = self.transfers.new_file();
        self.intakes.forgetting.insert(file);
        self.out
            .push_back(Output::File(FileOp::ForgetTree { file, key }));
    }

    fn tell_intake(&mut self, mid: TransferId, status: Status, reason: Option<Reason>) {
        if let Some(i) = self.intakes.by_id.get_mut(&mid) {
            if i.told.is_final() {
                return;
            }
            i.told = status;
        }
        self.out.push_back(Output::Event(Event::Status {
            transfer: mid,
            status,
            reason,
        }));
    }
}

/// What the driver keeps a manifest's tree under: the sender's account and the manifest's id.
fn tree_key(peer: &PeerIdentity, mid: TransferId) -> PartialKey {
    PartialKey {
        sender: Some(peer.account),
        transfer: mid,
    }
}
