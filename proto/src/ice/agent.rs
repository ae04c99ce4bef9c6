//! The ICE agent: one session between two devices, from the first check to the selected
//! pair and its keepalives. See the [module docs](super) for the sequence and the
//! deviations from the RFCs.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::candidate::{Candidate, CandidateType, TcpType};
use super::check_list::{CheckList, Pair, PairState};
use super::description::Description;
use super::priority::type_preference;
use super::{Config, Event, FailReason, Input, Output, PairFailure, PairReport, Role};
use crate::Error;
use crate::io::ConnId;
use crate::stun::framing::{self, FrameDecoder};
use crate::stun::{
    BINDING, Builder, Class, RoleAttribute, SeededRng, StunError, StunMessage, Transactions,
    looks_like_stun, verify_integrity,
};
use crate::timer::Timers;

/// What the agent dropped, and why: everything a peer or the network sent that it could
/// not use. Dropped input never changes the agent's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dropped {
    /// STUN messages that did not parse, or checks missing PRIORITY or a role attribute.
    pub malformed: u64,
    /// STUN messages whose FINGERPRINT was wrong or missing (on the selected connection such
    /// a frame is taken for application bytes instead, and not counted).
    pub bad_fingerprint: u64,
    /// Checks whose USERNAME did not start with our ufrag.
    pub wrong_ufrag: u64,
    /// Messages whose MESSAGE-INTEGRITY did not match the password (or was missing).
    pub bad_integrity: u64,
    /// Responses to no transaction of ours, or on another connection than the request.
    pub unmatched_response: u64,
    /// Frames that are not STUN on a connection that cannot carry application bytes.
    pub non_stun: u64,
    /// Accepted connections that arrived on no passive candidate of ours.
    pub unmatched_connection: u64,
    /// Accepted connections closed because no valid check came on them in time.
    pub silent_connection: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Checking,
    Selected,
    Failed,
    Closed,
}

/// The agent's timers, one table (see [`crate::timer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The whole negotiation.
    Overall,
    /// The next paced check (Ta).
    Pace,
    /// The controlling agent's wait for better pairs after the first valid one.
    NominationWait,
    /// A pair's connection must open by then (a guard: the driver answers at
    /// `connect_timeout` itself).
    Connect(usize),
    /// An accepted connection's wait for its first valid check.
    Silent(ConnId),
    /// The next consent check on the selected pair.
    Keepalive,
    /// Consent runs out.
    Consent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxKind {
    /// An ordinary or triggered check.
    Check,
    /// The controlling agent's check with USE-CANDIDATE.
    Nominate,
    /// A consent check on the selected pair.
    Consent,
}

#[derive(Debug, Clone)]
struct Transaction {
    conn: ConnId,
    pair: usize,
    kind: TxKind,
    /// The role the request claimed, which a 487 answer reverses.
    role: Role,
}

/// A valid check that arrived on an accepted connection before the remote description.
#[derive(Debug, Clone, Copy)]
struct EarlyCheck {
    priority: u32,
    use_candidate: bool,
}

#[derive(Debug)]
struct Conn {
    remote: SocketAddr,
    /// The local address: known at once for accepted connections, on `Connected` for ours.
    local: Option<SocketAddr>,
    open: bool,
    pair: Option<usize>,
    decoder: FrameDecoder,
    early_check: Option<EarlyCheck>,
    early_data: Vec<Bytes>,
    early_bytes: usize,
}

impl Conn {
    fn new(remote: SocketAddr, local: Option<SocketAddr>, open: bool, pair: Option<usize>) -> Conn {
        Conn {
            remote,
            local,
            open,
            pair,
            decoder: FrameDecoder::new(),
            early_check: None,
            early_data: Vec::new(),
            early_bytes: 0,
        }
    }
}

/// One ICE-TCP session with one peer.
///
/// Methods come in four groups, called by the owner in this order: getters
/// ([`role`](Self::role), [`local_description`](Self::local_description),
/// [`check_list`](Self::check_list), [`selected`](Self::selected),
/// [`dropped`](Self::dropped)); `handle_*` ([`handle_input`](Self::handle_input),
/// [`handle_timeout`](Self::handle_timeout)); application calls
/// ([`set_remote_description`](Self::set_remote_description), [`send`](Self::send),
/// [`close`](Self::close)); `poll_*` ([`poll_output`](Self::poll_output) until `None`,
/// then [`poll_timeout`](Self::poll_timeout)).
#[derive(Debug)]
pub struct Agent {
    config: Config,
    role: Role,
    tie_breaker: u64,
    rng: SeededRng,
    ufrag: String,
    pwd: String,
    local: Vec<Candidate>,
    /// The peer's ufrag and pwd, once its description is known.
    remote_credentials: Option<(String, String)>,
    remote: Vec<Candidate>,
    list: CheckList,
    conns: BTreeMap<ConnId, Conn>,
    transactions: Transactions<Transaction>,
    triggered: VecDeque<usize>,
    next_conn: u32,
    last_check: Option<Instant>,
    /// The controlling agent has seen a valid pair (the nomination wait started).
    any_valid: bool,
    nomination_wait_over: bool,
    nominating: Option<usize>,
    selected: Option<usize>,
    state: State,
    timers: Timers<Timer>,
    out: VecDeque<Output>,
    dropped: Dropped,
}

impl Agent {
    /// Starts a session at `now` with our `local` candidates (gathered by the owner), in
    /// `role`. The ufrag, the password and the tie-breaker come from `seed`, and so do all
    /// transaction ids: the same seed and inputs give the same bytes.
    pub fn new(
        now: Instant,
        config: Config,
        role: Role,
        local: Vec<Candidate>,
        seed: u64,
    ) -> Agent {
        let mut rng = SeededRng::new(seed);
        // Jami's shapes: 8 and 24 hexadecimal characters.
        let ufrag = rng.hex(8);
        let pwd = rng.hex(24);
        let tie_breaker = rng.next_u64();
        let mut timers = Timers::new();
        timers.set(Timer::Overall, now + config.ice_timeout);
        Agent {
            config,
            role,
            tie_breaker,
            rng,
            ufrag,
            pwd,
            local,
            remote_credentials: None,
            remote: Vec::new(),
            list: CheckList::default(),
            conns: BTreeMap::new(),
            transactions: Transactions::new(),
            triggered: VecDeque::new(),
            next_conn: 0,
            last_check: None,
            any_valid: false,
            nomination_wait_over: false,
            nominating: None,
            selected: None,
            state: State::Checking,
            timers,
            out: VecDeque::new(),
            dropped: Dropped::default(),
        }
    }

    /// Replaces the tie-breaker drawn from the seed (tests of role conflicts set both sides').
    pub fn with_tie_breaker(mut self, tie_breaker: u64) -> Agent {
        self.tie_breaker = tie_breaker;
        self
    }

    // ----- getters -----

    /// Our current role (a role conflict may change it).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Our tie-breaker.
    pub fn tie_breaker(&self) -> u64 {
        self.tie_breaker
    }

    /// What to send the peer: our ufrag, password and candidates.
    pub fn local_description(&self) -> Description {
        Description {
            ufrag: self.ufrag.clone(),
            pwd: self.pwd.clone(),
            candidates: self.local.clone(),
        }
    }

    /// The remote candidates, those learned from checks (peer-reflexive) included.
    pub fn remote_candidates(&self) -> &[Candidate] {
        &self.remote
    }

    /// The check list.
    pub fn check_list(&self) -> &CheckList {
        &self.list
    }

    /// The selected pair and its connection.
    pub fn selected(&self) -> Option<(ConnId, &Pair)> {
        let pair = self.list.get(self.selected?)?;
        Some((pair.conn?, pair))
    }

    /// Whether the session ended, without a path or after losing it.
    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// What was dropped so far, by reason.
    pub fn dropped(&self) -> &Dropped {
        &self.dropped
    }

    /// Why [`poll_timeout`](Self::poll_timeout) chose its deadline, for logs and traces:
    /// `"ice timeout"`, `"pacing"`, `"nomination wait"`, `"connect timeout"`,
    /// `"check timeout"`, `"silent connection"`, `"keepalive"` or `"consent"`.
    pub fn timeout_reason(&self) -> Option<&'static str> {
        let timer = self.timers.next_timer();
        if let Some(check) = self.transactions.next_deadline() {
            if timer.is_none_or(|(_, at)| check < at) {
                return Some("check timeout");
            }
        }
        Some(match timer?.0 {
            Timer::Overall => "ice timeout",
            Timer::Pace => "pacing",
            Timer::NominationWait => "nomination wait",
            Timer::Connect(_) => "connect timeout",
            Timer::Silent(_) => "silent connection",
            Timer::Keepalive => "keepalive",
            Timer::Consent => "consent",
        })
    }

    // ----- handle_* -----

    /// Feeds one input. Inputs about connections the agent no longer knows (it closed them,
    /// and the driver had not yet heard) are ignored. An `Err` is a driver mistake.
    pub fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), Error> {
        match input {
            Input::Connected { conn, local } => self.on_connected(now, conn, local),
            Input::ConnectFailed { conn, error } => {
                if let Some(c) = self.conns.remove(&conn) {
                    self.forget_conn(conn);
                    if let Some(idx) = c.pair {
                        self.fail_pair(now, idx, PairFailure::ConnectFailed(error));
                    }
                }
            }
            Input::Accepted {
                conn,
                local,
                remote,
            } => {
                if matches!(conn, ConnId::Connect(_)) {
                    return Err(Error::UnexpectedInput(
                        "accepted connection named by the core",
                    ));
                }
                if self.conns.contains_key(&conn) {
                    return Err(Error::UnexpectedInput(
                        "accepted connection id already in use",
                    ));
                }
                if self.state != State::Checking || self.conns.len() >= self.config.max_connections
                {
                    self.out.push_back(Output::Close { conn });
                    return Ok(());
                }
                self.conns
                    .insert(conn, Conn::new(remote, Some(local), true, None));
                self.timers
                    .set(Timer::Silent(conn), now + self.config.check_timeout);
            }
            Input::Received { conn, data } => {
                let Some(c) = self.conns.get_mut(&conn) else {
                    return Ok(());
                };
                for frame in c.decoder.push(&data) {
                    if !self.conns.contains_key(&conn) {
                        break;
                    }
                    self.on_frame(now, conn, frame);
                }
            }
            Input::Closed { conn } => self.on_conn_lost(now, conn, PairFailure::Closed),
            Input::Reset { conn } => self.on_conn_lost(now, conn, PairFailure::Reset),
        }
        Ok(())
    }

    /// Lets time pass up to `now`; extra calls are harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_expired(now) {
            match timer {
                Timer::Overall => {
                    if self.state == State::Checking {
                        self.fail_session(FailReason::Timeout);
                    }
                }
                Timer::Pace => self.on_pace(now),
                Timer::NominationWait => {
                    self.nomination_wait_over = true;
                    self.maybe_nominate(now);
                }
                Timer::Connect(idx) => {
                    let conn = self.list.get(idx).and_then(|p| p.conn);
                    let waiting = conn.is_some_and(|c| self.conns.get(&c).is_some_and(|c| !c.open));
                    if waiting && self.state == State::Checking {
                        let timed_out = crate::io::ConnectError::TimedOut;
                        self.fail_pair(now, idx, PairFailure::ConnectFailed(timed_out));
                        if let Some(conn) = conn {
                            self.close_conn(conn);
                        }
                    }
                }
                Timer::Silent(conn) => {
                    let idle = self
                        .conns
                        .get(&conn)
                        .is_some_and(|c| c.pair.is_none() && c.early_check.is_none());
                    if idle {
                        self.dropped.silent_connection += 1;
                        self.close_conn(conn);
                    }
                }
                Timer::Keepalive => {
                    if let (State::Selected, Some(idx)) = (self.state, self.selected) {
                        self.send_check(now, idx, TxKind::Consent);
                        self.timers
                            .set(Timer::Keepalive, now + self.config.keepalive_interval);
                    }
                }
                Timer::Consent => {
                    if self.state == State::Selected {
                        self.fail_session(FailReason::ConsentExpired);
                    }
                }
            }
        }
        while let Some((_, tx)) = self.transactions.pop_expired(now) {
            // A consent check that goes unanswered only matters through the consent timer.
            if tx.kind == TxKind::Consent || self.state != State::Checking {
                continue;
            }
            // No answer on an open TCP connection: nothing will come (no retransmission).
            self.fail_pair(now, tx.pair, PairFailure::Silent);
            self.close_conn(tx.conn);
        }
    }

    // ----- application calls -----

    /// The peer's description arrived: forms the check list and starts the checks, then
    /// the triggered checks of connections whose checks arrived early.
    pub fn set_remote_description(
        &mut self,
        now: Instant,
        remote: Description,
    ) -> Result<(), Error> {
        if self.remote_credentials.is_some() {
            return Err(Error::NotNow("the remote description is already set"));
        }
        if self.state != State::Checking {
            return Err(Error::NotNow("the ICE session is over"));
        }
        // What `Description::parse` accepts; a description built by hand must fit it too, or
        // no check could carry its USERNAME.
        let fits = |s: &str, min: usize| {
            (min..=256).contains(&s.len())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        };
        if !fits(&remote.ufrag, 4) || !fits(&remote.pwd, 22) {
            return Err(Error::UnexpectedInput("remote ufrag or pwd is malformed"));
        }
        self.remote_credentials = Some((remote.ufrag, remote.pwd));
        self.list = CheckList::form(
            self.role,
            &self.local,
            &remote.candidates,
            self.config.max_pairs,
        );
        self.remote = remote.candidates;
        let early: Vec<(ConnId, EarlyCheck)> = self
            .conns
            .iter()
            .filter_map(|(id, c)| c.early_check.map(|e| (*id, e)))
            .collect();
        for (conn, check) in early {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.early_check = None;
            }
            self.bind_accepted(now, conn, check);
        }
        self.schedule(now);
        Ok(())
    }

    /// Sends application bytes on the selected pair, in RFC 4571 frames.
    pub fn send(&mut self, data: &[u8]) -> Result<(), Error> {
        let Some((conn, _)) = self.selected().filter(|_| self.state == State::Selected) else {
            return Err(Error::NotNow("no selected pair"));
        };
        self.out.push_back(Output::Send {
            conn,
            data: framing::encode(data),
        });
        Ok(())
    }

    /// Ends the session: every connection is closed, the selected one included.
    pub fn close(&mut self) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close_conn(conn);
        }
        self.timers.clear_all();
        self.triggered.clear();
        self.state = State::Closed;
    }

    // ----- poll_* -----

    /// The next thing for the owner to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.timers.next(), self.transactions.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    // ----- checks -----

    /// Arms the pacing timer when there is a check to start.
    fn schedule(&mut self, now: Instant) {
        if self.state != State::Checking
            || self.timers.is_set(Timer::Pace)
            || self.remote_credentials.is_none()
        {
            return;
        }
        if self.triggered.is_empty() && self.list.next_to_check().is_none() {
            return;
        }
        let at = self
            .last_check
            .map_or(now, |last| last + self.config.pacing)
            .max(now);
        self.timers.set(Timer::Pace, at);
    }

    /// One pacing tick: a triggered check first, else the next ordinary one.
    fn on_pace(&mut self, now: Instant) {
        if self.state != State::Checking {
            return;
        }
        if let Some(idx) = self.triggered.pop_front() {
            self.send_check(now, idx, TxKind::Check);
        } else if let Some(idx) = self.list.next_to_check() {
            self.start_connect(now, idx);
        } else {
            return;
        }
        self.last_check = Some(now);
        self.schedule(now);
    }

    fn start_connect(&mut self, now: Instant, idx: usize) {
        let conn = ConnId::Connect(self.next_conn);
        self.next_conn += 1;
        let Some(pair) = self.list.get_mut(idx) else {
            return;
        };
        pair.state = PairState::InProgress;
        pair.conn = Some(conn);
        let (remote, local_ip) = (pair.remote.addr, pair.local.addr.ip());
        self.conns
            .insert(conn, Conn::new(remote, None, false, Some(idx)));
        self.out.push_back(Output::Connect {
            conn,
            remote,
            local_ip,
            timeout: self.config.connect_timeout,
        });
        self.timers.set(
            Timer::Connect(idx),
            now + self.config.connect_timeout + self.config.pacing,
        );
    }

    fn on_connected(&mut self, now: Instant, conn: ConnId, local: SocketAddr) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.open = true;
        c.local = Some(local);
        let Some(idx) = c.pair else {
            return;
        };
        self.timers.clear(Timer::Connect(idx));
        if self.state == State::Checking
            && self
                .list
                .get(idx)
                .is_some_and(|p| p.state == PairState::InProgress)
        {
            self.send_check(now, idx, TxKind::Check);
        } else {
            self.close_conn(conn);
        }
    }

    /// Sends a Binding request on the pair's connection.
    fn send_check(&mut self, now: Instant, idx: usize, kind: TxKind) {
        let Some((remote_ufrag, remote_pwd)) = self.remote_credentials.clone() else {
            return;
        };
        let Some(pair) = self.list.get(idx) else {
            return;
        };
        let Some(conn) = pair.conn.filter(|c| self.conns.contains_key(c)) else {
            return;
        };
        // PRIORITY: what our candidate would be worth as peer-reflexive (RFC 8445 §7.1.1).
        let priority = (type_preference(CandidateType::PeerReflexive) << 24)
            | (pair.local.priority & 0x00ff_ffff);
        let transaction = u128::from(self.rng.transaction_id());
        let role = match self.role {
            Role::Controlling => RoleAttribute::Controlling(self.tie_breaker),
            Role::Controlled => RoleAttribute::Controlled(self.tie_breaker),
        };
        let mut builder = Builder::new(Class::Request, BINDING, transaction)
            .username(&format!("{remote_ufrag}:{}", self.ufrag))
            .priority(priority)
            .role(role);
        if kind == TxKind::Nominate {
            builder = builder.use_candidate();
        }
        // Only a ufrag longer than STUN's USERNAME allows could fail here, and descriptions
        // refuse those; the pair then simply gets no check and times out.
        let Ok(message) = builder.finish(Some(&remote_pwd)) else {
            return;
        };
        self.out.push_back(Output::Send {
            conn,
            data: framing::encode(&message),
        });
        let deadline = match kind {
            TxKind::Consent => now + self.config.consent_timeout,
            TxKind::Check | TxKind::Nominate => now + self.config.check_timeout,
        };
        self.transactions.start(
            transaction,
            Transaction {
                conn,
                pair: idx,
                kind,
                role: self.role,
            },
            deadline,
        );
    }

    // ----- incoming bytes -----

    fn on_frame(&mut self, now: Instant, conn: ConnId, frame: Bytes) {
        let selected_conn = self.selected().map(|(c, _)| c);
        let state = self.state;
        let carries_application = state == State::Selected && selected_conn == Some(conn);
        if looks_like_stun(&frame) {
            match StunMessage::decode(&frame) {
                Ok(message) if message.has_fingerprint => {
                    self.on_stun(now, conn, &message, &frame);
                    return;
                }
                // FINGERPRINT is what tells STUN from application bytes that merely start
                // like it (RFC 8489 §14.7; a TLS record's ciphertext matches the magic cookie
                // once in 2^32): on the selected connection such a frame is the application's.
                _ if carries_application => {}
                Err(StunError::BadFingerprint) | Ok(_) => {
                    self.dropped.bad_fingerprint += 1;
                    return;
                }
                Err(_) => {
                    self.dropped.malformed += 1;
                    return;
                }
            }
        }
        let limit = self.config.early_data_limit;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if state == State::Selected && selected_conn == Some(conn) {
            self.out.push_back(Output::Data { conn, data: frame });
        } else if state == State::Checking && (c.pair.is_some() || c.early_check.is_some()) {
            // The peer selected this connection first and its application already speaks;
            // keep the bytes until we select it too.
            if c.early_bytes + frame.len() > limit {
                let pair = c.pair;
                self.close_conn(conn);
                if let Some(idx) = pair {
                    self.fail_pair(now, idx, PairFailure::EarlyDataOverflow);
                }
            } else {
                c.early_bytes += frame.len();
                c.early_data.push(frame);
            }
        } else {
            self.dropped.non_stun += 1;
        }
    }

    fn on_stun(&mut self, now: Instant, conn: ConnId, message: &StunMessage, bytes: &[u8]) {
        if message.method != BINDING {
            self.dropped.malformed += 1;
            return;
        }
        match message.class {
            Class::Request => self.on_request(now, conn, message, bytes),
            Class::Success | Class::Error => self.on_response(now, conn, message, bytes),
            // Binding indications are keepalives: nothing to do.
            Class::Indication => {}
        }
    }

    fn on_request(&mut self, now: Instant, conn: ConnId, message: &StunMessage, bytes: &[u8]) {
        let to_us = message
            .username
            .as_deref()
            .and_then(|u| u.split_once(':'))
            .is_some_and(|(to, _)| to == self.ufrag);
        if !to_us {
            self.dropped.wrong_ufrag += 1;
            return;
        }
        if verify_integrity(bytes, &self.pwd).is_err() {
            self.dropped.bad_integrity += 1;
            return;
        }
        let (Some(priority), Some(their_role)) = (message.priority, message.role) else {
            self.dropped.malformed += 1;
            return;
        };
        // Role conflict (RFC 8445 §7.3.1.1): the larger tie-breaker keeps controlling.
        match (self.role, their_role) {
            (Role::Controlling, RoleAttribute::Controlling(theirs)) => {
                if self.tie_breaker >= theirs {
                    self.respond_error(conn, message.transaction, 487, "Role Conflict");
                    return;
                }
                self.switch_role(now, Role::Controlled);
            }
            (Role::Controlled, RoleAttribute::Controlled(theirs)) => {
                if self.tie_breaker >= theirs {
                    self.switch_role(now, Role::Controlling);
                } else {
                    self.respond_error(conn, message.transaction, 487, "Role Conflict");
                    return;
                }
            }
            _ => {}
        }
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let mapped = c.remote;
        if let Ok(response) = Builder::new(Class::Success, BINDING, message.transaction)
            .xor_mapped(mapped)
            .finish(Some(&self.pwd))
        {
            self.out.push_back(Output::Send {
                conn,
                data: framing::encode(&response),
            });
        }
        if self.state != State::Checking {
            return;
        }
        let use_candidate = message.use_candidate && self.role == Role::Controlled;
        match c.pair {
            Some(idx) => {
                if use_candidate {
                    self.on_use_candidate(now, idx);
                }
            }
            None if self.remote_credentials.is_none() => {
                // Answered; the triggered check waits for the remote description.
                if let Some(c) = self.conns.get_mut(&conn) {
                    let early = c.early_check.get_or_insert(EarlyCheck {
                        priority,
                        use_candidate: false,
                    });
                    early.use_candidate |= message.use_candidate;
                }
                self.timers.clear(Timer::Silent(conn));
            }
            None => self.bind_accepted(
                now,
                conn,
                EarlyCheck {
                    priority,
                    use_candidate: message.use_candidate,
                },
            ),
        }
    }

    /// Makes the pair of an accepted connection from its first valid check, and queues the
    /// triggered check that goes back on it.
    fn bind_accepted(&mut self, now: Instant, conn: ConnId, check: EarlyCheck) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (remote_addr, local_addr) = (c.remote, c.local);
        let same_family = |a: &SocketAddr| a.is_ipv4() == remote_addr.is_ipv4();
        let passive = || self.local.iter().filter(|l| l.is_passive());
        let local = passive()
            .find(|l| Some(l.addr) == local_addr)
            .or_else(|| {
                passive().find(|l| {
                    Some(l.addr.port()) == local_addr.map(|a| a.port()) && same_family(&l.addr)
                })
            })
            .or_else(|| passive().find(|l| same_family(&l.addr)))
            .cloned();
        // Passive pairs are bounded too: a peer that keeps opening connections with valid
        // checks must not grow the list without end.
        let full = self.list.pairs().len() >= 2 * self.config.max_pairs;
        let Some(local) = local.filter(|_| !full) else {
            self.dropped.unmatched_connection += 1;
            self.close_conn(conn);
            return;
        };
        // Active candidates advertise port 9: match the source by IP alone (RFC 6544 §7.2).
        let known = self
            .remote
            .iter()
            .filter(|r| r.is_active() && r.addr.ip() == remote_addr.ip())
            .max_by_key(|r| r.priority)
            .cloned();
        let remote = match known {
            Some(r) => r,
            None => {
                // Its foundation is made like ours; its address is the connection's real
                // source (not port 9: this one was seen, not advertised), and its priority
                // the one its check asked for (RFC 8445 §7.3.1.3).
                let mut learned = Candidate::tcp(
                    CandidateType::PeerReflexive,
                    TcpType::Active,
                    remote_addr,
                    0,
                );
                learned.addr = remote_addr;
                learned.priority = check.priority;
                self.remote.push(learned.clone());
                self.out.push_back(Output::Event(Event::PeerReflexive {
                    candidate: learned.clone(),
                }));
                learned
            }
        };
        let idx = self.list.add_passive(self.role, local, remote, conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.pair = Some(idx);
        }
        self.timers.clear(Timer::Silent(conn));
        if check.use_candidate && self.role == Role::Controlled {
            if let Some(p) = self.list.get_mut(idx) {
                p.nominate_on_success = true;
            }
        }
        self.triggered.push_back(idx);
        self.schedule(now);
    }

    fn on_use_candidate(&mut self, now: Instant, idx: usize) {
        let Some(pair) = self.list.get_mut(idx) else {
            return;
        };
        match pair.state {
            PairState::Succeeded => self.select(now, idx),
            PairState::Failed(_) => {}
            _ => pair.nominate_on_success = true,
        }
    }

    fn on_response(&mut self, now: Instant, conn: ConnId, message: &StunMessage, bytes: &[u8]) {
        let matches = self
            .transactions
            .get(message.transaction)
            .is_some_and(|t| t.conn == conn);
        if !matches {
            self.dropped.unmatched_response += 1;
            return;
        }
        let Some((_, remote_pwd)) = &self.remote_credentials else {
            return;
        };
        if verify_integrity(bytes, remote_pwd).is_err() {
            // A forged answer must not end the real transaction.
            self.dropped.bad_integrity += 1;
            return;
        }
        let Some(tx) = self.transactions.take(message.transaction) else {
            return;
        };
        let idx = tx.pair;
        if tx.kind == TxKind::Consent {
            if message.class == Class::Success {
                self.timers
                    .set(Timer::Consent, now + self.config.consent_timeout);
            }
            return;
        }
        if self.state != State::Checking {
            return;
        }
        if message.class == Class::Error {
            let code = message.error.as_ref().map_or(0, |(code, _)| *code);
            if code == 487 {
                // We claimed the wrong role: take the other one and check the pair again, as
                // a triggered check on the same connection (RFC 8445 §7.2.5.1).
                let other = match tx.role {
                    Role::Controlling => Role::Controlled,
                    Role::Controlled => Role::Controlling,
                };
                if other != self.role {
                    self.switch_role(now, other);
                }
                if self.nominating == Some(idx) {
                    self.nominating = None;
                }
                if !self.triggered.contains(&idx) {
                    self.triggered.push_back(idx);
                }
                self.schedule(now);
                self.maybe_nominate(now);
            } else {
                self.fail_pair(now, idx, PairFailure::ErrorResponse(code));
                self.close_conn(conn);
            }
            return;
        }
        let Some(pair) = self.list.get_mut(idx) else {
            return;
        };
        if matches!(pair.state, PairState::Failed(_)) {
            return;
        }
        pair.state = PairState::Succeeded;
        let nominate_now = tx.kind == TxKind::Nominate
            || (pair.nominate_on_success && self.role == Role::Controlled);
        let (lf, rf) = (
            pair.local.foundation.clone(),
            pair.remote.foundation.clone(),
        );
        self.list.unfreeze(&lf, &rf);
        if nominate_now {
            self.select(now, idx);
            return;
        }
        if !self.any_valid {
            self.any_valid = true;
            self.timers
                .set(Timer::NominationWait, now + self.config.nomination_wait);
        }
        self.maybe_nominate(now);
        self.schedule(now);
    }

    fn respond_error(&mut self, conn: ConnId, transaction: u128, code: u16, reason: &str) {
        if let Ok(response) = Builder::new(Class::Error, BINDING, transaction)
            .error_code(code, reason)
            .finish(Some(&self.pwd))
        {
            self.out.push_back(Output::Send {
                conn,
                data: framing::encode(&response),
            });
        }
    }

    // ----- roles, nomination, selection -----

    fn switch_role(&mut self, now: Instant, role: Role) {
        if role == self.role {
            return;
        }
        self.role = role;
        self.list.set_role(role);
        self.nominating = None;
        self.out
            .push_back(Output::Event(Event::RoleChanged { role }));
        self.maybe_nominate(now);
    }

    /// The controlling agent nominates the best valid pair once it may (regular
    /// nomination, RFC 8445 §8.1.1).
    fn maybe_nominate(&mut self, now: Instant) {
        if self.role != Role::Controlling
            || self.state != State::Checking
            || self.nominating.is_some()
            || !self.any_valid
        {
            return;
        }
        if let Some(idx) = self.list.nomination_candidate(self.nomination_wait_over) {
            self.nominating = Some(idx);
            self.send_check(now, idx, TxKind::Nominate);
        }
    }

    fn select(&mut self, now: Instant, idx: usize) {
        let Some(pair) = self.list.get_mut(idx) else {
            return;
        };
        let Some(conn) = pair.conn else {
            return;
        };
        pair.nominated = true;
        let (local, remote) = (pair.local.clone(), pair.remote.clone());
        self.state = State::Selected;
        self.selected = Some(idx);
        self.nominating = None;
        self.out.push_back(Output::Event(Event::Selected {
            conn,
            local,
            remote,
        }));
        let others: Vec<ConnId> = self.conns.keys().copied().filter(|c| *c != conn).collect();
        for other in others {
            self.close_conn(other);
        }
        self.transactions.retain(|_, t| t.conn == conn);
        self.triggered.clear();
        self.timers.clear_all();
        self.timers
            .set(Timer::Keepalive, now + self.config.keepalive_interval);
        self.timers
            .set(Timer::Consent, now + self.config.consent_timeout);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.early_bytes = 0;
            for data in std::mem::take(&mut c.early_data) {
                self.out.push_back(Output::Data { conn, data });
            }
        }
    }

    // ----- failures and connections -----

    fn fail_pair(&mut self, now: Instant, idx: usize, failure: PairFailure) {
        let Some(pair) = self.list.get_mut(idx) else {
            return;
        };
        if matches!(pair.state, PairState::Failed(_)) {
            return;
        }
        pair.state = PairState::Failed(failure);
        self.timers.clear(Timer::Connect(idx));
        self.transactions
            .retain(|_, t| t.pair != idx || t.kind == TxKind::Consent);
        self.triggered.retain(|t| *t != idx);
        if self.nominating == Some(idx) {
            self.nominating = None;
        }
        self.maybe_nominate(now);
        self.schedule(now);
    }

    fn fail_session(&mut self, reason: FailReason) {
        let pairs = self
            .list
            .pairs()
            .iter()
            .map(|p| PairReport {
                local: p.local.addr,
                remote: p.remote.addr,
                remote_kind: p.remote.kind,
                state: p.state.clone(),
            })
            .collect();
        self.close();
        self.state = State::Failed;
        self.out
            .push_back(Output::Event(Event::Failed { reason, pairs }));
    }

    fn on_conn_lost(&mut self, now: Instant, conn: ConnId, failure: PairFailure) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.forget_conn(conn);
        let Some(idx) = c.pair else {
            return;
        };
        if self.state == State::Selected && self.selected == Some(idx) {
            self.fail_session(FailReason::SelectedConnectionLost);
        } else if self.state == State::Checking {
            self.fail_pair(now, idx, failure);
        }
    }

    /// Closes a connection we no longer need; its pair, if any, keeps its state.
    fn close_conn(&mut self, conn: ConnId) {
        if self.conns.remove(&conn).is_some() {
            self.forget_conn(conn);
            self.out.push_back(Output::Close { conn });
        }
    }

    /// Drops what refers to a connection that is gone.
    fn forget_conn(&mut self, conn: ConnId) {
        self.timers.clear(Timer::Silent(conn));
        self.transactions.retain(|_, t| t.conn != conn);
    }
}
