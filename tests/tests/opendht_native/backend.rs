//! The driver's native backend (`ferry_driver::NativeClient`: its own UDP sockets and
//! threads) among `dhtnode`s.

use std::time::{Duration, Instant};

use ferry_proto::opendht::InfoHash;
use ferry_tests::dhtnode::in_network_namespace;

use crate::PATIENCE;
use crate::dhtnode_cli::DhtNodeCli;

/// Waits for what `rx` delivers until `done` holds of one input (or fails after `PATIENCE`).
fn wait_input(
    rx: &std::sync::mpsc::Receiver<ferry_proto::io::Input>,
    what: &str,
    done: impl Fn(&ferry_proto::io::Input) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "never {what}");
        if let Ok(input) = rx.recv_timeout(left.min(Duration::from_millis(200))) {
            if done(&input) {
                return;
            }
        }
    }
}

/// Waits until the native node's status (brought up to date every quarter of a second)
/// satisfies `done`.
fn wait_status(
    client: &ferry_driver::NativeClient,
    what: &str,
    done: impl Fn(&ferry_driver::NativeStatus) -> bool,
) {
    let deadline = Instant::now() + PATIENCE;
    while !done(&client.status()) {
        assert!(
            Instant::now() < deadline,
            "never {what}: {:?}",
            client.status()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The driver's native backend (`ferry_driver::NativeClient`: its own UDP socket and thread)
/// in a network of three `dhtnode`s: what it puts, with a Ferry signalling value's size, is
/// read by another node's `g`; what `dhtnode` puts it gets and hears through a listen; the
/// same bytes put again reuse the running put; its status counts the network.
#[test]
fn the_native_backend_puts_gets_and_listens_on_a_dhtnode_network() {
    use ferry_driver::{NativeClient, NativeConfig};
    use ferry_proto::io::{DhtKey, Input};
    if !in_network_namespace(
        "backend::the_native_backend_puts_gets_and_listens_on_a_dhtnode_network",
    ) {
        return;
    }
    let [_a, mut b, mut c] = DhtNodeCli::network();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut config = NativeConfig::new(vec!["localhost:4222".to_owned()]);
    config.bind = "127.0.0.1:0".parse().expect("addr");
    let client = NativeClient::new(&config, move |input| {
        let _ = tx.send(input);
    })
    .expect("the native node starts");

    // A put asked before the node joined waits for it, then is stored on the network.
    let key = DhtKey(InfoHash::get(b"ferry-driver-native").0);
    let signal = vec![b'D'; 1300];
    client.put(key, bytes::Bytes::from(signal.clone()));
    wait_input(
        &rx,
        "stored",
        |i| matches!(i, Input::DhtPutDone { key: k, ok } if *k == key && *ok),
    );
    let out = c.get("ferry-driver-native");
    // `dhtnode` shows a value this large by its size.
    assert!(out.contains("data:1300 bytes"), "C did not read it:\n{out}");
    // The same bytes again (the core re-announcing): answered by the running put.
    client.put(key, bytes::Bytes::from(signal));
    wait_input(
        &rx,
        "the repeat answered",
        |i| matches!(i, Input::DhtPutDone { key: k, ok } if *k == key && *ok),
    );
    wait_status(&client, "one put, kept alive", |s| {
        s.our_values == 1 && s.our_values_stored == 1
    });

    // B's value: heard through a listen, and B's next one pushed.
    let from = b.output_len();
    b.command("p from-dhtnode-b hello");
    b.wait_for(from, "Put: ");
    let heard = DhtKey(InfoHash::get(b"from-dhtnode-b").0);
    client.listen(heard);
    let value_is = |want: &'static [u8]| move |i: &Input| matches!(i, Input::DhtValue { key, value } if *key == heard && value[..] == *want);
    wait_input(&rx, "heard B's value", value_is(b"hello"));
    let from = b.output_len();
    b.command("p from-dhtnode-b again");
    b.wait_for(from, "Put: ");
    wait_input(&rx, "heard B's new value", value_is(b"again"));
    client.cancel_listen(heard);

    // At least A, which answered; `dhtnode` lists to others only nodes that answered *it*
    // (OpenDHT's `isGood`), so B and C may not be known yet in a network this young.
    wait_status(&client, "the network counted", |s| {
        s.joined && s.nodes >= 1 && s.good >= 1 && s.listens == 0
    });
    let status = client.status();
    assert_eq!(status.dropped.malformed, 0, "{status:?}");
    assert!(status.unresolved.is_empty(), "{status:?}");
    // Our address as the nodes we asked saw it (`sa`).
    assert_eq!(
        status.public,
        ["127.0.0.1".parse::<std::net::IpAddr>().expect("ip")],
        "{status:?}"
    );

    // Reachability: a node we never sent to (D, bootstrapping from us) reaches us.
    let before = status.strangers;
    let ours = client.local_addr().to_string();
    let _d = DhtNodeCli::start(&["-p", "4225", "-b", &ours]);
    wait_status(&client, "a stranger reached us", |s| {
        s.strangers > before && s.reachable == "yes"
    });
}

/// IPv6: the native backend opens an IPv6 socket beside its IPv4 one and joins a `dhtnode`
/// on `::1` from a bootstrap name that resolves to IPv6 only; its IPv6 routing table keeps
/// the node; what it puts over IPv6 is read by another `dhtnode`'s `g`, and what that one
/// puts reaches its listen.
#[test]
fn the_native_backend_joins_over_ipv6() {
    use ferry_driver::{NativeClient, NativeConfig};
    use ferry_proto::io::{DhtKey, Input};
    if !in_network_namespace("backend::the_native_backend_joins_over_ipv6") {
        return;
    }
    let [a, mut b] = DhtNodeCli::network();
    let (tx, rx) = std::sync::mpsc::channel();
    let mut config = NativeConfig::new(vec!["[::1]:4222".to_owned()]);
    config.bind = "127.0.0.1:0".parse().expect("addr");
    let client = NativeClient::new(&config, move |input| {
        let _ = tx.send(input);
    })
    .expect("the native node starts");
    let local6 = client.local_addr6().expect("an IPv6 socket");
    assert!(local6.is_ipv6());
    assert_eq!(local6.port(), client.local_addr().port(), "the same port");
    wait_status(&client, "joined over IPv6", |s| {
        s.joined && s.nodes6 >= 1 && s.local6.is_some()
    });

    let key = DhtKey(InfoHash::get(b"ferry-over-ipv6").0);
    client.put(key, bytes::Bytes::from(vec![b'6'; 1300]));
    wait_input(
        &rx,
        "stored",
        |i| matches!(i, Input::DhtPutDone { key: k, ok } if *k == key && *ok),
    );
    let out = b.get("ferry-over-ipv6");
    assert!(out.contains("data:1300 bytes"), "B did not read it:\n{out}");

    let heard = DhtKey(InfoHash::get(b"to-ferry-over-ipv6").0);
    client.listen(heard);
    let from = b.output_len();
    b.command("p to-ferry-over-ipv6 hello6");
    b.wait_for(from, "Put: ");
    wait_input(
        &rx,
        "heard B's value",
        |i| matches!(i, Input::DhtValue { key, value } if *key == heard && value[..] == b"hello6"[..]),
    );
    let status = client.status();
    assert!(
        status.public.iter().any(|ip| ip.is_ipv6()),
        "our IPv6 address learnt from `sa`: {status:?}"
    );
    assert_eq!(status.dropped.malformed, 0, "{status:?}");
    drop(a);
}
