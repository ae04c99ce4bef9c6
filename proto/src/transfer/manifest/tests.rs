use super::wire::ManifestParser;
use super::*;

fn file(path: &str, id: u64, size: u64) -> Entry {
    Entry {
        path: RelPath::parse(path).expect("a good path"),
        kind: EntryKind::File {
            id: TransferId(id),
            size,
        },
    }
}

fn folder(path: &str) -> Entry {
    Entry {
        path: RelPath::parse(path).expect("a good path"),
        kind: EntryKind::Folder,
    }
}

/// The JSON of a manifest with these raw entries, behind its first line.
fn wire(entries: &str) -> Vec<u8> {
    let json = format!("{{\"entries\":[{entries}]}}");
    let mut out = format!("FERRY-MANIFEST 1 {}\n", json.len()).into_bytes();
    out.extend_from_slice(json.as_bytes());
    out
}

fn read(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    ManifestParser::new()
        .feed(bytes)
        .map(|m| m.expect("the manifest is whole"))
}

#[test]
fn a_manifest_round_trips_split_at_every_byte() {
    let m = Manifest::new(vec![
        file("trip/a.txt", 42, 5),
        folder("trip/empty"),
        file("trip/deep/b.bin", 43, 0),
        file("notes.md", 44, 7),
    ])
    .expect("valid");
    assert_eq!(m.file_count(), 3);
    assert_eq!(m.total_size(), 12);
    assert_eq!(m.top_names(8), ["trip", "notes.md"]);
    let bytes = m.encode();
    for split in 0..bytes.len() {
        let mut p = ManifestParser::new();
        assert_eq!(p.feed(&bytes[..split]), Ok(None), "split at {split}");
        assert_eq!(p.feed(&bytes[split..]), Ok(Some(m.clone())));
    }
}

/// Which error a case expects.
type IsError = fn(&ManifestError) -> bool;

// SECURITY: row 146
#[test]
fn hostile_paths_are_refused_before_anything_is_made() {
    let f = |path: &str| {
        let path = serde_json::Value::from(path);
        format!(r#"{{"path":{path},"kind":"file","id":"7","size":1}}"#)
    };
    let cases: [(&str, IsError); 9] = [
        ("../evil", |e| matches!(e, ManifestError::DotComponent(_))),
        ("a/../../evil", |e| {
            matches!(e, ManifestError::DotComponent(_))
        }),
        ("./a", |e| matches!(e, ManifestError::DotComponent(_))),
        ("/etc/passwd", |e| matches!(e, ManifestError::Absolute(_))),
        ("\\\\server\\x", |e| matches!(e, ManifestError::Absolute(_))),
        ("a//b", |e| matches!(e, ManifestError::EmptyComponent(_))),
        ("a/", |e| matches!(e, ManifestError::EmptyComponent(_))),
        ("", |e| matches!(e, ManifestError::EmptyComponent(_))),
        ("a/NUL.txt", |e| matches!(e, ManifestError::BadComponent(_))),
    ];
    for (path, expected) in cases {
        let err = read(&wire(&f(path))).expect_err(path);
        assert!(expected(&err), "{path:?} gave {err:?}");
        assert!(!err.to_string().is_empty());
    }
    // A backslash inside a component is made safe, never a way up.
    let m = read(&wire(&f("a/..\\..\\x"))).expect("made safe");
    assert_eq!(m.entries()[0].path.to_string(), "a/_.._x");
    // Bidirectional overrides are replaced in every component, as in a Display-Name.
    let m = read(&wire(&f("r\u{202e}gpj.exe/x"))).expect("made safe");
    assert_eq!(m.entries()[0].path.to_string(), "r_gpj.exe/x");
}

// SECURITY: row 146
#[test]
fn depth_length_and_count_are_bounded() {
    let deep = vec!["d"; MAX_DEPTH + 1].join("/");
    let err =
        read(&wire(&format!(r#"{{"path":"{deep}","kind":"folder"}}"#))).expect_err("too deep");
    assert!(matches!(err, ManifestError::TooDeep(_)), "{err:?}");
    let ok = vec!["d"; MAX_DEPTH].join("/");
    read(&wire(&format!(r#"{{"path":"{ok}","kind":"folder"}}"#))).expect("deep enough");

    let long = "x".repeat(MAX_PATH_BYTES + 1);
    let err =
        read(&wire(&format!(r#"{{"path":"{long}","kind":"folder"}}"#))).expect_err("too long");
    assert_eq!(err, ManifestError::PathTooLong);

    let many: Vec<String> = (1..=MAX_ENTRIES + 1)
        .map(|i| format!(r#"{{"path":"{i}","kind":"folder"}}"#))
        .collect();
    let err = read(&wire(&many.join(","))).expect_err("too many");
    assert_eq!(err, ManifestError::TooManyEntries);

    // The length is refused from the first line, before a byte of JSON is kept.
    let mut p = ManifestParser::new();
    let line = format!("FERRY-MANIFEST 1 {}\n", MAX_MANIFEST + 1);
    assert_eq!(p.feed(line.as_bytes()), Err(ManifestError::TooLong));
    let mut p = ManifestParser::new();
    assert_eq!(p.feed(&[b'F'; 100]), Err(ManifestError::BadStart));
    for bad in [
        "FERRY-MANIFEST 2 10\n",
        "FERRY-MANIFEST 1 \n",
        "FERRY-MANIFEST 1 +1\n",
    ] {
        assert_eq!(
            ManifestParser::new().feed(bad.as_bytes()),
            Err(ManifestError::BadStart),
            "{bad:?}"
        );
    }
    assert_eq!(
        Manifest::new(Vec::new()).expect_err("empty"),
        ManifestError::Empty
    );
    let err = Manifest::new(vec![file("a", 1, u64::MAX), file("b", 2, 1)]).expect_err("sum");
    assert_eq!(err, ManifestError::TooLarge);
}

// SECURITY: row 146
#[test]
fn duplicates_ids_and_entries_below_files_are_refused() {
    let cases = [
        // The same path twice, and two paths that are one once made safe.
        (vec![file("a/x", 1, 1), file("a/x", 2, 1)], "two entries"),
        (
            vec![file("a/x:y", 1, 1), file("a/x_y", 2, 1)],
            "two entries",
        ),
        (vec![folder("a"), folder("a")], "two entries"),
        // One transfer id for two files: one record, one partial, for two files.
        (vec![file("a", 1, 1), file("b", 1, 1)], "used twice"),
        (vec![file("a", 0, 1)], "used twice"),
        // A file, then something inside it.
        (vec![file("a", 1, 1), folder("a/b")], "below a file"),
        (vec![file("a/b/c", 2, 1), file("a/b", 1, 1)], "below a file"),
    ];
    for (entries, says) in cases {
        let err = Manifest::new(entries).expect_err(says);
        assert!(err.to_string().contains(says), "{err} should say {says}");
    }
    for bad_id in [
        r#""0""#,
        r#""+1""#,
        r#""01""#,
        r#""x""#,
        "7",
        r#""18446744073709551616""#,
    ] {
        let json = format!(r#"{{"path":"a","kind":"file","id":{bad_id},"size":1}}"#);
        assert!(read(&wire(&json)).is_err(), "id {bad_id}");
    }
    for bad_kind in [
        r#"{"path":"a","kind":"link","id":"1","size":1}"#,
        r#"{"path":"a","kind":"folder","id":"1","size":1}"#,
        r#"{"path":"a","kind":"file"}"#,
        r#"{"path":"a"}"#,
    ] {
        assert!(
            matches!(read(&wire(bad_kind)), Err(ManifestError::Malformed(_))),
            "{bad_kind}"
        );
    }
    // Unknown fields are passed over (a later form may add some).
    read(&wire(r#"{"path":"a","kind":"folder","queued":true}"#)).expect("unknown field");
    // Bytes after the manifest are refused: the sender waits for the answer.
    let mut bytes = wire(r#"{"path":"a","kind":"folder"}"#);
    bytes.push(b'x');
    assert_eq!(
        ManifestParser::new().feed(&bytes),
        Err(ManifestError::TrailingBytes)
    );
}

// SECURITY: row 147
#[test]
fn a_file_not_listed_or_sent_twice_is_refused() {
    let m = Manifest::new(vec![file("t/a", 10, 3), file("t/b", 11, 4)]).expect("valid");
    let mut claims = Claims::new(m);
    assert_eq!(
        claims.claim(TransferId(12), 3),
        Err(ClaimError::NotInManifest(TransferId(12)))
    );
    assert!(matches!(
        claims.claim(TransferId(10), 30),
        Err(ClaimError::WrongSize { .. })
    ));
    assert_eq!(
        claims.claim(TransferId(10), 3).map(|e| e.path.to_string()),
        Ok("t/a".to_owned())
    );
    assert_eq!(
        claims.claim(TransferId(10), 3),
        Err(ClaimError::AlreadyClaimed(TransferId(10)))
    );
    assert!(!claims.all_claimed());
    claims.claim(TransferId(11), 4).expect("listed");
    assert!(claims.all_claimed());
}

#[test]
fn sender_components_are_made_safe_like_the_receivers() {
    let p = RelPath::from_components(["trip", "a/b", "-x"]).expect("made safe");
    assert_eq!(p.to_string(), "trip/a_b/_x");
    assert_eq!(RelPath::parse(&p.to_string()), Ok(p));
    assert!(RelPath::from_components(["..", "x"]).is_err());
    assert!(RelPath::from_components(Vec::<&str>::new()).is_err());
}
