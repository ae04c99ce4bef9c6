//! `ferry send FILE --to ACCOUNT`: the file goes to every device of the account; each device
//! has its own progress, and the optimistic aggregate sums them up.
//!
//! Deadlines a person meets: an account none of whose devices is announced is reported after
//! [`LOOKUP_TIMEOUT`] (15 s), with a line every [`TICK`] while looking; a device that is
//! announced but does not answer is given up after the node's `ANSWER_TIMEOUT` (30 s), or
//! [`UNJOINED_GRACE`](ferry_proto::node::UNJOINED_GRACE) (3 s) after another device of the
//! account verified the file ("not reached (offline?)"). Files are not queued for offline
//! devices yet: the same send, run again when the device is online, reaches it.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_proto::io::Event;
use ferry_proto::node::LOOKUP_TIMEOUT;
use ferry_proto::tls::{AccountId, DeviceId};
use ferry_proto::transfer::{Reason, Status, TransferId};
use serde_json::json;

use crate::contacts::Contacts;
use crate::failure::Failure;
use crate::home::Home;
use crate::outcome::{combine, failure_of};
use crate::records::{Record, Records, SourceFile, unix_now};
use crate::report::Report;
use crate::session::{self, NetOptions};

/// How long, once every device's transfer ended, to wait for a digest verdict still on its
/// way.
const VERDICT_GRACE: Duration = Duration::from_secs(2);
/// How often a line says the send still looks up the account's devices, or still waits for
/// a device to answer.
const TICK: Duration = Duration::from_secs(5);

/// One device's sub-transfer.
struct Sub {
    device: DeviceId,
    /// What the device kept from an earlier try: where its transfer started.
    resumed: u64,
    status: Option<(Status, Option<Reason>)>,
    verified: Option<String>,
    /// When it was found (for "no answer yet" lines while it connects).
    found: Instant,
    /// The last phase reported.
    phase: &'static str,
    /// Its data phase: its first byte's progress, and its verdict.
    data: crate::rate::DataPhase,
}

impl Sub {
    fn label(&self) -> String {
        format!("device {}", &self.device.to_string()[..12])
    }

    /// Whether its device has not answered yet: connecting, nothing from it.
    fn connecting(&self) -> bool {
        self.phase == "connecting"
    }

    fn ended(&self) -> bool {
        self.status.as_ref().is_some_and(|(s, _)| s.is_final())
    }

    /// Ended and, if it finished, its verdict known.
    fn settled(&self) -> bool {
        match &self.status {
            Some((Status::Finished, _)) => self.verified.is_some(),
            Some((s, _)) => s.is_final(),
            None => false,
        }
    }
}

/// Writes `record`; a record that cannot be written is said, and the transfer goes on.
fn keep(records: &Records, record: &Record) {
    if let Err(e) = records.save(record) {
        tracing::warn!("the transfer record is not kept: {e}");
    }
}

/// Sends `file` to every device of `to`; `Ok` when at least one device received it and its
/// SHA3-512 matched.
pub(crate) async fn run(
    home: &Home,
    net: &NetOptions,
    file: &Path,
    to: &str,
    json_mode: bool,
) -> Result<(), Failure> {
    let account: AccountId = Contacts::load(home)?.resolve(to)?;
    let unreadable =
        |e: std::io::Error| Failure::Usage(format!("cannot read {}: {e}", file.display()));
    let meta = std::fs::metadata(file).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(Failure::Usage(format!("{} is not a file", file.display())));
    }
    std::fs::File::open(file).map_err(unreadable)?;
    let source = std::fs::canonicalize(file).map_err(unreadable)?;
    let name = source
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Failure::Usage(format!("{} has no file name", file.display())))?;
    let size = meta.len();
    let records = Records::new(home.dir());
    let source_file = SourceFile::of(&source, &meta);
    // An unfinished send of this file is taken up only if no other `send` holds it now.
    let found = records.unfinished_send(account, &source_file)?;
    let (mut claim, earlier) = records.take_up(found, |r| &r.id)?;

    // A sender takes no files: its driver is named a folder it never makes.
    let folder = home.dir().join("received");
    let session = session::start(home, net, &folder, None, None)?;
    let mut ctrl_c = session::ctrl_c().await;
    let mut report = Report::new(json_mode);
    report.add_aggregate("all devices", size);
    report.line(&format!(
        "Sending {name} ({}) to every device of {to} (looking them up for up to {} s)",
        crate::report::size_text(size),
        LOOKUP_TIMEOUT.as_secs()
    ));
    let source_text = source.to_string_lossy().into_owned();
    let sent_name = name.clone();
    // An unfinished send of this very file (path, size, modification time, inode) to this
    // account is taken up again under its ids: each device that kept its part resumes.
    let again = earlier
        .as_ref()
        .and_then(|r| Some((r.transfer_id()?, r.unfinished_parts())));
    let group = session
        .handle
        .call(move |node, now| match again {
            Some((group, parts)) => {
                node.send_file_again(now, account, source_text, sent_name, group, parts)
            }
            None => node.send_file(now, account, source_text, sent_name),
        })
        .await
        .map_err(|_| Failure::Internal("the node stopped".to_owned()))?;
    let taken_up = earlier
        .as_ref()
        .is_some_and(|r| r.transfer_id() == Some(group));
    if !taken_up {
        // Ours before it is written, so that no other `send` takes it up while we run.
        claim = records.claim(&group.to_string())?;
    }
    let _claim = claim;
    let mut record = match earlier {
        Some(mut r) if taken_up => {
            report.line(&format!(
                "Taking up the unfinished send {group} of this file: a device that kept what \
                 arrived resumes from it"
            ));
            r.updated = unix_now();
            r
        }
        _ => Record::sent(group, account, source_file, &name),
    };
    keep(&records, &record);
    report.json(json!({
        "event": "sending",
        "group": group.to_string(),
        "file": source,
        "name": name,
        "size": size,
        "to": account.to_string(),
        "from_device": session.device.device.id().to_string(),
        "again": taken_up,
    }));

    report.json(json!({"event": "phase", "phase": "looking_up", "to": account.to_string()}));
    let mut subs: BTreeMap<TransferId, Sub> = BTreeMap::new();
    let looking_since = Instant::now();
    let mut tick = tokio::time::interval_at((looking_since + TICK).into(), TICK);
    let mut unknown = false;
    let mut cancelled_here = false;
    let mut grace: Option<Instant> = None;
    loop {
        if !subs.is_empty() && subs.values().all(Sub::settled) {
            break;
        }
        if unknown {
            break;
        }
        if grace.is_none() && !subs.is_empty() && subs.values().all(Sub::ended) {
            grace = Some(Instant::now() + VERDICT_GRACE);
        }
        let sleep = grace.map(|at| tokio::time::sleep_until(at.into()));
        tokio::select! {
            event = session.events.recv() => {
                let event = session::node_event(event)?;
                match event {
                    Event::SubTransfer { group: g, transfer, device } if g == group => {
                        let sub = Sub { device, resumed: 0, status: None, verified: None, found: Instant::now(), phase: "connecting", data: (None, None) };
                        let label = sub.label();
                        report.json(json!({
                            "event": "device",
                            "transfer": transfer.to_string(),
                            "device": device.to_string(),
                            "label": label,
                        }));
                        report.add(transfer, label, size);
                        report.phase(transfer, "connecting", "found, connecting", None);
                        subs.insert(transfer, sub);
                        record.set_state(device, transfer, Status::Created.as_str(), None);
                        keep(&records, &record);
                    }
                    Event::Resuming { transfer, offset, total, verified } => {
                        if let Some(sub) = subs.get_mut(&transfer) {
                            sub.resumed = offset;
                        }
                        report.resuming(transfer, offset, total, verified);
                    }
                    Event::Restarted { transfer, held, total } => {
                        if let Some(sub) = subs.get_mut(&transfer) {
                            sub.resumed = 0;
                        }
                        report.restarted(transfer, held, total, true);
                    }
                    Event::Progress { transfer, done, total } if subs.contains_key(&transfer) => {
                        report.progress(transfer, done, total);
                        if let Some(sub) = subs.get_mut(&transfer) {
                            sub.data.0.get_or_insert_with(Instant::now);
                            if done == total && sub.phase == "sending" {
                                // Every byte left: the receiver checks the SHA3-512 and answers.
                                sub.phase = "verifying";
                                report.phase(transfer, "verifying", "every byte sent, the receiver checks the SHA3-512", None);
                            }
                        }
                    }
                    Event::Status { transfer, status, reason } => {
                        if let Some(sub) = subs.get_mut(&transfer) {
                            report.status(transfer, status, reason.as_ref());
                            if status.is_error() {
                                sub.phase = "failed";
                                let text = failed_text(status, reason.as_ref());
                                report.json(json!({
                                    "event": "phase",
                                    "transfer": transfer.to_string(),
                                    "label": sub.label(),
                                    "phase": "failed",
                                    "detail": text,
                                }));
                                report.fail(transfer, &text);
                            } else if let Some((phase, text)) = phase_of(status).filter(|(p, _)| *p != sub.phase) {
                                sub.phase = phase;
                                report.phase(transfer, phase, text, None);
                            }
                            if status.is_final() {
                                let why = reason.as_ref().map(ToString::to_string);
                                record.set_state(sub.device, transfer, status.as_str(), why);
                                keep(&records, &record);
                            }
                            sub.status = Some((status, reason));
                        }
                    }
                    Event::Verified { transfer, digest, .. } => {
                        if let Some(sub) = subs.get_mut(&transfer) {
                            report.json(json!({
                                "event": "verified",
                                "transfer": transfer.to_string(),
                                "device": sub.device.to_string(),
                                "sha3_512": digest.to_string(),
                            }));
                            sub.verified = Some(digest.to_string());
                            sub.phase = "done";
                            sub.data.1 = Some(Instant::now());
                            report.finish(transfer, "done, SHA3-512 verified");
                            report.json(json!({
                                "event": "phase",
                                "transfer": transfer.to_string(),
                                "label": sub.label(),
                                "phase": "done",
                                "detail": null,
                            }));
                            record.sha3_512 = Some(digest.to_string());
                            keep(&records, &record);
                        }
                    }
                    Event::Aggregate { group: g, status, done, total } if g == group => {
                        report.aggregate(group, done, total.max(size), status.as_str());
                        if status == Status::UnjoinablePeer && subs.is_empty() {
                            unknown = true;
                        }
                    }
                    Event::Connected { device, path } => report.connected(&device, &path),
                    Event::IncomingTransfer { transfer, .. } => refuse_incoming(&session, transfer),
                    _ => {}
                }
            }
            _ = &mut ctrl_c, if !cancelled_here => {
                cancelled_here = true;
                report.line("Cancelling…");
                let _ = session.handle.command(move |node, now| node.cancel(now, group));
                if subs.is_empty() {
                    break;
                }
            }
            _ = tick.tick() => {
                let waited = looking_since.elapsed().as_secs();
                if subs.is_empty() {
                    report.line(&format!("looking up {to}'s devices… {waited} s"));
                }
                for sub in subs.values().filter(|s| s.connecting()) {
                    let secs = sub.found.elapsed().as_secs();
                    report.line(&format!("{}: no answer yet… {secs} s", sub.label()));
                }
            }
            () = async { if let Some(s) = sleep { s.await } }, if grace.is_some() => break,
        }
    }
    report.close();
    session.close().await;

    let delivered: Vec<&Sub> = subs.values().filter(|s| s.verified.is_some()).collect();
    if let Some(first) = delivered.first() {
        let digest = first.verified.clone().unwrap_or_default();
        report.json(json!({
            "event": "done",
            "delivered": delivered.len(),
            "devices": subs.len(),
            "sha3_512": digest,
        }));
        report.line(&format!(
            "Delivered to {} of {} device(s); SHA3-512 verified: {digest}",
            delivered.len(),
            subs.len()
        ));
        // The rate is the data phase's of the device that verified first: not the lookup,
        // nor the wait for devices that never came (see `rate::first_to_end`).
        let fastest = crate::rate::first_to_end(delivered.iter().map(|s| (*s, s.data)));
        if let Some((sub, t)) = fastest {
            // Only what crossed counts: a device that resumed had the rest already.
            let already = match sub.resumed {
                0 => String::new(),
                k => format!(" ({} were there already)", crate::report::size_text(k)),
            };
            let whom = if delivered.len() > 1 {
                format!(" to {}, the first to verify", sub.label())
            } else {
                String::new()
            };
            report.line(&format!(
                "{}{whom}{already}",
                crate::rate::throughput_text(size.saturating_sub(sub.resumed), t)
            ));
        }
        let missed: Vec<String> = subs
            .values()
            .filter(|s| s.verified.is_none())
            .map(Sub::label)
            .collect();
        if !missed.is_empty() {
            report.line(&format!(
                "Not delivered to {}: Ferry does not queue files for offline devices yet; run \
                 the same send again when they are online",
                missed.join(", ")
            ));
        }
        return Ok(());
    }
    if cancelled_here {
        return Err(Failure::Cancelled("cancelled here".to_owned()));
    }
    if subs.is_empty() {
        return Err(no_device_of(to));
    }
    let failures = subs
        .values()
        .map(|s| match &s.status {
            Some((status, reason)) => failure_of(*status, reason.as_ref(), &s.label()),
            None => Failure::Unreachable(format!("{}: no answer", s.label())),
        })
        .collect();
    Err(combine(failures).unwrap_or_else(|| Failure::Internal("no outcome".to_owned())))
}

/// `send` takes no files: an offer that comes to it (from another process of the peer, say)
/// is refused.
pub(crate) fn refuse_incoming(session: &session::Session, transfer: TransferId) {
    let _ = session.handle.command(move |node, now| {
        let _ = node.refuse(now, transfer);
    });
}

/// The failure of a send that found no device of `to`.
pub(crate) fn no_device_of(to: &str) -> Failure {
    Failure::UnknownContact(format!(
        "no device of {to} announced itself within {} s: check the account id, and that \
         `ferry listen` runs there on the same DHT",
        LOOKUP_TIMEOUT.as_secs()
    ))
}

/// The phase a sub-transfer's state starts, with its line: `None` for states that start
/// none (a failure is drawn apart, `finished` waits for the verdict).
fn phase_of(status: Status) -> Option<(&'static str, &'static str)> {
    match status {
        Status::WaitPeerAcceptance => Some((
            "waiting_for_acceptance",
            "connected, waiting for acceptance",
        )),
        Status::Ongoing => Some(("sending", "accepted, sending")),
        _ => None,
    }
}

/// What a person reads for a sub-transfer that failed: "not reached (offline?)" for a
/// device that could not be reached, else the state and its reason.
fn failed_text(status: Status, reason: Option<&Reason>) -> String {
    match (status, reason) {
        (Status::UnjoinablePeer, Some(Reason::Unreachable(why))) => {
            let why = why.strip_prefix("not reached (offline?): ").unwrap_or(why);
            format!("not reached (offline?): {why}")
        }
        (Status::UnjoinablePeer, _) => "not reached (offline?)".to_owned(),
        (status, Some(r)) => format!("{status} ({r})"),
        (status, None) => status.to_string(),
    }
}
