//! The conformance suite: every scenario of `ferry_tests::conformance` on the simulator, on
//! smol and on tokio (real loopback sockets and temporary files, through each runtime's
//! `Client`), and on the runtimes the ones that need a real coturn or `dhtnode`.
//!
//! ```sh
//! cargo test -p ferry-tests --test conformance
//! ```
//!
//! Missing servers print a skip line; `FERRY_REQUIRE_INTEROP=1` makes them failures (the
//! `dhtnode` scenario runs itself again under `unshare -n`, which needs root).

mod support;

use ferry_tests::conformance::{Real, Simulated};
use support::clients::{Smol, Tokio};

ferry_tests::conformance!(on_sim, Simulated);
ferry_tests::conformance!(on_smol, Real<Smol>, runtime);
ferry_tests::conformance!(on_tokio, Real<Tokio>, runtime);
