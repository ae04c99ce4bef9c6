//! The real `ferry` binary, run as separate processes in temporary homes: identities, a
//! `listen` and a `send` that find each other through a folder DHT, refusals and cancels and
//! their exit codes, unusable identity files, and `--json` lines.

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{World, events, json_lines, make_file, text};
use serde_json::Value;

/// Longest any one process may run here.
const LIMIT: Duration = Duration::from_secs(90);

/// Waits for `child` (at most [`LIMIT`], then kills it) and collects its output.
fn finish(child: Child) -> Output {
    common::finish(child, LIMIT)
}

fn code(status: ExitStatus) -> Option<i32> {
    status.code()
}

fn files_in(dir: &Path) -> Vec<String> {
    let list = |dir: &Path| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Partial data is in the private folder: listed as `.ferry-partial/<name>`, and an empty
    // private folder is not listed.
    let private = ".ferry-partial";
    let mut names: Vec<String> = list(dir)
        .into_iter()
        .filter(|n| n != private)
        .chain(
            list(&dir.join(private))
                .into_iter()
                .map(|n| format!("{private}/{n}")),
        )
        .collect();
    names.sort();
    names
}

#[test]
fn account_new_then_show_and_no_second_account_over_it() {
    let w = World::new(LIMIT);
    let id = w.account("alice");
    assert_eq!(id.len(), 40, "{id}");
    let show = w.run("alice", &["--json", "account", "show"]);
    assert_eq!(code(show.status), Some(0), "{}", text(&show.stderr));
    let shown = json_lines(&show.stdout).remove(0);
    assert_eq!(shown["account"], id.as_str());
    assert_eq!(shown["device"].as_str().map(str::len), Some(64));
    assert_eq!(shown["account_key_here"], true);

    let plain = w.run("alice", &["account", "show"]);
    assert!(text(&plain.stdout).contains(&id), "{}", text(&plain.stdout));

    let again = w.run("alice", &["account", "new"]);
    assert_eq!(code(again.status), Some(2));
    assert!(
        text(&again.stderr).contains("already exists"),
        "{}",
        text(&again.stderr)
    );

    #[cfg(unix)]
    for file in ["account.pem", "device.pem"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(w.path("alice").join(file))
            .expect("the identity file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[test]
fn a_device_is_added_imported_elsewhere_and_revoked() {
    let w = World::new(LIMIT);
    let id = w.account("alice");
    let file = w.path("laptop.pem");
    let file_text = file.to_string_lossy().into_owned();
    let add = w.run("alice", &["--json", "device", "add", "--out", &file_text]);
    assert_eq!(code(add.status), Some(0), "{}", text(&add.stderr));
    let device = json_lines(&add.stdout)[0]["device"]
        .as_str()
        .expect("a device id")
        .to_owned();

    let import = w.run("laptop", &["device", "import", &file_text]);
    assert_eq!(code(import.status), Some(0), "{}", text(&import.stderr));
    let show = w.run("laptop", &["--json", "account", "show"]);
    let shown = json_lines(&show.stdout).remove(0);
    assert_eq!(shown["account"], id.as_str(), "the same account");
    assert_eq!(shown["device"], device.as_str(), "the device of the file");
    assert_eq!(shown["account_key_here"], false);

    // Only the machine with the account key issues or revokes devices.
    let denied = w.run("laptop", &["device", "add"]);
    assert_eq!(code(denied.status), Some(3), "{}", text(&denied.stderr));

    let revoke = w.run("alice", &["--json", "device", "revoke", &device]);
    assert_eq!(code(revoke.status), Some(0), "{}", text(&revoke.stderr));
    assert_eq!(json_lines(&revoke.stdout)[0]["list_number"], 1);
    let again = w.run("alice", &["--json", "device", "revoke", &device]);
    assert_eq!(
        json_lines(&again.stdout)[0]["list_number"],
        2,
        "lists are numbered up"
    );
    assert!(w.path("alice").join("revocations.der").exists());

    let bad = w.run("alice", &["device", "revoke", "not-an-id"]);
    assert_eq!(code(bad.status), Some(2));
    assert!(
        text(&bad.stderr).contains("not a device id"),
        "{}",
        text(&bad.stderr)
    );
}

#[test]
fn unusable_or_missing_identity_files_say_so_with_code_3() {
    let w = World::new(LIMIT);
    let missing = w.run("nobody", &["account", "show"]);
    assert_eq!(code(missing.status), Some(3));
    assert!(
        text(&missing.stderr).contains("ferry account new"),
        "{}",
        text(&missing.stderr)
    );

    std::fs::create_dir_all(w.path("broken")).expect("a home");
    let device = w.path("broken").join("device.pem");
    std::fs::write(&device, "this is not an identity\n").expect("a bad file");
    for args in [
        &["account", "show"][..],
        &["listen", "--once", "--accept-all"][..],
        &["send", "Cargo.toml", "--to", &"0".repeat(40)][..],
    ] {
        let out = w.run("broken", args);
        assert_eq!(code(out.status), Some(3), "{args:?}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert!(
            err.contains("unusable") && err.contains("device.pem"),
            "{err}"
        );
    }

    // A device file without its announcement is unusable too.
    let w2 = World::new(LIMIT);
    w2.account("alice");
    let pem = std::fs::read_to_string(w2.path("alice").join("device.pem")).expect("device");
    let cut = pem
        .find("-----BEGIN FERRY ANNOUNCEMENT")
        .expect("an announcement");
    std::fs::write(w2.path("alice").join("device.pem"), &pem[..cut]).expect("write");
    let out = w2.run("alice", &["--json", "account", "show"]);
    assert_eq!(code(out.status), Some(3));
    let lines = json_lines(&out.stdout);
    assert_eq!(lines[0]["event"], "error");
    assert_eq!(lines[0]["kind"], "identity");
    assert_eq!(lines[0]["exit_code"], 3);
}

#[test]
fn bad_arguments_exit_with_2() {
    let w = World::new(LIMIT);
    w.account("alice");
    let not_an_id = w.run("alice", &["send", "Cargo.toml", "--to", "bob"]);
    assert_eq!(code(not_an_id.status), Some(2));
    assert!(text(&not_an_id.stderr).contains("not an account id"));
    let no_file = w.run("alice", &["send", "/no/such/file", "--to", &"0".repeat(40)]);
    assert_eq!(code(no_file.status), Some(2));
    assert!(text(&no_file.stderr).contains("/no/such/file"));
    let bad_dht = w.run("alice", &["listen", "--dht", "ftp://x"]);
    assert_eq!(code(bad_dht.status), Some(2));
    let bad_turn = w.run("alice", &["listen", "--turn", "turn://nobody"]);
    assert_eq!(code(bad_turn.status), Some(2));
}

/// Starts `ferry listen --once --json` in `home` with `extra` arguments; its stdin is piped.
fn listen(w: &World, home: &str, into: &Path, extra: &[&str]) -> Child {
    w.ferry(home)
        .args(["--json", "listen", "--once", "--into"])
        .arg(into)
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts")
}

#[test]
fn listen_and_send_in_two_processes_meet_through_the_folder_dht() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let source = w.path("photo of the sea.bin");
    make_file(&source, 3 * 1024 * 1024 + 17);
    let into = w.path("received");

    let listener = listen(&w, "bob", &into, &["--accept-all"]);
    let started = Instant::now();
    let sent = w.run(
        "alice",
        &["--json", "send", &source.to_string_lossy(), "--to", &bob],
    );
    let received = finish(listener);
    eprintln!("listen + send took {:?}", started.elapsed());
    assert_eq!(code(sent.status), Some(0), "send: {}", text(&sent.stderr));
    assert_eq!(
        code(received.status),
        Some(0),
        "listen: {}",
        text(&received.stderr)
    );

    let got = std::fs::read(into.join("photo of the sea.bin")).expect("the received file");
    let want = std::fs::read(&source).expect("the source");
    assert!(got == want, "the file arrived byte for byte");
    assert!(
        !w.path("alice").join("received").exists(),
        "a send makes no receive folder in the sender's home"
    );
    // Its log, written to a pipe, is plain text: the warning is there, no colour codes.
    let log = text(&received.stderr);
    assert!(log.contains("--accept-all with no contacts"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "escape codes in a piped log: {log:?}"
    );
    assert_eq!(
        files_in(&into),
        ["photo of the sea.bin"],
        "no partial file left behind"
    );

    // Both sides' JSON: the same verified digest.
    let send_lines = json_lines(&sent.stdout);
    let listen_lines = json_lines(&received.stdout);
    let sent_digest = &events(&send_lines, "verified")[0]["sha3_512"];
    let got_digest = &events(&listen_lines, "verified")[0]["sha3_512"];
    assert_eq!(sent_digest.as_str().map(str::len), Some(128));
    assert_eq!(sent_digest, got_digest);
    assert_eq!(events(&send_lines, "done")[0]["delivered"], 1);
    let incoming = &events(&listen_lines, "incoming")[0];
    assert_eq!(incoming["decision"], "accept");
    assert_eq!(incoming["size"], 3 * 1024 * 1024 + 17);
    let progress = events(&send_lines, "progress");
    assert!(!progress.is_empty(), "progress lines");
    assert!(
        progress
            .windows(2)
            .all(|p| p[0]["done"].as_u64() <= p[1]["done"].as_u64()),
        "progress never goes back"
    );
}

#[test]
fn plain_output_when_not_a_terminal() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let source = w.path("notes.txt");
    make_file(&source, 100_000);
    let into = w.path("in");
    let listener = w
        .ferry("bob")
        .args(["listen", "--once", "--accept-all", "--into"])
        .arg(&into)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts");
    let sent = w.run("alice", &["send", &source.to_string_lossy(), "--to", &bob]);
    let received = finish(listener);
    assert_eq!(code(sent.status), Some(0), "{}", text(&sent.stderr));
    assert_eq!(code(received.status), Some(0), "{}", text(&received.stderr));
    let out = text(&sent.stdout);
    assert!(out.contains("SHA3-512 verified"), "{out}");
    assert!(
        !out.contains('\r') && !out.contains('\u{1b}'),
        "no bar drawing: {out:?}"
    );
    assert!(text(&received.stdout).contains("SHA3-512 verified"));
}

#[test]
fn a_refused_transfer_exits_6_on_both_sides_and_leaves_nothing() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let source = w.path("unwanted.bin");
    make_file(&source, 50_000);
    let into = w.path("received");

    // A program answers through the pipe (--ask): the answer is written before the offer
    // comes, and waits for the question.
    let mut listener = listen(&w, "bob", &into, &["--ask"]);
    listener
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"n\n")
        .expect("an answer");
    let sent = w.run(
        "alice",
        &["--json", "send", &source.to_string_lossy(), "--to", &bob],
    );
    let received = finish(listener);
    assert_eq!(code(sent.status), Some(6), "send: {}", text(&sent.stderr));
    assert_eq!(
        code(received.status),
        Some(6),
        "listen: {}",
        text(&received.stderr)
    );
    assert!(text(&sent.stderr).contains("refused"));
    let error = json_lines(&sent.stdout).pop().expect("a last line");
    assert_eq!(error["event"], "error");
    assert_eq!(error["kind"], "refused");
    assert_eq!(files_in(&into), Vec::<String>::new(), "nothing kept");
}

#[cfg(unix)]
#[test]
fn an_interrupted_send_cancels_and_both_sides_exit_7() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let source = w.path("big.bin");
    make_file(&source, 200_000);
    let into = w.path("received");

    // Nobody answers the pipe (--ask): the offer waits, and the sender is interrupted
    // meanwhile.
    let mut listener = listen(&w, "bob", &into, &["--ask"]);
    let _keep_stdin_open = listener.stdin.take();
    let stdout = listener.stdout.take().expect("stdout");
    let (asked_tx, asked) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.contains("wait_host_acceptance") {
                let _ = asked_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    let sender = w
        .ferry("alice")
        .args(["--json", "send"])
        .arg(&source)
        .args(["--to", &bob])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry send starts");
    asked.recv_timeout(LIMIT).expect("the offer reaches bob");
    let interrupted = Command::new("kill")
        .args(["-INT", &sender.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let sent = finish(sender);
    let received = finish(listener);
    let listen_lines = reader.join().expect("the reader");
    assert_eq!(code(sent.status), Some(7), "send: {}", text(&sent.stderr));
    assert_eq!(
        code(received.status),
        Some(7),
        "listen: {}",
        text(&received.stderr)
    );
    assert!(
        listen_lines
            .iter()
            .any(|l| l.contains("cancelled by the peer")),
        "{listen_lines:?}"
    );
    assert_eq!(files_in(&into), Vec::<String>::new(), "nothing kept");
}

#[test]
fn small_pictures_are_taken_without_asking_when_allowed() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let picture = w.path("Holiday.PNG");
    make_file(&picture, 40_000);
    // A picture's first bytes: files taken without asking must start as one.
    let mut bytes = std::fs::read(&picture).expect("picture");
    bytes[..8].copy_from_slice(b"\x89PNG\r\n\x1a\n");
    std::fs::write(&picture, bytes).expect("picture");
    let into = w.path("pictures");
    // Standard input is closed: anything that needed asking would be refused.
    let listener = w
        .ferry("bob")
        .args([
            "--json",
            "listen",
            "--once",
            "--auto-accept-images-under",
            "20MB",
            "--into",
        ])
        .arg(&into)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts");
    let sent = w.run("alice", &["send", &picture.to_string_lossy(), "--to", &bob]);
    let received = finish(listener);
    assert_eq!(code(sent.status), Some(0), "{}", text(&sent.stderr));
    assert_eq!(code(received.status), Some(0), "{}", text(&received.stderr));
    let lines = json_lines(&received.stdout);
    assert_eq!(events(&lines, "incoming")[0]["decision"], "auto");
    assert_eq!(files_in(&into), ["Holiday.PNG"]);
}

#[test]
fn a_file_that_is_not_a_picture_is_refused_when_nobody_can_answer() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let file = w.path("tool.exe");
    make_file(&file, 40_000);
    let into = w.path("in");
    let listener = w
        .ferry("bob")
        .args([
            "listen",
            "--once",
            "--auto-accept-images-under",
            "20M",
            "--into",
        ])
        .arg(&into)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts");
    let sent = w.run("alice", &["send", &file.to_string_lossy(), "--to", &bob]);
    let received = finish(listener);
    assert_eq!(code(sent.status), Some(6), "{}", text(&sent.stderr));
    assert_eq!(code(received.status), Some(6), "{}", text(&received.stderr));
    // Standard input is not a terminal: no question, a refusal that says what to do.
    let said = text(&received.stdout);
    assert!(said.contains("standard input is not a terminal"), "{said}");
    assert!(
        said.contains("--accept-all") && said.contains("--from"),
        "{said}"
    );
    assert!(
        !said.contains("Accept?"),
        "no prompt nobody can see: {said}"
    );
    assert_eq!(files_in(&into), Vec::<String>::new());
}

/// Takes [`ferry_proto::node::LOOKUP_TIMEOUT`] (15 s): nobody announces the account.
#[test]
fn an_unknown_contact_exits_4() {
    let w = World::new(LIMIT);
    w.account("alice");
    let file = w.path("letter.txt");
    make_file(&file, 1000);
    let nobody = "0123456789abcdef0123456789abcdef01234567";
    let sent = w.run(
        "alice",
        &["--json", "send", &file.to_string_lossy(), "--to", nobody],
    );
    assert_eq!(code(sent.status), Some(4), "{}", text(&sent.stderr));
    assert!(
        text(&sent.stderr).contains("announced itself"),
        "{}",
        text(&sent.stderr)
    );
    let last = json_lines(&sent.stdout).pop().expect("a last line");
    assert_eq!(last["kind"], "unknown_contact");
}

/// Takes [`ferry_proto::node::ANSWER_TIMEOUT`] (30 s): bob's device announced itself, then
/// its process died, so nobody answers the connection request.
#[cfg(unix)]
#[test]
fn a_device_that_announced_itself_and_died_exits_5_with_the_stage() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let mut listener = listen(&w, "bob", &w.path("in"), &["--accept-all"]);
    let stdout = listener.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("the listening line");
    assert!(first.contains("listening"), "{first}");
    // The announcement is in the folder once the node's put is done; give it a moment.
    std::thread::sleep(Duration::from_millis(500));
    listener.kill().expect("kill");
    let _ = listener.wait();

    let file = w.path("letter.txt");
    make_file(&file, 1000);
    let sent = w.run("alice", &["send", &file.to_string_lossy(), "--to", &bob]);
    assert_eq!(code(sent.status), Some(5), "{}", text(&sent.stderr));
    let err = text(&sent.stderr);
    assert!(err.contains("could not connect"), "{err}");
}

/// `listen` and `send` in two processes, both relay only (`--relay-only`) on real coturns:
/// Alice on one, Bob on two (`--turn` twice, a relayed address on each). Neither offers or
/// connects from an address of its own, so the only path is relay to relay: Alice's
/// connection leaves from her relay (RFC 6062 Connect through her allocation) to one of
/// Bob's relayed addresses, and both ends name the path `relay-relay`. (Before relay to
/// relay, only Bob could be relay only; and before that, relay only still connected from
/// host addresses.)
#[test]
fn listen_and_send_through_a_turn_relay() {
    // Both devices relay through this coturn, so its relay carries traffic both ways at once:
    // with its default relay threads that can stall (DESIGN.md), hence one relay thread.
    let Some(coturn) = ferry_tests::coturn::Coturn::start(&["--relay-threads=1"]) else {
        return;
    };
    // A second coturn: Bob gives both (`--turn` twice) and has a relayed address on each.
    let Some(second) = ferry_tests::coturn::Coturn::start(&["--relay-threads=1"]) else {
        return;
    };
    let url = |port: u16| {
        format!(
            "turn://{}:{}@127.0.0.1:{}?realm={}",
            ferry_tests::coturn::USER,
            ferry_tests::coturn::PASSWORD,
            port,
            ferry_tests::coturn::REALM
        )
    };
    let (turn, turn2) = (url(coturn.port), url(second.port));
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let source = w.path("relayed.bin");
    make_file(&source, 512 * 1024);
    let into = w.path("in");
    let listener = listen(
        &w,
        "bob",
        &into,
        &[
            "-v",
            "--accept-all",
            "--relay-only",
            "--turn",
            &turn,
            "--turn",
            &turn2,
        ],
    );
    let sent = w.run(
        "alice",
        &[
            "send",
            &source.to_string_lossy(),
            "--to",
            &bob,
            "--relay-only",
            "--turn",
            &turn,
        ],
    );
    let received = finish(listener);
    let said = text(&sent.stdout);
    assert!(
        said.lines().any(
            |l| l.starts_with("connected to device ") && l.ends_with(": relay-relay (relayed)")
        ),
        "send reports the relay-to-relay path: {said}"
    );
    let heard = json_lines(&received.stdout);
    let connected = events(&heard, "connected");
    assert!(
        connected.len() == 1
            && connected[0]["path"] == "relay-relay"
            && connected[0]["class"] == "relayed"
            && connected[0]["local"] == "relay"
            && connected[0]["remote"] == "relay",
        "listen's connected event names both relayed candidates: {connected:?}"
    );
    assert_eq!(code(sent.status), Some(0), "send: {}", text(&sent.stderr));
    assert_eq!(
        code(received.status),
        Some(0),
        "listen: {}",
        text(&received.stderr)
    );
    // `-v` logs each relayed address as its allocation comes, and the selected pair.
    let log = text(&received.stderr);
    assert!(log.contains("relay allocated"), "{log}");
    assert!(log.contains("ICE pair selected"), "{log}");
    let got = std::fs::read(into.join("relayed.bin")).expect("the received file");
    assert!(
        got == std::fs::read(&source).expect("the source"),
        "byte for byte"
    );
}

/// Relay to relay over IPv6: both devices relay only, through a coturn given by its IPv6
/// address (`turn://…@[::1]:port`), so each allocation is IPv6 (REQUESTED-ADDRESS-FAMILY)
/// and each offers nothing but its IPv6 relayed candidates: `relay-relay` at both ends means
/// the file went through IPv6 relayed addresses.
#[test]
fn two_relay_only_devices_meet_through_an_ipv6_relay() {
    let Some(coturn) = ferry_tests::coturn::Coturn::start(&["--relay-threads=1"]) else {
        return;
    };
    let turn = format!(
        "turn://{}:{}@[::1]:{}?realm={}",
        ferry_tests::coturn::USER,
        ferry_tests::coturn::PASSWORD,
        coturn.port,
        ferry_tests::coturn::REALM
    );
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let source = w.path("over-six.bin");
    make_file(&source, 256 * 1024 + 3);
    let into = w.path("in");
    let relay = ["--relay-only", "--turn", turn.as_str()];
    let listener = listen(&w, "bob", &into, &[&["--accept-all"][..], &relay].concat());
    let source_arg = source.to_string_lossy();
    let sent = w.run(
        "alice",
        &[&["--json", "send", &source_arg, "--to", &bob][..], &relay].concat(),
    );
    let received = finish(listener);
    assert_eq!(code(sent.status), Some(0), "send: {}", text(&sent.stderr));
    assert_eq!(
        code(received.status),
        Some(0),
        "listen: {}",
        text(&received.stderr)
    );
    for (end, out) in [("send", &sent.stdout), ("listen", &received.stdout)] {
        let lines = json_lines(out);
        let connected = events(&lines, "connected");
        assert!(
            connected.len() == 1 && connected[0]["path"] == "relay-relay",
            "{end} names the relay-to-relay path: {connected:?}"
        );
    }
    let got = std::fs::read(into.join("over-six.bin")).expect("the received file");
    assert!(
        got == std::fs::read(&source).expect("the source"),
        "byte for byte"
    );
}

/// `listen` and `send` in two processes meeting on OpenDHT through a `dhtnode` proxy
/// (`--dht http://…`), inside a network namespace of their own.
#[test]
fn listen_and_send_meet_through_an_opendht_proxy() {
    if !ferry_tests::dhtnode::in_network_namespace("listen_and_send_meet_through_an_opendht_proxy")
    {
        return;
    }
    let nodes = ferry_tests::dhtnode::DhtNodes::start();
    let dht = format!("http://{}", nodes.proxy);
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let source = w.path("over-opendht.bin");
    make_file(&source, 256 * 1024);
    let into = w.path("in");
    let listener = listen(&w, "bob", &into, &["--accept-all", "--dht", &dht]);
    let sent = w.run(
        "alice",
        &[
            "--json",
            "send",
            &source.to_string_lossy(),
            "--to",
            &bob,
            "--dht",
            &dht,
        ],
    );
    let received = finish(listener);
    assert_eq!(code(sent.status), Some(0), "send: {}", text(&sent.stderr));
    assert_eq!(
        code(received.status),
        Some(0),
        "listen: {}",
        text(&received.stderr)
    );
    let got = std::fs::read(into.join("over-opendht.bin")).expect("the received file");
    assert!(
        got == std::fs::read(&source).expect("the source"),
        "byte for byte"
    );
    // The folder DHT was not used.
    assert!(!w.path("dht").exists());
}

/// A device revoked with `ferry device revoke` is refused by the nodes of the home that
/// revoked it: before, a file sent to the account reaches it; after, its announcement no
/// longer counts, so the account has no device left to reach (exit 4, after
/// [`ferry_proto::node::LOOKUP_TIMEOUT`]).
#[test]
fn a_revoked_device_is_no_longer_reached_by_its_own_account() {
    let w = World::new(LIMIT);
    let account = w.account("main");
    let laptop_file = w.path("laptop.pem");
    let add = w.run(
        "main",
        &[
            "--json",
            "device",
            "add",
            "--out",
            &laptop_file.to_string_lossy(),
        ],
    );
    assert_eq!(code(add.status), Some(0), "{}", text(&add.stderr));
    let laptop = json_lines(&add.stdout)[0]["device"]
        .as_str()
        .expect("a device id")
        .to_owned();
    let import = w.run(
        "laptop",
        &["device", "import", &laptop_file.to_string_lossy()],
    );
    assert_eq!(code(import.status), Some(0), "{}", text(&import.stderr));
    let note = w.path("note.txt");
    make_file(&note, 2000);

    // Before: the laptop gets what is sent to the account.
    let into = w.path("laptop-in");
    let listener = listen(&w, "laptop", &into, &["--accept-all"]);
    let sent = w.run("main", &["send", &note.to_string_lossy(), "--to", &account]);
    let received = finish(listener);
    assert_eq!(code(sent.status), Some(0), "{}", text(&sent.stderr));
    assert_eq!(code(received.status), Some(0), "{}", text(&received.stderr));

    // After: main's node no longer takes the laptop's announcement.
    let revoke = w.run("main", &["device", "revoke", &laptop]);
    assert_eq!(code(revoke.status), Some(0), "{}", text(&revoke.stderr));
    let into = w.path("laptop-in-after");
    let mut listener = listen(&w, "laptop", &into, &["--accept-all"]);
    let sent = w.run("main", &["send", &note.to_string_lossy(), "--to", &account]);
    let _ = listener.kill();
    let _ = listener.wait();
    assert_eq!(code(sent.status), Some(4), "{}", text(&sent.stderr));
    assert_eq!(
        files_in(&into),
        Vec::<String>::new(),
        "nothing reached the laptop"
    );
}

/// `listen` without `--once` runs until interrupted, then stops cleanly with 0.
#[cfg(unix)]
#[test]
fn an_interrupted_idle_listen_exits_0() {
    let w = World::new(LIMIT);
    w.account("bob");
    let mut listener = w
        .ferry("bob")
        .args(["--json", "listen", "--accept-all", "--into"])
        .arg(w.path("in"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts");
    let mut first = String::new();
    BufReader::new(listener.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("the listening line");
    assert_eq!(
        serde_json::from_str::<Value>(&first).expect("JSON")["event"],
        "listening"
    );
    let interrupted = Command::new("kill")
        .args(["-INT", &listener.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let out = finish(listener);
    assert_eq!(code(out.status), Some(0), "{}", text(&out.stderr));
}

/// `config.json` in the home gives `dht` and `into` when no flag or variable does; a file
/// that is not usable says which and why, with exit code 2.
#[test]
fn settings_come_from_config_json_in_the_home() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let into = w.path("from-config");
    let settings = serde_json::json!({
        "dht": format!("file:{}", w.path("dht").display()),
        "into": into,
    });
    std::fs::write(w.path("bob").join("config.json"), settings.to_string()).expect("config");
    let source = w.path("configured.txt");
    make_file(&source, 5000);
    // Bob's listen has neither FERRY_DHT nor --into: both come from its config.json.
    let listener = w
        .ferry("bob")
        .env_remove("FERRY_DHT")
        .args(["listen", "--once", "--accept-all"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts");
    let sent = w.run("alice", &["send", &source.to_string_lossy(), "--to", &bob]);
    let received = finish(listener);
    assert_eq!(code(sent.status), Some(0), "{}", text(&sent.stderr));
    assert_eq!(code(received.status), Some(0), "{}", text(&received.stderr));
    assert_eq!(files_in(&into), ["configured.txt"]);

    std::fs::write(w.path("bob").join("config.json"), r#"{"dhtt": "file:/x"}"#).expect("config");
    let bad = w.run("bob", &["listen", "--once"]);
    assert_eq!(code(bad.status), Some(2));
    let err = text(&bad.stderr);
    assert!(err.contains("config.json") && err.contains("dhtt"), "{err}");

    // Several TURN servers: a list in config.json, or FERRY_TURN separated by spaces. Every
    // one is read: the second, not a URL, is named in the refusal.
    let good = "turn://u:p@127.0.0.1:3478?realm=r";
    let list = serde_json::json!({ "turn": [good, "second-not-a-url"] });
    std::fs::write(w.path("bob").join("config.json"), list.to_string()).expect("config");
    let bad = w.run("bob", &["listen", "--once"]);
    assert_eq!(code(bad.status), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("second-not-a-url"));
    std::fs::remove_file(w.path("bob").join("config.json")).expect("config removed");
    let bad = w
        .ferry_piped("bob")
        .env("FERRY_TURN", format!("{good}  third-not-a-url"))
        .args(["listen", "--once"])
        .output()
        .expect("ferry runs");
    assert_eq!(code(bad.status), Some(2), "{}", text(&bad.stderr));
    assert!(text(&bad.stderr).contains("third-not-a-url"));
}

/// Runs `ferry --json listen --once --accept-all` with its receive folder on a 64 KiB tmpfs,
/// in a mount namespace of its own (`unshare -m`, root); `None` when this user cannot. When
/// the listener has exited, and before the namespace (and the tmpfs with it) is gone, what the
/// receive folder holds is written to `listing`, one name a line, hidden names included.
#[cfg(target_os = "linux")]
fn listen_on_a_tiny_disk(w: &World, home: &str, into: &Path, listing: &Path) -> Option<Child> {
    let allowed = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        // Under FERRY_REQUIRE_INTEROP=1 (CI, as root) this is a failure, not a pass.
        ferry_tests::rerun::skip(
            "this user cannot mount a tmpfs in a mount namespace (unshare -m)",
        );
        return None;
    }
    std::fs::create_dir_all(into).expect("the mount point");
    // The tmpfs is mounted on the receive folder, seen by this process alone; mode 0700, since
    // a receive folder every user can write in (a tmpfs's default, 1777) is refused.
    let script = "mount -t tmpfs -o size=64k,mode=0700 tmpfs \"$1\" || exit 100; \
                  dir=$1; listing=$2; shift 2; \"$@\"; rc=$?; \
                  ls -A \"$dir\" > \"$listing\"; exit $rc";
    let spawned = Command::new("unshare")
        .env("FERRY_HOME", w.path(home))
        .env("FERRY_DHT", format!("file:{}", w.path("dht").display()))
        .env_remove("RUST_LOG")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(into)
        .arg(listing)
        .arg(env!("CARGO_BIN_EXE_ferry"))
        .args(["--json", "listen", "--once", "--accept-all", "--into"])
        .arg(into)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare starts");
    Some(spawned)
}

/// A receiving disk that fills up: the receiver stops with "disk full" and exit 9, and so
/// does the sender, told by the receiver's CANCEL; no partial file is given the final name.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_exits_9_on_both_sides() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let source = w.path("too-big.bin");
    make_file(&source, 1024 * 1024);
    let into = w.path("tiny");
    let listing = w.path("tiny-listing.txt");
    let Some(listener) = listen_on_a_tiny_disk(&w, "bob", &into, &listing) else {
        return;
    };
    let sent = w.run(
        "alice",
        &["--json", "send", &source.to_string_lossy(), "--to", &bob],
    );
    let received = finish(listener);
    assert_eq!(
        code(received.status),
        Some(9),
        "listen: {}",
        text(&received.stderr)
    );
    assert!(
        text(&received.stderr).contains("disk full"),
        "{}",
        text(&received.stderr)
    );
    assert_eq!(code(sent.status), Some(9), "send: {}", text(&sent.stderr));
    let error = json_lines(&sent.stdout).pop().expect("a last line");
    assert_eq!(error["kind"], "file");
    // Looked at inside the namespace, after the listener exited and before the tmpfs went
    // with it (looking here afterwards would see the empty mount point whatever happened):
    // no file under any visible name; the partial data the disk could hold may stay, hidden.
    let held = std::fs::read_to_string(&listing).expect("the listing written in the namespace");
    assert!(
        held.lines().all(|name| name.starts_with('.')),
        "only the hidden folder of partial data may stay in the receive folder: {held:?}"
    );
}

/// A long-running `listen` (no `--once`) of `home`, with its `--json` lines arriving on a
/// channel; returns once it says it is listening.
fn long_listener(w: &World, home: &str, into: &Path) -> (Child, mpsc::Receiver<Value>) {
    let mut child = w
        .ferry(home)
        .args(["--json", "listen", "--accept-all", "--into"])
        .arg(into)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ferry listen starts");
    let stdout = child.stdout.take().expect("stdout");
    let (lines, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                let _ = lines.send(v);
            }
        }
    });
    let first = rx.recv_timeout(LIMIT).expect("the listener says something");
    assert_eq!(first["event"], "listening", "{first}");
    (child, rx)
}

/// The open descriptors of a process.
fn descriptors_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// `pid`'s descriptor count once it has not changed for a second (at most 20 s).
fn steady_count(pid: u32) -> usize {
    let until = Instant::now() + Duration::from_secs(20);
    let (mut last, mut same) = (descriptors_of(pid), 0);
    while same < 10 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        let now = descriptors_of(pid);
        same = if now == last { same + 1 } else { 0 };
        last = now;
    }
    last
}

/// Waits until `pid`'s descriptors are back to `baseline` (generously: nothing here is a
/// timing claim); the last count seen.
fn settles_to(pid: u32, baseline: usize) -> usize {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let now = descriptors_of(pid);
        if now <= baseline || Instant::now() > until {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn three_sends_to_one_running_listener_each_succeed_and_leave_no_descriptor_behind() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let into = w.path("received");
    let (mut listener, lines) = long_listener(&w, "bob", &into);
    let pid = listener.id();
    // The listener opens its sockets and threads after it says "listening": the count is
    // taken once a first send has run, and each send after it must leave it unchanged (a
    // leak is per send, so the first one's would show in every later one too).
    let mut baseline = 0;
    for round in 0..4 {
        let source = w.path(&format!("file-{round}.bin"));
        make_file(&source, 256 * 1024 + round);
        let started = Instant::now();
        let sent = w.run(
            "alice",
            &["--json", "send", &source.to_string_lossy(), "--to", &bob],
        );
        assert_eq!(
            code(sent.status),
            Some(0),
            "send {round}: {}",
            text(&sent.stderr)
        );
        if started.elapsed() > Duration::from_secs(5) {
            // Not a failure (a loaded machine is slow), but worth its log when it happens.
            eprintln!("send {round} was slow; its log:\n{}", text(&sent.stderr));
        }
        let verified = events(&json_lines(&sent.stdout), "verified").len();
        assert_eq!(verified, 1, "send {round} is verified");
        // The listener closes its side once the sender leaves: before, every finished send
        // left one connection in CLOSE-WAIT here, and the sender waited its 10-s linger.
        if round == 0 {
            baseline = steady_count(pid);
            continue;
        }
        let left = settles_to(pid, baseline);
        eprintln!(
            "send {round}: {:?}; listener descriptors {baseline} → {left}",
            started.elapsed()
        );
        assert!(
            left <= baseline,
            "send {round} left a descriptor in the listener ({baseline} → {left})"
        );
    }
    let got: Vec<Value> = lines.try_iter().collect();
    assert_eq!(
        events(&got, "verified").len(),
        4,
        "the listener verified all three: {got:?}"
    );
    let _ = listener.kill();
    let _ = listener.wait();
}

/// Two `ferry send` of one home at once to one running listener: both devices' requests are
/// answered (the second from a device already connected gets a connection of its own after
/// a liveness check of the first) and both files verify. Before, one exited 5.
#[test]
fn two_sends_of_one_home_at_once_to_a_running_listener_both_succeed() {
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let into = w.path("received");
    let (mut listener, lines) = long_listener(&w, "bob", &into);
    let sends: Vec<Child> = (0..2)
        .map(|i| {
            let source = w.path(&format!("at-once-{i}.bin"));
            make_file(&source, 300 * 1024 + i);
            w.ferry("alice")
                .args(["--json", "send", &source.to_string_lossy(), "--to", &bob])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("ferry send starts")
        })
        .collect();
    for (i, sent) in sends.into_iter().map(finish).enumerate() {
        assert_eq!(
            code(sent.status),
            Some(0),
            "send {i}: {}",
            text(&sent.stderr)
        );
        assert_eq!(events(&json_lines(&sent.stdout), "verified").len(), 1);
    }
    let verified = wait_for_events(&lines, "verified", 2);
    assert_eq!(verified, 2, "the listener verified both");
    let mut names = files_in(&into);
    names.sort();
    assert_eq!(names, ["at-once-0.bin", "at-once-1.bin"]);
    let _ = listener.kill();
    let _ = listener.wait();
}

/// Waits (at most [`LIMIT`]) until `want` events named `event` came on `lines`; how many did.
fn wait_for_events(lines: &mpsc::Receiver<Value>, event: &str, want: usize) -> usize {
    let until = Instant::now() + LIMIT;
    let mut seen = 0;
    while seen < want {
        let left = until.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(v) if v["event"] == event => seen += 1,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    seen
}

/// The port `pid` listens on at 127.0.0.1, read from `/proc` (its descriptors' socket
/// inodes, then the namespace's TCP table).
fn loopback_port_of(pid: u32) -> Option<u16> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).ok()?;
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (f.get(1)?, f.get(3)?, f.get(9)?);
        let (ip, port) = local.split_once(':')?;
        let listening = *state == "0A" && ip == "0100007F" && inodes.iter().any(|i| i == inode);
        listening.then(|| u16::from_str_radix(port, 16).ok())?
    })
}

/// A stranger holds five hundred silent connections to the listener's port while a contact
/// sends: the listener keeps at most its per-address budget of them (the oldest are closed to
/// make room), the contact's file arrives, and when the stranger lets go the listener is back
/// to its own descriptors.
#[test]
fn a_stranger_holding_hundreds_of_idle_connections_costs_a_listener_a_bounded_few() {
    const HELD: usize = 500;
    // The node's per-address budget of unrouted connections (UNROUTED_PER_SOURCE).
    const PER_SOURCE: usize = 16;
    let w = World::new(LIMIT);
    w.account("alice");
    let bob = w.account("bob");
    let into = w.path("received");
    let (mut listener, lines) = long_listener(&w, "bob", &into);
    let pid = listener.id();
    let first = w.path("first.bin");
    make_file(&first, 64 * 1024);
    let sent = w.run(
        "alice",
        &["--json", "send", &first.to_string_lossy(), "--to", &bob],
    );
    assert_eq!(code(sent.status), Some(0), "{}", text(&sent.stderr));
    let baseline = steady_count(pid);
    let port = loopback_port_of(pid).expect("the listener listens on 127.0.0.1");
    // SECURITY: row 120
    let held: Vec<std::net::TcpStream> = (0..HELD)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    assert_eq!(held.len(), HELD, "the kernel accepted every connection");
    let flooded = steady_count(pid);
    let source = w.path("during.bin");
    make_file(&source, 512 * 1024);
    let sent = w.run(
        "alice",
        &["--json", "send", &source.to_string_lossy(), "--to", &bob],
    );
    assert_eq!(code(sent.status), Some(0), "{}", text(&sent.stderr));
    let during = descriptors_of(pid);
    eprintln!(
        "listener descriptors: {baseline} at rest, {flooded} with {HELD} idle connections \
         held, {during} after a send among them"
    );
    assert!(
        flooded <= baseline + PER_SOURCE + 2,
        "{HELD} idle connections cost {} descriptors",
        flooded - baseline
    );
    drop(held);
    let left = settles_to(pid, baseline);
    assert!(
        left <= baseline,
        "{baseline} → {left} after the stranger let go"
    );
    assert_eq!(wait_for_events(&lines, "verified", 2), 2);
    let _ = listener.kill();
    let _ = listener.wait();
}

#[test]
fn a_second_listener_on_one_home_exits_10_naming_the_first() {
    let w = World::new(LIMIT);
    w.account("bob");
    let into = w.path("received");
    let (mut first, _lines) = long_listener(&w, "bob", &into);
    let second = finish(listen(&w, "bob", &into, &["--accept-all"]));
    assert_eq!(code(second.status), Some(10), "{}", text(&second.stderr));
    let said = text(&second.stderr);
    assert!(
        said.contains(&format!("process {}", first.id())),
        "names the holder: {said}"
    );
    let _ = first.kill();
    let _ = first.wait();
    // Once the first is gone, its lock goes with it.
    let (mut again, _lines) = long_listener(&w, "bob", &into);
    let _ = again.kill();
    let _ = again.wait();
}

#[test]
fn contacts_name_accounts_and_a_listener_with_contacts_refuses_strangers_before_ice() {
    let w = World::new(LIMIT);
    let alice = w.account("alice");
    let bob = w.account("bob");
    w.account("mallory");
    // Names for account ids, on both sides.
    let added = w.run("alice", &["--json", "contact", "add", "bob", &bob]);
    assert_eq!(code(added.status), Some(0), "{}", text(&added.stderr));
    let added = w.run("bob", &["contact", "add", "alice", &alice]);
    assert_eq!(code(added.status), Some(0), "{}", text(&added.stderr));
    let listed = json_lines(&w.run("alice", &["--json", "contact", "list"]).stdout);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0]["name"].as_str(), listed[0]["account"].as_str()),
        (Some("bob"), Some(bob.as_str()))
    );
    let taken = w.run("alice", &["contact", "add", "bob", &alice]);
    assert_eq!(code(taken.status), Some(2), "a name names one account");
    let unknown = w.run("alice", &["send", "x", "--to", "carol"]);
    assert_eq!(code(unknown.status), Some(2));
    assert!(
        text(&unknown.stderr).contains("nor a contact's name"),
        "{}",
        text(&unknown.stderr)
    );

    let into = w.path("in");
    let source = w.path("for-bob.bin");
    make_file(&source, 100_000);
    let listener = listen(&w, "bob", &into, &["--accept-all"]);
    // A stranger who knows bob's account id asks first: bob has contacts, so the request is
    // refused before ICE and the stranger never reaches him.
    let stranger = w
        .ferry("mallory")
        .args(["--json", "send", &source.to_string_lossy(), "--to", &bob])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mallory's send starts");
    let sent = w.run(
        "alice",
        &["--json", "send", &source.to_string_lossy(), "--to", "bob"],
    );
    assert_eq!(
        code(sent.status),
        Some(0),
        "alice sends by name: {}",
        text(&sent.stderr)
    );
    let received = finish(listener);
    assert_eq!(code(received.status), Some(0), "{}", text(&received.stderr));
    let offers = events(&json_lines(&received.stdout), "incoming")
        .iter()
        .map(|o| o["from_account"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>();
    assert_eq!(
        offers,
        std::slice::from_ref(&alice),
        "only alice's file was offered"
    );
    let refused = finish(stranger);
    assert_eq!(
        code(refused.status),
        Some(5),
        "the stranger is not answered: {}",
        text(&refused.stderr)
    );
}

#[test]
fn listen_from_an_unknown_name_is_a_usage_error() {
    let w = World::new(LIMIT);
    w.account("bob");
    let out = finish(listen(&w, "bob", &w.path("in"), &["--from", "nobody"]));
    assert_eq!(code(out.status), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("nobody"),
        "{}",
        text(&out.stderr)
    );
}
