//! Verified files committed together (`PROTOCOL.md` §14, *Durability*): one `syncfs` before
//! and one after instead of two fsyncs each, every file under its name and nothing left in
//! the private folder; on the file workers, commits that come close together (gathered
//! while the worker has other operations queued) all end committed, and a file's later
//! operation still comes after its commit. What the gathering saves is measured by `cargo
//! bench -p ferry-cli --bench many_files`, not here.
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use ferry_driver::{FileService, FileThread};
use ferry_proto::io::{FileId, FileOp, FileResult};
use ferry_proto::transfer::{PartialKey, SafeName, TransferId};

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// The operations that bring file `n` to the point of its commit, and what they answer.
fn received(n: u64) -> Vec<FileOp> {
    let file = FileId(n);
    let content = format!("file number {n}").into_bytes();
    vec![
        FileOp::OpenPartial {
            file,
            name: SafeName::from_display_name(&format!("f{n}.txt")).expect("a name"),
            size: content.len() as u64,
            key: PartialKey {
                sender: None,
                transfer: TransferId(n),
            },
            resume: true,
            place: None,
        },
        FileOp::Write {
            file,
            offset: 0,
            data: Bytes::from(content.clone()),
        },
        FileOp::Digest {
            file,
            len: content.len() as u64,
        },
    ]
}

fn private_files(dir: &std::path::Path) -> usize {
    fs::read_dir(dir.join(".ferry-partial")).map_or(0, |d| d.count())
}

#[test]
fn a_batch_is_committed_whole_and_leaves_no_partial() {
    let dir = folder();
    let mut service = FileService::new(dir.path());
    for n in 1..=3 {
        for op in received(n) {
            let r = service.perform(op);
            assert!(!matches!(r, FileResult::Failed { .. }), "{r:?}");
        }
    }
    let results = service.commit_batch(&[FileId(1), FileId(2), FileId(3)]);
    let names: Vec<String> = results
        .iter()
        .map(|r| match r {
            FileResult::Committed { name, .. } => name.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(names, ["f1.txt", "f2.txt", "f3.txt"]);
    for n in 1..=3 {
        assert_eq!(
            fs::read(dir.path().join(format!("f{n}.txt"))).expect("committed"),
            format!("file number {n}").into_bytes()
        );
    }
    assert_eq!(private_files(dir.path()), 0, "no partial name left");
    // A file that is not open fails alone; the others are committed.
    for op in received(4) {
        service.perform(op);
    }
    let results = service.commit_batch(&[FileId(4), FileId(99)]);
    assert!(
        matches!(results[0], FileResult::Committed { .. }),
        "{results:?}"
    );
    assert!(
        matches!(results[1], FileResult::Failed { .. }),
        "{results:?}"
    );
}

#[test]
fn the_workers_gather_commits_and_keep_each_files_order() {
    let dir = folder();
    let (tx, rx) = mpsc::channel();
    let pool = FileThread::spawn_workers(
        FileService::new(dir.path()),
        move |r| {
            let _ = tx.send(r);
        },
        1,
    )
    .expect("a worker");
    let files = 20;
    for n in 1..=files {
        for op in received(n) {
            pool.submit(op);
        }
    }
    for n in 1..=files {
        pool.submit(FileOp::Commit { file: FileId(n) });
    }
    // After its commit, file 1 is no longer open: its Close must be answered after it.
    pool.submit(FileOp::Close { file: FileId(1) });
    let mut committed = Vec::new();
    let mut closed_after = None;
    while committed.len() < files as usize || closed_after.is_none() {
        match rx.recv_timeout(Duration::from_secs(60)).expect("a result") {
            FileResult::Committed { file, .. } => committed.push(file),
            FileResult::Failed {
                file: FileId(1), ..
            } => {
                closed_after = Some(committed.contains(&FileId(1)));
            }
            FileResult::Failed { file, error } => panic!("{file:?}: {error:?}"),
            _ => {}
        }
    }
    assert_eq!(
        closed_after,
        Some(true),
        "file 1's close came after its commit"
    );
    assert_eq!(committed.len(), files as usize);
    assert_eq!(private_files(dir.path()), 0);
}
