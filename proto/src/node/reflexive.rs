//! Server-reflexive addresses of our own: a STUN Binding (RFC 8489 §6) over TCP from each
//! listening port to each configured STUN server, once the listeners are bound.
//!
//! The Binding goes out from the listening port itself (address and port reuse, as the
//! active ICE checks do), so the address the server saw is where the NAT maps that port:
//! the server-reflexive candidate, with no relay. With answers from two servers on
//! different addresses the node learns the NAT's mapping behaviour (RFC 4787 §4.1): the
//! same mapped port from both is an endpoint-independent mapping; different ports mean
//! the mapping depends on the destination, so a peer would not reach us at any address a
//! server saw, and no server-reflexive candidate is offered (nor the one a TURN server's
//! mapped address suggests).
//!
//! [`Reflexive`] owns the probes and their results; the `impl Node` below opens, feeds and
//! closes their connections. A probe's connection is closed as soon as it answered, failed
//! or ran out of time: the mapping it made stays in the NAT for the checks that follow.

use core::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::demux::Route;
use super::{Node, NodeTimer};
use crate::io::{ConnId, Input, Output};
use crate::stun::{BINDING, Builder, Class, StunMessage};

/// How long one probe may take, connection included; past it the probe failed.
pub const STUN_TIMEOUT: Duration = Duration::from_secs(3);

/// The largest answer a probe reads (a Binding success is well under 100 bytes).
const MAX_ANSWER: usize = 1024;

/// What the probes found out about the NAT's mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Fewer than two servers on different addresses answered for one port.
    Unknown,
    /// No translation: the servers saw our own address.
    None,
    /// One mapped address whatever the server: server-reflexive candidates can work.
    EndpointIndependent,
    /// Different mapped ports for different servers: server-reflexive candidates cannot.
    AddressDependent,
}

struct Probe {
    server: SocketAddr,
    /// The listening address the Binding goes out from.
    local: SocketAddr,
    transaction: u128,
    conn: ConnId,
    /// The answer so far.
    read: Vec<u8>,
    /// `None` while it runs; then what the server saw, if it answered.
    result: Option<Option<SocketAddr>>,
}

/// The node's STUN probes: see the module docs.
pub(super) struct Reflexive {
    servers: Vec<SocketAddr>,
    probes: Vec<Probe>,
    started: bool,
}

impl Reflexive {
    /// Probes to `servers`, started later by [`Node::start_probes`].
    pub(super) fn new(servers: &[SocketAddr]) -> Reflexive {
        Reflexive {
            servers: servers.to_vec(),
            probes: Vec::new(),
            started: false,
        }
    }

    /// Whether gathering waits for no probe any more.
    pub(super) fn gathered(&self) -> bool {
        self.started && self.probes.iter().all(|p| p.result.is_some())
    }

    /// Gathering stops waiting: probes still running count as failed.
    pub(super) fn give_up(&mut self) {
        self.started = true;
        for p in &mut self.probes {
            p.result.get_or_insert(None);
        }
    }

    /// The mapping behaviour seen from the listening address `local`.
    pub(super) fn mapping(&self, local: SocketAddr) -> Mapping {
        let answers: Vec<(SocketAddr, SocketAddr)> = self
            .probes
            .iter()
            .filter(|p| p.local == local)
            .filter_map(|p| Some((p.server, p.result??)))
            .collect();
        if answers.iter().any(|(_, m)| *m == local) {
            return Mapping::None;
        }
        let mut verdict = Mapping::Unknown;
        for (i, (server_a, mapped_a)) in answers.iter().enumerate() {
            for (server_b, mapped_b) in &answers[i + 1..] {
                if server_a.ip() == server_b.ip() {
                    continue;
                }
                if mapped_a != mapped_b {
                    return Mapping::AddressDependent;
                }
                verdict = Mapping::EndpointIndependent;
            }
        }
        verdict
    }

    /// The server-reflexive addresses that can work for the listening address `local`:
    /// none behind an address-dependent mapping, none equal to `local` itself.
    pub(super) fn reflexive(&self, local: SocketAddr) -> Vec<SocketAddr> {
        if self.mapping(local) == Mapping::AddressDependent {
            return Vec::new();
        }
        let mut out: Vec<SocketAddr> = self
            .probes
            .iter()
            .filter(|p| p.local == local)
            .filter_map(|p| p.result.flatten())
            .filter(|m| *m != local)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    fn index_of(&self, conn: ConnId) -> Option<usize> {
        self.probes
            .iter()
            .position(|p| p.conn == conn && p.result.is_none())
    }
}

/// Reads a complete STUN message at the start of `read`, if there is one yet: `Some(None)`
/// for a message that is not the Binding success of `transaction` (the probe failed).
fn answer(read: &[u8], transaction: u128) -> Option<Option<SocketAddr>> {
    if read.len() < 20 {
        return None;
    }
    // Not STUN (the two top bits of a STUN message are zero, the magic cookie follows its
    // length): no need to wait for a length it does not really have.
    if read[0] & 0xc0 != 0 || read[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return Some(None);
    }
    let len = 20 + usize::from(u16::from_be_bytes([read[2], read[3]]));
    if read.len() < len {
        return None;
    }
    let Ok(msg) = StunMessage::decode(&read[..len]) else {
        return Some(None);
    };
    let ours = msg.method == BINDING && msg.transaction == transaction;
    Some(
        msg.xor_mapped
            .filter(|_| ours && msg.class == Class::Success),
    )
}

impl Node {
    /// Opens a probe per STUN server and listening address of its family (not loopback),
    /// once every listener is bound; gathering waits for their answers.
    pub(super) fn start_probes(&mut self, now: Instant) {
        if self.reflexive.started {
            return;
        }
        self.reflexive.started = true;
        if self.config.relay_only {
            return; // A relay-only node reveals no address of its own.
        }
        let listening = self.listening();
        let servers = self.reflexive.servers.clone();
        for server in servers {
            for local in listening
                .iter()
                .filter(|l| l.is_ipv4() == server.is_ipv4() && !l.ip().is_loopback())
            {
                let conn = self.new_conn();
                let index = self.reflexive.probes.len();
                self.reflexive.probes.push(Probe {
                    server,
                    local: *local,
                    transaction: u128::from(self.rng.transaction_id()),
                    conn,
                    read: Vec::new(),
                    result: None,
                });
                self.demux.set_route(conn, Route::Stun);
                self.timers
                    .set(NodeTimer::StunProbe(index), now + STUN_TIMEOUT);
                self.out.push_back(Output::Connect {
                    conn,
                    remote: server,
                    local_port: Some(local.port()),
                    timeout: STUN_TIMEOUT,
                });
            }
        }
    }

    /// An input about a probe's connection.
    pub(super) fn on_probe_input(&mut self, now: Instant, conn: ConnId, input: Input) {
        let Some(i) = self.reflexive.index_of(conn) else {
            return;
        };
        match input {
            Input::Connected { .. } => {
                let p = &self.reflexive.probes[i];
                match Builder::new(Class::Request, BINDING, p.transaction).finish(None) {
                    Ok(request) => self.out.push_back(Output::Send {
                        conn,
                        data: Bytes::from(request.to_vec()),
                    }),
                    Err(_) => self.end_probe(now, i, None, true),
                }
            }
            Input::Received { data, .. } => {
                let p = &mut self.reflexive.probes[i];
                p.read.extend_from_slice(&data);
                match answer(&p.read, p.transaction) {
                    Some(mapped) => self.end_probe(now, i, mapped, true),
                    None if p.read.len() > MAX_ANSWER => self.end_probe(now, i, None, true),
                    None => {}
                }
            }
            Input::ConnectFailed { .. } | Input::Reset { .. } => {
                self.end_probe(now, i, None, false)
            }
            Input::HalfClosed { .. } | Input::Closed { .. } => self.end_probe(now, i, None, true),
            _ => {}
        }
    }

    /// A probe ran out of time.
    pub(super) fn probe_expired(&mut self, now: Instant, index: usize) {
        if self
            .reflexive
            .probes
            .get(index)
            .is_some_and(|p| p.result.is_none())
        {
            self.end_probe(now, index, None, true);
        }
    }

    fn end_probe(&mut self, now: Instant, i: usize, mapped: Option<SocketAddr>, close: bool) {
        let p = &mut self.reflexive.probes[i];
        p.result = Some(mapped);
        p.read = Vec::new();
        let conn = p.conn;
        self.demux.forget(conn);
        self.timers.clear(NodeTimer::StunProbe(i));
        if close {
            self.out.push_back(Output::Close { conn });
        }
        self.check_gathered(now);
    }

    /// What the probes found out about the NAT's mapping of the listening address `local`.
    pub fn nat_mapping(&self, local: SocketAddr) -> Mapping {
        self.reflexive.mapping(local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(server: &str, local: &str, mapped: Option<&str>) -> Probe {
        Probe {
            server: server.parse().expect("addr"),
            local: local.parse().expect("addr"),
            transaction: 1,
            conn: ConnId::Connect(1),
            read: Vec::new(),
            result: Some(mapped.map(|m| m.parse().expect("addr"))),
        }
    }

    fn reflexive(probes: Vec<Probe>) -> Reflexive {
        Reflexive {
            servers: Vec::new(),
            probes,
            started: true,
        }
    }

    const LOCAL: &str = "10.0.0.2:4000";

    #[test]
    fn one_mapped_port_from_two_servers_is_endpoint_independent() {
        let r = reflexive(vec![
            probe("198.18.0.1:3478", LOCAL, Some("203.0.113.1:4000")),
            probe("198.18.0.2:3478", LOCAL, Some("203.0.113.1:4000")),
        ]);
        let local = LOCAL.parse().expect("addr");
        assert_eq!(r.mapping(local), Mapping::EndpointIndependent);
        assert_eq!(r.reflexive(local), ["203.0.113.1:4000".parse().expect("a")]);
    }

    #[test]
    fn different_ports_for_different_servers_offer_no_reflexive_candidate() {
        let r = reflexive(vec![
            probe("198.18.0.1:3478", LOCAL, Some("203.0.113.1:4000")),
            probe("198.18.0.2:3478", LOCAL, Some("203.0.113.1:5123")),
        ]);
        let local = LOCAL.parse().expect("addr");
        assert_eq!(r.mapping(local), Mapping::AddressDependent);
        assert!(r.reflexive(local).is_empty());
    }

    #[test]
    fn one_server_or_two_ports_of_one_address_tell_nothing() {
        let local = LOCAL.parse().expect("addr");
        let one = reflexive(vec![probe(
            "198.18.0.1:3478",
            LOCAL,
            Some("203.0.113.1:4000"),
        )]);
        assert_eq!(one.mapping(local), Mapping::Unknown);
        assert_eq!(one.reflexive(local).len(), 1);
        let same_ip = reflexive(vec![
            probe("198.18.0.1:3478", LOCAL, Some("203.0.113.1:4000")),
            probe("198.18.0.1:3479", LOCAL, Some("203.0.113.1:4444")),
        ]);
        assert_eq!(same_ip.mapping(local), Mapping::Unknown);
        let none = reflexive(vec![probe("198.18.0.1:3478", LOCAL, Some(LOCAL))]);
        assert_eq!(none.mapping(local), Mapping::None);
        assert!(
            none.reflexive(local).is_empty(),
            "no candidate equal to a host one"
        );
    }

    #[test]
    fn answers_are_read_whole_and_only_if_they_are_ours() {
        let mapped: SocketAddr = "203.0.113.1:4000".parse().expect("addr");
        let ok = Builder::new(Class::Success, BINDING, 7)
            .xor_mapped(mapped)
            .finish(None)
            .expect("a message");
        assert_eq!(answer(&ok[..10], 7), None, "not whole yet");
        assert_eq!(answer(&ok, 7), Some(Some(mapped)));
        assert_eq!(answer(&ok, 8), Some(None), "another transaction");
        let error = Builder::new(Class::Error, BINDING, 7)
            .error_code(400, "Bad Request")
            .finish(None)
            .expect("a message");
        assert_eq!(answer(&error, 7), Some(None));
        assert_eq!(answer(&[0xff; 40], 7), Some(None), "garbage ends the probe");
    }
}
