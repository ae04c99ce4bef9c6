//! `ferry account new|show` and `ferry device add|import|revoke`.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_driver::identity_files::{load_account, save_account};
use ferry_proto::tls::{Account, DeviceId, Validity};
use serde_json::json;

use crate::failure::Failure;
use crate::home::{DeviceFile, Home, replace_file};

/// How long certificates made here are valid.
const VALID_DAYS: u64 = 10 * 365;

/// Prints a result: one JSON object with `--json`, else lines for a person.
pub(crate) fn say(json_mode: bool, value: serde_json::Value, human: &str) {
    if json_mode {
        println!("{value}");
    } else {
        println!("{human}");
    }
}

pub(crate) fn random_seed() -> Result<[u8; 32], Failure> {
    let mut s = [0u8; 32];
    getrandom::fill(&mut s)
        .map_err(|e| Failure::Internal(format!("no randomness from the system: {e}")))?;
    Ok(s)
}

pub(crate) fn unix_now() -> Result<u64, Failure> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Failure::Internal("the clock is before 1970".to_owned()))
}

fn validity() -> Result<Validity, Failure> {
    // An hour back, for clocks a little behind ours.
    Ok(Validity::days_from(
        unix_now()?.saturating_sub(3600),
        VALID_DAYS,
    ))
}

fn new_device_file(account: &Account) -> Result<DeviceFile, Failure> {
    let device = account
        .add_device(&random_seed()?, validity()?)
        .map_err(|e| Failure::Internal(format!("cannot make a device certificate: {e}")))?;
    let announcement = account
        .announce(&device)
        .map_err(|e| Failure::Internal(format!("cannot sign the announcement: {e}")))?;
    Ok(DeviceFile {
        device,
        announcement,
    })
}

fn refuse_existing(home: &Home) -> Result<(), Failure> {
    for path in [home.account(), home.device()] {
        if path.exists() {
            return Err(Failure::Usage(format!(
                "{} already exists: this home has an identity (use another --home or \
                 FERRY_HOME, or remove it first)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// `ferry account new`.
pub(crate) fn account_new(home: &Home, json_mode: bool) -> Result<(), Failure> {
    refuse_existing(home)?;
    home.create()?;
    let account = Account::from_seed(&random_seed()?, validity()?)
        .map_err(|e| Failure::Internal(format!("cannot make the account: {e}")))?;
    let device = new_device_file(&account)?;
    save_account(&home.account(), &account)?;
    device.save_new(&home.device())?;
    tracing::info!(home = %home.dir().display(), "account created");
    say(
        json_mode,
        json!({
            "event": "account_created",
            "account": account.id().to_string(),
            "device": device.device.id().to_string(),
            "home": home.dir(),
        }),
        &format!(
            "Created account {account}\n\
             with this machine as its first device {device}\n\
             in {home}. Give the account id to your contacts: they send with\n  \
             ferry send FILE --to {account}",
            account = account.id(),
            device = device.device.id(),
            home = home.dir().display()
        ),
    );
    Ok(())
}

/// `ferry account show`.
pub(crate) fn account_show(home: &Home, json_mode: bool) -> Result<(), Failure> {
    let device = DeviceFile::load(&home.device())?.device;
    let holds_key = home.account().exists();
    say(
        json_mode,
        json!({
            "event": "account",
            "account": device.account().to_string(),
            "device": device.id().to_string(),
            "account_key_here": holds_key,
            "home": home.dir(),
        }),
        &format!(
            "account {}\ndevice  {}\n{}",
            device.account(),
            device.id(),
            if holds_key {
                "this machine holds the account key (it can add and revoke devices)"
            } else {
                "the account key is on another machine"
            }
        ),
    );
    Ok(())
}

/// `ferry device add`: a device file for another machine of this account.
pub(crate) fn device_add(
    home: &Home,
    out: Option<PathBuf>,
    json_mode: bool,
) -> Result<(), Failure> {
    let account = load_account(&home.account())?;
    let device = new_device_file(&account)?;
    let id = device.device.id();
    let out =
        out.unwrap_or_else(|| PathBuf::from(format!("ferry-device-{}.pem", &id.to_string()[..12])));
    device.save_new(&out)?;
    say(
        json_mode,
        json!({
            "event": "device_added",
            "account": account.id().to_string(),
            "device": id.to_string(),
            "file": out,
        }),
        &format!(
            "Issued device {id} of account {account}\n\
             in {file} (it holds the device's private key: copy it privately).\n\
             On the other machine: ferry device import {file}",
            account = account.id(),
            file = out.display()
        ),
    );
    Ok(())
}

/// `ferry device import FILE`: makes this machine the device of a file from `device add`.
pub(crate) fn device_import(home: &Home, file: &Path, json_mode: bool) -> Result<(), Failure> {
    let device = DeviceFile::load(file)?;
    if home.device().exists() {
        return Err(Failure::Usage(format!(
            "{} already exists: this home already is a device",
            home.device().display()
        )));
    }
    home.create()?;
    device.save_new(&home.device())?;
    say(
        json_mode,
        json!({
            "event": "device_imported",
            "account": device.device.account().to_string(),
            "device": device.device.id().to_string(),
            "home": home.dir(),
        }),
        &format!(
            "This machine is now device {} of account {}",
            device.device.id(),
            device.device.account()
        ),
    );
    Ok(())
}

/// `ferry device revoke ID`: a new revocation list naming `id` and every device revoked
/// before, numbered one past the last.
pub(crate) fn device_revoke(home: &Home, id: &str, json_mode: bool) -> Result<(), Failure> {
    let id: DeviceId = id
        .parse()
        .map_err(|e| Failure::Usage(format!("{id:?} is not a device id: {e}")))?;
    let account = load_account(&home.account())?;
    let mut revoked: Vec<DeviceId> = match fs::read_to_string(home.revoked()) {
        Ok(text) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                l.trim().parse().map_err(|e| {
                    Failure::Identity(format!("{} is unusable: {e}", home.revoked().display()))
                })
            })
            .collect::<Result<_, _>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            return Err(Failure::Identity(format!(
                "cannot read {}: {e}",
                home.revoked().display()
            )));
        }
    };
    if !revoked.contains(&id) {
        revoked.push(id);
    }
    let number = match fs::read(home.revocations()) {
        Ok(der) => ferry_proto::tls::RevocationList::from_der(&der, account.certificate())
            .map_err(|e| {
                Failure::Identity(format!("{} is unusable: {e}", home.revocations().display()))
            })?
            .number()
            .saturating_add(1),
        Err(_) => 1,
    };
    let list = account
        .revoke(&revoked, unix_now()?, number)
        .map_err(|e| Failure::Internal(format!("cannot sign the revocation list: {e}")))?;
    let mut text = String::new();
    for d in &revoked {
        text.push_str(&d.to_string());
        text.push('\n');
    }
    replace_file(&home.revoked(), text.as_bytes())?;
    replace_file(&home.revocations(), list.der())?;
    say(
        json_mode,
        json!({
            "event": "device_revoked",
            "account": account.id().to_string(),
            "device": id.to_string(),
            "list_number": number,
            "file": home.revocations(),
        }),
        &format!(
            "Revoked device {id}: revocation list number {number} in {}.\n\
             Devices using this home refuse it from now on.",
            home.revocations().display()
        ),
    );
    Ok(())
}
