//! One connection of an endpoint on a non-blocking TCP socket, for an event loop of the
//! application's own (`mio`, `poll(2)`): the [`Pump`] keeps what the endpoint asked of the
//! connection (bytes and FIN to send, reading paused or not, forgotten after a close) and,
//! whenever the loop says the socket may be ready, does as much of it as the socket allows
//! without blocking, turning what happened into the endpoint's [`Input`]s.
//!
//! The runtimes do not use it: their [`Shell`](crate::Shell) runs a reader and a writer task
//! per connection instead. This is the same contract for a loop with no tasks, and it keeps
//! the [`Shell`](crate::Shell)'s rule that a closed connection reports nothing more.

use std::io::{ErrorKind, Read};
use std::net::Shutdown;

use socket2::SockRef;

use super::net;
use super::write_queue::{Write, WriteQueue};
use ferry_proto::io::{ConnId, Input, Output};

/// Most bytes one read takes from the socket.
const READ_CHUNK: usize = 64 * 1024;

/// The endpoint's side of one non-blocking TCP connection (see the [module](self)).
#[derive(Debug)]
pub struct Pump {
    conn: ConnId,
    connecting: bool,
    queue: WriteQueue,
    reading: bool,
    /// The endpoint closed the connection and forgot it: nothing more is reported, and the
    /// socket is done with once our FIN is out.
    forgotten: bool,
}

impl Pump {
    /// A connection the endpoint knows as `conn`: `connecting` when its socket comes from
    /// [`net::start_connect`] (the connect finishes in the first [`Pump::pump`] told the
    /// socket is writable), else accepted and open.
    pub fn new(conn: ConnId, connecting: bool) -> Pump {
        Pump {
            conn,
            connecting,
            queue: WriteQueue::default(),
            reading: true,
            forgotten: false,
        }
    }

    /// The endpoint's name for the connection.
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// Takes an output addressed to this connection (`Send`, `HalfClose`, `Close`, `Reset`,
    /// `PauseReading`, `ResumeReading`); ignores every other. A `Reset` is carried out as a
    /// `Close`: the peer then sees our FIN after the queued bytes.
    pub fn handle_output(&mut self, output: &Output) {
        match output {
            Output::Send { conn, data } if *conn == self.conn => {
                self.queue.push(Write::Data(data.clone()));
            }
            Output::HalfClose { conn } if *conn == self.conn => self.queue.push(Write::Fin),
            Output::Close { conn } | Output::Reset { conn } if *conn == self.conn => {
                self.queue.push(Write::Fin);
                (self.forgotten, self.reading) = (true, false);
            }
            Output::PauseReading { conn } if *conn == self.conn => self.reading = false,
            Output::ResumeReading { conn } if *conn == self.conn => self.reading = true,
            _ => {}
        }
    }

    /// Finishes the connect (only when the loop saw the socket `writable`), writes the queued
    /// bytes and FIN, and reads, each as far as `stream` allows without blocking; pushes what
    /// the endpoint should hear to `inputs`. True when the socket is done with: it failed,
    /// or the endpoint forgot it and our FIN is out. Edge-triggered loops call it for every
    /// socket they were woken for and for each one given new work (bytes queued, reading
    /// resumed).
    pub fn pump<S>(&mut self, stream: &mut S, writable: bool, inputs: &mut Vec<Input>) -> bool
    where
        S: Read + std::io::Write,
        for<'s> SockRef<'s>: From<&'s S>,
    {
        let mut heard = Vec::new();
        let done = self.pump_into(stream, writable, &mut heard);
        if !self.forgotten {
            inputs.extend(heard);
        }
        done
    }

    fn pump_into<S>(&mut self, stream: &mut S, writable: bool, inputs: &mut Vec<Input>) -> bool
    where
        S: Read + std::io::Write,
        for<'s> SockRef<'s>: From<&'s S>,
    {
        let conn = self.conn;
        if self.connecting {
            if !writable {
                return false;
            }
            self.connecting = false;
            match net::finish_connect(SockRef::from(&*stream)) {
                Ok(local) => inputs.push(Input::Connected { conn, local }),
                Err(error) => {
                    inputs.push(Input::ConnectFailed { conn, error });
                    return true;
                }
            }
        }
        while !self.queue.is_idle() && !self.queue.fin_due() {
            match stream.write_vectored(&self.queue.slices()) {
                Ok(bytes) => {
                    self.queue.advance(bytes);
                    inputs.push(Input::Writable { conn, bytes });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    inputs.push(Input::Reset { conn });
                    return true;
                }
            }
        }
        if self.queue.fin_due() {
            // The peer may have gone already; its reset then shows in the next read.
            let _ = SockRef::from(&*stream).shutdown(Shutdown::Write);
            self.queue = WriteQueue::default();
            if self.forgotten {
                return true;
            }
        }
        let mut buf = [0; READ_CHUNK];
        while self.reading {
            match stream.read(&mut buf) {
                Ok(0) => {
                    self.reading = false;
                    inputs.push(Input::HalfClosed { conn });
                }
                Ok(n) => inputs.push(Input::Received {
                    conn,
                    data: buf[..n].to_vec().into(),
                }),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => {
                    inputs.push(Input::Reset { conn });
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io::Write as _;
    use std::net::{Ipv4Addr, SocketAddr, TcpListener};

    /// Pumps until `stop` holds, waiting on nothing: loopback is quick, and each round is
    /// non-blocking.
    fn pump_until(
        pump: &mut Pump,
        stream: &mut std::net::TcpStream,
        inputs: &mut Vec<Input>,
        stop: impl Fn(&[Input]) -> bool,
    ) -> bool {
        loop {
            let done = pump.pump(stream, true, inputs);
            if done || stop(inputs) {
                return done;
            }
            std::thread::yield_now();
        }
    }

    #[test]
    fn connects_sends_reads_and_reports_nothing_once_forgotten() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let remote: SocketAddr = listener.local_addr().expect("addr");
        let mut stream = net::start_connect(remote, None).expect("connect");
        let (mut peer, _) = listener.accept().expect("accept");
        let (conn, mut inputs) = (ConnId::Connect(7), Vec::new());
        let mut pump = Pump::new(conn, true);
        assert!(
            !pump.pump(&mut stream, false, &mut inputs),
            "not writable yet"
        );
        assert!(inputs.is_empty());
        let data = Bytes::from_static(b"hello");
        pump.handle_output(&Output::Send { conn, data });
        pump.handle_output(&Output::HalfClose { conn });
        pump.handle_output(&Output::PauseReading {
            conn: ConnId::Connect(8),
        });
        pump_until(&mut pump, &mut stream, &mut inputs, |i| {
            i.iter().any(|i| matches!(i, Input::Writable { .. }))
        });
        assert!(matches!(inputs[0], Input::Connected { conn: c, .. } if c == conn));
        assert!(matches!(inputs[1], Input::Writable { bytes: 5, .. }));
        let mut got = Vec::new();
        peer.read_to_end(&mut got).expect("read");
        assert_eq!(got, b"hello", "bytes, then our FIN");
        peer.write_all(b"back").expect("write");
        drop(peer);
        inputs.clear();
        pump_until(&mut pump, &mut stream, &mut inputs, |i| {
            i.iter().any(|i| matches!(i, Input::HalfClosed { .. }))
        });
        let read: Vec<u8> = inputs
            .iter()
            .filter_map(|i| match i {
                Input::Received { data, .. } => Some(data.to_vec()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(read, b"back");
        pump.handle_output(&Output::Close { conn });
        inputs.clear();
        assert!(
            pump.pump(&mut stream, true, &mut inputs),
            "forgotten, FIN out"
        );
        assert!(inputs.is_empty(), "a forgotten connection reports nothing");
    }
}
