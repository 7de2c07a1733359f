//! The four test vectors of RFC 5769 §2, byte for byte: decoded, every attribute checked,
//! integrity and fingerprint verified, and re-encoded to the same bytes.
//!
//! Padding: RFC 8489 §14 lets padding bytes take any value, and the RFC 5769 vectors pad
//! USERNAME (§2.1) and SOFTWARE (§2.2, §2.3) with spaces (0x20) but USERNAME and REALM (§2.4)
//! with zeros. Since MESSAGE-INTEGRITY and FINGERPRINT cover the padding, the re-encoding sets
//! the same padding byte with `MessageEncoder::padding_byte` and compares every byte.

use std::net::SocketAddr;

use jingle_ice::stun::{
    attr, long_term_key, Class, IntegrityError, Message, MessageEncoder, Method, RawAttribute,
    TransactionId,
};

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// RFC 5769 §2: the short-term password of the first three vectors.
const PASSWORD: &str = "VOkJxbRl1RmTxUk/WvJxBt";

const RESPONSE_ID: [u8; 12] = [
    0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
];

/// RFC 5769 §2.1, sample request.
const REQUEST: &str = "
    00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
    00 24 00 04 6e 00 01 ff
    80 29 00 08 93 2f f9 b1 51 26 3b 36
    00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
    00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
    80 28 00 04 e5 7a 3b cf";

/// RFC 5769 §2.2, sample IPv4 response.
const IPV4_RESPONSE: &str = "
    01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 08 00 01 a1 47 e1 12 a6 43
    00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
    80 28 00 04 c0 7d 4c 96";

/// RFC 5769 §2.3, sample IPv6 response.
const IPV6_RESPONSE: &str = "
    01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
    80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
    00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
    00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
    80 28 00 04 c8 fb 0b 4c";

/// RFC 5769 §2.4, sample request with long-term authentication.
const LONG_TERM_REQUEST: &str = "
    00 01 00 60 21 12 a4 42 78 ad 34 33 c6 ad 72 c0 29 da 41 2e
    00 06 00 12 e3 83 9e e3 83 88 e3 83 aa e3 83 83 e3 82 af e3 82 b9 00 00
    00 15 00 1c 66 2f 2f 34 39 39 6b 39 35 34 64 36 4f 4c 33 34 6f 4c 39 46 53 54 76 79 36 34 73 41
    00 14 00 0b 65 78 61 6d 70 6c 65 2e 6f 72 67 00
    00 08 00 14 f6 70 24 65 6d d6 4a 3e 02 b8 e0 71 2e 85 c9 a2 8c a8 96 66";

/// The §2.4 username, U+30DE U+30C8 U+30EA U+30C3 U+30AF U+30B9 (already SASLprep'd).
const LONG_TERM_USERNAME: &str = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
const LONG_TERM_NONCE: &str = "f//499k954d6OL34oL9FSTvy64sA";
const LONG_TERM_REALM: &str = "example.org";
/// The §2.4 password after SASLprep ("The<U+00AD>M<U+00AA>tr<U+2168>" before).
const LONG_TERM_PASSWORD: &str = "TheMatrIX";

fn kinds(message: &Message<'_>) -> Vec<u16> {
    message
        .attributes()
        .map(|a: RawAttribute<'_>| a.kind)
        .collect()
}

#[test]
fn sample_request() {
    let bytes = hex(REQUEST);
    assert_eq!(bytes.len(), 108);
    let m = Message::decode(&bytes).expect("decodes");
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.method(), Method::BINDING);
    assert_eq!(m.transaction_id(), TransactionId(RESPONSE_ID));
    assert_eq!(m.raw(), &bytes[..]);
    assert_eq!(
        kinds(&m),
        [
            attr::SOFTWARE,
            attr::PRIORITY,
            attr::ICE_CONTROLLED,
            attr::USERNAME,
            attr::MESSAGE_INTEGRITY,
            attr::FINGERPRINT
        ]
    );
    assert_eq!(m.software(), Some("STUN test client"));
    assert_eq!(m.priority(), Some(0x6e00_01ff));
    assert_eq!(m.ice_controlled(), Some(0x932f_f9b1_5126_3b36));
    assert_eq!(m.ice_controlling(), None);
    assert_eq!(m.username(), Some("evtj:h6vY"));
    assert!(!m.use_candidate());
    assert!(m.has_message_integrity());
    assert!(!m.has_message_integrity_sha256());
    assert!(m.has_fingerprint());
    assert!(m.unknown_comprehension_required().is_empty());
    assert_eq!(m.verify_integrity(PASSWORD.as_bytes()), Ok(()));
    assert_eq!(
        m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBT"),
        Err(IntegrityError::Mismatch)
    );

    let mut out = Vec::new();
    let mut enc = MessageEncoder::new(
        &mut out,
        Class::Request,
        Method::BINDING,
        TransactionId(RESPONSE_ID),
    );
    enc.padding_byte(0x20)
        .software("STUN test client")
        .priority(0x6e00_01ff)
        .ice_controlled(0x932f_f9b1_5126_3b36)
        .username("evtj:h6vY")
        .message_integrity(PASSWORD.as_bytes())
        .fingerprint();
    assert!(!enc.skipped());
    assert_eq!(enc.finish(), bytes.len());
    assert_eq!(out, bytes);
}

fn check_response(text: &str, mapped: &str, len: usize) {
    let bytes = hex(text);
    assert_eq!(bytes.len(), len);
    let m = Message::decode(&bytes).expect("decodes");
    assert_eq!(m.class(), Class::SuccessResponse);
    assert_eq!(m.method(), Method::BINDING);
    assert_eq!(m.transaction_id(), TransactionId(RESPONSE_ID));
    assert_eq!(
        kinds(&m),
        [
            attr::SOFTWARE,
            attr::XOR_MAPPED_ADDRESS,
            attr::MESSAGE_INTEGRITY,
            attr::FINGERPRINT
        ]
    );
    let mapped: SocketAddr = mapped.parse().unwrap();
    assert_eq!(m.software(), Some("test vector"));
    assert_eq!(m.xor_mapped_address(), Some(mapped));
    assert_eq!(m.mapped_address(), None);
    assert!(m.has_fingerprint());
    assert_eq!(m.verify_integrity(PASSWORD.as_bytes()), Ok(()));
    assert_eq!(m.verify_integrity(b"wrong"), Err(IntegrityError::Mismatch));

    let mut out = Vec::new();
    let mut enc = MessageEncoder::new(
        &mut out,
        Class::SuccessResponse,
        Method::BINDING,
        TransactionId(RESPONSE_ID),
    );
    enc.padding_byte(0x20)
        .software("test vector")
        .xor_mapped_address(mapped)
        .message_integrity(PASSWORD.as_bytes())
        .fingerprint();
    assert_eq!(enc.finish(), bytes.len());
    assert_eq!(out, bytes);
}

#[test]
fn sample_ipv4_response() {
    check_response(IPV4_RESPONSE, "192.0.2.1:32853", 80);
}

#[test]
fn sample_ipv6_response() {
    check_response(
        IPV6_RESPONSE,
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        92,
    );
}

#[test]
fn sample_request_with_long_term_authentication() {
    let bytes = hex(LONG_TERM_REQUEST);
    assert_eq!(bytes.len(), 116);
    let m = Message::decode(&bytes).expect("decodes");
    assert_eq!(m.class(), Class::Request);
    assert_eq!(m.method(), Method::BINDING);
    let id = TransactionId([
        0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e,
    ]);
    assert_eq!(m.transaction_id(), id);
    assert_eq!(
        kinds(&m),
        [
            attr::USERNAME,
            attr::NONCE,
            attr::REALM,
            attr::MESSAGE_INTEGRITY
        ]
    );
    assert_eq!(m.username(), Some(LONG_TERM_USERNAME));
    assert_eq!(m.nonce(), Some(LONG_TERM_NONCE));
    assert_eq!(m.realm(), Some(LONG_TERM_REALM));
    assert!(!m.has_fingerprint());
    let key = long_term_key(LONG_TERM_USERNAME, LONG_TERM_REALM, LONG_TERM_PASSWORD);
    assert_eq!(m.verify_integrity(&key), Ok(()));
    // The password itself is not the key for long-term credentials.
    assert_eq!(
        m.verify_integrity(LONG_TERM_PASSWORD.as_bytes()),
        Err(IntegrityError::Mismatch)
    );

    let mut out = Vec::new();
    let mut enc = MessageEncoder::new(&mut out, Class::Request, Method::BINDING, id);
    enc.username(LONG_TERM_USERNAME)
        .nonce(LONG_TERM_NONCE)
        .realm(LONG_TERM_REALM)
        .message_integrity(&key);
    assert_eq!(enc.finish(), bytes.len());
    assert_eq!(out, bytes);
}

#[test]
fn vectors_with_other_padding_still_verify_after_reencoding() {
    // With the default zero padding the bytes differ only in padding, and our own output
    // verifies and decodes to the same attributes.
    let bytes = hex(IPV4_RESPONSE);
    let original = Message::decode(&bytes).unwrap();
    let mut out = Vec::new();
    let mut enc = MessageEncoder::new(
        &mut out,
        Class::SuccessResponse,
        Method::BINDING,
        TransactionId(RESPONSE_ID),
    );
    enc.software("test vector")
        .xor_mapped_address(original.xor_mapped_address().unwrap())
        .message_integrity(PASSWORD.as_bytes())
        .fingerprint();
    enc.finish();
    assert_eq!(out.len(), bytes.len());
    let differing: Vec<usize> = (0..out.len()).filter(|&i| out[i] != bytes[i]).collect();
    // The padding byte of SOFTWARE (offset 35), then the HMAC and the CRC that cover it.
    assert_eq!(differing.first(), Some(&35));
    assert!(differing.iter().skip(1).all(|&i| i >= 48));
    let again = Message::decode(&out).unwrap();
    assert_eq!(again.verify_integrity(PASSWORD.as_bytes()), Ok(()));
    assert_eq!(again.software(), original.software());
    assert_eq!(again.xor_mapped_address(), original.xor_mapped_address());
}
