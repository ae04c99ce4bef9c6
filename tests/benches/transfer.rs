//! Where each cycle of a transfer goes: a 1 GiB file between two processes (a sender and a
//! receiver, this same binary started twice, each pinned to a core of its own when there are
//! two), on each runtime. For each side it prints the CPU seconds (user + system) per GiB of
//! the transfer beside the same side's primitives measured afterwards in the same process on
//! the same core — SHA3-512, AES-256-GCM seal or open in 16 KiB records, a plain socket
//! `write` or `read` over loopback, a file read or write through the page cache — and the
//! ratio of the two; and the wall-clock throughput against single-core SHA3-512. Ratios only:
//! the machine is shared, so absolute times vary from run to run. It asserts nothing about time.
//!
//! ```sh
//! cargo bench -p ferry-tests --bench transfer                    # 1 GiB, smol and tokio
//! FERRY_BENCH_MIB=128 cargo bench -p ferry-tests --bench transfer  # quicker
//! FERRY_BENCH_RUNTIMES=smol cargo bench -p ferry-tests --bench transfer
//! FERRY_BENCH_CONCURRENCY=1,2,4 cargo bench -p ferry-tests --bench transfer  # N files at once
//! ```
//!
//! With several files at once (over one connection, processes not pinned) it prints the
//! aggregate throughput, the cores each side kept busy, and the ratio to what two cores
//! could give at that run's CPU cost per GiB.
//!
//! With `FERRY_BENCH_CALLGRIND=1` both sides run under `valgrind --tool=callgrind` (64 MiB
//! unless `FERRY_BENCH_MIB` says otherwise, no primitives) and it prints instructions per
//! byte: in all, in SHA3 and AES-GCM, and the rest — the protocol's path — with its largest
//! functions. Instruction counts do not depend on the machine's load.
//!
//! With `FERRY_BENCH_STRACE=1` both sides run under `strace -f -c` instead (64 MiB unless
//! `FERRY_BENCH_MIB` says otherwise) and it prints each side's system calls per 64 MiB.
//!
//! With `FERRY_BENCH_MEMORY=1` it measures memory instead: RSS per idle authenticated
//! connection (1,000 of them) and per active transfer (100 at once) in one receiving process
//! (see `transfer/memory.rs`).
//!
//! Timed runs start with SHA3-512 by several implementations on one core (the `sha3` crate,
//! `keccak-asm`, OpenSSL); `FERRY_BENCH_HASHES=1` prints only that.
//!
//! It ends with the in-process baseline of earlier rounds: rustls alone over a loopback pair
//! (skip it with `FERRY_BENCH_RUSTLS=0`).
#![allow(missing_docs, clippy::print_stdout)]

#[path = "transfer/callgrind.rs"]
mod callgrind;
#[path = "transfer/cost.rs"]
mod cost;
#[path = "transfer/hashes.rs"]
mod hashes;
#[path = "transfer/memory.rs"]
mod memory;
#[path = "transfer/pair.rs"]
mod pair;
#[path = "transfer/side.rs"]
mod side;
#[path = "transfer/strace.rs"]
mod strace;
#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SIZE: u64 = 1 << 30;
const BLOCK: usize = 1 << 20;

/// The benchmark's data: the first `BLOCK` bytes of the file, repeated over 1 GiB is what
/// each baseline moves (the bytes' values do not change TLS's or SHA3's speed).
fn block() -> Vec<u8> {
    ferry_tests::content::range(1, 0, BLOCK)
}

/// rustls, TLS 1.3 AES-256-GCM only, over a loopback socket pair: 1 GiB client to server.
fn rustls_baseline(data: &[u8]) -> Duration {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384],
        ..rustls::crypto::ring::default_provider()
    });
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let reader = std::thread::spawn(move || {
        let (socket, _) = listener.accept().expect("accept");
        let conn = rustls::ServerConnection::new(Arc::new(server)).expect("server");
        let mut tls = rustls::StreamOwned::new(conn, socket);
        let mut buf = vec![0; BLOCK];
        let mut got = 0u64;
        while got < SIZE {
            let n = tls.read(&mut buf).expect("read");
            assert!(n > 0, "early end");
            got += n as u64;
        }
    });
    let start = Instant::now();
    let socket = TcpStream::connect(addr).expect("connect");
    socket.set_nodelay(true).expect("nodelay");
    let name = ServerName::try_from("localhost").expect("name");
    let conn = rustls::ClientConnection::new(Arc::new(client), name).expect("client");
    let mut tls = rustls::StreamOwned::new(conn, socket);
    for _ in 0..SIZE / BLOCK as u64 {
        tls.write_all(data).expect("write");
    }
    tls.flush().expect("flush");
    reader.join().expect("reader");
    start.elapsed()
}

fn main() {
    if memory::role().is_some() {
        return;
    }
    if let Some(role) = side::Role::from_env() {
        side::run(&role);
        return;
    }
    let on = |name: &str| std::env::var(name).is_ok_and(|v| v != "0");
    let tool = match (on("FERRY_BENCH_CALLGRIND"), on("FERRY_BENCH_STRACE")) {
        (true, _) => pair::Tool::Callgrind,
        (_, true) => pair::Tool::Strace,
        _ => pair::Tool::None,
    };
    let counting = tool != pair::Tool::None;
    let mib: u64 = std::env::var("FERRY_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if counting { 64 } else { 1024 });
    let runtimes = std::env::var("FERRY_BENCH_RUNTIMES").unwrap_or_else(|_| "smol,tokio".into());
    if on("FERRY_BENCH_MEMORY") {
        for runtime in runtimes.split(',') {
            memory::run(runtime);
        }
        return;
    }
    if !counting {
        hashes::compare(&block());
    }
    if on("FERRY_BENCH_HASHES") {
        return;
    }
    let run = pair::Run::new(mib << 20, tool);
    let concurrency = std::env::var("FERRY_BENCH_CONCURRENCY").unwrap_or_else(|_| "1".into());
    for runtime in runtimes.split(',') {
        for files in concurrency.split(',').filter_map(|n| n.parse().ok()) {
            run.pair(runtime, files);
        }
    }
    if !counting && std::env::var("FERRY_BENCH_RUSTLS").map_or(true, |v| v != "0") {
        let tls = rustls_baseline(&block());
        println!(
            "in-process baseline: rustls TLS 1.3 AES-256-GCM over loopback, 1 GiB in {:.2} s ({:.2} GiB/s)",
            tls.as_secs_f64(),
            1.0 / tls.as_secs_f64()
        );
    }
}
