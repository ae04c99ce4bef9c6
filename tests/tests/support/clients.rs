//! Both runtimes' `Client`s as [`ClientRuntime`]s for the conformance harness, shared by the
//! conformance suite and the transfer benchmark.

use std::sync::mpsc;

use ferry_driver::{ClientConfig, ClientEvent};
use ferry_tests::conformance::{ClientRuntime, Command, RemoteClient};

/// Carries out one command on a client (both runtimes' clients have the same calls).
macro_rules! carry_out {
    ($client:expr, $command:expr) => {
        match $command {
            Command::Send { to, path, answer } => {
                let _ = answer.send($client.send_file(to, path).await);
            }
            Command::Accept(transfer, answer) => {
                let _ = answer.send($client.accept(transfer).await);
            }
            Command::Refuse(transfer, answer) => {
                let _ = answer.send($client.refuse(transfer).await);
            }
            Command::Cancel(transfer, answer) => {
                let _ = answer.send($client.cancel(transfer).await);
            }
            Command::Relayed(answer) => {
                let _ = answer.send($client.relayed().await);
            }
        }
    };
}

/// What woke a client's thread.
enum Wake {
    Command(Option<Command>),
    Event(Option<ClientEvent>),
}

/// `ferry_smol::Client`, blocked on by a thread of its own.
pub(crate) struct Smol;

impl ClientRuntime for Smol {
    const NAME: &'static str = "smol";

    fn spawn(config: ClientConfig) -> RemoteClient {
        use smol::future::FutureExt as _;
        let (commands, inbox) = smol::channel::unbounded::<Command>();
        let (forward, events) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            smol::block_on(async move {
                let mut client = ferry_smol::Client::start(config).expect("a client");
                loop {
                    let wake = async { Wake::Command(inbox.recv().await.ok()) }
                        .or(async { Wake::Event(client.next_event().await) })
                        .await;
                    match wake {
                        Wake::Command(Some(command)) => carry_out!(client, command),
                        Wake::Event(Some(event)) => {
                            let _ = forward.send(event);
                        }
                        Wake::Command(None) | Wake::Event(None) => break,
                    }
                }
                client.shutdown().await;
            });
        });
        RemoteClient {
            commands: Box::new(move |c| commands.try_send(c).is_ok()),
            events,
            thread,
        }
    }
}

/// `ferry_tokio::Client` on a current-thread runtime of its own, on its own thread.
pub(crate) struct Tokio;

impl ClientRuntime for Tokio {
    const NAME: &'static str = "tokio";

    fn spawn(config: ClientConfig) -> RemoteClient {
        let (commands, mut inbox) = tokio::sync::mpsc::unbounded_channel::<Command>();
        let (forward, events) = mpsc::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let thread = std::thread::spawn(move || {
            runtime.block_on(async move {
                let mut client = ferry_tokio::Client::start(config).expect("a client");
                loop {
                    let wake = tokio::select! {
                        command = inbox.recv() => Wake::Command(command),
                        event = client.next_event() => Wake::Event(event),
                    };
                    match wake {
                        Wake::Command(Some(command)) => carry_out!(client, command),
                        Wake::Event(Some(event)) => {
                            let _ = forward.send(event);
                        }
                        Wake::Command(None) | Wake::Event(None) => break,
                    }
                }
                client.shutdown().await;
            });
        });
        RemoteClient {
            commands: Box::new(move |c| commands.send(c).is_ok()),
            events,
            thread,
        }
    }
}
