//! The node's connectors, one per remote device: making them, giving them what they need
//! from the node (candidates, random numbers, names for connections), carrying out what
//! they ask ([`connector::Output`]), failing and forgetting them.
//!
//! The connector itself (its stages, its agent, TLS session and multiplexer) is
//! [`Connector`]'s; this file is the node's side of that conversation.

use core::net::SocketAddr;
use std::time::{Duration, Instant};

use super::connector::{self, Connector, Env, Link, Stage};
use super::counters::bug;
use super::demux::Route;
use super::timers::NodeTimer;
use super::{FORGET_FAILED, IDLE_TIMEOUT, MAX_CONNECTORS, MAX_CONNECTORS_PER_ACCOUNT, Node};
use crate::ice;
use crate::io::{ConnId, Event, Output};
use crate::signal::{PeerConnection, Recipient};
use crate::tls::{AccountId, DeviceId};
use crate::transfer::{self, TransferId};

impl Node {
    /// The connector to `device`, made (as requester) if there is none; `None` if there is
    /// no room for one (see [`room_for_connector`](Self::room_for_connector)).
    pub(super) fn ensure_connector(
        &mut self,
        now: Instant,
        account: AccountId,
        device: DeviceId,
        recipient: Recipient,
    ) -> Option<u32> {
        if let Some(id) = self.by_device.get(&device).copied() {
            // An answer of ours that is not through yet may be to a request a process of
            // that device left on the DHT before it went (a value outlives its process by
            // minutes): waiting on it cost the whole ICE deadline and then failed the send
            // (seen by hand: `ferry send` one way, then the other way, failed after 40 s).
            // We ask too; whichever connection is ready first carries what waits for the
            // device (see `connector_failed`).
            let c = &self.connectors[&id];
            if c.is_requester() || matches!(c.stage(), Stage::Ready | Stage::Failed) {
                return Some(id);
            }
        }
        if !self.room_for_connector(now, account) {
            return None;
        }
        let id = self.next_connector;
        self.next_connector += 1;
        let c = Connector::requester(account, device, recipient, self.rng.next_u64());
        self.connectors.insert(id, c);
        self.by_device.insert(device, id);
        if self.gathered {
            self.connector_gathered(now, id);
        }
        Some(id)
    }

    /// Whether `account` is ours or a contact's.
    fn trusted(&self, account: &AccountId) -> bool {
        *account == self.config.device.account() || self.config.contacts.contains(account)
    }

    /// Makes room for one more connector of `account` within [`MAX_CONNECTORS_PER_ACCOUNT`]
    /// and [`MAX_CONNECTORS`]: the oldest failed connector where room lacks (that account's,
    /// or anyone's) is forgotten; for an account of ours or a contact's, the oldest
    /// connector of a stranger that is not ready yet is given up first if need be. `false`
    /// when there is still no room.
    pub(super) fn room_for_connector(&mut self, now: Instant, account: AccountId) -> bool {
        loop {
            let of_account = self.connections_of(&account);
            let account_full = of_account >= MAX_CONNECTORS_PER_ACCOUNT;
            if !account_full && self.connectors.len() < MAX_CONNECTORS {
                return true;
            }
            let in_scope = |c: &Connector| !account_full || c.peer().account == account;
            let failed = self
                .connectors
                .iter()
                .find(|(_, c)| in_scope(c) && c.stage() == Stage::Failed)
                .map(|(id, _)| *id);
            if let Some(id) = failed {
                self.forget_connector(id);
                continue;
            }
            let stranger = self
                .connectors
                .iter()
                .find(|(_, c)| {
                    in_scope(c) && c.stage() != Stage::Ready && !self.trusted(&c.peer().account)
                })
                .map(|(id, _)| *id);
            match stranger.filter(|_| self.trusted(&account)) {
                Some(id) => {
                    self.connector_failed(
                        id,
                        "given up for a contact (too many connections)".to_owned(),
                    );
                    // Its connections close before it is forgotten.
                    self.drain_connector(now, id);
                }
                None => return false,
            }
        }
    }

    /// Candidates are known: the requester puts its request, the answerer permits the
    /// requester on its relays.
    pub(super) fn connector_gathered(&mut self, now: Instant, id: u32) {
        if self.with_env(id, |c, env| c.gathered(now, env)) {
            self.on_connector_outputs(now, id);
        }
    }

    /// Runs `f` on connector `id` with what it needs from the node (configuration, random
    /// numbers, our candidates and addresses); `false` if there is no such connector.
    fn with_env(&mut self, id: u32, f: impl FnOnce(&mut Connector, Env<'_>)) -> bool {
        // A relay-only node reveals no address of its own, not even its NAT's.
        let public = if self.config.relay_only {
            Vec::new()
        } else {
            self.relays.public()
        };
        let (candidates, relayed) = (self.local_candidates(), self.relays.relayed());
        let Some(c) = self.connectors.get_mut(&id) else {
            return false;
        };
        let env = Env {
            config: &self.config,
            rng: &mut self.rng,
            candidates,
            public,
            relayed,
        };
        f(c, env);
        true
    }

    /// Requester: the answer came.
    pub(super) fn connector_answer(&mut self, now: Instant, id: u32, answer: PeerConnection) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        if !c.handle_answer(now, answer) {
            self.dropped.replayed += 1;
            return;
        }
        self.on_connector_outputs(now, id);
    }

    /// Runs the clocks of one connector's agent and multiplexer.
    pub(super) fn connector_clock(&mut self, now: Instant, id: u32) {
        if let Some(c) = self.connectors.get_mut(&id) {
            c.handle_clock_timeout(now);
        }
    }

    /// One of a connector's timers fired.
    pub(super) fn connector_timer(&mut self, now: Instant, id: u32, timer: connector::Timer) {
        if let Some(c) = self.connectors.get_mut(&id) {
            c.handle_timer(now, timer);
            self.on_connector_outputs(now, id);
        }
    }

    /// Feeds one connector's agent.
    pub(super) fn agent_input(&mut self, now: Instant, id: u32, input: ice::Input) {
        if let Some(c) = self.connectors.get_mut(&id) {
            if let Err(e) = c.handle_agent_input(now, input) {
                bug(&mut self.bugs.agent_input, "ICE agent input", &e);
            }
        }
    }

    /// Drains one connector: its agent, then its TLS session, then its multiplexer, each
    /// until it has nothing more, carrying out what the connector asks after each step.
    pub(super) fn drain_connector(&mut self, now: Instant, id: u32) -> bool {
        let mut moved = false;
        while self
            .connectors
            .get_mut(&id)
            .is_some_and(|c| c.poll_agent(now, &self.config))
        {
            moved = true;
            self.on_connector_outputs(now, id);
        }
        while self
            .connectors
            .get_mut(&id)
            .is_some_and(|c| c.poll_tls(now, &mut self.bugs))
        {
            moved = true;
            self.on_connector_outputs(now, id);
        }
        while self
            .connectors
            .get_mut(&id)
            .is_some_and(|c| c.poll_mux(now, &mut self.bugs))
        {
            moved = true;
            self.on_connector_outputs(now, id);
        }
        moved
    }

    /// Carries out everything connector `id` asked, in order.
    fn on_connector_outputs(&mut self, now: Instant, id: u32) {
        while let Some(out) = self
            .connectors
            .get_mut(&id)
            .and_then(Connector::poll_output)
        {
            self.on_connector_output(now, id, out);
        }
    }

    fn on_connector_output(&mut self, now: Instant, id: u32, out: connector::Output) {
        match out {
            connector::Output::Put { key, value } => {
                self.out.push_back(Output::DhtPut { key, value })
            }
            connector::Output::Relisten => {
                let key = crate::signal::peer_key(&self.config.device.id());
                self.out.push_back(Output::DhtCancelListen { key });
                self.out.push_back(Output::DhtListen { key });
            }
            connector::Output::Permit(ips) => self.relays.permit(now, &ips),
            connector::Output::AgentReady(ufrag) => self.agent_ready(now, id, ufrag),
            connector::Output::Connect {
                conn,
                remote,
                local_ip,
                relayed: true,
                ..
            } => self.connect_through_relay(now, id, conn, remote, local_ip),
            connector::Output::Connect {
                conn,
                remote,
                local_ip,
                timeout,
                ..
            } => {
                // Connect from the listening port of that address, so a NAT maps it as it
                // maps our passive candidate.
                let local_port = self
                    .listening()
                    .into_iter()
                    .find(|a| a.ip() == local_ip)
                    .map(|a| a.port());
                self.connect_agent(id, conn, remote, local_port, timeout);
            }
            connector::Output::Send { link, data } => match link {
                Link::Direct(conn) => self.out.push_back(Output::Send { conn, data }),
                Link::Relay { slot, turn_conn } => {
                    if let Err(e) = self.relays.send(slot, turn_conn, data) {
                        bug(&mut self.bugs.relay_send, "relayed stream", &e);
                    }
                }
            },
            connector::Output::Close(link) => {
                // A closed link is paused by nobody any more.
                self.pausers.remove(&link);
                match link {
                    Link::Direct(conn) => {
                        self.demux.forget(conn);
                        self.out.push_back(Output::Close { conn });
                    }
                    Link::Relay { slot, turn_conn } => self.relays.close_peer(slot, turn_conn),
                }
            }
            connector::Output::PauseReading(link, pause) => {
                self.pause_link(link, Pauser::Agent, pause)
            }
            connector::Output::Ready => {
                if let Some(c) = self.connectors.get(&id)
                    && let Some(mut path) = c.path()
                {
                    let device = c.device();
                    path.mapped = c
                        .selected_local()
                        .is_some_and(|local| self.through_mapping(&path, local));
                    self.out
                        .push_back(Output::Event(Event::Connected { device, path }));
                }
                self.open_pending_channels(now, id)
            }
            connector::Output::Channel(event) => self.on_mux_event(now, id, event),
            connector::Output::Arm(timer, at) => {
                self.timers.set(NodeTimer::Connector(id, timer), at)
            }
            connector::Output::Disarm(timer) => self.timers.clear(NodeTimer::Connector(id, timer)),
            connector::Output::Fail(why) => self.connector_failed(id, why),
            connector::Output::Ended => self.connector_ended(now, id),
        }
    }

    /// Asks the driver for a connection of connector `id`'s agent (its `agent_conn`).
    pub(super) fn connect_agent(
        &mut self,
        id: u32,
        agent_conn: ConnId,
        remote: SocketAddr,
        local_port: Option<u16>,
        timeout: Duration,
    ) {
        let n = self.new_conn();
        self.demux.set_route(
            n,
            Route::Agent {
                connector: id,
                agent_conn,
            },
        );
        if local_port.is_some() {
            self.demux.connecting_from_port(n, remote, timeout);
        }
        if let Some(c) = self.connectors.get_mut(&id) {
            c.link(agent_conn, Link::Direct(n));
        }
        self.out.push_back(Output::Connect {
            conn: n,
            remote,
            local_port,
            timeout,
        });
    }

    /// `who` stops (`pause`) or lets go of reading a link: a driver connection directly, a
    /// stream relayed in through our allocation by its TURN data connection (TCP then pushes
    /// back on the relay, and the relay on the peer).
    ///
    /// Several transfers share a link, and its ICE agent pauses it too (early data): the
    /// link reads again only once every one that paused it let go. Before, one transfer's
    /// resume undid another's pause, and a transfer behind a slow disk took bytes past its
    /// write window without bound.
    pub(super) fn pause_link(&mut self, link: Link, who: Pauser, pause: bool) {
        let pausers = self.pausers.entry(link).or_default();
        let was_paused = !pausers.is_empty();
        if pause {
            pausers.insert(who);
        } else {
            pausers.remove(&who);
        }
        let paused = !pausers.is_empty();
        if pausers.is_empty() {
            self.pausers.remove(&link);
        }
        if paused != was_paused {
            self.switch_reading(link, paused);
        }
    }

    /// Whatever `who` paused, it lets go of (it ended).
    pub(super) fn release_pauses(&mut self, who: Pauser) {
        let links: Vec<Link> = self
            .pausers
            .iter()
            .filter(|(_, p)| p.contains(&who))
            .map(|(l, _)| *l)
            .collect();
        for link in links {
            self.pause_link(link, who, false);
        }
    }

    fn switch_reading(&mut self, link: Link, pause: bool) {
        match link {
            Link::Direct(conn) => self.out.push_back(if pause {
                Output::PauseReading { conn }
            } else {
                Output::ResumeReading { conn }
            }),
            Link::Relay { slot, turn_conn } => self.relays.pause_peer(slot, turn_conn, pause),
        }
    }

    /// A connector failed: everything that waited on it, or ran on it, hears why.
    pub(super) fn connector_failed(&mut self, id: u32, why: String) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        let device = c.device();
        // An answer that never got through (a request left on the DHT by a process that is
        // gone, say) is no proof the device cannot be reached: our requests try our own.
        let (answerer, account, recipient) = (!c.is_requester(), c.peer().account, c.recipient());
        let Some(was_ready) = c.fail() else {
            return;
        };
        self.disarm_connector(id);
        self.intakes_lost(id);
        self.out.push_back(Output::Event(Event::PeerUnreachable {
            device,
            reason: why.clone(),
        }));
        // A device may have a newer connector than this one (see `on_signal`): what waits
        // for the device waits for that one.
        if self.by_device.get(&device) == Some(&id) {
            // Or an older one still under way (our own request beside an answer that did
            // not get through): what waits for the device waits for that one instead.
            let other = self
                .connectors
                .iter()
                .find(|(o, c)| **o != id && c.device() == device && c.stage() != Stage::Failed)
                .map(|(o, _)| *o);
            if let Some(other) = other {
                self.by_device.insert(device, other);
            } else {
                self.by_device.remove(&device);
                self.subs_unreachable(device, &why);
                let retry = (answerer && !was_ready).then_some((account, recipient));
                self.asks_unreachable(device, &why, retry);
            }
        }
        if was_ready {
            for t in self.transfers_on(id) {
                self.pending_reset.push_back(t);
            }
        }
    }

    /// Arms the idle timer of every ready connection that no channel uses, and disarms it
    /// where one does.
    pub(super) fn watch_idle(&mut self, now: Instant) {
        for (id, c) in &self.connectors {
            let timer = NodeTimer::Idle(*id);
            if !c.is_idle() {
                self.timers.clear(timer);
            } else if !self.timers.is_set(timer) {
                self.timers.set(timer, now + IDLE_TIMEOUT);
            }
        }
    }

    /// A ready connection no channel used for [`IDLE_TIMEOUT`] closes: TLS close_notify,
    /// then the connection (the peer, idle too, closes its side on close_notify).
    pub(super) fn close_idle(&mut self, now: Instant, id: u32) {
        let Some(c) = self.connectors.get_mut(&id).filter(|c| c.is_idle()) else {
            return;
        };
        c.close_tls(now);
        // close_notify goes down to the connection before it closes.
        self.drain_connector(now, id);
        self.connector_ended(now, id);
    }

    /// A connector ends without a failure (its connection went idle, here or at the peer):
    /// its connections close, the application hears nothing, and the sub-transfers that
    /// asked it for a channel the peer never answered (started early or not) go on a new
    /// connection.
    pub(super) fn connector_ended(&mut self, now: Instant, id: u32) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        let (peer, recipient) = (c.peer(), c.recipient());
        if c.fail().is_none() {
            return;
        }
        self.disarm_connector(id);
        self.timers.clear(NodeTimer::Idle(id));
        self.drain_connector(now, id);
        if self.by_device.get(&peer.device) == Some(&id) {
            self.by_device.remove(&peer.device);
        }
        if self.requeue_pending(now, id) {
            match self.ensure_connector(now, peer.account, peer.device, recipient) {
                Some(next) => self.open_pending_channels(now, next),
                None => self.subs_unreachable(peer.device, "no room for a new connection"),
            }
        }
    }

    /// Gives a connector up at once, its connections closed (not merely forgotten): a
    /// request that loses the crossing-requests tie-break.
    pub(super) fn retire_connector(&mut self, now: Instant, id: u32) {
        if let Some(c) = self.connectors.get_mut(&id) {
            c.fail();
        }
        // The agent's closes go out before the connector does.
        self.drain_connector(now, id);
        self.demux.forget_connector(id);
        self.remove_connector(id);
    }

    /// Checks that the peer of a ready connector still answers, within
    /// [`LIVENESS_TIMEOUT`](super::LIVENESS_TIMEOUT); if not, the connector fails and its
    /// connections close.
    pub(super) fn check_liveness(&mut self, now: Instant, id: u32) {
        if let Some(c) = self.connectors.get_mut(&id) {
            c.check_liveness(now, super::LIVENESS_TIMEOUT);
        }
    }

    /// A failed connector stays long enough to answer the requester's retries (and to
    /// remember a denial), then goes: memory stays bounded by the devices in contact. Its
    /// while starts at the end of the call in which it failed; it ends in `handle_timeout`,
    /// or here when a call comes after the deadline before `handle_timeout` does.
    pub(super) fn forget_failed(&mut self, now: Instant) {
        for id in self.connector_ids() {
            let failed = self.connectors[&id].stage() == Stage::Failed;
            if failed && !self.timers.is_set(NodeTimer::Forget(id)) {
                self.timers.set(NodeTimer::Forget(id), now + FORGET_FAILED);
            }
        }
        for timer in self.due_timers(now) {
            if let NodeTimer::Forget(id) = timer {
                self.forget_connector(id);
            }
        }
    }

    /// Forgets a failed connector and its routes.
    pub(super) fn forget_connector(&mut self, id: u32) {
        self.timers.clear(NodeTimer::Forget(id));
        if self.connectors.get(&id).map(Connector::stage) == Some(Stage::Failed) {
            self.demux.forget_connector(id);
            self.remove_connector(id);
        }
    }

    /// A link wrote `bytes` more: transfers whose bytes are all out get their credit.
    pub(super) fn credit(&mut self, now: Instant, id: u32, link: Link, bytes: usize) {
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        for (tid, len) in c.handle_written(link, bytes) {
            self.transfer_input(now, tid, transfer::Input::Writable(len));
        }
    }

    /// Every connector, in order.
    pub(super) fn connector_ids(&self) -> Vec<u32> {
        self.connectors.keys().copied().collect()
    }
}

/// Who paused a link's reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Pauser {
    /// Its ICE agent, holding back early data.
    Agent,
    /// A transfer on it, behind its file writes.
    Transfer(TransferId),
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::Pauser;
    use crate::io::{ConnId, Output};
    use crate::node::connector::Link;
    use crate::node::timers::tests::node;
    use crate::transfer::TransferId;

    fn switches(n: &mut crate::node::Node) -> Vec<&'static str> {
        n.out
            .drain(..)
            .filter_map(|o| match o {
                Output::PauseReading { .. } => Some("pause"),
                Output::ResumeReading { .. } => Some("resume"),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_link_reads_again_only_once_everyone_who_paused_it_let_go() {
        let mut n = node(Instant::now());
        switches(&mut n);
        let link = Link::Direct(ConnId::Connect(7));
        let (a, b) = (
            Pauser::Transfer(TransferId(1)),
            Pauser::Transfer(TransferId(2)),
        );
        n.pause_link(link, a, true);
        n.pause_link(link, b, true);
        n.pause_link(link, Pauser::Agent, true);
        assert_eq!(switches(&mut n), ["pause"]);
        // One transfer's writes caught up: the others still wait.
        n.pause_link(link, a, false);
        n.pause_link(link, Pauser::Agent, false);
        assert!(switches(&mut n).is_empty());
        // A resume from someone who never paused changes nothing either.
        n.pause_link(link, a, false);
        assert!(switches(&mut n).is_empty());
        // The last one ends (drained): the link reads again.
        n.release_pauses(b);
        assert_eq!(switches(&mut n), ["resume"]);
        assert!(n.pausers.is_empty());
    }
}
