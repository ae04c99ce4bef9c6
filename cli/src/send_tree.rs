//! `ferry send PATH… --to ACCOUNT` with several paths or a folder: one offer per device
//! (`PROTOCOL.md` §14), the device's bar summing its files, and a bar for all devices.
//!
//! A device that announced `manifest` gets the whole send as one offer it accepts or refuses;
//! its phases are those of the offer (connecting, waiting for acceptance, sending, done). A
//! device that did not (Jami, an older Ferry) gets each top-level file as its own offer and
//! a clear failure for files inside folders. The command succeeds when one device has every
//! file, verified.
//!
//! Each send is recorded ([`folder_records`](crate::folder_records)): the same paths sent
//! again to the same contact, while a device lacks some file, take the send up under its
//! ids — each device is offered its manifest again, is not sent what it verified, and
//! resumes the file it kept part of.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_driver::sent_tree::SkipReason;
use ferry_proto::io::Event;
use ferry_proto::node::{LOOKUP_TIMEOUT, SendEntry, SendKind};
use ferry_proto::tls::{AccountId, DeviceId};
use ferry_proto::transfer::manifest::EntryKind;
use ferry_proto::transfer::{Reason, Status, TransferId};
use serde_json::json;

use crate::contacts::Contacts;
use crate::failure::Failure;
use crate::folder_records::{FolderRecord, FolderRecords, SentEntry};
use crate::home::Home;
use crate::outcome::{combine, failure_of};
use crate::records::{Records, SourceFile};
use crate::report::{Report, count};
use crate::session::{self, NetOptions};

/// How often a line says the send still looks up the account's devices.
const TICK: Duration = Duration::from_secs(5);
/// How long, once every device ended, to wait for verdicts still on their way.
const VERDICT_GRACE: Duration = Duration::from_secs(2);
/// Longest a change to the send's record waits to be written (changes within it are
/// written together: a few hundred files verify in a second).
const RECORD_EVERY: Duration = Duration::from_millis(200);

/// What one device gets.
struct Device {
    /// The key of its bar: its manifest, or its first file for a device without manifests.
    line: TransferId,
    /// Its manifest, when it reads them.
    manifest: Option<TransferId>,
    /// Its files: bytes done and size of each.
    files: BTreeMap<TransferId, (u64, u64)>,
    /// The sum of `files`' bytes done.
    sum: u64,
    verified: BTreeSet<TransferId>,
    ended: BTreeMap<TransferId, (Status, Option<Reason>)>,
    /// Bytes it had before this run: files verified then, and the parts it kept and resumed
    /// from (not counted in the rate).
    had: u64,
    /// The manifest's own end, for a device that reads them.
    offer_end: Option<(Status, Option<Reason>)>,
    phase: &'static str,
    /// Its data phase: its first byte's progress, and its last file's verdict.
    data: crate::rate::DataPhase,
}

impl Device {
    fn label(id: &DeviceId) -> String {
        format!("device {}", &id.to_string()[..12])
    }

    fn done(&self) -> u64 {
        self.sum
    }

    /// A file's bytes done: its count, and the device's sum, kept as it goes (not summed
    /// over every file at each event: a send of 10,000 files spent its time doing that).
    fn set(&mut self, transfer: TransferId, done: u64, size: u64) {
        let before = self
            .files
            .insert(transfer, (done, size))
            .map_or(0, |(d, _)| d);
        self.sum = self.sum - before + done;
    }

    /// Whether nothing more will happen for it: its offer ended, or (without manifests)
    /// every file ended and each that finished has its verdict.
    fn settled(&self) -> bool {
        match self.manifest {
            Some(_) => self.offer_end.is_some(),
            None => {
                !self.files.is_empty()
                    && self.files.keys().all(|t| match self.ended.get(t) {
                        Some((Status::Finished, _)) => self.verified.contains(t),
                        Some(_) => true,
                        None => false,
                    })
            }
        }
    }

    /// Whether it has every file, verified.
    fn delivered(&self, files: usize) -> bool {
        self.verified.len() == files
    }
}

/// Sends `paths` to every device of `to`; `Ok` when at least one device has every file.
pub(crate) async fn run(
    home: &Home,
    net: &NetOptions,
    paths: &[PathBuf],
    follow_links: bool,
    to: &str,
    json_mode: bool,
) -> Result<(), Failure> {
    let account: AccountId = Contacts::load(home)?.resolve(to)?;
    let mut next = 0;
    let tree = ferry_driver::sent_tree::walk(paths, follow_links, |_| {
        next += 1;
        TransferId(next)
    })
    .map_err(|e| Failure::Usage(e.to_string()))?;
    let manifest = &tree.manifest;
    let (files, total) = (manifest.file_count(), manifest.total_size());
    let folders = manifest.entries().len() - files;
    let entries: Vec<SendEntry> = manifest
        .entries()
        .iter()
        .map(|e| SendEntry {
            path: e.path.clone(),
            kind: match e.kind {
                EntryKind::Folder => SendKind::Folder,
                EntryKind::File { id, size } => SendKind::File {
                    source: tree.sources[&id].to_string_lossy().into_owned(),
                    size,
                },
            },
        })
        .collect();
    let sent_entries = sent_entries(&tree)?;
    let folder_records = FolderRecords::new(home.dir());
    let records = Records::new(home.dir());
    // An unfinished send of these very entries is taken up only if no other `send` holds it.
    let found = folder_records.unfinished(account, &sent_entries)?;
    let (mut claim, earlier) = records.take_up(found, |r| &r.id)?;

    let folder = home.dir().join("received");
    let session = session::start(home, net, &folder, None, None)?;
    let mut ctrl_c = session::ctrl_c().await;
    let mut report = Report::new(json_mode);
    for s in &tree.skipped {
        let why = match s.why {
            SkipReason::Symlink => "a symlink (--follow-links follows them)",
            SkipReason::Loop => "a symlink to a folder that holds it",
            _ => "not a file or a folder (a FIFO, socket or device)",
        };
        report.json(json!({"event": "left_out", "path": s.path, "why": why}));
        report.line(&format!("left out: {}: {why}", s.path.display()));
    }
    report.add_aggregate("all devices", total);
    let names: Vec<&str> = manifest.top_names(3);
    report.line(&format!(
        "Sending {} in {} ({}): {} to every device of {to} (looking them up for up to {} s)",
        count(files, "file"),
        count(folders, "folder"),
        crate::report::size_text(total),
        names.join(", "),
        LOOKUP_TIMEOUT.as_secs()
    ));
    let again = earlier.as_ref().map(FolderRecord::again);
    let sending = session
        .handle
        .call(move |node, now| match again {
            Some(again) => node.send_files_again(now, account, entries, again),
            None => node.send_files(now, account, entries),
        })
        .await
        .map_err(|_| Failure::Internal("the node stopped".to_owned()))?
        .map_err(|e| Failure::Usage(e.to_string()))?;
    let send = sending.send;
    let groups: BTreeSet<TransferId> = sending.files.iter().copied().collect();
    let taken_up = earlier.as_ref().is_some_and(|r| r.id == send.to_string());
    if !taken_up {
        // Ours before it is written, so that no other `send` takes it up while we run.
        claim = records.claim(&send.to_string())?;
    }
    let _claim = claim;
    // What each device had before this run, and the files every device had (not sent).
    let had = earlier
        .as_ref()
        .filter(|_| taken_up)
        .map(FolderRecord::verified_sizes)
        .unwrap_or_default();
    let delivered_groups: BTreeSet<TransferId> = (0..files)
        .filter(|k| {
            earlier
                .as_ref()
                .is_some_and(|r| taken_up && r.delivered_to_all(*k))
        })
        .filter_map(|k| sending.files.get(k).copied())
        .collect();
    let mut record = match earlier {
        Some(mut r) if taken_up => {
            r.groups = sending.files.iter().map(TransferId::to_string).collect();
            r
        }
        _ => FolderRecord::new(send, account, sent_entries, &sending.files),
    };
    let already: Vec<DeviceId> = had
        .iter()
        .filter(|(_, files_had)| files_had.len() == files)
        .map(|(d, _)| *d)
        .collect();
    if taken_up {
        report.line(&format!(
            "Taking up the unfinished send {send} of these files: each device is sent only \
             what it has not verified, and resumes the file it kept part of"
        ));
        for d in &already {
            report.line(&format!(
                "{}: has every file already (an earlier send)",
                Device::label(d)
            ));
        }
    }
    keep(&folder_records, &record);
    if let Err(e) = folder_records.prune() {
        tracing::warn!("old send records are not pruned: {e}");
    }
    report.json(json!({
        "event": "sending_files",
        "send": send.to_string(),
        "files": files,
        "folders": folders,
        "size": total,
        "to": account.to_string(),
        "from_device": session.device.device.id().to_string(),
        "again": taken_up,
    }));
    report.json(json!({"event": "phase", "phase": "looking_up", "to": account.to_string()}));
    let mut saved = Instant::now();
    let mut dirty = false;

    let mut devices: BTreeMap<DeviceId, Device> = BTreeMap::new();
    // Each file's transfer to a device, and the device.
    let mut subs: BTreeMap<TransferId, DeviceId> = BTreeMap::new();
    let mut unknown_groups = BTreeSet::new();
    let looking_since = Instant::now();
    let mut tick = tokio::time::interval_at((looking_since + TICK).into(), TICK);
    let mut cancelled_here = false;
    let mut grace: Option<Instant> = None;
    loop {
        if devices.is_empty()
            && !groups.is_empty()
            && unknown_groups.len() + delivered_groups.len() >= groups.len()
        {
            break;
        }
        let write_record = dirty.then(|| tokio::time::sleep_until((saved + RECORD_EVERY).into()));
        if !devices.is_empty() && devices.values().all(Device::settled) {
            break;
        }
        // A file that finished without its verdict yet: not waited for long.
        let ended = !devices.is_empty()
            && devices.values().all(|d| match d.manifest {
                Some(_) => d.offer_end.is_some(),
                None => !d.files.is_empty() && d.ended.len() == d.files.len(),
            });
        if ended && grace.is_none() {
            grace = Some(Instant::now() + VERDICT_GRACE);
        }
        let sleep = grace.map(|at| tokio::time::sleep_until(at.into()));
        tokio::select! {
            event = session.events.recv() => {
                let event = session::node_event(event)?;
                match event {
                    // A device's manifest (its offer of the whole send).
                    Event::SubTransfer { group, transfer, device } if group == send => {
                        record.part(device).manifest = Some(transfer.to_string());
                        dirty = true;
                        let d = devices.entry(device).or_insert_with(|| new_device(transfer, had.get(&device)));
                        d.manifest = Some(transfer);
                        d.line = transfer;
                        add_device(&mut report, device, transfer, total);
                    }
                    // One file to one device.
                    Event::SubTransfer { group, transfer, device } if groups.contains(&group) => {
                        subs.insert(transfer, device);
                        record.part(device).files.insert(group.to_string(), transfer.to_string());
                        dirty = true;
                        let known = devices.contains_key(&device);
                        let d = devices.entry(device).or_insert_with(|| new_device(transfer, had.get(&device)));
                        d.set(transfer, 0, 0);
                        if !known {
                            // A device without manifests: its first file names its bar.
                            add_device(&mut report, device, transfer, total);
                        }
                    }
                    Event::Progress { transfer, done, total: size } => {
                        if let Some(d) = subs.get(&transfer).and_then(|dev| devices.get_mut(dev)) {
                            d.data.0.get_or_insert_with(Instant::now);
                            d.set(transfer, done, size);
                            let line = d.line;
                            let done = d.done();
                            report.progress(line, done, total);
                            let best = devices.values().map(Device::done).max().unwrap_or(0);
                            report.aggregate(send, best, total, "ongoing");
                        }
                    }
                    Event::Status { transfer, status, reason } => {
                        let offer_of = devices.iter().find(|(_, d)| d.manifest == Some(transfer)).map(|(id, _)| *id);
                        if let Some(device) = offer_of {
                            record.part(device).state = status.as_str().to_owned();
                            dirty = true;
                            offer_status(&mut report, &mut devices, device, transfer, status, reason);
                        } else if let Some(device) = subs.get(&transfer).copied() {
                            file_status(&mut report, &mut devices, device, transfer, status, reason);
                        }
                    }
                    Event::Verified { transfer, digest, .. } => {
                        if let Some(device) = subs.get(&transfer) {
                            record.part(*device).verified.insert(transfer.to_string());
                            dirty = true;
                        }
                        if let Some(d) = subs.get(&transfer).and_then(|dev| devices.get_mut(dev)) {
                            d.verified.insert(transfer);
                            report.json(json!({
                                "event": "verified",
                                "transfer": transfer.to_string(),
                                "sha3_512": digest.to_string(),
                            }));
                            if d.delivered(files) {
                                d.data.1.get_or_insert_with(Instant::now);
                            }
                        }
                    }
                    Event::Aggregate { group, status: Status::UnjoinablePeer, .. }
                        if groups.contains(&group) && devices.is_empty() =>
                    {
                        unknown_groups.insert(group);
                    }
                    // A send of folders only that found no device.
                    Event::Aggregate { group, status: Status::UnjoinablePeer, .. }
                        if group == send && devices.is_empty() => break,
                    Event::Resuming { transfer, offset, total: size, verified } => {
                        if let Some(d) = subs.get(&transfer).and_then(|dev| devices.get_mut(dev)) {
                            d.had += offset;
                            report.resuming_in(d.line, transfer, offset, size, verified);
                        }
                    }
                    Event::Connected { device, path } => report.connected(&device, &path),
                    Event::IncomingTransfer { transfer, .. } => crate::send::refuse_incoming(&session, transfer),
                    _ => {}
                }
            }
            _ = &mut ctrl_c, if !cancelled_here => {
                cancelled_here = true;
                report.line("Cancelling…");
                let _ = session.handle.command(move |node, now| node.cancel(now, send));
                if devices.is_empty() {
                    break;
                }
            }
            _ = tick.tick() => {
                if devices.is_empty() {
                    let waited = looking_since.elapsed().as_secs();
                    report.line(&format!("looking up {to}'s devices… {waited} s"));
                }
            }
            () = async { if let Some(s) = write_record { s.await } }, if dirty => {
                keep(&folder_records, &record);
                (saved, dirty) = (Instant::now(), false);
            }
            () = async { if let Some(s) = sleep { s.await } }, if grace.is_some() => break,
        }
    }
    report.close();
    keep(&folder_records, &record);
    session.close().await;

    let mut delivered: Vec<DeviceId> = devices
        .iter()
        .filter(|(_, d)| d.delivered(files))
        .map(|(id, _)| *id)
        .collect();
    delivered.extend(already.iter().filter(|d| !devices.contains_key(d)));
    let reached = devices.len() + already.iter().filter(|d| !devices.contains_key(d)).count();
    if !delivered.is_empty() {
        report.json(json!({
            "event": "done",
            "delivered": delivered.len(),
            "devices": reached,
            "files": files,
        }));
        let to = format!("to {} of {}", delivered.len(), count(reached, "device"));
        report.line(&match files {
            // Folders only: nothing to verify.
            0 => format!("Delivered {} {to}", count(folders, "folder")),
            n => format!(
                "Delivered {} {to}, each SHA3-512 verified",
                count(n, "file")
            ),
        });
        // The rate is the data phase's of the device that had every file first (see
        // `rate::first_to_end`).
        let fastest = crate::rate::first_to_end(devices.iter().map(|(id, d)| ((id, d), d.data)));
        if let Some(((id, d), t)) = fastest {
            // The bytes that moved in this run, not those the device had.
            let moved = d.done().saturating_sub(d.had);
            let whom = if delivered.len() > 1 {
                format!(" to {}, the first to verify", Device::label(id))
            } else {
                String::new()
            };
            report.line(&format!("{}{whom}", crate::rate::throughput_text(moved, t)));
        }
        return Ok(());
    }
    if cancelled_here {
        return Err(Failure::Cancelled("cancelled here".to_owned()));
    }
    if devices.is_empty() {
        return Err(crate::send::no_device_of(to));
    }
    let failures = devices
        .iter()
        .map(|(id, d)| {
            let label = Device::label(id);
            let end = d
                .offer_end
                .clone()
                .or_else(|| d.ended.values().find(|(s, _)| s.is_error()).cloned());
            match end {
                Some((status, reason)) => failure_of(status, reason.as_ref(), &label),
                None => Failure::Unreachable(format!("{label}: no answer")),
            }
        })
        .collect();
    Err(combine(failures).unwrap_or_else(|| Failure::Internal("no outcome".to_owned())))
}

/// A device first heard of, with the files it verified in an earlier send of these entries.
fn new_device(line: TransferId, had: Option<&Vec<(TransferId, u64)>>) -> Device {
    let had = had.map_or(&[][..], Vec::as_slice);
    Device {
        line,
        manifest: None,
        files: had.iter().map(|(t, size)| (*t, (*size, *size))).collect(),
        sum: had.iter().map(|(_, size)| size).sum(),
        had: had.iter().map(|(_, size)| size).sum(),
        verified: had.iter().map(|(t, _)| *t).collect(),
        ended: BTreeMap::new(),
        offer_end: None,
        phase: "connecting",
        data: (None, None),
    }
}

fn add_device(report: &mut Report, device: DeviceId, line: TransferId, total: u64) {
    let label = Device::label(&device);
    report.json(json!({
        "event": "device",
        "transfer": line.to_string(),
        "device": device.to_string(),
        "label": label,
    }));
    report.add(line, label, total);
    report.phase(line, "connecting", "found, connecting", None);
}

/// The offer to a device moved.
fn offer_status(
    report: &mut Report,
    devices: &mut BTreeMap<DeviceId, Device>,
    device: DeviceId,
    offer: TransferId,
    status: Status,
    reason: Option<Reason>,
) {
    let Some(d) = devices.get_mut(&device) else {
        return;
    };
    report.status(offer, status, reason.as_ref());
    let (phase, text) = match status {
        Status::WaitPeerAcceptance => (
            "waiting_for_acceptance",
            "connected, waiting for acceptance of the whole offer".to_owned(),
        ),
        Status::Ongoing => ("sending", "accepted, sending".to_owned()),
        Status::Finished => ("done", "done, every file's SHA3-512 verified".to_owned()),
        s if s.is_error() => (
            "failed",
            match &reason {
                Some(r) => format!("{s} ({r})"),
                None => s.to_string(),
            },
        ),
        _ => return,
    };
    if status.is_final() {
        d.offer_end = Some((status, reason));
    }
    if d.phase == phase {
        return;
    }
    d.phase = phase;
    match phase {
        "failed" => {
            report.json(json!({
                "event": "phase",
                "transfer": offer.to_string(),
                "label": Device::label(&device),
                "phase": "failed",
                "detail": text,
            }));
            report.fail(offer, &text);
        }
        "done" => {
            report.json(json!({
                "event": "phase",
                "transfer": offer.to_string(),
                "label": Device::label(&device),
                "phase": "done",
                "detail": null,
            }));
            report.finish(offer, &text);
        }
        _ => report.phase(offer, phase, &text, None),
    }
}

/// One file to a device moved: counted; for a device without manifests, its phases too.
fn file_status(
    report: &mut Report,
    devices: &mut BTreeMap<DeviceId, Device>,
    device: DeviceId,
    transfer: TransferId,
    status: Status,
    reason: Option<Reason>,
) {
    let Some(d) = devices.get_mut(&device) else {
        return;
    };
    report.status(transfer, status, reason.as_ref());
    if status.is_error() {
        let text = match &reason {
            Some(r) => format!("{status} ({r})"),
            None => status.to_string(),
        };
        report.line(&format!(
            "{}: a file failed: {text}",
            Device::label(&device)
        ));
    }
    if status.is_final() {
        d.ended.insert(transfer, (status, reason));
    }
    if d.manifest.is_none() && d.ended.len() == d.files.len() {
        let line = d.line;
        match d.verified.len() == d.files.len() {
            true => report.finish(line, "done, every file it reads verified"),
            false => report.fail(line, "some files could not be sent to this device"),
        }
    }
}

/// What the send's record keeps of each entry: its path and, for a file, its source as it
/// is now (canonical path, size, modification time, inode).
fn sent_entries(tree: &ferry_driver::sent_tree::SentTree) -> Result<Vec<SentEntry>, Failure> {
    tree.manifest
        .entries()
        .iter()
        .map(|e| {
            let source = match e.kind {
                EntryKind::Folder => None,
                EntryKind::File { id, .. } => {
                    let path = &tree.sources[&id];
                    let meta = std::fs::metadata(path).map_err(|err| {
                        Failure::Usage(format!("cannot read {}: {err}", path.display()))
                    })?;
                    Some(SourceFile::of(path, &meta))
                }
            };
            Ok(SentEntry {
                path: e.path.to_string(),
                source,
            })
        })
        .collect()
}

/// Writes the send's record; a record that cannot be written is said, and the send goes on.
fn keep(records: &FolderRecords, record: &FolderRecord) {
    if let Err(e) = records.save(record) {
        tracing::warn!("the send's record is not kept: {e}");
    }
}
