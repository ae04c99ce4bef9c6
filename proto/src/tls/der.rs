//! Just enough DER to split a certificate into what was signed and the signature.

/// One tag-length-value: (tag, the whole TLV, its content, what follows it).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads the first TLV of `input`; `None` if it is cut short or its length is absurd.
fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    let header = input.len() - rest.len();
    Some((tag, &input[..header + len], &rest[..len], &rest[len..]))
}

/// `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }`:
/// returns the whole `tbsCertificate` TLV (the signed bytes) and the signature bytes.
pub(crate) fn split_certificate(der: &[u8]) -> Option<(&[u8], &[u8])> {
    const SEQUENCE: u8 = 0x30;
    const BIT_STRING: u8 = 0x03;
    let (SEQUENCE, _, body, []) = tlv(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _, rest) = tlv(body)? else {
        return None;
    };
    let (SEQUENCE, _, _, rest) = tlv(rest)? else {
        return None;
    };
    let (BIT_STRING, _, bits, []) = tlv(rest)? else {
        return None;
    };
    // A signature is a whole number of bytes: no unused bits.
    let (0, signature) = bits.split_first()? else {
        return None;
    };
    Some((tbs, signature))
}

/// The cRLNumber extension (OID 2.5.29.20) of a DER `CertificateList`, when it fits a `u64`.
pub(crate) fn crl_number(der: &[u8]) -> Option<u64> {
    const CRL_NUMBER_OID: &[u8] = &[0x06, 0x03, 0x55, 0x1d, 0x14];
    let (tbs, _) = split_certificate(der)?;
    let (0x30, _, mut fields, _) = tlv(tbs)? else {
        return None;
    };
    // version, signature, issuer, thisUpdate, [nextUpdate], [revokedCertificates], [0] extensions
    while !fields.is_empty() {
        let (tag, _, content, rest) = tlv(fields)?;
        fields = rest;
        if tag != 0xa0 {
            continue;
        }
        let (0x30, _, mut extensions, _) = tlv(content)? else {
            return None;
        };
        while !extensions.is_empty() {
            let (_, _, extension, rest) = tlv(extensions)?;
            extensions = rest;
            if !extension.starts_with(CRL_NUMBER_OID) {
                continue;
            }
            let mut parts = &extension[CRL_NUMBER_OID.len()..];
            // An optional `critical` BOOLEAN, then the OCTET STRING holding the INTEGER.
            let (mut tag, _, mut value, mut rest) = tlv(parts)?;
            if tag == 0x01 {
                parts = rest;
                (tag, _, value, rest) = tlv(parts)?;
            }
            let _ = rest;
            let (0x04, 0x02) = (tag, *value.first()?) else {
                return None;
            };
            let (0x02, _, int, _) = tlv(value)? else {
                return None;
            };
            if int.len() > 9 || (int.len() == 9 && int[0] != 0) {
                return None;
            }
            return Some(int.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_odd_input_is_none_not_a_panic() {
        for bad in [
            &b""[..],
            b"\x30",
            b"\x30\x05\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"\x30\x80",
            b"\x31\x00",
        ] {
            assert_eq!(split_certificate(bad), None, "{bad:?}");
        }
        // SEQUENCE { SEQUENCE {1}, SEQUENCE {}, BIT STRING 0x00 0xaa 0xbb }
        let cert = b"\x30\x0a\x30\x01\x05\x30\x00\x03\x03\x00\xaa\xbb";
        assert_eq!(
            split_certificate(cert),
            Some((&b"\x30\x01\x05"[..], &b"\xaa\xbb"[..]))
        );
    }
}
