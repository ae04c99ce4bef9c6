//! STUN messages and the RFC 4571 framing that carries them on ICE-TCP paths.

use bytes::Bytes;
use ferry_proto::stun::framing::{FrameDecoder, LENGTH_PREFIX, MAX_FRAME, Piece, encode};
use ferry_proto::stun::{
    BINDING, Builder, Class, IntegrityError, RoleAttribute, StunMessage, looks_like_stun,
    may_be_stun, verify_integrity,
};

use super::{Script, pieces};

/// The password the seeds are signed with.
pub(crate) const PASSWORD: &str = "7c33834e7cf944bf0e367b47";

/// Decoding any bytes, and checking their integrity, never panics; a message without
/// MESSAGE-INTEGRITY never verifies. Then a message built from the input decodes to what was
/// put in, verifies with its password and with no other.
pub fn stun_decode(data: &[u8]) {
    let decoded = StunMessage::decode(data);
    let integrity = verify_integrity(data, PASSWORD);
    if let Ok(m) = &decoded {
        assert!(looks_like_stun(data));
        if !m.has_integrity {
            assert_eq!(integrity, Err(IntegrityError::Missing));
        }
    }
    let _ = verify_integrity(data, "");

    let mut s = Script::new(data);
    let class = match s.byte() % 4 {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    let transaction = u128::from(s.u32()) << 64 | u128::from(s.u32());
    let username = String::from_utf8_lossy(s.piece()).into_owned();
    let priority = s.u32();
    let use_candidate = s.byte() & 1 == 1;
    let role = match s.byte() % 3 {
        0 => None,
        1 => Some(RoleAttribute::Controlling(u64::from(s.u32()))),
        _ => Some(RoleAttribute::Controlled(u64::from(s.u32()))),
    };
    let error = (class == Class::Error).then(|| {
        let code = 300 + s.u16() % 300;
        (code, String::from_utf8_lossy(s.piece()).into_owned())
    });
    // An ICE password is made of ICE characters (the description parser refuses others).
    // Arbitrary bytes would not do: HMAC pads its key with zeros, so "pw" and "pw\0" sign
    // alike, which is no property of ours to check.
    const ICE_CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    let password: String = s
        .piece()
        .iter()
        .map(|b| char::from(ICE_CHARS[usize::from(*b) % ICE_CHARS.len()]))
        .collect();
    let mut b = Builder::new(class, BINDING, transaction)
        .username(&username)
        .priority(priority);
    if use_candidate {
        b = b.use_candidate();
    }
    if let Some(role) = role {
        b = b.role(role);
    }
    if let Some((code, reason)) = &error {
        b = b.error_code(*code, reason);
    }
    // A USERNAME or reason STUN cannot carry is a caller mistake, refused by the builder.
    let Ok(bytes) = b.finish(Some(&password)) else {
        return;
    };
    let m = StunMessage::decode(&bytes).expect("a built message decodes");
    assert_eq!(m.class, class);
    assert_eq!(m.method, BINDING);
    assert_eq!(m.transaction, transaction & ((1 << 96) - 1));
    assert_eq!(m.username.as_deref(), Some(username.as_str()));
    assert_eq!(m.priority, Some(priority));
    assert_eq!(m.use_candidate, use_candidate);
    assert_eq!(m.role, role);
    assert_eq!(m.error.as_ref().map(|e| e.0), error.as_ref().map(|e| e.0));
    assert!(m.has_integrity && m.has_fingerprint);
    assert_eq!(verify_integrity(&bytes, &password), Ok(()));
    if password != PASSWORD {
        assert_eq!(
            verify_integrity(&bytes, PASSWORD),
            Err(IntegrityError::Mismatch)
        );
    }
}

fn deframe(parts: &[&[u8]]) -> (Vec<Vec<u8>>, usize) {
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    for part in parts {
        frames.extend(decoder.push(part).into_iter().map(|f| f.to_vec()));
        assert!(
            decoder.buffered() < LENGTH_PREFIX + MAX_FRAME,
            "the deframer holds {} bytes",
            decoder.buffered()
        );
    }
    (frames, decoder.buffered())
}

/// The frames of `parts` as an ICE agent's connection takes them (`push_stream`, the frames
/// that do not look like STUN streamed), put back together given the frames' lengths.
fn deframe_streamed(parts: &[&[u8]], lens: &[usize]) -> Vec<Vec<u8>> {
    let mut decoder = FrameDecoder::new();
    let (mut frames, mut open) = (Vec::new(), None::<Vec<u8>>);
    for part in parts {
        let data = Bytes::copy_from_slice(part);
        for piece in decoder.push_stream(data, |start, len| !may_be_stun(start, len)) {
            match piece {
                Piece::Frame(f) => {
                    assert!(open.is_none(), "a whole frame inside a streamed one");
                    frames.push(f.to_vec());
                }
                Piece::Part(p) => {
                    let mut cur = open.take().unwrap_or_default();
                    cur.extend_from_slice(&p);
                    match lens.get(frames.len()) {
                        Some(&len) if cur.len() == len => frames.push(cur),
                        Some(&len) => {
                            assert!(cur.len() < len, "a streamed frame ran long");
                            open = Some(cur);
                        }
                        None => open = Some(cur),
                    }
                }
            }
        }
        assert!(
            decoder.buffered() < LENGTH_PREFIX + MAX_FRAME,
            "the deframer holds {} bytes",
            decoder.buffered()
        );
    }
    frames
}

/// RFC 4571: any split gives the same frames, streamed or gathered, the deframer never
/// holds a whole frame, and the frames print back to the bytes they came from.
pub fn rfc4571_deframer(data: &[u8]) {
    let (stream, parts) = pieces(data);
    let whole = deframe(&[stream]);
    let split = deframe(&parts);
    assert_eq!(whole, split, "the split changed the frames");
    let lens: Vec<usize> = whole.0.iter().map(Vec::len).collect();
    assert_eq!(
        deframe_streamed(&parts, &lens),
        whole.0,
        "streaming changed the frames"
    );
    let printed: Vec<u8> = whole.0.iter().flat_map(|f| encode(f).to_vec()).collect();
    assert_eq!(printed.len() + whole.1, stream.len());
    assert!(stream.starts_with(&printed));
}
