//! Device announcements: how a sender learns a contact's devices.
//!
//! ```text
//! msgpack { v: 1, account: bin, device: bin, seal: bin(32), sig: bin(64),
//!           features?: [str], fsig?: bin(64) }
//!   account, device: certificates (DER); seal: the device's X25519 sealing key
//!   sig: Ed25519 by the ACCOUNT key over "ferry-announce-v1" ‖ device ‖ seal
//!   features, fsig: what the device reads beyond the first formats, signed by the DEVICE
//!   key over "ferry-features-v1" ‖ device ‖ (name ‖ 0x00)* (see `features.rs`)
//! ```
//! Put under [`devices_key`](super::devices_key) of the account. A reader checks that the
//! account certificate is the account it looked up, that it signed the device certificate
//! and the announcement, and that the device is not revoked.

use rustls::pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};

use super::SignalError;
use super::features::{self, Features};
use super::seal::Recipient;
use crate::tls::{Account, AccountId, Device, DeviceId, IdentityError, Revocations};

const CONTEXT: &[u8] = b"ferry-announce-v1";
/// Largest announcement read.
const MAX_ANNOUNCEMENT: usize = 8 * 1024;

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    #[serde(with = "serde_bytes")]
    account: Vec<u8>,
    #[serde(with = "serde_bytes")]
    device: Vec<u8>,
    #[serde(with = "serde_bytes")]
    seal: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sig: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    features: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "serde_bytes")]
    fsig: Option<Vec<u8>>,
}

/// A verified announcement: one device of an account, and how to seal to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The account.
    pub account: AccountId,
    /// The device.
    pub device: DeviceId,
    /// The device certificate.
    pub device_cert: CertificateDer<'static>,
    /// The device's sealing key.
    pub seal_key: [u8; 32],
    /// What the device announced it reads (none, from a device that announced no list).
    pub features: Features,
}

impl Announcement {
    /// Where to seal values for this device.
    pub fn recipient(&self) -> Recipient {
        Recipient {
            device: self.device,
            seal_key: self.seal_key,
            features: self.features,
        }
    }

    /// Reads and checks an announcement found under `account`'s key: the account signed the
    /// device certificate and the announcement, the device is not self-signed and not revoked.
    ///
    /// Without the time, the certificates' validity is not checked: a node should call
    /// [`verify_at`](Self::verify_at) with its clock.
    pub fn verify(
        bytes: &[u8],
        account: &AccountId,
        revocations: &Revocations,
    ) -> Result<Announcement, SignalError> {
        Announcement::verify_with(bytes, account, revocations, None)
    }

    /// [`verify`](Self::verify), and the device's certificates pass at `now` every check TLS
    /// will run on them (validity, chain, usage, revocation).
    pub fn verify_at(
        bytes: &[u8],
        account: &AccountId,
        revocations: &Revocations,
        now: UnixTime,
    ) -> Result<Announcement, SignalError> {
        Announcement::verify_with(bytes, account, revocations, Some(now))
    }

    /// Whether `bytes` has the shape of an announcement of `account` (its size, encoding,
    /// version, a sealing key, and `account`'s certificate): what can be known without a
    /// signature check. A node spends its signature budget only on values that pass this or
    /// [`revocations_worth_verifying`](super::revocations_worth_verifying).
    pub fn worth_verifying(bytes: &[u8], account: &AccountId) -> bool {
        if bytes.len() > MAX_ANNOUNCEMENT {
            return false;
        }
        let Ok(wire) = rmp_serde::from_slice::<Wire>(bytes) else {
            return false;
        };
        wire.v == 1
            && wire.seal.len() == 32
            && AccountId::of_certificate(&CertificateDer::from(wire.account))
                .is_ok_and(|a| a == *account)
    }

    fn verify_with(
        bytes: &[u8],
        account: &AccountId,
        revocations: &Revocations,
        now: Option<UnixTime>,
    ) -> Result<Announcement, SignalError> {
        if bytes.len() > MAX_ANNOUNCEMENT {
            return Err(SignalError::Malformed("announcement too large"));
        }
        let wire: Wire =
            rmp_serde::from_slice(bytes).map_err(|_| SignalError::Malformed("announcement"))?;
        if wire.v != 1 {
            return Err(SignalError::Malformed("unknown announcement version"));
        }
        let seal_key: [u8; 32] = wire
            .seal
            .as_slice()
            .try_into()
            .map_err(|_| SignalError::Malformed("sealing key"))?;
        let account_cert = CertificateDer::from(wire.account);
        let device_cert = CertificateDer::from(wire.device);
        let presented = AccountId::of_certificate(&account_cert)
            .map_err(|_| SignalError::Malformed("account certificate"))?;
        if presented != *account {
            return Err(SignalError::WrongAccount {
                expected: *account,
                presented,
            });
        }
        if !crate::tls::identity_signed_by(&device_cert, &account_cert) {
            return Err(SignalError::NotSignedByAccount);
        }
        let signer = webpki::EndEntityCert::try_from(&account_cert)
            .map_err(|_| SignalError::Malformed("account certificate"))?;
        signer
            .verify_signature(
                webpki::ring::ED25519,
                &signed(&device_cert, &seal_key),
                &wire.sig,
            )
            .map_err(|_| SignalError::BadSignature)?;
        let device = DeviceId::of_certificate(&device_cert)
            .map_err(|_| SignalError::Malformed("device certificate"))?;
        let features = match (&wire.features, &wire.fsig) {
            (None, None) => Features::default(),
            (Some(names), Some(sig)) => features::verify(&device_cert, names, sig)?,
            _ => return Err(SignalError::Malformed("feature list without its signature")),
        };
        if revocations
            .of(account)
            .is_some_and(|list| list.names(&device))
        {
            return Err(SignalError::Revoked(device));
        }
        super::sender::check_sender(
            &device_cert,
            &account_cert,
            *account,
            device,
            revocations,
            now,
        )?;
        Ok(Announcement {
            account: *account,
            device,
            device_cert,
            seal_key,
            features,
        })
    }

    /// `announcement` (as its account signed it for `device`) with the list of what this
    /// version reads ([`Features::ours`]) added and signed by `device`: what a node puts on
    /// the DHT. The account's part is kept byte for byte, so a reader that does not know the
    /// list reads the announcement as before.
    pub fn with_our_features(announcement: &[u8], device: &Device) -> Result<Vec<u8>, SignalError> {
        Announcement::with_features(announcement, device, Features::ours())
    }

    /// The same with the list `features` (a node configured to announce less, as an older
    /// version would).
    pub fn with_features(
        announcement: &[u8],
        device: &Device,
        features: Features,
    ) -> Result<Vec<u8>, SignalError> {
        let mut wire: Wire = rmp_serde::from_slice(announcement)
            .map_err(|_| SignalError::Malformed("announcement"))?;
        let names = features.names();
        wire.fsig = Some(features::sign(device, &names)?);
        wire.features = Some(names);
        rmp_serde::to_vec_named(&wire).map_err(|_| SignalError::Malformed("encoding"))
    }
}

fn signed(device_cert: &[u8], seal: &[u8; 32]) -> Vec<u8> {
    [CONTEXT, device_cert, seal].concat()
}

impl Account {
    /// The announcement of one of the account's devices, signed by the account key; the
    /// device publishes it.
    pub fn announce(&self, device: &Device) -> Result<Vec<u8>, IdentityError> {
        let key = self.signing_key()?;
        let seal = device.seal_public_key();
        let sig = key.sign(&signed(device.certificate(), &seal));
        let wire = Wire {
            v: 1,
            account: self.certificate().to_vec(),
            device: device.certificate().to_vec(),
            seal: seal.to_vec(),
            sig: sig.as_ref().to_vec(),
            features: None,
            fsig: None,
        };
        rmp_serde::to_vec_named(&wire).map_err(|e| IdentityError::Generate(e.to_string()))
    }
}
