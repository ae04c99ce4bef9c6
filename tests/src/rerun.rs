//! What a test does when a real part or a privilege is missing, and how a test re-runs
//! itself in a process of its own: both checked, so that neither can pass without testing.
//!
//! Under `FERRY_REQUIRE_INTEROP=1` (CI) a missing part is a failure, not a skip line; and a
//! test re-run by name must have run exactly once in the child (a name that drifted runs
//! zero tests, and the child's `cargo test` harness calls that a success).

use std::process::Command;

/// Whether a missing real part must fail the test (`FERRY_REQUIRE_INTEROP=1`).
pub fn required() -> bool {
    std::env::var("FERRY_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

/// A test cannot do all it should, for `why`: a failure under `FERRY_REQUIRE_INTEROP=1`,
/// else a `SKIP` line on stderr.
pub fn skip(why: &str) {
    assert!(!required(), "FERRY_REQUIRE_INTEROP=1 but {why}");
    eprintln!("SKIP: {why}; set FERRY_REQUIRE_INTEROP=1 to make this a failure");
}

/// Runs `command` (a test binary given `test`, `--exact` and `--nocapture`), echoes what it
/// printed, and checks that it passed and that exactly one test ran.
pub fn run_one(command: &mut Command, test: &str) {
    let out = command.output().expect("the test binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprint!("{stdout}");
    eprint!("{stderr}");
    assert!(out.status.success(), "{test} failed in its own process");
    assert!(
        stdout.contains("test result: ok. 1 passed"),
        "{test} did not run in its own process (no test of that exact name?)"
    );
}
