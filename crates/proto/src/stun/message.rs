//! Decoding of STUN messages (RFC 8489 §5, §6, §14), borrowing the packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::constants::{
    attr, split_message_type, Class, Method, TransactionId, ATTRIBUTE_HEADER_LEN, FAMILY_IPV4,
    FAMILY_IPV6, FINGERPRINT_LEN, HEADER_LEN, MAGIC_COOKIE, MAX_TEXT_LEN, MAX_UNKNOWN_ATTRIBUTES,
    MAX_USERNAME_LEN, MESSAGE_INTEGRITY_LEN, MESSAGE_INTEGRITY_SHA256_MAX_LEN,
    MESSAGE_INTEGRITY_SHA256_MIN_LEN, USERHASH_LEN,
};
use super::integrity::{fingerprint, verify_hmac_sha1, verify_hmac_sha256, IntegrityError};

/// Why a byte string is not a valid STUN message (RFC 8489 §5, §6.3, §14).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the 20-byte header (RFC 8489 §5).
    #[error("{0} bytes is shorter than the 20-byte STUN header")]
    TooShort(usize),
    /// The two most significant bits of the message are not zero (RFC 8489 §5).
    #[error("the first two bits of the message are not zero")]
    NotStun,
    /// The magic cookie field is not 0x2112A442 (RFC 8489 §5; RFC 3489 messages are refused).
    #[error("magic cookie is {0:#010x}, not 0x2112a442")]
    BadMagicCookie(u32),
    /// The message length is not a multiple of 4 (RFC 8489 §5).
    #[error("message length {0} is not a multiple of 4")]
    UnalignedLength(u16),
    /// The message length field does not match the bytes after the header: one datagram
    /// carries exactly one message (RFC 8489 §5, §6.3).
    #[error("message length field says {declared} bytes but {actual} follow the header")]
    LengthMismatch {
        /// The length field of the header.
        declared: u16,
        /// The number of bytes after the header.
        actual: usize,
    },
    /// An attribute (with its padding to 4 bytes) runs past the end of the message
    /// (RFC 8489 §14).
    #[error("attribute {kind:#06x} of length {len} at offset {offset} runs past the end")]
    AttributeOverrun {
        /// The attribute type.
        kind: u16,
        /// Its length field.
        len: u16,
        /// Offset of its header in the message.
        offset: usize,
    },
    /// A known attribute has a length its format does not allow (RFC 8489 §14, RFC 8445
    /// §16.1, RFC 8656 §18).
    #[error("attribute {kind:#06x} has invalid length {len}")]
    BadAttributeLength {
        /// The attribute type.
        kind: u16,
        /// Its length field.
        len: usize,
    },
    /// A text attribute (USERNAME, REALM, NONCE, SOFTWARE, ERROR-CODE reason,
    /// ALTERNATE-DOMAIN) is not UTF-8 (RFC 8489 §14.3, §14.8-§14.10, §14.14, §14.16).
    #[error("attribute {kind:#06x} is not valid UTF-8")]
    InvalidUtf8 {
        /// The attribute type.
        kind: u16,
    },
    /// A text attribute is longer than RFC 8489 allows a receiver to accept.
    #[error("attribute {kind:#06x} is {len} bytes long, more than the {max} allowed")]
    AttributeTooLong {
        /// The attribute type.
        kind: u16,
        /// Its length.
        len: usize,
        /// The largest length accepted.
        max: usize,
    },
    /// An address attribute has a family other than 0x01 (IPv4) or 0x02 (IPv6), or a length
    /// that does not fit its family (RFC 8489 §14.1, §14.2).
    #[error("address attribute {kind:#06x} has family {family:#04x} with length {len}")]
    BadAddress {
        /// The attribute type.
        kind: u16,
        /// The family byte.
        family: u8,
        /// The attribute length.
        len: usize,
    },
    /// ERROR-CODE with a class outside 3..=6 or a number of 100 or more (RFC 8489 §14.8).
    #[error("ERROR-CODE class {class} number {number} is out of range")]
    BadErrorCode {
        /// The class (hundreds digit).
        class: u8,
        /// The number (last two digits).
        number: u8,
    },
    /// An attribute follows FINGERPRINT, which must be last (RFC 8489 §14.7).
    #[error("FINGERPRINT is not the last attribute")]
    FingerprintNotLast,
    /// FINGERPRINT does not match the CRC-32 of the message (RFC 8489 §14.7).
    #[error("FINGERPRINT is {found:#010x}, the message gives {expected:#010x}")]
    FingerprintMismatch {
        /// The value computed over the message.
        expected: u32,
        /// The value carried in the attribute.
        found: u32,
    },
}

/// One attribute as it appears on the wire: its type and its value without padding
/// (RFC 8489 §14).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// The attribute type.
    pub kind: u16,
    /// The value, without the padding to 4 bytes.
    pub value: &'a [u8],
}

/// A decoded ERROR-CODE attribute (RFC 8489 §14.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// The code, 300..=699 (class × 100 + number).
    pub code: u16,
    /// The reason phrase.
    pub reason: &'a str,
}

/// Cheap check that a datagram is a STUN message, for demultiplexing STUN from other traffic
/// on one socket (RFC 7983 §7, RFC 8489 §5): at least 20 bytes, the first two bits zero, the
/// magic cookie, and a length field that is a multiple of 4 and equal to the rest of the
/// datagram. It does not look at the attributes.
pub fn looks_like_stun(buf: &[u8]) -> bool {
    let (Some(&first), Some(len), Some(cookie)) = (buf.first(), be16(buf, 2), be32(buf, 4)) else {
        return false;
    };
    buf.len() >= HEADER_LEN
        && first & 0xC0 == 0
        && cookie == MAGIC_COOKIE
        && len % 4 == 0
        && usize::from(len) + HEADER_LEN == buf.len()
}

/// Where an attribute sits in the message: the offset of its 4-byte header and its
/// (unpadded) value length.
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: usize,
    len: usize,
}

impl Slot {
    fn value<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        let begin = self.start.checked_add(ATTRIBUTE_HEADER_LEN)?;
        buf.get(begin..begin.checked_add(self.len)?)
    }
}

/// Where the walk over the attributes is with respect to the integrity attributes: after
/// MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and FINGERPRINT count, after
/// MESSAGE-INTEGRITY-SHA256 only FINGERPRINT (RFC 8489 §14.5, §14.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    AfterIntegrity,
    AfterIntegritySha256,
}

/// A decoded message that borrows the packet: decoding allocates nothing (RFC 8489 §5, §6).
///
/// Decoding checks the header, the framing of every attribute, the format of every known
/// attribute that counts (so the typed getters never fail on a decoded message) and
/// FINGERPRINT. Attributes after MESSAGE-INTEGRITY other than MESSAGE-INTEGRITY-SHA256 and
/// FINGERPRINT are ignored (RFC 8489 §14.5, §14.6): [`Message::attributes`] still lists them,
/// but [`Message::attribute`] and the typed getters do not see them.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    buf: &'a [u8],
    class: Class,
    method: Method,
    id: TransactionId,
    /// End of the ordinary attributes that count (the offset of the first integrity
    /// attribute or of FINGERPRINT, else the end of the message).
    counted_end: usize,
    integrity: Option<Slot>,
    integrity_sha256: Option<Slot>,
    fingerprint: Option<Slot>,
    unknown: [u16; MAX_UNKNOWN_ATTRIBUTES],
    unknown_len: usize,
    /// Offset of the first counted occurrence of each of [`INDEXED`] (0: absent; a real
    /// offset is at least [`HEADER_LEN`]). Found by the decoding walk so that the getters ICE
    /// calls on every check need no second pass over the attributes.
    indexed: [u32; INDEXED.len()],
    /// The first counted USERNAME, SOFTWARE, REALM and NONCE (in the order of [`TEXTS`]),
    /// UTF-8 checked once by the decoding walk.
    texts: [Option<&'a str>; TEXTS.len()],
}

/// Attribute types whose first counted occurrence decoding remembers (performance only).
const INDEXED: [u16; 8] = [
    attr::USERNAME,
    attr::PRIORITY,
    attr::USE_CANDIDATE,
    attr::ICE_CONTROLLING,
    attr::ICE_CONTROLLED,
    attr::XOR_MAPPED_ADDRESS,
    attr::ERROR_CODE,
    attr::SOFTWARE,
];

/// Text attribute types whose value decoding keeps as a checked `&str` (performance only).
const TEXTS: [u16; 4] = [attr::USERNAME, attr::SOFTWARE, attr::REALM, attr::NONCE];

/// Position of `kind` in `list`, if it is there.
fn index_of(list: &[u16], kind: u16) -> Option<usize> {
    list.iter().position(|&k| k == kind)
}

impl<'a> Message<'a> {
    /// Decodes one message that fills `buf` exactly (RFC 8489 §5, §6.3, §14).
    pub fn decode(buf: &'a [u8]) -> Result<Message<'a>, DecodeError> {
        let (Some(ty), Some(len), Some(cookie), Some(id)) = (
            be16(buf, 0),
            be16(buf, 2),
            be32(buf, 4),
            buf.get(8..HEADER_LEN),
        ) else {
            return Err(DecodeError::TooShort(buf.len()));
        };
        if ty & 0xC000 != 0 {
            return Err(DecodeError::NotStun);
        }
        if cookie != MAGIC_COOKIE {
            return Err(DecodeError::BadMagicCookie(cookie));
        }
        if len % 4 != 0 {
            return Err(DecodeError::UnalignedLength(len));
        }
        let actual = buf.len() - HEADER_LEN;
        if usize::from(len) != actual {
            return Err(DecodeError::LengthMismatch {
                declared: len,
                actual,
            });
        }
        let mut tid = [0u8; 12];
        tid.copy_from_slice(id);
        let (class, method) = split_message_type(ty);
        let mut message = Message {
            buf,
            class,
            method,
            id: TransactionId(tid),
            counted_end: buf.len(),
            integrity: None,
            integrity_sha256: None,
            fingerprint: None,
            unknown: [0; MAX_UNKNOWN_ATTRIBUTES],
            unknown_len: 0,
            indexed: [0; INDEXED.len()],
            texts: [None; TEXTS.len()],
        };
        message.walk()?;
        Ok(message)
    }

    /// Walks the attributes once: framing, formats, integrity positions, FINGERPRINT.
    fn walk(&mut self) -> Result<(), DecodeError> {
        let buf = self.buf;
        let mut phase = Phase::Open;
        let mut offset = HEADER_LEN;
        while offset < buf.len() {
            let (Some(kind), Some(len)) = (be16(buf, offset), be16(buf, offset + 2)) else {
                // Unreachable with a length that is a multiple of 4, kept as a plain error.
                return Err(DecodeError::AttributeOverrun {
                    kind: 0,
                    len: 0,
                    offset,
                });
            };
            let value_start = offset + ATTRIBUTE_HEADER_LEN;
            let value_end = value_start + usize::from(len);
            let padded_end = value_start + padded(usize::from(len));
            let Some(value) = buf
                .get(value_start..value_end)
                .filter(|_| padded_end <= buf.len())
            else {
                return Err(DecodeError::AttributeOverrun { kind, len, offset });
            };
            let slot = Slot {
                start: offset,
                len: value.len(),
            };
            match kind {
                attr::FINGERPRINT => {
                    if padded_end != buf.len() {
                        return Err(DecodeError::FingerprintNotLast);
                    }
                    let found = be32(value, 0)
                        .filter(|_| value.len() == FINGERPRINT_LEN)
                        .ok_or(DecodeError::BadAttributeLength {
                            kind,
                            len: value.len(),
                        })?;
                    let expected = fingerprint(buf.get(..offset).unwrap_or_default());
                    if found != expected {
                        return Err(DecodeError::FingerprintMismatch { expected, found });
                    }
                    if phase == Phase::Open {
                        self.counted_end = offset;
                    }
                    self.fingerprint = Some(slot);
                }
                attr::MESSAGE_INTEGRITY if phase == Phase::Open => {
                    if value.len() != MESSAGE_INTEGRITY_LEN {
                        return Err(DecodeError::BadAttributeLength {
                            kind,
                            len: value.len(),
                        });
                    }
                    self.counted_end = offset;
                    self.integrity = Some(slot);
                    phase = Phase::AfterIntegrity;
                }
                attr::MESSAGE_INTEGRITY_SHA256 if phase != Phase::AfterIntegritySha256 => {
                    if !(MESSAGE_INTEGRITY_SHA256_MIN_LEN..=MESSAGE_INTEGRITY_SHA256_MAX_LEN)
                        .contains(&value.len())
                        || value.len() % 4 != 0
                    {
                        return Err(DecodeError::BadAttributeLength {
                            kind,
                            len: value.len(),
                        });
                    }
                    if phase == Phase::Open {
                        self.counted_end = offset;
                    }
                    self.integrity_sha256 = Some(slot);
                    phase = Phase::AfterIntegritySha256;
                }
                _ if phase == Phase::Open => {
                    if let Some(i) = index_of(&TEXTS, kind) {
                        let text = checked_text(kind, value, max_text_len(kind))?;
                        if let Some(entry) = self.texts.get_mut(i) {
                            entry.get_or_insert(text);
                        }
                    } else {
                        validate(kind, value)?;
                    }
                    if let Some(i) = index_of(&INDEXED, kind) {
                        if let (Some(entry), Ok(at)) =
                            (self.indexed.get_mut(i), u32::try_from(offset))
                        {
                            if *entry == 0 {
                                *entry = at;
                            }
                        }
                    }
                    if attr::is_comprehension_required(kind)
                        && !attr::is_known(kind)
                        && self.unknown_len < MAX_UNKNOWN_ATTRIBUTES
                        && !self.unknown_comprehension_required().contains(&kind)
                    {
                        if let Some(entry) = self.unknown.get_mut(self.unknown_len) {
                            *entry = kind;
                            self.unknown_len += 1;
                        }
                    }
                }
                // Anything else after an integrity attribute is ignored (RFC 8489 §14.5, §14.6).
                _ => {}
            }
            offset = padded_end;
        }
        Ok(())
    }

    /// The class of the message (RFC 8489 §5).
    pub fn class(&self) -> Class {
        self.class
    }

    /// The method of the message (RFC 8489 §5).
    pub fn method(&self) -> Method {
        self.method
    }

    /// The transaction id of the message (RFC 8489 §5).
    pub fn transaction_id(&self) -> TransactionId {
        self.id
    }

    /// Exactly the bytes of the message (the whole buffer given to [`Message::decode`]).
    pub fn raw(&self) -> &'a [u8] {
        self.buf
    }

    /// Every attribute in wire order, including those ignored because they follow
    /// MESSAGE-INTEGRITY (RFC 8489 §14).
    pub fn attributes(&self) -> impl Iterator<Item = RawAttribute<'a>> + 'a {
        Attributes {
            buf: self.buf,
            offset: HEADER_LEN,
            end: self.buf.len(),
        }
    }

    /// The value of the first attribute of type `kind` that counts (RFC 8489 §14: only the
    /// first occurrence is processed; §14.5, §14.6: attributes after the integrity ones are
    /// ignored).
    pub fn attribute(&self, kind: u16) -> Option<&'a [u8]> {
        if let Some(i) = index_of(&INDEXED, kind) {
            let start = usize::try_from(*self.indexed.get(i)?).ok()?;
            if start == 0 {
                return None;
            }
            let len = usize::from(be16(self.buf, start + 2)?);
            return Slot { start, len }.value(self.buf);
        }
        let slot = match kind {
            attr::MESSAGE_INTEGRITY => self.integrity,
            attr::MESSAGE_INTEGRITY_SHA256 => self.integrity_sha256,
            attr::FINGERPRINT => self.fingerprint,
            _ => {
                return Attributes {
                    buf: self.buf,
                    offset: HEADER_LEN,
                    end: self.counted_end,
                }
                .find(|a| a.kind == kind)
                .map(|a| a.value)
            }
        };
        slot.and_then(|s| s.value(self.buf))
    }

    /// Every counted occurrence of attribute `kind`, in order (for attributes that may repeat,
    /// such as XOR-PEER-ADDRESS in a TURN CreatePermission, RFC 8656 §9.1).
    pub fn attributes_of(&self, kind: u16) -> impl Iterator<Item = &'a [u8]> + 'a {
        Attributes {
            buf: self.buf,
            offset: HEADER_LEN,
            end: self.counted_end,
        }
        .filter(move |a| a.kind == kind)
        .map(|a| a.value)
    }

    fn text(&self, kind: u16) -> Option<&'a str> {
        if let Some(i) = index_of(&TEXTS, kind) {
            return self.texts.get(i).copied().flatten();
        }
        self.attribute(kind)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// USERNAME (RFC 8489 §14.3).
    pub fn username(&self) -> Option<&'a str> {
        self.text(attr::USERNAME)
    }

    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.attribute(attr::XOR_MAPPED_ADDRESS)
            .and_then(|v| read_address(v, Some(&self.id)))
    }

    /// MAPPED-ADDRESS (RFC 8489 §14.1).
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.attribute(attr::MAPPED_ADDRESS)
            .and_then(|v| read_address(v, None))
    }

    /// XOR-PEER-ADDRESS, its first occurrence (RFC 8656 §18.3).
    pub fn xor_peer_address(&self) -> Option<SocketAddr> {
        self.attribute(attr::XOR_PEER_ADDRESS)
            .and_then(|v| read_address(v, Some(&self.id)))
    }

    /// Every XOR-PEER-ADDRESS, in order (RFC 8656 §9.1 allows several in CreatePermission).
    pub fn xor_peer_addresses(&self) -> impl Iterator<Item = SocketAddr> + 'a {
        let id = self.id;
        self.attributes_of(attr::XOR_PEER_ADDRESS)
            .filter_map(move |v| read_address(v, Some(&id)))
    }

    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5).
    pub fn xor_relayed_address(&self) -> Option<SocketAddr> {
        self.attribute(attr::XOR_RELAYED_ADDRESS)
            .and_then(|v| read_address(v, Some(&self.id)))
    }

    /// ALTERNATE-SERVER (RFC 8489 §14.15).
    pub fn alternate_server(&self) -> Option<SocketAddr> {
        self.attribute(attr::ALTERNATE_SERVER)
            .and_then(|v| read_address(v, None))
    }

    /// PRIORITY (RFC 8445 §16.1).
    pub fn priority(&self) -> Option<u32> {
        self.attribute(attr::PRIORITY).and_then(|v| be32(v, 0))
    }

    /// Whether USE-CANDIDATE is present (RFC 8445 §16.1).
    pub fn use_candidate(&self) -> bool {
        self.attribute(attr::USE_CANDIDATE).is_some()
    }

    /// The tie-breaker of ICE-CONTROLLING (RFC 8445 §16.1).
    pub fn ice_controlling(&self) -> Option<u64> {
        self.attribute(attr::ICE_CONTROLLING)
            .and_then(|v| be64(v, 0))
    }

    /// The tie-breaker of ICE-CONTROLLED (RFC 8445 §16.1).
    pub fn ice_controlled(&self) -> Option<u64> {
        self.attribute(attr::ICE_CONTROLLED)
            .and_then(|v| be64(v, 0))
    }

    /// ERROR-CODE (RFC 8489 §14.8).
    pub fn error_code(&self) -> Option<ErrorCode<'a>> {
        let value = self.attribute(attr::ERROR_CODE)?;
        let class = u16::from(*value.get(2)? & 0x07);
        let number = u16::from(*value.get(3)?);
        let reason = std::str::from_utf8(value.get(4..)?).ok()?;
        Some(ErrorCode {
            code: class * 100 + number,
            reason,
        })
    }

    /// The attribute types listed in UNKNOWN-ATTRIBUTES (RFC 8489 §14.13).
    pub fn unknown_attributes(&self) -> impl Iterator<Item = u16> + 'a {
        self.attribute(attr::UNKNOWN_ATTRIBUTES)
            .unwrap_or_default()
            .chunks_exact(2)
            .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
    }

    /// SOFTWARE (RFC 8489 §14.14).
    pub fn software(&self) -> Option<&'a str> {
        self.text(attr::SOFTWARE)
    }

    /// REALM (RFC 8489 §14.9).
    pub fn realm(&self) -> Option<&'a str> {
        self.text(attr::REALM)
    }

    /// NONCE (RFC 8489 §14.10).
    pub fn nonce(&self) -> Option<&'a str> {
        self.text(attr::NONCE)
    }

    /// ALTERNATE-DOMAIN (RFC 8489 §14.16).
    pub fn alternate_domain(&self) -> Option<&'a str> {
        self.text(attr::ALTERNATE_DOMAIN)
    }

    /// LIFETIME in seconds (RFC 8656 §18.2).
    pub fn lifetime(&self) -> Option<u32> {
        self.attribute(attr::LIFETIME).and_then(|v| be32(v, 0))
    }

    /// The channel number of CHANNEL-NUMBER (RFC 8656 §18.1).
    pub fn channel_number(&self) -> Option<u16> {
        self.attribute(attr::CHANNEL_NUMBER)
            .and_then(|v| be16(v, 0))
    }

    /// The protocol number of REQUESTED-TRANSPORT (RFC 8656 §18.8; 17 is UDP).
    pub fn requested_transport(&self) -> Option<u8> {
        self.attribute(attr::REQUESTED_TRANSPORT)
            .and_then(|v| v.first().copied())
    }

    /// DATA (RFC 8656 §18.4).
    pub fn data(&self) -> Option<&'a [u8]> {
        self.attribute(attr::DATA)
    }

    /// Whether FINGERPRINT is present; decoding already rejected a wrong one (RFC 8489 §14.7).
    pub fn has_fingerprint(&self) -> bool {
        self.fingerprint.is_some()
    }

    /// Whether MESSAGE-INTEGRITY is present (RFC 8489 §14.5).
    pub fn has_message_integrity(&self) -> bool {
        self.integrity.is_some()
    }

    /// Whether MESSAGE-INTEGRITY-SHA256 is present (RFC 8489 §14.6).
    pub fn has_message_integrity_sha256(&self) -> bool {
        self.integrity_sha256.is_some()
    }

    /// Verifies MESSAGE-INTEGRITY-SHA256 if present, else MESSAGE-INTEGRITY (HMAC-SHA1), in
    /// constant time (RFC 8489 §9.1.3, §9.2.4, §14.5, §14.6). `key` is the short-term
    /// password (§9.1.1) or the long-term key (§9.2.2, see [`super::long_term_key`]).
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), IntegrityError> {
        if let Some(slot) = self.integrity_sha256 {
            return self.verify_slot(slot, key, verify_hmac_sha256);
        }
        if let Some(slot) = self.integrity {
            return self.verify_slot(slot, key, verify_hmac_sha1);
        }
        Err(IntegrityError::Missing)
    }

    /// Checks the HMAC of one integrity attribute: computed over the message up to the
    /// attribute, with the header's length field set as if the attribute were the last one
    /// (RFC 8489 §14.5).
    fn verify_slot(&self, slot: Slot, key: &[u8], verify: VerifyFn) -> Result<(), IntegrityError> {
        let (Some(tag), Some(head), Some(rest)) = (
            slot.value(self.buf),
            self.buf.get(0..2),
            self.buf.get(4..slot.start),
        ) else {
            return Err(IntegrityError::Mismatch);
        };
        let adjusted = slot.start - HEADER_LEN + ATTRIBUTE_HEADER_LEN + slot.len;
        let Ok(adjusted) = u16::try_from(adjusted) else {
            return Err(IntegrityError::Mismatch);
        };
        if verify(key, &[head, &adjusted.to_be_bytes(), rest], tag) {
            Ok(())
        } else {
            Err(IntegrityError::Mismatch)
        }
    }

    /// Comprehension-required attribute types (0x0000-0x7FFF) this codec does not know, in
    /// order of first appearance, at most [`MAX_UNKNOWN_ATTRIBUTES`] of them: a server
    /// answers a request with any with 420 and UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1.1), a
    /// client treats a response with any as failed (§6.3.3, §6.3.4).
    pub fn unknown_comprehension_required(&self) -> &[u16] {
        self.unknown.get(..self.unknown_len).unwrap_or_default()
    }
}

/// A constant-time HMAC check: key, message parts, tag.
type VerifyFn = fn(&[u8], &[&[u8]], &[u8]) -> bool;

/// Iterator over the attributes between two offsets of a decoded message.
struct Attributes<'a> {
    buf: &'a [u8],
    offset: usize,
    end: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        if self.offset >= self.end {
            return None;
        }
        let kind = be16(self.buf, self.offset)?;
        let len = usize::from(be16(self.buf, self.offset + 2)?);
        let start = self.offset + ATTRIBUTE_HEADER_LEN;
        let value = self.buf.get(start..start + len)?;
        self.offset = start + padded(len);
        Some(RawAttribute { kind, value })
    }
}

/// Checks the format of a known attribute that counts, so the typed getters cannot fail.
fn validate(kind: u16, value: &[u8]) -> Result<(), DecodeError> {
    let len = value.len();
    let exact = |want: usize| {
        if len == want {
            Ok(())
        } else {
            Err(DecodeError::BadAttributeLength { kind, len })
        }
    };
    match kind {
        attr::MAPPED_ADDRESS
        | attr::XOR_MAPPED_ADDRESS
        | attr::XOR_PEER_ADDRESS
        | attr::XOR_RELAYED_ADDRESS
        | attr::ALTERNATE_SERVER => {
            let family = value.get(1).copied().unwrap_or(0);
            match (family, len) {
                (FAMILY_IPV4, 8) | (FAMILY_IPV6, 20) => Ok(()),
                _ => Err(DecodeError::BadAddress { kind, family, len }),
            }
        }
        attr::USERNAME => text(kind, value, MAX_USERNAME_LEN),
        attr::REALM | attr::NONCE | attr::SOFTWARE | attr::ALTERNATE_DOMAIN => {
            text(kind, value, MAX_TEXT_LEN)
        }
        attr::ERROR_CODE => {
            let (Some(&class), Some(&number), Some(reason)) =
                (value.get(2), value.get(3), value.get(4..))
            else {
                return Err(DecodeError::BadAttributeLength { kind, len });
            };
            let class = class & 0x07;
            if !(3..=6).contains(&class) || number >= 100 {
                return Err(DecodeError::BadErrorCode { class, number });
            }
            text(kind, reason, MAX_TEXT_LEN)
        }
        attr::UNKNOWN_ATTRIBUTES => {
            if len.is_multiple_of(2) {
                Ok(())
            } else {
                Err(DecodeError::BadAttributeLength { kind, len })
            }
        }
        attr::CHANNEL_NUMBER
        | attr::LIFETIME
        | attr::PRIORITY
        | attr::REQUESTED_ADDRESS_FAMILY
        | attr::REQUESTED_TRANSPORT => exact(4),
        attr::EVEN_PORT => exact(1),
        attr::DONT_FRAGMENT | attr::USE_CANDIDATE => exact(0),
        attr::RESERVATION_TOKEN | attr::ICE_CONTROLLED | attr::ICE_CONTROLLING => exact(8),
        attr::USERHASH => exact(USERHASH_LEN),
        attr::PASSWORD_ALGORITHM => {
            if password_algorithm_entry(value) == Some(len) || password_algorithm_fits(value) {
                Ok(())
            } else {
                Err(DecodeError::BadAttributeLength { kind, len })
            }
        }
        attr::PASSWORD_ALGORITHMS => {
            let mut rest = value;
            while !rest.is_empty() {
                match password_algorithm_entry(rest) {
                    Some(used) if used >= rest.len() => rest = &[],
                    Some(used) => rest = rest.get(used..).unwrap_or_default(),
                    None if password_algorithm_fits(rest) => rest = &[],
                    None => return Err(DecodeError::BadAttributeLength { kind, len }),
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Length of one algorithm entry (algorithm, parameters length, parameters padded to 4) of
/// PASSWORD-ALGORITHM(S) (RFC 8489 §14.11, §14.12), if the whole padded entry is present.
fn password_algorithm_entry(value: &[u8]) -> Option<usize> {
    let params = usize::from(be16(value, 2)?);
    let used = 4 + padded(params);
    (used <= value.len()).then_some(used)
}

/// Whether a final algorithm entry is present without its trailing padding.
fn password_algorithm_fits(value: &[u8]) -> bool {
    be16(value, 2).is_some_and(|p| 4 + usize::from(p) == value.len())
}

fn text(kind: u16, value: &[u8], max: usize) -> Result<(), DecodeError> {
    checked_text(kind, value, max).map(|_| ())
}

/// A text attribute's value if it is UTF-8 of at most `max` bytes (RFC 8489 §14.3, §14.9,
/// §14.10, §14.14).
fn checked_text(kind: u16, value: &[u8], max: usize) -> Result<&str, DecodeError> {
    if value.len() > max {
        return Err(DecodeError::AttributeTooLong {
            kind,
            len: value.len(),
            max,
        });
    }
    std::str::from_utf8(value).map_err(|_| DecodeError::InvalidUtf8 { kind })
}

/// The longest value `validate` allows for a text attribute.
fn max_text_len(kind: u16) -> usize {
    if kind == attr::USERNAME {
        MAX_USERNAME_LEN
    } else {
        MAX_TEXT_LEN
    }
}

/// Reads a (XOR-)MAPPED-ADDRESS-style value; `xor` carries the transaction id for the XOR
/// forms (RFC 8489 §14.1, §14.2).
pub(crate) fn read_address(value: &[u8], xor: Option<&TransactionId>) -> Option<SocketAddr> {
    let family = *value.get(1)?;
    let mut port = be16(value, 2)?;
    let cookie = MAGIC_COOKIE.to_be_bytes();
    if xor.is_some() {
        port ^= (MAGIC_COOKIE >> 16) as u16;
    }
    let ip = match (family, value.len()) {
        (FAMILY_IPV4, 8) => {
            let mut octets = [0u8; 4];
            octets.copy_from_slice(value.get(4..8)?);
            if xor.is_some() {
                for (o, c) in octets.iter_mut().zip(cookie) {
                    *o ^= c;
                }
            }
            IpAddr::V4(Ipv4Addr::from(octets))
        }
        (FAMILY_IPV6, 20) => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(value.get(4..20)?);
            if let Some(id) = xor {
                let pad = cookie.iter().chain(id.0.iter());
                for (o, c) in octets.iter_mut().zip(pad) {
                    *o ^= c;
                }
            }
            IpAddr::V6(Ipv6Addr::from(octets))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// Rounds an attribute length up to the 4-byte boundary (RFC 8489 §14).
pub(crate) fn padded(len: usize) -> usize {
    (len + 3) & !3
}

fn be16(buf: &[u8], at: usize) -> Option<u16> {
    let bytes = buf.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

fn be32(buf: &[u8], at: usize) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

fn be64(buf: &[u8], at: usize) -> Option<u64> {
    let bytes: [u8; 8] = buf.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
