//! Debian's real coturn, started by a test on a free loopback port and stopped by its pid.
//!
//! Without `FERRY_REQUIRE_INTEROP=1` a missing `turnserver` prints a skip line and the test
//! returns; with it (CI sets it) the test fails.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::realnet::is_listening;

/// Username, password and realm every test server accepts.
pub const USER: &str = "u";
/// The password of [`USER`].
pub const PASSWORD: &str = "p";
/// The realm.
pub const REALM: &str = "r";

/// A running coturn; killed when dropped.
pub struct Coturn {
    child: Child,
    /// Its listening port, on 127.0.0.1 and ::1.
    pub port: u16,
}

impl Coturn {
    /// Starts coturn with `extra` options, or says why the test is skipped.
    pub fn start(extra: &[&str]) -> Option<Coturn> {
        let required = std::env::var("FERRY_REQUIRE_INTEROP").is_ok_and(|v| v == "1");
        let Some(binary) = find_turnserver() else {
            assert!(
                !required,
                "FERRY_REQUIRE_INTEROP=1 but coturn's turnserver is not installed (apt-get install coturn)"
            );
            eprintln!(
                "SKIP: coturn's turnserver is not installed; set FERRY_REQUIRE_INTEROP=1 to make this a failure"
            );
            return None;
        };
        let mut last_log = String::new();
        for attempt in 0..5 {
            let port = free_port_pair(attempt);
            let pidfile = std::env::temp_dir().join(format!("ferry-coturn-{port}.pid"));
            let logfile = std::env::temp_dir().join(format!("ferry-coturn-{port}.log"));
            let log = std::fs::File::create(&logfile).expect("coturn's log file");
            let child = Command::new(&binary)
                .args([
                    "-n",
                    "--listening-ip=127.0.0.1",
                    "--listening-ip=::1",
                    "--relay-ip=127.0.0.1",
                    "--relay-ip=::1",
                ])
                .arg(format!("--listening-port={port}"))
                .args([
                    "--lt-cred-mech",
                    &format!("--user={USER}:{PASSWORD}"),
                    &format!("--realm={REALM}"),
                ])
                .args([
                    "--allow-loopback-peers",
                    "--no-cli",
                    "--no-tls",
                    "--no-dtls",
                ])
                .arg(format!("--pidfile={}", pidfile.display()))
                .args(extra)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .spawn()
                .expect("turnserver starts");
            let mut server = Coturn { child, port };
            // A starved machine can take seconds to schedule a new process; the wait ends
            // early when coturn says it cannot bind, which is the case worth retrying.
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if is_listening(server.v4()) && is_listening(server.v6()) {
                    let _ = std::fs::remove_file(&logfile);
                    return Some(server);
                }
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // It exited (a port was taken after all): try others.
                }
                let said = std::fs::read_to_string(&logfile).unwrap_or_default();
                if said.contains("Cannot bind") {
                    break; // It retries a taken port for ever: try others.
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = server.child.kill();
            let _ = server.child.wait();
            last_log = std::fs::read_to_string(&logfile).unwrap_or_default();
            let _ = std::fs::remove_file(&logfile);
        }
        let said: Vec<&str> = last_log
            .lines()
            .filter(|l| !l.contains("Protocol not supported"))
            .collect();
        let tail = &said[said.len().saturating_sub(20)..];
        panic!(
            "coturn did not start listening after 5 tries; its last words:\n{}",
            tail.join("\n")
        );
    }

    /// Its IPv4 address.
    pub fn v4(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Its IPv6 address.
    pub fn v6(&self) -> SocketAddr {
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, self.port))
    }
}

impl crate::turn_loopback::LoopbackServer for Coturn {
    fn addr(&self, family: ferry_proto::turn::Family) -> SocketAddr {
        match family {
            ferry_proto::turn::Family::V4 => self.v4(),
            ferry_proto::turn::Family::V6 => self.v6(),
        }
    }

    /// coturn keeps 16 reads of a peer's connection before the bind
    /// (`MAX_UNSENT_BUFFER_SIZE`), each at most 4 KiB: 65 536 bytes when every read is full,
    /// fewer when the server read while the peer was still sending (a loaded machine: one CI
    /// run kept 65 482). It counts reads, not bytes, so only the bound is exact.
    fn early_data_kept(&self) -> std::ops::RangeInclusive<usize> {
        16..=crate::turn_suite::EARLY_DATA_KEPT
    }
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_turnserver() -> Option<std::path::PathBuf> {
    ["/usr/bin/turnserver", "/usr/local/bin/turnserver"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
}

/// A port `p` such that `p` and `p + 1` are free for TCP and UDP on both loopbacks.
///
/// coturn listens on its port and, for RFC 5780, on the port after it, over TCP and UDP on
/// every listening address; when one bind fails it retries for ever without listening on the
/// rest. Ports come from below the kernel's ephemeral range (32768–60999 on Linux), where no
/// `connect` and no coturn relay (49152–65535) takes one: a port from `bind(0)` is always odd
/// on Linux, so its successor is even, the parity Linux gives outgoing connections, and
/// under a loaded test run one of those held the port after often enough to fail CI.
fn free_port_pair(attempt: u32) -> u16 {
    // A per-process, per-attempt start so that parallel tests and processes spread out.
    let seed = std::process::id()
        .wrapping_mul(2_654_435_761)
        .wrapping_add(attempt.wrapping_mul(40_503))
        .wrapping_add(NEXT.fetch_add(7_919, std::sync::atomic::Ordering::Relaxed));
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000; // 20000..32000, below the ephemeral range
    for i in 0..SPAN {
        let port = (LOW + (seed.wrapping_add(i * 2) % SPAN)) as u16;
        if [port, port + 1].iter().all(|&p| is_free(p)) {
            return port;
        }
    }
    panic!("no free port pair in {LOW}..{}", LOW + SPAN);
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn is_free(port: u16) -> bool {
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && TcpListener::bind((Ipv6Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        && UdpSocket::bind((Ipv6Addr::LOCALHOST, port)).is_ok()
}
