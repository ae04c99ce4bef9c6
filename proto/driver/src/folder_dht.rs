//! A DHT in a folder: nodes in different processes of one machine (or of machines that share
//! a folder) find each other with no server to start.
//!
//! It keeps OpenDHT's shape where a core can see it, like the in-process
//! [`DhtStore`](super::DhtStore): values are bytes under 20-byte keys, a key holds several
//! values, a value larger than [`MAX_VALUE_SIZE`] is refused, storing the same bytes twice
//! stores them once, and a listener gets every value stored under its key, first those already
//! there, then each new one. Like OpenDHT, and unlike the in-process store, values expire: one
//! not stored again within its time to live ([`DEFAULT_TTL`], OpenDHT's ten minutes) is no
//! longer delivered and is removed by the next put under its key, so the folder does not
//! grow without bound and a process that ended long ago is not offered to anyone. Like
//! OpenDHT's permanent puts, a client keeps the values it put alive while it runs (it
//! refreshes them every half time to live, the last [`MAX_KEPT`]), so a node that announced
//! itself once stays findable for as long as its process lives.
//!
//! # Layout
//! `<folder>/<40 hex digits of the key>/<32 hex digits>`: one file per value, named by the
//! first 16 bytes of the value's SHA-256, holding the value's bytes. A put writes a hidden
//! temporary file beside it, then renames it, so a reader never sees half a value; storing the
//! same bytes again only refreshes the file's modification time, which is the value's age.
//! Hidden files (a leading `.`) are never values. The folder and its key folders are made
//! readable by their owner only.
//!
//! # What the folder may hold that it should not
//! The folder is shared by every process of one user, and its parent is often a world-writable
//! place (`/tmp`, a runtime folder). Another user could make the folder first, or plant
//! entries in it; a crashed writer could leave anything. So:
//! - the folder and every key folder must be real folders (not symlinks) owned by this user;
//!   a folder of ours with wider permissions is made private again, one of another user's is
//!   refused;
//! - only files named like values (32 lowercase hex digits) are read, each opened without
//!   following a symlink and without blocking (`O_NOFOLLOW | O_NONBLOCK`: a planted FIFO or a
//!   symlink to `/dev/zero` cannot hang or flood the reader), and only if it is a regular
//!   file of this user no larger than [`MAX_VALUE_SIZE`], checked before reading; at most that
//!   many bytes are ever read, and the bytes must hash to the file's name;
//! - an entry skipped for any of these reasons is remembered with its inode, size and age,
//!   and not looked at again until one of them changes, so a 200 MB file costs one `stat`
//!   per poll, not a read.
//!
//! # Threads
//! Each [`FolderClient`] has one thread that does its puts, polls the key folders it listens
//! to every [`POLL_INTERVAL`] (a handful of directory reads; no file is read twice) and
//! refreshes its values; with nothing to do, it sleeps until asked.
//! Answers come back as [`Input`]s through the callback the client was made with, from that
//! thread. Dropping the client ends the thread.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use sha2::Digest as _;

use super::dht::{MAX_VALUE_SIZE, MAX_VALUES_PER_KEY};
use ferry_proto::io::{DhtKey, Input};

/// How long a value lives unless stored again (OpenDHT's default).
pub const DEFAULT_TTL: Duration = Duration::from_secs(10 * 60);
/// How often a listening client looks for new values.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Most values a client keeps alive; past it, the oldest put is left to expire.
pub const MAX_KEPT: usize = 1024;

enum Command {
    Put(DhtKey, Bytes),
    Listen(DhtKey),
    CancelListen(DhtKey),
}

/// One driver's access to a folder DHT. Dropping it ends its listens.
pub struct FolderClient {
    folder: PathBuf,
    commands: mpsc::Sender<Command>,
    /// Set when the client is dropped: its thread delivers nothing more, even what it had
    /// already found.
    dropped: Arc<AtomicBool>,
}

impl Drop for FolderClient {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::Release);
    }
}

impl std::fmt::Debug for FolderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderClient")
            .field("folder", &self.folder)
            .finish()
    }
}

impl FolderClient {
    /// A client of the DHT in `folder` (created if missing), with [`DEFAULT_TTL`]. `deliver`
    /// runs on the client's thread.
    pub fn new(
        folder: impl Into<PathBuf>,
        deliver: impl Fn(Input) + Send + 'static,
    ) -> io::Result<FolderClient> {
        FolderClient::with_ttl(folder, DEFAULT_TTL, deliver)
    }

    /// Like [`new`](Self::new), with values living `ttl` (for tests).
    pub fn with_ttl(
        folder: impl Into<PathBuf>,
        ttl: Duration,
        deliver: impl Fn(Input) + Send + 'static,
    ) -> io::Result<FolderClient> {
        let folder = folder.into();
        create_private_dir(&folder)?;
        // Resolved once: the folder cannot be swapped for another behind a symlink later.
        let folder = fs::canonicalize(&folder)?;
        check_private_dir(&folder)?;
        let (commands, rx) = mpsc::channel();
        let dropped = Arc::new(AtomicBool::new(false));
        let gone = dropped.clone();
        let mut worker = Worker {
            folder: folder.clone(),
            ttl,
            listens: BTreeMap::new(),
            deliver: Box::new(move |input| {
                if !gone.load(Ordering::Acquire) {
                    deliver(input);
                }
            }),
            next_tmp: 0,
            kept: VecDeque::new(),
        };
        std::thread::Builder::new()
            .name("ferry-dht-folder".into())
            .spawn(move || worker.run(&rx))?;
        Ok(FolderClient {
            folder,
            commands,
            dropped,
        })
    }

    /// Stores `value` under `key`; answers [`Input::DhtPutDone`].
    pub fn put(&self, key: DhtKey, value: Bytes) {
        let _ = self.commands.send(Command::Put(key, value));
    }

    /// Delivers every live value under `key`, those stored now and those to come. Listening
    /// to a key already listened to changes nothing.
    pub fn listen(&self, key: DhtKey) {
        let _ = self.commands.send(Command::Listen(key));
    }

    /// Stops delivering values under `key`.
    pub fn cancel_listen(&self, key: DhtKey) {
        let _ = self.commands.send(Command::CancelListen(key));
    }
}

/// The client's thread.
struct Worker {
    folder: PathBuf,
    ttl: Duration,
    /// What was read of each key listened to.
    listens: BTreeMap<DhtKey, KeyFolder>,
    deliver: Box<dyn Fn(Input) + Send>,
    next_tmp: u64,
    /// The values this client put and keeps alive, oldest first: key and file name.
    kept: VecDeque<(DhtKey, String)>,
}

impl Worker {
    fn run(&mut self, commands: &mpsc::Receiver<Command>) {
        let mut next_poll = Instant::now() + POLL_INTERVAL;
        let mut next_refresh = Instant::now() + self.ttl / 2;
        loop {
            // The next thing due: a poll if anything is listened to, a refresh if anything
            // was put; with neither, sleep until asked.
            let due = [
                (!self.listens.is_empty()).then_some(next_poll),
                (!self.kept.is_empty()).then_some(next_refresh),
            ]
            .into_iter()
            .flatten()
            .min();
            let received = match due {
                Some(at) => commands.recv_timeout(at.saturating_duration_since(Instant::now())),
                None => commands
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(Command::Put(key, value)) => {
                    let ok = self.put(key, &value).is_ok();
                    (self.deliver)(Input::DhtPutDone { key, ok });
                }
                Ok(Command::Listen(key)) => {
                    if let std::collections::btree_map::Entry::Vacant(slot) =
                        self.listens.entry(key)
                    {
                        slot.insert(KeyFolder::default());
                        self.scan(key);
                    }
                }
                Ok(Command::CancelListen(key)) => {
                    self.listens.remove(&key);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next_poll {
                let keys: Vec<DhtKey> = self.listens.keys().copied().collect();
                for key in keys {
                    self.scan(key);
                }
                next_poll = now + POLL_INTERVAL;
            }
            if now >= next_refresh {
                self.refresh();
                next_refresh = now + self.ttl / 2;
            }
        }
    }

    /// Makes the values this client put young again; those gone (pushed out by newer values
    /// of their key) are forgotten.
    fn refresh(&mut self) {
        let now = SystemTime::now();
        let folder = self.folder.clone();
        self.kept.retain(|(key, name)| {
            let path = folder.join(hex::encode(key.0)).join(name);
            open_entry(&path, true)
                .and_then(|f| {
                    if f.metadata()?.is_file() {
                        f.set_modified(now)
                    } else {
                        Err(io::ErrorKind::InvalidData.into())
                    }
                })
                .is_ok()
        });
    }

    fn key_dir(&self, key: DhtKey) -> PathBuf {
        self.folder.join(hex::encode(key.0))
    }

    fn put(&mut self, key: DhtKey, value: &[u8]) -> io::Result<()> {
        if value.len() > MAX_VALUE_SIZE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "value too large",
            ));
        }
        let dir = self.key_dir(key);
        create_private_dir(&dir)?;
        check_private_dir(&dir)?;
        let name = value_name(value);
        let path = dir.join(&name);
        // The same bytes again: only their age changes. Anything else under that name (a
        // planted FIFO, a symlink, other bytes) is replaced by the value.
        let refreshed = match read_value(&path, &name) {
            Ok(held) if held == value => open_entry(&path, true)
                .and_then(|f| f.set_modified(SystemTime::now()))
                .is_ok(),
            _ => false,
        };
        if !refreshed {
            self.next_tmp += 1;
            let tmp = dir.join(format!(".{name}.{}.{}", std::process::id(), self.next_tmp));
            if let Err(e) = fs::write(&tmp, value).and_then(|()| fs::rename(&tmp, &path)) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
        self.prune(&dir);
        let entry = (key, name);
        if !self.kept.contains(&entry) {
            if self.kept.len() == MAX_KEPT {
                self.kept.pop_front();
            }
            self.kept.push_back(entry);
        }
        Ok(())
    }

    /// Removes what expired (leftover temporaries too) and the oldest values past
    /// [`MAX_VALUES_PER_KEY`].
    fn prune(&self, dir: &Path) {
        let mut live = Vec::new();
        for entry in entries(dir) {
            if entry.age > self.ttl {
                let _ = fs::remove_file(&entry.path);
            } else if !entry.name.starts_with('.') {
                live.push((entry.age, entry.name, entry.path));
            }
        }
        // Youngest first; what is past the limit goes.
        live.sort();
        for (_, _, path) in live.into_iter().skip(MAX_VALUES_PER_KEY) {
            let _ = fs::remove_file(path);
        }
    }

    /// Delivers the live values of `key` not delivered yet, oldest first.
    fn scan(&mut self, key: DhtKey) {
        let dir = self.key_dir(key);
        let Some(folder) = self.listens.get_mut(&key) else {
            return;
        };
        let deliver = &self.deliver;
        folder.scan(&dir, self.ttl, |value| {
            deliver(Input::DhtValue { key, value });
        });
    }
}

/// What a listening client knows of one key folder: the values it delivered and the entries
/// it skipped, by file name. Both only ever hold names still in the folder.
#[derive(Debug, Default)]
struct KeyFolder {
    delivered: BTreeSet<String>,
    skipped: BTreeMap<String, Stamp>,
    /// Entries opened, ever (for tests: a skipped entry is not opened again).
    opened: usize,
}

/// What says an entry is the one seen before: a new inode, size or age means new contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

/// Why an entry was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    /// It went away meanwhile: nothing to remember.
    Gone,
    /// Not a regular file (a FIFO, a symlink, a folder, a socket, a device).
    NotRegular,
    /// Larger than [`MAX_VALUE_SIZE`].
    TooLarge,
    /// Another user's file.
    Foreign,
    /// Its bytes do not hash to its name.
    Mismatch,
    /// It cannot be opened or read.
    Unreadable,
}

impl KeyFolder {
    /// Delivers, oldest first, the live values of `dir` not delivered before.
    fn scan(&mut self, dir: &Path, ttl: Duration, mut deliver: impl FnMut(Bytes)) {
        if check_private_dir(dir).is_err() {
            // Missing (nothing put yet) or not ours: nothing in it is read.
            return;
        }
        let mut new = Vec::new();
        let mut present = BTreeSet::new();
        for entry in entries(dir) {
            if !is_value_name(&entry.name) || entry.age > ttl {
                continue;
            }
            present.insert(entry.name.clone());
            if self.delivered.contains(&entry.name)
                || self.skipped.get(&entry.name) == Some(&entry.stamp)
            {
                continue;
            }
            new.push((std::cmp::Reverse(entry.age), entry));
        }
        // Forget files that are gone, so both sets stay as small as the folder.
        self.delivered.retain(|name| present.contains(name));
        self.skipped.retain(|name, _| present.contains(name));
        new.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
        for (_, entry) in new {
            let read = if entry.is_file {
                self.opened += 1;
                read_value(&entry.path, &entry.name)
            } else {
                Err(Skip::NotRegular)
            };
            match read {
                Ok(value) => {
                    self.delivered.insert(entry.name);
                    deliver(Bytes::from(value));
                }
                // A value removed meanwhile is simply not delivered.
                Err(Skip::Gone) => {}
                Err(_) => {
                    self.skipped.insert(entry.name, entry.stamp);
                }
            }
        }
    }
}

/// Reads a key folder the way a listening client does, twice: the values the first poll
/// delivers, those the second delivers, and how many entries the second opened. For the fuzz
/// targets and tests of hostile folders; not an API.
#[doc(hidden)]
pub fn poll_key_folder_twice(dir: &Path, ttl: Duration) -> (Vec<Bytes>, Vec<Bytes>, usize) {
    let mut folder = KeyFolder::default();
    let mut first = Vec::new();
    folder.scan(dir, ttl, |v| first.push(v));
    let opened = folder.opened;
    let mut second = Vec::new();
    folder.scan(dir, ttl, |v| second.push(v));
    (first, second, folder.opened - opened)
}

/// Opens a folder entry without following a symlink and without blocking (a FIFO with no
/// writer, or no reader, must not hang the thread).
fn open_entry(path: &Path, write: bool) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(!write).write(write);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// The bytes of the value file `path` called `name`, checked before and after reading.
fn read_value(path: &Path, name: &str) -> Result<Vec<u8>, Skip> {
    let file = open_entry(path, false).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Skip::Gone,
        _ => Skip::Unreadable,
    })?;
    let meta = file.metadata().map_err(|_| Skip::Unreadable)?;
    if !meta.is_file() {
        return Err(Skip::NotRegular);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if meta.uid() != our_uid() {
            return Err(Skip::Foreign);
        }
    }
    if meta.len() > MAX_VALUE_SIZE as u64 {
        return Err(Skip::TooLarge);
    }
    let mut value = Vec::with_capacity(meta.len() as usize);
    // The file may grow between the check and the read: never read past the limit.
    file.take(MAX_VALUE_SIZE as u64 + 1)
        .read_to_end(&mut value)
        .map_err(|_| Skip::Unreadable)?;
    if value.len() > MAX_VALUE_SIZE {
        return Err(Skip::TooLarge);
    }
    if value_name(&value) != name {
        return Err(Skip::Mismatch);
    }
    Ok(value)
}

/// Whether `name` is what a value file is called: 32 lowercase hex digits.
fn is_value_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A value's file name: the first 16 bytes of its SHA-256, in hex.
#[doc(hidden)]
pub fn value_name(value: &[u8]) -> String {
    hex::encode(&sha2::Sha256::digest(value)[..16])
}

/// One entry of a folder, as listed (its own metadata: a symlink is not followed).
struct Entry {
    name: String,
    path: PathBuf,
    age: Duration,
    is_file: bool,
    stamp: Stamp,
}

/// Every entry of `dir` with a UTF-8 name; nothing if `dir` cannot be read.
fn entries(dir: &Path) -> Vec<Entry> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    read.filter_map(Result::ok)
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            let modified = meta.modified().ok();
            let age = modified
                .map(|m| now.duration_since(m).unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::MAX);
            let name = entry.file_name().into_string().ok()?;
            #[cfg(unix)]
            let inode = std::os::unix::fs::MetadataExt::ino(&meta);
            #[cfg(not(unix))]
            let inode = 0;
            Some(Entry {
                name,
                path: entry.path(),
                age,
                is_file: meta.is_file(),
                stamp: Stamp {
                    inode,
                    len: meta.len(),
                    modified,
                },
            })
        })
        .collect()
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The user this process runs as.
#[cfg(unix)]
fn our_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Checks that `dir` is a folder (not a symlink to one) of this user, and private: one of ours
/// that others may read or write is made private again; another user's is refused, since
/// they could plant or remove values in it.
fn check_private_dir(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a folder", dir.display()),
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        if meta.uid() != our_uid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("the DHT folder {} belongs to another user", dir.display()),
            ));
        }
        if meta.mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a client is told, with a bound on the wait.
    struct Heard(mpsc::Receiver<Input>);

    impl Heard {
        fn next(&self) -> Option<Input> {
            self.0.recv_timeout(Duration::from_secs(5)).ok()
        }

        fn quiet_for(&self, wait: Duration) -> bool {
            self.0.recv_timeout(wait).is_err()
        }
    }

    fn client(folder: &Path, ttl: Duration) -> (FolderClient, Heard) {
        let (tx, rx) = mpsc::channel();
        let client = FolderClient::with_ttl(folder, ttl, move |input| {
            let _ = tx.send(input);
        });
        (client.expect("a client in a temporary folder"), Heard(rx))
    }

    fn value(key: DhtKey, v: &'static str) -> Option<Input> {
        Some(Input::DhtValue {
            key,
            value: Bytes::from_static(v.as_bytes()),
        })
    }

    fn done(key: DhtKey, ok: bool) -> Option<Input> {
        Some(Input::DhtPutDone { key, ok })
    }

    #[test]
    fn two_clients_of_one_folder_see_old_values_then_new_ones() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let key = DhtKey([7; 20]);
        // Two clients stand for two processes: they share nothing but the folder.
        let (alice, alice_heard) = client(dir.path(), DEFAULT_TTL);
        let (bob, bob_heard) = client(dir.path(), DEFAULT_TTL);
        alice.put(key, Bytes::from_static(b"one"));
        assert_eq!(alice_heard.next(), done(key, true));
        bob.listen(key);
        assert_eq!(bob_heard.next(), value(key, "one"));
        alice.put(key, Bytes::from_static(b"two"));
        alice.put(key, Bytes::from_static(b"two")); // the same bytes: stored once
        assert_eq!(alice_heard.next(), done(key, true));
        assert_eq!(alice_heard.next(), done(key, true));
        assert_eq!(bob_heard.next(), value(key, "two"));
        assert!(bob_heard.quiet_for(3 * POLL_INTERVAL), "a value comes once");
        let files = fs::read_dir(dir.path().join(hex::encode(key.0)))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(files, 2, "one file per value, no temporary left");

        bob.cancel_listen(key);
        alice.put(key, Bytes::from_static(b"three"));
        assert_eq!(alice_heard.next(), done(key, true));
        assert!(
            bob_heard.quiet_for(3 * POLL_INTERVAL),
            "no listen, no value"
        );
    }

    #[test]
    fn oversized_values_are_refused_and_keys_stay_bounded() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let key = DhtKey([1; 20]);
        let (c, heard) = client(dir.path(), DEFAULT_TTL);
        c.put(key, Bytes::from(vec![0; MAX_VALUE_SIZE + 1]));
        assert_eq!(heard.next(), done(key, false));
        for i in 0..(MAX_VALUES_PER_KEY as u32 + 5) {
            c.put(key, Bytes::copy_from_slice(&i.to_be_bytes()));
            assert_eq!(heard.next(), done(key, true));
        }
        let files = fs::read_dir(dir.path().join(hex::encode(key.0)))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(files, MAX_VALUES_PER_KEY);
    }

    #[test]
    fn expired_values_are_not_delivered_and_are_removed() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let key = DhtKey([2; 20]);
        let ttl = Duration::from_secs(60);
        let (a, a_heard) = client(dir.path(), ttl);
        a.put(key, Bytes::from_static(b"old"));
        assert_eq!(a_heard.next(), done(key, true));
        // Age the value past its time to live, as if its writer had gone long ago.
        let old = dir.path().join(hex::encode(key.0)).join(value_name(b"old"));
        let aged = fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(SystemTime::now() - 2 * ttl));
        assert!(aged.is_ok(), "{aged:?}");

        let (b, b_heard) = client(dir.path(), ttl);
        b.listen(key);
        a.put(key, Bytes::from_static(b"new"));
        assert_eq!(a_heard.next(), done(key, true));
        assert_eq!(b_heard.next(), value(key, "new"));
        assert!(
            b_heard.quiet_for(3 * POLL_INTERVAL),
            "the old value is dead"
        );
        assert!(!old.exists(), "a put removes what expired under its key");
    }

    #[test]
    fn a_client_keeps_its_values_alive_until_it_is_dropped() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let key = DhtKey([4; 20]);
        let ttl = Duration::from_millis(800);
        let (a, a_heard) = client(dir.path(), ttl);
        a.put(key, Bytes::from_static(b"alive"));
        assert_eq!(a_heard.next(), done(key, true));
        // Well past its time to live, the value is still there: its client refreshed it.
        std::thread::sleep(2 * ttl);
        let (b, b_heard) = client(dir.path(), ttl);
        b.listen(key);
        assert_eq!(b_heard.next(), value(key, "alive"));
        // Its client gone, it expires.
        drop(a);
        std::thread::sleep(2 * ttl);
        let (c, c_heard) = client(dir.path(), ttl);
        c.listen(key);
        assert!(c_heard.quiet_for(3 * POLL_INTERVAL), "the value expired");
        drop(b);
    }

    /// Makes a FIFO at `path`, whose other end nobody opens.
    #[cfg(unix)]
    fn fifo(path: &Path) {
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            path,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .expect("a FIFO");
    }

    #[cfg(unix)]
    #[test]
    fn hostile_entries_neither_block_nor_grow_nor_come_back() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let key = DhtKey([6; 20]);
        let key_dir = dir.path().join(hex::encode(key.0));
        create_private_dir(&key_dir).expect("a key folder");
        let planted = |bytes: &[u8]| key_dir.join(value_name(bytes));
        // SECURITY: row 94
        fifo(&planted(b"fifo"));
        // SECURITY: row 95
        std::os::unix::fs::symlink("/dev/zero", planted(b"zero")).expect("a symlink");
        // SECURITY: row 96
        fs::File::create(planted(b"huge"))
            .and_then(|f| f.set_len(200 * 1024 * 1024))
            .expect("a sparse 200 MB file");
        // A folder, bytes that are not the value their name says, a name that is no value's.
        fs::create_dir(planted(b"dir")).expect("a folder");
        fs::write(planted(b"name"), b"other bytes").expect("a file");
        fs::write(key_dir.join("not-a-value"), b"x").expect("a file");
        // A real value, put by hand the way a client puts it.
        fs::write(planted(b"real"), b"real").expect("a value");

        let (first, second, opened) = poll_key_folder_twice(&key_dir, DEFAULT_TTL);
        assert_eq!(first, [Bytes::from_static(b"real")]);
        assert!(second.is_empty());
        assert_eq!(opened, 0, "nothing skipped is opened again");

        // A client listening there hears the real value, promptly, and nothing else.
        let (c, heard) = client(dir.path(), DEFAULT_TTL);
        c.listen(key);
        assert_eq!(heard.next(), value(key, "real"));
        assert!(heard.quiet_for(3 * POLL_INTERVAL));
        // Putting a value whose name a FIFO took replaces the FIFO, without blocking.
        c.put(key, Bytes::from_static(b"fifo"));
        assert_eq!(heard.next(), done(key, true));
        assert_eq!(heard.next(), value(key, "fifo"));
    }

    #[cfg(unix)]
    #[test]
    fn the_folder_must_be_ours_and_private() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let dir = tempfile::tempdir().expect("a temporary folder");
        // One of ours that others could write to is made private again.
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).expect("a folder");
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o777)).expect("chmod");
        let (c, _) = client(&shared, DEFAULT_TTL);
        drop(c);
        let mode = fs::metadata(&shared).map(|m| m.mode() & 0o777).ok();
        assert_eq!(mode, Some(0o700));
        // Another user's is refused: root makes one; anyone else finds one in `/`.
        // SECURITY: row 97
        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).expect("a folder");
        let foreign = if std::os::unix::fs::chown(&theirs, Some(12_345), None).is_ok() {
            theirs
        } else {
            assert_ne!(our_uid(), 0, "root can give a folder away");
            PathBuf::from("/")
        };
        let refused = FolderClient::new(&foreign, |_| {}).map(|_| ());
        assert!(
            matches!(&refused, Err(e) if e.kind() == io::ErrorKind::PermissionDenied),
            "{refused:?}"
        );
        // A symlink to a folder is followed once, when the client starts, and never again.
        let target = dir.path().join("target");
        fs::create_dir(&target).expect("a folder");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).expect("a symlink");
        let (c, _) = client(&link, DEFAULT_TTL);
        assert_eq!(c.folder, target.canonicalize().expect("a path"));
    }

    #[test]
    fn a_dropped_client_hears_nothing_more() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let key = DhtKey([3; 20]);
        let (a, a_heard) = client(dir.path(), DEFAULT_TTL);
        let (b, b_heard) = client(dir.path(), DEFAULT_TTL);
        b.listen(key);
        drop(b);
        a.put(key, Bytes::from_static(b"x"));
        assert_eq!(a_heard.next(), done(key, true));
        assert!(b_heard.quiet_for(3 * POLL_INTERVAL));
    }
}
