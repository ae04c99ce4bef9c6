//! The manifest codec (`PROTOCOL.md` §14) fed a hostile sender's bytes.

use ferry_proto::transfer::manifest::wire::ManifestParser;
use ferry_proto::transfer::manifest::{
    Claims, EntryKind, MAX_DEPTH, MAX_ENTRIES, MAX_PATH_BYTES, Manifest, ManifestError,
};

use super::pieces;

fn parse(parts: &[&[u8]]) -> Result<Option<Manifest>, ManifestError> {
    let mut parser = ManifestParser::new();
    let mut out = None;
    for part in parts {
        if let Some(m) = parser.feed(part)? {
            out = Some(m);
        }
    }
    Ok(out)
}

/// The manifest parser: any split gives the same verdict; an accepted manifest keeps every
/// path inside the receive folder and every bound, prints back to itself, and each of its
/// files is claimed once and only once.
pub fn transfer_manifest(data: &[u8]) {
    let (stream, parts) = pieces(data);
    let whole = parse(&[stream]);
    let split = parse(&parts);
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the split changed the manifest"),
        (Err(_), Err(_)) => {}
        _ => panic!("the split changed the verdict: whole {whole:?}, split {split:?}"),
    }
    let Ok(Some(manifest)) = whole else {
        return;
    };
    assert!(manifest.entries().len() <= MAX_ENTRIES);
    for entry in manifest.entries() {
        let path = entry.path.to_string();
        assert!(entry.path.components().len() <= MAX_DEPTH, "{path}");
        assert!(
            !path.starts_with('/') && path.len() <= MAX_PATH_BYTES,
            "{path}"
        );
        for c in entry.path.components() {
            let c = c.as_str();
            assert!(!c.is_empty() && c != "." && c != ".." && !c.contains(['/', '\\']));
        }
    }
    assert_eq!(
        ManifestParser::new().feed(&manifest.encode()),
        Ok(Some(manifest.clone())),
        "encode then parse"
    );
    let mut claims = Claims::new(manifest.clone());
    for entry in manifest.entries() {
        if let EntryKind::File { id, size } = entry.kind {
            assert!(claims.claim(id, size).is_ok(), "a listed file is taken");
            assert!(claims.claim(id, size).is_err(), "a file is taken once");
        }
    }
    assert!(claims.all_claimed());
}
