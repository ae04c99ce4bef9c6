//! A host: one endpoint, its addresses, ports, connections, files and DHT listens.
//!
//! The host is the driver-side state an operating system would keep for one process; the
//! endpoint inside is anything that implements [`Endpoint`].

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use ferry_proto::io::{ConnId, DhtKey, Endpoint, Input, ListenerId, Output};

use crate::files::Files;
use crate::ids::NetworkId;
use crate::tcp::ConnKey;

/// What an endpoint tells its owner, as the world keeps it: any event type (a node's
/// [`Event`](ferry_proto::io::Event), a lone TURN client's or ICE agent's own), boxed.
pub trait SimEvent: Any + fmt::Debug {
    /// Itself, for downcasting.
    fn as_any(&self) -> &dyn Any;
}

impl<T: Any + fmt::Debug> SimEvent for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// An event as the world carries it.
pub type BoxedEvent = Box<dyn SimEvent>;

/// Any [`Endpoint`], whatever its event type, as the world drives it; and, for a test, the
/// endpoint again as its concrete type. Implemented for every `Endpoint` whose events are
/// `Debug`: nothing to write by hand.
pub trait SimEndpoint: Any {
    /// [`Endpoint::handle_input`].
    fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), ferry_proto::Error>;
    /// [`Endpoint::handle_timeout`].
    fn handle_timeout(&mut self, now: Instant);
    /// [`Endpoint::poll_output`], its event boxed. `Err` carries an output the simulator
    /// does not know (a variant newer than it), described.
    fn poll_output(&mut self) -> Option<Result<Output<BoxedEvent>, String>>;
    /// [`Endpoint::poll_timeout`].
    fn poll_timeout(&self) -> Option<Instant>;
    /// Itself, for downcasting.
    fn as_any(&self) -> &dyn Any;
    /// Itself, for downcasting.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<T> SimEndpoint for T
where
    T: Endpoint + Any,
    T::Event: fmt::Debug + 'static,
{
    fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), ferry_proto::Error> {
        Endpoint::handle_input(self, now, input)
    }
    fn handle_timeout(&mut self, now: Instant) {
        Endpoint::handle_timeout(self, now);
    }
    fn poll_output(&mut self) -> Option<Result<Output<BoxedEvent>, String>> {
        Endpoint::poll_output(self).map(boxed)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Endpoint::poll_timeout(self)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The same output with its event boxed: every variant is rebuilt, since `Output<E>` and
/// `Output<BoxedEvent>` are different types.
fn boxed<E: fmt::Debug + 'static>(out: Output<E>) -> Result<Output<BoxedEvent>, String> {
    Ok(match out {
        Output::Listen { listener, local } => Output::Listen { listener, local },
        Output::Connect {
            conn,
            remote,
            local_port,
            timeout,
        } => Output::Connect {
            conn,
            remote,
            local_port,
            timeout,
        },
        Output::Send { conn, data } => Output::Send { conn, data },
        Output::HalfClose { conn } => Output::HalfClose { conn },
        Output::Close { conn } => Output::Close { conn },
        Output::Reset { conn } => Output::Reset { conn },
        Output::PauseReading { conn } => Output::PauseReading { conn },
        Output::ResumeReading { conn } => Output::ResumeReading { conn },
        Output::Unlisten { listener } => Output::Unlisten { listener },
        Output::DhtPut { key, value } => Output::DhtPut { key, value },
        Output::DhtListen { key } => Output::DhtListen { key },
        Output::DhtCancelListen { key } => Output::DhtCancelListen { key },
        Output::File(op) => Output::File(op),
        Output::MapPort { listener, local } => Output::MapPort { listener, local },
        Output::UnmapPorts => Output::UnmapPorts,
        Output::Event(event) => Output::Event(Box::new(event)),
        other => return Err(format!("{other:?}")),
    })
}

/// What a host does with a SYN to a port nobody listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedPorts {
    /// Answer with a RST: the connecting side hears "refused" after one round trip.
    Refuse,
    /// Drop it (a host firewall): the connecting side waits for its timeout.
    Drop,
}

/// First port handed out for outbound connections and port-0 listeners (IANA's dynamic range).
const FIRST_EPHEMERAL: u16 = 49_152;

pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) endpoint: Box<dyn SimEndpoint>,
    pub(crate) net: NetworkId,
    pub(crate) v4: Option<Ipv4Addr>,
    pub(crate) v6: Option<Ipv6Addr>,
    /// Index of the access link.
    pub(crate) link: usize,
    pub(crate) closed_ports: ClosedPorts,
    /// Its receive window, for every connection.
    pub(crate) receive_window: usize,
    pub(crate) listeners: BTreeMap<ListenerId, SocketAddr>,
    /// Bound listening ports: (port, is IPv6) → listener.
    pub(crate) listening: BTreeMap<(u16, bool), ListenerId>,
    pub(crate) conns: BTreeMap<ConnId, (ConnKey, usize)>,
    /// (local, remote) → connection and side, for matching SYNs.
    pub(crate) tuples: BTreeMap<(SocketAddr, SocketAddr), (ConnKey, usize)>,
    /// Connections using each local port.
    pub(crate) ports: BTreeMap<u16, u32>,
    pub(crate) next_ephemeral: u16,
    pub(crate) next_accepted: u32,
    /// Inputs for the endpoint at the current instant, fed before time moves.
    pub(crate) inbox: VecDeque<Input>,
    /// The wake-up scheduled, if any.
    pub(crate) wake_at: Option<Duration>,
    /// When `handle_timeout` last ran, to catch an endpoint that asks to be woken in the past.
    pub(crate) woke_at: Option<Duration>,
    /// How many times it was woken at `woke_at`.
    pub(crate) wakes_now: u32,
    pub(crate) spin_reported: bool,
    pub(crate) files: Files,
    pub(crate) dht_listens: BTreeSet<DhtKey>,
    /// Inside addresses its gateway forwards for it (`MapPort`), until `UnmapPorts`.
    pub(crate) forwarded: Vec<SocketAddr>,
}

impl Host {
    pub(crate) fn new(
        name: String,
        endpoint: Box<dyn SimEndpoint>,
        net: NetworkId,
        link: usize,
    ) -> Host {
        Host {
            name,
            endpoint,
            net,
            v4: None,
            v6: None,
            link,
            closed_ports: ClosedPorts::Refuse,
            receive_window: crate::tcp::RECEIVE_WINDOW,
            listeners: BTreeMap::new(),
            listening: BTreeMap::new(),
            conns: BTreeMap::new(),
            tuples: BTreeMap::new(),
            ports: BTreeMap::new(),
            next_ephemeral: FIRST_EPHEMERAL,
            next_accepted: 0,
            inbox: VecDeque::new(),
            wake_at: None,
            woke_at: None,
            wakes_now: 0,
            spin_reported: false,
            files: Files::default(),
            dht_listens: BTreeSet::new(),
            forwarded: Vec::new(),
        }
    }

    /// The host's address of the family of `ip`.
    pub(crate) fn addr_like(&self, ip: IpAddr) -> Option<IpAddr> {
        match ip {
            IpAddr::V4(_) => self.v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.v6.map(IpAddr::V6),
        }
    }

    pub(crate) fn owns(&self, ip: IpAddr) -> bool {
        // Every host has a loopback interface: a node may listen there (a real one does
        // when its peers can be on the same machine) and offer it as a candidate.
        ip.is_unspecified() || ip.is_loopback() || self.addr_like(ip) == Some(ip)
    }

    /// A port no listener and no connection uses, for a connection or a port-0 listener.
    pub(crate) fn ephemeral(&mut self, v6: bool) -> Option<u16> {
        for _ in 0..=(u16::MAX - FIRST_EPHEMERAL) {
            let p = self.next_ephemeral;
            self.next_ephemeral = if p == u16::MAX {
                FIRST_EPHEMERAL
            } else {
                p + 1
            };
            if !self.listening.contains_key(&(p, v6)) && !self.ports.contains_key(&p) {
                return Some(p);
            }
        }
        None
    }

    pub(crate) fn take_port(&mut self, port: u16) {
        *self.ports.entry(port).or_insert(0) += 1;
    }

    pub(crate) fn drop_port(&mut self, port: u16) {
        if let Some(n) = self.ports.get_mut(&port) {
            *n -= 1;
            if *n == 0 {
                self.ports.remove(&port);
            }
        }
    }
}
