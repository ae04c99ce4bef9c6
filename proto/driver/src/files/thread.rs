//! The file service on a small pool of threads of its own, so that reading, writing and above
//! all hashing never wait behind (or hold up) the event loop that runs TLS, and so that
//! several transfers hash and do their I/O on several cores at once.
//!
//! Each file is pinned to one worker (by its [`FileId`]): its operations run in the order they
//! were submitted, so its digest sees its bytes in order, and one transfer's long digest
//! delays only the files that share its worker. A transfer has one file, so a transfer is
//! pinned to one worker.
//!
//! Commits are gathered (`PROTOCOL.md` §14, *Durability*), as a database gathers its log
//! writes: a verified file waits while its worker has other operations queued (at most
//! [`COMMIT_WAIT`], up to [`COMMIT_BATCH`] files), and once nothing else is queued those
//! gathered are committed with one `syncfs` before and one after
//! ([`FileService::commit_batch`]) instead of two fsyncs each. Files verified during a commit
//! are the next batch, so batches grow with the load and an idle worker adds no delay (a
//! fixed wait of 10 ms was most of a small file's time). A file alone is fsynced as ever.

use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_proto::io::{FileId, FileOp, FileResult};

use super::FileService;

/// Most workers a pool starts, however many cores there are: a transfer's digest is the
/// heaviest work, and more workers than concurrent transfers would only sleep.
pub const MAX_WORKERS: usize = 4;

/// Longest a verified file waits to be committed while its worker still has other
/// operations queued; a worker with nothing queued commits what it gathered at once.
pub const COMMIT_WAIT: Duration = Duration::from_millis(10);

/// Most files committed at once.
pub const COMMIT_BATCH: usize = 256;

/// Verified files waiting to be committed together, on one worker.
#[derive(Default)]
struct Commits {
    files: Vec<FileId>,
    due: Option<Instant>,
}

impl Commits {
    fn add(&mut self, file: FileId) {
        self.files.push(file);
        self.due.get_or_insert_with(|| Instant::now() + COMMIT_WAIT);
    }

    fn is_due(&self) -> bool {
        self.files.len() >= COMMIT_BATCH || self.due.is_some_and(|at| Instant::now() >= at)
    }

    /// Commits them all and hands each result over.
    fn flush(&mut self, service: &mut FileService, deliver: &mut impl FnMut(FileResult)) {
        if self.files.is_empty() {
            return;
        }
        for result in service.commit_batch(&self.files) {
            deliver(result);
        }
        self.files.clear();
        self.due = None;
    }
}

/// [`FileService`]s on a pool of threads, each file pinned to one: operations go in with
/// [`submit`](Self::submit), results come out through the `deliver` callback, in order for
/// each file.
///
/// The queues are not bounded here: the core bounds them, since it never has more than its
/// read and write windows of file data asked for and not answered. Dropping the handle lets
/// each thread finish what it was given and end.
#[derive(Debug)]
pub struct FileThread {
    workers: Vec<mpsc::Sender<FileOp>>,
}

impl FileThread {
    /// Starts min(cores, [`MAX_WORKERS`]) workers. `deliver` runs on them, once per result:
    /// a channel send, typically, that wakes the driver's event loop.
    pub fn spawn(
        service: FileService,
        deliver: impl FnMut(FileResult) + Clone + Send + 'static,
    ) -> io::Result<FileThread> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        FileThread::spawn_workers(service, deliver, cores.min(MAX_WORKERS))
    }

    /// Starts `workers` workers (at least one), each with a [`FileService`] that shares
    /// `service`'s receive folder, buffers and partial files.
    pub fn spawn_workers(
        service: FileService,
        deliver: impl FnMut(FileResult) + Clone + Send + 'static,
        workers: usize,
    ) -> io::Result<FileThread> {
        let mut senders = Vec::with_capacity(workers.max(1));
        for i in 0..workers.max(1) {
            let (ops, rx) = mpsc::channel::<FileOp>();
            let mut service = service.sibling();
            let mut deliver = deliver.clone();
            std::thread::Builder::new()
                .name(format!("ferry-files-{i}"))
                .spawn(move || {
                    let mut commits = Commits::default();
                    loop {
                        if commits.is_due() {
                            commits.flush(&mut service, &mut deliver);
                        }
                        let op = match rx.try_recv() {
                            Ok(op) => op,
                            Err(mpsc::TryRecvError::Disconnected) => break,
                            // Nothing else waits: the files gathered so far are committed
                            // now (a group commit: what came in meanwhile is the batch), and
                            // only then is a source hashed ahead of its reads.
                            Err(mpsc::TryRecvError::Empty) if !commits.files.is_empty() => {
                                commits.flush(&mut service, &mut deliver);
                                continue;
                            }
                            Err(mpsc::TryRecvError::Empty) if service.prehashing() => {
                                service.prehash_step();
                                continue;
                            }
                            Err(mpsc::TryRecvError::Empty) => match rx.recv() {
                                Ok(op) => op,
                                Err(_) => break,
                            },
                        };
                        match op {
                            FileOp::Commit { file } => commits.add(file),
                            op => {
                                // A file's operations stay in order: one waiting to be
                                // committed is committed first.
                                if commits.files.contains(&op.file()) {
                                    commits.flush(&mut service, &mut deliver);
                                }
                                deliver(service.perform(op));
                            }
                        }
                    }
                    // The handle is gone: what waits is committed all the same.
                    commits.flush(&mut service, &mut deliver);
                })?;
            senders.push(ops);
        }
        Ok(FileThread { workers: senders })
    }

    /// How many workers run.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// The worker a file's operations go to.
    pub fn worker_of(&self, file: FileId) -> usize {
        // `workers` is never empty; a u64 remainder below its length fits a usize.
        (file.0 % self.workers.len() as u64) as usize
    }

    /// Queues an operation on its file's worker.
    pub fn submit(&self, op: FileOp) {
        let worker = &self.workers[self.worker_of(op.file())];
        // A thread ends only when this handle is gone; a send cannot fail before.
        let _ = worker.send(op);
    }
}
