//! Issue 14 (records) on the simulator and on both runtimes (real loopback sockets and temporary
//! files, through each runtime's `Client`): partial data kept apart by (sender account,
//! transfer id) whatever the name, a send taken up again under its ids resuming from what
//! the receiver kept with the prefix verified, and a stale partial under the same key giving
//! a fresh start; and ask again (`data-transfer-request`): a recipient's request resumed with
//! the prefix verified, and requests refused for a non-recipient, a changed file, a device
//! that is not the TLS session's, and an unknown id.
//!
//! ```sh
//! cargo test -p ferry-tests --test records
//! ```

mod support;

use ferry_tests::conformance::{Harness, Real, Simulated, ask, records};
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

#[test]
fn asked_again_resumes_on_sim() {
    ask::a_recipient_asks_again_and_resumes::<Simulated>();
}

#[test]
fn asked_again_resumes_on_smol() {
    ask::a_recipient_asks_again_and_resumes::<Real<Smol>>();
}

#[test]
fn asked_again_resumes_on_tokio() {
    ask::a_recipient_asks_again_and_resumes::<Real<Tokio>>();
}

#[test]
fn a_non_recipient_is_refused_on_sim() {
    // SECURITY: row 130
    ask::a_non_recipient_is_refused::<Simulated>();
}

#[test]
fn a_non_recipient_is_refused_on_smol() {
    ask::a_non_recipient_is_refused::<Real<Smol>>();
}

#[test]
fn a_non_recipient_is_refused_on_tokio() {
    ask::a_non_recipient_is_refused::<Real<Tokio>>();
}

#[test]
fn a_changed_file_is_refused_on_sim() {
    // SECURITY: row 131
    ask::a_changed_file_is_refused::<Simulated>();
}

#[test]
fn a_changed_file_is_refused_on_smol() {
    ask::a_changed_file_is_refused::<Real<Smol>>();
}

#[test]
fn a_changed_file_is_refused_on_tokio() {
    ask::a_changed_file_is_refused::<Real<Tokio>>();
}

#[test]
fn another_device_is_refused_on_sim() {
    // SECURITY: row 132
    ask::a_request_naming_another_device_is_refused::<Simulated>();
}

#[test]
fn another_device_is_refused_on_smol() {
    ask::a_request_naming_another_device_is_refused::<Real<Smol>>();
}

#[test]
fn another_device_is_refused_on_tokio() {
    ask::a_request_naming_another_device_is_refused::<Real<Tokio>>();
}

#[test]
fn an_unknown_id_is_refused_on_sim() {
    ask::an_unknown_id_is_refused::<Simulated>();
}

#[test]
fn an_unknown_id_is_refused_on_smol() {
    ask::an_unknown_id_is_refused::<Real<Smol>>();
}

#[test]
fn an_unknown_id_is_refused_on_tokio() {
    ask::an_unknown_id_is_refused::<Real<Tokio>>();
}
