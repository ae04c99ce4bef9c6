//! Where things live on the DHT: keys are SHA-1 of a string, like OpenDHT's `InfoHash::get`.

use sha1::Digest as _;

use crate::io::DhtKey;
use crate::tls::{AccountId, DeviceId};

impl DhtKey {
    /// The key of a string: its SHA-1 (OpenDHT's `InfoHash::get`).
    pub fn of_str(s: &str) -> DhtKey {
        DhtKey(sha1::Sha1::digest(s.as_bytes()).into())
    }
}

/// Where an account's devices announce themselves.
pub fn devices_key(account: &AccountId) -> DhtKey {
    DhtKey::of_str(&format!("devices:{account}"))
}

/// Where connection requests and answers for a device are put (Jami: `"peer:" + device id`).
pub fn peer_key(device: &DeviceId) -> DhtKey {
    DhtKey::of_str(&format!("peer:{device}"))
}
