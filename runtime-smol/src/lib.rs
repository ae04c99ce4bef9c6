//! Ferry on smol: a [`Driver`] that runs any [`Endpoint`] of `ferry-proto` on async-io's
//! sockets and timers, with its files on a thread of their own and a DHT: the embedded one,
//! or OpenDHT through a `dhtnode`'s HTTP proxy ([`Config::with_opendht`]).
//!
//! Applications use a [`Client`]: one device's `Node` on this driver, with `send_file`,
//! `accept` / `refuse` / `cancel`, its events and a clean `shutdown`.
//!
//! Everything that does not depend on the runtime lives in [`ferry_driver`]: this
//! crate only adds smol's tasks and sockets ([`Net`]) and the event loop ([`Driver::run`]).
//! Connection tasks run on smol's global executor (`SMOL_THREADS` threads, one by default);
//! the driver itself runs wherever its [`run`](Driver::run) future is polled.
//!
//! ```no_run
//! # fn example() -> std::io::Result<()> {
//! use ferry_proto::turn::{TurnClient, TurnConfig, TurnEvent};
//! use ferry_smol::{Config, Driver};
//!
//! let turn = TurnClient::new(TurnConfig::new("127.0.0.1:3478".parse().unwrap(), "u", "p"), 7);
//! let (driver, handle, events) = Driver::new(turn, Config::new("/tmp"))?;
//! smol::spawn(driver.run()).detach();
//! smol::block_on(async {
//!     while let Ok(event) = events.recv().await {
//!         if let TurnEvent::Allocated { relayed, .. } = event {
//!             println!("relayed at {relayed}");
//!             let _ = handle.command(|turn, now| turn.deallocate(now));
//!         }
//!     }
//! });
//! # Ok(()) }
//! ```

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_driver::net::{connect_error, finish_connect, reset_on_close};
use ferry_driver::{CLOSE_LINGER, Net, Shell, SocketEvent, Tag, Write, WriteQueue};
use ferry_proto::io::{Endpoint, Input};
use smol::channel::{self, Receiver, Sender};
use smol::future::FutureExt as _;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};
use smol::{Async, Task, Timer};
use socket2::SockRef;

pub use client::Client;
pub use ferry_driver::{
    ClientConfig, ClientError, ClientEvent, Config, DhtStore, LocalAddr, Offer, Paths, Stopped,
    local_addresses,
};

mod client;

/// A command for the endpoint, run on the driver's task with the current time.
pub type Command<E> = Box<dyn FnOnce(&mut E, Instant) + Send>;

/// What [`Driver::new`] gives: the driver to run, a handle to command it, and its events.
pub type Parts<E> = (Driver<E>, Handle<E>, Events<<E as Endpoint>::Event>);

/// The application's end of a driver's events, in the order the endpoint emitted them.
pub type Events<T> = Receiver<T>;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Socket reports waiting for the driver; readers wait when it is full (backpressure).
const SOCKET_QUEUE: usize = 64;
/// Most socket reports taken in one go after a wake-up.
const BATCH: usize = 32;
/// Events waiting for the application; the driver waits when it is full.
const EVENT_QUEUE: usize = 256;

type Stream = Arc<Async<TcpStream>>;

/// Runs one endpoint. Made by [`Driver::new`]; [`run`](Driver::run) it on any executor.
pub struct Driver<E: Endpoint> {
    shell: Shell<E, Smol>,
    sockets: Receiver<SocketEvent<Async<TcpStream>>>,
    inputs: Receiver<Input>,
    commands: Receiver<Command<E>>,
    events: Sender<E::Event>,
}

/// Sends commands to a running [`Driver`]. Clones reach the same driver; the driver stops
/// once every handle is dropped.
pub struct Handle<E> {
    commands: Sender<Command<E>>,
}

impl<E> Clone for Handle<E> {
    fn clone(&self) -> Self {
        Handle {
            commands: self.commands.clone(),
        }
    }
}

impl<E: Endpoint + 'static> Handle<E> {
    /// Runs `f` on the endpoint, on the driver's task, then carries out what it asked.
    pub fn command(&self, f: impl FnOnce(&mut E, Instant) + Send + 'static) -> Result<(), Stopped> {
        self.commands.try_send(Box::new(f)).map_err(|_| Stopped)
    }

    /// Like [`command`](Self::command), and returns what `f` returned.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut E, Instant) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (tx, rx) = channel::bounded(1);
        self.command(move |endpoint, now| {
            let _ = tx.try_send(f(endpoint, now));
        })?;
        rx.recv().await.map_err(|_| Stopped)
    }
}

/// What woke the driver.
enum Wake<E> {
    Timeout,
    Command(Option<Command<E>>),
    Input(Input),
    Socket(SocketEvent<Async<TcpStream>>),
}

impl<E: Endpoint> Driver<E> {
    /// A driver for `endpoint`, the handle to command it and the receiver of its events.
    /// Starts the file thread; sockets open once [`run`](Self::run) runs.
    pub fn new(endpoint: E, config: Config) -> io::Result<Parts<E>> {
        let (report, sockets) = channel::bounded(SOCKET_QUEUE);
        let (deliver, inputs) = channel::unbounded();
        let (commands_tx, commands) = channel::unbounded();
        let (events, events_rx) = channel::bounded(EVENT_QUEUE);
        let deliver = move |input| {
            let _ = deliver.try_send(input);
        };
        let shell = Shell::start(endpoint, Smol { report }, &config, deliver)?;
        let driver = Driver {
            shell,
            sockets,
            inputs,
            commands,
            events,
        };
        let handle = Handle {
            commands: commands_tx,
        };
        Ok((driver, handle, events_rx))
    }

    /// Runs until every [`Handle`] is dropped, then closes every connection (its queued bytes
    /// first, then a FIN) and returns once the peers closed too, or after [`CLOSE_LINGER`].
    /// Dropping the future instead drops every socket at once.
    ///
    /// The application must keep taking [`Events`]: with a full event queue the driver waits
    /// for it (and TCP pushes back on the peers), which keeps memory bounded.
    pub async fn run(mut self) {
        // Carries out what the endpoint asked for when it was made.
        self.shell.handle_timeout(Instant::now());
        loop {
            while let Some(event) = self.shell.poll_event() {
                // An application that dropped its receiver does not stop the driver.
                let _ = self.events.send(event).await;
            }
            let deadline = self.shell.poll_timeout();
            // `or` polls in order, timer first: a busy socket must not starve deadlines.
            let wake = async {
                match deadline {
                    Some(at) => Timer::at(at).await,
                    None => std::future::pending().await,
                };
                Wake::Timeout
            }
            .or(async { Wake::Command(self.commands.recv().await.ok()) })
            .or(async { Wake::Input(next(&self.inputs).await) })
            .or(async { Wake::Socket(next(&self.sockets).await) })
            .await;
            let now = Instant::now();
            match wake {
                Wake::Timeout => self.shell.handle_timeout(now),
                Wake::Command(Some(command)) => self.shell.command(now, command),
                Wake::Command(None) => break,
                Wake::Input(input) => self.shell.handle_input(now, input),
                Wake::Socket(event) => self.shell.handle_socket(now, event),
            }
            // Under load, take what else is ready before waiting again.
            for _ in 0..BATCH {
                let Ok(event) = self.sockets.try_recv() else {
                    break;
                };
                self.shell.handle_socket(Instant::now(), event);
            }
        }
        self.close().await;
    }

    /// Closes every connection and waits for them, at most [`CLOSE_LINGER`].
    async fn close(mut self) {
        let until = Instant::now() + CLOSE_LINGER;
        self.shell.close_all(Instant::now());
        while !self.shell.is_closed() && Instant::now() < until {
            let deadline = self.shell.poll_timeout().map_or(until, |at| at.min(until));
            let event = async {
                Timer::at(deadline).await;
                None
            }
            .or(async { Some(next(&self.sockets).await) })
            .await;
            match event {
                Some(event) => self.shell.handle_socket(Instant::now(), event),
                None => self.shell.handle_timeout(Instant::now()),
            }
        }
    }
}

/// The next message; never, once the channel is closed (the shell holds the senders of the
/// channels this waits on, so that is only while the driver is being dropped).
async fn next<T>(channel: &Receiver<T>) -> T {
    match channel.recv().await {
        Ok(message) => message,
        Err(_) => std::future::pending().await,
    }
}

/// smol's half of the driver.
struct Smol {
    report: Sender<SocketEvent<Async<TcpStream>>>,
}

/// A connection's reader and writer tasks over one shared socket.
struct Conn {
    stream: Stream,
    writes: Sender<Write>,
    reading: Sender<bool>,
    _tasks: [Task<()>; 2],
}

impl Net for Smol {
    type Stream = Async<TcpStream>;
    type Conn = Conn;
    type Task = Task<()>;

    fn accept(&mut self, tag: Tag, listener: TcpListener) -> io::Result<Task<()>> {
        let listener = Async::new(listener)?;
        let report = self.report.clone();
        Ok(smol::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, remote)) => {
                        let _ = stream.get_ref().set_nodelay(true);
                        let event = SocketEvent::Accepted {
                            tag,
                            stream,
                            remote,
                        };
                        if report.send(event).await.is_err() {
                            return;
                        }
                    }
                    // Out of descriptors, mostly: wait rather than spin.
                    Err(_) => {
                        Timer::after(Duration::from_millis(50)).await;
                    }
                }
            }
        }))
    }

    fn connect(&mut self, tag: Tag, socket: TcpStream) -> io::Result<Task<()>> {
        let stream = Async::new(socket)?;
        let report = self.report.clone();
        Ok(smol::spawn(async move {
            let connected = match stream.writable().await {
                Ok(()) => finish_connect(SockRef::from(stream.get_ref())),
                Err(e) => Err(connect_error(&e)),
            };
            let event = match connected {
                Ok(local) => SocketEvent::Connected { tag, stream, local },
                Err(error) => SocketEvent::ConnectFailed { tag, error },
            };
            let _ = report.send(event).await;
        }))
    }

    fn start(&mut self, tag: Tag, stream: Async<TcpStream>) -> Conn {
        let stream = Arc::new(stream);
        let (writes, writes_rx) = channel::unbounded();
        let (reading, reading_rx) = channel::unbounded();
        let reader = read_loop(tag, stream.clone(), reading_rx, self.report.clone());
        let writer = write_loop(tag, stream.clone(), writes_rx, self.report.clone());
        Conn {
            stream,
            writes,
            reading,
            _tasks: [smol::spawn(reader), smol::spawn(writer)],
        }
    }

    fn send(&mut self, conn: &Conn, data: Bytes) {
        let _ = conn.writes.try_send(Write::Data(data));
    }

    fn shutdown_write(&mut self, conn: &Conn) {
        let _ = conn.writes.try_send(Write::Fin);
    }

    fn set_reading(&mut self, conn: &Conn, on: bool) {
        let _ = conn.reading.try_send(on);
    }

    fn reset(&mut self, conn: Conn) {
        reset_on_close(SockRef::from(conn.stream.get_ref()));
    }
}

async fn read_loop(
    tag: Tag,
    stream: Stream,
    reading: Receiver<bool>,
    report: Sender<SocketEvent<Async<TcpStream>>>,
) {
    let mut buf = BytesMut::new();
    let mut on = true;
    loop {
        // The latest word on pausing wins; while paused, only that word can wake us.
        while let Ok(word) = reading.try_recv() {
            on = word;
        }
        if !on {
            match reading.recv().await {
                Ok(word) => on = word,
                Err(_) => return,
            }
            continue;
        }
        // Large reads are split off as they are (zeroed, not copied); the allocation is reused
        // once the core drops them.
        buf.resize(READ_CHUNK, 0);
        let read = async { Some((&*stream).read(&mut buf).await) }
            .or(async {
                let _ = reading.recv().await.map(|word| on = word);
                None
            })
            .await;
        let Some(read) = read else {
            if reading.is_closed() {
                return;
            }
            continue;
        };
        let (event, last) = match read {
            Ok(0) => (SocketEvent::Eof { tag }, true),
            Ok(n) => {
                let data = if n >= READ_CHUNK / 2 {
                    buf.truncate(n);
                    buf.split().freeze()
                } else {
                    // A small read gets an allocation of its own, so that a peer that trickles
                    // bytes cannot make the core hold a whole read buffer per byte.
                    Bytes::copy_from_slice(&buf[..n])
                };
                (SocketEvent::Received { tag, data }, false)
            }
            Err(_) => (SocketEvent::Failed { tag }, true),
        };
        if report.send(event).await.is_err() || last {
            return;
        }
    }
}

async fn write_loop(
    tag: Tag,
    stream: Stream,
    writes: Receiver<Write>,
    report: Sender<SocketEvent<Async<TcpStream>>>,
) {
    let mut queue = WriteQueue::default();
    loop {
        if queue.is_idle() {
            match writes.recv().await {
                Ok(write) => queue.push(write),
                Err(_) => return,
            }
        }
        // Whatever else is queued goes out in the same system call.
        while !queue.is_full() {
            match writes.try_recv() {
                Ok(write) => queue.push(write),
                Err(_) => break,
            }
        }
        if queue.fin_due() {
            let event = match stream.get_ref().shutdown(Shutdown::Write) {
                Ok(()) => SocketEvent::FinSent { tag },
                Err(_) => SocketEvent::Failed { tag },
            };
            let _ = report.send(event).await;
            return;
        }
        let event = match (&*stream).write_vectored(&queue.slices()).await {
            Ok(0) | Err(_) => SocketEvent::Failed { tag },
            Ok(bytes) => {
                queue.advance(bytes);
                SocketEvent::Sent { tag, bytes }
            }
        };
        let failed = matches!(event, SocketEvent::Failed { .. });
        if report.send(event).await.is_err() || failed {
            return;
        }
    }
}
