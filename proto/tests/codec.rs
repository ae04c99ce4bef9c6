//! The transfer codecs on their own: every bad header gets its error, every parser accepts
//! its input split at any byte, and bad frames are refused without buffering beyond a frame.

use ferry_proto::transfer::Digest;
use ferry_proto::transfer::frame::{CancelCode, Frame, FrameDecoder, FrameError, MAX_DATA};
use ferry_proto::transfer::header::{Header, HeaderError, HeaderParser, MAX_HEADER, MAX_LINE};
use ferry_proto::transfer::reply::{BadReply, Reply, ReplyParser};

fn parse(bytes: &[u8]) -> Result<Option<Header>, HeaderError> {
    HeaderParser::new().push(bytes)
}

fn header() -> Header {
    Header {
        content_length: 1_048_576,
        display_name: "holidays 2026.tar.gz".to_owned(),
        offset: 0,
        extension: Some(1),
        prefix_digest: false,
        manifest: None,
    }
}

#[test]
fn header_round_trips_split_at_every_byte() {
    let mut wire = header().encode().to_vec();
    wire.extend_from_slice(b"\x03\x00\x00\x00\x01\x00"); // a CANCEL frame right behind it
    for split in 0..=wire.len() {
        let mut p = HeaderParser::new();
        let first = p.push(&wire[..split]).expect("valid");
        let complete_at_first = first.is_some();
        let parsed = match first {
            Some(h) => h,
            None => p.push(&wire[split..]).expect("valid").expect("complete"),
        };
        assert_eq!(parsed, header(), "split at {split}");
        let mut rest = p.take_rest().to_vec();
        if complete_at_first {
            rest.extend_from_slice(&wire[split..]);
        }
        assert_eq!(rest, b"\x03\x00\x00\x00\x01\x00", "split at {split}");
    }
}

#[test]
fn header_byte_by_byte() {
    let wire = header().encode();
    let mut p = HeaderParser::new();
    let mut got = None;
    for b in wire.iter() {
        assert!(got.is_none(), "the header ended early");
        got = p.push(&[*b]).expect("valid");
    }
    assert_eq!(got, Some(header()));
}

#[test]
fn header_fields_are_trimmed_unknown_keys_ignored_and_cr_tolerated() {
    let h = parse(b"X-Whatever: 1\nContent-Length:  42 \r\nDisplay-Name:   a b  \nOffset: 2\n\n")
        .expect("valid")
        .expect("complete");
    assert_eq!(
        h,
        Header {
            content_length: 42,
            display_name: "a b".to_owned(),
            offset: 2,
            extension: None,
            prefix_digest: false,
            manifest: None,
        }
    );
}

#[test]
fn a_missing_offset_means_zero_and_an_unknown_version_is_kept() {
    let h = parse(b"Content-Length: 5\nDisplay-Name: x\nFerry-Frames: 7\n\n")
        .expect("valid")
        .expect("complete");
    assert_eq!((h.offset, h.extension), (0, Some(7)));
}

#[test]
fn every_bad_header_gets_its_error() {
    let long_line = format!("Display-Name: {}\n", "x".repeat(MAX_LINE));
    let many_lines = "X-Pad: 0123456789012345678901234567890123456789\n".repeat(MAX_HEADER / 40);
    let cases: Vec<(Vec<u8>, HeaderError)> = vec![
        (long_line.into_bytes(), HeaderError::LineTooLong),
        (
            "y".repeat(MAX_LINE + 1).into_bytes(),
            HeaderError::LineTooLong,
        ),
        (many_lines.into_bytes(), HeaderError::TooLong),
        (
            b"Display-Name: a\n\n".to_vec(),
            HeaderError::MissingContentLength,
        ),
        (
            b"Content-Length: 12ab\nDisplay-Name: a\n\n".to_vec(),
            HeaderError::NotANumber("Content-Length"),
        ),
        (
            // SECURITY: row 6
            b"Content-Length: -1\n\n".to_vec(),
            HeaderError::NotANumber("Content-Length"),
        ),
        (
            b"Content-Length: +1\n\n".to_vec(),
            HeaderError::NotANumber("Content-Length"),
        ),
        (
            b"Content-Length: \n\n".to_vec(),
            HeaderError::NotANumber("Content-Length"),
        ),
        (
            b"Content-Length: 99999999999999999999999\n\n".to_vec(),
            HeaderError::NotANumber("Content-Length"),
        ),
        (
            b"Content-Length: 1 000\n\n".to_vec(),
            HeaderError::NotANumber("Content-Length"),
        ),
        (
            b"Content-Length: 10\nOffset: x\n\n".to_vec(),
            HeaderError::NotANumber("Offset"),
        ),
        (
            // SECURITY: row 7
            b"Content-Length: 10\nDisplay-Name: a\nOffset: 11\n\n".to_vec(),
            HeaderError::OffsetBeyondSize {
                offset: 11,
                content_length: 10,
            },
        ),
        (
            // SECURITY: row 10
            b"Content-Length: 10\nContent-Length: 20\n\n".to_vec(),
            HeaderError::Duplicate("Content-Length"),
        ),
        (
            b"Content-Length: 10\nnot a field\n\n".to_vec(),
            HeaderError::MissingColon(2),
        ),
        (
            b"Content-Length: 10\nDisplay-Name: \xff\xfe\n\n".to_vec(),
            HeaderError::NotUtf8,
        ),
    ];
    for (bytes, want) in cases {
        // Whole, and byte by byte: the error is the same however the bytes arrive.
        assert_eq!(
            parse(&bytes),
            Err(want.clone()),
            "{:?}",
            String::from_utf8_lossy(&bytes)
        );
        let mut p = HeaderParser::new();
        let mut got = Ok(None);
        for b in &bytes {
            got = p.push(&[*b]);
            if got.is_err() {
                break;
            }
        }
        assert_eq!(
            got,
            Err(want),
            "byte by byte: {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
}

#[test]
fn the_header_parser_never_holds_more_than_a_header() {
    // A peer that never sends the blank line is cut off at the limit, not buffered forever.
    let mut p = HeaderParser::new();
    // SECURITY: row 8
    let line = b"X-Pad: 0123456789\n";
    let mut result = Ok(None);
    for _ in 0..(2 * MAX_HEADER / line.len()) {
        result = p.push(line);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(HeaderError::TooLong));
}

#[test]
fn replies_parse_split_anywhere() {
    for (wire, want) in [
        (&b"GO\n"[..], Reply::Go),
        (b"GO 0\n", Reply::GoAt(0)),
        (b"GO 123456\n", Reply::GoAt(123456)),
        (b"NGO\n", Reply::Ngo),
        (
            b"GO 3 b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0\n",
            Reply::GoVerify(3, Digest::of(b"abc")),
        ),
    ] {
        assert_eq!(want.encode(), wire);
        for split in 0..=wire.len() {
            let mut p = ReplyParser::new();
            let got = match p.push(&wire[..split]).expect("valid") {
                Some(r) => r,
                None => p.push(&wire[split..]).expect("valid").expect("complete"),
            };
            assert_eq!(got.0, want);
            assert!(got.1.is_empty());
        }
    }
}

#[test]
fn bad_replies_are_errors() {
    for wire in [
        &b"OK\n"[..],
        b"go\n",
        b"GO \n",
        b"GO -1\n",
        b"GO 1x\n",
        b"NGO \n",
        b"GO 99999999999999999999999\n",
        // A prefix digest: exactly 128 lowercase hex digits, one space before it.
        b"GO 3 abc\n",
        b"GO 3  b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0\n",
        b"GO 3 B751850B1A57168A5693CD924B6B096E08F621827444F70D884F5D0240D2712E10E116E9192AF3C91A7EC57647E3934057340B4CF408D5A56592F8274EEC53F0\n",
        b"GO 3 b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0 \n",
        b"GO  b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0\n",
    ] {
        assert_eq!(
            ReplyParser::new().push(wire),
            Err(BadReply),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
    // No newline within the limit: garbage, not an endless wait.
    assert_eq!(ReplyParser::new().push(&[b'G'; 161]), Err(BadReply));
}

#[test]
fn frames_round_trip_split_anywhere() {
    let frames = vec![
        Frame::Data(vec![7u8; 1000].into()),
        Frame::Data(vec![1u8; MAX_DATA].into()),
        Frame::End(Digest::of(b"ferry")),
        Frame::Cancel(CancelCode::User),
        Frame::Cancel(CancelCode::Other(200)),
        Frame::Verdict(true),
        Frame::Verdict(false),
        Frame::Restart,
    ];
    let wire: Vec<u8> = frames.iter().flat_map(|f| f.encode().to_vec()).collect();
    for step in [1, 2, 3, 5, 7, 4096, 70_000] {
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for chunk in wire.chunks(step) {
            d.push(chunk);
            while let Some(f) = d.next_frame().expect("valid") {
                got.push(f);
            }
        }
        assert_eq!(got, frames, "chunks of {step}");
        assert_eq!(d.buffered(), 0);
    }
}

#[test]
fn bad_frames_are_refused_from_their_header() {
    let cases: Vec<(&[u8], FrameError)> = vec![
        (b"\x09\x00\x00\x00\x01\x00", FrameError::UnknownType(9)),
        (
            b"\x01\x00\x00\x00\x00",
            FrameError::BadLength { kind: 1, len: 0 },
        ),
        // A DATA frame announcing 4 GiB is refused before a byte of it is buffered.
        (
            // SECURITY: row 15
            b"\x01\xff\xff\xff\xff",
            FrameError::BadLength {
                kind: 1,
                len: u32::MAX,
            },
        ),
        (
            b"\x01\x00\x01\x00\x01",
            FrameError::BadLength {
                kind: 1,
                len: MAX_DATA as u32 + 1,
            },
        ),
        (
            b"\x02\x00\x00\x00\x20",
            FrameError::BadLength { kind: 2, len: 32 },
        ),
        (
            b"\x03\x00\x00\x00\x02",
            FrameError::BadLength { kind: 3, len: 2 },
        ),
        (b"\x04\x00\x00\x00\x01\x05", FrameError::BadVerdict(5)),
    ];
    for (wire, want) in cases {
        let mut d = FrameDecoder::new();
        d.push(wire);
        assert_eq!(d.next_frame(), Err(want), "{wire:?}");
    }
}

/// Found while writing the `transfer_header` fuzz target's check that any split gives the same
/// verdict: a blank line (spaces only) longer than a line may be was a header's end when read
/// whole, and too long when read byte by byte.
#[test]
fn a_blank_line_longer_than_a_line_is_refused_however_it_arrives() {
    let mut bytes = b"Content-Length: 1\n".to_vec();
    // SECURITY: row 9
    bytes.extend(std::iter::repeat_n(b' ', MAX_LINE + 1));
    bytes.push(b'\n');
    assert_eq!(parse(&bytes), Err(HeaderError::LineTooLong));
    let mut p = HeaderParser::new();
    let got = bytes
        .iter()
        .map(|b| p.push(&[*b]))
        .find(|r| !matches!(r, Ok(None)));
    assert_eq!(got, Some(Err(HeaderError::LineTooLong)));
}

/// Found by the `transfer_reply` fuzz target: a reply line longer than its limit (then 32
/// bytes, now 160 for `GO <n> <digest>`; zeros before the offset) parsed when it came whole,
/// and was garbage when it came in pieces.
#[test]
fn a_reply_longer_than_its_limit_is_garbage_however_it_arrives() {
    // SECURITY: row 11
    let mut wire = b"GO ".to_vec();
    wire.extend([b'0'; 160]);
    wire.extend(b"4096\n");
    let wire = &wire[..];
    assert_eq!(ReplyParser::new().push(wire), Err(BadReply));
    let mut p = ReplyParser::new();
    let got = wire
        .iter()
        .map(|b| p.push(&[*b]))
        .find(|r| !matches!(r, Ok(None)));
    assert_eq!(got, Some(Err(BadReply)));
    // Up to the limit, leading zeros are still a number.
    assert_eq!(
        ReplyParser::new().push(&[&b"GO "[..], &[b'0'; 155][..], b"42\n"].concat()),
        Ok(Some((Reply::GoAt(42), bytes::Bytes::new())))
    );
}
