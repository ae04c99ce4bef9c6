//! ICE over TCP (RFC 8445 with RFC 6544's TCP candidates and RFC 4571 framing), speaking
//! Jami's ICE description.
//!
//! This module owns candidates and their Jami text lines ([`Candidate`]), the description
//! blob ([`Description`]), priorities ([`priority`]), the check list ([`CheckList`]) and the
//! [`Agent`] that runs the checks between two devices, nominates a pair and then carries the
//! application's bytes on it in RFC 4571 frames, as Jami does.
//!
//! It does **not** gather candidates: address discovery is external (as in str0m). The
//! owner lists local interface addresses, binds the listeners of the passive candidates,
//! asks a TURN client for relayed ones, and gives the agent the resulting [`Candidate`]s.
//! A relayed candidate is just a passive candidate of type `relay` at the lowest priority;
//! a connection that reaches us through the relay is handed to the agent as an accepted
//! connection like any other. The agent knows nothing of TURN.
//!
//! With the [`crate::turn`] client, the owner wires a relayed candidate like this: the
//! [`TurnEvent::Allocated`](crate::turn::TurnEvent::Allocated) address becomes a
//! `relay` passive candidate; a
//! [`TurnEvent::PeerStream`](crate::turn::TurnEvent::PeerStream) with `incoming: true`
//! becomes [`Input::Accepted`] with `local` = the relayed address and `remote` = the peer,
//! under a [`ConnId::Accepted`](crate::io::ConnId::Accepted) name the owner picks (the
//! agent names every `ConnId::Connect` in its space, and the TURN client's data connection
//! is one of the owner's own); its `PeerData` becomes [`Input::Received`], and the agent's
//! [`Output::Send`] and [`Output::Close`] on that name go to the TURN client's data
//! connection. The peer's
//! address as the relay saw it is usually none of its candidates, so the pair's remote side
//! is a peer-reflexive candidate; the pair stays the lowest-priority one either way.
//!
//! # Why the agent has its own `Input` / `Output`
//!
//! The agent speaks a narrower vocabulary than [`crate::io`] rather than implementing
//! [`crate::io::Endpoint`], for three reasons:
//! - it is always a child (of a connector, which also runs a TURN client, TLS and the DHT
//!   exchange), and a parent translates its children's outputs (DESIGN.md);
//! - an accepted connection must say which *local address* it arrived on, to find the
//!   local passive candidate, and `io::Input::Accepted` only names the listener, which the
//!   agent never sees (the owner binds listeners);
//! - an active candidate says which local IP to connect from ([`Output::Connect`]'s
//!   `local_ip`), which `io::Output::Connect` has no field for.
//!
//! Connection ids are [`crate::io::ConnId`]s: the agent numbers the connections it asks for
//! (`ConnId::Connect(0)`, `(1)`, …) in its own space, which a parent with several agents maps
//! to its own; accepted connections keep the driver's name.
//!
//! # What an agent does, in order
//!
//! 1. [`Agent::new`] with the local candidates; [`Agent::local_description`] goes to the
//!    peer.
//! 2. [`Agent::set_remote_description`] forms the check list. Checks start, one per pacing
//!    interval (Ta): for each active pair, [`Output::Connect`], then on
//!    [`Input::Connected`] a Binding request on that connection.
//! 3. The peer's connections arrive as [`Input::Accepted`]; the first valid check on one
//!    makes a pair (learning a peer-reflexive candidate when its source matches no remote
//!    candidate); the response and a triggered check go back on the same connection.
//!    Checks that arrive before the remote description are answered, and their triggered
//!    check waits for it.
//! 4. The controlling agent nominates (regular nomination) the best valid pair once every
//!    higher-priority pair has finished, or after [`Config::nomination_wait`]. Both agents
//!    report [`Event::Selected`] with the connection; every other connection is closed.
//! 5. From then on [`Agent::send`] frames application bytes and [`Output::Data`] delivers
//!    the peer's; Binding requests every [`Config::keepalive_interval`] keep consent.
//!
//! Every failure has a reason: a pair fails with a [`PairFailure`]; the session fails with
//! [`Event::Failed`], which lists every pair and how it ended.
//!
//! # Deviations from the RFCs, and why
//!
//! - No retransmission of checks over TCP (RFC 6544 keeps STUN's 39.5 s transaction
//!   timeout); a check that gets no answer within [`Config::check_timeout`] fails its pair,
//!   since TCP already retransmits and Jami's whole negotiation lasts 10 s.
//! - A check arriving on an accepted connection is matched to a remote *active* candidate by
//!   IP address alone: active candidates advertise port 9 (RFC 6544 §4.5), so the source port
//!   cannot be compared. Only when no active candidate has that IP is a peer-reflexive one
//!   learned.
//! - A response's XOR-MAPPED-ADDRESS never makes a local peer-reflexive candidate: on TCP the
//!   valid pair is the pair whose connection carried the check (RFC 6544 §7.2).
//! - Consent freshness (RFC 7675) is a Binding request every keepalive interval on the
//!   selected pair, whatever the traffic; consent is lost when no authenticated response
//!   arrived for [`Config::consent_timeout`].
//! - Credentials have Jami's shapes: an 8-hex-digit ufrag and a 24-hex-digit password, so
//!   96 random bits where RFC 8445 §5.3 asks for 128. The parser accepts any RFC-sized ones.
//! - Checks carry FINGERPRINT always; a message without one is dropped. On the selected
//!   connection the FINGERPRINT is also the demultiplexer (RFC 8489 §14.7): a frame that
//!   starts like STUN but does not decode with a valid one is the application's.
//! - An accepted connection must bring a valid check within [`Config::check_timeout`] or it
//!   is closed; a relayed or NATed peer that connects and then says nothing costs nothing.

mod agent;
mod candidate;
mod check_list;
mod config;
mod description;
mod path;
pub mod priority;
mod vocabulary;

pub use agent::{Agent, Dropped};
pub use candidate::{ACTIVE_PORT, Candidate, CandidateError, CandidateType, TcpType, Transport};
pub use check_list::{CheckList, Origin, Pair, PairState};
pub use config::{Config, EARLY_DATA_CAP, Role};
pub use description::{BadLine, Description, DescriptionError, Parsed};
pub use path::SelectedPath;
pub use priority::LocalPreference;
pub use vocabulary::{Event, FailReason, Input, Output, PairFailure, PairReport};
