//! Why a file operation failed, and the [`FileError`] the core gets for it.

use std::io::{self, ErrorKind};

use ferry_proto::io::FileError;

use crate::receive_folder::FolderError;

/// Why an operation failed, before it becomes a [`FileError`].
#[derive(Debug)]
pub(super) enum Failure {
    Io(io::Error),
    Folder(FolderError),
    Short,
    NotAFile,
    Busy,
    AlreadyOpen,
    NotOpen,
    ReadOnly,
    NoTree,
    Unknown,
}

impl From<FolderError> for Failure {
    fn from(e: FolderError) -> Failure {
        match e {
            FolderError::Io(e) => Failure::Io(e),
            e => Failure::Folder(e),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

impl From<Failure> for FileError {
    fn from(failure: Failure) -> FileError {
        let other = |s: &str| FileError::Other(s.to_owned());
        match failure {
            Failure::Io(e) => match e.kind() {
                ErrorKind::NotFound => FileError::NotFound,
                ErrorKind::PermissionDenied => FileError::PermissionDenied,
                ErrorKind::StorageFull | ErrorKind::QuotaExceeded => FileError::DiskFull,
                ErrorKind::UnexpectedEof => FileError::ShortRead,
                _ => FileError::Other(e.to_string()),
            },
            Failure::Folder(e) => FileError::Other(e.to_string()),
            Failure::Short => FileError::ShortRead,
            Failure::NotAFile => other("not a regular file"),
            Failure::Busy => other("the partial file is in use by another transfer"),
            Failure::AlreadyOpen => other("this file id is already open"),
            Failure::NotOpen => other("this file id is not open"),
            Failure::ReadOnly => other("not a partial file"),
            Failure::NoTree => other("the folders of this file's manifest were not made here"),
            Failure::Unknown => other("a file operation this driver does not know"),
        }
    }
}
