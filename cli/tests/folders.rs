//! `ferry send PATH…` with folders, between two real processes (`PROTOCOL.md` §14): a tree
//! with nested and empty folders, 1,000 small files and two large ones, and a file beside
//! it, arrive as one offer, byte for byte, with the tree's shape; a symlink inside the folder
//! is left out and said. A folder send killed half-way and run again resumes per file.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{World, events, json_lines, make_file, text};

/// Longest any one process may run here.
const LIMIT: Duration = Duration::from_secs(180);
/// Small files in the tree.
const SMALL: usize = 1000;

/// Every file and folder below `root`, by its path relative to it: a file's bytes, or `None`
/// for a folder.
fn tree_of(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("list") {
            let entry = entry.expect("entry");
            let path = entry.path();
            let rel = path.strip_prefix(root).expect("below").to_owned();
            let kind = entry.file_type().expect("type");
            if kind.is_dir() {
                out.insert(rel, None);
                stack.push(path);
            } else if kind.is_file() {
                out.insert(rel, Some(std::fs::read(&path).expect("read")));
            }
        }
    }
    out
}

#[test]
fn a_folder_and_a_file_arrive_as_one_offer_byte_for_byte() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let trip = w.path("trip");
    std::fs::create_dir_all(trip.join("sub/deeper")).expect("folders");
    std::fs::create_dir_all(trip.join("empty")).expect("an empty folder");
    for n in 0..SMALL {
        let folder = match n % 3 {
            0 => trip.clone(),
            1 => trip.join("sub"),
            _ => trip.join("sub/deeper"),
        };
        make_file(&folder.join(format!("small {n:03}.txt")), 10 + n * 7);
    }
    make_file(&trip.join("sub/large.bin"), 8 * 1024 * 1024 + 3);
    make_file(&trip.join("sub/deeper/large 2.bin"), 5 * 1024 * 1024 + 11);
    std::os::unix::fs::symlink("/etc/hostname", trip.join("link")).expect("a symlink");
    let notes = w.path("notes.txt");
    make_file(&notes, 4321);
    let into = w.path("received");

    let listener = w
        .ferry("bob")
        .args(["--json", "listen", "--once", "--accept-all", "--into"])
        .arg(&into)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts");
    // Its output is read from now on: a listener whose pipe fills (a few hundred files of
    // JSON lines) blocks on its next line, and its node with it.
    let listener = std::thread::spawn(move || common::finish(listener, LIMIT));
    let sent = w.run(
        "alice",
        &[
            "--json",
            "send",
            &trip.to_string_lossy(),
            &notes.to_string_lossy(),
            "--to",
            &bob,
        ],
    );
    let received = listener.join().expect("the listener's output");
    assert_eq!(sent.status.code(), Some(0), "send: {}", text(&sent.stderr));
    assert_eq!(
        received.status.code(),
        Some(0),
        "listen: {}{}",
        text(&received.stdout),
        text(&received.stderr)
    );

    let mut want = tree_of(&trip);
    want.remove(Path::new("link"));
    assert_eq!(
        tree_of(&into.join("trip")),
        want,
        "the tree arrived whole, without the symlink"
    );
    assert!(into.join("trip/empty").is_dir(), "the empty folder is kept");
    assert_eq!(
        std::fs::read(into.join("notes.txt")).expect("notes"),
        std::fs::read(&notes).expect("source")
    );
    let private = std::fs::read_dir(into.join(".ferry-partial"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(private, 0, "no partial file left");

    let listen_lines = json_lines(&received.stdout);
    let offer = &events(&listen_lines, "incoming_files")[0];
    assert_eq!(offer["files"], SMALL + 3);
    assert_eq!(offer["folders"], 4, "trip, sub, deeper, empty");
    assert_eq!(offer["decision"], "accept");
    assert_eq!(
        events(&listen_lines, "incoming").len(),
        0,
        "not asked file by file"
    );
    assert_eq!(events(&listen_lines, "verified").len(), SMALL + 3);
    let send_lines = json_lines(&sent.stdout);
    assert_eq!(events(&send_lines, "done")[0]["delivered"], 1);
    assert_eq!(events(&send_lines, "done")[0]["files"], SMALL + 3);
    let left_out = events(&send_lines, "left_out");
    assert_eq!(left_out.len(), 1, "the symlink is left out, and said");
    assert!(
        left_out[0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("trip/link"))
    );
}

/// A folder send killed half-way and run again, with one listener across both: the second
/// run takes the send up under its ids (`again`), the listener is offered only the files it
/// has not verified, the large file it kept part of resumes from it on both sides, the tree
/// lands in the same folder (no `trip (1)`), byte for byte, and nothing is left in the
/// private folder. `ferry history` shows the send finished.
#[test]
fn a_folder_send_killed_and_run_again_resumes_per_file() {
    use std::io::{BufRead as _, BufReader};
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let trip = w.path("trip");
    std::fs::create_dir_all(trip.join("sub")).expect("folders");
    for n in 0..20 {
        make_file(&trip.join(format!("small {n:02}.txt")), 100 + n);
    }
    make_file(&trip.join("sub/large.bin"), 64 * 1024 * 1024);
    let into = w.path("received");
    let send = || {
        w.ferry("alice")
            .args(["--json", "send"])
            .arg(&trip)
            .args(["--to", &bob])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferry send starts")
    };

    let mut listener = w
        .ferry("bob")
        .args(["--json", "listen", "--accept-all", "--into"])
        .arg(&into)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts");
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    let stdout = listener.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                let _ = tx.send(v);
            }
        }
    });
    let mut seen = Vec::new();
    let mut until = |pick: &dyn Fn(&[serde_json::Value]) -> bool| loop {
        let line = rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("{e} after {seen:?}"));
        seen.push(line);
        if pick(&seen) {
            return seen.clone();
        }
    };

    // 1. The small files arrive and the large one is under way; once the sender's record
    // holds what was verified (it writes it within 200 ms), the sender is killed.
    let mut sender = send();
    until(&|lines| {
        let verified = events(lines, "verified").len();
        verified >= 20
            && lines.iter().any(|v| {
                v["event"] == "progress" && v["done"].as_u64().is_some_and(|d| d > 4 << 20)
            })
    });
    let records = w.path("alice").join("records");
    let recorded = || -> usize {
        let Ok(dir) = std::fs::read_dir(&records) else {
            return 0;
        };
        dir.filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with("sent-files-"))
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .map(|r| {
                r["devices"].as_object().map_or(0, |d| {
                    d.values()
                        .map(|p| p["verified"].as_array().map_or(0, Vec::len))
                        .sum()
                })
            })
            .sum()
    };
    let deadline = std::time::Instant::now() + LIMIT;
    while recorded() < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "the record never held the verified files"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sender.kill().expect("kill");
    let killed = common::finish(sender, LIMIT);
    assert_eq!(killed.status.code(), None, "killed");
    let first = json_lines(&killed.stdout);
    let send_id = events(&first, "sending_files")[0]["send"].clone();
    let verified_first = until(&|lines| {
        lines.iter().any(|v| {
            v["event"] == "status"
                && v["status"]
                    .as_str()
                    .is_some_and(|s| s != "ongoing" && s != "finished")
        })
    });
    let verified_first = events(&verified_first, "verified").len();
    assert!(verified_first < 21, "the large file was not done");

    // 2. The same send again, to the same listener.
    let sent = common::finish(send(), LIMIT);
    assert_eq!(sent.status.code(), Some(0), "send: {}", text(&sent.stderr));
    let second = json_lines(&sent.stdout);
    let start = &events(&second, "sending_files")[0];
    assert_eq!(start["again"], true, "taken up again");
    assert_eq!(start["send"], send_id, "under its id");
    let lines = until(&|lines| {
        events(lines, "incoming_files").len() == 2
            && lines.iter().any(|v| {
                v["event"] == "status"
                    && v["status"] == "finished"
                    && v["transfer"] == events(lines, "incoming_files")[1]["transfer"]
            })
    });
    let offers = events(&lines, "incoming_files");
    assert_eq!(
        offers[0]["transfer"], offers[1]["transfer"],
        "the same manifest id"
    );
    assert_eq!(offers[0]["resuming"], false);
    assert_eq!(offers[1]["resuming"], true, "the listener says it resumes");
    assert_eq!(
        offers[1]["files"],
        21 - verified_first,
        "only what Bob has not verified is offered again"
    );
    let resumed = events(&lines, "resuming");
    assert_eq!(resumed.len(), 1, "{resumed:?}");
    assert!(resumed[0]["offset"].as_u64().is_some_and(|o| o > 0));
    assert_eq!(
        events(&second, "resuming").len(),
        1,
        "the sender says so too"
    );
    let _ = std::process::Command::new("kill")
        .args(["-INT", &listener.id().to_string()])
        .status();
    let _ = common::finish(listener, LIMIT);

    assert_eq!(
        tree_of(&into.join("trip")),
        tree_of(&trip),
        "the whole tree, byte for byte"
    );
    assert!(!into.join("trip (1)").exists(), "in the same folder");
    let private: Vec<_> = std::fs::read_dir(into.join(".ferry-partial"))
        .map(|d| d.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(
        private.is_empty(),
        "nothing left in the private folder: {private:?}"
    );
    let history = json_lines(&w.run("alice", &["--json", "history"]).stdout);
    let record = &events(&history, "files_record")[0];
    assert_eq!(record["id"], send_id);
    assert_eq!(record["devices"].as_object().map(|d| d.len()), Some(1));
}
