//! Small worlds the tests share.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use ferry_proto::io::ListenerId;
use ferry_sim::{
    HostId, HostSpec, LinkSpec, Probe, RouterId, RouterKind, RouterSpec, Step, WorldBuilder,
};

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().expect("a test address")
}

pub fn listen(port: u16) -> Step {
    Step::Listen {
        listener: ListenerId(u32::from(port)),
        local: SocketAddr::new([0, 0, 0, 0].into(), port),
    }
}

/// A network behind a router of `kind` at `ext`, with its LAN prefix `lan` (e.g. `[192, 168, 1]`).
pub fn site(
    b: &mut WorldBuilder,
    name: &str,
    ext: [u8; 4],
    kind: RouterKind,
) -> (ferry_sim::NetworkId, RouterId) {
    let internet = b.internet();
    let net = b.network(name);
    let r = b.router(
        RouterSpec::new(name, internet, net)
            .v4(ext)
            .kind(kind)
            .link(LinkSpec::latency(ms(10))),
    );
    (net, r)
}

/// A public host at `ip` running `probe`.
pub fn public(b: &mut WorldBuilder, name: &str, ip: [u8; 4], probe: Probe) -> HostId {
    let internet = b.internet();
    b.host(
        HostSpec::new(name, internet)
            .v4(ip)
            .link(LinkSpec::latency(ms(10))),
        probe,
    )
}

pub fn probe(world: &ferry_sim::World, host: HostId) -> &Probe {
    world.endpoint(host).expect("a probe")
}

pub fn no_violations(world: &ferry_sim::World) {
    let v: Vec<String> = world.violations().iter().map(|v| v.to_string()).collect();
    assert!(v.is_empty(), "violations: {v:#?}\n{}", world.trace());
}
