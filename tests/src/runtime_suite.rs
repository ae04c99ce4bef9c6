//! Scenarios every real runtime driver must pass, written once against [`Runtime`]: real
//! loopback sockets, real temporary files, a real coturn. A runtime's tests instantiate them
//! all with [`runtime_suite!`](crate::runtime_suite!).
//!
//! Waits are generous deadlines for things that happen at once; no test asserts on time.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::time::Duration;

use bytes::Bytes;
use ferry_driver::{Config, DhtStore};
use ferry_proto::io::{
    ConnId, ConnectError, DhtKey, FileError, FileId, FileOp, FileResult, Input, ListenerId, Output,
};
use ferry_proto::transfer::{Digest, SafeName, StreamDigest};
use ferry_proto::turn::{Family, TurnClient, TurnConfig, TurnEvent};

use crate::coturn::{Coturn, PASSWORD, USER};
use crate::driven::{Remote, Runtime};
use crate::probe::{Probe, ProbeEvent};

const WAIT: Duration = Duration::from_secs(5);
const LOOPBACK: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Instantiates every scenario of this module as a `#[test]` for one runtime.
#[macro_export]
macro_rules! runtime_suite {
    ($runtime:ty) => {
        $crate::runtime_suite!(@tests $runtime;
            listen_connect_and_bytes_both_ways,
            connect_from_a_listening_port,
            half_close_each_way_then_closed,
            close_sends_the_queued_bytes_first,
            reset_reaches_the_peer,
            a_stopped_driver_closes_its_connections,
            pause_holds_reads_back_until_resume,
            ipv6_connect_from_a_listening_port,
            unlisten_closes_the_listener,
            connect_refused,
            connect_times_out,
            connect_from_a_port_someone_else_holds,
            the_endpoint_timer_wakes_it,
            dht_values_between_two_drivers,
            dht_signalling_through_a_real_opendht,
            files_through_the_driver,
            turn_allocate_permit_connect_and_deallocate,
            turn_a_peer_connecting_to_the_relay_is_bound,
            transfer_resumes_from_a_partial_file,
        );
    };
    (@tests $runtime:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::runtime_suite::$name::<$runtime>();
            }
        )*
    };
}

/// A probe on runtime `R`, with its own receive folder.
pub fn probe<R: Runtime>(dht: &DhtStore) -> (Remote<Probe>, tempfile::TempDir) {
    let folder = tempfile::tempdir().expect("temp dir");
    let config = Config::new(folder.path()).with_dht(dht);
    (R::spawn(Probe::new(), config), folder)
}

fn ask(p: &Remote<Probe>, output: Output<ProbeEvent>) {
    p.command(move |probe, _| probe.ask(output));
}

/// Waits for an input that `want` picks out of it.
fn wait<T>(p: &mut Remote<Probe>, what: &str, want: impl Fn(&Input) -> Option<T>) -> T {
    let event = p.run_until(
        WAIT,
        |e| matches!(e, ProbeEvent::Input(i) if want(i).is_some()),
    );
    match event {
        Some(ProbeEvent::Input(input)) => want(&input).expect("picked"),
        _ => panic!("no {what} within {WAIT:?}; got {:?}", p.take_events()),
    }
}

fn listen(p: &mut Remote<Probe>, listener: u32, local: SocketAddr) -> SocketAddr {
    let listener = ListenerId(listener);
    ask(p, Output::Listen { listener, local });
    wait(p, "Listening", |i| match i {
        Input::Listening { listener: l, local } if *l == listener => Some(*local),
        _ => None,
    })
}

fn connect(p: &Remote<Probe>, n: u32, remote: SocketAddr, local_port: Option<u16>) -> ConnId {
    let conn = ConnId::Connect(n);
    ask(
        p,
        Output::Connect {
            conn,
            remote,
            local_port,
            timeout: WAIT,
        },
    );
    conn
}

fn connected(p: &mut Remote<Probe>, conn: ConnId) -> SocketAddr {
    wait(p, "Connected", |i| match i {
        Input::Connected { conn: c, local } if *c == conn => Some(*local),
        _ => None,
    })
}

fn accepted(p: &mut Remote<Probe>) -> (ConnId, SocketAddr) {
    wait(p, "Accepted", |i| match i {
        Input::Accepted { conn, remote, .. } => Some((*conn, *remote)),
        _ => None,
    })
}

/// Collects bytes received on `conn` until `len` came.
fn receive(p: &mut Remote<Probe>, conn: ConnId, len: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < len {
        got.extend_from_slice(&wait(p, "bytes", |i| match i {
            Input::Received { conn: c, data } if *c == conn => Some(data.clone()),
            _ => None,
        }));
    }
    got
}

fn send(p: &Remote<Probe>, conn: ConnId, data: &'static [u8]) {
    let data = Bytes::from_static(data);
    ask(p, Output::Send { conn, data });
}

/// Two probes joined by one connection: `(a, its conn, b, its conn)`.
struct Pair {
    a: Remote<Probe>,
    a_conn: ConnId,
    b: Remote<Probe>,
    b_conn: ConnId,
    _folders: [tempfile::TempDir; 2],
}

fn pair<R: Runtime>() -> Pair {
    let dht = DhtStore::new();
    let (mut a, fa) = probe::<R>(&dht);
    let (mut b, fb) = probe::<R>(&dht);
    let addr = listen(&mut a, 1, LOOPBACK);
    let b_conn = connect(&b, 1, addr, None);
    connected(&mut b, b_conn);
    let (a_conn, _) = accepted(&mut a);
    Pair {
        a,
        a_conn,
        b,
        b_conn,
        _folders: [fa, fb],
    }
}

/// Listen, connect, bytes both ways, and `Writable` credit for every byte sent.
pub fn listen_connect_and_bytes_both_ways<R: Runtime>() {
    let dht = DhtStore::new();
    let (mut a, _fa) = probe::<R>(&dht);
    let (mut b, _fb) = probe::<R>(&dht);
    let addr = listen(&mut a, 1, LOOPBACK);
    assert_ne!(addr.port(), 0);
    let b_conn = connect(&b, 7, addr, None);
    let b_local = connected(&mut b, b_conn);
    let (a_conn, remote) = accepted(&mut a);
    assert_eq!(remote, b_local, "{}", R::NAME);
    assert!(matches!(a_conn, ConnId::Accepted(_)));
    send(&b, b_conn, b"hello");
    assert_eq!(receive(&mut a, a_conn, 5), b"hello");
    send(&a, a_conn, b"world!");
    assert_eq!(receive(&mut b, b_conn, 6), b"world!");
    let credit = wait(&mut b, "Writable", |i| match i {
        Input::Writable { conn, bytes } if *conn == b_conn => Some(*bytes),
        _ => None,
    });
    assert_eq!(credit, 5);
}

/// An outbound connection from a port a listener holds (two sockets on one port), and the
/// listener still accepts afterwards.
pub fn connect_from_a_listening_port<R: Runtime>() {
    let dht = DhtStore::new();
    let (mut a, _fa) = probe::<R>(&dht);
    let (mut b, _fb) = probe::<R>(&dht);
    let (mut c, _fc) = probe::<R>(&dht);
    let a_addr = listen(&mut a, 1, LOOPBACK);
    let b_addr = listen(&mut b, 1, LOOPBACK);
    let conn = connect(&a, 1, b_addr, Some(a_addr.port()));
    assert_eq!(
        connected(&mut a, conn),
        a_addr,
        "bound to the listening address"
    );
    let (b_conn, remote) = accepted(&mut b);
    assert_eq!(remote, a_addr, "the peer sees the listening port");
    send(&a, conn, b"same port");
    assert_eq!(receive(&mut b, b_conn, 9), b"same port");
    let c_conn = connect(&c, 1, a_addr, None);
    connected(&mut c, c_conn);
    let (a_conn, _) = accepted(&mut a);
    send(&c, c_conn, b"still listening");
    assert_eq!(receive(&mut a, a_conn, 15), b"still listening");
}

/// The same on IPv6 loopback.
pub fn ipv6_connect_from_a_listening_port<R: Runtime>() {
    let dht = DhtStore::new();
    let (mut a, _fa) = probe::<R>(&dht);
    let (mut b, _fb) = probe::<R>(&dht);
    let v6 = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0));
    let a_addr = listen(&mut a, 1, v6);
    let b_addr = listen(&mut b, 1, v6);
    let conn = connect(&b, 1, a_addr, Some(b_addr.port()));
    assert_eq!(connected(&mut b, conn), b_addr);
    let (a_conn, remote) = accepted(&mut a);
    assert_eq!(remote, b_addr);
    send(&a, a_conn, b"v6");
    assert_eq!(receive(&mut b, conn, 2), b"v6");
}

/// After `Unlisten`, the port is closed: a connect there is refused.
pub fn unlisten_closes_the_listener<R: Runtime>() {
    let (mut p, _f) = probe::<R>(&DhtStore::new());
    let addr = listen(&mut p, 3, LOOPBACK);
    ask(
        &p,
        Output::Unlisten {
            listener: ListenerId(3),
        },
    );
    p.call(|_, _| ());
    let conn = connect(&p, 1, addr, None);
    let error = wait(&mut p, "ConnectFailed", |i| match i {
        Input::ConnectFailed { conn: c, error } if *c == conn => Some(error.clone()),
        _ => None,
    });
    assert_eq!(error, ConnectError::Refused);
}

/// A half-close reaches the peer as `HalfClosed`, the other direction keeps working, and once
/// both sides ended, both hear `Closed`.
pub fn half_close_each_way_then_closed<R: Runtime>() {
    let Pair {
        mut a,
        a_conn,
        mut b,
        b_conn,
        ..
    } = pair::<R>();
    ask(&b, Output::HalfClose { conn: b_conn });
    wait(&mut a, "HalfClosed", |i| {
        (*i == Input::HalfClosed { conn: a_conn }).then_some(())
    });
    send(&a, a_conn, b"after your FIN");
    assert_eq!(receive(&mut b, b_conn, 14), b"after your FIN");
    ask(&a, Output::HalfClose { conn: a_conn });
    wait(&mut b, "Closed", |i| {
        (*i == Input::Closed { conn: b_conn }).then_some(())
    });
    wait(&mut a, "Closed", |i| {
        (*i == Input::Closed { conn: a_conn }).then_some(())
    });
}

/// `Close` right after a large `Send`: every byte arrives before the FIN.
pub fn close_sends_the_queued_bytes_first<R: Runtime>() {
    let Pair {
        a,
        a_conn,
        mut b,
        b_conn,
        ..
    } = pair::<R>();
    let data = Bytes::from(pattern(4 << 20, 9));
    let expected = Digest::of(&data);
    ask(&a, Output::Send { conn: a_conn, data });
    ask(&a, Output::Close { conn: a_conn });
    let mut digest = StreamDigest::new();
    let mut len = 0u64;
    loop {
        let event = b.run_until(WAIT, |e| matches!(e, ProbeEvent::Input(_)));
        match event {
            Some(ProbeEvent::Input(Input::Received { conn, data })) if conn == b_conn => {
                digest.update(len, &data);
                len += data.len() as u64;
            }
            Some(ProbeEvent::Input(Input::HalfClosed { conn })) if conn == b_conn => break,
            other => panic!("unexpected {other:?} after {len} bytes"),
        }
    }
    assert_eq!(len, 4 << 20);
    assert_eq!(digest.finish(), expected);
    drop(a);
}

/// `Reset` aborts the connection: the peer hears `Reset`.
pub fn reset_reaches_the_peer<R: Runtime>() {
    let Pair {
        mut a,
        a_conn,
        b,
        b_conn,
        ..
    } = pair::<R>();
    ask(&b, Output::Reset { conn: b_conn });
    wait(&mut a, "Reset", |i| {
        (*i == Input::Reset { conn: a_conn }).then_some(())
    });
}

/// When every handle of a driver is gone, it closes its connections before it stops: what
/// it had queued arrives, then its FIN.
pub fn a_stopped_driver_closes_its_connections<R: Runtime>() {
    let Pair {
        a,
        a_conn,
        mut b,
        b_conn,
        ..
    } = pair::<R>();
    let data = Bytes::from(pattern(8 << 20, 5));
    let expected = Digest::of(&data);
    ask(&a, Output::Send { conn: a_conn, data });
    drop(a);
    let mut digest = StreamDigest::new();
    let mut len = 0u64;
    loop {
        let event = b.run_until(WAIT, |e| matches!(e, ProbeEvent::Input(_)));
        match event {
            Some(ProbeEvent::Input(Input::Received { conn, data })) if conn == b_conn => {
                digest.update(len, &data);
                len += data.len() as u64;
            }
            Some(ProbeEvent::Input(Input::HalfClosed { conn })) if conn == b_conn => break,
            other => panic!("unexpected {other:?} after {len} bytes"),
        }
    }
    assert_eq!(len, 8 << 20);
    assert_eq!(digest.finish(), expected);
}

/// While paused, nothing is delivered and TCP pushes back on the sender; after a resume,
/// every byte arrives, in order.
pub fn pause_holds_reads_back_until_resume<R: Runtime>() {
    let Pair {
        mut a,
        a_conn,
        mut b,
        b_conn,
        ..
    } = pair::<R>();
    // More than the kernel can buffer (both sockets at their largest) and the reader had
    // read before the pause reached it.
    let total = (kernel_buffer("tcp_rmem") + kernel_buffer("tcp_wmem") + (16 << 20)) >> 20 << 20;
    ask(&b, Output::PauseReading { conn: b_conn });
    // The pause is in force once a later command has run on b's driver.
    b.call(|_, _| ());
    let data = Bytes::from(pattern(total, 3));
    let expected = Digest::of(&data);
    for chunk in 0..total >> 20 {
        let data = data.slice(chunk << 20..(chunk + 1) << 20);
        ask(&a, Output::Send { conn: a_conn, data });
    }
    let nothing = b.run_until(Duration::from_millis(500), |e| {
        matches!(e, ProbeEvent::Input(Input::Received { .. }))
    });
    assert_eq!(nothing, None, "no bytes while paused");
    let credit: usize = a
        .take_events()
        .iter()
        .map(|e| match e {
            ProbeEvent::Input(Input::Writable { bytes, .. }) => *bytes,
            _ => 0,
        })
        .sum();
    assert!(
        credit < total,
        "the sender is held back ({credit} of {total} bytes left)"
    );
    ask(&b, Output::ResumeReading { conn: b_conn });
    let mut digest = StreamDigest::new();
    let mut len = 0;
    while len < total {
        let got = wait(&mut b, "bytes", |i| match i {
            Input::Received { conn, data } if *conn == b_conn => Some(data.clone()),
            _ => None,
        });
        digest.update(len as u64, &got);
        len += got.len();
    }
    assert_eq!(len, total);
    assert_eq!(digest.finish(), expected);
}

/// The largest buffer the kernel gives a TCP socket (`tcp_rmem` or `tcp_wmem`), or 32 MiB
/// where it does not say.
fn kernel_buffer(name: &str) -> usize {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/{name}"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(32 << 20)
}

/// Nobody listens: `ConnectFailed { Refused }`.
pub fn connect_refused<R: Runtime>() {
    let (mut p, _f) = probe::<R>(&DhtStore::new());
    let free = TcpListener::bind(LOOPBACK).expect("bind");
    let addr = free.local_addr().expect("addr");
    drop(free);
    let conn = connect(&p, 1, addr, None);
    let error = wait(&mut p, "ConnectFailed", |i| match i {
        Input::ConnectFailed { conn: c, error } if *c == conn => Some(error.clone()),
        _ => None,
    });
    assert_eq!(error, ConnectError::Refused);
}

/// A listener whose queue is full drops SYNs: the connect times out after the endpoint's
/// timeout, as `ConnectFailed { TimedOut }`.
pub fn connect_times_out<R: Runtime>() {
    let (mut p, _f) = probe::<R>(&DhtStore::new());
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket.bind(&LOOPBACK.into()).expect("bind");
    socket.listen(0).expect("listen");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("addr");
    // Fill the accept queue until a connect hangs.
    let mut fillers = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
        fillers.push(s);
        assert!(
            fillers.len() < 64,
            "the accept queue never fills on this system"
        );
    }
    let conn = ConnId::Connect(1);
    let timeout = Duration::from_millis(300);
    let remote = addr;
    let local_port = None;
    ask(
        &p,
        Output::Connect {
            conn,
            remote,
            local_port,
            timeout,
        },
    );
    let error = wait(&mut p, "ConnectFailed", |i| match i {
        Input::ConnectFailed { conn: c, error } if *c == conn => Some(error.clone()),
        _ => None,
    });
    assert_eq!(error, ConnectError::TimedOut);
}

/// A local port held by a socket that did not ask for port reuse cannot be shared:
/// `ConnectFailed { LocalPortUnavailable }`.
pub fn connect_from_a_port_someone_else_holds<R: Runtime>() {
    let (mut p, _f) = probe::<R>(&DhtStore::new());
    let (mut q, _g) = probe::<R>(&DhtStore::new());
    let remote = listen(&mut q, 1, LOOPBACK);
    let held = TcpListener::bind(LOOPBACK).expect("bind");
    let port = held.local_addr().expect("addr").port();
    let conn = connect(&p, 1, remote, Some(port));
    let error = wait(&mut p, "ConnectFailed", |i| match i {
        Input::ConnectFailed { conn: c, error } if *c == conn => Some(error.clone()),
        _ => None,
    });
    assert_eq!(error, ConnectError::LocalPortUnavailable);
}

/// The endpoint's deadline is honoured.
pub fn the_endpoint_timer_wakes_it<R: Runtime>() {
    let (mut p, _f) = probe::<R>(&DhtStore::new());
    p.command(|probe, now| probe.wake_at(now + Duration::from_millis(20)));
    assert_eq!(
        p.run_until(WAIT, |e| *e == ProbeEvent::Woke),
        Some(ProbeEvent::Woke)
    );
}

/// Two drivers on one embedded DHT: a put reaches the other's listen.
pub fn dht_values_between_two_drivers<R: Runtime>() {
    let dht = DhtStore::new();
    let (mut a, _fa) = probe::<R>(&dht);
    let (mut b, _fb) = probe::<R>(&dht);
    let key = DhtKey([42; 20]);
    ask(&a, Output::DhtListen { key });
    a.call(|_, _| ());
    let value = Bytes::from_static(b"connection request");
    ask(
        &b,
        Output::DhtPut {
            key,
            value: value.clone(),
        },
    );
    wait(&mut b, "DhtPutDone", |i| {
        (*i == Input::DhtPutDone { key, ok: true }).then_some(())
    });
    let got = wait(&mut a, "DhtValue", |i| match i {
        Input::DhtValue { value, .. } => Some(value.clone()),
        _ => None,
    });
    assert_eq!(got, value);
}

/// Two drivers on a real OpenDHT (two `dhtnode`s, through the first one's HTTP proxy, in a
/// network namespace of this test's own): a value put before a listen and one put after it
/// both reach the listener, each once.
pub fn dht_signalling_through_a_real_opendht<R: Runtime>() {
    use crate::dhtnode::{DhtNodes, in_network_namespace};
    if !in_network_namespace("dht_signalling_through_a_real_opendht") {
        return;
    }
    let nodes = DhtNodes::start();
    let spawn = || {
        let folder = tempfile::tempdir().expect("temp dir");
        let config = Config::new(folder.path()).with_opendht(nodes.proxy);
        (R::spawn(Probe::new(), config), folder)
    };
    let (mut a, _fa) = spawn();
    let (mut b, _fb) = spawn();
    let key = DhtKey(*b"ferry-opendht-test!!");
    let put = |p: &mut Remote<Probe>, value: &'static [u8]| {
        // The second node may not have joined yet: a put fails until it has.
        for _ in 0..50 {
            let value = Bytes::from_static(value);
            ask(p, Output::DhtPut { key, value });
            let ok = wait(p, "DhtPutDone", |i| match i {
                Input::DhtPutDone { ok, .. } => Some(*ok),
                _ => None,
            });
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("OpenDHT never stored the value");
    };
    put(&mut b, b"stored before the listen");
    ask(&a, Output::DhtListen { key });
    let value = |p: &mut Remote<Probe>| {
        wait(p, "DhtValue", |i| match i {
            Input::DhtValue { value, .. } => Some(value.clone()),
            _ => None,
        })
    };
    assert_eq!(value(&mut a), &b"stored before the listen"[..]);
    put(&mut b, b"stored after the listen");
    // A put the proxy answered with `{"err":"Put failed"}` (the second node had not joined
    // yet) may still have been stored by the first node, under an id of its own: the retry
    // then stores the same bytes a second time, as a second value, which the listener rightly
    // gets too. Only a value id seen twice would be a repeat.
    let mut next = value(&mut a);
    while next == b"stored before the listen"[..] {
        next = value(&mut a);
    }
    assert_eq!(next, &b"stored after the listen"[..]);
    let again = a.run_until(Duration::from_millis(300), |e| {
        matches!(e, ProbeEvent::Input(Input::DhtValue { value, .. }) if value[..] == b"stored after the listen"[..])
    });
    assert_eq!(again, None, "each value once");
}

fn file_result(p: &mut Remote<Probe>, file: FileId) -> FileResult {
    wait(p, "a file result", |i| match i {
        Input::File(r) if r.file() == file => Some(r.clone()),
        _ => None,
    })
}

/// File operations go through the driver's file thread and come back in order.
pub fn files_through_the_driver<R: Runtime>() {
    let (mut p, folder) = probe::<R>(&DhtStore::new());
    let file = FileId(1);
    let source = folder.path().join("missing").to_string_lossy().into_owned();
    ask(&p, Output::File(FileOp::OpenSource { file, source }));
    assert_eq!(
        file_result(&mut p, file),
        FileResult::Failed {
            file,
            error: FileError::NotFound
        }
    );
    let file = FileId(2);
    let name = SafeName::from_display_name("notes.txt").expect("safe");
    let data = Bytes::from_static(b"ferry notes");
    for op in [
        FileOp::OpenPartial {
            file,
            name,
            size: 11,
            key: ferry_proto::transfer::PartialKey {
                sender: None,
                transfer: ferry_proto::transfer::TransferId(2),
            },
            resume: true,
            place: None,
        },
        FileOp::Write {
            file,
            offset: 0,
            data: data.clone(),
        },
        FileOp::Digest { file, len: 11 },
        FileOp::Commit { file },
    ] {
        ask(&p, Output::File(op));
    }
    assert_eq!(
        file_result(&mut p, file),
        FileResult::Opened { file, len: 0 }
    );
    assert_eq!(
        file_result(&mut p, file),
        FileResult::Written {
            file,
            offset: 0,
            len: 11
        }
    );
    let digest = Digest::of(&data);
    assert_eq!(
        file_result(&mut p, file),
        FileResult::Digest { file, digest }
    );
    assert_eq!(
        file_result(&mut p, file),
        FileResult::Committed {
            file,
            name: "notes.txt".into()
        }
    );
    let on_disk = std::fs::read(folder.path().join("notes.txt")).expect("committed");
    assert_eq!(on_disk, data);
}

/// The TURN client on this runtime against a real coturn: allocate, permit a loopback peer,
/// connect to it with bytes both ways, deallocate.
pub fn turn_allocate_permit_connect_and_deallocate<R: Runtime>() {
    use std::io::{Read as _, Write as _};
    let Some(server) = Coturn::start(&[]) else {
        return;
    };
    let listener = TcpListener::bind(LOOPBACK).expect("bind");
    let peer_addr = listener.local_addr().expect("addr");
    let peer_thread = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("the relay connects to the peer");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).expect("ping");
        s.write_all(b"pong").expect("pong");
        let _ = s.read(&mut buf); // Hold the connection until the client is done.
        buf
    });
    let folder = tempfile::tempdir().expect("temp dir");
    let mut config = TurnConfig::new(server.v4(), USER, PASSWORD);
    config.family = Family::V4;
    let mut turn = R::spawn(TurnClient::new(config, 0x5eed), Config::new(folder.path()));
    let allocated = turn.run_until(WAIT, |e| {
        matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
    });
    let Some(TurnEvent::Allocated { relayed, .. }) = allocated else {
        panic!("no allocation on {}: {allocated:?}", R::NAME);
    };
    assert_eq!(relayed.ip(), IpAddr::from([127, 0, 0, 1]));
    turn.command(move |c, now| c.permit(now, [peer_addr.ip()]));
    let permitted = turn.run_until(WAIT, |e| {
        matches!(
            e,
            TurnEvent::Permitted { .. } | TurnEvent::PermissionFailed { .. }
        )
    });
    assert_eq!(
        permitted,
        Some(TurnEvent::Permitted {
            ips: vec![peer_addr.ip()]
        })
    );
    turn.command(move |c, now| c.connect_peer(now, peer_addr));
    let stream = turn.run_until(WAIT, |e| {
        matches!(
            e,
            TurnEvent::PeerStream { .. } | TurnEvent::PeerConnectFailed { .. }
        )
    });
    let Some(TurnEvent::PeerStream {
        conn,
        peer,
        incoming,
    }) = stream
    else {
        panic!("no peer stream: {stream:?}");
    };
    assert_eq!((peer, incoming), (peer_addr, false));
    turn.command(move |c, _| c.send(conn, Bytes::from_static(b"ping")).expect("bound"));
    let mut got = Vec::new();
    while got.len() < 4 {
        match turn.run_until(
            WAIT,
            |e| matches!(e, TurnEvent::PeerData { conn: c, .. } if *c == conn),
        ) {
            Some(TurnEvent::PeerData { data, .. }) => got.extend_from_slice(&data),
            other => panic!("no data from the peer: {other:?}"),
        }
    }
    assert_eq!(got, b"pong");
    turn.command(|c, now| c.deallocate(now));
    let end = turn.run_until(WAIT, |e| {
        matches!(e, TurnEvent::Deallocated | TurnEvent::Failed { .. })
    });
    assert_eq!(end, Some(TurnEvent::Deallocated));
    assert!(turn.call(|c, _| c.is_done()));
    // The deallocation closed the relay's connection to the peer, which ends its thread.
    assert_eq!(&peer_thread.join().expect("peer thread"), b"ping");
}

/// The other direction through a real coturn on this runtime: a peer connects to the relayed
/// address, the client hears ConnectionAttempt, opens a data connection and binds it, and
/// bytes go both ways.
pub fn turn_a_peer_connecting_to_the_relay_is_bound<R: Runtime>() {
    use std::io::{Read as _, Write as _};
    let Some(server) = Coturn::start(&[]) else {
        return;
    };
    let folder = tempfile::tempdir().expect("temp dir");
    let mut config = TurnConfig::new(server.v4(), USER, PASSWORD);
    config.family = Family::V4;
    let mut turn = R::spawn(TurnClient::new(config, 0x5eed), Config::new(folder.path()));
    let allocated = turn.run_until(WAIT, |e| {
        matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed { .. })
    });
    let Some(TurnEvent::Allocated { relayed, .. }) = allocated else {
        panic!("no allocation on {}: {allocated:?}", R::NAME);
    };
    let loopback = IpAddr::from([127, 0, 0, 1]);
    turn.command(move |c, now| c.permit(now, [loopback]));
    let permitted = turn.run_until(WAIT, |e| {
        matches!(
            e,
            TurnEvent::Permitted { .. } | TurnEvent::PermissionFailed { .. }
        )
    });
    assert_eq!(
        permitted,
        Some(TurnEvent::Permitted {
            ips: vec![loopback]
        })
    );
    let peer = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(relayed).expect("connect to the relay");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        s.write_all(b"hello relay").expect("write");
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("answer");
        buf
    });
    let stream = turn.run_until(WAIT, |e| matches!(e, TurnEvent::PeerStream { .. }));
    let Some(TurnEvent::PeerStream { conn, incoming, .. }) = stream else {
        panic!("no peer stream: {stream:?}");
    };
    assert!(incoming);
    let mut got = Vec::new();
    while got.len() < 11 {
        match turn.run_until(
            WAIT,
            |e| matches!(e, TurnEvent::PeerData { conn: c, .. } if *c == conn),
        ) {
            Some(TurnEvent::PeerData { data, .. }) => got.extend_from_slice(&data),
            other => panic!("no data from the peer: {other:?}"),
        }
    }
    assert_eq!(got, b"hello relay");
    turn.command(move |c, _| c.send(conn, Bytes::from_static(b"howdy")).expect("bound"));
    assert_eq!(&peer.join().expect("peer thread"), b"howdy");
}

/// `len` bytes that differ from chunk to chunk, cheap to make.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let block: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut n = 0u8;
    while out.len() < len {
        let take = (len - out.len()).min(block.len());
        out.extend(block[..take].iter().map(|b| b ^ n ^ seed));
        n = n.wrapping_add(1);
    }
    out
}

/// The process's resident memory and its peak since the last reset, in bytes (Linux).
fn memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak the kernel keeps (Linux: `5` in `clear_refs`).
fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A file of `size` bytes (made of [`pattern`] chunks) at `path`; its digest.
/// The SHA3-512 of the file at `path`, read from disk.
fn file_digest(path: &std::path::Path) -> Digest {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).expect("the received file");
    let (mut digest, mut at, mut buf) = (StreamDigest::new(), 0u64, vec![0; 1 << 20]);
    loop {
        let n = file.read(&mut buf).expect("read");
        if n == 0 {
            return digest.finish();
        }
        digest.update(at, &buf[..n]);
        at += n as u64;
    }
}

fn make_file(path: &std::path::Path, size: usize) -> Digest {
    use std::io::Write as _;
    const CHUNK: usize = 1 << 20;
    let mut digest = StreamDigest::new();
    let mut file = std::fs::File::create(path).expect("create");
    for i in 0..size.div_ceil(CHUNK) {
        let chunk = pattern(CHUNK.min(size - i * CHUNK), i as u8);
        digest.update((i * CHUNK) as u64, &chunk);
        file.write_all(&chunk).expect("write");
    }
    digest.finish()
}

/// Sends `source` as "big.bin" to a receiver whose folder is `receiving`, on two drivers of
/// runtime `R`; the receiver accepts. `sending` is called once the receiver listens, before
/// the sender starts. Checks that both sides verified `expected` and that the file has its
/// final name and nothing else is left; returns the sender's events.
fn transfer<R: Runtime>(
    source: &std::path::Path,
    receiving: &std::path::Path,
    expected: Digest,
    sending: impl FnOnce(),
) -> Vec<crate::stream_transfer::StreamEvent> {
    use crate::stream_transfer::{StreamEvent, StreamTransfer};
    use ferry_proto::io::Event;

    let size = std::fs::metadata(source).expect("source").len();
    let sender_folder = tempfile::tempdir().expect("temp dir");
    let mut bob = R::spawn(StreamTransfer::receiver(LOOPBACK), Config::new(receiving));
    let Some(StreamEvent::Listening(addr)) =
        bob.run_until(WAIT, |e| matches!(e, StreamEvent::Listening(_)))
    else {
        panic!("the receiver does not listen");
    };
    sending();
    let source = source.to_string_lossy().into_owned();
    let mut alice = R::spawn(
        StreamTransfer::sender(addr, source, "big.bin"),
        Config::new(sender_folder.path()),
    );
    let offer = bob.run_until(WAIT, |e| {
        matches!(e, StreamEvent::Transfer(Event::IncomingTransfer { .. }))
    });
    assert!(
        matches!(offer, Some(StreamEvent::Transfer(Event::IncomingTransfer { size: s, .. })) if s == size),
        "{offer:?}"
    );
    bob.command(|t, now| t.accept(now).expect("an offer to accept"));
    let verified = |e: &StreamEvent| matches!(e, StreamEvent::Transfer(Event::Verified { .. }));
    let long = Duration::from_secs(120);
    let Some(StreamEvent::Transfer(Event::Verified { digest, name, .. })) =
        bob.run_until(long, verified)
    else {
        panic!(
            "the receiver did not verify the file: {:?}",
            bob.take_events().last()
        );
    };
    assert_eq!((digest, name.as_str()), (expected, "big.bin"));
    let sender_side = alice.run_until(long, verified);
    assert!(
        matches!(sender_side, Some(StreamEvent::Transfer(Event::Verified { digest, .. })) if digest == expected),
        "{sender_side:?}"
    );
    let received = receiving.join("big.bin");
    assert_eq!(
        std::fs::metadata(&received).expect("final file").len(),
        size
    );
    // The bytes on disk, read back here, not only the digest the driver computed.
    assert_eq!(file_digest(&received), expected, "the bytes on disk differ");
    let names = |dir: &std::path::Path| -> Vec<_> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        names.sort();
        names
    };
    let private = ferry_driver::receive_folder::PRIVATE_FOLDER;
    assert_eq!(
        names(receiving),
        [private, "big.bin"].map(std::ffi::OsString::from)
    );
    assert!(
        names(&receiving.join(private)).is_empty(),
        "no partial file left"
    );
    alice.take_events()
}

/// `Outgoing` to `Incoming` through
/// [`StreamTransfer`](crate::stream_transfer::StreamTransfer): a real 64 MiB file over a real
/// loopback connection, between two drivers of runtime `R`. The received file has the same
/// SHA3-512 and its final name, and the process's peak memory grows by far less than the
/// file (run it alone in its test binary, so other tests do not add to the peak).
pub fn transfer_a_64_mib_file<R: Runtime>() {
    const SIZE: usize = 64 << 20;
    let sending = tempfile::tempdir().expect("temp dir");
    let receiving = tempfile::tempdir().expect("temp dir");
    let source = sending.path().join("big.bin");
    let expected = make_file(&source, SIZE);
    let mut baseline = None;
    let mut measured = false;
    transfer::<R>(&source, receiving.path(), expected, || {
        baseline = memory();
        measured = reset_peak_memory();
    });
    let after = memory();
    if !measured || baseline.is_none() || after.is_none() {
        crate::rerun::skip(
            "the peak memory cannot be measured here (/proc/self/clear_refs, status)",
        );
    }
    if let (true, Some((rss, _)), Some((_, peak))) = (measured, baseline, after) {
        let growth = peak.saturating_sub(rss);
        eprintln!(
            "{}: 64 MiB transferred; peak resident memory grew by {} KiB",
            R::NAME,
            growth >> 10
        );
        assert!(
            growth < (SIZE as u64) / 2,
            "peak memory grew by {} MiB for a {} MiB file",
            growth >> 20,
            SIZE >> 20
        );
    }
}

/// A receiver that holds the first part of the file in its partial file gets only the rest
/// (`GO <offset>`): the sender's first progress is past that part, and both digests, each
/// computed beside the file I/O with the held part hashed from disk once, match.
pub fn transfer_resumes_from_a_partial_file<R: Runtime>() {
    use crate::stream_transfer::StreamEvent;
    use ferry_proto::io::Event;

    const SIZE: usize = (4 << 20) + 12_345;
    const HELD: usize = (3 << 19) + 7;
    let sending = tempfile::tempdir().expect("temp dir");
    let receiving = tempfile::tempdir().expect("temp dir");
    let source = sending.path().join("big.bin");
    let expected = make_file(&source, SIZE);
    let held = std::fs::read(&source).expect("source")[..HELD].to_vec();
    // The stream's receiver keeps transfer 1 from a sender it does not know.
    let key = ferry_proto::transfer::PartialKey {
        sender: None,
        transfer: ferry_proto::transfer::TransferId(1),
    };
    let partial = ferry_driver::FileService::new(receiving.path()).partial_path(&key);
    // The private folder, as Ferry makes it (mode 0700).
    let private = partial.parent().expect("private folder");
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(private)
        .expect("private folder");
    std::fs::write(partial, held).expect("partial");
    let events = transfer::<R>(&source, receiving.path(), expected, || {});
    let first_progress = events.iter().find_map(|e| match e {
        StreamEvent::Transfer(Event::Progress { done, .. }) => Some(*done),
        _ => None,
    });
    assert!(
        first_progress.is_some_and(|done| done > HELD as u64),
        "the sender started past the held part: {first_progress:?}"
    );
}
