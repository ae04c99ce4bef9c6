//! The node: one device of one account, the facade applications drive (Jami's
//! `DataTransferFacade` with its `DhtPeerConnector`).
//!
//! A [`Node`] owns every other machine of this crate and translates their outputs. Each
//! kind of work has its own file, and the node drives each child through its methods:
//! - `relays.rs`: one [`TurnClient`](crate::turn::TurnClient) per TURN server (one per
//!   address family), their allocations and permissions; `gathering.rs`: our candidates;
//! - `demux.rs`: where each driver connection belongs, and the accepted connections that
//!   wait for their first ICE check to name their session;
//! - `signalling.rs`: device announcements, sealed requests and answers on the DHT, and the
//!   memory of those already seen;
//! - `connector/`: one connector per remote device: sealed DHT request and answer → ICE
//!   over TCP with relayed candidates as the last resort → TLS 1.3 pinned to that device → a
//!   channel multiplexer ([`Mux`](crate::channel::Mux)) that carries every transfer with
//!   that device; `peers.rs` is the node's side of it (making, draining, failing, forgetting);
//! - `transfers.rs`: one [`Outgoing`](crate::transfer::Outgoing) or
//!   [`Incoming`](crate::transfer::Incoming) transfer per channel, and one
//!   [`Aggregate`](crate::aggregate::Aggregate) per file sent to an account;
//! - `timers.rs`: every deadline of the node in one table; `counters.rs`: what it drops.
//!
//! `config.rs` holds the configuration and every deadline and budget; this file keeps the
//! node's state and its public face.
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

mod asks;
mod budget;
mod config;
mod connector;
mod counters;
mod demux;
mod footprint;
mod gathering;
mod inbound;
mod intakes;
mod peers;
mod pending;
mod portmap;
mod reflexive;
mod relays;
mod send_again;
mod sends;
mod signalling;
mod timers;
mod transfers;

use core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use bytes::Bytes;

use crate::Error;
use crate::io::{ConnId, Endpoint, Event, Input, ListenerId, Output};
use crate::rng::SeededRng;
use crate::signal;
use crate::timer::Timers;
use crate::tls::{AccountId, DeviceId};
use crate::transfer::{Status, TransferId};

pub use asks::{ASK_TIMEOUT, AskDecision, AskId, MAX_ASKS_PER_PEER, MAX_OWN_ASKS};
pub use budget::{
    ANNOUNCEMENT_CHECKS_PER_WINDOW, HELD_PER_WINDOW, REQUEST_CHECKS_PER_WINDOW, SIGNATURE_WINDOW,
};
pub use config::*;
use connector::{Connector, Stage};
pub use counters::{Bugs, DroppedValues};
use demux::{Demux, Inbound};
pub use demux::{UNROUTED_LIMIT, UNROUTED_MAX, UNROUTED_PER_SOURCE, UNROUTED_TIMEOUT};
pub use footprint::Footprint;
pub use intakes::MAX_MANIFESTS_PER_PEER;
pub use portmap::UNMAP_WAIT;
pub use reflexive::{Mapping, STUN_TIMEOUT};
pub use relays::RELAY_RETRY;
use relays::Relays;
pub use send_again::{DeviceAgain, SendAgain};
pub use sends::{MANIFEST_WINDOW, SendEntry, SendKind, Sending};
use signalling::Signalling;
use timers::NodeTimer;
pub(crate) use transfers::FILE_CHANNEL;
use transfers::Transfers;
pub use transfers::{IMAGE_EXTENSIONS, is_image_name};

/// One device of one account: see the module docs.
///
/// Methods come in four groups, called by the driver in this order: getters
/// ([`device`](Self::device), [`dropped`](Self::dropped), [`bugs`](Self::bugs),
/// [`relayed`](Self::relayed), [`listening`](Self::listening),
/// [`known_connections`](Self::known_connections),
/// [`connections_of`](Self::connections_of),
/// [`unrouted_connections`](Self::unrouted_connections),
/// [`pending_offers`](Self::pending_offers),
/// [`ready_connections`](Self::ready_connections),
/// [`timeout_reason`](Self::timeout_reason)); `handle_*`
/// ([`handle_input`](Endpoint::handle_input), [`handle_timeout`](Endpoint::handle_timeout));
/// application calls ([`send_file`](Self::send_file), [`accept`](Self::accept),
/// [`refuse`](Self::refuse), [`cancel`](Self::cancel),
/// [`allow_connection`](Self::allow_connection), [`deny_connection`](Self::deny_connection),
/// [`shutdown`](Self::shutdown)); `poll_*` ([`poll_output`](Endpoint::poll_output) until
/// `None`, then [`poll_timeout`](Endpoint::poll_timeout)).
pub struct Node {
    config: NodeConfig,
    rng: SeededRng,
    next_conn: u32,
    listeners: BTreeMap<ListenerId, (IpAddr, Option<SocketAddr>)>,
    listeners_pending: usize,
    relays: Relays,
    reflexive: reflexive::Reflexive,
    /// Our listening ports as the home router forwards them.
    portmaps: portmap::PortMaps,
    gathered: bool,
    demux: Demux,
    connectors: BTreeMap<u32, Connector>,
    next_connector: u32,
    by_device: BTreeMap<DeviceId, u32>,
    signalling: Signalling,
    transfers: Transfers,
    /// Requests to send a transfer again, ours and the peers'.
    asks: asks::Asks,
    /// Sends of several files, one manifest per device (`PROTOCOL.md` §14).
    sends: sends::Sends,
    /// Manifests peers offered us.
    intakes: intakes::Intakes,
    dropped: DroppedValues,
    bugs: Bugs,
    /// Every deadline of the node and of its children that are not machines of their own.
    timers: Timers<NodeTimer>,
    /// Transfers whose connection died, to reset once the pump is done.
    pending_reset: VecDeque<TransferId>,
    /// Who asked each link to stop reading: it reads again only once all of them let go.
    pausers: BTreeMap<connector::Link, std::collections::BTreeSet<peers::Pauser>>,
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
        let mut rng = SeededRng::new(config.seed);
        let relays = Relays::new(&config.turn, &mut rng);
        let mut node = Node {
            rng,
            next_conn: 1,
            listeners: BTreeMap::new(),
            listeners_pending: 0,
            relays,
            reflexive: reflexive::Reflexive::new(&config.stun),
            portmaps: portmap::PortMaps::default(),
            gathered: false,
            demux: Demux::default(),
            connectors: BTreeMap::new(),
            next_connector: 1,
            by_device: BTreeMap::new(),
            signalling: Signalling::new(),
            transfers: Transfers::new(),
            asks: asks::Asks::default(),
            sends: sends::Sends::default(),
            intakes: intakes::Intakes::default(),
            dropped: DroppedValues::default(),
            bugs: Bugs::default(),
            timers: Timers::new(),
            pausers: BTreeMap::new(),
            pending_reset: VecDeque::new(),
            stopping: Stopping::No,
            out: VecDeque::new(),
            config,
        };
        // What this version reads goes into the announcement, signed by the device (its
        // account signed the rest once): requesters put a time in their requests to us.
        // An announcement that does not parse goes out as it is (verified by its readers).
        if let Ok(announcement) = signal::Announcement::with_features(
            &node.config.announcement,
            &node.config.device,
            node.config.features,
        ) {
            node.config.announcement = announcement;
        }
        // Relay only listens nowhere: the peer's only way in is our relayed address, and
        // nothing of ours connects from a local address either (no host candidates).
        let listen_on = if node.config.relay_only {
            Vec::new()
        } else {
            node.config.local_ips.clone()
        };
        for (n, ip) in listen_on.iter().enumerate() {
            let listener = ListenerId(n as u32 + 1);
            node.listeners.insert(listener, (*ip, None));
            node.listeners_pending += 1;
            node.out.push_back(Output::Listen {
                listener,
                local: SocketAddr::new(*ip, 0),
            });
        }
        node.timers.set(NodeTimer::Gather, now + GATHER_TIMEOUT);
        node.timers.set(NodeTimer::Announce, now + ANNOUNCE_EVERY);
        node.out.push_back(Output::DhtListen {
            key: signal::peer_key(&node.config.device.id()),
        });
        node.announce();
        node.pump(now);
        node
    }

    // ----- getters -----

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.config.device.id()
    }

    /// What was dropped so far, and why.
    pub fn dropped(&self) -> DroppedValues {
        self.dropped
    }

    /// The errors of the node's children that cannot come, and came (see [`Bugs`]).
    pub fn bugs(&self) -> Bugs {
        self.bugs
    }

    /// Our relayed addresses, once allocated.
    pub fn relayed(&self) -> Vec<SocketAddr> {
        self.relays.relayed()
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

    /// How many connectors of devices of `account` the node keeps (at most
    /// [`MAX_CONNECTORS_PER_ACCOUNT`]).
    pub fn connections_of(&self, account: &AccountId) -> usize {
        self.connectors
            .values()
            .filter(|c| c.peer().account == *account)
            .count()
    }

    /// How many accepted (or relayed-in) connections wait for a first check to name their
    /// session (at most [`UNROUTED_MAX`], and [`UNROUTED_PER_SOURCE`] per address).
    pub fn unrouted_connections(&self) -> usize {
        self.demux.waiting_count()
    }

    /// How many incoming transfers wait for the local user (their header, or a decision).
    pub fn pending_offers(&self) -> usize {
        self.transfers.offers(None)
    }

    /// How many connections to remote devices are ready (TLS up, channels usable).
    pub fn ready_connections(&self) -> usize {
        self.connectors
            .values()
            .filter(|c| c.stage() == Stage::Ready)
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
        self.start_group(now, group, account, source, name, BTreeMap::new(), None)
    }

    /// Sends a file again as [`send_file`](Self::send_file) does, under the ids an earlier
    /// send of it used: `group` (a new id if it is in use) and, for each device in `devices`,
    /// its sub-transfer's id, so that a receiver that kept partial data under (our account,
    /// that id) resumes from it. The caller knows the file is the same one (its records).
    pub fn send_file_again(
        &mut self,
        now: Instant,
        account: AccountId,
        source: String,
        name: String,
        group: TransferId,
        devices: BTreeMap<DeviceId, TransferId>,
    ) -> TransferId {
        let group = match group.0 != 0 && self.transfers.is_free(group) {
            true => group,
            false => self.new_transfer_id(),
        };
        self.start_group(now, group, account, source, name, devices, None)
    }

    /// A group for `account`: every device of it, or only the device `only` (a file sent
    /// again because that device asked).
    #[allow(clippy::too_many_arguments)]
    fn start_group(
        &mut self,
        now: Instant,
        group: TransferId,
        account: AccountId,
        source: String,
        name: String,
        again: BTreeMap<DeviceId, TransferId>,
        only: Option<DeviceId>,
    ) -> TransferId {
        if self.stopping != Stopping::No {
            // A node that is shutting down takes no new work.
            self.aggregate_event(group, Status::ClosedByHost);
            return group;
        }
        self.transfers
            .add_group(group, account, source, name, again, only);
        self.timers
            .set(NodeTimer::Lookup(group), now + LOOKUP_TIMEOUT);
        self.look_up_account(now, account);
        self.aggregate_event(group, Status::Created);
        // Devices already known get their sub-transfer now; others as they announce.
        for a in self.signalling.devices(&account) {
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
        if !self.connectors.get_mut(&id).is_some_and(Connector::approve) {
            return Err(Error::NotNow(
                "allow_connection: the request is not waiting",
            ));
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
        if !self.connectors.get_mut(&id).is_some_and(Connector::deny) {
            return Err(Error::NotNow("deny_connection: the request is not waiting"));
        }
        self.connector_failed(id, "refused by the local user".to_owned());
        self.pump(now);
        Ok(())
    }

    /// Accepts an incoming transfer, or a whole manifest ([`Event::IncomingManifest`]).
    pub fn accept(&mut self, now: Instant, transfer: TransferId) -> Result<(), Error> {
        if !self.accept_manifest(transfer) {
            self.transfers.accept(now, transfer)?;
        }
        self.pump(now);
        Ok(())
    }

    /// Refuses an incoming transfer, or a whole manifest ([`Event::IncomingManifest`]).
    pub fn refuse(&mut self, now: Instant, transfer: TransferId) -> Result<(), Error> {
        if !self.refuse_manifest(transfer) {
            self.transfers.refuse(now, transfer)?;
        }
        self.pump(now);
        Ok(())
    }

    /// Cancels a transfer: one sub-transfer, an incoming transfer, a whole group (every
    /// device of it), or a whole send of several files ([`send_files`](Self::send_files)).
    pub fn cancel(&mut self, now: Instant, transfer: TransferId) {
        let groups = self
            .sends
            .groups_of(transfer)
            .unwrap_or_else(|| vec![transfer]);
        let targets: Vec<TransferId> = groups
            .into_iter()
            .flat_map(|g| self.transfers.targets(g))
            .collect();
        for t in targets {
            self.cancel_one(now, t);
        }
        self.pump(now);
    }

    /// Shuts the node down, for an application that quits: every transfer is cancelled (the
    /// peers hear CANCEL, not a lost connection), every connection ends with TLS close_notify
    /// and is closed, listeners and DHT listens stop, every TURN allocation is deleted and so
    /// is every port mapping ([`Output::UnmapPorts`]). [`Event::ShutDown`] comes once the
    /// TURN servers answered (or gave up, after the TURN client's own retransmissions) and
    /// the driver deleted the mappings (or [`UNMAP_WAIT`] passed); the driver can
    /// then stop. Afterwards the node takes
    /// no new work: peers' requests are ignored, accepted connections closed, and a
    /// [`send_file`](Node::send_file) ends at once with [`Status::ClosedByHost`].
    /// Calling it again does nothing.
    pub fn shutdown(&mut self, now: Instant) {
        if self.stopping != Stopping::No {
            return;
        }
        self.stopping = Stopping::Releasing;
        for group in self.transfers.groups() {
            if self.end_lookup(group) {
                self.aggregate_event(group, Status::ClosedByHost);
            }
            self.cancel(now, group);
        }
        for t in self.transfers.running() {
            self.cancel(now, t);
        }
        for c in self.connectors.values_mut() {
            c.close_tls(now);
        }
        // The CANCEL frames and close_notify go down to the connections before they close.
        self.pump(now);
        for id in self.connector_ids() {
            self.connector_failed(id, "this device is shutting down".to_owned());
        }
        for inbound in self.demux.waiting() {
            self.close_inbound(inbound);
        }
        for listener in std::mem::take(&mut self.listeners).into_keys() {
            self.out.push_back(Output::Unlisten { listener });
        }
        self.out.push_back(Output::DhtCancelListen {
            key: signal::peer_key(&self.config.device.id()),
        });
        for key in self.signalling.end_lookups() {
            self.out.push_back(Output::DhtCancelListen { key });
        }
        self.relays.deallocate(now);
        self.unmap_ports(now);
        self.pump(now);
        self.after_pump(now);
        self.check_shut_down();
    }

    // ----- wiring -----

    /// Emits [`Event::ShutDown`] once a shutdown has released every TURN allocation.
    fn check_shut_down(&mut self) {
        if self.stopping == Stopping::Releasing
            && self.relays.released()
            && !self.portmaps.unmapping()
        {
            self.stopping = Stopping::Done;
            self.out.push_back(Output::Event(Event::ShutDown));
        }
    }

    /// Puts our announcement (again).
    fn announce(&mut self) {
        let key = signal::devices_key(&self.config.device.account());
        self.out.push_back(Output::DhtPut {
            key,
            value: Bytes::from(self.config.announcement.clone()),
        });
        // The account's revocation list goes beside the announcements, where contacts
        // look: they refuse a revoked device before ICE, not only our own nodes.
        let own = self.config.revocations.of(&self.config.device.account());
        if let Some(value) = own.and_then(|l| signal::publish_revocations(&self.config.device, l)) {
            self.out.push_back(Output::DhtPut {
                key,
                value: Bytes::from(value),
            });
        }
    }

    /// A group's view with nothing sent (at its start, or when it ends before any device).
    fn aggregate_event(&mut self, group: TransferId, status: Status) {
        self.out.push_back(Output::Event(Event::Aggregate {
            group,
            status,
            done: 0,
            total: 0,
        }));
    }

    fn new_conn(&mut self) -> ConnId {
        let c = ConnId::Connect(self.next_conn);
        self.next_conn += 1;
        c
    }

    /// Drains every child until nothing moves: TURN clients, then connectors, then
    /// transfers, round after round.
    fn pump(&mut self, now: Instant) {
        for _ in 0..10_000 {
            let mut moved = false;
            for slot in 0..self.relays.len() {
                moved |= self.drain_relay(now, slot);
            }
            for id in self.connector_ids() {
                moved |= self.drain_connector(now, id);
            }
            for t in self.transfers.running() {
                moved |= self.drain_transfer(now, t);
            }
            moved |= self.drain_sends(now);
            moved |= self.drain_intakes(now);
            if !moved {
                return;
            }
        }
    }

    /// Work that a pump leaves behind: failed connectors to forget, resets of transfers
    /// whose connection died, the idle timers of ready connections.
    fn after_pump(&mut self, now: Instant) {
        if self.asks.is_retrying() {
            self.retry_asks(now);
            self.pump(now);
        }
        self.forget_failed(now);
        self.watch_idle(now);
        while let Some(t) = self.pending_reset.pop_front() {
            self.transfer_input(now, t, crate::transfer::Input::StreamReset);
            self.pump(now);
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
                        self.map_listener(listener, local);
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
                    Some(local) => self.wait_inbound(now, Inbound::Driver(conn), local, remote),
                    None => self.out.push_back(Output::Close { conn }),
                }
            }
            Input::DhtValue { key, value } => self.on_dht_value(now, key, value),
            Input::DhtPutDone { key, ok } => {
                if !ok && key == signal::devices_key(&self.config.device.account()) {
                    // Nobody can find us until the announcement is stored: try again soon.
                    self.timers.set(NodeTimer::Announce, now + ANNOUNCE_RETRY);
                } else if !ok {
                    self.answer_put_failed(now, key);
                }
            }
            Input::File(result) => self.on_file(now, result)?,
            Input::PortMapped { listener, mapping } => self.on_port_mapped(listener, mapping),
            Input::PortMappingLost { listener, .. } => self.on_port_mapping_lost(listener),
            Input::PortsUnmapped => self.ports_unmapped(),
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
        self.run_timers(now);
        self.transfers.handle_timeout(now);
        self.sends.handle_timeout(now);
        self.intakes.handle_timeout(now);
        self.pump(now);
        self.after_pump(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.next(),
            self.relays.poll_timeout(),
            self.transfers.poll_timeout(),
            self.sends.poll_timeout(),
            self.intakes.poll_timeout(),
        ]
        .into_iter()
        .chain(self.connectors.values().map(Connector::clock_timeout))
        .flatten()
        .min()
    }
}
