//! Encoding of STUN messages into a caller's buffer (RFC 8489 §5, §14).

use std::net::{IpAddr, SocketAddr};

use super::constants::{
    attr, message_type, Class, Method, TransactionId, ATTRIBUTE_HEADER_LEN, FAMILY_IPV4,
    FAMILY_IPV6, FINGERPRINT_LEN, HEADER_LEN, MAGIC_COOKIE, MAX_TEXT_LEN, MAX_USERNAME_LEN,
    MESSAGE_INTEGRITY_LEN, MESSAGE_INTEGRITY_SHA256_MAX_LEN,
};
use super::integrity::{fingerprint, hmac_sha1, hmac_sha256};
use super::message::padded;

/// Largest message body the 16-bit length field can describe, rounded down to a multiple of
/// 4 (RFC 8489 §5).
const MAX_BODY_LEN: usize = 0xFFFC;

/// Writes a message into a caller's buffer (RFC 8489 §5, §14). The `Vec` is cleared first and
/// reused: once it has the capacity, encoding allocates nothing.
///
/// Attributes are written in the order the methods are called. The header's length field is
/// kept up to date after each attribute, so the integrity attributes and FINGERPRINT can be
/// computed at once (RFC 8489 §14.5-§14.7); call them last, in the order MESSAGE-INTEGRITY,
/// MESSAGE-INTEGRITY-SHA256, FINGERPRINT.
///
/// The encoder never writes an attribute the decoder would reject: a value too long for its
/// attribute or for the message, or an ERROR-CODE outside 300..=699, is left out and
/// [`MessageEncoder::skipped`] turns true.
pub struct MessageEncoder<'b> {
    buf: &'b mut Vec<u8>,
    id: TransactionId,
    padding: u8,
    skipped: bool,
}

impl<'b> MessageEncoder<'b> {
    /// Starts a message of `class` and `method` with transaction id `id` in `buf`, which is
    /// cleared first (RFC 8489 §5).
    pub fn new(buf: &'b mut Vec<u8>, class: Class, method: Method, id: TransactionId) -> Self {
        buf.clear();
        buf.extend_from_slice(&message_type(class, method).to_be_bytes());
        buf.extend_from_slice(&0u16.to_be_bytes());
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&id.0);
        MessageEncoder {
            buf,
            id,
            padding: 0,
            skipped: false,
        }
    }

    /// Sets the byte used to pad later attributes to 4 bytes (default 0). RFC 8489 §14 lets
    /// padding bytes take any value; RFC 5769's vectors pad some attributes with spaces
    /// (0x20), and reproducing them byte for byte needs this.
    pub fn padding_byte(&mut self, byte: u8) -> &mut Self {
        self.padding = byte;
        self
    }

    /// Whether an attribute was left out because it could not be encoded validly.
    pub fn skipped(&self) -> bool {
        self.skipped
    }

    /// Writes any attribute as given (RFC 8489 §14). The caller is responsible for the value's
    /// format; only the framing is checked.
    pub fn raw_attribute(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        self.put(kind, &[value])
    }

    /// USERNAME (RFC 8489 §14.3); left out if longer than 512 bytes.
    pub fn username(&mut self, v: &str) -> &mut Self {
        self.text(attr::USERNAME, v, MAX_USERNAME_LEN)
    }

    /// XOR-MAPPED-ADDRESS (RFC 8489 §14.2).
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> &mut Self {
        self.address(attr::XOR_MAPPED_ADDRESS, addr, true)
    }

    /// MAPPED-ADDRESS (RFC 8489 §14.1).
    pub fn mapped_address(&mut self, addr: SocketAddr) -> &mut Self {
        self.address(attr::MAPPED_ADDRESS, addr, false)
    }

    /// XOR-PEER-ADDRESS (RFC 8656 §18.3).
    pub fn xor_peer_address(&mut self, addr: SocketAddr) -> &mut Self {
        self.address(attr::XOR_PEER_ADDRESS, addr, true)
    }

    /// XOR-RELAYED-ADDRESS (RFC 8656 §18.5).
    pub fn xor_relayed_address(&mut self, addr: SocketAddr) -> &mut Self {
        self.address(attr::XOR_RELAYED_ADDRESS, addr, true)
    }

    /// ALTERNATE-SERVER (RFC 8489 §14.15).
    pub fn alternate_server(&mut self, addr: SocketAddr) -> &mut Self {
        self.address(attr::ALTERNATE_SERVER, addr, false)
    }

    /// PRIORITY (RFC 8445 §16.1).
    pub fn priority(&mut self, priority: u32) -> &mut Self {
        self.put(attr::PRIORITY, &[&priority.to_be_bytes()])
    }

    /// USE-CANDIDATE (RFC 8445 §16.1).
    pub fn use_candidate(&mut self) -> &mut Self {
        self.put(attr::USE_CANDIDATE, &[])
    }

    /// ICE-CONTROLLING with its tie-breaker (RFC 8445 §16.1).
    pub fn ice_controlling(&mut self, tie_breaker: u64) -> &mut Self {
        self.put(attr::ICE_CONTROLLING, &[&tie_breaker.to_be_bytes()])
    }

    /// ICE-CONTROLLED with its tie-breaker (RFC 8445 §16.1).
    pub fn ice_controlled(&mut self, tie_breaker: u64) -> &mut Self {
        self.put(attr::ICE_CONTROLLED, &[&tie_breaker.to_be_bytes()])
    }

    /// ERROR-CODE (RFC 8489 §14.8); left out unless `code` is in 300..=699 and `reason` at
    /// most 763 bytes.
    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        if !(300..700).contains(&code) || reason.len() > MAX_TEXT_LEN {
            self.skipped = true;
            return self;
        }
        // Both fit in a byte: code / 100 is 3..=6 and code % 100 is below 100.
        let head = [0, 0, (code / 100) as u8, (code % 100) as u8];
        self.put(attr::ERROR_CODE, &[&head, reason.as_bytes()])
    }

    /// UNKNOWN-ATTRIBUTES listing `kinds` (RFC 8489 §14.13).
    pub fn unknown_attributes(&mut self, kinds: &[u16]) -> &mut Self {
        let Some(start) = self.begin(attr::UNKNOWN_ATTRIBUTES) else {
            return self;
        };
        for kind in kinds {
            self.buf.extend_from_slice(&kind.to_be_bytes());
        }
        self.end(start)
    }

    /// SOFTWARE (RFC 8489 §14.14); left out if longer than 763 bytes.
    pub fn software(&mut self, v: &str) -> &mut Self {
        self.text(attr::SOFTWARE, v, MAX_TEXT_LEN)
    }

    /// REALM (RFC 8489 §14.9); left out if longer than 763 bytes.
    pub fn realm(&mut self, v: &str) -> &mut Self {
        self.text(attr::REALM, v, MAX_TEXT_LEN)
    }

    /// NONCE (RFC 8489 §14.10); left out if longer than 763 bytes.
    pub fn nonce(&mut self, v: &str) -> &mut Self {
        self.text(attr::NONCE, v, MAX_TEXT_LEN)
    }

    /// LIFETIME in seconds (RFC 8656 §18.2).
    pub fn lifetime(&mut self, seconds: u32) -> &mut Self {
        self.put(attr::LIFETIME, &[&seconds.to_be_bytes()])
    }

    /// CHANNEL-NUMBER (RFC 8656 §18.1), with the RFFU half zero.
    pub fn channel_number(&mut self, channel: u16) -> &mut Self {
        let [hi, lo] = channel.to_be_bytes();
        self.put(attr::CHANNEL_NUMBER, &[&[hi, lo, 0, 0]])
    }

    /// REQUESTED-TRANSPORT with a protocol number (RFC 8656 §18.8; 17 is UDP).
    pub fn requested_transport(&mut self, protocol: u8) -> &mut Self {
        self.put(attr::REQUESTED_TRANSPORT, &[&[protocol, 0, 0, 0]])
    }

    /// DATA (RFC 8656 §18.4).
    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.put(attr::DATA, &[data])
    }

    /// MESSAGE-INTEGRITY: HMAC-SHA1 under `key` over the message so far, with the length
    /// field counting this attribute (RFC 8489 §14.5).
    pub fn message_integrity(&mut self, key: &[u8]) -> &mut Self {
        if !self.set_length_with(MESSAGE_INTEGRITY_LEN) {
            return self;
        }
        match hmac_sha1(key, &[self.buf.as_slice()]) {
            Some(tag) => self.put(attr::MESSAGE_INTEGRITY, &[&tag]),
            None => self.skip(),
        }
    }

    /// MESSAGE-INTEGRITY-SHA256 with the full 32-byte HMAC-SHA256 under `key` (RFC 8489
    /// §14.6).
    pub fn message_integrity_sha256(&mut self, key: &[u8]) -> &mut Self {
        if !self.set_length_with(MESSAGE_INTEGRITY_SHA256_MAX_LEN) {
            return self;
        }
        match hmac_sha256(key, &[self.buf.as_slice()]) {
            Some(tag) => self.put(attr::MESSAGE_INTEGRITY_SHA256, &[&tag]),
            None => self.skip(),
        }
    }

    /// FINGERPRINT: CRC-32 of the message so far XOR 0x5354554E, with the length field
    /// counting this attribute (RFC 8489 §14.7). Must be the last attribute.
    pub fn fingerprint(&mut self) -> &mut Self {
        if !self.set_length_with(FINGERPRINT_LEN) {
            return self;
        }
        let value = fingerprint(self.buf.as_slice());
        self.put(attr::FINGERPRINT, &[&value.to_be_bytes()])
    }

    /// Ends the message and returns its total length in bytes.
    pub fn finish(self) -> usize {
        self.buf.len()
    }

    fn skip(&mut self) -> &mut Self {
        // Restore the length field to the attributes actually written.
        self.write_length(self.buf.len() - HEADER_LEN);
        self.skipped = true;
        self
    }

    fn text(&mut self, kind: u16, v: &str, max: usize) -> &mut Self {
        if v.len() > max {
            self.skipped = true;
            return self;
        }
        self.put(kind, &[v.as_bytes()])
    }

    fn address(&mut self, kind: u16, addr: SocketAddr, xor: bool) -> &mut Self {
        let cookie = MAGIC_COOKIE.to_be_bytes();
        let port_mask = if xor { (MAGIC_COOKIE >> 16) as u16 } else { 0 };
        let [p0, p1] = (addr.port() ^ port_mask).to_be_bytes();
        match addr.ip() {
            IpAddr::V4(ip) => {
                let mut value = [0, FAMILY_IPV4, p0, p1, 0, 0, 0, 0];
                for (i, (slot, octet)) in value.iter_mut().skip(4).zip(ip.octets()).enumerate() {
                    *slot = if xor { octet ^ cookie[i] } else { octet };
                }
                self.put(kind, &[&value])
            }
            IpAddr::V6(ip) => {
                let mut value = [0u8; 20];
                value[1] = FAMILY_IPV6;
                value[2] = p0;
                value[3] = p1;
                let mask = cookie.iter().chain(self.id.0.iter());
                for ((slot, octet), m) in value.iter_mut().skip(4).zip(ip.octets()).zip(mask) {
                    *slot = if xor { octet ^ m } else { octet };
                }
                self.put(kind, &[&value])
            }
        }
    }

    /// Appends one attribute made of `parts`, with its padding, if it fits.
    fn put(&mut self, kind: u16, parts: &[&[u8]]) -> &mut Self {
        let Some(start) = self.begin(kind) else {
            return self;
        };
        for part in parts {
            self.buf.extend_from_slice(part);
        }
        self.end(start)
    }

    /// Writes an attribute header with a zero length; `None` if even that would not fit.
    fn begin(&mut self, kind: u16) -> Option<usize> {
        let start = self.buf.len();
        if start - HEADER_LEN + ATTRIBUTE_HEADER_LEN > MAX_BODY_LEN {
            self.skipped = true;
            return None;
        }
        self.buf.extend_from_slice(&kind.to_be_bytes());
        self.buf.extend_from_slice(&0u16.to_be_bytes());
        Some(start)
    }

    /// Completes the attribute begun at `start`: its length, its padding and the message
    /// length; removes it again if it does not fit.
    fn end(&mut self, start: usize) -> &mut Self {
        let value_len = self.buf.len() - start - ATTRIBUTE_HEADER_LEN;
        let body = start - HEADER_LEN + ATTRIBUTE_HEADER_LEN + padded(value_len);
        let Ok(len16) = u16::try_from(value_len) else {
            self.buf.truncate(start);
            return self.skip();
        };
        if body > MAX_BODY_LEN {
            self.buf.truncate(start);
            return self.skip();
        }
        if let Some(field) = self.buf.get_mut(start + 2..start + 4) {
            field.copy_from_slice(&len16.to_be_bytes());
        }
        let padding = padded(value_len) - value_len;
        for _ in 0..padding {
            self.buf.push(self.padding);
        }
        self.write_length(body);
        self
    }

    /// Sets the header length as if an attribute with a `value_len`-byte value had been
    /// appended (for the HMAC and CRC inputs, RFC 8489 §14.5-§14.7). False if it would not fit.
    fn set_length_with(&mut self, value_len: usize) -> bool {
        let body = self.buf.len() - HEADER_LEN + ATTRIBUTE_HEADER_LEN + value_len;
        if body > MAX_BODY_LEN {
            self.skipped = true;
            return false;
        }
        self.write_length(body);
        true
    }

    fn write_length(&mut self, body: usize) {
        let len = u16::try_from(body).unwrap_or(u16::MAX);
        if let Some(field) = self.buf.get_mut(2..4) {
            field.copy_from_slice(&len.to_be_bytes());
        }
    }
}
