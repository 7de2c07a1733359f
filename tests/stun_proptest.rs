//! Property tests of the STUN codec: any byte string, and any mutation of a valid packet
//! (bit flips, truncation, length field changes, attribute splicing), decodes to an error or
//! a message without panicking, and every getter of a decoded message works; valid encoder
//! output always decodes back to the same attributes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use jingle_ice::stun::{
    attr, looks_like_stun, Class, Message, MessageEncoder, Method, TransactionId, HEADER_LEN,
    MAGIC_COOKIE,
};
use proptest::prelude::*;
use proptest::sample::Index;

const KEY: &[u8] = b"proptest key";

/// Calls every getter of a decoded message, as a receiver would.
fn exercise(m: &Message<'_>) {
    let _ = (m.class(), m.method(), m.transaction_id(), m.raw().len());
    for a in m.attributes() {
        let _ = (a.kind, a.value.len());
        let _ = m.attribute(a.kind);
    }
    let _ = m.username();
    let _ = m.xor_mapped_address();
    let _ = m.mapped_address();
    let _ = m.xor_peer_address();
    let _ = m.xor_peer_addresses().count();
    let _ = m.xor_relayed_address();
    let _ = m.alternate_server();
    let _ = m.priority();
    let _ = m.use_candidate();
    let _ = m.ice_controlling();
    let _ = m.ice_controlled();
    let _ = m.error_code();
    let _ = m.unknown_attributes().count();
    let _ = m.software();
    let _ = m.realm();
    let _ = m.nonce();
    let _ = m.alternate_domain();
    let _ = m.lifetime();
    let _ = m.channel_number();
    let _ = m.requested_transport();
    let _ = m.data();
    let _ = m.has_fingerprint();
    let _ = m.has_message_integrity();
    let _ = m.has_message_integrity_sha256();
    let _ = m.verify_integrity(KEY);
    let _ = m.unknown_comprehension_required();
}

fn decode_any(bytes: &[u8]) {
    let quick = looks_like_stun(bytes);
    match Message::decode(bytes) {
        Ok(m) => {
            assert!(quick, "a decodable message passes the quick check");
            exercise(&m);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// One attribute the encoder can write, with what the decoder should give back.
#[derive(Debug, Clone)]
enum Attr {
    Username(String),
    XorMapped(SocketAddr),
    Mapped(SocketAddr),
    XorPeer(SocketAddr),
    XorRelayed(SocketAddr),
    Priority(u32),
    UseCandidate,
    Controlling(u64),
    Controlled(u64),
    Error(u16, String),
    Unknown(Vec<u16>),
    Software(String),
    Realm(String),
    Nonce(String),
    Lifetime(u32),
    Data(Vec<u8>),
    /// An unknown comprehension-optional attribute (0xC000-0xFFFF).
    Optional(u16, Vec<u8>),
}

impl Attr {
    fn kind(&self) -> u16 {
        match self {
            Attr::Username(_) => attr::USERNAME,
            Attr::XorMapped(_) => attr::XOR_MAPPED_ADDRESS,
            Attr::Mapped(_) => attr::MAPPED_ADDRESS,
            Attr::XorPeer(_) => attr::XOR_PEER_ADDRESS,
            Attr::XorRelayed(_) => attr::XOR_RELAYED_ADDRESS,
            Attr::Priority(_) => attr::PRIORITY,
            Attr::UseCandidate => attr::USE_CANDIDATE,
            Attr::Controlling(_) => attr::ICE_CONTROLLING,
            Attr::Controlled(_) => attr::ICE_CONTROLLED,
            Attr::Error(..) => attr::ERROR_CODE,
            Attr::Unknown(_) => attr::UNKNOWN_ATTRIBUTES,
            Attr::Software(_) => attr::SOFTWARE,
            Attr::Realm(_) => attr::REALM,
            Attr::Nonce(_) => attr::NONCE,
            Attr::Lifetime(_) => attr::LIFETIME,
            Attr::Data(_) => attr::DATA,
            Attr::Optional(kind, _) => *kind,
        }
    }

    fn write(&self, e: &mut MessageEncoder<'_>) {
        match self {
            Attr::Username(v) => e.username(v),
            Attr::XorMapped(a) => e.xor_mapped_address(*a),
            Attr::Mapped(a) => e.mapped_address(*a),
            Attr::XorPeer(a) => e.xor_peer_address(*a),
            Attr::XorRelayed(a) => e.xor_relayed_address(*a),
            Attr::Priority(v) => e.priority(*v),
            Attr::UseCandidate => e.use_candidate(),
            Attr::Controlling(v) => e.ice_controlling(*v),
            Attr::Controlled(v) => e.ice_controlled(*v),
            Attr::Error(code, reason) => e.error_code(*code, reason),
            Attr::Unknown(kinds) => e.unknown_attributes(kinds),
            Attr::Software(v) => e.software(v),
            Attr::Realm(v) => e.realm(v),
            Attr::Nonce(v) => e.nonce(v),
            Attr::Lifetime(v) => e.lifetime(*v),
            Attr::Data(v) => e.data(v),
            Attr::Optional(kind, v) => e.raw_attribute(*kind, v),
        };
    }

    /// Checks that the decoded message gives this attribute back (it is the first of its
    /// type in the message).
    fn check(&self, m: &Message<'_>) {
        match self {
            Attr::Username(v) => assert_eq!(m.username(), Some(v.as_str())),
            Attr::XorMapped(a) => assert_eq!(m.xor_mapped_address(), Some(*a)),
            Attr::Mapped(a) => assert_eq!(m.mapped_address(), Some(*a)),
            Attr::XorPeer(a) => assert_eq!(m.xor_peer_address(), Some(*a)),
            Attr::XorRelayed(a) => assert_eq!(m.xor_relayed_address(), Some(*a)),
            Attr::Priority(v) => assert_eq!(m.priority(), Some(*v)),
            Attr::UseCandidate => assert!(m.use_candidate()),
            Attr::Controlling(v) => assert_eq!(m.ice_controlling(), Some(*v)),
            Attr::Controlled(v) => assert_eq!(m.ice_controlled(), Some(*v)),
            Attr::Error(code, reason) => {
                let e = m.error_code().expect("error code");
                assert_eq!((e.code, e.reason), (*code, reason.as_str()));
            }
            Attr::Unknown(kinds) => assert_eq!(&m.unknown_attributes().collect::<Vec<_>>(), kinds),
            Attr::Software(v) => assert_eq!(m.software(), Some(v.as_str())),
            Attr::Realm(v) => assert_eq!(m.realm(), Some(v.as_str())),
            Attr::Nonce(v) => assert_eq!(m.nonce(), Some(v.as_str())),
            Attr::Lifetime(v) => assert_eq!(m.lifetime(), Some(*v)),
            Attr::Data(v) => assert_eq!(m.data(), Some(v.as_slice())),
            Attr::Optional(kind, v) => assert_eq!(m.attribute(*kind), Some(v.as_slice())),
        }
    }
}

fn address() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,40}", "\\PC{0,24}"]
}

fn attribute() -> impl Strategy<Value = Attr> {
    prop_oneof![
        text().prop_map(Attr::Username),
        address().prop_map(Attr::XorMapped),
        address().prop_map(Attr::Mapped),
        address().prop_map(Attr::XorPeer),
        address().prop_map(Attr::XorRelayed),
        any::<u32>().prop_map(Attr::Priority),
        Just(Attr::UseCandidate),
        any::<u64>().prop_map(Attr::Controlling),
        any::<u64>().prop_map(Attr::Controlled),
        (300u16..700, text()).prop_map(|(c, r)| Attr::Error(c, r)),
        prop::collection::vec(any::<u16>(), 0..8).prop_map(Attr::Unknown),
        text().prop_map(Attr::Software),
        text().prop_map(Attr::Realm),
        text().prop_map(Attr::Nonce),
        any::<u32>().prop_map(Attr::Lifetime),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Attr::Data),
        (
            0xC000u16..=0xFFFF,
            prop::collection::vec(any::<u8>(), 0..24)
        )
            .prop_map(|(k, v)| Attr::Optional(k, v)),
    ]
}

/// A valid message: its attributes, whether it has MESSAGE-INTEGRITY(-SHA256) and FINGERPRINT.
#[derive(Debug, Clone)]
struct Spec {
    class: Class,
    method: u16,
    id: [u8; 12],
    attrs: Vec<Attr>,
    integrity: bool,
    integrity_sha256: bool,
    fingerprint: bool,
    padding: u8,
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![
        Just(Class::Request),
        Just(Class::Indication),
        Just(Class::SuccessResponse),
        Just(Class::ErrorResponse),
    ]
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        class(),
        0u16..0x1000,
        any::<[u8; 12]>(),
        prop::collection::vec(attribute(), 0..10),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<u8>(),
    )
        .prop_map(
            |(class, method, id, attrs, integrity, integrity_sha256, fingerprint, padding)| Spec {
                class,
                method,
                id,
                attrs,
                integrity,
                integrity_sha256,
                fingerprint,
                padding,
            },
        )
}

fn build(spec: &Spec) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut e = MessageEncoder::new(
        &mut buf,
        spec.class,
        Method(spec.method),
        TransactionId(spec.id),
    );
    e.padding_byte(spec.padding);
    for a in &spec.attrs {
        a.write(&mut e);
    }
    if spec.integrity {
        e.message_integrity(KEY);
    }
    if spec.integrity_sha256 {
        e.message_integrity_sha256(KEY);
    }
    if spec.fingerprint {
        e.fingerprint();
    }
    assert!(!e.skipped());
    e.finish();
    buf
}

/// Ways to damage a packet.
#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(Index, u8),
    SetByte(Index, u8),
    Truncate(Index),
    /// Overwrite the header's length field.
    SetLength(u16),
    /// Make the header's length field agree with the buffer again.
    FixLength,
    /// Overwrite the 16-bit word at a 4-aligned offset + 2 (an attribute length, if an
    /// attribute header sits there).
    SetAttributeLength(Index, u16),
    /// Insert a raw attribute (type, length, value; padded or not) at a 4-aligned offset.
    Splice(Index, u16, u16, Vec<u8>),
    /// Copy a 4-aligned chunk of the packet to another 4-aligned place.
    Duplicate(Index, Index, u8),
    Append(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        any::<Index>().prop_map(Mutation::Truncate),
        any::<u16>().prop_map(Mutation::SetLength),
        Just(Mutation::FixLength),
        (any::<Index>(), any::<u16>()).prop_map(|(i, l)| Mutation::SetAttributeLength(i, l)),
        (
            any::<Index>(),
            prop_oneof![any::<u16>(), 0u16..0x30, Just(attr::FINGERPRINT)],
            0u16..48,
            prop::collection::vec(any::<u8>(), 0..48)
        )
            .prop_map(|(i, k, l, v)| Mutation::Splice(i, k, l, v)),
        (any::<Index>(), any::<Index>(), 1u8..8).prop_map(|(a, b, n)| Mutation::Duplicate(a, b, n)),
        prop::collection::vec(any::<u8>(), 0..12).prop_map(Mutation::Append),
    ]
}

fn aligned(i: &Index, len: usize) -> usize {
    let words = len.saturating_sub(HEADER_LEN) / 4;
    HEADER_LEN + 4 * i.index(words + 1)
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    match m {
        Mutation::FlipBit(i, bit) if !buf.is_empty() => {
            let at = i.index(buf.len());
            buf[at] ^= 1 << bit;
        }
        Mutation::SetByte(i, b) if !buf.is_empty() => {
            let at = i.index(buf.len());
            buf[at] = *b;
        }
        Mutation::Truncate(i) => {
            let to = i.index(buf.len() + 1);
            buf.truncate(to);
        }
        Mutation::SetLength(len) if buf.len() >= 4 => {
            buf[2..4].copy_from_slice(&len.to_be_bytes());
        }
        Mutation::FixLength if buf.len() >= HEADER_LEN => {
            let len = (buf.len() - HEADER_LEN) as u16;
            buf[2..4].copy_from_slice(&len.to_be_bytes());
        }
        Mutation::SetAttributeLength(i, len) if buf.len() > HEADER_LEN => {
            let at = aligned(i, buf.len()) + 2;
            if at + 2 <= buf.len() {
                buf[at..at + 2].copy_from_slice(&len.to_be_bytes());
            }
        }
        Mutation::Splice(i, kind, len, value) if buf.len() >= HEADER_LEN => {
            let at = aligned(i, buf.len()).min(buf.len());
            let mut raw = Vec::new();
            raw.extend_from_slice(&kind.to_be_bytes());
            raw.extend_from_slice(&len.to_be_bytes());
            raw.extend_from_slice(value);
            buf.splice(at..at, raw);
        }
        Mutation::Duplicate(from, to, words) if buf.len() > HEADER_LEN => {
            let start = aligned(from, buf.len()).min(buf.len());
            let end = (start + 4 * usize::from(*words)).min(buf.len());
            let chunk = buf[start..end].to_vec();
            let at = aligned(to, buf.len()).min(buf.len());
            buf.splice(at..at, chunk);
        }
        Mutation::Append(bytes) => buf.extend_from_slice(bytes),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        decode_any(&bytes);
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic(
        ty in 0u16..0x4000,
        id in any::<[u8; 12]>(),
        words in prop::collection::vec(any::<[u8; 4]>(), 0..40),
        small_lengths in any::<bool>(),
    ) {
        let mut buf = Vec::new();
        buf.extend_from_slice(&ty.to_be_bytes());
        buf.extend_from_slice(&((words.len() * 4) as u16).to_be_bytes());
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&id);
        for w in &words {
            buf.extend_from_slice(w);
        }
        if small_lengths {
            // Attribute-like framing: make the length halves of words small so the walk goes deep.
            let mut i = HEADER_LEN + 2;
            while i + 2 <= buf.len() {
                buf[i] = 0;
                buf[i + 1] &= 0x0C;
                i += 4 + usize::from(buf[i + 1]);
                i = (i + 3) & !3;
                i += 2;
            }
        }
        decode_any(&buf);
    }

    #[test]
    fn mutated_packets_never_panic(
        spec in spec(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        let mut buf = build(&spec);
        for m in &mutations {
            apply(&mut buf, m);
            decode_any(&buf);
        }
    }

    #[test]
    fn encoder_output_decodes_to_the_same_attributes(spec in spec()) {
        let buf = build(&spec);
        prop_assert!(looks_like_stun(&buf));
        let m = Message::decode(&buf).expect("encoder output decodes");
        prop_assert_eq!(m.class(), spec.class);
        prop_assert_eq!(m.method(), Method(spec.method));
        prop_assert_eq!(m.transaction_id(), TransactionId(spec.id));
        let mut expected: Vec<u16> = spec.attrs.iter().map(Attr::kind).collect();
        if spec.integrity {
            expected.push(attr::MESSAGE_INTEGRITY);
        }
        if spec.integrity_sha256 {
            expected.push(attr::MESSAGE_INTEGRITY_SHA256);
        }
        if spec.fingerprint {
            expected.push(attr::FINGERPRINT);
        }
        prop_assert_eq!(m.attributes().map(|a| a.kind).collect::<Vec<_>>(), expected);
        let mut seen = Vec::new();
        for a in &spec.attrs {
            if !seen.contains(&a.kind()) {
                seen.push(a.kind());
                a.check(&m);
            }
        }
        prop_assert!(m.unknown_comprehension_required().is_empty());
        prop_assert_eq!(m.has_fingerprint(), spec.fingerprint);
        if spec.integrity || spec.integrity_sha256 {
            prop_assert_eq!(m.verify_integrity(KEY), Ok(()));
            prop_assert!(m.verify_integrity(b"another key").is_err());
        } else {
            prop_assert!(m.verify_integrity(KEY).is_err());
        }
        exercise(&m);
    }
}
