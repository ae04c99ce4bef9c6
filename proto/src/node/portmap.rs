//! Mapped candidates: what the driver's port-mapping service obtained from the home router
//! (PCP, NAT-PMP, UPnP-IGD; see [`crate::portmap`]) for our listening ports.
//!
//! The node asks for a mapping of each IPv4 listening port once it is bound
//! ([`Output::MapPort`]), when its configuration allows it and it is not relay only. Each
//! mapping becomes a `typ srflx tcptype passive` candidate (Jami's lines have no "mapped"
//! type); a lost one is withdrawn. Gathering does not wait for them (a router that speaks
//! none of the protocols would cost every sender the SSDP wait): a mapping known when the
//! candidates are made is offered, which a listener's is. A shutdown deletes the mappings ([`Output::UnmapPorts`]) before
//! [`Event::ShutDown`](crate::io::Event::ShutDown), waiting at most [`UNMAP_WAIT`].

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Node, NodeTimer};
use crate::io::{ListenerId, Output};
use crate::portmap::PortMapping;

/// Longest a shutdown waits for the driver to delete the mappings: a gateway that stopped
/// answering must not keep the application from quitting (the lease ends them anyway).
pub const UNMAP_WAIT: Duration = Duration::from_secs(5);

/// Where one listener's mapping stands.
#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Asked; no answer yet.
    Asked,
    /// The gateway forwards the port.
    Mapped(PortMapping),
    /// None could be made, or it was lost.
    None,
}

/// The mappings of the node's listeners.
#[derive(Debug, Default)]
pub(super) struct PortMaps {
    by_listener: BTreeMap<ListenerId, State>,
    /// A shutdown asked the driver to delete them and waits for its answer.
    unmapping: bool,
}

impl PortMaps {
    /// The external address of the mapping of the listener bound at `local`.
    pub(super) fn external(&self, local: SocketAddr) -> Option<SocketAddr> {
        self.by_listener.values().find_map(|s| match s {
            State::Mapped(m) if m.internal == local => Some(m.external),
            _ => None,
        })
    }

    /// Whether the shutdown still waits for the driver's deletions.
    pub(super) fn unmapping(&self) -> bool {
        self.unmapping
    }
}

impl Node {
    /// A listener is bound at `local`: ask for a mapping of its port when allowed (not relay
    /// only, IPv4 — what all three protocols map on home routers —, not loopback).
    pub(super) fn map_listener(&mut self, listener: ListenerId, local: SocketAddr) {
        if !self.config.port_mapping
            || self.config.relay_only
            || !local.is_ipv4()
            || local.ip().is_loopback()
            || self.portmaps.by_listener.contains_key(&listener)
        {
            return;
        }
        self.portmaps.by_listener.insert(listener, State::Asked);
        self.out.push_back(Output::MapPort { listener, local });
    }

    /// The driver's report of a mapping, new or renewed. One for a listener we do not
    /// have (closed since) is ignored.
    pub(super) fn on_port_mapped(&mut self, listener: ListenerId, mapping: PortMapping) {
        let Some(state) = self.portmaps.by_listener.get_mut(&listener) else {
            return;
        };
        let ours = self.listeners.get(&listener).and_then(|l| l.1);
        if ours != Some(mapping.internal) || self.stopping != super::Stopping::No {
            return;
        }
        *state = State::Mapped(mapping);
    }

    /// No mapping for `listener` (any more).
    pub(super) fn on_port_mapping_lost(&mut self, listener: ListenerId) {
        if let Some(state) = self.portmaps.by_listener.get_mut(&listener) {
            *state = State::None;
        }
    }

    /// A shutdown deletes the mappings first: true when it must wait for the driver.
    pub(super) fn unmap_ports(&mut self, now: Instant) -> bool {
        if self.portmaps.by_listener.is_empty() {
            return false;
        }
        self.portmaps.by_listener.clear();
        self.portmaps.unmapping = true;
        self.out.push_back(Output::UnmapPorts);
        self.timers.set(NodeTimer::Unmap, now + UNMAP_WAIT);
        true
    }

    /// The driver deleted the mappings, or [`UNMAP_WAIT`] passed.
    pub(super) fn ports_unmapped(&mut self) {
        self.portmaps.unmapping = false;
        self.timers.clear(NodeTimer::Unmap);
        self.check_shut_down();
    }

    /// Whether a direct path whose local end is on `local`'s address and whose peer is
    /// beyond its own NAT (a reflexive candidate) goes through a mapping: the gateway
    /// forwards our listening port on that address, and every direct connection of ours
    /// uses that port (passive ones accept on it, active ones connect from it), so the
    /// peer reached it, or was reached from it, through the mapping. The peer cannot tell
    /// (on the wire a mapped candidate is `srflx`), so only this side names such a path
    /// `mapped`.
    pub(super) fn through_mapping(
        &self,
        path: &crate::ice::SelectedPath,
        local: SocketAddr,
    ) -> bool {
        use crate::ice::CandidateType::{Host, PeerReflexive, ServerReflexive};
        !path.is_relayed()
            && path.local == Host
            && matches!(path.remote, PeerReflexive | ServerReflexive)
            && self
                .portmaps
                .by_listener
                .values()
                .any(|s| matches!(s, State::Mapped(m) if m.internal.ip() == local.ip()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::{Endpoint, Input};
    use crate::portmap::MappingProtocol;

    fn node(port_mapping: bool, relay_only: bool) -> (Node, Instant) {
        let now = Instant::now();
        let mut n = crate::node::timers::tests::node(now);
        n.config.port_mapping = port_mapping;
        n.config.relay_only = relay_only;
        (n, now)
    }

    fn drain(n: &mut Node) -> Vec<Output> {
        core::iter::from_fn(|| n.poll_output()).collect()
    }

    fn listening(n: &mut Node, now: Instant) -> SocketAddr {
        let local: SocketAddr = "10.0.0.1:4000".parse().expect("a test value");
        n.handle_input(
            now,
            Input::Listening {
                listener: ListenerId(1),
                local,
            },
        )
        .expect("a test value");
        local
    }

    /// The driver reports `mapping` of listener 1.
    fn mapped(n: &mut Node, now: Instant, mapping: PortMapping) {
        n.handle_input(
            now,
            Input::PortMapped {
                listener: ListenerId(1),
                mapping,
            },
        )
        .expect("a test value");
    }

    fn mapping(local: SocketAddr) -> PortMapping {
        PortMapping {
            internal: local,
            external: "198.18.2.2:4000".parse().expect("a test value"),
            lease: Duration::from_secs(3600),
            protocol: MappingProtocol::UpnpIgd,
        }
    }

    #[test]
    fn a_mapping_is_offered_as_srflx_passive_and_deleted_at_shutdown() {
        let (mut n, now) = node(true, false);
        drain(&mut n);
        let local = listening(&mut n, now);
        let asked = drain(&mut n);
        assert!(
            asked.contains(&Output::MapPort {
                listener: ListenerId(1),
                local
            }),
            "{asked:?}"
        );
        mapped(&mut n, now, mapping(local));
        let offered = n.local_candidates();
        let mapped: Vec<_> = offered
            .iter()
            .filter(|c| c.addr == "198.18.2.2:4000".parse().expect("a test value"))
            .collect();
        assert_eq!(mapped.len(), 1, "{offered:?}");
        assert_eq!(mapped[0].kind, crate::ice::CandidateType::ServerReflexive);
        assert_eq!(mapped[0].tcp_type, Some(crate::ice::TcpType::Passive));

        n.shutdown(now);
        let out = drain(&mut n);
        assert!(out.contains(&Output::UnmapPorts), "{out:?}");
        assert!(
            !out.contains(&Output::Event(crate::io::Event::ShutDown)),
            "waits for the deletion"
        );
        n.handle_input(now, Input::PortsUnmapped)
            .expect("a test value");
        assert!(drain(&mut n).contains(&Output::Event(crate::io::Event::ShutDown)));
    }

    #[test]
    fn a_lost_mapping_is_withdrawn_and_a_silent_driver_does_not_hold_the_shutdown() {
        // SECURITY: row 143
        let (mut n, now) = node(true, false);
        let local = listening(&mut n, now);
        mapped(&mut n, now, mapping(local));
        n.handle_input(
            now,
            Input::PortMappingLost {
                listener: ListenerId(1),
                reason: "renewal refused".into(),
            },
        )
        .expect("a test value");
        assert!(
            n.local_candidates()
                .iter()
                .all(|c| c.kind != crate::ice::CandidateType::ServerReflexive)
        );
        // Someone else's mapping (not our listening address) is not offered.
        let mut other = mapping(local);
        other.internal = "10.0.0.9:4000".parse().expect("a test value");
        mapped(&mut n, now, other);
        assert!(
            n.local_candidates()
                .iter()
                .all(|c| c.kind != crate::ice::CandidateType::ServerReflexive)
        );

        n.shutdown(now);
        drain(&mut n);
        let later = now + UNMAP_WAIT;
        n.handle_timeout(later);
        assert!(drain(&mut n).contains(&Output::Event(crate::io::Event::ShutDown)));
    }

    #[test]
    fn relay_only_and_a_config_without_mapping_never_ask() {
        for (port_mapping, relay_only) in [(false, false), (true, true)] {
            let (mut n, now) = node(port_mapping, relay_only);
            let _ = listening(&mut n, now);
            let out = drain(&mut n);
            assert!(
                !out.iter().any(|o| matches!(o, Output::MapPort { .. })),
                "{out:?}"
            );
        }
    }
}
