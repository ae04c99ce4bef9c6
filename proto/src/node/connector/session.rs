//! A connector's path once ICE selected a pair: the agent's connections and frames, the TLS
//! session over them, the channel multiplexer over TLS, and the send credit that tells a
//! transfer when its bytes have left.

use std::time::Instant;

use super::{Connector, Link, Output, Stage, Timer};
use crate::channel::{ChannelError, ChannelId, Mux, Side};
use crate::ice::{self, Agent};
use crate::io::ConnId;
use crate::node::counters::{Bugs, bug};
use crate::node::{ANSWER_TIMEOUT, NodeConfig, TLS_TIMEOUT};
use crate::tls::{self, Pin, TlsSession};
use crate::transfer::TransferId;

impl Connector {
    /// The selected link wrote `bytes` more: the transfers whose bytes are all out get
    /// their send credit back, (transfer, length) in order.
    pub(in crate::node) fn handle_written(
        &mut self,
        link: Link,
        bytes: usize,
    ) -> Vec<(TransferId, usize)> {
        let mut ready = Vec::new();
        if self.selected_link() != Some(link) {
            return ready;
        }
        self.wire_acked = (self.wire_acked + bytes as u64).min(self.wire_sent);
        while let Some(&(end, tid, len)) = self.credits.front() {
            if end > self.wire_acked {
                break;
            }
            self.credits.pop_front();
            ready.push((tid, len));
        }
        ready
    }

    /// Asks the peer to open a channel, on which bytes may go at once when `early` (the
    /// peer announced it keeps them: [`Mux::open_early`]). `None` without a multiplexer.
    pub(in crate::node) fn open_channel(
        &mut self,
        now: Instant,
        name: &str,
        early: bool,
    ) -> Option<Result<ChannelId, ChannelError>> {
        let mux = self.mux.as_mut()?;
        Some(if early {
            mux.open_early(now, name)
        } else {
            mux.open(now, name)
        })
    }

    /// Accepts a channel the peer asked for. `None` without a multiplexer.
    pub(in crate::node) fn accept_channel(
        &mut self,
        now: Instant,
        channel: ChannelId,
    ) -> Option<Result<(), ChannelError>> {
        Some(self.mux.as_mut()?.accept(now, channel))
    }

    /// Declines a channel the peer asked for. `None` without a multiplexer.
    pub(in crate::node) fn decline_channel(
        &mut self,
        now: Instant,
        channel: ChannelId,
    ) -> Option<Result<(), ChannelError>> {
        Some(self.mux.as_mut()?.decline(now, channel))
    }

    /// Whether we ended our side of a channel (`false` without a multiplexer).
    pub(in crate::node) fn channel_ended_here(&self, channel: ChannelId) -> bool {
        self.mux.as_ref().is_some_and(|m| m.ended_here(channel))
    }

    /// Ends our side of a channel. `None` without a multiplexer.
    pub(in crate::node) fn end_channel(
        &mut self,
        now: Instant,
        channel: ChannelId,
    ) -> Option<Result<(), ChannelError>> {
        Some(self.mux.as_mut()?.end(now, channel))
    }

    /// Sends a transfer's bytes on its channel and pushes them all the way down to TLS, so
    /// that their size on the wire is known. `None` without a multiplexer.
    pub(in crate::node) fn send_on_channel(
        &mut self,
        now: Instant,
        channel: ChannelId,
        data: &[u8],
        bugs: &mut Bugs,
    ) -> Option<Result<(), ChannelError>> {
        self.send_parts_on_channel(now, channel, &[data], bugs)
    }

    /// [`send_on_channel`](Self::send_on_channel) of the bytes of `parts` one after the
    /// other, none copied to join them (a DATA frame's header and its file bytes).
    pub(in crate::node) fn send_parts_on_channel(
        &mut self,
        now: Instant,
        channel: ChannelId,
        parts: &[&[u8]],
        bugs: &mut Bugs,
    ) -> Option<Result<(), ChannelError>> {
        let mux = self.mux.as_mut()?;
        let units = match mux.units(channel, parts) {
            Ok(units) => units,
            Err(e) => return Some(Err(e)),
        };
        let Some(tls) = self.tls.as_mut() else {
            return Some(Ok(()));
        };
        // Units the multiplexer queued before (requests, answers, ends) go first.
        while let Some(unit) = mux.poll_transmit() {
            if let Err(e) = tls.send(now, &unit) {
                bug(&mut bugs.tls_send, "TLS send", &e);
            }
        }
        // Headers written beside the data, not in front of a copy of it.
        let parts: Vec<&[u8]> = units
            .iter()
            .flat_map(|(header, pieces)| {
                std::iter::once(header.as_bytes()).chain(pieces.iter().copied())
            })
            .collect();
        if let Err(e) = tls.send_vectored(now, &parts) {
            bug(&mut bugs.tls_send, "TLS send", &e);
        }
        Some(Ok(()))
    }

    /// Counts `len` bytes of `tid` as in flight until the link has written everything
    /// sent so far.
    pub(in crate::node) fn expect_credit(&mut self, tid: TransferId, len: usize) {
        self.credits.push_back((self.wire_sent, tid, len));
    }

    /// Takes one output of the agent. `false` when it had none.
    pub(in crate::node) fn poll_agent(&mut self, now: Instant, config: &NodeConfig) -> bool {
        let Some(out) = self.agent.as_mut().and_then(Agent::poll_output) else {
            return false;
        };
        match out {
            ice::Output::Connect {
                conn,
                remote,
                local_ip,
                relayed,
                timeout,
            } => self.out.push_back(Output::Connect {
                conn,
                remote,
                local_ip,
                relayed,
                timeout,
            }),
            ice::Output::Send { conn, data } => {
                if self.selected == Some(conn) {
                    self.wire_sent += data.len() as u64;
                }
                if let Some(link) = self.links.get(&conn).copied() {
                    self.out.push_back(Output::Send { link, data });
                }
            }
            ice::Output::Close { conn } => {
                if let Some(link) = self.links.remove(&conn) {
                    self.out.push_back(Output::Close(link));
                }
            }
            ice::Output::PauseReading { conn } | ice::Output::ResumeReading { conn } => {
                let pause = matches!(out, ice::Output::PauseReading { .. });
                if let Some(link) = self.links.get(&conn).copied() {
                    self.out.push_back(Output::PauseReading(link, pause));
                }
            }
            ice::Output::Data { data, .. } => {
                if let Some(tls) = self.tls.as_mut() {
                    tls.handle_input(now, tls::Input::Received(data));
                }
            }
            ice::Output::Event(ice::Event::Selected {
                conn,
                local,
                remote,
            }) => {
                self.path = Some(ice::SelectedPath {
                    local: local.kind,
                    remote: remote.kind,
                    mapped: false,
                });
                self.selected_local = Some(local.addr);
                self.start_tls(now, conn, config)
            }
            ice::Output::Event(ice::Event::Failed { reason, pairs }) => {
                let why = if self.stage == Stage::Ready || self.stage == Stage::Tls {
                    format!("connection lost: {reason}")
                } else {
                    format!("ICE: {reason} after {} pairs failed", pairs.len())
                };
                self.out.push_back(Output::Fail(why));
            }
            _ => {}
        }
        true
    }

    fn start_tls(&mut self, now: Instant, conn: ConnId, config: &NodeConfig) {
        self.selected = Some(conn);
        // Roles follow the signalling: the answerer (ICE controlling) is the TLS client.
        let role = if self.requester {
            tls::Role::Server
        } else {
            tls::Role::Client
        };
        let pin = Pin {
            account: self.account,
            device: self.device,
        };
        match TlsSession::with_key_log(
            role,
            &config.device,
            pin,
            config.revocations.clone(),
            config.anchor,
            now,
            config.tls_key_log.clone(),
        ) {
            Ok(session) => {
                self.tls = Some(session.rfc4571_framed());
                self.stage = Stage::Tls;
                // The answerer's checks can succeed before its answer reaches the requester,
                // whose side of TLS waits for that answer: give it the answer's time too.
                let wait = if self.requester {
                    TLS_TIMEOUT
                } else {
                    TLS_TIMEOUT + ANSWER_TIMEOUT
                };
                self.out.push_back(Output::Arm(Timer::Tls, now + wait));
            }
            Err(e) => self.out.push_back(Output::Fail(format!("TLS: {e}"))),
        }
    }

    /// Takes one output of the TLS session. `false` when it had none.
    pub(in crate::node) fn poll_tls(&mut self, now: Instant, bugs: &mut Bugs) -> bool {
        let Some(out) = self.tls.as_mut().and_then(TlsSession::poll_output) else {
            return false;
        };
        match out {
            tls::Output::Transmit(bytes) => {
                if let Some(agent) = self.agent.as_mut() {
                    if let Err(e) = agent.send_framed(bytes) {
                        bug(&mut bugs.agent_send, "ICE agent send", &e);
                    }
                }
            }
            tls::Output::Established(_) => {
                self.out.push_back(Output::Disarm(Timer::Tls));
                self.stage = Stage::Ready;
                self.mux = Some(Mux::new(if self.requester {
                    Side::Server
                } else {
                    Side::Client
                }));
                self.out.push_back(Output::Ready);
            }
            tls::Output::Plaintext(bytes) => {
                let failed = match self.mux.as_mut() {
                    Some(mux) => mux.receive(now, bytes).is_err(),
                    None => false,
                };
                if failed {
                    self.out.push_back(Output::Fail(
                        "channels: the peer broke the multiplexing".to_owned(),
                    ));
                }
            }
            tls::Output::Closed => {
                // What the peer sent before its close_notify (a CANCEL, say) is delivered
                // before the close fails what still runs on this connection.
                while let Some(event) = self.mux.as_mut().and_then(Mux::poll_event) {
                    self.out.push_back(Output::Channel(event));
                }
                if self.mux.as_ref().is_some_and(|m| !m.in_use()) {
                    // The peer's side went idle: nothing ran here, nothing failed.
                    self.out.push_back(Output::Ended);
                } else {
                    self.out
                        .push_back(Output::Fail("connection closed by the peer".to_owned()));
                }
            }
            tls::Output::Failed(f) => self.out.push_back(Output::Fail(format!("TLS: {f}"))),
        }
        true
    }

    /// Takes one unit or event of the multiplexer. `false` when it had none.
    pub(in crate::node) fn poll_mux(&mut self, now: Instant, bugs: &mut Bugs) -> bool {
        let Some(mux) = self.mux.as_mut() else {
            return false;
        };
        if let Some(bytes) = mux.poll_transmit() {
            if let Some(tls) = self.tls.as_mut() {
                if let Err(e) = tls.send(now, &bytes) {
                    bug(&mut bugs.tls_send, "TLS send", &e);
                }
            }
            return true;
        }
        let Some(event) = mux.poll_event() else {
            return false;
        };
        self.out.push_back(Output::Channel(event));
        true
    }
}
