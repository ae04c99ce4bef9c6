//! Property tests (proptest) of the wire formats: what Ferry encodes decodes to itself,
//! whatever the values, and a stream decoder gives the same messages however the stream is
//! cut (at every point, and into any pieces).
//!
//! The fuzz targets (`fuzz/`) feed the same decoders arbitrary bytes; these start from
//! arbitrary *values*, so they reach every encoder and every field's range, and they run in
//! every `cargo test` with a fixed number of cases (proptest's default, 256 per property;
//! `PROPTEST_CASES` raises it).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Bytes, BytesMut};
use ferry_proto::ice::{Candidate, CandidateType, Description, TcpType};
use ferry_proto::signal::PeerConnection;
use ferry_proto::stun::{BINDING, Builder, Class, RoleAttribute, StunMessage, framing};
use ferry_proto::transfer::frame::{CancelCode, Frame, FrameDecoder};
use ferry_proto::transfer::header::{Header, HeaderParser};
use ferry_proto::transfer::reply::{Reply, ReplyParser};
use proptest::prelude::*;

fn socket_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), 1..=u16::MAX)
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), 1..=u16::MAX)
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

/// Cut points in a stream of `len` bytes, from arbitrary numbers.
fn cuts(len: usize, raw: &[usize]) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.iter().map(|c| c % (len + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// `stream` cut at `cuts` (sorted).
fn pieces<'a>(stream: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        out.push(&stream[at..c]);
        at = c;
    }
    out.push(&stream[at..]);
    out
}

// ----- STUN (RFC 8489) and RFC 4571 framing -----

fn stun_class() -> impl Strategy<Value = Class> {
    prop_oneof![
        Just(Class::Request),
        Just(Class::Indication),
        Just(Class::Success),
        Just(Class::Error),
    ]
}

proptest! {
    #[test]
    fn stun_messages_decode_to_what_was_built(
        class in stun_class(),
        transaction in any::<u128>().prop_map(|t| t >> 32),
        username in proptest::option::of("[a-zA-Z0-9+/]{1,64}:[a-zA-Z0-9+/]{1,64}"),
        priority in proptest::option::of(any::<u32>()),
        use_candidate in any::<bool>(),
        role in proptest::option::of(prop_oneof![
            any::<u64>().prop_map(RoleAttribute::Controlling),
            any::<u64>().prop_map(RoleAttribute::Controlled),
        ]),
        xor_mapped in proptest::option::of(socket_addr()),
        error in proptest::option::of((300u16..700, "[ -~]{0,60}")),
        password in proptest::option::of("[a-zA-Z0-9+/]{22,40}"),
    ) {
        let mut b = Builder::new(class, BINDING, transaction);
        if let Some(u) = &username { b = b.username(u); }
        if let Some(p) = priority { b = b.priority(p); }
        if use_candidate { b = b.use_candidate(); }
        if let Some(r) = role { b = b.role(r); }
        if let Some(a) = xor_mapped { b = b.xor_mapped(a); }
        if let Some((code, reason)) = &error { b = b.error_code(*code, reason); }
        let bytes = b.finish(password.as_deref()).expect("a message");
        let m = StunMessage::decode(&bytes).expect("decodes");
        prop_assert_eq!(m.class, class);
        prop_assert_eq!(m.method, BINDING);
        prop_assert_eq!(m.transaction, transaction);
        prop_assert_eq!(m.username, username);
        prop_assert_eq!(m.priority, priority);
        prop_assert_eq!(m.use_candidate, use_candidate);
        prop_assert_eq!(m.role, role);
        prop_assert_eq!(m.xor_mapped, xor_mapped);
        prop_assert_eq!(m.error, error);
        prop_assert_eq!(m.has_integrity, password.is_some());
        prop_assert!(m.has_fingerprint);
        if let Some(p) = &password {
            prop_assert!(ferry_proto::stun::verify_integrity(&bytes, p).is_ok());
            let wrong = format!("{p}x");
            prop_assert!(ferry_proto::stun::verify_integrity(&bytes, &wrong).is_err());
        }
    }

    #[test]
    fn rfc4571_frames_come_out_whole_wherever_the_stream_is_cut(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = BytesMut::new();
        for p in &payloads {
            framing::encode_into(p, &mut stream);
        }
        // Any pieces.
        let cuts = cuts(stream.len(), &raw_cuts);
        let mut d = framing::FrameDecoder::new();
        let got: Vec<Bytes> = pieces(&stream, &cuts).into_iter().flat_map(|p| d.push(p)).collect();
        prop_assert_eq!(&got, &payloads);
        prop_assert_eq!(d.buffered(), 0);
    }

    #[test]
    fn rfc4571_frames_split_in_two_at_every_point(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..4),
    ) {
        let mut stream = BytesMut::new();
        for p in &payloads {
            framing::encode_into(p, &mut stream);
        }
        for at in 0..=stream.len() {
            let mut d = framing::FrameDecoder::new();
            let mut got = d.push(&stream[..at]);
            got.extend(d.push(&stream[at..]));
            prop_assert_eq!(&got, &payloads, "cut at {}", at);
        }
    }
}

// ----- the transfer's header, replies and frames -----

fn display_name() -> impl Strategy<Value = String> {
    // What a header line can carry: no line break, no surrounding blanks (trimmed).
    "[^\r\n]{0,80}".prop_map(|s| s.trim().to_owned())
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..500).prop_map(|d| Frame::Data(d.into())),
        any::<[u8; 64]>().prop_map(|d| Frame::End(ferry_proto::transfer::Digest(d))),
        prop_oneof![
            Just(CancelCode::User),
            Just(CancelCode::FileError),
            Just(CancelCode::Protocol),
            Just(CancelCode::Timeout),
            (5u8..=255).prop_map(CancelCode::Other),
        ]
        .prop_map(Frame::Cancel),
        any::<bool>().prop_map(Frame::Verdict),
        Just(Frame::Restart),
    ]
}

proptest! {
    #[test]
    fn headers_decode_to_what_was_encoded_wherever_cut(
        content_length in any::<u64>(),
        offset_frac in any::<u64>(),
        display_name in display_name(),
        extension in proptest::option::of(any::<u32>()),
        prefix_digest in any::<bool>(),
        manifest in proptest::option::of(any::<u64>()),
        tail in proptest::collection::vec(any::<u8>(), 0..40),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let header = Header {
            content_length,
            display_name,
            offset: if content_length == 0 { 0 } else { offset_frac % (content_length + 1) },
            extension,
            prefix_digest,
            // Written and read in the framed form only.
            manifest: extension.and(manifest.map(ferry_proto::transfer::TransferId)),
        };
        let mut stream = header.encode().to_vec();
        stream.extend_from_slice(&tail);
        let cuts = cuts(stream.len(), &raw_cuts);
        let mut p = HeaderParser::new();
        let mut got = None;
        let mut rest = Vec::new();
        for piece in pieces(&stream, &cuts) {
            if got.is_some() {
                rest.extend_from_slice(piece);
                continue;
            }
            if let Some(h) = p.push(piece).expect("a valid header") {
                got = Some(h);
                rest.extend_from_slice(&p.take_rest());
            }
        }
        prop_assert_eq!(got, Some(header));
        prop_assert_eq!(rest, tail, "the bytes after the header are handed on");
    }

    #[test]
    fn replies_decode_to_what_was_encoded_wherever_cut(
        reply in prop_oneof![
            Just(Reply::Go),
            any::<u64>().prop_map(Reply::GoAt),
            (any::<u64>(), any::<[u8; 64]>()).prop_map(|(n, d)| Reply::GoVerify(n, ferry_proto::transfer::Digest(d))),
            Just(Reply::Ngo),
        ],
        tail in proptest::collection::vec(any::<u8>(), 0..20),
        at in any::<usize>(),
    ) {
        let mut stream = reply.encode().to_vec();
        stream.extend_from_slice(&tail);
        let at = at % (stream.len() + 1);
        let mut p = ReplyParser::new();
        let got = match p.push(&stream[..at]).expect("a valid reply") {
            Some((r, rest)) => {
                let mut rest = rest.to_vec();
                rest.extend_from_slice(&stream[at..]);
                (r, rest)
            }
            None => {
                let (r, rest) = p.push(&stream[at..]).expect("a valid reply").expect("whole");
                (r, rest.to_vec())
            }
        };
        prop_assert_eq!(got, (reply, tail));
    }

    #[test]
    fn frames_decode_to_what_was_encoded_wherever_cut(
        frames in proptest::collection::vec(frame(), 0..10),
        raw_cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut stream = BytesMut::new();
        for f in &frames {
            f.encode_into(&mut stream);
        }
        let cuts = cuts(stream.len(), &raw_cuts);
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for piece in pieces(&stream, &cuts) {
            d.push(piece);
            while let Some(f) = d.next_frame().expect("valid frames") {
                got.push(f);
            }
        }
        prop_assert_eq!(got, frames);
        prop_assert_eq!(d.buffered(), 0);
    }
}

// ----- signalling and ICE -----

fn ice_chars(len: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[a-zA-Z0-9+/]{{{},{}}}", len.start(), len.end()))
        .expect("a regex")
}

fn candidate() -> impl Strategy<Value = Candidate> {
    (
        prop_oneof![
            Just(CandidateType::Host),
            Just(CandidateType::ServerReflexive),
            Just(CandidateType::PeerReflexive),
            Just(CandidateType::Relayed),
        ],
        prop_oneof![
            Just(TcpType::Active),
            Just(TcpType::Passive),
            Just(TcpType::SimultaneousOpen),
        ],
        socket_addr(),
        any::<u16>(),
    )
        .prop_map(|(kind, tcp, addr, pref)| Candidate::tcp(kind, tcp, addr, pref))
}

proptest! {
    #[test]
    fn connection_messages_decode_to_what_was_encoded(
        id in any::<u64>(),
        is_answer in any::<bool>(),
        ufrag in ice_chars(4..=32),
        pwd in ice_chars(22..=64),
        candidates in proptest::collection::vec(candidate(), 0..8),
        addresses in proptest::collection::vec(socket_addr(), 0..8),
        seal in proptest::option::of(any::<[u8; 32]>()),
        time in proptest::option::of(any::<u64>()),
    ) {
        let ice = Description { ufrag, pwd, candidates }.to_string();
        let m = PeerConnection { id, is_answer, ice, addresses, seal, time };
        prop_assert_eq!(PeerConnection::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn candidate_lines_and_descriptions_parse_to_what_was_written(
        ufrag in ice_chars(4..=32),
        pwd in ice_chars(22..=64),
        candidates in proptest::collection::vec(candidate(), 0..8),
    ) {
        for c in &candidates {
            let line = c.to_string();
            let back: Candidate = line.parse().expect("a candidate line");
            prop_assert_eq!(&back, c, "{}", line);
        }
        let d = Description { ufrag, pwd, candidates };
        let parsed = Description::parse(&d.to_string()).expect("a description");
        prop_assert!(parsed.bad_lines.is_empty(), "{:?}", parsed.bad_lines);
        prop_assert_eq!(parsed.description, d);
    }
}
