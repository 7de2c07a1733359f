//! DTLS certificates and their fingerprints (RFC 8122 §5, RFC 8842 §5.1, XEP-0320).
//!
//! Each agent (or session) makes a fresh self-signed ECDSA P-256 certificate; its SHA-256
//! fingerprint travels in Jingle, and the peer's certificate seen in the DTLS handshake must
//! hash to the fingerprint the peer signalled. That check is the only thing that authenticates
//! the peer: there is no certificate authority.

use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The hash function of the fingerprints we make and the only one we check a certificate
/// against (RFC 8827 §6.5: WebRTC peers use SHA-256); its RFC 8122 §5 name.
pub const FINGERPRINT_HASH: &str = "sha-256";
/// Length of a SHA-256 fingerprint in bytes.
pub const FINGERPRINT_LEN: usize = 32;
/// Longest digest read: SHA-512's 64 bytes, the longest hash RFC 8122 §5 names.
pub const FINGERPRINT_MAX_LEN: usize = 64;
/// Longest hash function name read (RFC 8122 §5 `hash-func` is a token without bound).
pub const HASH_NAME_MAX_LEN: usize = 32;

/// Digest lengths of the hash functions RFC 8122 §5 names.
const KNOWN_HASHES: &[(&str, usize)] = &[
    ("sha-1", 20),
    ("sha-224", 28),
    ("sha-256", 32),
    ("sha-384", 48),
    ("sha-512", 64),
    ("md5", 16),
    ("md2", 16),
];

/// Digest length of a hash function named in RFC 8122 §5, if it is one (any ASCII case).
pub fn digest_len(hash: &str) -> Option<usize> {
    KNOWN_HASHES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(hash))
        .map(|&(_, len)| len)
}

/// Whether `s` is a bounded RFC 4566 token as used by RFC 8122 §5 `hash-func`.
fn is_hash_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= HASH_NAME_MAX_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'*+^`{|}~".contains(&b))
}

/// A certificate fingerprint (RFC 8122 §5): the name of a hash function and the digest of a
/// DER certificate. The one fingerprint type of the project: we make SHA-256 ones
/// ([`Fingerprint::of_der`]), read any well-formed one a peer signals (XEP-0320, SDP), and
/// check a certificate only against a SHA-256 one ([`Fingerprint::matches_der`]).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The hash function name, ASCII lowercase.
    hash: Box<str>,
    /// The digest.
    value: Box<[u8]>,
}

/// Why a fingerprint could not be read or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// The hash function name is empty, too long or not a token.
    #[error("fingerprint hash {0:?} is not a hash function name")]
    InvalidHash(String),
    /// The value is empty.
    #[error("fingerprint is empty")]
    Empty,
    /// The text is longer than [`FINGERPRINT_MAX_LEN`] bytes could be.
    #[error("fingerprint text of {0} characters is longer than any digest")]
    TooLong(usize),
    /// A group of the text is not two hex digits.
    #[error("fingerprint byte {index} is {group:?}, not two hex digits")]
    BadHex {
        /// Position of the bad group, from 0.
        index: usize,
        /// The group as received.
        group: String,
    },
    /// The digest length does not match the hash function.
    #[error("{hash} fingerprint has {got} bytes, expected {expected}")]
    WrongLength {
        /// The hash function.
        hash: String,
        /// Its digest length.
        expected: usize,
        /// The number of bytes received.
        got: usize,
    },
    /// A certificate cannot be checked against this hash function: only SHA-256 is, the one
    /// WebRTC peers use (RFC 8827 §6.5).
    #[error("unsupported fingerprint hash function {0:?} (only sha-256)")]
    UnsupportedHash(String),
}

impl Fingerprint {
    /// The SHA-256 fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint {
            hash: FINGERPRINT_HASH.into(),
            value: Sha256::digest(der).to_vec().into(),
        }
    }

    /// A digest computed with `hash` (RFC 8122 §5 name, any case): for a function RFC 8122
    /// names, it must have that function's length; for any other one, 1 to
    /// [`FINGERPRINT_MAX_LEN`] bytes.
    pub fn new(hash: &str, value: Vec<u8>) -> Result<Self, FingerprintError> {
        if !is_hash_name(hash) {
            return Err(FingerprintError::InvalidHash(
                hash.chars().take(HASH_NAME_MAX_LEN).collect(),
            ));
        }
        let hash = hash.to_ascii_lowercase();
        match digest_len(&hash) {
            Some(expected) if value.len() != expected => Err(FingerprintError::WrongLength {
                hash,
                expected,
                got: value.len(),
            }),
            _ if value.is_empty() => Err(FingerprintError::Empty),
            _ if value.len() > FINGERPRINT_MAX_LEN => Err(FingerprintError::TooLong(value.len())),
            _ => Ok(Fingerprint {
                hash: hash.into(),
                value: value.into(),
            }),
        }
    }

    /// Reads the RFC 8122 §5 text form `AB:CD:...` (hex pairs in either case, surrounding
    /// whitespace ignored) of a digest computed with `hash`, with the checks of [`Self::new`].
    pub fn parse(hash: &str, text: &str) -> Result<Self, FingerprintError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(FingerprintError::Empty);
        }
        // "XX:" per byte, less the last colon.
        if text.len() > FINGERPRINT_MAX_LEN * 3 - 1 {
            return Err(FingerprintError::TooLong(text.len()));
        }
        let value = crate::hex::decode_pairs(text).map_err(|bad| FingerprintError::BadHex {
            index: bad.index,
            group: bad.group,
        })?;
        Fingerprint::new(hash, value)
    }

    /// A SHA-256 fingerprint from its digest.
    pub fn sha256(digest: [u8; FINGERPRINT_LEN]) -> Self {
        Fingerprint {
            hash: FINGERPRINT_HASH.into(),
            value: digest.to_vec().into(),
        }
    }

    /// The digest of a SHA-256 fingerprint; `Err(UnsupportedHash)` for any other hash.
    pub fn sha256_digest(&self) -> Result<[u8; FINGERPRINT_LEN], FingerprintError> {
        self.check_supported()?;
        (*self.value)
            .try_into()
            .map_err(|_| FingerprintError::WrongLength {
                hash: self.hash.to_string(),
                expected: FINGERPRINT_LEN,
                got: self.value.len(),
            })
    }

    /// The hash function name, ASCII lowercase.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The digest.
    pub fn as_bytes(&self) -> &[u8] {
        &self.value
    }

    /// The digest as RFC 8122 §5 writes it: uppercase hex pairs separated by `:`.
    pub fn hex(&self) -> String {
        crate::hex::encode_pairs(&self.value)
    }

    /// Whether a certificate can be checked against this fingerprint ([`Self::matches_der`]);
    /// the reason when its hash function is not SHA-256.
    pub fn check_supported(&self) -> Result<(), FingerprintError> {
        if &*self.hash == FINGERPRINT_HASH {
            Ok(())
        } else {
            Err(FingerprintError::UnsupportedHash(self.hash.to_string()))
        }
    }

    /// Whether `der` hashes to this fingerprint (RFC 8122 §5, RFC 8842 §5: a mismatch must
    /// fail the connection). Compared in constant time; always false for a hash function other
    /// than SHA-256.
    pub fn matches_der(&self, der: &[u8]) -> bool {
        self.check_supported().is_ok()
            && bool::from(Sha256::digest(der).as_slice().ct_eq(&*self.value))
    }
}

impl fmt::Display for Fingerprint {
    /// The SDP form of RFC 8122 §5: the hash name, a space, uppercase hex pairs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.hash, self.hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// Why a certificate could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not generate a DTLS certificate: {0}")]
pub struct CertificateError(String);

/// A self-signed DTLS certificate with its private key; cheap to clone.
#[derive(Clone)]
pub struct Certificate {
    inner: Arc<dimpl::DtlsCertificate>,
    /// The SHA-256 digest of the certificate.
    digest: [u8; FINGERPRINT_LEN],
}

impl Certificate {
    /// Makes a fresh self-signed ECDSA P-256 certificate (RFC 8827 §6.5: a new one per
    /// agent or session keeps sessions unlinkable).
    pub fn generate() -> Result<Self, CertificateError> {
        let cert = dimpl::certificate::generate_self_signed_certificate()
            .map_err(|e| CertificateError(format!("{e:?}")))?;
        let digest = Sha256::digest(&cert.certificate).into();
        Ok(Certificate {
            inner: Arc::new(cert),
            digest,
        })
    }

    /// The SHA-256 fingerprint to signal to the peer.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::sha256(self.digest)
    }

    /// The certificate in DER.
    pub fn der(&self) -> &[u8] {
        &self.inner.certificate
    }

    pub(crate) fn dtls(&self) -> dimpl::DtlsCertificate {
        (*self.inner).clone()
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_round_trips_and_rejects_bad_forms() {
        let cert = Certificate::generate().unwrap();
        let fp = cert.fingerprint();
        assert!(fp.matches_der(cert.der()));
        let text = fp.hex();
        assert_eq!(text.len(), 32 * 3 - 1);
        assert_eq!(fp.to_string(), format!("sha-256 {text}"));
        assert_eq!(Fingerprint::parse("sha-256", &text).unwrap(), fp);
        assert_eq!(
            Fingerprint::parse("SHA-256", &text.to_lowercase()).unwrap(),
            fp
        );
        assert!(matches!(
            Fingerprint::parse("sha-1", &text),
            Err(FingerprintError::WrongLength { expected: 20, .. })
        ));
        assert!(matches!(
            Fingerprint::parse("sha-256", &text[3..]),
            Err(FingerprintError::WrongLength { got: 31, .. })
        ));
        assert!(matches!(
            Fingerprint::parse("sha-256", &format!("{text}:00")),
            Err(FingerprintError::WrongLength { got: 33, .. })
        ));
        assert!(matches!(
            Fingerprint::parse("sha-256", &text.replace(':', "")),
            Err(FingerprintError::BadHex { index: 0, .. })
        ));
        let other = Certificate::generate().unwrap();
        assert!(!fp.matches_der(other.der()));
        // Read, but never used to check a certificate.
        let sha512 = Fingerprint::new("sha-512", vec![1; 64]).unwrap();
        assert!(sha512.check_supported().is_err());
        assert!(!sha512.matches_der(cert.der()));
        let unknown = Fingerprint::new("x-new-hash", vec![1, 2]).unwrap();
        assert_eq!(unknown.as_bytes(), &[1, 2]);
        assert!(matches!(
            Fingerprint::new("sha 256", vec![1; 32]),
            Err(FingerprintError::InvalidHash(_))
        ));
    }
}
