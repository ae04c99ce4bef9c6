//! The channels inside one TLS connection (dhtnet's multiplexed socket, `PROTOCOL.md` §8),
//! and on each file channel the transfer stream it carries.
//!
//! Every line names its channel: `ch1 REQUEST file-transfer://t2` (the request travels on
//! channel 0, for channel 1; the transfer id in the name renders as the transfer's ordinal,
//! as in the node's events), `ch1 ACCEPT`, `ch1 DECLINE`, then what the transfer stream
//! says (`ch1 HEADER …`, `ch1 GO 0`, `ch1 DATA ×4 262144 bytes`, `ch1 END …`, `ch1 VERDICT
//! ok`, `ch1 CANCEL user`), and `ch1 FIN` when one end ends the channel.

use std::collections::BTreeMap;

use crate::channel::{ACCEPT, ChannelId, Control, DECLINE, REQUEST, parse_unit};
use crate::node::FILE_CHANNEL;
use crate::transfer::TransferId;

use super::transfer::{Side, TransferWire};
use super::{Names, Summary};

/// One channel seen opened.
#[derive(Debug)]
struct Channel {
    /// The direction that asked for it (`from_opener` of the connection): for a file
    /// channel, the sender of the file.
    asked_by: bool,
    /// The transfer stream on a file channel.
    transfer: Option<TransferWire>,
}

/// One direction's units.
#[derive(Debug, Default)]
struct Units {
    /// The bytes of a unit not yet whole.
    pending: Vec<u8>,
    /// A unit did not parse: the stream cannot be re-synchronised (nor could the node).
    broken: bool,
}

/// Both directions of the channels of one connection (see the module docs). A direction is
/// named by `from_opener`, as a [`WireDecoder`](super::WireDecoder) names it.
#[derive(Debug, Default)]
pub struct ChannelWire {
    /// Indexed by `from_opener`.
    units: [Units; 2],
    channels: BTreeMap<ChannelId, Channel>,
}

impl ChannelWire {
    /// A connection on which no channel was opened yet.
    pub fn new() -> ChannelWire {
        ChannelWire::default()
    }

    /// Decodes the plaintext one direction sent, in order.
    pub fn decode(&mut self, from_opener: bool, data: &[u8], names: &mut Names) -> Vec<Summary> {
        let mut out = Vec::new();
        let units = &mut self.units[usize::from(from_opener)];
        if units.broken {
            out.push(Summary::sum("GARBAGE", data.len() as u64));
            return out;
        }
        units.pending.extend_from_slice(data);
        let mut whole = Vec::new();
        let mut broke = None;
        loop {
            match parse_unit(&units.pending) {
                Ok(None) => break,
                Ok(Some((channel, start, len))) => {
                    let unit: Vec<u8> = units.pending.drain(..start + len).skip(start).collect();
                    whole.push((channel, unit));
                }
                Err(e) => {
                    let n = units.pending.len();
                    broke = Some(Summary::plain(format!("GARBAGE {n} bytes ({e})")));
                    units.pending.clear();
                    units.broken = true;
                    break;
                }
            }
        }
        for (channel, unit) in whole {
            self.unit(from_opener, channel, &unit, names, &mut out);
        }
        out.extend(broke);
        out
    }

    fn unit(
        &mut self,
        from: bool,
        channel: ChannelId,
        data: &[u8],
        names: &mut Names,
        out: &mut Vec<Summary>,
    ) {
        if channel == 0 {
            return out.push(self.control(from, data, names));
        }
        let ch = format!("ch{channel}");
        if data.is_empty() {
            return out.push(Summary::plain("FIN").of(&ch));
        }
        match self.channels.get_mut(&channel) {
            Some(Channel {
                asked_by,
                transfer: Some(wire),
            }) => {
                let side = if from == *asked_by {
                    Side::Sender
                } else {
                    Side::Receiver
                };
                out.extend(wire.decode(side, data).into_iter().map(|s| s.of(&ch)));
            }
            _ => out.push(Summary::sum("data", data.len() as u64).of(&ch)),
        }
    }

    fn control(&mut self, from: bool, data: &[u8], names: &mut Names) -> Summary {
        let Some(c) = Control::read(data) else {
            return Summary::plain(format!("ch0 ? {} bytes", data.len()));
        };
        let ch = format!("ch{}", c.channel);
        let text = match c.state {
            REQUEST => {
                let transfer = c
                    .name
                    .strip_prefix(FILE_CHANNEL)
                    .and_then(|id| id.parse::<u64>().ok());
                self.channels.insert(
                    c.channel,
                    Channel {
                        asked_by: from,
                        transfer: transfer.map(|_| TransferWire::new()),
                    },
                );
                match transfer {
                    Some(t) => format!(
                        "REQUEST {FILE_CHANNEL}{}",
                        names.transfers.of(TransferId(t))
                    ),
                    None => format!("REQUEST {:?}", c.name),
                }
            }
            ACCEPT => "ACCEPT".to_owned(),
            DECLINE => "DECLINE".to_owned(),
            other => format!("state {other}"),
        };
        Summary::plain(text).of(&ch)
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::channel::{Mux, Side as MuxSide, encode_unit};
    use crate::transfer::frame::{CancelCode, Frame};
    use crate::transfer::header::Header;
    use crate::transfer::reply::Reply;

    /// What `mux` wants to send, as the connection carries it.
    fn wire(mux: &mut Mux) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = mux.poll_transmit() {
            out.extend_from_slice(&b);
        }
        out
    }

    fn texts(summaries: Vec<Summary>) -> Vec<String> {
        summaries
            .into_iter()
            .map(|s| match s.bulk {
                Some(super::super::Bulk::Sum { kind, bytes }) => {
                    format!("{} {kind} {bytes}", s.text)
                }
                _ => s.text,
            })
            .collect()
    }

    #[test]
    fn a_file_channel_reads_as_its_requests_and_transfer_frames() {
        let now = std::time::Instant::now();
        let (mut client, mut server) = (Mux::new(MuxSide::Client), Mux::new(MuxSide::Server));
        let mut names = Names::default();
        let mut d = ChannelWire::new();
        // The client opens the connection (`from_opener`) and asks for a file channel.
        let ch = client.open(now, "file-transfer://42").expect("a channel");
        let bytes = wire(&mut client);
        let mut seen = texts(d.decode(true, &bytes, &mut names));
        server.handle_bytes(now, &bytes).expect("units");
        server.accept(now, ch).expect("offered");
        seen.extend(texts(d.decode(false, &wire(&mut server), &mut names)));
        let header = Header {
            content_length: 5,
            display_name: "a.txt".to_owned(),
            offset: 0,
            extension: Some(1),
            prefix_digest: false,
            manifest: None,
        };
        let mut unit = BytesMut::new();
        encode_unit(ch, &header.encode(), &mut unit);
        // Split anywhere: a unit may span TLS records.
        seen.extend(texts(d.decode(true, &unit[..7], &mut names)));
        seen.extend(texts(d.decode(true, &unit[7..], &mut names)));
        let mut back = BytesMut::new();
        encode_unit(ch, &Reply::GoAt(0).encode(), &mut back);
        seen.extend(texts(d.decode(false, &back, &mut names)));
        let mut data = BytesMut::new();
        encode_unit(ch, &Frame::Data("hello".into()).encode(), &mut data);
        encode_unit(ch, &Frame::Cancel(CancelCode::User).encode(), &mut data);
        encode_unit(ch, &[], &mut data);
        seen.extend(texts(d.decode(true, &data, &mut names)));
        assert_eq!(
            seen,
            [
                "ch1 REQUEST file-transfer://t1",
                "ch1 ACCEPT",
                "ch1 HEADER Content-Length=5 Display-Name=\"a.txt\" Offset=0 Ferry-Frames=1",
                "ch1 GO 0",
                "ch1 DATA 5",
                "ch1 CANCEL user",
                "ch1 FIN",
            ]
        );
        // The transfer id in the name is the one the node's events name.
        assert_eq!(names.transfers.of(TransferId(42)), "t1");
    }

    #[test]
    fn other_channels_are_counted_and_a_broken_stream_says_so() {
        let now = std::time::Instant::now();
        let mut names = Names::default();
        let mut d = ChannelWire::new();
        let mut client = Mux::new(MuxSide::Client);
        let ch = client.open(now, "chat").expect("a channel");
        let mut bytes = wire(&mut client);
        let mut unit = BytesMut::new();
        encode_unit(ch, b"hi", &mut unit);
        bytes.extend_from_slice(&unit);
        bytes.extend_from_slice(b"\xffnot a unit");
        assert_eq!(
            texts(d.decode(true, &bytes, &mut names)),
            [
                "ch1 REQUEST \"chat\"",
                "ch1 data 2",
                "GARBAGE 11 bytes (malformed channel unit: a unit is a two-element array)",
            ]
        );
        assert_eq!(texts(d.decode(true, b"more", &mut names)), [" GARBAGE 4"]);
    }
}
