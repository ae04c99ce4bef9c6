//! Ferry on smol: the [`Runtime`] of `ferry-driver` on smol's tasks and async-io's timers and
//! sockets.
//!
//! Everything else is `ferry-driver`'s, named here for smol: a [`Driver`] runs any
//! [`Endpoint`](ferry_proto::io::Endpoint) of `ferry-proto`, with its files on a thread of
//! their own and a DHT (the embedded one, a shared folder, or OpenDHT through a `dhtnode`'s
//! HTTP proxy, see [`Config`]); a [`Client`] is one device's `Node` on it, with `send_file`,
//! `accept` / `refuse` / `cancel`, its events and a clean `shutdown`. Connection tasks run
//! on smol's global executor (`SMOL_THREADS` threads, one by default); the driver itself runs
//! wherever its `run` future is polled.
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
//!     while let Some(event) = events.recv().await {
//!         if let TurnEvent::Allocated { relayed, .. } = event {
//!             println!("relayed at {relayed}");
//!             let _ = handle.command(|turn, now| turn.deallocate(now));
//!         }
//!     }
//! });
//! # Ok(()) }
//! ```

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Instant;

use ferry_driver::ReadBuffer;
use ferry_driver::runtime::Runtime;
use smol::Async;
use smol::io::AsyncWriteExt as _;
use socket2::SockRef;

pub use ferry_driver::{
    ClientConfig, ClientError, ClientEvent, Command, Config, DhtStore, Events, Handle, LocalAddr,
    Offer, Paths, Stopped, local_addresses,
};

/// The driver loop of `ferry-driver` on smol.
pub type Driver<E> = ferry_driver::Driver<E, Smol>;

/// The application API of `ferry-driver` on smol.
pub type Client = ferry_driver::Client<Smol>;

/// What [`Driver::new`] gives: the driver to run, a handle to command it, and its events.
pub type Parts<E> = ferry_driver::Parts<E, Smol>;

/// smol, as `ferry-driver` uses it.
#[derive(Debug, Clone, Copy)]
pub struct Smol;

impl Runtime for Smol {
    type Listener = Async<TcpListener>;
    type Stream = Async<TcpStream>;
    type Task = smol::Task<()>;

    fn spawn(future: impl Future<Output = ()> + Send + 'static) -> smol::Task<()> {
        smol::spawn(future)
    }

    async fn sleep_until(at: Instant) {
        smol::Timer::at(at).await;
    }

    fn listener(listener: TcpListener) -> io::Result<Async<TcpListener>> {
        Async::new(listener)
    }

    fn accept(
        listener: &Async<TcpListener>,
    ) -> impl Future<Output = io::Result<(Async<TcpStream>, SocketAddr)>> + Send + '_ {
        listener.accept()
    }

    fn stream(socket: TcpStream) -> io::Result<Async<TcpStream>> {
        Async::new(socket)
    }

    fn writable(stream: &Async<TcpStream>) -> impl Future<Output = io::Result<()>> + Send + '_ {
        stream.writable()
    }

    /// Reads into the spare capacity of `buf` (nothing zeroed first), inside one synchronous
    /// attempt: dropping the future between attempts leaves `buf` as it was. An attempt that
    /// finds nothing gives the buffer back to its pool.
    async fn read<'a>(stream: &'a Async<TcpStream>, buf: &'a mut ReadBuffer) -> io::Result<usize> {
        stream
            .read_with(|socket| {
                let read = rustix::io::read(socket, rustix::buffer::spare_capacity(buf.vec()));
                if read.is_err() {
                    buf.release_if_empty();
                }
                Ok(read?)
            })
            .await
    }

    async fn write_vectored<'a>(
        stream: &'a Async<TcpStream>,
        data: &'a [IoSlice<'a>],
    ) -> io::Result<usize> {
        (&*stream).write_vectored(data).await
    }

    fn socket(stream: &Async<TcpStream>) -> SockRef<'_> {
        SockRef::from(stream.get_ref())
    }
}
