//! How a node runs: its configuration, and the deadlines and budgets it keeps.
//!
//! Every limit a peer meets is here, beside its reason; PROTOCOL.md §10 lists them in one
//! table, checked against these constants by `tests/tests/protocol_md.rs`.

use core::net::IpAddr;
use std::time::Duration;

use crate::ice;
use crate::tls::{AccountId, Device, Revocations, UnixAnchor};
use crate::turn::TurnConfig;

#[cfg(doc)]
use super::{DroppedValues, Event};

/// How long local gathering may take before connectors go ahead with what they have.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a requester waits for an answer (Jami: 30 s).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a requester puts its (same) request again while no answer came.
pub const REQUEST_RETRY: Duration = Duration::from_secs(5);
/// How long the TLS handshake may take once ICE selected a pair.
pub const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a node puts its announcement again (DHT values expire; OpenDHT keeps them 10
/// minutes), and how soon after a failed put.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(5 * 60);
/// How soon an answer whose put failed is put again, while its requester is not connected.
pub const ANSWER_RETRY: Duration = Duration::from_secs(1);
pub(super) const ANNOUNCE_RETRY: Duration = Duration::from_secs(2);
/// How long a failed connection's state is kept (to answer retried requests, and to remember
/// a denial) before it is forgotten.
pub const FORGET_FAILED: Duration = Duration::from_secs(2 * 30);
/// How long the peer of a ready connection has to answer a liveness check, asked when a new
/// request from the same device arrives (a few round trips, on a loaded host too).
pub const LIVENESS_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a file sent to an account waits for any device to announce itself. An
/// announcement is on the DHT long before anyone sends (a device puts it when it starts, and
/// again every [`ANNOUNCE_EVERY`]): a lookup finds it within a DHT round trip, and a lossy DHT
/// is asked again every [`REQUEST_RETRY`]. So an account none of whose devices was ever
/// announced (a wrong id, a contact that never ran Ferry) is told after three tries, not
/// after Jami's answer timeout.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a file sent to every device of an account still waits, once one device has
/// verified it, for a device that never answered our connection request (its announcement
/// is on the DHT, but the device is offline): then that device's sub-transfer ends
/// `unjoinable_peer` ("not reached"), instead of holding the sender for the rest of
/// [`ANSWER_TIMEOUT`]. A device that answered (ICE, TLS or its transfer under way) is waited
/// for as long as its own deadlines say. Short, because the device had the whole data phase
/// of the other one to answer already, and a DHT answer takes a round trip.
pub const UNJOINED_GRACE: Duration = Duration::from_secs(3);
/// How long a ready connection that no channel uses stays open: then our side ends TLS
/// (close_notify) and closes, and the peer, hearing close_notify while it uses no channel
/// either, closes its side too. Long enough that the next file a user picks after a first
/// one (seconds, or a minute later) reuses the connection, without the DHT exchange, ICE and
/// TLS again (seconds on a relayed path); short enough that a listener that runs for months
/// holds no descriptor, keepalive or relay stream for peers that are done.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most connectors (remote devices connecting, connected, or failed recently) the node keeps
/// at once. Each runs an ICE agent and a TLS session; a stranger can make any number of
/// accounts, so past this a request is left unanswered unless a failed connector can be
/// forgotten, or a contact's request takes the place of a stranger's that is not ready.
pub const MAX_CONNECTORS: usize = 256;
/// Most connectors, and devices known, per account: an account can sign any number of
/// devices, and Jami's users have a handful. Past it, the account's oldest failed connector
/// is forgotten to make room, or the request waits for its next retry.
pub const MAX_CONNECTORS_PER_ACCOUNT: usize = 16;
/// Most incoming transfers at once from the devices of one account, whatever their state:
/// past it, the account's new channels are declined (its sender hears a refusal). Each holds
/// a transfer machine and, once accepted, an open file.
pub const MAX_TRANSFERS_PER_PEER: usize = 64;
/// Most offers at once from the devices of one account that the local user has not
/// accepted yet (their header still awaited, or a decision): past it, the account's new
/// channels are declined. A stranger cannot queue prompts ahead of a contact's without
/// bound; a contact sending a folder of files at once still fits.
pub const MAX_OFFERS_PER_PEER: usize = 32;

/// How a node runs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// This device.
    pub device: Device,
    /// This device's announcement, signed by its account ([`Account::announce`](crate::tls::Account::announce)).
    pub announcement: Vec<u8>,
    /// The local interface addresses to offer as host candidates.
    pub local_ips: Vec<IpAddr>,
    /// TURN servers, one per address family at most.
    pub turn: Vec<TurnConfig>,
    /// STUN servers (TCP) asked where the NAT maps our listening ports: server-reflexive
    /// candidates without a relay (see [`Mapping`](super::Mapping)).
    pub stun: Vec<core::net::SocketAddr>,
    /// Seed of every random value the node draws.
    pub seed: u64,
    /// Maps the driver's clock to Unix time, for certificate validity.
    pub anchor: UnixAnchor,
    /// Revocation lists known.
    pub revocations: Revocations,
    /// ICE settings.
    pub ice: ice::Config,
    /// Accept incoming pictures smaller than this without asking (Jami's clients: 20 MB).
    pub auto_accept_images_under: Option<u64>,
    /// Relay only (for users on hostile networks, and for tests): the node listens nowhere,
    /// offers only relayed candidates and connects to peers from no local address, so no
    /// host, server-reflexive or public address of ours reaches a peer and every path goes
    /// through our relay. Its only connections are to its TURN servers. (Two relay-only
    /// nodes need relay to relay, RFC 6062 Connect, which is not there yet.)
    pub relay_only: bool,
    /// Ask the home router to forward our listening ports (PCP, NAT-PMP, UPnP-IGD, through
    /// the driver's service: [`Output::MapPort`](crate::io::Output::MapPort)) and offer the
    /// mapped addresses as server-reflexive candidates. Off by default here (a simulator or
    /// an embedding without the service has nothing to answer with); the `ferry` CLI turns
    /// it on. Never in [`relay_only`](Self::relay_only) mode.
    pub port_mapping: bool,
    /// Ask the application ([`Event::ConnectionRequest`]) before answering a device of an
    /// account that is not ours and not in [`contacts`](Self::contacts); off, every valid
    /// request is answered (the application still accepts or refuses each file).
    pub ask_before_connecting: bool,
    /// Accounts whose devices are answered without asking.
    pub contacts: std::collections::BTreeSet<AccountId>,
    /// Answer only our own account's devices and [`contacts`](Self::contacts): a request
    /// from any other account is dropped before ICE (counted in
    /// [`DroppedValues::not_a_contact`]), so a stranger who knows our account id learns
    /// none of our addresses (Jami's "allow peers from contacts only").
    pub only_contacts: bool,
    /// Where TLS sessions write their secrets, for a trace that shows what travels inside
    /// TLS (the simulator's); `None` anywhere else, since the log decrypts every connection.
    pub tls_key_log: Option<std::sync::Arc<dyn rustls::KeyLog>>,
    /// What this node announces it reads (`PROTOCOL.md` §9.1):
    /// [`Features::ours`](crate::signal::Features::ours) unless a test plays an older peer.
    pub features: crate::signal::Features,
}

impl NodeConfig {
    /// A configuration with Ferry's defaults for the rest.
    pub fn new(
        device: Device,
        announcement: Vec<u8>,
        local_ips: Vec<IpAddr>,
        seed: u64,
        anchor: UnixAnchor,
    ) -> NodeConfig {
        NodeConfig {
            device,
            announcement,
            local_ips,
            turn: Vec::new(),
            stun: Vec::new(),
            seed,
            anchor,
            revocations: Revocations::new(),
            ice: ice::Config::default(),
            auto_accept_images_under: None,
            relay_only: false,
            port_mapping: false,
            ask_before_connecting: false,
            contacts: std::collections::BTreeSet::new(),
            only_contacts: false,
            tls_key_log: None,
            features: crate::signal::Features::ours(),
        }
    }
}
