//! The file service on a thread of its own, so that reading, writing and hashing never wait
//! behind (or hold up) the event loop that runs TLS.

use std::io;
use std::sync::mpsc;

use ferry_proto::io::{FileOp, FileResult};

use super::FileService;

/// A [`FileService`] on its own thread: operations go in with [`submit`](Self::submit),
/// results come out through the `deliver` callback, in order.
///
/// The queue is not bounded here: the core bounds it, since it never has more than its read
/// and write windows of file data asked for and not answered. Dropping the handle lets the
/// thread finish what it was given and end.
#[derive(Debug)]
pub struct FileThread {
    ops: mpsc::Sender<FileOp>,
}

impl FileThread {
    /// Starts the thread. `deliver` runs on it, once per result: a channel send, typically,
    /// that wakes the driver's event loop.
    pub fn spawn(
        mut service: FileService,
        mut deliver: impl FnMut(FileResult) + Send + 'static,
    ) -> io::Result<FileThread> {
        let (ops, rx) = mpsc::channel::<FileOp>();
        std::thread::Builder::new()
            .name("ferry-files".into())
            .spawn(move || {
                for op in rx {
                    deliver(service.perform(op));
                }
            })?;
        Ok(FileThread { ops })
    }

    /// Queues an operation.
    pub fn submit(&self, op: FileOp) {
        // The thread ends only when this handle is gone; a send cannot fail before.
        let _ = self.ops.send(op);
    }
}
