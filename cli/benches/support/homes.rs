//! Two homes of the real `ferry` binary (Alice's and Bob's) over a folder DHT, for the
//! benchmarks that run it as users do: Bob listens, Alice sends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a send may take (a bound on failures, not a measure).
pub(crate) const LIMIT: Duration = Duration::from_secs(1800);

/// Alice's and Bob's homes below `dir`, and Bob's account id.
pub(crate) struct Homes {
    dir: PathBuf,
    bob: String,
}

impl Homes {
    /// Makes both accounts below `dir`.
    pub(crate) fn new(dir: &Path) -> Homes {
        let homes = Homes {
            dir: dir.to_owned(),
            bob: String::new(),
        };
        homes.account("alice");
        let bob = homes.account("bob");
        Homes { bob, ..homes }
    }

    /// `ferry` with `home`'s environment.
    pub(crate) fn ferry(&self, home: &str) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ferry"));
        c.env("FERRY_HOME", self.dir.join(home))
            .env(
                "FERRY_DHT",
                format!("file:{}", self.dir.join("dht").display()),
            )
            .env("FERRY_NO_PORT_MAPPING", "1")
            .env_remove("FERRY_TURN")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        c
    }

    fn account(&self, home: &str) -> String {
        let out = self
            .ferry(home)
            .args(["--json", "account", "new"])
            .output()
            .expect("ferry runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        line["account"].as_str().expect("an account").to_owned()
    }

    /// One send of `path` from Alice to a listener of Bob's into `into`: the time from the
    /// start of `ferry send` until both have ended (the listener once every file is
    /// committed).
    pub(crate) fn send(&self, path: &Path, into: &Path) -> Duration {
        let mut listener = self
            .ferry("bob")
            .args(["listen", "--once", "--accept-all", "--into"])
            .arg(into)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ferry listen starts");
        // The listener announces itself before the send looks it up.
        std::thread::sleep(Duration::from_millis(500));
        let start = Instant::now();
        let sent = self
            .ferry("alice")
            .arg("send")
            .arg(path)
            .args(["--to", &self.bob])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .expect("ferry send runs");
        assert!(
            sent.status.success(),
            "send: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = listener.try_wait().expect("wait") {
                assert!(status.success(), "listen ended {status}");
                break;
            }
            assert!(Instant::now() < deadline, "the listener did not end");
            std::thread::sleep(Duration::from_millis(2));
        }
        start.elapsed()
    }
}
