//! STUN (RFC 8489, compatible with RFC 5389): message codec, attributes, integrity, fingerprint
//! and client transactions.
//!
//! - [`Message`] decodes a datagram without allocating, checking framing, the format of every
//!   known attribute and FINGERPRINT; [`Message::verify_integrity`] checks
//!   MESSAGE-INTEGRITY(-SHA256) in constant time.
//! - [`MessageEncoder`] writes a message into a reusable buffer.
//! - [`ClientTransaction`] is the sans-IO retransmission timer of a request over UDP.

mod constants;
mod encoder;
mod integrity;
mod message;
mod transaction;

pub use constants::{
    attr, error_code, message_type, split_message_type, Class, Method, TransactionId,
    ATTRIBUTE_HEADER_LEN, FAMILY_IPV4, FAMILY_IPV6, FINGERPRINT_LEN, FINGERPRINT_XOR, HEADER_LEN,
    MAGIC_COOKIE, MAX_TEXT_LEN, MAX_UNKNOWN_ATTRIBUTES, MAX_USERNAME_LEN, MESSAGE_INTEGRITY_LEN,
    MESSAGE_INTEGRITY_SHA256_MAX_LEN, MESSAGE_INTEGRITY_SHA256_MIN_LEN, USERHASH_LEN,
};
pub use encoder::MessageEncoder;
pub use integrity::{long_term_key, IntegrityError};
pub use message::{looks_like_stun, DecodeError, ErrorCode, Message, RawAttribute};
pub use transaction::{
    ClientTransaction, RetransmitConfig, TransactionState, DEFAULT_LAST_WAIT_FACTOR,
    DEFAULT_MAX_TRANSMITS, DEFAULT_RTO,
};

#[cfg(test)]
mod tests;
