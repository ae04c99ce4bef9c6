//! The transfer codecs (header, reply, frames), the name sanitiser, and the two transfer
//! machines driven by a hostile peer.

use std::path::{Component, Path};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{FileId, FileOp, FileResult};
use ferry_proto::transfer::frame::{FRAME_HEADER, Frame, FrameDecoder, FrameError, MAX_DATA};
use ferry_proto::transfer::header::{Header, HeaderError, HeaderParser, MAX_LINE};
use ferry_proto::transfer::reply::{BadReply, Reply, ReplyParser};
use ferry_proto::transfer::{
    Digest, Form, Incoming, Input, MAX_NAME_BYTES, NameError, Outgoing, Output, SafeName,
    TransferId,
};

use super::{Script, pieces};

type HeaderResult = Result<Option<(Header, Vec<u8>)>, HeaderError>;

/// Parses a header from `parts`; once it is whole, what follows it is returned beside it.
fn parse_header(parts: &[&[u8]]) -> HeaderResult {
    let mut parser = HeaderParser::new();
    for (i, part) in parts.iter().enumerate() {
        if let Some(header) = parser.push(part)? {
            let mut rest = parser.take_rest().to_vec();
            rest.extend(parts[i + 1..].concat());
            return Ok(Some((header, rest)));
        }
    }
    Ok(None)
}

/// The header parser: any split gives the same verdict, a parsed header prints back to
/// bytes that parse to it again, and whatever name it carries sanitises without panicking.
pub fn transfer_header(data: &[u8]) {
    let (stream, parts) = pieces(data);
    let whole = parse_header(&[stream]);
    let split = parse_header(&parts);
    match (&whole, &split) {
        (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b, "the split changed the header"),
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        _ => panic!("the split changed the verdict: whole {whole:?}, split {split:?}"),
    }
    if let Ok(Some((header, _))) = whole {
        let _ = SafeName::from_display_name(&header.display_name);
        match parse_header(&[&header.encode()]) {
            Ok(Some((again, rest))) => {
                assert_eq!(again, header, "encode then parse");
                assert!(rest.is_empty());
            }
            // Printing adds a space after the colon: a name that filled its line exactly
            // no longer fits it.
            Err(HeaderError::LineTooLong) if header.display_name.len() >= MAX_LINE - 15 => {}
            other => panic!("a parsed header does not parse back: {other:?}"),
        }
    }
}

fn parse_reply(parts: &[&[u8]]) -> Result<Option<(Reply, Vec<u8>)>, BadReply> {
    let mut parser = ReplyParser::new();
    for (i, part) in parts.iter().enumerate() {
        if let Some((reply, rest)) = parser.push(part)? {
            let mut rest = rest.to_vec();
            rest.extend(parts[i + 1..].concat());
            return Ok(Some((reply, rest)));
        }
    }
    Ok(None)
}

/// `GO` / `GO <n>` / `NGO`: any split gives the same verdict, and a reply prints back to itself.
pub fn transfer_reply(data: &[u8]) {
    let (stream, parts) = pieces(data);
    let whole = parse_reply(&[stream]);
    let split = parse_reply(&parts);
    assert_eq!(whole, split, "the split changed the reply");
    if let Ok(Some((reply, _))) = whole {
        assert_eq!(
            parse_reply(&[&reply.encode()]),
            Ok(Some((reply, Vec::new())))
        );
    }
}

/// Every frame of `parts`, then the error that ended them, if any; checks the decoder's
/// buffer bound after each drain.
fn decode_frames(parts: &[&[u8]]) -> (Vec<Frame>, Option<FrameError>) {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    for part in parts {
        decoder.push(part);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
        assert!(
            decoder.buffered() < FRAME_HEADER + MAX_DATA,
            "the decoder holds {} bytes after a drain",
            decoder.buffered()
        );
    }
    (frames, None)
}

/// Ferry's frames: any split decodes the same, and each frame prints back to the bytes it
/// came from.
pub fn transfer_frame(data: &[u8]) {
    let (stream, parts) = pieces(data);
    let whole = decode_frames(&[stream]);
    let split = decode_frames(&parts);
    assert_eq!(whole, split, "the split changed the frames");
    let printed: Vec<u8> = whole.0.iter().flat_map(|f| f.encode().to_vec()).collect();
    assert!(
        stream.starts_with(&printed),
        "frames print back to the bytes they came from"
    );
}

/// Characters a name must not keep, from Unicode's format category (Cf): they reorder or hide
/// what a user reads (bidirectional controls, zero-width characters, tags), so
/// `evil\u{202e}gpj.exe` would show as `evilexe.jpg`.
pub(crate) fn is_format_char(c: char) -> bool {
    matches!(c,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{61c}' | '\u{ad}'
        | '\u{e0001}' | '\u{e0020}'..='\u{e007f}')
}

/// The `Display-Name` sanitiser: what it keeps is one harmless path component, and
/// sanitising it again changes nothing.
pub fn display_name(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let name = match SafeName::from_display_name(&raw) {
        Ok(name) => name,
        Err(NameError::Empty) => return,
        Err(NameError::Reserved(name)) => {
            assert!(name.len() <= MAX_NAME_BYTES);
            return;
        }
        Err(e) => panic!("unknown error {e:?}"),
    };
    let s = name.as_str();
    assert!(!s.is_empty() && s.len() <= MAX_NAME_BYTES, "{s:?}");
    assert!(
        !s.chars().any(|c| c.is_control()
            || is_format_char(c)
            || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')),
        "{s:?}"
    );
    assert!(
        !s.starts_with(['.', ' ']) && !s.ends_with(['.', ' ']),
        "{s:?}"
    );
    let mut components = Path::new(s).components();
    assert!(
        matches!(components.next(), Some(Component::Normal(_))) && components.next().is_none(),
        "{s:?} is not one plain path component"
    );
    assert_eq!(
        SafeName::from_display_name(s).as_ref(),
        Ok(&name),
        "sanitising twice"
    );
}

const TRANSFER: TransferId = TransferId(1);
const FILE: FileId = FileId(1);

/// What the peer made a transfer machine put on the stream and on the disk.
#[derive(Default)]
struct Seen {
    sent: Vec<u8>,
    /// The next byte a write must start at, once the first write set it.
    next_write: Option<u64>,
    written: u64,
    pending: Vec<FileOp>,
}

impl Seen {
    fn take(&mut self, outputs: impl Iterator<Item = Output>, size: u64) {
        for output in outputs {
            match output {
                Output::Send(bytes) => self.sent.extend_from_slice(&bytes),
                Output::SendData { header, data } => {
                    self.sent.extend_from_slice(&header);
                    self.sent.extend_from_slice(&data);
                }
                Output::File(FileOp::Write { offset, data, .. }) => {
                    if let Some(next) = self.next_write {
                        assert_eq!(offset, next, "writes are contiguous");
                    }
                    self.next_write = Some(offset + data.len() as u64);
                    self.written = offset + data.len() as u64;
                    assert!(self.written <= size, "a write past the announced size");
                    self.pending.push(FileOp::Write {
                        file: FILE,
                        offset,
                        data,
                    });
                }
                // Opening is answered by the harness itself, before the script starts.
                Output::File(FileOp::OpenSource { .. } | FileOp::OpenPartial { .. }) => {}
                Output::File(op) => self.pending.push(op),
                _ => {}
            }
        }
    }
}

/// Answers the oldest file operation the way a disk would (`good` picks a digest that
/// matches or not).
fn answer(op: FileOp, good: bool, size: u64) -> Option<FileResult> {
    Some(match op {
        FileOp::Write { offset, data, .. } => FileResult::Written {
            file: FILE,
            offset,
            len: data.len() as u32,
        },
        FileOp::Read { offset, len, .. } => FileResult::Data {
            file: FILE,
            offset,
            data: Bytes::from(vec![0x5a; len as usize]),
        },
        FileOp::Digest { len, .. } => FileResult::Digest {
            file: FILE,
            digest: if good && len == size {
                Digest::of(&vec![0x5a; len as usize])
            } else {
                Digest([1; 64])
            },
        },
        FileOp::Commit { .. } => FileResult::Committed {
            file: FILE,
            name: "f".into(),
        },
        FileOp::Discard { .. } | FileOp::Close { .. } => FileResult::Closed { file: FILE },
        FileOp::Truncate { .. } => FileResult::Opened { file: FILE, len: 0 },
        _ => return None,
    })
}

/// The two transfer machines with a hostile peer: a script of received pieces, disk answers,
/// time and cancels. Network bytes are never a caller error; writes stay contiguous and
/// within the announced size; what a machine sends is well-formed.
pub fn transfer_machines(data: &[u8]) {
    let mut s = Script::new(data);
    let mode = s.byte();
    let form = if mode & 1 == 0 {
        Form::Framed
    } else {
        Form::Raw
    };
    let mut now = Instant::now();
    if mode & 2 == 0 {
        incoming(&mut s, form, &mut now);
    } else {
        outgoing(&mut s, form, &mut now);
    }
}

fn incoming(s: &mut Script<'_>, form: Form, now: &mut Instant) {
    let mut m = Incoming::new(TRANSFER, FILE, form);
    let mut seen = Seen::default();
    let size_hint = u64::from(s.u16());
    if s.byte() & 1 == 0 {
        // A valid header first, so the script reaches the later states.
        let header = Header {
            content_length: size_hint,
            display_name: "f.bin".into(),
            offset: 0,
            extension: (s.byte() & 1 == 0).then_some(1),
            prefix_digest: false,
            manifest: None,
        };
        m.handle_input(*now, Input::Received(header.encode()))
            .expect("network bytes are never a caller error");
        let _ = m.accept(*now);
        let held = u64::from(s.u16()).min(size_hint);
        m.handle_input(
            *now,
            Input::File(FileResult::Opened {
                file: FILE,
                len: held,
            }),
        )
        .expect("the answer to OpenPartial");
    }
    let size = m.header().map_or(u64::MAX, |h| h.content_length);
    seen.take(std::iter::from_fn(|| m.poll_output()), size);
    while !s.is_empty() {
        match s.byte() % 6 {
            0 | 1 => {
                let piece = Bytes::copy_from_slice(s.piece());
                m.handle_input(*now, Input::Received(piece))
                    .expect("network bytes are never a caller error");
            }
            2 => {
                if !seen.pending.is_empty() {
                    let op = seen.pending.remove(0);
                    let good = s.byte() & 1 == 0;
                    let size = m.header().map_or(0, |h| h.content_length);
                    if let Some(result) = answer(op, good, size) {
                        m.handle_input(*now, Input::File(result))
                            .expect("the answer to an operation asked for");
                    }
                }
            }
            3 => {
                *now += Duration::from_secs(u64::from(s.byte()) * 10);
                m.handle_timeout(*now);
            }
            4 => {
                let input = match s.byte() % 3 {
                    0 => Input::StreamEnded,
                    1 => Input::StreamReset,
                    _ => Input::Writable(usize::from(s.u16())),
                };
                m.handle_input(*now, input)
                    .expect("stream events are never errors");
            }
            _ => match s.byte() % 3 {
                0 => m.cancel(*now),
                1 => {
                    let _ = m.accept(*now);
                }
                _ => {
                    let _ = m.refuse(*now);
                }
            },
        }
        let size = m.header().map_or(u64::MAX, |h| h.content_length);
        seen.take(std::iter::from_fn(|| m.poll_output()), size);
    }
    // What the receiver said: at most one reply line, then (framed) frames only.
    if !seen.sent.is_empty() {
        match parse_reply(&[&seen.sent]) {
            Ok(Some((_, rest))) => assert_eq!(decode_frames(&[&rest]).1, None, "bad frames sent"),
            other => panic!("the receiver sent something else than a reply: {other:?}"),
        }
    }
}

fn outgoing(s: &mut Script<'_>, form: Form, now: &mut Instant) {
    let mut m = Outgoing::new(TRANSFER, FILE, "source".into(), "f.bin".into(), form);
    let size = u64::from(s.u16());
    let mut seen = Seen::default();
    seen.take(std::iter::from_fn(|| m.poll_output()), u64::MAX);
    m.handle_input(
        *now,
        Input::File(FileResult::Opened {
            file: FILE,
            len: size,
        }),
    )
    .expect("the answer to OpenSource");
    seen.pending.clear();
    seen.take(std::iter::from_fn(|| m.poll_output()), u64::MAX);
    while !s.is_empty() {
        match s.byte() % 5 {
            0 | 1 => {
                let piece = Bytes::copy_from_slice(s.piece());
                m.handle_input(*now, Input::Received(piece))
                    .expect("network bytes are never a caller error");
            }
            2 => {
                if !seen.pending.is_empty() {
                    let op = seen.pending.remove(0);
                    if let FileOp::Read { offset, len, .. } = &op {
                        assert!(offset + u64::from(*len) <= size, "a read past the file");
                    }
                    if let Some(result) = answer(op, true, size) {
                        m.handle_input(*now, Input::File(result))
                            .expect("the answer to an operation asked for");
                    }
                }
            }
            3 => {
                let input = match s.byte() % 3 {
                    0 => Input::StreamEnded,
                    1 => Input::StreamReset,
                    _ => Input::Writable(usize::from(s.u16())),
                };
                m.handle_input(*now, input)
                    .expect("stream events are never errors");
            }
            _ => {
                if s.byte() & 1 == 0 {
                    m.cancel(*now);
                } else {
                    *now += Duration::from_secs(u64::from(s.byte()) * 10);
                    m.handle_timeout(*now);
                }
            }
        }
        seen.take(std::iter::from_fn(|| m.poll_output()), u64::MAX);
    }
    // What the sender said: a header, then raw bytes or frames.
    match parse_header(&[&seen.sent]) {
        Ok(Some((header, rest))) => {
            assert_eq!(header.content_length, size);
            if header.extension.is_some() && rest.first().is_some_and(|&b| b <= 4) {
                assert_eq!(decode_frames(&[&rest]).1, None, "bad frames sent");
            }
        }
        Ok(None) if seen.sent.is_empty() => {}
        other => panic!("the sender's header does not parse: {other:?}"),
    }
}
