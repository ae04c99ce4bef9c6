//! The file service on a small pool of threads of its own, so that reading, writing and above
//! all hashing never wait behind (or hold up) the event loop that runs TLS, and so that
//! several transfers hash and do their I/O on several cores at once.
//!
//! Each file is pinned to one worker (by its [`FileId`]): its operations run in the order they
//! were submitted, so its digest sees its bytes in order, and one transfer's long digest
//! delays only the files that share its worker. A transfer has one file, so a transfer is
//! pinned to one worker.

use std::io;
use std::sync::mpsc;

use ferry_proto::io::{FileId, FileOp, FileResult};

use super::FileService;

/// Most workers a pool starts, however many cores there are: a transfer's digest is the
/// heaviest work, and more workers than concurrent transfers would only sleep.
pub const MAX_WORKERS: usize = 4;

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
                    loop {
                        // Between operations, a source is hashed ahead of its reads.
                        let op = if service.prehashing() {
                            match rx.try_recv() {
                                Ok(op) => op,
                                Err(mpsc::TryRecvError::Empty) => {
                                    service.prehash_step();
                                    continue;
                                }
                                Err(mpsc::TryRecvError::Disconnected) => break,
                            }
                        } else {
                            match rx.recv() {
                                Ok(op) => op,
                                Err(_) => break,
                            }
                        };
                        deliver(service.perform(op));
                    }
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
