//! Roles, nomination and selection, and how pairs, connections and the session end.

use std::time::Instant;

use super::{Agent, State, Timer, TxKind};
use crate::ice::candidate::CandidateType;
use crate::ice::check_list::{Origin, PairState};
use crate::ice::{Event, FailReason, Output, PairFailure, PairReport, Role};
use crate::io::{ConnId, ConnectError};

/// Whether a pair that failed so may succeed when tried again: what the path lost or a NAT
/// dropped may pass later (a timeout, a silence, a reset or close of a connection, and a
/// refusal from a NAT's address, which some NATs answer for a mapping not made yet); a
/// refusal from a host address (nobody listens), no route, an answer that refused the check,
/// and a peer that flooded us will not.
fn retryable(failure: &PairFailure, remote: CandidateType) -> bool {
    match failure {
        PairFailure::ConnectFailed(ConnectError::TimedOut)
        | PairFailure::Silent
        | PairFailure::Reset
        | PairFailure::Closed => true,
        PairFailure::ConnectFailed(ConnectError::Refused) => remote != CandidateType::Host,
        PairFailure::ConnectFailed(_)
        | PairFailure::ErrorResponse(_)
        | PairFailure::EarlyDataOverflow => false,
    }
}

impl Agent {
    pub(super) fn switch_role(&mut self, now: Instant, role: Role) {
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
    pub(super) fn maybe_nominate(&mut self, now: Instant) {
        if self.role != Role::Controlling
            || self.state != State::Checking
            || self.nominating.is_some()
            || !self.any_valid
        {
            return;
        }
        // A failed pair waiting to be tried again does not hold nomination back (it failed
        // once already; the wait is for pairs in progress), nor does a pair not expected to
        // succeed.
        let unlikely = |idx: usize| self.unlikely.get(idx).copied().unwrap_or(false);
        let best = self
            .list
            .nomination_candidate_unless(self.nomination_wait_over, unlikely);
        if let Some(idx) = best {
            // It marks the pair as being nominated once the check is out.
            self.send_check(now, idx, TxKind::Nominate);
        }
    }

    pub(super) fn select(&mut self, now: Instant, idx: usize) {
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
        self.resume(conn);
        self.early_total = 0;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.early_bytes = 0;
            for data in std::mem::take(&mut c.early_data) {
                self.out.push_back(Output::Data { conn, data });
            }
        }
    }

    // ----- failures and connections -----

    pub(super) fn fail_pair(&mut self, now: Instant, idx: usize, failure: PairFailure) {
        let Some(pair) = self.list.get_mut(idx) else {
            return;
        };
        if matches!(pair.state, PairState::Failed(_)) {
            return;
        }
        // A pair not expected to succeed is not tried again.
        let retry = pair.origin == Origin::Active
            && retryable(&failure, pair.remote.kind)
            && !self.unlikely.get(idx).copied().unwrap_or(false);
        pair.state = PairState::Failed(failure);
        self.timers.clear(Timer::Connect(idx));
        if retry && self.state == State::Checking {
            self.plan_retry(now, idx);
        }
        self.transactions
            .retain(|_, t| t.pair != idx || t.kind == TxKind::Consent);
        self.triggered.retain(|t| *t != idx);
        if self.nominating == Some(idx) {
            self.nominating = None;
        }
        self.maybe_nominate(now);
        self.schedule(now);
    }

    /// Arms the pair's next retry, if it has one left before the negotiation's deadline.
    fn plan_retry(&mut self, now: Instant, idx: usize) {
        let made = self.retries.get(&idx).copied().unwrap_or(0);
        if made >= self.config.max_connect_retries {
            return;
        }
        let backoff = self.config.connect_retry * (1u32 << made.min(3));
        let at = now + backoff;
        if self.timers.get(Timer::Overall).is_some_and(|end| at < end) {
            self.timers.set(Timer::Retry(idx), at);
        }
    }

    /// A failed active pair's retry is due: it waits for the next pacing tick again.
    pub(super) fn retry(&mut self, now: Instant, idx: usize) {
        if self.state != State::Checking {
            return;
        }
        let Some(pair) = self.list.get_mut(idx) else {
            return;
        };
        if !matches!(pair.state, PairState::Failed(_)) {
            return;
        }
        pair.state = PairState::Waiting;
        pair.conn = None;
        *self.retries.entry(idx).or_insert(0) += 1;
        self.schedule(now);
    }

    pub(super) fn fail_session(&mut self, reason: FailReason) {
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

    /// The peer closed or reset a connection. Our side closes it too: a FIN from the peer
    /// gets ours once our queued bytes are out, and the driver frees the socket. (Forgetting
    /// it without a `Close` left it in CLOSE-WAIT, one descriptor per connection, forever.)
    pub(super) fn on_conn_lost(&mut self, now: Instant, conn: ConnId, failure: PairFailure) {
        let Some(pair) = self.conns.get(&conn).map(|c| c.pair) else {
            return;
        };
        self.close_conn(conn);
        let Some(idx) = pair else {
            return;
        };
        if self.state == State::Selected && self.selected == Some(idx) {
            self.fail_session(FailReason::SelectedConnectionLost);
        } else if self.state == State::Checking {
            self.fail_pair(now, idx, failure);
        }
    }

    /// Closes a connection we no longer need; its pair, if any, keeps its state.
    pub(super) fn close_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            self.early_total = self.early_total.saturating_sub(c.early_bytes);
            self.forget_conn(conn);
            self.out.push_back(Output::Close { conn });
        }
    }

    /// Drops what refers to a connection that is gone.
    pub(super) fn forget_conn(&mut self, conn: ConnId) {
        self.timers.clear(Timer::Silent(conn));
        self.transactions.retain(|_, t| t.conn != conn);
    }
}
