//! The sub-transfers whose channel is not open yet, with the indexes that keep a send of
//! many files linear: a folder of 10,000 files holds 10,000 of them, and each file's
//! channel, answer and verdict looked one up by a scan of all (`many_files` spent a fifth of
//! the sender's CPU there). The indexes are kept here, behind methods, so they cannot drift
//! from the sub-transfers they index.

use std::collections::{BTreeMap, BTreeSet};

use crate::channel::ChannelId;
use crate::tls::DeviceId;
use crate::transfer::TransferId;

/// A sub-transfer whose channel is not open yet.
#[derive(Debug)]
pub(super) struct PendingSub {
    pub(super) group: TransferId,
    pub(super) device: DeviceId,
    /// The channel asked for (connector, channel), once the connection is ready.
    pub(super) channel: Option<(u32, ChannelId)>,
    /// The manifest this file goes under (`PROTOCOL.md` §14): named in its header.
    pub(super) manifest: Option<TransferId>,
    /// Not to be opened yet: its manifest is not accepted, or the files of the manifest
    /// already open fill the window.
    pub(super) held: bool,
}

impl PendingSub {
    /// Whether its channel is to be asked for as soon as its device's connection is ready.
    fn to_open(&self) -> bool {
        self.channel.is_none() && !self.held
    }
}

/// Every [`PendingSub`], by id, by channel, by group and, for those to open, by device.
#[derive(Debug, Default)]
pub(super) struct Pending {
    subs: BTreeMap<TransferId, PendingSub>,
    on_channel: BTreeMap<(u32, ChannelId), TransferId>,
    by_group: BTreeMap<TransferId, BTreeSet<TransferId>>,
    to_open: BTreeMap<DeviceId, BTreeSet<TransferId>>,
}

impl Pending {
    /// Whether `sub` waits here.
    pub(super) fn contains(&self, sub: TransferId) -> bool {
        self.subs.contains_key(&sub)
    }

    /// `sub`, if it waits here.
    pub(super) fn get(&self, sub: TransferId) -> Option<&PendingSub> {
        self.subs.get(&sub)
    }

    /// Adds `sub`, with no channel yet; a held one waits for [`release`](Self::release).
    pub(super) fn insert(&mut self, sub: TransferId, p: PendingSub) {
        self.remove(sub);
        self.by_group.entry(p.group).or_default().insert(sub);
        if let Some(key) = p.channel {
            self.on_channel.insert(key, sub);
        }
        if p.to_open() {
            self.to_open.entry(p.device).or_default().insert(sub);
        }
        self.subs.insert(sub, p);
    }

    /// Takes `sub` out, with every index entry of it.
    pub(super) fn remove(&mut self, sub: TransferId) -> Option<PendingSub> {
        let p = self.subs.remove(&sub)?;
        if let Some(key) = p.channel {
            self.on_channel.remove(&key);
        }
        remove_from(&mut self.by_group, p.group, sub);
        remove_from(&mut self.to_open, p.device, sub);
        Some(p)
    }

    /// Marks `sub` one of manifest `manifest`, held.
    pub(super) fn hold(&mut self, sub: TransferId, manifest: TransferId) {
        if let Some(p) = self.subs.get_mut(&sub) {
            p.manifest = Some(manifest);
            p.held = true;
            remove_from(&mut self.to_open, p.device, sub);
        }
    }

    /// Lets a held `sub` open its channel; `false` if it no longer waits.
    pub(super) fn release(&mut self, sub: TransferId) -> bool {
        let Some(p) = self.subs.get_mut(&sub) else {
            return false;
        };
        p.held = false;
        if p.to_open() {
            self.to_open.entry(p.device).or_default().insert(sub);
        }
        true
    }

    /// `sub` asked connector `connector` for `channel`.
    pub(super) fn set_channel(&mut self, sub: TransferId, connector: u32, channel: ChannelId) {
        let Some(p) = self.subs.get_mut(&sub) else {
            return;
        };
        if let Some(old) = p.channel.replace((connector, channel)) {
            self.on_channel.remove(&old);
        }
        self.on_channel.insert((connector, channel), sub);
        remove_from(&mut self.to_open, p.device, sub);
    }

    /// The sub-transfer that asked connector `connector` for `channel`.
    pub(super) fn on_channel(&self, connector: u32, channel: ChannelId) -> Option<TransferId> {
        self.on_channel.get(&(connector, channel)).copied()
    }

    /// Those that asked connector `connector` for a channel ask again on the next one;
    /// `true` if there were any.
    pub(super) fn forget_channels_of(&mut self, connector: u32) -> bool {
        let keys: Vec<(u32, ChannelId)> = self
            .on_channel
            .range((connector, 0)..=(connector, ChannelId::MAX))
            .map(|(k, _)| *k)
            .collect();
        for key in &keys {
            if let Some(sub) = self.on_channel.remove(key) {
                self.clear_channel(sub);
            }
        }
        !keys.is_empty()
    }

    /// Those of `device` that asked for a channel ask again on its next connection.
    pub(super) fn forget_channels_to(&mut self, device: DeviceId) {
        let subs: Vec<TransferId> = self
            .on_channel
            .values()
            .copied()
            .filter(|sub| self.subs.get(sub).is_some_and(|p| p.device == device))
            .collect();
        for sub in subs {
            if let Some(key) = self.subs.get(&sub).and_then(|p| p.channel) {
                self.on_channel.remove(&key);
            }
            self.clear_channel(sub);
        }
    }

    fn clear_channel(&mut self, sub: TransferId) {
        if let Some(p) = self.subs.get_mut(&sub) {
            p.channel = None;
            if p.to_open() {
                self.to_open.entry(p.device).or_default().insert(sub);
            }
        }
    }

    /// Whether a sub-transfer of `group` still waits.
    pub(super) fn has_group(&self, group: TransferId) -> bool {
        self.by_group.contains_key(&group)
    }

    /// The sub-transfers of `group` that wait, in order.
    pub(super) fn of_group(&self, group: TransferId) -> Vec<TransferId> {
        self.by_group
            .get(&group)
            .map_or_else(Vec::new, |s| s.iter().copied().collect())
    }

    /// Those of `device` neither held nor on a channel, in order: to be asked for.
    pub(super) fn to_open(&self, device: DeviceId) -> Vec<TransferId> {
        self.to_open
            .get(&device)
            .map_or_else(Vec::new, |s| s.iter().copied().collect())
    }

    /// Every sub-transfer of `device` that waits, with its group, in order.
    pub(super) fn of_device(&self, device: DeviceId) -> Vec<(TransferId, TransferId)> {
        self.subs
            .iter()
            .filter(|(_, p)| p.device == device)
            .map(|(t, p)| (*t, p.group))
            .collect()
    }
}

/// Takes `sub` out of `key`'s set, and the set once it is empty.
fn remove_from<K: Ord>(index: &mut BTreeMap<K, BTreeSet<TransferId>>, key: K, sub: TransferId) {
    if let Some(set) = index.get_mut(&key) {
        set.remove(&sub);
        if set.is_empty() {
            index.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(group: u64, device: u8) -> PendingSub {
        PendingSub {
            group: TransferId(group),
            device: DeviceId([device; 32]),
            channel: None,
            manifest: None,
            held: false,
        }
    }

    #[test]
    fn the_indexes_follow_each_change() {
        let mut p = Pending::default();
        let (a, b) = (DeviceId([1; 32]), DeviceId([2; 32]));
        p.insert(TransferId(10), sub(100, 1));
        p.insert(TransferId(11), sub(100, 2));
        p.insert(TransferId(12), sub(101, 1));
        p.hold(TransferId(12), TransferId(7));
        assert_eq!(p.to_open(a), [TransferId(10)]);
        assert_eq!(
            p.of_group(TransferId(100)),
            [TransferId(10), TransferId(11)]
        );

        p.set_channel(TransferId(10), 3, 5);
        assert_eq!(p.on_channel(3, 5), Some(TransferId(10)));
        assert!(p.to_open(a).is_empty(), "on a channel: not to open again");
        assert!(p.release(TransferId(12)));
        assert_eq!(p.to_open(a), [TransferId(12)]);

        // The connection ends: its channel is asked for again.
        assert!(p.forget_channels_of(3));
        assert!(!p.forget_channels_of(3));
        assert_eq!(p.on_channel(3, 5), None);
        assert_eq!(p.to_open(a), [TransferId(10), TransferId(12)]);

        p.set_channel(TransferId(11), 4, 1);
        p.forget_channels_to(b);
        assert_eq!(p.on_channel(4, 1), None);
        assert_eq!(p.to_open(b), [TransferId(11)]);

        assert!(p.remove(TransferId(10)).is_some());
        assert!(p.remove(TransferId(11)).is_some());
        assert!(!p.has_group(TransferId(100)), "its group is empty");
        assert!(p.has_group(TransferId(101)));
        assert!(p.to_open(b).is_empty());
        assert_eq!(p.of_device(a), [(TransferId(12), TransferId(101))]);
        assert!(p.remove(TransferId(12)).is_some());
        assert!(p.subs.is_empty() && p.on_channel.is_empty());
        assert!(p.by_group.is_empty() && p.to_open.is_empty());
    }
}
