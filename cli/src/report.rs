//! What `listen` and `send` show: progress bars on a terminal, plain lines otherwise, or one
//! JSON object per line with `--json`.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;

use ferry_proto::transfer::TransferId;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

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
    /// The last quarter printed (plain lines) or percent printed (JSON).
    last_step: Option<u64>,
}

/// The output of one command.
pub(crate) struct Report {
    mode: Mode,
    bars: MultiProgress,
    lines: BTreeMap<TransferId, Line>,
    aggregate: Option<ProgressBar>,
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
    /// (`path`: host / srflx / prflx / relay / relay-relay; `class`: direct / relayed; the
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

    /// A bar for the whole group, below the others.
    pub(crate) fn add_aggregate(&mut self, label: &str, size: u64) {
        let bar = self.bars.add(ProgressBar::new(size));
        bar.set_style(style());
        bar.set_prefix(label.to_owned());
        self.aggregate = Some(bar);
    }

    /// The group's bar moves.
    pub(crate) fn aggregate(&self, done: u64, total: u64, status: &str) {
        if let Some(bar) = &self.aggregate {
            bar.set_length(total);
            bar.set_position(done);
            bar.set_message(status.to_owned());
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
            },
        );
    }

    /// Bytes moved: the bar moves; plain lines every quarter; JSON every percent.
    pub(crate) fn progress(&mut self, transfer: TransferId, done: u64, total: u64) {
        let mode = self.mode;
        let Some(line) = self.lines.get_mut(&transfer) else {
            return;
        };
        line.bar.set_length(total);
        line.bar.set_position(done);
        let (steps, text) = match mode {
            Mode::Bars => return,
            Mode::Lines => (4, None),
            Mode::Json => (100, Some(())),
        };
        let step = (done * steps).checked_div(total).unwrap_or(steps);
        if line.last_step.replace(step) == Some(step) {
            return;
        }
        if text.is_some() {
            println!(
                "{}",
                serde_json::json!({
                    "event": "progress",
                    "transfer": transfer.to_string(),
                    "label": line.label,
                    "done": done,
                    "total": total,
                })
            );
        } else {
            println!("{}: {done}/{total} bytes", line.label);
        }
    }

    /// A transfer starts at `done` of `total` bytes, kept from an earlier try.
    pub(crate) fn resuming(&self, transfer: TransferId, done: u64, total: u64, verified: bool) {
        let Some(label) = self.lines.get(&transfer).map(|l| l.label.as_str()) else {
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

fn style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>16} [{bar:32}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// `bytes` for a person: `512.3 MiB`, `1.0 GiB`, `900 bytes`.
pub(crate) fn size_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::size_text;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(900), "900 bytes");
        assert_eq!(size_text(537_185_485), "512.3 MiB");
        assert_eq!(size_text(1 << 30), "1.0 GiB");
    }
}
