//! The conformance suite: whole-node scenarios written once against a [`Harness`] and run on
//! the simulator (virtual time, simulated files) and on the real runtimes (loopback sockets,
//! temporary files, wall-clock time), through the application API (`Client`).
//!
//! `tests/tests/conformance.rs` instantiates them with [`conformance!`](crate::conformance!)
//! for each harness. The scenarios that need a real server (coturn, `dhtnode`) take the
//! harness's [`Setup`] and run on the runtimes only.
//!
//! Waits are generous deadlines for things that happen within a few round trips; nothing
//! asserts on time.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_driver::{ClientEvent, Offer};
use ferry_proto::tls::{Account, AccountId, Device, DeviceId, Validity, derive_seed};
use ferry_proto::transfer::{Digest, Reason, Status, StreamDigest, TransferId};
use ferry_proto::turn::TurnConfig;

use crate::content;

pub mod ask;
pub mod real;
pub mod records;
pub mod sim;

pub use real::{ClientRuntime, Command, Real, RemoteClient};
pub use sim::Simulated;

/// A device in a harness, by the order it was given in.
pub type Peer = usize;

/// How the nodes reach each other.
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// A TURN server every node uses.
    pub turn: Option<TurnConfig>,
    /// Devices with direct paths disabled ([`Paths::relay_only`](ferry_driver::Paths)):
    /// no host address at all, only their relayed candidate (needs [`turn`](Self::turn)).
    pub relay_only: Vec<Peer>,
    /// OpenDHT through this `dhtnode` proxy instead of the embedded DHT.
    pub opendht: Option<SocketAddr>,
}

/// A file a scenario sends: `size` bytes from [`content`] with `seed`, offered as `name`.
#[derive(Debug, Clone)]
pub struct TestFile {
    /// The name offered.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// The seed of its bytes.
    pub seed: u64,
}

impl TestFile {
    /// The SHA3-512 of its bytes.
    pub fn digest(&self) -> Digest {
        let mut d = StreamDigest::new();
        let mut buf = vec![0; 1 << 20];
        let mut at = 0;
        while at < self.size {
            let n = (self.size - at).min(buf.len() as u64) as usize;
            content::fill(self.seed, at, &mut buf[..n]);
            d.update(at, &buf[..n]);
            at += n as u64;
        }
        d.finish()
    }
}

/// Where the scenarios run.
pub trait Harness: Sized {
    /// Its name, for messages.
    const NAME: &'static str;

    /// Starts one node per device, all with `setup`.
    fn start(devices: &[(&Account, &Device)], setup: &Setup) -> Self;

    /// `peer` sends `file` to every device of `to`; the group id.
    fn send_file(&mut self, peer: Peer, to: AccountId, file: &TestFile) -> TransferId;

    /// `peer` sends `file` again under the ids of an earlier send: `group`, and each
    /// device's sub-transfer id in `devices` ([`Node::send_file_again`](ferry_proto::node::Node::send_file_again)).
    fn send_file_again(
        &mut self,
        peer: Peer,
        to: AccountId,
        file: &TestFile,
        group: TransferId,
        devices: std::collections::BTreeMap<DeviceId, TransferId>,
    ) -> TransferId;

    /// `peer` asks every device of `sender` to send `transfer` again
    /// ([`Node::ask_again`](ferry_proto::node::Node::ask_again)); with `claimed`, the request
    /// names that device instead of `peer`'s ([`Node::ask_again_claiming`](ferry_proto::node::Node::ask_again_claiming)).
    ///
    /// Every device of a harness serves such requests as `ferry listen` does: from a record
    /// of what it sent through the harness (account, source file, the id each device saw),
    /// it resends, or refuses `unknown_transfer`, `not_a_recipient` or `file_changed`.
    fn ask_again(
        &mut self,
        peer: Peer,
        sender: AccountId,
        transfer: TransferId,
        claimed: Option<DeviceId>,
    );

    /// `file`, sent by `peer`, changes where it is: the same name and size, the bytes of
    /// `seed` (a new modification time).
    fn change_file(&mut self, peer: Peer, file: &TestFile, seed: u64);

    /// `peer` accepts an offer.
    fn accept(&mut self, peer: Peer, transfer: TransferId);

    /// `peer` refuses an offer.
    fn refuse(&mut self, peer: Peer, transfer: TransferId);

    /// `peer` cancels a transfer or a group.
    fn cancel(&mut self, peer: Peer, transfer: TransferId);

    /// Waits up to `within` for an event of `peer` that `pick` picks; it is taken, and the
    /// events before it stay for later waits.
    fn wait<T>(
        &mut self,
        peer: Peer,
        within: Duration,
        pick: impl FnMut(&ClientEvent) -> Option<T>,
    ) -> Option<T>;

    /// The length and SHA3-512 of the file `peer` received as `name`.
    fn received(&self, peer: Peer, name: &str) -> Option<(u64, Digest)>;

    /// The harness's clock: virtual on the simulator, real elsewhere.
    fn now(&self) -> Duration;

    /// `peer`'s relayed addresses.
    fn relayed(&mut self, peer: Peer) -> Vec<SocketAddr>;

    /// Shuts `peer` down; returns once its shutdown is complete.
    fn shutdown(&mut self, peer: Peer);
}

/// How long a scenario waits for anything.
pub const WAIT: Duration = Duration::from_secs(60);

/// Instantiates the scenarios for one harness as `#[test]`s of a module `$module`; with
/// `runtime`, the scenarios that need a real network too.
#[macro_export]
macro_rules! conformance {
    ($module:ident, $harness:ty) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance!(@tests $harness;
                a_file_to_one_device,
                two_devices_one_accepts_one_refuses,
                the_sender_cancels,
                the_receiver_cancels,
                the_receiver_refuses,
                a_shutdown_cancels_what_runs,
            );

            /// Alone in a process of its own, so that the peak memory it checks is its own.
            #[test]
            fn a_file_far_larger_than_the_memory_bound() {
                let name = concat!(stringify!($module), "::a_file_far_larger_than_the_memory_bound");
                if $crate::conformance::alone(name) {
                    $crate::conformance::a_file_far_larger_than_the_memory_bound::<$harness>();
                }
            }
        }
    };
    ($module:ident, $harness:ty, runtime) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance!(@tests $harness;
                a_file_to_one_device,
                two_devices_one_accepts_one_refuses,
                the_sender_cancels,
                the_receiver_cancels,
                the_receiver_refuses,
                a_shutdown_cancels_what_runs,
                relayed_through_a_real_coturn_with_direct_paths_disabled,
            );

            /// Alone in a process of its own, so that the peak memory it checks is its own.
            #[test]
            fn a_file_far_larger_than_the_memory_bound() {
                let name = concat!(stringify!($module), "::a_file_far_larger_than_the_memory_bound");
                if $crate::conformance::alone(name) {
                    $crate::conformance::a_file_far_larger_than_the_memory_bound::<$harness>();
                }
            }

            /// In a network namespace of its own, where `dhtnode` may bind every interface.
            #[test]
            fn signalling_through_a_real_dhtnode() {
                let name = concat!(stringify!($module), "::signalling_through_a_real_dhtnode");
                if $crate::dhtnode::in_network_namespace(name) {
                    $crate::conformance::signalling_through_a_real_dhtnode::<$harness>();
                }
            }
        }
    };
    (@tests $harness:ty; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                $crate::conformance::$name::<$harness>();
            }
        )*
    };
}

/// Whether the calling test runs alone in its process now. Otherwise it runs the test named
/// `test` (its exact name in this test binary) again in a process of its own, checks that it
/// passed there, and returns `false`.
pub fn alone(test: &str) -> bool {
    const ALONE: &str = "FERRY_ALONE";
    if std::env::var(ALONE).is_ok_and(|v| v == "1") {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary");
    crate::rerun::run_one(
        std::process::Command::new(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ALONE, "1"),
        test,
    );
    false
}

/// Alice with one device and Bob with `bob_devices`, valid around the real clock (the
/// simulator anchors its nodes there too).
pub struct Cast {
    /// Alice's account.
    pub alice: Account,
    /// Bob's account.
    pub bob: Account,
    /// Alice's device, then Bob's, then Carol's if she has one ([`with_carol`](Self::with_carol)).
    pub devices: Vec<Device>,
    /// Carol's account: a third party, to whom Alice sends nothing.
    pub carol: Account,
    carol_device: bool,
}

impl Cast {
    /// The accounts and devices.
    pub fn new(bob_devices: usize) -> Cast {
        let now = unix_now();
        let validity = Validity::days_from(now.saturating_sub(86_400), 30);
        let account = |name: &str| Account::from_seed(&derive_seed(b"conformance", name), validity);
        let alice = account("alice").expect("account");
        let bob = account("bob").expect("account");
        let device = |a: &Account, name: &str| {
            a.add_device(&derive_seed(b"conformance", name), validity)
                .expect("device")
        };
        let mut devices = vec![device(&alice, "a1")];
        for i in 0..bob_devices {
            devices.push(device(&bob, &format!("b{}", i + 1)));
        }
        let carol = account("carol").expect("account");
        Cast {
            alice,
            bob,
            devices,
            carol,
            carol_device: false,
        }
    }

    /// As [`new`](Self::new), and one device of Carol's last.
    pub fn with_carol(bob_devices: usize) -> Cast {
        let mut cast = Cast::new(bob_devices);
        let validity = Validity::days_from(unix_now().saturating_sub(86_400), 30);
        let c1 = cast
            .carol
            .add_device(&derive_seed(b"conformance", "c1"), validity)
            .expect("device");
        cast.devices.push(c1);
        cast.carol_device = true;
        cast
    }

    /// Starts them on `H`: peer 0 is Alice's device, peers 1.. Bob's.
    pub fn start<H: Harness>(&self, setup: &Setup) -> H {
        let list: Vec<(&Account, &Device)> = self
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let owner = match i {
                    0 => &self.alice,
                    i if self.carol_device && i == self.devices.len() - 1 => &self.carol,
                    _ => &self.bob,
                };
                (owner, d)
            })
            .collect();
        H::start(&list, setup)
    }

    fn id(&self, peer: Peer) -> DeviceId {
        self.devices[peer].id()
    }
}

/// Seconds since 1970 on the real clock.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A test file of `size` bytes from `seed`, offered as `name`.
pub fn file(name: &str, size: u64, seed: u64) -> TestFile {
    TestFile {
        name: name.to_owned(),
        size,
        seed,
    }
}

/// Waits for `peer`'s offer of a file and checks who offers it.
fn offer<H: Harness>(h: &mut H, cast: &Cast, peer: Peer, file: &TestFile) -> Offer {
    let offer = h
        .wait(peer, WAIT, |e| match e {
            ClientEvent::Incoming(o) => Some(o.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{}: peer {peer} is offered nothing", H::NAME));
    assert_eq!(
        (offer.name.as_str(), offer.size),
        (file.name.as_str(), file.size)
    );
    let from = offer.from.expect("a node knows who offers");
    assert_eq!((from.account, from.device), (cast.alice.id(), cast.id(0)));
    offer
}

/// Waits for the end of `transfer` on `peer`.
fn ended<H: Harness>(h: &mut H, peer: Peer, transfer: TransferId) -> (Status, Option<Reason>) {
    h.wait(peer, WAIT, |e| match e {
        ClientEvent::Ended {
            transfer: t,
            status,
            reason,
        } if *t == transfer => Some((*status, reason.clone())),
        _ => None,
    })
    .unwrap_or_else(|| panic!("{}: {transfer:?} does not end on peer {peer}", H::NAME))
}

/// Waits for Alice's sub-transfer of `group` to `device`.
fn reaching<H: Harness>(h: &mut H, group: TransferId, device: DeviceId) -> TransferId {
    h.wait(0, WAIT, |e| match e {
        ClientEvent::Reaching {
            group: g,
            transfer,
            device: d,
        } if *g == group && *d == device => Some(*transfer),
        _ => None,
    })
    .unwrap_or_else(|| panic!("{}: the file never reaches {device}", H::NAME))
}

/// Waits for the final state of the group.
fn group_ended<H: Harness>(h: &mut H, group: TransferId) -> Status {
    h.wait(0, WAIT, |e| match e {
        ClientEvent::Group {
            group: g, status, ..
        } if *g == group && status.is_final() => Some(*status),
        _ => None,
    })
    .unwrap_or_else(|| panic!("{}: the group never ends", H::NAME))
}

/// Alice (peer 0) sends `file` to Bob's one device (peer 1), which accepts; both sides verify
/// it and the stored file is the one sent. Returns the time from the accept to the end of the
/// transfer on Bob's side (the file's bytes, its SHA3-512 and its commit), on the harness's
/// clock.
pub fn deliver<H: Harness>(h: &mut H, cast: &Cast, file: &TestFile) -> Duration {
    let group = h.send_file(0, cast.bob.id(), file);
    let sub = reaching(h, group, cast.id(1));
    let o = offer(h, cast, 1, file);
    let start = h.now();
    h.accept(1, o.transfer);
    let path = h
        .wait(1, WAIT, |e| match e {
            ClientEvent::Verified { transfer, path, .. } if *transfer == o.transfer => {
                Some(path.clone())
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{}: Bob's device never verifies the file", H::NAME));
    if let Some(path) = path {
        assert_eq!(path.file_name(), Some(Path::new(&file.name).as_os_str()));
    }
    assert_eq!(ended(h, 1, o.transfer), (Status::Finished, None));
    let took = h.now().saturating_sub(start);
    assert_eq!(ended(h, 0, sub), (Status::Finished, None));
    assert_eq!(group_ended(h, group), Status::Finished);
    assert_eq!(
        h.received(1, &file.name),
        Some((file.size, file.digest())),
        "{}: the received file is the one sent",
        H::NAME
    );
    took
}

/// One file to one device, accepted: verified on both sides, stored under its name.
pub fn a_file_to_one_device<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let _ = deliver(&mut h, &cast, &file("one.bin", (1 << 20) + 321, 1));
}

/// One file to an account with two devices: the first accepts and gets it, the second
/// refuses and keeps nothing; the group's optimistic view finishes.
pub fn two_devices_one_accepts_one_refuses<H: Harness>() {
    let cast = Cast::new(2);
    let mut h: H = cast.start(&Setup::default());
    let f = file("two.bin", 3 << 20, 2);
    let group = h.send_file(0, cast.bob.id(), &f);
    let to_b1 = reaching(&mut h, group, cast.id(1));
    let to_b2 = reaching(&mut h, group, cast.id(2));
    let o1 = offer(&mut h, &cast, 1, &f);
    let o2 = offer(&mut h, &cast, 2, &f);
    h.refuse(2, o2.transfer);
    h.accept(1, o1.transfer);
    assert_eq!(ended(&mut h, 1, o1.transfer), (Status::Finished, None));
    assert_eq!(
        ended(&mut h, 2, o2.transfer),
        (Status::ClosedByHost, Some(Reason::Refused))
    );
    assert_eq!(ended(&mut h, 0, to_b1), (Status::Finished, None));
    assert_eq!(
        ended(&mut h, 0, to_b2),
        (Status::ClosedByPeer, Some(Reason::Refused))
    );
    assert_eq!(group_ended(&mut h, group), Status::Finished);
    assert_eq!(h.received(1, &f.name), Some((f.size, f.digest())));
    assert_eq!(h.received(2, &f.name), None);
}

/// A file big enough to be in flight when one side cancels it.
fn in_flight() -> TestFile {
    file("cancelled.bin", 64 << 20, 3)
}

/// Starts a transfer, waits until bytes reached the receiver, and lets `who` cancel it.
fn cancel_from<H: Harness>(who: Peer) {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let f = in_flight();
    let group = h.send_file(0, cast.bob.id(), &f);
    let sub = reaching(&mut h, group, cast.id(1));
    let o = offer(&mut h, &cast, 1, &f);
    h.accept(1, o.transfer);
    h.wait(1, WAIT, |e| match e {
        ClientEvent::Progress { transfer, done, .. } if *transfer == o.transfer && *done > 0 => {
            Some(())
        }
        _ => None,
    })
    .unwrap_or_else(|| panic!("{}: no byte arrives", H::NAME));
    let (mine, theirs, other) = if who == 0 {
        (sub, o.transfer, 1)
    } else {
        (o.transfer, sub, 0)
    };
    h.cancel(who, if who == 0 { group } else { mine });
    assert_eq!(
        ended(&mut h, who, mine),
        (Status::ClosedByHost, Some(Reason::Cancelled))
    );
    let (status, reason) = ended(&mut h, other, theirs);
    assert_eq!(status, Status::ClosedByPeer, "{reason:?}");
    assert!(
        matches!(reason, Some(Reason::PeerCancelled(_))),
        "{}: the other side hears a cancel, not a lost connection: {reason:?}",
        H::NAME
    );
    assert_eq!(h.received(1, &f.name), None, "no final file");
}

/// The sender cancels while bytes flow: both sides end, the receiver keeps no final file.
pub fn the_sender_cancels<H: Harness>() {
    cancel_from::<H>(0);
}

/// The receiver cancels while bytes flow: both sides end, the receiver keeps no final file.
pub fn the_receiver_cancels<H: Harness>() {
    cancel_from::<H>(1);
}

/// The only device refuses: the sub-transfer and the group end refused, nothing is stored.
pub fn the_receiver_refuses<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let f = file("refused.bin", 1 << 20, 4);
    let group = h.send_file(0, cast.bob.id(), &f);
    let sub = reaching(&mut h, group, cast.id(1));
    let o = offer(&mut h, &cast, 1, &f);
    h.refuse(1, o.transfer);
    assert_eq!(
        ended(&mut h, 1, o.transfer),
        (Status::ClosedByHost, Some(Reason::Refused))
    );
    assert_eq!(
        ended(&mut h, 0, sub),
        (Status::ClosedByPeer, Some(Reason::Refused))
    );
    assert_eq!(group_ended(&mut h, group), Status::ClosedByPeer);
    assert_eq!(h.received(1, &f.name), None);
}

/// The sender shuts down while bytes flow: the receiver hears a cancel (not a lost
/// connection) and keeps no final file; the shutdown completes.
pub fn a_shutdown_cancels_what_runs<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let f = in_flight();
    let _ = h.send_file(0, cast.bob.id(), &f);
    let o = offer(&mut h, &cast, 1, &f);
    h.accept(1, o.transfer);
    h.wait(1, WAIT, |e| match e {
        ClientEvent::Progress { transfer, done, .. } if *transfer == o.transfer && *done > 0 => {
            Some(())
        }
        _ => None,
    })
    .unwrap_or_else(|| panic!("{}: no byte arrives", H::NAME));
    h.shutdown(0);
    let (status, reason) = ended(&mut h, 1, o.transfer);
    assert_eq!(status, Status::ClosedByPeer, "{reason:?}");
    assert!(
        matches!(reason, Some(Reason::PeerCancelled(_))),
        "{}: the receiver hears a cancel, not a lost connection: {reason:?}",
        H::NAME
    );
    assert_eq!(h.received(1, &f.name), None, "no final file");
}

/// How much a transfer may add to the process's peak memory, whatever the file's size: the
/// windows of both sides, the socket and event queues, the hashers, the allocator's slack.
pub const MEMORY_BOUND: u64 = 64 << 20;

/// A 256 MiB file, four times [`MEMORY_BOUND`], arrives whole while the process's peak
/// resident memory (Linux: `VmHWM`, reset first) grows by less than the bound. Without
/// `/proc`, only the transfer is checked.
pub fn a_file_far_larger_than_the_memory_bound<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let f = file("large.bin", 256 << 20, 5);
    let before = memory();
    let measured = reset_peak_memory();
    let _ = deliver(&mut h, &cast, &f);
    let after = memory();
    if !measured || before.is_none() || after.is_none() {
        crate::rerun::skip(
            "the peak memory cannot be measured here (/proc/self/clear_refs, status)",
        );
    }
    if let (true, Some((rss, _)), Some((_, peak))) = (measured, before, after) {
        let growth = peak.saturating_sub(rss);
        eprintln!(
            "{}: {} MiB delivered; peak resident memory grew by {} MiB (bound {} MiB)",
            H::NAME,
            f.size >> 20,
            growth >> 20,
            MEMORY_BOUND >> 20
        );
        assert!(
            growth < MEMORY_BOUND,
            "{}: peak memory grew by {} MiB for a {} MiB file",
            H::NAME,
            growth >> 20,
            f.size >> 20
        );
    }
}

/// Resident and peak resident memory of this process, in bytes (Linux).
pub fn memory() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Resets the peak the kernel keeps (Linux: `5` in `clear_refs`).
pub fn reset_peak_memory() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Bob's device has direct paths disabled: no host address, no listener, only its relayed
/// address on a real coturn, so the file can reach it only through the relay. Both ends say
/// the selected pair is relayed; Bob's end is his relayed candidate, a data connection of
/// coturn's, and he has no other socket than those to coturn (he listens nowhere and
/// connects from no address of his), so coturn carried the bytes. (It used to go over a
/// direct host connection: a relay-only node still listened and connected from its host
/// address.) Alice keeps her direct paths and has a relay too, so two relayed pairs can
/// win: her active host candidate connecting to Bob's relayed one (`relay`), or Bob's
/// relayed active candidate connecting through his allocation to Alice's relayed address
/// (`relay-relay`, RFC 6062 Connect); which one is valid first depends on timing (the
/// clean CI run under load nominated the second), and either is what the test asks.
pub fn relayed_through_a_real_coturn_with_direct_paths_disabled<H: Harness>() {
    use crate::coturn::{Coturn, PASSWORD, USER};
    let Some(coturn) = Coturn::start(&[]) else {
        return;
    };
    let setup = Setup {
        turn: Some(TurnConfig::new(coturn.v4(), USER, PASSWORD)),
        relay_only: vec![1],
        opendht: None,
    };
    let cast = Cast::new(1);
    let mut h: H = cast.start(&setup);
    let _ = deliver(&mut h, &cast, &file("relayed.bin", 2 << 20, 6));
    for peer in [0, 1] {
        let path = h.wait(peer, WAIT, |e| match e {
            ClientEvent::Connected { path, .. } => Some(*path),
            _ => None,
        });
        let path = path.unwrap_or_else(|| panic!("{}: device {peer} connected", H::NAME));
        assert!(
            matches!(path.name(), "relay" | "relay-relay"),
            "{}: device {peer}'s selected pair is relayed: {path:?}",
            H::NAME
        );
        if peer == 1 {
            assert_eq!(
                path.local,
                ferry_proto::ice::CandidateType::Relayed,
                "{}: bob's end is his relayed candidate",
                H::NAME
            );
        }
    }
    // A clean shutdown deletes the allocation: coturn stops listening on the relayed port.
    let relayed = h.relayed(1);
    assert_eq!(
        relayed.len(),
        1,
        "{}: bob's device has its relayed address",
        H::NAME
    );
    assert!(
        crate::realnet::is_listening(relayed[0]),
        "coturn relays at {}",
        relayed[0]
    );
    h.shutdown(1);
    // Bounds a failure only: a starved machine may take seconds to close a socket.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while crate::realnet::is_listening(relayed[0]) {
        assert!(
            std::time::Instant::now() < deadline,
            "{}: the allocation at {} outlived the shutdown",
            H::NAME,
            relayed[0]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The nodes find each other through a real OpenDHT network (two `dhtnode`s, the first
/// with its HTTP proxy); call it inside a network namespace
/// ([`in_network_namespace`](crate::dhtnode::in_network_namespace)).
pub fn signalling_through_a_real_dhtnode<H: Harness>() {
    let nodes = crate::dhtnode::DhtNodes::start();
    let setup = Setup {
        opendht: Some(nodes.proxy),
        ..Setup::default()
    };
    let cast = Cast::new(1);
    let mut h: H = cast.start(&setup);
    let _ = deliver(&mut h, &cast, &file("signalled.bin", 1 << 20, 7));
    drop(h);
}

/// Where a real harness keeps one device's files.
#[derive(Debug)]
pub struct Folders {
    /// The receive folder.
    pub inbox: PathBuf,
    /// Where the files it sends are written first.
    pub outbox: PathBuf,
    _dir: tempfile::TempDir,
}

impl Folders {
    /// Two fresh folders.
    pub fn new() -> Folders {
        let dir = tempfile::tempdir().expect("temp dir");
        let (inbox, outbox) = (dir.path().join("in"), dir.path().join("out"));
        std::fs::create_dir_all(&inbox).expect("inbox");
        std::fs::create_dir_all(&outbox).expect("outbox");
        Folders {
            inbox,
            outbox,
            _dir: dir,
        }
    }

    /// Writes `file` into the outbox (in pieces: never the whole file in memory).
    pub fn write(&self, file: &TestFile) -> PathBuf {
        // A folder per seed: two files of one name are two sources, neither written over
        // the other while it is read.
        let folder = self.outbox.join(format!("seed-{}", file.seed));
        std::fs::create_dir_all(&folder).expect("outbox folder");
        let path = folder.join(&file.name);
        Folders::fill(&path, file);
        path
    }

    /// Writes the bytes of `seed` over `file` where [`write`](Self::write) put it; its
    /// modification time moves on by a second at least (a coarse clock may not show it).
    pub fn overwrite(&self, file: &TestFile, seed: u64) {
        let path = self
            .outbox
            .join(format!("seed-{}", file.seed))
            .join(&file.name);
        let before = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .expect("mtime");
        Folders::fill(
            &path,
            &TestFile {
                seed,
                ..file.clone()
            },
        );
        std::fs::File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(before + Duration::from_secs(1)))
            .expect("set mtime");
    }

    fn fill(path: &Path, file: &TestFile) {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
        let mut buf = vec![0; 1 << 20];
        let mut at = 0;
        while at < file.size {
            let n = (file.size - at).min(buf.len() as u64) as usize;
            content::fill(file.seed, at, &mut buf[..n]);
            out.write_all(&buf[..n]).expect("write");
            at += n as u64;
        }
        out.flush().expect("flush");
    }

    /// Length and SHA3-512 of `name` in the inbox.
    pub fn received(&self, name: &str) -> Option<(u64, Digest)> {
        use std::io::Read as _;
        let mut f = std::fs::File::open(self.inbox.join(name)).ok()?;
        let mut d = StreamDigest::new();
        let mut buf = vec![0; 1 << 20];
        let mut at = 0u64;
        loop {
            let n = f.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            d.update(at, &buf[..n]);
            at += n as u64;
        }
        Some((at, d.finish()))
    }
}

impl Default for Folders {
    fn default() -> Folders {
        Folders::new()
    }
}
