//! OpenDHT through the HTTP proxy of a `dhtnode` (`dhtnode --proxyserver PORT`), for nodes
//! that meet on the real DHT rather than in one process.
//!
//! What the proxy does, as seen with Debian's `dhtnode` 2.4:
//! - `POST /key/<40 hex>` with `{"data": "<base64>"}` stores a value and answers it back with
//!   its `id`; a refusal is still `200 OK`, with `{"err": …}` (a lone node answers every put
//!   with `{"err":"Put failed"}`), so only an answer with an `id` counts as stored;
//! - `GET /key/<40 hex>/listen` streams, chunked, one JSON value per line: those already
//!   stored, then each new one.
//!
//! Each listen is a thread of its own holding one streaming request; puts go one at a time
//! on another. Everything here blocks, on those threads, so it needs no async runtime. HTTP
//! heads and chunk sizes are parsed by `httparse`.
//!
//! The proxy is not trusted to be sane (a value is checked by whoever reads it, but the
//! bytes around it are parsed here): a head longer than [`MAX_HEAD`], a chunk-size line
//! longer than [`MAX_CHUNK_LINE`] or a line longer than [`MAX_LINE`] (a value far above
//! OpenDHT's own limit) ends the stream, which is then reopened; a value larger than
//! [`MAX_VALUE_SIZE`](crate::dht::MAX_VALUE_SIZE) or with an id longer than [`MAX_ID`] is
//! skipped, so the ids remembered against repeats stay small. Every limit holds whatever the
//! stream's split.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

use ferry_proto::io::{DhtKey, Input};

/// Longest line of a listen stream kept.
pub const MAX_LINE: usize = 256 * 1024;
/// Longest HTTP head read.
pub const MAX_HEAD: usize = 16 * 1024;
/// Longest chunk-size line read (the size and any extensions).
pub const MAX_CHUNK_LINE: usize = 1024;
/// Longest value id kept (OpenDHT's are 64-bit numbers).
pub const MAX_ID: usize = 64;
/// Largest answer to a put read.
const MAX_PUT_ANSWER: usize = 64 * 1024;
/// How long a request may wait for the proxy.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a listen waits before it reopens a stream that ended.
const RETRY: Duration = Duration::from_secs(1);
/// Value ids remembered per listen, so a reopened stream does not repeat values.
const SEEN: usize = 1024;

type Deliver = Arc<dyn Fn(Input) + Send + Sync>;

struct Listen {
    stop: Arc<AtomicBool>,
    /// The stream being read, to end it at once on cancel.
    stream: Arc<std::sync::Mutex<Option<TcpStream>>>,
}

impl Drop for Listen {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stream) = stream.as_ref() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// One driver's access to OpenDHT through a proxy; answers come as [`Input`]s through the
/// callback it was made with. Dropping it ends its listens.
pub struct ProxyClient {
    proxy: SocketAddr,
    deliver: Deliver,
    puts: mpsc::Sender<(DhtKey, Bytes)>,
    listens: BTreeMap<DhtKey, Listen>,
}

impl std::fmt::Debug for ProxyClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyClient")
            .field("proxy", &self.proxy)
            .field("listens", &self.listens.len())
            .finish()
    }
}

impl ProxyClient {
    /// A client of the proxy at `proxy`. `deliver` runs on the client's threads.
    pub fn new(
        proxy: SocketAddr,
        deliver: impl Fn(Input) + Send + Sync + 'static,
    ) -> io::Result<ProxyClient> {
        let deliver: Deliver = Arc::new(deliver);
        let (puts, rx) = mpsc::channel::<(DhtKey, Bytes)>();
        let to_app = deliver.clone();
        std::thread::Builder::new()
            .name("ferry-dht-put".into())
            .spawn(move || {
                for (key, value) in rx {
                    let ok = put(proxy, key, &value).unwrap_or(false);
                    to_app(Input::DhtPutDone { key, ok });
                }
            })?;
        Ok(ProxyClient {
            proxy,
            deliver,
            puts,
            listens: BTreeMap::new(),
        })
    }

    /// Stores `value` under `key`; answers [`Input::DhtPutDone`].
    pub fn put(&self, key: DhtKey, value: Bytes) {
        let _ = self.puts.send((key, value));
    }

    /// Delivers every value under `key`, those stored now and those to come.
    pub fn listen(&mut self, key: DhtKey) {
        if self.listens.contains_key(&key) {
            return;
        }
        let listen = Listen {
            stop: Arc::new(AtomicBool::new(false)),
            stream: Arc::new(std::sync::Mutex::new(None)),
        };
        let (stop, slot, proxy, deliver) = (
            listen.stop.clone(),
            listen.stream.clone(),
            self.proxy,
            self.deliver.clone(),
        );
        let started = std::thread::Builder::new()
            .name("ferry-dht-listen".into())
            .spawn(move || listen_loop(proxy, key, &stop, &slot, &*deliver));
        if started.is_ok() {
            self.listens.insert(key, listen);
        }
    }

    /// Stops delivering values under `key`.
    pub fn cancel_listen(&mut self, key: DhtKey) {
        self.listens.remove(&key);
    }
}

fn path(key: DhtKey) -> String {
    format!("/key/{}", hex::encode(key.0))
}

fn connect(proxy: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&proxy, TIMEOUT)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// One put; whether the proxy answered with a stored value.
fn put(proxy: SocketAddr, key: DhtKey, value: &[u8]) -> io::Result<bool> {
    let body = serde_json::json!({ "data": BASE64.encode(value) }).to_string();
    let mut stream = connect(proxy)?;
    write!(
        stream,
        "POST {} HTTP/1.1\r\nHost: {proxy}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        path(key),
        body.len()
    )?;
    read_put_answer(stream)
}

/// Reads the proxy's answer to a put: whether it says the value was stored. For the fuzz
/// targets too, which feed it any bytes.
#[doc(hidden)]
pub fn read_put_answer(source: impl Read) -> io::Result<bool> {
    let mut response = Response::read_head(source)?;
    if response.status != 200 {
        return Ok(false);
    }
    let body = response.read_body(MAX_PUT_ANSWER)?;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    Ok(answer.get("id").is_some())
}

/// Reads `key`'s listen stream until stopped, reopening it when it ends.
fn listen_loop(
    proxy: SocketAddr,
    key: DhtKey,
    stop: &AtomicBool,
    slot: &std::sync::Mutex<Option<TcpStream>>,
    deliver: &(dyn Fn(Input) + Send + Sync),
) {
    let mut seen = VecDeque::new();
    while !stop.load(Ordering::Acquire) {
        let _ = listen_once(proxy, key, stop, slot, &mut seen, deliver);
        if !stop.load(Ordering::Acquire) {
            std::thread::sleep(RETRY);
        }
    }
}

fn listen_once(
    proxy: SocketAddr,
    key: DhtKey,
    stop: &AtomicBool,
    slot: &std::sync::Mutex<Option<TcpStream>>,
    seen: &mut VecDeque<String>,
    deliver: &(dyn Fn(Input) + Send + Sync),
) -> io::Result<()> {
    let mut stream = connect(proxy)?;
    // A listen is quiet until a value comes: no read timeout.
    stream.set_read_timeout(None)?;
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream.try_clone()?);
    if stop.load(Ordering::Acquire) {
        return Ok(()); // Cancelled while connecting.
    }
    write!(
        stream,
        "GET {}/listen HTTP/1.1\r\nHost: {proxy}\r\nAccept: application/json\r\n\r\n",
        path(key)
    )?;
    read_listen_stream(stream, seen, |value| {
        deliver(Input::DhtValue { key, value })
    })
}

/// Reads a listen stream's answer, head and body, and delivers each value not in `seen`
/// (which keeps the last [`SEEN`] ids).
fn read_listen_stream(
    source: impl Read,
    seen: &mut VecDeque<String>,
    mut deliver: impl FnMut(Bytes),
) -> io::Result<()> {
    let mut response = Response::read_head(source)?;
    if response.status != 200 {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let mut line = Vec::new();
    while let Some(chunk) = response.next_body_part()? {
        for &byte in &chunk {
            if byte != b'\n' {
                line.push(byte);
                if line.len() > MAX_LINE {
                    return Err(io::ErrorKind::InvalidData.into());
                }
                continue;
            }
            if let Some((id, value)) = parse_value(&line) {
                if !seen.contains(&id) {
                    if seen.len() == SEEN {
                        seen.pop_front();
                    }
                    seen.push_back(id);
                    deliver(value);
                }
            }
            line.clear();
        }
    }
    Ok(())
}

/// Reads a listen stream from any byte source: the values delivered, and how it ended. For
/// the fuzz targets and their corpus replay; not an API.
#[doc(hidden)]
pub fn read_listen_stream_for_test(source: impl Read) -> (Vec<Bytes>, io::Result<()>) {
    let mut values = Vec::new();
    let end = read_listen_stream(source, &mut VecDeque::new(), |v| values.push(v));
    (values, end)
}

/// A value line: its id and its bytes. Expired values, values too large, ids too long and
/// anything else are skipped.
fn parse_value(line: &[u8]) -> Option<(String, Bytes)> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    if value.get("expired").is_some() {
        return None;
    }
    let data = BASE64.decode(value.get("data")?.as_str()?).ok()?;
    if data.len() > crate::dht::MAX_VALUE_SIZE {
        return None;
    }
    let id = match value.get("id")? {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if id.len() > MAX_ID {
        return None;
    }
    Some((id, Bytes::from(data)))
}

/// An HTTP/1.1 response being read: its head, then its body in parts (by length or chunked).
struct Response<R> {
    stream: R,
    status: u16,
    /// Bytes read past what was consumed.
    buf: Vec<u8>,
    body: Body,
}

enum Body {
    Length(u64),
    Chunked { left_in_chunk: u64, done: bool },
    UntilClose,
}

impl<R: Read> Response<R> {
    /// Reads and parses the head (at most [`MAX_HEAD`] bytes).
    fn read_head(mut stream: R) -> io::Result<Response<R>> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut head = httparse::Response::new(&mut headers);
            match head
                .parse(&buf)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?
            {
                httparse::Status::Partial if buf.len() < MAX_HEAD => continue,
                httparse::Status::Partial => return Err(io::ErrorKind::InvalidData.into()),
                // The limit is on the head, not on what one read brought.
                httparse::Status::Complete(len) if len > MAX_HEAD => {
                    return Err(io::ErrorKind::InvalidData.into());
                }
                httparse::Status::Complete(len) => {
                    let status = head.code.unwrap_or(0);
                    let header = |name: &str| {
                        head.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .and_then(|h| std::str::from_utf8(h.value).ok())
                            .map(str::trim)
                    };
                    let body = if header("Transfer-Encoding")
                        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
                    {
                        Body::Chunked {
                            left_in_chunk: 0,
                            done: false,
                        }
                    } else if let Some(len) = header("Content-Length") {
                        Body::Length(len.parse().map_err(|_| io::ErrorKind::InvalidData)?)
                    } else {
                        Body::UntilClose
                    };
                    buf.drain(..len);
                    return Ok(Response {
                        stream,
                        status,
                        buf,
                        body,
                    });
                }
            }
        }
    }

    /// The whole body, refused past `max` bytes.
    fn read_body(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        while let Some(part) = self.next_body_part()? {
            body.extend_from_slice(&part);
            if body.len() > max {
                return Err(io::ErrorKind::InvalidData.into());
            }
        }
        Ok(body)
    }

    /// The next part of the body, `None` at its end.
    fn next_body_part(&mut self) -> io::Result<Option<Vec<u8>>> {
        let (stream, buf) = (&mut self.stream, &mut self.buf);
        loop {
            let left = match &mut self.body {
                Body::UntilClose => {
                    if buf.is_empty() && !fill(stream, buf)? {
                        return Ok(None);
                    }
                    return Ok(Some(std::mem::take(buf)));
                }
                Body::Length(0) | Body::Chunked { done: true, .. } => return Ok(None),
                Body::Length(left) => left,
                Body::Chunked { left_in_chunk, .. } if *left_in_chunk > 0 => left_in_chunk,
                Body::Chunked {
                    left_in_chunk,
                    done,
                } => {
                    // Between chunks: the CRLF that ends the last one, then the next size.
                    while buf.starts_with(b"\r\n") {
                        buf.drain(..2);
                    }
                    match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete((used, size))) if used <= MAX_CHUNK_LINE => {
                            buf.drain(..used);
                            *left_in_chunk = size;
                            *done = size == 0;
                        }
                        Ok(httparse::Status::Partial) if buf.len() < MAX_CHUNK_LINE => {
                            if !fill(stream, buf)? {
                                return Err(io::ErrorKind::UnexpectedEof.into());
                            }
                        }
                        _ => return Err(io::ErrorKind::InvalidData.into()),
                    }
                    continue;
                }
            };
            if buf.is_empty() && !fill(stream, buf)? {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            let take = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
            *left -= take as u64;
            return Ok(Some(buf.drain(..take).collect()));
        }
    }
}

/// More bytes from `stream` into `buf`; whether any came.
fn fill(stream: &mut impl Read, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 8192];
    let n = stream.read(&mut chunk)?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A one-shot HTTP server on loopback: answers each connection with the next response.
    fn serve(responses: Vec<Vec<Vec<u8>>>) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for parts in responses {
                let Ok((mut s, _)) = listener.accept() else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = s.read(&mut request);
                for part in parts {
                    let _ = s.write_all(&part);
                    let _ = s.flush();
                    std::thread::sleep(Duration::from_millis(5));
                }
                // Hold a listen stream open until the client hangs up.
                let _ = s.read(&mut request);
            }
        });
        addr
    }

    fn client(proxy: SocketAddr) -> (ProxyClient, mpsc::Receiver<Input>) {
        let (tx, rx) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let client = ProxyClient::new(proxy, move |input| {
            let _ = tx.lock().map(|tx| tx.send(input));
        })
        .expect("client");
        (client, rx)
    }

    #[test]
    fn a_chunked_listen_stream_split_anywhere_gives_each_value_once() {
        let lines = concat!(
            "{\"data\":\"aGVsbG8=\",\"id\":\"1\",\"type\":0}\n",
            "{\"data\":\"aGVsbG8=\",\"id\":\"1\",\"type\":0}\n",
            "{\"id\":\"2\",\"expired\":true}\n",
            "not json\n",
            "{\"data\":\"d29ybGQ=\",\"id\":\"3\",\"type\":0}\n",
        );
        let (first, second) = lines.as_bytes().split_at(50);
        let chunk = |b: &[u8]| {
            [
                format!("{:x}\r\n", b.len()).into_bytes(),
                b.to_vec(),
                b"\r\n".to_vec(),
            ]
            .concat()
        };
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let whole = [head, chunk(first), chunk(second)].concat();
        // Cut the bytes at awkward places: inside the head, a size line, a CRLF.
        let parts = vec![
            whole[..20].to_vec(),
            whole[20..49].to_vec(),
            whole[49..53].to_vec(),
            whole[53..].to_vec(),
        ];
        let (mut client, rx) = client(serve(vec![parts]));
        let key = DhtKey([9; 20]);
        client.listen(key);
        let got: Vec<Input> = (0..2)
            .filter_map(|_| rx.recv_timeout(TIMEOUT).ok())
            .collect();
        let value = |v: &'static [u8]| Input::DhtValue {
            key,
            value: Bytes::from_static(v),
        };
        assert_eq!(got, [value(b"hello"), value(b"world")]);
        client.cancel_listen(key);
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "nothing more"
        );
    }

    #[test]
    fn a_broken_stream_is_reopened() {
        // SECURITY: row 91
        let garbage = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec();
        let too_long = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n".to_vec(),
            vec![b'x'; MAX_LINE + 10],
        ]
        .concat();
        let good = b"HTTP/1.1 200 OK\r\n\r\n{\"data\":\"eQ==\",\"id\":\"7\"}\n".to_vec();
        let proxy = serve(vec![vec![garbage], vec![too_long], vec![good]]);
        let (mut client, rx) = client(proxy);
        let key = DhtKey([5; 20]);
        client.listen(key);
        let got = rx.recv_timeout(TIMEOUT).ok();
        let value = Bytes::from_static(b"y");
        assert_eq!(got, Some(Input::DhtValue { key, value }));
    }

    fn invalid_data(end: &io::Result<()>) -> bool {
        matches!(end, Err(e) if e.kind() == io::ErrorKind::InvalidData)
    }

    #[test]
    fn values_with_huge_ids_or_beyond_the_value_limit_are_skipped() {
        // Remembered ids stay small (a thousand 250 KiB ids would be 250 MiB), and no value
        // larger than the DHT's own limit reaches the node.
        // SECURITY: row 87
        let long_id = format!(
            "{{\"data\":\"eA==\",\"id\":\"{}\"}}\n",
            "9".repeat(MAX_ID + 1)
        );
        let big = format!(
            "{{\"data\":\"{}\",\"id\":\"1\"}}\n",
            BASE64.encode(vec![0; crate::dht::MAX_VALUE_SIZE + 1])
        );
        let good = "{\"data\":\"eQ==\",\"id\":\"2\"}\n";
        let stream = format!("HTTP/1.1 200 OK\r\n\r\n{long_id}{big}{good}");
        let (values, end) = read_listen_stream_for_test(stream.as_bytes());
        assert_eq!(values, [Bytes::from_static(b"y")]);
        assert!(end.is_ok(), "{end:?}");
    }

    #[test]
    fn endless_heads_lines_and_chunks_end_the_stream_in_bounded_memory() {
        use std::io::Read as _;
        let endless = |prefix: &'static [u8], byte: u8| prefix.chain(io::repeat(byte));
        // SECURITY: row 88
        let (_, end) = read_listen_stream_for_test(endless(b"HTTP/1.1 200 OK\r\nX: ", b'a'));
        assert!(invalid_data(&end), "an endless head: {end:?}");
        let long_head = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let (_, end) = read_listen_stream_for_test(long_head.as_bytes());
        assert!(invalid_data(&end), "a head past the limit: {end:?}");
        // SECURITY: row 89
        let (_, end) = read_listen_stream_for_test(endless(b"HTTP/1.1 200 OK\r\n\r\n", b'x'));
        assert!(invalid_data(&end), "an endless line: {end:?}");
        // SECURITY: row 90
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let huge = [&chunked[..], b"fffffffffffffff\r\n"].concat();
        let (_, end) = read_listen_stream_for_test(huge.chain(io::repeat(b'x')));
        assert!(
            invalid_data(&end),
            "a huge chunk of one endless line: {end:?}"
        );
        let too_big = [&chunked[..], b"1ffffffffffffffff\r\n"].concat();
        let (_, end) = read_listen_stream_for_test(&too_big[..]);
        assert!(invalid_data(&end), "a chunk size past 64 bits: {end:?}");
        let extensions = [&chunked[..], b"5;"].concat();
        let (_, end) = read_listen_stream_for_test(extensions.chain(io::repeat(b'e')));
        assert!(invalid_data(&end), "endless chunk extensions: {end:?}");
        // A put's answer is read up to its bound, whatever Content-Length says.
        let answer = endless(
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
            b'{',
        );
        let got = read_put_answer(answer);
        assert!(matches!(got, Err(e) if e.kind() == io::ErrorKind::InvalidData));
    }

    #[test]
    fn only_a_put_answered_with_an_id_is_stored() {
        // SECURITY: row 92
        let refused = b"HTTP/1.1 200 OK\r\nContent-Length: 22\r\n\r\n{\"err\":\"Put failed\"}\r\n";
        let stored = b"HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n{\"data\":\"eA==\",\"id\":\"42\",\"type\":0}\r\n\r\n";
        let proxy = serve(vec![vec![refused.to_vec()], vec![stored.to_vec()]]);
        let (client, rx) = client(proxy);
        let key = DhtKey([1; 20]);
        client.put(key, Bytes::from_static(b"x"));
        client.put(key, Bytes::from_static(b"x"));
        assert_eq!(
            rx.recv_timeout(TIMEOUT).ok(),
            Some(Input::DhtPutDone { key, ok: false })
        );
        assert_eq!(
            rx.recv_timeout(TIMEOUT).ok(),
            Some(Input::DhtPutDone { key, ok: true })
        );
    }
}
