//! Fuzz target: decode any byte string as a STUN message, walk every getter and verify
//! integrity with a fixed key. Decoding must return an error or a message, never panic.
#![no_main]

use jingle_ice::stun::{looks_like_stun, Message};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz key";

fuzz_target!(|data: &[u8]| {
    let quick = looks_like_stun(data);
    let Ok(m) = Message::decode(data) else {
        return;
    };
    assert!(quick, "a decodable message passes the quick check");
    let _ = (m.class(), m.method(), m.transaction_id(), m.raw().len());
    for a in m.attributes() {
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
});
