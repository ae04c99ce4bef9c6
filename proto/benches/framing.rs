//! How much Ferry's framing costs over copying the same bytes, and how SHA3-512 compares.
//!
//! Prints ratios against a baseline measured in the same run (a plain copy of the same
//! bytes), because the machine is shared and absolute times drift.
//!
//! ```text
//! cargo bench -p ferry-proto --bench framing
//! ```
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_proto::transfer::Digest;
use ferry_proto::transfer::frame::{Frame, FrameDecoder, MAX_DATA};

const TOTAL: usize = 64 * 1024 * 1024;

/// The best of a few runs of `f`, to shave off noise from the neighbours.
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
    let chunk = Bytes::from(vec![0xa5u8; MAX_DATA]);
    let n = TOTAL / MAX_DATA;

    let copy = best_of(5, || {
        let mut out = BytesMut::with_capacity(TOTAL);
        for _ in 0..n {
            out.extend_from_slice(&chunk);
        }
        black_box(out);
    });

    let framed = best_of(5, || {
        let mut wire = BytesMut::with_capacity(TOTAL + n * 5);
        for _ in 0..n {
            Frame::Data(chunk.clone()).encode_into(&mut wire);
        }
        let mut d = FrameDecoder::new();
        // Feed it in TLS-record-sized pieces, as a stream arrives.
        let wire = wire.freeze();
        let mut got = 0;
        for piece in wire.chunks(16 * 1024) {
            d.push(piece);
            while let Ok(Some(Frame::Data(data))) = d.next_frame() {
                got += data.len();
            }
        }
        assert_eq!(got, TOTAL);
    });

    let data = vec![0x5au8; TOTAL];
    let sha3 = best_of(3, || {
        black_box(Digest::of(&data));
    });

    let mib = (TOTAL / (1024 * 1024)) as f64;
    println!(
        "baseline  copy {mib} MiB in 64 KiB chunks: {:>8.2} ms",
        copy.as_secs_f64() * 1e3
    );
    println!(
        "framing   encode + decode DATA frames:   {:>8.2} ms  ratio {:.2}× the copy",
        framed.as_secs_f64() * 1e3,
        framed.as_secs_f64() / copy.as_secs_f64()
    );
    println!(
        "sha3-512  digest of the same bytes:      {:>8.2} ms  ratio {:.2}× the copy ({:.0} MiB/s)",
        sha3.as_secs_f64() * 1e3,
        sha3.as_secs_f64() / copy.as_secs_f64(),
        mib / sha3.as_secs_f64()
    );
}
