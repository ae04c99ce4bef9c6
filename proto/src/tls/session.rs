//! A TLS 1.3 session over byte buffers: rustls, which is sans-IO already, wrapped in the four
//! verbs of every Ferry state machine.
//!
//! Settings: TLS 1.3 only; AES-256-GCM first (then ChaCha20-Poly1305, AES-128-GCM), chosen by
//! the server; X25519 only; the `ring` provider; no session tickets or resumption; both sides
//! present `[device, account]` and run the [`verify`](super::verify) checks against a [`Pin`].
//! The server name is a fixed string: a 64-hex device id is not a valid DNS name, and
//! identity is the pin's business, not the name's.
//!
//! Time: rustls asks a time provider for "now" when it checks certificates. Ours answers with
//! the time the caller passed to the last call, mapped to Unix time by a [`UnixAnchor`], so
//! certificates expire in the simulator's virtual time as they do on a wall clock.
//!
//! rustls draws handshake randomness from the operating system, so the bytes of two runs
//! differ: traces show TLS records by type and length, and what they carry only when the
//! session logs its secrets for them ([`TlsSession::with_key_log`], [`crate::trace::tls`]).

use std::collections::VecDeque;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ClientConnection, Connection, KeyLog, ServerConfig, ServerConnection};

use super::identity::Device;
use super::revocation::Revocations;
use super::verify::{PeerCheckError, PeerIdentity, Pin, PinnedVerifier, peer_check_failure};

/// The server name both sides use: fixed, since identity is checked by the pin.
pub const SERVER_NAME: &str = "ferry.invalid";

/// Maps the driver's `Instant`s to Unix time: `unix` was the Unix time at `instant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixAnchor {
    /// A moment on the driver's clock.
    pub instant: Instant,
    /// The Unix time at that moment.
    pub unix: Duration,
}

impl UnixAnchor {
    /// The Unix time at `now` (never before the anchor's).
    pub fn at(&self, now: Instant) -> UnixTime {
        UnixTime::since_unix_epoch(self.unix + now.saturating_duration_since(self.instant))
    }
}

/// rustls's clock: the time of the caller's last call, in Unix seconds.
#[derive(Debug, Default)]
struct CallerTime(AtomicU64);

impl rustls::time_provider::TimeProvider for CallerTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_secs(
            self.0.load(Ordering::Relaxed),
        )))
    }
}

/// Which side of the handshake this is. ICE's controlling agent is the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the ClientHello.
    Client,
    /// Answers it.
    Server,
}

/// What the session's owner feeds it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input {
    /// Bytes from the transport.
    Received(Bytes),
    /// The transport ended (closed or reset).
    StreamEnded,
}

/// What the session asks of its owner, or tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// TLS records to write to the transport (in RFC 4571 frames after
    /// [`TlsSession::rfc4571_framed`]).
    Transmit(Bytes),
    /// The handshake is done; the peer is who the pin said.
    Established(PeerIdentity),
    /// Application bytes from the peer.
    Plaintext(Bytes),
    /// The peer closed cleanly (close_notify); nothing more will come.
    Closed,
    /// The session failed; nothing more will come.
    Failed(TlsFailure),
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TlsFailure {
    /// We refused the peer's identity: the check that failed.
    #[error("peer refused: {0}")]
    PeerRejected(PeerCheckError),
    /// The peer refused us, with this TLS alert.
    #[error("the peer ended the handshake with alert {0}")]
    AlertReceived(String),
    /// A record did not decrypt: bytes were altered on the way.
    #[error("a record failed to decrypt: the stream was altered")]
    Corrupt,
    /// The transport ended without close_notify: the data may be cut short.
    #[error("the stream ended without close_notify")]
    Truncated,
    /// Any other TLS error.
    #[error("TLS error: {0}")]
    Protocol(String),
}

/// A session could not be set up (a local configuration problem, not the peer's doing).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS set-up failed: {0}")]
pub struct TlsSetupError(String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshaking,
    Established,
    /// Nothing more will come in (closed or failed).
    Over,
}

/// One TLS 1.3 session with one device.
pub struct TlsSession {
    conn: Connection,
    time: Arc<CallerTime>,
    anchor: UnixAnchor,
    state: State,
    peer: Option<PeerIdentity>,
    out: VecDeque<Output>,
    /// Records leave in RFC 4571 frames ([`rfc4571_framed`](TlsSession::rfc4571_framed)).
    rfc4571: bool,
    /// The plaintext of the records fed in one [`handle_input`](TlsSession::handle_input),
    /// handed out as one [`Output::Plaintext`] when it ends: one piece per arrival, not one
    /// per record, for the layers above to parse.
    plain: Vec<u8>,
}

impl std::fmt::Debug for TlsSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSession")
            .field("state", &self.state)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

/// Ferry's crypto provider: the `ring` provider with TLS 1.3 suites, AES-256-GCM first, and
/// X25519 alone.
pub fn provider() -> CryptoProvider {
    use rustls::crypto::ring::{cipher_suite, default_provider, kx_group};
    CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
            cipher_suite::TLS13_AES_128_GCM_SHA256,
        ],
        kx_groups: vec![kx_group::X25519],
        ..default_provider()
    }
}

impl TlsSession {
    /// Starts a session as `role`, presenting `device`, expecting the peer `pin`, honouring
    /// `revocations`. A client's first output is its ClientHello.
    pub fn new(
        role: Role,
        device: &Device,
        pin: Pin,
        revocations: Revocations,
        anchor: UnixAnchor,
        now: Instant,
    ) -> Result<TlsSession, TlsSetupError> {
        TlsSession::with_key_log(role, device, pin, revocations, anchor, now, None)
    }

    /// [`new`](Self::new), writing the session's secrets to `key_log` when there is one:
    /// for a trace that shows what travels inside TLS (see
    /// [`TlsSecrets`](crate::trace::TlsSecrets)), never in production, since whoever reads
    /// the log can decrypt the session.
    pub fn with_key_log(
        role: Role,
        device: &Device,
        pin: Pin,
        revocations: Revocations,
        anchor: UnixAnchor,
        now: Instant,
        key_log: Option<Arc<dyn KeyLog>>,
    ) -> Result<TlsSession, TlsSetupError> {
        let setup = |e: rustls::Error| TlsSetupError(e.to_string());
        let provider = Arc::new(provider());
        let time = Arc::new(CallerTime::default());
        time.0.store(anchor.at(now).as_secs(), Ordering::Relaxed);
        let verifier = Arc::new(PinnedVerifier::new(
            pin,
            revocations,
            provider.signature_verification_algorithms,
        ));
        let conn = match role {
            Role::Client => {
                let mut config = ClientConfig::builder_with_details(provider, time.clone())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(setup)?
                    .dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_client_auth_cert(device.chain(), device.private_key())
                    .map_err(setup)?;
                config.resumption = Resumption::disabled();
                if let Some(log) = key_log {
                    config.key_log = log;
                }
                let name =
                    ServerName::try_from(SERVER_NAME).map_err(|e| TlsSetupError(e.to_string()))?;
                Connection::Client(ClientConnection::new(Arc::new(config), name).map_err(setup)?)
            }
            Role::Server => {
                let mut config = ServerConfig::builder_with_details(provider, time.clone())
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(setup)?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(device.chain(), device.private_key())
                    .map_err(setup)?;
                config.send_tls13_tickets = 0;
                config.session_storage = Arc::new(NoServerSessionStorage {});
                // Our preference (AES-256-GCM first) decides, not the client's.
                config.ignore_client_order = true;
                if let Some(log) = key_log {
                    config.key_log = log;
                }
                Connection::Server(ServerConnection::new(Arc::new(config)).map_err(setup)?)
            }
        };
        let mut session = TlsSession {
            conn,
            time,
            anchor,
            state: State::Handshaking,
            peer: None,
            out: VecDeque::new(),
            rfc4571: false,
            plain: Vec::new(),
        };
        session.flush();
        Ok(session)
    }

    /// From now on, each [`Output::Transmit`] holds its records in RFC 4571 frames (as
    /// [`framing::encode`](crate::stun::framing::encode) would frame them), written in place
    /// as rustls writes the records: for an ICE-TCP path, which frames every run of
    /// application bytes, without copying each record once more to frame it. Records already
    /// waiting (the ClientHello) are framed too.
    pub fn rfc4571_framed(mut self) -> TlsSession {
        self.rfc4571 = true;
        for out in &mut self.out {
            if let Output::Transmit(records) = out {
                *records = crate::stun::framing::encode(records);
            }
        }
        self
    }

    /// Feeds transport bytes or the transport's end.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.state == State::Over {
            return;
        }
        self.set_time(now);
        match input {
            Input::Received(data) => {
                // Room for all it can hold (the plaintext is shorter than the records):
                // gathered without growing, so without a copy more.
                self.plain.reserve(data.len());
                let mut rest = &data[..];
                while !rest.is_empty() && self.state != State::Over {
                    match self.conn.read_tls(&mut rest) {
                        Ok(0) => break,
                        Ok(_) => self.process(),
                        Err(e) => return self.fail(TlsFailure::Protocol(e.to_string())),
                    }
                }
            }
            Input::StreamEnded => {
                // A zero-length read tells rustls the transport is done; without a
                // close_notify before it, the reader reports the truncation.
                let _ = self.conn.read_tls(&mut &[][..]);
                self.process();
                if self.state != State::Over {
                    self.fail(TlsFailure::Truncated);
                }
            }
        }
        self.emit_plaintext();
        self.flush();
    }

    /// Nothing in TLS itself waits on time here: the handshake's deadline is the owner's.
    pub fn handle_timeout(&mut self, _now: Instant) {}

    /// Encrypts application bytes. Only once established; the owner keeps its own send
    /// window, since every byte given here comes out at once as [`Output::Transmit`].
    pub fn send(&mut self, now: Instant, data: &[u8]) -> Result<(), crate::Error> {
        self.send_vectored(now, &[data])
    }

    /// [`send`](Self::send) for bytes in several pieces, in order, sealed into records as if
    /// they were one slice: no copy to join them, no short record at each piece's end.
    pub fn send_vectored(&mut self, now: Instant, parts: &[&[u8]]) -> Result<(), crate::Error> {
        if self.state != State::Established {
            return Err(crate::Error::NotNow(
                "send: the TLS session is not established",
            ));
        }
        self.set_time(now);
        let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
        let mut first = 0;
        while first < parts.len() {
            let slices: Vec<std::io::IoSlice<'_>> = parts[first..]
                .iter()
                .map(|p| std::io::IoSlice::new(p))
                .collect();
            // rustls takes a bounded amount at a time; emptying its queue makes room.
            let mut n =
                std::io::Write::write_vectored(&mut self.conn.writer(), &slices).unwrap_or(0);
            self.flush();
            if n == 0 {
                return Err(crate::Error::NotNow(
                    "send: the TLS session refused the bytes",
                ));
            }
            while n > 0 && first < parts.len() {
                let take = n.min(parts[first].len());
                parts[first] = &parts[first][take..];
                n -= take;
                if parts[first].is_empty() {
                    first += 1;
                }
            }
        }
        Ok(())
    }

    /// Ends our direction cleanly with close_notify.
    pub fn close(&mut self, now: Instant) {
        self.set_time(now);
        self.conn.send_close_notify();
        self.flush();
    }

    /// The next output.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Always `None`: see [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// Who the peer is, once established.
    pub fn peer(&self) -> Option<PeerIdentity> {
        self.peer
    }

    /// The negotiated cipher suite, once known.
    pub fn cipher_suite(&self) -> Option<rustls::CipherSuite> {
        self.conn.negotiated_cipher_suite().map(|s| s.suite())
    }

    /// Whether the handshake is done and the session not over.
    pub fn is_established(&self) -> bool {
        self.state == State::Established
    }

    fn set_time(&self, now: Instant) {
        self.time
            .0
            .store(self.anchor.at(now).as_secs(), Ordering::Relaxed);
    }

    fn process(&mut self) {
        let state = match self.conn.process_new_packets() {
            Ok(state) => state,
            Err(e) => return self.on_error(e),
        };
        if self.state == State::Handshaking && !self.conn.is_handshaking() {
            match self.identify_peer() {
                Some(peer) => {
                    self.peer = Some(peer);
                    self.state = State::Established;
                    self.out.push_back(Output::Established(peer));
                }
                None => {
                    return self.fail(TlsFailure::Protocol(
                        "no peer certificate after the handshake".to_owned(),
                    ));
                }
            }
        }
        self.read_plaintext(state.plaintext_bytes_to_read());
    }

    fn on_error(&mut self, e: rustls::Error) {
        // rustls queued an alert for the peer; send it before giving up.
        self.flush();
        let failure = match (peer_check_failure(&e), e) {
            (Some(check), _) => TlsFailure::PeerRejected(check),
            (None, rustls::Error::AlertReceived(alert)) => {
                TlsFailure::AlertReceived(format!("{alert:?}"))
            }
            (None, rustls::Error::DecryptError) => TlsFailure::Corrupt,
            (None, other) => TlsFailure::Protocol(other.to_string()),
        };
        self.fail(failure);
    }

    /// The ids of the chain the verifier accepted.
    fn identify_peer(&self) -> Option<PeerIdentity> {
        let chain = self.conn.peer_certificates()?;
        let device = super::id::DeviceId::of_certificate(chain.first()?).ok()?;
        let account = super::id::AccountId::of_certificate(chain.get(1)?).ok()?;
        Some(PeerIdentity { account, device })
    }

    /// Takes every plaintext byte rustls holds (`ready` of them, as its state said) into the
    /// arrival's plaintext, copied once straight from rustls's buffers (no zeroed scratch
    /// buffer); the end of the stream goes out behind it.
    fn read_plaintext(&mut self, ready: usize) {
        use std::io::BufRead as _;
        self.plain.reserve(ready);
        loop {
            let mut reader = self.conn.reader();
            match reader.fill_buf() {
                Ok([]) => {
                    self.emit_plaintext();
                    self.state = State::Over;
                    self.out.push_back(Output::Closed);
                    return;
                }
                Ok(chunk) => {
                    let n = chunk.len();
                    self.plain.extend_from_slice(chunk);
                    reader.consume(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return self.fail(TlsFailure::Truncated);
                }
                Err(e) => return self.fail(TlsFailure::Protocol(e.to_string())),
            }
        }
    }

    /// The plaintext gathered so far goes out, ahead of whatever follows it.
    fn emit_plaintext(&mut self) {
        if !self.plain.is_empty() {
            let plain = std::mem::take(&mut self.plain);
            self.out.push_back(Output::Plaintext(Bytes::from(plain)));
        }
    }

    fn fail(&mut self, failure: TlsFailure) {
        self.emit_plaintext();
        if self.state != State::Over {
            self.state = State::Over;
            self.out.push_back(Output::Failed(failure));
        }
    }

    fn flush(&mut self) {
        while self.rfc4571 && self.conn.wants_write() {
            // One output per `write_tls`, as below: the same sends, framed in place.
            let mut frames = crate::stun::framing::FrameWriter::new();
            match self.conn.write_tls(&mut frames) {
                Ok(0) | Err(_) => break,
                Ok(_) => self.out.push_back(Output::Transmit(frames.finish())),
            }
        }
        while self.conn.wants_write() {
            let mut records = Vec::new();
            match self.conn.write_tls(&mut records) {
                Ok(0) | Err(_) => break,
                Ok(_) => self.out.push_back(Output::Transmit(Bytes::from(records))),
            }
        }
    }
}
