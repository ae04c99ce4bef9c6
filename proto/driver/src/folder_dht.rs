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
//! # Threads
//! Each [`FolderClient`] has one thread that does its puts, polls the key folders it listens
//! to every [`POLL_INTERVAL`] (a handful of directory reads; no file is read twice) and
//! refreshes its values; with nothing to do, it sleeps until asked.
//! Answers come back as [`Input`]s through the callback the client was made with, from that
//! thread. Dropping the client ends the thread.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io;
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
    /// The files already delivered, by key listened to.
    listens: BTreeMap<DhtKey, BTreeSet<String>>,
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
                        slot.insert(BTreeSet::new());
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
            fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_modified(now))
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
        let name = value_name(value);
        let path = dir.join(&name);
        // The same bytes again: only their age changes.
        let refreshed = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(SystemTime::now()));
        if refreshed.is_err() {
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
        for (name, path, age) in entries(dir) {
            if age > self.ttl {
                let _ = fs::remove_file(&path);
            } else if !name.starts_with('.') {
                live.push((age, name, path));
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
        let Some(seen) = self.listens.get_mut(&key) else {
            return;
        };
        let mut new = Vec::new();
        let mut present = BTreeSet::new();
        for (name, path, age) in entries(&dir) {
            if name.starts_with('.') || age > self.ttl {
                continue;
            }
            present.insert(name.clone());
            if !seen.contains(&name) {
                new.push((std::cmp::Reverse(age), name, path));
            }
        }
        // Forget files that are gone, so the set stays as small as the folder.
        seen.retain(|name| present.contains(name));
        new.sort();
        for (_, name, path) in new {
            // A value removed meanwhile is simply not delivered.
            if let Ok(value) = fs::read(&path) {
                if value.len() <= MAX_VALUE_SIZE {
                    seen.insert(name);
                    (self.deliver)(Input::DhtValue {
                        key,
                        value: Bytes::from(value),
                    });
                }
            }
        }
    }
}

/// A value's file name: the first 16 bytes of its SHA-256, in hex.
fn value_name(value: &[u8]) -> String {
    hex::encode(&sha2::Sha256::digest(value)[..16])
}

/// Every file of `dir` with its path and age; nothing if `dir` cannot be read.
fn entries(dir: &Path) -> Vec<(String, PathBuf, Duration)> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let now = SystemTime::now();
    read.filter_map(Result::ok)
        .filter_map(|entry| {
            let modified = entry.metadata().ok()?.modified().ok()?;
            let age = now.duration_since(modified).unwrap_or(Duration::ZERO);
            let name = entry.file_name().into_string().ok()?;
            Some((name, entry.path(), age))
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
