//! A small MessagePack reader and writer with hard bounds, for OpenDHT's messages.
//!
//! OpenDHT's packets are at most a few kilobytes of msgpack; this module reads one into a
//! borrowed tree ([`Object`]) and writes the few forms OpenDHT's own `msgpack-c` packer
//! emits (it always picks the shortest encoding, so our bytes match `dhtnode`'s). It owns
//! nothing of OpenDHT's meaning: that is [`super::message`] and [`super::value`].
//!
//! Why our own and not `rmp`: the reader must refuse hostile input before allocating
//! (a declared array of 2³² elements in a 20-byte packet), bound nesting, and borrow the
//! bytes of strings and binaries; a hundred lines do that and keep every bound visible.

/// The deepest nesting we read. OpenDHT's deepest message (a reply holding a signed
/// value) nests five levels; anything far deeper is hostile.
// SECURITY: row 137
pub const MAX_DEPTH: usize = 16;

/// Why a buffer is not one msgpack object we accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The buffer ends inside an object.
    #[error("truncated msgpack")]
    Truncated,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("msgpack nested too deep")]
    TooDeep,
    /// A marker byte msgpack reserves (0xc1).
    #[error("reserved msgpack marker")]
    Reserved,
    /// Bytes left after the object.
    #[error("trailing bytes after msgpack object")]
    Trailing,
}

/// One msgpack object, borrowing strings and binaries from the buffer it was read from.
#[derive(Debug, Clone, PartialEq)]
pub enum Object<'a> {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A float (32-bit ones are widened).
    Float(f64),
    /// A string's bytes (not checked for UTF-8 here).
    Str(&'a [u8]),
    /// A binary.
    Bin(&'a [u8]),
    /// An array.
    Array(Vec<Object<'a>>),
    /// A map, in wire order (keys may repeat; lookups take the first, as `msgpack-c`'s
    /// `findMapValue` does).
    Map(Vec<(Object<'a>, Object<'a>)>),
    /// An extension (type and bytes); OpenDHT sends none, we skip them.
    Ext(i8, &'a [u8]),
}

impl<'a> Object<'a> {
    /// The value under the string key `key` of a map; `None` for other objects.
    pub fn get(&self, key: &str) -> Option<&Object<'a>> {
        match self {
            Object::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Object::Str(s) if *s == key.as_bytes()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The integer, if this is a non-negative one.
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Object::UInt(v) => Some(*v),
            _ => None,
        }
    }

    /// The bytes of a binary or a string (`msgpack-c` converts either to a blob).
    pub fn as_blob(&self) -> Option<&'a [u8]> {
        match self {
            Object::Bin(b) | Object::Str(b) => Some(b),
            _ => None,
        }
    }

    /// The string, if this is one in UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            Object::Str(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }
}

/// Reads exactly one object from `buf`.
pub fn decode(buf: &[u8]) -> Result<Object<'_>, DecodeError> {
    let mut reader = Reader { buf, pos: 0 };
    let object = reader.object(0)?;
    if reader.pos != buf.len() {
        return Err(DecodeError::Trailing);
    }
    Ok(object)
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(bytes)
    }

    fn uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self
            .take(n)?
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len(&mut self, n: usize) -> Result<usize, DecodeError> {
        usize::try_from(self.uint(n)?).map_err(|_| DecodeError::Truncated)
    }

    fn object(&mut self, depth: usize) -> Result<Object<'a>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let marker = self.take(1)?[0];
        Ok(match marker {
            0x00..=0x7f => Object::UInt(u64::from(marker)),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => Object::Str(self.take(usize::from(marker & 0x1f))?),
            0xc0 => Object::Nil,
            0xc1 => return Err(DecodeError::Reserved),
            0xc2 => Object::Bool(false),
            0xc3 => Object::Bool(true),
            0xc4..=0xc6 => {
                let n = self.len(1 << (marker - 0xc4))?;
                Object::Bin(self.take(n)?)
            }
            0xc7..=0xc9 => {
                let n = self.len(1 << (marker - 0xc7))?;
                let ty = self.take(1)?[0] as i8;
                Object::Ext(ty, self.take(n)?)
            }
            0xca => Object::Float(f64::from(f32::from_bits(self.uint(4)? as u32))),
            0xcb => Object::Float(f64::from_bits(self.uint(8)?)),
            0xcc..=0xcf => Object::UInt(self.uint(1 << (marker - 0xcc))?),
            0xd0..=0xd3 => {
                let bytes = 1usize << (marker - 0xd0);
                let raw = self.uint(bytes)?;
                // Sign-extend from the encoded width.
                let shift = 64 - 8 * bytes as u32;
                Object::Int(((raw << shift) as i64) >> shift)
            }
            0xd4..=0xd8 => {
                let ty = self.take(1)?[0] as i8;
                Object::Ext(ty, self.take(1 << (marker - 0xd4))?)
            }
            0xd9..=0xdb => {
                let n = self.len(1 << (marker - 0xd9))?;
                Object::Str(self.take(n)?)
            }
            0xdc | 0xdd => {
                let n = self.len(if marker == 0xdc { 2 } else { 4 })?;
                self.array(n, depth)?
            }
            0xde | 0xdf => {
                let n = self.len(if marker == 0xde { 2 } else { 4 })?;
                self.map(n, depth)?
            }
            0xe0..=0xff => Object::Int(i64::from(marker as i8)),
        })
    }

    /// Every element takes at least one byte: a declared length beyond what is left is
    /// refused before anything is allocated for it.
    fn check_room(&self, elements: usize) -> Result<(), DecodeError> {
        if elements > self.buf.len() - self.pos {
            return Err(DecodeError::Truncated);
        }
        Ok(())
    }

    fn array(&mut self, n: usize, depth: usize) -> Result<Object<'a>, DecodeError> {
        self.check_room(n)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.object(depth + 1)?);
        }
        Ok(Object::Array(items))
    }

    fn map(&mut self, n: usize, depth: usize) -> Result<Object<'a>, DecodeError> {
        self.check_room(n.saturating_mul(2))?;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self.object(depth + 1)?;
            let value = self.object(depth + 1)?;
            entries.push((key, value));
        }
        Ok(Object::Map(entries))
    }
}

/// Writes msgpack in the shortest forms, as `msgpack-c`'s packer does.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Writer {
    /// A writer with an empty buffer.
    pub fn new() -> Writer {
        Writer::default()
    }

    fn sized(&mut self, fix: Option<u8>, markers: [u8; 3], n: usize) {
        match fix {
            Some(fix) => self.buf.push(fix),
            None if n <= 0xff && markers[0] != 0 => self.buf.extend([markers[0], n as u8]),
            None if n <= 0xffff => {
                self.buf.push(markers[1]);
                self.buf.extend((n as u16).to_be_bytes());
            }
            None => {
                self.buf.push(markers[2]);
                self.buf.extend((n as u32).to_be_bytes());
            }
        }
    }

    /// A map header of `n` entries.
    pub fn map(&mut self, n: usize) -> &mut Self {
        let fix = (n < 16).then_some(0x80 | n as u8);
        self.sized(fix, [0, 0xde, 0xdf], n);
        self
    }

    /// An array header of `n` elements.
    pub fn array(&mut self, n: usize) -> &mut Self {
        let fix = (n < 16).then_some(0x90 | n as u8);
        self.sized(fix, [0, 0xdc, 0xdd], n);
        self
    }

    /// A string.
    pub fn str(&mut self, s: &str) -> &mut Self {
        let fix = (s.len() < 32).then_some(0xa0 | s.len() as u8);
        self.sized(fix, [0xd9, 0xda, 0xdb], s.len());
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// A binary.
    pub fn bin(&mut self, b: &[u8]) -> &mut Self {
        self.sized(None, [0xc4, 0xc5, 0xc6], b.len());
        self.buf.extend_from_slice(b);
        self
    }

    /// A non-negative integer.
    pub fn uint(&mut self, v: u64) -> &mut Self {
        if v < 0x80 {
            self.buf.push(v as u8);
        } else if v <= 0xff {
            self.buf.extend([0xcc, v as u8]);
        } else if v <= 0xffff {
            self.buf.push(0xcd);
            self.buf.extend((v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            self.buf.push(0xce);
            self.buf.extend((v as u32).to_be_bytes());
        } else {
            self.buf.push(0xcf);
            self.buf.extend(v.to_be_bytes());
        }
        self
    }

    /// A signed integer (negative ones in the shortest signed form).
    pub fn int(&mut self, v: i64) -> &mut Self {
        if v >= 0 {
            return self.uint(v as u64);
        }
        if v >= -32 {
            self.buf.push(v as i8 as u8);
        } else if v >= i64::from(i8::MIN) {
            self.buf.extend([0xd0, v as i8 as u8]);
        } else if v >= i64::from(i16::MIN) {
            self.buf.push(0xd1);
            self.buf.extend((v as i16).to_be_bytes());
        } else if v >= i64::from(i32::MIN) {
            self.buf.push(0xd2);
            self.buf.extend((v as i32).to_be_bytes());
        } else {
            self.buf.push(0xd3);
            self.buf.extend(v.to_be_bytes());
        }
        self
    }

    /// A boolean.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(if v { 0xc3 } else { 0xc2 });
        self
    }

    /// Bytes that are already one msgpack object (a value packed earlier).
    pub fn raw(&mut self, packed: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(packed);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_form_the_writer_emits() {
        let mut w = Writer::new();
        w.map(3)
            .str("a")
            .array(4)
            .uint(5)
            .uint(300)
            .uint(70_000)
            .uint(u64::MAX)
            .str("b")
            .bin(&[1u8; 300])
            .str("c")
            .int(-40_000);
        let o = decode(&w.buf).expect("decodes");
        assert_eq!(
            o.get("a"),
            Some(&Object::Array(vec![
                Object::UInt(5),
                Object::UInt(300),
                Object::UInt(70_000),
                Object::UInt(u64::MAX)
            ]))
        );
        assert_eq!(o.get("b").and_then(Object::as_blob), Some(&[1u8; 300][..]));
        assert_eq!(o.get("c"), Some(&Object::Int(-40_000)));
    }

    #[test]
    fn shortest_forms_match_msgpack_c() {
        let mut w = Writer::new();
        w.uint(1001).uint(0x80).int(-1).str("ping");
        assert_eq!(
            w.buf,
            [
                0xcd, 0x03, 0xe9, 0xcc, 0x80, 0xff, 0xa4, b'p', b'i', b'n', b'g'
            ]
        );
    }

    #[test]
    fn refuses_hostile_lengths_depth_and_trailing_bytes() {
        // An array claiming 2^32-1 elements in six bytes: refused before allocating.
        assert_eq!(
            decode(&[0xdd, 0xff, 0xff, 0xff, 0xff, 0x00]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(&[0xc6, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(decode(&[0x91; 40]), Err(DecodeError::TooDeep));
        assert_eq!(decode(&[0x01, 0x02]), Err(DecodeError::Trailing));
        assert_eq!(decode(&[0xc1]), Err(DecodeError::Reserved));
        assert_eq!(decode(&[]), Err(DecodeError::Truncated));
    }
}
