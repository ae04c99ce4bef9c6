//! Issue 14 (records) on the simulator and on both runtimes (real loopback sockets and temporary
//! files, through each runtime's `Client`): partial data kept apart by (sender account,
//! transfer id) whatever the name, a send taken up again under its ids resuming from what
//! the receiver kept with the prefix verified, and a stale partial under the same key giving
//! a fresh start.
//!
//! ```sh
//! cargo test -p ferry-tests --test records
//! ```

mod support;

use ferry_tests::conformance::{Harness, Real, Simulated, records};
use support::clients::{Smol, Tokio};

fn two_sends<H: Harness>() {
    records::two_sends_of_one_name_never_touch_each_others_data::<H>();
}

fn resume<H: Harness>() {
    records::a_send_taken_up_again_resumes_from_what_was_kept::<H>();
}

fn stale<H: Harness>() {
    records::a_stale_partial_under_the_same_key_starts_again::<H>();
}

#[test]
fn two_sends_of_one_name_on_sim() {
    // SECURITY: row 122
    two_sends::<Simulated>();
}

#[test]
fn two_sends_of_one_name_on_smol() {
    two_sends::<Real<Smol>>();
}

#[test]
fn two_sends_of_one_name_on_tokio() {
    two_sends::<Real<Tokio>>();
}

#[test]
fn a_send_taken_up_again_resumes_on_sim() {
    resume::<Simulated>();
}

#[test]
fn a_send_taken_up_again_resumes_on_smol() {
    resume::<Real<Smol>>();
}

#[test]
fn a_send_taken_up_again_resumes_on_tokio() {
    resume::<Real<Tokio>>();
}

#[test]
fn a_stale_partial_starts_again_on_sim() {
    // SECURITY: row 129
    stale::<Simulated>();
}

#[test]
fn a_stale_partial_starts_again_on_smol() {
    stale::<Real<Smol>>();
}

#[test]
fn a_stale_partial_starts_again_on_tokio() {
    stale::<Real<Tokio>>();
}
