//! Folders inside the receive folder, for the entries of a manifest (`PROTOCOL.md` §14).
//!
//! Each folder of an entry's path is made (`mkdirat`, mode 0700) or opened from its parent's
//! descriptor with `O_NOFOLLOW | O_DIRECTORY`, and must be a folder of this user that not
//! every user can write in: a symlink or a file planted at any component is refused, never
//! followed, so nothing is made or written outside the receive folder. A file is committed
//! into its folder as into the receive folder, by `linkat` from its verified descriptor.
//! The `name (1)` rule applies to a manifest's top-level folders only
//! ([`ReceiveFolder::make_top_folder`]).

use std::fs::File;
use std::os::fd::OwnedFd;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::{FolderError, ReceiveFolder, our_uid};

/// A folder below the receive folder, opened and checked through its parents' descriptors.
#[derive(Debug)]
pub struct SubFolder {
    fd: OwnedFd,
    path: String,
}

impl SubFolder {
    /// Its path relative to the receive folder, `/` between components (for messages).
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// A single safe name: not empty, not `.` or `..`, no `/` or NUL (the core's `SafeName`s
/// are; this is the driver's own check, since a path from elsewhere must not climb either).
pub(crate) fn single(component: &str) -> bool {
    !component.is_empty()
        && component != "."
        && component != ".."
        && !component.contains(['/', '\0'])
}

/// What is at `name` in `dir` when it is not a folder, for the message (not followed).
fn what_is_at(dir: &OwnedFd, name: &str) -> &'static str {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => "a symlink",
        _ => "not a folder",
    }
}

impl ReceiveFolder {
    /// Makes the folder of a manifest's top-level entry `name`: itself, or the first free of
    /// `variants` (`name (1)`, …) when the name is taken by anything (a file, a folder, a
    /// symlink, never followed). Returns the name it got.
    pub fn make_top_folder(
        &self,
        variants: impl Iterator<Item = String>,
    ) -> Result<String, FolderError> {
        for candidate in variants {
            if !single(&candidate) {
                return Err(FolderError::NotAFolder(candidate, "not a single name"));
            }
            match rustix::fs::mkdirat(&self.dir, &candidate, Mode::RWXU) {
                Ok(()) => {
                    rustix::fs::fsync(&self.dir)?;
                    return Ok(candidate);
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(FolderError::NoFreeName)
    }

    /// Opens the folder at `components` below the receive folder, making each one that is
    /// missing (mode 0700). Refused: a component that is not a single name, or that is not a
    /// folder of this user closed to other users (a symlink, a file, a FIFO, another user's
    /// folder, a world-writable one).
    pub fn folder_at(&self, components: &[&str]) -> Result<SubFolder, FolderError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut path = String::new();
        let mut fd: Option<OwnedFd> = None;
        for &component in components {
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(component);
            if !single(component) {
                return Err(FolderError::NotAFolder(path, "not a single name"));
            }
            let parent = fd.as_ref().unwrap_or(&self.dir);
            // Opened first, made only when missing: a `mkdirat` of a folder that exists
            // still locks its parent, which every file of a folder send would contend for.
            let opened = match rustix::fs::openat(parent, component, flags, Mode::empty()) {
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(parent, component, Mode::RWXU) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rustix::fs::openat(parent, component, flags, Mode::empty())
                }
                other => other,
            };
            let opened = opened.map_err(|e| match e {
                // Linux says ENOTDIR for a symlink opened with O_NOFOLLOW | O_DIRECTORY.
                Errno::LOOP | Errno::NOTDIR => {
                    FolderError::NotAFolder(path.clone(), what_is_at(parent, component))
                }
                e => FolderError::Io(e.into()),
            })?;
            let stat = rustix::fs::fstat(&opened)?;
            if stat.st_uid != our_uid() {
                return Err(FolderError::NotAFolder(path, "another user's"));
            }
            if Mode::from_raw_mode(stat.st_mode).contains(Mode::WOTH) {
                return Err(FolderError::NotAFolder(path, "writable by every user"));
            }
            fd = Some(opened);
        }
        let fd = fd.ok_or(FolderError::NotAFolder(path.clone(), "not a single name"))?;
        Ok(SubFolder { fd, path })
    }

    /// Gives the verified partial `file` (called `key`) the first free variant of its name in
    /// `folder`, as [`commit`](Self::commit) does in the receive folder. Returns the name it got.
    pub fn commit_in(
        &self,
        folder: &SubFolder,
        file: &File,
        key: &str,
        variants: impl Iterator<Item = String>,
        durable: super::Durable,
    ) -> Result<String, FolderError> {
        self.commit_into(&folder.fd, file, key, variants, durable)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn folder() -> (tempfile::TempDir, ReceiveFolder) {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let folder = ReceiveFolder::open(dir.path()).expect("a good receive folder");
        (dir, folder)
    }

    fn names(base: &str) -> impl Iterator<Item = String> + '_ {
        (0..4).map(move |n| {
            if n == 0 {
                base.to_owned()
            } else {
                format!("{base} ({n})")
            }
        })
    }

    #[test]
    fn a_tree_is_made_and_a_file_committed_into_it() {
        let (dir, folder) = folder();
        let top = folder.make_top_folder(names("trip")).expect("made");
        assert_eq!(top, "trip");
        let sub = folder.folder_at(&[&top, "a", "b"]).expect("made");
        assert_eq!(sub.path(), "trip/a/b");
        let empty = folder.folder_at(&[&top, "empty"]).expect("made");
        assert_eq!(empty.path(), "trip/empty");
        let (mut file, held) = folder.open_partial("k1", 5, true).expect("partial");
        assert_eq!(held, 0);
        file.write_all(b"hello").expect("write");
        let name = folder
            .commit_in(
                &sub,
                &file,
                "k1",
                names("hello.txt"),
                super::super::Durable::Now,
            )
            .expect("committed");
        assert_eq!(name, "hello.txt");
        let at = dir.path().join("trip/a/b/hello.txt");
        assert_eq!(std::fs::read(&at).expect("the file"), b"hello");
        assert!(dir.path().join("trip/empty").is_dir());
        let mode = std::fs::metadata(dir.path().join("trip/a")).expect("stat");
        assert_eq!(mode.permissions().mode() & 0o777, 0o700);
        // The same path again opens what is there (a manifest resumed).
        folder.folder_at(&[&top, "a", "b"]).expect("opened again");
    }

    #[test]
    fn a_taken_top_level_name_gets_the_next_variant() {
        let (dir, folder) = folder();
        std::fs::create_dir(dir.path().join("trip")).expect("mkdir");
        std::fs::write(dir.path().join("trip (1)"), b"x").expect("a file");
        std::os::unix::fs::symlink("/tmp", dir.path().join("trip (2)")).expect("symlink");
        assert_eq!(
            folder.make_top_folder(names("trip")).expect("made"),
            "trip (3)"
        );
        assert!(matches!(
            folder.make_top_folder(names("trip")),
            Err(FolderError::NoFreeName)
        ));
    }

    // SECURITY: row 148
    #[test]
    fn a_symlink_or_file_planted_on_the_path_is_refused_and_nothing_made_outside() {
        let (dir, folder) = folder();
        let outside = tempfile::tempdir().expect("another folder");
        std::fs::create_dir(dir.path().join("trip")).expect("mkdir");
        std::os::unix::fs::symlink(outside.path(), dir.path().join("trip/a")).expect("plant");
        std::fs::write(dir.path().join("trip/f"), b"x").expect("plant a file");
        let err = folder
            .folder_at(&["trip", "a", "b"])
            .expect_err("a symlink");
        let text = err.to_string();
        assert!(
            text.contains("trip/a") && text.contains("a symlink"),
            "{text}"
        );
        let err = folder.folder_at(&["trip", "f", "b"]).expect_err("a file");
        assert!(err.to_string().contains("not a folder"), "{err}");
        for bad in [&["trip", ".."][..], &["..", "x"], &["a/b"], &[""], &[]] {
            assert!(folder.folder_at(bad).is_err(), "{bad:?}");
        }
        assert!(
            folder
                .make_top_folder(["../x".to_owned()].into_iter())
                .is_err(),
            "a top name that climbs"
        );
        assert_eq!(
            std::fs::read_dir(outside.path()).expect("read").count(),
            0,
            "nothing made outside"
        );
        assert!(
            !dir.path().join("x").exists()
                && !dir.path().parent().expect("parent").join("x").exists()
        );
        // A world-writable folder on the path is refused: anyone could plant in it.
        std::fs::create_dir(dir.path().join("open")).expect("mkdir");
        std::fs::set_permissions(
            dir.path().join("open"),
            std::fs::Permissions::from_mode(0o777),
        )
        .expect("chmod");
        let err = folder
            .folder_at(&["open", "x"])
            .expect_err("world-writable");
        assert!(err.to_string().contains("every user"), "{err}");
        assert!(!dir.path().join("open/x").exists());
    }
}
