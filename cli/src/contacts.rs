//! Contacts: names for account ids, kept in the home (`contacts.json`), so that `send --to
//! bob` works, and so that a `listen` with contacts answers only them (Jami's
//! "allowPeersFromContact"): a request from any other account is refused before ICE, so a
//! stranger who knows the account id learns nothing about our addresses.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use ferry_proto::tls::AccountId;
use serde_json::json;

use crate::failure::Failure;
use crate::home::{Home, replace_file};
use crate::identity::say;

/// Longest contact name kept (names are for people, not payloads).
const MAX_NAME: usize = 64;

/// The contacts of a home: name → account.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Contacts {
    by_name: BTreeMap<String, AccountId>,
}

impl Contacts {
    /// Reads `contacts.json` from `home`; none when the file is missing.
    pub(crate) fn load(home: &Home) -> Result<Contacts, Failure> {
        let path = home.contacts();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contacts::default()),
            Err(e) => {
                return Err(Failure::Usage(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let bad = |why: String| {
            Failure::Usage(format!("{} is not a contact list: {why}", path.display()))
        };
        let raw: BTreeMap<String, String> =
            serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let mut by_name = BTreeMap::new();
        for (name, id) in raw {
            let account = id.parse().map_err(|e| bad(format!("{name}: {e}")))?;
            by_name.insert(name, account);
        }
        Ok(Contacts { by_name })
    }

    fn save(&self, path: &Path) -> Result<(), Failure> {
        let raw: BTreeMap<&String, String> = self
            .by_name
            .iter()
            .map(|(n, a)| (n, a.to_string()))
            .collect();
        let text = serde_json::to_string_pretty(&raw)
            .map_err(|e| Failure::Internal(format!("cannot write the contacts: {e}")))?;
        replace_file(path, format!("{text}\n").as_bytes())
    }

    /// Whether there are any.
    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every contact's account.
    pub(crate) fn accounts(&self) -> BTreeSet<AccountId> {
        self.by_name.values().copied().collect()
    }

    /// The account `who` names: a contact's name, or an account id.
    pub(crate) fn resolve(&self, who: &str) -> Result<AccountId, Failure> {
        let who = who.trim();
        if let Some(account) = self.by_name.get(who) {
            return Ok(*account);
        }
        who.parse().map_err(|_| {
            Failure::Usage(format!(
                "{who:?} is not an account id (40 hex digits) nor a contact's name (`ferry contact list`)"
            ))
        })
    }
}

/// `ferry contact add NAME ACCOUNT_ID`.
pub(crate) fn add(home: &Home, name: &str, id: &str, json_mode: bool) -> Result<(), Failure> {
    let name = name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(Failure::Usage(format!(
            "a contact name is 1 to {MAX_NAME} bytes of printable text: {name:?}"
        )));
    }
    let account: AccountId = id.trim().parse().map_err(|_| {
        Failure::Usage(format!(
            "{id:?} is not an account id (40 hex digits, as `ferry account show` prints it)"
        ))
    })?;
    home.create()?;
    let mut contacts = Contacts::load(home)?;
    if let Some(old) = contacts.by_name.get(name).filter(|a| **a != account) {
        return Err(Failure::Usage(format!(
            "{name:?} is already the contact {old}; `ferry contact remove {name}` first"
        )));
    }
    contacts.by_name.insert(name.to_owned(), account);
    contacts.save(&home.contacts())?;
    say(
        json_mode,
        json!({"event": "contact", "name": name, "account": account.to_string()}),
        &format!("{name} is account {account}"),
    );
    Ok(())
}

/// `ferry contact remove NAME`.
pub(crate) fn remove(home: &Home, name: &str, json_mode: bool) -> Result<(), Failure> {
    let mut contacts = Contacts::load(home)?;
    if contacts.by_name.remove(name.trim()).is_none() {
        return Err(Failure::Usage(format!("no contact called {name:?}")));
    }
    contacts.save(&home.contacts())?;
    say(
        json_mode,
        json!({"event": "contact_removed", "name": name.trim()}),
        &format!("{} removed", name.trim()),
    );
    Ok(())
}

/// `ferry contact list`.
pub(crate) fn list(home: &Home, json_mode: bool) -> Result<(), Failure> {
    let contacts = Contacts::load(home)?;
    for (name, account) in &contacts.by_name {
        say(
            json_mode,
            json!({"event": "contact", "name": name, "account": account.to_string()}),
            &format!("{name}\t{account}"),
        );
    }
    Ok(())
}
