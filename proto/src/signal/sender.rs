//! Who sent a value: the checks TLS would run on the sender's certificates, run before any
//! ICE work is spent on it.
//!
//! TLS refuses a self-signed or expired device anyway, but only after the node has gathered
//! candidates, permitted addresses on its relays and opened connections toward candidates the
//! sender chose. Refusing such a sender here, where the value is read, costs nothing.

use rustls::pki_types::{CertificateDer, UnixTime};

use super::SignalError;
use crate::tls::{AccountId, DeviceId, PeerCheckError, PeerRole, Pin, Revocations, check_peer};

/// Refuses a device certificate that is self-issued (its own issuer, or the account's key
/// posing as a device), and, when `now` is known, one TLS would refuse at `now`: outside its
/// validity, not chaining to its account, revoked, or not allowed as a TLS client or server.
pub(super) fn check_sender(
    device_cert: &CertificateDer<'_>,
    account_cert: &CertificateDer<'_>,
    account: AccountId,
    device: DeviceId,
    revocations: &Revocations,
    now: Option<UnixTime>,
) -> Result<(), SignalError> {
    let self_issued = crate::tls::self_issued(device_cert, account_cert)
        .map_err(|_| SignalError::Malformed("device certificate"))?;
    if self_issued {
        return Err(SignalError::Identity(PeerCheckError::SelfSigned));
    }
    let Some(now) = now else {
        return Ok(());
    };
    let chain = [device_cert.clone(), account_cert.clone()];
    let pin = Pin { account, device };
    // The sender will be the TLS server (a requester) or client (an answerer): it must pass
    // as either.
    for role in [PeerRole::Server, PeerRole::Client] {
        check_peer(&chain, &pin, revocations, now, role).map_err(SignalError::Identity)?;
    }
    Ok(())
}
