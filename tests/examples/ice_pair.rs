//! Two ICE-TCP agents find a path over a virtual network and print the check exchange, the
//! selected pair, and their descriptions in Jami's text form.
//!
//! ```text
//! cargo run -p ferry-tests --example ice_pair -- [--relay-only] [--nat]
//! ```
//!
//! `--relay-only` makes Bob's direct address refuse connections, so the pair through his
//! TURN relay wins; `--nat` puts Alice behind a NAT, so Bob learns a peer-reflexive
//! candidate.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ferry_proto::ice::{Agent, Candidate, CandidateType, Config, Role, TcpType};

use ferry_tests::ice_net::{Net, Route};

fn candidates(ip: &str, port: u16) -> Vec<Candidate> {
    let ip = ip.parse().unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
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

fn main() -> ExitCode {
    let (mut relay_only, mut nat) = (false, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--relay-only" => relay_only = true,
            "--nat" => nat = true,
            _ => {
                eprintln!("usage: ice_pair [--relay-only] [--nat]");
                return ExitCode::from(2);
            }
        }
    }
    let relay: SocketAddr = SocketAddr::from(([198, 51, 100, 1], 3478));
    let mut bob = candidates("10.0.0.2", 6000);
    bob.push(Candidate::tcp(
        CandidateType::Relayed,
        TcpType::Passive,
        relay,
        65535,
    ));
    let t0 = Instant::now();
    let mut net = Net::new(t0);
    // The requester is controlled, the answerer controlling, as in Jami.
    let a = net.add(
        "alice",
        Agent::new(
            t0,
            Config::default(),
            Role::Controlled,
            candidates("10.0.0.1", 5000),
            1,
        ),
    );
    let b = net.add(
        "bob",
        Agent::new(t0, Config::default(), Role::Controlling, bob, 2),
    );
    net.routes.insert(relay, Route::To(b));
    if relay_only {
        net.routes
            .insert(SocketAddr::from(([10, 0, 0, 2], 6000)), Route::Refuse);
        net.routes
            .insert(SocketAddr::from(([10, 0, 0, 1], 5000)), Route::Refuse);
    }
    if nat {
        net.hosts[a].public_ip = Some(std::net::Ipv4Addr::new(203, 0, 113, 7).into());
        net.routes
            .insert(SocketAddr::from(([10, 0, 0, 1], 5000)), Route::Blackhole);
    }
    println!(
        "alice's description:\n{}",
        net.hosts[a].agent.local_description()
    );
    println!(
        "bob's description:\n{}",
        net.hosts[b].agent.local_description()
    );
    net.exchange(a, b);
    net.run_for(Duration::from_secs(12));
    print!("{}", net.trace.render());
    match (net.selected(a), net.selected(b)) {
        (Some(_), Some(_)) => ExitCode::SUCCESS,
        _ => {
            println!("no pair selected");
            ExitCode::FAILURE
        }
    }
}
