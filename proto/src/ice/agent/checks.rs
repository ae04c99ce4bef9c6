//! Our checks: pacing (Ta), opening connections for active pairs, sending Binding
//! requests, and what their answers mean (a valid pair, a role conflict, a failure).

use core::net::SocketAddr;
use std::time::Instant;

use super::{Agent, Conn, State, Timer, Transaction, TxKind};
use crate::ice::candidate::CandidateType;
use crate::ice::check_list::PairState;
use crate::ice::{Output, PairFailure, Role};
use crate::io::ConnId;
use crate::stun::framing;
use crate::stun::{BINDING, Builder, Class, RoleAttribute, StunMessage, verify_integrity};

impl Agent {
    /// Arms the pacing timer when there is a check to start.
    pub(super) fn schedule(&mut self, now: Instant) {
        if self.state != State::Checking
            || self.timers.is_set(Timer::Pace)
            || self.remote_credentials.is_none()
        {
            return;
        }
        if self.triggered.is_empty() && self.next_ordinary().is_none() {
            return;
        }
        let at = self
            .last_check
            .map_or(now, |last| last + self.config.pacing)
            .max(now);
        self.timers.set(Timer::Pace, at);
    }

    /// One pacing tick: a triggered check first, else the next ordinary one.
    pub(super) fn on_pace(&mut self, now: Instant) {
        if self.state != State::Checking {
            return;
        }
        if let Some(idx) = self.triggered.pop_front() {
            self.send_check(now, idx, TxKind::Check);
        } else if let Some(idx) = self.next_ordinary() {
            self.start_connect(now, idx);
        } else {
            return;
        }
        self.last_check = Some(now);
        self.schedule(now);
    }

    /// The next ordinary check: likely pairs first.
    fn next_ordinary(&self) -> Option<usize> {
        let unlikely = |idx: usize| self.unlikely.get(idx).copied().unwrap_or(false);
        self.list.next_to_check_unless(unlikely)
    }

    pub(super) fn start_connect(&mut self, now: Instant, idx: usize) {
        let conn = ConnId::Connect(self.next_conn);
        self.next_conn += 1;
        let Some(pair) = self.list.get_mut(idx) else {
            return;
        };
        pair.state = PairState::InProgress;
        pair.conn = Some(conn);
        let (remote, local_ip) = (pair.remote.addr, pair.local.addr.ip());
        let relayed = pair.local.kind == CandidateType::Relayed;
        self.conns
            .insert(conn, Conn::new(remote, None, false, Some(idx)));
        self.out.push_back(Output::Connect {
            conn,
            remote,
            local_ip,
            relayed,
            timeout: self.config.connect_timeout,
        });
        self.timers.set(
            Timer::Connect(idx),
            now + self.config.connect_timeout + self.config.pacing,
        );
    }

    pub(super) fn on_connected(&mut self, now: Instant, conn: ConnId, local: SocketAddr) {
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
    ///
    /// The controlling agent nominates with the first check of a pair that nothing better
    /// can beat any more ([`CheckList::best_possible_unless`]): regular nomination would
    /// nominate that pair as soon as the check succeeds, in a second check one round trip
    /// later; carrying USE-CANDIDATE at once (as RFC 5245's aggressive nomination did, but
    /// only for that pair) ends the checks a round trip sooner with the same choice. A
    /// controlled agent must accept USE-CANDIDATE on any check (RFC 8445 §7.3.1.5).
    ///
    /// [`CheckList::best_possible_unless`]: crate::ice::check_list::CheckList::best_possible_unless
    pub(super) fn send_check(&mut self, now: Instant, idx: usize, mut kind: TxKind) {
        if kind == TxKind::Check
            && self.role == Role::Controlling
            && self.state == State::Checking
            && self.nominating.is_none()
        {
            let unlikely = |i: usize| self.unlikely.get(i).copied().unwrap_or(false);
            if self.list.best_possible_unless(idx, unlikely) {
                kind = TxKind::Nominate;
            }
        }
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
        let priority = (u32::from(CandidateType::PeerReflexive.type_preference()) << 24)
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
        if kind == TxKind::Nominate {
            self.nominating = Some(idx);
        }
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
                sent: now,
            },
            deadline,
        );
    }

    pub(super) fn on_response(
        &mut self,
        now: Instant,
        conn: ConnId,
        message: &StunMessage,
        bytes: &[u8],
    ) {
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
            // Better pairs started before this one and take as long as it did; give those
            // on a path up to twice as long time to finish, within the configured bound.
            let rtt = now.saturating_duration_since(tx.sent);
            let wait = (rtt * 2)
                .max(self.config.pacing)
                .min(self.config.nomination_wait);
            self.timers.set(Timer::NominationWait, now + wait);
        }
        self.maybe_nominate(now);
        self.schedule(now);
    }
}
