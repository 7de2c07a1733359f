//! Encrypted channels over the ICE path: WebRTC data channels (RFC 8831) as Conversations and
//! browsers use them: DTLS 1.2 authenticated by certificate fingerprints (RFC 8842), SCTP over
//! DTLS (RFC 8261) and DCEP (RFC 8832).
//!
//! [`Association`] is the sans-IO core; `jingle_ice::net::DataChannels` drives it over an
//! `jingle_ice::net::IceConnection` and gives each channel a tokio byte stream.
//!
//! DTLS comes from `dimpl` (sans-IO, DTLS 1.2 with ECDSA certificates and AES-GCM, made for
//! WebRTC), SCTP from `sctp-proto` (sans-IO); both are kept by the str0m maintainers. OpenSSL's
//! DTLS was the other candidate: it would mean a C library, a blocking BIO shim around our
//! sans-IO model, and timers hidden inside the library.

mod association;
mod certificate;
mod dcep;

pub use association::{
    Association, AssociationConfig, AssociationStats, ChannelError, ChannelEvent, ChannelId,
    ChannelMessage, DtlsRole, RemoteParameters, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SCTP_PORT,
    DTLS_FIRST_BYTES, IMPLICIT_MAX_MESSAGE_SIZE,
};
pub use certificate::{
    digest_len, Certificate, CertificateError, Fingerprint, FingerprintError, FINGERPRINT_HASH,
    FINGERPRINT_LEN, FINGERPRINT_MAX_LEN, HASH_NAME_MAX_LEN,
};
pub use dcep::{
    ChannelOptions, DcepError, DcepMessage, Reliability, PPID_BINARY, PPID_BINARY_EMPTY, PPID_DCEP,
    PPID_STRING, PPID_STRING_EMPTY,
};

#[cfg(test)]
mod tests;
