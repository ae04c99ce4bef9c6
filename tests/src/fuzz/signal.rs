//! Signalling on the DHT: connection messages (msgpack), announcements (signature checks),
//! and sealed values (HPKE open, then the sender's certificates and signature).

use std::sync::OnceLock;

use ferry_proto::ice::Description;
use ferry_proto::signal::{Announcement, PeerConnection, SeededRng, open, seal};
use ferry_proto::tls::{Account, Device, Revocations, Validity, derive_seed};
use hpke::{Deserializable as _, Serializable as _};

use super::Script;

/// When the fuzzed identities become valid (2026-11-27), for a year.
pub(crate) const T0: u64 = 1_795_651_200;

/// The identities every signalling input is checked against.
#[derive(Debug)]
pub(crate) struct Identities {
    /// The sender's account.
    pub(crate) alice: Account,
    /// The sender's device.
    pub(crate) a1: Device,
    /// The recipient's account.
    pub(crate) bob: Account,
    /// The recipient's device.
    pub(crate) b1: Device,
}

/// The same identities in every run (keys from fixed seeds).
pub(crate) fn identities() -> &'static Identities {
    static IDS: OnceLock<Identities> = OnceLock::new();
    IDS.get_or_init(|| {
        let validity = Validity::days_from(T0, 365);
        let make = |name: &str| {
            Account::from_seed(&derive_seed(b"fuzz", name), validity).expect("an account")
        };
        let (alice, bob) = (make("alice"), make("bob"));
        let a1 = alice
            .add_device(&derive_seed(b"fuzz", "a1"), validity)
            .expect("a device");
        let b1 = bob
            .add_device(&derive_seed(b"fuzz", "b1"), validity)
            .expect("a device");
        Identities { alice, a1, bob, b1 }
    })
}

/// A connection message decodes or is refused; a decoded one encodes back to itself and stays
/// within its bounds. An announcement verifies only when Bob's account really signed it.
pub fn signal_decode(data: &[u8]) {
    if let Ok(m) = PeerConnection::decode(data) {
        assert!(m.addresses.len() <= 64 && m.ice.len() <= 16 * 1024);
        assert_eq!(PeerConnection::decode(&m.encode()), Ok(m.clone()));
        let _ = Description::parse(&m.ice);
    }
    let ids = identities();
    if let Ok(a) = Announcement::verify(data, &ids.bob.id(), &Revocations::new()) {
        // Nobody but Bob's account key signs announcements of Bob's account, and it signed
        // only this device.
        assert_eq!(a.account, ids.bob.id());
        assert_eq!(a.device, ids.b1.id());
        assert_eq!(a.seal_key, ids.b1.seal_public_key());
    }
}

/// HPKE-seals `plaintext` to `to`, as a peer would, and wraps it in the outer msgpack map.
pub(crate) fn seal_raw(to: &Device, plaintext: &[u8], rng: &mut SeededRng) -> Vec<u8> {
    type Kem = hpke::kem::X25519HkdfSha256;
    let public =
        <Kem as hpke::Kem>::PublicKey::from_bytes(&to.seal_public_key()).expect("a sealing key");
    let (enc, ct) = hpke::single_shot_seal_with_rng::<
        hpke::aead::ChaCha20Poly1305,
        hpke::kdf::HkdfSha256,
        Kem,
    >(
        &hpke::OpModeS::Base,
        &public,
        b"ferry signal v1",
        plaintext,
        &to.id().0,
        rng,
    )
    .expect("sealing");
    // msgpack { v: 1, enc: bin, ct: bin }
    let mut out = vec![0x83, 0xa1, b'v', 0x01, 0xa3, b'e', b'n', b'c', 0xc4, 32];
    out.extend_from_slice(&enc.to_bytes());
    out.extend_from_slice(&[0xa2, b'c', b't', 0xc6]);
    out.extend_from_slice(&(ct.len() as u32).to_be_bytes());
    out.extend_from_slice(&ct);
    out
}

/// Opening values sealed to Bob's device: raw bytes; any plaintext properly sealed (so the
/// certificate and signature checks behind HPKE are reached); and any body sealed and signed
/// by Alice's device, which must open to that body.
pub fn signal_open(data: &[u8]) {
    let ids = identities();
    let none = Revocations::new();
    let mut s = Script::new(data);
    let mode = s.byte();
    let mut rng = SeededRng::new(u64::from(s.byte()));
    let rest = s.rest();
    match mode % 3 {
        0 => {
            if let Ok(opened) = open(&ids.b1, rest, &none) {
                assert_eq!(
                    (opened.account, opened.device),
                    (ids.alice.id(), ids.a1.id())
                );
            }
        }
        1 => {
            let sealed = seal_raw(&ids.b1, rest, &mut rng);
            if let Ok(opened) = open(&ids.b1, &sealed, &none) {
                // Only Alice's device signed anything: a forged signature never opens.
                assert_eq!(
                    (opened.account, opened.device),
                    (ids.alice.id(), ids.a1.id())
                );
            }
        }
        _ => {
            let sealed = seal(&ids.a1, &ids.b1.recipient(), rest, &mut rng).expect("sealing");
            let opened = open(&ids.b1, &sealed, &none).expect("a value sealed by Alice opens");
            assert_eq!(opened.body, rest);
            assert_eq!(
                (opened.account, opened.device),
                (ids.alice.id(), ids.a1.id())
            );
            let _ = PeerConnection::decode(&opened.body);
        }
    }
}
