//! The transfer state machines against a misbehaving peer or disk, driven by hand.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{Event, FileError, FileId, FileOp, FileResult};
use ferry_proto::transfer::frame::{CancelCode, Frame};
use ferry_proto::transfer::header::Header;
use ferry_proto::transfer::{
    Digest, Form, Incoming, Input, Outgoing, Output, PartialKey, Reason, Status, TransferId,
    WRITE_WINDOW,
};

const T: TransferId = TransferId(9);
const F: FileId = FileId(1);

fn drain_in(m: &mut Incoming) -> Vec<Output> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn drain_out(m: &mut Outgoing) -> Vec<Output> {
    std::iter::from_fn(|| m.poll_output()).map(joined).collect()
}

/// A DATA frame's header and payload as the one `Send` of the stream's bytes they stand for.
fn joined(o: Output) -> Output {
    match o {
        Output::SendData { header, data } => Output::Send([&header[..], &data].concat().into()),
        o => o,
    }
}

fn header(size: u64, offset: u64, ext: bool) -> Bytes {
    Header {
        content_length: size,
        display_name: "f.bin".into(),
        offset,
        extension: ext.then_some(1),
        prefix_digest: false,
        manifest: None,
    }
    .encode()
}

fn reason(outs: &[Output]) -> Option<Reason> {
    outs.iter().find_map(|o| match o {
        Output::Event(Event::Status {
            reason: Some(r), ..
        }) => Some(r.clone()),
        _ => None,
    })
}

fn has_file_op(outs: &[Output], f: impl Fn(&FileOp) -> bool) -> bool {
    outs.iter().any(|o| matches!(o, Output::File(op) if f(op)))
}

/// An incoming transfer accepted with `held` bytes already on disk; returns it after GO.
fn accepted(size: u64, held: u64, ext: bool, now: Instant) -> Incoming {
    let mut m = Incoming::new(T, F, Form::Framed);
    m.handle_input(now, Input::Received(header(size, 0, ext)))
        .expect("ok");
    drain_in(&mut m);
    m.accept(now).expect("waiting for acceptance");
    let outs = drain_in(&mut m);
    assert!(has_file_op(
        &outs,
        |op| matches!(op, FileOp::OpenPartial { size: s, .. } if *s == size)
    ));
    m.handle_input(now, Input::File(FileResult::Opened { file: F, len: held }))
        .expect("ok");
    m
}

#[test]
fn the_receiver_pauses_reading_while_its_disk_lags_and_resumes_after() {
    let now = Instant::now();
    let size = 4 * WRITE_WINDOW as u64;
    let mut m = accepted(size, 0, true, now);
    drain_in(&mut m);
    // SECURITY: row 24
    let chunk = vec![0u8; 64 * 1024];
    let mut writes = Vec::new();
    let mut paused_after = None;
    for i in 0..32 {
        m.handle_input(
            now,
            Input::Received(Frame::Data(chunk.clone().into()).encode()),
        )
        .expect("ok");
        for o in drain_in(&mut m) {
            match o {
                Output::File(FileOp::Write { offset, data, .. }) => {
                    writes.push((offset, data.len() as u32))
                }
                Output::PauseReading => paused_after = paused_after.or(Some(i + 1)),
                _ => {}
            }
        }
        if paused_after.is_some() {
            break;
        }
    }
    assert_eq!(
        paused_after,
        Some(WRITE_WINDOW / chunk.len()),
        "pause once a window of writes is pending"
    );
    // The disk catches up: reading resumes once half the window is written.
    let mut resumed = false;
    for (offset, len) in writes {
        m.handle_input(
            now,
            Input::File(FileResult::Written {
                file: F,
                offset,
                len,
            }),
        )
        .expect("ok");
        resumed |= drain_in(&mut m).contains(&Output::ResumeReading);
    }
    assert!(resumed);
}

#[test]
fn more_data_than_announced_is_refused_and_deleted() {
    let now = Instant::now();
    for ext in [true, false] {
        let mut m = accepted(100, 0, ext, now);
        drain_in(&mut m);
        let wire = if ext {
            // SECURITY: row 14
            Frame::Data(vec![0u8; 101].into()).encode()
        } else {
            Bytes::from(vec![0u8; 101])
        };
        m.handle_input(now, Input::Received(wire)).expect("ok");
        let outs = drain_in(&mut m);
        assert_eq!(m.status(), Status::ClosedByPeer, "ext={ext}");
        assert_eq!(
            reason(&outs),
            Some(Reason::Protocol("more data than Content-Length"))
        );
        assert!(
            has_file_op(&outs, |op| matches!(op, FileOp::Discard { .. })),
            "nothing beyond the size is kept"
        );
        assert!(
            !has_file_op(&outs, |op| matches!(op, FileOp::Write { .. })),
            "not a byte written"
        );
        if ext {
            assert!(outs.contains(&Output::Send(Frame::Cancel(CancelCode::Protocol).encode())));
        } else {
            assert!(outs.contains(&Output::Reset), "the raw form can only reset");
        }
    }
}

#[test]
fn end_before_all_data_keeps_the_prefix() {
    let now = Instant::now();
    let mut m = accepted(100, 0, true, now);
    drain_in(&mut m);
    let mut wire = Frame::Data(vec![0u8; 50].into()).encode().to_vec();
    // SECURITY: row 16
    wire.extend_from_slice(&Frame::End(Digest::of(b"")).encode());
    m.handle_input(now, Input::Received(wire.into()))
        .expect("ok");
    let outs = drain_in(&mut m);
    assert_eq!(
        reason(&outs),
        Some(Reason::Protocol("END before all the data"))
    );
    assert!(has_file_op(&outs, |op| matches!(op, FileOp::Close { .. })));
    assert!(!has_file_op(&outs, |op| matches!(
        op,
        FileOp::Commit { .. } | FileOp::Discard { .. }
    )));
}

#[test]
fn a_reset_mid_file_is_never_taken_for_the_end() {
    let now = Instant::now();
    for ext in [true, false] {
        let mut m = accepted(100, 0, ext, now);
        drain_in(&mut m);
        let wire = if ext {
            Frame::Data(vec![0u8; 60].into()).encode()
        } else {
            Bytes::from(vec![0u8; 60])
        };
        m.handle_input(now, Input::Received(wire)).expect("ok");
        // SECURITY: row 20
        m.handle_input(now, Input::StreamReset).expect("ok");
        let outs = drain_in(&mut m);
        assert_eq!(m.status(), Status::ClosedByPeer);
        assert_eq!(reason(&outs), Some(Reason::ConnectionLost));
        assert!(!has_file_op(&outs, |op| matches!(
            op,
            FileOp::Commit { .. } | FileOp::Digest { .. }
        )));
    }
}

#[test]
fn a_raw_form_offset_beyond_what_is_held_is_unsupported() {
    let now = Instant::now();
    let mut m = Incoming::new(T, F, Form::Framed);
    // SECURITY: row 13
    m.handle_input(now, Input::Received(header(100, 40, false)))
        .expect("ok");
    m.accept(now).expect("ok");
    m.handle_input(now, Input::File(FileResult::Opened { file: F, len: 10 }))
        .expect("ok");
    let outs = drain_in(&mut m);
    assert_eq!(m.status(), Status::Unsupported);
    assert!(outs.contains(&Output::Send(Bytes::from_static(b"NGO\n"))));
}

#[test]
fn a_raw_form_offset_within_what_is_held_is_honoured() {
    let now = Instant::now();
    let mut m = Incoming::new(T, F, Form::Framed);
    m.handle_input(now, Input::Received(header(100, 40, false)))
        .expect("ok");
    m.accept(now).expect("ok");
    m.handle_input(now, Input::File(FileResult::Opened { file: F, len: 70 }))
        .expect("ok");
    m.handle_input(now, Input::Received(Bytes::from(vec![1u8; 60])))
        .expect("ok");
    let outs = drain_in(&mut m);
    assert!(outs.contains(&Output::Send(Bytes::from_static(b"GO\n"))));
    assert!(has_file_op(
        &outs,
        |op| matches!(op, FileOp::Write { offset: 40, data, .. } if data.len() == 60)
    ));
}

/// Partial data is asked for by (sender account, transfer id), never by the offered name,
/// and only a framed-form peer (whose END carries a digest) may resume into what is held.
#[test]
fn the_partial_is_asked_for_by_sender_and_id_and_a_raw_peer_never_resumes() {
    // SECURITY: row 123
    let now = Instant::now();
    let sender = ferry_proto::tls::AccountId([0x5a; 20]);
    for (ext, resumes) in [(true, true), (false, false)] {
        let mut m = Incoming::new(T, F, Form::Framed).with_sender(sender);
        m.handle_input(now, Input::Received(header(100, 0, ext)))
            .expect("ok");
        drain_in(&mut m);
        m.accept(now).expect("ok");
        let outs = drain_in(&mut m);
        let want = PartialKey {
            sender: Some(sender),
            transfer: T,
        };
        assert!(
            has_file_op(&outs, |op| matches!(
                op,
                FileOp::OpenPartial { key, resume, .. } if *key == want && *resume == resumes
            )),
            "framed: {ext}: {outs:?}"
        );
    }
    // A bare stream's receiver knows no sender.
    let mut m = Incoming::new(T, F, Form::Framed);
    m.handle_input(now, Input::Received(header(100, 0, true)))
        .expect("ok");
    m.accept(now).expect("ok");
    let outs = drain_in(&mut m);
    assert!(has_file_op(&outs, |op| matches!(
        op,
        FileOp::OpenPartial {
            key: PartialKey {
                sender: None,
                transfer: T
            },
            ..
        }
    )));
}

#[test]
fn commands_in_the_wrong_state_are_errors_and_cancel_is_idempotent() {
    let now = Instant::now();
    let mut m = Incoming::new(T, F, Form::Framed);
    assert!(m.accept(now).is_err(), "no header yet");
    assert!(m.refuse(now).is_err());
    m.cancel(now);
    m.cancel(now);
    assert_eq!(m.status(), Status::ClosedByHost);
    assert!(m.accept(now).is_err());
    assert_eq!(
        m.handle_input(now, Input::File(FileResult::Closed { file: FileId(77) })),
        Err(ferry_proto::Error::UnknownFile(FileId(77)))
    );
}

fn outgoing_waiting(size: u64, form: Form, now: Instant) -> Outgoing {
    let mut m = Outgoing::new(T, F, "src".into(), "f.bin".into(), form);
    drain_out(&mut m);
    m.handle_input(now, Input::File(FileResult::Opened { file: F, len: size }))
        .expect("ok");
    drain_out(&mut m);
    assert_eq!(m.status(), Status::WaitPeerAcceptance);
    m
}

#[test]
fn the_sender_refuses_bad_replies_and_impossible_offsets() {
    let now = Instant::now();
    let cases: [(Form, &[u8], Reason); 3] = [
        (
            Form::Framed,
            b"OK\n",
            Reason::Protocol("reply is neither GO nor NGO"),
        ),
        (
            Form::Framed,
            // SECURITY: row 12
            b"GO 101\n",
            Reason::Protocol("GO offset beyond the file size"),
        ),
        (
            Form::Raw,
            b"GO 5\n",
            Reason::Protocol("GO with an offset to a sender that did not offer frames"),
        ),
    ];
    for (form, reply, want) in cases {
        let mut m = outgoing_waiting(100, form, now);
        m.handle_input(now, Input::Received(Bytes::from_static(reply)))
            .expect("ok");
        let outs = drain_out(&mut m);
        assert_eq!(m.status(), Status::ClosedByPeer, "{reply:?}");
        assert_eq!(reason(&outs), Some(want));
        assert!(
            !has_file_op(&outs, |op| matches!(op, FileOp::Read { .. })),
            "not a byte read"
        );
    }
}

#[test]
fn the_sender_waits_ten_minutes_then_cancels_and_lingers() {
    let start = Instant::now();
    let mut m = outgoing_waiting(100, Form::Framed, start);
    let deadline = m.poll_timeout().expect("the accept timer");
    assert_eq!(deadline - start, Duration::from_secs(600));
    m.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(
        m.status(),
        Status::WaitPeerAcceptance,
        "not a millisecond early"
    );
    // SECURITY: row 23
    m.handle_timeout(deadline);
    let outs = drain_out(&mut m);
    assert_eq!(m.status(), Status::TimeoutExpired);
    assert!(outs.contains(&Output::Send(Frame::Cancel(CancelCode::Timeout).encode())));
    assert!(
        !outs.contains(&Output::Close),
        "the side that spoke last does not close at once"
    );
    let linger = m.poll_timeout().expect("the linger timer");
    m.handle_timeout(linger);
    assert_eq!(drain_out(&mut m), [Output::Close]);
    assert!(m.is_drained());
}

#[test]
fn a_missing_source_is_invalid_pathname() {
    let now = Instant::now();
    let mut m = Outgoing::new(T, F, "nope".into(), "f.bin".into(), Form::Framed);
    drain_out(&mut m);
    m.handle_input(
        now,
        Input::File(FileResult::Failed {
            file: F,
            error: FileError::NotFound,
        }),
    )
    .expect("ok");
    let outs = drain_out(&mut m);
    assert_eq!(m.status(), Status::InvalidPathname);
    assert!(
        !outs.iter().any(|o| matches!(o, Output::Send(_))),
        "no header for a file that is not there"
    );
}

#[test]
fn the_sender_keeps_at_most_a_window_in_flight() {
    let now = Instant::now();
    let mut m = outgoing_waiting(10 * 1024 * 1024, Form::Framed, now);
    // SECURITY: row 25
    m.handle_input(now, Input::Received(Bytes::from_static(b"GO 0\n")))
        .expect("ok");
    let outs = drain_out(&mut m);
    let asked: u64 = outs
        .iter()
        .filter_map(|o| match o {
            Output::File(FileOp::Read { len, .. }) => Some(u64::from(*len)),
            _ => None,
        })
        .sum();
    assert!(
        asked > 0 && asked <= ferry_proto::transfer::SEND_WINDOW as u64,
        "{asked}"
    );
}

/// A tiny deterministic generator, so the garbage is the same in every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn garbage_from_the_network_never_panics_and_never_writes_past_the_size() {
    let now = Instant::now();
    let mut rng = Rng(0x5eed);
    for round in 0..2000 {
        // Half the rounds start with a valid header, so the garbage reaches the later states.
        let mut m = Incoming::new(
            T,
            F,
            if round % 3 == 0 {
                Form::Raw
            } else {
                Form::Framed
            },
        );
        let size = rng.next() % 5000;
        if round % 2 == 0 {
            m.handle_input(now, Input::Received(header(size, 0, round % 4 == 0)))
                .expect("ok");
            let _ = m.accept(now);
            let _ = m.handle_input(now, Input::File(FileResult::Opened { file: F, len: 0 }));
        }
        let mut written = 0u64;
        for _ in 0..8 {
            let n = (rng.next() % 300) as usize;
            // SECURITY: row 21
            let mut chunk = rng.bytes(n);
            // Sometimes a plausible frame type, to get past the first byte.
            if !chunk.is_empty() && rng.next() % 2 == 0 {
                chunk[0] = (rng.next() % 5) as u8;
            }
            m.handle_input(now, Input::Received(chunk.into()))
                .expect("network input is never a caller error");
            for o in drain_in(&mut m) {
                if let Output::File(FileOp::Write { offset, data, .. }) = o {
                    assert_eq!(offset, written, "writes are contiguous");
                    written += data.len() as u64;
                }
            }
            assert!(
                written <= size,
                "round {round}: {written} bytes written for a {size}-byte file"
            );
        }
        let mut o = outgoing_waiting(size, Form::Framed, now);
        for _ in 0..4 {
            let n = (rng.next() % 64) as usize;
            o.handle_input(now, Input::Received(rng.bytes(n).into()))
                .expect("never a caller error");
            drain_out(&mut o);
        }
    }
}

#[test]
fn a_header_that_never_comes_ends_the_transfer_at_its_deadline() {
    use ferry_proto::transfer::HEADER_TIMEOUT;
    let now = Instant::now();
    // SECURITY: row 111
    let mut m = Incoming::new(T, F, Form::Framed).with_header_deadline(now + HEADER_TIMEOUT);
    assert_eq!(m.poll_timeout(), Some(now + HEADER_TIMEOUT));
    m.handle_timeout(now + HEADER_TIMEOUT - Duration::from_millis(1));
    assert!(drain_in(&mut m).is_empty(), "not before");
    m.handle_timeout(now + HEADER_TIMEOUT);
    let outs = drain_in(&mut m);
    assert_eq!(m.status(), Status::TimeoutExpired);
    assert_eq!(reason(&outs), Some(Reason::Timeout));
    assert!(outs.contains(&Output::Close), "the stream is given back");
    assert!(m.is_drained());
    // A header in time disarms it.
    let mut m = Incoming::new(T, F, Form::Framed).with_header_deadline(now + HEADER_TIMEOUT);
    m.handle_input(now, Input::Received(header(10, 0, true)))
        .expect("ok");
    m.handle_timeout(now + HEADER_TIMEOUT);
    assert_eq!(m.status(), Status::WaitHostAcceptance);
}

#[test]
fn an_offer_nobody_answers_ends_timeout_expired_with_ngo() {
    use ferry_proto::transfer::DECISION_TIMEOUT;
    let now = Instant::now();
    let mut m = Incoming::new(T, F, Form::Framed);
    m.handle_input(now, Input::Received(header(10, 0, true)))
        .expect("ok");
    drain_in(&mut m);
    assert_eq!(m.poll_timeout(), Some(now + DECISION_TIMEOUT));
    m.handle_timeout(now + DECISION_TIMEOUT);
    let outs = drain_in(&mut m);
    assert_eq!(m.status(), Status::TimeoutExpired);
    assert_eq!(reason(&outs), Some(Reason::Timeout));
    assert!(outs.contains(&Output::Send(Bytes::from_static(b"NGO\n"))));
    assert!(
        m.accept(now + DECISION_TIMEOUT).is_err(),
        "too late to accept"
    );
    // An answer in time disarms it.
    let mut m = Incoming::new(T, F, Form::Framed);
    m.handle_input(now, Input::Received(header(10, 0, true)))
        .expect("ok");
    m.accept(now).expect("waiting");
    m.handle_timeout(now + DECISION_TIMEOUT);
    assert_eq!(m.status(), Status::WaitHostAcceptance, "opening its file");
}

#[test]
fn data_after_end_is_a_protocol_violation_and_nothing_is_committed() {
    let now = Instant::now();
    let mut m = accepted(5, 0, true, now);
    drain_in(&mut m);
    let mut wire = Frame::Data(Bytes::from_static(b"hello")).encode().to_vec();
    wire.extend_from_slice(&Frame::End(Digest::of(b"hello")).encode());
    // SECURITY: row 17
    wire.extend_from_slice(&Frame::Data(Bytes::from_static(b"more")).encode());
    m.handle_input(now, Input::Received(wire.into()))
        .expect("ok");
    let outs = drain_in(&mut m);
    assert_eq!(m.status(), Status::ClosedByPeer);
    assert!(
        reason(&outs).is_some_and(|r| matches!(r, Reason::Protocol(_))),
        "{outs:?}"
    );
    assert!(!has_file_op(&outs, |op| matches!(
        op,
        FileOp::Commit { .. }
    )));
    assert!(outs.contains(&Output::Send(Frame::Cancel(CancelCode::Protocol).encode())));
}

/// Drives an incoming framed transfer of "hello" to `stage`: 0 header only, 1 accepted (partial
/// opening), 2 receiving, 3 checking (END in, digest asked), 4 committing (digest matched).
fn incoming_at(stage: u8, now: Instant) -> Incoming {
    let mut m = Incoming::new(T, F, Form::Framed);
    m.handle_input(now, Input::Received(header(5, 0, true)))
        .expect("ok");
    if stage >= 1 {
        m.accept(now).expect("waiting");
    }
    if stage >= 2 {
        m.handle_input(now, Input::File(FileResult::Opened { file: F, len: 0 }))
            .expect("ok");
    }
    if stage >= 3 {
        let mut wire = Frame::Data(Bytes::from_static(b"hello")).encode().to_vec();
        wire.extend_from_slice(&Frame::End(Digest::of(b"hello")).encode());
        m.handle_input(now, Input::Received(wire.into()))
            .expect("ok");
        m.handle_input(
            now,
            Input::File(FileResult::Written {
                file: F,
                offset: 0,
                len: 5,
            }),
        )
        .expect("ok");
    }
    if stage >= 4 {
        m.handle_input(
            now,
            Input::File(FileResult::Digest {
                file: F,
                digest: Digest::of(b"hello"),
            }),
        )
        .expect("ok");
    }
    drain_in(&mut m);
    m
}

#[test]
fn a_peer_cancel_in_every_state_ends_the_transfer_and_never_loses_a_verified_file() {
    let now = Instant::now();
    for stage in 0..=4 {
        let mut m = incoming_at(stage, now);
        // SECURITY: row 19
        m.handle_input(
            now,
            Input::Received(Frame::Cancel(CancelCode::Other(9)).encode()),
        )
        .expect("ok");
        let outs = drain_in(&mut m);
        assert!(
            !has_file_op(&outs, |op| matches!(op, FileOp::Discard { .. })),
            "stage {stage}: a peer's cancel keeps the partial file for a resume"
        );
        if stage < 4 {
            assert_eq!(m.status(), Status::ClosedByPeer, "stage {stage}");
            assert_eq!(
                reason(&outs),
                Some(Reason::PeerCancelled(CancelCode::Other(9)))
            );
            assert!(!has_file_op(&outs, |op| matches!(
                op,
                FileOp::Commit { .. }
            )));
        }
        // Whatever comes after changes nothing.
        m.handle_input(
            now,
            Input::Received(Bytes::from_static(b"\x01\x00\x00\x00\x01x")),
        )
        .expect("ok");
        m.handle_input(now, Input::StreamReset).expect("ok");
        let _ = drain_in(&mut m);
    }
    // Once verified and being committed, the file is the user's: the cancel comes too late.
    let mut m = incoming_at(4, now);
    m.handle_input(
        now,
        Input::Received(Frame::Cancel(CancelCode::User).encode()),
    )
    .expect("ok");
    m.handle_input(
        now,
        Input::File(FileResult::Committed {
            file: F,
            name: "f.bin".into(),
        }),
    )
    .expect("ok");
    drain_in(&mut m);
    assert_eq!(m.status(), Status::Finished);

    // The sender, cancelled by the receiver while sending and while waiting for the verdict.
    for verdict_wait in [false, true] {
        let mut o = outgoing_waiting(5, Form::Framed, now);
        o.handle_input(now, Input::Received(Bytes::from_static(b"GO 0\n")))
            .expect("ok");
        if verdict_wait {
            for op in drain_out(&mut o) {
                if let Output::File(FileOp::Read { offset, len, .. }) = op {
                    o.handle_input(
                        now,
                        Input::File(FileResult::Data {
                            file: F,
                            offset,
                            data: Bytes::from(vec![0u8; len as usize]),
                        }),
                    )
                    .expect("ok");
                }
            }
        }
        drain_out(&mut o);
        o.handle_input(
            now,
            Input::Received(Frame::Cancel(CancelCode::User).encode()),
        )
        .expect("ok");
        let outs = drain_out(&mut o);
        assert_eq!(
            o.status(),
            Status::ClosedByPeer,
            "verdict wait {verdict_wait}"
        );
        assert_eq!(reason(&outs), Some(Reason::PeerCancelled(CancelCode::User)));
    }
}

/// Found by the `transfer_machines` fuzz target: in the raw form, an empty read asked for an
/// empty write; once the real writes completed the file, the answer to that empty write came
/// in Checking and was refused as "not asked for" (a caller error for an answer the machine
/// had asked for).
#[test]
fn an_empty_read_asks_for_no_write() {
    let now = Instant::now();
    let mut m = accepted(5, 0, false, now);
    drain_in(&mut m);
    m.handle_input(now, Input::Received(Bytes::from_static(b"hello")))
        .expect("ok");
    m.handle_input(now, Input::Received(Bytes::new()))
        .expect("ok");
    let writes: Vec<(u64, usize)> = drain_in(&mut m)
        .into_iter()
        .filter_map(|o| match o {
            Output::File(FileOp::Write { offset, data, .. }) => Some((offset, data.len())),
            _ => None,
        })
        .collect();
    assert_eq!(writes, [(0, 5)], "one write, of the five bytes");
    m.handle_input(
        now,
        Input::File(FileResult::Written {
            file: F,
            offset: 0,
            len: 5,
        }),
    )
    .expect("the answer to the write asked for");
}

/// A partial file that cannot be opened (no room for the file, a hostile receive folder): a
/// Ferry sender hears why (`GO 0` then CANCEL 0x01, its only words for it), Jami's raw form
/// gets NGO; either way the reason is the file error.
#[test]
fn a_partial_that_cannot_be_opened_tells_the_sender_why() {
    let now = Instant::now();
    for (form, ext) in [(Form::Framed, true), (Form::Raw, false)] {
        let mut m = Incoming::new(T, F, form);
        m.handle_input(now, Input::Received(header(1000, 0, ext)))
            .expect("ok");
        drain_in(&mut m);
        m.accept(now).expect("waiting for acceptance");
        drain_in(&mut m);
        let error = FileError::Other("not enough free space in the receive folder".into());
        m.handle_input(
            now,
            Input::File(FileResult::Failed {
                file: F,
                error: error.clone(),
            }),
        )
        .expect("ok");
        let outs = drain_in(&mut m);
        let sent: Vec<&Bytes> = outs
            .iter()
            .filter_map(|o| match o {
                Output::Send(b) => Some(b),
                _ => None,
            })
            .collect();
        let want: Vec<Bytes> = match form {
            Form::Framed => vec![
                Bytes::from_static(b"GO 0\n"),
                Frame::Cancel(CancelCode::FileError).encode(),
            ],
            _ => vec![Bytes::from_static(b"NGO\n")],
        };
        assert_eq!(sent, want.iter().collect::<Vec<_>>(), "{form:?}");
        assert_eq!(m.status(), Status::ClosedByHost);
        assert_eq!(reason(&outs), Some(Reason::File(error)));
        assert!(
            !has_file_op(&outs, |_| true),
            "nothing to close: nothing was opened"
        );
    }
}

/// A file taken as a picture without asking starts at 0 (never resumed into) and is
/// cancelled at its first bytes unless they are a picture's; a real picture goes on, even
/// when its magic comes a byte at a time.
#[test]
fn a_file_taken_as_a_picture_must_start_as_one() {
    // SECURITY: row 125
    let now = Instant::now();
    let open = |resumes: bool| {
        let mut m = Incoming::new(T, F, Form::Framed);
        m.handle_input(now, Input::Received(header(100, 0, false)))
            .expect("ok");
        drain_in(&mut m);
        m.require_picture();
        m.accept(now).expect("ok");
        let outs = drain_in(&mut m);
        assert!(has_file_op(&outs, |op| matches!(
            op,
            FileOp::OpenPartial { resume, .. } if *resume == resumes
        )));
        m.handle_input(now, Input::File(FileResult::Opened { file: F, len: 0 }))
            .expect("ok");
        drain_in(&mut m);
        m
    };
    // Framed (a digest at the end), it would resume; as a picture to check, it does not.
    let mut framed = Incoming::new(T, F, Form::Framed);
    framed
        .handle_input(now, Input::Received(header(100, 0, true)))
        .expect("ok");
    framed.require_picture();
    framed.accept(now).expect("ok");
    let outs = drain_in(&mut framed);
    assert!(has_file_op(&outs, |op| matches!(
        op,
        FileOp::OpenPartial { resume: false, .. }
    )));

    let mut fake = open(false);
    fake.handle_input(
        now,
        Input::Received(Bytes::from_static(b"MZ\x90\0 an executable")),
    )
    .expect("ok");
    let outs = drain_in(&mut fake);
    assert_eq!(fake.status(), Status::ClosedByHost);
    assert_eq!(reason(&outs), Some(Reason::NotAPicture));
    assert!(!has_file_op(&outs, |op| matches!(op, FileOp::Write { .. })));

    let mut real = open(false);
    for byte in b"\x89PNG\r\n\x1a\n" {
        real.handle_input(now, Input::Received(Bytes::copy_from_slice(&[*byte])))
            .expect("ok");
    }
    let outs = drain_in(&mut real);
    assert_eq!(real.status(), Status::Ongoing);
    assert_eq!(
        outs.iter()
            .filter(|o| matches!(o, Output::File(FileOp::Write { .. })))
            .count(),
        8
    );
}
