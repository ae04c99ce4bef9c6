//! Identities and TLS 1.3 sessions, in memory. Run with `cargo test -p ferry-proto tls`.

mod tls {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use ferry_proto::tls::{
        Account, Device, IdentityError, Input, Output, PeerCheckError, PeerIdentity, PeerRole, Pin,
        RevocationError, RevocationList, Revocations, Role, TlsFailure, TlsSession, UnixAnchor,
        Validity, check_peer, derive_seed,
    };
    use ferry_proto::trace::tls::{Decoded, TlsSecrets, TlsWire};
    use rustls::pki_types::{CertificateDer, UnixTime};

    /// 2026-11-26, the Unix time the tests' virtual clock starts at.
    const T0: u64 = 1_795_651_200;

    fn validity() -> Validity {
        Validity::days_from(T0 - 86_400, 365)
    }

    fn account(name: &str) -> Account {
        Account::from_seed(&derive_seed(b"tests", name), validity()).expect("account")
    }

    fn device(account: &Account, name: &str) -> Device {
        account
            .add_device(&derive_seed(b"tests", name), validity())
            .expect("device")
    }

    fn pin(d: &Device) -> Pin {
        Pin {
            account: d.account(),
            device: d.id(),
        }
    }

    struct Pair {
        now: Instant,
        client: TlsSession,
        server: TlsSession,
        client_got: Vec<Output>,
        server_got: Vec<Output>,
    }

    impl Pair {
        /// `client` expects `server_pin`, `server` expects `client_pin`.
        fn new(
            client: &Device,
            server_pin: Pin,
            server: &Device,
            client_pin: Pin,
            client_knows: Revocations,
        ) -> Pair {
            let now = Instant::now();
            let anchor = UnixAnchor {
                instant: now,
                unix: Duration::from_secs(T0),
            };
            Pair {
                now,
                client: TlsSession::new(
                    Role::Client,
                    client,
                    server_pin,
                    client_knows,
                    anchor,
                    now,
                )
                .expect("client"),
                server: TlsSession::new(
                    Role::Server,
                    server,
                    client_pin,
                    Revocations::new(),
                    anchor,
                    now,
                )
                .expect("server"),
                client_got: Vec::new(),
                server_got: Vec::new(),
            }
        }

        fn between(a: &Device, b: &Device) -> Pair {
            Pair::new(a, pin(b), b, pin(a), Revocations::new())
        }

        /// Moves records both ways until both are quiet; `tamper` may alter client → server bytes.
        fn pump_with(&mut self, mut tamper: impl FnMut(&mut Vec<u8>)) {
            for _ in 0..50 {
                let mut moved = false;
                while let Some(o) = self.client.poll_output() {
                    match o {
                        Output::Transmit(b) => {
                            let mut b = b.to_vec();
                            tamper(&mut b);
                            self.server
                                .handle_input(self.now, Input::Received(Bytes::from(b)));
                            moved = true;
                        }
                        other => self.client_got.push(other),
                    }
                }
                while let Some(o) = self.server.poll_output() {
                    match o {
                        Output::Transmit(b) => {
                            self.client.handle_input(self.now, Input::Received(b));
                            moved = true;
                        }
                        other => self.server_got.push(other),
                    }
                }
                if !moved {
                    return;
                }
            }
            panic!("the sessions never went quiet");
        }

        fn pump(&mut self) {
            self.pump_with(|_| {});
        }

        fn failure(got: &[Output]) -> Option<TlsFailure> {
            got.iter().find_map(|o| match o {
                Output::Failed(f) => Some(f.clone()),
                _ => None,
            })
        }

        fn plaintext(got: &[Output]) -> Vec<u8> {
            got.iter()
                .flat_map(|o| match o {
                    Output::Plaintext(b) => b.to_vec(),
                    _ => Vec::new(),
                })
                .collect()
        }
    }

    #[test]
    fn handshake_and_data_both_ways_with_aes_256_gcm() {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
        let mut p = Pair::between(&a1, &b1);
        p.pump();
        assert_eq!(
            p.client_got.first(),
            Some(&Output::Established(PeerIdentity {
                account: bob.id(),
                device: b1.id()
            }))
        );
        assert_eq!(
            p.server_got.first(),
            Some(&Output::Established(PeerIdentity {
                account: alice.id(),
                device: a1.id()
            }))
        );
        assert_eq!(
            p.client.cipher_suite(),
            Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384)
        );
        assert_eq!(
            p.server.cipher_suite(),
            Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384)
        );

        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        p.client.send(p.now, &big).expect("established");
        p.server.send(p.now, b"GO 0\n").expect("established");
        p.pump();
        assert_eq!(Pair::plaintext(&p.server_got), big);
        assert_eq!(Pair::plaintext(&p.client_got), b"GO 0\n");

        // A clean close is not a truncation.
        p.client.close(p.now);
        p.pump();
        assert_eq!(p.server_got.last(), Some(&Output::Closed));
        p.server.handle_input(p.now, Input::StreamEnded);
        assert_eq!(
            p.server.poll_output(),
            None,
            "after close_notify, the end of the stream is expected"
        );
    }

    /// The lengths of every record each side sent during a handshake and one message.
    fn record_lengths() -> Vec<(char, String)> {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
        let mut p = Pair::between(&a1, &b1);
        let mut seen = Vec::new();
        for _ in 0..10 {
            while let Some(o) = p.client.poll_output() {
                if let Output::Transmit(b) = o {
                    seen.extend(
                        ferry_proto::trace::tls::records(&b)
                            .into_iter()
                            .map(|r| ('c', r)),
                    );
                    p.server.handle_input(p.now, Input::Received(b));
                }
            }
            while let Some(o) = p.server.poll_output() {
                if let Output::Transmit(b) = o {
                    seen.extend(
                        ferry_proto::trace::tls::records(&b)
                            .into_iter()
                            .map(|r| ('s', r)),
                    );
                    p.client.handle_input(p.now, Input::Received(b));
                }
            }
            if p.client.is_established() && p.server.is_established() && seen.len() < 100 {
                let _ = p.client.send(p.now, b"hello");
            }
        }
        seen
    }

    /// What a trace shows of one session: each record as `c:`/`s:` and its line, or the
    /// plaintext it carries; `secrets` opens the records when given.
    fn traced_session(secrets: Option<Arc<TlsSecrets>>) -> Vec<String> {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
        let now = Instant::now();
        let anchor = UnixAnchor {
            instant: now,
            unix: Duration::from_secs(T0),
        };
        let log = || secrets.clone().map(|s| s as Arc<dyn rustls::KeyLog>);
        let mut client = TlsSession::with_key_log(
            Role::Client,
            &a1,
            pin(&b1),
            Revocations::new(),
            anchor,
            now,
            log(),
        )
        .expect("client");
        let mut server = TlsSession::with_key_log(
            Role::Server,
            &b1,
            pin(&a1),
            Revocations::new(),
            anchor,
            now,
            log(),
        )
        .expect("server");
        // The client opened the connection: it is `from_opener`.
        let mut wire = TlsWire::new(secrets.clone());
        let mut seen = Vec::new();
        let mut show = |from_client: bool, bytes: &[u8]| {
            for d in wire.decode(from_client, bytes) {
                let who = if from_client { 'c' } else { 's' };
                seen.push(match d {
                    Decoded::Line(s) if s.bulk.is_some() => format!("{who}: {:?}", s.bulk),
                    Decoded::Line(s) => format!("{who}: {}", s.text),
                    Decoded::Plaintext(p) => {
                        format!("{who}: plaintext {:?}", String::from_utf8_lossy(&p))
                    }
                });
            }
        };
        let (mut said_hello, mut closed) = (false, false);
        for _ in 0..20 {
            while let Some(o) = client.poll_output() {
                if let Output::Transmit(b) = o {
                    show(true, &b);
                    server.handle_input(now, Input::Received(b));
                }
            }
            while let Some(o) = server.poll_output() {
                if let Output::Transmit(b) = o {
                    show(false, &b);
                    client.handle_input(now, Input::Received(b));
                }
            }
            if client.is_established() && server.is_established() && !said_hello {
                said_hello = true;
                client.send(now, b"hello").expect("established");
            } else if said_hello && !closed {
                closed = true;
                server.close(now);
            }
        }
        seen
    }

    #[test]
    fn a_trace_opens_records_with_the_logged_secrets() {
        let seen = traced_session(Some(Arc::new(TlsSecrets::new())));
        // Record lengths depend on the certificates; the shape is the point here.
        let without_lengths: Vec<String> = seen
            .iter()
            .map(|l| {
                l.split(' ')
                    .filter(|w| {
                        let n = w.strip_suffix(':').unwrap_or("");
                        n.is_empty() || !n.chars().all(|c| c.is_ascii_digit())
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        assert_eq!(
            without_lengths,
            [
                "c: TLS Handshake ClientHello",
                "s: TLS Handshake ServerHello",
                "s: TLS ChangeCipherSpec 1",
                "s: TLS Handshake {EncryptedExtensions} {CertificateRequest} {Certificate} {CertificateVerify} {Finished}",
                "c: TLS ChangeCipherSpec 1",
                "c: TLS Handshake {Certificate} {CertificateVerify} {Finished}",
                "c: plaintext \"hello\"",
                "s: TLS Alert [close_notify]",
            ],
            "{seen:#?}"
        );
        // Lengths, and so lines, do not depend on the run's randomness.
        assert_eq!(seen, traced_session(Some(Arc::new(TlsSecrets::new()))));
    }

    #[test]
    fn without_secrets_protected_records_are_only_counted() {
        let seen = traced_session(None);
        assert!(seen.iter().any(|l| l.contains("ClientHello")), "{seen:#?}");
        assert!(
            seen.iter().filter(|l| l.contains("TLS data")).count() >= 4,
            "{seen:#?}"
        );
        assert!(!seen.iter().any(|l| l.contains("plaintext")), "{seen:#?}");
    }

    #[test]
    fn record_types_and_lengths_are_the_same_in_every_run() {
        // rustls's randomness changes the bytes, not the shape: traces stay reproducible.
        let first = record_lengths();
        assert!(first.len() > 4, "{first:?}");
        assert_eq!(first, record_lengths());
    }

    #[test]
    fn nothing_is_sent_before_the_handshake() {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
        let mut p = Pair::between(&a1, &b1);
        assert!(p.client.send(p.now, b"early").is_err());
    }

    #[test]
    fn a_device_of_another_account_posing_as_the_expected_one_is_refused() {
        let (alice, bob, mallory) = (account("alice"), account("bob"), account("mallory"));
        let (a1, b1, m1) = (
            device(&alice, "a1"),
            device(&bob, "b1"),
            device(&mallory, "m1"),
        );
        // SECURITY: row 46
        // Alice meant to reach Bob's device; Mallory's device answers.
        let mut p = Pair::new(&a1, pin(&b1), &m1, pin(&a1), Revocations::new());
        p.pump();
        assert_eq!(
            Pair::failure(&p.client_got),
            Some(TlsFailure::PeerRejected(PeerCheckError::AccountMismatch {
                expected: bob.id(),
                presented: mallory.id()
            }))
        );
        assert!(
            matches!(
                Pair::failure(&p.server_got),
                Some(TlsFailure::AlertReceived(_))
            ),
            "{:?}",
            p.server_got
        );
        assert!(!p.client.is_established() && !p.server.is_established());
    }

    #[test]
    fn another_device_of_the_right_account_is_refused_too() {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, b1, b2) = (device(&alice, "a1"), device(&bob, "b1"), device(&bob, "b2"));
        // SECURITY: row 48
        let mut p = Pair::new(&a1, pin(&b1), &b2, pin(&a1), Revocations::new());
        p.pump();
        assert_eq!(
            Pair::failure(&p.client_got),
            Some(TlsFailure::PeerRejected(PeerCheckError::DeviceMismatch {
                expected: b1.id(),
                presented: b2.id()
            }))
        );
    }

    #[test]
    fn the_server_pins_the_device_that_signed_the_request() {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, a2, b1) = (
            device(&alice, "a1"),
            device(&alice, "a2"),
            device(&bob, "b1"),
        );
        // Bob answered a request signed by a1, but a2 connects.
        let mut p = Pair::new(&a2, pin(&b1), &b1, pin(&a1), Revocations::new());
        p.pump();
        assert_eq!(
            Pair::failure(&p.server_got),
            Some(TlsFailure::PeerRejected(PeerCheckError::DeviceMismatch {
                expected: a1.id(),
                presented: a2.id()
            }))
        );
    }

    #[test]
    fn a_revoked_device_is_refused() {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
        // SECURITY: row 49
        let list = bob.revoke(&[b1.id()], T0, 1).expect("revocation list");
        // The list travels as bytes and is checked against Bob's account certificate.
        let received =
            RevocationList::from_der(list.der(), bob.certificate()).expect("signed by bob");
        assert!(received.names(&b1.id()));
        let mut known = Revocations::new();
        assert!(known.add(received));
        let mut p = Pair::new(&a1, pin(&b1), &b1, pin(&a1), known);
        p.pump();
        assert_eq!(
            Pair::failure(&p.client_got),
            Some(TlsFailure::PeerRejected(PeerCheckError::Revoked(b1.id())))
        );
    }

    #[test]
    fn a_revocation_list_not_signed_by_the_account_is_refused_and_old_lists_do_not_replace_new_ones()
     {
        let (bob, mallory) = (account("bob"), account("mallory"));
        let b1 = device(&bob, "b1");
        // SECURITY: row 50
        let forged = mallory.revoke(&[b1.id()], T0, 9).expect("list");
        assert_eq!(
            RevocationList::from_der(forged.der(), bob.certificate()),
            Err(RevocationError::NotSignedByAccount(bob.id()))
        );
        assert!(matches!(
            RevocationList::from_der(b"garbage", bob.certificate()),
            Err(RevocationError::Malformed(_))
        ));
        let newer = RevocationList::from_der(
            bob.revoke(&[b1.id()], T0, 2).expect("list").der(),
            bob.certificate(),
        )
        .expect("ok");
        let older = RevocationList::from_der(
            bob.revoke(&[], T0, 1).expect("list").der(),
            bob.certificate(),
        )
        .expect("ok");
        assert_eq!(
            (newer.number(), older.number()),
            (2, 1),
            "the CRL number is read back from the DER"
        );
        let mut known = Revocations::new();
        assert!(known.add(newer));
        assert!(!known.add(older), "an older list cannot un-revoke a device");
        assert!(known.of(&bob.id()).is_some_and(|l| l.names(&b1.id())));
    }

    #[test]
    fn an_expired_certificate_is_refused_at_a_virtual_time_past_its_expiry() {
        let (alice, bob) = (account("alice"), account("bob"));
        let a1 = device(&alice, "a1");
        let short = bob
            .add_device(
                &derive_seed(b"tests", "b-short"),
                Validity::days_from(T0 - 86_400, 2),
            )
            .expect("device");
        // SECURITY: row 51
        // The same sessions, started three days later in virtual time.
        let now = Instant::now();
        let anchor = UnixAnchor {
            instant: now,
            unix: Duration::from_secs(T0),
        };
        let later = now + Duration::from_secs(3 * 86_400);
        let mut client = TlsSession::new(
            Role::Client,
            &a1,
            pin(&short),
            Revocations::new(),
            anchor,
            later,
        )
        .expect("client");
        let mut server = TlsSession::new(
            Role::Server,
            &short,
            pin(&a1),
            Revocations::new(),
            anchor,
            later,
        )
        .expect("server");
        let mut failure = None;
        for _ in 0..10 {
            while let Some(o) = client.poll_output() {
                match o {
                    Output::Transmit(b) => server.handle_input(later, Input::Received(b)),
                    Output::Failed(f) => failure = Some(f),
                    _ => {}
                }
            }
            while let Some(o) = server.poll_output() {
                if let Output::Transmit(b) = o {
                    client.handle_input(later, Input::Received(b));
                }
            }
        }
        assert_eq!(
            failure,
            Some(TlsFailure::PeerRejected(PeerCheckError::Expired))
        );
        // And at the anchor itself, the same certificate is fine.
        let chain = short.chain();
        assert!(
            check_peer(
                &chain,
                &pin(&short),
                &Revocations::new(),
                UnixTime::since_unix_epoch(Duration::from_secs(T0)),
                PeerRole::Server
            )
            .is_ok()
        );
    }

    #[test]
    fn a_self_signed_device_certificate_is_refused() {
        let bob = account("bob");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "b1");
        params.not_before = rcgen::date_time_ymd(2026, 1, 1);
        params.not_after = rcgen::date_time_ymd(2027, 12, 31);
        // SECURITY: row 52
        let cert = params.self_signed(&key).expect("cert");
        let device = ferry_proto::tls::DeviceId::of_certificate(cert.der()).expect("parse");
        let chain: Vec<CertificateDer<'static>> =
            vec![cert.der().clone(), bob.certificate().clone()];
        let now = UnixTime::since_unix_epoch(Duration::from_secs(T0));
        assert_eq!(
            check_peer(
                &chain,
                &Pin {
                    account: bob.id(),
                    device
                },
                &Revocations::new(),
                now,
                PeerRole::Server
            ),
            Err(PeerCheckError::SelfSigned)
        );
        // Without the account certificate, the chain is refused before anything else.
        assert_eq!(
            check_peer(
                &chain[..1],
                &Pin {
                    account: bob.id(),
                    device
                },
                &Revocations::new(),
                now,
                PeerRole::Server
            ),
            Err(PeerCheckError::MissingAccountCertificate)
        );
    }

    #[test]
    fn a_flipped_byte_in_a_record_ends_the_session_clearly() {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
        let mut p = Pair::between(&a1, &b1);
        p.pump();
        p.client.send(p.now, &[7u8; 1000]).expect("established");
        // SECURITY: row 53
        p.pump_with(|bytes| {
            let i = bytes.len() / 2;
            bytes[i] ^= 0x40;
        });
        assert_eq!(Pair::failure(&p.server_got), Some(TlsFailure::Corrupt));
        assert!(
            Pair::plaintext(&p.server_got).is_empty(),
            "not a byte of the altered record is delivered"
        );
        // The server told the client with an alert.
        assert!(matches!(
            Pair::failure(&p.client_got),
            Some(TlsFailure::AlertReceived(_))
        ));
    }

    #[test]
    fn a_truncated_stream_does_not_look_like_a_clean_close() {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
        let mut p = Pair::between(&a1, &b1);
        p.pump();
        p.client
            .send(p.now, b"part of a file")
            .expect("established");
        p.pump();
        // SECURITY: row 54
        p.server.handle_input(p.now, Input::StreamEnded);
        p.pump();
        assert_eq!(Pair::failure(&p.server_got), Some(TlsFailure::Truncated));
        assert!(!p.server_got.contains(&Output::Closed));
    }

    #[test]
    fn garbage_instead_of_a_handshake_fails_cleanly() {
        let (alice, bob) = (account("alice"), account("bob"));
        let (a1, b1) = (device(&alice, "a1"), device(&bob, "b1"));
        let now = Instant::now();
        let anchor = UnixAnchor {
            instant: now,
            unix: Duration::from_secs(T0),
        };
        let mut server =
            TlsSession::new(Role::Server, &b1, pin(&a1), Revocations::new(), anchor, now)
                .expect("server");
        // SECURITY: row 55
        server.handle_input(
            now,
            Input::Received(Bytes::from_static(b"GET / HTTP/1.1\r\n\r\n")),
        );
        let outs: Vec<_> = std::iter::from_fn(|| server.poll_output()).collect();
        assert!(
            outs.iter()
                .any(|o| matches!(o, Output::Failed(TlsFailure::Protocol(_)))),
            "{outs:?}"
        );
        server.handle_input(now, Input::Received(Bytes::from_static(b"more")));
        assert_eq!(server.poll_output(), None, "a failure is final");
    }

    #[test]
    fn identities_from_the_same_seed_are_identical() {
        let (x, y) = (account("alice"), account("alice"));
        assert_eq!(x.id(), y.id());
        assert_eq!(x.certificate(), y.certificate());
        let (d, e) = (device(&x, "a1"), device(&y, "a1"));
        assert_eq!(d.id(), e.id());
        assert_eq!(d.chain(), e.chain());
        assert_ne!(account("bob").id(), x.id());
        assert_eq!(x.id().to_string().len(), 40);
        assert_eq!(d.id().to_string().len(), 64);
    }

    #[test]
    fn a_device_key_in_pkcs8_v2_keeps_its_secret_keys_secret() {
        // RFC 5958's v2 form (ring writes it) puts the public key after the seed; the device's
        // other keys are derived from the seed, never from those last 32 bytes.
        let alice = account("alice");
        let a1 = device(&alice, "a1");
        let pem = a1.to_pem();
        let at = pem.find("-----BEGIN PRIVATE KEY").expect("key");
        let v1 = ::pem::parse(&pem[at..]).expect("pem").into_contents();
        let seed: [u8; 32] = v1[16..48].try_into().expect("a seed");
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&seed).expect("a key");
        use ring::signature::KeyPair as _;
        let mut v2 = vec![
            0x30, 0x53, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        v2.extend_from_slice(&seed);
        v2.extend_from_slice(&[0xa1, 0x23, 0x03, 0x21, 0x00]);
        v2.extend_from_slice(pair.public_key().as_ref());
        let key = ::pem::encode(&::pem::Pem::new("PRIVATE KEY", v2));
        // SECURITY: row 99
        let read = Device::from_pem(&format!("{}{key}", &pem[..at])).expect("a v2 key is read");
        assert_eq!(read.id(), a1.id());
        assert_eq!(
            read.seal_public_key(),
            a1.seal_public_key(),
            "the sealing key comes from the seed, not from the public key"
        );
        // Anything else that is not an Ed25519 PKCS#8 key is refused.
        let mut odd = v1.clone();
        odd[4] = 7;
        let key = ::pem::encode(&::pem::Pem::new("PRIVATE KEY", odd));
        assert!(matches!(
            Device::from_pem(&format!("{}{key}", &pem[..at])),
            Err(IdentityError::BadKey(_))
        ));
    }

    #[test]
    fn bad_identity_pem_gives_clear_errors() {
        // SECURITY: row 100
        // A device's key with another device's certificate.
        let alice = account("alice");
        let (a1, a2) = (device(&alice, "a1"), device(&alice, "a2"));
        let a1_pem = a1.to_pem();
        let a2_pem = a2.to_pem();
        let key = &a2_pem[a2_pem.find("-----BEGIN PRIVATE KEY").expect("key")..];
        let certs = &a1_pem[..a1_pem.find("-----BEGIN PRIVATE KEY").expect("key")];
        assert_eq!(
            Device::from_pem(&format!("{certs}{key}")).err(),
            Some(IdentityError::KeyMismatch)
        );

        // A device certificate beside an account that did not sign it.
        let bob = account("bob");
        let device_cert = &a1_pem[..a1_pem.find("-----END CERTIFICATE-----").expect("end") + 26];
        let bob_pem = bob.to_pem();
        let bob_cert = &bob_pem[..bob_pem.find("-----BEGIN PRIVATE KEY").expect("key")];
        let a1_key = &a1_pem[a1_pem.find("-----BEGIN PRIVATE KEY").expect("key")..];
        assert_eq!(
            Device::from_pem(&format!("{device_cert}{bob_cert}{a1_key}")).err(),
            Some(IdentityError::NotSignedByAccount)
        );
        assert_eq!(
            Device::from_pem(certs).err(),
            Some(IdentityError::MissingKey)
        );
        assert_eq!(
            Account::from_pem("")
                .err()
                .map(|e| matches!(e, IdentityError::Pem(_))),
            Some(true)
        );
    }
}
