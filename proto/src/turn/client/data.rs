//! Data connections (RFC 6062): one TCP connection to the server per peer stream, bound to
//! its CONNECTION-ID by ConnectionBind, then a raw pipe between the owner and the peer.

use core::net::SocketAddr;
use std::time::Instant;

use stun_types::message::Message;
use turn_types::attribute::{ConnectionId, XorPeerAddress};

use super::{Request, State, TurnClient, TurnEvent};
use crate::io::{ConnId, Input, Output};
use crate::turn::TurnError;
use crate::turn::codec::StunStream;

#[derive(Debug)]
pub(super) enum DataConn {
    /// Opening the TCP connection to the server for `id`.
    Opening {
        id: u32,
        peer: SocketAddr,
        incoming: bool,
    },
    /// ConnectionBind sent; STUN until its answer.
    Binding {
        stream: StunStream,
        peer: SocketAddr,
    },
    /// A raw pipe to the peer.
    Bound,
}

impl TurnClient {
    pub(super) fn on_connection_attempt(&mut self, now: Instant, msg: &Message<'_>) {
        let _ = now;
        if self.state != State::Allocated {
            return;
        }
        let tid = msg.transaction_id();
        let (Ok(id), Ok(peer)) = (
            msg.attribute::<ConnectionId>(),
            msg.attribute::<XorPeerAddress>(),
        ) else {
            return;
        };
        self.open_data(id.id(), peer.addr(tid), true);
    }

    pub(super) fn open_data(&mut self, id: u32, peer: SocketAddr, incoming: bool) {
        let conn = ConnId::Connect(self.next_conn);
        self.next_conn += 1;
        self.data
            .insert(conn, DataConn::Opening { id, peer, incoming });
        self.out.push_back(Output::Connect {
            conn,
            remote: self.config.server,
            local_port: None,
            timeout: self.config.connect_timeout,
        });
    }

    pub(super) fn on_data_input(&mut self, now: Instant, conn: ConnId, input: Input) {
        let Some(state) = self.data.get_mut(&conn) else {
            return;
        };
        match (state, input) {
            (DataConn::Opening { id, peer, incoming }, Input::Connected { .. }) => {
                let (id, peer, incoming) = (*id, *peer, *incoming);
                self.data.insert(
                    conn,
                    DataConn::Binding {
                        stream: StunStream::new(),
                        peer,
                    },
                );
                self.request(
                    now,
                    Request::ConnectionBind {
                        conn,
                        id,
                        peer,
                        incoming,
                    },
                );
            }
            (DataConn::Opening { peer, .. }, Input::ConnectFailed { error, .. }) => {
                let peer = *peer;
                self.data.remove(&conn);
                self.event(TurnEvent::PeerConnectFailed {
                    peer,
                    error: TurnError::Unreachable(error),
                });
            }
            (DataConn::Binding { stream, .. }, Input::Received { data, .. }) => {
                stream.push(&data);
                // Exactly one message, the ConnectionBind answer, comes before the peer's bytes.
                match stream.next_message() {
                    Ok(Some(msg)) => self.on_message(now, &msg),
                    Ok(None) => {}
                    Err(_) => {
                        let peer = match self.data.remove(&conn) {
                            Some(DataConn::Binding { peer, .. }) => peer,
                            _ => return,
                        };
                        self.out.push_back(Output::Close { conn });
                        self.event(TurnEvent::PeerConnectFailed {
                            peer,
                            error: TurnError::BadResponse(
                                "not STUN before ConnectionBind's answer",
                            ),
                        });
                    }
                }
            }
            (DataConn::Bound, Input::Received { data, .. }) => {
                self.event(TurnEvent::PeerData { conn, data })
            }
            (DataConn::Bound, Input::Writable { bytes, .. }) => {
                self.event(TurnEvent::PeerWritable { conn, bytes })
            }
            (_, Input::HalfClosed { .. } | Input::Closed { .. } | Input::Reset { .. }) => {
                let was = self.data.remove(&conn);
                // The pending bind, if any, fails with the connection.
                self.pending.retain(|_, p| !matches!(p.request, Request::ConnectionBind { conn: c, .. } if c == conn));
                self.out.push_back(Output::Close { conn });
                match was {
                    Some(DataConn::Bound) => self.event(TurnEvent::PeerClosed { conn }),
                    Some(DataConn::Binding { peer, .. } | DataConn::Opening { peer, .. }) => self
                        .event(TurnEvent::PeerConnectFailed {
                            peer,
                            error: TurnError::ConnectionFailed,
                        }),
                    None => {}
                }
            }
            _ => {}
        }
    }
}
