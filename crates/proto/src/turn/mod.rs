//! TURN client (RFC 8656), sans-IO: one allocation on one server, its permissions and
//! channels, over UDP or a stream (TCP, or TLS unwrapped by the I/O layer).
//!
//! [`TurnClient`] never touches a socket or a clock. The caller feeds it what arrives from the
//! server ([`TurnClient::handle_input`]), sends what it asks ([`TurnClient::poll_transmit`]),
//! wakes it at [`TurnClient::poll_timeout`] and reads [`TurnEvent`]s: the relayed address once
//! allocated, data from peers, failures. Data for a peer goes through
//! [`TurnClient::send_to`], as a Send indication (RFC 8656 §10) or, once a channel is bound
//! ([`TurnClient::bind_channel`]), as ChannelData (RFC 8656 §12).
//!
//! An ICE agent owns one client per (local socket, server): it feeds the client every
//! datagram from the server's address (or every chunk of the TCP stream, and
//! [`TurnClient::handle_transport_closed`] when it ends), asks for a permission for each
//! remote candidate, and sends checks and data to peers with [`TurnClient::send_to`].
//!
//! ```
//! use std::time::{Duration, Instant, SystemTime};
//! use jingle_ice_proto::turn::{TurnClient, TurnConfig, TurnCredentials, TurnEvent, TurnTransport};
//!
//! let now = Instant::now();
//! // XEP-0215 / coturn `use-auth-secret` credentials, valid for an hour.
//! let credentials =
//!     TurnCredentials::time_limited_for(b"secret", SystemTime::now(), Duration::from_secs(3600), None);
//! let server = "192.0.2.1:3478".parse().unwrap();
//! let mut client = TurnClient::new(TurnConfig::new(server, TurnTransport::Udp, credentials), now);
//!
//! // The driver's loop: send what the client asks, feed it what the server sends, wake it
//! // at its timeout, and read its events.
//! let first = client.poll_transmit().expect("the first Allocate");
//! assert_eq!(first.destination, server);
//! // socket.send_to(&first.data, first.destination) ...
//! // client.handle_input(now, from, &datagram);
//! assert!(client.poll_timeout().is_some());
//! while let Some(event) = client.poll_event() {
//!     if let TurnEvent::Allocated { relayed, .. } = event {
//!         println!("relay candidate {relayed}");
//!     }
//! }
//! ```

mod client;
mod credentials;
mod framing;

pub use client::{
    TurnClient, TurnConfig, TurnError, TurnEvent, TurnState, TurnStats, TurnTransmit,
    TurnTransport, CHANNEL_LIFETIME, CHANNEL_REFRESH, CHANNEL_REUSE_DELAY,
    DEFAULT_ALLOCATION_LIFETIME, DEFAULT_RELIABLE_TIMEOUT, MAX_STALE_NONCE_RETRIES,
    PERMISSION_LIFETIME, PERMISSION_REFRESH, PROTOCOL_UDP,
};
pub use credentials::TurnCredentials;
pub use framing::{
    encode_channel_data, is_valid_channel, ChannelData, Frame, FrameError, StreamFramer,
    CHANNEL_DATA_HEADER_LEN, CHANNEL_MAX, CHANNEL_MIN, MAX_STREAM_FRAME_LEN,
};
