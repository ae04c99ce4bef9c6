//! The TURN client against Debian's real coturn on loopback.
//! `FERRY_REQUIRE_INTEROP=1 cargo test -p ferry-tests --test turn_coturn`

use ferry_proto::turn::TurnEvent;
use ferry_tests::coturn::Coturn;
use ferry_tests::turn_loopback::Loopback;
use ferry_tests::turn_suite;

macro_rules! against_coturn {
    ($($name:ident: $options:expr;)*) => {$(
        #[test]
        fn $name() {
            let Some(server) = Coturn::start($options) else { return };
            turn_suite::$name(&mut Loopback::new(server));
        }
    )*};
}

against_coturn! {
    allocation_with_the_401_dance_and_clean_deallocation: &[];
    a_wrong_password_is_a_clear_error: &[];
    permission_then_connect_to_a_peer_with_bytes_both_ways: &[];
    a_peer_connecting_to_the_relay_is_accepted_with_bytes_both_ways: &[];
    a_connection_from_an_address_without_permission_is_refused: &[];
    a_short_lifetime_is_refreshed: &["--max-allocate-lifetime=4"];
    ipv6_allocation_and_connect: &[];
    connect_and_accept_on_one_allocation: &[];
    early_data_beyond_the_limit_is_dropped: &[];
    connect_errors_are_named_as_coturn_names_them: &[];
    a_stale_nonce_is_renewed: &["--stale-nonce=2"];
    an_allocation_not_refreshed_in_time_is_gone: &["--max-allocate-lifetime=4"];
}

/// A Connect before any permission opens the stream on coturn too (the client permits the
/// peer first; coturn itself would connect without one, Ferry's simulated server would not).
#[test]
fn coturn_connects_before_any_permission() {
    let Some(server) = Coturn::start(&[]) else {
        return;
    };
    let got = turn_suite::a_connect_before_any_permission(&mut Loopback::new(server));
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
