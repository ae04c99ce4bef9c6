//! Sends of several files and folders (`PROTOCOL.md` §14): one offer per device, a manifest
//! the device accepts or refuses as a whole, then each file as an ordinary transfer.
//!
//! Each file of a send is a group of its own (as a file sent with
//! [`send_file`](Node::send_file) is: one sub-transfer per device, its own aggregate), marked
//! as one of the send so that devices get their sub-transfers from here, all at once:
//! - a device that announced `manifest` gets a manifest with its own id (`mid`) listing
//!   every entry, each file under that device's sub-transfer id; the sub-transfers are held
//!   until the device answers `GO`, and then at most [`MANIFEST_WINDOW`] of them are open at
//!   once (the receiver declines channels past its per-peer budget);
//! - any other device (Jami, an older Ferry) gets each top-level file as its own offer,
//!   today's bytes, and every file inside a folder fails for it at once
//!   ([`Reason::NoFolders`]): a folder is never flattened.
//!
//! The device's manifest is named to the application as a sub-transfer of the send
//! ([`Event::SubTransfer`] with `group` the send), and its [`Event::Status`] tells the offer:
//! `wait_peer_acceptance` once the manifest went, `ongoing` after `GO`, then `finished` when
//! every file was verified, or a failure (the refusal, or [`Reason::Incomplete`]).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::Node;
use super::connector::Stage;
use super::counters::bug;
use crate::channel::{ChannelId, MuxEvent};
use crate::io::{Event, Output};
use crate::signal::Announcement;
use crate::tls::{AccountId, DeviceId};
use crate::transfer::manifest::{
    CANCELLED, CHANNEL_PREFIX, ChannelOutput, Entry, EntryKind, Manifest, ManifestError,
    ManifestOffer, OfferState, RelPath,
};
use crate::transfer::{Reason, Status, TransferId};

use super::send_again::{DeviceAgain, SendAgain};

/// Most files of one manifest a sender keeps open at once towards one device; the others
/// wait, held, until one of those ends. Under the receiver's
/// [`MAX_OFFERS_PER_PEER`](super::MAX_OFFERS_PER_PEER) (32), leaving room for other offers:
/// its headers count as offers until they are taken. Small files go at the pace of their
/// round trips and commits, so more at once is more files per second (8 gave 520 files/s
/// of 4 KiB in `many_files`, 24 gives 1,200).
pub const MANIFEST_WINDOW: usize = 24;

/// One entry of a send of several files ([`Node::send_files`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendEntry {
    /// Where it goes, relative to the receiver's folder.
    pub path: RelPath,
    /// A file (with its source and size) or a folder.
    pub kind: SendKind,
}

/// What a [`SendEntry`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendKind {
    /// A file: the application's reference to it (passed back in
    /// [`FileOp::OpenSource`](crate::io::FileOp::OpenSource)) and its size, listed in the
    /// manifest (a file whose size changed by the time it is opened fails on the receiver).
    File {
        /// The application's reference.
        source: String,
        /// Its size in bytes.
        size: u64,
    },
    /// A folder, made on the receiver even if nothing is sent into it.
    Folder,
}

/// What [`Node::send_files`] started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sending {
    /// The send: the `group` of each device's [`Event::SubTransfer`] naming its manifest,
    /// and what [`Node::cancel`] takes to cancel everything.
    pub send: TransferId,
    /// Each file's group, in the order of the entries (folders have none): its
    /// [`Event::Aggregate`] and its sub-transfers, as a file sent alone.
    pub files: Vec<TransferId>,
}

/// One device's offer of a send.
struct DeviceOffer {
    offer: ManifestOffer,
    /// Its sub-transfers, one per file, in the manifest's order.
    subs: Vec<TransferId>,
    channel: Option<(u32, ChannelId)>,
    /// Each sub-transfer's place in `subs`.
    index: BTreeMap<TransferId, usize>,
    /// Sub-transfers that ended, with their final status.
    ended: BTreeMap<TransferId, (Status, Option<Reason>)>,
    /// How many of `subs`, from the front, were let go from their hold (or ended held):
    /// files are released in the manifest's order.
    next: usize,
    /// Released and not ended: what fills the window. Kept as counts, not found by scanning
    /// `subs` on every pump: a send of 10,000 files spent its time doing that.
    open: usize,
    /// What its [`Event::Status`] last said.
    told: Status,
}

impl DeviceOffer {
    /// Whether every file ended (and there is one).
    fn all_ended(&self) -> bool {
        !self.subs.is_empty() && self.ended.len() == self.subs.len()
    }
}

/// A send of several files to an account.
struct Send {
    account: AccountId,
    entries: Vec<SendEntry>,
    /// Per entry, its file's group (`None` for a folder).
    groups: Vec<Option<TransferId>>,
    /// Devices that got the send: with their manifest, or `None` (files one by one, or
    /// nothing left to send them).
    devices: BTreeMap<DeviceId, Option<DeviceOffer>>,
    /// For a send taken up again, each device's earlier ids, until the device is found.
    again: BTreeMap<DeviceId, DeviceAgain>,
    /// How long a send of folders only (no file, so no group that looks the account up)
    /// waits for its first device.
    lookup_until: Instant,
}

impl Send {
    /// Whether it has no file: its folders are its only reason to find a device.
    fn folders_only(&self) -> bool {
        self.groups.iter().all(Option::is_none)
    }
}

/// The node's sends of several files.
#[derive(Default)]
pub(super) struct Sends {
    sends: BTreeMap<TransferId, Send>,
}

impl Sends {
    /// Whether `id` names a send or one of its manifests.
    pub(super) fn uses(&self, id: TransferId) -> bool {
        self.sends.contains_key(&id)
            || self
                .sends
                .values()
                .any(|s| s.again.values().any(|d| d.manifest == id))
            || self
                .sends
                .values()
                .any(|s| s.devices.values().flatten().any(|o| o.offer.id() == id))
    }

    /// The files' groups of a send (what cancelling it cancels).
    pub(super) fn groups_of(&self, send: TransferId) -> Option<Vec<TransferId>> {
        let s = self.sends.get(&send)?;
        Some(s.groups.iter().flatten().copied().collect())
    }

    /// The earliest deadline of an offer's answer.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let lookups = self
            .sends
            .values()
            .filter(|s| s.devices.is_empty() && s.folders_only())
            .map(|s| s.lookup_until);
        self.offers()
            .filter_map(|o| o.offer.poll_timeout())
            .chain(lookups)
            .min()
    }

    /// Runs the offers' clocks.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for s in self.sends.values_mut() {
            for o in s.devices.values_mut().flatten() {
                o.offer.handle_timeout(now);
            }
        }
    }

    fn offers(&self) -> impl Iterator<Item = &DeviceOffer> {
        self.sends
            .values()
            .flat_map(|s| s.devices.values().flatten())
    }

    fn offer_on(&mut self, id: u32, channel: ChannelId) -> Option<&mut DeviceOffer> {
        self.sends
            .values_mut()
            .flat_map(|s| s.devices.values_mut().flatten())
            .find(|o| o.channel == Some((id, channel)))
    }
}

impl Node {
    /// Sends several files and folders to every device of `account`, as one offer each
    /// device accepts or refuses as a whole (`PROTOCOL.md` §14). A device that did not
    /// announce `manifest` (Jami, an older Ferry) gets each top-level file as its own offer,
    /// and every file inside a folder fails for it with [`Reason::NoFolders`]: a folder is
    /// never flattened. `entries` list every folder (an empty one is
    /// kept) and file, a folder before what it holds; their paths must obey the manifest's
    /// rules (no two at one path, none below a file, at most
    /// [`MAX_ENTRIES`](crate::transfer::manifest::MAX_ENTRIES)), else nothing starts.
    ///
    /// A single file at the top is sent exactly as [`send_file`](Self::send_file) sends it
    /// (its bytes are today's, to every device): then `send` and its one group are the same id.
    pub fn send_files(
        &mut self,
        now: Instant,
        account: AccountId,
        entries: Vec<SendEntry>,
    ) -> Result<Sending, ManifestError> {
        self.start_send(now, account, entries, None)
    }

    /// [`send_files`](Self::send_files), or with `again` its form taken up again
    /// ([`send_files_again`](Self::send_files_again)).
    pub(super) fn start_send(
        &mut self,
        now: Instant,
        account: AccountId,
        entries: Vec<SendEntry>,
        again: Option<SendAgain>,
    ) -> Result<Sending, ManifestError> {
        // The rules are checked once here, with stand-in ids: each device's manifest differs
        // only in its ids.
        Manifest::new(manifest_entries(&entries, |i| TransferId(i as u64 + 1)))?;
        if let [
            SendEntry {
                path,
                kind: SendKind::File { source, .. },
            },
        ] = entries.as_slice()
        {
            if path.components().len() == 1 {
                let name = path.top().to_owned();
                let source = source.clone();
                let earlier = again
                    .as_ref()
                    .and_then(|a| Some((*a.files.first()?, a.file_ids(0))));
                let group = match earlier {
                    Some((group, devices)) => {
                        self.send_file_again(now, account, source, name, group, devices)
                    }
                    None => self.send_file(now, account, source, name),
                };
                return Ok(Sending {
                    send: group,
                    files: vec![group],
                });
            }
        }
        let send = match &again {
            Some(a) if !self.sends.sends.contains_key(&a.send) => self.reuse_id(a.send),
            _ => self.new_transfer_id(),
        };
        let mut groups = Vec::with_capacity(entries.len());
        // The groups chosen so far: an earlier id listed twice (a damaged record) is used once.
        let mut chosen = BTreeSet::new();
        let mut seen = 0;
        for entry in &entries {
            let SendKind::File { source, size } = &entry.kind else {
                groups.push(None);
                continue;
            };
            // This file's place among the files.
            let k = seen;
            seen += 1;
            let earlier = again.as_ref().and_then(|a| a.files.get(k).copied());
            let group = match earlier {
                Some(id) if !chosen.contains(&id) => self.reuse_id(id),
                _ => self.new_transfer_id(),
            };
            chosen.insert(group);
            if again.as_ref().is_some_and(|a| a.delivered_file(k)) {
                // Every device verified it then: not sent, and told so at once.
                groups.push(Some(group));
                self.out.push_back(Output::Event(Event::Aggregate {
                    group,
                    status: Status::Finished,
                    done: *size,
                    total: *size,
                }));
                continue;
            }
            let ids = again.as_ref().map(|a| a.file_ids(k)).unwrap_or_default();
            let name = entry
                .path
                .components()
                .last()
                .map_or(String::new(), |n| n.as_str().to_owned());
            groups.push(Some(group));
            if self.stopping != super::Stopping::No {
                self.aggregate_event(group, Status::ClosedByHost);
                continue;
            }
            self.transfers
                .add_group(group, account, source.clone(), name, ids, None);
            self.transfers.join_send(group, send);
            self.timers
                .set(super::NodeTimer::Lookup(group), now + super::LOOKUP_TIMEOUT);
            self.aggregate_event(group, Status::Created);
        }
        let files = groups.iter().flatten().copied().collect();
        if self.stopping == super::Stopping::No {
            self.sends.sends.insert(
                send,
                Send {
                    account,
                    entries,
                    groups,
                    devices: BTreeMap::new(),
                    again: again.map(|a| a.devices).unwrap_or_default(),
                    lookup_until: now + super::LOOKUP_TIMEOUT,
                },
            );
            self.look_up_account(now, account);
            for a in self.signalling.devices(&account) {
                self.on_announcement(now, a);
            }
            self.pump(now);
        }
        Ok(Sending { send, files })
    }

    /// A device of an account announced itself: every send to that account it has not got
    /// yet goes to it.
    pub(super) fn send_to_device(&mut self, now: Instant, a: &Announcement) {
        let sends: Vec<TransferId> = self
            .sends
            .sends
            .iter()
            .filter(|(_, s)| s.account == a.account && !s.devices.contains_key(&a.device))
            .map(|(id, _)| *id)
            .collect();
        for send in sends {
            let Some(s) = self.sends.sends.get_mut(&send) else {
                continue;
            };
            let (entries, groups) = (s.entries.clone(), s.groups.clone());
            let again = s.again.remove(&a.device);
            let verified = |k: usize| again.as_ref().is_some_and(|d| d.verified_file(k));
            // A file whose group is over (no device was found in time, or one verified it)
            // is not sent late, nor one this device verified in the send taken up again.
            let goes: Vec<bool> = groups
                .iter()
                .flatten()
                .enumerate()
                .map(|(k, group)| !verified(k) && self.transfers.lacks(*group, a.device))
                .collect();
            if !goes.is_empty() && !goes.contains(&true) {
                // Not one file left for it: no offer.
                if let Some(s) = self.sends.sends.get_mut(&send) {
                    s.devices.insert(a.device, None);
                }
                continue;
            }
            // The device's manifest is named first, then its files.
            let mid = a.features.manifest.then(|| {
                let mid = match &again {
                    Some(d) => self.reuse_id(d.manifest),
                    None => self.new_transfer_id(),
                };
                self.out.push_back(Output::Event(Event::SubTransfer {
                    group: send,
                    transfer: mid,
                    device: a.device,
                }));
                mid
            });
            let mut subs = Vec::new();
            for (group, goes) in groups.iter().flatten().zip(goes) {
                subs.push(goes.then(|| self.add_sub(*group, a.device)));
            }
            let offer = match mid {
                Some(mid) => self.new_offer(mid, &entries, &subs),
                None => {
                    self.files_one_by_one(&entries, &groups, &subs);
                    None
                }
            };
            if let Some(s) = self.sends.sends.get_mut(&send) {
                s.devices.insert(a.device, offer);
            }
            match self.ensure_connector(now, a.account, a.device, a.recipient()) {
                Some(id) => self.open_pending_channels(now, id),
                None => {
                    for sub in subs.into_iter().flatten() {
                        self.sub_without_room(sub);
                    }
                }
            }
        }
    }

    /// The manifest for one device: its sub-transfers held until `GO`.
    fn new_offer(
        &mut self,
        mid: TransferId,
        entries: &[SendEntry],
        subs: &[Option<TransferId>],
    ) -> Option<DeviceOffer> {
        // Files whose group ended are left out of this device's manifest.
        let mut files = subs.iter();
        let listed: Vec<SendEntry> = entries
            .iter()
            .filter(|e| match e.kind {
                SendKind::Folder => true,
                SendKind::File { .. } => files.next().is_some_and(Option::is_some),
            })
            .cloned()
            .collect();
        let ids: Vec<TransferId> = subs.iter().flatten().copied().collect();
        let manifest = Manifest::new(manifest_entries(&listed, |i| ids[i]));
        let manifest = match manifest {
            Ok(m) => m,
            Err(e) => {
                // Checked in `send_files` with other ids: cannot happen; the files fail.
                bug(&mut self.bugs.manifest, "a device's manifest", &e);
                return None;
            }
        };
        for sub in &ids {
            self.transfers.hold(*sub, mid);
        }
        Some(DeviceOffer {
            offer: ManifestOffer::new(mid, &manifest),
            index: ids.iter().enumerate().map(|(i, t)| (*t, i)).collect(),
            subs: ids,
            channel: None,
            ended: BTreeMap::new(),
            next: 0,
            open: 0,
            told: Status::Created,
        })
    }

    /// A device that reads no manifest: top-level files go as they are, files inside a
    /// folder fail for it.
    fn files_one_by_one(
        &mut self,
        entries: &[SendEntry],
        groups: &[Option<TransferId>],
        subs: &[Option<TransferId>],
    ) {
        let mut subs = subs.iter();
        for (entry, group) in entries.iter().zip(groups) {
            let Some(group) = group else { continue };
            let Some(Some(sub)) = subs.next() else {
                continue;
            };
            if entry.path.components().len() > 1 {
                self.fail_pending(*sub, *group, Status::Unsupported, Reason::NoFolders);
            }
        }
    }

    /// Opens the manifest channels waiting for connector `id`, once it is ready.
    pub(super) fn open_offer_channels(&mut self, now: Instant, id: u32) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        if c.stage() != Stage::Ready {
            return;
        }
        let device = c.device();
        for s in self.sends.sends.values_mut() {
            let Some(Some(o)) = s.devices.get_mut(&device) else {
                continue;
            };
            if o.channel.is_some() || *o.offer.state() != OfferState::Opening {
                continue;
            }
            let name = format!("{CHANNEL_PREFIX}{}", o.offer.id().0);
            match c.open_channel(now, &name, false) {
                Some(Ok(channel)) => o.channel = Some((id, channel)),
                Some(Err(_)) => self.bugs.channel_open += 1,
                None => {}
            }
        }
    }

    /// Manifest channels asked of connector `id` (or of any connector to `device`) wait
    /// for another one: that connection is gone or starting over. `true` if there were any.
    pub(super) fn requeue_offers(&mut self, id: Option<u32>, device: Option<DeviceId>) -> bool {
        let mut any = false;
        for (dev, o) in self
            .sends
            .sends
            .values_mut()
            .flat_map(|s| s.devices.iter_mut())
        {
            let Some(o) = o else { continue };
            let asked_there = o.channel.is_some_and(|(c, _)| Some(c) == id);
            if (asked_there || device == Some(*dev)) && *o.offer.state() == OfferState::Opening {
                any |= o.channel.is_some();
                o.channel = None;
            }
        }
        any
    }

    /// A channel event that belongs to a manifest we offered: handled, and `None`; else
    /// the event back.
    pub(super) fn on_offer_mux_event(
        &mut self,
        now: Instant,
        id: u32,
        event: MuxEvent,
    ) -> Option<MuxEvent> {
        let channel = match &event {
            MuxEvent::Opened { channel }
            | MuxEvent::Declined { channel }
            | MuxEvent::Unanswered { channel }
            | MuxEvent::Data { channel, .. }
            | MuxEvent::Ended { channel } => *channel,
            MuxEvent::OpenRequest { .. } => return Some(event),
        };
        let Some(o) = self.sends.offer_on(id, channel) else {
            return Some(event);
        };
        match event {
            MuxEvent::Opened { .. } => o.offer.opened(now),
            MuxEvent::Data { data, .. } => o.offer.received(&data),
            // The device would not have the channel, or never answered: no manifest went.
            MuxEvent::Declined { .. } => {
                o.channel = None;
                o.offer.declined();
            }
            MuxEvent::Unanswered { .. } => {
                o.channel = None;
                o.offer.ended();
            }
            MuxEvent::Ended { .. } => o.offer.ended(),
            MuxEvent::OpenRequest { .. } => {}
        }
        None
    }

    /// A sub-transfer's event: an offer whose file ended counts it.
    pub(super) fn offer_sub_event(&mut self, event: &Event) {
        let Event::Status {
            transfer,
            status,
            reason,
        } = event
        else {
            return;
        };
        if !status.is_final() {
            return;
        }
        for o in self
            .sends
            .sends
            .values_mut()
            .flat_map(|s| s.devices.values_mut().flatten())
        {
            if let Some(at) = o.index.get(transfer).copied() {
                if o.ended
                    .insert(*transfer, (*status, reason.clone()))
                    .is_none()
                    && at < o.next
                {
                    o.open = o.open.saturating_sub(1);
                }
                return;
            }
        }
    }

    /// Moves every offer on: its bytes to its channel, its answer to its files, its end.
    /// `true` if anything moved.
    pub(super) fn drain_sends(&mut self, now: Instant) -> bool {
        let mut moved = false;
        let keys: Vec<(TransferId, DeviceId)> = self
            .sends
            .sends
            .iter()
            .flat_map(|(s, send)| send.devices.keys().map(move |d| (*s, *d)))
            .collect();
        for (send, device) in keys {
            moved |= self.drain_offer(now, send, device);
        }
        self.forget_sends(now);
        moved
    }

    fn drain_offer(&mut self, now: Instant, send: TransferId, device: DeviceId) -> bool {
        let mut moved = self.flush_offer(now, send, device);
        let Some(o) = self.offer_mut(send, device) else {
            return moved;
        };
        let (mid, state, all_ended, told) =
            (o.offer.id(), o.offer.state().clone(), o.all_ended(), o.told);
        if matches!(state, OfferState::Opening | OfferState::WaitReply) && all_ended {
            // Every file was cancelled (or failed) before the answer: the offer goes too.
            if let Some(o) = self.offer_mut(send, device) {
                o.offer.cancel();
            }
            return true;
        }
        let (status, reason) = match &state {
            OfferState::Opening => return moved,
            OfferState::WaitReply => (Status::WaitPeerAcceptance, None),
            OfferState::Accepted | OfferState::Finished => (Status::Ongoing, None),
            OfferState::Refused => (Status::ClosedByPeer, Some(Reason::Refused)),
            OfferState::Failed(CANCELLED) => (Status::ClosedByHost, Some(Reason::Cancelled)),
            OfferState::Failed(why) if why.contains("in time") => {
                (Status::TimeoutExpired, Some(Reason::Timeout))
            }
            OfferState::Failed(why) => (Status::ClosedByPeer, Some(Reason::Protocol(why))),
        };
        if told.is_final() {
            return moved;
        }
        if status.is_final() {
            // Refused or failed before the files: none of them goes.
            let subs = self
                .offer_mut(send, device)
                .map(|o| o.subs.clone())
                .unwrap_or_default();
            for sub in &subs {
                if let Some(group) = self.transfers.group_of_pending(*sub) {
                    self.fail_pending(
                        *sub,
                        group,
                        status,
                        reason.clone().unwrap_or(Reason::Refused),
                    );
                }
            }
            self.tell_offer(send, device, mid, status, reason);
            return true;
        }
        if told != status {
            self.tell_offer(send, device, mid, status, None);
            moved = true;
        }
        if status == Status::Ongoing {
            moved |= self.offer_files(now, send, device);
        }
        moved
    }

    /// Carries one output of a manifest's machine (ours or a peer's) to its channel, and on
    /// down to the connection.
    pub(super) fn carry(&mut self, now: Instant, id: u32, channel: ChannelId, out: ChannelOutput) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        let done = match out {
            ChannelOutput::Send(data) => c
                .send_on_channel(now, channel, &data, &mut self.bugs)
                .map(|r| r.map_err(|e| e.to_string())),
            ChannelOutput::Close => c
                .end_channel(now, channel)
                .map(|r| r.map_err(|e| e.to_string())),
        };
        if let Some(Err(e)) = done {
            bug(&mut self.bugs.channel_send, "manifest channel", &e);
        }
        self.drain_connector(now, id);
    }

    /// Carries an offer's outputs to its channel; `true` if there were any.
    fn flush_offer(&mut self, now: Instant, send: TransferId, device: DeviceId) -> bool {
        let Some(o) = self.offer_mut(send, device) else {
            return false;
        };
        let channel = o.channel;
        let mut outputs = Vec::new();
        while let Some(out) = o.offer.poll_output() {
            outputs.push(out);
        }
        let moved = !outputs.is_empty();
        if let Some((id, ch)) = channel {
            for out in outputs {
                self.carry(now, id, ch, out);
            }
        }
        moved
    }

    /// After `GO`: keeps [`MANIFEST_WINDOW`] files open, and ends the offer once every
    /// file ended.
    fn offer_files(&mut self, now: Instant, send: TransferId, device: DeviceId) -> bool {
        let Some(o) = self.offer_mut(send, device) else {
            return false;
        };
        let (mid, channel) = (o.offer.id(), o.channel);
        if o.subs.is_empty() || o.all_ended() {
            let done = o
                .ended
                .values()
                .filter(|(s, _)| *s == Status::Finished)
                .count();
            let files = o.subs.len();
            let cancelled_here = o
                .ended
                .values()
                .any(|end| *end == (Status::ClosedByHost, Some(Reason::Cancelled)));
            o.offer.finish();
            let (status, reason) = match (done == files, cancelled_here) {
                (true, _) => (Status::Finished, None),
                // A file cancelled here (the send, or that file): the offer is, too.
                (false, true) => (Status::ClosedByHost, Some(Reason::Cancelled)),
                (false, false) => (
                    Status::ClosedByPeer,
                    Some(Reason::Incomplete { done, files }),
                ),
            };
            // The channel's end goes before the send can be forgotten.
            self.flush_offer(now, send, device);
            self.tell_offer(send, device, mid, status, reason);
            return true;
        }
        // The next held files, in order, while the window has room.
        let mut released = false;
        let Some(Some(o)) = self
            .sends
            .sends
            .get_mut(&send)
            .and_then(|s| s.devices.get_mut(&device))
        else {
            return false;
        };
        while o.open < MANIFEST_WINDOW && o.next < o.subs.len() {
            let sub = o.subs[o.next];
            o.next += 1;
            if !o.ended.contains_key(&sub) && self.transfers.release(sub) {
                o.open += 1;
                released = true;
            }
        }
        if released {
            if let Some((id, _)) = channel {
                self.open_pending_channels(now, id);
            }
        }
        released
    }

    fn offer_mut(&mut self, send: TransferId, device: DeviceId) -> Option<&mut DeviceOffer> {
        self.sends
            .sends
            .get_mut(&send)
            .and_then(|s| s.devices.get_mut(&device))
            .and_then(Option::as_mut)
    }

    fn tell_offer(
        &mut self,
        send: TransferId,
        device: DeviceId,
        mid: TransferId,
        status: Status,
        reason: Option<Reason>,
    ) {
        if let Some(o) = self.offer_mut(send, device) {
            o.told = status;
        }
        self.out.push_back(Output::Event(Event::Status {
            transfer: mid,
            status,
            reason,
        }));
    }

    /// A send is forgotten once every file's group is over and every offer told its end; a
    /// send of folders only, once a device got it, or when no device was found in
    /// [`LOOKUP_TIMEOUT`](super::LOOKUP_TIMEOUT) (then told as a file's group is:
    /// `unjoinable_peer`).
    fn forget_sends(&mut self, now: Instant) {
        let over: Vec<(TransferId, bool)> = self
            .sends
            .sends
            .iter()
            .filter(|(_, s)| {
                let waits = s.folders_only() && s.devices.is_empty() && now < s.lookup_until;
                // The offers first (few), then the groups from the last: the last to end.
                !waits
                    && s.devices.values().flatten().all(|o| o.told.is_final())
                    && s.groups
                        .iter()
                        .rev()
                        .flatten()
                        .all(|g| !self.transfers.has_group(*g))
            })
            .map(|(id, s)| (*id, s.folders_only() && s.devices.is_empty()))
            .collect();
        for (send, unfound) in over {
            self.sends.sends.remove(&send);
            if unfound {
                self.out.push_back(Output::Event(Event::Aggregate {
                    group: send,
                    status: Status::UnjoinablePeer,
                    done: 0,
                    total: 0,
                }));
            }
        }
    }
}

/// The manifest's entries for `entries`, the `i`-th file under `id(i)`.
fn manifest_entries(entries: &[SendEntry], id: impl Fn(usize) -> TransferId) -> Vec<Entry> {
    let mut files = 0;
    entries
        .iter()
        .map(|e| Entry {
            path: e.path.clone(),
            kind: match e.kind {
                SendKind::File { size, .. } => {
                    files += 1;
                    EntryKind::File {
                        id: id(files - 1),
                        size,
                    }
                }
                SendKind::Folder => EntryKind::Folder,
            },
        })
        .collect()
}
