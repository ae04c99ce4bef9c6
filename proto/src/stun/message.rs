//! Building and reading the STUN messages ICE needs, on top of `stun-types`.
//!
//! Building: [`Builder`] starts a request, success, error or indication with a transaction
//! id the caller drew from its [`StunRng`](super::StunRng), takes the attributes ICE
//! uses, and ends with short-term MESSAGE-INTEGRITY (optional) and FINGERPRINT (always).
//!
//! Reading: [`StunMessage::decode`] checks the header, the length and the FINGERPRINT when
//! there is one, and copies out every attribute ICE and the traces care about. Integrity
//! needs a key, so it is a separate step: [`StunMessage::verify`] (or [`verify_integrity`])
//! with the password the message should have been signed with. Nothing here panics on any
//! input.

use core::net::SocketAddr;
use std::fmt;

use bytes::Bytes;
use stun_types::attribute::{
    AttributeStaticType, ErrorCode, Fingerprint, MessageIntegrity, MessageIntegritySha256,
    Username, XorMappedAddress,
};
use stun_types::message::{
    IntegrityAlgorithm, Message, MessageClass, MessageHeader, MessageType, MessageWrite,
    MessageWriteExt, MessageWriteVec, ShortTermCredentials, StunParseError, TransactionId,
};

use super::ice_attributes::{IceControlled, IceControlling, Priority, UseCandidate};

/// The Binding method (RFC 8489), the only one ICE uses.
pub const BINDING: u16 = 0x0001;

/// The four classes of STUN message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Expects a response.
    Request,
    /// Expects nothing (keepalives).
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    fn to_stun(self) -> MessageClass {
        match self {
            Class::Request => MessageClass::Request,
            Class::Indication => MessageClass::Indication,
            Class::Success => MessageClass::Success,
            Class::Error => MessageClass::Error,
        }
    }

    fn from_stun(class: MessageClass) -> Class {
        match class {
            MessageClass::Request => Class::Request,
            MessageClass::Indication => Class::Indication,
            MessageClass::Success => Class::Success,
            MessageClass::Error => Class::Error,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Class::Request => "request",
            Class::Indication => "indication",
            Class::Success => "success",
            Class::Error => "error",
        })
    }
}

/// The role attribute of an ICE check: which role the sender believes it has, and its
/// tie-breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleAttribute {
    /// ICE-CONTROLLING.
    Controlling(u64),
    /// ICE-CONTROLLED.
    Controlled(u64),
}

/// A message that is not STUN, or not well-formed STUN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// The bytes do not start like a STUN message (first bits, magic cookie).
    #[error("not a STUN message")]
    NotStun,
    /// The header's length does not match the bytes, or is not a multiple of 4.
    #[error("length {announced} in the header does not fit {actual} bytes")]
    BadLength {
        /// Attribute bytes the header announces.
        announced: usize,
        /// Bytes there are after the header.
        actual: usize,
    },
    /// FINGERPRINT does not match the message.
    #[error("FINGERPRINT mismatch")]
    BadFingerprint,
    /// An attribute ICE reads is malformed.
    #[error("malformed {0} attribute")]
    BadAttribute(&'static str),
    /// Anything else `stun-types` refused.
    #[error("malformed STUN: {0}")]
    Malformed(String),
}

/// Why a message's MESSAGE-INTEGRITY was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityError {
    /// The message carries no MESSAGE-INTEGRITY.
    #[error("no MESSAGE-INTEGRITY")]
    Missing,
    /// It does not match the key.
    #[error("MESSAGE-INTEGRITY does not match")]
    Mismatch,
}

/// Whether `bytes`, one whole STUN message, is signed with the short-term `password`.
pub fn verify_integrity(bytes: &[u8], password: &str) -> Result<(), IntegrityError> {
    let message = Message::from_bytes(bytes).map_err(|_| IntegrityError::Mismatch)?;
    if !message.has_attribute(MessageIntegrity::TYPE)
        && !message.has_attribute(MessageIntegritySha256::TYPE)
    {
        return Err(IntegrityError::Missing);
    }
    let credentials = ShortTermCredentials::new(password.to_owned()).into();
    message
        .validate_integrity(&credentials)
        .map(|_| ())
        .map_err(|_| IntegrityError::Mismatch)
}

/// Whether `bytes` look like the start of a STUN message (RFC 8489 §5: the first two bits
/// are zero and the magic cookie follows), which is how a framed TCP path tells STUN from
/// application bytes. TLS records start with 0x14–0x17, so they never look like STUN.
pub fn looks_like_stun(bytes: &[u8]) -> bool {
    may_be_stun(bytes, bytes.len())
}

/// Whether a frame of `len` bytes that starts with `start` (its first 8 bytes at least)
/// could be STUN, as [`looks_like_stun`] would say of the whole frame.
pub fn may_be_stun(start: &[u8], len: usize) -> bool {
    len >= MessageHeader::LENGTH
        && start.len() >= 8
        && start[0] & 0xc0 == 0
        && start[4..8] == stun_types::message::MAGIC_COOKIE.to_be_bytes()
}

/// One decoded STUN message: every attribute ICE and the traces read, copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StunMessage {
    /// Request, indication, success or error.
    pub class: Class,
    /// The method (Binding is 0x0001).
    pub method: u16,
    /// The 96-bit transaction id.
    pub transaction: u128,
    /// USERNAME, for ICE `remoteUfrag:localUfrag` as the sender wrote it.
    pub username: Option<String>,
    /// PRIORITY.
    pub priority: Option<u32>,
    /// USE-CANDIDATE is present.
    pub use_candidate: bool,
    /// ICE-CONTROLLING or ICE-CONTROLLED.
    pub role: Option<RoleAttribute>,
    /// ERROR-CODE: code and reason phrase.
    pub error: Option<(u16, String)>,
    /// XOR-MAPPED-ADDRESS.
    pub xor_mapped: Option<SocketAddr>,
    /// MESSAGE-INTEGRITY (SHA-1 or SHA-256) is present (not yet verified).
    pub has_integrity: bool,
    /// FINGERPRINT is present (and matched: a mismatch fails decoding).
    pub has_fingerprint: bool,
}

impl StunMessage {
    /// Decodes one whole STUN message (one RFC 4571 frame on TCP). Trailing bytes are an
    /// error: a frame holds exactly one message.
    pub fn decode(bytes: &[u8]) -> Result<StunMessage, StunError> {
        if !looks_like_stun(bytes) {
            return Err(StunError::NotStun);
        }
        let announced = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        let actual = bytes.len() - MessageHeader::LENGTH;
        if announced != actual || announced % 4 != 0 {
            return Err(StunError::BadLength { announced, actual });
        }
        let message = Message::from_bytes(bytes).map_err(|e| match e {
            StunParseError::FingerprintMismatch => StunError::BadFingerprint,
            StunParseError::NotStun => StunError::NotStun,
            other => StunError::Malformed(other.to_string()),
        })?;
        let transaction = message.transaction_id();
        let username = match message.attribute::<Username>() {
            Ok(u) => Some(u.username().to_owned()),
            Err(StunParseError::MissingAttribute(_)) => None,
            Err(_) => return Err(StunError::BadAttribute("USERNAME")),
        };
        let priority = optional::<Priority>(&message, "PRIORITY")?.map(|p| p.0);
        let use_candidate = optional::<UseCandidate>(&message, "USE-CANDIDATE")?.is_some();
        let controlling = optional::<IceControlling>(&message, "ICE-CONTROLLING")?;
        let controlled = optional::<IceControlled>(&message, "ICE-CONTROLLED")?;
        let role = match (controlling, controlled) {
            (Some(c), None) => Some(RoleAttribute::Controlling(c.0)),
            (None, Some(c)) => Some(RoleAttribute::Controlled(c.0)),
            (None, None) => None,
            // RFC 8445 has exactly one; a check with both cannot be answered sensibly.
            (Some(_), Some(_)) => return Err(StunError::BadAttribute("ICE-CONTROLLING")),
        };
        let error = match message.attribute::<ErrorCode>() {
            Ok(e) => Some((e.code(), e.reason().to_owned())),
            Err(StunParseError::MissingAttribute(_)) => None,
            Err(_) => return Err(StunError::BadAttribute("ERROR-CODE")),
        };
        let xor_mapped = match message.attribute::<XorMappedAddress>() {
            Ok(a) => Some(a.addr(transaction)),
            Err(StunParseError::MissingAttribute(_)) => None,
            Err(_) => return Err(StunError::BadAttribute("XOR-MAPPED-ADDRESS")),
        };
        Ok(StunMessage {
            class: Class::from_stun(message.class()),
            method: message.method().value(),
            transaction: u128::from(transaction),
            username,
            priority,
            use_candidate,
            role,
            error,
            xor_mapped,
            has_integrity: message.has_attribute(MessageIntegrity::TYPE)
                || message.has_attribute(MessageIntegritySha256::TYPE),
            has_fingerprint: message.has_attribute(Fingerprint::TYPE),
        })
    }
}

/// An attribute that may be absent but, when present, must parse.
fn optional<'a, A>(message: &'a Message<'a>, name: &'static str) -> Result<Option<A>, StunError>
where
    A: stun_types::attribute::AttributeFromRaw<'a> + AttributeStaticType,
{
    match message.attribute::<A>() {
        Ok(a) => Ok(Some(a)),
        Err(StunParseError::MissingAttribute(_)) => Ok(None),
        Err(_) => Err(StunError::BadAttribute(name)),
    }
}

/// A caller mistake while building a message (a USERNAME or reason longer than STUN allows).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// `stun-types` refused an attribute.
    #[error("cannot build STUN message: {0}")]
    Refused(String),
}

/// Builds one STUN message, attribute by attribute, ending with integrity and fingerprint.
#[derive(Debug)]
pub struct Builder {
    write: MessageWriteVec,
    error: Option<BuildError>,
}

impl Builder {
    /// Starts a message of `class` and `method` with the given transaction id (a response
    /// repeats its request's).
    pub fn new(class: Class, method: u16, transaction: u128) -> Builder {
        let mtype = MessageType::from_class_method(
            class.to_stun(),
            stun_types::message::Method::new(method),
        );
        Builder {
            write: Message::builder(
                mtype,
                TransactionId::from(transaction),
                MessageWriteVec::new(),
            ),
            error: None,
        }
    }

    /// Any other attribute `stun-types` (or a crate built on it, like `turn-types`) can
    /// write; this is how a TURN client adds REALM, NONCE or LIFETIME. MESSAGE-INTEGRITY and
    /// FINGERPRINT are refused here: [`finish`](Self::finish) adds them.
    pub fn attribute(self, attr: &dyn stun_types::attribute::AttributeWrite) -> Builder {
        use stun_types::attribute::AttributeStaticType as _;
        let t = attr.get_type();
        if t == MessageIntegrity::TYPE
            || t == MessageIntegritySha256::TYPE
            || t == Fingerprint::TYPE
        {
            return Builder {
                error: Some(BuildError::Refused(format!("{t} is added by finish()"))),
                ..self
            };
        }
        self.add(attr)
    }

    fn add(mut self, attr: &dyn stun_types::attribute::AttributeWrite) -> Builder {
        if self.error.is_none() {
            if let Err(e) = self.write.add_attribute(attr) {
                self.error = Some(BuildError::Refused(e.to_string()));
            }
        }
        self
    }

    /// USERNAME.
    pub fn username(self, username: &str) -> Builder {
        match Username::new(username) {
            Ok(u) => self.add(&u),
            Err(e) => Builder {
                error: Some(BuildError::Refused(e.to_string())),
                ..self
            },
        }
    }

    /// PRIORITY.
    pub fn priority(self, priority: u32) -> Builder {
        self.add(&Priority(priority))
    }

    /// USE-CANDIDATE.
    pub fn use_candidate(self) -> Builder {
        self.add(&UseCandidate)
    }

    /// ICE-CONTROLLING or ICE-CONTROLLED.
    pub fn role(self, role: RoleAttribute) -> Builder {
        match role {
            RoleAttribute::Controlling(t) => self.add(&IceControlling(t)),
            RoleAttribute::Controlled(t) => self.add(&IceControlled(t)),
        }
    }

    /// XOR-MAPPED-ADDRESS.
    pub fn xor_mapped(self, addr: SocketAddr) -> Builder {
        let transaction = self.write.transaction_id();
        self.add(&XorMappedAddress::new(addr, transaction))
    }

    /// ERROR-CODE.
    pub fn error_code(self, code: u16, reason: &str) -> Builder {
        match ErrorCode::new(code, reason) {
            Ok(e) => self.add(&e),
            Err(e) => Builder {
                error: Some(BuildError::Refused(e.to_string())),
                ..self
            },
        }
    }

    /// Ends the message with short-term MESSAGE-INTEGRITY (HMAC-SHA1 keyed by `password`,
    /// as RFC 8445 asks) when a password is given, then FINGERPRINT.
    pub fn finish(mut self, password: Option<&str>) -> Result<Bytes, BuildError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if let Some(password) = password {
            let credentials = ShortTermCredentials::new(password.to_owned()).into();
            self.write
                .add_message_integrity(&credentials, IntegrityAlgorithm::Sha1)
                .map_err(|e| BuildError::Refused(e.to_string()))?;
        }
        self.write
            .add_fingerprint()
            .map_err(|e| BuildError::Refused(e.to_string()))?;
        Ok(Bytes::from(self.write.finish()))
    }
}
