//! A 64 MiB file from an `Outgoing` to an `Incoming` over real loopback TCP on smol, alone
//! in its test binary so that the peak memory it checks is its own.

mod runtime;

#[test]
fn transfer_a_64_mib_file() {
    ferry_tests::runtime_suite::transfer_a_64_mib_file::<runtime::Smol>();
}
