//! Ferry's whole sans-IO node (`opendht::node::Node`) on a UDP socket among `dhtnode`s.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use ferry_proto::opendht::InfoHash;
use ferry_proto::opendht::message::Want;
use ferry_proto::opendht::value::Value;
use ferry_tests::dhtnode::in_network_namespace;

use crate::PATIENCE;
use crate::dhtnode_cli::DhtNodeCli;

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
    if !in_network_namespace("node::a_ferry_node_joins_a_dhtnode_network_puts_gets_and_listens") {
        return;
    }
    let [_a, mut b, mut c] = DhtNodeCli::network();
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
    let out = c.get("ferry-native");
    assert!(
        out.contains("fe77") || out.contains("SSSSSSSS"),
        "C did not read it:\n{out}"
    );

    // B puts a value; Ferry gets it, and a listen hears B's next one.
    let from = b.output_len();
    b.command("p from-dhtnode hello");
    // Ferry answers while B puts: B stores at the nodes that answered its lookup, so a
    // Ferry that is not run meanwhile gets none of B's values (the test failed so, at
    // "Ferry stored nothing for the network", about once in six runs).
    ferry.run_until("B's put", |_| b.printed(from, "Put: "));
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
    ferry.run_until("B's put", |_| b.printed(from, "Put: "));
    ferry.run_until("heard B's new value", |e| {
        values_in(e).contains(&b"again".to_vec())
    });

    // The listen outlives its 30-s expiry: renewed in place (the same `listen` to the same
    // nodes, answered, no new lookup), it still hears B's value 45 s later.
    let (sent, expired) = (
        ferry.node.sent().clone(),
        ferry.node.dropped().requests_expired,
    );
    let until = Instant::now() + Duration::from_secs(45);
    ferry.run_until("45 s of listening", |_| Instant::now() >= until);
    let renewed = ferry.node.sent().clone();
    assert!(
        renewed.listens_sent >= sent.listens_sent + 2,
        "renewals: {sent:?} → {renewed:?}"
    );
    assert_eq!(renewed.gets_sent, sent.gets_sent, "renewed without lookups");
    assert_eq!(
        ferry.node.dropped().requests_expired,
        expired,
        "every renewal answered"
    );
    let from = b.output_len();
    b.command("p from-dhtnode later");
    ferry.run_until("B's put", |_| b.printed(from, "Put: "));
    ferry.run_until("heard B's value after the renewals", |e| {
        values_in(e).contains(&b"later".to_vec())
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
