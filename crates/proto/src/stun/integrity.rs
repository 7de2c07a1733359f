//! MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256, FINGERPRINT (CRC-32) and the
//! long-term credential key (RFC 8489 §9.2.2, §14.5-§14.7).

use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use super::constants::FINGERPRINT_XOR;

/// Why a message failed integrity verification (RFC 8489 §9.1.3, §9.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    /// The message carries neither MESSAGE-INTEGRITY nor MESSAGE-INTEGRITY-SHA256.
    #[error("message has no MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 attribute")]
    Missing,
    /// The HMAC does not match the key.
    #[error("message integrity check failed")]
    Mismatch,
}

/// The long-term credential key: MD5 of "username:realm:password" (RFC 8489 §9.2.2, the
/// MD5 variant, which RFC 5389 §15.4 defined). The caller applies OpaqueString/SASLprep to
/// the username and password first where that matters.
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(username.as_bytes());
    md5.update(b":");
    md5.update(realm.as_bytes());
    md5.update(b":");
    md5.update(password.as_bytes());
    md5.finalize().into()
}

/// HMAC-SHA1 of `parts` concatenated, under `key` (RFC 8489 §14.5). `None` only if the HMAC
/// implementation refused the key, which HMAC never does.
pub(crate) fn hmac_sha1(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 20]> {
    let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().into())
}

/// HMAC-SHA256 of `parts` concatenated, under `key` (RFC 8489 §14.6).
pub(crate) fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().into())
}

/// Checks an HMAC-SHA1 tag in constant time (RFC 8489 §14.5).
pub(crate) fn verify_hmac_sha1(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(key) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

/// Checks a (possibly truncated, leftmost bytes kept) HMAC-SHA256 tag in constant time
/// (RFC 8489 §14.6).
pub(crate) fn verify_hmac_sha256(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return false;
    };
    for part in parts {
        mac.update(part);
    }
    mac.verify_truncated_left(tag).is_ok()
}

/// The FINGERPRINT value of the bytes that precede the attribute: CRC-32 XOR 0x5354554E
/// (RFC 8489 §14.7).
pub(crate) fn fingerprint(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes) ^ FINGERPRINT_XOR
}
