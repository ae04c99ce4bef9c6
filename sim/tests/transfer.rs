//! Ferry's real transfer state machines over the simulator: a file crosses a NAT, served
//! from a seed on one side and written as a partial file, verified and renamed on the other.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;

use common::*;
use ferry_proto::io::{self, ConnId, Endpoint, Event, FileId, ListenerId};
use ferry_proto::trace::TransferDecoder;
use ferry_proto::transfer::{self, Form, Incoming, Outgoing, Status, TransferId};
use ferry_sim::{HostSpec, LinkSpec, Nat, RouterKind, World};

/// One side of one transfer, on one TCP connection: the glue a `Node` will be.
enum Side {
    /// Connects to `to`, then sends `source`.
    Sender {
        to: SocketAddr,
        source: String,
        machine: Option<Outgoing>,
    },
    /// Listens, accepts one connection, accepts the offer.
    Receiver { machine: Option<Incoming> },
}

struct TransferHost {
    side: Side,
    conn: Option<ConnId>,
    started: bool,
    out: VecDeque<io::Output>,
    events: Vec<Event>,
}

const ID: TransferId = TransferId(0x5eed);

impl TransferHost {
    fn new(side: Side) -> TransferHost {
        TransferHost {
            side,
            conn: None,
            started: false,
            out: VecDeque::new(),
            events: Vec::new(),
        }
    }

    fn status(&self) -> Option<Status> {
        match &self.side {
            Side::Sender { machine, .. } => machine.as_ref().map(Outgoing::status),
            Side::Receiver { machine } => machine.as_ref().map(Incoming::status),
        }
    }

    fn feed(&mut self, now: Instant, input: transfer::Input) -> Result<(), ferry_proto::Error> {
        match &mut self.side {
            Side::Sender {
                machine: Some(m), ..
            } => m.handle_input(now, input)?,
            Side::Receiver { machine: Some(m) } => m.handle_input(now, input)?,
            _ => return Err(ferry_proto::Error::UnexpectedInput("no transfer yet")),
        }
        self.drain(now);
        Ok(())
    }

    /// Translates the machine's outputs into the driver's vocabulary.
    fn drain(&mut self, now: Instant) {
        loop {
            let next = match &mut self.side {
                Side::Sender {
                    machine: Some(m), ..
                } => m.poll_output(),
                Side::Receiver { machine: Some(m) } => m.poll_output(),
                _ => None,
            };
            let Some(out) = next else { break };
            let Some(conn) = self.conn else { break };
            let out = match out {
                transfer::Output::Send(data) => io::Output::Send { conn, data },
                transfer::Output::SendData { header, data } => io::Output::Send {
                    conn,
                    data: [&header[..], &data].concat().into(),
                },
                transfer::Output::Close => io::Output::Close { conn },
                transfer::Output::Reset => io::Output::Reset { conn },
                transfer::Output::PauseReading => io::Output::PauseReading { conn },
                transfer::Output::ResumeReading => io::Output::ResumeReading { conn },
                transfer::Output::File(op) => io::Output::File(op),
                transfer::Output::Event(event) => {
                    if let (Event::IncomingTransfer { .. }, Side::Receiver { machine: Some(m) }) =
                        (&event, &mut self.side)
                    {
                        let _ = m.accept(now);
                    }
                    self.events.push(event.clone());
                    io::Output::Event(event)
                }
                _ => continue,
            };
            self.out.push_back(out);
        }
    }
}

impl Endpoint for TransferHost {
    type Event = ferry_proto::io::Event;

    fn handle_input(&mut self, now: Instant, input: io::Input) -> Result<(), ferry_proto::Error> {
        match input {
            io::Input::Connected { conn, .. } => {
                self.conn = Some(conn);
                if let Side::Sender {
                    source, machine, ..
                } = &mut self.side
                {
                    *machine = Some(Outgoing::new(
                        ID,
                        FileId(1),
                        source.clone(),
                        "report.pdf".into(),
                        Form::Framed,
                    ));
                }
                self.drain(now);
            }
            io::Input::Accepted { conn, .. } => {
                self.conn = Some(conn);
                if let Side::Receiver { machine } = &mut self.side {
                    *machine = Some(Incoming::new(ID, FileId(2), Form::Framed));
                }
                self.drain(now);
            }
            io::Input::Received { data, .. } => self.feed(now, transfer::Input::Received(data))?,
            io::Input::Writable { bytes, .. } => {
                self.feed(now, transfer::Input::Writable(bytes))?
            }
            io::Input::HalfClosed { .. } | io::Input::Closed { .. } => {
                self.feed(now, transfer::Input::StreamEnded)?
            }
            io::Input::Reset { .. } => self.feed(now, transfer::Input::StreamReset)?,
            io::Input::File(result) => self.feed(now, transfer::Input::File(result))?,
            _ => {}
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        if !self.started {
            self.started = true;
            match &self.side {
                Side::Sender { to, .. } => self.out.push_back(io::Output::Connect {
                    conn: ConnId::Connect(1),
                    remote: *to,
                    local_port: None,
                    timeout: std::time::Duration::from_secs(10),
                }),
                Side::Receiver { .. } => self.out.push_back(io::Output::Listen {
                    listener: ListenerId(1),
                    local: sa("0.0.0.0:443"),
                }),
            }
        }
        match &mut self.side {
            Side::Sender {
                machine: Some(m), ..
            } => m.handle_timeout(now),
            Side::Receiver { machine: Some(m) } => m.handle_timeout(now),
            _ => {}
        }
        self.drain(now);
    }

    fn poll_output(&mut self) -> Option<io::Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match &self.side {
            Side::Sender {
                machine: Some(m), ..
            } => m.poll_timeout(),
            Side::Receiver { machine: Some(m) } => m.poll_timeout(),
            _ => None,
        }
    }
}

#[test]
fn a_file_crosses_a_nat_and_arrives_verified_under_its_name() {
    let size = 8 * 1024 * 1024;
    let mut b = World::builder(21);
    let (home, _) = site(
        &mut b,
        "home",
        [203, 0, 113, 1],
        RouterKind::Nat(Nat::symmetric()),
    );
    let fast = LinkSpec::latency(ms(15))
        .with_jitter(ms(5))
        .with_bandwidth(20_000_000);
    let internet = b.internet();
    let bob = b.host(
        HostSpec::new("bob", internet)
            .v4([198, 51, 100, 7])
            .link(fast),
        TransferHost::new(Side::Receiver { machine: None }),
    );
    let sender = Side::Sender {
        to: sa("198.51.100.7:443"),
        source: "report".into(),
        machine: None,
    };
    let alice = b.host(
        HostSpec::new("alice", home)
            .v4([192, 168, 1, 2])
            .link(fast)
            .source("report", size, 99),
        TransferHost::new(sender),
    );
    let mut world = b
        .trace_with(TransferDecoder::default())
        .build()
        .expect("world");
    world.run_for(secs(120));
    no_violations(&world);

    let digest = ferry_sim::files::Source { size, seed: 99 }.digest();
    let stored = world
        .received_file(bob, "report.pdf")
        .expect("bob committed the file");
    assert_eq!((stored.len, stored.digest()), (size, digest));
    assert_eq!(world.partial_files(bob), 0, "no partial data is left");
    for h in [alice, bob] {
        let host: &TransferHost = world.endpoint(h).expect("a transfer host");
        assert_eq!(host.status(), Some(Status::Finished), "{}", world.trace());
        assert!(
            host.events
                .iter()
                .any(|e| matches!(e, Event::Verified { digest: d, .. } if *d == digest))
        );
        assert_eq!(world.open_files(h), 0, "every file closed");
    }
    let trace = world.trace();
    for line in [
        "HEADER Content-Length=8388608 Display-Name=\"report.pdf\"",
        "GO",
        "DATA ×",
        "END sha3=",
        "VERDICT ok",
        "saved as \"report.pdf\"",
    ] {
        assert!(trace.contains(line), "missing {line:?} in\n{trace}");
    }
    assert_eq!(world.live_connections(), 0, "{trace}");
    if std::env::var_os("FERRY_PRINT_TRACE").is_some() {
        eprintln!("{trace}");
    }
}
