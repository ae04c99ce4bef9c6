//! The node's transfers: one [`Outgoing`] or [`Incoming`] machine per channel, the groups
//! of sub-transfers of a file sent to every device of an account with their optimistic
//! [`Aggregate`], the sub-transfers still waiting for their channel, and the file
//! operations in flight.
//!
//! [`Transfers`] holds them; the `impl Node` below carries their outputs to the
//! connectors (channels, send credit) and to the application (events), and takes the
//! channel events of the connectors. It does not own connections: a transfer names its
//! connector and channel, and a connector that fails tells the node, which resets what ran
//! on it.

use std::collections::BTreeMap;
use std::time::Instant;

use super::connector::Stage;
use super::counters::bug;
use super::peers::Pauser;
use super::pending::{Pending, PendingSub};
use super::timers::NodeTimer;
use super::{MAX_OFFERS_PER_PEER, MAX_TRANSFERS_PER_PEER, Node, UNJOINED_GRACE};
use crate::Error;
use crate::aggregate::Aggregate;
use crate::channel::{ChannelError, ChannelId, MuxEvent};
use crate::io::{Event, FileId, FileResult, Output};
use crate::tls::{AccountId, DeviceId, PeerIdentity};
use crate::transfer::{
    self, Form, HEADER_TIMEOUT, Incoming, Outgoing, Reason, Status, Transfer, TransferId,
};

/// What the name of a picture ends with, for
/// [`auto_accept_images_under`](super::NodeConfig::auto_accept_images_under) (any case).
pub const IMAGE_EXTENSIONS: &[&str] = &[".jpg", ".jpeg", ".png", ".gif", ".webp"];

/// Whether a file called `name` counts as a picture: it ends with one of
/// [`IMAGE_EXTENSIONS`], in any case.
pub fn is_image_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    IMAGE_EXTENSIONS.iter().any(|e| name.ends_with(e))
}

/// Channel names that carry a transfer.
pub(crate) const FILE_CHANNEL: &str = "file-transfer://";

struct Slot {
    machine: Transfer,
    connector: u32,
    channel: ChannelId,
    group: Option<TransferId>,
    peer: PeerIdentity,
    /// Started on its channel before the peer answered it (early channel data); cleared by
    /// the answer. Such a transfer starts again if its connection ends without a failure.
    unanswered: bool,
}

/// A file sent to every device of an account.
struct Group {
    account: AccountId,
    source: String,
    name: String,
    aggregate: Aggregate,
    devices: BTreeMap<DeviceId, TransferId>,
    /// The ids an earlier send of this file gave each device's sub-transfer: used again, so
    /// a receiver finds the partial data it keeps under (our account, that id).
    again: BTreeMap<DeviceId, TransferId>,
    /// The one device this group is for (a file sent again to the device that asked).
    only: Option<DeviceId>,
    /// The send of several files this file is one of ([`Node::send_files`]): its devices
    /// get their sub-transfers from the send, one manifest each, not one by one.
    send: Option<TransferId>,
}

impl Group {
    /// Whether its optimistic state is final (a device verified the file, or every device
    /// failed), which was told once: no device joins it any more, and its sub-transfers
    /// still under way go on to their own end, when the group is forgotten. (A final
    /// state stays final: a verified device stays the best, and a group whose every device
    /// failed takes no new one.)
    fn told_final(&self) -> bool {
        self.aggregate.status().is_final()
    }
}

/// The node's transfers and groups: see the module docs.
pub(super) struct Transfers {
    slots: BTreeMap<TransferId, Slot>,
    groups: BTreeMap<TransferId, Group>,
    pending: Pending,
    files: BTreeMap<FileId, TransferId>,
    next_file: u64,
}

impl Transfers {
    pub(super) fn new() -> Transfers {
        Transfers {
            slots: BTreeMap::new(),
            groups: BTreeMap::new(),
            pending: Pending::default(),
            files: BTreeMap::new(),
            next_file: 1,
        }
    }

    // ----- getters -----

    /// Whether `id` names no transfer (running, or of ours waiting for its channel) and no
    /// group.
    pub(super) fn is_free(&self, id: TransferId) -> bool {
        !self.slots.contains_key(&id)
            && !self.pending.contains(id)
            && !self.groups.contains_key(&id)
    }

    /// Every running transfer, in order.
    pub(super) fn running(&self) -> Vec<TransferId> {
        self.slots.keys().copied().collect()
    }

    /// Every group, in order.
    pub(super) fn groups(&self) -> Vec<TransferId> {
        self.groups.keys().copied().collect()
    }

    /// The groups sending to `account` that have no sub-transfer for `device` yet.
    pub(super) fn groups_without(&self, account: AccountId, device: DeviceId) -> Vec<TransferId> {
        self.groups
            .iter()
            .filter(|(_, g)| g.account == account && !g.devices.contains_key(&device))
            .filter(|(_, g)| g.only.is_none_or(|d| d == device) && g.send.is_none())
            .filter(|(_, g)| !g.told_final())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The groups sending to `account`.
    fn groups_of(&self, account: AccountId) -> impl Iterator<Item = TransferId> + '_ {
        self.groups
            .iter()
            .filter(move |(_, g)| g.account == account)
            .map(|(t, _)| *t)
    }

    /// Whether a group has a sub-transfer for any device.
    fn has_devices(&self, group: TransferId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|g| !g.devices.is_empty())
    }

    /// Whether `tid` is an incoming transfer waiting for the local user's decision.
    pub(super) fn awaits_decision(&self, tid: TransferId) -> bool {
        matches!(
            self.slots.get(&tid).map(|s| &s.machine),
            Some(Transfer::Incoming(m)) if m.status() == Status::WaitHostAcceptance
        )
    }

    /// How many incoming transfers (from `account`, or from anyone) are still running, and
    /// how many of those wait for the local user (their header, or a decision).
    fn incoming(&self, account: Option<AccountId>) -> (usize, usize) {
        let mut running = 0;
        let mut offers = 0;
        for slot in self.slots.values() {
            let Transfer::Incoming(m) = &slot.machine else {
                continue;
            };
            if account.is_some_and(|a| a != slot.peer.account) || m.status().is_final() {
                continue;
            }
            running += 1;
            if matches!(m.status(), Status::Created | Status::WaitHostAcceptance) {
                offers += 1;
            }
        }
        (running, offers)
    }

    /// How many incoming transfers (from `account`, or from anyone) wait for the local user.
    pub(super) fn offers(&self, account: Option<AccountId>) -> usize {
        self.incoming(account).1
    }

    /// The earliest deadline of a transfer.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .values()
            .filter_map(|s| s.machine.poll_timeout())
            .min()
    }

    // ----- the node's calls -----

    /// A group for a file sent to every device of `account` (the node times its wait for
    /// the first device).
    pub(super) fn add_group(
        &mut self,
        group: TransferId,
        account: AccountId,
        source: String,
        name: String,
        again: BTreeMap<DeviceId, TransferId>,
        only: Option<DeviceId>,
    ) {
        self.groups.insert(
            group,
            Group {
                account,
                source,
                name,
                aggregate: Aggregate::new(0),
                devices: BTreeMap::new(),
                again,
                only,
                send: None,
            },
        );
    }

    /// Makes `group` one file of the send `send`.
    pub(super) fn join_send(&mut self, group: TransferId, send: TransferId) {
        if let Some(g) = self.groups.get_mut(&group) {
            g.send = Some(send);
        }
    }

    /// Whether `group` still has no sub-transfer for `device`, and would take one.
    pub(super) fn lacks(&self, group: TransferId, device: DeviceId) -> bool {
        self.groups
            .get(&group)
            .is_some_and(|g| !g.told_final() && !g.devices.contains_key(&device))
    }

    /// Makes a sub-transfer waiting for its channel one of manifest `manifest`, held until
    /// [`release`](Self::release).
    pub(super) fn hold(&mut self, sub: TransferId, manifest: TransferId) {
        self.pending.hold(sub, manifest);
    }

    /// Lets a held sub-transfer open its channel; `false` if it no longer waits.
    pub(super) fn release(&mut self, sub: TransferId) -> bool {
        self.pending.release(sub)
    }

    /// The group of a sub-transfer still waiting for its channel.
    pub(super) fn group_of_pending(&self, sub: TransferId) -> Option<TransferId> {
        self.pending.get(sub).map(|p| p.group)
    }

    /// Whether `group` is a group still running.
    pub(super) fn has_group(&self, group: TransferId) -> bool {
        self.groups.contains_key(&group)
    }

    /// The manifest a running incoming transfer's header names, with the transfer's
    /// connector, sender and announced size, while it waits for a decision.
    pub(super) fn manifest_claim(
        &self,
        tid: TransferId,
    ) -> Option<(TransferId, u32, PeerIdentity, u64)> {
        let slot = self.slots.get(&tid)?;
        let Transfer::Incoming(m) = &slot.machine else {
            return None;
        };
        let header = m.header()?;
        Some((
            header.manifest?,
            slot.connector,
            slot.peer,
            header.content_length,
        ))
    }

    /// The incoming transfer `tid`, to place, accept or refuse.
    pub(super) fn incoming_mut(&mut self, tid: TransferId) -> Option<&mut Incoming> {
        match self.slots.get_mut(&tid).map(|s| &mut s.machine) {
            Some(Transfer::Incoming(m)) => Some(m),
            _ => None,
        }
    }

    /// What cancelling `transfer` cancels: every sub-transfer of a group, else itself.
    pub(super) fn targets(&self, transfer: TransferId) -> Vec<TransferId> {
        match self.groups.get(&transfer) {
            Some(g) => g.devices.values().copied().collect(),
            None => vec![transfer],
        }
    }

    /// Accepts an incoming transfer.
    pub(super) fn accept(&mut self, now: Instant, transfer: TransferId) -> Result<(), Error> {
        match self.slots.get_mut(&transfer).map(|t| &mut t.machine) {
            Some(Transfer::Incoming(m)) => m.accept(now),
            _ => Err(Error::NotNow("accept: no such incoming transfer")),
        }
    }

    /// Refuses an incoming transfer.
    pub(super) fn refuse(&mut self, now: Instant, transfer: TransferId) -> Result<(), Error> {
        match self.slots.get_mut(&transfer).map(|t| &mut t.machine) {
            Some(Transfer::Incoming(m)) => m.refuse(now),
            _ => Err(Error::NotNow("refuse: no such incoming transfer")),
        }
    }

    /// Runs every transfer's clock.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for slot in self.slots.values_mut() {
            slot.machine.handle_timeout(now);
        }
    }

    pub(super) fn new_file(&mut self) -> FileId {
        let file = FileId(self.next_file);
        self.next_file += 1;
        file
    }
}

impl Node {
    /// Whether a group for `account` still waits for its first device.
    pub(super) fn looks_up(&self, account: AccountId) -> bool {
        self.transfers
            .groups_of(account)
            .any(|g| self.timers.is_set(NodeTimer::Lookup(g)))
            || self.asks.looks_up(account)
    }

    /// Stops a group's wait for its first device: `true` if it was still waiting, with no
    /// device.
    pub(super) fn end_lookup(&mut self, group: TransferId) -> bool {
        let waiting = self.timers.is_set(NodeTimer::Lookup(group));
        self.timers.clear(NodeTimer::Lookup(group));
        waiting && !self.transfers.has_devices(group)
    }

    /// Cancels one transfer, or fails a sub-transfer still waiting for its channel.
    pub(super) fn cancel_one(&mut self, now: Instant, t: TransferId) {
        if let Some(slot) = self.transfers.slots.get_mut(&t) {
            slot.machine.cancel(now);
        } else if let Some(p) = self.transfers.pending.remove(t) {
            self.sub_failed(t, p.group, Status::ClosedByHost, Reason::Cancelled);
        }
    }

    pub(super) fn new_transfer_id(&mut self) -> TransferId {
        loop {
            let id = TransferId(self.rng.next_u64());
            if id.0 != 0 && self.transfers.is_free(id) && !self.manifest_uses(id) {
                return id;
            }
        }
    }

    /// A new sub-transfer of `group` for `device`, waiting for its channel.
    pub(super) fn add_sub(&mut self, group: TransferId, device: DeviceId) -> TransferId {
        let again = self
            .transfers
            .groups
            .get_mut(&group)
            .and_then(|g| g.again.remove(&device))
            .filter(|&id| id.0 != 0 && self.transfers.is_free(id));
        let sub = again.unwrap_or_else(|| self.new_transfer_id());
        if let Some(g) = self.transfers.groups.get_mut(&group) {
            g.devices.insert(device, sub);
            g.aggregate.add(sub);
            self.timers.clear(NodeTimer::Lookup(group));
        }
        self.out.push_back(Output::Event(Event::SubTransfer {
            group,
            transfer: sub,
            device,
        }));
        self.transfers.pending.insert(
            sub,
            PendingSub {
                group,
                device,
                channel: None,
                manifest: None,
                held: false,
            },
        );
        sub
    }

    /// The sub-transfers that asked connector `id` for a channel wait for another one, and
    /// so do those started on it before the peer answered (early channel data: see
    /// [`withdraw_unanswered`](Self::withdraw_unanswered)); `true` if there were any.
    pub(super) fn requeue_pending(&mut self, now: Instant, id: u32) -> bool {
        let mut any = self.requeue_offers(Some(id), None);
        any |= self.withdraw_unanswered(now, Some(id), None);
        any |= self.transfers.pending.forget_channels_of(id);
        any
    }

    /// The transfers started on connector `id` (or on any connector to `device`) before the
    /// peer answered their channel go back to the pending list, their files closed without
    /// an event, as the sub-transfers still waiting for their channel do: the connection
    /// ended without a failure (it went idle at the peer as our request crossed its close),
    /// or the device's new request replaced it (its process came back). They start again
    /// on the next connection. A channel of a connection still up is ended here, so that it
    /// can go idle. `true` if any.
    fn withdraw_unanswered(
        &mut self,
        now: Instant,
        id: Option<u32>,
        device: Option<DeviceId>,
    ) -> bool {
        let unanswered: Vec<TransferId> = self
            .transfers
            .slots
            .iter()
            .filter(|(_, s)| {
                s.unanswered && (Some(s.connector) == id || Some(s.peer.device) == device)
            })
            .map(|(t, _)| *t)
            .collect();
        for tid in &unanswered {
            let Some(slot) = self.transfers.slots.get_mut(tid) else {
                continue;
            };
            let Transfer::Outgoing(m) = &mut slot.machine else {
                continue;
            };
            m.withdraw();
            let (manifest, device, group) = (m.manifest(), slot.peer.device, slot.group);
            let (connector, channel) = (slot.connector, slot.channel);
            if let Some(c) = self
                .connectors
                .get_mut(&connector)
                .filter(|c| c.stage() == Stage::Ready)
            {
                if let Some(Err(e)) = c.end_channel(now, channel) {
                    bug(&mut self.bugs.channel_end, "end of a withdrawn channel", &e);
                }
            }
            // Its file's close goes out; the machine, drained, leaves its slot.
            self.drain_transfer(now, *tid);
            if let Some(group) = group {
                self.transfers.pending.insert(
                    *tid,
                    PendingSub {
                        group,
                        device,
                        channel: None,
                        manifest,
                        held: false,
                    },
                );
            }
        }
        !unanswered.is_empty()
    }

    /// The channels asked for `device` are forgotten: its connection is starting over. The
    /// transfers started early on its old connection wait for the new one too.
    pub(super) fn reopen_pending(&mut self, now: Instant, device: DeviceId) {
        self.requeue_offers(None, Some(device));
        self.withdraw_unanswered(now, None, Some(device));
        self.transfers.pending.forget_channels_to(device);
    }

    /// A group's wait for its first device is over: no device was found.
    pub(super) fn lookup_failed(&mut self, group: TransferId) {
        self.out.push_back(Output::Event(Event::Aggregate {
            group,
            status: Status::UnjoinablePeer,
            done: 0,
            total: 0,
        }));
        self.end_group(group);
    }

    /// Drains one transfer; a transfer that is over goes.
    pub(super) fn drain_transfer(&mut self, now: Instant, tid: TransferId) -> bool {
        let mut moved = false;
        loop {
            let Some(slot) = self.transfers.slots.get_mut(&tid) else {
                return moved;
            };
            let Some(out) = slot.machine.poll_output() else {
                break;
            };
            moved = true;
            let (connector, channel) = (slot.connector, slot.channel);
            match out {
                transfer::Output::Send(data) => {
                    self.channel_send(now, connector, channel, tid, &[&data])
                }
                transfer::Output::SendData { header, data } => {
                    self.channel_send(now, connector, channel, tid, &[&header, &data])
                }
                transfer::Output::Close | transfer::Output::Reset => {
                    let ended = self
                        .connectors
                        .get_mut(&connector)
                        .map(|c| c.end_channel(now, channel));
                    if let Some(Some(Err(e))) = ended {
                        bug(&mut self.bugs.channel_end, "end of a channel", &e);
                    }
                }
                transfer::Output::PauseReading | transfer::Output::ResumeReading => {
                    let pause = matches!(out, transfer::Output::PauseReading);
                    if let Some(link) = self
                        .connectors
                        .get(&connector)
                        .and_then(|c| c.selected_link())
                    {
                        self.pause_link(link, Pauser::Transfer(tid), pause);
                    }
                }
                transfer::Output::File(op) => {
                    self.transfers.files.insert(op.file(), tid);
                    self.out.push_back(Output::File(op));
                }
                transfer::Output::Event(e) => self.on_transfer_event(now, tid, e),
            }
        }
        if self.transfers.slots[&tid].machine.is_drained() {
            self.transfers.slots.remove(&tid);
            self.release_pauses(Pauser::Transfer(tid));
        }
        moved
    }

    fn on_transfer_event(&mut self, now: Instant, tid: TransferId, event: Event) {
        let slot = &self.transfers.slots[&tid];
        let (group, peer) = (slot.group, slot.peer);
        let event = match event {
            Event::IncomingTransfer { transfer, .. } if self.take_manifest_file(now, transfer) => {
                return;
            }
            Event::IncomingTransfer {
                transfer,
                name,
                size,
                ..
            } => {
                let auto = is_image_name(&name)
                    && self
                        .config
                        .auto_accept_images_under
                        .is_some_and(|limit| size < limit);
                self.out.push_back(Output::Event(Event::IncomingTransfer {
                    transfer,
                    name,
                    size,
                    from: Some(peer),
                }));
                // Bytes after the header (a CANCEL, say) may have ended it already.
                if auto && self.transfers.awaits_decision(transfer) {
                    // Taken for its name alone: it must start as a picture does.
                    if let Some(Transfer::Incoming(m)) = self
                        .transfers
                        .slots
                        .get_mut(&transfer)
                        .map(|s| &mut s.machine)
                    {
                        m.require_picture();
                    }
                    if let Err(e) = self.accept(now, transfer) {
                        bug(&mut self.bugs.auto_accept, "automatic acceptance", &e);
                    }
                }
                return;
            }
            e => e,
        };
        if let Some(group) = group {
            self.update_aggregate(group, &event);
            self.offer_sub_event(&event);
            let verified = matches!(event, Event::Verified { .. });
            if verified && self.transfers.pending.has_group(group) {
                // Another device has the file: one that never answered is not waited for
                // long (see `UNJOINED_GRACE`).
                self.timers
                    .set(NodeTimer::Unjoined(group), now + UNJOINED_GRACE);
            }
        } else {
            self.intake_file_event(&event);
        }
        self.out.push_back(Output::Event(event));
    }

    /// [`UNJOINED_GRACE`] after a device of `group` verified the file: the sub-transfers
    /// still waiting for a device that never answered our connection request end
    /// `unjoinable_peer`. Those whose device answered (ICE, TLS, a channel asked for) go on
    /// under their own deadlines.
    pub(super) fn subs_unjoined(&mut self, group: TransferId) {
        let unjoined: Vec<TransferId> = self
            .transfers
            .pending
            .of_group(group)
            .into_iter()
            .filter_map(|t| Some((t, self.transfers.pending.get(t)?)))
            .filter(|(_, p)| p.channel.is_none())
            .filter(|(_, p)| {
                let stage = self
                    .by_device
                    .get(&p.device)
                    .and_then(|id| self.connectors.get(id))
                    .map(|c| c.stage());
                matches!(
                    stage,
                    None | Some(Stage::Gathering | Stage::WaitAnswer | Stage::Failed)
                )
            })
            .map(|(t, _)| t)
            .collect();
        for sub in unjoined {
            self.transfers.pending.remove(sub);
            let why = format!(
                "not reached (offline?): no answer to our request {} s after another device \
                 of the account verified the file",
                UNJOINED_GRACE.as_secs()
            );
            self.sub_failed(sub, group, Status::UnjoinablePeer, Reason::Unreachable(why));
        }
    }

    /// A sub-transfer's event updates its group's optimistic view; a change is told, until
    /// the view is final. The group is told final as soon as one device verified the file,
    /// while other devices may still be connecting or receiving: those go on (a slow
    /// device gets the file too), and a device announced later is not sent a file its
    /// sender was told is over. The group is forgotten once every sub-transfer ended, so a
    /// node that runs for months keeps no group per file it ever sent.
    fn update_aggregate(&mut self, group: TransferId, event: &Event) {
        let Some(g) = self.transfers.groups.get_mut(&group) else {
            return;
        };
        let told_final = g.told_final();
        if g.aggregate.apply(event) && !told_final {
            let (status, done, total) = (
                g.aggregate.status(),
                g.aggregate.progress(),
                g.aggregate.total(),
            );
            self.out.push_back(Output::Event(Event::Aggregate {
                group,
                status,
                done,
                total,
            }));
            if status.is_final() {
                self.timers.clear(NodeTimer::Lookup(group));
            }
        }
        if g.aggregate.is_over() {
            self.end_group(group);
        }
    }

    /// A group is over: forgotten, with its wait for a first device.
    fn end_group(&mut self, group: TransferId) {
        self.transfers.groups.remove(&group);
        self.timers.clear(NodeTimer::Lookup(group));
    }

    fn sub_failed(&mut self, sub: TransferId, group: TransferId, status: Status, reason: Reason) {
        let event = Event::Status {
            transfer: sub,
            status,
            reason: Some(reason),
        };
        self.update_aggregate(group, &event);
        self.offer_sub_event(&event);
        self.out.push_back(Output::Event(event));
    }

    /// A sub-transfer still waiting for its channel fails, with `status` and `reason`.
    pub(super) fn fail_pending(
        &mut self,
        sub: TransferId,
        group: TransferId,
        status: Status,
        reason: Reason,
    ) {
        if self.transfers.pending.remove(sub).is_some() {
            self.sub_failed(sub, group, status, reason);
        }
    }

    /// A new sub-transfer finds no room for a connector to its device: it fails at once.
    pub(super) fn sub_without_room(&mut self, sub: TransferId) {
        if let Some(p) = self.transfers.pending.remove(sub) {
            let why = "too many connections to that account's devices".to_owned();
            self.sub_failed(
                sub,
                p.group,
                Status::UnjoinablePeer,
                Reason::Unreachable(why),
            );
        }
    }

    /// Every sub-transfer still waiting for a channel to `device` fails: its connector did.
    pub(super) fn subs_unreachable(&mut self, device: DeviceId, why: &str) {
        let subs = self.transfers.pending.of_device(device);
        for (sub, group) in subs {
            self.transfers.pending.remove(sub);
            self.sub_failed(
                sub,
                group,
                Status::UnjoinablePeer,
                Reason::Unreachable(why.to_owned()),
            );
        }
    }

    /// The transfers that run on connector `id`.
    pub(super) fn transfers_on(&self, id: u32) -> Vec<TransferId> {
        self.transfers
            .slots
            .iter()
            .filter(|(_, s)| s.connector == id)
            .map(|(t, _)| *t)
            .collect()
    }

    /// A file operation's result, to the transfer that asked.
    pub(super) fn on_file(&mut self, now: Instant, result: FileResult) -> Result<(), Error> {
        if self.on_tree(&result) {
            return Ok(());
        }
        let Some(tid) = self.transfers.files.get(&result.file()).copied() else {
            return Err(Error::UnknownFile(result.file()));
        };
        let Some(slot) = self.transfers.slots.get_mut(&tid) else {
            return Ok(());
        };
        slot.machine
            .handle_input(now, transfer::Input::File(result))
    }

    /// Feeds a transfer what its channel brought.
    pub(super) fn transfer_input(&mut self, now: Instant, tid: TransferId, input: transfer::Input) {
        if let Some(slot) = self.transfers.slots.get_mut(&tid) {
            if let Err(e) = slot.machine.handle_input(now, input) {
                bug(&mut self.bugs.transfer_input, "transfer input", &e);
            }
        }
    }

    /// A channel event of connector `id`.
    pub(super) fn on_mux_event(&mut self, now: Instant, id: u32, event: MuxEvent) {
        // Requests to send again have channels of their own.
        let Some(event) = self.on_ask_mux_event(now, id, event) else {
            return;
        };
        // So do manifests, ours and the peers'.
        let Some(event) = self.on_offer_mux_event(now, id, event) else {
            return;
        };
        let Some(event) = self.on_intake_mux_event(now, id, event) else {
            return;
        };
        match event {
            MuxEvent::OpenRequest { channel, name } => {
                let tid = name
                    .strip_prefix(FILE_CHANNEL)
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(TransferId);
                let Some(c) = self.connectors.get_mut(&id) else {
                    return;
                };
                let peer = c.peer();
                let (running, offers) = self.transfers.incoming(Some(peer.account));
                let room = running < MAX_TRANSFERS_PER_PEER && offers < MAX_OFFERS_PER_PEER;
                // The id is the sender's choice: one we use already (a transfer of ours not
                // yet on its channel, one running, a group) is declined, never shared.
                let free = tid.is_some_and(|t| t.0 != 0 && self.transfers.is_free(t));
                if tid.is_some() && !free {
                    self.dropped.transfer_id_in_use += 1;
                } else if tid.is_some() && !room {
                    self.dropped.channels_over_budget += 1;
                }
                match tid {
                    Some(tid) if free && room => {
                        let Some(accepted) = c.accept_channel(now, channel) else {
                            return;
                        };
                        match accepted {
                            Ok(()) => {}
                            // Too many bytes before our answer: the multiplexer declined it.
                            Err(ChannelError::EarlyOverflow(_)) => {
                                self.dropped.channels_over_budget += 1;
                                return;
                            }
                            Err(e) => bug(&mut self.bugs.channel_answer, "channel acceptance", &e),
                        }
                        let file = self.transfers.new_file();
                        let machine = Incoming::new(tid, file, Form::Framed)
                            .with_sender(peer.account)
                            .with_header_deadline(now + HEADER_TIMEOUT);
                        self.transfers.slots.insert(
                            tid,
                            Slot {
                                machine: Transfer::Incoming(machine),
                                connector: id,
                                channel,
                                group: None,
                                peer,
                                unanswered: false,
                            },
                        );
                    }
                    _ => {
                        if let Some(Err(e)) = c.decline_channel(now, channel) {
                            bug(&mut self.bugs.channel_answer, "channel refusal", &e);
                        }
                    }
                }
            }
            MuxEvent::Opened { channel } => {
                // Started with its request (early data): it runs already, answered now.
                match self.transfer_on(id, channel) {
                    Some(tid) => {
                        if let Some(slot) = self.transfers.slots.get_mut(&tid) {
                            slot.unanswered = false;
                        }
                    }
                    // Ended before its answer: its transfer moved to a newer connection
                    // (`withdraw_unanswered`); the peer sees the header, then the end.
                    None if self
                        .connectors
                        .get(&id)
                        .is_some_and(|c| c.channel_ended_here(channel)) => {}
                    None => self.start_outgoing(now, id, channel, false),
                }
            }
            MuxEvent::Declined { channel } => {
                if let Some(sub) = self.pending_on(id, channel) {
                    if let Some(p) = self.transfers.pending.remove(sub) {
                        self.sub_failed(sub, p.group, Status::ClosedByPeer, Reason::Refused);
                    }
                } else if let Some(tid) = self.transfer_on(id, channel) {
                    // Started early: refused all the same; the machine closes its file.
                    if let Some(Slot {
                        machine: Transfer::Outgoing(m),
                        ..
                    }) = self.transfers.slots.get_mut(&tid)
                    {
                        m.declined();
                    }
                    self.drain_transfer(now, tid);
                }
            }
            MuxEvent::Unanswered { channel } => {
                // The device never answered the channel we asked for: its transfer cannot
                // start; the connection stays for what else runs on it.
                if let Some(sub) = self.pending_on(id, channel) {
                    if let Some(p) = self.transfers.pending.remove(sub) {
                        self.sub_failed(sub, p.group, Status::TimeoutExpired, Reason::Timeout);
                    }
                } else if let Some(tid) = self.transfer_on(id, channel) {
                    self.transfer_input(now, tid, transfer::Input::StreamEnded);
                }
            }
            MuxEvent::Data { channel, data } => {
                if let Some(tid) = self.transfer_on(id, channel) {
                    self.transfer_input(now, tid, transfer::Input::Received(data));
                }
            }
            MuxEvent::Ended { channel } => {
                if let Some(tid) = self.transfer_on(id, channel) {
                    self.transfer_input(now, tid, transfer::Input::StreamEnded);
                }
            }
        }
    }

    /// The sub-transfer waiting for `channel` starts on it: the peer accepted it, or it may
    /// carry bytes before the answer (early data: `unanswered`).
    fn start_outgoing(&mut self, now: Instant, id: u32, channel: ChannelId, unanswered: bool) {
        // The sub-transfer that asked for it may have gone meanwhile (cancelled, failed):
        // the channel is ended at once, else it would hold the connection open for
        // ever (it never goes idle) and the peer's transfer on it would wait for a header
        // that never comes.
        let waiting = self.pending_on(id, channel).and_then(|sub| {
            let p = self.transfers.pending.remove(sub)?;
            let g = self.transfers.groups.get(&p.group)?;
            Some((sub, p, g.source.clone(), g.name.clone()))
        });
        let Some((sub, p, source, name)) = waiting else {
            let ended = self
                .connectors
                .get_mut(&id)
                .map(|c| c.end_channel(now, channel));
            match ended {
                // Opened early, and its transfer has ended its side already (done, failed
                // or cancelled before the ACCEPT came).
                Some(Some(Err(ChannelError::NotOpen(_)))) => {}
                Some(Some(Err(e))) => {
                    bug(&mut self.bugs.channel_end, "end of an unwanted channel", &e)
                }
                _ => {}
            }
            return;
        };
        let file = self.transfers.new_file();
        let mut machine = Outgoing::new(sub, file, source, name, Form::Framed);
        if let Some(manifest) = p.manifest {
            machine = machine.with_manifest(manifest);
        }
        let peer = self.connectors[&id].peer();
        self.transfers.slots.insert(
            sub,
            Slot {
                machine: Transfer::Outgoing(machine),
                connector: id,
                channel,
                group: Some(p.group),
                peer,
                unanswered,
            },
        );
    }

    fn pending_on(&self, connector: u32, channel: ChannelId) -> Option<TransferId> {
        self.transfers.pending.on_channel(connector, channel)
    }

    fn transfer_on(&self, connector: u32, channel: ChannelId) -> Option<TransferId> {
        self.transfers
            .slots
            .iter()
            .find(|(_, s)| s.connector == connector && s.channel == channel)
            .map(|(t, _)| *t)
    }

    /// Opens the channels of sub-transfers waiting for this connector, if it is ready.
    pub(super) fn open_pending_channels(&mut self, now: Instant, id: u32) {
        self.open_ask_channels(now, id);
        self.open_offer_channels(now, id);
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        if c.stage() != Stage::Ready {
            return;
        }
        let peer = c.peer();
        // A device that keeps a channel's bytes until it answers (PROTOCOL.md §9.1) gets the
        // header right behind the request, a round trip before its ACCEPT could come back.
        let early = self
            .announced_features(&peer.account, &peer.device)
            .is_some_and(|f| f.early_channel_data);
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        let mut started = Vec::new();
        for sub in self.transfers.pending.to_open(peer.device) {
            match c.open_channel(now, &format!("{FILE_CHANNEL}{}", sub.0), early) {
                Some(Ok(channel)) => {
                    self.transfers.pending.set_channel(sub, id, channel);
                    if early {
                        started.push(channel);
                    }
                }
                // Counted, not asserted: see `Bugs::channel_open`.
                Some(Err(_)) => self.bugs.channel_open += 1,
                None => {}
            }
        }
        for channel in started {
            self.start_outgoing(now, id, channel, true);
        }
    }

    /// A transfer's bytes go down: channel → TLS → ICE framing → the selected link. The
    /// transfer gets its send credit back once the link has written them all.
    fn channel_send(
        &mut self,
        now: Instant,
        id: u32,
        channel: ChannelId,
        tid: TransferId,
        parts: &[&[u8]],
    ) {
        let len = parts.iter().map(|p| p.len()).sum();
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        match c.send_parts_on_channel(now, channel, parts, &mut self.bugs) {
            Some(Ok(())) => {}
            Some(Err(e)) => return bug(&mut self.bugs.channel_send, "channel send", &e),
            // The connection is gone: the transfer hears that from its reset.
            None => return,
        }
        self.drain_connector(now, id);
        if let Some(c) = self.connectors.get_mut(&id) {
            c.expect_credit(tid, len);
        }
        self.drain_connector(now, id);
    }
}
