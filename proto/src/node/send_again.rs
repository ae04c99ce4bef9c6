//! A send of several files taken up again (`PROTOCOL.md` §14, *Resume*): the same entries
//! under the ids an earlier send of them gave (the application keeps them in its records),
//! so that each device resumes what it kept and is not sent again what it verified.
//!
//! - Each device that got the earlier send is offered a manifest under its earlier `mid`,
//!   and each file under its earlier sub-transfer id: the receiver lands the tree in the
//!   folders it made then (its mapping is kept with `(sender, mid)`), and a file it kept
//!   partial data for resumes from it (§4.1), since it comes under the same id.
//! - A file a device verified is left out of that device's manifest and is not sent to it;
//!   a device that verified every file gets no manifest at all.
//! - A file every listed device verified is not sent to any device: its group is told
//!   `finished` at once ([`Event::Aggregate`](crate::io::Event::Aggregate) with all its
//!   bytes), as it was then.
//! - A device that did not get the earlier send (a new one) gets everything else, under new
//!   ids, as [`send_files`](Node::send_files) would send it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::Node;
use super::sends::{SendEntry, Sending};
use crate::tls::{AccountId, DeviceId};
use crate::transfer::TransferId;
use crate::transfer::manifest::ManifestError;

/// The ids an earlier send of the same entries used, for [`Node::send_files_again`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendAgain {
    /// The earlier send's id ([`Sending::send`]).
    pub send: TransferId,
    /// Each file's group, in the order of the entries' files ([`Sending::files`]).
    pub files: Vec<TransferId>,
    /// Each device that got the earlier send, with its ids.
    pub devices: BTreeMap<DeviceId, DeviceAgain>,
}

/// One device's ids in an earlier send ([`SendAgain`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAgain {
    /// The id of its manifest (the sub-transfer of the send it was named as).
    pub manifest: TransferId,
    /// Each file's sub-transfer id for this device, in the order of the entries' files.
    pub files: Vec<TransferId>,
    /// The files (by their sub-transfer id) this device verified: not sent to it again.
    pub verified: BTreeSet<TransferId>,
}

impl DeviceAgain {
    /// Whether the device verified the `k`-th file.
    pub(super) fn verified_file(&self, k: usize) -> bool {
        self.files.get(k).is_some_and(|t| self.verified.contains(t))
    }
}

impl SendAgain {
    /// Whether every listed device verified the `k`-th file (and there is one).
    pub(super) fn delivered_file(&self, k: usize) -> bool {
        !self.devices.is_empty() && self.devices.values().all(|d| d.verified_file(k))
    }

    /// The sub-transfer ids of the `k`-th file for the devices that have not verified it:
    /// what its group sends under again.
    pub(super) fn file_ids(&self, k: usize) -> BTreeMap<DeviceId, TransferId> {
        self.devices
            .iter()
            .filter(|(_, d)| !d.verified_file(k))
            .filter_map(|(device, d)| Some((*device, *d.files.get(k)?)))
            .collect()
    }
}

impl Node {
    /// Sends `entries` again as [`send_files`](Self::send_files) does, under the ids the
    /// earlier send `again` of the same entries used (see the module docs): each device
    /// resumes where it stopped, and no device is sent a file it verified. The caller knows
    /// the entries are the same (its records: same paths, same files). An id that is in use
    /// now is replaced by a new one (that device then starts that part over).
    pub fn send_files_again(
        &mut self,
        now: Instant,
        account: AccountId,
        entries: Vec<SendEntry>,
        again: SendAgain,
    ) -> Result<Sending, ManifestError> {
        self.start_send(now, account, entries, Some(again))
    }

    /// `id` if it is non-zero and names nothing of this node now, else a new id.
    pub(super) fn reuse_id(&mut self, id: TransferId) -> TransferId {
        match id.0 != 0 && self.transfers.is_free(id) && !self.manifest_uses(id) {
            true => id,
            false => self.new_transfer_id(),
        }
    }
}
