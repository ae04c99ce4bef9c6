//! Signalling on the DHT as a reader wants it: keys by what they are (`devices:bob`,
//! `peer:bob:b1`), values by what they say (`announce bob:b1`, `request id1 alice:a1 →
//! bob:b1`, `answer id1 bob:b1 → alice:a1`).
//!
//! A DHT key is a hash, and requests and answers are sealed to their recipient: a decoder
//! alone can read neither. [`Labels`] holds what a harness knows, the accounts and devices of
//! its run by name; from them it computes every key they make (the devices key of an account,
//! the peer key of a device, as `signal` does), and with a device's own keys it opens what was
//! sealed to it. Opening is deterministic (no randomness), so a line never varies between
//! runs. What it does not know prints as a short key and a byte count.

use std::collections::BTreeMap;

use crate::io::DhtKey;
use crate::signal::{self, Announcement, PeerConnection};
use crate::tls::{AccountId, Device, DeviceId, Revocations};

use super::Ordinals;

/// A DHT key, short: its first four bytes in hex, then `…`.
pub fn short_key(key: &DhtKey) -> String {
    format!("{}…", hex::encode(&key.0[..4]))
}

/// What a known key is the key of.
#[derive(Debug, Clone, Copy)]
enum KeyOf {
    /// Where an account's devices announce themselves.
    Devices(AccountId),
    /// Where requests and answers for a device are put.
    Peer(DeviceId),
}

/// A device the harness named, with its keys, to open what was sealed to it.
#[derive(Debug)]
struct Named {
    name: String,
    account: AccountId,
    device: Device,
}

/// The accounts and devices of a run, by name (see the module docs).
#[derive(Debug, Default)]
pub struct Labels {
    accounts: BTreeMap<AccountId, String>,
    devices: BTreeMap<DeviceId, Named>,
    keys: BTreeMap<DhtKey, KeyOf>,
}

impl Labels {
    /// No one named yet.
    pub fn new() -> Labels {
        Labels::default()
    }

    /// Names an account (`alice`); its devices key reads `devices:alice`.
    pub fn account(&mut self, account: AccountId, name: &str) -> &mut Self {
        self.accounts.insert(account, name.to_owned());
        self.keys
            .insert(signal::devices_key(&account), KeyOf::Devices(account));
        self
    }

    /// Names a device (`b1`, read `bob:b1` once its account is named); its peer key reads
    /// `peer:bob:b1`, and what is sealed to it opens in traces.
    pub fn device(&mut self, device: &Device, name: &str) -> &mut Self {
        let id = device.id();
        self.devices.insert(
            id,
            Named {
                name: name.to_owned(),
                account: device.account(),
                device: device.clone(),
            },
        );
        self.keys.insert(signal::peer_key(&id), KeyOf::Peer(id));
        self
    }

    /// An account's name, or the start of its id.
    pub fn account_name(&self, account: &AccountId) -> String {
        match self.accounts.get(account) {
            Some(name) => name.clone(),
            None => short_id(&account.to_string()),
        }
    }

    /// A device's name, `account:device`, or the start of its id.
    pub fn device_name(&self, device: &DeviceId) -> String {
        match self.devices.get(device) {
            Some(d) => match self.accounts.get(&d.account) {
                Some(account) => format!("{account}:{}", d.name),
                None => d.name.clone(),
            },
            None => short_id(&device.to_string()),
        }
    }

    /// Whether this device was named.
    pub fn knows_device(&self, device: &DeviceId) -> bool {
        self.devices.contains_key(device)
    }

    /// A DHT key: `devices:alice`, `peer:bob:b1`, or short (`4aaa76ad…`).
    pub fn key(&self, key: &DhtKey) -> String {
        match self.keys.get(key) {
            Some(KeyOf::Devices(account)) => format!("devices:{}", self.account_name(account)),
            Some(KeyOf::Peer(device)) => format!("peer:{}", self.device_name(device)),
            None => short_key(key),
        }
    }

    /// A DHT value under `key`: `announce bob:b1`, `request id1 alice:a1 → bob:b1`, `answer
    /// id1 bob:b1 → alice:a1`; the key and a byte count when it does not open.
    pub fn value(&self, key: &DhtKey, value: &[u8], exchanges: &mut Ordinals<u64>) -> String {
        let read = match self.keys.get(key) {
            Some(KeyOf::Devices(account)) => self.announcement(account, value),
            Some(KeyOf::Peer(device)) => self.sealed(device, value, exchanges),
            None => None,
        };
        read.unwrap_or_else(|| format!("{} {} bytes", self.key(key), value.len()))
    }

    fn announcement(&self, account: &AccountId, value: &[u8]) -> Option<String> {
        // The trace does not judge revocation: that is the node's business, and its lines
        // say what it did with the value.
        let a = Announcement::verify(value, account, &Revocations::new()).ok()?;
        Some(format!("announce {}", self.device_name(&a.device)))
    }

    fn sealed(&self, to: &DeviceId, value: &[u8], exchanges: &mut Ordinals<u64>) -> Option<String> {
        let me = &self.devices.get(to)?.device;
        let opened = signal::open(me, value, &Revocations::new()).ok()?;
        let message = PeerConnection::decode(&opened.body).ok()?;
        Some(format!(
            "{} {} {} → {}",
            if message.is_answer {
                "answer"
            } else {
                "request"
            },
            exchanges.of(message.id),
            self.device_name(&opened.device),
            self.device_name(to)
        ))
    }
}

/// The first eight hex digits of an id, then `…`.
fn short_id(hex: &str) -> String {
    format!("{}…", &hex[..hex.len().min(8)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use crate::tls::{Account, Validity, derive_seed};

    fn account(name: &str) -> Account {
        let validity = Validity::days_from(1_795_651_200, 365);
        Account::from_seed(&derive_seed(b"labels", name), validity).expect("account")
    }

    fn device(account: &Account, name: &str) -> Device {
        let validity = Validity::days_from(1_795_651_200, 365);
        account
            .add_device(&derive_seed(b"labels", name), validity)
            .expect("device")
    }

    #[test]
    fn keys_and_values_read_by_name_and_the_rest_by_hash() {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
        let mut labels = Labels::new();
        labels.account(alice.id(), "alice").device(&a1, "a1");
        labels.account(bob.id(), "bob").device(&b1, "b1");
        let mut ids = Ordinals::new("id");

        let devices = signal::devices_key(&bob.id());
        assert_eq!(labels.key(&devices), "devices:bob");
        let announcement = bob.announce(&b1).expect("announce");
        assert_eq!(
            labels.value(&devices, &announcement, &mut ids),
            "announce bob:b1"
        );

        let to_b1 = signal::peer_key(&b1.id());
        assert_eq!(labels.key(&to_b1), "peer:bob:b1");
        let request = PeerConnection {
            id: 0x1234,
            is_answer: false,
            ice: String::new(),
            addresses: Vec::new(),
            seal: None,
            time: None,
        };
        let mut rng = SeededRng::new(7);
        let sealed = signal::seal(&a1, &b1.recipient(), &request.encode(), &mut rng).expect("seal");
        assert_eq!(
            labels.value(&to_b1, &sealed, &mut ids),
            "request id1 alice:a1 → bob:b1"
        );
        let answer = PeerConnection {
            is_answer: true,
            ..request
        };
        let sealed = signal::seal(&b1, &a1.recipient(), &answer.encode(), &mut rng).expect("seal");
        let to_a1 = signal::peer_key(&a1.id());
        assert_eq!(
            labels.value(&to_a1, &sealed, &mut ids),
            "answer id1 bob:b1 → alice:a1"
        );
        // Sealed to someone else: it does not open, and says so by its size.
        assert_eq!(
            labels.value(&to_b1, &sealed, &mut ids),
            format!("peer:bob:b1 {} bytes", sealed.len())
        );

        let unknown = signal::devices_key(&account("carol").id());
        assert_eq!(
            labels.value(&unknown, b"x", &mut ids),
            format!("{} 1 bytes", short_key(&unknown))
        );
    }
}
