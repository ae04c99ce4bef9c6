//! Debian's miniupnpd (`miniupnpd-nftables`) on a [`Nat::Upnp`](super::Nat::Upnp) router:
//! UPnP-IGD, NAT-PMP and PCP, in the foreground, with a configuration of its own and its
//! own nftables table, so a test can read what it forwards.

use std::net::SocketAddrV4;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Lab, Side};

/// A miniupnpd on one router; ended by its pid when dropped.
pub struct MiniUpnpd {
    child: Child,
    router: String,
    dir: tempfile::TempDir,
}

impl MiniUpnpd {
    /// The nftables table (family `inet`) whose chains miniupnpd fills.
    pub const TABLE: &'static str = "miniupnpd";

    /// Whether miniupnpd is installed; a skip line (a failure under
    /// `FERRY_REQUIRE_INTEROP=1`) when it is not.
    pub fn installed() -> bool {
        let found = Command::new("sh")
            .args(["-c", "command -v miniupnpd"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            crate::rerun::skip("miniupnpd is not installed (apt-get install miniupnpd-nftables)");
        }
        found
    }

    /// Starts miniupnpd on `side`'s router (a [`Nat::Upnp`](super::Nat::Upnp) one) with
    /// UPnP-IGD, NAT-PMP and PCP on its `lan` link, mapping for the LAN's hosts only; waits
    /// until it listens.
    pub fn start(lab: &Lab, side: Side) -> MiniUpnpd {
        let router = lab.router(side);
        super::nft(
            &router,
            &format!(
                "table inet {table} {{
  chain forward {{ type filter hook forward priority 0; policy accept; jump miniupnpd; }}
  chain miniupnpd {{ }}
  chain prerouting {{ type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }}
  chain postrouting {{ type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }}
  chain prerouting_miniupnpd {{ }}
  chain postrouting_miniupnpd {{ }}
}}
",
                table = Self::TABLE
            ),
        );
        let dir = tempfile::tempdir().expect("a folder for miniupnpd");
        let conf = dir.path().join("miniupnpd.conf");
        std::fs::write(
            &conf,
            format!(
                "ext_ifname=wan
listening_ip=lan
http_port=5000
enable_upnp=yes
enable_natpmp=yes
secure_mode=yes
system_uptime=yes
# PCP's shortest lifetime: the tests renew within a minute.
min_lifetime=30
uuid=3d3cec3a-8cf0-11e0-98ee-00000000000{}
upnp_table_name={table}
upnp_nat_table_name={table}
upnp_forward_chain=miniupnpd
upnp_nat_chain=prerouting_miniupnpd
upnp_nat_postrouting_chain=postrouting_miniupnpd
allow 1024-65535 10.0.0.0/8 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
",
                side.index(),
                table = Self::TABLE
            ),
        )
        .expect("miniupnpd's configuration");
        let log = dir.path().join("miniupnpd.log");
        let file = std::fs::File::create(&log).expect("miniupnpd's log");
        let child = Command::new("ip")
            .args(["netns", "exec", &router, "miniupnpd", "-d", "-f"])
            .arg(&conf)
            .arg("-P")
            .arg(dir.path().join("miniupnpd.pid"))
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("miniupnpd does not start in {router}: {e}"));
        let mut server = MiniUpnpd { child, router, dir };
        // A starved machine can take seconds to start a process; this bounds a failure only.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if server.log().contains("Listening for NAT-PMP/PCP traffic") {
                return server;
            }
            let exited = matches!(server.child.try_wait(), Ok(Some(_)));
            if exited || Instant::now() > deadline {
                panic!("miniupnpd does not start; it said:\n{}", server.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What miniupnpd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("miniupnpd.log")).unwrap_or_default()
    }

    /// Whether the router forwards TCP `external_port` to `internal` now (miniupnpd's DNAT
    /// rule in its table).
    pub fn forwards(&self, external_port: u16, internal: SocketAddrV4) -> bool {
        let listed = super::run(Command::new("ip").args([
            "netns",
            "exec",
            &self.router,
            "nft",
            "list",
            "chain",
            "inet",
            Self::TABLE,
            "prerouting_miniupnpd",
        ]));
        listed.lines().any(|l| {
            l.contains(&format!("dport {external_port} "))
                && l.contains(&format!("dnat ip to {internal}"))
        })
    }

    /// The external ports the router forwards to `host` now.
    pub fn forwarded_to(&self, host: std::net::Ipv4Addr) -> Vec<u16> {
        let listed = super::run(Command::new("ip").args([
            "netns",
            "exec",
            &self.router,
            "nft",
            "list",
            "chain",
            "inet",
            Self::TABLE,
            "prerouting_miniupnpd",
        ]));
        listed
            .lines()
            .filter(|l| l.contains(&format!("dnat ip to {host}:")))
            .filter_map(|l| {
                let after = l.split("dport ").nth(1)?;
                after.split_whitespace().next()?.parse().ok()
            })
            .collect()
    }

    /// Waits until [`forwards`](Self::forwards) is `want`, at most `limit` (which bounds a
    /// failure only); whether it got there.
    pub fn wait_forwards(
        &self,
        external_port: u16,
        internal: SocketAddrV4,
        want: bool,
        limit: Duration,
    ) -> bool {
        let until = Instant::now() + limit;
        loop {
            if self.forwards(external_port, internal) == want {
                return true;
            }
            if Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MiniUpnpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
