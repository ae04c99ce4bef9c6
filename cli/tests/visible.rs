//! What a person sees, with the real `ferry` binary in separate processes: a send that does
//! not wait for a device that is not there, one line per phase without a terminal, tiny
//! files humanised, `--json` progress at a bounded rate, and a listener that reports failed
//! connections and refused requests.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{World, events, json_lines, make_file, text};
use serde_json::Value;

/// Longest any one process may run here (a bound on failures, not a measure).
const LIMIT: Duration = Duration::from_secs(120);

fn finish(child: Child) -> Output {
    common::finish(child, LIMIT)
}

/// `ferry --json listen ARGS` in `home`, its JSON lines on a channel; returns once it says
/// it is listening.
fn listener(w: &World, home: &str, into: &Path, args: &[&str]) -> (Child, mpsc::Receiver<Value>) {
    let mut child = w
        .ferry(home)
        .args(["--json", "listen", "--into"])
        .arg(into)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let first = rx.recv_timeout(LIMIT).expect("the listener says something");
    assert_eq!(first["event"], "listening", "{first}");
    (child, rx)
}

/// Waits for the first line of `event` that `pred` takes; panics after [`LIMIT`].
fn wait_for(rx: &mpsc::Receiver<Value>, event: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + LIMIT;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(v) if v["event"] == event && pred(&v) => return v,
            Ok(_) => {}
            Err(e) => panic!("no {event} line: {e}"),
        }
    }
    panic!("no {event} line within {LIMIT:?}");
}

/// Kills a process this test started, by its pid.
fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Bob has a second device whose listener announced it and then died: a send ends soon after
/// the live device verified, the dead one "not reached (offline?)" through the grace after
/// another device's verified copy (not through the 30-s answer timeout), and the rate is the
/// data phase's. Asserted on the events and their order, not on seconds.
#[test]
fn a_send_does_not_wait_for_a_device_that_is_not_there() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let pem = w.path("phone.pem");
    let added = w.run(
        "bob",
        &["--json", "device", "add", "--out", &pem.to_string_lossy()],
    );
    assert_eq!(added.status.code(), Some(0), "{}", text(&added.stderr));
    let dead_device = json_lines(&added.stdout)[0]["device"]
        .as_str()
        .expect("a device id")
        .to_owned();
    let imported = w.run("phone", &["device", "import", &pem.to_string_lossy()]);
    assert_eq!(
        imported.status.code(),
        Some(0),
        "{}",
        text(&imported.stderr)
    );
    // The phone announces itself, then its process dies.
    let (mut phone, _) = listener(&w, "phone", &w.path("phone-in"), &["--accept-all"]);
    std::thread::sleep(Duration::from_millis(500));
    kill(&mut phone);

    let into = w.path("in");
    let (live, _) = listener(&w, "bob", &into, &["--once", "--accept-all"]);
    let file = w.path("report.pdf");
    make_file(&file, 300_000);
    let sent = w.run(
        "alice",
        &["--json", "send", &file.to_string_lossy(), "--to", &bob],
    );
    let _ = finish(live);
    assert_eq!(sent.status.code(), Some(0), "{}", text(&sent.stderr));
    let lines = json_lines(&sent.stdout);
    let devices = events(&lines, "device");
    assert_eq!(devices.len(), 2, "both devices found: {lines:?}");
    let dead = devices
        .iter()
        .find(|d| d["device"] == dead_device.as_str())
        .expect("the dead device's sub-transfer")["transfer"]
        .clone();
    let position = |pred: &dyn Fn(&Value) -> bool| lines.iter().position(pred);
    let verified = position(&|v| v["event"] == "verified").expect("a verified line");
    let gave_up = position(&|v| {
        v["event"] == "status" && v["transfer"] == dead && v["status"] == "unjoinable_peer"
    })
    .expect("the dead device ends unjoinable_peer");
    assert!(
        verified < gave_up,
        "given up after the live device verified"
    );
    let reason = lines[gave_up]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("not reached (offline?)") && reason.contains("verified the file"),
        "given up through the grace after a verified copy, not the answer timeout: {reason}"
    );
    let failed = events(&lines, "phase")
        .into_iter()
        .find(|p| p["transfer"] == dead && p["phase"] == "failed")
        .expect("a failed phase for the dead device");
    assert!(
        failed["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("not reached (offline?)")),
        "{failed}"
    );
    let done = &events(&lines, "done")[0];
    assert_eq!(
        (done["delivered"].as_u64(), done["devices"].as_u64()),
        (Some(1), Some(2))
    );
    assert!(std::fs::read(into.join("report.pdf")).is_ok_and(|b| b.len() == 300_000));
}

/// Without a terminal, `send` and `listen` print one line per phase (connecting, waiting
/// for acceptance, sending, verifying, done), and a tiny file's rate reads as one, not as
/// "0.0 MiB in 0.00 s".
#[test]
fn plain_lines_say_each_phase_and_tiny_files_read_well() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let file = w.path("note.txt");
    make_file(&file, 1000);
    let (live, _) = listener(&w, "bob", &w.path("in"), &["--once", "--accept-all"]);
    let sent = w.run("alice", &["send", &file.to_string_lossy(), "--to", &bob]);
    let _ = finish(live);
    assert_eq!(sent.status.code(), Some(0), "{}", text(&sent.stderr));
    let out = text(&sent.stdout);
    let order = [
        "Sending note.txt (1000 bytes)",
        ": found, connecting",
        ": connected, waiting for acceptance",
        ": accepted, sending",
        ": every byte sent, the receiver checks the SHA3-512",
        ": done, SHA3-512 verified",
        "Delivered to 1 of 1 device(s)",
        "1000 bytes in ",
    ];
    let mut from = 0;
    for want in order {
        let at = out[from..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} after byte {from} in:\n{out}"));
        from += at + want.len();
    }
    assert!(!out.contains("0.0 MiB"), "{out}");
}

/// A file big enough to take a while: `--json` prints at most about four `progress` lines a
/// second per device and four `aggregate` lines a second (plus the first, the last and each
/// change of state), counted against the time this test measures around the send, with
/// slack. One line per 64 KiB, as before, is hundreds here.
#[test]
fn json_progress_stays_within_four_lines_a_second_per_device() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let file = w.path("big.bin");
    let size = 96 * 1024 * 1024;
    make_file(&file, size);
    let (live, _) = listener(&w, "bob", &w.path("in"), &["--once", "--accept-all"]);
    let started = Instant::now();
    let sent = w.run(
        "alice",
        &["--json", "send", &file.to_string_lossy(), "--to", &bob],
    );
    let took = started.elapsed().as_secs_f64();
    let _ = finish(live);
    assert_eq!(sent.status.code(), Some(0), "{}", text(&sent.stderr));
    let lines = json_lines(&sent.stdout);
    let progress = events(&lines, "progress");
    let aggregate = events(&lines, "aggregate");
    let bound = (4.0 * took).ceil() as usize + 4;
    eprintln!(
        "{} progress and {} aggregate lines in {took:.1} s (bound {bound} each)",
        progress.len(),
        aggregate.len()
    );
    assert!(progress.len() <= bound, "{} > {bound}", progress.len());
    assert!(
        aggregate.len() <= bound + 3,
        "{} > {bound} + 3",
        aggregate.len()
    );
    let last = progress.last().expect("progress lines");
    assert_eq!(
        last["done"].as_u64(),
        Some(size as u64),
        "the last byte is told"
    );
    assert!(
        progress
            .iter()
            .any(|p| p["bytes_per_sec"].as_u64().is_some()),
        "a rate is given"
    );
}

/// A listener refuses a stranger's request when it answers only contacts, and says so as a
/// line and a `refused` event (peer, stage, reason); when a sender dies mid-transfer, the
/// failed connection is a `connection_failed` event with the device, stage and reason.
#[test]
fn listen_json_reports_refused_requests_and_failed_connections() {
    let w = World::new(LIMIT);
    let alice = w.account("alice");
    let bob = w.account("bob");
    let carol = w.account("carol");
    let file = w.path("big.bin");
    make_file(&file, 64 * 1024 * 1024);

    // Bob answers only carol: alice's request is refused before any answer.
    let into = w.path("in");
    let (mut picky, rx) = listener(&w, "bob", &into, &["--accept-all", "--from", &carol]);
    let mut send = w
        .ferry_piped("alice")
        .args(["--json", "send", &file.to_string_lossy(), "--to", &bob])
        .spawn()
        .expect("ferry send starts");
    let refused = wait_for(&rx, "refused", |_| true);
    assert_eq!(refused["stage"], "request");
    assert_eq!(refused["account"], alice.as_str());
    assert_eq!(refused["reason"], "not a contact");
    kill(&mut send);
    kill(&mut picky);

    // Bob takes anything; alice's process dies while the bytes flow.
    let (mut open, rx) = listener(&w, "bob", &into, &["--accept-all"]);
    let mut send = w
        .ferry_piped("alice")
        .args(["--json", "send", &file.to_string_lossy(), "--to", &bob])
        .spawn()
        .expect("ferry send starts");
    let incoming = wait_for(&rx, "incoming", |_| true);
    let alice_device = incoming["from_device"].clone();
    wait_for(&rx, "progress", |p| {
        p["done"].as_u64().is_some_and(|d| d > 0)
    });
    kill(&mut send);
    let failed = wait_for(&rx, "connection_failed", |_| true);
    assert_eq!(failed["device"], alice_device);
    assert!(
        failed["stage"].as_str().is_some_and(|s| !s.is_empty()),
        "{failed}"
    );
    assert!(
        failed["reason"].as_str().is_some_and(|s| !s.is_empty()),
        "{failed}"
    );
    kill(&mut open);
}

/// Without `--into`, `listen` receives into the current folder, says so at start, and
/// refuses a current folder every user can write in, pointing to `--into`.
#[cfg(unix)]
#[test]
fn listen_receives_into_the_current_folder_unless_others_can_write_there() {
    use std::os::unix::fs::PermissionsExt as _;
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let here = w.path("here");
    std::fs::create_dir(&here).expect("a folder");
    std::fs::set_permissions(&here, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let refused = w
        .ferry_piped("bob")
        .args(["listen", "--once", "--accept-all"])
        .current_dir(&here)
        .spawn()
        .expect("ferry listen starts");
    let refused = finish(refused);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused.stderr));
    let err = text(&refused.stderr);
    assert!(
        err.contains("writable by every user") && err.contains("--into"),
        "{err}"
    );

    std::fs::set_permissions(&here, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let mut child = w
        .ferry("bob")
        .args(["--json", "listen", "--once", "--accept-all"])
        .current_dir(&here)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts");
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().expect("stdout"))
        .read_line(&mut first)
        .expect("the listening line");
    let listening: Value = serde_json::from_str(&first).expect("a JSON line");
    let into = std::fs::canonicalize(listening["into"].as_str().expect("into")).expect("a path");
    assert_eq!(
        into,
        std::fs::canonicalize(&here).expect("here"),
        "said at start"
    );
    let file = w.path("letter.txt");
    make_file(&file, 5000);
    let sent = w.run("alice", &["send", &file.to_string_lossy(), "--to", &bob]);
    assert_eq!(sent.status.code(), Some(0), "{}", text(&sent.stderr));
    let _ = finish(child);
    assert!(std::fs::read(here.join("letter.txt")).is_ok_and(|b| b.len() == 5000));
}

/// A listener that runs across two sends from one device says nothing of the first
/// connection closing once its file arrived (its offer was already forgotten: a listener
/// keeps none per finished offer); it is no failure.
#[test]
fn a_sender_closing_after_its_file_arrived_is_no_failure_for_a_running_listener() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let into = w.path("in");
    let (mut listen, rx) = listener(&w, "bob", &into, &["--accept-all"]);
    for n in 0..2 {
        let file = w.path(&format!("f{n}.bin"));
        make_file(&file, 10_000);
        let sent = w.run("alice", &["send", &file.to_string_lossy(), "--to", &bob]);
        assert_eq!(sent.status.code(), Some(0), "{}", text(&sent.stderr));
    }
    // The second file's verdict comes after the first connection closed.
    let mut seen = Vec::new();
    loop {
        let v = rx.recv_timeout(LIMIT).expect("the listener goes on");
        let second = v["event"] == "verified" && v["name"] == "f1.bin";
        seen.push(v);
        if second {
            break;
        }
    }
    kill(&mut listen);
    let failed = events(&seen, "connection_failed");
    assert!(failed.is_empty(), "{failed:?}");
}
