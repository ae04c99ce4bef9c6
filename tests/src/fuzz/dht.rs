//! The DHT clients' parsers: the OpenDHT proxy's HTTP answers and JSON values, and a folder
//! DHT holding hostile entries.

use std::io::{self, Read};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ferry_driver::dht::MAX_VALUE_SIZE;
use ferry_driver::folder_dht::{poll_key_folder_twice, value_name};
use ferry_driver::opendht::{read_listen_stream_for_test, read_put_answer};

use super::{Script, pieces};

/// A byte source that hands out its pieces one read at a time, as a socket would.
#[derive(Debug)]
pub(crate) struct Pieces<'a> {
    parts: std::collections::VecDeque<&'a [u8]>,
}

impl<'a> Pieces<'a> {
    /// A source of these pieces, in order, then the end of the stream.
    pub(crate) fn new(parts: Vec<&'a [u8]>) -> Pieces<'a> {
        Pieces {
            parts: parts.into(),
        }
    }
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(part) = self.parts.pop_front() else {
            return Ok(0);
        };
        let n = part.len().min(buf.len());
        buf[..n].copy_from_slice(&part[..n]);
        if n < part.len() {
            self.parts.push_front(&part[n..]);
        }
        Ok(n)
    }
}

/// The proxy's answers, split anywhere: a listen stream gives the same values whatever the
/// split, each within the DHT's value size; a put answer is read within its bound.
pub fn opendht_proxy(data: &[u8]) {
    let (stream, parts) = pieces(data);
    let (whole, _) = read_listen_stream_for_test(Pieces::new(vec![stream]));
    let (split, _) = read_listen_stream_for_test(Pieces::new(parts.clone()));
    assert_eq!(whole, split, "the split changed the values");
    assert!(whole.iter().all(|v| v.len() <= MAX_VALUE_SIZE));
    let _ = read_put_answer(Pieces::new(parts));
}

/// A key folder planted with hostile entries (FIFOs, symlinks to `/dev/zero` or to values,
/// huge sparse files, folders, files whose bytes do not match their name, hidden files) and
/// real values: one poll delivers exactly the real values, without blocking; the next poll
/// delivers nothing and opens nothing.
pub fn folder_dht(data: &[u8]) {
    let Ok(root) = tempfile::tempdir() else {
        return;
    };
    let dir = root.path().join("key");
    if private_dir(&dir).is_err() {
        return;
    }
    let mut s = Script::new(data);
    let mut expected = Vec::new();
    for i in 0..16 {
        if s.is_empty() {
            break;
        }
        let kind = s.byte();
        let content = s.piece();
        let name = value_name(content);
        let path = dir.join(&name);
        let wrong = dir.join(value_name(&[i]));
        if path.symlink_metadata().is_ok() || wrong.symlink_metadata().is_ok() {
            continue;
        }
        let planted = match kind % 9 {
            0 | 1 => {
                expected.push(Bytes::copy_from_slice(content));
                std::fs::write(&path, content)
            }
            // Bytes that are not the value the name says (unless they happen to be).
            2 => {
                if content == [i] {
                    expected.push(Bytes::copy_from_slice(content));
                }
                std::fs::write(&wrong, content)
            }
            // A hidden file, and a name that is not a value's.
            3 => std::fs::write(dir.join(format!(".{name}")), content)
                .and_then(|()| std::fs::write(dir.join(format!("{name}x")), content)),
            4 => symlink("/dev/zero", &path),
            5 => {
                // A real value elsewhere, reached through a symlink.
                let outside = root.path().join(&name);
                std::fs::write(&outside, content).and_then(|()| symlink(&outside, &path))
            }
            6 => fifo(&path),
            7 => std::fs::create_dir(&path),
            _ => std::fs::File::create(&path).and_then(|f| {
                // Sparse: a 200 MB file that costs nothing to make.
                f.set_len(200 * 1024 * 1024 + u64::from(s.byte()))
            }),
        };
        if planted.is_err() {
            return;
        }
    }
    let (first, second, opened) = poll_key_folder_twice(&dir, Duration::from_secs(600));
    let mut first = first;
    first.sort();
    expected.sort();
    expected.dedup();
    assert_eq!(first, expected, "the values, and only them");
    assert!(second.is_empty(), "nothing is delivered twice");
    assert_eq!(opened, 0, "nothing skipped is opened again");
}

fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(unix)]
fn symlink(target: impl AsRef<Path>, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_: impl AsRef<Path>, _: &Path) -> io::Result<()> {
    Ok(())
}

/// Makes a FIFO at `path` (no process ever opens its other end).
#[cfg(unix)]
pub(crate) fn fifo(path: &Path) -> io::Result<()> {
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(io::Error::from)
}

/// FIFOs are a Unix thing.
#[cfg(not(unix))]
pub(crate) fn fifo(_: &Path) -> io::Result<()> {
    Ok(())
}

/// One datagram to Ferry's native OpenDHT node: decoded (values re-packed read back the
/// same), then fed twice to a node, whose answers stay few and whose memory stays bounded
/// whatever the bytes.
pub fn opendht_message(data: &[u8]) {
    use ferry_proto::opendht::InfoHash;
    use ferry_proto::opendht::message::{Message, Want};
    use ferry_proto::opendht::node::{Config, Node};
    use ferry_proto::opendht::value::Value;

    if let Ok(m) = Message::decode(data) {
        for v in &m.values {
            assert_eq!(
                Value::from_packed(&v.packed).as_ref(),
                Ok(v),
                "re-packing changed a value"
            );
        }
        assert!(m.nodes4.len() * 26 <= data.len() && m.nodes6.len() * 38 <= data.len());
    }
    let now = std::time::Instant::now();
    let mut node = Node::new(Config {
        id: InfoHash([7; 20]),
        network: 0,
        want: Want { v4: true, v6: true },
        seed: 1,
    });
    node.handle_timeout(now);
    let from = std::net::SocketAddr::from(([192, 0, 2, 1], 4222));
    node.handle_input(now, from, data);
    node.handle_input(now, from, data);
    let mut answers = 0;
    while let Some(d) = node.poll_output() {
        assert_eq!(d.addr, from, "an answer goes only to the sender");
        answers += 1;
    }
    // A request is answered by one datagram, its values by at most 64 KiB / MTU parts.
    assert!(answers <= 2 * (1 + 64), "{answers} datagrams for one input");
    assert!(node.storage().bytes() <= 2 * 64 * 1024);
    node.handle_timeout(now + std::time::Duration::from_secs(3600));
    assert_eq!(
        node.storage().values(),
        0,
        "everything expired after an hour"
    );
}
