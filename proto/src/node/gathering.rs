//! Gathering: the candidates the node offers peers, and the moment they are known.
//!
//! Listening addresses come from the driver, mapped ones from its port-mapping service
//! ([`portmap`](super::portmap)), server-reflexive and relayed addresses from
//! the TURN clients ([`Relays`](super::relays::Relays)); connectors wait for gathering to
//! end (or for [`GATHER_TIMEOUT`](super::GATHER_TIMEOUT)) before they make their agents.

use core::net::SocketAddr;
use std::time::Instant;

use super::{Node, NodeTimer};
use crate::ice::{Candidate, CandidateType, TcpType};

impl Node {
    /// What we offer peers: host candidates on every listening address, passive, active and
    /// simultaneous-open (none when relay only), server-reflexive ones from the home router's
    /// port mappings and from what STUN and TURN servers saw (simultaneous-open too where a
    /// STUN server saw the mapping), relayed ones last, in decreasing local preference.
    pub(super) fn local_candidates(&self) -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut pref: u16 = 65535;
        let mut next_pref = || {
            let p = pref;
            pref = pref.saturating_sub(1);
            p
        };
        let listening = self.listening();
        // Relay only offers no address of ours and connects from none: a relay-only node
        // does not even listen (see `Node::new`), so `listening` is empty and only the
        // relayed candidates below remain.
        for addr in &listening {
            let p = next_pref();
            out.push(Candidate::tcp(
                CandidateType::Host,
                TcpType::Passive,
                *addr,
                p,
            ));
            out.push(Candidate::tcp(
                CandidateType::Host,
                TcpType::Active,
                *addr,
                p,
            ));
            // Our connections leave from the listening port, so that port is also a
            // simultaneous-open candidate (RFC 6544 §5.1), for peers that offer `so` ones.
            out.push(Candidate::tcp(
                CandidateType::Host,
                TcpType::SimultaneousOpen,
                *addr,
                p,
            ));
        }
        if !self.config.relay_only {
            // Where the home router forwards a listening port (PCP, NAT-PMP, UPnP-IGD): as
            // Jami does, a server-reflexive passive candidate, offered first (the gateway
            // itself said it forwards it).
            let mut reflexive: Vec<SocketAddr> = Vec::new();
            for l in &listening {
                if let Some(mapped) = self.portmaps.external(*l) {
                    reflexive.push(mapped);
                }
            }
            // Where our own STUN probes saw the NAT map a listening port: exact. Our
            // connections leave from that port through the same mapping (not an
            // address-dependent one: `reflexive` offers none behind those), so the address
            // is a simultaneous-open candidate too, the one RFC 6544 §4.2 ranks first behind
            // a NAT: a filtering NAT drops the peer's SYN to a passive address until our own
            // SYN went out, which is exactly what a simultaneous open does.
            let mut simultaneous: Vec<SocketAddr> = Vec::new();
            for l in &listening {
                for mapped in self.reflexive.reflexive(*l) {
                    if !reflexive.contains(&mapped) {
                        reflexive.push(mapped);
                        simultaneous.push(mapped);
                    }
                }
            }
            for (_, mapped) in self.relays.allocations() {
                if listening.iter().any(|a| a.ip() == mapped.ip()) {
                    continue;
                }
                // The NAT maps our listening port (we connect out from it too); with port
                // preservation the peer reaches it at the mapped address and that port.
                // Not where a probe found the mapping to depend on the destination.
                if let Some(l) = listening.iter().find(|a| a.is_ipv4() == mapped.is_ipv4())
                    && self.reflexive.mapping(*l) != super::Mapping::AddressDependent
                {
                    let guess = SocketAddr::new(mapped.ip(), l.port());
                    if !reflexive.contains(&guess) {
                        reflexive.push(guess);
                    }
                }
            }
            for addr in reflexive {
                let p = next_pref();
                out.push(Candidate::tcp(
                    CandidateType::ServerReflexive,
                    TcpType::Passive,
                    addr,
                    p,
                ));
                if simultaneous.contains(&addr) {
                    out.push(Candidate::tcp(
                        CandidateType::ServerReflexive,
                        TcpType::SimultaneousOpen,
                        addr,
                        p,
                    ));
                }
            }
        }
        for (relayed, _) in self.relays.allocations() {
            let p = next_pref();
            out.push(Candidate::tcp(
                CandidateType::Relayed,
                TcpType::Passive,
                relayed,
                p,
            ));
            // Connections to the peer's relay leave from ours (RFC 6062 Connect): for two
            // devices that reach nothing but their relays.
            out.push(Candidate::tcp(
                CandidateType::Relayed,
                TcpType::Active,
                relayed,
                p,
            ));
        }
        out
    }

    /// Gathering is over once every listener is bound and every relay answered (or the
    /// gathering timer gave up on them): the connectors waiting for it go on.
    pub(super) fn check_gathered(&mut self, now: Instant) {
        if self.gathered {
            return;
        }
        if self.listeners_pending == 0 {
            self.start_probes(now);
        }
        // Port mappings are not waited for: a router without any of the three protocols
        // costs the SSDP wait (1.5 s), too much for every sender; a mapping known when the
        // candidates are made (a listener's, long before anyone asks) is offered.
        if self.listeners_pending == 0 && self.relays.gathered() && self.reflexive.gathered() {
            self.gathered = true;
            self.timers.clear(NodeTimer::Gather);
            for id in self.connector_ids() {
                self.connector_gathered(now, id);
            }
        }
    }
}
