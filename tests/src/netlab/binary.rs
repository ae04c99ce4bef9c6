//! The real `ferry` binary the lab runs: the one cargo built for the running test (the
//! `ferry-cli` package's tests name it with [`use_binary`]), else one built once per test
//! process with the cargo that runs the tests.
//!
//! Building it from here costs a whole second build of the dependency tree whenever the
//! features cargo unifies for `cargo build -p ferry-cli` differ from those of the test run
//! (they do under `cargo test --workspace`, where dev-dependencies add features): that was
//! most of the kernel-NAT suite's 39–194 s while each row's transfer took under a second.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Runs `path` as the lab's `ferry` (a test in `ferry-cli` passes
/// `env!("CARGO_BIN_EXE_ferry")`, the binary cargo built with the test). The first call of
/// a process decides; later ones change nothing.
pub fn use_binary(path: impl Into<PathBuf>) {
    let path = path.into();
    BINARY.get_or_init(|| private_copy(&path));
}

/// The `ferry` the lab runs: the one given to [`use_binary`], else one built from this
/// workspace in the target folder and profile of the running test binary (built now if it is
/// not current; cargo decides).
pub fn ferry_binary() -> PathBuf {
    BINARY.get_or_init(build).clone()
}

fn build() -> PathBuf {
    // The test binary is TARGET/PROFILE/deps/NAME-HASH.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lies in PROFILE/deps")
        .to_path_buf();
    let target = profile_dir.parent().expect("a target folder").to_path_buf();
    let release = profile_dir.file_name().is_some_and(|p| p == "release");
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--quiet",
            "--locked",
            "-p",
            "ferry-cli",
            "--bin",
            "ferry",
        ])
        .env("CARGO_TARGET_DIR", &target);
    if release {
        cmd.arg("--release");
    }
    let started = std::time::Instant::now();
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "cargo could not build ferry");
    eprintln!(
        "netlab: ferry built (or found current) in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    private_copy(&profile_dir.join("ferry"))
}

/// A private copy of `built`: a target folder shared with other checkouts may get their
/// `ferry` in its place while this test runs. Copies of runs that are over go first.
fn private_copy(built: &std::path::Path) -> PathBuf {
    sweep_copies();
    let copy = std::env::temp_dir().join(format!("ferry-netlab-{}", std::process::id()));
    std::fs::copy(built, &copy).unwrap_or_else(|e| panic!("no ferry at {}: {e}", built.display()));
    copy
}

/// Removes the copies of test processes that are gone.
fn sweep_copies() {
    let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in dir.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix("ferry-netlab-") else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
