//! Scenarios of issue 14 (records) on every harness: partial data kept apart by (sender account,
//! transfer id), and a send taken up again under its earlier ids resuming from what the
//! receiver kept.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_driver::ClientEvent;
use ferry_proto::transfer::{Reason, Status, TransferId};

use super::{Cast, Harness, Setup, TestFile, WAIT, ended, file, group_ended, offer, reaching};

/// How long the resume scenario lets a cancelled channel close (it takes a round trip): a
/// pause, not a bound on anything.
const SETTLE: Duration = Duration::from_secs(3);

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

/// Alice sends `f` to Bob's device and cancels while bytes flow: Bob's device keeps what
/// arrived, under (Alice's account, the sub-transfer's id). Returns the group and that id,
/// once the cancelled channel has had time to close.
pub(super) fn send_and_cancel<H: Harness>(
    h: &mut H,
    cast: &Cast,
    f: &super::TestFile,
) -> (TransferId, TransferId) {
    let group = h.send_file(0, cast.bob.id(), f);
    let sub = reaching(h, group, cast.devices[1].id());
    let o = offer(h, cast, 1, f);
    assert_eq!(o.transfer, sub, "the receiver sees the sender's id");
    h.accept(1, o.transfer);
    h.wait(1, WAIT, |e| match e {
        ClientEvent::Progress { transfer, done, .. } if *transfer == sub && *done > 0 => Some(()),
        _ => None,
    })
    .unwrap_or_else(|| panic!("{}: no byte arrives", H::NAME));
    h.cancel(0, group);
    let (status, reason) = ended(h, 1, sub);
    assert_eq!(status, Status::ClosedByPeer, "{reason:?}");
    assert!(
        matches!(reason, Some(Reason::PeerCancelled(_))),
        "{reason:?}"
    );
    assert_eq!(
        ended(h, 0, sub),
        (Status::ClosedByHost, Some(Reason::Cancelled))
    );
    assert_eq!(group_ended(h, group), Status::ClosedByHost);
    // The cancelled channel closes (a round trip) before its id can name a new one; a
    // `send` run again comes from a new process, long after. Nothing is awaited here.
    let _ = h.wait(0, SETTLE, |_| None::<()>);
    (group, sub)
}

/// Sends `f` again under `group` and `sub` (as `send` taking up an unfinished record does)
/// and has Bob's device accept it.
fn send_again<H: Harness>(
    h: &mut H,
    cast: &Cast,
    f: &super::TestFile,
    group: TransferId,
    sub: TransferId,
) {
    let devices = BTreeMap::from([(cast.devices[1].id(), sub)]);
    let again = h.send_file_again(0, cast.bob.id(), f, group, devices);
    assert_eq!(again, group, "the group's id is used again");
    assert_eq!(reaching(h, group, cast.devices[1].id()), sub);
    let o = offer(h, cast, 1, f);
    assert_eq!(o.transfer, sub, "offered again under the same id");
    h.accept(1, o.transfer);
}

/// Sub-transfer `sub` of `f`, sent again from device 0 to device 1, resumed past 0 with the
/// receiver's prefix verified, the sender agreeing; both ends finished and the file received
/// is the one sent. Where it resumed.
pub(super) fn resumed_whole<H: Harness>(h: &mut H, f: &TestFile, sub: TransferId) -> u64 {
    let (offset, verified) = start_of(h, 1, sub).expect("a resume, not a restart");
    assert!(offset > 0, "{}: the send again started at 0", H::NAME);
    assert!(verified, "{}: the receiver's prefix was verified", H::NAME);
    assert_eq!(start_of(h, 0, sub), Ok((offset, true)), "the sender agrees");
    assert_eq!(ended(h, 1, sub), (Status::Finished, None));
    assert_eq!(ended(h, 0, sub), (Status::Finished, None));
    assert_eq!(
        h.received(1, &f.name),
        Some((f.size, f.digest())),
        "{}: the file resumed is the one sent",
        H::NAME
    );
    offset
}

/// What `peer` says about where `transfer` starts: `Ok((offset, verified))` for a resume,
/// `Err(held)` for a restart at 0.
pub(super) fn start_of<H: Harness>(
    h: &mut H,
    peer: usize,
    transfer: TransferId,
) -> Result<(u64, bool), u64> {
    h.wait(peer, WAIT, |e| match e {
        ClientEvent::Resuming {
            transfer: t,
            offset,
            verified,
            ..
        } if *t == transfer => Some(Ok((*offset, *verified))),
        ClientEvent::Restarted {
            transfer: t, held, ..
        } if *t == transfer => Some(Err(*held)),
        _ => None,
    })
    .unwrap_or_else(|| {
        panic!(
            "{}: peer {peer} said neither resuming nor restarted",
            H::NAME
        )
    })
}

/// Alice's send is cancelled while bytes flow; Bob's device keeps what arrived, under
/// (Alice's account, the sub-transfer's id). Alice sends the same file again under the
/// same ids: Bob's device is offered the same id, its `GO n <digest>` matches Alice's first
/// `n` bytes, both sides say "resuming (prefix verified)", and the whole file is verified.
pub fn a_send_taken_up_again_resumes_from_what_was_kept<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let f = file("resumed.bin", 64 << 20, 23);
    let (group, sub) = send_and_cancel(&mut h, &cast, &f);
    send_again(&mut h, &cast, &f, group, sub);
    let offset = resumed_whole(&mut h, &f, sub);
    eprintln!("{}: resumed at {offset} of {} bytes", H::NAME, f.size);
}

/// Bob's device holds bytes under (Alice's account, the id) that are not the start of the
/// file sent again under that id (another file of the same name and size): Alice's check of
/// Bob's `GO n <digest>` fails, she sends RESTART, Bob's device empties what it held, and
/// the new file arrives whole and verified: a fresh start, never a digest mismatch.
pub fn a_stale_partial_under_the_same_key_starts_again<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let old = file("stale.bin", 16 << 20, 24);
    let new = file("stale.bin", 16 << 20, 25);
    let (group, sub) = send_and_cancel(&mut h, &cast, &old);
    send_again(&mut h, &cast, &new, group, sub);
    let held = start_of(&mut h, 1, sub).expect_err("a restart, not a resume");
    assert!(held > 0, "{}: Bob held nothing", H::NAME);
    assert_eq!(start_of(&mut h, 0, sub), Err(held), "the sender agrees");
    assert_eq!(ended(&mut h, 1, sub), (Status::Finished, None));
    assert_eq!(ended(&mut h, 0, sub), (Status::Finished, None));
    assert_eq!(
        h.received(1, &new.name),
        Some((new.size, new.digest())),
        "{}: the file is the new one, whole",
        H::NAME
    );
    eprintln!("{}: restarted over {held} stale bytes", H::NAME);
}
