//! One whole [`Node`] driven by hand on a virtual clock: the test gives it inputs, keeps what
//! it outputs, and moves its time on. For tests of a node's public API against inputs made
//! up by hand (strangers, old requests), where every instant is exact.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferry_proto::io::{Endpoint, Input, ListenerId, Output};
use ferry_proto::node::{Node, NodeConfig};

/// A node, its clock and what it output since the test last cleared [`outputs`](Self::outputs).
pub struct HandNode {
    /// The node.
    pub node: Node,
    /// The instant it was made.
    pub start: Instant,
    /// Its clock.
    pub now: Instant,
    /// The listener it asked for.
    pub listener: ListenerId,
    /// What it output, in order.
    pub outputs: Vec<Output>,
}

impl HandNode {
    /// A node made at `now` from `config`, its listener bound at `local`; what it output so
    /// far is dropped.
    pub fn listening(now: Instant, config: NodeConfig, local: SocketAddr) -> HandNode {
        let mut node = Node::new(now, config);
        let listener = std::iter::from_fn(|| node.poll_output())
            .find_map(|o| match o {
                Output::Listen { listener, .. } => Some(listener),
                _ => None,
            })
            .expect("a listener");
        let mut hand = HandNode {
            node,
            start: now,
            now,
            listener,
            outputs: Vec::new(),
        };
        hand.input(Input::Listening { listener, local });
        hand.outputs.clear();
        hand
    }

    /// Gives the node one input now and keeps what it outputs.
    pub fn input(&mut self, input: Input) {
        self.node
            .handle_input(self.now, input)
            .expect("network input is never a caller error");
        self.drain();
    }

    /// Keeps what the node outputs.
    pub fn drain(&mut self) {
        self.outputs
            .extend(std::iter::from_fn(|| self.node.poll_output()));
    }

    /// Lets `d` pass, firing every deadline of the node on the way.
    pub fn wait(&mut self, d: Duration) {
        let until = self.now + d;
        while let Some(at) = self.node.poll_timeout().filter(|at| *at <= until) {
            self.now = at.max(self.now);
            self.node.handle_timeout(self.now);
            self.drain();
        }
        self.now = until;
        self.node.handle_timeout(self.now);
        self.drain();
    }
}
