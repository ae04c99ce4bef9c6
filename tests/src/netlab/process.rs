//! A `ferry` process in a lab namespace: its `--json` lines, each with the moment it came.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `ferry`; ended by its pid if dropped before it finished.
pub struct Ferry {
    child: Owned,
    started: Instant,
    lines: JoinHandle<Vec<(Instant, String)>>,
    stderr: JoinHandle<String>,
}

/// How a `ferry` ended.
#[derive(Debug)]
pub struct Finished {
    /// Its exit code (`None`: killed, by a signal or for running too long).
    pub code: Option<i32>,
    /// Its `--json` lines, each with the time since it started.
    pub lines: Vec<(Duration, Value)>,
    /// What it wrote on standard error.
    pub stderr: String,
}

impl Finished {
    /// The first line whose `event` is `event`, and when it came.
    pub fn first(&self, event: &str) -> Option<(Duration, &Value)> {
        self.lines
            .iter()
            .find(|(_, v)| v["event"] == event)
            .map(|(at, v)| (*at, v))
    }
}

impl Ferry {
    /// Starts `ferry ARGS` in namespace `ns` with home `home`, meeting others through the
    /// folder DHT `dht` (the lab's hosts share the file system, not a network).
    pub fn spawn(ns: &str, home: &Path, dht: &Path, args: &[&str]) -> Ferry {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(super::ferry_binary())
            .args(args)
            .env("FERRY_HOME", home)
            .env("FERRY_DHT", format!("file:{}", dht.display()))
            .env_remove("FERRY_TURN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match std::env::var("FERRY_TEST_LOG") {
            Ok(filter) => cmd.env("RUST_LOG", filter),
            Err(_) => cmd.env_remove("RUST_LOG"),
        };
        let started = Instant::now();
        let mut child = cmd.spawn().expect("ferry starts");
        let stdout = child.stdout.take().expect("ferry's stdout");
        // Each line is stamped when it is read, so a test can tell when a stage was reached.
        let lines = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .map(|line| (Instant::now(), line))
                .collect()
        });
        let mut err = child.stderr.take().expect("ferry's stderr");
        let stderr = std::thread::spawn(move || {
            let mut all = String::new();
            let _ = err.read_to_string(&mut all);
            all
        });
        Ferry {
            child: Owned(child),
            started,
            lines,
            stderr,
        }
    }

    /// Waits for the end, at most `limit` (then ends it by its pid: the limit bounds a
    /// failure, it does not time a success).
    pub fn finish(self, limit: Duration) -> Finished {
        let Ferry {
            mut child,
            started,
            lines,
            stderr,
        } = self;
        let child = &mut child.0;
        let deadline = started + limit;
        let code = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status.code(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        // The process ended, so its pipes did: both readers end.
        let stderr = stderr.join().unwrap_or_default();
        let lines = lines
            .join()
            .unwrap_or_default()
            .into_iter()
            .map(|(at, line)| {
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
                (at.duration_since(started), value)
            })
            .collect();
        Finished {
            code,
            lines,
            stderr,
        }
    }
}

/// A child process ended by its pid if it is still running when dropped (a failing test).
struct Owned(Child);

impl Drop for Owned {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
