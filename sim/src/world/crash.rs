//! A process crash and restart: the host's endpoint is replaced by a new one, as when a
//! process dies and is started again on the same machine.
//!
//! What the operating system keeps survives: the host's addresses, its files (partial data
//! already written, committed files; files it had open are closed) and its records, which are
//! the caller's (the new endpoint is built from them). What lived in the process is lost: the
//! endpoint's state, its sockets (the kernel aborts them: each peer hears a reset, and a
//! connect in flight is abandoned), its listening ports, its DHT listens and whatever inputs
//! were waiting for it.

use ferry_proto::io::{ConnId, DhtKey, ListenerId, Output};

use super::World;
use crate::host::SimEndpoint;
use crate::ids::HostId;

impl World {
    /// `host`'s process crashes now and `endpoint` starts in its place (see the module docs).
    /// The new endpoint's first outputs are carried out at once.
    pub fn crash_and_restart(&mut self, host: HostId, endpoint: impl SimEndpoint) {
        let Some(h) = self.hosts.get(host.ix()) else {
            return;
        };
        let conns: Vec<ConnId> = h.conns.keys().copied().collect();
        let listeners: Vec<ListenerId> = h.listeners.keys().copied().collect();
        let listens: Vec<DhtKey> = h.dht_listens.iter().copied().collect();
        if self.tracer.is_some() {
            let text = format!("{} crashes and restarts", h.name);
            self.note_world(text);
        }
        for conn in conns {
            self.output(host, Output::Reset { conn });
        }
        for listener in listeners {
            self.output(host, Output::Unlisten { listener });
        }
        for key in listens {
            self.output(host, Output::DhtCancelListen { key });
        }
        let h = &mut self.hosts[host.ix()];
        h.files.close_all();
        h.inbox.clear();
        h.wake_at = None;
        h.woke_at = None;
        h.wakes_now = 0;
        h.endpoint = Box::new(endpoint);
        self.dirty.retain(|d| *d != host);
        self.mark(host);
        self.flush();
    }
}
