//! Transfer records in the home: one JSON file per transfer sent or received, in
//! `<home>/records/`, so that `ferry history` can list them, a re-run `send` can resume
//! under the ids of an unfinished one, and both survive restarts of either side.
//!
//! - A sent file's record is `sent-<group id>.json`; a received one's is
//!   `received-<sender account>-<transfer id>.json`: a peer picks its transfer ids, so a
//!   received record is keyed by its account too (as its partial data is), and one peer can
//!   never overwrite another's record by choosing the same id.
//! - Each write is crash-safe: the whole record goes to a temporary file in the same folder,
//!   is fsynced, and is renamed over the old one (then the folder is fsynced). A crash leaves
//!   the old record or the new, never half of one.
//! - The folder is bounded: past [`MAX_RECORDS`], the oldest records go when one is written.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_driver::sent_file::SentFile;
use ferry_proto::tls::{AccountId, DeviceId};
use ferry_proto::transfer::{Status, TransferId};
use serde::{Deserialize, Serialize};

use crate::failure::Failure;

/// Most records kept; past it, the least recently updated go.
pub(crate) const MAX_RECORDS: usize = 1000;
/// Largest record file read (a record is a few hundred bytes; more is not ours).
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// Which way a transfer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Direction {
    /// We sent it.
    Sent,
    /// We received it.
    Received,
}

/// What a sender knows of its source file, to tell it is still the same file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceFile {
    /// Its canonical path.
    pub(crate) path: PathBuf,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// Its modification time: seconds since the Unix epoch and nanoseconds.
    pub(crate) mtime_secs: i64,
    /// The nanoseconds of the modification time.
    pub(crate) mtime_nanos: u32,
    /// Its inode number (0 where there is none).
    pub(crate) inode: u64,
}

impl SourceFile {
    /// The file at `path` (canonical already), as it is now: what the driver records of a
    /// sent file ([`SentFile::from_metadata`]), kept in the record.
    pub(crate) fn of(path: &Path, meta: &fs::Metadata) -> SourceFile {
        let SentFile {
            path,
            size,
            mtime_secs,
            mtime_nanos,
            inode,
        } = SentFile::from_metadata(path.to_owned(), meta);
        SourceFile {
            path,
            size,
            mtime_secs,
            mtime_nanos,
            inode,
        }
    }
}

/// One device's part of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DevicePart {
    /// The sub-transfer's id on the wire (decimal, as every id in JSON).
    pub(crate) transfer: String,
    /// Jami's name of its status (`finished`, `ongoing`, …); `offered` before any.
    pub(crate) state: String,
    /// Why it ended, when it ended badly.
    pub(crate) reason: Option<String>,
    /// When the state last changed (Unix seconds).
    pub(crate) updated: u64,
}

/// One transfer, sent or received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The record's id: the group's for a sent file, the transfer's for a received one. The
    /// id both sides share is the one on the wire, each device's [`DevicePart::transfer`]:
    /// a receiver's record is named by it, and a sender finds its record by it
    /// ([`Records::sent_with`]), whatever the group.
    pub(crate) id: String,
    /// Which way it went.
    pub(crate) direction: Direction,
    /// The peer's account (the recipient, or the sender).
    pub(crate) peer_account: String,
    /// The file's name as offered.
    pub(crate) name: String,
    /// Its size in bytes.
    pub(crate) size: u64,
    /// Its SHA3-512, once a device verified it.
    pub(crate) sha3_512: Option<String>,
    /// The sender's source file.
    pub(crate) source: Option<SourceFile>,
    /// The receiver's file, once committed.
    pub(crate) final_path: Option<PathBuf>,
    /// Each device's part, by device id.
    pub(crate) devices: BTreeMap<String, DevicePart>,
    /// When the record was made (Unix seconds).
    pub(crate) created: u64,
    /// When it last changed (Unix seconds).
    pub(crate) updated: u64,
}

/// Now, in Unix seconds.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Record {
    /// A new record of a file we send to `to`.
    pub(crate) fn sent(group: TransferId, to: AccountId, source: SourceFile, name: &str) -> Record {
        let now = unix_now();
        Record {
            id: group.to_string(),
            direction: Direction::Sent,
            peer_account: to.to_string(),
            name: name.to_owned(),
            size: source.size,
            sha3_512: None,
            source: Some(source),
            final_path: None,
            devices: BTreeMap::new(),
            created: now,
            updated: now,
        }
    }

    /// A new record of a file `from` offers us.
    pub(crate) fn received(
        transfer: TransferId,
        from: AccountId,
        device: DeviceId,
        name: &str,
        size: u64,
    ) -> Record {
        let now = unix_now();
        let mut devices = BTreeMap::new();
        devices.insert(
            device.to_string(),
            DevicePart {
                transfer: transfer.to_string(),
                state: "offered".to_owned(),
                reason: None,
                updated: now,
            },
        );
        Record {
            id: transfer.to_string(),
            direction: Direction::Received,
            peer_account: from.to_string(),
            name: name.to_owned(),
            size,
            sha3_512: None,
            source: None,
            final_path: None,
            devices,
            created: now,
            updated: now,
        }
    }

    /// The file name this record is kept under.
    fn file_name(&self) -> String {
        match self.direction {
            Direction::Sent => format!("sent-{}.json", self.id),
            Direction::Received => format!("received-{}-{}.json", self.peer_account, self.id),
        }
    }

    /// Sets the state of `device`'s part (adding it, under `transfer`, if new).
    pub(crate) fn set_state(
        &mut self,
        device: DeviceId,
        transfer: TransferId,
        state: &str,
        reason: Option<String>,
    ) {
        let now = unix_now();
        let part = self
            .devices
            .entry(device.to_string())
            .or_insert_with(|| DevicePart {
                transfer: transfer.to_string(),
                state: String::new(),
                reason: None,
                updated: now,
            });
        part.transfer = transfer.to_string();
        part.state = state.to_owned();
        part.reason = reason;
        part.updated = now;
        self.updated = now;
    }

    /// Whether every device's part finished (and there is one).
    pub(crate) fn is_finished(&self) -> bool {
        !self.devices.is_empty()
            && self
                .devices
                .values()
                .all(|p| p.state == Status::Finished.as_str())
    }

    /// The sub-transfer id of each device whose part did not finish: what a send of the
    /// same file again uses, so those devices resume from what they hold.
    pub(crate) fn unfinished_parts(&self) -> BTreeMap<DeviceId, TransferId> {
        self.devices
            .iter()
            .filter(|(_, p)| p.state != Status::Finished.as_str())
            .filter_map(|(d, p)| Some((d.parse().ok()?, TransferId(p.transfer.parse().ok()?))))
            .collect()
    }

    /// The group id of a sent record.
    pub(crate) fn transfer_id(&self) -> Option<TransferId> {
        self.id.parse().ok().map(TransferId)
    }

    /// Whether `id` names this record: its own id, or a device's transfer id (the id its
    /// receiver saw).
    pub(crate) fn named_by(&self, id: TransferId) -> bool {
        let id = id.to_string();
        self.id == id || self.devices.values().any(|p| p.transfer == id)
    }

    /// The ids the devices saw, when one differs from the record's own (a sent record).
    fn device_ids(&self) -> String {
        let ids: Vec<&str> = self
            .devices
            .values()
            .map(|p| p.transfer.as_str())
            .filter(|t| *t != self.id)
            .collect();
        match ids.as_slice() {
            [] => String::new(),
            ids => format!(" (as the devices see it: {})", ids.join(", ")),
        }
    }

    /// One line for `ferry history`.
    pub(crate) fn line(&self) -> String {
        let (way, peer) = match self.direction {
            Direction::Sent => ("sent    ", "to"),
            Direction::Received => ("received", "from"),
        };
        let finished = self
            .devices
            .values()
            .filter(|p| p.state == Status::Finished.as_str())
            .count();
        let state = if self.is_finished() {
            "finished".to_owned()
        } else {
            let last = self
                .devices
                .values()
                .max_by_key(|p| p.updated)
                .map_or("no device yet", |p| p.state.as_str());
            let resumable = self.direction == Direction::Sent || self.final_path.is_none();
            format!(
                "{last}{}",
                if resumable {
                    " (resumable: run the same send again)"
                } else {
                    ""
                }
            )
        };
        format!(
            "{}  {way}  {:?}  {} bytes  {peer} {}  {finished}/{} device(s) {state}  id {}{}",
            utc(self.updated),
            self.name,
            self.size,
            &self.peer_account[..self.peer_account.len().min(12)],
            self.devices.len(),
            self.id,
            self.device_ids()
        )
    }
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rest = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// A sent record claimed by this process ([`Records::claim`]); the lock goes with it, and
/// its file when no one else waits on it.
#[derive(Debug)]
pub(crate) struct Claim {
    _file: fs::File,
    path: PathBuf,
}

impl Drop for Claim {
    fn drop(&mut self) {
        // Removed while still held: a process that opened it meanwhile holds a file no one
        // else finds, and a new claim makes a new one; either way one holder per record.
        let _ = fs::remove_file(&self.path);
    }
}

/// The records folder of a home.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    dir: PathBuf,
}

impl Records {
    /// The records in `home_dir`/records (made when first written).
    pub(crate) fn new(home_dir: &Path) -> Records {
        Records {
            dir: home_dir.join("records"),
        }
    }

    /// Every record, most recently updated first. Files that are not records are skipped.
    pub(crate) fn all(&self) -> Result<Vec<Record>, Failure> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.failure("read", &e)),
        };
        let mut records = Vec::new();
        for entry in entries.flatten().take(MAX_RECORDS * 2) {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json")
                || crate::folder_records::FolderRecords::is_one(
                    &entry.file_name().to_string_lossy(),
                )
            {
                continue;
            }
            records.extend(read_record(&entry, MAX_RECORD_BYTES, "transfer record"));
        }
        Ok(newest_first(records, |r: &Record| (r.updated, &r.id)))
    }

    /// The most recent unfinished record of a send of `source` (same path, size,
    /// modification time and inode) to `to`.
    pub(crate) fn unfinished_send(
        &self,
        to: AccountId,
        source: &SourceFile,
    ) -> Result<Option<Record>, Failure> {
        let to = to.to_string();
        Ok(self.all()?.into_iter().find(|r| {
            r.direction == Direction::Sent
                && r.peer_account == to
                && r.source.as_ref() == Some(source)
                && !r.is_finished()
        }))
    }

    /// The record of a file we sent that `id` names: the group's id, or the transfer id one
    /// of its devices saw (and a request to send it again names).
    pub(crate) fn sent_with(&self, id: TransferId) -> Result<Option<Record>, Failure> {
        Ok(self
            .all()?
            .into_iter()
            .find(|r| r.direction == Direction::Sent && r.named_by(id)))
    }

    /// The record of a file `from` sent us as `id`.
    pub(crate) fn received_as(
        &self,
        id: TransferId,
        from: Option<AccountId>,
    ) -> Result<Option<Record>, Failure> {
        Ok(self.all()?.into_iter().find(|r| {
            r.direction == Direction::Received
                && r.named_by(id)
                && from.is_none_or(|a| r.peer_account == a.to_string())
        }))
    }

    /// Claims the sent record `id` for this process: a lock (`flock`) on
    /// `sent-<id>.lock` in the records folder, held until the [`Claim`] is dropped. `None`
    /// when another process holds it: two `send`s of one file at once never take up one
    /// record (each would resume into the other's data under one id).
    pub(crate) fn claim(&self, id: &str) -> Result<Option<Claim>, Failure> {
        fs::create_dir_all(&self.dir).map_err(|e| self.failure("create", &e))?;
        let path = self.dir.join(format!("sent-{id}.lock"));
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| self.failure("write in", &e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Claim { _file: file, path })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(self.failure("lock in", &e)),
        }
    }

    /// An unfinished send `found` (by its record `id`) is taken up only if no other `send`
    /// holds it now: the claim and the record, or neither.
    pub(crate) fn take_up<R>(
        &self,
        found: Option<R>,
        id: impl Fn(&R) -> &str,
    ) -> Result<(Option<Claim>, Option<R>), Failure> {
        let Some(r) = found else {
            return Ok((None, None));
        };
        match self.claim(id(&r))? {
            Some(c) => Ok((Some(c), Some(r))),
            None => {
                tracing::info!(
                    "the unfinished send {} is being taken up by another process",
                    id(&r)
                );
                Ok((None, None))
            }
        }
    }

    /// Writes `record` (crash-safe: a temporary file, fsynced, renamed over the old one).
    pub(crate) fn save(&self, record: &Record) -> Result<(), Failure> {
        let bytes = serde_json::to_vec_pretty(record)
            .map_err(|e| Failure::Internal(format!("a record that is not JSON: {e}")))?;
        write_whole(&self.dir, &record.file_name(), &bytes)?;
        self.prune()
    }

    /// Removes the least recently updated records past [`MAX_RECORDS`].
    fn prune(&self) -> Result<(), Failure> {
        let records = self.all()?;
        for old in records.iter().skip(MAX_RECORDS) {
            let _ = fs::remove_file(self.dir.join(old.file_name()));
        }
        Ok(())
    }

    fn failure(&self, what: &str, e: &std::io::Error) -> Failure {
        folder_failure(&self.dir, what, e)
    }
}

/// Why the records folder `dir` could not be used.
pub(crate) fn folder_failure(dir: &Path, what: &str, e: &std::io::Error) -> Failure {
    Failure::Usage(format!(
        "cannot {what} the records folder {}: {e}",
        dir.display()
    ))
}

/// One file of a records folder: read if it is a file of at most `max_bytes`, parsed as
/// `T`, with its modification time (a record is rewritten whole at each update: that time,
/// to the nanosecond, orders records updated within the same second). `None` for anything
/// else, with a warning naming `what` for a file that does not read or parse.
pub(crate) fn read_record<T: serde::de::DeserializeOwned>(
    entry: &fs::DirEntry,
    max_bytes: u64,
    what: &str,
) -> Option<(T, Option<SystemTime>)> {
    let meta = entry.metadata().ok()?;
    if !meta.is_file() || meta.len() > max_bytes {
        return None;
    }
    let written = meta.modified().ok();
    let path = entry.path();
    match fs::read(&path).map(|bytes| serde_json::from_slice::<T>(&bytes)) {
        Ok(Ok(record)) => Some((record, written)),
        Ok(Err(e)) => {
            tracing::warn!("{}: not a {what} ({e})", path.display());
            None
        }
        Err(e) => {
            tracing::warn!("{}: {e}", path.display());
            None
        }
    }
}

/// Records most recently updated first: by `key`'s update time, then the file's, then
/// `key`'s id.
pub(crate) fn newest_first<T>(
    mut records: Vec<(T, Option<SystemTime>)>,
    key: impl Fn(&T) -> (u64, &str),
) -> Vec<T> {
    records.sort_by(|(a, a_written), (b, b_written)| {
        let ((a_updated, a_id), (b_updated, b_id)) = (key(a), key(b));
        (b_updated, b_written, b_id).cmp(&(a_updated, a_written, a_id))
    });
    records.into_iter().map(|(record, _)| record).collect()
}

/// Writes `bytes` as the file `name` in the records folder `dir` (made if missing),
/// crash-safe: a temporary file in the same folder, fsynced, renamed over the old one, then
/// the folder fsynced. A crash leaves the old content or the new, never half of one.
pub(crate) fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Failure> {
    fs::create_dir_all(dir).map_err(|e| folder_failure(dir, "create", &e))?;
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| folder_failure(dir, "write in", &e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| folder_failure(dir, "write in", &e))?;
    tmp.persist(dir.join(name))
        .map_err(|e| folder_failure(dir, "write in", &e.error))?;
    // The rename is durable once the folder is.
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(path: &str) -> SourceFile {
        SourceFile {
            path: path.into(),
            size: 10,
            mtime_secs: 1_700_000_000,
            mtime_nanos: 5,
            inode: 42,
        }
    }

    #[test]
    fn records_survive_a_reload_and_an_unfinished_send_is_found_by_its_file() {
        // SECURITY: row 124
        let home = tempfile::tempdir().expect("temp dir");
        let records = Records::new(home.path());
        let bob = AccountId([7; 20]);
        let device = DeviceId([9; 32]);
        let mut sent = Record::sent(TransferId(5), bob, source("/a"), "a");
        sent.set_state(
            device,
            TransferId(6),
            "timeout_expired",
            Some("lost".into()),
        );
        records.save(&sent).expect("save");
        let got = records
            .unfinished_send(bob, &source("/a"))
            .expect("read")
            .expect("found");
        assert_eq!(got, sent);
        assert_eq!(
            got.unfinished_parts(),
            BTreeMap::from([(device, TransferId(6))])
        );
        let mut changed = source("/a");
        changed.mtime_nanos = 6;
        assert_eq!(records.unfinished_send(bob, &changed).expect("read"), None);
        assert_eq!(
            records
                .unfinished_send(AccountId([8; 20]), &source("/a"))
                .expect("read"),
            None
        );
        sent.set_state(device, TransferId(6), "finished", None);
        records.save(&sent).expect("save");
        assert_eq!(
            records.unfinished_send(bob, &source("/a")).expect("read"),
            None
        );
        assert_eq!(records.all().expect("read"), [sent]);
    }

    #[test]
    fn records_updated_within_one_second_list_the_last_written_first() {
        let home = tempfile::tempdir().expect("temp dir");
        let records = Records::new(home.path());
        let bob = AccountId([7; 20]);
        // Ids chosen so that ordering by id would put them the wrong way round.
        let mut first = Record::sent(TransferId(9), bob, source("/first"), "first");
        let mut second = Record::sent(TransferId(1), bob, source("/second"), "second");
        first.updated = 1_800_000_000;
        second.updated = 1_800_000_000;
        records.save(&first).expect("save");
        records.save(&second).expect("save");
        // The kernel stamps files with a coarse clock: two saves a moment apart may share a
        // modification time, so the test sets them as two updates a millisecond apart would.
        use std::time::Duration;
        let at = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for (record, offset) in [(&first, 1), (&second, 2)] {
            let file = fs::File::options()
                .write(true)
                .open(records.dir.join(record.file_name()))
                .expect("the record's file");
            file.set_modified(at + Duration::from_millis(offset))
                .expect("set mtime");
        }
        assert_eq!(records.all().expect("read"), [second, first]);
    }

    #[test]
    fn two_senders_choosing_one_id_keep_two_records() {
        // SECURITY: row 124
        let home = tempfile::tempdir().expect("temp dir");
        let records = Records::new(home.path());
        let device = DeviceId([1; 32]);
        for from in [AccountId([2; 20]), AccountId([3; 20])] {
            let r = Record::received(TransferId(77), from, device, "x", 1);
            records.save(&r).expect("save");
        }
        assert_eq!(records.all().expect("read").len(), 2);
    }

    #[test]
    fn a_sender_finds_its_record_by_the_id_its_receiver_saw() {
        let home = tempfile::tempdir().expect("temp dir");
        let records = Records::new(home.path());
        let bob = AccountId([7; 20]);
        let (group, sub) = (TransferId(5), TransferId(6));
        let mut sent = Record::sent(group, bob, source("/a"), "a");
        sent.set_state(DeviceId([9; 32]), sub, "ongoing", None);
        records.save(&sent).expect("save");
        let received = Record::received(sub, AccountId([1; 20]), DeviceId([2; 32]), "a", 10);
        records.save(&received).expect("save");
        assert_eq!(records.sent_with(sub).expect("read"), Some(sent.clone()));
        assert_eq!(records.sent_with(group).expect("read"), Some(sent.clone()));
        assert_eq!(records.sent_with(TransferId(7)).expect("read"), None);
        assert!(
            sent.line().contains("id 5 (as the devices see it: 6)"),
            "{}",
            sent.line()
        );
        assert_eq!(
            records
                .received_as(sub, Some(AccountId([1; 20])))
                .expect("read"),
            Some(received)
        );
        assert_eq!(records.received_as(sub, Some(bob)).expect("read"), None);
    }

    #[test]
    fn a_sent_record_is_claimed_by_one_process_at_a_time() {
        let home = tempfile::tempdir().expect("temp dir");
        let records = Records::new(home.path());
        let first = records.claim("5").expect("claim");
        assert!(first.is_some());
        assert!(records.claim("5").expect("claim").is_none(), "held");
        assert!(
            records.claim("6").expect("claim").is_some(),
            "another record"
        );
        drop(first);
        assert!(records.claim("5").expect("claim").is_some(), "let go");
        assert!(
            records.all().expect("read").is_empty(),
            "lock files are not records"
        );
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_628_000), "2026-12-07 07:20:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
    }
}
