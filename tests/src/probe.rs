//! A scripted endpoint for driver tests: it emits exactly the outputs a test hands it and
//! reports every input it is fed, so a test sees what the driver did and nothing else.

use std::collections::VecDeque;
use std::time::Instant;

use ferry_proto::io::{Endpoint, Input, Output};

/// What a [`Probe`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeEvent {
    /// The driver fed this input.
    Input(Input),
    /// The deadline set with [`Probe::wake_at`] passed.
    Woke,
}

/// The scripted endpoint.
#[derive(Debug, Default)]
pub struct Probe {
    out: VecDeque<Output<ProbeEvent>>,
    wake: Option<Instant>,
}

impl Probe {
    /// A probe with nothing to say yet.
    pub fn new() -> Probe {
        Probe::default()
    }

    /// Has the driver carry out `output`.
    pub fn ask(&mut self, output: Output<ProbeEvent>) {
        self.out.push_back(output);
    }

    /// Asks to be woken at `at`.
    pub fn wake_at(&mut self, at: Instant) {
        self.wake = Some(at);
    }
}

impl Endpoint for Probe {
    type Event = ProbeEvent;

    fn handle_input(&mut self, _now: Instant, input: Input) -> Result<(), ferry_proto::Error> {
        self.out.push_back(Output::Event(ProbeEvent::Input(input)));
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.wake.is_some_and(|at| at <= now) {
            self.wake = None;
            self.out.push_back(Output::Event(ProbeEvent::Woke));
        }
    }

    fn poll_output(&mut self) -> Option<Output<ProbeEvent>> {
        self.out.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.wake
    }
}
