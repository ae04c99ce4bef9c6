//! Two `ferry` CLIs behind two kernel NATs meeting through `dhtnode`s.

use std::time::{Duration, Instant};

use crate::dhtnode_cli::DhtNodeCli;

/// Two `ferry` CLIs on two hosts behind two kernel NATs (the `netlab`), each with a folder
/// DHT of its own (they share none), meet through a network of two `dhtnode`s on the public
/// segment with `--bootstrap` only, and transfer a file; the listener's `ferry dht status`
/// shows its node in the network meanwhile.
#[test]
fn two_ferry_clis_meet_through_a_dhtnode_network_with_bootstrap_only() {
    use ferry_tests::netlab::{Ferry, Lab, Nat, Side, TURN_ADDRS, TURN_PORT, TurnServer};
    let limit = Duration::from_secs(240);
    if !std::path::Path::new("/usr/bin/dhtnode").exists() {
        assert!(
            std::env::var("FERRY_REQUIRE_INTEROP").is_ok_and(|v| v != "1")
                || std::env::var("FERRY_REQUIRE_INTEROP").is_err(),
            "FERRY_REQUIRE_INTEROP=1 but dhtnode is not installed"
        );
        eprintln!("SKIP: dhtnode is not installed");
        return;
    }
    let Some(lab) = Lab::start("dht", Nat::Cone, Nat::Cone) else {
        return;
    };
    // coturn as a STUN server: each side learns its public address for ICE (the DHT is
    // only the meeting place).
    let _stun = TurnServer::start(&lab);
    let public = lab.public();
    // `Lab::build` routes the public segment's answers from the servers' address, so
    // `dhtnode` (bound to every address) answers from the address it was asked on.
    let first = format!("{}:4222", TURN_ADDRS[0]);
    let dht_a = DhtNodeCli::start_in(Some(&public), &["-p", "4222"]);
    dht_a.wait_for(0, "running on port 4222");
    let dht_b = DhtNodeCli::start_in(Some(&public), &["-p", "4223", "-b", &first]);
    dht_b.wait_for(0, "running on port 4223");

    let dir = tempfile::tempdir().expect("a temporary folder");
    let (home_a, home_b) = (dir.path().join("a"), dir.path().join("b"));
    let (folder_a, folder_b) = (dir.path().join("dht-a"), dir.path().join("dht-b"));
    let account = |side, home: &std::path::Path, folder: &std::path::Path| {
        let made = Ferry::spawn(&lab.host(side), home, folder, &["--json", "account", "new"])
            .finish(limit);
        assert_eq!(made.code, Some(0), "account new: {}", made.stderr);
        made.first("account_created").expect("account_created").1["account"]
            .as_str()
            .expect("an account id")
            .to_owned()
    };
    account(Side::A, &home_a, &folder_a);
    let bob = account(Side::B, &home_b, &folder_b);
    let source = dir.path().join("through-the-dht.bin");
    let data: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&source, &data).expect("the file");
    let into = dir.path().join("received");
    let stun = TURN_ADDRS.map(|a| format!("{a}:{TURN_PORT}"));
    let (into_arg, source_arg) = (into.display().to_string(), source.display().to_string());
    let net: Vec<&str> = vec![
        "--bootstrap",
        &first,
        "--stun",
        &stun[0],
        "--stun",
        &stun[1],
    ];
    let mut listen_args = vec![
        "--json",
        "listen",
        "--once",
        "--accept-all",
        "--into",
        &into_arg,
    ];
    listen_args.extend(&net);
    let listener = Ferry::spawn(&lab.host(Side::B), &home_b, &folder_b, &listen_args);
    // The listener's node is in the network before the sender starts: its status file says
    // so (read through `ferry dht status`).
    let deadline = Instant::now() + limit;
    let status = loop {
        let shown = Ferry::spawn(
            &lab.host(Side::B),
            &home_b,
            &folder_b,
            &["--json", "dht", "status"],
        )
        .finish(limit);
        if let Some((_, s)) = shown.first("dht_status") {
            if s["joined"] == true && s["listens"].as_u64().is_some_and(|l| l >= 1) {
                break s.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "the listener never joined: {shown:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("listener's DHT status: {status}");
    assert!(status["nodes"].as_u64().is_some_and(|n| n >= 2), "{status}");
    assert_eq!(status["source"], "the running ferry's node");

    let mut send_args = vec!["--json", "send", &source_arg, "--to", &bob];
    send_args.extend(&net);
    let sent = Ferry::spawn(&lab.host(Side::A), &home_a, &folder_a, &send_args).finish(limit);
    let received = listener.finish(if sent.code == Some(0) {
        limit
    } else {
        Duration::ZERO
    });
    assert_eq!(sent.code, Some(0), "send: {}", sent.stderr);
    assert_eq!(received.code, Some(0), "listen: {}", received.stderr);
    let got = std::fs::read(into.join("through-the-dht.bin")).expect("the received file");
    assert!(got == data, "the file arrived byte for byte");
    // Nothing of either side's folder DHT reached the other: they met through the network.
    assert_ne!(folder_a, folder_b);
}
