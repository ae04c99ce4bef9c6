//! A small in-memory LAN for whole [`Node`]s: every host on one flat network, TCP as
//! reliable in-order pipes with a latency, one DHT, in-memory files, a virtual clock.
//!
//! It predates the simulator (`ferry-sim`) and has no NAT and no loss except the DHT faults
//! it is told. Its scenarios in `tests/tests/node_lan.rs` are now scenarios of
//! `tests/tests/scenarios.rs` too (s5, s6, s7, s8, s9, s10), all but one: the bound on the
//! time from `send_file` to the header (three DHT hops and four round trips), which the
//! simulator's scenarios print but do not assert yet. Once one does, this harness goes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{
    ConnId, ConnectError, DhtKey, Endpoint, Event, FileOp, FileResult, Input, ListenerId, Output,
};
use ferry_proto::node::Node;
use ferry_proto::transfer::{Digest, StreamDigest};

use crate::content;

/// One host: a node and its disk.
pub struct Host {
    /// Its name in traces.
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
    /// The node.
    pub node: Node,
    /// Every event its node emitted, with the time.
    pub events: Vec<(Duration, Event)>,
    /// Files under their final names.
    pub finals: BTreeMap<String, Vec<u8>>,
    /// Partial files by [`PartialKey`](ferry_proto::transfer::PartialKey) (its text).
    pub partials: BTreeMap<String, Vec<u8>>,
    open: BTreeMap<u64, OpenFile>,
    next_accepted: u32,
    up: bool,
}

enum OpenFile {
    Source {
        seed: u64,
        digest: Box<StreamDigest>,
    },
    Partial {
        /// The [`PartialKey`](ferry_proto::transfer::PartialKey)'s text: where its bytes are.
        key: String,
        /// The final name.
        name: String,
    },
}

struct Scheduled {
    at: Instant,
    seq: u64,
    host: usize,
    input: Input,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// The network.
pub struct Lan {
    /// When the run started.
    pub start: Instant,
    /// Now, in virtual time.
    pub now: Instant,
    /// The hosts.
    pub hosts: Vec<Host>,
    /// One-way latency of every TCP segment.
    pub latency: Duration,
    /// One-way latency of the DHT.
    pub dht_latency: Duration,
    /// Drop this many DHT puts under our peer keys first (a lossy DHT).
    pub drop_puts: usize,
    /// Deliver each DHT value this many times.
    pub dht_copies: usize,
    /// Bytes per second of each host's uplink.
    pub bandwidth: u64,
    busy_until: BTreeMap<usize, Instant>,
    listeners: BTreeMap<SocketAddr, (usize, ListenerId)>,
    conns: BTreeMap<(usize, ConnId), (usize, ConnId)>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    dht: BTreeMap<DhtKey, Vec<Bytes>>,
    dht_listeners: BTreeMap<DhtKey, BTreeSet<usize>>,
    next_port: u16,
    /// TCP connections opened, in all.
    pub connections_opened: u64,
}

impl Lan {
    /// An empty network.
    pub fn new(start: Instant) -> Lan {
        Lan {
            start,
            now: start,
            hosts: Vec::new(),
            latency: Duration::from_millis(5),
            dht_latency: Duration::from_millis(50),
            drop_puts: 0,
            dht_copies: 1,
            bandwidth: 50_000_000,
            busy_until: BTreeMap::new(),
            listeners: BTreeMap::new(),
            conns: BTreeMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            dht: BTreeMap::new(),
            dht_listeners: BTreeMap::new(),
            next_port: 40000,
            connections_opened: 0,
        }
    }

    /// Adds a host running `node`; returns its index.
    pub fn add(&mut self, name: &str, ip: IpAddr, node: Node) -> usize {
        self.hosts.push(Host {
            name: name.to_owned(),
            ip,
            node,
            events: Vec::new(),
            finals: BTreeMap::new(),
            partials: BTreeMap::new(),
            open: BTreeMap::new(),
            next_accepted: 1,
            up: true,
        });
        let h = self.hosts.len() - 1;
        self.drain(h);
        h
    }

    /// Takes a host off the network: it hears nothing more and says nothing more.
    pub fn power_off(&mut self, host: usize) {
        self.hosts[host].up = false;
    }

    /// Calls `f` on a host's node at the current time, then carries out what it asked.
    pub fn with<R>(&mut self, host: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let r = f(&mut self.hosts[host].node, self.now);
        self.drain(host);
        r
    }

    /// Runs until `stop` says so after an event, or until `limit` of virtual time passed.
    /// Returns whether `stop` said so.
    pub fn run_until(&mut self, limit: Duration, mut stop: impl FnMut(&Lan) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            if stop(self) {
                return true;
            }
            let next_input = self.queue.peek().map(|Reverse(s)| s.at);
            let next_timer = self
                .hosts
                .iter()
                .filter(|h| h.up)
                .filter_map(|h| h.node.poll_timeout())
                .min();
            let Some(next) = [next_input, next_timer].into_iter().flatten().min() else {
                return stop(self);
            };
            if next > end {
                self.now = end;
                return stop(self);
            }
            self.now = self.now.max(next);
            while let Some(Reverse(s)) = self.queue.peek() {
                if s.at > self.now {
                    break;
                }
                let Some(Reverse(s)) = self.queue.pop() else {
                    break;
                };
                if self.hosts[s.host].up {
                    let now = self.now;
                    if let Err(e) = self.hosts[s.host].node.handle_input(now, s.input) {
                        panic!("{} refused an input: {e}", self.hosts[s.host].name);
                    }
                    self.drain(s.host);
                }
            }
            for h in 0..self.hosts.len() {
                if self.hosts[h].up
                    && self.hosts[h]
                        .node
                        .poll_timeout()
                        .is_some_and(|t| t <= self.now)
                {
                    let now = self.now;
                    self.hosts[h].node.handle_timeout(now);
                    self.drain(h);
                }
            }
        }
    }

    /// The events of a host, without times.
    pub fn events(&self, host: usize) -> Vec<Event> {
        self.hosts[host]
            .events
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    fn schedule(&mut self, at: Instant, host: usize, input: Input) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            host,
            input,
        }));
    }

    fn drain(&mut self, h: usize) {
        while let Some(out) = self.hosts[h].node.poll_output() {
            if !self.hosts[h].up {
                continue;
            }
            self.on_output(h, out);
        }
    }

    fn on_output(&mut self, h: usize, out: Output) {
        let now = self.now;
        let ip = self.hosts[h].ip;
        match out {
            Output::Listen { listener, local } => {
                let port = if local.port() == 0 {
                    self.next_port += 1;
                    self.next_port
                } else {
                    local.port()
                };
                let addr = SocketAddr::new(local.ip(), port);
                self.listeners.insert(addr, (h, listener));
                self.schedule(
                    now,
                    h,
                    Input::Listening {
                        listener,
                        local: addr,
                    },
                );
            }
            Output::Connect {
                conn,
                remote,
                local_port,
                ..
            } => {
                let local = SocketAddr::new(
                    ip,
                    local_port.unwrap_or_else(|| {
                        self.next_port += 1;
                        self.next_port
                    }),
                );
                match self.listeners.get(&remote).copied() {
                    Some((r, listener)) if self.hosts[r].up => {
                        let acc = ConnId::Accepted(self.hosts[r].next_accepted);
                        self.hosts[r].next_accepted += 1;
                        self.conns.insert((h, conn), (r, acc));
                        self.conns.insert((r, acc), (h, conn));
                        self.connections_opened += 1;
                        self.schedule(
                            now + self.latency,
                            r,
                            Input::Accepted {
                                listener,
                                conn: acc,
                                remote: local,
                            },
                        );
                        self.schedule(now + self.latency * 2, h, Input::Connected { conn, local });
                    }
                    _ => self.schedule(
                        now + self.latency * 2,
                        h,
                        Input::ConnectFailed {
                            conn,
                            error: ConnectError::Refused,
                        },
                    ),
                }
            }
            Output::Send { conn, data } => {
                let len = data.len();
                // The uplink sends one thing at a time: the bytes leave, then travel.
                let start = self.busy_until.get(&h).copied().unwrap_or(now).max(now);
                let sent = start + Duration::from_secs_f64(len as f64 / self.bandwidth as f64);
                self.busy_until.insert(h, sent);
                if let Some((r, rc)) = self.conns.get(&(h, conn)).copied() {
                    self.schedule(sent + self.latency, r, Input::Received { conn: rc, data });
                }
                self.schedule(sent, h, Input::Writable { conn, bytes: len });
            }
            Output::Close { conn } | Output::HalfClose { conn } => {
                if let Some((r, rc)) = self.conns.remove(&(h, conn)) {
                    self.conns.remove(&(r, rc));
                    self.schedule(now + self.latency, r, Input::Closed { conn: rc });
                }
            }
            Output::Reset { conn } => {
                if let Some((r, rc)) = self.conns.remove(&(h, conn)) {
                    self.conns.remove(&(r, rc));
                    self.schedule(now + self.latency, r, Input::Reset { conn: rc });
                }
            }
            Output::DhtPut { key, value } => {
                if self.drop_puts > 0
                    && !self.dht_listeners.get(&key).is_some_and(|l| l.contains(&h))
                {
                    self.drop_puts -= 1;
                    return;
                }
                let values = self.dht.entry(key).or_default();
                if values.contains(&value) {
                    return;
                }
                values.push(value.clone());
                let listeners: Vec<usize> = self
                    .dht_listeners
                    .get(&key)
                    .map(|l| l.iter().copied().collect())
                    .unwrap_or_default();
                for r in listeners {
                    for _ in 0..self.dht_copies {
                        self.schedule(
                            now + self.dht_latency,
                            r,
                            Input::DhtValue {
                                key,
                                value: value.clone(),
                            },
                        );
                    }
                }
            }
            Output::DhtListen { key } => {
                self.dht_listeners.entry(key).or_default().insert(h);
                for value in self.dht.get(&key).cloned().unwrap_or_default() {
                    self.schedule(now + self.dht_latency, h, Input::DhtValue { key, value });
                }
            }
            Output::DhtCancelListen { key } => {
                if let Some(l) = self.dht_listeners.get_mut(&key) {
                    l.remove(&h);
                }
            }
            Output::File(op) => {
                let result = self.file(h, op);
                self.schedule(now, h, Input::File(result));
            }
            Output::Event(e) => self.hosts[h].events.push((now - self.start, e)),
            _ => {}
        }
    }

    /// Serves a file operation. Sources named `seed:<n>:<len>` are generated from the seed.
    fn file(&mut self, h: usize, op: FileOp) -> FileResult {
        let host = &mut self.hosts[h];
        match op {
            FileOp::OpenSource { file, source } => {
                let parts: Vec<&str> = source.split(':').collect();
                match (
                    parts.first(),
                    parts.get(1).and_then(|s| s.parse().ok()),
                    parts.get(2).and_then(|s| s.parse().ok()),
                ) {
                    (Some(&"seed"), Some(seed), Some(len)) => {
                        host.open.insert(
                            file.0,
                            OpenFile::Source {
                                seed,
                                digest: Box::default(),
                            },
                        );
                        FileResult::Opened { file, len }
                    }
                    _ => FileResult::Failed {
                        file,
                        error: ferry_proto::io::FileError::NotFound,
                    },
                }
            }
            FileOp::Read { file, offset, len } => match host.open.get_mut(&file.0) {
                Some(OpenFile::Source { seed, digest, .. }) => {
                    let data = content::range(*seed, offset, len as usize);
                    digest.update(offset, &data);
                    FileResult::Data {
                        file,
                        offset,
                        data: Bytes::from(data),
                    }
                }
                _ => FileResult::Failed {
                    file,
                    error: ferry_proto::io::FileError::NotFound,
                },
            },
            FileOp::Digest { file, len } => match host.open.get_mut(&file.0) {
                Some(OpenFile::Source { seed, digest, .. }) => {
                    let mut d = std::mem::take(digest.as_mut());
                    let missing = d.missing(len);
                    d.update(
                        missing.start,
                        &content::range(
                            *seed,
                            missing.start,
                            (missing.end - missing.start) as usize,
                        ),
                    );
                    FileResult::Digest {
                        file,
                        digest: d.finish(),
                    }
                }
                Some(OpenFile::Partial { key, .. }) => {
                    let data = host.partials.get(key).cloned().unwrap_or_default();
                    FileResult::Digest {
                        file,
                        digest: Digest::of(&data[..(len as usize).min(data.len())]),
                    }
                }
                None => FileResult::Failed {
                    file,
                    error: ferry_proto::io::FileError::NotFound,
                },
            },
            FileOp::OpenPartial {
                file,
                name,
                size,
                key,
                resume,
            } => {
                let (key, name) = (key.to_string(), name.to_string());
                let p = host.partials.entry(key.clone()).or_default();
                if p.len() as u64 > size || !resume {
                    p.clear();
                }
                let len = p.len() as u64;
                host.open.insert(file.0, OpenFile::Partial { key, name });
                FileResult::Opened { file, len }
            }
            FileOp::Write { file, offset, data } => {
                let Some(OpenFile::Partial { key, .. }) = host.open.get(&file.0) else {
                    return FileResult::Failed {
                        file,
                        error: ferry_proto::io::FileError::NotFound,
                    };
                };
                let p = host.partials.entry(key.clone()).or_default();
                let end = offset as usize + data.len();
                if p.len() < end {
                    p.resize(end, 0);
                }
                p[offset as usize..end].copy_from_slice(&data);
                FileResult::Written {
                    file,
                    offset,
                    len: data.len() as u32,
                }
            }
            FileOp::Commit { file } => {
                let Some(OpenFile::Partial { key, name }) = host.open.remove(&file.0) else {
                    return FileResult::Failed {
                        file,
                        error: ferry_proto::io::FileError::NotFound,
                    };
                };
                let data = host.partials.remove(&key).unwrap_or_default();
                let mut final_name = name.clone();
                let mut n = 1;
                while host.finals.contains_key(&final_name) {
                    final_name = format!("{name} ({n})");
                    n += 1;
                }
                host.finals.insert(final_name.clone(), data);
                FileResult::Committed {
                    file,
                    name: final_name,
                }
            }
            FileOp::Discard { file } => {
                if let Some(OpenFile::Partial { key, .. }) = host.open.remove(&file.0) {
                    host.partials.remove(&key);
                }
                FileResult::Closed { file }
            }
            FileOp::Close { file } => {
                host.open.remove(&file.0);
                FileResult::Closed { file }
            }
            other => FileResult::Failed {
                file: other.file(),
                error: ferry_proto::io::FileError::Other("unsupported".into()),
            },
        }
    }
}
