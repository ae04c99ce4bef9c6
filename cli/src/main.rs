//! `ferry`: peer-to-peer file transfer in the way Jami does it.
//!
//! Today it has one command, `ferry demo`: a real transfer in one process, over real loopback
//! sockets, real ICE over TCP, real TLS 1.3 and an in-process DHT. The everyday commands
//! (`account`, `device`, `listen`, `send`) are the subject of the `[cli]` issue.

// A command-line tool prints to stdout by design.
#![allow(clippy::print_stdout)]

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit codes, for scripts.
mod exit {
    /// The file arrived and its SHA3-512 matched.
    pub(crate) const OK: u8 = 0;
    /// Bad arguments or set-up (a file that cannot be read, say).
    pub(crate) const USAGE: u8 = 2;
    /// No device received and verified the file.
    pub(crate) const NOT_DELIVERED: u8 = 3;
}

/// Peer-to-peer file transfer in the way Jami does it.
///
/// Exit codes: 0 the file arrived and its SHA3-512 matched; 2 bad arguments or set-up;
/// 3 no device received and verified the file.
#[derive(Parser, Debug)]
#[command(name = "ferry", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Alice (one device) sends a file to Bob (two devices) in this process, over real
    /// loopback sockets, ICE, TLS 1.3 and an in-process DHT; one of Bob's devices accepts,
    /// the other refuses; the SHA3-512 is verified and the throughput printed.
    Demo {
        /// Size of the generated file to send (bytes; K, M, G suffixes allowed).
        #[arg(long, default_value = "64M", value_parser = parse_size)]
        size: u64,
        /// Send this file instead of a generated one.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Force the relayed path through this TURN server: turn://user:pass@host:port?realm=r
        #[arg(long)]
        relay: Option<String>,
    },
}

fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| "size too large".to_owned())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { size, file, relay } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("ferry: cannot start the runtime: {e}");
                    return ExitCode::from(exit::USAGE);
                }
            };
            match runtime.block_on(demo::run(demo::Options { size, file, relay })) {
                Ok(true) => ExitCode::from(exit::OK),
                Ok(false) => ExitCode::from(exit::NOT_DELIVERED),
                Err(e) => {
                    eprintln!("ferry: {e}");
                    ExitCode::from(exit::USAGE)
                }
            }
        }
    }
}
