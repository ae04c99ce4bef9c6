//! The peers a relay lets in: CreatePermission for the addresses the owner asks for, one
//! request for all that are waiting, refreshed before the server forgets them (RFC 8656 §9).
//! A request refused with 403 (one forbidden address refuses it whole) is asked again
//! address by address, so only the forbidden ones fail.

use core::net::{IpAddr, SocketAddr};
use std::collections::BTreeSet;
use std::time::Instant;

use super::{Family, Request, State, Timer, TurnClient, TurnEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Permission {
    /// Asked for, not yet requested from the server.
    Wanted,
    /// A CreatePermission for it is out.
    Requesting,
    /// Installed; refresh at this time.
    Active { refresh_at: Instant },
}

impl TurnClient {
    /// Permits these peer addresses (ports are ignored by servers), now if allocated or as soon
    /// as the allocation exists, and keeps them refreshed.
    ///
    /// Addresses already permitted are reported at once with [`TurnEvent::Permitted`]: the
    /// caller waits for that event, and no request will be sent for them until they are due
    /// for a refresh.
    pub fn permit(&mut self, now: Instant, ips: impl IntoIterator<Item = IpAddr>) {
        let mut active = Vec::new();
        for ip in ips {
            match self.permissions.entry(ip).or_insert(Permission::Wanted) {
                Permission::Active { .. } if !active.contains(&ip) => active.push(ip),
                _ => {}
            }
        }
        if !active.is_empty() {
            self.event(TurnEvent::Permitted { ips: active });
        }
        self.flush_permissions(now);
    }

    pub(super) fn flush_permissions(&mut self, now: Instant) {
        if self.state != State::Allocated {
            return;
        }
        let due: Vec<IpAddr> = self
            .permissions
            .iter()
            .filter(|(_, p)| match p {
                Permission::Wanted => true,
                Permission::Requesting => false,
                Permission::Active { refresh_at } => *refresh_at <= now,
            })
            .map(|(ip, _)| *ip)
            .filter(|ip| self.same_family(ip))
            .collect();
        if due.is_empty() {
            return self.arm_permission_timer();
        }
        for ip in &due {
            self.permissions.insert(*ip, Permission::Requesting);
        }
        self.request(now, Request::CreatePermission { ips: due });
        self.arm_permission_timer();
    }

    /// A relay of one family relays to peers of that family only.
    pub(super) fn same_family(&self, ip: &IpAddr) -> bool {
        matches!(
            (self.config.family, ip),
            (Family::V4, IpAddr::V4(_)) | (Family::V6, IpAddr::V6(_))
        )
    }

    pub(super) fn arm_permission_timer(&mut self) {
        let next = self
            .permissions
            .values()
            .filter_map(|p| match p {
                Permission::Active { refresh_at } => Some(*refresh_at),
                _ => None,
            })
            .min();
        match next {
            Some(at) => self.timers.set(Timer::Permissions, at),
            None => self.timers.clear(Timer::Permissions),
        }
    }

    /// Whether the server has installed a permission for `ip`.
    pub(super) fn is_permitted(&self, ip: IpAddr) -> bool {
        matches!(self.permissions.get(&ip), Some(Permission::Active { .. }))
    }

    /// Sends the Connects that waited for the allocation and their peer's permission.
    pub(super) fn release_connects(&mut self, now: Instant) {
        if self.state != State::Allocated {
            return;
        }
        let (ready, held): (Vec<SocketAddr>, Vec<SocketAddr>) =
            std::mem::take(&mut self.queued_connects)
                .into_iter()
                .partition(|peer| self.is_permitted(peer.ip()));
        self.queued_connects = held;
        for peer in ready {
            self.request(now, Request::Connect { peer });
        }
    }

    /// Every address the client keeps a permission for.
    pub fn permitted(&self) -> BTreeSet<IpAddr> {
        self.permissions
            .iter()
            .filter(|(_, p)| matches!(p, Permission::Active { .. }))
            .map(|(ip, _)| *ip)
            .collect()
    }
}
