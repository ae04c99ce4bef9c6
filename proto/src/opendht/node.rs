//! The OpenDHT node: routing tables, storage for others, our searches, on datagrams.
//!
//! The house verbs, as every machine of `proto`: a driver feeds [`Node::handle_input`]
//! every datagram that reached our UDP socket (with its source), calls
//! [`Node::handle_timeout`] at [`Node::poll_timeout`], and sends every [`Datagram`] that
//! [`Node::poll_output`] gives to its destination; [`Node::poll_event`] gives what our
//! gets, puts and listens found. The application starts those with [`Node::get`],
//! [`Node::put`] and [`Node::listen`], and joins a network with [`Node::bootstrap`] (an
//! address: resolving names is the driver's business).
//!
//! What others ask of us is answered in `incoming.rs`, their answers to us are read in
//! `replies.rs`; what we ask of them is tracked here in one table of requests, each resent
//! after `MAX_RESPONSE_TIME` up to `MAX_ATTEMPT_COUNT` times (`NetworkEngine::requestStep`).
//! Everything dropped is counted in [`Dropped`].

use core::net::{IpAddr, SocketAddr};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::InfoHash;
use super::constants::{MAX_ATTEMPT_COUNT, MAX_RESPONSE_TIME, TOKEN_ROTATION};
use super::message::{Encoder, Kind, Message, NodeInfo, Tid, Want};
use super::parts::{Outcome, Reassembly};
use super::routing::{Insert, RoutingTable};
use super::search::{Op, Search, SearchId};

use super::storage::Storage;
use super::value::Value;
use crate::rng::SeededRng;

/// A datagram in or out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The source (in) or the destination (out).
    pub addr: SocketAddr,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What our searches found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Values under `key` not given before (a get's, or pushed to a listen).
    Values {
        /// The search.
        search: SearchId,
        /// Its key.
        key: InfoHash,
        /// The new values.
        values: Vec<Value>,
    },
    /// A get's lookup is over (every close node answered or failed).
    GetDone {
        /// The search.
        search: SearchId,
        /// Nodes that answered.
        answered: usize,
    },
    /// A put round is over: how many nodes confirmed storing the value.
    Stored {
        /// The search.
        search: SearchId,
        /// Nodes that confirmed.
        nodes: usize,
    },
}

/// Counters of everything dropped, by reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Not a message (msgpack, a field's type or length).
    pub malformed: u64,
    /// A message of a kind OpenDHT does not send.
    pub unknown_kind: u64,
    /// Of another network id.
    pub wrong_network: u64,
    /// Without a sender id, or with ours.
    pub bad_sender: u64,
    /// A reply or error to no request of ours.
    pub unexpected_reply: u64,
    /// Requests over the per-address or global rate.
    pub rate_limited: u64,
    /// Puts, listens and refreshes with a token that is not ours.
    pub bad_token: u64,
    /// Values not stored (size, key, store or address quota).
    pub store_refused: u64,
    /// Elements of `values` that were not values.
    pub bad_values: u64,
    /// Value parts dropped (unknown tid, wrong address, out of order, over budget).
    pub parts: u64,
    /// Messages whose parts did not all come in time.
    pub parts_expired: u64,
    /// Nodes not added: their bucket was full.
    pub table_full: u64,
    /// Our requests never answered.
    pub requests_expired: u64,
    /// Searches refused: `MAX_SEARCHES` running.
    pub searches_refused: u64,
}

/// What one of our requests was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A ping (bootstrap, or a dubious node of the table).
    Ping,
    /// A search's `get`.
    Lookup(SearchId),
    /// A search's `put` or `listen`.
    Store(SearchId),
    /// A search's `refresh` of a value the node holds.
    Refresh(SearchId),
}

/// Counters of what our searches sent (how our values and listens were kept alive).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// `get`s of our lookups.
    pub gets_sent: u64,
    /// `put`s of a whole value.
    pub puts_sent: u64,
    /// `refresh`es of a value a node holds.
    pub refreshes_sent: u64,
    /// `listen`s (first ones and renewals).
    pub listens_sent: u64,
    /// `refresh`es a node answered with an error (it had lost the value: put again).
    pub refreshes_refused: u64,
    /// Changed values pushed to our listens (an id given before, new content).
    pub updates_heard: u64,
    /// `u` messages (refreshed or expired ids) to our listens.
    pub value_updates_heard: u64,
}

#[derive(Debug, Clone)]
pub(super) struct Pending {
    pub(super) to: SocketAddr,
    /// Who we expect to answer (`None` for a bootstrap ping).
    pub(super) id: Option<InfoHash>,
    pub(super) purpose: Purpose,
    pub(super) packets: Vec<Vec<u8>>,
    pub(super) sent: Instant,
    pub(super) attempts: u32,
}

/// How a node is set up.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Our node id.
    pub id: InfoHash,
    /// The network id (0: OpenDHT's public network).
    pub network: u32,
    /// Which families to ask nodes of (the families our sockets have).
    pub want: Want,
    /// Seeds transaction ids, socket ids, value ids and token secrets.
    pub seed: u64,
}

/// An OpenDHT node.
pub struct Node {
    pub(super) enc: Encoder,
    pub(super) want: Want,
    pub(super) rng: SeededRng,
    pub(super) table4: RoutingTable,
    pub(super) table6: RoutingTable,
    pub(super) storage: Storage,
    pub(super) parts: Reassembly,
    pub(super) requests: BTreeMap<Tid, Pending>,
    pub(super) searches: BTreeMap<SearchId, Search>,
    /// A listen's socket id → its search.
    pub(super) sockets: BTreeMap<Tid, SearchId>,
    pub(super) secret: [u8; 8],
    pub(super) old_secret: [u8; 8],
    pub(super) next_rotation: Option<Instant>,
    pub(super) next_maintenance: Option<Instant>,
    pub(super) limiter: super::incoming::RateLimiter,
    pub(super) out: VecDeque<Datagram>,
    pub(super) events: VecDeque<Event>,
    pub(super) dropped: Dropped,
    pub(super) counters: Sent,
    pub(super) reach: super::reach::Reach,
    pub(super) next_search: u64,
}

/// How often the routing tables are checked for dubious nodes to ping.
const MAINTENANCE_PERIOD: Duration = Duration::from_secs(60);

impl Node {
    /// A node with no known peer.
    pub fn new(config: Config) -> Node {
        let mut rng = SeededRng::new(config.seed);
        let secret = rng.next_u64().to_be_bytes();
        Node {
            enc: Encoder {
                id: config.id,
                network: config.network,
            },
            want: config.want,
            table4: RoutingTable::new(config.id),
            table6: RoutingTable::new(config.id),
            storage: Storage::new(),
            parts: Reassembly::new(),
            requests: BTreeMap::new(),
            searches: BTreeMap::new(),
            sockets: BTreeMap::new(),
            secret,
            old_secret: secret,
            next_rotation: None,
            next_maintenance: None,
            limiter: super::incoming::RateLimiter::default(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            dropped: Dropped::default(),
            counters: Sent::default(),
            reach: super::reach::Reach::default(),
            next_search: 0,
            rng,
        }
    }

    // ---- getters ----

    /// Our id.
    pub fn id(&self) -> InfoHash {
        self.enc.id
    }

    /// The routing table of `addr`'s family.
    pub fn table(&self, ipv6: bool) -> &RoutingTable {
        if ipv6 { &self.table6 } else { &self.table4 }
    }

    /// What we store for others.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// What was dropped, by reason.
    pub fn dropped(&self) -> &Dropped {
        &self.dropped
    }

    /// What the network told us about ourselves: our public address, strangers reaching us.
    pub fn reach(&self) -> &super::reach::Reach {
        &self.reach
    }

    /// What our searches sent and heard.
    pub fn sent(&self) -> &Sent {
        &self.counters
    }

    /// Our requests in flight.
    pub fn requests_in_flight(&self) -> usize {
        self.requests.len()
    }

    // ---- application calls ----

    /// Joins through the node at `addr`: pings it; its answer brings its id, and a lookup
    /// of our own id fills the table.
    pub fn bootstrap(&mut self, now: Instant, addr: SocketAddr) {
        let tid = self.new_tid();
        let ping = self.enc.ping(tid);
        self.send_request(now, tid, addr, None, Purpose::Ping, vec![ping]);
    }

    /// Gets the values under `key`: [`Event::Values`] as they come, then
    /// [`Event::GetDone`].
    pub fn get(&mut self, now: Instant, key: InfoHash) -> Option<SearchId> {
        self.start_search(now, key, Op::Get)
    }

    /// Puts `value` under `key` on the closest nodes, and again before it expires, until
    /// [`Node::cancel`]. [`Event::Stored`] after each round.
    pub fn put(&mut self, now: Instant, key: InfoHash, value: Value) -> Option<SearchId> {
        self.start_search(now, key, Op::Put(value))
    }

    /// Listens for values under `key`: [`Event::Values`] for those there and each new one,
    /// the listen renewed before it expires, until [`Node::cancel`].
    pub fn listen(&mut self, now: Instant, key: InfoHash) -> Option<SearchId> {
        self.start_search(now, key, Op::Listen)
    }

    /// Stops a search (a put is no longer re-announced, a listen no longer renewed).
    pub fn cancel(&mut self, search: SearchId) {
        self.searches.remove(&search);
        self.sockets.retain(|_, s| *s != search);
    }

    /// A fresh value id (`Value::id` is random in OpenDHT).
    pub fn value_id(&mut self) -> u64 {
        self.rng.next_u64()
    }

    // ---- the house verbs ----

    /// A datagram from `from`.
    pub fn handle_input(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let m = match Message::decode(data) {
            Ok(m) => m,
            Err(super::message::MessageError::Unknown) => {
                self.dropped.unknown_kind += 1;
                return;
            }
            Err(_) => {
                self.dropped.malformed += 1;
                return;
            }
        };
        if m.network != self.enc.network {
            self.dropped.wrong_network += 1;
            return;
        }
        self.dropped.bad_values += m.bad_values as u64;
        let Some(kind) = m.kind else { return };
        if kind == Kind::ValueData {
            match self.parts.part(now, from, &m) {
                Outcome::Complete(done) => self.process(now, from, *done),
                Outcome::Held | Outcome::Appended => {}
                Outcome::Dropped(_) => self.dropped.parts += 1,
            }
            return;
        }
        if kind != Kind::Error && m.id.is_none_or(|id| id == self.enc.id || id.is_zero()) {
            self.dropped.bad_sender += 1;
            return;
        }
        if !m.value_headers.is_empty() {
            if let Outcome::Dropped(_) = self.parts.start(now, from, m) {
                self.dropped.parts += 1;
            }
            return;
        }
        self.process(now, from, m);
    }

    fn process(&mut self, now: Instant, from: SocketAddr, m: Message) {
        match m.kind {
            Some(Kind::Reply | Kind::Error) => self.on_reply(now, from, m),
            Some(Kind::ValueUpdate) => self.on_update(m),
            Some(_) => self.on_request(now, from, m),
            None => {}
        }
    }

    /// Time passed: resends, expiries, re-announces, renewals, table maintenance.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_rotation.is_none_or(|t| now >= t) {
            if self.next_rotation.is_some() {
                self.old_secret = self.secret;
                self.secret = self.rng.next_u64().to_be_bytes();
            }
            self.next_rotation = Some(now + TOKEN_ROTATION);
        }
        if self.next_maintenance.is_none_or(|t| now >= t) {
            self.next_maintenance = Some(now + MAINTENANCE_PERIOD);
            let mut dubious = self.table4.maintain(now);
            dubious.extend(self.table6.maintain(now));
            for n in dubious {
                if !self.requests.values().any(|p| p.id == Some(n.id)) {
                    let tid = self.new_tid();
                    let ping = self.enc.ping(tid);
                    self.send_request(now, tid, n.addr, Some(n.id), Purpose::Ping, vec![ping]);
                }
            }
        }
        for (key, vid) in self.storage.expire(now) {
            self.tell_listeners_update(key, "exp", vid);
        }
        self.dropped.parts_expired += self.parts.expire(now) as u64;
        let due: Vec<Tid> = self
            .requests
            .iter()
            .filter(|(_, p)| now >= p.sent + MAX_RESPONSE_TIME)
            .map(|(t, _)| *t)
            .collect();
        for tid in due {
            let Some(p) = self.requests.get_mut(&tid) else {
                continue;
            };
            if p.attempts < MAX_ATTEMPT_COUNT {
                p.attempts += 1;
                p.sent = now;
                for data in p.packets.clone() {
                    self.out.push_back(Datagram { addr: p.to, data });
                }
                continue;
            }
            if let Some(p) = self.requests.remove(&tid) {
                self.expired(now, p);
            }
        }
        self.due_rounds(now);
    }

    /// The next datagram to send.
    pub fn poll_output(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let resend = self
            .requests
            .values()
            .map(|p| p.sent + MAX_RESPONSE_TIME)
            .min();
        [
            resend,
            self.next_round(),
            self.storage.next_expiry(),
            self.parts.next_timeout(),
            self.next_rotation,
            self.next_maintenance,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- internals ----

    pub(super) fn new_tid(&mut self) -> Tid {
        loop {
            let tid = self.rng.next_u32();
            if !self.requests.contains_key(&tid) && !self.sockets.contains_key(&tid) {
                return tid;
            }
        }
    }

    pub(super) fn table_mut(&mut self, addr: &SocketAddr) -> &mut RoutingTable {
        if addr.is_ipv6() {
            &mut self.table6
        } else {
            &mut self.table4
        }
    }

    pub(super) fn heard(&mut self, now: Instant, id: InfoHash, addr: SocketAddr, replied: bool) {
        if let Insert::Full(ping) = self.table_mut(&addr).heard(now, id, addr, replied) {
            self.dropped.table_full += 1;
            if let Some(to) = ping {
                if !self.requests.values().any(|p| p.to == to) {
                    let tid = self.new_tid();
                    let data = self.enc.ping(tid);
                    self.send_request(now, tid, to, None, Purpose::Ping, vec![data]);
                }
            }
        }
    }

    /// The closest nodes we know to `key`, of the families we want.
    pub(super) fn closest(&self, now: Instant, key: &InfoHash, count: usize) -> Vec<NodeInfo> {
        let mut all = self.table4.closest(now, key, count);
        all.extend(self.table6.closest(now, key, count));
        all.sort_by_key(|n| n.id.xor(key));
        all.truncate(count);
        all
    }

    pub(super) fn send_request(
        &mut self,
        now: Instant,
        tid: Tid,
        to: SocketAddr,
        id: Option<InfoHash>,
        purpose: Purpose,
        packets: Vec<Vec<u8>>,
    ) {
        self.reach.contacted(to);
        for data in &packets {
            self.out.push_back(Datagram {
                addr: to,
                data: data.clone(),
            });
        }
        let pending = Pending {
            to,
            id,
            purpose,
            packets,
            sent: now,
            attempts: 1,
        };
        self.requests.insert(tid, pending);
    }

    /// Whether `addr` is the address the requester has (used by tokens).
    pub(super) fn ip_bytes(addr: &SocketAddr) -> Vec<u8> {
        match addr.ip() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        }
    }
}
