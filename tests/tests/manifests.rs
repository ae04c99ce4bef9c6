//! Several files and folders in one send (`PROTOCOL.md` §14), on the simulator: one offer
//! per device, accepted or refused as a whole, its files taken without asking and placed
//! below the tree made for it; a device that reads no manifest gets the top-level files one
//! by one and a clear failure for the rest.

use std::time::Duration;

use ferry_proto::io::Event;
use ferry_proto::node::{Node, SendEntry, SendKind, Sending};
use ferry_proto::signal::Features;
use ferry_proto::tls::{Account, Device};
use ferry_proto::transfer::manifest::RelPath;
use ferry_proto::transfer::{Reason, Status, TransferId};
use ferry_sim::{HostId, HostSpec, LinkSpec, World, WorldBuilder};
use ferry_tests::identity::{Seeds, node_config};

const SEEDS: Seeds = Seeds::new(b"manifests", b"manifests-device");

/// How many small files the tree holds beside its named ones: more than
/// [`MANIFEST_WINDOW`](ferry_proto::node::MANIFEST_WINDOW), so the window slides.
const SMALL: usize = 20;

fn host(
    b: &mut WorldBuilder,
    name: &str,
    account: &Account,
    device: &Device,
    last: u8,
    features: Features,
) -> HostId {
    let link = LinkSpec::latency(Duration::from_millis(10)).with_bandwidth(20_000_000);
    host_linked(b, name, (account, device), last, features, link)
}

/// [`host`] on a link of its own.
fn host_linked(
    b: &mut WorldBuilder,
    name: &str,
    (account, device): (&Account, &Device),
    last: u8,
    features: Features,
    link: LinkSpec,
) -> HostId {
    let epoch = b.epoch();
    let internet = b.internet();
    let at = [198, 51, 100, last];
    let mut config = node_config(epoch, account, device, at.into(), u64::from(last));
    config.features = features;
    b.host(
        HostSpec::new(name, internet).v4(at).link(link),
        Node::new(epoch, config),
    )
}

fn path(p: &str) -> RelPath {
    RelPath::parse(p).expect("a path")
}

fn file(p: &str, size: u64) -> SendEntry {
    SendEntry {
        path: path(p),
        kind: SendKind::File {
            source: format!("seed:{size}:{size}"),
            size,
        },
    }
}

fn folder(p: &str) -> SendEntry {
    SendEntry {
        path: path(p),
        kind: SendKind::Folder,
    }
}

/// `trip/` with a file, a nested file, an empty folder and [`SMALL`] small files, and a file
/// `notes.txt` beside it.
fn tree() -> Vec<SendEntry> {
    let mut entries = vec![
        folder("trip"),
        file("trip/a.txt", 1_000),
        folder("trip/sub"),
        file("trip/sub/b.bin", 300_000),
        folder("trip/empty"),
    ];
    for n in 0..SMALL {
        entries.push(file(&format!("trip/sub/s{n:02}.txt"), 100 + n as u64));
    }
    entries.push(file("notes.txt", 500));
    entries
}

struct Pair {
    world: World,
    alice: HostId,
    bob: HostId,
}

fn pair(seed: u64, bob_features: Features) -> Pair {
    let mut b = World::builder(seed);
    let (alice, bob) = (SEEDS.account("alice"), SEEDS.account("bob"));
    let (a1, b1) = (SEEDS.device(&alice, "a1"), SEEDS.device(&bob, "b1"));
    let ha = host(&mut b, "a1", &alice, &a1, 10, Features::ours());
    let hb = host(&mut b, "b1", &bob, &b1, 20, bob_features);
    let mut world = b.build().expect("world");
    world.run_for(Duration::from_secs(1));
    Pair {
        world,
        alice: ha,
        bob: hb,
    }
}

impl Pair {
    fn send(&mut self, entries: Vec<SendEntry>) -> Sending {
        let bob = SEEDS.account("bob").id();
        self.world
            .with_endpoint(self.alice, |n: &mut Node, now| {
                n.send_files(now, bob, entries)
            })
            .expect("a node")
            .expect("a valid send")
    }

    fn events(&self, host: HostId) -> Vec<Event> {
        self.world
            .events::<Event>(host)
            .into_iter()
            .map(|(_, e)| e)
            .collect()
    }

    /// The first manifest `host` was offered, if any.
    fn offered_to(&self, host: HostId) -> Option<TransferId> {
        self.events(host).into_iter().find_map(|e| match e {
            Event::IncomingManifest { manifest, .. } => Some(manifest),
            _ => None,
        })
    }

    /// Runs until Bob is offered a manifest; its id.
    fn offered(&mut self) -> Option<TransferId> {
        for _ in 0..300 {
            let offered = self.offered_to(self.bob);
            if offered.is_some() {
                return offered;
            }
            self.world.run_for(Duration::from_millis(100));
        }
        None
    }

    fn answer(&mut self, mid: TransferId, accept: bool) {
        self.world
            .with_endpoint(self.bob, |n: &mut Node, now| match accept {
                true => n.accept(now, mid),
                false => n.refuse(now, mid),
            })
            .expect("a node")
            .expect("a manifest waiting");
    }

    /// The last final status of `transfer` on `host`.
    fn end(&self, host: HostId, transfer: TransferId) -> Option<(Status, Option<Reason>)> {
        self.events(host).into_iter().rev().find_map(|e| match e {
            Event::Status {
                transfer: t,
                status,
                reason,
            } if t == transfer && status.is_final() => Some((status, reason)),
            _ => None,
        })
    }

    /// Alice's manifest for Bob's device (the sub-transfer of the send).
    fn offer_of(&self, send: TransferId) -> Option<TransferId> {
        self.events(self.alice).into_iter().find_map(|e| match e {
            Event::SubTransfer {
                group, transfer, ..
            } if group == send => Some(transfer),
            _ => None,
        })
    }

    fn run_until(&mut self, mut done: impl FnMut(&Pair) -> bool) {
        for _ in 0..600 {
            if done(self) {
                return;
            }
            self.world.run_for(Duration::from_millis(100));
        }
    }
}

/// A folder with a nested folder, an empty folder and more small files than the window,
/// and a file beside it: one offer, listed before the decision; once accepted every file
/// arrives below the tree, verified, without another question, and both sides say the
/// offer finished. The same tree sent again lands in `trip (1)`.
#[test]
fn a_folder_arrives_whole_as_one_offer() {
    let mut p = pair(31, Features::ours());
    let sending = p.send(tree());
    assert_eq!(sending.files.len(), SMALL + 3, "one group per file");
    let mid = p.offered().expect("Bob is offered the manifest");
    let shown = p.events(p.bob).into_iter().find_map(|e| match e {
        Event::IncomingManifest {
            files,
            folders,
            size,
            names,
            ..
        } => Some((files, folders, size, names)),
        _ => None,
    });
    let small: u64 = (0..SMALL as u64).map(|n| 100 + n).sum();
    assert_eq!(
        shown,
        Some((
            SMALL + 3,
            3,
            1_000 + 300_000 + 500 + small,
            vec!["trip".to_owned(), "notes.txt".to_owned()]
        ))
    );
    p.world.run_for(Duration::from_secs(2));
    let bob_events = p.events(p.bob);
    assert!(
        !bob_events.iter().any(|e| matches!(
            e,
            Event::IncomingTransfer { .. } | Event::ManifestFile { .. }
        )),
        "no file comes before the answer"
    );
    p.answer(mid, true);
    p.run_until(|p| p.end(p.bob, mid).is_some());
    assert_eq!(p.end(p.bob, mid), Some((Status::Finished, None)));
    let bob_events = p.events(p.bob);
    assert!(
        !bob_events
            .iter()
            .any(|e| matches!(e, Event::IncomingTransfer { .. })),
        "the files are not asked about one by one"
    );
    let taken: Vec<String> = bob_events
        .iter()
        .filter_map(|e| match e {
            Event::ManifestFile { path, .. } => Some(path.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(taken.len(), SMALL + 3, "{taken:?}");
    let verified = bob_events
        .iter()
        .filter(|e| matches!(e, Event::Verified { .. }))
        .count();
    assert_eq!(verified, SMALL + 3);
    for (name, size) in [
        ("trip/a.txt", 1_000),
        ("trip/sub/b.bin", 300_000),
        ("trip/sub/s07.txt", 107),
        ("notes.txt", 500),
    ] {
        let got = p.world.received_file(p.bob, name);
        assert_eq!(got.map(|f| f.len), Some(size), "{name}");
    }
    assert!(
        p.world.made_folder(p.bob, "trip/empty"),
        "the empty folder is kept"
    );
    p.run_until(|p| {
        p.offer_of(sending.send)
            .is_some_and(|o| p.end(p.alice, o).is_some())
    });
    let offer = p.offer_of(sending.send).expect("Alice's offer to b1");
    assert_eq!(p.end(p.alice, offer), Some((Status::Finished, None)));

    // Sent again: a new offer (new ids), and the folder taken gives `trip (1)`.
    let again = p.send(tree());
    let mid2 = loop {
        let offers: Vec<TransferId> = p
            .events(p.bob)
            .into_iter()
            .filter_map(|e| match e {
                Event::IncomingManifest { manifest, .. } => Some(manifest),
                _ => None,
            })
            .collect();
        if offers.len() == 2 {
            break offers[1];
        }
        p.world.run_for(Duration::from_millis(100));
    };
    p.answer(mid2, true);
    p.run_until(|p| p.end(p.bob, mid2).is_some());
    assert_eq!(p.end(p.bob, mid2), Some((Status::Finished, None)));
    assert!(p.world.received_file(p.bob, "trip (1)/sub/b.bin").is_some());
    assert!(p.world.received_file(p.bob, "notes.txt (1)").is_some());
    assert!(p.world.made_folder(p.bob, "trip (1)/empty"));
    assert_ne!(again.send, sending.send);
    assert!(
        p.world.violations().is_empty(),
        "{:?}",
        p.world.violations()
    );
}

/// Refused as a whole: nothing is sent, nothing created, and every file of the send ends
/// refused on Alice's side.
#[test]
fn a_refused_manifest_sends_nothing() {
    let mut p = pair(32, Features::ours());
    let sending = p.send(tree());
    let mid = p.offered().expect("Bob is offered the manifest");
    p.answer(mid, false);
    p.run_until(|p| {
        p.offer_of(sending.send)
            .is_some_and(|o| p.end(p.alice, o).is_some())
    });
    let offer = p.offer_of(sending.send).expect("Alice's offer");
    assert_eq!(
        p.end(p.alice, offer),
        Some((Status::ClosedByPeer, Some(Reason::Refused)))
    );
    assert_eq!(
        p.end(p.bob, mid),
        Some((Status::ClosedByHost, Some(Reason::Refused)))
    );
    p.world.run_for(Duration::from_secs(2));
    let alice_events = p.events(p.alice);
    for group in &sending.files {
        let ended = alice_events.iter().rev().find_map(|e| match e {
            Event::Aggregate {
                group: g, status, ..
            } if g == group && status.is_final() => Some(*status),
            _ => None,
        });
        assert_eq!(ended, Some(Status::ClosedByPeer), "every file ends refused");
    }
    let bob_events = p.events(p.bob);
    assert!(!bob_events.iter().any(|e| matches!(
        e,
        Event::ManifestFile { .. } | Event::IncomingTransfer { .. } | Event::Progress { .. }
    )));
    assert!(p.world.received_file(p.bob, "notes.txt").is_none());
    assert!(!p.world.made_folder(p.bob, "trip"));
}

/// A device that did not announce `manifest` (Jami, an older Ferry) gets the top-level file
/// as a single file's offer, today's bytes, and each file inside the folder fails for it
/// with a reason that says why.
#[test]
fn a_device_without_manifests_gets_top_files_and_a_reason_for_folders() {
    let older = Features {
        manifest: false,
        ..Features::ours()
    };
    let mut p = pair(33, older);
    let sending = p.send(tree());
    let mut answered = Vec::new();
    // Accepted by hand: the one file is offered as it always was.
    for _ in 0..300 {
        let offers: Vec<TransferId> = p
            .events(p.bob)
            .into_iter()
            .filter_map(|e| match e {
                Event::IncomingTransfer { transfer, .. } => Some(transfer),
                _ => None,
            })
            .collect();
        for t in offers {
            if !answered.contains(&t) {
                answered.push(t);
                p.answer(t, true);
            }
        }
        if p.world.received_file(p.bob, "notes.txt").is_some() {
            break;
        }
        p.world.run_for(Duration::from_millis(100));
    }
    assert_eq!(answered.len(), 1, "only the top-level file is offered");
    assert!(p.world.received_file(p.bob, "notes.txt").is_some());
    assert!(
        p.offer_of(sending.send).is_none(),
        "no manifest to this device"
    );
    let alice_events = p.events(p.alice);
    let folder_failures = alice_events
        .iter()
        .filter(|e| {
            matches!(
                e,
                Event::Status {
                    status: Status::Unsupported,
                    reason: Some(Reason::NoFolders),
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        folder_failures,
        SMALL + 2,
        "each file inside the folder fails, told why"
    );
    assert!(
        !p.events(p.bob)
            .iter()
            .any(|e| matches!(e, Event::IncomingManifest { .. }))
    );
}

/// A contact that offers more folders at once than the user answers holds at most
/// [`MAX_MANIFESTS_PER_PEER`](ferry_proto::node::MAX_MANIFESTS_PER_PEER) of them: the next
/// manifest channel is declined and counted, and that send fails on its side at once instead
/// of waiting for an answer no one will give.
#[test]
fn offers_past_the_per_peer_bound_are_declined() {
    use ferry_proto::node::MAX_MANIFESTS_PER_PEER;
    use ferry_proto::transfer::manifest::DECLINED;
    let mut p = pair(34, Features::ours());
    let sends: Vec<Sending> = (0..=MAX_MANIFESTS_PER_PEER)
        .map(|_| p.send(vec![folder("f"), file("f/a.txt", 10)]))
        .collect();
    // SECURITY: row 150
    p.run_until(|p| {
        sends
            .iter()
            .filter_map(|s| p.offer_of(s.send))
            .any(|o| p.end(p.alice, o).is_some())
    });
    // The others' manifests are read meanwhile.
    p.world.run_for(Duration::from_secs(2));
    let offered = p
        .events(p.bob)
        .iter()
        .filter(|e| matches!(e, Event::IncomingManifest { .. }))
        .count();
    assert_eq!(
        offered, MAX_MANIFESTS_PER_PEER,
        "Bob is asked about the first ones only"
    );
    let ended: Vec<(Status, Option<Reason>)> = sends
        .iter()
        .filter_map(|s| p.offer_of(s.send))
        .filter_map(|o| p.end(p.alice, o))
        .collect();
    assert_eq!(ended.len(), 1, "one send ends at once: {ended:?}");
    assert_eq!(
        ended[0],
        (Status::ClosedByPeer, Some(Reason::Protocol(DECLINED)))
    );
    let dropped = p
        .world
        .endpoint::<Node>(p.bob)
        .expect("bob")
        .dropped()
        .channels_over_budget;
    assert_eq!(dropped, 1);
}

/// The sender cancels a folder it is sending: the receiver's offer ends saying the sender
/// cancelled (not only how many files arrived), and no file is left under a final name that
/// was not verified.
#[test]
fn a_folder_cancelled_by_its_sender_says_so_on_the_receiving_side() {
    use ferry_proto::transfer::frame::CancelCode;
    let mut p = pair(35, Features::ours());
    let sending = p.send(vec![
        folder("big"),
        file("big/one.bin", 5_000_000),
        file("big/two.bin", 5_000_000),
    ]);
    let mid = p.offered().expect("Bob is offered the manifest");
    p.answer(mid, true);
    p.run_until(|p| {
        p.events(p.bob)
            .iter()
            .any(|e| matches!(e, Event::Progress { done, .. } if *done > 0))
    });
    let send = sending.send;
    p.world
        .with_endpoint(p.alice, |n: &mut Node, now| n.cancel(now, send))
        .expect("a node");
    p.run_until(|p| p.end(p.bob, mid).is_some());
    assert_eq!(
        p.end(p.bob, mid),
        Some((
            Status::ClosedByPeer,
            Some(Reason::PeerCancelled(CancelCode::User))
        ))
    );
    assert!(p.world.received_file(p.bob, "big/one.bin").is_none());
    assert!(p.world.received_file(p.bob, "big/two.bin").is_none());
    // And on Alice's side the offer says it was cancelled here, not "n of m arrived".
    p.run_until(|p| {
        p.offer_of(send)
            .is_some_and(|o| p.end(p.alice, o).is_some())
    });
    let offer = p.offer_of(send).expect("Alice's offer");
    assert_eq!(
        p.end(p.alice, offer),
        Some((Status::ClosedByHost, Some(Reason::Cancelled)))
    );
}

/// Interrupted, then taken up again under the same ids (`Node::send_files_again`, as the
/// CLI does from its records): Bob is offered the same manifest id, listing only the files
/// he has not verified; they land in the folder made the first time (not `big (1)`), a file
/// he kept part of resumes from it, and no verified file comes twice.
#[test]
fn a_folder_taken_up_again_resumes_per_file_in_the_same_folder() {
    use ferry_proto::node::{DeviceAgain, SendAgain};
    use std::collections::{BTreeMap, BTreeSet};
    let mut p = pair(36, Features::ours());
    let mut entries = vec![
        folder("big"),
        file("big/one.bin", 3_000_000),
        file("big/two.bin", 3_000_000),
    ];
    for n in 0..4 {
        entries.push(file(&format!("big/s{n}.txt"), 200 + n));
    }
    let sending = p.send(entries.clone());
    let mid = p.offered().expect("Bob is offered the manifest");
    p.answer(mid, true);
    // Until the small files are verified and a big one is under way.
    p.run_until(|p| {
        let events = p.events(p.bob);
        let verified = events
            .iter()
            .filter(|e| matches!(e, Event::Verified { .. }))
            .count();
        verified >= 4
            && events
                .iter()
                .any(|e| matches!(e, Event::Progress { done, .. } if *done > 500_000))
    });
    let send = sending.send;
    p.world
        .with_endpoint(p.alice, |n: &mut Node, now| n.cancel(now, send))
        .expect("a node");
    p.run_until(|p| p.end(p.bob, mid).is_some());
    assert_eq!(
        p.world.kept_trees(p.bob),
        1,
        "kept for a send taken up again"
    );

    // What Alice's records would hold: her device's ids and what it verified.
    let alice_events = p.events(p.alice);
    let mut subs = BTreeMap::new();
    let mut device = None;
    for e in &alice_events {
        if let Event::SubTransfer {
            group,
            transfer,
            device: d,
        } = e
        {
            if sending.files.contains(group) {
                subs.insert(*group, *transfer);
                device = Some(*d);
            }
        }
    }
    let verified: BTreeSet<TransferId> = alice_events
        .iter()
        .filter_map(|e| match e {
            Event::Verified { transfer, .. } => Some(*transfer),
            _ => None,
        })
        .collect();
    assert!(verified.len() >= 4, "the small files were verified");
    assert!(verified.len() < 6, "not every file was");
    let files: Vec<TransferId> = sending.files.iter().map(|g| subs[g]).collect();
    let again = SendAgain {
        send,
        files: sending.files.clone(),
        devices: BTreeMap::from([(
            device.expect("Bob's device"),
            DeviceAgain {
                manifest: p.offer_of(send).expect("the offer"),
                files: files.clone(),
                verified: verified.clone(),
            },
        )]),
    };
    let bob = SEEDS.account("bob").id();
    let before = p.events(p.bob).len();
    p.world
        .with_endpoint(p.alice, |n: &mut Node, now| {
            n.send_files_again(now, bob, entries, again)
        })
        .expect("a node")
        .expect("a valid send");
    let left = 6 - verified.len();
    let offered = loop {
        let shown = p.events(p.bob)[before..].iter().find_map(|e| match e {
            Event::IncomingManifest {
                manifest, files, ..
            } => Some((*manifest, *files)),
            _ => None,
        });
        if let Some(shown) = shown {
            break shown;
        }
        p.world.run_for(Duration::from_millis(100));
    };
    assert_eq!(offered, (mid, left), "the same manifest, less what arrived");
    p.answer(mid, true);
    p.run_until(|p| {
        p.events(p.bob)[before..].iter().any(|e| {
            matches!(e, Event::Status { transfer, status, .. } if *transfer == mid && status.is_final())
        })
    });
    let second = p.events(p.bob)[before..].to_vec();
    let end = second.iter().find_map(|e| match e {
        Event::Status {
            transfer,
            status,
            reason,
        } if *transfer == mid && status.is_final() => Some((*status, reason.clone())),
        _ => None,
    });
    assert_eq!(end, Some((Status::Finished, None)));
    let came: Vec<TransferId> = second
        .iter()
        .filter_map(|e| match e {
            Event::ManifestFile { transfer, .. } => Some(*transfer),
            _ => None,
        })
        .collect();
    assert_eq!(came.len(), left, "{came:?}");
    assert!(
        came.iter()
            .all(|t| files.contains(t) && !verified.contains(t)),
        "only the files not verified come, under their ids"
    );
    let resumed = second.iter().any(
        |e| matches!(e, Event::Resuming { offset, transfer, .. } if *offset > 0 && came.contains(transfer)),
    );
    assert!(resumed, "a file Bob kept part of resumes from it");
    for (name, size) in [
        ("big/one.bin", 3_000_000),
        ("big/two.bin", 3_000_000),
        ("big/s3.txt", 203),
    ] {
        let got = p.world.received_file(p.bob, name);
        assert_eq!(got.map(|f| f.len), Some(size), "{name}");
    }
    assert!(
        !p.world.made_folder(p.bob, "big (1)"),
        "the tree lands in the folder made the first time"
    );
    assert_eq!(
        p.world.kept_trees(p.bob),
        0,
        "the names are forgotten once every file arrived"
    );
    assert!(
        p.world.violations().is_empty(),
        "{:?}",
        p.world.violations()
    );
}

/// Taken up again for two devices: one verified every file then and is offered nothing
/// (no manifest, no question), the other is offered the whole send under its earlier ids.
#[test]
fn a_device_that_has_every_file_is_not_offered_the_send_again() {
    use ferry_proto::node::{DeviceAgain, SendAgain};
    use std::collections::{BTreeMap, BTreeSet};
    let mut b = World::builder(37);
    let (alice, bob) = (SEEDS.account("alice"), SEEDS.account("bob"));
    let a1 = SEEDS.device(&alice, "a1");
    let (b1, b2) = (SEEDS.device(&bob, "b1"), SEEDS.device(&bob, "b2"));
    let ha = host(&mut b, "a1", &alice, &a1, 10, Features::ours());
    let hb1 = host(&mut b, "b1", &bob, &b1, 20, Features::ours());
    let hb2 = host(&mut b, "b2", &bob, &b2, 21, Features::ours());
    let mut world = b.build().expect("world");
    world.run_for(Duration::from_secs(1));
    let entries = vec![
        folder("trip"),
        file("trip/a.txt", 1_000),
        file("trip/b.txt", 2_000),
    ];
    let ids = |base: u64| vec![TransferId(base + 1), TransferId(base + 2)];
    let again = SendAgain {
        send: TransferId(900),
        files: ids(910),
        devices: BTreeMap::from([
            (
                b1.id(),
                DeviceAgain {
                    manifest: TransferId(920),
                    files: ids(920),
                    verified: ids(920).into_iter().collect(),
                },
            ),
            (
                b2.id(),
                DeviceAgain {
                    manifest: TransferId(930),
                    files: ids(930),
                    verified: BTreeSet::new(),
                },
            ),
        ]),
    };
    let bob_id = bob.id();
    world
        .with_endpoint(ha, |n: &mut Node, now| {
            n.send_files_again(now, bob_id, entries, again)
        })
        .expect("a node")
        .expect("a valid send");
    let offered = |world: &World, host| {
        world
            .events::<Event>(host)
            .into_iter()
            .find_map(|(_, e)| match e {
                Event::IncomingManifest {
                    manifest, files, ..
                } => Some((manifest, files)),
                _ => None,
            })
    };
    for _ in 0..100 {
        if offered(&world, hb2).is_some() {
            break;
        }
        world.run_for(Duration::from_millis(100));
    }
    assert_eq!(
        offered(&world, hb2),
        Some((TransferId(930), 2)),
        "b2: the whole send"
    );
    world
        .with_endpoint(hb2, |n: &mut Node, now| n.accept(now, TransferId(930)))
        .expect("a node")
        .expect("a manifest waiting");
    world.run_for(Duration::from_secs(5));
    assert_eq!(
        offered(&world, hb1),
        None,
        "b1 had every file: not asked again"
    );
    let files: Vec<TransferId> = world
        .events::<Event>(hb2)
        .into_iter()
        .filter_map(|(_, e)| match e {
            Event::ManifestFile { transfer, .. } => Some(transfer),
            _ => None,
        })
        .collect();
    assert_eq!(files, ids(930), "under b2's earlier ids");
    assert!(world.received_file(hb2, "trip/b.txt").is_some());
    let bugs = world
        .with_endpoint(ha, |n: &mut Node, _| n.bugs())
        .expect("a node");
    assert_eq!(bugs.total(), 0, "{bugs:?}");
}

/// A send of an empty folder alone: offered (no file in it), accepted, made, and both sides
/// say finished (an offer with no file was once cancelled before its answer: "every file
/// ended" was true of it).
#[test]
fn an_empty_folder_alone_is_offered_and_made() {
    let mut p = pair(38, Features::ours());
    let sending = p.send(vec![folder("empty")]);
    let mid = p.offered().expect("Bob is offered the folder");
    p.answer(mid, true);
    p.run_until(|p| p.end(p.bob, mid).is_some());
    assert_eq!(p.end(p.bob, mid), Some((Status::Finished, None)));
    assert!(p.world.made_folder(p.bob, "empty"));
    p.run_until(|p| {
        p.offer_of(sending.send)
            .is_some_and(|o| p.end(p.alice, o).is_some())
    });
    let offer = p.offer_of(sending.send).expect("Alice's offer");
    assert_eq!(p.end(p.alice, offer), Some((Status::Finished, None)));
}

/// A folder to a contact with a fast device and a slow one (a 400 ms link): the fast one has
/// every file verified before the slow one answers the offer, and the slow one still gets the
/// whole tree. (A file's group told final when the first device verified it used to be
/// forgotten at once, and a sub-transfer of another device still waiting for its channel was
/// then dropped without a word.)
#[test]
fn a_slow_device_gets_the_whole_folder_after_a_fast_one() {
    let mut b = World::builder(33);
    let (alice, bob) = (SEEDS.account("alice"), SEEDS.account("bob"));
    let a1 = SEEDS.device(&alice, "a1");
    let ha = host(&mut b, "a1", &alice, &a1, 10, Features::ours());
    let fast = host(
        &mut b,
        "b1",
        &bob,
        &SEEDS.device(&bob, "b1"),
        20,
        Features::ours(),
    );
    let slow = host_linked(
        &mut b,
        "b2",
        (&bob, &SEEDS.device(&bob, "b2")),
        21,
        Features::ours(),
        LinkSpec::latency(Duration::from_millis(400)).with_bandwidth(20_000_000),
    );
    let mut world = b.build().expect("world");
    world.run_for(Duration::from_secs(1));
    let mut p = Pair {
        world,
        alice: ha,
        bob: fast,
    };
    p.send(tree());
    let mid = p
        .offered()
        .expect("the fast device is offered the manifest");
    p.answer(mid, true);
    p.run_until(|p| p.end(p.bob, mid).is_some());
    assert_eq!(p.end(p.bob, mid), Some((Status::Finished, None)));
    assert!(
        p.offered_to(slow).is_none(),
        "the slow device is not offered the folder before the fast one has it (else this \
         test tests nothing)"
    );
    p.bob = slow;
    let mid2 = p
        .offered()
        .expect("the slow device is offered the folder all the same");
    p.answer(mid2, true);
    p.run_until(|p| p.end(p.bob, mid2).is_some());
    assert_eq!(p.end(p.bob, mid2), Some((Status::Finished, None)));
    let verified = p
        .events(slow)
        .iter()
        .filter(|e| matches!(e, Event::Verified { .. }))
        .count();
    assert_eq!(verified, SMALL + 3, "every file reached the slow device");
    for (name, size) in [("trip/sub/b.bin", 300_000), ("notes.txt", 500)] {
        for host in [fast, slow] {
            let got = p.world.received_file(host, name);
            assert_eq!(got.map(|f| f.len), Some(size), "{name}");
        }
    }
    assert!(p.world.made_folder(slow, "trip/empty"));
    assert_ne!(mid, mid2);
    assert!(
        p.world.violations().is_empty(),
        "{:?}",
        p.world.violations()
    );
}
