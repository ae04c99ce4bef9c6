//! Any endpoint on a real runtime driver (`ferry-smol`, `ferry-tokio`), seen from a plain
//! test thread: the driver runs on a thread of its own, commands go to it, events come back.
//!
//! A runtime's tests implement [`Runtime`] in a few lines; the scenarios of
//! [`runtime_suite`](mod@crate::runtime_suite) are written once against it.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_driver::Config;
use ferry_proto::io::Endpoint;

/// A command for the endpoint, run on the driver with the current time.
pub type Command<E> = Box<dyn FnOnce(&mut E, Instant) + Send>;

/// A runtime that can run any endpoint on a thread of its own.
pub trait Runtime {
    /// Its name, for messages.
    const NAME: &'static str;

    /// Starts a driver for `endpoint` on a new thread.
    fn spawn<E>(endpoint: E, config: Config) -> Remote<E>
    where
        E: Endpoint + Send + 'static,
        E::Event: Send + 'static;
}

/// A running driver, from the test's side. Dropping it stops the driver.
pub struct Remote<E: Endpoint> {
    commands: Box<dyn Fn(Command<E>) -> bool + Send>,
    events: mpsc::Receiver<E::Event>,
    /// Events no `run_until` has taken yet.
    unclaimed: VecDeque<E::Event>,
}

impl<E: Endpoint + 'static> Remote<E> {
    /// Wraps a driver's command function and the events it forwards.
    pub fn new(
        commands: impl Fn(Command<E>) -> bool + Send + 'static,
        events: mpsc::Receiver<E::Event>,
    ) -> Remote<E> {
        Remote {
            commands: Box::new(commands),
            events,
            unclaimed: VecDeque::new(),
        }
    }

    /// Runs `f` on the endpoint, on the driver.
    pub fn command(&self, f: impl FnOnce(&mut E, Instant) + Send + 'static) {
        assert!((self.commands)(Box::new(f)), "the driver stopped");
    }

    /// Runs `f` on the endpoint and returns its result.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut E, Instant) -> R + Send + 'static,
    ) -> R {
        let (tx, rx) = mpsc::channel();
        self.command(move |e, now| {
            let _ = tx.send(f(e, now));
        });
        rx.recv().expect("the driver answers")
    }

    /// Waits for an event that satisfies `until` (returned, and taken), or `timeout`
    /// (`None`). Events that do not satisfy it stay for later calls.
    pub fn run_until(
        &mut self,
        timeout: Duration,
        mut until: impl FnMut(&E::Event) -> bool,
    ) -> Option<E::Event> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self.unclaimed.iter().position(&mut until) {
                return self.unclaimed.remove(i);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.events.recv_timeout(left) {
                Ok(event) => self.unclaimed.push_back(event),
                Err(_) => return None,
            }
        }
    }

    /// Takes every event that came so far.
    pub fn take_events(&mut self) -> Vec<E::Event> {
        self.unclaimed.extend(self.events.try_iter());
        self.unclaimed.drain(..).collect()
    }
}
