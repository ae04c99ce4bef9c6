//! What ICE-TCP costs on the data path and per check.
//!
//! After selection every application byte crosses the RFC 4571 framing (2-byte length per
//! frame of at most 65535 bytes); this prints its encode + decode cost as a ratio to a
//! plain copy of the same bytes measured in the same run, and the cost of one STUN check
//! (build with integrity and fingerprint, decode, verify), which bounds how fast an agent
//! can answer a peer.
//!
//! ```text
//! cargo bench -p ferry-proto --bench ice_tcp
//! ```
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ferry_proto::stun::framing::{self, FrameDecoder};
use ferry_proto::stun::{BINDING, Builder, Class, RoleAttribute, StunMessage, verify_integrity};

const TOTAL: usize = 64 * 1024 * 1024;
/// A full TLS record with its overhead: what Ferry puts in one frame on a selected pair.
const RECORD: usize = 16 * 1024 + 22;
const CHECKS: u32 = 20_000;

fn best_of(runs: usize, mut f: impl FnMut()) -> Duration {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let record = vec![0x17u8; RECORD];
    let n = TOTAL / RECORD;

    let copy = best_of(5, || {
        let mut out = BytesMut::with_capacity(TOTAL);
        for _ in 0..n {
            out.extend_from_slice(&record);
        }
        black_box(out);
    });

    let framed = best_of(5, || {
        let mut wire = BytesMut::with_capacity(n * (RECORD + 2));
        for _ in 0..n {
            framing::encode_into(&record, &mut wire);
        }
        let wire = wire.freeze();
        let mut d = FrameDecoder::new();
        let mut got = 0;
        // The stream arrives in pieces that do not line up with frames.
        for piece in wire.chunks(64 * 1024 - 7) {
            for frame in d.push(piece) {
                got += frame.len();
            }
        }
        assert_eq!(got, n * RECORD);
    });

    let checks = best_of(3, || {
        for tx in 0..CHECKS {
            let bytes = Builder::new(Class::Request, BINDING, u128::from(tx))
                .username("0d04b932:7c33834e")
                .priority(1_862_270_975)
                .role(RoleAttribute::Controlling(42))
                .finish(Some("7c33834e7cf944bf0e367b47"))
                .unwrap_or_default();
            let m = StunMessage::decode(&bytes).map(|m| m.transaction).ok();
            let ok = verify_integrity(&bytes, "7c33834e7cf944bf0e367b47").is_ok();
            black_box((m, ok));
        }
    });

    let mib = (n * RECORD) as f64 / (1024.0 * 1024.0);
    println!(
        "baseline  copy {mib:.0} MiB in TLS-record pieces: {:>8.2} ms",
        copy.as_secs_f64() * 1e3
    );
    println!(
        "rfc4571   encode + decode the same:          {:>8.2} ms  ratio {:.2}× the copy",
        framed.as_secs_f64() * 1e3,
        framed.as_secs_f64() / copy.as_secs_f64()
    );
    println!(
        "stun      build + decode + verify one check: {:>8.2} µs  ({:.0} checks/s)",
        checks.as_secs_f64() * 1e6 / f64::from(CHECKS),
        f64::from(CHECKS) / checks.as_secs_f64()
    );
}
