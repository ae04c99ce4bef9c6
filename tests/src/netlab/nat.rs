//! The routers' profiles, as nftables rulesets over their `lan` and `wan` links.
//!
//! Linux's masquerade keeps a connection's source port when no other connection uses that
//! tuple, so one source port maps to one public port whatever the destination: an
//! endpoint-independent mapping (RFC 4787 §4.1). Conntrack then lets in only the replies of
//! a connection the inside opened (address-and-port-dependent filtering: a port-restricted
//! cone). `fully-random` gives every connection a random public port: a symmetric NAT.
//! What a router refuses it drops without a word (no RST), as home routers do; a RST would
//! end the other side's half of a TCP simultaneous open.

use super::TURN_ADDRS;
use super::turn::TURN_PORT;

/// What a router does between its host and the public segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// No translation and no filter: the host has a public address.
    None,
    /// Endpoint-independent mapping with port preservation, port-restricted filtering.
    Cone,
    /// A new random public port for every connection (address-and-port-dependent mapping),
    /// port-restricted filtering.
    Symmetric,
    /// A cone NAT whose firewall lets out only TCP to the TURN servers' port.
    TurnPortOnly,
    /// A home router running Debian's miniupnpd (UPnP-IGD, NAT-PMP and PCP, see
    /// [`MiniUpnpd`](super::MiniUpnpd)): a cone NAT that also forwards the ports its hosts
    /// ask it to map. Its public address is outside the reserved ranges (miniupnpd refuses
    /// to map behind a reserved or private one); it exists only inside the lab.
    Upnp,
}

impl Nat {
    /// Whether the host sits on a private network behind a translation.
    pub fn translates(self) -> bool {
        self != Nat::None
    }

    /// A short name for test output.
    pub fn name(self) -> &'static str {
        match self {
            Nat::None => "none",
            Nat::Cone => "cone",
            Nat::Symmetric => "symmetric",
            Nat::TurnPortOnly => "turn-port-only",
            Nat::Upnp => "upnp",
        }
    }

    /// The router's ruleset.
    pub(super) fn ruleset(self) -> String {
        let masquerade = match self {
            Nat::None => return "table ip lab {\n}\n".to_owned(),
            Nat::Symmetric => "masquerade fully-random",
            Nat::Cone | Nat::TurnPortOnly | Nat::Upnp => "masquerade",
        };
        // What miniupnpd maps it DNATs (its own table, `MiniUpnpd::TABLE`); this table's
        // filter must let those connections through too.
        let mapped = if self == Nat::Upnp {
            "ct status dnat accept"
        } else {
            ""
        };
        let out = match self {
            Nat::TurnPortOnly => format!(
                "iifname \"lan\" oifname \"wan\" ip daddr {{ {} }} tcp dport {TURN_PORT} accept",
                TURN_ADDRS.map(|a| a.to_string()).join(", ")
            ),
            _ => "iifname \"lan\" oifname \"wan\" accept".to_owned(),
        };
        format!(
            "table ip lab {{
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    oifname \"wan\" {masquerade}
  }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
    ct state established,related accept
    {mapped}
    {out}
  }}
  chain input {{
    type filter hook input priority 0; policy drop;
    ct state established,related accept
    iifname {{ \"lo\", \"lan\" }} accept
  }}
}}
"
        )
    }
}
