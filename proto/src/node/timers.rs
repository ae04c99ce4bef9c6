//! Every deadline of the node in one table ([`Timers`](crate::timer::Timers)) keyed by
//! [`NodeTimer`]: the node's own (gathering, announcement), the unrouted connections', the
//! lookups', the connectors' and the forgetting of failed connectors. The children that are
//! whole machines of their own (TURN clients, ICE agents, transfers) keep their clocks;
//! `poll_timeout` is the earliest of everything.
//!
//! `handle_timeout` takes the expired timers in key order and runs the children's clocks at
//! fixed places among them (the TURN clients after the node's own timers, each agent before
//! its connector's timers), so what falls due together always happens in one order.

use std::time::Instant;

use super::Node;
use super::connector::{self, Connector};
use super::demux::Inbound;
use crate::io::DhtKey;
use crate::transfer::TransferId;

/// The node's timers, in the order in which timers due together fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum NodeTimer {
    /// Gathering stops waiting for listeners and relays.
    Gather,
    /// A shutdown stops waiting for the driver to delete our port mappings.
    Unmap,
    /// A STUN probe ran out of time.
    StunProbe(usize),
    /// Put our announcement again.
    Announce,
    /// An unrouted connection brought no check in time.
    Unrouted(Inbound),
    /// Listen again to an account none of whose devices was heard of yet (a lossy DHT may
    /// have lost the delivery of what it stores).
    LookupRetry(DhtKey),
    /// A group's wait for any device of its account is over.
    Lookup(TransferId),
    /// A device of the group verified the file [`UNJOINED_GRACE`](super::UNJOINED_GRACE)
    /// ago: the devices that never answered are not waited for any longer.
    Unjoined(TransferId),
    /// Our request to send a transfer again stops waiting for any device of the sender.
    AskLookup(TransferId),
    /// A peer's request to send again was not whole, or not decided, in time.
    Ask(super::AskId),
    /// One of a connector's timers.
    Connector(u32, connector::Timer),
    /// A ready connection no channel used for [`IDLE_TIMEOUT`](super::IDLE_TIMEOUT) closes.
    Idle(u32),
    /// A failed connector is forgotten (it stayed to answer retried requests and to
    /// remember a denial).
    Forget(u32),
    /// Put an answerer's answer again: the DHT said its put failed.
    AnswerAgain(u32),
    /// A key's signature window ends with values held: check them (see `budget.rs`).
    SignatureWindow(DhtKey),
    /// A TURN client whose allocation failed or was lost starts again (slot).
    Reallocate(usize),
}

impl NodeTimer {
    /// Why this timer was armed, for [`Node::timeout_reason`].
    fn reason(self) -> &'static str {
        match self {
            NodeTimer::Gather => "gathering",
            NodeTimer::Unmap => "port unmapping",
            NodeTimer::StunProbe(_) => "stun probe",
            NodeTimer::Announce => "announcement",
            NodeTimer::Unrouted(_) => "unrouted connection",
            NodeTimer::LookupRetry(_) => "lookup retry",
            NodeTimer::Lookup(_) => "device lookup",
            NodeTimer::Unjoined(_) => "unjoined devices",
            NodeTimer::AskLookup(_) => "ask-again lookup",
            NodeTimer::Ask(_) => "ask-again request",
            NodeTimer::Connector(_, connector::Timer::Retry) => "request retry",
            NodeTimer::Connector(_, connector::Timer::Answer) => "answer timeout",
            NodeTimer::Connector(_, connector::Timer::Tls) => "tls handshake",
            NodeTimer::Idle(_) => "idle connection",
            NodeTimer::Forget(_) => "forget failed connection",
            NodeTimer::AnswerAgain(_) => "answer put again",
            NodeTimer::SignatureWindow(_) => "signature window",
            NodeTimer::Reallocate(_) => "relay retry",
        }
    }

    /// Whether the TURN clients' clocks run before this timer fires.
    fn after_relays(self) -> bool {
        !matches!(
            self,
            NodeTimer::Gather | NodeTimer::StunProbe(_) | NodeTimer::Announce
        )
    }

    /// The agents that run their clocks before this timer fires: those of the connectors
    /// up to this id.
    fn after_agents(self) -> Option<u32> {
        match self {
            NodeTimer::Connector(id, _) | NodeTimer::Idle(id) => Some(id),
            NodeTimer::Forget(_) => Some(u32::MAX),
            _ => None,
        }
    }
}

impl Node {
    /// Why [`poll_timeout`](crate::io::Endpoint::poll_timeout) chose its deadline, for logs
    /// and traces: one of the node's timers (`"gathering"`, `"announcement"`,
    /// `"unrouted connection"`, `"lookup retry"`, `"device lookup"`, `"unjoined devices"`,
    /// `"request retry"`, `"answer timeout"`, `"tls handshake"`, `"idle connection"`,
    /// `"forget failed connection"`, `"signature window"`, `"relay retry"`), an ICE agent's (its own
    /// [`timeout_reason`](crate::ice::Agent::timeout_reason)), `"turn client"` or
    /// `"transfer"`. When several fall due at once, the first of that list.
    pub fn timeout_reason(&self) -> Option<&'static str> {
        let mut best = self.timers.next_timer().map(|(t, at)| (at, t.reason()));
        let mut take = |at: Option<Instant>, why: Option<&'static str>| {
            if let (Some(at), Some(why)) = (at, why) {
                if best.is_none_or(|(b, _)| at < b) {
                    best = Some((at, why));
                }
            }
        };
        for c in self.connectors.values() {
            take(c.clock_timeout(), c.clock_timeout_reason());
        }
        take(self.relays.poll_timeout(), Some("turn client"));
        take(self.transfers.poll_timeout(), Some("transfer"));
        best.map(|(_, why)| why)
    }

    /// Runs every clock due at `now` but the transfers': the node's timers in key order,
    /// the TURN clients' and the agents' at their place among them.
    pub(super) fn run_timers(&mut self, now: Instant) {
        let mut relays_ran = false;
        let mut agents = self.connector_ids().into_iter().peekable();
        while let Some(timer) = self.timers.pop_expired(now) {
            if !relays_ran && timer.after_relays() {
                self.relays.handle_timeout(now);
                relays_ran = true;
            }
            if let Some(upto) = timer.after_agents() {
                while let Some(id) = agents.next_if(|id| *id <= upto) {
                    self.connector_clock(now, id);
                }
            }
            self.on_timer(now, timer);
        }
        if !relays_ran {
            self.relays.handle_timeout(now);
        }
        for id in agents {
            self.connector_clock(now, id);
        }
    }

    fn on_timer(&mut self, now: Instant, timer: NodeTimer) {
        match timer {
            NodeTimer::Gather => {
                // Go ahead with whatever was gathered.
                self.relays.give_up_gathering();
                self.reflexive.give_up();
                self.listeners_pending = 0;
                self.check_gathered(now);
            }
            NodeTimer::StunProbe(index) => self.probe_expired(now, index),
            NodeTimer::Unmap => self.ports_unmapped(),
            NodeTimer::Announce => {
                self.announce();
                self.timers
                    .set(NodeTimer::Announce, now + super::ANNOUNCE_EVERY);
            }
            NodeTimer::Unrouted(inbound) => {
                if self.demux.is_waiting(inbound) {
                    self.dropped.unrouted += 1;
                    self.drop_inbound(inbound);
                }
            }
            NodeTimer::LookupRetry(key) => self.retry_lookup(now, key),
            NodeTimer::Lookup(group) => self.lookup_failed(group),
            NodeTimer::Unjoined(group) => self.subs_unjoined(group),
            NodeTimer::AskLookup(transfer) => self.ask_lookup_over(transfer),
            NodeTimer::Ask(request) => self.ask_timed_out(now, request),
            NodeTimer::Connector(id, timer) => self.connector_timer(now, id, timer),
            NodeTimer::Idle(id) => self.close_idle(now, id),
            NodeTimer::Forget(id) => self.forget_connector(id),
            NodeTimer::AnswerAgain(id) => self.put_answer_again(id),
            NodeTimer::SignatureWindow(key) => self.signature_window(now, key),
            NodeTimer::Reallocate(slot) => self.reallocate(now, slot),
        }
    }

    /// The timers due at `now`, in the order of their deadlines, left armed (for work
    /// that is done after every call rather than in `handle_timeout`).
    pub(super) fn due_timers(&mut self, now: Instant) -> Vec<NodeTimer> {
        let mut due = Vec::new();
        while let Some((timer, at)) = self.timers.next_timer().filter(|(_, at)| *at <= now) {
            self.timers.clear(timer);
            due.push((timer, at));
        }
        for (timer, at) in &due {
            self.timers.set(*timer, *at);
        }
        due.into_iter().map(|(timer, _)| timer).collect()
    }

    /// Disarms every timer of connector `id`.
    pub(super) fn disarm_connector(&mut self, id: u32) {
        for timer in connector::Timer::ALL {
            self.timers.clear(NodeTimer::Connector(id, timer));
        }
    }

    /// Removes connector `id` with its timers (its routes are the caller's business).
    pub(super) fn remove_connector(&mut self, id: u32) -> Option<Connector> {
        self.disarm_connector(id);
        self.timers.clear(NodeTimer::Idle(id));
        self.demux.forget_agent(id);
        self.relays.forget_connects(id);
        self.timers.clear(NodeTimer::Forget(id));
        self.connectors.remove(&id)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use core::net::{IpAddr, Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use super::*;
    use crate::io::{Endpoint, Input, ListenerId};
    use crate::node::{ANNOUNCE_EVERY, GATHER_TIMEOUT, NodeConfig};
    use crate::tls::{Account, UnixAnchor, Validity, derive_seed};

    const T0: u64 = 1_795_651_200;

    /// A node with one account and device, no TURN, one local address (for the node's
    /// own unit tests).
    pub(in crate::node) fn node(now: Instant) -> Node {
        let validity = Validity::days_from(T0 - 86_400, 365);
        let account = Account::from_seed(&derive_seed(b"timers", "a"), validity).expect("account");
        let device = account
            .add_device(&derive_seed(b"timers", "a1"), validity)
            .expect("device");
        let anchor = UnixAnchor {
            instant: now,
            unix: Duration::from_secs(T0),
        };
        let announce = account.announce(&device).expect("announce");
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        Node::new(now, NodeConfig::new(device, announce, vec![ip], 7, anchor))
    }

    #[test]
    fn the_reason_names_the_deadline_poll_timeout_chose() {
        let t0 = Instant::now();
        let mut n = node(t0);
        assert_eq!(n.poll_timeout(), Some(t0 + GATHER_TIMEOUT));
        assert_eq!(n.timeout_reason(), Some("gathering"));
        // Without TURN servers, a bound listener ends gathering.
        let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 4000);
        n.handle_input(
            t0,
            Input::Listening {
                listener: ListenerId(1),
                local,
            },
        )
        .expect("listening");
        assert_eq!(n.poll_timeout(), Some(t0 + ANNOUNCE_EVERY));
        assert_eq!(n.timeout_reason(), Some("announcement"));
        assert_eq!(n.bugs().total(), 0);
    }
}
