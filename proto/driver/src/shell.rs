//! The runtime-independent half of a driver: the [`Shell`] around one [`Endpoint`].
//!
//! A runtime (smol, tokio) provides sockets and tasks through the [`Net`] trait and an event
//! loop that waits for the next [`SocketEvent`], [`Input`] (from the file workers and the DHT),
//! application command or deadline, and hands it to the shell. The shell carries out every
//! [`Output`] and keeps the bookkeeping both runtimes would otherwise write twice:
//!
//! - names: a [`Tag`] per socket, never reused, so a late report from a stopped task is
//!   recognised and dropped; [`ConnId::Accepted`] numbers for accepted connections;
//! - `PauseReading`: the reader task stops, and what it had already read is held back, in
//!   order, until `ResumeReading`; the reader starts again once the held reads are all
//!   delivered, so what is held never outgrows one pause's worth;
//! - closing: a half-close is a FIN after the queued bytes; [`Input::HalfClosed`] when the peer
//!   ends its side first, [`Input::Closed`] once both sides are done; a `Close` keeps reading
//!   (and discarding) until the peer's FIN or [`CLOSE_LINGER`], so that unread bytes never
//!   turn our close into a reset that loses our last bytes;
//! - deadlines: connect timeouts and close lingers, beside the endpoint's own.
//!
//! Memory stays bounded without a limit of its own here: a connection's write queue holds at
//! most what the endpoint sent and `Writable` has not returned (its send window), the file
//! thread's queue what the endpoint asked and was not answered (its read and write windows),
//! and what a paused connection holds back is what its reader had read before it stopped (at
//! most [`READS_IN_FLIGHT`](crate::buffers::READS_IN_FLIGHT) reads: a reader reports no more
//! until the shell hands earlier ones to the endpoint, see [`SocketEvent::Received`]).
//!
//! It is not sans-IO, unlike the endpoint it wraps: it binds listeners and starts connects
//! itself ([`net::listener`], [`net::start_connect`]) before handing the sockets to the
//! runtime, and reaches the rest of the world through [`Net`]'s tasks, the [`FileThread`]
//! and the [`DhtConnection`]. It keeps no clock and never waits: time comes in as an
//! argument, and the runtime's loop does the waiting.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;

use super::DhtConnection;
use super::buffers::ReadCredit;
use super::files::FileThread;
use super::net;
use ferry_proto::io::{ConnId, ConnectError, DhtKey, Endpoint, Input, ListenerId, Output};
use ferry_proto::timer::Timers;

pub use ferry_proto::io::CLOSE_LINGER;

/// Most closed connections kept reading for their peer's FIN at once. Past it, the oldest is
/// let go at once (its peer may then see a reset instead of our FIN): a flood of peers that
/// never close their side cannot make our closes hold descriptors without bound. The core
/// resets what it drops from strangers, so this is a backstop, not the usual path.
pub const MAX_LINGERING: usize = 256;

/// The shell's name for one socket (listener or connection). Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(pub u64);

/// What a runtime's socket tasks report to the shell.
#[derive(Debug)]
pub enum SocketEvent<S> {
    /// The accept task of listener `tag` accepted a connection.
    Accepted {
        /// The listener's tag.
        tag: Tag,
        /// The new connection.
        stream: S,
        /// Who connected.
        remote: SocketAddr,
    },
    /// A connect finished ([`net::finish_connect`] said so).
    Connected {
        /// The connection's tag.
        tag: Tag,
        /// The connection.
        stream: S,
        /// The local address it got.
        local: SocketAddr,
    },
    /// A connect failed.
    ConnectFailed {
        /// The connection's tag.
        tag: Tag,
        /// Why.
        error: ConnectError,
    },
    /// The reader task read bytes.
    Received {
        /// The connection's tag.
        tag: Tag,
        /// The bytes.
        data: Bytes,
        /// Dropped once the bytes are handed to the core (or discarded): until then they
        /// count among the reader's [`READS_IN_FLIGHT`](crate::buffers::READS_IN_FLIGHT).
        credit: ReadCredit,
    },
    /// The writer task handed `bytes` more bytes to the system.
    Sent {
        /// The connection's tag.
        tag: Tag,
        /// How many.
        bytes: usize,
    },
    /// The writer task sent our FIN, after every queued byte.
    FinSent {
        /// The connection's tag.
        tag: Tag,
    },
    /// The reader task read the peer's FIN; it has stopped.
    Eof {
        /// The connection's tag.
        tag: Tag,
    },
    /// Reading or writing failed (a reset, mostly); the connection is gone.
    Failed {
        /// The connection's tag.
        tag: Tag,
    },
}

/// What a runtime provides: tasks over its own sockets, each reporting [`SocketEvent`]s.
///
/// Dropping a [`Task`](Net::Task) or a [`Conn`](Net::Conn) stops its tasks and closes the
/// socket.
pub trait Net {
    /// A connected socket of this runtime.
    type Stream;
    /// A running connection: its reader and writer tasks and the way to reach them.
    type Conn;
    /// A running accept or connect task.
    type Task;

    /// Starts accepting on `listener` (non-blocking, from [`net::listener`]), reporting
    /// [`SocketEvent::Accepted`] with `tag`.
    fn accept(&mut self, tag: Tag, listener: std::net::TcpListener) -> std::io::Result<Self::Task>;

    /// Waits until the connect started on `socket` (by [`net::start_connect`]) is writable,
    /// then reports [`SocketEvent::Connected`] or [`SocketEvent::ConnectFailed`] with `tag`.
    fn connect(&mut self, tag: Tag, socket: std::net::TcpStream) -> std::io::Result<Self::Task>;

    /// Starts the reader and writer tasks of a connection, reading at once.
    fn start(&mut self, tag: Tag, stream: Self::Stream) -> Self::Conn;

    /// Queues bytes for the writer; it reports [`SocketEvent::Sent`] as they leave.
    fn send(&mut self, conn: &Self::Conn, data: Bytes);

    /// Queues our FIN after the bytes already queued; reported by [`SocketEvent::FinSent`].
    fn shutdown_write(&mut self, conn: &Self::Conn);

    /// Stops or restarts the reader (TCP's window then pushes back on the peer).
    fn set_reading(&mut self, conn: &Self::Conn, on: bool);

    /// Aborts the connection with a reset (see [`net::reset_on_close`]), dropping its queue.
    fn reset(&mut self, conn: Self::Conn);
}

/// What a reader reported while its connection was paused, kept in order.
enum Held {
    /// The bytes, and their place among the reader's reads in flight.
    Data(Bytes, ReadCredit),
    Eof,
}

struct Open<C> {
    conn: ConnId,
    io: C,
    paused: bool,
    /// The reader was last told to read (false from a pause until its held reads are out).
    reading: bool,
    held: VecDeque<Held>,
    fin_asked: bool,
    fin_sent: bool,
    eof: bool,
}

enum Socket<N: Net> {
    Connecting {
        conn: ConnId,
        _task: N::Task,
    },
    Open(Open<N::Conn>),
    /// The endpoint closed it and forgot it; waiting for both FINs.
    Closing {
        _io: N::Conn,
        fin_sent: bool,
        eof: bool,
    },
}

struct Listener<T> {
    id: ListenerId,
    local: SocketAddr,
    /// A second handle on the listening socket, to stop it at once when it is dropped: the
    /// runtime's accept task lets go of its own handle only when the runtime next polls it.
    closer: std::net::TcpListener,
    _task: T,
}

impl<T> Drop for Listener<T> {
    fn drop(&mut self) {
        // On Linux this takes the socket out of LISTEN now, so the port refuses connections
        // as soon as the endpoint said `Unlisten`; elsewhere it may fail, and closing waits
        // for the task.
        let _ = socket2::SockRef::from(&self.closer).shutdown(std::net::Shutdown::Both);
    }
}

/// Runs one [`Endpoint`] through a runtime's [`Net`], a [`FileThread`] and a [`DhtConnection`].
///
/// The runtime's loop calls, for whatever woke it: [`handle_socket`](Self::handle_socket),
/// [`handle_input`](Self::handle_input), [`command`](Self::command) or
/// [`handle_timeout`](Self::handle_timeout); then takes the application's events with
/// [`poll_event`](Self::poll_event) and sleeps until [`poll_timeout`](Self::poll_timeout) or
/// the next wake-up. Every handler carries out all the outputs it caused before it returns.
pub struct Shell<E: Endpoint, N: Net> {
    endpoint: E,
    net: N,
    files: FileThread,
    dht: DhtConnection,
    dht_listening: BTreeSet<DhtKey>,
    next_tag: u64,
    next_accepted: u32,
    listeners: BTreeMap<Tag, Listener<N::Task>>,
    sockets: BTreeMap<Tag, Socket<N>>,
    conns: BTreeMap<ConnId, Tag>,
    /// Connect timeouts and close lingers, by socket.
    timers: Timers<Tag>,
    /// Paused connections that were resumed with bytes held back.
    resumed: VecDeque<Tag>,
    events: VecDeque<E::Event>,
    refused: u64,
    last_refused: Option<ferry_proto::Error>,
    unknown_outputs: u64,
    /// After [`close_all`](Self::close_all): the endpoint is no longer run.
    closing: bool,
    /// The port-mapping service, started at the endpoint's first `MapPort`.
    portmap: PortMapService,
}

/// Where the shell's port-mapping service stands.
enum PortMapService {
    /// This shell has none (made with [`Shell::new`]): every `MapPort` is answered lost.
    Unavailable,
    /// Not started yet; its reports go to this.
    Idle(Box<dyn Fn(Input) + Send + Sync>),
    /// Running.
    Running(crate::portmap::PortMapper),
}

impl<E: Endpoint, N: Net> Shell<E, N>
where
    // Logged by `logs::event` when it is a node's.
    E::Event: 'static,
{
    /// Wraps `endpoint` with a file thread and a DHT client made from `config`, whose results
    /// go to `deliver` (a send on the runtime's channel of inputs, for
    /// [`handle_input`](Self::handle_input)).
    pub fn start(
        endpoint: E,
        net: N,
        config: &super::Config,
        deliver: impl Fn(Input) + Clone + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        // The receive folder is made when the first file is taken (`ReceiveFolder::open`),
        // not here: a driver that only sends makes none.
        let to_files = deliver.clone();
        let service = super::FileService::new(&config.receive_folder);
        let files = FileThread::spawn(service, move |result| to_files(Input::File(result)))?;
        let to_portmap = deliver.clone();
        let dht = DhtConnection::open(&config.dht, deliver)?;
        let mut shell = Shell::new(endpoint, net, files, dht);
        shell.portmap = PortMapService::Idle(Box::new(to_portmap));
        Ok(shell)
    }

    /// Wraps `endpoint`. Nothing happens until the first handler call: call
    /// [`handle_timeout`](Self::handle_timeout) once at the start to carry out what the
    /// endpoint asked for when it was made.
    pub fn new(endpoint: E, net: N, files: FileThread, dht: DhtConnection) -> Self {
        Shell {
            endpoint,
            net,
            files,
            dht,
            dht_listening: BTreeSet::new(),
            next_tag: 0,
            next_accepted: 1,
            listeners: BTreeMap::new(),
            sockets: BTreeMap::new(),
            conns: BTreeMap::new(),
            timers: Timers::new(),
            resumed: VecDeque::new(),
            events: VecDeque::new(),
            refused: 0,
            last_refused: None,
            unknown_outputs: 0,
            closing: false,
            portmap: PortMapService::Unavailable,
        }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &E {
        &self.endpoint
    }

    /// How many inputs the endpoint refused (`handle_input` returned an error), and the last
    /// such error: driver bugs, or races an endpoint should tolerate. For tests and logs; a
    /// driver never stops for them.
    pub fn refused(&self) -> (u64, Option<&ferry_proto::Error>) {
        (self.refused, self.last_refused.as_ref())
    }

    /// How many outputs the endpoint gave that this driver does not know how to carry out
    /// (a newer core's); zero unless the core and the driver disagree on the vocabulary.
    pub fn unknown_outputs(&self) -> u64 {
        self.unknown_outputs
    }

    /// Runs an application command on the endpoint, then carries out what it asked.
    pub fn command(&mut self, now: Instant, f: impl FnOnce(&mut E, Instant)) {
        f(&mut self.endpoint, now);
        self.drain(now);
    }

    /// An input from the file workers or the DHT.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if !self.dht.admit(&input) {
            return;
        }
        // A value already queued when the endpoint stopped listening is not news to it.
        if let Input::DhtValue { key, .. } = &input {
            if !self.dht_listening.contains(key) {
                return;
            }
        }
        self.feed(now, input);
        self.drain(now);
    }

    /// A report from a socket task.
    pub fn handle_socket(&mut self, now: Instant, event: SocketEvent<N::Stream>) {
        match event {
            SocketEvent::Accepted {
                tag,
                stream,
                remote,
            } => {
                let Some(listener) = self.listeners.get(&tag).map(|l| l.id) else {
                    return; // Unlistened meanwhile: dropping the stream closes it.
                };
                let tag = self.tag();
                let conn = self.accepted_id();
                tracing::debug!(target: "ferry_driver::net", ?conn, %remote, "connection accepted");
                let io = self.net.start(tag, stream);
                self.sockets.insert(tag, Socket::Open(Open::new(conn, io)));
                self.conns.insert(conn, tag);
                self.feed(
                    now,
                    Input::Accepted {
                        listener,
                        conn,
                        remote,
                    },
                );
            }
            SocketEvent::Connected { tag, stream, local } => {
                let Some(Socket::Connecting { conn, .. }) = self.sockets.get(&tag) else {
                    return;
                };
                let conn = *conn;
                tracing::debug!(target: "ferry_driver::net", ?conn, %local, "connection opened");
                self.timers.clear(tag);
                let io = self.net.start(tag, stream);
                self.sockets.insert(tag, Socket::Open(Open::new(conn, io)));
                self.feed(now, Input::Connected { conn, local });
            }
            SocketEvent::ConnectFailed { tag, error } => {
                if let Some(Socket::Connecting { conn, .. }) = self.sockets.get(&tag) {
                    let conn = *conn;
                    tracing::debug!(target: "ferry_driver::net", ?conn, ?error, "connect failed");
                    self.forget(tag);
                    self.feed(now, Input::ConnectFailed { conn, error });
                }
            }
            SocketEvent::Received { tag, data, credit } => match self.sockets.get_mut(&tag) {
                Some(Socket::Open(o)) if o.paused || !o.held.is_empty() => {
                    o.held.push_back(Held::Data(data, credit));
                }
                Some(Socket::Open(o)) => {
                    let conn = o.conn;
                    self.feed(now, Input::Received { conn, data });
                    drop(credit);
                }
                _ => {} // Closing: read and discarded.
            },
            SocketEvent::Sent { tag, bytes } => {
                if let Some(Socket::Open(o)) = self.sockets.get(&tag) {
                    let conn = o.conn;
                    self.feed(now, Input::Writable { conn, bytes });
                }
            }
            SocketEvent::FinSent { tag } => match self.sockets.get_mut(&tag) {
                Some(Socket::Open(o)) => {
                    o.fin_sent = true;
                    if o.eof {
                        let conn = o.conn;
                        self.forget(tag);
                        self.feed(now, Input::Closed { conn });
                    }
                }
                Some(Socket::Closing { fin_sent, eof, .. }) => {
                    *fin_sent = true;
                    if *eof {
                        self.forget(tag);
                    }
                }
                _ => {}
            },
            SocketEvent::Eof { tag } => match self.sockets.get_mut(&tag) {
                Some(Socket::Open(o)) if o.paused || !o.held.is_empty() => {
                    o.held.push_back(Held::Eof);
                }
                Some(Socket::Open(_)) => self.eof(now, tag),
                Some(Socket::Closing { fin_sent, eof, .. }) => {
                    *eof = true;
                    if *fin_sent {
                        self.forget(tag);
                    }
                }
                _ => {}
            },
            SocketEvent::Failed { tag } => {
                let conn = match self.sockets.get(&tag) {
                    Some(Socket::Open(o)) => Some(o.conn),
                    _ => None,
                };
                self.forget(tag);
                if let Some(conn) = conn {
                    self.feed(now, Input::Reset { conn });
                }
            }
        }
        self.drain(now);
    }

    /// Lets time pass: connect timeouts, close lingers and the endpoint's own deadline.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(tag) = self.timers.pop_expired(now) {
            let timed_out = match self.sockets.get(&tag) {
                Some(Socket::Connecting { conn, .. }) => Some(*conn),
                _ => None,
            };
            self.forget(tag);
            if let Some(conn) = timed_out {
                let error = ConnectError::TimedOut;
                self.feed(now, Input::ConnectFailed { conn, error });
            }
        }
        if !self.closing && self.endpoint.poll_timeout().is_some_and(|at| at <= now) {
            self.endpoint.handle_timeout(now);
        }
        self.drain(now);
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<E::Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let endpoint = self.endpoint.poll_timeout().filter(|_| !self.closing);
        match (endpoint, self.timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Stops listening and closes every connection as [`Output::Close`] does: queued bytes
    /// first, then a FIN, then reading until the peer's FIN or [`CLOSE_LINGER`]. For a runtime
    /// that is shutting down: it keeps handing socket reports and timeouts to the shell until
    /// [`is_closed`](Self::is_closed), or the linger has passed. The endpoint is not run any
    /// more (its timers no longer fire), so it opens nothing new.
    pub fn close_all(&mut self, now: Instant) {
        self.closing = true;
        self.listeners.clear();
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close(now, conn);
        }
    }

    /// Whether no socket is left (after [`close_all`](Self::close_all)).
    pub fn is_closed(&self) -> bool {
        self.sockets.is_empty() && self.listeners.is_empty()
    }

    /// The next name for an accepted connection; after 2^32 of them, numbers come round again,
    /// skipping those still in use.
    fn accepted_id(&mut self) -> ConnId {
        loop {
            let conn = ConnId::Accepted(self.next_accepted);
            self.next_accepted = self.next_accepted.wrapping_add(1);
            if !self.conns.contains_key(&conn) {
                return conn;
            }
        }
    }

    fn tag(&mut self) -> Tag {
        self.next_tag += 1;
        Tag(self.next_tag)
    }

    fn feed(&mut self, now: Instant, input: Input) {
        if let Err(e) = self.endpoint.handle_input(now, input) {
            self.refused += 1;
            self.last_refused = Some(e);
        }
    }

    /// Drops a socket (stopping its tasks) and its names.
    fn forget(&mut self, tag: Tag) {
        self.timers.clear(tag);
        if let Some(Socket::Connecting { conn, .. } | Socket::Open(Open { conn, .. })) =
            self.sockets.remove(&tag)
        {
            self.conns.remove(&conn);
        }
    }

    /// The peer ended its side of an open connection.
    fn eof(&mut self, now: Instant, tag: Tag) {
        let Some(Socket::Open(o)) = self.sockets.get_mut(&tag) else {
            return;
        };
        o.eof = true;
        let conn = o.conn;
        if o.fin_sent {
            self.forget(tag);
            self.feed(now, Input::Closed { conn });
        } else {
            self.feed(now, Input::HalfClosed { conn });
        }
    }

    /// Carries out every output, and releases held-back reads of resumed connections, until
    /// the endpoint has nothing more to say.
    fn drain(&mut self, now: Instant) {
        loop {
            while let Some(output) = self.endpoint.poll_output() {
                self.carry_out(now, output);
            }
            let Some(tag) = self.resumed.pop_front() else {
                return;
            };
            let Some(Socket::Open(o)) = self.sockets.get_mut(&tag) else {
                continue;
            };
            if o.paused {
                continue;
            }
            let conn = o.conn;
            match o.held.pop_front() {
                Some(Held::Data(data, credit)) => {
                    self.feed(now, Input::Received { conn, data });
                    drop(credit);
                }
                Some(Held::Eof) => self.eof(now, tag),
                None => {}
            }
            // The reader starts again only once what it read before is all delivered: a
            // reader let go while bytes are still held reads on into the queue at the
            // socket's speed, and a connection paused again each time its bytes arrive (a
            // receiver's write window) would grow it by every round's reads.
            match self.sockets.get_mut(&tag) {
                Some(Socket::Open(o)) if !o.paused && !o.held.is_empty() => {
                    self.resumed.push_front(tag);
                }
                Some(Socket::Open(o)) if !o.paused && !o.reading => {
                    o.reading = true;
                    self.net.set_reading(&o.io, true);
                }
                _ => {}
            }
        }
    }

    fn carry_out(&mut self, now: Instant, output: Output<E::Event>) {
        match output {
            Output::Listen { listener, local } => {
                let input = match self.listen(listener, local) {
                    Ok(local) => Input::Listening { listener, local },
                    Err(e) => Input::ListenFailed {
                        listener,
                        reason: e.to_string(),
                    },
                };
                self.feed(now, input);
            }
            Output::Unlisten { listener } => self.listeners.retain(|_, l| l.id != listener),
            Output::Connect {
                conn,
                remote,
                local_port,
                timeout,
            } => {
                let listening = self.listeners.values().map(|l| l.local);
                let local = local_port.map(|port| net::local_for(remote, port, listening));
                tracing::debug!(target: "ferry_driver::net", ?conn, %remote, ?local, "connecting");
                let tag = self.tag();
                let started = net::start_connect(remote, local).and_then(|socket| {
                    self.net
                        .connect(tag, socket)
                        .map_err(|e| net::connect_error(&e))
                });
                match started {
                    Ok(task) => {
                        self.sockets
                            .insert(tag, Socket::Connecting { conn, _task: task });
                        self.conns.insert(conn, tag);
                        self.timers.set(tag, now + timeout);
                    }
                    Err(error) => self.feed(now, Input::ConnectFailed { conn, error }),
                }
            }
            Output::Send { conn, data } => {
                if let Some((_, o)) = open(&self.conns, &mut self.sockets, conn) {
                    self.net.send(&o.io, data);
                }
            }
            Output::HalfClose { conn } => {
                if let Some((_, o)) = open(&self.conns, &mut self.sockets, conn) {
                    if !o.fin_asked {
                        o.fin_asked = true;
                        self.net.shutdown_write(&o.io);
                    }
                }
            }
            Output::Close { conn } => {
                tracing::debug!(target: "ferry_driver::net", ?conn, "closing");
                self.close(now, conn);
            }
            Output::Reset { conn } => {
                tracing::debug!(target: "ferry_driver::net", ?conn, "resetting");
                let Some(tag) = self.conns.remove(&conn) else {
                    return;
                };
                self.timers.clear(tag);
                if let Some(Socket::Open(o)) = self.sockets.remove(&tag) {
                    self.net.reset(o.io);
                }
            }
            Output::PauseReading { conn } => {
                if let Some((_, o)) = open(&self.conns, &mut self.sockets, conn) {
                    if !o.paused {
                        o.paused = true;
                        if o.reading {
                            o.reading = false;
                            self.net.set_reading(&o.io, false);
                        }
                    }
                }
            }
            Output::ResumeReading { conn } => {
                if let Some((tag, o)) = open(&self.conns, &mut self.sockets, conn) {
                    if o.paused {
                        o.paused = false;
                        if !o.held.is_empty() {
                            // The reader starts again once these are delivered (`drain`).
                            self.resumed.push_back(tag);
                        } else if !o.reading {
                            o.reading = true;
                            self.net.set_reading(&o.io, true);
                        }
                    }
                }
            }
            Output::DhtPut { key, value } => self.dht.put(key, value),
            Output::DhtListen { key } => {
                self.dht_listening.insert(key);
                self.dht.listen(key);
            }
            Output::DhtCancelListen { key } => {
                self.dht_listening.remove(&key);
                self.dht.cancel_listen(key);
            }
            Output::File(op) => self.files.submit(op),
            Output::MapPort { listener, local } => self.map_port(now, listener, local),
            Output::UnmapPorts => match &self.portmap {
                PortMapService::Running(mapper) => mapper.unmap_all(),
                _ => self.feed(now, Input::PortsUnmapped),
            },
            Output::Event(event) => {
                crate::logs::event(&event);
                self.events.push_back(event);
            }
            // A newer core's output that this driver cannot carry out: counted, so a test or
            // a log can see it, rather than silently dropped.
            _ => self.unknown_outputs += 1,
        }
    }

    /// Hands a `MapPort` to the port-mapping service, started on the first one.
    fn map_port(&mut self, now: Instant, listener: ListenerId, local: SocketAddr) {
        if let PortMapService::Idle(_) = self.portmap {
            let PortMapService::Idle(deliver) =
                std::mem::replace(&mut self.portmap, PortMapService::Unavailable)
            else {
                return;
            };
            match crate::portmap::PortMapper::spawn(Default::default(), deliver) {
                Ok(mapper) => self.portmap = PortMapService::Running(mapper),
                Err(e) => tracing::warn!("no port-mapping thread: {e}"),
            }
        }
        match &self.portmap {
            PortMapService::Running(mapper) => mapper.map(listener, local),
            _ => {
                let reason = "this driver has no port-mapping service".to_owned();
                self.feed(now, Input::PortMappingLost { listener, reason });
            }
        }
    }

    fn listen(&mut self, id: ListenerId, local: SocketAddr) -> std::io::Result<SocketAddr> {
        let socket = net::listener(local)?;
        let local = socket.local_addr()?;
        let closer = socket.try_clone()?;
        let tag = self.tag();
        let task = self.net.accept(tag, socket)?;
        self.listeners.insert(
            tag,
            Listener {
                id,
                local,
                closer,
                _task: task,
            },
        );
        Ok(local)
    }

    fn close(&mut self, now: Instant, conn: ConnId) {
        let Some(tag) = self.conns.remove(&conn) else {
            return;
        };
        self.timers.clear(tag);
        let Some(Socket::Open(o)) = self.sockets.remove(&tag) else {
            return; // Still connecting: dropping the task abandons it.
        };
        if o.fin_sent && o.eof {
            return; // Both sides done: dropping closes the socket.
        }
        if !o.fin_asked {
            self.net.shutdown_write(&o.io);
        }
        if !o.reading {
            self.net.set_reading(&o.io, true);
        }
        let lingering: Vec<Tag> = self
            .sockets
            .iter()
            .filter(|(_, s)| matches!(s, Socket::Closing { .. }))
            .map(|(t, _)| *t)
            .collect();
        if let Some(oldest) = lingering
            .first()
            .filter(|_| lingering.len() >= MAX_LINGERING)
        {
            self.forget(*oldest);
        }
        self.sockets.insert(
            tag,
            Socket::Closing {
                _io: o.io,
                fin_sent: o.fin_sent,
                eof: o.eof,
            },
        );
        self.timers.set(tag, now + CLOSE_LINGER);
    }
}

/// The open connection `conn`, if it is one.
fn open<'a, N: Net>(
    conns: &BTreeMap<ConnId, Tag>,
    sockets: &'a mut BTreeMap<Tag, Socket<N>>,
    conn: ConnId,
) -> Option<(Tag, &'a mut Open<N::Conn>)> {
    let tag = *conns.get(&conn)?;
    match sockets.get_mut(&tag) {
        Some(Socket::Open(o)) => Some((tag, o)),
        _ => None,
    }
}

impl<C> Open<C> {
    fn new(conn: ConnId, io: C) -> Open<C> {
        Open {
            conn,
            io,
            paused: false,
            reading: true,
            held: VecDeque::new(),
            fin_asked: false,
            fin_sent: false,
            eof: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DhtStore, FileService};
    use std::time::Duration;

    /// Records what the shell asks of the runtime.
    #[derive(Default)]
    struct FakeNet {
        calls: Vec<String>,
    }

    impl Net for FakeNet {
        type Stream = ();
        type Conn = Tag;
        type Task = ();

        fn accept(&mut self, tag: Tag, _: std::net::TcpListener) -> std::io::Result<()> {
            self.calls.push(format!("accept {}", tag.0));
            Ok(())
        }
        fn connect(&mut self, tag: Tag, _: std::net::TcpStream) -> std::io::Result<()> {
            self.calls.push(format!("connect {}", tag.0));
            Ok(())
        }
        fn start(&mut self, tag: Tag, (): ()) -> Tag {
            self.calls.push(format!("start {}", tag.0));
            tag
        }
        fn send(&mut self, conn: &Tag, data: Bytes) {
            self.calls.push(format!("send {} {}", conn.0, data.len()));
        }
        fn shutdown_write(&mut self, conn: &Tag) {
            self.calls.push(format!("fin {}", conn.0));
        }
        fn set_reading(&mut self, conn: &Tag, on: bool) {
            self.calls.push(format!("reading {} {on}", conn.0));
        }
        fn reset(&mut self, conn: Tag) {
            self.calls.push(format!("reset {}", conn.0));
        }
    }

    /// Emits what the test queues, records what it is fed.
    #[derive(Default)]
    struct Script {
        out: VecDeque<Output<()>>,
        fed: Vec<Input>,
        /// Asks to pause a connection each time it delivers bytes (a full write window).
        pause_on_received: bool,
    }

    impl Endpoint for Script {
        type Event = ();
        fn handle_input(&mut self, _: Instant, input: Input) -> Result<(), ferry_proto::Error> {
            if let (true, Input::Received { conn, .. }) = (self.pause_on_received, &input) {
                self.out.push_back(Output::PauseReading { conn: *conn });
            }
            self.fed.push(input);
            Ok(())
        }
        fn handle_timeout(&mut self, _: Instant) {}
        fn poll_output(&mut self) -> Option<Output<()>> {
            self.out.pop_front()
        }
        fn poll_timeout(&self) -> Option<Instant> {
            None
        }
    }

    type TestShell = Shell<Script, FakeNet>;

    fn shell() -> (TestShell, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let files = FileThread::spawn(FileService::new(dir.path()), |_| {}).expect("thread");
        let dht = DhtConnection::Embedded(DhtStore::new().client(|_| {}));
        let shell = Shell::new(Script::default(), FakeNet::default(), files, dht);
        (shell, dir)
    }

    fn ask(shell: &mut TestShell, now: Instant, output: Output<()>) {
        shell.command(now, |e, _| e.out.push_back(output));
    }

    /// A connection opened through the shell, with the tag its tasks report under.
    fn open(shell: &mut TestShell, now: Instant) -> (ConnId, Tag) {
        let conn = ConnId::Connect(1);
        let remote = SocketAddr::from(([127, 0, 0, 1], 9));
        let timeout = Duration::from_secs(1);
        let local_port = None;
        ask(
            shell,
            now,
            Output::Connect {
                conn,
                remote,
                local_port,
                timeout,
            },
        );
        let tag = Tag(shell.next_tag);
        let local = SocketAddr::from(([127, 0, 0, 1], 50_000));
        shell.handle_socket(
            now,
            SocketEvent::Connected {
                tag,
                stream: (),
                local,
            },
        );
        assert_eq!(
            shell.endpoint().fed.last(),
            Some(&Input::Connected { conn, local })
        );
        (conn, tag)
    }

    fn data(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn reads_held_while_paused_come_out_in_order_on_resume() {
        let now = Instant::now();
        let (mut shell, _dir) = shell();
        let (conn, tag) = open(&mut shell, now);
        ask(&mut shell, now, Output::PauseReading { conn });
        shell.handle_socket(
            now,
            SocketEvent::Received {
                tag,
                data: data("ab"),
                credit: ReadCredit::default(),
            },
        );
        shell.handle_socket(
            now,
            SocketEvent::Received {
                tag,
                data: data("cd"),
                credit: ReadCredit::default(),
            },
        );
        shell.handle_socket(now, SocketEvent::Eof { tag });
        shell.handle_socket(now, SocketEvent::Sent { tag, bytes: 3 });
        // Writes are not reads: credit is not held back.
        assert_eq!(
            shell.endpoint().fed[1..],
            [Input::Writable { conn, bytes: 3 }]
        );
        ask(&mut shell, now, Output::ResumeReading { conn });
        assert_eq!(
            shell.endpoint().fed[2..],
            [
                Input::Received {
                    conn,
                    data: data("ab")
                },
                Input::Received {
                    conn,
                    data: data("cd")
                },
                Input::HalfClosed { conn },
            ]
        );
        assert_eq!(shell.net.calls[2..], ["reading 1 false", "reading 1 true"]);
    }

    #[test]
    fn a_reader_starts_again_only_once_its_held_reads_are_delivered() {
        let now = Instant::now();
        let (mut shell, _dir) = shell();
        let (conn, tag) = open(&mut shell, now);
        ask(&mut shell, now, Output::PauseReading { conn });
        for d in ["ab", "cd"] {
            shell.handle_socket(
                now,
                SocketEvent::Received {
                    tag,
                    data: data(d),
                    credit: ReadCredit::default(),
                },
            );
        }
        // The first held read fills the write window again: paused before "cd".
        shell.command(now, |e, _| e.pause_on_received = true);
        ask(&mut shell, now, Output::ResumeReading { conn });
        let received = |shell: &TestShell| {
            (shell.endpoint().fed.iter())
                .filter(|i| matches!(i, Input::Received { .. }))
                .count()
        };
        assert_eq!(received(&shell), 1);
        assert_eq!(
            shell.net.calls[2..],
            ["reading 1 false"],
            "not let go with \"cd\" still held: it would read on into the queue"
        );
        // Reported by the reader before it stopped: held behind "cd".
        let ef = data("ef");
        shell.handle_socket(
            now,
            SocketEvent::Received {
                tag,
                data: ef,
                credit: ReadCredit::default(),
            },
        );
        shell.command(now, |e, _| e.pause_on_received = false);
        ask(&mut shell, now, Output::ResumeReading { conn });
        assert_eq!(
            shell.endpoint().fed[2..],
            [
                Input::Received {
                    conn,
                    data: data("cd")
                },
                Input::Received {
                    conn,
                    data: data("ef")
                },
            ][..]
        );
        assert_eq!(shell.net.calls[2..], ["reading 1 false", "reading 1 true"]);
    }

    #[test]
    fn after_a_reset_late_reports_are_dropped() {
        let now = Instant::now();
        let (mut shell, _dir) = shell();
        let (conn, tag) = open(&mut shell, now);
        ask(&mut shell, now, Output::Reset { conn });
        shell.handle_socket(
            now,
            SocketEvent::Received {
                tag,
                data: data("late"),
                credit: ReadCredit::default(),
            },
        );
        shell.handle_socket(now, SocketEvent::Failed { tag });
        assert_eq!(shell.endpoint().fed.len(), 1, "only Connected");
        assert_eq!(shell.net.calls.last().map(String::as_str), Some("reset 1"));
        // The core may name a new connection like the old one: it is a new socket.
        let (_, new_tag) = open(&mut shell, now);
        assert_ne!(new_tag, tag);
    }

    #[test]
    fn a_close_reads_until_both_fins_or_the_linger_and_tells_the_core_nothing() {
        let now = Instant::now();
        let (mut shell, _dir) = shell();
        let (conn, tag) = open(&mut shell, now);
        ask(&mut shell, now, Output::Close { conn });
        assert_eq!(shell.net.calls.last().map(String::as_str), Some("fin 1"));
        assert_eq!(shell.poll_timeout(), Some(now + CLOSE_LINGER));
        shell.handle_socket(
            now,
            SocketEvent::Received {
                tag,
                data: data("x"),
                credit: ReadCredit::default(),
            },
        );
        shell.handle_socket(now, SocketEvent::FinSent { tag });
        shell.handle_socket(now, SocketEvent::Eof { tag });
        assert!(shell.sockets.is_empty() && shell.conns.is_empty());
        assert_eq!(shell.poll_timeout(), None);
        let (conn, _) = open(&mut shell, now);
        ask(&mut shell, now, Output::Close { conn });
        shell.handle_timeout(now + CLOSE_LINGER);
        assert!(shell.sockets.is_empty(), "dropped after the linger");
        assert_eq!(shell.endpoint().fed.len(), 2, "two Connected, nothing else");
    }

    #[test]
    fn closes_towards_peers_that_never_close_hold_a_bounded_number_of_sockets() {
        let now = Instant::now();
        let (mut shell, _dir) = shell();
        let mut tags = Vec::new();
        // SECURITY: row 120
        for _ in 0..MAX_LINGERING + 10 {
            let (conn, tag) = open(&mut shell, now);
            ask(&mut shell, now, Output::Close { conn });
            tags.push(tag);
        }
        assert_eq!(shell.sockets.len(), MAX_LINGERING);
        // The oldest went first; the newest still wait for their peers' FIN.
        assert!(!shell.sockets.contains_key(&tags[9]));
        assert!(shell.sockets.contains_key(&tags[10]));
        assert!(shell.sockets.contains_key(tags.last().expect("a tag")));
    }

    #[test]
    fn a_half_close_each_way_ends_in_closed() {
        let now = Instant::now();
        let (mut shell, _dir) = shell();
        let (conn, tag) = open(&mut shell, now);
        ask(&mut shell, now, Output::HalfClose { conn });
        ask(&mut shell, now, Output::HalfClose { conn });
        assert_eq!(shell.net.calls.iter().filter(|c| *c == "fin 1").count(), 1);
        shell.handle_socket(now, SocketEvent::FinSent { tag });
        shell.handle_socket(now, SocketEvent::Eof { tag });
        assert_eq!(shell.endpoint().fed[1..], [Input::Closed { conn }]);
        assert!(shell.sockets.is_empty());
    }

    #[test]
    fn a_connect_times_out_and_a_late_success_is_ignored() {
        let now = Instant::now();
        let (mut shell, _dir) = shell();
        let conn = ConnId::Connect(4);
        let remote = SocketAddr::from(([127, 0, 0, 1], 9));
        let timeout = Duration::from_millis(300);
        let local_port = None;
        ask(
            &mut shell,
            now,
            Output::Connect {
                conn,
                remote,
                local_port,
                timeout,
            },
        );
        let tag = Tag(shell.next_tag);
        assert_eq!(shell.poll_timeout(), Some(now + timeout));
        shell.handle_timeout(now + timeout);
        let error = ConnectError::TimedOut;
        assert_eq!(shell.endpoint().fed, [Input::ConnectFailed { conn, error }]);
        let local = SocketAddr::from(([127, 0, 0, 1], 50_000));
        shell.handle_socket(
            now,
            SocketEvent::Connected {
                tag,
                stream: (),
                local,
            },
        );
        assert_eq!(shell.endpoint().fed.len(), 1);
        assert!(!shell.net.calls.iter().any(|c| c.starts_with("start")));
    }

    #[test]
    fn close_all_closes_every_connection_and_listener() {
        let now = Instant::now();
        let (mut shell, _dir) = shell();
        let (_, tag) = open(&mut shell, now);
        let listener = ListenerId(1);
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        ask(&mut shell, now, Output::Listen { listener, local });
        shell.close_all(now);
        assert!(!shell.is_closed());
        assert_eq!(shell.net.calls.last().map(String::as_str), Some("fin 1"));
        assert_eq!(shell.poll_timeout(), Some(now + CLOSE_LINGER));
        shell.handle_socket(now, SocketEvent::FinSent { tag });
        shell.handle_socket(now, SocketEvent::Eof { tag });
        assert!(shell.is_closed());
    }

    #[test]
    fn dht_values_after_a_cancel_are_not_news() {
        let now = Instant::now();
        let (mut shell, _dir) = shell();
        let key = DhtKey([3; 20]);
        ask(&mut shell, now, Output::DhtListen { key });
        let value = data("v");
        shell.handle_input(
            now,
            Input::DhtValue {
                key,
                value: value.clone(),
            },
        );
        ask(&mut shell, now, Output::DhtCancelListen { key });
        shell.handle_input(
            now,
            Input::DhtValue {
                key,
                value: value.clone(),
            },
        );
        assert_eq!(shell.endpoint().fed, [Input::DhtValue { key, value }]);
    }
}
