//! What the CLI test files share: a scratch world of homes and a DHT folder, the real
//! `ferry` binary run in it with a bound on how long it may take, and its JSON lines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// A scratch world: homes and a DHT folder, all under one temporary folder.
pub(crate) struct World {
    dir: tempfile::TempDir,
    /// Longest any one process may run (a bound on failures, not a measure).
    limit: Duration,
}

impl World {
    /// A new world whose processes may each run `limit` at most.
    pub(crate) fn new(limit: Duration) -> World {
        World {
            dir: tempfile::tempdir().expect("a temporary folder"),
            limit,
        }
    }

    /// `name` inside the world's folder.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `ferry` with `home` as its home and this world's DHT folder, logs quiet unless
    /// `FERRY_TEST_LOG` says what `RUST_LOG` to give it (a failing test then shows them).
    pub(crate) fn ferry(&self, home: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.env("FERRY_HOME", self.path(home))
            .env("FERRY_DHT", format!("file:{}", self.path("dht").display()))
            .env_remove("FERRY_TURN")
            // These tests run in this machine's own network: no PCP or SSDP to its router.
            .env("FERRY_NO_PORT_MAPPING", "1")
            .stdin(Stdio::null());
        match std::env::var("FERRY_TEST_LOG") {
            Ok(filter) => c.env("RUST_LOG", filter),
            Err(_) => c.env_remove("RUST_LOG"),
        };
        c
    }

    /// [`ferry`](Self::ferry) with its standard output and error captured, for
    /// [`finish`].
    pub(crate) fn ferry_piped(&self, home: &str) -> Command {
        let mut c = self.ferry(home);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    }

    /// Runs `ferry ARGS` in `home` to the end.
    pub(crate) fn run(&self, home: &str, args: &[&str]) -> Output {
        let child = self
            .ferry_piped(home)
            .args(args)
            .spawn()
            .expect("ferry starts");
        finish(child, self.limit)
    }

    /// A new account in `home`; its id.
    pub(crate) fn account(&self, home: &str) -> String {
        let out = self.run(home, &["--json", "account", "new"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let line = json_lines(&out.stdout).remove(0);
        line["account"].as_str().expect("an account id").to_owned()
    }
}

/// Waits for `child` (at most `limit`, then kills it) and collects its output.
pub(crate) fn finish(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("ferry's output"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("ferry (pid {pid}) ran longer than {limit:?}");
        }
    }
}

/// Bytes as text, lossily.
pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every stdout line as JSON; panics on a line that is not a JSON object with an `event`.
pub(crate) fn json_lines(stdout: &[u8]) -> Vec<Value> {
    text(stdout)
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            assert!(v["event"].is_string(), "no event in {l}");
            v
        })
        .collect()
}

/// The lines of one `event`.
pub(crate) fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines.iter().filter(|v| v["event"] == event).collect()
}

/// A file of `size` bytes that is not all one byte.
pub(crate) fn make_file(path: &Path, size: usize) {
    let data: Vec<u8> = (0..size as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(path, data).expect("a test file");
}
