//! What the public segment carried, counted by nftables in its namespace: the wire's word
//! on which path the bytes took.

use std::process::Command;

use super::turn::{RELAY_PORTS, TURN_PORT};

/// The public segment's counters. The routers' uplinks are `ra` and `rb`; coturn is a local
/// process of the public namespace, so what it receives goes through `input` and what it
/// sends through `output`, while a direct path between the routers is `forward`.
pub(super) const RULES: &str = concat!(
    "table ip lab {\n",
    "  counter direct { }\n",
    "  counter relayed { }\n",
    "  counter turn { }\n",
    "  chain forward {\n",
    "    type filter hook forward priority 0; policy accept;\n",
    "    iifname { \"ra\", \"rb\" } oifname { \"ra\", \"rb\" } counter name \"direct\"\n",
    "  }\n",
    "  chain input {\n",
    "    type filter hook input priority 0; policy accept;\n",
    "    tcp dport 50000-59999 counter name \"relayed\"\n",
    "    tcp dport 3478 counter name \"turn\"\n",
    "  }\n",
    "  chain output {\n",
    "    type filter hook output priority 0; policy accept;\n",
    "    tcp sport 50000-59999 counter name \"relayed\"\n",
    "    tcp sport 3478 counter name \"turn\"\n",
    "  }\n",
    "}\n",
);

// The ruleset above spells the ports out; keep them in step with coturn's options.
const _: () = assert!(RELAY_PORTS.0 == 50000 && RELAY_PORTS.1 == 59999 && TURN_PORT == 3478);

/// Bytes (IP packets, headers included) the public segment carried, by path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Forwarded from one router straight to the other: a direct path.
    pub direct: u64,
    /// To and from coturn's relayed ports: the relayed leg of a relayed path.
    pub relayed: u64,
    /// To and from coturn's STUN/TURN port: requests, and the allocation owner's leg.
    pub turn: u64,
}

impl Counters {
    pub(super) fn read(ns: &str) -> Counters {
        let listed = super::run(Command::new("ip").args([
            "netns", "exec", ns, "nft", "list", "counters", "table", "ip", "lab",
        ]));
        Counters {
            direct: bytes_of(&listed, "direct"),
            relayed: bytes_of(&listed, "relayed"),
            turn: bytes_of(&listed, "turn"),
        }
    }

    /// What was carried since `before`.
    pub fn since(self, before: Counters) -> Counters {
        Counters {
            direct: self.direct.saturating_sub(before.direct),
            relayed: self.relayed.saturating_sub(before.relayed),
            turn: self.turn.saturating_sub(before.turn),
        }
    }
}

/// The `bytes N` of `counter NAME { packets P bytes N }` in `nft list counters` output.
fn bytes_of(listed: &str, name: &str) -> u64 {
    let start = listed
        .find(&format!("counter {name} "))
        .unwrap_or_else(|| panic!("no counter {name} in:\n{listed}"));
    let rest = &listed[start..];
    let at = rest.find("bytes ").expect("a byte count") + "bytes ".len();
    rest[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no byte count for {name} in:\n{listed}"))
}
