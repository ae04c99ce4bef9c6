//! TLS records by content type and length: their bytes differ from run to run (rustls draws
//! its randomness from the operating system), their types and lengths do not.

use super::Summary;

/// TLS records cut from one direction of a stream, whatever the pieces they came in: a
/// record may span RFC 4571 frames, or share one.
#[derive(Debug, Default)]
pub struct RecordStream {
    /// The bytes of a record not yet whole.
    pending: Vec<u8>,
}

impl RecordStream {
    /// A direction on which nothing was sent yet.
    pub fn new() -> RecordStream {
        RecordStream::default()
    }

    /// Whether a record is partly seen: the next bytes continue it.
    pub fn is_mid_record(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Summarises the records completed by `data`; application data counts as `TLS data`.
    pub fn decode(&mut self, data: &[u8]) -> Vec<Summary> {
        self.pending.extend_from_slice(data);
        let whole = whole_records(&mut self.pending);
        records(&whole)
            .into_iter()
            .map(|line| match line.strip_prefix("TLS ApplicationData ") {
                Some(len) => Summary::sum("TLS data", len.parse().unwrap_or(0)),
                None => Summary::plain(line),
            })
            .collect()
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

/// Summaries of the TLS records in `data` for traces: content type and length only, since
/// the bytes differ from run to run. Bytes that do not start a record (a split) are counted.
pub fn records(data: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 5 {
        let kind = match rest[0] {
            20 => "ChangeCipherSpec",
            21 => "Alert",
            22 => "Handshake",
            23 => "ApplicationData",
            _ => break,
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
