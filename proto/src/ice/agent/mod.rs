//! The ICE agent: one session between two devices, from the first check to the selected
//! pair and its keepalives. See the [module docs](super) for the sequence and the
//! deviations from the RFCs.
//!
//! This file holds the agent's state and its public face (the four verbs and the calls of
//! the owner); the work is in [`checks`] (our checks and their answers), [`incoming`] (what
//! arrives on a connection: demultiplexing and the peer's checks) and [`selection`] (roles,
//! nomination, selection, and how pairs, connections and the session end).

mod checks;
mod incoming;
mod selection;

use core::net::SocketAddr;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::candidate::Candidate;
use super::check_list::{CheckList, Pair};
use super::description::Description;
use super::{Config, FailReason, Input, Output, PairFailure, Role};
use crate::Error;
use crate::io::ConnId;
use crate::stun::framing::{self, FrameDecoder, Piece};
use crate::stun::{StunRng, Transactions};
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
    /// Connections without a pair yet closed because the peer's application bytes on them
    /// went past [`Config::early_data_cap`] (a driver that kept delivering after
    /// [`Output::PauseReading`], or one huge read). A connection with a pair fails it with
    /// [`PairFailure::EarlyDataOverflow`] instead.
    pub early_data_overflow: u64,
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
    /// A failed active pair is tried again.
    Retry(usize),
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
    /// When it left: its answer measures the path's round trip.
    sent: Instant,
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
    /// We asked the driver to stop reading it (early data before the remote description).
    paused: bool,
    /// An authenticated check of the peer's came in on it: the peer speaks ICE on this
    /// connection, so the answer to ours is late, not missing.
    heard: bool,
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
            paused: false,
            heard: false,
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
    rng: StunRng,
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
    /// Retries made so far, by pair (only pairs that failed and may be tried again).
    retries: BTreeMap<usize, u32>,
    /// Pairs formed from the descriptions that cannot be expected to succeed (a private
    /// address of the peer's network, seen from another network): they are still checked,
    /// but they do not hold nomination back.
    unlikely: Vec<bool>,
    state: State,
    /// Application bytes kept, over every connection, until a pair is selected.
    early_total: usize,
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
        let mut rng = StunRng::new(seed);
        // Jami's shapes: 8 and 24 hexadecimal characters.
        let ufrag = rng.hex(8);
        let pwd = rng.hex(24);
        let tie_breaker = rng.next_u64();
        // The overall timeout starts with the checks, at the remote description: a requester
        // makes its agent (for its description) long before the answer comes, and how long
        // it waits for that answer is its owner's business.
        let timers = Timers::new();
        let _ = now;
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
            retries: BTreeMap::new(),
            unlikely: Vec::new(),
            state: State::Checking,
            early_total: 0,
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

    /// Whether `conn` is one of the agent's connections: asked for (or accepted) and not
    /// closed since. An owner whose connection opens late (through a relay) asks first.
    pub fn has_conn(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
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
    /// `"connect retry"`, `"check timeout"`, `"silent connection"`, `"keepalive"` or `"consent"`.
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
            Timer::Retry(_) => "connect retry",
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
                // On the selected connection the application's frames are handed on as
                // they arrive, not gathered (a copy of every byte); STUN is decoded whole.
                let carries_application =
                    self.state == State::Selected && self.selected().map(|(c, _)| c) == Some(conn);
                let Some(c) = self.conns.get_mut(&conn) else {
                    return Ok(());
                };
                let stream = |start: &[u8], len: usize| {
                    carries_application && !crate::stun::may_be_stun(start, len)
                };
                for piece in c.decoder.push_stream(data, stream) {
                    if !self.conns.contains_key(&conn) {
                        break;
                    }
                    match piece {
                        Piece::Frame(frame) => self.on_frame(now, conn, frame),
                        Piece::Part(part) => self.on_part(conn, part),
                    }
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
                Timer::Retry(idx) => self.retry(now, idx),
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
        while let Some((id, tx)) = self.transactions.pop_expired(now) {
            // A consent check that goes unanswered only matters through the consent timer.
            if tx.kind == TxKind::Consent || self.state != State::Checking {
                continue;
            }
            // The peer's own check came in on this connection: our answer is on its way
            // (a response TCP resends on a lossy path comes 1 s, then 3 s late, past the
            // check timeout); waiting costs nothing, the negotiation's deadline bounds it.
            // Failing here closed a connection the peer had just selected.
            if self.conns.get(&tx.conn).is_some_and(|c| c.heard && c.open) {
                let deadline = now + self.config.check_timeout;
                self.transactions.start(id, tx, deadline);
                continue;
            }
            // No answer on an open TCP connection from a peer that never spoke ICE on it:
            // nothing will come.
            self.fail_pair(now, tx.pair, PairFailure::Silent);
            self.close_conn(tx.conn);
        }
    }

    // ----- application calls -----

    /// The peer's description arrived: forms the check list and starts the checks, then
    /// the triggered checks of connections whose checks arrived early. Connections paused
    /// for their early data are read again: the answers to those triggered checks come
    /// behind the peer's bytes.
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
        self.timers
            .set(Timer::Overall, now + self.config.ice_timeout);
        self.list = CheckList::form(
            self.role,
            &self.local,
            &remote.candidates,
            self.config.max_pairs,
        );
        self.unlikely = self
            .list
            .pairs()
            .iter()
            .map(|p| super::check_list::unlikely(&self.local, &remote.candidates, p))
            .collect();
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
        let paused: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.paused)
            .map(|(id, _)| *id)
            .collect();
        for conn in paused {
            self.resume(conn);
        }
        self.schedule(now);
        Ok(())
    }

    /// Sends application bytes on the selected pair, in RFC 4571 frames, and returns how
    /// many bytes that queued on the connection (the data plus 2 per frame), which is what
    /// the driver's `Writable` will count when they leave.
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        let Some((conn, _)) = self.selected().filter(|_| self.state == State::Selected) else {
            return Err(Error::NotNow("no selected pair"));
        };
        let framed = framing::encode(data);
        let queued = framed.len();
        self.out.push_back(Output::Send { conn, data: framed });
        Ok(queued)
    }

    /// [`send`](Self::send) for bytes already in RFC 4571 frames (a TLS session's records,
    /// [`TlsSession::rfc4571_framed`](crate::tls::TlsSession::rfc4571_framed)): queued as
    /// they are, no copy to frame them.
    pub fn send_framed(&mut self, frames: Bytes) -> Result<usize, Error> {
        let Some((conn, _)) = self.selected().filter(|_| self.state == State::Selected) else {
            return Err(Error::NotNow("no selected pair"));
        };
        let queued = frames.len();
        self.out.push_back(Output::Send { conn, data: frames });
        Ok(queued)
    }

    /// Checks consent on the selected pair now (RFC 7675), and lets it expire unless the
    /// peer answers `within` (or sooner, if consent was due to expire sooner anyway). For a
    /// peer that may have vanished: a new request from its device says it lost its side.
    pub fn check_consent_now(&mut self, now: Instant, within: Duration) {
        let (State::Selected, Some(idx)) = (self.state, self.selected) else {
            return;
        };
        self.send_check(now, idx, TxKind::Consent);
        let expiry = self
            .timers
            .get(Timer::Consent)
            .map_or(now + within, |at| at.min(now + within));
        self.timers.set(Timer::Consent, expiry);
    }

    /// The peer may hear our description only at `from` (it asked again, say, because the
    /// signalling lost or delayed our answer, or an answerer allows for the requester's
    /// whole wait for its answer): the negotiation's deadline counts from `from` if that is
    /// later than it counts now. Nothing once a pair is selected or the session failed.
    pub fn restart_deadline(&mut self, from: Instant) {
        if self.state != State::Checking || self.remote_credentials.is_none() {
            return;
        }
        let later = from + self.config.ice_timeout;
        if self.timers.get(Timer::Overall).is_none_or(|at| at < later) {
            self.timers.set(Timer::Overall, later);
        }
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
}
