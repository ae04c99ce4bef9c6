//! The conformance [`Harness`] on the simulator: every device a public host on one simulated
//! internet, Nodes driven in virtual time, files generated from seeds.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use ferry_driver::ClientEvent;
use ferry_proto::conversation::AskAnswer;
use ferry_proto::io::Event;
use ferry_proto::node::{AskDecision, AskId, Node, NodeConfig};
use ferry_proto::tls::{Account, AccountId, Device, DeviceId, UnixAnchor};
use ferry_proto::transfer::{Digest, TransferId};
use ferry_sim::{HostId, HostSpec, LinkSpec, World};

use super::{Harness, Peer, Setup, TestFile, unix_now};

/// How far the world runs between two looks at the events.
const STEP: Duration = Duration::from_millis(10);

/// The simulator as a conformance harness.
pub struct Simulated {
    world: World,
    hosts: Vec<HostId>,
    /// Per host: the time of the last event taken into `pending`, and how many events at that
    /// very time were taken (the world keeps the latest events only, so no index is stable).
    seen: Vec<(Duration, usize)>,
    pending: Vec<Vec<ClientEvent>>,
    /// Per host, what it sent, by group id and by the id each device saw: its records, from
    /// which it serves requests to send again.
    sent: Vec<BTreeMap<TransferId, Sent>>,
}

/// A host's record of a file it sent.
#[derive(Debug, Clone)]
struct Sent {
    to: AccountId,
    /// The simulator's source (`seed:S:N`), and whether the file changed since.
    source: String,
    name: String,
    changed: bool,
}

impl Simulated {
    fn collect(&mut self) {
        let mut asks = Vec::new();
        for i in 0..self.hosts.len() {
            let host = &self.hosts[i];
            let (last, count) = self.seen[i];
            let mut at_last = 0;
            for (at, event) in self.world.events::<Event>(*host) {
                if at < last {
                    continue;
                }
                if at == last {
                    at_last += 1;
                    if at_last <= count {
                        continue;
                    }
                }
                if at > self.seen[i].0 {
                    self.seen[i] = (at, 0);
                }
                self.seen[i].1 += 1;
                let event = ClientEvent::from_event(event, Path::new(""));
                match &event {
                    ClientEvent::Reaching {
                        group, transfer, ..
                    } => {
                        if let Some(s) = self.sent[i].get(group).cloned() {
                            self.sent[i].insert(*transfer, s);
                        }
                    }
                    ClientEvent::AskAgain {
                        request,
                        from,
                        transfer,
                    } => asks.push((i, *request, from.account, *transfer)),
                    _ => {}
                }
                self.pending[i].push(event);
            }
        }
        for (i, request, from, transfer) in asks {
            self.serve(i, request, from, transfer);
        }
    }

    /// Answers a request as `listen` does: from the host's records of what it sent.
    fn serve(&mut self, i: usize, request: AskId, from: AccountId, transfer: TransferId) {
        let decision = match self.sent[i].get(&transfer) {
            None => AskDecision::Refuse(AskAnswer::UnknownTransfer),
            Some(s) if s.to != from => AskDecision::Refuse(AskAnswer::NotARecipient),
            Some(s) if s.changed => AskDecision::Refuse(AskAnswer::FileChanged),
            Some(s) => AskDecision::Resend {
                source: s.source.clone(),
                name: s.name.clone(),
            },
        };
        let answered = self
            .world
            .with_endpoint(self.hosts[i], |n: &mut Node, now| {
                n.answer_ask(now, request, decision)
            })
            .expect("every host runs a node");
        if let Ok(Some(group)) = answered
            && let Some(s) = self.sent[i].get(&transfer).cloned()
        {
            self.sent[i].insert(group, s);
        }
    }

    /// Keeps what `peer` sent under `group`.
    fn record(&mut self, peer: Peer, group: TransferId, to: AccountId, file: &TestFile) {
        self.sent[peer].insert(
            group,
            Sent {
                to,
                source: format!("seed:{}:{}", file.seed, file.size),
                name: file.name.clone(),
                changed: false,
            },
        );
    }

    fn on_node<R>(&mut self, peer: Peer, f: impl FnOnce(&mut Node, std::time::Instant) -> R) -> R {
        let r = self
            .world
            .with_endpoint(self.hosts[peer], f)
            .expect("every host runs a node");
        self.collect();
        r
    }
}

impl Harness for Simulated {
    const NAME: &'static str = "sim";

    fn start(devices: &[(&Account, &Device)], setup: &Setup) -> Simulated {
        assert!(
            setup.turn.is_none() && setup.opendht.is_none(),
            "the simulator's scenarios use neither a real TURN server nor a real DHT"
        );
        let mut b = World::builder(0xC0F0);
        let epoch = b.epoch();
        let anchor = UnixAnchor {
            instant: epoch,
            unix: Duration::from_secs(unix_now()),
        };
        let internet = b.internet();
        let mut hosts = Vec::new();
        for (i, (account, device)) in devices.iter().enumerate() {
            let octet = 10 + u8::try_from(i).expect("a few devices");
            let ip = Ipv4Addr::new(198, 51, 100, octet);
            let announcement = account.announce(device).expect("announce");
            let config = NodeConfig::new(
                (*device).clone(),
                announcement,
                vec![IpAddr::V4(ip)],
                i as u64 + 1,
                anchor,
            );
            let spec = HostSpec::new(&format!("d{i}"), internet)
                .v4(ip)
                .link(LinkSpec::latency(Duration::from_millis(5)));
            hosts.push(b.host(spec, Node::new(epoch, config)));
        }
        let world = b.build().expect("world");
        let n = hosts.len();
        let mut sim = Simulated {
            world,
            hosts,
            seen: vec![(Duration::ZERO, 0); n],
            pending: vec![Vec::new(); n],
            sent: vec![BTreeMap::new(); n],
        };
        // Listeners bound, announcements on the DHT.
        sim.world.run_for(Duration::from_secs(1));
        sim.collect();
        sim
    }

    fn send_file(&mut self, peer: Peer, to: AccountId, file: &TestFile) -> TransferId {
        let source = format!("seed:{}:{}", file.seed, file.size);
        let name = file.name.clone();
        let group = self.on_node(peer, move |n, now| n.send_file(now, to, source, name));
        self.record(peer, group, to, file);
        group
    }

    fn send_file_again(
        &mut self,
        peer: Peer,
        to: AccountId,
        file: &TestFile,
        group: TransferId,
        devices: BTreeMap<DeviceId, TransferId>,
    ) -> TransferId {
        let source = format!("seed:{}:{}", file.seed, file.size);
        let name = file.name.clone();
        let group = self.on_node(peer, move |n, now| {
            n.send_file_again(now, to, source, name, group, devices)
        });
        self.record(peer, group, to, file);
        group
    }

    fn ask_again(
        &mut self,
        peer: Peer,
        sender: AccountId,
        transfer: TransferId,
        claimed: Option<DeviceId>,
    ) {
        self.on_node(peer, move |n, now| {
            n.ask_again_claiming(now, sender, transfer, claimed)
        });
    }

    fn change_file(&mut self, peer: Peer, file: &TestFile, _seed: u64) {
        // The simulator's sources are their seeds: the record of the file says it changed,
        // as the metadata of a real file would.
        let source = format!("seed:{}:{}", file.seed, file.size);
        for s in self.sent[peer].values_mut().filter(|s| s.source == source) {
            s.changed = true;
        }
    }

    fn accept(&mut self, peer: Peer, transfer: TransferId) {
        self.on_node(peer, |n, now| n.accept(now, transfer))
            .expect("accept an offer");
    }

    fn refuse(&mut self, peer: Peer, transfer: TransferId) {
        self.on_node(peer, |n, now| n.refuse(now, transfer))
            .expect("refuse an offer");
    }

    fn cancel(&mut self, peer: Peer, transfer: TransferId) {
        self.on_node(peer, |n, now| n.cancel(now, transfer));
    }

    fn wait<T>(
        &mut self,
        peer: Peer,
        within: Duration,
        mut pick: impl FnMut(&ClientEvent) -> Option<T>,
    ) -> Option<T> {
        let until = self.world.now() + within;
        loop {
            let pending = &mut self.pending[peer];
            if let Some((i, t)) = pending
                .iter()
                .enumerate()
                .find_map(|(i, e)| pick(e).map(|t| (i, t)))
            {
                pending.remove(i);
                return Some(t);
            }
            if self.world.now() >= until {
                return None;
            }
            self.world.run_for(STEP);
            self.collect();
        }
    }

    fn now(&self) -> Duration {
        self.world.now()
    }

    fn relayed(&mut self, peer: Peer) -> Vec<SocketAddr> {
        self.on_node(peer, |n, _| n.relayed())
    }

    fn shutdown(&mut self, peer: Peer) {
        self.on_node(peer, |n, now| n.shutdown(now));
        let done = self.wait(peer, super::WAIT, |e| {
            (*e == ClientEvent::ShutDown).then_some(())
        });
        assert!(done.is_some(), "the node shuts down");
    }

    fn received(&self, peer: Peer, name: &str) -> Option<(u64, Digest)> {
        let stored = self.world.received_file(self.hosts[peer], name)?;
        Some((stored.len, stored.digest()))
    }
}
