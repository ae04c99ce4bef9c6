//! Our messages, one by one, to a network of two `dhtnode`s: ping, find, get, put (inline
//! and in value parts), listen and refresh; every reply decoded; what `dhtnode` asks of us
//! once we are in its table answered (and decoded too); what we put checked through
//! `dhtnode`'s own command line.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ferry_proto::opendht::InfoHash;
use ferry_proto::opendht::message::{Encoder, Kind, Message, NodesValues, Tid, Want};
use ferry_proto::opendht::parts::{Outcome, Reassembly};
use ferry_proto::opendht::value::Value;
use ferry_tests::dhtnode::in_network_namespace;

use crate::PATIENCE;
use crate::dhtnode_cli::DhtNodeCli;

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
                // A listen's update comes to its socket id, as its pushes do.
                Kind::Reply | Kind::Error | Kind::ValueUpdate if m.tid == tid => {
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
    if !in_network_namespace("wire::ferry_speaks_opendht_with_a_real_dhtnode") {
        return;
    }
    let [mut a, mut b] = DhtNodeCli::network();
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

    // find → the closest nodes (node B among them, once A knows it) and a token. `dhtnode`
    // lists only nodes that answered it, and B has only asked A so far: a search of A's own
    // (its `g` command) asks B, whose answer makes it a node A lists. (Waiting for A's
    // table maintenance to ping B took over 60 s in one run of two.)
    let deadline = Instant::now() + PATIENCE;
    let mut searched = Instant::now() - Duration::from_secs(10);
    let found = loop {
        if searched.elapsed() >= Duration::from_secs(2) {
            searched = Instant::now();
            a.command("g ferry-wake-a-up");
        }
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
        let out = b.get(word);
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

/// Keeping a value alive, as 2.4.12 does it, and what it makes of edits: our `refresh` of a
/// value `dhtnode` holds is confirmed with its id; a refresh is confirmed too for an id it
/// does not hold under a key it stores (so a confirmation does not prove the value is
/// there: Ferry decides between refresh and put from the `get` reply), and refused with 404
/// under a key it does not store; an unsigned value put again under its id with other
/// content (an "edit") is confirmed but not stored: the old content stays (OpenDHT allows
/// edits of signed values only, from their owner with a higher `seq`). (Newer OpenDHT also
/// tells listeners of a refresh with a `u` message; 2.4.12 sent none here.)
#[test]
fn refresh_and_edits_with_a_real_dhtnode() {
    if !in_network_namespace("wire::refresh_and_edits_with_a_real_dhtnode") {
        return;
    }
    let [_a, b] = DhtNodeCli::network();
    let node_a: SocketAddr = "127.0.0.1:4222".parse().expect("addr");
    let mut ferry = Ferry::new();
    let key = InfoHash::get(b"ferry-refresh");
    let tid = ferry.tid();
    ferry.request(node_a, &ferry.enc.get(tid, key, Want::default()));
    let (got, _, _) = ferry.until_reply(tid);
    let token = got.token;
    let put = |ferry: &mut Ferry, value: &Value| {
        let tid = ferry.tid();
        ferry.request(node_a, &ferry.enc.put(tid, key, value, &token).message);
        let (done, _, _) = ferry.until_reply(tid);
        assert_eq!(done.value_id, Some(value.id), "{done:?}");
    };
    let vid = 0xf00d;
    put(&mut ferry, &Value::new(vid, 0, b"one".to_vec()));
    // A listener of the key (ourselves, under socket id 88) gets what is there.
    let tid = ferry.tid();
    ferry.request(node_a, &ferry.enc.listen(tid, key, &token, 88));
    let (pushed, _, _) = ferry.until_reply(88);
    assert!(pushed.values.iter().any(|v| v.data == b"one"), "{pushed:?}");

    // refresh → confirmed with the value id.
    let tid = ferry.tid();
    let refresh = ferry.enc.refresh(tid, key, vid, &token);
    eprintln!("VECTOR ours refresh {}", hex::encode(&refresh));
    ferry.request(node_a, &refresh);
    let (done, raw, _) = ferry.until_reply(tid);
    eprintln!("VECTOR dhtnode refresh-reply {}", hex::encode(&raw));
    assert_eq!(
        (done.kind, done.value_id),
        (Some(Kind::Reply), Some(vid)),
        "{done:?}"
    );

    // A refresh of an id A does not hold, under a key it stores: confirmed all the same.
    let tid = ferry.tid();
    ferry.request(node_a, &ferry.enc.refresh(tid, key, 0xdead, &token));
    let (done, raw, _) = ferry.until_reply(tid);
    eprintln!("VECTOR dhtnode refresh-unknown-id {}", hex::encode(&raw));
    assert_eq!(
        (done.kind, done.value_id),
        (Some(Kind::Reply), Some(0xdead)),
        "{done:?}"
    );
    // Under a key A does not store: 404.
    let elsewhere = InfoHash::get(b"ferry-refresh-nothing-here");
    let tid = ferry.tid();
    ferry.request(node_a, &ferry.enc.get(tid, elsewhere, Want::default()));
    let (got, _, _) = ferry.until_reply(tid);
    let tid = ferry.tid();
    ferry.request(node_a, &ferry.enc.refresh(tid, elsewhere, vid, &got.token));
    let (refused, raw, _) = ferry.until_reply(tid);
    eprintln!("VECTOR dhtnode refresh-404 {}", hex::encode(&raw));
    assert_eq!(refused.error_code, Some(404), "{refused:?}");

    // An edit of the unsigned value: confirmed, not stored; a get still shows "one".
    put(&mut ferry, &Value::new(vid, 0, b"two".to_vec()));
    let tid = ferry.tid();
    ferry.request(node_a, &ferry.enc.get(tid, key, Want::default()));
    let (got, _, _) = ferry.until_reply(tid);
    let held: Vec<&[u8]> = got
        .values
        .iter()
        .filter(|v| v.id == vid)
        .map(|v| v.data.as_slice())
        .collect();
    assert_eq!(held, [&b"one"[..]], "{got:?}");
    drop(b);
}
