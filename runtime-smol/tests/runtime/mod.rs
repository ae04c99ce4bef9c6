//! `ferry_tests::driven::Runtime` for smol, shared by this crate's test binaries.

use std::sync::mpsc;

use ferry_proto::io::Endpoint;
use ferry_smol::{Config, Driver};
use ferry_tests::driven::{Remote, Runtime};

/// Each driver blocked on by a thread of its own; connection tasks on smol's executor.
pub(crate) struct Smol;

impl Runtime for Smol {
    const NAME: &'static str = "smol";

    fn spawn<E>(endpoint: E, config: Config) -> Remote<E>
    where
        E: Endpoint + Send + 'static,
        E::Event: Send + 'static,
    {
        let (driver, handle, events) = Driver::new(endpoint, config).expect("driver");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            smol::block_on(async move {
                let forward = async move {
                    while let Some(event) = events.recv().await {
                        if tx.send(event).is_err() {
                            break;
                        }
                    }
                };
                smol::future::zip(driver.run(), forward).await;
            });
        });
        Remote::new(move |command| handle.command(command).is_ok(), rx)
    }
}
