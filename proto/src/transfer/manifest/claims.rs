//! [`Claims`]: which files of an accepted manifest have come, so that each is taken once and
//! nothing the manifest does not list is taken at all.

use std::collections::BTreeSet;

use super::{Entry, Manifest};
use crate::transfer::TransferId;

/// Why a file that names a manifest is refused (`NGO`, `invalid`; nothing is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimError {
    /// The manifest lists no file under this id.
    #[error("transfer {0} is not in the manifest")]
    NotInManifest(TransferId),
    /// A file under this id came already under this manifest.
    #[error("transfer {0} came twice")]
    AlreadyClaimed(TransferId),
    /// The file's header gives another size than the manifest.
    #[error("transfer {id} has {header} bytes, the manifest said {listed}")]
    WrongSize {
        /// The transfer.
        id: TransferId,
        /// The size in its header.
        header: u64,
        /// The size the manifest listed.
        listed: u64,
    },
}

/// An accepted manifest on the receiving side, and the files that came under it.
#[derive(Debug, Clone)]
pub struct Claims {
    manifest: Manifest,
    claimed: BTreeSet<TransferId>,
}

impl Claims {
    /// Starts tracking an accepted manifest.
    pub fn new(manifest: Manifest) -> Claims {
        Claims {
            manifest,
            claimed: BTreeSet::new(),
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// A file came under `id` with a header saying `size` bytes: its entry, if the manifest
    /// lists it, with that size, and it did not come before.
    pub fn claim(&mut self, id: TransferId, size: u64) -> Result<&Entry, ClaimError> {
        let entry = self
            .manifest
            .file(id)
            .ok_or(ClaimError::NotInManifest(id))?;
        if let super::EntryKind::File { size: listed, .. } = entry.kind {
            if listed != size {
                return Err(ClaimError::WrongSize {
                    id,
                    header: size,
                    listed,
                });
            }
        }
        if !self.claimed.insert(id) {
            return Err(ClaimError::AlreadyClaimed(id));
        }
        Ok(entry)
    }

    /// Whether every file of the manifest came.
    pub fn all_claimed(&self) -> bool {
        self.claimed.len() == self.manifest.file_count()
    }
}
