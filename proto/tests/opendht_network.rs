//! Many in-memory OpenDHT nodes exchanging datagrams (no sockets): joins, puts, gets,
//! listens, re-announces and hostile input, on a virtual clock that jumps to the next
//! deadline when no datagram is in flight.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_proto::opendht::InfoHash;
use ferry_proto::opendht::message::{Encoder, Kind, Message, Want};
use ferry_proto::opendht::node::{Config, Datagram, Event, Node};
use ferry_proto::opendht::value::Value;

struct Net {
    nodes: BTreeMap<SocketAddr, Node>,
    events: BTreeMap<SocketAddr, Vec<Event>>,
    in_flight: VecDeque<(SocketAddr, Datagram)>,
    now: Instant,
    /// Every datagram delivered, for the determinism check.
    trace: Vec<(SocketAddr, SocketAddr, usize)>,
    /// Datagrams to this address are lost.
    down: Option<SocketAddr>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250 + 1) as u8], 4222))
}

impl Net {
    /// `n` nodes, every one bootstrapped from the first.
    fn new(n: usize, seed: u64) -> Net {
        let now = Instant::now();
        let mut net = Net {
            nodes: BTreeMap::new(),
            events: BTreeMap::new(),
            in_flight: VecDeque::new(),
            now,
            trace: Vec::new(),
            down: None,
        };
        for i in 0..n {
            let config = Config {
                id: InfoHash::get(&(seed + i as u64).to_be_bytes()),
                network: 0,
                want: Want {
                    v4: true,
                    v6: false,
                },
                seed: seed * 1000 + i as u64,
            };
            let mut node = Node::new(config);
            node.handle_timeout(now);
            if i > 0 {
                node.bootstrap(now, addr(0));
            }
            net.nodes.insert(addr(i), node);
        }
        net
    }

    fn node(&mut self, i: usize) -> &mut Node {
        self.nodes.get_mut(&addr(i)).expect("a node")
    }

    /// Delivers datagrams and fires deadlines until virtual time `for_` has passed.
    fn run(&mut self, for_: Duration) {
        let until = self.now + for_;
        loop {
            for (a, node) in &mut self.nodes {
                while let Some(d) = node.poll_output() {
                    self.in_flight.push_back((*a, d));
                }
                while let Some(e) = node.poll_event() {
                    self.events.entry(*a).or_default().push(e);
                }
            }
            if let Some((from, d)) = self.in_flight.pop_front() {
                self.trace.push((from, d.addr, d.data.len()));
                if Some(d.addr) != self.down {
                    if let Some(n) = self.nodes.get_mut(&d.addr) {
                        n.handle_input(self.now, from, &d.data);
                    }
                }
                continue;
            }
            let next = self.nodes.values().filter_map(Node::poll_timeout).min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for n in self.nodes.values_mut() {
                        if n.poll_timeout().is_some_and(|t| t <= now) {
                            n.handle_timeout(now);
                        }
                    }
                }
                _ => {
                    self.now = until;
                    return;
                }
            }
        }
    }

    /// The node at `a` restarts: same id and address, nothing stored, bootstraps again.
    fn restart(&mut self, a: SocketAddr) {
        let id = self.nodes[&a].id();
        let mut node = Node::new(Config {
            id,
            network: 0,
            want: Want {
                v4: true,
                v6: false,
            },
            seed: u64::from(a.ip().to_string().len() as u32) ^ 0x5eed,
        });
        node.handle_timeout(self.now);
        node.bootstrap(self.now, addr(0));
        self.nodes.insert(a, node);
    }

    fn take_events(&mut self, i: usize) -> Vec<Event> {
        self.events.remove(&addr(i)).unwrap_or_default()
    }
}

fn values_of(events: &[Event]) -> Vec<Vec<u8>> {
    events
        .iter()
        .flat_map(|e| match e {
            Event::Values { values, .. } => values.iter().map(|v| v.data.clone()).collect(),
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn fifty_nodes_join_and_a_put_is_read_by_another_node() {
    let mut net = Net::new(50, 1);
    net.run(Duration::from_secs(30));
    for (a, n) in &net.nodes {
        assert!(
            n.table(false).len() >= 8,
            "{a} knows only {} nodes",
            n.table(false).len()
        );
    }
    let key = InfoHash::get(b"ferry:announce");
    let value = Value::new(77, 0, vec![b'x'; 1300]);
    let now = net.now;
    let put = net.node(7).put(now, key, value.clone()).expect("a search");
    net.run(Duration::from_secs(10));
    let stored = net.take_events(7);
    assert!(
        stored.contains(&Event::Stored {
            search: put,
            nodes: 8
        }),
        "{stored:?}"
    );
    let holders = net
        .nodes
        .values()
        .filter(|n| n.storage().values() == 1)
        .count();
    assert!(holders >= 8, "the value is on {holders} nodes");
    let now = net.now;
    net.node(33).get(now, key).expect("a search");
    net.run(Duration::from_secs(10));
    let events = net.take_events(33);
    assert_eq!(values_of(&events), [value.data]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::GetDone { answered, .. } if *answered >= 8))
    );
}

#[test]
fn a_listener_hears_a_value_put_later_and_the_put_outlives_the_expiry() {
    let mut net = Net::new(30, 2);
    net.run(Duration::from_secs(30));
    let key = InfoHash::get(b"ferry:requests");
    let now = net.now;
    net.node(12).listen(now, key).expect("a search");
    net.run(Duration::from_secs(5));
    assert!(values_of(&net.take_events(12)).is_empty());
    let now = net.now;
    net.node(25)
        .put(now, key, Value::new(5, 0, b"knock".to_vec()))
        .expect("a search");
    net.run(Duration::from_secs(5));
    assert_eq!(values_of(&net.take_events(12)), [b"knock".to_vec()]);
    // Twenty-five minutes later (2.5 value lifetimes) the value is still there: the putter
    // re-announced it, and the listen was renewed all along.
    net.run(Duration::from_secs(25 * 60));
    let now = net.now;
    net.node(3).get(now, key).expect("a search");
    net.run(Duration::from_secs(10));
    assert_eq!(values_of(&net.take_events(3)), [b"knock".to_vec()]);
    // A second value reaches the renewed listen.
    let now = net.now;
    net.node(20)
        .put(now, key, Value::new(6, 0, b"again".to_vec()))
        .expect("a search");
    net.run(Duration::from_secs(5));
    assert_eq!(values_of(&net.take_events(12)), [b"again".to_vec()]);
}

#[test]
fn a_cancelled_put_expires_after_ten_minutes() {
    let mut net = Net::new(20, 3);
    net.run(Duration::from_secs(30));
    let key = InfoHash::get(b"short-lived");
    let now = net.now;
    let put = net
        .node(4)
        .put(now, key, Value::new(9, 0, b"bye".to_vec()))
        .expect("a search");
    net.run(Duration::from_secs(5));
    net.node(4).cancel(put);
    net.run(Duration::from_secs(11 * 60));
    let held: usize = net.nodes.values().map(|n| n.storage().values()).sum();
    assert_eq!(held, 0, "nobody holds the value past its expiry");
}

/// Our value is kept alive by `refresh`es, not sent whole again: after 25 minutes (2.5
/// lifetimes) it is still readable, the putter sent it whole only in the first round (and
/// to nodes that did not hold it), and its later rounds were refreshes.
#[test]
fn a_put_is_kept_alive_by_refresh_not_sent_again() {
    let mut net = Net::new(30, 6);
    net.run(Duration::from_secs(30));
    let key = InfoHash::get(b"kept-alive");
    let now = net.now;
    net.node(15).listen(now, key).expect("a search");
    net.node(8)
        .put(now, key, Value::new(42, 0, vec![b'k'; 1300]))
        .expect("a search");
    net.run(Duration::from_secs(10));
    let first = net.node(8).sent().clone();
    assert_eq!(
        (first.puts_sent, first.refreshes_sent),
        (8, 0),
        "the first round puts"
    );
    net.run(Duration::from_secs(25 * 60));
    let later = net.node(8).sent().clone();
    assert!(
        later.refreshes_sent >= 16,
        "two rounds of refreshes: {later:?}"
    );
    assert!(
        later.puts_sent < first.puts_sent + 8,
        "the value was not sent whole again each round: {later:?}"
    );
    let now = net.now;
    net.node(21).get(now, key).expect("a search");
    net.run(Duration::from_secs(10));
    assert_eq!(values_of(&net.take_events(21)), [vec![b'k'; 1300]]);
    // The storing nodes told the listener of each refresh (`u` with `re`), and it was given
    // the value once.
    let heard = net.node(15).sent().clone();
    assert!(heard.value_updates_heard >= 2, "{heard:?}");
    assert_eq!(values_of(&net.take_events(15)), [vec![b'k'; 1300]]);
}

/// A node that lost our value (it restarted) does not show it in its `get` reply: the
/// value goes to it whole again at the next round, the others get refreshes.
#[test]
fn a_node_that_lost_the_value_gets_it_whole_again() {
    let mut net = Net::new(12, 7);
    net.run(Duration::from_secs(30));
    let key = InfoHash::get(b"lost-and-put");
    let now = net.now;
    net.node(3)
        .put(now, key, Value::new(5, 0, b"v".to_vec()))
        .expect("a search");
    net.run(Duration::from_secs(10));
    // The holders restart and lose what they stored (a new node at the same address).
    let holders: Vec<SocketAddr> = net
        .nodes
        .iter()
        .filter(|(_, n)| n.storage().values() == 1)
        .map(|(a, _)| *a)
        .collect();
    assert!(holders.len() >= 8);
    let before = net.node(3).sent().clone();
    let lost = &holders[..3];
    for a in lost {
        net.restart(*a);
    }
    net.run(Duration::from_secs(11 * 60));
    let sent = net.node(3).sent().clone();
    let (puts, refreshes) = (
        sent.puts_sent - before.puts_sent,
        sent.refreshes_sent - before.refreshes_sent,
    );
    assert!(
        puts >= 1 && refreshes >= 1 && puts + refreshes >= 8,
        "the lost ones put, the others refreshed: {sent:?}"
    );
    let holding = net
        .nodes
        .iter()
        .filter(|(_, n)| n.storage().values() == 1)
        .count();
    assert!(holding >= 8, "the value is on {holding} nodes again");
    let now = net.now;
    net.node(9).get(now, key).expect("a search");
    net.run(Duration::from_secs(10));
    assert_eq!(values_of(&net.take_events(9)), [b"v".to_vec()]);
}

/// A listen is renewed by sending `listen` again to the same nodes, without lookups, and
/// a value its owner changed (same id, new content) reaches the listener again.
#[test]
fn a_listen_is_renewed_in_place_and_hears_an_owner_update() {
    let mut net = Net::new(30, 8);
    net.run(Duration::from_secs(30));
    let key = InfoHash::get(b"updated");
    let now = net.now;
    net.node(11).listen(now, key).expect("a search");
    net.run(Duration::from_secs(5));
    let listens = net.node(11).sent().listens_sent;
    assert_eq!(listens, 4, "LISTEN_NODES nodes");
    let now = net.now;
    let first = net
        .node(4)
        .put(now, key, Value::new(7, 0, b"first".to_vec()))
        .expect("a search");
    net.run(Duration::from_secs(5));
    assert_eq!(values_of(&net.take_events(11)), [b"first".to_vec()]);
    // Five minutes: 15 renewals of the 4 listens, and no lookup (no `get` sent).
    let gets = net.node(11).sent().gets_sent;
    net.run(Duration::from_secs(5 * 60));
    let renewed = net.node(11).sent().listens_sent - listens;
    assert!((4 * 14..=4 * 16).contains(&renewed), "{renewed} renewals");
    assert_eq!(
        net.node(11).sent().gets_sent,
        gets,
        "renewed without lookups"
    );
    // The owner changes its value: same id, new content.
    net.node(4).cancel(first);
    let now = net.now;
    net.node(4)
        .put(now, key, Value::new(7, 0, b"second".to_vec()))
        .expect("a search");
    net.run(Duration::from_secs(5));
    assert_eq!(values_of(&net.take_events(11)), [b"second".to_vec()]);
    assert_eq!(net.node(11).sent().updates_heard, 1);
}

#[test]
fn a_node_that_stops_answering_is_routed_around() {
    let mut net = Net::new(30, 4);
    net.run(Duration::from_secs(30));
    net.down = Some(addr(9));
    let key = InfoHash::get(b"routed-around");
    let now = net.now;
    let put = net
        .node(2)
        .put(now, key, Value::new(1, 0, b"v".to_vec()))
        .expect("a search");
    net.run(Duration::from_secs(30));
    let stored = net.take_events(2);
    assert!(
        stored
            .iter()
            .any(|e| matches!(e, Event::Stored { search, nodes } if *search == put && *nodes >= 7)),
        "{stored:?}"
    );
    let now = net.now;
    net.node(17).get(now, key).expect("a search");
    net.run(Duration::from_secs(30));
    assert_eq!(values_of(&net.take_events(17)), [b"v".to_vec()]);
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let trace = |seed| {
        let mut net = Net::new(20, seed);
        net.run(Duration::from_secs(30));
        let now = net.now;
        net.node(5)
            .put(now, InfoHash([3; 20]), Value::new(1, 0, vec![1; 900]))
            .expect("a search");
        net.run(Duration::from_secs(30));
        net.trace
    };
    assert_eq!(trace(11), trace(11));
    assert_ne!(trace(11), trace(12));
}

// SECURITY: row 137
// SECURITY: row 140
// SECURITY: row 141
#[test]
fn hostile_datagrams_are_answered_by_the_rules_and_counted() {
    let mut net = Net::new(2, 5);
    net.run(Duration::from_secs(5));
    let now = net.now;
    let stranger = SocketAddr::from(([192, 0, 2, 1], 9999));
    let enc = Encoder {
        id: InfoHash([0xee; 20]),
        network: 0,
    };
    let node = net.node(0);
    let value = Value::new(1, 0, b"x".to_vec());
    // A put with a token we never gave: 401, nothing stored.
    node.handle_input(
        now,
        stranger,
        &enc.put(1, InfoHash([1; 20]), &value, b"guess").message,
    );
    let answer = node.poll_output().expect("an answer");
    assert_eq!(answer.addr, stranger);
    assert_eq!(
        Message::decode(&answer.data).expect("decodes").error_code,
        Some(401)
    );
    assert_eq!(node.dropped().bad_token, 1);
    assert_eq!(node.storage().values(), 0);
    // Garbage, an unknown kind, another network, a reply to nothing: counted, unanswered.
    node.handle_input(now, stranger, &[0xc1, 0x00]);
    node.handle_input(now, stranger, &hex_map(&[("y", "x")]));
    node.handle_input(now, stranger, &Encoder { network: 7, ..enc }.ping(2));
    node.handle_input(now, stranger, &enc.pong(3, stranger));
    let d = node.dropped().clone();
    assert_eq!(
        (
            d.malformed,
            d.unknown_kind,
            d.wrong_network,
            d.unexpected_reply
        ),
        (1, 1, 1, 1)
    );
    assert!(node.poll_output().is_none());
    // A get gives a token; a put with it is stored.
    node.handle_input(
        now,
        stranger,
        &enc.get(4, InfoHash([1; 20]), Want::default()),
    );
    let reply = Message::decode(&node.poll_output().expect("an answer").data).expect("decodes");
    assert_eq!(reply.kind, Some(Kind::Reply));
    node.handle_input(
        now,
        stranger,
        &enc.put(5, InfoHash([1; 20]), &value, &reply.token).message,
    );
    let ok = Message::decode(&node.poll_output().expect("an answer").data).expect("decodes");
    assert_eq!(ok.value_id, Some(1));
    assert_eq!(node.storage().values(), 1);
    // A flood from one address is cut at the per-address rate.
    for tid in 0..1000 {
        node.handle_input(now, stranger, &enc.ping(100 + tid));
    }
    let per_address = node.dropped().rate_limited;
    assert!(per_address > 0);
    // A flood from many addresses is cut at the global rate.
    for i in 0..2000u32 {
        let from = SocketAddr::from(([198, 18, (i / 250) as u8, (i % 250) as u8], 4000));
        node.handle_input(now, from, &enc.ping(5000 + i));
    }
    assert!(node.dropped().rate_limited > per_address);
    // A second later, the window has passed: answered again.
    while node.poll_output().is_some() {}
    node.handle_input(now + Duration::from_secs(1), stranger, &enc.ping(9));
    assert!(node.poll_output().is_some());
}

fn hex_map(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut w = ferry_proto::opendht::msgpack::Writer::new();
    w.map(entries.len());
    for (k, v) in entries {
        w.str(k).str(v);
    }
    w.buf
}
