//! Endpoints that push bytes through a driver as fast as it goes, for the runtimes'
//! throughput benchmarks: [`Blast`] connects and sends with a credit window the way the
//! transfer machines do (more only as `Writable` returns it), or listens and counts.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{ConnId, Endpoint, Input, ListenerId, Output};

/// Bytes a benchmark run moves.
pub const TOTAL: u64 = 1 << 30;
/// Bytes per `Send`.
pub const CHUNK: usize = 64 * 1024;
/// The transfer machines' send window.
const WINDOW: usize = ferry_proto::transfer::SEND_WINDOW;

/// What a [`Blast`] reports.
#[derive(Debug)]
pub enum BlastEvent {
    /// The receiver listens here.
    Listening(SocketAddr),
    /// The receiver got every byte.
    Done,
}

/// Sends [`TOTAL`] bytes (sender) or counts them (receiver).
#[derive(Debug)]
pub struct Blast {
    conn: Option<ConnId>,
    chunk: Bytes,
    sending: bool,
    queued: u64,
    in_flight: usize,
    received: u64,
    out: VecDeque<Output<BlastEvent>>,
}

impl Blast {
    /// Listens on loopback and counts what arrives.
    pub fn receiver() -> Blast {
        let local = SocketAddr::from(([127, 0, 0, 1], 0));
        Blast::new(
            Output::Listen {
                listener: ListenerId(1),
                local,
            },
            false,
        )
    }

    /// Connects to `to` and sends.
    pub fn sender(to: SocketAddr) -> Blast {
        let connect = Output::Connect {
            conn: ConnId::Connect(1),
            remote: to,
            local_port: None,
            timeout: Duration::from_secs(5),
        };
        Blast::new(connect, true)
    }

    fn new(first: Output<BlastEvent>, sending: bool) -> Blast {
        Blast {
            conn: None,
            chunk: Bytes::from(vec![0x5a; CHUNK]),
            sending,
            queued: 0,
            in_flight: 0,
            received: 0,
            out: VecDeque::from([first]),
        }
    }

    fn fill(&mut self) {
        let Some(conn) = self.conn else { return };
        while self.sending && self.queued < TOTAL && self.in_flight + CHUNK <= WINDOW {
            self.queued += CHUNK as u64;
            self.in_flight += CHUNK;
            let data = self.chunk.clone();
            self.out.push_back(Output::Send { conn, data });
        }
    }
}

impl Endpoint for Blast {
    type Event = BlastEvent;

    fn handle_input(&mut self, _now: Instant, input: Input) -> Result<(), ferry_proto::Error> {
        match input {
            Input::Listening { local, .. } => {
                self.out
                    .push_back(Output::Event(BlastEvent::Listening(local)));
            }
            Input::Connected { conn, .. } | Input::Accepted { conn, .. } => {
                self.conn = Some(conn);
                self.fill();
            }
            Input::Writable { bytes, .. } => {
                self.in_flight = self.in_flight.saturating_sub(bytes);
                self.fill();
            }
            Input::Received { data, .. } => {
                self.received += data.len() as u64;
                if self.received == TOTAL {
                    self.out.push_back(Output::Event(BlastEvent::Done));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_timeout(&mut self, _now: Instant) {}

    fn poll_output(&mut self) -> Option<Output<BlastEvent>> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        None
    }
}
