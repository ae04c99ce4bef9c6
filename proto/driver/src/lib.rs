//! What every driver of a Ferry endpoint shares, and no state machine needs.
//!
//! `ferry-proto` holds the protocols as pure state machines; this crate runs them on a real
//! machine, whatever the async runtime: the runtimes `ferry-smol` and `ferry-tokio` add only
//! their own sockets, tasks and timers on top. It touches the system (files, sockets,
//! threads, the clock, OS randomness), which `ferry-proto` never does.
//!
//! - [`runtime`]: the small [`Runtime`] trait a runtime crate implements (spawn, sleep, TCP
//!   sockets), and the socket [`Tasks`] built on it;
//! - [`run_loop`]: the one [`Driver`] loop for every runtime, its [`Handle`] and [`Events`];
//! - [`app`]: the application API, [`Client`], written once for every runtime;
//! - [`client`]: the client's vocabulary: a node's configuration from the host
//!   ([`ClientConfig`]), the application's [`ClientEvent`]s, [`ClientError`];
//! - [`shell`]: the [`Shell`] around one endpoint, which carries out its outputs through a
//!   runtime's [`Net`] and keeps the connection bookkeeping (names, pause and resume, half
//!   and full close, connect timeouts);
//! - [`files`]: [`FileService`] does the [`FileOp`](ferry_proto::io::FileOp)s on real files,
//!   with the digest beside the I/O, and [`FileThread`] runs it on a thread of its own;
//! - [`identity_files`]: accounts and devices saved as PEM files, private keys readable by
//!   the owner only;
//! - [`dht`]: the embedded in-process DHT ([`DhtStore`]) that stands in for OpenDHT;
//! - [`sent_file`]: the holder's checks of a request to send a file again ([`sent_file::decide`]);
//! - [`sent_tree`]: the files and folders of a send walked into a manifest ([`sent_tree::walk`]);
//! - [`receive_folder`]: the receive folder, opened so that nobody else who can write in it
//!   can turn a transfer's writes against the user;
//! - [`folder_dht`]: a DHT in a shared folder ([`FolderClient`]), for nodes in different
//!   processes of one machine;
//! - [`opendht`]: OpenDHT itself, through a `dhtnode`'s HTTP proxy ([`ProxyClient`]);
//! - [`native_dht`]: OpenDHT itself, natively: Ferry's own OpenDHT node on a UDP socket
//!   ([`NativeClient`]), bootstrapped from `host:port`;
//! - [`multi_dht`]: several DHTs at once ([`SeveralDhts`]: put to all, listen on all);
//! - [`net`]: listening and connecting sockets with address and port reuse;
//! - [`pump`]: one connection on a non-blocking socket ([`Pump`]), for an application's own
//!   event loop (`mio`, `poll(2)`) instead of a runtime;
//! - [`write_queue`]: a connection's queued bytes and FIN, written in batches;
//! - [`interfaces`]: the host's addresses, filtered by a [`Paths`] policy;
//! - [`portmap`]: the port-mapping service ([`PortMapper`]): PCP, NAT-PMP and UPnP-IGD
//!   mappings of the listening ports, renewed and deleted, reported to the node;
//! - here: a driver's [`Config`] (receive folder, which [`Dht`]), the live [`DhtConnection`],
//!   and [`Stopped`], what a command to a driver that ended gets.

pub mod app;
pub mod buffers;
pub mod client;
pub mod dht;
pub mod files;
pub mod folder_dht;
pub mod identity_files;
pub mod interfaces;
mod logs;
pub mod multi_dht;
pub mod native_dht;
pub mod net;
pub mod opendht;
pub mod portmap;
pub mod pump;
pub mod receive_folder;
pub mod run_loop;
pub mod runtime;
pub mod sent_file;
pub mod sent_tree;
pub mod shell;
pub mod write_queue;

pub use app::Client;
pub use buffers::{BufferPool, ReadBuffer};
pub use client::{ClientConfig, ClientError, ClientEvent, FolderOffer, Offer};
pub use dht::{DhtClient, DhtStore};
pub use files::{FileService, FileThread};
pub use folder_dht::FolderClient;
pub use interfaces::{LocalAddr, Paths, local_addresses};
pub use multi_dht::SeveralDhts;
pub use native_dht::{NativeClient, NativeConfig, NativeStatus};
pub use opendht::ProxyClient;
pub use portmap::{PortMapConfig, PortMapper};
pub use pump::Pump;
pub use run_loop::{Command, Driver, Events, Handle, Parts};
pub use runtime::{Runtime, Tasks};
pub use shell::{CLOSE_LINGER, Net, Shell, SocketEvent, Tag};
pub use write_queue::{Write, WriteQueue};

use std::net::SocketAddr;
use std::path::PathBuf;

use bytes::Bytes;

use ferry_proto::io::{DhtKey, Input};

/// What a driver needs besides its endpoint.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where received files go (partial files too); created if missing.
    pub receive_folder: PathBuf,
    /// The DHT to use.
    pub dht: Dht,
}

/// Which DHT a driver uses.
#[derive(Debug, Clone)]
pub enum Dht {
    /// The embedded one, shared with every driver given a clone of the store.
    Embedded(DhtStore),
    /// OpenDHT, through the HTTP proxy of a `dhtnode` at this address.
    OpenDht {
        /// The proxy's address.
        proxy: SocketAddr,
    },
    /// A DHT in this folder, shared with every driver, in any process, given the same one
    /// (see [`folder_dht`]).
    Folder {
        /// The folder; created if missing.
        path: PathBuf,
    },
    /// Ferry's own OpenDHT node on a UDP socket (see [`native_dht`]).
    Native(NativeConfig),
    /// Several at once: each put goes to all, each listen listens on all (see
    /// [`multi_dht`]); local processes meet at once through a folder while remote ones meet
    /// through the network.
    Several(Vec<Dht>),
}

impl Config {
    /// Files go to `receive_folder`; the DHT is a fresh embedded one of this driver alone.
    pub fn new(receive_folder: impl Into<PathBuf>) -> Config {
        Config {
            receive_folder: receive_folder.into(),
            dht: Dht::Embedded(DhtStore::new()),
        }
    }

    /// Uses the embedded `dht`, shared with other drivers, instead.
    pub fn with_dht(mut self, dht: &DhtStore) -> Config {
        self.dht = Dht::Embedded(dht.clone());
        self
    }

    /// Uses OpenDHT through the proxy at `proxy` instead.
    pub fn with_opendht(mut self, proxy: SocketAddr) -> Config {
        self.dht = Dht::OpenDht { proxy };
        self
    }

    /// Uses the DHT in the folder `path` instead, shared across processes.
    pub fn with_folder_dht(mut self, path: impl Into<PathBuf>) -> Config {
        self.dht = Dht::Folder { path: path.into() };
        self
    }

    /// Uses `dht` instead (any choice, [`Dht::Several`] included).
    pub fn with_dht_choice(mut self, dht: Dht) -> Config {
        self.dht = dht;
        self
    }
}

/// A driver's live DHT.
#[derive(Debug)]
pub enum DhtConnection {
    /// The embedded store.
    Embedded(DhtClient),
    /// OpenDHT through a proxy.
    OpenDht(ProxyClient),
    /// A DHT in a folder.
    Folder(FolderClient),
    /// Ferry's own OpenDHT node.
    Native(NativeClient),
    /// Several at once.
    Several(SeveralDhts),
}

impl DhtConnection {
    /// Connects to `dht`; its answers go to `deliver`.
    pub fn open(
        dht: &Dht,
        deliver: impl Fn(Input) + Clone + Send + Sync + 'static,
    ) -> std::io::Result<DhtConnection> {
        Ok(match dht {
            Dht::Embedded(store) => DhtConnection::Embedded(store.client(deliver)),
            Dht::OpenDht { proxy } => DhtConnection::OpenDht(ProxyClient::new(*proxy, deliver)?),
            Dht::Folder { path } => DhtConnection::Folder(FolderClient::new(path, deliver)?),
            Dht::Native(config) => DhtConnection::Native(NativeClient::new(config, deliver)?),
            Dht::Several(all) => DhtConnection::Several(SeveralDhts::new(
                all.iter()
                    .map(|d| DhtConnection::open(d, deliver.clone()))
                    .collect::<std::io::Result<_>>()?,
            )),
        })
    }

    /// Whether an answer from the DHT is news for the endpoint: with several DHTs, a value
    /// two of them deliver is news once, and a put is done once, when one stored it (or
    /// all failed).
    pub(crate) fn admit(&mut self, input: &Input) -> bool {
        match self {
            DhtConnection::Several(c) => c.admit(input),
            _ => true,
        }
    }

    /// The native node's status, if one of the DHTs is native.
    pub fn native_status(&self) -> Option<NativeStatus> {
        match self {
            DhtConnection::Native(c) => Some(c.status()),
            DhtConnection::Several(c) => c.native_status(),
            _ => None,
        }
    }

    pub(crate) fn put(&mut self, key: DhtKey, value: Bytes) {
        match self {
            DhtConnection::Embedded(c) => c.put(key, value),
            DhtConnection::OpenDht(c) => c.put(key, value),
            DhtConnection::Folder(c) => c.put(key, value),
            DhtConnection::Native(c) => c.put(key, value),
            DhtConnection::Several(c) => c.put(key, value),
        }
    }

    pub(crate) fn listen(&mut self, key: DhtKey) {
        match self {
            DhtConnection::Embedded(c) => c.listen(key),
            DhtConnection::OpenDht(c) => c.listen(key),
            DhtConnection::Folder(c) => c.listen(key),
            DhtConnection::Native(c) => c.listen(key),
            DhtConnection::Several(c) => c.listen(key),
        }
    }

    pub(crate) fn cancel_listen(&mut self, key: DhtKey) {
        match self {
            DhtConnection::Embedded(c) => c.cancel_listen(key),
            DhtConnection::OpenDht(c) => c.cancel_listen(key),
            DhtConnection::Folder(c) => c.cancel_listen(key),
            DhtConnection::Native(c) => c.cancel_listen(key),
            DhtConnection::Several(c) => c.cancel_listen(key),
        }
    }
}

/// The driver has stopped: a command cannot reach its endpoint any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the driver has stopped")
    }
}

impl std::error::Error for Stopped {}
