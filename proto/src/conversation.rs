//! The ask-again request of Jami's conversations (`application/data-transfer-request+json`),
//! as Ferry carries it: a receiving device that missed a file (or holds part of it) asks
//! the sender's device to offer it again, on a channel named [`REQUEST_CHANNEL`].
//!
//! The requester writes one [`TransferRequest`], JSON on one line ended by LF, at most
//! [`MAX_REQUEST`] bytes with the LF; the holder answers with one [`AskAnswer`] line and
//! ends the channel. Jami names the conversation; Ferry has no conversations, so
//! `conversation` is the account the transfer was sent to, `interaction` the transfer id the
//! receiver saw (the channel's `file-transfer://<id>`), and `deviceId` the asking device. The
//! holder never trusts `conversation` or `deviceId`: it compares them with the account and
//! device of the pinned TLS session the request came on (see PROTOCOL.md §11).

use serde::{Deserialize, Serialize};

use crate::tls::{AccountId, DeviceId, PeerIdentity};
use crate::transfer::TransferId;

/// The name of the channel that carries one request and its answer.
pub const REQUEST_CHANNEL: &str = "data-transfer-request";

/// The most bytes of a request or an answer, its LF included: past it, without an LF, the
/// line is refused (`bad_request`) without buffering more.
pub const MAX_REQUEST: usize = 1024;

/// Jami's `data-transfer-request`: which transfer, asked for by which device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferRequest {
    /// For Ferry, the account the transfer was sent to (Jami: the conversation's id).
    pub conversation: AccountId,
    /// The transfer id the receiver saw (Jami: the file interaction's id).
    pub interaction: TransferId,
    /// The device that asks, and that the file is to be sent to.
    pub device: DeviceId,
}

/// The JSON form: every value a string, as in Jami's file records.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    conversation: String,
    interaction: String,
    #[serde(rename = "deviceId")]
    device_id: String,
}

/// Why a request or an answer line was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadLine {
    /// Longer than [`MAX_REQUEST`] without its LF.
    #[error("longer than {MAX_REQUEST} bytes")]
    TooLong,
    /// Bytes after the LF: one line is all a side says.
    #[error("more than one line")]
    Trailing,
    /// Not the JSON object expected, or a field that does not parse.
    #[error("not a well-formed line")]
    Malformed,
    /// The channel ended before the LF.
    #[error("ended before its end of line")]
    Truncated,
}

impl TransferRequest {
    /// The line the requester writes, LF included.
    pub fn encode(&self) -> Vec<u8> {
        let wire = Wire {
            conversation: self.conversation.to_string(),
            interaction: self.interaction.to_string(),
            device_id: self.device.to_string(),
        };
        // A struct of three strings always serialises.
        let mut line = serde_json::to_vec(&wire).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Reads one line (without its LF). Ids must be well formed; the transfer id a
    /// non-zero decimal `u64`.
    pub fn decode(line: &[u8]) -> Result<TransferRequest, BadLine> {
        let wire: Wire = serde_json::from_slice(line).map_err(|_| BadLine::Malformed)?;
        let interaction = wire
            .interaction
            .parse::<u64>()
            .ok()
            .filter(|&t| t != 0 && wire.interaction.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(BadLine::Malformed)?;
        Ok(TransferRequest {
            conversation: wire.conversation.parse().map_err(|_| BadLine::Malformed)?,
            interaction: TransferId(interaction),
            device: wire.device_id.parse().map_err(|_| BadLine::Malformed)?,
        })
    }

    /// The holder's checks of a whole request `line` that came on the pinned TLS session of
    /// `peer` (whose device is `revoked` or not, by the revocation list known now): the
    /// transfer asked for, or the code to answer. Neither `deviceId` nor `conversation` is
    /// trusted: they must be the session's device and account.
    pub fn check(
        line: Result<Vec<u8>, BadLine>,
        peer: &PeerIdentity,
        revoked: bool,
    ) -> Result<TransferId, AskAnswer> {
        match line.and_then(|l| TransferRequest::decode(&l)) {
            Err(_) => Err(AskAnswer::BadRequest),
            Ok(r) if r.device != peer.device => Err(AskAnswer::DeviceMismatch),
            Ok(_) if revoked => Err(AskAnswer::NotARecipient),
            Ok(r) if r.conversation != peer.account => Err(AskAnswer::NotARecipient),
            Ok(r) => Ok(r.interaction),
        }
    }
}

/// The holder's answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AskAnswer {
    /// The file is offered again, under the same id, on a channel of its own.
    Resending,
    /// The request's `deviceId` is not the device of the TLS session it came on.
    DeviceMismatch,
    /// The asking device's account is not one the transfer was sent to (or the request's
    /// `conversation` is not the asking device's account), or the device is revoked.
    NotARecipient,
    /// No transfer of that id was sent from here.
    UnknownTransfer,
    /// The source file is gone, or no longer has the recorded size, modification time,
    /// inode or digest.
    FileChanged,
    /// The request did not parse, was too long, or came with more than one line.
    BadRequest,
    /// This device does not serve requests now (a `send` that is not listening, too many
    /// requests at once, shutting down).
    Unavailable,
}

impl AskAnswer {
    /// Every answer, in the order of PROTOCOL.md's table.
    pub const ALL: [AskAnswer; 7] = [
        AskAnswer::Resending,
        AskAnswer::DeviceMismatch,
        AskAnswer::NotARecipient,
        AskAnswer::UnknownTransfer,
        AskAnswer::FileChanged,
        AskAnswer::BadRequest,
        AskAnswer::Unavailable,
    ];

    /// Its code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            AskAnswer::Resending => "resending",
            AskAnswer::DeviceMismatch => "device_mismatch",
            AskAnswer::NotARecipient => "not_a_recipient",
            AskAnswer::UnknownTransfer => "unknown_transfer",
            AskAnswer::FileChanged => "file_changed",
            AskAnswer::BadRequest => "bad_request",
            AskAnswer::Unavailable => "unavailable",
        }
    }

    /// The answer line, LF included: `{"answer":"<code>"}`.
    pub fn encode(self) -> Vec<u8> {
        format!("{{\"answer\":\"{}\"}}\n", self.as_str()).into_bytes()
    }

    /// Reads an answer line (without its LF); an unknown code is malformed.
    pub fn decode(line: &[u8]) -> Result<AskAnswer, BadLine> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Answer {
            answer: String,
        }
        let a: Answer = serde_json::from_slice(line).map_err(|_| BadLine::Malformed)?;
        AskAnswer::ALL
            .into_iter()
            .find(|c| c.as_str() == a.answer)
            .ok_or(BadLine::Malformed)
    }
}

impl std::fmt::Display for AskAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Collects the one line a side says on the request channel, bounded by [`MAX_REQUEST`].
#[derive(Debug, Default, Clone)]
pub struct LineReader {
    buf: Vec<u8>,
    done: bool,
}

impl LineReader {
    /// Takes bytes that arrived: `None` while the line is not whole; then, once, the line
    /// (without its LF) or why it is refused. Bytes after that are ignored.
    pub fn push(&mut self, data: &[u8]) -> Option<Result<Vec<u8>, BadLine>> {
        if self.done {
            return None;
        }
        let room = MAX_REQUEST.saturating_sub(self.buf.len());
        match data.iter().position(|&b| b == b'\n') {
            Some(at) if at < room => {
                self.done = true;
                if at + 1 < data.len() {
                    return Some(Err(BadLine::Trailing));
                }
                self.buf.extend_from_slice(&data[..at]);
                Some(Ok(std::mem::take(&mut self.buf)))
            }
            _ if data.len() >= room => {
                self.done = true;
                self.buf = Vec::new();
                Some(Err(BadLine::TooLong))
            }
            _ => {
                self.buf.extend_from_slice(data);
                None
            }
        }
    }

    /// The channel ended: a line not yet whole is truncated.
    pub fn end(&mut self) -> Option<BadLine> {
        (!std::mem::replace(&mut self.done, true)).then_some(BadLine::Truncated)
    }

    /// Whether a line (or its refusal) was given.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> TransferRequest {
        TransferRequest {
            conversation: AccountId([0xab; 20]),
            interaction: TransferId(42),
            device: DeviceId([0xcd; 32]),
        }
    }

    #[test]
    fn a_request_round_trips_and_bad_ones_are_refused() {
        // SECURITY: row 133
        let line = request().encode();
        assert_eq!(line.last(), Some(&b'\n'));
        let mut r = LineReader::default();
        let (a, b) = line.split_at(10);
        assert_eq!(r.push(a), None);
        let got = r.push(b).expect("whole").expect("a line");
        assert_eq!(TransferRequest::decode(&got), Ok(request()));
        for bad in [
            &b"{}"[..],
            b"not json",
            br#"{"conversation":"ab","interaction":"42","deviceId":"cd"}"#,
            br#"{"conversation":"abababababababababababababababababababab","interaction":"0","deviceId":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"}"#,
            br#"{"conversation":"abababababababababababababababababababab","interaction":"+42","deviceId":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"}"#,
            br#"{"conversation":"abababababababababababababababababababab","interaction":42,"deviceId":"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"}"#,
        ] {
            assert_eq!(
                TransferRequest::decode(bad),
                Err(BadLine::Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    /// Every code a holder answers from the request alone, against the session's identity.
    #[test]
    fn a_request_is_checked_against_its_session() {
        let session = PeerIdentity {
            account: AccountId([0xab; 20]),
            device: DeviceId([0xcd; 32]),
        };
        let line = |r: TransferRequest| {
            let mut l = r.encode();
            l.pop();
            Ok(l)
        };
        let check = |l, revoked| TransferRequest::check(l, &session, revoked);
        assert_eq!(check(line(request()), false), Ok(TransferId(42)));
        // SECURITY: row 133
        assert_eq!(
            check(Ok(b"not json".to_vec()), false),
            Err(AskAnswer::BadRequest)
        );
        assert_eq!(
            check(Err(BadLine::TooLong), false),
            Err(AskAnswer::BadRequest)
        );
        // SECURITY: row 132
        let other_device = TransferRequest {
            device: DeviceId([0xee; 32]),
            ..request()
        };
        assert_eq!(
            check(line(other_device), false),
            Err(AskAnswer::DeviceMismatch)
        );
        // SECURITY: row 149
        let other_conversation = TransferRequest {
            conversation: AccountId([0x11; 20]),
            ..request()
        };
        assert_eq!(
            check(line(other_conversation), false),
            Err(AskAnswer::NotARecipient),
            "the conversation must be the session's account"
        );
        assert_eq!(
            check(line(request()), true),
            Err(AskAnswer::NotARecipient),
            "a device revoked since its connection was made"
        );
    }

    #[test]
    fn lines_are_bounded_single_and_whole() {
        // SECURITY: row 133
        let mut r = LineReader::default();
        assert_eq!(r.push(&[b'x'; MAX_REQUEST - 1]), None);
        assert_eq!(r.push(b"y"), Some(Err(BadLine::TooLong)));
        assert_eq!(r.push(b"\n"), None, "nothing after a refusal");
        let mut r = LineReader::default();
        assert_eq!(r.push(b"{}\n{}\n"), Some(Err(BadLine::Trailing)));
        let mut r = LineReader::default();
        assert_eq!(r.push(b"{"), None);
        assert_eq!(r.end(), Some(BadLine::Truncated));
        assert_eq!(r.end(), None);
        let mut r = LineReader::default();
        let mut exact = vec![b'x'; MAX_REQUEST - 1];
        exact.push(b'\n');
        assert_eq!(
            r.push(&exact).map(|l| l.map(|l| l.len())),
            Some(Ok(MAX_REQUEST - 1))
        );
    }

    #[test]
    fn answers_round_trip() {
        for a in AskAnswer::ALL {
            let line = a.encode();
            assert_eq!(AskAnswer::decode(&line[..line.len() - 1]), Ok(a));
        }
        assert_eq!(
            AskAnswer::decode(br#"{"answer":"maybe"}"#),
            Err(BadLine::Malformed)
        );
    }
}
