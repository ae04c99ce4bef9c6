//! Where ferry keeps things: the identity folder (`--home`, `FERRY_HOME`, or the platform's
//! data folder), the folder DHT (`--dht`, `FERRY_DHT`, or the platform's runtime or cache
//! folder) and the receive folder (`--into`, or the current folder).
//!
//! Settings that would otherwise be given every time (`dht`, `bootstrap`, `turn`, `into`) can be kept in
//! `config.json`: in the home when `--home` / `FERRY_HOME` names one, else in the platform's
//! configuration folder; flags and environment variables win over it.
//!
//! The identity folder holds:
//! - `account.pem`: the account's certificate and key (only on the machine that made it);
//! - `device.pem`: this device's chain and key, and its announcement signed by the account
//!   (a `FERRY ANNOUNCEMENT` PEM section, which identity readers skip);
//! - `revocations.der`: the account's latest revocation list, and `revoked.txt`, the device
//!   ids it names, one per line.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use directories::ProjectDirs;
use ferry_driver::identity_files::load_device;
use ferry_proto::signal::Announcement;
use ferry_proto::tls::{Device, Revocations};

use crate::failure::Failure;

/// The PEM tag of a device's announcement in a device file.
const ANNOUNCEMENT_TAG: &str = "FERRY ANNOUNCEMENT";

fn project() -> Option<ProjectDirs> {
    ProjectDirs::from("", "", "ferry")
}

/// The identity folder.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    dir: PathBuf,
    /// The settings file.
    config: PathBuf,
}

/// What `config.json` may hold; each is what the flag of the same name takes.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// `--dht`.
    pub(crate) dht: Option<String>,
    /// `--turn`: one URL, or a list of them.
    #[serde(default)]
    pub(crate) turn: OneOrMany,
    /// `--stun`, each as HOST:PORT.
    #[serde(default)]
    pub(crate) stun: Vec<String>,
    /// `--into`.
    pub(crate) into: Option<PathBuf>,
    /// `false` is `--no-port-mapping`; absent or `true` maps.
    pub(crate) port_mapping: Option<bool>,
    /// `--bootstrap`: one HOST:PORT, or a list of them.
    #[serde(default)]
    pub(crate) bootstrap: OneOrMany,
    /// `--dht-port`.
    pub(crate) dht_port: Option<u16>,
}

/// A setting given as one string or as a list of strings (`"turn": "turn://…"` or
/// `"turn": ["turn://…", "turn://…"]`).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    /// Not given.
    #[default]
    None,
    /// One value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    /// Every value given, in order.
    pub(crate) fn values(&self) -> Vec<&str> {
        match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(one) => vec![one.as_str()],
            OneOrMany::Many(many) => many.iter().map(String::as_str).collect(),
        }
    }
}

impl Home {
    /// `flag` (which clap fills from `FERRY_HOME` too), else the platform's data folder.
    pub(crate) fn locate(flag: Option<PathBuf>) -> Result<Home, Failure> {
        if let Some(dir) = flag {
            return Ok(Home {
                config: dir.join("config.json"),
                dir,
            });
        }
        let project = project().ok_or_else(|| {
            Failure::Usage(
                "no home folder is known for this user: give --home or FERRY_HOME".to_owned(),
            )
        })?;
        Ok(Home {
            dir: project.data_dir().to_owned(),
            config: project.config_dir().join("config.json"),
        })
    }

    /// The settings in `config.json`; none when there is no such file.
    pub(crate) fn settings(&self) -> Result<Settings, Failure> {
        let path = &self.config;
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Settings::default()),
            Err(e) => {
                return Err(Failure::Usage(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        serde_json::from_str(&text).map_err(|e| {
            Failure::Usage(format!(
                "{} is not usable: {e} (it may hold \"dht\" and \"into\", as strings, \"turn\", a string or a list of them, \"stun\", a list of HOST:PORT, \"bootstrap\", a HOST:PORT or a list of them, \"dht_port\", a number, and \"port_mapping\", true or false)",
                path.display()
            ))
        })
    }

    /// The folder itself.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the folder (owner only) if missing.
    pub(crate) fn create(&self) -> Result<(), Failure> {
        create_private_dir(&self.dir)
    }

    /// The account file.
    pub(crate) fn account(&self) -> PathBuf {
        self.dir.join("account.pem")
    }

    /// This device's file.
    pub(crate) fn device(&self) -> PathBuf {
        self.dir.join("device.pem")
    }

    /// The latest revocation list.
    pub(crate) fn revocations(&self) -> PathBuf {
        self.dir.join("revocations.der")
    }

    /// Names for account ids (see [`crate::contacts`]).
    pub(crate) fn contacts(&self) -> PathBuf {
        self.dir.join("contacts.json")
    }

    /// The devices the latest revocation list names.
    pub(crate) fn revoked(&self) -> PathBuf {
        self.dir.join("revoked.txt")
    }

    /// Holds this home for one `ferry listen` until the returned lock is dropped (at exit,
    /// however the process ends: the system releases the lock with the descriptor). A second
    /// listener on the same home would take and refuse offers meant for the first, so it
    /// stops here, naming the process that holds the home.
    pub(crate) fn lock_listener(&self) -> Result<ListenerLock, Failure> {
        let path = self.dir.join("listen.lock");
        let io =
            |e: std::io::Error| Failure::Internal(format!("cannot use {}: {e}", path.display()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = std::io::Read::read_to_string(&mut file, &mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() {
                    "another process".to_owned()
                } else {
                    format!("process {holder}")
                };
                return Err(Failure::Busy(format!(
                    "`ferry listen` already runs on this home ({who} holds {}); stop it first, or use another --home",
                    path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        std::io::Write::write_all(&mut file, format!("{}\n", std::process::id()).as_bytes())
            .map_err(io)?;
        Ok(ListenerLock { _file: file })
    }

    /// The revocation list written by `ferry device revoke`, checked against the account
    /// certificate in `device`'s chain; empty when there is none.
    pub(crate) fn load_revocations(&self, device: &Device) -> Result<Revocations, Failure> {
        let mut revocations = Revocations::new();
        let path = self.revocations();
        let der = match fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(revocations),
            Err(e) => {
                return Err(Failure::Identity(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let chain = device.chain();
        let account = chain
            .get(1)
            .ok_or_else(|| Failure::Internal("a device chain without its account".to_owned()))?;
        let list = ferry_proto::tls::RevocationList::from_der(&der, account)
            .map_err(|e| Failure::Identity(format!("{} is unusable: {e}", path.display())))?;
        revocations.add(list);
        Ok(revocations)
    }
}

/// The default folder DHT, shared by every ferry of this user on this machine whatever its
/// home: the platform's runtime folder where there is one, else its cache folder.
pub(crate) fn default_dht_folder() -> Result<PathBuf, Failure> {
    let project = project().ok_or_else(|| {
        Failure::Usage("no cache folder is known for this user: give --dht or FERRY_DHT".into())
    })?;
    let base = project
        .runtime_dir()
        .unwrap_or_else(|| project.cache_dir())
        .to_owned();
    Ok(base.join("dht"))
}

/// The default receive folder: the current folder, as croc and magic-wormhole do (`listen`
/// checks it as any receive folder, and says how to choose another when it is refused); the
/// home's `received` if there is no current folder.
pub(crate) fn default_receive_folder(home: &Home) -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| home.dir().join("received"))
}

/// A device and the announcement its account signed for it.
#[derive(Debug, Clone)]
pub(crate) struct DeviceFile {
    /// The device.
    pub(crate) device: Device,
    /// Its announcement.
    pub(crate) announcement: Vec<u8>,
}

impl DeviceFile {
    /// Reads a device file and checks that its announcement is the device's, signed by its
    /// account.
    pub(crate) fn load(path: &Path) -> Result<DeviceFile, Failure> {
        let device = load_device(path)?;
        let unusable =
            |why: &str| Failure::Identity(format!("{} is unusable: {why}", path.display()));
        let text = fs::read_to_string(path).map_err(|e| unusable(&e.to_string()))?;
        let sections = pem::parse_many(&text).map_err(|e| unusable(&e.to_string()))?;
        let announcement = sections
            .into_iter()
            .find(|s| s.tag() == ANNOUNCEMENT_TAG)
            .map(pem::Pem::into_contents)
            .ok_or_else(|| {
                unusable("it has no announcement (device files come from `ferry account new` or `ferry device add`)")
            })?;
        let checked = Announcement::verify(&announcement, &device.account(), &Revocations::new())
            .map_err(|e| unusable(&format!("its announcement does not verify: {e}")))?;
        if checked.device != device.id() {
            return Err(unusable("its announcement is another device's"));
        }
        Ok(DeviceFile {
            device,
            announcement,
        })
    }

    /// Writes the device file to `path`, readable by its owner only; never replaces a file.
    pub(crate) fn save_new(&self, path: &Path) -> Result<(), Failure> {
        let mut text = self.device.to_pem();
        text.push_str(&pem::encode(&pem::Pem::new(
            ANNOUNCEMENT_TAG,
            self.announcement.clone(),
        )));
        write_private_new(path, text.as_bytes())
    }
}

/// Creates `dir` and its parents, the last readable by its owner only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), Failure> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Failure::Usage(format!("cannot create {}: {e}", dir.display())))
}

/// Writes `bytes` to a new file at `path` (mode 0600 on Unix); fails if `path` exists.
pub(crate) fn write_private_new(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let failed =
        |e: std::io::Error| Failure::Usage(format!("cannot write {}: {e}", path.display()));
    let mut file = options.open(path).map_err(failed)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        let _ = fs::remove_file(path);
        return Err(failed(e));
    }
    Ok(())
}

/// Replaces `path` with `bytes` through a temporary file beside it and a rename.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let failed =
        |e: std::io::Error| Failure::Usage(format!("cannot write {}: {e}", path.display()));
    let _ = fs::remove_file(&tmp);
    write_private_new(&tmp, bytes)?;
    fs::rename(&tmp, path).map_err(failed)
}

/// A home held by one listener (see [`Home::lock_listener`]); released when dropped.
#[derive(Debug)]
pub(crate) struct ListenerLock {
    _file: std::fs::File,
}
