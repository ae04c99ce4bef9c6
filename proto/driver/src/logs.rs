//! `tracing` events for what a driver carries out, so `RUST_LOG` (or `ferry -v`) shows why a
//! transfer went as it did. The core stays free of `tracing`: what it tells its application
//! ([`Event`]) is logged here, beside the driver's own socket work.
//!
//! Targets, to pick with `RUST_LOG`: `ferry_driver::net` (connections opened and closed,
//! with addresses), `ferry_driver::node` (ICE pair selected with its candidate kinds,
//! connections failed and why, requests dropped and why, transfer states), and
//! `ferry_driver::progress` (bytes moved, at `trace`).

use std::any::Any;

use ferry_proto::io::Event;

/// Logs an endpoint's event, if it is a node's [`Event`] (other endpoints' events are
/// their own business): states and failures at `info`, the rest at `debug`, progress at
/// `trace`.
pub(crate) fn event(event: &dyn Any) {
    let Some(event) = event.downcast_ref::<Event>() else {
        return;
    };
    match event {
        Event::Connected { device, path } => tracing::info!(
            target: "ferry_driver::node",
            device = %device,
            path = %path.name(),
            class = path.class(),
            local = path.local.as_str(),
            remote = path.remote.as_str(),
            "ICE pair selected, TLS up"
        ),
        Event::PeerUnreachable { device, reason } => tracing::info!(
            target: "ferry_driver::node",
            device = %device,
            reason = %reason,
            "connection failed"
        ),
        Event::RequestDropped {
            account,
            device,
            reason,
        } => tracing::info!(
            target: "ferry_driver::node",
            account = %account,
            device = %device,
            reason = *reason,
            "connection request dropped"
        ),
        Event::ConnectionRequest { account, device } => tracing::info!(
            target: "ferry_driver::node",
            account = %account,
            device = %device,
            "a stranger asks to connect"
        ),
        Event::Status {
            transfer,
            status,
            reason,
        } => tracing::info!(
            target: "ferry_driver::node",
            transfer = %transfer,
            status = status.as_str(),
            reason = reason.as_ref().map(ToString::to_string),
            "transfer state"
        ),
        Event::Progress {
            transfer,
            done,
            total,
        } => tracing::trace!(
            target: "ferry_driver::progress",
            transfer = %transfer,
            done,
            total,
            "bytes moved"
        ),
        Event::Aggregate {
            group,
            status,
            done,
            total,
        } => tracing::trace!(
            target: "ferry_driver::progress",
            group = %group,
            status = status.as_str(),
            done,
            total,
            "every device"
        ),
        other => tracing::debug!(target: "ferry_driver::node", event = ?other, "node event"),
    }
}
