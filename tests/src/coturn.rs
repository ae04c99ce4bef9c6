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
        for _ in 0..5 {
            let port = free_port();
            let pidfile = std::env::temp_dir().join(format!("ferry-coturn-{port}.pid"));
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
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("turnserver starts");
            let mut server = Coturn { child, port };
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if is_listening(server.v4()) && is_listening(server.v6()) {
                    return Some(server);
                }
                if let Ok(Some(_)) = server.child.try_wait() {
                    break; // It exited (the port was taken after all): try another.
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = server.child.kill();
        }
        panic!("coturn did not start listening");
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

/// A port free on both loopbacks right now.
fn free_port() -> u16 {
    loop {
        let v4 = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = v4.local_addr().expect("addr").port();
        if TcpListener::bind(("::1", port)).is_ok() {
            return port;
        }
    }
}
