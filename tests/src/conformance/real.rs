//! The conformance [`Harness`] on a real runtime: each device a `Client` of that runtime on a
//! thread of its own, on loopback (or relay only), with temporary folders.
//!
//! A runtime's test file implements [`ClientRuntime`]: it starts its `Client` with a
//! [`ClientConfig`], serves [`Command`]s and forwards every event, and shuts the client down
//! when the command channel closes.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_driver::{ClientConfig, ClientError, ClientEvent, Config, DhtStore, Paths};
use std::collections::BTreeMap;

use ferry_proto::tls::{Account, AccountId, Device, DeviceId};
use ferry_proto::transfer::{Digest, TransferId};

use super::{Folders, Harness, Peer, Setup, TestFile};

/// What a test asks of a client; each answers on its channel.
#[derive(Debug)]
pub enum Command {
    /// `send_file`.
    Send {
        /// The account.
        to: AccountId,
        /// The file.
        path: std::path::PathBuf,
        /// The answer.
        answer: mpsc::Sender<Result<TransferId, ClientError>>,
    },
    /// `send_file_again`.
    SendAgain {
        /// The account.
        to: AccountId,
        /// The file.
        path: std::path::PathBuf,
        /// The earlier group id.
        group: TransferId,
        /// The earlier sub-transfer id of each device.
        devices: std::collections::BTreeMap<DeviceId, TransferId>,
        /// The answer.
        answer: mpsc::Sender<Result<TransferId, ClientError>>,
    },
    /// `ask_again` (with a claimed device: `Node::ask_again_claiming`).
    AskAgain {
        /// The sender's account.
        sender: AccountId,
        /// The transfer.
        transfer: TransferId,
        /// The device the request names instead of ours.
        claimed: Option<DeviceId>,
        /// The answer.
        answer: mpsc::Sender<Result<(), ClientError>>,
    },
    /// `accept`.
    Accept(TransferId, mpsc::Sender<Result<(), ClientError>>),
    /// `refuse`.
    Refuse(TransferId, mpsc::Sender<Result<(), ClientError>>),
    /// `cancel`.
    Cancel(TransferId, mpsc::Sender<Result<(), ClientError>>),
    /// `relayed`.
    Relayed(mpsc::Sender<Result<Vec<SocketAddr>, ClientError>>),
}

/// A client running on a thread of its own.
pub struct RemoteClient {
    /// Sends a command; dropping it makes the client shut down.
    pub commands: Box<dyn Fn(Command) -> bool + Send>,
    /// Every event of the client, in order.
    pub events: mpsc::Receiver<ClientEvent>,
    /// The client's thread: it returns once the client has shut down.
    pub thread: std::thread::JoinHandle<()>,
}

/// A runtime whose `Client` the harness can run.
pub trait ClientRuntime {
    /// Its name, for messages.
    const NAME: &'static str;

    /// Starts a client with `config` on a new thread.
    fn spawn(config: ClientConfig) -> RemoteClient;
}

struct Running {
    commands: Option<Box<dyn Fn(Command) -> bool + Send>>,
    events: mpsc::Receiver<ClientEvent>,
    pending: Vec<ClientEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
    folders: Folders,
}

/// A real runtime `R` as a conformance harness.
pub struct Real<R> {
    devices: Vec<Running>,
    _dht: DhtStore,
    epoch: Instant,
    _runtime: std::marker::PhantomData<R>,
}

impl<R: ClientRuntime> Real<R> {
    fn ask<T>(&self, peer: Peer, command: impl FnOnce(mpsc::Sender<T>) -> Command) -> T {
        let (tx, rx) = mpsc::channel();
        let send = self.devices[peer].commands.as_ref().expect("running");
        assert!(send(command(tx)), "{}: the client stopped", R::NAME);
        rx.recv().expect("the client answers")
    }
}

impl<R: ClientRuntime> Harness for Real<R> {
    const NAME: &'static str = R::NAME;

    fn start(devices: &[(&Account, &Device)], setup: &Setup) -> Real<R> {
        let dht = DhtStore::new();
        let devices = devices
            .iter()
            .enumerate()
            .map(|(peer, (account, device))| {
                let folders = Folders::new();
                let mut driver = Config::new(&folders.inbox).with_dht(&dht);
                if let Some(proxy) = setup.opendht {
                    driver = driver.with_opendht(proxy);
                }
                let announcement = account.announce(device).expect("announce");
                let paths = if setup.relay_only.contains(&peer) {
                    Paths::relay_only()
                } else {
                    Paths::loopback_only()
                };
                let mut config =
                    ClientConfig::new((*device).clone(), announcement, driver).with_paths(paths);
                config.turn.extend(setup.turn.clone());
                let client = R::spawn(config);
                Running {
                    commands: Some(client.commands),
                    events: client.events,
                    pending: Vec::new(),
                    thread: Some(client.thread),
                    folders,
                }
            })
            .collect();
        Real {
            devices,
            _dht: dht,
            epoch: Instant::now(),
            _runtime: std::marker::PhantomData,
        }
    }

    fn send_file(&mut self, peer: Peer, to: AccountId, file: &TestFile) -> TransferId {
        let path = self.devices[peer].folders.write(file);
        self.ask(peer, |answer| Command::Send { to, path, answer })
            .expect("send_file")
    }

    fn send_file_again(
        &mut self,
        peer: Peer,
        to: AccountId,
        file: &TestFile,
        group: TransferId,
        devices: BTreeMap<DeviceId, TransferId>,
    ) -> TransferId {
        let path = self.devices[peer].folders.write(file);
        self.ask(peer, |answer| Command::SendAgain {
            to,
            path,
            group,
            devices,
            answer,
        })
        .expect("send_file_again")
    }

    fn ask_again(
        &mut self,
        peer: Peer,
        sender: AccountId,
        transfer: TransferId,
        claimed: Option<DeviceId>,
    ) {
        self.ask(peer, |answer| Command::AskAgain {
            sender,
            transfer,
            claimed,
            answer,
        })
        .expect("ask_again");
    }

    fn change_file(&mut self, peer: Peer, file: &TestFile, seed: u64) {
        self.devices[peer].folders.overwrite(file, seed);
    }

    fn accept(&mut self, peer: Peer, transfer: TransferId) {
        self.ask(peer, |a| Command::Accept(transfer, a))
            .expect("accept an offer");
    }

    fn refuse(&mut self, peer: Peer, transfer: TransferId) {
        self.ask(peer, |a| Command::Refuse(transfer, a))
            .expect("refuse an offer");
    }

    fn cancel(&mut self, peer: Peer, transfer: TransferId) {
        self.ask(peer, |a| Command::Cancel(transfer, a))
            .expect("cancel");
    }

    fn wait<T>(
        &mut self,
        peer: Peer,
        within: Duration,
        mut pick: impl FnMut(&ClientEvent) -> Option<T>,
    ) -> Option<T> {
        let deadline = Instant::now() + within;
        let d = &mut self.devices[peer];
        loop {
            if let Some((i, t)) = d
                .pending
                .iter()
                .enumerate()
                .find_map(|(i, e)| pick(e).map(|t| (i, t)))
            {
                d.pending.remove(i);
                return Some(t);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match d.events.recv_timeout(left) {
                Ok(event) => d.pending.push(event),
                Err(_) => return None,
            }
        }
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn relayed(&mut self, peer: Peer) -> Vec<SocketAddr> {
        self.ask(peer, Command::Relayed).expect("relayed")
    }

    fn shutdown(&mut self, peer: Peer) {
        let d = &mut self.devices[peer];
        d.commands = None;
        if let Some(thread) = d.thread.take() {
            thread.join().expect("the client's thread");
        }
    }

    fn received(&self, peer: Peer, name: &str) -> Option<(u64, Digest)> {
        self.devices[peer].folders.received(name)
    }
}

impl<R> Drop for Real<R> {
    fn drop(&mut self) {
        // Every client shuts down at once (TURN allocations deleted, connections closed).
        for d in &mut self.devices {
            d.commands = None;
        }
        for d in &mut self.devices {
            if let Some(thread) = d.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
