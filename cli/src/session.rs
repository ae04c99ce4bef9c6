//! What `listen` and `send` share: the network options, and starting this device's node on
//! the tokio driver.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use ferry_driver::{CLOSE_LINGER, ClientConfig, Dht, NativeConfig, Paths};
use ferry_proto::io::Event;
use ferry_proto::node::Node;
use ferry_proto::turn::TurnConfig;
use ferry_tokio::{Config, Driver, Events, Handle};

use crate::failure::Failure;
use crate::home::{DeviceFile, Home, default_dht_folder};

/// Where the DHT is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DhtChoice {
    /// OpenDHT through the proxy of a `dhtnode` at this address.
    Proxy(SocketAddr),
    /// A DHT in this folder.
    Folder(PathBuf),
}

/// Reads `--dht`: `http://HOST:PORT` for an OpenDHT proxy, `file:PATH` (or `file://PATH`) for
/// a folder; none for the default folder.
pub(crate) fn parse_dht(url: Option<&str>) -> Result<DhtChoice, Failure> {
    let Some(url) = url else {
        return Ok(DhtChoice::Folder(default_dht_folder()?));
    };
    let bad = || {
        Failure::Usage(format!(
            "not a DHT (http://HOST:PORT for an OpenDHT proxy, file:PATH for a folder): {url}"
        ))
    };
    if let Some(path) = url
        .strip_prefix("file://")
        .or_else(|| url.strip_prefix("file:"))
    {
        if path.is_empty() {
            return Err(bad());
        }
        return Ok(DhtChoice::Folder(PathBuf::from(path)));
    }
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(bad());
    }
    let addr = resolve(authority).ok_or_else(bad)?;
    Ok(DhtChoice::Proxy(addr))
}

fn resolve(host_port: &str) -> Option<SocketAddr> {
    host_port.to_socket_addrs().ok()?.next()
}

/// Reads `--bootstrap`: `HOST:PORT` (`[V6]:PORT` for an IPv6 address), checked for form
/// only: the DHT node resolves names itself, again while none answers.
pub(crate) fn parse_bootstrap(host_port: &str) -> Result<String, Failure> {
    let bad = || Failure::Usage(format!("not a bootstrap node (HOST:PORT): {host_port}"));
    let (host, port) = host_port.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) || host.contains('/') {
        return Err(bad());
    }
    Ok(host_port.to_owned())
}

/// Reads `--turn`: `turn://USER:PASS@HOST:PORT?realm=R`. The realm, if given, is only
/// checked for form: the client uses the one the server announces.
pub(crate) fn parse_turn(url: &str) -> Result<TurnConfig, Failure> {
    let bad = || {
        Failure::Usage(format!(
            "not a TURN URL (turn://user:pass@host:port?realm=r): {url}"
        ))
    };
    let rest = url.strip_prefix("turn://").ok_or_else(bad)?;
    let (creds, rest) = rest.rsplit_once('@').ok_or_else(bad)?;
    let (user, pass) = creds.split_once(':').ok_or_else(bad)?;
    let (addr, query) = match rest.split_once('?') {
        Some((addr, query)) => (addr, Some(query)),
        None => (rest, None),
    };
    if let Some(query) = query
        && !query.split('&').all(|kv| kv.starts_with("realm="))
    {
        return Err(bad());
    }
    if user.is_empty() || addr.is_empty() {
        return Err(bad());
    }
    let server = resolve(addr).ok_or_else(bad)?;
    let mut config = TurnConfig::new(server, user, pass);
    // An IPv6 server relays over IPv6 (RFC 6156): its relayed candidates reach IPv6 peers.
    if server.is_ipv6() {
        config.family = ferry_proto::turn::Family::V6;
    }
    Ok(config)
}

/// Reads `--stun`: `HOST:PORT` (a `stun:` prefix, as in ICE server URLs, is allowed).
pub(crate) fn parse_stun(server: &str) -> Result<SocketAddr, Failure> {
    let host_port = server.strip_prefix("stun:").unwrap_or(server);
    resolve(host_port)
        .ok_or_else(|| Failure::Usage(format!("not a STUN server (HOST:PORT): {server}")))
}

/// The network options of `listen` and `send`.
#[derive(Debug, Clone)]
pub(crate) struct NetOptions {
    /// Where the DHT is.
    pub(crate) dht: DhtChoice,
    /// Bootstrap nodes of an OpenDHT network (`--bootstrap`): when any, our own OpenDHT
    /// node runs beside `dht`.
    pub(crate) bootstrap: Vec<String>,
    /// Our OpenDHT node's UDP port (0: any).
    pub(crate) dht_port: u16,
    /// The TURN servers (`--turn`, repeatable).
    pub(crate) turn: Vec<TurnConfig>,
    /// STUN servers.
    pub(crate) stun: Vec<SocketAddr>,
    /// Offer only the relayed path.
    pub(crate) relay_only: bool,
    /// Ask the home router to forward the listening port.
    pub(crate) port_mapping: bool,
}

/// A running node.
pub(crate) struct Session {
    /// Commands to the node.
    pub(crate) handle: Handle<Node>,
    /// Its events.
    pub(crate) events: Events<Event>,
    /// This device.
    pub(crate) device: DeviceFile,
    /// The driver's task.
    driver: tokio::task::JoinHandle<()>,
    /// The task that logs our relayed addresses, when there are TURN servers, and what it
    /// logged.
    relays: Option<(tokio::task::JoinHandle<()>, Relayed)>,
}

impl Session {
    /// Stops the node the polite way: the driver sends what it queued (a last VERDICT or
    /// CANCEL), closes every connection and ends; then returns, after [`CLOSE_LINGER`] at
    /// most. Ending the process without it could reset a connection before its last frame.
    pub(crate) async fn close(self) {
        let Session {
            handle,
            events,
            driver,
            relays,
            ..
        } = self;
        // Events nobody reads any more must not hold the driver up.
        drop(events);
        // The relay task holds a handle, and the driver ends only once every handle is gone.
        // A relay allocated since its last look is logged now.
        if let Some((task, known)) = relays {
            task.abort();
            let _ = task.await;
            let last = relays_changed(&handle, &known);
            let _ = tokio::time::timeout(Duration::from_secs(1), last).await;
        }
        let counts = handle.call(|node, _| (node.dropped(), node.ready_connections()));
        if let Ok(Ok((dropped, ready))) = tokio::time::timeout(Duration::from_secs(1), counts).await
        {
            tracing::debug!(?dropped, ready, "closing the node");
        }
        drop(handle);
        let _ = tokio::time::timeout(CLOSE_LINGER + Duration::from_secs(1), driver).await;
    }
}

/// Starts this device's node, with received files going to `receive_folder` (made when the
/// first file is taken; `listen` makes it at once, to check it before anyone sends).
pub(crate) fn start(
    home: &Home,
    net: &NetOptions,
    receive_folder: &Path,
    auto_accept_images_under: Option<u64>,
    only_from: Option<std::collections::BTreeSet<ferry_proto::tls::AccountId>>,
) -> Result<Session, Failure> {
    let device = DeviceFile::load(&home.device())?;
    let revocations = home.load_revocations(&device.device)?;
    // Two processes of one machine meet through a folder: their loopback addresses then are
    // a path too. Over a real DHT, only addresses other machines can reach are offered.
    let paths = Paths {
        direct: !net.relay_only,
        loopback: matches!(net.dht, DhtChoice::Folder(_)),
        ..Paths::default()
    };
    let mut dht = match &net.dht {
        DhtChoice::Folder(path) => Dht::Folder { path: path.clone() },
        DhtChoice::Proxy(addr) => Dht::OpenDht { proxy: *addr },
    };
    if !net.bootstrap.is_empty() {
        // Both: processes of this machine meet at once through the folder, others through
        // the network.
        let mut native = NativeConfig::new(net.bootstrap.clone());
        native.bind.set_port(net.dht_port);
        native.status_file = Some(home.dir().join(crate::dht::STATUS_FILE));
        dht = Dht::Several(vec![dht, Dht::Native(native)]);
    }
    let driver_config = Config::new(receive_folder).with_dht_choice(dht);
    let mut client = ClientConfig::new(
        device.device.clone(),
        device.announcement.clone(),
        driver_config.clone(),
    )
    .with_paths(paths);
    client.turn = net.turn.clone();
    client.stun = net.stun.clone();
    client.port_mapping = net.port_mapping;
    client.revocations = revocations;
    client.auto_accept_images_under = auto_accept_images_under;
    let mut config = client
        .node_config(Instant::now())
        .map_err(|e| Failure::Internal(format!("cannot start the node on this machine: {e}")))?;
    if let Some(allowed) = only_from {
        config.contacts = allowed;
        config.only_contacts = true;
    }
    tracing::info!(
        device = %device.device.id(),
        ips = ?config.local_ips,
        dht = ?net.dht,
        bootstrap = ?net.bootstrap,
        turn = ?net.turn.iter().map(|t| t.server).collect::<Vec<_>>(),
        stun = ?net.stun,
        port_mapping = net.port_mapping,
        "starting the node"
    );
    let node = Node::new(Instant::now(), config);
    let (driver, handle, events) = Driver::new(node, driver_config).map_err(|e| {
        Failure::Usage(format!(
            "cannot start (receive folder {}, DHT {:?}): {e}",
            receive_folder.display(),
            net.dht
        ))
    })?;
    let driver = tokio::spawn(driver.run());
    let relays = (!net.turn.is_empty()).then(|| {
        let known = Relayed::default();
        let task = tokio::spawn(log_relays(handle.clone(), known.clone()));
        (task, known)
    });
    Ok(Session {
        handle,
        events,
        device,
        driver,
        relays,
    })
}

/// How often [`log_relays`] asks the node for its relayed addresses.
const RELAY_WATCH: Duration = Duration::from_millis(500);

/// Our relayed addresses logged so far.
type Relayed = std::sync::Arc<std::sync::Mutex<Vec<SocketAddr>>>;

/// Logs (target `ferry::relay`, `-v`) each relayed address of ours as its TURN allocation
/// comes and goes: the node keeps them without an event, so they are asked for, every
/// [`RELAY_WATCH`] and once more when the session closes. Ends when the node does.
async fn log_relays(handle: Handle<Node>, known: Relayed) {
    let mut every = tokio::time::interval(RELAY_WATCH);
    loop {
        every.tick().await;
        if !relays_changed(&handle, &known).await {
            return;
        }
    }
}

/// Asks the node for its relayed addresses and logs the changes; `false` once the node is
/// gone.
async fn relays_changed(handle: &Handle<Node>, known: &Relayed) -> bool {
    let Ok(now) = handle.call(|node, _| node.relayed()).await else {
        return false;
    };
    let Ok(mut known) = known.lock() else {
        return false;
    };
    for addr in now.iter().filter(|a| !known.contains(a)) {
        tracing::info!(target: "ferry::relay", relayed = %addr, "relay allocated");
    }
    for addr in known.iter().filter(|a| !now.contains(a)) {
        tracing::info!(target: "ferry::relay", relayed = %addr, "relay allocation gone");
    }
    *known = now;
    true
}

/// What one receive from the node's event stream gave: the event, logged at debug (progress
/// aside, it comes too often), or `Internal` when the node stopped, which it does only
/// when told to.
pub(crate) fn node_event(event: Option<Event>) -> Result<Event, Failure> {
    let Some(event) = event else {
        return Err(Failure::Internal("the node stopped".to_owned()));
    };
    if !matches!(event, Event::Progress { .. }) {
        tracing::debug!(?event, "node event");
    }
    Ok(event)
}

/// Ctrl-C from now on, as a future that ends when it comes. The handler is installed before
/// this returns, so an interrupt after it is seen (one before would end the process at
/// once); if it cannot be installed, the future never ends.
pub(crate) async fn ctrl_c() -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let mut signal = Box::pin(tokio::signal::ctrl_c());
    // The handler is installed on the first poll.
    let first = std::future::poll_fn(|cx| Poll::Ready(signal.as_mut().poll(cx))).await;
    match first {
        Poll::Pending => Box::pin(async move {
            let _ = signal.await;
        }),
        Poll::Ready(Ok(())) => Box::pin(std::future::ready(())),
        Poll::Ready(Err(e)) => {
            tracing::warn!("cannot catch Ctrl-C: {e}");
            Box::pin(std::future::pending())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dht_urls() {
        assert_eq!(
            parse_dht(Some("http://127.0.0.1:8000")),
            Ok(DhtChoice::Proxy(SocketAddr::from(([127, 0, 0, 1], 8000))))
        );
        assert_eq!(
            parse_dht(Some("file:///tmp/x")),
            Ok(DhtChoice::Folder(PathBuf::from("/tmp/x")))
        );
        assert_eq!(
            parse_dht(Some("file:rel/dir")),
            Ok(DhtChoice::Folder(PathBuf::from("rel/dir")))
        );
        for bad in [
            "ftp://x",
            "http://",
            "http://127.0.0.1:80/path",
            "file:",
            "127.0.0.1:80",
        ] {
            assert!(
                matches!(parse_dht(Some(bad)), Err(Failure::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn stun_servers() {
        let v4 = SocketAddr::from(([127, 0, 0, 1], 3478));
        assert_eq!(parse_stun("127.0.0.1:3478").ok(), Some(v4));
        assert_eq!(parse_stun("stun:127.0.0.1:3478").ok(), Some(v4));
        for bad in ["127.0.0.1", "stun:", "turn://a:b@127.0.0.1:3478"] {
            assert!(matches!(parse_stun(bad), Err(Failure::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn turn_urls() {
        use ferry_proto::turn::Family;
        let t = parse_turn("turn://alice:s3cr:et@127.0.0.1:3478?realm=ferry");
        let t = t.ok();
        assert_eq!(
            t.as_ref().map(|t| t.server),
            Some(SocketAddr::from(([127, 0, 0, 1], 3478)))
        );
        assert_eq!(t.as_ref().map(|t| t.username.as_str()), Some("alice"));
        assert_eq!(t.as_ref().map(|t| t.password.as_str()), Some("s3cr:et"));
        assert_eq!(t.as_ref().map(|t| t.family), Some(Family::V4));
        let v6 = parse_turn("turn://alice:pw@[::1]:3478").ok();
        assert_eq!(
            v6.as_ref().map(|t| (t.server, t.family)),
            Some((
                SocketAddr::from(([0, 0, 0, 0, 0, 0, 0, 1], 3478)),
                Family::V6
            )),
            "an IPv6 server relays over IPv6"
        );
        for bad in [
            "turn://127.0.0.1:3478",
            "stun://a:b@127.0.0.1:3478",
            "turn://a:b@127.0.0.1:3478?transport=udp",
            "turn://:b@127.0.0.1:3478",
            "turn://a:b@nowhere",
        ] {
            assert!(matches!(parse_turn(bad), Err(Failure::Usage(_))), "{bad}");
        }
    }
}
