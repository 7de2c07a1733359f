//! The Jingle transport methods we speak (XEP-0166 §8), each in its own folder with its
//! `<transport/>` element and what it needs besides:
//! - [`ice_udp`]: XEP-0176 ICE-UDP, mapped to the ICE agent's credentials and candidates;
//! - [`webrtc_datachannel`]: Conversations' `webrtc-datachannel:1`, an ICE-UDP transport
//!   carrying WebRTC data channels, with the XEP-0320 DTLS fingerprint ([`webrtc_datachannel::dtls`]);
//! - [`ibb`]: XEP-0261 In-Band Bytestreams (XEP-0047), the fallback through the XMPP server,
//!   with its sans-IO bytestream.
//!
//! [`SUPPORTED_TRANSPORTS`] lists them in the order we prefer them.

pub mod ibb;
pub mod ice_udp;
pub mod webrtc_datachannel;

/// The transport namespaces the session manager accepts in an incoming offer or
/// `transport-replace`, most preferred first: Conversations' WebRTC data channel (encrypted
/// and authenticated by DTLS), plain XEP-0176 ICE-UDP, and XEP-0261 In-Band Bytestreams
/// (through the server, the fallback XEP-0234 §2 requires of file transfer).
/// [`SessionConfig::extra_transports`](crate::jingle::SessionConfig::extra_transports) adds
/// others.
pub const SUPPORTED_TRANSPORTS: [&str; 3] = [
    webrtc_datachannel::NS_WEBRTC_DATACHANNEL,
    ice_udp::NS_ICE_UDP,
    ibb::NS_JINGLE_IBB,
];
