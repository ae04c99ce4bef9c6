//! The home router's port mapping (UPnP-IGD, NAT-PMP, PCP), as the driver's `PortMapper`
//! service reports it: a node's `MapPort` for a listener behind a router built with
//! [`RouterSpec::port_mapping`](crate::RouterSpec::port_mapping) gets that port forwarded
//! from the router's external address, open to any remote, and hears `PortMapped`;
//! anywhere else it hears `PortMappingLost`, as from a driver that found no gateway. The
//! protocols' own packets are not simulated (their parsers have their own tests and
//! miniupnpd in the kernel-NAT lab): the answer comes at once, a LAN round trip to the
//! gateway being far below what the scenarios measure.

use std::net::SocketAddr;

use ferry_proto::io::{Input, ListenerId};
use ferry_proto::portmap::{MappingProtocol, PortMapping, REQUESTED_LEASE};

use super::World;
use crate::ids::HostId;

impl World {
    /// `MapPort`: forward `local`'s port on the host's gateway, if it maps ports.
    pub(crate) fn map_port(&mut self, h: HostId, listener: ListenerId, local: SocketAddr) {
        let now = self.now;
        let net = self.hosts[h.ix()].net;
        let granted = self.networks[net.ix()].uplink.and_then(|r| {
            let router = &mut self.routers[r.ix()];
            let kind = router.kind(local.ip());
            let rules = kind.rules()?;
            if !router.maps_ports || !kind.translates() {
                return None;
            }
            let external_ip = router.external(local.ip())?;
            let external = router.table.forward(&rules, now, local, external_ip)?;
            Some((r, external))
        });
        let input = match granted {
            Some((r, external)) => {
                if !self.hosts[h.ix()].forwarded.contains(&local) {
                    self.hosts[h.ix()].forwarded.push(local);
                }
                if self.tracer.is_some() {
                    self.note_router(r, format!("forward {external} → {local} (pcp)"));
                }
                Input::PortMapped {
                    listener,
                    mapping: PortMapping {
                        internal: local,
                        external,
                        lease: REQUESTED_LEASE,
                        protocol: MappingProtocol::Pcp,
                    },
                }
            }
            None => Input::PortMappingLost {
                listener,
                reason: "no gateway maps ports".to_owned(),
            },
        };
        self.input(h, input);
    }

    /// `UnmapPorts`: deletes every forward made for the host, then says so.
    pub(crate) fn unmap_ports(&mut self, h: HostId) {
        let now = self.now;
        let net = self.hosts[h.ix()].net;
        let forwarded = std::mem::take(&mut self.hosts[h.ix()].forwarded);
        if let Some(r) = self.networks[net.ix()].uplink {
            for local in forwarded {
                if self.routers[r.ix()].table.unforward(local, now) && self.tracer.is_some() {
                    self.note_router(r, format!("unforward → {local}"));
                }
            }
        }
        self.input(h, Input::PortsUnmapped);
    }
}
