//! Ask again (`data-transfer-request`, issue 14) on every harness: a receiving device asks
//! the sender to send a transfer again; the sender checks the request against the TLS
//! session and its records, and resends under the same id (the receiver resumes from what
//! it kept, with the prefix verified) or refuses with a code.

use ferry_driver::ClientEvent;
use ferry_proto::conversation::AskAnswer;
use ferry_proto::tls::DeviceId;
use ferry_proto::transfer::TransferId;

use super::records::{resumed_whole, send_and_cancel};
use super::{Cast, Harness, Peer, Setup, WAIT, file, offer};

/// `peer`'s request for `transfer` gets Alice's device's answer (the only device asked).
fn answer<H: Harness>(h: &mut H, cast: &Cast, peer: Peer, transfer: TransferId) -> AskAnswer {
    let alice = cast.devices[0].id();
    let (device, answer, last) = h
        .wait(peer, WAIT, |e| match e {
            ClientEvent::AskAnswered {
                transfer: t,
                device,
                answer,
                last,
            } if *t == transfer => Some((*device, answer.clone(), *last)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("{}: peer {peer} hears no answer", H::NAME));
    assert_eq!(device, Some(alice), "{}: Alice's device answers", H::NAME);
    assert!(last, "{}: Alice has one device", H::NAME);
    answer.unwrap_or_else(|why| panic!("{}: no answer: {why}", H::NAME))
}

/// Alice's send to Bob is cancelled while bytes flow; Bob's device asks Alice to send it
/// again: she resends under the same id, Bob's device accepts, resumes from what it kept
/// with the prefix verified on both sides, and gets the whole file, verified.
pub fn a_recipient_asks_again_and_resumes<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let f = file("asked.bin", 32 << 20, 31);
    let (_, sub) = send_and_cancel(&mut h, &cast, &f);
    h.ask_again(1, cast.alice.id(), sub, None);
    assert_eq!(answer(&mut h, &cast, 1, sub), AskAnswer::Resending);
    let o = offer(&mut h, &cast, 1, &f);
    assert_eq!(
        o.transfer,
        sub,
        "{}: offered again under the id asked",
        H::NAME
    );
    h.accept(1, o.transfer);
    let offset = resumed_whole(&mut h, &f, sub);
    eprintln!(
        "{}: asked again, resumed at {offset} of {}",
        H::NAME,
        f.size
    );
}

/// No offer reaches `peer` for a while (the request was refused: nothing is resent).
fn nothing_offered<H: Harness>(h: &mut H, peer: Peer) {
    let offered = h.wait(peer, std::time::Duration::from_secs(3), |e| match e {
        ClientEvent::Incoming(o) => Some(o.transfer),
        _ => None,
    });
    assert_eq!(offered, None, "{}: a refused request sent a file", H::NAME);
}

/// Carol, to whom Alice sent nothing, asks for the id of Alice's transfer to Bob: her
/// request names her own account and device (the TLS session's), so the core passes it on,
/// and Alice's records refuse it: `not_a_recipient`; nothing is sent to Carol.
pub fn a_non_recipient_is_refused<H: Harness>() {
    let cast = Cast::with_carol(1);
    let mut h: H = cast.start(&Setup::default());
    let carol: Peer = 2;
    let f = file("private.bin", 8 << 20, 32);
    let (_, sub) = send_and_cancel(&mut h, &cast, &f);
    h.ask_again(carol, cast.alice.id(), sub, None);
    assert_eq!(answer(&mut h, &cast, carol, sub), AskAnswer::NotARecipient);
    nothing_offered(&mut h, carol);
}

/// Alice's source file changes after the interrupted send: Bob's request is refused
/// `file_changed`, never answered with other bytes under the old id.
pub fn a_changed_file_is_refused<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let f = file("changed.bin", 8 << 20, 33);
    let (_, sub) = send_and_cancel(&mut h, &cast, &f);
    h.change_file(0, &f, 34);
    h.ask_again(1, cast.alice.id(), sub, None);
    assert_eq!(answer(&mut h, &cast, 1, sub), AskAnswer::FileChanged);
    nothing_offered(&mut h, 1);
}

/// Bob's device sends a request whose `deviceId` is not its own (the TLS session's): Alice's
/// core answers `device_mismatch` before any record is looked at; nothing is sent.
pub fn a_request_naming_another_device_is_refused<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let f = file("mismatch.bin", 8 << 20, 35);
    let (_, sub) = send_and_cancel(&mut h, &cast, &f);
    let other = DeviceId([0x5a; 32]);
    h.ask_again(1, cast.alice.id(), sub, Some(other));
    assert_eq!(answer(&mut h, &cast, 1, sub), AskAnswer::DeviceMismatch);
    nothing_offered(&mut h, 1);
}

/// Bob's device asks for an id Alice never sent: `unknown_transfer`.
pub fn an_unknown_id_is_refused<H: Harness>() {
    let cast = Cast::new(1);
    let mut h: H = cast.start(&Setup::default());
    let unknown = TransferId(0x00c0_ffee);
    h.ask_again(1, cast.alice.id(), unknown, None);
    assert_eq!(
        answer(&mut h, &cast, 1, unknown),
        AskAnswer::UnknownTransfer
    );
    nothing_offered(&mut h, 1);
}
