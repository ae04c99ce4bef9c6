//! Ferry's transfer stream (byte for byte in `PROTOCOL.md`): the header, the reply (`GO`,
//! `GO offset`, `NGO`), the frames (`DATA`, `END`, `VERDICT`, `CANCEL`) or the raw file.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::transfer::frame::{Frame, FrameDecoder};
use crate::transfer::header::{Header, HeaderParser};
use crate::transfer::reply::{Reply, ReplyParser};

use super::{Names, Summary, WireDecoder};

/// Which side of a transfer stream bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The side that sent the header.
    Sender,
    /// The side that answers it.
    Receiver,
}

#[derive(Debug, Default)]
enum Decode {
    #[default]
    Start,
    Frames(FrameDecoder),
    Raw,
    /// The stream cannot be decoded any further.
    Lost,
}

/// Decodes both directions of one transfer stream into summaries.
#[derive(Debug, Default)]
pub struct TransferWire {
    header: HeaderParser,
    parsed: Option<Header>,
    reply: ReplyParser,
    forward: Decode,
    backward: Decode,
}

impl TransferWire {
    /// A stream on which nothing was sent yet.
    pub fn new() -> TransferWire {
        TransferWire::default()
    }

    /// Decodes the bytes `from` one side, in the order they were sent.
    pub fn decode(&mut self, from: Side, data: &[u8]) -> Vec<Summary> {
        let mut out = Vec::new();
        match from {
            Side::Sender => self.forward_bytes(data, &mut out),
            Side::Receiver => self.backward_bytes(data, &mut out),
        }
        out
    }

    fn forward_bytes(&mut self, data: &[u8], out: &mut Vec<Summary>) {
        match &mut self.forward {
            Decode::Start => match self.header.push(data) {
                Ok(None) => {}
                Ok(Some(header)) => {
                    let mut text = format!(
                        "HEADER Content-Length={} Display-Name={:?} Offset={}",
                        header.content_length, header.display_name, header.offset
                    );
                    if let Some(v) = header.extension {
                        let _ = write!(text, " Ferry-Frames={v}");
                    }
                    if header.prefix_digest {
                        text.push_str(" Ferry-Features=prefix-digest");
                    }
                    out.push(Summary::plain(text));
                    // Until the reply says otherwise, a sender that offered frames speaks them.
                    self.forward = if header.extension.is_some() {
                        Decode::Frames(FrameDecoder::new())
                    } else {
                        Decode::Raw
                    };
                    self.parsed = Some(header);
                    let rest = self.header.take_rest();
                    if !rest.is_empty() {
                        self.forward_bytes(&rest, out);
                    }
                }
                Err(e) => {
                    out.push(Summary::plain(format!(
                        "GARBAGE {} bytes ({e})",
                        data.len()
                    )));
                    self.forward = Decode::Lost;
                }
            },
            Decode::Frames(frames) => {
                frames.push(data);
                if !frames_out(frames, out) {
                    self.forward = Decode::Lost;
                }
            }
            Decode::Raw => out.push(Summary::sum("RAW", data.len() as u64)),
            Decode::Lost => out.push(Summary::sum("GARBAGE", data.len() as u64)),
        }
    }

    fn backward_bytes(&mut self, data: &[u8], out: &mut Vec<Summary>) {
        match &mut self.backward {
            Decode::Start => match self.reply.push(data) {
                Ok(None) => {}
                Ok(Some((reply, rest))) => {
                    out.push(Summary::plain(match reply {
                        Reply::Go => "GO".to_owned(),
                        Reply::GoAt(n) => format!("GO {n}"),
                        Reply::GoVerify(n, d) => format!("GO {n} sha3={}…", d.short()),
                        Reply::Ngo => "NGO".to_owned(),
                    }));
                    match reply {
                        Reply::GoAt(_) | Reply::GoVerify(..) => {
                            self.backward = Decode::Frames(FrameDecoder::new())
                        }
                        Reply::Go => {
                            self.backward = Decode::Lost;
                            // The raw form: the sender's bytes after GO are the file.
                            if matches!(self.forward, Decode::Frames(_)) {
                                self.forward = Decode::Raw;
                            }
                        }
                        Reply::Ngo => self.backward = Decode::Lost,
                    }
                    if !rest.is_empty() {
                        self.backward_bytes(&rest, out);
                    }
                }
                Err(e) => {
                    out.push(Summary::plain(format!(
                        "GARBAGE {} bytes ({e})",
                        data.len()
                    )));
                    self.backward = Decode::Lost;
                }
            },
            Decode::Frames(frames) => {
                frames.push(data);
                if !frames_out(frames, out) {
                    self.backward = Decode::Lost;
                }
            }
            Decode::Raw | Decode::Lost => out.push(Summary::sum("GARBAGE", data.len() as u64)),
        }
    }
}

/// Summarises every whole frame; `false` once the stream cannot be decoded any further.
fn frames_out(frames: &mut FrameDecoder, out: &mut Vec<Summary>) -> bool {
    loop {
        match frames.next_frame() {
            Ok(None) => return true,
            Ok(Some(Frame::Data(d))) => out.push(Summary::sum("DATA", d.len() as u64)),
            Ok(Some(Frame::End(digest))) => {
                out.push(Summary::plain(format!("END sha3={}…", digest.short())))
            }
            Ok(Some(Frame::Cancel(code))) => out.push(Summary::plain(format!("CANCEL {code}"))),
            Ok(Some(Frame::Restart)) => out.push(Summary::plain("RESTART")),
            Ok(Some(Frame::Verdict(ok))) => out.push(Summary::plain(if ok {
                "VERDICT ok"
            } else {
                "VERDICT bad"
            })),
            Err(e) => {
                out.push(Summary::plain(format!("GARBAGE ({e})")));
                return false;
            }
        }
    }
}

/// Decodes each connection as one Ferry transfer stream, the opener being the sender.
#[derive(Debug, Default)]
pub struct TransferDecoder {
    wires: BTreeMap<u64, TransferWire>,
}

impl WireDecoder for TransferDecoder {
    fn decode(&mut self, conn: u64, from_opener: bool, data: &[u8], _: &mut Names) -> Vec<Summary> {
        let side = if from_opener {
            Side::Sender
        } else {
            Side::Receiver
        };
        self.wires.entry(conn).or_default().decode(side, data)
    }

    fn forget(&mut self, conn: u64) {
        self.wires.remove(&conn);
    }
}
