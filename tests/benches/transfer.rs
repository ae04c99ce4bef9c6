//! A 1 GiB file between two Nodes over loopback on each runtime, through its `Client`, as
//! ratios to two baselines measured in the same run on the same machine:
//!
//! - rustls alone: TLS 1.3 with AES-256-GCM (the suite Ferry's nodes agree on) over a loopback
//!   socket pair, 1 GiB one way, with no protocol around it;
//! - SHA3-512 on one core over the same 1 GiB of data (each side of a transfer hashes every
//!   byte once, beside its file I/O).
//!
//! The Node's time runs from the receiver's accept to the end of the transfer on its side:
//! ICE, TLS, channels, framing, the file read and written, both digests and the commit.
//! It prints; it asserts nothing about time.
//!
//! ```sh
//! cargo bench -p ferry-tests --bench transfer
//! ```
#![allow(missing_docs, clippy::print_stdout)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_tests::conformance::{Cast, Harness, Real, Setup, deliver, file};
use sha3::Digest as _;
use support::clients::{Smol, Tokio};

const SIZE: u64 = 1 << 30;
const BLOCK: usize = 1 << 20;

/// The benchmark's data: the first `BLOCK` bytes of the file, repeated over 1 GiB is what
/// each baseline moves (the bytes' values do not change TLS's or SHA3's speed).
fn block() -> Vec<u8> {
    ferry_tests::content::range(1, 0, BLOCK)
}

/// Single-core SHA3-512 over 1 GiB.
fn sha3_baseline(data: &[u8]) -> Duration {
    let start = Instant::now();
    let mut hasher = sha3::Sha3_512::new();
    for _ in 0..SIZE / BLOCK as u64 {
        hasher.update(data);
    }
    std::hint::black_box(hasher.finalize());
    start.elapsed()
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

/// 1 GiB from one Node to another on runtime `H`.
fn nodes<H: Harness>() -> Duration {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    deliver(&mut h, &cast, &file("bench.bin", SIZE, 1))
}

fn main() {
    let data = block();
    let gib = SIZE as f64 / f64::from(1u32 << 30);
    let rate = |d: Duration| gib / d.as_secs_f64();
    let sha3 = sha3_baseline(&data);
    let tls = rustls_baseline(&data);
    println!(
        "baselines: rustls TLS 1.3 AES-256-GCM loopback {:.2} GiB/s, SHA3-512 one core {:.2} GiB/s",
        rate(tls),
        rate(sha3)
    );
    for (name, took) in [
        ("smol", nodes::<Real<Smol>>()),
        ("tokio", nodes::<Real<Tokio>>()),
    ] {
        println!(
            "{name}: 1 GiB Node to Node in {:.2} s, {:.2} GiB/s: {:.2} of rustls, {:.2} of SHA3-512",
            took.as_secs_f64(),
            rate(took),
            tls.as_secs_f64() / took.as_secs_f64(),
            sha3.as_secs_f64() / took.as_secs_f64()
        );
    }
}
