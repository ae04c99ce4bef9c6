//! The sans-IO core of Ferry: peer-to-peer file transfer in the way Jami does it.
//!
//! Every protocol of Ferry lives here as a synchronous state machine that takes events and
//! emits actions. There are no sockets, no clock, no threads and no global randomness in
//! this crate: time comes in as an argument, randomness from a seed given at construction,
//! and every byte in or out passes through the I/O vocabulary of [`io`]. The same inputs
//! give the same outputs, byte for byte, which is what lets the simulator (`ferry-sim`)
//! replay any run from its seed and the runtimes (`ferry-smol`, `ferry-tokio`) stay thin.
//!
//! # The drive loop
//!
//! Every state machine has the same four verbs: `handle_input`, `handle_timeout`,
//! `poll_output`, `poll_timeout`. The whole endpoints a driver runs, [`node::Node`] and
//! [`turn::TurnClient`], implement them as the [`io::Endpoint`] trait, on the driver's
//! vocabulary ([`io::Input`], [`io::Output`]); the machines inside a node (the ICE agent,
//! the transfers, TLS sessions, channels) have them as methods of their own, on their own
//! input and output types. A driver feeds inputs, drains outputs until there are none, then
//! sleeps until the next deadline or input:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use ferry_proto::io::{ConnId, Endpoint, Input, Output};
//!
//! /// A toy endpoint that echoes what it receives, and says "tick" every second.
//! struct Echo { next_tick: Instant, out: Vec<Output> }
//!
//! impl Endpoint for Echo {
//!     type Event = ferry_proto::io::Event;
//!
//!     fn handle_input(&mut self, _now: Instant, input: Input) -> Result<(), ferry_proto::Error> {
//!         if let Input::Received { conn, data } = input {
//!             self.out.push(Output::Send { conn, data });
//!         }
//!         Ok(())
//!     }
//!     fn handle_timeout(&mut self, now: Instant) {
//!         if now >= self.next_tick {
//!             self.out.push(Output::Send { conn: ConnId::Accepted(1), data: "tick".into() });
//!             self.next_tick = now + Duration::from_secs(1);
//!         }
//!     }
//!     fn poll_output(&mut self) -> Option<Output> {
//!         (!self.out.is_empty()).then(|| self.out.remove(0))
//!     }
//!     fn poll_timeout(&self) -> Option<Instant> {
//!         Some(self.next_tick)
//!     }
//! }
//!
//! // A driver: real ones read sockets and sleep; this one has a scripted input and a clock
//! // that jumps straight to the next deadline, as the simulator does.
//! let start = Instant::now();
//! let mut now = start;
//! let mut endpoint = Echo { next_tick: start + Duration::from_secs(1), out: Vec::new() };
//! let conn = ConnId::Accepted(1);
//! endpoint.handle_input(now, Input::Received { conn, data: "hello".into() })?;
//! let mut sent = Vec::new();
//! for _ in 0..3 {
//!     // 1. drain every output after every input or timeout
//!     while let Some(output) = endpoint.poll_output() {
//!         if let Output::Send { data, .. } = output {
//!             sent.push(String::from_utf8_lossy(&data).into_owned());
//!         }
//!     }
//!     // 2. wait until the next deadline (here: jump to it), then let time pass
//!     now = endpoint.poll_timeout().expect("a deadline").max(now);
//!     endpoint.handle_timeout(now);
//! }
//! assert_eq!(sent, ["hello", "tick", "tick"]);
//! assert_eq!(now - start, Duration::from_secs(3));
//! # Ok::<(), ferry_proto::Error>(())
//! ```
//!
//! # Errors and events
//!
//! An [`Error`] is a caller mistake (an answer nobody asked for, a command in the wrong
//! state). Everything a peer, a relay, the DHT or the disk does wrong becomes an event with a
//! reason (see [`transfer::Reason`]); nothing from the network can make this crate panic.
//!
//! # Modules
//!
//! - [`io`]: the vocabulary every driver speaks, and the [`io::Endpoint`] trait.
//! - [`node`]: the whole endpoint of one device (signalling, ICE, TLS, channels, transfers).
//! - [`signal`]: the DHT values (announcements, requests, answers, revocation lists), sealed
//!   and signed as Jami does.
//! - [`tls`]: accounts, devices and their certificates, and the TLS sessions between them.
//! - [`channel`]: many channels over one TLS connection, as dhtnet multiplexes them.
//! - [`transfer`]: the header, `GO` / `NGO`, Ferry's frames, and the sending and receiving
//!   state machines (byte for byte in `PROTOCOL.md`).
//! - [`aggregate`]: the optimistic view of one file sent to several devices.
//! - [`conversation`]: the ask-again request (`data-transfer-request`) and its answers.
//! - [`stun`]: RFC 4571 framing and the STUN messages ICE speaks, on `stun-types`.
//! - [`ice`]: ICE over TCP: candidates in Jami's text form, the description blob, the check
//!   list and the agent that finds, nominates and keeps a TCP path to one peer.
//! - [`opendht`]: a native OpenDHT node: OpenDHT's UDP wire format and, on it, a Kademlia
//!   node that stores for others and runs our own gets, puts and listens.
//! - [`trace`]: one readable line per protocol event, for logs and snapshots.
//! - [`turn`]: TURN over TCP (RFC 8656, RFC 6062): a relayed address for a device.
//! - [`portmap`]: port mapping on the home router: PCP, NAT-PMP and UPnP-IGD messages and
//!   their parsers (the driver does the I/O).
//! - [`timer`]: the table of deadlines each state machine keeps.
//! - [`rng`]: seeded randomness, never the system's.
//!
//! Running an endpoint on real sockets and files is not this crate's business: the crate
//! `ferry-driver` (folder `proto/driver/`) holds what every driver shares.

pub mod aggregate;
pub mod channel;
pub mod conversation;
pub mod ice;
pub mod io;
pub mod node;
pub mod opendht;
pub mod portmap;
pub mod rng;
pub mod signal;
pub mod stun;
pub mod timer;
pub mod tls;
pub mod trace;
pub mod transfer;
pub mod turn;

/// A caller mistake: the driver or the application did something the state machine never
/// asked for or cannot do now.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An answer about a file this state machine does not own.
    #[error("unknown file {0:?}")]
    UnknownFile(io::FileId),
    /// An input that does not answer anything asked.
    #[error("unexpected input: {0}")]
    UnexpectedInput(&'static str),
    /// A command that the current state does not allow.
    #[error("not now: {0}")]
    NotNow(&'static str),
}
