//! STUN codec benchmark: the RFC 5769 §2.1 sample request parsed, its MESSAGE-INTEGRITY
//! checked and a request with its ICE attributes (PRIORITY, ICE-CONTROLLED, USERNAME,
//! MESSAGE-INTEGRITY, FINGERPRINT) encoded, in ns per message, by our codec
//! (`jingle_ice::stun`) and by str0m's `is` 0.12 crate, measured side by side in the same run.
//!
//! SOFTWARE is read but not re-encoded: `is` 0.12 knows SOFTWARE as type 0x0022 instead of
//! 0x8022 (RFC 8489 §18.3), so it skips the vector's SOFTWARE as unknown, and its encoder
//! never writes SOFTWARE at all. Both encoders therefore write the same 88-byte request.
//! `is` does not check FINGERPRINT when it parses; ours does (in `Message::decode`).
//!
//! `cargo bench --bench stun` prints the table; `cargo test --all-targets` runs each step once.

mod common;

use std::hint::black_box;

use common::{compare_ns, ratio, Table};
use is::stun::{StunMessage, StunMessageBuilder};
use is::{DefaultSha1HmacProvider, Sha1HmacProvider};
use jingle_ice::stun::{Class, Message, MessageEncoder, Method};

/// RFC 5769 §2.1, the sample request (108 bytes).
const REQUEST: [u8; 108] = [
    0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86,
    0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73,
    0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff,
    0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09,
    0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14,
    0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e, 0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49,
    0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
];

/// RFC 5769 §2: the short-term password of the sample request.
const PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

/// The SOFTWARE text of the sample request.
const SOFTWARE: &str = "STUN test client";

/// Length of the message both encoders write: the request without SOFTWARE.
const ENCODED_LEN: usize = 88;

/// The attribute values of the sample request, read back by both codecs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fields<'a> {
    /// `None` from `is`, which does not recognise the vector's SOFTWARE (see the top).
    software: Option<&'a str>,
    priority: u32,
    ice_controlled: u64,
    username: &'a str,
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
    DefaultSha1HmacProvider.sha1_hmac(key, parts)
}

// ---- ours ----------------------------------------------------------------------------------

fn ours_parse(bytes: &[u8]) -> Option<Fields<'_>> {
    // `decode` checks framing, every known attribute and the FINGERPRINT CRC.
    let m = Message::decode(bytes).ok()?;
    Some(Fields {
        software: m.software(),
        priority: m.priority()?,
        ice_controlled: m.ice_controlled()?,
        username: m.username()?,
    })
}

fn ours_verify(bytes: &[u8]) -> bool {
    match Message::decode(bytes) {
        Ok(m) => m.verify_integrity(PASSWORD).is_ok(),
        Err(_) => false,
    }
}

fn ours_encode(out: &mut Vec<u8>, f: &Fields<'_>, id: [u8; 12]) -> usize {
    let mut enc = MessageEncoder::new(
        out,
        Class::Request,
        Method::BINDING,
        jingle_ice::stun::TransactionId(id),
    );
    enc.priority(f.priority)
        .ice_controlled(f.ice_controlled)
        .username(f.username)
        .message_integrity(PASSWORD)
        .fingerprint();
    enc.finish()
}

/// The whole job: parse, verify, read the attributes, answer with a message like it.
fn ours_all(bytes: &[u8], out: &mut Vec<u8>) -> usize {
    let Ok(m) = Message::decode(bytes) else {
        return 0;
    };
    if m.verify_integrity(PASSWORD).is_err() {
        return 0;
    }
    let software = m.software();
    let (Some(priority), Some(ice_controlled), Some(username)) =
        (m.priority(), m.ice_controlled(), m.username())
    else {
        return 0;
    };
    let f = Fields {
        software,
        priority,
        ice_controlled,
        username,
    };
    ours_encode(out, &f, m.transaction_id().0)
}

// ---- is 0.12 -------------------------------------------------------------------------------

fn is_parse(bytes: &[u8]) -> Option<Fields<'_>> {
    let m = StunMessage::parse(bytes).ok()?;
    Some(Fields {
        software: m.software(),
        priority: m.prio()?,
        ice_controlled: m.ice_controlled()?,
        username: m.username()?,
    })
}

fn is_verify(bytes: &[u8]) -> bool {
    match StunMessage::parse(bytes) {
        Ok(m) => m.verify(PASSWORD, hmac),
        Err(_) => false,
    }
}

fn is_encode(out: &mut [u8], f: &Fields<'_>, m: &StunMessage<'_>) -> usize {
    let msg = StunMessageBuilder::new()
        .binding()
        .request()
        .prio(f.priority)
        .ice_controlled(f.ice_controlled)
        .username(f.username)
        .build(m.trans_id());
    msg.to_bytes(Some(PASSWORD), out, hmac).unwrap_or(0)
}

fn is_all(bytes: &[u8], out: &mut [u8]) -> usize {
    let Ok(m) = StunMessage::parse(bytes) else {
        return 0;
    };
    if !m.verify(PASSWORD, hmac) {
        return 0;
    }
    let (Some(priority), Some(ice_controlled), Some(username)) =
        (m.prio(), m.ice_controlled(), m.username())
    else {
        return 0;
    };
    let software = m.software();
    let f = Fields {
        software,
        priority,
        ice_controlled,
        username,
    };
    is_encode(out, &f, &m)
}

/// Checks, before timing anything, that both sides do the work: they read the same values,
/// accept the integrity, and each encoder's output is accepted (integrity and fingerprint)
/// by the other codec.
fn cross_check() {
    let ours = ours_parse(&REQUEST).expect("ours parses RFC 5769 §2.1");
    let theirs = is_parse(&REQUEST).expect("is parses RFC 5769 §2.1");
    assert_eq!(ours.software, Some(SOFTWARE));
    assert_eq!(theirs.software, None, "is 0.12 does not read SOFTWARE");
    assert_eq!(
        Fields {
            software: None,
            ..ours
        },
        theirs
    );
    assert!(ours_verify(&REQUEST) && is_verify(&REQUEST));

    let mut out = Vec::new();
    let n = ours_all(&REQUEST, &mut out);
    assert_eq!(n, ENCODED_LEN);
    let m = StunMessage::parse(&out[..n]).expect("is parses our encoding");
    assert!(
        m.verify(PASSWORD, hmac),
        "is verifies our MESSAGE-INTEGRITY"
    );

    let mut buf = [0u8; 1500];
    let n = is_all(&REQUEST, &mut buf);
    assert_eq!(n, ENCODED_LEN);
    let m = Message::decode(&buf[..n]).expect("ours decodes is's encoding, FINGERPRINT included");
    assert_eq!(m.verify_integrity(PASSWORD), Ok(()));
}

/// The two closures of one step: ours, then `is`.
type Contenders<'a> = [Box<dyn FnMut() + 'a>; 2];

fn main() {
    cross_check();

    let mut table = Table::new(
        "STUN codec, RFC 5769 §2.1 request: ns per message (median), ours vs is 0.12 (str0m)",
        &["step", "jingle-ice", "is 0.12", "ours / is"],
    );

    let fields = ours_parse(&REQUEST).expect("parses");
    let is_fields = is_parse(&REQUEST).expect("parses");
    let parsed = StunMessage::parse(&REQUEST).expect("parses");
    let id = id_bytes(&REQUEST);
    let mut our_buf = Vec::with_capacity(1500);
    let mut is_buf = [0u8; 1500];

    let steps: [(&str, Contenders); 4] = [
        (
            "parse + read attributes (ours also checks FINGERPRINT)",
            [
                Box::new(|| {
                    black_box(ours_parse(black_box(&REQUEST)));
                }),
                Box::new(|| {
                    black_box(is_parse(black_box(&REQUEST)));
                }),
            ],
        ),
        (
            "parse + verify MESSAGE-INTEGRITY",
            [
                Box::new(|| {
                    black_box(ours_verify(black_box(&REQUEST)));
                }),
                Box::new(|| {
                    black_box(is_verify(black_box(&REQUEST)));
                }),
            ],
        ),
        ("encode with MESSAGE-INTEGRITY + FINGERPRINT", {
            let mut b1 = Vec::with_capacity(1500);
            let mut b2 = [0u8; 1500];
            [
                Box::new(move || {
                    black_box(ours_encode(&mut b1, black_box(&fields), id));
                }),
                Box::new(move || {
                    black_box(is_encode(
                        &mut b2,
                        black_box(&is_fields),
                        black_box(&parsed),
                    ));
                }),
            ]
        }),
        (
            "all: parse + verify + encode",
            [
                Box::new(|| {
                    black_box(ours_all(black_box(&REQUEST), &mut our_buf));
                }),
                Box::new(|| {
                    black_box(is_all(black_box(&REQUEST), &mut is_buf));
                }),
            ],
        ),
    ];

    for (name, [mut a, mut b]) in steps {
        let ns = compare_ns(&mut [&mut *a, &mut *b]);
        table.row(vec![
            name.to_string(),
            format!("{:.0}", ns[0]),
            format!("{:.0}", ns[1]),
            ratio(ns[0], ns[1]),
        ]);
    }
    table.print();
    println!("ratio < 1.00x means jingle-ice is faster. Same HMAC-SHA1 crates (hmac 0.13, sha1 0.11) on both sides.");
}

/// The transaction id of a STUN message (bytes 8..20).
fn id_bytes(bytes: &[u8]) -> [u8; 12] {
    let mut id = [0u8; 12];
    if let Some(src) = bytes.get(8..20) {
        id.copy_from_slice(src);
    }
    id
}
