//! One transfer over one plain TCP connection, as an [`Endpoint`]: the smallest adapter that
//! lets a real driver run an [`Outgoing`] or an [`Incoming`] on real sockets and files (no
//! TLS, no ICE; a `Node` will do this properly).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_proto::io::{ConnId, Endpoint, Event, FileId, Input, ListenerId, Output};
use ferry_proto::transfer::{self, Form, Incoming, Outgoing, Transfer, TransferId};

/// What the adapter reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The receiver listens here.
    Listening(SocketAddr),
    /// The sender could not connect.
    ConnectFailed,
    /// Something the transfer said.
    Transfer(Event),
}

/// One side of one transfer over TCP.
pub struct StreamTransfer {
    /// What starts the transfer once the stream is up (the sender's).
    pending: Option<Outgoing>,
    machine: Option<Transfer>,
    conn: Option<ConnId>,
    out: VecDeque<Output<StreamEvent>>,
}

impl StreamTransfer {
    /// Connects to `to` and sends the file at `source` under `display_name`.
    pub fn sender(to: SocketAddr, source: String, display_name: &str) -> StreamTransfer {
        let outgoing = Outgoing::new(
            TransferId(1),
            FileId(1),
            source,
            display_name.to_owned(),
            Form::Framed,
        );
        let conn = ConnId::Connect(1);
        let connect = Output::Connect {
            conn,
            remote: to,
            local_port: None,
            timeout: Duration::from_secs(5),
        };
        StreamTransfer {
            pending: Some(outgoing),
            machine: None,
            conn: None,
            out: VecDeque::from([connect]),
        }
    }

    /// Listens on `local` and receives one transfer on the first connection.
    pub fn receiver(local: SocketAddr) -> StreamTransfer {
        let listener = ListenerId(1);
        StreamTransfer {
            pending: None,
            machine: None,
            conn: None,
            out: VecDeque::from([Output::Listen { listener, local }]),
        }
    }

    /// The receiving user accepts the offer.
    pub fn accept(&mut self, now: Instant) -> Result<(), ferry_proto::Error> {
        match &mut self.machine {
            Some(Transfer::Incoming(incoming)) => incoming.accept(now)?,
            _ => return Err(ferry_proto::Error::NotNow("no incoming transfer")),
        }
        self.pump();
        Ok(())
    }

    fn pump(&mut self) {
        let (Some(machine), Some(conn)) = (&mut self.machine, self.conn) else {
            return;
        };
        loop {
            let output = machine.poll_output();
            let Some(output) = output else { return };
            self.out.push_back(match output {
                transfer::Output::Send(data) => Output::Send { conn, data },
                transfer::Output::SendData { header, data } => Output::Send {
                    conn,
                    data: [&header[..], &data].concat().into(),
                },
                transfer::Output::Close => Output::Close { conn },
                transfer::Output::Reset => Output::Reset { conn },
                transfer::Output::PauseReading => Output::PauseReading { conn },
                transfer::Output::ResumeReading => Output::ResumeReading { conn },
                transfer::Output::File(op) => Output::File(op),
                transfer::Output::Event(e) => Output::Event(StreamEvent::Transfer(e)),
                _ => continue,
            });
        }
    }

    fn feed(&mut self, now: Instant, input: transfer::Input) -> Result<(), ferry_proto::Error> {
        match &mut self.machine {
            Some(m) => m.handle_input(now, input)?,
            None => return Err(ferry_proto::Error::UnexpectedInput("no transfer yet")),
        }
        self.pump();
        Ok(())
    }
}

impl Endpoint for StreamTransfer {
    type Event = StreamEvent;

    fn handle_input(&mut self, now: Instant, input: Input) -> Result<(), ferry_proto::Error> {
        match input {
            Input::Listening { local, .. } => {
                self.out
                    .push_back(Output::Event(StreamEvent::Listening(local)));
                Ok(())
            }
            Input::Connected { conn, .. } => {
                self.conn = Some(conn);
                self.machine = self.pending.take().map(Transfer::Outgoing);
                self.pump();
                Ok(())
            }
            Input::ConnectFailed { .. } => {
                self.out
                    .push_back(Output::Event(StreamEvent::ConnectFailed));
                Ok(())
            }
            Input::Accepted { conn, .. } if self.machine.is_none() => {
                self.conn = Some(conn);
                let incoming = Incoming::new(TransferId(1), FileId(2), Form::Framed);
                self.machine = Some(Transfer::Incoming(incoming));
                self.pump();
                Ok(())
            }
            Input::Received { data, .. } => self.feed(now, transfer::Input::Received(data)),
            Input::Writable { bytes, .. } => self.feed(now, transfer::Input::Writable(bytes)),
            Input::HalfClosed { .. } | Input::Closed { .. } => {
                self.feed(now, transfer::Input::StreamEnded)
            }
            Input::Reset { .. } => self.feed(now, transfer::Input::StreamReset),
            Input::File(result) => self.feed(now, transfer::Input::File(result)),
            _ => Err(ferry_proto::Error::UnexpectedInput(
                "not for a lone transfer",
            )),
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some(m) = &mut self.machine {
            m.handle_timeout(now);
        }
        self.pump();
    }

    fn poll_output(&mut self) -> Option<Output<StreamEvent>> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.machine.as_ref().and_then(Transfer::poll_timeout)
    }
}
