//! An account's revocation list, published beside its devices' announcements so that its
//! contacts refuse a revoked device before any ICE, not only the account's own nodes.
//!
//! ```text
//! msgpack { v: 1, kind: "revocations", account: bin, crl: bin }
//!   account: the account certificate (DER), which must be the account looked up
//!   crl: the revocation list (DER, an X.509 CRL signed by the account key)
//! ```
//! Put under [`devices_key`](super::devices_key) of the account, where readers already look;
//! a reader that does not know the kind skips it as a bad announcement.

use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::SignalError;
use crate::tls::{AccountId, Device, RevocationList};

const KIND: &str = "revocations";
/// Largest published list read (a list naming thousands of devices fits).
const MAX_PUBLISHED: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    kind: String,
    #[serde(with = "serde_bytes")]
    account: Vec<u8>,
    #[serde(with = "serde_bytes")]
    crl: Vec<u8>,
}

/// The value a device of the account puts to publish `list`; `None` if `list` is not of
/// `device`'s account or does not encode.
pub fn publish(device: &Device, list: &RevocationList) -> Option<Vec<u8>> {
    if list.account() != device.account() {
        return None;
    }
    let account = device.chain().pop()?;
    let wire = Wire {
        v: 1,
        kind: KIND.to_owned(),
        account: account.to_vec(),
        crl: list.der().to_vec(),
    };
    rmp_serde::to_vec_named(&wire).ok()
}

/// Whether `bytes` has the shape of `account`'s published revocation list (its size,
/// encoding, kind, and `account`'s certificate): what can be known without a signature
/// check.
pub fn worth_verifying(bytes: &[u8], account: &AccountId) -> bool {
    if bytes.len() > MAX_PUBLISHED {
        return false;
    }
    let Ok(wire) = rmp_serde::from_slice::<Wire>(bytes) else {
        return false;
    };
    wire.v == 1
        && wire.kind == KIND
        && AccountId::of_certificate(&CertificateDer::from(wire.account))
            .is_ok_and(|a| a == *account)
}

/// Reads a published list found under `account`'s key, checking that it is that account's
/// and that the account signed it.
pub fn verify_published(bytes: &[u8], account: &AccountId) -> Result<RevocationList, SignalError> {
    if bytes.len() > MAX_PUBLISHED {
        return Err(SignalError::Malformed("revocation list too large"));
    }
    let wire: Wire =
        rmp_serde::from_slice(bytes).map_err(|_| SignalError::Malformed("revocation list"))?;
    if wire.v != 1 || wire.kind != KIND {
        return Err(SignalError::Malformed("revocation list kind"));
    }
    let cert = CertificateDer::from(wire.account);
    let presented = AccountId::of_certificate(&cert)
        .map_err(|_| SignalError::Malformed("account certificate"))?;
    if presented != *account {
        return Err(SignalError::WrongAccount {
            expected: *account,
            presented,
        });
    }
    RevocationList::from_der(&wire.crl, &cert).map_err(|_| SignalError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{Account, Validity, derive_seed};

    const T0: u64 = 1_795_651_200;

    fn account(name: &str) -> Account {
        Account::from_seed(&derive_seed(b"revoked", name), Validity::days_from(T0, 30))
            .expect("account")
    }

    #[test]
    fn a_published_list_reads_back_only_under_its_own_account() {
        let (bob, mallory) = (account("bob"), account("mallory"));
        let b1 = bob
            .add_device(&derive_seed(b"revoked", "b1"), Validity::days_from(T0, 30))
            .expect("b1");
        let b2 = bob
            .add_device(&derive_seed(b"revoked", "b2"), Validity::days_from(T0, 30))
            .expect("b2");
        let list = bob.revoke(&[b2.id()], T0, 3).expect("revoke");
        let value = publish(&b1, &list).expect("published");
        let read = verify_published(&value, &bob.id()).expect("bob's list");
        assert!(read.names(&b2.id()) && !read.names(&b1.id()));
        assert_eq!(read.number(), 3);
        // Under another account's key it is refused, as is anything that is not a list.
        assert!(matches!(
            verify_published(&value, &mallory.id()),
            Err(SignalError::WrongAccount { .. })
        ));
        assert!(verify_published(b"\x93garbage", &bob.id()).is_err());
        let announcement = bob.announce(&b1).expect("announce");
        assert!(verify_published(&announcement, &bob.id()).is_err());
        // A device publishes only its own account's list.
        let m1 = mallory
            .add_device(&derive_seed(b"revoked", "m1"), Validity::days_from(T0, 30))
            .expect("m1");
        assert!(publish(&m1, &list).is_none());
    }
}
