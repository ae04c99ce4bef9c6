//! A scriptable test endpoint: it does what its plan says at the times it says, can echo or
//! answer what it receives, and records every input — checking, as it goes, that the
//! driver keeps the I/O contract (no bytes after end of stream, no input for a connection
//! already over, no more credit than bytes sent, one answer per connect).
//!
//! A contract breach is returned as an `Err` from `handle_input`, which the world records
//! as a violation, so any test or sweep that checks violations checks the simulator too.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{
    ConnId, ConnectError, DhtKey, Endpoint, FileOp, FileResult, Input, ListenerId, Output,
};

/// One thing a [`Probe`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `Output::Listen`.
    Listen {
        /// Its name.
        listener: ListenerId,
        /// Where.
        local: SocketAddr,
    },
    /// `Output::Unlisten`.
    Unlisten(ListenerId),
    /// `Output::Connect`.
    Connect {
        /// Its name, a [`ConnId::Connect`].
        conn: ConnId,
        /// Where to.
        remote: SocketAddr,
        /// From which local port.
        local_port: Option<u16>,
        /// How long to try.
        timeout: Duration,
    },
    /// `Output::Send`.
    Send {
        /// On which connection.
        conn: ConnId,
        /// What.
        data: Bytes,
    },
    /// `Output::HalfClose`.
    HalfClose(ConnId),
    /// `Output::Close`.
    Close(ConnId),
    /// `Output::Reset`.
    Reset(ConnId),
    /// `Output::PauseReading`.
    Pause(ConnId),
    /// `Output::ResumeReading`.
    Resume(ConnId),
    /// `Output::DhtPut`.
    DhtPut {
        /// The key.
        key: DhtKey,
        /// The value.
        value: Bytes,
    },
    /// `Output::DhtListen`.
    DhtListen(DhtKey),
    /// `Output::DhtCancelListen`.
    DhtCancel(DhtKey),
    /// `Output::File`.
    File(FileOp),
}

impl Step {
    /// Connect `c<n>` to `remote` from any port, giving up after 10 s.
    pub fn connect(n: u32, remote: SocketAddr) -> Step {
        Step::Connect {
            conn: ConnId::Connect(n),
            remote,
            local_port: None,
            timeout: Duration::from_secs(10),
        }
    }

    /// Connect `c<n>` to `remote` from local port `port` (simultaneous open, ICE-TCP).
    pub fn connect_from(n: u32, port: u16, remote: SocketAddr) -> Step {
        Step::Connect {
            conn: ConnId::Connect(n),
            remote,
            local_port: Some(port),
            timeout: Duration::from_secs(10),
        }
    }

    fn into_output(self) -> Output {
        match self {
            Step::Listen { listener, local } => Output::Listen { listener, local },
            Step::Unlisten(listener) => Output::Unlisten { listener },
            Step::Connect {
                conn,
                remote,
                local_port,
                timeout,
            } => Output::Connect {
                conn,
                remote,
                local_port,
                timeout,
            },
            Step::Send { conn, data } => Output::Send { conn, data },
            Step::HalfClose(conn) => Output::HalfClose { conn },
            Step::Close(conn) => Output::Close { conn },
            Step::Reset(conn) => Output::Reset { conn },
            Step::Pause(conn) => Output::PauseReading { conn },
            Step::Resume(conn) => Output::ResumeReading { conn },
            Step::DhtPut { key, value } => Output::DhtPut { key, value },
            Step::DhtListen(key) => Output::DhtListen { key },
            Step::DhtCancel(key) => Output::DhtCancelListen { key },
            Step::File(op) => Output::File(op),
        }
    }
}

/// Where a connection is, as the probe heard it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// Connect asked, no answer yet.
    Opening,
    /// Connected or accepted.
    Open,
    /// The peer's end of stream arrived.
    HalfClosed,
    /// Closed in both directions.
    Closed,
    /// Reset.
    Reset,
    /// The connect failed.
    Failed(ConnectError),
    /// We closed or reset it ourselves.
    Dropped,
}

/// What the probe knows about one connection.
#[derive(Debug, Clone)]
pub struct ConnLog {
    /// Its state.
    pub state: ConnState,
    /// Every byte received, in order.
    pub received: Vec<u8>,
    /// Bytes we sent.
    pub sent: usize,
    /// Credit returned by `Writable`.
    pub writable: usize,
    /// The remote address (accepted connections) or local address (connected ones).
    pub addr: Option<SocketAddr>,
    /// When it opened and when it ended, in virtual time.
    pub opened_at: Option<Duration>,
    /// When it ended.
    pub ended_at: Option<Duration>,
}

impl ConnLog {
    fn new(state: ConnState) -> ConnLog {
        ConnLog {
            state,
            received: Vec::new(),
            sent: 0,
            writable: 0,
            addr: None,
            opened_at: None,
            ended_at: None,
        }
    }
}

/// A scriptable [`Endpoint`] for tests, sweeps and benchmarks.
#[derive(Debug)]
pub struct Probe {
    epoch: Instant,
    plan: Vec<(Duration, Step)>,
    next: usize,
    out: VecDeque<Output>,
    echo: bool,
    close_on_eof: bool,
    reply: Option<Bytes>,
    conns: BTreeMap<ConnId, ConnLog>,
    listeners: BTreeMap<ListenerId, Result<SocketAddr, String>>,
    dht: Vec<(Duration, DhtKey, Bytes)>,
    puts: Vec<(DhtKey, bool)>,
    files: Vec<FileResult>,
    inputs: usize,
    skipped: usize,
    problems: Vec<String>,
}

impl Probe {
    /// A probe with an empty plan; `epoch` is the world's virtual time zero.
    pub fn new(epoch: Instant) -> Probe {
        Probe {
            epoch,
            plan: Vec::new(),
            next: 0,
            out: VecDeque::new(),
            echo: false,
            close_on_eof: false,
            reply: None,
            conns: BTreeMap::new(),
            listeners: BTreeMap::new(),
            dht: Vec::new(),
            puts: Vec::new(),
            files: Vec::new(),
            inputs: 0,
            skipped: 0,
            problems: Vec::new(),
        }
    }

    /// Does `step` at virtual time `at` (steps at one time keep their order).
    pub fn at(mut self, at: Duration, step: Step) -> Probe {
        let pos = self.plan.partition_point(|(t, _)| *t <= at);
        self.plan.insert(pos, (at, step));
        self
    }

    /// Whether it closes a connection once the peer's end of stream arrives; off, it keeps
    /// every connection open until told (a stranger that never lets go).
    pub fn set_close_on_eof(&mut self, on: bool) {
        self.close_on_eof = on;
    }

    /// Sends back whatever it receives, on the same connection, and closes it once the
    /// peer's end of stream arrives (an echo server).
    pub fn echo(mut self) -> Probe {
        self.echo = true;
        self.close_on_eof = true;
        self
    }

    /// Closes a connection once the peer's end of stream arrives.
    pub fn close_on_eof(mut self) -> Probe {
        self.close_on_eof = true;
        self
    }

    /// Sends `data` on every connection it accepts.
    pub fn reply(mut self, data: impl Into<Bytes>) -> Probe {
        self.reply = Some(data.into());
        self
    }

    /// Does `step` now, as if the plan said so: a test acting between runs, through
    /// [`World::with_endpoint`](crate::World::with_endpoint), which carries it out at once.
    pub fn act(&mut self, step: Step) {
        self.emit(step.into_output());
    }

    /// What it knows about a connection.
    pub fn conn(&self, conn: ConnId) -> Option<&ConnLog> {
        self.conns.get(&conn)
    }

    /// Every connection it heard of, in id order.
    pub fn conns(&self) -> &BTreeMap<ConnId, ConnLog> {
        &self.conns
    }

    /// The bytes received on a connection.
    pub fn received(&self, conn: ConnId) -> &[u8] {
        self.conns.get(&conn).map_or(&[], |c| &c.received)
    }

    /// A connection's state.
    pub fn state(&self, conn: ConnId) -> Option<ConnState> {
        self.conns.get(&conn).map(|c| c.state.clone())
    }

    /// The connections it accepted, in order.
    pub fn accepted(&self) -> Vec<ConnId> {
        self.conns
            .keys()
            .filter(|c| matches!(c, ConnId::Accepted(_)))
            .copied()
            .collect()
    }

    /// How a listener fared.
    pub fn listener(&self, listener: ListenerId) -> Option<&Result<SocketAddr, String>> {
        self.listeners.get(&listener)
    }

    /// DHT values received, with their virtual arrival time.
    pub fn dht_values(&self) -> &[(Duration, DhtKey, Bytes)] {
        &self.dht
    }

    /// Answers to its DHT puts.
    pub fn puts(&self) -> &[(DhtKey, bool)] {
        &self.puts
    }

    /// Answers to its file operations.
    pub fn file_results(&self) -> &[FileResult] {
        &self.files
    }

    /// Breaches of the I/O contract it saw (also reported to the world as errors).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Plan steps skipped because their connection was already over.
    pub fn skipped(&self) -> usize {
        self.skipped
    }

    /// Inputs it was fed.
    pub fn input_count(&self) -> usize {
        self.inputs
    }

    fn problem(&mut self, what: String) -> Result<(), ferry_proto::Error> {
        self.problems.push(what);
        Err(ferry_proto::Error::UnexpectedInput(
            "the probe saw a contract breach",
        ))
    }

    fn emit(&mut self, out: Output) {
        match &out {
            Output::Connect { conn, .. } => {
                self.conns.insert(*conn, ConnLog::new(ConnState::Opening));
            }
            Output::Send { conn, data } => {
                if let Some(c) = self.conns.get_mut(conn) {
                    c.sent += data.len();
                }
            }
            _ => {}
        }
        self.out.push_back(out);
    }

    /// A close takes effect when the driver takes it, not when it is queued: inputs about the
    /// connection (credit for bytes queued before the close, say) may arrive in between.
    fn taken(&mut self, out: &Output) {
        if let Output::Close { conn } | Output::Reset { conn } = out {
            if let Some(c) = self.conns.get_mut(conn) {
                if matches!(
                    c.state,
                    ConnState::Open | ConnState::HalfClosed | ConnState::Opening
                ) {
                    c.state = ConnState::Dropped;
                }
            }
        }
    }

    fn live(&mut self, conn: ConnId, what: &str) -> Result<&mut ConnLog, String> {
        match self.conns.get_mut(&conn) {
            Some(c) if matches!(c.state, ConnState::Open | ConnState::HalfClosed) => Ok(c),
            Some(c) => Err(format!("{what} on {conn} in state {:?}", c.state)),
            None => Err(format!("{what} on unknown {conn}")),
        }
    }
}

impl Endpoint for Probe {
    type Event = ferry_proto::io::Event;

    fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), ferry_proto::Error> {
        self.inputs += 1;
        let at = now.saturating_duration_since(self.epoch);
        match input {
            Input::Listening { listener, local } => {
                self.listeners.insert(listener, Ok(local));
            }
            Input::ListenFailed { listener, reason } => {
                self.listeners.insert(listener, Err(reason));
            }
            Input::Connected { conn, local } => match self.conns.get_mut(&conn) {
                Some(c) if c.state == ConnState::Opening => {
                    c.state = ConnState::Open;
                    c.addr = Some(local);
                    c.opened_at = Some(at);
                }
                _ => return self.problem(format!("Connected for {conn}, which is not opening")),
            },
            Input::ConnectFailed { conn, error } => match self.conns.get_mut(&conn) {
                Some(c) if c.state == ConnState::Opening => {
                    c.state = ConnState::Failed(error);
                    c.ended_at = Some(at);
                }
                _ => {
                    return self.problem(format!("ConnectFailed for {conn}, which is not opening"));
                }
            },
            Input::Accepted { conn, remote, .. } => {
                if !matches!(conn, ConnId::Accepted(_)) || self.conns.contains_key(&conn) {
                    return self.problem(format!("Accepted names {conn}, not a new a<n>"));
                }
                let mut log = ConnLog::new(ConnState::Open);
                log.addr = Some(remote);
                log.opened_at = Some(at);
                self.conns.insert(conn, log);
                if let Some(data) = self.reply.clone() {
                    self.emit(Output::Send { conn, data });
                }
            }
            Input::Received { conn, data } => {
                let c = match self.live(conn, "Received") {
                    Ok(c) => c,
                    Err(e) => return self.problem(e),
                };
                if c.state == ConnState::HalfClosed {
                    return self.problem(format!("bytes on {conn} after its end of stream"));
                }
                c.received.extend_from_slice(&data);
                if self.echo {
                    self.emit(Output::Send { conn, data });
                }
            }
            Input::Writable { conn, bytes } => {
                let c = match self.conns.get_mut(&conn) {
                    Some(c)
                        if !matches!(
                            c.state,
                            ConnState::Opening
                                | ConnState::Closed
                                | ConnState::Reset
                                | ConnState::Failed(_)
                                | ConnState::Dropped
                        ) =>
                    {
                        c
                    }
                    _ => return self.problem(format!("Writable for {conn}, which is not open")),
                };
                c.writable += bytes;
                let (writable, sent) = (c.writable, c.sent);
                if writable > sent {
                    return self.problem(format!(
                        "{conn} got {writable} bytes of credit for {sent} sent"
                    ));
                }
            }
            Input::HalfClosed { conn } => {
                let c = match self.live(conn, "HalfClosed") {
                    Ok(c) => c,
                    Err(e) => return self.problem(e),
                };
                c.state = ConnState::HalfClosed;
                if self.close_on_eof {
                    self.emit(Output::Close { conn });
                }
            }
            Input::Closed { conn } | Input::Reset { conn } => {
                let reset = matches!(input, Input::Reset { .. });
                let c = match self.live(conn, "Closed or Reset") {
                    Ok(c) => c,
                    Err(e) => return self.problem(e),
                };
                c.state = if reset {
                    ConnState::Reset
                } else {
                    ConnState::Closed
                };
                c.ended_at = Some(at);
            }
            Input::DhtValue { key, value } => self.dht.push((at, key, value)),
            Input::DhtPutDone { key, ok } => self.puts.push((key, ok)),
            Input::File(result) => self.files.push(result),
            other => return self.problem(format!("unknown input {other:?}")),
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        let at = now.saturating_duration_since(self.epoch);
        while let Some((t, step)) = self.plan.get(self.next) {
            if *t > at {
                break;
            }
            let out = step.clone().into_output();
            self.next += 1;
            // A script cannot know in advance that a connection will fail or be reset; a
            // step on a connection already over is skipped, as an application would.
            // Unknown connections are not skipped: tests use them to misbehave on purpose.
            let over = match &out {
                Output::Send { conn, .. }
                | Output::HalfClose { conn }
                | Output::Close { conn }
                | Output::Reset { conn }
                | Output::PauseReading { conn }
                | Output::ResumeReading { conn } => self.conns.get(conn).is_some_and(|c| {
                    !matches!(
                        c.state,
                        ConnState::Opening | ConnState::Open | ConnState::HalfClosed
                    )
                }),
                _ => false,
            };
            if over {
                self.skipped += 1;
                continue;
            }
            self.emit(out);
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        let out = self.out.pop_front()?;
        self.taken(&out);
        Some(out)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.plan.get(self.next).map(|(t, _)| self.epoch + *t)
    }
}
