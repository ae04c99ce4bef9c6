//! `ferry_smol::Client` calls that cannot succeed fail with a reason, and a client shuts
//! down cleanly whether or not it did anything.

use std::time::{Duration, Instant};

use ferry_proto::tls::{Account, Validity, derive_seed};
use ferry_proto::transfer::TransferId;
use ferry_smol::{Client, ClientConfig, ClientError, ClientEvent, Config, Paths};

fn config(folder: &std::path::Path) -> (ClientConfig, Account) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let validity = Validity::days_from(now - 3600, 30);
    let account = Account::from_seed(&derive_seed(b"client", "a"), validity).expect("account");
    let device = account
        .add_device(&derive_seed(b"client", "d"), validity)
        .expect("device");
    let announcement = account.announce(&device).expect("announce");
    let config = ClientConfig::new(device, announcement, Config::new(folder))
        .with_paths(Paths::loopback_only());
    (config, account)
}

#[test]
fn refused_calls_have_reasons_and_shutdown_is_prompt() {
    smol::block_on(scenario());
}

async fn scenario() {
    let folder = tempfile::tempdir().expect("temp dir");
    let (config, account) = config(folder.path());
    let mut client = Client::start(config).expect("client");
    let missing = client
        .send_file(account.id(), folder.path().join("nope"))
        .await;
    assert!(
        matches!(missing, Err(ClientError::Source { .. })),
        "{missing:?}"
    );
    let folder_itself = client.send_file(account.id(), folder.path()).await;
    assert!(
        matches!(folder_itself, Err(ClientError::Source { .. })),
        "{folder_itself:?}"
    );
    let unknown = client.accept(TransferId(42)).await;
    assert!(
        matches!(unknown, Err(ClientError::Refused(_))),
        "{unknown:?}"
    );
    let unknown = client.refuse(TransferId(42)).await;
    assert!(
        matches!(unknown, Err(ClientError::Refused(_))),
        "{unknown:?}"
    );
    assert_eq!(
        client.cancel(TransferId(42)).await,
        Ok(()),
        "cancelling an unknown transfer does nothing"
    );
    assert_eq!(client.relayed().await, Ok(Vec::new()), "no TURN server");
    // A file sent to an account with no device online waits for one: the shutdown does not.
    let source = folder.path().join("out.bin");
    std::fs::write(&source, b"bytes").expect("write");
    let group = client.send_file(account.id(), &source).await.expect("send");
    let created = smol::future::or(async { Some(client.next_event().await) }, async {
        smol::Timer::after(Duration::from_secs(5)).await;
        None
    })
    .await
    .expect("an event");
    assert!(
        matches!(created, Some(ClientEvent::Group { group: g, .. }) if g == group),
        "{created:?}"
    );
    let start = Instant::now();
    client.shutdown().await;
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}

/// An application that takes no events for a while (busy, or awaiting a call first) does not
/// stop its driver: commands still run, and the events wait for it, in order, none lost.
/// Before, the driver waited for room in its event queue (256), so a `call` made meanwhile
/// never returned and no timer ran (a listener whose output pipe filled stopped answering
/// its peers' consent checks).
#[test]
fn a_call_returns_while_the_application_takes_no_events() {
    use ferry_proto::io::Output;
    use ferry_tests::probe::{Probe, ProbeEvent};
    use smol::future::FutureExt as _;

    const EVENTS: usize = 1_000;
    let folder = tempfile::tempdir().expect("temp dir");
    let (driver, handle, events) =
        ferry_smol::Driver::new(Probe::new(), Config::new(folder.path())).expect("driver");
    std::thread::spawn(move || smol::block_on(driver.run()));
    // Four times the event queue, emitted at once; nobody takes them yet.
    handle
        .command(|p: &mut Probe, _| {
            for _ in 0..EVENTS {
                p.ask(Output::Event(ProbeEvent::Woke));
            }
        })
        .expect("running");
    let answer = smol::block_on(async { handle.call(|_, _| 42).await.ok() }.or(async {
        smol::Timer::after(Duration::from_secs(30)).await;
        None
    }));
    assert_eq!(answer, Some(42), "the call was answered");
    let mut woke = 0;
    let until = Instant::now() + Duration::from_secs(30);
    while woke < EVENTS && Instant::now() < until {
        let next = smol::block_on(async { events.recv().await }.or(async {
            smol::Timer::after(Duration::from_secs(1)).await;
            None
        }));
        if let Some(ProbeEvent::Woke) = next {
            woke += 1;
        }
    }
    assert_eq!(
        woke, EVENTS,
        "every event arrives once the application takes them"
    );
}
