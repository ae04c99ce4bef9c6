//! Ferry's deterministic network simulator — **not built yet**.
//!
//! This crate will run any number of `ferry-proto` endpoints (anything implementing
//! [`ferry_proto::io::Endpoint`]) on a virtual clock, with hosts, NATs, simulated TCP, a DHT
//! model, a TURN server and faults, recording traces with [`ferry_proto::trace`]. It is the
//! subject of the `[sim]` and `[sim-turn]` issues; until they land it exports nothing, so that
//! nothing here pretends to work.
//!
//! Today the two-party transfer harness in `ferry-tests` (`ferry_tests::pair`) is the only
//! virtual-time driver; its event queue and file serving are what this crate will generalise.
