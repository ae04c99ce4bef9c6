//! The optimistic view of one outgoing file sent to every device of a contact (Jami's
//! `OptimisticMetaOutgoingInfo`), with each sub-transfer still visible on its own.
//!
//! Rules, as Jami's:
//! - the view shows the most advanced state among `created` … `finished` over the
//!   sub-transfers that have not failed;
//! - it shows an error only when every sub-transfer has failed (then the last failure);
//! - when the sub-transfer it showed fails, it falls back to the best remaining one;
//! - progress is the maximum over the devices and never goes down.

use std::collections::BTreeMap;

use crate::io::Event;
use crate::transfer::{Reason, Status, TransferId};

/// One device's sub-transfer, as the aggregate last heard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubTransfer {
    /// Its state.
    pub status: Status,
    /// Why it failed, when it did.
    pub reason: Option<Reason>,
    /// Bytes the device holds.
    pub done: u64,
    /// When it failed, the order of that failure among all (for "the last failure").
    failed_order: Option<u32>,
}

/// The optimistic view over the sub-transfers of one file.
#[derive(Debug, Clone, Default)]
pub struct Aggregate {
    subs: BTreeMap<TransferId, SubTransfer>,
    progress: u64,
    total: u64,
    failures: u32,
}

impl Aggregate {
    /// A view of a file of `total` bytes with no sub-transfer yet.
    pub fn new(total: u64) -> Aggregate {
        Aggregate {
            total,
            ..Aggregate::default()
        }
    }

    /// Adds a sub-transfer (one device), in state `created`.
    pub fn add(&mut self, sub: TransferId) {
        self.subs.entry(sub).or_insert(SubTransfer {
            status: Status::Created,
            reason: None,
            done: 0,
            failed_order: None,
        });
    }

    /// Applies an event if it is about one of the sub-transfers. Returns whether the
    /// aggregate's own view ([`status`](Self::status), [`progress`](Self::progress)) changed.
    pub fn apply(&mut self, event: &Event) -> bool {
        let before = (self.status(), self.progress);
        match event {
            Event::Status {
                transfer,
                status,
                reason,
            } => {
                let Some(sub) = self.subs.get_mut(transfer) else {
                    return false;
                };
                if sub.status.is_final() {
                    return false; // A final state is final.
                }
                sub.status = *status;
                sub.reason = reason.clone();
                if status.is_error() {
                    self.failures += 1;
                    sub.failed_order = Some(self.failures);
                }
            }
            Event::Progress {
                transfer,
                done,
                total,
            } => {
                let Some(sub) = self.subs.get_mut(transfer) else {
                    return false;
                };
                sub.done = sub.done.max(*done);
                self.total = self.total.max(*total);
                self.progress = self.progress.max(sub.done);
            }
            _ => return false,
        }
        before != (self.status(), self.progress)
    }

    /// The optimistic state.
    pub fn status(&self) -> Status {
        let best = self
            .subs
            .values()
            .filter_map(|s| s.status.progress_rank().map(|rank| (rank, s.status)))
            .max_by_key(|(rank, _)| *rank);
        if let Some((_, status)) = best {
            return status;
        }
        self.subs
            .values()
            .filter(|s| s.failed_order.is_some())
            .max_by_key(|s| s.failed_order)
            .map_or(Status::Created, |s| s.status)
    }

    /// The reason shown with an error state (that of the last failure), if any.
    pub fn reason(&self) -> Option<&Reason> {
        if !self.status().is_error() {
            return None;
        }
        self.subs
            .values()
            .filter(|s| s.failed_order.is_some())
            .max_by_key(|s| s.failed_order)?
            .reason
            .as_ref()
    }

    /// Bytes: the most any device got; never decreases.
    pub fn progress(&self) -> u64 {
        self.progress
    }

    /// The file's size.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// One sub-transfer.
    pub fn sub(&self, id: TransferId) -> Option<&SubTransfer> {
        self.subs.get(&id)
    }

    /// Every sub-transfer, in id order.
    pub fn subs(&self) -> impl Iterator<Item = (TransferId, &SubTransfer)> {
        self.subs.iter().map(|(id, s)| (*id, s))
    }

    /// Whether every sub-transfer is over.
    pub fn is_over(&self) -> bool {
        !self.subs.is_empty() && self.subs.values().all(|s| s.status.is_final())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: TransferId = TransferId(1);
    const B: TransferId = TransferId(2);
    const C: TransferId = TransferId(3);

    fn status(agg: &mut Aggregate, t: TransferId, status: Status, reason: Option<Reason>) -> bool {
        agg.apply(&Event::Status {
            transfer: t,
            status,
            reason,
        })
    }

    fn progress(agg: &mut Aggregate, t: TransferId, done: u64) -> bool {
        agg.apply(&Event::Progress {
            transfer: t,
            done,
            total: 100,
        })
    }

    fn three() -> Aggregate {
        let mut agg = Aggregate::new(100);
        for t in [A, B, C] {
            agg.add(t);
        }
        agg
    }

    #[test]
    fn the_most_advanced_sub_transfer_is_shown() {
        let mut agg = three();
        assert_eq!(agg.status(), Status::Created);
        assert!(status(&mut agg, A, Status::WaitPeerAcceptance, None));
        assert!(
            !status(&mut agg, B, Status::WaitPeerAcceptance, None),
            "the view did not change"
        );
        assert!(status(&mut agg, B, Status::Ongoing, None));
        assert_eq!(agg.status(), Status::Ongoing);
        assert_eq!(
            agg.sub(A).map(|s| s.status),
            Some(Status::WaitPeerAcceptance),
            "each stays visible"
        );
    }

    #[test]
    fn refusals_are_hidden_while_another_device_goes_on() {
        let mut agg = three();
        status(&mut agg, A, Status::ClosedByPeer, Some(Reason::Refused));
        status(&mut agg, B, Status::ClosedByPeer, Some(Reason::Refused));
        status(&mut agg, C, Status::Ongoing, None);
        assert_eq!(agg.status(), Status::Ongoing);
        assert_eq!(agg.reason(), None);
        status(&mut agg, C, Status::Finished, None);
        assert_eq!(agg.status(), Status::Finished);
        assert!(agg.is_over());
    }

    #[test]
    fn an_error_only_when_every_device_failed_and_then_the_last_one() {
        let mut agg = three();
        status(&mut agg, A, Status::ClosedByPeer, Some(Reason::Refused));
        status(&mut agg, B, Status::TimeoutExpired, Some(Reason::Timeout));
        assert_eq!(agg.status(), Status::Created, "C is still alive");
        status(&mut agg, C, Status::UnjoinablePeer, None);
        assert_eq!(agg.status(), Status::UnjoinablePeer);
        status(&mut agg, A, Status::Ongoing, None);
        assert_eq!(
            agg.sub(A).map(|s| s.status),
            Some(Status::ClosedByPeer),
            "a final state stays final"
        );
    }

    #[test]
    fn a_failed_shown_transfer_falls_back_to_the_best_remaining_and_progress_never_drops() {
        let mut agg = three();
        status(&mut agg, A, Status::Ongoing, None);
        status(&mut agg, B, Status::WaitPeerAcceptance, None);
        assert!(progress(&mut agg, A, 60));
        assert_eq!(agg.progress(), 60);
        status(
            &mut agg,
            A,
            Status::ClosedByPeer,
            Some(Reason::ConnectionLost),
        );
        assert_eq!(agg.status(), Status::WaitPeerAcceptance);
        assert_eq!(agg.progress(), 60, "progress never goes down");
        status(&mut agg, B, Status::Ongoing, None);
        assert!(!progress(&mut agg, B, 30));
        assert!(progress(&mut agg, B, 70));
        assert_eq!(agg.progress(), 70);
        assert_eq!(agg.sub(B).map(|s| s.done), Some(70));
    }

    #[test]
    fn events_about_other_transfers_are_ignored() {
        let mut agg = three();
        assert!(!status(&mut agg, TransferId(99), Status::Finished, None));
        assert_eq!(agg.status(), Status::Created);
        assert!(!agg.is_over());
        assert!(!Aggregate::new(0).is_over());
    }
}
