//! SHA3-512 as fast as this machine runs it: the `sha3` crate Ferry uses, against the
//! CRYPTOGAMS assembly (`keccak-asm`, the same Keccak code OpenSSL builds from) and OpenSSL
//! itself (`openssl speed`, when the command is there), each on one core, in CPU time, in the
//! same run (`FERRY_BENCH_HASHES=1` prints only this).

use sha3::Digest as _;

use super::cost;

/// How many bytes each implementation hashes.
const BYTES: u64 = 256 << 20;

/// Prints each implementation's speed and its ratio to the `sha3` crate's.
pub(crate) fn compare(block: &[u8]) {
    // The same digest from both crates, or the comparison means nothing.
    assert_eq!(
        sha3::Sha3_512::digest(block)[..],
        keccak_asm::Sha3_512::digest(block)[..],
        "keccak-asm's SHA3-512 is not the sha3 crate's"
    );
    let gib = |cpu: f64| BYTES as f64 / f64::from(1u32 << 30) / cpu;
    let ours = gib(cost::sha3(block, BYTES).0);
    let asm = gib(cost::measure(|| {
        let mut hasher = keccak_asm::Sha3_512::new();
        for _ in 0..BYTES / block.len() as u64 {
            keccak_asm::Digest::update(&mut hasher, block);
        }
        std::hint::black_box(keccak_asm::Digest::finalize(hasher));
    })
    .0);
    let mut line = format!(
        "SHA3-512 on one core (CPU time): sha3 crate {ours:.3} GiB/s; keccak-asm {asm:.3} GiB/s ({:.2} × sha3 crate)",
        asm / ours
    );
    match openssl() {
        Some(theirs) => {
            line += &format!(
                "; OpenSSL {theirs:.3} GiB/s ({:.2} ×, openssl speed -evp sha3-512)",
                theirs / ours
            )
        }
        None => line += "; no `openssl` command to compare",
    }
    println!("{line}");
}

/// OpenSSL's SHA3-512 over 1 MiB blocks, GiB/s, from its own `speed` command.
fn openssl() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args([
            "speed", "-seconds", "2", "-bytes", "1048576", "-evp", "sha3-512",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = text.lines().rev().find(|l| l.starts_with("sha3-512"))?;
    let kilo: f64 = line
        .split_whitespace()
        .nth(1)?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(kilo * 1000.0 / f64::from(1u32 << 30))
}
