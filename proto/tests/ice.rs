//! ICE over TCP through the public API: descriptions, STUN, the check list, and two agents
//! wired back to back on a virtual clock (`tests/src/ice_net.rs`, shared with `ferry-tests`).

#[path = "../../tests/src/ice_net.rs"]
mod ice_net;

mod ice {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use bytes::{Bytes, BytesMut};
    use ferry_proto::ice::{
        Agent, Candidate, CandidateError, CandidateType, CheckList, Config, Description, Event,
        FailReason, Input, Origin, Output, PairFailure, PairState, Role, TcpType,
    };
    use ferry_proto::io::{ConnId, ConnectError};
    use ferry_proto::stun::framing::{self, FrameDecoder};
    use ferry_proto::stun::{
        BINDING, Builder, Class, IntegrityError, RoleAttribute, StunError, StunMessage, StunRng,
        verify_integrity,
    };

    use super::ice_net::{Net, Route};

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn passive(kind: CandidateType, a: &str) -> Candidate {
        Candidate::tcp(kind, TcpType::Passive, addr(a), 65535)
    }

    fn active(a: &str) -> Candidate {
        Candidate::tcp(CandidateType::Host, TcpType::Active, addr(a), 65535)
    }

    /// A host with one passive and one active host candidate on `ip`.
    fn host(ip: &str, port: u16) -> Vec<Candidate> {
        let ip: std::net::IpAddr = ip.parse().expect("ip");
        vec![
            Candidate::tcp(
                CandidateType::Host,
                TcpType::Passive,
                SocketAddr::new(ip, port),
                65535,
            ),
            Candidate::tcp(
                CandidateType::Host,
                TcpType::Active,
                SocketAddr::new(ip, 9),
                65535,
            ),
        ]
    }

    fn agent(t0: Instant, role: Role, candidates: Vec<Candidate>, seed: u64) -> Agent {
        Agent::new(t0, Config::default(), role, candidates, seed)
    }

    /// Alice asks (controlled), Bob answers (controlling), as in Jami.
    fn pair_net(alice: Vec<Candidate>, bob: Vec<Candidate>) -> (Net, usize, usize) {
        let t0 = Instant::now();
        let mut net = Net::new(t0);
        let a = net.add("alice", agent(t0, Role::Controlled, alice, 1));
        let b = net.add("bob", agent(t0, Role::Controlling, bob, 2));
        (net, a, b)
    }

    fn selected_conn(net: &Net, h: usize) -> ConnId {
        net.selected(h).expect("a selected pair").0
    }

    /// Both sides selected the two ends of one TCP connection.
    fn assert_same_connection(net: &Net, a: usize, b: usize) {
        let ca = selected_conn(net, a);
        let cb = selected_conn(net, b);
        assert_eq!(
            net.peer_of(a, ca),
            Some((b, cb)),
            "both ends of one connection"
        );
    }

    // ----- descriptions and candidate lines -----

    const SEED_SDP: &str = "0d04b932
7c33834e7cf944bf0e367b47
H6e6ca682 1 TCP 2130706431 2607:fad8:4:6:9eb6:d0ff:dead:c0de 50693 typ host tcptype passive
H6e6ca682 1 TCP 2130706431 2607:fad8:4:6:9eb6:d0ff:dead:c0de 9 typ host tcptype active
H42c1b577 1 TCP 2130706431 fe80::9eb6:d0ff:fee7:1412 50693 typ host tcptype passive
H42c1b577 1 TCP 2130706431 fe80::9eb6:d0ff:fee7:1412 9 typ host tcptype active
Hc0a8007e 1 TCP 2130706431 192.168.0.123 42751 typ host tcptype passive
Hc0a8007e 1 TCP 2130706431 192.168.0.123 9 typ host tcptype active
Sc0a8007e 1 TCP 1694498815 X.X.X.X 42751 typ srflx tcptype passive
Z.Z.Z.Z:YYYY
A.A.A.A:YYYY
";

    #[test]
    fn the_seed_description_parses_to_exactly_its_candidates() {
        let parsed = Description::parse(SEED_SDP).expect("credentials");
        let d = &parsed.description;
        assert_eq!(d.ufrag, "0d04b932");
        assert_eq!(d.pwd, "7c33834e7cf944bf0e367b47");
        assert_eq!(d.candidates.len(), 6);
        let lines: Vec<&str> = SEED_SDP.lines().collect();
        for (c, line) in d.candidates.iter().zip(&lines[2..8]) {
            assert_eq!(c.to_string(), *line, "prints back byte for byte");
            assert_eq!(c.priority, 2_130_706_431);
            assert_eq!(c.kind, CandidateType::Host);
        }
        assert!(d.candidates[0].is_passive() && d.candidates[0].addr.is_ipv6());
        assert!(d.candidates[1].is_active() && d.candidates[1].addr.port() == 9);
        assert_eq!(d.candidates[4].addr, addr("192.168.0.123:42751"));
        // The X.X.X.X placeholder and the two host:port lines are skipped and counted.
        let bad: Vec<(usize, CandidateError)> = parsed
            .bad_lines
            .iter()
            .map(|b| (b.number, b.error.clone()))
            .collect();
        assert_eq!(
            bad,
            [
                (9, CandidateError::Address),
                (10, CandidateError::Foundation),
                (11, CandidateError::Foundation)
            ]
        );
        // The whole blob prints back as its good lines.
        let mut expected: String = lines[..8].join("\n");
        expected.push('\n');
        assert_eq!(d.to_string(), expected);
    }

    #[test]
    fn bad_lines_are_skipped_and_counted_never_fatal() {
        // SECURITY: row 84
        let text = "abcd1234\r\n0123456789abcdef01234567\r\n\
            H1 1 TCP 2130706431 10.0.0.1 5000 typ host tcptype passive\r\n\
            H1 1 TCP 2130706431 10.0.0.1 5000 typ host\r\n\
            H1 0 TCP 2130706431 10.0.0.1 5000 typ host tcptype passive\n\
            H1 1 SCTP 2130706431 10.0.0.1 5000 typ host tcptype passive\n\
            H1 1 TCP 0 10.0.0.1 5000 typ host tcptype passive\n\
            H1 1 TCP 2130706431 [::1] 5000 typ host tcptype passive\n\
            H1 1 TCP 2130706431 10.0.0.1 70000 typ host tcptype passive\n\
            H1 1 TCP 2130706431 10.0.0.1 5000 type host tcptype passive\n\
            H1 1 TCP 2130706431 10.0.0.1 5000 typ nat tcptype passive\n\
            H1 1 TCP 2130706431 10.0.0.1 5000 typ host tcptype sideways\n\
            H1 1 TCP 2130706431 10.0.0.1 5000 typ host tcptype\n\
            H-1 1 TCP 2130706431 10.0.0.1 5000 typ host tcptype passive\n\
            \n\
            H2 1 UDP 2130706431 ::1 5000 typ host\n\
            R1 1 TCP 16777215 198.51.100.1 3478 typ relay raddr 0.0.0.0 rport 0 tcptype passive\n";
        let parsed = Description::parse(text).expect("credentials");
        assert_eq!(parsed.description.candidates.len(), 3);
        let errors: Vec<CandidateError> =
            parsed.bad_lines.iter().map(|b| b.error.clone()).collect();
        assert_eq!(
            errors,
            [
                CandidateError::TcpType,
                CandidateError::Component,
                CandidateError::Transport,
                CandidateError::Priority,
                CandidateError::Address,
                CandidateError::Port,
                CandidateError::Type,
                CandidateError::Type,
                CandidateError::TcpType,
                CandidateError::Extension,
                CandidateError::Foundation,
            ]
        );
        // Extensions are ignored: the relay line is understood.
        let relay = &parsed.description.candidates[2];
        assert_eq!(relay.kind, CandidateType::Relayed);
        assert!(relay.is_passive());
    }

    #[test]
    fn a_description_without_credentials_is_refused() {
        assert!(Description::parse("").is_err());
        assert!(Description::parse("abcd1234\n").is_err());
        assert!(Description::parse("ab\n0123456789abcdef01234567\n").is_err());
        assert!(Description::parse("abcd1234\nshort\n").is_err());
        assert!(Description::parse("abcd:1234\n0123456789abcdef01234567\n").is_err());
    }

    #[test]
    fn local_candidates_carry_rfc6544_priorities_and_pjnath_foundations() {
        let c = Candidate::tcp(
            CandidateType::Host,
            TcpType::Passive,
            addr("192.168.0.126:42751"),
            65535,
        );
        // Local preference 2^13·4 + 8191 = 40959 (RFC 6544 §4.2, host passive).
        assert_eq!(
            c.to_string(),
            "Hc0a8007e 1 TCP 2124414975 192.168.0.126 42751 typ host tcptype passive"
        );
        let a = Candidate::tcp(
            CandidateType::Host,
            TcpType::Active,
            addr("192.168.0.126:1234"),
            65535,
        );
        assert_eq!(a.addr.port(), 9, "active candidates advertise port 9");
        let s = Candidate::tcp(
            CandidateType::ServerReflexive,
            TcpType::Passive,
            addr("203.0.113.9:42751"),
            65535,
        );
        assert_eq!(
            s.priority, 1_684_013_055,
            "srflx passive: direction preference 2"
        );
        let r = Candidate::tcp(
            CandidateType::Relayed,
            TcpType::Passive,
            addr("[2001:db8::1]:3478"),
            65535,
        );
        assert!(r.priority < s.priority && r.to_string().contains("2001:db8::1 3478 typ relay"));
        let lp = ferry_proto::ice::LocalPreference::Running { start: 65535 };
        assert_eq!((lp.of(0), lp.of(3)), (65535, 65532));
    }

    /// RFC 6544 §4.2's direction preference, folded into the local preference as libnice's
    /// `nice_candidate_ice_local_preference` does (`0x2000 · direction + other`): a host or
    /// relayed address ranks active 6, passive 4, so 2; a server- or peer-reflexive one so 6,
    /// active 4, passive 2. Before, every TCP candidate of one address had one priority
    /// (pjnath's flat 65535: 2130706431 for active and passive alike).
    #[test]
    fn the_direction_preference_orders_tcp_types_as_rfc6544_and_libnice_do() {
        use CandidateType::{Host, PeerReflexive, Relayed, ServerReflexive};
        use TcpType::{Active, Passive, SimultaneousOpen as So};
        let prio =
            |kind, tcp, pref| Candidate::tcp(kind, tcp, addr("10.0.0.1:5000"), pref).priority;
        let expected = [
            (Host, Active, 2_128_609_279u32),
            (Host, Passive, 2_124_414_975),
            (Host, So, 2_120_220_671),
            (ServerReflexive, So, 1_692_401_663),
            (ServerReflexive, Active, 1_688_207_359),
            (ServerReflexive, Passive, 1_684_013_055),
            (Relayed, Active, 14_680_063),
            (Relayed, Passive, 10_485_759),
        ];
        for (kind, tcp, priority) in expected {
            assert_eq!(prio(kind, tcp, 65535), priority, "{kind:?} {tcp:?}");
        }
        for (tcp, direction) in [(Active, 4), (Passive, 2), (So, 6)] {
            assert_eq!(tcp.direction_preference(PeerReflexive), direction);
        }
        // The owner's own preference keeps its low 13 bits: its order among addresses stays
        // below the direction, which always wins.
        assert_eq!(
            prio(Host, Passive, 65534) + 256,
            prio(Host, Passive, 65535),
            "the next address ranks one below"
        );
        assert!(prio(Host, Passive, 65535 - 8000) > prio(Host, So, 65535));
        // Printed and parsed back, an `so` line keeps its port (only active ones say 9).
        let so = Candidate::tcp(Host, So, addr("10.0.0.1:5000"), 65535);
        assert_eq!(
            so.to_string(),
            "H0a000001 1 TCP 2120220671 10.0.0.1 5000 typ host tcptype so"
        );
        assert_eq!(so.to_string().parse::<Candidate>(), Ok(so));
    }

    // ----- the check list -----

    #[test]
    fn the_check_list_keeps_only_active_to_passive_pairs_in_priority_order() {
        let local = vec![
            passive(CandidateType::Host, "10.0.0.1:5000"),
            active("10.0.0.1:9"),
            active("[2001:db8::1]:9"),
            // Its base is the host candidate above; it never makes pairs of its own.
            Candidate::tcp(
                CandidateType::ServerReflexive,
                TcpType::Active,
                addr("203.0.113.1:9"),
                65535,
            ),
        ];
        let remote = vec![
            passive(CandidateType::Relayed, "198.51.100.1:3478"),
            active("10.0.0.2:9"),
            passive(CandidateType::ServerReflexive, "203.0.113.2:6000"),
            passive(CandidateType::Host, "10.0.0.2:6000"),
            passive(CandidateType::Host, "[2001:db8::2]:6000"),
            "U1 1 UDP 2130706431 10.0.0.2 6000 typ host"
                .parse()
                .expect("udp line"),
            "O1 1 TCP 2130706431 10.0.0.2 6001 typ host tcptype so"
                .parse()
                .expect("so line"),
        ];
        let list = CheckList::form(Role::Controlling, &local, &remote, 100);
        let pairs: Vec<(SocketAddr, SocketAddr)> = list
            .pairs()
            .iter()
            .map(|p| (p.local.addr, p.remote.addr))
            .collect();
        assert_eq!(
            pairs,
            [
                (addr("10.0.0.1:9"), addr("10.0.0.2:6000")),
                (addr("[2001:db8::1]:9"), addr("[2001:db8::2]:6000")),
                (addr("10.0.0.1:9"), addr("203.0.113.2:6000")),
                (addr("10.0.0.1:9"), addr("198.51.100.1:3478")),
            ],
            "no local passive or srflx, no remote active, no UDP, no remote so without a local \
             one, no family mix; best first"
        );
        assert!(list.pairs().iter().all(|p| p.origin == Origin::Active));
        assert!(
            list.pairs()
                .windows(2)
                .all(|w| w[0].priority >= w[1].priority)
        );
        // Distinct foundations: every pair starts Waiting.
        assert!(list.pairs().iter().all(|p| p.state == PairState::Waiting));
        // Two remote candidates with one foundation: the second waits Frozen.
        let twins = vec![
            passive(CandidateType::Host, "10.0.0.2:6000"),
            passive(CandidateType::Host, "10.0.0.2:6001"),
        ];
        let list = CheckList::form(Role::Controlled, &local, &twins, 100);
        let states: Vec<&PairState> = list.pairs().iter().map(|p| &p.state).collect();
        assert_eq!(states, [&PairState::Waiting, &PairState::Frozen]);
        // The limit keeps the best pairs.
        assert_eq!(
            CheckList::form(Role::Controlling, &local, &remote, 2)
                .pairs()
                .len(),
            2
        );
    }

    fn so(kind: CandidateType, a: &str) -> Candidate {
        Candidate::tcp(kind, TcpType::SimultaneousOpen, addr(a), 65535)
    }

    /// RFC 6544 §6.2: a local `so` candidate pairs with the peer's `so` ones only, and an
    /// active and an `so` candidate of one IP share a base (Ferry connects from the listening
    /// port for both), so toward an address the peer offers both ways one pair stays, the
    /// better one.
    #[test]
    fn simultaneous_open_candidates_pair_with_each_other_under_one_base() {
        let local = vec![
            passive(CandidateType::Host, "10.0.0.1:5000"),
            active("10.0.0.1:9"),
            so(CandidateType::Host, "10.0.0.1:5000"),
            // Its base is the host `so` candidate: never paired itself.
            so(CandidateType::ServerReflexive, "203.0.113.1:5000"),
        ];
        let remote = vec![
            // Ferry's form: passive and so on the listening port.
            passive(CandidateType::Host, "10.0.0.2:6000"),
            so(CandidateType::Host, "10.0.0.2:6000"),
            passive(CandidateType::ServerReflexive, "203.0.113.2:6000"),
            so(CandidateType::ServerReflexive, "203.0.113.2:6000"),
            // An agent that binds its `so` candidate on a port of its own (libnice's form).
            so(CandidateType::Host, "10.0.0.2:7000"),
            active("10.0.0.2:9"),
        ];
        let list = CheckList::form(Role::Controlling, &local, &remote, 100);
        let pairs: Vec<(TcpType, SocketAddr, TcpType, SocketAddr)> = list
            .pairs()
            .iter()
            .map(|p| {
                (
                    p.local.tcp_type.expect("tcp"),
                    p.local.addr,
                    p.remote.tcp_type.expect("tcp"),
                    p.remote.addr,
                )
            })
            .collect();
        use TcpType::{Active, Passive, SimultaneousOpen as So};
        assert_eq!(
            pairs,
            [
                // Host: active → passive (6 and 4) beats so ↔ so (2 and 2).
                (Active, addr("10.0.0.1:9"), Passive, addr("10.0.0.2:6000")),
                (So, addr("10.0.0.1:5000"), So, addr("10.0.0.2:7000")),
                // Reflexive: so (6) beats passive (2) on the same connection.
                (So, addr("10.0.0.1:5000"), So, addr("203.0.113.2:6000")),
            ]
        );
        assert!(list.pairs().iter().all(|p| p.origin == Origin::Active));
        // Without a local so candidate, the peer's so ones pair with nothing.
        let list = CheckList::form(Role::Controlling, &local[..2], &remote[4..], 100);
        assert!(list.pairs().is_empty());
    }

    /// A peer that offers nothing but `so` candidates (a NATed agent that cannot accept):
    /// the two `so` pairs are checked, one is selected, both sides on one connection.
    #[test]
    fn an_agent_offering_only_simultaneous_open_candidates_is_reached() {
        let mut alice = host("10.0.0.1", 5000);
        alice.push(so(CandidateType::Host, "10.0.0.1:5000"));
        let bob = vec![so(CandidateType::Host, "10.0.0.2:7000")];
        let (mut net, a, b) = pair_net(alice, bob);
        net.exchange(a, b);
        net.run_for(Duration::from_secs(2));
        assert_same_connection(&net, a, b);
        for h in [a, b] {
            let pairs = net.hosts[h].agent.check_list().pairs();
            assert!(
                pairs
                    .iter()
                    .any(|p| p.local.is_so() && p.remote.is_so() && p.origin == Origin::Active),
                "each side checks its so ↔ so pair"
            );
            assert!(
                pairs
                    .iter()
                    .all(|p| !p.local.is_passive() || p.origin == Origin::Passive),
                "a passive candidate never opens"
            );
        }
    }

    #[test]
    fn a_passive_only_agent_never_connects() {
        let t0 = Instant::now();
        let mut a = agent(
            t0,
            Role::Controlling,
            vec![passive(CandidateType::Host, "10.0.0.1:5000")],
            1,
        );
        let b = agent(t0, Role::Controlled, host("10.0.0.2", 6000), 2);
        a.set_remote_description(t0, b.local_description())
            .expect("set");
        assert!(a.check_list().pairs().is_empty());
        a.handle_timeout(t0 + Duration::from_secs(1));
        assert!(
            std::iter::from_fn(|| a.poll_output()).all(|o| !matches!(o, Output::Connect { .. }))
        );
    }

    // ----- STUN and framing -----

    /// A check with every attribute ICE uses.
    fn check(transaction: u128, username: &str) -> Builder {
        Builder::new(Class::Request, BINDING, transaction)
            .username(username)
            .priority(1_862_270_975)
            .role(RoleAttribute::Controlling(0x0102_0304_0506_0708))
            .use_candidate()
    }

    #[test]
    fn stun_checks_round_trip_and_bad_integrity_or_fingerprint_is_rejected() {
        let bytes = check(7, "bob1:ali2")
            .finish(Some("secretsecretsecretsecret"))
            .expect("builds");
        let m = StunMessage::decode(&bytes).expect("decodes");
        assert_eq!(m.class, Class::Request);
        assert_eq!(m.method, BINDING);
        assert_eq!(m.transaction, 7);
        assert_eq!(m.username.as_deref(), Some("bob1:ali2"));
        assert_eq!(m.priority, Some(1_862_270_975));
        assert_eq!(
            m.role,
            Some(RoleAttribute::Controlling(0x0102_0304_0506_0708))
        );
        assert!(m.use_candidate && m.has_integrity && m.has_fingerprint);
        assert_eq!(verify_integrity(&bytes, "secretsecretsecretsecret"), Ok(()));
        assert_eq!(
            verify_integrity(&bytes, "wrongwrongwrongwrongwrong"),
            Err(IntegrityError::Mismatch)
        );
        // A flipped bit in the integrity: still decodes (the fingerprint is recomputed here to
        // isolate the integrity), then fails verification.
        let mut bad = bytes.to_vec();
        let mi = bad.len() - 8 - 20;
        bad[mi] ^= 1;
        let fixed = refingerprint(&bad);
        assert!(StunMessage::decode(&fixed).is_ok());
        assert_eq!(
            verify_integrity(&fixed, "secretsecretsecretsecret"),
            Err(IntegrityError::Mismatch)
        );
        // A flipped bit anywhere else breaks the FINGERPRINT.
        let mut bad = bytes.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(StunMessage::decode(&bad), Err(StunError::BadFingerprint));
        // Without integrity.
        let plain = Builder::new(Class::Indication, BINDING, 9)
            .finish(None)
            .expect("builds");
        assert_eq!(
            verify_integrity(&plain, "secretsecretsecretsecret"),
            Err(IntegrityError::Missing)
        );
        // Responses.
        let ok = Builder::new(Class::Success, BINDING, 7)
            .xor_mapped(addr("[2001:db8::7]:4242"))
            .finish(Some("pw"))
            .expect("builds");
        let m = StunMessage::decode(&ok).expect("decodes");
        assert_eq!(m.xor_mapped, Some(addr("[2001:db8::7]:4242")));
        let err = Builder::new(Class::Error, BINDING, 7)
            .error_code(487, "Role Conflict")
            .finish(Some("pw"))
            .expect("builds");
        let m = StunMessage::decode(&err).expect("decodes");
        assert_eq!(m.error, Some((487, "Role Conflict".to_owned())));
        // Other attributes pass through; integrity and fingerprint only come from finish().
        let software = stun_types::attribute::Software::new("ferry").expect("software");
        assert!(
            Builder::new(Class::Request, BINDING, 1)
                .attribute(&software)
                .finish(None)
                .is_ok()
        );
        let fp = stun_types::attribute::Fingerprint::new([0; 4]);
        assert!(
            Builder::new(Class::Request, BINDING, 1)
                .attribute(&fp)
                .finish(None)
                .is_err()
        );
        // Trailing bytes and short messages.
        let mut long = bytes.to_vec();
        long.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(
            StunMessage::decode(&long),
            Err(StunError::BadLength { .. })
        ));
        assert_eq!(StunMessage::decode(&bytes[..10]), Err(StunError::NotStun));
    }

    /// Recomputes the FINGERPRINT (the last 8 bytes) of a message after a test changed it.
    fn refingerprint(bytes: &[u8]) -> Vec<u8> {
        // CRC-32 (IEEE) XOR 0x5354554e over everything before the attribute.
        let body = &bytes[..bytes.len() - 8];
        let mut crc = 0xffff_ffffu32;
        for b in body {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        let value = (!crc) ^ 0x5354_554e;
        let mut out = bytes.to_vec();
        let n = out.len();
        out[n - 4..].copy_from_slice(&value.to_be_bytes());
        out
    }

    /// RFC 5769 §2.1 and §2.2: an ICE check and its IPv4 answer, as another implementation
    /// wrote them. Decoding, integrity and fingerprint must agree with it.
    #[test]
    fn rfc5769_test_vectors_decode_and_verify() {
        let request = hex_bytes(
            "000100582112a442b7e7a701bc34d686fa87dfae\
             802200105354554e207465737420636c69656e74\
             002400046e0001ff80290008932ff9b151263b36\
             000600096576746a3a68367659202020\
             000800149aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a2\
             80280004e57a3bcf",
        );
        let m = StunMessage::decode(&request).expect("decodes");
        assert_eq!(m.class, Class::Request);
        assert_eq!(m.username.as_deref(), Some("evtj:h6vY"));
        assert_eq!(m.priority, Some(0x6e00_01ff));
        assert_eq!(
            m.role,
            Some(RoleAttribute::Controlled(0x932f_f9b1_5126_3b36))
        );
        assert!(!m.use_candidate && m.has_integrity && m.has_fingerprint);
        assert_eq!(verify_integrity(&request, "VOkJxbRl1RmTxUk/WvJxBt"), Ok(()));
        assert_eq!(
            verify_integrity(&request, "VOkJxbRl1RmTxUk/WvJxBu"),
            Err(IntegrityError::Mismatch)
        );
        let response = hex_bytes(
            "0101003c2112a442b7e7a701bc34d686fa87dfae\
             8022000b7465737420766563746f7220\
             002000080001a147e112a643\
             000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7\
             80280004c07d4c96",
        );
        let m = StunMessage::decode(&response).expect("decodes");
        assert_eq!(m.class, Class::Success);
        assert_eq!(m.xor_mapped, Some(addr("192.0.2.1:32853")));
        assert_eq!(
            verify_integrity(&response, "VOkJxbRl1RmTxUk/WvJxBt"),
            Ok(())
        );
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s
            .bytes()
            .filter(u8::is_ascii_hexdigit)
            .map(|c| (c as char).to_digit(16).expect("hex") as u8)
            .collect();
        digits.chunks(2).map(|p| (p[0] << 4) | p[1]).collect()
    }

    #[test]
    fn stun_trace_lines_read_like_rfc_figures() {
        let mut txs = ferry_proto::trace::Ordinals::new("tx");
        let request = check(0xabc, "bob1:ali2")
            .finish(Some("pw"))
            .expect("builds");
        let response = Builder::new(Class::Success, BINDING, 0xabc)
            .xor_mapped(addr("192.0.2.1:4242"))
            .finish(Some("pw"))
            .expect("builds");
        let conflict = Builder::new(Class::Error, BINDING, 0xdef)
            .error_code(487, "Role Conflict")
            .finish(Some("pw"))
            .expect("builds");
        let lines: Vec<String> = [&request[..], &response[..], &conflict[..], b"junk"]
            .iter()
            .map(|b| ferry_proto::trace::stun::summarize(b, &mut txs).text)
            .collect();
        assert_eq!(
            lines,
            [
                "Binding request tx1 USERNAME=bob1:ali2 PRIORITY=1862270975 ICE-CONTROLLING USE-CANDIDATE",
                "Binding success response tx1 XOR-MAPPED-ADDRESS=192.0.2.1:4242",
                "Binding error response tx2 ERROR-CODE=487 \"Role Conflict\"",
                "STUN? 4 bytes (not a STUN message)",
            ]
        );
    }

    #[test]
    fn transaction_ids_come_from_the_seed() {
        let mut a = StunRng::new(42);
        let mut b = StunRng::new(42);
        let mut c = StunRng::new(43);
        let (x, y, z) = (a.transaction_id(), b.transaction_id(), c.transaction_id());
        assert_eq!(x, y);
        assert_ne!(x, z);
        assert!(u128::from(x) < (1u128 << 96), "96 bits");
    }

    #[test]
    fn rfc4571_frames_parse_the_same_under_any_split() {
        let mut stream = BytesMut::new();
        let payloads: Vec<Vec<u8>> = vec![
            check(1, "a1b2:c3d4")
                .finish(Some("p"))
                .expect("builds")
                .to_vec(),
            vec![0x17; 1000],
            Vec::new(),
            vec![0x16; 65535],
            vec![1, 2, 3],
        ];
        for p in &payloads {
            framing::encode_into(p, &mut stream);
        }
        let stream = stream.freeze();
        let mut rng = StunRng::new(7);
        for _ in 0..200 {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            let mut rest = &stream[..];
            while !rest.is_empty() {
                let n = 1 + (rng.next_u64() as usize % 3000).min(rest.len() - 1);
                got.extend(d.push(&rest[..n]));
                assert!(d.buffered() <= framing::MAX_FRAME + framing::LENGTH_PREFIX);
                rest = &rest[n..];
            }
            let got: Vec<Vec<u8>> = got.iter().map(|b| b.to_vec()).collect();
            assert_eq!(got, payloads);
        }
        // Byte by byte.
        let mut d = FrameDecoder::new();
        let got: Vec<Bytes> = stream.iter().flat_map(|b| d.push(&[*b])).collect();
        assert_eq!(got.len(), payloads.len());
        // Too long for one frame: cut into several, same bytes in order.
        let big = vec![5u8; 70_000];
        let framed = framing::encode(&big);
        let mut d = FrameDecoder::new();
        let back: Vec<u8> = d.push(&framed).concat();
        assert_eq!(back, big);
    }

    // ----- two agents -----

    #[test]
    fn two_agents_connect_over_host_candidates() {
        let (mut net, a, b) = pair_net(host("10.0.0.1", 5000), host("10.0.0.2", 6000));
        net.exchange(a, b);
        net.run_for(Duration::from_secs(2));
        assert_same_connection(&net, a, b);
        let (_, local, remote) = net.selected(b).expect("bob selected");
        assert_eq!(local.kind, CandidateType::Host);
        assert_eq!(remote.kind, CandidateType::Host);
        assert_eq!(net.hosts[a].agent.role(), Role::Controlled);
        assert_eq!(net.hosts[b].agent.role(), Role::Controlling);
        // The nominated pair is the best one, and its connection carries application bytes
        // in RFC 4571 frames, both ways.
        assert_eq!(
            net.hosts[a].agent.send(b"hello bob"),
            Ok(11),
            "9 bytes and 2 of length"
        );
        net.hosts[b].agent.send(b"hello alice").expect("selected");
        net.run_for(Duration::from_secs(3));
        assert_eq!(net.hosts[b].data.len(), 1);
        assert_eq!(&net.hosts[b].data[0].1[..], b"hello bob");
        assert_eq!(&net.hosts[a].data[0].1[..], b"hello alice");
        // Application bytes that merely start like STUN (a TLS record whose ciphertext holds
        // the magic cookie) are still the application's on the selected pair.
        let mut lookalike = vec![0x17, 0x03, 0x03, 0x00, 0x21, 0x12, 0xa4, 0x42];
        lookalike.extend_from_slice(&[0x5a; 40]);
        net.hosts[a].agent.send(&lookalike).expect("selected");
        net.run_for(Duration::from_secs(4));
        assert_eq!(
            net.hosts[b].data.last().map(|d| d.1.to_vec()),
            Some(lookalike)
        );
        // Keepalives keep consent: a minute later, still up.
        net.run_for(Duration::from_secs(70));
        assert!(net.failed(a).is_none() && net.failed(b).is_none());
        assert!(net.hosts[a].agent.selected().is_some());
        // Nothing was dropped along the way.
        assert_eq!(net.hosts[a].agent.dropped(), &Default::default());
        assert_eq!(net.hosts[b].agent.dropped(), &Default::default());
    }

    #[test]
    fn hosts_shaped_like_the_seed_connect_over_the_address_that_works() {
        // Global IPv6, link-local IPv6 and private IPv4, each passive and active, every one
        // at 2130706431 as in the seed; only IPv4 is routed between the two.
        let shaped = |v6: &str, ll: &str, v4: &str, port: u16| {
            let mut c = host(v6, port);
            c.extend(host(ll, port));
            c.extend(host(v4, port));
            c
        };
        let alice = shaped("2607:fad8:4:6::1", "fe80::1", "192.168.0.123", 50693);
        let bob = shaped("2607:fad8:4:7::2", "fe80::2", "192.168.0.124", 42751);
        let (mut net, a, b) = pair_net(alice, bob);
        for dead in [
            "[2607:fad8:4:6::1]:50693",
            "[fe80::1]:50693",
            "[2607:fad8:4:7::2]:42751",
            "[fe80::2]:42751",
        ] {
            net.routes.insert(addr(dead), Route::Refuse);
        }
        net.exchange(a, b);
        assert_eq!(
            net.hosts[a].agent.check_list().pairs().len(),
            5,
            "v6 × v6 (4) + v4"
        );
        net.run_for(Duration::from_secs(3));
        assert_same_connection(&net, a, b);
        assert!(net.selected(a).expect("selected").1.addr.is_ipv4());
        assert_eq!(net.hosts[b].agent.timeout_reason(), Some("keepalive"));
    }

    #[test]
    fn ipv6_only_agents_connect() {
        let (mut net, a, b) = pair_net(host("2001:db8::1", 5000), host("2001:db8::2", 6000));
        net.exchange(a, b);
        net.run_for(Duration::from_secs(2));
        assert_same_connection(&net, a, b);
        assert!(net.selected(a).expect("selected").1.addr.is_ipv6());
    }

    #[test]
    fn a_role_conflict_is_resolved_by_the_tie_breaker() {
        // SECURITY: row 34
        for role in [Role::Controlling, Role::Controlled] {
            let t0 = Instant::now();
            let mut net = Net::new(t0);
            let a = net.add(
                "alice",
                agent(t0, role, host("10.0.0.1", 5000), 1).with_tie_breaker(10),
            );
            let b = net.add(
                "bob",
                agent(t0, role, host("10.0.0.2", 6000), 2).with_tie_breaker(20),
            );
            net.exchange(a, b);
            net.run_for(Duration::from_secs(3));
            assert_same_connection(&net, a, b);
            // The larger tie-breaker controls.
            assert_eq!(net.hosts[b].agent.role(), Role::Controlling, "from {role}");
            assert_eq!(net.hosts[a].agent.role(), Role::Controlled, "from {role}");
            let changed = |h: usize| {
                net.hosts[h]
                    .events
                    .iter()
                    .filter(|e| matches!(e, Event::RoleChanged { .. }))
                    .count()
            };
            assert_eq!(changed(a) + changed(b), 1, "exactly one side changed role");
        }
    }

    #[test]
    fn all_pairs_failing_ends_in_a_failure_with_reasons() {
        let (mut net, a, b) = pair_net(host("10.0.0.1", 5000), host("10.0.0.2", 6000));
        net.routes.insert(addr("10.0.0.1:5000"), Route::Refuse);
        net.routes.insert(addr("10.0.0.2:6000"), Route::Blackhole);
        net.exchange(a, b);
        net.run_for(Duration::from_millis(9_999));
        assert!(net.failed(a).is_none(), "not before the ICE timeout");
        net.run_for(Duration::from_secs(11));
        for (h, failure) in [
            (b, PairFailure::ConnectFailed(ConnectError::Refused)),
            (a, PairFailure::ConnectFailed(ConnectError::TimedOut)),
        ] {
            match net.failed(h) {
                Some(Event::Failed { reason, pairs }) => {
                    assert_eq!(*reason, FailReason::Timeout);
                    assert_eq!(pairs.len(), 1);
                    assert_eq!(pairs[0].state, PairState::Failed(failure));
                }
                other => panic!("expected a failure, got {other:?}"),
            }
            assert!(net.selected(h).is_none());
            assert_eq!(
                net.hosts[h].agent.poll_timeout(),
                None,
                "nothing left to do"
            );
        }
    }

    /// Bob has a better address that `route` breaks and a worse one that works; Alice
    /// (controlling here) connects to both and nominates the working one while the other
    /// fails with `failure` (or, for a failure that takes a timeout, is still in progress:
    /// the nomination wait scales with the round trip of the working pair).
    fn one_pair_fails_while_another_succeeds(route: Route, failure: PairFailure) {
        let mut bob = host("10.0.0.2", 6000);
        bob.push(Candidate::tcp(
            CandidateType::Host,
            TcpType::Passive,
            addr("10.0.1.2:6000"),
            60000,
        ));
        let t0 = Instant::now();
        let mut net = Net::new(t0);
        // One attempt per pair, so that the broken pair ends with `failure` (retries are
        // tested on their own).
        let patient = Config {
            nomination_wait: Duration::from_secs(10),
            max_connect_retries: 0,
            ..Config::default()
        };
        let a = net.add(
            "alice",
            Agent::new(t0, patient, Role::Controlling, host("10.0.0.1", 5000), 1),
        );
        let b = net.add("bob", agent(t0, Role::Controlled, bob, 2));
        net.routes.insert(addr("10.0.0.2:6000"), route);
        // Only Alice's checks matter here.
        net.routes.insert(addr("10.0.0.1:5000"), Route::Refuse);
        net.exchange(a, b);
        net.run_for(Duration::from_secs(8));
        assert_same_connection(&net, a, b);
        let (_, _, remote) = net.selected(a).expect("alice selected");
        assert_eq!(remote.addr, addr("10.0.1.2:6000"));
        let broken = net.hosts[a]
            .agent
            .check_list()
            .pairs()
            .iter()
            .find(|p| p.remote.addr == addr("10.0.0.2:6000"))
            .expect("the broken pair");
        // The nomination wait scales with the working pair's round trip, so a pair that
        // fails only at a timeout (silent, blackholed) may still be in progress then.
        let slow = matches!(
            failure,
            PairFailure::Silent | PairFailure::ConnectFailed(ConnectError::TimedOut)
        );
        if !(slow && broken.state == PairState::InProgress) {
            assert_eq!(broken.state, PairState::Failed(failure));
        }
    }

    #[test]
    fn a_refused_pair_fails_while_another_succeeds() {
        one_pair_fails_while_another_succeeds(
            Route::Refuse,
            PairFailure::ConnectFailed(ConnectError::Refused),
        );
    }

    #[test]
    fn a_reset_pair_fails_while_another_succeeds() {
        one_pair_fails_while_another_succeeds(Route::ResetOnData, PairFailure::Reset);
    }

    #[test]
    fn a_silent_pair_fails_while_another_succeeds() {
        one_pair_fails_while_another_succeeds(Route::Silent, PairFailure::Silent);
    }

    #[test]
    fn an_unreachable_pair_fails_while_another_succeeds() {
        one_pair_fails_while_another_succeeds(
            Route::Blackhole,
            PairFailure::ConnectFailed(ConnectError::TimedOut),
        );
    }

    #[test]
    fn a_check_before_the_answer_is_answered_and_its_triggered_check_waits() {
        let (mut net, a, b) = pair_net(host("10.0.0.1", 5000), host("10.0.0.2", 6000));
        // Bob (the answerer) knows Alice's description; Alice does not know Bob's yet.
        net.tell(a, b);
        net.run_for(Duration::from_secs(1));
        // Bob's check reached Alice and was answered: Bob holds a valid pair, and as the
        // controlling agent has already nominated it.
        assert!(net.selected(b).is_some(), "bob selected on alice's answers");
        assert!(
            net.selected(a).is_none(),
            "alice cannot check without bob's password"
        );
        assert_eq!(net.hosts[a].agent.dropped(), &Default::default());
        // The answer arrives: Alice's triggered check goes out on the same connection and
        // the nomination she already received takes effect.
        net.tell(b, a);
        net.run_for(Duration::from_secs(2));
        assert_same_connection(&net, a, b);
        let list = net.hosts[a].agent.check_list();
        let pair = list
            .pairs()
            .iter()
            .find(|p| p.nominated)
            .expect("a nominated pair");
        assert_eq!(pair.origin, Origin::Passive);
    }

    #[test]
    fn a_peer_reflexive_candidate_is_learned_from_a_check() {
        let (mut net, a, b) = pair_net(host("10.0.0.1", 5000), host("10.0.0.2", 6000));
        // Alice sits behind a NAT: her passive address cannot be reached, and Bob sees her
        // connections come from a public address that is in none of her candidates.
        net.hosts[a].public_ip = Some("203.0.113.7".parse().expect("ip"));
        net.routes.insert(addr("10.0.0.1:5000"), Route::Blackhole);
        net.exchange(a, b);
        net.run_for(Duration::from_secs(5));
        assert_same_connection(&net, a, b);
        let learned = net.hosts[b].events.iter().find_map(|e| match e {
            Event::PeerReflexive { candidate } => Some(candidate.clone()),
            _ => None,
        });
        let learned = learned.expect("bob learned a peer-reflexive candidate");
        assert_eq!(learned.kind, CandidateType::PeerReflexive);
        assert_eq!(learned.addr.ip().to_string(), "203.0.113.7");
        assert!(learned.is_active());
        // Its priority is the PRIORITY Alice's check carried: type preference 110.
        assert_eq!(learned.priority >> 24, 110);
        let (_, _, remote) = net.selected(b).expect("bob selected");
        assert_eq!(remote, &learned);
        assert!(net.hosts[b].agent.remote_candidates().contains(&learned));
    }

    #[test]
    fn a_relayed_pair_is_chosen_only_when_no_direct_pair_works() {
        for direct_works in [true, false] {
            let mut bob = host("10.0.0.2", 6000);
            bob.push(passive(CandidateType::Relayed, "198.51.100.1:3478"));
            let (mut net, a, b) = pair_net(host("10.0.0.1", 5000), bob);
            // The relay forwards to Bob (his TURN client hands him the connection).
            net.routes.insert(addr("198.51.100.1:3478"), Route::To(b));
            net.routes.insert(addr("10.0.0.1:5000"), Route::Blackhole);
            if !direct_works {
                net.routes.insert(addr("10.0.0.2:6000"), Route::Refuse);
            }
            net.exchange(a, b);
            net.run_for(Duration::from_secs(5));
            assert_same_connection(&net, a, b);
            let (_, _, remote) = net.selected(a).expect("alice selected");
            let (_, local, _) = net.selected(b).expect("bob selected");
            if direct_works {
                assert_eq!(remote.kind, CandidateType::Host);
                assert_eq!(local.kind, CandidateType::Host);
            } else {
                assert_eq!(remote.kind, CandidateType::Relayed);
                assert_eq!(
                    local.kind,
                    CandidateType::Relayed,
                    "bob's side of the relay"
                );
            }
        }
    }

    #[test]
    fn a_server_reflexive_address_beats_the_relay_when_the_host_one_is_unreachable() {
        let mut bob = host("10.0.0.2", 6000);
        bob.push(passive(CandidateType::ServerReflexive, "203.0.113.2:6000"));
        bob.push(passive(CandidateType::Relayed, "198.51.100.1:3478"));
        let (mut net, a, b) = pair_net(host("10.0.0.1", 5000), bob);
        // Bob's NAT forwards its public port (UPnP, as in the seed) and the relay forwards
        // too; his private address is out of reach, and so is Alice.
        net.routes.insert(addr("203.0.113.2:6000"), Route::To(b));
        net.routes.insert(addr("198.51.100.1:3478"), Route::To(b));
        net.routes.insert(addr("10.0.0.2:6000"), Route::Blackhole);
        net.routes.insert(addr("10.0.0.1:5000"), Route::Blackhole);
        net.exchange(a, b);
        let kinds: Vec<CandidateType> = net.hosts[a]
            .agent
            .check_list()
            .pairs()
            .iter()
            .map(|p| p.remote.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                CandidateType::Host,
                CandidateType::ServerReflexive,
                CandidateType::Relayed
            ],
            "checked in priority order"
        );
        net.run_for(Duration::from_secs(5));
        assert_same_connection(&net, a, b);
        let (_, _, remote) = net.selected(a).expect("alice selected");
        assert_eq!(remote.kind, CandidateType::ServerReflexive);
    }

    /// The nomination wait scales with the first valid pair's round trip: a better pair
    /// that hangs (a public address that drops SYNs) holds the controlling agent back for
    /// twice that round trip, not for the configured bound (10 s here) nor for the hanging
    /// pair's 3-s connect timeout.
    #[test]
    fn the_nomination_wait_scales_with_the_round_trip() {
        let t0 = Instant::now();
        let mut net = Net::new(t0);
        let mut bob = host("192.0.2.2", 6000);
        bob.push(passive(CandidateType::ServerReflexive, "203.0.113.2:6000"));
        let patient = Config {
            nomination_wait: Duration::from_secs(10),
            ..Config::default()
        };
        let a = net.add(
            "alice",
            Agent::new(t0, patient, Role::Controlling, host("192.0.2.1", 5000), 1),
        );
        let b = net.add("bob", agent(t0, Role::Controlled, bob, 2));
        net.routes.insert(addr("203.0.113.2:6000"), Route::To(b));
        net.routes.insert(addr("192.0.2.2:6000"), Route::Blackhole);
        net.routes.insert(addr("192.0.2.1:5000"), Route::Blackhole);
        net.latency = Duration::from_millis(50);
        net.exchange(a, b);
        net.run_for(Duration::from_secs(2));
        let (_, _, remote) = net
            .selected(a)
            .expect("alice selected before the 3-s timeout");
        assert_eq!(remote.kind, CandidateType::ServerReflexive);
        let hanging = net.hosts[a]
            .agent
            .check_list()
            .pairs()
            .iter()
            .find(|p| p.remote.addr == addr("192.0.2.2:6000"))
            .expect("the hanging pair");
        assert_eq!(hanging.state, PairState::InProgress, "it had not finished");
    }

    #[test]
    fn the_relay_waits_for_a_slower_direct_pair() {
        // The direct pair connects late (slow network), the relay at once: the controlling
        // agent must not nominate the relay while a better pair is still in progress.
        let t0 = Instant::now();
        let mut net = Net::new(t0);
        let mut bob = host("10.0.0.2", 6000);
        bob.push(passive(CandidateType::Relayed, "198.51.100.1:3478"));
        let config = Config {
            nomination_wait: Duration::from_secs(2),
            ..Config::default()
        };
        let a = net.add(
            "alice",
            Agent::new(
                t0,
                config.clone(),
                Role::Controlling,
                host("10.0.0.1", 5000),
                1,
            ),
        );
        let b = net.add("bob", Agent::new(t0, config, Role::Controlled, bob, 2));
        net.routes.insert(addr("198.51.100.1:3478"), Route::To(b));
        net.routes.insert(addr("10.0.0.2:6000"), Route::To(b));
        net.routes.insert(addr("10.0.0.1:5000"), Route::Blackhole);
        net.latency = Duration::from_millis(200);
        net.exchange(a, b);
        net.run_for(Duration::from_secs(5));
        let (_, _, remote) = net.selected(a).expect("alice selected");
        assert_eq!(remote.kind, CandidateType::Host);
    }

    #[test]
    fn losing_the_selected_connection_or_consent_fails_the_session() {
        let (mut net, a, b) = pair_net(host("10.0.0.1", 5000), host("10.0.0.2", 6000));
        net.exchange(a, b);
        net.run_for(Duration::from_secs(2));
        assert_same_connection(&net, a, b);
        // Bob stops answering: Alice's consent runs out 30 s after the last answer.
        net.hosts[b].mute = true;
        net.run_for(Duration::from_secs(20));
        assert!(net.failed(a).is_none() && net.failed(b).is_none());
        net.run_for(Duration::from_secs(60));
        // Neither side hears the other's consent checks answered any more (Bob's answers
        // vanish, so does his own checks): the first to time out closes the connection and
        // the other sees it go.
        let reason = |h: usize| match net.failed(h) {
            Some(Event::Failed { reason, .. }) => *reason,
            other => panic!("expected a failure, got {other:?}"),
        };
        let reasons = [reason(a), reason(b)];
        assert!(reasons.contains(&FailReason::ConsentExpired), "{reasons:?}");
        assert!(reasons.iter().all(|r| matches!(
            r,
            FailReason::ConsentExpired | FailReason::SelectedConnectionLost
        )));
        assert!(net.hosts[a].agent.send(b"late").is_err());
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes() {
        let run = || {
            let (mut net, a, b) = pair_net(host("10.0.0.1", 5000), host("10.0.0.2", 6000));
            net.exchange(a, b);
            net.run_for(Duration::from_secs(2));
            (
                net.trace.render(),
                net.hosts[a].agent.local_description().to_string(),
            )
        };
        assert_eq!(run(), run());
    }

    /// Many random worlds: every passive address gets a random fate, Alice may sit behind a
    /// NAT, roles may clash, latency varies. Whatever happens, the two agents agree: both
    /// select the two ends of one connection when some connection can carry a check, and
    /// both fail with the ICE timeout when none can.
    #[test]
    fn random_worlds_end_in_agreement() {
        let fates = [
            Route::Refuse,
            Route::Blackhole,
            Route::Silent,
            Route::ResetOnData,
        ];
        for seed in 0..1000u64 {
            let mut rng = StunRng::new(seed);
            let mut pick = |n: u64| rng.next_u64() % n;
            let t0 = Instant::now();
            let mut net = Net::new(t0);
            let roles = [Role::Controlling, Role::Controlled];
            let (ra, rb) = (roles[pick(2) as usize], roles[pick(2) as usize]);
            let mut alice = host("10.0.0.1", 5000);
            alice.extend(host("2001:db8::1", 5000));
            let mut bob = host("10.0.0.2", 6000);
            bob.extend(host("2001:db8::2", 6000));
            if pick(2) == 0 {
                bob.push(passive(CandidateType::Relayed, "198.51.100.1:3478"));
            }
            let a = net.add("alice", agent(t0, ra, alice, seed * 2 + 1));
            let b = net.add("bob", agent(t0, rb, bob, seed * 2 + 2));
            if pick(3) == 0 {
                net.hosts[a].public_ip = Some("203.0.113.7".parse().expect("ip"));
            }
            net.latency = Duration::from_millis(1 + pick(150));
            let addresses: Vec<SocketAddr> = net.routes.keys().copied().collect();
            let mut reachable = false;
            for address in addresses {
                let fate = pick(6);
                if fate < 4 {
                    net.routes.insert(address, fates[fate as usize]);
                } else {
                    reachable = true;
                }
            }
            if pick(4) == 0 {
                // Bob's answer comes late: Alice's first checks arrive before it.
                net.tell(a, b);
                net.run_for(Duration::from_millis(pick(800)));
                net.tell(b, a);
            } else {
                net.exchange(a, b);
            }
            net.run_for(Duration::from_secs(12));
            if reachable {
                let ca = net.selected(a).map(|s| s.0);
                let cb = net.selected(b).map(|s| s.0);
                assert!(
                    ca.is_some() && cb.is_some(),
                    "seed {seed}: alice {ca:?}, bob {cb:?}\n{}",
                    net.trace.render()
                );
                assert_same_connection(&net, a, b);
                assert!(
                    net.failed(a).is_none() && net.failed(b).is_none(),
                    "seed {seed}"
                );
            } else {
                for h in [a, b] {
                    assert!(net.selected(h).is_none(), "seed {seed}");
                    assert!(
                        matches!(
                            net.failed(h),
                            Some(Event::Failed {
                                reason: FailReason::Timeout,
                                ..
                            })
                        ),
                        "seed {seed}"
                    );
                }
            }
        }
    }

    // ----- malformed input, by hand -----

    /// Bob alone, with Alice's description set, and one connection Alice opened to him.
    fn bob_with_a_connection(t0: Instant) -> (Agent, Description, ConnId) {
        let alice = agent(t0, Role::Controlled, host("10.0.0.1", 5000), 1);
        let mut bob = agent(t0, Role::Controlling, host("10.0.0.2", 6000), 2);
        let alice_desc = alice.local_description();
        bob.set_remote_description(t0, alice_desc.clone())
            .expect("set");
        let conn = ConnId::Accepted(7);
        bob.handle_input(
            t0,
            Input::Accepted {
                conn,
                local: addr("10.0.0.2:6000"),
                remote: addr("10.0.0.1:40001"),
            },
        )
        .expect("accepted");
        (bob, alice_desc, conn)
    }

    fn outputs(agent: &mut Agent) -> Vec<Output> {
        std::iter::from_fn(|| agent.poll_output()).collect()
    }

    fn sends(outputs: &[Output]) -> usize {
        outputs
            .iter()
            .filter(|o| matches!(o, Output::Send { .. }))
            .count()
    }

    #[test]
    fn malformed_checks_are_dropped_counted_and_change_nothing() {
        let t0 = Instant::now();
        let (mut bob, alice, conn) = bob_with_a_connection(t0);
        let bob_desc = bob.local_description();
        let _ = outputs(&mut bob);
        let user = format!("{}:{}", bob_desc.ufrag, alice.ufrag);
        let good = |tx: u128| {
            Builder::new(Class::Request, BINDING, tx)
                .username(&user)
                .priority(1_862_270_975)
                .role(RoleAttribute::Controlled(5))
        };
        let feed = |bob: &mut Agent, bytes: &[u8]| {
            bob.handle_input(
                t0,
                Input::Received {
                    conn,
                    data: framing::encode(bytes),
                },
            )
            .expect("input");
        };
        // SECURITY: row 30
        // Wrong local ufrag.
        let wrong_user = Builder::new(Class::Request, BINDING, 1)
            .username(&format!("zzzzzzzz:{}", alice.ufrag))
            .priority(1)
            .role(RoleAttribute::Controlled(5))
            .finish(Some(&bob_desc.pwd))
            .expect("builds");
        feed(&mut bob, &wrong_user);
        // SECURITY: row 31
        // Signed with the wrong password.
        let wrong_key = good(2).finish(Some(&alice.pwd)).expect("builds");
        feed(&mut bob, &wrong_key);
        // Not signed at all.
        let unsigned = good(3).finish(None).expect("builds");
        feed(&mut bob, &unsigned);
        // SECURITY: row 32
        // Bad fingerprint.
        let mut bad_fp = good(4)
            .finish(Some(&bob_desc.pwd))
            .expect("builds")
            .to_vec();
        let n = bad_fp.len();
        bad_fp[n - 1] ^= 0xff;
        feed(&mut bob, &bad_fp);
        // No fingerprint: written by hand with stun-types' layout (header + USERNAME only).
        let mut no_fp = good(5)
            .finish(Some(&bob_desc.pwd))
            .expect("builds")
            .to_vec();
        no_fp.truncate(n - 8);
        let len = (no_fp.len() - 20) as u16;
        no_fp[2..4].copy_from_slice(&len.to_be_bytes());
        feed(&mut bob, &no_fp);
        // No PRIORITY / role.
        let bare = Builder::new(Class::Request, BINDING, 6)
            .username(&user)
            .finish(Some(&bob_desc.pwd))
            .expect("builds");
        feed(&mut bob, &bare);
        // A response nobody asked for.
        let stray = Builder::new(Class::Success, BINDING, 99)
            .finish(Some(&alice.pwd))
            .expect("builds");
        feed(&mut bob, &stray);
        // Garbage that is not STUN, and STUN-looking garbage.
        feed(&mut bob, b"\x16\x03\x01 not a check");
        let mut fake = good(8)
            .finish(Some(&bob_desc.pwd))
            .expect("builds")
            .to_vec();
        fake[22..24].copy_from_slice(&[0xff, 0xff]); // an attribute running past the end
        feed(&mut bob, &refingerprint(&fake));

        let d = bob.dropped().clone();
        assert_eq!(d.wrong_ufrag, 1);
        assert_eq!(d.bad_integrity, 2);
        assert_eq!(d.bad_fingerprint, 2);
        assert_eq!(d.malformed, 2);
        assert_eq!(d.unmatched_response, 1);
        assert_eq!(d.non_stun, 1);
        // Nothing changed: no answer, no pair, the connection still waits for a real check.
        assert_eq!(sends(&outputs(&mut bob)), 0);
        assert!(
            bob.check_list()
                .pairs()
                .iter()
                .all(|p| p.origin == Origin::Active)
        );
        // A real check is then answered.
        feed(
            &mut bob,
            &good(10).finish(Some(&bob_desc.pwd)).expect("builds"),
        );
        let out = outputs(&mut bob);
        assert_eq!(sends(&out), 1);
        assert!(
            bob.check_list()
                .pairs()
                .iter()
                .any(|p| p.origin == Origin::Passive)
        );
    }

    #[test]
    fn early_checks_are_answered_or_dropped_before_the_remote_description() {
        let t0 = Instant::now();
        let alice = agent(t0, Role::Controlling, host("10.0.0.1", 5000), 1);
        let mut bob = agent(t0, Role::Controlled, host("10.0.0.2", 6000), 2);
        let (a, b) = (alice.local_description(), bob.local_description());
        let conn = ConnId::Accepted(1);
        bob.handle_input(
            t0,
            Input::Accepted {
                conn,
                local: addr("10.0.0.2:6000"),
                remote: addr("10.0.0.1:40001"),
            },
        )
        .expect("accepted");
        let user = format!("{}:{}", b.ufrag, a.ufrag);
        let feed = |bob: &mut Agent, bytes: &[u8]| {
            bob.handle_input(
                t0,
                Input::Received {
                    conn,
                    data: framing::encode(bytes),
                },
            )
            .expect("input");
        };
        let wrong_ufrag = check(1, &format!("{}:{}", a.ufrag, a.ufrag))
            .finish(Some(&b.pwd))
            .expect("builds");
        let wrong_key = check(2, &user).finish(Some(&a.pwd)).expect("builds");
        let mut bad_fp = check(3, &user)
            .finish(Some(&b.pwd))
            .expect("builds")
            .to_vec();
        let n = bad_fp.len();
        bad_fp[n - 2] ^= 0x10;
        for bytes in [&wrong_ufrag[..], &wrong_key[..], &bad_fp[..]] {
            feed(&mut bob, bytes);
        }
        assert_eq!(
            (
                bob.dropped().wrong_ufrag,
                bob.dropped().bad_integrity,
                bob.dropped().bad_fingerprint
            ),
            (1, 1, 1)
        );
        assert!(
            outputs(&mut bob).is_empty(),
            "dropped checks change nothing"
        );
        // A good early check is answered at once, signed with our password…
        let good = Builder::new(Class::Request, BINDING, 4)
            .username(&user)
            .priority(1_862_270_975)
            .role(RoleAttribute::Controlling(9))
            .finish(Some(&b.pwd))
            .expect("builds");
        feed(&mut bob, &good);
        let out = outputs(&mut bob);
        let Some(Output::Send { data, .. }) = out.first() else {
            panic!("expected an answer, got {out:?}");
        };
        let answer = FrameDecoder::new().push(data).remove(0);
        let m = StunMessage::decode(&answer).expect("decodes");
        assert_eq!((m.class, m.transaction), (Class::Success, 4));
        assert_eq!(m.xor_mapped, Some(addr("10.0.0.1:40001")));
        assert_eq!(verify_integrity(&answer, &b.pwd), Ok(()));
        // …but the triggered check waits: without Alice's password it cannot be signed.
        bob.handle_timeout(t0 + Duration::from_secs(5));
        assert!(outputs(&mut bob).is_empty());
        assert!(
            bob.poll_timeout()
                .is_none_or(|t| t > t0 + Duration::from_secs(5)),
            "the connection is kept (and the overall timeout waits for the description)"
        );
        let t1 = t0 + Duration::from_secs(5);
        bob.set_remote_description(t1, a.clone()).expect("set");
        bob.handle_timeout(t1);
        let out = outputs(&mut bob);
        let triggered = out
            .iter()
            .find_map(|o| match o {
                Output::Send { conn: c, data } if *c == conn => {
                    Some(FrameDecoder::new().push(data).remove(0))
                }
                _ => None,
            })
            .expect("the triggered check goes back on the same connection");
        let m = StunMessage::decode(&triggered).expect("decodes");
        assert_eq!(m.class, Class::Request);
        assert_eq!(m.username, Some(format!("{}:{}", a.ufrag, b.ufrag)));
        assert_eq!(verify_integrity(&triggered, &a.pwd), Ok(()));
    }

    #[test]
    fn a_connect_the_driver_never_answers_fails_its_pair() {
        let t0 = Instant::now();
        let mut alice = agent(t0, Role::Controlled, host("10.0.0.1", 5000), 1);
        let bob = agent(t0, Role::Controlling, host("10.0.0.2", 6000), 2);
        alice
            .set_remote_description(t0, bob.local_description())
            .expect("set");
        alice.handle_timeout(t0);
        let out = outputs(&mut alice);
        let Some(Output::Connect { conn, timeout, .. }) = out.first().cloned() else {
            panic!("expected a connect, got {out:?}");
        };
        assert_eq!(timeout, Config::default().connect_timeout);
        assert_eq!(alice.timeout_reason(), Some("connect timeout"));
        let guard = alice.poll_timeout().expect("a guard");
        alice.handle_timeout(guard);
        assert!(outputs(&mut alice).contains(&Output::Close { conn }));
        assert_eq!(
            alice.check_list().pairs()[0].state,
            PairState::Failed(PairFailure::ConnectFailed(ConnectError::TimedOut))
        );
        // The pair is tried again (a SYN lost, or dropped by a NAT the peer has not opened
        // yet, may pass now): after `connect_retry`, on a new connection.
        assert_eq!(alice.timeout_reason(), Some("connect retry"));
        let retry_at = alice.poll_timeout().expect("a retry");
        assert_eq!(retry_at, guard + Config::default().connect_retry);
        alice.handle_timeout(retry_at);
        let out = outputs(&mut alice);
        assert!(
            matches!(out.first(), Some(Output::Connect { conn: again, .. }) if *again != conn),
            "a new connect: {out:?}"
        );
        assert_eq!(alice.check_list().pairs()[0].state, PairState::InProgress);
    }

    /// Retries back off (200 ms, 400 ms, 800 ms, then 1.6 s) and stop at the ICE deadline,
    /// which then fails the session with the pair's last reason.
    #[test]
    fn a_pair_that_keeps_failing_is_retried_with_backoff_until_the_deadline() {
        let t0 = Instant::now();
        let mut alice = agent(t0, Role::Controlled, host("10.0.0.1", 5000), 1);
        let bob = agent(t0, Role::Controlling, host("10.0.0.2", 6000), 2);
        alice
            .set_remote_description(t0, bob.local_description())
            .expect("set");
        let mut now = t0;
        let mut connects = Vec::new();
        let mut failed_at = Vec::new();
        while let Some(at) = alice.poll_timeout() {
            now = at;
            alice.handle_timeout(now);
            for out in outputs(&mut alice) {
                if let Output::Connect { conn, .. } = out {
                    connects.push(now);
                    // A SYN lost every time.
                    alice
                        .handle_input(
                            now,
                            Input::ConnectFailed {
                                conn,
                                error: ConnectError::TimedOut,
                            },
                        )
                        .expect("input");
                    failed_at.push(now);
                }
            }
            if alice.is_failed() {
                break;
            }
        }
        let gaps: Vec<Duration> = connects.windows(2).map(|w| w[1] - w[0]).collect();
        let first = gaps.first().copied().expect("retried");
        assert!(first >= Duration::from_millis(200), "{gaps:?}");
        assert!(
            gaps.windows(2).all(|w| w[1] >= w[0]),
            "the waits never shrink: {gaps:?}"
        );
        assert!(
            gaps.iter().all(|g| *g <= Duration::from_millis(1_650)),
            "at most 1.6 s (plus pacing): {gaps:?}"
        );
        assert!(
            connects.len() <= 1 + Config::default().max_connect_retries as usize,
            "{connects:?}"
        );
        assert!(alice.is_failed(), "the deadline ends it");
        assert!(now <= t0 + Config::default().ice_timeout, "at the deadline");
        assert!(
            failed_at
                .iter()
                .all(|at| *at < t0 + Config::default().ice_timeout)
        );
    }

    #[test]
    fn a_forged_answer_changes_nothing_and_the_real_one_still_counts() {
        let t0 = Instant::now();
        let mut alice = agent(t0, Role::Controlled, host("10.0.0.1", 5000), 1);
        let bob = agent(t0, Role::Controlling, host("10.0.0.2", 6000), 2);
        let (a, b) = (alice.local_description(), bob.local_description());
        alice.set_remote_description(t0, b.clone()).expect("set");
        alice.handle_timeout(t0);
        let conn = ConnId::Connect(0);
        assert!(matches!(
            outputs(&mut alice).first(),
            Some(Output::Connect { conn: c, .. }) if *c == conn
        ));
        alice
            .handle_input(
                t0,
                Input::Connected {
                    conn,
                    local: addr("10.0.0.1:40001"),
                },
            )
            .expect("connected");
        let check = outputs(&mut alice)
            .into_iter()
            .find_map(|o| match o {
                Output::Send { data, .. } => Some(FrameDecoder::new().push(&data).remove(0)),
                _ => None,
            })
            .expect("a check");
        let m = StunMessage::decode(&check).expect("decodes");
        assert_eq!(m.username, Some(format!("{}:{}", b.ufrag, a.ufrag)));
        assert_eq!(m.role, Some(RoleAttribute::Controlled(alice.tie_breaker())));
        // SECURITY: row 33
        let answer = |password: &str| {
            Builder::new(Class::Success, BINDING, m.transaction)
                .xor_mapped(addr("10.0.0.1:40001"))
                .finish(Some(password))
                .expect("builds")
        };
        let feed = |alice: &mut Agent, bytes: &[u8]| {
            alice
                .handle_input(
                    t0,
                    Input::Received {
                        conn,
                        data: framing::encode(bytes),
                    },
                )
                .expect("input");
        };
        // Signed with our own password, not Bob's: a forgery.
        feed(&mut alice, &answer(&a.pwd));
        assert_eq!(alice.dropped().bad_integrity, 1);
        assert_eq!(alice.check_list().pairs()[0].state, PairState::InProgress);
        // The real answer still ends the transaction.
        feed(&mut alice, &answer(&b.pwd));
        assert_eq!(alice.check_list().pairs()[0].state, PairState::Succeeded);
        // A second copy of it no longer matches anything.
        feed(&mut alice, &answer(&b.pwd));
        assert_eq!(alice.dropped().unmatched_response, 1);
    }

    // ----- early data: a peer that selected first and streams at once -----

    /// Bob answers (controlling, with Alice's description) and selects before Alice has
    /// his description, then streams `size` bytes of application data at once, as libnice's
    /// users do as soon as a pair is selected. Alice's description of him comes a second
    /// later. Returns the net after that, with what Bob sent.
    fn bob_streams_before_alice_knows_him(size: usize) -> (Net, usize, usize, ConnId, Vec<u8>) {
        let (mut net, a, b) = pair_net(host("10.0.0.1", 5000), host("10.0.0.2", 6000));
        net.tell(a, b);
        let mut at = Duration::ZERO;
        while net.selected(b).is_none() {
            at += Duration::from_millis(1);
            assert!(
                at < Duration::from_secs(5),
                "bob selects without alice's answer"
            );
            net.run_for(at);
        }
        let bobs = selected_conn(&net, b);
        let (_, alices) = net.peer_of(b, bobs).expect("a connection to alice");
        // 16 KiB a millisecond, as a TCP stream would bring it.
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        for chunk in data.chunks(16 * 1024) {
            net.hosts[b].agent.send(chunk).expect("bob has selected");
            at += Duration::from_millis(1);
            net.run_for(at);
        }
        net.run_for(at + Duration::from_secs(1));
        assert!(
            net.pauses.contains(&(a, alices, true)),
            "alice stops reading past the early-data limit: {:?}",
            net.pauses
        );
        assert!(net.selected(a).is_none(), "alice cannot select yet");
        net.tell(b, a);
        net.run_for(at + Duration::from_secs(13));
        (net, a, b, alices, data)
    }

    #[test]
    fn a_peer_that_streams_as_soon_as_it_selects_keeps_its_connection() {
        // Before, Alice closed the connection at 64 KiB: Bob's selected one, so his session
        // failed and hers with it, with no reason recorded on her side.
        let (net, a, b, conn, data) = bob_streams_before_alice_knows_him(1 << 20);
        assert_eq!(
            net.pauses
                .iter()
                .filter(|(h, c, _)| (*h, *c) == (a, conn))
                .map(|(_, _, paused)| *paused)
                .collect::<Vec<_>>(),
            vec![true, false],
            "paused until the description came, then read again"
        );
        assert_same_connection(&net, a, b);
        assert!(net.failed(a).is_none() && net.failed(b).is_none());
        let got: Vec<u8> = net.hosts[a]
            .data
            .iter()
            .flat_map(|(c, d)| {
                assert_eq!(*c, conn);
                d.to_vec()
            })
            .collect();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "every early byte, in order, once selected");
        assert_eq!(net.hosts[a].agent.dropped().early_data_overflow, 0);
    }

    #[test]
    fn early_data_past_the_cap_closes_the_connection_with_a_reason() {
        // 5 MiB before Bob's answer to Alice's triggered check: past the 4 MiB Alice keeps.
        let size = ferry_proto::ice::EARLY_DATA_CAP + (1 << 20);
        let (net, a, _b, conn, _) = bob_streams_before_alice_knows_him(size);
        assert!(net.hosts[a].closed.contains(&conn));
        assert!(net.selected(a).is_none());
        let Some(Event::Failed { pairs, .. }) = net.failed(a) else {
            panic!("alice's session fails, with its pairs")
        };
        assert!(
            pairs
                .iter()
                .any(|p| p.state == PairState::Failed(PairFailure::EarlyDataOverflow)),
            "{pairs:#?}"
        );
    }

    #[test]
    fn early_data_past_the_cap_without_a_pair_is_counted() {
        // A driver that delivers one huge read after the agent asked it to pause: the
        // connection has no pair yet (no description), so the close is counted.
        let t0 = Instant::now();
        let alice = agent(t0, Role::Controlling, host("10.0.0.1", 5000), 1);
        let mut bob = agent(t0, Role::Controlled, host("10.0.0.2", 6000), 2);
        let (a, b) = (alice.local_description(), bob.local_description());
        let conn = ConnId::Accepted(1);
        bob.handle_input(
            t0,
            Input::Accepted {
                conn,
                local: addr("10.0.0.2:6000"),
                remote: addr("10.0.0.1:40001"),
            },
        )
        .expect("accepted");
        let check = Builder::new(Class::Request, BINDING, 4)
            .username(&format!("{}:{}", b.ufrag, a.ufrag))
            .priority(1_862_270_975)
            .role(RoleAttribute::Controlling(9))
            .use_candidate()
            .finish(Some(&b.pwd))
            .expect("builds");
        let mut wire = BytesMut::from(&framing::encode(&check)[..]);
        let frame = framing::encode(&[0x17; 60_000]);
        while wire.len() <= ferry_proto::ice::EARLY_DATA_CAP + 100_000 {
            wire.extend_from_slice(&frame);
        }
        bob.handle_input(
            t0,
            Input::Received {
                conn,
                data: wire.freeze(),
            },
        )
        .expect("input");
        let out = outputs(&mut bob);
        assert!(out.contains(&Output::PauseReading { conn }), "{out:?}");
        assert!(out.contains(&Output::Close { conn }));
        assert_eq!(bob.dropped().early_data_overflow, 1);
    }

    #[test]
    fn a_peer_that_nominates_aggressively_is_followed() {
        // Older pjnath put USE-CANDIDATE in every check (aggressive nomination). The
        // controlled side selects the pair once its own triggered check on it succeeds.
        let t0 = Instant::now();
        let alice = agent(t0, Role::Controlling, host("10.0.0.1", 5000), 1);
        let mut bob = agent(t0, Role::Controlled, host("10.0.0.2", 6000), 2);
        let (a, b) = (alice.local_description(), bob.local_description());
        bob.set_remote_description(t0, a.clone()).expect("set");
        let _ = outputs(&mut bob);
        let conn = ConnId::Accepted(4);
        bob.handle_input(
            t0,
            Input::Accepted {
                conn,
                local: addr("10.0.0.2:6000"),
                remote: addr("10.0.0.1:40001"),
            },
        )
        .expect("accepted");
        let aggressive = Builder::new(Class::Request, BINDING, 77)
            .username(&format!("{}:{}", b.ufrag, a.ufrag))
            .priority(1_862_270_975)
            .role(RoleAttribute::Controlling(u64::MAX))
            .use_candidate()
            .finish(Some(&b.pwd))
            .expect("builds");
        bob.handle_input(
            t0,
            Input::Received {
                conn,
                data: framing::encode(&aggressive),
            },
        )
        .expect("input");
        assert!(
            bob.selected().is_none(),
            "not before bob's own check succeeds"
        );
        // The triggered check goes out on the same connection at the next pacing tick.
        bob.handle_timeout(t0 + Duration::from_millis(50));
        let triggered = outputs(&mut bob)
            .into_iter()
            .filter_map(|o| match o {
                Output::Send { conn: c, data } if c == conn => {
                    Some(FrameDecoder::new().push(&data).remove(0))
                }
                _ => None,
            })
            .map(|f| StunMessage::decode(&f).expect("decodes"))
            .find(|m| m.class == Class::Request)
            .expect("a triggered check");
        let answer = Builder::new(Class::Success, BINDING, triggered.transaction)
            .xor_mapped(addr("10.0.0.2:6000"))
            .finish(Some(&a.pwd))
            .expect("builds");
        let t1 = t0 + Duration::from_millis(60);
        bob.handle_input(
            t1,
            Input::Received {
                conn,
                data: framing::encode(&answer),
            },
        )
        .expect("input");
        let out = outputs(&mut bob);
        assert!(out.iter().any(|o| matches!(
            o,
            Output::Event(Event::Selected { conn: c, .. }) if *c == conn
        )));
        assert_eq!(bob.selected().map(|(c, _)| c), Some(conn));
    }

    #[test]
    fn a_connection_that_never_checks_is_closed() {
        let t0 = Instant::now();
        let (mut bob, _, conn) = bob_with_a_connection(t0);
        let _ = outputs(&mut bob);
        // SECURITY: row 35
        bob.handle_timeout(t0 + Config::default().check_timeout);
        assert!(outputs(&mut bob).contains(&Output::Close { conn }));
        assert_eq!(bob.dropped().silent_connection, 1);
    }

    #[test]
    fn a_connection_the_peer_ends_is_closed_by_us_too() {
        // A peer's FIN (or close, or reset) makes the agent forget the connection; it must say
        // `Close` so the driver sends our FIN and frees the socket (else CLOSE-WAIT for ever).
        for lost in [
            (|conn| Input::Closed { conn }) as fn(ConnId) -> Input,
            |conn| Input::Reset { conn },
        ] {
            let t0 = Instant::now();
            let (mut bob, _, conn) = bob_with_a_connection(t0);
            let _ = outputs(&mut bob);
            bob.handle_input(t0, lost(conn)).expect("known connection");
            assert_eq!(
                outputs(&mut bob)
                    .iter()
                    .filter(|o| **o == Output::Close { conn })
                    .count(),
                1,
                "exactly one Close for the lost connection"
            );
            // Closing is remembered: a second report of it changes nothing.
            bob.handle_input(t0, lost(conn)).expect("ignored");
            assert!(outputs(&mut bob).is_empty());
        }
    }

    #[test]
    fn driver_mistakes_are_errors_not_panics() {
        let t0 = Instant::now();
        let (mut bob, alice, conn) = bob_with_a_connection(t0);
        let again = Input::Accepted {
            conn,
            local: addr("10.0.0.2:6000"),
            remote: addr("10.0.0.1:1"),
        };
        assert!(bob.handle_input(t0, again).is_err());
        let wrong_space = Input::Accepted {
            conn: ConnId::Connect(3),
            local: addr("10.0.0.2:6000"),
            remote: addr("10.0.0.1:1"),
        };
        assert!(bob.handle_input(t0, wrong_space).is_err());
        assert!(bob.set_remote_description(t0, alice).is_err());
        assert!(bob.send(b"x").is_err());
        // Inputs about connections the agent does not know are ignored.
        bob.handle_input(
            t0,
            Input::Received {
                conn: ConnId::Accepted(99),
                data: Bytes::from_static(b"x"),
            },
        )
        .expect("ignored");
        bob.handle_input(
            t0,
            Input::Reset {
                conn: ConnId::Connect(42),
            },
        )
        .expect("ignored");
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = StunRng::new(2026);
        let t0 = Instant::now();
        let (mut bob, _, conn) = bob_with_a_connection(t0);
        let responses = [
            Builder::new(Class::Success, BINDING, 3)
                .xor_mapped(addr("10.0.0.1:5"))
                .finish(Some("p"))
                .expect("builds"),
            Builder::new(Class::Success, BINDING, 3)
                .xor_mapped(addr("[2001:db8::1]:5"))
                .finish(Some("p"))
                .expect("builds"),
            Builder::new(Class::Error, BINDING, 3)
                .error_code(487, "Role Conflict")
                .finish(Some("p"))
                .expect("builds"),
        ];
        let mut valid = check(1, "a1b2:c3d4")
            .finish(Some("p"))
            .expect("builds")
            .to_vec();
        // SECURITY: row 36
        for round in 0..20_000u32 {
            let len = (rng.next_u64() % 120) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            if round % 3 == 0 && len >= 8 {
                // Make it look like STUN so the deeper parsers run.
                bytes[0] &= 0x3f;
                bytes[4..8].copy_from_slice(&0x2112_a442u32.to_be_bytes());
                if len >= 20 {
                    let body = (len - 20) as u16;
                    bytes[2..4].copy_from_slice(&body.to_be_bytes());
                }
            }
            if round % 5 == 0 {
                // Mutate one byte of a valid check, keeping its FINGERPRINT right so the
                // attribute parsers behind it run too.
                let i = (rng.next_u64() as usize) % (valid.len() - 8);
                valid[i] ^= 1 << (rng.next_u64() % 8);
                valid = refingerprint(&valid);
                bytes = valid.clone();
            }
            if round % 7 == 0 {
                let mut r = responses[(round as usize / 7) % responses.len()].to_vec();
                let i = 20 + (rng.next_u64() as usize) % (r.len() - 28);
                r[i] = rng.next_u64() as u8;
                bytes = refingerprint(&r);
            }
            let _ = StunMessage::decode(&bytes);
            let _ = verify_integrity(&bytes, "p");
            let _ = ferry_proto::trace::stun::summarize(
                &bytes,
                &mut ferry_proto::trace::Ordinals::new("tx"),
            );
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let _ = text.parse::<Candidate>();
            let _ = Description::parse(&text);
            let _ = Description::parse(&format!("abcd1234\n0123456789abcdef01234567\n{text}"));
            // Framed and raw, on the connection.
            bob.handle_input(
                t0,
                Input::Received {
                    conn,
                    data: framing::encode(&bytes),
                },
            )
            .expect("input");
            bob.handle_input(
                t0,
                Input::Received {
                    conn,
                    data: Bytes::from(bytes),
                },
            )
            .expect("input");
            let _ = outputs(&mut bob);
        }
    }
}
