//! The folders of an accepted manifest on the real file system (`PROTOCOL.md` §14): made
//! through the receive folder's descriptors, a top-level folder under the `name (1)` rule
//! once, each file committed below it; a symlink planted in the tree is refused, never
//! followed, and nothing is written outside the receive folder.
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::PermissionsExt as _;

use bytes::Bytes;
use ferry_driver::FileService;
use ferry_proto::io::{FileId, FileOp, FileResult};
use ferry_proto::transfer::manifest::{Entry, EntryKind, Manifest, Place, RelPath};
use ferry_proto::transfer::{Digest, PartialKey, SafeName, TransferId};

fn receive_folder() -> (tempfile::TempDir, FileService) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
    let service = FileService::new(dir.path());
    (dir, service)
}

fn manifest() -> Manifest {
    let entry = |p: &str, kind| Entry {
        path: RelPath::parse(p).expect("a path"),
        kind,
    };
    let file = |id, size| EntryKind::File {
        id: TransferId(id),
        size,
    };
    Manifest::new(vec![
        entry("trip", EntryKind::Folder),
        entry("trip/sub/b.txt", file(2, 5)),
        entry("trip/empty", EntryKind::Folder),
        entry("notes.txt", file(3, 5)),
    ])
    .expect("a valid manifest")
}

fn key(mid: u64) -> PartialKey {
    PartialKey {
        sender: None,
        transfer: TransferId(mid),
    }
}

fn make_tree(service: &mut FileService, mid: u64) -> FileResult {
    service.perform(FileOp::MakeTree {
        file: FileId(100 + mid),
        key: key(mid),
        manifest: manifest(),
    })
}

/// Receives `content` as file `id` of manifest `mid`, at `path`; the result of its commit.
fn receive(service: &mut FileService, mid: u64, id: u64, path: &str, content: &[u8]) -> FileResult {
    let file = FileId(id);
    let rel = RelPath::parse(path).expect("a path");
    let last = rel.components().last().expect("a name").as_str().to_owned();
    let opened = service.perform(FileOp::OpenPartial {
        file,
        name: SafeName::from_display_name(&last).expect("a name"),
        size: content.len() as u64,
        key: PartialKey {
            sender: None,
            transfer: TransferId(id),
        },
        resume: true,
        place: Some(Place {
            manifest: key(mid),
            path: rel,
        }),
    });
    assert_eq!(opened, FileResult::Opened { file, len: 0 });
    let data = Bytes::copy_from_slice(content);
    let written = service.perform(FileOp::Write {
        file,
        offset: 0,
        data,
    });
    assert!(matches!(written, FileResult::Written { .. }), "{written:?}");
    let len = content.len() as u64;
    assert_eq!(
        service.perform(FileOp::Digest { file, len }),
        FileResult::Digest {
            file,
            digest: Digest::of(content)
        }
    );
    service.perform(FileOp::Commit { file })
}

#[test]
fn a_tree_is_made_and_its_files_committed_below_it() {
    let (dir, mut service) = receive_folder();
    assert_eq!(
        make_tree(&mut service, 7),
        FileResult::TreeMade { file: FileId(107) }
    );
    assert!(
        dir.path().join("trip/empty").is_dir(),
        "the empty folder is kept"
    );
    let got = receive(&mut service, 7, 2, "trip/sub/b.txt", b"hello");
    assert_eq!(
        got,
        FileResult::Committed {
            file: FileId(2),
            name: "trip/sub/b.txt".to_owned()
        }
    );
    assert_eq!(
        fs::read(dir.path().join("trip/sub/b.txt")).expect("read"),
        b"hello"
    );
    let top = receive(&mut service, 7, 3, "notes.txt", b"notes");
    assert!(
        matches!(top, FileResult::Committed { ref name, .. } if name == "notes.txt"),
        "{top:?}"
    );

    // Another manifest with the same names: `trip (1)`, and its top-level file `notes (1).txt`.
    make_tree(&mut service, 8);
    let again = receive(&mut service, 8, 4, "trip/sub/b.txt", b"again");
    assert!(
        matches!(again, FileResult::Committed { ref name, .. } if name == "trip (1)/sub/b.txt"),
        "{again:?}"
    );
    assert!(dir.path().join("trip (1)/empty").is_dir());
    let top = receive(&mut service, 8, 5, "notes.txt", b"other");
    assert!(
        matches!(top, FileResult::Committed { ref name, .. } if name == "notes (1).txt"),
        "{top:?}"
    );

    // The same manifest made again (a resend in this process) keeps its folder.
    make_tree(&mut service, 7);
    assert!(!dir.path().join("trip (2)").exists());
}

// SECURITY: row 148
#[test]
fn a_symlink_planted_in_the_tree_is_refused_not_followed() {
    let (dir, mut service) = receive_folder();
    let outside = tempfile::tempdir().expect("another folder");
    // Planted before: `trip` is taken (by a symlink), so the tree goes to `trip (1)`.
    std::os::unix::fs::symlink(outside.path(), dir.path().join("trip")).expect("symlink");
    make_tree(&mut service, 7);
    assert!(dir.path().join("trip (1)/sub").is_dir());
    // Planted after the tree was made: `sub` replaced by a symlink to elsewhere.
    fs::remove_dir(dir.path().join("trip (1)/sub")).expect("rmdir");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("trip (1)/sub")).expect("symlink");
    let got = receive(&mut service, 7, 2, "trip/sub/b.txt", b"hello");
    assert!(matches!(got, FileResult::Failed { .. }), "{got:?}");
    assert_eq!(
        fs::read_dir(outside.path()).expect("list").count(),
        0,
        "nothing written outside the receive folder"
    );
}

#[test]
fn a_file_placed_in_a_manifest_whose_tree_was_not_made_is_refused() {
    let (_dir, mut service) = receive_folder();
    let opened = service.perform(FileOp::OpenPartial {
        file: FileId(1),
        name: SafeName::from_display_name("b.txt").expect("a name"),
        size: 5,
        key: key(1),
        resume: true,
        place: Some(Place {
            manifest: key(9),
            path: RelPath::parse("trip/sub/b.txt").expect("a path"),
        }),
    });
    assert!(matches!(opened, FileResult::Failed { .. }), "{opened:?}");
}

/// The names a manifest's top-level folders got are kept in the private folder: the same
/// manifest accepted again by a later process (a send taken up again after a restart)
/// lands in the same folder, not in `trip (2)`; a kept list that is not ours (a name with a
/// `/`) is ignored and the tree takes fresh names; [`FileOp::ForgetTree`] removes the list.
#[test]
fn the_same_manifest_after_a_restart_lands_in_the_same_folder() {
    let (dir, mut service) = receive_folder();
    fs::create_dir(dir.path().join("trip")).expect("a folder of the user's");
    assert_eq!(
        make_tree(&mut service, 7),
        FileResult::TreeMade { file: FileId(107) }
    );
    assert!(dir.path().join("trip (1)/empty").is_dir());
    drop(service);

    // A new process: nothing in memory.
    let mut service = FileService::new(dir.path());
    assert_eq!(
        make_tree(&mut service, 7),
        FileResult::TreeMade { file: FileId(107) }
    );
    assert!(
        !dir.path().join("trip (2)").exists(),
        "the kept names are used"
    );
    let got = receive(&mut service, 7, 2, "trip/sub/b.txt", b"hello");
    assert_eq!(
        got,
        FileResult::Committed {
            file: FileId(2),
            name: "trip (1)/sub/b.txt".to_owned()
        }
    );

    // Every file arrived: the names are forgotten, here and on disk.
    let kept_7 = dir
        .path()
        .join(".ferry-partial")
        .join(format!("{}.ferry-tree", key(7)));
    assert!(kept_7.is_file(), "kept while the manifest may come again");
    assert_eq!(
        service.perform(FileOp::ForgetTree {
            file: FileId(200),
            key: key(7)
        }),
        FileResult::Closed { file: FileId(200) }
    );
    assert!(!kept_7.exists(), "forgotten once every file arrived");

    // A kept list naming something outside: ignored, fresh names.
    // SECURITY: row 158
    let kept = dir
        .path()
        .join(".ferry-partial")
        .join(format!("{}.ferry-tree", key(8)));
    fs::write(&kept, br#"{"trip":"../escape"}"#).expect("write");
    let mut service = FileService::new(dir.path());
    assert_eq!(
        make_tree(&mut service, 8),
        FileResult::TreeMade { file: FileId(108) }
    );
    assert!(dir.path().join("trip (2)/empty").is_dir());
    assert!(
        !dir.path()
            .parent()
            .expect("a parent")
            .join("escape")
            .exists()
    );
}
