//! STUN (RFC 8489, compatible with RFC 5389): message codec, attributes, integrity, fingerprint
//! and client transactions.
