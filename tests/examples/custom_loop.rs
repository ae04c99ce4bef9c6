//! Two Ferry nodes in a hand-written event loop: no async runtime, only `mio` (epoll),
//! non-blocking sockets, the embedded DHT and synchronous file I/O. Alice sends a file to
//! Bob over loopback; Bob accepts; both see it verified.
//!
//! The contract is the same for every Ferry state machine: feed an input, drain every output,
//! then sleep until the earliest `poll_timeout` or the next socket event; the rest is carrying
//! out outputs: on sockets (a `ferry_driver::Pump` each), on files and on the DHT.
#![allow(clippy::print_stdout)] // Printing is what this example is for.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use ferry_driver::{DhtClient, DhtStore, FileService, Pump, net};
use ferry_proto::io::{ConnId, Endpoint as _, Event, Input, ListenerId, Output};
use ferry_proto::node::Node;
use ferry_tests::identity::{Seeds, node_config};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

const SIZE: usize = 4 << 20;
const SEEDS: Seeds = Seeds::new(b"loop", b"loop-device");

fn main() -> io::Result<()> {
    let (dir, store, mut poll) = (tempfile::tempdir()?, DhtStore::new(), Poll::new()?);
    let waker = Arc::new(Waker::new(poll.registry(), Token(usize::MAX))?); // For DHT answers.
    let source = dir.path().join("report.bin");
    let bytes: Vec<u8> = (0..SIZE).map(|i| (i % 251) as u8).collect();
    std::fs::write(&source, &bytes)?;
    let mut hosts = [0, 1].map(|i| Host::new(i, dir.path(), &store, &waker).expect("host"));
    let (bob, path) = (SEEDS.account("bob").id(), source.display().to_string());
    let name = "report.bin".to_owned();
    hosts[0].node.send_file(Instant::now(), bob, path, name);
    let (mut events, mut verified) = (Events::with_capacity(64), 0);
    while verified < 2 {
        let mut busy = false;
        for host in &mut hosts {
            let (done, asked) = host.carry_out(&poll)?;
            (verified, busy) = (verified + done, busy || asked);
        }
        let wake = hosts.iter().filter_map(|h| h.node.poll_timeout()).min();
        let idle = wake.map(|at| at.saturating_duration_since(Instant::now()));
        // Sleep only once both are quiet: what a node just asked may need its sockets now.
        let idle = idle.unwrap_or(Duration::from_secs(1)) * u32::from(!busy);
        poll.poll(&mut events, Some(idle))?;
        for host in &mut hosts {
            host.step(&poll, &events)?;
        }
    }
    let got = std::fs::read(dir.path().join("bob/report.bin"))?;
    assert!(got == bytes, "bob holds alice's bytes");
    println!("custom loop: {SIZE} bytes from alice to bob, SHA3-512 verified on both sides");
    Ok(())
}

/// One node and what it holds on this machine.
struct Host {
    node: Node,
    files: FileService,
    dht: DhtClient,
    /// The DHT's answers: it delivers them from whichever thread made them.
    answers: mpsc::Receiver<Input>,
    listeners: Vec<(ListenerId, TcpListener, SocketAddr)>,
    conns: BTreeMap<Token, (Pump, TcpStream)>,
}

impl Host {
    /// Node `index` (alice or bob): an identity from its name, files in `dir/name`, the DHT.
    fn new(index: usize, dir: &Path, store: &DhtStore, waker: &Arc<Waker>) -> io::Result<Host> {
        // Identities from names (see `ferry_tests::identity`); a real node loads its own.
        let (name, now, ip) = (["alice", "bob"][index], Instant::now(), Ipv4Addr::LOCALHOST);
        let account = SEEDS.account(name);
        let device = SEEDS.device(&account, name);
        let config = node_config(now, &account, &device, ip.into(), index as u64);
        let ((answer, answers), waker) = (mpsc::channel(), waker.clone());
        let dht = store.client(move |input| {
            // A send or wake fails only once the loop has ended, when no answer matters.
            let _ = (answer.send(input), waker.wake());
        });
        std::fs::create_dir_all(dir.join(name))?;
        Ok(Host {
            node: Node::new(now, config),
            files: FileService::new(dir.join(name)),
            dht,
            answers,
            listeners: Vec::new(),
            conns: BTreeMap::new(),
        })
    }

    /// An input the node refuses is a driver bug: an example says so loudly.
    fn feed(&mut self, now: Instant, input: Input) {
        self.node.handle_input(now, input).expect("a driver bug");
    }

    /// Carries out everything the node asks for, until it is quiet; returns how many of its
    /// transfers were verified, and whether it asked for anything.
    fn carry_out(&mut self, poll: &Poll) -> io::Result<(usize, bool)> {
        let (mut verified, mut asked) = (0, false);
        while let Some(output) = self.node.poll_output() {
            asked = true;
            let now = Instant::now();
            match output {
                Output::Listen { listener, local } => {
                    let mut socket = TcpListener::from_std(net::listener(local)?);
                    poll.registry()
                        .register(&mut socket, token(), Interest::READABLE)?;
                    let local = socket.local_addr()?;
                    self.listeners.push((listener, socket, local));
                    self.feed(now, Input::Listening { listener, local });
                }
                Output::Connect {
                    conn,
                    remote,
                    local_port,
                    ..
                } => {
                    // ICE-TCP connects from its listening port, so that a NAT maps both alike.
                    let listening = self.listeners.iter().map(|l| l.2);
                    let local = local_port.map(|port| net::local_for(remote, port, listening));
                    match net::start_connect(remote, local) {
                        Ok(s) => self.add(poll, Pump::new(conn, true), TcpStream::from_std(s))?,
                        Err(error) => self.feed(now, Input::ConnectFailed { conn, error }),
                    }
                }
                Output::DhtPut { key, value } => self.dht.put(key, value),
                Output::DhtListen { key } => self.dht.listen(key),
                Output::DhtCancelListen { key } => self.dht.cancel_listen(key),
                Output::File(op) => {
                    let result = self.files.perform(op);
                    self.feed(now, Input::File(result));
                }
                Output::Event(Event::IncomingTransfer { transfer, .. }) => {
                    println!("bob is offered the file: accepting");
                    self.node.accept(now, transfer).expect("accept");
                }
                Output::Event(Event::Verified { .. }) => verified += 1,
                // Send, close, pause, resume: for the connection it names (the others ignore it).
                output => self
                    .conns
                    .values_mut()
                    .for_each(|(pump, _)| pump.handle_output(&output)),
            }
        }
        Ok((verified, asked))
    }

    /// Does what every socket allows now, then hands over the DHT's answers and the time.
    /// Sockets are edge-triggered, so each is tried every round: simpler than remembering
    /// which have new work (a resumed reader, bytes queued), and cheap with a few.
    fn step(&mut self, poll: &Poll, events: &Events) -> io::Result<()> {
        let now = Instant::now();
        for i in 0..self.listeners.len() {
            while let Ok((stream, remote)) = self.listeners[i].1.accept() {
                let (listener, conn) = (self.listeners[i].0, ConnId::Accepted(token().0 as u32));
                self.add(poll, Pump::new(conn, false), stream)?;
                self.feed(
                    now,
                    Input::Accepted {
                        listener,
                        conn,
                        remote,
                    },
                );
            }
        }
        let mut inputs = Vec::new();
        // A socket done with is dropped: closing it takes it out of the poll too.
        self.conns.retain(|token, (pump, stream)| {
            let writable = events
                .iter()
                .any(|e| e.token() == *token && e.is_writable());
            !pump.pump(stream, writable, &mut inputs)
        });
        inputs.extend(self.answers.try_iter());
        for input in inputs {
            self.feed(now, input);
        }
        self.node.handle_timeout(now);
        Ok(())
    }

    fn add(&mut self, poll: &Poll, pump: Pump, mut s: TcpStream) -> io::Result<()> {
        let token = token();
        poll.registry()
            .register(&mut s, token, Interest::READABLE | Interest::WRITABLE)?;
        self.conns.insert(token, (pump, s));
        Ok(())
    }
}

/// A new token, unique across both hosts (and a number for an accepted connection).
fn token() -> Token {
    static SOCKETS: AtomicUsize = AtomicUsize::new(0);
    Token(SOCKETS.fetch_add(1, Ordering::Relaxed))
}
