//! The runtime scenarios of `ferry-tests` on smol: real loopback sockets, real temporary
//! files, a real coturn (`FERRY_REQUIRE_INTEROP=1` makes a missing coturn a failure).

mod runtime;

ferry_tests::runtime_suite!(runtime::Smol);
