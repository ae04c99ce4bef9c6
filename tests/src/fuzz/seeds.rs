//! The seed inputs of every target: test vectors from `PROTOCOL.md`, messages the code
//! itself writes, and scripts that walk the structure-aware targets through their happy
//! paths, so the fuzzer starts from inputs that reach deep. The example `fuzz_seeds` writes
//! them to `fuzz/corpus/<target>/seed-<name>`; the corpus replay also runs them directly.

use ferry_proto::channel::encode_unit;
use ferry_proto::ice::Description;
use ferry_proto::signal::{PeerConnection, SeededRng, seal};
use ferry_proto::stun::framing;
use ferry_proto::stun::{BINDING, Builder, Class, RoleAttribute};

use super::signal::{T0, identities, seal_raw};

const SPEC: &str = include_str!("../../../PROTOCOL.md");

/// One seed: the target it feeds, a name, the bytes.
pub type Seed = (&'static str, String, Vec<u8>);

/// Every vector of `PROTOCOL.md`, by name (text blocks end each line with LF; hex blocks are
/// their digits, `#` starting a comment).
pub fn spec_vectors() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut lines = SPEC.lines();
    while let Some(line) = lines.next() {
        let Some((kind, name)) = line
            .strip_prefix("```")
            .and_then(|info| info.split_once(" vector="))
        else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let bytes = match kind {
            "text" => body.iter().flat_map(|l| l.bytes().chain([b'\n'])).collect(),
            _ => {
                let digits: String = body
                    .iter()
                    .map(|l| l.split('#').next().unwrap_or(""))
                    .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
                    .collect();
                hex::decode(digits).unwrap_or_default()
            }
        };
        out.push((name.to_owned(), bytes));
    }
    out
}

fn with_split(split: u8, bytes: &[u8]) -> Vec<u8> {
    [&[split][..], bytes].concat()
}

const SEED_SDP: &str = "0d04b932
7c33834e7cf944bf0e367b47
H6e6ca682 1 TCP 2130706431 2607:fad8:4:6:9eb6:d0ff:dead:c0de 50693 typ host tcptype passive
H6e6ca682 1 TCP 2130706431 2607:fad8:4:6:9eb6:d0ff:dead:c0de 9 typ host tcptype active
Hc0a8007e 1 TCP 2130706431 192.168.0.123 42751 typ host tcptype passive
Sc0a8007e 1 TCP 1694498815 X.X.X.X 42751 typ srflx tcptype passive
R1 1 TCP 16777215 198.51.100.1 3478 typ relay raddr 0.0.0.0 rport 0 tcptype passive
Z.Z.Z.Z:YYYY
";

/// Every seed of every target.
pub fn seeds() -> Vec<Seed> {
    let mut out: Vec<Seed> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_owned(), bytes));
    };
    let vectors = spec_vectors();
    for (name, bytes) in &vectors {
        let target = match name.split('-').next() {
            Some("header") => "transfer_header",
            Some("reply") => "transfer_reply",
            Some("frame") => "transfer_frame",
            Some("channel") => "channel_units",
            Some("opendht") => "opendht_message",
            Some("manifest") => "transfer_manifest",
            _ if name.ends_with("-sender") => "transfer_header",
            _ => "transfer_reply",
        };
        if target == "channel_units" {
            add(target, name, [&[0u8, 3][..], bytes].concat());
        } else if target == "opendht_message" {
            add(target, name, bytes.clone());
        } else {
            add(target, name, with_split(0, bytes));
            add(target, &format!("{name}-split"), with_split(5, bytes));
        }
        if name == "session-framed-sender" {
            let frames = bytes.splitn(6, |&b| b == b'\n').last().unwrap_or_default();
            add("transfer_frame", name, with_split(3, frames));
        }
    }
    add(
        "transfer_header",
        "crlf",
        with_split(
            0,
            b"Content-Length: 7\r\nDisplay-Name: a b\r\nX-Other: 1\r\n\r\nrest",
        ),
    );
    add(
        "transfer_reply",
        "long",
        with_split(0, b"GO 000000000000000000000000000000000001\n"),
    );

    for name in [
        "../../etc/passwd",
        "CON.txt",
        "evil\u{202e}gpj.exe",
        " .hidden. ",
        "a\0b\x1b[31m",
    ] {
        add("display_name", name, name.as_bytes().to_vec());
    }
    add(
        "display_name",
        "long",
        format!("{}.tar.gz", "é".repeat(300)).into_bytes(),
    );

    // Incoming, framed: header of 5 bytes, accepted, DATA "hello", its write, END, digest.
    let mut script = vec![0u8, 0, 5, 0, 0, 0, 0];
    script.extend([0, 10, 1, 0, 0, 0, 5]);
    script.extend(b"hello");
    script.extend([2, 0, 0, 69, 2, 0, 0, 0, 64]);
    script.extend([0x5a; 64]);
    script.extend([2, 0, 2, 0, 2, 0, 3, 30]);
    add("transfer_machines", "incoming-framed", script);
    // Incoming, raw: the header then bytes past its size, then a reset.
    add(
        "transfer_machines",
        "incoming-raw",
        vec![
            1, 0, 3, 0, 1, 0, 0, 0, 6, b'a', b'b', b'c', b'd', b'e', b'f', 4, 1,
        ],
    );
    // Outgoing, framed: GO 0, reads answered, VERDICT ok; then a cancel.
    let mut script = vec![2u8, 0, 5, 0, 5];
    script.extend(b"GO 0\n");
    script.extend([2, 2, 2, 3, 2, 0, 6, 4, 0, 0, 0, 1, 0, 4, 0]);
    add("transfer_machines", "outgoing-framed", script);
    add(
        "transfer_machines",
        "outgoing-raw",
        [&[3u8, 0, 5, 0, 3][..], b"GO\n", &[2, 2, 3, 0]].concat(),
    );

    let request = Builder::new(Class::Request, BINDING, 0x1234_5678_9abc_def0_1122_3344)
        .username("0d04b932:a1b2c3d4")
        .priority(1_694_498_815)
        .use_candidate()
        .role(RoleAttribute::Controlling(42))
        .finish(Some(super::stun::PASSWORD))
        .unwrap_or_default();
    let success = Builder::new(Class::Success, BINDING, 0x1234_5678_9abc_def0_1122_3344)
        .xor_mapped("192.0.2.7:4242".parse().expect("an address"))
        .finish(Some(super::stun::PASSWORD))
        .unwrap_or_default();
    let error = Builder::new(Class::Error, BINDING, 7)
        .error_code(487, "Role Conflict")
        .finish(None)
        .unwrap_or_default();
    add("stun_decode", "request", request.to_vec());
    add("stun_decode", "success", success.to_vec());
    add("stun_decode", "error", error.to_vec());
    let mut framed = framing::encode(&request).to_vec();
    framed.extend_from_slice(&framing::encode(b""));
    framed.extend_from_slice(&framing::encode(&[0x17, 3, 3, 0, 2, 0xaa, 0xbb]));
    add("rfc4571_deframer", "stun-then-tls", with_split(0, &framed));
    add(
        "rfc4571_deframer",
        "stun-then-tls-split",
        with_split(3, &framed),
    );
    add(
        "rfc4571_deframer",
        "huge-prefix",
        with_split(0, &[0xff, 0xff, 1, 2, 3]),
    );

    for (i, line) in SEED_SDP.lines().enumerate() {
        add(
            "ice_candidate",
            &format!("line-{i}"),
            line.as_bytes().to_vec(),
        );
    }
    add("ice_description", "seed", SEED_SDP.as_bytes().to_vec());

    let ids = identities();
    let pc = PeerConnection {
        id: 0x1234_5678_9abc_def0,
        is_answer: false,
        ice: Description::parse(SEED_SDP)
            .map(|p| p.description.to_string())
            .unwrap_or_default(),
        addresses: vec!["203.0.113.7:4242".parse().expect("an address")],
        seal: Some(ids.a1.seal_public_key()),
        time: None,
    };
    let answer = PeerConnection {
        is_answer: true,
        seal: None,
        time: None,
        ..pc.clone()
    };
    add("signal_decode", "request", pc.encode());
    add("signal_decode", "answer", answer.encode());
    add(
        "signal_decode",
        "announcement",
        ids.bob.announce(&ids.b1).unwrap_or_default(),
    );
    let mut rng = SeededRng::new(1);
    let sealed = seal(&ids.a1, &ids.b1.recipient(), &pc.encode(), &mut rng).unwrap_or_default();
    add(
        "signal_open",
        "sealed-request",
        [&[0u8, 0][..], &sealed].concat(),
    );
    add(
        "signal_open",
        "body",
        [&[2u8, 0][..], &pc.encode()].concat(),
    );
    // msgpack { account, device, body, sig } with Alice's certificates and a signature of zeros.
    let mut inner = vec![0x84];
    for (key, value) in [
        ("account", ids.alice.certificate().to_vec()),
        ("device", ids.a1.certificate().to_vec()),
        ("body", pc.encode()),
        ("sig", vec![0; 64]),
    ] {
        inner.push(0xa0 | key.len() as u8);
        inner.extend(key.as_bytes());
        inner.push(0xc5);
        inner.extend((value.len() as u16).to_be_bytes());
        inner.extend(value);
    }
    add(
        "signal_open",
        "inner-bad-signature",
        [&[1u8, 0][..], &inner].concat(),
    );
    let _ = seal_raw;

    let mut units = Vec::new();
    let mut buf = bytes::BytesMut::new();
    encode_unit(
        0,
        b"\x83\xa4name\xb2file-transfer://42\xa7channel\x02\xa5state\x00",
        &mut buf,
    );
    encode_unit(2, b"data", &mut buf);
    encode_unit(2, b"", &mut buf);
    units.extend_from_slice(&buf);
    add(
        "channel_units",
        "client-request-data-end",
        [&[1u8, 0][..], &units].concat(),
    );
    add(
        "channel_units",
        "client-request-data-end-split",
        [&[1u8, 4][..], &units].concat(),
    );

    // TURN client: the 401 dance, the allocation, a permission, a Connect and its bind, peer
    // bytes; then a forged success and an unsigned error.
    let mut script = vec![0u8, 7];
    script.extend([1, 0, 0, 0]);
    script.extend([2, 0, 0x02, 0x58]);
    script.extend([6, 1, 0, 2, 0]);
    script.extend([6, 1, 1, 2, 0, 0, 0, 0x10, 0]);
    script.extend([7, 0, 0, 2, 0]);
    script.extend([0, 3, b'a', b'b', b'c', 1]);
    script.extend([5, 100, 2, 0, 0, 60]);
    add(
        "turn_client",
        "dance-allocate-permit-connect",
        script.clone(),
    );
    script.extend([6, 2, 0, 3, 0, 0, 0, 1, 4, 0, 2, 1, 1, 0, 1, 1, 0, 1, 0, 1]);
    add("turn_client", "forgeries", script);
    add(
        "turn_client",
        "stale-nonce-loop",
        vec![
            1, 3, 1, 0, 0, 0, 1, 0, 1, 1, 1, 0, 2, 1, 1, 0, 0, 1, 1, 0, 1, 1,
        ],
    );

    // TURN server: a client, its unsigned then signed Allocate, the relay bound, a
    // permission, a Connect answered, a second connection binding it.
    let mut script = vec![0u8, 1];
    script.extend([2, 0, 0, 0, 0, 0, 1, 1, 0, 2, 88]);
    script.extend([2, 0, 0, 0, 0, 0, 2, 1, 0, 2, 88]);
    script.extend([5, 0]);
    script.extend([2, 0, 2, 0, 0, 0, 3, 1, 0]);
    script.extend([2, 0, 3, 0, 0, 0, 4, 1, 0]);
    script.extend([5, 2, 0]);
    script.extend([0, 2, 2, 1, 4, 0, 0, 0, 5, 1, 0, 0]);
    script.extend([5, 3, 0, 3, b'x', b'y', b'z']);
    script.extend([1, 1, 2, b'h', b'i', 4, 100, 6, 0, 0]);
    add("turn_server", "allocate-permit-connect-bind", script);
    add(
        "turn_server",
        "bad-credentials",
        vec![
            0, 1, 2, 0, 0, 0, 0, 0, 1, 1, 0, 2, 88, 2, 0, 0, 0, 0, 0, 2, 1, 8, 2, 88, 2, 0, 0, 0,
            0, 0, 3, 1, 16, 2, 88, 2, 0, 1, 0, 0, 0, 4, 1, 36,
        ],
    );

    let chunk = |b: &[u8]| {
        [
            format!("{:x}\r\n", b.len()).into_bytes(),
            b.to_vec(),
            b"\r\n".to_vec(),
        ]
        .concat()
    };
    let lines = b"{\"data\":\"aGVsbG8=\",\"id\":\"1\",\"type\":0}\n{\"id\":\"2\",\"expired\":true}\nnot json\n{\"data\":\"d29ybGQ=\",\"id\":3}\n";
    let chunked = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
        chunk(&lines[..50]),
        chunk(&lines[50..]),
        b"0\r\n\r\n".to_vec(),
    ]
    .concat();
    add("opendht_proxy", "chunked-listen", with_split(0, &chunked));
    add(
        "opendht_proxy",
        "chunked-listen-split",
        with_split(7, &chunked),
    );
    add("opendht_proxy", "length-put-answer", with_split(0, b"HTTP/1.1 200 OK\r\nContent-Length: 35\r\n\r\n{\"data\":\"eA==\",\"id\":\"42\",\"type\":0}\n"));
    add(
        "opendht_proxy",
        "until-close",
        with_split(
            0,
            b"HTTP/1.1 200 OK\r\n\r\n{\"data\":\"eQ==\",\"id\":\"7\"}\n",
        ),
    );

    add(
        "folder_dht",
        "values-and-plants",
        [
            &[0u8, 5][..],
            b"hello",
            &[1, 5],
            b"world",
            &[2, 1, b'x'],
            &[3, 1, b'y'],
            &[4, 1, b'z'],
            &[5, 2, b'v', b'1'],
            &[6, 1, b'f'],
            &[7, 1, b'd'],
            &[8, 1, b'b', 9],
        ]
        .concat(),
    );

    add("identity_pem", "account", ids.alice.to_pem().into_bytes());
    add("identity_pem", "device", ids.a1.to_pem().into_bytes());
    add(
        "identity_pem",
        "account-id",
        ids.alice.id().to_string().into_bytes(),
    );
    if let Ok(list) = ids.alice.revoke(&[ids.a1.id()], T0, 1) {
        add("revocation_list", "alice-revokes-a1", list.der().to_vec());
        if let Some(published) = ferry_proto::signal::publish_revocations(&ids.a1, &list) {
            add("revocation_list", "alice-publishes", published);
        }
    }
    if let Ok(list) = ids.alice.revoke(&[], T0, u64::MAX) {
        add("revocation_list", "empty-max-number", list.der().to_vec());
    }
    out
}
