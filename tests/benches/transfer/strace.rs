//! System calls per side from `strace -f -c`: how many of each kind a transfer makes, per
//! 64 MiB, so a change's effect on wake-ups and read sizes shows whatever the machine's load.

use std::path::Path;

/// Prints the most frequent system calls in the `strace -c` summary at `file`, per 64 MiB of
/// a transfer of `bytes`.
pub(crate) fn report(name: &str, file: &Path, bytes: u64) {
    let Ok(text) = std::fs::read_to_string(file) else {
        println!("  {name}: no strace summary at {}", file.display());
        return;
    };
    let per = |calls: u64| calls as f64 * (64u64 << 20) as f64 / bytes as f64;
    let mut calls: Vec<(u64, String)> = Vec::new();
    let mut total = 0;
    // "% time  seconds  usecs/call  calls  [errors]  syscall", then "------", then the total.
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (Some(count), Some(syscall)) = (words.get(3), words.last()) else {
            continue;
        };
        let Ok(count) = count.parse::<u64>() else {
            continue;
        };
        if *syscall == "total" {
            total = count;
        } else {
            calls.push((count, (*syscall).to_owned()));
        }
    }
    calls.sort_by_key(|c| std::cmp::Reverse(c.0));
    let top: Vec<String> = calls
        .iter()
        .take(8)
        .map(|(n, s)| format!("{s} {:.0}", per(*n)))
        .collect();
    println!(
        "  {name:<8} {:.0} system calls per 64 MiB: {} (summary: {})",
        per(total),
        top.join(", "),
        file.display()
    );
}
