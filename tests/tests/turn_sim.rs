//! The same TURN client scenarios as `turn_coturn`, run unchanged in the simulator against
//! Ferry's own TURN server (`ferry_sim::turn_server`), on virtual time; then what only the
//! simulator can show: a trace of the whole RFC 6062 exchange, the server's faults, early
//! data kept up to 64 KiB.
//! `cargo test -p ferry-tests --test turn_sim`

use std::time::Duration;

use ferry_proto::turn::{TurnError, TurnEvent};
use ferry_sim::turn_server::TurnServerConfig;
use ferry_tests::turn_simnet::SimTurn;
use ferry_tests::turn_suite;

/// The servers as `TurnServerConfig::new` makes them.
fn default(_: &mut TurnServerConfig) {}

macro_rules! in_the_simulator {
    ($fixture:expr; $($name:ident: $configure:expr;)*) => {$(
        #[test]
        fn $name() {
            let mut fixture = $fixture($configure);
            turn_suite::$name(&mut fixture);
            let v: Vec<String> = fixture.world().violations().iter().map(|v| v.to_string()).collect();
            assert!(v.is_empty(), "violations: {v:#?}");
        }
    )*};
}

/// Every scenario, on the fixture `$fixture` makes.
macro_rules! every_scenario {
    ($fixture:expr) => {
        in_the_simulator! {
            $fixture;
            allocation_with_the_401_dance_and_clean_deallocation: default;
            a_wrong_password_is_a_clear_error: default;
            permission_then_connect_to_a_peer_with_bytes_both_ways: default;
            a_peer_connecting_to_the_relay_is_accepted_with_bytes_both_ways: default;
            a_connection_from_an_address_without_permission_is_refused: default;
            a_short_lifetime_is_refreshed: |c| c.max_lifetime = Duration::from_secs(4);
            ipv6_allocation_and_connect: default;
            connect_and_accept_on_one_allocation: default;
            early_data_beyond_the_limit_is_dropped: default;
            a_stale_nonce_is_renewed: |c| c.nonce_lifetime = Duration::from_secs(2);
            an_allocation_not_refreshed_in_time_is_gone: |c| c.max_lifetime = Duration::from_secs(4);
            a_permission_is_kept_past_five_minutes: default;
            connect_errors_are_named_as_coturn_names_them: default;
            a_restart_loses_the_allocation_and_the_client_hears_it: default;
            a_server_that_stops_answering_is_a_timeout: default;
            a_dropped_data_connection_closes_the_peer_stream: default;
        }
    };
}

/// The simulator fixture on 10 ms links, seed 1.
fn calm(configure: fn(&mut TurnServerConfig)) -> SimTurn {
    SimTurn::new(1, configure)
}

every_scenario!(calm);

/// Every scenario again, on rough links: 30 ms ± 20 ms, 2 % loss (as retransmission
/// delay), 1 MB/s, on another seed.
mod rough_links {
    use super::*;
    use ferry_sim::LinkSpec;

    fn rough(configure: fn(&mut TurnServerConfig)) -> SimTurn {
        let link = LinkSpec::latency(Duration::from_millis(30))
            .with_jitter(Duration::from_millis(20))
            .with_loss(0.02)
            .with_bandwidth(1_000_000);
        SimTurn::with_links(99, link, configure)
    }

    every_scenario!(rough);
}

/// The RFC 6062 tour on one seed, traced: the trace and the fixture after it.
fn traced_tour(seed: u64) -> (String, SimTurn) {
    let mut fixture = SimTurn::traced(seed, default);
    turn_suite::connect_and_accept_on_one_allocation(&mut fixture);
    // Let the last closes and resets land.
    fixture.world_mut().run_for(Duration::from_secs(1));
    (fixture.world().trace(), fixture)
}

/// A trace is documentation: an allocation (401, then the signed Allocate), a
/// CreatePermission, a Connect with its data connection and ConnectionBind, a
/// ConnectionAttempt accepted and bound, as RFC 6062's figures draw them.
#[test]
fn the_rfc_6062_exchange_reads_as_a_trace() {
    let (trace, fixture) = traced_tour(2026);
    insta::assert_snapshot!(trace);

    let world = fixture.world();
    let v: Vec<String> = world.violations().iter().map(|v| v.to_string()).collect();
    assert!(v.is_empty(), "violations: {v:#?}");
    assert_eq!(fixture.server_v4().allocations(), 0, "deallocated");
    assert_eq!(
        world.live_connections(),
        0,
        "every connection is over\n{trace}"
    );
    let lines: Vec<&str> = trace.lines().collect();
    let position = |what: &str| {
        lines
            .iter()
            .position(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in\n{trace}"))
    };
    // The order of RFC 6062 §4.3 and §4.4.
    let order = [
        "Allocate request tx1",
        "Allocate error tx1 401",
        "Allocate request tx2",
        "Allocate success tx2",
        "CreatePermission request tx3",
        "CreatePermission success tx3",
        "Connect request tx4 peer=198.51.100.20:7000",
        "Connect success tx4",
        "ConnectionBind request tx5",
        "ConnectionBind success tx5",
        "ConnectionAttempt indication",
        "ConnectionBind request tx7",
        "ConnectionBind success tx7",
        "Refresh request tx8",
        "Refresh success tx8",
    ];
    let at: Vec<usize> = order.iter().map(|w| position(w)).collect();
    assert!(
        at.windows(2).all(|w| w[0] < w[1]),
        "out of order: {order:?} at {at:?}\n{trace}"
    );
}

#[test]
fn the_same_seed_gives_the_same_trace() {
    let (first, _) = traced_tour(7);
    let (second, _) = traced_tour(7);
    assert!(!first.is_empty());
    assert_eq!(first, second);
}

/// A Connect before any permission: the client permits the peer first, so this server,
/// stricter than coturn (a Connect without a permission is 403 here, pinned in
/// `sim/tests/turn_server.rs`), opens the stream.
#[test]
fn a_connect_before_any_permission_opens_the_stream() {
    let mut fixture = SimTurn::new(1, default);
    let got = turn_suite::a_connect_before_any_permission(&mut fixture);
    assert!(
        matches!(
            got,
            TurnEvent::PeerStream {
                incoming: false,
                ..
            }
        ),
        "{got:?}"
    );
}

/// A CreatePermission naming a loopback address is refused whole (403, as coturn does);
/// the client asks again address by address, so the peer is still permitted and only the
/// loopback address fails.
#[test]
fn a_forbidden_address_does_not_sink_the_others() {
    let mut fixture = SimTurn::new(1, default);
    let got = turn_suite::a_forbidden_address_does_not_sink_the_others(&mut fixture);
    let peer: std::net::IpAddr = "198.51.100.20".parse().expect("ip");
    let loopback: std::net::IpAddr = "127.0.0.1".parse().expect("ip");
    assert!(
        got.contains(&TurnEvent::Permitted { ips: vec![peer] }),
        "the peer is permitted: {got:?}"
    );
    assert!(
        got.iter().any(|e| matches!(
            e,
            TurnEvent::PermissionFailed { ips, error: TurnError::Forbidden } if *ips == vec![loopback]
        )),
        "only the loopback address fails: {got:?}"
    );
    let permitted = ferry_tests::turn_suite::TurnFixture::client(&fixture).permitted();
    assert_eq!(permitted, [peer].into_iter().collect());
}

/// The nonce goes stale after 2 s: the next request is answered 438 with a new nonce, and
/// the client re-signs it and goes on (its owner never hears of it).
#[test]
fn a_stale_nonce_is_a_438_and_the_request_is_signed_again() {
    let mut fixture = SimTurn::traced(1, |c| c.nonce_lifetime = Duration::from_secs(2));
    turn_suite::a_stale_nonce_is_renewed(&mut fixture);
    let trace = fixture.world().trace();
    let lines: Vec<&str> = trace
        .lines()
        .filter(|l| l.contains("CreatePermission"))
        .map(|l| l.split_once("CreatePermission").map_or(l, |(_, rest)| rest))
        .collect();
    assert_eq!(
        lines,
        [
            " request tx3 peer=198.51.100.20:0 (signed)",
            " error tx3 438 Stale Nonce",
            " request tx4 peer=198.51.100.20:0 (signed)",
            " success tx4 (signed)",
        ],
        "{trace}"
    );
}

/// Without the client's refresh, the server forgets a permission after 5 minutes: a peer
/// from that address is refused again. (The client is held back, its link down, so its
/// refresh at 4 minutes never reaches the server.)
#[test]
fn an_unrefreshed_permission_expires_after_five_minutes() {
    use ferry_proto::turn::{Family, TurnClient, TurnConfig};
    use ferry_tests::coturn::{PASSWORD, USER};
    use ferry_tests::turn_suite::{PeerHost, PeerState, TurnFixture as _};

    let mut f = SimTurn::new(1, default);
    let config = TurnConfig::new(f.server(Family::V4), USER, PASSWORD);
    f.start(TurnClient::new(config, 3));
    let relayed = match f.run_until(turn_suite::WAIT, |e| {
        matches!(e, TurnEvent::Allocated { .. })
    }) {
        Some(TurnEvent::Allocated { relayed, .. }) => relayed,
        other => panic!("{other:?}"),
    };
    let peer_ip = f.peer_ip(Family::V4);
    f.command(|c, now| c.permit(now, [peer_ip]));
    let got = f.run_until(turn_suite::WAIT, |e| {
        matches!(e, TurnEvent::Permitted { .. })
    });
    assert!(got.is_some());
    f.hold_client(true);
    f.run_for(Duration::from_secs(4 * 60));
    // Before the 5 minutes are up, the peer still gets in.
    let early = f.connect_peer(relayed, PeerHost::Peer);
    f.run_for(Duration::from_secs(1));
    assert_eq!(f.peer(early).state, PeerState::Open);
    f.run_for(Duration::from_secs(60));
    // Past them, it is refused.
    let late = f.connect_peer(relayed, PeerHost::Peer);
    let log = f.run_until_peer(turn_suite::WAIT, late, |l| {
        !matches!(l.state, PeerState::Connecting | PeerState::Open)
    });
    assert_eq!(log.state, PeerState::Reset, "{log:?}");
    let refused = fixture_refusals(&f);
    assert_eq!(refused, 1, "the server refused one peer");
}

fn fixture_refusals(f: &SimTurn) -> usize {
    use ferry_sim::turn_server::TurnServerEvent;
    f.world()
        .events::<TurnServerEvent>(f.turn)
        .iter()
        .filter(|(_, e)| matches!(e, TurnServerEvent::Refused { .. }))
        .count()
}
