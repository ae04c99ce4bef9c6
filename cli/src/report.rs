//! What `listen` and `send` show: progress bars with speed and time left on a terminal,
//! plain lines otherwise (one per phase, and a few while bytes move), or one JSON object per
//! line with `--json` (progress at most about four a second per transfer, every phase
//! change always; PROTOCOL.md §12 lists them all).

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::time::Instant;

use ferry_proto::transfer::TransferId;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) use crate::rate::size_text;
use crate::rate::{Meter, Throttle};

/// How to show things.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One JSON object per line.
    Json,
    /// Progress bars (stdout is a terminal).
    Bars,
    /// Plain lines.
    Lines,
}

struct Line {
    label: String,
    bar: ProgressBar,
    /// The last quarter printed (plain lines).
    last_step: Option<u64>,
    /// When the last JSON progress line went.
    throttle: Throttle,
    meter: Meter,
}

/// The output of one command.
pub(crate) struct Report {
    mode: Mode,
    bars: MultiProgress,
    lines: BTreeMap<TransferId, Line>,
    aggregate: Option<ProgressBar>,
    /// The aggregate's last JSON line: its state, and when it went.
    aggregate_json: (Option<String>, Throttle),
}

impl Report {
    /// JSON lines if `json`, else bars on a terminal and plain lines elsewhere.
    pub(crate) fn new(json: bool) -> Report {
        let mode = if json {
            Mode::Json
        } else if std::io::stdout().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        let target = if mode == Mode::Bars {
            ProgressDrawTarget::stdout()
        } else {
            ProgressDrawTarget::hidden()
        };
        Report {
            mode,
            bars: MultiProgress::with_draw_target(target),
            lines: BTreeMap::new(),
            aggregate: None,
            aggregate_json: (None, Throttle::default()),
        }
    }

    /// An event, printed only with `--json`.
    pub(crate) fn json(&self, value: serde_json::Value) {
        if self.mode == Mode::Json {
            println!("{value}");
        }
    }

    /// A line for a person, not printed with `--json`.
    /// A connection to `device` is up on `path`: one line, and the `connected` event
    /// (`path`: host / srflx / prflx / mapped / relay / relay-relay; `class`: direct / relayed; the
    /// kinds of our and the peer's candidate).
    pub(crate) fn connected(
        &self,
        device: &ferry_proto::tls::DeviceId,
        path: &ferry_proto::ice::SelectedPath,
    ) {
        self.json(serde_json::json!({
            "event": "connected",
            "device": device.to_string(),
            "path": path.name(),
            "class": path.class(),
            "local": path.local.as_str(),
            "remote": path.remote.as_str(),
        }));
        // The short form the other lines use for a device.
        let id = device.to_string();
        let short = id.get(..12).unwrap_or(&id);
        self.line(&format!("connected to device {short}: {path}"));
    }

    pub(crate) fn line(&self, text: &str) {
        match self.mode {
            Mode::Json => {}
            Mode::Bars => {
                if self.bars.println(text).is_err() {
                    println!("{text}");
                }
            }
            Mode::Lines => println!("{text}"),
        }
    }

    /// With `--json`, a `status` event: `transfer` moved to `status` (why, for a failure).
    pub(crate) fn status(
        &self,
        transfer: TransferId,
        status: ferry_proto::transfer::Status,
        reason: Option<&ferry_proto::transfer::Reason>,
    ) {
        self.json(serde_json::json!({
            "event": "status",
            "transfer": transfer.to_string(),
            "status": status.as_str(),
            "reason": reason.map(ToString::to_string),
        }));
    }

    /// A bar for the whole group, below the others.
    pub(crate) fn add_aggregate(&mut self, label: &str, size: u64) {
        let bar = self.bars.add(ProgressBar::new(size));
        bar.set_style(style());
        bar.set_prefix(label.to_owned());
        self.aggregate = Some(bar);
    }

    /// The group's bar moves; with `--json`, an `aggregate` line (`group`, `status`, `done`,
    /// `total`) on every change of state and at most about four a second otherwise.
    pub(crate) fn aggregate(&mut self, group: TransferId, done: u64, total: u64, status: &str) {
        if let Some(bar) = &self.aggregate {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(status.to_owned());
        }
        let (last, throttle) = &mut self.aggregate_json;
        let changed = last.as_deref() != Some(status);
        if self.mode == Mode::Json && throttle.pass(Instant::now(), changed || done == total) {
            *last = Some(status.to_owned());
            println!(
                "{}",
                serde_json::json!({
                    "event": "aggregate",
                    "group": group.to_string(),
                    "status": status,
                    "done": done,
                    "total": total,
                })
            );
        }
    }

    /// A bar for one transfer.
    pub(crate) fn add(&mut self, transfer: TransferId, label: String, size: u64) {
        let bar = match &self.aggregate {
            Some(aggregate) => self.bars.insert_before(aggregate, ProgressBar::new(size)),
            None => self.bars.add(ProgressBar::new(size)),
        };
        bar.set_style(style());
        bar.set_prefix(label.clone());
        self.lines.insert(
            transfer,
            Line {
                label,
                bar,
                last_step: None,
                throttle: Throttle::default(),
                meter: Meter::new(),
            },
        );
    }

    /// A transfer enters a phase: a line `LABEL: TEXT` for a person, and with `--json` a
    /// `phase` event (`transfer`, `label`, `phase`, and `detail` when there is more to say).
    pub(crate) fn phase(
        &self,
        transfer: TransferId,
        phase: &str,
        text: &str,
        detail: Option<&str>,
    ) {
        let Some(line) = self.lines.get(&transfer) else {
            return;
        };
        self.json(serde_json::json!({
            "event": "phase",
            "transfer": transfer.to_string(),
            "label": line.label,
            "phase": phase,
            "detail": detail,
        }));
        if self.mode == Mode::Bars {
            line.bar.set_message(phase.replace('_', " "));
        }
        self.line(&format!("{}: {text}", line.label));
    }

    /// Bytes moved: the bar moves; plain lines every quarter, with speed and time left; JSON
    /// at most about four a second (the first and the last always).
    pub(crate) fn progress(&mut self, transfer: TransferId, done: u64, total: u64) {
        let mode = self.mode;
        let Some(line) = self.lines.get_mut(&transfer) else {
            return;
        };
        let now = Instant::now();
        line.meter.update(now, done);
        line.bar.set_length(total);
        line.bar.set_position(done);
        match mode {
            Mode::Bars => {}
            Mode::Lines => {
                let step = (done * 4).checked_div(total).unwrap_or(4);
                if line.last_step.replace(step) != Some(step) && step > 0 {
                    println!(
                        "{}: {}{}",
                        line.label,
                        share_text(done, total),
                        line.meter.text(total)
                    );
                }
            }
            Mode::Json => {
                let edge = line.last_step.replace(0).is_none() || done == total;
                if line.throttle.pass(now, edge) {
                    println!(
                        "{}",
                        serde_json::json!({
                            "event": "progress",
                            "transfer": transfer.to_string(),
                            "label": line.label,
                            "done": done,
                            "total": total,
                            "bytes_per_sec": line.meter.rate().map(|r| r as u64),
                            "seconds_left": line.meter.left(total).map(|d| d.as_secs()),
                        })
                    );
                }
            }
        }
    }

    /// A transfer starts at `done` of `total` bytes, kept from an earlier try.
    pub(crate) fn resuming(&self, transfer: TransferId, done: u64, total: u64, verified: bool) {
        self.resuming_in(transfer, transfer, done, total, verified);
    }

    /// [`resuming`](Self::resuming) for a transfer shown on the line `line` (a file of a
    /// folder, on its offer's line).
    pub(crate) fn resuming_in(
        &self,
        line: TransferId,
        transfer: TransferId,
        done: u64,
        total: u64,
        verified: bool,
    ) {
        let Some(label) = self.lines.get(&line).map(|l| l.label.as_str()) else {
            return;
        };
        self.json(serde_json::json!({
            "event": "resuming",
            "transfer": transfer.to_string(),
            "label": label,
            "offset": done,
            "total": total,
            "prefix_verified": verified,
        }));
        let how = if verified {
            "(prefix verified)"
        } else {
            "(what the receiver kept; the whole file's SHA3-512 is checked at the end)"
        };
        self.line(&format!(
            "{label}: resuming at {} of {} {how}",
            size_text(done),
            size_text(total)
        ));
    }

    /// What the receiver held under this transfer's key was not the start of the file: the
    /// transfer starts again from byte 0.
    pub(crate) fn restarted(&self, transfer: TransferId, held: u64, total: u64, sending: bool) {
        let Some(label) = self.lines.get(&transfer).map(|l| l.label.as_str()) else {
            return;
        };
        self.json(serde_json::json!({
            "event": "restarted",
            "transfer": transfer.to_string(),
            "label": label,
            "held": held,
            "total": total,
        }));
        let (who, how) = match sending {
            true => ("the receiver", "sending"),
            false => ("we", "receiving"),
        };
        self.line(&format!(
            "{label}: what {who} held ({}) did not match: {how} from the start",
            size_text(held)
        ));
    }

    /// A transfer ended: its bar stops with `text`, and a line says it.
    pub(crate) fn finish(&mut self, transfer: TransferId, text: &str) {
        self.finish_with(transfer, text, text);
    }

    /// A transfer ended: its bar stops with the short `bar_text`, and a line says `text`.
    pub(crate) fn finish_with(&mut self, transfer: TransferId, bar_text: &str, text: &str) {
        if let Some(line) = self.lines.get(&transfer) {
            line.bar.finish_with_message(bar_text.to_owned());
            let label = line.label.clone();
            self.line(&format!("{label}: {text}"));
        }
    }

    /// A transfer failed: its bar stays where the bytes stopped, drawn as failed, and a line
    /// says `text`.
    pub(crate) fn fail(&mut self, transfer: TransferId, text: &str) {
        if let Some(line) = self.lines.get(&transfer) {
            line.bar.set_style(failed_style());
            line.bar.abandon_with_message(format!("failed: {text}"));
            let label = line.label.clone();
            self.line(&format!("{label}: {text}"));
        }
    }

    /// Forgets a transfer that ended and was said: its bar leaves the screen (its last line
    /// stays above the bars) and its state goes, so a listener that runs for months keeps
    /// none per transfer it ever saw.
    pub(crate) fn forget(&mut self, transfer: TransferId) {
        if let Some(line) = self.lines.remove(&transfer) {
            self.bars.remove(&line.bar);
        }
    }

    /// Every bar stops where it is.
    pub(crate) fn close(&self) {
        for line in self.lines.values() {
            if !line.bar.is_finished() {
                line.bar.abandon();
            }
        }
        if let Some(bar) = &self.aggregate {
            bar.abandon();
        }
    }
}

/// "135.4 MiB of 300.0 MiB (45%)": the share reached, not the quarter crossed (a resumed
/// file's first line comes in the quarter it resumed in).
fn share_text(done: u64, total: u64) -> String {
    let percent = (u128::from(done) * 100)
        .checked_div(u128::from(total))
        .unwrap_or(100);
    format!("{} of {} ({percent}%)", size_text(done), size_text(total))
}

fn style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>16} [{bar:32}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12} {eta:>4} left  {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// A failed transfer's bar: where its bytes stopped, crossed out, and why.
fn failed_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>16} [{bar:32}] {bytes:>10}/{total_bytes:<10} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("xx ")
}

/// `n` things: `1 file`, `3 files`, `0 folders`.
pub(crate) fn count(n: usize, thing: &str) -> String {
    match n {
        1 => format!("1 {thing}"),
        n => format!("{n} {thing}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::share_text;

    #[test]
    fn a_plain_line_says_the_share_reached() {
        // Resumed at 135 MiB of 300 MiB: its first line comes in the second quarter.
        assert_eq!(
            share_text(135 << 20, 300 << 20),
            "135.0 MiB of 300.0 MiB (45%)"
        );
        assert_eq!(
            share_text(300 << 20, 300 << 20),
            "300.0 MiB of 300.0 MiB (100%)"
        );
        assert_eq!(share_text(0, 0), "0 bytes of 0 bytes (100%)");
    }
}
