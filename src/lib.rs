//! # jingle-ice
//!
//! Peer-to-peer channels for XMPP clients and bots through NATs and firewalls: Jingle sessions
//! (XEP-0166) with ICE-UDP transports (XEP-0176) negotiated through the XMPP server, our own ICE
//! agent ([RFC 8445]) with STUN ([RFC 8489]) and TURN ([RFC 8656]), and encrypted WebRTC data
//! channels over the selected path, as Conversations uses them for file transfer.
//!
//! The workspace has three crates:
//! - `jingle-ice-proto`: the sans-IO protocol cores ([`stun`], [`turn`], [`ice`], [`channel`],
//!   [`jingle`], [`ibb`], the stanza helpers and disco/extdisco elements of [`xmpp`], the
//!   application descriptions of [`apps`]). They never touch a socket, a clock or a task: they
//!   take input and the current time, and say what to send, when to wake and what happened.
//!   This crate re-exports them under the same names.
//! - `jingle-ice-sim`: a deterministic simulated network (hosts, NATs with every RFC 4787
//!   behaviour, lossy links, STUN and TURN servers) in virtual time, used by the tests of every
//!   core and by the benchmarks.
//! - `jingle-ice` (this crate): the tokio layer, the one place with I/O. [`net`] owns the
//!   sockets and timers of an ICE connection and drives its data channels; [`xmpp`] holds the
//!   Jingle extension to plug into a tokio-xmpp client, the bot client and its connection;
//!   [`apps`] carries files (XEP-0234) and tubes over a session.
//!
//! Features: `xmpp` (default) builds the Jingle extension, the bot client and the applications;
//! `channel` (implied by `xmpp`) builds the data-channel driver. With `default-features = false`
//! the crate is the ICE connection driver alone ([`net::IceConnection`] over STUN, TURN and ICE),
//! without XMPP, DTLS or SCTP.
//!
//! [RFC 8445]: https://www.rfc-editor.org/rfc/rfc8445
//! [RFC 8489]: https://www.rfc-editor.org/rfc/rfc8489
//! [RFC 8656]: https://www.rfc-editor.org/rfc/rfc8656
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "channel")]
pub use jingle_ice_proto::channel;
#[cfg(feature = "xmpp")]
pub use jingle_ice_proto::jingle;
#[cfg(feature = "xmpp")]
pub use jingle_ice_proto::jingle::transports::ibb;
pub use jingle_ice_proto::{hex, ice, stun, turn};

#[cfg(feature = "xmpp")]
pub mod apps;
pub mod net;
#[cfg(feature = "xmpp")]
pub mod xmpp;
