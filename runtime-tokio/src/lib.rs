//! Ferry on tokio: a [`Driver`] that runs any [`Endpoint`] of `ferry-proto` on tokio's
//! sockets and timers, with its files on a thread of their own and a DHT: the embedded one,
//! or OpenDHT through a `dhtnode`'s HTTP proxy ([`Config::with_opendht`]).
//!
//! Applications use a [`Client`]: one device's `Node` on this driver, with `send_file`,
//! `accept` / `refuse` / `cancel`, its events and a clean `shutdown`.
//!
//! Everything that does not depend on the runtime lives in [`ferry_driver`]: this
//! crate only adds tokio's tasks and sockets ([`Net`]) and the event loop ([`Driver::run`]).
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use ferry_proto::turn::{TurnClient, TurnConfig, TurnEvent};
//! use ferry_tokio::{Config, Driver};
//!
//! let turn = TurnClient::new(TurnConfig::new("127.0.0.1:3478".parse().unwrap(), "u", "p"), 7);
//! let (driver, handle, mut events) = Driver::new(turn, Config::new("/tmp"))?;
//! tokio::spawn(driver.run());
//! while let Some(event) = events.recv().await {
//!     if let TurnEvent::Allocated { relayed, .. } = event {
//!         println!("relayed at {relayed}");
//!         let _ = handle.command(|turn, now| turn.deallocate(now));
//!     }
//! }
//! # Ok(()) }
//! ```

use std::io;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_driver::net::{connect_error, finish_connect, reset_on_close};
use ferry_driver::{CLOSE_LINGER, Net, Shell, SocketEvent, Tag, Write, WriteQueue};
use ferry_proto::io::{Endpoint, Input};
use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

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
pub type Events<T> = mpsc::Receiver<T>;

/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 64 * 1024;
/// Socket reports waiting for the driver; readers wait when it is full (backpressure).
const SOCKET_QUEUE: usize = 64;
/// Most socket reports taken in one go after a wake-up.
const BATCH: usize = 32;
/// Events waiting for the application; the driver waits when it is full.
const EVENT_QUEUE: usize = 256;

/// Runs one endpoint. Made by [`Driver::new`]; [`run`](Driver::run) it on a tokio runtime
/// with I/O and time enabled (`enable_all`).
pub struct Driver<E: Endpoint> {
    shell: Shell<E, Tokio>,
    sockets: mpsc::Receiver<SocketEvent<TcpStream>>,
    inputs: mpsc::UnboundedReceiver<Input>,
    commands: mpsc::UnboundedReceiver<Command<E>>,
    events: mpsc::Sender<E::Event>,
}

/// Sends commands to a running [`Driver`]. Clones reach the same driver; the driver stops
/// once every handle is dropped.
pub struct Handle<E> {
    commands: mpsc::UnboundedSender<Command<E>>,
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
        self.commands.send(Box::new(f)).map_err(|_| Stopped)
    }

    /// Like [`command`](Self::command), and returns what `f` returned.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut E, Instant) -> R + Send + 'static,
    ) -> Result<R, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.command(move |endpoint, now| {
            let _ = tx.send(f(endpoint, now));
        })?;
        rx.await.map_err(|_| Stopped)
    }
}

impl<E: Endpoint> Driver<E> {
    /// A driver for `endpoint`, the handle to command it and the receiver of its events.
    /// Starts the file thread; sockets open once [`run`](Self::run) runs.
    pub fn new(endpoint: E, config: Config) -> io::Result<Parts<E>> {
        let (report, sockets) = mpsc::channel(SOCKET_QUEUE);
        let (deliver, inputs) = mpsc::unbounded_channel();
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::channel(EVENT_QUEUE);
        let deliver = move |input| {
            let _ = deliver.send(input);
        };
        let shell = Shell::start(endpoint, Tokio { report }, &config, deliver)?;
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
            // Biased, timer first: a busy socket must not starve deadlines.
            tokio::select! {
                biased;
                () = sleep_until(deadline) => self.shell.handle_timeout(Instant::now()),
                command = self.commands.recv() => match command {
                    Some(command) => self.shell.command(Instant::now(), command),
                    None => break,
                },
                Some(input) = self.inputs.recv() => self.shell.handle_input(Instant::now(), input),
                Some(event) = self.sockets.recv() => self.shell.handle_socket(Instant::now(), event),
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
            tokio::select! {
                () = sleep_until(Some(deadline)) => self.shell.handle_timeout(Instant::now()),
                Some(event) = self.sockets.recv() => self.shell.handle_socket(Instant::now(), event),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// tokio's half of the driver.
struct Tokio {
    report: mpsc::Sender<SocketEvent<TcpStream>>,
}

/// A spawned task, aborted when dropped.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A connection's reader and writer tasks over one shared socket.
struct Conn {
    stream: Arc<TcpStream>,
    writes: mpsc::UnboundedSender<Write>,
    reading: watch::Sender<bool>,
    _tasks: [Task; 2],
}

impl Net for Tokio {
    type Stream = TcpStream;
    type Conn = Conn;
    type Task = Task;

    fn accept(&mut self, tag: Tag, listener: std::net::TcpListener) -> io::Result<Task> {
        let listener = TcpListener::from_std(listener)?;
        let report = self.report.clone();
        Ok(Task(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, remote)) => {
                        let _ = stream.set_nodelay(true);
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
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })))
    }

    fn connect(&mut self, tag: Tag, socket: std::net::TcpStream) -> io::Result<Task> {
        let stream = TcpStream::from_std(socket)?;
        let report = self.report.clone();
        Ok(Task(tokio::spawn(async move {
            let connected = match stream.writable().await {
                Ok(()) => finish_connect(SockRef::from(&stream)),
                Err(e) => Err(connect_error(&e)),
            };
            let event = match connected {
                Ok(local) => SocketEvent::Connected { tag, stream, local },
                Err(error) => SocketEvent::ConnectFailed { tag, error },
            };
            let _ = report.send(event).await;
        })))
    }

    fn start(&mut self, tag: Tag, stream: TcpStream) -> Conn {
        let stream = Arc::new(stream);
        let (writes, writes_rx) = mpsc::unbounded_channel();
        let (reading, reading_rx) = watch::channel(true);
        let reader = read_loop(tag, stream.clone(), reading_rx, self.report.clone());
        let writer = write_loop(tag, stream.clone(), writes_rx, self.report.clone());
        Conn {
            stream,
            writes,
            reading,
            _tasks: [Task(tokio::spawn(reader)), Task(tokio::spawn(writer))],
        }
    }

    fn send(&mut self, conn: &Conn, data: Bytes) {
        let _ = conn.writes.send(Write::Data(data));
    }

    fn shutdown_write(&mut self, conn: &Conn) {
        let _ = conn.writes.send(Write::Fin);
    }

    fn set_reading(&mut self, conn: &Conn, on: bool) {
        conn.reading.send_replace(on);
    }

    fn reset(&mut self, conn: Conn) {
        reset_on_close(SockRef::from(&*conn.stream));
    }
}

async fn read_loop(
    tag: Tag,
    stream: Arc<TcpStream>,
    mut reading: watch::Receiver<bool>,
    report: mpsc::Sender<SocketEvent<TcpStream>>,
) {
    let mut buf = BytesMut::new();
    loop {
        if !*reading.borrow_and_update() {
            if reading.changed().await.is_err() {
                return;
            }
            continue;
        }
        let read = tokio::select! {
            changed = reading.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
            read = read_some(&stream, &mut buf) => read,
        };
        let (event, last) = match read {
            Ok(0) => (SocketEvent::Eof { tag }, true),
            Ok(n) => {
                let data = if n >= READ_CHUNK / 2 {
                    buf.split().freeze()
                } else {
                    // A small read gets an allocation of its own, so that a peer that trickles
                    // bytes cannot make the core hold a whole read buffer per byte.
                    let data = Bytes::copy_from_slice(&buf);
                    buf.clear();
                    data
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

/// Reads into the spare capacity of `buf` (no zeroing, no copy); large reads are then split
/// off as they are, and the allocation is reused once the core drops them.
async fn read_some(stream: &TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    loop {
        buf.reserve(READ_CHUNK);
        stream.readable().await?;
        match stream.try_read_buf(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            read => return read,
        }
    }
}

async fn write_loop(
    tag: Tag,
    stream: Arc<TcpStream>,
    mut writes: mpsc::UnboundedReceiver<Write>,
    report: mpsc::Sender<SocketEvent<TcpStream>>,
) {
    let mut queue = WriteQueue::default();
    loop {
        if queue.is_idle() {
            match writes.recv().await {
                Some(write) => queue.push(write),
                None => return,
            }
        }
        // Whatever else is queued goes out in the same system call.
        while !queue.is_full() {
            match writes.try_recv() {
                Ok(write) => queue.push(write),
                Err(_) => break,
            }
        }
        let event = if queue.fin_due() {
            let event = match SockRef::from(&*stream).shutdown(Shutdown::Write) {
                Ok(()) => SocketEvent::FinSent { tag },
                Err(_) => SocketEvent::Failed { tag },
            };
            let _ = report.send(event).await;
            return;
        } else {
            match write_some(&stream, &queue.slices()).await {
                Ok(0) | Err(_) => SocketEvent::Failed { tag },
                Ok(bytes) => {
                    queue.advance(bytes);
                    SocketEvent::Sent { tag, bytes }
                }
            }
        };
        let failed = matches!(event, SocketEvent::Failed { .. });
        if report.send(event).await.is_err() || failed {
            return;
        }
    }
}

async fn write_some(stream: &TcpStream, data: &[io::IoSlice<'_>]) -> io::Result<usize> {
    loop {
        stream.writable().await?;
        match stream.try_write_vectored(data) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            written => return written,
        }
    }
}
