//! One remote device (Jami's `ClientConnector`): the stages from a sealed request on the DHT
//! to a multiplexed TLS connection, each with its deadline and a reason when it fails.
//!
//! ```text
//! requester (ICE controlled, TLS server)         answerer (ICE controlling, TLS client)
//!   Gathering ─ request on the DHT (retried) ──▶   Gathering
//!   WaitAnswer ◀──────────── answer on the DHT ───  permits the requester on its relay
//!   Ice ◀───────────── checks, nomination ──────▶ Ice
//!   Tls ◀──────────── TLS 1.3, pinned ──────────▶ Tls
//!   Ready: a channel multiplexer over TLS          Ready
//! ```
//!
//! A [`Connector`] owns the ICE agent, the TLS session and the channel multiplexer of one
//! device and moves bytes between them itself. What needs the node's other children (a name
//! for a new connection, a relay, the DHT, the transfers) comes out as an [`Output`]; the
//! node takes every output right after the call that queued it, before anything else
//! happens, so a connector's effects keep the order in which it made them.
//!
//! Its methods come in the house's four groups: getters; `handle_*` (what the network and
//! the node's other children tell it); the node's calls (approve, fail, channels, links);
//! `poll_*` (its agent, its TLS session and its multiplexer, drained in that order by the
//! node's pump, then [`poll_output`](Connector::poll_output) after every call).
//!
//! This file holds the connector's state and its small methods; the work is in
//! [`exchange`] (the request, the permissions and the answer on the DHT, and their timers)
//! and [`session`] (the selected path: agent → TLS → channels, and send credit).

mod exchange;
mod session;

use core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::NodeConfig;
use crate::Error;
use crate::channel::{Mux, MuxEvent};
use crate::ice::{self, Agent, Candidate, Description};
use crate::io::{ConnId, DhtKey};
use crate::rng::SeededRng;
use crate::signal::{PeerConnection, Recipient};
use crate::tls::{AccountId, DeviceId, PeerIdentity, TlsSession};
use crate::transfer::TransferId;

/// Agent-side names of streams relayed in through our allocation start here, clear of the
/// driver's accepted connections.
const RELAY_IN_BASE: u32 = 0x8000_0000;

/// Where a connector stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Answerer: the application decides whether to answer this device.
    WaitApproval,
    /// Waiting for the node's candidates.
    Gathering,
    /// Requester: the request is on the DHT.
    WaitAnswer,
    /// ICE checks.
    Ice,
    /// The TLS handshake on the selected pair.
    Tls,
    /// Channels can be opened.
    Ready,
    /// Over; the reason went to everything that waited.
    Failed,
}

/// How an agent's connection reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Link {
    /// A driver connection, by the node's name for it.
    Direct(ConnId),
    /// A stream relayed in through one of our TURN allocations.
    Relay { slot: usize, turn_conn: ConnId },
}

/// A connector's timers. The node keeps them in its own table (as
/// [`NodeTimer::Connector`](super::timers::NodeTimer::Connector)): the connector asks with
/// [`Output::Arm`] and [`Output::Disarm`], and hears them through
/// [`handle_timer`](Connector::handle_timer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// Requester: put the request again.
    Retry,
    /// Requester: no answer came.
    Answer,
    /// The TLS handshake took too long.
    Tls,
}

impl Timer {
    /// Every timer, for disarming them all.
    pub(super) const ALL: [Timer; 3] = [Timer::Retry, Timer::Answer, Timer::Tls];
}

/// What a connector asks of the node.
#[derive(Debug)]
pub(super) enum Output {
    /// Put a value on the DHT.
    Put { key: DhtKey, value: Bytes },
    /// Listen again to our own key: the DHT delivers what it stores there again, an answer
    /// whose delivery it lost included.
    Relisten,
    /// Permit these addresses on every relay: the peer may come in through them.
    Permit(Vec<IpAddr>),
    /// The agent exists now and goes by this ufrag: connections whose checks name it
    /// belong here.
    AgentReady(String),
    /// The agent opens a connection: the node names it, tells the connector
    /// ([`Connector::link`]) and asks the driver.
    Connect {
        conn: ConnId,
        remote: SocketAddr,
        local_ip: IpAddr,
        /// Through our TURN allocation at `local_ip` (RFC 6062 Connect).
        relayed: bool,
        timeout: Duration,
    },
    /// Bytes to write on a link.
    Send { link: Link, data: Bytes },
    /// The agent is done with a link.
    Close(Link),
    /// Stop (`true`) or start again (`false`) reading a link: the agent holds early data.
    PauseReading(Link, bool),
    /// TLS is up: channels can be opened.
    Ready,
    /// Something happened on a channel.
    Channel(MuxEvent),
    /// Arm (or re-arm) one of the connector's timers.
    Arm(Timer, Instant),
    /// Disarm one of the connector's timers.
    Disarm(Timer),
    /// The connector cannot go on: the node fails it ([`Connector::fail`]) for this reason
    /// and tells everything that waited on it.
    Fail(String),
    /// The peer ended TLS while no channel was in use (its side went idle): the node ends
    /// the connector without a failure, and what still waits for the device goes on a new
    /// connection.
    Ended,
}

/// What the node lends a connector that makes its agent or seals a message.
pub(super) struct Env<'a> {
    /// The node's configuration: our device, ICE settings.
    pub(super) config: &'a NodeConfig,
    /// The node's random numbers (agent seeds, sealing).
    pub(super) rng: &'a mut SeededRng,
    /// Our candidates.
    pub(super) candidates: Vec<Candidate>,
    /// Our public addresses, as TURN servers saw us (a request carries them).
    pub(super) public: Vec<SocketAddr>,
    /// Our relayed addresses (an answer carries them).
    pub(super) relayed: Vec<SocketAddr>,
}

/// One remote device: see the module docs.
pub(super) struct Connector {
    account: AccountId,
    device: DeviceId,
    requester: bool,
    request_id: u64,
    recipient: Recipient,
    stage: Stage,
    agent: Option<Agent>,
    /// The request, for an answerer (its description and addresses).
    request: Option<PeerConnection>,
    /// The sealed request, to put again.
    sealed: Option<Bytes>,
    /// Answerer: the sealed answer, to put again when the request comes again.
    sealed_answer: Option<Bytes>,
    /// Answerer: the local user refused this device; its retries are not asked again.
    denied: bool,
    /// Addresses the peer is known by, to permit on our relays.
    peer_ips: Vec<IpAddr>,
    links: BTreeMap<ConnId, Link>,
    next_relay_in: u32,
    selected: Option<ConnId>,
    /// The kinds of the selected pair's candidates, once selected.
    path: Option<ice::SelectedPath>,
    /// Our candidate's address in the selected pair (a mapped path is named from it).
    selected_local: Option<core::net::SocketAddr>,
    tls: Option<TlsSession>,
    mux: Option<Mux>,
    /// Bytes written to the selected link, and acknowledged by it.
    wire_sent: u64,
    wire_acked: u64,
    /// Transfers' bytes in flight: (wire position they end at, transfer, their length).
    credits: VecDeque<(u64, TransferId, usize)>,
    out: VecDeque<Output>,
}

impl Connector {
    fn new(
        account: AccountId,
        device: DeviceId,
        recipient: Recipient,
        requester: bool,
        request_id: u64,
    ) -> Connector {
        Connector {
            account,
            device,
            requester,
            request_id,
            recipient,
            stage: Stage::Gathering,
            agent: None,
            request: None,
            sealed: None,
            sealed_answer: None,
            denied: false,
            peer_ips: Vec::new(),
            links: BTreeMap::new(),
            next_relay_in: 0,
            selected: None,
            path: None,
            selected_local: None,
            tls: None,
            mux: None,
            wire_sent: 0,
            wire_acked: 0,
            credits: VecDeque::new(),
            out: VecDeque::new(),
        }
    }

    /// A connector asking `device` to connect, with request id `request_id`.
    pub(super) fn requester(
        account: AccountId,
        device: DeviceId,
        recipient: Recipient,
        request_id: u64,
    ) -> Connector {
        Connector::new(account, device, recipient, true, request_id)
    }

    /// A connector answering `request` from `device`.
    pub(super) fn answerer(
        account: AccountId,
        device: DeviceId,
        recipient: Recipient,
        request: PeerConnection,
    ) -> Connector {
        let mut c = Connector::new(account, device, recipient, false, request.id);
        c.peer_ips = peer_ips(&request);
        c.request = Some(request);
        c
    }

    // ----- getters -----

    /// The remote device.
    pub(super) fn device(&self) -> DeviceId {
        self.device
    }

    /// Who is at the other end.
    pub(super) fn peer(&self) -> PeerIdentity {
        PeerIdentity {
            account: self.account,
            device: self.device,
        }
    }

    /// Where it stands.
    pub(super) fn stage(&self) -> Stage {
        self.stage
    }

    /// Whether we asked (rather than answered).
    pub(super) fn is_requester(&self) -> bool {
        self.requester
    }

    /// Whether this is our request `id` to `device`.
    pub(super) fn asked(&self, device: DeviceId, id: u64) -> bool {
        self.requester && self.device == device && self.request_id == id
    }

    /// Whether this answers request `id` from `device`.
    pub(super) fn answers(&self, device: DeviceId, id: u64) -> bool {
        !self.requester && self.device == device && self.request_id == id
    }

    /// Whether the local user refused this device.
    pub(super) fn is_denied(&self) -> bool {
        self.denied
    }

    /// Answerer: the sealed answer, once put.
    pub(super) fn sealed_answer(&self) -> Option<Bytes> {
        self.sealed_answer.clone()
    }

    /// Our agent's ufrag (empty before there is an agent).
    fn ufrag(&self) -> String {
        self.agent
            .as_ref()
            .map(|a| a.local_description().ufrag)
            .unwrap_or_default()
    }

    /// Whether the connection is ready and no channel is known on it (none requested,
    /// offered or open).
    pub(super) fn is_idle(&self) -> bool {
        self.stage == Stage::Ready && self.mux.as_ref().is_some_and(|m| m.channels() == 0)
    }

    /// Who to put a new request to, for a new connector to this device.
    pub(super) fn recipient(&self) -> Recipient {
        self.recipient
    }

    /// The path ICE selected, once it did.
    pub(super) fn path(&self) -> Option<ice::SelectedPath> {
        self.path
    }

    /// Our candidate's address in the selected pair, once selected.
    pub(super) fn selected_local(&self) -> Option<core::net::SocketAddr> {
        self.selected_local
    }

    /// The link of the selected pair.
    pub(super) fn selected_link(&self) -> Option<Link> {
        self.links.get(&self.selected?).copied()
    }

    /// The agent's names for the streams relayed in through TURN client `slot`.
    pub(super) fn relayed_through(&self, slot: usize) -> Vec<ConnId> {
        self.links
            .iter()
            .filter(|(_, l)| matches!(l, Link::Relay { slot: s, .. } if *s == slot))
            .map(|(conn, _)| *conn)
            .collect()
    }

    /// Whether the agent still waits for (or holds) its connection `conn`.
    pub(super) fn agent_has(&self, conn: ConnId) -> bool {
        self.agent.as_ref().is_some_and(|a| a.has_conn(conn))
    }

    /// The agent's name for the connection on `link`.
    pub(super) fn agent_conn(&self, link: Link) -> Option<ConnId> {
        self.links
            .iter()
            .find(|(_, l)| **l == link)
            .map(|(conn, _)| *conn)
    }

    /// When the clocks of the connector's own machines (its ICE agent, its multiplexer)
    /// next need to run.
    pub(super) fn clock_timeout(&self) -> Option<Instant> {
        let agent = self.agent.as_ref().and_then(Agent::poll_timeout);
        let mux = self.mux.as_ref().and_then(Mux::poll_timeout);
        agent.into_iter().chain(mux).min()
    }

    /// Why [`clock_timeout`](Self::clock_timeout) chose its deadline: the agent's reason
    /// (see [`Agent::timeout_reason`]) or `"channel answer"` (a channel we asked for).
    pub(super) fn clock_timeout_reason(&self) -> Option<&'static str> {
        let agent = self.agent.as_ref().and_then(Agent::poll_timeout);
        let mux = self.mux.as_ref().and_then(Mux::poll_timeout);
        match (agent, mux) {
            (_, Some(m)) if agent.is_none_or(|a| m < a) => Some("channel answer"),
            _ => self.agent.as_ref().and_then(Agent::timeout_reason),
        }
    }

    // ----- handle_* -----

    /// Feeds the agent (if there is one yet).
    pub(super) fn handle_agent_input(
        &mut self,
        now: Instant,
        input: ice::Input,
    ) -> Result<(), Error> {
        match self.agent.as_mut() {
            Some(agent) => agent.handle_input(now, input),
            None => Ok(()),
        }
    }

    /// Runs the clocks of the agent and the multiplexer, in that order.
    pub(super) fn handle_clock_timeout(&mut self, now: Instant) {
        if let Some(agent) = self.agent.as_mut() {
            agent.handle_timeout(now);
        }
        if let Some(mux) = self.mux.as_mut() {
            mux.handle_timeout(now);
        }
    }

    // ----- the node's calls -----

    /// Answerer: the application asks first; until then the connector waits.
    pub(super) fn wait_approval(&mut self) {
        self.stage = Stage::WaitApproval;
    }

    /// The application lets a waiting device go on. `false` if it was not waiting.
    pub(super) fn approve(&mut self) -> bool {
        if self.stage != Stage::WaitApproval {
            return false;
        }
        self.stage = Stage::Gathering;
        true
    }

    /// The application refuses a waiting device (the node then fails the connector).
    /// `false` if it was not waiting.
    pub(super) fn deny(&mut self) -> bool {
        if self.stage != Stage::WaitApproval {
            return false;
        }
        self.denied = true;
        true
    }

    /// Records the node's name for a connection the agent asked for.
    pub(super) fn link(&mut self, conn: ConnId, link: Link) {
        self.links.insert(conn, link);
    }

    /// Takes a stream that came in on `link` and named our agent: returns the agent's name
    /// for it (a driver connection keeps its name; a relayed stream gets one here).
    pub(super) fn adopt(&mut self, link: Link) -> ConnId {
        let conn = match link {
            Link::Direct(conn) => conn,
            Link::Relay { .. } => {
                let conn = ConnId::Accepted(RELAY_IN_BASE + self.next_relay_in);
                self.next_relay_in += 1;
                conn
            }
        };
        self.links.insert(conn, link);
        conn
    }

    /// Asks the peer for consent now, failing the connector unless it answers `within`.
    pub(super) fn check_liveness(&mut self, now: Instant, within: Duration) {
        if self.stage != Stage::Ready {
            return;
        }
        if let Some(agent) = self.agent.as_mut() {
            agent.check_consent_now(now, within);
        }
    }

    /// The requester asked again: it has not heard our answer, so our ICE deadline counts
    /// from now (see [`Agent::restart_deadline`](crate::ice::Agent::restart_deadline)).
    pub(super) fn requester_asks_again(&mut self, now: Instant) {
        if self.requester || self.stage != Stage::Ice {
            return;
        }
        if let Some(agent) = self.agent.as_mut() {
            agent.restart_deadline(now);
        }
    }

    /// Ends TLS with close_notify (the node is shutting down).
    pub(super) fn close_tls(&mut self, now: Instant) {
        if let Some(tls) = self.tls.as_mut() {
            tls.close(now);
        }
    }

    /// Stops everything: the agent closes its connections, TLS and channels are dropped
    /// (the node disarms the connector's timers). `None` if it had failed already, else
    /// whether it was ready (transfers ran on it).
    pub(super) fn fail(&mut self) -> Option<bool> {
        if self.stage == Stage::Failed {
            return None;
        }
        self.stage = Stage::Failed;
        let was_ready = self.mux.is_some();
        self.mux = None;
        self.tls = None;
        if let Some(agent) = self.agent.as_mut() {
            agent.close();
        }
        Some(was_ready)
    }

    // ----- poll_* -----

    /// The next thing for the node to do.
    pub(super) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }
}

/// Every IP a peer's message names: its candidates and its public or relay addresses.
fn peer_ips(msg: &PeerConnection) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = msg.addresses.iter().map(|a| a.ip()).collect();
    if let Ok(parsed) = Description::parse(&msg.ice) {
        ips.extend(parsed.description.candidates.iter().map(|c| c.addr.ip()));
    }
    ips.sort();
    ips.dedup();
    ips
}
