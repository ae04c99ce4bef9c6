//! The fuzz corpora, replayed without cargo-fuzz: every file of `fuzz/corpus/<target>/`
//! (seeds, inputs the fuzzer kept, and the inputs of crashes it found, once fixed) and every
//! seed of `ferry_tests::fuzz::seeds` go through the same function the fuzz target calls. A
//! failure is a parser bug or a broken invariant; its message names the inputs.
//!
//! One test per target, named after it (`cargo test -p ferry-tests --test fuzz_corpus
//! turn_client`).

use std::path::{Path, PathBuf};

use ferry_tests::fuzz::{TARGETS, seeds};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Replays `target`'s corpus and seeds; returns how many inputs ran.
fn replay(target: &str) -> usize {
    let body = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, body)| *body)
        .unwrap_or_else(|| panic!("no fuzz target {target}"));
    let corpus = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .unwrap_or_else(|e| panic!("{}: {e}", corpus.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut inputs: Vec<(String, Vec<u8>)> = files
        .into_iter()
        .map(|f| {
            let data = std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            (f.display().to_string(), data)
        })
        .collect();
    inputs.extend(
        seeds()
            .into_iter()
            .filter(|(t, _, _)| *t == target)
            .map(|(_, name, data)| (format!("seed {name}"), data)),
    );
    let broken: Vec<&str> = inputs
        .iter()
        .filter(|(_, data)| std::panic::catch_unwind(|| body(data)).is_err())
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        broken.is_empty(),
        "inputs that break an invariant: {broken:#?}"
    );
    inputs.len()
}

macro_rules! replay {
    ($($target:ident,)*) => {
        $(
            #[test]
            fn $target() {
                assert!(replay(stringify!($target)) > 0);
            }
        )*

        #[test]
        fn every_target_has_a_fuzz_target_a_corpus_and_a_replay() {
            let replayed = [$(stringify!($target)),*];
            for (name, _) in TARGETS {
                assert!(replayed.contains(name), "{name} is not replayed here");
                let source = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
                let text = std::fs::read_to_string(&source)
                    .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
                assert!(
                    text.contains(&format!("ferry_tests::fuzz::{name}(data)")),
                    "{} does not call ferry_tests::fuzz::{name}",
                    source.display()
                );
            }
            let targets = std::fs::read_dir(fuzz_dir().join("fuzz_targets"))
                .map(|d| d.count())
                .unwrap_or(0);
            assert_eq!(targets, TARGETS.len(), "a fuzz target missing from TARGETS");
            assert_eq!(replayed.len(), TARGETS.len());
        }
    };
}

replay! {
    channel_units,
    display_name,
    // SECURITY: row 98
    folder_dht,
    ice_candidate,
    ice_description,
    // SECURITY: row 101
    identity_pem,
    // SECURITY: row 128
    node,
    // SECURITY: row 137
    opendht_message,
    // SECURITY: row 93
    opendht_proxy,
    // SECURITY: row 142
    // SECURITY: row 145
    portmap_replies,
    // SECURITY: row 101
    revocation_list,
    // SECURITY: row 38
    rfc4571_deframer,
    // SECURITY: row 85
    signal_decode,
    // SECURITY: row 86
    signal_open,
    // SECURITY: row 37
    stun_decode,
    transfer_frame,
    transfer_header,
    // SECURITY: row 22
    transfer_machines,
    // SECURITY: row 146
    transfer_manifest,
    transfer_reply,
    // SECURITY: row 64
    turn_client,
    // SECURITY: row 65
    turn_server,
}
