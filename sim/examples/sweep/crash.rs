//! The fault sweep's process crashes: what is drawn, what the crashed sender's records keep,
//! and how the receiver's side of the send after a crash started.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_proto::io::Event;
use ferry_proto::tls::DeviceId;
use ferry_proto::transfer::TransferId;
use ferry_sim::{HostId, World};

use crate::faults::offers;

/// A process crash of one side, due at `at`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Crash {
    /// Bob's process (else Alice's).
    pub(crate) bob: bool,
    /// When.
    pub(crate) at: Duration,
    /// The random seed of the process that starts again.
    pub(crate) seed: u64,
}

/// The group an attempt sent, and whether a process crashed during it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sent {
    /// The group.
    pub(crate) id: TransferId,
    /// Whether a process crashed while it ran.
    pub(crate) crashed: bool,
    /// Whether it was Bob's.
    pub(crate) crashed_bob: bool,
}

/// Alice's records of a send: its group id and each device's sub-transfer id, from what her
/// node told her (the events of the process that crashed are still the host's).
pub(crate) fn records_of(
    world: &World,
    ha: HostId,
    group: TransferId,
) -> (TransferId, BTreeMap<DeviceId, TransferId>) {
    let devices = world
        .events::<Event>(ha)
        .iter()
        .filter_map(|(_, e)| match e {
            Event::SubTransfer {
                group: g,
                transfer,
                device,
            } if *g == group => Some((*device, *transfer)),
            _ => None,
        })
        .collect();
    (group, devices)
}

/// How Bob's side of the send after a crash started: resumed with its prefix verified, or
/// from zero (a fresh start, or RESTART after a prefix that did not match); an error if a
/// resume was not verified.
pub(crate) fn how_it_started(
    world: &World,
    hb: HostId,
    since: Duration,
) -> Result<&'static str, String> {
    let Some(t) = offers(world, hb, since).first().copied() else {
        return Err("sent again after a crash, and Bob was offered nothing".to_owned());
    };
    let events = world.events::<Event>(hb);
    let mut name = "again_from_zero";
    for (_, e) in events.iter().filter(|(at, _)| *at >= since) {
        match e {
            Event::Resuming {
                transfer, verified, ..
            } if *transfer == t => {
                if !verified {
                    return Err("resumed after a crash without the prefix verified".to_owned());
                }
                name = "resumed_verified";
            }
            Event::Restarted { transfer, .. } if *transfer == t => name = "restarted",
            _ => {}
        }
    }
    Ok(name)
}
