//! Issue 14 (records) with the real `ferry` binary in temporary homes: `ferry history` on both
//! sides (each run a new process, so the records outlive the processes that wrote them), Ctrl-C on
//! `listen` keeping what arrived, and the same `send` run again resuming from it, said on
//! both sides; `ferry ask` after an interrupted receive.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use common::{World, events, json_lines, make_file, text};
use serde_json::Value;

/// Longest any one process may run here (a bound on failures, not a measure).
const LIMIT: Duration = Duration::from_secs(180);

/// The records tests' own calls on the shared world.
trait RecordsWorld {
    fn history(&self, home: &str) -> Vec<Value>;
    fn listen(&self, home: &str, into: &Path, once: bool) -> (Child, mpsc::Receiver<Value>);
}

impl RecordsWorld for World {
    /// `ferry --json history` in `home`: its records.
    fn history(&self, home: &str) -> Vec<Value> {
        let out = self.run(home, &["--json", "history"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        json_lines(&out.stdout)
    }

    /// `ferry --json listen --accept-all` in `home`, its JSON lines on a channel.
    fn listen(&self, home: &str, into: &Path, once: bool) -> (Child, mpsc::Receiver<Value>) {
        let mut c = self.ferry_piped(home);
        c.args(["--json", "listen", "--accept-all", "--into"])
            .arg(into);
        if once {
            c.arg("--once");
        }
        let mut child = c.spawn().expect("ferry listen starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        (child, rx)
    }
}

/// Waits for `child` (at most [`LIMIT`], then kills it) and collects its output.
fn finish(child: Child) -> Output {
    common::finish(child, LIMIT)
}

/// Takes lines from `rx` until one that `pick` picks (at most [`LIMIT`]); every line taken.
fn until(rx: &mpsc::Receiver<Value>, pick: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let line = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("{e} after {seen:?}"));
        let done = pick(&line);
        seen.push(line);
        if done {
            return seen;
        }
    }
}

/// The files in the private partial folder of `into`.
fn partials(into: &Path) -> Vec<String> {
    std::fs::read_dir(into.join(".ferry-partial"))
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn signal(child: &Child, sig: &str) {
    let sent = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success());
}

/// Bob's listener is stopped with Ctrl-C while a file arrives: it keeps what arrived (in
/// the private folder, named by Alice's account and the transfer id), Alice hears the
/// connection was lost and is told to run the same send again, and both histories show the
/// transfer unfinished. The same `send` run again resumes (both sides say "resuming at"),
/// delivers the file byte for byte, and both histories, read by new processes, show it
/// finished under the same id.
#[test]
fn ctrl_c_keeps_what_arrived_and_the_same_send_resumes_and_both_histories_say_so() {
    interrupted_then_resumed(false, false);
}

/// The same, with the bytes Bob kept altered on disk before the send is run again: Bob's
/// `GO n <digest>` does not match Alice's first `n` bytes, both sides say the transfer
/// restarts ("restarted" events), and the file arrives whole, byte for byte, verified; never
/// a digest mismatch.
#[test]
fn a_stale_partial_gives_a_fresh_start_not_a_digest_mismatch() {
    interrupted_then_resumed(false, true);
}

/// The same, Alice's `send` killed (SIGKILL) instead: her record was never closed, and the
/// same `send` run again still takes it up and resumes.
#[test]
fn a_killed_send_run_again_resumes() {
    interrupted_then_resumed(true, false);
}

fn interrupted_then_resumed(sender_killed: bool, stale_partial: bool) {
    let w = World::new(LIMIT);
    let alice = w.account("alice");
    let bob = w.account("bob");
    let source = w.path("big.bin");
    let size = 96 << 20;
    make_file(&source, size);
    let into = w.path("in");
    let send = || {
        w.ferry_piped("alice")
            .args(["--json", "send"])
            .arg(&source)
            .args(["--to", &bob])
            .spawn()
            .expect("ferry send starts")
    };

    // 0. A week-old partial file of an older Ferry (keyed by name) waits in Bob's folder:
    // his listener removes it at start.
    let private = into.join(".ferry-partial");
    std::fs::create_dir_all(&private).expect("private folder");
    std::fs::set_permissions(&into, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("mode");
    std::fs::set_permissions(
        &private,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("mode");
    let stale = private.join("big.bin.ferry-part");
    std::fs::write(&stale, b"stale").expect("stale");
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .expect("stale")
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(8 * 86_400))
        .expect("mtime");

    // 1. Bytes arrive, then Bob's listener is stopped with Ctrl-C, or Alice's send killed.
    let (listener, rx) = w.listen("bob", &into, sender_killed);
    let sender = send();
    until(&rx, |v| {
        v["event"] == "progress" && v["done"].as_u64().is_some_and(|d| d > 0)
    });
    signal(
        if sender_killed { &sender } else { &listener },
        if sender_killed { "-KILL" } else { "-INT" },
    );
    let stopped = finish(listener);
    assert!(
        !stale.exists(),
        "the stale partial file is removed at start"
    );
    let sent = finish(sender);
    let (said_here, said_there) = (text(&stopped.stderr), text(&sent.stderr));
    if sender_killed {
        assert_eq!(sent.status.code(), None, "killed: {said_there}");
        assert_eq!(stopped.status.code(), Some(5), "{said_here}");
        assert!(
            said_here.contains("run the same `ferry send` again"),
            "{said_here}"
        );
    } else {
        assert_eq!(stopped.status.code(), Some(7), "{said_here}");
        assert!(said_here.contains("what arrived is kept"), "{said_here}");
        assert_eq!(sent.status.code(), Some(5), "{said_there}");
        assert!(
            said_there.contains("run the same `ferry send` again"),
            "{said_there}"
        );
    }
    let kept = partials(&into);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].starts_with(&format!("{alice}-")) && kept[0].ends_with(".ferry-part"),
        "partial data is named by the sender's account and the transfer id: {kept:?}"
    );
    let held = std::fs::metadata(into.join(".ferry-partial").join(&kept[0]))
        .expect("partial")
        .len();
    assert!(held > 0 && held < size as u64, "{held}");
    let sent_before = w.history("alice");
    assert_eq!(sent_before.len(), 1, "{sent_before:?}");
    let id = sent_before[0]["id"].clone();
    assert_eq!(sent_before[0]["direction"], "sent");
    let received_before = w.history("bob");
    assert_eq!(received_before.len(), 1, "{received_before:?}");
    assert_eq!(received_before[0]["direction"], "received");
    assert_eq!(received_before[0]["peer_account"], alice.as_str());
    let bob_part = received_before[0]["devices"]
        .as_object()
        .and_then(|d| d.values().next().cloned())
        .expect("bob's part");
    let bob_state = if sender_killed {
        "closed_by_peer"
    } else {
        "closed_by_host"
    };
    assert_eq!(bob_part["state"], bob_state, "{bob_part}");
    if stale_partial {
        // What Bob keeps is no longer the start of Alice's file.
        let part = std::fs::File::options()
            .write(true)
            .open(into.join(".ferry-partial").join(&kept[0]))
            .expect("partial");
        std::os::unix::fs::FileExt::write_all_at(&part, &[0xa5; 4096], 0).expect("altered");
    }

    // 2. The same send again.
    let (listener, rx) = w.listen("bob", &into, true);
    let sent = finish(send());
    let received = finish(listener);
    let listen_lines: Vec<Value> = rx.try_iter().collect();
    assert_eq!(sent.status.code(), Some(0), "{}", text(&sent.stderr));
    assert_eq!(
        received.status.code(),
        Some(0),
        "{}",
        text(&received.stderr)
    );
    let send_lines = json_lines(&sent.stdout);
    assert_eq!(events(&send_lines, "sending")[0]["again"], true);
    assert_eq!(events(&send_lines, "sending")[0]["group"], id);
    for (side, lines) in [("send", &send_lines), ("listen", &listen_lines)] {
        let (resuming, restarted) = (events(lines, "resuming"), events(lines, "restarted"));
        if stale_partial {
            assert!(resuming.is_empty(), "{side}: {lines:?}");
            assert_eq!(restarted.len(), 1, "{side}: {lines:?}");
            assert_eq!(restarted[0]["held"].as_u64(), Some(held), "{side}");
            continue;
        }
        assert!(restarted.is_empty(), "{side}: {lines:?}");
        assert_eq!(resuming.len(), 1, "{side}: {lines:?}");
        assert_eq!(resuming[0]["offset"].as_u64(), Some(held), "{side}");
        assert_eq!(resuming[0]["total"].as_u64(), Some(size as u64), "{side}");
        assert_eq!(resuming[0]["prefix_verified"], true, "{side}: {lines:?}");
    }
    let got = std::fs::read(into.join("big.bin")).expect("the received file");
    assert!(
        got == std::fs::read(&source).expect("source"),
        "byte for byte"
    );
    assert!(partials(&into).is_empty(), "{:?}", partials(&into));

    let sent_after = w.history("alice");
    assert_eq!(
        sent_after.len(),
        1,
        "one record, taken up again: {sent_after:?}"
    );
    assert_eq!(sent_after[0]["id"], id);
    let digest = &events(&send_lines, "verified")[0]["sha3_512"];
    assert_eq!(&sent_after[0]["sha3_512"], digest);
    let received_after = w.history("bob");
    assert_eq!(received_after.len(), 1, "{received_after:?}");
    assert_eq!(&received_after[0]["sha3_512"], digest);
    assert_eq!(
        received_after[0]["final_path"].as_str().map(PathBuf::from),
        Some(into.join("big.bin"))
    );
    // Plain lines and --limit.
    let plain = w.run("alice", &["history"]);
    assert!(
        text(&plain.stdout).contains("finished"),
        "{}",
        text(&plain.stdout)
    );
    let none = w.run("alice", &["--json", "history", "--limit", "0"]);
    assert!(json_lines(&none.stdout).is_empty());
}

/// A file named like a picture, under the `--auto-accept-images-under` limit, that does not
/// start as a JPEG, PNG, GIF or WebP does: taken without asking, then cancelled at its first
/// bytes with the reason, nothing kept; the sender hears the cancel.
#[test]
fn a_file_named_as_a_picture_that_is_none_is_cancelled_and_nothing_kept() {
    // SECURITY: row 125
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let fake = w.path("holiday.jpg");
    make_file(&fake, 200_000);
    let into = w.path("pictures");
    let listener = w
        .ferry_piped("bob")
        .args([
            "listen",
            "--once",
            "--auto-accept-images-under",
            "20M",
            "--into",
        ])
        .arg(&into)
        .spawn()
        .expect("ferry listen starts");
    let sent = w.run("alice", &["send", &fake.to_string_lossy(), "--to", &bob]);
    let received = finish(listener);
    let said = text(&received.stderr);
    assert_eq!(received.status.code(), Some(6), "{said}");
    assert!(said.contains("not a picture"), "{said}");
    assert_eq!(sent.status.code(), Some(7), "{}", text(&sent.stderr));
    assert!(!into.join("holiday.jpg").exists());
    assert!(partials(&into).is_empty(), "{:?}", partials(&into));
}

/// Bob's listener is stopped with Ctrl-C while a file arrives; Alice's `send` ends. Bob then
/// runs `ferry ask ID` with the id his history shows, while Alice listens: her listener finds
/// the send in her records by that id (the one Bob saw), checks the file, resends under the
/// same id, and Bob's `ask` resumes from what he kept (prefix verified) and exits 0 with the
/// file byte for byte; her history then shows it finished. Before that, with Alice's file touched, the same request is refused
/// `file_changed` (exit 6) and nothing is sent; an id Bob never received is a usage error.
#[test]
fn ferry_ask_after_an_interrupted_receive_gets_the_file_verified() {
    let w = World::new(LIMIT);
    let alice = w.account("alice");
    let bob = w.account("bob");
    let source = w.path("asked.bin");
    let size = 48 << 20;
    make_file(&source, size);
    let into = w.path("in");

    // 1. Bytes arrive; Bob's listener is stopped; Alice's send ends.
    let (listener, rx) = w.listen("bob", &into, false);
    let sender = w
        .ferry_piped("alice")
        .args(["--json", "send"])
        .arg(&source)
        .args(["--to", &bob])
        .spawn()
        .expect("ferry send starts");
    until(&rx, |v| {
        v["event"] == "progress" && v["done"].as_u64().is_some_and(|d| d > 0)
    });
    signal(&listener, "-INT");
    assert_eq!(finish(listener).status.code(), Some(7));
    assert_eq!(finish(sender).status.code(), Some(5));
    let received = w.history("bob");
    assert_eq!(received.len(), 1, "{received:?}");
    let id = received[0]["id"].as_str().expect("an id").to_owned();
    let sent = w.history("alice");
    assert_ne!(
        sent[0]["id"].as_str(),
        Some(id.as_str()),
        "a group id of its own"
    );
    let seen = sent[0]["devices"]
        .as_object()
        .and_then(|d| d.values().next())
        .map(|p| p["transfer"].clone());
    assert_eq!(
        seen,
        Some(Value::from(id.clone())),
        "Alice records the id Bob saw"
    );
    let held = partials(&into);
    assert_eq!(held.len(), 1, "{held:?}");

    // 2. Alice listens; an unknown id is refused here, before any network.
    let (alice_listener, alice_rx) = w.listen("alice", &w.path("alice-in"), false);
    let unknown = w.run("bob", &["ask", "12345", "--into", &into.to_string_lossy()]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));

    // 3. Alice's file changed (its modification time): refused, file_changed.
    let meta = std::fs::metadata(&source).expect("source");
    let touch = |at| {
        std::fs::File::options()
            .write(true)
            .open(&source)
            .and_then(|f| f.set_modified(at))
            .expect("set mtime");
    };
    let mtime = meta.modified().expect("mtime");
    touch(mtime + Duration::from_secs(60));
    let into_arg = into.to_string_lossy().into_owned();
    let refused = w.run("bob", &["--json", "ask", &id, "--into", &into_arg]);
    let said = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(6), "{said}");
    assert!(said.contains("file_changed"), "{said}");
    let answers = json_lines(&refused.stdout);
    assert_eq!(events(&answers, "ask_answer")[0]["answer"], "file_changed");
    assert!(events(&answers, "resuming").is_empty());

    // 4. The file as it was sent: resent, resumed, verified.
    touch(mtime);
    let asked = w.run("bob", &["--json", "ask", &id, "--into", &into_arg]);
    let said = text(&asked.stderr);
    assert_eq!(asked.status.code(), Some(0), "{said}");
    let lines = json_lines(&asked.stdout);
    assert_eq!(events(&lines, "ask_answer")[0]["answer"], "resending");
    let resuming = events(&lines, "resuming");
    assert_eq!(resuming.len(), 1, "{lines:?}");
    assert!(resuming[0]["offset"].as_u64().is_some_and(|o| o > 0));
    assert_eq!(resuming[0]["prefix_verified"], true, "{lines:?}");
    assert_eq!(events(&lines, "verified").len(), 1, "{lines:?}");
    assert!(
        std::fs::read(into.join("asked.bin")).expect("received")
            == std::fs::read(&source).expect("source"),
        "byte for byte"
    );
    assert!(partials(&into).is_empty());
    let after = w.history("bob");
    assert_eq!(after[0]["id"].as_str(), Some(id.as_str()));
    assert!(after[0]["final_path"].is_string(), "{after:?}");
    let served: Vec<Value> = alice_rx.try_iter().collect();
    let answers: Vec<&Value> = events(&served, "asked_again");
    assert_eq!(
        answers
            .iter()
            .map(|a| a["answer"].as_str())
            .collect::<Vec<_>>(),
        [Some("file_changed"), Some("resending")],
        "{served:?}"
    );
    assert!(answers.iter().all(|a| a["from_account"] == bob.as_str()));
    let _ = alice;
    signal(&alice_listener, "-INT");
    finish(alice_listener);
    // Alice's record follows the resend: finished for Bob's device, with the digest.
    let sent = w.history("alice");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let part = &sent[0]["devices"]
        .as_object()
        .and_then(|d| d.values().next().cloned())
        .expect("bob's part");
    assert_eq!(part["transfer"].as_str(), Some(id.as_str()));
    assert_eq!(part["state"], "finished", "{sent:?}");
    assert_eq!(
        sent[0]["sha3_512"],
        events(&lines, "verified")[0]["sha3_512"]
    );
    let again = w.run("bob", &["ask", &id, "--into", &into_arg]);
    assert_eq!(again.status.code(), Some(2), "received whole already");
}
