//! A small blocking driver that runs any [`Endpoint`] on real loopback sockets, for interop
//! tests against real servers (coturn). The runtimes are the real drivers; this one is kept
//! deliberately plain: non-blocking std sockets polled in a loop, the real clock.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{ConnId, ConnectError, Endpoint, Input, ListenerId, Output};

struct Conn {
    stream: TcpStream,
    out: VecDeque<u8>,
    /// Close once `out` is written.
    closing: bool,
}

/// Runs `E` on real sockets.
pub struct RealNet<E: Endpoint> {
    /// The endpoint, for commands between runs.
    pub endpoint: E,
    conns: BTreeMap<ConnId, Conn>,
    listeners: BTreeMap<ListenerId, TcpListener>,
    next_accepted: u32,
    /// Every event the endpoint emitted, in order.
    pub events: Vec<E::Event>,
    /// Events no `run_until` has taken yet.
    unclaimed: VecDeque<E::Event>,
}

impl<E: Endpoint> RealNet<E>
where
    E::Event: Clone + std::fmt::Debug,
{
    /// Wraps an endpoint.
    pub fn new(endpoint: E) -> Self {
        RealNet {
            endpoint,
            conns: BTreeMap::new(),
            listeners: BTreeMap::new(),
            next_accepted: 1,
            events: Vec::new(),
            unclaimed: VecDeque::new(),
        }
    }

    /// Calls `f` on the endpoint with the current time (a command), then carries out what it asked.
    pub fn command(&mut self, f: impl FnOnce(&mut E, Instant)) {
        f(&mut self.endpoint, Instant::now());
        self.drain();
    }

    /// Runs until an event satisfies `until` (returned, and taken), or `timeout` passes
    /// (`None`). Events that do not satisfy it stay for later calls.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut until: impl FnMut(&E::Event) -> bool,
    ) -> Option<E::Event> {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain();
            if let Some(i) = self.unclaimed.iter().position(&mut until) {
                return self.unclaimed.remove(i);
            }
            let busy = self.poll_sockets();
            if let Some(at) = self.endpoint.poll_timeout() {
                if at <= Instant::now() {
                    self.endpoint.handle_timeout(Instant::now());
                    continue;
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            if !busy {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    /// Carries out every output.
    fn drain(&mut self) {
        while let Some(out) = self.endpoint.poll_output() {
            match out {
                Output::Connect {
                    conn,
                    remote,
                    timeout,
                    ..
                } => {
                    let input = match TcpStream::connect_timeout(&remote, timeout) {
                        Ok(stream) => {
                            let local = stream.local_addr().unwrap_or(remote);
                            let _ = stream.set_nonblocking(true);
                            let _ = stream.set_nodelay(true);
                            self.conns.insert(
                                conn,
                                Conn {
                                    stream,
                                    out: VecDeque::new(),
                                    closing: false,
                                },
                            );
                            Input::Connected { conn, local }
                        }
                        Err(e) => Input::ConnectFailed {
                            conn,
                            error: connect_error(&e),
                        },
                    };
                    self.feed(input);
                }
                Output::Listen { listener, local } => {
                    let input = match TcpListener::bind(local) {
                        Ok(l) => {
                            let local = l.local_addr().unwrap_or(local);
                            let _ = l.set_nonblocking(true);
                            self.listeners.insert(listener, l);
                            Input::Listening { listener, local }
                        }
                        Err(e) => Input::ListenFailed {
                            listener,
                            reason: e.to_string(),
                        },
                    };
                    self.feed(input);
                }
                Output::Send { conn, data } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.out.extend(data.iter());
                    }
                }
                Output::Close { conn } | Output::HalfClose { conn } => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.closing = true;
                    }
                }
                Output::Reset { conn } => {
                    if let Some(c) = self.conns.remove(&conn) {
                        // A zero linger makes the close a RST, as the endpoint asked (a
                        // shutdown would send a FIN: a close, not a reset).
                        let _ = socket2::SockRef::from(&c.stream).set_linger(Some(Duration::ZERO));
                        drop(c.stream);
                    }
                }
                Output::Unlisten { listener } => {
                    self.listeners.remove(&listener);
                }
                Output::Event(e) => {
                    self.events.push(e.clone());
                    self.unclaimed.push_back(e);
                }
                _ => {}
            }
        }
    }

    fn feed(&mut self, input: Input) {
        if let Err(e) = self.endpoint.handle_input(Instant::now(), input) {
            panic!("the endpoint refused an input from the driver: {e}");
        }
    }

    /// One pass over every socket; whether anything moved.
    fn poll_sockets(&mut self) -> bool {
        let mut inputs = Vec::new();
        for (id, listener) in &self.listeners {
            while let Ok((stream, remote)) = listener.accept() {
                let _ = stream.set_nonblocking(true);
                let conn = ConnId::Accepted(self.next_accepted);
                self.next_accepted += 1;
                self.conns.insert(
                    conn,
                    Conn {
                        stream,
                        out: VecDeque::new(),
                        closing: false,
                    },
                );
                inputs.push(Input::Accepted {
                    listener: *id,
                    conn,
                    remote,
                });
            }
        }
        let mut gone = Vec::new();
        for (id, c) in self.conns.iter_mut() {
            let mut written = 0;
            while !c.out.is_empty() {
                let (front, _) = c.out.as_slices();
                match c.stream.write(front) {
                    Ok(0) => break,
                    Ok(n) => {
                        c.out.drain(..n);
                        written += n;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        gone.push((*id, Input::Reset { conn: *id }));
                        break;
                    }
                }
            }
            if written > 0 {
                inputs.push(Input::Writable {
                    conn: *id,
                    bytes: written,
                });
            }
            if c.closing && c.out.is_empty() {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
                gone.push((*id, Input::Closed { conn: *id }));
                continue;
            }
            let mut buf = [0u8; 64 * 1024];
            match c.stream.read(&mut buf) {
                Ok(0) => gone.push((*id, Input::Closed { conn: *id })),
                Ok(n) => inputs.push(Input::Received {
                    conn: *id,
                    data: Bytes::copy_from_slice(&buf[..n]),
                }),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => gone.push((*id, Input::Reset { conn: *id })),
            }
        }
        let busy = !inputs.is_empty() || !gone.is_empty();
        for input in inputs {
            self.feed(input);
        }
        for (id, input) in gone {
            let closed_by_us = self.conns.remove(&id).is_some_and(|c| c.closing);
            // The endpoint asked for this close: it needs no news of it.
            if !closed_by_us {
                self.feed(input);
            }
        }
        busy
    }
}

fn connect_error(e: &std::io::Error) -> ConnectError {
    match e.kind() {
        ErrorKind::ConnectionRefused => ConnectError::Refused,
        ErrorKind::TimedOut | ErrorKind::WouldBlock => ConnectError::TimedOut,
        _ => ConnectError::Other(e.to_string()),
    }
}

/// Whether `addr` accepts TCP connections now.
pub fn is_listening(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
}
