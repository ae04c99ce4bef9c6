//! Ferry's deterministic network simulator.
//!
//! It runs any number of sans-IO endpoints (anything implementing
//! [`ferry_proto::io::Endpoint`]) in one thread, on a virtual clock that jumps from one
//! event to the next, in a world of hosts, networks, routers with NATs and firewalls, links
//! with latency, jitter and bandwidth, a DHT, and files generated from seeds. A run is a
//! function of its seed: the same seed gives the same trace, byte for byte, so a failing
//! run is replayed by its seed.
//!
//! # A run
//!
//! ```
//! use std::time::Duration;
//! use ferry_proto::io::{ConnId, ListenerId};
//! use ferry_sim::{HostSpec, Nat, Probe, RouterSpec, Step, World};
//!
//! let mut b = World::builder(1);
//! let internet = b.internet();
//! let home = b.network("home");
//! b.router(RouterSpec::new("nat", internet, home).v4([203, 0, 113, 1]).nat(Nat::symmetric()));
//! let epoch = b.epoch();
//! let server = Probe::new(epoch)
//!     .at(Duration::ZERO, Step::Listen { listener: ListenerId(1), local: "198.51.100.7:443".parse()? })
//!     .echo();
//! let client = Probe::new(epoch)
//!     .at(Duration::from_millis(10), Step::connect(1, "198.51.100.7:443".parse()?))
//!     .at(Duration::from_millis(200), Step::Send { conn: ConnId::Connect(1), data: "hello".into() });
//! b.host(HostSpec::new("server", internet).v4([198, 51, 100, 7]), server);
//! let alice = b.host(HostSpec::new("alice", home).v4([192, 168, 1, 2]), client);
//! let mut world = b.trace().build()?;
//! world.run_for(Duration::from_secs(1));
//! let probe: &Probe = world.endpoint(alice).expect("alice runs a probe");
//! assert_eq!(probe.received(ConnId::Connect(1)), b"hello");
//! assert!(world.violations().is_empty());
//! println!("{}", world.trace());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Modules
//!
//! - [`World`] and its [`WorldBuilder`]: the loop, the clock, the queries (`world`,
//!   `builder`); hosts (`host`); networks and routing (`net`); the NAT and firewall rules
//!   ([`nat`]); links ([`link`]); TCP (`tcp`); the DHT model ([`dht`]); files ([`files`],
//!   [`content`]); faults ([`fault`]); traces ([`record`]); randomness ([`rng`]). The
//!   models (`dht`, `fault`, `net`) hold their state; what the world does with them, as
//!   methods of [`World`], lives beside it in `world/` (`world/dht.rs`, `world/fault.rs`,
//!   `world/net.rs`), so no model imports the world.
//! - [`Probe`] ([`probe`]): a scriptable test endpoint for the tests, the sweep and the
//!   examples, which also checks that the simulator keeps the I/O contract.
//! - [`turn_server`]: a TURN server (RFC 8656, RFC 6062) as a sans-IO endpoint, held to the
//!   same client tests as coturn; any driver can run it, the world on a public host.
//!
//! # What the model leaves out, on purpose
//!
//! Every simplification below is a place where a real network can do something the
//! simulator does not; each was chosen because the protocol above TCP cannot tell, or
//! because modelling it would cost determinism or speed for no test we need yet.
//!
//! - TCP has no congestion control and no segments on the wire: loss becomes retransmission
//!   delay ([`link`]); each host's receive window is fixed ([`RECEIVE_WINDOW`] unless set),
//!   and the room a read makes travels back one way only when the sender is waiting for it;
//!   the simulator never gives up on an established connection by itself (no user timeout,
//!   no keepalive).
//! - A segment's whole journey is computed when it leaves: bytes already sent when a link
//!   goes down still arrive; only what is sent while it is down waits. A RST sent across a
//!   cut route is lost (TCP does not retransmit it).
//! - NAT mappings used by a live connection never expire; unused ones expire after the NAT's
//!   idle timeout. Only SYNs are filtered: the segments of an established connection follow
//!   the state its SYN created.
//! - There is no UDP: Ferry speaks TCP only (ICE-TCP, TURN over TCP).
//! - A listener on `0.0.0.0` takes IPv4 and one on `[::]` IPv6 (no dual-stack sockets).
//! - The DHT stands for the internet beyond the topology: partitions and NATs do not touch
//!   it, a host's dead access link does. Listening returns what is stored, which is how an
//!   endpoint gets a value (the I/O vocabulary has no separate get).
//! - Received files keep their length and digest, not their bytes, so writes must come in
//!   order ([`files`]).
//! - Accepted connections are named `a1`, `a2`, … per host, in order of acceptance.
//! - A connection from a port to the same address and port (a TCP self-connect, which a
//!   real kernel completes) is never established: it times out.
//!
//! Built-in servers are endpoints like any other: the TURN server runs on a public host of
//! the world, driven exactly as a node is.

mod builder;
pub mod content;
pub mod dht;
pub mod dht_world;
pub mod fault;
pub mod files;
mod host;
mod ids;
pub mod link;
pub mod nat;
mod net;
pub mod probe;
mod queue;
pub mod record;
pub mod rng;
mod tcp;
pub mod turn_server;
pub mod udp;
mod world;

pub use builder::{BuildError, HostSpec, RouterSpec, WorldBuilder};
pub use dht::DhtSpec;
pub use fault::Fault;
pub use host::{BoxedEvent, ClosedPorts, SimEndpoint, SimEvent};
pub use ids::{HostId, LinkOf, NetworkId, RouterId};
pub use link::LinkSpec;
pub use nat::{Behaviour, Nat, RouterKind};
pub use probe::{Probe, Step};
pub use tcp::{RECEIVE_WINDOW, SEGMENT};
pub use world::{Stats, Violation, World};
