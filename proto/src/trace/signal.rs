//! Signalling on the DHT: its keys.

use crate::io::DhtKey;

/// A DHT key, short: its first four bytes in hex, then `…`.
pub fn key(key: &DhtKey) -> String {
    let hex: String = key.0[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}…")
}
