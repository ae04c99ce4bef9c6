//! The port-mapping service: asks the home router to forward our listening ports, keeps the
//! mappings renewed, deletes them when told to (or when dropped), and reports to the node.
//!
//! Like interface discovery, this is I/O the core does not do: the node asks with
//! [`Output::MapPort`](ferry_proto::io::Output::MapPort) and hears
//! [`Input::PortMapped`] (new or renewed), [`Input::PortMappingLost`] and
//! [`Input::PortsUnmapped`]. It runs on a thread of its own, since each exchange blocks
//! for up to a few seconds on a silent gateway. Per listening port it tries PCP (RFC 6887),
//! then NAT-PMP (RFC 6886) at the default gateway, then UPnP-IGD (SSDP and SOAP), in the
//! order [`PortMapConfig::protocols`] gives, and keeps the first that maps. A mapping is
//! renewed at half its lease with the protocol that made it; if that fails, every protocol
//! is tried again, and only then is the mapping reported lost.
//!
//! Only IPv4: home routers map IPv4 ports (an IPv6 host address needs no mapping, only a
//! firewall pinhole, which is not done here).

pub mod clients;

pub use clients::{Failure, default_gateway};

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_proto::io::{Input, ListenerId};
use ferry_proto::portmap::{MappingProtocol, PortMapping, REQUESTED_LEASE, renew_after, upnp};

/// What the service may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapConfig {
    /// The protocols to try, in order (all three by default: PCP, NAT-PMP, UPnP-IGD).
    pub protocols: Vec<MappingProtocol>,
    /// The lease asked for.
    pub lease: Duration,
    /// The gateway PCP and NAT-PMP talk to; `None` reads the default route.
    pub gateway: Option<Ipv4Addr>,
}

impl Default for PortMapConfig {
    fn default() -> PortMapConfig {
        PortMapConfig {
            protocols: vec![
                MappingProtocol::Pcp,
                MappingProtocol::NatPmp,
                MappingProtocol::UpnpIgd,
            ],
            lease: REQUESTED_LEASE,
            gateway: None,
        }
    }
}

/// Most listening ports mapped at once (a node maps one per IPv4 address it listens on).
pub const MAX_MAPPINGS: usize = 16;

enum Command {
    Map {
        listener: ListenerId,
        local: SocketAddr,
    },
    UnmapAll,
}

/// How a mapping was made, to renew and delete it the same way.
#[derive(Debug, Clone)]
enum How {
    Pcp { gateway: Ipv4Addr, nonce: [u8; 12] },
    NatPmp { gateway: Ipv4Addr },
    Upnp { control: upnp::Control },
}

struct Held {
    local: SocketAddrV4,
    mapping: PortMapping,
    how: How,
    renew_at: Instant,
}

/// The service's handle. Dropping it stops the service: it deletes what it holds first, and
/// the drop waits for that (each deletion is bounded: 1.75 s for a silent PCP or NAT-PMP
/// gateway, [`HTTP_TIMEOUT`](clients::HTTP_TIMEOUT) per HTTP step), so that a process that
/// ends right after its driver leaves no mapping behind.
pub struct PortMapper {
    commands: Option<mpsc::Sender<Command>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Set when dropped: an exchange under way stops waiting for answers (an SSDP search
    /// of a network without a gateway would otherwise hold the drop 1.5 s). A mapping whose
    /// answer never came is then not known, nor deleted: its lease ends it.
    stop: Arc<AtomicBool>,
}

impl Drop for PortMapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.commands = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for PortMapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortMapper").finish_non_exhaustive()
    }
}

impl PortMapper {
    /// Starts the service's thread; what it learns goes to `deliver`.
    pub fn spawn(
        config: PortMapConfig,
        deliver: impl Fn(Input) + Send + 'static,
    ) -> std::io::Result<PortMapper> {
        let (commands, rx) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ferry-portmap".into())
            .spawn(move || Service::new(config, deliver, stopping).run(rx))?;
        Ok(PortMapper {
            commands: Some(commands),
            thread: Some(thread),
            stop,
        })
    }

    /// Map `local`'s port for `listener` (answered by `PortMapped` or `PortMappingLost`).
    pub fn map(&self, listener: ListenerId, local: SocketAddr) {
        if let Some(c) = &self.commands {
            let _ = c.send(Command::Map { listener, local });
        }
    }

    /// Delete every mapping (answered by `PortsUnmapped`).
    pub fn unmap_all(&self) {
        if let Some(c) = &self.commands {
            let _ = c.send(Command::UnmapAll);
        }
    }
}

struct Service<D> {
    config: PortMapConfig,
    deliver: D,
    held: BTreeMap<ListenerId, Held>,
    rng: ring::rand::SystemRandom,
    stop: Arc<AtomicBool>,
}

impl<D: Fn(Input)> Service<D> {
    fn new(config: PortMapConfig, deliver: D, stop: Arc<AtomicBool>) -> Self {
        Service {
            config,
            deliver,
            held: BTreeMap::new(),
            rng: ring::rand::SystemRandom::new(),
            stop,
        }
    }

    fn run(mut self, rx: mpsc::Receiver<Command>) {
        loop {
            let next = self.held.values().map(|h| h.renew_at).min();
            let got = match next {
                Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            };
            match got {
                Ok(Command::Map { listener, local }) => self.map(listener, local),
                Ok(Command::UnmapAll) => {
                    self.unmap_all();
                    (self.deliver)(Input::PortsUnmapped);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => self.renew_due(),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // The driver is gone without a shutdown: delete what we hold anyway.
                    self.unmap_all();
                    return;
                }
            }
        }
    }

    fn map(&mut self, listener: ListenerId, local: SocketAddr) {
        let lost = |reason: String| Input::PortMappingLost { listener, reason };
        let SocketAddr::V4(local) = local else {
            return (self.deliver)(lost("only IPv4 ports are mapped".into()));
        };
        if self.held.len() >= MAX_MAPPINGS && !self.held.contains_key(&listener) {
            return (self.deliver)(lost(format!("at most {MAX_MAPPINGS} ports are mapped")));
        }
        match self.obtain(local, None) {
            Ok((mapping, how)) => self.hold(listener, local, mapping, how, "mapped"),
            Err(reason) => (self.deliver)(lost(reason)),
        }
    }

    fn hold(
        &mut self,
        listener: ListenerId,
        local: SocketAddrV4,
        mapping: PortMapping,
        how: How,
        what: &str,
    ) {
        tracing::info!(
            "port {what}: {} -> {} by {} for {:?}",
            mapping.internal,
            mapping.external,
            mapping.protocol,
            mapping.lease
        );
        let renew_at = Instant::now() + renew_after(mapping.lease);
        self.held.insert(
            listener,
            Held {
                local,
                mapping,
                how,
                renew_at,
            },
        );
        (self.deliver)(Input::PortMapped { listener, mapping });
    }

    /// Tries each protocol in turn; the mapping and how, or every protocol's failure.
    fn obtain(
        &mut self,
        local: SocketAddrV4,
        had: Option<SocketAddr>,
    ) -> Result<(PortMapping, How), String> {
        let gateway = self.config.gateway.or_else(default_gateway);
        let lease = self.config.lease;
        let mut why = Vec::new();
        let stop = self.stop.clone();
        let stop = stop.as_ref();
        for protocol in self.config.protocols.clone() {
            if stop.load(Ordering::Relaxed) {
                why.push("stopped".to_owned());
                break;
            }
            let tried = match (protocol, gateway) {
                (MappingProtocol::Pcp, Some(gateway)) => {
                    let nonce = self.nonce();
                    clients::pcp_map(stop, gateway, local, nonce, lease, had)
                        .map(|m| m.map(|m| (m, How::Pcp { gateway, nonce })))
                }
                (MappingProtocol::NatPmp, Some(gateway)) => {
                    let suggested = had.map_or(local.port(), |a| a.port());
                    clients::natpmp_map(stop, gateway, local, suggested, lease)
                        .map(|m| m.map(|m| (m, How::NatPmp { gateway })))
                }
                (MappingProtocol::UpnpIgd, _) => clients::upnp_discover(stop, *local.ip())
                    .and_then(|control| {
                        clients::upnp_map(&control, local, lease)
                            .map(|m| Some((m, How::Upnp { control })))
                    }),
                (_, None) => Err(Failure::NoAnswer("no default gateway".into())),
            };
            match tried {
                Ok(Some(found)) => return Ok(found),
                Ok(None) => why.push(format!("{protocol}: no mapping")),
                Err(e) => why.push(format!("{protocol}: {e}")),
            }
        }
        Err(why.join("; "))
    }

    /// The same request again, for the same external port.
    fn renew(&self, held: &Held) -> Result<PortMapping, String> {
        let lease = self.config.lease;
        let had = held.mapping.external;
        let renewed = match &held.how {
            How::Pcp { gateway, nonce } => {
                clients::pcp_map(&self.stop, *gateway, held.local, *nonce, lease, Some(had))
            }
            How::NatPmp { gateway } => {
                clients::natpmp_map(&self.stop, *gateway, held.local, had.port(), lease)
            }
            How::Upnp { control } => clients::upnp_map(control, held.local, lease).map(Some),
        };
        match renewed {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err("no mapping".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn renew_due(&mut self) {
        let now = Instant::now();
        let due: Vec<ListenerId> = self
            .held
            .iter()
            .filter(|(_, h)| h.renew_at <= now)
            .map(|(l, _)| *l)
            .collect();
        for listener in due {
            let Some(held) = self.held.remove(&listener) else {
                continue;
            };
            let how = held.how.clone();
            match self.renew(&held) {
                Ok(mapping) => self.hold(listener, held.local, mapping, how, "renewed"),
                Err(first) => match self.obtain(held.local, Some(held.mapping.external)) {
                    Ok((mapping, how)) => {
                        self.hold(listener, held.local, mapping, how, "mapped again")
                    }
                    Err(again) => {
                        tracing::warn!("port mapping of {} lost: {first}; {again}", held.local);
                        (self.deliver)(Input::PortMappingLost {
                            listener,
                            reason: format!("renewal failed: {first}; {again}"),
                        });
                    }
                },
            }
        }
    }

    fn unmap_all(&mut self) {
        for (_, held) in std::mem::take(&mut self.held) {
            let external = held.mapping.external;
            let done = match &held.how {
                How::Pcp { gateway, nonce } => clients::pcp_map(
                    &clients::NEVER,
                    *gateway,
                    held.local,
                    *nonce,
                    Duration::ZERO,
                    None,
                )
                .map(|_| ()),
                How::NatPmp { gateway } => {
                    clients::natpmp_map(&clients::NEVER, *gateway, held.local, 0, Duration::ZERO)
                        .map(|_| ())
                }
                How::Upnp { control } => clients::upnp_unmap(control, external.port()),
            };
            match done {
                Ok(()) => tracing::info!("port mapping {} -> {} deleted", held.local, external),
                Err(e) => tracing::warn!(
                    "port mapping {} -> {} not deleted (its lease ends it): {e}",
                    held.local,
                    external
                ),
            }
        }
    }

    fn nonce(&self) -> [u8; 12] {
        use ring::rand::SecureRandom as _;
        let mut nonce = [0u8; 12];
        // A failed draw leaves zeros: still a nonce, only a guessable one.
        let _ = self.rng.fill(&mut nonce);
        nonce
    }
}
