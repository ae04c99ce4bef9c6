//! Sends one file between two Ferry transfer state machines over an in-memory pipe on a
//! virtual clock, and prints the protocol trace and the outcome.
//!
//! ```text
//! cargo run -p ferry-tests --example pair -- [SIZE_BYTES] [--jami-receiver] [--cancel-at BYTES]
//! ```
#![allow(clippy::print_stdout)]

use std::process::ExitCode;

use ferry_proto::transfer::{Digest, Form, Status};
use ferry_tests::content;
use ferry_tests::pair::{Pair, Script, Setup};

fn main() -> ExitCode {
    let mut setup = Setup {
        size: 8 * 1024 * 1024,
        ..Setup::default()
    };
    let mut script = Script::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--jami-receiver" => setup.receiver_form = Form::Raw,
            "--cancel-at" => script.sender_cancels_at = args.next().and_then(|v| v.parse().ok()),
            n => match n.parse() {
                Ok(size) => setup.size = size,
                Err(_) => {
                    eprintln!("usage: pair [SIZE_BYTES] [--jami-receiver] [--cancel-at BYTES]");
                    return ExitCode::from(2);
                }
            },
        }
    }
    let expected = Digest::of(&content::range(setup.seed, 0, setup.size as usize));
    let out = Pair::new(setup.clone(), script).run();
    print!("{}", out.trace);
    println!();
    println!("sender:   {}", out.sender);
    println!("receiver: {}", out.receiver);
    println!(
        "virtual time: {:.3}s for {} bytes",
        out.elapsed.as_secs_f64(),
        setup.size
    );
    match out.finals.get("photo.jpg") {
        Some(data) if Digest::of(data) == expected && out.receiver == Status::Finished => {
            println!("received whole, SHA3-512 {expected}");
            ExitCode::SUCCESS
        }
        _ => {
            println!("not received whole");
            ExitCode::FAILURE
        }
    }
}
