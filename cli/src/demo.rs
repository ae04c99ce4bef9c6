//! `ferry demo`: Alice sends a file to Bob's two devices, all in this process, over real
//! loopback sockets with the tokio driver, real ICE over TCP, real TLS 1.3, and the embedded
//! DHT. Bob's first device accepts, the second refuses; Alice sees both sub-transfers and the
//! optimistic aggregate; the received file's SHA3-512 is checked against the source's.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_proto::io::Event;
use ferry_proto::node::{Node, NodeConfig};
use ferry_proto::tls::{Account, Device, DeviceId, UnixAnchor, Validity};
use ferry_proto::transfer::{Status, TransferId};
use ferry_proto::turn::TurnConfig;
use ferry_tokio::{Config, DhtStore, Driver, Events, Handle};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha3::Digest as _;

/// What `ferry demo` was asked.
#[derive(Debug)]
pub(crate) struct Options {
    /// Size of the generated file.
    pub(crate) size: u64,
    /// A file to send instead.
    pub(crate) file: Option<PathBuf>,
    /// A TURN server to force the relayed path through.
    pub(crate) relay: Option<String>,
}

/// How long the whole demo may take.
const DEADLINE: Duration = Duration::from_secs(300);

fn seed() -> Result<[u8; 32], String> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s).map_err(|e| format!("no randomness from the system: {e}"))?;
    Ok(s)
}

fn seed64() -> Result<u64, String> {
    let s = seed()?;
    Ok(u64::from_le_bytes([
        s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
    ]))
}

/// Writes `size` bytes of a repeating pattern, in pieces (never the whole file in memory).
fn generate(path: &Path, size: u64) -> Result<(), String> {
    let mut f = std::fs::File::create(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let block: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut left = size;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        left -= n as u64;
    }
    Ok(())
}

fn sha3_of(path: &Path) -> Result<String, String> {
    let mut f =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut h = sha3::Sha3_512::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

struct Peer {
    handle: Handle<Node>,
    events: Events<Event>,
}

fn start(
    account: &Account,
    device: &Device,
    folder: &Path,
    dht: &DhtStore,
    anchor: UnixAnchor,
    turn: &Option<TurnConfig>,
    relay_only: bool,
) -> Result<Peer, String> {
    let announcement = account.announce(device).map_err(|e| e.to_string())?;
    let mut config = NodeConfig::new(
        device.clone(),
        announcement,
        vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        seed64()?,
        anchor,
    );
    if let Some(t) = turn {
        config.turn = vec![t.clone()];
        // Bob's devices offer only their relayed address, so Alice can reach them through
        // the relay alone. Not Alice's too: a relay-only node has no address of its own to
        // connect from, and two of them form no ICE pair at all (each offers only a passive
        // relayed candidate), which is how `demo --relay` failed before.
        config.relay_only = relay_only;
    }
    let node = Node::new(Instant::now(), config);
    let (driver, handle, events) = Driver::new(node, Config::new(folder).with_dht(dht))
        .map_err(|e| format!("cannot start a driver: {e}"))?;
    tokio::spawn(driver.run());
    Ok(Peer { handle, events })
}

/// Progress on a terminal, plain lines otherwise.
struct Report {
    tty: bool,
    bars: MultiProgress,
    per: BTreeMap<TransferId, (String, ProgressBar)>,
    aggregate: ProgressBar,
    last_line: BTreeMap<TransferId, u64>,
    /// The sub-transfers that reached a final state.
    over: BTreeSet<TransferId>,
}

impl Report {
    fn new(size: u64) -> Report {
        let tty = std::io::stdout().is_terminal();
        let bars = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        });
        let aggregate = bars.add(ProgressBar::new(size));
        aggregate.set_style(style());
        aggregate.set_prefix("bob (all)");
        Report {
            tty,
            bars,
            per: BTreeMap::new(),
            aggregate,
            last_line: BTreeMap::new(),
            over: BTreeSet::new(),
        }
    }

    /// Whether each of `devices` sub-transfers reached its final state. The group's own
    /// (optimistic) state is final as soon as one device verified, which can be before the
    /// other device even saw the offer: the demo shows both answers, so it waits for both.
    fn every_device_over(&self, devices: usize) -> bool {
        self.per.len() == devices && self.per.keys().all(|t| self.over.contains(t))
    }

    fn line(&self, text: String) {
        if self.tty {
            let _ = self.bars.println(text);
        } else {
            println!("{text}");
        }
    }

    fn device(&mut self, transfer: TransferId, label: String, size: u64) {
        let bar = self
            .bars
            .insert_before(&self.aggregate, ProgressBar::new(size));
        bar.set_style(style());
        bar.set_prefix(label.clone());
        self.line(format!("alice → {label}: offered"));
        self.per.insert(transfer, (label, bar));
    }

    fn progress(&mut self, transfer: TransferId, done: u64, total: u64) {
        if let Some((label, bar)) = self.per.get(&transfer) {
            bar.set_length(total);
            bar.set_position(done);
            if !self.tty {
                // Plain lines every quarter.
                let quarter = (done * 4).checked_div(total).unwrap_or(4);
                if self.last_line.insert(transfer, quarter) != Some(quarter) {
                    println!("alice → {label}: {done}/{total} bytes");
                }
            }
        }
    }

    fn status(&mut self, transfer: TransferId, status: Status, reason: Option<String>) {
        if let Some((label, bar)) = self.per.get(&transfer) {
            let text = match &reason {
                Some(r) => format!("{status} ({r})"),
                None => status.to_string(),
            };
            if status.is_final() {
                bar.finish_with_message(text.clone());
                self.over.insert(transfer);
            } else {
                bar.set_message(text.clone());
            }
            let line = format!("alice → {label}: {text}");
            self.line(line);
        }
    }
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>10} [{bar:40}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// Runs the demo; `Ok(true)` when Bob's device got the file and its SHA3-512 matched.
pub(crate) async fn run(options: Options) -> Result<bool, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("no temporary folder: {e}"))?;
    let turn = options
        .relay
        .as_deref()
        .map(|url| crate::session::parse_turn(url).map_err(|e| e.to_string()))
        .transpose()?;
    let (source, size) = match &options.file {
        Some(p) => {
            let len = std::fs::metadata(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?
                .len();
            (p.clone(), len)
        }
        None => {
            let p = dir.path().join("ferry-demo.bin");
            generate(&p, options.size)?;
            (p, options.size)
        }
    };
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970")?
        .as_secs();
    let validity = Validity::days_from(now_unix.saturating_sub(3600), 365);
    let id = |e: ferry_proto::tls::IdentityError| e.to_string();
    let alice = Account::from_seed(&seed()?, validity).map_err(id)?;
    let bob = Account::from_seed(&seed()?, validity).map_err(id)?;
    let a1 = alice.add_device(&seed()?, validity).map_err(id)?;
    let b1 = bob.add_device(&seed()?, validity).map_err(id)?;
    let b2 = bob.add_device(&seed()?, validity).map_err(id)?;
    let labels: BTreeMap<DeviceId, String> = [
        (b1.id(), "bob:b1".to_owned()),
        (b2.id(), "bob:b2".to_owned()),
    ]
    .into();
    println!("alice  account {}", alice.id());
    println!(
        "bob    account {} (devices b1 {}…, b2 {}…)",
        bob.id(),
        &b1.id().to_string()[..12],
        &b2.id().to_string()[..12]
    );
    println!("sending {name} ({size} bytes) to every device of bob; b1 accepts, b2 refuses");

    let dht = DhtStore::new();
    let anchor = UnixAnchor {
        instant: Instant::now(),
        unix: Duration::from_secs(now_unix),
    };
    let mut folders = Vec::new();
    for who in ["a1", "b1", "b2"] {
        let f = dir.path().join(who);
        std::fs::create_dir_all(&f).map_err(|e| format!("cannot create {}: {e}", f.display()))?;
        folders.push(f);
    }
    let pa = start(&alice, &a1, &folders[0], &dht, anchor, &turn, false)?;
    let pb1 = start(&bob, &b1, &folders[1], &dht, anchor, &turn, true)?;
    let pb2 = start(&bob, &b2, &folders[2], &dht, anchor, &turn, true)?;

    let bob_id = bob.id();
    let source_text = source.to_string_lossy().into_owned();
    let name_sent = name.clone();
    let group = pa
        .handle
        .call(move |n, now| n.send_file(now, bob_id, source_text, name_sent))
        .await
        .map_err(|_| "the driver stopped")?;

    let mut report = Report::new(size);
    let deadline = tokio::time::sleep(DEADLINE);
    tokio::pin!(deadline);
    let mut started: Option<Instant> = None;
    let mut received: Option<String> = None;
    let mut outcome: Option<Status> = None;
    let mut elapsed: Option<Duration> = None;
    while outcome.is_none() || !report.every_device_over(labels.len()) {
        tokio::select! {
            Some(e) = pa.events.recv() => match e {
                Event::SubTransfer { group: g, transfer, device } if g == group => {
                    let label = labels.get(&device).cloned().unwrap_or_else(|| device.to_string());
                    report.device(transfer, label, size);
                }
                Event::Progress { transfer, done, total } => {
                    started.get_or_insert_with(Instant::now);
                    report.progress(transfer, done, total);
                }
                Event::Status { transfer, status, reason } => report.status(transfer, status, reason.map(|r| r.to_string())),
                Event::Aggregate { group: g, status, done, total } if g == group => {
                    report.aggregate.set_length(total.max(size));
                    report.aggregate.set_position(done);
                    report.aggregate.set_message(status.to_string());
                    if status.is_final() {
                        report.aggregate.finish_with_message(status.to_string());
                        outcome = Some(status);
                        elapsed = started.map(|s| s.elapsed());
                    }
                }
                _ => {}
            },
            Some(e) = pb1.events.recv() => match e {
                Event::IncomingTransfer { transfer, name, size, .. } => {
                    report.line(format!("bob:b1 is offered {name:?} ({size} bytes): accepts"));
                    let _ = pb1.handle.command(move |n, now| { let _ = n.accept(now, transfer); });
                }
                Event::Verified { name, .. } => received = Some(name),
                _ => {}
            },
            Some(e) = pb2.events.recv() => {
                if let Event::IncomingTransfer { transfer, name, .. } = e {
                    report.line(format!("bob:b2 is offered {name:?}: refuses"));
                    let _ = pb2.handle.command(move |n, now| { let _ = n.refuse(now, transfer); });
                }
            },
            () = &mut deadline => {
                report.line(format!("nothing more after {DEADLINE:?}: giving up"));
                break;
            }
        }
    }
    // Let the receiving side report its verified file (it may come a moment after).
    let wait = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(wait);
    while received.is_none() {
        tokio::select! {
            Some(e) = pb1.events.recv() => if let Event::Verified { name, .. } = e { received = Some(name) },
            Some(e) = pa.events.recv() => if let Event::Status { transfer, status, reason } = e {
                report.status(transfer, status, reason.map(|r| r.to_string()));
            },
            () = &mut wait => break,
        }
    }
    drop((pa, pb1, pb2));
    let Some(got) = received else {
        println!(
            "bob:b1 did not receive the file ({})",
            outcome.map_or("no answer".to_owned(), |s| s.to_string())
        );
        return Ok(false);
    };
    let want = sha3_of(&source)?;
    let have = sha3_of(&folders[1].join(&got))?;
    if want != have {
        println!("SHA3-512 MISMATCH: sent {want}, received {have}");
        return Ok(false);
    }
    println!("SHA3-512 verified: {want}");
    if let Some(t) = elapsed {
        let mib = size as f64 / (1024.0 * 1024.0);
        println!(
            "{mib:.1} MiB in {:.2} s: {:.1} MiB/s (TLS 1.3 AES-256-GCM over ICE-TCP on loopback)",
            t.as_secs_f64(),
            mib / t.as_secs_f64().max(1e-9)
        );
    }
    Ok(true)
}
