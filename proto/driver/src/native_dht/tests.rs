//! The native service on loopback: three of its nodes, and a network that never answers.

use super::*;
use std::net::UdpSocket;

const PATIENCE: Duration = Duration::from_secs(60);

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn client(bootstrap: Vec<String>, bind: &str) -> (NativeClient, mpsc::Receiver<Input>) {
    let mut config = NativeConfig::new(bootstrap);
    config.bind = bind.parse().expect("addr");
    config.join_wait = Duration::from_millis(200);
    config.rebootstrap = Duration::from_millis(300);
    let (tx, rx) = mpsc::channel();
    let client = NativeClient::new(&config, move |i| {
        let _ = tx.send(i);
    })
    .expect("starts");
    (client, rx)
}

#[test]
fn a_listen_started_before_any_network_hears_values_once_the_node_joins() {
    // B's bootstrap node is not there yet: B gives up waiting and listens on an empty
    // table; A comes up on that port later, B joins it, and C's put reaches B's listen.
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free port")
        .port();
    let first = format!("127.0.0.1:{port}");
    let (b, b_rx) = client(vec![first.clone()], "127.0.0.1:0");
    let key = DhtKey([5; 20]);
    b.listen(key);
    wait_for("B gave up waiting", || b.status().listens_started == 1);
    assert!(!b.status().joined);
    let (a, _) = client(Vec::new(), &first);
    wait_for("B joined A", || b.status().joined);
    // Joining started B's listen again, on a table that now holds A (else it would wait
    // for its renewal, 20 s later), and A holds it.
    wait_for("B's listen started again", || {
        b.status().listens_started == 2
    });
    wait_for("A holds B's listen", || a.status().listeners == 1);
    let (c, c_rx) = client(vec![first], "127.0.0.1:0");
    c.put(key, Bytes::from_static(b"to B"));
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "B never heard C's value");
        if let Ok(Input::DhtValue { value, .. }) = b_rx.recv_timeout(left) {
            assert_eq!(&value[..], b"to B");
            break;
        }
    }
    let mut c_rx = c_rx.iter();
    assert!(
        c_rx.any(|i| i == Input::DhtPutDone { key, ok: true }),
        "C's put is stored"
    );
}

// SECURITY: row 152
#[test]
fn a_network_that_never_answers_fails_puts_in_bounded_time_and_memory() {
    // A bootstrap node that never answers (a bound socket nobody reads), and a name that
    // does not resolve.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut config = NativeConfig::new(vec![
        silent.local_addr().expect("addr").to_string(),
        "no-such-host.invalid:4222".to_owned(),
    ]);
    config.bind = "127.0.0.1:0".parse().expect("addr");
    config.join_wait = Duration::from_millis(200);
    let (tx, rx) = mpsc::channel();
    let client = NativeClient::new(&config, move |i| {
        let _ = tx.send(i);
    })
    .expect("starts");
    let key = DhtKey([9; 20]);
    for i in 0..(MAX_PUTS as u32 + 6) {
        client.put(key, Bytes::copy_from_slice(&i.to_be_bytes()));
    }
    // Each put is answered, as stored nowhere (the oldest ones as they are ended).
    let mut answered = 0;
    let deadline = Instant::now() + PATIENCE;
    while answered < MAX_PUTS + 6 {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{answered} puts answered");
        if let Ok(Input::DhtPutDone { ok, .. }) = rx.recv_timeout(left) {
            assert!(!ok, "stored nowhere");
            answered += 1;
        }
    }
    wait_for("the status", || {
        let s = client.status();
        !s.joined && s.our_values == MAX_PUTS && s.our_values_stored == 0
    });
    let s = client.status();
    assert_eq!(s.unresolved, ["no-such-host.invalid:4222"]);
    assert_eq!(s.nodes, 0);
}
