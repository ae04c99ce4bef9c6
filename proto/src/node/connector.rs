//! One remote device (Jami's `ClientConnector`): the stages from a sealed request on the DHT
//! to a multiplexed TLS connection, each with its deadline and a reason when it fails.
//!
//! ```text
//! requester (ICE controlled, TLS server)         answerer (ICE controlling, TLS client)
//!   Gathering ─ request on the DHT (retried) ──▶   Gathering
//!   WaitAnswer                                     permits the requester on its relay
//!                                                  WaitPermission ─ answer on the DHT
//!   Ice ◀───────────── checks, nomination ──────▶ Ice
//!   Tls ◀──────────── TLS 1.3, pinned ──────────▶ Tls
//!   Ready: a channel multiplexer over TLS          Ready
//! ```
//!
//! The connector's state lives here; the work that needs the node's other children (TURN
//! permissions, connection names, transfers) is done by [`Node`](super::Node) methods below.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{ANSWER_TIMEOUT, Node, PERMISSION_WAIT, REQUEST_RETRY, Route, TLS_TIMEOUT, TransferId};
use crate::channel::{ChannelId, Mux, Side};
use crate::ice::{self, Agent, Description, Role};
use crate::io::{ConnId, Output};
use crate::signal::{self, PeerConnection, Recipient};
use crate::timer::Timers;
use crate::tls::{self, AccountId, DeviceId, Pin, TlsInput, TlsOutput, TlsSession};
use crate::transfer;

/// Where a connector stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Answerer: the application decides whether to answer this device.
    WaitApproval,
    /// Waiting for the node's candidates.
    Gathering,
    /// Requester: the request is on the DHT.
    WaitAnswer,
    /// Answerer: the relay is installing the requester's permissions.
    WaitPermission,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    /// A driver connection, by the node's name for it.
    Direct(ConnId),
    /// A stream relayed in through one of our TURN allocations.
    Relay { slot: usize, turn_conn: ConnId },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// Requester: put the request again.
    Retry,
    /// Requester: no answer came.
    Answer,
    /// Answerer: stop waiting for permissions.
    Permission,
    /// The TLS handshake took too long.
    Tls,
}

pub(super) struct Connector {
    pub(super) account: AccountId,
    pub(super) device: DeviceId,
    pub(super) requester: bool,
    pub(super) request_id: u64,
    recipient: Recipient,
    pub(super) stage: Stage,
    pub(super) agent: Option<Agent>,
    /// The request, for an answerer (its description and addresses).
    request: Option<PeerConnection>,
    /// The sealed request, to put again.
    sealed: Option<Bytes>,
    /// Answerer: the sealed answer, to put again when the request comes again.
    pub(super) sealed_answer: Option<Bytes>,
    /// Answerer: the local user refused this device; its retries are not asked again.
    pub(super) denied: bool,
    /// Addresses the peer is known by, to permit on our relays.
    peer_ips: Vec<IpAddr>,
    pub(super) links: BTreeMap<ConnId, Link>,
    pub(super) next_relay_in: u32,
    selected: Option<ConnId>,
    pub(super) tls: Option<TlsSession>,
    pub(super) mux: Option<Mux>,
    pub(super) timers: Timers<Timer>,
    /// Once failed: when the node forgets it (it stays a while to answer retried requests).
    pub(super) forget_at: Option<Instant>,
    /// Bytes written to the selected link, and acknowledged by it.
    wire_sent: u64,
    wire_acked: u64,
    /// Transfers' bytes in flight: (wire position they end at, transfer, their length).
    credits: VecDeque<(u64, TransferId, usize)>,
}

impl Connector {
    fn new(
        account: AccountId,
        device: DeviceId,
        recipient: Recipient,
        requester: bool,
    ) -> Connector {
        Connector {
            account,
            device,
            requester,
            request_id: 0,
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
            tls: None,
            mux: None,
            timers: Timers::new(),
            forget_at: None,
            wire_sent: 0,
            wire_acked: 0,
            credits: VecDeque::new(),
        }
    }

    /// A connector answering `request` from `device`.
    pub(super) fn answerer(
        account: AccountId,
        device: DeviceId,
        recipient: Recipient,
        request: PeerConnection,
    ) -> Connector {
        let mut c = Connector::new(account, device, recipient, false);
        c.request_id = request.id;
        c.peer_ips = peer_ips(&request);
        c.request = Some(request);
        c
    }

    pub(super) fn selected_link(&self) -> Option<Link> {
        self.links.get(&self.selected?).copied()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        [
            self.timers.next(),
            self.forget_at,
            self.agent.as_ref().and_then(Agent::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
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

impl Node {
    /// The connector to `device`, made (as requester) if there is none.
    pub(super) fn ensure_connector(
        &mut self,
        now: Instant,
        account: AccountId,
        device: DeviceId,
        recipient: Recipient,
    ) -> u32 {
        if let Some(id) = self.by_device.get(&device) {
            return *id;
        }
        let id = self.next_connector;
        self.next_connector += 1;
        let mut c = Connector::new(account, device, recipient, true);
        c.request_id = self.rng.next_u64();
        self.connectors.insert(id, c);
        self.by_device.insert(device, id);
        if self.gathered {
            self.connector_gathered(now, id);
        }
        id
    }

    /// Candidates are known: the requester puts its request, the answerer permits the
    /// requester on its relays.
    pub(super) fn connector_gathered(&mut self, now: Instant, id: u32) {
        let candidates = self.local_candidates();
        let public = self.public_addresses();
        let ice_config = self.config.ice.clone();
        let seed = self.rng.next_u64();
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        if c.stage != Stage::Gathering {
            return;
        }
        if c.requester {
            let agent = Agent::new(now, ice_config, Role::Controlled, candidates, seed);
            let msg = PeerConnection {
                id: c.request_id,
                is_answer: false,
                ice: agent.local_description().to_string(),
                addresses: public,
                seal: Some(self.config.device.seal_public_key()),
            };
            c.agent = Some(agent);
            match signal::seal(
                &self.config.device,
                &c.recipient,
                &msg.encode(),
                &mut self.rng,
            ) {
                Ok(sealed) => {
                    let sealed = Bytes::from(sealed);
                    self.out.push_back(Output::DhtPut {
                        key: signal::peer_key(&c.device),
                        value: sealed.clone(),
                    });
                    c.sealed = Some(sealed);
                    c.stage = Stage::WaitAnswer;
                    c.timers.set(Timer::Retry, now + REQUEST_RETRY);
                    c.timers.set(Timer::Answer, now + ANSWER_TIMEOUT);
                }
                Err(e) => self.connector_failed(id, format!("cannot seal the request: {e}")),
            }
            self.retry_unrouted(now);
        } else {
            c.stage = Stage::WaitPermission;
            c.timers.set(Timer::Permission, now + PERMISSION_WAIT);
            let ips = c.peer_ips.clone();
            let any_relay = self.turns.iter().any(|t| t.allocated.is_some());
            self.permit_everywhere(now, &ips);
            if !any_relay || ips.is_empty() {
                self.connector_answer_now(now, id);
            }
        }
    }

    /// A relay installed permissions: an answerer waiting for them answers.
    pub(super) fn connector_permitted(&mut self, now: Instant, id: u32, ips: &[IpAddr]) {
        let Some(c) = self.connectors.get(&id) else {
            return;
        };
        if c.stage == Stage::WaitPermission && c.peer_ips.iter().any(|ip| ips.contains(ip)) {
            self.connector_answer_now(now, id);
        }
    }

    /// Answerer: starts ICE on the request's description and puts the answer.
    fn connector_answer_now(&mut self, now: Instant, id: u32) {
        let candidates = self.local_candidates();
        let ice_config = self.config.ice.clone();
        let seed = self.rng.next_u64();
        let relays = self.relayed();
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        if c.stage != Stage::WaitPermission {
            return;
        }
        c.timers.clear(Timer::Permission);
        let Some(request) = c.request.take() else {
            return;
        };
        let mut agent = Agent::new(now, ice_config, Role::Controlling, candidates, seed);
        let remote = match Description::parse(&request.ice) {
            Ok(parsed) => parsed.description,
            Err(e) => {
                return self
                    .connector_failed(id, format!("signalling: unusable ICE description ({e})"));
            }
        };
        let answer = PeerConnection {
            id: request.id,
            is_answer: true,
            ice: agent.local_description().to_string(),
            addresses: relays,
            seal: None,
        };
        if let Err(e) = agent.set_remote_description(now, remote) {
            return self.connector_failed(id, format!("ICE: {e}"));
        }
        c.agent = Some(agent);
        c.stage = Stage::Ice;
        match signal::seal(
            &self.config.device,
            &c.recipient,
            &answer.encode(),
            &mut self.rng,
        ) {
            Ok(sealed) => {
                let sealed = Bytes::from(sealed);
                c.sealed_answer = Some(sealed.clone());
                self.out.push_back(Output::DhtPut {
                    key: signal::peer_key(&c.device),
                    value: sealed,
                });
            }
            Err(e) => self.connector_failed(id, format!("cannot seal the answer: {e}")),
        }
        self.retry_unrouted(now);
    }

    /// Requester: the answer came.
    pub(super) fn connector_answer(&mut self, now: Instant, id: u32, answer: PeerConnection) {
        let ips = peer_ips(&answer);
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        if c.stage != Stage::WaitAnswer {
            self.dropped.replayed += 1;
            return;
        }
        c.timers.clear(Timer::Retry);
        c.timers.clear(Timer::Answer);
        c.peer_ips = ips.clone();
        let remote = match Description::parse(&answer.ice) {
            Ok(parsed) => parsed.description,
            Err(e) => {
                return self
                    .connector_failed(id, format!("signalling: unusable ICE description ({e})"));
            }
        };
        c.stage = Stage::Ice;
        if let Some(agent) = c.agent.as_mut() {
            if let Err(e) = agent.set_remote_description(now, remote) {
                return self.connector_failed(id, format!("ICE: {e}"));
            }
        }
        // The answerer's active candidates may come to our relay too.
        self.permit_everywhere(now, &ips);
    }

    pub(super) fn connector_timeout(&mut self, now: Instant, id: u32) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        if let Some(agent) = c.agent.as_mut() {
            agent.handle_timeout(now);
        }
        while let Some(t) = c.timers.pop_expired(now) {
            match t {
                Timer::Retry => {
                    if let Some(sealed) = c.sealed.clone() {
                        // The same value, the same id: a DHT that dropped it gets it again.
                        self.out.push_back(Output::DhtPut {
                            key: signal::peer_key(&c.device),
                            value: sealed,
                        });
                        c.timers.set(Timer::Retry, now + super::REQUEST_RETRY);
                    }
                }
                Timer::Answer => {
                    return self
                        .connector_failed(id, "signalling: no answer on the DHT".to_owned());
                }
                Timer::Permission => return self.connector_answer_now(now, id),
                Timer::Tls => {
                    return self
                        .connector_failed(id, "TLS: the handshake did not finish".to_owned());
                }
            }
        }
    }

    pub(super) fn agent_input(&mut self, now: Instant, id: u32, input: ice::Input) {
        if let Some(agent) = self.connectors.get_mut(&id).and_then(|c| c.agent.as_mut()) {
            // The agent refuses only inputs it could not have asked for.
            let _ = agent.handle_input(now, input);
        }
    }

    /// Drains one connector's agent, TLS session and multiplexer.
    pub(super) fn drain_connector(&mut self, now: Instant, id: u32) -> bool {
        let mut moved = false;
        loop {
            let Some(out) = self
                .connectors
                .get_mut(&id)
                .and_then(|c| c.agent.as_mut())
                .and_then(Agent::poll_output)
            else {
                break;
            };
            moved = true;
            self.on_agent_output(now, id, out);
        }
        loop {
            let Some(out) = self
                .connectors
                .get_mut(&id)
                .and_then(|c| c.tls.as_mut())
                .and_then(TlsSession::poll_output)
            else {
                break;
            };
            moved = true;
            self.on_tls_output(now, id, out);
        }
        while let Some(c) = self.connectors.get_mut(&id) {
            let Some(mux) = c.mux.as_mut() else { break };
            if let Some(bytes) = mux.poll_transmit() {
                moved = true;
                if let Some(tls) = c.tls.as_mut() {
                    let _ = tls.send(now, &bytes);
                }
                continue;
            }
            let Some(event) = mux.poll_event() else { break };
            moved = true;
            self.on_mux_event(now, id, event);
        }
        moved
    }

    fn on_agent_output(&mut self, now: Instant, id: u32, out: ice::Output) {
        match out {
            ice::Output::Connect {
                conn,
                remote,
                local_ip,
                timeout,
            } => {
                let n = self.new_conn();
                // Connect from the listening port of that address, so a NAT maps it as it
                // maps our passive candidate.
                let local_port = self
                    .listeners
                    .values()
                    .filter_map(|(_, a)| *a)
                    .find(|a| a.ip() == local_ip)
                    .map(|a| a.port());
                self.routes.insert(
                    n,
                    Route::Agent {
                        connector: id,
                        agent_conn: conn,
                    },
                );
                if let Some(c) = self.connectors.get_mut(&id) {
                    c.links.insert(conn, Link::Direct(n));
                }
                self.out.push_back(Output::Connect {
                    conn: n,
                    remote,
                    local_port,
                    timeout,
                });
            }
            ice::Output::Send { conn, data } => {
                let Some(c) = self.connectors.get_mut(&id) else {
                    return;
                };
                if c.selected == Some(conn) {
                    c.wire_sent += data.len() as u64;
                }
                match c.links.get(&conn).copied() {
                    Some(Link::Direct(n)) => self.out.push_back(Output::Send { conn: n, data }),
                    Some(Link::Relay { slot, turn_conn }) => {
                        let _ = self.turns[slot].client.send(turn_conn, data);
                    }
                    None => {}
                }
            }
            ice::Output::Close { conn } => {
                let Some(c) = self.connectors.get_mut(&id) else {
                    return;
                };
                match c.links.remove(&conn) {
                    Some(Link::Direct(n)) => {
                        self.routes.remove(&n);
                        self.out.push_back(Output::Close { conn: n });
                    }
                    Some(Link::Relay { slot, turn_conn }) => {
                        self.turns[slot].client.close_peer(turn_conn)
                    }
                    None => {}
                }
            }
            ice::Output::Data { data, .. } => {
                if let Some(tls) = self.connectors.get_mut(&id).and_then(|c| c.tls.as_mut()) {
                    tls.handle_input(now, TlsInput::Received(data));
                }
            }
            ice::Output::Event(ice::Event::Selected { conn, .. }) => self.start_tls(now, id, conn),
            ice::Output::Event(ice::Event::Failed { reason, pairs }) => {
                let stage = self.connectors.get(&id).map(|c| c.stage);
                let why = if stage == Some(Stage::Ready) || stage == Some(Stage::Tls) {
                    format!("connection lost: {reason}")
                } else {
                    format!("ICE: {reason} after {} pairs failed", pairs.len())
                };
                self.connector_failed(id, why);
            }
            _ => {}
        }
    }

    fn start_tls(&mut self, now: Instant, id: u32, conn: ConnId) {
        let device = self.config.device.clone();
        let revocations = self.config.revocations.clone();
        let anchor = self.config.anchor;
        let key_log = self.config.tls_key_log.clone();
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        c.selected = Some(conn);
        // Roles follow the signalling: the answerer (ICE controlling) is the TLS client.
        let role = if c.requester {
            tls::Role::Server
        } else {
            tls::Role::Client
        };
        let pin = Pin {
            account: c.account,
            device: c.device,
        };
        match TlsSession::with_key_log(role, &device, pin, revocations, anchor, now, key_log) {
            Ok(session) => {
                c.tls = Some(session);
                c.stage = Stage::Tls;
                // The answerer's checks can succeed before its answer reaches the requester,
                // whose side of TLS waits for that answer: give it the answer's time too.
                let wait = if c.requester {
                    TLS_TIMEOUT
                } else {
                    TLS_TIMEOUT + super::ANSWER_TIMEOUT
                };
                c.timers.set(Timer::Tls, now + wait);
            }
            Err(e) => self.connector_failed(id, format!("TLS: {e}")),
        }
    }

    fn on_tls_output(&mut self, now: Instant, id: u32, out: TlsOutput) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        match out {
            TlsOutput::Transmit(bytes) => {
                if let Some(agent) = c.agent.as_mut() {
                    let _ = agent.send(&bytes);
                }
            }
            TlsOutput::Established(_) => {
                c.timers.clear(Timer::Tls);
                c.stage = Stage::Ready;
                c.mux = Some(Mux::new(if c.requester {
                    Side::Server
                } else {
                    Side::Client
                }));
                self.open_pending_channels(now, id);
            }
            TlsOutput::Plaintext(bytes) => {
                let failed = match c.mux.as_mut() {
                    Some(mux) => mux.handle_bytes(&bytes).is_err(),
                    None => false,
                };
                if failed {
                    self.connector_failed(
                        id,
                        "channels: the peer broke the multiplexing".to_owned(),
                    );
                }
            }
            TlsOutput::Closed => {
                // What the peer sent before its close_notify (a CANCEL, say) is delivered
                // before the close fails what still runs on this connection.
                while let Some(event) = self
                    .connectors
                    .get_mut(&id)
                    .and_then(|c| c.mux.as_mut())
                    .and_then(Mux::poll_event)
                {
                    self.on_mux_event(now, id, event);
                }
                self.connector_failed(id, "connection closed by the peer".to_owned())
            }
            TlsOutput::Failed(f) => self.connector_failed(id, format!("TLS: {f}")),
        }
    }

    /// A transfer's bytes go down: channel → TLS → ICE framing → the selected link. The
    /// transfer gets its send credit back once the link has written them all.
    pub(super) fn channel_send(
        &mut self,
        now: Instant,
        id: u32,
        channel: ChannelId,
        tid: TransferId,
        data: Bytes,
    ) {
        let len = data.len();
        let sent = {
            let Some(c) = self.connectors.get_mut(&id) else {
                return;
            };
            let Some(mux) = c.mux.as_mut() else { return };
            if mux.send(channel, &data).is_err() {
                return;
            }
            // Push it all the way down now, so its wire size is known.
            while let Some(unit) = mux.poll_transmit() {
                if let Some(tls) = c.tls.as_mut() {
                    let _ = tls.send(now, &unit);
                }
            }
            c.wire_sent
        };
        let _ = sent;
        self.drain_connector(now, id);
        if let Some(c) = self.connectors.get_mut(&id) {
            c.credits.push_back((c.wire_sent, tid, len));
        }
        self.drain_connector(now, id);
    }

    /// The link wrote `bytes` more: transfers whose bytes are all out get their credit.
    pub(super) fn credit(&mut self, now: Instant, id: u32, link: Link, bytes: usize) {
        let mut ready = Vec::new();
        {
            let Some(c) = self.connectors.get_mut(&id) else {
                return;
            };
            if c.selected_link() != Some(link) {
                return;
            }
            c.wire_acked = (c.wire_acked + bytes as u64).min(c.wire_sent);
            while let Some(&(end, tid, len)) = c.credits.front() {
                if end > c.wire_acked {
                    break;
                }
                c.credits.pop_front();
                ready.push((tid, len));
            }
        }
        for (tid, len) in ready {
            self.transfer_input(now, tid, transfer::Input::Writable(len));
        }
    }
}
