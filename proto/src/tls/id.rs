//! Account and device ids, as Jami computes them.
//!
//! - account id: SHA-1 of the account key's DER SubjectPublicKeyInfo, 40 lowercase hex;
//! - device id: SHA-256 of the device key's DER SubjectPublicKeyInfo, 64 lowercase hex.

use std::fmt;
use std::str::FromStr;

use rustls::pki_types::CertificateDer;
use sha1::Digest as _;

/// Names an account: what a person gives their contacts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountId(pub [u8; 20]);

/// Names one device of an account.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub [u8; 32]);

/// A string that is not a well-formed id (of the kind the first field names, for `Debug`);
/// its message is only what was expected, since the caller says which id it wanted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {1} lowercase hex characters")]
pub struct BadId(&'static str, usize);

impl AccountId {
    /// The account id of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki: &[u8]) -> AccountId {
        AccountId(sha1::Sha1::digest(spki).into())
    }

    /// The account id of the key in a certificate.
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Result<AccountId, webpki::Error> {
        Ok(AccountId::of_spki(&spki_of(cert)?))
    }
}

impl DeviceId {
    /// The device id of a DER SubjectPublicKeyInfo.
    pub fn of_spki(spki: &[u8]) -> DeviceId {
        DeviceId(sha2::Sha256::digest(spki).into())
    }

    /// The device id of the key in a certificate.
    pub fn of_certificate(cert: &CertificateDer<'_>) -> Result<DeviceId, webpki::Error> {
        Ok(DeviceId::of_spki(&spki_of(cert)?))
    }
}

/// The DER SubjectPublicKeyInfo (outer SEQUENCE included) of a certificate.
pub(crate) fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, webpki::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)?;
    Ok(parsed.subject_public_key_info().as_ref().to_vec())
}

macro_rules! hex_id {
    ($ty:ident, $what:literal, $len:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($ty), &hex::encode(self.0)[..8])
            }
        }

        impl FromStr for $ty {
            type Err = BadId;

            fn from_str(s: &str) -> Result<Self, BadId> {
                let mut out = [0u8; $len];
                if s.len() != 2 * $len || s.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(BadId($what, 2 * $len));
                }
                hex::decode_to_slice(s, &mut out).map_err(|_| BadId($what, 2 * $len))?;
                Ok($ty(out))
            }
        }
    };
}

hex_id!(AccountId, "account id", 20);
hex_id!(DeviceId, "device id", 32);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_print_and_parse_as_lowercase_hex() {
        let a = AccountId::of_spki(b"spki");
        let s = a.to_string();
        assert_eq!(s.len(), 40);
        assert_eq!(s.parse::<AccountId>(), Ok(a));
        assert!(s.to_uppercase().parse::<AccountId>().is_err());
        let d = DeviceId::of_spki(b"spki");
        assert_eq!(d.to_string().len(), 64);
        assert_eq!(d.to_string().parse::<DeviceId>(), Ok(d));
        assert!("xyz".parse::<DeviceId>().is_err());
        assert!(d.to_string().parse::<AccountId>().is_err());
    }
}
