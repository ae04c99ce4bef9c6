//! The host's own addresses, from which a node makes its host candidates.
//!
//! A [`Paths`] policy says which of them to use: every interface, a chosen few, or none at all
//! (relay only, for testing the TURN path or for users on networks where a direct connection
//! would reveal too much).

use std::io;
use std::net::IpAddr;

/// Which local addresses a node may use for direct paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// Use direct paths at all; `false` means relay only (no host candidates).
    pub direct: bool,
    /// Use only these interfaces (by name, as `ip link` shows them); empty means all.
    pub interfaces: Vec<String>,
    /// Include loopback addresses (tests on one machine want them; a real node does not).
    pub loopback: bool,
    /// Include IPv6 link-local addresses (they need a scope, so TCP candidates rarely work).
    pub link_local: bool,
}

impl Default for Paths {
    fn default() -> Paths {
        Paths {
            direct: true,
            interfaces: Vec::new(),
            loopback: false,
            link_local: false,
        }
    }
}

impl Paths {
    /// Relay only: no direct path, no host address.
    pub fn relay_only() -> Paths {
        Paths {
            direct: false,
            ..Paths::default()
        }
    }

    /// Loopback only, for tests on one machine.
    pub fn loopback_only() -> Paths {
        Paths {
            loopback: true,
            interfaces: vec![loopback_name().to_owned()],
            ..Paths::default()
        }
    }
}

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalAddr {
    /// The interface's name.
    pub interface: String,
    /// The address.
    pub ip: IpAddr,
}

/// The addresses `paths` allows, sorted by interface then address (so the same host gives
/// the same list).
pub fn local_addresses(paths: &Paths) -> io::Result<Vec<LocalAddr>> {
    if !paths.direct {
        return Ok(Vec::new());
    }
    let mut found: Vec<LocalAddr> = if_addrs::get_if_addrs()?
        .into_iter()
        .filter(|i| paths.interfaces.is_empty() || paths.interfaces.contains(&i.name))
        .filter(|i| paths.loopback || !i.is_loopback())
        .filter(|i| paths.link_local || !is_link_local(i.ip()))
        .map(|i| LocalAddr {
            ip: i.ip(),
            interface: i.name,
        })
        .collect();
    found.sort();
    found.dedup();
    Ok(found)
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

fn loopback_name() -> &'static str {
    if cfg!(target_os = "linux") {
        "lo"
    } else if cfg!(windows) {
        "Loopback Pseudo-Interface 1"
    } else {
        "lo0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_only_has_no_address_and_loopback_only_has_loopback() {
        assert_eq!(local_addresses(&Paths::relay_only()).ok(), Some(Vec::new()));
        let lo = local_addresses(&Paths::loopback_only()).unwrap_or_default();
        assert!(!lo.is_empty(), "this host has a loopback interface");
        assert!(lo.iter().all(|a| a.ip.is_loopback()), "{lo:?}");
        let all = local_addresses(&Paths::default()).unwrap_or_default();
        assert!(all.iter().all(|a| !a.ip.is_loopback()), "{all:?}");
    }
}
