//! The file service on real files in temporary folders.

use std::fs;
use std::sync::mpsc;

use ferry_proto::io::FileError;
use ferry_proto::transfer::{Digest, TransferId};

use super::*;

/// Puts `bytes` where the partial file of transfer `id` goes, as an earlier transfer would
/// have left them (the private folder made as Ferry makes it).
fn plant(service: &FileService, id: u64, bytes: &[u8]) {
    let path = service.partial_path(&key(id));
    let private = path.parent().expect("private folder");
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        let _ = fs::DirBuilder::new().mode(0o700).create(private);
    }
    fs::write(path, bytes).expect("partial");
}

/// The key of transfer `id` from an unknown sender.
fn key(id: u64) -> PartialKey {
    PartialKey {
        sender: None,
        transfer: TransferId(id),
    }
}

fn name(s: &str) -> SafeName {
    SafeName::from_display_name(s).expect("a safe name")
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect()
}

/// Receives `content` as `file_name` in `service`, starting at what is already there.
/// Writes `content` to `name` in `dir` and opens it as source 1.
fn open_source(
    service: &mut FileService,
    dir: &std::path::Path,
    name: &str,
    content: &[u8],
) -> FileId {
    let path = dir.join(name);
    fs::write(&path, content).expect("source");
    let file = FileId(1);
    let source = path.to_string_lossy().into_owned();
    service.perform(FileOp::OpenSource { file, source });
    file
}

fn receive(service: &mut FileService, id: u64, file_name: &str, content: &[u8]) -> FileResult {
    let file = FileId(id);
    let size = content.len() as u64;
    let opened = service.perform(FileOp::OpenPartial {
        file,
        name: name(file_name),
        size,
        key: key(id),
        resume: true,
        place: None,
    });
    let FileResult::Opened { len: start, .. } = opened else {
        panic!("{opened:?}");
    };
    for (i, chunk) in content[start as usize..].chunks(1000).enumerate() {
        let offset = start + (i * 1000) as u64;
        let data = Bytes::copy_from_slice(chunk);
        let written = service.perform(FileOp::Write { file, offset, data });
        assert!(matches!(written, FileResult::Written { .. }), "{written:?}");
    }
    let digest = service.perform(FileOp::Digest { file, len: size });
    assert_eq!(
        digest,
        FileResult::Digest {
            file,
            digest: Digest::of(content)
        }
    );
    service.perform(FileOp::Commit { file })
}

#[test]
fn a_commit_never_replaces_a_file_and_leaves_no_partial() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path());
    // SECURITY: row 102
    fs::write(dir.path().join("photo.jpg"), b"mine").expect("write");
    let got = receive(&mut service, 1, "photo.jpg", &data(5000, 1));
    assert_eq!(
        got,
        FileResult::Committed {
            file: FileId(1),
            name: "photo (1).jpg".into()
        }
    );
    let got = receive(&mut service, 2, "photo.jpg", &data(10, 2));
    assert_eq!(
        got,
        FileResult::Committed {
            file: FileId(2),
            name: "photo (2).jpg".into()
        }
    );
    assert_eq!(
        fs::read(dir.path().join("photo.jpg")).expect("read"),
        b"mine"
    );
    assert_eq!(
        fs::read(dir.path().join("photo (1).jpg")).expect("read"),
        data(5000, 1)
    );
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".ferry-partial",
            "photo (1).jpg",
            "photo (2).jpg",
            "photo.jpg"
        ]
    );
    let private = fs::read_dir(dir.path().join(".ferry-partial")).expect("private");
    assert_eq!(private.count(), 0, "no partial data is left");
}

#[test]
fn a_resume_hashes_the_prefix_once_and_the_digest_matches() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path());
    let content = data(100_000, 3);
    plant(&service, 9, &content[..40_000]);
    let file = FileId(9);
    let opened = service.perform(FileOp::OpenPartial {
        file,
        name: name("big.bin"),
        size: content.len() as u64,
        key: key(9),
        resume: true,
        place: None,
    });
    assert_eq!(opened, FileResult::Opened { file, len: 40_000 });
    // The prefix is hashed already: the writes that follow extend it.
    assert_eq!(service.open[&file].digest.hashed(), 40_000);
    let data = Bytes::copy_from_slice(&content[40_000..]);
    service.perform(FileOp::Write {
        file,
        offset: 40_000,
        data,
    });
    assert_eq!(service.open[&file].digest.hashed(), 100_000);
    let len = content.len() as u64;
    let digest = Digest::of(&content);
    assert_eq!(
        service.perform(FileOp::Digest { file, len }),
        FileResult::Digest { file, digest }
    );
    // A digest of a shorter range is computed afresh from disk.
    let short = Digest::of(&content[..123]);
    assert_eq!(
        service.perform(FileOp::Digest { file, len: 123 }),
        FileResult::Digest {
            file,
            digest: short
        }
    );
}

#[test]
fn a_partial_longer_than_the_file_starts_over() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path());
    plant(&service, 1, &data(500, 4));
    let content = data(100, 5);
    let got = receive(&mut service, 1, "a.txt", &content);
    assert!(matches!(got, FileResult::Committed { .. }), "{got:?}");
    assert_eq!(fs::read(dir.path().join("a.txt")).expect("read"), content);
}

#[test]
fn discard_deletes_the_partial_and_close_keeps_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path());
    let partial = service.partial_path(&key(5));
    for (id, op_keeps) in [(1, true), (2, false)] {
        let file = FileId(id);
        service.perform(FileOp::OpenPartial {
            file,
            name: name("x.bin"),
            size: 10,
            key: key(5),
            resume: true,
            place: None,
        });
        let data = Bytes::from_static(b"abc");
        service.perform(FileOp::Write {
            file,
            offset: 0,
            data,
        });
        let op = if op_keeps {
            FileOp::Close { file }
        } else {
            FileOp::Discard { file }
        };
        assert_eq!(service.perform(op), FileResult::Closed { file });
        assert_eq!(partial.exists(), op_keeps);
    }
}

#[test]
fn a_source_is_read_and_hashed_and_never_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path());
    let content = data(3000, 6);
    let path = dir.path().join("source.bin");
    fs::write(&path, &content).expect("source");
    let file = FileId(1);
    let source = path.to_string_lossy().into_owned();
    assert_eq!(
        service.perform(FileOp::OpenSource { file, source }),
        FileResult::Opened { file, len: 3000 }
    );
    for offset in (0..3000).step_by(1000) {
        let got = service.perform(FileOp::Read {
            file,
            offset,
            len: 1000,
        });
        let want = Bytes::copy_from_slice(&content[offset as usize..offset as usize + 1000]);
        assert_eq!(
            got,
            FileResult::Data {
                file,
                offset,
                data: want
            }
        );
    }
    let past_end = service.perform(FileOp::Read {
        file,
        offset: 2500,
        len: 1000,
    });
    assert_eq!(
        past_end,
        FileResult::Failed {
            file,
            error: FileError::ShortRead
        }
    );
    let digest = Digest::of(&content);
    assert_eq!(
        service.perform(FileOp::Digest { file, len: 3000 }),
        FileResult::Digest { file, digest }
    );
    let not_a_partial = service.perform(FileOp::Write {
        file,
        offset: 0,
        data: Bytes::new(),
    });
    assert!(matches!(not_a_partial, FileResult::Failed { .. }));
    assert_eq!(
        service.perform(FileOp::Discard { file }),
        FileResult::Closed { file }
    );
    assert!(
        path.exists(),
        "a source is the user's: discard only closes it"
    );
}

#[test]
fn a_resumed_send_hashes_the_skipped_part_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path());
    let content = data(5000, 8);
    let file = open_source(&mut service, dir.path(), "s.bin", &content);
    let got = service.perform(FileOp::Read {
        file,
        offset: 3000,
        len: 2000,
    });
    assert!(matches!(got, FileResult::Data { .. }), "{got:?}");
    assert_eq!(service.open[&file].digest.hashed(), 5000);
    let digest = Digest::of(&content);
    assert_eq!(
        service.perform(FileOp::Digest { file, len: 5000 }),
        FileResult::Digest { file, digest }
    );
}

/// The sender's half of a resume, with the source hashed ahead: `GO n` for an `n` the pass
/// went past is answered from the nearest kept state, the send from `n` on extends the
/// digest the pass made, and the whole file's digest is right.
#[test]
fn a_source_hashed_ahead_answers_a_prefix_from_its_nearest_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path()).with_checkpoint_every(1000);
    let content = data(5500, 9);
    let file = open_source(&mut service, dir.path(), "ahead.bin", &content);
    assert!(
        service.prehashing(),
        "a source is hashed from the start once open"
    );
    while service.prehashing() {
        service.prehash_step();
    }
    assert_eq!(
        service.open[&file].digest.hashed(),
        5500,
        "the pass read it all"
    );
    let prefix = Digest::of(&content[..3456]);
    assert_eq!(
        service.perform(FileOp::Digest { file, len: 3456 }),
        FileResult::Digest {
            file,
            digest: prefix
        }
    );
    let got = service.perform(FileOp::Read {
        file,
        offset: 3456,
        len: 2044,
    });
    assert!(matches!(got, FileResult::Data { .. }), "{got:?}");
    let digest = Digest::of(&content);
    assert_eq!(
        service.perform(FileOp::Digest { file, len: 5500 }),
        FileResult::Digest { file, digest }
    );
}

/// A read stops the pass: the reads extend the digest from where it got to, as before.
#[test]
fn the_first_read_stops_the_pass_ahead() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path()).with_checkpoint_every(1000);
    let content = data(4000, 10);
    let file = open_source(&mut service, dir.path(), "stop.bin", &content);
    service.prehash_step();
    service.perform(FileOp::Read {
        file,
        offset: 0,
        len: 4000,
    });
    assert!(!service.prehashing());
    let digest = Digest::of(&content);
    assert_eq!(
        service.perform(FileOp::Digest { file, len: 4000 }),
        FileResult::Digest { file, digest }
    );
}

#[test]
fn missing_sources_busy_partials_and_unknown_ids_are_failures() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path());
    let file = FileId(1);
    let source = dir.path().join("nope").to_string_lossy().into_owned();
    assert_eq!(
        service.perform(FileOp::OpenSource { file, source }),
        FileResult::Failed {
            file,
            error: FileError::NotFound
        }
    );
    service.perform(FileOp::OpenPartial {
        file,
        name: name("same"),
        size: 1,
        key: key(1),
        resume: true,
        place: None,
    });
    let second = FileId(2);
    let busy = service.perform(FileOp::OpenPartial {
        file: second,
        name: name("same"),
        size: 1,
        key: key(1),
        resume: true,
        place: None,
    });
    assert!(
        matches!(
            busy,
            FileResult::Failed {
                error: FileError::Other(_),
                ..
            }
        ),
        "{busy:?}"
    );
    let unknown = service.perform(FileOp::Read {
        file: FileId(7),
        offset: 0,
        len: 1,
    });
    assert!(matches!(unknown, FileResult::Failed { .. }), "{unknown:?}");
}

#[test]
fn a_symlink_at_the_partial_path_is_refused_not_followed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path());
    // SECURITY: row 114
    let outside = tempfile::tempdir().expect("temp dir");
    let target = outside.path().join("victim");
    fs::write(&target, b"keep").expect("victim");
    plant(&service, 1, b"");
    let partial = service.partial_path(&key(1));
    fs::remove_file(&partial).expect("remove");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&target, &partial).expect("symlink");
    let file = FileId(1);
    let got = service.perform(FileOp::OpenPartial {
        file,
        name: name("f.bin"),
        size: 10,
        key: key(1),
        resume: true,
        place: None,
    });
    let FileResult::Failed {
        error: FileError::Other(why),
        ..
    } = got
    else {
        panic!("{got:?}");
    };
    assert!(why.contains("a symlink"), "{why}");
    assert_eq!(fs::read(&target).expect("victim"), b"keep");
}

#[test]
fn names_of_partial_and_committed_files() {
    assert_eq!(
        partial_name(&key(0x1234)),
        "anonymous-0000000000001234.ferry-part"
    );
    let account = ferry_proto::tls::AccountId([0xab; 20]);
    let from = PartialKey {
        sender: Some(account),
        transfer: TransferId(u64::MAX),
    };
    assert_eq!(
        partial_name(&from),
        format!("{}-ffffffffffffffff.ferry-part", "ab".repeat(20))
    );
    assert_eq!(variant("archive.tar.gz", 2), "archive.tar (2).gz");
    assert_eq!(variant("README", 1), "README (1)");
    // SECURITY: row 103
    assert_eq!(variant("evil.ferry-part", 0), "evil.ferry-part_");
}

#[test]
fn the_thread_answers_in_order() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tx, rx) = mpsc::channel();
    let thread = FileThread::spawn(FileService::new(dir.path()), move |r| {
        let _ = tx.send(r);
    })
    .expect("thread");
    let file = FileId(1);
    thread.submit(FileOp::OpenPartial {
        file,
        name: name("t"),
        size: 3,
        key: key(1),
        resume: true,
        place: None,
    });
    thread.submit(FileOp::Write {
        file,
        offset: 0,
        data: Bytes::from_static(b"abc"),
    });
    thread.submit(FileOp::Commit { file });
    let got: Vec<FileResult> = rx.iter().take(3).collect();
    assert_eq!(
        got,
        [
            FileResult::Opened { file, len: 0 },
            FileResult::Written {
                file,
                offset: 0,
                len: 3
            },
            FileResult::Committed {
                file,
                name: "t".into()
            },
        ]
    );
}

#[test]
fn two_transfers_of_one_name_keep_apart_and_a_raw_form_open_starts_at_zero() {
    // SECURITY: row 122
    // SECURITY: row 123
    let dir = tempfile::tempdir().expect("temp dir");
    let mut service = FileService::new(dir.path());
    let content = data(10_000, 9);
    plant(&service, 1, &content[..4000]);
    let open = |service: &mut FileService, file, id, resume| {
        service.perform(FileOp::OpenPartial {
            file: FileId(file),
            name: name("same.bin"),
            size: 10_000,
            key: key(id),
            resume,
            place: None,
        })
    };
    // Another transfer offering the same name neither sees nor touches the first's prefix.
    let other = open(&mut service, 1, 2, true);
    assert_eq!(
        other,
        FileResult::Opened {
            file: FileId(1),
            len: 0
        }
    );
    service.perform(FileOp::Discard { file: FileId(1) });
    assert_eq!(
        fs::read(service.partial_path(&key(1))).expect("kept"),
        &content[..4000]
    );
    // The same key opened for a peer whose bytes no digest checks: emptied, from 0.
    let raw = open(&mut service, 2, 1, false);
    assert_eq!(
        raw,
        FileResult::Opened {
            file: FileId(2),
            len: 0
        }
    );
    assert_eq!(
        fs::metadata(service.partial_path(&key(1)))
            .expect("kept")
            .len(),
        0
    );
}

#[test]
fn a_pool_keeps_each_files_order_and_one_partial_file_open_once_across_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (tx, rx) = mpsc::channel();
    let pool = FileThread::spawn_workers(
        FileService::new(dir.path()),
        move |result| {
            let _ = tx.send(result);
        },
        2,
    )
    .expect("workers");
    assert_eq!(pool.workers(), 2);
    let (first, second) = (FileId(1), FileId(2));
    assert_ne!(pool.worker_of(first), pool.worker_of(second));
    let content = data(64 * 1024 + 17, 9);
    // Every operation of one file queued at once: its worker runs them in order.
    pool.submit(FileOp::OpenPartial {
        file: first,
        name: name("one.bin"),
        size: content.len() as u64,
        key: key(1),
        resume: false,
        place: None,
    });
    for (i, chunk) in content.chunks(4096).enumerate() {
        let data = Bytes::copy_from_slice(chunk);
        let offset = (i * 4096) as u64;
        pool.submit(FileOp::Write {
            file: first,
            offset,
            data,
        });
    }
    pool.submit(FileOp::Digest {
        file: first,
        len: content.len() as u64,
    });
    let mut results = Vec::new();
    while !results
        .iter()
        .any(|r| matches!(r, FileResult::Digest { .. }))
    {
        results.push(rx.recv().expect("a result"));
    }
    assert!(matches!(results[0], FileResult::Opened { len: 0, .. }));
    let FileResult::Digest { digest, .. } = results.last().expect("the digest") else {
        unreachable!("the loop ends on a digest");
    };
    assert_eq!(*digest, Digest::of(&content), "the writes ran in order");
    // The same partial file, from a file of the other worker: refused while the first holds it.
    let open_second = || FileOp::OpenPartial {
        file: second,
        name: name("one.bin"),
        size: content.len() as u64,
        key: key(1),
        resume: true,
        place: None,
    };
    pool.submit(open_second());
    assert!(matches!(
        rx.recv().expect("a result"),
        FileResult::Failed { file, .. } if file == second
    ));
    pool.submit(FileOp::Close { file: first });
    assert_eq!(
        rx.recv().expect("a result"),
        FileResult::Closed { file: first }
    );
    pool.submit(open_second());
    assert_eq!(
        rx.recv().expect("a result"),
        FileResult::Opened {
            file: second,
            len: content.len() as u64
        },
        "free again once closed, with what the first wrote"
    );
}
