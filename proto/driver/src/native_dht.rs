//! OpenDHT itself, natively: Ferry's own OpenDHT node (`ferry_proto::opendht::node`) on a UDP
//! socket of its own, joined to any OpenDHT network from `host:port` bootstrap nodes, as Jami
//! runs one inside the application.
//!
//! Why a driver-side service and not UDP in the endpoint's I/O vocabulary: the DHT node is a
//! machine of its own, beside the endpoint, exactly like the port mapper (`portmap`) and the
//! other DHT backends (`dht`, `folder_dht`, `opendht`): the endpoint asks for
//! [`Output::DhtPut`](ferry_proto::io::Output::DhtPut) and its siblings and gets
//! [`Input::DhtValue`] / [`Input::DhtPutDone`] back, whichever backend carries them out. Its
//! sockets are plain blocking UDP sockets, each read by a thread of its own for the node's
//! thread, so it needs no async runtime and both runtimes get it unchanged; the sans-IO node stays pure (its datagrams in and out are the
//! `Datagram`s of its own house verbs), so the simulator drives the same node on virtual
//! UDP (`ferry_sim::udp`).
//!
//! What it adds to the node: Ferry's 20-byte [`DhtKey`]s are OpenDHT `InfoHash`es as they are;
//! each value put is an OpenDHT `Value` of type 0 (USER_DATA, 10-minute expiry) with a random
//! id, re-announced by the node before it expires. A value put again with the same bytes
//! (the core's announcement every five minutes) reuses its running put instead of starting a
//! second; at most [`MAX_PUTS`] puts are kept alive, the oldest ended first. Listens are
//! renewed by the node. Bootstrap names are resolved here, again every [`REBOOTSTRAP`] while
//! the routing table is empty; a name may resolve to IPv4 and IPv6 addresses, and each is
//! tried through the socket of its family (`sockets`: IPv4, and IPv6 when the host has it).

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ring::rand::{SecureRandom as _, SystemRandom};
use sha2::{Digest as _, Sha256};

use ferry_proto::io::{DhtKey, Input};
use ferry_proto::opendht::InfoHash;
use ferry_proto::opendht::message::Want;
use ferry_proto::opendht::node::{self, Event, Node};
use ferry_proto::opendht::search::SearchId;
use ferry_proto::opendht::value::Value;

/// Most of our puts kept alive (re-announced) at once.
pub const MAX_PUTS: usize = 64;
/// How often the bootstrap nodes are tried again while the routing table is empty.
pub const REBOOTSTRAP: Duration = Duration::from_secs(20);
/// Longest wait for a datagram before the loop looks at its commands and deadlines again.
const TICK: Duration = Duration::from_millis(20);
/// How often the shared [`NativeStatus`] is brought up to date.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// Longest a put or listen waits for the node to join the network before it is started
/// anyway (on whatever the table holds then).
pub const JOIN_WAIT: Duration = Duration::from_secs(15);
/// How often the status file is written.
pub const STATUS_FILE_EVERY: Duration = Duration::from_secs(2);
/// Most commands held while the node joins.
const MAX_HELD: usize = 1024;

mod sockets;
mod status;

use sockets::{Incoming, Sockets};
pub use status::NativeStatus;

/// How the native node is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeConfig {
    /// The UDP address to bind (`0.0.0.0:0`: any port, IPv4). OpenDHT's own port is 4222.
    pub bind: SocketAddr,
    /// Where the IPv6 socket goes when `bind` is IPv4 (`[::]:0`: the IPv4 socket's port if
    /// free, else any; `None`: IPv4 only). A host without IPv6 gets no IPv6 socket.
    pub bind6: Option<SocketAddr>,
    /// Bootstrap nodes, `host:port`, resolved by the node's thread.
    pub bootstrap: Vec<String>,
    /// The network id (0: OpenDHT's public network, Jami's).
    pub network: u32,
    /// A file the node writes its [`NativeStatus`] to, as JSON, every [`STATUS_FILE_EVERY`]
    /// (replaced whole: written beside, then renamed), for `ferry dht status`.
    pub status_file: Option<std::path::PathBuf>,
    /// How long puts and listens wait for the node to join before they start anyway
    /// ([`JOIN_WAIT`]).
    pub join_wait: Duration,
    /// How often bootstrap nodes are tried again while the table is empty ([`REBOOTSTRAP`]).
    pub rebootstrap: Duration,
}

impl NativeConfig {
    /// Any IPv4 port, network 0, these bootstrap nodes.
    pub fn new(bootstrap: Vec<String>) -> NativeConfig {
        NativeConfig {
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            bind6: Some(SocketAddr::from(([0u16; 8], 0))),
            bootstrap,
            network: 0,
            status_file: None,
            join_wait: JOIN_WAIT,
            rebootstrap: REBOOTSTRAP,
        }
    }
}

enum Command {
    Put(DhtKey, Bytes),
    Listen(DhtKey),
    Cancel(DhtKey),
}

type Deliver = Box<dyn Fn(Input) + Send>;

/// One driver's native OpenDHT node; answers come as [`Input`]s through the callback it was
/// made with. Dropping it stops the node (its thread ends within a tick).
pub struct NativeClient {
    commands: mpsc::Sender<Command>,
    status: Arc<Mutex<NativeStatus>>,
    local: SocketAddr,
    local6: Option<SocketAddr>,
}

impl std::fmt::Debug for NativeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeClient")
            .field("local", &self.local)
            .finish()
    }
}

impl NativeClient {
    /// Binds the socket and starts the node's thread. `deliver` runs on that thread.
    pub fn new(
        config: &NativeConfig,
        deliver: impl Fn(Input) + Send + 'static,
    ) -> io::Result<NativeClient> {
        let (sockets, datagrams) = Sockets::open(config.bind, config.bind6)?;
        let local6 = sockets.local6();
        let local = sockets.local4().or(local6).unwrap_or(config.bind);
        let mut seed = [0u8; 28];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| io::Error::other("no randomness for the DHT node's id"))?;
        let mut id = [0u8; 20];
        id.copy_from_slice(&seed[..20]);
        let node = Node::new(node::Config {
            id: InfoHash(id),
            network: config.network,
            want: Want {
                v4: sockets.local4().is_some(),
                v6: local6.is_some(),
            },
            seed: u64::from_be_bytes(seed[20..].try_into().unwrap_or_default()),
        });
        let status = Arc::new(Mutex::new(NativeStatus {
            local: sockets.local4(),
            local6,
            id: hex::encode(id),
            ..NativeStatus::default()
        }));
        let (commands, rx) = mpsc::channel();
        let mut service = Service {
            sockets,
            node,
            bootstrap: config.bootstrap.clone(),
            rebootstrap: config.rebootstrap,
            deliver: Box::new(deliver),
            puts: BTreeMap::new(),
            put_order: VecDeque::new(),
            listens: BTreeMap::new(),
            listens_started: 0,
            status: status.clone(),
            next_bootstrap: Instant::now(),
            next_status: Instant::now(),
            // A node with no bootstrap node is the first of its network: nothing to wait for.
            joined: config.bootstrap.is_empty(),
            in_network: config.bootstrap.is_empty(),
            joined_at: config.bootstrap.is_empty().then(Instant::now),
            status_file: config.status_file.clone(),
            next_status_file: Instant::now(),
            join_by: Instant::now() + config.join_wait,
            held: Vec::new(),
        };
        std::thread::Builder::new()
            .name("ferry-opendht".into())
            .spawn(move || service.run(&rx, &datagrams))?;
        Ok(NativeClient {
            commands,
            status,
            local,
            local6,
        })
    }

    /// Our UDP address (IPv4's, or IPv6's when bound to IPv6 only).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Our IPv6 UDP address, when the node has an IPv6 socket beside its IPv4 one.
    pub fn local_addr6(&self) -> Option<SocketAddr> {
        self.local6
    }

    /// What the node is doing (up to date within a quarter of a second).
    pub fn status(&self) -> NativeStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stores `value` under `key` on the network, re-announced until [`MAX_PUTS`] newer
    /// puts replace it; answers [`Input::DhtPutDone`] after its first round.
    pub fn put(&self, key: DhtKey, value: Bytes) {
        let _ = self.commands.send(Command::Put(key, value));
    }

    /// Delivers every value under `key`, those stored now and those to come.
    pub fn listen(&self, key: DhtKey) {
        let _ = self.commands.send(Command::Listen(key));
    }

    /// Stops delivering values under `key`.
    pub fn cancel_listen(&self, key: DhtKey) {
        let _ = self.commands.send(Command::Cancel(key));
    }
}

/// One of our puts.
struct Put {
    key: DhtKey,
    digest: [u8; 32],
    /// `DhtPutDone`s owed (the put, and the same value put again before its first round).
    waiting: usize,
    /// Nodes that confirmed at the last round (`None`: no round yet).
    stored: Option<usize>,
}

struct Service {
    sockets: Sockets,
    node: Node,
    bootstrap: Vec<String>,
    rebootstrap: Duration,
    deliver: Deliver,
    puts: BTreeMap<SearchId, Put>,
    /// Oldest first, to end the oldest past [`MAX_PUTS`].
    put_order: VecDeque<SearchId>,
    listens: BTreeMap<DhtKey, SearchId>,
    listens_started: u64,
    status: Arc<Mutex<NativeStatus>>,
    next_bootstrap: Instant,
    next_status: Instant,
    /// Whether puts and listens are carried out (the node joined, or `join_by` passed).
    joined: bool,
    /// Whether the lookup of our own id that follows a bootstrap answer is done.
    in_network: bool,
    /// When it was.
    joined_at: Option<Instant>,
    /// When held commands start anyway.
    join_by: Instant,
    /// Puts and listens asked before the node joined: started on the empty table, a put
    /// would be stored nowhere and a listen would wait a whole renewal period.
    held: Vec<Command>,
    status_file: Option<std::path::PathBuf>,
    next_status_file: Instant,
}

impl Service {
    fn run(&mut self, commands: &mpsc::Receiver<Command>, datagrams: &mpsc::Receiver<Incoming>) {
        loop {
            loop {
                match commands.try_recv() {
                    Ok(command) if !self.joined && self.held.len() < MAX_HELD => {
                        self.held.push(command);
                    }
                    Ok(Command::Put(key, _)) if !self.joined => {
                        (self.deliver)(Input::DhtPutDone { key, ok: false });
                    }
                    Ok(command) => self.command(Instant::now(), command),
                    Err(mpsc::TryRecvError::Empty) => break,
                    // The client is gone: the node stops.
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            if self.node.table(false).is_empty()
                && self.node.table(true).is_empty()
                && now >= self.next_bootstrap
            {
                self.bootstrap(now);
            }
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
            }
            self.flush();
            if !self.joined && now >= self.join_by {
                tracing::warn!("the DHT node has not joined a network yet; starting anyway");
                self.join(now);
            }
            if now >= self.next_status {
                self.next_status = now + STATUS_EVERY;
                self.update_status(now);
            }
            if now >= self.next_status_file {
                self.next_status_file = now + STATUS_FILE_EVERY;
                self.write_status_file();
            }
            let wait = self
                .node
                .poll_timeout()
                .map_or(TICK, |t| t.saturating_duration_since(now))
                .clamp(Duration::from_millis(1), TICK);
            if let Ok((from, data)) = datagrams.recv_timeout(wait) {
                self.node.handle_input(Instant::now(), from, &data);
                // Take what else came at once before looking at deadlines again.
                while let Ok((from, data)) = datagrams.try_recv() {
                    self.node.handle_input(Instant::now(), from, &data);
                }
            }
        }
    }

    fn bootstrap(&mut self, now: Instant) {
        self.next_bootstrap = now + self.rebootstrap;
        let mut unresolved = Vec::new();
        for name in &self.bootstrap {
            let addrs: Vec<SocketAddr> = match name.to_socket_addrs() {
                Ok(addrs) => addrs.collect(),
                Err(_) => Vec::new(),
            };
            let usable: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| self.sockets.reaches(a))
                .collect();
            if usable.is_empty() {
                unresolved.push(name.clone());
            }
            for addr in usable {
                self.node.bootstrap(now, addr);
            }
        }
        if !unresolved.is_empty() {
            tracing::warn!(?unresolved, "DHT bootstrap nodes that do not resolve");
        }
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .unresolved = unresolved;
    }

    fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::Put(key, value) => self.put(now, key, value),
            Command::Listen(key) => {
                if !self.listens.contains_key(&key) {
                    if let Some(search) = self.node.listen(now, InfoHash(key.0)) {
                        self.listens.insert(key, search);
                        self.listens_started += 1;
                    }
                }
            }
            Command::Cancel(key) => {
                if let Some(search) = self.listens.remove(&key) {
                    self.node.cancel(search);
                }
            }
        }
    }

    fn put(&mut self, now: Instant, key: DhtKey, value: Bytes) {
        let digest: [u8; 32] = Sha256::digest(&value).into();
        let same = self
            .puts
            .iter_mut()
            .find(|(_, p)| p.key == key && p.digest == digest);
        if let Some((search, p)) = same {
            match p.stored {
                // Still in its first round: answered with it.
                None => {
                    p.waiting += 1;
                    return;
                }
                Some(n) if n > 0 => {
                    (self.deliver)(Input::DhtPutDone { key, ok: true });
                    return;
                }
                // Stored nowhere last time: a fresh put, with a fresh lookup.
                Some(_) => {
                    let search = *search;
                    self.end_put(search);
                }
            }
        }
        let v = Value::new(self.node.value_id(), 0, value.to_vec());
        let Some(search) = self.node.put(now, InfoHash(key.0), v) else {
            // Too many searches running.
            (self.deliver)(Input::DhtPutDone { key, ok: false });
            return;
        };
        self.puts.insert(
            search,
            Put {
                key,
                digest,
                waiting: 1,
                stored: None,
            },
        );
        self.put_order.push_back(search);
        while self.put_order.len() > MAX_PUTS {
            if let Some(oldest) = self.put_order.pop_front() {
                self.end_put(oldest);
            }
        }
    }

    fn end_put(&mut self, search: SearchId) {
        self.node.cancel(search);
        self.put_order.retain(|s| *s != search);
        if let Some(p) = self.puts.remove(&search) {
            for _ in 0..p.waiting {
                (self.deliver)(Input::DhtPutDone {
                    key: p.key,
                    ok: false,
                });
            }
        }
    }

    /// Sends what the node gives and hands its events over.
    fn flush(&mut self) {
        while let Some(d) = self.node.poll_output() {
            self.sockets.send(&d.data, d.addr);
        }
        while let Some(event) = self.node.poll_event() {
            match event {
                Event::Values {
                    search,
                    key,
                    values,
                } => {
                    if self.listens.values().any(|s| *s == search) {
                        for v in values {
                            (self.deliver)(Input::DhtValue {
                                key: DhtKey(key.0),
                                value: Bytes::from(v.data),
                            });
                        }
                    }
                }
                Event::Stored { search, nodes } => {
                    if let Some(p) = self.puts.get_mut(&search) {
                        p.stored = Some(nodes);
                        for _ in 0..std::mem::take(&mut p.waiting) {
                            (self.deliver)(Input::DhtPutDone {
                                key: p.key,
                                ok: nodes > 0,
                            });
                        }
                    }
                }
                Event::GetDone { .. } => {
                    let table = self.node.table(false).len() + self.node.table(true).len();
                    if !self.in_network && table > 0 {
                        tracing::info!(nodes = table, "joined the DHT");
                        self.in_network = true;
                        self.joined_at = Some(Instant::now());
                        if self.joined {
                            // Started without a network: listens started on the empty
                            // table would wait a whole renewal period.
                            self.relisten(Instant::now());
                        } else {
                            self.join(Instant::now());
                        }
                    }
                }
            }
        }
    }

    fn relisten(&mut self, now: Instant) {
        let keys: Vec<DhtKey> = self.listens.keys().copied().collect();
        for key in keys {
            if let Some(old) = self.listens.remove(&key) {
                self.node.cancel(old);
            }
            self.command(now, Command::Listen(key));
        }
    }

    fn join(&mut self, now: Instant) {
        self.joined = true;
        for command in std::mem::take(&mut self.held) {
            self.command(now, command);
        }
        self.flush();
    }

    fn write_status_file(&self) {
        let Some(path) = &self.status_file else {
            return;
        };
        let status = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .to_json();
        let written = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut json = status;
        json["written"] = written.into();
        json["pid"] = std::process::id().into();
        let tmp = path.with_extension("json.tmp");
        let result =
            std::fs::write(&tmp, json.to_string()).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = result {
            tracing::debug!(path = %path.display(), error = %e, "cannot write the DHT status");
        }
    }

    fn update_status(&self, now: Instant) {
        let mut s = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        s.nodes6 = self.node.table(true).len();
        s.nodes = self.node.table(false).len() + s.nodes6;
        s.good = self.node.table(false).good(now) + self.node.table(true).good(now);
        let reach = self.node.reach();
        s.public = [false, true]
            .into_iter()
            .filter_map(|v6| reach.public_address(v6))
            .collect();
        let joined_for = self.joined_at.map(|t| now.saturating_duration_since(t));
        s.reachable = reach.verdict(joined_for, s.good).as_str();
        s.strangers = reach.strangers();
        s.sent = self.node.sent().clone();
        s.socket_dropped = self.sockets.queue_full.load(Ordering::Relaxed) + self.sockets.no_socket;
        s.stored = self.node.storage().values();
        s.listeners = self.node.storage().listeners_total();
        s.our_values = self.puts.len();
        s.our_values_stored = self
            .puts
            .values()
            .filter(|p| p.stored.is_some_and(|n| n > 0))
            .count();
        s.listens = self.listens.len();
        s.listens_started = self.listens_started;
        s.joined = self.in_network;
        s.dropped = self.node.dropped().clone();
    }
}

#[cfg(test)]
mod tests;
