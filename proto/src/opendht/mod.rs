//! A native OpenDHT node: OpenDHT's UDP protocol as `dhtnode` 2.4.12 speaks it, sans-IO.
//!
//! Jami meets peers through a DHT node that runs inside the application; this module is
//! Ferry's. It owns the wire format ([`msgpack`], [`message`], [`value`], value parts
//! reassembled in [`parts`]), the 160-bit ids ([`InfoHash`]), and the node itself
//! ([`node`]: a Kademlia routing table, storage for others, our own searches). Sockets,
//! name resolution and the clock belong to the driver: the node takes datagrams with their
//! source and gives datagrams with their destination, through the house verbs.
//!
//! The byte layouts, with vectors captured from a running `dhtnode`, are in `PROTOCOL.md`
//! §13. Every constant below names the one of OpenDHT 2.4.12 it copies.

pub mod constants;
mod encoder;
mod incoming;
mod info_hash;
pub mod message;
pub mod msgpack;
pub mod node;
pub mod parts;
pub mod reach;
mod replies;
mod rounds;
pub mod routing;
pub mod search;
pub mod storage;
pub mod value;

pub use info_hash::InfoHash;
