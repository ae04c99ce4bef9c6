//! What the one driver loop needs of an async runtime, and the socket tasks built on it.
//!
//! A [`Runtime`] is small on purpose (in the spirit of quinn's): spawn a task, sleep until an
//! instant, and TCP sockets registered with its reactor. Everything else — the loop
//! ([`Driver`](crate::Driver)), the connection tasks ([`Tasks`], the shell's [`Net`]), the
//! application [`Client`](crate::Client) — is written once, here, on runtime-neutral
//! channels (`async-channel`) and combinators (`futures-lite`).

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_channel::{Receiver, Sender};
use bytes::Bytes;
use futures_lite::FutureExt as _;
use socket2::SockRef;

use crate::buffers::{BufferPool, ReadBuffer, ReadCredits};
use crate::net::{connect_error, finish_connect, reset_on_close};
use crate::{Net, SocketEvent, Tag, Write, WriteQueue};

/// An async runtime, as the driver uses it.
pub trait Runtime: Send + Sync + 'static {
    /// A listening socket registered with the runtime's reactor.
    type Listener: Send + Sync + 'static;
    /// A connected socket registered with the reactor; a connection's reader and writer
    /// share it.
    type Stream: Send + Sync + 'static;
    /// A spawned task: awaiting it waits for its end; dropping it cancels it.
    type Task: Future<Output = ()> + Send + Unpin + 'static;

    /// Runs `future` on the runtime.
    fn spawn(future: impl Future<Output = ()> + Send + 'static) -> Self::Task;

    /// Completes at `at`.
    fn sleep_until(at: Instant) -> impl Future<Output = ()> + Send;

    /// Registers a non-blocking listener.
    fn listener(listener: std::net::TcpListener) -> io::Result<Self::Listener>;

    /// The next connection on `listener`.
    fn accept(
        listener: &Self::Listener,
    ) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>> + Send + '_;

    /// Registers a non-blocking socket (connected, or connecting).
    fn stream(socket: std::net::TcpStream) -> io::Result<Self::Stream>;

    /// Completes once `stream` is writable (a connect in progress has finished).
    fn writable(stream: &Self::Stream) -> impl Future<Output = io::Result<()>> + Send + '_;

    /// Reads what is there (at least one byte, or 0 at end of stream), appending to
    /// [`ReadBuffer::vec`] (into its spare capacity: nothing is zeroed first). Between
    /// attempts that find nothing it calls [`ReadBuffer::release_if_empty`], so that a
    /// connection waiting for bytes holds no buffer.
    /// Cancel-safe: the reader drops this future when told to pause, so a future dropped
    /// before it completes must have read nothing and left `buf`'s bytes as they were.
    fn read<'a>(
        stream: &'a Self::Stream,
        buf: &'a mut ReadBuffer,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// Writes as much of `data` as the socket takes now (at least one byte).
    fn write_vectored<'a>(
        stream: &'a Self::Stream,
        data: &'a [IoSlice<'a>],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// The socket underneath, for options, shutdown and reset.
    fn socket(stream: &Self::Stream) -> SockRef<'_>;
}

/// Bytes a reader asks for at a time: the size of the buffers its [`BufferPool`] keeps.
pub const READ_CHUNK: usize = 64 * 1024;

/// A runtime's sockets as the shell's [`Net`]: an accept task per listener, a connect task
/// per connect, and a reader and a writer task per connection, each reporting
/// [`SocketEvent`]s on one channel.
pub struct Tasks<R: Runtime> {
    report: Sender<SocketEvent<R::Stream>>,
    /// The readers' buffers, shared by every connection: bytes read go on in them and they
    /// come back once the core has taken the bytes.
    buffers: Arc<BufferPool>,
}

impl<R: Runtime> Tasks<R> {
    /// Tasks that report on `report`.
    pub fn new(report: Sender<SocketEvent<R::Stream>>) -> Tasks<R> {
        Tasks {
            report,
            buffers: BufferPool::new(READ_CHUNK),
        }
    }
}

/// A connection's reader and writer tasks over one shared socket.
pub struct Conn<R: Runtime> {
    stream: Arc<R::Stream>,
    writes: Sender<Write>,
    reading: Sender<bool>,
    _tasks: [R::Task; 2],
}

impl<R: Runtime> Net for Tasks<R> {
    type Stream = R::Stream;
    type Conn = Conn<R>;
    type Task = R::Task;

    fn accept(&mut self, tag: Tag, listener: std::net::TcpListener) -> io::Result<R::Task> {
        let listener = R::listener(listener)?;
        let report = self.report.clone();
        Ok(R::spawn(async move {
            loop {
                match R::accept(&listener).await {
                    Ok((stream, remote)) => {
                        let _ = R::socket(&stream).set_tcp_nodelay(true);
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
                    Err(_) => R::sleep_until(Instant::now() + Duration::from_millis(50)).await,
                }
            }
        }))
    }

    fn connect(&mut self, tag: Tag, socket: std::net::TcpStream) -> io::Result<R::Task> {
        let stream = R::stream(socket)?;
        let report = self.report.clone();
        Ok(R::spawn(async move {
            let connected = match R::writable(&stream).await {
                Ok(()) => finish_connect(R::socket(&stream)),
                Err(e) => Err(connect_error(&e)),
            };
            let event = match connected {
                Ok(local) => SocketEvent::Connected { tag, stream, local },
                Err(error) => SocketEvent::ConnectFailed { tag, error },
            };
            let _ = report.send(event).await;
        }))
    }

    fn start(&mut self, tag: Tag, stream: R::Stream) -> Conn<R> {
        let stream = Arc::new(stream);
        let (writes, writes_rx) = async_channel::unbounded();
        let (reading, reading_rx) = async_channel::unbounded();
        let buf = ReadBuffer::new(self.buffers.clone());
        let reader = read_loop::<R>(tag, stream.clone(), buf, reading_rx, self.report.clone());
        let writer = write_loop::<R>(tag, stream.clone(), writes_rx, self.report.clone());
        Conn {
            stream,
            writes,
            reading,
            _tasks: [R::spawn(reader), R::spawn(writer)],
        }
    }

    fn send(&mut self, conn: &Conn<R>, data: Bytes) {
        let _ = conn.writes.try_send(Write::Data(data));
    }

    fn shutdown_write(&mut self, conn: &Conn<R>) {
        let _ = conn.writes.try_send(Write::Fin);
    }

    fn set_reading(&mut self, conn: &Conn<R>, on: bool) {
        let _ = conn.reading.try_send(on);
    }

    fn reset(&mut self, conn: Conn<R>) {
        reset_on_close(R::socket(&conn.stream));
    }
}

async fn read_loop<R: Runtime>(
    tag: Tag,
    stream: Arc<R::Stream>,
    mut buf: ReadBuffer,
    reading: Receiver<bool>,
    report: Sender<SocketEvent<R::Stream>>,
) {
    let mut on = true;
    let credits = ReadCredits::default();
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
        let read = async { Some(R::read(&stream, &mut buf).await) }
            .or(async {
                if let Ok(word) = reading.recv().await {
                    on = word;
                }
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
            Ok(_) => {
                let data = buf.split();
                // Waits while READS_IN_FLIGHT reads are not yet handed to the core: a paused
                // connection then holds back that many, not the whole socket queue.
                let credit = credits.take().await;
                (SocketEvent::Received { tag, data, credit }, false)
            }
            Err(_) => (SocketEvent::Failed { tag }, true),
        };
        if report.send(event).await.is_err() || last {
            return;
        }
    }
}

async fn write_loop<R: Runtime>(
    tag: Tag,
    stream: Arc<R::Stream>,
    writes: Receiver<Write>,
    report: Sender<SocketEvent<R::Stream>>,
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
            let event = match R::socket(&stream).shutdown(Shutdown::Write) {
                Ok(()) => SocketEvent::FinSent { tag },
                Err(_) => SocketEvent::Failed { tag },
            };
            let _ = report.send(event).await;
            return;
        }
        let written = R::write_vectored(&stream, &queue.slices()).await;
        let event = match written {
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
