//! The runtime scenarios of `ferry-tests` on tokio: real loopback sockets, real temporary
//! files, a real coturn (`FERRY_REQUIRE_INTEROP=1` makes a missing coturn a failure).

use std::sync::mpsc;

use ferry_proto::io::Endpoint;
use ferry_tests::driven::{Remote, Runtime};
use ferry_tokio::{Config, Driver};

/// Each driver on a current-thread tokio runtime of its own, on its own thread.
struct Tokio;

impl Runtime for Tokio {
    const NAME: &'static str = "tokio";

    fn spawn<E>(endpoint: E, config: Config) -> Remote<E>
    where
        E: Endpoint + Send + 'static,
        E::Event: Send + 'static,
    {
        let (driver, handle, mut events) = Driver::new(endpoint, config).expect("driver");
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

ferry_tests::runtime_suite!(Tokio);
