//! The parent's side: writes the file once, starts a receiver and a sender (this binary again)
//! for each runtime, and prints what they measured.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::{callgrind, strace};

/// What each side runs under: nothing, or a tool that counts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tool {
    /// Timed runs, with the primitives measured after.
    None,
    /// `valgrind --tool=callgrind`: instructions per byte.
    Callgrind,
    /// `strace -f -c`: system calls per 64 MiB.
    Strace,
}

/// One benchmark run: the file and the folder the sides share.
pub(crate) struct Run {
    bytes: u64,
    tool: Tool,
    dir: tempfile::TempDir,
    /// CPUs to pin the sender and receiver to, when the machine has two or more.
    cpus: Option<(usize, usize)>,
}

/// What one side printed.
type Figures = BTreeMap<String, String>;

impl Run {
    /// Writes a file of `bytes` (a whole number of MiB) in a fresh folder.
    pub(crate) fn new(bytes: u64, tool: Tool) -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out");
        std::fs::create_dir_all(&out).expect("out");
        ferry_tests::content::write_file(&out.join("bench.bin"), bytes, 1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let cpus = (cores >= 2 && tool == Tool::None).then_some((0, 1));
        Run {
            bytes,
            tool,
            dir,
            cpus,
        }
    }

    fn side(&self, runtime: &str, send: bool, files: usize) -> Child {
        let role = if send { "send" } else { "receive" };
        let exe = std::env::current_exe().expect("this benchmark's path");
        let mut command = match self.tool {
            Tool::Callgrind => {
                let mut c = Command::new("valgrind");
                c.arg("--tool=callgrind")
                    .arg(format!(
                        "--callgrind-out-file={}",
                        self.tool_file(runtime, send).display()
                    ))
                    .arg("-q")
                    .arg(exe);
                c
            }
            Tool::Strace => {
                let mut c = Command::new("strace");
                c.args(["-f", "-c", "-o"])
                    .arg(self.tool_file(runtime, send))
                    .arg(exe);
                c
            }
            Tool::None => Command::new(exe),
        };
        command
            .env("FERRY_BENCH_ROLE", role)
            .env("FERRY_BENCH_RUNTIME", runtime)
            .env("FERRY_BENCH_DIR", self.dir.path())
            .env("FERRY_BENCH_BYTES", self.bytes.to_string())
            .env("FERRY_BENCH_FILES", files.to_string())
            .env(
                "FERRY_BENCH_PRIMITIVES",
                if self.tool != Tool::None || files > 1 {
                    "0"
                } else {
                    "1"
                },
            )
            .stdout(Stdio::piped());
        // Several files at once may use every core; one file gets one core per side.
        if let Some((sender, receiver)) = self.cpus.filter(|_| files == 1) {
            command.env(
                "FERRY_BENCH_CPU",
                (if send { sender } else { receiver }).to_string(),
            );
        }
        command.spawn().expect("start a side")
    }

    fn tool_file(&self, runtime: &str, send: bool) -> PathBuf {
        let role = if send { "send" } else { "receive" };
        let tool = if self.tool == Tool::Strace {
            "strace"
        } else {
            "callgrind"
        };
        std::env::temp_dir().join(format!("ferry-{tool}-{runtime}-{role}.out"))
    }

    /// `files` transfers at once (over one connection) between two processes on `runtime`,
    /// and their report.
    pub(crate) fn pair(&self, runtime: &str, files: usize) {
        // A fresh DHT folder: nothing left from the previous pair.
        let _ = std::fs::remove_dir_all(self.dir.path().join("dht"));
        // Each file of its own content: a copy of one file could be recognised as one.
        for i in 1..files {
            let path = self.dir.path().join("out").join(format!("bench-{i}.bin"));
            if !path.exists() {
                ferry_tests::content::write_file(&path, self.bytes, 1 + i as u64);
            }
        }
        let receiver = self.side(runtime, false, files);
        let sender = self.side(runtime, true, files);
        let send = figures(sender);
        let mut receiver = receiver;
        if send.is_none() {
            // The receiver would wait for an offer that never comes.
            let _ = receiver.kill();
        }
        let receive = figures(receiver);
        let (Some(send), Some(receive)) = (send, receive) else {
            println!("{runtime}: a side failed (see its error above)");
            return;
        };
        let gib = (self.bytes * files as u64) as f64 / f64::from(1u32 << 30);
        if files > 1 {
            return concurrency(runtime, files, self.bytes, gib, &send, &receive);
        }
        println!(
            "{runtime}: {} MiB between two processes{}",
            self.bytes >> 20,
            match self.cpus {
                Some((s, r)) => format!(", sender pinned to CPU {s}, receiver to CPU {r}"),
                None => String::new(),
            }
        );
        if self.tool != Tool::None {
            for (name, send) in [("sender", true), ("receiver", false)] {
                let file = self.tool_file(runtime, send);
                match self.tool {
                    Tool::Callgrind => callgrind::report(name, &file, self.bytes),
                    _ => strace::report(name, &file, self.bytes),
                }
            }
            return;
        }
        side_line("sender", &send, gib, "seal", "write", "read");
        side_line("receiver", &receive, gib, "open", "read", "write");
        let wall = num(&receive, "wall");
        // SHA3-512 as fast as one core of one's own runs it: its CPU time (its wall time on a
        // shared machine includes other processes' turns).
        let sha3 = num(&receive, "sha3");
        println!(
            "  wall: {wall:.2} s from the accept to the end on the receiver, {:.3} GiB/s = {:.2} × single-core SHA3-512 ({:.3} GiB/s on the receiver's core, CPU time; {:.3} GiB/s wall)",
            gib / wall,
            sha3 / wall,
            gib / sha3,
            gib / num(&receive, "sha3_wall"),
        );
    }
}

/// Aggregate throughput of several transfers at once, the cores they kept busy, and the
/// throughput two cores could give at this run's CPU cost per GiB.
fn concurrency(
    runtime: &str,
    files: usize,
    bytes: u64,
    gib: f64,
    send: &Figures,
    receive: &Figures,
) {
    let (wall, cpu_s, cpu_r) = (num(receive, "wall"), num(send, "cpu"), num(receive, "cpu"));
    let busy_s = cpu_s / num(send, "wall");
    let busy_r = cpu_r / wall;
    let bound = 2.0 / ((cpu_s + cpu_r) / gib);
    println!(
        "{runtime}: {files} × {} MiB at once over one connection (not pinned): {:.3} GiB/s aggregate; cores busy: sender {busy_s:.2}, receiver {busy_r:.2}, both {:.2}; two cores at this run's {:.2} + {:.2} CPU s/GiB would give {bound:.3} GiB/s: ratio {:.2}",
        bytes >> 20,
        gib / wall,
        busy_s + busy_r,
        cpu_s / gib,
        cpu_r / gib,
        gib / wall / bound
    );
    // Where the work went: with a worker per file, each file's digest on its own thread.
    for (name, f) in [("sender", send), ("receiver", receive)] {
        println!(
            "  {name:<8} per live thread, s/GiB: {}",
            threads(f, gib).join(", ")
        );
    }
}

/// Each live thread's CPU seconds per GiB, from a side's `threads` figure.
fn threads(f: &Figures, gib: f64) -> Vec<String> {
    f.get("threads")
        .map_or("", String::as_str)
        .split(',')
        .filter_map(|t| t.rsplit_once(':'))
        .map(|(n, cpu)| format!("{n} {:.2}", cpu.parse::<f64>().unwrap_or(0.0) / gib))
        .collect()
}

fn num(f: &Figures, key: &str) -> f64 {
    f.get(key).and_then(|v| v.parse().ok()).unwrap_or(f64::NAN)
}

fn side_line(name: &str, f: &Figures, gib: f64, aes: &str, socket: &str, file: &str) {
    let per = |key: &str| num(f, key) / gib;
    let sum = per("sha3") + per("aes") + per("socket") + per("file");
    println!(
        "  {name:<8} CPU {:.2} s/GiB (user {:.2}, sys {:.2}); primitives {sum:.2} s/GiB = SHA3-512 {:.2} + AES-256-GCM {aes} {:.2} + socket {socket} {:.2} + file {file} {:.2}; ratio {:.2}",
        per("cpu"),
        per("user"),
        per("sys"),
        per("sha3"),
        per("aes"),
        per("socket"),
        per("file"),
        per("cpu") / sum
    );
    println!(
        "           per live thread, s/GiB (process lifetime): {}",
        threads(f, gib).join(", ")
    );
}

/// Waits for a side and reads its `RESULT` line.
fn figures(child: Child) -> Option<Figures> {
    let out = child.wait_with_output().expect("wait for a side");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT "));
    if !out.status.success() || line.is_none() {
        return None;
    }
    Some(
        line?
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    )
}
