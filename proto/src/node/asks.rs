//! Ask again (`data-transfer-request`, see [`conversation`](crate::conversation)): both
//! sides of the request channel.
//!
//! - **Ours** ([`Node::ask_again`]): a receiving device asks every device of the sender's
//!   account, as a send reaches every device of the recipient's: each gets a connector, a
//!   channel named [`REQUEST_CHANNEL`], our one request line, and answers one line
//!   ([`Event::AskAnswered`]). The file itself comes as an ordinary offer under the same id.
//! - **Theirs**: a request on a channel a peer opened is read (bounded, one per channel),
//!   checked against the pinned TLS session — the `deviceId` must be the session's device
//!   (`device_mismatch`), the `conversation` its account and the device not revoked
//!   (`not_a_recipient`) — and only then given to the application ([`Event::AskAgain`]),
//!   which knows its records: [`Node::answer_ask`] sends the file again to that one device
//!   under the asked id, or refuses with a code. A request the application does not answer
//!   within [`ASK_TIMEOUT`] is answered `unavailable`.

use std::collections::BTreeMap;
use std::time::Instant;

use super::counters::bug;
use super::timers::NodeTimer;
use super::{LOOKUP_TIMEOUT, Node, Stopping};
use crate::Error;
use crate::channel::{ChannelId, MuxEvent};
use crate::conversation::{AskAnswer, LineReader, REQUEST_CHANNEL, TransferRequest};
use crate::io::{Event, Output};
use crate::signal::Announcement;
use crate::tls::{AccountId, DeviceId, PeerIdentity};
use crate::transfer::TransferId;

/// How long a peer's request may take to arrive whole and the application to answer it.
pub const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Requests of one account's devices read or waiting for the application at once; more
/// channels are declined.
pub const MAX_ASKS_PER_PEER: usize = 4;
/// Our own requests at once (each to every device of one account).
pub const MAX_OWN_ASKS: usize = 64;

/// Names a peer's request while the application decides ([`Event::AskAgain`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AskId(pub u64);

/// The application's answer to a peer's request ([`Node::answer_ask`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AskDecision {
    /// Send the file the driver knows as `source` again, under `name`, to the asking device
    /// only, under the asked id (its partial data there is keyed by it).
    Resend {
        /// The source, as for [`Node::send_file`].
        source: String,
        /// The name offered.
        name: String,
    },
    /// Refuse, with this code (not [`AskAnswer::Resending`]).
    Refuse(AskAnswer),
}

/// Our request to one device.
#[derive(Debug, Default)]
struct ToDevice {
    channel: Option<(u32, ChannelId)>,
    reader: LineReader,
    answered: bool,
    /// Whether a connection we answered failed under it and we asked with our own.
    retried: bool,
}

/// Our request for one transfer, to every device of its sender's account.
#[derive(Debug)]
struct Own {
    account: AccountId,
    /// The device the request names, when it is not ours ([`Node::ask_again_claiming`]).
    claimed: Option<DeviceId>,
    devices: BTreeMap<DeviceId, ToDevice>,
}

/// Where a peer's request stands.
#[derive(Debug)]
enum Stage {
    /// Its line is coming.
    Reading(LineReader),
    /// The application decides.
    Deciding(TransferId),
}

/// A peer's request, on a channel it opened.
#[derive(Debug)]
struct Theirs {
    connector: u32,
    channel: ChannelId,
    peer: PeerIdentity,
    stage: Stage,
}

/// Both sides' requests: see the module docs.
#[derive(Debug, Default)]
pub(super) struct Asks {
    own: BTreeMap<TransferId, Own>,
    theirs: BTreeMap<AskId, Theirs>,
    next: u64,
    /// Devices to connect to again with our own request, after the pump.
    retry: Vec<(AccountId, crate::signal::Recipient)>,
}

impl Asks {
    /// Whether one of our requests waits for a device of `account`.
    pub(super) fn looks_up(&self, account: AccountId) -> bool {
        self.own.values().any(|o| o.account == account)
    }

    /// Whether devices wait to be connected to again for our requests.
    pub(super) fn is_retrying(&self) -> bool {
        !self.retry.is_empty()
    }

    /// How many requests the node holds (ours, theirs), for its footprint.
    pub(super) fn len(&self) -> (usize, usize) {
        (self.own.len(), self.theirs.len())
    }
}

impl Node {
    /// Asks every device of `account` (the sender) to offer the transfer we saw as
    /// `transfer` again ([`TransferRequest`] on a [`REQUEST_CHANNEL`] channel). Each device's
    /// answer comes as [`Event::AskAnswered`]; a device that resends offers the file as
    /// usual ([`Event::IncomingTransfer`], same id), and accepting it resumes from what we
    /// hold. Asking again for the same transfer starts over.
    pub fn ask_again(&mut self, now: Instant, account: AccountId, transfer: TransferId) {
        self.ask_again_claiming(now, account, transfer, None);
    }

    /// [`ask_again`](Self::ask_again), with a request whose `deviceId` is `claimed` instead
    /// of this device: what a peer that lies about its device sends. For tests of the
    /// holder's check (it answers `device_mismatch`); an application has no use for it.
    pub fn ask_again_claiming(
        &mut self,
        now: Instant,
        account: AccountId,
        transfer: TransferId,
        claimed: Option<DeviceId>,
    ) {
        let refuse = |node: &mut Node, why: &str| {
            node.out.push_back(Output::Event(Event::AskAnswered {
                transfer,
                device: None,
                answer: Err(why.to_owned()),
                last: true,
            }));
        };
        if self.stopping != Stopping::No {
            return refuse(self, "this device is shutting down");
        }
        if !self.asks.own.contains_key(&transfer) && self.asks.own.len() >= MAX_OWN_ASKS {
            return refuse(self, "too many requests at once");
        }
        self.asks.own.insert(
            transfer,
            Own {
                account,
                claimed,
                devices: BTreeMap::new(),
            },
        );
        self.timers
            .set(NodeTimer::AskLookup(transfer), now + LOOKUP_TIMEOUT);
        self.look_up_account(now, account);
        for a in self.signalling.devices(&account) {
            self.ask_device(now, &a);
        }
        self.pump(now);
    }

    /// Answers a peer's request ([`Event::AskAgain`]). A resend goes to the asking device
    /// only, under the asked id; the group it makes is announced as for a send
    /// ([`Event::SubTransfer`], [`Event::Aggregate`]) and returned.
    pub fn answer_ask(
        &mut self,
        now: Instant,
        request: AskId,
        decision: AskDecision,
    ) -> Result<Option<TransferId>, Error> {
        let Some(Theirs {
            peer,
            stage: Stage::Deciding(transfer),
            ..
        }) = self.asks.theirs.get(&request)
        else {
            return Err(Error::NotNow("answer_ask: no such request waits"));
        };
        let (peer, transfer) = (*peer, *transfer);
        let group = match decision {
            AskDecision::Refuse(AskAnswer::Resending) => {
                return Err(Error::NotNow("answer_ask: resending is not a refusal"));
            }
            AskDecision::Refuse(code) => {
                self.end_request(now, request, code);
                None
            }
            // The id is in use here (the same file on its way to that device already).
            AskDecision::Resend { .. } if !self.transfers.is_free(transfer) => {
                self.end_request(now, request, AskAnswer::Unavailable);
                None
            }
            AskDecision::Resend { source, name } => {
                self.end_request(now, request, AskAnswer::Resending);
                let group = self.new_transfer_id();
                let again = BTreeMap::from([(peer.device, transfer)]);
                let to = Some(peer.device);
                Some(self.start_group(now, group, peer.account, source, name, again, to))
            }
        };
        self.pump(now);
        Ok(group)
    }

    /// A device of an account we ask: it gets a connector and, once ready, our channel.
    pub(super) fn ask_device(&mut self, now: Instant, a: &Announcement) {
        let mut wanted = false;
        for own in self.asks.own.values_mut() {
            if own.account == a.account && !own.devices.contains_key(&a.device) {
                own.devices.insert(a.device, ToDevice::default());
                wanted = true;
            }
        }
        if !wanted {
            return;
        }
        match self.ensure_connector(now, a.account, a.device, a.recipient()) {
            Some(id) => self.open_ask_channels(now, id),
            None => self.asks_unreachable(a.device, "no room for a new connection", None),
        }
    }

    /// Opens our request channels to the device of connector `id`, once it is ready.
    pub(super) fn open_ask_channels(&mut self, now: Instant, id: u32) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        if c.stage() != super::connector::Stage::Ready {
            return;
        }
        let device = c.device();
        for own in self.asks.own.values_mut() {
            let Some(to) = own.devices.get_mut(&device) else {
                continue;
            };
            if to.channel.is_some() || to.answered {
                continue;
            }
            match c.open_channel(now, REQUEST_CHANNEL, false) {
                Some(Ok(channel)) => to.channel = Some((id, channel)),
                Some(Err(_)) => self.bugs.channel_open += 1,
                None => {}
            }
        }
    }

    /// Our requests to `device` get no answer: its connection failed. With `retry`, the
    /// connection was one we answered that never became ready (a request the DHT kept from
    /// a process of that device that is gone answers that way): each request waiting on
    /// it tries once more on a connection of our own asking, after the pump.
    pub(super) fn asks_unreachable(
        &mut self,
        device: DeviceId,
        why: &str,
        retry: Option<(AccountId, crate::signal::Recipient)>,
    ) {
        let mut again = false;
        let mut failed = Vec::new();
        for (t, o) in self.asks.own.iter_mut() {
            let Some(d) = o.devices.get_mut(&device).filter(|d| !d.answered) else {
                continue;
            };
            if retry.is_some() && !d.retried {
                d.retried = true;
                d.channel = None;
                again = true;
            } else {
                failed.push(*t);
            }
        }
        if let Some(r) = retry.filter(|_| again) {
            self.asks.retry.push(r);
        }
        for t in failed {
            self.own_answered(t, device, Err(why.to_owned()));
        }
    }

    /// Connects again, with our own request, to the devices `asks_unreachable` left to
    /// retry.
    pub(super) fn retry_asks(&mut self, now: Instant) {
        for (account, recipient) in std::mem::take(&mut self.asks.retry) {
            let device = recipient.device;
            match self.ensure_connector(now, account, device, recipient) {
                Some(id) => self.open_ask_channels(now, id),
                None => self.asks_unreachable(device, "no room for a new connection", None),
            }
        }
    }

    /// One device answered our request for `transfer` (or could not): the application
    /// hears it; the request is over once every device it reached answered.
    fn own_answered(
        &mut self,
        transfer: TransferId,
        device: DeviceId,
        answer: Result<AskAnswer, String>,
    ) {
        let Some(own) = self.asks.own.get_mut(&transfer) else {
            return;
        };
        let Some(to) = own.devices.get_mut(&device) else {
            return;
        };
        if std::mem::replace(&mut to.answered, true) {
            return;
        }
        let last = own.devices.values().all(|d| d.answered);
        if last {
            self.asks.own.remove(&transfer);
            self.timers.clear(NodeTimer::AskLookup(transfer));
        }
        self.out.push_back(Output::Event(Event::AskAnswered {
            transfer,
            device: Some(device),
            answer,
            last,
        }));
    }

    /// Our request's wait for any device of the account is over.
    pub(super) fn ask_lookup_over(&mut self, transfer: TransferId) {
        if self
            .asks
            .own
            .get(&transfer)
            .is_some_and(|o| o.devices.is_empty())
        {
            self.asks.own.remove(&transfer);
            self.out.push_back(Output::Event(Event::AskAnswered {
                transfer,
                device: None,
                answer: Err(format!(
                    "no device of the sender's account announced itself within {} s",
                    LOOKUP_TIMEOUT.as_secs()
                )),
                last: true,
            }));
        }
    }

    /// A peer's request took too long to come or to be decided: `unavailable`.
    pub(super) fn ask_timed_out(&mut self, now: Instant, request: AskId) {
        if self.asks.theirs.contains_key(&request) {
            self.end_request(now, request, AskAnswer::Unavailable);
        }
    }

    /// Answers a peer's request with `code` and ends our side of its channel.
    fn end_request(&mut self, now: Instant, request: AskId, code: AskAnswer) {
        self.timers.clear(NodeTimer::Ask(request));
        let Some(t) = self.asks.theirs.remove(&request) else {
            return;
        };
        let Some(c) = self.connectors.get_mut(&t.connector) else {
            return;
        };
        if let Some(Err(e)) = c.send_on_channel(now, t.channel, &code.encode(), &mut self.bugs) {
            bug(&mut self.bugs.channel_send, "request answer", &e);
        }
        if let Some(Err(e)) = c.end_channel(now, t.channel) {
            bug(&mut self.bugs.channel_end, "end of a request channel", &e);
        }
        self.drain_connector(now, t.connector);
    }

    /// A channel event of connector `id` that belongs to a request: handled, and `None`;
    /// else the event back, for the transfers.
    pub(super) fn on_ask_mux_event(
        &mut self,
        now: Instant,
        id: u32,
        event: MuxEvent,
    ) -> Option<MuxEvent> {
        match event {
            MuxEvent::OpenRequest { channel, name } if name == REQUEST_CHANNEL => {
                self.their_request(now, id, channel);
                None
            }
            MuxEvent::Opened { channel } => match self.own_on(id, channel) {
                Some((transfer, _)) => {
                    let line = self.request_line(transfer);
                    let sent = self
                        .connectors
                        .get_mut(&id)
                        .and_then(|c| c.send_on_channel(now, channel, &line, &mut self.bugs));
                    if let Some(Err(e)) = sent {
                        bug(&mut self.bugs.channel_send, "request", &e);
                    }
                    self.drain_connector(now, id);
                    None
                }
                None => Some(MuxEvent::Opened { channel }),
            },
            MuxEvent::Declined { channel } | MuxEvent::Unanswered { channel }
                if self.own_on(id, channel).is_some() =>
            {
                if let Some((transfer, device)) = self.own_on(id, channel) {
                    let why = match event {
                        MuxEvent::Declined { .. } => "the device declined the request channel",
                        _ => "the device never answered the request channel",
                    };
                    self.own_answered(transfer, device, Err(why.to_owned()));
                }
                None
            }
            MuxEvent::Data { channel, data } => {
                if let Some((transfer, device)) = self.own_on(id, channel) {
                    self.own_data(now, id, channel, transfer, device, &data);
                    return None;
                }
                match self.theirs_on(id, channel) {
                    Some(request) => {
                        self.their_data(now, request, &data);
                        None
                    }
                    None => Some(MuxEvent::Data { channel, data }),
                }
            }
            MuxEvent::Ended { channel } => {
                if let Some((transfer, device)) = self.own_on(id, channel) {
                    let why = "the device ended the request channel without an answer";
                    self.own_answered(transfer, device, Err(why.to_owned()));
                    self.end_own_channel(now, id, channel);
                    return None;
                }
                match self.theirs_on(id, channel) {
                    // The requester gave up: nothing to answer.
                    Some(request) => {
                        self.timers.clear(NodeTimer::Ask(request));
                        self.asks.theirs.remove(&request);
                        if let Some(Some(Err(e))) = self
                            .connectors
                            .get_mut(&id)
                            .map(|c| c.end_channel(now, channel))
                        {
                            bug(&mut self.bugs.channel_end, "end of a request channel", &e);
                        }
                        None
                    }
                    None => Some(MuxEvent::Ended { channel }),
                }
            }
            other => Some(other),
        }
    }

    /// The line we send `device` for `transfer`: our account is the conversation (the
    /// account the file was sent to), our device the asking one.
    fn request_line(&self, transfer: TransferId) -> Vec<u8> {
        let claimed = self.asks.own.get(&transfer).and_then(|o| o.claimed);
        TransferRequest {
            conversation: self.config.device.account(),
            interaction: transfer,
            device: claimed.unwrap_or_else(|| self.config.device.id()),
        }
        .encode()
    }

    fn own_on(&self, id: u32, channel: ChannelId) -> Option<(TransferId, DeviceId)> {
        self.asks.own.iter().find_map(|(t, o)| {
            o.devices
                .iter()
                .find(|(_, d)| d.channel == Some((id, channel)) && !d.answered)
                .map(|(dev, _)| (*t, *dev))
        })
    }

    fn theirs_on(&self, id: u32, channel: ChannelId) -> Option<AskId> {
        self.asks
            .theirs
            .iter()
            .find(|(_, t)| t.connector == id && t.channel == channel)
            .map(|(r, _)| *r)
    }

    fn end_own_channel(&mut self, now: Instant, id: u32, channel: ChannelId) {
        if let Some(Some(Err(e))) = self
            .connectors
            .get_mut(&id)
            .map(|c| c.end_channel(now, channel))
        {
            bug(&mut self.bugs.channel_end, "end of our request channel", &e);
        }
    }

    /// The answer to our request is coming.
    fn own_data(
        &mut self,
        now: Instant,
        id: u32,
        channel: ChannelId,
        transfer: TransferId,
        device: DeviceId,
        data: &[u8],
    ) {
        let Some(to) = self
            .asks
            .own
            .get_mut(&transfer)
            .and_then(|o| o.devices.get_mut(&device))
        else {
            return;
        };
        let Some(line) = to.reader.push(data) else {
            return;
        };
        let answer = line
            .and_then(|l| AskAnswer::decode(&l))
            .map_err(|e| format!("the device's answer is not understood: {e}"));
        self.own_answered(transfer, device, answer);
        self.end_own_channel(now, id, channel);
    }

    /// A peer opens a request channel: taken if its account has room.
    fn their_request(&mut self, now: Instant, id: u32, channel: ChannelId) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        let peer = c.peer();
        let held = self
            .asks
            .theirs
            .values()
            .filter(|t| t.peer.account == peer.account)
            .count();
        if held >= MAX_ASKS_PER_PEER || self.stopping != Stopping::No {
            self.dropped.channels_over_budget += 1;
            if let Some(Err(e)) = c.decline_channel(now, channel) {
                bug(&mut self.bugs.channel_answer, "request channel refusal", &e);
            }
            return;
        }
        match c.accept_channel(now, channel) {
            Some(Ok(())) => {}
            Some(Err(e)) => return bug(&mut self.bugs.channel_answer, "request channel", &e),
            None => return,
        }
        self.asks.next += 1;
        let request = AskId(self.asks.next);
        self.asks.theirs.insert(
            request,
            Theirs {
                connector: id,
                channel,
                peer,
                stage: Stage::Reading(LineReader::default()),
            },
        );
        self.timers.set(NodeTimer::Ask(request), now + ASK_TIMEOUT);
    }

    /// Bytes of a peer's request: once whole, checked against its TLS session, then given
    /// to the application.
    fn their_data(&mut self, now: Instant, request: AskId, data: &[u8]) {
        let Some(t) = self.asks.theirs.get_mut(&request) else {
            return;
        };
        let Stage::Reading(reader) = &mut t.stage else {
            // One request per channel: what follows it is ignored.
            return;
        };
        let Some(line) = reader.push(data) else {
            return;
        };
        let peer = t.peer;
        let checked = TransferRequest::check(line, &peer, self.is_revoked(&peer));
        match checked {
            Err(code) => self.end_request(now, request, code),
            Ok(transfer) => {
                if let Some(t) = self.asks.theirs.get_mut(&request) {
                    t.stage = Stage::Deciding(transfer);
                }
                self.out.push_back(Output::Event(Event::AskAgain {
                    request,
                    from: peer,
                    transfer,
                }));
            }
        }
    }

    /// Whether `peer`'s device is on its account's revocation list as we know it now (a
    /// list may have come after its connection was made).
    fn is_revoked(&self, peer: &PeerIdentity) -> bool {
        self.config
            .revocations
            .of(&peer.account)
            .is_some_and(|l| l.names(&peer.device))
    }
}
