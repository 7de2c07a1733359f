//! In-Band Bytestreams (XEP-0047) and their Jingle transport (XEP-0261): the fallback that
//! carries a session's bytes through the XMPP server, base64 in `<iq/>` stanzas, when no
//! peer-to-peer path can be found (XEP-0234 §2 requires it of file transfer).
//!
//! [`element`] reads and writes the `<open/>`, `<data/>` and `<close/>` elements and the
//! Jingle `<transport/>`; [`stream`] is the sans-IO bytestream: it turns written bytes into
//! numbered data requests with a bounded window of unanswered ones, checks and reassembles the
//! peer's, and holds its answers back while the reader is behind (flow control).

pub mod element;
pub mod method;
pub mod stream;

pub use element::{IbbElementError, IbbPacket, IbbTransport};
pub use stream::{IbbConfig, IbbError, IbbStream};

/// Namespace of In-Band Bytestreams (XEP-0047 §2).
pub const NS_IBB: &str = "http://jabber.org/protocol/ibb";
/// Namespace of the Jingle IBB transport method (XEP-0261 §2).
pub const NS_JINGLE_IBB: &str = "urn:xmpp:jingle:transports:ibb:1";
/// Block size we offer: Conversations' maximum, which it also lowers any larger offer to
/// (`xep/webrtc-datachannel.md` fact 24). XEP-0047 §2.1 recommends 4096 but allows up to 65535.
pub const DEFAULT_BLOCK_SIZE: u16 = 8192;
/// The `seq` of `<data/>` counts modulo this (XEP-0047 §2.2: a 16-bit counter that wraps to 0
/// after 65535). Conversations does not wrap and counts on (65536, 65537, ...): see
/// [`stream`] for what we accept.
pub const SEQ_MODULUS: u32 = 1 << 16;
/// Longest stream id we accept (XEP-0047 §2.1 gives none; a bound keeps state small).
pub const MAX_SID_LEN: usize = 128;
