//! The node: one device of one account, the facade applications drive (Jami's
//! `DataTransferFacade` with its `DhtPeerConnector`).
//!
//! A [`Node`] owns every other machine of this crate and translates their outputs:
//! - one [`TurnClient`] per configured TURN server (one per address family);
//! - one connector (`node/connector.rs`) per remote device: sealed DHT request and answer → ICE over
//!   TCP with relayed candidates as the last resort → TLS 1.3 pinned to that device → a
//!   channel multiplexer ([`Mux`](crate::channel::Mux)) that carries every transfer with that device;
//! - one [`Outgoing`] or [`Incoming`] transfer per channel;
//! - one [`Aggregate`] per file sent to an account.
//!
//! It is an [`Endpoint`] with [`Event`]s for the application, so the simulator and the
//! runtimes drive it like any other. The driver calls, as for every machine here:
//! `handle_input` / `handle_timeout`, then `poll_output` until `None`, then `poll_timeout`.
//! Application calls ([`send_file`](Node::send_file), [`accept`](Node::accept),
//! [`refuse`](Node::refuse), [`cancel`](Node::cancel), [`shutdown`](Node::shutdown)) go
//! between those, and their effects come out of `poll_output` too.
//!
//! # Connection ids
//! Children name their connections in their own spaces; the node renames them: every
//! connection it asks the driver for is a node-wide [`ConnId::Connect`], and an accepted
//! connection keeps the driver's name. A connection accepted on a listener (or relayed in
//! through our TURN allocation) is not anyone's until its first ICE check names the session
//! by its USERNAME; until then it is *unrouted*, buffered up to a bound and for a while.

mod connector;

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::Error;
use crate::aggregate::Aggregate;
use crate::channel::{ChannelId, MuxEvent};
use crate::ice::{self, Candidate, CandidateType, TcpType};
use crate::io::{ConnId, DhtKey, Endpoint, Event, FileId, Input, ListenerId, Output};
use crate::rng::SeededRng;
use crate::signal::{self, Announcement, PeerConnection, Recipient, SeenIds};
use crate::stun::framing::FrameDecoder;
use crate::timer::Timers;
use crate::tls::{AccountId, Device, DeviceId, PeerIdentity, Revocations, UnixAnchor};
use crate::transfer::{self, Form, Incoming, Outgoing, Reason, Status, TransferId};
use crate::turn::{TurnClient, TurnConfig, TurnEvent};

use connector::{Connector, Link, Stage};

/// How long local gathering may take before connectors go ahead with what they have.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a requester waits for an answer (Jami: 30 s).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a requester puts its (same) request again while no answer came.
pub const REQUEST_RETRY: Duration = Duration::from_secs(5);
/// How long the TLS handshake may take once ICE selected a pair.
pub const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answerer waits for its relay to install the requester's permissions.
pub const PERMISSION_WAIT: Duration = Duration::from_secs(2);
/// How often a node puts its announcement again (DHT values expire; OpenDHT keeps them 10
/// minutes), and how soon after a failed put.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5 * 60);
const ANNOUNCE_RETRY: Duration = Duration::from_secs(2);
/// How long a failed connection's state is kept (to answer retried requests, and to remember
/// a denial) before it is forgotten.
pub const FORGET_FAILED: Duration = Duration::from_secs(2 * 30);
/// How long a file sent to an account waits for any device to announce itself.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an accepted connection may stay unrouted, and how much it may bring meanwhile.
const UNROUTED_TIMEOUT: Duration = Duration::from_secs(10);
const UNROUTED_LIMIT: usize = 16 * 1024;
/// Agent-side names of streams relayed in through our allocation start here, clear of the
/// driver's accepted connections.
const RELAY_IN_BASE: u32 = 0x8000_0000;
/// Channel names that carry a transfer.
pub(crate) const FILE_CHANNEL: &str = "file-transfer://";

/// What the name of a picture ends with, for
/// [`auto_accept_images_under`](NodeConfig::auto_accept_images_under) (any case).
pub const IMAGE_EXTENSIONS: &[&str] = &[".jpg", ".jpeg", ".png", ".gif", ".webp"];

/// Whether a file called `name` counts as a picture: it ends with one of
/// [`IMAGE_EXTENSIONS`], in any case.
pub fn is_image_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    IMAGE_EXTENSIONS.iter().any(|e| name.ends_with(e))
}

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This device.
    pub device: Device,
    /// This device's announcement, signed by its account ([`Account::announce`](crate::tls::Account::announce)).
    pub announcement: Vec<u8>,
    /// The local interface addresses to offer as host candidates.
    pub local_ips: Vec<IpAddr>,
    /// TURN servers, one per address family at most.
    pub turn: Vec<TurnConfig>,
    /// Seed of every random value the node draws.
    pub seed: u64,
    /// Maps the driver's clock to Unix time, for certificate validity.
    pub anchor: UnixAnchor,
    /// Revocation lists known.
    pub revocations: Revocations,
    /// ICE settings.
    pub ice: ice::Config,
    /// Accept incoming pictures smaller than this without asking (Jami's clients: 20 MB).
    pub auto_accept_images_under: Option<u64>,
    /// Offer only relayed candidates (for users on hostile networks, and for tests): no host
    /// or server-reflexive address is given to peers; connections still go out from the
    /// local addresses, to the peers' relayed candidates.
    pub relay_only: bool,
    /// Ask the application ([`Event::ConnectionRequest`]) before answering a device of an
    /// account that is not ours and not in [`contacts`](Self::contacts); off, every valid
    /// request is answered (the application still accepts or refuses each file).
    pub ask_before_connecting: bool,
    /// Accounts whose devices are answered without asking.
    pub contacts: std::collections::BTreeSet<AccountId>,
    /// Where TLS sessions write their secrets, for a trace that shows what travels inside
    /// TLS (the simulator's); `None` anywhere else, since the log decrypts every connection.
    pub tls_key_log: Option<std::sync::Arc<dyn rustls::KeyLog>>,
}

impl NodeConfig {
    /// A configuration with Ferry's defaults for the rest.
    pub fn new(
        device: Device,
        announcement: Vec<u8>,
        local_ips: Vec<IpAddr>,
        seed: u64,
        anchor: UnixAnchor,
    ) -> NodeConfig {
        NodeConfig {
            device,
            announcement,
            local_ips,
            turn: Vec::new(),
            seed,
            anchor,
            revocations: Revocations::new(),
            ice: ice::Config::default(),
            auto_accept_images_under: None,
            relay_only: false,
            ask_before_connecting: false,
            contacts: std::collections::BTreeSet::new(),
            tls_key_log: None,
        }
    }
}

/// Values dropped because they failed a check, by kind: for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DroppedValues {
    /// DHT values under our key that did not open or verify.
    pub unopened: u64,
    /// Requests or answers seen before (replays, duplicates, retries).
    pub replayed: u64,
    /// Answers to no request of ours, or from another device than asked.
    pub unexpected: u64,
    /// Announcements that did not verify.
    pub bad_announcements: u64,
    /// Connections closed before any check named their session.
    pub unrouted: u64,
}

struct TurnSlot {
    client: TurnClient,
    /// The TURN client's connection names → the node's.
    to_node: BTreeMap<ConnId, ConnId>,
    allocated: Option<(SocketAddr, SocketAddr)>,
    done: bool,
}

/// Where a driver connection belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// A TURN client's own connection.
    Turn { slot: usize, turn_conn: ConnId },
    /// An ICE agent's connection.
    Agent { connector: u32, agent_conn: ConnId },
    /// Not known yet (accepted, waiting for its first check).
    Unrouted,
}

/// An accepted or relayed-in stream waiting to be routed.
struct Unrouted {
    local: SocketAddr,
    remote: SocketAddr,
    frames: FrameDecoder,
    buffered: Vec<Bytes>,
    bytes: usize,
    deadline: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Inbound {
    Driver(ConnId),
    Relay(usize, ConnId),
}

enum Machine {
    Out(Outgoing),
    In(Incoming),
}

struct TransferSlot {
    machine: Machine,
    connector: u32,
    channel: ChannelId,
    group: Option<TransferId>,
    peer: PeerIdentity,
}

/// A file sent to every device of an account.
struct Group {
    account: AccountId,
    source: String,
    name: String,
    aggregate: Aggregate,
    devices: BTreeMap<DeviceId, TransferId>,
    lookup_deadline: Option<Instant>,
}

/// A sub-transfer whose channel is not open yet.
struct PendingSub {
    group: TransferId,
    device: DeviceId,
    /// The channel asked for, once the connection is ready.
    channel: Option<(u32, ChannelId)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum NodeTimer {
    Gather,
    /// Put our announcement again.
    Announce,
}

/// One device of one account: see the module docs.
pub struct Node {
    config: NodeConfig,
    rng: SeededRng,
    next_conn: u32,
    next_listener: u32,
    next_file: u64,
    listeners: BTreeMap<ListenerId, (IpAddr, Option<SocketAddr>)>,
    listeners_pending: usize,
    turns: Vec<TurnSlot>,
    gathered: bool,
    routes: BTreeMap<ConnId, Route>,
    unrouted: BTreeMap<Inbound, Unrouted>,
    connectors: BTreeMap<u32, Connector>,
    next_connector: u32,
    by_device: BTreeMap<DeviceId, u32>,
    lookups: BTreeMap<DhtKey, AccountId>,
    /// When to listen again to an account's devices that none of which was heard of yet (a
    /// lossy DHT may have lost the delivery of what it stores).
    lookup_retry: BTreeMap<DhtKey, Instant>,
    /// Every verified device announcement seen, by account.
    known: BTreeMap<AccountId, BTreeMap<DeviceId, Announcement>>,
    groups: BTreeMap<TransferId, Group>,
    pending_subs: BTreeMap<TransferId, PendingSub>,
    transfers: BTreeMap<TransferId, TransferSlot>,
    files: BTreeMap<FileId, TransferId>,
    seen: SeenIds,
    dropped: DroppedValues,
    timers: Timers<NodeTimer>,
    /// Transfers whose connection died, to reset once the pump is done.
    pending_reset: VecDeque<TransferId>,
    /// Where [`shutdown`](Node::shutdown) stands.
    stopping: Stopping,
    out: VecDeque<Output>,
}

/// Where a node stands in its shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopping {
    /// Running.
    No,
    /// [`Node::shutdown`] was called; TURN allocations are being released.
    Releasing,
    /// [`Event::ShutDown`] was emitted.
    Done,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("device", &self.config.device.id())
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a node: it binds a listener per local address, starts its TURN clients,
    /// publishes its announcement and listens for requests.
    pub fn new(now: Instant, config: NodeConfig) -> Node {
        let rng = SeededRng::new(config.seed);
        let mut node = Node {
            rng,
            next_conn: 1,
            next_listener: 1,
            next_file: 1,
            listeners: BTreeMap::new(),
            listeners_pending: 0,
            turns: Vec::new(),
            gathered: false,
            routes: BTreeMap::new(),
            unrouted: BTreeMap::new(),
            connectors: BTreeMap::new(),
            next_connector: 1,
            by_device: BTreeMap::new(),
            lookups: BTreeMap::new(),
            lookup_retry: BTreeMap::new(),
            known: BTreeMap::new(),
            groups: BTreeMap::new(),
            pending_subs: BTreeMap::new(),
            transfers: BTreeMap::new(),
            files: BTreeMap::new(),
            seen: SeenIds::new(),
            dropped: DroppedValues::default(),
            timers: Timers::new(),
            pending_reset: VecDeque::new(),
            stopping: Stopping::No,
            out: VecDeque::new(),
            config,
        };
        for ip in node.config.local_ips.clone() {
            let listener = ListenerId(node.next_listener);
            node.next_listener += 1;
            node.listeners.insert(listener, (ip, None));
            node.listeners_pending += 1;
            node.out.push_back(Output::Listen {
                listener,
                local: SocketAddr::new(ip, 0),
            });
        }
        for config in node.config.turn.clone() {
            let seed = node.rng.next_u64();
            node.turns.push(TurnSlot {
                client: TurnClient::new(config, seed),
                to_node: BTreeMap::new(),
                allocated: None,
                done: false,
            });
        }
        node.timers.set(NodeTimer::Gather, now + GATHER_TIMEOUT);
        node.timers.set(NodeTimer::Announce, now + ANNOUNCE_EVERY);
        let me = node.config.device.clone();
        node.out.push_back(Output::DhtListen {
            key: signal::peer_key(&me.id()),
        });
        node.out.push_back(Output::DhtPut {
            key: signal::devices_key(&me.account()),
            value: Bytes::from(node.config.announcement.clone()),
        });
        node.pump(now);
        node
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.config.device.id()
    }

    /// What was dropped so far, and why.
    pub fn dropped(&self) -> DroppedValues {
        self.dropped
    }

    /// Our relayed addresses, once allocated.
    pub fn relayed(&self) -> Vec<SocketAddr> {
        self.turns
            .iter()
            .filter_map(|t| t.allocated.map(|(r, _)| r))
            .collect()
    }

    /// The addresses the node listens on, once the driver has bound them.
    pub fn listening(&self) -> Vec<SocketAddr> {
        self.listeners.values().filter_map(|(_, a)| *a).collect()
    }

    /// How many remote devices the node keeps any state for (connecting, ready, or failed
    /// recently).
    pub fn known_connections(&self) -> usize {
        self.connectors.len()
    }

    /// How many connections to remote devices are ready (TLS up, channels usable).
    pub fn ready_connections(&self) -> usize {
        self.connectors
            .values()
            .filter(|c| c.stage == Stage::Ready)
            .count()
    }

    // ----- application calls -----

    /// Sends the file the driver knows as `source`, under `name`, to every device of
    /// `account`. Returns the id of the group; each device gets its own sub-transfer
    /// ([`Event::SubTransfer`]) and the group an optimistic view ([`Event::Aggregate`]).
    pub fn send_file(
        &mut self,
        now: Instant,
        account: AccountId,
        source: String,
        name: String,
    ) -> TransferId {
        let group = self.new_transfer_id();
        if self.stopping != Stopping::No {
            // A node that is shutting down takes no new work.
            self.out.push_back(Output::Event(Event::Aggregate {
                group,
                status: Status::ClosedByHost,
                done: 0,
                total: 0,
            }));
            return group;
        }
        self.groups.insert(
            group,
            Group {
                account,
                source,
                name,
                aggregate: Aggregate::new(0),
                devices: BTreeMap::new(),
                lookup_deadline: Some(now + LOOKUP_TIMEOUT),
            },
        );
        let key = signal::devices_key(&account);
        if self.lookups.insert(key, account).is_none() {
            self.out.push_back(Output::DhtListen { key });
        }
        if !self.known.contains_key(&account) {
            self.lookup_retry.insert(key, now + REQUEST_RETRY);
        }
        self.out.push_back(Output::Event(Event::Aggregate {
            group,
            status: Status::Created,
            done: 0,
            total: 0,
        }));
        // Devices already known get their sub-transfer now; others as they announce.
        let known: Vec<Announcement> = self
            .known
            .get(&account)
            .map(|d| d.values().cloned().collect())
            .unwrap_or_default();
        for a in known {
            self.on_announcement(now, a);
        }
        self.pump(now);
        group
    }

    /// Lets a device that asked to connect (see [`Event::ConnectionRequest`]) go on.
    pub fn allow_connection(&mut self, now: Instant, device: DeviceId) -> Result<(), Error> {
        let Some(id) = self.by_device.get(&device).copied() else {
            return Err(Error::NotNow(
                "allow_connection: no request from that device",
            ));
        };
        match self.connectors.get_mut(&id) {
            Some(c) if c.stage == Stage::WaitApproval => c.stage = Stage::Gathering,
            _ => {
                return Err(Error::NotNow(
                    "allow_connection: the request is not waiting",
                ));
            }
        }
        if self.gathered {
            self.connector_gathered(now, id);
        }
        self.pump(now);
        Ok(())
    }

    /// Refuses a device that asked to connect: it gets no answer.
    pub fn deny_connection(&mut self, now: Instant, device: DeviceId) -> Result<(), Error> {
        let Some(id) = self.by_device.get(&device).copied() else {
            return Err(Error::NotNow(
                "deny_connection: no request from that device",
            ));
        };
        if self.connectors.get(&id).map(|c| c.stage) != Some(Stage::WaitApproval) {
            return Err(Error::NotNow("deny_connection: the request is not waiting"));
        }
        if let Some(c) = self.connectors.get_mut(&id) {
            c.denied = true;
        }
        self.connector_failed(id, "refused by the local user".to_owned());
        self.pump(now);
        Ok(())
    }

    /// Accepts an incoming transfer.
    pub fn accept(&mut self, now: Instant, transfer: TransferId) -> Result<(), Error> {
        match self.transfers.get_mut(&transfer).map(|t| &mut t.machine) {
            Some(Machine::In(m)) => m.accept(now)?,
            _ => return Err(Error::NotNow("accept: no such incoming transfer")),
        }
        self.pump(now);
        Ok(())
    }

    /// Refuses an incoming transfer.
    pub fn refuse(&mut self, now: Instant, transfer: TransferId) -> Result<(), Error> {
        match self.transfers.get_mut(&transfer).map(|t| &mut t.machine) {
            Some(Machine::In(m)) => m.refuse(now)?,
            _ => return Err(Error::NotNow("refuse: no such incoming transfer")),
        }
        self.pump(now);
        Ok(())
    }

    /// Cancels a transfer: one sub-transfer, an incoming transfer, or a whole group (every
    /// device of it).
    pub fn cancel(&mut self, now: Instant, transfer: TransferId) {
        let targets: Vec<TransferId> = match self.groups.get(&transfer) {
            Some(g) => g.devices.values().copied().collect(),
            None => vec![transfer],
        };
        for t in targets {
            if let Some(slot) = self.transfers.get_mut(&t) {
                match &mut slot.machine {
                    Machine::Out(m) => m.cancel(now),
                    Machine::In(m) => m.cancel(now),
                }
            } else if let Some(p) = self.pending_subs.remove(&t) {
                self.sub_failed(t, p.group, Status::ClosedByHost, Reason::Cancelled);
            }
        }
        self.pump(now);
    }

    /// Shuts the node down, for an application that quits: every transfer is cancelled (the
    /// peers hear CANCEL, not a lost connection), every connection ends with TLS close_notify
    /// and is closed, listeners and DHT listens stop, and every TURN allocation is deleted.
    /// [`Event::ShutDown`] comes once the TURN servers answered (or gave up, after the TURN
    /// client's own retransmissions); the driver can then stop. Afterwards the node takes
    /// no new work: peers' requests are ignored, accepted connections closed, and a
    /// [`send_file`](Node::send_file) ends at once with [`Status::ClosedByHost`].
    /// Calling it again does nothing.
    pub fn shutdown(&mut self, now: Instant) {
        if self.stopping != Stopping::No {
            return;
        }
        self.stopping = Stopping::Releasing;
        let groups: Vec<TransferId> = self.groups.keys().copied().collect();
        for group in groups {
            if let Some(g) = self.groups.get_mut(&group) {
                if g.lookup_deadline.take().is_some() && g.devices.is_empty() {
                    self.out.push_back(Output::Event(Event::Aggregate {
                        group,
                        status: Status::ClosedByHost,
                        done: 0,
                        total: 0,
                    }));
                }
            }
            self.cancel(now, group);
        }
        let running: Vec<TransferId> = self.transfers.keys().copied().collect();
        for t in running {
            self.cancel(now, t);
        }
        for c in self.connectors.values_mut() {
            if let Some(tls) = c.tls.as_mut() {
                tls.close(now);
            }
        }
        // The CANCEL frames and close_notify go down to the connections before they close.
        self.pump(now);
        let ids: Vec<u32> = self.connectors.keys().copied().collect();
        for id in ids {
            self.connector_failed(id, "this device is shutting down".to_owned());
        }
        let inbound: Vec<Inbound> = self.unrouted.keys().copied().collect();
        for i in inbound {
            self.close_inbound(i);
        }
        for listener in std::mem::take(&mut self.listeners).into_keys() {
            self.out.push_back(Output::Unlisten { listener });
        }
        self.out.push_back(Output::DhtCancelListen {
            key: signal::peer_key(&self.config.device.id()),
        });
        for key in std::mem::take(&mut self.lookups).into_keys() {
            self.out.push_back(Output::DhtCancelListen { key });
        }
        for slot in &mut self.turns {
            slot.client.deallocate(now);
        }
        self.pump(now);
        self.after_pump(now);
        self.check_shut_down();
    }

    /// Emits [`Event::ShutDown`] once a shutdown has released every TURN allocation.
    fn check_shut_down(&mut self) {
        if self.stopping == Stopping::Releasing && self.turns.iter().all(|t| t.client.is_done()) {
            self.stopping = Stopping::Done;
            self.out.push_back(Output::Event(Event::ShutDown));
        }
    }

    fn new_transfer_id(&mut self) -> TransferId {
        loop {
            let id = self.rng.next_u64();
            if id != 0
                && !self.transfers.contains_key(&TransferId(id))
                && !self.groups.contains_key(&TransferId(id))
            {
                return TransferId(id);
            }
        }
    }

    fn new_conn(&mut self) -> ConnId {
        let c = ConnId::Connect(self.next_conn);
        self.next_conn += 1;
        c
    }

    // ----- gathering -----

    fn local_candidates(&self) -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut pref: u16 = 65535;
        let mut next_pref = || {
            let p = pref;
            pref = pref.saturating_sub(1);
            p
        };
        let listening: Vec<SocketAddr> = self.listeners.values().filter_map(|(_, a)| *a).collect();
        for addr in &listening {
            let p = next_pref();
            // Relay only offers no address to reach us directly, but we still open
            // connections (to the peer's relayed candidates, through its TURN server).
            if !self.config.relay_only {
                out.push(Candidate::tcp(
                    CandidateType::Host,
                    TcpType::Passive,
                    *addr,
                    p,
                ));
            }
            out.push(Candidate::tcp(
                CandidateType::Host,
                TcpType::Active,
                *addr,
                p,
            ));
        }
        if !self.config.relay_only {
            for slot in &self.turns {
                let Some((_, mapped)) = slot.allocated else {
                    continue;
                };
                if listening.iter().any(|a| a.ip() == mapped.ip()) {
                    continue;
                }
                // The NAT maps our listening port (we connect out from it too); with port
                // preservation the peer reaches it at the mapped address and that port.
                if let Some(l) = listening.iter().find(|a| a.is_ipv4() == mapped.is_ipv4()) {
                    out.push(Candidate::tcp(
                        CandidateType::ServerReflexive,
                        TcpType::Passive,
                        SocketAddr::new(mapped.ip(), l.port()),
                        next_pref(),
                    ));
                }
            }
        }
        for slot in &self.turns {
            if let Some((relayed, _)) = slot.allocated {
                out.push(Candidate::tcp(
                    CandidateType::Relayed,
                    TcpType::Passive,
                    relayed,
                    next_pref(),
                ));
            }
        }
        out
    }

    /// Our public addresses, as TURN servers saw us.
    fn public_addresses(&self) -> Vec<SocketAddr> {
        self.turns
            .iter()
            .filter_map(|t| t.allocated.map(|(_, m)| m))
            .collect()
    }

    fn check_gathered(&mut self, now: Instant) {
        if self.gathered {
            return;
        }
        if self.listeners_pending == 0 && self.turns.iter().all(|t| t.done) {
            self.gathered = true;
            self.timers.clear(NodeTimer::Gather);
            let ids: Vec<u32> = self.connectors.keys().copied().collect();
            for id in ids {
                self.connector_gathered(now, id);
            }
        }
    }

    fn permit_everywhere(&mut self, now: Instant, ips: &[IpAddr]) {
        for slot in &mut self.turns {
            if slot.allocated.is_some() {
                slot.client.permit(now, ips.iter().copied());
            }
        }
    }

    // ----- the pump: drain every child until nothing moves -----

    fn pump(&mut self, now: Instant) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.turns.len() {
                moved |= self.drain_turn(now, i);
            }
            let ids: Vec<u32> = self.connectors.keys().copied().collect();
            for id in ids {
                moved |= self.drain_connector(now, id);
            }
            let tids: Vec<TransferId> = self.transfers.keys().copied().collect();
            for t in tids {
                moved |= self.drain_transfer(now, t);
            }
            if !moved {
                return;
            }
        }
    }

    fn drain_turn(&mut self, now: Instant, slot: usize) -> bool {
        let mut moved = false;
        while let Some(o) = self.turns[slot].client.poll_output() {
            moved = true;
            match o {
                Output::Connect {
                    conn: tc,
                    remote,
                    local_port,
                    timeout,
                } => {
                    let n = self.new_conn();
                    self.turns[slot].to_node.insert(tc, n);
                    self.routes.insert(
                        n,
                        Route::Turn {
                            slot,
                            turn_conn: tc,
                        },
                    );
                    self.out.push_back(Output::Connect {
                        conn: n,
                        remote,
                        local_port,
                        timeout,
                    });
                }
                Output::Send { conn: tc, data } => {
                    if let Some(n) = self.turns[slot].to_node.get(&tc) {
                        self.out.push_back(Output::Send { conn: *n, data });
                    }
                }
                Output::Close { conn: tc } | Output::Reset { conn: tc } => {
                    if let Some(n) = self.turns[slot].to_node.remove(&tc) {
                        self.routes.remove(&n);
                        self.out.push_back(Output::Close { conn: n });
                    }
                }
                Output::Event(e) => self.on_turn_event(now, slot, e),
                _ => {}
            }
        }
        moved
    }

    fn on_turn_event(&mut self, now: Instant, slot: usize, event: TurnEvent) {
        match event {
            TurnEvent::Allocated {
                relayed, mapped, ..
            } => {
                self.turns[slot].allocated = Some((relayed, mapped));
                self.turns[slot].done = true;
                self.check_gathered(now);
            }
            TurnEvent::Failed { .. } | TurnEvent::Deallocated => {
                self.turns[slot].allocated = None;
                self.turns[slot].done = true;
                self.check_gathered(now);
                self.check_shut_down();
            }
            TurnEvent::Permitted { ips } | TurnEvent::PermissionFailed { ips, .. } => {
                let ids: Vec<u32> = self.connectors.keys().copied().collect();
                for id in ids {
                    self.connector_permitted(now, id, &ips);
                }
            }
            TurnEvent::PeerStream {
                conn,
                peer,
                incoming: true,
            } => {
                let local = self.turns[slot].allocated.map_or(peer, |(r, _)| r);
                self.add_unrouted(now, Inbound::Relay(slot, conn), local, peer);
            }
            TurnEvent::PeerData { conn, data } => {
                self.inbound_bytes(now, Inbound::Relay(slot, conn), data)
            }
            TurnEvent::PeerWritable { conn, bytes } => {
                let link = Link::Relay {
                    slot,
                    turn_conn: conn,
                };
                let ids: Vec<u32> = self.connectors.keys().copied().collect();
                for id in ids {
                    self.credit(now, id, link, bytes);
                }
            }
            TurnEvent::PeerClosed { conn } => {
                self.inbound_gone(now, Inbound::Relay(slot, conn), false)
            }
            _ => {}
        }
    }

    // ----- unrouted inbound streams -----

    fn add_unrouted(
        &mut self,
        now: Instant,
        inbound: Inbound,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        if let Inbound::Driver(conn) = inbound {
            self.routes.insert(conn, Route::Unrouted);
        }
        self.unrouted.insert(
            inbound,
            Unrouted {
                local,
                remote,
                frames: FrameDecoder::new(),
                buffered: Vec::new(),
                bytes: 0,
                deadline: now + UNROUTED_TIMEOUT,
            },
        );
    }

    /// Bytes on an accepted or relayed-in stream: to its agent, or buffered until routed.
    fn inbound_bytes(&mut self, now: Instant, inbound: Inbound, data: Bytes) {
        if let Some((connector, agent_conn)) = self.agent_of_inbound(inbound) {
            return self.agent_input(
                now,
                connector,
                ice::Input::Received {
                    conn: agent_conn,
                    data,
                },
            );
        }
        let Some(u) = self.unrouted.get_mut(&inbound) else {
            return;
        };
        u.bytes += data.len();
        if u.bytes > UNROUTED_LIMIT {
            self.dropped.unrouted += 1;
            return self.close_inbound(inbound);
        }
        u.buffered.push(data.clone());
        let frames = u.frames.push(&data);
        let Some(first) = frames.first() else { return };
        let ufrag = crate::stun::StunMessage::decode(first)
            .ok()
            .and_then(|m| m.username)
            .and_then(|u| u.split(':').next().map(str::to_owned));
        match ufrag {
            Some(ufrag) => {
                // Keep the ufrag: the agent may not exist yet (a check can beat the answer).
                self.try_route(now, inbound, &ufrag);
            }
            None => {
                self.dropped.unrouted += 1;
                self.close_inbound(inbound);
            }
        }
    }

    fn try_route(&mut self, now: Instant, inbound: Inbound, ufrag: &str) {
        let Some(id) = self
            .connectors
            .iter()
            .find(|(_, c)| {
                c.agent
                    .as_ref()
                    .is_some_and(|a| a.local_description().ufrag == ufrag)
            })
            .map(|(id, _)| *id)
        else {
            return; // Stays buffered until an agent with that ufrag exists, or times out.
        };
        let Some(u) = self.unrouted.remove(&inbound) else {
            return;
        };
        let c = self.connectors.get_mut(&id).expect("found above");
        let (agent_conn, link) = match inbound {
            Inbound::Driver(conn) => {
                self.routes.insert(
                    conn,
                    Route::Agent {
                        connector: id,
                        agent_conn: conn,
                    },
                );
                (conn, Link::Direct(conn))
            }
            Inbound::Relay(slot, turn_conn) => {
                let aid = ConnId::Accepted(RELAY_IN_BASE + c.next_relay_in);
                c.next_relay_in += 1;
                (aid, Link::Relay { slot, turn_conn })
            }
        };
        c.links.insert(agent_conn, link);
        self.agent_input(
            now,
            id,
            ice::Input::Accepted {
                conn: agent_conn,
                local: u.local,
                remote: u.remote,
            },
        );
        for data in u.buffered {
            self.agent_input(
                now,
                id,
                ice::Input::Received {
                    conn: agent_conn,
                    data,
                },
            );
        }
    }

    /// Routes what waited for an agent that now exists.
    fn retry_unrouted(&mut self, now: Instant) {
        let waiting: Vec<(Inbound, String)> = self
            .unrouted
            .iter()
            .filter_map(|(k, u)| {
                let mut frames = FrameDecoder::new();
                let first = u.buffered.iter().flat_map(|b| frames.push(b)).next()?;
                let name = crate::stun::StunMessage::decode(&first).ok()?.username?;
                Some((*k, name.split(':').next()?.to_owned()))
            })
            .collect();
        for (inbound, ufrag) in waiting {
            self.try_route(now, inbound, &ufrag);
        }
    }

    fn agent_of_inbound(&self, inbound: Inbound) -> Option<(u32, ConnId)> {
        match inbound {
            Inbound::Driver(conn) => match self.routes.get(&conn) {
                Some(Route::Agent {
                    connector,
                    agent_conn,
                }) => Some((*connector, *agent_conn)),
                _ => None,
            },
            Inbound::Relay(slot, turn_conn) => self.connectors.iter().find_map(|(id, c)| {
                c.links
                    .iter()
                    .find(|(_, l)| **l == Link::Relay { slot, turn_conn })
                    .map(|(a, _)| (*id, *a))
            }),
        }
    }

    fn inbound_gone(&mut self, now: Instant, inbound: Inbound, reset: bool) {
        if self.unrouted.contains_key(&inbound) {
            // Our side closes too, so the driver frees the socket (a peer's FIN gets ours).
            return self.close_inbound(inbound);
        }
        if let Some((connector, agent_conn)) = self.agent_of_inbound(inbound) {
            let input = if reset {
                ice::Input::Reset { conn: agent_conn }
            } else {
                ice::Input::Closed { conn: agent_conn }
            };
            self.agent_input(now, connector, input);
        }
    }

    fn close_inbound(&mut self, inbound: Inbound) {
        self.unrouted.remove(&inbound);
        match inbound {
            Inbound::Driver(conn) => {
                self.routes.remove(&conn);
                self.out.push_back(Output::Close { conn });
            }
            Inbound::Relay(slot, turn_conn) => self.turns[slot].client.close_peer(turn_conn),
        }
    }

    // ----- DHT -----

    fn on_dht_value(&mut self, now: Instant, key: DhtKey, value: Bytes) {
        let me = self.config.device.id();
        if key == signal::peer_key(&me) {
            return self.on_signal(now, &value);
        }
        let Some(account) = self.lookups.get(&key).copied() else {
            return;
        };
        match Announcement::verify(&value, &account, &self.config.revocations) {
            Ok(a) if a.device != me => {
                self.known
                    .entry(a.account)
                    .or_default()
                    .insert(a.device, a.clone());
                self.on_announcement(now, a);
            }
            Ok(_) => {}
            Err(_) => self.dropped.bad_announcements += 1,
        }
    }

    fn on_announcement(&mut self, now: Instant, a: Announcement) {
        let groups: Vec<TransferId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.account == a.account && !g.devices.contains_key(&a.device))
            .map(|(id, _)| *id)
            .collect();
        for group in groups {
            let sub = self.new_transfer_id();
            if let Some(g) = self.groups.get_mut(&group) {
                g.devices.insert(a.device, sub);
                g.aggregate.add(sub);
                g.lookup_deadline = None;
            }
            self.out.push_back(Output::Event(Event::SubTransfer {
                group,
                transfer: sub,
                device: a.device,
            }));
            self.pending_subs.insert(
                sub,
                PendingSub {
                    group,
                    device: a.device,
                    channel: None,
                },
            );
            let id = self.ensure_connector(now, a.account, a.device, a.recipient());
            self.open_pending_channels(now, id);
        }
    }

    fn on_signal(&mut self, now: Instant, value: &[u8]) {
        if self.stopping != Stopping::No {
            return;
        }
        let opened = match signal::open(&self.config.device, value, &self.config.revocations) {
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
        let failed_before = !msg.is_answer
            && self.connectors.values().any(|c| {
                !c.requester
                    && c.device == opened.device
                    && c.request_id == msg.id
                    && c.stage == Stage::Failed
                    && !c.denied
            });
        if failed_before {
            // The requester still asks, but our side of that exchange gave up (its answer
            // was lost, say): start it over, as a new request with the same id.
            if let Some(old) = self.by_device.get(&opened.device).copied() {
                self.forget_connector_routes(old);
            }
            self.connectors
                .retain(|_, c| !(c.device == opened.device && c.stage == Stage::Failed));
        } else if !self.seen.first_time(opened.device, msg.id, msg.is_answer) {
            self.dropped.replayed += 1;
            if !msg.is_answer {
                // A retried request: our answer may have been lost on the DHT; put it again.
                self.answer_again(opened.device, msg.id);
            }
            return;
        }
        if msg.is_answer {
            let found = self
                .connectors
                .iter()
                .find(|(_, c)| c.requester && c.request_id == msg.id && c.device == opened.device)
                .map(|(id, _)| *id);
            match found {
                Some(id) => self.connector_answer(now, id, msg),
                None => self.dropped.unexpected += 1,
            }
            return;
        }
        let Some(seal_key) = msg.seal else {
            self.dropped.unopened += 1;
            return;
        };
        let recipient = Recipient {
            device: opened.device,
            seal_key,
        };
        if let Some(existing) = self.by_device.get(&opened.device).copied() {
            let c = &self.connectors[&existing];
            let ours_wins =
                c.requester && c.stage != Stage::Failed && self.config.device.id() < opened.device;
            if c.stage == Stage::Ready || ours_wins {
                // Two devices connecting at once keep the connection the smaller id asked for.
                return;
            }
            // Theirs wins: our request gives way, and what waited on it moves to the answer.
            self.connectors.remove(&existing);
            self.by_device.remove(&opened.device);
            self.forget_connector_routes(existing);
        }
        let id = self.next_connector;
        self.next_connector += 1;
        let mut c = Connector::answerer(opened.account, opened.device, recipient, msg);
        let ask = self.config.ask_before_connecting
            && opened.account != self.config.device.account()
            && !self.config.contacts.contains(&opened.account);
        if ask {
            // A device of an account we do not know: the application decides.
            c.stage = Stage::WaitApproval;
            self.out.push_back(Output::Event(Event::ConnectionRequest {
                account: opened.account,
                device: opened.device,
            }));
        }
        self.connectors.insert(id, c);
        self.by_device.insert(opened.device, id);
        for p in self.pending_subs.values_mut() {
            if p.device == opened.device {
                p.channel = None;
            }
        }
        if self.gathered {
            self.connector_gathered(now, id);
        }
    }

    fn answer_again(&mut self, device: DeviceId, id: u64) {
        let again = self
            .connectors
            .values()
            .find(|c| !c.requester && c.device == device && c.request_id == id)
            .and_then(|c| c.sealed_answer.clone());
        if let Some(value) = again {
            self.out.push_back(Output::DhtPut {
                key: signal::peer_key(&device),
                value,
            });
        }
    }

    /// A failed connector stays long enough to answer the requester's retries (and to
    /// remember a denial), then goes: memory stays bounded by the devices in contact.
    fn forget_failed(&mut self, now: Instant) {
        let mut gone = Vec::new();
        for (id, c) in self.connectors.iter_mut() {
            if c.stage != Stage::Failed {
                continue;
            }
            match c.forget_at {
                None => c.forget_at = Some(now + FORGET_FAILED),
                Some(at) if at <= now => gone.push(*id),
                Some(_) => {}
            }
        }
        for id in gone {
            self.forget_connector_routes(id);
            self.connectors.remove(&id);
        }
    }

    fn forget_connector_routes(&mut self, id: u32) {
        self.routes
            .retain(|_, r| !matches!(r, Route::Agent { connector, .. } if *connector == id));
    }

    // ----- transfers -----

    fn drain_transfer(&mut self, now: Instant, tid: TransferId) -> bool {
        let mut moved = false;
        loop {
            let Some(slot) = self.transfers.get_mut(&tid) else {
                return moved;
            };
            let out = match &mut slot.machine {
                Machine::Out(m) => m.poll_output(),
                Machine::In(m) => m.poll_output(),
            };
            let Some(out) = out else { break };
            moved = true;
            let (connector, channel) = (slot.connector, slot.channel);
            match out {
                transfer::Output::Send(data) => {
                    self.channel_send(now, connector, channel, tid, data)
                }
                transfer::Output::Close | transfer::Output::Reset => {
                    if let Some(c) = self.connectors.get_mut(&connector) {
                        if let Some(mux) = c.mux.as_mut() {
                            let _ = mux.end(channel);
                        }
                    }
                }
                transfer::Output::PauseReading | transfer::Output::ResumeReading => {
                    let pause = matches!(out, transfer::Output::PauseReading);
                    if let Some(Link::Direct(conn)) = self
                        .connectors
                        .get(&connector)
                        .and_then(|c| c.selected_link())
                    {
                        self.out.push_back(if pause {
                            Output::PauseReading { conn }
                        } else {
                            Output::ResumeReading { conn }
                        });
                    }
                }
                transfer::Output::File(op) => {
                    self.files.insert(op.file(), tid);
                    self.out.push_back(Output::File(op));
                }
                transfer::Output::Event(e) => self.on_transfer_event(now, tid, e),
            }
        }
        let over = match &self.transfers[&tid].machine {
            Machine::Out(m) => m.is_drained(),
            Machine::In(m) => m.is_drained(),
        };
        if over {
            self.transfers.remove(&tid);
        }
        moved
    }

    fn on_transfer_event(&mut self, now: Instant, tid: TransferId, event: Event) {
        let slot = &self.transfers[&tid];
        let (group, peer) = (slot.group, slot.peer);
        let event = match event {
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
                if auto {
                    let _ = self.accept(now, transfer);
                }
                return;
            }
            e => e,
        };
        if let Some(group) = group {
            self.update_aggregate(group, &event);
        }
        self.out.push_back(Output::Event(event));
    }

    fn update_aggregate(&mut self, group: TransferId, event: &Event) {
        let Some(g) = self.groups.get_mut(&group) else {
            return;
        };
        if g.aggregate.apply(event) {
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
        }
    }

    fn sub_failed(&mut self, sub: TransferId, group: TransferId, status: Status, reason: Reason) {
        let event = Event::Status {
            transfer: sub,
            status,
            reason: Some(reason),
        };
        self.update_aggregate(group, &event);
        self.out.push_back(Output::Event(event));
    }

    fn on_file(&mut self, now: Instant, result: crate::io::FileResult) -> Result<(), Error> {
        let Some(tid) = self.files.get(&result.file()).copied() else {
            return Err(Error::UnknownFile(result.file()));
        };
        let Some(slot) = self.transfers.get_mut(&tid) else {
            return Ok(());
        };
        match &mut slot.machine {
            Machine::Out(m) => m.handle_input(now, transfer::Input::File(result)),
            Machine::In(m) => m.handle_input(now, transfer::Input::File(result)),
        }
    }

    fn transfer_input(&mut self, now: Instant, tid: TransferId, input: transfer::Input) {
        if let Some(slot) = self.transfers.get_mut(&tid) {
            // A transfer refuses only caller mistakes; network input never is one.
            let _ = match &mut slot.machine {
                Machine::Out(m) => m.handle_input(now, input),
                Machine::In(m) => m.handle_input(now, input),
            };
        }
    }

    fn on_mux_event(&mut self, now: Instant, id: u32, event: MuxEvent) {
        match event {
            MuxEvent::OpenRequest { channel, name } => {
                let tid = name
                    .strip_prefix(FILE_CHANNEL)
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(TransferId);
                let Some(c) = self.connectors.get_mut(&id) else {
                    return;
                };
                let Some(mux) = c.mux.as_mut() else { return };
                match tid {
                    Some(tid) if tid.0 != 0 && !self.transfers.contains_key(&tid) => {
                        let _ = mux.accept(channel);
                        let file = FileId(self.next_file);
                        self.next_file += 1;
                        let peer = PeerIdentity {
                            account: c.account,
                            device: c.device,
                        };
                        self.transfers.insert(
                            tid,
                            TransferSlot {
                                machine: Machine::In(Incoming::new(tid, file, Form::Framed)),
                                connector: id,
                                channel,
                                group: None,
                                peer,
                            },
                        );
                    }
                    _ => {
                        let _ = mux.decline(channel);
                    }
                }
            }
            MuxEvent::Opened { channel } => {
                let Some(sub) = self
                    .pending_subs
                    .iter()
                    .find(|(_, p)| p.channel == Some((id, channel)))
                    .map(|(t, _)| *t)
                else {
                    return;
                };
                let Some(p) = self.pending_subs.remove(&sub) else {
                    return;
                };
                let Some(g) = self.groups.get(&p.group) else {
                    return;
                };
                let file = FileId(self.next_file);
                self.next_file += 1;
                let machine =
                    Outgoing::new(sub, file, g.source.clone(), g.name.clone(), Form::Framed);
                let c = &self.connectors[&id];
                let peer = PeerIdentity {
                    account: c.account,
                    device: c.device,
                };
                self.transfers.insert(
                    sub,
                    TransferSlot {
                        machine: Machine::Out(machine),
                        connector: id,
                        channel,
                        group: Some(p.group),
                        peer,
                    },
                );
            }
            MuxEvent::Declined { channel } => {
                if let Some(sub) = self
                    .pending_subs
                    .iter()
                    .find(|(_, p)| p.channel == Some((id, channel)))
                    .map(|(t, _)| *t)
                {
                    if let Some(p) = self.pending_subs.remove(&sub) {
                        self.sub_failed(sub, p.group, Status::ClosedByPeer, Reason::Refused);
                    }
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

    fn transfer_on(&self, connector: u32, channel: ChannelId) -> Option<TransferId> {
        self.transfers
            .iter()
            .find(|(_, s)| s.connector == connector && s.channel == channel)
            .map(|(t, _)| *t)
    }

    /// Opens the channels of sub-transfers waiting for this connector, if it is ready.
    fn open_pending_channels(&mut self, now: Instant, id: u32) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        if c.stage != Stage::Ready {
            return;
        }
        let device = c.device;
        let Some(mux) = c.mux.as_mut() else { return };
        for (sub, p) in self.pending_subs.iter_mut() {
            if p.device == device && p.channel.is_none() {
                if let Ok(channel) = mux.open(&format!("{FILE_CHANNEL}{}", sub.0)) {
                    p.channel = Some((id, channel));
                }
            }
        }
        let _ = now;
    }

    /// A connector failed: everything that waited on it, or ran on it, hears why.
    fn connector_failed(&mut self, id: u32, why: String) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        if c.stage == Stage::Failed {
            return;
        }
        c.stage = Stage::Failed;
        c.timers.clear_all();
        let device = c.device;
        let was_ready = c.mux.is_some();
        c.mux = None;
        c.tls = None;
        if let Some(agent) = c.agent.as_mut() {
            agent.close();
        }
        self.by_device.remove(&device);
        self.out.push_back(Output::Event(Event::PeerUnreachable {
            device,
            reason: why.clone(),
        }));
        let subs: Vec<(TransferId, TransferId)> = self
            .pending_subs
            .iter()
            .filter(|(_, p)| p.device == device)
            .map(|(t, p)| (*t, p.group))
            .collect();
        for (sub, group) in subs {
            self.pending_subs.remove(&sub);
            self.sub_failed(
                sub,
                group,
                Status::UnjoinablePeer,
                Reason::Unreachable(why.clone()),
            );
        }
        if was_ready {
            let running: Vec<TransferId> = self
                .transfers
                .iter()
                .filter(|(_, s)| s.connector == id)
                .map(|(t, _)| *t)
                .collect();
            for t in running {
                self.pending_reset.push_back(t);
            }
        }
    }
}

/// What the node tells the application, through [`Output::Event`].
pub type NodeEvent = Event;

impl Endpoint for Node {
    type Event = Event;

    fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), Error> {
        match input {
            Input::Listening { listener, local } => {
                if let Some(l) = self.listeners.get_mut(&listener) {
                    if l.1.is_none() {
                        l.1 = Some(local);
                        self.listeners_pending = self.listeners_pending.saturating_sub(1);
                    }
                }
                self.check_gathered(now);
            }
            Input::ListenFailed { listener, .. } => {
                if self.listeners.remove(&listener).is_some() {
                    self.listeners_pending = self.listeners_pending.saturating_sub(1);
                }
                self.check_gathered(now);
            }
            Input::Accepted {
                listener,
                conn,
                remote,
            } => {
                let local = self.listeners.get(&listener).and_then(|l| l.1);
                match local.filter(|_| self.stopping == Stopping::No) {
                    Some(local) => self.add_unrouted(now, Inbound::Driver(conn), local, remote),
                    None => self.out.push_back(Output::Close { conn }),
                }
            }
            Input::DhtValue { key, value } => self.on_dht_value(now, key, value),
            Input::DhtPutDone { key, ok } => {
                if !ok && key == signal::devices_key(&self.config.device.account()) {
                    // Nobody can find us until the announcement is stored: try again soon.
                    self.timers.set(NodeTimer::Announce, now + ANNOUNCE_RETRY);
                }
            }
            Input::File(result) => self.on_file(now, result)?,
            Input::Connected { conn, .. }
            | Input::ConnectFailed { conn, .. }
            | Input::Received { conn, .. }
            | Input::Writable { conn, .. }
            | Input::HalfClosed { conn }
            | Input::Closed { conn }
            | Input::Reset { conn } => self.on_conn_input(now, conn, input),
        }
        self.pump(now);
        self.after_pump(now);
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_expired(now) {
            match t {
                NodeTimer::Gather => {
                    // Go ahead with whatever was gathered.
                    for slot in &mut self.turns {
                        slot.done = true;
                    }
                    self.listeners_pending = 0;
                    self.check_gathered(now);
                }
                NodeTimer::Announce => {
                    self.out.push_back(Output::DhtPut {
                        key: signal::devices_key(&self.config.device.account()),
                        value: Bytes::from(self.config.announcement.clone()),
                    });
                    self.timers.set(NodeTimer::Announce, now + ANNOUNCE_EVERY);
                }
            }
        }
        for slot in &mut self.turns {
            slot.client.handle_timeout(now);
        }
        let expired: Vec<Inbound> = self
            .unrouted
            .iter()
            .filter(|(_, u)| u.deadline <= now)
            .map(|(k, _)| *k)
            .collect();
        for inbound in expired {
            self.dropped.unrouted += 1;
            self.close_inbound(inbound);
        }
        let relisten: Vec<DhtKey> = self
            .lookup_retry
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in relisten {
            let still_unknown = self
                .lookups
                .get(&key)
                .is_some_and(|a| !self.known.contains_key(a))
                && self.groups.values().any(|g| {
                    g.lookup_deadline.is_some() && self.lookups.get(&key) == Some(&g.account)
                });
            if still_unknown {
                // Listening again delivers what is stored again.
                self.out.push_back(Output::DhtCancelListen { key });
                self.out.push_back(Output::DhtListen { key });
                self.lookup_retry.insert(key, now + REQUEST_RETRY);
            } else {
                self.lookup_retry.remove(&key);
            }
        }
        let lost: Vec<TransferId> = self
            .groups
            .iter()
            .filter(|(_, g)| g.lookup_deadline.is_some_and(|d| d <= now))
            .map(|(t, _)| *t)
            .collect();
        for group in lost {
            if let Some(g) = self.groups.get_mut(&group) {
                g.lookup_deadline = None;
            }
            self.out.push_back(Output::Event(Event::Aggregate {
                group,
                status: Status::UnjoinablePeer,
                done: 0,
                total: 0,
            }));
        }
        let ids: Vec<u32> = self.connectors.keys().copied().collect();
        for id in ids {
            self.connector_timeout(now, id);
        }
        let tids: Vec<TransferId> = self.transfers.keys().copied().collect();
        for t in tids {
            if let Some(slot) = self.transfers.get_mut(&t) {
                match &mut slot.machine {
                    Machine::Out(m) => m.handle_timeout(now),
                    Machine::In(m) => m.handle_timeout(now),
                }
            }
        }
        self.pump(now);
        self.after_pump(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.timers.next();
        let mut take = |t: Option<Instant>| {
            if let Some(t) = t {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for slot in &self.turns {
            take(slot.client.poll_timeout());
        }
        for u in self.unrouted.values() {
            take(Some(u.deadline));
        }
        for g in self.groups.values() {
            take(g.lookup_deadline);
        }
        for at in self.lookup_retry.values() {
            take(Some(*at));
        }
        for c in self.connectors.values() {
            take(c.poll_timeout());
        }
        for s in self.transfers.values() {
            take(match &s.machine {
                Machine::Out(m) => m.poll_timeout(),
                Machine::In(m) => m.poll_timeout(),
            });
        }
        next
    }
}

impl Node {
    fn on_conn_input(&mut self, now: Instant, conn: ConnId, input: Input) {
        match self.routes.get(&conn).copied() {
            Some(Route::Turn { slot, turn_conn }) => {
                let renamed = rename(input, turn_conn);
                // A TURN client refuses only inputs it cannot have asked for.
                let _ = self.turns[slot].client.handle_input(now, renamed);
            }
            Some(Route::Agent {
                connector,
                agent_conn,
            }) => match input {
                Input::Connected { local, .. } => self.agent_input(
                    now,
                    connector,
                    ice::Input::Connected {
                        conn: agent_conn,
                        local,
                    },
                ),
                Input::ConnectFailed { error, .. } => self.agent_input(
                    now,
                    connector,
                    ice::Input::ConnectFailed {
                        conn: agent_conn,
                        error,
                    },
                ),
                Input::Received { data, .. } => self.agent_input(
                    now,
                    connector,
                    ice::Input::Received {
                        conn: agent_conn,
                        data,
                    },
                ),
                Input::Writable { bytes, .. } => {
                    self.credit(now, connector, Link::Direct(conn), bytes)
                }
                Input::HalfClosed { .. } | Input::Closed { .. } => {
                    self.routes.remove(&conn);
                    self.agent_input(now, connector, ice::Input::Closed { conn: agent_conn });
                }
                Input::Reset { .. } => {
                    self.routes.remove(&conn);
                    self.agent_input(now, connector, ice::Input::Reset { conn: agent_conn });
                }
                _ => {}
            },
            Some(Route::Unrouted) => match input {
                Input::Received { data, .. } => {
                    self.inbound_bytes(now, Inbound::Driver(conn), data)
                }
                Input::HalfClosed { .. } | Input::Closed { .. } => {
                    self.inbound_gone(now, Inbound::Driver(conn), false)
                }
                Input::Reset { .. } => self.inbound_gone(now, Inbound::Driver(conn), true),
                _ => {}
            },
            None => {}
        }
    }

    /// Work that a pump leaves behind: resets of transfers whose connection died, routes for
    /// streams whose agent now exists.
    fn after_pump(&mut self, now: Instant) {
        self.forget_failed(now);
        while let Some(t) = self.pending_reset.pop_front() {
            self.transfer_input(now, t, transfer::Input::StreamReset);
            self.pump(now);
        }
        if !self.unrouted.is_empty() {
            self.retry_unrouted(now);
            self.pump(now);
        }
    }
}

/// Gives an input the connection name a child knows.
fn rename(input: Input, to: ConnId) -> Input {
    match input {
        Input::Connected { local, .. } => Input::Connected { conn: to, local },
        Input::ConnectFailed { error, .. } => Input::ConnectFailed { conn: to, error },
        Input::Received { data, .. } => Input::Received { conn: to, data },
        Input::Writable { bytes, .. } => Input::Writable { conn: to, bytes },
        Input::HalfClosed { .. } => Input::HalfClosed { conn: to },
        Input::Closed { .. } => Input::Closed { conn: to },
        Input::Reset { .. } => Input::Reset { conn: to },
        other => other,
    }
}
