//! Two Ferry nodes in a hand-written event loop: no async runtime, only `mio` (epoll),
//! non-blocking sockets, the embedded DHT and synchronous file I/O. Alice sends a file to
//! Bob over loopback; Bob accepts; both see it verified. `cargo run -p ferry-tests --example
//! custom_loop`.
//!
//! The contract is the same for every Ferry state machine: feed an input, drain every output,
//! then sleep until the earliest `poll_timeout` or the next socket event. The rest is carrying
//! out outputs on sockets and files.
#![allow(clippy::print_stdout)] // Printing is what this example is for.

use std::collections::{BTreeMap, VecDeque};
use std::io::{ErrorKind, Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_driver::{DhtStore, FileService, dht::DhtClient, net};
use ferry_proto::io::{ConnId, Endpoint as _, Event, Input, ListenerId, Output};
use ferry_proto::node::{Node, NodeConfig};
use ferry_proto::tls::{Account, AccountId, UnixAnchor, Validity, derive_seed};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const SIZE: usize = 4 << 20;
type Inbox = Arc<Mutex<VecDeque<(usize, Input)>>>;

/// One node and what it holds on this machine; its sockets' tokens are `node << 32 | n`.
struct Host {
    node: Node,
    files: FileService,
    dht: DhtClient,
    listeners: BTreeMap<usize, (ListenerId, TcpListener)>,
    conns: BTreeMap<usize, Conn>,
    next: usize,
}

/// A connection: bytes waiting for the socket; `fin`: our FIN is due after them (HalfClose or
/// Close); `forgotten`: the node let go of it (Close), so nothing more is reported.
struct Conn {
    id: ConnId,
    stream: TcpStream,
    connecting: bool,
    queue: VecDeque<u8>,
    reading: bool,
    fin: bool,
    forgotten: bool,
}

fn main() -> std::io::Result<()> {
    let (mut poll, store, inbox) = (Poll::new()?, DhtStore::new(), Inbox::default());
    let dir = tempfile::tempdir()?;
    let source = dir.path().join("report.bin");
    std::fs::write(
        &source,
        (0..SIZE).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )?;
    let (alice, _) = host(0, "alice", dir.path(), &store, &inbox)?;
    let (bob, bob_account) = host(1, "bob", dir.path(), &store, &inbox)?;
    let mut hosts = [alice, bob];
    let (now, name) = (Instant::now(), "report.bin".to_owned());
    hosts[0]
        .node
        .send_file(now, bob_account, source.display().to_string(), name);
    let (mut verified, mut events) = (0, Events::with_capacity(64));
    while verified < 2 {
        for (h, host) in hosts.iter_mut().enumerate() {
            carry_out(&mut poll, host, h, &mut verified)?;
        }
        let wake = hosts.iter().filter_map(|h| h.node.poll_timeout()).min();
        let idle = wake.map(|at| at.saturating_duration_since(Instant::now()));
        poll.poll(&mut events, Some(idle.unwrap_or(Duration::from_secs(1))))?;
        let now = Instant::now();
        for ready in &events {
            let Token(key) = ready.token();
            io(&mut poll, &mut hosts[key >> 32], key, ready.is_writable())?;
        }
        while let Some((h, input)) = inbox.lock().expect("inbox").pop_front() {
            feed(&mut hosts[h], now, input);
        }
        for host in &mut hosts {
            host.node.handle_timeout(now);
            // Sockets are edge-triggered: a resumed reader or a new queue is tried each round.
            for key in host.conns.keys().copied().collect::<Vec<_>>() {
                io(&mut poll, host, key, false)?;
            }
        }
    }
    let (sent, got) = (
        std::fs::read(&source)?,
        std::fs::read(dir.path().join("bob/report.bin"))?,
    );
    assert!(sent == got, "bob holds alice's bytes");
    println!("custom loop: {SIZE} bytes from alice to bob, SHA3-512 verified on both sides");
    Ok(())
}

/// Node `i`, with an identity from its name, files in `dir/name` and the shared DHT.
fn host(
    i: usize,
    name: &str,
    dir: &std::path::Path,
    store: &DhtStore,
    inbox: &Inbox,
) -> std::io::Result<(Host, AccountId)> {
    let (validity, now) = (Validity::days_from(1_795_651_200, 365), Instant::now());
    let account = Account::from_seed(&derive_seed(b"loop", name), validity).expect("account");
    let device = account
        .add_device(&derive_seed(b"loop-device", name), validity)
        .expect("device");
    let announcement = account.announce(&device).expect("announce");
    let anchor = UnixAnchor {
        instant: now,
        unix: Duration::from_secs(1_795_700_000),
    };
    let ips = vec!["127.0.0.1".parse().expect("ip")];
    let config = NodeConfig::new(device, announcement, ips, i as u64, anchor);
    std::fs::create_dir_all(dir.join(name))?;
    let inbox = inbox.clone();
    let dht = store.client(move |input| inbox.lock().expect("inbox").push_back((i, input)));
    let (listeners, conns) = (BTreeMap::new(), BTreeMap::new());
    let files = FileService::new(dir.join(name));
    Ok((
        Host {
            node: Node::new(now, config),
            files,
            dht,
            listeners,
            conns,
            next: 0,
        },
        account.id(),
    ))
}

/// An input the node refuses is a driver bug: an example says so loudly.
fn feed(host: &mut Host, now: Instant, input: Input) {
    host.node
        .handle_input(now, input)
        .expect("the node takes what its driver reports");
}

/// Carries out everything the node asked for, until it is quiet.
fn carry_out(
    poll: &mut Poll,
    host: &mut Host,
    h: usize,
    verified: &mut usize,
) -> std::io::Result<()> {
    while let Some(output) = host.node.poll_output() {
        let now = Instant::now();
        host.next += 1;
        let key = h << 32 | host.next;
        match output {
            Output::Listen { listener, local } => {
                let mut socket = TcpListener::from_std(net::listener(local)?);
                poll.registry()
                    .register(&mut socket, Token(key), Interest::READABLE)?;
                let local = socket.local_addr()?;
                host.listeners.insert(key, (listener, socket));
                feed(host, now, Input::Listening { listener, local });
            }
            Output::Connect {
                conn,
                remote,
                local_port,
                ..
            } => {
                // ICE-TCP connects from the listening port, so a NAT maps both alike.
                let listening = host
                    .listeners
                    .values()
                    .filter_map(|(_, l)| l.local_addr().ok());
                let local = local_port.map(|port| net::local_for(remote, port, listening));
                match net::start_connect(remote, local) {
                    Ok(socket) => add(poll, host, key, conn, TcpStream::from_std(socket), true)?,
                    Err(error) => feed(host, now, Input::ConnectFailed { conn, error }),
                }
            }
            Output::Send { conn, data } => with(host, conn, |c| c.queue.extend(&data[..])),
            Output::HalfClose { conn } => with(host, conn, |c| c.fin = true),
            Output::Close { conn } | Output::Reset { conn } => with(host, conn, |c| {
                (c.fin, c.forgotten, c.reading) = (true, true, false)
            }),
            Output::PauseReading { conn } => with(host, conn, |c| c.reading = false),
            Output::ResumeReading { conn } => with(host, conn, |c| c.reading = true),
            Output::DhtPut { key, value } => host.dht.put(key, value),
            Output::DhtListen { key } => host.dht.listen(key),
            Output::DhtCancelListen { key } => host.dht.cancel_listen(key),
            Output::File(op) => {
                let result = host.files.perform(op);
                feed(host, now, Input::File(result));
            }
            Output::Event(Event::IncomingTransfer {
                transfer,
                name,
                size,
                ..
            }) => {
                println!("bob is offered {name} ({size} bytes): accepting");
                host.node.accept(now, transfer).expect("accept");
            }
            Output::Event(Event::Verified { .. }) => *verified += 1,
            _ => {}
        }
    }
    Ok(())
}

fn add(
    poll: &mut Poll,
    host: &mut Host,
    key: usize,
    id: ConnId,
    mut stream: TcpStream,
    connecting: bool,
) -> std::io::Result<()> {
    poll.registry().register(
        &mut stream,
        Token(key),
        Interest::READABLE | Interest::WRITABLE,
    )?;
    let (queue, reading, fin, forgotten) = (VecDeque::new(), true, false, false);
    host.conns.insert(
        key,
        Conn {
            id,
            stream,
            connecting,
            queue,
            reading,
            fin,
            forgotten,
        },
    );
    Ok(())
}

fn with(host: &mut Host, conn: ConnId, f: impl FnOnce(&mut Conn)) {
    if let Some(c) = host.conns.values_mut().find(|c| c.id == conn) {
        f(c);
    }
}

/// Does what socket `key` allows now (accept, finish a connect, write, FIN, read); reports it.
fn io(poll: &mut Poll, host: &mut Host, key: usize, writable: bool) -> std::io::Result<()> {
    let now = Instant::now();
    if let Some((listener, socket)) = host.listeners.get(&key) {
        let (listener, mut accepted) = (*listener, Vec::new());
        while let Ok(pair) = socket.accept() {
            accepted.push(pair);
        }
        for (stream, remote) in accepted {
            host.next += 1;
            let (k, conn) = (
                key & !0xffff_ffff | host.next,
                ConnId::Accepted(host.next as u32),
            );
            add(poll, host, k, conn, stream, false)?;
            feed(
                host,
                now,
                Input::Accepted {
                    listener,
                    conn,
                    remote,
                },
            );
        }
        return Ok(());
    }
    let Some(c) = host.conns.get_mut(&key) else {
        return Ok(());
    };
    let (conn, forgotten, mut inputs, mut gone) = (c.id, c.forgotten, Vec::new(), false);
    if c.connecting {
        if !writable {
            return Ok(());
        }
        c.connecting = false;
        match net::finish_connect(socket2::SockRef::from(&c.stream)) {
            Ok(local) => inputs.push(Input::Connected { conn, local }),
            Err(error) => (inputs, gone) = (vec![Input::ConnectFailed { conn, error }], true),
        }
    }
    while !gone && !c.queue.is_empty() {
        match c.stream.write(c.queue.as_slices().0) {
            Ok(n) => inputs.push(Input::Writable {
                conn,
                bytes: c.queue.drain(..n).len(),
            }),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => (inputs, gone) = (vec![Input::Reset { conn }], true),
        }
    }
    if !gone && c.fin && c.queue.is_empty() {
        let _ = c.stream.shutdown(std::net::Shutdown::Write);
        (c.fin, gone) = (false, c.forgotten);
    }
    let mut buf = [0; 64 * 1024];
    while !gone && c.reading {
        match c.stream.read(&mut buf) {
            Ok(0) => {
                (c.reading, inputs) = (false, [inputs, vec![Input::HalfClosed { conn }]].concat())
            }
            Ok(n) => inputs.push(Input::Received {
                conn,
                data: buf[..n].to_vec().into(),
            }),
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(_) => (inputs, gone) = ([inputs, vec![Input::Reset { conn }]].concat(), true),
        }
    }
    if let Some(mut c) = gone.then(|| host.conns.remove(&key)).flatten() {
        poll.registry().deregister(&mut c.stream)?;
    }
    for input in inputs.into_iter().filter(|_| !forgotten) {
        feed(host, now, input);
    }
    Ok(())
}
