//! Two ICE agents over a virtual TCP network: the trace of each run reads like the message
//! flows of RFC 8445 §8 and RFC 6544, and each run also asserts its outcome.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_proto::ice::{Agent, Candidate, CandidateType, Config, Role, TcpType};

use ferry_tests::ice_net::{Net, Route};

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn host(ip: &str, port: u16) -> Vec<Candidate> {
    let ip = ip.parse().expect("ip");
    vec![
        Candidate::tcp(
            CandidateType::Host,
            TcpType::Passive,
            SocketAddr::new(ip, port),
            65535,
        ),
        Candidate::tcp(
            CandidateType::Host,
            TcpType::Active,
            SocketAddr::new(ip, 9),
            65535,
        ),
    ]
}

/// Alice requests (controlled), Bob answers (controlling), as in Jami.
fn net(alice: Vec<Candidate>, bob: Vec<Candidate>, alice_role: Role, bob_role: Role) -> Net {
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    net.add(
        "alice",
        Agent::new(t0, Config::default(), alice_role, alice, 1),
    );
    net.add("bob", Agent::new(t0, Config::default(), bob_role, bob, 2));
    net
}

fn assert_selected_the_same_connection(net: &Net) {
    let (ca, _, _) = net.selected(0).expect("alice selected");
    let (cb, _, _) = net.selected(1).expect("bob selected");
    assert_eq!(net.peer_of(0, ca), Some((1, cb)));
}

#[test]
fn full_check_exchange_over_host_candidates() {
    let mut net = net(
        host("10.0.0.1", 5000),
        host("10.0.0.2", 6000),
        Role::Controlled,
        Role::Controlling,
    );
    net.exchange(0, 1);
    net.run_for(Duration::from_secs(2));
    assert_selected_the_same_connection(&net);
    net.hosts[0].agent.send(b"hello").expect("selected");
    net.run_for(Duration::from_secs(3));
    assert_eq!(net.hosts[1].data.len(), 1);
    insta::assert_snapshot!(net.trace.render());
}

#[test]
fn role_conflict_both_controlling() {
    let mut net = net(
        host("10.0.0.1", 5000),
        host("10.0.0.2", 6000),
        Role::Controlling,
        Role::Controlling,
    );
    net.exchange(0, 1);
    net.run_for(Duration::from_secs(2));
    assert_selected_the_same_connection(&net);
    let roles = [net.hosts[0].agent.role(), net.hosts[1].agent.role()];
    assert!(roles.contains(&Role::Controlling) && roles.contains(&Role::Controlled));
    insta::assert_snapshot!(net.trace.render());
}

#[test]
fn relay_as_the_last_resort() {
    let mut bob = host("10.0.0.2", 6000);
    bob.push(Candidate::tcp(
        CandidateType::Relayed,
        TcpType::Passive,
        addr("198.51.100.1:3478"),
        65535,
    ));
    let mut net = net(
        host("10.0.0.1", 5000),
        bob,
        Role::Controlled,
        Role::Controlling,
    );
    net.routes.insert(addr("10.0.0.1:5000"), Route::Blackhole);
    net.routes.insert(addr("10.0.0.2:6000"), Route::Refuse);
    net.routes.insert(addr("198.51.100.1:3478"), Route::To(1));
    net.exchange(0, 1);
    net.run_for(Duration::from_secs(4));
    assert_selected_the_same_connection(&net);
    let (_, local, _) = net.selected(1).expect("bob selected");
    assert_eq!(local.kind, CandidateType::Relayed);
    insta::assert_snapshot!(net.trace.render());
}
