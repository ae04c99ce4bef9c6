//! The one driver loop: any [`Endpoint`] on any [`Runtime`].
//!
//! A [`Driver`] owns a [`Shell`] and waits on four things, deadline first so that a busy
//! socket cannot starve a timer: the endpoint's next deadline, a command from a [`Handle`],
//! an input from the file workers or the DHT, and a report from a socket task. After each
//! wake-up it hands the endpoint's events to the application through [`Events`], waiting
//! when the application is behind (which bounds memory: TCP then pushes back on the peers).

use std::io;
use std::time::Instant;

use async_channel::{Receiver, Sender};
use ferry_proto::io::{Endpoint, Input};
use futures_lite::FutureExt as _;

use crate::runtime::{Runtime, Tasks};
use crate::{CLOSE_LINGER, Config, Shell, SocketEvent, Stopped};

/// A command for the endpoint, run on the driver's task with the current time.
pub type Command<E> = Box<dyn FnOnce(&mut E, Instant) + Send>;

/// What [`Driver::new`] gives: the driver to run, a handle to command it, and its events.
pub type Parts<E, R> = (Driver<E, R>, Handle<E>, Events<<E as Endpoint>::Event>);

/// Socket reports waiting for the driver; socket tasks wait when it is full (backpressure).
const SOCKET_QUEUE: usize = 64;
/// Most socket reports taken in one go after a wake-up.
const BATCH: usize = 32;
/// Events waiting for the application. When it is full the driver stops taking socket
/// reports (TCP pushes back on the peers) but goes on with commands, inputs and timers, and
/// tries again every [`EVENT_RETRY`].
const EVENT_QUEUE: usize = 256;
/// How often a driver whose event queue is full tries to deliver again.
const EVENT_RETRY: std::time::Duration = std::time::Duration::from_millis(10);

/// Runs one endpoint on the runtime `R`. Made by [`Driver::new`]; [`run`](Driver::run) it on
/// that runtime.
pub struct Driver<E: Endpoint, R: Runtime> {
    shell: Shell<E, Tasks<R>>,
    sockets: Receiver<SocketEvent<R::Stream>>,
    inputs: Receiver<Input>,
    commands: Receiver<Command<E>>,
    events: Sender<E::Event>,
}

/// Sends commands to a running [`Driver`]. Clones reach the same driver; the driver stops
/// once every handle is dropped.
pub struct Handle<E> {
    commands: Sender<Command<E>>,
}

impl<E> Clone for Handle<E> {
    fn clone(&self) -> Self {
        Handle {
            commands: self.commands.clone(),
        }
    }
}

impl<E: Endpoint + 'static> Handle<E> {
    /// Runs `f` on the endpoint, on the driver's task, then carries out what it asked.
    pub fn command(&self, f: impl FnOnce(&mut E, Instant) + Send + 'static) -> Result<(), Stopped> {
        self.commands.try_send(Box::new(f)).map_err(|_| Stopped)
    }

    /// Like [`command`](Self::command), and returns what `f` returned.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut E, Instant) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = async_channel::bounded(1);
        self.command(move |endpoint, now| {
            let _ = tx.try_send(f(endpoint, now));
        })?;
        rx.recv().await.map_err(|_| Stopped)
    }
}

/// The application's end of a driver's events, in the order the endpoint emitted them.
#[derive(Debug)]
pub struct Events<T> {
    events: Receiver<T>,
}

impl<T> Events<T> {
    /// The next event; `None` once the driver has stopped and every event was taken.
    pub async fn recv(&self) -> Option<T> {
        self.events.recv().await.ok()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<T> {
        self.events.try_recv().ok()
    }
}

/// What woke the driver.
enum Wake<E, S> {
    Timeout,
    Command(Option<Command<E>>),
    Input(Input),
    Socket(SocketEvent<S>),
}

impl<E: Endpoint, R: Runtime> Driver<E, R>
where
    // The shell logs a node's events (`logs::event`).
    E::Event: 'static,
{
    /// A driver for `endpoint`, the handle to command it and the receiver of its events.
    /// Starts the file workers; sockets open once [`run`](Self::run) runs.
    pub fn new(endpoint: E, config: Config) -> io::Result<Parts<E, R>> {
        let (report, sockets) = async_channel::bounded(SOCKET_QUEUE);
        let (deliver, inputs) = async_channel::unbounded();
        let (commands_tx, commands) = async_channel::unbounded();
        let (events, events_rx) = async_channel::bounded(EVENT_QUEUE);
        let deliver = move |input| {
            let _ = deliver.try_send(input);
        };
        let shell = Shell::start(endpoint, Tasks::new(report), &config, deliver)?;
        let driver = Driver {
            shell,
            sockets,
            inputs,
            commands,
            events,
        };
        let handle = Handle {
            commands: commands_tx,
        };
        Ok((driver, handle, Events { events: events_rx }))
    }

    /// Runs until every [`Handle`] is dropped, then closes every connection (its queued bytes
    /// first, then a FIN) and returns once the peers closed too, or after [`CLOSE_LINGER`].
    /// Dropping the future instead drops every socket at once.
    ///
    /// The application should keep taking [`Events`]. While its queue is full the driver
    /// stops taking socket reports (TCP pushes back on the peers, which keeps memory bounded)
    /// but still runs commands — so an application that awaits a [`Handle::call`] before it
    /// takes its events is answered — inputs and timers.
    pub async fn run(mut self) {
        // Carries out what the endpoint asked for when it was made.
        self.shell.handle_timeout(Instant::now());
        // An event the application had no room for yet: the first to go next time.
        let mut held: Option<E::Event> = None;
        loop {
            while let Some(event) = held.take().or_else(|| self.shell.poll_event()) {
                match self.events.try_send(event) {
                    Ok(()) => {}
                    Err(async_channel::TrySendError::Full(event)) => {
                        held = Some(event);
                        break;
                    }
                    // An application that dropped its receiver does not stop the driver.
                    Err(async_channel::TrySendError::Closed(_)) => {}
                }
            }
            let blocked = held.is_some();
            let deadline = match (self.shell.poll_timeout(), blocked) {
                (at, false) => at,
                (at, true) => {
                    let retry = Instant::now() + EVENT_RETRY;
                    Some(at.map_or(retry, |at| at.min(retry)))
                }
            };
            // `or` polls in order, deadline first: a busy socket must not starve timers.
            let wake = async {
                sleep_until::<R>(deadline).await;
                Wake::Timeout
            }
            .or(async { Wake::Command(self.commands.recv().await.ok()) })
            .or(async { Wake::Input(next(&self.inputs).await) })
            .or(async {
                if blocked {
                    std::future::pending::<()>().await;
                }
                Wake::Socket(next(&self.sockets).await)
            })
            .await;
            let now = Instant::now();
            match wake {
                Wake::Timeout => self.shell.handle_timeout(now),
                Wake::Command(Some(command)) => self.shell.command(now, command),
                Wake::Command(None) => break,
                Wake::Input(input) => self.shell.handle_input(now, input),
                Wake::Socket(event) => self.shell.handle_socket(now, event),
            }
            // Under load, take what else is ready before waiting again.
            for _ in 0..if blocked { 0 } else { BATCH } {
                let Ok(event) = self.sockets.try_recv() else {
                    break;
                };
                self.shell.handle_socket(Instant::now(), event);
            }
        }
        self.close().await;
    }

    /// Closes every connection and waits for them, at most [`CLOSE_LINGER`].
    async fn close(mut self) {
        let until = Instant::now() + CLOSE_LINGER;
        self.shell.close_all(Instant::now());
        while !self.shell.is_closed() && Instant::now() < until {
            let deadline = self.shell.poll_timeout().map_or(until, |at| at.min(until));
            let event = async {
                R::sleep_until(deadline).await;
                None
            }
            .or(async { Some(next(&self.sockets).await) })
            .await;
            match event {
                Some(event) => self.shell.handle_socket(Instant::now(), event),
                None => self.shell.handle_timeout(Instant::now()),
            }
        }
    }
}

async fn sleep_until<R: Runtime>(deadline: Option<Instant>) {
    match deadline {
        Some(at) => R::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The next message; never, once the channel is closed (the shell holds the senders of the
/// channels this waits on, so that is only while the driver is being dropped).
async fn next<T>(channel: &Receiver<T>) -> T {
    match channel.recv().await {
        Ok(message) => message,
        Err(_) => std::future::pending().await,
    }
}
