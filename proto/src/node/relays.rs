//! The node's TURN allocations: one [`TurnClient`] per configured server (one per address
//! family), the permissions asked on all of them at once, and the renaming of the clients'
//! connections into the node's names.
//!
//! [`Relays`] owns the clients and what the node needs to know of each (its allocation,
//! whether gathering still waits for it). It does not own the streams relayed in through
//! an allocation: those are the demultiplexer's until routed, then a connector's. The
//! `impl Node` below carries out what the clients ask and hands their events on.

use core::net::{IpAddr, SocketAddr};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::Node;
use super::connector::Link;
use super::demux::{Inbound, Route};
use crate::Error;
use crate::ice;
use crate::io::{ConnId, ConnectError, Endpoint, Input, Output};
use crate::rng::SeededRng;
use crate::turn::{TurnClient, TurnConfig, TurnEvent};

struct Slot {
    client: TurnClient,
    /// The TURN client's connection names → the node's.
    to_node: BTreeMap<ConnId, ConnId>,
    /// (relayed, mapped) once allocated.
    allocated: Option<(SocketAddr, SocketAddr)>,
    /// Gathering no longer waits for this one (allocated, failed, or given up on).
    done: bool,
}

/// What a TURN client asks of the node, its connections already in the node's names where
/// the node gave them one.
#[derive(Debug)]
pub(super) enum RelayOutput {
    /// The client opens a connection: the node names it ([`Relays::name`]) and asks the
    /// driver.
    Connect {
        turn_conn: ConnId,
        remote: SocketAddr,
        local_port: Option<u16>,
        timeout: Duration,
    },
    /// Bytes on one of the client's connections.
    Send { conn: ConnId, data: Bytes },
    /// The client closed one of its connections; its name is forgotten.
    Close { conn: ConnId },
    /// Stop (`true`) or start again reading one of the client's connections.
    PauseReading { conn: ConnId, pause: bool },
    /// An event of the client, after the slot took note of allocations.
    Event(TurnEvent),
}

/// How long after an allocation failed or was lost the node asks its TURN server again.
pub const RELAY_RETRY: Duration = Duration::from_secs(30);

/// A Connect asked on behalf of an agent, waiting for its stream (RFC 6062).
#[derive(Debug, Clone, Copy)]
struct RelayConnect {
    slot: usize,
    peer: SocketAddr,
    connector: u32,
    agent_conn: ConnId,
}

/// The node's TURN clients: see the module docs.
pub(super) struct Relays {
    slots: Vec<Slot>,
    /// Connects through our allocations for agents' relayed active candidates, oldest
    /// first; at most one per agent connection, gone with its answer.
    connects: Vec<RelayConnect>,
}

impl Relays {
    /// A client per server, each seeded from `rng` in order.
    pub(super) fn new(configs: &[TurnConfig], rng: &mut SeededRng) -> Relays {
        let slots = configs
            .iter()
            .map(|config| Slot {
                client: TurnClient::new(config.clone(), rng.next_u64()),
                to_node: BTreeMap::new(),
                allocated: None,
                done: false,
            })
            .collect();
        Relays {
            slots,
            connects: Vec::new(),
        }
    }

    // ----- getters -----

    /// How many clients there are (slots are numbered from 0).
    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Our relayed addresses.
    pub(super) fn relayed(&self) -> Vec<SocketAddr> {
        self.allocations().map(|(r, _)| r).collect()
    }

    /// Our public addresses, as the TURN servers saw us.
    pub(super) fn public(&self) -> Vec<SocketAddr> {
        self.allocations().map(|(_, m)| m).collect()
    }

    /// (relayed, mapped) of every allocation, in slot order.
    pub(super) fn allocations(&self) -> impl Iterator<Item = (SocketAddr, SocketAddr)> + '_ {
        self.slots.iter().filter_map(|s| s.allocated)
    }

    /// The relayed address of one slot, once allocated.
    pub(super) fn relayed_at(&self, slot: usize) -> Option<SocketAddr> {
        self.slots[slot].allocated.map(|(r, _)| r)
    }

    /// The slot whose allocation is relayed at `ip` and can reach `peer` (same family).
    pub(super) fn slot_at(&self, ip: IpAddr, peer: SocketAddr) -> Option<usize> {
        self.slots.iter().position(|s| {
            s.allocated
                .is_some_and(|(r, _)| r.ip() == ip && r.is_ipv4() == peer.is_ipv4())
        })
    }

    /// Connects waiting for their stream.
    pub(super) fn connects_waiting(&self) -> usize {
        self.connects.len()
    }

    /// Whether gathering waits for no client any more.
    pub(super) fn gathered(&self) -> bool {
        self.slots.iter().all(|s| s.done)
    }

    /// Whether every client is over (its allocation deleted, or never made).
    pub(super) fn released(&self) -> bool {
        self.slots.iter().all(|s| s.client.is_done())
    }

    /// The earliest deadline of any client.
    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.slots
            .iter()
            .filter_map(|s| s.client.poll_timeout())
            .min()
    }

    // ----- handle_* -----

    /// An input on one of a client's connections, already in the client's name.
    pub(super) fn handle_input(
        &mut self,
        now: Instant,
        slot: usize,
        input: Input,
    ) -> Result<(), Error> {
        self.slots[slot].client.handle_input(now, input)
    }

    /// Runs every client's clock.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        for slot in &mut self.slots {
            slot.client.handle_timeout(now);
        }
    }

    // ----- the node's calls -----

    /// Gathering stops waiting for the clients that have not answered yet.
    pub(super) fn give_up_gathering(&mut self) {
        for slot in &mut self.slots {
            slot.done = true;
        }
    }

    /// Forgets the node's name for one of `slot`'s client's connections (it never opened).
    pub(super) fn forget_conn(&mut self, slot: usize, turn_conn: ConnId) {
        self.slots[slot].to_node.remove(&turn_conn);
    }

    /// Records the node's name for a connection a client asked for.
    pub(super) fn name(&mut self, slot: usize, turn_conn: ConnId, conn: ConnId) {
        self.slots[slot].to_node.insert(turn_conn, conn);
    }

    /// Permits, on every allocation there is, those of `ips` its relay could ever be
    /// reached from (see [`relay_can_permit`]).
    pub(super) fn permit(&mut self, now: Instant, ips: &[IpAddr]) {
        for slot in &mut self.slots {
            if let Some((relayed, _)) = slot.allocated {
                let usable = ips
                    .iter()
                    .copied()
                    .filter(|ip| relay_can_permit(relayed.ip(), *ip));
                slot.client.permit(now, usable);
            }
        }
    }

    /// Connects `slot`'s allocation to `peer` for `agent_conn` of connector `connector`.
    pub(super) fn connect_peer(
        &mut self,
        now: Instant,
        slot: usize,
        peer: SocketAddr,
        connector: u32,
        agent_conn: ConnId,
    ) {
        self.connects.push(RelayConnect {
            slot,
            peer,
            connector,
            agent_conn,
        });
        self.slots[slot].client.connect_peer(now, peer);
    }

    /// Takes the oldest Connect of `slot` to `peer`: its stream opened, or it failed.
    fn answer_connect(&mut self, slot: usize, peer: SocketAddr) -> Option<(u32, ConnId)> {
        let i = self
            .connects
            .iter()
            .position(|c| c.slot == slot && c.peer == peer)?;
        let c = self.connects.remove(i);
        Some((c.connector, c.agent_conn))
    }

    /// Takes every Connect of `slot` (its client is over).
    fn take_connects(&mut self, slot: usize) -> Vec<(u32, ConnId)> {
        let (gone, kept) = std::mem::take(&mut self.connects)
            .into_iter()
            .partition::<Vec<_>, _>(|c| c.slot == slot);
        self.connects = kept;
        gone.into_iter()
            .map(|c| (c.connector, c.agent_conn))
            .collect()
    }

    /// Forgets the Connects made for connector `connector` (it is gone): their streams,
    /// if they open, are closed.
    pub(super) fn forget_connects(&mut self, connector: u32) {
        self.connects.retain(|c| c.connector != connector);
    }

    /// Sends bytes to the peer of a relayed stream.
    pub(super) fn send(
        &mut self,
        slot: usize,
        turn_conn: ConnId,
        data: Bytes,
    ) -> Result<(), Error> {
        self.slots[slot].client.send(turn_conn, data)
    }

    /// Stops (`pause`) or starts again reading a relayed stream.
    pub(super) fn pause_peer(&mut self, slot: usize, turn_conn: ConnId, pause: bool) {
        self.slots[slot].client.pause_peer(turn_conn, pause);
    }

    /// Closes a relayed stream.
    pub(super) fn close_peer(&mut self, slot: usize, turn_conn: ConnId) {
        self.slots[slot].client.close_peer(turn_conn);
    }

    /// Starts `slot`'s client again with `config`, once its allocation failed or was lost
    /// (the server restarted, say): a fresh client, which connects and allocates anew.
    /// Gathering does not wait for it. Returns `false`, and does nothing, while the old
    /// client still has a connection the node knows of.
    pub(super) fn restart(
        &mut self,
        slot: usize,
        config: &TurnConfig,
        rng: &mut SeededRng,
    ) -> bool {
        let Some(s) = self.slots.get_mut(slot) else {
            return false;
        };
        if !s.to_node.is_empty() || s.allocated.is_some() {
            return false;
        }
        s.client = TurnClient::new(config.clone(), rng.next_u64());
        true
    }

    /// Deletes every allocation.
    pub(super) fn deallocate(&mut self, now: Instant) {
        for slot in &mut self.slots {
            slot.client.deallocate(now);
        }
    }

    // ----- poll_* -----

    /// The next thing one client asks of the node. Outputs about connections the node never
    /// named are dropped here.
    pub(super) fn poll_output(&mut self, slot: usize) -> Option<RelayOutput> {
        let s = &mut self.slots[slot];
        loop {
            match s.client.poll_output()? {
                Output::Connect {
                    conn,
                    remote,
                    local_port,
                    timeout,
                } => {
                    return Some(RelayOutput::Connect {
                        turn_conn: conn,
                        remote,
                        local_port,
                        timeout,
                    });
                }
                Output::Send { conn, data } => {
                    if let Some(n) = s.to_node.get(&conn) {
                        return Some(RelayOutput::Send { conn: *n, data });
                    }
                }
                Output::Close { conn } | Output::Reset { conn } => {
                    if let Some(n) = s.to_node.remove(&conn) {
                        return Some(RelayOutput::Close { conn: n });
                    }
                }
                Output::PauseReading { conn } => {
                    if let Some(n) = s.to_node.get(&conn) {
                        return Some(RelayOutput::PauseReading {
                            conn: *n,
                            pause: true,
                        });
                    }
                }
                Output::ResumeReading { conn } => {
                    if let Some(n) = s.to_node.get(&conn) {
                        return Some(RelayOutput::PauseReading {
                            conn: *n,
                            pause: false,
                        });
                    }
                }
                Output::Event(e) => {
                    match &e {
                        TurnEvent::Allocated {
                            relayed, mapped, ..
                        } => {
                            s.allocated = Some((*relayed, *mapped));
                            s.done = true;
                        }
                        TurnEvent::Failed { .. } | TurnEvent::Deallocated => {
                            s.allocated = None;
                            s.done = true;
                        }
                        _ => {}
                    }
                    return Some(RelayOutput::Event(e));
                }
                _ => {}
            }
        }
    }
}

/// Whether a relay whose relayed address is `relayed` may be asked to permit `peer`.
///
/// A peer's unspecified, link-local or multicast address, one of the other family, or a
/// loopback address unless the relay itself is on loopback (a test's coturn), is never
/// where its connection to the relay comes from. Asking for it is worse
/// than useless: RFC 8656 §10 makes one CreatePermission carry every address, and a server
/// that refuses one of them (coturn answers 403 Forbidden IP for loopback peers) refuses
/// them all, so the peer's real addresses would be refused with it. Seen across real NATs:
/// two processes meeting through a folder DHT offer their loopback addresses too.
fn relay_can_permit(relayed: IpAddr, peer: IpAddr) -> bool {
    let special = match peer {
        IpAddr::V4(v4) => {
            (v4.is_loopback() && !relayed.is_loopback())
                || v4.is_unspecified()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            (v6.is_loopback() && !relayed.is_loopback())
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unicast_link_local()
        }
    };
    !special && relayed.is_ipv4() == peer.is_ipv4()
}

impl Node {
    /// Drains one TURN client, carrying out what it asks.
    pub(super) fn drain_relay(&mut self, now: Instant, slot: usize) -> bool {
        let mut moved = false;
        while let Some(o) = self.relays.poll_output(slot) {
            moved = true;
            match o {
                RelayOutput::Connect {
                    turn_conn,
                    remote,
                    local_port,
                    timeout,
                } => {
                    let conn = self.new_conn();
                    self.relays.name(slot, turn_conn, conn);
                    self.demux.set_route(conn, Route::Turn { slot, turn_conn });
                    self.out.push_back(Output::Connect {
                        conn,
                        remote,
                        local_port,
                        timeout,
                    });
                }
                RelayOutput::Send { conn, data } => self.out.push_back(Output::Send { conn, data }),
                RelayOutput::Close { conn } => {
                    self.demux.forget(conn);
                    self.out.push_back(Output::Close { conn });
                }
                RelayOutput::PauseReading { conn, pause } => self.out.push_back(if pause {
                    Output::PauseReading { conn }
                } else {
                    Output::ResumeReading { conn }
                }),
                RelayOutput::Event(e) => self.on_turn_event(now, slot, e),
            }
        }
        moved
    }

    /// [`NodeTimer::Reallocate`](super::timers::NodeTimer::Reallocate): `slot`'s client
    /// starts again, unless the node is stopping (or the old client is not done yet: then
    /// later).
    pub(super) fn reallocate(&mut self, now: Instant, slot: usize) {
        if self.stopping != super::Stopping::No {
            return;
        }
        let Some(config) = self.config.turn.get(slot).cloned() else {
            return;
        };
        if !self.relays.restart(slot, &config, &mut self.rng) {
            self.timers.set(
                super::timers::NodeTimer::Reallocate(slot),
                now + RELAY_RETRY,
            );
        }
    }

    /// Connector `id`'s agent connects from its relayed active candidate at `relayed_ip`:
    /// a Connect on that allocation to `remote` (RFC 6062), whose stream the agent then
    /// takes as the connection it asked for.
    pub(super) fn connect_through_relay(
        &mut self,
        now: Instant,
        id: u32,
        agent_conn: ConnId,
        remote: SocketAddr,
        relayed_ip: IpAddr,
    ) {
        match self.relays.slot_at(relayed_ip, remote) {
            Some(slot) => self.relays.connect_peer(now, slot, remote, id, agent_conn),
            // The allocation went away since the candidate was offered.
            None => self.agent_input(
                now,
                id,
                ice::Input::ConnectFailed {
                    conn: agent_conn,
                    error: ConnectError::Unreachable,
                },
            ),
        }
    }

    /// A relayed stream we asked for opened: it becomes the agent's connection, unless the
    /// agent gave up on it meanwhile (then it is closed).
    fn relay_connected(&mut self, now: Instant, slot: usize, turn_conn: ConnId, peer: SocketAddr) {
        let owner = self.relays.answer_connect(slot, peer);
        let Some((id, agent_conn)) =
            owner.filter(|(id, conn)| self.connectors.get(id).is_some_and(|c| c.agent_has(*conn)))
        else {
            return self.relays.close_peer(slot, turn_conn);
        };
        let local = self.relays.relayed_at(slot).unwrap_or(peer);
        if let Some(c) = self.connectors.get_mut(&id) {
            c.link(agent_conn, Link::Relay { slot, turn_conn });
        }
        self.agent_input(
            now,
            id,
            ice::Input::Connected {
                conn: agent_conn,
                local,
            },
        );
    }

    fn on_turn_event(&mut self, now: Instant, slot: usize, event: TurnEvent) {
        match event {
            TurnEvent::Allocated { .. } => self.check_gathered(now),
            TurnEvent::Failed { .. } | TurnEvent::Deallocated => {
                // The client closed its relayed streams with it, without a word for each:
                // the agents that use them hear it here, before they write into them again.
                for id in self.connector_ids() {
                    let gone = self.connectors[&id].relayed_through(slot);
                    for conn in gone {
                        self.agent_input(now, id, ice::Input::Reset { conn });
                    }
                }
                for (id, conn) in self.relays.take_connects(slot) {
                    self.agent_input(
                        now,
                        id,
                        ice::Input::ConnectFailed {
                            conn,
                            error: ConnectError::Unreachable,
                        },
                    );
                }
                self.check_gathered(now);
                self.check_shut_down();
                if self.stopping == super::Stopping::No {
                    // A relay that restarted lost our allocation: ask again, later (the
                    // fault sweep's TURN restart found that a node stayed without a relayed
                    // candidate for ever, unreachable if it offered only that).
                    self.timers.set(
                        super::timers::NodeTimer::Reallocate(slot),
                        now + RELAY_RETRY,
                    );
                }
            }
            // Nothing waits for a permission: a connection the relay refused before its
            // permission came is tried again by the agent.
            TurnEvent::Permitted { .. } | TurnEvent::PermissionFailed { .. } => {}
            TurnEvent::PeerStream {
                conn,
                peer,
                incoming: true,
            } => {
                let local = self.relays.relayed_at(slot).unwrap_or(peer);
                self.wait_inbound(now, Inbound::Relay(slot, conn), local, peer);
            }
            TurnEvent::PeerStream {
                conn,
                peer,
                incoming: false,
            } => self.relay_connected(now, slot, conn, peer),
            TurnEvent::PeerConnectFailed { peer, error } => {
                if let Some((id, agent_conn)) = self.relays.answer_connect(slot, peer) {
                    let error = match error {
                        // The peer's relay did not take the connection.
                        crate::turn::TurnError::ConnectionFailed => ConnectError::Refused,
                        crate::turn::TurnError::Timeout => ConnectError::TimedOut,
                        other => ConnectError::Other(format!("through the relay: {other}")),
                    };
                    self.agent_input(
                        now,
                        id,
                        ice::Input::ConnectFailed {
                            conn: agent_conn,
                            error,
                        },
                    );
                }
            }
            TurnEvent::PeerData { conn, data } => {
                self.inbound_bytes(now, Inbound::Relay(slot, conn), data)
            }
            TurnEvent::PeerWritable { conn, bytes } => {
                let link = Link::Relay {
                    slot,
                    turn_conn: conn,
                };
                for id in self.connector_ids() {
                    self.credit(now, id, link, bytes);
                }
            }
            TurnEvent::PeerClosed { conn } => {
                self.inbound_gone(now, Inbound::Relay(slot, conn), false)
            }
            _ => {}
        }
    }
}
