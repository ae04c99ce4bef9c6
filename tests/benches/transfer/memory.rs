//! Memory per idle connection and per active transfer, between processes (`FERRY_BENCH_MEMORY=1`).
//!
//! A *hub* process runs the receiving clients whose memory is measured: ⌈N / 250⌉ devices
//! of their own accounts (one node holds at most `MAX_CONNECTORS` = 256 connections). *Crowd*
//! processes run the N peers, each a device of an account of its own (a node keeps at most 16
//! connectors per account), and each offers one file to its hub: a connection is made and
//! authenticated (ICE, TLS with both certificates checked), the offer arrives, and the hub
//! leaves it unanswered. A connection with no channel at all closes after the node's
//! `IDLE_TIMEOUT` (60 s), sooner than 1,000 connections can be made on a loaded 2-core
//! machine, so "idle" here means authenticated, no byte moving, one channel waiting on the
//! user: an upper bound of a bare idle connection's cost.
//!
//! Then the hub accepts the first `FERRY_BENCH_TRANSFERS` offers (100; those peers offered
//! a larger file) at once, and measures its peak while they run. Figures, from the hub's
//! `/proc/self/status` (`VmRSS`, `VmHWM`) and `/proc/self/smaps_rollup` (anonymous memory):
//! - per idle connection: (RSS with N connections − RSS before any) / N;
//! - per active transfer: (peak RSS while the transfers run − RSS before them) / transfers,
//!   the peak from `VmHWM` after resetting it (`/proc/self/clear_refs`), so a short-lived
//!   high is not missed between samples.
//!
//! On both runtimes unless `FERRY_BENCH_RUNTIMES` says otherwise. (Tokio's hub hung here
//! until the driver stopped blocking its loop on a full event queue, `ab5f39e`.)
//!
//! ```sh
//! FERRY_BENCH_MEMORY=1 cargo bench -p ferry-tests --bench transfer
//! FERRY_BENCH_MEMORY=1 FERRY_BENCH_CONNECTIONS=200 FERRY_BENCH_TRANSFERS=20 cargo bench -p ferry-tests --bench transfer
//! # where the hub's heap goes (valgrind's massif; its peak is the idle state with no transfer):
//! FERRY_BENCH_MEMORY=1 FERRY_BENCH_MASSIF=1 FERRY_BENCH_CONNECTIONS=100 FERRY_BENCH_TRANSFERS=0 FERRY_BENCH_RUNTIMES=smol cargo bench -p ferry-tests --bench transfer
//! ```

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command as Process, Stdio};
use std::time::{Duration, Instant};

use ferry_driver::{ClientConfig, ClientEvent, Config, Paths};
use ferry_proto::tls::{Account, Device, Validity, derive_seed};
use ferry_proto::transfer::Status;
use ferry_tests::conformance::{ClientRuntime, Command, RemoteClient, unix_now};

use crate::support::clients::{Smol, Tokio};

/// Connections per hub device: under the node's `MAX_CONNECTORS` (256).
const PER_HUB: usize = 250;
/// Peers per crowd process (each a client with its own threads).
const PER_CROWD: usize = 250;
/// Bounds a failure only: a starved machine makes 1,000 connections well within it.
const WAIT: Duration = Duration::from_secs(1200);
/// The size of the files the transferring peers offer; the others offer one byte.
const TRANSFER_BYTES: u64 = 8 << 20;

/// Accounts and devices, the same in every process (derived from names).
fn identity(name: &str) -> (Account, Device) {
    let validity = Validity::days_from(unix_now().saturating_sub(86_400), 30);
    let account =
        Account::from_seed(&derive_seed(b"memory bench", name), validity).expect("account");
    let device = account
        .add_device(&derive_seed(b"memory bench device", name), validity)
        .expect("device");
    (account, device)
}

fn spawn(
    runtime: &str,
    (account, device): &(Account, Device),
    dir: &Path,
    inbox: &Path,
) -> RemoteClient {
    let driver = Config::new(inbox).with_folder_dht(dir.join("dht"));
    let announcement = account.announce(device).expect("announce");
    let config =
        ClientConfig::new(device.clone(), announcement, driver).with_paths(Paths::loopback_only());
    match runtime {
        "smol" => Smol::spawn(config),
        _ => Tokio::spawn(config),
    }
}

/// The process's memory now: `VmRSS`, `VmHWM` (peak) and anonymous RSS, in bytes.
fn memory() -> (u64, u64, u64) {
    let kib = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |k| k * 1024)
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    (
        kib(&status, "VmRSS:"),
        kib(&status, "VmHWM:"),
        kib(&rollup, "Anonymous:"),
    )
}

/// How many sockets the process holds (its connections, listeners and DHT sockets).
fn sockets() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| {
        dir.flatten()
            .filter(|e| {
                std::fs::read_link(e.path())
                    .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
            })
            .count()
    })
}

/// The parent: starts the hub, then the crowds, and prints the hub's figures.
pub(crate) fn run(runtime: &str) {
    let var = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let connections = var("FERRY_BENCH_CONNECTIONS", 1000).max(1);
    let transfers = var("FERRY_BENCH_TRANSFERS", 100).min(connections);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("out")).expect("out");
    ferry_tests::content::write_file(&dir.path().join("out/big.bin"), TRANSFER_BYTES, 7);
    std::fs::write(dir.path().join("out/small.bin"), b"x").expect("small file");
    let exe = std::env::current_exe().expect("this benchmark's path");
    let role = |role: &str| {
        let mut c = Process::new(&exe);
        c.env("FERRY_BENCH_ROLE", role)
            .env("FERRY_BENCH_RUNTIME", runtime)
            .env("FERRY_BENCH_DIR", dir.path())
            .env("FERRY_BENCH_CONNECTIONS", connections.to_string())
            .env("FERRY_BENCH_TRANSFERS", transfers.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        c
    };
    let mut hub = if std::env::var("FERRY_BENCH_MASSIF").is_ok_and(|v| v != "0") {
        // Where the hub's heap goes, by allocation site: `ms_print` reads the file.
        let out = std::env::temp_dir().join(format!("ferry-massif-hub-{runtime}.out"));
        println!(
            "{runtime}: the hub runs under valgrind --tool=massif: ms_print {}",
            out.display()
        );
        let mut c = role("hub");
        let mut wrapped = Process::new("valgrind");
        wrapped
            .arg("--tool=massif")
            .arg(format!("--massif-out-file={}", out.display()))
            .arg("-q")
            .arg(&exe)
            .envs(c.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        c = wrapped;
        c.spawn().expect("start the hub under valgrind")
    } else {
        role("hub").spawn().expect("start the hub")
    };
    let mut hub_out = BufReader::new(hub.stdout.take().expect("hub's stdout"));
    let mut line = String::new();
    // The hub says when its clients run, before any peer starts.
    let _ = hub_out.read_line(&mut line);
    let mut crowds: Vec<(Child, ChildStdin)> = (0..connections.div_ceil(PER_CROWD))
        .map(|k| {
            let mut c = role("crowd")
                .env("FERRY_BENCH_CROWD", k.to_string())
                .stdout(Stdio::null())
                .spawn()
                .expect("start a crowd");
            let stdin = c.stdin.take().expect("crowd's stdin");
            (c, stdin)
        })
        .collect();
    let mut result = None;
    for l in hub_out.lines().map_while(Result::ok) {
        if let Some(r) = l.strip_prefix("RESULT ") {
            result = Some(r.to_owned());
            break;
        }
    }
    // Closing a crowd's stdin ends it.
    for (c, stdin) in &mut crowds {
        let _ = stdin.write_all(b"end\n");
        let _ = c.wait();
    }
    let _ = hub.wait();
    let Some(result) = result else {
        println!("{runtime}: memory: the hub failed (see its error above)");
        return;
    };
    let f: std::collections::BTreeMap<&str, f64> = result
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    let g = |k: &str| f.get(k).copied().unwrap_or(f64::NAN);
    let kib = |b: f64| b / 1024.0;
    println!(
        "{runtime}: memory, one hub process of {} receiving devices, {connections} peers in {} other processes",
        g("hubs"),
        crowds.len()
    );
    println!(
        "  idle: RSS {:.1} MiB before any connection, {:.1} MiB with {connections} authenticated connections ({} sockets open; each connection one unanswered offer, no byte moving): {:.1} KiB per idle connection (anonymous {:.1} KiB)",
        g("base") / 1048576.0,
        g("idle") / 1048576.0,
        g("sockets"),
        kib((g("idle") - g("base")) / connections as f64),
        kib((g("idle_anon") - g("base_anon")) / connections as f64),
    );
    println!(
        "  {transfers} transfers of {} MiB at once: peak RSS {:.1} MiB: {:.1} KiB per active transfer ({:.1} s)",
        TRANSFER_BYTES >> 20,
        g("peak") / 1048576.0,
        kib((g("peak") - g("idle")) / transfers.max(1) as f64),
        g("transfer_wall"),
    );
}

/// A side of the memory benchmark, if this process is one.
pub(crate) fn role() -> Option<()> {
    let role = std::env::var("FERRY_BENCH_ROLE").ok()?;
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let runtime = var("FERRY_BENCH_RUNTIME");
    let dir = PathBuf::from(var("FERRY_BENCH_DIR"));
    let connections: usize = var("FERRY_BENCH_CONNECTIONS").parse().ok()?;
    let transfers: usize = var("FERRY_BENCH_TRANSFERS").parse().ok()?;
    match role.as_str() {
        "hub" => hub(&runtime, &dir, connections, transfers),
        "crowd" => crowd(
            &runtime,
            &dir,
            var("FERRY_BENCH_CROWD").parse().ok()?,
            connections,
            transfers,
        ),
        _ => return None,
    }
    Some(())
}

/// The hub device peer `i` offers to.
fn hub_of(i: usize) -> usize {
    i / PER_HUB
}

fn hub(runtime: &str, dir: &Path, connections: usize, transfers: usize) {
    let hubs: Vec<RemoteClient> = (0..connections.div_ceil(PER_HUB))
        .map(|h| {
            let inbox = dir.join(format!("in-{h}"));
            spawn(runtime, &identity(&format!("hub {h}")), dir, &inbox)
        })
        .collect();
    // Let the clients settle (listening, announced) before the base figure.
    std::thread::sleep(Duration::from_secs(2));
    let (base, _, base_anon) = memory();
    println!("READY");
    let _ = std::io::stdout().flush();
    let deadline = Instant::now() + WAIT;
    // Offers waiting: (hub, transfer, size).
    let mut offers = Vec::new();
    let mut told = Instant::now();
    while offers.len() < connections {
        if told.elapsed() > Duration::from_secs(10) {
            eprintln!(
                "memory bench: {} of {connections} offers so far",
                offers.len()
            );
            told = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {connections} offers came",
            offers.len()
        );
        let mut any = false;
        for (h, c) in hubs.iter().enumerate() {
            while let Ok(event) = c.events.try_recv() {
                any = true;
                if let ClientEvent::Incoming(offer) = event {
                    offers.push((h, offer.transfer, offer.size));
                }
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Whatever the last offers started settles (TLS buffers, the channels' first reads).
    std::thread::sleep(Duration::from_secs(2));
    let (idle, _, idle_anon) = memory();
    let sockets = sockets();
    let _ = std::fs::write("/proc/self/clear_refs", b"5");
    let start = Instant::now();
    // Every accept asked before any answer is awaited: the client's loop takes commands
    // before events, so the accepts go through before the transfers' events fill the
    // driver's event queue (a loop that awaits a call while the driver waits on a full
    // queue never gets its answer).
    let mut running = Vec::new();
    let mut answers = Vec::new();
    for (h, transfer, _) in offers.iter().filter(|o| o.2 > 1).take(transfers) {
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(
            (hubs[*h].commands)(Command::Accept(*transfer, tx)),
            "the hub runs"
        );
        answers.push(rx);
        running.push(*transfer);
    }
    for rx in answers {
        rx.recv().expect("the hub answers").expect("accept");
    }
    let mut ended = 0;
    while ended < running.len() {
        assert!(
            Instant::now() < deadline,
            "{ended} of {} transfers ended",
            running.len()
        );
        let mut any = false;
        for c in &hubs {
            while let Ok(event) = c.events.try_recv() {
                any = true;
                if let ClientEvent::Ended {
                    transfer,
                    status,
                    reason,
                    ..
                } = event
                    && running.contains(&transfer)
                {
                    assert_eq!(status, Status::Finished, "a transfer failed: {reason:?}");
                    ended += 1;
                }
            }
        }
        if !any {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let transfer_wall = start.elapsed().as_secs_f64();
    let (_, peak, _) = memory();
    println!(
        "RESULT hubs={} sockets={sockets} base={base} base_anon={base_anon} idle={idle} idle_anon={idle_anon} peak={peak} transfer_wall={transfer_wall:.2}",
        hubs.len()
    );
    let _ = std::io::stdout().flush();
    // Not a clean shutdown: a thousand connections would close one by one.
    std::process::exit(0);
}

fn crowd(runtime: &str, dir: &Path, k: usize, connections: usize, transfers: usize) {
    let send = |client: &RemoteClient, i: usize| {
        let to = identity(&format!("hub {}", hub_of(i))).0.id();
        let file = if i < transfers {
            "big.bin"
        } else {
            "small.bin"
        };
        let path = dir.join("out").join(file);
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(
            (client.commands)(Command::Send {
                to,
                path,
                answer: tx
            }),
            "the peer runs"
        );
        rx.recv().expect("the peer answers").expect("send");
    };
    let peers: Vec<_> = (k * PER_CROWD..((k + 1) * PER_CROWD).min(connections))
        .map(|i| {
            let inbox = dir.join(format!("in-peer-{i}"));
            let client = spawn(runtime, &identity(&format!("peer {i}")), dir, &inbox);
            send(&client, i);
            (i, client)
        })
        .collect();
    // Until the parent says so.
    let (end, ended) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        let _ = end.send(());
    });
    // An offer that failed (a connection set-up that timed out on a starved machine) goes
    // again: the hub waits for every peer's.
    while ended.recv_timeout(Duration::from_millis(50)).is_err() {
        for (i, client) in &peers {
            while let Ok(event) = client.events.try_recv() {
                if let ClientEvent::Ended { status, reason, .. } = event
                    && status != Status::Finished
                {
                    eprintln!("peer {i}: the offer failed ({status:?} {reason:?}); again");
                    send(client, *i);
                }
            }
        }
    }
    drop(peers);
    std::process::exit(0);
}
