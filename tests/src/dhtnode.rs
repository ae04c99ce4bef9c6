//! Debian's real OpenDHT node (`dhtnode`) with its HTTP proxy, for signalling tests.
//!
//! `dhtnode` binds every interface, so it only ever runs inside a network namespace of its
//! own: [`in_network_namespace`] runs the calling test again in a new one (`unshare -n`, with
//! `lo` up), where the test starts two nodes with [`DhtNodes::start`] (a lone node refuses
//! every put) and talks to the first one's proxy on loopback. Without
//! `FERRY_REQUIRE_INTEROP=1`, a missing `dhtnode` or `unshare` prints a skip line; with it (CI
//! sets it), the test fails.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::realnet::is_listening;

/// Set in the environment of a test run again inside its network namespace.
const INSIDE: &str = "FERRY_NETNS";

fn required() -> bool {
    std::env::var("FERRY_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

fn skip(why: &str) -> bool {
    assert!(!required(), "FERRY_REQUIRE_INTEROP=1 but {why}");
    eprintln!("SKIP: {why}; set FERRY_REQUIRE_INTEROP=1 to make this a failure");
    false
}

/// Whether the caller is inside a network namespace of its own and should run its scenario
/// now. Outside one, it runs the test named `test` (its exact name in this test binary)
/// again inside a new namespace, checks that it passed there, and returns `false`.
pub fn in_network_namespace(test: &str) -> bool {
    if std::env::var(INSIDE).is_ok_and(|v| v == "1") {
        return true;
    }
    if !std::path::Path::new("/usr/bin/dhtnode").exists() {
        return skip("OpenDHT's dhtnode is not installed (apt-get install dhtnode)");
    }
    let allowed = Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !allowed {
        return skip("this user cannot make a network namespace (unshare -n)");
    }
    let exe = std::env::current_exe().expect("the test binary");
    crate::rerun::run_one(
        Command::new("unshare")
            .args([
                "-n",
                "--",
                "sh",
                "-c",
                "ip link set lo up && exec \"$0\" \"$@\"",
            ])
            .arg(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(INSIDE, "1"),
        test,
    );
    false
}

/// Two `dhtnode`s, the first with its HTTP proxy; killed when dropped.
pub struct DhtNodes {
    children: Vec<Child>,
    /// The proxy's address.
    pub proxy: SocketAddr,
}

impl DhtNodes {
    /// Starts them (inside a network namespace: see [`in_network_namespace`]).
    pub fn start() -> DhtNodes {
        let spawn = |args: &[&str]| {
            Command::new("/usr/bin/dhtnode")
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("dhtnode starts")
        };
        let proxy = SocketAddr::from(([127, 0, 0, 1], 8080));
        let mut nodes = DhtNodes {
            children: vec![spawn(&["-s", "-p", "4222", "--proxyserver", "8080"])],
            proxy,
        };
        // The first node serves (its proxy listens: its DHT socket is bound) before the second
        // bootstraps from it: a bootstrap ping that finds no socket is not tried again soon.
        // The deadline bounds a failure only (a loaded machine starts processes slowly).
        let deadline = Instant::now() + Duration::from_secs(60);
        while !is_listening(proxy) {
            assert!(Instant::now() < deadline, "the OpenDHT proxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        nodes
            .children
            .push(spawn(&["-s", "-p", "4223", "-b", "127.0.0.1:4222"]));
        nodes
    }
}

impl Drop for DhtNodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
