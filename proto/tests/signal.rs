//! Signalling values: announcements, sealed requests and answers, replays.

use ferry_proto::signal::{
    Announcement, PeerConnection, SeededRng, SeenIds, SignalError, devices_key, open, open_at,
    peer_key, seal,
};
use ferry_proto::tls::{Account, Device, PeerCheckError, Revocations, Validity, derive_seed};
use rustls::pki_types::UnixTime;

const T0: u64 = 1_795_651_200;

fn account(name: &str) -> Account {
    Account::from_seed(&derive_seed(b"signal", name), Validity::days_from(T0, 365))
        .expect("account")
}

fn device(a: &Account, name: &str) -> Device {
    a.add_device(&derive_seed(b"signal", name), Validity::days_from(T0, 365))
        .expect("device")
}

fn request() -> PeerConnection {
    PeerConnection {
        id: 0x1234_5678_9abc_def0,
        is_answer: false,
        ice: "0d04b932\n7c33834e7cf944bf0e367b47\nH6e6ca682 1 TCP 2130706431 192.168.0.123 42751 typ host tcptype passive\n".into(),
        addresses: vec!["203.0.113.7:4242".parse().expect("addr"), "[2001:db8::1]:4242".parse().expect("addr")],
        seal: Some([3; 32]),
        time: None,
    }
}

#[test]
fn an_announcement_names_a_device_of_the_account_and_how_to_reach_it() {
    let bob = account("bob");
    let b1 = device(&bob, "b1");
    let bytes = bob.announce(&b1).expect("announce");
    let a = Announcement::verify(&bytes, &bob.id(), &Revocations::new()).expect("valid");
    assert_eq!(
        (a.account, a.device, a.seal_key),
        (bob.id(), b1.id(), b1.seal_public_key())
    );
    assert_eq!(a.recipient(), b1.recipient());
}

#[test]
fn bad_announcements_are_refused_with_their_reason() {
    let (bob, mallory) = (account("bob"), account("mallory"));
    let (b1, m1) = (device(&bob, "b1"), device(&mallory, "m1"));
    let none = Revocations::new();
    // SECURITY: row 66
    // Mallory's device announced under Bob's key.
    let theirs = mallory.announce(&m1).expect("announce");
    assert!(matches!(
        Announcement::verify(&theirs, &bob.id(), &none),
        Err(SignalError::WrongAccount { .. })
    ));
    // SECURITY: row 67
    // Mallory's account "announcing" Bob's device: Mallory did not sign that certificate.
    let stolen = mallory.announce(&b1).expect("announce");
    assert_eq!(
        Announcement::verify(&stolen, &mallory.id(), &none),
        Err(SignalError::NotSignedByAccount)
    );
    // SECURITY: row 68
    // A flipped byte in the sealing key breaks the account's signature.
    let mut tampered = bob.announce(&b1).expect("announce");
    let n = tampered.len();
    tampered[n - 70] ^= 1;
    let got = Announcement::verify(&tampered, &bob.id(), &none);
    assert!(
        matches!(
            got,
            Err(SignalError::BadSignature | SignalError::Malformed(_))
        ),
        "{got:?}"
    );
    // SECURITY: row 69
    // Revoked devices are ignored.
    let mut revoked = Revocations::new();
    revoked.add(bob.revoke(&[b1.id()], T0, 1).expect("list"));
    assert_eq!(
        Announcement::verify(&bob.announce(&b1).expect("a"), &bob.id(), &revoked),
        Err(SignalError::Revoked(b1.id()))
    );
    assert!(matches!(
        Announcement::verify(b"\x92\x01", &bob.id(), &none),
        Err(SignalError::Malformed(_))
    ));
}

#[test]
fn a_sealed_request_opens_only_for_its_device_and_names_its_sender() {
    let (alice, bob) = (account("alice"), account("bob"));
    let (a1, b1, b2) = (device(&alice, "a1"), device(&bob, "b1"), device(&bob, "b2"));
    let mut rng = SeededRng::from_seed([7; 32]);
    let sealed = seal(&a1, &b1.recipient(), &request().encode(), &mut rng).expect("seal");
    let opened = open(&b1, &sealed, &Revocations::new()).expect("open");
    assert_eq!((opened.account, opened.device), (alice.id(), a1.id()));
    assert_eq!(PeerConnection::decode(&opened.body), Ok(request()));
    assert_eq!(
        open(&b2, &sealed, &Revocations::new()),
        Err(SignalError::NotForUs),
        "another device of the same account"
    );
    // SECURITY: row 72
    let mut altered = sealed.clone();
    let n = altered.len();
    altered[n - 5] ^= 0x80;
    assert_eq!(
        open(&b1, &altered, &Revocations::new()),
        Err(SignalError::NotForUs)
    );
    let mut revoked = Revocations::new();
    revoked.add(alice.revoke(&[a1.id()], T0, 1).expect("list"));
    assert_eq!(
        open(&b1, &sealed, &revoked),
        Err(SignalError::Revoked(a1.id()))
    );
    assert!(matches!(
        // SECURITY: row 73
        open(&b1, &vec![0u8; 100_000], &Revocations::new()),
        Err(SignalError::Malformed(_))
    ));
}

#[test]
fn sealing_is_deterministic_for_a_seed() {
    let (alice, bob) = (account("alice"), account("bob"));
    let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
    let body = request().encode();
    let x = seal(
        &a1,
        &b1.recipient(),
        &body,
        &mut SeededRng::from_seed([9; 32]),
    )
    .expect("seal");
    let y = seal(
        &a1,
        &b1.recipient(),
        &body,
        &mut SeededRng::from_seed([9; 32]),
    )
    .expect("seal");
    let z = seal(
        &a1,
        &b1.recipient(),
        &body,
        &mut SeededRng::from_seed([8; 32]),
    )
    .expect("seal");
    assert_eq!(x, y);
    assert_ne!(x, z);
}

#[test]
fn connection_messages_round_trip_and_refuse_garbage() {
    let mut answer = request();
    answer.is_answer = true;
    answer.seal = None;
    for m in [request(), answer] {
        assert_eq!(PeerConnection::decode(&m.encode()), Ok(m));
    }
    assert!(PeerConnection::decode(b"nonsense").is_err());
    // An unparseable address is skipped, not fatal.
    #[derive(serde::Serialize)]
    struct Raw {
        id: u64,
        protocol: u32,
        ice: String,
        addresses: Vec<String>,
    }
    let raw = Raw {
        id: 1,
        protocol: 0x0100_0002,
        ice: String::new(),
        addresses: vec!["nope".into(), "1.2.3.4:5".into()],
    };
    let m =
        PeerConnection::decode(&rmp_serde::to_vec_named(&raw).expect("encode")).expect("decode");
    assert_eq!(m.addresses, ["1.2.3.4:5".parse().expect("addr")]);
    let flood = Raw {
        id: 1,
        protocol: 0x0100_0002,
        ice: String::new(),
        // SECURITY: row 82
        addresses: vec!["1.2.3.4:5".into(); 1000],
    };
    assert!(PeerConnection::decode(&rmp_serde::to_vec_named(&flood).expect("encode")).is_err());
    let other = Raw {
        id: 1,
        protocol: 7,
        ice: String::new(),
        addresses: vec![],
    };
    assert!(PeerConnection::decode(&rmp_serde::to_vec_named(&other).expect("encode")).is_err());
}

#[test]
fn replays_are_ignored_in_bounded_memory() {
    let bob = account("bob");
    let b1 = device(&bob, "b1").id();
    let mut seen = SeenIds::new();
    assert!(seen.first_time(b1, 1, false));
    // SECURITY: row 79
    assert!(!seen.first_time(b1, 1, false), "the same request again");
    assert!(
        seen.first_time(b1, 1, true),
        "its answer is another message"
    );
    for id in 2..(ferry_proto::signal::REMEMBERED as u64 + 10) {
        seen.first_time(b1, id, false);
    }
    assert!(
        seen.first_time(b1, 1, false),
        "the oldest is forgotten first"
    );
}

#[test]
fn dht_keys_follow_opendht_infohash_get() {
    // InfoHash::get("hello") is SHA-1("hello").
    assert_eq!(
        format!("{:?}", ferry_proto::io::DhtKey::of_str("hello")),
        "DhtKey(aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d)"
    );
    let bob = account("bob");
    let b1 = device(&bob, "b1");
    assert_eq!(
        peer_key(&b1.id()),
        ferry_proto::io::DhtKey::of_str(&format!("peer:{}", b1.id()))
    );
    assert_ne!(devices_key(&bob.id()), peer_key(&b1.id()));
}

/// A "device" that is its account: the account certificate and key presented as a device,
/// which signs like a device and seals like one.
fn account_as_device(a: &Account) -> Device {
    let pem = a.to_pem();
    let cert_end = pem
        .find("-----END CERTIFICATE-----")
        .expect("a certificate")
        + 26;
    Device::from_pem(&format!("{}{pem}", &pem[..cert_end])).expect("a self-issued device")
}

#[test]
fn a_self_signed_device_is_refused_before_any_ice() {
    let (alice, bob) = (account("alice"), account("bob"));
    let b1 = device(&bob, "b1");
    let fake = account_as_device(&alice);
    let none = Revocations::new();
    let refused = Some(SignalError::Identity(PeerCheckError::SelfSigned));
    // SECURITY: row 70
    let announcement = alice.announce(&fake).expect("announce");
    assert_eq!(
        Announcement::verify(&announcement, &alice.id(), &none).err(),
        refused
    );
    let mut rng = SeededRng::from_seed([5; 32]);
    let sealed = seal(&fake, &b1.recipient(), &request().encode(), &mut rng).expect("seal");
    assert_eq!(open(&b1, &sealed, &none).err(), refused);
    assert_eq!(open_at(&b1, &sealed, &none, at(T0 + 86_400)).err(), refused);
}

fn at(unix: u64) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(unix))
}

#[test]
fn a_device_outside_its_validity_is_refused_before_any_ice() {
    let (alice, bob) = (account("alice"), account("bob"));
    let b1 = device(&bob, "b1");
    let none = Revocations::new();
    let now = at(T0 + 100 * 86_400);
    // SECURITY: row 71
    let expired = alice
        .add_device(&derive_seed(b"signal", "old"), Validity::days_from(T0, 30))
        .expect("device");
    let early = alice
        .add_device(
            &derive_seed(b"signal", "new"),
            Validity::days_from(T0 + 200 * 86_400, 30),
        )
        .expect("device");
    let valid = device(&alice, "a1");
    for (d, want) in [
        (&expired, Some(PeerCheckError::Expired)),
        (&early, Some(PeerCheckError::NotYetValid)),
        (&valid, None),
    ] {
        let announcement = alice.announce(d).expect("announce");
        let got = Announcement::verify_at(&announcement, &alice.id(), &none, now);
        assert_eq!(got.err(), want.clone().map(SignalError::Identity));
        let mut rng = SeededRng::from_seed([6; 32]);
        let sealed = seal(d, &b1.recipient(), &request().encode(), &mut rng).expect("seal");
        let got = open_at(&b1, &sealed, &none, now);
        assert_eq!(got.err(), want.map(SignalError::Identity));
        // Without a time only the signatures are checked (the node's clock decides validity).
        assert!(open(&b1, &sealed, &none).is_ok());
    }
}
