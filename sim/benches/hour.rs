//! Simulated events per second: 1,000 hosts, each opening a TCP connection to a random
//! other host every virtual second and exchanging 1 KiB each way, for a virtual hour.
//!
//! ```text
//! cargo bench -p ferry-sim --bench hour [-- --hosts N --secs S]
//! ```
//!
//! The machine is noisy, so the number that matters is the ratio against a baseline run in
//! the same process: a bare discrete-event loop (a binary heap of timestamps, one push per
//! pop) doing as many events as the simulation did. A ratio of 0.05 means one simulated
//! event costs twenty bare heap operations.
#![allow(clippy::print_stdout)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_proto::io::{ConnId, Endpoint, Input, ListenerId, Output};
use ferry_sim::rng::SimRng;
use ferry_sim::{HostSpec, LinkSpec, World};

const PORT: u16 = 7000;
static KIB: [u8; 1024] = [0x5a; 1024];

/// A host of the benchmark: it listens, and every second dials a random other host.
struct Chatter {
    rng: SimRng,
    hosts: u32,
    me: u32,
    next: Instant,
    conn: u32,
    out: VecDeque<Output>,
    /// Bytes received per accepted connection are not tracked: the peer sends exactly
    /// 1 KiB then FIN, so end of stream is the cue to answer.
    completed: u64,
}

fn addr(i: u32) -> IpAddr {
    // 198.18.0.0/15 is the range set aside for benchmarks (RFC 2544).
    IpAddr::V4(Ipv4Addr::new(
        198,
        18 + (i >> 16) as u8,
        (i >> 8) as u8,
        i as u8,
    ))
}

impl Endpoint for Chatter {
    type Event = ferry_proto::io::Event;

    fn handle_input(&mut self, _now: Instant, input: Input) -> Result<(), ferry_proto::Error> {
        match input {
            Input::Connected { conn, .. } => {
                self.out.push_back(Output::Send {
                    conn,
                    data: Bytes::from_static(&KIB),
                });
                self.out.push_back(Output::HalfClose { conn });
            }
            Input::HalfClosed { conn } => {
                // The accepting side: the 1 KiB request is in; answer and close.
                self.out.push_back(Output::Send {
                    conn,
                    data: Bytes::from_static(&KIB),
                });
                self.out.push_back(Output::Close { conn });
            }
            Input::Closed { .. } => self.completed += 1,
            _ => {}
        }
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        if now < self.next {
            return;
        }
        if self.next == now && self.conn == 0 {
            self.out.push_back(Output::Listen {
                listener: ListenerId(1),
                local: SocketAddr::new(addr(self.me), PORT),
            });
        }
        self.next += Duration::from_secs(1);
        let mut peer = self.rng.below(u64::from(self.hosts - 1)) as u32;
        if peer >= self.me {
            peer += 1;
        }
        self.conn = self.conn.wrapping_add(1);
        self.out.push_back(Output::Connect {
            conn: ConnId::Connect(self.conn),
            remote: SocketAddr::new(addr(peer), PORT),
            local_port: None,
            timeout: Duration::from_secs(10),
        });
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next)
    }
}

fn baseline(events: u64, seed: u64) -> f64 {
    let mut rng = SimRng::new(seed);
    let mut heap = BinaryHeap::new();
    for i in 0..1000u64 {
        heap.push(Reverse((rng.below(1_000_000), i)));
    }
    let start = Instant::now();
    let mut sum = 0u64;
    for i in 0..events {
        let Some(Reverse((t, _))) = heap.pop() else {
            break;
        };
        sum = sum.wrapping_add(t);
        heap.push(Reverse((t + 1 + rng.below(1_000_000), i)));
    }
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    events as f64 / secs
}

fn main() {
    let mut hosts = 1000u32;
    let mut virtual_secs = 3600u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--hosts" => hosts = args.next().and_then(|v| v.parse().ok()).unwrap_or(hosts),
            "--secs" => {
                virtual_secs = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(virtual_secs)
            }
            _ => {} // cargo bench passes --bench
        }
    }
    let seed = 2026;
    let mut b = World::builder(seed);
    let epoch = b.epoch();
    let internet = b.internet();
    let mut rng = SimRng::new(seed);
    for i in 0..hosts {
        let chatter = Chatter {
            rng: rng.fork(u64::from(i)),
            hosts,
            me: i,
            // Spread the hosts over the second so they do not all dial at once.
            next: epoch + Duration::from_micros(rng.below(1_000_000)),
            conn: 0,
            out: VecDeque::new(),
            completed: 0,
        };
        let link = LinkSpec::latency(Duration::from_millis(5 + rng.below(20)))
            .with_jitter(Duration::from_millis(2));
        let ip = match addr(i) {
            IpAddr::V4(v4) => v4,
            IpAddr::V6(_) => unreachable!("the benchmark uses IPv4"),
        };
        b.host(
            HostSpec::new(&format!("h{i}"), internet).v4(ip).link(link),
            chatter,
        );
    }
    let mut world = match b.build() {
        Ok(w) => w,
        Err(e) => {
            println!("cannot build the world: {e}");
            std::process::exit(1);
        }
    };
    let start = Instant::now();
    world.run_until(Duration::from_secs(virtual_secs));
    let wall = start.elapsed().as_secs_f64();
    let stats = world.stats();
    let completed: u64 = (0..hosts)
        .filter_map(|i| world.host(&format!("h{i}")))
        .filter_map(|h| world.endpoint::<Chatter>(h))
        .map(|c| c.completed)
        .sum();
    let rate = stats.events as f64 / wall;
    let base = baseline(stats.events, seed);
    println!("hosts {hosts}, virtual time {virtual_secs} s, wall time {wall:.2} s");
    println!(
        "events {} ({} inputs, {} outputs), connections {} ({} exchanges completed), peak live {}, peak queue {}",
        stats.events,
        stats.inputs,
        stats.outputs,
        stats.connections,
        completed,
        stats.peak_connections,
        stats.peak_queue
    );
    println!("simulated events/s {rate:.0}");
    println!("baseline heap events/s {base:.0}");
    println!("ratio sim/baseline {:.4}", rate / base);
    println!(
        "virtual seconds per wall second {:.0}",
        virtual_secs as f64 / wall
    );
    if world.violation_count() > 0 {
        println!("violations: {}", world.violation_count());
        std::process::exit(1);
    }
}
