//! The transfer protocol end to end between two state machines: every outcome the
//! foundation promises, each with its trace snapshot and assertions on what landed on disk.

use ferry_proto::io::FileError;
use ferry_proto::transfer::{Digest, Form, Status};
use ferry_tests::content;
use ferry_tests::pair::{Decision, Outcome, Pair, Script, Setup, partial_key};

fn run(setup: Setup, script: Script) -> Outcome {
    Pair::new(setup, script).run()
}

fn file(setup: &Setup) -> Vec<u8> {
    content::range(setup.seed, 0, setup.size as usize)
}

#[test]
fn accept() {
    let setup = Setup::default();
    let out = run(setup.clone(), Script::default());
    let expected = file(&setup);
    assert_eq!(
        (out.sender, out.receiver),
        (Status::Finished, Status::Finished)
    );
    assert_eq!(
        out.finals.get("photo.jpg"),
        Some(&expected),
        "the file landed whole under its name"
    );
    assert!(out.partials.is_empty(), "no partial file is left behind");
    assert_eq!(out.receiver_verified(), Some(Digest::of(&expected)));
    assert_eq!(
        out.sender_verified(),
        Some(Digest::of(&expected)),
        "the sender heard VERDICT ok"
    );
    assert_eq!(out.receiver_progress(), setup.size);
    insta::assert_snapshot!(out.trace);
}

#[test]
fn refuse() {
    let out = run(
        Setup::default(),
        Script {
            decision: Decision::Refuse,
            ..Script::default()
        },
    );
    assert_eq!(
        (out.sender, out.receiver),
        (Status::ClosedByPeer, Status::ClosedByHost)
    );
    assert_eq!(
        Outcome::reason(&out.sender_events).as_deref(),
        Some("refused")
    );
    assert!(
        out.finals.is_empty() && out.partials.is_empty(),
        "nothing was written"
    );
    insta::assert_snapshot!(out.trace);
}

/// Large enough that a cancel lands while data still flows (the send window is 256 KiB).
fn big() -> Setup {
    Setup {
        size: 2 * 1024 * 1024,
        ..Setup::default()
    }
}

#[test]
fn cancel_by_sender_mid_file() {
    let setup = big();
    let out = run(
        setup.clone(),
        Script {
            sender_cancels_at: Some(500_000),
            ..Script::default()
        },
    );
    assert_eq!(
        (out.sender, out.receiver),
        (Status::ClosedByHost, Status::ClosedByPeer)
    );
    assert_eq!(
        Outcome::reason(&out.receiver_events).as_deref(),
        Some("cancelled by the peer (user)")
    );
    assert!(
        out.finals.is_empty(),
        "a cancelled file never gets its final name"
    );
    let partial = out
        .partials
        .get(&partial_key().to_string())
        .expect("the partial file is kept for a resume");
    assert!(
        !partial.is_empty() && (partial.len() as u64) < setup.size,
        "{} bytes",
        partial.len()
    );
    assert_eq!(
        partial[..],
        file(&setup)[..partial.len()],
        "what was kept is a true prefix"
    );
    insta::assert_snapshot!(out.trace);
}

#[test]
fn cancel_by_receiver_mid_file() {
    let out = run(
        big(),
        Script {
            receiver_cancels_at: Some(500_000),
            ..Script::default()
        },
    );
    assert_eq!(
        (out.sender, out.receiver),
        (Status::ClosedByPeer, Status::ClosedByHost)
    );
    assert_eq!(
        Outcome::reason(&out.sender_events).as_deref(),
        Some("cancelled by the peer (user)")
    );
    assert!(out.finals.is_empty());
    assert!(
        out.partials.is_empty(),
        "the receiver's own cancel deletes the partial file"
    );
    insta::assert_snapshot!(out.trace);
}

#[test]
fn accept_at_an_offset() {
    let setup = Setup {
        receiver_holds: 100_000,
        ..Setup::default()
    };
    let out = run(setup.clone(), Script::default());
    let expected = file(&setup);
    assert_eq!(
        (out.sender, out.receiver),
        (Status::Finished, Status::Finished)
    );
    assert_eq!(out.finals.get("photo.jpg"), Some(&expected));
    assert_eq!(out.receiver_verified(), Some(Digest::of(&expected)));
    assert!(
        out.trace.contains("GO 100000 sha3="),
        "the receiver asked for the rest only, naming its prefix's digest"
    );
    assert!(
        out.trace
            .contains("resuming at 100000/262144 (prefix verified)"),
        "{}",
        out.trace
    );
    assert!(
        out.trace
            .contains(&format!("DATA ×3 {} bytes", setup.size - 100_000)),
        "only the rest crossed the wire"
    );
    insta::assert_snapshot!(out.trace);
}

/// Bob holds 100000 bytes under the same key (same sender, same id) that are another file's:
/// his `GO 100000 <digest>` does not match Alice's first 100000 bytes, so she sends RESTART
/// and the whole file; Bob empties what he held, and the file is verified, never a digest
/// mismatch.
#[test]
fn a_stale_prefix_restarts_at_zero() {
    // SECURITY: row 129
    let setup = Setup {
        receiver_holds: 100_000,
        receiver_holds_stale: true,
        ..Setup::default()
    };
    let out = run(setup.clone(), Script::default());
    let expected = file(&setup);
    assert_eq!(
        (out.sender, out.receiver),
        (Status::Finished, Status::Finished)
    );
    assert_eq!(out.finals.get("photo.jpg"), Some(&expected));
    assert_eq!(out.receiver_verified(), Some(Digest::of(&expected)));
    assert!(
        out.trace.contains("→ alice  GO 100000 sha3="),
        "{}",
        out.trace
    );
    assert!(out.trace.contains("→ bob    RESTART"), "{}", out.trace);
    assert!(
        out.trace
            .contains(&format!("write ×4 {} bytes", setup.size)),
        "the whole file was written again: {}",
        out.trace
    );
    assert!(!out.trace.contains("mismatch"), "{}", out.trace);
    insta::assert_snapshot!(out.trace);
}

#[test]
fn digest_mismatch() {
    // One byte inside the first DATA payload is flipped on the way.
    let out = run(
        Setup::default(),
        Script {
            // SECURITY: row 18
            corrupt_stream_byte: Some(200),
            ..Script::default()
        },
    );
    assert_eq!(
        (out.sender, out.receiver),
        (Status::DigestMismatch, Status::DigestMismatch)
    );
    assert_eq!(
        Outcome::reason(&out.receiver_events).as_deref(),
        Some("SHA3-512 mismatch")
    );
    assert!(
        out.finals.is_empty(),
        "a corrupt file never gets its final name"
    );
    assert!(out.partials.is_empty(), "and its bytes are deleted");
    assert_eq!(out.receiver_verified(), None);
    insta::assert_snapshot!(out.trace);
}

#[test]
fn acceptance_timeout() {
    let out = run(
        Setup::default(),
        Script {
            decision: Decision::Ignore,
            ..Script::default()
        },
    );
    assert_eq!(
        (out.sender, out.receiver),
        (Status::TimeoutExpired, Status::ClosedByPeer)
    );
    assert_eq!(
        Outcome::reason(&out.receiver_events).as_deref(),
        Some("cancelled by the peer (timeout)")
    );
    assert!(
        out.elapsed >= ferry_proto::transfer::ACCEPT_TIMEOUT,
        "{:?}",
        out.elapsed
    );
    assert!(out.finals.is_empty() && out.partials.is_empty());
    insta::assert_snapshot!(out.trace);
}

#[test]
fn jami_form_receiver() {
    let setup = Setup {
        receiver_form: Form::Raw,
        ..Setup::default()
    };
    let out = run(setup.clone(), Script::default());
    assert_eq!(
        (out.sender, out.receiver),
        (Status::Finished, Status::Finished)
    );
    assert_eq!(out.finals.get("photo.jpg"), Some(&file(&setup)));
    assert_eq!(
        out.receiver_verified(),
        None,
        "without END there is no digest to check"
    );
    assert_eq!(out.sender_verified(), None, "and no verdict to hear");
    assert!(
        out.trace.contains("→ alice  GO\n"),
        "a plain GO: the raw form"
    );
    insta::assert_snapshot!(out.trace);
}

#[test]
fn jami_form_sender() {
    let setup = Setup {
        sender_form: Form::Raw,
        ..Setup::default()
    };
    let out = run(setup.clone(), Script::default());
    assert_eq!(
        (out.sender, out.receiver),
        (Status::Finished, Status::Finished)
    );
    assert_eq!(out.finals.get("photo.jpg"), Some(&file(&setup)));
    assert!(
        !out.trace.contains("Ferry-Frames"),
        "a Jami sender does not announce frames"
    );
    insta::assert_snapshot!(out.trace);
}

/// Jami's raw form on either side, with Bob holding bytes under the key: today's bytes (a
/// plain `GO`, no prefix digest, no RESTART) and a fresh start, as before the feature.
#[test]
fn a_raw_form_peer_never_sees_the_prefix_digest() {
    for (sender_form, receiver_form) in [(Form::Raw, Form::Framed), (Form::Framed, Form::Raw)] {
        let setup = Setup {
            sender_form,
            receiver_form,
            receiver_holds: 100_000,
            ..Setup::default()
        };
        let out = run(setup.clone(), Script::default());
        assert_eq!(
            (out.sender, out.receiver),
            (Status::Finished, Status::Finished)
        );
        assert_eq!(out.finals.get("photo.jpg"), Some(&file(&setup)));
        assert!(out.trace.contains("→ alice  GO\n"), "{}", out.trace);
        assert!(!out.trace.contains("sha3-512 of 100000"), "{}", out.trace);
        assert!(!out.trace.contains("RESTART"), "{}", out.trace);
        assert!(!out.trace.contains("resuming"), "{}", out.trace);
    }
}

#[test]
fn receiver_disk_full() {
    let setup = Setup::default();
    let script = Script {
        receiver_disk_fails_at: Some((150_000, FileError::DiskFull)),
        ..Script::default()
    };
    let out = run(setup, script);
    assert_eq!(
        (out.sender, out.receiver),
        (Status::ClosedByPeer, Status::ClosedByHost)
    );
    assert_eq!(
        Outcome::reason(&out.receiver_events).as_deref(),
        Some("file error: disk full")
    );
    assert_eq!(
        Outcome::reason(&out.sender_events).as_deref(),
        Some("cancelled by the peer (file-error)")
    );
    assert!(out.finals.is_empty());
    assert!(
        out.partials
            .get(&partial_key().to_string())
            .is_some_and(|p| (p.len() as u64) < 150_000),
        "the prefix is kept for a resume"
    );
}

#[test]
fn unsafe_display_name_is_sanitised_and_stays_in_the_folder() {
    let setup = Setup {
        // SECURITY: row 1
        display_name: "../../.ssh/authorized_keys".to_owned(),
        ..Setup::default()
    };
    let out = run(setup.clone(), Script::default());
    assert_eq!(out.receiver, Status::Finished);
    let names: Vec<_> = out.finals.keys().cloned().collect();
    assert_eq!(names, ["_.._.ssh_authorized_keys"]);
}

#[test]
fn unusable_display_name_is_invalid_pathname() {
    let setup = Setup {
        display_name: "..".to_owned(),
        ..Setup::default()
    };
    let out = run(setup, Script::default());
    assert_eq!(
        (out.sender, out.receiver),
        (Status::ClosedByPeer, Status::InvalidPathname)
    );
    assert!(out.finals.is_empty() && out.partials.is_empty());
}

#[test]
fn empty_file() {
    let setup = Setup {
        size: 0,
        ..Setup::default()
    };
    let out = run(setup, Script::default());
    assert_eq!(
        (out.sender, out.receiver),
        (Status::Finished, Status::Finished)
    );
    assert_eq!(out.finals.get("photo.jpg").map(Vec::len), Some(0));
    assert_eq!(out.receiver_verified(), Some(Digest::of(b"")));
}

#[test]
fn same_run_twice_gives_the_same_trace() {
    let a = run(
        Setup::default(),
        Script {
            sender_cancels_at: Some(70_000),
            ..Script::default()
        },
    );
    let b = run(
        Setup::default(),
        Script {
            sender_cancels_at: Some(70_000),
            ..Script::default()
        },
    );
    assert_eq!(a.trace, b.trace);
}
