//! Ferry's native OpenDHT node against Debian's real `dhtnode` 2.4.12, over UDP in a
//! network namespace of the test's own (`unshare -n`: `dhtnode` binds every interface).
//! One module per concept:
//!
//! - `wire`: our messages, one by one, to `dhtnode`s, and theirs to us, decoded;
//! - `node`: the sans-IO node on a socket: joins, puts, gets, listens, and keeps them
//!   alive (refreshes, listen renewals, an owner's update heard);
//! - `backend`: the driver's native backend (`NativeClient`), on IPv4 and on IPv6;
//! - `cli_pair`: two `ferry` CLIs behind two kernel NATs meeting through `dhtnode`s.
//!
//! `dhtnode_cli` runs one `dhtnode` with its command line on a pipe. Under
//! `FERRY_REQUIRE_INTEROP=1` a missing `dhtnode` fails the tests.

mod backend;
mod cli_pair;
mod dhtnode_cli;
mod node;
mod wire;

use std::time::Duration;

/// A bound on failures only: generous for a starved, loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);
