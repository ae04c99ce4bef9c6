//! `ferry_tests::driven::Runtime` for tokio, shared by this crate's test binaries.

use std::sync::mpsc;

use ferry_proto::io::Endpoint;
use ferry_tests::driven::{Remote, Runtime};
use ferry_tokio::{Config, Driver};

/// Each driver on a current-thread tokio runtime of its own, on its own thread.
pub(crate) struct Tokio;

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";

    fn spawn<E>(endpoint: E, config: Config) -> Remote<E>
    where
        E: Endpoint + Send + 'static,
        E::Event: Send + 'static,
    {
        let (driver, handle, events) = Driver::new(endpoint, config).expect("driver");
        let (tx, rx) = mpsc::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let forward = async move {
                    while let Some(event) = events.recv().await {
                        if tx.send(event).is_err() {
                            break;
                        }
                    }
                };
                tokio::join!(driver.run(), forward);
            });
        });
        Remote::new(move |command| handle.command(command).is_ok(), rx)
    }
}
