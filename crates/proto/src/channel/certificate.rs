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

/// The hash function name of fingerprints we make and check (RFC 8122 §5, the IANA "Hash
/// Function Textual Names" registry).
pub const FINGERPRINT_HASH: &str = "sha-256";
/// Length of a SHA-256 fingerprint in bytes.
pub const FINGERPRINT_LEN: usize = 32;

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; FINGERPRINT_LEN]);

/// Why a fingerprint could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FingerprintError {
    /// The hash function is not SHA-256, the one WebRTC peers use (RFC 8827 §6.5).
    #[error("unsupported fingerprint hash function {0:?} (only sha-256)")]
    UnsupportedHash(String),
    /// The value is not 32 hex byte pairs separated by colons (RFC 8122 §5).
    #[error("malformed fingerprint value")]
    Malformed,
}

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of_der(der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(der).into())
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.0
    }

    /// From raw digest bytes with the name of their hash function.
    pub fn from_bytes(hash: &str, bytes: &[u8]) -> Result<Self, FingerprintError> {
        if !hash.eq_ignore_ascii_case(FINGERPRINT_HASH) {
            return Err(FingerprintError::UnsupportedHash(hash.to_owned()));
        }
        let array: [u8; FINGERPRINT_LEN] =
            bytes.try_into().map_err(|_| FingerprintError::Malformed)?;
        Ok(Fingerprint(array))
    }

    /// Parses the RFC 8122 form `AB:CD:...` (hex, either case).
    pub fn parse(hash: &str, value: &str) -> Result<Self, FingerprintError> {
        let bytes =
            crate::hex::decode_pairs(value.trim()).map_err(|_| FingerprintError::Malformed)?;
        Fingerprint::from_bytes(hash, &bytes)
    }

    /// Whether `der` hashes to this fingerprint (compared in constant time).
    pub fn matches_der(&self, der: &[u8]) -> bool {
        bool::from(Fingerprint::of_der(der).0.ct_eq(&self.0))
    }
}

impl fmt::Display for Fingerprint {
    /// Uppercase hex pairs separated by colons, as Conversations and browsers write them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex::encode_pairs(&self.0))
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
    fingerprint: Fingerprint,
}

impl Certificate {
    /// Makes a fresh self-signed ECDSA P-256 certificate (RFC 8827 §6.5: a new one per
    /// agent or session keeps sessions unlinkable).
    pub fn generate() -> Result<Self, CertificateError> {
        let cert = dimpl::certificate::generate_self_signed_certificate()
            .map_err(|e| CertificateError(format!("{e:?}")))?;
        let fingerprint = Fingerprint::of_der(&cert.certificate);
        Ok(Certificate {
            inner: Arc::new(cert),
            fingerprint,
        })
    }

    /// The SHA-256 fingerprint to signal to the peer.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
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
            .field("fingerprint", &self.fingerprint)
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
        let text = fp.to_string();
        assert_eq!(text.len(), 32 * 3 - 1);
        assert_eq!(Fingerprint::parse("sha-256", &text).unwrap(), fp);
        assert_eq!(
            Fingerprint::parse("SHA-256", &text.to_lowercase()).unwrap(),
            fp
        );
        assert!(matches!(
            Fingerprint::parse("sha-1", &text),
            Err(FingerprintError::UnsupportedHash(_))
        ));
        assert_eq!(
            Fingerprint::parse("sha-256", &text[3..]),
            Err(FingerprintError::Malformed)
        );
        assert_eq!(
            Fingerprint::parse("sha-256", &format!("{text}:00")),
            Err(FingerprintError::Malformed)
        );
        assert_eq!(
            Fingerprint::parse("sha-256", &text.replace(':', "")),
            Err(FingerprintError::Malformed)
        );
        let other = Certificate::generate().unwrap();
        assert!(!fp.matches_der(other.der()));
    }
}
