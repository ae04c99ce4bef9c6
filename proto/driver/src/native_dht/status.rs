//! What the native node is doing, for `ferry dht status`, its status file and logs.

use std::net::{IpAddr, SocketAddr};

use ferry_proto::opendht::node::{Dropped, Sent};

/// What the native node is doing, for `ferry dht status` and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeStatus {
    /// Our UDP address (IPv4).
    pub local: Option<SocketAddr>,
    /// Our IPv6 UDP address, when the host has IPv6.
    pub local6: Option<SocketAddr>,
    /// Our node id, hex.
    pub id: String,
    /// Nodes in the routing tables (IPv4 and IPv6).
    pub nodes: usize,
    /// Of those, in the IPv6 table.
    pub nodes6: usize,
    /// Of those, the good ones (heard from recently).
    pub good: usize,
    /// Values we store for others.
    pub stored: usize,
    /// Others' listens we hold.
    pub listeners: usize,
    /// Our own values being kept on the network (re-announced).
    pub our_values: usize,
    /// Of those, stored on at least one node at their last round.
    pub our_values_stored: usize,
    /// Keys we listen to.
    pub listens: usize,
    /// Listens started, restarts included (a listen started before the node joined a
    /// network starts again when it joins).
    pub listens_started: u64,
    /// Whether the node has joined a network (its first lookup after a bootstrap answer).
    pub joined: bool,
    /// Bootstrap names that did not resolve, at the last try.
    pub unresolved: Vec<String>,
    /// Our public addresses as the nodes we asked saw them (`sa`), IPv4 and IPv6.
    pub public: Vec<IpAddr>,
    /// Whether nodes we never sent to reach us: "yes", "no" or "unknown"
    /// (`ferry_proto::opendht::reach`).
    pub reachable: &'static str,
    /// Distinct nodes we never sent to that sent us requests.
    pub strangers: usize,
    /// How our values and listens were kept alive.
    pub sent: Sent,
    /// What the node dropped, by reason.
    pub dropped: Dropped,
    /// Datagrams the sockets dropped: the queue to the node was full, or no socket of
    /// their family.
    pub socket_dropped: u64,
}

impl NativeStatus {
    /// As JSON (the form of the status file and of `ferry dht status --json`).
    pub fn to_json(&self) -> serde_json::Value {
        let d = &self.dropped;
        serde_json::json!({
            "local": self.local.map(|a| a.to_string()),
            "local6": self.local6.map(|a| a.to_string()),
            "id": self.id,
            "joined": self.joined,
            "nodes": self.nodes,
            "nodes6": self.nodes6,
            "public": self.public.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "reachable": self.reachable,
            "strangers": self.strangers,
            "sent": {
                "puts": self.sent.puts_sent,
                "refreshes": self.sent.refreshes_sent,
                "refreshes_refused": self.sent.refreshes_refused,
                "listens": self.sent.listens_sent,
                "updates_heard": self.sent.updates_heard,
            },
            "socket_dropped": self.socket_dropped,
            "good": self.good,
            "stored": self.stored,
            "listeners": self.listeners,
            "our_values": self.our_values,
            "our_values_stored": self.our_values_stored,
            "listens": self.listens,
            "listens_started": self.listens_started,
            "unresolved": self.unresolved,
            "dropped": {
                "malformed": d.malformed,
                "unknown_kind": d.unknown_kind,
                "wrong_network": d.wrong_network,
                "bad_sender": d.bad_sender,
                "unexpected_reply": d.unexpected_reply,
                "rate_limited": d.rate_limited,
                "bad_token": d.bad_token,
                "store_refused": d.store_refused,
                "bad_values": d.bad_values,
                "parts": d.parts,
                "parts_expired": d.parts_expired,
                "table_full": d.table_full,
                "requests_expired": d.requests_expired,
                "searches_refused": d.searches_refused,
            },
        })
    }
}

impl Default for NativeStatus {
    fn default() -> NativeStatus {
        NativeStatus {
            local: None,
            local6: None,
            id: String::new(),
            nodes: 0,
            nodes6: 0,
            good: 0,
            stored: 0,
            listeners: 0,
            our_values: 0,
            our_values_stored: 0,
            listens: 0,
            listens_started: 0,
            joined: false,
            unresolved: Vec::new(),
            public: Vec::new(),
            reachable: "unknown",
            strangers: 0,
            sent: Sent::default(),
            dropped: Dropped::default(),
            socket_dropped: 0,
        }
    }
}
