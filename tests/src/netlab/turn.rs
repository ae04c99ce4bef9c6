//! Debian's coturn on the lab's public segment: STUN and TURN on two addresses.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::Lab;
use crate::coturn::{PASSWORD, REALM, USER};

/// coturn's two addresses on the public segment (two, so a STUN client can tell an
/// address-dependent mapping from an endpoint-independent one).
pub const TURN_ADDRS: [Ipv4Addr; 2] = [Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2)];

/// coturn's STUN/TURN port (TCP).
pub const TURN_PORT: u16 = 3478;

/// The range coturn takes relayed ports from (inclusive).
pub const RELAY_PORTS: (u16, u16) = (50000, 59999);

/// A coturn in a lab's public namespace; ended by its pid when dropped.
pub struct TurnServer {
    child: Child,
    /// Its log, removed when it ends.
    log: std::path::PathBuf,
}

impl TurnServer {
    /// Starts coturn in `lab`'s public namespace, listening on both [`TURN_ADDRS`] and
    /// relaying from the first; waits until it listens.
    pub fn start(lab: &Lab) -> TurnServer {
        let ns = lab.public();
        let log = std::env::temp_dir().join(format!("{ns}-coturn.log"));
        let file = std::fs::File::create(&log).expect("coturn's log file");
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "turnserver",
                "-n",
                "-v",
                "--log-file=stdout",
            ])
            .args(TURN_ADDRS.map(|a| format!("--listening-ip={a}")))
            .arg(format!("--relay-ip={}", TURN_ADDRS[0]))
            .arg(format!("--listening-port={TURN_PORT}"))
            .arg(format!("--min-port={}", RELAY_PORTS.0))
            .arg(format!("--max-port={}", RELAY_PORTS.1))
            .args([
                "--lt-cred-mech",
                &format!("--user={USER}:{PASSWORD}"),
                &format!("--realm={REALM}"),
            ])
            // Relayed traffic both ways at once can stall with more threads (DESIGN.md).
            .args(["--relay-threads=1", "--no-cli", "--no-tls", "--no-dtls"])
            .arg(format!("--pidfile={}", log.with_extension("pid").display()))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("turnserver does not start in {ns}: {e}"));
        let mut server = TurnServer {
            child,
            log: log.clone(),
        };
        // A starved machine can take seconds to start a process; this bounds a failure only.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listening =
                super::run(Command::new("ip").args(["netns", "exec", &ns, "ss", "-Htln"]));
            if TURN_ADDRS
                .iter()
                .all(|a| listening.contains(&format!("{a}:{TURN_PORT}")))
            {
                return server;
            }
            let exited = matches!(server.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("coturn does not listen in {ns}; it said:\n{said}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `turn://` URL for `ferry --turn`, on coturn's address `index` (0 or 1).
    pub fn url(index: usize) -> String {
        format!(
            "turn://{USER}:{PASSWORD}@{}:{TURN_PORT}?realm={REALM}",
            TURN_ADDRS[index]
        )
    }
}

impl TurnServer {
    /// What coturn logged so far (for a failing test to show).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for TurnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(self.log.with_extension("pid"));
    }
}
