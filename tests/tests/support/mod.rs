//! What the conformance suite and the benchmark share.

pub(crate) mod clients;
