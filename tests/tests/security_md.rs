//! `SECURITY.md` is held to its word: every row of its table names tests that exist and carry
//! the row's `// SECURITY: row N` marker, rows are numbered without gaps, and no marker in the
//! tree points to a row that is not there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The table's rows: number → the tests named (`path::function`).
fn rows() -> BTreeMap<u32, Vec<(String, String)>> {
    let text = std::fs::read_to_string(root().join("SECURITY.md")).expect("SECURITY.md");
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let Some(n) = cells.get(1).and_then(|c| c.parse::<u32>().ok()) else {
            continue;
        };
        let tests_cell = cells
            .get(cells.len().saturating_sub(2))
            .copied()
            .unwrap_or("");
        let tests: Vec<(String, String)> = tests_cell
            .split('`')
            .skip(1)
            .step_by(2)
            .filter_map(|t| t.rsplit_once("::"))
            .map(|(file, name)| (file.to_owned(), name.to_owned()))
            .collect();
        assert!(!tests.is_empty(), "row {n} names no test");
        assert!(rows.insert(n, tests).is_none(), "row {n} twice");
    }
    rows
}

fn has_marker(text: &str, row: u32) -> bool {
    text.lines()
        .any(|l| l.trim() == format!("// SECURITY: row {row}"))
}

#[test]
fn every_row_names_tests_that_exist_and_carry_its_marker() {
    let rows = rows();
    assert!(rows.len() >= 60, "only {} rows", rows.len());
    let numbers: Vec<u32> = rows.keys().copied().collect();
    let expected: Vec<u32> = (1..=rows.len() as u32).collect();
    assert_eq!(numbers, expected, "rows are numbered 1, 2, 3… without gaps");
    for (n, tests) in &rows {
        for (file, name) in tests {
            let path = root().join(file);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("row {n}: {}: {e}", path.display()));
            let defined = text.contains(&format!("fn {name}("))
                // The corpus replays are made by a macro, one test per listed target.
                || text.lines().any(|l| l.trim() == format!("{name},"));
            assert!(defined, "row {n}: no test {name} in {file}");
            assert!(
                has_marker(&text, *n),
                "row {n}: {file} has no `// SECURITY: row {n}` marker"
            );
        }
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_marker_points_to_a_row() {
    let rows = rows();
    let mut files = Vec::new();
    rust_files(&root(), &mut files);
    let mut markers = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for line in text.lines() {
            let Some(n) = line.trim().strip_prefix("// SECURITY: row ") else {
                continue;
            };
            let n: u32 = n
                .parse()
                .unwrap_or_else(|_| panic!("{}: {line}", file.display()));
            assert!(
                rows.contains_key(&n),
                "{}: a marker for row {n}, which is gone",
                file.display()
            );
            markers += 1;
        }
    }
    assert!(markers >= rows.len());
}

#[test]
fn the_page_lists_what_is_not_yet_defended() {
    let text = std::fs::read_to_string(root().join("SECURITY.md")).expect("SECURITY.md");
    assert!(text.contains("## Not yet defended"));
}
