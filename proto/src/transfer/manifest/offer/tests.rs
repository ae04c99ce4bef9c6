use std::time::{Duration, Instant};

use super::super::{Entry, EntryKind, RelPath};
use super::*;

fn manifest() -> Manifest {
    let entry = |path: &str, kind| Entry {
        path: RelPath::parse(path).expect("a good path"),
        kind,
    };
    Manifest::new(vec![
        entry("trip", EntryKind::Folder),
        entry(
            "trip/a.txt",
            EntryKind::File {
                id: TransferId(42),
                size: 5,
            },
        ),
        entry("trip/empty", EntryKind::Folder),
    ])
    .expect("a good manifest")
}

fn drain_offer(m: &mut ManifestOffer) -> Vec<ChannelOutput> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

fn drain_intake(m: &mut ManifestIntake) -> Vec<ChannelOutput> {
    std::iter::from_fn(|| m.poll_output()).collect()
}

/// Every byte the offer sent, in one piece.
fn sent(outputs: &[ChannelOutput]) -> Vec<u8> {
    outputs
        .iter()
        .filter_map(|o| match o {
            ChannelOutput::Send(b) => Some(b.to_vec()),
            ChannelOutput::Close => None,
        })
        .flatten()
        .collect()
}

#[test]
fn an_accepted_manifest_hands_its_claims_over_and_the_sender_ends_the_channel_after_its_files() {
    let now = Instant::now();
    let mut offer = ManifestOffer::new(TransferId(7), &manifest());
    assert!(
        drain_offer(&mut offer).is_empty(),
        "nothing before the channel"
    );
    offer.opened(now);
    let bytes = sent(&drain_offer(&mut offer));
    assert_eq!(bytes, manifest().encode().to_vec());

    let mut intake = ManifestIntake::new(now, TransferId(7));
    // Split at every byte: the offer shows once, when the last byte comes.
    let shown: Vec<bool> = bytes.iter().map(|b| intake.received(now, &[*b])).collect();
    assert_eq!(shown.iter().filter(|s| **s).count(), 1);
    assert_eq!(shown.last(), Some(&true));
    assert_eq!(intake.state(), &IntakeState::WaitDecision);
    let shown = intake.manifest().expect("read");
    assert_eq!(
        (shown.file_count(), shown.total_size()),
        (1, 5),
        "what the offer shows"
    );
    assert_eq!(shown.top_names(3), vec!["trip"]);

    let mut claims = intake.accept().expect("accepted");
    assert!(intake.accept().is_none(), "accepted once");
    assert!(!intake.refuse(), "no NGO after GO");
    let answer = sent(&drain_intake(&mut intake));
    assert_eq!(answer, b"GO\n");
    assert!(claims.claim(TransferId(42), 5).is_ok());
    assert!(claims.all_claimed());

    for b in &answer {
        offer.received(&[*b]);
    }
    assert_eq!(offer.state(), &OfferState::Accepted);
    assert_eq!(offer.poll_timeout(), None, "no deadline once answered");
    offer.finish();
    assert_eq!(drain_offer(&mut offer), vec![ChannelOutput::Close]);
    assert!(offer.state().is_final());
    intake.ended();
    assert_eq!(intake.state(), &IntakeState::Ended);
    assert_eq!(drain_intake(&mut intake), vec![ChannelOutput::Close]);
}

#[test]
fn a_refused_manifest_ends_the_offer_and_sends_nothing_more() {
    let now = Instant::now();
    let mut offer = ManifestOffer::new(TransferId(7), &manifest());
    offer.opened(now);
    let bytes = sent(&drain_offer(&mut offer));
    let mut intake = ManifestIntake::new(now, TransferId(7));
    assert!(intake.received(now, &bytes));
    assert!(intake.refuse());
    assert_eq!(intake.state(), &IntakeState::Refused(Refusal::ByUser));
    let out = drain_intake(&mut intake);
    assert_eq!(sent(&out), b"NGO\n");
    assert_eq!(out.last(), Some(&ChannelOutput::Close));
    offer.received(b"NGO\n");
    assert_eq!(offer.state(), &OfferState::Refused);
    assert_eq!(drain_offer(&mut offer), vec![ChannelOutput::Close]);
    offer.finish();
    assert!(
        drain_offer(&mut offer).is_empty(),
        "a refused offer has no files"
    );
    // The sender's end after NGO changes nothing on the receiver's side.
    intake.ended();
    assert_eq!(intake.state(), &IntakeState::Refused(Refusal::ByUser));
    assert!(drain_intake(&mut intake).is_empty());
}

#[test]
fn a_manifest_that_breaks_a_rule_is_answered_ngo_without_asking() {
    let now = Instant::now();
    let json = br#"{"entries":[{"path":"../x","kind":"folder"}]}"#;
    let mut bytes = format!("FERRY-MANIFEST 1 {}\n", json.len()).into_bytes();
    bytes.extend_from_slice(json);
    let mut intake = ManifestIntake::new(now, TransferId(7));
    assert!(!intake.received(now, &bytes));
    assert!(matches!(
        intake.state(),
        IntakeState::Refused(Refusal::Invalid(ManifestError::DotComponent(_)))
    ));
    assert!(intake.manifest().is_none());
    assert_eq!(sent(&drain_intake(&mut intake)), b"NGO\n");
    assert!(intake.accept().is_none(), "nothing to accept");

    // Bytes after a good manifest, before the answer: refused too.
    let mut intake = ManifestIntake::new(now, TransferId(7));
    let mut bytes = manifest().encode().to_vec();
    bytes.push(b'x');
    intake.received(now, &bytes);
    assert!(matches!(
        intake.state(),
        IntakeState::Refused(Refusal::Invalid(ManifestError::TrailingBytes))
    ));
}

#[test]
fn no_manifest_or_no_decision_in_time_is_answered_ngo() {
    let now = Instant::now();
    let mut intake = ManifestIntake::new(now, TransferId(7));
    let deadline = intake.poll_timeout().expect("the manifest's deadline");
    assert_eq!(deadline, now + HEADER_TIMEOUT);
    intake.handle_timeout(deadline - Duration::from_millis(1));
    assert_eq!(intake.state(), &IntakeState::Reading);
    intake.handle_timeout(deadline);
    assert_eq!(intake.state(), &IntakeState::Refused(Refusal::TimedOut));
    assert_eq!(sent(&drain_intake(&mut intake)), b"NGO\n");

    let mut intake = ManifestIntake::new(now, TransferId(7));
    assert!(intake.received(now, &manifest().encode()));
    assert_eq!(intake.poll_timeout(), Some(now + DECISION_TIMEOUT));
    intake.handle_timeout(now + DECISION_TIMEOUT);
    assert_eq!(intake.state(), &IntakeState::Refused(Refusal::TimedOut));
}

#[test]
fn the_sender_gives_up_on_no_answer_a_bad_answer_or_an_early_end() {
    let now = Instant::now();
    let open = || {
        let mut o = ManifestOffer::new(TransferId(7), &manifest());
        o.opened(now);
        drain_offer(&mut o);
        o
    };
    let mut o = open();
    o.handle_timeout(now + DECISION_TIMEOUT);
    assert!(matches!(o.state(), OfferState::Failed(_)));
    assert_eq!(drain_offer(&mut o), vec![ChannelOutput::Close]);

    for answer in [&b"GO 0\n"[..], b"MAYBE\n", b"GO\nextra"] {
        let mut o = open();
        o.received(answer);
        assert!(
            matches!(o.state(), OfferState::Failed(_)),
            "{:?}",
            String::from_utf8_lossy(answer)
        );
        o.finish();
        assert_eq!(
            drain_offer(&mut o),
            vec![ChannelOutput::Close],
            "closed once"
        );
    }

    let mut o = open();
    o.ended();
    assert!(matches!(o.state(), OfferState::Failed(_)));
    let mut o = open();
    o.received(b"GO\n");
    o.ended();
    assert_eq!(
        o.state(),
        &OfferState::Accepted,
        "files have their own channels"
    );
    o.received(b"x");
    assert!(matches!(o.state(), OfferState::Failed(_)));
}
