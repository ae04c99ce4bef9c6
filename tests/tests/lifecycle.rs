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
