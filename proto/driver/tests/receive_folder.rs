//! A receive folder in which someone else can write, on the real file system: at every path
//! Ferry opens, a planted symlink, hard link, FIFO or folder, a folder of another user or one
//! every user can write in, a `Content-Length` larger than the free space. Each is refused with
//! a clear error, and nothing outside the folder is read or written.
//!
//! The folders are made by `tempfile` (mode 0700, not sticky), so that the kernel's own
//! protections of sticky folders (`fs.protected_symlinks`, `fs.protected_hardlinks`) play no
//! part: what holds here is Ferry's doing. The cases run as whoever runs the tests and, when
//! that is root, once more as `nobody` (through `setpriv`).
#![cfg(target_os = "linux")]

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use ferry_driver::FileService;
use ferry_driver::receive_folder::PRIVATE_FOLDER;
use ferry_proto::io::{FileId, FileOp, FileResult};
use ferry_proto::transfer::{Digest, PartialKey, SafeName, TransferId};

const NOBODY: u32 = 65534;
/// Set in the child run as `nobody`, so that it does not try to start another one.
const AS_NOBODY: &str = "FERRY_HOSTILE_FOLDER_AS_NOBODY";

fn name(s: &str) -> SafeName {
    SafeName::from_display_name(s).expect("a safe name")
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A folder outside the receive folder, with a file the attacker would like Ferry to write
/// to; [`Outside::untouched`] checks it was neither read nor written.
struct Outside {
    dir: tempfile::TempDir,
    before: Vec<(PathBuf, Vec<u8>, i64, i64)>,
}

impl Outside {
    fn new() -> Outside {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join("victim"), b"the user's own bytes").expect("victim");
        fs::create_dir(dir.path().join("folder")).expect("folder");
        // Read and modification times are set in the past, so a read or a write would show.
        let old = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 1_000_000,
                tv_nsec: 0,
            },
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            dir.path().join("victim"),
            &old,
            rustix::fs::AtFlags::empty(),
        )
        .expect("times");
        let mut outside = Outside {
            dir,
            before: Vec::new(),
        };
        outside.before = outside.state();
        outside
    }

    fn victim(&self) -> PathBuf {
        self.dir.path().join("victim")
    }

    fn folder(&self) -> PathBuf {
        self.dir.path().join("folder")
    }

    fn state(&self) -> Vec<(PathBuf, Vec<u8>, i64, i64)> {
        let mut state = Vec::new();
        for entry in fs::read_dir(self.dir.path()).expect("list") {
            let path = entry.expect("entry").path();
            let meta = fs::symlink_metadata(&path).expect("meta");
            let bytes = if meta.is_file() {
                // Read without changing the access time (O_NOATIME needs ownership: root or
                // the owner, which the runner is).
                let (atime, mtime) = (meta.atime(), meta.mtime());
                let bytes = fs::read(&path).expect("read");
                let times = rustix::fs::Timestamps {
                    last_access: rustix::fs::Timespec {
                        tv_sec: atime,
                        tv_nsec: 0,
                    },
                    last_modification: rustix::fs::Timespec {
                        tv_sec: mtime,
                        tv_nsec: 0,
                    },
                };
                rustix::fs::utimensat(rustix::fs::CWD, &path, &times, rustix::fs::AtFlags::empty())
                    .expect("times");
                bytes
            } else {
                let names: Vec<_> = fs::read_dir(&path).expect("list").collect();
                vec![u8::try_from(names.len()).expect("few")]
            };
            state.push((path, bytes, meta.atime(), meta.mtime()));
        }
        state.sort();
        state
    }

    fn untouched(&self, case: &str) {
        assert_eq!(
            self.state(),
            self.before,
            "{case}: something outside changed"
        );
    }
}

/// A receive folder made as the CLI makes it, and a service receiving into it.
fn receive_folder() -> (tempfile::TempDir, FileService) {
    let dir = tempfile::tempdir().expect("temp dir");
    let service = FileService::new(dir.path());
    (dir, service)
}

fn private_folder(dir: &Path) -> PathBuf {
    dir.join(PRIVATE_FOLDER)
}

fn make_private(dir: &Path) -> PathBuf {
    let private = private_folder(dir);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .expect("private folder");
    private
}

/// The key of the partial data [`open`] opens.
const KEY: PartialKey = PartialKey {
    sender: None,
    transfer: TransferId(1),
};

/// Asks to open the partial file for `file_name`; the error's words when refused.
fn open(service: &mut FileService, file_name: &str, size: u64) -> Result<u64, String> {
    let file = FileId(1);
    match service.perform(FileOp::OpenPartial {
        file,
        name: name(file_name),
        size,
        key: KEY,
        resume: true,
        place: None,
    }) {
        FileResult::Opened { len, .. } => Ok(len),
        FileResult::Failed { error, .. } => Err(error.to_string()),
        other => panic!("{other:?}"),
    }
}

fn refused(case: &str, got: Result<u64, String>, words: &str) {
    match got {
        Err(why) => assert!(why.contains(words), "{case}: {why:?} lacks {words:?}"),
        Ok(len) => panic!("{case}: opened (holding {len} bytes) instead of refused"),
    }
}

/// Receives `content` fully as `file_name`; the name it got.
fn receive(service: &mut FileService, file_name: &str, content: &[u8]) -> String {
    let file = FileId(7);
    let opened = service.perform(FileOp::OpenPartial {
        file,
        name: name(file_name),
        size: content.len() as u64,
        key: PartialKey {
            sender: None,
            transfer: TransferId(7),
        },
        resume: true,
        place: None,
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
    match service.perform(FileOp::Commit { file }) {
        FileResult::Committed { name, .. } => name,
        other => panic!("{other:?}"),
    }
}

/// Every case, as the user the test runs as.
fn hostile_cases() {
    let outside = Outside::new();

    // SECURITY: row 113
    let (dir, mut service) = receive_folder();
    std::os::unix::fs::symlink(outside.folder(), private_folder(dir.path())).expect("symlink");
    refused(
        "symlink at the private folder",
        open(&mut service, "a.bin", 10),
        "is not a private folder of this user (a symlink or not a folder)",
    );

    let (dir, mut service) = receive_folder();
    fs::write(private_folder(dir.path()), b"").expect("file");
    refused(
        "file at the private folder",
        open(&mut service, "a.bin", 10),
        "not a private folder",
    );

    // SECURITY: row 114
    let (dir, mut service) = receive_folder();
    let private = make_private(dir.path());
    let partial = service.partial_path(&KEY);
    assert_eq!(partial.parent(), Some(private.as_path()));
    std::os::unix::fs::symlink(outside.victim(), &partial).expect("symlink");
    refused(
        "symlink at the partial file",
        open(&mut service, "a.bin", 10),
        "(a symlink)",
    );
    fs::remove_file(&partial).expect("remove");
    fs::hard_link(outside.victim(), &partial).expect("hard link");
    refused(
        "hard link at the partial file",
        open(&mut service, "a.bin", 10),
        "(it has other links)",
    );
    fs::remove_file(&partial).expect("remove");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &partial,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .expect("FIFO");
    refused(
        "FIFO at the partial file",
        open(&mut service, "a.bin", 10),
        "(not a regular file)",
    );
    fs::remove_file(&partial).expect("remove");
    fs::create_dir(&partial).expect("folder");
    refused(
        "folder at the partial file",
        open(&mut service, "a.bin", 10),
        "(a folder)",
    );

    // SECURITY: row 115
    let (dir, mut service) = receive_folder();
    std::os::unix::fs::symlink(outside.victim(), dir.path().join("b.bin")).expect("symlink");
    fs::hard_link(outside.victim(), dir.path().join("c.bin")).expect("hard link");
    assert_eq!(receive(&mut service, "b.bin", b"new bytes"), "b (1).bin");
    assert_eq!(receive(&mut service, "c.bin", b"new bytes"), "c (1).bin");
    assert_eq!(
        fs::read(dir.path().join("c (1).bin")).expect("read"),
        b"new bytes"
    );
    let mode = fs::metadata(dir.path().join("c (1).bin"))
        .expect("meta")
        .mode();
    assert_eq!(mode & 0o777, 0o600, "received files are the user's alone");
    let mode = fs::metadata(private_folder(dir.path()))
        .expect("meta")
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    // SECURITY: row 116
    let (dir, mut service) = receive_folder();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    refused(
        "world-writable receive folder",
        open(&mut service, "a.bin", 10),
        "is writable by every user",
    );
    assert!(!private_folder(dir.path()).exists(), "nothing made in it");
    let (other, owner, _keep) = folder_of_another_user();
    let mut service = FileService::new(&other);
    refused(
        "receive folder of another user",
        open(&mut service, "a.bin", 10),
        &format!("belongs to another user (uid {owner})"),
    );
    if is_root() {
        // Only root can give a private folder or a partial file to another user.
        let (dir, mut service) = receive_folder();
        let private = make_private(dir.path());
        std::os::unix::fs::chown(&private, Some(NOBODY), Some(NOBODY)).expect("chown");
        refused(
            "private folder of another user",
            open(&mut service, "a.bin", 10),
            &format!("(it belongs to uid {NOBODY})"),
        );
        let (dir, mut service) = receive_folder();
        make_private(dir.path());
        let partial = service.partial_path(&KEY);
        fs::write(&partial, b"planted").expect("partial");
        std::os::unix::fs::chown(&partial, Some(NOBODY), Some(NOBODY)).expect("chown");
        refused(
            "partial file of another user",
            open(&mut service, "a.bin", 10),
            "(it belongs to another user)",
        );
    }

    // SECURITY: row 117
    let (dir, mut service) = receive_folder();
    refused(
        "more than the free space",
        open(&mut service, "huge.bin", 1 << 62),
        "not enough free space in the receive folder: 4611686018427387904 bytes needed",
    );
    let left: Vec<_> = fs::read_dir(private_folder(dir.path()))
        .expect("list")
        .collect();
    assert!(left.is_empty(), "no empty partial file is left behind");

    outside.untouched("every case");
}

/// A folder this user does not own (root gives a fresh one to `nobody`; anyone else gets `/`,
/// which is root's): its path, its owner, and what keeps it.
fn folder_of_another_user() -> (PathBuf, u32, Option<tempfile::TempDir>) {
    if is_root() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).expect("chown");
        (dir.path().to_owned(), NOBODY, Some(dir))
    } else {
        (PathBuf::from("/"), 0, None)
    }
}

#[test]
fn a_hostile_receive_folder_is_refused() {
    hostile_cases();
}

/// The same cases once more as an unprivileged user, when the tests run as root.
#[test]
fn a_hostile_receive_folder_is_refused_as_nobody() {
    if std::env::var_os(AS_NOBODY).is_some() || !is_root() {
        // The run above is already unprivileged.
        return;
    }
    let exe = std::env::current_exe().expect("this test binary");
    // `nobody` needs a temporary folder it may write in (the runner's TMPDIR may be private).
    let tmp = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::chown(tmp.path(), Some(NOBODY), Some(NOBODY)).expect("chown");
    let out = Command::new("setpriv")
        .args([
            &format!("--reuid={NOBODY}"),
            &format!("--regid={NOBODY}"),
            "--clear-groups",
            "--",
        ])
        .arg(&exe)
        .args([
            "--exact",
            "a_hostile_receive_folder_is_refused",
            "--nocapture",
        ])
        .env(AS_NOBODY, "1")
        .env("TMPDIR", tmp.path())
        .output()
        .expect("setpriv (util-linux) runs this test binary as nobody");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "as nobody:\n{text}");
    assert!(text.contains("1 passed"), "the case ran as nobody:\n{text}");
}

/// `listen` removes partial data nobody wrote for a week at start: only regular files in the
/// private folder that old go (an older Ferry's `<name>.ferry-part` too); a fresh one stays,
/// and a symlink is neither followed nor counted.
#[test]
fn partial_data_older_than_the_age_is_pruned_and_nothing_else() {
    let (dir, _service) = receive_folder();
    let folder = ferry_driver::receive_folder::ReceiveFolder::open(dir.path()).expect("open");
    let private = private_folder(dir.path());
    let week = std::time::Duration::from_secs(7 * 86_400);
    let long_ago = std::time::SystemTime::now() - week - std::time::Duration::from_secs(60);
    let aged = |path: &Path| {
        fs::File::options()
            .write(true)
            .open(path)
            .expect("open")
            .set_modified(long_ago)
            .expect("mtime");
    };
    let old = private.join("photo.jpg.ferry-part");
    fs::write(&old, b"old").expect("old");
    aged(&old);
    let fresh = private.join("anonymous-0000000000000001.ferry-part");
    fs::write(&fresh, b"fresh").expect("fresh");
    let outside = tempfile::tempdir().expect("temp dir");
    let victim = outside.path().join("victim");
    fs::write(&victim, b"keep").expect("victim");
    aged(&victim);
    std::os::unix::fs::symlink(&victim, private.join("link.ferry-part")).expect("symlink");
    assert_eq!(folder.prune_partials(week).expect("pruned"), 1);
    assert!(!old.exists(), "the week-old partial went");
    assert_eq!(fs::read(&fresh).expect("fresh"), b"fresh");
    assert_eq!(fs::read(&victim).expect("victim"), b"keep");
    assert!(private.join("link.ferry-part").symlink_metadata().is_ok());
}

/// A receive folder that does not exist yet is made when the first file is taken, private
/// (0700), with its missing parents; until then nothing is made (a driver that only sends
/// leaves no folder behind).
#[test]
fn a_missing_receive_folder_is_made_private_at_the_first_file() {
    let home = tempfile::tempdir().expect("temp dir");
    let folder = home.path().join("not").join("yet");
    let mut service = FileService::new(&folder);
    assert!(!folder.exists(), "nothing made before a file is taken");
    assert_eq!(receive(&mut service, "a.bin", b"hello"), "a.bin");
    assert_eq!(fs::read(folder.join("a.bin")).expect("received"), b"hello");
    let mode = fs::metadata(&folder).expect("made").mode() & 0o777;
    assert_eq!(mode, 0o700, "made private");
}
