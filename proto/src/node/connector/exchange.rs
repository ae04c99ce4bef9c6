//! A connector's DHT exchange: the requester's sealed request (put again until answered),
//! the answerer's permissions on its relays and its sealed answer, and the timers of each
//! stage. The agent is made here, with the node's candidates.

use std::time::Instant;

use bytes::Bytes;

use super::{Connector, Env, Output, Stage, Timer, peer_ips};
use crate::ice::{Agent, Description, Role};
use crate::node::{ANSWER_TIMEOUT, REQUEST_RETRY};
use crate::signal::{self, PeerConnection};

impl Connector {
    /// The node's candidates are known: the requester puts its request, the answerer
    /// permits the requester on its relays and answers.
    ///
    /// The answerer does not wait for the relays' responses before it answers: the answer
    /// crosses the DHT, which takes far longer than one round trip to a relay, and a
    /// connection the relay refuses because its permission came late is tried again
    /// ([`ice::Config::connect_retry`](crate::ice::Config::connect_retry)). Waiting cost
    /// every set-up with a relay one round trip to it (the full-cone scenario: 0.75 RTT of
    /// its 6.3).
    pub(in crate::node) fn gathered(&mut self, now: Instant, env: Env<'_>) {
        // Drawn whatever the stage: every later random value depends on the draws so far.
        let seed = env.rng.next_u64();
        if self.stage != Stage::Gathering {
            return;
        }
        if !self.requester {
            // Asked for before the answer is put, so the relay hears it first.
            self.out.push_back(Output::Permit(self.peer_ips.clone()));
            self.answer(now, env);
            return;
        }
        let agent = Agent::new(
            now,
            env.config.ice.clone(),
            Role::Controlled,
            env.candidates,
            seed,
        );
        let msg = PeerConnection {
            id: self.request_id,
            is_answer: false,
            ice: agent.local_description().to_string(),
            addresses: env.public,
            seal: Some(env.config.device.seal_public_key()),
            // Only to a device that announced it reads one: others get the first form.
            time: self
                .recipient
                .features
                .request_time
                .then(|| env.config.anchor.at(now).as_secs()),
        };
        self.agent = Some(agent);
        match signal::seal(&env.config.device, &self.recipient, &msg.encode(), env.rng) {
            Ok(sealed) => {
                let sealed = Bytes::from(sealed);
                self.out.push_back(Output::Put {
                    key: signal::peer_key(&self.device),
                    value: sealed.clone(),
                });
                self.sealed = Some(sealed);
                self.stage = Stage::WaitAnswer;
                self.out
                    .push_back(Output::Arm(Timer::Retry, now + REQUEST_RETRY));
                self.out
                    .push_back(Output::Arm(Timer::Answer, now + ANSWER_TIMEOUT));
            }
            Err(e) => self
                .out
                .push_back(Output::Fail(format!("cannot seal the request: {e}"))),
        }
        self.out.push_back(Output::AgentReady(self.ufrag()));
    }

    /// Answerer: starts ICE on the request's description and puts the answer.
    fn answer(&mut self, now: Instant, env: Env<'_>) {
        // The agent's own draw, after the one above (the order of draws is the trace's).
        let seed = env.rng.next_u64();
        let Some(request) = self.request.take() else {
            return;
        };
        let mut agent = Agent::new(
            now,
            env.config.ice.clone(),
            Role::Controlling,
            env.candidates,
            seed,
        );
        let remote = match Description::parse(&request.ice) {
            Ok(parsed) => parsed.description,
            Err(e) => {
                return self.out.push_back(Output::Fail(format!(
                    "signalling: unusable ICE description ({e})"
                )));
            }
        };
        let answer = PeerConnection {
            id: request.id,
            is_answer: true,
            ice: agent.local_description().to_string(),
            addresses: env.relayed,
            seal: None,
            time: None,
        };
        if let Err(e) = agent.set_remote_description(now, remote) {
            return self.out.push_back(Output::Fail(format!("ICE: {e}")));
        }
        // The requester starts its checks when our answer reaches it, which a slow or lossy
        // DHT can make as late as the end of its wait for an answer: our negotiation lasts
        // until its own would have ended, not ICE's timeout from our answer.
        agent.restart_deadline(now + ANSWER_TIMEOUT);
        self.agent = Some(agent);
        self.stage = Stage::Ice;
        match signal::seal(
            &env.config.device,
            &self.recipient,
            &answer.encode(),
            env.rng,
        ) {
            Ok(sealed) => {
                let sealed = Bytes::from(sealed);
                self.sealed_answer = Some(sealed.clone());
                self.out.push_back(Output::Put {
                    key: signal::peer_key(&self.device),
                    value: sealed,
                });
            }
            Err(e) => self
                .out
                .push_back(Output::Fail(format!("cannot seal the answer: {e}"))),
        }
        self.out.push_back(Output::AgentReady(self.ufrag()));
    }

    /// Requester: the answer came. `false` if none was awaited (a replay).
    pub(in crate::node) fn handle_answer(&mut self, now: Instant, answer: PeerConnection) -> bool {
        let ips = peer_ips(&answer);
        if self.stage != Stage::WaitAnswer {
            return false;
        }
        self.out.push_back(Output::Disarm(Timer::Retry));
        self.out.push_back(Output::Disarm(Timer::Answer));
        self.peer_ips = ips.clone();
        let remote = match Description::parse(&answer.ice) {
            Ok(parsed) => parsed.description,
            Err(e) => {
                self.out.push_back(Output::Fail(format!(
                    "signalling: unusable ICE description ({e})"
                )));
                return true;
            }
        };
        self.stage = Stage::Ice;
        if let Some(agent) = self.agent.as_mut() {
            if let Err(e) = agent.set_remote_description(now, remote) {
                self.out.push_back(Output::Fail(format!("ICE: {e}")));
                return true;
            }
        }
        // The answerer's active candidates may come to our relay too.
        self.out.push_back(Output::Permit(ips));
        true
    }

    /// One of the connector's timers fired (the node keeps them, see [`Output::Arm`]).
    pub(in crate::node) fn handle_timer(&mut self, now: Instant, timer: Timer) {
        match timer {
            Timer::Retry => {
                if let Some(sealed) = self.sealed.clone() {
                    // The same value, the same id: a DHT that dropped it gets it again.
                    self.out.push_back(Output::Put {
                        key: signal::peer_key(&self.device),
                        value: sealed,
                    });
                    // And an answer the DHT stored but did not deliver comes now.
                    self.out.push_back(Output::Relisten);
                    self.out
                        .push_back(Output::Arm(Timer::Retry, now + REQUEST_RETRY));
                }
            }
            Timer::Answer => {
                self.out
                    .push_back(Output::Fail("signalling: no answer on the DHT".to_owned()));
            }
            Timer::Tls => {
                self.out
                    .push_back(Output::Fail("TLS: the handshake did not finish".to_owned()));
            }
        }
    }
}
