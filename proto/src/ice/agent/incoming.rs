//! What arrives on a connection: RFC 4571 frames told apart as STUN or application
//! bytes, and the peer's checks (authentication, role conflicts, answers, the pair an
//! accepted connection makes, peer-reflexive candidates, USE-CANDIDATE).

use core::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::{Agent, EarlyCheck, State, Timer};
use crate::ice::candidate::{Candidate, CandidateType, TcpType};
use crate::ice::check_list::PairState;
use crate::ice::{Event, Output, PairFailure, Role};
use crate::io::ConnId;
use crate::stun::framing;
use crate::stun::{
    BINDING, Builder, Class, RoleAttribute, StunError, StunMessage, looks_like_stun,
    verify_integrity,
};

impl Agent {
    pub(super) fn on_frame(&mut self, now: Instant, conn: ConnId, frame: Bytes) {
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
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if state == State::Selected && selected_conn == Some(conn) {
            self.out.push_back(Output::Data { conn, data: frame });
        } else if state == State::Checking && (c.pair.is_some() || c.early_check.is_some()) {
            self.keep_early(now, conn, frame);
        } else {
            self.dropped.non_stun += 1;
        }
    }

    /// Part of an application frame streamed on the connection that carried the
    /// application when it began ([`FrameDecoder::push_stream`]): the application's still
    /// if the connection still carries it, else dropped as a whole frame would be.
    ///
    /// [`FrameDecoder::push_stream`]: crate::stun::framing::FrameDecoder::push_stream
    pub(super) fn on_part(&mut self, conn: ConnId, part: Bytes) {
        let selected_conn = self.selected().map(|(c, _)| c);
        if self.state == State::Selected && selected_conn == Some(conn) {
            self.out.push_back(Output::Data { conn, data: part });
        } else {
            self.dropped.non_stun += 1;
        }
    }

    /// The peer selected this connection first and its application already speaks: keep
    /// its bytes until we select it too. Before the remote description, past
    /// [`early_data_limit`](crate::ice::Config::early_data_limit), the driver stops reading
    /// it (TCP pushes back; closing would lose the peer's selected connection). Past
    /// [`early_data_cap`](crate::ice::Config::early_data_cap) for the whole agent, the
    /// connection closes, and the close is recorded.
    fn keep_early(&mut self, now: Instant, conn: ConnId, frame: Bytes) {
        let (limit, cap) = (self.config.early_data_limit, self.config.early_data_cap);
        let described = self.remote_credentials.is_some();
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if self.early_total + frame.len() > cap {
            let pair = c.pair;
            self.close_conn(conn);
            match pair {
                Some(idx) => self.fail_pair(now, idx, PairFailure::EarlyDataOverflow),
                None => self.dropped.early_data_overflow += 1,
            }
            return;
        }
        c.early_bytes += frame.len();
        self.early_total += frame.len();
        c.early_data.push(frame);
        if !described && !c.paused && c.early_bytes >= limit {
            c.paused = true;
            self.out.push_back(Output::PauseReading { conn });
        }
    }

    /// Lets the driver read a paused connection again.
    pub(super) fn resume(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn).filter(|c| c.paused) {
            c.paused = false;
            self.out.push_back(Output::ResumeReading { conn });
        }
    }

    pub(super) fn on_stun(
        &mut self,
        now: Instant,
        conn: ConnId,
        message: &StunMessage,
        bytes: &[u8],
    ) {
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

    pub(super) fn on_request(
        &mut self,
        now: Instant,
        conn: ConnId,
        message: &StunMessage,
        bytes: &[u8],
    ) {
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
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.heard = true;
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
    pub(super) fn bind_accepted(&mut self, now: Instant, conn: ConnId, check: EarlyCheck) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (remote_addr, local_addr) = (c.remote, c.local);
        let same_family = |a: &SocketAddr| a.is_ipv4() == remote_addr.is_ipv4();
        // Our `so` candidates share the listening port, so the peer's half of a simultaneous
        // open may arrive as an accepted connection too.
        let passive = || self.local.iter().filter(|l| l.is_passive() || l.is_so());
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
        // A simultaneous-open candidate is its real address; active candidates advertise
        // port 9: match their source by IP alone (RFC 6544 §7.2).
        let known = self
            .remote
            .iter()
            .find(|r| r.is_so() && r.addr == remote_addr)
            .or_else(|| {
                self.remote
                    .iter()
                    .filter(|r| r.is_active() && r.addr.ip() == remote_addr.ip())
                    .max_by_key(|r| r.priority)
            })
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

    pub(super) fn on_use_candidate(&mut self, now: Instant, idx: usize) {
        let Some(pair) = self.list.get_mut(idx) else {
            return;
        };
        match pair.state {
            PairState::Succeeded => self.select(now, idx),
            PairState::Failed(_) => {}
            _ => pair.nominate_on_success = true,
        }
    }

    pub(super) fn respond_error(
        &mut self,
        conn: ConnId,
        transaction: u128,
        code: u16,
        reason: &str,
    ) {
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
}
