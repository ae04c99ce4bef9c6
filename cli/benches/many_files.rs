//! Many small files in one send, with the real `ferry` binary in two processes (two homes, a
//! folder DHT, loopback): files per second against `tar c | tar x; sync` of the same tree
//! over a local pipe, measured in the same run, so the ratio holds on a noisy machine.
//!
//! ```sh
//! cargo bench -p ferry-cli --bench many_files                       # 10,000 files of 4 KiB
//! FERRY_BENCH_FILES=2000 FERRY_BENCH_ROUNDS=3 cargo bench -p ferry-cli --bench many_files
//! ```
//!
//! Each file Ferry receives is durable before its name is (PROTOCOL.md §14, *Durability*):
//! `tar` gets one `sync` at the end, which is the most a batched policy could get down to.
//! The receiver's tree is checked whole after each round. Copies are deleted only at the
//! end: on ext4, creating files soon after many were deleted is slower (the allocator skips
//! inodes deleted in the last minutes), which deleting `tar`'s copy before Ferry's round
//! charged to Ferry alone. Not part of `.ci/run`.
// A benchmark's output is its result.
#![allow(clippy::print_stdout)]

#[path = "support/homes.rs"]
mod homes;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Files per folder of the tree.
const PER_FOLDER: usize = 100;

fn var(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `files` files of `size` bytes in folders of [`PER_FOLDER`], below `root/tree`.
fn make_tree(root: &Path, files: usize, size: usize) -> PathBuf {
    let tree = root.join("tree");
    for n in 0..files {
        let folder = tree.join(format!("d{:03}", n / PER_FOLDER));
        if n % PER_FOLDER == 0 {
            std::fs::create_dir_all(&folder).expect("a folder");
        }
        // Distinct content per file, cheaply.
        let mut bytes = vec![0u8; size];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = (i as u64)
                .wrapping_mul(n as u64 + 1)
                .wrapping_add(n as u64 >> 3) as u8;
        }
        std::fs::write(folder.join(format!("f{n:05}.bin")), bytes).expect("a file");
    }
    tree
}

fn count_files(root: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => n += 1,
                _ => {}
            }
        }
    }
    n
}

/// `tar c | tar x; sync` of `tree` into `into`: its wall time.
fn tar_copy(tree: &Path, into: &Path) -> Duration {
    std::fs::create_dir_all(into).expect("a folder");
    let script = format!(
        "tar c -C {:?} . | tar x -C {:?} && sync",
        tree.display().to_string(),
        into.display().to_string()
    );
    let start = Instant::now();
    let status = Command::new("sh")
        .args(["-c", &script])
        .status()
        .expect("sh runs");
    assert!(status.success(), "tar failed");
    start.elapsed()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` lists benchmarks: there is nothing to list here.
        return;
    }
    let files = var("FERRY_BENCH_FILES", 10_000);
    let size = var("FERRY_BENCH_FILE_BYTES", 4096);
    let rounds = var("FERRY_BENCH_ROUNDS", 1).max(1);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let tree = make_tree(dir.path(), files, size);
    let homes = homes::Homes::new(dir.path());
    println!(
        "many_files: {files} files of {size} bytes in folders of {PER_FOLDER}, {rounds} round(s)"
    );
    let (mut tar_total, mut ferry_total) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let tar_into = dir.path().join(format!("tar-{round}"));
        let t = tar_copy(&tree, &tar_into);
        assert_eq!(count_files(&tar_into), files);
        let ferry_into = dir.path().join(format!("in-{round}"));
        let f = homes.send(&tree, &ferry_into);
        assert_eq!(
            count_files(&ferry_into.join("tree")),
            files,
            "every file arrived"
        );
        let rate = |d: Duration| files as f64 / d.as_secs_f64();
        println!(
            "round {round}: tar|tar;sync {:.0} files/s ({:.2} s), ferry {:.0} files/s ({:.2} s)",
            rate(t),
            t.as_secs_f64(),
            rate(f),
            f.as_secs_f64()
        );
        tar_total += t;
        ferry_total += f;
    }
    println!(
        "ferry / (tar | tar; sync) = {:.3} (goal >= 0.5; each file Ferry receives is durable before its name)",
        tar_total.as_secs_f64() / ferry_total.as_secs_f64()
    );
}
