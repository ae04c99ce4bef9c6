//! A trace is documentation: this snapshot shows what one small world does, line by line.
//! The assertions below it check the same run's outcome.

mod common;

use bytes::Bytes;
use common::*;
use ferry_proto::io::{ConnId, ConnectError, DhtKey};
use ferry_sim::probe::ConnState;
use ferry_sim::{DhtSpec, Fault, HostSpec, LinkOf, LinkSpec, Nat, Probe, RouterKind, Step, World};

#[test]
fn a_small_world_reads_as_a_trace() {
    let mut b = World::builder(2026);
    let epoch = b.epoch();
    b.dht(DhtSpec {
        latency: ms(50),
        jitter: ms(0),
        ..DhtSpec::default()
    });
    let (home, _) = site(
        &mut b,
        "home",
        [203, 0, 113, 1],
        RouterKind::Nat(Nat::port_restricted_cone()),
    );
    let key = DhtKey([0xab; 20]);
    let server = Probe::new(epoch)
        .at(ms(0), listen(443))
        .at(ms(0), Step::DhtListen(key))
        .echo();
    let s = public(&mut b, "server", [198, 51, 100, 7], server);
    let alice = Probe::new(epoch)
        .at(
            ms(0),
            Step::DhtPut {
                key,
                value: Bytes::from_static(b"alice is home"),
            },
        )
        .at(ms(100), Step::connect(1, sa("198.51.100.7:443")))
        .at(ms(100), Step::connect(2, sa("198.51.100.7:80")))
        .at(
            ms(200),
            Step::Send {
                conn: ConnId::Connect(1),
                data: Bytes::from(vec![7; 100_000]),
            },
        )
        .at(ms(200), Step::HalfClose(ConnId::Connect(1)));
    let a = b.host(
        HostSpec::new("alice", home)
            .v4([192, 168, 1, 2])
            .link(LinkSpec::latency(ms(5)).with_bandwidth(1_000_000)),
        alice,
    );
    b.fault(ms(250), Fault::LinkDown(LinkOf::Host(a)))
        .fault(ms(400), Fault::LinkUp(LinkOf::Host(a)));
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(2));
    insta::assert_snapshot!(world.trace());

    no_violations(&world);
    let pa = probe(&world, a);
    assert_eq!(pa.state(ConnId::Connect(1)), Some(ConnState::Closed));
    assert_eq!(pa.received(ConnId::Connect(1)).len(), 100_000);
    assert_eq!(
        pa.state(ConnId::Connect(2)),
        Some(ConnState::Failed(ConnectError::Refused))
    );
    assert_eq!(probe(&world, s).dht_values().len(), 1);
    assert_eq!(world.live_connections(), 0);
}

#[test]
fn a_transfer_decoder_shows_the_transfer_protocol_on_the_wire() {
    let mut b = World::builder(1);
    let epoch = b.epoch();
    let header = "Content-Length: 5\nDisplay-Name: a.txt\nOffset: 0\n\n";
    let receiver = Probe::new(epoch).at(ms(0), listen(443)).at(
        ms(100),
        Step::Send {
            conn: ConnId::Accepted(1),
            data: Bytes::from_static(b"GO\n"),
        },
    );
    public(&mut b, "bob", [198, 51, 100, 7], receiver);
    let sender = Probe::new(epoch)
        .at(ms(10), Step::connect(1, sa("198.51.100.7:443")))
        .at(
            ms(60),
            Step::Send {
                conn: ConnId::Connect(1),
                data: Bytes::from(header),
            },
        )
        .at(
            ms(200),
            Step::Send {
                conn: ConnId::Connect(1),
                data: Bytes::from_static(b"hello"),
            },
        );
    public(&mut b, "alice", [198, 51, 100, 8], sender);
    let mut world = b
        .trace_with(ferry_proto::trace::TransferDecoder::default())
        .build()
        .expect("world");
    world.run_for(secs(1));
    let trace = world.trace();
    assert!(
        trace.contains("alice  → bob#1  HEADER Content-Length=5 Display-Name=\"a.txt\" Offset=0"),
        "{trace}"
    );
    assert!(trace.contains("bob    → alice#1 GO"), "{trace}");
    assert!(trace.contains("alice  → bob#1  RAW ×1 5 bytes"), "{trace}");
}

#[test]
fn a_simultaneous_open_through_two_nats_reads_as_a_trace() {
    let mut b = World::builder(7);
    let epoch = b.epoch();
    let (net_a, _) = site(
        &mut b,
        "nat-a",
        [203, 0, 113, 1],
        RouterKind::Nat(Nat::port_restricted_cone()),
    );
    let (net_b, _) = site(
        &mut b,
        "nat-b",
        [203, 0, 113, 2],
        RouterKind::Nat(Nat::restricted_cone()),
    );
    let c = ConnId::Connect(1);
    let alice = Probe::new(epoch)
        .at(ms(100), Step::connect_from(1, 5000, sa("203.0.113.2:6000")))
        .at(
            ms(500),
            Step::Send {
                conn: c,
                data: Bytes::from_static(b"hi bob"),
            },
        )
        .at(ms(600), Step::HalfClose(c));
    let bob = Probe::new(epoch)
        .at(ms(120), Step::connect_from(1, 6000, sa("203.0.113.1:5000")))
        .close_on_eof();
    let a = b.host(HostSpec::new("alice", net_a).v4([192, 168, 1, 2]), alice);
    let bb = b.host(HostSpec::new("bob", net_b).v4([192, 168, 7, 9]), bob);
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(2));
    insta::assert_snapshot!(world.trace());

    no_violations(&world);
    assert_eq!(probe(&world, a).state(c), Some(ConnState::Closed));
    assert_eq!(probe(&world, bb).received(c), b"hi bob");
    assert_eq!(world.live_connections(), 0);
}

/// An endpoint whose owner hears plain strings (as a lone TURN client reports its relayed
/// address in a type of its own).
struct Announcer {
    said: bool,
}

impl ferry_proto::io::Endpoint for Announcer {
    type Event = String;

    fn handle_input(
        &mut self,
        _: std::time::Instant,
        _: ferry_proto::io::Input,
    ) -> Result<(), ferry_proto::Error> {
        Ok(())
    }
    fn handle_timeout(&mut self, _: std::time::Instant) {}
    fn poll_output(&mut self) -> Option<ferry_proto::io::Output<String>> {
        (!std::mem::replace(&mut self.said, true))
            .then(|| ferry_proto::io::Output::Event("relay at 192.0.2.1:3478".to_owned()))
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        None
    }
}

#[test]
fn endpoints_with_their_own_event_type_are_driven_and_traced() {
    let mut b = World::builder(3);
    let internet = b.internet();
    let lone = b.host(
        HostSpec::new("lone", internet).v4([198, 51, 100, 10]),
        Announcer { said: false },
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(1));
    assert_eq!(
        world.events::<String>(lone),
        vec![(secs(0), "relay at 192.0.2.1:3478".to_owned())]
    );
    assert!(
        world.events::<ferry_proto::io::Event>(lone).is_empty(),
        "events are kept with their type"
    );
    assert!(
        world
            .trace()
            .contains("lone   ·        relay at 192.0.2.1:3478"),
        "{}",
        world.trace()
    );
}
