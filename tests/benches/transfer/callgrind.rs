//! Instructions per byte from a side's callgrind profile, split into the cryptography (SHA3
//! and AES-GCM, which no protocol change can remove) and everything else: the protocol's
//! path, its copies and the runtime.

use std::path::Path;
use std::process::Command;

/// Functions that belong to the cryptography: keccak and the `digest` crate's block buffer
/// (SHA3-512), and ring's AES-GCM (its assembly and the C glue around it).
const CRYPTO: &[&str] = &[
    "keccak",
    "sha3",
    "digest::core_api",
    "aes_",
    "aesni",
    "gcm_",
    "ghash",
    "chacha",
    "poly1305",
];

/// Prints instructions per byte for one side's profile at `file`, for a transfer of `bytes`.
pub(crate) fn report(name: &str, file: &Path, bytes: u64) {
    let out = Command::new("callgrind_annotate")
        .arg("--threshold=100")
        .arg(file)
        .output();
    let Ok(out) = out else {
        println!("  {name}: callgrind_annotate did not run");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let mut total = 0u64;
    let mut crypto = 0u64;
    let mut rest: Vec<(u64, String)> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((count, what)) = line.split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        // "1,234 (100.0%)  PROGRAM TOTALS", then "1,234 (12.3%)  file:function [object]".
        let what = what.split_once(')').map_or(what, |(_, w)| w).trim();
        if what.starts_with("PROGRAM TOTALS") {
            total = count;
        } else if CRYPTO.iter().any(|c| what.to_lowercase().contains(c)) {
            crypto += count;
        } else if !what.is_empty() {
            rest.push((count, what.to_owned()));
        }
    }
    let per = |n: u64| n as f64 / bytes as f64;
    println!(
        "  {name:<8} {:.2} instructions/byte: SHA3 + AES-GCM {:.2}, the rest {:.2} (profile: {})",
        per(total),
        per(crypto),
        per(total.saturating_sub(crypto)),
        file.display()
    );
    for (count, what) in rest.iter().take(12) {
        let short: String = what.chars().take(110).collect();
        println!("           {:>6.3} {short}", per(*count));
    }
}
