//! The driver's port-mapping service against Debian's miniupnpd on a real router (the
//! kernel-NAT lab, `ferry_tests::netlab`): one test per protocol. Each maps a real listening
//! port from the host behind the router, checks that the router forwards it (miniupnpd's
//! DNAT rule in its nftables table), waits for a renewal, deletes it and checks that the
//! rule is gone. Where namespaces or miniupnpd are missing: a skip line (a failure under
//! `FERRY_REQUIRE_INTEROP=1`).

#![cfg(target_os = "linux")]

use std::net::{SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::AsFd as _;
use std::sync::mpsc;
use std::time::Duration;

use ferry_driver::{PortMapConfig, PortMapper};
use ferry_proto::io::{Input, ListenerId};
use ferry_proto::portmap::{MIN_LEASE, MappingProtocol};
use ferry_tests::netlab::{Lab, MiniUpnpd, Nat, Side};

/// Bounds a failure on a starved machine; never times a success.
const LIMIT: Duration = Duration::from_secs(120);

/// Moves this thread (and the threads it starts) into namespace `ns`.
fn enter(ns: &str) {
    let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("the lab's namespace");
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )
    .expect("setns into the lab's host");
}

fn next(rx: &mpsc::Receiver<Input>) -> Input {
    rx.recv_timeout(LIMIT).expect("the service reports in time")
}

fn maps_renews_and_deletes(tag: &str, protocol: MappingProtocol) {
    let Some(lab) = Lab::start(tag, Nat::Cone, Nat::Upnp) else {
        return;
    };
    if !MiniUpnpd::installed() {
        return;
    }
    let upnpd = MiniUpnpd::start(&lab, Side::B);
    enter(&lab.host(Side::B));
    let host = SocketAddrV4::new(lab.host_addr(Side::B), 0);
    let listening = TcpListener::bind(host).expect("a listening port behind the router");
    let SocketAddr::V4(local) = listening.local_addr().expect("its address") else {
        unreachable!("bound on IPv4")
    };
    let (tx, rx) = mpsc::channel();
    let config = PortMapConfig {
        protocols: vec![protocol],
        // The shortest lease we take: renewed at half of it, within the test.
        lease: MIN_LEASE,
        gateway: None,
    };
    let mapper = PortMapper::spawn(config, move |input| {
        let _ = tx.send(input);
    })
    .expect("the service starts");
    let listener = ListenerId(1);
    mapper.map(listener, SocketAddr::V4(local));

    let first = match next(&rx) {
        Input::PortMapped {
            listener: l,
            mapping,
        } if l == listener => mapping,
        other => panic!(
            "{protocol}: no mapping: {other:?}\nminiupnpd:\n{}",
            upnpd.log()
        ),
    };
    assert_eq!(first.protocol, protocol);
    assert_eq!(first.internal, SocketAddr::V4(local));
    assert_eq!(
        first.external.ip(),
        std::net::IpAddr::from(lab.router_public(Side::B))
    );
    assert!(
        first.lease >= MIN_LEASE && first.lease <= MIN_LEASE * 2,
        "{first:?}"
    );
    assert!(
        upnpd.forwards(first.external.port(), local),
        "{protocol}: miniupnpd forwards {} to {local}:\n{}",
        first.external,
        upnpd.log()
    );

    // The renewal, at half the lease, keeps the same external address.
    let renewed = match next(&rx) {
        Input::PortMapped {
            listener: l,
            mapping,
        } if l == listener => mapping,
        other => panic!(
            "{protocol}: no renewal: {other:?}\nminiupnpd:\n{}",
            upnpd.log()
        ),
    };
    assert_eq!(
        renewed.external, first.external,
        "{protocol}: renewed in place"
    );
    assert!(upnpd.forwards(renewed.external.port(), local));

    mapper.unmap_all();
    assert_eq!(next(&rx), Input::PortsUnmapped);
    assert!(
        !upnpd.forwards(first.external.port(), local),
        "{protocol}: the mapping is gone from miniupnpd:\n{}",
        upnpd.log()
    );
    drop(mapper);
    drop(listening);
}

#[test]
fn pcp_maps_renews_and_deletes() {
    maps_renews_and_deletes("mp", MappingProtocol::Pcp);
}

#[test]
fn nat_pmp_maps_renews_and_deletes() {
    maps_renews_and_deletes("mn", MappingProtocol::NatPmp);
}

#[test]
fn upnp_igd_maps_renews_and_deletes() {
    maps_renews_and_deletes("mu", MappingProtocol::UpnpIgd);
}
