//! A lab of real Linux NATs in network namespaces, for tests that run the real `ferry`
//! binary across them.
//!
//! One [`Lab`] is five namespaces of its own, joined by veth pairs, with nothing in the root
//! namespace (every link is made inside a lab namespace and its peer moved to another):
//!
//! ```text
//!   host a ── router a ──┐                  ┌── router b ── host b
//!   10.1.0.2  NAT/filter │  public segment  │  NAT/filter   10.2.0.2
//!                        └─ 198.18.0.1/.2 ──┘
//!                           (coturn: STUN and TURN on both addresses)
//! ```
//!
//! Each router applies one [`Nat`] profile with nftables (masquerade, `fully-random` for a
//! symmetric NAT, stateful filters that drop what they refuse, as real NATs do). The public
//! namespace counts what it carries ([`Counters`]): forwarded straight between the two
//! routers (a direct path) or through coturn's relayed ports (a relayed one), so a test
//! asserts the path from the wire, not from what Ferry says of itself.
//!
//! Rows run in parallel: names carry the test process's id and a tag per lab, and addresses
//! may repeat because each lab has namespaces of its own. Namespaces left behind by a killed
//! run (their process gone) are deleted by the next one. Where namespaces or nftables are
//! not available the lab prints a skip line and [`Lab::start`] returns `None`; under
//! `FERRY_REQUIRE_INTEROP=1` (CI) that is a failure.

mod binary;
mod counters;
mod nat;
mod process;
mod turn;
mod upnp;

pub use binary::{ferry_binary, use_binary};
pub use counters::Counters;
pub use nat::Nat;
pub use process::{Ferry, Finished};
pub use turn::{RELAY_PORTS, TURN_ADDRS, TURN_PORT, TurnServer};
pub use upnp::MiniUpnpd;

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Every lab namespace's name starts with this, then the owning process's id and `x`.
const PREFIX: &str = "flab";

/// The two sides of a lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Host a, behind router a.
    A,
    /// Host b, behind router b.
    B,
}

impl Side {
    fn letter(self) -> char {
        match self {
            Side::A => 'a',
            Side::B => 'b',
        }
    }

    fn index(self) -> u8 {
        match self {
            Side::A => 1,
            Side::B => 2,
        }
    }
}

/// Five namespaces (public segment, two routers, two hosts); deleted when dropped.
pub struct Lab {
    tag: String,
    nats: [Nat; 2],
    made: Vec<String>,
}

fn required() -> bool {
    std::env::var("FERRY_REQUIRE_INTEROP").is_ok_and(|v| v == "1")
}

fn skip(why: &str) -> Option<Lab> {
    assert!(!required(), "FERRY_REQUIRE_INTEROP=1 but {why}");
    eprintln!("SKIP: {why}; set FERRY_REQUIRE_INTEROP=1 to make this a failure");
    None
}

/// Runs `cmd`; panics with what it said if it fails (the lab cannot be half made).
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} does not start: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip ARGS`.
fn ip(args: &[&str]) -> String {
    run(Command::new("ip").args(args))
}

/// Runs `nft -f -` in namespace `ns` with `rules` on its standard input.
fn nft(ns: &str, rules: &str) {
    use std::io::Write as _;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft starts");
    child
        .stdin
        .take()
        .expect("nft's stdin")
        .write_all(rules.as_bytes())
        .expect("rules to nft");
    let out = child.wait_with_output().expect("nft ends");
    assert!(
        out.status.success(),
        "nft in {ns} refused the rules: {}\n{rules}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tools_installed() -> Result<(), String> {
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Err(format!(
                "`{tool}` is not installed (apt-get install iproute2 nftables)"
            ));
        }
    }
    Ok(())
}

/// Deletes lab namespaces whose process is gone (a run killed before its drops ran).
fn sweep_stale() {
    let listed = Command::new("ip").args(["netns", "list"]).output();
    let Ok(listed) = listed else { return };
    for line in String::from_utf8_lossy(&listed.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            continue;
        };
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !alive {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Lab {
    /// Makes a lab whose routers apply `a` and `b`, tagged `tag` (short, unique in the test
    /// binary: it goes into namespace names). `None` (after a skip line) where namespaces
    /// cannot be made here.
    pub fn start(tag: &str, a: Nat, b: Nat) -> Option<Lab> {
        if let Err(why) = tools_installed() {
            return skip(&why);
        }
        sweep_stale();
        let mut lab = Lab {
            tag: format!("{PREFIX}{}x{tag}", std::process::id()),
            nats: [a, b],
            made: Vec::new(),
        };
        // The first namespace tells whether this user may make them at all.
        let public = lab.public();
        let made = Command::new("ip")
            .args(["netns", "add", &public])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            return skip("this user cannot make a named network namespace (ip netns add)");
        }
        lab.made.push(public.clone());
        ip(&["-n", &public, "link", "set", "lo", "up"]);
        lab.build();
        Some(lab)
    }

    /// The public segment's namespace (coturn runs there).
    pub fn public(&self) -> String {
        format!("{}p", self.tag)
    }

    /// The namespace of `side`'s router.
    pub fn router(&self, side: Side) -> String {
        format!("{}r{}", self.tag, side.letter())
    }

    /// The namespace of `side`'s host (its `ferry` runs there).
    pub fn host(&self, side: Side) -> String {
        format!("{}h{}", self.tag, side.letter())
    }

    /// The NAT profile of `side`'s router.
    pub fn nat(&self, side: Side) -> Nat {
        self.nats[usize::from(side.index() - 1)]
    }

    /// `side`'s router's address on the public segment: in 198.18.0.0/15 (RFC 2544), except
    /// for a [`Nat::Upnp`] router, whose miniupnpd maps nothing behind a reserved address:
    /// it gets 11.250.N.2 (the example miniupnpd's own tests give of an address it takes).
    /// Nothing of the lab reaches any other network, whatever the addresses.
    pub fn router_public(&self, side: Side) -> Ipv4Addr {
        let [a, b] = self.uplink_net(side);
        Ipv4Addr::new(a, b, side.index(), 2)
    }

    /// The first two octets of `side`'s uplink network.
    fn uplink_net(&self, side: Side) -> [u8; 2] {
        if self.nat(side) == Nat::Upnp {
            [11, 250]
        } else {
            [198, 18]
        }
    }

    /// `side`'s host address: private behind a NAT, public (routed by the public segment)
    /// without one.
    pub fn host_addr(&self, side: Side) -> Ipv4Addr {
        if self.nat(side).translates() {
            Ipv4Addr::new(10, side.index(), 0, 2)
        } else {
            Ipv4Addr::new(198, 19, side.index(), 2)
        }
    }

    fn add_ns(&mut self, name: String) {
        ip(&["netns", "add", &name]);
        self.made.push(name.clone());
        ip(&["-n", &name, "link", "set", "lo", "up"]);
    }

    /// A veth pair with `left` in `ns_l` and `right` in `ns_r`, both up, made inside `ns_l`.
    fn link(ns_l: &str, left: &str, ns_r: &str, right: &str) {
        ip(&[
            "-n", ns_l, "link", "add", left, "type", "veth", "peer", "name", right, "netns", ns_r,
        ]);
        ip(&["-n", ns_l, "link", "set", left, "up"]);
        ip(&["-n", ns_r, "link", "set", right, "up"]);
    }

    fn forward(ns: &str) {
        run(Command::new("ip").args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
        ]));
    }

    fn build(&mut self) {
        let public = self.public();
        for addr in TURN_ADDRS {
            ip(&[
                "-n",
                &public,
                "addr",
                "add",
                &format!("{addr}/32"),
                "dev",
                "lo",
            ]);
        }
        Self::forward(&public);
        for side in [Side::A, Side::B] {
            let (router, host) = (self.router(side), self.host(side));
            self.add_ns(router.clone());
            self.add_ns(host.clone());
            let i = side.index();
            let uplink = format!("r{}", side.letter());
            Self::link(&public, &uplink, &router, "wan");
            let [n1, n2] = self.uplink_net(side);
            ip(&[
                "-n",
                &public,
                "addr",
                "add",
                &format!("{n1}.{n2}.{i}.1/24"),
                "dev",
                &uplink,
            ]);
            // A server of the public segment bound to every address (`dhtnode`, any UDP
            // service) answers from the address the kernel picks: toward a router, by
            // default the link's own address, not the one it was asked on, and the router's
            // NAT drops an answer from an address its host never wrote to. A real server of
            // one address has no such choice: the route says to answer from the servers'.
            ip(&[
                "-n",
                &public,
                "route",
                "replace",
                &format!("{n1}.{n2}.{i}.0/24"),
                "dev",
                &uplink,
                "src",
                &TURN_ADDRS[0].to_string(),
            ]);
            let wan = self.router_public(side);
            ip(&[
                "-n",
                &router,
                "addr",
                "add",
                &format!("{wan}/24"),
                "dev",
                "wan",
            ]);
            ip(&[
                "-n",
                &router,
                "route",
                "add",
                "default",
                "via",
                &format!("{n1}.{n2}.{i}.1"),
            ]);
            Self::forward(&router);

            Self::link(&router, "lan", &host, "eth0");
            let host_ip = self.host_addr(side);
            let gateway = {
                let o = host_ip.octets();
                Ipv4Addr::new(o[0], o[1], o[2], 1)
            };
            ip(&[
                "-n",
                &router,
                "addr",
                "add",
                &format!("{gateway}/24"),
                "dev",
                "lan",
            ]);
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{host_ip}/24"),
                "dev",
                "eth0",
            ]);
            ip(&[
                "-n",
                &host,
                "route",
                "add",
                "default",
                "via",
                &gateway.to_string(),
            ]);
            if !self.nat(side).translates() {
                // A public host network: the public segment routes it to its router.
                let o = host_ip.octets();
                let net = format!("{}.{}.{}.0/24", o[0], o[1], o[2]);
                let (via, src) = (wan.to_string(), TURN_ADDRS[0].to_string());
                ip(&[
                    "-n", &public, "route", "add", &net, "via", &via, "src", &src,
                ]);
            }
            nft(&router, &self.nat(side).ruleset());
        }
        nft(&public, counters::RULES);
    }

    /// What the public segment carried so far.
    pub fn counters(&self) -> Counters {
        Counters::read(&self.public())
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace ends its links; processes in it were ended by their owners.
        for ns in self.made.iter().rev() {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}
