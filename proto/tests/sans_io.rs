//! `ferry-proto` is sans-IO, by construction rather than by habit: this test reads its
//! source and its manifest and fails on anything that reaches the system.
//!
//! Unit-test modules (from `#[cfg(test)]` to the end of a file) may read a clock; doc
//! comments may show a driver. Addresses are `core::net` types: `std::net` is where sockets
//! live, so the whole path is refused.

use std::path::{Path, PathBuf};

/// What may not appear in `proto/src`, and why.
const BANNED: &[(&str, &str)] = &[
    ("std::net", "sockets (addresses are core::net)"),
    ("std::thread", "threads"),
    ("std::fs", "files"),
    ("std::process", "processes"),
    ("std::env", "the environment"),
    (
        "SystemTime::now",
        "the clock (time comes in as an argument)",
    ),
    ("Instant::now", "the clock (time comes in as an argument)"),
    ("getrandom", "OS randomness (randomness comes from a seed)"),
    ("OsRng", "OS randomness (randomness comes from a seed)"),
    (
        "SystemRandom",
        "OS randomness (randomness comes from a seed)",
    ),
];

/// Direct dependencies `ferry-proto` may not have: runtimes, sockets, the OS.
const BANNED_DEPENDENCIES: &[&str] = &[
    "tokio",
    "smol",
    "async-io",
    "mio",
    "socket2",
    "libc",
    "if-addrs",
    "directories",
    "getrandom",
];

fn sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("proto/src is readable") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn the_core_reaches_no_socket_thread_file_clock_or_os_randomness() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    assert!(files.len() > 20, "the walk found the sources");
    let mut found = Vec::new();
    for file in &files {
        // A module's tests in a file of their own (`#[cfg(test)] mod tests;`), checked below.
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).expect("a source file");
        for (n, line) in text.lines().enumerate() {
            if line.trim_start() == "#[cfg(test)]" {
                break;
            }
            let code = line.split("//").next().unwrap_or_default();
            for (banned, why) in BANNED {
                if code.contains(banned) {
                    let at = file.strip_prefix(root).unwrap_or(file).display();
                    found.push(format!("{at}:{}: `{banned}`: {why}", n + 1));
                }
            }
        }
    }
    assert!(found.is_empty(), "sans-IO broken:\n{}", found.join("\n"));
    // Every such file is declared only under `#[cfg(test)]`: it never reaches the core.
    for file in files
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "tests.rs"))
    {
        let parent = file.parent().expect("a folder");
        let declared = [parent.with_extension("rs"), parent.join("mod.rs")]
            .iter()
            .filter_map(|m| std::fs::read_to_string(m).ok())
            .any(|text| text.contains("#[cfg(test)]\nmod tests;"));
        assert!(
            declared,
            "{} is not declared as `#[cfg(test)] mod tests;`",
            file.display()
        );
    }
}

#[test]
fn the_core_depends_on_no_runtime_or_system_crate() {
    let manifest =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .expect("the manifest");
    let mut section = String::new();
    let mut found = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.to_owned();
            continue;
        }
        let normal = section == "[dependencies]" || section.ends_with(".dependencies]");
        let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
        if normal && BANNED_DEPENDENCIES.contains(&name) {
            found.push(format!("{section} {name}"));
        }
    }
    assert!(found.is_empty(), "ferry-proto depends on {found:?}");
}
