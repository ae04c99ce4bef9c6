//! Values that travel as value-part messages, reassembled per transaction and address.
//!
//! A reply or a put whose values are too large for one datagram lists their sizes in
//! `values`; the values follow as `{"y": "v", "t": tid, "p": {index: {"o", "d"}}}`
//! messages of at most `MTU` bytes each. As `NetworkEngine` does, we hold such a message
//! until every value is complete, take parts only from the address that sent it, in order
//! (a part at another offset is dropped: OpenDHT does not reorder either), and give up on
//! it after `RX_TIMEOUT` without a part or `RX_MAX_PACKET_TIME` in all. The number of
//! messages held and the bytes they announce are bounded, so a stranger cannot make us
//! hold memory it never sends.

use core::net::SocketAddr;
use std::collections::BTreeMap;
use std::time::Instant;

use super::constants::{RX_MAX_PACKET_TIME, RX_TIMEOUT};
use super::message::{Message, Tid};
use super::value::Value;

/// Messages waiting for parts at once (Ferry's bound; OpenDHT keeps one per tid).
// SECURITY: row 138
pub const MAX_PARTIAL_MESSAGES: usize = 64;

/// Bytes all waiting messages may announce in all (Ferry's bound: 64 values of 64 KiB).
pub const MAX_PARTIAL_BYTES: usize = 64 * 64 * 1024;

struct Partial {
    from: SocketAddr,
    message: Message,
    /// Per value index: announced size and bytes so far.
    buffers: BTreeMap<u32, (usize, Vec<u8>)>,
    start: Instant,
    last_part: Instant,
}

/// What happened to a datagram offered to [`Reassembly`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The message is complete: its values are all in `values`.
    Complete(Box<Message>),
    /// Held until its parts come.
    Held,
    /// A part that was used, the message still incomplete.
    Appended,
    /// Dropped, and why (for the counters).
    Dropped(&'static str),
}

/// The messages waiting for their value parts.
#[derive(Default)]
pub struct Reassembly {
    partial: BTreeMap<Tid, Partial>,
    announced: usize,
}

impl Reassembly {
    /// An empty buffer.
    pub fn new() -> Reassembly {
        Reassembly::default()
    }

    /// Messages held now.
    pub fn len(&self) -> usize {
        self.partial.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.partial.is_empty()
    }

    /// A message that announced values by size: held until they come.
    pub fn start(&mut self, now: Instant, from: SocketAddr, message: Message) -> Outcome {
        if self.partial.contains_key(&message.tid) {
            return Outcome::Dropped("partial_duplicate_tid");
        }
        let size: usize = message.value_headers.iter().map(|(_, s)| *s).sum();
        if self.partial.len() >= MAX_PARTIAL_MESSAGES || self.announced + size > MAX_PARTIAL_BYTES {
            return Outcome::Dropped("partial_over_budget");
        }
        self.announced += size;
        let buffers = message
            .value_headers
            .iter()
            .map(|(i, s)| (*i, (*s, Vec::new())))
            .collect();
        let tid = message.tid;
        self.partial.insert(
            tid,
            Partial {
                from,
                message,
                buffers,
                start: now,
                last_part: now,
            },
        );
        Outcome::Held
    }

    /// A value-part message.
    pub fn part(&mut self, now: Instant, from: SocketAddr, part: &Message) -> Outcome {
        let Some(p) = self.partial.get_mut(&part.tid) else {
            return Outcome::Dropped("part_unknown_tid");
        };
        if p.from != from {
            return Outcome::Dropped("part_wrong_address");
        }
        let mut used = false;
        for (index, offset, data) in &part.parts {
            let Some((size, buf)) = p.buffers.get_mut(index) else {
                continue;
            };
            // In order only, and never past the announced size (`ParsedMessage::append`).
            if buf.len() >= *size || *offset != buf.len() || buf.len() + data.len() > *size {
                continue;
            }
            buf.extend_from_slice(data);
            used = true;
        }
        if !used {
            return Outcome::Dropped("part_out_of_order");
        }
        p.last_part = now;
        if p.buffers.values().any(|(size, buf)| buf.len() < *size) {
            return Outcome::Appended;
        }
        let Some(mut p) = self.partial.remove(&part.tid) else {
            return Outcome::Dropped("part_unknown_tid");
        };
        self.announced -= p
            .message
            .value_headers
            .iter()
            .map(|(_, s)| *s)
            .sum::<usize>();
        for (_, buf) in p.buffers.values() {
            match Value::from_packed(buf) {
                Ok(v) => p.message.values.push(v),
                Err(_) => p.message.bad_values += 1,
            }
        }
        p.message.value_headers.clear();
        Outcome::Complete(Box::new(p.message))
    }

    /// Forgets messages past their receive timeouts; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let expired: Vec<Tid> = self
            .partial
            .iter()
            .filter(|(_, p)| now >= p.start + RX_MAX_PACKET_TIME || now >= p.last_part + RX_TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for t in &expired {
            if let Some(p) = self.partial.remove(t) {
                self.announced -= p
                    .message
                    .value_headers
                    .iter()
                    .map(|(_, s)| *s)
                    .sum::<usize>();
            }
        }
        expired.len()
    }

    /// When the next held message times out.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.partial
            .values()
            .map(|p| (p.start + RX_MAX_PACKET_TIME).min(p.last_part + RX_TIMEOUT))
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::super::InfoHash;
    use super::super::message::{Encoder, Kind};
    use super::*;
    use std::time::Duration;

    fn big_put() -> (Value, Vec<u8>, Vec<Vec<u8>>) {
        let enc = Encoder {
            id: InfoHash([1; 20]),
            network: 0,
        };
        let value = Value::new(42, 0, vec![7; 3000]);
        let packets = enc.put(9, InfoHash([2; 20]), &value, b"tok");
        (value, packets.message, packets.parts)
    }

    #[test]
    fn a_large_put_is_reassembled_from_its_parts() {
        let (value, message, parts) = big_put();
        assert_eq!(parts.len(), 3, "3000 bytes in 1280-byte parts");
        let now = Instant::now();
        let from: SocketAddr = "10.0.0.1:4222".parse().expect("addr");
        let head = Message::decode(&message).expect("decodes");
        assert_eq!(head.kind, Some(Kind::AnnounceValue));
        assert_eq!(head.value_headers, [(0, value.packed.len())]);
        let mut r = Reassembly::new();
        assert_eq!(r.start(now, from, head), Outcome::Held);
        let decoded: Vec<Message> = parts
            .iter()
            .map(|p| Message::decode(p).expect("part"))
            .collect();
        assert_eq!(r.part(now, from, &decoded[0]), Outcome::Appended);
        // A part from another address, or again, is dropped.
        let other: SocketAddr = "10.0.0.2:4222".parse().expect("addr");
        assert_eq!(
            r.part(now, other, &decoded[1]),
            Outcome::Dropped("part_wrong_address")
        );
        assert_eq!(
            r.part(now, from, &decoded[0]),
            Outcome::Dropped("part_out_of_order")
        );
        assert_eq!(r.part(now, from, &decoded[1]), Outcome::Appended);
        let Outcome::Complete(done) = r.part(now, from, &decoded[2]) else {
            panic!("complete after the last part");
        };
        assert_eq!(done.values, [value]);
        assert!(r.is_empty());
    }

    #[test]
    fn a_message_whose_parts_stop_is_forgotten_after_rx_timeout() {
        let (_, message, parts) = big_put();
        let now = Instant::now();
        let from: SocketAddr = "10.0.0.1:4222".parse().expect("addr");
        let mut r = Reassembly::new();
        r.start(now, from, Message::decode(&message).expect("decodes"));
        r.part(now, from, &Message::decode(&parts[0]).expect("part"));
        assert_eq!(r.next_timeout(), Some(now + RX_TIMEOUT));
        assert_eq!(r.expire(now + RX_TIMEOUT - Duration::from_millis(1)), 0);
        assert_eq!(r.expire(now + RX_TIMEOUT), 1);
        assert!(r.is_empty());
        assert_eq!(r.announced, 0);
    }

    #[test]
    fn held_messages_are_bounded() {
        let from: SocketAddr = "10.0.0.1:4222".parse().expect("addr");
        let now = Instant::now();
        let mut r = Reassembly::new();
        for tid in 0..MAX_PARTIAL_MESSAGES as u32 + 5 {
            let m = Message {
                tid,
                value_headers: vec![(0, 100)],
                ..Message::default()
            };
            r.start(now, from, m);
        }
        assert_eq!(r.len(), MAX_PARTIAL_MESSAGES);
    }
}
