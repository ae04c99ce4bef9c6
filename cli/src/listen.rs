//! `ferry listen`: waits for transfers and asks, for each, whether to take it (a line on
//! standard input: `y` or `yes` accepts, anything else refuses), unless `--accept-all` or
//! `--auto-accept-images-under` answers for the user. Files are written under a partial
//! name in the receive folder and get their final name only once their SHA3-512 matched.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use ferry_proto::io::Event;
use ferry_proto::node::is_image_name;
use ferry_proto::tls::{DeviceId, PeerIdentity};
use ferry_proto::transfer::{PartialKey, Reason, Status, TransferId};
use serde_json::json;
use tokio::sync::mpsc;

use crate::contacts::Contacts;
use crate::failure::Failure;
use crate::home::{Home, create_private_dir};
use crate::outcome::failure_of;
use crate::records::{Record, Records};
use crate::report::Report;
use crate::session::{self, NetOptions};

/// How long `--once` waits, after the transfer finished, for its verdict.
const VERDICT_GRACE: Duration = Duration::from_secs(2);
/// How long `--once` waits, after its verdict, for the sender to close first. The receiver
/// sends the last message (VERDICT), so it does not close first: a TURN relay loses the tail
/// of a connection closed right after its last write (coturn turns it into a reset), and the
/// sender would hear "connection lost" instead of its verdict. The sender closes as soon as
/// the verdict arrives, so this is a bound, not a wait.
const SENDER_CLOSE_WAIT: Duration = ferry_driver::CLOSE_LINGER;

/// How many unfinished received transfers `--ask-again` asks for at start.
const ASK_AGAIN_AT_START: usize = 16;

/// What is said of an offer refused because standard input ended.
const NO_ONE_TO_ASK: &str =
    "refused (no one to ask: standard input is closed; see --accept-all and --from)";
/// What is said of an offer refused because standard input is not a terminal.
const NOT_A_TERMINAL: &str = "refused (no one to ask: standard input is not a terminal; take \
     files without asking with --accept-all, from chosen contacts only with --from NAME, or \
     answer through a pipe with --ask)";
/// At most this many lines a minute say that a connection request was refused or a
/// connection failed (each with its `--json` event); past it they are counted, and the
/// next line that goes says how many were not shown. A stranger can make any number of
/// accounts and requests.
const REFUSALS_PER_MINUTE: u32 = 20;

/// What `ferry listen` was asked.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Where files go.
    pub(crate) into: PathBuf,
    /// Whether `into` is the default (the current folder), not a choice.
    pub(crate) into_is_default: bool,
    /// Take every file without asking.
    pub(crate) accept_all: bool,
    /// Take pictures smaller than this without asking.
    pub(crate) auto_accept_images_under: Option<u64>,
    /// Stop after the first transfer ends, with its outcome as the exit code.
    pub(crate) once: bool,
    /// Read answers from standard input even when it is not a terminal.
    pub(crate) ask: bool,
    /// Answer only these (contact names or account ids); empty: the contacts, if any.
    pub(crate) from: Vec<String>,
    /// Partial data nobody wrote for this long is removed at start.
    pub(crate) keep_partial: Duration,
    /// Ask again, at start, for received transfers that did not finish.
    pub(crate) ask_again: bool,
}

/// Removes, at start, partial data nobody wrote for `age` in the receive folder `into`
/// (nothing when the folder is not there yet); says how many files went. A folder that
/// cannot be opened is left for the session to report.
fn prune_partials(into: &std::path::Path, age: Duration, report: &Report) {
    if !into.exists() {
        return;
    }
    match ferry_driver::receive_folder::ReceiveFolder::open(into)
        .and_then(|folder| folder.prune_partials(age))
    {
        Ok(0) => {}
        Ok(n) => report.line(&format!(
            "Removed {n} partial file(s) nobody wrote for {} day(s) or more",
            age.as_secs() / 86_400
        )),
        Err(e) => tracing::warn!("partial data not pruned: {e}"),
    }
}

/// Who decides whether an offer is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// `--accept-all`: taken.
    Accept,
    /// A picture under the `--auto-accept-images-under` limit: the node takes it itself.
    Auto,
    /// The person at the terminal.
    Ask,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Accept => "accept",
            Decision::Auto => "auto",
            Decision::Ask => "ask",
        }
    }
}

/// An incoming transfer.
struct Offer {
    name: String,
    size: u64,
    from: String,
    /// The sending device, once known; its connection ending is `peer_gone`.
    device: Option<DeviceId>,
    peer_gone: bool,
    status: Option<(Status, Option<Reason>)>,
    verified: bool,
    /// Its record in the home (an offer from a known peer).
    record: Option<Record>,
    /// Several files and folders offered as one: verified once its own status says every
    /// file was.
    folder: bool,
}

impl Offer {
    /// Whether it is not over, or a lost connection ended it: a connection that closes on
    /// it is a failure to say.
    fn cut(&self) -> bool {
        match &self.status {
            Some((s, r)) => !s.is_final() || *r == Some(Reason::ConnectionLost),
            None => true,
        }
    }

    /// Whether nothing more will happen to it: it ended, and if it finished its verdict
    /// came.
    fn settled(&self) -> bool {
        match &self.status {
            Some((Status::Finished, _)) => self.verified,
            Some((status, _)) => status.is_final(),
            None => false,
        }
    }

    /// Sets the record's state and writes it; a record that cannot be written is said, and
    /// the transfer goes on.
    fn keep(&mut self, records: &Records, transfer: TransferId, state: &str, why: Option<String>) {
        let (Some(record), Some(device)) = (self.record.as_mut(), self.device) else {
            return;
        };
        record.set_state(device, transfer, state, why);
        if let Err(e) = records.save(record) {
            tracing::warn!("the transfer record is not kept: {e}");
        }
    }
}

fn who(from: Option<&PeerIdentity>) -> String {
    match from {
        Some(p) => format!(
            "account {} (device {})",
            p.account,
            &p.device.to_string()[..12]
        ),
        None => "an unknown peer".to_owned(),
    }
}

/// Reads answers from standard input on a thread of its own (reading blocks); the channel
/// closes at end of input.
fn answers() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    let spawned = std::thread::Builder::new()
        .name("ferry-stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        // Without the thread, the sender is dropped: every question is refused.
        tracing::warn!("cannot read answers from standard input: {e}");
    }
    rx
}

fn is_yes(answer: &str) -> bool {
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// How long after the offer being asked about was withdrawn (and the next one asked) a plain
/// `y` or `n` is not taken for the new one: it was most likely typed for the old one.
const ANSWER_GUARD: Duration = Duration::from_secs(2);

/// One line typed at the prompt: `y` / `n` for the offer being asked about, or `y ID` /
/// `n ID` for a named offer (any unique start of its id, 4 digits at least).
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    yes: bool,
    id: Option<String>,
}

impl Answer {
    fn parse(line: &str) -> Answer {
        let mut words = line.split_whitespace();
        let yes = words.next().is_some_and(is_yes);
        let id = words.next().map(str::to_owned);
        Answer { yes, id }
    }

    /// The offer among `asking` this answer names, if it names one.
    fn names(&self, asking: &VecDeque<TransferId>) -> Result<Option<TransferId>, String> {
        let Some(id) = &self.id else {
            return Ok(None);
        };
        let matching: Vec<TransferId> = asking
            .iter()
            .filter(|t| id.len() >= 4 && t.to_string().starts_with(id.as_str()))
            .copied()
            .collect();
        match matching.as_slice() {
            [one] => Ok(Some(*one)),
            [] => Err(format!("no offer {id} waits for an answer")),
            _ => Err(format!("{id} names several offers: type more of its id")),
        }
    }
}

/// The lines and events that make failures and refusals visible, at most
/// [`REFUSALS_PER_MINUTE`] a minute.
struct Shown {
    minute: Instant,
    count: u32,
    hidden: u64,
}

impl Shown {
    fn new() -> Shown {
        Shown {
            minute: Instant::now(),
            count: 0,
            hidden: 0,
        }
    }

    /// Whether one more may go now; if so, `(n more not shown)` for those held back.
    fn admit(&mut self) -> Option<String> {
        if self.minute.elapsed() >= Duration::from_secs(60) {
            self.minute = Instant::now();
            self.count = 0;
        }
        if self.count >= REFUSALS_PER_MINUTE {
            self.hidden += 1;
            return None;
        }
        self.count += 1;
        Some(match std::mem::take(&mut self.hidden) {
            0 => String::new(),
            n => format!(" ({n} more before this not shown)"),
        })
    }

    /// An incoming (or our) connection to `device` failed: the stage, and why.
    fn connection_failed(&mut self, report: &Report, device: DeviceId, reason: &str) {
        let Some(more) = self.admit() else { return };
        let stage = stage_of(reason);
        report.json(json!({
            "event": "connection_failed",
            "device": device.to_string(),
            "stage": stage,
            "reason": reason,
        }));
        report.line(&format!(
            "connection with device {} failed ({stage}): {reason}{more}",
            &device.to_string()[..12]
        ));
    }

    /// A connection request was refused before any answer.
    fn request_refused(
        &mut self,
        report: &Report,
        account: ferry_proto::tls::AccountId,
        device: DeviceId,
        reason: &str,
    ) {
        let Some(more) = self.admit() else { return };
        report.json(json!({
            "event": "refused",
            "stage": "request",
            "account": account.to_string(),
            "device": device.to_string(),
            "transfer": null,
            "reason": reason,
        }));
        let hint = if reason == "not a contact" {
            " (`ferry contact add NAME ID` or --from to answer it)"
        } else {
            ""
        };
        report.line(&format!(
            "refused a connection request from account {account} (device {}): {reason}{hint}{more}",
            &device.to_string()[..12]
        ));
    }

    /// An offer was refused here (by the person, or for want of one): the event only (its
    /// line is the offer's own).
    fn offer_refused(&self, report: &Report, transfer: TransferId, o: &Offer, why: &str) {
        report.json(json!({
            "event": "refused",
            "stage": "offer",
            "account": o.record.as_ref().map(|r| r.peer_account.clone()),
            "device": o.device.map(|d| d.to_string()),
            "transfer": transfer.to_string(),
            "reason": why,
        }));
    }
}

/// The stage a node's failure text names (`"ICE: no pair"` → `ICE`), or `connection`.
fn stage_of(reason: &str) -> &str {
    match reason.split_once(": ") {
        Some((stage, _)) if stage.len() <= 12 && !stage.contains(' ') => stage,
        _ => "connection",
    }
}

/// Listens until interrupted, or, with `--once`, until the first transfer ends.
pub(crate) async fn run(
    home: &Home,
    net: &NetOptions,
    options: &Options,
    json_mode: bool,
) -> Result<(), Failure> {
    // The identity first (its error is the clearer one), then the home, for this listener.
    crate::home::DeviceFile::load(&home.device())?;
    let _lock = home.lock_listener()?;
    let contacts = Contacts::load(home)?;
    let only_from = if !options.from.is_empty() {
        let mut allowed = std::collections::BTreeSet::new();
        for who in &options.from {
            allowed.insert(contacts.resolve(who)?);
        }
        Some(allowed)
    } else if !contacts.is_empty() {
        Some(contacts.accounts())
    } else {
        None
    };
    if options.accept_all && only_from.is_none() {
        tracing::warn!(
            "--accept-all with no contacts: every file from anyone who knows your account id \
             is taken; add contacts (`ferry contact add NAME ID`) or use --from"
        );
    }
    create_private_dir(&options.into)?;
    // Checked now, not when the first file comes: a folder others can write in, or not ours,
    // is refused before anyone sends.
    if let Err(e) = ferry_driver::receive_folder::ReceiveFolder::open(&options.into) {
        let hint = match options.into_is_default {
            true => "; files go to the current folder unless --into DIR says where",
            false => "",
        };
        return Err(Failure::Usage(format!("{e}{hint}")));
    }
    let session = session::start(
        home,
        net,
        &options.into,
        options.auto_accept_images_under,
        only_from,
    )?;
    let mut ctrl_c = session::ctrl_c().await;
    let mut report = Report::new(json_mode);
    let records = Records::new(home.dir());
    prune_partials(&options.into, options.keep_partial, &report);
    let me = &session.device.device;
    report.json(json!({
        "event": "listening",
        "account": me.account().to_string(),
        "device": me.id().to_string(),
        "into": options.into,
    }));
    report.line(&format!(
        "Listening as account {} (device {}); files go to {}. Ctrl-C stops.",
        me.account(),
        &me.id().to_string()[..12],
        options.into.display()
    ));

    // `--ask-again`: what we asked for is taken when offered, without asking the user.
    let mut asked = std::collections::BTreeSet::new();
    let mut resent = crate::ask::Resent::default();
    if options.ask_again {
        for (sender, transfer, name) in crate::ask::unfinished(&records, ASK_AGAIN_AT_START) {
            report.line(&format!("Asking for {name:?} ({transfer}) again"));
            asked.insert((sender, transfer));
            let _ = session
                .handle
                .command(move |node, now| node.ask_again(now, sender, transfer));
        }
    }
    // Without a terminal nobody reads a question: offers that need an answer are refused,
    // unless a program answers through the pipe (--ask).
    let interactive = options.ask || std::io::stdin().is_terminal();
    let no_one_to_ask = if interactive {
        NO_ONE_TO_ASK
    } else {
        NOT_A_TERMINAL
    };
    let mut answers = if options.accept_all || !interactive {
        None
    } else {
        Some(answers())
    };
    let mut shown = Shown::new();
    // Offers waiting for an answer, asked in turn.
    let mut asking: VecDeque<TransferId> = VecDeque::new();
    let mut offers: BTreeMap<TransferId, Offer> = BTreeMap::new();
    // Devices whose offers ended and were forgotten, until their connection closes: whether
    // one was cut by a lost connection.
    let mut ended_offers: BTreeMap<DeviceId, bool> = BTreeMap::new();
    // The files of offers of several files: their offer, and bytes on disk so far (one bar
    // and one line per offer, not per file).
    let mut folder_files: BTreeMap<TransferId, (TransferId, u64)> = BTreeMap::new();
    // Each such offer's bytes on disk so far: the sum of its files'.
    let mut offer_bytes: BTreeMap<TransferId, u64> = BTreeMap::new();
    let mut first: Option<TransferId> = None;
    let mut grace: Option<Instant> = None;
    let mut waiting_for_close = false;

    // When the offer being asked about was withdrawn and the next one asked instead.
    let mut replaced_at: Option<Instant> = None;
    let ask = |report: &Report, offers: &BTreeMap<TransferId, Offer>, t: &TransferId| {
        if let Some(o) = offers.get(t) {
            report.line(&format!(
                "[{t}] {} offers {:?} ({} bytes). Accept? [y/N]",
                o.from, o.name, o.size
            ));
        }
    };

    loop {
        // Offers that ended and were said are forgotten (the first one kept for `--once`'s
        // outcome): a listener that runs for months keeps none per offer it ever saw.
        let over: Vec<TransferId> = offers
            .iter()
            .filter(|(t, o)| o.settled() && !(options.once && first == Some(**t)))
            .map(|(t, _)| *t)
            .collect();
        for t in over {
            if let Some(o) = offers.remove(&t) {
                // Its device's connection may close later: whether this offer was cut by a
                // lost connection is all that is kept of it.
                if let Some(device) = o.device {
                    *ended_offers.entry(device).or_insert(false) |= o.cut();
                }
            }
            report.forget(t);
        }
        if options.once
            && let Some(o) = first.and_then(|t| offers.get(&t))
        {
            match &o.status {
                Some((Status::Finished, _))
                    if o.verified && (o.peer_gone || o.device.is_none()) =>
                {
                    break;
                }
                Some((Status::Finished, _)) if o.verified && !waiting_for_close => {
                    waiting_for_close = true;
                    grace = Some(Instant::now() + SENDER_CLOSE_WAIT);
                }
                Some((Status::Finished, _)) if o.verified => {}
                Some((Status::Finished, _)) => {
                    grace.get_or_insert_with(|| Instant::now() + VERDICT_GRACE);
                }
                Some((s, _)) if s.is_final() => break,
                _ => {}
            }
        }
        let sleep = grace.map(|at| tokio::time::sleep_until(at.into()));
        let answers_open = answers.is_some();
        tokio::select! {
            event = session.events.recv() => {
                let event = session::node_event(event)?;
                resent.on_event(&records, &event);
                match event {
                    Event::IncomingTransfer { transfer, name, size, from } => {
                        let from_text = who(from.as_ref());
                        let asked_for = from.as_ref().is_some_and(|p| asked.remove(&(p.account, transfer)));
                        let decision = if options.accept_all || asked_for {
                            Decision::Accept
                        } else if is_image_name(&name)
                            && options.auto_accept_images_under.is_some_and(|l| size < l)
                        {
                            Decision::Auto
                        } else {
                            Decision::Ask
                        };
                        report.json(json!({
                            "event": "incoming",
                            "transfer": transfer.to_string(),
                            "name": name,
                            "size": size,
                            "from_account": from.as_ref().map(|p| p.account.to_string()),
                            "from_device": from.as_ref().map(|p| p.device.to_string()),
                            "decision": decision.as_str(),
                        }));
                        first.get_or_insert(transfer);
                        report.add(transfer, name.clone(), size);
                        let record = from.as_ref().map(|p| Record::received(transfer, p.account, p.device, &name, size));
                        let mut offer = Offer { name: name.clone(), size, from: from_text.clone(), device: from.as_ref().map(|p| p.device), peer_gone: false, status: None, verified: false, record, folder: false };
                        offer.keep(&records, transfer, "offered", None);
                        offers.insert(transfer, offer);
                        match decision {
                            Decision::Accept => {
                                let why = if asked_for { "asked for again" } else { "--accept-all" };
                                report.line(&format!("{from_text} offers {name:?} ({size} bytes): accepted ({why})"));
                                let _ = session.handle.command(move |node, now| { let _ = node.accept(now, transfer); });
                            }
                            // The node accepts it itself.
                            Decision::Auto => report.line(&format!("{from_text} offers the picture {name:?} ({size} bytes): accepted (under the --auto-accept-images-under limit)")),
                            Decision::Ask => {
                                asking.push_back(transfer);
                                if asking.len() == 1 {
                                    if answers_open {
                                        ask(&report, &offers, &transfer);
                                    } else {
                                        asking.clear();
                                        report.line(&format!("{from_text} offers {name:?}: {no_one_to_ask}"));
                                        let _ = session.handle.command(move |node, now| { let _ = node.refuse(now, transfer); });
                                    }
                                }
                            }
                        }
                    }
                    Event::IncomingManifest { manifest, from, files, folders, size, names } => {
                        let from_text = who(Some(&from));
                        let decision = if options.accept_all { Decision::Accept } else { Decision::Ask };
                        // An offer accepted before whose files did not all arrive: its files
                        // land in the folders made then.
                        let key = PartialKey { sender: Some(from.account), transfer: manifest };
                        let resuming = ferry_driver::files::keeps_tree(&options.into, &key);
                        report.json(json!({
                            "event": "incoming_files",
                            "transfer": manifest.to_string(),
                            "files": files,
                            "folders": folders,
                            "size": size,
                            "names": names,
                            "from_account": from.account.to_string(),
                            "from_device": from.device.to_string(),
                            "decision": decision.as_str(),
                            "resuming": resuming,
                        }));
                        let more = if names.len() < files + folders { ", …" } else { "" };
                        let name = format!(
                            "{} in {}: {}{more}{}",
                            crate::report::count(files, "file"),
                            crate::report::count(folders, "folder"),
                            names.join(", "),
                            if resuming { " (resuming an offer accepted before: the files still missing)" } else { "" }
                        );
                        first.get_or_insert(manifest);
                        report.add(manifest, crate::report::count(files, "file"), size);
                        let offer = Offer { name: name.clone(), size, from: from_text.clone(), device: Some(from.device), peer_gone: false, status: None, verified: false, record: None, folder: true };
                        offers.insert(manifest, offer);
                        match decision {
                            Decision::Accept => {
                                report.line(&format!("{from_text} offers {name} ({size} bytes): accepted (--accept-all)"));
                                let _ = session.handle.command(move |node, now| { let _ = node.accept(now, manifest); });
                            }
                            _ => {
                                asking.push_back(manifest);
                                if asking.len() == 1 {
                                    if answers_open {
                                        ask(&report, &offers, &manifest);
                                    } else {
                                        asking.clear();
                                        report.line(&format!("{from_text} offers {name}: {no_one_to_ask}"));
                                        let _ = session.handle.command(move |node, now| { let _ = node.refuse(now, manifest); });
                                    }
                                }
                            }
                        }
                    }
                    Event::ManifestFile { manifest, transfer, path, size } => {
                        report.json(json!({
                            "event": "incoming_file",
                            "offer": manifest.to_string(),
                            "transfer": transfer.to_string(),
                            "path": path,
                            "size": size,
                        }));
                        folder_files.insert(transfer, (manifest, 0));
                    }
                    Event::Resuming { transfer, offset, total, verified } => match folder_files.get(&transfer) {
                        // A file of a folder offer: said on the offer's line.
                        Some((offer, _)) => report.resuming_in(*offer, transfer, offset, total, verified),
                        None => report.resuming(transfer, offset, total, verified),
                    },
                    Event::Restarted { transfer, held, total } => report.restarted(transfer, held, total, false),
                    Event::Progress { transfer, done, .. } if folder_files.contains_key(&transfer) => {
                        // The offer's sum is kept as its files move, not summed at each event.
                        let moved = folder_files.get_mut(&transfer).map(|f| (f.0, std::mem::replace(&mut f.1, done)));
                        if let Some((offer, before)) = moved {
                            let sum = offer_bytes.entry(offer).or_insert(0);
                            *sum = *sum - before.min(*sum) + done;
                            if let Some(o) = offers.get(&offer) {
                                report.progress(offer, *sum, o.size);
                            }
                        }
                    }
                    Event::Progress { transfer, done, total } => report.progress(transfer, done, total),
                    Event::Status { transfer, status, reason } => {
                        report.status(transfer, status, reason.as_ref());
                        if status.is_final() {
                            // An offer withdrawn while we asked is not asked any more.
                            if asking.front() == Some(&transfer) {
                                asking.pop_front();
                                if let Some(o) = offers.get(&transfer) {
                                    report.line(&format!("[{transfer}] {:?} was withdrawn ({status})", o.name));
                                }
                                if let Some(next) = asking.front() {
                                    replaced_at = Some(Instant::now());
                                    ask(&report, &offers, next);
                                }
                            } else {
                                asking.retain(|t| *t != transfer);
                            }
                            if status != Status::Finished {
                                let text = match &reason {
                                    Some(r) => format!("{status} ({r})"),
                                    None => status.to_string(),
                                };
                                let refused_here = status == Status::ClosedByHost && reason == Some(Reason::Refused);
                                if let Some(o) = offers.get(&transfer).filter(|_| refused_here) {
                                    let why = if answers.is_some() { "refused here" } else { no_one_to_ask };
                                    shown.offer_refused(&report, transfer, o, why);
                                }
                                report.fail(transfer, &text);
                            }
                        }
                        if let Some(o) = offers.get_mut(&transfer).filter(|o| o.folder && status.is_final()) {
                            // The offer is over: its files' byte counts are no longer needed.
                            folder_files.retain(|_, f| f.0 != transfer);
                            offer_bytes.remove(&transfer);
                            if status == Status::Finished {
                                o.verified = true;
                                report.finish_with(transfer, "verified", "every file received, each SHA3-512 verified");
                            }
                        }
                        if let Some(o) = offers.get_mut(&transfer) {
                            if status.is_final() || status == Status::Ongoing {
                                o.keep(&records, transfer, status.as_str(), reason.as_ref().map(ToString::to_string));
                            }
                            o.status = Some((status, reason));
                        }
                    }
                    Event::Verified { transfer, digest, name } => {
                        let path = options.into.join(&name);
                        report.json(json!({
                            "event": "verified",
                            "transfer": transfer.to_string(),
                            "name": name,
                            "path": path,
                            "sha3_512": digest.to_string(),
                        }));
                        if !folder_files.contains_key(&transfer) {
                            report.finish_with(
                                transfer,
                                "verified",
                                &format!("received as {}, SHA3-512 verified: {digest}", path.display()),
                            );
                        }
                        if let Some(o) = offers.get_mut(&transfer) {
                            o.verified = true;
                            if let Some(r) = o.record.as_mut() {
                                r.final_path = Some(path.clone());
                                r.sha3_512 = Some(digest.to_string());
                            }
                            o.keep(&records, transfer, Status::Finished.as_str(), None);
                        }
                    }
                    Event::AskAgain { request, from, transfer } => {
                        crate::ask::answer(&session, &records, &report, &mut resent, request, from, transfer).await;
                    }
                    Event::AskAnswered { transfer, device, answer, .. } => {
                        let label = device.map_or("no device".to_owned(), |d| format!("device {}", &d.to_string()[..12]));
                        report.line(&match answer {
                            Ok(a) => format!("asked {label} for {transfer}: {}", if a == ferry_proto::conversation::AskAnswer::Resending { "resending".to_owned() } else { format!("refused ({a})") }),
                            Err(why) => format!("asked {label} for {transfer}: no answer ({why})"),
                        });
                    }
                    Event::Connected { device, path } => report.connected(&device, &path),
                    Event::PeerUnreachable { device, reason } => {
                        let (mut cut, mut any) = match ended_offers.remove(&device) {
                            Some(cut) => (cut, true),
                            None => (false, false),
                        };
                        for o in offers.values_mut().filter(|o| o.device == Some(device)) {
                            o.peer_gone = true;
                            any = true;
                            cut |= o.cut();
                        }
                        // A sender closing once its transfers are over (done or refused) is
                        // no failure, whatever the close looked like; one that vanished
                        // mid-transfer is, and so is a connection that failed before any
                        // offer came.
                        if cut || !any {
                            shown.connection_failed(&report, device, &reason);
                        }
                    }
                    Event::RequestDropped { account, device, reason } => {
                        shown.request_refused(&report, account, device, reason);
                    }
                    _ => {}
                }
            }
            answer = async {
                match answers.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            }, if answers_open && !asking.is_empty() => {
                let parsed = answer.as_deref().map(Answer::parse);
                let named = match parsed.as_ref().map(|a| a.names(&asking)) {
                    Some(Err(why)) => {
                        report.line(&why);
                        continue;
                    }
                    Some(Ok(named)) => named,
                    None => None,
                };
                if named.is_none()
                    && answer.is_some()
                    && replaced_at.is_some_and(|at| at.elapsed() < ANSWER_GUARD)
                {
                    // Typed for the offer that was just withdrawn: not taken for this one.
                    replaced_at = None;
                    report.line("That answer came as the offer it was for was withdrawn; answer again:");
                    if let Some(front) = asking.front() {
                        ask(&report, &offers, front);
                    }
                    continue;
                }
                let transfer = match named {
                    Some(t) => {
                        asking.retain(|a| *a != t);
                        t
                    }
                    None => {
                        let Some(t) = asking.pop_front() else { continue };
                        t
                    }
                };
                replaced_at = None;
                let yes = parsed.is_some_and(|a| a.yes);
                if answer.is_none() {
                    answers = None;
                }
                if let Some(o) = offers.get(&transfer) {
                    let verdict = match (yes, answers.is_some()) {
                        (true, _) => "accepted",
                        (false, true) => "refused",
                        (false, false) => no_one_to_ask,
                    };
                    report.line(&format!("{:?}: {verdict}", o.name));
                }
                let _ = session.handle.command(move |node, now| {
                    let _ = if yes { node.accept(now, transfer) } else { node.refuse(now, transfer) };
                });
                if answers.is_none() {
                    // End of input: nobody is left to answer the others.
                    for t in asking.drain(..) {
                        let _ = session.handle.command(move |node, now| { let _ = node.refuse(now, t); });
                    }
                } else if let Some(next) = asking.front() {
                    ask(&report, &offers, next);
                }
            }
            _ = &mut ctrl_c => {
                let open: Vec<TransferId> = offers
                    .iter()
                    .filter(|(_, o)| !o.status.as_ref().is_some_and(|(s, _)| s.is_final()))
                    .map(|(t, _)| *t)
                    .collect();
                // Not cancelled: a cancel deletes what arrived. The connections close with
                // the process, each sender hears "connection lost", and the partial data
                // stays in the private folder for the same send run again.
                let why = "stopped here (Ctrl-C): what arrived is kept";
                for t in &open {
                    if let Some(o) = offers.get_mut(t) {
                        o.keep(&records, *t, Status::ClosedByHost.as_str(), Some(why.to_owned()));
                    }
                }
                report.close();
                report.line("Stopped.");
                session.close().await;
                return if open.is_empty() {
                    Ok(())
                } else {
                    Err(Failure::Cancelled(
                        "stopped while receiving: what arrived is kept, and the same `ferry send` \
                         run again resumes from it"
                            .to_owned(),
                    ))
                };
            }
            () = async { if let Some(s) = sleep { s.await } }, if grace.is_some() => break,
        }
    }
    report.close();
    session.close().await;
    // Only `--once` gets here: the first transfer's outcome is the command's.
    let Some(o) = first.and_then(|t| offers.get(&t)) else {
        return Ok(());
    };
    match &o.status {
        Some((Status::Finished, _)) if o.verified => Ok(()),
        Some((status, reason)) => Err(failure_of(*status, reason.as_ref(), &o.from)),
        None => Err(Failure::Internal("the transfer did not end".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_name_the_offer_they_are_for_by_a_unique_start_of_its_id() {
        let asking: VecDeque<TransferId> =
            [TransferId(123_456_789), TransferId(123_999_000)].into();
        assert_eq!(
            Answer::parse(" y "),
            Answer {
                yes: true,
                id: None
            }
        );
        assert_eq!(Answer::parse("y").names(&asking), Ok(None));
        assert_eq!(
            Answer::parse("yes 1234").names(&asking),
            Ok(Some(TransferId(123_456_789)))
        );
        assert!(!Answer::parse("n 1239").yes);
        assert_eq!(
            Answer::parse("n 1239").names(&asking),
            Ok(Some(TransferId(123_999_000)))
        );
        assert!(Answer::parse("y 123").names(&asking).is_err(), "too short");
        assert!(
            Answer::parse("y 1234567890").names(&asking).is_err(),
            "no such offer"
        );
    }
}
