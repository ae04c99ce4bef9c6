//! Ferry on tokio — **not built yet**.
//!
//! This crate will drive a `ferry-proto` node on tokio sockets, timers and files, as the
//! `[runtimes]` issue describes: a thin loop around [`ferry_proto::io::Endpoint`] that carries
//! out each [`ferry_proto::io::Output`] and feeds back each [`ferry_proto::io::Input`].
//! Until then it exports nothing, so that nothing here pretends to work.
