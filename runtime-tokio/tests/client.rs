//! `ferry_tokio::Client` calls that cannot succeed fail with a reason, and a client shuts
//! down cleanly whether or not it did anything.

use std::time::{Duration, Instant};

use ferry_proto::tls::{Account, Validity, derive_seed};
use ferry_proto::transfer::TransferId;
use ferry_tokio::{Client, ClientConfig, ClientError, ClientEvent, Config, Paths};

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

#[tokio::test]
async fn refused_calls_have_reasons_and_shutdown_is_prompt() {
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
    let created = tokio::time::timeout(Duration::from_secs(5), client.next_event())
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
