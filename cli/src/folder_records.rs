//! Records of sends of several files and folders (`PROTOCOL.md` §14, *Resume*): one JSON
//! file per send, `sent-files-<send id>.json` in the records folder, beside the records of
//! single files ([`records`](crate::records)), so that the same `ferry send` run again
//! takes the send up under its ids: each device is offered its manifest again, is not sent
//! what it verified, and resumes the file it kept part of.
//!
//! - A record lists every entry as sent (its path, and for a file its source: canonical path,
//!   size, modification time, inode) and, per device, its manifest id, each file's
//!   sub-transfer id and the files it verified. A send is taken up only when every entry is
//!   the same (a changed file, or one more, makes a new send).
//! - It is written as the single records are (whole, to a temporary file, fsynced, renamed),
//!   within 200 ms of each change (changes within it together) and at the end: a crash
//!   loses at most the last 200 ms, and a file verified in them is sent again (the receiver
//!   keeps it beside the first, under `name (1)`).
//! - At most [`MAX_FOLDER_RECORDS`] are kept; past it, the oldest go.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use ferry_proto::node::{DeviceAgain, SendAgain};
use ferry_proto::tls::{AccountId, DeviceId};
use ferry_proto::transfer::TransferId;
use serde::{Deserialize, Serialize};

use crate::failure::Failure;
use crate::records::{
    SourceFile, folder_failure, newest_first, read_record, unix_now, write_whole,
};

/// Most records of sends of several files kept; past it, the least recently updated go.
pub(crate) const MAX_FOLDER_RECORDS: usize = 100;
/// Largest record read (65,536 entries of a few hundred bytes each; more is not ours).
const MAX_FOLDER_RECORD_BYTES: u64 = 64 << 20;
/// What a record's file name starts with.
const PREFIX: &str = "sent-files-";

/// One entry of a send, as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SentEntry {
    /// Its path relative to the receiver's folder.
    pub(crate) path: String,
    /// A file's source; `None` for a folder.
    pub(crate) source: Option<SourceFile>,
}

/// One device's part of a send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FolderPart {
    /// Its manifest's id (decimal), for a device that reads manifests.
    pub(crate) manifest: Option<String>,
    /// Each file's sub-transfer id for this device, by the file's group id (decimal).
    pub(crate) files: BTreeMap<String, String>,
    /// The sub-transfer ids of the files it verified.
    pub(crate) verified: BTreeSet<String>,
    /// Jami's name of its offer's last status; `offered` before any.
    pub(crate) state: String,
}

impl FolderPart {
    /// The sub-transfer id of the file whose group is `group`, if this device verified it.
    fn has(&self, group: &str) -> Option<&str> {
        let sub = self.files.get(group)?;
        self.verified.contains(sub).then_some(sub.as_str())
    }
}

/// A send of several files and folders to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FolderRecord {
    /// The send's id (decimal).
    pub(crate) id: String,
    /// The recipient account.
    pub(crate) peer_account: String,
    /// Every entry, in the order sent.
    pub(crate) entries: Vec<SentEntry>,
    /// Each file's group id (decimal), in the order of the entries' files.
    pub(crate) groups: Vec<String>,
    /// Each device's part, by device id.
    pub(crate) devices: BTreeMap<String, FolderPart>,
    /// When it was made (Unix seconds).
    pub(crate) created: u64,
    /// When it last changed (Unix seconds).
    pub(crate) updated: u64,
}

fn id(text: &str) -> TransferId {
    TransferId(text.parse().unwrap_or(0))
}

impl FolderRecord {
    /// A new record of the send `send` of `entries` (its files' groups `groups`) to `to`.
    pub(crate) fn new(
        send: TransferId,
        to: AccountId,
        entries: Vec<SentEntry>,
        groups: &[TransferId],
    ) -> FolderRecord {
        let now = unix_now();
        FolderRecord {
            id: send.to_string(),
            peer_account: to.to_string(),
            entries,
            groups: groups.iter().map(TransferId::to_string).collect(),
            devices: BTreeMap::new(),
            created: now,
            updated: now,
        }
    }

    fn file_name(id: &str) -> String {
        format!("{PREFIX}{id}.json")
    }

    /// The part of `device`, made if new.
    pub(crate) fn part(&mut self, device: DeviceId) -> &mut FolderPart {
        self.updated = unix_now();
        self.devices
            .entry(device.to_string())
            .or_insert_with(|| FolderPart {
                state: "offered".to_owned(),
                ..FolderPart::default()
            })
    }

    /// How many files the send has.
    pub(crate) fn file_count(&self) -> usize {
        self.entries.iter().filter(|e| e.source.is_some()).count()
    }

    /// Whether `part` has every file, verified.
    pub(crate) fn has_all(&self, part: &FolderPart) -> bool {
        self.groups.iter().all(|g| part.has(g).is_some())
    }

    /// Whether every device verified the `k`-th file (and there is a device): it is not
    /// sent again.
    pub(crate) fn delivered_to_all(&self, k: usize) -> bool {
        let Some(group) = self.groups.get(k) else {
            return false;
        };
        !self.devices.is_empty() && self.devices.values().all(|p| p.has(group).is_some())
    }

    /// Whether every device has every file (and there is a device).
    pub(crate) fn is_finished(&self) -> bool {
        !self.devices.is_empty() && self.devices.values().all(|p| self.has_all(p))
    }

    /// Each device's part, by its id (a device id that does not parse is skipped).
    fn parts(&self) -> impl Iterator<Item = (DeviceId, &FolderPart)> {
        self.devices
            .iter()
            .filter_map(|(device, part)| Some((device.parse().ok()?, part)))
    }

    /// The ids to send the same entries again under ([`ferry_proto::node::Node::send_files_again`]).
    pub(crate) fn again(&self) -> SendAgain {
        let devices = self
            .parts()
            .map(|(device, part)| {
                let files = self
                    .groups
                    .iter()
                    .map(|g| part.files.get(g).map_or(TransferId(0), |s| id(s)))
                    .collect();
                let again = DeviceAgain {
                    manifest: part.manifest.as_deref().map_or(TransferId(0), id),
                    files,
                    verified: part.verified.iter().map(|s| id(s)).collect(),
                };
                (device, again)
            })
            .collect();
        SendAgain {
            send: id(&self.id),
            files: self.groups.iter().map(|g| id(g)).collect(),
            devices,
        }
    }

    /// Each device's verified files and their sizes: what it had before this run.
    pub(crate) fn verified_sizes(&self) -> BTreeMap<DeviceId, Vec<(TransferId, u64)>> {
        let sizes: Vec<u64> = self
            .entries
            .iter()
            .filter_map(|e| e.source.as_ref().map(|s| s.size))
            .collect();
        self.parts()
            .map(|(device, part)| {
                let files = self
                    .groups
                    .iter()
                    .zip(&sizes)
                    .filter_map(|(g, size)| Some((id(part.has(g)?), *size)))
                    .collect();
                (device, files)
            })
            .collect()
    }

    /// One line for `ferry history`.
    pub(crate) fn line(&self) -> String {
        let done = self.devices.values().filter(|p| self.has_all(p)).count();
        let files = self.file_count();
        let state = match self.is_finished() {
            true => "finished".to_owned(),
            false => "unfinished (resumable: run the same send again)".to_owned(),
        };
        let size: u64 = self
            .entries
            .iter()
            .filter_map(|e| e.source.as_ref().map(|s| s.size))
            .sum();
        let first = self.entries.first().map_or("", |e| e.path.as_str());
        format!(
            "{}  sent      {files} files ({first:?}, …)  {size} bytes  to {}  {done}/{} \
             device(s) {state}  id {}",
            crate::records::utc(self.updated),
            &self.peer_account[..self.peer_account.len().min(12)],
            self.devices.len(),
            self.id,
        )
    }
}

/// The records of sends of several files in a home's records folder.
#[derive(Debug, Clone)]
pub(crate) struct FolderRecords {
    dir: PathBuf,
}

impl FolderRecords {
    /// The records in `home_dir`/records (made when first written).
    pub(crate) fn new(home_dir: &Path) -> FolderRecords {
        FolderRecords {
            dir: home_dir.join("records"),
        }
    }

    /// Whether `name` is the file name of such a record (the single-file records skip them).
    pub(crate) fn is_one(name: &str) -> bool {
        name.starts_with(PREFIX)
    }

    /// Every record, most recently updated first. Files that are not records are skipped.
    pub(crate) fn all(&self) -> Result<Vec<FolderRecord>, Failure> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.failure("read", &e)),
        };
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if !Self::is_one(&name) || !name.ends_with(".json") {
                continue;
            }
            records.extend(read_record(&entry, MAX_FOLDER_RECORD_BYTES, "send record"));
            if records.len() > MAX_FOLDER_RECORDS * 2 {
                break;
            }
        }
        Ok(newest_first(records, |r: &FolderRecord| (r.updated, &r.id)))
    }

    /// The most recent unfinished record of a send of exactly `entries` to `to`.
    pub(crate) fn unfinished(
        &self,
        to: AccountId,
        entries: &[SentEntry],
    ) -> Result<Option<FolderRecord>, Failure> {
        let to = to.to_string();
        Ok(self.all()?.into_iter().find(|r| {
            r.peer_account == to
                && r.entries == entries
                && r.groups.len() == r.file_count()
                && !r.is_finished()
        }))
    }

    /// Writes `record` (crash-safe: a temporary file, fsynced, renamed over the old one).
    pub(crate) fn save(&self, record: &FolderRecord) -> Result<(), Failure> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| Failure::Internal(format!("a record that is not JSON: {e}")))?;
        write_whole(&self.dir, &FolderRecord::file_name(&record.id), &bytes)
    }

    /// Removes the least recently updated records past [`MAX_FOLDER_RECORDS`] (once per
    /// send, not at each write: a write comes every 200 ms while files verify).
    pub(crate) fn prune(&self) -> Result<(), Failure> {
        for old in self.all()?.iter().skip(MAX_FOLDER_RECORDS) {
            let _ = fs::remove_file(self.dir.join(FolderRecord::file_name(&old.id)));
        }
        Ok(())
    }

    fn failure(&self, what: &str, e: &std::io::Error) -> Failure {
        folder_failure(&self.dir, what, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries() -> Vec<SentEntry> {
        let source = |p: &str, size| SourceFile {
            path: PathBuf::from(p),
            size,
            mtime_secs: 1,
            mtime_nanos: 2,
            inode: 3,
        };
        vec![
            SentEntry {
                path: "trip".to_owned(),
                source: None,
            },
            SentEntry {
                path: "trip/a".to_owned(),
                source: Some(source("/x/trip/a", 5)),
            },
            SentEntry {
                path: "trip/b".to_owned(),
                source: Some(source("/x/trip/b", 7)),
            },
        ]
    }

    /// A record survives a reload; it is found for the same entries only, and gives the ids
    /// of each device with what it verified; once every device has every file it is
    /// finished and no longer taken up.
    #[test]
    fn an_unfinished_send_is_found_by_its_entries_and_gives_its_ids() {
        let home = tempfile::tempdir().expect("a folder");
        let records = FolderRecords::new(home.path());
        let to: AccountId = "0123456789abcdef0123456789abcdef01234567"
            .parse()
            .expect("an account id");
        let device: DeviceId = "1111111111111111111111111111111111111111111111111111111111111111"
            .parse()
            .expect("a device id");
        let mut record = FolderRecord::new(
            TransferId(9),
            to,
            entries(),
            &[TransferId(10), TransferId(11)],
        );
        let part = record.part(device);
        part.manifest = Some("20".to_owned());
        part.files.insert("10".to_owned(), "30".to_owned());
        part.files.insert("11".to_owned(), "31".to_owned());
        part.verified.insert("30".to_owned());
        records.save(&record).expect("saved");

        let found = records.unfinished(to, &entries()).expect("read");
        assert_eq!(found.as_ref(), Some(&record));
        let again = found.expect("found").again();
        assert_eq!(again.send, TransferId(9));
        assert_eq!(again.files, vec![TransferId(10), TransferId(11)]);
        let d = &again.devices[&device];
        assert_eq!(d.manifest, TransferId(20));
        assert_eq!(d.files, vec![TransferId(30), TransferId(31)]);
        assert_eq!(d.verified, BTreeSet::from([TransferId(30)]));
        assert_eq!(record.verified_sizes()[&device], vec![(TransferId(30), 5)]);

        let mut other = entries();
        other[2].source.as_mut().expect("a file").size = 8;
        assert_eq!(
            records.unfinished(to, &other).expect("read"),
            None,
            "a changed file"
        );

        record.part(device).verified.insert("31".to_owned());
        records.save(&record).expect("saved");
        assert!(record.is_finished());
        assert_eq!(records.unfinished(to, &entries()).expect("read"), None);
    }
}
