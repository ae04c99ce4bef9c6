//! What a device announces it reads beyond the first signalling formats, and the request
//! timestamp the first such feature adds (PROTOCOL.md §9.1).
//!
//! The list rides in the device's announcement, after the account's signature, signed by the
//! device itself: every running Ferry node can add it to the announcement its account signed
//! once (a device holds no account key). A reader that does not know the keys ignores them, as
//! msgpack maps allow. A requester puts a new element into a request only for a device that
//! announced it, so a device that announced nothing gets the bytes it always got.

use std::time::Duration;

use rustls::pki_types::CertificateDer;

use super::SignalError;
use crate::tls::Device;
use crate::transfer::manifest::MANIFEST;

/// The feature name of the request timestamp.
pub const REQUEST_TIME: &str = "request-time";
/// The feature name of early channel data: the device keeps the bytes that follow a channel
/// request until it answers it (a bounded amount: [`EARLY_PER_CHANNEL`]), so a sender may put
/// a transfer's header right behind the request instead of after the ACCEPT.
///
/// [`EARLY_PER_CHANNEL`]: crate::channel::EARLY_PER_CHANNEL
pub const EARLY_CHANNEL_DATA: &str = "early-channel-data";
/// How far a request's timestamp may be from the receiver's clock, either way: the clock skew
/// tolerated between two devices. A request outside it is refused, so one replayed after the
/// replay memory ([`REMEMBERED`](super::REMEMBERED)) forgot it is refused all the same.
pub const REQUEST_WINDOW: Duration = Duration::from_secs(600);

const CONTEXT: &[u8] = b"ferry-features-v1";
/// Most feature names read from one announcement, and the longest name.
const MAX_FEATURES: usize = 16;
const MAX_NAME: usize = 64;

/// The features a device announced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// It reads the `time` of a request and refuses one outside [`REQUEST_WINDOW`]
    /// ([`REQUEST_TIME`]).
    pub request_time: bool,
    /// It reads a manifest on a `file-manifest://` channel and takes the files named in it
    /// without asking again (`PROTOCOL.md` §14): several files and folders may go to it as
    /// one offer ([`MANIFEST`](crate::transfer::manifest::MANIFEST)).
    pub manifest: bool,
    /// It keeps a channel's bytes that come before its answer ([`EARLY_CHANNEL_DATA`]).
    pub early_channel_data: bool,
}

impl Features {
    /// What this version of Ferry announces.
    pub fn ours() -> Features {
        Features {
            request_time: true,
            manifest: true,
            early_channel_data: true,
        }
    }

    /// The names announced, in the order they are signed.
    pub(super) fn names(self) -> Vec<String> {
        let mut out = Vec::new();
        if self.request_time {
            out.push(REQUEST_TIME.to_owned());
        }
        if self.manifest {
            out.push(MANIFEST.to_owned());
        }
        if self.early_channel_data {
            out.push(EARLY_CHANNEL_DATA.to_owned());
        }
        out
    }

    /// From the names read (names not known are ignored).
    pub(super) fn from_names(names: &[String]) -> Features {
        Features {
            request_time: names.iter().any(|n| n == REQUEST_TIME),
            manifest: names.iter().any(|n| n == MANIFEST),
            early_channel_data: names.iter().any(|n| n == EARLY_CHANNEL_DATA),
        }
    }
}

/// What the device signs: the context, its certificate, then each name followed by a NUL.
pub(super) fn signed(device_cert: &[u8], names: &[String]) -> Vec<u8> {
    let mut m = [CONTEXT, device_cert].concat();
    for n in names {
        m.extend_from_slice(n.as_bytes());
        m.push(0);
    }
    m
}

/// The device's signature over its feature list.
pub(super) fn sign(device: &Device, names: &[String]) -> Result<Vec<u8>, SignalError> {
    let key = device
        .signing_key()
        .map_err(|_| SignalError::Malformed("our own signing key"))?;
    Ok(key
        .sign(&signed(device.certificate(), names))
        .as_ref()
        .to_vec())
}

/// Checks a feature list read from an announcement whose device certificate is `device_cert`
/// (already checked to be signed by its account).
pub(super) fn verify(
    device_cert: &CertificateDer<'_>,
    names: &[String],
    sig: &[u8],
) -> Result<Features, SignalError> {
    if names.len() > MAX_FEATURES || names.iter().any(|n| n.len() > MAX_NAME) {
        return Err(SignalError::Malformed("feature list"));
    }
    let signer = webpki::EndEntityCert::try_from(device_cert)
        .map_err(|_| SignalError::Malformed("device certificate"))?;
    signer
        .verify_signature(webpki::ring::ED25519, &signed(device_cert, names), sig)
        .map_err(|_| SignalError::BadSignature)?;
    Ok(Features::from_names(names))
}

/// Whether a request's `time` (Unix seconds; `None` in the first form) is acceptable at `now`
/// (Unix seconds) from a device whose announced features, if we read them, are `announced`: a
/// time must be within [`REQUEST_WINDOW`]; no time is accepted only from a device not known to
/// announce [`REQUEST_TIME`] (an older peer).
pub fn request_in_time(time: Option<u64>, now: u64, announced: Option<Features>) -> bool {
    match time {
        Some(t) => t.abs_diff(now) <= REQUEST_WINDOW.as_secs(),
        None => !announced.is_some_and(|f| f.request_time),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_ten_minutes_either_way_and_no_time_only_from_an_older_peer() {
        let now = 1_800_000_000;
        assert!(request_in_time(Some(now), now, None));
        assert!(request_in_time(Some(now - 600), now, None));
        assert!(request_in_time(Some(now + 600), now, None));
        assert!(!request_in_time(Some(now - 601), now, None));
        assert!(!request_in_time(Some(now + 601), now, None));
        assert!(!request_in_time(Some(0), now, None));
        assert!(!request_in_time(Some(u64::MAX), now, None));
        assert!(request_in_time(None, now, None));
        assert!(request_in_time(None, now, Some(Features::default())));
        assert!(!request_in_time(None, now, Some(Features::ours())));
    }

    #[test]
    fn unknown_names_are_ignored() {
        let names = vec![
            "later-thing".to_owned(),
            REQUEST_TIME.to_owned(),
            EARLY_CHANNEL_DATA.to_owned(),
        ];
        let time_and_early = Features {
            request_time: true,
            manifest: false,
            early_channel_data: true,
        };
        assert_eq!(Features::from_names(&names), time_and_early);
        assert_eq!(Features::from_names(&names[..1]), Features::default());
    }

    #[test]
    fn the_manifest_feature_is_read_and_named_after_request_time() {
        let names = vec![MANIFEST.to_owned(), "later-thing".to_owned()];
        let read = Features::from_names(&names);
        assert!(read.manifest && !read.request_time);
        let all = Features {
            request_time: true,
            manifest: true,
            early_channel_data: true,
        };
        assert_eq!(
            all.names(),
            vec![REQUEST_TIME, MANIFEST, EARLY_CHANNEL_DATA]
        );
        assert_eq!(Features::from_names(&all.names()), all);
    }
}
