//! Why a command failed, in words a person understands, and the exit code that goes with it.

use std::fmt;

/// Exit codes, for scripts; `ferry --help` lists them (keep [`EXIT_CODES`] in step).
pub(crate) mod exit {
    /// Done: for `send`, at least one device received the file and its SHA3-512 matched.
    pub(crate) const OK: u8 = 0;
    /// Something broke inside ferry (a bug, or the system refused a thread or a socket).
    pub(crate) const INTERNAL: u8 = 1;
    /// Bad arguments or set-up: a file that cannot be read, an id or URL that does not parse.
    pub(crate) const USAGE: u8 = 2;
    /// No identity here, or an identity file that cannot be used.
    pub(crate) const IDENTITY: u8 = 3;
    /// No device of the contact announced itself: an unknown or offline contact.
    pub(crate) const UNKNOWN_CONTACT: u8 = 4;
    /// Devices announced themselves but none could be reached or answered.
    pub(crate) const UNREACHABLE: u8 = 5;
    /// The transfer was refused.
    pub(crate) const REFUSED: u8 = 6;
    /// The transfer was cancelled, here or by the other side.
    pub(crate) const CANCELLED: u8 = 7;
    /// Every byte arrived but the SHA3-512 did not match; nothing was kept.
    pub(crate) const DIGEST_MISMATCH: u8 = 8;
    /// A file could not be read or written (disk full, permission denied).
    pub(crate) const FILE: u8 = 9;
    /// Another `ferry listen` already runs on this home.
    pub(crate) const BUSY: u8 = 10;
}

/// The exit codes as `ferry --help` shows them.
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  done (send: at least one device received the file and its SHA3-512 matched)
  1  internal error
  2  bad arguments or set-up (unreadable file, bad id or URL, identity already there)
  3  no identity here, or an identity file that cannot be used
  4  unknown contact: no device of that account announced itself
  5  no device could be reached or answered (the failing stage is printed)
  6  refused
  7  cancelled
  8  SHA3-512 mismatch: the file arrived damaged and was not kept
  9  a file could not be read or written (disk full, permission denied)
 10  another `ferry listen` already runs on this home (its process id is printed)";

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// A bug, or the system refused a resource.
    Internal(String),
    /// Bad arguments or set-up.
    Usage(String),
    /// No identity, or an unusable identity file.
    Identity(String),
    /// No device of the contact announced itself.
    UnknownContact(String),
    /// No device could be reached; what failed.
    Unreachable(String),
    /// Refused, by whom.
    Refused(String),
    /// Cancelled, by whom.
    Cancelled(String),
    /// The digest did not match.
    DigestMismatch(String),
    /// A file could not be read or written.
    File(String),
    /// Another listener holds this home.
    Busy(String),
}

impl Failure {
    /// The process exit code for this failure.
    pub(crate) fn code(&self) -> u8 {
        match self {
            Failure::Internal(_) => exit::INTERNAL,
            Failure::Usage(_) => exit::USAGE,
            Failure::Identity(_) => exit::IDENTITY,
            Failure::UnknownContact(_) => exit::UNKNOWN_CONTACT,
            Failure::Unreachable(_) => exit::UNREACHABLE,
            Failure::Refused(_) => exit::REFUSED,
            Failure::Cancelled(_) => exit::CANCELLED,
            Failure::DigestMismatch(_) => exit::DIGEST_MISMATCH,
            Failure::File(_) => exit::FILE,
            Failure::Busy(_) => exit::BUSY,
        }
    }

    /// A short name of the kind, for `--json`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Failure::Internal(_) => "internal",
            Failure::Usage(_) => "usage",
            Failure::Identity(_) => "identity",
            Failure::UnknownContact(_) => "unknown_contact",
            Failure::Unreachable(_) => "unreachable",
            Failure::Refused(_) => "refused",
            Failure::Cancelled(_) => "cancelled",
            Failure::DigestMismatch(_) => "digest_mismatch",
            Failure::File(_) => "file",
            Failure::Busy(_) => "busy",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Internal(m)
            | Failure::Usage(m)
            | Failure::Identity(m)
            | Failure::UnknownContact(m)
            | Failure::Unreachable(m)
            | Failure::Refused(m)
            | Failure::Cancelled(m)
            | Failure::DigestMismatch(m)
            | Failure::File(m)
            | Failure::Busy(m) => f.write_str(m),
        }
    }
}

impl From<ferry_driver::identity_files::IdentityFileError> for Failure {
    fn from(e: ferry_driver::identity_files::IdentityFileError) -> Failure {
        use ferry_driver::identity_files::IdentityFileError;
        match e {
            IdentityFileError::Missing(path) => Failure::Identity(format!(
                "no identity file at {}: run `ferry account new` first (or `ferry device \
                 import FILE` on a second device), or point --home / FERRY_HOME at one",
                path.display()
            )),
            other => Failure::Identity(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_has_its_own_documented_code() {
        let all = [
            Failure::Internal(String::new()),
            Failure::Usage(String::new()),
            Failure::Identity(String::new()),
            Failure::UnknownContact(String::new()),
            Failure::Unreachable(String::new()),
            Failure::Refused(String::new()),
            Failure::Cancelled(String::new()),
            Failure::DigestMismatch(String::new()),
            Failure::File(String::new()),
            Failure::Busy(String::new()),
        ];
        let mut codes: Vec<u8> = all.iter().map(Failure::code).collect();
        for code in &codes {
            assert!(
                EXIT_CODES.contains(&format!("\n  {code}  "))
                    || EXIT_CODES.contains(&format!("\n {code}  ")),
                "code {code} is documented"
            );
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len(), "codes are distinct");
        assert!(!codes.contains(&exit::OK));
    }
}
