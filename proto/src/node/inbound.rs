//! The node's side of each driver connection: an input goes to whoever it belongs to (a TURN
//! client, a STUN probe, an ICE agent), and a connection that belongs to nobody yet waits in
//! the [`Demux`](super::demux::Demux) for its first check, under the budgets that module
//! states, until its agent appears or its time is up. Closing and dropping such connections is
//! here too.

use core::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::Node;
use super::connector::Link;
use super::counters::bug;
use super::demux::{Inbound, Pushed, Route, UNROUTED_TIMEOUT};
use super::timers::NodeTimer;
use crate::ice;
use crate::io::{ConnId, ConnectError, Input, Output};

impl Node {
    /// A connection came in: it waits for its first check, for a while; the oldest
    /// waiting connections are closed if it would not fit the budgets otherwise.
    pub(super) fn wait_inbound(
        &mut self,
        now: Instant,
        inbound: Inbound,
        local: SocketAddr,
        remote: SocketAddr,
    ) {
        for old in self.demux.make_room(remote.ip()) {
            self.dropped.evicted += 1;
            self.drop_inbound(old);
        }
        self.demux.wait(inbound, local, remote);
        self.timers
            .set(NodeTimer::Unrouted(inbound), now + UNROUTED_TIMEOUT);
    }

    /// An input about a driver connection, to whoever it belongs.
    pub(super) fn on_conn_input(&mut self, now: Instant, conn: ConnId, input: Input) {
        if matches!(input, Input::Closed { .. } | Input::Reset { .. }) {
            // Gone: nobody pauses it any more (and its name may come back for another).
            self.pausers.remove(&Link::Direct(conn));
        }
        match self.demux.route(conn) {
            Some(Route::Turn { slot, turn_conn }) => {
                // A connection that never opened leaves no socket to close: its name goes
                // now. (The client closes the others itself. Kept, the name held the slot's
                // client for ever, since a client is started again only once it holds no
                // connection: the fault sweep's seed 438, a data connection for a Connect
                // that timed out while the uplink was down, left a node without a relay.)
                let gone = matches!(input, Input::ConnectFailed { .. });
                let renamed = rename(input, turn_conn);
                if let Err(e) = self.relays.handle_input(now, slot, renamed) {
                    bug(&mut self.bugs.turn_input, "TURN client input", &e);
                }
                if gone {
                    self.relays.forget_conn(slot, turn_conn);
                    self.demux.forget(conn);
                }
            }
            Some(Route::Stun) => self.on_probe_input(now, conn, input),
            Some(Route::Agent {
                connector,
                agent_conn,
            }) => match input {
                Input::Connected { local, .. } => {
                    self.demux.connected_from_port(conn);
                    self.agent_input(
                        now,
                        connector,
                        ice::Input::Connected {
                            conn: agent_conn,
                            local,
                        },
                    )
                }
                Input::ConnectFailed { error, .. } => {
                    let from_port = self.demux.connected_from_port(conn);
                    if let (Some((remote, timeout)), ConnectError::LocalPortUnavailable) =
                        (from_port, &error)
                    {
                        // The listening port is still taken towards that remote, by an old
                        // connection a lost NAT mapping or a dead peer left closing (a
                        // kernel keeps it for minutes): the same pair, from any port.
                        self.demux.forget(conn);
                        return self.connect_agent(connector, agent_conn, remote, None, timeout);
                    }
                    self.agent_input(
                        now,
                        connector,
                        ice::Input::ConnectFailed {
                            conn: agent_conn,
                            error,
                        },
                    )
                }
                Input::Received { data, .. } => self.agent_input(
                    now,
                    connector,
                    ice::Input::Received {
                        conn: agent_conn,
                        data,
                    },
                ),
                Input::Writable { bytes, .. } => {
                    self.credit(now, connector, Link::Direct(conn), bytes)
                }
                Input::HalfClosed { .. } | Input::Closed { .. } => {
                    self.demux.forget(conn);
                    self.agent_input(now, connector, ice::Input::Closed { conn: agent_conn });
                }
                Input::Reset { .. } => {
                    self.demux.forget(conn);
                    self.agent_input(now, connector, ice::Input::Reset { conn: agent_conn });
                }
                _ => {}
            },
            Some(Route::Unrouted) => match input {
                Input::Received { data, .. } => {
                    self.inbound_bytes(now, Inbound::Driver(conn), data)
                }
                Input::HalfClosed { .. } | Input::Closed { .. } => {
                    self.inbound_gone(now, Inbound::Driver(conn), false)
                }
                Input::Reset { .. } => self.inbound_gone(now, Inbound::Driver(conn), true),
                _ => {}
            },
            None => {}
        }
    }

    /// Bytes on an accepted or relayed-in stream: to its agent, or buffered until routed.
    pub(super) fn inbound_bytes(&mut self, now: Instant, inbound: Inbound, data: Bytes) {
        if let Some((connector, agent_conn)) = self.agent_of_inbound(inbound) {
            return self.agent_input(
                now,
                connector,
                ice::Input::Received {
                    conn: agent_conn,
                    data,
                },
            );
        }
        match self.demux.push(inbound, data) {
            Pushed::NotWaiting | Pushed::Buffered => {}
            Pushed::Route(id) => self.route_to(now, inbound, id),
            Pushed::Refused => {
                self.dropped.unrouted += 1;
                self.drop_inbound(inbound);
            }
        }
    }

    /// Gives a waiting connection, and what it brought, to the agent of connector `id`.
    fn route_to(&mut self, now: Instant, inbound: Inbound, id: u32) {
        let Some(u) = self.demux.take(inbound) else {
            return;
        };
        self.timers.clear(NodeTimer::Unrouted(inbound));
        let link = match inbound {
            Inbound::Driver(conn) => {
                self.demux.set_route(
                    conn,
                    Route::Agent {
                        connector: id,
                        agent_conn: conn,
                    },
                );
                Link::Direct(conn)
            }
            Inbound::Relay(slot, turn_conn) => Link::Relay { slot, turn_conn },
        };
        let Some(c) = self.connectors.get_mut(&id) else {
            return;
        };
        let agent_conn = c.adopt(link);
        self.agent_input(
            now,
            id,
            ice::Input::Accepted {
                conn: agent_conn,
                local: u.local,
                remote: u.remote,
            },
        );
        for data in u.buffered {
            self.agent_input(
                now,
                id,
                ice::Input::Received {
                    conn: agent_conn,
                    data,
                },
            );
        }
    }

    /// Connector `id` made its agent: the connections that named it go there.
    pub(super) fn agent_ready(&mut self, now: Instant, id: u32, ufrag: String) {
        for inbound in self.demux.agent_ready(ufrag, id) {
            self.route_to(now, inbound, id);
        }
    }

    fn agent_of_inbound(&self, inbound: Inbound) -> Option<(u32, ConnId)> {
        match inbound {
            Inbound::Driver(conn) => match self.demux.route(conn) {
                Some(Route::Agent {
                    connector,
                    agent_conn,
                }) => Some((connector, agent_conn)),
                _ => None,
            },
            Inbound::Relay(slot, turn_conn) => self.connectors.iter().find_map(|(id, c)| {
                c.agent_conn(Link::Relay { slot, turn_conn })
                    .map(|a| (*id, a))
            }),
        }
    }

    /// An accepted or relayed-in stream ended.
    pub(super) fn inbound_gone(&mut self, now: Instant, inbound: Inbound, reset: bool) {
        if let Inbound::Relay(slot, turn_conn) = inbound {
            self.pausers.remove(&Link::Relay { slot, turn_conn });
        }
        if self.demux.is_waiting(inbound) {
            // Our side closes too, so the driver frees the socket (a peer's FIN gets ours).
            return self.close_inbound(inbound);
        }
        if let Some((connector, agent_conn)) = self.agent_of_inbound(inbound) {
            let input = if reset {
                ice::Input::Reset { conn: agent_conn }
            } else {
                ice::Input::Closed { conn: agent_conn }
            };
            self.agent_input(now, connector, input);
        }
    }

    /// Closes an accepted or relayed-in stream, routed or not.
    pub(super) fn close_inbound(&mut self, inbound: Inbound) {
        self.demux.remove(inbound);
        self.timers.clear(NodeTimer::Unrouted(inbound));
        match inbound {
            Inbound::Driver(conn) => self.out.push_back(Output::Close { conn }),
            Inbound::Relay(slot, turn_conn) => self.relays.close_peer(slot, turn_conn),
        }
    }

    /// Drops an unrouted stream whose peer broke a rule (silent too long, too many bytes,
    /// no check, no room): an accepted connection is reset, since we have nothing to deliver
    /// on it and a graceful close would hold its socket until the peer's FIN, which a
    /// stranger never sends ([`CLOSE_LINGER`](crate::io::CLOSE_LINGER)).
    pub(super) fn drop_inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Driver(conn) => {
                self.demux.remove(inbound);
                self.timers.clear(NodeTimer::Unrouted(inbound));
                self.out.push_back(Output::Reset { conn });
            }
            Inbound::Relay(..) => self.close_inbound(inbound),
        }
    }
}

/// Gives an input the connection name a child knows.
fn rename(input: Input, to: ConnId) -> Input {
    match input {
        Input::Connected { local, .. } => Input::Connected { conn: to, local },
        Input::ConnectFailed { error, .. } => Input::ConnectFailed { conn: to, error },
        Input::Received { data, .. } => Input::Received { conn: to, data },
        Input::Writable { bytes, .. } => Input::Writable { conn: to, bytes },
        Input::HalfClosed { .. } => Input::HalfClosed { conn: to },
        Input::Closed { .. } => Input::Closed { conn: to },
        Input::Reset { .. } => Input::Reset { conn: to },
        other => other,
    }
}
