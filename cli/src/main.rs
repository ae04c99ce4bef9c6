//! `ferry`: the command people use. Its commands (`demo`, `account`, `device`, `listen`,
//! `send`) arrive with the `[cli]` issue, on top of the tokio runtime; until then the binary
//! only says what it is and which protocol version it speaks, and fails on anything else.

// A command-line tool prints to stdout by design.
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-V") => {
            println!(
                "ferry {} (transfer framing: Jami's, with Ferry-Frames {})",
                env!("CARGO_PKG_VERSION"),
                ferry_proto::transfer::header::EXTENSION_VERSION
            );
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "ferry {}: peer-to-peer file transfer in the way Jami does it.\n\n\
                 No command is available yet: `demo`, `account`, `device`, `listen` and `send`\n\
                 come with the runtimes. `ferry --version` prints the protocol version.",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(2)
        }
    }
}
