//! Ferry's deterministic network simulator.
//!
//! The world itself (virtual clock, hosts, NATs, TCP, DHT, faults) is the subject of the
//! `[sim]` issue and is not in this crate yet. What is here already:
//! - [`turn_server`]: a TURN server (RFC 8656, RFC 6062) as a sans-IO
//!   [`Endpoint`](ferry_proto::io::Endpoint), held to the same client tests as the real
//!   coturn; any driver can run it (the interop tests run it on real loopback sockets).

pub mod turn_server;
