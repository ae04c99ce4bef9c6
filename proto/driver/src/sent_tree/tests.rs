use std::os::unix::fs::symlink;

use super::*;

/// Ids 1, 2, 3… in the order files are met.
fn counter() -> impl FnMut(&Path) -> TransferId {
    let mut next = 0;
    move |_| {
        next += 1;
        TransferId(next)
    }
}

fn listing(tree: &SentTree) -> Vec<String> {
    tree.manifest
        .entries()
        .iter()
        .map(|e| match e.kind {
            EntryKind::File { id, size } => format!("{} {id} {size}", e.path),
            EntryKind::Folder => format!("{}/", e.path),
        })
        .collect()
}

#[test]
fn a_tree_is_listed_in_name_order_with_empty_folders_and_sources() {
    let dir = tempfile::tempdir().expect("tmp");
    let trip = dir.path().join("trip");
    fs::create_dir_all(trip.join("b/deep")).expect("mkdir");
    fs::create_dir_all(trip.join("empty")).expect("mkdir");
    fs::write(trip.join("a.txt"), b"abc").expect("write");
    fs::write(trip.join("b/deep/c"), b"").expect("write");
    fs::write(dir.path().join("notes.md"), b"1234567").expect("write");
    let paths = [trip.clone(), dir.path().join("notes.md")];
    let tree = walk(&paths, false, counter()).expect("walked");
    assert_eq!(
        listing(&tree),
        [
            "trip/",
            "trip/a.txt 1 3",
            "trip/b/",
            "trip/b/deep/",
            "trip/b/deep/c 2 0",
            "trip/empty/",
            "notes.md 3 7",
        ]
    );
    assert_eq!(tree.manifest.total_size(), 10);
    assert_eq!(tree.sources[&TransferId(2)], trip.join("b/deep/c"));
    assert!(tree.skipped.is_empty());
    // What the sender lists, the receiver reads back the same.
    let again = ferry_proto::transfer::manifest::wire::ManifestParser::new()
        .feed(&tree.manifest.encode())
        .expect("valid");
    assert_eq!(again, Some(tree.manifest.clone()));
}

#[test]
fn symlinks_inside_are_left_out_unless_followed_and_loops_always() {
    let dir = tempfile::tempdir().expect("tmp");
    let outside = tempfile::tempdir().expect("tmp");
    fs::write(outside.path().join("secret"), b"s").expect("write");
    let trip = dir.path().join("trip");
    fs::create_dir(&trip).expect("mkdir");
    fs::write(trip.join("a"), b"a").expect("write");
    symlink(outside.path().join("secret"), trip.join("link-file")).expect("symlink");
    symlink(outside.path(), trip.join("link-folder")).expect("symlink");
    symlink(&trip, trip.join("loop")).expect("symlink");
    symlink(dir.path().join("nothing"), trip.join("dangling")).expect("symlink");

    let tree = walk(std::slice::from_ref(&trip), false, counter()).expect("walked");
    assert_eq!(listing(&tree), ["trip/", "trip/a 1 1"]);
    let skipped: Vec<(String, SkipReason)> = tree
        .skipped
        .iter()
        .map(|s| {
            (
                s.path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into(),
                s.why,
            )
        })
        .collect();
    assert_eq!(
        skipped,
        [
            ("dangling".to_owned(), SkipReason::Symlink),
            ("link-file".to_owned(), SkipReason::Symlink),
            ("link-folder".to_owned(), SkipReason::Symlink),
            ("loop".to_owned(), SkipReason::Symlink),
        ]
    );

    let tree = walk(std::slice::from_ref(&trip), true, counter()).expect("walked");
    assert_eq!(
        listing(&tree),
        [
            "trip/",
            "trip/a 1 1",
            "trip/link-file 2 1",
            "trip/link-folder/",
            "trip/link-folder/secret 3 1",
        ]
    );
    let reasons: Vec<SkipReason> = tree.skipped.iter().map(|s| s.why).collect();
    assert_eq!(reasons, [SkipReason::Symlink, SkipReason::Loop]);
}

#[test]
fn special_files_are_left_out_and_bad_sets_of_paths_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let trip = dir.path().join("trip");
    fs::create_dir(&trip).expect("mkdir");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        trip.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        0,
    )
    .expect("mkfifo");
    let tree = walk(std::slice::from_ref(&trip), false, counter()).expect("walked");
    assert_eq!(listing(&tree), ["trip/"]);
    assert_eq!(tree.skipped[0].why, SkipReason::Special);

    // Two paths with one name at the top: the receiver could not tell them apart.
    let other = dir.path().join("other");
    fs::create_dir_all(other.join("trip")).expect("mkdir");
    let err = walk(&[trip.clone(), other.join("trip")], false, counter()).expect_err("twice");
    assert!(err.to_string().contains("two entries"), "{err}");
    // A FIFO named on the command line, and a path that is not there.
    let err = walk(&[trip.join("fifo")], false, counter()).expect_err("a fifo");
    assert!(
        err.to_string().contains("neither a file nor a folder"),
        "{err}"
    );
    let err = walk(&[dir.path().join("none")], false, counter()).expect_err("missing");
    assert!(err.to_string().contains("none"), "{err}");
}
