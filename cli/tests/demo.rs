//! `ferry demo` as a user runs it: the real binary, two of Bob's devices and Alice's in one
//! process over real loopback sockets, and with `--relay` every byte through Debian's coturn
//! (Bob's devices offer relayed candidates only, so a transfer that arrives went through it).
//! Until this test, `demo --relay` failed here: every node was relay-only, and two relay-only
//! nodes form no ICE pair.
//!
//! ```sh
//! FERRY_REQUIRE_INTEROP=1 cargo test -p ferry-cli --test demo
//! ```

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ferry_tests::coturn::{Coturn, PASSWORD, REALM, USER};

/// Longest the demo may run here (a bound on failures: it takes seconds).
const LIMIT: Duration = Duration::from_secs(180);

/// Runs `ferry demo` with `args`, at most [`LIMIT`].
fn demo(args: &[&str]) -> Output {
    let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("demo")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry demo starts");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(out) => out.expect("the demo's output"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("ferry demo (pid {pid}) ran longer than {LIMIT:?}");
        }
    }
}

/// The demo succeeded: exit 0, b1 accepted and b2 refused, and the SHA3-512 of what b1
/// received is the source's.
fn assert_delivered(out: &Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "ferry demo exited {:?}\n{stdout}\n{stderr}",
        out.status.code()
    );
    assert!(stdout.contains("bob:b1 is offered"), "{stdout}");
    assert!(stdout.contains("bob:b2 is offered"), "{stdout}");
    assert!(stdout.contains("refuses"), "{stdout}");
    assert!(stdout.contains("SHA3-512 verified: "), "{stdout}");
    assert!(!stdout.contains("MISMATCH"), "{stdout}");
}

#[test]
fn the_demo_delivers_a_verified_file_over_loopback() {
    assert_delivered(&demo(&["--size", "3M"]));
}

#[test]
fn the_demo_delivers_a_verified_file_through_coturn() {
    // Under FERRY_REQUIRE_INTEROP=1 (CI) a missing coturn fails here instead of skipping.
    let Some(server) = Coturn::start(&[]) else {
        return;
    };
    let relay = format!(
        "turn://{USER}:{PASSWORD}@127.0.0.1:{}?realm={REALM}",
        server.port
    );
    assert_delivered(&demo(&["--size", "1M", "--relay", &relay]));
}
