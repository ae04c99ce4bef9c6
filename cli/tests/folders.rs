//! `ferry send PATH…` with folders, between two real processes (`PROTOCOL.md` §14): a tree
//! with nested and empty folders, a few hundred small files and a large one, and a file
//! beside it, arrive as one offer, byte for byte, with the tree's shape; a symlink inside the
//! folder is left out and said.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{World, events, json_lines, make_file, text};

/// Longest any one process may run here.
const LIMIT: Duration = Duration::from_secs(180);
/// Small files in the tree.
const SMALL: usize = 300;

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
    assert_eq!(offer["files"], SMALL + 2);
    assert_eq!(offer["folders"], 4, "trip, sub, deeper, empty");
    assert_eq!(offer["decision"], "accept");
    assert_eq!(
        events(&listen_lines, "incoming").len(),
        0,
        "not asked file by file"
    );
    assert_eq!(events(&listen_lines, "verified").len(), SMALL + 2);
    let send_lines = json_lines(&sent.stdout);
    assert_eq!(events(&send_lines, "done")[0]["delivered"], 1);
    assert_eq!(events(&send_lines, "done")[0]["files"], SMALL + 2);
    let left_out = events(&send_lines, "left_out");
    assert_eq!(left_out.len(), 1, "the symlink is left out, and said");
    assert!(
        left_out[0]["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("trip/link"))
    );
}
