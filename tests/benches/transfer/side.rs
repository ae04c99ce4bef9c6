//! One side of the two-process transfer: this same benchmark binary, started again by the
//! parent with `FERRY_BENCH_ROLE` set. It runs one `Client` (Alice's device sends, Bob's
//! receives), finds the other process through a folder DHT, measures its own CPU for the
//! transfer, then its primitives on the same core, and prints one `RESULT` line.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_driver::{ClientConfig, ClientEvent, Config, Paths};
use ferry_proto::transfer::{Status, TransferId};
use ferry_tests::conformance::{Cast, ClientRuntime, Command, RemoteClient};

use super::cost;
use crate::support::clients::{Smol, Tokio};

/// Bounds a failure only: a starved machine still finishes 1 GiB well within it.
const WAIT: Duration = Duration::from_secs(1800);

/// What the parent tells a side, through the environment.
pub(crate) struct Role {
    /// Sends (Alice) or receives (Bob).
    pub(crate) send: bool,
    /// `smol` or `tokio`.
    pub(crate) runtime: String,
    /// The run's folder: `dht/`, `out/bench.bin`, `in/`.
    pub(crate) dir: PathBuf,
    /// The file's size.
    pub(crate) bytes: u64,
    /// Measure the primitives after the transfer (not under valgrind).
    pub(crate) primitives: bool,
    /// The CPU to pin this process to.
    pub(crate) cpu: Option<usize>,
    /// How many copies of the file go at once (over one connection).
    pub(crate) files: usize,
}

impl Role {
    /// The role in this process's environment, if it is a side.
    pub(crate) fn from_env() -> Option<Role> {
        let role = std::env::var("FERRY_BENCH_ROLE").ok()?;
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        Some(Role {
            send: role == "send",
            runtime: var("FERRY_BENCH_RUNTIME"),
            dir: PathBuf::from(var("FERRY_BENCH_DIR")),
            bytes: var("FERRY_BENCH_BYTES").parse().expect("FERRY_BENCH_BYTES"),
            primitives: var("FERRY_BENCH_PRIMITIVES") != "0",
            cpu: var("FERRY_BENCH_CPU").parse().ok(),
            files: var("FERRY_BENCH_FILES").parse().unwrap_or(1),
        })
    }
}

/// Pins this process (every thread it starts after) to `cpu`.
fn pin(cpu: usize) {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    if let Err(e) = rustix::thread::sched_setaffinity(None, &set) {
        eprintln!("cannot pin to CPU {cpu}: {e}");
    }
}

/// The next event of `client`, within [`WAIT`]; a transfer that fails ends the run.
fn next(client: &RemoteClient) -> ClientEvent {
    let event = client
        .events
        .recv_timeout(WAIT)
        .expect("the transfer goes on");
    if let ClientEvent::Ended { status, reason, .. } = &event
        && *status != Status::Finished
    {
        panic!("the transfer failed: {status:?} {reason:?}");
    }
    event
}

fn ask<T>(client: &RemoteClient, command: impl FnOnce(mpsc::Sender<T>) -> Command) -> T {
    let (tx, rx) = mpsc::channel();
    assert!((client.commands)(command(tx)), "the client runs");
    rx.recv().expect("the client answers")
}

/// Runs the side and prints its `RESULT` line.
pub(crate) fn run(role: &Role) {
    if let Some(cpu) = role.cpu {
        pin(cpu);
    }
    let cast = Cast::new(1);
    let (account, device) = if role.send {
        (&cast.alice, &cast.devices[0])
    } else {
        (&cast.bob, &cast.devices[1])
    };
    let inbox = role.dir.join(if role.send { "in-send" } else { "in" });
    let driver = Config::new(&inbox).with_folder_dht(role.dir.join("dht"));
    let announcement = account.announce(device).expect("announce");
    let config =
        ClientConfig::new(device.clone(), announcement, driver).with_paths(Paths::loopback_only());
    let client = match role.runtime.as_str() {
        "smol" => Smol::spawn(config),
        _ => Tokio::spawn(config),
    };
    let source = role.dir.join("out").join("bench.bin");
    let (wall, cpu, user_sys);
    let mut ended = 0;
    if role.send {
        let (start, cpu0, us0) = (Instant::now(), cost::process_cpu(), cost::user_sys());
        let to = cast.bob.id();
        let groups: Vec<TransferId> = (0..role.files)
            .map(|i| {
                let path = match i {
                    0 => source.clone(),
                    i => role.dir.join("out").join(format!("bench-{i}.bin")),
                };
                ask(&client, |answer| Command::Send { to, path, answer }).expect("send")
            })
            .collect();
        let mut transfers = Vec::new();
        while ended < role.files {
            match next(&client) {
                ClientEvent::Reaching {
                    group, transfer, ..
                } if groups.contains(&group) => transfers.push(transfer),
                ClientEvent::Ended { transfer, .. } if transfers.contains(&transfer) => ended += 1,
                _ => {}
            }
        }
        (wall, cpu) = (start.elapsed(), cost::process_cpu() - cpu0);
        user_sys = delta(us0, cost::user_sys());
    } else {
        // From the first accept: the offers before it are the sender's set-up.
        let mut started = None;
        let mut accepted = Vec::new();
        while ended < role.files {
            match next(&client) {
                ClientEvent::Incoming(offer) => {
                    started.get_or_insert((Instant::now(), cost::process_cpu(), cost::user_sys()));
                    ask(&client, |a| Command::Accept(offer.transfer, a)).expect("accept");
                    accepted.push(offer.transfer);
                }
                ClientEvent::Ended { transfer, .. } if accepted.contains(&transfer) => ended += 1,
                _ => {}
            }
        }
        let (start, cpu0, us0) = started.expect("an offer came");
        (wall, cpu) = (start.elapsed(), cost::process_cpu() - cpu0);
        user_sys = delta(us0, cost::user_sys());
    }
    let threads = cost::threads();
    drop(client.commands);
    let _ = client.thread.join();
    let mut line = format!(
        "RESULT wall={:.4} cpu={cpu:.4} user={:.4} sys={:.4}",
        wall.as_secs_f64(),
        user_sys.0,
        user_sys.1
    );
    if role.primitives {
        line += &primitives(role, &source, &inbox);
    }
    let threads: Vec<String> = threads
        .iter()
        .filter(|(_, cpu)| *cpu >= 0.01)
        .map(|(name, cpu)| format!("{}:{cpu:.2}", name.replace([' ', ':', ','], "_")))
        .collect();
    line += &format!(" threads={}", threads.join(","));
    if !role.send {
        let _ = std::fs::remove_dir_all(&inbox);
    }
    println!("{line}");
}

fn delta(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
    (b.0 - a.0, b.1 - a.1)
}

/// The side's primitives over the same number of bytes, on this process's core.
fn primitives(role: &Role, source: &Path, inbox: &Path) -> String {
    let block = ferry_tests::content::range(1, 0, 1 << 20);
    let (sha3, sha3_wall) = cost::sha3(&block, role.bytes);
    let (aes, socket, file) = if role.send {
        (
            cost::aes_seal(role.bytes),
            cost::socket(role.bytes, true),
            cost::file_read(source),
        )
    } else {
        (
            cost::aes_open(role.bytes),
            cost::socket(role.bytes, false),
            cost::file_write(&inbox.join("primitive.bin"), role.bytes),
        )
    };
    format!(
        " sha3={sha3:.4} sha3_wall={sha3_wall:.4} aes={aes:.4} socket={socket:.4} file={file:.4}"
    )
}
