//! What the runtimes' application API (`ferry_smol::Client`, `ferry_tokio::Client`) shares:
//! how a [`Node`](ferry_proto::node::Node) is configured from the host ([`ClientConfig`]), the
//! events an application sees ([`ClientEvent`]), and what a call can fail with
//! ([`ClientError`]).
//!
//! A runtime's `Client` is a [`Node`](ferry_proto::node::Node) on that runtime's driver: its calls
//! are commands on the node, its events the node's [`Event`]s as [`ClientEvent`]s.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::rand::{SecureRandom as _, SystemRandom};

use super::{Config, Paths, local_addresses};
use ferry_proto::io::Event;
use ferry_proto::node::NodeConfig;
use ferry_proto::tls::{Device, DeviceId, PeerIdentity, Revocations, UnixAnchor};
use ferry_proto::transfer::{Digest, Reason, Status, TransferId};
use ferry_proto::turn::TurnConfig;

/// How long a client's shutdown waits for its TURN servers to delete the allocations before
/// it closes everything anyway.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a client needs: who this device is, where files go, which DHT, which paths.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// This device.
    pub device: Device,
    /// This device's announcement, signed by its account
    /// ([`Account::announce`](ferry_proto::tls::Account::announce)).
    pub announcement: Vec<u8>,
    /// The receive folder and the DHT.
    pub driver: Config,
    /// Which local addresses make host candidates; [`Paths::relay_only`] offers none.
    pub paths: Paths,
    /// TURN servers, one per address family at most.
    pub turn: Vec<TurnConfig>,
    /// STUN servers (TCP) for server-reflexive candidates without a relay; every TURN
    /// server serves as one too.
    pub stun: Vec<std::net::SocketAddr>,
    /// Ask the home router to forward the listening ports (PCP, NAT-PMP, UPnP-IGD; see
    /// [`NodeConfig::port_mapping`]). Off by default; never with [`Paths::relay_only`].
    pub port_mapping: bool,
    /// Accept incoming pictures smaller than this without asking.
    pub auto_accept_images_under: Option<u64>,
    /// The seed of the node's random values (ICE credentials, transfer ids); `None` draws one
    /// from the operating system, which is what a real application wants.
    pub seed: Option<u64>,
    /// Revocation lists this device honours (its own account's, at least).
    pub revocations: Revocations,
}

impl ClientConfig {
    /// A device with every interface but loopback, no TURN server, and `driver`'s folder and
    /// DHT.
    pub fn new(device: Device, announcement: Vec<u8>, driver: Config) -> ClientConfig {
        ClientConfig {
            device,
            announcement,
            driver,
            paths: Paths::default(),
            turn: Vec::new(),
            stun: Vec::new(),
            port_mapping: false,
            auto_accept_images_under: None,
            seed: None,
            revocations: Revocations::default(),
        }
    }

    /// Uses these local addresses instead.
    pub fn with_paths(mut self, paths: Paths) -> ClientConfig {
        self.paths = paths;
        self
    }

    /// Adds a TURN server.
    pub fn with_turn(mut self, turn: TurnConfig) -> ClientConfig {
        self.turn.push(turn);
        self
    }

    /// The node's configuration, with the host's addresses as [`paths`](Self::paths) allows
    /// (none and relay only when it disables direct paths), the system clock as the anchor
    /// of certificate validity, and a seed from the system unless one was given.
    pub fn node_config(&self, now: Instant) -> std::io::Result<NodeConfig> {
        // Found for relay only too, whose node neither listens on them nor connects from
        // them (`NodeConfig::relay_only`).
        let connect_from = Paths {
            direct: true,
            ..self.paths.clone()
        };
        let mut found = local_addresses(&connect_from)?;
        if found.is_empty() && self.paths.interfaces.is_empty() {
            // A machine with no other address (a container, a network namespace): loopback
            // is the only direct path left, to nodes of this machine.
            found = local_addresses(&Paths {
                loopback: true,
                ..connect_from
            })?;
        }
        let local_ips: Vec<IpAddr> = found.into_iter().map(|a| a.ip).collect();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| std::io::Error::other("the system clock is before 1970"))?;
        let anchor = UnixAnchor { instant: now, unix };
        let seed = match self.seed {
            Some(seed) => seed,
            None => {
                let mut bytes = [0u8; 8];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| std::io::Error::other("no randomness from the system"))?;
                u64::from_le_bytes(bytes)
            }
        };
        let mut config = NodeConfig::new(
            self.device.clone(),
            self.announcement.clone(),
            local_ips,
            seed,
            anchor,
        );
        config.turn = self.turn.clone();
        // A TURN server answers STUN Bindings too (RFC 8656 §4): one more server to learn
        // the NAT's mapping from, at no cost to configure.
        config.stun = self.stun.clone();
        for turn in &self.turn {
            if !config.stun.contains(&turn.server) {
                config.stun.push(turn.server);
            }
        }
        config.relay_only = !self.paths.direct;
        config.port_mapping = self.port_mapping && self.paths.direct;
        config.auto_accept_images_under = self.auto_accept_images_under;
        config.revocations = self.revocations.clone();
        Ok(config)
    }
}

/// A file a peer offers; answer it with the client's `accept` or `refuse`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The incoming transfer.
    pub transfer: TransferId,
    /// The sanitised name the file will get in the receive folder.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// The sending account and device (TLS-verified).
    pub from: Option<PeerIdentity>,
}

/// Several files and folders a peer offers as one (`PROTOCOL.md` §14): accept or refuse
/// the whole with the client's `accept` / `refuse` of `manifest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderOffer {
    /// The manifest's id.
    pub manifest: TransferId,
    /// The sending account and device (TLS-verified).
    pub from: PeerIdentity,
    /// How many files it lists.
    pub files: usize,
    /// How many folders.
    pub folders: usize,
    /// The sum of the files' sizes.
    pub size: u64,
    /// Its first top-level names.
    pub names: Vec<String>,
}

/// What a client tells its application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A peer offers a file.
    Incoming(Offer),
    /// A peer offers several files and folders as one.
    IncomingFolder(FolderOffer),
    /// A file of an accepted [`FolderOffer`] began to arrive (taken without asking).
    FolderFile {
        /// The manifest.
        manifest: TransferId,
        /// The file's transfer.
        transfer: TransferId,
        /// Its path in the offer.
        path: String,
        /// Its size.
        size: u64,
    },
    /// An event of the core that this client does not translate (the core's events are
    /// `#[non_exhaustive]`), described for logs.
    Unknown(String),
    /// A file sent with `send_file` reaches one more device of the account, as `transfer`.
    Reaching {
        /// What `send_file` returned.
        group: TransferId,
        /// The sub-transfer to that device.
        transfer: TransferId,
        /// The device.
        device: DeviceId,
    },
    /// Bytes moved (sent, or written to disk on the receiving side).
    Progress {
        /// The transfer.
        transfer: TransferId,
        /// Bytes so far; never decreases.
        done: u64,
        /// The file's size.
        total: u64,
    },
    /// A transfer starts past 0, at what the receiver kept (both sides, once, before the
    /// first new byte).
    Resuming {
        /// The transfer.
        transfer: TransferId,
        /// Where it starts.
        offset: u64,
        /// The file's size.
        total: u64,
        /// Whether the kept prefix's SHA3-512 was checked before the first new byte (the
        /// `prefix-digest` feature).
        verified: bool,
    },
    /// What the receiver held under this transfer's key did not match the sender's file: it
    /// was emptied and the transfer starts at 0 (both sides, once).
    Restarted {
        /// The transfer.
        transfer: TransferId,
        /// How many bytes the receiver held.
        held: u64,
        /// The file's size.
        total: u64,
    },
    /// A transfer moved to a state that is not final yet.
    Status {
        /// The transfer.
        transfer: TransferId,
        /// Its state.
        status: Status,
    },
    /// The file arrived whole with the SHA3-512 both sides agree on.
    Verified {
        /// The transfer.
        transfer: TransferId,
        /// The digest.
        digest: Digest,
        /// Receiving side: where the file now is. Sending side: `None`.
        path: Option<PathBuf>,
    },
    /// A transfer is over: [`Status::Finished`], or the failure and why. The last event of a
    /// transfer.
    Ended {
        /// The transfer.
        transfer: TransferId,
        /// Its final state.
        status: Status,
        /// Why, for a failure.
        reason: Option<Reason>,
    },
    /// The view over every device of a file sent with `send_file` changed.
    Group {
        /// What `send_file` returned.
        group: TransferId,
        /// The most advanced state, or the failure once every device failed.
        status: Status,
        /// The most bytes any device got.
        done: u64,
        /// The file's size.
        total: u64,
    },
    /// A device of an unknown account asks to connect (with
    /// [`NodeConfig::ask_before_connecting`]).
    ConnectionRequest {
        /// Its account.
        account: ferry_proto::tls::AccountId,
        /// The device.
        device: DeviceId,
    },
    /// A connection to or from a device is up, on this path.
    Connected {
        /// The device.
        device: DeviceId,
        /// The selected pair's kinds, and whether a relay carries it.
        path: ferry_proto::ice::SelectedPath,
    },
    /// A connection to or from a device failed: the stage and why.
    PeerUnreachable {
        /// The device.
        device: DeviceId,
        /// The stage that failed and why.
        reason: String,
    },
    /// A device of a peer asks us to send a transfer again; its request matched its TLS
    /// session. Answer with the client's `resend` or `refuse_ask` (see
    /// [`sent_file::decide`](crate::sent_file::decide)).
    AskAgain {
        /// Names the request in the answer.
        request: ferry_proto::node::AskId,
        /// The asking account and device (TLS-verified).
        from: PeerIdentity,
        /// The transfer id that device saw.
        transfer: TransferId,
    },
    /// A device of the sender answered our request (`ask_again`) to send `transfer` again,
    /// or could not be asked (`device` is `None`: none announced itself).
    AskAnswered {
        /// The transfer asked for.
        transfer: TransferId,
        /// The device.
        device: Option<DeviceId>,
        /// Its answer, or why there is none.
        answer: Result<ferry_proto::conversation::AskAnswer, String>,
        /// Whether every device asked has answered.
        last: bool,
    },
    /// The node finished its shutdown (the client's `shutdown` waits for this one).
    ShutDown,
}

impl ClientEvent {
    /// The application's view of a node's `event`; received files are in `receive_folder`.
    pub fn from_event(event: Event, receive_folder: &Path) -> ClientEvent {
        match event {
            Event::IncomingTransfer {
                transfer,
                name,
                size,
                from,
            } => ClientEvent::Incoming(Offer {
                transfer,
                name,
                size,
                from,
            }),
            Event::IncomingManifest {
                manifest,
                from,
                files,
                folders,
                size,
                names,
            } => ClientEvent::IncomingFolder(FolderOffer {
                manifest,
                from,
                files,
                folders,
                size,
                names,
            }),
            Event::ManifestFile {
                manifest,
                transfer,
                path,
                size,
            } => ClientEvent::FolderFile {
                manifest,
                transfer,
                path,
                size,
            },
            Event::SubTransfer {
                group,
                transfer,
                device,
            } => ClientEvent::Reaching {
                group,
                transfer,
                device,
            },
            Event::Aggregate {
                group,
                status,
                done,
                total,
            } => ClientEvent::Group {
                group,
                status,
                done,
                total,
            },
            Event::Status {
                transfer,
                status,
                reason,
            } if status.is_final() => ClientEvent::Ended {
                transfer,
                status,
                reason,
            },
            Event::Status {
                transfer, status, ..
            } => ClientEvent::Status { transfer, status },
            Event::Progress {
                transfer,
                done,
                total,
            } => ClientEvent::Progress {
                transfer,
                done,
                total,
            },
            Event::Resuming {
                transfer,
                offset,
                total,
                verified,
            } => ClientEvent::Resuming {
                transfer,
                offset,
                total,
                verified,
            },
            Event::Restarted {
                transfer,
                held,
                total,
            } => ClientEvent::Restarted {
                transfer,
                held,
                total,
            },
            Event::Verified {
                transfer,
                digest,
                name,
            } => ClientEvent::Verified {
                transfer,
                digest,
                path: (!name.is_empty()).then(|| receive_folder.join(name)),
            },
            Event::ConnectionRequest { account, device } => {
                ClientEvent::ConnectionRequest { account, device }
            }
            Event::Connected { device, path } => ClientEvent::Connected { device, path },
            Event::PeerUnreachable { device, reason } => {
                ClientEvent::PeerUnreachable { device, reason }
            }
            Event::ShutDown => ClientEvent::ShutDown,
            Event::AskAgain {
                request,
                from,
                transfer,
            } => ClientEvent::AskAgain {
                request,
                from,
                transfer,
            },
            Event::AskAnswered {
                transfer,
                device,
                answer,
                last,
            } => ClientEvent::AskAnswered {
                transfer,
                device,
                answer,
                last,
            },
            // A newer core's event that this client does not translate yet.
            other => ClientEvent::Unknown(format!("{other:?}")),
        }
    }
}

/// Why a client call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The client was shut down (or its driver stopped).
    #[error("the client has stopped")]
    Stopped,
    /// The file to send is not a readable file.
    #[error("cannot send {path}: {why}")]
    Source {
        /// The path given.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The paths to send could not be walked, or break a rule of the manifest.
    #[error("{0}")]
    Tree(String),
    /// The node refused the call (no such transfer, or not in a state that allows it).
    #[error(transparent)]
    Refused(#[from] ferry_proto::Error),
}

impl From<super::Stopped> for ClientError {
    fn from(_: super::Stopped) -> ClientError {
        ClientError::Stopped
    }
}

/// Checks that `path` is a file this process can open, and returns the source reference and
/// the name to offer (its last component) for [`Node::send_file`](ferry_proto::node::Node::send_file).
pub fn source_of(path: &Path) -> Result<(String, String), ClientError> {
    let fail = |why: String| ClientError::Source {
        path: path.to_owned(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".to_owned()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| fail("no file name".to_owned()))?;
    let source = path
        .to_str()
        .ok_or_else(|| fail("the path is not UTF-8".to_owned()))?
        .to_owned();
    Ok((source, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::tls::{Account, Validity, derive_seed};

    fn device() -> (Device, Vec<u8>) {
        let validity = Validity::days_from(1_795_651_200, 365);
        let account = Account::from_seed(&derive_seed(b"t", "a"), validity).expect("account");
        let device = account
            .add_device(&derive_seed(b"t", "d"), validity)
            .expect("device");
        let announcement = account.announce(&device).expect("announce");
        (device, announcement)
    }

    #[test]
    fn relay_only_paths_make_a_relay_only_node() {
        let (device, announcement) = device();
        let config = ClientConfig::new(device.clone(), announcement, Config::new("/nonexistent"))
            .with_paths(Paths::relay_only());
        let node = config.node_config(Instant::now()).expect("config");
        let direct = ClientConfig::new(device, Vec::new(), Config::new("/nonexistent"))
            .node_config(Instant::now())
            .expect("config");
        assert!(node.relay_only, "no direct address is offered");
        assert_eq!(
            node.local_ips, direct.local_ips,
            "the same addresses are found (its node neither listens on nor connects from them)"
        );
        let lo = ClientConfig {
            paths: Paths::loopback_only(),
            seed: Some(9),
            ..config
        };
        let node = lo.node_config(Instant::now()).expect("config");
        assert!(!node.relay_only && node.seed == 9);
        assert!(!node.local_ips.is_empty() && node.local_ips.iter().all(|ip| ip.is_loopback()));
    }

    #[test]
    fn final_statuses_end_a_transfer_and_verified_files_have_their_path() {
        let transfer = TransferId(5);
        let ended = ClientEvent::from_event(
            Event::Status {
                transfer,
                status: Status::ClosedByPeer,
                reason: Some(Reason::Refused),
            },
            Path::new("/in"),
        );
        assert!(matches!(
            ended,
            ClientEvent::Ended {
                status: Status::ClosedByPeer,
                ..
            }
        ));
        let verified = ClientEvent::from_event(
            Event::Verified {
                transfer,
                digest: Digest([0; 64]),
                name: "a.bin".into(),
            },
            Path::new("/in"),
        );
        assert!(
            matches!(verified, ClientEvent::Verified { path: Some(p), .. } if p == Path::new("/in/a.bin"))
        );
    }

    #[test]
    fn only_readable_files_can_be_sent() {
        assert!(matches!(
            source_of(Path::new("/nonexistent/x")),
            Err(ClientError::Source { .. })
        ));
        assert!(matches!(
            source_of(Path::new("/")),
            Err(ClientError::Source { .. })
        ));
    }
}
