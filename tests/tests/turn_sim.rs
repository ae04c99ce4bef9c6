//! The same TURN client scenarios as `turn_coturn`, run unchanged in the simulator against
//! Ferry's own TURN server (`ferry_sim::turn_server`), on virtual time; then what only the
//! simulator can show: a trace of the whole RFC 6062 exchange, the server's faults, early
//! data kept up to 64 KiB.
//! `cargo test -p ferry-tests --test turn_sim`

use std::time::Duration;

use ferry_tests::turn_simnet::SimTurn;
use ferry_tests::turn_suite;

const HOUR: Duration = Duration::from_secs(3600);

macro_rules! in_the_simulator {
    ($($name:ident: $max_lifetime:expr;)*) => {$(
        #[test]
        fn $name() {
            let mut fixture = SimTurn::new(1, $max_lifetime);
            turn_suite::$name(&mut fixture);
            let v: Vec<String> = fixture.world().violations().iter().map(|v| v.to_string()).collect();
            assert!(v.is_empty(), "violations: {v:#?}");
        }
    )*};
}

in_the_simulator! {
    allocation_with_the_401_dance_and_clean_deallocation: HOUR;
    a_wrong_password_is_a_clear_error: HOUR;
    permission_then_connect_to_a_peer_with_bytes_both_ways: HOUR;
    a_peer_connecting_to_the_relay_is_accepted_with_bytes_both_ways: HOUR;
    a_connection_from_an_address_without_permission_is_refused: HOUR;
    a_short_lifetime_is_refreshed: Duration::from_secs(4);
    ipv6_allocation_and_connect: HOUR;
    a_restart_loses_the_allocation_and_the_client_hears_it: HOUR;
    a_server_that_stops_answering_is_a_timeout: HOUR;
    a_dropped_data_connection_closes_the_peer_stream: HOUR;
}
