//! Who is on the other end: the checks both sides run on the chain the peer presents.
//!
//! In order, each with its own failure so a refused handshake says which check failed:
//! 1. the chain is `[device, account]`;
//! 2. the account is the one expected (SHA-1 of its key);
//! 3. the device certificate is not self-signed;
//! 4. the account key signed the device certificate, both are valid at the caller's time, and
//!    the device certificate allows the usage (TLS server or client) — webpki's path check;
//! 5. the account has not revoked the device (its newest revocation list, checked by webpki);
//! 6. the device is the one expected (SHA-256 of its key).
//!
//! The TLS client pins the account and device it meant to reach; the server pins the device
//! that signed the connection request it answered. Both are a [`Pin`].

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use super::id::{AccountId, DeviceId, spki_of};
use super::revocation::Revocations;

/// Signature algorithms accepted in certificates: Ferry's keys are Ed25519 or ECDSA P-256.
pub(crate) static SIGNATURE_ALGORITHMS:
    &[&dyn rustls::pki_types::SignatureVerificationAlgorithm] =
    &[webpki::ring::ED25519, webpki::ring::ECDSA_P256_SHA256];

/// The exact device a side expects at the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// Its account.
    pub account: AccountId,
    /// The device.
    pub device: DeviceId,
}

/// Who the peer proved to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The peer's account.
    pub account: AccountId,
    /// The peer's device.
    pub device: DeviceId,
}

/// Which check refused the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerCheckError {
    /// The peer did not present its account certificate after its device certificate.
    #[error("the peer presented no account certificate")]
    MissingAccountCertificate,
    /// A certificate could not be parsed.
    #[error("the peer's certificate cannot be parsed: {0}")]
    Malformed(String),
    /// The account is not the one expected (for example a device of another account
    /// presenting itself as the expected one).
    #[error("wrong account: expected {expected}, the peer is {presented}")]
    AccountMismatch {
        /// Who we meant to reach.
        expected: AccountId,
        /// Who answered.
        presented: AccountId,
    },
    /// The device certificate is self-signed, not issued by an account.
    #[error("the device certificate is self-signed")]
    SelfSigned,
    /// The device certificate is past its validity.
    #[error("the peer's certificate has expired")]
    Expired,
    /// The device certificate is not valid yet.
    #[error("the peer's certificate is not valid yet")]
    NotYetValid,
    /// The account has revoked the device.
    #[error("the account has revoked device {0}")]
    Revoked(DeviceId),
    /// The account key did not sign the device certificate, or the usage is not allowed.
    #[error("the device certificate does not chain to its account: {0}")]
    BadChain(String),
    /// The device is not the one expected.
    #[error("wrong device: expected {expected}, the peer is {presented}")]
    DeviceMismatch {
        /// Who we meant to reach.
        expected: DeviceId,
        /// Who answered.
        presented: DeviceId,
    },
}

/// Which TLS side the peer is: its certificate must allow that usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The peer is the TLS server (we are the client).
    Server,
    /// The peer is the TLS client (we are the server).
    Client,
}

/// Runs every check on a presented chain at time `now`.
pub fn check_peer(
    chain: &[CertificateDer<'_>],
    pin: &Pin,
    revocations: &Revocations,
    now: UnixTime,
    peer_role: PeerRole,
) -> Result<PeerIdentity, PeerCheckError> {
    let (device_cert, account_cert) = match chain {
        [device, account, ..] => (device, account),
        _ => return Err(PeerCheckError::MissingAccountCertificate),
    };
    let malformed = |e: webpki::Error| PeerCheckError::Malformed(e.to_string());
    let account = AccountId::of_certificate(account_cert).map_err(malformed)?;
    if account != pin.account {
        return Err(PeerCheckError::AccountMismatch {
            expected: pin.account,
            presented: account,
        });
    }
    let device = DeviceId::of_certificate(device_cert).map_err(malformed)?;
    let parsed = webpki::EndEntityCert::try_from(device_cert).map_err(malformed)?;
    if self_issued(device_cert, account_cert).map_err(malformed)? {
        return Err(PeerCheckError::SelfSigned);
    }
    let anchor = webpki::anchor_from_trusted_cert(account_cert).map_err(malformed)?;
    let crls: Vec<webpki::CertRevocationList<'_>> = revocations
        .of(&account)
        .and_then(|list| webpki::BorrowedCertRevocationList::from_der(list.der()).ok())
        .map(webpki::CertRevocationList::from)
        .into_iter()
        .collect();
    let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
        .ok()
        .map(|b| {
            b.with_depth(webpki::RevocationCheckDepth::EndEntity)
                .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                .with_expiration_policy(webpki::ExpirationPolicy::Ignore)
                .build()
        });
    let usage = match peer_role {
        PeerRole::Server => webpki::KeyUsage::server_auth(),
        PeerRole::Client => webpki::KeyUsage::client_auth(),
    };
    parsed
        .verify_for_usage(
            SIGNATURE_ALGORITHMS,
            &[anchor],
            &[],
            now,
            usage,
            revocation,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } => PeerCheckError::Expired,
            webpki::Error::CertNotValidYet { .. } => PeerCheckError::NotYetValid,
            webpki::Error::CertRevoked => PeerCheckError::Revoked(device),
            other => PeerCheckError::BadChain(format!("{other:?}")),
        })?;
    if device != pin.device {
        return Err(PeerCheckError::DeviceMismatch {
            expected: pin.device,
            presented: device,
        });
    }
    Ok(PeerIdentity { account, device })
}

/// Whether `device_cert` stands for itself rather than for a device its account issued: its
/// issuer is its own subject, or its key is the account's (an account certificate presented
/// as a device).
pub(crate) fn self_issued(
    device_cert: &CertificateDer<'_>,
    account_cert: &CertificateDer<'_>,
) -> Result<bool, webpki::Error> {
    let parsed = webpki::EndEntityCert::try_from(device_cert)?;
    Ok(parsed.issuer() == parsed.subject() || spki_of(account_cert)? == spki_of(device_cert)?)
}

/// Recovers our own check's failure from a rustls error, if that is what it was.
pub fn peer_check_failure(error: &rustls::Error) -> Option<PeerCheckError> {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
            other.0.downcast_ref::<PeerCheckError>().cloned()
        }
        _ => None,
    }
}

fn to_rustls(e: PeerCheckError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// The rustls verifier on both sides: our checks, and TLS 1.3 handshake signatures.
#[derive(Debug)]
pub(crate) struct PinnedVerifier {
    pin: Pin,
    revocations: Revocations,
    algorithms: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    pub(crate) fn new(
        pin: Pin,
        revocations: Revocations,
        algorithms: WebPkiSupportedAlgorithms,
    ) -> PinnedVerifier {
        PinnedVerifier {
            pin,
            revocations,
            algorithms,
        }
    }

    fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: PeerRole,
    ) -> Result<(), rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        check_peer(&chain, &self.pin, &self.revocations, now, role)
            .map(|_| ())
            .map_err(to_rustls)
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name is a fixed string; identity is the pin.
        self.check(end_entity, intermediates, now, PeerRole::Server)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for PinnedVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity, intermediates, now, PeerRole::Client)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
