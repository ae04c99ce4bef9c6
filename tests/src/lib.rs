//! Harnesses shared by Ferry's cross-crate tests.
//!
//! - [`content`]: file contents generated from a seed and an offset, so a test can send a
//!   file of any size and check every byte without keeping a copy.
//! - [`pair`]: two transfer state machines, an outgoing and an incoming one, pumped through
//!   an in-memory byte pipe on a virtual clock, with in-memory files and a trace recorder.
//! - [`realnet`]: any endpoint on real loopback sockets, for interop tests.
//! - [`coturn`]: a real coturn started and stopped by a test.
//! - [`turn_suite`]: the TURN client scenarios, run against coturn and Ferry's own server;
//!   [`turn_loopback`] runs them on real loopback sockets, [`turn_simnet`] in the simulator.
//! - [`ice_net`]: a virtual TCP network for ICE agents on a test's clock.
//! - [`identity`]: the tests' accounts, devices and node configurations, from names.
//! - [`dhtnode`]: real OpenDHT nodes, in a network namespace of the test's own.
//! - [`netlab`]: real Linux NATs in network namespaces around the real `ferry` binary.
//! - [`driven`], [`probe`], [`stream_transfer`], [`runtime_suite`](mod@runtime_suite): any endpoint on a real
//!   runtime driver, a scripted endpoint, one transfer over TCP, and the scenarios every
//!   runtime passes.
//! - [`conformance`](mod@conformance): whole-node scenarios run on the simulator and on each real runtime.
//! - [`blast`]: endpoints that push bytes through a driver, for throughput benchmarks.
//! - [`fuzz`]: the bodies of the fuzz targets in `fuzz/`, replayed on their corpora by
//!   `tests/tests/fuzz_corpus.rs`.

pub mod blast;
pub mod conformance;
pub mod content;
pub mod coturn;
pub mod dhtnode;
pub mod driven;
pub mod fuzz;
pub mod hand;
pub mod ice_net;
pub mod identity;
pub mod netlab;
pub mod pair;
pub mod probe;
pub mod realnet;
pub mod rerun;
pub mod runtime_suite;
pub mod stream_transfer;
pub mod turn_loopback;
pub mod turn_simnet;
pub mod turn_suite;
