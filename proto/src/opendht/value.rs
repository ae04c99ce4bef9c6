//! OpenDHT's `Value`: the object stored under a key, as `value.cpp` packs it.
//!
//! On the wire a value is a map `{"id": u64, "dat": …}`. `dat` is a binary for an
//! encrypted value, else `{"body": {"type": u16, "data": bin, …}, "sig": bin}` with
//! `owner`, `seq`, `to` and `utype` in the body of signed or typed values. Ferry's own
//! values set `id`, `type` (0, `USER_DATA`, whose 10-minute expiry every node honours) and
//! `data` only: Ferry's signalling seals and signs inside `data` (PROTOCOL.md §9), so it
//! needs neither OpenDHT's signatures nor its encryption.
//!
//! Values others store with us are kept as their packed bytes, re-packed from the parsed
//! tree in `msgpack-c`'s shortest forms as OpenDHT itself re-packs what it stores; we
//! neither check their signatures nor read their encryption (OpenDHT's storage does not
//! either: it is the reader's business).

use super::constants::MAX_VALUE_SIZE;
use super::msgpack::{Object, Writer};

/// A value: what Ferry reads of one, and its packed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    /// `id`: unique under its key; a put of the same id replaces (or refreshes) it.
    pub id: u64,
    /// `type` (`ValueType::Id`): decides the expiry; 0 (`USER_DATA`) is 10 minutes.
    pub value_type: u16,
    /// `data` of a plain value, or the cypher of an encrypted one.
    pub data: Vec<u8>,
    /// Whether `dat` was a binary: `data` is the cypher of an encrypted value.
    pub encrypted: bool,
    /// Whether the body names an owner (a signed value; not checked here).
    pub signed: bool,
    /// The value as msgpack, to send on or store.
    pub packed: Vec<u8>,
}

/// Why an object is not a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a map with an `id` and a `dat`, or `dat` not of a value's shape.
    #[error("not an OpenDHT value")]
    Shape,
    /// Packed, the value is over `MAX_VALUE_SIZE` (64 KiB).
    #[error("value over 64 KiB")]
    TooLarge,
}

impl Value {
    /// A plain, unsigned value of type `value_type` (Ferry's: 0) holding `data`.
    pub fn new(id: u64, value_type: u16, data: Vec<u8>) -> Value {
        let mut w = Writer::new();
        w.map(2).str("id").uint(id).str("dat");
        w.map(1).str("body");
        w.map(2).str("type").uint(u64::from(value_type));
        w.str("data").bin(&data);
        Value {
            id,
            value_type,
            data,
            encrypted: false,
            signed: false,
            packed: w.buf,
        }
    }

    /// Reads a value from its msgpack object (`Value::msgpack_unpack`).
    pub fn from_object(o: &Object<'_>) -> Result<Value, ValueError> {
        let id = o
            .get("id")
            .and_then(Object::as_u64)
            .ok_or(ValueError::Shape)?;
        let dat = o.get("dat").ok_or(ValueError::Shape)?;
        let (value_type, data, encrypted, signed) = match dat {
            Object::Bin(cypher) => (0, cypher.to_vec(), true, false),
            Object::Map(_) => {
                let body = dat.get("body").ok_or(ValueError::Shape)?;
                let data = body.get("data").and_then(Object::as_blob);
                let data = data.ok_or(ValueError::Shape)?;
                let value_type = match body.get("type") {
                    None => 0,
                    Some(t) => t
                        .as_u64()
                        .and_then(|t| u16::try_from(t).ok())
                        .ok_or(ValueError::Shape)?,
                };
                (
                    value_type,
                    data.to_vec(),
                    false,
                    body.get("owner").is_some(),
                )
            }
            _ => return Err(ValueError::Shape),
        };
        let mut w = Writer::new();
        write_object(&mut w, o);
        if w.buf.len() > MAX_VALUE_SIZE {
            return Err(ValueError::TooLarge);
        }
        Ok(Value {
            id,
            value_type,
            data,
            encrypted,
            signed,
            packed: w.buf,
        })
    }

    /// Reads a value from its packed bytes.
    pub fn from_packed(packed: &[u8]) -> Result<Value, ValueError> {
        let o = super::msgpack::decode(packed).map_err(|_| ValueError::Shape)?;
        Value::from_object(&o)
    }
}

/// Packs `o` again, in the shortest forms.
pub(crate) fn write_object(w: &mut Writer, o: &Object<'_>) {
    match o {
        Object::Nil => w.buf.push(0xc0),
        Object::Bool(b) => {
            w.bool(*b);
        }
        Object::UInt(v) => {
            w.uint(*v);
        }
        Object::Int(v) => {
            w.int(*v);
        }
        Object::Float(f) => {
            w.buf.push(0xcb);
            w.buf.extend(f.to_bits().to_be_bytes());
        }
        Object::Str(s) => {
            let fix = s.len() < 32;
            if fix {
                w.buf.push(0xa0 | s.len() as u8);
            } else if s.len() <= 0xff {
                w.buf.extend([0xd9, s.len() as u8]);
            } else if s.len() <= 0xffff {
                w.buf.push(0xda);
                w.buf.extend((s.len() as u16).to_be_bytes());
            } else {
                w.buf.push(0xdb);
                w.buf.extend((s.len() as u32).to_be_bytes());
            }
            w.buf.extend_from_slice(s);
        }
        Object::Bin(b) => {
            w.bin(b);
        }
        Object::Array(items) => {
            w.array(items.len());
            for item in items {
                write_object(w, item);
            }
        }
        Object::Map(entries) => {
            w.map(entries.len());
            for (k, v) in entries {
                write_object(w, k);
                write_object(w, v);
            }
        }
        // OpenDHT's values hold no extensions; one is dropped as nil.
        Object::Ext(..) => w.buf.push(0xc0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ferry_value_reads_back_with_the_same_bytes() {
        let v = Value::new(7, 0, b"hello ferry".to_vec());
        let back = Value::from_packed(&v.packed).expect("a value");
        assert_eq!(back, v);
    }

    #[test]
    fn an_encrypted_value_keeps_its_cypher() {
        // What `dhtnode` sent back for `{"id": 7, "dat": bin}` (an encrypted value's shape).
        let packed = hex::decode("82a2696407a3646174c40b68656c6c6f206665727279").expect("hex");
        let v = Value::from_packed(&packed).expect("a value");
        assert!(v.encrypted);
        assert_eq!((v.id, v.data.as_slice()), (7, &b"hello ferry"[..]));
        assert_eq!(v.packed, packed);
    }

    #[test]
    fn refuses_values_without_id_or_data_and_oversized_ones() {
        let mut w = Writer::new();
        w.map(1).str("dat").bin(b"x");
        assert_eq!(Value::from_packed(&w.buf), Err(ValueError::Shape));
        let mut w = Writer::new();
        w.map(2)
            .str("id")
            .uint(1)
            .str("dat")
            .map(1)
            .str("body")
            .map(1)
            .str("type")
            .uint(1);
        assert_eq!(Value::from_packed(&w.buf), Err(ValueError::Shape));
        let big = Value::new(1, 0, vec![0; MAX_VALUE_SIZE]);
        assert_eq!(Value::from_packed(&big.packed), Err(ValueError::TooLarge));
    }
}
