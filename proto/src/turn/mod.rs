//! TURN over TCP (RFC 8656 with RFC 6062 TCP allocations): a relayed address for a device that
//! no direct path reaches.
//!
//! - [`TurnClient`]: one allocation on one server for one address family; an
//!   [`Endpoint`](crate::io::Endpoint) of its own, so a driver can run it alone (the coturn
//!   interop tests do) or a node can own it.
//! - [`TurnError`]: every failure by name.
//! - [`StunStream`]: STUN messages cut from a TCP stream.
//!
//! It does not own ICE: the relayed address it reports is a passive candidate for the ICE
//! agent, and the peer streams it hands over carry ICE checks and then TLS like any TCP path.

mod client;
mod codec;
mod config;
mod error;
mod event;

pub use client::{PERMISSION_REFRESH, TurnClient};
pub use codec::{NotStun, StunStream};
pub use config::{Family, TurnConfig};
pub use error::TurnError;
pub use event::TurnEvent;
