//! `ferry`: peer-to-peer file transfer in the way Jami does it.
//!
//! - `ferry demo`: a real transfer in one process, over real loopback sockets, real ICE over
//!   TCP, real TLS 1.3 and an in-process DHT;
//! - `ferry account new|show`, `ferry device add|import|revoke`: identities, in the
//!   platform's data folder or `--home` / `FERRY_HOME`;
//! - `ferry history`: the transfers sent and received, from the records in the home;
//! - `ferry listen` and `ferry send FILE --to ACCOUNT`: everyday transfers between processes
//!   and machines, meeting through a DHT: by default one in a folder shared by every `ferry`
//!   of this user on this machine (no server to start), or OpenDHT through a `dhtnode` proxy
//!   (`--dht http://HOST:PORT`).
//!
//! # `--json`
//! Every line on standard output is one JSON object whose `event` says what it is; ids are
//! strings (transfer ids too: they are 64-bit), sizes and byte counts numbers. PROTOCOL.md
//! §12 lists every event, its fields and when it is printed (`cli/tests/event_schema.rs`
//! checks the list against this code).

// A command-line tool prints to stdout by design.
#![allow(clippy::print_stdout)]

mod ask;
mod contacts;
mod demo;
mod dht;
mod failure;
mod folder_records;
mod home;
mod identity;
mod listen;
mod outcome;
mod rate;
mod records;
mod report;
mod send;
mod send_tree;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use failure::{EXIT_CODES, Failure, exit};
use home::Home;

/// Peer-to-peer file transfer in the way Jami does it.
#[derive(Parser, Debug)]
#[command(name = "ferry", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    /// The identity folder, with config.json in it (default: the platform's data folder for
    /// ferry, and config.json in its configuration folder).
    #[arg(long, global = true, env = "FERRY_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Print one JSON object per line (events, results, errors) instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Log more on standard error: -v what the node and its connections do (ICE pair chosen,
    /// connections failed and requests dropped and why, transfer states), -vv the sockets
    /// opened and closed with their addresses, -vvv every byte count. `RUST_LOG`, when set,
    /// chooses instead.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
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
    /// Your account: create it, or show its id.
    #[command(subcommand)]
    Account(AccountCommand),
    /// The devices of your account.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Names for your contacts' account ids. Once you have any, `listen` answers only them
    /// (and your own devices): others are refused before any connection.
    #[command(subcommand)]
    Contact(ContactCommand),
    /// Wait for files; ask whether to take each one (answer y or n on standard input).
    Listen {
        /// Where received files go (default: the current folder, printed at start; refused
        /// when other users can write in it or it is not yours).
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
        /// Take every file without asking.
        #[arg(long)]
        accept_all: bool,
        /// Take pictures (.jpg, .jpeg, .png, .gif, .webp) smaller than this without asking
        /// (K, M, G = powers of 1024).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        auto_accept_images_under: Option<u64>,
        /// Stop after the first transfer ends; its outcome is the exit code.
        #[arg(long)]
        once: bool,
        /// Ask on standard input even when it is not a terminal (a program that answers one
        /// line, y or n, per offer). Without it and without a terminal, offers that need an
        /// answer are refused, with a line saying so.
        #[arg(long)]
        ask: bool,
        /// Answer only these accounts (contact names or account ids, comma-separated), and
        /// your own devices; others are refused before any connection. Default: your
        /// contacts, if you have any; else anyone who knows your account id.
        #[arg(long, value_name = "WHO", value_delimiter = ',')]
        from: Vec<String>,
        /// Remove, at start, partial data (what arrived of unfinished transfers, kept for
        /// the same send run again) that nobody wrote for this many days.
        #[arg(long, value_name = "DAYS", default_value_t = 7)]
        keep_partial_days: u64,
        /// At start, ask the senders of received transfers that did not finish to send them
        /// again (once each, the 16 most recent), and take what they resend.
        #[arg(long)]
        ask_again: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Send files and folders to every device of a contact; exit code 0 when at least one
    /// device received every file and each SHA3-512 matched.
    Send {
        /// The files and folders (a folder goes with its tree, as one offer per device).
        #[arg(required = true, num_args = 1.., value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Follow symlinks inside folders (by default they are left out, and said).
        #[arg(long)]
        follow_links: bool,
        /// The contact: a name from `ferry contact list`, or an account id (what `ferry
        /// account show` prints there).
        #[arg(long, value_name = "WHO")]
        to: String,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Ask the sender of a file received in part (or missed) to send it again, and take it:
    /// the sender's `listen` checks that the file was sent to you and is unchanged, and
    /// offers it again under the same id; what arrived before is kept and checked. Exit
    /// code 0 once it arrived verified; 6 when a device of the sender refused and none
    /// resends (the code is printed: not_a_recipient, unknown_transfer, file_changed, ...);
    /// 4 when no device of the sender announced itself; 5 when none could be reached.
    Ask {
        /// The transfer id, as `ferry history` shows it on this side.
        id: u64,
        /// Where received files go (default: as for `listen`; partial data is kept there).
        #[arg(long, value_name = "DIR")]
        into: Option<PathBuf>,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Ferry's own OpenDHT node (the one `--bootstrap` starts).
    #[command(subcommand)]
    Dht(DhtCommand),
    /// The transfers sent and received with this home, most recent first: each with its
    /// id, peer, size, devices and state (an unfinished send resumes when run again).
    History {
        /// Show at most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Subcommand, Debug)]
enum DhtCommand {
    /// The node's routing table (nodes, good nodes), the values it stores for others, our
    /// own values and listens, and what it dropped: a running `ferry listen --bootstrap`'s
    /// node if there is one with this home, else a node started for a moment from
    /// `--bootstrap` (exit code 5 when no bootstrap node answers).
    Status {
        /// Bootstrap nodes for a probe, HOST:PORT (default: config.json's "bootstrap").
        #[arg(
            long,
            env = "FERRY_BOOTSTRAP",
            value_name = "HOST:PORT",
            value_delimiter = ' '
        )]
        bootstrap: Vec<String>,
        /// The probe's UDP port (default: any).
        #[arg(long, value_name = "PORT", default_value_t = 0)]
        dht_port: u16,
        /// How long a probe waits for the network to answer, in seconds.
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        wait: u64,
    },
}

#[derive(Subcommand, Debug)]
enum AccountCommand {
    /// Create an account and make this machine its first device; prints the account id.
    New,
    /// Print the account id to give to contacts, and this device's id.
    Show,
}

#[derive(Subcommand, Debug)]
enum DeviceCommand {
    /// Issue a device of this account for another machine, in a file to copy there (needs
    /// the account key: run it where `ferry account new` ran).
    Add {
        /// The file to write (default: ferry-device-ID.pem here, ID the start of the device id).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Make this machine the device in a file from `ferry device add`.
    Import {
        /// The file.
        file: PathBuf,
    },
    /// Revoke a device: sign a revocation list naming it (and every device revoked before);
    /// nodes using this home refuse it from then on.
    Revoke {
        /// The device id (as `ferry account show` prints it there).
        device: String,
    },
}

#[derive(Subcommand, Debug)]
enum ContactCommand {
    /// Name an account: `ferry contact add bob ACCOUNT_ID`; then `send --to bob`.
    Add {
        /// The name.
        name: String,
        /// The account id (what `ferry account show` prints on their machine).
        account: String,
    },
    /// Forget a name.
    Remove {
        /// The name.
        name: String,
    },
    /// Every contact: name and account id.
    List,
}

/// How `listen` and `send` reach the others.
#[derive(Args, Debug)]
struct NetArgs {
    /// The DHT: http://HOST:PORT for an OpenDHT proxy (`dhtnode --proxyserver PORT`), or
    /// file:PATH for a folder. Default: a folder shared by every ferry of this user here.
    #[arg(long, env = "FERRY_DHT", value_name = "URL")]
    dht: Option<String>,
    /// An OpenDHT node to join the network through, HOST:PORT (a `dhtnode`; Jami's public
    /// network's is bootstrap.jami.net:4222). With it, ferry runs its own OpenDHT node over
    /// UDP beside the --dht one (puts go to both, listens listen on both), so machines that
    /// share no folder meet. May be repeated; FERRY_BOOTSTRAP may hold several, separated
    /// by spaces; "bootstrap" in config.json too.
    #[arg(
        long,
        env = "FERRY_BOOTSTRAP",
        value_name = "HOST:PORT",
        value_delimiter = ' '
    )]
    bootstrap: Vec<String>,
    /// The UDP port of ferry's own OpenDHT node (default: any; OpenDHT's usual one is 4222).
    #[arg(long, value_name = "PORT")]
    dht_port: Option<u16>,
    /// A TURN server for the relayed path: turn://user:pass@host:port?realm=r (an IPv6
    /// server, `turn://user:pass@[addr]:port`, relays over IPv6); may be repeated, and
    /// FERRY_TURN may hold several, separated by spaces.
    #[arg(long, env = "FERRY_TURN", value_name = "URL", value_delimiter = ' ')]
    turn: Vec<String>,
    /// A STUN server (TCP), to learn this machine's public address without a relay:
    /// HOST:PORT; may be repeated. A --turn server serves as one too.
    #[arg(long, value_name = "HOST:PORT")]
    stun: Vec<String>,
    /// Offer only the relayed path (needs a TURN server).
    #[arg(long)]
    relay_only: bool,
    /// Do not ask the home router to forward the listening port. By default Ferry asks it
    /// (PCP, then NAT-PMP, then UPnP-IGD), offers the mapped address to peers, renews the
    /// mapping and deletes it when it stops; `"port_mapping": false` in config.json too.
    /// (FERRY_NO_PORT_MAPPING=1 does the same.)
    #[arg(
        long,
        env = "FERRY_NO_PORT_MAPPING",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    no_port_mapping: bool,
}

impl NetArgs {
    /// The options: flags and environment first, then `config.json`.
    fn options(&self, settings: &home::Settings) -> Result<session::NetOptions, Failure> {
        let dht = self.dht.as_deref().or(settings.dht.as_deref());
        let turn: Vec<&str> = if self.turn.is_empty() {
            settings.turn.values()
        } else {
            // Several spaces between URLs in FERRY_TURN leave empty values.
            self.turn
                .iter()
                .map(String::as_str)
                .filter(|t| !t.is_empty())
                .collect()
        };
        if self.relay_only && turn.is_empty() {
            return Err(Failure::Usage(
                "--relay-only needs a TURN server (--turn)".to_owned(),
            ));
        }
        let stun = if self.stun.is_empty() {
            &settings.stun
        } else {
            &self.stun
        };
        let bootstrap: Vec<&str> = if self.bootstrap.is_empty() {
            settings.bootstrap.values()
        } else {
            self.bootstrap
                .iter()
                .map(String::as_str)
                .filter(|b| !b.is_empty())
                .collect()
        };
        Ok(session::NetOptions {
            dht: session::parse_dht(dht)?,
            bootstrap: bootstrap
                .into_iter()
                .map(session::parse_bootstrap)
                .collect::<Result<_, _>>()?,
            dht_port: self.dht_port.or(settings.dht_port).unwrap_or(0),
            turn: turn
                .into_iter()
                .map(session::parse_turn)
                .collect::<Result<_, _>>()?,
            stun: stun
                .iter()
                .map(|s| session::parse_stun(s))
                .collect::<Result<_, _>>()?,
            relay_only: self.relay_only,
            // Relay only never maps: it offers no address of ours.
            port_mapping: !self.relay_only
                && !self.no_port_mapping
                && settings.port_mapping.unwrap_or(true),
        })
    }
}

/// `64M`, `20MB`, `1G`, `512`: bytes, with K, M, G meaning powers of 1024.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => s.split_at(i),
        None => (s, ""),
    };
    let n: u64 = digits.parse().map_err(|_| format!("not a size: {s:?}"))?;
    let mult = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        other => return Err(format!("unknown unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| "size too large".to_owned())
}

/// Logs go to standard error, filtered by `RUST_LOG` when it is set (e.g. `RUST_LOG=debug`,
/// `RUST_LOG=ferry_driver::node=info`), else by `-v` (see [`Cli::verbose`]), else warnings
/// only; coloured only when standard error is a terminal (a log file or a pipe gets plain
/// text, not escape codes).
fn init_logs(verbose: u8) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let by_verbosity = || {
        let ours = match verbose {
            0 => LevelFilter::WARN,
            1 => LevelFilter::INFO,
            2 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        };
        Targets::new()
            .with_default(LevelFilter::WARN)
            .with_target("ferry", ours)
            .with_target("ferry_driver", ours)
            .with_target("ferry_tokio", ours)
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("ferry: RUST_LOG={spec:?} is not understood ({e}); logging warnings");
            Targets::new().with_default(LevelFilter::WARN)
        }),
        _ => by_verbosity(),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .with(filter)
        .init();
}

fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(format!("cannot start the runtime: {e}")))
}

fn run(cli: Cli) -> Result<(), Failure> {
    let json = cli.json;
    let home = || Home::locate(cli.home.clone());
    match cli.command {
        Command::Demo { size, file, relay } => {
            match runtime()?.block_on(demo::run(demo::Options { size, file, relay })) {
                Ok(true) => Ok(()),
                Ok(false) => Err(Failure::Unreachable(
                    "the demo's file was not delivered and verified".to_owned(),
                )),
                Err(e) => Err(Failure::Usage(e)),
            }
        }
        Command::Account(AccountCommand::New) => identity::account_new(&home()?, json),
        Command::Account(AccountCommand::Show) => identity::account_show(&home()?, json),
        Command::Device(DeviceCommand::Add { out }) => identity::device_add(&home()?, out, json),
        Command::Device(DeviceCommand::Import { file }) => {
            identity::device_import(&home()?, &file, json)
        }
        Command::Device(DeviceCommand::Revoke { device }) => {
            identity::device_revoke(&home()?, &device, json)
        }
        Command::Contact(ContactCommand::Add { name, account }) => {
            contacts::add(&home()?, &name, &account, json)
        }
        Command::Contact(ContactCommand::Remove { name }) => {
            contacts::remove(&home()?, &name, json)
        }
        Command::Contact(ContactCommand::List) => contacts::list(&home()?, json),
        Command::Listen {
            into,
            accept_all,
            auto_accept_images_under,
            once,
            ask,
            from,
            keep_partial_days,
            ask_again,
            net,
        } => {
            let home = home()?;
            let settings = home.settings()?;
            let net = net.options(&settings)?;
            let into_is_default = into.is_none() && settings.into.is_none();
            let options = listen::Options {
                into: into
                    .or(settings.into)
                    .unwrap_or_else(|| home::default_receive_folder(&home)),
                into_is_default,
                accept_all,
                auto_accept_images_under,
                once,
                ask,
                from,
                keep_partial: std::time::Duration::from_secs(
                    keep_partial_days.saturating_mul(86_400),
                ),
                ask_again,
            };
            runtime()?.block_on(listen::run(&home, &net, &options, json))
        }
        Command::Send {
            paths,
            follow_links,
            to,
            net,
        } => {
            let home = home()?;
            let net = net.options(&home.settings()?)?;
            // One file goes as it always did (its records, its resume); anything else as
            // one offer per device.
            match paths.as_slice() {
                [file] if !file.is_dir() => {
                    runtime()?.block_on(send::run(&home, &net, file, &to, json))
                }
                _ => runtime()?.block_on(send_tree::run(
                    &home,
                    &net,
                    &paths,
                    follow_links,
                    &to,
                    json,
                )),
            }
        }
        Command::Ask { id, into, net } => {
            let home = home()?;
            let settings = home.settings()?;
            let net = net.options(&settings)?;
            let options = ask::Options {
                transfer: ferry_proto::transfer::TransferId(id),
                into: into
                    .or(settings.into)
                    .unwrap_or_else(|| home::default_receive_folder(&home)),
            };
            runtime()?.block_on(ask::run(&home, &net, &options, json))
        }
        Command::History { limit } => history(&home()?, limit, json),
        Command::Dht(DhtCommand::Status {
            bootstrap,
            dht_port,
            wait,
        }) => {
            let home = home()?;
            let settings = home.settings()?;
            let bootstrap: Vec<String> = if bootstrap.iter().all(String::is_empty) {
                settings
                    .bootstrap
                    .values()
                    .into_iter()
                    .map(str::to_owned)
                    .collect()
            } else {
                bootstrap.into_iter().filter(|b| !b.is_empty()).collect()
            };
            let bootstrap = bootstrap
                .iter()
                .map(|b| session::parse_bootstrap(b))
                .collect::<Result<Vec<_>, _>>()?;
            dht::status(
                &home,
                &bootstrap,
                dht_port,
                std::time::Duration::from_secs(wait),
                json,
            )
        }
    }
}

/// `ferry history`: the records, most recent first.
fn history(home: &Home, limit: usize, json: bool) -> Result<(), Failure> {
    let records = records::Records::new(home.dir()).all()?;
    let sends = folder_records::FolderRecords::new(home.dir()).all()?;
    if records.is_empty() && sends.is_empty() && !json {
        println!("No transfers yet.");
    }
    // Both kinds, most recent first: (when, JSON, line).
    let as_json = |value: Result<serde_json::Value, serde_json::Error>| {
        value.map_err(|e| Failure::Internal(format!("a record that is not JSON: {e}")))
    };
    let mut all = Vec::new();
    for r in &records {
        let mut value = as_json(serde_json::to_value(r))?;
        if let Some(object) = value.as_object_mut() {
            object.insert("event".to_owned(), "record".into());
        }
        all.push((r.updated, value, r.line()));
    }
    for r in &sends {
        let mut value = as_json(serde_json::to_value(r))?;
        if let Some(object) = value.as_object_mut() {
            object.insert("event".to_owned(), "files_record".into());
        }
        all.push((r.updated, value, r.line()));
    }
    all.sort_by_key(|(updated, ..)| std::cmp::Reverse(*updated));
    for (_, value, line) in all.into_iter().take(limit) {
        match json {
            true => println!("{value}"),
            false => println!("{line}"),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose);
    let json = cli.json;
    match run(cli) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(failure) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "event": "error",
                        "kind": failure.kind(),
                        "message": failure.to_string(),
                        "exit_code": failure.code(),
                    })
                );
            }
            eprintln!("ferry: {failure}");
            ExitCode::from(failure.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(relay_only: bool, no_port_mapping: bool) -> NetArgs {
        NetArgs {
            dht: Some("file:/nonexistent-ferry-dht".to_owned()),
            bootstrap: Vec::new(),
            dht_port: None,
            turn: vec!["turn://u:p@127.0.0.1:3478?realm=r".to_owned()],
            stun: Vec::new(),
            relay_only,
            no_port_mapping,
        }
    }

    #[test]
    fn port_mapping_is_on_unless_refused_or_relay_only() {
        let mapping = |args: NetArgs, settings: home::Settings| {
            args.options(&settings).expect("options").port_mapping
        };
        let off = home::Settings {
            port_mapping: Some(false),
            ..home::Settings::default()
        };
        assert!(mapping(net(false, false), home::Settings::default()));
        assert!(!mapping(net(false, true), home::Settings::default()));
        assert!(!mapping(net(false, false), off));
        assert!(!mapping(net(true, false), home::Settings::default()));
    }
}
