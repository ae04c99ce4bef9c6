//! Ferry against the tool people would pick instead: sendme 0.37.1 (iroh, QUIC, BLAKE3),
//! each moving the same file between two processes on loopback, in interleaved rounds of
//! the same run (the machine is shared and noisy: only the ratio means something).
//!
//! ```sh
//! cargo install sendme --version 0.37.1 --locked     # about 10 minutes here; never in CI
//! cargo bench -p ferry-cli --bench sendme             # 256 MiB, 5 rounds
//! FERRY_BENCH_MIB=1024 FERRY_BENCH_ROUNDS=3 FERRY_BENCH_SENDME=/path/to/sendme cargo bench -p ferry-cli --bench sendme
//! ```
//!
//! End to end, as a user sees it, for both: from the start of the sending command until
//! the receiving one has the whole file verified and has ended. Ferry: a `ferry listen
//! --once --accept-all` already running (a folder DHT, no port mapping), then `ferry send`.
//! sendme: `sendme send --relay disabled --ticket-type addresses` (it imports the file, its
//! BLAKE3 tree, before it prints the ticket), then `sendme receive` of that ticket (`--relay
//! disabled`: offline). Each received file is compared with the source. Without sendme
//! (neither on `PATH` nor in `FERRY_BENCH_SENDME`) it says so and measures Ferry alone. Not
//! part of `.ci/run`.
// A benchmark's output is its result.
#![allow(clippy::print_stdout)]

#[path = "support/homes.rs"]
mod homes;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The sendme binary: `FERRY_BENCH_SENDME`, else `sendme` found on `PATH`.
fn sendme_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("FERRY_BENCH_SENDME") {
        return Some(PathBuf::from(path));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("sendme"))
        .find(|p| p.is_file())
}

/// Whether two files hold the same bytes.
fn same(a: &Path, b: &Path) -> bool {
    let (Ok(fa), Ok(fb)) = (std::fs::File::open(a), std::fs::File::open(b)) else {
        return false;
    };
    let (mut ra, mut rb) = (BufReader::new(fa), BufReader::new(fb));
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let n = read_full(&mut ra, &mut ba);
        if n != read_full(&mut rb, &mut bb) || ba[..n] != bb[..n] {
            return false;
        }
        if n == 0 {
            return true;
        }
    }
}

fn read_full(r: &mut impl std::io::Read, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).expect("read") {
            0 => break,
            k => n += k,
        }
    }
    n
}

/// One sendme transfer of `file` into `into`: the time from `sendme send`'s start until
/// `sendme receive` ended.
fn sendme_copy(sendme: &Path, file: &Path, from: &Path, into: &Path) -> Duration {
    std::fs::create_dir_all(from).expect("a folder");
    std::fs::create_dir_all(into).expect("a folder");
    let start = Instant::now();
    let mut sender = Command::new(sendme)
        .args([
            "send",
            "--relay",
            "disabled",
            "--ticket-type",
            "addresses",
            "--no-progress",
        ])
        .arg(file)
        .current_dir(from)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sendme send starts");
    let stdout = sender.stdout.take().expect("its output");
    // "sendme receive <ticket>" once the file is imported.
    let ticket = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| line.strip_prefix("sendme receive ").map(str::to_owned))
        .expect("sendme send printed a ticket");
    let received = Command::new(sendme)
        .args(["receive", "--relay", "disabled", "--no-progress", &ticket])
        .current_dir(into)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("sendme receive runs");
    let wall = start.elapsed();
    // The sender serves until it is stopped; it is our child.
    let _ = sender.kill();
    let _ = sender.wait();
    assert!(
        received.status.success(),
        "sendme receive: {}",
        String::from_utf8_lossy(&received.stderr)
    );
    wall
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mib = var("FERRY_BENCH_MIB", 256).max(1);
    let rounds = var("FERRY_BENCH_ROUNDS", 5).max(1);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let source = dir.path().join("payload.bin");
    // Pseudo-random bytes (`ferry_tests::content`): nothing any layer could compress.
    ferry_tests::content::write_file(&source, mib << 20, 1);
    let homes = homes::Homes::new(dir.path());
    let sendme = sendme_binary();
    match &sendme {
        Some(path) => println!(
            "sendme: {mib} MiB, {rounds} round(s), against {}",
            path.display()
        ),
        None => println!(
            "sendme: not found (`cargo install sendme --version 0.37.1 --locked`, or \
             FERRY_BENCH_SENDME=path): Ferry alone, {mib} MiB, {rounds} round(s)"
        ),
    }
    let rate = |d: Duration| (mib << 20) as f64 / 1e6 / d.as_secs_f64();
    let (mut ferry_total, mut sendme_total) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        let mut line = format!("round {round}:");
        // Alternate which goes first, so neither always runs on a warmer page cache.
        let ferry_first = round % 2 == 0;
        for tool in [ferry_first, !ferry_first] {
            let into = dir.path().join(format!("in-{round}-{tool}"));
            if tool {
                let d = homes.send(&source, &into);
                assert!(
                    same(&source, &into.join("payload.bin")),
                    "Ferry's copy differs"
                );
                ferry_total += d;
                line += &format!(" ferry {:.0} MB/s ({:.2} s)", rate(d), d.as_secs_f64());
            } else if let Some(sendme) = &sendme {
                let from = dir.path().join(format!("from-{round}"));
                let d = sendme_copy(sendme, &source, &from, &into);
                assert!(
                    same(&source, &into.join("payload.bin")),
                    "sendme's copy differs"
                );
                sendme_total += d;
                line += &format!(" sendme {:.0} MB/s ({:.2} s)", rate(d), d.as_secs_f64());
                std::fs::remove_dir_all(&from).expect("clean");
            }
            let _ = std::fs::remove_dir_all(&into);
        }
        println!("{line}");
    }
    let ferry = ferry_total.as_secs_f64() / rounds as f64;
    if sendme.is_some() {
        let sendme = sendme_total.as_secs_f64() / rounds as f64;
        println!(
            "mean: ferry {:.0} MB/s, sendme {:.0} MB/s: ferry / sendme = {:.2} (goal >= 1.2)",
            (mib << 20) as f64 / 1e6 / ferry,
            (mib << 20) as f64 / 1e6 / sendme,
            sendme / ferry
        );
    } else {
        println!("mean: ferry {:.0} MB/s", (mib << 20) as f64 / 1e6 / ferry);
    }
}
