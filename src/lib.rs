//! # jingle-ice
//!
//! Peer-to-peer channels for XMPP clients and bots through NATs and firewalls: a sans-IO
//! ICE agent ([RFC 8445]) with its own STUN codec ([RFC 8489]), driven over real sockets by a
//! thin tokio layer, meant to carry Jingle ICE-UDP sessions (XEP-0166, XEP-0176).
//!
//! The protocol cores ([`stun`], [`ice`]) never touch a socket, a clock or a task: they take
//! input and the current time, and say what to send, when to wake and what happened. The
//! [`net`] module is the one place with I/O. The [`sim`] module is a deterministic simulated
//! network (hosts, NATs with every RFC 4787 behaviour, lossy links, a STUN server) in virtual
//! time, used by the test suite and the benchmarks, and available to anyone who wants to test
//! an application built on the agent.
//!
//! [RFC 8445]: https://www.rfc-editor.org/rfc/rfc8445
//! [RFC 8489]: https://www.rfc-editor.org/rfc/rfc8489
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Applications over the channel: XEP-0234 file transfer (elements, safe names, storage, transfer).
pub mod apps;
pub mod channel;
pub mod ibb;
pub mod ice;
pub mod jingle;
pub mod net;
pub mod sim;
pub mod stun;
pub mod turn;
/// XMPP glue: the Jingle extension for a tokio-xmpp client, a bot client, XEP-0215 external
/// STUN/TURN services, XEP-0030 disco and XEP-0115 caps.
pub mod xmpp;
