//! Ferry on tokio: the [`Runtime`] of `ferry-driver` on tokio's tasks, timers and sockets.
//!
//! Everything else is `ferry-driver`'s, named here for tokio: a [`Driver`] runs any
//! [`Endpoint`](ferry_proto::io::Endpoint) of `ferry-proto`, with its files on a thread of
//! their own and a DHT (the embedded one, a shared folder, or OpenDHT through a `dhtnode`'s
//! HTTP proxy, see [`Config`]); a [`Client`] is one device's `Node` on it, with `send_file`,
//! `accept` / `refuse` / `cancel`, its events and a clean `shutdown`. Run them inside a tokio
//! runtime with I/O and time enabled (`enable_all`).
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use ferry_proto::turn::{TurnClient, TurnConfig, TurnEvent};
//! use ferry_tokio::{Config, Driver};
//!
//! let turn = TurnClient::new(TurnConfig::new("127.0.0.1:3478".parse().unwrap(), "u", "p"), 7);
//! let (driver, handle, events) = Driver::new(turn, Config::new("/tmp"))?;
//! tokio::spawn(driver.run());
//! while let Some(event) = events.recv().await {
//!     if let TurnEvent::Allocated { relayed, .. } = event {
//!         println!("relayed at {relayed}");
//!         let _ = handle.command(|turn, now| turn.deallocate(now));
//!     }
//! }
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use ferry_driver::ReadBuffer;
use ferry_driver::runtime::Runtime;
use socket2::SockRef;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub use ferry_driver::{
    ClientConfig, ClientError, ClientEvent, Command, Config, DhtStore, Events, Handle, LocalAddr,
    Offer, Paths, Stopped, local_addresses,
};

/// The driver loop of `ferry-driver` on tokio.
pub type Driver<E> = ferry_driver::Driver<E, Tokio>;

/// The application API of `ferry-driver` on tokio.
pub type Client = ferry_driver::Client<Tokio>;

/// What [`Driver::new`] gives: the driver to run, a handle to command it, and its events.
pub type Parts<E> = ferry_driver::Parts<E, Tokio>;

/// tokio, as `ferry-driver` uses it.
#[derive(Debug, Clone, Copy)]
pub struct Tokio;

/// A spawned tokio task, aborted when dropped (a `JoinHandle` alone would detach it).
#[derive(Debug)]
pub struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Future for Task {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A task that panicked or was aborted has ended all the same.
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Runtime for Tokio {
    type Listener = TcpListener;
    type Stream = TcpStream;
    type Task = Task;

    fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Task {
        Task(tokio::spawn(future))
    }

    fn sleep_until(at: Instant) -> impl Future<Output = ()> + Send {
        tokio::time::sleep_until(at.into())
    }

    fn listener(listener: std::net::TcpListener) -> io::Result<TcpListener> {
        TcpListener::from_std(listener)
    }

    fn accept(
        listener: &TcpListener,
    ) -> impl Future<Output = io::Result<(TcpStream, SocketAddr)>> + Send + '_ {
        listener.accept()
    }

    fn stream(socket: std::net::TcpStream) -> io::Result<TcpStream> {
        TcpStream::from_std(socket)
    }

    fn writable(stream: &TcpStream) -> impl Future<Output = io::Result<()>> + Send + '_ {
        stream.writable()
    }

    /// Reads into the spare capacity of `buf`: no zeroing, no copy.
    /// Waits until readable, then reads into the spare capacity of `buf`; a wake-up that
    /// finds nothing gives the buffer back to its pool.
    async fn read<'a>(stream: &'a TcpStream, buf: &'a mut ReadBuffer) -> io::Result<usize> {
        loop {
            stream.readable().await?;
            match stream.try_read_buf(buf.vec()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => buf.release_if_empty(),
                read => return read,
            }
        }
    }

    async fn write_vectored<'a>(
        stream: &'a TcpStream,
        data: &'a [IoSlice<'a>],
    ) -> io::Result<usize> {
        loop {
            stream.writable().await?;
            match stream.try_write_vectored(data) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => return written,
            }
        }
    }

    fn socket(stream: &TcpStream) -> SockRef<'_> {
        SockRef::from(stream)
    }
}
