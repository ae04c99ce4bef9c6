//! PROTOCOL.md §12 is the `--json` schema: every event the `ferry` command can print has a
//! row there, with each of its fields. This reads the command's source for every JSON object
//! it builds with an `event` (and the one it names by `insert`), and the table, and checks
//! one against the other both ways.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The events the source emits, each with the keys of the literal objects that carry it.
fn emitted() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).expect("cli/src") {
        let path = entry.expect("an entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let code = std::fs::read_to_string(&path).expect("a source file");
        for (at, _) in code.match_indices("\"event\": \"") {
            let rest = &code[at + "\"event\": \"".len()..];
            let name = rest.split('"').next().expect("a name").to_owned();
            let keys = found.entry(name).or_default();
            // The keys of the same object: up to the brace that closes it.
            let start = code[..at].rfind('{').expect("an opening brace");
            let mut depth = 0usize;
            let mut end = code.len();
            for (i, c) in code[start..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = start + i;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let object = &code[start..end];
            for piece in object.split('"').collect::<Vec<_>>().windows(2) {
                let (key, after) = (piece[0], piece[1]);
                let is_key = after.trim_start().starts_with(':')
                    && key.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    && !key.is_empty();
                if is_key && key != "event" {
                    keys.insert(key.to_owned());
                }
            }
        }
        for (at, _) in code.match_indices("insert(\"event\".to_owned(), \"") {
            let rest = &code[at + "insert(\"event\".to_owned(), \"".len()..];
            let name = rest.split('"').next().expect("a name").to_owned();
            found.entry(name).or_default();
        }
    }
    found
}

/// The rows of §12: event name → the text of its fields column (several rows joined).
fn table() -> BTreeMap<String, String> {
    let spec =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../PROTOCOL.md"))
            .expect("PROTOCOL.md");
    let after = spec
        .split("\n## 12. ")
        .nth(1)
        .expect("PROTOCOL.md has §12, the --json events");
    // §12 ends where the next section starts (§13 and §14 have tables of their own).
    let section = after.split("\n## ").next().unwrap_or(after);
    let mut rows: BTreeMap<String, String> = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split(" | ").collect();
        let name = cells[0]
            .trim_start_matches("| ")
            .trim_matches('`')
            .to_owned();
        let fields = cells.get(2).copied().unwrap_or_default();
        rows.entry(name).or_default().push_str(fields);
    }
    rows
}

#[test]
fn every_json_event_and_field_has_a_row_in_protocol_md() {
    let emitted = emitted();
    let rows = table();
    assert!(
        emitted.len() >= 20,
        "the scan found the events: {emitted:?}"
    );
    for (event, keys) in &emitted {
        let fields = rows
            .get(event)
            .unwrap_or_else(|| panic!("`{event}` has no row in PROTOCOL.md §12"));
        for key in keys {
            assert!(
                fields.contains(&format!("`{key}`")),
                "`{event}`'s field `{key}` is not in its row of PROTOCOL.md §12"
            );
        }
    }
    for event in rows.keys() {
        assert!(
            emitted.contains_key(event),
            "PROTOCOL.md §12 has a row for `{event}`, which the command never prints"
        );
    }
}
