//! Scenarios of issue 14 (records) on every harness: partial data kept apart by (sender account,
//! transfer id), and a send taken up again under its earlier ids resuming from what the
//! receiver kept.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_driver::ClientEvent;
use ferry_proto::transfer::{Reason, Status, TransferId};

use super::{Cast, Harness, Setup, WAIT, ended, file, group_ended, offer, reaching};

/// How long the resume scenario lets a cancelled channel close (it takes a round trip): a
/// pause, not a bound on anything.
const SETTLE: Duration = Duration::from_secs(3);

/// Waits for the first progress Bob's device (peer 1) reports for `transfer`: where it
/// starts.
fn first_progress<H: Harness>(h: &mut H, transfer: TransferId) -> u64 {
    h.wait(1, WAIT, |e| match e {
        ClientEvent::Progress {
            transfer: t, done, ..
        } if *t == transfer => Some(*done),
        _ => None,
    })
    .unwrap_or_else(|| panic!("{}: no progress for {transfer:?}", H::NAME))
}

/// Two sends of files with one name, at once, to one device: each writes its own partial
/// data (keyed by its id, not by the name), both are verified, and the two stored files
/// are the two sent.
pub fn two_sends_of_one_name_never_touch_each_others_data<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let files = [
        file("same.bin", (2 << 20) + 11, 21),
        file("same.bin", (3 << 20) + 7, 22),
    ];
    for f in &files {
        let _ = h.send_file(0, cast.bob.id(), f);
    }
    let mut offered = Vec::new();
    while offered.len() < 2 {
        let o = h
            .wait(1, WAIT, |e| match e {
                ClientEvent::Incoming(o) => Some(o.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{}: offered {} of 2", H::NAME, offered.len()));
        assert_eq!(o.name, "same.bin");
        offered.push(o.transfer);
    }
    for t in &offered {
        h.accept(1, *t);
    }
    for t in &offered {
        assert_eq!(ended(&mut h, 1, *t), (Status::Finished, None));
    }
    // The second name: `same (1).bin` on real files, `same.bin (1)` on the simulator's.
    let other = h
        .received(1, "same (1).bin")
        .or_else(|| h.received(1, "same.bin (1)"));
    let stored = [h.received(1, "same.bin"), other];
    let sent = files.map(|f| Some((f.size, f.digest())));
    let swapped = [sent[1], sent[0]];
    assert!(
        stored == sent || stored == swapped,
        "{}: each stored file is one sent: {stored:?}",
        H::NAME
    );
}

/// Alice's send is cancelled while bytes flow; Bob's device keeps what arrived, under
/// (Alice's account, the sub-transfer's id). Alice sends the same file again under the
/// same ids: Bob's device is offered the same id, starts past what it kept, and verifies
/// the whole file.
pub fn a_send_taken_up_again_resumes_from_what_was_kept<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let f = file("resumed.bin", 64 << 20, 23);
    let group = h.send_file(0, cast.bob.id(), &f);
    let sub = reaching(&mut h, group, cast.devices[1].id());
    let o = offer(&mut h, &cast, 1, &f);
    assert_eq!(o.transfer, sub, "the receiver sees the sender's id");
    h.accept(1, o.transfer);
    h.wait(1, WAIT, |e| match e {
        ClientEvent::Progress { transfer, done, .. } if *transfer == sub && *done > 0 => Some(()),
        _ => None,
    })
    .unwrap_or_else(|| panic!("{}: no byte arrives", H::NAME));
    h.cancel(0, group);
    let (status, reason) = ended(&mut h, 1, sub);
    assert_eq!(status, Status::ClosedByPeer, "{reason:?}");
    assert!(
        matches!(reason, Some(Reason::PeerCancelled(_))),
        "{reason:?}"
    );
    assert_eq!(
        ended(&mut h, 0, sub),
        (Status::ClosedByHost, Some(Reason::Cancelled))
    );
    assert_eq!(group_ended(&mut h, group), Status::ClosedByHost);
    // The cancelled channel closes (a round trip) before its id can name a new one; a
    // `send` run again comes from a new process, long after. Nothing is awaited here.
    let _ = h.wait(0, SETTLE, |_| None::<()>);

    let devices = BTreeMap::from([(cast.devices[1].id(), sub)]);
    let again = h.send_file_again(0, cast.bob.id(), &f, group, devices);
    assert_eq!(again, group, "the group's id is used again");
    assert_eq!(reaching(&mut h, group, cast.devices[1].id()), sub);
    let o = offer(&mut h, &cast, 1, &f);
    assert_eq!(o.transfer, sub, "offered again under the same id");
    h.accept(1, o.transfer);
    let start = first_progress(&mut h, sub);
    assert!(start > 0, "{}: the second send started at 0", H::NAME);
    assert_eq!(ended(&mut h, 1, sub), (Status::Finished, None));
    assert_eq!(ended(&mut h, 0, sub), (Status::Finished, None));
    assert_eq!(
        h.received(1, &f.name),
        Some((f.size, f.digest())),
        "{}: the resumed file is the one sent",
        H::NAME
    );
    eprintln!("{}: resumed at {start} of {} bytes", H::NAME, f.size);
}
