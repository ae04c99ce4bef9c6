//! The application API, written once for every runtime: a [`Client`] is one device's
//! [`Node`] on a [`Driver`], its calls commands on the node, its events the node's as
//! [`ClientEvent`]s.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ferry_proto::conversation::AskAnswer;
use ferry_proto::io::Event;
use ferry_proto::node::{AskDecision, AskId, Node, SendEntry, SendKind, Sending};
use ferry_proto::tls::{AccountId, DeviceId};
use ferry_proto::transfer::TransferId;
use ferry_proto::transfer::manifest::EntryKind;
use futures_lite::FutureExt as _;

use crate::client::{SHUTDOWN_TIMEOUT, source_of};
use crate::runtime::Runtime;
use crate::sent_tree::{SentTree, Skipped};
use crate::{ClientConfig, ClientError, ClientEvent, Driver, Events, Handle};

/// One device of one account, sending and receiving files on the runtime `R`
/// (`ferry_tokio::Client` and `ferry_smol::Client` name it for theirs).
///
/// ```no_run
/// # async fn example<R: ferry_driver::Runtime>(
/// #     config: ferry_driver::ClientConfig,
/// #     bob: ferry_proto::tls::AccountId,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use ferry_driver::{Client, ClientEvent};
///
/// // With a runtime crate: `ferry_tokio::Client::start(config)`.
/// let mut client = Client::<R>::start(config)?;
/// let group = client.send_file(bob, "/tmp/report.pdf").await?;
/// while let Some(event) = client.next_event().await {
///     match event {
///         ClientEvent::Incoming(offer) => client.refuse(offer.transfer).await?,
///         ClientEvent::Group { group: g, status, .. } if g == group && status.is_final() => break,
///         _ => {}
///     }
/// }
/// client.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Client<R: Runtime> {
    handle: Handle<Node>,
    events: Events<Event>,
    receive_folder: PathBuf,
    device: DeviceId,
    driver: R::Task,
}

impl<R: Runtime> std::fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Client<R> {
    /// Starts the node, and its driver as a task of the runtime (on tokio, from inside a
    /// runtime with I/O and time enabled). Fails when the host's addresses, the receive folder
    /// or the DHT cannot be reached.
    pub fn start(config: ClientConfig) -> io::Result<Client<R>> {
        let now = Instant::now();
        let node = Node::new(now, config.node_config(now)?);
        let (driver, handle, events) = Driver::<Node, R>::new(node, config.driver.clone())?;
        Ok(Client {
            handle,
            events,
            receive_folder: config.driver.receive_folder,
            device: config.device.id(),
            driver: R::spawn(driver.run()),
        })
    }

    /// This device's id.
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// Sends the file at `path` to every device of `account`; returns the group id that
    /// [`ClientEvent::Reaching`] and [`ClientEvent::Group`] name.
    pub async fn send_file(
        &self,
        account: AccountId,
        path: impl AsRef<Path>,
    ) -> Result<TransferId, ClientError> {
        let (source, name) = source_of(path.as_ref())?;
        let group = self
            .handle
            .call(move |node, now| node.send_file(now, account, source, name))
            .await?;
        Ok(group)
    }

    /// Sends the files and folders at `paths` to every device of `account` as one offer per
    /// device (`PROTOCOL.md` §14; [`Node::send_files`](ferry_proto::node::Node::send_files)):
    /// folders with their tree, symlinks inside them left out unless `follow_links`. A single
    /// file goes as [`send_file`](Self::send_file) sends it. Returns what started and what
    /// the walk left out.
    pub async fn send_paths(
        &self,
        account: AccountId,
        paths: &[PathBuf],
        follow_links: bool,
    ) -> Result<(Sending, Vec<Skipped>), ClientError> {
        let tree = crate::sent_tree::walk(paths, follow_links, counter())
            .map_err(|e| ClientError::Tree(e.to_string()))?;
        let entries = send_entries(&tree)?;
        let sending = self
            .handle
            .call(move |node, now| node.send_files(now, account, entries))
            .await?
            .map_err(|e| ClientError::Tree(e.to_string()))?;
        Ok((sending, tree.skipped))
    }

    /// Sends the file at `path` again under the ids an earlier send of it used (see
    /// [`Node::send_file_again`](ferry_proto::node::Node::send_file_again)): `group`, and
    /// each device's sub-transfer id in `devices`, so a device that kept partial data
    /// resumes from it. The application checks that the file is unchanged.
    pub async fn send_file_again(
        &self,
        account: AccountId,
        path: impl AsRef<Path>,
        group: TransferId,
        devices: std::collections::BTreeMap<DeviceId, TransferId>,
    ) -> Result<TransferId, ClientError> {
        let (source, name) = source_of(path.as_ref())?;
        let group = self
            .handle
            .call(move |node, now| node.send_file_again(now, account, source, name, group, devices))
            .await?;
        Ok(group)
    }

    /// Asks every device of `account` to send the transfer we saw as `transfer` again
    /// ([`Node::ask_again`](ferry_proto::node::Node::ask_again)); answers come as
    /// [`ClientEvent::AskAnswered`], the file as an offer under the same id.
    pub async fn ask_again(
        &self,
        account: AccountId,
        transfer: TransferId,
    ) -> Result<(), ClientError> {
        self.ask_again_claiming(account, transfer, None).await
    }

    /// [`ask_again`](Self::ask_again) naming `claimed` as the asking device
    /// ([`Node::ask_again_claiming`](ferry_proto::node::Node::ask_again_claiming)): what a
    /// lying peer sends, for tests of the holder's check.
    pub async fn ask_again_claiming(
        &self,
        account: AccountId,
        transfer: TransferId,
        claimed: Option<DeviceId>,
    ) -> Result<(), ClientError> {
        self.handle
            .call(move |node, now| node.ask_again_claiming(now, account, transfer, claimed))
            .await?;
        Ok(())
    }

    /// Answers a request ([`ClientEvent::AskAgain`]) by sending the file at `path` again to
    /// the asking device, under the asked id; returns the group id of that send. The
    /// application checked its records first ([`sent_file::decide`](crate::sent_file::decide)).
    pub async fn resend(
        &self,
        request: AskId,
        path: impl AsRef<Path>,
    ) -> Result<Option<TransferId>, ClientError> {
        let (source, name) = source_of(path.as_ref())?;
        let decision = AskDecision::Resend { source, name };
        Ok(self
            .handle
            .call(move |node, now| node.answer_ask(now, request, decision))
            .await??)
    }

    /// Refuses a request ([`ClientEvent::AskAgain`]) with `code`.
    pub async fn refuse_ask(&self, request: AskId, code: AskAnswer) -> Result<(), ClientError> {
        self.handle
            .call(move |node, now| node.answer_ask(now, request, AskDecision::Refuse(code)))
            .await??;
        Ok(())
    }

    /// Accepts an offered file ([`ClientEvent::Incoming`]).
    pub async fn accept(&self, transfer: TransferId) -> Result<(), ClientError> {
        self.handle
            .call(move |node, now| node.accept(now, transfer))
            .await??;
        Ok(())
    }

    /// Refuses an offered file.
    pub async fn refuse(&self, transfer: TransferId) -> Result<(), ClientError> {
        self.handle
            .call(move |node, now| node.refuse(now, transfer))
            .await??;
        Ok(())
    }

    /// Cancels a transfer either way, or a whole group (every device of it).
    pub async fn cancel(&self, transfer: TransferId) -> Result<(), ClientError> {
        self.handle
            .call(move |node, now| node.cancel(now, transfer))
            .await?;
        Ok(())
    }

    /// The addresses this device listens on (its host candidates' ports).
    pub async fn listening(&self) -> Result<Vec<SocketAddr>, ClientError> {
        Ok(self.handle.call(|node, _| node.listening()).await?)
    }

    /// This device's relayed addresses, one per TURN server that allocated one.
    pub async fn relayed(&self) -> Result<Vec<SocketAddr>, ClientError> {
        Ok(self.handle.call(|node, _| node.relayed()).await?)
    }

    /// The next event; `None` once the driver stopped. Take them steadily: the driver waits
    /// while its event queue is full, which keeps memory bounded.
    pub async fn next_event(&mut self) -> Option<ClientEvent> {
        let event = self.events.recv().await?;
        Some(ClientEvent::from_event(event, &self.receive_folder))
    }

    /// Shuts down cleanly: transfers cancelled, connections ended with TLS close_notify,
    /// TURN allocations deleted (waiting at most [`SHUTDOWN_TIMEOUT`] for the servers), then
    /// every connection closed after its queued bytes. Events not taken yet are dropped.
    pub async fn shutdown(self) {
        if self.handle.command(|node, now| node.shutdown(now)).is_ok() {
            let until = Instant::now() + SHUTDOWN_TIMEOUT;
            async {
                while let Some(event) = self.events.recv().await {
                    if event == Event::ShutDown {
                        break;
                    }
                }
            }
            .or(R::sleep_until(until))
            .await;
        }
        // The driver closes its connections once its last handle is gone.
        drop(self.handle);
        drop(self.events);
        self.driver.await;
    }
}

/// Stand-in ids for the walk: the node gives each device's manifest its own.
fn counter() -> impl FnMut(&Path) -> TransferId {
    let mut next = 0;
    move |_| {
        next += 1;
        TransferId(next)
    }
}

/// The node's entries for a walked tree: each file with its source path.
fn send_entries(tree: &SentTree) -> Result<Vec<SendEntry>, ClientError> {
    tree.manifest
        .entries()
        .iter()
        .map(|e| {
            let kind = match e.kind {
                EntryKind::Folder => SendKind::Folder,
                EntryKind::File { id, size } => {
                    let path = tree.sources.get(&id).cloned().unwrap_or_default();
                    let source = path
                        .to_str()
                        .ok_or_else(|| ClientError::Source {
                            path: path.clone(),
                            why: "the path is not UTF-8".to_owned(),
                        })?
                        .to_owned();
                    SendKind::File { source, size }
                }
            };
            Ok(SendEntry {
                path: e.path.clone(),
                kind,
            })
        })
        .collect()
}
