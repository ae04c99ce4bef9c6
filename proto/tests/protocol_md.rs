//! `PROTOCOL.md` is a specification the code is held to: every vector in it is checked here,
//! both ways (the code produces those bytes; the code reads those bytes back).

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use ferry_proto::io::{FileId, FileOp, FileResult};
use ferry_proto::transfer::frame::{CancelCode, Frame, FrameDecoder};
use ferry_proto::transfer::header::{Header, HeaderParser};
use ferry_proto::transfer::reply::{Reply, ReplyParser};
use ferry_proto::transfer::{Digest, Form, Incoming, Input, Outgoing, Output, Status, TransferId};

const SPEC: &str = include_str!("../../PROTOCOL.md");

/// A DATA frame's header and payload as the one `Send` of the stream's bytes they stand for.
fn joined(o: Output) -> Output {
    match o {
        Output::SendData { header, data } => Output::Send([&header[..], &data].concat().into()),
        o => o,
    }
}

/// Every vector in the spec, by name.
fn vectors() -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut lines = SPEC.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let Some((kind, name)) = info.split_once(" vector=") else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let bytes = match kind {
            "text" => body.iter().flat_map(|l| l.bytes().chain([b'\n'])).collect(),
            "hex" => {
                let digits: String = body
                    .iter()
                    .map(|l| l.split('#').next().unwrap_or(""))
                    .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
                    .collect();
                hex::decode(&digits).unwrap_or_else(|e| panic!("vector {name}: {e}"))
            }
            other => panic!("vector {name}: unknown kind {other}"),
        };
        assert!(
            out.insert(name.to_owned(), bytes).is_none(),
            "vector {name} twice"
        );
    }
    out
}

fn vector(name: &str) -> Vec<u8> {
    vectors()
        .remove(name)
        .unwrap_or_else(|| panic!("PROTOCOL.md has no vector {name}"))
}

fn hello_header(ext: bool) -> Header {
    Header {
        content_length: 5,
        display_name: "hello.txt".into(),
        offset: 0,
        extension: ext.then_some(1),
        prefix_digest: false,
        manifest: None,
    }
}

#[test]
fn the_spec_has_every_vector_this_test_checks() {
    let names: Vec<String> = vectors().into_keys().collect();
    assert_eq!(
        names,
        [
            "ask-answer-file-changed",
            "ask-answer-resending",
            "ask-request",
            "channel-request",
            "channel-unit",
            "frame-cancel-user",
            "frame-data",
            "frame-end",
            "frame-restart",
            "frame-verdict-bad",
            "frame-verdict-ok",
            "header-framed",
            "header-framed-features",
            "header-jami",
            "header-manifest-file",
            "manifest",
            "opendht-asked-find",
            "opendht-asked-get",
            "opendht-asked-ping",
            "opendht-error",
            "opendht-find-reply",
            "opendht-get-reply",
            "opendht-get-reply-head",
            "opendht-listen",
            "opendht-listen-push",
            "opendht-ping",
            "opendht-pong",
            "opendht-put",
            "opendht-put-reply",
            "opendht-refresh",
            "opendht-refresh-404",
            "opendht-refresh-reply",
            "opendht-refresh-unknown-id",
            "opendht-update",
            "opendht-value-part",
            "reply-go",
            "reply-go-at",
            "reply-go-verify",
            "reply-ngo",
            "session-framed-receiver",
            "session-framed-sender",
            "session-jami-receiver",
            "session-jami-sender",
            "signal-answer",
            "signal-request",
            "signal-request-time",
        ]
    );
}

#[test]
fn headers() {
    for (name, ext) in [("header-framed", true), ("header-jami", false)] {
        let wire = vector(name);
        assert_eq!(hello_header(ext).encode(), wire, "{name}");
        assert_eq!(
            HeaderParser::new().push(&wire),
            Ok(Some(hello_header(ext))),
            "{name}"
        );
    }
    let features = Header {
        prefix_digest: true,
        manifest: None,
        ..hello_header(true)
    };
    let wire = vector("header-framed-features");
    assert_eq!(features.encode(), wire);
    assert_eq!(HeaderParser::new().push(&wire), Ok(Some(features)));
}

#[test]
fn replies() {
    for (name, reply) in [
        ("reply-go", Reply::Go),
        ("reply-go-at", Reply::GoAt(4096)),
        ("reply-go-verify", Reply::GoVerify(3, Digest::of(b"abc"))),
        ("reply-ngo", Reply::Ngo),
    ] {
        let wire = vector(name);
        assert_eq!(reply.encode(), wire, "{name}");
        assert_eq!(
            ReplyParser::new().push(&wire).map(|r| r.map(|(r, _)| r)),
            Ok(Some(reply)),
            "{name}"
        );
    }
}

#[test]
fn frames() {
    let cases = [
        ("frame-data", Frame::Data(Bytes::from_static(b"hello"))),
        ("frame-end", Frame::End(Digest::of(b""))),
        ("frame-cancel-user", Frame::Cancel(CancelCode::User)),
        ("frame-verdict-ok", Frame::Verdict(true)),
        ("frame-verdict-bad", Frame::Verdict(false)),
        ("frame-restart", Frame::Restart),
    ];
    for (name, frame) in cases {
        let wire = vector(name);
        assert_eq!(frame.encode(), wire, "{name}");
        let mut d = FrameDecoder::new();
        d.push(&wire);
        assert_eq!(d.next_frame(), Ok(Some(frame)), "{name}");
    }
}

/// Runs a whole transfer of `hello` between the two state machines, wired back to back,
/// and returns every byte each side sent.
fn session(sender_form: Form, receiver_form: Form) -> (Vec<u8>, Vec<u8>, Status, Status) {
    session_with(sender_form, receiver_form, b"hello", b"")
}

/// As [`session`], for the file `FILE`, with the receiver holding `held` under the sender's
/// key beforehand (a partial file from an earlier try, good or stale).
fn session_with(
    sender_form: Form,
    receiver_form: Form,
    file: &[u8],
    held: &[u8],
) -> (Vec<u8>, Vec<u8>, Status, Status) {
    #[allow(non_snake_case)]
    let FILE = file;
    let now = Instant::now();
    let (fa, fb) = (FileId(1), FileId(2));
    let mut alice = Outgoing::new(
        TransferId(1),
        fa,
        "hello".into(),
        "hello.txt".into(),
        sender_form,
    );
    let mut bob = Incoming::new(TransferId(1), fb, receiver_form);
    let (mut a_sent, mut b_sent) = (Vec::new(), Vec::new());
    let mut disk = held.to_vec();
    for _ in 0..100 {
        let mut to_bob = Vec::new();
        let mut to_alice = Vec::new();
        while let Some(o) = alice.poll_output().map(joined) {
            match o {
                Output::Send(d) => {
                    a_sent.extend_from_slice(&d);
                    to_alice.push(Input::Writable(d.len()));
                    to_bob.push(Input::Received(d));
                }
                Output::Close => to_bob.push(Input::StreamEnded),
                Output::File(FileOp::OpenSource { file, .. }) => {
                    to_alice.push(Input::File(FileResult::Opened {
                        file,
                        len: FILE.len() as u64,
                    }))
                }
                Output::File(FileOp::Read { file, offset, len }) => {
                    let data = Bytes::copy_from_slice(
                        &FILE[offset as usize..(offset as usize + len as usize)],
                    );
                    to_alice.push(Input::File(FileResult::Data { file, offset, data }));
                }
                Output::File(FileOp::Digest { file, len }) => {
                    to_alice.push(Input::File(FileResult::Digest {
                        file,
                        digest: Digest::of(&FILE[..len as usize]),
                    }))
                }
                _ => {}
            }
        }
        while let Some(o) = bob.poll_output().map(joined) {
            match o {
                Output::Send(d) => {
                    b_sent.extend_from_slice(&d);
                    to_alice.push(Input::Received(d));
                }
                Output::Close => to_alice.push(Input::StreamEnded),
                Output::Event(ferry_proto::io::Event::IncomingTransfer { .. }) => {
                    bob.accept(now).expect("waiting")
                }
                Output::File(FileOp::OpenPartial { file, .. }) => {
                    to_bob.push(Input::File(FileResult::Opened {
                        file,
                        len: disk.len() as u64,
                    }))
                }
                Output::File(FileOp::Truncate { file }) => {
                    disk.clear();
                    to_bob.push(Input::File(FileResult::Opened { file, len: 0 }))
                }
                Output::File(FileOp::Write { file, offset, data }) => {
                    assert_eq!(offset, disk.len() as u64, "writes follow what is held");
                    disk.extend_from_slice(&data);
                    to_bob.push(Input::File(FileResult::Written {
                        file,
                        offset,
                        len: data.len() as u32,
                    }));
                }
                Output::File(FileOp::Digest { file, .. }) => {
                    to_bob.push(Input::File(FileResult::Digest {
                        file,
                        digest: Digest::of(&disk),
                    }))
                }
                Output::File(FileOp::Commit { file }) => {
                    to_bob.push(Input::File(FileResult::Committed {
                        file,
                        name: "hello.txt".into(),
                    }))
                }
                _ => {}
            }
        }
        if to_alice.is_empty() && to_bob.is_empty() {
            break;
        }
        for i in to_alice {
            alice.handle_input(now, i).expect("ok");
        }
        for i in to_bob {
            bob.handle_input(now, i).expect("ok");
        }
    }
    assert_eq!(disk, FILE);
    (a_sent, b_sent, alice.status(), bob.status())
}

#[test]
fn channel_units() {
    let now = std::time::Instant::now();
    let mut out = bytes::BytesMut::new();
    ferry_proto::channel::encode_unit(3, b"hi", &mut out);
    assert_eq!(hex::encode(&out), hex::encode(vector("channel-unit")));
    // What a client's first `open` puts on the wire.
    let mut client = ferry_proto::channel::Mux::new(ferry_proto::channel::Side::Client);
    assert_eq!(client.open(now, "file-transfer://42"), Ok(1));
    let sent = client.poll_transmit().expect("the request");
    assert_eq!(hex::encode(&sent), hex::encode(vector("channel-request")));
    let mut server = ferry_proto::channel::Mux::new(ferry_proto::channel::Side::Server);
    server
        .handle_bytes(now, &vector("channel-request"))
        .expect("parses");
    assert_eq!(
        server.poll_event(),
        Some(ferry_proto::channel::MuxEvent::OpenRequest {
            channel: 1,
            name: "file-transfer://42".into()
        })
    );
}

#[test]
fn framed_session() {
    let (a, b, sa, sb) = session(Form::Framed, Form::Framed);
    assert_eq!((sa, sb), (Status::Finished, Status::Finished));
    assert_eq!(hex::encode(a), hex::encode(vector("session-framed-sender")));
    assert_eq!(
        hex::encode(b),
        hex::encode(vector("session-framed-receiver"))
    );
}

#[test]
fn jami_session_both_ways() {
    // A Jami sender to a Ferry receiver, and a Ferry sender to a Jami receiver: the same bytes,
    // except that the Ferry sender still offers frames in its header.
    let (a, b, sa, sb) = session(Form::Raw, Form::Framed);
    assert_eq!((sa, sb), (Status::Finished, Status::Finished));
    assert_eq!(hex::encode(a), hex::encode(vector("session-jami-sender")));
    assert_eq!(hex::encode(b), hex::encode(vector("session-jami-receiver")));

    let (a, b, sa, sb) = session(Form::Framed, Form::Raw);
    assert_eq!((sa, sb), (Status::Finished, Status::Finished));
    let mut expected = vector("header-framed-features");
    expected.extend_from_slice(b"hello");
    assert_eq!(a, expected);
    assert_eq!(b, vector("session-jami-receiver"));
}

/// §4.1: a receiver holding the start of the file answers `GO n <digest>` and gets the rest;
/// one holding other bytes under the same key gets RESTART and the whole file, verified.
#[test]
fn prefix_digest_sessions() {
    // SECURITY: row 129
    let end = Frame::End(Digest::of(b"hello")).encode();
    let header = vector("header-framed-features");

    let (a, b, sa, sb) = session_with(Form::Framed, Form::Framed, b"hello", b"hel");
    assert_eq!((sa, sb), (Status::Finished, Status::Finished));
    let mut reply = Reply::GoVerify(3, Digest::of(b"hel")).encode().to_vec();
    reply.extend_from_slice(&vector("frame-verdict-ok"));
    assert_eq!(b, reply, "GO 3 <sha3(hel)>, VERDICT ok");
    let sent = [
        &header[..],
        &Frame::Data(Bytes::from_static(b"lo")).encode(),
        &end,
    ]
    .concat();
    assert_eq!(hex::encode(a), hex::encode(sent), "only the missing bytes");

    let (a, b, sa, sb) = session_with(Form::Framed, Form::Framed, b"hello", b"hex");
    assert_eq!((sa, sb), (Status::Finished, Status::Finished));
    let mut reply = Reply::GoVerify(3, Digest::of(b"hex")).encode().to_vec();
    reply.extend_from_slice(&vector("frame-verdict-ok"));
    assert_eq!(b, reply);
    let sent = [
        &header[..],
        &vector("frame-restart"),
        &vector("frame-data"),
        &end,
    ]
    .concat();
    assert_eq!(hex::encode(a), hex::encode(sent), "RESTART, then from 0");
}

/// A sender that did not name `prefix-digest` (an older Ferry) gets today's `GO n`, and
/// the raw form today's `GO`, whatever the receiver holds.
#[test]
fn a_peer_without_the_feature_gets_todays_reply() {
    let now = Instant::now();
    for (header, form, want) in [
        ("header-framed", Form::Framed, &b"GO 3\n"[..]),
        ("header-jami", Form::Framed, b"GO\n"),
        ("header-framed-features", Form::Raw, b"GO\n"),
    ] {
        let mut bob = Incoming::new(TransferId(1), FileId(2), form);
        bob.handle_input(now, Input::Received(vector(header).into()))
            .expect("ok");
        bob.accept(now).expect("waiting");
        // The raw form never resumes (resume: false): the driver empties what is held.
        let held = if header == "header-framed" { 3 } else { 0 };
        let mut sent = Vec::new();
        while let Some(o) = bob.poll_output().map(joined) {
            match o {
                Output::Send(d) => sent.extend_from_slice(&d),
                Output::File(FileOp::OpenPartial { file, resume, .. }) => {
                    assert_eq!(resume, held > 0, "{header}");
                    bob.handle_input(now, Input::File(FileResult::Opened { file, len: held }))
                        .expect("ok");
                }
                Output::File(FileOp::Digest { .. }) => panic!("{header}: no prefix digest"),
                _ => {}
            }
        }
        assert_eq!(sent, want, "{header}");
    }
}

/// The ask-again request (§11): the core writes the vector's bytes and reads them back; the
/// answers too.
#[test]
fn ask_again_lines() {
    use ferry_proto::conversation::{AskAnswer, TransferRequest};
    use ferry_proto::tls::{AccountId, DeviceId};
    use ferry_proto::transfer::TransferId;
    let request = TransferRequest {
        conversation: AccountId([0xab; 20]),
        interaction: TransferId(42),
        device: DeviceId([0xcd; 32]),
    };
    let wire = vector("ask-request");
    assert_eq!(hex::encode(request.encode()), hex::encode(&wire));
    assert_eq!(
        TransferRequest::decode(&wire[..wire.len() - 1]),
        Ok(request)
    );
    for (name, answer) in [
        ("ask-answer-resending", AskAnswer::Resending),
        ("ask-answer-file-changed", AskAnswer::FileChanged),
    ] {
        let wire = vector(name);
        assert_eq!(answer.encode(), wire, "{name}");
        assert_eq!(AskAnswer::decode(&wire[..wire.len() - 1]), Ok(answer));
    }
    // Every code of the table is one the core knows, and the other way round.
    let table: Vec<&str> = SPEC
        .split("## 11.")
        .nth(1)
        .expect("§11")
        // §11 ends where the next section (the CLI's --json events) starts.
        .split("\n## ")
        .next()
        .expect("§11's text")
        .lines()
        .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
        .filter(|c| !["conversation", "interaction", "deviceId"].contains(c))
        .collect();
    let mut codes: Vec<&str> = AskAnswer::ALL.iter().map(|a| a.as_str()).collect();
    let mut table = table;
    codes.sort_unstable();
    table.sort_unstable();
    assert_eq!(table, codes);
}

/// The value a row of the limits table (§10) gives, by the name in its first column.
fn limit(name: &str) -> String {
    let row = SPEC
        .lines()
        .find(|l| l.starts_with(&format!("| `{name}` |")))
        .unwrap_or_else(|| panic!("no row for `{name}` in PROTOCOL.md §10"));
    row.split('|')
        .nth(2)
        .expect("a value column")
        .trim()
        .to_owned()
}

/// How the table writes a duration: minutes from five minutes up, else seconds, else ms.
fn duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms >= 300_000 && ms % 60_000 == 0 {
        format!("{} min", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}

/// How the table writes a size in bytes.
fn bytes(n: usize) -> String {
    if n % (1024 * 1024) == 0 {
        format!("{} MiB", n / (1024 * 1024))
    } else if n % 1024 == 0 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} B")
    }
}

#[test]
fn the_limits_table_gives_the_values_of_the_code() {
    use ferry_proto::channel::{MAX_CHANNELS, MAX_PEER_CHANNELS, MAX_UNIT};
    use ferry_proto::ice::{Config, EARLY_DATA_CAP};
    use ferry_proto::node::*;
    use ferry_proto::transfer::{self, header};
    let ice = Config::default();
    let turn = ferry_proto::turn::TurnConfig::new(([192, 0, 2, 1], 3478).into(), "u", "p");
    let durations = [
        ("node::UNROUTED_TIMEOUT", UNROUTED_TIMEOUT),
        ("node::GATHER_TIMEOUT", GATHER_TIMEOUT),
        ("node::ANNOUNCE_EVERY", ANNOUNCE_EVERY),
        ("node::REQUEST_RETRY", REQUEST_RETRY),
        ("node::ANSWER_TIMEOUT", ANSWER_TIMEOUT),
        ("node::ANSWER_RETRY", ANSWER_RETRY),
        ("node::LOOKUP_TIMEOUT", LOOKUP_TIMEOUT),
        ("node::UNJOINED_GRACE", UNJOINED_GRACE),
        ("node::FORGET_FAILED", FORGET_FAILED),
        ("node::LIVENESS_TIMEOUT", LIVENESS_TIMEOUT),
        ("node::TLS_TIMEOUT", TLS_TIMEOUT),
        ("node::IDLE_TIMEOUT", IDLE_TIMEOUT),
        ("node::RELAY_RETRY", RELAY_RETRY),
        ("io::CLOSE_LINGER", ferry_proto::io::CLOSE_LINGER),
        ("ice::Config::pacing", ice.pacing),
        ("ice::Config::connect_timeout", ice.connect_timeout),
        ("ice::Config::check_timeout", ice.check_timeout),
        ("ice::Config::ice_timeout", ice.ice_timeout),
        ("ice::Config::nomination_wait", ice.nomination_wait),
        ("ice::Config::connect_retry", ice.connect_retry),
        ("node::STUN_TIMEOUT", STUN_TIMEOUT),
        ("ice::Config::keepalive_interval", ice.keepalive_interval),
        ("ice::Config::consent_timeout", ice.consent_timeout),
        ("transfer::HEADER_TIMEOUT", transfer::HEADER_TIMEOUT),
        ("transfer::DECISION_TIMEOUT", transfer::DECISION_TIMEOUT),
        ("transfer::ACCEPT_TIMEOUT", transfer::ACCEPT_TIMEOUT),
        ("transfer::LINGER", transfer::LINGER),
        ("node::ASK_TIMEOUT", ASK_TIMEOUT),
        (
            "signal::REQUEST_WINDOW",
            ferry_proto::signal::REQUEST_WINDOW,
        ),
        ("turn::TurnConfig::keepalive", turn.keepalive),
        ("turn::TurnConfig::request_timeout", turn.request_timeout),
        ("turn::TurnConfig::connect_timeout", turn.connect_timeout),
        (
            "turn::PERMISSION_REFRESH",
            ferry_proto::turn::PERMISSION_REFRESH,
        ),
    ];
    for (name, value) in durations {
        assert_eq!(limit(name), duration(value), "{name}");
    }
    let sizes = [
        ("node::UNROUTED_LIMIT", UNROUTED_LIMIT),
        ("signal::MAX_SEALED", ferry_proto::signal::MAX_SEALED),
        ("ice::Config::early_data_limit", ice.early_data_limit),
        ("ice::EARLY_DATA_CAP", EARLY_DATA_CAP),
        ("channel::MAX_UNIT", MAX_UNIT),
        ("transfer::header::MAX_LINE", header::MAX_LINE),
        ("transfer::header::MAX_HEADER", header::MAX_HEADER),
        ("transfer::MAX_NAME_BYTES", transfer::MAX_NAME_BYTES),
        ("transfer::frame::MAX_DATA", transfer::frame::MAX_DATA),
        ("transfer::SEND_WINDOW", transfer::SEND_WINDOW),
        ("transfer::WRITE_WINDOW", transfer::WRITE_WINDOW),
        (
            "transfer::manifest::MAX_MANIFEST",
            transfer::manifest::MAX_MANIFEST,
        ),
        (
            "transfer::manifest::MAX_PATH_BYTES",
            transfer::manifest::MAX_PATH_BYTES,
        ),
        (
            "conversation::MAX_REQUEST",
            ferry_proto::conversation::MAX_REQUEST,
        ),
    ];
    for (name, value) in sizes {
        assert_eq!(limit(name), bytes(value), "{name}");
    }
    let counts = [
        ("node::UNROUTED_MAX", UNROUTED_MAX),
        ("node::UNROUTED_PER_SOURCE", UNROUTED_PER_SOURCE),
        ("signal::REMEMBERED", ferry_proto::signal::REMEMBERED),
        ("node::MAX_CONNECTORS", MAX_CONNECTORS),
        (
            "node::MAX_CONNECTORS_PER_ACCOUNT",
            MAX_CONNECTORS_PER_ACCOUNT,
        ),
        ("ice::Config::max_pairs", ice.max_pairs),
        ("ice::Config::max_connections", ice.max_connections),
        (
            "ice::Config::max_connect_retries",
            ice.max_connect_retries as usize,
        ),
        ("channel::MAX_CHANNELS", MAX_CHANNELS),
        ("channel::MAX_PEER_CHANNELS", MAX_PEER_CHANNELS),
        ("node::MAX_TRANSFERS_PER_PEER", MAX_TRANSFERS_PER_PEER),
        ("node::MAX_OFFERS_PER_PEER", MAX_OFFERS_PER_PEER),
        ("node::MAX_ASKS_PER_PEER", MAX_ASKS_PER_PEER),
        ("node::MAX_OWN_ASKS", MAX_OWN_ASKS),
        (
            "transfer::manifest::MAX_ENTRIES",
            transfer::manifest::MAX_ENTRIES,
        ),
        (
            "transfer::manifest::MAX_DEPTH",
            transfer::manifest::MAX_DEPTH,
        ),
        (
            "node::REQUEST_CHECKS_PER_WINDOW",
            REQUEST_CHECKS_PER_WINDOW as usize,
        ),
        (
            "node::ANNOUNCEMENT_CHECKS_PER_WINDOW",
            ANNOUNCEMENT_CHECKS_PER_WINDOW as usize,
        ),
    ];
    for (name, value) in counts {
        assert_eq!(limit(name), value.to_string(), "{name}");
    }
}

/// §9's connection messages: the first form, the request with a time (§9.1), the answer.
fn signal_messages() -> [(&'static str, ferry_proto::signal::PeerConnection); 3] {
    use ferry_proto::signal::PeerConnection;
    let request = PeerConnection {
        id: 0x0102_0304_0506_0708,
        is_answer: false,
        ice: "0d04b932\n7c33834e7cf944bf0e367b47\n\
              H1 1 TCP 2130706431 203.0.113.9 5000 typ host tcptype passive\n"
            .into(),
        addresses: vec!["203.0.113.9:5000".parse().expect("an address")],
        seal: Some([0x11; 32]),
        time: None,
    };
    let timed = PeerConnection {
        time: Some(1_795_651_200),
        ..request.clone()
    };
    let answer = PeerConnection {
        is_answer: true,
        addresses: Vec::new(),
        seal: None,
        ..request.clone()
    };
    [
        ("signal-request", request),
        ("signal-request-time", timed),
        ("signal-answer", answer),
    ]
}

#[test]
fn signal_messages_both_forms() {
    use ferry_proto::signal::PeerConnection;
    for (name, msg) in signal_messages() {
        let wire = vector(name);
        assert_eq!(
            hex::encode(msg.encode()),
            hex::encode(&wire),
            "{name}: the code's bytes"
        );
        assert_eq!(PeerConnection::decode(&wire), Ok(msg), "{name}");
    }
    // The first form is the timed one without its last key: an older reader that ignores
    // unknown keys reads a timed request as the same request.
    let first = vector("signal-request");
    let timed = vector("signal-request-time");
    assert_eq!(timed[0], first[0] + 1, "one more map entry");
    assert_eq!(&timed[1..first.len()], &first[1..]);
}

/// §13: every OpenDHT vector decodes to what it says, and ours are what our encoder writes.
#[test]
fn opendht_messages() {
    use ferry_proto::opendht::InfoHash;
    use ferry_proto::opendht::message::{Encoder, Kind, Message, Want};
    use ferry_proto::opendht::parts::{Outcome, Reassembly};

    let decode = |name: &str| {
        Message::decode(&vector(&format!("opendht-{name}")))
            .unwrap_or_else(|e| panic!("opendht-{name}: {e}"))
    };
    let mut own = [0u8; 20];
    own[..6].copy_from_slice(b"ferry!");
    let enc = Encoder {
        id: InfoHash(own),
        network: 0,
    };

    // Ours, byte for byte.
    assert_eq!(enc.ping(1001), vector("opendht-ping"));
    let listen = decode("listen");
    let token = listen.token.clone();
    assert_eq!(token.len(), 32);
    assert_eq!(
        enc.listen(listen.tid, InfoHash::get(b"foo"), &token, 77),
        vector("opendht-listen")
    );
    let put = decode("put");
    assert_eq!(put.kind, Some(Kind::AnnounceValue));
    let value = put.values[0].clone();
    assert_eq!(
        (value.id, value.value_type, &value.data[..]),
        (0x5eed_000a, 0, &b"from ferry"[..])
    );
    let key = put.info_hash.expect("h");
    assert_eq!(key, InfoHash::get(b"ferry-small"));
    let again = enc.put(put.tid, key, &value, &put.token);
    assert_eq!(
        (again.message, again.parts.len()),
        (vector("opendht-put"), 0)
    );

    // dhtnode's.
    let pong = decode("pong");
    assert_eq!(
        (pong.kind, pong.tid, pong.ua.as_deref()),
        (Some(Kind::Reply), 1001, Some("RNG1"))
    );
    assert_eq!(pong.reported_addr, Some("127.0.0.1".parse().expect("ip")));
    let dhtnode = pong.id.expect("id");
    let found = decode("find-reply");
    assert_eq!(found.id, Some(dhtnode));
    assert_eq!(found.nodes4.len(), 2);
    assert!(
        found
            .nodes4
            .iter()
            .any(|n| n.id == enc.id && n.addr.port() == 4300)
    );
    assert_eq!(found.token.len(), 32);
    let got = decode("get-reply");
    assert_eq!(got.values.len(), 1);
    assert_eq!(
        (got.values[0].value_type, &got.values[0].data[..]),
        (0, &b"hello"[..])
    );
    let head = decode("get-reply-head");
    assert_eq!(head.value_headers, [(0, 1055)]);
    let part = decode("value-part");
    assert_eq!(part.kind, Some(Kind::ValueData));
    let from = "127.0.0.1:4222".parse().expect("addr");
    let now = std::time::Instant::now();
    let mut parts = Reassembly::new();
    assert_eq!(parts.start(now, from, head), Outcome::Held);
    let Outcome::Complete(done) = parts.part(now, from, &part) else {
        panic!("one part completes the 1055-byte value");
    };
    assert_eq!(done.values[0].data, vec![b'B'; 1000]);
    let confirmed = decode("put-reply");
    assert_eq!(
        (confirmed.tid, confirmed.value_id),
        (put.tid, Some(0x5eed_000a))
    );
    let refused = decode("error");
    assert_eq!(
        (refused.kind, refused.error_code, refused.id),
        (Some(Kind::Error), Some(401), Some(dhtnode))
    );
    let pushed = decode("listen-push");
    assert_eq!(
        (pushed.tid, &pushed.values[0].data[..]),
        (77, &b"again"[..])
    );
    assert_eq!(decode("asked-ping").kind, Some(Kind::Ping));
    let find = decode("asked-find");
    assert_eq!(find.kind, Some(Kind::FindNode));
    assert_eq!(find.want, Some(Want { v4: true, v6: true }));
    let get = decode("asked-get");
    assert_eq!(
        (get.kind, get.info_hash),
        (Some(Kind::GetValues), Some(key))
    );

    // Refresh: ours byte for byte; dhtnode's confirmations and its 404.
    let refresh = decode("refresh");
    assert_eq!(
        (refresh.kind, refresh.value_id, refresh.info_hash),
        (
            Some(Kind::Refresh),
            Some(0xf00d),
            Some(InfoHash::get(b"ferry-refresh"))
        )
    );
    assert_eq!(
        enc.refresh(
            refresh.tid,
            InfoHash::get(b"ferry-refresh"),
            0xf00d,
            &refresh.token
        ),
        vector("opendht-refresh")
    );
    let ok = decode("refresh-reply");
    assert_eq!(
        (ok.kind, ok.tid, ok.value_id),
        (Some(Kind::Reply), refresh.tid, Some(0xf00d))
    );
    let unknown = decode("refresh-unknown-id");
    assert_eq!(
        (unknown.kind, unknown.value_id),
        (Some(Kind::Reply), Some(0xdead))
    );
    let missing = decode("refresh-404");
    assert_eq!(
        (missing.kind, missing.error_code),
        (Some(Kind::Error), Some(404))
    );
    // A listen update: ours byte for byte.
    let update = decode("update");
    assert_eq!(
        (update.kind, update.tid, &update.refreshed[..]),
        (Some(Kind::ValueUpdate), 88, &[0xf00d][..])
    );
    let token: Vec<u8> = (0..32).collect();
    assert_eq!(
        enc.update(88, &token, "re", &[0xf00d]),
        vector("opendht-update")
    );
}

/// §14: the manifest's bytes, written by the code and read back; a file of a manifest names it
/// in its header; a header without a manifest is today's byte for byte.
#[test]
fn manifest_and_its_files() {
    use ferry_proto::transfer::manifest::wire::ManifestParser;
    use ferry_proto::transfer::manifest::{Entry, EntryKind, Manifest, RelPath};
    let manifest = Manifest::new(vec![
        Entry {
            path: RelPath::parse("trip/hello.txt").expect("path"),
            kind: EntryKind::File {
                id: TransferId(42),
                size: 5,
            },
        },
        Entry {
            path: RelPath::parse("trip/empty").expect("path"),
            kind: EntryKind::Folder,
        },
    ])
    .expect("a valid manifest");
    let wire = vector("manifest");
    assert_eq!(
        String::from_utf8_lossy(&manifest.encode()),
        String::from_utf8_lossy(&wire)
    );
    assert_eq!(ManifestParser::new().feed(&wire), Ok(Some(manifest)));

    // The sender's machine writes the vector for a file of manifest 7, and the receiver's
    // machine reads the manifest's id from it; in Jami's form the key is never written.
    let now = Instant::now();
    for (form, expected) in [
        (Form::Framed, vector("header-manifest-file")),
        (Form::Raw, vector("header-jami")),
    ] {
        let mut alice = Outgoing::new(
            TransferId(42),
            FileId(1),
            "hello".into(),
            "hello.txt".into(),
            form,
        )
        .with_manifest(TransferId(7));
        let _ = alice.poll_output(); // the file's opening
        alice
            .handle_input(
                now,
                Input::File(FileResult::Opened {
                    file: FileId(1),
                    len: 5,
                }),
            )
            .expect("opened");
        let sent = std::iter::from_fn(|| alice.poll_output().map(joined))
            .find_map(|o| match o {
                Output::Send(bytes) => Some(bytes),
                _ => None,
            })
            .expect("a header");
        assert_eq!(sent.as_ref(), expected.as_slice());
    }
    let mut bob = Incoming::new(TransferId(42), FileId(2), Form::Framed);
    bob.handle_input(now, Input::Received(vector("header-manifest-file").into()))
        .expect("a header");
    assert_eq!(bob.header().and_then(|h| h.manifest), Some(TransferId(7)));

    let mut header = hello_header(true);
    header.prefix_digest = true;
    header.manifest = Some(TransferId(7));
    let wire = vector("header-manifest-file");
    assert_eq!(header.encode().as_ref(), wire.as_slice());
    assert_eq!(HeaderParser::new().push(&wire), Ok(Some(header.clone())));
    // Never in the raw form, and absent without a manifest: today's bytes.
    header.extension = None;
    header.prefix_digest = false;
    assert_eq!(header.encode().as_ref(), vector("header-jami").as_slice());
    let mut header = hello_header(true);
    header.prefix_digest = true;
    assert_eq!(
        header.encode().as_ref(),
        vector("header-framed-features").as_slice()
    );
}
