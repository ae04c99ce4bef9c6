//! Ferry's native OpenDHT messages against Debian's real `dhtnode` 2.4.12, over UDP in a
//! network namespace of the test's own (`unshare -n`: `dhtnode` binds every interface).
//!
//! The test sends our ping, find, get, put (inline and in value parts) and listen to a
//! network of two `dhtnode`s, decodes every reply, answers what `dhtnode` asks of us once
//! we are in its table (and decodes those requests too), and checks through `dhtnode`'s
//! own command line that it stored what we put. Under `FERRY_REQUIRE_INTEROP=1` a missing
//! `dhtnode` fails the test.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_proto::opendht::InfoHash;
use ferry_proto::opendht::message::{Encoder, Kind, Message, NodesValues, Tid, Want};
use ferry_proto::opendht::parts::{Outcome, Reassembly};
use ferry_proto::opendht::value::Value;
use ferry_tests::dhtnode::in_network_namespace;

/// A bound on failures only: generous for a starved, loaded 2-core machine.
const PATIENCE: Duration = Duration::from_secs(60);

/// One `dhtnode` with its command line on a pipe; killed when dropped.
struct DhtNodeCli {
    child: Child,
    stdin: ChildStdin,
    out: Arc<Mutex<String>>,
}

impl DhtNodeCli {
    fn start(args: &[&str]) -> DhtNodeCli {
        DhtNodeCli::start_in(None, args)
    }

    /// Starts it in the named network namespace `ns` (`ip netns exec`), or in this one.
    fn start_in(ns: Option<&str>, args: &[&str]) -> DhtNodeCli {
        let mut command = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "/usr/bin/dhtnode"]);
                c
            }
            None => Command::new("/usr/bin/dhtnode"),
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dhtnode starts");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let out = Arc::new(Mutex::new(String::new()));
        let sink = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().expect("lock");
                s.push_str(&line);
                s.push('\n');
            }
        });
        DhtNodeCli { child, stdin, out }
    }

    fn command(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("dhtnode reads its command");
        self.stdin.flush().expect("flush");
    }

    /// Waits until its output after `from` contains `what`; returns that output.
    fn wait_for(&self, from: usize, what: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let out = self.out.lock().expect("lock").clone();
            if out.get(from..).is_some_and(|s| s.contains(what)) {
                return out[from..].to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "dhtnode never printed {what:?}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn output_len(&self) -> usize {
        self.out.lock().expect("lock").len()
    }
}

impl Drop for DhtNodeCli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Our side: a UDP socket, our encoder, what `dhtnode` asked of us, and the values being
/// reassembled from parts.
struct Ferry {
    socket: UdpSocket,
    enc: Encoder,
    next_tid: Tid,
    asked: Vec<(Kind, Vec<u8>)>,
    parts: Reassembly,
    stored: Vec<(InfoHash, Value)>,
}

const TOKEN: &[u8] = b"ferry-write-token";

impl Ferry {
    fn new() -> Ferry {
        let socket = UdpSocket::bind("127.0.0.1:4300").expect("bind");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let mut id = [0u8; 20];
        id[..6].copy_from_slice(b"ferry!");
        Ferry {
            socket,
            enc: Encoder {
                id: InfoHash(id),
                network: 0,
            },
            next_tid: 1000,
            asked: Vec::new(),
            parts: Reassembly::new(),
            stored: Vec::new(),
        }
    }

    fn tid(&mut self) -> Tid {
        self.next_tid += 1;
        self.next_tid
    }

    /// Answers a request of `dhtnode`'s as a node of the network would.
    fn answer(&mut self, m: &Message, raw: &[u8], from: SocketAddr) {
        let kind = m.kind.expect("a kind");
        if !self.asked.iter().any(|(k, _)| *k == kind) {
            self.asked.push((kind, raw.to_vec()));
        }
        let reply = match kind {
            Kind::Ping | Kind::Listen => self.enc.pong(m.tid, from),
            Kind::FindNode | Kind::GetValues => {
                let values: Vec<&[u8]> = self
                    .stored
                    .iter()
                    .filter(|(k, _)| Some(*k) == m.info_hash)
                    .map(|(_, v)| v.packed.as_slice())
                    .collect();
                let packets = self.enc.nodes_values(NodesValues {
                    tid: m.tid,
                    to: from,
                    nodes4: &[],
                    nodes6: &[],
                    token: TOKEN,
                    values: &values,
                });
                for p in std::iter::once(&packets.message).chain(&packets.parts) {
                    self.socket.send_to(p, from).expect("send");
                }
                return;
            }
            Kind::AnnounceValue => {
                for v in &m.values {
                    if let Some(h) = m.info_hash {
                        self.stored.push((h, v.clone()));
                    }
                    let r = self.enc.value_announced(m.tid, v.id, from);
                    self.socket.send_to(&r, from).expect("send");
                }
                return;
            }
            _ => return,
        };
        self.socket.send_to(&reply, from).expect("send");
    }

    /// Receives until the reply (or error) of transaction `tid` is complete, answering
    /// `dhtnode`'s own requests meanwhile. Returns the reply and its raw first datagram.
    fn until_reply(&mut self, tid: Tid) -> (Message, Vec<u8>, Vec<Vec<u8>>) {
        let deadline = Instant::now() + PATIENCE;
        let mut head = Vec::new();
        let mut parts = Vec::new();
        let mut buf = [0u8; 2048];
        loop {
            assert!(Instant::now() < deadline, "no reply to transaction {tid}");
            let Ok((n, from)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let raw = &buf[..n];
            let m = Message::decode(raw).unwrap_or_else(|e| {
                panic!(
                    "dhtnode sent what we cannot decode ({e}): {}",
                    hex::encode(raw)
                )
            });
            match m.kind.expect("a kind") {
                Kind::Reply | Kind::Error if m.tid == tid => {
                    head = raw.to_vec();
                    if m.value_headers.is_empty() {
                        return (m, head, parts);
                    }
                    assert_eq!(self.parts.start(Instant::now(), from, m), Outcome::Held);
                }
                Kind::ValueData if m.tid == tid => {
                    parts.push(raw.to_vec());
                    if let Outcome::Complete(done) = self.parts.part(Instant::now(), from, &m) {
                        return (*done, head, parts);
                    }
                }
                Kind::Reply | Kind::Error | Kind::ValueData | Kind::ValueUpdate => {}
                _ => self.answer(&m, raw, from),
            }
        }
    }

    /// Answers `dhtnode`'s requests until `done` holds of what it asked.
    fn serve_until(&mut self, done: impl Fn(&[(Kind, Vec<u8>)]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 2048];
        while !done(&self.asked) {
            assert!(
                Instant::now() < deadline,
                "dhtnode never asked: {:?}",
                self.asked
            );
            let Ok((n, from)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let raw = buf[..n].to_vec();
            let m = Message::decode(&raw).expect("dhtnode's request decodes");
            if m.kind.is_some_and(|k| k >= Kind::Ping) {
                self.answer(&m, &raw, from);
            }
        }
    }

    fn request(&mut self, to: SocketAddr, bytes: &[u8]) {
        self.socket.send_to(bytes, to).expect("send");
    }
}

#[test]
fn ferry_speaks_opendht_with_a_real_dhtnode() {
    if !in_network_namespace("ferry_speaks_opendht_with_a_real_dhtnode") {
        return;
    }
    // A is bound before B bootstraps from it: a bootstrap ping that finds no socket is not
    // tried again for minutes, and on a loaded machine B started first (CI: "A never listed
    // B" after 60 s).
    let mut a = DhtNodeCli::start(&["-p", "4222"]);
    a.wait_for(0, "running on port 4222");
    let mut b = DhtNodeCli::start(&["-p", "4223", "-b", "127.0.0.1:4222"]);
    b.wait_for(0, "running on port 4223");
    let node_a: SocketAddr = "127.0.0.1:4222".parse().expect("addr");
    let mut ferry = Ferry::new();
    let want = Want {
        v4: true,
        v6: false,
    };

    // ping → pong, with the address it sees us at.
    let tid = ferry.tid();
    let ping = ferry.enc.ping(tid);
    eprintln!("VECTOR ours ping {}", hex::encode(&ping));
    ferry.request(node_a, &ping);
    let (pong, raw, _) = ferry.until_reply(tid);
    eprintln!("VECTOR dhtnode pong {}", hex::encode(&raw));
    assert_eq!(pong.kind, Some(Kind::Reply));
    assert_eq!(pong.ua.as_deref(), Some("RNG1"));
    assert_eq!(pong.reported_addr, Some("127.0.0.1".parse().expect("ip")));
    let id_a = pong.id.expect("dhtnode's id");
    assert!(a.wait_for(0, "running on port").contains(&id_a.to_string()));

    // find → the closest nodes (node B among them, once A knows it) and a token.
    let deadline = Instant::now() + PATIENCE;
    let found = loop {
        let tid = ferry.tid();
        ferry.request(node_a, &ferry.enc.find(tid, InfoHash([0x55; 20]), want));
        let (found, raw, _) = ferry.until_reply(tid);
        if found.nodes4.iter().any(|n| n.addr.port() == 4223) {
            eprintln!("VECTOR dhtnode find-reply {}", hex::encode(&raw));
            break found;
        }
        assert!(Instant::now() < deadline, "A never listed B: {found:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !found.token.is_empty(),
        "a find reply carries a write token"
    );

    // A value `dhtnode` puts (its `p` command: the key is the SHA-1 of the word), then one
    // over the packet value limit, which comes back to us in value parts.
    let from = a.output_len();
    a.command("p foo hello");
    a.wait_for(from, "Put: ");
    let big = "B".repeat(1000);
    let from = a.output_len();
    a.command(&format!("p bar {big}"));
    a.wait_for(from, "Put: ");
    let tid = ferry.tid();
    ferry.request(node_a, &ferry.enc.get(tid, InfoHash::get(b"foo"), want));
    let (got, raw, _) = ferry.until_reply(tid);
    eprintln!("VECTOR dhtnode get-reply {}", hex::encode(&raw));
    let hello = got
        .values
        .iter()
        .find(|v| v.data == b"hello")
        .expect("dhtnode's value");
    assert!(!hello.encrypted && !hello.signed);
    let token = got.token.clone();
    let tid = ferry.tid();
    ferry.request(node_a, &ferry.enc.get(tid, InfoHash::get(b"bar"), want));
    let (got, raw, parts) = ferry.until_reply(tid);
    eprintln!("VECTOR dhtnode get-reply-head {}", hex::encode(&raw));
    for p in &parts {
        eprintln!("VECTOR dhtnode value-part {}", hex::encode(p));
    }
    assert!(!parts.is_empty(), "a 1000-byte value comes in parts");
    assert!(
        got.values.iter().any(|v| v.data == big.as_bytes()),
        "{got:?}"
    );

    // Our puts: a small value inline, a large one (as Ferry's ~1.3 KB signalling values) in
    // parts. `dhtnode` confirms each with its value id, and B's `g` reads them back.
    for (word, data) in [
        ("ferry-small", b"from ferry".to_vec()),
        ("ferry-big", vec![b'F'; 1300]),
    ] {
        let key = InfoHash::get(word.as_bytes());
        let tid = ferry.tid();
        ferry.request(node_a, &ferry.enc.get(tid, key, want));
        let (got, _, _) = ferry.until_reply(tid);
        let value = Value::new(0x5eed_0000 + data.len() as u64, 0, data.clone());
        let tid = ferry.tid();
        let packets = ferry.enc.put(tid, key, &value, &got.token);
        eprintln!("VECTOR ours put {}", hex::encode(&packets.message));
        ferry.request(node_a, &packets.message);
        for p in &packets.parts {
            ferry.request(node_a, p);
        }
        let (done, raw, _) = ferry.until_reply(tid);
        eprintln!("VECTOR dhtnode put-reply {}", hex::encode(&raw));
        assert_eq!(done.kind, Some(Kind::Reply), "{done:?}");
        assert_eq!(done.value_id, Some(value.id));
        let from = b.output_len();
        b.command(&format!("g {word}"));
        let out = b.wait_for(from, "Get: ");
        let shown = String::from_utf8_lossy(&data[..8]).into_owned();
        assert!(
            out.contains(&format!("{:x}", value.id)) || out.contains(&shown),
            "{out}"
        );
    }

    // A put with a token that is not A's is refused with 401.
    let tid = ferry.tid();
    let bogus = ferry.enc.put(
        tid,
        InfoHash::get(b"x"),
        &Value::new(1, 0, b"x".to_vec()),
        b"no",
    );
    ferry.request(node_a, &bogus.message);
    let (refused, raw, _) = ferry.until_reply(tid);
    eprintln!("VECTOR dhtnode error {}", hex::encode(&raw));
    assert_eq!(refused.error_code, Some(401));

    // listen: confirmed, then B's new value under `foo` is pushed to our socket id.
    let tid = ferry.tid();
    let listen = ferry.enc.listen(tid, InfoHash::get(b"foo"), &token, 77);
    eprintln!("VECTOR ours listen {}", hex::encode(&listen));
    ferry.request(node_a, &listen);
    let (pushed_now, _, _) = ferry.until_reply(77);
    assert!(pushed_now.values.iter().any(|v| v.data == b"hello"));
    let from = b.output_len();
    b.command("p foo again");
    b.wait_for(from, "Put: ");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (pushed, raw, _) = ferry.until_reply(77);
        if pushed.values.iter().any(|v| v.data == b"again") {
            eprintln!("VECTOR dhtnode listen-push {}", hex::encode(&raw));
            break;
        }
        assert!(Instant::now() < deadline, "no push of the new value");
    }

    // A third `dhtnode` bootstrapping from us pings us first; with the others, it then
    // asks us for nodes as a member of its table.
    let _c = DhtNodeCli::start(&["-p", "4224", "-b", "127.0.0.1:4300"]);
    ferry.serve_until(|asked| asked.iter().any(|(k, _)| *k == Kind::Ping));
    for (kind, raw) in &ferry.asked {
        eprintln!("VECTOR dhtnode asked {kind:?} {}", hex::encode(raw));
    }
    let kinds: Vec<Kind> = ferry.asked.iter().map(|(k, _)| *k).collect();
    assert!(
        kinds.contains(&Kind::FindNode) || kinds.contains(&Kind::GetValues),
        "{kinds:?}"
    );
}

/// Ferry's whole node (`opendht::node::Node`) on a UDP socket, in a small blocking loop:
/// feeds every datagram, fires deadlines, sends what the node gives, collects its events.
struct FerryNode {
    socket: UdpSocket,
    node: ferry_proto::opendht::node::Node,
    events: Vec<ferry_proto::opendht::node::Event>,
}

impl FerryNode {
    fn new(port: u16) -> FerryNode {
        use ferry_proto::opendht::node::{Config, Node};
        let socket = UdpSocket::bind(("127.0.0.1", port)).expect("bind");
        let node = Node::new(Config {
            id: InfoHash::get(b"ferry native node"),
            network: 0,
            want: Want {
                v4: true,
                v6: false,
            },
            seed: 7,
        });
        FerryNode {
            socket,
            node,
            events: Vec::new(),
        }
    }

    /// Runs the loop until `done` holds of the events (or fails after `PATIENCE`).
    fn run_until(
        &mut self,
        what: &str,
        done: impl Fn(&[ferry_proto::opendht::node::Event]) -> bool,
    ) {
        let deadline = Instant::now() + PATIENCE;
        let mut buf = [0u8; 2048];
        while !done(&self.events) {
            assert!(Instant::now() < deadline, "never {what}: {:?}", self.events);
            let now = Instant::now();
            if self.node.poll_timeout().is_some_and(|t| t <= now) {
                self.node.handle_timeout(now);
            }
            while let Some(d) = self.node.poll_output() {
                self.socket.send_to(&d.data, d.addr).expect("send");
            }
            while let Some(e) = self.node.poll_event() {
                self.events.push(e);
            }
            let wait = self
                .node
                .poll_timeout()
                .map_or(Duration::from_millis(50), |t| {
                    t.saturating_duration_since(now)
                })
                .clamp(Duration::from_millis(1), Duration::from_millis(50));
            self.socket.set_read_timeout(Some(wait)).expect("timeout");
            if let Ok((n, from)) = self.socket.recv_from(&mut buf) {
                self.node.handle_input(Instant::now(), from, &buf[..n]);
            }
        }
    }
}

fn values_in(events: &[ferry_proto::opendht::node::Event]) -> Vec<Vec<u8>> {
    use ferry_proto::opendht::node::Event;
    events
        .iter()
        .flat_map(|e| match e {
            Event::Values { values, .. } => values.iter().map(|v| v.data.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn a_ferry_node_joins_a_dhtnode_network_puts_gets_and_listens() {
    use ferry_proto::opendht::node::Event;
    if !in_network_namespace("a_ferry_node_joins_a_dhtnode_network_puts_gets_and_listens") {
        return;
    }
    // A is bound before the others bootstrap from it (see the test above).
    let a = DhtNodeCli::start(&["-p", "4222"]);
    a.wait_for(0, "running on port 4222");
    let mut b = DhtNodeCli::start(&["-p", "4223", "-b", "127.0.0.1:4222"]);
    let mut c = DhtNodeCli::start(&["-p", "4224", "-b", "127.0.0.1:4222"]);
    for (node, port) in [(&b, 4223), (&c, 4224)] {
        node.wait_for(0, &format!("running on port {port}"));
    }
    let mut ferry = FerryNode::new(4300);
    ferry
        .node
        .bootstrap(Instant::now(), "127.0.0.1:4222".parse().expect("addr"));
    // Joined: the lookup of our own id that follows the bootstrap answer is done, and
    // the table holds the three `dhtnode`s.
    ferry.run_until("joined", |e| {
        e.iter().any(|e| matches!(e, Event::GetDone { .. }))
    });
    let deadline = Instant::now() + PATIENCE;
    while ferry.node.table(false).len() < 3 {
        assert!(
            Instant::now() < deadline,
            "the table has {} nodes",
            ferry.node.table(false).len()
        );
        ferry.events.clear();
        ferry.node.get(Instant::now(), InfoHash::get(b"anything"));
        ferry.run_until("a lookup", |e| {
            e.iter().any(|e| matches!(e, Event::GetDone { .. }))
        });
    }

    // Ferry puts a value (over the packet limit, as a signalling value); C's `g` reads it.
    let value = Value::new(0xfe77, 0, vec![b'S'; 1300]);
    ferry
        .node
        .put(Instant::now(), InfoHash::get(b"ferry-native"), value);
    ferry.run_until("stored", |e| {
        e.iter()
            .any(|e| matches!(e, Event::Stored { nodes, .. } if *nodes >= 3))
    });
    let from = c.output_len();
    c.command("g ferry-native");
    let out = c.wait_for(from, "Get: ");
    assert!(
        out.contains("fe77") || out.contains("SSSSSSSS"),
        "C did not read it:\n{out}"
    );

    // B puts a value; Ferry gets it, and a listen hears B's next one.
    let from = b.output_len();
    b.command("p from-dhtnode hello");
    b.wait_for(from, "Put: ");
    ferry.events.clear();
    ferry
        .node
        .get(Instant::now(), InfoHash::get(b"from-dhtnode"));
    ferry.run_until("got B's value", |e| {
        values_in(e).contains(&b"hello".to_vec())
    });
    ferry.events.clear();
    ferry
        .node
        .listen(Instant::now(), InfoHash::get(b"from-dhtnode"));
    ferry.run_until("heard the value there", |e| {
        values_in(e).contains(&b"hello".to_vec())
    });
    let from = b.output_len();
    b.command("p from-dhtnode again");
    b.wait_for(from, "Put: ");
    ferry.run_until("heard B's new value", |e| {
        values_in(e).contains(&b"again".to_vec())
    });

    // Ferry stores for others: B's puts reached it (it is among the closest of four).
    assert!(
        ferry.node.storage().values() >= 1,
        "Ferry stored nothing for the network"
    );
    assert_eq!(
        ferry.node.dropped().malformed,
        0,
        "{:?}",
        ferry.node.dropped()
    );
    assert_eq!(
        ferry.node.dropped().unknown_kind,
        0,
        "{:?}",
        ferry.node.dropped()
    );
}

/// Waits for what `rx` delivers until `done` holds of one input (or fails after `PATIENCE`).
fn wait_input(
    rx: &std::sync::mpsc::Receiver<ferry_proto::io::Input>,
    what: &str,
    done: impl Fn(&ferry_proto::io::Input) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "never {what}");
        if let Ok(input) = rx.recv_timeout(left.min(Duration::from_millis(200))) {
            if done(&input) {
                return;
            }
        }
    }
}

/// Waits until the native node's status (brought up to date every quarter of a second)
/// satisfies `done`.
fn wait_status(
    client: &ferry_driver::NativeClient,
    what: &str,
    done: impl Fn(&ferry_driver::NativeStatus) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    while !done(&client.status()) {
        assert!(
            Instant::now() < deadline,
            "never {what}: {:?}",
            client.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The driver's native backend (`ferry_driver::NativeClient`: its own UDP socket and thread)
/// in a network of three `dhtnode`s: what it puts, with a Ferry signalling value's size, is
/// read by another node's `g`; what `dhtnode` puts it gets and hears through a listen; the
/// same bytes put again reuse the running put; its status counts the network.
#[test]
fn the_native_backend_puts_gets_and_listens_on_a_dhtnode_network() {
    use ferry_driver::{NativeClient, NativeConfig};
    use ferry_proto::io::{DhtKey, Input};
    if !in_network_namespace("the_native_backend_puts_gets_and_listens_on_a_dhtnode_network") {
        return;
    }
    let a = DhtNodeCli::start(&["-p", "4222"]);
    a.wait_for(0, "running on port 4222");
    let mut b = DhtNodeCli::start(&["-p", "4223", "-b", "127.0.0.1:4222"]);
    let mut c = DhtNodeCli::start(&["-p", "4224", "-b", "127.0.0.1:4222"]);
    for (node, port) in [(&b, 4223), (&c, 4224)] {
        node.wait_for(0, &format!("running on port {port}"));
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let mut config = NativeConfig::new(vec!["localhost:4222".to_owned()]);
    config.bind = "127.0.0.1:0".parse().expect("addr");
    let client = NativeClient::new(&config, move |input| {
        let _ = tx.send(input);
    })
    .expect("the native node starts");

    // A put asked before the node joined waits for it, then is stored on the network.
    let key = DhtKey(InfoHash::get(b"ferry-driver-native").0);
    let signal = vec![b'D'; 1300];
    client.put(key, bytes::Bytes::from(signal.clone()));
    wait_input(
        &rx,
        "stored",
        |i| matches!(i, Input::DhtPutDone { key: k, ok } if *k == key && *ok),
    );
    let from = c.output_len();
    c.command("g ferry-driver-native");
    let out = c.wait_for(from, "Get: ");
    // `dhtnode` shows a value this large by its size.
    assert!(out.contains("data:1300 bytes"), "C did not read it:\n{out}");
    // The same bytes again (the core re-announcing): answered by the running put.
    client.put(key, bytes::Bytes::from(signal));
    wait_input(
        &rx,
        "the repeat answered",
        |i| matches!(i, Input::DhtPutDone { key: k, ok } if *k == key && *ok),
    );
    wait_status(&client, "one put, kept alive", |s| {
        s.our_values == 1 && s.our_values_stored == 1
    });

    // B's value: heard through a listen, and B's next one pushed.
    let from = b.output_len();
    b.command("p from-dhtnode-b hello");
    b.wait_for(from, "Put: ");
    let heard = DhtKey(InfoHash::get(b"from-dhtnode-b").0);
    client.listen(heard);
    let value_is = |want: &'static [u8]| move |i: &Input| matches!(i, Input::DhtValue { key, value } if *key == heard && value[..] == *want);
    wait_input(&rx, "heard B's value", value_is(b"hello"));
    let from = b.output_len();
    b.command("p from-dhtnode-b again");
    b.wait_for(from, "Put: ");
    wait_input(&rx, "heard B's new value", value_is(b"again"));
    client.cancel_listen(heard);

    // At least A, which answered; `dhtnode` lists to others only nodes that answered *it*
    // (OpenDHT's `isGood`), so B and C may not be known yet in a network this young.
    wait_status(&client, "the network counted", |s| {
        s.joined && s.nodes >= 1 && s.good >= 1 && s.listens == 0
    });
    let status = client.status();
    assert_eq!(status.dropped.malformed, 0, "{status:?}");
    assert!(status.unresolved.is_empty(), "{status:?}");
}

/// Two `ferry` CLIs on two hosts behind two kernel NATs (the `netlab`), each with a folder
/// DHT of its own (they share none), meet through a network of two `dhtnode`s on the public
/// segment with `--bootstrap` only, and transfer a file; the listener's `ferry dht status`
/// shows its node in the network meanwhile.
#[test]
fn two_ferry_clis_meet_through_a_dhtnode_network_with_bootstrap_only() {
    use ferry_tests::netlab::{Ferry, Lab, Nat, Side, TURN_ADDRS, TURN_PORT, TurnServer};
    let limit = Duration::from_secs(240);
    if !std::path::Path::new("/usr/bin/dhtnode").exists() {
        assert!(
            std::env::var("FERRY_REQUIRE_INTEROP").is_ok_and(|v| v != "1")
                || std::env::var("FERRY_REQUIRE_INTEROP").is_err(),
            "FERRY_REQUIRE_INTEROP=1 but dhtnode is not installed"
        );
        eprintln!("SKIP: dhtnode is not installed");
        return;
    }
    let Some(lab) = Lab::start("dht", Nat::Cone, Nat::Cone) else {
        return;
    };
    // coturn as a STUN server: each side learns its public address for ICE (the DHT is
    // only the meeting place).
    let _stun = TurnServer::start(&lab);
    let public = lab.public();
    // `dhtnode` answers from a socket bound to every address, so the kernel picks the
    // source of each answer: toward a router, that router's link address, not the address
    // it was asked on, and the router's NAT drops an answer from an address its host never
    // wrote to. A machine of one address (every real `dhtnode`) has no such choice: the
    // routes toward the two routers say to answer from the nodes' address.
    for (side, link) in [(Side::A, "ra"), (Side::B, "rb")] {
        let o = lab.router_public(side).octets();
        let status = Command::new("ip")
            .args(["-n", &public, "route", "replace"])
            .arg(format!("{}.{}.{}.0/24", o[0], o[1], o[2]))
            .args(["dev", link, "src"])
            .arg(TURN_ADDRS[0].to_string())
            .status()
            .expect("ip runs");
        assert!(status.success(), "the public segment's route toward {link}");
    }
    let first = format!("{}:4222", TURN_ADDRS[0]);
    let dht_a = DhtNodeCli::start_in(Some(&public), &["-p", "4222"]);
    dht_a.wait_for(0, "running on port 4222");
    let dht_b = DhtNodeCli::start_in(Some(&public), &["-p", "4223", "-b", &first]);
    dht_b.wait_for(0, "running on port 4223");

    let dir = tempfile::tempdir().expect("a temporary folder");
    let (home_a, home_b) = (dir.path().join("a"), dir.path().join("b"));
    let (folder_a, folder_b) = (dir.path().join("dht-a"), dir.path().join("dht-b"));
    let account = |side, home: &std::path::Path, folder: &std::path::Path| {
        let made = Ferry::spawn(&lab.host(side), home, folder, &["--json", "account", "new"])
            .finish(limit);
        assert_eq!(made.code, Some(0), "account new: {}", made.stderr);
        made.first("account_created").expect("account_created").1["account"]
            .as_str()
            .expect("an account id")
            .to_owned()
    };
    account(Side::A, &home_a, &folder_a);
    let bob = account(Side::B, &home_b, &folder_b);
    let source = dir.path().join("through-the-dht.bin");
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&source, &data).expect("the file");
    let into = dir.path().join("received");
    let stun = TURN_ADDRS.map(|a| format!("{a}:{TURN_PORT}"));
    let (into_arg, source_arg) = (into.display().to_string(), source.display().to_string());
    let net: Vec<&str> = vec![
        "--bootstrap",
        &first,
        "--stun",
        &stun[0],
        "--stun",
        &stun[1],
    ];
    let mut listen_args = vec![
        "--json",
        "listen",
        "--once",
        "--accept-all",
        "--into",
        &into_arg,
    ];
    listen_args.extend(&net);
    let listener = Ferry::spawn(&lab.host(Side::B), &home_b, &folder_b, &listen_args);
    // The listener's node is in the network before the sender starts: its status file says
    // so (read through `ferry dht status`).
    let deadline = Instant::now() + limit;
    let status = loop {
        let shown = Ferry::spawn(
            &lab.host(Side::B),
            &home_b,
            &folder_b,
            &["--json", "dht", "status"],
        )
        .finish(limit);
        if let Some((_, s)) = shown.first("dht_status") {
            if s["joined"] == true && s["listens"].as_u64().is_some_and(|l| l >= 1) {
                break s.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the listener never joined: {shown:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("listener's DHT status: {status}");
    assert!(status["nodes"].as_u64().is_some_and(|n| n >= 2), "{status}");
    assert_eq!(status["source"], "the running ferry's node");

    let mut send_args = vec!["--json", "send", &source_arg, "--to", &bob];
    send_args.extend(&net);
    let sent = Ferry::spawn(&lab.host(Side::A), &home_a, &folder_a, &send_args).finish(limit);
    let received = listener.finish(if sent.code == Some(0) {
        limit
    } else {
        Duration::ZERO
    });
    assert_eq!(sent.code, Some(0), "send: {}", sent.stderr);
    assert_eq!(received.code, Some(0), "listen: {}", received.stderr);
    let got = std::fs::read(into.join("through-the-dht.bin")).expect("the received file");
    assert!(got == data, "the file arrived byte for byte");
    // Nothing of either side's folder DHT reached the other: they met through the network.
    assert_ne!(folder_a, folder_b);
}
