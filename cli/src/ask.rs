//! Ask again (`data-transfer-request`): `ferry ask ID` asks the sender of a transfer we
//! received in part (or missed) to offer it again, and takes it; [`answer`] is how `listen`
//! serves such requests for files this home sent, from its records, without prompting.

use std::path::PathBuf;
use std::time::Duration;

use ferry_driver::sent_file::{self, Recorded, SentFile};
use ferry_proto::conversation::AskAnswer;
use ferry_proto::io::Event;
use ferry_proto::node::AskId;
use ferry_proto::tls::{AccountId, PeerIdentity};
use ferry_proto::transfer::{Digest, Status, TransferId};
use serde_json::json;

use crate::failure::Failure;
use crate::home::{Home, create_private_dir};
use crate::outcome::failure_of;
use crate::records::{Record, Records, SourceFile};
use crate::report::Report;
use crate::session::{self, NetOptions, Session};

/// How long, once the file was verified, `ask` waits for the sender to close first (as
/// `listen --once` does: the receiver sent the last message).
const SENDER_CLOSE_WAIT: Duration = Duration::from_secs(2);

impl From<&SourceFile> for SentFile {
    fn from(s: &SourceFile) -> SentFile {
        SentFile {
            path: s.path.clone(),
            size: s.size,
            mtime_secs: s.mtime_secs,
            mtime_nanos: s.mtime_nanos,
            inode: s.inode,
        }
    }
}

/// What the holder answers a request from `from` for `transfer`, from `records`: `Ok`
/// with the file to send again, or the refusal. Reads the whole file when a device
/// verified it (its digest is checked): run it off the async threads.
pub(crate) fn decide(
    records: &Records,
    from: AccountId,
    transfer: TransferId,
) -> Result<PathBuf, AskAnswer> {
    let record = records
        .sent_with(transfer)
        .map_err(|_| AskAnswer::Unavailable)?;
    let Some(record) = record else {
        return sent_file::decide(from, None).map(|()| PathBuf::new());
    };
    let (Ok(to), Some(source)) = (record.peer_account.parse(), record.source.as_ref()) else {
        return Err(AskAnswer::UnknownTransfer);
    };
    let file = SentFile::from(source);
    let digest = record.sha3_512.as_deref().and_then(Digest::from_hex);
    sent_file::decide(
        from,
        Some(Recorded {
            to,
            file: &file,
            digest: digest.as_ref(),
        }),
    )?;
    Ok(file.path)
}

/// The transfers `listen` sends again, by id: their sent records follow them, so the
/// sender's history shows a resend's state as a send's.
#[derive(Debug, Default)]
pub(crate) struct Resent {
    by_id: std::collections::BTreeMap<TransferId, ferry_proto::tls::DeviceId>,
}

impl Resent {
    /// Updates the sent record of a resent transfer from a node event about it.
    pub(crate) fn on_event(&mut self, records: &Records, event: &Event) {
        let (transfer, state, reason, digest) = match event {
            Event::Status {
                transfer,
                status,
                reason,
            } if status.is_final() || *status == Status::Ongoing => (
                *transfer,
                *status,
                reason.as_ref().map(ToString::to_string),
                None,
            ),
            Event::Verified {
                transfer, digest, ..
            } => (*transfer, Status::Finished, None, Some(digest.to_string())),
            _ => return,
        };
        let Some(device) = self.by_id.get(&transfer).copied() else {
            return;
        };
        if state.is_final() && digest.is_none() && state != Status::Finished {
            self.by_id.remove(&transfer);
        }
        if let Ok(Some(mut record)) = records.sent_with(transfer) {
            record.set_state(device, transfer, state.as_str(), reason);
            if digest.is_some() {
                record.sha3_512 = digest;
                self.by_id.remove(&transfer);
            }
            keep(records, &record);
        }
    }
}

/// Serves a peer's request (`listen`): checks the records (off the async threads), then
/// resends or refuses; says what it did.
pub(crate) async fn answer(
    session: &Session,
    records: &Records,
    report: &Report,
    resent: &mut Resent,
    request: AskId,
    from: PeerIdentity,
    transfer: TransferId,
) {
    let records = records.clone();
    let decided = tokio::task::spawn_blocking(move || decide(&records, from.account, transfer))
        .await
        .unwrap_or(Err(AskAnswer::Unavailable));
    let who = format!(
        "account {} (device {})",
        &from.account.to_string()[..12],
        &from.device.to_string()[..12]
    );
    let answer = match decided {
        Ok(path) => match ferry_driver::client::source_of(&path) {
            Err(_) => refuse(session, request, AskAnswer::FileChanged),
            Ok((source, name)) => {
                let decision = ferry_proto::node::AskDecision::Resend { source, name };
                let resend = session
                    .handle
                    .call(move |node, now| node.answer_ask(now, request, decision));
                match resend.await {
                    Ok(Ok(_)) => {
                        resent.by_id.insert(transfer, from.device);
                        AskAnswer::Resending
                    }
                    _ => AskAnswer::Unavailable,
                }
            }
        },
        Err(code) => refuse(session, request, code),
    };
    report.json(json!({
        "event": "asked_again",
        "transfer": transfer.to_string(),
        "from_account": from.account.to_string(),
        "from_device": from.device.to_string(),
        "answer": answer.as_str(),
    }));
    report.line(&match answer {
        AskAnswer::Resending => format!("{who} asks for {transfer} again: resending"),
        code => format!("{who} asks for {transfer} again: refused ({code})"),
    });
}

fn refuse(session: &Session, request: AskId, code: AskAnswer) -> AskAnswer {
    let decision = ferry_proto::node::AskDecision::Refuse(code);
    let _ = session.handle.command(move |node, now| {
        let _ = node.answer_ask(now, request, decision);
    });
    code
}

/// What `ferry ask` was asked.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// The transfer id, as `ferry history` shows it.
    pub(crate) transfer: TransferId,
    /// Where received files go (where `listen` puts them: the partial data is there).
    pub(crate) into: PathBuf,
}

/// `ferry ask ID`: asks every device of the sender of our received transfer `ID` to send
/// it again, and takes it (resuming from what we hold). `Ok` once it arrived verified.
pub(crate) async fn run(
    home: &Home,
    net: &NetOptions,
    options: &Options,
    json_mode: bool,
) -> Result<(), Failure> {
    crate::home::DeviceFile::load(&home.device())?;
    // One node per home at a time: a listener would take the offer, or fight over it.
    let _lock = home.lock_listener()?;
    let records = Records::new(home.dir());
    let transfer = options.transfer;
    let Some(mut record) = records.received_as(transfer, None)? else {
        return Err(Failure::Usage(format!(
            "no received transfer {transfer} in this home's records (`ferry history` lists \
             them; on the sending side, ask the receiver to run this)"
        )));
    };
    if let Some(path) = record.final_path.as_ref().filter(|_| record.is_finished()) {
        return Err(Failure::Usage(format!(
            "transfer {transfer} was received whole already: {}",
            path.display()
        )));
    }
    let sender: AccountId = record
        .peer_account
        .parse()
        .map_err(|_| Failure::Internal(format!("record {transfer}: a bad sender account")))?;
    create_private_dir(&options.into)?;
    let mut session = session::start(home, net, &options.into, None, None)?;
    let mut ctrl_c = session::ctrl_c().await;
    let mut report = Report::new(json_mode);
    report.line(&format!(
        "Asking the devices of account {sender} to send {:?} ({transfer}) again",
        record.name
    ));
    let _ = session
        .handle
        .command(move |node, now| node.ask_again(now, sender, transfer));
    let outcome = take(
        &mut session,
        &mut report,
        &records,
        &mut record,
        sender,
        options,
        &mut ctrl_c,
    )
    .await;
    report.close();
    session.close().await;
    outcome
}

/// Waits for the answers and the file.
async fn take(
    session: &mut Session,
    report: &mut Report,
    records: &Records,
    record: &mut Record,
    sender: AccountId,
    options: &Options,
    ctrl_c: &mut std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
) -> Result<(), Failure> {
    let transfer = options.transfer;
    let mut resending = false;
    // What each device said: a refusal code, or why it could not answer.
    let mut refusals: Vec<String> = Vec::new();
    let mut refused = false;
    let mut status: Option<(Status, Option<ferry_proto::transfer::Reason>)> = None;
    let mut verified = false;
    let mut device = None;
    loop {
        let grace = verified.then(|| tokio::time::sleep(SENDER_CLOSE_WAIT));
        tokio::select! {
            event = session.events.recv() => {
                let event = session::node_event(event)?;
                match event {
                    Event::AskAnswered { transfer: t, device: d, answer, last } if t == transfer => {
                        let label = d.map_or("no device".to_owned(), |d| format!("device {}", &d.to_string()[..12]));
                        let text = match &answer {
                            Ok(AskAnswer::Resending) => "resending".to_owned(),
                            Ok(code) => format!("refused ({code})"),
                            Err(why) => format!("no answer ({why})"),
                        };
                        report.json(json!({
                            "event": "ask_answer",
                            "transfer": transfer.to_string(),
                            "device": d.map(|d| d.to_string()),
                            "answer": answer.as_ref().map(|a| a.as_str()).ok(),
                            "reason": answer.as_ref().err(),
                        }));
                        report.line(&format!("asked {label}: {text}"));
                        match answer {
                            Ok(AskAnswer::Resending) => resending = true,
                            Ok(code) => {
                                refused = true;
                                refusals.push(format!("{label}: {code}"));
                            }
                            Err(why) => refusals.push(format!("{label}: {why}")),
                        }
                        if last && !resending {
                            let all = refusals.join("; ");
                            return Err(if refused {
                                Failure::Refused(format!("the sender will not send it again: {all}"))
                            } else if d.is_none() {
                                Failure::UnknownContact(all)
                            } else {
                                Failure::Unreachable(all)
                            });
                        }
                    }
                    Event::IncomingTransfer { transfer: t, name, size, from } => {
                        let ours = t == transfer && from.as_ref().is_some_and(|p| p.account == sender);
                        if ours {
                            device = from.as_ref().map(|p| p.device);
                            report.add(t, name.clone(), size);
                            report.line(&format!("{name:?} ({size} bytes) offered again: taking it"));
                            let _ = session.handle.command(move |node, now| { let _ = node.accept(now, t); });
                        } else {
                            // `ask` takes only what it asked for.
                            let _ = session.handle.command(move |node, now| { let _ = node.refuse(now, t); });
                        }
                    }
                    Event::Resuming { transfer: t, offset, total, verified: v } if t == transfer => report.resuming(t, offset, total, v),
                    Event::Restarted { transfer: t, held, total } if t == transfer => report.restarted(t, held, total, false),
                    Event::Progress { transfer: t, done, total } if t == transfer => report.progress(t, done, total),
                    Event::Status { transfer: t, status: s, reason } if t == transfer => {
                        report.json(json!({
                            "event": "status",
                            "transfer": t.to_string(),
                            "status": s.as_str(),
                            "reason": reason.as_ref().map(ToString::to_string),
                        }));
                        if let Some(d) = device.filter(|_| s.is_final() || s == Status::Ongoing) {
                            record.set_state(d, t, s.as_str(), reason.as_ref().map(ToString::to_string));
                            keep(records, record);
                        }
                        if s.is_final() && s != Status::Finished {
                            let text = match &reason { Some(r) => format!("{s} ({r})"), None => s.to_string() };
                            report.finish(t, &text);
                            return Err(failure_of(s, reason.as_ref(), "the sender"));
                        }
                        status = Some((s, reason));
                    }
                    Event::Verified { transfer: t, digest, name } if t == transfer => {
                        let path = options.into.join(&name);
                        report.json(json!({
                            "event": "verified",
                            "transfer": t.to_string(),
                            "name": name,
                            "path": path,
                            "sha3_512": digest.to_string(),
                        }));
                        report.finish_with(t, "verified", &format!("received as {}, SHA3-512 verified: {digest}", path.display()));
                        record.final_path = Some(path);
                        record.sha3_512 = Some(digest.to_string());
                        if let Some(d) = device {
                            record.set_state(d, t, Status::Finished.as_str(), None);
                        }
                        keep(records, record);
                        verified = true;
                    }
                    Event::PeerUnreachable { device: d, .. } if verified && Some(d) == device => return Ok(()),
                    _ => {}
                }
            }
            () = async { if let Some(g) = grace { g.await } }, if verified => return Ok(()),
            _ = &mut *ctrl_c => {
                report.line("Stopped: what arrived is kept; `ferry ask` again resumes from it.");
                return Err(Failure::Cancelled("stopped here".to_owned()));
            }
        }
        if verified && matches!(status, Some((Status::Finished, _))) && device.is_none() {
            return Ok(());
        }
    }
}

fn keep(records: &Records, record: &Record) {
    if let Err(e) = records.save(record) {
        tracing::warn!("the transfer record is not kept: {e}");
    }
}

/// The received records `listen --ask-again` asks for at start: not finished, from a known
/// sender, newest first, at most `limit`.
pub(crate) fn unfinished(records: &Records, limit: usize) -> Vec<(AccountId, TransferId, String)> {
    records
        .all()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.direction == crate::records::Direction::Received && !r.is_finished())
        .filter_map(|r| Some((r.peer_account.parse().ok()?, r.transfer_id()?, r.name)))
        .take(limit)
        .collect()
}
