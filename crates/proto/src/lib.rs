//! # jingle-ice-proto
//!
//! The protocol cores of jingle-ice, with no I/O and no async runtime: each is a state machine
//! that takes input and the current time and says what to send, when to wake, and what
//! happened. The `jingle-ice` crate drives them over tokio sockets and an XMPP stream; any
//! other runtime can drive them the same way.
//!
//! | module | what it holds | follows |
//! |---|---|---|
//! | [`stun`] | the STUN message codec, MESSAGE-INTEGRITY, FINGERPRINT, client transactions | RFC 8489 |
//! | [`turn`] | the TURN client: allocation, permissions, channels, refresh | RFC 8656 |
//! | [`ice`] | the ICE agent: gathering, checks, nomination, consent | RFC 8445, RFC 7675, RFC 8838 |
//! | [`channel`] | WebRTC data channels: DTLS, SCTP, DCEP (feature `channel`) | RFC 8831, RFC 8832, RFC 8261 |
//! | [`xmpp`] | stanza helpers, bounds on received elements, disco and caps, external services | RFC 6120, XEP-0030, XEP-0115, XEP-0215 |
//! | [`jingle`] | the Jingle elements, the session machine, and the transports, each in its folder: ICE-UDP, webrtc-datachannel (with the DTLS fingerprint), In-Band Bytestreams | XEP-0166, XEP-0176, XEP-0320, XEP-0343, XEP-0047, XEP-0261 |
//! | [`hex`] | the one hex codec (plain and RFC 8122 colon pairs) | RFC 8122 §5 |
//! | [`apps`] | the elements of the applications: file descriptions, safe file names, tube descriptions | XEP-0234, XEP-0300 |
//!
//! Features: `channel` builds the data-channel stack (DTLS from `dimpl`, SCTP from
//! `sctp-proto`); `jingle` (default, implies `channel`) builds the XMPP and Jingle modules
//! (minidom, jid). With `default-features = false` only STUN, TURN and ICE are built.
//!
//! The driving loop of every core has the same shape; for the ICE agent:
//! 1. feed what arrived: `agent.handle_receive(...)` for a datagram (and, from signalling, the
//!    peer's credentials and candidates);
//! 2. send what it asks for: `while let Some(t) = agent.poll_transmit() { socket.send(t) }`;
//! 3. act on what happened: `while let Some(e) = agent.poll_event() { ... }`;
//! 4. sleep until `agent.poll_timeout()` or until the next datagram, then call
//!    `agent.handle_timeout(now)` and go to 2.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "jingle")]
pub mod apps;
#[cfg(feature = "channel")]
pub mod channel;
pub mod hex;
pub mod ice;
#[cfg(feature = "jingle")]
pub mod jingle;
pub mod stun;
pub mod turn;
#[cfg(feature = "jingle")]
pub mod xmpp;
