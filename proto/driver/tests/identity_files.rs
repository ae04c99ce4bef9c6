//! Identities saved as files and read back: owner-only keys, clear errors for missing and
//! corrupt files. Run with `cargo test -p ferry-driver --test identity_files`.

use ferry_driver::identity_files as files;
use ferry_proto::tls::{Account, Device, IdentityError, Validity, derive_seed};

/// 2026-11-26, the Unix time the tests' virtual clock starts at.
const T0: u64 = 1_795_651_200;

fn validity() -> Validity {
    Validity::days_from(T0 - 86_400, 365)
}

fn account(name: &str) -> Account {
    Account::from_seed(&derive_seed(b"tests", name), validity()).expect("account")
}

fn device(account: &Account, name: &str) -> Device {
    account
        .add_device(&derive_seed(b"tests", name), validity())
        .expect("device")
}

#[test]
fn identity_files_round_trip_with_owner_only_keys() {
    let dir = std::env::temp_dir().join(format!("ferry-tls-files-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let alice = account("alice");
    let a1 = device(&alice, "a1");
    files::save_account(&dir.join("account.pem"), &alice).expect("save");
    files::save_device(&dir.join("device.pem"), &a1).expect("save");
    let alice2 = files::load_account(&dir.join("account.pem")).expect("load");
    let a1b = files::load_device(&dir.join("device.pem")).expect("load");
    assert_eq!(
        (alice2.id(), alice2.certificate()),
        (alice.id(), alice.certificate())
    );
    assert_eq!(
        (a1b.id(), a1b.account(), a1b.chain()),
        (a1.id(), a1.account(), a1.chain())
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("device.pem"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A device restored from its file still signs what its account can revoke.
    let _ = alice2.revoke(&[a1b.id()], T0, 1).expect("revoke");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_identity_files_give_clear_errors() {
    let dir = std::env::temp_dir().join(format!("ferry-tls-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let missing = files::load_device(&dir.join("nope.pem"));
    assert!(
        matches!(missing, Err(files::IdentityFileError::Missing(_))),
        "{missing:?}"
    );

    let corrupt = dir.join("corrupt.pem");
    std::fs::write(
        &corrupt,
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    assert!(matches!(
        files::load_device(&corrupt),
        Err(files::IdentityFileError::Corrupt {
            source: IdentityError::Pem(_),
            ..
        })
    ));

    std::fs::remove_dir_all(&dir).ok();
}
