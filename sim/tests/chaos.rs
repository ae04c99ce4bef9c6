//! Nothing an endpoint outputs can crash the world: endpoints that emit random outputs
//! (unknown ids, foreign addresses, sends after closes, file operations on nothing) run
//! for a while, the world keeps going, and what they did wrong is reported.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use ferry_proto::io::{ConnId, DhtKey, Endpoint, FileId, FileOp, Input, ListenerId, Output};
use ferry_proto::transfer::SafeName;
use ferry_sim::rng::SimRng;
use ferry_sim::{HostSpec, World};

/// Emits one random output every few milliseconds, and reacts to nothing.
struct Chaos {
    rng: SimRng,
    next: Instant,
    out: VecDeque<Output>,
    peers: Vec<SocketAddr>,
}

impl Chaos {
    fn conn(&mut self) -> ConnId {
        let n = self.rng.below(6) as u32;
        if self.rng.chance(0.5) {
            ConnId::Connect(n)
        } else {
            ConnId::Accepted(n)
        }
    }

    fn random_output(&mut self) -> Output {
        let r = &mut self.rng;
        let port = [0, 80, 443, 5000, 49152][r.below(5) as usize];
        let peer = self.peers[r.below(self.peers.len() as u64) as usize];
        let remote = SocketAddr::new(peer.ip(), port);
        let file = FileId(r.below(4));
        let key = DhtKey([r.below(3) as u8; 20]);
        match r.below(19) {
            0 => Output::Listen {
                listener: ListenerId(r.below(4) as u32),
                local: SocketAddr::new(peer.ip(), port),
            },
            1 => Output::Unlisten {
                listener: ListenerId(r.below(4) as u32),
            },
            2 | 3 => {
                let local_port = [None, Some(0), Some(443), Some(5000)][r.below(4) as usize];
                let timeout = Duration::from_millis(r.below(3000));
                let conn = self.conn();
                Output::Connect {
                    conn,
                    remote,
                    local_port,
                    timeout,
                }
            }
            4..=6 => {
                let len = self.rng.below(100_000) as usize;
                Output::Send {
                    conn: self.conn(),
                    data: Bytes::from(vec![1; len]),
                }
            }
            7 => Output::HalfClose { conn: self.conn() },
            8 => Output::Close { conn: self.conn() },
            9 => Output::Reset { conn: self.conn() },
            10 => Output::PauseReading { conn: self.conn() },
            11 => Output::ResumeReading { conn: self.conn() },
            12 => Output::DhtPut {
                key,
                value: Bytes::from_static(b"v"),
            },
            13 => Output::DhtListen { key },
            14 => Output::DhtCancelListen { key },
            15 => Output::File(FileOp::OpenSource {
                file,
                source: ["src", "nope"][r.below(2) as usize].into(),
            }),
            16 => Output::File(FileOp::Read {
                file,
                offset: r.below(2_000_000),
                len: [0, 10, 1 << 20, u32::MAX][r.below(4) as usize],
            }),
            17 => Output::File(FileOp::OpenPartial {
                file,
                name: SafeName::from_display_name("x.bin").expect("a name"),
                size: r.below(1000),
                key: ferry_proto::transfer::PartialKey {
                    sender: None,
                    transfer: ferry_proto::transfer::TransferId(1),
                },
                resume: true,
                place: None,
            }),
            _ => Output::File(match r.below(5) {
                0 => FileOp::Write {
                    file,
                    offset: r.below(2000),
                    data: Bytes::from_static(b"abc"),
                },
                1 => FileOp::Digest {
                    file,
                    len: r.below(2000),
                },
                2 => FileOp::Commit { file },
                3 => FileOp::Discard { file },
                _ => FileOp::Close { file },
            }),
        }
    }
}

impl Endpoint for Chaos {
    type Event = ferry_proto::io::Event;

    fn handle_input(&mut self, _now: Instant, _input: Input) -> Result<(), ferry_proto::Error> {
        // Half the time, complain: the world must take refusals in its stride too.
        if self.rng.chance(0.5) {
            Err(ferry_proto::Error::UnexpectedInput("chaos"))
        } else {
            Ok(())
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        while self.next <= now {
            let out = self.random_output();
            self.out.push_back(out);
            self.next += Duration::from_millis(1 + self.rng.below(20));
        }
    }

    fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next)
    }
}

#[test]
fn random_outputs_never_crash_the_world() {
    // More seeds on demand: FERRY_CHAOS_SEEDS=5000 cargo test --release --test chaos
    let seeds: u64 = std::env::var("FERRY_CHAOS_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    for seed in 0..seeds {
        let mut b = World::builder(seed);
        let epoch = b.epoch();
        let (home, _) = site(
            &mut b,
            "home",
            [203, 0, 113, 1],
            ferry_sim::RouterKind::Nat(ferry_sim::Nat::full_cone().with_hairpinning(true)),
        );
        let internet = b.internet();
        let peers = vec![
            sa("198.51.100.7:0"),
            sa("192.168.1.2:0"),
            sa("203.0.113.1:0"),
            sa("[2001:db8::1]:0"),
            sa("10.9.9.9:0"),
        ];
        let mut rng = SimRng::new(seed);
        for (i, (net, ip)) in [
            (internet, [198, 51, 100, 7]),
            (home, [192, 168, 1, 2]),
            (home, [192, 168, 1, 3]),
        ]
        .into_iter()
        .enumerate()
        {
            let chaos = Chaos {
                rng: rng.fork(i as u64),
                next: epoch,
                out: VecDeque::new(),
                peers: peers.clone(),
            };
            b.host(
                HostSpec::new(&format!("h{i}"), net)
                    .v4(ip)
                    .source("src", 1_000_000, 1),
                chaos,
            );
        }
        let mut world = b.trace().build().expect("world");
        world.run_for(secs(5));
        assert!(world.violation_count() > 0, "chaos is reported");
        assert!(
            world.live_connections() < 200,
            "connections stay bounded: {}",
            world.live_connections()
        );
    }
}

/// Always wants to be woken now.
struct Spinner {
    wakes: u64,
    epoch: Instant,
}

impl Endpoint for Spinner {
    type Event = ferry_proto::io::Event;

    fn handle_input(&mut self, _now: Instant, _input: Input) -> Result<(), ferry_proto::Error> {
        Ok(())
    }
    fn handle_timeout(&mut self, _now: Instant) {
        self.wakes += 1;
    }
    fn poll_output(&mut self) -> Option<Output> {
        None
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.epoch)
    }
}

#[test]
fn an_endpoint_that_always_wants_now_cannot_stop_the_clock() {
    let mut b = World::builder(1);
    let epoch = b.epoch();
    let internet = b.internet();
    let h = b.host(
        HostSpec::new("spin", internet).v4([198, 51, 100, 1]),
        Spinner { wakes: 0, epoch },
    );
    let mut world = b.build().expect("world");
    world.run_for(ms(10));
    assert_eq!(world.now(), ms(10));
    assert_eq!(world.violation_count(), 1, "reported once");
    let wakes = world.endpoint::<Spinner>(h).expect("spinner").wakes;
    assert!(wakes > 1_000 && wakes < 20_000, "{wakes}");
}
