//! The four STUN attributes ICE adds (RFC 8445 §16.1), which `stun-types` leaves to its users.
//!
//! | type   | name            | value |
//! |--------|-----------------|-------|
//! | 0x0024 | PRIORITY        | u32: the priority a peer-reflexive candidate would get |
//! | 0x0025 | USE-CANDIDATE   | empty: the controlling agent nominates this pair |
//! | 0x8029 | ICE-CONTROLLED  | u64 tie-breaker |
//! | 0x802A | ICE-CONTROLLING | u64 tie-breaker |

use stun_types::attribute::{
    Attribute, AttributeFromRaw, AttributeStaticType, AttributeType, AttributeWrite,
    AttributeWriteExt, RawAttribute,
};
use stun_types::message::StunParseError;

/// PRIORITY (0x0024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority(pub u32);

/// USE-CANDIDATE (0x0025).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UseCandidate;

/// ICE-CONTROLLED (0x8029) with the sender's tie-breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IceControlled(pub u64);

/// ICE-CONTROLLING (0x802A) with the sender's tie-breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IceControlling(pub u64);

impl AttributeStaticType for Priority {
    const TYPE: AttributeType = AttributeType::new(0x0024);
}
impl AttributeStaticType for UseCandidate {
    const TYPE: AttributeType = AttributeType::new(0x0025);
}
impl AttributeStaticType for IceControlled {
    const TYPE: AttributeType = AttributeType::new(0x8029);
}
impl AttributeStaticType for IceControlling {
    const TYPE: AttributeType = AttributeType::new(0x802A);
}

/// Implements the `stun-types` traits for an attribute whose value is a big-endian integer
/// of `$len` bytes (or nothing, for a flag).
macro_rules! fixed_attribute {
    ($ty:ident, $len:expr, |$s:ident| $to:expr, |$v:ident| $from:expr) => {
        impl Attribute for $ty {
            fn get_type(&self) -> AttributeType {
                Self::TYPE
            }
            fn length(&self) -> u16 {
                $len
            }
        }
        impl AttributeWrite for $ty {
            fn to_raw(&self) -> RawAttribute<'_> {
                let $s = self;
                let value: Vec<u8> = $to;
                RawAttribute::new_owned(Self::TYPE, value.into_boxed_slice())
            }
            fn write_into_unchecked(&self, dest: &mut [u8]) {
                let $s = self;
                let value: Vec<u8> = $to;
                let n = self.write_header_unchecked(dest);
                dest[n..n + value.len()].copy_from_slice(&value);
            }
        }
        impl AttributeFromRaw<'_> for $ty {
            fn from_raw_ref(raw: &RawAttribute<'_>) -> Result<Self, StunParseError> {
                raw.check_type_and_len(Self::TYPE, $len..=$len)?;
                let $v: &[u8] = &raw.value;
                $from
            }
        }
    };
}

fixed_attribute!(Priority, 4, |s| s.0.to_be_bytes().to_vec(), |v| Ok(
    Priority(u32::from_be_bytes(
        v.try_into()
            .map_err(|_| StunParseError::InvalidAttributeData)?
    ))
));
fixed_attribute!(UseCandidate, 0, |_s| Vec::new(), |_v| Ok(UseCandidate));
fixed_attribute!(IceControlled, 8, |s| s.0.to_be_bytes().to_vec(), |v| Ok(
    IceControlled(u64::from_be_bytes(
        v.try_into()
            .map_err(|_| StunParseError::InvalidAttributeData)?
    ))
));
fixed_attribute!(IceControlling, 8, |s| s.0.to_be_bytes().to_vec(), |v| Ok(
    IceControlling(u64::from_be_bytes(
        v.try_into()
            .map_err(|_| StunParseError::InvalidAttributeData)?
    ))
));
