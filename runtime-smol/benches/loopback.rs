//! Loopback throughput of the smol driver, as a ratio to a plain async-io socket pair moving
//! the same bytes in the same run. `cargo bench -p ferry-smol`
//!
//! The driver side is two [`Driver`]s: one runs a [`Blast`] endpoint that connects and sends
//! with a credit window the way the transfer machines do (more only as `Writable` returns
//! it), the other a [`Blast`] that listens and counts. No TLS, no files: this measures the
//! driver's own cost (tasks, channels, copies, credit) over the kernel's.
#![allow(missing_docs)]

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use ferry_smol::{Config, Driver};
use ferry_tests::blast::{Blast, BlastEvent, CHUNK, TOTAL};
use smol::Async;
use smol::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ROUNDS: usize = 3;

async fn plain_socket_pair() -> Duration {
    let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).expect("bind");
    let addr = listener.get_ref().local_addr().expect("addr");
    let start = Instant::now();
    let writer = smol::spawn(async move {
        let mut stream = Async::<TcpStream>::connect(addr).await.expect("connect");
        stream.get_ref().set_nodelay(true).expect("nodelay");
        let chunk = vec![0x5a; CHUNK];
        let mut sent = 0;
        while sent < TOTAL {
            stream.write_all(&chunk).await.expect("write");
            sent += CHUNK as u64;
        }
    });
    let (mut stream, _) = listener.accept().await.expect("accept");
    let mut buf = vec![0; CHUNK];
    let mut got = 0;
    while got < TOTAL {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(n > 0, "early end");
        got += n as u64;
    }
    writer.await;
    start.elapsed()
}

async fn through_the_driver() -> Duration {
    use smol::future::FutureExt as _;
    let folder = std::env::temp_dir();
    let (receiver, keep_rx, rx_events) =
        Driver::new(Blast::receiver(), Config::new(&folder)).expect("driver");
    // The receiving driver runs on this thread, the sending one on smol's executor thread,
    // as the plain pair's two ends do.
    let measure = async move {
        let Some(BlastEvent::Listening(addr)) = rx_events.recv().await else {
            panic!("no listener");
        };
        let start = Instant::now();
        let (sender, _keep_tx, _tx_events) =
            Driver::new(Blast::sender(addr), Config::new(&folder)).expect("driver");
        let _sender = smol::spawn(sender.run());
        let done = rx_events.recv().await;
        assert!(matches!(done, Some(BlastEvent::Done)), "{done:?}");
        drop(keep_rx);
        start.elapsed()
    };
    measure
        .or(async {
            receiver.run().await;
            Duration::ZERO
        })
        .await
}

fn main() {
    let gib = TOTAL as f64 / f64::from(1u32 << 30);
    smol::block_on(async {
        for round in 1..=ROUNDS {
            let plain = plain_socket_pair().await;
            let driver = through_the_driver().await;
            let rate = |d: Duration| gib / d.as_secs_f64();
            eprintln!(
                "round {round}: plain async-io socket pair {:.2} GiB/s, ferry-smol driver {:.2} GiB/s, ratio {:.2}",
                rate(plain),
                rate(driver),
                plain.as_secs_f64() / driver.as_secs_f64()
            );
        }
    });
}
