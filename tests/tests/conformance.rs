//! The conformance suite: every scenario of `ferry_tests::conformance` on the simulator, on
//! smol and on tokio (real loopback sockets and temporary files, through each runtime's
//! `Client`), and on the runtimes the ones that need a real coturn or `dhtnode`.
//!
//! ```sh
//! cargo test -p ferry-tests --test conformance
//! ```
//!
//! Missing servers print a skip line; `FERRY_REQUIRE_INTEROP=1` makes them failures (the
//! `dhtnode` scenario runs itself again under `unshare -n`, which needs root).

use std::sync::mpsc;

use ferry_proto::driver::{ClientConfig, ClientEvent};
use ferry_tests::conformance::{ClientRuntime, Command, Real, RemoteClient, Simulated};

ferry_tests::conformance!(on_sim, Simulated);
ferry_tests::conformance!(on_smol, Real<Smol>, runtime);
ferry_tests::conformance!(on_tokio, Real<Tokio>, runtime);

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
        }
    };
}

/// What woke a client's thread.
enum Wake {
    Command(Option<Command>),
    Event(Option<ClientEvent>),
}

/// `ferry_smol::Client`, blocked on by a thread of its own.
struct Smol;

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
struct Tokio;

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
