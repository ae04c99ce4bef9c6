//! Both runtimes' `Client`s as [`ClientRuntime`]s for the conformance harness, shared by the
//! conformance suite and the transfer benchmark. The client's loop is written once, on the
//! generic [`ferry_driver::Client`]; a runtime adds only the thread that blocks on it.

use std::sync::mpsc;

use std::collections::BTreeMap;
use std::path::Path;

use ferry_driver::sent_file::{self, Recorded, SentFile};
use ferry_driver::{Client, ClientConfig, ClientError, ClientEvent, Runtime};
use ferry_proto::node::AskId;
use ferry_proto::tls::AccountId;
use ferry_proto::transfer::TransferId;
use ferry_tests::conformance::{ClientRuntime, Command, RemoteClient};
use smol::channel::{Receiver, unbounded};
use smol::future::FutureExt as _;

/// What woke a client's loop.
enum Wake {
    Command(Option<Command>),
    Event(Option<ClientEvent>),
}

/// Runs a client on runtime `R` until its commands or its events end: each command is
/// carried out and answered, each event forwarded. The command channel is smol's, which
/// needs no runtime of its own, so both runtimes take it.
async fn serve<R: Runtime>(
    config: ClientConfig,
    inbox: Receiver<Command>,
    forward: mpsc::Sender<ClientEvent>,
) {
    let mut client = Client::<R>::start(config).expect("a client");
    let mut sent = Sent::default();
    loop {
        let wake = async { Wake::Command(inbox.recv().await.ok()) }
            .or(async { Wake::Event(client.next_event().await) })
            .await;
        match wake {
            Wake::Command(Some(command)) => carry_out(&client, command, &mut sent).await,
            Wake::Event(Some(event)) => {
                match &event {
                    ClientEvent::Reaching {
                        group, transfer, ..
                    } => sent.reached(*group, *transfer),
                    ClientEvent::AskAgain {
                        request,
                        from,
                        transfer,
                    } => sent.serve(&client, *request, from.account, *transfer).await,
                    _ => {}
                }
                let _ = forward.send(event);
            }
            Wake::Command(None) | Wake::Event(None) => break,
        }
    }
    client.shutdown().await;
}

/// What a client sent, as `ferry`'s records keep it: by group id and by the id each device
/// saw, the account and the source file as it was sent. Requests to send again are served
/// from it, as `listen` serves them from the records ([`sent_file::decide`]).
#[derive(Default)]
struct Sent {
    by_id: BTreeMap<TransferId, (AccountId, SentFile)>,
}

impl Sent {
    fn sent(&mut self, group: &Result<TransferId, ClientError>, to: AccountId, path: &Path) {
        if let (Ok(group), Ok(file)) = (group, SentFile::of(path)) {
            self.by_id.insert(*group, (to, file));
        }
    }

    fn reached(&mut self, group: TransferId, transfer: TransferId) {
        if let Some(s) = self.by_id.get(&group).cloned() {
            self.by_id.insert(transfer, s);
        }
    }

    async fn serve<R: Runtime>(
        &mut self,
        client: &Client<R>,
        request: AskId,
        from: AccountId,
        transfer: TransferId,
    ) {
        let recorded = self.by_id.get(&transfer).map(|(to, file)| Recorded {
            to: *to,
            file,
            digest: None,
        });
        let path = recorded.map(|r| r.file.path.clone());
        match (sent_file::decide(from, recorded), path) {
            (Ok(()), Some(path)) => {
                if let Ok(Some(group)) = client.resend(request, &path).await {
                    self.reached(transfer, group);
                }
            }
            (Err(code), _) => {
                let _ = client.refuse_ask(request, code).await;
            }
            (Ok(()), None) => {}
        }
    }
}

/// Carries out one command on a client; an answer nobody waits for any more is dropped.
async fn carry_out<R: Runtime>(client: &Client<R>, command: Command, sent: &mut Sent) {
    match command {
        Command::Send { to, path, answer } => {
            let group = client.send_file(to, &path).await;
            sent.sent(&group, to, &path);
            let _ = answer.send(group);
        }
        Command::SendAgain {
            to,
            path,
            group,
            devices,
            answer,
        } => {
            let group = client.send_file_again(to, &path, group, devices).await;
            sent.sent(&group, to, &path);
            let _ = answer.send(group);
        }
        Command::AskAgain {
            sender,
            transfer,
            claimed,
            answer,
        } => {
            let _ = answer.send(client.ask_again_claiming(sender, transfer, claimed).await);
        }
        Command::Accept(transfer, answer) => {
            let _ = answer.send(client.accept(transfer).await);
        }
        Command::Refuse(transfer, answer) => {
            let _ = answer.send(client.refuse(transfer).await);
        }
        Command::Cancel(transfer, answer) => {
            let _ = answer.send(client.cancel(transfer).await);
        }
        Command::Relayed(answer) => {
            let _ = answer.send(client.relayed().await);
        }
    }
}

/// A client of runtime `R` on a thread of its own, which `block_on` drives.
fn spawn<R: Runtime>(
    config: ClientConfig,
    block_on: impl FnOnce(std::pin::Pin<Box<dyn Future<Output = ()>>>) + Send + 'static,
) -> RemoteClient {
    let (commands, inbox) = unbounded::<Command>();
    let (forward, events) = mpsc::channel();
    let thread = std::thread::spawn(move || block_on(Box::pin(serve::<R>(config, inbox, forward))));
    RemoteClient {
        commands: Box::new(move |c| commands.try_send(c).is_ok()),
        events,
        thread,
    }
}

/// `ferry_smol::Client`, blocked on by a thread of its own.
pub(crate) struct Smol;

impl ClientRuntime for Smol {
    const NAME: &'static str = "smol";

    fn spawn(config: ClientConfig) -> RemoteClient {
        spawn::<ferry_smol::Smol>(config, smol::block_on)
    }
}

/// `ferry_tokio::Client` on a current-thread runtime of its own, on its own thread.
pub(crate) struct Tokio;

impl ClientRuntime for Tokio {
    const NAME: &'static str = "tokio";

    fn spawn(config: ClientConfig) -> RemoteClient {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        spawn::<ferry_tokio::Tokio>(config, move |serve| runtime.block_on(serve))
    }
}
