//! A small world, printed as a trace: two homes behind NATs, a public server, a DHT, a
//! simultaneous open, an echo, a fault.
//!
//! ```text
//! cargo run -p ferry-sim --example tour -- [SEED]
//! ```
#![allow(clippy::print_stdout)]

use std::time::Duration;

use bytes::Bytes;
use ferry_proto::io::{ConnId, DhtKey, ListenerId};
use ferry_sim::{
    DhtSpec, Fault, HostSpec, LinkOf, LinkSpec, Nat, Probe, RouterSpec, Step, World, content,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let world = tour(seed)?;
    print!("{}", world.trace());
    println!("stats: {:?}", world.stats());
    Ok(())
}

/// Builds and runs the tour for `seed`.
fn tour(seed: u64) -> Result<World, Box<dyn std::error::Error>> {
    let ms = Duration::from_millis;
    let mut b = World::builder(seed);
    let epoch = b.epoch();
    let internet = b.internet();
    let home_a = b.network("home-a");
    let home_b = b.network("home-b");
    b.router(
        RouterSpec::new("nat-a", internet, home_a)
            .v4([203, 0, 113, 1])
            .nat(Nat::port_restricted_cone())
            .link(LinkSpec::latency(ms(15)).with_jitter(ms(3))),
    );
    b.router(
        RouterSpec::new("nat-b", internet, home_b)
            .v4([203, 0, 113, 2])
            .nat(Nat::full_cone())
            .link(LinkSpec::latency(ms(25)).with_jitter(ms(3))),
    );
    b.dht(DhtSpec {
        duplicate: 0.3,
        ..DhtSpec::default()
    });
    let key = DhtKey([1; 20]);
    let server = Probe::new(epoch)
        .at(
            ms(0),
            Step::Listen {
                listener: ListenerId(1),
                local: "0.0.0.0:443".parse()?,
            },
        )
        .echo();
    b.host(
        HostSpec::new("server", internet).v4([198, 51, 100, 7]),
        server,
    );
    let alice = Probe::new(epoch)
        .at(ms(0), Step::DhtListen(key))
        .at(ms(10), Step::connect(1, "198.51.100.7:443".parse()?))
        .at(
            ms(200),
            Step::Send {
                conn: ConnId::Connect(1),
                data: Bytes::from(content::range(seed, 0, 200_000)),
            },
        )
        .at(ms(200), Step::HalfClose(ConnId::Connect(1)))
        .at(
            ms(1000),
            Step::connect_from(2, 5000, "203.0.113.2:6000".parse()?),
        )
        .at(
            ms(1500),
            Step::Send {
                conn: ConnId::Connect(2),
                data: "hello bob".into(),
            },
        );
    let a = b.host(
        HostSpec::new("alice", home_a)
            .v4([192, 168, 1, 2])
            .link(LinkSpec::latency(ms(5)).with_bandwidth(2_000_000)),
        alice,
    );
    let bob = Probe::new(epoch)
        .at(
            ms(300),
            Step::DhtPut {
                key,
                value: "bob is at 203.0.113.2:6000".into(),
            },
        )
        .at(
            ms(1000),
            Step::connect_from(1, 6000, "203.0.113.1:5000".parse()?),
        )
        .at(
            ms(1500),
            Step::Send {
                conn: ConnId::Connect(1),
                data: "hello alice".into(),
            },
        )
        .at(ms(2500), Step::Close(ConnId::Connect(1)));
    b.host(HostSpec::new("bob", home_b).v4([192, 168, 1, 2]), bob);
    b.fault(ms(400), Fault::LinkDown(LinkOf::Host(a)))
        .fault(ms(700), Fault::LinkUp(LinkOf::Host(a)));
    let mut world = b.trace().build()?;
    world.run_for(Duration::from_secs(4));
    Ok(world)
}
