//! Channel units on a TLS connection (msgpack `[channel, bin]`) and the multiplexer's
//! requests on channel 0.

use std::time::{Duration, Instant};

use ferry_proto::channel::{MAX_CHANNELS, MAX_UNIT, Mux, MuxError, MuxEvent, Side};

use super::{Script, pieces};

/// What a multiplexer made of a stream: events, bytes it wrote, and how the stream ended.
type Outcome = (Vec<MuxEvent>, Vec<Vec<u8>>, Option<MuxError>);

fn run(side: Side, parts: &[&[u8]]) -> Outcome {
    let now = Instant::now();
    let mut mux = Mux::new(side);
    let mut error = None;
    for part in parts {
        if let Err(e) = mux.handle_bytes(now, part) {
            error = Some(e);
            break;
        }
    }
    // A channel is a byte stream: a unit cut by the transport comes out in pieces, so a
    // channel's consecutive data is joined before outcomes are compared.
    let mut events: Vec<MuxEvent> = Vec::new();
    while let Some(event) = mux.poll_event() {
        if let (
            Some(MuxEvent::Data { channel: a, data }),
            MuxEvent::Data {
                channel: b,
                data: more,
            },
        ) = (events.last_mut(), &event)
            && a == b
        {
            *data = [&data[..], &more[..]].concat().into();
            continue;
        }
        events.push(event);
    }
    let sent = std::iter::from_fn(|| mux.poll_transmit())
        .map(|b| b.to_vec())
        .collect();
    (events, sent, error)
}

/// Any split of a stream gives the same events and answers; a multiplexer that accepts every
/// request and answers every byte keeps its bounds (channels, unit sizes).
pub fn channel_units(data: &[u8]) {
    let mut s = Script::new(data);
    let side = if s.byte() & 1 == 0 {
        Side::Server
    } else {
        Side::Client
    };
    let (stream, parts) = pieces(s.rest());
    assert_eq!(
        run(side, &[stream]),
        run(side, &parts),
        "the split changed the outcome"
    );

    // The same stream to a multiplexer that says yes to everything and talks back, while
    // time passes (20 s a piece: its own requests go unanswered after three).
    let t0 = Instant::now();
    let mut mux = Mux::new(side);
    for (i, part) in parts.iter().enumerate() {
        let now = t0 + Duration::from_secs(20 * i as u64);
        mux.handle_timeout(now);
        assert!(
            mux.poll_timeout().is_none_or(|at| at > now),
            "a deadline that passed is over"
        );
        if mux.handle_bytes(now, part).is_err() {
            assert!(mux.handle_bytes(now, b"").is_err(), "an error is final");
            break;
        }
        while let Some(event) = mux.poll_event() {
            match event {
                MuxEvent::OpenRequest { channel, .. } => {
                    mux.accept(now, channel)
                        .expect("an offered channel can be accepted");
                    let _ = mux.send(now, channel, part);
                }
                MuxEvent::Data { channel, data } => {
                    assert!(!data.is_empty() && data.len() <= MAX_UNIT);
                    if i % 3 == 0 {
                        let _ = mux.end(now, channel);
                    }
                }
                MuxEvent::Opened { channel } => {
                    let _ = mux.send(now, channel, b"x");
                }
                _ => {}
            }
        }
        if i % 7 == 0 {
            let _ = mux.open(now, "file-transfer://1");
        }
        assert!(mux.channels() <= MAX_CHANNELS);
        while let Some(unit) = mux.poll_transmit() {
            // What we write is units our own side reads back.
            let mut echo = Mux::new(match side {
                Side::Server => Side::Client,
                Side::Client => Side::Server,
            });
            assert!(echo.handle_bytes(now, &unit).is_ok(), "we wrote a bad unit");
        }
    }
}
