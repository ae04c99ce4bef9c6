//! Identity files (PEM) and revocation lists (DER CRLs signed by an account).

use ferry_proto::tls::{Account, AccountId, Device, DeviceId, RevocationList};

use super::signal::identities;

/// Any text read as an account or a device identity, or as an id, is refused or gives an
/// identity that writes back to text naming the same identity.
pub fn identity_pem(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(account) = Account::from_pem(&text) {
        let again = Account::from_pem(&account.to_pem()).expect("written, read back");
        assert_eq!(again.id(), account.id());
    }
    if let Ok(device) = Device::from_pem(&text) {
        let again = Device::from_pem(&device.to_pem()).expect("written, read back");
        assert_eq!(
            (again.id(), again.account()),
            (device.id(), device.account())
        );
        assert_eq!(again.seal_public_key(), device.seal_public_key());
    }
    if let Ok(id) = text.parse::<AccountId>() {
        assert_eq!(id.to_string(), text);
    }
    if let Ok(id) = text.parse::<DeviceId>() {
        assert_eq!(id.to_string(), text);
    }
}

/// Any bytes read as Alice's revocation list, bare or as published on the DHT, are refused
/// unless her account key signed them; a list taken answers `names` for any device without
/// panicking.
pub fn revocation_list(data: &[u8]) {
    let ids = identities();
    if let Ok(list) = RevocationList::from_der(data, ids.alice.certificate()) {
        assert_eq!(list.account(), ids.alice.id());
        assert_eq!(list.der(), data);
        let _ = list.names(&ids.a1.id());
        let _ = list.names(&ids.b1.id());
    }
    // The same bytes presented as Bob's: signed by Alice, they are not his.
    if let Ok(list) = RevocationList::from_der(data, ids.bob.certificate()) {
        assert_eq!(list.account(), ids.bob.id());
    }
    // The same bytes as a list published on the DHT under Alice's key.
    if let Ok(list) = ferry_proto::signal::verify_revocations(data, &ids.alice.id()) {
        assert_eq!(list.account(), ids.alice.id());
    }
}
