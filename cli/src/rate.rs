//! Sizes, durations and rates as people read them, the speed and time left of one transfer,
//! and how often a `--json` progress line may be printed.

use std::time::{Duration, Instant};

/// How often, at most, `--json` prints a `progress` (per device) or `aggregate` line:
/// about four a second, plus the first and the last, whatever the file size (one per
/// 64 KiB was 8,173 lines for 512 MiB).
pub(crate) const JSON_PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// A device's data phase: when its first byte was reported, and when its last verdict came.
pub(crate) type DataPhase = (Option<Instant>, Option<Instant>);

/// Of several devices' data phases, the one that ended first, with its length: the rate a
/// send reports is that device's. Not from the first device's first byte to the last one's
/// verdict: a device that started late would count its wait as time the bytes took.
pub(crate) fn first_to_end<T>(
    phases: impl IntoIterator<Item = (T, DataPhase)>,
) -> Option<(T, Duration)> {
    phases
        .into_iter()
        .filter_map(|(who, phase)| match phase {
            (Some(from), Some(to)) => Some((to, to.saturating_duration_since(from), who)),
            _ => None,
        })
        .min_by_key(|(to, ..)| *to)
        .map(|(_, took, who)| (who, took))
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

/// A duration for a person: `850 ms`, `4.2 s`, `3 min 05 s`.
pub(crate) fn duration_text(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{} ms", d.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let whole = d.as_secs();
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// `bytes` moved in `took`, for a person: `512.0 MiB in 14.2 s (36.1 MiB/s)`; a transfer
/// too short to time gives no rate (not "0.0 MiB in 0.00 s").
pub(crate) fn throughput_text(bytes: u64, took: Duration) -> String {
    let size = size_text(bytes);
    if took < Duration::from_millis(1) {
        return format!("{size} at once");
    }
    let rate = bytes as f64 / took.as_secs_f64();
    format!(
        "{size} in {} ({}/s)",
        duration_text(took),
        size_text(rate as u64)
    )
}

/// The speed and time left of one transfer, measured from its first progress on (a resumed
/// transfer's kept prefix is not counted as speed).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meter {
    start: Option<(Instant, u64)>,
    last: Option<(Instant, u64)>,
}

impl Meter {
    /// A meter that has seen nothing.
    pub(crate) fn new() -> Meter {
        Meter {
            start: None,
            last: None,
        }
    }

    /// `done` bytes at `now`.
    pub(crate) fn update(&mut self, now: Instant, done: u64) {
        self.start.get_or_insert((now, done));
        self.last = Some((now, done));
    }

    /// Bytes per second since the first update; `None` before anything was timed.
    pub(crate) fn rate(&self) -> Option<f64> {
        let ((t0, d0), (t1, d1)) = (self.start?, self.last?);
        let secs = t1.duration_since(t0).as_secs_f64();
        (secs >= 0.05 && d1 > d0).then(|| (d1 - d0) as f64 / secs)
    }

    /// The time left to reach `total` at [`rate`](Self::rate).
    pub(crate) fn left(&self, total: u64) -> Option<Duration> {
        let rate = self.rate()?;
        let (_, done) = self.last?;
        let secs = total.saturating_sub(done) as f64 / rate;
        secs.is_finite()
            .then(|| Duration::from_secs_f64(secs.min(1e7)))
    }

    /// `, 36.1 MiB/s, 12 s left` (whole seconds, rounded up), `, 36.1 MiB/s` once every byte
    /// is there, or nothing before anything was timed.
    pub(crate) fn text(&self, total: u64) -> String {
        let done = self.last.map_or(0, |(_, d)| d);
        match (self.rate(), self.left(total)) {
            (Some(rate), _) if done >= total => format!(", {}/s", size_text(rate as u64)),
            (Some(rate), Some(left)) => format!(
                ", {}/s, {} left",
                size_text(rate as u64),
                duration_text(Duration::from_secs(left.as_secs_f64().ceil() as u64))
            ),
            _ => String::new(),
        }
    }
}

/// Lets a line through at most once per [`JSON_PROGRESS_EVERY`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    /// Whether a line may go at `now` (`always`: the first or last of its kind, or a change
    /// of state, which always goes); when it may, the clock starts again.
    pub(crate) fn pass(&mut self, now: Instant, always: bool) -> bool {
        let due = self
            .last
            .is_none_or(|at| now.duration_since(at) >= JSON_PROGRESS_EVERY);
        if due || always {
            self.last = Some(now);
        }
        due || always
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size_text(900), "900 bytes");
        assert_eq!(size_text(537_185_485), "512.3 MiB");
        assert_eq!(size_text(1 << 30), "1.0 GiB");
    }

    #[test]
    fn tiny_transfers_are_not_zero_mib_in_zero_seconds() {
        assert_eq!(
            throughput_text(1000, Duration::from_millis(4)),
            "1000 bytes in 4 ms (244.1 KiB/s)"
        );
        assert_eq!(throughput_text(10, Duration::ZERO), "10 bytes at once");
        assert_eq!(
            throughput_text(512 << 20, Duration::from_secs(16)),
            "512.0 MiB in 16.0 s (32.0 MiB/s)"
        );
        assert_eq!(duration_text(Duration::from_secs(185)), "3 min 05 s");
    }

    #[test]
    fn the_rate_is_the_first_device_to_end_its_own() {
        let t0 = Instant::now();
        let at = |ms| Some(t0 + Duration::from_millis(ms));
        // b1 ran 100..400 ms; b2 was late (its first byte at 2 s) and ended last; b3 never
        // got a byte; b4 has bytes and no verdict yet.
        let phases = [
            ("b2", (at(2_000), at(2_300))),
            ("b1", (at(100), at(400))),
            ("b3", (None, None)),
            ("b4", (at(50), None)),
        ];
        assert_eq!(
            first_to_end(phases),
            Some(("b1", Duration::from_millis(300)))
        );
        assert_eq!(first_to_end([("b3", (None, None))]), None);
    }

    #[test]
    fn the_meter_gives_speed_and_time_left() {
        let t0 = Instant::now();
        let mut m = Meter::new();
        assert_eq!(m.text(100), "");
        m.update(t0, 1 << 20);
        m.update(t0 + Duration::from_secs(2), 5 << 20);
        assert_eq!(m.rate(), Some(2.0 * 1024.0 * 1024.0));
        assert_eq!(m.left(9 << 20), Some(Duration::from_secs(2)));
        assert_eq!(m.text(9 << 20), ", 2.0 MiB/s, 2.0 s left");
        assert_eq!(m.text(5 << 20), ", 2.0 MiB/s", "nothing left once done");
        assert_eq!(
            m.text((5 << 20) + 1),
            ", 2.0 MiB/s, 1.0 s left",
            "rounded up"
        );
    }

    #[test]
    fn the_throttle_lets_four_a_second_through_and_changes_always() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        let passed = (0..100)
            .filter(|i| t.pass(t0 + Duration::from_millis(10 * i), false))
            .count();
        assert_eq!(passed, 4, "one second of lines every 10 ms");
        assert!(t.pass(t0 + Duration::from_millis(995), true));
    }
}
