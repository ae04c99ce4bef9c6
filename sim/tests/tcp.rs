//! The TCP model: handshake outcomes, the stream, half-close, close, reset, flow control,
//! bandwidth, and simultaneous open through NATs.

mod common;

use bytes::Bytes;
use common::*;
use ferry_proto::io::{ConnId, ConnectError};
use ferry_proto::transfer::{PartialKey, TransferId};
use ferry_sim::probe::ConnState;
use ferry_sim::{ClosedPorts, HostSpec, LinkSpec, Nat, Probe, RouterKind, Step, World, content};

const C1: ConnId = ConnId::Connect(1);

/// Where the resumed file's partial data is kept.
const HELD: PartialKey = PartialKey {
    sender: None,
    transfer: TransferId(7),
};

fn data(seed: u64, len: usize) -> Bytes {
    Bytes::from(content::range(seed, 0, len))
}

#[test]
fn a_closed_port_refuses_after_one_round_trip() {
    let mut b = World::builder(1);
    let epoch = b.epoch();
    public(&mut b, "s", [198, 51, 100, 7], Probe::new(epoch));
    let a = public(
        &mut b,
        "a",
        [198, 51, 100, 8],
        Probe::new(epoch).at(ms(0), Step::connect(1, sa("198.51.100.7:80"))),
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(1));
    let c = probe(&world, a).conn(C1).expect("c1").clone();
    assert_eq!(c.state, ConnState::Failed(ConnectError::Refused));
    assert_eq!(
        c.ended_at,
        Some(ms(40)),
        "two 10 ms links each way\n{}",
        world.trace()
    );
    assert_eq!(world.live_connections(), 0);
    no_violations(&world);
}

#[test]
fn a_port_that_drops_syns_makes_the_connect_time_out() {
    let mut b = World::builder(1);
    let epoch = b.epoch();
    let internet = b.internet();
    b.host(
        HostSpec::new("s", internet)
            .v4([198, 51, 100, 7])
            .closed_ports(ClosedPorts::Drop),
        Probe::new(epoch),
    );
    let step = Step::Connect {
        conn: C1,
        remote: sa("198.51.100.7:80"),
        local_port: None,
        timeout: secs(3),
    };
    let a = public(
        &mut b,
        "a",
        [198, 51, 100, 8],
        Probe::new(epoch).at(ms(0), step),
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(5));
    let c = probe(&world, a).conn(C1).expect("c1").clone();
    assert_eq!(c.state, ConnState::Failed(ConnectError::TimedOut));
    assert_eq!(c.ended_at, Some(secs(3)));
    assert_eq!(world.live_connections(), 0);
}

#[test]
fn no_address_of_the_family_is_unreachable_and_a_bad_listen_fails() {
    let mut b = World::builder(1);
    let epoch = b.epoch();
    let a = public(
        &mut b,
        "a",
        [198, 51, 100, 8],
        Probe::new(epoch)
            .at(ms(0), Step::connect(1, sa("[2001:db8::1]:80")))
            .at(
                ms(0),
                Step::Listen {
                    listener: ferry_proto::io::ListenerId(9),
                    local: sa("10.9.9.9:1"),
                },
            )
            .at(ms(0), listen(80))
            .at(
                ms(0),
                Step::Listen {
                    listener: ferry_proto::io::ListenerId(10),
                    local: sa("0.0.0.0:80"),
                },
            ),
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(1));
    let p = probe(&world, a);
    assert_eq!(
        p.state(C1),
        Some(ConnState::Failed(ConnectError::Unreachable))
    );
    assert!(
        p.listener(ferry_proto::io::ListenerId(9))
            .is_some_and(|r| r.is_err())
    );
    assert!(
        p.listener(ferry_proto::io::ListenerId(80))
            .is_some_and(|r| r.is_ok())
    );
    assert!(
        p.listener(ferry_proto::io::ListenerId(10))
            .is_some_and(|r| r.is_err()),
        "port in use"
    );
}

/// Alice sends `len` bytes to an echo server, half-closes, and reads the echo to the end.
fn echo_run(link: LinkSpec, len: usize) -> World {
    let mut b = World::builder(7);
    let epoch = b.epoch();
    let internet = b.internet();
    b.host(
        HostSpec::new("s", internet)
            .v4([198, 51, 100, 7])
            .link(link),
        Probe::new(epoch).at(ms(0), listen(443)).echo(),
    );
    let alice = Probe::new(epoch)
        .at(ms(1), Step::connect(1, sa("198.51.100.7:443")))
        .at(
            ms(100),
            Step::Send {
                conn: C1,
                data: data(1, len),
            },
        )
        .at(ms(100), Step::HalfClose(C1));
    b.host(
        HostSpec::new("alice", internet)
            .v4([198, 51, 100, 8])
            .link(link),
        alice,
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(120));
    world
}

#[test]
fn bytes_arrive_in_order_and_half_close_then_close_end_both_sides() {
    let world = echo_run(LinkSpec::latency(ms(10)).with_jitter(ms(8)), 1_000_000);
    no_violations(&world);
    let alice = world.host("alice").expect("alice");
    let p = probe(&world, alice);
    let c = p.conn(C1).expect("c1");
    assert_eq!(
        c.received,
        content::range(1, 0, 1_000_000),
        "every byte, in order, despite jitter"
    );
    assert_eq!(
        c.state,
        ConnState::Closed,
        "alice half-closed, then the server's FIN came"
    );
    assert_eq!(c.writable, 1_000_000, "all credit came back");
    let s = probe(&world, world.host("s").expect("s"));
    let a1 = s.accepted()[0];
    assert_eq!(
        s.state(a1),
        Some(ConnState::Dropped),
        "the server closed on end of stream"
    );
    assert_eq!(world.live_connections(), 0, "nothing leaks");
    let trace = world.trace();
    assert!(trace.contains("BYTES ×"), "bulk bytes collapse:\n{trace}");
}

#[test]
fn bandwidth_makes_transfer_time_mean_something() {
    let world = echo_run(
        LinkSpec::latency(ms(10)).with_bandwidth(1_000_000),
        1_000_000,
    );
    no_violations(&world);
    let p = probe(&world, world.host("alice").expect("alice"));
    let c = p.conn(C1).expect("c1");
    assert_eq!(c.received.len(), 1_000_000);
    let took = c.ended_at.expect("ended") - ms(100);
    // One megabyte each way over 1 MB/s links: at least a second each way (the echo
    // overlaps the upload, so a little over one second in all), never instant.
    assert!(took >= secs(1) && took < secs(3), "took {took:?}");
}

#[test]
fn a_paused_reader_pushes_back_on_the_sender() {
    let mut b = World::builder(8);
    let epoch = b.epoch();
    // Accepted connections are named by the simulator in order: the first is a1.
    let a1 = ConnId::Accepted(1);
    let server = Probe::new(epoch)
        .at(ms(0), listen(443))
        .at(ms(50), Step::Pause(a1))
        .at(secs(5), Step::Resume(a1));
    let s = public(&mut b, "s", [198, 51, 100, 7], server);
    let alice = Probe::new(epoch)
        .at(ms(1), Step::connect(1, sa("198.51.100.7:443")))
        .at(
            ms(100),
            Step::Send {
                conn: C1,
                data: data(2, 2_000_000),
            },
        );
    let a = public(&mut b, "alice", [198, 51, 100, 8], alice);
    let mut world = b.build().expect("world");
    world.run_until(secs(4));
    let credit = probe(&world, a).conn(C1).expect("c1").writable;
    assert_eq!(
        credit,
        ferry_sim::RECEIVE_WINDOW,
        "the sender stops at the receiver's window"
    );
    assert!(
        probe(&world, s).received(a1).is_empty(),
        "nothing read while paused"
    );
    world.run_until(secs(10));
    assert_eq!(probe(&world, a).conn(C1).expect("c1").writable, 2_000_000);
    assert_eq!(
        probe(&world, s).received(a1),
        &content::range(2, 0, 2_000_000)[..]
    );
    no_violations(&world);
}

#[test]
fn a_reset_reaches_the_peer_and_data_to_a_closed_socket_is_answered_with_a_reset() {
    let mut b = World::builder(9);
    let epoch = b.epoch();
    let server = Probe::new(epoch)
        .at(ms(0), listen(443))
        .at(ms(0), listen(444))
        .at(ms(60), Step::Close(ConnId::Accepted(2)));
    let s = public(&mut b, "s", [198, 51, 100, 7], server);
    let alice = Probe::new(epoch)
        .at(ms(1), Step::connect(1, sa("198.51.100.7:443")))
        .at(ms(2), Step::connect(2, sa("198.51.100.7:444")))
        .at(ms(100), Step::Reset(C1))
        .at(
            ms(100),
            Step::Send {
                conn: ConnId::Connect(2),
                data: Bytes::from_static(b"too late"),
            },
        );
    let a = public(&mut b, "alice", [198, 51, 100, 8], alice);
    let mut world = b.trace().build().expect("world");
    world.run_until(secs(1));
    no_violations(&world);
    let (sp, ap) = (probe(&world, s), probe(&world, a));
    assert_eq!(
        sp.state(ConnId::Accepted(1)),
        Some(ConnState::Reset),
        "{}",
        world.trace()
    );
    // a2's close sent a FIN first: alice saw end of stream, then her bytes met a closed
    // socket and came back as a reset.
    assert_eq!(
        ap.state(ConnId::Connect(2)),
        Some(ConnState::Reset),
        "{}",
        world.trace()
    );
    assert_eq!(world.live_connections(), 0, "{}", world.trace());
}

#[test]
fn simultaneous_open_through_two_port_restricted_nats() {
    for skew in [0, 7, 30] {
        let mut b = World::builder(10 + skew);
        let epoch = b.epoch();
        let (net_a, _) = site(
            &mut b,
            "home-a",
            [203, 0, 113, 1],
            RouterKind::Nat(Nat::port_restricted_cone()),
        );
        let (net_b, _) = site(
            &mut b,
            "home-b",
            [203, 0, 113, 2],
            RouterKind::Nat(Nat::port_restricted_cone()),
        );
        let alice = Probe::new(epoch)
            .at(ms(100), Step::connect_from(1, 5000, sa("203.0.113.2:6000")))
            .at(
                secs(1),
                Step::Send {
                    conn: C1,
                    data: Bytes::from_static(b"from alice"),
                },
            );
        let bob = Probe::new(epoch)
            .at(
                ms(100 + skew),
                Step::connect_from(1, 6000, sa("203.0.113.1:5000")),
            )
            .at(
                secs(1),
                Step::Send {
                    conn: C1,
                    data: Bytes::from_static(b"from bob"),
                },
            );
        let a = b.host(HostSpec::new("alice", net_a).v4([192, 168, 1, 2]), alice);
        let bb = b.host(HostSpec::new("bob", net_b).v4([192, 168, 1, 2]), bob);
        let mut world = b.trace().build().expect("world");
        world.run_for(secs(2));
        no_violations(&world);
        let (pa, pb) = (probe(&world, a), probe(&world, bb));
        assert_eq!(
            pa.state(C1),
            Some(ConnState::Open),
            "skew {skew}\n{}",
            world.trace()
        );
        assert_eq!(
            pb.state(C1),
            Some(ConnState::Open),
            "skew {skew}\n{}",
            world.trace()
        );
        assert_eq!(pa.received(C1), b"from bob");
        assert_eq!(pb.received(C1), b"from alice");
        assert!(
            pa.accepted().is_empty() && pb.accepted().is_empty(),
            "nobody listens"
        );
        assert_eq!(
            world.live_connections(),
            1,
            "two attempts became one connection"
        );
        assert!(world.trace().contains("simultaneous open"));
    }
}

#[test]
fn simultaneous_open_fails_between_symmetric_nats() {
    let mut b = World::builder(11);
    let epoch = b.epoch();
    let (net_a, _) = site(
        &mut b,
        "home-a",
        [203, 0, 113, 1],
        RouterKind::Nat(Nat::symmetric()),
    );
    let (net_b, _) = site(
        &mut b,
        "home-b",
        [203, 0, 113, 2],
        RouterKind::Nat(Nat::symmetric()),
    );
    let a = b.host(
        HostSpec::new("alice", net_a).v4([192, 168, 1, 2]),
        Probe::new(epoch).at(ms(100), Step::connect_from(1, 5000, sa("203.0.113.2:6000"))),
    );
    let bb = b.host(
        HostSpec::new("bob", net_b).v4([192, 168, 1, 2]),
        Probe::new(epoch).at(ms(100), Step::connect_from(1, 6000, sa("203.0.113.1:5000"))),
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(11));
    for h in [a, bb] {
        assert_eq!(
            probe(&world, h).state(C1),
            Some(ConnState::Failed(ConnectError::TimedOut))
        );
    }
    assert_eq!(world.live_connections(), 0);
}

#[test]
fn misbehaving_endpoints_are_reported_not_fatal() {
    let mut b = World::builder(12);
    let epoch = b.epoch();
    let a = public(
        &mut b,
        "a",
        [198, 51, 100, 8],
        Probe::new(epoch)
            .at(
                ms(0),
                Step::Send {
                    conn: ConnId::Connect(77),
                    data: Bytes::from_static(b"x"),
                },
            )
            .at(
                ms(0),
                Step::Connect {
                    conn: ConnId::Accepted(3),
                    remote: sa("198.51.100.7:1"),
                    local_port: None,
                    timeout: secs(1),
                },
            )
            .at(ms(0), Step::HalfClose(ConnId::Connect(5)))
            .at(
                ms(0),
                Step::File(ferry_proto::io::FileOp::Close {
                    file: ferry_proto::io::FileId(4),
                }),
            ),
    );
    let mut world = b.build().expect("world");
    world.run_for(secs(1));
    assert_eq!(world.violation_count(), 4, "{:#?}", world.violations());
    assert!(world.violations().iter().all(|v| v.host == "a"));
    let _ = a;
}

#[test]
fn files_are_served_from_seeds_and_received_files_are_committed_under_their_name() {
    use ferry_proto::io::{FileId, FileOp, FileResult};
    use ferry_proto::transfer::SafeName;
    let mut b = World::builder(13);
    let epoch = b.epoch();
    let internet = b.internet();
    let name = SafeName::from_display_name("movie.mkv").expect("name");
    let source = ferry_sim::files::Source {
        size: 3_000_000,
        seed: 77,
    };
    let mut p = Probe::new(epoch)
        .at(
            ms(0),
            Step::File(FileOp::OpenSource {
                file: FileId(1),
                source: "movie".into(),
            }),
        )
        .at(
            ms(0),
            Step::File(FileOp::Read {
                file: FileId(1),
                offset: 1000,
                len: 16,
            }),
        )
        .at(
            ms(0),
            Step::File(FileOp::Digest {
                file: FileId(1),
                len: source.size,
            }),
        )
        .at(
            ms(0),
            Step::File(FileOp::OpenPartial {
                file: FileId(2),
                name: name.clone(),
                size: source.size,
                key: HELD,
                resume: true,
                place: None,
            }),
        );
    // The receiver already holds 1 MB of it (a resume) and writes the rest.
    let mut at = 1_000_000;
    while at < source.size {
        let n = 500_000.min(source.size - at);
        let data = Bytes::from(content::range(77, at, n as usize));
        p = p.at(
            ms(1),
            Step::File(FileOp::Write {
                file: FileId(2),
                offset: at,
                data,
            }),
        );
        at += n;
    }
    p = p
        .at(
            ms(2),
            Step::File(FileOp::Digest {
                file: FileId(2),
                len: source.size,
            }),
        )
        .at(ms(2), Step::File(FileOp::Commit { file: FileId(2) }));
    let h = b.host(
        HostSpec::new("h", internet)
            .v4([198, 51, 100, 7])
            .source("movie", source.size, source.seed)
            .partial(HELD, source.size, 77, 1_000_000),
        p,
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(1));
    no_violations(&world);
    let results = probe(&world, h).file_results();
    let digest = source.digest();
    assert!(
        results.contains(&FileResult::Opened {
            file: FileId(2),
            len: 1_000_000
        }),
        "resume from what is held"
    );
    assert!(results.contains(&FileResult::Data {
        file: FileId(1),
        offset: 1000,
        data: Bytes::from(content::range(77, 1000, 16))
    }));
    assert!(results.contains(&FileResult::Digest {
        file: FileId(1),
        digest
    }));
    assert!(results.contains(&FileResult::Digest {
        file: FileId(2),
        digest
    }));
    assert!(results.contains(&FileResult::Committed {
        file: FileId(2),
        name: "movie.mkv".into()
    }));
    let stored = world.received_file(h, "movie.mkv").expect("committed");
    assert_eq!((stored.len, stored.digest()), (source.size, digest));
    assert!(
        world.partial_file(h, HELD).is_none(),
        "the partial got its final name"
    );
    assert_eq!(world.open_files(h), 1, "the source is still open");
}

#[test]
fn absurd_timeouts_and_foreign_ids_do_not_crash_the_world() {
    let mut b = World::builder(14);
    let epoch = b.epoch();
    let step = Step::Connect {
        conn: C1,
        remote: sa("198.51.100.9:1"),
        local_port: Some(0),
        timeout: std::time::Duration::MAX,
    };
    let a = public(
        &mut b,
        "a",
        [198, 51, 100, 8],
        Probe::new(epoch).at(ms(0), step),
    );
    let mut world = b.build().expect("world");
    // A fault naming a host from another world is ignored rather than trusted.
    let stranger = {
        let mut other = World::builder(0);
        let e = other.epoch();
        for i in 0..5u8 {
            public(
                &mut other,
                &format!("x{i}"),
                [198, 51, 100, 20 + i],
                Probe::new(e),
            );
        }
        public(&mut other, "far", [198, 51, 100, 30], Probe::new(e))
    };
    world.schedule(
        ms(0),
        ferry_sim::Fault::Intercept {
            target: sa("198.51.100.9:1"),
            by: stranger,
        },
    );
    world.schedule(
        ms(0),
        ferry_sim::Fault::LinkDown(ferry_sim::LinkOf::Host(stranger)),
    );
    world.schedule(
        ms(0),
        ferry_sim::Fault::ResetConnections {
            host: stranger,
            port: None,
        },
    );
    world.run_for(secs(100));
    assert_eq!(
        probe(&world, a).state(C1),
        Some(ConnState::Opening),
        "nobody answers, and the timeout is for ever"
    );
    no_violations(&world);
}

#[test]
fn a_syn_ack_after_the_connect_timed_out_resets_the_accepted_side() {
    let mut b = World::builder(15);
    let epoch = b.epoch();
    let internet = b.internet();
    // 400 ms each way: the SYN gets there, but the connect gives up after 500 ms.
    let slow = LinkSpec::latency(ms(200));
    let s = b.host(
        HostSpec::new("s", internet)
            .v4([198, 51, 100, 7])
            .link(slow),
        Probe::new(epoch).at(ms(0), listen(443)),
    );
    let step = Step::Connect {
        conn: C1,
        remote: sa("198.51.100.7:443"),
        local_port: None,
        timeout: ms(500),
    };
    let a = b.host(
        HostSpec::new("a", internet)
            .v4([198, 51, 100, 8])
            .link(slow),
        Probe::new(epoch).at(ms(0), step),
    );
    let mut world = b.trace().build().expect("world");
    world.run_for(secs(3));
    no_violations(&world);
    assert_eq!(
        probe(&world, a).state(C1),
        Some(ConnState::Failed(ConnectError::TimedOut))
    );
    assert_eq!(
        probe(&world, s).state(ConnId::Accepted(1)),
        Some(ConnState::Reset),
        "{}",
        world.trace()
    );
    assert_eq!(world.live_connections(), 0);
}

#[test]
fn loss_costs_retransmission_time_but_never_bytes() {
    let clean = echo_run(LinkSpec::latency(ms(10)), 300_000);
    let lossy = echo_run(LinkSpec::latency(ms(10)).with_loss(0.2), 300_000);
    let took = |w: &World| {
        let p = probe(w, w.host("alice").expect("alice"));
        let c = p.conn(C1).expect("c1");
        assert_eq!(
            c.received,
            content::range(1, 0, 300_000),
            "every byte, in order"
        );
        assert_eq!(c.state, ConnState::Closed);
        c.ended_at.expect("ended")
    };
    let (t_clean, t_lossy) = (took(&clean), took(&lossy));
    assert!(
        t_lossy >= t_clean + ms(200),
        "losses cost at least one RTO: {t_clean:?} vs {t_lossy:?}"
    );
    no_violations(&lossy);
}

#[test]
fn a_lost_syn_is_retried_after_a_second() {
    // Each crossing of alice's link is lost with probability 0.3; over seeds, some connects
    // take one or more handshake timeouts longer, and none is lost for good.
    let mut delays = Vec::new();
    for seed in 0..20 {
        let mut b = World::builder(seed);
        let epoch = b.epoch();
        public(
            &mut b,
            "s",
            [198, 51, 100, 7],
            Probe::new(epoch).at(ms(0), listen(443)),
        );
        let internet = b.internet();
        let a = b.host(
            HostSpec::new("a", internet)
                .v4([198, 51, 100, 8])
                .link(LinkSpec::latency(ms(10)).with_loss(0.3)),
            Probe::new(epoch).at(
                ms(0),
                Step::Connect {
                    conn: C1,
                    remote: sa("198.51.100.7:443"),
                    local_port: None,
                    timeout: secs(60),
                },
            ),
        );
        let mut world = b.build().expect("world");
        world.run_for(secs(60));
        let c = probe(&world, a).conn(C1).expect("c1").clone();
        assert_eq!(c.state, ConnState::Open);
        delays.push(c.opened_at.expect("opened"));
    }
    assert!(
        delays.iter().any(|d| *d < secs(1)),
        "some handshakes lose nothing"
    );
    assert!(
        delays.iter().any(|d| *d >= secs(1)),
        "some lose a SYN or SYN-ACK: {delays:?}"
    );
}

#[test]
fn a_window_bound_stream_moves_one_window_per_round_trip() {
    // 40 ms one way, unlimited bandwidth: 2 MB with a 256 KiB window takes about eight
    // round trips; with an 8 MiB window, about one.
    let run = |window: usize| {
        let mut b = World::builder(16);
        let epoch = b.epoch();
        let internet = b.internet();
        let link = LinkSpec::latency(ms(20));
        let s = b.host(
            HostSpec::new("s", internet)
                .v4([198, 51, 100, 7])
                .link(link)
                .receive_window(window),
            Probe::new(epoch).at(ms(0), listen(443)),
        );
        let alice = Probe::new(epoch)
            .at(ms(0), Step::connect(1, sa("198.51.100.7:443")))
            .at(
                ms(100),
                Step::Send {
                    conn: C1,
                    data: data(4, 2_000_000),
                },
            );
        b.host(
            HostSpec::new("a", internet)
                .v4([198, 51, 100, 8])
                .link(link),
            alice,
        );
        let mut world = b.build().expect("world");
        let mut done = None;
        while done.is_none() && world.now() < secs(10) {
            world.run_for(ms(1));
            if probe(&world, s).received(ConnId::Accepted(1)).len() == 2_000_000 {
                done = Some(world.now() - ms(100));
            }
        }
        done.expect("all arrived")
    };
    let (small, large) = (run(ferry_sim::RECEIVE_WINDOW), run(8 << 20));
    assert!(small >= ms(560) && small <= ms(720), "{small:?}");
    assert!(large <= ms(45), "{large:?}");
}

#[test]
fn a_world_with_nothing_left_to_do_goes_idle() {
    let mut b = World::builder(17);
    let epoch = b.epoch();
    public(
        &mut b,
        "s",
        [198, 51, 100, 7],
        Probe::new(epoch).at(ms(0), listen(443)).echo(),
    );
    let alice = Probe::new(epoch)
        .at(ms(5), Step::connect(1, sa("198.51.100.7:443")))
        .at(
            ms(100),
            Step::Send {
                conn: C1,
                data: Bytes::from_static(b"ping"),
            },
        )
        .at(ms(100), Step::HalfClose(C1));
    public(&mut b, "a", [198, 51, 100, 8], alice);
    let mut world = b.build().expect("world");
    assert!(world.run_until_idle(secs(3600)), "nothing keeps it busy");
    assert!(
        world.now() < secs(1),
        "the clock stopped at the last event: {:?}",
        world.now()
    );
    assert_eq!(world.live_connections(), 0);
}

/// An endpoint that listens on 443 and resets every connection the moment it accepts it
/// (as a TURN relay does with a peer that has no permission).
struct Slammer {
    listening: bool,
    out: std::collections::VecDeque<ferry_proto::io::Output>,
}

impl ferry_proto::io::Endpoint for Slammer {
    type Event = ferry_proto::io::Event;

    fn handle_input(
        &mut self,
        _: std::time::Instant,
        input: ferry_proto::io::Input,
    ) -> Result<(), ferry_proto::Error> {
        if let ferry_proto::io::Input::Accepted { conn, .. } = input {
            self.out.push_back(ferry_proto::io::Output::Reset { conn });
        }
        Ok(())
    }
    fn handle_timeout(&mut self, _: std::time::Instant) {}
    fn poll_output(&mut self) -> Option<ferry_proto::io::Output> {
        if !std::mem::replace(&mut self.listening, true) {
            return Some(ferry_proto::io::Output::Listen {
                listener: ferry_proto::io::ListenerId(443),
                local: sa("0.0.0.0:443"),
            });
        }
        self.out.pop_front()
    }
    fn poll_timeout(&self) -> Option<std::time::Instant> {
        None
    }
}

/// What the accepting side sends at once — a reply, or a RST — reaches the connecting side
/// after the SYN-ACK, however the lossy, jittery link delays the SYN-ACK: the connect
/// succeeds, then the bytes or the reset come.
#[test]
fn what_an_accepting_side_sends_at_once_arrives_after_its_syn_ack() {
    let lossy = LinkSpec::latency(ms(10)).with_jitter(ms(30)).with_loss(0.3);
    for seed in 0..40 {
        let mut b = World::builder(seed);
        let epoch = b.epoch();
        let internet = b.internet();
        b.host(
            HostSpec::new("replier", internet)
                .v4([198, 51, 100, 7])
                .link(lossy),
            Probe::new(epoch).at(ms(0), listen(443)).reply("hi"),
        );
        b.host(
            HostSpec::new("slammer", internet)
                .v4([198, 51, 100, 8])
                .link(lossy),
            Slammer {
                listening: false,
                out: Default::default(),
            },
        );
        // Patient connects: the lost SYNs cost their retransmissions, never the connect.
        let connect = |n, to: &str| Step::Connect {
            conn: ConnId::Connect(n),
            remote: sa(to),
            local_port: None,
            timeout: secs(300),
        };
        let client = Probe::new(epoch)
            .at(ms(10), connect(1, "198.51.100.7:443"))
            .at(ms(10), connect(2, "198.51.100.8:443"));
        let a = public(&mut b, "alice", [198, 51, 100, 9], client);
        let mut world = b.trace().build().expect("world");
        world.run_for(secs(600));
        no_violations(&world);
        let p = probe(&world, a);
        assert_eq!(p.received(C1), b"hi", "seed {seed}\n{}", world.trace());
        assert_eq!(
            p.state(ConnId::Connect(2)),
            Some(ConnState::Reset),
            "seed {seed}: connected, then reset\n{}",
            world.trace()
        );
    }
}
