//! Accounts and devices: keys, certificates, and their PEM form.
//!
//! An account has an Ed25519 key and a self-signed CA certificate. Each device of the
//! account has its own Ed25519 key and a certificate signed by the account key, good for both
//! TLS server and client authentication. The device presents the chain `[device, account]`.
//!
//! Keys come from 32-byte seeds: a runtime draws the seed from the operating system, the
//! simulator derives it from the run's seed with [`derive_seed`], so the same seed gives the
//! same keys, ids, certificates (Ed25519 signatures are deterministic) and orderings.
//! Nothing here reads a clock: validity periods are given in Unix seconds.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519, PublicKeyData as _, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha3::Digest as _;

use super::id::{AccountId, DeviceId, spki_of};

/// When a certificate is valid, in Unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First valid second.
    pub not_before: u64,
    /// Last valid second.
    pub not_after: u64,
}

impl Validity {
    /// From `not_before`, for `days` days.
    pub fn days_from(not_before: u64, days: u64) -> Validity {
        Validity {
            not_before,
            not_after: not_before + days * 86_400,
        }
    }
}

/// Why an identity could not be made, read or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The text is not PEM, or a section is damaged.
    #[error("not a PEM identity: {0}")]
    Pem(String),
    /// A certificate the identity needs is missing.
    #[error("the {0} certificate is missing")]
    MissingCertificate(&'static str),
    /// The private key is missing.
    #[error("the private key is missing")]
    MissingKey,
    /// The private key cannot be used (not PKCS#8 Ed25519).
    #[error("the private key cannot be used: {0}")]
    BadKey(String),
    /// A certificate cannot be parsed.
    #[error("a certificate cannot be parsed: {0}")]
    BadCertificate(String),
    /// The private key is not the one the certificate names.
    #[error("the private key does not match the certificate")]
    KeyMismatch,
    /// The device certificate is not signed by the account certificate beside it.
    #[error("the device certificate is not signed by its account")]
    NotSignedByAccount,
    /// A validity period that ends before it starts or does not fit a date.
    #[error("invalid validity period")]
    BadValidity,
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Generate(String),
}

/// An account: its key and its self-signed CA certificate.
pub struct Account {
    key: KeyPair,
    cert: CertificateDer<'static>,
    id: AccountId,
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// One device of an account: its key, its certificate, and the account certificate that
/// signed it.
pub struct Device {
    key: PrivatePkcs8KeyDer<'static>,
    cert: CertificateDer<'static>,
    account_cert: CertificateDer<'static>,
    id: DeviceId,
    account: AccountId,
}

impl Clone for Device {
    fn clone(&self) -> Device {
        Device {
            key: self.key.clone_key(),
            cert: self.cert.clone(),
            account_cert: self.account_cert.clone(),
            id: self.id,
            account: self.account,
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.id)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

/// Derives a 32-byte key seed from a master seed and a label (SHA3-512, first half), so one
/// run seed gives every identity of a simulation.
pub fn derive_seed(master: &[u8], label: &str) -> [u8; 32] {
    let mut h = sha3::Sha3_512::new();
    h.update(b"ferry identity seed\0");
    h.update(master);
    h.update([0]);
    h.update(label.as_bytes());
    let full = h.finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(&full[..32]);
    out
}

/// The PKCS#8 v1 encoding of an Ed25519 private key (RFC 8410): a fixed prefix, then the seed.
fn ed25519_pkcs8(seed: &[u8; 32]) -> PrivatePkcs8KeyDer<'static> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    PrivatePkcs8KeyDer::from(der)
}

/// The 32-byte seed of an Ed25519 PKCS#8 key, in either form a tool writes: v1 (RFC 8410,
/// what Ferry writes) or v2 (RFC 5958: the public key follows the seed, as ring writes it).
/// Both put the seed after the same 16 bytes but for the length and the version.
fn ed25519_seed(der: &[u8]) -> Option<[u8; 32]> {
    const V1: [u8; 5] = [0x30, 0x2e, 0x02, 0x01, 0x00];
    const V2: [u8; 5] = [0x30, 0x53, 0x02, 0x01, 0x01];
    const ALGORITHM_AND_KEY: [u8; 11] = [
        0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    let form_ok = match der.len() {
        48 => der[..5] == V1,
        85 => der[..5] == V2 && der[48..53] == [0xa1, 0x23, 0x03, 0x21, 0x00],
        _ => false,
    };
    if !form_ok || der[5..16] != ALGORITHM_AND_KEY {
        return None;
    }
    der[16..48].try_into().ok()
}

/// A key read from a file, rewritten in Ferry's own v1 form, so that [`Device::seed`] (the last
/// 32 bytes) is the seed whatever form the file had: read naively, a v2 key's last 32 bytes are
/// its public key, and every key derived from them would be public too.
fn normalized_key(
    der: &PrivatePkcs8KeyDer<'_>,
) -> Result<PrivatePkcs8KeyDer<'static>, IdentityError> {
    let seed = ed25519_seed(der.secret_pkcs8_der())
        .ok_or_else(|| IdentityError::BadKey("not an Ed25519 PKCS#8 key".to_owned()))?;
    Ok(ed25519_pkcs8(&seed))
}

fn key_from_pkcs8(der: &PrivatePkcs8KeyDer<'_>) -> Result<KeyPair, IdentityError> {
    KeyPair::from_pkcs8_der_and_sign_algo(der, &PKCS_ED25519)
        .map_err(|e| IdentityError::BadKey(e.to_string()))
}

fn time(unix: u64) -> Result<time::OffsetDateTime, IdentityError> {
    let secs = i64::try_from(unix).map_err(|_| IdentityError::BadValidity)?;
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| IdentityError::BadValidity)
}

/// A positive 16-byte serial number derived from an id (top bit cleared: DER INTEGERs are signed).
fn serial_from(id: &[u8]) -> SerialNumber {
    let mut s = [0u8; 16];
    s.copy_from_slice(&id[..16]);
    s[0] &= 0x7f;
    s[0] |= 0x01; // never a leading zero byte, so the encoding is the 16 bytes as they are
    SerialNumber::from_slice(&s)
}

/// The serial number a device's certificate carries (what revocation lists name).
pub(crate) fn device_serial(device: &DeviceId) -> SerialNumber {
    serial_from(&device.0)
}

/// The account certificate's parameters: also what makes the account an rcgen `Issuer`, so
/// they must be the same every time.
fn account_params(id: &AccountId, validity: Validity) -> Result<CertificateParams, IdentityError> {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::OrganizationName, "Ferry account");
    p.distinguished_name
        .push(DnType::CommonName, id.to_string());
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(serial_from(&id.0));
    p.not_before = time(validity.not_before)?;
    p.not_after = time(validity.not_after)?;
    Ok(p)
}

impl Account {
    /// Creates an account from a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32], validity: Validity) -> Result<Account, IdentityError> {
        if validity.not_after <= validity.not_before {
            return Err(IdentityError::BadValidity);
        }
        let key = key_from_pkcs8(&ed25519_pkcs8(seed))?;
        let id = AccountId::of_spki(&key.subject_public_key_info());
        let cert = account_params(&id, validity)?
            .self_signed(&key)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(Account {
            key,
            cert: cert.der().clone(),
            id,
        })
    }

    /// The account id.
    pub fn id(&self) -> AccountId {
        self.id
    }

    /// The account certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The account as an rcgen issuer: the same name, key usages and key as its certificate.
    pub(crate) fn issuer(&self) -> Result<Issuer<'_, &KeyPair>, IdentityError> {
        // The validity does not reach signed certificates; any valid one will do.
        let params = account_params(
            &self.id,
            Validity {
                not_before: 0,
                not_after: 1,
            },
        )?;
        Ok(Issuer::new(params, &self.key))
    }

    /// Adds a device: a new key from `seed`, and a certificate for it signed by the account.
    pub fn add_device(&self, seed: &[u8; 32], validity: Validity) -> Result<Device, IdentityError> {
        if validity.not_after <= validity.not_before {
            return Err(IdentityError::BadValidity);
        }
        let pkcs8 = ed25519_pkcs8(seed);
        let key = key_from_pkcs8(&pkcs8)?;
        let id = DeviceId::of_spki(&key.subject_public_key_info());
        let mut p = CertificateParams::default();
        p.distinguished_name
            .push(DnType::OrganizationName, "Ferry device");
        p.distinguished_name
            .push(DnType::CommonName, id.to_string());
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.serial_number = Some(device_serial(&id));
        p.not_before = time(validity.not_before)?;
        p.not_after = time(validity.not_after)?;
        p.use_authority_key_identifier_extension = true;
        let cert = p
            .signed_by(&key, &self.issuer()?)
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(Device {
            key: pkcs8,
            cert: cert.der().clone(),
            account_cert: self.cert.clone(),
            id,
            account: self.id,
        })
    }

    /// The account's signing key.
    pub(crate) fn signing_key(&self) -> Result<ring::signature::Ed25519KeyPair, IdentityError> {
        ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(self.key.serialized_der())
            .map_err(|e| IdentityError::BadKey(e.to_string()))
    }

    /// The account's certificate and private key, PEM-encoded.
    pub fn to_pem(&self) -> String {
        let mut out = pem_section("CERTIFICATE", &self.cert);
        out.push_str(&pem_section("PRIVATE KEY", self.key.serialized_der()));
        out
    }

    /// Reads what [`to_pem`](Self::to_pem) wrote, checking that the key is the certificate's.
    pub fn from_pem(text: &str) -> Result<Account, IdentityError> {
        let (certs, key) = read_pem(text)?;
        let cert = certs
            .into_iter()
            .next()
            .ok_or(IdentityError::MissingCertificate("account"))?;
        let key = key_from_pkcs8(&normalized_key(&key)?)?;
        let spki = spki_of(&cert).map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        if spki != key.subject_public_key_info() {
            return Err(IdentityError::KeyMismatch);
        }
        Ok(Account {
            key,
            cert,
            id: AccountId::of_spki(&spki),
        })
    }
}

impl Device {
    /// The device id.
    pub fn id(&self) -> DeviceId {
        self.id
    }

    /// The id of the account the device belongs to.
    pub fn account(&self) -> AccountId {
        self.account
    }

    /// The device certificate.
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }

    /// The chain the device presents: its certificate, then its account's.
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.cert.clone(), self.account_cert.clone()]
    }

    /// The device's Ed25519 seed (its private key), from which its other keys derive.
    pub(crate) fn seed(&self) -> [u8; 32] {
        let der = self.key.secret_pkcs8_der();
        let mut seed = [0u8; 32];
        // Our PKCS#8 v1 encoding ends with the 32-byte seed (see `ed25519_pkcs8`).
        seed.copy_from_slice(&der[der.len() - 32..]);
        seed
    }

    /// The device's signing key.
    pub(crate) fn signing_key(&self) -> Result<ring::signature::Ed25519KeyPair, IdentityError> {
        ring::signature::Ed25519KeyPair::from_pkcs8_maybe_unchecked(self.key.secret_pkcs8_der())
            .map_err(|e| IdentityError::BadKey(e.to_string()))
    }

    /// The device's private key.
    pub(crate) fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone_key())
    }

    /// The device's chain and private key, PEM-encoded.
    pub fn to_pem(&self) -> String {
        let mut out = pem_section("CERTIFICATE", &self.cert);
        out.push_str(&pem_section("CERTIFICATE", &self.account_cert));
        out.push_str(&pem_section("PRIVATE KEY", self.key.secret_pkcs8_der()));
        out
    }

    /// Reads what [`to_pem`](Self::to_pem) wrote, checking that the key is the device
    /// certificate's and that the account certificate signed it.
    pub fn from_pem(text: &str) -> Result<Device, IdentityError> {
        let (certs, key) = read_pem(text)?;
        let mut certs = certs.into_iter();
        let cert = certs
            .next()
            .ok_or(IdentityError::MissingCertificate("device"))?;
        let account_cert = certs
            .next()
            .ok_or(IdentityError::MissingCertificate("account"))?;
        let key = normalized_key(&key)?;
        let pair = key_from_pkcs8(&key)?;
        let spki = spki_of(&cert).map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        if spki != pair.subject_public_key_info() {
            return Err(IdentityError::KeyMismatch);
        }
        let account = AccountId::of_certificate(&account_cert)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        if !signed_by(&cert, &account_cert) {
            return Err(IdentityError::NotSignedByAccount);
        }
        Ok(Device {
            key,
            cert,
            account_cert,
            id: DeviceId::of_spki(&spki),
            account,
        })
    }
}

/// Whether `issuer`'s key made the signature on `cert` (the signature only: validity and
/// revocation are the verifier's job, at the time the caller gives it).
pub(crate) fn signed_by(cert: &CertificateDer<'_>, issuer: &CertificateDer<'_>) -> bool {
    let Some((tbs, signature)) = super::der::split_certificate(cert) else {
        return false;
    };
    let Ok(issuer) = webpki::EndEntityCert::try_from(issuer) else {
        return false;
    };
    issuer
        .verify_signature(webpki::ring::ED25519, tbs, signature)
        .is_ok()
}

fn pem_section(tag: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(tag, der.to_vec()))
}

/// Certificates in order, and the one PKCS#8 private key.
fn read_pem(
    text: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivatePkcs8KeyDer<'static>), IdentityError> {
    let sections = pem::parse_many(text).map_err(|e| IdentityError::Pem(e.to_string()))?;
    if sections.is_empty() {
        return Err(IdentityError::Pem("no PEM section".to_owned()));
    }
    let mut certs = Vec::new();
    let mut key = None;
    for section in sections {
        match section.tag() {
            "CERTIFICATE" => certs.push(CertificateDer::from(section.into_contents())),
            "PRIVATE KEY" => key = Some(PrivatePkcs8KeyDer::from(section.into_contents())),
            _ => {}
        }
    }
    Ok((certs, key.ok_or(IdentityError::MissingKey)?))
}
