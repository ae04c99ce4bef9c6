//! `ferry dht status`: what Ferry's own OpenDHT node is doing.
//!
//! A `ferry listen` (or `send`) given `--bootstrap` runs an OpenDHT node of its own and writes
//! its status to `dht-status.json` in the home every two seconds. This prints that status
//! when the process that wrote it still runs; else, given `--bootstrap`, it starts a node
//! of its own for a moment (a probe: does the network answer, how many nodes does it know),
//! and prints that.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ferry_driver::{NativeClient, NativeConfig};

use crate::failure::Failure;
use crate::home::Home;

/// The status file in the home.
pub(crate) const STATUS_FILE: &str = "dht-status.json";
/// A status file older than this is a stopped process's.
const FRESH: Duration = Duration::from_secs(10);

/// `ferry dht status`.
pub(crate) fn status(
    home: &Home,
    bootstrap: &[String],
    port: u16,
    wait: Duration,
    json: bool,
) -> Result<(), Failure> {
    if let Some(running) = running_status(&home.dir().join(STATUS_FILE)) {
        return print(running, "the running ferry's node", json);
    }
    if bootstrap.is_empty() {
        return Err(Failure::Usage(
            "no running ferry has a DHT node of its own here (start `ferry listen --bootstrap HOST:PORT`), and no --bootstrap to probe the network with".to_owned(),
        ));
    }
    let mut config = NativeConfig::new(bootstrap.to_vec());
    config.bind.set_port(port);
    let client = NativeClient::new(&config, |_| {})
        .map_err(|e| Failure::Usage(format!("cannot open the DHT node's UDP port {port}: {e}")))?;
    let deadline = Instant::now() + wait;
    while !client.status().joined && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let joined = client.status().joined;
    if joined {
        // The answers to our first lookup's last requests, and their nodes' pings.
        std::thread::sleep(Duration::from_millis(500).min(wait));
    }
    let status = client.status().to_json();
    print(status, "a probe", json)?;
    if joined {
        Ok(())
    } else {
        Err(Failure::Unreachable(format!(
            "no OpenDHT node answered within {} s (bootstrap: {})",
            wait.as_secs(),
            bootstrap.join(" ")
        )))
    }
}

/// The status a live process wrote, if any.
fn running_status(path: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    let written = value.get("written")?.as_u64()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    let pid = value.get("pid")?.as_u64()?;
    let alive = Path::new(&format!("/proc/{pid}")).exists() || !Path::new("/proc").exists();
    (now.saturating_sub(written) <= FRESH.as_secs() && alive).then_some(value)
}

fn print(mut status: serde_json::Value, whose: &str, json: bool) -> Result<(), Failure> {
    if json {
        if let Some(object) = status.as_object_mut() {
            object.insert("event".to_owned(), "dht_status".into());
            object.insert("source".to_owned(), whose.into());
        }
        println!("{status}");
        return Ok(());
    }
    let field = |k: &str| status.get(k).cloned().unwrap_or(serde_json::Value::Null);
    let n = |k: &str| field(k).as_u64().unwrap_or(0);
    println!(
        "DHT node {} on {} ({whose})",
        field("id").as_str().unwrap_or("?"),
        field("local").as_str().unwrap_or("?")
    );
    println!(
        "joined: {}",
        if field("joined").as_bool() == Some(true) {
            "yes"
        } else {
            "no (no bootstrap node answered yet)"
        }
    );
    println!(
        "routing table: {} nodes ({} IPv6), {} good",
        n("nodes"),
        n("nodes6"),
        n("good")
    );
    if let Some(local6) = field("local6").as_str() {
        println!("IPv6: {local6}");
    }
    let public: Vec<String> = field("public")
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    println!(
        "public address (as the nodes we asked see us): {}",
        if public.is_empty() {
            "unknown".to_owned()
        } else {
            public.join(" ")
        }
    );
    println!(
        "reachable from outside: {} ({} nodes we never contacted reached us)",
        field("reachable").as_str().unwrap_or("unknown"),
        n("strangers")
    );
    println!(
        "stored for others: {} values, {} listens",
        n("stored"),
        n("listeners")
    );
    println!(
        "our values: {} ({} stored on the network at their last round); listens: {}",
        n("our_values"),
        n("our_values_stored"),
        n("listens")
    );
    let sent = field("sent");
    let sent_n = |k: &str| sent.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    println!(
        "kept alive by: {} puts, {} refreshes ({} refused), {} listens sent; {} updates heard",
        sent_n("puts"),
        sent_n("refreshes"),
        sent_n("refreshes_refused"),
        sent_n("listens"),
        sent_n("updates_heard")
    );
    if let Some(names) = field("unresolved").as_array().filter(|a| !a.is_empty()) {
        let names: Vec<&str> = names.iter().filter_map(|v| v.as_str()).collect();
        println!("bootstrap names that do not resolve: {}", names.join(" "));
    }
    if let Some(dropped) = field("dropped").as_object() {
        let counts: Vec<String> = dropped
            .iter()
            .filter(|(_, v)| v.as_u64().is_some_and(|c| c > 0))
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        if !counts.is_empty() {
            println!("dropped: {}", counts.join(", "));
        }
    }
    Ok(())
}
