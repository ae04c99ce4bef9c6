//! The fuzz targets' bodies: one function per parser, shared by the cargo-fuzz targets in
//! `fuzz/` (libFuzzer, nightly) and by the corpus replay `tests/tests/fuzz_corpus.rs`, which
//! runs every file of `fuzz/corpus/<target>/` through the same function on the stable
//! toolchain in CI.
//!
//! Each function takes arbitrary bytes, feeds them to one parser (or one small machine) the
//! way the network would, and panics only when an invariant breaks: a panic inside the
//! parser is a bug (nothing from the network may panic), and so is a failed assertion here.
//! Most targets also check what a parser promises beyond "no panic": the same verdict
//! whatever the split of the stream, encode ∘ decode = identity, bounded buffers, and that
//! nothing unauthenticated changes state.
//!
//! [`TARGETS`] lists them all, by the name of their folder in `fuzz/corpus/` and of their
//! file in `fuzz/fuzz_targets/`.

mod channel;
mod dht;
mod ice;
mod identity;
mod manifest;
mod node;
mod portmap;
mod seeds;
mod signal;
mod stun;
mod transfer;
mod turn;

pub use channel::channel_units;
pub use dht::{folder_dht, opendht_message, opendht_proxy};
pub use ice::{ice_candidate, ice_description};
pub use identity::{identity_pem, revocation_list};
pub use manifest::transfer_manifest;
pub use node::node;
pub use portmap::portmap_replies;
pub use seeds::{Seed, seeds, spec_vectors};
pub use signal::{signal_decode, signal_open};
pub use stun::{rfc4571_deframer, stun_decode};
pub use transfer::{
    display_name, transfer_frame, transfer_header, transfer_machines, transfer_reply,
};
pub use turn::{turn_client, turn_server};

/// A target's body: arbitrary bytes in, a panic when an invariant breaks.
pub type Body = fn(&[u8]);

/// Every target: its name (the corpus folder and the fuzz target's file) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("channel_units", channel_units),
    ("display_name", display_name),
    ("folder_dht", folder_dht),
    ("ice_candidate", ice_candidate),
    ("ice_description", ice_description),
    ("identity_pem", identity_pem),
    ("node", node),
    ("opendht_message", opendht_message),
    ("opendht_proxy", opendht_proxy),
    ("portmap_replies", portmap_replies),
    ("revocation_list", revocation_list),
    ("rfc4571_deframer", rfc4571_deframer),
    ("signal_decode", signal_decode),
    ("signal_open", signal_open),
    ("stun_decode", stun_decode),
    ("transfer_frame", transfer_frame),
    ("transfer_header", transfer_header),
    ("transfer_machines", transfer_machines),
    ("transfer_manifest", transfer_manifest),
    ("transfer_reply", transfer_reply),
    ("turn_client", turn_client),
    ("turn_server", turn_server),
];

/// Cuts `data` into the pieces a network might deliver: the first byte seeds the piece sizes
/// (0: one piece), the rest is the stream. Returns the stream and its pieces.
pub fn pieces(data: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let Some((&seed, stream)) = data.split_first() else {
        return (data, Vec::new());
    };
    if seed == 0 {
        return (stream, vec![stream]);
    }
    let mut state = u32::from(seed) | 0x9e37_7900;
    let mut rest = stream;
    let mut out = Vec::new();
    while !rest.is_empty() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let size = (1 + state as usize % usize::from(seed)).min(rest.len());
        let (piece, tail) = rest.split_at(size);
        out.push(piece);
        rest = tail;
    }
    (stream, out)
}

/// Reads a fuzz input as a sequence of small decisions (structure-aware targets): bytes run
/// out as zeros, so every input is a complete script.
#[derive(Debug)]
pub struct Script<'a> {
    data: &'a [u8],
}

impl<'a> Script<'a> {
    /// A script over `data`.
    pub fn new(data: &'a [u8]) -> Script<'a> {
        Script { data }
    }

    /// Whether every byte was used.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next 16 bits, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// The next 32 bits, big-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    /// Up to `n` next bytes (fewer at the end).
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, tail) = self.data.split_at(n.min(self.data.len()));
        self.data = tail;
        head
    }

    /// A length-prefixed piece: one byte of length, then that many bytes.
    pub fn piece(&mut self) -> &'a [u8] {
        let n = usize::from(self.byte());
        self.take(n)
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_cover_the_stream_in_order() {
        let data = [7u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
        let (stream, parts) = pieces(&data);
        assert_eq!(stream, &data[1..]);
        assert_eq!(parts.concat(), stream);
        assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= 7));
        assert_eq!(pieces(&[0, 1, 2]).1, [&[1u8, 2][..]]);
        assert!(pieces(&[]).1.is_empty());
    }
}
