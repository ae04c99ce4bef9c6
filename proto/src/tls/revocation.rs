//! Revoking devices: an X.509 CRL signed by the account key, which peers honour.
//!
//! A device certificate's serial number is derived from its device id, so a revocation list
//! names devices by id. Peers keep the newest list of each account ([`Revocations`]) and the
//! verifier refuses any device it names. A list only counts if the account key signed it:
//! webpki checks that signature when it checks the chain.

use std::collections::BTreeMap;

use rcgen::{CertificateRevocationListParams, KeyIdMethod, RevokedCertParams, SerialNumber};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer};

use super::id::{AccountId, DeviceId};
use super::identity::{Account, IdentityError, device_serial};

/// A signed list of an account's revoked devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationList {
    der: CertificateRevocationListDer<'static>,
    account: AccountId,
    number: u64,
}

/// Why a revocation list was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The bytes are not a CRL.
    #[error("not a revocation list: {0}")]
    Malformed(String),
    /// The list was not signed by the account's key.
    #[error("the revocation list is not signed by account {0}")]
    NotSignedByAccount(AccountId),
}

impl Account {
    /// Signs a revocation list naming `devices`. `number` must grow with each new list of the
    /// account: peers keep the list with the highest number.
    pub fn revoke(
        &self,
        devices: &[DeviceId],
        issued_at: u64,
        number: u64,
    ) -> Result<RevocationList, IdentityError> {
        let at = time::OffsetDateTime::from_unix_timestamp(issued_at as i64)
            .map_err(|_| IdentityError::BadValidity)?;
        let params = CertificateRevocationListParams {
            this_update: at,
            // Revocation does not expire; the verifier ignores nextUpdate.
            next_update: at + time::Duration::days(3650),
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: devices
                .iter()
                .map(|d| RevokedCertParams {
                    serial_number: device_serial(d),
                    revocation_time: at,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer()?)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(RevocationList {
            der: crl.der().clone(),
            account: self.id(),
            number,
        })
    }
}

impl RevocationList {
    /// Reads a list received from elsewhere (the DHT), checking that `account_cert` signed it.
    pub fn from_der(
        der: &[u8],
        account_cert: &CertificateDer<'_>,
    ) -> Result<RevocationList, RevocationError> {
        let account = AccountId::of_certificate(account_cert)
            .map_err(|e| RevocationError::Malformed(e.to_string()))?;
        // Parse it as webpki will when it checks a chain: a list taken is a list usable.
        webpki::BorrowedCertRevocationList::from_der(der)
            .map_err(|e| RevocationError::Malformed(e.to_string()))?;
        let issuer = webpki::EndEntityCert::try_from(account_cert)
            .map_err(|e| RevocationError::Malformed(e.to_string()))?;
        let Some((tbs, signature)) = super::der::split_certificate(der) else {
            return Err(RevocationError::Malformed(
                "not a signed structure".to_owned(),
            ));
        };
        // A CRL is signed like a certificate: SEQUENCE { tbsCertList, algorithm, signature }.
        issuer
            .verify_signature(webpki::ring::ED25519, tbs, signature)
            .map_err(|_| RevocationError::NotSignedByAccount(account))?;
        let number = super::der::crl_number(der)
            .ok_or_else(|| RevocationError::Malformed("no CRL number".to_owned()))?;
        Ok(RevocationList {
            der: CertificateRevocationListDer::from(der.to_vec()),
            account,
            number,
        })
    }

    /// The DER bytes, to publish.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The account that signed it.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// Its sequence number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Whether it names `device`.
    pub fn names(&self, device: &DeviceId) -> bool {
        let Ok(crl) = webpki::BorrowedCertRevocationList::from_der(&self.der) else {
            return false;
        };
        let crl = webpki::CertRevocationList::from(crl);
        matches!(
            crl.find_serial(&device_serial(device).to_bytes()),
            Ok(Some(_))
        )
    }
}

/// The newest revocation list of each account a device knows of.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    lists: BTreeMap<AccountId, RevocationList>,
}

impl Revocations {
    /// None known.
    pub fn new() -> Revocations {
        Revocations::default()
    }

    /// Keeps `list` unless a list with a higher number is already known. Returns whether it
    /// was kept.
    pub fn add(&mut self, list: RevocationList) -> bool {
        match self.lists.get(&list.account) {
            Some(known) if known.number >= list.number => false,
            _ => {
                self.lists.insert(list.account, list);
                true
            }
        }
    }

    /// The list of `account`, if any.
    pub fn of(&self, account: &AccountId) -> Option<&RevocationList> {
        self.lists.get(account)
    }
}
