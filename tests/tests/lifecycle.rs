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

    // SECURITY: row 44
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
        // SECURITY: row 45
        runtime.block_on(scenario::<ferry_tokio::Tokio>());
        drop(runtime);
        smol::block_on(scenario::<ferry_smol::Smol>());
    }
}
