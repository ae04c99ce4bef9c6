//! The channel multiplexer: two sides wired back to back.

use std::sync::LazyLock;
use std::time::Instant;

use bytes::BytesMut;
use ferry_proto::channel::{
    ChannelError, EARLY_PER_CHANNEL, EARLY_PER_CONNECTION, MAX_UNIT, Mux, MuxError, MuxEvent,
    OPEN_TIMEOUT, Side, encode_unit,
};

/// The one instant these tests run at (the multiplexer reads no clock).
static T0: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Everything `m` has to write, as one stream.
fn wire(m: &mut Mux) -> Vec<u8> {
    std::iter::from_fn(|| m.poll_transmit())
        .flat_map(|t| t.to_vec())
        .collect()
}

/// Moves every pending unit from `a` to `b`, in pieces of `step` bytes.
fn carry(a: &mut Mux, b: &mut Mux, step: usize) {
    let wire = wire(a);
    for piece in wire.chunks(step.max(1)) {
        b.handle_bytes(*T0, piece).expect("well-formed units");
    }
}

/// The events, with a channel's consecutive data joined: a channel is a byte stream, and a
/// unit cut by the transport comes out in pieces.
fn events(m: &mut Mux) -> Vec<MuxEvent> {
    let mut out: Vec<MuxEvent> = Vec::new();
    while let Some(event) = m.poll_event() {
        if let (
            Some(MuxEvent::Data { channel: a, data }),
            MuxEvent::Data {
                channel: b,
                data: more,
            },
        ) = (out.last_mut(), &event)
            && a == b
        {
            *data = [&data[..], &more[..]].concat().into();
            continue;
        }
        out.push(event);
    }
    out
}

#[test]
fn a_unit_cut_by_the_transport_comes_out_as_it_arrives_without_its_header() {
    let (mut c, mut s) = (Mux::new(Side::Client), Mux::new(Side::Server));
    let ch = c.open(*T0, "x").expect("open");
    carry(&mut c, &mut s, 1000);
    s.accept(*T0, ch).expect("offered");
    carry(&mut s, &mut c, 1000);
    let _ = (events(&mut s), events(&mut c));
    let data: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    c.send(*T0, ch, &data).expect("open");
    let wire = wire(&mut c);
    // The header (5 bytes: array, channel, bin16 and its length) is cut after its second
    // byte, the data after 300 bytes.
    s.receive(*T0, bytes::Bytes::copy_from_slice(&wire[..2]))
        .expect("a header's start");
    assert_eq!(s.poll_event(), None, "half a header is no data");
    s.receive(*T0, bytes::Bytes::copy_from_slice(&wire[2..305]))
        .expect("the rest of the header");
    assert_eq!(
        s.poll_event(),
        Some(MuxEvent::Data {
            channel: ch,
            data: data[..300].to_vec().into()
        }),
        "the first 300 bytes come out before the unit is whole"
    );
    s.receive(*T0, bytes::Bytes::copy_from_slice(&wire[305..]))
        .expect("the rest");
    assert_eq!(
        s.poll_event(),
        Some(MuxEvent::Data {
            channel: ch,
            data: data[300..].to_vec().into()
        })
    );
    assert_eq!(s.poll_event(), None);
}

#[test]
fn units_written_beside_their_data_are_the_units_send_writes() {
    let (mut c, mut s) = (Mux::new(Side::Client), Mux::new(Side::Server));
    let ch = c.open(*T0, "x").expect("open");
    carry(&mut c, &mut s, 1000);
    s.accept(*T0, ch).expect("offered");
    carry(&mut s, &mut c, 1000);
    for len in [
        1,
        255,
        256,
        MAX_UNIT,
        MAX_UNIT + 1,
        MAX_UNIT + 6,
        3 * MAX_UNIT + 7,
    ] {
        let data: Vec<u8> = (0..len).map(|i| i as u8).collect();
        // In pieces cut anywhere (a DATA frame's header before its file bytes, say): the
        // same bytes as `send` of the whole.
        for cut in [0, 1, 5, len / 2, len].map(|cut| cut.min(len)) {
            let parts = [&data[..cut], &data[cut..]];
            let joined: Vec<u8> = c
                .units(ch, &parts)
                .expect("open")
                .iter()
                .flat_map(|(header, pieces)| [&[header.as_bytes()][..], pieces].concat())
                .flatten()
                .copied()
                .collect();
            c.send(*T0, ch, &data).expect("open");
            let sent: Vec<u8> = std::iter::from_fn(|| c.poll_transmit())
                .flat_map(|t| t.to_vec())
                .collect();
            assert_eq!(joined, sent, "{len} bytes cut at {cut}");
        }
    }
    assert_eq!(
        c.units(ch + 2, &[b"x"]).err(),
        Some(ChannelError::NotOpen(ch + 2))
    );
}

#[test]
fn open_accept_data_both_ways_and_end_whatever_the_split() {
    for step in [1, 2, 3, 7, 100, 70_000] {
        let (mut c, mut s) = (Mux::new(Side::Client), Mux::new(Side::Server));
        let ch = c.open(*T0, "file-transfer://42").expect("open");
        assert_eq!(ch % 2, 1, "the client picks odd numbers");
        carry(&mut c, &mut s, step);
        assert_eq!(
            events(&mut s),
            [MuxEvent::OpenRequest {
                channel: ch,
                name: "file-transfer://42".into()
            }]
        );
        s.accept(*T0, ch).expect("offered");
        carry(&mut s, &mut c, step);
        assert_eq!(events(&mut c), [MuxEvent::Opened { channel: ch }]);
        let big = vec![5u8; MAX_UNIT + 10];
        c.send(*T0, ch, &big).expect("open");
        s.send(*T0, ch, b"GO 0\n").expect("open");
        carry(&mut c, &mut s, step);
        carry(&mut s, &mut c, step);
        let got: Vec<u8> = events(&mut s)
            .into_iter()
            .flat_map(|e| match e {
                MuxEvent::Data { data, .. } => data.to_vec(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(got, big, "step {step}");
        assert_eq!(
            events(&mut c),
            [MuxEvent::Data {
                channel: ch,
                data: "GO 0\n".into()
            }]
        );
        c.end(*T0, ch).expect("open");
        carry(&mut c, &mut s, step);
        assert_eq!(events(&mut s), [MuxEvent::Ended { channel: ch }]);
        assert_eq!(
            s.send(*T0, ch, b"still allowed"),
            Ok(()),
            "the other direction stays open"
        );
        s.end(*T0, ch).expect("open");
        carry(&mut s, &mut c, step);
        assert_eq!(
            events(&mut c),
            [
                MuxEvent::Data {
                    channel: ch,
                    data: "still allowed".into()
                },
                MuxEvent::Ended { channel: ch }
            ]
        );
        assert_eq!(
            (c.channels(), s.channels()),
            (0, 0),
            "both ended: the channel is gone"
        );
    }
}

#[test]
fn crossing_requests_never_collide_and_declines_are_heard() {
    let (mut c, mut s) = (Mux::new(Side::Client), Mux::new(Side::Server));
    let a = c.open(*T0, "a").expect("open");
    let b = s.open(*T0, "b").expect("open");
    assert_ne!(a, b);
    assert_eq!(b % 2, 0);
    carry(&mut c, &mut s, 5);
    carry(&mut s, &mut c, 5);
    assert_eq!(
        events(&mut c),
        [MuxEvent::OpenRequest {
            channel: b,
            name: "b".into()
        }]
    );
    assert_eq!(
        events(&mut s),
        [MuxEvent::OpenRequest {
            channel: a,
            name: "a".into()
        }]
    );
    s.decline(*T0, a).expect("offered");
    carry(&mut s, &mut c, 5);
    assert_eq!(events(&mut c), [MuxEvent::Declined { channel: a }]);
    assert_eq!(c.send(*T0, a, b"x"), Err(ChannelError::NotOpen(a)));
    assert_eq!(
        s.accept(*T0, a),
        Err(ChannelError::NotOpen(a)),
        "already answered"
    );
}

#[test]
fn a_request_on_the_wrong_parity_is_declined_and_stray_data_dropped() {
    let (mut c, mut s) = (Mux::new(Side::Client), Mux::new(Side::Server));
    // A broken (or hostile) client asks for an even channel: the server declines it.
    let mut wire = BytesMut::new();
    // SECURITY: row 28
    let control = rmp_serde::to_vec_named(&serde_json_like(2)).expect("encode");
    encode_unit(0, &control, &mut wire);
    encode_unit(9, b"data for a channel nobody opened", &mut wire);
    s.handle_bytes(*T0, &wire).expect("well-formed");
    assert!(events(&mut s).is_empty());
    carry(&mut s, &mut c, 100);
    assert!(
        events(&mut c).is_empty(),
        "a decline for something the client never asked is ignored"
    );
}

#[derive(serde::Serialize)]
struct Request {
    name: String,
    channel: u16,
    state: u8,
}

fn serde_json_like(channel: u16) -> Request {
    Request {
        name: "x".into(),
        channel,
        state: 0,
    }
}

#[test]
fn malformed_streams_are_errors_that_stay() {
    let cases: [(&[u8], MuxError); 4] = [
        (
            // SECURITY: row 26
            b"\x93\x01\xc4\x00",
            MuxError::Malformed("a unit is a two-element array"),
        ),
        (
            b"\x92\xd0\x01",
            MuxError::Malformed("a channel is an unsigned 16-bit integer"),
        ),
        (
            b"\x92\x01\xa1x",
            MuxError::Malformed("data is a msgpack bin"),
        ),
        // SECURITY: row 27
        (b"\x92\x01\xc6\x00\x01\x00\x00", MuxError::TooLarge(65_536)),
    ];
    for (wire, want) in cases {
        let mut m = Mux::new(Side::Server);
        assert_eq!(m.handle_bytes(*T0, wire), Err(want));
        assert!(
            m.handle_bytes(*T0, b"\x92\x01\xc4\x00").is_err(),
            "once broken, always broken"
        );
    }
}

#[test]
fn unit_bytes_are_msgpack() {
    let mut out = BytesMut::new();
    encode_unit(3, b"hi", &mut out);
    assert_eq!(&out[..], b"\x92\x03\xc4\x02hi");
    let decoded: (u16, serde_bytes::ByteBuf) =
        rmp_serde::from_slice(&out).expect("a msgpack array");
    assert_eq!((decoded.0, decoded.1.into_vec()), (3, b"hi".to_vec()));
    out.clear();
    encode_unit(300, &[0u8; 300], &mut out);
    assert_eq!(&out[..6], b"\x92\xcd\x01\x2c\xc5\x01");
}

#[test]
fn too_many_channels_are_refused() {
    let mut c = Mux::new(Side::Client);
    for _ in 0..ferry_proto::channel::MAX_CHANNELS {
        c.open(*T0, "x").expect("room");
    }
    assert_eq!(c.open(*T0, "one more"), Err(ChannelError::TooMany));
}

#[test]
fn a_peer_gets_a_bounded_share_of_the_channels() {
    use ferry_proto::channel::MAX_PEER_CHANNELS;
    let (mut client, mut server) = (Mux::new(Side::Client), Mux::new(Side::Server));
    // Our own channels are not the peer's share.
    let ours = client.open(*T0, "ours").expect("room");
    for n in 0..MAX_PEER_CHANNELS + 10 {
        server
            .open(*T0, &format!("theirs-{n}"))
            .expect("room on their side");
    }
    carry(&mut server, &mut client, 1000);
    let offered = events(&mut client)
        .into_iter()
        .filter(|e| matches!(e, MuxEvent::OpenRequest { .. }))
        .count();
    assert_eq!(offered, MAX_PEER_CHANNELS);
    assert_eq!(client.refused(), 10);
    carry(&mut client, &mut server, 1000);
    let declined = events(&mut server)
        .into_iter()
        .filter(|e| matches!(e, MuxEvent::Declined { .. }))
        .count();
    assert_eq!(declined, 10, "the peer hears each refusal");
    assert!(client.channels() == MAX_PEER_CHANNELS + 1 && ours % 2 == 1);
}

#[test]
fn a_peer_asking_for_too_many_channels_is_declined_past_the_limit() {
    let mut s = Mux::new(Side::Server);
    let mut wire = BytesMut::new();
    // SECURITY: row 29
    for n in 0..(ferry_proto::channel::MAX_CHANNELS as u16 + 100) {
        let control = rmp_serde::to_vec_named(&serde_json_like(2 * n + 1)).expect("encode");
        encode_unit(0, &control, &mut wire);
    }
    s.handle_bytes(*T0, &wire).expect("well-formed");
    let offered = events(&mut s)
        .iter()
        .filter(|e| matches!(e, MuxEvent::OpenRequest { .. }))
        .count();
    // The peer's share of the channels is the bound (MAX_PEER_CHANNELS, within MAX_CHANNELS).
    let share = ferry_proto::channel::MAX_PEER_CHANNELS;
    assert_eq!(offered, share);
    assert_eq!(s.channels(), share);
    // The rest got a DECLINE each: one unit per request past the limit.
    let declines = std::iter::from_fn(|| s.poll_transmit()).count();
    assert_eq!(declines, ferry_proto::channel::MAX_CHANNELS + 100 - share);
}

#[test]
fn a_request_the_peer_never_answers_is_given_up_and_its_late_answer_ignored() {
    // SECURITY: row 121
    let (mut c, mut s) = (Mux::new(Side::Client), Mux::new(Side::Server));
    let ch = c.open(*T0, "file-transfer://7").expect("open");
    assert_eq!(c.poll_timeout(), Some(*T0 + OPEN_TIMEOUT));
    carry(&mut c, &mut s, 1000);
    assert!(matches!(
        events(&mut s).as_slice(),
        [MuxEvent::OpenRequest { channel, .. }] if *channel == ch
    ));
    // One tick before the deadline nothing happens; at it, the request is over.
    c.handle_timeout(*T0 + OPEN_TIMEOUT - std::time::Duration::from_millis(1));
    assert_eq!(events(&mut c), vec![]);
    c.handle_timeout(*T0 + OPEN_TIMEOUT);
    assert_eq!(events(&mut c), vec![MuxEvent::Unanswered { channel: ch }]);
    assert_eq!((c.channels(), c.poll_timeout()), (0, None));
    // The peer's acceptance comes after the deadline: nothing opens.
    s.accept(*T0, ch).expect("offered");
    let wire = wire(&mut s);
    c.handle_bytes(*T0 + OPEN_TIMEOUT, &wire)
        .expect("well-formed");
    assert_eq!(events(&mut c), vec![]);
    assert_eq!(c.send(*T0, ch, b"x"), Err(ChannelError::NotOpen(ch)));
}

#[test]
fn an_answer_read_after_the_deadline_is_late_even_without_a_timeout_call() {
    let (mut c, mut s) = (Mux::new(Side::Client), Mux::new(Side::Server));
    let ch = c.open(*T0, "x").expect("open");
    carry(&mut c, &mut s, 1000);
    s.accept(*T0, ch).expect("offered");
    let wire = wire(&mut s);
    // The owner never called `handle_timeout`; the bytes are read at the deadline.
    c.handle_bytes(*T0 + OPEN_TIMEOUT, &wire)
        .expect("well-formed");
    assert_eq!(events(&mut c), vec![MuxEvent::Unanswered { channel: ch }]);
}

/// PROTOCOL.md §9.1 `early-channel-data`: the bytes behind a request wait for the answer;
/// an ACCEPT hands them on in order (their END too), a DECLINE drops them, counted. A channel
/// opened the first way carries nothing before its ACCEPT, as dhtnet's peers expect.
#[test]
fn early_bytes_wait_for_the_answer_then_come_out_or_are_dropped_counted() {
    let (mut c, mut s) = (Mux::new(Side::Client), Mux::new(Side::Server));
    let kept = c.open_early(*T0, "file-transfer://1").expect("open");
    c.send(*T0, kept, b"header").expect("early bytes");
    c.send(*T0, kept, b" and more").expect("early bytes");
    let dropped = c.open_early(*T0, "file-transfer://2").expect("open");
    c.send(*T0, dropped, b"unwanted").expect("early bytes");
    let plain = c.open(*T0, "x").expect("open");
    assert_eq!(c.send(*T0, plain, b"no"), Err(ChannelError::NotOpen(plain)));
    carry(&mut c, &mut s, 7);
    let request = |channel, name: &str| MuxEvent::OpenRequest {
        channel,
        name: name.to_owned(),
    };
    assert_eq!(
        events(&mut s),
        [
            request(kept, "file-transfer://1"),
            request(dropped, "file-transfer://2"),
            request(plain, "x"),
        ],
        "nothing but the requests before an answer"
    );
    s.accept(*T0, kept).expect("offered");
    assert_eq!(
        events(&mut s),
        [MuxEvent::Data {
            channel: kept,
            data: b"header and more".to_vec().into()
        }]
    );
    s.decline(*T0, dropped).expect("offered");
    assert!(events(&mut s).is_empty());
    assert_eq!(s.early_dropped(), 8, "the declined channel's bytes");
    // The sender hears the answers as before; the accepted channel is an ordinary one.
    carry(&mut s, &mut c, 100);
    assert_eq!(
        events(&mut c),
        [
            MuxEvent::Opened { channel: kept },
            MuxEvent::Declined { channel: dropped }
        ]
    );
    // Its owner may have written on it: it ends its side as of a channel the peer ended,
    // and the channel is gone.
    c.end(*T0, dropped).expect("a declined early channel ends");
    assert_eq!(c.end(*T0, dropped), Err(ChannelError::NotOpen(dropped)));
    // An early channel may also end before its answer: the END waits with its bytes.
    let short = c.open_early(*T0, "file-transfer://3").expect("open");
    c.send(*T0, short, b"all").expect("early bytes");
    assert!(!c.ended_here(short));
    c.end(*T0, short).expect("ends before the answer");
    // Its owner knows it ended it, whatever the answer brings (the node lets an ACCEPT
    // for it be).
    assert!(c.ended_here(short));
    assert_eq!(
        c.send(*T0, short, b"more"),
        Err(ChannelError::NotOpen(short))
    );
    carry(&mut c, &mut s, 5);
    let _ = events(&mut s);
    s.accept(*T0, short).expect("offered");
    assert_eq!(
        events(&mut s),
        [
            MuxEvent::Data {
                channel: short,
                data: b"all".to_vec().into()
            },
            MuxEvent::Ended { channel: short }
        ]
    );
    s.end(*T0, short).expect("open");
    carry(&mut s, &mut c, 100);
    assert_eq!(
        events(&mut c),
        [
            MuxEvent::Opened { channel: short },
            MuxEvent::Ended { channel: short }
        ]
    );
    assert_eq!(c.end(*T0, short), Err(ChannelError::NotOpen(short)), "gone");
    assert!(!c.ended_here(short), "gone");
    s.send(*T0, kept, b"GO").expect("open");
    carry(&mut s, &mut c, 100);
    assert_eq!(
        events(&mut c),
        [MuxEvent::Data {
            channel: kept,
            data: b"GO".to_vec().into()
        }]
    );
}

/// SECURITY.md row 153: a peer that sends more than [`EARLY_PER_CHANNEL`] on a channel
/// before our answer, or more than [`EARLY_PER_CONNECTION`] over its offered channels, has
/// the channel declined whatever we answer and its bytes dropped, counted: what it makes us
/// keep stays bounded.
#[test]
fn early_bytes_past_a_bound_are_dropped_and_the_channel_declined() {
    // SECURITY: row 153
    let (mut c, mut s) = (Mux::new(Side::Client), Mux::new(Side::Server));
    let ch = c.open_early(*T0, "x").expect("open");
    c.send(*T0, ch, &vec![7u8; EARLY_PER_CHANNEL + 1])
        .expect("the sender's bound is its caller's to keep");
    carry(&mut c, &mut s, 1000);
    let _ = events(&mut s);
    assert_eq!(s.accept(*T0, ch), Err(ChannelError::EarlyOverflow(ch)));
    assert!(events(&mut s).is_empty(), "none of its bytes come out");
    assert_eq!(s.early_dropped(), EARLY_PER_CHANNEL as u64 + 1);
    carry(&mut s, &mut c, 100);
    assert_eq!(events(&mut c), [MuxEvent::Declined { channel: ch }]);
    // Over the connection: 16 channels of a full EARLY_PER_CHANNEL fit, the 17th does not.
    let (mut c, mut s) = (Mux::new(Side::Client), Mux::new(Side::Server));
    let full = vec![1u8; EARLY_PER_CHANNEL];
    let channels: Vec<u16> = (0..=EARLY_PER_CONNECTION / EARLY_PER_CHANNEL)
        .map(|i| {
            let ch = c.open_early(*T0, &format!("{i}")).expect("open");
            c.send(*T0, ch, &full).expect("early bytes");
            ch
        })
        .collect();
    carry(&mut c, &mut s, 4096);
    let _ = events(&mut s);
    let (last, within) = channels.split_last().expect("channels");
    assert_eq!(
        s.accept(*T0, *last),
        Err(ChannelError::EarlyOverflow(*last))
    );
    for ch in within {
        s.accept(*T0, *ch).expect("within the bounds");
    }
    let delivered: usize = std::iter::from_fn(|| s.poll_event())
        .map(|e| match e {
            MuxEvent::Data { data, .. } => data.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(delivered, within.len() * EARLY_PER_CHANNEL);
    assert_eq!(s.early_dropped(), EARLY_PER_CHANNEL as u64);
}
