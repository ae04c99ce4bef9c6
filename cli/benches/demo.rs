//! `ferry demo` of this build against an older `ferry` binary, in interleaved rounds of the
//! same run (the machine is shared and noisy: only the ratio means something).
//!
//! ```sh
//! FERRY_BENCH_OLD=/path/to/old/ferry cargo bench -p ferry-cli --bench demo
//! FERRY_BENCH_OLD=… FERRY_BENCH_SIZE=256M FERRY_BENCH_ROUNDS=9 cargo bench -p ferry-cli --bench demo
//! ```
//!
//! Each round runs `ferry demo --size 64M` (both ends in one process, loopback, ICE, TLS 1.3,
//! the SHA3-512 verified) with each binary, in alternating order, and reads the throughput
//! the demo prints (`… MiB in … s: … MiB/s`); it prints the median of each and their ratio.
//! Without `FERRY_BENCH_OLD` it prints this build's figures alone. The old binary of issue 18
//! is built from `9ee6d86`, the last commit before its work (`README.md`, *Benchmarks*).
//! Not part of `.ci/run`.
// A benchmark's output is its result.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::process::{Command, Stdio};

/// The throughput one `demo` printed, in MiB/s.
fn demo(binary: &Path, size: &str) -> f64 {
    let home = tempfile::tempdir().expect("a temporary folder");
    let out = Command::new(binary)
        .args(["demo", "--size", size])
        .env("FERRY_HOME", home.path())
        .env("FERRY_NO_PORT_MAPPING", "1")
        .env_remove("FERRY_TURN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("ferry demo runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} demo failed: {text}",
        binary.display()
    );
    // "64.0 MiB in 0.57 s: 112.3 MiB/s (…)": the figure before the first "MiB/s".
    let rate = text.lines().find_map(|line| {
        let (before, _) = line.split_once(" MiB/s")?;
        before.rsplit(' ').next()?.parse::<f64>().ok()
    });
    rate.unwrap_or_else(|| panic!("no throughput in {}'s output: {text}", binary.display()))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let rounds: usize = std::env::var("FERRY_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
        .max(1);
    let size = std::env::var("FERRY_BENCH_SIZE").unwrap_or_else(|_| "64M".to_owned());
    let new = Path::new(env!("CARGO_BIN_EXE_ferry"));
    let old = std::env::var_os("FERRY_BENCH_OLD").map(std::path::PathBuf::from);
    println!("demo: --size {size}, {rounds} round(s), this build against {old:?}");
    let (mut news, mut olds) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so neither always runs on a warmer cache.
        let order: [Option<&Path>; 2] = if round % 2 == 0 {
            [Some(new), old.as_deref()]
        } else {
            [old.as_deref(), Some(new)]
        };
        for binary in order.into_iter().flatten() {
            let rate = demo(binary, &size);
            if binary == new {
                news.push(rate);
            } else {
                olds.push(rate);
            }
        }
        println!(
            "round {round}: this build {:.1} MiB/s{}",
            news[round],
            olds.get(round)
                .map_or(String::new(), |r| format!(", old {r:.1} MiB/s"))
        );
    }
    let new = median(news);
    match olds.is_empty() {
        true => println!("median: this build {new:.1} MiB/s"),
        false => {
            let old = median(olds);
            println!(
                "median: this build {new:.1} MiB/s, old {old:.1} MiB/s: {:.2}x (goal >= 2)",
                new / old
            );
        }
    }
}
