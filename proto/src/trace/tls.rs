//! TLS 1.3 records (RFC 8446) as a trace shows them.
//!
//! Their bytes differ from run to run (rustls draws its randomness from the operating
//! system), their types, lengths and contents do not. [`records`] names records by content
//! type and length. [`TlsWire`] follows both directions of one connection and, given the
//! session's secrets ([`TlsSecrets`], filled by rustls as the sessions run), opens the
//! protected records the way Wireshark does with an `SSLKEYLOGFILE`, so a trace shows the
//! handshake message by message and hands on the application data. Protected handshake
//! messages are written in braces and protected post-handshake ones in brackets, as in
//! RFC 8446's figures: `TLS Handshake 1112: {EncryptedExtensions} {CertificateRequest}
//! {Certificate} {CertificateVerify} {Finished}`, `TLS Alert 19: [close_notify]`. Without
//! secrets, protected records are counted as `TLS data`.
//!
//! No secret, random value or ciphertext byte ever reaches a line.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ring::hkdf::KeyType as _;
use ring::{aead, hkdf};

use super::Summary;

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const FINISHED: u8 = 20;
const KEY_UPDATE: u8 = 24;

/// Summaries of the TLS records in `data` for traces: content type and length only, since
/// the bytes differ from run to run. Bytes that do not start a record (a split) are counted.
pub fn records(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 5 {
        let Some(kind) = content_type(rest[0]) else {
            break;
        };
        let len = u16::from_be_bytes([rest[3], rest[4]]) as usize;
        out.push(format!("TLS {kind} {len}"));
        rest = &rest[(5 + len).min(rest.len())..];
    }
    if !rest.is_empty() {
        out.push(format!("TLS … {} bytes", rest.len()));
    }
    out
}

fn content_type(byte: u8) -> Option<&'static str> {
    Some(match byte {
        CHANGE_CIPHER_SPEC => "ChangeCipherSpec",
        ALERT => "Alert",
        HANDSHAKE => "Handshake",
        APPLICATION_DATA => "ApplicationData",
        _ => return None,
    })
}

fn handshake_type(byte: u8) -> String {
    match byte {
        CLIENT_HELLO => "ClientHello".to_owned(),
        SERVER_HELLO => "ServerHello".to_owned(),
        4 => "NewSessionTicket".to_owned(),
        5 => "EndOfEarlyData".to_owned(),
        8 => "EncryptedExtensions".to_owned(),
        11 => "Certificate".to_owned(),
        13 => "CertificateRequest".to_owned(),
        15 => "CertificateVerify".to_owned(),
        FINISHED => "Finished".to_owned(),
        KEY_UPDATE => "KeyUpdate".to_owned(),
        other => format!("handshake({other})"),
    }
}

/// An alert as RFC 8446 §6 names it: `close_notify`, `fatal certificate_unknown`.
fn alert(body: &[u8]) -> String {
    let [level, description] = body else {
        return format!("alert? {} bytes", body.len());
    };
    let name = match description {
        0 => "close_notify".to_owned(),
        10 => "unexpected_message".to_owned(),
        20 => "bad_record_mac".to_owned(),
        40 => "handshake_failure".to_owned(),
        42 => "bad_certificate".to_owned(),
        43 => "unsupported_certificate".to_owned(),
        44 => "certificate_revoked".to_owned(),
        45 => "certificate_expired".to_owned(),
        46 => "certificate_unknown".to_owned(),
        47 => "illegal_parameter".to_owned(),
        48 => "unknown_ca".to_owned(),
        49 => "access_denied".to_owned(),
        50 => "decode_error".to_owned(),
        51 => "decrypt_error".to_owned(),
        70 => "protocol_version".to_owned(),
        71 => "insufficient_security".to_owned(),
        80 => "internal_error".to_owned(),
        90 => "user_canceled".to_owned(),
        109 => "missing_extension".to_owned(),
        110 => "unsupported_extension".to_owned(),
        116 => "certificate_required".to_owned(),
        other => format!("alert({other})"),
    };
    // close_notify and user_canceled are warnings by definition; say the level of the rest.
    match level {
        2 => format!("fatal {name}"),
        _ => name,
    }
}

/// The secrets of TLS sessions, as rustls logs them (its [`rustls::KeyLog`], with the NSS key
/// log format's labels), for a [`TlsWire`] to open records with.
///
/// Give one to the nodes of a simulation (`NodeConfig::tls_key_log`) and to the trace's
/// decoder; never to anything that leaves a test or a debugging session: whoever holds it can
/// read every connection those sessions carry.
#[derive(Debug, Default)]
pub struct TlsSecrets {
    /// A client and its server both log a session's secrets, under the same client random:
    /// the same values twice.
    secrets: Mutex<BTreeMap<SecretName, Vec<u8>>>,
}

/// Which secret: the session's client random, and the key log label
/// (`SERVER_HANDSHAKE_TRAFFIC_SECRET`, …).
type SecretName = (Vec<u8>, String);

impl TlsSecrets {
    /// An empty log.
    pub fn new() -> TlsSecrets {
        TlsSecrets::default()
    }

    fn get(&self, client_random: &[u8], label: &str) -> Option<Vec<u8>> {
        // A poisoned lock only means a logging thread panicked mid-insert; what is there is
        // still whole (a BTreeMap insert does not leave half a value).
        let secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        secrets
            .get(&(client_random.to_vec(), label.to_owned()))
            .cloned()
    }
}

impl rustls::KeyLog for TlsSecrets {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        let mut secrets = self.secrets.lock().unwrap_or_else(|e| e.into_inner());
        secrets.insert((client_random.to_vec(), label.to_owned()), secret.to_vec());
    }
}

/// Ferry's cipher suites (see `tls::provider`), by what opening a record needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Suite {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl Suite {
    fn from_id(id: u16) -> Option<Suite> {
        match id {
            0x1301 => Some(Suite::Aes128Gcm),
            0x1302 => Some(Suite::Aes256Gcm),
            0x1303 => Some(Suite::Chacha20Poly1305),
            _ => None,
        }
    }

    fn hkdf(self) -> hkdf::Algorithm {
        match self {
            Suite::Aes256Gcm => hkdf::HKDF_SHA384,
            Suite::Aes128Gcm | Suite::Chacha20Poly1305 => hkdf::HKDF_SHA256,
        }
    }

    fn aead(self) -> &'static aead::Algorithm {
        match self {
            Suite::Aes128Gcm => &aead::AES_128_GCM,
            Suite::Aes256Gcm => &aead::AES_256_GCM,
            Suite::Chacha20Poly1305 => &aead::CHACHA20_POLY1305,
        }
    }
}

/// An output length for ring's HKDF.
struct Len(usize);

impl hkdf::KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// HKDF-Expand-Label with an empty context (RFC 8446 §7.1).
fn expand_label(suite: Suite, secret: &[u8], label: &[u8], len: usize) -> Option<Vec<u8>> {
    let prk = hkdf::Prk::new_less_safe(suite.hkdf(), secret);
    let out_len = u16::try_from(len).ok()?.to_be_bytes();
    let label_len = [u8::try_from(b"tls13 ".len() + label.len()).ok()?];
    let info: [&[u8]; 5] = [&out_len, &label_len, b"tls13 ", label, &[0]];
    let okm = prk.expand(&info, Len(len)).ok()?;
    let mut out = vec![0; len];
    okm.fill(&mut out).ok()?;
    Some(out)
}

/// Which keys protect a direction's records now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Epoch {
    /// Before any protection (hellos, and a change_cipher_spec for middleboxes).
    Plain,
    /// `[sender]_handshake_traffic_secret`: written `{…}`.
    Handshake,
    /// `[sender]_application_traffic_secret_N`: written `[…]`.
    Application(u32),
}

/// The keys of one epoch of one direction.
struct Keys {
    secret: Vec<u8>,
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret or the key, even in a Debug dump.
        f.debug_struct("Keys").field("seq", &self.seq).finish()
    }
}

impl Keys {
    fn from_secret(suite: Suite, secret: Vec<u8>) -> Option<Keys> {
        let alg = suite.aead();
        let key = expand_label(suite, &secret, b"key", alg.key_len())?;
        let iv = expand_label(suite, &secret, b"iv", aead::NONCE_LEN)?;
        Some(Keys {
            key: aead::LessSafeKey::new(aead::UnboundKey::new(alg, &key).ok()?),
            iv: iv.try_into().ok()?,
            secret,
            seq: 0,
        })
    }

    /// Opens one protected record: its inner content type and content.
    fn open(&mut self, header: &[u8], body: &[u8]) -> Option<(u8, Vec<u8>)> {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
            *n ^= s;
        }
        let mut buf = body.to_vec();
        let plain = self
            .key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(header),
                &mut buf,
            )
            .ok()?;
        self.seq += 1;
        // TLSInnerPlaintext: content, the real content type, then zero padding.
        let end = plain.iter().rposition(|&b| b != 0)?;
        Some((plain[end], plain[..end].to_vec()))
    }
}

/// One direction of a connection.
#[derive(Debug)]
struct Flow {
    /// The bytes of a record not yet whole: records span RFC 4571 frames, or share one.
    pending: Vec<u8>,
    /// Handshake messages span records: the bytes of one not yet whole.
    handshake: Vec<u8>,
    epoch: Epoch,
    keys: Option<Keys>,
    /// A record did not open: the rest of this direction is counted, not read.
    opaque: bool,
}

impl Default for Flow {
    fn default() -> Self {
        Flow {
            pending: Vec::new(),
            handshake: Vec::new(),
            epoch: Epoch::Plain,
            keys: None,
            opaque: false,
        }
    }
}

/// What one record of a [`TlsWire`] gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A line about the record itself.
    Line(Summary),
    /// Application data, opened: for the protocol inside.
    Plaintext(Vec<u8>),
}

/// Both directions of one TLS connection (see the module docs). A direction is named by
/// `from_opener`, as a [`WireDecoder`](super::WireDecoder) names it.
#[derive(Debug)]
pub struct TlsWire {
    secrets: Option<Arc<TlsSecrets>>,
    /// Indexed by `from_opener`.
    directions: [Flow; 2],
    /// The direction that sent the ClientHello, and its random (which names the session in
    /// the key log).
    client: Option<(bool, [u8; 32])>,
    suite: Option<Suite>,
}

impl TlsWire {
    /// A connection on which nothing was sent yet; without `secrets`, protected records are
    /// only counted.
    pub fn new(secrets: Option<Arc<TlsSecrets>>) -> TlsWire {
        TlsWire {
            secrets,
            directions: Default::default(),
            client: None,
            suite: None,
        }
    }

    /// Whether a record is partly seen in this direction: the next bytes continue it.
    pub fn is_mid_record(&self, from_opener: bool) -> bool {
        !self.directions[usize::from(from_opener)].pending.is_empty()
    }

    /// Decodes the records completed by `data`, sent in this direction.
    pub fn decode(&mut self, from_opener: bool, data: &[u8]) -> Vec<Decoded> {
        let pending = &mut self.directions[usize::from(from_opener)].pending;
        pending.extend_from_slice(data);
        let whole = whole_records(pending);
        let mut out = Vec::new();
        let mut rest = &whole[..];
        while rest.len() >= 5 {
            let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
            let (record, next) = rest.split_at(5 + len);
            rest = next;
            if content_type(record[0]).is_none() {
                // Not TLS, or lost in it: count the rest as it is.
                out.push(Decoded::Line(Summary::plain(format!(
                    "TLS … {} bytes",
                    record.len() + rest.len()
                ))));
                return out;
            }
            self.record(from_opener, record, &mut out);
        }
        out
    }

    fn record(&mut self, from: bool, record: &[u8], out: &mut Vec<Decoded>) {
        let (header, body) = record.split_at(5);
        let len = body.len();
        let kind = record[0];
        if kind != APPLICATION_DATA {
            let text = match kind {
                HANDSHAKE => {
                    let names = self.handshake(from, body);
                    format!("TLS Handshake {len}: {}", names.join(" "))
                }
                ALERT => format!("TLS Alert {len}: {}", alert(body)),
                _ => format!("TLS ChangeCipherSpec {len}"),
            };
            out.push(Decoded::Line(Summary::plain(text)));
            return;
        }
        let Some((inner, content)) = self.open(from, header, body) else {
            out.push(Decoded::Line(Summary::sum("TLS data", len as u64)));
            return;
        };
        let epoch = self.directions[usize::from(from)].epoch;
        let protected = |what: &str| match epoch {
            Epoch::Application(_) => format!("[{what}]"),
            _ => format!("{{{what}}}"),
        };
        let text = match inner {
            HANDSHAKE => {
                let names: Vec<String> = self
                    .handshake(from, &content)
                    .iter()
                    .map(|n| protected(n))
                    .collect();
                format!("TLS Handshake {len}: {}", names.join(" "))
            }
            ALERT => format!("TLS Alert {len}: {}", protected(&alert(&content))),
            APPLICATION_DATA => return out.push(Decoded::Plaintext(content)),
            other => format!("TLS {len}: {}", protected(&format!("content type {other}"))),
        };
        out.push(Decoded::Line(Summary::plain(text)));
    }

    /// The names of the handshake messages this piece completes; notes what opening the
    /// records needs (the client random, the suite) and moves to the next keys after a
    /// ServerHello, a Finished or a KeyUpdate.
    fn handshake(&mut self, from: bool, piece: &[u8]) -> Vec<String> {
        let dir = &mut self.directions[usize::from(from)];
        dir.handshake.extend_from_slice(piece);
        let mut messages = Vec::new();
        while dir.handshake.len() >= 4 {
            let h = &dir.handshake;
            let len = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
            if h.len() < 4 + len {
                break;
            }
            messages.push(dir.handshake.drain(..4 + len).collect::<Vec<u8>>());
        }
        let mut names = Vec::new();
        for message in messages {
            let body = &message[4..];
            match message[0] {
                // legacy_version, then random.
                CLIENT_HELLO if body.len() >= 34 => {
                    let mut random = [0; 32];
                    random.copy_from_slice(&body[2..34]);
                    self.client = Some((from, random));
                }
                // legacy_version, random, legacy_session_id_echo, then the cipher suite.
                SERVER_HELLO if body.len() >= 35 => {
                    let at = 35 + usize::from(body[34]);
                    if let Some(id) = body.get(at..at + 2) {
                        self.suite = Suite::from_id(u16::from_be_bytes([id[0], id[1]]));
                    }
                    // From here on both ends protect their handshake with handshake keys.
                    for d in &mut self.directions {
                        d.epoch = Epoch::Handshake;
                        d.keys = None;
                    }
                }
                FINISHED => {
                    let dir = &mut self.directions[usize::from(from)];
                    if dir.epoch == Epoch::Handshake {
                        dir.epoch = Epoch::Application(0);
                        dir.keys = None;
                    }
                }
                KEY_UPDATE => self.update_keys(from),
                _ => {}
            }
            names.push(handshake_type(message[0]));
        }
        if names.is_empty() {
            names.push("(continued)".to_owned());
        }
        names
    }

    /// After a KeyUpdate, the sender's next secret derives from its current one (RFC 8446
    /// §7.2); rustls does not log it.
    fn update_keys(&mut self, from: bool) {
        let suite = self.suite;
        let dir = &mut self.directions[usize::from(from)];
        let Epoch::Application(n) = dir.epoch else {
            return;
        };
        dir.epoch = Epoch::Application(n + 1);
        dir.keys = suite.zip(dir.keys.take()).and_then(|(suite, keys)| {
            let next = expand_label(suite, &keys.secret, b"traffic upd", suite.hkdf().len())?;
            Keys::from_secret(suite, next)
        });
        if dir.keys.is_none() {
            dir.opaque = true;
        }
    }

    /// Opens a protected record sent `from` one end, with the keys of its epoch.
    fn open(&mut self, from: bool, header: &[u8], body: &[u8]) -> Option<(u8, Vec<u8>)> {
        let (client, random) = self.client?;
        let suite = self.suite?;
        let secrets = self.secrets.as_ref()?;
        let dir = &mut self.directions[usize::from(from)];
        if dir.opaque {
            return None;
        }
        if dir.keys.is_none() {
            let side = if from == client { "CLIENT" } else { "SERVER" };
            let label = match dir.epoch {
                Epoch::Handshake => format!("{side}_HANDSHAKE_TRAFFIC_SECRET"),
                Epoch::Application(0) => format!("{side}_TRAFFIC_SECRET_0"),
                Epoch::Plain | Epoch::Application(_) => String::new(),
            };
            dir.keys = secrets
                .get(&random, &label)
                .and_then(|secret| Keys::from_secret(suite, secret));
        }
        let opened = dir.keys.as_mut().and_then(|k| k.open(header, body));
        if opened.is_none() {
            dir.opaque = true;
        }
        opened
    }
}

/// Takes the whole TLS records at the front of `pending`, leaving a partial one.
fn whole_records(pending: &mut Vec<u8>) -> Vec<u8> {
    let mut end = 0;
    while pending.len() >= end + 5 {
        let len = usize::from(u16::from_be_bytes([pending[end + 3], pending[end + 4]]));
        if pending.len() < end + 5 + len {
            break;
        }
        end += 5 + len;
    }
    pending.drain(..end).collect()
}

#[cfg(test)]
mod tests {
    use super::records;

    #[test]
    fn records_are_traced_by_type_and_length_only() {
        let mut wire = vec![22, 3, 3, 0, 4, 1, 2, 3, 4];
        wire.extend_from_slice(&[23, 3, 3, 0, 2, 9, 9]);
        wire.extend_from_slice(&[23, 3]);
        assert_eq!(
            records(&wire),
            ["TLS Handshake 4", "TLS ApplicationData 2", "TLS … 2 bytes"]
        );
        assert_eq!(records(&[99, 0, 0, 0, 0]), ["TLS … 5 bytes"]);
    }
}
