//! The tests' accounts, devices and node configurations, their keys derived from names so
//! that every run (and every snapshot) sees the same ones.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ferry_proto::node::NodeConfig;
use ferry_proto::tls::{Account, Device, UnixAnchor, Validity, derive_seed};

/// The Unix time the tests' clocks are anchored at (2026-11-26, 00:00 UTC).
pub const T0: u64 = 1_795_651_200;

/// Where a test's keys come from: a seed derived from a domain and a name. Each test file
/// has domains of its own, so no two files share keys by accident.
#[derive(Debug, Clone, Copy)]
pub struct Seeds {
    /// The domain of account keys.
    pub accounts: &'static [u8],
    /// The domain of device keys.
    pub devices: &'static [u8],
}

impl Seeds {
    /// Account keys from `accounts`, device keys from `devices`.
    pub const fn new(accounts: &'static [u8], devices: &'static [u8]) -> Seeds {
        Seeds { accounts, devices }
    }

    /// The account `name`, valid for a year from the day before [`T0`].
    pub fn account(&self, name: &str) -> Account {
        Account::from_seed(&derive_seed(self.accounts, name), validity()).expect("an account")
    }

    /// The device `name` of `account`, valid for a year from the day before [`T0`].
    pub fn device(&self, account: &Account, name: &str) -> Device {
        account
            .add_device(&derive_seed(self.devices, name), validity())
            .expect("a device")
    }
}

/// A year from the day before [`T0`].
pub fn validity() -> Validity {
    Validity::days_from(T0 - 86_400, 365)
}

/// `epoch` is [`T0`] in Unix time.
pub fn anchor(epoch: Instant) -> UnixAnchor {
    UnixAnchor {
        instant: epoch,
        unix: Duration::from_secs(T0),
    }
}

/// The configuration of `device`'s node (of `account`): its announcement, the one address
/// `ip`, the random `seed`, the clock anchored at [`T0`] at `epoch`.
pub fn node_config(
    epoch: Instant,
    account: &Account,
    device: &Device,
    ip: IpAddr,
    seed: u64,
) -> NodeConfig {
    let announcement = account.announce(device).expect("an announcement");
    NodeConfig::new(device.clone(), announcement, vec![ip], seed, anchor(epoch))
}
