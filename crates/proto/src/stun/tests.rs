//! Unit tests of the STUN codec and the client transaction.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::*;

const ID: TransactionId = TransactionId([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
const KEY: &[u8] = b"a short-term password";

fn encode(build: impl FnOnce(&mut MessageEncoder<'_>)) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut enc = MessageEncoder::new(&mut buf, Class::Request, Method::BINDING, ID);
    build(&mut enc);
    assert!(!enc.skipped());
    enc.finish();
    buf
}

fn v4() -> SocketAddr {
    "203.0.113.7:40000".parse().unwrap()
}

fn v6() -> SocketAddr {
    "[2001:db8::1:2:3]:1".parse().unwrap()
}

/// A message with one raw attribute, framed correctly (length field and padding), for
/// malformed-attribute tests.
fn with_raw(kind: u16, value: &[u8]) -> Vec<u8> {
    encode(|e| {
        e.raw_attribute(kind, value);
    })
}

// ---- header -------------------------------------------------------------------------------

#[test]
fn message_type_encodes_every_class_and_all_method_bits() {
    assert_eq!(message_type(Class::Request, Method::BINDING), 0x0001);
    assert_eq!(message_type(Class::Indication, Method::BINDING), 0x0011);
    assert_eq!(
        message_type(Class::SuccessResponse, Method::BINDING),
        0x0101
    );
    assert_eq!(message_type(Class::ErrorResponse, Method::BINDING), 0x0111);
    assert_eq!(message_type(Class::Request, Method::ALLOCATE), 0x0003);
    for class in [
        Class::Request,
        Class::Indication,
        Class::SuccessResponse,
        Class::ErrorResponse,
    ] {
        for method in [0x000, 0x001, 0x0ABC, 0x0FFF, 0x0555] {
            let ty = message_type(class, Method(method));
            assert_eq!(ty & 0xC000, 0);
            assert_eq!(split_message_type(ty), (class, Method(method)));
        }
    }
}

#[test]
fn header_round_trip() {
    let mut buf = Vec::new();
    let enc = MessageEncoder::new(&mut buf, Class::Indication, Method::SEND, ID);
    assert_eq!(enc.finish(), HEADER_LEN);
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.class(), Class::Indication);
    assert_eq!(m.method(), Method::SEND);
    assert_eq!(m.transaction_id(), ID);
    assert_eq!(m.attributes().count(), 0);
    assert!(looks_like_stun(&buf));
}

#[test]
fn transaction_ids_are_random() {
    let mut rng = rand::rng();
    let a = TransactionId::random(&mut rng);
    let b = TransactionId::random(&mut rng);
    assert_ne!(a, b);
}

// ---- attribute round trips ----------------------------------------------------------------

#[test]
fn username_round_trip() {
    let buf = encode(|e| {
        e.username("remote:local");
    });
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.username(), Some("remote:local"));
    assert_eq!(m.attribute(attr::USERNAME), Some(&b"remote:local"[..]));
}

#[test]
fn address_attributes_round_trip_for_both_families() {
    for addr in [v4(), v6()] {
        let buf = encode(|e| {
            e.xor_mapped_address(addr)
                .mapped_address(addr)
                .xor_peer_address(addr)
                .xor_relayed_address(addr)
                .alternate_server(addr);
        });
        let m = Message::decode(&buf).unwrap();
        assert_eq!(m.xor_mapped_address(), Some(addr));
        assert_eq!(m.mapped_address(), Some(addr));
        assert_eq!(m.xor_peer_address(), Some(addr));
        assert_eq!(m.xor_relayed_address(), Some(addr));
        assert_eq!(m.alternate_server(), Some(addr));
        // The XOR form really is XORed on the wire.
        assert_ne!(
            m.attribute(attr::XOR_MAPPED_ADDRESS),
            m.attribute(attr::MAPPED_ADDRESS)
        );
    }
}

#[test]
fn several_peer_addresses() {
    let buf = encode(|e| {
        e.xor_peer_address(v4()).xor_peer_address(v6());
    });
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.xor_peer_addresses().collect::<Vec<_>>(), [v4(), v6()]);
    assert_eq!(m.xor_peer_address(), Some(v4()));
}

#[test]
fn ice_attributes_round_trip() {
    let buf = encode(|e| {
        e.priority(0x6e00_01ff)
            .use_candidate()
            .ice_controlling(0x0123_4567_89ab_cdef);
    });
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.priority(), Some(0x6e00_01ff));
    assert!(m.use_candidate());
    assert_eq!(m.ice_controlling(), Some(0x0123_4567_89ab_cdef));
    assert_eq!(m.ice_controlled(), None);

    let buf = encode(|e| {
        e.ice_controlled(u64::MAX);
    });
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.ice_controlled(), Some(u64::MAX));
    assert!(!m.use_candidate());
    assert_eq!(m.priority(), None);
}

#[test]
fn error_code_round_trip() {
    for (code, reason) in [
        (error_code::ROLE_CONFLICT, "Role Conflict"),
        (300, ""),
        (699, "x"),
        (error_code::UNAUTHORIZED, "Unauthenticated"),
    ] {
        let buf = encode(|e| {
            e.error_code(code, reason);
        });
        let m = Message::decode(&buf).unwrap();
        assert_eq!(m.error_code(), Some(ErrorCode { code, reason }));
    }
    assert_eq!(error_code::default_reason(487), "Role Conflict");
}

#[test]
fn text_and_turn_attributes_round_trip() {
    let buf = encode(|e| {
        e.software("jingle-ice")
            .realm("example.org")
            .nonce("abc")
            .lifetime(600)
            .data(&[1, 2, 3, 4, 5])
            .channel_number(0x4000)
            .requested_transport(17)
            .raw_attribute(0xC001, b"opaque");
    });
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.software(), Some("jingle-ice"));
    assert_eq!(m.realm(), Some("example.org"));
    assert_eq!(m.nonce(), Some("abc"));
    assert_eq!(m.lifetime(), Some(600));
    assert_eq!(m.data(), Some(&[1u8, 2, 3, 4, 5][..]));
    assert_eq!(m.channel_number(), Some(0x4000));
    assert_eq!(m.requested_transport(), Some(17));
    assert_eq!(m.attribute(0xC001), Some(&b"opaque"[..]));
    // Unknown comprehension-optional attributes are simply skipped.
    assert!(m.unknown_comprehension_required().is_empty());
}

#[test]
fn unknown_attributes_round_trip() {
    let buf = encode(|e| {
        e.unknown_attributes(&[0x7FFF, 0x0030, 0x0031]);
    });
    let m = Message::decode(&buf).unwrap();
    assert_eq!(
        m.unknown_attributes().collect::<Vec<_>>(),
        [0x7FFF, 0x0030, 0x0031]
    );
}

#[test]
fn padding_is_written_and_skipped() {
    let buf = encode(|e| {
        e.padding_byte(0xAA).username("abcde").priority(7);
    });
    assert_eq!(buf.len(), HEADER_LEN + 4 + 8 + 4 + 4);
    assert_eq!(&buf[HEADER_LEN + 9..HEADER_LEN + 12], &[0xAA; 3]);
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.username(), Some("abcde"));
    assert_eq!(m.priority(), Some(7));
}

#[test]
fn first_occurrence_counts() {
    let buf = encode(|e| {
        e.priority(1).priority(2);
    });
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.priority(), Some(1));
    assert_eq!(m.attributes().count(), 2);
}

// ---- integrity and fingerprint --------------------------------------------------------------

#[test]
fn message_integrity_round_trip() {
    let buf = encode(|e| {
        e.username("a:b").message_integrity(KEY).fingerprint();
    });
    let m = Message::decode(&buf).unwrap();
    assert!(m.has_message_integrity());
    assert!(m.has_fingerprint());
    assert_eq!(m.verify_integrity(KEY), Ok(()));
    assert_eq!(m.verify_integrity(b"other"), Err(IntegrityError::Mismatch));
}

#[test]
fn integrity_missing() {
    let buf = encode(|e| {
        e.username("a:b").fingerprint();
    });
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.verify_integrity(KEY), Err(IntegrityError::Missing));
}

#[test]
fn tampering_breaks_integrity() {
    let buf = encode(|e| {
        e.priority(5).message_integrity(KEY);
    });
    let mut tampered = buf.clone();
    tampered[HEADER_LEN + 7] ^= 1;
    let m = Message::decode(&tampered).unwrap();
    assert_eq!(m.priority(), Some(4));
    assert_eq!(m.verify_integrity(KEY), Err(IntegrityError::Mismatch));
}

#[test]
fn sha256_integrity_is_preferred_and_checked() {
    let buf = encode(|e| {
        e.username("a:b")
            .message_integrity(b"sha1 key")
            .message_integrity_sha256(KEY)
            .fingerprint();
    });
    let m = Message::decode(&buf).unwrap();
    assert!(m.has_message_integrity());
    assert!(m.has_message_integrity_sha256());
    assert_eq!(
        m.attribute(attr::MESSAGE_INTEGRITY_SHA256).unwrap().len(),
        32
    );
    assert_eq!(m.verify_integrity(KEY), Ok(()));
    assert_eq!(
        m.verify_integrity(b"sha1 key"),
        Err(IntegrityError::Mismatch)
    );

    let only = encode(|e| {
        e.software("x").message_integrity_sha256(KEY);
    });
    let m = Message::decode(&only).unwrap();
    assert!(!m.has_message_integrity());
    assert_eq!(m.verify_integrity(KEY), Ok(()));
}

#[test]
fn truncated_sha256_integrity_verifies() {
    // RFC 8489 §14.6 lets the HMAC be truncated to 16..=32 bytes, a multiple of 4.
    let mut buf = encode(|e| {
        e.username("a:b");
    });
    let body = (buf.len() - HEADER_LEN + 4 + 16) as u16;
    buf[2..4].copy_from_slice(&body.to_be_bytes());
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(KEY).unwrap();
    mac.update(&buf);
    let tag = mac.finalize().into_bytes();
    buf.extend_from_slice(&attr::MESSAGE_INTEGRITY_SHA256.to_be_bytes());
    buf.extend_from_slice(&16u16.to_be_bytes());
    buf.extend_from_slice(&tag[..16]);
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.verify_integrity(KEY), Ok(()));
    assert_eq!(m.verify_integrity(b"nope"), Err(IntegrityError::Mismatch));
}

#[test]
fn attributes_after_integrity_are_ignored() {
    let buf = encode(|e| {
        e.priority(9)
            .message_integrity(KEY)
            .username("late:user")
            .raw_attribute(0x7777, b"")
            .raw_attribute(attr::PRIORITY, b"bad")
            .fingerprint();
    });
    let m = Message::decode(&buf).expect("malformed attributes after MI are not checked");
    assert_eq!(m.username(), None);
    assert_eq!(m.priority(), Some(9));
    assert!(m.unknown_comprehension_required().is_empty());
    assert_eq!(m.attributes().count(), 6);
    assert!(m.has_fingerprint());
    // The HMAC covers only what precedes it.
    assert_eq!(m.verify_integrity(KEY), Ok(()));
}

#[test]
fn repeated_attributes_read_their_first_occurrence() {
    // Indexed kinds (USERNAME, PRIORITY, SOFTWARE, ...) and unindexed ones (LIFETIME) alike.
    let buf = encode(|e| {
        e.username("first:user")
            .priority(1)
            .software("one")
            .lifetime(10)
            .username("second:user")
            .priority(2)
            .software("two")
            .lifetime(20)
            .fingerprint();
    });
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.username(), Some("first:user"));
    assert_eq!(m.priority(), Some(1));
    assert_eq!(m.software(), Some("one"));
    assert_eq!(m.lifetime(), Some(10));
    assert_eq!(m.attribute(attr::USERNAME), Some(&b"first:user"[..]));
    assert_eq!(m.attributes_of(attr::PRIORITY).count(), 2);
    assert_eq!(m.ice_controlling(), None);
    assert!(!m.use_candidate());

    // A malformed second occurrence still fails decoding, although only the first is read.
    let buf = encode(|e| {
        e.username("ok:user")
            .raw_attribute(attr::USERNAME, &[0xFF, 0xFE])
            .fingerprint();
    });
    assert!(matches!(
        Message::decode(&buf),
        Err(DecodeError::InvalidUtf8 { .. })
    ));
}

#[test]
fn fingerprint_mismatch_is_a_decode_error() {
    let mut buf = encode(|e| {
        e.software("x").fingerprint();
    });
    let last = buf.len() - 1;
    buf[last] ^= 0xFF;
    assert!(matches!(
        Message::decode(&buf),
        Err(DecodeError::FingerprintMismatch { .. })
    ));
    // A flipped bit elsewhere is caught by the fingerprint too.
    let mut buf = encode(|e| {
        e.software("xyz").fingerprint();
    });
    buf[HEADER_LEN + 5] ^= 0x01;
    assert!(matches!(
        Message::decode(&buf),
        Err(DecodeError::FingerprintMismatch { .. })
    ));
}

#[test]
fn fingerprint_must_be_last() {
    let buf = encode(|e| {
        e.fingerprint().priority(1);
    });
    assert_eq!(
        Message::decode(&buf).unwrap_err(),
        DecodeError::FingerprintNotLast
    );
}

#[test]
fn long_term_key_is_md5_of_user_realm_password() {
    // MD5("user:realm:pass") computed independently.
    let key = long_term_key("user", "realm", "pass");
    assert_eq!(
        key,
        [
            0x84, 0x93, 0xfb, 0xc5, 0x3b, 0xa5, 0x82, 0xfb, 0x4c, 0x04, 0x4c, 0x45, 0x6b, 0xdc,
            0x40, 0xeb
        ]
    );
}

// ---- malformed input -----------------------------------------------------------------------

#[test]
fn header_errors() {
    let good = encode(|e| {
        e.priority(1);
    });
    assert_eq!(
        Message::decode(&good[..19]).unwrap_err(),
        DecodeError::TooShort(19)
    );
    assert_eq!(Message::decode(&[]).unwrap_err(), DecodeError::TooShort(0));

    let mut bad = good.clone();
    bad[0] |= 0x80;
    assert_eq!(Message::decode(&bad).unwrap_err(), DecodeError::NotStun);
    let mut bad = good.clone();
    bad[0] |= 0x40;
    assert_eq!(Message::decode(&bad).unwrap_err(), DecodeError::NotStun);

    let mut bad = good.clone();
    bad[4] = 0;
    assert_eq!(
        Message::decode(&bad).unwrap_err(),
        DecodeError::BadMagicCookie(0x0012_A442)
    );

    let mut bad = good.clone();
    bad[3] = 9;
    assert_eq!(
        Message::decode(&bad).unwrap_err(),
        DecodeError::UnalignedLength(9)
    );

    // A datagram longer than the message is an error: one datagram, one message.
    let mut longer = good.clone();
    longer.extend_from_slice(&[0; 4]);
    assert_eq!(
        Message::decode(&longer).unwrap_err(),
        DecodeError::LengthMismatch {
            declared: 8,
            actual: 12
        }
    );
    assert_eq!(
        Message::decode(&good[..24]).unwrap_err(),
        DecodeError::LengthMismatch {
            declared: 8,
            actual: 4
        }
    );
}

#[test]
fn attribute_overrun() {
    let mut buf = encode(|e| {
        e.priority(1);
    });
    // Claim 8 bytes of value where 4 are.
    buf[HEADER_LEN + 3] = 8;
    assert_eq!(
        Message::decode(&buf).unwrap_err(),
        DecodeError::AttributeOverrun {
            kind: attr::PRIORITY,
            len: 8,
            offset: HEADER_LEN
        }
    );
    // A length whose padding runs past the end.
    let mut buf = encode(|e| {
        e.priority(1);
    });
    buf[HEADER_LEN + 3] = 5;
    assert!(matches!(
        Message::decode(&buf),
        Err(DecodeError::AttributeOverrun { .. })
    ));
}

fn bad_length(kind: u16, value: &[u8]) {
    assert_eq!(
        Message::decode(&with_raw(kind, value)).unwrap_err(),
        DecodeError::BadAttributeLength {
            kind,
            len: value.len()
        },
        "attribute {kind:#06x} with {} bytes",
        value.len()
    );
}

#[test]
fn fixed_size_attributes_with_wrong_lengths() {
    bad_length(attr::PRIORITY, &[0; 3]);
    bad_length(attr::PRIORITY, &[0; 8]);
    bad_length(attr::ICE_CONTROLLING, &[0; 4]);
    bad_length(attr::ICE_CONTROLLED, &[0; 12]);
    bad_length(attr::USE_CANDIDATE, &[0; 1]);
    bad_length(attr::LIFETIME, &[0; 2]);
    bad_length(attr::CHANNEL_NUMBER, &[0; 8]);
    bad_length(attr::REQUESTED_TRANSPORT, &[17]);
    bad_length(attr::DONT_FRAGMENT, &[0; 4]);
    bad_length(attr::EVEN_PORT, &[0; 4]);
    bad_length(attr::RESERVATION_TOKEN, &[0; 4]);
    bad_length(attr::USERHASH, &[0; 20]);
    bad_length(attr::UNKNOWN_ATTRIBUTES, &[0; 3]);
    bad_length(attr::ERROR_CODE, &[0; 3]);
    bad_length(attr::MESSAGE_INTEGRITY, &[0; 16]);
    bad_length(attr::MESSAGE_INTEGRITY_SHA256, &[0; 12]);
    bad_length(attr::MESSAGE_INTEGRITY_SHA256, &[0; 18]);
    bad_length(attr::MESSAGE_INTEGRITY_SHA256, &[0; 36]);
    bad_length(attr::FINGERPRINT, &[0; 8]);
    bad_length(attr::PASSWORD_ALGORITHM, &[0, 1, 0]);
    bad_length(attr::PASSWORD_ALGORITHM, &[0, 1, 0, 8, 0, 0]);
    bad_length(attr::PASSWORD_ALGORITHMS, &[0, 1, 0, 0, 0, 2]);
}

#[test]
fn password_algorithms_are_accepted() {
    let value = [0, 2, 0, 0, 0, 1, 0, 0];
    Message::decode(&with_raw(attr::PASSWORD_ALGORITHMS, &value)).unwrap();
    Message::decode(&with_raw(attr::PASSWORD_ALGORITHM, &value[..4])).unwrap();
}

#[test]
fn bad_addresses() {
    for (value, family) in [
        (&[0u8, 3, 0, 1, 1, 2, 3, 4][..], 3u8),
        (&[0, 1, 0, 1, 1, 2, 3][..], 1),
        (&[0, 1, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8][..], 1),
        (&[0, 2, 0, 1, 1, 2, 3, 4][..], 2),
        (&[0][..], 0),
        (&[][..], 0),
    ] {
        for kind in [
            attr::MAPPED_ADDRESS,
            attr::XOR_MAPPED_ADDRESS,
            attr::XOR_PEER_ADDRESS,
            attr::XOR_RELAYED_ADDRESS,
            attr::ALTERNATE_SERVER,
        ] {
            assert_eq!(
                Message::decode(&with_raw(kind, value)).unwrap_err(),
                DecodeError::BadAddress {
                    kind,
                    family,
                    len: value.len()
                }
            );
        }
    }
}

#[test]
fn bad_text() {
    for kind in [
        attr::USERNAME,
        attr::REALM,
        attr::NONCE,
        attr::SOFTWARE,
        attr::ALTERNATE_DOMAIN,
    ] {
        assert_eq!(
            Message::decode(&with_raw(kind, &[0x61, 0xFF, 0x62])).unwrap_err(),
            DecodeError::InvalidUtf8 { kind }
        );
    }
    let long = [b'a'; 513];
    assert_eq!(
        Message::decode(&with_raw(attr::USERNAME, &long)).unwrap_err(),
        DecodeError::AttributeTooLong {
            kind: attr::USERNAME,
            len: 513,
            max: 512
        }
    );
    Message::decode(&with_raw(attr::USERNAME, &long[..512])).unwrap();
    let long = [b'a'; 764];
    assert!(matches!(
        Message::decode(&with_raw(attr::SOFTWARE, &long)),
        Err(DecodeError::AttributeTooLong { max: 763, .. })
    ));
    assert_eq!(
        Message::decode(&with_raw(attr::ERROR_CODE, &[0, 0, 4, 0, 0xC3])).unwrap_err(),
        DecodeError::InvalidUtf8 {
            kind: attr::ERROR_CODE
        }
    );
}

#[test]
fn bad_error_codes() {
    for (class, number) in [(2u8, 0u8), (7, 0), (0, 0), (4, 100), (6, 255)] {
        assert_eq!(
            Message::decode(&with_raw(attr::ERROR_CODE, &[0, 0, class, number])).unwrap_err(),
            DecodeError::BadErrorCode { class, number }
        );
    }
    // Reserved bits above the class are ignored.
    let m_buf = with_raw(attr::ERROR_CODE, &[0xFF, 0xFF, 0xFC, 20]);
    let m = Message::decode(&m_buf).unwrap();
    assert_eq!(m.error_code().unwrap().code, 420);
}

#[test]
fn looks_like_stun_checks() {
    let good = encode(|e| {
        e.software("x");
    });
    assert!(looks_like_stun(&good));
    assert!(!looks_like_stun(&good[..good.len() - 4]));
    assert!(!looks_like_stun(&good[..10]));
    assert!(!looks_like_stun(&[]));
    let mut rtp = good.clone();
    rtp[0] = 0x80;
    assert!(!looks_like_stun(&rtp));
    let mut bad = good.clone();
    bad[5] ^= 1;
    assert!(!looks_like_stun(&bad));
}

// ---- 420 flow ------------------------------------------------------------------------------

#[test]
fn unknown_comprehension_required_attributes_get_a_420() {
    let request = encode(|e| {
        e.username("a:b")
            .raw_attribute(0x7FFF, b"?")
            .raw_attribute(0xC0DE, b"optional is fine")
            .raw_attribute(0x0030, b"")
            .raw_attribute(0x7FFF, b"again")
            .message_integrity(KEY)
            .fingerprint();
    });
    let m = Message::decode(&request).unwrap();
    assert_eq!(m.unknown_comprehension_required(), &[0x7FFF, 0x0030]);
    assert_eq!(m.username(), Some("a:b"));

    // The server's answer (RFC 8489 §6.3.1.1).
    let mut out = Vec::new();
    let mut enc = MessageEncoder::new(
        &mut out,
        Class::ErrorResponse,
        m.method(),
        m.transaction_id(),
    );
    enc.error_code(
        error_code::UNKNOWN_ATTRIBUTE,
        error_code::default_reason(error_code::UNKNOWN_ATTRIBUTE),
    )
    .unknown_attributes(m.unknown_comprehension_required())
    .message_integrity(KEY)
    .fingerprint();
    enc.finish();
    let answer = Message::decode(&out).unwrap();
    assert_eq!(answer.class(), Class::ErrorResponse);
    assert_eq!(answer.transaction_id(), ID);
    assert_eq!(
        answer.error_code(),
        Some(ErrorCode {
            code: 420,
            reason: "Unknown Attribute"
        })
    );
    assert_eq!(
        answer.unknown_attributes().collect::<Vec<_>>(),
        [0x7FFF, 0x0030]
    );
    assert_eq!(answer.verify_integrity(KEY), Ok(()));
}

#[test]
fn unknown_list_is_bounded() {
    let buf = encode(|e| {
        for kind in 0x0100..0x0140 {
            e.raw_attribute(kind, b"");
        }
    });
    let m = Message::decode(&buf).unwrap();
    let expected: Vec<u16> = (0x0100..0x0100 + MAX_UNKNOWN_ATTRIBUTES as u16).collect();
    assert_eq!(m.unknown_comprehension_required(), &expected[..]);
}

// ---- encoder limits ------------------------------------------------------------------------

#[test]
fn encoder_skips_what_the_decoder_would_reject() {
    let mut buf = Vec::new();
    let mut enc = MessageEncoder::new(&mut buf, Class::Request, Method::BINDING, ID);
    enc.username(&"u".repeat(513));
    assert!(enc.skipped());
    enc.finish();
    assert_eq!(buf.len(), HEADER_LEN);

    for code in [0u16, 299, 700, 1000] {
        let mut enc = MessageEncoder::new(&mut buf, Class::ErrorResponse, Method::BINDING, ID);
        enc.error_code(code, "x");
        assert!(enc.skipped());
        enc.finish();
        Message::decode(&buf).unwrap();
    }

    let big = vec![7u8; 70_000];
    let mut enc = MessageEncoder::new(&mut buf, Class::Indication, Method::DATA, ID);
    enc.data(&big[..65_000]);
    assert!(!enc.skipped());
    enc.data(&big[..1_000]).data(&big);
    assert!(enc.skipped());
    enc.fingerprint();
    enc.finish();
    let m = Message::decode(&buf).unwrap();
    assert_eq!(m.data().map(<[u8]>::len), Some(65_000));
    assert!(m.has_fingerprint());
}

#[test]
fn encoder_reuses_the_buffer() {
    let mut buf = Vec::with_capacity(256);
    let capacity = buf.capacity();
    for i in 0..10u32 {
        let mut enc = MessageEncoder::new(&mut buf, Class::Request, Method::BINDING, ID);
        enc.priority(i)
            .username("a:b")
            .message_integrity(KEY)
            .fingerprint();
        enc.finish();
        assert_eq!(Message::decode(&buf).unwrap().priority(), Some(i));
    }
    assert_eq!(buf.capacity(), capacity);
}

// ---- client transaction --------------------------------------------------------------------

/// Drives a transaction with exact wake-ups; returns the transmission times and the timeout
/// time, in ms from the start.
fn run(config: RetransmitConfig) -> (Vec<u64>, u64) {
    let start = Instant::now();
    let mut t = ClientTransaction::new(ID, config, start);
    let mut sent = Vec::new();
    let mut now = start;
    for _ in 0..1000 {
        while t.poll_transmit(now) {
            sent.push((now - start).as_millis() as u64);
        }
        t.handle_timeout(now);
        match t.poll_timeout() {
            Some(next) => {
                assert!(next >= now);
                now = next;
            }
            None => break,
        }
    }
    assert_eq!(t.state(), TransactionState::TimedOut);
    assert_eq!(t.transmits(), config.max_transmits.max(1));
    (sent, (now - start).as_millis() as u64)
}

#[test]
fn default_retransmissions_follow_rfc_8489_example() {
    let (sent, timeout) = run(RetransmitConfig::default());
    assert_eq!(sent, [0, 500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(timeout, 39500);
}

#[test]
fn capped_rto() {
    let config = RetransmitConfig {
        max_rto: Some(Duration::from_millis(1600)),
        ..RetransmitConfig::default()
    };
    let (sent, timeout) = run(config);
    assert_eq!(sent, [0, 500, 1500, 3100, 4700, 6300, 7900]);
    assert_eq!(timeout, 7900 + 16 * 500);

    let config = RetransmitConfig {
        rto: Duration::from_millis(100),
        max_transmits: 3,
        last_wait_factor: 2,
        max_rto: Some(Duration::from_millis(100)),
    };
    let (sent, timeout) = run(config);
    assert_eq!(sent, [0, 100, 200]);
    assert_eq!(timeout, 400);
}

#[test]
fn single_transmission() {
    let config = RetransmitConfig {
        max_transmits: 0,
        ..RetransmitConfig::default()
    };
    let (sent, timeout) = run(config);
    assert_eq!(sent, [0]);
    assert_eq!(timeout, 8000);
}

#[test]
fn transaction_completes_and_stops() {
    let start = Instant::now();
    let mut t = ClientTransaction::new(ID, RetransmitConfig::default(), start);
    assert_eq!(t.id(), ID);
    assert_eq!(t.poll_timeout(), Some(start));
    assert!(t.poll_transmit(start));
    assert!(!t.poll_transmit(start));
    assert_eq!(t.poll_timeout(), Some(start + Duration::from_millis(500)));
    // Not yet due.
    assert!(!t.poll_transmit(start + Duration::from_millis(499)));
    t.handle_timeout(start + Duration::from_millis(499));
    assert_eq!(t.state(), TransactionState::Pending);
    t.complete();
    assert_eq!(t.state(), TransactionState::Completed);
    assert_eq!(t.poll_timeout(), None);
    assert!(!t.poll_transmit(start + Duration::from_secs(100)));
    t.handle_timeout(start + Duration::from_secs(100));
    assert_eq!(t.state(), TransactionState::Completed);
    assert_eq!(t.transmits(), 1);
}

#[test]
fn late_polling_sends_once_and_reschedules_from_now() {
    let start = Instant::now();
    let mut t = ClientTransaction::new(ID, RetransmitConfig::default(), start);
    assert!(t.poll_transmit(start));
    let late = start + Duration::from_millis(2000);
    assert!(t.poll_transmit(late));
    assert!(!t.poll_transmit(late));
    assert_eq!(t.poll_timeout(), Some(late + Duration::from_millis(1000)));
    // A timeout call before the last transmission does not end the transaction.
    t.handle_timeout(late + Duration::from_secs(1000));
    assert_eq!(t.state(), TransactionState::Pending);
}
