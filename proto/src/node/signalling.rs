//! DHT signalling: device announcements (ours, and those of the accounts we send to),
//! connection requests and answers sealed to a device, and the memory of the requests and
//! answers already seen (retries and replays change nothing).
//!
//! [`Signalling`] keeps what was learned and seen; the `impl Node` below opens what the
//! DHT delivers and hands it to the connectors and the transfers. Sealing our own requests
//! and answers is the connectors' business.

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;

use super::budget::{
    ANNOUNCEMENT_CHECKS_PER_WINDOW, Admit, REQUEST_CHECKS_PER_WINDOW, SignatureBudget,
};
use super::connector::{Connector, Stage};
use super::timers::NodeTimer;
use super::{ANSWER_RETRY, MAX_CONNECTORS_PER_ACCOUNT, Node, REQUEST_RETRY, Stopping};
use crate::io::{DhtKey, Event, Output};
use crate::signal::{self, Announcement, PeerConnection, Recipient, SeenIds};
use crate::tls::{AccountId, DeviceId};

/// What the node learned and saw on the DHT: see the module docs.
pub(super) struct Signalling {
    /// Requests and answers seen, by device and id.
    seen: SeenIds,
    /// The accounts whose devices we listen for, by DHT key.
    lookups: BTreeMap<DhtKey, AccountId>,
    /// Every verified device announcement seen, by account.
    known: BTreeMap<AccountId, BTreeMap<DeviceId, Announcement>>,
    /// The signature budget of our own key and of each key looked up (see `budget.rs`).
    budgets: BTreeMap<DhtKey, SignatureBudget>,
    /// Values opened or verified so far (each a signature check at least).
    checks: u64,
}

impl Signalling {
    pub(super) fn new() -> Signalling {
        Signalling {
            seen: SeenIds::new(),
            lookups: BTreeMap::new(),
            known: BTreeMap::new(),
            budgets: BTreeMap::new(),
            checks: 0,
        }
    }

    // ----- getters -----

    /// How many requests and answers are remembered as seen.
    pub(super) fn seen_count(&self) -> usize {
        self.seen.len()
    }

    /// How many device announcements are kept, all accounts together.
    pub(super) fn device_count(&self) -> usize {
        self.known.values().map(BTreeMap::len).sum()
    }

    /// How many DHT values were opened or verified (see [`Node::signature_checks`]).
    pub(super) fn checks(&self) -> u64 {
        self.checks
    }

    /// How many accounts are looked up.
    pub(super) fn lookup_count(&self) -> usize {
        self.lookups.len()
    }

    /// Whether any device of `account` is known.
    pub(super) fn knows(&self, account: &AccountId) -> bool {
        self.known.contains_key(account)
    }

    /// The known devices of `account`, in order.
    pub(super) fn devices(&self, account: &AccountId) -> Vec<Announcement> {
        self.known
            .get(account)
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The account looked up under `key`, if no device of it is known yet.
    pub(super) fn unknown_account(&self, key: &DhtKey) -> Option<AccountId> {
        self.lookups
            .get(key)
            .copied()
            .filter(|a| !self.known.contains_key(a))
    }

    // ----- the node's calls -----

    /// Looks `account` up: its key, and whether the node must start listening to it.
    pub(super) fn look_up(&mut self, account: AccountId) -> (DhtKey, bool) {
        let key = signal::devices_key(&account);
        (key, self.lookups.insert(key, account).is_none())
    }

    /// Ends every lookup: their keys, to stop listening.
    pub(super) fn end_lookups(&mut self) -> Vec<DhtKey> {
        let keys: Vec<DhtKey> = std::mem::take(&mut self.lookups).into_keys().collect();
        for key in &keys {
            self.budgets.remove(key);
        }
        keys
    }
}

impl Node {
    /// What a device of `account` announced it reads beyond the first formats (`PROTOCOL.md`
    /// §9.1), if we read its announcement: whether a manifest (§14) may go to it, say.
    /// `None` for a device we know nothing of (not looked up, or not announced).
    pub fn announced_features(
        &self,
        account: &AccountId,
        device: &DeviceId,
    ) -> Option<signal::Features> {
        self.signalling
            .known
            .get(account)
            .and_then(|devices| devices.get(device))
            .map(|a| a.features)
    }

    /// Looks `account`'s devices up, for a send or a request to send again: listens on its
    /// key (once, whoever asks), and looks again every [`REQUEST_RETRY`] until an
    /// announcement is known.
    pub(super) fn look_up_account(&mut self, now: Instant, account: AccountId) {
        let (key, new) = self.signalling.look_up(account);
        if new {
            self.out.push_back(Output::DhtListen { key });
        }
        if !self.signalling.knows(&account) {
            self.timers
                .set(NodeTimer::LookupRetry(key), now + REQUEST_RETRY);
        }
    }

    /// A lookup's retry timer fired: while a group for that account still waits and none
    /// of its devices is known, listen again (which delivers what is stored again).
    pub(super) fn retry_lookup(&mut self, now: Instant, key: DhtKey) {
        let still_unknown = self
            .signalling
            .unknown_account(&key)
            .is_some_and(|a| self.looks_up(a));
        if still_unknown {
            self.out.push_back(Output::DhtCancelListen { key });
            self.out.push_back(Output::DhtListen { key });
            self.timers
                .set(NodeTimer::LookupRetry(key), now + REQUEST_RETRY);
        }
    }

    /// A value the DHT delivered under `key`: checked now if the key's signature budget
    /// allows (see `budget.rs`), held for the next window, or dropped.
    pub(super) fn on_dht_value(&mut self, now: Instant, key: DhtKey, value: Bytes) {
        let ours = key == signal::peer_key(&self.config.device.id());
        if !ours && !self.signalling.lookups.contains_key(&key) {
            return; // Nobody asked: no work at all.
        }
        if ours && self.stopping != Stopping::No {
            return;
        }
        // What is not even shaped like a signed value costs no budget: it is dropped now.
        if ours && !signal::worth_opening(&value) {
            self.dropped.unopened += 1;
            return;
        }
        let account = self.signalling.lookups.get(&key).copied();
        if let Some(account) = account.filter(|_| !ours) {
            if !Announcement::worth_verifying(&value, &account)
                && !signal::revocations_worth_verifying(&value, &account)
            {
                self.dropped.bad_announcements += 1;
                return;
            }
        }
        self.signature_window(now, key);
        let limit = if ours {
            REQUEST_CHECKS_PER_WINDOW
        } else {
            ANNOUNCEMENT_CHECKS_PER_WINDOW
        };
        let budget = self
            .signalling
            .budgets
            .entry(key)
            .or_insert_with(|| SignatureBudget::new(limit));
        match budget.admit(now, &value, &mut self.rng) {
            Admit::Now => self.check_value(now, key, value),
            Admit::Held => {
                if let Some(end) = budget.window_end() {
                    self.timers.set(NodeTimer::SignatureWindow(key), end);
                }
            }
            Admit::Dropped => self.dropped.over_signature_budget += 1,
        }
    }

    /// [`NodeTimer::SignatureWindow`], or a value under `key`: if `key`'s window is over,
    /// the values it held are checked now, on the next window's budget.
    pub(super) fn signature_window(&mut self, now: Instant, key: DhtKey) {
        let held = match self.signalling.budgets.get_mut(&key) {
            Some(budget) => budget.roll(now),
            None => return,
        };
        if !held.is_empty() {
            self.timers.clear(NodeTimer::SignatureWindow(key));
        }
        for value in held {
            self.check_value(now, key, value);
        }
    }

    /// How many DHT values (requests, answers, announcements, revocation lists) were
    /// opened or verified so far: each costs a signature check at least, so a flood can
    /// raise this by no more than the keys' budgets per
    /// [`SIGNATURE_WINDOW`](super::SIGNATURE_WINDOW).
    pub fn signature_checks(&self) -> u64 {
        self.signalling.checks()
    }

    /// A value the budget let through: a request or answer for us, or a device
    /// announcement.
    fn check_value(&mut self, now: Instant, key: DhtKey, value: Bytes) {
        self.signalling.checks += 1;
        let me = self.config.device.id();
        if key == signal::peer_key(&me) {
            return self.on_signal(now, &value);
        }
        let Some(account) = self.signalling.lookups.get(&key).copied() else {
            return;
        };
        // Certificates are checked now, as TLS will check them: an expired or self-signed
        // device never makes us run ICE toward candidates it chose (SECURITY.md).
        let unix_now = self.config.anchor.at(now);
        match Announcement::verify_at(&value, &account, &self.config.revocations, unix_now) {
            Ok(a) if a.device != me => {
                let known = self.signalling.known.entry(a.account).or_default();
                if !known.contains_key(&a.device) && known.len() >= MAX_CONNECTORS_PER_ACCOUNT {
                    // An account can sign any number of devices: past the budget, the
                    // devices heard of first are the ones reached.
                    self.dropped.devices_over_budget += 1;
                    return;
                }
                known.insert(a.device, a.clone());
                self.on_announcement(now, a);
            }
            Ok(_) => {}
            Err(_) => match signal::verify_revocations(&value, &account) {
                Ok(list) => self.on_revocations(list),
                Err(_) => self.dropped.bad_announcements += 1,
            },
        }
    }

    /// An account we look up published a revocation list: a newer one than we knew is
    /// honoured at once, its devices forgotten and any connection to them failed (TLS would
    /// refuse them too, once the list is known, but no ICE should run toward them).
    fn on_revocations(&mut self, list: crate::tls::RevocationList) {
        let account = list.account();
        if !self.config.revocations.add(list) {
            return; // Not newer than what we hold.
        }
        let Some(list) = self.config.revocations.of(&account).cloned() else {
            return;
        };
        if let Some(devices) = self.signalling.known.get_mut(&account) {
            devices.retain(|device, _| !list.names(device));
        }
        let revoked: Vec<u32> = self
            .connectors
            .iter()
            .filter(|(_, c)| c.peer().account == account && list.names(&c.device()))
            .map(|(id, _)| *id)
            .collect();
        for id in revoked {
            self.connector_failed(id, "device revoked by its account".to_owned());
        }
    }

    /// A device of an account we send to: every group for that account that lacks it gets
    /// a sub-transfer, and the device a connector.
    pub(super) fn on_announcement(&mut self, now: Instant, a: Announcement) {
        self.ask_device(now, &a);
        self.send_to_device(now, &a);
        for group in self.transfers.groups_without(a.account, a.device) {
            let sub = self.add_sub(group, a.device);
            match self.ensure_connector(now, a.account, a.device, a.recipient()) {
                Some(id) => self.open_pending_channels(now, id),
                None => self.sub_without_room(sub),
            }
        }
    }

    fn on_signal(&mut self, now: Instant, value: &[u8]) {
        if self.stopping != Stopping::No {
            return;
        }
        let unix_now = self.config.anchor.at(now);
        let opened = match signal::open_at(
            &self.config.device,
            value,
            &self.config.revocations,
            unix_now,
        ) {
            Ok(o) => o,
            Err(_) => {
                self.dropped.unopened += 1;
                return;
            }
        };
        let Ok(msg) = PeerConnection::decode(&opened.body) else {
            self.dropped.unopened += 1;
            return;
        };
        if !msg.is_answer && !self.request_in_time(&opened, &msg, unix_now.as_secs()) {
            // Outside the window, or without a time from a device that announced it sends
            // one: refused whether or not the replay memory still holds its id.
            self.dropped.stale_requests += 1;
            return;
        }
        let failed_before = !msg.is_answer
            && self.connectors.values().any(|c| {
                c.answers(opened.device, msg.id) && c.stage() == Stage::Failed && !c.is_denied()
            });
        if failed_before {
            // The requester still asks, but our side of that exchange gave up (its answer
            // was lost, say): start it over, as a new request with the same id. Only the
            // failed connectors of that device go (their connections are closed already).
            let gone: Vec<u32> = self
                .connectors
                .iter()
                .filter(|(_, c)| c.device() == opened.device && c.stage() == Stage::Failed)
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                self.demux.forget_connector(id);
                self.remove_connector(id);
            }
        } else if !self
            .signalling
            .seen
            .first_time(opened.device, msg.id, msg.is_answer)
        {
            self.dropped.replayed += 1;
            if !msg.is_answer {
                // A retried request: our answer may have been lost on the DHT; put it again,
                // and give the requester, who only now may hear it, the whole ICE deadline.
                self.answer_again(now, opened.device, msg.id);
            }
            return;
        }
        if msg.is_answer {
            let found = self
                .connectors
                .iter()
                .find(|(_, c)| c.asked(opened.device, msg.id))
                .map(|(id, _)| *id);
            match found {
                Some(id) => self.connector_answer(now, id, msg),
                None => self.dropped.unexpected += 1,
            }
            return;
        }
        let stranger = opened.account != self.config.device.account()
            && !self.config.contacts.contains(&opened.account);
        if stranger && self.config.only_contacts {
            // Refused before ICE: no answer, no candidates, no connection.
            self.dropped.not_a_contact += 1;
            self.out.push_back(Output::Event(Event::RequestDropped {
                account: opened.account,
                device: opened.device,
                reason: "not a contact",
            }));
            return;
        }
        let Some(seal_key) = msg.seal else {
            self.dropped.unopened += 1;
            return;
        };
        let recipient = Recipient {
            device: opened.device,
            seal_key,
            // A request with a time comes from a device that reads one (PROTOCOL.md §9.1).
            features: signal::Features {
                request_time: msg.time.is_some(),
                ..signal::Features::default()
            },
        };
        if !self.room_for_connector(now, opened.account) {
            // No answer now; the requester's retry (the same id) gets another chance.
            self.dropped.requests_over_budget += 1;
            self.signalling.seen.forget(opened.device, msg.id, false);
            self.out.push_back(Output::Event(Event::RequestDropped {
                account: opened.account,
                device: opened.device,
                reason: "no room for one more connection",
            }));
            return;
        }
        if let Some(existing) = self.by_device.get(&opened.device).copied() {
            let c = &self.connectors[&existing];
            // Our own request to that device, not answered yet: the requests cross.
            let crossing = c.is_requester() && !matches!(c.stage(), Stage::Failed | Stage::Ready);
            if crossing && self.config.device.id() < opened.device {
                // Two devices connecting at once keep the connection the smaller id asked for.
                return;
            }
            if crossing {
                // Theirs wins: our request gives way, its connections closed, and what waited
                // on it moves to the answer.
                self.retire_connector(now, existing);
            } else if c.stage() == Stage::Ready {
                // A new request from a device we hold a connection to: a second process of
                // that device, or a peer that lost its side (it vanished, its network
                // changed). It gets its own answer and connection; the old one keeps what
                // runs on it, and goes if a quick liveness check fails.
                self.check_liveness(now, existing);
            }
            // Any other connector of that device (an answer in progress to another of its
            // processes) goes on too: every request gets its answer.
            self.by_device.remove(&opened.device);
        }
        let id = self.next_connector;
        self.next_connector += 1;
        let mut c = Connector::answerer(opened.account, opened.device, recipient, msg);
        let ask = self.config.ask_before_connecting && stranger;
        if ask {
            // A device of an account we do not know: the application decides.
            c.wait_approval();
            self.out.push_back(Output::Event(Event::ConnectionRequest {
                account: opened.account,
                device: opened.device,
            }));
        }
        self.connectors.insert(id, c);
        self.by_device.insert(opened.device, id);
        self.reopen_pending(now, opened.device);
        if self.gathered {
            self.connector_gathered(now, id);
        }
    }

    /// Whether a request's time is acceptable (see [`signal::request_in_time`]): the
    /// features its device announced are known if we read its announcement.
    fn request_in_time(&self, opened: &signal::Opened, msg: &PeerConnection, now: u64) -> bool {
        let announced = self
            .signalling
            .known
            .get(&opened.account)
            .and_then(|devices| devices.get(&opened.device))
            .map(|a| a.features);
        signal::request_in_time(msg.time, now, announced)
    }

    /// A put under `key` failed: an answer of ours still awaited there (its requester is
    /// not connected yet: our checks may have succeeded, but it needs our answer for its
    /// side of ICE and TLS) goes again after [`ANSWER_RETRY`], rather than only when the
    /// requester puts its request again, so that a lossy DHT costs one retry, not the
    /// requester's whole wait.
    pub(super) fn answer_put_failed(&mut self, now: Instant, key: DhtKey) {
        let waiting: Vec<u32> = self
            .connectors
            .iter()
            .filter(|(_, c)| {
                !c.is_requester()
                    && signal::peer_key(&c.device()) == key
                    && matches!(c.stage(), Stage::Ice | Stage::Tls)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            self.timers
                .set(NodeTimer::AnswerAgain(id), now + ANSWER_RETRY);
        }
    }

    /// [`NodeTimer::AnswerAgain`]: the answer goes again if it is still awaited.
    pub(super) fn put_answer_again(&mut self, id: u32) {
        let Some(c) = self.connectors.get(&id) else {
            return;
        };
        if !matches!(c.stage(), Stage::Ice | Stage::Tls) {
            return;
        }
        if let Some(value) = c.sealed_answer() {
            let key = signal::peer_key(&c.device());
            self.out.push_back(Output::DhtPut { key, value });
        }
    }

    fn answer_again(&mut self, now: Instant, device: DeviceId, id: u64) {
        let again = self
            .connectors
            .values_mut()
            .find(|c| c.answers(device, id))
            .and_then(|c| {
                c.requester_asks_again(now);
                c.sealed_answer()
            });
        if let Some(value) = again {
            self.out.push_back(Output::DhtPut {
                key: signal::peer_key(&device),
                value,
            });
        }
    }
}
