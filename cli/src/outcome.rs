//! How a transfer that ended without the file becomes a [`Failure`], and which of several
//! devices' failures says the most.

use ferry_proto::transfer::frame::CancelCode;
use ferry_proto::transfer::{Reason, Status};

use crate::failure::Failure;

/// Why a transfer that reached the final `status` did not deliver the file; `who` names the
/// other side ("bob's device 1a2b…", "the sender").
pub(crate) fn failure_of(status: Status, reason: Option<&Reason>, who: &str) -> Failure {
    match (status, reason) {
        (Status::DigestMismatch, _) | (_, Some(Reason::DigestMismatch)) => Failure::DigestMismatch(
            format!("{who}: every byte arrived but the SHA3-512 did not match; nothing was kept"),
        ),
        (_, Some(Reason::File(e))) => Failure::File(format!("{who}: a file here failed: {e}")),
        (_, Some(Reason::PeerCancelled(CancelCode::FileError))) => Failure::File(format!(
            "{who}: the other side could not read or write the file (a full disk, or a receive folder it refuses: its own output says which)"
        )),
        (Status::ClosedByHost, Some(Reason::Refused)) => {
            Failure::Refused(format!("{who}: refused here"))
        }
        (_, Some(Reason::Refused)) => Failure::Refused(format!("{who}: refused")),
        (_, Some(r @ Reason::NotAPicture)) => Failure::Refused(format!("{who}: {r}")),
        (Status::ClosedByHost, Some(Reason::Cancelled)) => {
            Failure::Cancelled(format!("{who}: cancelled here"))
        }
        (_, Some(Reason::PeerCancelled(code))) => {
            Failure::Cancelled(format!("{who}: cancelled by the other side ({code})"))
        }
        (_, Some(Reason::Cancelled)) => Failure::Cancelled(format!("{who}: cancelled")),
        (_, Some(Reason::Unreachable(why))) => {
            Failure::Unreachable(format!("{who}: could not connect: {why}"))
        }
        (_, Some(Reason::Timeout)) | (Status::TimeoutExpired, _) => {
            Failure::Unreachable(format!("{who}: no answer in time"))
        }
        (_, Some(Reason::ConnectionLost)) => Failure::Unreachable(format!(
            "{who}: the connection was lost; what arrived is kept: run the same `ferry send` \
             again to resume from it"
        )),
        (Status::UnjoinablePeer, _) => Failure::Unreachable(format!("{who}: could not connect")),
        (status, Some(reason)) => Failure::Internal(format!("{who}: {status}: {reason}")),
        (status, None) => Failure::Internal(format!("{who}: ended as {status}")),
    }
}

/// How much a failure says, to choose the one a command reports when every device failed:
/// a damaged file says most, then a file error, a refusal, a cancel, and last "unreachable".
fn weight(f: &Failure) -> u8 {
    match f {
        Failure::DigestMismatch(_) => 6,
        Failure::File(_) => 5,
        Failure::Refused(_) => 4,
        Failure::Cancelled(_) => 3,
        Failure::Unreachable(_) => 2,
        _ => 1,
    }
}

/// The failure to report for several devices: the weightiest kind, with every device's
/// reason in the message.
pub(crate) fn combine(failures: Vec<Failure>) -> Option<Failure> {
    let best = failures.iter().max_by_key(|f| weight(f))?.clone();
    if failures.len() == 1 {
        return Some(best);
    }
    let all: Vec<String> = failures.iter().map(ToString::to_string).collect();
    let message = format!("no device received the file: {}", all.join("; "));
    Some(match best {
        Failure::DigestMismatch(_) => Failure::DigestMismatch(message),
        Failure::File(_) => Failure::File(message),
        Failure::Refused(_) => Failure::Refused(message),
        Failure::Cancelled(_) => Failure::Cancelled(message),
        Failure::Unreachable(_) => Failure::Unreachable(message),
        _ => Failure::Internal(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::io::FileError;

    #[test]
    fn reasons_map_to_the_failures_a_person_expects() {
        let f = |s, r: Option<Reason>| failure_of(s, r.as_ref(), "d").kind();
        assert_eq!(f(Status::ClosedByPeer, Some(Reason::Refused)), "refused");
        assert_eq!(f(Status::ClosedByHost, Some(Reason::Refused)), "refused");
        assert_eq!(
            f(Status::ClosedByHost, Some(Reason::Cancelled)),
            "cancelled"
        );
        assert_eq!(
            f(
                Status::ClosedByPeer,
                Some(Reason::PeerCancelled(CancelCode::User))
            ),
            "cancelled"
        );
        assert_eq!(
            f(
                Status::ClosedByPeer,
                Some(Reason::PeerCancelled(CancelCode::FileError))
            ),
            "file"
        );
        assert_eq!(
            f(
                Status::ClosedByHost,
                Some(Reason::File(FileError::DiskFull))
            ),
            "file"
        );
        assert_eq!(
            f(Status::DigestMismatch, Some(Reason::DigestMismatch)),
            "digest_mismatch"
        );
        assert_eq!(
            f(
                Status::UnjoinablePeer,
                Some(Reason::Unreachable("ice: no pair".into()))
            ),
            "unreachable"
        );
        assert_eq!(
            f(Status::TimeoutExpired, Some(Reason::Timeout)),
            "unreachable"
        );
    }

    #[test]
    fn the_weightiest_failure_wins_and_names_every_device() {
        let got = combine(vec![
            Failure::Unreachable("b1: could not connect".into()),
            Failure::Refused("b2: refused".into()),
        ]);
        assert_eq!(
            got,
            Some(Failure::Refused(
                "no device received the file: b1: could not connect; b2: refused".into()
            ))
        );
        assert_eq!(combine(Vec::new()), None);
    }
}
