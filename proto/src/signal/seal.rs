//! Sealing a DHT value to one device, signed by another.
//!
//! ```text
//! sealed  = msgpack { v: 1, enc: bin(32), ct: bin }          HPKE base mode, RFC 9180:
//!                                                          X25519-HKDF-SHA256, HKDF-SHA256,
//!                                                          ChaCha20-Poly1305; info "ferry signal v1";
//!                                                          aad = recipient device id
//! ct opens to msgpack { account: bin, device: bin, body: bin, sig: bin }
//!   account, device: the sender's certificates (DER)
//!   sig: Ed25519 by the sender's device key over "ferry-seal-v1" ‖ recipient device id ‖ body
//! ```
//!
//! Signing inside the encryption hides who talks to whom from the DHT; putting the recipient
//! in the signed bytes stops a recipient from re-sealing a message it got to someone else.
//! The recipient's key is an X25519 key derived from its device seed and published in its
//! announcement.

use hpke::{Deserializable as _, Kem as _, OpModeR, OpModeS, Serializable as _};
use rustls::pki_types::{CertificateDer, UnixTime};
use serde::{Deserialize, Serialize};

use super::SignalError;
use super::features::Features;
use crate::rng::SeededRng;
use crate::tls::{AccountId, Device, DeviceId, Revocations};

type Kem = hpke::kem::X25519HkdfSha256;
type Aead = hpke::aead::ChaCha20Poly1305;
type Kdf = hpke::kdf::HkdfSha256;

const INFO: &[u8] = b"ferry signal v1";
const SIG_CONTEXT: &[u8] = b"ferry-seal-v1";
/// Largest sealed value opened (a DHT value is small; a flood is refused before any work).
pub const MAX_SEALED: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
struct Outer {
    v: u8,
    #[serde(with = "serde_bytes")]
    enc: Vec<u8>,
    #[serde(with = "serde_bytes")]
    ct: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Inner {
    #[serde(with = "serde_bytes")]
    account: Vec<u8>,
    #[serde(with = "serde_bytes")]
    device: Vec<u8>,
    #[serde(with = "serde_bytes")]
    body: Vec<u8>,
    #[serde(with = "serde_bytes")]
    sig: Vec<u8>,
}

/// Where a sealed value goes: a device and its public sealing key (from its announcement),
/// and what it announced it reads (so a request carries only what it understands).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    /// The device.
    pub device: DeviceId,
    /// Its X25519 public key.
    pub seal_key: [u8; 32],
    /// What it announced ([`Features::default`] if unknown: the first formats only).
    pub features: Features,
}

/// A value opened and verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's account.
    pub account: AccountId,
    /// The sender's device.
    pub device: DeviceId,
    /// The sender's device certificate, for the TLS pin and later checks.
    pub device_cert: CertificateDer<'static>,
    /// What was sealed.
    pub body: Vec<u8>,
}

impl Device {
    /// The device's X25519 sealing key pair, derived from its seed.
    fn seal_keypair(
        &self,
    ) -> (
        <Kem as hpke::Kem>::PrivateKey,
        <Kem as hpke::Kem>::PublicKey,
    ) {
        let ikm = crate::tls::derive_seed(&self.seed(), "seal");
        Kem::derive_keypair(&ikm)
    }

    /// The public key others seal to (published in the device's announcement).
    pub fn seal_public_key(&self) -> [u8; 32] {
        let (_, public) = self.seal_keypair();
        let mut out = [0u8; 32];
        out.copy_from_slice(&public.to_bytes());
        out
    }

    /// This device as a recipient that announced no features (one reading the first
    /// formats only).
    pub fn recipient(&self) -> Recipient {
        Recipient {
            device: self.id(),
            seal_key: self.seal_public_key(),
            features: Features::default(),
        }
    }
}

fn signed_bytes(to: &DeviceId, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIG_CONTEXT.len() + 32 + body.len());
    m.extend_from_slice(SIG_CONTEXT);
    m.extend_from_slice(&to.0);
    m.extend_from_slice(body);
    m
}

/// Seals `body` from `from` to `to`. The ephemeral key comes from `rng`.
pub fn seal(
    from: &Device,
    to: &Recipient,
    body: &[u8],
    rng: &mut SeededRng,
) -> Result<Vec<u8>, SignalError> {
    let key = from
        .signing_key()
        .map_err(|_| SignalError::Malformed("our own signing key"))?;
    let sig = key.sign(&signed_bytes(&to.device, body));
    let chain = from.chain();
    let inner = Inner {
        account: chain[1].to_vec(),
        device: chain[0].to_vec(),
        body: body.to_vec(),
        sig: sig.as_ref().to_vec(),
    };
    let plaintext =
        rmp_serde::to_vec_named(&inner).map_err(|_| SignalError::Malformed("encoding"))?;
    let public = <Kem as hpke::Kem>::PublicKey::from_bytes(&to.seal_key)
        .map_err(|_| SignalError::Malformed("recipient key"))?;
    let (enc, ct) = hpke::single_shot_seal_with_rng::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        &public,
        INFO,
        &plaintext,
        &to.device.0,
        rng,
    )
    .map_err(|_| SignalError::Malformed("sealing"))?;
    rmp_serde::to_vec_named(&Outer {
        v: 1,
        enc: enc.to_bytes().to_vec(),
        ct,
    })
    .map_err(|_| SignalError::Malformed("encoding"))
}

/// Opens a value sealed to `me` and checks who sealed it: the sender's device certificate is
/// signed by its account, is not self-signed, is not revoked, and its key signed the body for
/// `me`.
///
/// Without the time, the certificates' validity is not checked: a node should call
/// [`open_at`] with its clock, so that an expired or not-yet-valid sender is refused before
/// any ICE work rather than by TLS after it.
pub fn open(me: &Device, sealed: &[u8], revocations: &Revocations) -> Result<Opened, SignalError> {
    open_with(me, sealed, revocations, None)
}

/// [`open`], and the sender's certificates pass at `now` every check TLS will run on them
/// (validity, chain, usage, revocation): see [`check_peer`](crate::tls::check_peer).
pub fn open_at(
    me: &Device,
    sealed: &[u8],
    revocations: &Revocations,
    now: UnixTime,
) -> Result<Opened, SignalError> {
    open_with(me, sealed, revocations, Some(now))
}

/// Whether `sealed` has the shape of a sealed value (its size, envelope and version, an
/// encapsulated key of the right form): what can be known without any key agreement or
/// signature check. A node spends its signature budget only on values that pass.
pub fn worth_opening(sealed: &[u8]) -> bool {
    if sealed.len() > MAX_SEALED {
        return false;
    }
    let Ok(outer) = rmp_serde::from_slice::<Outer>(sealed) else {
        return false;
    };
    outer.v == 1 && <Kem as hpke::Kem>::EncappedKey::from_bytes(&outer.enc).is_ok()
}

fn open_with(
    me: &Device,
    sealed: &[u8],
    revocations: &Revocations,
    now: Option<UnixTime>,
) -> Result<Opened, SignalError> {
    if sealed.len() > MAX_SEALED {
        return Err(SignalError::Malformed("sealed value too large"));
    }
    let outer: Outer =
        rmp_serde::from_slice(sealed).map_err(|_| SignalError::Malformed("sealed value"))?;
    if outer.v != 1 {
        return Err(SignalError::Malformed("unknown sealed value version"));
    }
    let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&outer.enc)
        .map_err(|_| SignalError::Malformed("encapsulated key"))?;
    let (secret, _) = me.seal_keypair();
    let plaintext = hpke::single_shot_open::<Aead, Kdf, Kem>(
        &OpModeR::Base,
        &secret,
        &enc,
        INFO,
        &outer.ct,
        &me.id().0,
    )
    .map_err(|_| SignalError::NotForUs)?;
    let inner: Inner =
        rmp_serde::from_slice(&plaintext).map_err(|_| SignalError::Malformed("sealed contents"))?;
    let account_cert = CertificateDer::from(inner.account);
    let device_cert = CertificateDer::from(inner.device);
    let account = AccountId::of_certificate(&account_cert)
        .map_err(|_| SignalError::Malformed("account certificate"))?;
    let device = DeviceId::of_certificate(&device_cert)
        .map_err(|_| SignalError::Malformed("device certificate"))?;
    if !crate::tls::identity_signed_by(&device_cert, &account_cert) {
        return Err(SignalError::NotSignedByAccount);
    }
    if revocations
        .of(&account)
        .is_some_and(|list| list.names(&device))
    {
        return Err(SignalError::Revoked(device));
    }
    let signer = webpki::EndEntityCert::try_from(&device_cert)
        .map_err(|_| SignalError::Malformed("device certificate"))?;
    signer
        .verify_signature(
            webpki::ring::ED25519,
            &signed_bytes(&me.id(), &inner.body),
            &inner.sig,
        )
        .map_err(|_| SignalError::BadSignature)?;
    super::sender::check_sender(
        &device_cert,
        &account_cert,
        account,
        device,
        revocations,
        now,
    )?;
    Ok(Opened {
        account,
        device,
        device_cert,
        body: inner.body,
    })
}
