//! What a side of a transfer costs, and what its primitives cost on the same core in the same
//! process: CPU seconds (user + system), never wall-clock alone, since the machine is shared.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use sha3::Digest as _;

/// Size of a TLS record's plaintext, as rustls seals it.
pub(crate) const RECORD: usize = 16 * 1024;
/// Bytes per `read`/`write` in the plain socket and file copies.
const IO_BLOCK: usize = 256 * 1024;

/// CPU seconds of the calling thread so far, in nanoseconds from `/proc/thread-self/schedstat`
/// (not `clock_gettime`: rustix reaches it through the vDSO, which valgrind cannot run).
pub(crate) fn thread_cpu() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns * 1e-9)
}

/// CPU seconds of the whole process so far, every thread (ended ones too), in clock ticks.
pub(crate) fn process_cpu() -> f64 {
    let (user, sys) = user_sys();
    user + sys
}

/// User and system CPU seconds of the process (`/proc/self/stat`, in clock ticks).
pub(crate) fn user_sys() -> (f64, f64) {
    ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// Fields 14 and 15 of a `stat` line (after the parenthesised name), at 100 ticks a second.
fn ticks(stat: &str) -> (f64, f64) {
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let mut fields = rest.split_whitespace().skip(11);
    let mut next = || {
        fields
            .next()
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 100.0
    };
    (next(), next())
}

/// CPU seconds (user + system) per live thread of the process, by thread name, largest first.
pub(crate) fn threads() -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in dir.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let name = stat
            .split_once('(')
            .and_then(|(_, r)| r.rsplit_once(')'))
            .map_or("?", |(n, _)| n)
            .to_owned();
        let (user, sys) = ticks(&stat);
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, cpu)) => *cpu += user + sys,
            None => out.push((name, user + sys)),
        }
    }
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Thread CPU seconds and wall seconds of `f`.
pub(crate) fn measure(f: impl FnOnce()) -> (f64, f64) {
    let (cpu, wall) = (thread_cpu(), Instant::now());
    f();
    (thread_cpu() - cpu, wall.elapsed().as_secs_f64())
}

/// SHA3-512 over `bytes` of `block` repeated: (CPU s, wall s).
pub(crate) fn sha3(block: &[u8], bytes: u64) -> (f64, f64) {
    measure(|| {
        let mut hasher = sha3::Sha3_512::new();
        for _ in 0..bytes / block.len() as u64 {
            hasher.update(block);
        }
        std::hint::black_box(hasher.finalize());
    })
}

fn key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("an AES-256 key"))
}

fn nonce(n: u64) -> Nonce {
    let mut bytes = [0; 12];
    bytes[4..].copy_from_slice(&n.to_be_bytes());
    Nonce::assume_unique_for_key(bytes)
}

/// AES-256-GCM (ring, as rustls uses it) sealing `bytes` in 16 KiB records, in place: CPU s.
pub(crate) fn aes_seal(bytes: u64) -> f64 {
    let key = key();
    let mut record = vec![0x5a; RECORD];
    measure(|| {
        for n in 0..bytes / RECORD as u64 {
            let tag = key
                .seal_in_place_separate_tag(nonce(n), Aad::empty(), &mut record)
                .expect("seal");
            let _ = std::hint::black_box(tag);
        }
    })
    .0
}

/// AES-256-GCM opening `bytes` in 16 KiB records, in place: CPU s. Each record is first
/// copied back from its sealed form; that copy is measured alone and subtracted.
pub(crate) fn aes_open(bytes: u64) -> f64 {
    let key = key();
    let mut sealed = vec![0x5a; RECORD];
    let tag = key
        .seal_in_place_separate_tag(nonce(0), Aad::empty(), &mut sealed)
        .expect("seal");
    sealed.extend_from_slice(tag.as_ref());
    let mut work = sealed.clone();
    let records = bytes / RECORD as u64;
    let (both, _) = measure(|| {
        for _ in 0..records {
            work.copy_from_slice(&sealed);
            let plain = key
                .open_in_place(nonce(0), Aad::empty(), &mut work)
                .expect("open");
            std::hint::black_box(plain);
        }
    });
    let (copy, _) = measure(|| {
        for _ in 0..records {
            work.copy_from_slice(std::hint::black_box(&sealed));
            std::hint::black_box(&mut work);
        }
    });
    (both - copy).max(0.0)
}

/// A plain copy of `bytes` over a loopback TCP socket; the CPU of this thread's side only:
/// `write` when `writing`, else `read` (the other side runs on a helper thread).
pub(crate) fn socket(bytes: u64, writing: bool) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let peer = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().expect("accept");
        let mut buf = vec![0x5a; IO_BLOCK];
        if writing {
            while socket.read(&mut buf).expect("read") > 0 {}
        } else {
            for _ in 0..bytes / IO_BLOCK as u64 {
                socket.write_all(&buf).expect("write");
            }
        }
    });
    let mut socket = TcpStream::connect(addr).expect("connect");
    let mut buf = vec![0x5a; IO_BLOCK];
    let (cpu, _) = measure(|| {
        if writing {
            for _ in 0..bytes / IO_BLOCK as u64 {
                socket.write_all(&buf).expect("write");
            }
            socket
                .shutdown(std::net::Shutdown::Write)
                .expect("shutdown");
        } else {
            let mut got = 0;
            while got < bytes {
                let n = socket.read(&mut buf).expect("read");
                assert!(n > 0, "the socket ended early");
                got += n as u64;
            }
        }
    });
    peer.join().expect("the socket's peer");
    cpu
}

/// Reads `path` whole through the page cache (it was just written or sent, so it is cached):
/// CPU s.
pub(crate) fn file_read(path: &Path) -> f64 {
    let mut file = std::fs::File::open(path).expect("open the file");
    let mut buf = vec![0; IO_BLOCK];
    measure(|| while file.read(&mut buf).expect("read") > 0 {}).0
}

/// Writes `bytes` to a new file at `path` through the page cache, then deletes it: CPU s.
pub(crate) fn file_write(path: &Path, bytes: u64) -> f64 {
    let mut file = std::fs::File::create(path).expect("create the file");
    let buf = vec![0x5a; IO_BLOCK];
    let (cpu, _) = measure(|| {
        for _ in 0..bytes / IO_BLOCK as u64 {
            file.write_all(&buf).expect("write");
        }
    });
    drop(file);
    let _ = std::fs::remove_file(path);
    cpu
}
