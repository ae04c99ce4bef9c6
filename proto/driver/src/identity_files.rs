//! Identity files: PEM on disk, private keys readable by the owner only.
//!
//! This is the one place in `ferry-proto` that touches the file system, for tools and drivers
//! (the `ferry` command, the runtimes) to share; no state machine calls it. A file is written
//! to a temporary name beside its target, with mode 0600 on Unix, then renamed, so a crash
//! never leaves a half-written identity under the real name.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ferry_proto::tls::{Account, Device, IdentityError};

/// Why an identity file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityFileError {
    /// There is no file there.
    #[error("no identity file at {0}")]
    Missing(PathBuf),
    /// The file system refused.
    #[error("cannot use identity file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is there but is not a usable identity.
    #[error("identity file {path} is unusable: {source}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: IdentityError,
    },
}

/// Writes an account's certificate and key to `path` (mode 0600).
pub fn save_account(path: &Path, account: &Account) -> Result<(), IdentityFileError> {
    write_private(path, &account.to_pem())
}

/// Reads an account written by [`save_account`].
pub fn load_account(path: &Path) -> Result<Account, IdentityFileError> {
    let text = read(path)?;
    Account::from_pem(&text).map_err(|source| IdentityFileError::Corrupt {
        path: path.to_owned(),
        source,
    })
}

/// Writes a device's chain and key to `path` (mode 0600).
pub fn save_device(path: &Path, device: &Device) -> Result<(), IdentityFileError> {
    write_private(path, &device.to_pem())
}

/// Reads a device written by [`save_device`].
pub fn load_device(path: &Path) -> Result<Device, IdentityFileError> {
    let text = read(path)?;
    Device::from_pem(&text).map_err(|source| IdentityFileError::Corrupt {
        path: path.to_owned(),
        source,
    })
}

fn read(path: &Path) -> Result<String, IdentityFileError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes).map_err(|_| IdentityFileError::Corrupt {
            path: path.to_owned(),
            source: IdentityError::Pem("not UTF-8 text".to_owned()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(IdentityFileError::Missing(path.to_owned()))
        }
        Err(source) => Err(IdentityFileError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), IdentityFileError> {
    let io = |source| IdentityFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    #[cfg(unix)]
    {
        // `mode` only applies to a file it creates; a leftover temporary keeps its mode.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io)?;
    }
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp, path).map_err(io)
}
