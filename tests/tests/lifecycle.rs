//! A listener that runs for a long time, on the simulator: every connection ends cleanly on
//! both sides, whoever opened it and however it ended.
//!
//! The world's [`close_wait`](ferry_sim::World::close_wait) lists every connection whose peer
//! has ended it while its own endpoint neither closed nor half-closed it: on real sockets, one
//! descriptor in CLOSE-WAIT for ever. Each scenario here ends with that list empty.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::ConnId;
use ferry_proto::node::{Node, NodeConfig};
use ferry_proto::tls::{Account, Device, UnixAnchor, Validity, derive_seed};
use ferry_sim::{HostSpec, LinkSpec, Probe, Step, World};

const T0: u64 = 1_795_651_200;

fn bob(epoch: Instant, ip: IpAddr) -> Node {
    let validity = Validity::days_from(T0 - 86_400, 365);
    let account = Account::from_seed(&derive_seed(b"lifecycle", "bob"), validity).expect("account");
    let device: Device = account
        .add_device(&derive_seed(b"lifecycle-device", "bob"), validity)
        .expect("device");
    let anchor = UnixAnchor {
        instant: epoch,
        unix: Duration::from_secs(T0),
    };
    let announcement = account.announce(&device).expect("announce");
    Node::new(
        epoch,
        NodeConfig::new(device, announcement, vec![ip], 7, anchor),
    )
}

/// A stranger connects to the listening port and goes away, many times and in every way a
/// peer can: a FIN at once, a FIN after some bytes that are not STUN, a FIN after a valid
/// RFC 4571 prefix with nothing behind it, and a reset. Bob must close his side of each.
/// (Before, a FIN on a connection that had not sent a valid check was forgotten without a
/// close: one descriptor per cycle until the process hit its limit.)
#[test]
fn a_strangers_connect_and_close_cycles_leave_nothing_open() {
    let mut b = World::builder(13);
    let epoch = b.epoch();
    let internet = b.internet();
    let link = LinkSpec::latency(Duration::from_millis(5));
    let hb = b.host(
        HostSpec::new("b1", internet)
            .v4([198, 51, 100, 11])
            .link(link),
        bob(epoch, "198.51.100.11".parse().expect("ip")),
    );
    let hm = b.host(
        HostSpec::new("mallory", internet)
            .v4([198, 51, 100, 66])
            .link(link),
        Probe::new(epoch),
    );
    let mut world = b.build().expect("world");
    world.run_for(Duration::from_secs(1));
    let port: SocketAddr = world
        .endpoint::<Node>(hb)
        .expect("bob")
        .listening()
        .first()
        .copied()
        .expect("bob listens");

    const CYCLES: u32 = 200;
    for n in 0..CYCLES {
        let conn = ConnId::Connect(n);
        world
            .with_endpoint(hm, |p: &mut Probe, _| p.act(Step::connect(n, port)))
            .expect("mallory");
        world.run_for(Duration::from_millis(20));
        let junk: &'static [u8] = match n % 4 {
            0 => b"",
            1 => b"GET / HTTP/1.1\r\n\r\n",
            2 => b"\x00\x40",
            _ => b"",
        };
        world
            .with_endpoint(hm, |p: &mut Probe, _| {
                if !junk.is_empty() {
                    p.act(Step::Send {
                        conn,
                        data: Bytes::from_static(junk),
                    });
                }
                p.act(if n % 4 == 3 {
                    Step::Reset(conn)
                } else {
                    Step::Close(conn)
                });
            })
            .expect("mallory");
        world.run_for(Duration::from_millis(20));
    }
    world.run_for(Duration::from_secs(1));

    let left = world.close_wait();
    assert!(left.is_empty(), "left in CLOSE-WAIT: {left:#?}");
    assert_eq!(
        world.live_connections(),
        0,
        "every one of the {CYCLES} connections is freed on both sides"
    );
    let problems = world
        .endpoint::<Probe>(hm)
        .expect("mallory")
        .problems()
        .to_vec();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(world.violations().is_empty(), "{:?}", world.violations());
    eprintln!("{CYCLES} connect/close cycles from a stranger: 0 connections left");
}

/// Identities, public hosts and calls for the scenarios with whole transfers.
mod peers {
    use std::net::IpAddr;
    use std::time::Duration;

    use ferry_proto::io::Event;
    use ferry_proto::node::{Node, NodeConfig};
    use ferry_proto::tls::{Account, Device, UnixAnchor, Validity, derive_seed};
    use ferry_proto::transfer::{Status, TransferId};
    use ferry_sim::{HostId, HostSpec, LinkSpec, World, WorldBuilder};

    use super::T0;

    pub(crate) fn account(name: &str) -> Account {
        let validity = Validity::days_from(T0 - 86_400, 365);
        Account::from_seed(&derive_seed(b"lifecycle", name), validity).expect("account")
    }

    pub(crate) fn device(account: &Account, name: &str) -> Device {
        let validity = Validity::days_from(T0 - 86_400, 365);
        account
            .add_device(&derive_seed(b"lifecycle-device", name), validity)
            .expect("device")
    }

    /// A public host at 198.51.100.`last` running `device`'s node.
    pub(crate) fn host(
        b: &mut WorldBuilder,
        name: &str,
        account: &Account,
        device: &Device,
        last: u8,
    ) -> HostId {
        let (epoch, internet) = (b.epoch(), b.internet());
        let ip = IpAddr::from([198, 51, 100, last]);
        let anchor = UnixAnchor {
            instant: epoch,
            unix: Duration::from_secs(T0),
        };
        let announcement = account.announce(device).expect("announce");
        let config = NodeConfig::new(
            device.clone(),
            announcement,
            vec![ip],
            u64::from(last),
            anchor,
        );
        b.host(
            HostSpec::new(name, internet)
                .v4([198, 51, 100, last])
                .link(LinkSpec::latency(Duration::from_millis(10)).with_bandwidth(20_000_000)),
            Node::new(epoch, config),
        )
    }

    pub(crate) fn send(
        world: &mut World,
        from: HostId,
        to: &Account,
        size: u64,
        name: &str,
    ) -> TransferId {
        world
            .with_endpoint(from, |n: &mut Node, now| {
                n.send_file(now, to.id(), format!("seed:{size}:{size}"), name.to_owned())
            })
            .expect("a node")
    }

    /// Accepts every offer `host` has not answered yet.
    pub(crate) fn accept_all(world: &mut World, host: HostId, answered: &mut Vec<TransferId>) {
        let offers: Vec<TransferId> = world
            .events::<Event>(host)
            .into_iter()
            .filter_map(|(_, e)| match e {
                Event::IncomingTransfer { transfer, .. } => Some(transfer),
                _ => None,
            })
            .collect();
        for t in offers {
            if !answered.contains(&t) {
                answered.push(t);
                world
                    .with_endpoint(host, |n: &mut Node, now| n.accept(now, t))
                    .expect("a node")
                    .expect("accept");
            }
        }
    }

    /// The final status of a group on its sender, if it has one.
    pub(crate) fn group_end(world: &World, host: HostId, group: TransferId) -> Option<Status> {
        world
            .events::<Event>(host)
            .into_iter()
            .rev()
            .find_map(|(_, e)| match e {
                Event::Aggregate {
                    group: g, status, ..
                } if g == group && status.is_final() => Some(status),
                _ => None,
            })
    }
}

/// Two processes of one home (one device, two nodes) send to one listener at once: the
/// listener answers both requests, and both files are verified. Before, the second request
/// of a device the listener was connected to was recorded as seen, then ignored (exit 5).
#[test]
fn two_senders_of_one_device_both_get_through() {
    let mut b = World::builder(21);
    let (alice, bob) = (peers::account("alice"), peers::account("bob"));
    let (a1, b1) = (peers::device(&alice, "a1"), peers::device(&bob, "b1"));
    let first = peers::host(&mut b, "a1", &alice, &a1, 10);
    let second = peers::host(&mut b, "a1-again", &alice, &a1, 11);
    let hb = peers::host(&mut b, "b1", &bob, &b1, 20);
    let mut world = b.build().expect("world");
    world.run_for(Duration::from_secs(2));
    let g1 = peers::send(&mut world, first, &bob, 200_000, "one.bin");
    // The second process starts a moment later, when the first is connected.
    let mut answered = Vec::new();
    for _ in 0..20 {
        world.run_for(Duration::from_millis(100));
        peers::accept_all(&mut world, hb, &mut answered);
    }
    let sent_at = world.now();
    let g2 = peers::send(&mut world, second, &bob, 300_000, "two.bin");
    for _ in 0..300 {
        world.run_for(Duration::from_millis(100));
        peers::accept_all(&mut world, hb, &mut answered);
        if peers::group_end(&world, first, g1).is_some()
            && peers::group_end(&world, second, g2).is_some()
        {
            break;
        }
    }
    use ferry_proto::transfer::Status;
    assert_eq!(
        peers::group_end(&world, first, g1),
        Some(Status::Finished),
        "the first process"
    );
    assert_eq!(
        peers::group_end(&world, second, g2),
        Some(Status::Finished),
        "the second process"
    );
    eprintln!(
        "second process of one device: verified {:?} after its send",
        world.now() - sent_at
    );
    world.run_for(Duration::from_secs(5));
    let left = world.close_wait();
    assert!(left.is_empty(), "left in CLOSE-WAIT: {left:#?}");
    assert!(world.violations().is_empty(), "{:?}", world.violations());
}

/// A sender that vanishes mid-transfer (its link goes down: a killed laptop, a dropped
/// network) and sends again at once from a new process: the new request is answered at once
/// and its transfer verified, and the old connection, whose peer no longer answers, is
/// closed after a liveness check rather than after the 30-s consent timeout.
#[test]
fn a_sender_that_vanished_and_sends_again_gets_through_at_once() {
    use ferry_proto::transfer::Status;
    use ferry_sim::{Fault, LinkOf};
    let mut b = World::builder(22);
    let (alice, bob) = (peers::account("alice"), peers::account("bob"));
    let (a1, b1) = (peers::device(&alice, "a1"), peers::device(&bob, "b1"));
    let before = peers::host(&mut b, "a1", &alice, &a1, 10);
    let after = peers::host(&mut b, "a1-restarted", &alice, &a1, 11);
    let hb = peers::host(&mut b, "b1", &bob, &b1, 20);
    let mut world = b.build().expect("world");
    world.run_for(Duration::from_secs(2));
    let mut answered = Vec::new();
    let g1 = peers::send(&mut world, before, &bob, 50_000_000, "big.bin");
    for _ in 0..30 {
        world.run_for(Duration::from_millis(100));
        peers::accept_all(&mut world, hb, &mut answered);
    }
    assert_eq!(
        world.endpoint::<Node>(hb).expect("bob").ready_connections(),
        1,
        "mid-transfer"
    );
    // The first process vanishes without a word: its host's link goes down for good.
    let now = world.now();
    world.schedule(now, Fault::LinkDown(LinkOf::Host(before)));
    world.run_for(Duration::from_millis(100));
    let sent_at = world.now();
    let g2 = peers::send(&mut world, after, &bob, 200_000, "small.bin");
    while peers::group_end(&world, after, g2).is_none()
        && world.now() - sent_at < Duration::from_secs(60)
    {
        world.run_for(Duration::from_millis(100));
        peers::accept_all(&mut world, hb, &mut answered);
    }
    let took = world.now() - sent_at;
    assert_eq!(
        peers::group_end(&world, after, g2),
        Some(Status::Finished),
        "the new send"
    );
    eprintln!("after a vanished sender, a new send verified in {took:?} (virtual)");
    assert!(
        took < Duration::from_secs(10),
        "answered at once, not after the old connection's 30-s consent timeout ({took:?})"
    );
    // The old connection went after its liveness check; only the new one is left.
    world.run_for(Duration::from_secs(5));
    let bob_node = world.endpoint::<Node>(hb).expect("bob");
    assert_eq!(
        bob_node.ready_connections(),
        1,
        "the vanished sender's connection is gone"
    );
    let _ = g1;
}

/// The same on real sockets, on each runtime: a listening node survives a storm of
/// connect-and-close cycles from a stranger with its descriptors back where they were, then
/// takes a real transfer, after which (the sender gone) they are back again.
mod on_real_sockets {
    use std::io::Write as _;
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use ferry_driver::{Client, ClientConfig, ClientEvent, Config, DhtStore, Paths, Runtime};
    use ferry_proto::tls::{Account, Device, Validity, derive_seed};

    /// Connect-and-close cycles of the storm (each also leaves a descriptor behind in the
    /// listener until it closes its side, so it must exceed what a leak could hide).
    const CYCLES: usize = 3_000;

    fn identity(name: &str) -> (Account, Device) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let validity = Validity::days_from(now - 86_400, 30);
        let account =
            Account::from_seed(&derive_seed(b"lifecycle-real", name), validity).expect("account");
        let device = account
            .add_device(&derive_seed(b"lifecycle-real-device", name), validity)
            .expect("device");
        (account, device)
    }

    fn client<R: Runtime>(
        name: &str,
        dht: &DhtStore,
        folder: &std::path::Path,
    ) -> (Client<R>, Account) {
        let (account, device) = identity(name);
        let announcement = account.announce(&device).expect("announce");
        let config = ClientConfig::new(device, announcement, Config::new(folder).with_dht(dht))
            .with_paths(Paths::loopback_only());
        (Client::<R>::start(config).expect("a client"), account)
    }

    /// This process's open descriptors.
    fn descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
    }

    /// Waits (generously: a loaded machine is slow, and nothing here is a timing claim) until
    /// the descriptor count is back to `baseline`; returns the last count seen.
    fn settles_to(baseline: usize) -> usize {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let now = descriptors();
            if now <= baseline || Instant::now() > until {
                return now;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    async fn scenario<R: Runtime>() {
        let dht = DhtStore::new();
        let (fa, fb) = (
            tempfile::tempdir().expect("dir"),
            tempfile::tempdir().expect("dir"),
        );
        let (mut bob, bob_account) = client::<R>("bob", &dht, fb.path());
        let port = *bob
            .listening()
            .await
            .expect("bob runs")
            .first()
            .expect("bob listens");
        let baseline = descriptors();

        for n in 0..CYCLES {
            let mut s = TcpStream::connect(port).expect("connect to the listener");
            if n % 3 == 1 {
                let _ = s.write_all(b"GET / HTTP/1.1\r\n\r\n");
            }
            drop(s);
        }
        let after_storm = settles_to(baseline);
        eprintln!(
            "{CYCLES} connect/close cycles: descriptors {baseline} before, {after_storm} after"
        );
        assert_eq!(
            after_storm, baseline,
            "every stranger's connection is closed on our side"
        );

        let (mut alice, _) = client::<R>("alice", &dht, fa.path());
        let source = fa.path().join("photo.bin");
        std::fs::write(&source, vec![7u8; 1 << 20]).expect("source");
        let group = alice
            .send_file(bob_account.id(), &source)
            .await
            .expect("send");
        loop {
            match bob.next_event().await.expect("bob runs") {
                ClientEvent::Incoming(offer) => bob.accept(offer.transfer).await.expect("accept"),
                ClientEvent::Verified { .. } => break,
                _ => {}
            }
        }
        loop {
            match alice.next_event().await.expect("alice runs") {
                ClientEvent::Group {
                    group: g, status, ..
                } if g == group && status.is_final() => {
                    assert_eq!(status, ferry_proto::transfer::Status::Finished);
                    break;
                }
                _ => {}
            }
        }
        alice.shutdown().await;
        // Alice's own descriptors are gone with her; bob closes his side of her connection.
        let after_transfer = settles_to(baseline);
        eprintln!("after a transfer and the sender's exit: descriptors {after_transfer}");
        assert_eq!(
            after_transfer, baseline,
            "the listener closed the finished connection"
        );
        bob.shutdown().await;
    }

    /// One test for both runtimes, one after the other: descriptors are counted for the whole
    /// process, so nothing else of this binary may open any meanwhile.
    #[test]
    fn a_listener_survives_a_connect_close_storm_on_both_runtimes() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("tokio");
        runtime.block_on(scenario::<ferry_tokio::Tokio>());
        drop(runtime);
        smol::block_on(scenario::<ferry_smol::Smol>());
    }
}
